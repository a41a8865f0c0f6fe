/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  netrun_pool's fixed shared memory: sizing, creation, and the small
 *	  accessors that every process uses to read or publish worker state.
 *
 * Owns NetrunShared (declared with its locking rules in netrun_pool.h)
 * and the shmem_request/shmem_startup hooks, always chained to whatever
 * was installed before us.  It must not create DSM segments or allocate
 * anything per call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "netrun_pool.h"
#include "channel.h"
#include "stats.h"

NetrunShared *netrun_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
netrun_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(NetrunShared));

	size = add_size(size, MAXALIGN(mul_size(MaxBackends, sizeof(ChannelSlot))));
	size = add_size(size, MAXALIGN(mul_size(netrun_max_pools, sizeof(NetrunPoolSlot))));
	size = add_size(size, mul_size(mul_size(netrun_max_pools, 2), sizeof(NetrunPoolStats)));
	return size;
}

static void
netrun_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(MAXALIGN(netrun_shmem_size()));
	RequestNamedLWLockTranche(NETRUN_POOL_NAME, 1);
}

static void
netrun_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	netrun_shared = ShmemInitStruct(NETRUN_POOL_NAME, netrun_shmem_size(),
									&found);
	if (!found)
	{
		char	   *p = (char *) netrun_shared;

		memset(netrun_shared, 0, netrun_shmem_size());
		netrun_shared->max_pools = netrun_max_pools;
		netrun_shared->max_channels = MaxBackends;
		p += MAXALIGN(sizeof(NetrunShared));
		netrun_shared->channels = (ChannelSlot *) p;
		for (int i = 0; i < MaxBackends; i++)
		{
			pg_atomic_init_u32(&netrun_shared->channels[i].request_bell, 0);
			pg_atomic_init_u32(&netrun_shared->channels[i].response_bell, 0);
		}
		p += MAXALIGN(mul_size(MaxBackends, sizeof(ChannelSlot)));
		netrun_shared->pools = (NetrunPoolSlot *) p;
		p += MAXALIGN(mul_size(netrun_max_pools, sizeof(NetrunPoolSlot)));
		/* room for pools still draining after their removal, too */
		netrun_shared->max_stats = netrun_max_pools * 2;
		netrun_shared->stats = (NetrunPoolStats *) p;
		for (int i = 0; i < netrun_shared->max_stats; i++)
			SpinLockInit(&netrun_shared->stats[i].mutex);
		pg_atomic_init_u64(&netrun_shared->registry_generation, 1);
		ConditionVariableInit(&netrun_shared->registry_loaded);
		pg_atomic_init_u32(&netrun_shared->spinner, 0);
		pg_atomic_init_u32(&netrun_shared->active_calls, 0);
		netrun_shared->lock = &(GetNamedLWLockTranche(NETRUN_POOL_NAME))->lock;
		SpinLockInit(&netrun_shared->mutex);
		netrun_shared->state = NETRUN_STATE_STOPPED;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
netrun_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = netrun_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = netrun_shmem_startup;
}

/*
 * Raise the documented error when the library was not preloaded, so there
 * is no shared memory and no worker.  Every SQL function that needs either
 * calls this first.
 */
void
netrun_require_shared(void)
{
	if (netrun_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("netrun_pool must be loaded via shared_preload_libraries"),
				 errhint("Add netrun_pool to shared_preload_libraries in postgresql.conf and restart the server.")));
}

void
netrun_set_state(NetrunWorkerState state)
{
	SpinLockAcquire(&netrun_shared->mutex);
	netrun_shared->state = state;
	SpinLockRelease(&netrun_shared->mutex);
}

const char *
netrun_state_name(NetrunWorkerState state)
{
	switch (state)
	{
		case NETRUN_STATE_STOPPED:
			return "stopped";
		case NETRUN_STATE_WAITING_FOR_DATABASE:
			return "waiting for database";
		case NETRUN_STATE_STARTING:
			return "starting";
		case NETRUN_STATE_WAITING_FOR_EXTENSION:
			return "waiting for extension";
		case NETRUN_STATE_RUNNING:
			return "running";
		case NETRUN_STATE_RESTARTING:
			return "restarting";
	}
	return "unknown";			/* keep compiler quiet */
}
