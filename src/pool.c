/*-------------------------------------------------------------------------
 *
 * pool.c
 *	  The worker's side of a call: channels, pools, remote connections and
 *	  the requests that run on them.  Only the worker runs this code.
 *
 * Life of a call:
 *	  a backend's request arrives on its channel -> it waits in its pool's
 *	  FIFO until a connection is free (or acquire_timeout_ms passes; or it
 *	  fails at once when nothing is open and connects fail) -> it runs on
 *	  that connection (single-row mode) -> rows go back in batches -> a
 *	  final 'C' or 'E' -> the connection is reset (DISCARD ALL and our
 *	  settings) and returns to the pool.
 *
 * A call is one segment of its connection's pipeline, in one write: its
 * BEGIN (READ ONLY) when it has a transaction of its own, its tenant (when
 * the remote session holds another; with the guard, a signed assertion,
 * guard.c), its statement(s), a Sync, its COMMIT and a Sync when it began,
 * then the reset and a Sync (request_send_pipelined).  It is answered at
 * its last Sync, once committed.  With pipeline_depth > 1, the calls of
 * other callers may follow on the same connection before the first is
 * answered (pool_take_pipeline); each PipeSeg says whose results the
 * next Sync ends (conn_pipeline_read).  begin(), session mode, and a call
 * that runs alone with a tenant to set go step by step, and get the same
 * reset after their last step (conn_reset).  Nothing one caller does to a
 * remote session reaches the next.
 *
 * Every libpq call here is non-blocking.  The worker waits in one
 * WaitEventSet over its latch and the sockets of the connections that have
 * work in progress; idle connections are not in the set and cost nothing
 * but memory.  When a backend's response queue is full, the worker stops
 * reading that request's socket until the backend catches up, so neither
 * side holds more than a batch of a large result.
 *
 * A request whose backend goes away (error, cancel, exit: the channel
 * detaches) loses its connection: the worker closes it, and the remote's
 * client_connection_check_interval ends the query there.  With calls
 * pipelined behind it, the worker sends a cancel instead (cancel.c), so
 * that they go on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sched.h>
#include <sys/socket.h>

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "lib/ilist.h"
#include "lib/pairingheap.h"
#include "libpq-fe.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "cancel.h"
#include "channel.h"
#include "evloop.h"
#include "guard.h"
#include "health.h"
#include "pool.h"
#include "resolve.h"
#include "stats.h"

/* The remote notices a closed client within this many ms (PG >= 14). */
#define REMOTE_CHECK_INTERVAL_MS	500

typedef enum ConnState
{
	CONN_CONNECTING,			/* PQconnectPoll in progress */
	CONN_SETUP,					/* session settings being applied */
	CONN_IDLE,					/* free in its pool */
	CONN_BUSY,					/* running a request */
	CONN_RESETTING,				/* the reset between callers, before it is idle */
	CONN_PINNED					/* held for one backend between its calls */
} ConnState;


/* a tenant's text, as tenant.c bounds it, and its terminator */
#define TENANT_TEXT_SIZE	256

struct Pool;
struct Request;

/*
 * A connection in pipeline mode has queued work up to each Sync it sent;
 * a PipeSeg says what the results up to one Sync belong to.  Calls of
 * several callers may follow one another (pipeline_depth); each call's
 * own statements end at its Sync, so an error in one never reaches the
 * next, and the reset between callers sits between them.
 */
typedef enum SegKind
{
	SEG_CALL,					/* a call's BEGIN, tenant and statements */
	SEG_COMMIT,					/* the COMMIT of a call that opened a transaction */
	SEG_RESET,					/* the reset between callers */
	SEG_ROLLBACK				/* a ROLLBACK ahead of a reset (conn_reset) */
} SegKind;

typedef struct PipeSeg
{
	struct Request *req;		/* CALL, COMMIT: the call; NULL once it is gone */
	uint8		kind;			/* SegKind */
	bool		last;			/* the call's last Sync: it is answered then */
} PipeSeg;

#define PIPE_MAX_DEPTH	16		/* registry: pipeline_depth <= 16 */
#define PIPE_MAX_SEGS	(PIPE_MAX_DEPTH * 3 + 2)

typedef struct RemoteConn
{
	dlist_node	node;			/* in pool->conns */
	struct Pool *pool;
	PGconn	   *conn;
	ConnState	state;
	PostgresPollingStatusType poll; /* while CONNECTING */
	bool		want_write;		/* output still to flush */
	bool		used_password;
	bool		retire;			/* close when the current work ends */
	TimestampTz connect_deadline;
	TimestampTz created_at;
	TimestampTz idle_since;		/* when it last became idle */
	struct Request *req;		/* while BUSY */
	EvWatch		watch;			/* its socket in the worker's set (evloop.c) */
	bool		connect_polled; /* PQconnectPoll ran since the watch was set */

	/*
	 * Pins: a begin() transaction (pin_txn) or a session-mode session
	 * (pin_session) keep the connection for the backend of channel
	 * pinned_to between its calls.
	 */
	int			pinned_to;		/* channel index, or -1 */
	bool		pin_txn;
	bool		pin_session;

	/*
	 * The tenant the remote session holds ("" none), when tenant_known.
	 * Every call whose tenant differs sets it, for the session; the reset
	 * between callers clears it.  Unknown after anything that may have
	 * rolled it back or that the caller's SQL may have changed.
	 */
	bool		tenant_known;
	char		tenant_now[TENANT_TEXT_SIZE];

	/* The tenant guard of this remote session (guard.c) */
	int8		guard;			/* GuardState */
	bool		hello_inflight; /* guard_hello() sent, its answer not read */
	int			guard_pid;		/* the remote backend the nonce binds */
	int64		guard_seq;		/* of the last assertion sent */
	char		guard_nonce[GUARD_NONCE_HEX + 1];
	char		guard_challenge[GUARD_NONCE_HEX + 1];

	/* a statement of the reset failed, and why */
	bool		housekeeping_failed;
	char		housekeeping_error[256];
	/* our session settings, applied after each DISCARD ALL (conn_reset) */
	char		settings_sql[512];
	/*
	 * The settings came with the startup packet (pool_startup_options) and
	 * held: DISCARD ALL's RESET ALL puts them back by itself, and the reset
	 * needs no second statement.
	 */
	bool		used_options;
	bool		settings_in_options;

	/*
	 * The pipeline: what each Sync still to come ends, oldest first (a
	 * ring), and how many calls have work in it.  nsegs 0: not in pipeline
	 * mode.  While calls are in it, req is the one whose results are being
	 * read (NULL while a reset's are).
	 */
	PipeSeg		segs[PIPE_MAX_SEGS];
	int			seg_first;
	int			nsegs;
	int			ncalls;
	bool		last_alone;		/* the last call queued runs alone */
	bool		pipe_tenant;	/* a call in the pipeline carried a tenant */
	bool		reset_after_call;	/* the last Sync ends a reset after a call */

	/*
	 * A cancel on its way to the remote (cancel.c): the call it ran was
	 * abandoned while calls waited behind it in the pipeline.
	 */
	bool		cancel_pending;
	RemoteCancel cancel;
	TimestampTz cancel_deadline;
} RemoteConn;

typedef struct Pool
{
	dlist_node	node;			/* in all_pools */
	bool		present;		/* in the latest registry load */
	NetrunPoolSlot settings;
	char	   *conninfo;
	bytea	   *secret;
	dlist_head	conns;
	int			nconns;
	dlist_head	waiters;		/* Requests, oldest first */
	int			nwaiting;
	bool		dispatching;	/* guards pool_dispatch against reentry */
	int			connect_failures;	/* in a row; drives the backoff */
	TimestampTz next_connect_attempt;	/* no new connect before this */
	char		last_connect_error[256];	/* libpq's reason, for waiters */
	int			stats_index;	/* its NetrunPoolStats entry, or -1 */
	HealthProbe probe;			/* health.c */
	/*
	 * The worker's turn touches only pools with something to do: the next
	 * deadline of each pool (a waiter's, a connect's, its probe's, a
	 * cancel's) orders it in wake_heap; a pool whose connections changed
	 * state is dirty until their sockets' watch is brought up to date; a
	 * pool with callers waiting is offered connections every turn.
	 */
	pairingheap_node wake_node;
	TimestampTz wake_at;		/* in wake_heap when not 0 */
	dlist_node	dirty_node;
	bool		dirty;
	dlist_node	waiting_node;
	bool		on_waiting;
	bool		startup_options_refused;	/* the remote said no to ours */
	bool		resolving;		/* connects wait for its host names */
} Pool;

typedef enum RequestStep
{
	STEP_WAITING,				/* for a connection */
	STEP_BEGIN,					/* BEGIN (READ ONLY) sent */
	STEP_TENANT,				/* the tenant's set_config sent */
	STEP_MAIN,					/* the caller's statement sent */
	STEP_END,					/* COMMIT or ROLLBACK sent */
	STEP_DELIVERING				/* remote work over; last message pending */
} RequestStep;

typedef struct Request
{
	dlist_node	node;			/* in pool->waiters while WAITING */
	int			channel;		/* index in channels[] */
	MemoryContext cxt;			/* everything below */
	ChannelCallKind kind;
	uint8		flags;
	Pool	   *pool;
	char	   *sql;
	int			nparams;
	const char **params;
	TimestampTz acquire_deadline;
	RequestStep step;
	RemoteConn *rc;
	bool		sent_rowdesc;
	bool		failed;			/* an 'E' is to be (or was) sent */
	bool		admitted;		/* passed the password check */
	bool		retried;		/* already moved to another connection once */
	StringInfoData batch;		/* rows not yet sent */
	int32		batch_rows;
	StringInfoData out;			/* the message being sent */
	bool		out_pending;
	bool		out_is_rowdesc; /* out holds the row description, held back */
	StringInfoData final;		/* the last message: 'C' or 'E' */
	bool		final_ready;	/* remote work over; final is complete */
	char	   *tag;
	int			next_statement; /* CALL_TRANSACTION: index into params */
	StringInfoData tags;		/* CALL_TRANSACTION: one tag per line */
	char		pool_name[NAMEDATALEN];
	char	   *tenant;			/* the caller's tenant, or NULL */
	char	   *search_path;	/* schema mode: the tenant's search_path */
	bool		own_txn;		/* we opened a transaction for this call */
	bool		pipelined;		/* in a connection's pipeline (PipeSeg) */
	int			pl_nprefix;		/* pipelined: BEGIN and tenant before the statements */
	int			pl_query;		/* pipelined: the query being read in its segment */
	bool		pl_in_commit;	/* pipelined: reading its COMMIT's segment */
	int32		error_position; /* of the remote's error in sql, or 0 */

	/* for the pool's counters (stats.h) */
	int			stats_index;	/* counted in "outstanding", or -1 */
	TimestampTz accepted_at;
	TimestampTz started_at;		/* 0 until it has a connection */
	uint32		stats_generation;	/* of that entry when counted */
	char		sqlstate[6];	/* of the error, if failed */
	bool		remote_error;	/* the error came from the remote */
	bool		timed_out;		/* a time limit ended it */
	bool		worker_error;	/* the worker's own verdict, not a fault */
	bool		abandoned;		/* its backend went away */
} Request;

typedef struct ChannelState
{
	WorkerChannel ch;
	Request    *active;
	List	   *lost;			/* pools whose begin() connection was lost */
} ChannelState;

static MemoryContext pool_context = NULL;
static dlist_head all_pools = DLIST_STATIC_INIT(all_pools);
static ChannelState *channels = NULL;

/*
 * Something happened since the gauges were last published: publish again
 * at the next maintenance tick even if nothing else wakes the worker, so
 * pool_stats settles within 250 ms; at rest nothing wakes it at all.
 */
static bool gauges_dirty = false;
static TimestampTz next_maintenance = 0;

static void request_fail(Request *req, const char *sqlstate,
						 const char *message, const char *detail,
						 const char *hint);
static void request_set_error(Request *req, const char *sqlstate,
							  const char *message, const char *detail,
							  const char *hint, const char *context);
static void request_conclude(Request *req);
static void conn_pipeline_read(RemoteConn *rc);
static bool request_pump(Request *req);
static bool request_may_read(Request *req);
static bool request_may_pipeline(Request *req);
static void request_send_pipelined(Request *req);
static bool conn_pipeline_push(RemoteConn *rc, Request *req, SegKind kind, bool last);
static void conn_release(RemoteConn *rc);
static void channel_release_pins(int channel);
static void request_next_statement(Request *req);
static void request_after_setup(Request *req);
static bool request_needs_tenant(Request *req);
static bool request_refuse_unguarded(Request *req);
static void request_send_failed(Request *req, const char *msg);
static void request_fail_unsent(Request *req, const char *msg);
static void request_send_tenant(Request *req);
static void conn_send_hello(RemoteConn *rc);
static void conn_set_guard(RemoteConn *rc, int state, const char *detail);
static void conn_reset(RemoteConn *rc, ConnState state);
static void conn_read_hello(RemoteConn *rc, const PGresult *res);
static void pool_dispatch(Pool *pool);
static void pool_touch(Pool *pool);
static void pool_wake(Pool *pool, TimestampTz at);
static void pool_note_waiting(Pool *pool);
static void pool_forget_turn(Pool *pool);
static void pool_fail_unreachable(Pool *pool, Request *only);
static const char *pool_connect_hint(Pool *pool);

void
pool_init(void)
{
	pool_context = AllocSetContextCreate(TopMemoryContext,
										 "netrun_pool pools",
										 ALLOCSET_DEFAULT_SIZES);
	channels = MemoryContextAllocZero(pool_context,
									  sizeof(ChannelState) * netrun_shared->max_channels);
	/* the reserve for the event set's descriptor (see pool_run_once) */
	ReserveExternalFD();
	stats_clear_all();
	/* a worker that died mid-call left its count behind */
	pg_atomic_write_u32(&netrun_shared->active_calls, 0);
}

/* After an error unwound the worker's loop: no dispatch is in progress. */
void
pool_after_error(void)
{
	dlist_iter	it;

	dlist_foreach(it, &all_pools)
	{
		Pool	   *pool = dlist_container(Pool, node, it.cur);

		/* and the turn it broke off is looked at again, all of it */
		pool->dispatching = false;
		pool_touch(pool);
		pool_wake(pool, GetCurrentTimestamp());
	}
}

/* ---------------------------------------------------------------------
 * Connections
 * ---------------------------------------------------------------------
 */

static void channel_note_lost(int channel, const char *pool_name);

/* Forget a call on its connection: its segments' results are thrown away. */
static void
conn_forget_request(RemoteConn *rc, Request *req)
{
	for (int i = 0; i < rc->nsegs; i++)
	{
		PipeSeg    *seg = &rc->segs[(rc->seg_first + i) % PIPE_MAX_SEGS];

		if (seg->req == req)
			seg->req = NULL;
	}
	if (rc->req == req)
		rc->req = NULL;
}

/*
 * Take the next call out of a pipeline that is being given up, oldest
 * first, or NULL when none is left; *head says whether the remote was
 * running it (its segment was the pipeline's first).
 */
static Request *
conn_pop_call(RemoteConn *rc, bool *head)
{
	bool		first = true;

	while (rc->nsegs > 0)
	{
		Request    *req = rc->segs[rc->seg_first].req;

		*head = first;
		first = false;
		rc->seg_first = (rc->seg_first + 1) % PIPE_MAX_SEGS;
		rc->nsegs--;
		if (req == NULL)
			continue;
		conn_forget_request(rc, req);
		req->rc = NULL;
		return req;
	}
	rc->ncalls = 0;
	rc->req = NULL;
	return NULL;
}

/*
 * The connection ends with calls still in its pipeline: each hears it.
 * The first, whose statements the remote was running, lost its connection
 * (08006, as a call alone does).  The remote may or may not have run the
 * ones behind it before it noticed: they get 08007, never a silent
 * retry, since a retried write could apply twice.
 */
static void
conn_fail_calls(RemoteConn *rc, const char *why)
{
	Request    *req;
	bool		head;

	while ((req = conn_pop_call(rc, &head)) != NULL)
	{
		if (head)
			request_set_error(req, "08006",
							  psprintf("lost connection to netrun_pool connection \"%s\"",
									   req->pool_name),
							  why, NULL, NULL);
		else
			request_set_error(req, "08007",
							  psprintf("the outcome of the call on netrun_pool connection \"%s\" is unknown",
									   req->pool_name),
							  psprintf("The call was sent in a pipeline behind another, and the connection ended before its answer came (%.*s); the remote may or may not have run it.",
									   (int) strcspn(why, "\n"), why),
							  "Check the remote before running it again.", NULL);
		request_conclude(req);
	}
}

static void
conn_close(RemoteConn *rc)
{
	Pool	   *pool = rc->pool;

	if (rc->ncalls > 0)
		conn_fail_calls(rc, "the connection was closed");
	if (rc->cancel_pending)
		cancel_close(&rc->cancel);

	/* a begin() transaction dies with its connection: tell its backend */
	if (rc->pin_txn && rc->pinned_to >= 0)
		channel_note_lost(rc->pinned_to, pool->settings.name);

	pool_connect_close(rc->conn, &rc->watch);
	dlist_delete(&rc->node);
	pool->nconns--;
	STATS_BUMP(pool->stats_index, closed_total);
	pfree(rc);
}

/* Close a connection and stop watching its socket (before it closes). */
void
pool_connect_close(PGconn *conn, EvWatch *watch)
{
	evloop_forget(watch, conn ? PQsocket(conn) : PGINVALID_SOCKET);
	if (conn == NULL)
		return;
	PQfinish(conn);
	ReleaseExternalFD();
}

/*
 * The pool's password in clear (NULL if it does not decrypt).  The key
 * file can be missing or unreadable (an ERROR in secret.c): that is this
 * connect's failure, reported in *error, not the worker's.
 */
static char *
pool_decrypt_secret(Pool *pool, char **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile secret = NULL;

	PG_TRY();
	{
		secret = netrun_secret_decrypt(pool->secret, pool->settings.name);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		*error = pstrdup(edata->message);
		FreeErrorData(edata);
		return NULL;
	}
	PG_END_TRY();
	return secret;
}

/*
 * Start connecting to the pool's remote, taking a descriptor; NULL with
 * the reason in *error if it cannot even start, or NULL with *error NULL
 * while its host names are being resolved (pool_names_resolved says when
 * to try again).  The keywords libpq gets: the registered conninfo, with
 * the addresses of its host names (resolve.c), the decrypted secret, and
 * the settings the pool owns.  The password lives only in memory that is
 * wiped as soon as libpq has copied it.  Pool connections and health
 * probes both connect here.
 */
PGconn *
pool_connect_start(Pool *pool, const char *appname, const char *options,
				   char **error, bool *local)
{
	const char *keys[64];
	const char *vals[64];
	int			n = 0;
	PQconninfoOption *opts;
	PQconninfoOption *secret_opts = NULL;
	char	   *secret = NULL;
	PGconn	   *conn;
	const char *host = NULL,
			   *hostaddr = NULL,
			   *port = NULL;
	char	   *host_out,
			   *hostaddr_out,
			   *port_out;

	*error = NULL;
	*local = false;
	if (pool->resolving)
		return NULL;
	if (!AcquireExternalFD())
	{
		/* the worker's shortage, not the remote's failure */
		*local = true;
		*error = pstrdup("too many open files in the netrun_pool worker");
		return NULL;
	}

	opts = PQconninfoParse(pool->conninfo, NULL);
	if (opts == NULL)
	{
		ReleaseExternalFD();
		*error = pstrdup("the registered connection string cannot be parsed");
		return NULL;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++)
	{
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
	}
	switch (resolve_hosts(host, hostaddr, port, &host_out, &hostaddr_out,
						  &port_out, error))
	{
		case RESOLVE_READY:
			break;
		case RESOLVE_PENDING:
			pool->resolving = true;
			PQconninfoFree(opts);
			ReleaseExternalFD();
			return NULL;
		case RESOLVE_FAILED:
			PQconninfoFree(opts);
			ReleaseExternalFD();
			return NULL;
	}

	if (pool->secret)
	{
		secret = pool_decrypt_secret(pool, error);
		if (*error)
		{
			PQconninfoFree(opts);
			ReleaseExternalFD();
			return NULL;
		}
		if (secret == NULL)
		{
			PQconninfoFree(opts);
			ReleaseExternalFD();
			*error = pstrdup("the stored password does not decrypt with netrun_pool.secret_key_file");
			return NULL;
		}
		secret_opts = PQconninfoParse(secret, NULL);
	}

	for (PQconninfoOption *o = opts; o->keyword && n < 45; o++)
		if (o->val)
		{
			/* the resolved hosts come below */
			if (host_out &&
				(strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0 ||
				 (port_out && strcmp(o->keyword, "port") == 0)))
				continue;
			keys[n] = o->keyword;
			vals[n] = o->val;
			/* our settings after the registered options: ours win */
			if (options && strcmp(o->keyword, "options") == 0)
			{
				vals[n] = psprintf("%s %s", o->val, options);
				options = NULL;
			}
			n++;
		}
	if (secret_opts)
		for (PQconninfoOption *o = secret_opts; o->keyword && n < 50; o++)
			if (o->val)
			{
				keys[n] = o->keyword;
				vals[n++] = o->val;
			}

	if (host_out)
	{
		keys[n] = "host";
		vals[n++] = host_out;
		keys[n] = "hostaddr";
		vals[n++] = hostaddr_out;
		if (port_out)
		{
			keys[n] = "port";
			vals[n++] = port_out;
		}
	}
	if (options)
	{
		keys[n] = "options";
		vals[n++] = options;
	}
	keys[n] = "application_name";
	vals[n++] = appname;
	keys[n] = "client_encoding";
	vals[n++] = GetDatabaseEncodingName();
	keys[n] = NULL;
	vals[n] = NULL;

	conn = PQconnectStartParams(keys, vals, 0);

	if (secret_opts)
	{
		for (PQconninfoOption *o = secret_opts; o->keyword; o++)
			if (o->val)
				explicit_bzero(o->val, strlen(o->val));
		PQconninfoFree(secret_opts);
	}
	if (secret)
	{
		explicit_bzero(secret, strlen(secret));
		pfree(secret);
	}
	PQconninfoFree(opts);

	if (conn == NULL || PQstatus(conn) == CONNECTION_BAD)
	{
		*error = pstrdup(conn ? PQerrorMessage(conn) : "out of memory");
		if (conn)
			PQfinish(conn);
		ReleaseExternalFD();
		return NULL;
	}
	return conn;
}

/*
 * The pool's session settings for the startup packet ("options"): the
 * text conversions rely on DateStyle, IntervalStyle and extra_float_digits,
 * the pool's statement timeout, and the remote's check for a client that
 * went away, which is how a call cancelled by closing stops there.  As
 * session defaults they survive DISCARD ALL (conn_queue_reset).
 */
static const char *
pool_startup_options(Pool *pool)
{
	static char buf[256];

	snprintf(buf, sizeof(buf),
			 "-c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3 "
			 "-c statement_timeout=%d -c client_connection_check_interval=%d",
			 pool->settings.statement_timeout_ms, REMOTE_CHECK_INTERVAL_MS);
	return buf;
}

static RemoteConn *
conn_start(Pool *pool, char **error)
{
	char		appname[NAMEDATALEN + 16];
	RemoteConn *rc;
	PGconn	   *conn;
	bool		local;
	bool		options = !pool->startup_options_refused;

	snprintf(appname, sizeof(appname), "netrun_pool:%s", pool->settings.name);
	conn = pool_connect_start(pool, appname,
							  options ? pool_startup_options(pool) : NULL,
							  error, &local);
	if (conn == NULL)
		return NULL;

	STATS_BUMP(pool->stats_index, created_total);
	rc = MemoryContextAllocZero(pool_context, sizeof(RemoteConn));
	rc->pool = pool;
	rc->conn = conn;
	rc->used_options = options;
	rc->state = CONN_CONNECTING;
	rc->poll = PGRES_POLLING_WRITING;
	rc->pinned_to = -1;
	rc->created_at = GetCurrentTimestamp();
	rc->connect_deadline = TimestampTzPlusMilliseconds(rc->created_at,
													   pool->settings.connect_timeout_ms);
	dlist_push_tail(&pool->conns, &rc->node);
	pool->nconns++;
	pool_touch(pool);
	pool_wake(pool, rc->connect_deadline);
	return rc;
}

/* libpq's message without its trailing newline. */
static char *
conn_error_message(PGconn *conn)
{
	char	   *msg = pstrdup(PQerrorMessage(conn));
	int			len = strlen(msg);

	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		msg[--len] = '\0';
	return msg;
}

/*
 * The pool has no connection open or opening, and its connects fail: its
 * callers hear why at once, the way pgbouncer answers "server login has
 * been failing", instead of queueing until acquire_timeout_ms behind a
 * remote that refuses.
 */
static void
pool_fail_unreachable(Pool *pool, Request *only)
{
	while (only || !dlist_is_empty(&pool->waiters))
	{
		Request    *req = only;

		if (req == NULL)
		{
			req = dlist_container(Request, node, dlist_pop_head_node(&pool->waiters));
			pool->nwaiting--;
		}
		else
			req->worker_error = true;	/* a verdict on earlier attempts */
		request_fail(req, "08001",
					 psprintf("could not connect to netrun_pool connection \"%s\"",
							  pool->settings.name),
					 pool->last_connect_error,
					 pool_connect_hint(pool));
		if (only)
			break;
	}
}

/*
 * What to do about a failed connect.  The remote refused who we are (a
 * password, pg_hba.conf, a role or database that does not exist): the
 * registered connection string is wrong.  Otherwise it does not answer.
 */
static const char *
pool_connect_hint(Pool *pool)
{
	const char *e = pool->last_connect_error;

	if (strstr(e, "authentication failed") || strstr(e, "no pg_hba.conf entry") ||
		strstr(e, "does not exist") || strstr(e, "password") ||
		strstr(e, "permission denied"))
		return psprintf("Fix the registered connection string: SELECT netrun_pool.configure(%s, conninfo => '...'); (a password goes in a password file: see README).",
						quote_literal_cstr(pool->settings.name));
	return "Check that the remote server runs and accepts connections at the registered address (netrun_pool.health shows what the pool sees). Calls fail at once until a connect or a health probe succeeds.";
}

/*
 * The remote answered a health probe: connects may start again at once
 * (a backoff grown during an outage must not delay the first calls after
 * it).  The last connect error stays until a connect succeeds: a probe's
 * own connection can be up while new ones are refused (a remote at its
 * max_connections), and a caller that times out must still hear why.
 */
void
pool_probe_succeeded(Pool *pool)
{
	pool->connect_failures = 0;
	pool->next_connect_attempt = 0;
	if (pool->nwaiting > 0)
		pool_dispatch(pool);
}

/*
 * A connect or a probe failed: the pool's host names are asked of the DNS
 * again at the next attempt (a name moved to a new primary is followed).
 */
void
pool_forget_names(Pool *pool)
{
	PQconninfoOption *opts = PQconninfoParse(pool->conninfo, NULL);

	if (opts == NULL)
		return;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (strcmp(o->keyword, "host") == 0)
			resolve_forget_hosts(o->val);
	PQconninfoFree(opts);
}

/*
 * Names were resolved (or failed): pools that waited for one try again now
 * (not here: this may run inside a connect, pool_connect_start).
 */
void
pool_names_resolved(void)
{
	dlist_iter	it;

	dlist_foreach(it, &all_pools)
	{
		Pool	   *pool = dlist_container(Pool, node, it.cur);

		if (!pool->resolving)
			continue;
		pool->resolving = false;
		pool_touch(pool);
		pool_wake(pool, GetCurrentTimestamp());
	}
}

/* A connection attempt failed: back off; with nothing else open, fail. */
static void
conn_failed_to_connect(RemoteConn *rc, const char *why)
{
	Pool	   *pool = rc->pool;
	long		backoff_ms;

	strlcpy(pool->last_connect_error, why, sizeof(pool->last_connect_error));
	conn_close(rc);
	pool_forget_names(pool);

	/*
	 * Connects back off exponentially, with jitter so that many pools do
	 * not retry in step: about 100 ms, 200 ms, ... up to 30 s.  Waiters
	 * stay queued: a remote back within their acquire_timeout_ms serves
	 * them; past it they hear the last reason (pool_check_deadlines).
	 */
	pool->connect_failures++;
	backoff_ms = Min(100L << Min(pool->connect_failures - 1, 9), 30000L);
	backoff_ms = backoff_ms / 2 + (long) (pg_prng_double(&pg_global_prng_state) * backoff_ms / 2);
	pool->next_connect_attempt = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															 backoff_ms);
	pool_wake(pool, pool->next_connect_attempt);
	if (pool->nconns == 0)
		pool_fail_unreachable(pool, NULL);
}

static bool
conn_too_old(RemoteConn *rc, TimestampTz now)
{
	return TimestampDifferenceExceeds(rc->created_at, now,
									  rc->pool->settings.recycle_s * 1000);
}

static void
conn_now_idle(RemoteConn *rc)
{
	TimestampTz now = GetCurrentTimestamp();

	rc->state = CONN_IDLE;
	rc->req = NULL;
	rc->want_write = false;
	rc->idle_since = now;
	rc->pool->connect_failures = 0;
	rc->pool->last_connect_error[0] = '\0';
	/*
	 * Recycled only here, between calls, never while in use; and an
	 * overflow connection (above pool_max) goes as soon as it is free.
	 */
	if (rc->retire || !rc->pool->present || conn_too_old(rc, now) ||
		(rc->pool->nconns > rc->pool->settings.pool_max &&
		 dlist_is_empty(&rc->pool->waiters)))
	{
		Pool	   *pool = rc->pool;

		if (!rc->retire && pool->present && conn_too_old(rc, now))
			STATS_BUMP(pool->stats_index, recycled_total);
		conn_close(rc);
		pool_dispatch(pool);
		return;
	}
	pool_dispatch(rc->pool);
}

/*
 * Ask the new connection's remote whether it enforces the tenant guard
 * (conn_read_hello reads the answer); the reset follows.
 */
static void
conn_send_hello(RemoteConn *rc)
{
	char	   *sql = guard_hello_sql(rc->guard_challenge);
	bool		sent = PQsendQuery(rc->conn, sql);

	pfree(sql);
	if (!sent)
	{
		conn_failed_to_connect(rc, conn_error_message(rc->conn));
		return;
	}
	rc->hello_inflight = true;
	rc->want_write = PQflush(rc->conn) == 1;
}

/*
 * Queue the reset between callers on a connection in pipeline mode, then
 * one Sync: DISCARD ALL (it refuses to run in a transaction block, and
 * after the Sync before it, it is the first statement of a transaction,
 * which it commits at once), then our session settings.  Nothing one call did to the session is seen by the next:
 * settings, temporary objects, prepared statements, cursors, LISTEN,
 * advisory locks, sequence state, SET ROLE and the tenant.  The Syncs it
 * added, or -1 if it could not be sent.
 */
static bool
conn_queue_reset(RemoteConn *rc)
{
	PGconn	   *conn = rc->conn;

	/*
	 * Once set up, a connection whose settings came in its startup packet
	 * gets them back from DISCARD ALL itself (RESET ALL returns each
	 * setting to its session default, which the startup packet set), and
	 * its tenant setting returns to '' (its default once it has been set:
	 * a placeholder's, or the remote guard's own).
	 */
	if (!PQsendQueryParams(conn, "DISCARD ALL", 0, NULL, NULL, NULL, NULL, 0) ||
		((!rc->settings_in_options || rc->state == CONN_SETUP) &&
		 !PQsendQueryParams(conn, rc->settings_sql, 0, NULL, NULL, NULL, NULL, 0)) ||
		!PQpipelineSync(conn))
		return false;
	/* what the calls queued behind it will find */
	rc->tenant_known = true;
	rc->tenant_now[0] = '\0';
	return conn_pipeline_push(rc, NULL, SEG_RESET, false);
}

/* Note what the next Sync on the connection will end. */
static bool
conn_pipeline_push(RemoteConn *rc, Request *req, SegKind kind, bool last)
{
	PipeSeg    *seg;

	if (rc->nsegs >= PIPE_MAX_SEGS)
		return false;			/* cannot happen: depth is bounded */
	seg = &rc->segs[(rc->seg_first + rc->nsegs) % PIPE_MAX_SEGS];
	seg->req = req;
	seg->kind = kind;
	seg->last = last;
	if (req)
		req->pipelined = true;
	if (rc->nsegs == 0)
		rc->req = req;
	rc->nsegs++;
	if (last)
		rc->ncalls++;
	return true;
}

/*
 * Put the session back to the state a new caller may expect, in one
 * round trip: its transaction rolled back, then the reset.  A reset that
 * fails closes the connection (conn_pipeline_result); at connect, that is
 * a failed connect.
 */
static void
conn_reset(RemoteConn *rc, ConnState state)
{
	PGconn	   *conn = rc->conn;

	Assert(rc->nsegs == 0);
	pool_touch(rc->pool);
	rc->state = state;
	rc->req = NULL;
	rc->housekeeping_failed = false;
	rc->housekeeping_error[0] = '\0';
	rc->reset_after_call = false;
	rc->last_alone = false;
	rc->pipe_tenant = false;
	if (!PQenterPipelineMode(conn))
		goto failed;
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
	{
		if (!PQsendQueryParams(conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) ||
			!PQpipelineSync(conn) ||
			!conn_pipeline_push(rc, NULL, SEG_ROLLBACK, false))
			goto failed;
	}
	if (!conn_queue_reset(rc))
		goto failed;
	rc->want_write = PQflush(conn) == 1;
	return;

failed:
	if (state == CONN_SETUP)
		conn_failed_to_connect(rc, conn_error_message(conn));
	else
		conn_close(rc);
}

static void
conn_advance_connect(RemoteConn *rc)
{
	rc->poll = PQconnectPoll(rc->conn);
	rc->connect_polled = true;	/* its socket may be another now */
	if (rc->poll == PGRES_POLLING_FAILED)
	{
		char	   *msg = conn_error_message(rc->conn);

		/*
		 * A pgbouncer refuses a startup "options" (unless told to ignore
		 * it), and a remote before PostgreSQL 14 one of our settings: the
		 * pool connects without them from now on, at once, and sets them
		 * with a statement after each DISCARD ALL instead.
		 */
		if (rc->used_options &&
			(strstr(msg, "unsupported startup parameter") ||
			 strstr(msg, "unrecognized configuration parameter")))
		{
			Pool	   *pool = rc->pool;

			pool->startup_options_refused = true;
			elog(LOG, "netrun_pool connection \"%s\": the remote refused the settings in the startup packet; they are set after each reset instead: %s",
				 pool->settings.name, msg);
			conn_close(rc);
			pool_dispatch(pool);
			return;
		}
		conn_failed_to_connect(rc, msg);
		return;
	}
	if (rc->poll != PGRES_POLLING_OK)
		return;

	rc->used_password = PQconnectionUsedPassword(rc->conn);
	/* the remote reports DateStyle and IntervalStyle: did ours hold? */
	rc->settings_in_options = rc->used_options &&
		PQparameterStatus(rc->conn, "DateStyle") &&
		strncmp(PQparameterStatus(rc->conn, "DateStyle"), "ISO,", 4) == 0 &&
		PQparameterStatus(rc->conn, "IntervalStyle") &&
		strcmp(PQparameterStatus(rc->conn, "IntervalStyle"), "postgres") == 0;
	if (PQsetnonblocking(rc->conn, 1) != 0)
	{
		conn_failed_to_connect(rc, "could not make the connection non-blocking");
		return;
	}
	/*
	 * The session settings the text conversions rely on, the connection's
	 * statement timeout, and (PG >= 14) the remote's check for a client
	 * that went away, which is how a call cancelled by closing stops
	 * there.  They came in the startup packet (pool_startup_options), and
	 * are applied again here, after connecting, as postgres_fdw does: a
	 * PGDATESTYLE in the worker's environment, or a pgbouncer that ignores
	 * "options", would otherwise win.  The same statement sets the tenant
	 * setting to "", so that a fresh and a reused connection look the same
	 * to a policy (never set, it would be NULL); after a DISCARD ALL it is
	 * "" again by itself.  It follows each DISCARD ALL only when the
	 * startup settings did not hold (conn_queue_reset).  The setting's
	 * name was checked at registration (a.b, lowercase).
	 */
	snprintf(rc->settings_sql, sizeof(rc->settings_sql),
			 "SELECT pg_catalog.set_config('DateStyle', 'ISO', false), "
			 "pg_catalog.set_config('IntervalStyle', 'postgres', false), "
			 "pg_catalog.set_config('extra_float_digits', '3', false), "
			 "pg_catalog.set_config('statement_timeout', '%d', false), "
			 "%s"
			 "pg_catalog.set_config('%s', '', false)",
			 rc->pool->settings.statement_timeout_ms,
			 PQserverVersion(rc->conn) >= 140000 ?
			 "pg_catalog.set_config('client_connection_check_interval', '" CppAsString2(REMOTE_CHECK_INTERVAL_MS) "', false), " : "",
			 rc->pool->settings.tenant_setting);

	/* the guard's hello first, then the reset (which applies the settings) */
	rc->state = CONN_SETUP;
	rc->tenant_known = true;
	rc->tenant_now[0] = '\0';
	if (rc->pool->settings.tenant_guard == GUARD_MODE_OFF)
	{
		conn_set_guard(rc, GUARD_OFF, "");
		conn_reset(rc, CONN_SETUP);
		return;
	}
	conn_send_hello(rc);
}

/*
 * Consume what the remote sent for a connection in SETUP: the answer to
 * the hello; then the reset's pipeline (conn_pipeline_read).
 */
static void
conn_advance_housekeeping(RemoteConn *rc)
{
	PGresult   *res;

	if (rc->nsegs > 0)
	{
		conn_pipeline_read(rc);
		return;
	}
	if (!PQconsumeInput(rc->conn))
	{
		if (rc->state == CONN_SETUP)
			conn_failed_to_connect(rc, conn_error_message(rc->conn));
		else
			conn_close(rc);
		return;
	}
	while (!PQisBusy(rc->conn))
	{
		res = PQgetResult(rc->conn);
		if (res == NULL)
		{
			/* the hello is answered: the reset makes the connection ready */
			rc->hello_inflight = false;
			conn_reset(rc, rc->state);
			return;
		}
		if (rc->hello_inflight)
			conn_read_hello(rc, res);
		PQclear(res);
	}
}

static bool request_pipeline_result(Request *req, PGresult *res);
static void request_pipeline_query_done(Request *req);
static void conn_pipeline_next(RemoteConn *rc);

/*
 * The connection broke mid-pipeline: every call in it hears (08006 for
 * the one the remote was running, 08007 for those behind it), then it
 * goes.  At connect, that is a failed connect.
 */
static void
conn_pipeline_lost(RemoteConn *rc)
{
	char	   *why = conn_error_message(rc->conn);

	conn_fail_calls(rc, why);
	if (rc->state == CONN_SETUP)
		conn_failed_to_connect(rc, why);
	else
		conn_close(rc);
}

/*
 * The pipeline's head Sync came back.  True when the connection is done
 * with (idle, reset again, or closed) and must not be read on.
 */
static bool
conn_pipeline_sync(RemoteConn *rc)
{
	PipeSeg		seg = rc->segs[rc->seg_first];

	rc->seg_first = (rc->seg_first + 1) % PIPE_MAX_SEGS;
	rc->nsegs--;
	if (seg.last)
		rc->ncalls--;
	if (seg.req && seg.last)
	{
		/* the call is over: its answer is complete */
		Request    *req = seg.req;

		req->rc = NULL;
		request_conclude(req);
	}
	else if (seg.req && seg.kind == SEG_CALL)
		seg.req->pl_in_commit = true;

	/*
	 * A reset that failed leaves the session as the last caller left it:
	 * no call may run on it.  Those already behind it were sent; the
	 * remote may have run them, so they hear 08007.
	 */
	if (seg.kind == SEG_RESET && rc->housekeeping_failed && rc->ncalls > 0)
	{
		elog(WARNING, "netrun_pool: the reset between callers failed on connection \"%s\": %s",
			 rc->pool->settings.name, rc->housekeeping_error);
		conn_fail_calls(rc, "the reset between callers failed before it");
		conn_close(rc);
		return true;
	}
	if (rc->nsegs > 0)
	{
		rc->req = rc->segs[rc->seg_first].req;
		if (rc->ncalls == 0 && rc->state == CONN_BUSY)
			rc->state = CONN_RESETTING;
		conn_pipeline_next(rc);
		return false;
	}

	/* the pipeline is empty */
	rc->req = NULL;
	rc->pipe_tenant = false;
	rc->last_alone = false;
	if (!PQexitPipelineMode(rc->conn))
		rc->housekeeping_failed = true;
	if (PQstatus(rc->conn) != CONNECTION_OK)
	{
		if (rc->state == CONN_SETUP)
			conn_failed_to_connect(rc, conn_error_message(rc->conn));
		else
			conn_close(rc);
		return true;
	}
	if (rc->state == CONN_BUSY || rc->state == CONN_RESETTING)
	{
		/* pool_mode none: one connection per call, nothing to reset */
		if (!rc->reset_after_call &&
			rc->pool->settings.pool_mode == NETRUN_POOL_MODE_NONE &&
			!rc->pin_txn && !rc->pin_session)
		{
			conn_close(rc);
			return true;
		}
	}
	if (rc->reset_after_call && PQtransactionStatus(rc->conn) != PQTRANS_IDLE)
	{
		/*
		 * The call left a transaction open (its SQL was BEGIN), and DISCARD
		 * ALL refused to run in it: roll back, reset again.
		 */
		conn_reset(rc, CONN_RESETTING);
	}
	else if (rc->housekeeping_failed ||
			 PQtransactionStatus(rc->conn) != PQTRANS_IDLE)
	{
		if (rc->state == CONN_SETUP)
			conn_failed_to_connect(rc, psprintf("the session setup failed: %s",
												rc->housekeeping_error[0] ?
												rc->housekeeping_error :
												"the remote left a transaction open"));
		else
			conn_close(rc);
	}
	else
	{
		rc->tenant_known = true;
		rc->tenant_now[0] = '\0';
		conn_now_idle(rc);
	}
	return true;
}

/*
 * Before the next result is parsed: a call whose statement's rows are
 * next gets them one by one.  libpq applies single-row mode to the query
 * whose results it has not begun to read, so this runs right after the
 * previous query's end, before anything else reads the input.
 */
static void
conn_pipeline_next(RemoteConn *rc)
{
	Request    *req = rc->req;

	if (req && !req->pl_in_commit && !req->failed && req->kind == CALL_ROWS &&
		req->pl_query == req->pl_nprefix)
		(void) PQsetSingleRowMode(rc->conn);
}

/*
 * Read what the remote has sent for a connection in pipeline mode, in
 * order: each result goes to the call whose segment it is in (or to the
 * reset's bookkeeping).  A call whose backend has not taken its last
 * batch stops the reading (back-pressure): the calls behind it wait too.
 */
static void
conn_pipeline_read(RemoteConn *rc)
{
	PGconn	   *conn = rc->conn;

	if (!PQconsumeInput(conn))
	{
		conn_pipeline_lost(rc);
		return;
	}
	while (rc->nsegs > 0)
	{
		PipeSeg    *seg = &rc->segs[rc->seg_first];
		Request    *req = seg->req;
		PGresult   *res;

		if (req && !request_may_read(req))
			return;
		if (PQisBusy(conn))
			return;
		res = PQgetResult(conn);
		if (PQstatus(conn) != CONNECTION_OK)
		{
			PQclear(res);
			conn_pipeline_lost(rc);
			return;
		}
		if (res == NULL)
		{
			/* the end of one query's results */
			if (req)
				request_pipeline_query_done(req);
			conn_pipeline_next(rc);
			continue;
		}
		if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
		{
			PQclear(res);
			if (conn_pipeline_sync(rc))
				return;
			continue;
		}
		if (req)
		{
			MemoryContext old = MemoryContextSwitchTo(req->cxt);

			bool		go_on = request_pipeline_result(req, res);

			MemoryContextSwitchTo(old);
			if (!go_on)
			{
				/* COPY: the connection goes, and the call with its error */
				PQclear(res);
				conn_close(rc);
				return;
			}
			(void) request_pump(req);
		}
		else if ((seg->kind == SEG_RESET) &&
				 PQresultStatus(res) != PGRES_COMMAND_OK &&
				 PQresultStatus(res) != PGRES_TUPLES_OK &&
				 !rc->housekeeping_failed)
		{
			/* an error in the reset: the session may hold anything */
			const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

			rc->housekeeping_failed = true;
			strlcpy(rc->housekeeping_error, msg ? msg : PQerrorMessage(conn),
					sizeof(rc->housekeeping_error));
		}
		PQclear(res);
	}
}

/* This session's guard state, published for health and connections. */
static void
conn_set_guard(RemoteConn *rc, int state, const char *detail)
{
	NetrunPoolStats *s = stats_entry(rc->pool->stats_index);

	rc->guard = state;
	if (s)
	{
		SpinLockAcquire(&s->mutex);
		s->guard = state;
		strlcpy(s->guard_detail, detail, sizeof(s->guard_detail));
		SpinLockRelease(&s->mutex);
	}
}

/*
 * The remote's answer to guard_hello(): enforced only when it proved that
 * it holds our key, for this very session.  An error (no netrun_pool in
 * the remote database, an old version) means it has no guard.
 */
static void
conn_read_hello(RemoteConn *rc, const PGresult *res)
{
	char		detail[GUARD_DETAIL_LEN];
	int			state;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		PQnfields(res) == 1 && !PQgetisnull(res, 0, 0))
		state = guard_check_hello(PQgetvalue(res, 0, 0), rc->guard_challenge,
								  PQbackendPID(rc->conn), &rc->guard_pid,
								  rc->guard_nonce, detail);
	else
	{
		const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		state = GUARD_ABSENT;
		if (code && (strcmp(code, "42883") == 0 || strcmp(code, "3F000") == 0))
			strlcpy(detail, "netrun_pool is not installed in the remote database",
					sizeof(detail));
		else
			snprintf(detail, sizeof(detail), "the remote's guard_hello() failed: %s",
					 PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
					 PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "no answer");
	}
	rc->guard_seq = 0;
	conn_set_guard(rc, state, detail);
}

/* ---------------------------------------------------------------------
 * Messages to the backend
 * ---------------------------------------------------------------------
 */

static ChannelState *
request_channel(Request *req)
{
	return &channels[req->channel];
}

/*
 * Deliver what the request has for the backend, in order: the message in
 * flight, then the row batch (when it is big enough, or the request is
 * over), then the final message.  True when nothing is left to send;
 * false when the queue is full (the backend's read sets our latch) or
 * gone (the channel scan notices and abandons the request).
 */
static bool
request_pump(Request *req)
{
	ChannelState *cs = request_channel(req);

	for (;;)
	{
		if (req->out_pending)
		{
			shm_mq_result res;

			/*
			 * The row description waits for the first batch of rows or the
			 * end of the call, so that a small result reaches the backend
			 * in one wake-up instead of one per message.
			 */
			if (req->out_is_rowdesc && !req->final_ready &&
				req->batch.len < CHANNEL_BATCH_BYTES)
				return true;
			res = shm_mq_send(cs->ch.response, req->out.len, req->out.data,
							  true, true);
			if (res != SHM_MQ_DETACHED)
				channel_worker_ring(&cs->ch);
			if (res != SHM_MQ_SUCCESS)
				return false;
			req->out_pending = false;
			req->out_is_rowdesc = false;
			resetStringInfo(&req->out);
		}
		if (req->batch_rows > 0 &&
			(req->final_ready || req->batch.len >= CHANNEL_BATCH_BYTES))
		{
			appendStringInfoChar(&req->out, MSG_ROWS);
			msg_put_int32(&req->out, req->batch_rows);
			appendBinaryStringInfo(&req->out, req->batch.data, req->batch.len);
			req->out_pending = true;
			resetStringInfo(&req->batch);
			req->batch_rows = 0;
			continue;
		}
		if (req->final_ready && req->final.len > 0)
		{
			appendBinaryStringInfo(&req->out, req->final.data, req->final.len);
			req->out_pending = true;
			resetStringInfo(&req->final);
			continue;
		}
		return true;
	}
}

/* May the request read more from the remote?  Not while output waits. */
static bool
request_may_read(Request *req)
{
	return (!req->out_pending || req->out_is_rowdesc) &&
		req->batch.len < CHANNEL_BATCH_BYTES;
}

static void
request_add_rowdesc(Request *req, const PGresult *res)
{
	int			ncols = PQnfields(res);

	Assert(!req->out_pending);
	appendStringInfoChar(&req->out, MSG_ROWDESC);
	msg_put_int32(&req->out, ncols);
	for (int i = 0; i < ncols; i++)
	{
		msg_put_int32(&req->out, (int32) PQftype(res, i));
		appendStringInfoString(&req->out, PQfname(res, i));
		appendStringInfoChar(&req->out, '\0');
	}
	req->out_pending = true;
	req->out_is_rowdesc = true;
	req->sent_rowdesc = true;
}

static void
request_add_row(Request *req, const PGresult *res, int row)
{
	int			ncols = PQnfields(res);

	for (int i = 0; i < ncols; i++)
	{
		if (PQgetisnull(res, row, i))
			msg_put_int32(&req->batch, -1);
		else
		{
			int			len = PQgetlength(res, row, i);

			msg_put_int32(&req->batch, len);
			appendBinaryStringInfo(&req->batch, PQgetvalue(res, row, i), len);
			appendStringInfoChar(&req->batch, '\0');
		}
	}
	req->batch_rows++;
}

/* ---------------------------------------------------------------------
 * Requests
 * ---------------------------------------------------------------------
 */

/*
 * Calls between their request and their last message, published for the
 * callers' choice to poll or sleep (channel.c).  A new worker starts at 0.
 */
static uint32 active_calls = 0;
static instr_time last_call_end;	/* when active_calls last went down */

static void
pool_active_calls_changed(int delta)
{
	active_calls += delta;
	pg_atomic_write_u32(&netrun_shared->active_calls, active_calls);
	if (delta < 0)
		INSTR_TIME_SET_CURRENT(last_call_end);
}

static void
request_free(Request *req)
{
	ChannelState *cs = request_channel(req);
	NetrunPoolStats *s = stats_entry(req->stats_index);

	/* the entry may have gone to another pool since (a forced unregister) */
	if (s)
	{
		SpinLockAcquire(&s->mutex);
		if (s->generation == req->stats_generation)
			s->outstanding--;
		SpinLockRelease(&s->mutex);
	}
	if (cs->active == req)
	{
		cs->active = NULL;
		pool_active_calls_changed(-1);
	}
	MemoryContextDelete(req->cxt);
}

/*
 * Did the call fail through the remote's fault (as opposed to the
 * caller's SQL)?  A broken connection, a server shutting down or out of
 * resources, an internal error.  These feed the health error rate.
 */
static bool
sqlstate_is_remote_fault(const char *sqlstate)
{
	return strncmp(sqlstate, "08", 2) == 0 ||
		strncmp(sqlstate, "57P", 3) == 0 ||
		strncmp(sqlstate, "58", 2) == 0 ||
		strncmp(sqlstate, "XX", 2) == 0 ||
		strcmp(sqlstate, "53100") == 0 || strcmp(sqlstate, "53200") == 0;
}

/*
 * The call is over: count it.  An error in the caller's SQL is recorded
 * as its SQLSTATE only: its text may hold the caller's data, and
 * pool_stats is read by every role with usage on the connection.  The
 * remote's own failures (a shutdown, a lost connection) and the pool's
 * keep their message, which is the server's, not the caller's.
 */
static void
request_account(Request *req)
{
	Pool	   *pool = req->pool;
	NetrunPoolStats *s = stats_entry(req->stats_index);
	bool		fault = req->failed && !req->timed_out && !req->worker_error &&
		!req->abandoned && sqlstate_is_remote_fault(req->sqlstate);

	if (pool && pool->stats_index == req->stats_index)
	{
		health_note_call(&pool->probe, fault);
		pool_wake(pool, health_next_wake(&pool->probe));
	}
	if (s == NULL)
		return;
	SpinLockAcquire(&s->mutex);
	if (s->generation != req->stats_generation)
	{
		SpinLockRelease(&s->mutex);
		return;
	}
	if (req->started_at != 0)
	{
		TimestampTz now = GetCurrentTimestamp();

		s->queries_total++;
		stats_hist_add(&s->query_time, (uint64) Max(0, now - req->started_at));
	}
	if (req->failed)
	{
		char		what[STATS_ERROR_LEN];

		s->errors_total++;
		if (req->timed_out ||
			(strcmp(req->sqlstate, "57014") == 0 && req->remote_error))
			s->timeouts_total++;
		if (req->abandoned)
			snprintf(what, sizeof(what), "57014: the caller cancelled the call or went away");
		else if (req->remote_error && !fault)
			snprintf(what, sizeof(what), "remote error %s", req->sqlstate);
		else
		{
			/* our own message: after the 5-byte SQLSTATE in 'E' */
			const char *msg = req->final.len > 6 ? req->final.data + 6 : "";

			snprintf(what, sizeof(what), "%s: %s", req->sqlstate, msg);
		}
		stats_set_error(s, what);
	}
	SpinLockRelease(&s->mutex);
}

/*
 * The request is over on the remote side: complete its final message and
 * give back the connection.  The request lives until the message is out.
 */
static void
request_conclude(Request *req)
{
	RemoteConn *rc = req->rc;

	req->step = STEP_DELIVERING;
	req->rc = NULL;
	request_account(req);
	if (!req->failed)
	{
		appendStringInfoChar(&req->final, MSG_COMPLETE);
		appendStringInfoString(&req->final, req->tag ? req->tag : "");
		appendStringInfoChar(&req->final, '\0');
	}
	req->final_ready = true;
	if (rc && req->pipelined)
	{
		/* the connection goes on with the calls behind: forget this one */
		conn_forget_request(rc, req);
	}
	else if (rc)
	{
		rc->req = NULL;

		/*
		 * A failed call may have rolled back the tenant it set, and an
		 * open transaction may still do so: the next call sets it again.
		 */
		if (req->failed || PQtransactionStatus(rc->conn) != PQTRANS_IDLE)
			rc->tenant_known = false;
		/* session mode: the backend keeps its connection until release() */
		if (req->admitted && rc->pool->settings.pool_mode == NETRUN_POOL_MODE_SESSION &&
			req->kind != CALL_RELEASE)
		{
			rc->pin_session = true;
			rc->pinned_to = req->channel;
		}
		conn_release(rc);
	}
	if (request_pump(req))
		request_free(req);
}

/* Record an error as the final message (the first one wins). */
static void
request_set_error(Request *req, const char *sqlstate, const char *message,
				  const char *detail, const char *hint, const char *context)
{
	if (req->failed)
		return;
	/* rows not yet sent are dropped: the caller gets the error */
	resetStringInfo(&req->batch);
	req->batch_rows = 0;
	msg_put_error(&req->final, sqlstate, message, detail, hint, context,
				  req->error_position);
	req->failed = true;
	strlcpy(req->sqlstate, sqlstate, sizeof(req->sqlstate));
	req->remote_error = false;
}

static void
request_fail(Request *req, const char *sqlstate, const char *message,
			 const char *detail, const char *hint)
{
	request_set_error(req, sqlstate, message, detail, hint, NULL);
	request_conclude(req);
}

/* Remember the remote's error; the request concludes when libpq is done. */
static void
request_note_remote_error(Request *req, const PGresult *res)
{
	bool		first = !req->failed;
	const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	/*
	 * libpq's own errors (the connection broke mid-result) carry no
	 * SQLSTATE: they are connection failures, not the remote's word.
	 */
	if (sqlstate == NULL)
	{
		request_set_error(req, "08006",
						  psprintf("lost connection to netrun_pool connection \"%s\"",
								   req->pool_name),
						  conn_error_message(req->rc->conn), NULL, NULL);
		req->rc->retire = true;
		return;
	}
	/*
	 * Where in the caller's statement (one statement, sent as it is): psql
	 * then shows it with a caret.  Not for our own statements, nor for
	 * exec_transaction's, where the caller cannot tell which one.
	 */
	if (first && req->step == STEP_MAIN && req->kind != CALL_TRANSACTION &&
		PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION))
		req->error_position = atoi(PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION));
	request_set_error(req,
					  sqlstate,
					  PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
					  PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL),
					  PQresultErrorField(res, PG_DIAG_MESSAGE_HINT),
					  PQresultErrorField(res, PG_DIAG_CONTEXT));
	if (first)
		req->remote_error = true;
}

typedef enum SendMode
{
	SEND_SIMPLE,				/* our own BEGIN/COMMIT/ROLLBACK */
	SEND_WITH_PARAMS,			/* the caller's statement, single-row mode */
	SEND_ONE_STATEMENT			/* extended protocol, no params: exactly one
								 * command (exec_transaction) */
} SendMode;

static bool
request_send(Request *req, const char *sql, SendMode mode)
{
	PGconn	   *conn = req->rc->conn;
	int			ok;

	switch (mode)
	{
		case SEND_WITH_PARAMS:
			ok = PQsendQueryParams(conn, sql, req->nparams, NULL, req->params,
								   NULL, NULL, 0) &&
				PQsetSingleRowMode(conn);
			break;
		case SEND_ONE_STATEMENT:
			ok = PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0);
			break;
		default:
			ok = PQsendQuery(conn, sql);
			break;
	}
	if (!ok)
	{
		request_send_failed(req, conn_error_message(conn));
		return false;
	}
	req->rc->want_write = PQflush(conn) == 1;
	return true;
}

/*
 * A query could not be sent.  Nothing of this call reached the remote if
 * its very first query could not be sent on an unpinned connection: try
 * once more on another one.  Anything later may have had effects, and a
 * pinned connection carries a transaction or session: the caller hears.
 */
static void
request_send_failed(Request *req, const char *msg)
{
	RemoteConn *rc = req->rc;

	{
		if (!req->retried && !rc->pin_txn && !rc->pin_session &&
			(req->step == STEP_BEGIN ||
			 (req->step == STEP_MAIN && req->next_statement <= 1)) &&
			!req->sent_rowdesc && req->tags.len == 0)
		{
			Pool	   *pool = req->pool;

			req->retried = true;
			req->rc = NULL;
			req->started_at = 0;
			req->own_txn = false;
			rc->req = NULL;
			conn_close(rc);
			req->step = STEP_WAITING;
			req->next_statement = 0;
			dlist_push_head(&pool->waiters, &req->node);
			pool->nwaiting++;
			pool_wake(pool, req->acquire_deadline);
			pool_note_waiting(pool);
			pool_dispatch(pool);
			return;
		}
		request_fail_unsent(req, msg);
	}
}

/* A query could not be sent: the call fails, the connection retires. */
static void
request_fail_unsent(Request *req, const char *msg)
{
	req->rc->retire = true;
	request_fail(req, "08006",
				 psprintf("could not send a query to netrun_pool connection \"%s\"",
						  req->pool_name),
				 msg, NULL);
}

/* A connection is ours: check who may use it, then start. */
static void
request_start(Request *req, RemoteConn *rc)
{
	Pool	   *pool = req->pool;
	bool		behind = rc->nsegs > 0;

	pool_touch(pool);
	req->rc = rc;
	if (behind)
		{
		req->pipelined = true;	/* it never hands the connection back */
		STATS_BUMP(req->stats_index, pipelined_total);
	}
	else
	{
		rc->state = CONN_BUSY;
		rc->req = req;
	}
	req->started_at = GetCurrentTimestamp();
	{
		NetrunPoolStats *s = stats_entry(req->stats_index);

		if (s)
		{
			SpinLockAcquire(&s->mutex);
			s->acquired_total++;
			stats_hist_add(&s->acquire_wait,
						   (uint64) Max(0, req->started_at - req->accepted_at));
			SpinLockRelease(&s->mutex);
		}
	}

	/*
	 * The lesson of CVE-2007-3278: a non-superuser may not borrow the
	 * server's own identity on a remote that did not ask for a password.
	 */
	if (!(req->flags & REQ_SUPERUSER) && pool->settings.password_required &&
		!rc->used_password &&
		req->kind != CALL_COMMIT && req->kind != CALL_ROLLBACK && req->kind != CALL_RELEASE)
	{
		request_fail(req, "2F003",
					 psprintf("password is required for netrun_pool connection \"%s\"",
							  pool->settings.name),
					 "The remote server did not ask for a password, and non-superusers may only use connections that authenticate with one.",
					 "A superuser can register the connection with password_required => false.");
		return;
	}

	req->admitted = true;

	/*
	 * A read-only call or exec_transaction opens and ends a transaction of
	 * its own: inside one that is already open (begin(), or a session that
	 * ran BEGIN) it would either not be read-only or commit the caller's.
	 */
	if (((req->flags & REQ_READ_ONLY) || req->kind == CALL_TRANSACTION) &&
		!behind && !rc->pin_txn && PQtransactionStatus(rc->conn) != PQTRANS_IDLE)
	{
		request_fail(req, "25001",
					 psprintf("a remote transaction is already open on netrun_pool connection \"%s\"",
							  pool->settings.name),
					 "read_only calls and exec_transaction run in a transaction of their own.",
					 "End the session's transaction first.");
		return;
	}
	if ((req->flags & REQ_READ_ONLY) && rc->pin_txn)
	{
		request_fail(req, "25001",
					 psprintf("read_only is not possible inside begin() on netrun_pool connection \"%s\"",
							  pool->settings.name),
					 "The begin() transaction may already have written.",
					 "Call it without read_only, or outside the begin() transaction.");
		return;
	}

	switch (req->kind)
	{
		case CALL_BEGIN:
			if (rc->pin_txn)
			{
				request_conclude(req);	/* already begun: nothing to do */
				return;
			}
			req->step = STEP_MAIN;
			request_send(req, "BEGIN", SEND_SIMPLE);
			return;
		case CALL_COMMIT:
		case CALL_ROLLBACK:
			req->step = STEP_END;
			request_send(req, req->kind == CALL_COMMIT ? "COMMIT" : "ROLLBACK",
						 SEND_SIMPLE);
			return;
		case CALL_TRANSACTION:
			if (request_refuse_unguarded(req))
				return;
			/* inside begin() the statements join the open transaction */
			if (rc->pin_txn)
			{
				request_after_setup(req);
				return;
			}
			if (request_may_pipeline(req))
			{
				request_send_pipelined(req);
				return;
			}
			req->own_txn = true;
			req->step = STEP_BEGIN;
			request_send(req, "BEGIN", SEND_SIMPLE);
			return;
		default:
			if (request_refuse_unguarded(req))
				return;

			if (request_may_pipeline(req))
			{
				request_send_pipelined(req);
				return;
			}

			/*
			 * Step by step, a read-only call runs in a transaction of its
			 * own.  The tenant is set for the session, not LOCAL: the
			 * reset after the call clears it, so no transaction is needed
			 * for it.
			 */
			if (!rc->pin_txn && (req->flags & REQ_READ_ONLY))
			{
				req->own_txn = true;
				req->step = STEP_BEGIN;
				request_send(req, (req->flags & REQ_READ_ONLY) ? "BEGIN READ ONLY" : "BEGIN",
							 SEND_SIMPLE);
				return;
			}
			request_after_setup(req);
			return;
	}
}

/*
 * Does this call need the remote's tenant set: the remote session holds
 * another tenant than the call's (or none where the call has one), or we
 * no longer know which.  Every call's SQL then sees its own tenant, or
 * none, whatever ran on the connection before.
 */
static bool
request_needs_tenant(Request *req)
{
	RemoteConn *rc = req->rc;

	/*
	 * Behind a call that carried a tenant, a call sets its own (or none)
	 * whatever the reset between them will have done: should that reset
	 * fail, the call still never runs as another tenant.
	 */
	return !rc->tenant_known ||
		strcmp(rc->tenant_now, req->tenant ? req->tenant : "") != 0 ||
		(rc->nsegs > 0 && rc->pipe_tenant);
}

/*
 * tenant_guard => 'required': a call that carries a tenant runs only on a
 * remote that proved it enforces the guard.  Elsewhere the call's own SQL
 * could pick another tenant; refuse before anything is sent.
 */
static bool
request_refuse_unguarded(Request *req)
{
	RemoteConn *rc = req->rc;
	NetrunPoolStats *s;
	char		detail[GUARD_DETAIL_LEN] = "";

	if (req->tenant == NULL ||
		rc->pool->settings.tenant_guard != GUARD_MODE_REQUIRED ||
		rc->guard == GUARD_ENFORCED)
		return false;
	s = stats_entry(rc->pool->stats_index);
	if (s)
	{
		SpinLockAcquire(&s->mutex);
		strlcpy(detail, s->guard_detail, sizeof(detail));
		SpinLockRelease(&s->mutex);
	}
	req->worker_error = true;
	request_fail(req, "28000",
				 psprintf("netrun_pool connection \"%s\" does not enforce the tenant guard",
						  req->pool_name),
				 psprintf("The call carries a tenant, and the remote cannot stop the call's SQL from choosing another: %s.",
						  detail[0] ? detail : "it did not answer the guard's hello"),
				 "Install netrun_pool on the remote with netrun_pool.tenant_mode = pool and the same netrun_pool.guard_key_file, or, accepting that risk, configure the connection with tenant_guard => 'if_available'.");
	return true;
}

/*
 * The statement that sets the remote's tenant (and search_path) for the
 * session: with the guard, a signed assertion bound to this session;
 * without it, set_config, which the call's own SQL can undo (README:
 * the tenant on the remotes).  The values travel as parameters, never in
 * the statement's text.  NULL (the call failed) if it cannot be signed.
 * The buffers for the values are the caller's.
 */
static const char *
request_tenant_statement(Request *req, const char **values, int *nvalues,
						 char *seq, char *mac)
{
	RemoteConn *rc = req->rc;
	const char *tenant = req->tenant ? req->tenant : "";
	const char *sql;
	int			n;

	if (rc->guard == GUARD_ENFORCED)
	{
		if (!guard_sign(rc->guard_nonce, rc->guard_pid, rc->guard_seq + 1,
						tenant, mac))
		{
			rc->retire = true;
			request_fail(req, "28000",
						 psprintf("netrun_pool connection \"%s\" cannot sign the tenant",
								  req->pool_name),
						 "The pool's netrun_pool.guard_key_file could not be read.",
						 NULL);
			return NULL;
		}
		rc->guard_seq++;
		snprintf(seq, 32, INT64_FORMAT, rc->guard_seq);
		values[0] = tenant;
		values[1] = seq;
		values[2] = mac;
		n = 3;
		sql = req->search_path ?
			"SELECT netrun_pool.guard_assert($1, $2::bigint, $3), "
			"pg_catalog.set_config('search_path', $4, false)" :
			"SELECT netrun_pool.guard_assert($1, $2::bigint, $3)";
	}
	else
	{
		values[0] = rc->pool->settings.tenant_setting;
		values[1] = tenant;
		n = 2;
		sql = req->search_path ?
			"SELECT pg_catalog.set_config($1, $2, false), "
			"pg_catalog.set_config('search_path', $3, false)" :
			"SELECT pg_catalog.set_config($1, $2, false)";
	}
	if (req->search_path)
		values[n++] = req->search_path;
	*nvalues = n;
	/* known once it succeeded; a failure makes it unknown (conclude) */
	strlcpy(rc->tenant_now, tenant, sizeof(rc->tenant_now));
	rc->tenant_known = true;
	return sql;
}

/* Set the remote's tenant for this call, as a step of its own. */
static void
request_send_tenant(Request *req)
{
	RemoteConn *rc = req->rc;
	const char *values[4];
	int			n;
	const char *sql;
	char		seq[32];
	char		mac[GUARD_MAC_HEX + 1];

	sql = request_tenant_statement(req, values, &n, seq, mac);
	if (sql == NULL)
		return;
	req->step = STEP_TENANT;
	if (!PQsendQueryParams(rc->conn, sql, n, NULL, values, NULL, NULL, 0))
	{
		request_fail_unsent(req, conn_error_message(rc->conn));
		return;
	}
	rc->want_write = PQflush(rc->conn) == 1;
}

/*
 * Can this call go out as one pipeline: its BEGIN (READ ONLY), its
 * tenant, its statement(s), a Sync, its COMMIT and a Sync, then the reset
 * and a Sync, in one write?  Any query, exec or exec_transaction on an
 * unpinned connection of a transaction (or none) pool.  A call that runs
 * alone (api.c) and needs its tenant set goes step by step: some of its
 * commands refuse to run anywhere but first after a Sync.
 */
static bool
request_may_pipeline(Request *req)
{
	RemoteConn *rc = req->rc;

	return (req->kind == CALL_ROWS || req->kind == CALL_EXEC ||
			req->kind == CALL_TRANSACTION) &&
		!rc->pin_txn && !rc->pin_session &&
		rc->pool->settings.pool_mode != NETRUN_POOL_MODE_SESSION &&
		(rc->nsegs > 0 || PQtransactionStatus(rc->conn) == PQTRANS_IDLE) &&
		!((req->flags & REQ_ALONE) && request_needs_tenant(req));
}

/*
 * The whole call in one write, as its own segment of the connection's
 * pipeline, behind whatever the connection has in flight.  The tenant and
 * the statement share one transaction (the implicit one that ends at the
 * Sync, or the call's own BEGIN ... COMMIT), so a failed tenant leaves the
 * statement unrun: the server skips to the Sync.  The call is answered
 * at its last Sync, once its transaction committed; the reset follows in
 * the same write, and the connection is free when its Sync comes back.
 */
static void
request_send_pipelined(Request *req)
{
	RemoteConn *rc = req->rc;
	PGconn	   *conn = rc->conn;
	bool		behind = rc->nsegs > 0;
	bool		tenant = request_needs_tenant(req);
	bool		reset = rc->pool->settings.pool_mode == NETRUN_POOL_MODE_TRANSACTION;
	bool		own_txn = (req->flags & REQ_READ_ONLY) || req->kind == CALL_TRANSACTION;
	const char *values[4];
	int			n = 0;
	const char *tenant_sql = NULL;
	char		seq[32];
	char		mac[GUARD_MAC_HEX + 1];
	bool		ok;

	if (tenant)
	{
		tenant_sql = request_tenant_statement(req, values, &n, seq, mac);
		if (tenant_sql == NULL)
			return;
	}
	if (!behind && !PQenterPipelineMode(conn))
	{
		req->step = STEP_MAIN;	/* nothing sent: it may go elsewhere */
		request_send_failed(req, conn_error_message(conn));
		return;
	}
	ok = !own_txn ||
		PQsendQueryParams(conn, (req->flags & REQ_READ_ONLY) ? "BEGIN READ ONLY" : "BEGIN",
						  0, NULL, NULL, NULL, NULL, 0);
	ok = ok && (tenant_sql == NULL ||
				PQsendQueryParams(conn, tenant_sql, n, NULL, values, NULL, NULL, 0));
	if (req->kind == CALL_TRANSACTION)
	{
		for (int i = 0; ok && i < req->nparams; i++)
			ok = PQsendQueryParams(conn, req->params[i], 0, NULL, NULL, NULL, NULL, 0);
	}
	else
		ok = ok && PQsendQueryParams(conn, req->sql, req->nparams, NULL, req->params,
									 NULL, NULL, 0);
	ok = ok && PQpipelineSync(conn) &&
		conn_pipeline_push(rc, req, SEG_CALL, !own_txn);
	/*
	 * COMMIT after its own Sync: after an error the transaction is
	 * aborted at that Sync, and COMMIT then rolls it back without an
	 * error, so the reset after it always runs.
	 */
	ok = ok && (!own_txn ||
				(PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) &&
				 PQpipelineSync(conn) &&
				 conn_pipeline_push(rc, req, SEG_COMMIT, true)));
	ok = ok && (!reset || conn_queue_reset(rc));
	if (!ok)
	{
		/*
		 * Part of it may be queued: the connection is not fit for another
		 * call, and the calls in its pipeline end with it.
		 */
		char	   *msg = conn_error_message(conn);
		bool		queued = req->pipelined;

		conn_fail_calls(rc, msg);
		conn_close(rc);
		if (!queued)
		{
			req->rc = NULL;
			request_fail(req, "08006",
						 psprintf("could not send a query to netrun_pool connection \"%s\"",
								  req->pool_name),
						 msg, NULL);
		}
		return;
	}
	req->pl_nprefix = (own_txn ? 1 : 0) + (tenant ? 1 : 0);
	req->pl_query = 0;
	req->pl_in_commit = false;
	req->step = req->pl_nprefix > 0 ? STEP_TENANT : STEP_MAIN;
	rc->state = CONN_BUSY;
	rc->reset_after_call = reset;
	rc->last_alone = (req->flags & REQ_ALONE) != 0;
	if (req->tenant)
		rc->pipe_tenant = true;
	if (!behind)
	{
		rc->housekeeping_failed = false;
		rc->housekeeping_error[0] = '\0';
		conn_pipeline_next(rc);
	}
	rc->want_write = PQflush(conn) == 1;
}

/*
 * The connection is ready for the call's own work (its transaction open
 * if it needs one): set the tenant if needed, then run the statement(s).
 */
static void
request_after_setup(Request *req)
{
	if (req->step != STEP_TENANT && !req->own_txn && request_may_pipeline(req))
	{
		request_send_pipelined(req);
		return;
	}
	if (req->step != STEP_TENANT && request_needs_tenant(req))
	{
		request_send_tenant(req);
		return;
	}
	if (req->kind == CALL_TRANSACTION)
	{
		request_next_statement(req);
		return;
	}
	req->step = STEP_MAIN;
	request_send(req, req->sql, SEND_WITH_PARAMS);
}

/* exec_transaction: send the next statement, or COMMIT after the last. */
static void
request_next_statement(Request *req)
{
	if (req->next_statement < req->nparams)
	{
		req->step = STEP_MAIN;
		request_send(req, req->params[req->next_statement++], SEND_ONE_STATEMENT);
		return;
	}
	if (req->rc->pin_txn)
	{
		/* begin() owns the transaction: it commits at the local commit */
		req->tag = req->tags.data;
		request_conclude(req);
		return;
	}
	req->step = STEP_END;
	request_send(req, "COMMIT", SEND_SIMPLE);
}

/* The current step's results are all in: move on. */
static void
request_step_done(Request *req)
{
	switch (req->step)
	{
		case STEP_BEGIN:
			if (req->failed)
			{
				request_conclude(req);
				return;
			}
			request_after_setup(req);
			return;
		case STEP_TENANT:
			if (req->failed)
			{
				if (req->own_txn)
				{
					req->step = STEP_END;
					request_send(req, "ROLLBACK", SEND_SIMPLE);
				}
				else
					request_conclude(req);
				return;
			}
			request_after_setup(req);
			return;
		case STEP_MAIN:
			if (req->kind == CALL_BEGIN)
			{
				if (!req->failed)
				{
					req->rc->pin_txn = true;
					req->rc->pinned_to = req->channel;
				}
				request_conclude(req);
				return;
			}
			if (req->kind == CALL_TRANSACTION)
			{
				/* all or nothing: a statement may not end the transaction */
				if (!req->failed &&
					PQtransactionStatus(req->rc->conn) != PQTRANS_INTRANS)
					request_set_error(req, "25000",
									  "exec_transaction statements must not end the transaction",
									  psprintf("Statement %d committed or rolled back the remote transaction.",
											   req->next_statement),
									  "Leave out COMMIT, ROLLBACK and the like: exec_transaction commits at the end.",
									  NULL);
				if (!req->failed)
				{
					request_next_statement(req);
					return;
				}
				if (req->rc->pin_txn)
				{
					/* the begin() transaction is now aborted; its commit fails */
					request_conclude(req);
					return;
				}
				req->step = STEP_END;
				request_send(req, "ROLLBACK", SEND_SIMPLE);
				return;
			}
			if (req->own_txn)
			{
				req->step = STEP_END;
				request_send(req, req->failed ? "ROLLBACK" : "COMMIT", SEND_SIMPLE);
				return;
			}
			request_conclude(req);
			return;
		case STEP_END:
			if (req->kind == CALL_TRANSACTION && !req->failed)
				req->tag = req->tags.data;
			if (req->kind == CALL_COMMIT || req->kind == CALL_ROLLBACK)
			{
				RemoteConn *rc = req->rc;

				rc->pin_txn = false;
				/* a ROLLBACK undid any tenant set inside */
				rc->tenant_known = false;
				if (!rc->pin_session)
					rc->pinned_to = -1;
				/* COMMIT of an aborted transaction answers ROLLBACK */
				if (req->kind == CALL_COMMIT && !req->failed && req->tag &&
					strcmp(req->tag, "ROLLBACK") == 0)
					request_set_error(req, "40000",
									  psprintf("the remote transaction of netrun_pool connection \"%s\" was rolled back",
											   req->pool_name),
									  "An error inside it aborted it, so its COMMIT rolled it back.",
									  NULL, NULL);
			}
			request_conclude(req);
			return;
		default:
			elog(ERROR, "unexpected request step %d", req->step);
	}
}

/*
 * One result of the current query of a call, whether it goes step by step
 * or in a pipeline; req->step says what the query is (STEP_MAIN: the
 * caller's statement).  After an error in a pipeline the server skips to
 * the Sync, and libpq reports each skipped query as aborted.  False for
 * COPY: libpq would hand out COPY results for ever, and the only
 * non-blocking way out is to close the connection (the call has its
 * error; the caller concludes it).
 */
static bool
request_take_result(Request *req, PGresult *res)
{
	bool		main = req->step == STEP_MAIN;
	bool		rows = main && req->kind == CALL_ROWS && !req->failed;

	switch (PQresultStatus(res))
	{
		case PGRES_PIPELINE_ABORTED:
			break;
		case PGRES_SINGLE_TUPLE:
			if (rows)
			{
				if (!req->sent_rowdesc)
					request_add_rowdesc(req, res);
				request_add_row(req, res, 0);
			}
			break;
		case PGRES_TUPLES_OK:
		case PGRES_COMMAND_OK:
			if (rows && PQresultStatus(res) == PGRES_TUPLES_OK)
			{
				if (!req->sent_rowdesc)
					request_add_rowdesc(req, res);
				/* rows not sent one by one (single-row mode not set) */
				for (int i = 0; i < PQntuples(res); i++)
					request_add_row(req, res, i);
			}
			if (main && !req->failed)
			{
				if (req->kind == CALL_TRANSACTION)
				{
					if (req->tags.len > 0)
						appendStringInfoChar(&req->tags, '\n');
					appendStringInfoString(&req->tags, PQcmdStatus(res));
				}
				else
					req->tag = pstrdup(PQcmdStatus(res));
			}
			if (req->step == STEP_END && !req->failed)
			{
				if (req->kind == CALL_COMMIT)
					req->tag = pstrdup(PQcmdStatus(res));
				else if (req->kind == CALL_TRANSACTION)
					req->tag = req->tags.data;
			}
			break;
		case PGRES_EMPTY_QUERY:
			if (main && !req->failed && req->kind != CALL_TRANSACTION)
				req->tag = pstrdup("");
			break;
		case PGRES_COPY_IN:
		case PGRES_COPY_OUT:
		case PGRES_COPY_BOTH:
			req->rc->retire = true;
			request_set_error(req, "0A000", "COPY is not supported through netrun_pool",
							  NULL, "Run the query as SELECT, or INSERT the rows with exec().",
							  NULL);
			return false;
		default:
			request_note_remote_error(req, res);
			break;
	}
	return true;
}

/*
 * One result of a pipelined call: of its BEGIN or tenant (the prefix), of
 * its statement(s), or of its COMMIT.  False when the connection must
 * close (COPY).
 */
static bool
request_pipeline_result(Request *req, PGresult *res)
{
	bool		main = !req->pl_in_commit && req->pl_query >= req->pl_nprefix;

	req->step = req->pl_in_commit ? STEP_END : main ? STEP_MAIN : STEP_TENANT;
	return request_take_result(req, res);
}

/* A query of a pipelined call has all its results in. */
static void
request_pipeline_query_done(Request *req)
{
	if (!req->pl_in_commit)
		req->pl_query++;
}

/*
 * Read what the remote has for a busy connection, as far as the backend
 * keeps up: output waiting for the backend stops the loop (back-pressure).
 */
static void
request_advance(Request *req)
{
	RemoteConn *rc = req->rc;
	PGconn	   *conn = rc->conn;
	MemoryContext old;

	if (!PQconsumeInput(conn))
	{
		char	   *msg = conn_error_message(conn);

		rc->retire = true;
		request_fail(req, "08006",
					 psprintf("lost connection to netrun_pool connection \"%s\"",
							  req->pool_name),
					 msg, NULL);
		return;
	}

	old = MemoryContextSwitchTo(req->cxt);
	while (request_may_read(req) && !PQisBusy(conn))
	{
		PGresult   *res = PQgetResult(conn);

		if (res == NULL)
		{
			MemoryContextSwitchTo(old);
			request_step_done(req);
			return;
		}
		if (!request_take_result(req, res))
		{
			/* COPY: the call fails, and its connection closes */
			PQclear(res);
			MemoryContextSwitchTo(old);
			request_conclude(req);
			return;
		}
		PQclear(res);
		(void) request_pump(req);
	}
	MemoryContextSwitchTo(old);
}

/* A request's backend went away: drop it, and the connection with it. */
static void
request_abandon(Request *req)
{
	if (req->pool)
		pool_touch(req->pool);
	/* counted as a failed call, unless it was over already */
	if (req->step != STEP_DELIVERING)
	{
		req->abandoned = true;
		req->failed = true;
		strlcpy(req->sqlstate, "57014", sizeof(req->sqlstate));
		request_account(req);
	}
	if (req->step == STEP_WAITING)
	{
		dlist_delete(&req->node);
		req->pool->nwaiting--;
	}
	else if (req->rc && req->pipelined && req->rc->req != req)
	{
		/*
		 * Sent in a pipeline behind another call, not yet reached: the
		 * remote will run it (it is on its way), its results are thrown
		 * away, and the calls around it go on.
		 */
		conn_forget_request(req->rc, req);
		req->rc = NULL;
	}
	else if (req->rc)
	{
		RemoteConn *rc = req->rc;
		bool		others = rc->ncalls > 1;

		req->rc = NULL;
		conn_forget_request(rc, req);

		/*
		 * Mid-query.  With calls pipelined behind it, a cancel stops the
		 * remote's statement: its error skips the rest of this call, and
		 * the calls behind run as if nothing happened.  Alone, closing the
		 * connection is the quicker way (and what a cancel that cannot be
		 * sent falls back to): the remote's client_connection_check_interval
		 * ends the query there.
		 */
		if (others && !rc->cancel_pending && cancel_start(rc->conn, &rc->cancel))
		{
			int			r = cancel_advance(&rc->cancel);

			rc->cancel_pending = r == 0;
			rc->cancel_deadline =
				TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											rc->pool->settings.connect_timeout_ms);
			if (rc->cancel_pending)
				pool_wake(rc->pool, GetCurrentTimestamp());
			if (r < 0)
				conn_close(rc);
		}
		else if (!others || !rc->cancel_pending)
			conn_close(rc);
	}
	request_free(req);
}

/* ---------------------------------------------------------------------
 * Pools
 * ---------------------------------------------------------------------
 */

static Pool *
pool_lookup(const char *name)
{
	dlist_iter	it;

	dlist_foreach(it, &all_pools)
	{
		Pool	   *pool = dlist_container(Pool, node, it.cur);

		if (pool->present && strcmp(pool->settings.name, name) == 0)
			return pool;
	}
	return NULL;
}

static int
pool_count_state(Pool *pool, ConnState state)
{
	dlist_iter	it;
	int			n = 0;

	dlist_foreach(it, &pool->conns)
		if (dlist_container(RemoteConn, node, it.cur)->state == state)
		n++;
	return n;
}

/*
 * Give idle connections to waiters, oldest first, and open connections
 * (within pool_max + max_overflow) for waiters that no idle or opening
 * connection will serve.
 */
/*
 * Is an idle connection still good?  An idle connection has nothing to
 * read: EOF means the remote closed it, and pending bytes are what a
 * server sends before it closes (the FATAL of a shutdown or of
 * pg_terminate_backend).  One non-blocking peek, so a dead connection is
 * replaced before anything is sent on it.
 */
static bool
conn_idle_is_sound(RemoteConn *rc)
{
	char		c;
	ssize_t		r;

	if (PQstatus(rc->conn) != CONNECTION_OK ||
		PQtransactionStatus(rc->conn) != PQTRANS_IDLE)
		return false;
	r = recv(PQsocket(rc->conn), &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (r >= 0)
		return false;
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

static RemoteConn *
pool_take_idle(Pool *pool)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &pool->conns)
	{
		RemoteConn *rc = dlist_container(RemoteConn, node, it.cur);

		if (rc->state != CONN_IDLE)
			continue;
		/* A connection that died while idle is replaced, not handed out. */
		if (!conn_idle_is_sound(rc))
		{
			conn_close(rc);
			continue;
		}
		return rc;
	}
	return NULL;
}

/*
 * A busy connection this waiter can be pipelined on, or NULL: the pool at
 * its pool_max (below it, a new connection serves better: the remote runs
 * calls of different connections at once), a call that may share a
 * pipeline (a query, exec or exec_transaction that does not run alone),
 * and a connection whose pipeline holds fewer than pipeline_depth calls,
 * none of which runs alone.  The least loaded one.
 */
static RemoteConn *
pool_take_pipeline(Pool *pool, Request *req)
{
	dlist_iter	it;
	RemoteConn *best = NULL;

	if (pool->settings.pipeline_depth <= 1 ||
		pool->settings.pool_mode != NETRUN_POOL_MODE_TRANSACTION ||
		pool->nconns < pool->settings.pool_max ||
		(req->kind != CALL_ROWS && req->kind != CALL_EXEC &&
		 req->kind != CALL_TRANSACTION) ||
		(req->flags & REQ_ALONE))
		return NULL;
	dlist_foreach(it, &pool->conns)
	{
		RemoteConn *rc = dlist_container(RemoteConn, node, it.cur);

		if ((rc->state != CONN_BUSY && rc->state != CONN_RESETTING) ||
			rc->nsegs == 0 || rc->last_alone || rc->retire ||
			rc->pin_txn || rc->pin_session ||
			rc->ncalls >= Min(pool->settings.pipeline_depth, PIPE_MAX_DEPTH) ||
			PQstatus(rc->conn) != CONNECTION_OK)
			continue;
		if (best == NULL || rc->ncalls < best->ncalls)
			best = rc;
	}
	return best;
}

static void
pool_dispatch(Pool *pool)
{
	int			opening;

	/*
	 * Starting a request can hand a connection straight back (a refused
	 * call), which calls us again; the outer call's loop picks it up.
	 */
	if (pool->dispatching)
		return;
	pool->dispatching = true;
	pool_touch(pool);

	opening = pool_count_state(pool, CONN_CONNECTING) + pool_count_state(pool, CONN_SETUP);
	while (!dlist_is_empty(&pool->waiters))
	{
		Request    *req = dlist_container(Request, node,
										  dlist_head_node(&pool->waiters));
		RemoteConn *rc = pool_take_idle(pool);

		/* waiters the connections being opened will serve wait for them */
		if (rc == NULL && pool->nwaiting > opening)
			rc = pool_take_pipeline(pool, req);
		if (rc == NULL)
			break;
		dlist_pop_head_node(&pool->waiters);
		pool->nwaiting--;
		request_start(req, rc);
	}

	opening = pool_count_state(pool, CONN_CONNECTING) + pool_count_state(pool, CONN_SETUP);
	while (pool->nwaiting > opening &&
		   pool->nconns < pool->settings.pool_max + pool->settings.max_overflow &&
		   GetCurrentTimestamp() >= pool->next_connect_attempt)
	{
		char	   *error;
		RemoteConn *rc = conn_start(pool, &error);

		if (rc == NULL && error == NULL)
			break;				/* its host names are being resolved */
		if (rc == NULL)
		{
			/* could not even start: back off like a failed connect */
			strlcpy(pool->last_connect_error, error, sizeof(pool->last_connect_error));
			pool->connect_failures++;
			pool->next_connect_attempt =
				TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											Min(100L << Min(pool->connect_failures - 1, 9), 30000L));
			pool_wake(pool, pool->next_connect_attempt);
			if (pool->nconns == 0)
				pool_fail_unreachable(pool, NULL);
			break;
		}
		opening++;
	}
	pool->dispatching = false;
}

static void
conn_release(RemoteConn *rc)
{
	pool_touch(rc->pool);
	/*
	 * A pipelined call: its reset is on the way already.  Read what has
	 * arrived; the rest comes with the socket's next event.
	 */
	if (rc->nsegs > 0)
	{
		if (PQstatus(rc->conn) != CONNECTION_OK)
		{
			conn_close(rc);
			return;
		}
		if (rc->ncalls == 0)
			rc->state = CONN_RESETTING;
		conn_pipeline_read(rc);
		return;
	}
	/*
	 * Pinned: it waits for the same backend's next call, even if the pool
	 * is being retired or connects per call; it goes when the pin ends.
	 */
	if ((rc->pin_txn || rc->pin_session) && PQstatus(rc->conn) == CONNECTION_OK)
	{
		rc->state = CONN_PINNED;
		rc->req = NULL;
		return;
	}
	/* pool_mode none (serverless remotes): one connection per call */
	if (PQstatus(rc->conn) != CONNECTION_OK || rc->retire || !rc->pool->present ||
		rc->pool->settings.pool_mode == NETRUN_POOL_MODE_NONE)
	{
		conn_close(rc);
		return;
	}
	/*
	 * In transaction mode the remote transaction never outlives the call,
	 * and nothing of the call's session state reaches the next caller.
	 */
	conn_reset(rc, CONN_RESETTING);
}

/* A pool no longer registered, with nothing left on it, is forgotten. */
static void
pool_destroy(Pool *pool)
{
	pool_forget_turn(pool);
	health_stop(&pool->probe);
	stats_release(pool->stats_index);
	dlist_delete(&pool->node);
	pfree(pool->conninfo);
	if (pool->secret)
		pfree(pool->secret);
	pfree(pool);
}

/*
 * Apply a fresh registry load.  A pool whose definition changed keeps
 * serving the calls in flight on its old connections, which are closed
 * when they come back; a removed pool's waiters are told it is gone.
 */
void
pool_sync(PoolDefinition *defs, int ndefs)
{
	dlist_mutable_iter it;
	dlist_iter	all;
	MemoryContext old = MemoryContextSwitchTo(pool_context);

	dlist_foreach(all, &all_pools)
		dlist_container(Pool, node, all.cur)->present = false;

	for (int i = 0; i < ndefs; i++)
	{
		PoolDefinition *d = &defs[i];
		Pool	   *pool = NULL;
		dlist_iter	pit;

		dlist_foreach(pit, &all_pools)
		{
			Pool	   *p = dlist_container(Pool, node, pit.cur);

			if (strcmp(p->settings.name, d->settings.name) == 0)
			{
				pool = p;
				break;
			}
		}
		if (pool == NULL)
		{
			pool = palloc0(sizeof(Pool));
			dlist_init(&pool->conns);
			dlist_init(&pool->waiters);
			dlist_push_tail(&all_pools, &pool->node);
			pool->stats_index = stats_claim(d->settings.name);
			health_init(&pool->probe, pool->stats_index);
		}
		else if (strcmp(pool->conninfo, d->conninfo) != 0 ||
				 (pool->secret == NULL) != (d->secret == NULL) ||
				 (pool->secret && d->secret &&
				  (VARSIZE_ANY(pool->secret) != VARSIZE_ANY(d->secret) ||
				   memcmp(pool->secret, d->secret, VARSIZE_ANY(d->secret)) != 0)) ||
				 pool->settings.statement_timeout_ms != d->settings.statement_timeout_ms ||
				 strcmp(pool->settings.tenant_setting, d->settings.tenant_setting) != 0 ||
				 pool->settings.tenant_guard != d->settings.tenant_guard)
		{
			dlist_iter	cit;

			/* how to connect changed: existing connections retire */
			pool->resolving = false;
			dlist_foreach(cit, &pool->conns)
				dlist_container(RemoteConn, node, cit.cur)->retire = true;
			/* and what the probe knew is about another server, maybe */
			health_stop(&pool->probe);
		}
		if (pool->conninfo)
			pfree(pool->conninfo);
		if (pool->secret)
			pfree(pool->secret);
		pool->settings = d->settings;
		pool->conninfo = pstrdup(d->conninfo);
		pool->secret = NULL;
		if (d->secret)
		{
			/* ciphertext: copy bytes, not a C string (it holds NULs) */
			pool->secret = palloc(VARSIZE_ANY(d->secret));
			memcpy(pool->secret, d->secret, VARSIZE_ANY(d->secret));
		}
		pool->present = true;
		/* every entry was taken when it was created: try again */
		if (pool->stats_index < 0)
		{
			pool->stats_index = stats_claim(pool->settings.name);
			pool->probe.stats_index = pool->stats_index;
		}
		d->settings.stats_index = pool->stats_index;
	}

	dlist_foreach_modify(it, &all_pools)
	{
		Pool	   *pool = dlist_container(Pool, node, it.cur);
		dlist_mutable_iter cit;

		/* what it does and when changed: look at all of it now */
		pool_touch(pool);
		pool_wake(pool, GetCurrentTimestamp());
		if (pool->present && pool->settings.enabled)
		{
			dlist_foreach_modify(cit, &pool->conns)
			{
				RemoteConn *rc = dlist_container(RemoteConn, node, cit.cur);

				if (rc->retire && rc->state == CONN_IDLE)
					conn_close(rc);
			}
			/* a pool shrunk by configure(): surplus idle connections go now */
			dlist_foreach_modify(cit, &pool->conns)
			{
				RemoteConn *rc = dlist_container(RemoteConn, node, cit.cur);

				if (pool->nconns <= pool->settings.pool_max)
					break;
				if (rc->state == CONN_IDLE)
					conn_close(rc);
			}
			pool_dispatch(pool);
			continue;
		}

		/* removed or disabled: no probe; waiters hear it now, idle connections go */
		health_stop(&pool->probe);
		while (!dlist_is_empty(&pool->waiters))
		{
			Request    *req = dlist_container(Request, node,
											  dlist_pop_head_node(&pool->waiters));

			pool->nwaiting--;
			if (pool->present)
				request_fail(req, "55000",
							 psprintf("netrun_pool connection \"%s\" is disabled",
									  pool->settings.name), NULL, NULL);
			else
				request_fail(req, "42704",
							 psprintf("netrun_pool connection \"%s\" does not exist",
									  pool->settings.name), NULL, NULL);
		}
		dlist_foreach_modify(cit, &pool->conns)
		{
			RemoteConn *rc = dlist_container(RemoteConn, node, cit.cur);

			rc->retire = true;
			if (rc->state == CONN_IDLE)
				conn_close(rc);
		}
		if (!pool->present && pool->nconns == 0)
			pool_destroy(pool);
	}
	MemoryContextSwitchTo(old);
}

/*
 * unregister(force => true): the calls still running on a removed pool
 * fail now, and their connections close (which stops the remote query).
 * With all_removed, every pool that is no longer registered.
 */
void
pool_force_retire(const char *name, bool all_removed)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &all_pools)
	{
		Pool	   *pool = dlist_container(Pool, node, it.cur);
		dlist_mutable_iter cit;

		if (pool->present)
			continue;
		if (!all_removed && strcmp(pool->settings.name, name) != 0)
			continue;
		pool_touch(pool);

		dlist_foreach_modify(cit, &pool->conns)
		{
			RemoteConn *rc = dlist_container(RemoteConn, node, cit.cur);

			rc->retire = true;
			if (rc->ncalls > 0)
			{
				/* every call in its pipeline fails, and the connection goes */
				Request    *req;
				bool		head;

				while ((req = conn_pop_call(rc, &head)) != NULL)
					request_fail(req, "57014",
								 psprintf("netrun_pool connection \"%s\" was unregistered",
										  pool->settings.name),
								 "It was unregistered with force => true while the call ran.",
								 NULL);
				conn_close(rc);
			}
			else if (rc->state == CONN_BUSY && rc->req)
				request_fail(rc->req, "57014",
							 psprintf("netrun_pool connection \"%s\" was unregistered",
									  pool->settings.name),
							 "It was unregistered with force => true while the call ran.",
							 NULL);
			else if (rc->state != CONN_IDLE)
				conn_close(rc);
		}
		if (pool->nconns == 0 && dlist_is_empty(&pool->waiters))
			pool_destroy(pool);
	}
}

/* The extension went away or the worker stops: close everything. */
void
pool_shutdown_all(void)
{
	pool_sync(NULL, 0);
	for (int i = 0; channels && i < netrun_shared->max_channels; i++)
	{
		if (channels[i].active)
			request_abandon(channels[i].active);
		channel_release_pins(i);
		channel_worker_detach(&channels[i].ch);
	}
}

/* ---------------------------------------------------------------------
 * The loop
 * ---------------------------------------------------------------------
 */

/* Parse a request message; NULL (after telling the backend) if bad. */
static Request *
request_parse(int channel, const char *data, Size len)
{
	ChannelRequestHead head;
	const char *p = data + sizeof(head);
	const char *end = data + len;
	MemoryContext cxt;
	Request    *req;
	int32		sql_len;

	if (len < sizeof(head) + 2 * sizeof(int32))
		return NULL;
	memcpy(&head, data, sizeof(head));
	if (head.type != MSG_REQUEST)
		return NULL;

	cxt = AllocSetContextCreate(pool_context, "netrun_pool request",
								ALLOCSET_SMALL_SIZES);
	req = MemoryContextAllocZero(cxt, sizeof(Request));
	req->cxt = cxt;
	req->channel = channel;
	req->stats_index = -1;
	req->kind = head.kind;
	req->flags = head.flags;
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		initStringInfo(&req->batch);
		initStringInfo(&req->out);
		initStringInfo(&req->final);
		initStringInfo(&req->tags);
		MemoryContextSwitchTo(old);
	}

	sql_len = msg_get_int32(&p);
	if (sql_len < 0 || p + sql_len + sizeof(int32) > end)
	{
		MemoryContextDelete(cxt);
		return NULL;
	}
	req->sql = MemoryContextAlloc(cxt, sql_len + 1);
	memcpy(req->sql, p, sql_len);
	req->sql[sql_len] = '\0';
	p += sql_len;
	req->nparams = msg_get_int32(&p);
	req->params = MemoryContextAllocZero(cxt, sizeof(char *) * Max(req->nparams, 1));
	for (int i = 0; i < req->nparams; i++)
	{
		int32		plen;

		if (p + sizeof(int32) > end)
		{
			MemoryContextDelete(cxt);
			return NULL;
		}
		plen = msg_get_int32(&p);
		if (plen < 0)
			continue;
		if (p + plen > end)
		{
			MemoryContextDelete(cxt);
			return NULL;
		}
		req->params[i] = MemoryContextAlloc(cxt, plen + 1);
		memcpy((char *) req->params[i], p, plen);
		((char *) req->params[i])[plen] = '\0';
		p += plen;
	}

	/* the caller's tenant and, in schema mode, its search_path */
	for (int i = 0; i < 2; i++)
	{
		int32		slen;
		char	   *str = NULL;

		if (p + sizeof(int32) > end)
		{
			MemoryContextDelete(cxt);
			return NULL;
		}
		slen = msg_get_int32(&p);
		if (slen >= 0)
		{
			if (p + slen > end)
			{
				MemoryContextDelete(cxt);
				return NULL;
			}
			str = MemoryContextAlloc(cxt, slen + 1);
			memcpy(str, p, slen);
			str[slen] = '\0';
			p += slen;
		}
		if (i == 0)
			req->tenant = str;
		else
			req->search_path = str;
	}

	strlcpy(req->pool_name, head.pool, NAMEDATALEN);
	req->pool = pool_lookup(req->pool_name);
	/* the end of a begin() finds its pinned connection even if unregistered */
	if (req->pool == NULL &&
		(req->kind == CALL_COMMIT || req->kind == CALL_ROLLBACK || req->kind == CALL_RELEASE))
	{
		dlist_iter	it;

		dlist_foreach(it, &all_pools)
		{
			Pool	   *p = dlist_container(Pool, node, it.cur);

			if (strcmp(p->settings.name, req->pool_name) == 0)
				req->pool = p;
		}
	}
	return req;
}

static RemoteConn *
pool_find_pinned(Pool *pool, int channel)
{
	dlist_iter	it;

	dlist_foreach(it, &pool->conns)
	{
		RemoteConn *rc = dlist_container(RemoteConn, node, it.cur);

		if (rc->pinned_to == channel && (rc->pin_txn || rc->pin_session))
			return rc;
	}
	return NULL;
}

static void
channel_note_lost(int channel, const char *pool_name)
{
	ChannelState *cs = &channels[channel];
	MemoryContext old;

	if (!cs->ch.attached)
		return;
	old = MemoryContextSwitchTo(pool_context);
	cs->lost = lappend(cs->lost, pstrdup(pool_name));
	MemoryContextSwitchTo(old);
}

/* Was this channel's begin() connection to the pool lost?  Forget it if so. */
static bool
channel_take_lost(int channel, const char *pool_name)
{
	ChannelState *cs = &channels[channel];
	ListCell   *lc;

	foreach(lc, cs->lost)
	{
		if (strcmp((char *) lfirst(lc), pool_name) == 0)
		{
			pfree(lfirst(lc));
			cs->lost = foreach_delete_current(cs->lost, lc);
			return true;
		}
	}
	return false;
}

/* A backend is gone: its pinned connections close (its remote work rolls back). */
static void
channel_release_pins(int channel)
{
	dlist_iter	it;

	dlist_foreach(it, &all_pools)
	{
		Pool	   *pool = dlist_container(Pool, node, it.cur);
		dlist_mutable_iter cit;

		dlist_foreach_modify(cit, &pool->conns)
		{
			RemoteConn *rc = dlist_container(RemoteConn, node, cit.cur);

			if (rc->pinned_to != channel)
				continue;
			rc->pin_txn = false;	/* no one is left to tell */
			rc->pin_session = false;
			rc->pinned_to = -1;
			if (rc->state == CONN_PINNED)
				conn_close(rc);
		}
	}
	list_free_deep(channels[channel].lost);
	channels[channel].lost = NIL;
}

static void
request_accept(int channel, Request *req)
{
	Pool	   *pool = req->pool;
	RemoteConn *pinned;

	Assert(channels[channel].active == NULL);
	channels[channel].active = req;
	pool_active_calls_changed(1);
	req->step = STEP_WAITING;
	if (pool == NULL)
	{
		request_fail(req, "42704",
					 psprintf("netrun_pool connection \"%s\" does not exist",
							  req->pool_name), NULL, NULL);
		return;
	}

	req->accepted_at = GetCurrentTimestamp();
	req->stats_index = pool->stats_index;
	{
		NetrunPoolStats *s = stats_entry(req->stats_index);

		if (s)
		{
			SpinLockAcquire(&s->mutex);
			s->outstanding++;
			req->stats_generation = s->generation;
			SpinLockRelease(&s->mutex);
		}
	}

	/* a begin() transaction whose connection died: never silently resume */
	if (channel_take_lost(channel, pool->settings.name))
	{
		if (req->kind == CALL_ROLLBACK)
			request_conclude(req);
		else
		{
			if (req->kind != CALL_COMMIT)
				channel_note_lost(channel, pool->settings.name);	/* keep it */
			req->worker_error = true;	/* a verdict on an earlier failure */
			request_fail(req, "08006",
						 psprintf("the remote transaction of netrun_pool connection \"%s\" was lost",
								  pool->settings.name),
						 "Its connection closed during the local transaction, which rolled back the remote work.",
						 "Roll back the local transaction.");
		}
		return;
	}

	pinned = pool_find_pinned(pool, channel);
	switch (req->kind)
	{
		case CALL_COMMIT:
		case CALL_ROLLBACK:
			if (pinned == NULL || !pinned->pin_txn)
				request_conclude(req);	/* nothing was begun */
			else
				request_start(req, pinned);
			return;
		case CALL_RELEASE:
			if (pinned == NULL || !pinned->pin_session)
			{
				request_conclude(req);	/* nothing held */
				return;
			}
			if (pinned->pin_txn)
			{
				request_fail(req, "25001",
							 psprintf("cannot release netrun_pool connection \"%s\" inside its begin() transaction",
									  pool->settings.name),
							 NULL, "Release it after the local transaction ends.");
				return;
			}
			/* back to the pool, reset as between two callers */
			pinned->pin_session = false;
			pinned->pinned_to = -1;
			conn_reset(pinned, CONN_RESETTING);
			request_conclude(req);
			return;
		default:
			if (pinned != NULL)
			{
				request_start(req, pinned);
				return;
			}
			break;
	}

	if (!pool->settings.enabled)
	{
		request_fail(req, "55000",
					 psprintf("netrun_pool connection \"%s\" is disabled",
							  pool->settings.name), NULL, NULL);
		return;
	}
	/* nothing open and connects failing: do not queue behind a refusal */
	if (pool->nconns == 0 && pool->connect_failures > 0 &&
		GetCurrentTimestamp() < pool->next_connect_attempt)
	{
		pool_fail_unreachable(pool, req);
		return;
	}
	req->acquire_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														pool->settings.acquire_timeout_ms);
	dlist_push_tail(&pool->waiters, &req->node);
	pool->nwaiting++;
	pool_wake(pool, req->acquire_deadline);
	pool_note_waiting(pool);
	pool_dispatch(pool);
}

/*
 * New channels, new requests, gone backends, and queued messages that can
 * now be delivered.
 */
static void
pool_service_channels(void)
{
	static bool first = true;	/* look at every slot once */

	for (int i = 0; i < netrun_shared->max_channels; i++)
	{
		ChannelState *cs = &channels[i];
		Size		len;
		void	   *data;
		shm_mq_result res;
		bool		rung = channel_worker_take_bell(i) || first;

		/* a slot that did not ring has nothing new: only output to pump */
		if (!rung && cs->active == NULL)
			continue;
		if (rung)
		{
			ChannelSlot snap;

			SpinLockAcquire(&netrun_shared->mutex);
			snap = netrun_shared->channels[i];
			SpinLockRelease(&netrun_shared->mutex);

			if (cs->ch.attached &&
				(snap.pid == 0 || snap.generation != cs->ch.generation))
			{
				/* the backend moved to a new channel, or has none */
				if (cs->active)
					request_abandon(cs->active);
				channel_release_pins(i);
				channel_worker_detach(&cs->ch);
			}
			if (!cs->ch.attached && snap.pid != 0 &&
				snap.worker_pid == MyProcPid &&
				!channel_worker_attach(&cs->ch, i, snap.handle, snap.generation))
				continue;
		}
		if (!cs->ch.attached)
			continue;

		if (cs->active && cs->active->step != STEP_WAITING)
		{
			Request    *req = cs->active;

			if (req->pool)
				pool_touch(req->pool);
			if (request_pump(req))
			{
				if (req->step == STEP_DELIVERING)
				{
					request_free(req);
					continue;
				}
				/* the backend caught up: go on reading the remote */
				if (req->rc && req->rc->state == CONN_BUSY)
				{
					if (req->rc->nsegs > 0)
					{
						if (req->rc->req == req)
							conn_pipeline_read(req->rc);
					}
					else
						request_advance(req);
				}
			}
		}

		/* read only when rung: reading it empty would wake the backend */
		if (!rung)
			continue;
		res = shm_mq_receive(cs->ch.request, &len, &data, true);
		if (res == SHM_MQ_DETACHED)
		{
			if (cs->active)
				request_abandon(cs->active);
			channel_release_pins(i);
			channel_worker_detach(&cs->ch);
			continue;
		}
		if (res != SHM_MQ_SUCCESS)
			continue;
		if (cs->active != NULL)
		{
			/* a backend never sends during a call: a broken channel */
			request_abandon(cs->active);
			channel_worker_detach(&cs->ch);
			continue;
		}
		{
			Request    *req = request_parse(i, data, len);

			if (req == NULL)
			{
				channel_worker_detach(&cs->ch);
				continue;
			}
			request_accept(i, req);
		}
	}
	first = false;
}

/*
 * Lifetimes, at most a few times a second: idle connections past
 * recycle_s, idle connections above pool_min past idle_timeout_s, and
 * warm-up connects up to pool_min (with backoff after failures).
 */
static void
pool_maintain(TimestampTz now)
{
	dlist_iter	it;

	dlist_foreach(it, &all_pools)
	{
		Pool	   *pool = dlist_container(Pool, node, it.cur);
		dlist_mutable_iter cit;

		if (!pool->present || !pool->settings.enabled)
			continue;

		dlist_foreach_modify(cit, &pool->conns)
		{
			RemoteConn *rc = dlist_container(RemoteConn, node, cit.cur);

			if (rc->state != CONN_IDLE)
				continue;
			if (conn_too_old(rc, now))
			{
				STATS_BUMP(pool->stats_index, recycled_total);
				conn_close(rc);
			}
			else if (pool->nconns > pool->settings.pool_min &&
					 TimestampDifferenceExceeds(rc->idle_since, now,
												pool->settings.idle_timeout_s * 1000))
				conn_close(rc);
		}

		/* while the circuit is open only the probe reconnects */
		while (pool->settings.pool_mode != NETRUN_POOL_MODE_NONE &&
			   !pool->probe.circuit_open &&
			   pool->nconns < pool->settings.pool_min &&
			   now >= pool->next_connect_attempt)
		{
			char	   *error;

			if (conn_start(pool, &error) == NULL)
			{
				if (error == NULL)
					break;		/* its host names are being resolved */
				strlcpy(pool->last_connect_error, error, sizeof(pool->last_connect_error));
				pool->connect_failures++;
				pool->next_connect_attempt = TimestampTzPlusMilliseconds(now, 1000);
				break;
			}
		}
	}
}

/*
 * Publish each pool's gauges into its shared slot, for pool_stats.  Cheap
 * enough for a few times a second, never per call.
 */
void
pool_publish_gauges(void)
{
	/* each slot's pool by its stats entry, not by a search per slot */
	static Pool **by_stats = NULL;
	dlist_iter	pit;

	if (by_stats == NULL)
		by_stats = MemoryContextAlloc(pool_context,
									  sizeof(Pool *) * Max(netrun_shared->max_stats, 1));
	memset(by_stats, 0, sizeof(Pool *) * Max(netrun_shared->max_stats, 1));

	dlist_foreach(pit, &all_pools)
	{
		Pool	   *pool = dlist_container(Pool, node, pit.cur);

		if (pool->present && pool->stats_index >= 0)
			by_stats[pool->stats_index] = pool;
	}
	LWLockAcquire(netrun_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < netrun_shared->npools; i++)
	{
		NetrunPoolSlot *slot = &netrun_shared->pools[i];
		Pool	   *pool = slot->stats_index >= 0 ? by_stats[slot->stats_index] : NULL;
		dlist_iter	it;

		if (pool == NULL || strcmp(pool->settings.name, slot->name) != 0)
			pool = pool_lookup(slot->name);

		slot->total = slot->checked_out = slot->idle = slot->waiting = 0;
		if (pool == NULL)
			continue;
		slot->total = pool->nconns;
		slot->waiting = pool->nwaiting;
		dlist_foreach(it, &pool->conns)
		{
			RemoteConn *rc = dlist_container(RemoteConn, node, it.cur);

			if (rc->state == CONN_IDLE)
				slot->idle++;
			else if (rc->state == CONN_BUSY || rc->state == CONN_PINNED ||
					 rc->state == CONN_RESETTING)
				slot->checked_out++;
		}
	}
	LWLockRelease(netrun_shared->lock);
}

/* Pools by their next deadline, earliest first (pool_wake). */
static int
pool_wake_cmp(const pairingheap_node *a, const pairingheap_node *b, void *arg)
{
	TimestampTz ta = pairingheap_const_container(Pool, wake_node, a)->wake_at;
	TimestampTz tb = pairingheap_const_container(Pool, wake_node, b)->wake_at;

	/* pairingheap keeps the greatest first */
	return ta < tb ? 1 : ta > tb ? -1 : 0;
}

static pairingheap wake_heap = {pool_wake_cmp, NULL, NULL};
static dlist_head dirty_pools = DLIST_STATIC_INIT(dirty_pools);
static dlist_head waiting_pools = DLIST_STATIC_INIT(waiting_pools);

/* The pool must be looked at by at (0: nothing due). */
static void
pool_wake(Pool *pool, TimestampTz at)
{
	if (at == 0 || (pool->wake_at != 0 && pool->wake_at <= at))
		return;
	if (pool->wake_at != 0)
		pairingheap_remove(&wake_heap, &pool->wake_node);
	pool->wake_at = at;
	pairingheap_add(&wake_heap, &pool->wake_node);
}

/* Its connections' or probe's wanted events may have changed. */
static void
pool_touch(Pool *pool)
{
	gauges_dirty = true;
	if (!pool->dirty)
	{
		pool->dirty = true;
		dlist_push_tail(&dirty_pools, &pool->dirty_node);
	}
}

/* It has callers waiting: offer them connections every turn. */
static void
pool_note_waiting(Pool *pool)
{
	if (!pool->on_waiting)
	{
		pool->on_waiting = true;
		dlist_push_tail(&waiting_pools, &pool->waiting_node);
	}
	pool_wake(pool, pool->next_connect_attempt);
}

/* Out of every list of the turn's, before it is freed. */
static void
pool_forget_turn(Pool *pool)
{
	if (pool->wake_at != 0)
		pairingheap_remove(&wake_heap, &pool->wake_node);
	pool->wake_at = 0;
	if (pool->dirty)
		dlist_delete(&pool->dirty_node);
	pool->dirty = false;
	if (pool->on_waiting)
		dlist_delete(&pool->waiting_node);
	pool->on_waiting = false;
}

/*
 * The circuit just opened: callers already waiting for this pool fail now,
 * as later ones will in their own backends (route.c), instead of waiting
 * out acquire_timeout_ms for a remote that is down.
 */
static void
pool_circuit_opened(Pool *pool)
{
	while (!dlist_is_empty(&pool->waiters))
	{
		Request    *req = dlist_container(Request, node,
										  dlist_pop_head_node(&pool->waiters));

		pool->nwaiting--;
		req->worker_error = true;
		/* the words of route_unavailable(): the first caller hears the same */
		request_fail(req, "08004",
					 psprintf("netrun_pool connection \"%s\" is unavailable",
							  pool->settings.name),
					 psprintf("Its circuit is open after %d failed health probes; the last: %s. The next probe is due at %s.",
							  pool->probe.failures, pool->probe.error,
							  timestamptz_to_str(pool->probe.next_at)),
					 "Calls fail at once until a health probe succeeds; see netrun_pool.health.");
	}
}

/*
 * One pool's deadlines: its probe, waiters past acquire_timeout_ms,
 * connects past connect_timeout_ms, a cancel on its way.  Returns the
 * pool's next deadline (0: none).
 */
static TimestampTz
pool_check_one(Pool *pool, TimestampTz now)
{
	TimestampTz next = 0;
	dlist_mutable_iter wit;

	pool_touch(pool);
	if (pool->present && pool->settings.enabled &&
		health_tick(&pool->probe, pool, &pool->settings, now, &next))
		pool_circuit_opened(pool);

	dlist_foreach_modify(wit, &pool->waiters)
	{
		Request    *req = dlist_container(Request, node, wit.cur);

		if (req->acquire_deadline <= now)
		{
			char	   *detail;

			dlist_delete(&req->node);
			pool->nwaiting--;
			if (pool->resolving && pool->nconns == 0)
			{
				req->timed_out = true;
				request_fail(req, "08001",
							 psprintf("could not connect to netrun_pool connection \"%s\"",
									  pool->settings.name),
							 psprintf("Its host name was not resolved within acquire_timeout_ms of %d ms.",
									  pool->settings.acquire_timeout_ms),
							 "Check the DNS servers of /etc/resolv.conf or netrun_pool.dns_servers.");
				continue;
			}
			if (pool->connect_failures > 0 &&
				pool->nconns - pool_count_state(pool, CONN_CONNECTING) == 0)
			{
				/* not busy, but unreachable: say why */
				detail = psprintf("%s (%d attempts in a row failed within acquire_timeout_ms of %d ms)",
								  pool->last_connect_error, pool->connect_failures,
								  pool->settings.acquire_timeout_ms);
				req->timed_out = true;
				request_fail(req, "08001",
							 psprintf("could not connect to netrun_pool connection \"%s\"",
									  pool->settings.name),
							 detail, NULL);
				continue;
			}
			STATS_BUMP(pool->stats_index, exhausted_total);
			req->timed_out = true;
			detail = psprintf("pool_max is %d, max_overflow %d; %d connections are open and %d callers are waiting.",
							  pool->settings.pool_max, pool->settings.max_overflow,
							  pool->nconns, pool->nwaiting + 1);
			/* busy, and more could not be opened (a full remote): say why */
			if (pool->connect_failures > 0)
				detail = psprintf("%s Opening another connection failed %d times in a row; the last: %s.",
								  detail, pool->connect_failures,
								  pool->last_connect_error);
			else if (pool->last_connect_error[0] != '\0')
				detail = psprintf("%s Opening another connection failed the last time it was tried: %s.",
								  detail, pool->last_connect_error);
			request_fail(req, "53300",
						 psprintf("timed out waiting for a connection from netrun_pool connection \"%s\"",
								  pool->settings.name),
						 detail,
						 "Raise pool_max or max_overflow, or acquire_timeout_ms, with netrun_pool.configure().");
		}
		else if (next == 0 || req->acquire_deadline < next)
			next = req->acquire_deadline;
	}

	/* waiters held back by the connect backoff: wake up to retry */
	if (pool->nwaiting > 0 && pool->next_connect_attempt > now)
	{
		if (next == 0 || pool->next_connect_attempt < next)
			next = pool->next_connect_attempt;
	}

	dlist_foreach_modify(wit, &pool->conns)
	{
		RemoteConn *rc = dlist_container(RemoteConn, node, wit.cur);

		if (rc->cancel_pending)
		{
			int			r = cancel_advance(&rc->cancel);

			if (r != 0)
				rc->cancel_pending = false;
			if (r < 0 || (r == 0 && rc->cancel_deadline <= now))
			{
				/* the cancel could not be sent: stop the remote by closing */
				if (rc->cancel_pending)
					cancel_close(&rc->cancel);
				rc->cancel_pending = false;
				conn_close(rc);
				continue;
			}
			/* a connect under way: look again soon */
			if (r == 0)
			{
				TimestampTz soon = TimestampTzPlusMilliseconds(now, 5);

				if (next == 0 || soon < next)
					next = soon;
			}
		}
		if (rc->state != CONN_CONNECTING && rc->state != CONN_SETUP)
			continue;
		if (rc->connect_deadline <= now)
			conn_failed_to_connect(rc, psprintf("timeout expired after %d ms",
												pool->settings.connect_timeout_ms));
		else if (next == 0 || rc->connect_deadline < next)
			next = rc->connect_deadline;
	}
	return next;
}

/*
 * The turn's deadlines: only the pools whose next deadline has come, in
 * order, and the callers waiting for a connection.  Returns how long the
 * worker may sleep (-1: until something happens).
 */
static long
pool_check_deadlines(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = 0;
	dlist_mutable_iter it;

	if (now >= next_maintenance)
	{
		pool_maintain(now);
		pool_publish_gauges();
		gauges_dirty = false;
		next_maintenance = TimestampTzPlusMilliseconds(now, 250);
	}
	if (gauges_dirty)
		next = next_maintenance;

	while (!pairingheap_is_empty(&wake_heap))
	{
		Pool	   *pool = pairingheap_container(Pool, wake_node,
												 pairingheap_first(&wake_heap));

		if (pool->wake_at > now)
			break;
		(void) pairingheap_remove_first(&wake_heap);
		pool->wake_at = 0;
		pool_wake(pool, pool_check_one(pool, now));
	}

	dlist_foreach_modify(it, &waiting_pools)
	{
		Pool	   *pool = dlist_container(Pool, waiting_node, it.cur);

		if (pool->nwaiting == 0)
		{
			dlist_delete(&pool->waiting_node);
			pool->on_waiting = false;
		}
		else if (pool->next_connect_attempt <= now)
			pool_dispatch(pool);
	}

	if (!pairingheap_is_empty(&wake_heap))
	{
		TimestampTz first = pairingheap_container(Pool, wake_node,
												  pairingheap_first(&wake_heap))->wake_at;

		if (next == 0 || first < next)
			next = first;
	}
	next = resolve_next_wake(next);
	if (next == 0)
		return -1;
	if (next <= now)
		return 0;
	return Max(1, (long) ((next - now + 999) / 1000));
}

static void
conn_on_event(RemoteConn *rc)
{
	if (rc->want_write)
	{
		int			r = PQflush(rc->conn);

		if (r < 0)
		{
			if (rc->nsegs > 0)
				conn_pipeline_lost(rc);
			else if (rc->req)
			{
				rc->retire = true;
				request_fail(rc->req, "08006",
							 psprintf("lost connection to netrun_pool connection \"%s\"",
									  rc->pool->settings.name),
							 conn_error_message(rc->conn), NULL);
			}
			else
				conn_close(rc);
			return;
		}
		rc->want_write = r == 1;
	}
	switch (rc->state)
	{
		case CONN_CONNECTING:
			conn_advance_connect(rc);
			break;
		case CONN_SETUP:
		case CONN_RESETTING:
			conn_advance_housekeeping(rc);
			break;
		case CONN_BUSY:
			if (rc->nsegs > 0)
				conn_pipeline_read(rc);
			else if (rc->req && request_may_read(rc->req))
				request_advance(rc->req);
			break;
		case CONN_IDLE:
		case CONN_PINNED:
			break;
	}
}

/* What the set should wait for on a connection's socket (0: nothing). */
static uint32
conn_wait_events(RemoteConn *rc)
{
	uint32		ev = 0;

	switch (rc->state)
	{
		case CONN_CONNECTING:
			ev = rc->poll == PGRES_POLLING_READING ?
				WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
			break;
		case CONN_SETUP:
		case CONN_RESETTING:
			ev = WL_SOCKET_READABLE;
			break;
		case CONN_BUSY:
			/* back-pressure: a blocked backend stops the reading */
			if (rc->req ? request_may_read(rc->req) : rc->nsegs > 0)
				ev = WL_SOCKET_READABLE;
			break;
		case CONN_IDLE:
		case CONN_PINNED:
			break;
	}
	if (rc->want_write)
		ev |= WL_SOCKET_WRITEABLE;
	return ev;
}

/*
 * Bring the watch of the touched pools' sockets up to date: only pools
 * where something happened this turn, so idle and failing remotes cost
 * nothing per turn.  A socket that libpq worked on while connecting is
 * rechecked (it may have put another socket under the same number).  Assertion-enabled
 * builds check every socket of every pool, so a state change that forgot
 * to touch its pool fails the tests.
 */
static void
pool_update_watches(void)
{
	while (!dlist_is_empty(&dirty_pools))
	{
		Pool	   *pool = dlist_container(Pool, dirty_node,
										   dlist_pop_head_node(&dirty_pools));
		dlist_iter	cit;

		pool->dirty = false;
		if (pool->probe.conn)
		{
			evloop_watch(&pool->probe.watch, EV_PROBE, pool,
						 PQsocket(pool->probe.conn),
						 health_wait_events(&pool->probe),
						 pool->probe.connect_polled);
			pool->probe.connect_polled = false;
		}
		dlist_foreach(cit, &pool->conns)
		{
			RemoteConn *rc = dlist_container(RemoteConn, node, cit.cur);

			evloop_watch(&rc->watch, EV_CONN, rc, PQsocket(rc->conn),
						 conn_wait_events(rc), rc->connect_polled);
			rc->connect_polled = false;
		}
	}
#ifdef USE_ASSERT_CHECKING
	{
		dlist_iter	it;

		dlist_foreach(it, &all_pools)
		{
			Pool	   *pool = dlist_container(Pool, node, it.cur);
			dlist_iter	cit;

			Assert(pool->probe.conn == NULL ||
				   evloop_matches(&pool->probe.watch, PQsocket(pool->probe.conn),
								  health_wait_events(&pool->probe)));
			dlist_foreach(cit, &pool->conns)
			{
				RemoteConn *rc = dlist_container(RemoteConn, node, cit.cur);

				Assert(evloop_matches(&rc->watch, PQsocket(rc->conn),
									  conn_wait_events(rc)));
			}
		}
	}
#endif
}

/*
 * A few calls' turns, polled instead of slept: while one or two calls are
 * in flight (for up to netrun_pool.spin_wait_us from now), or within
 * spin_wait_us after the last call ended, the worker polls its sockets
 * and its latch before it sleeps, yielding the CPU at every turn, as a
 * lone caller does for its answer (channel.c).  The remote's answer, or
 * the next request of a caller that calls again at once, then finds the
 * worker awake: no kill() and no trip through the scheduler.  With no call
 * for a while, or with several in flight, the worker just sleeps.  Returns
 * the sockets that fired, or 0.
 */
static int
pool_poll(EvFired *fired, int max)
{
	instr_time	since,
				now;

	if (netrun_spin_wait_us <= 0 || active_calls > NETRUN_SPIN_MAX_CALLS)
		return 0;
	if (active_calls == 1)
		INSTR_TIME_SET_CURRENT(since);
	else if (INSTR_TIME_IS_ZERO(last_call_end))
		return 0;
	else
		since = last_call_end;
	for (;;)
	{
		int			nfired;

		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, since);
		if (INSTR_TIME_GET_MICROSEC(now) >= (uint64) netrun_spin_wait_us)
			return 0;
		nfired = evloop_poll(fired, max);
		if (nfired != 0 || MyLatch->is_set)
			return nfired;
		sched_yield();
	}
}

/*
 * One turn: serve the channels, then wait (at most max_wait_ms) for the
 * latch or any socket with work in progress, and advance what is ready.
 */
void
pool_run_once(long max_wait_ms)
{
	EvFired		fired[EVLOOP_MAX_FIRED];
	int			nfired;
	long		timeout;

	evloop_init();
	pool_service_channels();
	timeout = pool_check_deadlines();
	if (timeout < 0 || timeout > max_wait_ms)
		timeout = max_wait_ms;
	pool_update_watches();

	nfired = timeout == 0 ? 0 : pool_poll(fired, lengthof(fired));
	if (nfired == 0)
		nfired = evloop_wait(timeout, fired, lengthof(fired));
	if (nfired > 0)
		gauges_dirty = true;
	for (int i = 0; i < nfired; i++)
	{
		EvKind		kind;
		void	   *target = evloop_target(&fired[i], &kind);

		if (target == NULL)
			continue;			/* its owner went earlier in this batch */
		switch (kind)
		{
			case EV_CONN:
				{
					RemoteConn *rc = (RemoteConn *) target;
					Pool	   *pool = rc->pool;

					conn_on_event(rc);
					pool_touch(pool);
					break;
				}
			case EV_PROBE:
				{
					Pool	   *pool = (Pool *) target;

					if (health_on_event(&pool->probe, pool, &pool->settings))
						pool_circuit_opened(pool);
					pool_touch(pool);
					pool_wake(pool, health_next_wake(&pool->probe));
					break;
				}
			case EV_RESOLVER:
				resolve_on_event(target, fired[i].events);
				break;
		}
	}
}
