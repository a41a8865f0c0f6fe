/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The netrun_pool worker: the one process that will own every remote
 *	  connection.  Started and restarted by the launcher (launcher.c).
 *
 * Owns the worker's life cycle: connecting to netrun_pool.database,
 * waiting quietly for the extension to be created there, reloading its
 * settings on SIGHUP, and publishing its state in shared memory.  It must
 * never block: every wait is a latch wait with CHECK_FOR_INTERRUPTS().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/memutils.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "netrun_pool.h"
#include "pool.h"
#include "resolve.h"

/* How often the worker checks that the extension exists (created/dropped). */
#define WORKER_EXTENSION_POLL_MS	1000

static void
worker_detach_shmem(int code, Datum arg)
{
	SpinLockAcquire(&netrun_shared->mutex);
	if (netrun_shared->worker_pid == MyProcPid)
	{
		netrun_shared->worker_pid = 0;
		netrun_shared->worker_latch = NULL;
		netrun_shared->state = netrun_shared->launcher_pid != 0 ?
			NETRUN_STATE_RESTARTING : NETRUN_STATE_STOPPED;
	}
	SpinLockRelease(&netrun_shared->mutex);
}

/*
 * Claim the single worker slot.  Only the launcher starts workers and it
 * starts one at a time, so a taken slot means a stale twin: leave quietly.
 */
static void
worker_attach_shmem(void)
{
	bool		taken;

	SpinLockAcquire(&netrun_shared->mutex);
	taken = netrun_shared->worker_pid != 0;
	if (!taken)
	{
		netrun_shared->worker_pid = MyProcPid;
		netrun_shared->worker_latch = MyLatch;
		netrun_shared->worker_started_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&netrun_shared->mutex);

	if (taken)
	{
		ereport(LOG,
				(errmsg("netrun_pool worker is already running, exiting")));
		proc_exit(0);
	}
	on_shmem_exit(worker_detach_shmem, (Datum) 0);
}

static bool
worker_extension_exists(void)
{
	bool		exists;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	exists = OidIsValid(get_extension_oid(NETRUN_POOL_NAME, true));
	CommitTransactionCommand();
	pgstat_report_stat(false);
	return exists;
}

/*
 * The loop's state lives at file level, not in locals, because it must
 * survive the longjmp of the error recovery in netrun_worker_main.
 */
static bool have_extension = false;
static bool first_turn = true;
static long error_backoff_ms = 0;	/* grows while turns keep failing */
static bool wait_before_retry = false;	/* set by the error recovery */
static TimestampTz next_extension_check = 0;
static uint64 extension_check_generation = 0;	/* at the last check */

/*
 * One turn of the worker's loop: settings, the extension, the registry.
 * Logs only when the extension appears or goes, never once per poll.
 */
static void
worker_iterate(void)
{
	bool		exists;

	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		resolve_reload();
		SpinLockAcquire(&netrun_shared->mutex);
		netrun_shared->worker_reloads++;
		SpinLockRelease(&netrun_shared->mutex);
	}

	/*
	 * A catalog look-up once a second, not once per call; and at once after
	 * any committed registry change (CREATE EXTENSION counts as one, and a
	 * DROP EXTENSION must not leave us loading a registry that is gone).
	 */
	if (!first_turn && GetCurrentTimestamp() < next_extension_check &&
		pg_atomic_read_u64(&netrun_shared->registry_generation) == extension_check_generation)
		exists = have_extension;
	else
	{
		extension_check_generation = pg_atomic_read_u64(&netrun_shared->registry_generation);
		exists = worker_extension_exists();
		next_extension_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   WORKER_EXTENSION_POLL_MS);
	}
	if (first_turn || exists != have_extension)
	{
		if (exists)
		{
			ereport(LOG,
					(errmsg("netrun_pool worker started in database \"%s\"",
							netrun_database)));
			netrun_set_state(NETRUN_STATE_RUNNING);
			/* force a load: the registry may have been restored meanwhile */
			netrun_shared->loaded_generation = 0;
		}
		else
		{
			ereport(LOG,
					(errmsg("netrun_pool worker is waiting for extension \"netrun_pool\" in database \"%s\"",
							netrun_database),
					 errhint("Run CREATE EXTENSION netrun_pool in database \"%s\".",
							 netrun_database)));
			netrun_set_state(NETRUN_STATE_WAITING_FOR_EXTENSION);
			netrun_registry_clear();
		}
		have_extension = exists;
		first_turn = false;
	}

	if (exists &&
		pg_atomic_read_u64(&netrun_shared->registry_generation) !=
		netrun_shared->loaded_generation)
		netrun_registry_load();
}

void
netrun_worker_main(Datum main_arg)
{
	sigjmp_buf	local_sigjmp_buf;
	MemoryContext loop_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	worker_attach_shmem();

	BackgroundWorkerInitializeConnection(netrun_database, NULL, 0);
	pgstat_report_activity(STATE_IDLE, NULL);
	SpinLockAcquire(&netrun_shared->mutex);
	netrun_shared->worker_encoding = GetDatabaseEncoding();
	SpinLockRelease(&netrun_shared->mutex);

	loop_context = AllocSetContextCreate(TopMemoryContext,
										 "netrun_pool worker loop",
										 ALLOCSET_DEFAULT_SIZES);
	pool_init();

	/*
	 * An error in one turn (a registry that cannot be read, say) must not
	 * kill the worker: report it, clean up, and try again after a pause
	 * that doubles up to a minute, so a lasting fault logs rarely.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		/* the callbacks of the frames the error unwound are gone */
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(loop_context);
		FlushErrorState();
		MemoryContextReset(loop_context);
		pool_after_error();
		RESUME_INTERRUPTS();
		error_backoff_ms = Min(Max(error_backoff_ms * 2, 1000), 60000);
		wait_before_retry = true;
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		long		timeout_ms;

		CHECK_FOR_INTERRUPTS();

		if (wait_before_retry)
		{
			wait_before_retry = false;
			timeout_ms = error_backoff_ms;
		}
		else
		{
			MemoryContextSwitchTo(loop_context);
			worker_iterate();
			/* a transaction in worker_iterate leaves TopMemoryContext current */
			MemoryContextSwitchTo(loop_context);
			if (have_extension)
			{
				/* serve calls; returns after at most a poll interval */
				pool_run_once(WORKER_EXTENSION_POLL_MS);
				MemoryContextReset(loop_context);
				error_backoff_ms = 0;
				continue;
			}
			MemoryContextReset(loop_context);
			error_backoff_ms = 0;
			timeout_ms = WORKER_EXTENSION_POLL_MS;
		}

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
