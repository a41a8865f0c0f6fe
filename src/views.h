/*-------------------------------------------------------------------------
 *
 * views.h
 *	  The read side of the pools' shared memory, shared by the SQL
 *	  functions of views.c and the HTTP endpoint (http.c).
 *
 * Everything declared here reads shared memory only: no catalog, no SPI,
 * no wait, no check of who asks (the SQL functions filter the rows by
 * role before rendering; the HTTP endpoint has its own access rules).  So
 * the launcher, which has no database, can call it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NETRUN_VIEWS_H
#define NETRUN_VIEWS_H

#include "lib/stringinfo.h"

#include "netrun_pool.h"
#include "stats.h"

/* One connection as a view sees it. */
typedef struct ViewRow
{
	NetrunPoolSlot slot;
	NetrunPoolStats stats;
} ViewRow;

/* Which slots views_collect() takes. */
typedef enum ViewsMatch
{
	VIEWS_MATCH_ALL,			/* every connection */
	VIEWS_MATCH_NAME_OR_CLUSTER,	/* a connection's name, or a cluster's */
	VIEWS_MATCH_NAME,			/* a connection's name only */
	VIEWS_MATCH_CLUSTER			/* a cluster's members only */
} ViewsMatch;

/* What views_ready() asks of the rows. */
typedef enum ViewsReadyScope
{
	VIEWS_READY_ENABLED,		/* every enabled row serves */
	VIEWS_READY_EVERY,			/* every row serves, enabled or not */
	VIEWS_READY_CLUSTER_PRIMARY,	/* some row is a primary that serves */
	VIEWS_READY_CLUSTER_MEMBERS /* there are enabled rows, and all serve */
} ViewsReadyScope;

extern ViewRow *views_collect(const char *name, ViewsMatch match, int *nrows);
extern bool views_worker_running(void);
extern bool views_ready(const ViewRow *rows, int n, ViewsReadyScope scope);
extern void views_render_health_check(StringInfo buf, const ViewRow *rows,
									  int n, bool single);
extern void views_render_prometheus(StringInfo buf, const ViewRow *rows,
									int n);

#endif							/* NETRUN_VIEWS_H */
