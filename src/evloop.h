/*-------------------------------------------------------------------------
 *
 * evloop.h
 *	  The worker's set of watched sockets, kept up to date one socket at a
 *	  time (evloop.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef NETRUN_EVLOOP_H
#define NETRUN_EVLOOP_H

/* What a watched socket belongs to. */
typedef enum EvKind
{
	EV_CONN,					/* a pool connection (pool.c) */
	EV_PROBE,					/* a pool's health probe; target is the Pool */
	EV_RESOLVER					/* a socket of the name resolver (resolve.c) */
} EvKind;

/*
 * One owner's registration, embedded in its owner.  Zeroed means "not
 * watched".  The owner says what it wants after every change of its
 * state; evloop makes a system call only when that differs from what the
 * set holds.
 */
typedef struct EvWatch
{
	pgsocket	fd;				/* as registered; meaningful when slot != 0 */
	uint32		events;			/* WL_SOCKET_READABLE / WRITEABLE, as registered */
	uint32		slot;			/* 1 + its index in evloop's table; 0: none */
	bool		lazy;			/* wants nothing, but left in the set */
} EvWatch;

/*
 * A socket that fired.  Its owner is looked up when it is handled
 * (evloop_target), not when it fired: handling one event may close the
 * owner of another in the same batch.
 */
typedef struct EvFired
{
	uint64		key;			/* the slot and its generation */
	uint32		events;			/* WL_SOCKET_* that fired */
} EvFired;

extern void evloop_init(void);
extern void evloop_watch(EvWatch *w, EvKind kind, void *target,
						 pgsocket fd, uint32 events, bool recheck);
extern void evloop_forget(EvWatch *w, pgsocket fd_now);
extern bool evloop_matches(const EvWatch *w, pgsocket fd, uint32 events);
extern void *evloop_target(const EvFired *f, EvKind *kind);
extern int	evloop_wait(long timeout_ms, EvFired *fired, int max);
extern int	evloop_poll(EvFired *fired, int max);

#define EVLOOP_MAX_FIRED	64

#endif							/* NETRUN_EVLOOP_H */
