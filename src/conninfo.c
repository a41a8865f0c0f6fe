/*-------------------------------------------------------------------------
 *
 * conninfo.c
 *	  Connection strings of registered connections: accepting what users
 *	  write, and keeping the secrets out of what is stored.
 *
 * Owns the rules for a registered conninfo: libpq key=value strings and
 * postgresql:// URIs (plus SQLAlchemy's postgresql+driver:// spelling),
 * validated by libpq's own parser; keys the pool controls are refused;
 * password and sslpassword leave the string for an encrypted blob; a
 * passfile must be one libpq will read.
 * It must never echo a secret: libpq's parse errors can quote pieces of
 * the input, so they are redacted before they reach an error report.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "utils/builtins.h"

#include "netrun_pool.h"

PG_FUNCTION_INFO_V1(netrun_prepare_conninfo);
PG_FUNCTION_INFO_V1(netrun_conninfo_get);

/* Keys the pool sets itself on every remote connection. */
static const char *const controlled_keys[] = {
	"replication", "application_name", "fallback_application_name",
	"client_encoding", "connect_timeout", NULL
};

/* Keys whose values are secrets: encrypted, never stored in clear. */
static const char *const secret_keys[] = {
	"password", "sslpassword", NULL
};

static bool
key_in(const char *key, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(key, *list) == 0)
			return true;
	return false;
}

/*
 * "postgresql+asyncpg://..." -> "postgresql://...": application pools name
 * their driver in the scheme; libpq knows only the plain scheme.
 */
static char *
strip_driver(const char *conninfo)
{
	const char *schemes[] = {"postgresql+", "postgres+"};

	for (size_t i = 0; i < lengthof(schemes); i++)
	{
		size_t		len = strlen(schemes[i]);
		const char *p;

		if (pg_strncasecmp(conninfo, schemes[i], len) != 0)
			continue;
		p = conninfo + len;
		while (isalnum((unsigned char) *p) || *p == '_')
			p++;
		if (p > conninfo + len && strncmp(p, "://", 3) == 0)
			return psprintf("%.*s%s", (int) (len - 1), conninfo, p);
	}
	return pstrdup(conninfo);
}

/*
 * libpq's parse errors quote pieces of the input, which may be a password
 * ("missing "=" after "hunter2""); replace every quoted piece longer than
 * one character that occurs in the input with "...".  Messages that quote
 * a key name the user typed before "=" are left alone: they are the useful
 * ones ("invalid connection option "hots"").
 */
static char *
redact_libpq_error(const char *msg, const char *input)
{
	StringInfoData buf;
	const char *p = msg;
	size_t		len = strlen(msg);

	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		len--;
	if (strncmp(msg, "invalid connection option \"", 27) == 0 ||
		strncmp(msg, "invalid URI query parameter: \"", 30) == 0)
		return pnstrdup(msg, len);

	initStringInfo(&buf);
	while (p < msg + len)
	{
		const char *close;

		if (*p != '"' || (close = strchr(p + 1, '"')) == NULL ||
			close >= msg + len)
		{
			appendStringInfoChar(&buf, *p++);
			continue;
		}
		if (close - p - 1 > 1)
		{
			char	   *piece = pnstrdup(p + 1, close - p - 1);

			if (strstr(input, piece) != NULL)
				appendStringInfoString(&buf, "\"...\"");
			else
				appendBinaryStringInfo(&buf, p, close - p + 1);
			pfree(piece);
		}
		else
			appendBinaryStringInfo(&buf, p, close - p + 1);
		p = close + 1;
	}
	return buf.data;
}

/* Append key='value' with libpq's quoting rules. */
static void
append_conninfo_pair(StringInfo buf, const char *key, const char *val)
{
	if (buf->len > 0)
		appendStringInfoChar(buf, ' ');
	appendStringInfo(buf, "%s='", key);
	for (const char *p = val; *p; p++)
	{
		if (*p == '\'' || *p == '\\')
			appendStringInfoChar(buf, '\\');
		appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '\'');
}

/*
 * Parse a conninfo with libpq.  On failure raises the documented error,
 * with libpq's message redacted.  The caller owns the result (PQconninfoFree).
 */
PQconninfoOption *
netrun_conninfo_parse(const char *name, const char *conninfo)
{
	char	   *libpq_msg = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &libpq_msg);

	if (opts == NULL)
	{
		char	   *detail = libpq_msg ? redact_libpq_error(libpq_msg, conninfo)
			: pstrdup("out of memory");

		if (libpq_msg)
			PQfreemem(libpq_msg);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid connection string for netrun_pool connection \"%s\"",
						name),
				 errdetail_internal("%s", detail)));
	}
	return opts;
}

/*
 * A password file named in a conninfo must be one that libpq reads when
 * the worker connects.  libpq skips a file that is missing, not a regular
 * file, or open to group or others, without an error: the connection
 * would then fail later with "no password supplied".  Checked as the
 * server's user, which the worker runs as.
 */
static void
check_passfile(const char *path)
{
	struct stat st;
	int			fd;

	if (strlen(path) >= MAXPGPATH)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("password file name \"%s\" is too long",
						netrun_message_value(path))));
	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat password file \"%s\": %m", path)));
	if (!S_ISREG(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("password file \"%s\" is not a regular file", path)));
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("password file \"%s\" is accessible by group or others", path),
				 errdetail("libpq ignores such a file."),
				 errhint("Run chmod 600 on it.")));
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open password file \"%s\": %m", path)));
	CloseTransientFile(fd);
}

/*
 * _prepare_conninfo(name, conninfo) -> (conninfo, secret)
 */
Datum
netrun_prepare_conninfo(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *raw = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *input;
	PQconninfoOption *opts;
	StringInfoData plain;
	StringInfoData secret;
	char	   *refused = NULL;
	char	   *passfile = NULL;
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	/* The statement may carry a password: keep it out of pg_stat_activity. */
	pgstat_report_activity(STATE_RUNNING, NETRUN_HIDDEN_STATEMENT);

	/*
	 * register() and configure() check this too.  Here it guards the files
	 * a conninfo names (passfile, and the worker's use of sslkey and the
	 * like), should EXECUTE on this function be granted to someone.
	 */
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to change the netrun_pool registry"),
				 errdetail("Only superusers may register, configure, unregister, grant or revoke netrun_pool connections.")));

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	input = strip_driver(raw);
	opts = netrun_conninfo_parse(name, input);

	initStringInfo(&plain);
	initStringInfo(&secret);
	for (PQconninfoOption *o = opts; o->keyword; o++)
	{
		if (o->val == NULL)
			continue;
		if (key_in(o->keyword, controlled_keys))
		{
			refused = pstrdup(o->keyword);
			break;
		}
		if (strcmp(o->keyword, "passfile") == 0)
			passfile = pstrdup(o->val);
		if (key_in(o->keyword, secret_keys))
			append_conninfo_pair(&secret, o->keyword, o->val);
		else
			append_conninfo_pair(&plain, o->keyword, o->val);
	}
	PQconninfoFree(opts);
	explicit_bzero(raw, strlen(raw));
	explicit_bzero(input, strlen(input));

	if (refused)
	{
		explicit_bzero(secret.data, secret.len);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("connection option \"%s\" is not allowed in a netrun_pool connection",
						refused),
				 errdetail("netrun_pool sets %s itself.",
						   strcmp(refused, "connect_timeout") == 0 ?
						   "it from connect_timeout_ms" : "it")));
	}

	values[0] = CStringGetTextDatum(plain.data);
	if (secret.len == 0)
		nulls[1] = true;
	else
	{
		if (!netrun_secret_key_configured())
		{
			explicit_bzero(secret.data, secret.len);
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot store the password of netrun_pool connection \"%s\"",
							name),
					 errdetail("Passwords are stored only encrypted, and netrun_pool.secret_key_file is not set."),
					 errhint("Set netrun_pool.secret_key_file to a file of at least 32 random bytes, or leave the password out and use a passfile or service file.")));
		}
		values[1] = PointerGetDatum(netrun_secret_encrypt(secret.data, name));
		explicit_bzero(secret.data, secret.len);
	}
	if (passfile)
		check_passfile(passfile);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * _conninfo_get(conninfo, key): one value of a stored conninfo, or NULL.
 */
Datum
netrun_conninfo_get(PG_FUNCTION_ARGS)
{
	char	   *conninfo = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *key = text_to_cstring(PG_GETARG_TEXT_PP(1));
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	char	   *val = NULL;

	if (opts == NULL)
		PG_RETURN_NULL();
	for (PQconninfoOption *o = opts; o->keyword; o++)
	{
		/* Never hand out a secret, even if one was stored by hand. */
		if (o->val && strcmp(o->keyword, key) == 0 &&
			!key_in(o->keyword, secret_keys))
		{
			val = pstrdup(o->val);
			break;
		}
	}
	PQconninfoFree(opts);
	if (val == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(val));
}
