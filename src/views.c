/*-------------------------------------------------------------------------
 *
 * views.c
 *	  What operators read: the pool_stats and health views, health_check(),
 *	  ready(), alive(), reset_stats() and prometheus().
 *
 * Owns the read side of the registry slots (gauges) and the stats entries
 * (counters, histograms, health), and who may see which row: superusers
 * and pg_monitor members see every connection, other roles those they
 * have usage on.  Every function copies what it needs under the locks
 * (the LWLock for the slots, each entry's spinlock) and builds its output
 * after releasing them.  Nothing here shows a secret: the registry's
 * conninfo and password never reach shared memory.
 *
 * The texts of health_check(), ready() and prometheus() are rendered by
 * the views_* functions of views.h from shared memory alone, with no
 * catalog access, so that the HTTP endpoint (http.c), served by the
 * launcher without a database, renders exactly the same; only the choice
 * of rows (by role, after a wait for the registry) is the SQL side's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "netrun_pool.h"
#include "route.h"
#include "stats.h"
#include "views.h"

PG_FUNCTION_INFO_V1(netrun_pool_stats);
PG_FUNCTION_INFO_V1(netrun_health);
PG_FUNCTION_INFO_V1(netrun_health_check);
PG_FUNCTION_INFO_V1(netrun_tenant_guard_status);
PG_FUNCTION_INFO_V1(netrun_ready);
PG_FUNCTION_INFO_V1(netrun_alive);
PG_FUNCTION_INFO_V1(netrun_reset_stats);
PG_FUNCTION_INFO_V1(netrun_prometheus);

static bool
view_may_see(const NetrunPoolSlot *slot, bool see_all)
{
	if (see_all)
		return true;
	for (int i = 0; i < slot->ngrantees; i++)
		if (has_privs_of_role(GetUserId(), slot->grantees[i]))
			return true;
	return false;
}

/*
 * The slots "match" takes ("name" is ignored for VIEWS_MATCH_ALL), in name
 * order, with their stats: shared memory only, for every caller.
 */
ViewRow *
views_collect(const char *name, ViewsMatch match, int *nrows)
{
	ViewRow    *rows;
	int			n = 0;

	netrun_require_shared();
	rows = palloc(sizeof(ViewRow) * Max(netrun_shared->max_pools, 1));

	LWLockAcquire(netrun_shared->lock, LW_SHARED);
	for (int i = 0; i < netrun_shared->npools; i++)
	{
		NetrunPoolSlot *slot = &netrun_shared->pools[i];

		if (match != VIEWS_MATCH_ALL)
		{
			bool		by_name = match != VIEWS_MATCH_CLUSTER &&
				strcmp(slot->name, name) == 0;
			bool		by_cluster = match != VIEWS_MATCH_NAME &&
				slot->cluster[0] && strcmp(slot->cluster, name) == 0;

			if (!by_name && !by_cluster)
				continue;
		}
		rows[n++].slot = *slot;
	}
	LWLockRelease(netrun_shared->lock);

	for (int i = 0; i < n; i++)
		stats_copy(rows[i].slot.stats_index, &rows[i].stats);
	*nrows = n;
	return rows;
}

/*
 * The connections the caller may see, in name order; with "name", only
 * that connection or the members of that cluster, and an error if there
 * are none (42704) or none the caller may see (42501).
 */
static ViewRow *
views_snapshot(const char *name, int *nrows)
{
	ViewRow    *rows;
	int			n = 0;
	int			matched = 0;
	bool		see_all;
	uint64		committed;

	netrun_require_shared();
	see_all = superuser() || has_privs_of_role(GetUserId(), ROLE_PG_MONITOR);

	/* read your writes, as calls do (route.c) */
	committed = pg_atomic_read_u64(&netrun_shared->registry_generation);
	if (netrun_registry_loaded_generation() < committed)
		(void) netrun_registry_wait_loaded(committed);

	rows = views_collect(name, name ? VIEWS_MATCH_NAME_OR_CLUSTER : VIEWS_MATCH_ALL,
						 &matched);

	/* role membership may read the catalog: only after the lock */
	for (int i = 0; i < matched; i++)
	{
		if (!view_may_see(&rows[i].slot, see_all))
			continue;
		if (n != i)
			rows[n] = rows[i];
		n++;
	}
	if (name && matched == 0)
		route_report_unknown(name);
	if (name && n == 0)
		route_report_no_usage(name, !(matched == 1 && strcmp(rows[0].slot.name, name) == 0));
	*nrows = n;
	return rows;
}

/* Milliseconds rounded to microseconds, as the views show them. */
static double
round_ms(double ms)
{
	return rint(ms * 1000.0) / 1000.0;
}

static int
row_limit(const ViewRow *r)
{
	return r->slot.pool_max + r->slot.max_overflow;
}

static int
row_overflow(const ViewRow *r)
{
	return Max(0, r->slot.total - r->slot.pool_max);
}

static int
row_available(const ViewRow *r)
{
	return r->slot.idle + Max(0, row_limit(r) - r->slot.total);
}

static double
row_utilization(const ViewRow *r)
{
	int			limit = row_limit(r);

	return limit > 0 ? rint(1000.0 * r->slot.checked_out / limit) / 10.0 : 0;
}

/* Health as users see it: a disabled connection is not probed. */
static int
row_status(const ViewRow *r)
{
	return r->slot.enabled ? r->stats.status : HEALTH_UNKNOWN;
}

/* The role: what the last probe saw, else what was registered. */
/*
 * Whether the remote enforces the tenant guard: "off" when the connection
 * does not use it, else what the latest new connection found ("unknown"
 * before any).
 */
static const char *
row_guard(const ViewRow *r)
{
	if (r->slot.tenant_guard == GUARD_MODE_OFF)
		return "off";
	if (r->stats.guard == GUARD_OFF)
		return "unknown";		/* found before the setting changed */
	return guard_state_name(r->stats.guard);
}

static const char *
row_guard_detail(const ViewRow *r)
{
	if (r->slot.tenant_guard == GUARD_MODE_OFF || r->stats.guard != GUARD_ABSENT ||
		r->stats.guard_detail[0] == '\0')
		return NULL;
	return r->stats.guard_detail;
}

static const char *
row_role(const ViewRow *r)
{
	if (r->stats.role_known)
		return r->stats.is_replica ? "replica" : "primary";
	return r->slot.role >= 0 ? netrun_role_names[r->slot.role] : "primary";
}

/* Serving calls: the last probe succeeded and the circuit is closed. */
static bool
row_healthy(const ViewRow *r)
{
	int			status = row_status(r);

	return r->slot.enabled && r->stats.circuit == CIRCUIT_CLOSED &&
		r->stats.consecutive_failures == 0 &&
		(status == HEALTH_HEALTHY || status == HEALTH_DEGRADED);
}

static char *
optional_arg(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/* ---------------------------------------------------------------------
 * pool_stats
 * ---------------------------------------------------------------------
 */

#define POOL_STATS_COLS 32

Datum
netrun_pool_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ViewRow    *rows;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	rows = views_snapshot(NULL, &n);

	for (int i = 0; i < n; i++)
	{
		ViewRow    *r = &rows[i];
		NetrunPoolStats *st = &r->stats;
		Datum		values[POOL_STATS_COLS];
		bool		nulls[POOL_STATS_COLS] = {0};
		int			c = 0;

		values[c++] = CStringGetTextDatum(r->slot.name);
		nulls[c] = r->slot.cluster[0] == '\0';
		values[c++] = CStringGetTextDatum(r->slot.cluster);
		values[c++] = CStringGetTextDatum(row_role(r));
		values[c++] = CStringGetTextDatum(r->slot.pool_mode >= 0 ?
										  netrun_pool_mode_names[r->slot.pool_mode] : "?");
		values[c++] = CStringGetTextDatum(r->slot.enabled ?
										  stats_status_name(row_status(r)) : "disabled");
		values[c++] = Int32GetDatum(r->slot.pool_min);
		values[c++] = Int32GetDatum(r->slot.pool_max);
		values[c++] = Int32GetDatum(r->slot.max_overflow);
		values[c++] = Int32GetDatum(r->slot.total);
		values[c++] = Int32GetDatum(r->slot.checked_out);
		values[c++] = Int32GetDatum(r->slot.idle);
		values[c++] = Int32GetDatum(row_overflow(r));
		values[c++] = Int32GetDatum(r->slot.waiting);
		values[c++] = Int32GetDatum(row_available(r));
		values[c++] = Float8GetDatum(row_utilization(r));
		values[c++] = Int64GetDatum(st->acquired_total);
		values[c++] = Float8GetDatum(round_ms(stats_hist_avg_ms(&st->acquire_wait)));
		values[c++] = Float8GetDatum(round_ms(stats_hist_percentile_ms(&st->acquire_wait, 0.95)));
		values[c++] = Float8GetDatum(round_ms(st->acquire_wait.max_us / 1000.0));
		values[c++] = Int64GetDatum(st->queries_total);
		values[c++] = Float8GetDatum(round_ms(stats_hist_avg_ms(&st->query_time)));
		values[c++] = Float8GetDatum(round_ms(stats_hist_percentile_ms(&st->query_time, 0.95)));
		values[c++] = Int64GetDatum(st->errors_total);
		values[c++] = Int64GetDatum(st->timeouts_total);
		values[c++] = Int64GetDatum(st->exhausted_total);
		values[c++] = Int64GetDatum(st->created_total);
		values[c++] = Int64GetDatum(st->closed_total);
		values[c++] = Int64GetDatum(st->recycled_total);
		nulls[c] = st->last_error_at == 0;
		values[c++] = CStringGetTextDatum(st->last_error);
		nulls[c] = st->last_error_at == 0;
		values[c++] = TimestampTzGetDatum(st->last_error_at);
		nulls[c] = st->stats_reset == 0;
		values[c++] = TimestampTzGetDatum(st->stats_reset);
		values[c++] = Int64GetDatum(st->pipelined_total);
		Assert(c == POOL_STATS_COLS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * health
 * ---------------------------------------------------------------------
 */

#define HEALTH_COLS 13

Datum
netrun_health(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ViewRow    *rows;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	rows = views_snapshot(NULL, &n);

	for (int i = 0; i < n; i++)
	{
		ViewRow    *r = &rows[i];
		NetrunPoolStats *st = &r->stats;
		Datum		values[HEALTH_COLS];
		bool		nulls[HEALTH_COLS] = {0};
		bool		probed = r->slot.enabled && st->role_known;
		int			c = 0;

		values[c++] = CStringGetTextDatum(r->slot.name);
		values[c++] = CStringGetTextDatum(stats_status_name(row_status(r)));
		nulls[c] = !r->slot.enabled || st->latency_ms < 0;
		values[c++] = Float8GetDatum(round_ms(st->latency_ms));
		nulls[c] = !r->slot.enabled || st->checked_at == 0;
		values[c++] = TimestampTzGetDatum(st->checked_at);
		values[c++] = Int32GetDatum(r->slot.enabled ? st->consecutive_failures : 0);
		values[c++] = CStringGetTextDatum(stats_circuit_name(r->slot.enabled ?
															 st->circuit : CIRCUIT_CLOSED));
		nulls[c] = !probed;
		values[c++] = BoolGetDatum(st->is_replica);
		nulls[c] = !probed || !st->is_replica || st->replica_lag_ms < 0;
		values[c++] = Int64GetDatum(st->replica_lag_ms);
		nulls[c] = !probed;
		values[c++] = CStringGetTextDatum(st->server_version);
		nulls[c] = !probed;
		values[c++] = TimestampTzGetDatum(st->remote_time);
		nulls[c] = st->health_error[0] == '\0';
		values[c++] = CStringGetTextDatum(st->health_error);
		values[c++] = CStringGetTextDatum(row_guard(r));
		nulls[c] = row_guard_detail(r) == NULL;
		values[c++] = CStringGetTextDatum(row_guard_detail(r) ? row_guard_detail(r) : "");
		Assert(c == HEALTH_COLS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * health_check(name): what application pools report, as jsonb
 * ---------------------------------------------------------------------
 */

static void
json_key(StringInfo buf, const char *key)
{
	if (buf->len > 0 && buf->data[buf->len - 1] != '{')
		appendStringInfoChar(buf, ',');
	escape_json(buf, key);
	appendStringInfoChar(buf, ':');
}

static void
json_str(StringInfo buf, const char *key, const char *value)
{
	json_key(buf, key);
	if (value)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, "null");
}

static void
json_num(StringInfo buf, const char *key, double value)
{
	json_key(buf, key);
	appendStringInfo(buf, "%.15g", value);
}

static void
json_bool(StringInfo buf, const char *key, bool value)
{
	json_key(buf, key);
	appendStringInfoString(buf, value ? "true" : "false");
}

static void
json_null(StringInfo buf, const char *key)
{
	json_key(buf, key);
	appendStringInfoString(buf, "null");
}

static void
json_row(StringInfo buf, const ViewRow *r, const char *now)
{
	const NetrunPoolStats *st = &r->stats;

	appendStringInfoChar(buf, '{');
	json_str(buf, "name", r->slot.name);
	json_bool(buf, "healthy", row_healthy(r));
	json_str(buf, "status", r->slot.enabled ? stats_status_name(row_status(r)) : "disabled");
	json_str(buf, "circuit", stats_circuit_name(r->slot.enabled ? st->circuit : CIRCUIT_CLOSED));
	json_str(buf, "role", row_role(r));
	json_num(buf, "pool_size", r->slot.pool_max);
	json_num(buf, "checked_in_connections", r->slot.idle);
	json_num(buf, "checked_out_connections", r->slot.checked_out);
	json_num(buf, "overflow_connections", row_overflow(r));
	json_num(buf, "max_overflow", r->slot.max_overflow);
	json_num(buf, "waiting", r->slot.waiting);
	json_num(buf, "utilization_percent", row_utilization(r));
	json_num(buf, "available_connections", row_available(r));
	if (st->latency_ms >= 0 && r->slot.enabled)
		json_num(buf, "latency_ms", round_ms(st->latency_ms));
	else
		json_null(buf, "latency_ms");
	json_num(buf, "consecutive_failures", r->slot.enabled ? st->consecutive_failures : 0);
	if (st->is_replica && st->replica_lag_ms >= 0)
		json_num(buf, "replica_lag_ms", st->replica_lag_ms);
	else
		json_null(buf, "replica_lag_ms");
	json_str(buf, "database", st->role_known ? st->database : NULL);
	json_str(buf, "server_version", st->role_known ? st->server_version : NULL);
	json_str(buf, "last_error", st->health_error[0] ? st->health_error : NULL);
	json_str(buf, "tenant_guard", row_guard(r));
	json_str(buf, "tenant_guard_detail", row_guard_detail(r));
	json_str(buf, "timestamp", now);
	appendStringInfoChar(buf, '}');
}

/*
 * Worst first: any unhealthy, then degraded, then unknown, else healthy.
 * Nothing in sight (none registered, or none the caller may see) is
 * unknown: a probe running as the wrong role must not pass.
 */
static const char *
overall_status(const ViewRow *rows, int n)
{
	bool		seen[HEALTH_UNHEALTHY + 1] = {0};

	if (n == 0)
		return "unknown";

	for (int i = 0; i < n; i++)
		if (rows[i].slot.enabled)
			seen[row_status(&rows[i])] = true;
	if (seen[HEALTH_UNHEALTHY])
		return "unhealthy";
	if (seen[HEALTH_DEGRADED])
		return "degraded";
	if (seen[HEALTH_UNKNOWN])
		return "unknown";
	return "healthy";
}

static char *
now_iso(void)
{
	/* ISO 8601 whatever the session's DateStyle */
	return DatumGetCString(DirectFunctionCall1(timestamptz_out,
											   TimestampTzGetDatum(GetCurrentTimestamp())));
}

/*
 * health_check()'s JSON for "rows": one connection's own object when
 * "single", else the summary form with every row under "connections".
 */
void
views_render_health_check(StringInfo buf, const ViewRow *rows, int n, bool single)
{
	char	   *now = now_iso();

	if (single)
	{
		Assert(n == 1);
		json_row(buf, &rows[0], now);
	}
	else
	{
		const char *overall = overall_status(rows, n);

		appendStringInfoChar(buf, '{');
		json_str(buf, "status", overall);
		json_bool(buf, "healthy", strcmp(overall, "healthy") == 0 ||
				  strcmp(overall, "degraded") == 0);
		json_str(buf, "timestamp", now);
		json_key(buf, "connections");
		appendStringInfoChar(buf, '{');
		for (int i = 0; i < n; i++)
		{
			if (i > 0)
				appendStringInfoChar(buf, ',');
			escape_json(buf, rows[i].slot.name);
			appendStringInfoChar(buf, ':');
			json_row(buf, &rows[i], now);
		}
		appendStringInfoString(buf, "}}");
	}
	pfree(now);
}

Datum
netrun_health_check(PG_FUNCTION_ARGS)
{
	char	   *name = optional_arg(fcinfo, 0);
	ViewRow    *rows;
	int			n;
	StringInfoData buf;

	rows = views_snapshot(name, &n);
	initStringInfo(&buf);

	/* a connection's own object; a cluster or everything: the summary form */
	views_render_health_check(&buf, rows, n,
							  name != NULL && n == 1 && strcmp(rows[0].slot.name, name) == 0);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * The tenant guard's state of one connection, for the connections view,
 * which has already decided who sees the row: NULL, not an error, for a
 * name the worker has not loaded yet or without shared memory.
 */
Datum
netrun_tenant_guard_status(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ViewRow		row;
	bool		found = false;

	if (netrun_shared == NULL)
		PG_RETURN_NULL();
	LWLockAcquire(netrun_shared->lock, LW_SHARED);
	for (int i = 0; i < netrun_shared->npools && !found; i++)
		if (strcmp(netrun_shared->pools[i].name, name) == 0)
		{
			row.slot = netrun_shared->pools[i];
			found = true;
		}
	LWLockRelease(netrun_shared->lock);
	if (!found)
		PG_RETURN_NULL();
	stats_copy(row.slot.stats_index, &row.stats);
	PG_RETURN_TEXT_P(cstring_to_text(row_guard(&row)));
}

/* ---------------------------------------------------------------------
 * ready(name), alive(): for readiness and liveness probes
 * ---------------------------------------------------------------------
 */

bool
views_worker_running(void)
{
	bool		running;

	netrun_require_shared();
	SpinLockAcquire(&netrun_shared->mutex);
	running = netrun_shared->worker_pid != 0 &&
		netrun_shared->state == NETRUN_STATE_RUNNING;
	SpinLockRelease(&netrun_shared->mutex);
	return running;
}

/* Without shared_preload_libraries there is no worker: not alive. */
Datum
netrun_alive(PG_FUNCTION_ARGS)
{
	if (netrun_shared == NULL)
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(views_worker_running());
}

/*
 * Ready: the worker serves, and the rows in scope have answered their last
 * probe (healthy or degraded, circuit closed): see ViewsReadyScope.
 */
bool
views_ready(const ViewRow *rows, int n, ViewsReadyScope scope)
{
	bool		any = false;

	if (!views_worker_running())
		return false;

	for (int i = 0; i < n; i++)
	{
		const ViewRow *r = &rows[i];

		switch (scope)
		{
			case VIEWS_READY_CLUSTER_PRIMARY:
				if (row_healthy(r) && strcmp(row_role(r), "primary") == 0)
					return true;
				break;
			case VIEWS_READY_ENABLED:
			case VIEWS_READY_CLUSTER_MEMBERS:
				if (!r->slot.enabled)
					break;
				any = true;
				if (!row_healthy(r))
					return false;
				break;
			case VIEWS_READY_EVERY:
				if (!row_healthy(r))
					return false;
				break;
		}
	}
	if (scope == VIEWS_READY_CLUSTER_PRIMARY)
		return false;
	if (scope == VIEWS_READY_CLUSTER_MEMBERS)
		return any;
	return true;
}

/* For a cluster name: a member can take writes. */
Datum
netrun_ready(PG_FUNCTION_ARGS)
{
	char	   *name = optional_arg(fcinfo, 0);
	ViewRow    *rows;
	int			n;
	ViewsReadyScope scope = VIEWS_READY_ENABLED;

	rows = views_snapshot(name, &n);
	if (name != NULL)
		scope = n == 1 && strcmp(rows[0].slot.name, name) == 0 ?
			VIEWS_READY_EVERY : VIEWS_READY_CLUSTER_PRIMARY;
	PG_RETURN_BOOL(views_ready(rows, n, scope));
}

/* ---------------------------------------------------------------------
 * reset_stats(name)
 * ---------------------------------------------------------------------
 */

Datum
netrun_reset_stats(PG_FUNCTION_ARGS)
{
	char	   *name = optional_arg(fcinfo, 0);
	ViewRow    *rows;
	int			n;

	rows = views_snapshot(name, &n);
	for (int i = 0; i < n; i++)
		stats_reset_counters(rows[i].slot.stats_index);
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * prometheus(): the text exposition format, version 0.0.4
 * ---------------------------------------------------------------------
 */

typedef enum PromValue
{
	PROM_POOL_SIZE, PROM_OPEN, PROM_CHECKED_OUT, PROM_IDLE, PROM_OVERFLOW,
	PROM_WAITING, PROM_UTILIZATION,
	PROM_ACQUIRED, PROM_QUERIES, PROM_ERRORS, PROM_TIMEOUTS, PROM_EXHAUSTED, PROM_PIPELINED,
	PROM_CREATED, PROM_CLOSED, PROM_RECYCLED,
	PROM_HEALTHY, PROM_CIRCUIT_OPEN, PROM_FAILURES, PROM_LATENCY,
	PROM_IS_REPLICA, PROM_LAG
} PromValue;

typedef struct PromFamily
{
	const char *name;
	const char *type;
	const char *help;
	PromValue	value;
} PromFamily;

static const PromFamily prom_families[] = {
	{"netrun_pool_pool_size", "gauge", "pool_max of the connection.", PROM_POOL_SIZE},
	{"netrun_pool_connections_open", "gauge", "Remote connections open or opening.", PROM_OPEN},
	{"netrun_pool_connections_checked_out", "gauge", "Connections running a call, pinned or being reset.", PROM_CHECKED_OUT},
	{"netrun_pool_connections_idle", "gauge", "Connections free in the pool.", PROM_IDLE},
	{"netrun_pool_connections_overflow", "gauge", "Connections above pool_max.", PROM_OVERFLOW},
	{"netrun_pool_waiting_callers", "gauge", "Callers waiting for a connection.", PROM_WAITING},
	{"netrun_pool_utilization_ratio", "gauge", "Checked-out connections over pool_max + max_overflow.", PROM_UTILIZATION},
	{"netrun_pool_acquired_total", "counter", "Connections handed to calls.", PROM_ACQUIRED},
	{"netrun_pool_queries_total", "counter", "Calls that ran on a connection.", PROM_QUERIES},
	{"netrun_pool_errors_total", "counter", "Calls that ended in an error.", PROM_ERRORS},
	{"netrun_pool_timeouts_total", "counter", "Calls ended by a time limit.", PROM_TIMEOUTS},
	{"netrun_pool_exhausted_total", "counter", "Callers that gave up waiting for a connection.", PROM_EXHAUSTED},
	{"netrun_pool_pipelined_total", "counter", "Calls sent in a connection's pipeline behind another call.", PROM_PIPELINED},
	{"netrun_pool_connections_created_total", "counter", "Remote connections opened.", PROM_CREATED},
	{"netrun_pool_connections_closed_total", "counter", "Remote connections closed.", PROM_CLOSED},
	{"netrun_pool_connections_recycled_total", "counter", "Remote connections closed for their age (recycle_s).", PROM_RECYCLED},
	{"netrun_pool_healthy", "gauge", "1 if the last probe succeeded and the circuit is closed.", PROM_HEALTHY},
	{"netrun_pool_circuit_open", "gauge", "1 while calls fail at once (open or half-open circuit).", PROM_CIRCUIT_OPEN},
	{"netrun_pool_probe_failures", "gauge", "Health probes failed in a row.", PROM_FAILURES},
	{"netrun_pool_probe_latency_seconds", "gauge", "Round trip of the last successful health probe.", PROM_LATENCY},
	{"netrun_pool_is_replica", "gauge", "1 if the last probe found the server in recovery.", PROM_IS_REPLICA},
	{"netrun_pool_replica_lag_seconds", "gauge", "Replay lag the last probe saw on a replica.", PROM_LAG},
};

/* The value of a family for a row; false if there is none to show. */
static bool
prom_value(const ViewRow *r, PromValue v, double *out)
{
	const NetrunPoolStats *st = &r->stats;

	switch (v)
	{
		case PROM_POOL_SIZE:
			*out = r->slot.pool_max;
			break;
		case PROM_OPEN:
			*out = r->slot.total;
			break;
		case PROM_CHECKED_OUT:
			*out = r->slot.checked_out;
			break;
		case PROM_IDLE:
			*out = r->slot.idle;
			break;
		case PROM_OVERFLOW:
			*out = row_overflow(r);
			break;
		case PROM_WAITING:
			*out = r->slot.waiting;
			break;
		case PROM_UTILIZATION:
			*out = row_utilization(r) / 100.0;
			break;
		case PROM_ACQUIRED:
			*out = st->acquired_total;
			break;
		case PROM_QUERIES:
			*out = st->queries_total;
			break;
		case PROM_ERRORS:
			*out = st->errors_total;
			break;
		case PROM_TIMEOUTS:
			*out = st->timeouts_total;
			break;
		case PROM_EXHAUSTED:
			*out = st->exhausted_total;
			break;
		case PROM_PIPELINED:
			*out = st->pipelined_total;
			break;
		case PROM_CREATED:
			*out = st->created_total;
			break;
		case PROM_CLOSED:
			*out = st->closed_total;
			break;
		case PROM_RECYCLED:
			*out = st->recycled_total;
			break;
		case PROM_HEALTHY:
			*out = row_healthy(r) ? 1 : 0;
			break;
		case PROM_CIRCUIT_OPEN:
			*out = r->slot.enabled && st->circuit != CIRCUIT_CLOSED ? 1 : 0;
			break;
		case PROM_FAILURES:
			*out = r->slot.enabled ? st->consecutive_failures : 0;
			break;
		case PROM_LATENCY:
			if (!r->slot.enabled || st->latency_ms < 0)
				return false;
			*out = st->latency_ms / 1000.0;
			break;
		case PROM_IS_REPLICA:
			if (!st->role_known)
				return false;
			*out = st->is_replica ? 1 : 0;
			break;
		case PROM_LAG:
			if (!st->role_known || !st->is_replica || st->replica_lag_ms < 0)
				return false;
			*out = st->replica_lag_ms / 1000.0;
			break;
	}
	return true;
}

/* Names and clusters are [a-z0-9_]: label values need no escaping. */
static void
prom_labels(StringInfo buf, const ViewRow *r, const char *extra)
{
	appendStringInfo(buf, "{name=\"%s\"", r->slot.name);
	if (r->slot.cluster[0])
		appendStringInfo(buf, ",cluster=\"%s\"", r->slot.cluster);
	if (extra)
		appendStringInfo(buf, ",%s", extra);
	appendStringInfoChar(buf, '}');
}

static void
prom_summary(StringInfo buf, const ViewRow *rows, int n, const char *family,
			 const char *help, bool acquire)
{
	static const double quantiles[] = {0.5, 0.95, 0.99};

	appendStringInfo(buf, "# HELP %s %s\n# TYPE %s summary\n", family, help, family);
	for (int i = 0; i < n; i++)
	{
		const StatsHistogram *h = acquire ? &rows[i].stats.acquire_wait :
		&rows[i].stats.query_time;

		for (int q = 0; q < (int) lengthof(quantiles); q++)
		{
			char		label[32];

			snprintf(label, sizeof(label), "quantile=\"%g\"", quantiles[q]);
			appendStringInfoString(buf, family);
			prom_labels(buf, &rows[i], label);
			appendStringInfo(buf, " %.9g\n",
							 stats_hist_percentile_ms(h, quantiles[q]) / 1000.0);
		}
		appendStringInfo(buf, "%s_sum", family);
		prom_labels(buf, &rows[i], NULL);
		appendStringInfo(buf, " %.9g\n", h->sum_us / 1e6);
		appendStringInfo(buf, "%s_count", family);
		prom_labels(buf, &rows[i], NULL);
		appendStringInfo(buf, " " UINT64_FORMAT "\n", h->count);
	}
}

/* The whole exposition of "rows", with netrun_pool_up first. */
void
views_render_prometheus(StringInfo buf, const ViewRow *rows, int n)
{
	appendStringInfoString(buf,
						   "# HELP netrun_pool_up 1 if the netrun_pool worker is running.\n"
						   "# TYPE netrun_pool_up gauge\n");
	appendStringInfo(buf, "netrun_pool_up %d\n", views_worker_running() ? 1 : 0);

	for (int f = 0; f < (int) lengthof(prom_families); f++)
	{
		const PromFamily *fam = &prom_families[f];

		appendStringInfo(buf, "# HELP %s %s\n# TYPE %s %s\n",
						 fam->name, fam->help, fam->name, fam->type);
		for (int i = 0; i < n; i++)
		{
			double		value = 0;

			if (!prom_value(&rows[i], fam->value, &value))
				continue;
			appendStringInfoString(buf, fam->name);
			prom_labels(buf, &rows[i], NULL);
			appendStringInfo(buf, " %.9g\n", value);
		}
	}

	appendStringInfoString(buf, "# HELP netrun_pool_health_status The connection's health state (1 for the current one).\n"
						   "# TYPE netrun_pool_health_status gauge\n");
	for (int i = 0; i < n; i++)
		for (int s = HEALTH_UNKNOWN; s <= HEALTH_UNHEALTHY; s++)
		{
			char		label[32];

			snprintf(label, sizeof(label), "status=\"%s\"", stats_status_name(s));
			appendStringInfoString(buf, "netrun_pool_health_status");
			prom_labels(buf, &rows[i], label);
			appendStringInfo(buf, " %d\n", row_status(&rows[i]) == s ? 1 : 0);
		}

	prom_summary(buf, rows, n, "netrun_pool_acquire_wait_seconds",
				 "Time from a call's arrival at the worker to its connection.", true);
	prom_summary(buf, rows, n, "netrun_pool_query_duration_seconds",
				 "Time from a call's connection to its end.", false);
}

Datum
netrun_prometheus(PG_FUNCTION_ARGS)
{
	ViewRow    *rows;
	int			n;
	StringInfoData buf;

	rows = views_snapshot(NULL, &n);
	initStringInfo(&buf);
	views_render_prometheus(&buf, rows, n);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
