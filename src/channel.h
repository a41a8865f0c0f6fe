/*-------------------------------------------------------------------------
 *
 * channel.h
 *	  The backend <-> worker channel: one DSM segment per backend holding a
 *	  request queue and a response queue (shm_mq), and the messages that
 *	  travel on them.
 *
 * Messages are flat byte strings in native byte order (both ends run on
 * the same machine).  Every message starts with a one-byte type.
 *
 *	  request  'R'	backend -> worker: one call
 *	  response 'T'	row description: ncols, then (type oid, name\0) each
 *			   'D'	a batch of rows: nrows, then per column len (-1 =
 *					NULL) and len bytes plus a '\0', so values can be used
 *					in place as C strings
 *			   'C'	done: the command tag\0
 *			   'E'	error: sqlstate[5], then message\0 detail\0 hint\0
 *					context\0 (empty strings for none), then int32 position
 *					(in the caller's SQL, from 1; 0: none)
 *
 *-------------------------------------------------------------------------
 */
#ifndef NETRUN_CHANNEL_H
#define NETRUN_CHANNEL_H

#include "lib/stringinfo.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/dsm.h"
#include "storage/shm_mq.h"

#define CHANNEL_MAGIC			0x6e657470	/* "netp" */
#define CHANNEL_REQUEST_SIZE	(64 * 1024)
#define CHANNEL_RESPONSE_SIZE	(256 * 1024)

/* Row batches are flushed to the queue at about this size. */
#define CHANNEL_BATCH_BYTES		(32 * 1024)

#define MSG_REQUEST		'R'
#define MSG_ROWDESC		'T'
#define MSG_ROWS		'D'
#define MSG_COMPLETE	'C'
#define MSG_ERROR		'E'

/* What a request asks for. */
typedef enum ChannelCallKind
{
	CALL_ROWS = 1,				/* query, query_json, fetchval: rows wanted */
	CALL_EXEC = 2,				/* exec: command tag wanted */
	CALL_TRANSACTION = 3,		/* exec_transaction: the params are the
								 * statements; the tags come back, one per
								 * line */
	CALL_BEGIN = 4,				/* begin(): pin a connection, open a remote
								 * transaction */
	CALL_COMMIT = 5,			/* local pre-commit: commit it */
	CALL_ROLLBACK = 6,			/* roll it back (not used on abort: the
								 * backend discards its channel then) */
	CALL_RELEASE = 7			/* release(): end a session-mode pin */
} ChannelCallKind;

#define REQ_READ_ONLY		0x01
#define REQ_SUPERUSER		0x02	/* caller is a superuser */
#define REQ_ALONE			0x04	/* never shares a connection's pipeline
									 * with another caller's call (api.c,
									 * statement_runs_alone) */

/*
 * The fixed head of a request; sql, params and the tenant follow:
 *	  int32 sql_len, sql bytes, int32 nparams, per param int32 len (-1 =
 *	  NULL) and bytes, then the caller's tenant and its search_path (schema
 *	  mode), each int32 len (-1 = none) and bytes.
 */
typedef struct ChannelRequestHead
{
	char		type;			/* MSG_REQUEST */
	uint8		kind;			/* ChannelCallKind */
	uint8		flags;			/* REQ_* */
	uint32		seq;
	Oid			userid;
	char		pool[NAMEDATALEN];
} ChannelRequestHead;

/*
 * The shared slot a backend registers its channel in, one per backend
 * (indexed by BackendId - 1).  Written by the owning backend (handle,
 * generation, pid) and cleared by it; the worker only reads it.  These
 * fields are read and written under netrun_shared->mutex.
 *
 * The two bells are atomics, outside the mutex.  A side rings the other's
 * bell after it has written to a queue (or, the backend, after it changed
 * its slot), then sets the other's latch; the other looks at that queue
 * only when its bell rang or its last read found a message.  Reading an
 * empty shm_mq is not free: it publishes the bytes read so far and sets
 * the sender's latch, which woke the other side for nothing twice per
 * call (see channel.c).
 */
typedef struct ChannelSlot
{
	pid_t		pid;			/* 0: no channel */
	dsm_handle	handle;
	uint32		generation;		/* bumped at every new channel */
	pid_t		worker_pid;		/* the worker it was made for: a restarted
								 * worker never adopts an old channel */
	pg_atomic_uint32 request_bell;	/* rung by the backend */
	pg_atomic_uint32 response_bell; /* rung by the worker */
} ChannelSlot;

/* channel.c, backend side */
extern void channel_backend_ensure(void);
extern void channel_backend_discard(void);
extern void channel_backend_send(StringInfo msg);
extern void channel_backend_receive(Size *len, void **data);

/* channel.c, worker side */
typedef struct WorkerChannel
{
	int			slot;			/* index into netrun_shared->channels */
	uint32		generation;
	dsm_segment *seg;
	shm_mq_handle *request;		/* we receive */
	shm_mq_handle *response;	/* we send */
	Latch	   *backend_latch;	/* the backend's, to ring its bell */
	bool		attached;
} WorkerChannel;

extern bool channel_worker_attach(WorkerChannel *ch, int slot,
								  dsm_handle handle, uint32 generation);
extern void channel_worker_detach(WorkerChannel *ch);
extern bool channel_worker_take_bell(int slot);
extern void channel_worker_ring(WorkerChannel *ch);

/* message helpers */
extern void msg_put_int32(StringInfo buf, int32 v);
extern int32 msg_get_int32(const char **p);
extern void msg_put_error(StringInfo buf, const char *sqlstate,
						  const char *message, const char *detail,
						  const char *hint, const char *context,
						  int32 position);

#endif							/* NETRUN_CHANNEL_H */
