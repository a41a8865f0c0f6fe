#!/usr/bin/env bash
# bench/http.sh: does hammering the HTTP endpoint (netrun_pool.http_listen)
# delay pooled calls?
#
#   bash bench/http.sh             # as root: 5 rounds of 10 s per phase (about 5 minutes)
#   QUICK=1 bash bench/http.sh     # 2 rounds of 3 s (under a minute)
#
# The issue's contract: "a slow scraper or a flood of connections must
# never delay a pooled call (prove with a measurement: pooled-call latency
# with the endpoint hammered by e.g. 50 concurrent scrapers vs without, as
# a ratio)".
#
# It builds and installs netrun_pool (optimized, no asserts) from a copy of
# this tree, starts one server as the unprivileged user netrun_bench under
# $NETRUN_HTTP_BENCH_DIR (default /var/tmp/netrun_pool_http_bench), with the
# endpoint on a free loopback port, and registers 8 connections to the
# server itself over TCP (pool_max 4), so /metrics has 8 pools' series to
# render.  Each round runs five phases of the same pgbench load, in
# turns: "quiet" (nothing touches the endpoint), "realistic rate" (50
# scrapers, 5 from each of 10 loopback addresses, each a curl with one
# keep-alive connection fetching /metrics once a second, their starts
# spread over the first second: 50 scrapes a second asked for, still
# about 750 times a Prometheus scraping every 15 s), "hammered" (50
# scrapers: 10 curl processes, each from its own loopback address, each
# with 5 transfers in flight, fetching /metrics back to back without a
# pause), "hammered, niced" (the same, with the scrapers and the launcher at
# nice 19 for the phase: they then take only the CPU the calls leave, so
# what delay remains is not CPU but waiting), and "launcher frozen" (the
# launcher stopped with SIGSTOP, as a launcher stuck on a client would be,
# while the scrapers knock: if a pooled call waited for the launcher in
# any way, the calls would stall here).  The load is CLIENTS pgbench
# clients calling netrun_pool.fetchval('p1', 'SELECT 1'); every call's
# latency is logged.
#
# Results: bench/results/<date>-http.md (<date>-http-quick.md in quick
# mode): latency mean and percentiles per phase, the ratios to quiet, the
# scrapes served and their rate (over the time the scrapers ran), at the
# realistic rate how many scrapes each scraper got (the endpoint serves 32
# connections at once: the rest wait), and the launcher's CPU.  No target
# is asserted.
#
# It takes /tmp/netrun_pool.lock, as scripts/test.sh does: installing the
# extension would swap the library under a running test suite.
#
# Environment: QUICK=1; ROUNDS, SECONDS_PER_PHASE, CLIENTS, SCRAPERS_PROCS,
# SCRAPERS_EACH, SCRAPE_RATE (the realistic phase's, per scraper, as curl's
# --rate takes it: 1/s) to override; KEEP=1 keeps the work dir.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

require_root
T0=$SECONDS
BENCH_USER=netrun_bench
WORK=${NETRUN_HTTP_BENCH_DIR:-/var/tmp/netrun_pool_http_bench}
DATE=$(date -u +%F)
if [ -n "${QUICK:-}" ]; then
	ROUNDS=${ROUNDS:-2}
	PHASE_S=${SECONDS_PER_PHASE:-3}
	RESULT=$here/bench/results/$DATE-http-quick.md
else
	ROUNDS=${ROUNDS:-5}
	PHASE_S=${SECONDS_PER_PHASE:-10}
	RESULT=$here/bench/results/$DATE-http.md
fi
CLIENTS=${CLIENTS:-4}
SCRAPERS_PROCS=${SCRAPERS_PROCS:-10}
SCRAPERS_EACH=${SCRAPERS_EACH:-5}
SCRAPERS=$((SCRAPERS_PROCS * SCRAPERS_EACH))
SCRAPE_RATE=${SCRAPE_RATE:-1/s}

log() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }

# Only what this script started: its server (pg_ctl) and its scrapers (by pid).
SCRAPER_PIDS=()
stop_scrapers() {
	local p
	for p in "${SCRAPER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${SCRAPER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	SCRAPER_PIDS=()
}
stop_server() {
	stop_bench_servers "$BENCH_USER" "$WORK/data"
}
on_exit() {
	local rc=$?
	[ -n "${LAUNCHER_PID:-}" ] && kill -CONT "$LAUNCHER_PID" 2>/dev/null
	stop_scrapers
	stop_server
	if [ -d "$WORK" ]; then
		if [ -n "${KEEP:-}" ] || [ "$rc" != 0 ]; then
			echo "kept $WORK (server log: $WORK/server.log)" >&2
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$rc"
}

ensure_packages curl
ensure_user "$BENCH_USER"

take_bench_lock

stop_server
rm -rf "$WORK"
mkdir -p "$WORK/run" "$WORK/out"
trap on_exit EXIT
trap 'exit 130' INT TERM
chmod 755 "$WORK"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
GIT_REV=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)

log "building and installing netrun_pool (optimized, no asserts)"
copy_tree "$here" "$WORK/src" "$BENCH_USER"
chown -R "$BENCH_USER:" "$WORK"
build_and_install "$WORK/src" "$BENCH_USER" -j"$(nproc)"

PORT=$(next_port 27532 "$WORK/run")
HTTP_PORT=$(next_port $((PORT + 1)) "$WORK/run")
init_bench_server "$BENCH_USER" "$WORK/data" "$PORT" "$WORK/run" "shared_preload_libraries = 'netrun_pool'
netrun_pool.database = 'postgres'
netrun_pool.http_listen = '127.0.0.1:$HTTP_PORT'
max_connections = 100"
as_user "$BENCH_USER" pg_ctl -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null
psql_b() { as_user "$BENCH_USER" psql -X -q -At -h "$WORK/run" -p "$PORT" -d postgres "$@"; }

psql_b -c 'CREATE EXTENSION netrun_pool' >/dev/null
for i in 1 2 3 4 5 6 7 8; do
	psql_b -c "SELECT netrun_pool.register('p$i', 'host=127.0.0.1 port=$PORT dbname=postgres user=$BENCH_USER', pool_max => 4, password_required => false)" >/dev/null
done
for i in $(seq 1 100); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/ready")" = 200 ] && break
	sleep 0.2
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/ready")" = 200 ] ||
	die "the endpoint never reported ready"
METRICS_BYTES=$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | wc -c)
LAUNCHER_PID=$(psql_b -c 'SELECT launcher_pid FROM netrun_pool.worker_status()')

echo "SELECT netrun_pool.fetchval('p1', 'SELECT 1');" >"$WORK/call.sql"
chmod 644 "$WORK/call.sql"

# One curl config per scraper process: /metrics many times over, each body
# dropped; curl reports each status code, which counts the scrapes.  Its
# output line-buffered (stdbuf -oL): a curl stopped at the end of a phase
# would otherwise lose what it had not yet flushed (a 4 kB buffer: about
# 1,000 scrapes).
for i in $(seq 1 2000); do
	echo "url = \"http://127.0.0.1:$HTTP_PORT/metrics\""
	echo 'output = "/dev/null"'
done >"$WORK/scrape.cfg"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

start_scrapers() {
	local tag=$1 niceness=$2 p
	for p in $(seq 1 "$SCRAPERS_PROCS"); do
		(
			# stopped, it stops its curl too: a curl left running would
			# spill into the next phase
			trap 'kill "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null; exit 0' TERM
			while :; do
				nice -n "$niceness" stdbuf -oL curl -s --no-progress-meter -Z --parallel-max "$SCRAPERS_EACH" \
					--interface "127.0.0.$((10 + p))" -K "$WORK/scrape.cfg" -w '%{http_code}\n' &
				cpid=$!
				wait "$cpid" || true
			done >"$WORK/out/scrapes-$tag-$p.txt" 2>/dev/null
		) &
		SCRAPER_PIDS+=($!)
	done
}

# The realistic rate: each of the 50 scrapers its own curl, one transfer at
# a time (curl's --rate does nothing with -Z), so one keep-alive connection
# each, 5 per address as above; scraper k starts k/50 of a second in, as
# Prometheus spreads its targets over the interval.
start_paced_scrapers() {
	local tag=$1 p j k=0
	for p in $(seq 1 "$SCRAPERS_PROCS"); do
		for j in $(seq 1 "$SCRAPERS_EACH"); do
			(
				trap 'kill "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null; exit 0' TERM
				sleep "$(awk -v k="$k" -v n="$SCRAPERS" 'BEGIN { printf "%.3f", k / n }')" & cpid=$!
				wait "$cpid"
				while :; do
					stdbuf -oL curl -s --no-progress-meter --rate "$SCRAPE_RATE" \
						--interface "127.0.0.$((10 + p))" -K "$WORK/scrape.cfg" -w '%{http_code}\n' &
					cpid=$!
					wait "$cpid" || true
				done >"$WORK/out/scrapes-$tag-$p-$j.txt" 2>/dev/null
			) &
			SCRAPER_PIDS+=($!)
			k=$((k + 1))
		done
	done
}

# pgbench's per-transaction log: the 3rd field is the latency in µs.
run_phase() {
	local phase=$1 round=$2 prefix
	prefix="$WORK/out/$phase-$round"
	(cd "$WORK/out" && as_user "$BENCH_USER" pgbench -n -h "$WORK/run" -p "$PORT" \
		-c "$CLIENTS" -j 2 -T "$PHASE_S" -f "$WORK/call.sql" -l --log-prefix="$prefix" postgres \
		>"$prefix.pgbench" 2>&1) || die "pgbench failed: $(tail -3 "$prefix.pgbench")"
}

chown -R "$BENCH_USER:" "$WORK/out"
PHASES=(quiet realistic hammered niced frozen)
declare -A LAUNCHER_CPU SCRAPES SCRAPE_MS
log "$ROUNDS rounds of ${PHASE_S} s per phase, $CLIENTS pgbench clients, $SCRAPERS scrapers"
for round in $(seq 1 "$ROUNDS"); do
	for phase in "${PHASES[@]}"; do
		before=$(cpu_ticks "$LAUNCHER_PID")
		t_start=$(date +%s%3N)
		case $phase in
		realistic) start_paced_scrapers "$phase-$round" ;;
		hammered) start_scrapers "$phase-$round" 0 ;;
		niced)
			renice -n 19 -p "$LAUNCHER_PID" >/dev/null
			start_scrapers "$phase-$round" 19 ;;
		frozen)
			kill -STOP "$LAUNCHER_PID"
			start_scrapers "$phase-$round" 0 ;;
		esac
		[ "$phase" != quiet ] && sleep 1    # the scrapers all started before the calls are timed
		run_phase "$phase" "$round"
		stop_scrapers
		SCRAPE_MS[$phase]=$(( ${SCRAPE_MS[$phase]:-0} + $(date +%s%3N) - t_start ))
		[ "$phase" = niced ] && renice -n 0 -p "$LAUNCHER_PID" >/dev/null
		[ "$phase" = frozen ] && kill -CONT "$LAUNCHER_PID"
		LAUNCHER_CPU[$phase]=$(( ${LAUNCHER_CPU[$phase]:-0} + $(cpu_ticks "$LAUNCHER_PID") - before ))
		log "round $round: $phase done"
	done
done
for phase in realistic hammered niced frozen; do
	SCRAPES[$phase]=$(cat "$WORK/out"/scrapes-"$phase"-*.txt | grep -c '^200$' || true)
done
# The realistic phase's scrapes per scraper and round, as "scrapes xhow
# many scrapers" (the endpoint serves 32 connections at once: the rest wait
# to be accepted).
SPREAD=$(for f in "$WORK/out"/scrapes-realistic-*.txt; do grep -c '^200$' "$f" || true; done |
	sort -n | uniq -c | awk '{ printf "%s%s x%s", (NR > 1 ? ", " : ""), $2, $1 }')

# The calls that failed: pgbench counts them; there must be none.
failed=$(cat "$WORK/out"/*.pgbench | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
errors=$(cat "$WORK/out"/*.pgbench | grep -c 'ERROR' || true)

# Latency statistics of one phase over every round, in ms.
stats() {
	cat "$WORK/out/$1"-*.[0-9]* 2>/dev/null | awk '{ print $3 }' | sort -n |
		awk '{ v[NR] = $1; s += $1 } END {
			if (NR == 0) { print "0 0 0 0 0 0"; exit }
			printf "%d %.3f %.3f %.3f %.3f %.3f\n", NR, s / NR / 1000,
				v[int(NR * 0.50) + 1] / 1000, v[int(NR * 0.95) + 1] / 1000,
				v[int(NR * 0.99) + 1] / 1000, v[NR] / 1000 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
declare -A ST
for phase in "${PHASES[@]}"; do ST[$phase]=$(stats "$phase"); done
read -r q_n q_mean q_p50 q_p95 q_p99 q_max <<<"${ST[quiet]}"
row() {
	local label=$1 phase=$2 n mean p50 p95 p99 max
	read -r n mean p50 p95 p99 max <<<"${ST[$phase]}"
	echo "| $label | $n | $mean | $p50 | $p95 | $p99 | $max |"
	[ "$phase" = quiet ] ||
		echo "| ratio to quiet | $(ratio "$n" "$q_n") | **$(ratio "$mean" "$q_mean")** | **$(ratio "$p50" "$q_p50")** | **$(ratio "$p95" "$q_p95")** | $(ratio "$p99" "$q_p99") | $(ratio "$max" "$q_max") |"
}
phase_s=$((ROUNDS * PHASE_S))
tck=$(getconf CLK_TCK)
per_s() { awk -v n="${SCRAPES[$1]}" -v ms="${SCRAPE_MS[$1]}" 'BEGIN { printf "%.0f", (ms > 0 ? n * 1000 / ms : 0) }'; }
cpu_s() { awk -v t="${LAUNCHER_CPU[$1]}" -v k="$tck" 'BEGIN { printf "%.2f", t / k }'; }

mkdir -p "$(dirname "$RESULT")"
cat >"$RESULT" <<EOF
# The HTTP endpoint hammered: pooled-call latency, $DATE

\`bash bench/http.sh\`${QUICK:+ (QUICK=1)} at $GIT_REV on $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)),
$(psql_b -c 'SELECT version()' | sed 's/ on x86_64.*//'), loopback; load average before: $LOAD_BEFORE.

- Calls: $CLIENTS pgbench clients, each calling \`netrun_pool.fetchval('p1', 'SELECT 1')\`
  back to back, through a pool of 4 connections to the server itself.
- Endpoint: 8 registered connections, so \`/metrics\` is $METRICS_BYTES bytes.
- Realistic rate: $SCRAPERS scrapers ($SCRAPERS_EACH from each of $SCRAPERS_PROCS loopback
  addresses), each a curl with one keep-alive connection fetching \`/metrics\`
  at \`--rate $SCRAPE_RATE\`, their starts spread over the first second.
  Scrapes per scraper and round (scrapes xscrapers): $SPREAD.
- Hammered: $SCRAPERS scrapers ($SCRAPERS_PROCS curl processes, each from its own
  loopback address with $SCRAPERS_EACH transfers in flight) fetching \`/metrics\`
  back to back, keep-alive, no pause.  The endpoint serves 32 connections at
  once and 8 per address: the rest wait to be accepted.
- Hammered, niced: the same scrapers, with them and the launcher at nice 19.
- Launcher frozen: the launcher stopped (SIGSTOP) while the same scrapers
  knock; they wait, unanswered, and are answered after SIGCONT.
- $ROUNDS rounds, each the five phases in turn, ${PHASE_S} s each ($phase_s s per
  phase in all); the statistics are over every call of all rounds.

| phase | calls | mean ms | p50 ms | p95 ms | p99 ms | max ms |
|---|---:|---:|---:|---:|---:|---:|
$(row quiet quiet)
$(row "realistic rate" realistic)
$(row hammered hammered)
$(row "hammered, niced" niced)
$(row "launcher frozen" frozen)

The scrapes are counted from the scrapers' start (a second before the
calls are timed) to their stop, and the rate is over that time; the
launcher's CPU over the same.

| phase | scrapes served | per second | the launcher's CPU |
|---|---:|---:|---:|
| quiet | 0 | 0 | $(cpu_s quiet) s |
| realistic rate | ${SCRAPES[realistic]} | $(per_s realistic) | $(cpu_s realistic) s |
| hammered | ${SCRAPES[hammered]} | $(per_s hammered) | $(cpu_s hammered) s |
| hammered, niced | ${SCRAPES[niced]} | $(per_s niced) | $(cpu_s niced) s |
| launcher frozen | ${SCRAPES[frozen]} | $(per_s frozen) | $(cpu_s frozen) s |

Failed calls: $failed (pgbench), errors reported: $errors.
EOF
cat "$RESULT"
log "wrote $RESULT"
