/*-------------------------------------------------------------------------
 *
 * resolve.c
 *	  Host names of remotes, resolved without blocking the worker (c-ares),
 *	  and kept for their DNS time to live.
 *
 * libpq resolves a host name synchronously inside PQconnectPoll, so one
 * slow DNS server would stop the worker, and every pool with it.  Instead
 * pool_connect_start asks here first: a name already known comes back as
 * addresses, which libpq gets as hostaddr next to host (so TLS
 * verification and .pgpass still see the name); a name not known yet is
 * asked of the DNS with c-ares, whose sockets the worker watches with the
 * others (evloop.c), and the connect waits until the answer comes
 * (pool_names_resolved).  A name with several addresses becomes as many
 * hosts, tried in turn, as libpq tries a name's addresses.
 *
 * An answer is kept for its TTL, within RESOLVE_TTL_FLOOR_S and
 * RESOLVE_TTL_CEILING_S; "no such name" for RESOLVE_NEGATIVE_TTL_S.  A
 * failed connect or probe forgets the pool's names (resolve_forget_hosts),
 * so the next attempt asks again: a name moved to a new primary is
 * followed.  Numeric addresses, socket directories and entries with a
 * hostaddr of their own are left to libpq as they are.
 *
 * Only the worker runs this code.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <ares.h>

#include "lib/stringinfo.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "netrun_pool.h"
#include "resolve.h"

#define RESOLVE_NAME_LEN	256

typedef enum NameState
{
	NAME_ASKING,				/* a query is out */
	NAME_KNOWN,					/* addrs, until expires */
	NAME_FAILED					/* error, until expires */
} NameState;

typedef struct NameEntry
{
	char		name[RESOLVE_NAME_LEN]; /* hash key */
	NameState	state;
	bool		asking;			/* a query is out (also while refreshing) */
	TimestampTz expires;
	int			naddrs;
	char		addrs[RESOLVE_MAX_ADDRS][INET6_ADDRSTRLEN];
	char		error[128];
} NameEntry;

/* One of c-ares's sockets, watched in the worker's set. */
typedef struct ResolverSock
{
	ares_socket_t fd;
	EvWatch		watch;
	struct ResolverSock *next;
} ResolverSock;

static MemoryContext resolve_context = NULL;
static HTAB *names = NULL;
static ares_channel channel;
static bool channel_ready = false;
static int	queries_out = 0;
static ResolverSock *socks = NULL;
static char *servers_applied = NULL;

/* c-ares opened, closed, or changed its interest in a socket. */
static void
sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	ResolverSock **link = &socks;
	ResolverSock *rs;

	while (*link && (*link)->fd != fd)
		link = &(*link)->next;
	rs = *link;
	if (!readable && !writable)
	{
		if (rs)
		{
			*link = rs->next;
			evloop_forget(&rs->watch, fd);
			pfree(rs);
		}
		return;
	}
	if (rs == NULL)
	{
		rs = MemoryContextAllocZero(resolve_context, sizeof(ResolverSock));
		rs->fd = fd;
		rs->next = socks;
		socks = rs;
	}
	/* a number c-ares reuses may be a new socket: always refreshed */
	evloop_watch(&rs->watch, EV_RESOLVER, rs, fd,
				 (readable ? WL_SOCKET_READABLE : 0) |
				 (writable ? WL_SOCKET_WRITEABLE : 0), true);
}

/* A c-ares channel reading /etc/resolv.conf, its sockets in our set. */
static void
channel_open(void)
{
	struct ares_options opts;
	int			r;

	memset(&opts, 0, sizeof(opts));
	opts.sock_state_cb = sock_state_cb;
	r = ares_init_options(&channel, &opts, ARES_OPT_SOCK_STATE_CB);
	if (r != ARES_SUCCESS)
		elog(ERROR, "netrun_pool worker could not start its resolver: %s",
			 ares_strerror(r));
	channel_ready = true;
}

/*
 * netrun_pool.dns_servers changed: a fresh channel (an empty list reads
 * /etc/resolv.conf afresh).  c-ares will not change the servers of a
 * channel with queries out, so the old one is destroyed: its queries end
 * with ARES_EDESTRUCTION and are asked again of the new servers
 * (answer_cb).
 */
static void
resolve_apply_servers(void)
{
	const char *want = netrun_dns_servers ? netrun_dns_servers : "";
	int			r;

	if (servers_applied && strcmp(servers_applied, want) == 0)
		return;
	if (servers_applied != NULL)
	{
		channel_ready = false;
		ares_destroy(channel);
		channel_open();
	}
	if (want[0] != '\0' &&
		(r = ares_set_servers_ports_csv(channel, want)) != ARES_SUCCESS)
		elog(WARNING, "netrun_pool worker could not use netrun_pool.dns_servers: %s",
			 ares_strerror(r));
	if (servers_applied)
		pfree(servers_applied);
	servers_applied = MemoryContextStrdup(resolve_context, want);
}

static void
resolve_init(void)
{
	HASHCTL		ctl;
	int			r;

	if (channel_ready)
		return;
	if (resolve_context == NULL)
	{
		resolve_context = AllocSetContextCreate(TopMemoryContext,
												"netrun_pool resolver",
												ALLOCSET_SMALL_SIZES);
		r = ares_library_init(ARES_LIB_INIT_ALL);
		if (r != ARES_SUCCESS)
			elog(ERROR, "netrun_pool worker could not start c-ares: %s",
				 ares_strerror(r));
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = RESOLVE_NAME_LEN;
		ctl.entrysize = sizeof(NameEntry);
		ctl.hcxt = resolve_context;
		names = hash_create("netrun_pool host names", 64, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	channel_open();
	servers_applied = NULL;
	resolve_apply_servers();
}

/*
 * netrun_pool.dns_servers: addresses, each with an optional port, as
 * c-ares takes them ("10.0.0.2", "10.0.0.3:5353", "[::1]:53", "::1").
 */
bool
resolve_check_servers(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	char	   *save = NULL;

	for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save))
	{
		unsigned char buf[sizeof(struct in6_addr)];
		char	   *shown = pstrdup(item);	/* item is cut up below */
		char	   *addr = item;
		char	   *port = NULL;
		char	   *end;

		while (*addr == ' ')
			addr++;
		if (*addr == '[')
		{
			end = strchr(addr, ']');
			if (end == NULL || (end[1] != '\0' && end[1] != ':'))
				goto bad;
			*end = '\0';
			port = end[1] == ':' ? end + 2 : NULL;
			addr++;
		}
		else if (strchr(addr, ':') == strrchr(addr, ':') && strchr(addr, ':'))
		{
			port = strchr(addr, ':');
			*port++ = '\0';
		}
		if (inet_pton(AF_INET, addr, buf) != 1 && inet_pton(AF_INET6, addr, buf) != 1)
			goto bad;
		if (port)
		{
			long		p = strtol(port, &end, 10);

			if (*port == '\0' || *end != '\0' || p < 1 || p > 65535)
				goto bad;
		}
		continue;
bad:
		GUC_check_errdetail("\"%s\" is not an IP address with an optional port.", shown);
		pfree(copy);
		return false;
	}
	pfree(copy);
	return true;
}

/* SIGHUP: the servers may have changed. */
void
resolve_reload(void)
{
	if (channel_ready)
		resolve_apply_servers();
}

static void
answer_cb(void *arg, int status, int timeouts, struct ares_addrinfo *result)
{
	char	   *name = (char *) arg;
	NameEntry  *e = hash_search(names, name, HASH_FIND, NULL);
	TimestampTz now = GetCurrentTimestamp();
	int			ttl = RESOLVE_TTL_CEILING_S;

	queries_out--;
	if (e == NULL || status == ARES_EDESTRUCTION)
	{
		/* the channel was replaced (resolve_apply_servers): ask again */
		if (e)
			e->asking = false;
		if (result)
			ares_freeaddrinfo(result);
		pfree(name);
		if (e)
			pool_names_resolved();
		return;
	}
	e->asking = false;
	e->naddrs = 0;
	if (status == ARES_SUCCESS && result)
	{
		for (struct ares_addrinfo_node *n = result->nodes;
			 n && e->naddrs < RESOLVE_MAX_ADDRS; n = n->ai_next)
		{
			const void *a;
			bool		dup = false;

			if (n->ai_family == AF_INET)
				a = &((struct sockaddr_in *) n->ai_addr)->sin_addr;
			else if (n->ai_family == AF_INET6)
				a = &((struct sockaddr_in6 *) n->ai_addr)->sin6_addr;
			else
				continue;
			if (inet_ntop(n->ai_family, a, e->addrs[e->naddrs], INET6_ADDRSTRLEN) == NULL)
				continue;
			/* one entry per address, whatever the socket types */
			for (int i = 0; i < e->naddrs && !dup; i++)
				dup = strcmp(e->addrs[i], e->addrs[e->naddrs]) == 0;
			if (dup)
				continue;
			e->naddrs++;
			ttl = Min(ttl, Max(n->ai_ttl, 0));
		}
	}
	if (e->naddrs > 0)
	{
		e->state = NAME_KNOWN;
		e->error[0] = '\0';
		ttl = Max(ttl, RESOLVE_TTL_FLOOR_S);
		e->expires = TimestampTzPlusMilliseconds(now, (int64) ttl * 1000);
	}
	else
	{
		e->state = NAME_FAILED;
		snprintf(e->error, sizeof(e->error), "%s",
				 status == ARES_SUCCESS ? "the name has no address" : ares_strerror(status));
		e->expires = TimestampTzPlusMilliseconds(now, RESOLVE_NEGATIVE_TTL_S * 1000);
	}
	if (result)
		ares_freeaddrinfo(result);
	pfree(name);
	pool_names_resolved();
}

static void
resolve_ask(NameEntry *e)
{
	struct ares_addrinfo_hints hints;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	/* the order the DNS gives; sorting would connect a socket per address */
	hints.ai_flags = ARES_AI_NOSORT;
	e->asking = true;
	queries_out++;
	/* may answer at once (the hosts file), calling answer_cb */
	ares_getaddrinfo(channel, e->name, NULL, &hints, answer_cb,
					 MemoryContextStrdup(resolve_context, e->name));
}

/* A host entry libpq can use as it is: no DNS. */
static bool
host_needs_dns(const char *h)
{
	unsigned char buf[sizeof(struct in6_addr)];

	if (h[0] == '\0' || h[0] == '/' || h[0] == '@')
		return false;
	return inet_pton(AF_INET, h, buf) != 1 && inet_pton(AF_INET6, h, buf) != 1;
}

/* Split a libpq comma list ("" is one empty entry). */
static List *
split_list(const char *s)
{
	List	   *l = NIL;
	const char *p = s ? s : "";

	for (;;)
	{
		const char *c = strchr(p, ',');

		if (c == NULL)
		{
			l = lappend(l, pstrdup(p));
			return l;
		}
		l = lappend(l, pnstrdup(p, c - p));
		p = c + 1;
	}
}

/* One more entry of the three parallel lists (the first without a comma). */
static void
append_entry(StringInfo h, StringInfo a, StringInfo p, int kept,
			 const char *name, const char *addr, const char *port)
{
	if (kept > 0)
	{
		appendStringInfoChar(h, ',');
		appendStringInfoChar(a, ',');
		if (port)
			appendStringInfoChar(p, ',');
	}
	appendStringInfoString(h, name);
	appendStringInfoString(a, addr);
	if (port)
		appendStringInfoString(p, port);
}

/*
 * The hosts of a connection string as libpq should get them: each name
 * replaced by its known addresses (host repeated, hostaddr set, port
 * repeated when there is one per host).  READY with *host_out NULL: use
 * the string as it is.  PENDING: a query is out.  FAILED: no entry is
 * left to try; *error in libpq's words.
 */
ResolveStatus
resolve_hosts(const char *host, const char *hostaddr, const char *port,
			  char **host_out, char **hostaddr_out, char **port_out,
			  char **error)
{
	List	   *hosts,
			   *addrs,
			   *ports;
	StringInfoData h,
				a,
				p;
	bool		changed = false;
	bool		pending = false;
	int			kept = 0;
	ListCell   *lc;
	int			i = 0;
	TimestampTz now = 0;

	*host_out = *hostaddr_out = *port_out = *error = NULL;
	if (host == NULL || host[0] == '\0')
		return RESOLVE_READY;
	hosts = split_list(host);
	addrs = hostaddr && hostaddr[0] ? split_list(hostaddr) : NIL;
	ports = port && port[0] ? split_list(port) : NIL;
	/* lists that do not match are libpq's to refuse */
	if ((addrs != NIL && list_length(addrs) != list_length(hosts)) ||
		(list_length(ports) > 1 && list_length(ports) != list_length(hosts)))
		return RESOLVE_READY;

	resolve_init();
	initStringInfo(&h);
	initStringInfo(&a);
	initStringInfo(&p);
	foreach(lc, hosts)
	{
		const char *name = lfirst(lc);
		const char *addr = addrs ? list_nth(addrs, i) : "";
		const char *prt = list_length(ports) > 1 ? list_nth(ports, i) : NULL;
		NameEntry  *e;
		bool		found;

		i++;
		if (addr[0] != '\0' || !host_needs_dns(name) ||
			strlen(name) >= RESOLVE_NAME_LEN)
		{
			append_entry(&h, &a, &p, kept++, name, addr, prt);
			continue;
		}
		changed = true;
		if (now == 0)
			now = GetCurrentTimestamp();
		e = hash_search(names, name, HASH_ENTER, &found);
		if (!found)
		{
			e->state = NAME_ASKING;
			e->asking = false;
			e->naddrs = 0;
		}
		if (e->state != NAME_ASKING && now >= e->expires)
			e->state = NAME_ASKING;
		if (e->state == NAME_ASKING)
		{
			if (!e->asking)
				resolve_ask(e);
			/* the hosts file answers at once */
			if (e->state == NAME_ASKING)
			{
				pending = true;
				continue;
			}
		}
		if (e->state == NAME_FAILED)
		{
			if (*error == NULL)
				*error = psprintf("could not translate host name \"%s\" to address: %s",
								  name, e->error);
			continue;
		}
		for (int k = 0; k < e->naddrs; k++)
		{
			append_entry(&h, &a, &p, kept++, name, e->addrs[k], prt);
		}
	}
	if (pending)
		return RESOLVE_PENDING;
	if (!changed)
		return RESOLVE_READY;
	if (kept == 0)
		return RESOLVE_FAILED;
	*error = NULL;				/* another entry is left to try */
	*host_out = h.data;
	*hostaddr_out = a.data;
	if (list_length(ports) > 1)
		*port_out = p.data;
	return RESOLVE_READY;
}

/* A connect to these hosts failed: ask the DNS again next time. */
void
resolve_forget_hosts(const char *host)
{
	List	   *hosts;
	ListCell   *lc;

	if (names == NULL || host == NULL)
		return;
	hosts = split_list(host);
	foreach(lc, hosts)
	{
		NameEntry  *e = hash_search(names, lfirst(lc), HASH_FIND, NULL);

		if (e && e->state != NAME_ASKING)
			e->expires = 0;
	}
	list_free_deep(hosts);
}

/* One of the resolver's sockets is ready. */
void
resolve_on_event(void *target, uint32 events)
{
	ResolverSock *rs = (ResolverSock *) target;
	ares_socket_t fd = rs->fd;

	/* may close the socket (sock_state_cb frees rs) and answer queries */
	ares_process_fd(channel,
					(events & WL_SOCKET_READABLE) ? fd : ARES_SOCKET_BAD,
					(events & WL_SOCKET_WRITEABLE) ? fd : ARES_SOCKET_BAD);
}

/*
 * With queries out: let c-ares retry or give up on those past their time,
 * and say when it next needs the worker.
 */
TimestampTz
resolve_next_wake(TimestampTz next)
{
	struct timeval tv;
	TimestampTz at;

	if (queries_out == 0)
		return next;
	ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	if (queries_out == 0 || ares_timeout(channel, NULL, &tv) == NULL)
		return next;
	at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
									 (int64) tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
	return next == 0 || at < next ? at : next;
}
