/*-------------------------------------------------------------------------
 *
 * tenant.h
 *	  The tenant context (tenant.c): the protected setting and what the
 *	  rest of netrun_pool needs of it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NETRUN_TENANT_H
#define NETRUN_TENANT_H

#include "utils/guc.h"

/* guc.c: the check hook of netrun_pool.tenant_id */
extern bool tenant_id_check_hook(char **newval, void **extra, GucSource source);

/* module.c: the utility hook that refuses RESET of the protected setting */
extern void tenant_install_hooks(void);

/*
 * The tenant of the current call, or NULL, and the search_path a remote
 * call should run with in schema mode (NULL if none): what api.c sends
 * along with each pooled call.
 */
extern const char *tenant_current(void);

/* guard.c: the tenant a pool's checked assertion carries ("" for none) */
extern void tenant_set_asserted(const char *tenant);
extern char *tenant_remote_search_path(void);

#endif							/* NETRUN_TENANT_H */
