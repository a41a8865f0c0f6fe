/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  The tenant guard across servers: signed assertions, the only way a
 *	  pooled call sets the tenant on a remote that runs netrun_pool with
 *	  netrun_pool.tenant_mode = pool.  Both halves live here:
 *
 *	  the remote's	guard_hello(challenge) binds the session (a random
 *					nonce and its pid) and proves that the remote holds the
 *					key; guard_assert(tenant, seq, mac) sets the tenant when
 *					the mac is right for this session and seq is larger than
 *					any this session accepted before.
 *	  the pool's	guard_hello_sql(), guard_check_hello() and guard_sign(),
 *					used by the worker on each remote connection.
 *
 * Both sides read the same key, netrun_pool.guard_key_file.  The caller's
 * SQL runs in the remote session too, so it can call guard_assert() and
 * read other sessions' statements: that is why an assertion is bound to
 * its session (a captured one is useless in another) and carries a
 * sequence (useless later in the same one).
 *
 * This file must never log, return or put in an error the key, a mac it
 * computed, or the nonce of another session.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "guard.h"
#include "netrun_pool.h"
#include "tenant.h"

PG_FUNCTION_INFO_V1(netrun_guard_hello);
PG_FUNCTION_INFO_V1(netrun_guard_assert);

#define GUARD_HELLO_LABEL	"netrun_pool guard hello 1"
#define GUARD_ASSERT_LABEL	"netrun_pool guard assert 1"

/*
 * The remote half's state, per session: the nonce that binds assertions to
 * it, the key read at hello, and the largest sequence accepted so far.
 */
static bool session_bound = false;
static char session_nonce[GUARD_NONCE_HEX + 1];
static unsigned char session_key[GUARD_KEY_LEN];
static int64 session_last_seq = 0;

/* The pool half's key, read at each hello (the worker's memory only). */
static unsigned char pool_key[GUARD_KEY_LEN];
static bool pool_key_loaded = false;

/* bytes as lowercase hex digits, terminated */
static void
guard_hex(const unsigned char *in, int len, char *out)
{
	out[hex_encode((const char *) in, len, out)] = '\0';
}

/*
 * The 32-byte key: SHA-256 of the key file's contents, trailing
 * whitespace dropped (so "key" and "key\n" are the same key).  Errors as
 * netrun_read_key_file() raises them.
 */
static void
guard_read_key(unsigned char *key)
{
	char		buf[NETRUN_KEY_FILE_MAX];
	int			len;
	unsigned int keylen = 0;
	bool		ok;

	if (netrun_guard_key_file == NULL || netrun_guard_key_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("netrun_pool.guard_key_file is not set")));
	len = netrun_read_key_file(netrun_guard_key_file, "guard key file", buf);
	while (len > 0 && isspace((unsigned char) buf[len - 1]))
		len--;
	ok = EVP_Digest(buf, len, key, &keylen, EVP_sha256(), NULL) == 1 &&
		keylen == GUARD_KEY_LEN;
	explicit_bzero(buf, sizeof(buf));
	if (!ok)
		elog(ERROR, "could not derive the netrun_pool guard key");
}

/* HMAC-SHA256 of msg under key, as 64 hex digits. */
static void
guard_mac(const unsigned char *key, const char *msg, char *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	if (HMAC(EVP_sha256(), key, GUARD_KEY_LEN, (const unsigned char *) msg,
			 strlen(msg), mac, &maclen) == NULL || maclen != 32)
		elog(ERROR, "could not compute HMAC-SHA256");
	guard_hex(mac, 32, out);
	explicit_bzero(mac, sizeof(mac));
}

static char *
hello_message(const char *challenge, int pid, const char *nonce)
{
	return psprintf(GUARD_HELLO_LABEL "\n%s\n%d\n%s", challenge, pid, nonce);
}

static char *
assert_message(const char *nonce, int pid, int64 seq, const char *tenant)
{
	return psprintf(GUARD_ASSERT_LABEL "\n%s\n%d\n" INT64_FORMAT "\n%s",
					nonce, pid, seq, tenant);
}

/* ---------------------------------------------------------------------
 * The remote's half
 * ---------------------------------------------------------------------
 */

/*
 * guard_hello(challenge text) returns text: "enforced PID NONCE PROOF",
 * or "unavailable REASON" when this server does not enforce the guard.
 * Anyone may call it; it reveals nothing but this session's nonce.  The
 * nonce is made once per session, so a caller's own hello cannot unbind
 * the pool's assertions.
 */
Datum
netrun_guard_hello(PG_FUNCTION_ARGS)
{
	char	   *challenge = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char		proof[GUARD_MAC_HEX + 1];
	char	   *msg;

	if (strlen(challenge) != GUARD_NONCE_HEX ||
		strspn(challenge, "0123456789abcdef") != GUARD_NONCE_HEX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid guard challenge"),
				 errdetail("A challenge is %d lowercase hexadecimal digits.",
						   GUARD_NONCE_HEX)));
	if (netrun_tenant_mode != TENANT_MODE_POOL)
		PG_RETURN_TEXT_P(cstring_to_text("unavailable netrun_pool.tenant_mode is not \"pool\" on the remote"));
	if (netrun_guard_key_file == NULL || netrun_guard_key_file[0] == '\0')
		PG_RETURN_TEXT_P(cstring_to_text("unavailable netrun_pool.guard_key_file is not set on the remote"));
	/* a superuser's SQL may set any setting and skip every policy */
	if (superuser())
		PG_RETURN_TEXT_P(cstring_to_text("unavailable the pool's role on the remote is a superuser, whose SQL no guard can hold back"));

	if (!session_bound)
	{
		unsigned char raw[GUARD_NONCE_HEX / 2];

		if (!pg_strong_random(raw, sizeof(raw)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random guard nonce")));
		guard_hex(raw, sizeof(raw), session_nonce);
		guard_read_key(session_key);
		session_last_seq = 0;
		session_bound = true;
	}
	msg = hello_message(challenge, MyProcPid, session_nonce);
	guard_mac(session_key, msg, proof);
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("enforced %d %s %s", MyProcPid,
											  session_nonce, proof)));
}

static void
assertion_invalid(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("invalid tenant assertion"),
			 errdetail("%s", detail),
			 errhint("Only netrun_pool's own calls may set the tenant on this server.")));
}

/*
 * guard_assert(tenant text, seq bigint, mac text): set this session's
 * tenant ("" clears it) for the session, as the pool asserted it.
 */
Datum
netrun_guard_assert(PG_FUNCTION_ARGS)
{
	char	   *tenant;
	int64		seq;
	char	   *mac;
	char	   *msg;
	char		expected[GUARD_MAC_HEX + 1];
	bool		ok;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		assertion_invalid("An assertion has a tenant, a sequence and a signature.");
	if (netrun_tenant_mode != TENANT_MODE_POOL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("netrun_pool.tenant_mode is not \"pool\" on this server"),
				 errhint("Set netrun_pool.tenant_mode = pool and netrun_pool.guard_key_file on the remote.")));
	if (!session_bound)
		assertion_invalid("This session was not bound with guard_hello().");
	tenant = text_to_cstring(PG_GETARG_TEXT_PP(0));
	seq = PG_GETARG_INT64(1);
	mac = text_to_cstring(PG_GETARG_TEXT_PP(2));

	msg = assert_message(session_nonce, MyProcPid, seq, tenant);
	guard_mac(session_key, msg, expected);
	ok = strlen(mac) == GUARD_MAC_HEX &&
		CRYPTO_memcmp(expected, mac, GUARD_MAC_HEX) == 0;
	explicit_bzero(expected, sizeof(expected));
	if (!ok)
		assertion_invalid("Its signature does not match this session.");
	if (seq <= session_last_seq)
		assertion_invalid("Its sequence was already used in this session.");
	session_last_seq = seq;
	tenant_set_asserted(tenant);
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * The pool's half (the worker)
 * ---------------------------------------------------------------------
 */

/*
 * A fresh challenge in challenge[GUARD_NONCE_HEX + 1], and the SQL that
 * sends it (palloc'd).  The challenge is hex, so it is safe inside a
 * literal.
 */
char *
guard_hello_sql(char *challenge)
{
	unsigned char raw[GUARD_NONCE_HEX / 2];

	if (!pg_strong_random(raw, sizeof(raw)))
		memset(raw, 0, sizeof(raw));	/* the proof check then fails closed */
	guard_hex(raw, sizeof(raw), challenge);
	return psprintf("SELECT netrun_pool.guard_hello('%s')", challenge);
}

/*
 * Read a hello's answer.  GUARD_ENFORCED with the session's pid and nonce
 * when the remote proved it holds our key; otherwise GUARD_ABSENT with the
 * reason in detail (detail has room for GUARD_DETAIL_LEN bytes).  Never
 * raises: the key file's errors become the reason.
 */
int
guard_check_hello(const char *answer, const char *challenge, int backend_pid,
				  int *pid, char *nonce, char *detail)
{
	MemoryContext cxt = CurrentMemoryContext;
	char		state[16];
	char		proof[GUARD_MAC_HEX + 1];
	char		expected[GUARD_MAC_HEX + 1];
	char	   *msg;
	bool		ok;

	if (strncmp(answer, "unavailable ", 12) == 0)
	{
		strlcpy(detail, answer + 12, GUARD_DETAIL_LEN);
		return GUARD_ABSENT;
	}
	if (sscanf(answer, "%15s %d %32s %64s", state, pid, nonce, proof) != 4 ||
		strcmp(state, "enforced") != 0 || strlen(nonce) != GUARD_NONCE_HEX ||
		strlen(proof) != GUARD_MAC_HEX)
	{
		strlcpy(detail, "the remote's guard_hello() answered in an unknown form",
				GUARD_DETAIL_LEN);
		return GUARD_ABSENT;
	}
	if (*pid != backend_pid)
	{
		strlcpy(detail, "the remote's guard_hello() answered for another session",
				GUARD_DETAIL_LEN);
		return GUARD_ABSENT;
	}

	PG_TRY();
	{
		guard_read_key(pool_key);
		pool_key_loaded = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		snprintf(detail, GUARD_DETAIL_LEN, "the pool cannot read its key: %s",
				 edata->message);
		FreeErrorData(edata);
		pool_key_loaded = false;
		return GUARD_ABSENT;
	}
	PG_END_TRY();

	msg = hello_message(challenge, *pid, nonce);
	guard_mac(pool_key, msg, expected);
	pfree(msg);
	ok = CRYPTO_memcmp(expected, proof, GUARD_MAC_HEX) == 0;
	explicit_bzero(expected, sizeof(expected));
	if (!ok)
	{
		strlcpy(detail, "the remote's netrun_pool.guard_key_file holds another key",
				GUARD_DETAIL_LEN);
		return GUARD_ABSENT;
	}
	detail[0] = '\0';
	return GUARD_ENFORCED;
}

/* The mac of an assertion, as 64 hex digits in mac; false if no key. */
bool
guard_sign(const char *nonce, int pid, int64 seq, const char *tenant, char *mac)
{
	char	   *msg;

	if (!pool_key_loaded)
		return false;
	msg = assert_message(nonce, pid, seq, tenant);
	guard_mac(pool_key, msg, mac);
	pfree(msg);
	return true;
}

const char *
guard_state_name(int state)
{
	switch (state)
	{
		case GUARD_ENFORCED:
			return "enforced";
		case GUARD_OFF:
			return "off";
		case GUARD_ABSENT:
			return "absent";
		default:
			return "unknown";
	}
}
