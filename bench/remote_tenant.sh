#!/usr/bin/env bash
# bench/remote_tenant.sh: what the reset between callers and the remote
# tenant cost a pooled call (issue 14).
#
#   bash bench/remote_tenant.sh            # as root: 7 rounds of 3 s cells (about 8 minutes)
#   QUICK=1 bash bench/remote_tenant.sh    # 3 rounds of 1 s cells (under 2 minutes)
#
# In transaction mode every pooled call is followed by a reset of the remote
# session (DISCARD ALL and one SELECT of set_config() for the pool's
# settings), pipelined behind the call in the same write.  A call that
# carries a tenant first sets it on the remote: by set_config with
# tenant_guard => 'off', by netrun_pool.guard_assert() with the remote guard.
# The contestants, all running SELECT 1 on the remote:
#
#   plain         fetchval('t_plain', 'SELECT 1'): transaction mode,
#                 tenant_guard off, no tenant (the call, then the reset)
#   session       fetchval('t_session', 'SELECT 1'): session mode (the
#                 connection stays with the backend, no reset between calls)
#   tenant_off    set_tenant('A') once per pgbench client, then the call on
#                 t_plain (the call carries the tenant: set_config first)
#   tenant_guard  the same on t_guard, tenant_guard => 'required' to the
#                 guarded remote (guard_assert first)
#   direct        pgbench straight at the remote, SELECT 1 (the floor at
#                 c = 4 and 16; at c = 1 see the idle probe below)
#
# t_plain and t_guard have pool_min = pool_max = 4.  t_session has 16: in
# session mode each pgbench client holds a connection for its whole run, so
# with fewer than 16 the c = 16 cells would measure clients waiting for a
# connection, not the calls.
#
# It builds and installs netrun_pool (optimized, no asserts) from a copy of
# this tree and starts two servers as the unprivileged user netrun_bench
# under $NETRUN_REMOTE_TENANT_BENCH_DIR (default
# /var/tmp/netrun_pool_bench_remote_tenant, made anew each run, removed at
# the end unless KEEP=1 or the run failed):
#   - the remote: session_preload_libraries = 'netrun_pool',
#     netrun_pool.tenant_mode = pool, netrun_pool.guard_key_file; database
#     app with CREATE EXTENSION netrun_pool, docs(tenant_id text, body text)
#     under ENABLE + FORCE row-level security with a policy on
#     netrun_pool.current_tenant(), SELECT granted to the login role
#     remote_app, which authenticates with a password (scram-sha-256 over
#     127.0.0.1, from a passfile);
#   - the local server: netrun_pool preloaded, the same guard_key_file; the
#     pgbench clients connect as the role app, which has usage on the three
#     connections.
# Both are on 127.0.0.1; everything shares this machine's cores.
#
# First a check pass: functional checks (the guard is enforced, the tenant
# reaches the remote, a setting made by one call is gone in the next on
# t_plain and kept on t_session), then each contestant for a few seconds at
# c = 4 with pg_stat_statements counting on the remote, which shows the
# statements the remote runs per call.  During the timed rounds
# pg_stat_statements is loaded but idle (track = none, compute_query_id =
# off).  Then ROUNDS rounds: each runs every contestant at c = 1, 4 and 16
# (pgbench -n -M prepared -T DURATION), the order of the contestants
# turning with the round and the client count.  Per cell it records
# pgbench's tps, transactions, failures and aborted clients; the pool_stats
# counters of every connection before and after; and CPU: the remote's and
# the local server's (the postmaster, its live children and the children it
# reaped, from /proc/<pid>/stat), pgbench's (bash's time), and the machine's
# (/proc/stat), so that what others ran meanwhile shows.
#
# Last, the idle probe: direct at c = 1, alternately alone and beside one
# busy loop at nice 19 (started and stopped by its pid), IDLE_PAIRS times.
# On a virtual machine a lone round trip can be dominated by waking idle
# vCPUs; the busy loop keeps them awake.  The pooled contestants poll
# (netrun_pool.spin_wait_us) and are not idle in the same way.  The probe
# is there to explain direct's c = 1 figure, not as a contestant.
#
# Results: bench/results/remote_tenant-<date>.md (-quick.md in quick mode):
# medians over rounds, and ratios against plain taken within each round,
# then their median.  Nothing about speed is asserted; a contestant that
# did not run as expected (errors, aborted clients, calls on the wrong
# connection, the guard not enforced) is listed under "Problems" and makes
# the exit status 1.
#
# It takes /tmp/netrun_pool.lock (as scripts/test.sh and the other bench
# scripts do) for the whole run: installing the extension would otherwise
# swap the library under a running test suite, and a concurrent run would
# skew the timings.
#
# Environment: QUICK=1; DURATION (seconds per cell), ROUNDS, CHECK_S
# (seconds per contestant in the check pass) to override; KEEP=1 keeps the
# work dir (the servers are always stopped); IDLE_PAIRS.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

require_root
T0=$SECONDS
BENCH_USER=netrun_bench
WORK=${NETRUN_REMOTE_TENANT_BENCH_DIR:-/var/tmp/netrun_pool_bench_remote_tenant}
DATE=$(date -u +%F)
if [ -n "${QUICK:-}" ]; then
	MODE=quick
	DURATION=${DURATION:-1}
	ROUNDS=${ROUNDS:-3}
	CHECK_S=${CHECK_S:-1}
	IDLE_PAIRS=${IDLE_PAIRS:-1}
	RESULT=$here/bench/results/remote_tenant-$DATE-quick.md
else
	MODE=full
	DURATION=${DURATION:-3}
	ROUNDS=${ROUNDS:-7}
	CHECK_S=${CHECK_S:-3}
	IDLE_PAIRS=${IDLE_PAIRS:-3}
	RESULT=$here/bench/results/remote_tenant-$DATE.md
fi
CLIENTS=(1 4 16)
CONTESTANTS=(plain session tenant_off tenant_guard direct)
POOL_MAX=4
SESSION_POOL_MAX=16
TENANT=A
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

# each contestant's connection (direct has none)
declare -A CONN=([plain]=t_plain [session]=t_session [tenant_off]=t_plain [tenant_guard]=t_guard [direct]="")

log() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }

# ---------------------------------------------------------------- clean-up
# Only what this script started: its two servers, stopped with pg_ctl,
# and the idle probe's busy loop, by its pid.
SPINNER_PID=
stop_spinner() {
	[ -n "$SPINNER_PID" ] && kill "$SPINNER_PID" 2>/dev/null || true
	[ -n "$SPINNER_PID" ] && wait "$SPINNER_PID" 2>/dev/null || true
	SPINNER_PID=
}
stop_servers() { stop_bench_servers "$BENCH_USER" "$WORK/remote" "$WORK/local"; }
on_exit() {
	local rc=$?
	stop_spinner
	stop_servers
	if [ -d "$WORK" ]; then
		if [ -n "${KEEP:-}" ] || [ "$rc" != 0 ]; then
			echo "kept $WORK (server logs: $WORK/remote.log, $WORK/local.log)" >&2
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$rc"
}

ensure_packages
ensure_user "$BENCH_USER"

take_bench_lock
log "holding /tmp/netrun_pool.lock"
LOCK_WAIT=$((SECONDS - T0))

# an interrupted earlier run: stop its servers, then start afresh
stop_servers
rm -rf "$WORK"
mkdir -p "$WORK/run" "$WORK/out" "$WORK/logs" "$WORK/scripts"
trap on_exit EXIT
trap 'exit 130' INT TERM
chmod 755 "$WORK"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
GIT_REV=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
# other engineers commit to this tree: what was built is HEAD plus these
GIT_DIRTY=$(git -C "$here" status --porcelain -- src sql Makefile netrun_pool.control 2>/dev/null | awk '{print $NF}' | paste -sd' ' || true)

log "building and installing netrun_pool (optimized, no asserts)"
copy_tree "$here" "$WORK/src" "$BENCH_USER"
chown -R "$BENCH_USER:" "$WORK"
build_and_install "$WORK/src" "$BENCH_USER" -j"$NCPU"

# The guard's key, the same file for both servers (32 random bytes as hex,
# readable only by the servers' user), and the remote role's password in a
# passfile, so that it never appears in SQL text.
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$WORK/guard.key"
REMOTE_PASSWORD=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
chown "$BENCH_USER:" "$WORK/guard.key"
chmod 600 "$WORK/guard.key"

# Below the ephemeral range (32768-60999 on Linux), like tenant_policy.sh.
REMOTE_PORT=$(next_port 27532 "$WORK/run")
LOCAL_PORT=$(next_port $((REMOTE_PORT + 1)) "$WORK/run")
echo "127.0.0.1:$REMOTE_PORT:app:remote_app:$REMOTE_PASSWORD" >"$WORK/pgpass"
chown "$BENCH_USER:" "$WORK/pgpass"
chmod 600 "$WORK/pgpass"

init_server() { # init_server NAME PORT EXTRA_CONF
	init_bench_server "$BENCH_USER" "$WORK/$1" "$2" "$WORK/run" "max_connections = 100
shared_buffers = 128MB
$3"
}
start_server() { # the server must not inherit the lock's descriptor
	as_user "$BENCH_USER" pg_ctl -D "$WORK/$1" -l "$WORK/$1.log" -w start >/dev/null 9>&- ||
		die "the $1 server did not start (see $WORK/$1.log)"
}

log "starting the remote on 127.0.0.1:$REMOTE_PORT (the guard: session_preload_libraries, tenant_mode = pool)"
init_server remote "$REMOTE_PORT" "password_encryption = 'scram-sha-256'
session_preload_libraries = 'netrun_pool'
netrun_pool.tenant_mode = pool
netrun_pool.guard_key_file = '$WORK/guard.key'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = none
compute_query_id = off"
# the superuser over the socket; everyone else over TCP with a password
cat >"$WORK/remote/pg_hba.conf" <<HBA
local all all trust
host all all 127.0.0.1/32 scram-sha-256
HBA
start_server remote

log "starting the local server on 127.0.0.1:$LOCAL_PORT (netrun_pool preloaded)"
init_server local "$LOCAL_PORT" "shared_preload_libraries = 'netrun_pool'
netrun_pool.database = 'postgres'
netrun_pool.guard_key_file = '$WORK/guard.key'"
start_server local

# psql over the socket as the servers' superuser
lpsql() { psql -X -q -v ON_ERROR_STOP=1 -h "$WORK/run" -p "$LOCAL_PORT" -U "$BENCH_USER" -d postgres "$@"; }
rpsql() { psql -X -q -v ON_ERROR_STOP=1 -h "$WORK/run" -p "$REMOTE_PORT" -U "$BENCH_USER" -d app "$@"; }
lval() { lpsql -At -c "$1"; }
rval() { rpsql -At -c "$1"; }

log "the remote: database app, docs under FORCE RLS, the role remote_app"
psql -X -q -v ON_ERROR_STOP=1 -h "$WORK/run" -p "$REMOTE_PORT" -U "$BENCH_USER" -d postgres -c "CREATE DATABASE app"
rpsql <<SQL
CREATE EXTENSION netrun_pool;
CREATE EXTENSION pg_stat_statements;
SET password_encryption = 'scram-sha-256';
CREATE ROLE remote_app LOGIN PASSWORD '$REMOTE_PASSWORD';
BEGIN;
CREATE TABLE docs (tenant_id text NOT NULL, body text);
-- tenants A, B, C: 10 rows each
INSERT INTO docs SELECT t, t || '-' || g FROM unnest(ARRAY['A', 'B', 'C']) t, generate_series(1, 10) g;
ALTER TABLE docs ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY docs_tenant ON docs
    USING (tenant_id = netrun_pool.current_tenant())
    WITH CHECK (tenant_id = netrun_pool.current_tenant());
GRANT SELECT, INSERT ON docs TO remote_app;
COMMIT;
VACUUM ANALYZE docs;
SQL

CONNINFO="host=127.0.0.1 port=$REMOTE_PORT dbname=app user=remote_app passfile=$WORK/pgpass"
log "the local server: netrun_pool, the role app, t_plain, t_session, t_guard"
lpsql >/dev/null <<SQL
CREATE EXTENSION netrun_pool;
CREATE ROLE app LOGIN;
SELECT netrun_pool.register('t_plain', '$CONNINFO', pool_mode => 'transaction',
    pool_min => $POOL_MAX, pool_max => $POOL_MAX, tenant_guard => 'off', acquire_timeout_ms => 60000);
SELECT netrun_pool.register('t_session', '$CONNINFO', pool_mode => 'session',
    pool_min => $SESSION_POOL_MAX, pool_max => $SESSION_POOL_MAX, tenant_guard => 'off', acquire_timeout_ms => 60000);
SELECT netrun_pool.register('t_guard', '$CONNINFO', pool_mode => 'transaction',
    pool_min => $POOL_MAX, pool_max => $POOL_MAX, tenant_guard => 'required', acquire_timeout_ms => 60000);
SELECT netrun_pool.grant_usage(n, 'app') FROM unnest(ARRAY['t_plain', 't_session', 't_guard']) n;
SQL

wait_for 30 "SELECT state FROM netrun_pool.worker_status()" running || die "the netrun_pool worker did not start"
wait_for 30 "SELECT pools FROM netrun_pool.worker_status()" 3 || die "the worker did not load the three connections"
POOLS_READY_SQL="SELECT count(*) FILTER (WHERE total >= pool_min AND status = 'healthy' AND checked_out = 0 AND waiting = 0) FROM netrun_pool.pool_stats"
wait_for 60 "$POOLS_READY_SQL" 3 || {
	lval "SELECT name, status, total, pool_min, last_error FROM netrun_pool.pool_stats" >&2
	die "the pools did not become full and healthy"
}
WORKER_PID=$(lval "SELECT worker_pid FROM netrun_pool.worker_status()")
GUARD_STATES=$(lval "SELECT string_agg(name || '=' || coalesce(tenant_guard, '-'), ' ' ORDER BY name) FROM netrun_pool.health")
log "pools ready; health.tenant_guard: $GUARD_STATES"

PROBLEMS=$WORK/out/problems.txt
: >"$PROBLEMS"
problem() { echo "$*" >>"$PROBLEMS"; log "PROBLEM: $*"; }
[ "$(lval "SELECT tenant_guard FROM netrun_pool.health WHERE name = 't_guard'")" = enforced ] ||
	problem "before the run: health.tenant_guard of t_guard is not 'enforced' ($GUARD_STATES)"

# ------------------------------------------------------ functional checks
# As the role app: the tenant reaches the remote; a setting made by one
# call is gone in the next call on t_plain (the reset ran), and stays on
# t_session.  Each line: KEY|value.
log "functional checks"
{
	cat <<'SQL'
SELECT 'guard_none_rows', netrun_pool.fetchval('t_guard', 'SELECT count(*) FROM docs');
SELECT 'tenant', netrun_pool.set_tenant('A');
SELECT 'guard_tenant', netrun_pool.fetchval('t_guard', 'SELECT netrun_pool.current_tenant()');
SELECT 'guard_rows', netrun_pool.fetchval('t_guard', 'SELECT count(*) FROM docs');
SELECT 'off_setting', netrun_pool.fetchval('t_plain', $$SELECT current_setting('app.current_tenant_id', true)$$);
SELECT 'off_guard_tenant', coalesce(netrun_pool.fetchval('t_plain', 'SELECT netrun_pool.current_tenant()'), '<null>');
SELECT 'off_rows', netrun_pool.fetchval('t_plain', 'SELECT count(*) FROM docs');
SELECT 'guard_spoof', netrun_pool.fetchval('t_guard', $$SELECT set_config('netrun_pool.tenant_id', 'B', false)$$);
SQL
	for i in 1 2 3 4 5 6 7 8 9 10; do
		for c in t_plain t_session; do
			echo "SELECT 'probe_$c', netrun_pool.fetchval('$c', \$\$SELECT pg_backend_pid() || ':' || coalesce(nullif(current_setting('bench.probe', true), ''), '-') || ':' || set_config('bench.probe', 'left', false)\$\$);"
		done
	done
} | psql -X -At -F '|' -v ON_ERROR_STOP=0 -h 127.0.0.1 -p "$LOCAL_PORT" -U app -d postgres >"$WORK/out/checks.txt" 2>&1 || true
check_val() { awk -F'|' -v k="$1" '$1 == k {print $2; exit}' "$WORK/out/checks.txt"; }
expect() { # expect KEY VALUE WHAT
	local got
	got=$(check_val "$1")
	[ "$got" = "$2" ] || problem "functional check: $3: expected '$2', got '${got:-nothing}' (see $WORK/out/checks.txt)"
}
A_ROWS=$(rval "SELECT count(*) FROM docs WHERE tenant_id = 'A'")
expect guard_none_rows 0 "t_guard without a tenant sees no rows"
expect guard_tenant A "t_guard: current_tenant() on the remote"
expect guard_rows "$A_ROWS" "t_guard with tenant A sees A's rows"
expect off_setting A "t_plain: app.current_tenant_id on the remote"
expect off_guard_tenant '<null>' "t_plain (tenant_guard off): current_tenant() on the remote"
expect off_rows 0 "t_plain (tenant_guard off): the guarded policy shows no rows"
# the call's own SQL may not set the guarded tenant: refused, no answer
SPOOF_ERROR=$(grep -m1 '^ERROR: .*netrun_pool.tenant_id' "$WORK/out/checks.txt" || true)
[ -n "$SPOOF_ERROR" ] && [ -z "$(check_val guard_spoof)" ] ||
	problem "functional check: set_config of netrun_pool.tenant_id on the guarded remote was not refused (see $WORK/out/checks.txt)"
# t_plain: no call sees the previous call's setting, though connections repeat
PLAIN_PROBES=$(grep -c '^probe_t_plain|' "$WORK/out/checks.txt" || true)
PLAIN_PIDS=$(awk -F'|' '$1 == "probe_t_plain" {split($2, a, ":"); print a[1]}' "$WORK/out/checks.txt" | sort -u | wc -l)
PLAIN_LEFT=$(awk -F'|' '$1 == "probe_t_plain" {split($2, a, ":"); if (a[2] != "-") n++} END {print n + 0}' "$WORK/out/checks.txt")
SESSION_PIDS=$(awk -F'|' '$1 == "probe_t_session" {split($2, a, ":"); print a[1]}' "$WORK/out/checks.txt" | sort -u | wc -l)
SESSION_LEFT=$(awk -F'|' '$1 == "probe_t_session" {split($2, a, ":"); if (a[2] == "left") n++} END {print n + 0}' "$WORK/out/checks.txt")
[ "$PLAIN_PROBES" = 10 ] && [ "$PLAIN_PIDS" -lt 10 ] && [ "$PLAIN_LEFT" = 0 ] ||
	problem "functional check: t_plain's reset: $PLAIN_PROBES calls on $PLAIN_PIDS remote sessions, $PLAIN_LEFT saw the previous call's setting (expected 10 calls, fewer sessions, 0)"
[ "$SESSION_PIDS" = 1 ] && [ "$SESSION_LEFT" = 9 ] ||
	problem "functional check: t_session: $SESSION_PIDS remote sessions, $SESSION_LEFT of 10 calls saw the previous call's setting (expected 1 and 9)"
# the refused set_config counted as an error of t_guard: counters start here
lval "SELECT netrun_pool.reset_stats()" >/dev/null
plural() { if [ "$1" = 1 ]; then echo "$1 $2"; else echo "$1 ${2}s"; fi; }

# --------------------------------------------------------------- scripts
# tenant_*: set_tenant once per pgbench client (its variables live as long
# as the client; -D tenant_set=0 starts them at 0), then only the call.
for w in plain session; do
	printf "SELECT netrun_pool.fetchval('%s', 'SELECT 1');\n" "${CONN[$w]}" >"$WORK/scripts/$w.sql"
done
for w in tenant_off tenant_guard; do
	cat >"$WORK/scripts/$w.sql" <<SQL
\\if :tenant_set = 0
SELECT 1 AS tenant_set FROM netrun_pool.set_tenant('$TENANT') \\gset
\\endif
SELECT netrun_pool.fetchval('${CONN[$w]}', 'SELECT 1');
SQL
done
echo "SELECT 1;" >"$WORK/scripts/direct.sql"

# ----------------------------------------------------------- measurement
# CPU ticks of a server: the postmaster (its own and its reaped children's)
# and its live children.  A backend that ends is counted once it is reaped.
children_stat() { # the stat lines of a postmaster's children, without "pid (comm) "
	local pm=$1
	# shellcheck disable=SC2046
	{ (cd /proc && cat /dev/null $(pgrep -P "$pm" | sed 's|$|/stat|') 2>/dev/null) || true; } | sed 's/^.*) //'
}
server_ticks() {
	local pm
	pm=$(head -1 "$WORK/$1/postmaster.pid")
	{
		sed 's/^.*) //' "/proc/$pm/stat"
		children_stat "$pm"
	} | awk 'NR == 1 {s = $12 + $13 + $14 + $15; next} {s += $12 + $13} END {print s + 0}'
}
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# The children of both postmasters: "LOCAL_COUNT LOCAL_ZOMBIES REMOTE_COUNT
# REMOTE_ZOMBIES".  A backend that is exiting, or exited and not yet
# reaped, would be missed by server_ticks (or counted twice).
children_state() {
	local d
	for d in local remote; do
		children_stat "$(head -1 "$WORK/$d/postmaster.pid")" |
			awk '{n++; if ($1 == "Z") z++} END {printf "%d %d ", n, z}'
	done
	echo
}
# settle [LOCAL_COUNT REMOTE_COUNT]: until neither server has a zombie
# child and the counts of children hold still over three reads 50 ms apart
# (and equal the given ones: a cell's clients gone, a session pool's
# connections opened again); SETTLED is then "LOCAL_COUNT REMOTE_COUNT".
settle() {
	local i prev='' cur ln lz rn rz stable=0
	for ((i = 0; i < 200; i++)); do
		cur=$(children_state)
		read -r ln lz rn rz <<<"$cur"
		if [ "$lz" = 0 ] && [ "$rz" = 0 ] && [ "$cur" = "$prev" ] &&
			{ [ -z "${1:-}" ] || { [ "$ln" = "$1" ] && [ "$rn" = "$2" ]; }; }; then
			stable=$((stable + 1))
			if [ $stable -ge 2 ]; then
				SETTLED="$ln $rn"
				return 0
			fi
		else
			stable=0
		fi
		prev=$cur
		sleep 0.05
	done
	SETTLED="$ln $rn"
	return 1
}

pool_snapshot() { # name queries errors timeouts exhausted acquired created closed
	lval "SELECT name, queries_total, errors_total, timeouts_total, exhausted_total, acquired_total, created_total, closed_total FROM netrun_pool.pool_stats ORDER BY name" | tr '|' ' '
}

# Until the previous cell's clients are gone from both servers and every
# pool is full, healthy and idle again (a session-mode connection closes
# with its backend; the pool opens another to keep pool_min).
wait_quiet() {
	local i
	for ((i = 0; i < 200; i++)); do
		if [ "$(lval "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'")" = 0 ] &&
			[ "$(rval "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'")" = 0 ] &&
			[ "$(lval "$POOLS_READY_SQL")" = 3 ]; then
			return 0
		fi
		sleep 0.05
	done
	problem "$1: the previous cell's sessions or the pools did not settle within 10 s"
}

run_pgbench() { # run_pgbench CONTESTANT CLIENTS SECONDS OUTDIR
	local w=$1 c=$2 secs=$3 out=$4 j
	j=$((c < 2 ? c : 2))
	mkdir -p "$out"
	local args=(-n -M prepared -T "$secs" -c "$c" -j "$j" -D tenant_set=0 -f "$WORK/scripts/$w.sql")
	local TIMEFORMAT='%R %U %S'
	if [ "$w" = direct ]; then
		{ time PGPASSFILE=$WORK/pgpass pgbench "${args[@]}" -h 127.0.0.1 -p "$REMOTE_PORT" -U remote_app app \
			>"$out/stdout" 2>"$out/stderr" || true; } 2>"$out/time"
	else
		{ time pgbench "${args[@]}" -h 127.0.0.1 -p "$LOCAL_PORT" -U app postgres \
			>"$out/stdout" 2>"$out/stderr" || true; } 2>"$out/time"
	fi
}

CELLS=$WORK/out/cells.tsv
: >"$CELLS"
# run_cell ROUND CONTESTANT CLIENTS: one line in $CELLS
run_cell() {
	local r=$1 w=$2 c=$3 id="r$1_$2_c$3"
	local out=$WORK/logs/$id
	wait_quiet "$id"
	local before after rt0 rt1 lt0 lt1 mt0 mt1 w0 w1 base
	before=$(pool_snapshot)
	# CPU is read with every backend of the servers settled: before, and
	# after the cell's clients (and a session pool's connections) are gone
	# and the pools have opened their connections again
	settle || problem "$id: the servers' processes did not settle before the cell"
	base=$SETTLED
	w0=$(date +%s.%N)
	rt0=$(server_ticks remote)
	lt0=$(server_ticks local)
	mt0=$(machine_ticks)
	run_pgbench "$w" "$c" "$DURATION" "$out"
	# shellcheck disable=SC2086
	settle $base || problem "$id: the servers' processes did not settle after the cell (children local, remote: $SETTLED; before: $base): its CPU figures may be off"
	mt1=$(machine_ticks)
	rt1=$(server_ticks remote)
	lt1=$(server_ticks local)
	w1=$(date +%s.%N)
	after=$(pool_snapshot)
	local tps xacts failed aborted elapsed pb_user pb_sys
	tps=$(awk '/^tps = / {print $3; exit}' "$out/stdout")
	xacts=$(awk -F': ' '/^number of transactions actually processed/ {split($2, a, "/"); print a[1]; exit}' "$out/stdout")
	failed=$(awk '/^number of failed transactions/ {print $5; exit}' "$out/stdout")
	aborted=$(grep -c 'aborted' "$out/stderr" || true)
	read -r elapsed pb_user pb_sys <"$out/time"
	if [ -z "$tps" ] || [ "${aborted:-0}" != 0 ] || [ "${failed:-0}" != 0 ]; then
		problem "$id: pgbench: tps '${tps:-none}', failed ${failed:-?}, aborted clients ${aborted:-?}: $(grep -m1 -iE 'error|abort|fatal' "$out/stderr" | cut -c1-200 || true)"
	fi
	# the pool counters: which connection served the calls
	local deltas
	deltas=$(LC_ALL=C join <(echo "$before") <(echo "$after") |
		awk '{printf "%s %d %d %d %d %d %d %d\n", $1, $9 - $2, $10 - $3, $11 - $4, $12 - $5, $13 - $6, $14 - $7, $15 - $8}')
	echo "$deltas" >"$out/pool_deltas"
	local name dq derr dto dex want=${CONN[$w]}
	while read -r name dq derr dto dex _; do
		if [ "$name" = "$want" ]; then
			if [ -z "$xacts" ] || [ "$dq" -lt "$xacts" ] || [ "$dq" -gt $((xacts + c)) ]; then
				problem "$id: $name served $dq calls, pgbench counted ${xacts:-no} transactions"
			fi
		elif [ "$dq" != 0 ]; then
			problem "$id: $name, not this contestant's connection, served $dq calls"
		fi
		[ "$derr" = 0 ] && [ "$dto" = 0 ] && [ "$dex" = 0 ] ||
			problem "$id: $name: errors +$derr, timeouts +$dto, exhausted +$dex"
	done <<<"$deltas"
	local guard=-
	if [ "$w" = tenant_guard ]; then
		guard=$(lval "SELECT tenant_guard FROM netrun_pool.health WHERE name = 't_guard'")
		[ "$guard" = enforced ] || problem "$id: health.tenant_guard of t_guard is '$guard', not enforced"
	fi
	local wq
	wq=$(awk -v n="$want" '$1 == n {print $2}' <<<"$deltas")
	local created
	created=$(awk -v n="$want" '$1 == n {print $7}' <<<"$deltas")
	# other CPU: the machine's busy time less both servers' and pgbench's
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$r" "$w" "$c" "${tps:-0}" "${xacts:-0}" "${failed:-?}" "${aborted:-?}" "${wq:--}" \
		$((rt1 - rt0)) $((lt1 - lt0)) "$(awk -v u="$pb_user" -v s="$pb_sys" -v k="$CLK_TCK" 'BEGIN {printf "%d", (u + s) * k + 0.5}')" \
		$((mt1 - mt0)) "$elapsed" "$guard" "${created:--}" "$(cut -d' ' -f1 /proc/loadavg)" \
		"$(awk -v a="$w0" -v b="$w1" 'BEGIN {printf "%.3f", b - a}')" >>"$CELLS"
	log "$(printf '%-12s c=%-2s round %d: %8.0f tps' "$w" "$c" "$r" "${tps:-0}")"
}

# ------------------------------------------------------------ check pass
# pg_stat_statements counts on the remote, each contestant alone at c = 4
# for CHECK_S seconds: the statements the remote runs per call.  (Also the
# warm-up of the timed rounds.)
log "check pass: the remote's statements per call (pg_stat_statements on), ${CHECK_S} s per contestant"
rpsql -At -c "ALTER SYSTEM SET compute_query_id = on" -c "ALTER SYSTEM SET pg_stat_statements.track = 'top'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
PGSS=$WORK/out/pgss.tsv
: >"$PGSS"
for w in "${CONTESTANTS[@]}"; do
	wait_quiet "check_$w"
	rval "SELECT pg_stat_statements_reset()" >/dev/null
	run_pgbench "$w" 4 "$CHECK_S" "$WORK/logs/check_$w"
	xacts=$(awk -F': ' '/^number of transactions actually processed/ {split($2, a, "/"); print a[1]; exit}' "$WORK/logs/check_$w/stdout")
	xacts=${xacts:-0}
	[ "$xacts" -gt 0 ] && ! grep -q aborted "$WORK/logs/check_$w/stderr" ||
		problem "check pass, $w: pgbench failed: $(head -c 300 "$WORK/logs/check_$w/stderr")"
	# remote_app's statements (the health probes' too, filtered out below by their rate)
	rpsql -At -F $'\t' -c "SELECT '$w', $xacts, s.calls, round((s.total_exec_time / s.calls * 1000)::numeric, 1), regexp_replace(s.query, '\s+', ' ', 'g') FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = 'remote_app' AND s.dbid = (SELECT oid FROM pg_database WHERE datname = 'app') ORDER BY s.calls DESC" >>"$PGSS"
	sel=$(awk -F'\t' -v w="$w" '$1 == w && $5 == "SELECT $1" {print $3}' "$PGSS")
	[ -n "$sel" ] && [ "$sel" -ge $((xacts * 9 / 10)) ] ||
		problem "check pass, $w: the remote counted ${sel:-no} SELECT 1 for $xacts pgbench transactions"
done
rpsql -At -c "ALTER SYSTEM RESET compute_query_id" -c "ALTER SYSTEM RESET pg_stat_statements.track" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
[ "$(rval "SHOW compute_query_id")" = off ] || problem "compute_query_id did not go back to off for the timed rounds"

# -------------------------------------------------------------- rounds
# Round r, client count index k: the contestants from the (r + k)-th on.
n=${#CONTESTANTS[@]}
NCELLS=$((ROUNDS * ${#CLIENTS[@]} * n))
log "timing: $ROUNDS rounds x ${#CLIENTS[@]} client counts x $n contestants, $DURATION s each ($NCELLS cells)"
for ((r = 1; r <= ROUNDS; r++)); do
	sync
	for ((k = 0; k < ${#CLIENTS[@]}; k++)); do
		for ((i = 0; i < n; i++)); do
			run_cell "$r" "${CONTESTANTS[$(((i + r + k) % n))]}" "${CLIENTS[$k]}"
		done
	done
done

# ------------------------------------------------------------ idle probe
# direct at c = 1 alone, then beside one busy loop at nice 19 (it only
# takes CPU nobody else wants, and keeps the vCPUs from going idle)
IDLE=$WORK/out/idle.tsv
: >"$IDLE"
log "idle probe: direct at c = 1, alone and beside a busy loop at nice 19, $IDLE_PAIRS pair(s)"
for ((p = 1; p <= IDLE_PAIRS; p++)); do
	for how in alone busy; do
		wait_quiet "idle_${p}_$how"
		if [ $how = busy ]; then
			nice -n 19 bash -c 'while :; do :; done' 9>&- &
			SPINNER_PID=$!
		fi
		mt0=$(machine_ticks)
		run_pgbench direct 1 "$DURATION" "$WORK/logs/idle_${p}_$how"
		mt1=$(machine_ticks)
		stop_spinner
		tps=$(awk '/^tps = / {print $3; exit}' "$WORK/logs/idle_${p}_$how/stdout")
		[ -n "$tps" ] || problem "idle probe $p ($how): pgbench failed"
		printf '%s\t%s\t%s\t%s\n' "$p" "$how" "${tps:-0}" $((mt1 - mt0)) >>"$IDLE"
		log "$(printf 'direct c=1 %-5s pair %d: %8.0f tps' "$how" "$p" "${tps:-0}")"
	done
done

[ "$(lval "SELECT worker_pid FROM netrun_pool.worker_status()")" = "$WORKER_PID" ] ||
	problem "the netrun_pool worker changed pid during the run (was $WORKER_PID)"
GUARD_AFTER=$(lval "SELECT string_agg(name || '=' || coalesce(tenant_guard, '-'), ' ' ORDER BY name) FROM netrun_pool.health")
STATS_AFTER=$(lval "SELECT name, queries_total, errors_total, created_total, closed_total, coalesce(last_error, '-') FROM netrun_pool.pool_stats ORDER BY name" | tr '|' ' ')
PG_FULL=$(lval "SELECT version()")
PG_VERSION=$(lval "SHOW server_version")
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
LOCAL_ERRORS=$(grep -cE ' (ERROR|FATAL|PANIC): ' "$WORK/local.log" || true)
REMOTE_ERRORS=$(grep -cE ' (ERROR|FATAL|PANIC): ' "$WORK/remote.log" || true)
cp "$WORK/local.log" "$WORK/remote.log" "$WORK/out/" 2>/dev/null || true
stop_servers

# ---------------------------------------------------------------- report
med() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "nan"; exit } print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { # col CONTESTANT CLIENTS FIELD: that field of every round
	awk -F'\t' -v w="$1" -v c="$2" -v f="$3" '$2 == w && $3 == c {print $f}' "$CELLS"
}
# per-round ratio tps(a) / tps(b) at c, one line per round
ratios() {
	awk -F'\t' -v a="$1" -v b="$2" -v c="$3" '
		$3 == c { t[$1, $2] = $4; if ($1 > n) n = $1 }
		END { for (r = 1; r <= n; r++) if (t[r, b] > 0) printf "%.4f\n", t[r, a] / t[r, b] }' "$CELLS"
}
# per-round extra latency per call at c (µs): 1e6 / tps(a) - 1e6 / tps(b)
extra_us() {
	awk -F'\t' -v a="$1" -v b="$2" -v c="$3" '
		$3 == c { t[$1, $2] = $4; if ($1 > n) n = $1 }
		END { for (r = 1; r <= n; r++) if (t[r, a] > 0 && t[r, b] > 0) printf "%.2f\n", 1e6 / t[r, a] - 1e6 / t[r, b] }' "$CELLS"
}
# µs of CPU per call, per round, from a ticks field
cpu_us() {
	awk -F'\t' -v w="$1" -v c="$2" -v f="$3" -v k="$CLK_TCK" '$2 == w && $3 == c && $5 > 0 {printf "%.1f\n", $f * 1e6 / k / $5}' "$CELLS"
}
# the machine's busy time left for others, % of all cores, per round
other_pct() {
	awk -F'\t' -v w="$1" -v c="$2" -v k="$CLK_TCK" -v n="$NCPU" '$2 == w && $3 == c && $17 > 0 {printf "%.1f\n", ($12 - $9 - $10 - $11) * 100 / ($17 * k * n)}' "$CELLS"
}
range() { sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%s–%s", lo, hi}'; }
f0() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }
f1() { awk -v v="$1" 'BEGIN { printf "%.1f", v }'; }
f2() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }

medians_table() {
	echo "| c | contestant | tps (median) | tps range over rounds | ÷ plain (per-round median) | remote CPU µs/call | local CPU µs/call | pgbench CPU µs/call |"
	echo "|---:|---|---:|---:|---:|---:|---:|---:|"
	local c w
	for c in "${CLIENTS[@]}"; do
		for w in "${CONTESTANTS[@]}"; do
			printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$c" "$w" \
				"$(f0 "$(col "$w" "$c" 4 | med)")" \
				"$(col "$w" "$c" 4 | awk '{printf "%.0f\n", $1}' | range)" \
				"$(f2 "$(ratios "$w" plain "$c" | med)")" \
				"$(f1 "$(cpu_us "$w" "$c" 9 | med)")" \
				"$(f1 "$(cpu_us "$w" "$c" 10 | med)")" \
				"$(f1 "$(cpu_us "$w" "$c" 11 | med)")"
		done
	done
}
ratio_table() {
	echo "| c | tenant_off / plain | tenant_guard / plain | plain / session | tenant_guard / tenant_off | direct / plain |"
	echo "|---:|---:|---:|---:|---:|---:|"
	local c
	for c in "${CLIENTS[@]}"; do
		printf '| %s | %s | %s | %s | %s | %s |\n' "$c" \
			"$(f2 "$(ratios tenant_off plain "$c" | med)")" \
			"$(f2 "$(ratios tenant_guard plain "$c" | med)")" \
			"$(f2 "$(ratios plain session "$c" | med)")" \
			"$(f2 "$(ratios tenant_guard tenant_off "$c" | med)")" \
			"$(f2 "$(ratios direct plain "$c" | med)")"
	done
}
# per-round difference of remote CPU per call (µs) at c: a - b
cpu_diff() {
	awk -F'\t' -v a="$1" -v b="$2" -v c="$3" -v k="$CLK_TCK" '
		$3 == c && $5 > 0 { u[$1, $2] = $9 * 1e6 / k / $5; if ($1 > n) n = $1 }
		END { for (r = 1; r <= n; r++) if ((r, a) in u && (r, b) in u) printf "%.2f\n", u[r, a] - u[r, b] }' "$CELLS"
}
cpu_diff_table() {
	echo "| what | c = 1 | c = 4 | c = 16 |"
	echo "|---|---:|---:|---:|"
	local a b what
	for spec in "plain session the reset (plain − session)" \
		"tenant_off plain the tenant by set_config (tenant_off − plain)" \
		"tenant_guard plain the tenant by guard_assert (tenant_guard − plain)"; do
		read -r a b what <<<"$spec"
		printf '| %s | %s | %s | %s |\n' "$what" "$(f1 "$(cpu_diff "$a" "$b" 1 | med)")" \
			"$(f1 "$(cpu_diff "$a" "$b" 4 | med)")" "$(f1 "$(cpu_diff "$a" "$b" 16 | med)")"
	done
}
latency_table() {
	echo "| what | µs per call at c = 1 (per-round median) | per round |"
	echo "|---|---:|---|"
	local a b what
	for spec in "plain session the reset (plain − session)" \
		"tenant_off plain the tenant by set_config (tenant_off − plain)" \
		"tenant_guard plain the tenant by guard_assert (tenant_guard − plain)" \
		"tenant_guard tenant_off guard_assert over set_config (tenant_guard − tenant_off)"; do
		read -r a b what <<<"$spec"
		printf '| %s | %s | %s |\n' "$what" "$(f1 "$(extra_us "$a" "$b" 1 | med)")" \
			"$(extra_us "$a" "$b" 1 | awk '{printf "%s%.0f", (NR > 1 ? ", " : ""), $1}')"
	done
}
pgss_table() {
	echo "| contestant | statement on the remote (normalized) | calls per pgbench transaction | mean exec µs |"
	echo "|---|---|---:|---:|"
	# statements run at least once per 20 transactions (the health probes run
	# once per 10 s and fall below)
	awk -F'\t' '$2 > 0 && $3 / $2 >= 0.05 {
		q = $5; gsub(/\|/, "\\|", q); if (length(q) > 110) q = substr(q, 1, 107) "..."
		printf "| %s | `%s` | %.2f | %s |\n", $1, q, $3 / $2, $4 }' "$PGSS"
}
raw_table() {
	echo "| round | c | contestant | tps | transactions | calls on its connection | remote CPU s | local CPU s | pgbench CPU s | machine busy, % of $NCPU cores | others, % of $NCPU cores | load avg (1 min) |"
	echo "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' -v k="$CLK_TCK" -v n="$NCPU" '{
		cap = $17 * k * n
		printf "| %s | %s | %s | %.0f | %s | %s | %.2f | %.2f | %.2f | %.0f | %.1f | %s |\n",
			$1, $3, $2, $4, $5, $8, $9 / k, $10 / k, $11 / k, $12 * 100 / cap, ($12 - $9 - $10 - $11) * 100 / cap, $16 }' "$CELLS" |
		sort -t'|' -k3,3n -k4,4 -k2,2n
}
# cells more than 15% from their contestant's median at that c
OUTLIERS=$WORK/out/outliers.txt
: >"$OUTLIERS"
for c in "${CLIENTS[@]}"; do
	for w in "${CONTESTANTS[@]}"; do
		m=$(col "$w" "$c" 4 | med)
		awk -F'\t' -v w="$w" -v c="$c" -v m="$m" -v k="$CLK_TCK" -v n="$NCPU" '
			$2 == w && $3 == c && m > 0 && ($4 / m > 1.15 || $4 / m < 0.85) {
				printf "round %s, %s at c = %s: %.0f tps, %+.0f%% from the median %.0f; others used %.1f%% of the cores in that cell (load %s)\n",
					$1, w, c, $4, ($4 / m - 1) * 100, m, ($12 - $9 - $10 - $11) * 100 / ($17 * k * n), $16 }' "$CELLS" >>"$OUTLIERS"
	done
done
OTHER_MAX=$(awk -F'\t' -v k="$CLK_TCK" -v n="$NCPU" '$17 > 0 {v = ($12 - $9 - $10 - $11) * 100 / ($17 * k * n); if (v > m) m = v} END {printf "%.1f", m}' "$CELLS")
OTHER_MED=$(awk -F'\t' -v k="$CLK_TCK" -v n="$NCPU" '$17 > 0 {printf "%.2f\n", ($12 - $9 - $10 - $11) * 100 / ($17 * k * n)}' "$CELLS" | med)
XACTS_TOTAL=$(awk -F'\t' '{s += $5} END {print s}' "$CELLS")

ELAPSED=$((SECONDS - T0))
mkdir -p "$(dirname "$RESULT")"
{
	echo "# The reset between callers and the remote tenant, per pooled call: $DATE ($MODE mode)"
	echo
	echo "Made by \`${QUICK:+QUICK=1 }bash bench/remote_tenant.sh\` in $((ELAPSED / 60)) min $((ELAPSED % 60)) s$([ "$LOCK_WAIT" -gt 0 ] && echo " ($((LOCK_WAIT / 60)) min $((LOCK_WAIT % 60)) s of it waiting for /tmp/netrun_pool.lock)")."
	echo "Issue 14: in transaction mode every pooled call is followed by a reset of the remote session"
	echo "(\`DISCARD ALL\` and one \`SELECT\` of \`set_config()\`, pipelined behind the call); a call that"
	echo "carries a tenant first sets it on the remote (\`set_config\` with \`tenant_guard => 'off'\`,"
	echo "\`netrun_pool.guard_assert()\` with the remote guard). Every contestant runs \`SELECT 1\` on the remote."
	echo
	echo "| contestant | what a pgbench transaction does |"
	echo "|---|---|"
	echo "| plain | \`SELECT netrun_pool.fetchval('t_plain', 'SELECT 1')\`; t_plain: transaction mode, \`tenant_guard => 'off'\`, pool_min = pool_max = $POOL_MAX; no tenant: the call, then the reset |"
	echo "| session | \`SELECT netrun_pool.fetchval('t_session', 'SELECT 1')\`; t_session: \`pool_mode => 'session'\`, \`tenant_guard => 'off'\`, pool_min = pool_max = $SESSION_POOL_MAX (one connection per pgbench client, so c = 16 does not wait for connections); no reset between calls |"
	echo "| tenant_off | \`set_tenant('$TENANT')\` once per pgbench client, then \`fetchval('t_plain', 'SELECT 1')\`: \`set_config\` of the tenant, the call, the reset |"
	echo "| tenant_guard | \`set_tenant('$TENANT')\` once per pgbench client, then \`fetchval('t_guard', 'SELECT 1')\`; t_guard: transaction mode, \`tenant_guard => 'required'\`, pool $POOL_MAX: \`guard_assert\`, the call, the reset |"
	echo "| direct | pgbench straight at the remote, \`SELECT 1\`, as the same remote role: the floor at c = 4 and 16 (at c = 1, see the idle probe) |"
	echo
	echo "## Medians over $ROUNDS rounds"
	echo
	medians_table
	echo
	echo "\"÷ plain\" is tps(contestant) / tps(plain) within each round, then the median over rounds."
	echo "CPU per call: the server's CPU time during the cell (postmaster, live and reaped children,"
	echo "\`/proc/<pid>/stat\`, ${CLK_TCK} Hz ticks, read with no backend starting or exiting: after the cell the"
	echo "script waits until the clients' backends are gone and a session pool has opened its connections"
	echo "again, which is counted) over pgbench's transactions; \"local\" includes the"
	echo "netrun_pool worker and the local backends, and at c = 1 their polling for a lone call"
	echo "(\`netrun_pool.spin_wait_us\`); direct's local CPU is the idle server's."
	echo
	echo "## Ratios (tps, within each round, median over rounds)"
	echo
	ratio_table
	echo
	echo "Below 1 in the first two columns: slower than plain. plain / session below 1: the reset's cost."
	echo
	echo "### Added latency per call at c = 1"
	echo
	latency_table
	echo
	echo "At c = 1 a pgbench transaction is one call at a time, so 1e6 / tps is its latency in µs;"
	echo "each row is the difference of two contestants' latencies within a round."
	echo
	echo "### The remote's CPU per call: differences"
	echo
	cpu_diff_table
	echo
	echo "µs of the remote server's CPU per call, contestant minus baseline within a round, median over rounds."
	echo
	echo "## direct at c = 1: the idle probe"
	echo
	echo "After the rounds, direct at c = 1 ran $IDLE_PAIRS time(s) alone and $IDLE_PAIRS time(s) beside one busy loop"
	echo "(\`nice -n 19 bash -c 'while :; do :; done'\`, which takes only CPU time no one else wants), $DURATION s each:"
	echo
	echo "| pair | alone, tps | beside the busy loop, tps |"
	echo "|---:|---:|---:|"
	awk -F'\t' '{ t[$1, $2] = $3; if ($1 > n) n = $1 }
		END { for (p = 1; p <= n; p++) printf "| %d | %.0f | %.0f |\n", p, t[p, "alone"], t[p, "busy"] }' "$IDLE"
	echo
	echo "CPU idle driver of this machine: $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo unknown),"
	echo "governor: $(cat /sys/devices/system/cpu/cpuidle/current_governor 2>/dev/null || echo unknown)."
	echo "direct at c = 1 waits on idle CPUs at every hop; the pooled contestants' worker and backend poll"
	echo "for a lone call (\`netrun_pool.spin_wait_us\`, default 500 µs), so their CPUs stay awake. direct's"
	echo "c = 1 figure is therefore no floor for the others at c = 1; at c = 4 and 16 the CPUs stay busy."
	echo
	echo "## What the remote runs per call (check pass)"
	echo
	echo "Each contestant alone for ${CHECK_S} s at c = 4 with \`pg_stat_statements\` counting on the remote"
	echo "(\`compute_query_id = on\`, \`track = top\`; during the timed rounds it was loaded but idle:"
	echo "\`track = none\`, \`compute_query_id = off\`). Statements of the role \`remote_app\` that ran at"
	echo "least once per 20 transactions (the health probes fall below that):"
	echo
	pgss_table
	echo
	echo "\"mean exec µs\" is pg_stat_statements' execution time only: not parsing, planning, the"
	echo "implicit transaction around each synced statement or the protocol messages, which the remote"
	echo "CPU per call above includes."
	echo
	echo "## Checks that each contestant ran as intended"
	echo
	echo "- Every cell: pgbench reported no failed transaction and no aborted client; the calls counted by"
	echo "  \`netrun_pool.pool_stats.queries_total\` on the contestant's connection rose by pgbench's transaction"
	echo "  count (at most c more: calls in flight when pgbench stopped), on the other two connections by 0,"
	echo "  and \`errors_total\`, \`timeouts_total\` and \`exhausted_total\` by 0 everywhere; direct moved no"
	echo "  pool counter. After each tenant_guard cell \`netrun_pool.health.tenant_guard\` of t_guard was read."
	echo "  Pool counters after the check pass and the rounds (name, queries, errors, created, closed,"
	echo "  last error):"
	echo
	echo '```'
	echo "$STATS_AFTER"
	echo '```'
	echo
	echo "  t_session's created and closed counts grow by c per session cell: a session-mode connection"
	echo "  closes when its backend (a pgbench client) ends, and the pool opens another to keep pool_min;"
	echo "  the script waits for the pool to be full and idle before every cell, so no call waits for a connect."
	echo "- \`netrun_pool.health.tenant_guard\` before the run: $GUARD_STATES; after: $GUARD_AFTER."
	echo "- Functional checks, as the local role \`app\` before the timed rounds:"
	echo "  - t_guard without a tenant sees $(check_val guard_none_rows) rows of docs; with \`set_tenant('A')\` the remote's"
	echo "    \`current_tenant()\` is $(check_val guard_tenant) and it sees $(check_val guard_rows) rows (A has $A_ROWS);"
	echo "    \`set_config('netrun_pool.tenant_id', 'B', false)\` sent as a call's SQL is refused by the remote"
	echo "    (\`${SPOOF_ERROR#ERROR:  }\`)."
	echo "  - t_plain (\`tenant_guard => 'off'\`) with tenant A sets \`app.current_tenant_id\` = $(check_val off_setting) on the"
	echo "    remote; the remote's \`current_tenant()\` stays $(check_val off_guard_tenant) and the guarded policy shows"
	echo "    $(check_val off_rows) rows: tenant_off measures the cost of the \`set_config\` statement, and its"
	echo "    tenant does not reach a policy on \`current_tenant()\`."
	echo "  - Ten calls on t_plain, one after the other, that each read, then set, a custom setting:"
	echo "    $(plural "$PLAIN_PIDS" "remote session") served them, and $PLAIN_LEFT saw the previous call's value (the reset ran)."
	echo "    The same on t_session: $(plural "$SESSION_PIDS" "remote session"), $SESSION_LEFT of 10 calls saw it (no reset between a"
	echo "    backend's calls)."
	echo "  - The pool counters were reset (\`reset_stats()\`) after these checks: the refused \`set_config\`"
	echo "    above is an error of t_guard (42501) and is not in the counts below or the cells' deltas."
	echo "- The netrun_pool worker kept its pid. ERROR/FATAL lines in the server logs: local $LOCAL_ERRORS,"
	echo "  remote $REMOTE_ERRORS (the functional check's refused \`set_config\` is one of the remote's)."
	echo "- $XACTS_TOTAL timed transactions in all."
	echo
	echo "## Problems"
	echo
	if [ -s "$PROBLEMS" ]; then sed 's/^/- /' "$PROBLEMS"; else echo "None."; fi
	echo
	echo "## Outliers"
	echo
	if [ -s "$OUTLIERS" ]; then
		echo "Cells more than 15% from their contestant's median at the same c:"
		echo
		sed 's/^/- /' "$OUTLIERS"
	else
		echo "No cell was more than 15% from its contestant's median at the same c."
	fi
	echo
	echo "## Machine and load"
	echo
	echo "- $NCPU cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo) RAM; pgbench, both servers and the worker share them"
	echo "- $PG_FULL"
	echo "- netrun_pool at $GIT_REV$([ -n "$GIT_DIRTY" ] && echo " plus uncommitted changes to $GIT_DIRTY (the working tree was built)"), built without assertions (\`-O2\`, PGXS defaults)"
	echo "- load average before the run: $LOAD_BEFORE; after: $LOAD_AFTER (the run itself keeps up to two cores busy)"
	echo "- CPU used by other processes (the machine's busy time less both servers' and pgbench's) per cell:"
	echo "  median ${OTHER_MED}%, at most ${OTHER_MAX}% of the $NCPU cores (the raw table has each cell; from"
	echo "  ${CLK_TCK} Hz ticks, so a few points either way. The machine's busy time is sampled at each tick,"
	echo "  the processes' is exact: with short bursts of work (direct at c = 1) the machine's reads low,"
	echo "  and the estimate for others goes negative; read it as a flag for a busy neighbour, not a measure)"
	echo
	echo "## Method"
	echo
	echo "- Two servers on 127.0.0.1, both \`max_connections = 100\`, \`shared_buffers = 128MB\`, \`jit = off\`,"
	echo "  \`autovacuum = off\`. The remote: \`session_preload_libraries = 'netrun_pool'\`,"
	echo "  \`netrun_pool.tenant_mode = pool\`, \`netrun_pool.guard_key_file\` (32 random bytes as hex, mode 600, the"
	echo "  same file as the local server's), \`CREATE EXTENSION netrun_pool\` in the database \`app\`;"
	echo "  \`docs(tenant_id text, body text)\`, 10 rows for each of A, B, C, ENABLE + FORCE row-level security,"
	echo "  policy \`tenant_id = netrun_pool.current_tenant()\`, SELECT and INSERT granted to \`remote_app\`, a"
	echo "  login role with a scram-sha-256 password (\`pg_hba\`: \`host all all 127.0.0.1/32 scram-sha-256\`),"
	echo "  which the pool reads from a passfile. The local server: \`shared_preload_libraries = 'netrun_pool'\`,"
	echo "  the same \`guard_key_file\`; pgbench connects as the role \`app\` (usage granted on the three connections)."
	echo "- pgbench $(pgbench --version | awk '{print $3}'): \`-n -M prepared -T $DURATION -c C -j min(C, 2)\`, c = ${CLIENTS[*]}; local"
	echo "  contestants over TCP to the local server, direct over TCP to the remote as \`remote_app\`. tps is"
	echo "  pgbench's (without initial connection time). Prepared mode keeps the local parse and plan out of"
	echo "  every contestant's figure alike; the pool sends the remote statement with the extended protocol."
	echo "- The tenant contestants' script:"
	echo
	echo '```'
	cat "$WORK/scripts/tenant_guard.sql"
	echo '```'
	echo
	echo "  run with \`-D tenant_set=0\`: pgbench variables live as long as the client, so \`set_tenant\` runs in"
	echo "  each client's first transaction only (c statements per cell), and every other transaction is the"
	echo "  call alone; the local tenant is a session setting and stays."
	echo "- $ROUNDS rounds; each round runs c = 1, 4, 16 in turn, and at each c every contestant once, in an"
	echo "  order that turns with the round and with c (round r, the k-th client count: starting with the"
	echo "  (r + k)-th contestant of ${CONTESTANTS[*]}). Before each cell the script waits until the previous"
	echo "  cell's clients have left both servers and every pool is full, healthy and idle; \`sync\` before each round."
	echo "  Ratios against plain are taken within a round, then the median over rounds is reported."
	echo "- The check pass (above) ran before the rounds and doubles as their warm-up."
	echo
	echo "## Raw cells"
	echo
	raw_table
} >"$RESULT"

echo
echo "netrun_pool remote tenant bench, $MODE mode, $DATE: $ROUNDS rounds of $DURATION s, PostgreSQL $PG_VERSION, $NCPU cores"
echo
medians_table
echo
ratio_table
echo
latency_table
echo
if [ -s "$PROBLEMS" ]; then
	echo "PROBLEMS:"
	sed 's/^/- /' "$PROBLEMS"
fi
[ -s "$OUTLIERS" ] && { echo "outliers:"; sed 's/^/- /' "$OUTLIERS"; }
echo
echo "results: $RESULT"
log "done in $((ELAPSED / 60)) min $((ELAPSED % 60)) s"
[ ! -s "$PROBLEMS" ]
