/*-------------------------------------------------------------------------
 *
 * route.c
 *	  Which registered connection a call goes to, decided in the calling
 *	  backend from shared memory: the name itself, or a member of the
 *	  cluster of that name; and the circuit breaker's fast failure.
 *
 * Owns the routing rules:
 *	  - a connection name is used as it is, unless its circuit is open;
 *	  - a cluster name routes writes to its primary, and read_only reads
 *		to the replica with the fewest outstanding calls whose replay lag
 *		is within its max_replica_lag_ms, else to the primary;
 *	  - the role is what the last health probe saw (pg_is_in_recovery()),
 *		or the registered role before any probe succeeded, so writes
 *		follow a promoted replica;
 *	  - members with an open circuit are skipped, and so are members the
 *		caller has no usage on.
 * It reads the registry slots under the shared LWLock and each member's
 * health under its spinlock; it never does SPI, I/O or a catalog scan
 * under a lock (role membership is checked after the copy).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "route.h"
#include "stats.h"

/* What routing needs of a connection's health (a few fields, not 3 KB). */
typedef struct RouteHealth
{
	int8		circuit;
	bool		role_known;
	bool		is_replica;
	int32		consecutive_failures;
	int32		outstanding;
	int64		replica_lag_ms;
} RouteHealth;

/* What routing needs of one registry slot, copied out under the lock. */
typedef struct RouteCandidate
{
	char		name[NAMEDATALEN];
	bool		enabled;
	int8		role;
	int8		pool_mode;
	int32		max_replica_lag_ms;
	int32		stats_index;
	int32		ngrantees;
	Oid			grantees[NETRUN_MAX_GRANTEES];
	RouteHealth health;			/* filled after the lock */
} RouteCandidate;

/* max_pools candidates, allocated once per backend. */
static RouteCandidate *candidates = NULL;

/* Spreads ties between equally loaded replicas. */
static uint32 route_turn = 0;

static void
candidate_copy(RouteCandidate *c, const NetrunPoolSlot *slot)
{
	strlcpy(c->name, slot->name, NAMEDATALEN);
	c->enabled = slot->enabled;
	c->role = slot->role;
	c->pool_mode = slot->pool_mode;
	c->max_replica_lag_ms = slot->max_replica_lag_ms;
	c->stats_index = slot->stats_index;
	c->ngrantees = slot->ngrantees;
	memcpy(c->grantees, slot->grantees, sizeof(Oid) * slot->ngrantees);
}

static void
candidate_read_health(RouteCandidate *c)
{
	NetrunPoolStats *s = stats_entry(c->stats_index);

	memset(&c->health, 0, sizeof(c->health));
	c->health.replica_lag_ms = -1;
	if (s == NULL)
		return;
	SpinLockAcquire(&s->mutex);
	c->health.circuit = s->circuit;
	c->health.role_known = s->role_known;
	c->health.is_replica = s->is_replica;
	c->health.consecutive_failures = s->consecutive_failures;
	c->health.outstanding = s->outstanding;
	c->health.replica_lag_ms = s->replica_lag_ms;
	SpinLockRelease(&s->mutex);
}

static bool
candidate_usable_by_caller(const RouteCandidate *c)
{
	if (superuser())
		return true;
	for (int i = 0; i < c->ngrantees; i++)
		if (has_privs_of_role(GetUserId(), c->grantees[i]))
			return true;
	return false;
}

static bool
candidate_is_primary(const RouteCandidate *c)
{
	if (c->health.role_known)
		return !c->health.is_replica;
	return c->role == 0;		/* registered as primary */
}

static bool
candidate_circuit_closed(const RouteCandidate *c)
{
	return c->health.circuit == CIRCUIT_CLOSED;
}

/* A refused call counts as an error of that connection. */
static void
route_count_refusal(const RouteCandidate *c)
{
	NetrunPoolStats *s = stats_entry(c->stats_index);

	if (s == NULL)
		return;
	SpinLockAcquire(&s->mutex);
	s->errors_total++;
	stats_set_error(s, "08004: refused while the circuit is open");
	SpinLockRelease(&s->mutex);
}

static void
route_unavailable(const char *name, const RouteCandidate *c)
{
	NetrunPoolStats health;

	route_count_refusal(c);
	stats_copy(c->stats_index, &health);
	ereport(ERROR,
			(errcode(ERRCODE_SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION),
			 errmsg("netrun_pool connection \"%s\" is unavailable", name),
			 errdetail("Its circuit is open after %d failed health probes; the last: %s. The next probe is due at %s.",
					   health.consecutive_failures, health.health_error,
					   timestamptz_to_str(health.next_probe_at)),
			 errhint("Calls fail at once until a health probe succeeds; see netrun_pool.health.")));
}

/*
 * The member for a write: a primary with a closed circuit, preferring
 * one whose last probe succeeded (after a failover the old primary may
 * not have failed enough probes yet to open its circuit), then the
 * fewest outstanding calls.  -1 if none.
 */
static int
route_pick_primary(RouteCandidate *c, int n)
{
	int			best = -1;

	for (int i = 0; i < n; i++)
	{
		if (!c[i].enabled || !candidate_circuit_closed(&c[i]) ||
			!candidate_is_primary(&c[i]))
			continue;
		if (best < 0 ||
			(c[i].health.consecutive_failures == 0) > (c[best].health.consecutive_failures == 0) ||
			((c[i].health.consecutive_failures == 0) == (c[best].health.consecutive_failures == 0) &&
			 c[i].health.outstanding < c[best].health.outstanding))
			best = i;
	}
	return best;
}

/*
 * The registered name (or cluster) closest to a mistyped one, among those
 * the caller may use, within a small edit distance; NULL if none.  Names
 * the caller may not use are never suggested: that would tell it they
 * exist.
 */
static char *
route_closest_name(const char *name)
{
	char	   *best = NULL;
	int			best_distance = 0;
	int			len = strlen(name);
	int			limit;

	if (netrun_shared == NULL || len >= NAMEDATALEN)
		return NULL;
	limit = Max(1, Min(3, len / 3));
	LWLockAcquire(netrun_shared->lock, LW_SHARED);
	for (int i = 0; i < netrun_shared->npools; i++)
	{
		NetrunPoolSlot *slot = &netrun_shared->pools[i];
		bool		usable = superuser();

		for (int g = 0; g < slot->ngrantees && !usable; g++)
			usable = has_privs_of_role(GetUserId(), slot->grantees[g]);
		if (!usable)
			continue;
		for (int which = 0; which < 2; which++)
		{
			const char *candidate = which == 0 ? slot->name : slot->cluster;
			int			d;

			if (candidate[0] == '\0')
				continue;
			d = varstr_levenshtein_less_equal(name, len, candidate, strlen(candidate),
											  1, 1, 1, limit + 1, true);
			if (d <= limit && (best == NULL || d < best_distance))
			{
				best = pstrdup(candidate);
				best_distance = d;
			}
		}
	}
	LWLockRelease(netrun_shared->lock);
	return best;
}

/* A name may be any length: quote only its start (netrun_message_value). */
void
route_report_unknown(const char *name)
{
	char	   *closest;

	/* registered in this very transaction: the worker cannot see it yet */
	if (netrun_registry_change_pending())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("netrun_pool connection \"%s\" cannot be used before the transaction that changed the registry commits",
						netrun_message_value(name)),
				 errdetail("The pool's worker loads registry changes when they commit."),
				 errhint("Commit the transaction, then call it.")));
	closest = route_closest_name(name);
	if (closest)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("netrun_pool connection \"%s\" does not exist",
						netrun_message_value(name)),
				 errhint("Did you mean \"%s\"?  SELECT name FROM netrun_pool.connections lists the connections you may use.",
						 closest)));
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("netrun_pool connection \"%s\" does not exist",
					netrun_message_value(name)),
			 errhint("SELECT name FROM netrun_pool.connections lists the connections you may use.")));
}

/* No usage: say who may grant it, and how, exactly. */
void
route_report_no_usage(const char *name, bool is_cluster)
{
	char	   *role = quote_literal_cstr(quote_identifier(GetUserNameFromId(GetUserId(), false)));

	if (is_cluster)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for netrun_pool connection \"%s\"", name),
				 errhint("A superuser can grant it on the cluster's members: SELECT netrun_pool.grant_usage(name, %s) FROM netrun_pool.connections WHERE cluster = %s;",
						 role, quote_literal_cstr(name))));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for netrun_pool connection \"%s\"", name),
			 errhint("A superuser can grant it: SELECT netrun_pool.grant_usage(%s, %s);",
					 quote_literal_cstr(name), role)));
}

/* The replica for a read: fit, within its lag limit, least loaded. */
static int
route_pick_replica(RouteCandidate *c, int n)
{
	int			best = -1;
	int			ties = 0;

	for (int i = 0; i < n; i++)
	{
		const RouteHealth *h = &c[i].health;

		if (!c[i].enabled || !candidate_circuit_closed(&c[i]) ||
			candidate_is_primary(&c[i]) || h->consecutive_failures > 0)
			continue;
		if (c[i].max_replica_lag_ms > 0 &&
			(h->replica_lag_ms < 0 || h->replica_lag_ms > c[i].max_replica_lag_ms))
			continue;
		if (best < 0 || h->outstanding < c[best].health.outstanding)
		{
			best = i;
			ties = 1;
		}
		else if (h->outstanding == c[best].health.outstanding &&
				 (route_turn % ++ties) == 0)
			best = i;			/* each of the tied ones in turn */
	}
	route_turn++;
	return best;
}

void
route_resolve(const char *name, bool write, RouteTarget *out)
{
	int			n = 0;
	bool		is_cluster = false;
	int			usable = 0;
	int			enabled = 0;
	int			pick;
	uint64		committed;
	uint64		loaded;
	bool		waited = false;

	netrun_require_shared();
	if (candidates == NULL)
		candidates = MemoryContextAlloc(TopMemoryContext,
										sizeof(RouteCandidate) * netrun_shared->max_pools);

	/* every registry change committed before this call, loaded or not */
	committed = pg_atomic_read_u64(&netrun_shared->registry_generation);
again:
	n = 0;
	is_cluster = false;
	LWLockAcquire(netrun_shared->lock, LW_SHARED);
	loaded = netrun_shared->loaded_generation;
	for (int i = 0; i < netrun_shared->npools; i++)
	{
		NetrunPoolSlot *slot = &netrun_shared->pools[i];

		if (strcmp(slot->name, name) == 0)
		{
			candidate_copy(&candidates[0], slot);
			n = 1;
			is_cluster = false;
			break;
		}
		if (slot->cluster[0] && strcmp(slot->cluster, name) == 0)
		{
			candidate_copy(&candidates[n++], slot);
			is_cluster = true;
		}
	}
	LWLockRelease(netrun_shared->lock);

	/*
	 * Read your writes: a register() or configure() committed before this
	 * call, in any session, is what the call sees, even if the worker has
	 * not loaded it yet.  One atomic read per call; a wait only in the
	 * moments after a registry change.
	 */
	if (loaded < committed && !waited)
	{
		waited = true;
		if (netrun_registry_wait_loaded(committed))
			goto again;
	}
	if (n == 0)
		route_report_unknown(name);

	/* who may use what: members without usage drop out */
	for (int i = 0; i < n; i++)
	{
		if (!candidate_usable_by_caller(&candidates[i]))
			continue;
		if (usable != i)
			candidates[usable] = candidates[i];
		usable++;
	}
	if (usable == 0)
		route_report_no_usage(name, is_cluster);
	n = usable;
	for (int i = 0; i < n; i++)
	{
		candidate_read_health(&candidates[i]);
		enabled += candidates[i].enabled;
	}
	if (enabled == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("netrun_pool connection \"%s\" is disabled", name)));

	if (!is_cluster)
	{
		if (!candidate_circuit_closed(&candidates[0]))
			route_unavailable(name, &candidates[0]);
		pick = 0;
	}
	else
	{
		pick = write ? -1 : route_pick_replica(candidates, n);
		if (pick < 0)
			pick = route_pick_primary(candidates, n);
		if (pick < 0)
		{
			/* an open circuit among the primaries says why */
			for (int i = 0; i < n; i++)
				if (candidates[i].enabled && candidate_is_primary(&candidates[i]) &&
					!candidate_circuit_closed(&candidates[i]))
					route_unavailable(name, &candidates[i]);
			ereport(ERROR,
					(errcode(ERRCODE_SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION),
					 errmsg("netrun_pool connection \"%s\" is unavailable", name),
					 errdetail("No enabled member of cluster \"%s\" is a primary with a closed circuit.",
							   name)));
		}
	}

	strlcpy(out->name, candidates[pick].name, NAMEDATALEN);
	out->pool_mode = candidates[pick].pool_mode;
	out->via_cluster = is_cluster;
}

bool
route_is_cluster(const char *name)
{
	bool		connection = false;
	bool		cluster = false;

	netrun_require_shared();
	LWLockAcquire(netrun_shared->lock, LW_SHARED);
	for (int i = 0; i < netrun_shared->npools; i++)
	{
		NetrunPoolSlot *slot = &netrun_shared->pools[i];

		if (strcmp(slot->name, name) == 0)
			connection = true;
		else if (slot->cluster[0] && strcmp(slot->cluster, name) == 0)
			cluster = true;
	}
	LWLockRelease(netrun_shared->lock);
	return cluster && !connection;
}
