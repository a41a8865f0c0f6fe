/*-------------------------------------------------------------------------
 *
 * netrun_pool.h
 *	  Declarations shared by every part of netrun_pool: the GUC variables,
 *	  the shared-memory state, and the entry points of the background
 *	  processes.
 *
 * Each .c file under src/ owns one concern and says so in its header;
 * this file only declares what crosses file boundaries.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NETRUN_POOL_H
#define NETRUN_POOL_H

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

#define NETRUN_POOL_NAME		"netrun_pool"
#define NETRUN_LAUNCHER_TYPE	"netrun_pool launcher"
#define NETRUN_WORKER_TYPE		"netrun_pool worker"

/* Shown in pg_stat_activity instead of a registry call, which may hold a password. */
#define NETRUN_HIDDEN_STATEMENT "<netrun_pool registry change: statement hidden>"
/* ... and instead of a token call, or any statement that holds a secret (redact.c). */
#define NETRUN_HIDDEN_SECRET_STATEMENT "<netrun_pool: statement hidden, it holds a secret>"

/* unregister(force => true) names awaiting the worker; more means "all". */
#define NETRUN_MAX_FORCED		16

/* Codes of NetrunPoolSlot.pool_mode (index into netrun_pool_mode_names). */
#define NETRUN_POOL_MODE_TRANSACTION	0
#define NETRUN_POOL_MODE_SESSION		1
#define NETRUN_POOL_MODE_NONE			2

/* Grants of usage kept per connection in shared memory. */
#define NETRUN_MAX_GRANTEES		32

/* guc.c */
extern char *netrun_database;
extern int	netrun_max_pools;
extern int	netrun_max_connections;
extern char *netrun_secret_key_file;
extern int	netrun_health_interval_ms;
extern int	netrun_spin_wait_us;
extern char *netrun_dns_servers;
extern int	netrun_max_request_size_kb;

/*
 * Polling (spin_wait_us) pays while at most this many calls are in
 * flight: with two, each call still finds the other side awake, and the
 * calls' own work fits the two CPUs polling leaves to it on a small
 * machine.  With more, the waits overlap and sleeping costs nothing.
 */
#define NETRUN_SPIN_MAX_CALLS	2
extern int	netrun_degraded_latency_ms;
extern int	netrun_unhealthy_after;
extern int	netrun_degraded_error_percent;
extern char *netrun_tenant_id;
extern char *netrun_tenant_setting;
extern int	netrun_tenant_id_format;
extern int	netrun_tenant_mode;
extern char *netrun_tenant_key_file;
extern char *netrun_guard_key_file;
extern char *netrun_tenant_claim;
extern char *netrun_tenant_column;
extern int	netrun_enforce_rls;
extern char *netrun_tenant_schema_prefix;
extern char *netrun_shared_schema;
extern bool netrun_tenant_search_path;
extern char *netrun_default_tenant_connection;

/* netrun_pool.tenant_id_format, netrun_pool.tenant_mode, netrun_pool.enforce_rls */
typedef enum TenantIdFormat
{
	TENANT_FORMAT_TEXT = 0,
	TENANT_FORMAT_UUID,
	TENANT_FORMAT_INTEGER,
	TENANT_FORMAT_SLUG
} TenantIdFormat;

#define TENANT_MODE_OPEN	0
#define TENANT_MODE_SIGNED	1
#define TENANT_MODE_POOL	2		/* a remote: only the pool's assertions */

#define ENFORCE_RLS_OFF		0
#define ENFORCE_RLS_WARN	1
#define ENFORCE_RLS_ERROR	2

extern void netrun_define_gucs(void);

/*
 * What the pool worker is doing, as shown by netrun_pool.worker_status().
 * The launcher owns the states before the worker exists; the worker owns
 * the rest.
 */
typedef enum NetrunWorkerState
{
	NETRUN_STATE_STOPPED = 0,	/* no launcher (not yet started) */
	NETRUN_STATE_WAITING_FOR_DATABASE,	/* launcher: database missing */
	NETRUN_STATE_STARTING,		/* launcher: worker registered */
	NETRUN_STATE_WAITING_FOR_EXTENSION,	/* worker: extension missing */
	NETRUN_STATE_RUNNING,		/* worker: serving */
	NETRUN_STATE_RESTARTING		/* launcher: worker exited, backing off */
} NetrunWorkerState;

/*
 * One registered connection as the worker published it.  Codes index
 * netrun_kind_names, netrun_role_names and netrun_pool_mode_names.
 */
typedef struct NetrunPoolSlot
{
	bool		in_use;
	bool		enabled;
	bool		password_required;
	int8		kind;
	int8		role;
	int8		pool_mode;
	char		name[NAMEDATALEN];
	char		cluster[NAMEDATALEN];	/* "" if none */
	int32		pool_min;
	int32		pool_max;
	int32		max_overflow;
	int32		acquire_timeout_ms;
	int32		connect_timeout_ms;
	int32		statement_timeout_ms;
	int32		idle_timeout_s;
	int32		recycle_s;
	int32		max_replica_lag_ms;	/* 0: no limit */
	char		tenant_setting[128];	/* the remote setting carrying the tenant */
	int8		tenant_guard;	/* GUARD_MODE_* (guard.h) */
	int32		pipeline_depth; /* calls in flight on one connection */
	int32		stats_index;	/* into NetrunShared.stats, or -1 */
	int32		ngrantees;
	Oid			grantees[NETRUN_MAX_GRANTEES];

	/*
	 * Gauges the worker publishes (under the lock, every 250 ms and after
	 * each registry load; a load zeroes them until then).
	 */
	int32		total;			/* open or opening connections */
	int32		checked_out;	/* running a call, pinned, or being reset */
	int32		idle;
	int32		waiting;		/* callers waiting for a connection */
} NetrunPoolSlot;

/*
 * The one shared-memory struct.  It is created by the shmem startup hook
 * and lives as long as the postmaster's shared memory; a crash-restart of
 * the server re-creates it from scratch.
 *
 * Every field below "mutex" is protected by that spinlock: writers are the
 * launcher and the worker, readers are any backend.  Hold it only to copy
 * a few fields; never across a call that can error or sleep.
 */
typedef struct NetrunShared
{
	LWLock	   *lock;			/* reserved for the registry and pools */

	slock_t		mutex;
	pid_t		launcher_pid;
	pid_t		worker_pid;
	Latch	   *worker_latch;	/* the worker's process latch, or NULL */
	NetrunWorkerState state;
	TimestampTz worker_started_at;
	uint64		worker_starts;	/* how many times the launcher started it */
	uint64		worker_reloads; /* SIGHUPs the worker has processed */
	int			worker_encoding;	/* netrun_pool.database's encoding: the
									 * client_encoding of every remote
									 * connection */
	pg_atomic_uint32 spinner;	/* pid of the one caller polling for its
								 * answer (netrun_pool.spin_wait_us), or 0 */
	pg_atomic_uint32 active_calls;	/* calls the worker is serving */

	/*
	 * Bumped by any backend whose transaction changed the registry, at
	 * commit (registry.c); atomic, so no lock.
	 */
	pg_atomic_uint64 registry_generation;

	/*
	 * Connections unregistered with force, published at commit before the
	 * generation moves, consumed by the worker's next load.  Under mutex.
	 */
	int			nforced;
	bool		forced_overflow;	/* too many: treat every removal as forced */
	char		forced[NETRUN_MAX_FORCED][NAMEDATALEN];

	/*
	 * The registry as the worker last loaded it: written by the worker
	 * under "lock" exclusive, read by backends under "lock" shared.
	 */
	uint64		loaded_generation;
	ConditionVariable registry_loaded;	/* broadcast after each load */
	int			npools;
	int			max_pools;		/* netrun_pool.max_pools, fixed at start */
	int			max_channels;	/* MaxBackends at start */
	int			max_stats;		/* entries in stats[] (2 x max_pools) */

	/*
	 * Per-backend channel slots (struct ChannelSlot, channel.h), indexed by
	 * BackendId - 1, then max_pools NetrunPoolSlots, then max_stats
	 * counter and health entries (struct NetrunPoolStats, stats.h, each
	 * with its own spinlock).  The arrays live after this struct; see
	 * netrun_shmem_size().
	 */
	struct ChannelSlot *channels;
	NetrunPoolSlot *pools;
	struct NetrunPoolStats *stats;
} NetrunShared;

/* shmem.c */
extern NetrunShared *netrun_shared;

extern void netrun_shmem_install_hooks(void);
extern void netrun_require_shared(void);
extern void netrun_set_state(NetrunWorkerState state);
extern const char *netrun_state_name(NetrunWorkerState state);

/* secret.c */
#define NETRUN_KEY_FILE_MAX		4096	/* key files are shorter than this */
extern int	netrun_read_key_file(const char *path, const char *what, char *buf);
extern bool netrun_secret_key_configured(void);
extern bytea *netrun_secret_encrypt(const char *plain, const char *name);
extern char *netrun_secret_decrypt(const bytea *blob, const char *name);

/* conninfo.c */
struct _PQconninfoOption;
extern struct _PQconninfoOption *netrun_conninfo_parse(const char *name,
													   const char *conninfo);

/* registry.c */
extern const char *const netrun_kind_names[];
extern const char *const netrun_role_names[];
extern const char *const netrun_pool_mode_names[];
extern const char *const netrun_tenant_guard_names[];
extern void netrun_registry_load(void);
extern void netrun_registry_clear(void);
extern bool netrun_registry_change_pending(void);
extern uint64 netrun_registry_loaded_generation(void);
extern bool netrun_registry_wait_loaded(uint64 generation);

/* redact.c */
extern bool netrun_hide_statement;
extern char *netrun_redact_secrets(const char *text);
extern void netrun_hide_current_statement(const char *placeholder);
/* the most characters of a caller's value a message quotes */
#define NETRUN_MESSAGE_VALUE_CHARS	64
extern const char *netrun_message_value(const char *value);
extern void netrun_redact_install_hook(void);

/* launcher.c */
extern void netrun_register_launcher(void);
extern PGDLLEXPORT void netrun_launcher_main(Datum main_arg);

/* worker.c */
extern PGDLLEXPORT void netrun_worker_main(Datum main_arg);

#endif							/* NETRUN_POOL_H */
