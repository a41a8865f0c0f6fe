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
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

#define NETRUN_POOL_NAME		"netrun_pool"
#define NETRUN_LAUNCHER_TYPE	"netrun_pool launcher"
#define NETRUN_WORKER_TYPE		"netrun_pool worker"

/* guc.c */
extern char *netrun_database;

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
} NetrunShared;

/* shmem.c */
extern NetrunShared *netrun_shared;

extern void netrun_shmem_install_hooks(void);
extern void netrun_require_shared(void);
extern void netrun_set_state(NetrunWorkerState state);
extern const char *netrun_state_name(NetrunWorkerState state);

/* launcher.c */
extern void netrun_register_launcher(void);
extern PGDLLEXPORT void netrun_launcher_main(Datum main_arg);

/* worker.c */
extern PGDLLEXPORT void netrun_worker_main(Datum main_arg);

#endif							/* NETRUN_POOL_H */
