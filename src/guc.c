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

/* Shared memory sizing: registered connections and total remote connections */
int			netrun_max_pools = 64;
int			netrun_max_connections = 256;

/* Health probes and the circuit breaker (health.c) */
int			netrun_health_interval_ms = 10000;
int			netrun_degraded_latency_ms = 100;
int			netrun_unhealthy_after = 3;
int			netrun_degraded_error_percent = 20;

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

		DefineCustomIntVariable("netrun_pool.max_pools",
								"Most connections the registry may hold (sizes shared memory).",
								NULL,
								&netrun_max_pools,
								64, 1, 10000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

		DefineCustomIntVariable("netrun_pool.max_connections",
								"Most remote connections all pools together may open (sizes shared memory).",
								"The sum of pool_max + max_overflow over the registry may not exceed it.",
								&netrun_max_connections,
								256, 1, 100000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	}

	/* Superuser-only: even the file's name is not for everyone. */
	DefineCustomStringVariable("netrun_pool.secret_key_file",
							   "File holding the key that encrypts passwords in the registry.",
							   "At least 32 random bytes, readable only by the server's user.",
							   &netrun_secret_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("netrun_pool.health_interval_ms",
							"How often the worker probes each enabled connection.",
							NULL,
							&netrun_health_interval_ms,
							10000, 100, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("netrun_pool.degraded_latency_ms",
							"Probe round trip above which a connection is degraded.",
							NULL,
							&netrun_degraded_latency_ms,
							100, 1, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("netrun_pool.unhealthy_after",
							"Failed probes in a row after which a connection is unhealthy and its circuit opens.",
							NULL,
							&netrun_unhealthy_after,
							3, 1, 100,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("netrun_pool.degraded_error_percent",
							"Share of calls between two probes that failed through the remote's fault above which a connection is degraded.",
							"Counted only over at least 10 calls.",
							&netrun_degraded_error_percent,
							20, 1, 100,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved(NETRUN_POOL_NAME);
}
