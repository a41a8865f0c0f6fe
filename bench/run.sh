#!/usr/bin/env bash
# bench/run.sh: netrun_pool against dblink, postgres_fdw and pgbouncer.
#
#   bash bench/run.sh            # as root: the full run (under 20 minutes)
#   QUICK=1 bash bench/run.sh    # S1, S2 at c = 1 and 32, S6, S7 at c = 1, few contestants (about a minute)
#
# It builds and installs netrun_pool (optimized, no asserts) from a copy of
# this tree, starts a remote server with a 1-million-row table, pgbouncer in
# transaction mode in front of it, and a local server with netrun_pool,
# dblink and postgres_fdw, all on 127.0.0.1 and run by the unprivileged user
# netrun_bench under $NETRUN_BENCH_DIR (default /var/tmp/netrun_pool_bench_run,
# made anew each run).  pgbench then runs every cell (contestant x scenario x
# clients) with its per-transaction log, while the remote's pg_stat_activity
# is sampled every 100 ms (its backends by role, and what they wait on).
# The results go to bench/results/<date>.md
# (<date>-quick.md in quick mode) with a chart beside it (.png); the summary
# table and the targets are also printed to stdout, and sit in the results
# file between <!-- bench:summary:start --> and <!-- bench:summary:end -->.
# A full run also puts them in README and docs/benchmarks.md (bench/publish.sh;
# NO_PUBLISH=1 leaves them alone, for a run that checks the harness).
# A missed target is reported, not fatal.
#
# Scenarios: S1 SELECT 1; S2 one row by primary key; S3 100 rows; S4
# 100,000 rows; S5 an INSERT; S6 S2 carrying a tenant (netrun_pool: the
# tenant set once per client with set_tenant(), by set_config on p4 and by
# the remote guard on p4g; dblink: set_config(..., true) and the query in
# one remote transaction); S7 S2 as a read_only call.
#
# The cells the targets compare run ROUNDS times in all (3 in full mode, 1
# in quick), the extra rounds after the main pass, in groups whose cells
# run side by side in time (ROUND_GROUPS); a target's verdict is the
# median over the rounds of the ratio within a round, so a burst of noise
# on this shared machine moves one round, not the verdict.  The tables
# show the main pass.
#
# It takes /tmp/netrun_pool.lock, as scripts/test.sh does, so the two never
# run at the same time.  Environment: QUICK=1; DURATION (seconds per cell);
# ROUNDS; PLAN and CONTESTANTS (other cells: see "cells" below); KEEP=1
# keeps the servers' folder (the servers are always stopped); NO_PUBLISH=1;
# PIPELINE_DEPTH=N registers p4, p16 and p4g with pipeline_depth => N (a
# pool code that has it; unset, the pools get register()'s default).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bench=$here/bench
. "$here/scripts/common.sh"

require_root
# (scripts/test.sh runs the quick mode as its smoke test, holding the lock)
take_bench_lock

T0=$SECONDS
BENCH_USER=netrun_bench
WORK=${NETRUN_BENCH_DIR:-/var/tmp/netrun_pool_bench_run}
DATE=$(date +%F)
if [ -n "${QUICK:-}" ]; then
	MODE=quick
	DURATION=${DURATION:-2}
	RESULT_BASE=$bench/results/$DATE-quick
else
	MODE=full
	DURATION=${DURATION:-5}
	RESULT_BASE=$bench/results/$DATE
fi

# ---------------------------------------------------------------- clean-up
# Only what this script started: the two servers (pg_ctl), pgbouncer and the
# sampler (by their pids).
SAMPLER_PID=
stop_all() {
	[ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null || true
	SAMPLER_PID=
	if [ -f "$WORK/pgbouncer.pid" ]; then
		local p
		p=$(cat "$WORK/pgbouncer.pid" 2>/dev/null || true)
		# only if that pid is still our user's pgbouncer
		if [ -n "$p" ] && [ "$(awk '/^Name:/ {n = $2} /^Uid:/ {u = $2} END {print n, u}' "/proc/$p/status" 2>/dev/null)" = "pgbouncer $(id -u "$BENCH_USER" 2>/dev/null)" ]; then
			kill "$p" 2>/dev/null || true
		fi
		rm -f "$WORK/pgbouncer.pid"
	fi
	stop_bench_servers "$BENCH_USER" "$WORK/local" "$WORK/remote"
}
on_exit() {
	local rc=$?
	stop_all
	if [ -z "${KEEP:-}" ] && [ -d "$WORK" ]; then rm -rf "$WORK"; fi
	[ -n "${KEEP:-}" ] && echo "kept $WORK"
	exit $rc
}

ensure_packages pgbouncer gnuplot-nox
ensure_user "$BENCH_USER"
[ -x /usr/sbin/pgbouncer ] || die "pgbouncer is missing"
command -v gnuplot >/dev/null || die "gnuplot is missing"

# an interrupted earlier run: stop its servers, then start afresh
stop_all
rm -rf "$WORK"
mkdir -p "$WORK/run" "$WORK/logs" "$WORK/samples" "$WORK/scripts" "$WORK/chart" "$WORK/out"
trap on_exit EXIT
trap 'exit 130' INT TERM
chmod 755 "$WORK"

log() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
PROBLEMS=$WORK/out/problems.txt
: >"$PROBLEMS"
problem() { echo "$*" >>"$PROBLEMS"; log "PROBLEM: $*"; }

log "building and installing netrun_pool (optimized, no asserts)"
copy_tree "$here" "$WORK/src" "$BENCH_USER"
chown -R "$BENCH_USER:" "$WORK"
build_and_install "$WORK/src" "$BENCH_USER" -j2

# below the ephemeral range (32768-60999 on Linux): a port in it can be
# taken by any client connection's local end, and a listen on it then
# fails (pgbouncer's did, after a test run had left many)
LOCAL_PORT=$(next_port 26432 "$WORK/run")
REMOTE_PORT=$(next_port $((LOCAL_PORT + 1)) "$WORK/run")
BOUNCER_PORT=$(next_port $((REMOTE_PORT + 1)) "$WORK/run")

start_server() {
	local name=$1 port=$2 extra=$3
	init_bench_server "$BENCH_USER" "$WORK/$name" "$port" "$WORK/run" "max_wal_size = 4GB
checkpoint_timeout = 30min
$extra"
	# the worker of netrun_pool holds a descriptor per remote connection:
	# lift runuser's soft limit of 1024 (max_files_per_process does the rest)
	# (9>&-: the server must not inherit, and so hold, the lock)
	as_user "$BENCH_USER" bash -c "ulimit -n 16384 && exec pg_ctl -D '$WORK/$name' -l '$WORK/$name.log' -w start" >/dev/null 9>&-
}

# The tenant guard's key (S6 with the guard): the same file for both
# servers, 32 random bytes as hex, readable only by the servers' user.
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$WORK/guard.key"
chown "$BENCH_USER:" "$WORK/guard.key"
chmod 600 "$WORK/guard.key"

log "starting the remote server on 127.0.0.1:$REMOTE_PORT"
# netrun_pool.tenant_mode and guard_key_file are inert in a session that
# does not load netrun_pool: only the role bench_npg loads it at session
# start (ALTER ROLE ... SET session_preload_libraries, below), so the other
# contestants' remote sessions run without its hooks
start_server remote "$REMOTE_PORT" "max_connections = 1200
shared_buffers = 512MB
synchronous_commit = off
wal_level = minimal
max_wal_senders = 0
netrun_pool.tenant_mode = pool
netrun_pool.guard_key_file = '$WORK/guard.key'"
log "starting the local server on 127.0.0.1:$LOCAL_PORT (netrun_pool preloaded)"
start_server local "$LOCAL_PORT" "max_connections = 200
shared_preload_libraries = 'netrun_pool'
netrun_pool.database = 'postgres'
max_worker_processes = 16
netrun_pool.max_pools = 128
netrun_pool.max_connections = 2000
netrun_pool.guard_key_file = '$WORK/guard.key'
max_files_per_process = 6000"

# clients run as root and connect over TCP as the servers' superuser
lpsql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$LOCAL_PORT" -U "$BENCH_USER" -d postgres "$@"; }
rpsql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$REMOTE_PORT" -U "$BENCH_USER" -d bench "$@"; }
lval() { lpsql -At -c "$1"; }
rval() { rpsql -At -c "$1"; }

log "loading the remote: t (1,000,000 rows), ins, the view one, a role per contestant"
psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$REMOTE_PORT" -U "$BENCH_USER" -d postgres -c "CREATE DATABASE bench"
# one remote role per contestant, so pg_stat_activity tells them apart
ROLES="bench_np4 bench_np16 bench_npg bench_dblink bench_cpc bench_fdw bench_pgb bench_direct bench_idle bench_mem"
{
	for r in $ROLES; do echo "CREATE ROLE $r LOGIN;"; done
	# synchronous_commit = on for the load: with the server's off, the
	# COMMIT returned before its WAL (and the 1M rows' before it) was
	# flushed, VACUUM could then set no hint bit (a hint needs the commit
	# flushed) nor mark a page all-visible, and the first S2 cells set the
	# hint bits of the tuples they read, dirtying the table's pages
	cat <<'SQL'
SET synchronous_commit = on;
BEGIN;
CREATE TABLE t (id int PRIMARY KEY, payload text NOT NULL);
INSERT INTO t SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 1000000) g;
COMMIT;
CREATE TABLE ins (id bigserial PRIMARY KEY, v int);
CREATE VIEW one AS SELECT 1 AS x;
GRANT SELECT ON t, one TO PUBLIC;
GRANT INSERT ON ins TO PUBLIC;
GRANT USAGE ON SEQUENCE ins_id_seq TO PUBLIC;
VACUUM (FREEZE, ANALYZE) t;
SQL
} | rpsql
S4_BYTES=$(rval "SELECT sum(length(id::text) + length(payload)) FROM t WHERE id <= 100000")
# into shared_buffers, table and index: a seq scan (count(*)) goes through a
# small ring and leaves them cold, and the first contestant of S2 then paid
# for the reads of the others
rval "CREATE EXTENSION pg_prewarm; SELECT pg_prewarm('t') + pg_prewarm('t_pkey')" >/dev/null
# (pg_buffercache: the dirty buffers before and after each cell, in $DIAG)
rval "CREATE EXTENSION pg_buffercache" >/dev/null
rval "CHECKPOINT" >/dev/null
sync
# The table's state for the cells (pg_visibility): pages all-visible and
# all-frozen.  A page that is not all-visible may hold tuples without hint
# bits, and the first cell to read them then writes them (dirties the page).
rval "CREATE EXTENSION pg_visibility" >/dev/null
read -r T_PAGES T_ALL_VISIBLE T_ALL_FROZEN < <(rval "SELECT count(*), count(*) FILTER (WHERE all_visible), count(*) FILTER (WHERE all_frozen) FROM pg_visibility_map('t')" | tr '|' ' ')
log "t: $T_PAGES pages, $T_ALL_VISIBLE all-visible, $T_ALL_FROZEN all-frozen"
[ "$T_ALL_VISIBLE" = "$T_PAGES" ] || problem "after VACUUM (FREEZE): only $T_ALL_VISIBLE of t's $T_PAGES pages are all-visible: the cells may set hint bits"
# What a fresh remote backend pays the first time it touches the table's
# buffers: pg_prewarm('t', 'buffer') twice in one new session, the first
# time mapping each shared buffer into the process (page faults), the
# second time not; the difference per block is the first-touch cost that a
# new remote connection (dblink, postgres_fdw, direct: every cell) pays on
# each block it reads for the first time, and a pooled one has paid before.
FIRST_TOUCH=$(printf '%s\n' '\timing on' "SELECT pg_prewarm('t', 'buffer');" "SELECT pg_prewarm('t', 'buffer');" | rpsql -At |
	awk '/^Time: / {t[++n] = $2} /^[0-9]+$/ {b = $1} END {printf "%.1f %.1f %.2f\n", t[1], t[2], (t[1] - t[2]) * 1000 / b}')
read -r FIRST_TOUCH_MS SECOND_TOUCH_MS FIRST_TOUCH_US <<<"$FIRST_TOUCH"
log "a fresh backend's pg_prewarm of t: ${FIRST_TOUCH_MS} ms, again ${SECOND_TOUCH_MS} ms: ${FIRST_TOUCH_US} µs per block touched first"

dsn() { echo "host=127.0.0.1 port=$REMOTE_PORT dbname=bench user=$1"; }

log "starting pgbouncer on 127.0.0.1:$BOUNCER_PORT (transaction mode, pool of 4)"
cat >"$WORK/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$REMOTE_PORT dbname=bench user=bench_pgb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 4
min_pool_size = 4
reserve_pool_size = 0
max_client_conn = 400
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
INI
echo '"bench_pgb" ""' >"$WORK/userlist.txt"
chown "$BENCH_USER:" "$WORK/pgbouncer.ini" "$WORK/userlist.txt"
as_user "$BENCH_USER" /usr/sbin/pgbouncer -d -q "$WORK/pgbouncer.ini" 9>&-
for _ in $(seq 50); do port_free "$BOUNCER_PORT" || break; sleep 0.1; done
! port_free "$BOUNCER_PORT" || die "pgbouncer did not start (see $WORK/pgbouncer.log)"

log "the local server: extensions, the postgres_fdw foreign tables"
lpsql <<SQL
CREATE EXTENSION netrun_pool;
CREATE EXTENSION dblink;
CREATE EXTENSION postgres_fdw;
CREATE SERVER remote_fdw FOREIGN DATA WRAPPER postgres_fdw
  OPTIONS (host '127.0.0.1', port '$REMOTE_PORT', dbname 'bench', application_name 'bench_fdw');
CREATE USER MAPPING FOR CURRENT_USER SERVER remote_fdw OPTIONS (user 'bench_fdw');
CREATE FOREIGN TABLE f_t (id int, payload text) SERVER remote_fdw OPTIONS (table_name 't');
CREATE FOREIGN TABLE f_ins (v int) SERVER remote_fdw OPTIONS (table_name 'ins');
CREATE FOREIGN TABLE f_one (x int) SERVER remote_fdw OPTIONS (table_name 'one');
-- this backend's resident set, for the memory figures
CREATE FUNCTION bench_rss_kb() RETURNS int LANGUAGE sql
  AS \$\$ SELECT substring(pg_read_file('/proc/self/status') FROM 'VmRSS:\s+(\d+) kB')::int \$\$;
SQL
# S4 through postgres_fdw must move the rows, not push the aggregate down
lval "EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*), sum(length(payload)) FROM (SELECT id, payload FROM f_t WHERE id <= 100000 OFFSET 0) s" >"$WORK/out/fdw_s4_plan.txt"
grep -q 'Remote SQL: SELECT payload FROM public.t WHERE ((id <= 100000))' "$WORK/out/fdw_s4_plan.txt" ||
	grep -q 'Remote SQL: SELECT id, payload FROM public.t WHERE ((id <= 100000))' "$WORK/out/fdw_s4_plan.txt" ||
	{ cat "$WORK/out/fdw_s4_plan.txt" >&2; die "postgres_fdw S4 plan is not a row transfer"; }

# ------------------------------------------------------------ the worker
wait_for 30 "SELECT state FROM netrun_pool.worker_status()" running || die "the netrun_pool worker did not start"
WORKER_PID=$(lval "SELECT worker_pid FROM netrun_pool.worker_status()")
proc_rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
proc_hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
proc_ns() { awk '{print $1}' "/proc/$1/schedstat"; }
CLK_TCK=$(getconf CLK_TCK)
check_worker() { # the worker must be the one we started with
	local p
	p=$(lval "SELECT worker_pid FROM netrun_pool.worker_status()" 2>/dev/null || true)
	if [ "$p" != "$WORKER_PID" ]; then
		problem "after $1: the netrun_pool worker changed from pid $WORKER_PID to '${p:-none}'"
		WORKER_PID=$p
		wait_for 30 "SELECT state FROM netrun_pool.worker_status()" running || true
		WORKER_PID=$(lval "SELECT worker_pid FROM netrun_pool.worker_status()" 2>/dev/null || true)
	fi
}

register_pool() { # register_pool NAME SIZE ROLE [TENANT_GUARD]
	lval "SELECT netrun_pool.register('$1', '$(dsn "$3")', pool_max => $2, pool_min => $2, acquire_timeout_ms => 60000, password_required => false, tenant_guard => '${4:-off}'${PIPELINE_DEPTH:+, pipeline_depth => $PIPELINE_DEPTH})" >/dev/null
}
wait_pools() { # wait_pools SECONDS: every pool full and healthy
	wait_for "$1" "SELECT count(*) FILTER (WHERE total < pool_min) + count(*) FILTER (WHERE status <> 'healthy') FROM netrun_pool.pool_stats" 0
}

# memory per pooled connection, at the margin: RSS after p4 is warm, then p16's 16 more
sleep 0.5
RSS_NO_POOLS=$(proc_rss "$WORKER_PID")
register_pool p4 4 bench_np4
wait_for 30 "SELECT pools FROM netrun_pool.worker_status()" 1 || die "the worker did not pick up p4"
wait_pools 30 || die "pool p4 did not become healthy and full"
sleep 0.5
RSS_P4=$(proc_rss "$WORKER_PID")
register_pool p16 16 bench_np16
wait_for 30 "SELECT pools FROM netrun_pool.worker_status()" 2 || die "the worker did not pick up p16"
wait_pools 30 || die "pool p16 did not become healthy and full"
sleep 0.5
RSS_P16=$(proc_rss "$WORKER_PID")
log "worker pid $WORKER_PID: RSS ${RSS_NO_POOLS} kB with no pools, ${RSS_P4} kB with p4, ${RSS_P16} kB with p4 and p16"

# a backend's RSS when it holds libpq connections (dblink): the first, then one more
lpsql -At >"$WORK/out/backend_mem.txt" <<SQL
SELECT dblink_get_connections();
SELECT 'base', bench_rss_kb();
SELECT dblink_connect('m1', '$(dsn bench_mem)');
SELECT x FROM dblink('m1', 'SELECT 1') AS t(x int);
SELECT 'one', bench_rss_kb();
SELECT dblink_connect('m2', '$(dsn bench_mem)');
SELECT x FROM dblink('m2', 'SELECT 1') AS t(x int);
SELECT 'two', bench_rss_kb();
SQL
BACKEND_RSS_BASE=$(awk -F'|' '$1 == "base" {print $2}' "$WORK/out/backend_mem.txt")
BACKEND_RSS_ONE=$(awk -F'|' '$1 == "one" {print $2}' "$WORK/out/backend_mem.txt")
BACKEND_RSS_TWO=$(awk -F'|' '$1 == "two" {print $2}' "$WORK/out/backend_mem.txt")

# The remote tenant guard, for p4g (S6 with the guard): netrun_pool in the
# remote database, loaded at session start for bench_npg only, with
# tenant_mode = pool and the shared key from the remote's configuration.
# p4 and p16 have tenant_guard => 'off': a call that carries a tenant sets
# the connection's tenant_setting (app.current_tenant_id) by set_config.
rval "CREATE EXTENSION netrun_pool" >/dev/null
rval "ALTER ROLE bench_npg SET session_preload_libraries = 'netrun_pool'" >/dev/null
register_pool p4g 4 bench_npg required
wait_for 30 "SELECT pools FROM netrun_pool.worker_status()" 3 || die "the worker did not pick up p4g"
wait_pools 30 || die "pool p4g did not become healthy and full"
wait_for 10 "SELECT tenant_guard FROM netrun_pool.health WHERE name = 'p4g'" enforced ||
	problem "p4g: the remote guard is not enforced ($(lval "SELECT tenant_guard || ': ' || coalesce(tenant_guard_detail, '') FROM netrun_pool.health WHERE name = 'p4g'"))"

# Functional checks of what S6, S7 and dblink with a tenant send: each
# line KEY|value.  A tenant set once in a session reaches the remote with
# each call (p4: as app.current_tenant_id; p4g: as the guarded tenant);
# read_only runs in a read-only remote transaction; dblink's two
# statements in one call are one remote transaction, so set_config(...,
# true) lasts for the query and not after it.
lpsql -At -F'|' -v ON_ERROR_STOP=0 >"$WORK/out/checks.txt" 2>&1 <<SQL
SELECT 'set', netrun_pool.set_tenant('tenant_check');
SELECT 'p4_tenant', netrun_pool.fetchval('p4', \$\$SELECT current_setting('app.current_tenant_id', true)\$\$);
SELECT 'p4g_tenant', netrun_pool.fetchval('p4g', 'SELECT netrun_pool.current_tenant()');
SELECT 'p4g_spoof', netrun_pool.fetchval('p4g', \$\$SELECT set_config('netrun_pool.tenant_id', 'other', false)\$\$);
SELECT 'p4_read_only', netrun_pool.fetchval('p4', 'SHOW transaction_read_only', read_only => true);
SELECT 'p4_plain', netrun_pool.fetchval('p4', 'SHOW transaction_read_only');
SELECT dblink_connect('bench', '$(dsn bench_dblink)');
SELECT 'dblink_tenant', v FROM dblink('bench', \$\$SELECT NULL::int, set_config('app.current_tenant_id', 'tenant_check', true); SELECT id, current_setting('app.current_tenant_id') || ':' || id FROM t WHERE id = 42\$\$) AS t(id int, v text);
SELECT 'dblink_after', v FROM dblink('bench', \$\$SELECT coalesce(nullif(current_setting('app.current_tenant_id', true), ''), '<none>')\$\$) AS t(v text);
SQL
check_val() { awk -F'|' -v k="$1" '$1 == k {print $2; exit}' "$WORK/out/checks.txt"; }
expect() { # expect KEY VALUE WHAT
	local got
	got=$(check_val "$1")
	[ "$got" = "$2" ] || problem "functional check: $3: expected '$2', got '${got:-nothing}' (see $WORK/out/checks.txt)"
}
expect p4_tenant tenant_check "p4 (tenant_guard off) carries the tenant as app.current_tenant_id"
expect p4g_tenant tenant_check "p4g (the remote guard) carries the tenant as netrun_pool.current_tenant()"
expect p4_read_only on "read_only => true runs in a read-only remote transaction"
expect p4_plain off "a plain call is not read-only"
expect dblink_tenant tenant_check:42 "dblink: set_config(..., true) and the query in one call"
expect dblink_after '<none>' "dblink: the tenant set locally is gone in the next call"
grep -q "ERROR: .*netrun_pool.tenant_id" "$WORK/out/checks.txt" && [ -z "$(check_val p4g_spoof)" ] ||
	problem "functional check: p4g: the call's own SQL could set netrun_pool.tenant_id on the remote (see $WORK/out/checks.txt)"
lval "SELECT netrun_pool.reset_stats()" >/dev/null

# --------------------------------------------------------------- scripts
pool_of() { # the netrun_pool connection of a contestant (none: not a pool)
	case $1 in np4 | np4s0) echo p4 ;; np16) echo p16 ;; npg) echo p4g ;; esac
}
for f in "$bench"/pgbench/*.sql; do
	b=$(basename "$f" .sql)
	s=${b##*_}
	case $b in
	np_*)
		for who in np4 np16 npg np4s0; do
			sed "s/@POOL@/$(pool_of $who)/" "$f" >"$WORK/scripts/${who}_$s.sql"
		done ;;
	dblink_*)
		sed "s|@CONNSTR@|$(dsn bench_dblink)|" "$f" >"$WORK/scripts/dblink_$s.sql"
		sed "s|@CONNSTR@|host=127.0.0.1 port=$BOUNCER_PORT dbname=bench user=bench_pgb|" "$f" >"$WORK/scripts/pgb_$s.sql" ;;
	cpc_*) sed "s|@CONNSTR@|$(dsn bench_cpc)|" "$f" >"$WORK/scripts/cpc_$s.sql" ;;
	*) cp "$f" "$WORK/scripts/$b.sql" ;;
	esac
done

remote_role() {
	case $1 in
	np4 | np4s0) echo bench_np4 ;; np16) echo bench_np16 ;; npg) echo bench_npg ;; dblink) echo bench_dblink ;;
	cpc) echo bench_cpc ;; fdw) echo bench_fdw ;; pgb) echo bench_pgb ;; direct) echo bench_direct ;;
	esac
}
label() {
	case $1 in
	np4) echo "netrun_pool, pool_max 4" ;; np16) echo "netrun_pool, pool_max 16" ;;
	npg) echo "netrun_pool, pool_max 4, remote guard" ;; np4s0) echo "netrun_pool, pool_max 4, spin_wait_us = 0" ;;
	dblink) echo "dblink, persistent connection" ;; cpc) echo "dblink, connect per call" ;;
	fdw) echo "postgres_fdw" ;; pgb) echo "dblink via pgbouncer (pool 4)" ;;
	direct) echo "pgbench direct to the remote" ;;
	esac
}

# The sampler: the remote's client backends by role, every 100 ms, leaving
# out itself and netrun_pool's health probes (application_name
# netrun_pool_probe:NAME), which are not pooled connections.  Each line:
# the time, ROLE=N per role, then w:ROLE:WHAT=N, what the role's backends
# were doing: CPU (active, no wait event: running or runnable), the wait
# event of an active backend (LWLock:BufferContent, ...), or the state of
# one that is not active (idle, idle_in_transaction, ...).
SAMPLE_SQL="SELECT extract(epoch FROM clock_timestamp())::numeric(16,1) || ' ' || coalesce(string_agg(k || '=' || n, ' ' ORDER BY o, k), '') FROM (SELECT 0 AS o, usename::text AS k, count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND coalesce(application_name, '') NOT LIKE 'netrun_pool_probe:%' GROUP BY 2 UNION ALL SELECT 1, 'w:' || usename || ':' || CASE WHEN state = 'active' THEN coalesce(wait_event_type || ':' || wait_event, 'CPU') ELSE translate(coalesce(state, 'none'), ' ()', '___') END, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND coalesce(application_name, '') NOT LIKE 'netrun_pool_probe:%' GROUP BY 2) s"
sampler_start() {
	printf '%s \\watch 0.1\n' "$SAMPLE_SQL" |
		psql -X -At -h 127.0.0.1 -p "$REMOTE_PORT" -U "$BENCH_USER" -d bench >"$1" 2>/dev/null 9>&- &
	SAMPLER_PID=$!
	sleep 0.15
}
sampler_stop() {
	kill "$SAMPLER_PID" 2>/dev/null || true
	wait "$SAMPLER_PID" 2>/dev/null || true
	SAMPLER_PID=
}
peak_of() { # peak_of FILE ROLE
	awk -v r="$2" '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == r && kv[2] + 0 > m) m = kv[2] + 0 } } END { print m + 0 }' "$1"
}
# until the previous cell's remote sessions have gone
wait_remote_quiet() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ "$(rval "SELECT count(*) FROM pg_stat_activity WHERE usename IN ('bench_dblink', 'bench_cpc', 'bench_fdw', 'bench_direct')")" = 0 ] && return 0
		sleep 0.1
	done
}

# set_spin_wait 0|default: netrun_pool.spin_wait_us for the backends and
# the worker (superuser-only, and the worker reads the server's
# configuration): ALTER SYSTEM and a reload, until a new session sees it;
# then a moment for the worker to take the reload
set_spin_wait() {
	local want=$1
	if [ "$want" = default ]; then
		lval "ALTER SYSTEM RESET netrun_pool.spin_wait_us" >/dev/null
		want=500
	else
		lval "ALTER SYSTEM SET netrun_pool.spin_wait_us = $want" >/dev/null
	fi
	lval "SELECT pg_reload_conf()" >/dev/null
	wait_for 10 "SHOW netrun_pool.spin_wait_us" "$want" || problem "netrun_pool.spin_wait_us did not become $want"
	sleep 0.3
}

CELLS=$WORK/out/cells.tsv
ROUND_CELLS=$WORK/out/round_cells.tsv
printf 'contestant\tscenario\tclients\ttps\txacts\tfailed\taborted\tavg_ms\tp95_ms\tp99_ms\tpeak_conns\tworker_cpu_s\tworker_cpu_pct\trss_before_kb\trss_after_kb\thwm_growth_kb\tacq_p95_ms\tacquired\tqueries\terrors\tcreated\tnote\n' >"$CELLS"

# What the machine and the remote did during a cell, for $DIAG (a line per
# cell): the machine's CPU by /proc/stat (user, system, idle, iowait,
# steal), context switches and page faults; the remote's counters
# (pg_stat_database of bench: commits, blocks hit and read; checkpoints and
# buffers written, pg_stat_bgwriter; WAL bytes; dirty buffers in
# shared_buffers, pg_buffercache: a read-only cell that dirties pages is
# setting hint bits).  The remote's backends flush their counters at most
# once a second and at exit: a pooled connection's last second may land in
# the next cell.
DIAG=$WORK/out/diag.tsv
printf 'id\tcontestant\tscenario\tclients\tround\ttps\ttps_after_1s\tall_first_done_s\tcpu_user_pct\tcpu_sys_pct\tcpu_idle_pct\tcpu_iowait_pct\tcpu_steal_pct\tcs_per_xact\tpgfault_per_xact\tremote_commits\tremote_blks_hit_per_xact\tremote_blks_read\tcheckpoints\tbuffers_written\twal_kb\tdirty_buffers_delta\tremote_backends\ttx_per_second\n' >"$DIAG"
machine_snap() { # user system idle iowait steal ctxt pgfault (ticks, counts)
	{
		awk '/^cpu / {print $2 + $3, $4 + $7 + $8, $5, $6, $9} /^ctxt / {print $2}' /proc/stat
		awk '/^pgfault / {print $2}' /proc/vmstat
	} | paste -sd' '
}
remote_snap() { # commits blks_hit blks_read checkpoints buffers_written wal_bytes dirty_buffers
	rval "SELECT concat_ws(' ', d.xact_commit, d.blks_hit, d.blks_read, b.checkpoints_timed + b.checkpoints_req, b.buffers_checkpoint + b.buffers_clean + b.buffers_backend, w.wal_bytes, (SELECT count(*) FROM pg_buffercache WHERE isdirty)) FROM pg_stat_database d, pg_stat_bgwriter b, pg_stat_wal w WHERE d.datname = 'bench'" 2>/dev/null || echo "- - - - - - -"
}
# wait_summary SAMPLES ROLE: what ROLE's remote backends were doing, as
# shares of all their samples, the largest first ("CPU 41%, idle 52%, ...")
wait_summary() {
	awk -v r="w:$2:" '{ for (i = 2; i <= NF; i++) if (index($i, r) == 1) { split(substr($i, length(r) + 1), kv, "="); n[kv[1]] += kv[2]; t += kv[2] } }
		END { for (k in n) printf "%d %s\n", n[k] * 1000 / t, k }' "$1" | sort -rn |
		awk '$1 >= 5 { printf "%s%s %.0f%%", (k++ ? ", " : ""), $2, $1 / 10 } END { if (!k) printf "-" }'
}
# tx_phases LOGDIR: from pgbench's per-transaction log, tps after the
# first second (the first completion + 1 s to the last); the seconds from
# the first completion until every client had ended its first transaction
# (the one that makes the dblink and postgres_fdw connections); and the
# transactions completed in each second of the cell ("16210,16950,...")
tx_phases() {
	cat "$1"/tx.* 2>/dev/null | awk '{ t = $5 + $6 / 1e6; if (!n++ || t < t0) t0 = t; if (t > t1) t1 = t; all[NR] = t
			if (!($1 in first) || $2 < firstno[$1]) { first[$1] = t; firstno[$1] = $2 } }
		END { if (n < 2) { print "- - -"; exit }
			for (i in all) { if (all[i] >= t0 + 1) m++; sec[int(all[i] - t0)]++ }
			for (k in first) if (first[k] > f) f = first[k]
			for (k = 0; k <= int(t1 - t0); k++) series = series (k ? "," : "") (sec[k] + 0)
			printf "%s %.2f %s\n", (t1 - t0 > 1.5 ? sprintf("%.0f", m / (t1 - t0 - 1)) : "-"), f - t0, series }'
}

run_cell() { # run_cell CONTESTANT SCENARIO CLIENTS [ROUND]: a line in $CELLS (round 1) or $ROUND_CELLS
	local who=$1 s=$2 c=$3 round=${4:-1} id="$1_$2_c$3"
	local cells=$CELLS
	[ "$round" -gt 1 ] && id="${id}_r$round" && cells=$ROUND_CELLS
	# a cell that a PLAN of its own repeats: _2, _3, ...
	if [ -e "$WORK/logs/$id" ]; then
		local k=2
		while [ -e "$WORK/logs/${id}_$k" ]; do k=$((k + 1)); done
		id="${id}_$k"
	fi
	local j=$((c < 2 ? c : 2)) host_args out=$WORK/logs/$id
	local np=0 pool= t0 t1 r0 ticks0 ticks1 rss1 hwm1
	pool=$(pool_of "$who")
	[ -n "$pool" ] && np=1
	if [ "$who" = direct ]; then
		host_args=(-h 127.0.0.1 -p "$REMOTE_PORT" -U bench_direct bench)
	else
		host_args=(-h 127.0.0.1 -p "$LOCAL_PORT" -U "$BENCH_USER" postgres)
	fi
	mkdir -p "$out"
	wait_remote_quiet
	# the writes of earlier cells (pgbench logs, S5's rows) reach the disk
	# now, not in the middle of this one
	sync
	[ "$who" = np4s0 ] && set_spin_wait 0
	if [ $np = 1 ]; then
		lval "SELECT netrun_pool.reset_stats('$pool')" >/dev/null || problem "$id: reset_stats failed"
		echo 5 >"/proc/$WORKER_PID/clear_refs" 2>/dev/null || true
		r0=$(proc_rss "$WORKER_PID" || echo 0)
		ticks0=$(proc_ticks "$WORKER_PID" || echo 0)
	fi
	local m0 m1 rs0 rs1
	rs0=$(remote_snap)
	m0=$(machine_snap)
	sampler_start "$WORK/samples/$id.txt"
	t0=$(date +%s.%N)
	pgbench -n -M simple -T "$DURATION" -c "$c" -j "$j" -f "$WORK/scripts/${who}_${s,,}.sql" \
		-D connected=0 -l --log-prefix="$out/tx" "${host_args[@]}" >"$out/stdout" 2>"$out/stderr" || true
	t1=$(date +%s.%N)
	m1=$(machine_snap)
	sampler_stop
	[ "$who" = np4s0 ] && set_spin_wait default
	local tps xacts failed aborted lat peak note=
	tps=$(awk '/^tps = / {print $3; exit}' "$out/stdout")
	xacts=$(awk -F': ' '/^number of transactions actually processed/ {split($2, a, "/"); print a[1]; exit}' "$out/stdout")
	failed=$(awk '/^number of failed transactions/ {print $5; exit}' "$out/stdout")
	aborted=$(grep -c 'aborted' "$out/stderr" || true)
	if [ -z "$tps" ] || [ "${aborted:-0}" != 0 ]; then
		note=$(grep -m1 -iE 'error|abort|fatal' "$out/stderr" | tr '\t' ' ' | cut -c1-200 || true)
		problem "$id: pgbench ${tps:+finished with aborted clients}${tps:-failed}: ${note:-see $out/stderr}"
	fi
	# latency from the per-transaction log, each client's first transaction
	# left out (it makes the dblink and postgres_fdw connections)
	# (pgbench numbers a client's transactions from 1)
	lat=$(cat "$out"/tx.* 2>/dev/null | awk '$2 > 1 && $3 ~ /^[0-9]+$/ {print $3}' | sort -n |
		awk '{v[NR] = $1; s += $1} END { if (NR == 0) { print "- - -"; exit }
			i95 = int(NR * 0.95); if (i95 < NR * 0.95) i95++; i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++;
			printf "%.3f %.3f %.3f\n", s / NR / 1000, v[i95] / 1000, v[i99] / 1000 }' || true)
	peak=$(peak_of "$WORK/samples/$id.txt" "$(remote_role "$who")")
	local wcpu=- wpct=- rss_a=- hwm_g=- acq=- acquired=- queries=- errors=- created=-
	if [ $np = 1 ]; then
		ticks1=$(proc_ticks "$WORKER_PID" 2>/dev/null || echo "$ticks0")
		rss1=$(proc_rss "$WORKER_PID" 2>/dev/null || echo 0)
		hwm1=$(proc_hwm "$WORKER_PID" 2>/dev/null || echo 0)
		wcpu=$(awk -v a="$ticks0" -v b="$ticks1" -v h="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / h}')
		wpct=$(awk -v a="$ticks0" -v b="$ticks1" -v h="$CLK_TCK" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.1f", 100 * (b - a) / h / (t1 - t0)}')
		rss_a=$rss1
		hwm_g=$((hwm1 - r0))
		IFS='|' read -r acq acquired queries errors created < <(lval "SELECT round(acquire_wait_p95_ms::numeric, 4), acquired_total, queries_total, errors_total, created_total FROM netrun_pool.pool_stats WHERE name = '$pool'") || true
		if [ "${errors:-0}" != 0 ]; then
			problem "$id: pool_stats errors_total = $errors (last_error: $(lval "SELECT last_error FROM netrun_pool.pool_stats WHERE name = '$pool'"))"
		fi
		check_worker "$id"
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$who" "$s" "$c" "${tps:--}" "${xacts:--}" "${failed:--}" "${aborted:-0}" $lat "$peak" \
		"$wcpu" "$wpct" "${r0:--}" "$rss_a" "$hwm_g" "$acq" "$acquired" "$queries" "$errors" "$created" "${note:--}" >>"$cells"
	rs1=$(remote_snap)
	{
		printf '%s\t%s\t%s\t%s\t%s\t%s\t' "$id" "$who" "$s" "$c" "$round" "${tps:--}"
		tx_phases "$out" | cut -d' ' -f1-2 | tr ' ' '\t' | tr -d '\n'
		printf '\t'
		echo "$m0 $m1 ${xacts:-0}" | awk '{ n = 7; tot = 0; for (i = 1; i <= 5; i++) { d[i] = $(n + i) - $i; tot += d[i] }
			x = $(2 * n + 1); if (tot <= 0) tot = 1
			printf "%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%s\t%s\t", 100 * d[1] / tot, 100 * d[2] / tot, 100 * d[3] / tot, 100 * d[4] / tot, 100 * d[5] / tot,
				(x > 0 ? sprintf("%.1f", ($(n + 6) - $6) / x) : "-"), (x > 0 ? sprintf("%.2f", ($(n + 7) - $7) / x) : "-") }'
		echo "$rs0 $rs1 ${xacts:-0}" | awk '$1 == "-" || $8 == "-" { printf "-\t-\t-\t-\t-\t-\t-\t"; next }
			{ x = $15; printf "%d\t%s\t%d\t%d\t%d\t%.0f\t%d\t", $8 - $1, (x > 0 ? sprintf("%.1f", ($9 - $2) / x) : "-"), $10 - $3, $11 - $4, $12 - $5, ($13 - $6) / 1024, $14 - $7 }'
		wait_summary "$WORK/samples/$id.txt" "$(remote_role "$who")"
		printf '\t%s\n' "$(tx_phases "$out" | cut -d' ' -f3)"
	} >>"$DIAG"
	log "$([ "$round" -gt 1 ] && echo "round $round: ")$(printf '%-6s %s c=%-3s tps %10s  p95 %8s ms  remote conns %3s%s' "$who" "$s" "$c" "${tps:--}" "$(echo "$lat" | cut -d' ' -f2)" "$peak" \
		"$([ $np = 1 ] && echo "  worker cpu ${wpct}%  acquire p95 ${acq} ms")")"
}

# ----------------------------------------------------------------- cells
# Scenario by scenario, then clients, the contestants side by side in time.
# A PLAN item is SCENARIOS:CLIENTS; SCENARIOS joined by / run as one group
# at each client count (S2/S6/S7: the plain call, the call with a tenant
# and the read-only call side by side in time, their ratios taken there).
if [ $MODE = quick ]; then
	DEFAULT_PLAN="S1:1,32 S2/S6/S7:1 S2:32"
	DEFAULT_CONTESTANTS="np4 npg np4s0 dblink direct"
else
	DEFAULT_PLAN="S1:1,2,8,32,128 S2/S6/S7:1,8,32 S3:1,32 S4:1,8,32 S5:1,32"
	DEFAULT_CONTESTANTS="np4 np16 npg np4s0 dblink cpc fdw pgb direct"
fi
# PLAN and CONTESTANTS from the environment run other cells (a look at one
# cell: PLAN="S2:32 S2:32" CONTESTANTS=dblink ROUNDS=1); the targets and
# tables then show what ran
PLAN=${PLAN:-$DEFAULT_PLAN}
CONTESTANTS=${CONTESTANTS:-$DEFAULT_CONTESTANTS}
in_plan() { # whether CONTESTANT runs at SCENARIO and CLIENTS
	local who=$1 s=$2 c=$3
	case $who in
	np4s0) [ "$s" = S1 ] && [ "$c" = 1 ]; return ;;  # only what the c = 1 target reports
	npg) [ "$s" = S6 ]; return ;;
	esac
	case $s in
	S6) case $who in np4 | dblink) return 0 ;; *) return 1 ;; esac ;;
	S7) [ "$who" = np4 ]; return ;;
	esac
	[ "$s" = S1 ] && [ "$c" = 2 ] && case $who in np4 | dblink) ;; *) return 1 ;; esac
	[ "$c" = 128 ] && [ "$s" = S1 ] && case $who in cpc | fdw) return 1 ;; esac
	[ "$who" = cpc ] && [ "$c" -gt 8 ] && return 1
	return 0
}
rotate() { # rotate N WORD...: the words, the first N moved to the end
	local n=$1
	shift
	n=$((n % $#))
	echo "${@:n+1}" "${@:1:n}"
}
NCELLS=0
GROUP=0
log "running the cells ($MODE mode, $DURATION s each)"
for item in $PLAN; do
	for cc in $(echo "${item#*:}" | tr ',' ' '); do
		# the group's cells, CONTESTANT/SCENARIO
		cells_now=
		for s in $(echo "${item%%:*}" | tr '/' ' '); do
			for who in $CONTESTANTS; do
				in_plan "$who" "$s" "$cc" && cells_now="$cells_now $who/$s"
			done
		done
		[ -n "$cells_now" ] || continue
		# each group of cells in another order: no contestant always goes first
		GROUP=$((GROUP + 1))
		for cell in $(rotate $GROUP $cells_now); do
			run_cell "${cell%/*}" "${cell#*/}" "$cc"
			NCELLS=$((NCELLS + 1))
		done
	done
done

# The cells the targets compare run again, ROUNDS - 1 more times, in
# groups: CLIENTS:CONTESTANT/SCENARIO,... (those a ratio compares side by
# side in time).  Only the contestants that run (CONTESTANTS).
ROUNDS=${ROUNDS:-$([ $MODE = full ] && echo 3 || echo 1)}
ROUND_GROUPS="1:np4/S1,dblink/S1,np4s0/S1,cpc/S1,fdw/S1 1:np4/S2,dblink/S2,cpc/S2,fdw/S2,np4/S6,npg/S6,np4/S7
2:np4/S1,dblink/S1 8:np4/S1,dblink/S1 8:np4/S2,np4/S6,npg/S6,np4/S7
32:np4/S1,dblink/S1 32:np4/S2,dblink/S2 32:np4/S6,dblink/S6"
: >"$ROUND_CELLS"
for ((round = 2; round <= ROUNDS; round++)); do
	log "target cells, round $round of $ROUNDS"
	rval "CHECKPOINT" >/dev/null
	for g in $ROUND_GROUPS; do
		cc=${g%%:*}
		cells_now=
		for cell in $(echo "${g#*:}" | tr ',' ' '); do
			echo " $CONTESTANTS " | grep -q " ${cell%/*} " && cells_now="$cells_now $cell"
		done
		[ -n "$cells_now" ] || continue
		# each round in another order: no contestant always goes first
		for cell in $(rotate $((round - 1)) $cells_now); do
			run_cell "${cell%/*}" "${cell#*/}" "$cc" "$round"
			NCELLS=$((NCELLS + 1))
		done
	done
done

# ------------------------------------------------------ idle cost (full)
IDLE_DONE=0
if [ $MODE = full ]; then
	log "idle cost: 100 pools with pool_min 10 (1,000 idle connections)"
	sleep 1
	IDLE_RSS0=$(proc_rss "$WORKER_PID")
	IDLE_T0=$SECONDS
	lval "BEGIN; SELECT netrun_pool.register(format('idle%s', lpad(g::text, 3, '0')), '$(dsn bench_idle)', pool_max => 10, pool_min => 10, password_required => false, tenant_guard => 'off') FROM generate_series(1, 100) g; COMMIT" >/dev/null
	if wait_for 180 "SELECT count(*) FILTER (WHERE total = 10 AND status = 'healthy') FROM netrun_pool.pool_stats WHERE name LIKE 'idle%'" 100; then
		IDLE_WARM_S=$((SECONDS - IDLE_T0))
		sleep 3
		IDLE_RSS1=$(proc_rss "$WORKER_PID")
		IDLE_REMOTE=$(rval "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench_idle' AND application_name LIKE 'netrun_pool:%'")
		IDLE_TOTAL=$(lval "SELECT sum(total) FROM netrun_pool.pool_stats")
		tk0=$(proc_ticks "$WORKER_PID"); ns0=$(proc_ns "$WORKER_PID"); w0=$(date +%s.%N)
		sleep 10
		tk1=$(proc_ticks "$WORKER_PID"); ns1=$(proc_ns "$WORKER_PID"); w1=$(date +%s.%N)
		IDLE_CPU_PCT=$(awk -v a="$tk0" -v b="$tk1" -v h="$CLK_TCK" -v t0="$w0" -v t1="$w1" 'BEGIN {printf "%.2f", 100 * (b - a) / h / (t1 - t0)}')
		IDLE_CPU_NS_PCT=$(awk -v a="$ns0" -v b="$ns1" -v t0="$w0" -v t1="$w1" 'BEGIN {printf "%.3f", 100 * (b - a) / 1e9 / (t1 - t0)}')
		IDLE_DONE=1
		log "idle: $IDLE_REMOTE remote connections, worker CPU ${IDLE_CPU_PCT}% (stat) ${IDLE_CPU_NS_PCT}% (schedstat), RSS ${IDLE_RSS0} -> ${IDLE_RSS1} kB"
	else
		problem "idle test: the 100 pools did not all reach 10 healthy connections within 180 s ($(lval "SELECT count(*) FILTER (WHERE total = 10), sum(total), string_agg(DISTINCT status, ',') FROM netrun_pool.pool_stats WHERE name LIKE 'idle%'"))"
	fi
	lval "BEGIN; SELECT netrun_pool.unregister(name) FROM netrun_pool.connections WHERE name LIKE 'idle%'; COMMIT" >/dev/null
	for _ in $(seq 600); do
		[ "$(rval "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench_idle'")" = 0 ] && break
		sleep 0.1
	done
	IDLE_LEFT=$(rval "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench_idle'")
	[ "$IDLE_LEFT" = 0 ] || problem "idle test: $IDLE_LEFT remote connections still open 60 s after unregistering the 100 pools"
	check_worker "the idle test"
fi

# the servers' logs: crashes and errors of netrun_pool
grep -E 'terminated by signal|PANIC|was terminated|netrun_pool worker.*exit' "$WORK/local.log" >"$WORK/out/local_log_alerts.txt" || true
if [ -s "$WORK/out/local_log_alerts.txt" ]; then
	problem "local server log: $(wc -l <"$WORK/out/local_log_alerts.txt") crash/exit lines, first: $(head -1 "$WORK/out/local_log_alerts.txt" | cut -c1-200)"
fi
LOCAL_ERRORS=$(grep -c ' ERROR: ' "$WORK/local.log" || true)
REMOTE_ERRORS=$(grep -c ' ERROR: ' "$WORK/remote.log" || true)

# ----------------------------------------------------------------- report
PG_VERSION=$(lval "SELECT current_setting('server_version')")
BOUNCER_VERSION=$(/usr/sbin/pgbouncer --version | head -1)
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
NCPU=$(nproc)
MEM_GB=$(awk '/^MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
ELAPSED=$((SECONDS - T0))

export S4_BYTES
# value CONTESTANT SCENARIO CLIENTS COLUMN: one figure from the cells, or empty
value() {
	awk -F'\t' -v w="$1" -v s="$2" -v c="$3" -v col="$4" '
		NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; next }
		$1 == w && $2 == s && $3 == c { v = $(idx[col]); if (v != "-") print v; exit }' "$CELLS"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print ""; else printf "%.2f", a / b }'; }
fmt_int() { awk -v v="$1" 'BEGIN { if (v == "") print "–"; else { s = sprintf("%.0f", v); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o } }'; }

TARGETS=$WORK/out/targets.md
: >"$TARGETS"
target() { # target TEXT MEASURED OK(1/0/empty = not measured)
	local res
	case $3 in 1) res=PASS ;; 0) res=FAIL ;; *) res="not run" ;; esac
	printf '| %s | %s | **%s** |\n' "$1" "$2" "$res" >>"$TARGETS"
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print ""; else print (a + 0 >= b + 0) ? 1 : 0 }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print ""; else print (a + 0 < b + 0) ? 1 : 0 }'; }

le() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print ""; else print (a + 0 <= b + 0) ? 1 : 0 }'; }

# cell_value CONTESTANT SCENARIO CLIENTS ROUND COLUMN: one figure of that
# round's cell (round 1: the main pass), or empty
cell_value() {
	if [ "$4" = 1 ]; then
		value "$1" "$2" "$3" "$5"
		return
	fi
	awk -F'\t' -v w="$1" -v s="$2" -v c="$3" -v n="$4" -v col="$5" '
		NR == FNR { if (FNR == 1) for (i = 1; i <= NF; i++) idx[$i] = i; next }
		$1 == w && $2 == s && $3 == c && ++k == n - 1 { v = $(idx[col]); if (v != "-") print v; exit }' "$CELLS" "$ROUND_CELLS"
}
# round_pair A_WHO A_SCENARIO B_WHO B_SCENARIO CLIENTS: A's tps / B's
# within each round, "r1 r2 ..." (rounds where both ran)
round_pair() {
	local round r out=
	for ((round = 1; round <= ROUNDS; round++)); do
		r=$(ratio "$(cell_value "$1" "$2" "$5" $round tps)" "$(cell_value "$3" "$4" "$5" $round tps)")
		[ -n "$r" ] && out="$out $r"
	done
	echo $out
}
round_ratios() { round_pair "$1" "$3" "$2" "$3" "$4"; } # round_ratios A B SCENARIO CLIENTS
# round_us_per_call CONTESTANT SCENARIO CLIENTS: the worker's CPU per call
# (µs, /proc/<pid>/stat over pool_stats' queries_total) in each round
round_us_per_call() {
	local round w q out=
	for ((round = 1; round <= ROUNDS; round++)); do
		w=$(cell_value "$1" "$2" "$3" $round worker_cpu_s)
		q=$(cell_value "$1" "$2" "$3" $round queries)
		[ -n "$w" ] && [ -n "$q" ] && [ "$q" -gt 0 ] && out="$out $(awk -v w="$w" -v q="$q" 'BEGIN {printf "%.1f", w * 1e6 / q}')"
	done
	echo $out
}
median() { echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{v[NR] = $1} END { if (NR) printf "%.2f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
# verdict text: "0.93× (rounds 0.93, 1.02, 0.98)" with the median first
rounds_text() {
	local m
	m=$(median "$@")
	if [ $# -gt 1 ]; then echo "${m:-–}× (median of rounds: $(echo "$@" | sed 's/ /, /g'))"; else echo "${m:-–}×"; fi
}

# The targets of issue 16 first: each a ratio of two cells of the same
# round, the verdict the median over the rounds.
rs=$(round_ratios np4 dblink S1 1)
rs0=$(round_pair np4s0 S1 dblink S1 1)
target "S1 c=1: netrun_pool (pool_max 4) tps ≥ 1.0× persistent dblink (default settings; also shown with netrun_pool.spin_wait_us = 0)" \
	"$(rounds_text $rs); spin_wait_us = 0: $(rounds_text $rs0)" "$(ge "$(median $rs)" 1.0)"
for spec in "2 1.0" "8 1.2" "32 1.5"; do
	read -r cc want <<<"$spec"
	rs=$(round_ratios np4 dblink S1 "$cc")
	target "S1 c=$cc: netrun_pool (pool_max 4) tps ≥ ${want}× persistent dblink" "$(rounds_text $rs)" "$(ge "$(median $rs)" "$want")"
done
rs=$(round_ratios np4 dblink S2 32)
target "S2 c=32: netrun_pool (pool_max 4) tps ≥ 1.5× persistent dblink" "$(rounds_text $rs)" "$(ge "$(median $rs)" 1.5)"
for cc in 1 8; do
	rs=$(round_pair np4 S6 np4 S2 "$cc")
	target "S6 c=$cc: a call carrying a tenant (set_config, tenant_guard off) ≥ 0.9× the plain call (S2), same pool" "$(rounds_text $rs)" "$(ge "$(median $rs)" 0.9)"
done
for cc in 1 8; do
	rs=$(round_pair np4 S7 np4 S2 "$cc")
	target "S7 c=$cc: a read_only call ≥ 0.9× the plain call (S2), same pool" "$(rounds_text $rs)" "$(ge "$(median $rs)" 0.9)"
done
for cc in 1 8; do
	rs=$(round_pair npg S6 np4 S2 "$cc")
	target "S6 with the remote guard c=$cc: a call carrying a tenant (tenant_guard required, pool_max 4) ≥ 0.85× the plain call (S2, pool_max 4)" "$(rounds_text $rs)" "$(ge "$(median $rs)" 0.85)"
done
rs=$(round_pair np4 S6 dblink S6 32)
target "S6 c=32: netrun_pool (pool_max 4) with a tenant ≥ 1.5× persistent dblink with a tenant (set_config local and the query in one remote transaction)" "$(rounds_text $rs)" "$(ge "$(median $rs)" 1.5)"
worst='' parts=''
for sc in S1 S2 S6; do
	us=$(round_us_per_call np4 "$sc" 32)
	[ -n "$us" ] || continue
	m=$(median $us)
	parts="$parts${parts:+; }$sc ${m} µs"
	[ "$(echo $us | wc -w)" -gt 1 ] && parts="$parts (rounds: $(echo $us | sed 's/ /, /g'))"
	worst=$(awk -v a="$worst" -v b="$m" 'BEGIN { print (a == "" || b + 0 > a + 0) ? b : a }')
done
target "worker CPU per call at c=32 ≤ 15 µs (pool_max 4; the verdict on the worst of S1, S2, S6)" "${parts:-–}" "$(le "$worst" 15)"

# the earlier targets that these do not replace
rs=$(round_ratios np4 dblink S2 1)
r16=$(ratio "$(value np16 S2 1 tps)" "$(value dblink S2 1 tps)")
extra=
[ -n "$r16" ] && extra="; pool_max 16, main pass: ${r16}×"
target "c=1, S2: netrun_pool tps ≥ 0.8× persistent dblink" "$(rounds_text $rs)$extra" "$(ge "$(median $rs)" 0.8)"
for s in S1 S2; do
	pn=$(value np4 $s 32 peak_conns)
	pd=$(value dblink $s 32 peak_conns)
	ok=
	[ -n "$pn" ] && [ -n "$pd" ] && ok=$([ "$pn" -le 4 ] && [ "$pd" -eq 32 ] && echo 1 || echo 0)
	target "c=32, $s: remote connections, netrun_pool ≤ 4 and dblink = 32" "netrun_pool ${pn:-–}, dblink ${pd:-–}" "$ok"
done
for s in S1 S2; do
	rs=$(round_ratios np4 cpc $s 1)
	target "c=1, $s: netrun_pool ≥ 100× dblink connect-per-call" "$(rounds_text $rs)" "$(ge "$(median $rs)" 100)"
	rs=$(round_ratios np4 fdw $s 1)
	target "c=1, $s: netrun_pool ≥ 2.5× postgres_fdw" "$(rounds_text $rs)" "$(ge "$(median $rs)" 2.5)"
done
r=$(ratio "$(value np4 S4 1 tps)" "$(value dblink S4 1 tps)")
extra=
for c in 8 32; do
	rc=$(ratio "$(value np4 S4 $c tps)" "$(value dblink S4 $c tps)")
	[ -n "$rc" ] && extra="$extra; c=$c: ${rc}×"
done
target "S4 (c=1): netrun_pool throughput ≥ 0.8× dblink" "${r:-–}×$extra" "$(ge "$r" 0.8)"
S4_HWM=$(awk -F'\t' 'NR > 1 && $2 == "S4" && $12 != "-" && $16 != "-" { if ($16 + 0 > m) m = $16 + 0; n++ } END { if (n) print m }' "$CELLS")
S4_HWM_MB=$(awk -v k="$S4_HWM" 'BEGIN { if (k != "") printf "%.1f", k / 1024 }')
target "S4: worker RSS growth < 16 MB (peak VmHWM − RSS before, worst S4 run)" "${S4_HWM_MB:-–} MB" "$(lt "$S4_HWM_MB" 16)"
ACQ=$(awk -F'\t' 'NR > 1 && (($1 == "np4" && $3 <= 4) || ($1 == "np16" && $3 <= 16)) && $17 != "-" { n++; if ($17 + 0 > m) { m = $17 + 0; w = $1 " " $2 " c=" $3 } } END { if (n) printf "%s %s (%d runs)\n", m, w, n }' "$CELLS")
target "acquire_wait_p95_ms < 0.05 while c ≤ pool_max (worst run)" "${ACQ:-–} ms" "$(lt "${ACQ%% *}" 0.05)"
if [ $IDLE_DONE = 1 ]; then
	target "idle: 1,000 idle pooled connections in 100 pools cost the worker < 1% CPU" "${IDLE_CPU_PCT}% of a core (/proc/stat ticks; ${IDLE_CPU_NS_PCT}% by schedstat), $IDLE_REMOTE connections" "$(lt "$IDLE_CPU_PCT" 1)"
else
	target "idle: 1,000 idle pooled connections in 100 pools cost the worker < 1% CPU" "– (full mode only)" ""
fi
PER_CONN_16=$(awk -v a="$RSS_P4" -v b="$RSS_P16" 'BEGIN {printf "%.0f", (b - a) / 16}')
PER_CONN_IDLE=
[ $IDLE_DONE = 1 ] && PER_CONN_IDLE=$(awk -v a="$IDLE_RSS0" -v b="$IDLE_RSS1" 'BEGIN {printf "%.0f", (b - a) / 1000}')
BACKEND_FIRST=$((BACKEND_RSS_ONE - BACKEND_RSS_BASE))
BACKEND_SECOND=$((BACKEND_RSS_TWO - BACKEND_RSS_ONE))
PER_CONN=${PER_CONN_IDLE:-$PER_CONN_16}
target "memory per pooled connection lower than a backend-held libpq (dblink) connection" "worker ${PER_CONN} kB per connection ($([ -n "$PER_CONN_IDLE" ] && echo "1,000 idle connections; 16 of p16: $PER_CONN_16 kB" || echo "the 16 of p16")); backend: ${BACKEND_FIRST} kB for its first, ${BACKEND_SECOND} kB for one more" "$(lt "$PER_CONN" "$BACKEND_SECOND")"

# the summary table
SUMMARY=$WORK/out/summary.md
{
	echo "netrun_pool bench, $MODE mode, $DATE: $NCPU cores ($CPU_MODEL), PostgreSQL $PG_VERSION, loopback; $DURATION s per cell."
	echo "tps = transactions per second (S4: rows per second); conns = the remote's connections at c=32 (S1), peak of samples every 100 ms."
	echo
	echo "| contestant | S1 c=1 | S1 c=32 | S1 c=128 | S1 p95 ms c=1 | S2 c=1 | S2 c=32 | S3 c=32 | S4 rows/s c=1 | S5 c=32 | conns c=32 |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for who in $CONTESTANTS; do
		case $who in npg | np4s0) continue ;; esac  # the next table
		s4=$(value "$who" S4 1 tps)
		[ -n "$s4" ] && s4=$(awk -v v="$s4" 'BEGIN {print v * 100000}')
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$who")" \
			"$(fmt_int "$(value "$who" S1 1 tps)")" "$(fmt_int "$(value "$who" S1 32 tps)")" \
			"$(fmt_int "$(value "$who" S1 128 tps)")" "$(value "$who" S1 1 p95_ms || true)" \
			"$(fmt_int "$(value "$who" S2 1 tps)")" "$(fmt_int "$(value "$who" S2 32 tps)")" \
			"$(fmt_int "$(value "$who" S3 32 tps)")" "$(fmt_int "$s4")" \
			"$(fmt_int "$(value "$who" S5 32 tps)")" "$(value "$who" S1 32 peak_conns || true)"
	done | sed 's/|  |/| – |/g; s/|  |/| – |/g'
	echo
	echo "S1 by clients, S2 next to S6 (S2 carrying a tenant: netrun_pool by set_config with tenant_guard off, or by the remote guard; dblink by set_config(..., true) and the query in one remote transaction) and S7 (S2 as a read_only call), tps:"
	echo
	echo "| contestant | S1 c=1 | S1 c=2 | S1 c=8 | S1 c=32 | S2 c=1 | S6 c=1 | S7 c=1 | S2 c=8 | S6 c=8 | S7 c=8 | S2 c=32 | S6 c=32 |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for who in np4 np4s0 npg dblink; do
		echo " $CONTESTANTS " | grep -q " $who " || continue
		printf '| %s' "$(label "$who")"
		for sc in S1:1 S1:2 S1:8 S1:32 S2:1 S6:1 S7:1 S2:8 S6:8 S7:8 S2:32 S6:32; do
			printf ' | %s' "$(fmt_int "$(value "$who" "${sc%:*}" "${sc#*:}" tps)")"
		done
		printf ' |\n'
	done
	echo
	echo "| target | measured | result |"
	echo "|---|---|---|"
	cat "$TARGETS"
} >"$SUMMARY"

# the chart data
for who in np4 np16 dblink cpc fdw pgb direct; do
	for s in S1 S2 S3 S4 S5; do
		awk -F'\t' -v w="$who" -v s="$s" 'NR > 1 && $1 == w && $2 == s && $4 != "-" { print $3, (s == "S4" ? $4 * 100000 : $4) }' "$CELLS" | sort -n >"$WORK/chart/${s}_$who.dat"
	done
	awk -F'\t' -v w="$who" 'NR > 1 && $1 == w && $2 == "S1" { print $3, ($11 > 0 ? $11 : 0.9) }' "$CELLS" | sort -n >"$WORK/chart/conns_$who.dat"
done
mkdir -p "$bench/results"
PANELS=$(awk -F'\t' 'NR > 1 && $4 != "-" { sub("S", "", $2); seen[$2] = 1 } END { for (i = 1; i <= 5; i++) if (i in seen) printf "%s%d", (n++ ? " " : ""), i }' "$CELLS")
gnuplot -e "dir='$WORK/chart'; panels='$PANELS'; out='$RESULT_BASE.png'; heading='netrun\\_pool bench, $MODE mode, $DATE ($NCPU cores, PostgreSQL $PG_VERSION, loopback, $DURATION s per cell)'" \
	"$bench/chart.gp" 2>"$WORK/out/gnuplot.err" || problem "gnuplot failed: $(head -3 "$WORK/out/gnuplot.err")"

# the full tables
cell_table() { # cell_table SCENARIO
	echo "| contestant | c | tps | avg ms | p95 ms | p99 ms | remote conns (peak) | transactions | failed | worker CPU s | worker CPU % | worker CPU µs per call | worker RSS before → after kB | worker HWM growth kB | acquire_wait_p95_ms |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
	awk -F'\t' -v s="$1" 'NR > 1 && $2 == s' "$CELLS" | sort -t"$(printf '\t')" -k3,3n -s |
		while IFS=$'\t' read -r who sc c tps xacts failed aborted avg p95 p99 peak wcpu wpct r0 r1 hwm acq acquired queries errors created note; do
			fail="$failed"
			[ "$aborted" != 0 ] && fail="$failed, $aborted clients aborted"
			printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$who")" "$c" "$(fmt_int "$tps")" \
				"$avg" "$p95" "$p99" "$peak" "$xacts" "$fail" "$wcpu" "$wpct" \
				"$(awk -v w="$wcpu" -v q="$queries" 'BEGIN { if (w == "-" || q == "-" || q + 0 == 0) print "-"; else printf "%.0f", w * 1e6 / q }')" \
				"$([ "$r0" = - ] && echo – || echo "$r0 → $r1")" "$hwm" "$acq"
		done | sed 's/| - |/| – |/g; s/| - |/| – |/g'
}
s4_table() {
	echo "| contestant | c | transactions/s | rows/s | MB/s | avg ms | p95 ms | worker RSS growth (HWM) kB |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' 'NR > 1 && $2 == "S4" && $4 != "-"' "$CELLS" | sort -t"$(printf '\t')" -k3,3n -s |
		while IFS=$'\t' read -r who sc c tps xacts failed aborted avg p95 p99 peak wcpu wpct r0 r1 hwm rest; do
			printf '| %s | %s | %.2f | %s | %.1f | %s | %s | %s |\n' "$(label "$who")" "$c" "$tps" \
				"$(fmt_int "$(awk -v t="$tps" 'BEGIN {print t * 100000}')")" \
				"$(awk -v t="$tps" -v b="$S4_BYTES" 'BEGIN {print t * b / 1e6}')" "$avg" "$p95" "$([ "$hwm" = - ] && echo – || echo "$hwm")"
		done
}

REPORT=$RESULT_BASE.md
if [ -n "${PIPELINE_DEPTH:-}" ]; then
	PIPE_TEXT=", \`pipeline_depth => $PIPELINE_DEPTH\`"
else
	PIPE_TEXT=" (\`pipeline_depth\`, where the pool code has it, at register()'s default)"
fi
{
	echo "# netrun_pool bench: $DATE ($MODE mode)"
	echo
	echo "Made by \`$( [ $MODE = quick ] && echo 'QUICK=1 ')bash bench/run.sh\` in $((ELAPSED / 60)) min $((ELAPSED % 60)) s; chart: [\`$(basename "$RESULT_BASE").png\`]($(basename "$RESULT_BASE").png)."
	echo
	echo "<!-- bench:summary:start -->"
	cat "$SUMMARY"
	echo "<!-- bench:summary:end -->"
	echo
	echo "![tps by clients, per scenario, and the remote connections held]($(basename "$RESULT_BASE").png)"
	echo
	echo "## Setup"
	echo
	echo "- Machine: $NCPU cores ($CPU_MODEL), $MEM_GB GB of memory. Everything runs on this one machine, over loopback TCP: pgbench, the local server, the remote server, pgbouncer. With 2 cores, the c=8 and above cells measure CPU contention as much as anything: pgbench, the local backends, the netrun_pool worker, pgbouncer and the remote backends share them."
	echo "- PostgreSQL $PG_VERSION (local and remote), $BOUNCER_VERSION, pgbench from PostgreSQL $PG_VERSION; netrun_pool built from this tree without asserts (\`make\`, PGXS's -O2)."
	echo "- Remote: table \`t (id int PRIMARY KEY, payload text)\`, 1,000,000 rows with a 96-character payload, loaded in one transaction committed with \`synchronous_commit = on\`, then \`VACUUM (FREEZE, ANALYZE)\`: $T_ALL_VISIBLE of its $T_PAGES pages all-visible, $T_ALL_FROZEN all-frozen (\`pg_visibility\`), so that no cell sets hint bits; table and index loaded into shared_buffers (512 MB) with \`pg_prewarm\` before the first cell; \`ins (id bigserial PRIMARY KEY, v int)\` for S5; \`max_connections = 1200\`, \`synchronous_commit = off\` (S5 measures the call path, not the disk's fsync), \`autovacuum = off\`, \`jit = off\`."
	echo "- A fresh remote backend's first touch of the table's buffers: \`pg_prewarm('t', 'buffer')\` in a new session took $FIRST_TOUCH_MS ms, and again in the same session $SECOND_TOUCH_MS ms: **$FIRST_TOUCH_US µs per block** the first time a process maps a shared buffer. A new remote connection (persistent dblink, postgres_fdw and direct start new ones in every cell) pays it for each block it reads for the first time; a pooled connection, open since the setup, has paid it in earlier cells."
	echo "- The remote tenant guard, for \`netrun_pool, pool_max 4, remote guard\` (p4g): \`CREATE EXTENSION netrun_pool\` in the remote database, \`netrun_pool.tenant_mode = pool\` and \`netrun_pool.guard_key_file\` in the remote's configuration (the same key file as the local server's \`netrun_pool.guard_key_file\`), and \`session_preload_libraries = 'netrun_pool'\` for the remote role of p4g only (\`ALTER ROLE bench_npg SET\`). docs/tenancy.md sets \`session_preload_libraries\` for the whole remote: then every contestant's remote sessions would load netrun_pool and run its hooks (the redaction's post_parse_analyze hook on every statement); here only p4g's do, so the other contestants are measured as before. The other pools have \`tenant_guard => 'off'\`: a call that carries a tenant sets \`app.current_tenant_id\` by \`set_config\`."
	echo "- Local: \`shared_preload_libraries = 'netrun_pool'\`, \`max_connections = 200\`, \`max_worker_processes = 16\`, \`netrun_pool.max_pools = 128\`, \`netrun_pool.max_connections = 2000\`, \`max_files_per_process = 6000\` (and the server's soft descriptor limit raised to 16384: the worker holds one descriptor per remote connection, and with PostgreSQL's defaults it gets about a third of \`max_files_per_process = 1000\`), \`jit = off\` (else postgres_fdw's S4 plan is JIT-compiled on every call), \`autovacuum = off\`; other settings default (\`work_mem = 4MB\`: S4's tuplestores spill to disk for every contestant)."
	echo "- Each contestant has its own role on the remote, so the remote's \`pg_stat_activity\` tells them apart (client backends, sampled every 100 ms; the sampler itself and netrun_pool's health probes, one connection per pool, application_name \`netrun_pool_probe:NAME\`, are left out)."
	echo
	echo "| contestant | how a call reaches the remote |"
	echo "|---|---|"
	echo "| netrun_pool, pool_max 4 / 16 | \`netrun_pool.fetchval / query / exec('p4' or 'p16', ...)\`; the pools registered with pool_min = pool_max, \`acquire_timeout_ms => 60000\`, \`tenant_guard => 'off'\`$PIPE_TEXT; \`reset_stats()\` before each run. S6: \`set_tenant('tenant_' || client_id)\` in each pgbench client's first transaction, then the S2 call, which carries the tenant (\`set_config('app.current_tenant_id', ...)\` on the remote, pipelined before the statement). S7: the S2 call with \`read_only => true\` (\`BEGIN READ ONLY\`, the statement, \`COMMIT\` on the remote) |"
	echo "| netrun_pool, pool_max 4, remote guard | S6 only, on p4g: pool_min = pool_max = 4, \`tenant_guard => 'required'\`, to the same remote with the guard (see above); the tenant travels as \`netrun_pool.guard_assert()\`, a signed assertion |"
	echo "| netrun_pool, pool_max 4, spin_wait_us = 0 | S1 at c = 1 only, on p4, with \`netrun_pool.spin_wait_us = 0\` for the backends and the worker (\`ALTER SYSTEM\` and a reload before the cell, reset after it): no polling for a lone call |"
	echo "| dblink, persistent connection | \`dblink_connect('bench', connstr)\` in each pgbench client's first transaction, then \`dblink('bench', sql)\` / \`dblink_exec\`. S6: one \`dblink('bench', 'SELECT NULL::int, set_config(''app.current_tenant_id'', ''tenant_N'', true); SELECT id, payload FROM t WHERE id = K')\` per transaction: two statements in one message, which the remote runs as one transaction, so the tenant holds for the query and is gone after it; one round trip, as a pooled call (dblink returns the last statement's rows, and wants every statement's to have the columns of its \`AS t(...)\`: hence the NULL::int) |"
	echo "| dblink, connect per call | \`dblink(connstr, sql)\` / \`dblink_exec(connstr, sql)\`: a new remote connection for every call |"
	echo "| postgres_fdw | foreign tables \`f_t\`, \`f_ins\`, and \`f_one\` over the remote view \`one\` (\`SELECT 1 AS x\`) for S1; default options (fetch_size 100); S4 with \`OFFSET 0\` so that the aggregate stays local and the rows travel |"
	echo "| dblink via pgbouncer (pool 4) | as \"dblink, persistent\", but to pgbouncer (transaction mode, default_pool_size 4) in front of the remote |"
	echo "| pgbench direct to the remote | the same SQL sent by pgbench to the remote itself: the physical limit (S4: the 100,000 rows go to pgbench) |"
	echo
	echo "The exact scripts are in \`bench/pgbench/\`. pgbench: \`-n -M simple -T $DURATION -c C -j min(C,2) -l\`."
	echo "Latencies (avg, p95, p99) come from pgbench's per-transaction log, leaving out each client's first transaction (the one where dblink and postgres_fdw connect, netrun_pool makes its channel and S6 sets the tenant); tps is pgbench's (without initial connection time: pgbench's own connections; a dblink or postgres_fdw connect in the first transaction is counted)."
	if [ "$PLAN" != "$DEFAULT_PLAN" ] || [ "$CONTESTANTS" != "$DEFAULT_CONTESTANTS" ]; then
		echo "Cells chosen by hand: PLAN=\"$PLAN\", CONTESTANTS=\"$CONTESTANTS\"; $NCELLS cells of $DURATION s."
	elif [ $MODE = quick ]; then
		echo "Quick mode: S1 and S2 at c = 1 and 32, with netrun_pool pool_max 4, persistent dblink and direct; at c = 1 also S1 with spin_wait_us = 0, S6 (netrun_pool with and without the remote guard, dblink) and S7; $DURATION s per cell; no idle test."
	else
		echo "To stay within 20 minutes, not every cell runs: S1 at c = 1, 8, 32 and 128 (not connect-per-call dblink and postgres_fdw at 128) and at c = 2 (netrun_pool pool_max 4 and persistent dblink); S2 and S4 at c = 1, 8, 32; S6 (netrun_pool pool_max 4 with and without the remote guard, persistent dblink) and S7 (netrun_pool pool_max 4) at c = 1, 8, 32, in one group with S2 at each c; S3 and S5 at c = 1 and 32; spin_wait_us = 0 only for S1 at c = 1; connect-per-call dblink only at c ≤ 8. $NCELLS cells of $DURATION s."
	fi
	if [ "$ROUNDS" -gt 1 ]; then
		echo "The cells the targets compare ran $ROUNDS times: the main pass, then $((ROUNDS - 1)) more rounds of these groups, the cells of a group side by side in time and in another order in each round (the main pass, too, turns the order from one group of cells to the next): $(echo $ROUND_GROUPS | sed 's/ /; /g; s/,/, /g; s/:/: /g'). Before every cell the script waits for the previous cell's remote sessions to end and flushes the machine's dirty pages (\`sync\`), and the remote checkpoints before each round, so that one cell's writes do not land in the next. A target's verdict is the median over the rounds of the ratio within each round; the tables below show the main pass, and the rounds' tps are under \"Target cells by round\"."
	fi
	echo
	echo "## Results by scenario"
	for s in S1 S2 S3 S4 S5 S6 S7; do
		grep -q "	$s	" "$CELLS" || continue
		case $s in
		S1) t="S1: \`SELECT 1\` round trip" ;; S2) t="S2: one row by primary key" ;;
		S3) t="S3: 100 rows" ;; S4) t="S4: a 100,000-row result" ;; S5) t="S5: an INSERT of one row" ;;
		S6) t="S6: one row by primary key, carrying a tenant" ;; S7) t="S7: one row by primary key, a read_only call" ;;
		esac
		echo
		echo "### $t"
		echo
		cell_table "$s"
		if [ $s = S4 ]; then
			echo
			echo "Throughput (MB/s counts the rows' text as it travels: $(fmt_int "$S4_BYTES") bytes of id and payload per 100,000-row result):"
			echo
			s4_table
		fi
	done
	echo
	echo "Worker columns (netrun_pool runs only): CPU from \`/proc/<worker pid>/stat\` (utime + stime) over the run, as seconds, as a share of one core, and per call (\`queries_total\`); RSS from \`/proc/<pid>/status\` before and after; HWM growth = VmHWM after the run (reset with \`clear_refs\` before it) minus VmRSS before. \`acquire_wait_p95_ms\` from \`netrun_pool.pool_stats\`."
	echo
	echo "## Memory per connection"
	echo
	echo "| what | RSS |"
	echo "|---|---:|"
	echo "| netrun_pool worker, no pools | $RSS_NO_POOLS kB |"
	echo "| … with p4 (4 pooled connections + 1 probe) | $RSS_P4 kB |"
	echo "| … with p16 too (16 + 1 more) | $RSS_P16 kB: **$PER_CONN_16 kB per pooled connection** (probe included in the delta) |"
	if [ $IDLE_DONE = 1 ]; then
		echo "| … before the idle test (after all the runs) | $IDLE_RSS0 kB |"
		echo "| … with 100 more pools of 10 idle connections (1,000 + 100 probes) | $IDLE_RSS1 kB: **$PER_CONN_IDLE kB per pooled connection** |"
	fi
	echo "| a local backend, dblink loaded, no connection | $BACKEND_RSS_BASE kB |"
	echo "| … holding one dblink connection (after one \`SELECT 1\` on it) | $BACKEND_RSS_ONE kB: **$BACKEND_FIRST kB** for its first connection |"
	echo "| … holding a second one | $BACKEND_RSS_TWO kB: **$BACKEND_SECOND kB** for one more |"
	echo
	echo "Not counted on either side: each remote connection also costs a backend on the remote. netrun_pool's point is that it needs fewer of them (see the remote connections columns)."
	if [ $IDLE_DONE = 1 ]; then
		echo
		echo "## Idle cost"
		echo
		echo "100 pools registered in one transaction, each \`pool_min => 10, pool_max => 10\`, against the remote (user bench_idle); warm (all 1,000 connections open and every pool healthy) after $IDLE_WARM_S s; then 10 s of nothing, with the default \`health_interval_ms\` (10 s: one probe per pool in that window) and p4 and p16 still registered:"
		echo
		echo "- remote connections held: $IDLE_REMOTE (pool_stats total over all pools: $IDLE_TOTAL)"
		echo "- worker CPU over the 10 s: **${IDLE_CPU_PCT}%** of one core by \`/proc/<pid>/stat\` (10 ms ticks), ${IDLE_CPU_NS_PCT}% by \`/proc/<pid>/schedstat\` (ns)"
		echo "- worker RSS: $IDLE_RSS0 kB → $IDLE_RSS1 kB"
		echo "- afterwards the 100 pools were unregistered; remote connections of bench_idle left after that: $IDLE_LEFT"
	fi
	echo
	echo "## Problems seen"
	echo
	if [ -s "$PROBLEMS" ]; then sed 's/^/- /' "$PROBLEMS"; else echo "None: no pgbench client aborted, no netrun_pool call failed (pool_stats errors_total = 0 in every run), the worker kept its pid, and the local log has no crash."; fi
	echo
	echo "ERROR lines in the server logs: local $LOCAL_ERRORS, remote $REMOTE_ERRORS."
	if [ -s "$ROUND_CELLS" ]; then
		echo
		echo "## Target cells by round"
		echo
		echo "| contestant | scenario | c | round 1 (main pass) tps | later rounds tps |"
		echo "|---|---|---:|---:|---|"
		for g in $ROUND_GROUPS; do
			cc=${g%%:*}
			for cell in $(echo "${g#*:}" | tr ',' ' '); do
				who=${cell%/*} s=${cell#*/}
				t1=$(value "$who" "$s" "$cc" tps)
				[ -n "$t1" ] || continue
				later=$(awk -F'\t' -v w="$who" -v s="$s" -v c="$cc" '$1 == w && $2 == s && $3 == c { printf "%s%.0f", (n++ ? ", " : ""), $4 }' "$ROUND_CELLS")
				echo "| $(label "$who") | $s | $cc | $(fmt_int "$t1") | $later |"
			done
		done
	fi
	echo
	echo "## The machine and the remote during each cell"
	echo
	echo "In the order the cells ran. tps after 1 s: pgbench's per-transaction log from 1 s after the first transaction ended to the last (the clients' connects left out); all connected: seconds from the first transaction's end until every client had ended its first (where dblink and postgres_fdw connect). CPU: the whole machine's, /proc/stat (user, system, idle, iowait, steal, % of all cores), with context switches and page faults per transaction. Remote: pg_stat_database (bench) blocks hit per transaction and blocks read, checkpoints and buffers written (pg_stat_bgwriter), WAL written, the change in dirty buffers (pg_buffercache: pages a cell dirtied, by hint bits if it only read), and what the contestant's remote backends were doing in the 100 ms samples (CPU: active without a wait event; idle: waiting for the client)."
	echo
	echo "| contestant | scenario | c | round | tps | tps after 1 s | all connected s | CPU us/sy/id/wa/st % | cs / xact | faults / xact | remote blks hit / xact | blks read | ckpts | bufs written | WAL kB | dirtied | remote backends |"
	echo "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	awk -F'\t' 'NR > 1 { printf "| %s | %s | %s | %s | %.0f | %s | %s | %s/%s/%s/%s/%s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
		$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $17, $18, $19, $20, $21, $22, $23 }' "$DIAG" |
		while IFS= read -r line; do
			who=$(echo "$line" | cut -d'|' -f2 | tr -d ' ')
			echo "$line" | sed "s/^| $who |/| $(label "$who") |/"
		done
	echo
	echo "## Raw cells"
	echo
	echo '```'
	column -t -s"$(printf '\t')" "$CELLS" 2>/dev/null || cat "$CELLS"
	echo '```'
} >"$REPORT"

# the full run's figures in README and docs/benchmarks.md (between their
# bench:readme and bench:latest markers)
if [ $MODE = full ] && [ -z "${NO_PUBLISH:-}" ] && [ "$PLAN" = "$DEFAULT_PLAN" ] && [ "$CONTESTANTS" = "$DEFAULT_CONTESTANTS" ]; then
	CELLS="$CELLS" SUMMARY="$SUMMARY" RESULT="bench/results/$(basename "$RESULT_BASE")" \
		ELAPSED="$ELAPSED" NCPU="$NCPU" CPU_MODEL="$CPU_MODEL" PG_VERSION="$PG_VERSION" DATE="$DATE" \
		bash "$bench/publish.sh" && log "README and docs/benchmarks.md: the figures of this run"
fi

echo
cat "$SUMMARY"
echo
echo "results: $REPORT"
echo "chart:   $RESULT_BASE.png"
log "done in $((ELAPSED / 60)) min $((ELAPSED % 60)) s"
