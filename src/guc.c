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

#include "http.h"
#include "netrun_pool.h"
#include "resolve.h"
#include "tenant.h"

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

/* A caller's wait for its answer (channel.c) */
int			netrun_spin_wait_us = 500;

/* The largest request a backend hands the worker (api.c) */
int			netrun_max_request_size_kb = 4096;

/* Where the worker resolves remotes' host names (resolve.c) */
char	   *netrun_dns_servers = NULL;

/* The tenant context (tenant.c) and RLS (sql/) */
char	   *netrun_tenant_id = NULL;
char	   *netrun_tenant_setting = NULL;
int			netrun_tenant_id_format = TENANT_FORMAT_TEXT;
int			netrun_tenant_mode = TENANT_MODE_OPEN;
char	   *netrun_tenant_key_file = NULL;
char	   *netrun_guard_key_file = NULL;
char	   *netrun_tenant_claim = NULL;
char	   *netrun_tenant_column = NULL;
int			netrun_enforce_rls = ENFORCE_RLS_OFF;
char	   *netrun_tenant_schema_prefix = NULL;
char	   *netrun_shared_schema = NULL;
bool		netrun_tenant_search_path = false;
char	   *netrun_default_tenant_connection = NULL;

static const struct config_enum_entry tenant_format_options[] = {
	{"text", TENANT_FORMAT_TEXT, false},
	{"uuid", TENANT_FORMAT_UUID, false},
	{"integer", TENANT_FORMAT_INTEGER, false},
	{"slug", TENANT_FORMAT_SLUG, false},
	{NULL, 0, false}
};

static const struct config_enum_entry tenant_mode_options[] = {
	{"open", TENANT_MODE_OPEN, false},
	{"signed", TENANT_MODE_SIGNED, false},
	{"pool", TENANT_MODE_POOL, false},
	{NULL, 0, false}
};

static const struct config_enum_entry enforce_rls_options[] = {
	{"off", ENFORCE_RLS_OFF, false},
	{"warn", ENFORCE_RLS_WARN, false},
	{"error", ENFORCE_RLS_ERROR, false},
	{NULL, 0, false}
};

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

		/* The HTTP endpoint the launcher serves (http.c). */
		DefineCustomStringVariable("netrun_pool.http_listen",
								   "Address and port of the HTTP endpoint for metrics and probes, such as 127.0.0.1:9187; empty: off.",
								   NULL,
								   &netrun_http_listen,
								   "",
								   PGC_POSTMASTER,
								   0,
								   http_listen_check_hook, NULL, NULL);
	}

	DefineCustomStringVariable("netrun_pool.http_allow",
							   "Client addresses and CIDR blocks the HTTP endpoint answers, separated by commas.",
							   "Connections from anywhere else are closed at once.",
							   &netrun_http_allow,
							   "127.0.0.0/8, ::1/128",
							   PGC_SIGHUP,
							   0,
							   http_allow_check_hook, http_allow_assign_hook, NULL);

	/* Superuser-only, as the other key files. */
	DefineCustomStringVariable("netrun_pool.http_token_file",
							   "File holding the bearer token the HTTP endpoint requires; empty: no token.",
							   "At least 32 bytes, readable only by the server's user.",
							   &netrun_http_token_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	/* Superuser-only: even the file's name is not for everyone. */
	DefineCustomStringVariable("netrun_pool.secret_key_file",
							   "File holding the key that encrypts passwords in the registry.",
							   "At least 32 random bytes, readable only by the server's user.",
							   &netrun_secret_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("netrun_pool.spin_wait_us",
							"How long a caller polls for its answer, and the worker for a lone call's next event, before sleeping, in microseconds.",
							"A caller polls only when its previous answer came within this time, at most one other call is in flight and no other caller polls; the worker only while at most two calls are in flight. Both yield the CPU while they poll. 0 turns polling off.",
							&netrun_spin_wait_us,
							500, 0, 10000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("netrun_pool.max_request_size",
							"The largest call (its statement and parameters) sent to a remote.",
							"The worker sends every caller's calls; libpq copies a request whole, and sending one of tens of megabytes holds up the calls of every other caller while it goes out.",
							&netrun_max_request_size_kb,
							4096, 64, 1048576,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomStringVariable("netrun_pool.dns_servers",
							   "DNS servers the worker asks for remotes' host names, instead of those of /etc/resolv.conf.",
							   "A comma-separated list of addresses, each with an optional port: 10.0.0.2,10.0.0.3:5353,[::1]:53. Empty: /etc/resolv.conf.",
							   &netrun_dns_servers,
							   "",
							   PGC_SIGHUP,
							   0,
							   resolve_check_servers, NULL, NULL);

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

	/*
	 * The tenant.  Every role may read it; only netrun_pool.set_tenant()
	 * and its siblings may change it (the check hook refuses everyone
	 * else, tenant.c).  The settings that shape it are for superusers.
	 */
	DefineCustomStringVariable("netrun_pool.tenant_id",
							   "The current tenant; changed only by netrun_pool.set_tenant(), set_tenant_token() and clear_tenant().",
							   NULL,
							   &netrun_tenant_id,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE,
							   tenant_id_check_hook, NULL, NULL);

	DefineCustomStringVariable("netrun_pool.tenant_setting",
							   "Setting that set_tenant() mirrors the tenant into, for policies written with current_setting().",
							   "The mirror can be changed with SET; netrun_pool.current_tenant() cannot.",
							   &netrun_tenant_setting,
							   "app.current_tenant_id",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomEnumVariable("netrun_pool.tenant_id_format",
							 "What a tenant id must look like: uuid, integer, slug or text.",
							 NULL,
							 &netrun_tenant_id_format,
							 TENANT_FORMAT_TEXT,
							 tenant_format_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("netrun_pool.tenant_mode",
							 "open: set_tenant() sets the tenant; signed: non-superusers need a signed token; pool: only a netrun_pool's signed assertions set it (a remote).",
							 NULL,
							 &netrun_tenant_mode,
							 TENANT_MODE_OPEN,
							 tenant_mode_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("netrun_pool.tenant_key_file",
							   "File holding the HS256 key that signs tenant tokens.",
							   "At least 32 bytes, readable only by the server's user.",
							   &netrun_tenant_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("netrun_pool.guard_key_file",
							   "File holding the key that signs the tenant a pool asserts on a remote.",
							   "The same key on the pool's server and on each remote with netrun_pool.tenant_mode = pool; at least 32 bytes, readable only by the server's user.",
							   &netrun_guard_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("netrun_pool.tenant_claim",
							   "The claim of a tenant token that names the tenant.",
							   NULL,
							   &netrun_tenant_claim,
							   "tenant_id",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("netrun_pool.tenant_column",
							   "The column that holds the tenant in multi-tenant tables (rls_audit, enable_tenant_rls, enforce_rls).",
							   NULL,
							   &netrun_tenant_column,
							   "tenant_id",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomEnumVariable("netrun_pool.enforce_rls",
							 "What CREATE or ALTER TABLE of a table with the tenant column but no row-level security does: off, warn or error.",
							 NULL,
							 &netrun_enforce_rls,
							 ENFORCE_RLS_OFF,
							 enforce_rls_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("netrun_pool.tenant_schema_prefix",
							   "Prefix of the schema of each tenant (schema-per-tenant).",
							   NULL,
							   &netrun_tenant_schema_prefix,
							   "tenant_",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("netrun_pool.shared_schema",
							   "Schema shared by all tenants, searched after the tenant's own.",
							   NULL,
							   &netrun_shared_schema,
							   "shared",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("netrun_pool.tenant_search_path",
							 "Whether setting a tenant also sets search_path to its schema, the shared schema and public.",
							 NULL,
							 &netrun_tenant_search_path,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("netrun_pool.default_tenant_connection",
							   "The connection tenant_connection() returns for a tenant with no route.",
							   NULL,
							   &netrun_default_tenant_connection,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved(NETRUN_POOL_NAME);
}
