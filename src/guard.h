/*-------------------------------------------------------------------------
 *
 * guard.h
 *	  The tenant guard across servers (guard.c): what the worker needs to
 *	  bind a remote session and sign the tenant it asserts there.
 *
 *-------------------------------------------------------------------------
 */
#ifndef NETRUN_GUARD_H
#define NETRUN_GUARD_H

#define GUARD_KEY_LEN		32
#define GUARD_NONCE_HEX		32	/* 16 random bytes */
#define GUARD_MAC_HEX		64	/* HMAC-SHA256 */
#define GUARD_DETAIL_LEN	160

/* What a remote was found to do (NetrunPoolStats.guard), worst last. */
typedef enum GuardState
{
	GUARD_UNKNOWN = 0,			/* no connection has said yet */
	GUARD_ENFORCED,				/* it proved it holds our key */
	GUARD_OFF,					/* tenant_guard => 'off': never asked */
	GUARD_ABSENT				/* it cannot enforce the guard */
} GuardState;

/* A connection's tenant_guard setting (NetrunPoolSlot.tenant_guard). */
#define GUARD_MODE_REQUIRED		0
#define GUARD_MODE_IF_AVAILABLE	1
#define GUARD_MODE_OFF			2

extern const char *guard_state_name(int state);
extern char *guard_hello_sql(char *challenge);
extern int	guard_check_hello(const char *answer, const char *challenge,
							  int backend_pid, int *pid, char *nonce,
							  char *detail);
extern bool guard_sign(const char *nonce, int pid, int64 seq,
					   const char *tenant, char *mac);

#endif							/* NETRUN_GUARD_H */
