/*-------------------------------------------------------------------------
 *
 * health.h
 *	  The worker's health probe of one pool, and its circuit breaker
 *	  (health.c).  Embedded in each pool by pool.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NETRUN_HEALTH_H
#define NETRUN_HEALTH_H

#include "libpq-fe.h"

#include "evloop.h"
#include "stats.h"

struct Pool;

typedef enum ProbeState
{
	PROBE_NONE = 0,				/* no connection */
	PROBE_CONNECTING,			/* PQconnectPoll in progress */
	PROBE_IDLE,					/* connected, waiting for the next probe */
	PROBE_RUNNING				/* probe query sent */
} ProbeState;

typedef struct HealthProbe
{
	PGconn	   *conn;			/* its own connection, never a caller's */
	EvWatch		watch;			/* its socket in the worker's set */
	bool		connect_polled; /* PQconnectPoll ran since the watch was set */
	ProbeState	state;
	PostgresPollingStatusType poll;
	bool		want_write;
	bool		fresh;			/* connected for this probe: no retry */
	bool		got_row;
	TimestampTz deadline;		/* of the probe in progress */
	TimestampTz sent_at;
	TimestampTz next_at;		/* when the next probe starts */
	TimestampTz last_end;		/* when the last probe ended */
	int			stats_index;

	/* the worker's own view of what it published */
	HealthStatus status;
	bool		circuit_open;
	int			failures;		/* in a row */

	/* calls between two probes, for the error rate */
	int			calls;
	int			faults;

	/* the probe's row */
	bool		is_replica;
	int64		lag_ms;
	TimestampTz remote_time;
	char		version[32];
	char		database[NAMEDATALEN];
	char		error[STATS_ERROR_LEN];
} HealthProbe;

extern void health_init(HealthProbe *p, int stats_index);
extern void health_stop(HealthProbe *p);
extern bool health_tick(HealthProbe *p, struct Pool *pool,
						const NetrunPoolSlot *settings, TimestampTz now,
						TimestampTz *next_wake);
extern uint32 health_wait_events(HealthProbe *p);
extern TimestampTz health_next_wake(const HealthProbe *p);
extern bool health_on_event(HealthProbe *p, struct Pool *pool,
							const NetrunPoolSlot *settings);
extern void health_note_call(HealthProbe *p, bool remote_fault);

/* pool.c: start a connection to the pool's remote (a descriptor is taken) */
extern void pool_probe_succeeded(struct Pool *pool);
extern PGconn *pool_connect_start(struct Pool *pool, const char *application_name,
								  const char *options,
								  char **error, bool *local);
extern void pool_connect_close(PGconn *conn, EvWatch *watch);
extern void pool_forget_names(struct Pool *pool);

#endif							/* NETRUN_HEALTH_H */
