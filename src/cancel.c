/*-------------------------------------------------------------------------
 *
 * cancel.c
 *	  A query cancel sent to a remote without blocking.
 *
 * libpq 15 can cancel only with PQcancel(), which connects and writes in
 * one blocking call: the worker would stall every caller while a remote
 * is slow to accept.  A cancel is just a 16-byte packet on a connection of
 * its own (protocol: CancelRequest), so the worker sends it itself: a
 * non-blocking socket, a connect that may complete later, one write.  The
 * worker advances a pending cancel at each turn of its loop (pool.c).
 *
 * The backend's pid and key come from libpq's PGcancel, whose layout is
 * libpq's own (libpq-int.h): its head (address, pid, key) is the same from
 * libpq 10 to 17, and is read only when the running libpq is one of
 * those.  With any other libpq, cancel_start() says no, and the caller
 * falls back to closing the connection.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libpq-fe.h"
#include "libpq/pqcomm.h"
#include "port/pg_bswap.h"
#include "storage/fd.h"

#include "cancel.h"

/* The head of libpq's struct pg_cancel (libpq-int.h), libpq 10 to 17. */
typedef struct LibpqCancelHead
{
	SockAddr	raddr;
	int			be_pid;
	int			be_key;
} LibpqCancelHead;

static void
put_uint32(char *p, uint32 v)
{
	v = pg_hton32(v);
	memcpy(p, &v, 4);
}

/*
 * Start cancelling what the remote session of conn runs.  False when it
 * cannot be tried (a libpq of another layout, no socket): nothing to undo.
 */
bool
cancel_start(PGconn *conn, RemoteCancel *c)
{
	PGcancel   *pc;
	LibpqCancelHead head;
	int			flags;

	c->sock = -1;
	c->connected = false;
	if (PQlibVersion() < 100000 || PQlibVersion() >= 180000)
		return false;
	pc = PQgetCancel(conn);
	if (pc == NULL)
		return false;
	memcpy(&head, pc, sizeof(head));
	PQfreeCancel(pc);
	if (head.raddr.salen <= 0 || head.raddr.salen > sizeof(head.raddr.addr))
		return false;

	put_uint32(c->packet, 16);
	put_uint32(c->packet + 4, CANCEL_REQUEST_CODE);
	put_uint32(c->packet + 8, (uint32) head.be_pid);
	put_uint32(c->packet + 12, (uint32) head.be_key);

	/* a descriptor within the server's budget, as libpq's are (pool.c) */
	if (!AcquireExternalFD())
		return false;
	c->sock = socket(head.raddr.addr.ss_family, SOCK_STREAM, 0);
	if (c->sock < 0)
	{
		ReleaseExternalFD();
		return false;
	}
	flags = fcntl(c->sock, F_GETFL);
	if (flags < 0 || fcntl(c->sock, F_SETFL, flags | O_NONBLOCK) < 0 ||
		fcntl(c->sock, F_SETFD, FD_CLOEXEC) < 0)
	{
		cancel_close(c);
		return false;
	}
	if (connect(c->sock, (struct sockaddr *) &head.raddr.addr, head.raddr.salen) == 0)
		c->connected = true;
	else if (errno != EINPROGRESS && errno != EINTR && errno != EAGAIN)
	{
		cancel_close(c);
		return false;
	}
	return true;
}

/*
 * Go on with a pending cancel: 1 when the packet is sent (the socket is
 * closed then), 0 when the connect is still under way, -1 when it failed.
 * Never waits.
 */
int
cancel_advance(RemoteCancel *c)
{
	ssize_t		n;

	if (c->sock < 0)
		return -1;
	if (!c->connected)
	{
		struct pollfd pfd = {.fd = c->sock,.events = POLLOUT};
		int			err = 0;
		socklen_t	len = sizeof(err);

		/* a connect under way: done when the socket turns writable */
		if (poll(&pfd, 1, 0) == 0)
			return 0;
		if (getsockopt(c->sock, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0)
		{
			cancel_close(c);
			return -1;
		}
		c->connected = true;
	}
	n = send(c->sock, c->packet, sizeof(c->packet), MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	cancel_close(c);
	return n == (ssize_t) sizeof(c->packet) ? 1 : -1;
}

void
cancel_close(RemoteCancel *c)
{
	if (c->sock >= 0)
	{
		close(c->sock);
		ReleaseExternalFD();
	}
	c->sock = -1;
}
