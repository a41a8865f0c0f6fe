/*-------------------------------------------------------------------------
 *
 * tenant.c
 *	  The tenant context: the protected setting netrun_pool.tenant_id,
 *	  the functions that alone may change it (set_tenant, set_tenant_token,
 *	  clear_tenant), current_tenant(), signed tokens (compact JWS, HS256),
 *	  the mirror setting for policies written with current_setting(), and
 *	  the tenant's schema (tenant_schema, validate_schema_name, the
 *	  search_path of schema-per-tenant).
 *
 * The guard: the setting's check hook refuses every change that does not
 * come from our own functions (SET, SET LOCAL, set_config, ALTER ROLE or
 * DATABASE ... SET, ALTER SYSTEM, PGOPTIONS, a function's SET clause);
 * RESET and SET ... TO DEFAULT never reach a check hook, so a utility
 * hook refuses them.  What may still clear it (never set it to another
 * tenant): transaction end for is_local, RESET ALL, DISCARD ALL.
 *
 * It must never log a token or the key (set_tenant_token() hides its
 * statement, and redact.c blanks tokens in what is logged), and never
 * leave the setting half changed: a tenant that fails validation changes
 * nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "access/parallel.h"
#include "catalog/namespace.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "netrun_pool.h"
#include "tenant.h"

PG_FUNCTION_INFO_V1(netrun_set_tenant);
PG_FUNCTION_INFO_V1(netrun_set_tenant_token);
PG_FUNCTION_INFO_V1(netrun_clear_tenant);
PG_FUNCTION_INFO_V1(netrun_current_tenant);
PG_FUNCTION_INFO_V1(netrun_tenant_schema);
PG_FUNCTION_INFO_V1(netrun_validate_schema_name);
PG_FUNCTION_INFO_V1(netrun_normalize_tenant);

#define TENANT_GUC			"netrun_pool.tenant_id"
#define TENANT_MAX_LEN		255

/* > 0 while one of our functions changes the setting */
static int	tenant_guard_depth = 0;

static ProcessUtility_hook_type prev_process_utility = NULL;

/* ---------------------------------------------------------------------
 * The guard
 * ---------------------------------------------------------------------
 */

bool
tenant_id_check_hook(char **newval, void **extra, GucSource source)
{
	/* the boot value, our own functions, a parallel worker copying its leader */
	if (source == PGC_S_DEFAULT || tenant_guard_depth > 0 ||
		InitializingParallelWorker)
		return true;
	GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
	GUC_check_errmsg("netrun_pool.tenant_id can only be changed by netrun_pool.set_tenant()");
	GUC_check_errhint("Call netrun_pool.set_tenant(), netrun_pool.set_tenant_token() or netrun_pool.clear_tenant().");
	return false;
}

/* RESET and SET ... TO DEFAULT bypass check hooks: refuse them here. */
static void
tenant_process_utility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *node = pstmt->utilityStmt;

	if (IsA(node, VariableSetStmt))
	{
		VariableSetStmt *stmt = (VariableSetStmt *) node;

		if ((stmt->kind == VAR_RESET || stmt->kind == VAR_SET_DEFAULT) &&
			stmt->name && pg_strcasecmp(stmt->name, TENANT_GUC) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("netrun_pool.tenant_id can only be changed by netrun_pool.set_tenant()"),
					 errhint("Call netrun_pool.clear_tenant() to clear it.")));
	}
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

void
tenant_install_hooks(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = tenant_process_utility;
}

/* ---------------------------------------------------------------------
 * Tenant ids and schema names
 * ---------------------------------------------------------------------
 */

static const char *
tenant_format_name(void)
{
	switch (netrun_tenant_id_format)
	{
		case TENANT_FORMAT_UUID:
			return "uuid";
		case TENANT_FORMAT_INTEGER:
			return "integer";
		case TENANT_FORMAT_SLUG:
			return "slug";
		default:
			return "text";
	}
}

/*
 * The tenant id in its canonical form, or an error (22P02) naming the
 * format.  uuid: 8-4-4-4-12 hex digits, lower-cased; integer: 1 to 18
 * digits; slug: a lowercase letter or digit, then letters, digits, '_' or
 * '-', at most 63; text: 1 to 255 bytes without control characters.
 */
static char *
tenant_normalize_ext(const char *in, bool raise)
{
	int			len = strlen(in);
	bool		ok = len > 0 && len <= TENANT_MAX_LEN;
	char	   *out = pstrdup(in);

	switch (netrun_tenant_id_format)
	{
		case TENANT_FORMAT_UUID:
			ok = len == 36;
			for (int i = 0; ok && i < len; i++)
			{
				if (i == 8 || i == 13 || i == 18 || i == 23)
					ok = in[i] == '-';
				else
					ok = isxdigit((unsigned char) in[i]);
				out[i] = pg_tolower((unsigned char) in[i]);
			}
			break;
		case TENANT_FORMAT_INTEGER:
			ok = len >= 1 && len <= 18;
			for (int i = 0; ok && i < len; i++)
				ok = isdigit((unsigned char) in[i]);
			break;
		case TENANT_FORMAT_SLUG:
			ok = len >= 1 && len <= 63 &&
				(islower((unsigned char) in[0]) || isdigit((unsigned char) in[0]));
			for (int i = 1; ok && i < len; i++)
				ok = islower((unsigned char) in[i]) || isdigit((unsigned char) in[i]) ||
					in[i] == '_' || in[i] == '-';
			break;
		default:
			for (int i = 0; ok && i < len; i++)
				ok = !iscntrl((unsigned char) in[i]);
			break;
	}
	if (!ok && !raise)
		return NULL;
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid tenant id for netrun_pool.tenant_id_format \"%s\"",
						tenant_format_name()),
				 errdetail("%s",
						   netrun_tenant_id_format == TENANT_FORMAT_UUID ?
						   "A tenant id is a UUID such as 6f1c1f4e-8a1b-4c2d-9e3f-0a1b2c3d4e5f." :
						   netrun_tenant_id_format == TENANT_FORMAT_INTEGER ?
						   "A tenant id is 1 to 18 digits." :
						   netrun_tenant_id_format == TENANT_FORMAT_SLUG ?
						   "A tenant id is 1 to 63 lowercase letters, digits, '_' or '-', starting with a letter or digit." :
						   "A tenant id is 1 to 255 bytes without control characters.")));
	return out;
}

static char *
tenant_normalize(const char *in)
{
	return tenant_normalize_ext(in, true);
}

/*
 * _normalize_tenant(tenant, strict): the tenant as set_tenant() would
 * store it (tenant routes are keyed by it).  Strict: an invalid tenant is
 * set_tenant()'s error; otherwise it comes back as given, to match nothing.
 */
Datum
netrun_normalize_tenant(PG_FUNCTION_ARGS)
{
	char	   *in = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *out = tenant_normalize_ext(in, PG_GETARG_BOOL(1));

	PG_RETURN_TEXT_P(cstring_to_text(out ? out : in));
}

/*
 * Is this a name a schema may have without quoting tricks: 1 to 63 bytes
 * of lowercase letters, digits and '_', not starting with a digit, and not
 * a name PostgreSQL keeps for itself (pg_*).
 */
static bool
schema_name_is_valid(const char *name)
{
	int			len = strlen(name);

	if (len < 1 || len > NAMEDATALEN - 1)
		return false;
	if (!(islower((unsigned char) name[0]) || name[0] == '_'))
		return false;
	for (int i = 1; i < len; i++)
		if (!(islower((unsigned char) name[i]) || isdigit((unsigned char) name[i]) ||
			  name[i] == '_'))
			return false;
	return strncmp(name, "pg_", 3) != 0;
}

/* prefix || slug(tenant): '-' becomes '_', letters lower-cased. */
static char *
tenant_schema_for(const char *tenant)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, netrun_tenant_schema_prefix);
	for (const char *p = tenant; *p; p++)
		appendStringInfoChar(&buf, *p == '-' ? '_' : pg_tolower((unsigned char) *p));
	if (!schema_name_is_valid(buf.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tenant \"%s\" has no valid schema name",
						netrun_message_value(tenant)),
				 errdetail("netrun_pool.tenant_schema_prefix followed by the tenant must be 1 to 63 lowercase letters, digits or underscores, not starting with a digit or pg_.")));
	return buf.data;
}

/* The search_path of a tenant: its schema, the shared schema, public. */
static char *
tenant_search_path_for(const char *tenant)
{
	if (tenant == NULL || tenant[0] == '\0')
		return psprintf("%s, public", quote_identifier(netrun_shared_schema));
	return psprintf("%s, %s, public",
					quote_identifier(tenant_schema_for(tenant)),
					quote_identifier(netrun_shared_schema));
}

/* ---------------------------------------------------------------------
 * Changing the tenant
 * ---------------------------------------------------------------------
 */

/*
 * Set (or with "" clear) the tenant, its mirror and, in schema mode, the
 * search_path, with the scope of set_config(..., is_local).  Everything
 * that can fail on the value is checked before anything changes.
 */
static void
tenant_apply(const char *tenant, bool is_local)
{
	GucAction	action = is_local ? GUC_ACTION_LOCAL : GUC_ACTION_SET;
	char	   *search_path = netrun_tenant_search_path ?
		tenant_search_path_for(tenant) : NULL;

	tenant_guard_depth++;
	PG_TRY();
	{
		(void) set_config_option(TENANT_GUC, tenant, PGC_USERSET, PGC_S_SESSION,
								 action, true, ERROR, false);
		if (netrun_tenant_setting && netrun_tenant_setting[0])
			(void) set_config_option(netrun_tenant_setting, tenant, PGC_USERSET,
									 PGC_S_SESSION, action, true, ERROR, false);
		if (search_path)
			(void) set_config_option("search_path", search_path, PGC_USERSET,
									 PGC_S_SESSION, action, true, ERROR, false);
	}
	PG_FINALLY();
	{
		tenant_guard_depth--;
	}
	PG_END_TRY();
}

/*
 * On a remote with tenant_mode = pool, the tenant comes only from the
 * pool's signed assertions (guard.c): the caller's SQL runs in the same
 * session, and must not pick its own tenant.
 */
static void
tenant_refuse_in_pool_mode(void)
{
	if (netrun_tenant_mode == TENANT_MODE_POOL && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("netrun_pool.tenant_mode is \"pool\": only the pool's signed assertions may set the tenant"),
				 errhint("Set the tenant on the pool's server; its calls carry it here.")));
}

/*
 * The tenant a pool asserted (guard.c has checked the assertion), for the
 * session; "" clears it.  It must match this server's tenant_id_format.
 */
void
tenant_set_asserted(const char *tenant)
{
	tenant_apply(tenant[0] ? tenant_normalize(tenant) : "", false);
}

static bool
arg_is_local(FunctionCallInfo fcinfo, int n)
{
	return PG_NARGS() > n && !PG_ARGISNULL(n) && PG_GETARG_BOOL(n);
}

Datum
netrun_set_tenant(PG_FUNCTION_ARGS)
{
	char	   *tenant;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tenant must not be null"),
				 errhint("Call netrun_pool.clear_tenant() to clear it.")));
	if (netrun_tenant_mode == TENANT_MODE_SIGNED && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("netrun_pool.tenant_mode is \"signed\": only set_tenant_token() may set the tenant"),
				 errhint("Pass a token signed with the key in netrun_pool.tenant_key_file.")));
	tenant_refuse_in_pool_mode();
	tenant = tenant_normalize(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	tenant_apply(tenant, arg_is_local(fcinfo, 1));
	PG_RETURN_TEXT_P(cstring_to_text(tenant));
}

Datum
netrun_clear_tenant(PG_FUNCTION_ARGS)
{
	tenant_apply("", false);
	PG_RETURN_VOID();
}

/* NULL when no tenant is set, so a policy on it matches nothing. */
Datum
netrun_current_tenant(PG_FUNCTION_ARGS)
{
	if (netrun_tenant_id == NULL || netrun_tenant_id[0] == '\0')
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(netrun_tenant_id));
}

const char *
tenant_current(void)
{
	if (netrun_tenant_id == NULL || netrun_tenant_id[0] == '\0')
		return NULL;
	return netrun_tenant_id;
}

char *
tenant_remote_search_path(void)
{
	if (!netrun_tenant_search_path || tenant_current() == NULL)
		return NULL;
	return tenant_search_path_for(tenant_current());
}

Datum
netrun_tenant_schema(PG_FUNCTION_ARGS)
{
	const char *tenant;

	if (PG_ARGISNULL(0))
	{
		tenant = tenant_current();
		if (tenant == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no tenant is set"),
					 errhint("Call netrun_pool.set_tenant() first, or pass the tenant.")));
	}
	else
		tenant = tenant_normalize(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_DATUM(DirectFunctionCall1(namein,
										CStringGetDatum(tenant_schema_for(tenant))));
}

Datum
netrun_validate_schema_name(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(schema_name_is_valid(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}

/* ---------------------------------------------------------------------
 * Signed tokens: compact JWS, HS256 only
 * ---------------------------------------------------------------------
 */

static void
token_invalid(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("invalid tenant token"),
			 errdetail("%s", detail)));
}

/* base64url without padding; NULL if it is not. */
static char *
base64url_decode(const char *in, int inlen, int *outlen)
{
	char	   *out = palloc(inlen * 3 / 4 + 3);
	uint32		acc = 0;
	int			bits = 0;
	int			n = 0;

	for (int i = 0; i < inlen; i++)
	{
		int			c = (unsigned char) in[i];
		int			v;

		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '-')
			v = 62;
		else if (c == '_')
			v = 63;
		else
			return NULL;
		acc = (acc << 6) | v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			out[n++] = (char) ((acc >> bits) & 0xFF);
		}
	}
	if (bits >= 6)				/* a dangling sextet is not base64 */
		return NULL;
	out[n] = '\0';
	*outlen = n;
	return out;
}

/*
 * What token_scan_* collect while a header or payload is parsed: every key
 * with the object it belongs to (objects are numbered as they open), and
 * whether a number is too large for jsonb.
 */
typedef struct TokenKey
{
	int			object;
	char	   *name;
} TokenKey;

typedef struct TokenScan
{
	int		   *open;			/* numbers of the objects now open */
	int			nopen;
	int			maxopen;
	int			nobjects;
	TokenKey   *keys;
	int			nkeys;
	int			maxkeys;
	bool		bad_number;
} TokenScan;

static void
token_scan_object_start(void *state)
{
	TokenScan  *scan = (TokenScan *) state;

	if (scan->nopen == scan->maxopen)
	{
		scan->maxopen *= 2;
		scan->open = repalloc(scan->open, scan->maxopen * sizeof(int));
	}
	scan->open[scan->nopen++] = ++scan->nobjects;
}

static void
token_scan_object_end(void *state)
{
	((TokenScan *) state)->nopen--;
}

static void
token_scan_field(void *state, char *fname, bool isnull)
{
	TokenScan  *scan = (TokenScan *) state;

	if (scan->nkeys == scan->maxkeys)
	{
		scan->maxkeys *= 2;
		scan->keys = repalloc(scan->keys, scan->maxkeys * sizeof(TokenKey));
	}
	scan->keys[scan->nkeys].object = scan->open[scan->nopen - 1];
	scan->keys[scan->nkeys].name = fname;
	scan->nkeys++;
}

/*
 * jsonb's numeric input fails (22003, "value overflows numeric format")
 * beyond an exponent of 1000; a number of at most 1000 characters with
 * such an exponent always fits.
 */
static void
token_scan_scalar(void *state, char *token, JsonTokenType tokentype)
{
	TokenScan  *scan = (TokenScan *) state;
	const char *e;

	if (tokentype != JSON_TOKEN_NUMBER)
		return;
	if (strlen(token) > 1000)
		scan->bad_number = true;
	else if ((e = strpbrk(token, "eE")) != NULL)
	{
		long		exponent;

		errno = 0;
		exponent = strtol(e + 1, NULL, 10);
		if (errno != 0 || exponent > 1000 || exponent < -1000)
			scan->bad_number = true;
	}
}

static int
token_key_cmp(const void *a, const void *b)
{
	const TokenKey *ka = (const TokenKey *) a;
	const TokenKey *kb = (const TokenKey *) b;

	if (ka->object != kb->object)
		return ka->object < kb->object ? -1 : 1;
	return strcmp(ka->name, kb->name);
}

/*
 * The JSON text, UTF-8 as RFC 7519 wants it, in the database's encoding;
 * NULL if it cannot be represented there.
 */
static char *
token_to_server_encoding(const char *json, int len)
{
	int			encoding = GetDatabaseEncoding();
	Oid			proc;
	char	   *out;

	if (encoding == PG_UTF8 || encoding == PG_SQL_ASCII)
		return (char *) json;
	proc = FindDefaultConversionProc(PG_UTF8, encoding);
	if (!OidIsValid(proc))
		return NULL;
	out = palloc((Size) len * MAX_CONVERSION_GROWTH + 1);
	if (pg_do_encoding_conversion_buf(proc, PG_UTF8, encoding,
									  (unsigned char *) json, len,
									  (unsigned char *) out,
									  len * MAX_CONVERSION_GROWTH + 1,
									  true) != len)
		return NULL;
	return out;
}

/*
 * A header or payload as jsonb, or NULL if it is not one JSON object.
 * Refused (28000) before jsonb sees them: text that is not UTF-8, a key
 * that appears twice in one object (jsonb would keep the last one, so a
 * token could name one tenant to another JWT library and another to us),
 * and a number jsonb cannot hold.
 */
static Jsonb *
token_json(const char *json, int len)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	TokenScan	scan;
	char	   *text;
	Jsonb	   *jb;

	if ((int) strlen(json) != len)
		return NULL;			/* a NUL inside */
	if (!pg_verify_mbstr(PG_UTF8, json, len, true))
		token_invalid("Its header or payload is not valid UTF-8.");
	text = token_to_server_encoding(json, len);
	if (text == NULL)
		token_invalid("Its header or payload cannot be represented in the database's encoding.");

	memset(&scan, 0, sizeof(scan));
	scan.maxopen = 8;
	scan.open = palloc(scan.maxopen * sizeof(int));
	scan.maxkeys = 16;
	scan.keys = palloc(scan.maxkeys * sizeof(TokenKey));
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &scan;
	sem.object_start = token_scan_object_start;
	sem.object_end = token_scan_object_end;
	sem.object_field_start = token_scan_field;
	sem.scalar = token_scan_scalar;

	lex = makeJsonLexContextCstringLen(text, strlen(text), GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
		return NULL;
	if (scan.bad_number)
		token_invalid("A number in its header or payload is out of range.");
	qsort(scan.keys, scan.nkeys, sizeof(TokenKey), token_key_cmp);
	for (int i = 1; i < scan.nkeys; i++)
		if (token_key_cmp(&scan.keys[i - 1], &scan.keys[i]) == 0)
			token_invalid("A key appears twice in an object of its header or payload.");

	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	if (!JB_ROOT_IS_OBJECT(jb))
		return NULL;
	return jb;
}

static JsonbValue *
token_claim(Jsonb *jb, const char *key, JsonbValue *v)
{
	return getKeyJsonValueFromContainer(&jb->root, key, strlen(key), v);
}

/*
 * A numeric date claim in seconds; false if absent, error if not a number
 * or not a time a timestamptz can hold (the checks and messages below
 * convert it to one).  The number itself is never echoed.
 */
static bool
token_time_claim(Jsonb *jb, const char *key, double *out)
{
	JsonbValue	v;
	double		when;
	double		usecs;

	if (token_claim(jb, key, &v) == NULL)
		return false;
	if (v.type != jbvNumeric)
		token_invalid(psprintf("Its \"%s\" claim is not a number.", key));
	when = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											  NumericGetDatum(v.val.numeric)));
	usecs = (when - ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY)) *
		USECS_PER_SEC;
	if (isnan(usecs) || usecs < (double) MIN_TIMESTAMP ||
		usecs >= (double) END_TIMESTAMP)
		token_invalid(psprintf("Its \"%s\" claim is out of range.", key));
	*out = when;
	return true;
}

static char *
token_time_text(double epoch)
{
	return pstrdup(timestamptz_to_str(
									  (TimestampTz) ((epoch - ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY)) * USECS_PER_SEC)));
}

/*
 * The tenant a token names, after every check: three base64url parts; a
 * header and payload that are JSON objects in UTF-8, with no key twice in
 * one object; a header whose alg is exactly HS256; an HMAC-SHA256
 * signature under the key file's contents (trailing whitespace dropped),
 * compared in constant time; an "exp" in the future and an "nbf", if any,
 * in the past, both within timestamptz's range.
 */
static char *
token_verify(const char *token)
{
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	char	   *header;
	char	   *payload;
	char	   *sig;
	int			hlen,
				plen,
				slen;
	Jsonb	   *hjson;
	Jsonb	   *pjson;
	JsonbValue	v;
	char		key[NETRUN_KEY_FILE_MAX];
	int			keylen;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	bool		mac_ok;
	double		now;
	double		when;

	if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
		token_invalid("A token has three base64url parts separated by dots.");
	header = base64url_decode(token, dot1 - token, &hlen);
	payload = base64url_decode(dot1 + 1, dot2 - dot1 - 1, &plen);
	sig = base64url_decode(dot2 + 1, strlen(dot2 + 1), &slen);
	if (header == NULL || payload == NULL || sig == NULL)
		token_invalid("A token has three base64url parts separated by dots.");
	hjson = token_json(header, hlen);
	pjson = token_json(payload, plen);
	if (hjson == NULL || pjson == NULL)
		token_invalid("Its header and payload must be JSON objects.");

	if (token_claim(hjson, "alg", &v) == NULL || v.type != jbvString)
		token_invalid("Its header has no \"alg\".");
	if (v.val.string.len != 5 || memcmp(v.val.string.val, "HS256", 5) != 0)
		token_invalid(psprintf("Its algorithm is \"%.*s\"; only HS256 is accepted.",
							   Min(v.val.string.len, 32), v.val.string.val));

	if (netrun_tenant_key_file == NULL || netrun_tenant_key_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("netrun_pool.tenant_key_file is not set"),
				 errhint("A superuser sets it to a file of at least 32 random bytes, readable only by the server's user.")));
	keylen = netrun_read_key_file(netrun_tenant_key_file, "tenant key file", key);
	while (keylen > 0 && isspace((unsigned char) key[keylen - 1]))
		keylen--;
	mac_ok = HMAC(EVP_sha256(), key, keylen, (const unsigned char *) token,
				  dot2 - token, mac, &maclen) != NULL;
	explicit_bzero(key, sizeof(key));
	if (!mac_ok)
		elog(ERROR, "could not compute HMAC-SHA256");
	if (slen != (int) maclen || CRYPTO_memcmp(mac, sig, maclen) != 0)
		token_invalid("Its signature does not match.");

	now = (double) (GetCurrentTimestamp() / USECS_PER_SEC) +
		(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
	if (!token_time_claim(pjson, "exp", &when))
		token_invalid("It has no \"exp\" claim.");
	if (now >= when)
		token_invalid(psprintf("It expired at %s.", token_time_text(when)));
	if (token_time_claim(pjson, "nbf", &when) && now < when)
		token_invalid(psprintf("It is not valid before %s.", token_time_text(when)));

	if (token_claim(pjson, netrun_tenant_claim, &v) == NULL)
		token_invalid(psprintf("It has no \"%s\" claim.", netrun_tenant_claim));
	if (v.type == jbvString)
		return pnstrdup(v.val.string.val, v.val.string.len);
	if (v.type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out,
												   NumericGetDatum(v.val.numeric)));
	token_invalid(psprintf("Its \"%s\" claim is neither a string nor a number.",
						   netrun_tenant_claim));
	return NULL;				/* keep compiler quiet */
}

Datum
netrun_set_tenant_token(PG_FUNCTION_ARGS)
{
	char	   *tenant;

	/* A token is a secret: out of pg_stat_activity and STATEMENT lines. */
	netrun_hide_current_statement(NETRUN_HIDDEN_SECRET_STATEMENT);

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("token must not be null")));
	tenant_refuse_in_pool_mode();
	tenant = tenant_normalize(token_verify(text_to_cstring(PG_GETARG_TEXT_PP(0))));
	tenant_apply(tenant, arg_is_local(fcinfo, 1));
	PG_RETURN_TEXT_P(cstring_to_text(tenant));
}
