#!/usr/bin/env bash
# bench/isolation.sh: "no remote can slow another" (issue 18).
#
#   bash bench/isolation.sh              # as root: every scenario, 20 s cells (about 8 minutes)
#   QUICK=1 bash bench/isolation.sh      # the same cells, 3 s each (about 2 minutes): checks the harness
#
# One pgbench client calls a healthy remote, good, back to back
# (SELECT netrun_pool.fetchval('good', 'SELECT 1')) while something happens
# to another remote.  Each scenario runs twice in the same run: once with
# good called through netrun_pool, once with the same calls made through
# dblink on a persistent connection (the control: the same disturbance,
# without netrun_pool's worker between good and its caller).  The
# disturbance is always made through netrun_pool.
#
#   baseline   nothing else happening (run first; once more at the end, to
#              show the drift of this shared machine)
#   dns_tx     a remote registered by host name (slow.netrun.test), whose DNS
#              server answers after 3 s, called by 4 callers; pool_mode transaction
#   dns_none   the same with pool_mode none (a connect, so a lookup, per call)
#   dns_probe  two such remotes (transaction and none) registered, nobody
#              calls them: only their health probes resolve the name
#   bh200      200 remotes at a black hole (a loopback port that drops every
#              SYN: test/black_hole.pl), pool_min 1
#   reg1000    1,000 remotes: those 200, and 800 disabled ones
#   big50      4 callers, each sending two 50 MB SQL texts
#              (SELECT length('<50 MB literal>')) to another remote (above
#              netrun_pool.max_request_size: netrun_pool refuses them)
#   big4       the same with 4,000 kB texts, under max_request_size's 4 MB
#   stop8      8 callers on another remote, stopped with pg_ctl stop -m
#              immediate at a quarter of the cell and started again at half
#              of it; the callers' next calls (how long until they fail) and
#              the time from the restart to the first success are reported
#   cpu4, cpu8 the CPU-only controls: good through netrun_pool beside 4 or 8
#              busy processes (yes > /dev/null), as many as the scenarios
#              with callers have callers; a scenario without callers is
#              compared with the baseline
#
# good's p50, p99 and max come from pgbench's per-transaction log: each
# call's time is the interval from the previous call's end to its own (the
# first call, where dblink connects, left out); calls/s over the cell.  The
# disturbance starts 1 s into each cell.  Verdict per scenario: "stalled" if
# good's max > 1 s or its calls/s < 50% of its control's (the CPU-only
# control with as many busy processes as the scenario has callers, else the
# baseline); else "pass" if its p99 is within 3x the baseline's or within
# 1.5x the CPU-only control's; else "slowed".
#
# Where things run (all on loopback, nothing leaves the machine):
#   - three servers as the unprivileged user netrun_bench under
#     $NETRUN_ISO_BENCH_DIR (default /var/tmp/netrun_pool_bench_isolation):
#     local (netrun_pool preloaded, dblink), good, and other (the remote
#     that the DNS, 50 MB and stop scenarios disturb), on ports from 27632;
#   - the slow DNS server, test/fake_dns.pl, as root on $DNS_ADDR:53
#     (default 127.0.53.18).  Only the local server resolves through it:
#     it is started in a private mount namespace (unshare -m) where a
#     resolv.conf naming $DNS_ADDR is bind-mounted over /etc/resolv.conf.
#     The machine's /etc/resolv.conf is checked unchanged before and after;
#   - the black hole, test/black_hole.pl, on a loopback port.
# A sampler lists, every 0.5 s, any socket of netrun_bench's processes whose
# peer is off loopback (the results say how many it saw).
#
# It builds and installs netrun_pool (optimized, no asserts) from a copy of
# this tree, like bench/run.sh, and holds /tmp/netrun_pool.lock throughout.
# Results: bench/results/<date>-isolation[-$LABEL].md (-quick in quick mode).
# Environment: QUICK=1; DURATION (seconds per cell); LABEL (a suffix for the
# results file, e.g. LABEL=before); DNS_ADDR; DNS_DELAY_MS (3000; 1000 in quick mode);
# SCENARIOS (a subset, in order, e.g. "baseline dns_tx cpu4"); KEEP=1 keeps
# the work dir (the servers are always stopped).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

require_root
T0=$SECONDS
BENCH_USER=netrun_bench
WORK=${NETRUN_ISO_BENCH_DIR:-/var/tmp/netrun_pool_bench_isolation}
DATE=$(date +%F)
DNS_ADDR=${DNS_ADDR:-127.0.53.18}
DNS_NAME=slow.netrun.test
ALL_SCENARIOS="baseline dns_tx dns_none dns_probe bh200 reg1000 big50 big4 stop8 cpu4 cpu8 baseline_end"
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
if [ -n "${QUICK:-}" ]; then
	MODE=quick
	DURATION=${DURATION:-3}
	DNS_DELAY_MS=${DNS_DELAY_MS:-1000}
	STOP8_TAIL=4    # seconds stop8's callers go on after good's cell
else
	MODE=full
	DURATION=${DURATION:-20}
	DNS_DELAY_MS=${DNS_DELAY_MS:-3000}
	STOP8_TAIL=10
fi
RESULT=$here/bench/results/$DATE-isolation${LABEL:+-$LABEL}${QUICK:+-quick}.md

log() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
now() { date +%s.%N; }
PROBLEMS=$WORK/out/problems.txt
problem() { echo "$*" >>"$PROBLEMS"; log "PROBLEM: $*"; }

# ---------------------------------------------------------------- clean-up
# Only what this script started: its three servers (pg_ctl), and its
# background processes by their pids.
BG_PIDS=()
stop_all() {
	local p
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	BG_PIDS=()
	stop_bench_servers "$BENCH_USER" "$WORK/local" "$WORK/good" "$WORK/other"
}
on_exit() {
	local rc=$?
	stop_all
	if [ -n "${RESOLV_SUM:-}" ] && [ "$(sha256sum </etc/resolv.conf)" != "$RESOLV_SUM" ]; then
		echo "error: /etc/resolv.conf changed during the run" >&2
		rc=1
	fi
	if [ -d "$WORK" ]; then
		if [ -n "${KEEP:-}" ] || [ "$rc" != 0 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
	fi
	exit "$rc"
}

ensure_packages
ensure_user "$BENCH_USER"
command -v unshare >/dev/null && command -v nsenter >/dev/null || die "unshare and nsenter (util-linux) are needed"

take_bench_lock

stop_all
rm -rf "$WORK"
mkdir -p "$WORK/run" "$WORK/out" "$WORK/cells"
: >"$PROBLEMS"
trap on_exit EXIT
trap 'exit 130' INT TERM
chmod 755 "$WORK"

RESOLV_SUM=$(sha256sum </etc/resolv.conf)
GIT_REV=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_BRANCH=$(git -C "$here" rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git -C "$here" status --porcelain -- src sql Makefile netrun_pool.control 2>/dev/null | awk '{print $NF}' | paste -sd' ' || true)

log "building and installing netrun_pool (optimized, no asserts) from $GIT_BRANCH $GIT_REV"
copy_tree "$here" "$WORK/src" "$BENCH_USER"
chown -R "$BENCH_USER:" "$WORK"
build_and_install "$WORK/src" "$BENCH_USER" -j"$(nproc)"

# Below the ephemeral range (32768-60999), apart from the other benches'
# (run.sh 26432+, tenant_policy.sh 27432+, remote_tenant.sh 27532+).
LOCAL_PORT=$(next_port 27632 "$WORK/run")
GOOD_PORT=$(next_port $((LOCAL_PORT + 1)) "$WORK/run")
OTHER_PORT=$(next_port $((GOOD_PORT + 1)) "$WORK/run")
HOLE_PORT=$(next_port $((OTHER_PORT + 1)) "$WORK/run")
DEAD_PORT=$(next_port $((HOLE_PORT + 1)) "$WORK/run") # nothing listens: the disabled remotes
[ -z "$(ss -Hlun "src $DNS_ADDR:53")" ] || die "something already listens on udp $DNS_ADDR:53 (set DNS_ADDR)"

# ---------------------------------------------------------------- servers
init_server() { # init_server NAME PORT EXTRA_CONF
	init_bench_server "$BENCH_USER" "$WORK/$1" "$2" "$WORK/run" "max_connections = 100
$3"
}
start_remote() { # the server must not inherit the lock's descriptor
	as_user "$BENCH_USER" pg_ctl -D "$WORK/$1" -l "$WORK/$1.log" -w start >/dev/null 9>&- ||
		die "the $1 server did not start (see $WORK/$1.log)"
}

log "starting the remotes good (127.0.0.1:$GOOD_PORT) and other (127.0.0.1:$OTHER_PORT)"
init_server good "$GOOD_PORT" ""
init_server other "$OTHER_PORT" ""
start_remote good
start_remote other

log "starting the slow DNS server on $DNS_ADDR:53 ($DNS_NAME after $DNS_DELAY_MS ms) and the black hole on 127.0.0.1:$HOLE_PORT"
perl "$here/test/fake_dns.pl" --address "$DNS_ADDR" --port 53 --name "$DNS_NAME" \
	--delay-ms "$DNS_DELAY_MS" --ttl 1 --max-seconds 3600 >"$WORK/out/dns.log" 2>&1 9>&- &
BG_PIDS+=($!)
perl "$here/test/black_hole.pl" --port "$HOLE_PORT" --max-seconds 3600 >"$WORK/out/hole.log" 2>&1 9>&- &
BG_PIDS+=($!)
for _ in $(seq 50); do grep -q '^ready' "$WORK/out/dns.log" && grep -q '^ready' "$WORK/out/hole.log" && break; sleep 0.1; done
grep -q '^ready' "$WORK/out/dns.log" || die "the DNS server did not start: $(cat "$WORK/out/dns.log")"
grep -q '^ready' "$WORK/out/hole.log" || die "the black hole did not start: $(cat "$WORK/out/hole.log")"

log "starting the local server on 127.0.0.1:$LOCAL_PORT, resolving through $DNS_ADDR (its own mount namespace)"
init_server local "$LOCAL_PORT" "shared_preload_libraries = 'netrun_pool'
netrun_pool.database = 'postgres'
netrun_pool.max_pools = 1100
netrun_pool.max_connections = 1300
max_files_per_process = 6000"
echo "nameserver $DNS_ADDR" >"$WORK/resolv.conf"
chmod 644 "$WORK/resolv.conf"
# unshare's child takes the bind mount and starts the postmaster in the
# namespace, which lives on with it; runuser's soft limit of 1024 files is
# lifted for the worker's 400 black-hole sockets (as in bench/run.sh)
unshare -m --propagation private bash -c '
	. "$1/scripts/common.sh"
	mount --bind "$2" /etc/resolv.conf || exit 1
	as_user "$3" bash -c "ulimit -n 16384 && exec pg_ctl -D $4 -l $4.log -w start" >/dev/null
' _ "$here" "$WORK/resolv.conf" "$BENCH_USER" "$WORK/local" 9>&- || die "the local server did not start (see $WORK/local.log)"
PM_PID=$(head -1 "$WORK/local/postmaster.pid")
[ "$(readlink "/proc/$PM_PID/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] ||
	die "the local server is not in a mount namespace of its own"
[ "$(nsenter -t "$PM_PID" -m cat /etc/resolv.conf)" = "nameserver $DNS_ADDR" ] ||
	die "the local server does not see the test resolv.conf"
[ "$(sha256sum </etc/resolv.conf)" = "$RESOLV_SUM" ] || die "/etc/resolv.conf changed"
RESOLV_CHECK="the local server's postmaster (pid $PM_PID) is in mount namespace $(readlink "/proc/$PM_PID/ns/mnt") and reads \`nameserver $DNS_ADDR\`; this shell, in $(readlink /proc/self/ns/mnt), reads the machine's /etc/resolv.conf, unchanged (sha256) before, during and after the run"

# off-loopback sampler: every socket of netrun_bench's processes with a
# peer outside 127.0.0.0/8 (and ::1), every 0.5 s, for at most an hour
BENCH_UID=$(id -u "$BENCH_USER")
(
	for _ in $(seq 7200); do
		ss -Htunae 2>/dev/null | awk -v u=" uid:$BENCH_UID " '
			index($0, u) && $6 !~ /^(127\.|\[::1\]|\[::ffff:127\.|\[::\]|\*|0\.0\.0\.0)/'
		sleep 0.5
	done
) >"$WORK/out/offloopback.txt" 2>/dev/null 9>&- &
BG_PIDS+=($!)

lpsql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$LOCAL_PORT" -U "$BENCH_USER" -d postgres "$@"; }
lval() { lpsql -At -c "$1"; }
dsn() { echo "host=${2:-127.0.0.1} port=$1 dbname=postgres user=$BENCH_USER"; }

log "the local server: netrun_pool, dblink, good, the callers' function"
lpsql >/dev/null <<SQL
CREATE EXTENSION netrun_pool;
CREATE EXTENSION dblink;
SELECT netrun_pool.register('good', '$(dsn "$GOOD_PORT")', pool_min => 2, pool_max => 2,
    password_required => false, tenant_guard => 'off', acquire_timeout_ms => 60000);
-- One caller of a disturbing remote: calls CONN with SQL back to back for
-- SECONDS (or MAX_CALLS calls), each error caught.  Rows: 'call' for each
-- call whose outcome differs from the one before (ok or the SQLSTATE) or
-- that took RECORD_MS or more, with its start and end (epoch s); then
-- 'count' per outcome.
CREATE FUNCTION iso_caller(conn text, sql text, seconds float8, max_calls int DEFAULT 0, record_ms float8 DEFAULT 100)
RETURNS TABLE (kind text, t0 numeric, t1 numeric, outcome text, n bigint) LANGUAGE plpgsql AS \$\$
DECLARE
  deadline timestamptz := clock_timestamp() + seconds * interval '1 second';
  prev text; o text; s timestamptz; e timestamptz; k bigint := 0;
  counts jsonb := '{}';
BEGIN
  WHILE clock_timestamp() < deadline AND (max_calls = 0 OR k < max_calls) LOOP
    s := clock_timestamp();
    BEGIN
      PERFORM netrun_pool.fetchval(conn, sql);
      o := 'ok';
    EXCEPTION WHEN OTHERS THEN
      o := SQLSTATE;
    END;
    e := clock_timestamp();
    k := k + 1;
    counts := jsonb_set(counts, ARRAY[o], to_jsonb(coalesce((counts->>o)::bigint, 0) + 1));
    IF o IS DISTINCT FROM prev OR e - s >= record_ms * interval '1 ms' THEN
      RETURN QUERY SELECT 'call', round(extract(epoch FROM s), 6), round(extract(epoch FROM e), 6), o, k;
    END IF;
    prev := o;
  END LOOP;
  RETURN QUERY SELECT 'count', NULL::numeric, NULL::numeric, c.key, c.value::bigint FROM jsonb_each_text(counts) c;
END
\$\$;
SQL
wait_for 30 "SELECT state FROM netrun_pool.worker_status()" running || die "the netrun_pool worker did not start"
GOOD_READY="SELECT count(*) FROM netrun_pool.pool_stats WHERE name = 'good' AND status = 'healthy' AND total = 2 AND checked_out = 0"
wait_for 30 "$GOOD_READY" 1 || die "good did not become healthy with its 2 connections"
WORKER_PID=$(lval "SELECT worker_pid FROM netrun_pool.worker_status()")
# the DNS path works: a lookup through the local server's resolver
lval "SELECT netrun_pool.register('dns_check', '$(dsn "$OTHER_PORT" "$DNS_NAME")', password_required => false, tenant_guard => 'off')" >/dev/null
t=$(now)
[ "$(lval "SELECT netrun_pool.fetchval('dns_check', 'SELECT 42')")" = 42 ] || die "a call by host name through the slow DNS server failed"
DNS_CHECK_S=$(awk -v a="$t" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
lval "SELECT netrun_pool.unregister('dns_check', true)" >/dev/null
grep -q "answer .* $DNS_NAME A NOERROR" "$WORK/out/dns.log" || die "the local server did not ask the slow DNS server"
log "a first call by host name took $DNS_CHECK_S s (the DNS server answers after $DNS_DELAY_MS ms)"

# ------------------------------------------------------------ the cells
cat >"$WORK/np.sql" <<'SQL'
SELECT netrun_pool.fetchval('good', 'SELECT 1');
SQL
cat >"$WORK/dblink.sql" <<SQL
\if :connected = 0
SELECT dblink_connect('good', '$(dsn "$GOOD_PORT")');
\set connected 1
\endif
SELECT x FROM dblink('good', 'SELECT 1') AS t(x int);
SQL

DISTURB_PIDS=()    # the cell's callers and busy processes
# start_callers N CONN SQL_EXPR SECONDS [MAX_CALLS RECORD_MS]: N sessions
# running iso_caller; SQL_EXPR is a SQL expression for the statement text.
# statement_timeout bounds each session if a call hangs past SECONDS.
start_callers() {
	local n=$1 conn=$2 sql=$3 secs=$4 max=${5:-0} rec=${6:-100} i
	for ((i = 1; i <= n; i++)); do
		PGOPTIONS="-c statement_timeout=$(((${secs%.*} + 60) * 1000))" \
			lpsql -At -F'|' -c "SELECT * FROM iso_caller('$conn', $sql, $secs, $max, $rec)" \
			>"$CELL/caller.$i" 2>"$CELL/caller_err.$i" 9>&- &
		DISTURB_PIDS+=($!)
	done
}
start_busy() { # start_busy N: N CPU-bound processes for the rest of the cell
	local i
	for ((i = 0; i < $1; i++)); do
		timeout "$((DURATION - 1))" yes >/dev/null 9>&- &
		DISTURB_PIDS+=($!)
	done
}
wait_disturbers() { # both end by themselves
	local p
	for p in "${DISTURB_PIDS[@]}"; do wait "$p" || true; done
	DISTURB_PIDS=()
}
hole_dsn() { dsn "$HOLE_PORT"; }
register_many() { # register_many PREFIX COUNT DSN EXTRA: COUNT remotes PREFIX_1..COUNT, in one statement
	lval "SELECT count(netrun_pool.register('$1_' || g, '$3', pool_max => 1, password_required => false, tenant_guard => 'off'$4)) FROM generate_series(1, $2) g" >/dev/null
}
unregister_all_but_good() {
	lval "SELECT count(netrun_pool.unregister(name, true)) FROM netrun_pool.connections WHERE name <> 'good'" >/dev/null
}

# What each scenario does: its callers (for the CPU-only control), and the
# steps before, at 1 s into, and after its cell.
callers_of() {
	case $1 in dns_tx | dns_none | big50 | big4 | cpu4) echo 4 ;; stop8 | cpu8) echo 8 ;; *) echo 0 ;; esac
}
big_sql() { # big_sql KB: a statement of that many kilobytes
	echo "'SELECT length(''' || repeat('x', $1 * 1024) || ''')'"
}
prepare() { # before the cell's clock starts
	case $1 in
	big50 | big4)
		lval "SELECT netrun_pool.register('big', '$(dsn "$OTHER_PORT")', pool_min => 4, pool_max => 4, password_required => false, tenant_guard => 'off')" >/dev/null
		wait_for 30 "SELECT count(*) FROM netrun_pool.pool_stats WHERE name = 'big' AND status = 'healthy' AND total = 4" 1 ||
			problem "$CELL_NAME: big did not open its 4 connections" ;;
	stop8)
		lval "SELECT netrun_pool.register('victim', '$(dsn "$OTHER_PORT")', pool_min => 8, pool_max => 8, password_required => false, tenant_guard => 'off')" >/dev/null
		wait_for 30 "SELECT count(*) FROM netrun_pool.pool_stats WHERE name = 'victim' AND status = 'healthy' AND total = 8" 1 ||
			problem "$CELL_NAME: victim did not open its 8 connections" ;;
	esac
}
disturb() { # at 1 s into the cell; returns while the disturbance goes on (stop8: after the restart)
	local rest=$((DURATION - 1))
	case $1 in
	dns_tx | dns_none)
		local mode=transaction
		[ "$1" = dns_none ] && mode=none
		lval "SELECT netrun_pool.register('$1', '$(dsn "$OTHER_PORT" "$DNS_NAME")', pool_max => 4, pool_mode => '$mode',
			  password_required => false, tenant_guard => 'off')" >/dev/null
		start_callers 4 "$1" "'SELECT 1'" "$rest" ;;
	dns_probe)
		lval "SELECT netrun_pool.register('probe_tx', '$(dsn "$OTHER_PORT" "$DNS_NAME")', pool_mode => 'transaction', password_required => false, tenant_guard => 'off'),
			         netrun_pool.register('probe_none', '$(dsn "$OTHER_PORT" "$DNS_NAME")', pool_mode => 'none', password_required => false, tenant_guard => 'off')" >/dev/null ;;
	bh200 | reg1000)
		local t=$(now)
		register_many hole 200 "$(hole_dsn)" ", pool_min => 1"
		[ "$1" = reg1000 ] && register_many off 800 "$(dsn "$DEAD_PORT")" ", enabled => false"
		echo "$t $(now)" >"$CELL/registered"
		# a second on: the worker's connects to the hole, hanging in SYN-SENT
		sleep 1
		ss -Htn state syn-sent "dport = :$HOLE_PORT" | wc -l >"$CELL/syn_sent" ;;
	big50)
		start_callers 4 big "$(big_sql $((50 * 1024)))" "$((rest + 60))" 2 0 ;;
	big4)
		start_callers 4 big "$(big_sql 4000)" "$((rest + 60))" 2 0 ;;
	stop8)
		start_callers 8 victim "'SELECT 1'" "$((rest + STOP8_TAIL))"
		sleep "$(awk -v r="$rest" 'BEGIN { print r / 4 }')"
		STOP_AT=$(now)
		as_user "$BENCH_USER" pg_ctl -D "$WORK/other" -m immediate -w stop >/dev/null
		STOPPED_AT=$(now)
		sleep "$(awk -v r="$rest" -v a="$STOP_AT" -v b="$(now)" 'BEGIN { s = r / 4 - (b - a); print (s > 0 ? s : 0) }')"
		START_AT=$(now)
		start_remote other
		READY_AT=$(now)
		echo "$STOP_AT $STOPPED_AT $START_AT $READY_AT" >"$CELL/timeline" ;;
	cpu4 | cpu8)
		start_busy "$(callers_of "$1")" ;;
	esac
}
settle() { # after the cell: back to good alone, idle and healthy
	wait_disturbers
	unregister_all_but_good
	wait_for 60 "SELECT pools FROM netrun_pool.worker_status()" 1 ||
		problem "$CELL_NAME: the worker still had $(lval "SELECT pools FROM netrun_pool.worker_status()") connections 60 s after the cell"
	wait_for 60 "$GOOD_READY" 1 || problem "$CELL_NAME: good was not healthy and idle 60 s after the cell"
	local p
	p=$(lval "SELECT worker_pid FROM netrun_pool.worker_status()" 2>/dev/null || true)
	if [ "$p" != "$WORKER_PID" ]; then
		problem "$CELL_NAME: the netrun_pool worker changed from pid $WORKER_PID to '${p:-none}'"
		WORKER_PID=$p
	fi
	sleep 1
}

# good's figures from a pgbench log: calls, p50, p99 and max in ms, calls/s.
# A call's time is the interval between its end and the previous call's
# end (one client, back to back), so the first call (dblink's connect) is
# left out.  Not pgbench's own latency field: pgbench reads its clock
# lazily, and a call whose answer was already in when a preempted pgbench
# got the CPU back is logged with 0 us (most calls beside busy processes).
latency_stats() {
	local iv
	iv=$(mktemp)
	awk '{ print $2, $5, $6 }' "$@" | sort -n |
		awk 'NR == 1 { base = $2 } { t = ($2 - base) * 1e6 + $3 } NR > 1 { print (t - prev) / 1000 } { prev = t }' |
		sort -g >"$iv"
	awk '{ lat[NR] = $1; sum += $1 }
		function pct(q,  i) { i = int(q * NR); if (i < q * NR) i++; if (i < 1) i = 1; return lat[i] }
		END { if (NR == 0) { print 0, "-", "-", "-", "-"; exit }
		      printf "%d %.3f %.3f %.3f %.1f\n", NR, pct(0.5), pct(0.99), lat[NR], NR / (sum / 1000) }' "$iv"
	rm -f "$iv"
}

CELLS=$WORK/out/cells.tsv
printf 'scenario\twho\tn\tp50_ms\tp99_ms\tmax_ms\tcalls_s\tdns_answers\tgood_errors\n' >"$CELLS"
run_cell() { # run_cell SCENARIO WHO(np|dblink)
	local scen=$1 who=$2 pgb t_start t_end t_settled errs0 errs1 stats dns
	CELL_NAME="$scen/$who"
	CELL=$WORK/cells/$scen.$who
	mkdir -p "$CELL"
	log "cell $CELL_NAME ($DURATION s)"
	prepare "$scen"
	errs0=$(lval "SELECT errors_total FROM netrun_pool.pool_stats WHERE name = 'good'")
	t_start=$(now)
	pgbench -n -M simple -c 1 -j 1 -T "$DURATION" -f "$WORK/$who.sql" -D connected=0 \
		-l --log-prefix="$CELL/good" -h 127.0.0.1 -p "$LOCAL_PORT" -U "$BENCH_USER" postgres \
		>"$CELL/pgbench.out" 2>"$CELL/pgbench.err" 9>&- &
	pgb=$!
	sleep 1
	disturb "$scen"
	wait "$pgb" || problem "$CELL_NAME: pgbench exited with $? ($(tail -1 "$CELL/pgbench.err"))"
	t_end=$(now)
	settle
	t_settled=$(now)
	errs1=$(lval "SELECT errors_total FROM netrun_pool.pool_stats WHERE name = 'good'")
	grep -q 'aborted' "$CELL/pgbench.err" && problem "$CELL_NAME: $(grep -m1 aborted "$CELL/pgbench.err")"
	stats=$(latency_stats "$CELL"/good.*)
	dns=$(awk -v a="$t_start" -v b="$t_settled" '$1 == "answer" && $2 >= a && $2 <= b' "$WORK/out/dns.log" | wc -l)
	printf '%s\t%s\t%s\t%s\t%s\n' "$scen" "$who" "$(echo "$stats" | tr ' ' '\t')" "$dns" "$((errs1 - errs0))" >>"$CELLS"
	log "  good: $(echo "$stats" | awk '{ printf "%d calls, p50 %s ms, p99 %s ms, max %s ms, %s calls/s", $1, $2, $3, $4, $5 }'); $dns DNS answers; settled in $(awk -v a="$t_end" -v b="$t_settled" 'BEGIN { printf "%.1f", b - a }') s"
}

for scen in $SCENARIOS; do
	case " $ALL_SCENARIOS " in *" $scen "*) ;; *) die "unknown scenario $scen (known: $ALL_SCENARIOS)" ;; esac
	case $scen in
	cpu4 | cpu8 | baseline_end) run_cell "$scen" np ;;
	*) run_cell "$scen" np; run_cell "$scen" dblink ;;
	esac
done
ELAPSED=$((SECONDS - T0))
[ "$(sha256sum </etc/resolv.conf)" = "$RESOLV_SUM" ] || problem "/etc/resolv.conf changed during the run"

# ------------------------------------------------------------ the report
value() { # value SCENARIO WHO COLUMN
	awk -F'\t' -v s="$1" -v w="$2" -v col="$3" '
		NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; next }
		$1 == s && $2 == w { print $(idx[col]); exit }' "$CELLS"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "-" || b == "-" || b == 0) print "–"; else printf "%.2f×", a / b }'; }
fmt() { awk -v v="$1" 'BEGIN { if (v == "" || v == "-") print "–"; else if (v >= 100) printf "%.0f", v; else if (v >= 10) printf "%.1f", v; else printf "%.3f", v }'; }
fmt_int() { awk -v v="$1" 'BEGIN { if (v == "" || v == "-") print "–"; else { s = sprintf("%.0f", v); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o } }'; }
label() {
	case $1 in
	baseline) echo "baseline: good alone" ;;
	baseline_end) echo "baseline again, at the end" ;;
	dns_tx) echo "1. slow DNS (${DNS_DELAY_MS} ms), 4 callers, pool_mode transaction" ;;
	dns_none) echo "1. slow DNS (${DNS_DELAY_MS} ms), 4 callers, pool_mode none" ;;
	dns_probe) echo "2. slow DNS, probes only (a transaction and a none remote)" ;;
	bh200) echo "3. 200 black holes, pool_min 1" ;;
	reg1000) echo "4. 1,000 registered: 800 disabled, 200 black holes" ;;
	big50) echo "5. 4 callers × two 50 MB SQL texts" ;;
	big4) echo "5b. 4 callers × two 4,000 kB SQL texts (under max_request_size)" ;;
	stop8) echo "6. remote stopped (immediate) and restarted, 8 callers" ;;
	cpu4) echo "CPU-only control: 4 busy processes" ;;
	cpu8) echo "CPU-only control: 8 busy processes" ;;
	esac
}
control_of() { # the CPU-only control a scenario is compared with (a control: the baseline)
	case $1 in cpu4 | cpu8) echo baseline; return ;; esac
	case $(callers_of "$1") in 4) echo cpu4 ;; 8) echo cpu8 ;; *) echo baseline ;; esac
}
BASE_P99=$(value baseline np p99_ms)
BASE_RATE=$(value baseline np calls_s)
verdict() { # verdict SCENARIO
	local s=$1 ctl max rate p99 cp99 crate
	max=$(value "$s" np max_ms) rate=$(value "$s" np calls_s) p99=$(value "$s" np p99_ms)
	ctl=$(control_of "$s")
	cp99=$(value "$ctl" np p99_ms) crate=$(value "$ctl" np calls_s)
	[ -n "$p99" ] && [ "$p99" != - ] || { echo "not run"; return; }
	awk -v max="$max" -v rate="$rate" -v p99="$p99" -v bp99="$BASE_P99" -v crate="$crate" -v ctl="$ctl" -v cp99="$cp99" 'BEGIN {
		if (max > 1000) printf "**stalled** (max)";
		else if (crate != "" && crate != "-" && rate < 0.5 * crate) printf "**stalled** (calls/s %.0f%% of the %s control'"'"'s)", 100 * rate / crate, ctl;
		else if ((bp99 != "" && p99 <= 3 * bp99) || (cp99 != "" && cp99 != "-" && p99 <= 1.5 * cp99)) printf "pass";
		else printf "**slowed** (p99)";
		print "" }'
}

# scenario 6: each caller's first failed call after the stop, and the
# first success after it; epoch seconds from the callers' files
stop8_summary() { # stop8_summary WHO
	local dir=$WORK/cells/stop8.$1
	[ -f "$dir/timeline" ] || { echo "not run"; return; }
	read -r stop_at stopped_at start_at ready_at <"$dir/timeline"
	awk -F'|' -v stop="$stop_at" -v start="$start_at" -v ready="$ready_at" '
		FNR == 1 { c++; fail[c] = ""; ok[c] = "" }
		$1 == "call" && $4 != "ok" && $3 >= stop && fail[c] == "" { fail[c] = $3; fdur[c] = $3 - $2; fcode[c] = $4 }
		$1 == "call" && $4 == "ok" && fail[c] != "" && $3 > fail[c] && ok[c] == "" { ok[c] = $3 }
		$1 == "count" { cnt[$4] += $5 }
		END {
			n = 0; first_ok = ""
			for (i = 1; i <= c; i++) {
				if (fail[i] != "") { n++; ttf[n] = fail[i] - stop; dur[n] = fdur[i]; codes[fcode[i]]++ }
				if (ok[i] != "" && (first_ok == "" || ok[i] < first_ok)) first_ok = ok[i]
			}
			# ascending
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (ttf[j] < ttf[i]) { t = ttf[i]; ttf[i] = ttf[j]; ttf[j] = t }
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (dur[j] < dur[i]) { t = dur[i]; dur[i] = dur[j]; dur[j] = t }
			printf "%d of %d callers failed after the stop", n, c
			if (n) {
				printf "; their first failed call ended %.3f to %.3f s after the stop (median %.3f s) and itself took %.3f to %.3f s (median %.3f s); SQLSTATEs:", ttf[1], ttf[n], ttf[int((n + 1) / 2)], dur[1], dur[n], dur[int((n + 1) / 2)]
				sep = " "
				for (k in codes) { printf "%s%s × %d", sep, k, codes[k]; sep = ", " }
			}
			printf ". The remote was down %.2f s (stop issued to pg_ctl start issued); ", start - stop
			if (first_ok != "") printf "first success %.3f s after pg_ctl start was issued, %.3f s after it returned (the remote accepting connections)", first_ok - start, first_ok - ready
			else printf "no success after the restart before the callers stopped"
			printf ". All the callers'"'"' calls:"
			sep = " "
			for (k in cnt) { printf "%s%s × %d", sep, k, cnt[k]; sep = ", " }
			print "."
		}' "$dir"/caller.[0-9]*
}
big_summary() { # big_summary SCENARIO WHO: the big calls
	local dir=$WORK/cells/$1.$2
	ls "$dir"/caller.[0-9]* >/dev/null 2>&1 || { echo "not run"; return; }
	awk -F'|' '$1 == "call" { n++; d = $3 - $2; s += d; if (d > m) m = d; o[$4]++ }
		END { printf "%d calls, %.2f s each on average, the longest %.2f s; outcomes:", n, (n ? s / n : 0), m
		      sep = " "; for (k in o) { printf "%s%s × %d", sep, k, o[k]; sep = ", " }; print "." }' "$dir"/caller.[0-9]*
}
holes_summary() { # holes_summary SCENARIO WHO: how long registering took; the connects hanging a second later
	local dir=$WORK/cells/$1.$2
	[ -f "$dir/syn_sent" ] || { echo "not run"; return; }
	awk -v n="$(cat "$dir/syn_sent")" '{ printf "registering took %.2f s, and a second later %d sockets were in SYN-SENT to the black hole", $2 - $1, n }' "$dir/registered"
}
callers_summary() { # callers_summary SCENARIO WHO: the callers' outcomes
	local dir=$WORK/cells/$1.$2
	ls "$dir"/caller.[0-9]* >/dev/null 2>&1 || { echo "–"; return; }
	awk -F'|' '$1 == "count" { c[$4] += $5 } $1 == "call" && ($3 - $2) > m { m = $3 - $2 }
		END { for (k in c) printf "%s × %d, ", k, c[k]; printf "longest %.2f s", m }' "$dir"/caller.[0-9]*
}

OFF_LOOPBACK=$(sort -u "$WORK/out/offloopback.txt" | wc -l)
[ "$OFF_LOOPBACK" = 0 ] || problem "sockets of $BENCH_USER off loopback were seen: $(sort -u "$WORK/out/offloopback.txt" | head -3 | tr '\n' ';')"
NCPU=$(nproc)
CPU_MODEL=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
PG_VERSION=$(lval "SELECT version()" | sed 's/ on .*//; s/^PostgreSQL //')
mkdir -p "$(dirname "$RESULT")"
{
	echo "# netrun_pool isolation bench: $DATE${LABEL:+ ($LABEL)}${QUICK:+, quick mode}"
	echo
	echo "Made by \`${QUICK:+QUICK=1 }${LABEL:+LABEL=$LABEL }bash bench/isolation.sh\` in $((ELAPSED / 60)) min $((ELAPSED % 60)) s, $DURATION s per cell, on $NCPU cores ($CPU_MODEL) shared with other work, PostgreSQL $PG_VERSION; netrun_pool built from \`$GIT_BRANCH\` at \`$GIT_REV\`${GIT_DIRTY:+ with uncommitted changes to $GIT_DIRTY} (optimized, no asserts). Issue 18: no remote can slow another."
	echo
	echo "<!-- isolation:summary:start -->"
	echo "One pgbench client calls \`good\` back to back (\`SELECT netrun_pool.fetchval('good', 'SELECT 1')\`) while the scenario happens to other remotes; the dblink control makes the same calls through dblink on a persistent connection, under the same disturbance, in the same run. Latencies in ms."
	echo
	echo "| scenario | good p50 | p99 | max | calls/s | p99 ÷ baseline | p99 ÷ CPU-only control | dblink control p50 / p99 / max (calls/s) | verdict |"
	echo "|---|---:|---:|---:|---:|---:|---:|---|---|"
	for s in $SCENARIOS; do
		n=$(value "$s" np n)
		[ -n "$n" ] || continue
		ctl=$(control_of "$s")
		case $s in
		baseline) ctl_ratio="–" v="–" ;;
		cpu4 | cpu8 | baseline_end) ctl_ratio="–" v="(control; by the same rules: $(verdict "$s" | tr -d '*'))" ;;
		*) ctl_ratio="$(ratio "$(value "$s" np p99_ms)" "$(value "$ctl" np p99_ms)")${ctl:+ ($ctl)}" v=$(verdict "$s") ;;
		esac
		if [ -n "$(value "$s" dblink n)" ]; then
			d="$(fmt "$(value "$s" dblink p50_ms)") / $(fmt "$(value "$s" dblink p99_ms)") / $(fmt "$(value "$s" dblink max_ms)") ($(fmt_int "$(value "$s" dblink calls_s)"))"
		else d="–"; fi
		echo "| $(label "$s") | $(fmt "$(value "$s" np p50_ms)") | $(fmt "$(value "$s" np p99_ms)") | $(fmt "$(value "$s" np max_ms)") | $(fmt_int "$(value "$s" np calls_s)") | $(ratio "$(value "$s" np p99_ms)" "$BASE_P99") | $ctl_ratio | $d | $v |"
	done
	echo
	echo "Verdict: **stalled** if good's max > 1,000 ms or its calls/s < 50% of its control's (the CPU-only control with as many busy processes as the scenario has callers, else the baseline); else pass if its p99 is within 3× the baseline's or within 1.5× the CPU-only control's (the control with as many busy processes as the scenario has callers; scenarios 2 to 4 have none, and are compared with the baseline); else **slowed**. The controls' rows say what the same rules make of them: at one client, netrun_pool's caller and worker poll for each other's answers (\`netrun_pool.spin_wait_us\`) and give the CPU up to any other process that can run, so a lone client's calls/s drops when anything else runs: judged against the baseline, the CPU-only controls themselves are stalled by the calls/s rule, which is why a scenario with callers is judged against the control with as many."
	echo
	echo "Scenario 6, the 8 callers of the stopped remote (netrun_pool calls, timed in each caller's session):"
	echo
	echo "- while good was called through netrun_pool: $(stop8_summary np)"
	echo "- while good was called through dblink (the same disturbance again): $(stop8_summary dblink)"
	echo "<!-- isolation:summary:end -->"
	echo
	echo "## What the disturbing callers saw"
	echo
	echo "Outcomes of the disturbing callers' calls (ok, or the SQLSTATE they failed with), and the longest call:"
	echo
	echo "| scenario | while good was called through netrun_pool | … through dblink | DNS answers in the netrun_pool cell / the dblink cell (until it settled) |"
	echo "|---|---|---|---|"
	for s in dns_tx dns_none dns_probe big50 big4 stop8; do
		[ -n "$(value "$s" np n)" ] || continue
		echo "| $(label "$s") | $(callers_summary "$s" np) | $(callers_summary "$s" dblink) | $(value "$s" np dns_answers) / $(value "$s" dblink dns_answers) |"
	done
	echo
	echo "Scenario 5's 50 MB calls: through netrun_pool's cell: $(big_summary big50 np) In dblink's cell: $(big_summary big50 dblink)"
	echo
	echo "Scenario 5b's 4,000 kB calls: through netrun_pool's cell: $(big_summary big4 np) In dblink's cell: $(big_summary big4 dblink)"
	echo
	echo "The black holes (the worker's pooled connects and its probes hang there until \`connect_timeout_ms\`):"
	echo
	for s in bh200 reg1000; do
		[ -f "$WORK/cells/$s.np/syn_sent" ] || continue
		echo "- $(label "$s"): in netrun_pool's cell, $(holes_summary "$s" np); in dblink's, $(holes_summary "$s" dblink)."
	done
	echo
	echo "## Setup"
	echo
	echo "- Three servers as the unprivileged user \`$BENCH_USER\`, on 127.0.0.1: local (port $LOCAL_PORT; netrun_pool preloaded, \`netrun_pool.max_pools = 1100\`, \`netrun_pool.max_connections = 1300\`, \`max_files_per_process = 6000\`, default \`health_interval_ms\` (10 s) and \`unhealthy_after\`; dblink), good ($GOOD_PORT) and other ($OTHER_PORT). Each cell: pgbench \`-n -M simple -c 1 -j 1 -T $DURATION -l\` against the local server; the disturbance starts 1 s in. A call's time is the interval between its end and the end of the call before it in pgbench's per-transaction log (one client calling back to back), so the first call (dblink's connect) is left out; calls/s over that span. Not pgbench's own latency field: pgbench reads its clock lazily, and logs 0 µs for a call whose answer was already in when pgbench, preempted, got the CPU back (most calls beside the busy processes)."
	echo "- \`good\`: the server good by \`host=127.0.0.1\`, \`pool_min 2, pool_max 2\`, transaction mode; dblink's control: \`dblink_connect\` to the same server in the pgbench client's first transaction, then \`SELECT x FROM dblink('good', 'SELECT 1') AS t(x int)\`."
	echo "- Slow DNS: \`test/fake_dns.pl\` on $DNS_ADDR:53 answers \`$DNS_NAME\` (A 127.0.0.1, TTL 1 s, which netrun_pool keeps for its floor of 5 s; AAAA empty) after $DNS_DELAY_MS ms. The local server was started inside a mount namespace of its own (\`unshare -m\`) with a resolv.conf naming only $DNS_ADDR bind-mounted over /etc/resolv.conf; $RESOLV_CHECK. A first call by host name took $DNS_CHECK_S s. Remotes by host name point at other (\`host=$DNS_NAME port=$OTHER_PORT\`), registered 1 s into the cell with \`pool_max 4\` (\`dns_tx\`, \`dns_none\`: 4 callers calling \`SELECT 1\` back to back) or defaults (\`dns_probe\`: \`probe_tx\` and \`probe_none\`, no callers; a transaction-mode probe keeps its connection, a none-mode probe connects, so resolves, every \`health_interval_ms\`)."
	echo "- Black holes: \`test/black_hole.pl\` on 127.0.0.1:$HOLE_PORT, a listener with a backlog of 0 whose accept queue it fills itself: the kernel drops every further SYN. The 200 remotes (\`pool_min 1, pool_max 1\`, default \`connect_timeout_ms\` 10 s) are registered in one statement 1 s into the cell; scenario 4 adds 800 with \`enabled => false\` (at 127.0.0.1:$DEAD_PORT, where nothing listens)."
	echo "- 50 MB: \`big\` at other, \`pool_min 4, pool_max 4\`, opened before the cell; 4 sessions each call \`fetchval('big', 'SELECT length(''<52,428,800 x>'')')\` twice, starting 1 s in."
	echo "- Stopped remote: \`victim\` at other, \`pool_min 8, pool_max 8\`, opened before the cell; 8 sessions call \`SELECT 1\` on it back to back from 1 s in; other is stopped with \`pg_ctl stop -m immediate\` a quarter of the way into the rest of the cell and started (\`pg_ctl start -w\`) at half of it; the callers go on $STOP8_TAIL s past good's cell. Each call is timed inside the caller's session (\`iso_caller\`, plpgsql, each error caught)."
	echo "- CPU-only controls: \`yes > /dev/null\` × 4 or 8 from 1 s into the cell, netrun_pool doing nothing else."
	echo "- Nothing left loopback: the local server resolved only through $DNS_ADDR, every conninfo names 127.0.0.1 or $DNS_NAME; a sampler of \`ss -tunae\` every 0.5 s saw $OFF_LOOPBACK socket(s) of $BENCH_USER with a peer off loopback."
	echo
	echo "## Problems seen"
	echo
	if [ -s "$PROBLEMS" ]; then sed 's/^/- /' "$PROBLEMS"; else echo "None: good's calls never failed (pool_stats errors_total of good unchanged in every cell, no pgbench client aborted), the worker kept its pid, every cell ended with good alone, idle and healthy."; fi
	echo
	echo "## Raw cells"
	echo
	echo '```'
	column -t -s"$(printf '\t')" "$CELLS" 2>/dev/null || cat "$CELLS"
	echo '```'
} >"$RESULT"

echo
sed -n '/<!-- isolation:summary:start -->/,/<!-- isolation:summary:end -->/p' "$RESULT"
echo
echo "results: $RESULT"
log "done in $((ELAPSED / 60)) min $((ELAPSED % 60)) s"
