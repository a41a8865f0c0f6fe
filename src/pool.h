/*-------------------------------------------------------------------------
 *
 * pool.h
 *	  The worker's pools, connections and requests (pool.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef NETRUN_POOL_POOL_H
#define NETRUN_POOL_POOL_H

#include "netrun_pool.h"

/* One registry row as the worker needs it to connect. */
typedef struct PoolDefinition
{
	NetrunPoolSlot settings;
	char	   *conninfo;
	bytea	   *secret;			/* NULL if none */
} PoolDefinition;

extern void pool_init(void);
extern void pool_sync(PoolDefinition *defs, int ndefs);
extern void pool_shutdown_all(void);
extern void pool_force_retire(const char *name, bool all_removed);
extern void pool_publish_gauges(void);
extern void pool_after_error(void);
extern void pool_run_once(long max_wait_ms);

#endif							/* NETRUN_POOL_POOL_H */
