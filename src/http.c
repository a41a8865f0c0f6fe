/*-------------------------------------------------------------------------
 *
 * http.c
 *	  The HTTP endpoint: GET /metrics for Prometheus, /ready and /alive for
 *	  Kubernetes probes, served by the launcher (netrun_pool.http_listen).
 *
 * Owns the libmicrohttpd daemon, its routes and status codes, the client
 * allow list (netrun_pool.http_allow), the bearer token
 * (netrun_pool.http_token_file), and the parsing of those settings.  The
 * texts it serves are rendered by views.c's views_* functions, the very
 * ones behind prometheus() and health_check(), from shared memory alone.
 *
 * Why the launcher: it holds no database connection and no pooled call
 * ever waits for it, so a slow scraper or a flood of connections costs a
 * pooled call nothing but CPU.  The worker and the backends never see
 * HTTP.  What it must not do:
 *
 * - run a thread: libmicrohttpd runs without one (MHD_USE_EPOLL and no
 *   internal polling thread).  Its epoll descriptor joins the launcher's
 *   WaitEventSet, its timeout bounds the launcher's wait, and MHD_run()
 *   does the work in the launcher's own loop, which checks for interrupts
 *   on every turn;
 * - block: every socket is non-blocking, an idle client is cut off after
 *   HTTP_TIMEOUT_S, and connections are capped per client address and in
 *   all;
 * - touch the catalog, run SQL or wait on a lock longer than the copy of
 *   the slots (views_collect());
 * - show a secret: nothing it renders holds one, and the token is kept as
 *   its SHA-256 only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "http.h"
#include "netrun_pool.h"
#include "views.h"

/* An idle client is cut off after this long (libmicrohttpd counts seconds). */
#define HTTP_TIMEOUT_S			5
/* Connections at once, in all and from one client address. */
#define HTTP_CONNECTION_LIMIT	32
#define HTTP_PER_IP_LIMIT		8

#define HTTP_CT_TEXT			"text/plain; charset=utf-8"
#define HTTP_CT_JSON			"application/json"
#define HTTP_CT_PROMETHEUS		"text/plain; version=0.0.4"

/* The settings (guc.c defines them; this file parses and uses them). */
char	   *netrun_http_listen = NULL;
char	   *netrun_http_allow = NULL;
char	   *netrun_http_token_file = NULL;

/* One entry of netrun_pool.http_allow: a network in CIDR form. */
typedef struct HttpCidr
{
	int			family;			/* AF_INET or AF_INET6 */
	int			bits;
	uint8		addr[16];		/* network byte order, host bits zero */
} HttpCidr;

typedef struct HttpAllowList
{
	int			n;
	HttpCidr	cidrs[FLEXIBLE_ARRAY_MEMBER];
} HttpAllowList;

/* The parsed netrun_pool.http_allow (the GUC's "extra"), in every process. */
static HttpAllowList *http_allow_list = NULL;

/* The launcher's daemon, and the memory one request may use. */
static struct MHD_Daemon *http_daemon = NULL;
static MemoryContext http_context = NULL;

/* libmicrohttpd's last message, for the detail of a failed start. */
static char http_mhd_message[256];

/*
 * The bearer token: required when netrun_pool.http_token_file is set, and
 * then valid only once the file was read (a file that cannot be read lets
 * nobody in).  Only its SHA-256 is kept.
 */
static bool http_token_required = false;
static bool http_token_loaded = false;
static uint8 http_token_digest[32];

/* What a request gets back. */
typedef struct HttpReply
{
	unsigned int status;
	const char *content_type;
	const char *allow;			/* the Allow header of a 405 */
	const char *authenticate;	/* the WWW-Authenticate header of a 401 */
	StringInfoData body;
} HttpReply;

/* The query parameters of a request. */
typedef struct HttpParams
{
	const char *name;
	const char *cluster;
	bool		bad;			/* unknown, repeated or empty */
} HttpParams;

/* ---------------------------------------------------------------------
 * The settings
 * ---------------------------------------------------------------------
 */

/*
 * "host:port" with an IP address for host ("[...]" around IPv6), into
 * *addr; false if it is not one.
 */
static bool
http_parse_listen(const char *value, struct sockaddr_storage *addr)
{
	char		host[INET6_ADDRSTRLEN + 1];
	const char *port_text;
	size_t		host_len;
	long		port;
	char	   *end;

	if (value[0] == '[')
	{
		const char *close = strchr(value, ']');

		if (close == NULL || close[1] != ':')
			return false;
		host_len = close - value - 1;
		value++;
		port_text = close + 2;
	}
	else
	{
		const char *colon = strrchr(value, ':');

		if (colon == NULL)
			return false;
		host_len = colon - value;
		port_text = colon + 1;
	}
	if (host_len == 0 || host_len >= sizeof(host))
		return false;
	memcpy(host, value, host_len);
	host[host_len] = '\0';

	errno = 0;
	port = strtol(port_text, &end, 10);
	if (errno != 0 || end == port_text || *end != '\0' || port < 1 || port > 65535)
		return false;

	memset(addr, 0, sizeof(*addr));
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *) addr)->sin_addr) == 1)
	{
		struct sockaddr_in *sin = (struct sockaddr_in *) addr;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16) port);
		return true;
	}
	if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *) addr)->sin6_addr) == 1)
	{
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) addr;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16) port);
		return true;
	}
	return false;
}

bool
http_listen_check_hook(char **newval, void **extra, GucSource source)
{
	struct sockaddr_storage addr;

	if (*newval == NULL || (*newval)[0] == '\0' || http_parse_listen(*newval, &addr))
		return true;
	GUC_check_errdetail("It must be an IP address and a port, such as 127.0.0.1:9187 or [::1]:9187, or empty.");
	return false;
}

/* One "address[/bits]" into *cidr; false if it is not one. */
static bool
http_parse_cidr(char *text, HttpCidr *cidr)
{
	char	   *slash = strchr(text, '/');
	int			max_bits;

	memset(cidr, 0, sizeof(*cidr));
	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, text, cidr->addr) == 1)
	{
		cidr->family = AF_INET;
		max_bits = 32;
	}
	else if (inet_pton(AF_INET6, text, cidr->addr) == 1)
	{
		cidr->family = AF_INET6;
		max_bits = 128;
	}
	else
		return false;

	cidr->bits = max_bits;
	if (slash)
	{
		char	   *end;
		long		bits;

		errno = 0;
		bits = strtol(slash + 1, &end, 10);
		if (errno != 0 || end == slash + 1 || *end != '\0' || bits < 0 || bits > max_bits)
			return false;
		cidr->bits = (int) bits;
	}

	/* host bits set (127.0.0.1/8) mean the network they are in */
	for (int i = 0; i < max_bits / 8; i++)
	{
		int			keep = Min(Max(cidr->bits - i * 8, 0), 8);

		cidr->addr[i] &= (uint8) (0xFF << (8 - keep));
	}
	return true;
}

/*
 * netrun_pool.http_allow: addresses and CIDR blocks separated by commas or
 * spaces.  The parsed list is the setting's "extra", which PostgreSQL 15
 * frees with free(): hence malloc, the one place this file uses it.
 */
bool
http_allow_check_hook(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval ? *newval : "");
	int			max_entries = strlen(copy) / 2 + 1;
	HttpAllowList *list;
	char	   *token;
	char	   *saveptr = NULL;

	list = malloc(offsetof(HttpAllowList, cidrs) + sizeof(HttpCidr) * max_entries);
	if (list == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		pfree(copy);
		return false;
	}
	list->n = 0;
	for (token = strtok_r(copy, ", \t\n", &saveptr); token != NULL;
		 token = strtok_r(NULL, ", \t\n", &saveptr))
	{
		char	   *shown = pstrdup(token);

		if (!http_parse_cidr(token, &list->cidrs[list->n]))
		{
			GUC_check_errdetail("\"%s\" is not an IP address or a CIDR block such as 127.0.0.0/8 or ::1/128.",
								netrun_message_value(shown));
			free(list);
			pfree(copy);
			return false;
		}
		pfree(shown);
		list->n++;
	}
	pfree(copy);
	*extra = list;
	return true;
}

void
http_allow_assign_hook(const char *newval, void *extra)
{
	http_allow_list = (HttpAllowList *) extra;
}

static bool
http_cidr_contains(const HttpCidr *cidr, const uint8 *addr)
{
	int			full = cidr->bits / 8;
	int			rest = cidr->bits % 8;

	if (memcmp(cidr->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((addr[full] ^ cidr->addr[full]) & (uint8) (0xFF << (8 - rest))) == 0;
}

/* The accept policy: is the client's address in netrun_pool.http_allow? */
static enum MHD_Result
http_accept_policy(void *cls, const struct sockaddr *sa, socklen_t salen)
{
	uint8		addr[16];
	int			family;

	if (sa->sa_family == AF_INET)
	{
		family = AF_INET;
		memcpy(addr, &((const struct sockaddr_in *) sa)->sin_addr, 4);
	}
	else if (sa->sa_family == AF_INET6)
	{
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *) sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6))
		{
			family = AF_INET;
			memcpy(addr, &a6->s6_addr[12], 4);
		}
		else
		{
			family = AF_INET6;
			memcpy(addr, a6->s6_addr, 16);
		}
	}
	else
		return MHD_NO;

	if (http_allow_list != NULL)
		for (int i = 0; i < http_allow_list->n; i++)
			if (http_allow_list->cidrs[i].family == family &&
				http_cidr_contains(&http_allow_list->cidrs[i], addr))
				return MHD_YES;
	return MHD_NO;
}

/* ---------------------------------------------------------------------
 * The bearer token
 * ---------------------------------------------------------------------
 */

static bool
http_sha256(const char *data, size_t len, uint8 *digest)
{
	unsigned int digest_len = 0;

	return EVP_Digest(data, len, digest, &digest_len, EVP_sha256(), NULL) == 1 &&
		digest_len == 32;
}

/*
 * Read netrun_pool.http_token_file under the rules of every key file
 * (netrun_read_key_file: mode 600, 32 to 4095 bytes), trailing whitespace
 * dropped.  The launcher must not die of a bad file: the error becomes a
 * WARNING, and nobody gets in until a reload reads a good one.
 */
static void
http_load_token(void)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	char		buf[NETRUN_KEY_FILE_MAX];

	http_token_required = netrun_http_token_file != NULL &&
		netrun_http_token_file[0] != '\0';
	http_token_loaded = false;
	explicit_bzero(http_token_digest, sizeof(http_token_digest));
	if (!http_token_required)
		return;

	PG_TRY();
	{
		int			len = netrun_read_key_file(netrun_http_token_file,
											   "HTTP token file", buf);

		while (len > 0 && isspace((unsigned char) buf[len - 1]))
			len--;
		http_token_loaded = http_sha256(buf, len, http_token_digest);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		/* what an aborted transaction would close: the file, if still open */
		AtEOXact_Files(false);
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("netrun_pool HTTP endpoint refuses every request: its token file is unusable"),
				 errdetail("%s", edata->message),
				 edata->hint ? errhint("%s", edata->hint) : 0));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	explicit_bzero(buf, sizeof(buf));
}

/* Does the request carry "Authorization: Bearer <the token>"? */
static bool
http_authorized(struct MHD_Connection *conn)
{
	const char *header;
	const char *token;
	size_t		len;
	uint8		digest[32];
	bool		ok;

	if (!http_token_required)
		return true;
	if (!http_token_loaded)
		return false;
	header = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
										 MHD_HTTP_HEADER_AUTHORIZATION);
	if (header == NULL || pg_strncasecmp(header, "Bearer ", 7) != 0)
		return false;
	token = header + 7;
	while (*token == ' ')
		token++;
	len = strlen(token);
	while (len > 0 && token[len - 1] == ' ')
		len--;
	ok = len > 0 && http_sha256(token, len, digest) &&
		CRYPTO_memcmp(digest, http_token_digest, sizeof(digest)) == 0;
	explicit_bzero(digest, sizeof(digest));
	return ok;
}

/* ---------------------------------------------------------------------
 * The routes
 * ---------------------------------------------------------------------
 */

static void
http_reply_text(HttpReply *reply, unsigned int status, const char *text)
{
	reply->status = status;
	reply->content_type = HTTP_CT_TEXT;
	resetStringInfo(&reply->body);
	appendStringInfoString(&reply->body, text);
}

static enum MHD_Result
http_collect_param(void *cls, enum MHD_ValueKind kind, const char *key,
				   const char *value)
{
	HttpParams *params = (HttpParams *) cls;
	const char **slot = NULL;

	if (strcmp(key, "name") == 0)
		slot = &params->name;
	else if (strcmp(key, "cluster") == 0)
		slot = &params->cluster;
	if (slot == NULL || *slot != NULL || value == NULL || value[0] == '\0')
		params->bad = true;
	else
		*slot = value;
	return MHD_YES;
}

/* health_check()'s JSON as the SQL function returns it (jsonb's text). */
static void
http_ready(HttpReply *reply, const HttpParams *params)
{
	ViewRow    *rows;
	int			n;
	ViewsReadyScope scope;
	StringInfoData json;
	Datum		jsonb;

	if (params->name)
	{
		rows = views_collect(params->name, VIEWS_MATCH_NAME, &n);
		scope = VIEWS_READY_EVERY;
	}
	else if (params->cluster)
	{
		rows = views_collect(params->cluster, VIEWS_MATCH_CLUSTER, &n);
		scope = VIEWS_READY_CLUSTER_MEMBERS;
	}
	else
	{
		rows = views_collect(NULL, VIEWS_MATCH_ALL, &n);
		scope = VIEWS_READY_ENABLED;
	}
	if (n == 0 && (params->name || params->cluster))
	{
		http_reply_text(reply, MHD_HTTP_NOT_FOUND,
						params->name ? "no such netrun_pool connection\n" :
						"no such netrun_pool cluster\n");
		return;
	}

	initStringInfo(&json);
	views_render_health_check(&json, rows, n, params->name != NULL);
	jsonb = DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));

	reply->status = views_ready(rows, n, scope) ? MHD_HTTP_OK :
		MHD_HTTP_SERVICE_UNAVAILABLE;
	reply->content_type = HTTP_CT_JSON;
	appendStringInfoString(&reply->body,
						   DatumGetCString(DirectFunctionCall1(jsonb_out, jsonb)));
	appendStringInfoChar(&reply->body, '\n');
}

/*
 * The answer to one request, decided in this order: the token (401), the
 * path (404), the method (405), the parameters (400), then the endpoint.
 */
static void
http_route(struct MHD_Connection *conn, const char *url, const char *method,
		   HttpReply *reply)
{
	HttpParams	params = {0};

	if (!http_authorized(conn))
	{
		http_reply_text(reply, MHD_HTTP_UNAUTHORIZED, "a valid bearer token is required\n");
		reply->authenticate = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
														  MHD_HTTP_HEADER_AUTHORIZATION) ?
			"Bearer realm=\"netrun_pool\", error=\"invalid_token\"" :
			"Bearer realm=\"netrun_pool\"";
		return;
	}
	if (strcmp(url, "/metrics") != 0 && strcmp(url, "/ready") != 0 &&
		strcmp(url, "/alive") != 0)
	{
		http_reply_text(reply, MHD_HTTP_NOT_FOUND, "not found: the endpoints are /metrics, /ready and /alive\n");
		return;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
		strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
	{
		http_reply_text(reply, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: use GET or HEAD\n");
		reply->allow = "GET, HEAD";
		return;
	}
	(void) MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND,
									 http_collect_param, &params);
	if (params.bad || (params.name && params.cluster) ||
		((params.name || params.cluster) && strcmp(url, "/ready") != 0))
	{
		http_reply_text(reply, MHD_HTTP_BAD_REQUEST,
						"bad request: only /ready takes a parameter, name=N or cluster=C, once\n");
		return;
	}

	if (strcmp(url, "/metrics") == 0)
	{
		ViewRow    *rows;
		int			n;

		rows = views_collect(NULL, VIEWS_MATCH_ALL, &n);
		reply->status = MHD_HTTP_OK;
		reply->content_type = HTTP_CT_PROMETHEUS;
		views_render_prometheus(&reply->body, rows, n);
	}
	else if (strcmp(url, "/alive") == 0)
	{
		bool		alive = views_worker_running();

		reply->status = alive ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
		reply->content_type = HTTP_CT_JSON;
		appendStringInfoString(&reply->body, alive ? "{\"alive\": true}\n" :
							   "{\"alive\": false}\n");
	}
	else
		http_ready(reply, &params);
}

static enum MHD_Result
http_send(struct MHD_Connection *conn, HttpReply *reply)
{
	struct MHD_Response *response;
	enum MHD_Result result;

	response = MHD_create_response_from_buffer(reply->body.len, reply->body.data,
											   MHD_RESPMEM_MUST_COPY);
	if (response == NULL)
		return MHD_NO;
	(void) MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
								   reply->content_type);
	(void) MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL,
								   "no-store");
	if (reply->allow)
		(void) MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW,
									   reply->allow);
	if (reply->authenticate)
		(void) MHD_add_response_header(response, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
									   reply->authenticate);
	result = MHD_queue_response(conn, reply->status, response);
	MHD_destroy_response(response);
	return result;
}

/*
 * libmicrohttpd calls this once the request's headers are in, then for each
 * piece of a body, then once more at its end.  The answer comes at the end
 * (answering earlier would close the connection, and a keep-alive client
 * such as Prometheus would pay a connect per scrape); a body is dropped.
 * An error must not unwind through libmicrohttpd's frames, nor end the
 * launcher: it is logged and answered with 500.
 */
static enum MHD_Result
http_answer(void *cls, struct MHD_Connection *conn, const char *url,
			const char *method, const char *version, const char *upload_data,
			size_t *upload_data_size, void **req_cls)
{
	static int	headers_seen;
	MemoryContext oldcontext;
	HttpReply	reply = {0};
	enum MHD_Result result;

	if (*req_cls == NULL)
	{
		*req_cls = &headers_seen;
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		*upload_data_size = 0;
		return MHD_YES;
	}

	oldcontext = MemoryContextSwitchTo(http_context);
	initStringInfo(&reply.body);
	PG_TRY();
	{
		http_route(conn, url, method, &reply);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(http_context);
		EmitErrorReport();
		FlushErrorState();
		memset(&reply, 0, sizeof(reply));
		initStringInfo(&reply.body);
		http_reply_text(&reply, MHD_HTTP_INTERNAL_SERVER_ERROR,
						"internal error: see the server log\n");
	}
	PG_END_TRY();

	result = http_send(conn, &reply);
	MemoryContextSwitchTo(oldcontext);
	MemoryContextReset(http_context);
	return result;
}

/* libmicrohttpd's messages: kept for a failed start, else DEBUG1. */
static void
http_mhd_log(void *cls, const char *fmt, va_list ap)
{
	size_t		len;

	vsnprintf(http_mhd_message, sizeof(http_mhd_message), fmt, ap);
	len = strlen(http_mhd_message);
	while (len > 0 && http_mhd_message[len - 1] == '\n')
		http_mhd_message[--len] = '\0';
	if (http_daemon != NULL)
		elog(DEBUG1, "netrun_pool HTTP endpoint: %s", http_mhd_message);
}

/* ---------------------------------------------------------------------
 * The launcher's side
 * ---------------------------------------------------------------------
 */

static void
http_stop(int code, Datum arg)
{
	if (http_daemon != NULL)
		MHD_stop_daemon(http_daemon);
	http_daemon = NULL;
}

/*
 * Start listening on netrun_pool.http_listen, if set.  A failure (the
 * address is taken, or not this machine's) is a WARNING: the launcher goes
 * on without the endpoint.
 */
void
http_start(void)
{
	struct sockaddr_storage addr;
	unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;

	if (netrun_http_listen == NULL || netrun_http_listen[0] == '\0')
		return;
	if (!http_parse_listen(netrun_http_listen, &addr))
		elog(ERROR, "invalid netrun_pool.http_listen \"%s\"", netrun_http_listen);
	if (addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;

	http_context = AllocSetContextCreate(TopMemoryContext, "netrun_pool http",
										 ALLOCSET_DEFAULT_SIZES);
	http_load_token();

	http_mhd_message[0] = '\0';
	errno = 0;
	http_daemon = MHD_start_daemon(flags, 0,
								   http_accept_policy, NULL,
								   http_answer, NULL,
								   MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
								   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) HTTP_TIMEOUT_S,
								   MHD_OPTION_CONNECTION_LIMIT, (unsigned int) HTTP_CONNECTION_LIMIT,
								   MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int) HTTP_PER_IP_LIMIT,
								   /* malformed requests get 400: a Host header is required in HTTP/1.1, ... */
								   MHD_OPTION_STRICT_FOR_CLIENT, (int) 1,
								   MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, NULL,
								   MHD_OPTION_END);
	if (http_daemon == NULL)
	{
		ereport(WARNING,
				(errmsg("could not start the netrun_pool HTTP endpoint on \"%s\"",
						netrun_http_listen),
				 errdetail("%s", http_mhd_message[0] ? http_mhd_message :
						   "libmicrohttpd could not start."),
				 errhint("Check that no other process listens there and that the address is this machine's, then restart the server; the pool runs without the endpoint meanwhile.")));
		return;
	}
	on_proc_exit(http_stop, (Datum) 0);
	ereport(LOG,
			(errmsg("netrun_pool HTTP endpoint listening on \"%s\"",
					netrun_http_listen)));
}

/* The descriptor to wait on (libmicrohttpd's epoll set), or -1. */
int
http_socket(void)
{
	const union MHD_DaemonInfo *info;

	if (http_daemon == NULL)
		return -1;
	info = MHD_get_daemon_info(http_daemon, MHD_DAEMON_INFO_EPOLL_FD);
	return info ? info->epoll_fd : -1;
}

/* How long the launcher may wait before http_serve() is due; -1: no limit. */
long
http_timeout_ms(void)
{
	MHD_UNSIGNED_LONG_LONG timeout;

	if (http_daemon == NULL || MHD_get_timeout(http_daemon, &timeout) != MHD_YES)
		return -1;
	return (long) Min(timeout, (MHD_UNSIGNED_LONG_LONG) INT_MAX);
}

static unsigned int
http_connections(void)
{
	const union MHD_DaemonInfo *info;

	info = MHD_get_daemon_info(http_daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	return info ? info->num_connections : 0;
}

/*
 * Everything that is ready: accepts, reads, answers, timeouts.  No waits.
 *
 * At its connection limit libmicrohttpd takes its listening socket out of
 * its epoll set, and puts it back only at the start of a run.  A run that
 * frees a slot is therefore followed by another at once: otherwise a
 * client already waiting to be accepted would wait for some unrelated
 * event, forever if no connection is left (MHD_get_timeout() then sets no
 * deadline).
 */
void
http_serve(void)
{
	unsigned int before;

	if (http_daemon == NULL)
		return;
	before = http_connections();
	(void) MHD_run(http_daemon);
	if (http_connections() < before)
		(void) MHD_run(http_daemon);
}

/* After SIGHUP: the allow list is already the new one; read the token again. */
void
http_reload(void)
{
	if (http_daemon != NULL)
		http_load_token();
}
