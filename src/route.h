/*-------------------------------------------------------------------------
 *
 * route.h
 *	  Which connection a call goes to (route.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef NETRUN_ROUTE_H
#define NETRUN_ROUTE_H

#include "netrun_pool.h"

typedef struct RouteTarget
{
	char		name[NAMEDATALEN];	/* the registered connection */
	int			pool_mode;
	bool		via_cluster;	/* name was a cluster's */
} RouteTarget;

/*
 * Resolve a connection or cluster name for the current user; raises the
 * documented error when it does not exist, may not be used, is disabled,
 * or is unavailable (open circuit).
 */
extern void route_resolve(const char *name, bool write, RouteTarget *out);

/* The error for a name that is neither a connection nor a cluster. */
extern void route_report_unknown(const char *name) pg_attribute_noreturn();
extern void route_report_no_usage(const char *name, bool is_cluster) pg_attribute_noreturn();

/* Is this the name of a cluster (and not of a connection)? */
extern bool route_is_cluster(const char *name);

#endif							/* NETRUN_ROUTE_H */
