/*-------------------------------------------------------------------------
 *
 * http.h
 *	  The HTTP endpoint for Prometheus and Kubernetes (http.c), served by
 *	  the launcher.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NETRUN_HTTP_H
#define NETRUN_HTTP_H

#include "utils/guc.h"

/* guc.c: netrun_pool.http_listen, http_allow, http_token_file */
extern char *netrun_http_listen;
extern char *netrun_http_allow;
extern char *netrun_http_token_file;

/* the settings' hooks (the parsing is the endpoint's) */
extern bool http_listen_check_hook(char **newval, void **extra, GucSource source);
extern bool http_allow_check_hook(char **newval, void **extra, GucSource source);
extern void http_allow_assign_hook(const char *newval, void *extra);

/* the launcher's side */
extern void http_start(void);
extern int	http_socket(void);
extern long http_timeout_ms(void);
extern void http_serve(void);
extern void http_reload(void);

#endif							/* NETRUN_HTTP_H */
