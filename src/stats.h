/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Per-connection counters, latency histograms and health state in
 *	  shared memory (stats.c), read by the views (views.c) and by the
 *	  backends' routing (route.c).
 *
 * One NetrunPoolStats entry per pool the worker keeps, claimed when the
 * worker creates the pool and released when it forgets it, so counters
 * survive registry reloads.  Locking: every field below "mutex" is
 * protected by that entry's spinlock.  The worker is the main writer
 * (counters, health); backends write only reset_stats() and the errors of
 * calls they refuse themselves (an open circuit).  Hold the spinlock for
 * a few stores or one struct copy, never across I/O or anything that can
 * raise an error.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NETRUN_STATS_H
#define NETRUN_STATS_H

#include "guard.h"
#include "netrun_pool.h"

/*
 * Latency histogram: 4 buckets per power of two of microseconds (at most
 * 19% wide), exact below 4 us, the last bucket open-ended from about two
 * hours.  Fixed size: recording is a few integer operations.
 */
#define STATS_HIST_BUCKETS	128

typedef struct StatsHistogram
{
	uint64		count;
	uint64		sum_us;
	uint64		max_us;
	uint64		buckets[STATS_HIST_BUCKETS];
} StatsHistogram;

typedef enum HealthStatus
{
	HEALTH_UNKNOWN = 0,			/* never probed (or disabled) */
	HEALTH_HEALTHY,
	HEALTH_DEGRADED,			/* slow, failing some calls, or a probe failed */
	HEALTH_UNHEALTHY			/* unhealthy_after probes in a row failed */
} HealthStatus;

typedef enum CircuitState
{
	CIRCUIT_CLOSED = 0,			/* calls go through */
	CIRCUIT_OPEN,				/* calls fail at once */
	CIRCUIT_HALF_OPEN			/* open, and a probe is testing the remote */
} CircuitState;

#define STATS_ERROR_LEN		256

typedef struct NetrunPoolStats
{
	slock_t		mutex;
	bool		in_use;			/* claimed by one of the worker's pools */
	uint32		generation;		/* bumped at every claim */
	char		name[NAMEDATALEN];

	/* counters since stats_reset */
	int64		acquired_total; /* connections handed to calls */
	int64		queries_total;	/* calls that ran on a connection */
	int64		errors_total;	/* calls that ended in an error */
	int64		timeouts_total; /* ... because a time limit ran out */
	int64		exhausted_total;	/* ... waiting for a connection */
	int64		created_total;	/* remote connections opened */
	int64		closed_total;	/* ... closed, for any reason */
	int64		recycled_total; /* ... closed because of recycle_s */
	int64		pipelined_total;	/* calls sent behind another call */
	StatsHistogram acquire_wait;	/* from arrival to a connection */
	StatsHistogram query_time;	/* from a connection to the end */
	char		last_error[STATS_ERROR_LEN];
	TimestampTz last_error_at;	/* 0: none */
	TimestampTz stats_reset;

	/* calls accepted by the worker and not yet over: routing reads it */
	int32		outstanding;

	/* health, written by the worker's probes (health.c) */
	int8		status;			/* HealthStatus */
	int8		circuit;		/* CircuitState */
	bool		role_known;		/* a probe succeeded: is_replica is true */
	bool		is_replica;
	int32		consecutive_failures;
	double		latency_ms;		/* of the last successful probe; < 0: none */
	int64		replica_lag_ms; /* < 0: unknown (or a primary) */
	TimestampTz checked_at;		/* last probe's end; 0: never */
	TimestampTz next_probe_at;
	TimestampTz remote_time;	/* the remote's now() at the last probe */
	char		server_version[32];
	char		database[NAMEDATALEN];
	char		health_error[STATS_ERROR_LEN];	/* last failed probe's reason */

	/* the tenant guard, as the latest new connection found it (pool.c) */
	int8		guard;			/* GuardState */
	char		guard_detail[GUARD_DETAIL_LEN]; /* why not enforced, or "" */
} NetrunPoolStats;

/* stats.c */
extern void stats_clear_all(void);
extern int	stats_claim(const char *name);
extern void stats_release(int index);
extern NetrunPoolStats *stats_entry(int index);
extern void stats_copy(int index, NetrunPoolStats *out);
extern void stats_reset_counters(int index);
extern void stats_hist_add(StatsHistogram *h, uint64 us);
extern double stats_hist_percentile_ms(const StatsHistogram *h, double q);
extern double stats_hist_avg_ms(const StatsHistogram *h);
extern void stats_set_error(NetrunPoolStats *s, const char *message);
extern const char *stats_status_name(int status);
extern const char *stats_circuit_name(int circuit);

/* Add one to a counter of an entry (index may be -1: nothing). */
#define STATS_BUMP(index, field) \
	do { \
		NetrunPoolStats *s_ = stats_entry(index); \
		if (s_) \
		{ \
			SpinLockAcquire(&s_->mutex); \
			s_->field++; \
			SpinLockRelease(&s_->mutex); \
		} \
	} while (0)

#endif							/* NETRUN_STATS_H */
