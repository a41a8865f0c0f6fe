/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Every netrun_pool.* configuration parameter.
 *
 * Owns the definitions, defaults and contexts of the settings, and the
 * reservation of the "netrun_pool" prefix.  It must not act on a value:
 * the part that uses a setting reads the variable declared here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "netrun_pool.h"

/* netrun_pool.database: where the worker connects and the registry lives */
char	   *netrun_database = NULL;

void
netrun_define_gucs(void)
{
	/*
	 * PGC_POSTMASTER settings can only be created while preloading; when
	 * the library is loaded on demand they would be meaningless anyway,
	 * since no worker exists to use them.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomStringVariable("netrun_pool.database",
								   "Database the netrun_pool worker connects to; it holds the registry.",
								   NULL,
								   &netrun_database,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);
	}

	MarkGUCPrefixReserved(NETRUN_POOL_NAME);
}
