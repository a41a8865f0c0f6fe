/*-------------------------------------------------------------------------
 *
 * cancel.h
 *	  A query cancel sent to a remote without blocking (cancel.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef NETRUN_CANCEL_H
#define NETRUN_CANCEL_H

#include "libpq-fe.h"

typedef struct RemoteCancel
{
	int			sock;			/* -1: none pending */
	bool		connected;
	char		packet[16];		/* CancelRequest: length, code, pid, key */
} RemoteCancel;

extern bool cancel_start(PGconn *conn, RemoteCancel *c);
extern int	cancel_advance(RemoteCancel *c);
extern void cancel_close(RemoteCancel *c);

#endif							/* NETRUN_CANCEL_H */
