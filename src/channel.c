/*-------------------------------------------------------------------------
 *
 * channel.c
 *	  The backend <-> worker channel (see channel.h for the messages).
 *
 * Owns the DSM segment each backend creates on its first call and reuses
 * for the rest of its life, its registration in the shared slot array, and
 * the waits on both ends.  A backend waits on its own latch, one second at
 * a time, with CHECK_FOR_INTERRUPTS() and a check that the worker is still
 * there, so a cancel, statement_timeout or a dead worker ends the wait
 * instead of hanging it.
 *
 * After a call that did not end cleanly (an error or a cancel raised while
 * the call was in flight) the backend discards the channel: detaching
 * tells the worker, which cancels the remote work, and the next call
 * starts a fresh channel.  Nothing else is set up per call.
 *
 * Each side reads a queue only when the other rang its bell (ChannelSlot)
 * or its last read there found a message.  A read of an empty shm_mq
 * publishes the bytes consumed so far and sets the sender's latch; the
 * backend polling for its answer right after sending, and the worker
 * polling a request queue it had just emptied, each woke the other for
 * nothing: two extra process wake-ups per call, which cost more than the
 * call's own work on a busy machine.  With the bells a small call costs
 * one wake-up each way.  Flow control is shm_mq's own: a reader that
 * drains a queue (its read comes back empty) still publishes what it
 * consumed and wakes a sender waiting for room.
 *
 * A wake-up is the dearest part of a short call: the worker's kill() and
 * the sleeping backend's trip back through the scheduler cost more than
 * the worker's work for it.  So a caller whose previous answer came
 * within netrun_pool.spin_wait_us first polls its bell for that long, and
 * sleeps only if no answer came.  It polls only while the worker serves no
 * other call, one caller polls at a time (a shared slot), and each turn of
 * the poll yields the CPU to anything else that can run there: with other
 * calls in flight the CPU belongs to them, the worker and the remote (on
 * two cores, polling without yielding cost two and eight clients a fifth
 * of their throughput; see bench/results/2026-11-27-profile.md).  A caller
 * whose answers are slow (a slow query, or a queue for the pool) stops
 * polling by itself.  Polling checks for interrupts, and the sleep that
 * follows is the usual latch wait.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sched.h>

#include "miscadmin.h"
#include "portability/instr_time.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shm_toc.h"
#include "utils/memutils.h"

#include "netrun_pool.h"
#include "channel.h"

#define TOC_KEY_REQUEST		1
#define TOC_KEY_RESPONSE	2

/* This backend's channel, if any. */
static dsm_segment *my_seg = NULL;
static shm_mq_handle *my_request = NULL;
static shm_mq_handle *my_response = NULL;
static bool exit_callback_registered = false;
static pid_t my_channel_worker = 0;	/* the worker our channel is for */
static Latch *my_worker_latch = NULL;	/* its latch */
static bool my_response_more = false;	/* the last read found a message */
static bool my_first_answer_pending = false;	/* the call's first answer */
static instr_time my_sent_at;	/* when the call's request went */
static uint64 my_last_wait_us = 0;	/* request to first answer, last call */

static ChannelSlot *
my_slot(void)
{
	Assert(MyBackendId != InvalidBackendId && MyBackendId <= MaxBackends);
	return &netrun_shared->channels[MyBackendId - 1];
}

/* Tell the worker to look at our slot and request queue. */
static void
channel_ring_worker(void)
{
	pg_atomic_write_u32(&my_slot()->request_bell, 1);
	/* SetLatch starts with a barrier: the bell is seen before the latch */
	if (my_worker_latch)
		SetLatch(my_worker_latch);
}

static void
channel_clear_slot(void)
{
	ChannelSlot *slot = my_slot();

	SpinLockAcquire(&netrun_shared->mutex);
	slot->pid = 0;
	slot->handle = DSM_HANDLE_INVALID;
	SpinLockRelease(&netrun_shared->mutex);
}

/*
 * Detach, telling the worker (shm_mq sets its latch): it then abandons
 * whatever request of ours it was working on.
 */
void
channel_backend_discard(void)
{
	if (my_seg == NULL)
		return;
	channel_clear_slot();
	channel_ring_worker();
	my_worker_latch = NULL;
	shm_mq_detach(my_request);
	shm_mq_detach(my_response);
	dsm_detach(my_seg);
	my_seg = NULL;
	my_request = NULL;
	my_response = NULL;
}

static void
channel_backend_exit(int code, Datum arg)
{
	channel_backend_discard();
}

static pid_t
channel_worker_pid(void)
{
	pid_t		pid;

	SpinLockAcquire(&netrun_shared->mutex);
	pid = netrun_shared->state == NETRUN_STATE_RUNNING ?
		netrun_shared->worker_pid : 0;
	SpinLockRelease(&netrun_shared->mutex);
	return pid;
}

static void
channel_worker_gone(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("netrun_pool worker is not running"),
			 errhint("See netrun_pool.worker_status() and the server log.")));
}

void
channel_backend_ensure(void)
{
	shm_toc_estimator e;
	Size		size;
	shm_toc    *toc;
	shm_mq	   *request;
	shm_mq	   *response;
	ChannelSlot *slot;
	MemoryContext old;

	netrun_require_shared();
	if (my_seg != NULL)
	{
		/* a restarted worker will not serve the old one's channel */
		if (channel_worker_pid() == my_channel_worker)
			return;
		channel_backend_discard();
	}
	my_channel_worker = channel_worker_pid();
	if (my_channel_worker == 0)
		channel_worker_gone();

	shm_toc_initialize_estimator(&e);
	shm_toc_estimate_chunk(&e, CHANNEL_REQUEST_SIZE);
	shm_toc_estimate_chunk(&e, CHANNEL_RESPONSE_SIZE);
	shm_toc_estimate_keys(&e, 2);
	size = shm_toc_estimate(&e);

	old = MemoryContextSwitchTo(TopMemoryContext);
	my_seg = dsm_create(size, 0);
	/* The channel outlives the transaction: keep it off the resource owner. */
	dsm_pin_mapping(my_seg);
	toc = shm_toc_create(CHANNEL_MAGIC, dsm_segment_address(my_seg), size);
	request = shm_mq_create(shm_toc_allocate(toc, CHANNEL_REQUEST_SIZE),
							CHANNEL_REQUEST_SIZE);
	shm_toc_insert(toc, TOC_KEY_REQUEST, request);
	response = shm_mq_create(shm_toc_allocate(toc, CHANNEL_RESPONSE_SIZE),
							 CHANNEL_RESPONSE_SIZE);
	shm_toc_insert(toc, TOC_KEY_RESPONSE, response);
	shm_mq_set_sender(request, MyProc);
	shm_mq_set_receiver(response, MyProc);
	my_request = shm_mq_attach(request, my_seg, NULL);
	my_response = shm_mq_attach(response, my_seg, NULL);
	MemoryContextSwitchTo(old);

	if (!exit_callback_registered)
	{
		before_shmem_exit(channel_backend_exit, (Datum) 0);
		exit_callback_registered = true;
	}

	slot = my_slot();
	SpinLockAcquire(&netrun_shared->mutex);
	slot->pid = MyProcPid;
	slot->handle = dsm_segment_handle(my_seg);
	slot->generation++;
	slot->worker_pid = my_channel_worker;
	my_worker_latch = netrun_shared->worker_latch;
	SpinLockRelease(&netrun_shared->mutex);
	pg_atomic_write_u32(&slot->response_bell, 0);
	my_response_more = false;
	channel_ring_worker();
}

/* One bounded wait for the worker, interruptible. */
static void
channel_wait(void)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 1000, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (channel_worker_pid() != my_channel_worker)
		channel_worker_gone();
}

/*
 * Send a call's request.  Nothing of an earlier call is left in the
 * response queue (a call ends with its last message, or the channel is
 * discarded), so the response bell starts quiet.
 */
void
channel_backend_send(StringInfo msg)
{
	pg_atomic_write_u32(&my_slot()->response_bell, 0);
	my_response_more = false;
	for (;;)
	{
		shm_mq_result res = shm_mq_send(my_request, msg->len, msg->data,
										true, true);

		if (res == SHM_MQ_DETACHED)
			channel_worker_gone();
		/* rung after every write, whole or partial */
		channel_ring_worker();
		if (res == SHM_MQ_SUCCESS)
		{
			INSTR_TIME_SET_CURRENT(my_sent_at);
			my_first_answer_pending = true;
			return;
		}
		channel_wait();
	}
}

/*
 * Before the first sleep of a call: poll the response bell while the
 * call is younger than netrun_pool.spin_wait_us, if the last call's answer
 * came within it and no other caller is polling.  True if the bell rang.
 * Nothing in here can throw, so the shared slot is always given back; an
 * interrupt ends the polling and the latch wait that follows handles it.
 */
static bool
channel_spin(void)
{
	uint32		none = 0;
	bool		rang = false;
	instr_time	now;

	if (netrun_spin_wait_us <= 0 ||
		my_last_wait_us > (uint64) netrun_spin_wait_us ||
		pg_atomic_read_u32(&netrun_shared->active_calls) > NETRUN_SPIN_MAX_CALLS ||
		!pg_atomic_compare_exchange_u32(&netrun_shared->spinner, &none,
										(uint32) MyProcPid))
		return false;
	for (uint32 i = 0;; i++)
	{
		if (pg_atomic_read_u32(&my_slot()->response_bell) != 0)
		{
			rang = true;
			break;
		}
		if (InterruptPending)
			break;
		if ((i & 7) == 0)
		{
			/* another call came: its work needs the CPU */
			if (pg_atomic_read_u32(&netrun_shared->active_calls) > NETRUN_SPIN_MAX_CALLS)
				break;
			INSTR_TIME_SET_CURRENT(now);
			INSTR_TIME_SUBTRACT(now, my_sent_at);
			if (INSTR_TIME_GET_MICROSEC(now) >= (uint64) netrun_spin_wait_us)
				break;
		}
		/* polite: any other process that can run on this CPU runs first */
		sched_yield();
	}
	pg_atomic_write_u32(&netrun_shared->spinner, 0);
	return rang;
}

/* The data stays valid until the next receive. */
void
channel_backend_receive(Size *len, void **data)
{
	for (;;)
	{
		if (my_response_more ||
			pg_atomic_exchange_u32(&my_slot()->response_bell, 0) != 0)
		{
			shm_mq_result res = shm_mq_receive(my_response, len, data, true);

			if (res == SHM_MQ_SUCCESS)
			{
				my_response_more = true;
				if (my_first_answer_pending)
				{
					instr_time	now;

					INSTR_TIME_SET_CURRENT(now);
					INSTR_TIME_SUBTRACT(now, my_sent_at);
					my_last_wait_us = INSTR_TIME_GET_MICROSEC(now);
					my_first_answer_pending = false;
				}
				return;
			}
			if (res == SHM_MQ_DETACHED)
				channel_worker_gone();
			my_response_more = false;
		}
		if (my_first_answer_pending && channel_spin())
			continue;
		channel_wait();
	}
}

/*
 * Worker side: attach to a backend's new channel.  False if the backend is
 * already gone (its segment no longer exists).
 */
bool
channel_worker_attach(WorkerChannel *ch, int slot, dsm_handle handle,
					  uint32 generation)
{
	shm_toc    *toc;
	shm_mq	   *request;
	shm_mq	   *response;
	MemoryContext old;

	memset(ch, 0, sizeof(*ch));
	ch->slot = slot;
	ch->generation = generation;

	old = MemoryContextSwitchTo(TopMemoryContext);
	ch->seg = dsm_attach(handle);
	if (ch->seg == NULL)
	{
		MemoryContextSwitchTo(old);
		return false;
	}
	dsm_pin_mapping(ch->seg);
	toc = shm_toc_attach(CHANNEL_MAGIC, dsm_segment_address(ch->seg));
	if (toc == NULL)
	{
		dsm_detach(ch->seg);
		ch->seg = NULL;
		MemoryContextSwitchTo(old);
		return false;
	}
	request = shm_toc_lookup(toc, TOC_KEY_REQUEST, false);
	response = shm_toc_lookup(toc, TOC_KEY_RESPONSE, false);
	shm_mq_set_receiver(request, MyProc);
	shm_mq_set_sender(response, MyProc);
	ch->request = shm_mq_attach(request, ch->seg, NULL);
	ch->response = shm_mq_attach(response, ch->seg, NULL);
	/* the backend set itself as the request's sender before registering */
	ch->backend_latch = &shm_mq_get_sender(request)->procLatch;
	ch->attached = true;
	MemoryContextSwitchTo(old);
	return true;
}

/* Did the backend of this slot ring since we last looked?  Clears it. */
bool
channel_worker_take_bell(int slot)
{
	pg_atomic_uint32 *bell = &netrun_shared->channels[slot].request_bell;

	/* the plain read keeps the common case (not rung) free of a locked op */
	return pg_atomic_read_u32(bell) != 0 &&
		pg_atomic_exchange_u32(bell, 0) != 0;
}

/* After a write to the response queue: tell the backend to read it. */
void
channel_worker_ring(WorkerChannel *ch)
{
	pg_atomic_write_u32(&netrun_shared->channels[ch->slot].response_bell, 1);
	SetLatch(ch->backend_latch);
}

void
channel_worker_detach(WorkerChannel *ch)
{
	if (!ch->attached)
		return;
	shm_mq_detach(ch->request);
	shm_mq_detach(ch->response);
	dsm_detach(ch->seg);
	ch->attached = false;
	ch->seg = NULL;
}

void
msg_put_int32(StringInfo buf, int32 v)
{
	appendBinaryStringInfo(buf, (const char *) &v, sizeof(v));
}

int32
msg_get_int32(const char **p)
{
	int32		v;

	memcpy(&v, *p, sizeof(v));
	*p += sizeof(v);
	return v;
}

static void
msg_put_cstring(StringInfo buf, const char *s)
{
	appendStringInfoString(buf, s ? s : "");
	appendStringInfoChar(buf, '\0');
}

void
msg_put_error(StringInfo buf, const char *sqlstate, const char *message,
			  const char *detail, const char *hint, const char *context,
			  int32 position)
{
	char		code[5];

	memset(code, '0', sizeof(code));
	if (sqlstate && strlen(sqlstate) == 5)
		memcpy(code, sqlstate, 5);
	appendStringInfoChar(buf, MSG_ERROR);
	appendBinaryStringInfo(buf, code, 5);
	msg_put_cstring(buf, message);
	msg_put_cstring(buf, detail);
	msg_put_cstring(buf, hint);
	msg_put_cstring(buf, context);
	msg_put_int32(buf, position);
}
