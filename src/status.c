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
