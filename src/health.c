/*-------------------------------------------------------------------------
 *
 * health.c
 *	  Health probes and the circuit breaker, run by the worker: one probe
 *	  connection per enabled pool, one round trip every
 *	  netrun_pool.health_interval_ms, and the state it leads to.
 *
 * A probe has its own connection, so it never waits behind a busy pool
 * and never takes a caller's connection.  It is non-blocking like every
 * other remote connection of the worker: pool.c puts its socket into the
 * event set and calls back here.  The probe's answer is the truth about
 * roles (pg_is_in_recovery()), which is how routing follows a failover.
 *
 * States (published into the pool's NetrunPoolStats entry):
 *	  unknown	never probed;
 *	  healthy	the last probe succeeded within degraded_latency_ms;
 *	  degraded	it was slower, or too many calls failed through the
 *				remote's fault since the probe before, or a probe failed;
 *	  unhealthy	unhealthy_after probes in a row failed: the circuit is
 *				open, calls fail at once (route.c), and probes back off
 *				exponentially with jitter until one succeeds.
 * Each change of state is logged once.
 *
 * It must not block, and must not touch the pool's connections.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "health.h"

/*
 * One round trip: the role, the version, the database, the remote's
 * clock, and on a replica the replay lag: 0 while its WAL receiver runs
 * and it has replayed all it received; else the age of the last replayed
 * transaction (a replica cut off from its primary grows older, not
 * fresher).  The WAL receiver's pid is the one column of
 * pg_stat_wal_receiver every role may see.
 */
#define PROBE_SQL \
	"SELECT pg_is_in_recovery(), current_setting('server_version'), " \
	"current_database(), extract(epoch FROM now()), " \
	"CASE WHEN pg_is_in_recovery() THEN " \
	"  CASE WHEN (SELECT pid FROM pg_stat_wal_receiver) IS NOT NULL " \
	"        AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 " \
	"  ELSE coalesce((extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint, -1) END " \
	"END"

/* Calls between two probes before their error rate counts. */
#define MIN_CALLS_FOR_RATE	10

void
health_init(HealthProbe *p, int stats_index)
{
	Assert(p->watch.slot == 0);	/* closed first (probe_close) */
	memset(p, 0, sizeof(*p));
	p->stats_index = stats_index;
	p->lag_ms = -1;
	p->next_at = 0;				/* probe at once */
}

static void
probe_close(HealthProbe *p)
{
	pool_connect_close(p->conn, &p->watch);
	p->conn = NULL;
	p->state = PROBE_NONE;
	p->want_write = false;
}

/* Disabled, removed or reconfigured: no probe, and nothing known. */
void
health_stop(HealthProbe *p)
{
	NetrunPoolStats *s = stats_entry(p->stats_index);
	int			index = p->stats_index;

	probe_close(p);
	health_init(p, index);
	if (s == NULL)
		return;
	SpinLockAcquire(&s->mutex);
	s->status = HEALTH_UNKNOWN;
	s->circuit = CIRCUIT_CLOSED;
	s->role_known = false;
	s->consecutive_failures = 0;
	s->latency_ms = -1;
	s->replica_lag_ms = -1;
	s->checked_at = 0;
	s->next_probe_at = 0;
	SpinLockRelease(&s->mutex);
}

static void
health_log_change(const NetrunPoolSlot *settings, HealthStatus from,
				  HealthStatus to, double latency_ms, const HealthProbe *p)
{
	if (from == to)
		return;
	switch (to)
	{
		case HEALTH_HEALTHY:
			ereport(LOG,
					(errmsg("netrun_pool connection \"%s\" is healthy%s",
							settings->name,
							from == HEALTH_UNHEALTHY ? " again; its circuit is closed" : ""),
					 errdetail("The health probe took %.1f ms.", latency_ms)));
			break;
		case HEALTH_DEGRADED:
			if (p->error[0] && latency_ms < 0)
				ereport(LOG,
						(errmsg("netrun_pool connection \"%s\" is degraded", settings->name),
						 errdetail("A health probe failed: %s", p->error)));
			else
				ereport(LOG,
						(errmsg("netrun_pool connection \"%s\" is degraded", settings->name),
						 errdetail("The health probe took %.1f ms (netrun_pool.degraded_latency_ms is %d); %d of %d calls since the probe before failed through the remote's fault.",
								   latency_ms, netrun_degraded_latency_ms,
								   p->faults, p->calls)));
			break;
		case HEALTH_UNHEALTHY:
			ereport(LOG,
					(errmsg("netrun_pool connection \"%s\" is unhealthy; its circuit is open",
							settings->name),
					 errdetail("%d health probes in a row failed; the last: %s",
							   p->failures, p->error),
					 errhint("Calls fail at once until a probe succeeds.")));
			break;
		case HEALTH_UNKNOWN:
			break;
	}
}

/* Publish the probe's outcome; true if the circuit just opened. */
static bool
probe_finish(HealthProbe *p, const NetrunPoolSlot *settings, bool ok)
{
	NetrunPoolStats *s = stats_entry(p->stats_index);
	TimestampTz now = GetCurrentTimestamp();
	HealthStatus old = p->status;
	bool		was_open = p->circuit_open;
	double		latency = -1;
	long		delay = netrun_health_interval_ms;

	if (ok)
	{
		bool		bad_rate = p->calls >= MIN_CALLS_FOR_RATE &&
			p->faults * 100 > p->calls * netrun_degraded_error_percent;

		latency = (double) (now - p->sent_at) / 1000.0;
		p->failures = 0;
		p->circuit_open = false;
		p->status = (latency > netrun_degraded_latency_ms || bad_rate) ?
			HEALTH_DEGRADED : HEALTH_HEALTHY;
		p->state = PROBE_IDLE;
		/* a remote served per call (serverless) is not kept awake */
		if (settings->pool_mode == NETRUN_POOL_MODE_NONE)
			probe_close(p);
	}
	else
	{
		p->failures++;
		probe_close(p);
		if (p->failures >= netrun_unhealthy_after)
		{
			p->status = HEALTH_UNHEALTHY;
			p->circuit_open = true;

			/*
			 * No backoff: while the circuit is open only the probe can
			 * close it, so a remote back up must be seen within one
			 * interval (one small query per interval costs it nothing).
			 * Jitter, so that many pools do not probe in step.
			 */
			delay = delay * 3 / 4 +
				(long) (pg_prng_double(&pg_global_prng_state) * delay / 4);
		}
		else
			p->status = HEALTH_DEGRADED;
	}
	p->next_at = TimestampTzPlusMilliseconds(now, delay);
	p->last_end = now;
	health_log_change(settings, old, p->status, latency, p);
	p->calls = p->faults = 0;

	if (s)
	{
		SpinLockAcquire(&s->mutex);
		s->status = p->status;
		s->circuit = p->circuit_open ? CIRCUIT_OPEN : CIRCUIT_CLOSED;
		s->consecutive_failures = p->failures;
		s->checked_at = now;
		s->next_probe_at = p->next_at;
		if (ok)
		{
			s->latency_ms = latency;
			s->role_known = true;
			s->is_replica = p->is_replica;
			s->replica_lag_ms = p->is_replica ? p->lag_ms : -1;
			s->remote_time = p->remote_time;
			strlcpy(s->server_version, p->version, sizeof(s->server_version));
			strlcpy(s->database, p->database, sizeof(s->database));
		}
		else
		{
			s->latency_ms = -1;
			strlcpy(s->health_error, p->error, STATS_ERROR_LEN);
		}
		SpinLockRelease(&s->mutex);
	}
	return p->circuit_open && !was_open;
}

/* The connection is up: send the probe query. */
static bool
probe_send(HealthProbe *p, const NetrunPoolSlot *settings)
{
	p->sent_at = GetCurrentTimestamp();
	p->got_row = false;
	if (!PQsendQuery(p->conn, PROBE_SQL))
		return false;
	p->want_write = PQflush(p->conn) == 1;
	p->state = PROBE_RUNNING;
	return true;
}

static bool probe_start(HealthProbe *p, struct Pool *pool,
						const NetrunPoolSlot *settings, bool fresh_deadline);

/*
 * A probe failed with reason "why".  On a connection kept from an earlier
 * probe, the remote may simply have restarted since: connect afresh once
 * before counting a failure.
 */
static bool
probe_failed(HealthProbe *p, struct Pool *pool, const NetrunPoolSlot *settings,
			 const char *why)
{
	int			len;

	if (why != p->error)
		strlcpy(p->error, why, sizeof(p->error));
	/* libpq's first line says it; the rest is a generic hint */
	len = strcspn(p->error, "\n");
	p->error[len] = '\0';
	while (len > 0 && (p->error[len - 1] == '\n' || p->error[len - 1] == ' '))
		p->error[--len] = '\0';
	if (!p->fresh)
	{
		probe_close(p);
		return probe_start(p, pool, settings, false);
	}
	/* the name may have moved (a failover): ask the DNS again */
	pool_forget_names(pool);
	return probe_finish(p, settings, false);
}

/* Start a probe: connect if there is no connection, else send. */
static bool
probe_start(HealthProbe *p, struct Pool *pool, const NetrunPoolSlot *settings,
			bool fresh_deadline)
{
	TimestampTz now = GetCurrentTimestamp();

	if (fresh_deadline)
		p->deadline = TimestampTzPlusMilliseconds(now, settings->connect_timeout_ms);
	if (p->circuit_open)
	{
		NetrunPoolStats *s = stats_entry(p->stats_index);

		if (s)
		{
			SpinLockAcquire(&s->mutex);
			s->circuit = CIRCUIT_HALF_OPEN;
			SpinLockRelease(&s->mutex);
		}
	}
	if (p->conn == NULL || PQstatus(p->conn) != CONNECTION_OK)
	{
		char	   *error;
		bool		local;
		char		appname[NAMEDATALEN + 32];

		probe_close(p);
		p->fresh = true;
		snprintf(appname, sizeof(appname), "netrun_pool_probe:%s", settings->name);
		p->conn = pool_connect_start(pool, appname, NULL, &error, &local);
		if (p->conn == NULL && error == NULL)
		{
			/* its host name is being resolved: health_tick tries again */
			p->state = PROBE_CONNECTING;
			p->poll = PGRES_POLLING_WRITING;
			return false;
		}
		if (p->conn == NULL && local)
		{
			/*
			 * The worker's own shortage (file descriptors) says nothing of
			 * the remote: try again next interval, count nothing.
			 */
			strlcpy(p->error, error, sizeof(p->error));
			p->next_at = TimestampTzPlusMilliseconds(now, netrun_health_interval_ms);
			return false;
		}
		if (p->conn == NULL)
			return probe_failed(p, pool, settings, error);
		p->state = PROBE_CONNECTING;
		p->poll = PGRES_POLLING_WRITING;
		return false;
	}
	p->fresh = false;
	if (!probe_send(p, settings))
		return probe_failed(p, pool, settings, PQerrorMessage(p->conn));
	return false;
}

/*
 * Deadlines: a probe past connect_timeout_ms fails; a due probe starts.
 * Returns true if the circuit just opened (the pool fails its waiters).
 */
bool
health_tick(HealthProbe *p, struct Pool *pool, const NetrunPoolSlot *settings,
			TimestampTz now, TimestampTz *next_wake)
{
	bool		opened = false;

	if (p->state == PROBE_CONNECTING || p->state == PROBE_RUNNING)
	{
		if (now >= p->deadline)
		{
			char		why[64];

			snprintf(why, sizeof(why), "health probe timed out after %d ms",
					 settings->connect_timeout_ms);
			p->fresh = true;	/* a timeout is not retried */
			opened = probe_failed(p, pool, settings, why);
		}
		else if (p->conn == NULL)
			opened = probe_start(p, pool, settings, false);	/* name resolved */
	}
	else if (now >= p->next_at)
		opened = probe_start(p, pool, settings, true);

	if (*next_wake == 0 || health_next_wake(p) < *next_wake)
		*next_wake = health_next_wake(p);
	return opened;
}

/* When the probe next needs the worker: its deadline, or its next start. */
TimestampTz
health_next_wake(const HealthProbe *p)
{
	if (p->state == PROBE_CONNECTING || p->state == PROBE_RUNNING)
		return p->deadline;
	return p->next_at;
}

/* What the event set should wait for on the probe's socket (0: nothing). */
uint32
health_wait_events(HealthProbe *p)
{
	uint32		ev = 0;

	if (p->conn == NULL || PQsocket(p->conn) == PGINVALID_SOCKET)
		return 0;
	if (p->state == PROBE_CONNECTING)
		ev = p->poll == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
	else if (p->state == PROBE_RUNNING)
		ev = WL_SOCKET_READABLE;
	if (p->want_write)
		ev |= WL_SOCKET_WRITEABLE;
	return ev;
}

/* Keep the probe's row. */
static void
probe_read_row(HealthProbe *p, const PGresult *res)
{
	double		epoch;

	if (PQntuples(res) != 1 || PQnfields(res) != 5)
		return;
	p->is_replica = PQgetvalue(res, 0, 0)[0] == 't';
	strlcpy(p->version, PQgetvalue(res, 0, 1), sizeof(p->version));
	strlcpy(p->database, PQgetvalue(res, 0, 2), sizeof(p->database));
	epoch = strtod(PQgetvalue(res, 0, 3), NULL);
	p->remote_time = (TimestampTz) ((epoch -
									 ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY)) *
									USECS_PER_SEC);
	p->lag_ms = PQgetisnull(res, 0, 4) ? -1 : strtoll(PQgetvalue(res, 0, 4), NULL, 10);
	p->got_row = true;
}

/* The probe's socket is ready.  True if the circuit just opened. */
bool
health_on_event(HealthProbe *p, struct Pool *pool, const NetrunPoolSlot *settings)
{
	if (p->want_write)
	{
		int			r = PQflush(p->conn);

		if (r < 0)
			return probe_failed(p, pool, settings, PQerrorMessage(p->conn));
		p->want_write = r == 1;
	}

	if (p->state == PROBE_CONNECTING)
	{
		p->poll = PQconnectPoll(p->conn);
		p->connect_polled = true;	/* its socket may be another now */
		if (p->poll == PGRES_POLLING_FAILED)
			return probe_failed(p, pool, settings, PQerrorMessage(p->conn));
		if (p->poll != PGRES_POLLING_OK)
			return false;
		if (PQsetnonblocking(p->conn, 1) != 0 || !probe_send(p, settings))
			return probe_failed(p, pool, settings, PQerrorMessage(p->conn));
		return false;
	}
	if (p->state != PROBE_RUNNING)
		return false;

	if (!PQconsumeInput(p->conn))
		return probe_failed(p, pool, settings, PQerrorMessage(p->conn));
	while (!PQisBusy(p->conn))
	{
		PGresult   *res = PQgetResult(p->conn);

		if (res == NULL)
		{
			if (!p->got_row)
				return probe_failed(p, pool, settings,
									p->error[0] ? p->error : "the health probe returned no row");
			p->error[0] = '\0';
			pool_probe_succeeded(pool);
			return probe_finish(p, settings, true);
		}
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			probe_read_row(p, res);
		else
		{
			strlcpy(p->error, PQresultErrorMessage(res), sizeof(p->error));
			p->got_row = false;
		}
		PQclear(res);
	}
	return false;
}

/*
 * A call on the pool ended: count it for the error rate.  A call that
 * failed through the remote's fault also brings the next probe forward,
 * so a remote that died is found within one round trip, not an interval.
 */
void
health_note_call(HealthProbe *p, bool remote_fault)
{
	p->calls++;
	if (remote_fault)
	{
		p->faults++;
		/* but not more often than once a second during a storm */
		if (!p->circuit_open && p->state != PROBE_CONNECTING && p->state != PROBE_RUNNING)
			p->next_at = Min(p->next_at,
							 Max(GetCurrentTimestamp(),
								 TimestampTzPlusMilliseconds(p->last_end,
															 Min(netrun_health_interval_ms, 1000))));
	}
}
