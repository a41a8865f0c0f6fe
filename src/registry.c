/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  The registry's C side: telling the worker that the registry changed,
 *	  keeping registry statements (which may carry passwords) out of the
 *	  log, the worker's load of the registry into shared memory, and
 *	  check_secrets().
 *
 * The SQL side (tables, register/configure/..., the connections view) is
 * in sql/netrun_pool--1.0.sql.  Backends never read the registry tables on
 * a call's path: the worker publishes them into NetrunShared.pools, which
 * any database's backends can read under netrun_shared->lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "netrun_pool.h"
#include "pool.h"

PG_FUNCTION_INFO_V1(netrun_registry_changed);
PG_FUNCTION_INFO_V1(netrun_begin_registry_change);
PG_FUNCTION_INFO_V1(netrun_check_secrets);
PG_FUNCTION_INFO_V1(netrun_request_force_retire);
PG_FUNCTION_INFO_V1(netrun_registry_touch);

/* This transaction's unregister(force => true) names, in TopTransactionContext. */
static List *forced_names = NIL;

/* Per-transaction state of this backend. */
static bool registry_change_pending = false;	/* bump at commit */
static bool xact_callback_registered = false;

/*
 * At commit the change is visible to every new snapshot, so this is the
 * moment to bump the generation and wake the worker; a rollback changes
 * nothing.
 */
static void
registry_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (registry_change_pending && netrun_shared != NULL)
			{
				Latch	   *latch;
				ListCell   *lc;

				/* forced names first: the worker reads them after the bump */
				SpinLockAcquire(&netrun_shared->mutex);
				foreach(lc, forced_names)
				{
					if (netrun_shared->nforced < NETRUN_MAX_FORCED)
						strlcpy(netrun_shared->forced[netrun_shared->nforced++],
								(char *) lfirst(lc), NAMEDATALEN);
					else
						netrun_shared->forced_overflow = true;
				}
				SpinLockRelease(&netrun_shared->mutex);

				pg_atomic_fetch_add_u64(&netrun_shared->registry_generation, 1);
				SpinLockAcquire(&netrun_shared->mutex);
				latch = netrun_shared->worker_latch;
				SpinLockRelease(&netrun_shared->mutex);
				if (latch)
					SetLatch(latch);
			}
			registry_change_pending = false;
			netrun_hide_statement = false;
			forced_names = NIL;	/* its memory went with the transaction */
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			registry_change_pending = false;
			netrun_hide_statement = false;
			forced_names = NIL;
			break;
		default:
			break;
	}
}

static void
registry_track_xact(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(registry_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

/* Statement trigger on the registry tables. */
Datum
netrun_registry_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "netrun_registry_changed: not called by trigger manager");
	registry_track_xact();
	registry_change_pending = true;
	PG_RETURN_POINTER(NULL);
}

/*
 * netrun_pool._registry_touch(): count the current transaction as a
 * registry change, so that its commit wakes the worker.  The install
 * script calls it: the worker, waiting for the extension, then looks at
 * once instead of at its next poll.
 */
Datum
netrun_registry_touch(PG_FUNCTION_ARGS)
{
	registry_track_xact();
	registry_change_pending = true;
	PG_RETURN_VOID();
}

/* Has this backend's open transaction changed the registry? */
bool
netrun_registry_change_pending(void)
{
	return registry_change_pending;
}

uint64
netrun_registry_loaded_generation(void)
{
	uint64		loaded;

	LWLockAcquire(netrun_shared->lock, LW_SHARED);
	loaded = netrun_shared->loaded_generation;
	LWLockRelease(netrun_shared->lock);
	return loaded;
}

/*
 * Read your writes: wait (at most REGISTRY_WAIT_MS, interruptibly) until
 * the worker has loaded every registry change committed up to
 * "generation".  A registry change reaches the worker within milliseconds
 * of its commit, but a call made right after it must not run on the old
 * registry.  False if the worker did not get there (it is not running, or
 * it is slow): the caller goes on with what is loaded.
 */
#define REGISTRY_WAIT_MS	5000

bool
netrun_registry_wait_loaded(uint64 generation)
{
	TimestampTz deadline;
	bool		loaded;

	if (netrun_registry_loaded_generation() >= generation)
		return true;
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), REGISTRY_WAIT_MS);
	ConditionVariablePrepareToSleep(&netrun_shared->registry_loaded);
	for (;;)
	{
		long		remaining;
		NetrunWorkerState state;

		loaded = netrun_registry_loaded_generation() >= generation;
		if (loaded)
			break;
		SpinLockAcquire(&netrun_shared->mutex);
		state = netrun_shared->state;
		SpinLockRelease(&netrun_shared->mutex);
		if (state == NETRUN_STATE_STOPPED || state == NETRUN_STATE_WAITING_FOR_DATABASE)
			break;
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
			break;
		/* a short nap: the worker may die without broadcasting */
		(void) ConditionVariableTimedSleep(&netrun_shared->registry_loaded,
										   Min(remaining, 100), PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	return loaded;
}

/* First call of every registry function: hide the statement from now on. */
Datum
netrun_begin_registry_change(PG_FUNCTION_ARGS)
{
	registry_track_xact();
	netrun_hide_statement = true;
	pgstat_report_activity(STATE_RUNNING, NETRUN_HIDDEN_STATEMENT);
	PG_RETURN_VOID();
}

/* unregister(force => true): cancel the calls in flight once this commits. */
Datum
netrun_request_force_retire(PG_FUNCTION_ARGS)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

	registry_track_xact();
	forced_names = lappend(forced_names,
						   text_to_cstring(PG_GETARG_TEXT_PP(0)));
	MemoryContextSwitchTo(old);
	PG_RETURN_VOID();
}

static int8
registry_code(const char *value, const char *const *names)
{
	for (int i = 0; names[i]; i++)
		if (strcmp(value, names[i]) == 0)
			return i;
	return -1;
}

const char *const netrun_kind_names[] = {"admin", "shared", "analytics", "dedicated", NULL};
const char *const netrun_role_names[] = {"primary", "replica", NULL};
const char *const netrun_pool_mode_names[] = {"transaction", "session", "none", NULL};
const char *const netrun_tenant_guard_names[] = {"required", "if_available", "off", NULL};

/*
 * The worker's load: read the registry (in the worker's own database) and
 * publish it into the shared slots.  The generation is read before the
 * snapshot is taken, so a change that commits during the load bumps it
 * again and causes another load: nothing is missed.
 */
void
netrun_registry_load(void)
{
	uint64		generation = pg_atomic_read_u64(&netrun_shared->registry_generation);
	NetrunPoolSlot *slots;
	PoolDefinition *defs;
	int			nrows;
	int			nslots;
	int			ret;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());

	ret = SPI_execute("SELECT r.name, r.cluster, r.kind, r.role, r.pool_mode, "
					  "r.pool_min, r.pool_max, r.max_overflow, "
					  "r.acquire_timeout_ms, r.connect_timeout_ms, "
					  "r.statement_timeout_ms, r.idle_timeout_s, r.recycle_s, "
					  "r.password_required, r.enabled, "
					  "ARRAY(SELECT u.grantee::oid FROM netrun_pool.usage_grants u "
					  "      WHERE u.name = r.name ORDER BY 1), "
					  "r.conninfo, r.secret, r.max_replica_lag_ms, r.tenant_setting, "
					  "r.tenant_guard, r.pipeline_depth "
					  "FROM netrun_pool.registry r ORDER BY r.name",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the netrun_pool registry: %s",
			 SPI_result_code_string(ret));

	nrows = (int) SPI_processed;
	nslots = Min(nrows, netrun_shared->max_pools);
	if (nrows > nslots)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("netrun_pool registry holds %d connections but netrun_pool.max_pools is %d",
						nrows, netrun_shared->max_pools),
				 errdetail("Connections after the first %d in name order are not served.",
						   nslots),
				 errhint("Raise netrun_pool.max_pools and restart the server.")));

	slots = palloc0(sizeof(NetrunPoolSlot) * Max(nslots, 1));
	defs = palloc0(sizeof(PoolDefinition) * Max(nslots, 1));
	for (int i = 0; i < nslots; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		NetrunPoolSlot *s = &slots[i];
		bool		isnull;
		char	   *str;
		ArrayType  *grantees;
		Datum	   *elems;
		int			nelems;

#define GETINT(col) DatumGetInt32(SPI_getbinval(tup, desc, (col), &isnull))
#define GETBOOL(col) DatumGetBool(SPI_getbinval(tup, desc, (col), &isnull))
		s->in_use = true;
		strlcpy(s->name, SPI_getvalue(tup, desc, 1), NAMEDATALEN);
		str = SPI_getvalue(tup, desc, 2);
		if (str)
			strlcpy(s->cluster, str, NAMEDATALEN);
		s->kind = registry_code(SPI_getvalue(tup, desc, 3), netrun_kind_names);
		s->role = registry_code(SPI_getvalue(tup, desc, 4), netrun_role_names);
		s->pool_mode = registry_code(SPI_getvalue(tup, desc, 5), netrun_pool_mode_names);
		s->pool_min = GETINT(6);
		s->pool_max = GETINT(7);
		s->max_overflow = GETINT(8);
		s->acquire_timeout_ms = GETINT(9);
		s->connect_timeout_ms = GETINT(10);
		s->statement_timeout_ms = GETINT(11);
		s->idle_timeout_s = GETINT(12);
		s->recycle_s = GETINT(13);
		s->password_required = GETBOOL(14);
		s->enabled = GETBOOL(15);
		s->max_replica_lag_ms = GETINT(19);
		strlcpy(s->tenant_setting, SPI_getvalue(tup, desc, 20), sizeof(s->tenant_setting));
		s->tenant_guard = registry_code(SPI_getvalue(tup, desc, 21), netrun_tenant_guard_names);
		s->pipeline_depth = GETINT(22);
		s->stats_index = -1;
#undef GETINT
#undef GETBOOL
		grantees = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 16, &isnull));
		deconstruct_array(grantees, OIDOID, sizeof(Oid), true, TYPALIGN_INT,
						  &elems, NULL, &nelems);
		s->ngrantees = Min(nelems, NETRUN_MAX_GRANTEES);
		for (int j = 0; j < s->ngrantees; j++)
			s->grantees[j] = DatumGetObjectId(elems[j]);

		defs[i].settings = *s;
		defs[i].conninfo = SPI_getvalue(tup, desc, 17);
		{
			Datum		secret = SPI_getbinval(tup, desc, 18, &isnull);

			defs[i].secret = isnull ? NULL : DatumGetByteaPP(secret);
		}
	}

	/* the worker's own pools first: they copy what they keep */
	pool_sync(defs, nslots);
	for (int i = 0; i < nslots; i++)
		slots[i].stats_index = defs[i].settings.stats_index;

	/* then the forced removals this load made visible */
	{
		char		forced[NETRUN_MAX_FORCED][NAMEDATALEN];
		int			nforced;
		bool		overflow;

		SpinLockAcquire(&netrun_shared->mutex);
		nforced = netrun_shared->nforced;
		overflow = netrun_shared->forced_overflow;
		memcpy(forced, netrun_shared->forced, sizeof(forced));
		netrun_shared->nforced = 0;
		netrun_shared->forced_overflow = false;
		SpinLockRelease(&netrun_shared->mutex);

		for (int i = 0; i < nforced; i++)
			pool_force_retire(forced[i], false);
		if (overflow)
			pool_force_retire(NULL, true);
	}

	LWLockAcquire(netrun_shared->lock, LW_EXCLUSIVE);
	memcpy(netrun_shared->pools, slots, sizeof(NetrunPoolSlot) * nslots);
	memset(&netrun_shared->pools[nslots], 0,
		   sizeof(NetrunPoolSlot) * (netrun_shared->max_pools - nslots));
	netrun_shared->npools = nslots;
	netrun_shared->loaded_generation = generation;
	LWLockRelease(netrun_shared->lock);
	ConditionVariableBroadcast(&netrun_shared->registry_loaded);

	pool_publish_gauges();

	pfree(slots);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/* The worker found no extension: nothing is served. */
void
netrun_registry_clear(void)
{
	pool_shutdown_all();
	LWLockAcquire(netrun_shared->lock, LW_EXCLUSIVE);
	memset(netrun_shared->pools, 0,
		   sizeof(NetrunPoolSlot) * netrun_shared->max_pools);
	netrun_shared->npools = 0;
	LWLockRelease(netrun_shared->lock);
}

/*
 * check_secrets(): for every registered connection with a secret, whether
 * it decrypts with the current key file.  What a DBA runs after restoring
 * a dump or replacing the key file.  Shows no secret.
 */
Datum
netrun_check_secrets(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			ret;

	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	ret = SPI_execute("SELECT name, secret FROM netrun_pool.registry "
					  "WHERE secret IS NOT NULL ORDER BY name", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the netrun_pool registry: %s",
			 SPI_result_code_string(ret));

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		char	   *name = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
		bytea	   *blob = DatumGetByteaPP(SPI_getbinval(tup, SPI_tuptable->tupdesc,
														 2, &isnull));
		char	   *plain = netrun_secret_decrypt(blob, name);
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(name);
		values[1] = BoolGetDatum(plain != NULL);
		if (plain)
		{
			explicit_bzero(plain, strlen(plain));
			pfree(plain);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
