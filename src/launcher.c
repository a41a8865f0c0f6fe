/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The netrun_pool launcher: a static background worker that starts
 *	  the pool worker once its database exists, and starts it again when
 *	  it exits.
 *
 * Why a launcher: the pool worker must connect to netrun_pool.database,
 * and a background worker that connects to a missing database dies with
 * FATAL, so a single static worker would crash-loop and fill the log until
 * someone creates the database.  The launcher connects to no database (it
 * reads only the shared catalog pg_database), polls quietly, logs once,
 * and registers the pool worker as a dynamic worker when the database is
 * there.  This is the pattern of PostgreSQL's logical replication launcher.
 *
 * The launcher also serves the HTTP endpoint (netrun_pool.http_listen,
 * http.c): it is the one process of ours that no pooled call waits for,
 * so scrapes and probes cannot delay a call.  Its event loop waits on the
 * latch and on the endpoint's descriptor together.
 *
 * The launcher never touches remote connections, pools or the registry.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "http.h"
#include "netrun_pool.h"

/* How often to look for a missing database, and the worker restart backoff. */
#define LAUNCHER_POLL_MS			1000
#define WORKER_RESTART_MIN_MS		1000
#define WORKER_RESTART_MAX_MS		60000
/* A worker that lived this long resets the backoff to its minimum. */
#define WORKER_STABLE_MS			60000

void
netrun_register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	strlcpy(bgw.bgw_library_name, NETRUN_POOL_NAME, BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "netrun_launcher_main", BGW_MAXLEN);
	strlcpy(bgw.bgw_name, NETRUN_LAUNCHER_TYPE, BGW_MAXLEN);
	strlcpy(bgw.bgw_type, NETRUN_LAUNCHER_TYPE, BGW_MAXLEN);
	RegisterBackgroundWorker(&bgw);
}

static void
launcher_detach_shmem(int code, Datum arg)
{
	SpinLockAcquire(&netrun_shared->mutex);
	netrun_shared->launcher_pid = 0;
	if (netrun_shared->worker_pid == 0)
		netrun_shared->state = NETRUN_STATE_STOPPED;
	SpinLockRelease(&netrun_shared->mutex);
}

/*
 * Is the database there and willing to take the worker's connection?  A
 * database half-way through DROP (datconnlimit -2) or closed to connections
 * counts as missing: connecting would only fail.
 */
static bool
launcher_database_ready(const char *dbname)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		ready = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();

	rel = table_open(DatabaseRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_database_datname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(dbname));
	/* A heap scan: indexes are not readable without a database. */
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		ready = db->datallowconn && db->datconnlimit != -2;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	CommitTransactionCommand();
	return ready;
}

static BackgroundWorkerHandle *
launcher_start_worker(void)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher restarts it */
	bgw.bgw_notify_pid = MyProcPid;
	strlcpy(bgw.bgw_library_name, NETRUN_POOL_NAME, BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "netrun_worker_main", BGW_MAXLEN);
	strlcpy(bgw.bgw_name, NETRUN_WORKER_TYPE, BGW_MAXLEN);
	strlcpy(bgw.bgw_type, NETRUN_WORKER_TYPE, BGW_MAXLEN);

	/*
	 * STARTING before the worker exists: written after, it could overwrite
	 * the RUNNING of a worker that started quickly, for good.
	 */
	SpinLockAcquire(&netrun_shared->mutex);
	netrun_shared->state = NETRUN_STATE_STARTING;
	SpinLockRelease(&netrun_shared->mutex);
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
	{
		netrun_set_state(NETRUN_STATE_RESTARTING);
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the netrun_pool worker"),
				 errhint("Raise max_worker_processes.")));
		return NULL;
	}

	SpinLockAcquire(&netrun_shared->mutex);
	netrun_shared->worker_starts++;
	SpinLockRelease(&netrun_shared->mutex);
	return handle;
}

void
netrun_launcher_main(Datum main_arg)
{
	BackgroundWorkerHandle *handle = NULL;
	TimestampTz started_at = 0;
	TimestampTz restart_at = 0;
	TimestampTz database_check_at = 0;
	int			backoff_ms = 0;
	bool		told_waiting = false;
	WaitEventSet *wait_set;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* No database: only shared catalogs are readable, which is all we need. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	SpinLockAcquire(&netrun_shared->mutex);
	netrun_shared->launcher_pid = MyProcPid;
	SpinLockRelease(&netrun_shared->mutex);
	on_shmem_exit(launcher_detach_shmem, (Datum) 0);

	/* The latch, the postmaster, and the HTTP endpoint if it is on. */
	http_start();
	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	if (http_socket() >= 0)
		AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, http_socket(), NULL, NULL);

	for (;;)
	{
		long		timeout_ms = -1;
		long		http_ms;
		TimestampTz now;
		pid_t		pid;
		WaitEvent	event;

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			http_reload();
		}

		now = GetCurrentTimestamp();

		if (handle != NULL &&
			GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
		{
			/* The worker logged why it exited; back off before the next. */
			pfree(handle);
			handle = NULL;
			if (TimestampDifferenceExceeds(started_at, now, WORKER_STABLE_MS))
				backoff_ms = WORKER_RESTART_MIN_MS;
			else
				backoff_ms = Min(Max(backoff_ms * 2, WORKER_RESTART_MIN_MS),
								 WORKER_RESTART_MAX_MS);
			restart_at = TimestampTzPlusMilliseconds(now, backoff_ms);
			netrun_set_state(NETRUN_STATE_RESTARTING);
		}

		if (handle == NULL)
		{
			pid_t		orphan;

			/*
			 * A worker started by an earlier launcher (this one restarted
			 * after an error) is still running: we have no handle on it,
			 * so watch its pid until it goes instead of starting a twin.
			 */
			SpinLockAcquire(&netrun_shared->mutex);
			orphan = netrun_shared->worker_pid;
			SpinLockRelease(&netrun_shared->mutex);

			if (orphan != 0)
				timeout_ms = LAUNCHER_POLL_MS;
			else if (now < restart_at)
				timeout_ms = Max(1, (long) ((restart_at - now) / 1000));
			else if (now < database_check_at)
				/* HTTP requests wake us more often than the catalog needs a look */
				timeout_ms = Max(1, (long) ((database_check_at - now) / 1000));
			else if (!launcher_database_ready(netrun_database))
			{
				if (!told_waiting)
					ereport(LOG,
							(errmsg("netrun_pool launcher is waiting for database \"%s\"",
									netrun_database),
							 errhint("Create the database, or set netrun_pool.database to an existing one.")));
				told_waiting = true;
				netrun_set_state(NETRUN_STATE_WAITING_FOR_DATABASE);
				timeout_ms = LAUNCHER_POLL_MS;
				database_check_at = TimestampTzPlusMilliseconds(now, LAUNCHER_POLL_MS);
			}
			else
			{
				told_waiting = false;
				handle = launcher_start_worker();
				started_at = now;
				if (handle == NULL)
				{
					restart_at = TimestampTzPlusMilliseconds(now,
															 WORKER_RESTART_MAX_MS);
					timeout_ms = WORKER_RESTART_MAX_MS;
				}
			}
		}

		/* libmicrohttpd's own deadlines (timeouts, pending work) bound the wait */
		http_ms = http_timeout_ms();
		if (http_ms >= 0 && (timeout_ms < 0 || http_ms < timeout_ms))
			timeout_ms = http_ms;

		(void) WaitEventSetWait(wait_set, timeout_ms, &event, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);

		/* Whatever woke us, MHD_run() takes what is ready and never waits. */
		http_serve();
	}
}
