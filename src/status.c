/*-------------------------------------------------------------------------
 *
 * status.c
 *	  SQL function netrun_pool.worker_status(): what the launcher and the
 *	  pool worker are doing, read from shared memory.
 *
 * Owns only the read side: it copies the fields under the spinlock and
 * builds the row outside it.  It never signals or changes the processes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "netrun_pool.h"

PG_FUNCTION_INFO_V1(netrun_worker_status);
PG_FUNCTION_INFO_V1(netrun_pool_stats);

Datum
netrun_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[9];
	bool		nulls[9] = {0};
	NetrunShared snap;

	netrun_require_shared();

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	SpinLockAcquire(&netrun_shared->mutex);
	snap.launcher_pid = netrun_shared->launcher_pid;
	snap.worker_pid = netrun_shared->worker_pid;
	snap.state = netrun_shared->state;
	snap.worker_started_at = netrun_shared->worker_started_at;
	snap.worker_starts = netrun_shared->worker_starts;
	snap.worker_reloads = netrun_shared->worker_reloads;
	SpinLockRelease(&netrun_shared->mutex);

	LWLockAcquire(netrun_shared->lock, LW_SHARED);
	snap.npools = netrun_shared->npools;
	snap.loaded_generation = netrun_shared->loaded_generation;
	LWLockRelease(netrun_shared->lock);

	values[0] = Int32GetDatum(snap.launcher_pid);
	nulls[0] = snap.launcher_pid == 0;
	values[1] = Int32GetDatum(snap.worker_pid);
	nulls[1] = snap.worker_pid == 0;
	values[2] = CStringGetTextDatum(netrun_state_name(snap.state));
	values[3] = DirectFunctionCall1(namein, CStringGetDatum(netrun_database));
	values[4] = TimestampTzGetDatum(snap.worker_started_at);
	nulls[4] = snap.worker_pid == 0;
	values[5] = Int64GetDatum((int64) snap.worker_starts);
	values[6] = Int64GetDatum((int64) snap.worker_reloads);
	values[7] = Int32GetDatum(snap.npools);
	values[8] = Int64GetDatum((int64) snap.loaded_generation);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * pool_stats(): one row per registered connection the caller may see:
 * superusers and pg_monitor members see all, others those they have usage
 * on.  The slots are copied under the lock; roles are checked after it.
 */
Datum
netrun_pool_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	NetrunPoolSlot *copy;
	int			n;
	bool		see_all;

	netrun_require_shared();
	InitMaterializedSRF(fcinfo, 0);
	see_all = superuser() || has_privs_of_role(GetUserId(), ROLE_PG_MONITOR);

	LWLockAcquire(netrun_shared->lock, LW_SHARED);
	n = netrun_shared->npools;
	copy = palloc(sizeof(NetrunPoolSlot) * Max(n, 1));
	memcpy(copy, netrun_shared->pools, sizeof(NetrunPoolSlot) * n);
	LWLockRelease(netrun_shared->lock);

	for (int i = 0; i < n; i++)
	{
		NetrunPoolSlot *s = &copy[i];
		int			limit = s->pool_max + s->max_overflow;
		Datum		values[13];
		bool		nulls[13] = {0};
		bool		visible = see_all;

		for (int j = 0; j < s->ngrantees && !visible; j++)
			visible = has_privs_of_role(GetUserId(), s->grantees[j]);
		if (!visible)
			continue;

		values[0] = CStringGetTextDatum(s->name);
		values[1] = CStringGetTextDatum(s->pool_mode >= 0 ?
										netrun_pool_mode_names[s->pool_mode] : "?");
		values[2] = Int32GetDatum(s->pool_min);
		values[3] = Int32GetDatum(s->pool_max);
		values[4] = Int32GetDatum(s->max_overflow);
		values[5] = Int32GetDatum(s->total);
		values[6] = Int32GetDatum(s->checked_out);
		values[7] = Int32GetDatum(s->idle);
		values[8] = Int32GetDatum(Max(0, s->total - s->pool_max));
		values[9] = Int32GetDatum(s->waiting);
		values[10] = Int32GetDatum(s->idle + Max(0, limit - s->total));
		values[11] = Float8GetDatum(limit > 0 ?
									rint(1000.0 * s->checked_out / limit) / 10.0 : 0);
		values[12] = Int64GetDatum(s->exhausted_total);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
