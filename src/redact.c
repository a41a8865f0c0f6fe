/*-------------------------------------------------------------------------
 *
 * redact.c
 *	  Keeping passwords and tenant tokens out of the server log,
 *	  pg_stat_statements and pg_stat_activity.
 *
 * Owns the rules that find a secret in SQL or log text
 * (netrun_redact_secrets) and the hooks that apply them:
 *
 * - emit_log_hook: every message the server logs has its secrets blanked
 *   (statement lines, auto_explain's plans, DETAIL, CONTEXT, QUERY and
 *   HINT alike); the logged parameters of a registry or token call are
 *   blanked whatever they look like; and the STATEMENT line is left out
 *   while a registry change or a token is in play, or when the statement
 *   holds a secret.
 * - post_parse_analyze_hook: a statement that holds a secret gets query
 *   id 0, which pg_stat_statements takes as "not tracked", so its text is
 *   never stored (DO blocks and EXPLAIN are otherwise kept verbatim).  It
 *   works in any order of shared_preload_libraries: pg_stat_statements
 *   stores a text only after calling the hook it chained to, and we clear
 *   the id before calling ours.  A client's statement that holds a secret
 *   also replaces its text in pg_stat_activity, as soon as it is parsed.
 *
 * The rules err towards blanking more than the secret, never less: a URI's
 * userinfo runs to the last '@' of its line, since a password may hold
 * '?', ',', ')', '&', '\'' or even '@'.  They must stay cheap for text
 * that holds no secret: one pass looking for four markers.
 *
 * Also owns netrun_message_value(), which clips a caller's value before a
 * message quotes it, so that a 1 MB name is not echoed back in full.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "parser/analyze.h"
#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/elog.h"
#include "utils/guc.h"

#include "netrun_pool.h"

#define REDACTED	"***"

static emit_log_hook_type prev_emit_log_hook = NULL;
static post_parse_analyze_hook_type prev_post_parse_analyze_hook = NULL;

/*
 * Set by registry.c while a registry function runs, and by
 * netrun_hide_current_statement(); cleared at transaction end.
 */
bool		netrun_hide_statement = false;

static bool xact_callback_registered = false;

/* ---------------------------------------------------------------------
 * The rules
 * ---------------------------------------------------------------------
 */

static inline bool
is_ascii_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9');
}

static inline bool
is_base64url(char c)
{
	return is_ascii_alnum(c) || c == '-' || c == '_';
}

static inline bool
is_ident_char(char c)
{
	return is_ascii_alnum(c) || c == '_';
}

static const char *
skip_space(const char *p)
{
	while (isspace((unsigned char) *p))
		p++;
	return p;
}

/*
 * Whether text (up to end, or to its NUL if end is NULL) has one of the
 * markers the rules start from: "://", "eyJ", "password",
 * "set_tenant_token".  One pass, no allocation.
 */
static bool
might_hold_secret(const char *p, const char *end)
{
	for (; end ? p < end : *p != '\0'; p++)
	{
		switch (*p)
		{
			case ':':
				if (p[1] == '/' && p[2] == '/')
					return true;
				break;
			case 'e':
				if (p[1] == 'y' && p[2] == 'J')
					return true;
				break;
			case 'p':
			case 'P':
				if (pg_strncasecmp(p, "password", 8) == 0)
					return true;
				break;
			case 's':
			case 'S':
				if (pg_strncasecmp(p, "set_tenant_token", 16) == 0)
					return true;
				break;
		}
	}
	return false;
}

/*
 * The end of a libpq value starting at p: quoted inside a SQL literal
 * (''...'', backslash escapes as \''), quoted ('...', backslash escapes),
 * or bare.  A bare value runs to white space, or to a quote that closes
 * the literal around it: one that is neither doubled nor followed by a
 * letter or digit (so "it''s", and "it's" inside $$...$$, stay whole).
 */
static const char *
conninfo_value_end(const char *p)
{
	if (p[0] == '\'' && p[1] == '\'')
	{
		p += 2;
		while (*p && !(p[0] == '\'' && p[1] == '\''))
		{
			if (p[0] == '\\' && p[1] == '\'' && p[2] == '\'')
				p += 3;
			else
				p += (p[0] == '\\' && p[1]) ? 2 : 1;
		}
		return *p ? p + 2 : p;
	}
	if (*p == '\'')
	{
		p++;
		while (*p && *p != '\'')
			p += (*p == '\\' && p[1]) ? 2 : 1;
		return *p ? p + 1 : p;
	}
	while (*p && !isspace((unsigned char) *p))
	{
		if (*p == '\'')
		{
			if (p[1] == '\'')
			{
				p += 2;
				continue;
			}
			if (!is_ascii_alnum(p[1]))
				break;
		}
		p++;
	}
	return p;
}

/*
 * p points at "password" (any case, also the end of "sslpassword"): the
 * value of a key=value pair, quotes included.  A bind parameter ($1) is
 * no secret.
 */
static bool
password_value(const char *p, const char **start, const char **end)
{
	const char *q = p + 8;

	while (*q == ' ' || *q == '\t')
		q++;
	if (*q != '=')
		return false;
	q++;
	while (*q == ' ' || *q == '\t')
		q++;
	if (q[0] == '$' && isdigit((unsigned char) q[1]))
		return false;
	*start = q;
	*end = conninfo_value_end(q);
	return true;
}

/*
 * p points at "://": the password of a URI's userinfo, from the first ':'
 * after "://" to the last '@' of the line (libpq stops at the first '@',
 * but a password typed with a stray '@' must not show either).  The
 * line's end and its last '@' are kept in *line_end and *line_at across
 * calls, so that a line with many "://" is scanned once.
 */
static bool
uri_password(const char *p, const char **line_end, const char **line_at,
			 const char **start, const char **end)
{
	const char *colon;

	if (*line_end == NULL || p >= *line_end)
	{
		const char *q = p;

		*line_at = NULL;
		while (*q && *q != '\n')
		{
			if (*q == '@')
				*line_at = q;
			q++;
		}
		*line_end = q;
	}
	if (*line_at == NULL || *line_at < p + 3)
		return false;
	colon = memchr(p + 3, ':', *line_at - (p + 3));
	if (colon == NULL)
		return false;
	*start = colon + 1;
	*end = *line_at;
	return true;
}

/*
 * p points at "eyJ" (base64url of '{"', how every JWT header starts): the
 * end of a compact JWS, header.payload.signature, or NULL if it is not one.
 */
static const char *
jwt_end(const char *text, const char *p)
{
	int			dots = 0;

	if (p > text && is_base64url(p[-1]))
		return NULL;
	for (;;)
	{
		while (is_base64url(*p))
			p++;
		if (*p != '.' || dots == 2)
			break;
		dots++;
		p++;
	}
	return dots == 2 ? p : NULL;
}

/*
 * The contents of a SQL string literal starting at p: '...', ''...''
 * (a literal inside another one), E'...' or $tag$...$tag$.  An
 * unterminated literal runs to the end of the text.
 */
static bool
literal_contents(const char *p, const char **start, const char **end)
{
	if ((p[0] == 'E' || p[0] == 'e') && p[1] == '\'')
	{
		p += 2;
		*start = p;
		while (*p && !(*p == '\'' && p[1] != '\''))
			p += ((*p == '\\' || *p == '\'') && p[1]) ? 2 : 1;
		*end = p;
		return true;
	}
	if (p[0] == '\'' && p[1] == '\'')
	{
		if (!is_base64url(p[2]))
			return false;		/* an empty literal */
		p += 2;
		*start = p;
		while (*p && !(p[0] == '\'' && p[1] == '\''))
			p++;
		*end = p;
		return true;
	}
	if (p[0] == '\'')
	{
		p++;
		*start = p;
		while (*p && !(*p == '\'' && p[1] != '\''))
			p += (*p == '\'') ? 2 : 1;
		*end = p;
		return true;
	}
	if (p[0] == '$')
	{
		const char *tag_end = p + 1;
		size_t		taglen;

		while (is_ident_char(*tag_end))
			tag_end++;
		if (*tag_end != '$')
			return false;		/* $1, a bind parameter */
		taglen = tag_end - p + 1;
		*start = tag_end + 1;
		for (p = *start; *p && strncmp(p, *start - taglen, taglen) != 0; p++)
			;
		*end = p;
		return true;
	}
	return false;
}

/*
 * p points at "set_tenant_token" (any case): the literal passed as its
 * token, whatever it looks like.
 */
static bool
token_argument(const char *text, const char *p,
			   const char **start, const char **end)
{
	const char *q = p + 16;

	if (p > text && is_ident_char(p[-1]))
		return false;
	if (*q == '"')
		q++;
	q = skip_space(q);
	if (*q != '(')
		return false;
	q = skip_space(q + 1);
	if (pg_strncasecmp(q, "token", 5) == 0 && !is_ident_char(q[5]))
	{
		const char *r = skip_space(q + 5);

		if ((r[0] == '=' && r[1] == '>') || (r[0] == ':' && r[1] == '='))
			q = skip_space(r + 2);
	}
	return literal_contents(q, start, end);
}

/*
 * A copy of text with every secret replaced by "***", or NULL if there
 * was none.  Secrets are: the value of a libpq password or sslpassword
 * (bare, quoted, or quoted inside a SQL literal); the password of a URI's
 * userinfo; a compact JWT; the literal given to set_tenant_token().
 */
char *
netrun_redact_secrets(const char *text)
{
	StringInfoData buf;
	const char *p = text;
	const char *copied = text;	/* text before this is in buf */
	const char *line_end = NULL;
	const char *line_at = NULL;
	bool		changed = false;

	if (!might_hold_secret(text, NULL))
		return NULL;

	initStringInfo(&buf);
	while (*p)
	{
		const char *start = NULL;
		const char *end = NULL;
		bool		found = false;

		switch (*p)
		{
			case 's':
			case 'S':
				found = pg_strncasecmp(p, "set_tenant_token", 16) == 0 &&
					token_argument(text, p, &start, &end);
				break;
			case 'e':
				if (p[1] == 'y' && p[2] == 'J' &&
					(end = jwt_end(text, p)) != NULL)
				{
					start = p;
					found = true;
				}
				break;
			case 'p':
			case 'P':
				found = pg_strncasecmp(p, "password", 8) == 0 &&
					password_value(p, &start, &end);
				break;
			case ':':
				found = p[1] == '/' && p[2] == '/' &&
					uri_password(p, &line_end, &line_at, &start, &end);
				break;
		}
		if (found && end > start)
		{
			appendBinaryStringInfo(&buf, copied, start - copied);
			appendStringInfoString(&buf, REDACTED);
			copied = p = end;
			changed = true;
			continue;
		}
		p++;
	}

	if (!changed)
	{
		pfree(buf.data);
		return NULL;
	}
	appendStringInfoString(&buf, copied);
	return buf.data;
}

/* Whether the len bytes at text (len <= 0: to its end) hold a secret. */
static bool
holds_secret(const char *text, int len)
{
	char	   *copy;
	char	   *redacted;

	if (!might_hold_secret(text, len > 0 ? text + len : NULL))
		return false;
	copy = len > 0 ? pnstrdup(text, len) : (char *) text;
	redacted = netrun_redact_secrets(copy);
	if (copy != text)
		pfree(copy);
	if (redacted == NULL)
		return false;
	pfree(redacted);
	return true;
}

/* ---------------------------------------------------------------------
 * The log
 * ---------------------------------------------------------------------
 */

/* Messages that quote the statement: log_statement, durations, execute. */
static bool
quotes_statement(const char *message)
{
	return strncmp(message, "statement: ", 11) == 0 ||
		strncmp(message, "execute ", 8) == 0 ||
		strncmp(message, "duration: ", 10) == 0;
}

/* Whether text calls name, as in "name(" or "name  (" (any case). */
static bool
calls_function(const char *text, const char *name)
{
	const char *p = text;

	while ((p = strcasestr(p, name)) != NULL)
	{
		p += strlen(name);
		if (*skip_space(p) == '(')
			return true;
	}
	return false;
}

/*
 * "parameters: $1 = 'a', $2 = NULL" with every quoted value blanked: the
 * bind parameters of a registry or token call are secrets in any form.
 */
static char *
mask_parameter_values(const char *detail)
{
	StringInfoData buf;
	const char *p = detail;

	initStringInfo(&buf);
	while (*p)
	{
		if (*p != '\'')
		{
			appendStringInfoChar(&buf, *p++);
			continue;
		}
		appendStringInfoString(&buf, "'" REDACTED "'");
		p++;
		while (*p && !(*p == '\'' && p[1] != '\''))
			p += (*p == '\'') ? 2 : 1;
		if (*p)
			p++;
	}
	return buf.data;
}

/*
 * Whether a message of this level gets a STATEMENT line (elog.c's
 * is_log_level_output against log_min_error_statement, where LOG ranks
 * between ERROR and FATAL): only then is the statement worth a look.
 */
static bool
gets_statement_line(int elevel)
{
	if (elevel == LOG || elevel == LOG_SERVER_ONLY)
		return log_min_error_statement == LOG || log_min_error_statement <= ERROR;
	if (log_min_error_statement == LOG)
		return elevel >= FATAL;
	return elevel >= log_min_error_statement;
}

static void
redact_field(char **field)
{
	char	   *redacted;

	if (*field != NULL && (redacted = netrun_redact_secrets(*field)) != NULL)
		*field = redacted;
}

static void
redact_emit_log_hook(ErrorData *edata)
{
	/*
	 * Runs in ErrorContext: what we allocate goes with the error.  What we
	 * change here is also what the client is sent.
	 */
	if (netrun_hide_statement)
		edata->hide_stmt = true;
	else if (!edata->hide_stmt && debug_query_string != NULL &&
			 gets_statement_line(edata->elevel) &&
			 holds_secret(debug_query_string, 0))
		edata->hide_stmt = true;

	if (edata->message != NULL && edata->detail != NULL &&
		quotes_statement(edata->message) &&
		strncmp(edata->detail, "parameters: ", 12) == 0 &&
		(calls_function(edata->message, "set_tenant_token") ||
		 calls_function(edata->message, "register") ||
		 calls_function(edata->message, "configure")))
		edata->detail = mask_parameter_values(edata->detail);

	redact_field(&edata->message);
	redact_field(&edata->detail);
	redact_field(&edata->detail_log);
	redact_field(&edata->hint);
	redact_field(&edata->context);
	redact_field(&edata->internalquery);

	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* ---------------------------------------------------------------------
 * pg_stat_statements and pg_stat_activity
 * ---------------------------------------------------------------------
 */

static void
redact_post_parse_analyze(ParseState *pstate, Query *query,
						  JumbleState *jstate)
{
	const char *text = pstate->p_sourcetext;

	if (text != NULL)
	{
		int			location = Max(query->stmt_location, 0);
		bool		whole = location == 0 && query->stmt_len <= 0;
		bool		secret = holds_secret(text + location, query->stmt_len);

		/* before the hook we chained to: pg_stat_statements may be it */
		if (secret)
			query->queryId = UINT64CONST(0);

		/*
		 * A client's statement: once per query string (at its first
		 * statement), look at the whole string, which pg_stat_activity
		 * shows until the last statement ends.
		 */
		if (text == debug_query_string && location == 0 &&
			(whole ? secret : holds_secret(text, 0)))
			pgstat_report_activity(STATE_RUNNING,
								   NETRUN_HIDDEN_SECRET_STATEMENT);
	}

	if (prev_post_parse_analyze_hook)
		prev_post_parse_analyze_hook(pstate, query, jstate);
}

static void
redact_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			netrun_hide_statement = false;
			break;
		default:
			break;
	}
}

/*
 * The current statement holds a secret: show placeholder instead of it in
 * pg_stat_activity, and leave it out of STATEMENT lines until the
 * transaction ends.
 */
void
netrun_hide_current_statement(const char *placeholder)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(redact_xact_callback, NULL);
		xact_callback_registered = true;
	}
	netrun_hide_statement = true;
	pgstat_report_activity(STATE_RUNNING, placeholder);
}

/*
 * A value the caller gave, fit to quote in a message: its first
 * NETRUN_MESSAGE_VALUE_CHARS characters, then "...".  Lookups take names
 * and tenants of any length, and a message must not echo a huge one back
 * (to the client and the log).  The SQL side does the same in
 * netrun_pool._message_value().
 */
const char *
netrun_message_value(const char *value)
{
	int			len = strlen(value);
	int			clip;

	if (len <= NETRUN_MESSAGE_VALUE_CHARS)
		return value;
	clip = pg_mbcharcliplen(value, len, NETRUN_MESSAGE_VALUE_CHARS);
	if (clip >= len)
		return value;
	return psprintf("%.*s...", clip, value);
}

void
netrun_redact_install_hook(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = redact_emit_log_hook;
	prev_post_parse_analyze_hook = post_parse_analyze_hook;
	post_parse_analyze_hook = redact_post_parse_analyze;
}
