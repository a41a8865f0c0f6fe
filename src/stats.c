/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  The shared-memory counters, latency histograms and health fields of
 *	  each pool (struct NetrunPoolStats, stats.h): claiming and releasing
 *	  entries, recording into histograms, and reading percentiles.
 *
 * Owns the arithmetic and the entry life cycle only.  It allocates
 * nothing and never does I/O: recording a call is a few integer stores
 * under the entry's spinlock.  What the numbers mean to users lives in
 * views.c; who writes which field is said in stats.h.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "port/pg_bitutils.h"
#include "utils/timestamp.h"

#include "stats.h"

/* Worker start: no pool has an entry yet; forget the last worker's. */
void
stats_clear_all(void)
{
	for (int i = 0; i < netrun_shared->max_stats; i++)
	{
		NetrunPoolStats *s = &netrun_shared->stats[i];

		SpinLockAcquire(&s->mutex);
		s->in_use = false;
		SpinLockRelease(&s->mutex);
	}
}

/*
 * A new pool: a zeroed entry, or -1 when every entry is taken (more pools
 * draining at once than there is room for: that pool goes unmeasured).
 * Only the worker claims and releases, so the scan needs no lock beyond
 * each entry's.
 */
int
stats_claim(const char *name)
{
	TimestampTz now = GetCurrentTimestamp();
	uint32		generation;

	for (int i = 0; i < netrun_shared->max_stats; i++)
	{
		NetrunPoolStats *s = &netrun_shared->stats[i];

		if (s->in_use)
			continue;
		SpinLockAcquire(&s->mutex);
		generation = s->generation + 1;
		memset((char *) s + offsetof(NetrunPoolStats, in_use), 0,
			   sizeof(NetrunPoolStats) - offsetof(NetrunPoolStats, in_use));
		s->in_use = true;
		s->generation = generation;
		strlcpy(s->name, name, NAMEDATALEN);
		s->stats_reset = now;
		s->latency_ms = -1;
		s->replica_lag_ms = -1;
		SpinLockRelease(&s->mutex);
		return i;
	}
	return -1;
}

void
stats_release(int index)
{
	NetrunPoolStats *s = stats_entry(index);

	if (s == NULL)
		return;
	SpinLockAcquire(&s->mutex);
	s->in_use = false;
	SpinLockRelease(&s->mutex);
}

NetrunPoolStats *
stats_entry(int index)
{
	if (index < 0 || netrun_shared == NULL || index >= netrun_shared->max_stats)
		return NULL;
	return &netrun_shared->stats[index];
}

/* A consistent copy of one entry (zeroes if there is none). */
void
stats_copy(int index, NetrunPoolStats *out)
{
	NetrunPoolStats *s = stats_entry(index);

	if (s == NULL)
	{
		memset(out, 0, sizeof(*out));
		out->latency_ms = -1;
		out->replica_lag_ms = -1;
		return;
	}
	SpinLockAcquire(&s->mutex);
	memcpy(out, s, sizeof(*out));
	SpinLockRelease(&s->mutex);
}

/* reset_stats(): the counters and histograms start again; health stays. */
void
stats_reset_counters(int index)
{
	NetrunPoolStats *s = stats_entry(index);
	TimestampTz now = GetCurrentTimestamp();

	if (s == NULL)
		return;
	SpinLockAcquire(&s->mutex);
	s->acquired_total = s->queries_total = s->errors_total = 0;
	s->timeouts_total = s->exhausted_total = 0;
	s->pipelined_total = 0;
	s->created_total = s->closed_total = s->recycled_total = 0;
	memset(&s->acquire_wait, 0, sizeof(s->acquire_wait));
	memset(&s->query_time, 0, sizeof(s->query_time));
	s->last_error[0] = '\0';
	s->last_error_at = 0;
	s->stats_reset = now;
	SpinLockRelease(&s->mutex);
}

/*
 * Bucket of a duration: exact below 4 us, then four per power of two
 * (the two bits after the leading one pick the quarter).
 */
static int
hist_bucket(uint64 us)
{
	int			msb;
	int			index;

	if (us < 4)
		return (int) us;
	msb = pg_leftmost_one_pos64(us);
	index = msb * 4 + (int) ((us >> (msb - 2)) & 3) - 4;
	return Min(index, STATS_HIST_BUCKETS - 1);
}

/* The durations bucket "index" holds: [lower, upper). */
static void
hist_bounds(int index, double *lower, double *upper)
{
	int			msb;
	int			quarter;

	if (index < 4)
	{
		*lower = index;
		*upper = index + 1;
		return;
	}
	msb = (index + 4) / 4;
	quarter = (index + 4) % 4;
	*lower = ldexp(4 + quarter, msb - 2);
	*upper = ldexp(5 + quarter, msb - 2);
}

/* Caller holds the entry's spinlock. */
void
stats_hist_add(StatsHistogram *h, uint64 us)
{
	h->count++;
	h->sum_us += us;
	if (us > h->max_us)
		h->max_us = us;
	h->buckets[hist_bucket(us)]++;
}

/*
 * The q-quantile in milliseconds (0 with no samples): the bucket holding
 * that rank, interpolated linearly inside it and capped at the maximum
 * seen, so it is never further off than one bucket's width.
 */
double
stats_hist_percentile_ms(const StatsHistogram *h, double q)
{
	uint64		rank;
	uint64		seen = 0;

	if (h->count == 0)
		return 0;
	rank = (uint64) ceil(q * (double) h->count);
	if (rank < 1)
		rank = 1;
	for (int i = 0; i < STATS_HIST_BUCKETS; i++)
	{
		double		lower;
		double		upper;
		double		us;

		if (seen + h->buckets[i] < rank)
		{
			seen += h->buckets[i];
			continue;
		}
		hist_bounds(i, &lower, &upper);
		us = lower + (upper - lower) * (double) (rank - seen) / (double) h->buckets[i];
		return Min(us, (double) h->max_us) / 1000.0;
	}
	return h->max_us / 1000.0;
}

double
stats_hist_avg_ms(const StatsHistogram *h)
{
	return h->count ? (double) h->sum_us / h->count / 1000.0 : 0;
}

/* Caller holds the entry's spinlock. */
void
stats_set_error(NetrunPoolStats *s, const char *message)
{
	strlcpy(s->last_error, message, STATS_ERROR_LEN);
	s->last_error_at = GetCurrentTimestamp();
}

const char *
stats_status_name(int status)
{
	switch (status)
	{
		case HEALTH_HEALTHY:
			return "healthy";
		case HEALTH_DEGRADED:
			return "degraded";
		case HEALTH_UNHEALTHY:
			return "unhealthy";
		default:
			return "unknown";
	}
}

const char *
stats_circuit_name(int circuit)
{
	switch (circuit)
	{
		case CIRCUIT_OPEN:
			return "open";
		case CIRCUIT_HALF_OPEN:
			return "half_open";
		default:
			return "closed";
	}
}
