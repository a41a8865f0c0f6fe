/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The SQL functions that call a remote through the pool: query,
 *	  query_json, fetchval and exec.  They run in the calling backend.
 *
 * Owns the backend's half of a call: who may use a connection (read from
 * the registry the worker published in shared memory: no SPI, no catalog
 * scan), the request message, and turning the worker's stream back into
 * rows, JSON, a value or a command tag.  Rows go into a tuplestore that
 * spills to disk past work_mem, through a per-row memory context, so a
 * large result never sits in memory whole.
 *
 * It never touches libpq: the worker owns every remote connection.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "access/xact.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "netrun_pool.h"
#include "channel.h"
#include "route.h"
#include "tenant.h"

PG_FUNCTION_INFO_V1(netrun_query);
PG_FUNCTION_INFO_V1(netrun_query_json);
PG_FUNCTION_INFO_V1(netrun_fetchval);
PG_FUNCTION_INFO_V1(netrun_exec);
PG_FUNCTION_INFO_V1(netrun_exec_transaction);
PG_FUNCTION_INFO_V1(netrun_begin);
PG_FUNCTION_INFO_V1(netrun_release);

/* libpq takes at most this many parameters. */
#define MAX_PARAMS		65535
/* A request buffer larger than this is freed before the next call. */
#define REQUEST_BUF_KEEP	(8 * 1024 * 1024)

/* What the caller does with the stream (one of these per call kind). */
typedef struct CallSink
{
	void		(*rowdesc) (struct CallSink *sink, int ncols, const Oid *types,
							const char *const *names);
	void		(*row) (struct CallSink *sink, int ncols, char **values);
	MemoryContext row_cxt;		/* reset after every row */
	int			ncols;			/* remote columns, from the row description */
	char	  **colvalues;		/* ncols value pointers, reused per row */
	/* query and query_json */
	Tuplestorestate *store;
	TupleDesc	desc;			/* of the rows we return */
	FmgrInfo   *infuncs;
	Oid		   *ioparams;
	Datum	   *values;
	bool	   *nulls;
	char	  **colnames;		/* query_json */
	Oid		   *coltypes;
	/* for the context of a value that does not convert (query) */
	const char *conn_name;
	char	  **remote_names;
	int			converting;		/* the column being converted */
	/* fetchval */
	text	   *first_value;
	bool		have_row;
} CallSink;

/* An error the worker sent back, to be raised once the call is over. */
typedef struct CallError
{
	char		sqlstate[5];
	char	   *message;
	char	   *detail;
	char	   *hint;
	char	   *context;
	int32		position;		/* in the caller's SQL, or 0 */
} CallError;

static text *empty_text(void);

/*
 * begin() state of this backend, for the current local transaction: the
 * names begun, and whether the channel was discarded since (which closed
 * their connections and rolled the remote work back).  A lost begin() must
 * fail every later call on those names and the local commit; it must never
 * quietly continue on a fresh connection.
 */
static List *begun = NIL;
static bool begun_lost = false;

/*
 * Session-mode pools this backend holds a session on (TopMemoryContext).
 * Discarding the channel ends those sessions (the worker closes their
 * connections): their names move to sessions_lost, and the next call on
 * each says so once instead of quietly starting a fresh session.
 */
static List *sessions = NIL;
static List *sessions_lost = NIL;

/*
 * A cluster name stays on the member it was routed to while that member
 * holds something for this backend: a begin() transaction (every call by
 * that name, until the local transaction ends) or a session.  Sessions are
 * kept apart for writes and for read_only reads, which route to different
 * members: a write never follows a read's session onto a replica.  In
 * TopMemoryContext.
 */
typedef enum StickyKind
{
	STICKY_BEGIN,				/* a begin() transaction: all calls */
	STICKY_SESSION_WRITE,		/* a session taken by a write */
	STICKY_SESSION_READ			/* a session taken by a read_only call */
} StickyKind;

typedef struct StickyRoute
{
	char		alias[NAMEDATALEN];	/* the cluster name the caller used */
	char		target[NAMEDATALEN];	/* the member it went to */
	StickyKind	kind;
} StickyRoute;

static List *sticky_routes = NIL;

/* The connection the last api_call() went to. */
static char call_target[NAMEDATALEN];

static StickyRoute *
sticky_find(const char *alias, StickyKind kind)
{
	ListCell   *lc;

	foreach(lc, sticky_routes)
	{
		StickyRoute *r = (StickyRoute *) lfirst(lc);

		if (r->kind == kind && strcmp(r->alias, alias) == 0)
			return r;
	}
	return NULL;
}

/* Where a call by this name must go, or NULL if routing decides. */
static const char *
sticky_lookup(const char *alias, bool read_only)
{
	StickyRoute *r = sticky_find(alias, STICKY_BEGIN);

	if (r == NULL)
		r = sticky_find(alias, read_only ? STICKY_SESSION_READ : STICKY_SESSION_WRITE);
	return r ? r->target : NULL;
}

static void
sticky_add(const char *alias, const char *target, StickyKind kind)
{
	MemoryContext old;
	StickyRoute *r;

	if (sticky_find(alias, kind) != NULL)
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	r = palloc(sizeof(StickyRoute));
	strlcpy(r->alias, alias, NAMEDATALEN);
	strlcpy(r->target, target, NAMEDATALEN);
	r->kind = kind;
	sticky_routes = lappend(sticky_routes, r);
	MemoryContextSwitchTo(old);
}

/*
 * Forget routes: of one alias (alias != NULL) or of every alias; the
 * begin() routes, or the session routes.
 */
static void
sticky_forget(const char *alias, bool sessions)
{
	ListCell   *lc;

	foreach(lc, sticky_routes)
	{
		StickyRoute *r = (StickyRoute *) lfirst(lc);

		if ((r->kind != STICKY_BEGIN) != sessions)
			continue;
		if (alias && strcmp(r->alias, alias) != 0)
			continue;
		pfree(r);
		sticky_routes = foreach_delete_current(sticky_routes, lc);
	}
}

static List *
name_list_remove(List *list, const char *name, bool *found)
{
	ListCell   *lc;

	*found = false;
	foreach(lc, list)
	{
		if (strcmp((char *) lfirst(lc), name) == 0)
		{
			pfree(lfirst(lc));
			*found = true;
			return list_delete_cell(list, lc);
		}
	}
	return list;
}

static void
sessions_note(const char *name)
{
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, sessions)
		if (strcmp((char *) lfirst(lc), name) == 0)
			return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	sessions = lappend(sessions, pstrdup(name));
	MemoryContextSwitchTo(old);
}

/* The channel is going: every session it carried is lost. */
static void
sessions_lose_all(void)
{
	/* list_concat allocates in the current context: keep the lists long-lived */
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	sessions_lost = list_concat(sessions_lost, sessions);
	MemoryContextSwitchTo(old);
	list_free(sessions);		/* the cells only: the names moved */
	sessions = NIL;
	sticky_forget(NULL, true);
}

static bool
is_begun(const char *name)
{
	ListCell   *lc;

	foreach(lc, begun)
		if (strcmp((char *) lfirst(lc), name) == 0)
			return true;
	return false;
}

static void
begun_lost_error(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("the remote transaction of netrun_pool connection \"%s\" was lost", name),
			 errdetail("A call that failed or was cancelled inside it closed its connection, which rolled the remote work back."),
			 errhint("Roll back the local transaction.")));
}

/*
 * Text crosses the channel in the worker's database encoding (the remote
 * connections' client_encoding).  A caller in a database with another
 * encoding converts on the way out and in; the usual case, one encoding,
 * costs nothing.
 */
static int	call_remote_encoding = -1;	/* for the call in progress */

static bool
needs_conversion(void)
{
	return call_remote_encoding != GetDatabaseEncoding() &&
		call_remote_encoding != PG_SQL_ASCII &&
		GetDatabaseEncoding() != PG_SQL_ASCII;
}

/* Caller's text to the worker's encoding (maybe the same pointer). */
static const char *
to_remote(const char *s, int *len)
{
	char	   *out;

	if (!needs_conversion())
		return s;
	out = (char *) pg_do_encoding_conversion((unsigned char *) s, *len,
											 GetDatabaseEncoding(),
											 call_remote_encoding);
	if (out != s)
		*len = strlen(out);
	return out;
}

/* The worker's text to the caller's encoding (maybe the same pointer). */
static char *
from_remote(char *s)
{
	if (s == NULL || !needs_conversion())
		return s;
	return (char *) pg_do_encoding_conversion((unsigned char *) s, strlen(s),
											  call_remote_encoding,
											  GetDatabaseEncoding());
}

/* Built once, reused by every call of this backend. */
static StringInfo request_buf = NULL;
static uint32 request_seq = 0;

/* The first argument of every call: the connection's name. */
static char *
api_name_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("netrun_pool connection name must not be null")));
	return text_to_cstring(PG_GETARG_TEXT_PP(0));
}

/* (name, sql, ...): both required; returns the name. */
static char *
api_check_args(FunctionCallInfo fcinfo)
{
	char	   *name = api_name_arg(fcinfo);

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("sql must not be null")));
	return name;
}

/*
 * The first keyword of a statement, past whitespace and comments (nested
 * as the server nests them), upper-cased into buf.  Each statement
 * travels alone (extended protocol: one command per string), so its first
 * keyword says what it is.
 */
static const char *
first_keyword(const char *sql, int len, char *buf, int buflen)
{
	const char *p = sql;
	const char *end = sql + len;
	int			n = 0;

	for (;;)
	{
		while (p < end && isspace((unsigned char) *p))
			p++;
		if (end - p >= 2 && p[0] == '-' && p[1] == '-')
		{
			while (p < end && *p != '\n')
				p++;
			continue;
		}
		if (end - p >= 2 && p[0] == '/' && p[1] == '*')
		{
			int			depth = 1;

			p += 2;
			while (p < end && depth > 0)
			{
				if (end - p >= 2 && p[0] == '/' && p[1] == '*')
					depth++, p += 2;
				else if (end - p >= 2 && p[0] == '*' && p[1] == '/')
					depth--, p += 2;
				else
					p++;
			}
			continue;
		}
		break;
	}
	while (p < end && isalpha((unsigned char) *p) && n < buflen - 1)
		buf[n++] = pg_toupper((unsigned char) *p++);
	buf[n] = '\0';
	return buf;
}

static bool
keyword_in(const text *sql, const char *const *words)
{
	char		buf[16];

	first_keyword(VARDATA_ANY(sql), VARSIZE_ANY_EXHDR(sql), buf, sizeof(buf));
	for (int i = 0; words[i]; i++)
		if (strcmp(buf, words[i]) == 0)
			return true;
	return false;
}

/*
 * Must this statement run alone on its remote connection, never in a
 * pipeline with other callers' calls?  Transaction control (a BEGIN would
 * swallow the calls behind it into its transaction), commands on session
 * state (cursors, LISTEN, prepared statements, settings), COPY (the
 * connection closes), and utility and DDL commands, some of which refuse
 * to run anywhere but first in a pipeline.  Decided from the first
 * keyword alone: the extended protocol forbids a second command in the
 * string, so the first keyword is the command.  Wrongly alone costs a
 * little latency; never wrongly pipelined.
 */
static bool
statement_runs_alone(const text *sql)
{
	static const char *const words[] = {
		"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "PREPARE",
		"SAVEPOINT", "RELEASE",
		"SET", "RESET", "DISCARD", "LISTEN", "UNLISTEN", "NOTIFY", "LOAD",
		"DECLARE", "CLOSE", "FETCH", "MOVE", "DEALLOCATE", "EXECUTE",
		"COPY", "VACUUM", "ANALYZE", "ANALYSE", "CLUSTER", "REINDEX",
		"CHECKPOINT", "CREATE", "DROP", "ALTER", "LOCK", "CALL", "DO",
		"SECURITY", "IMPORT", "REFRESH", "GRANT", "REVOKE", "COMMENT",
		"TRUNCATE",
		NULL
	};

	return keyword_in(sql, words);
}

static StringInfo
api_build_request(const char *name, ChannelCallKind kind, bool read_only,
				  text *sql, ArrayType *params)
{
	ChannelRequestHead head;
	int			nparams = 0;
	Datum	   *elems = NULL;
	bool	   *elem_nulls = NULL;

	if (request_buf == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		request_buf = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	/* a large request's buffer is not kept for the backend's life */
	if (request_buf->maxlen > REQUEST_BUF_KEEP)
	{
		pfree(request_buf->data);
		request_buf->data = MemoryContextAlloc(TopMemoryContext, 1024);
		request_buf->maxlen = 1024;
	}
	resetStringInfo(request_buf);

	if (params != NULL)
	{
		if (ARR_NDIM(params) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("params must be a one-dimensional array")));
		deconstruct_array(params, TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &elem_nulls, &nparams);
		if (nparams > MAX_PARAMS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many parameters: %d", nparams),
					 errdetail("A call takes at most %d parameters.", MAX_PARAMS)));
	}

	memset(&head, 0, sizeof(head));
	head.type = MSG_REQUEST;
	head.kind = kind;
	head.flags = (read_only ? REQ_READ_ONLY : 0) | (superuser() ? REQ_SUPERUSER : 0);
	if ((kind == CALL_ROWS || kind == CALL_EXEC) &&
		statement_runs_alone(sql))
		head.flags |= REQ_ALONE;
	else if (kind == CALL_TRANSACTION)
	{
		for (int i = 0; i < nparams; i++)
			if (!elem_nulls[i] &&
				statement_runs_alone(DatumGetTextPP(elems[i])))
				head.flags |= REQ_ALONE;
	}
	head.seq = ++request_seq;
	head.userid = GetUserId();
	strlcpy(head.pool, name, NAMEDATALEN);
	appendBinaryStringInfo(request_buf, (const char *) &head, sizeof(head));

	{
		int			len = VARSIZE_ANY_EXHDR(sql);
		const char *data = to_remote(VARDATA_ANY(sql), &len);

		msg_put_int32(request_buf, len);
		appendBinaryStringInfo(request_buf, data, len);
	}
	msg_put_int32(request_buf, nparams);
	for (int i = 0; i < nparams; i++)
	{
		if (elem_nulls[i])
			msg_put_int32(request_buf, -1);
		else
		{
			text	   *t = DatumGetTextPP(elems[i]);
			int			len = VARSIZE_ANY_EXHDR(t);
			const char *data = to_remote(VARDATA_ANY(t), &len);

			msg_put_int32(request_buf, len);
			appendBinaryStringInfo(request_buf, data, len);
		}
	}

	/*
	 * The tenant travels with every call (the worker sets it on the remote
	 * for this call only), and in schema mode its search_path.
	 */
	{
		const char *strs[2];

		strs[0] = tenant_current();
		strs[1] = strs[0] ? tenant_remote_search_path() : NULL;
		for (int i = 0; i < 2; i++)
		{
			if (strs[i] == NULL)
				msg_put_int32(request_buf, -1);
			else
			{
				int			len = strlen(strs[i]);
				const char *data = to_remote(strs[i], &len);

				msg_put_int32(request_buf, len);
				appendBinaryStringInfo(request_buf, data, len);
			}
		}
	}
	if ((int64) request_buf->len > (int64) netrun_max_request_size_kb * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("netrun_pool call of %d bytes exceeds netrun_pool.max_request_size (%d kB)",
						request_buf->len, netrun_max_request_size_kb),
				 errdetail("One worker sends the calls of every caller, and would hold them up while it sends a request this large."),
				 errhint("Send the data in smaller calls, or raise netrun_pool.max_request_size.")));
	return request_buf;
}

static char *
take_cstring(const char **p, const char *end)
{
	const char *s = *p;
	size_t		len = strnlen(s, end - s);

	if (s + len >= end)
		elog(ERROR, "netrun_pool: malformed message from the worker");
	*p = s + len + 1;
	return (char *) s;
}

/*
 * Run one call: send the request, feed the stream to the sink, and return
 * the command tag.  A call that ends with an error from the worker or the
 * remote raises it here, after the stream is over, so the channel stays
 * usable; anything raised while the stream is open (a cancel, a type
 * mismatch) discards the channel, which tells the worker to stop.
 */
static char *
api_call(const char *alias, ChannelCallKind kind, bool read_only, text *sql,
		 ArrayType *params, CallSink *sink)
{
	CallError  *volatile err = NULL;
	char	   *volatile tag = NULL;

	volatile int pool_mode = -1;
	bool		lost;
	const char *pinned = sticky_lookup(alias, kind == CALL_ROWS && read_only);
	const char *name;
	RouteTarget route;

	/*
	 * Where the call goes (route.c): the connection of that name, or a
	 * member of the cluster of that name, unless a begin() or a session
	 * holds one.  Ending a begin() or a session is always allowed.
	 */
	memset(&route, 0, sizeof(route));
	if (kind == CALL_COMMIT || kind == CALL_ROLLBACK || kind == CALL_RELEASE)
	{
		const char *target = pinned ? pinned : alias;

		/* no name is that long: cut short, it could name another one */
		if (strlen(target) >= NAMEDATALEN)
			route_report_unknown(target);
		strlcpy(route.name, target, NAMEDATALEN);
	}
	else
	{
		route_resolve(pinned ? pinned : alias,
					  !(kind == CALL_ROWS && read_only), &route);
		pool_mode = route.pool_mode;
	}
	route.via_cluster = strcmp(route.name, alias) != 0;
	name = route.name;
	strlcpy(call_target, name, NAMEDATALEN);

	if (begun_lost && is_begun(name))
		begun_lost_error(name);
	sessions_lost = name_list_remove(sessions_lost, name, &lost);
	if (lost && kind != CALL_RELEASE)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the session of netrun_pool connection \"%s\" was lost", name),
				 errdetail("A call that failed mid-stream or was cancelled closed this backend's channel, and with it the session's connection and state."),
				 errhint("Call again to start a new session.")));

	SpinLockAcquire(&netrun_shared->mutex);
	call_remote_encoding = netrun_shared->worker_encoding;
	SpinLockRelease(&netrun_shared->mutex);

	PG_TRY();
	{
		StringInfo req;
		bool		done = false;
		MemoryContext conv_cxt = NULL;	/* per-row conversions */

		channel_backend_ensure();
		req = api_build_request(name, kind, read_only, sql, params);
		channel_backend_send(req);

		while (!done)
		{
			Size		len;
			void	   *data;
			const char *p;
			const char *end;

			/* a full queue never waits: cancel must still get through */
			CHECK_FOR_INTERRUPTS();
			channel_backend_receive(&len, &data);
			if (len < 1)
				elog(ERROR, "netrun_pool: empty message from the worker");
			p = (const char *) data + 1;
			end = (const char *) data + len;

			switch (((const char *) data)[0])
			{
				case MSG_ROWDESC:
					{
						int			ncols = msg_get_int32(&p);
						Oid		   *types = palloc(sizeof(Oid) * Max(ncols, 1));
						const char **names = palloc(sizeof(char *) * Max(ncols, 1));

						for (int i = 0; i < ncols; i++)
						{
							types[i] = (Oid) msg_get_int32(&p);
							names[i] = from_remote(take_cstring(&p, end));
						}
						sink->ncols = ncols;
						sink->conn_name = name;
						sink->colvalues = palloc(sizeof(char *) * Max(ncols, 1));
						if (sink->rowdesc)
							sink->rowdesc(sink, ncols, types, names);
						break;
					}
				case MSG_ROWS:
					{
						int			nrows = msg_get_int32(&p);
						bool		convert = needs_conversion();

						if (sink->row == NULL)
							break;
						if (convert && conv_cxt == NULL)
							conv_cxt = AllocSetContextCreate(CurrentMemoryContext,
															 "netrun_pool conversion",
															 ALLOCSET_SMALL_SIZES);
						for (int r = 0; r < nrows; r++)
						{
							MemoryContext old = convert ?
								MemoryContextSwitchTo(conv_cxt) : NULL;

							/* values are used in place: each ends in '\0' */
							for (int c = 0; c < sink->ncols; c++)
							{
								int32		vlen = msg_get_int32(&p);

								if (vlen < 0)
									sink->colvalues[c] = NULL;
								else
								{
									sink->colvalues[c] = from_remote((char *) p);
									p += vlen + 1;
								}
							}
							if (convert)
								MemoryContextSwitchTo(old);
							sink->row(sink, sink->ncols, sink->colvalues);
							if (convert)
								MemoryContextReset(conv_cxt);
						}
						break;
					}
				case MSG_COMPLETE:
					tag = pstrdup(from_remote(take_cstring(&p, end)));
					done = true;
					break;
				case MSG_ERROR:
					err = palloc0(sizeof(CallError));
					memcpy(err->sqlstate, p, 5);
					p += 5;
					err->message = pstrdup(from_remote(take_cstring(&p, end)));
					err->detail = pstrdup(from_remote(take_cstring(&p, end)));
					err->hint = pstrdup(from_remote(take_cstring(&p, end)));
					err->context = pstrdup(from_remote(take_cstring(&p, end)));
					err->position = msg_get_int32(&p);
					done = true;
					break;
				default:
					elog(ERROR, "netrun_pool: unexpected message type %d from the worker",
						 ((const char *) data)[0]);
			}
		}
	}
	PG_CATCH();
	{
		channel_backend_discard();
		/* the worker closes pinned connections with the channel */
		if (begun != NIL)
			begun_lost = true;
		sessions_lose_all();
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (pool_mode == NETRUN_POOL_MODE_SESSION)
	{
		sessions_note(name);
		if (route.via_cluster)
			sticky_add(alias, name, kind == CALL_ROWS && read_only ?
					   STICKY_SESSION_READ : STICKY_SESSION_WRITE);
	}
	if (kind == CALL_RELEASE && err == NULL)
		sessions = name_list_remove(sessions, name, &lost);

	if (err)
	{
		char	   *where = route.via_cluster ?
			psprintf("netrun_pool connection \"%s\" (cluster \"%s\")", name, alias) :
			psprintf("netrun_pool connection \"%s\"", name);
		const char *tenant = tenant_current();

		/*
		 * A value the remote could not read, in a call that carried a
		 * tenant: most often the tenant itself, cast by a remote policy
		 * to a type its format does not fit.
		 */
		if (tenant == NULL || memcmp(err->sqlstate, "22P02", 5) != 0)
			tenant = NULL;

		ereport(ERROR,
				(errcode(MAKE_SQLSTATE(err->sqlstate[0], err->sqlstate[1],
									   err->sqlstate[2], err->sqlstate[3],
									   err->sqlstate[4])),
				 errmsg_internal("%s", err->message),
				 err->detail[0] ? errdetail_internal("%s", err->detail) : 0,
				 err->hint[0] ? errhint("%s", err->hint) : 0,
				 err->context[0] ? errcontext("%s", err->context) : 0,
				 errcontext("%s", where),
				 tenant ? errcontext("the call carried tenant \"%s\"; netrun_pool.tenant_id_format (%s here) says what a tenant id looks like, and must fit what the remote's policies expect",
									 netrun_message_value(tenant),
									 GetConfigOption("netrun_pool.tenant_id_format", false, false)) : 0,
				 err->position > 0 && sql ? internalerrposition(err->position) : 0,
				 err->position > 0 && sql ? internalerrquery(text_to_cstring(sql)) : 0));
	}
	return tag;
}

/*
 * query, query_json and fetchval share their arguments: (name, sql,
 * params, read_only).
 */
static void
api_call_rows(FunctionCallInfo fcinfo, const char *name, CallSink *sink)
{
	(void) api_call(name, CALL_ROWS,
					!PG_ARGISNULL(3) && PG_GETARG_BOOL(3),
					PG_GETARG_TEXT_PP(1),
					PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2), sink);
}

/* ---------------------------------------------------------------------
 * query: rows typed by the caller's column list
 * ---------------------------------------------------------------------
 */

static void
query_rowdesc(CallSink *sink, int ncols, const Oid *types,
			  const char *const *names)
{
	if (ncols != sink->desc->natts)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("remote query result does not match the column list"),
				 errdetail("The remote returned %d columns; the column list has %d.",
						   ncols, sink->desc->natts)));
	sink->remote_names = palloc(sizeof(char *) * Max(ncols, 1));
	for (int i = 0; i < ncols; i++)
		sink->remote_names[i] = pstrdup(names[i]);
}

/*
 * A remote value that does not convert to the column list's type names
 * the column: its number, its names here and on the remote, and the
 * connection (PostgreSQL's own message names only the type).
 */
static void
query_row_context(void *arg)
{
	CallSink   *sink = (CallSink *) arg;
	int			i = sink->converting;

	errcontext("column %d (\"%s\" in the column list, \"%s\" on the remote) of a row from netrun_pool connection \"%s\"",
			   i + 1, NameStr(TupleDescAttr(sink->desc, i)->attname),
			   sink->remote_names ? sink->remote_names[i] : "?",
			   sink->conn_name ? sink->conn_name : "?");
}

static void
query_row(CallSink *sink, int ncols, char **values)
{
	MemoryContext old = MemoryContextSwitchTo(sink->row_cxt);
	ErrorContextCallback context;

	context.callback = query_row_context;
	context.arg = sink;
	context.previous = error_context_stack;
	error_context_stack = &context;
	for (int i = 0; i < ncols; i++)
	{
		Form_pg_attribute att = TupleDescAttr(sink->desc, i);

		sink->converting = i;
		sink->nulls[i] = values[i] == NULL;
		sink->values[i] = InputFunctionCall(&sink->infuncs[i], values[i],
											sink->ioparams[i], att->atttypmod);
	}
	error_context_stack = context.previous;
	tuplestore_putvalues(sink->store, sink->desc, sink->values, sink->nulls);
	MemoryContextSwitchTo(old);
	MemoryContextReset(sink->row_cxt);
}

/* A materialized SRF's tuplestore, in the query's memory. */
static void
api_init_store(FunctionCallInfo fcinfo, CallSink *sink, TupleDesc desc)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext old;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));

	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	sink->desc = CreateTupleDescCopy(desc);
	sink->store = tuplestore_begin_heap(rsinfo->allowedModes & SFRM_Materialize_Random,
										false, work_mem);
	MemoryContextSwitchTo(old);

	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = sink->store;
	rsinfo->setDesc = sink->desc;
	sink->row_cxt = AllocSetContextCreate(CurrentMemoryContext, "netrun_pool row",
										  ALLOCSET_SMALL_SIZES);
	sink->values = palloc(sizeof(Datum) * Max(desc->natts, 1));
	sink->nulls = palloc(sizeof(bool) * Max(desc->natts, 1));
}

Datum
netrun_query(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CallSink	sink = {0};
	char	   *name;

	name = api_check_args(fcinfo);
	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) || rsinfo->expectedDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("netrun_pool.query() needs a column definition list"),
				 errhint("Call it as SELECT * FROM netrun_pool.query(...) AS t(col type, ...).")));

	api_init_store(fcinfo, &sink, rsinfo->expectedDesc);
	sink.infuncs = palloc(sizeof(FmgrInfo) * Max(sink.desc->natts, 1));
	sink.ioparams = palloc(sizeof(Oid) * Max(sink.desc->natts, 1));
	for (int i = 0; i < sink.desc->natts; i++)
	{
		Oid			infunc;

		getTypeInputInfo(TupleDescAttr(sink.desc, i)->atttypid, &infunc,
						 &sink.ioparams[i]);
		fmgr_info(infunc, &sink.infuncs[i]);
	}
	sink.rowdesc = query_rowdesc;
	sink.row = query_row;

	api_call_rows(fcinfo, name, &sink);
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * query_json: one jsonb object per row, keyed by remote column name
 * ---------------------------------------------------------------------
 */

static void
json_rowdesc(CallSink *sink, int ncols, const Oid *types,
			 const char *const *names)
{
	sink->colnames = palloc(sizeof(char *) * Max(ncols, 1));
	sink->coltypes = palloc(sizeof(Oid) * Max(ncols, 1));
	for (int i = 0; i < ncols; i++)
	{
		sink->colnames[i] = pstrdup(names[i]);
		sink->coltypes[i] = types[i];
	}
}

/* Is a number's text a JSON number?  NaN and Infinity are not. */
static bool
json_number_ok(const char *s)
{
	return strpbrk(s, "NnIi") == NULL;
}

static void
json_row(CallSink *sink, int ncols, char **values)
{
	MemoryContext old = MemoryContextSwitchTo(sink->row_cxt);
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < ncols; i++)
	{
		const char *v = values[i];

		if (i > 0)
			appendStringInfoChar(&buf, ',');
		escape_json(&buf, sink->colnames[i]);
		appendStringInfoChar(&buf, ':');
		if (v == NULL)
			appendStringInfoString(&buf, "null");
		else
			switch (sink->coltypes[i])
			{
				case BOOLOID:
					appendStringInfoString(&buf, v[0] == 't' ? "true" : "false");
					break;
				case INT2OID:
				case INT4OID:
				case INT8OID:
				case OIDOID:
				case FLOAT4OID:
				case FLOAT8OID:
				case NUMERICOID:
					if (json_number_ok(v))
						appendStringInfoString(&buf, v);
					else
						escape_json(&buf, v);
					break;
				case JSONOID:
				case JSONBOID:
					appendStringInfoString(&buf, v);
					break;
				default:
					escape_json(&buf, v);
					break;
			}
	}
	appendStringInfoChar(&buf, '}');
	sink->values[0] = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
	sink->nulls[0] = false;
	tuplestore_putvalues(sink->store, sink->desc, sink->values, sink->nulls);
	MemoryContextSwitchTo(old);
	MemoryContextReset(sink->row_cxt);
}

Datum
netrun_query_json(PG_FUNCTION_ARGS)
{
	CallSink	sink = {0};
	TupleDesc	desc;
	char	   *name;

	name = api_check_args(fcinfo);
	desc = CreateTemplateTupleDesc(1);
	TupleDescInitEntry(desc, 1, "query_json", JSONBOID, -1, 0);
	api_init_store(fcinfo, &sink, desc);
	sink.rowdesc = json_rowdesc;
	sink.row = json_row;

	api_call_rows(fcinfo, name, &sink);
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * fetchval: the first column of the first row
 * ---------------------------------------------------------------------
 */

static void
fetchval_row(CallSink *sink, int ncols, char **values)
{
	if (sink->have_row)
		return;
	sink->have_row = true;
	if (ncols > 0 && values[0] != NULL)
		sink->first_value = cstring_to_text(values[0]);
}

Datum
netrun_fetchval(PG_FUNCTION_ARGS)
{
	CallSink	sink = {0};
	char	   *name;

	name = api_check_args(fcinfo);
	sink.row = fetchval_row;

	api_call_rows(fcinfo, name, &sink);
	if (sink.first_value == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(sink.first_value);
}

/* ---------------------------------------------------------------------
 * exec: the command tag
 * ---------------------------------------------------------------------
 */

Datum
netrun_exec(PG_FUNCTION_ARGS)
{
	CallSink	sink = {0};
	char	   *name;
	char	   *tag;

	name = api_check_args(fcinfo);

	tag = api_call(name, CALL_EXEC, false, PG_GETARG_TEXT_PP(1),
				   PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2), &sink);
	PG_RETURN_TEXT_P(cstring_to_text(tag));
}

/* ---------------------------------------------------------------------
 * exec_transaction: statements in one remote transaction, all or nothing
 * ---------------------------------------------------------------------
 */

/* Statements that would end the transaction exec_transaction owns. */
static bool
is_transaction_control(const text *sql)
{
	static const char *const words[] = {
		"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "PREPARE", NULL
	};

	return keyword_in(sql, words);
}

Datum
netrun_exec_transaction(PG_FUNCTION_ARGS)
{
	CallSink	sink = {0};
	char	   *name;
	char	   *tags;
	ArrayType  *statements;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			n;
	List	   *out = NIL;
	Datum	   *result;
	int			nresult = 0;

	name = api_name_arg(fcinfo);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("statements must not be null")));
	statements = PG_GETARG_ARRAYTYPE_P(1);
	deconstruct_array(statements, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &elem_nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("statements must not be empty")));
	for (int i = 0; i < n; i++)
	{
		if (elem_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("statements must not contain NULL"),
					 errdetail("Statement %d is NULL.", i + 1)));
		if (is_transaction_control(DatumGetTextPP(elems[i])))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
					 errmsg("exec_transaction statements must not control the transaction"),
					 errdetail("Statement %d begins, ends or prepares a transaction.", i + 1),
					 errhint("exec_transaction begins the remote transaction and commits it after the last statement.")));
	}

	/* the statements travel as the request's parameters */
	tags = api_call(name, CALL_TRANSACTION, false, empty_text(), statements, &sink);

	for (char *line = strtok(tags, "\n"); line; line = strtok(NULL, "\n"))
		out = lappend(out, line);
	result = palloc(sizeof(Datum) * Max(list_length(out), 1));
	{
		ListCell   *lc;

		foreach(lc, out)
			result[nresult++] = CStringGetTextDatum((char *) lfirst(lc));
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(result, nresult, TEXTOID, -1, false,
										  TYPALIGN_INT));
}

/* ---------------------------------------------------------------------
 * begin() and release(): connections held across calls
 * ---------------------------------------------------------------------
 */

static bool begin_callback_registered = false;

static text *
empty_text(void)
{
	static text *empty = NULL;

	if (empty == NULL)
	{
		empty = (text *) MemoryContextAllocZero(TopMemoryContext, VARHDRSZ);
		SET_VARSIZE(empty, VARHDRSZ);
	}
	return empty;
}

static void
begun_clear(void)
{
	list_free_deep(begun);
	begun = NIL;
	begun_lost = false;
	sticky_forget(NULL, false);
}

/*
 * The remote transactions follow the local one: committed at pre-commit,
 * so a remote that refuses to commit fails the local commit; on abort the
 * channel is discarded, and the worker closes the pinned connections,
 * which rolls the remote work back.  There is no two-phase commit: with
 * several connections begun, one may commit before another fails.
 */
static void
begin_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			if (begun != NIL)
			{
				List	   *names = begun;
				ListCell   *lc;
				CallSink	sink = {0};

				if (begun_lost)
					begun_lost_error((char *) linitial(begun));
				begun = NIL;	/* an error below aborts; don't come back */

				/*
				 * If one commit fails, the local transaction aborts: the
				 * other begun connections must not stay pinned with their
				 * transactions open, so the channel goes (the worker closes
				 * them, which rolls them back).
				 */
				PG_TRY();
				{
					foreach(lc, names)
						(void) api_call((char *) lfirst(lc), CALL_COMMIT, false,
										empty_text(), NULL, &sink);
				}
				PG_CATCH();
				{
					channel_backend_discard();
					sessions_lose_all();
					PG_RE_THROW();
				}
				PG_END_TRY();
				list_free_deep(names);
			}
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (begun != NIL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that has begun a netrun_pool remote transaction")));
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* even when a failed remote COMMIT emptied "begun" already */
			sticky_forget(NULL, false);
			if (begun != NIL)
			{
				begun_clear();
				channel_backend_discard();
				sessions_lose_all();
			}
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			begun_clear();
			break;
	}
}

Datum
netrun_begin(PG_FUNCTION_ARGS)
{
	char	   *name;
	CallSink	sink = {0};
	MemoryContext old;

	name = api_name_arg(fcinfo);

	/* a cluster name begun already stays on its member */
	if (is_begun(sticky_lookup(name, false) ? sticky_lookup(name, false) : name))
	{
		if (begun_lost)
			begun_lost_error(name);
		PG_RETURN_VOID();		/* already begun in this transaction */
	}

	if (!begin_callback_registered)
	{
		RegisterXactCallback(begin_xact_callback, NULL);
		begin_callback_registered = true;
	}
	(void) api_call(name, CALL_BEGIN, false, empty_text(), NULL, &sink);

	if (strcmp(call_target, name) != 0)
		sticky_add(name, call_target, STICKY_BEGIN);
	if (is_begun(call_target))
		PG_RETURN_VOID();		/* begun already under its own name */
	old = MemoryContextSwitchTo(TopMemoryContext);
	begun = lappend(begun, pstrdup(call_target));
	MemoryContextSwitchTo(old);
	PG_RETURN_VOID();
}

/*
 * release(name): a connection's session, or for a cluster name the
 * sessions its calls took (its write member's and its read member's).
 * A cluster holding nothing has nothing to release.
 */
Datum
netrun_release(PG_FUNCTION_ARGS)
{
	CallSink	sink = {0};
	char	   *name = api_name_arg(fcinfo);
	StickyKind	kinds[] = {STICKY_SESSION_WRITE, STICKY_SESSION_READ};
	bool		any = false;

	for (int i = 0; i < (int) lengthof(kinds); i++)
	{
		StickyRoute *r = sticky_find(name, kinds[i]);
		char		target[NAMEDATALEN];

		if (r == NULL)
			continue;
		any = true;
		strlcpy(target, r->target, NAMEDATALEN);
		(void) api_call(target, CALL_RELEASE, false, empty_text(), NULL, &sink);
		/* forgotten only once the release went through */
		r = sticky_find(name, kinds[i]);
		if (r)
		{
			sticky_routes = list_delete_ptr(sticky_routes, r);
			pfree(r);
		}
	}
	if (!any && !route_is_cluster(name))
		(void) api_call(name, CALL_RELEASE, false, empty_text(), NULL, &sink);
	PG_RETURN_VOID();
}
