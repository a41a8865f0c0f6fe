/*-------------------------------------------------------------------------
 *
 * evloop.c
 *	  The worker's set of watched sockets: an epoll set of its own, kept up
 *	  to date one socket at a time, and watched in turn by a WaitEventSet
 *	  with the latch and postmaster death.
 *
 * PostgreSQL 15's WaitEventSet cannot drop a socket, so a set that follows
 * connections coming and going had to be rebuilt: a new epoll instance and
 * one registration per socket, on every turn where anything changed.  With
 * many remotes connecting (or failing to), that was every turn.  Here each
 * owner (a pool connection, a health probe, a resolver socket) holds an
 * EvWatch and says what it wants after each change of its state; a system
 * call is made only when that differs from what the set holds.  A turn with
 * nothing to change costs one epoll_wait.
 *
 * The kernel drops a socket from the set when it is closed, and libpq
 * closes and opens sockets while it connects (one per address it tries),
 * so a socket number seen again may be another socket.  While connecting,
 * an owner asks for a recheck: the registration is refreshed, and a number
 * the set no longer knows is added afresh.  A registration is removed by
 * number only while its owner still holds that number; after a close, the
 * number may already be someone else's.
 *
 * An owner that stops wanting anything (a connection back in its pool
 * between two calls) stays in the set, marked lazy: most such owners want
 * the same again at their next call, and then cost no system call at
 * all.  A lazy socket that fires (a remote that closed an idle connection)
 * is removed then, and its event dropped.
 *
 * Events carry a slot and its generation, never a pointer: an owner gone
 * (or replaced) before its event is handled is recognised and skipped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sched.h>
#include <sys/epoll.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#include "evloop.h"

typedef struct EvSlot
{
	void	   *target;			/* NULL: free */
	EvWatch    *watch;			/* the owner's registration */
	uint32		gen;			/* bumped when freed */
	uint8		kind;
	uint32		next_free;		/* 1 + index, 0: end */
} EvSlot;

static int	epfd = -1;
static WaitEventSet *outer = NULL;	/* latch, postmaster death, epfd */
static EvSlot *slots = NULL;
static uint32 nslots = 0;
static uint32 free_head = 0;	/* 1 + index of a free slot, 0: none */
static MemoryContext evloop_context = NULL;

void
evloop_init(void)
{
	if (epfd >= 0)
		return;
	evloop_context = AllocSetContextCreate(TopMemoryContext,
										   "netrun_pool event loop",
										   ALLOCSET_SMALL_SIZES);
	/* both sets' descriptors are the worker's own, outside max_files */
	ReserveExternalFD();
	ReserveExternalFD();
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		elog(ERROR, "netrun_pool worker could not create an epoll set: %m");
	outer = CreateWaitEventSet(evloop_context, 3);
	AddWaitEventToSet(outer, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(outer, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(outer, WL_SOCKET_READABLE, epfd, NULL, NULL);
}

static uint32
slot_take(EvKind kind, void *target, EvWatch *watch)
{
	uint32		i;

	if (free_head == 0)
	{
		uint32		grow = Max(nslots * 2, 64);

		slots = slots == NULL ?
			MemoryContextAllocZero(evloop_context, sizeof(EvSlot) * grow) :
			repalloc(slots, sizeof(EvSlot) * grow);
		memset(slots + nslots, 0, sizeof(EvSlot) * (grow - nslots));
		for (i = nslots; i < grow; i++)
			slots[i].next_free = i + 1 < grow ? i + 2 : 0;
		free_head = nslots + 1;
		nslots = grow;
	}
	i = free_head - 1;
	free_head = slots[i].next_free;
	slots[i].target = target;
	slots[i].watch = watch;
	slots[i].kind = kind;
	slots[i].next_free = 0;
	return i + 1;
}

static void
slot_free(uint32 slot)
{
	EvSlot	   *s = &slots[slot - 1];

	s->target = NULL;
	s->gen++;
	s->next_free = free_head;
	free_head = slot;
}

static int
epoll_ctl_events(int op, pgsocket fd, uint32 events, uint32 slot)
{
	struct epoll_event ev;

	ev.events = ((events & WL_SOCKET_READABLE) ? EPOLLIN : 0) |
		((events & WL_SOCKET_WRITEABLE) ? EPOLLOUT : 0);
	ev.data.u64 = ((uint64) slots[slot - 1].gen << 32) | (slot - 1);
	return epoll_ctl(epfd, op, fd, &ev);
}

/*
 * Remove w's registration.  Only while the owner still holds the socket
 * (fd_now): a closed socket left the set by itself, and its number may be
 * someone else's now.
 */
static void
watch_remove(EvWatch *w, pgsocket fd_now)
{
	if (w->slot != 0 && w->events != 0 && fd_now == w->fd &&
		fd_now != PGINVALID_SOCKET &&
		epoll_ctl(epfd, EPOLL_CTL_DEL, fd_now, NULL) != 0 && errno != ENOENT)
		elog(WARNING, "netrun_pool worker could not stop watching a socket: %m");
	w->fd = fd_now;
	w->events = 0;
	w->lazy = false;
}

/*
 * Watch fd for events on behalf of target (events 0, or no socket: watch
 * nothing).  recheck: the socket may have been replaced under the same
 * number (libpq while connecting).
 */
void
evloop_watch(EvWatch *w, EvKind kind, void *target, pgsocket fd,
			 uint32 events, bool recheck)
{
	bool		registered = w->slot != 0 && w->events != 0;

	events &= WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE;
	if (fd == PGINVALID_SOCKET || events == 0)
	{
		/* the same socket, wanting nothing for now: left in, lazy */
		if (registered && fd == w->fd && fd != PGINVALID_SOCKET && !recheck)
			w->lazy = true;
		else
			watch_remove(w, fd);
		return;
	}
	if (w->slot == 0)
		w->slot = slot_take(kind, target, w);
	Assert(slots[w->slot - 1].target == target);
	w->lazy = false;

	if (registered && fd == w->fd)
	{
		if (events == w->events && !recheck)
			return;
		if (epoll_ctl_events(EPOLL_CTL_MOD, fd, events, w->slot) != 0)
		{
			if (errno != ENOENT ||
				epoll_ctl_events(EPOLL_CTL_ADD, fd, events, w->slot) != 0)
				elog(ERROR, "netrun_pool worker could not watch a socket: %m");
		}
	}
	else if (epoll_ctl_events(EPOLL_CTL_ADD, fd, events, w->slot) != 0)
	{
		if (errno != EEXIST ||
			epoll_ctl_events(EPOLL_CTL_MOD, fd, events, w->slot) != 0)
			elog(ERROR, "netrun_pool worker could not watch a socket: %m");
	}
	w->fd = fd;
	w->events = events;
}

/* Does the set hold exactly this for w?  (For assertions.) */
bool
evloop_matches(const EvWatch *w, pgsocket fd, uint32 events)
{
	events &= WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE;
	if (fd == PGINVALID_SOCKET || events == 0)
		return w->slot == 0 || w->events == 0 || w->lazy;
	return w->slot != 0 && w->fd == fd && w->events == events && !w->lazy;
}

/*
 * The owner goes (before its socket is closed, when it can): stop watching
 * and free its slot, so that an event already fired for it is skipped.
 * fd_now is the socket the owner holds now, if any.
 */
void
evloop_forget(EvWatch *w, pgsocket fd_now)
{
	if (w->slot == 0)
		return;
	watch_remove(w, fd_now);
	slot_free(w->slot);
	memset(w, 0, sizeof(*w));
}

/*
 * The owner of a fired socket, or NULL if it went since, or wants nothing
 * now (a lazy registration: removed here, as the owner still holds the
 * socket that fired).
 */
void *
evloop_target(const EvFired *f, EvKind *kind)
{
	uint32		i = (uint32) (f->key & 0xFFFFFFFF);
	EvSlot	   *s;

	if (i >= nslots)
		return NULL;
	s = &slots[i];
	if (s->target == NULL || s->gen != (uint32) (f->key >> 32))
		return NULL;
	if (s->watch->lazy)
	{
		watch_remove(s->watch, s->watch->fd);
		return NULL;
	}
	*kind = (EvKind) s->kind;
	return s->target;
}

/* What is ready now, without waiting. */
int
evloop_poll(EvFired *fired, int max)
{
	struct epoll_event evs[EVLOOP_MAX_FIRED];
	int			n;

	n = epoll_wait(epfd, evs, Min(max, EVLOOP_MAX_FIRED), 0);
	if (n < 0)
	{
		if (errno != EINTR)
			elog(ERROR, "netrun_pool worker: epoll_wait failed: %m");
		return 0;
	}
	for (int i = 0; i < n; i++)
	{
		uint32		e = evs[i].events;

		fired[i].key = evs[i].data.u64;
		fired[i].events = 0;
		/* an error or hang-up is news for whichever way the owner waits */
		if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
			fired[i].events |= WL_SOCKET_READABLE;
		if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			fired[i].events |= WL_SOCKET_WRITEABLE;
	}
	return n;
}

/*
 * Wait up to timeout_ms (-1: no limit) for a watched socket or the latch.
 * Returns the sockets that fired (0 on the latch or a timeout); the latch
 * is reset when it woke us.
 */
int
evloop_wait(long timeout_ms, EvFired *fired, int max)
{
	WaitEvent	ev[3];
	int			n;

	n = evloop_poll(fired, max);
	if (n > 0 || timeout_ms == 0)
		return n;
	n = WaitEventSetWait(outer, timeout_ms, ev, lengthof(ev), PG_WAIT_EXTENSION);
	for (int i = 0; i < n; i++)
		if (ev[i].events & WL_LATCH_SET)
			ResetLatch(MyLatch);
	return evloop_poll(fired, max);
}
