/*-------------------------------------------------------------------------
 *
 * redact.c
 *	  Keeping passwords out of the server log.
 *
 * Owns the emit_log_hook.  A registry call carries a conninfo, and a
 * conninfo may carry a password: log_statement, log_min_duration_statement
 * and the STATEMENT line of an error would all write it to the log.  The
 * hook blanks passwords in statement log lines ("password=...", and the
 * "user:pass@" of a URI), and hides the statement of an error raised while
 * a registry change runs or while the query holds a password.
 *
 * It only rewrites what is about to be logged; it must stay cheap for the
 * messages it does not touch (a prefix test, then a substring test).
 *
 * Also owns netrun_message_value(), which clips a caller's value before a
 * message quotes it, so that a 1 MB name is not echoed back in full.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "tcop/tcopprot.h"
#include "utils/elog.h"

#include "netrun_pool.h"

static emit_log_hook_type prev_emit_log_hook = NULL;

/* Set by registry.c while a registry function runs (until transaction end). */
bool		netrun_hide_statement = false;

static bool
is_value_end(char c)
{
	return c == '\0' || isspace((unsigned char) c) || c == '\'' ||
		c == '"' || c == '&' || c == ',' || c == ')';
}

/*
 * A copy of text with every password replaced by "***", or NULL if there
 * was none.  Knows libpq's key=value form (value bare, quoted, or quoted
 * inside a SQL literal with doubled quotes) and URIs.
 */
char *
netrun_redact_secrets(const char *text)
{
	StringInfoData buf;
	const char *p = text;
	bool		changed = false;

	if (strcasestr(text, "password") == NULL && strstr(text, "://") == NULL)
		return NULL;

	initStringInfo(&buf);
	while (*p)
	{
		if (pg_strncasecmp(p, "password", 8) == 0)
		{
			const char *q = p + 8;

			while (*q == ' ' || *q == '\t')
				q++;
			if (*q == '=')
			{
				q++;
				while (*q == ' ' || *q == '\t')
					q++;
				appendBinaryStringInfo(&buf, p, q - p);
				appendStringInfoString(&buf, "***");
				if (q[0] == '\'' && q[1] == '\'')
				{
					/* quoted value inside a SQL literal: ''...'' */
					q += 2;
					while (*q && !(q[0] == '\'' && q[1] == '\''))
						q++;
					if (*q)
						q += 2;
				}
				else if (*q == '\'')
				{
					q++;
					while (*q && *q != '\'')
						q += (*q == '\\' && q[1]) ? 2 : 1;
					if (*q)
						q++;
				}
				else
					while (!is_value_end(*q))
						q++;
				p = q;
				changed = true;
				continue;
			}
		}
		if (strncmp(p, "://", 3) == 0)
		{
			const char *q = p + 3;
			const char *colon = NULL;

			while (*q && *q != '@' && *q != '/' && *q != '?' && !is_value_end(*q))
			{
				if (*q == ':' && colon == NULL)
					colon = q;
				q++;
			}
			if (*q == '@' && colon != NULL)
			{
				appendBinaryStringInfo(&buf, p, colon + 1 - p);
				appendStringInfoString(&buf, "***");
				p = q;
				changed = true;
				continue;
			}
		}
		appendStringInfoChar(&buf, *p++);
	}

	if (!changed)
	{
		pfree(buf.data);
		return NULL;
	}
	return buf.data;
}

/* Messages that quote the statement: log_statement, durations, execute. */
static bool
quotes_statement(const char *message)
{
	return strncmp(message, "statement: ", 11) == 0 ||
		strncmp(message, "execute ", 8) == 0 ||
		strncmp(message, "duration: ", 10) == 0;
}

static void
redact_emit_log_hook(ErrorData *edata)
{
	/* Runs in ErrorContext: what we allocate goes with the error. */
	if (netrun_hide_statement)
		edata->hide_stmt = true;
	else if (!edata->hide_stmt && edata->elevel >= ERROR &&
			 debug_query_string != NULL)
	{
		char	   *redacted = netrun_redact_secrets(debug_query_string);

		if (redacted != NULL)
		{
			edata->hide_stmt = true;
			pfree(redacted);
		}
	}

	if (edata->message != NULL && quotes_statement(edata->message))
	{
		char	   *redacted = netrun_redact_secrets(edata->message);

		if (redacted != NULL)
			edata->message = redacted;
		/* "parameters: $1 = '...'" of an extended-protocol statement */
		if (edata->detail != NULL &&
			(redacted = netrun_redact_secrets(edata->detail)) != NULL)
			edata->detail = redacted;
	}

	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
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
}
