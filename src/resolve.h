/*-------------------------------------------------------------------------
 *
 * resolve.h
 *	  Host names of remotes resolved without blocking the worker, and kept
 *	  for their DNS time to live (resolve.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef NETRUN_RESOLVE_H
#define NETRUN_RESOLVE_H

#include "datatype/timestamp.h"
#include "utils/guc.h"

#include "evloop.h"

/* How long an answer is kept, whatever the record's TTL says. */
#define RESOLVE_TTL_FLOOR_S		5
#define RESOLVE_TTL_CEILING_S	300
/* How long "no such name" is kept: a new name is seen within this. */
#define RESOLVE_NEGATIVE_TTL_S	1
/* Addresses of one name handed to libpq (tried in order). */
#define RESOLVE_MAX_ADDRS		8

typedef enum ResolveStatus
{
	RESOLVE_READY,				/* *host_out etc. set (NULL: use as is) */
	RESOLVE_PENDING,			/* asked; pool_names_resolved() says when */
	RESOLVE_FAILED				/* *error says why */
} ResolveStatus;

extern ResolveStatus resolve_hosts(const char *host, const char *hostaddr,
								   const char *port, char **host_out,
								   char **hostaddr_out, char **port_out,
								   char **error);
extern void resolve_forget_hosts(const char *host);
extern void resolve_on_event(void *target, uint32 events);
extern TimestampTz resolve_next_wake(TimestampTz next);
extern void resolve_reload(void);
extern bool resolve_check_servers(char **newval, void **extra, GucSource source);

/* pool.c: a name was resolved (or failed): pools waiting for one go on */
extern void pool_names_resolved(void);

#endif							/* NETRUN_RESOLVE_H */
