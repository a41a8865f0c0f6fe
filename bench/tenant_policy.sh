#!/usr/bin/env bash
# bench/tenant_policy.sh: what netrun_pool.current_tenant() costs in a
# row-level security policy.
#
#   bash bench/tenant_policy.sh            # as root: 1,000,000 rows, 21 rounds (a few minutes)
#   QUICK=1 bash bench/tenant_policy.sh    # 100,000 rows, 5 rounds (under a minute)
#
# The issue's contract: "a benchmark measures current_tenant() in a policy
# over a 1-million-row table against the same scan with a constant.
# Target: within 1.1x."  The target applies to the recommended policy form,
# USING (tenant_id = (SELECT netrun_pool.current_tenant())::uuid).
#
# It builds and installs netrun_pool (optimized, no asserts) from a copy of
# this tree, starts one server as the unprivileged user netrun_bench under
# $NETRUN_TENANT_BENCH_DIR (default /var/tmp/netrun_pool_bench, made anew
# each run, removed at the end unless KEEP=1 or the run failed), loads
# docs(id, tenant_id uuid, body) with 10 tenants, and gives it one policy per
# variant, each for a role of its own (app_const, app_initplan, ...): the
# variants scan the very same heap pages, and which policy applies is chosen
# by SET ROLE between the timed statements.  One psql session then runs
# SELECT count(*) FROM docs in rounds, every round running each variant once
# in a rotating order, timed with psql's \timing.
#
# Results: bench/results/tenant_policy-<date>.md (tenant_policy-<date>-quick.md
# in quick mode); the table and the verdict are also printed.  A missed target
# is reported, not fatal: the exit status is non-zero only on errors.
#
# It takes /tmp/netrun_pool.lock (as scripts/test.sh and bench/run.sh do) for
# the whole run: installing the extension would otherwise swap the library
# under a running test suite, and a concurrent run would skew the timings.
#
# Environment: QUICK=1; ROWS, ROUNDS to override; KEEP=1 keeps the work dir
# (the server is always stopped).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

require_root
T0=$SECONDS
BENCH_USER=netrun_bench
WORK=${NETRUN_TENANT_BENCH_DIR:-/var/tmp/netrun_pool_bench}
DATE=$(date -u +%F)
if [ -n "${QUICK:-}" ]; then
	MODE=quick
	ROWS=${ROWS:-100000}
	ROUNDS=${ROUNDS:-5}
	RESULT=$here/bench/results/tenant_policy-$DATE-quick.md
else
	MODE=full
	ROWS=${ROWS:-1000000}
	ROUNDS=${ROUNDS:-21}
	RESULT=$here/bench/results/tenant_policy-$DATE.md
fi
TENANTS=10
TARGET=1.10

# The variants: name, then the policy's USING expression.  @TENANT@ becomes
# the tenant's uuid.  The first is the baseline the others are compared to;
# the target applies to "initplan".
VARIANTS=(const initplan cast_outside perrow mirror)
declare -A EXPR=(
	[const]="tenant_id = '@TENANT@'::uuid"
	[initplan]="tenant_id = (SELECT netrun_pool.current_tenant()::uuid)"
	[cast_outside]="tenant_id = (SELECT netrun_pool.current_tenant())::uuid"
	[perrow]="tenant_id = netrun_pool.current_tenant()::uuid"
	[mirror]="tenant_id = current_setting('app.current_tenant_id')::uuid"
)
declare -A LABEL=(
	[const]="baseline"
	[initplan]="**recommended** (what enable_tenant_rls() writes), the target"
	[cast_outside]="cast outside the subquery"
	[perrow]="no subquery"
	[mirror]="the spoofable mirror"
)

log() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }

# ---------------------------------------------------------------- clean-up
# Only what this script started: its one server, stopped with pg_ctl.
stop_server() { stop_bench_servers "$BENCH_USER" "$WORK/data"; }
on_exit() {
	local rc=$?
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

ensure_packages
ensure_user "$BENCH_USER"

take_bench_lock

# an interrupted earlier run: stop its server, then start afresh
stop_server
rm -rf "$WORK"
mkdir -p "$WORK/run" "$WORK/out"
trap on_exit EXIT
trap 'exit 130' INT TERM
chmod 755 "$WORK"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
GIT_REV=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git -C "$here" status --porcelain -- src sql Makefile netrun_pool.control 2>/dev/null | wc -l)

log "building and installing netrun_pool (optimized, no asserts)"
copy_tree "$here" "$WORK/src" "$BENCH_USER"
chown -R "$BENCH_USER:" "$WORK"
build_and_install "$WORK/src" "$BENCH_USER" -j"$(nproc)"

# Below the ephemeral range (32768-60999 on Linux): a client's TIME_WAIT
# socket on a port there can make bind() fail after the check above passed.
# Should start fail anyway, the next free port is tried.
PORT=$(next_port 27432 "$WORK/run")

as_user "$BENCH_USER" initdb -D "$WORK/data" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
cat >>"$WORK/data/postgresql.conf" <<CONF
include_if_exists = 'port.conf'
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/run'
log_line_prefix = '%m [%p] %b '
shared_preload_libraries = 'netrun_pool'
netrun_pool.database = 'postgres'
shared_buffers = 256MB
max_parallel_workers_per_gather = 0
jit = off
CONF
for attempt in 1 2 3 4 5; do
	echo "port = $PORT" >"$WORK/data/port.conf"
	chown "$BENCH_USER:" "$WORK/data/port.conf"
	log "starting the server on 127.0.0.1:$PORT"
	# the server must not inherit the lock's descriptor
	as_user "$BENCH_USER" pg_ctl -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null 9>&- && break
	[ "$attempt" = 5 ] && die "the server did not start (see $WORK/server.log)"
	PORT=$(next_port $((PORT + 1)) "$WORK/run")
done

# psql over the socket as the server's superuser
bpsql() { as_user "$BENCH_USER" psql -X -q -v ON_ERROR_STOP=1 -h "$WORK/run" -p "$PORT" -d postgres "$@" 9>&-; }

bpsql -c "CREATE EXTENSION netrun_pool" -c "CREATE EXTENSION pg_prewarm"

log "loading $ROWS rows, $TENANTS tenants"
# tenant k's id is md5('tenant-k') as a uuid; row g belongs to tenant g % 10,
# so every page holds every tenant and each tenant has ROWS/10 rows
bpsql <<SQL
CREATE TABLE docs (id int, tenant_id uuid, body text);
INSERT INTO docs
SELECT g, md5('tenant-' || (g % $TENANTS))::uuid, 'doc ' || g
FROM generate_series(1, $ROWS) g;
VACUUM (FREEZE, ANALYZE) docs;
ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
ALTER TABLE docs FORCE ROW LEVEL SECURITY;
SQL
TENANT=$(bpsql -At -c "SELECT md5('tenant-3')::uuid")
EXPECTED=$(bpsql -At -c "SELECT count(*) FROM docs WHERE tenant_id = '$TENANT'")
TABLE_PAGES=$(bpsql -At -c "SELECT pg_relation_size('docs') / current_setting('block_size')::int")
TABLE_SIZE=$(bpsql -At -c "SELECT pg_size_pretty(pg_relation_size('docs'))")

for v in "${VARIANTS[@]}"; do
	EXPR[$v]=${EXPR[$v]//@TENANT@/$TENANT}
	bpsql -c "CREATE ROLE app_$v NOLOGIN" \
		-c "GRANT SELECT ON docs TO app_$v" \
		-c "CREATE POLICY tenant_$v ON docs FOR SELECT TO app_$v USING (${EXPR[$v]})"
done
bpsql -c "CHECKPOINT"

# The session every query runs in: the superuser sets the tenant format,
# then the application's role sets the tenant; set_tenant() also sets the
# mirror app.current_tenant_id.  Each variant only switches role.
session_head() {
	cat <<SQL
SET netrun_pool.tenant_id_format = 'uuid';
SET ROLE app_const;
SELECT 'SET', netrun_pool.set_tenant('$TENANT'), netrun_pool.current_tenant(), current_setting('app.current_tenant_id');
SQL
}

log "checking the tenant, the policies and the plans"
check=$({
	session_head
	for v in "${VARIANTS[@]}"; do
		echo "SET ROLE app_$v;"
		echo "SELECT 'COUNT', '$v', count(*) FROM docs;"
	done
} | bpsql -At -F ' ')
echo "$check" >"$WORK/out/check.txt"
grep -qx "SET $TENANT $TENANT $TENANT" <<<"$check" ||
	die "set_tenant('$TENANT') / current_tenant() / app.current_tenant_id disagree: $(grep '^SET' <<<"$check")"
for v in "${VARIANTS[@]}"; do
	got=$(awk -v v="$v" '$1 == "COUNT" && $2 == v {print $3}' <<<"$check")
	[ "$got" = "$EXPECTED" ] ||
		die "variant $v sees ${got:-no} rows, the tenant has $EXPECTED (policy: ${EXPR[$v]})"
done

# the plans, and one EXPLAIN ANALYZE each (buffers: every page a hit?)
for v in "${VARIANTS[@]}"; do
	{
		session_head
		echo "SET ROLE app_$v;"
		echo "EXPLAIN (COSTS OFF) SELECT count(*) FROM docs;"
	} | bpsql -At | grep -v '^SET|' >"$WORK/out/plan_$v.txt"
done
grep -q 'InitPlan' "$WORK/out/plan_initplan.txt" ||
	log "WARNING: the plan of the recommended form shows no InitPlan"

log "warming up (pg_prewarm, then two untimed scans per variant)"
bpsql -At -c "SELECT pg_prewarm('docs')" >/dev/null
{
	session_head
	for _ in 1 2; do
		for v in "${VARIANTS[@]}"; do
			echo "SET ROLE app_$v;"
			echo "SELECT count(*) FROM docs;"
		done
	done
} | bpsql -At >/dev/null

READS_BEFORE=$(bpsql -At -c "SELECT heap_blks_read FROM pg_statio_user_tables WHERE relname = 'docs'")

log "timing: $ROUNDS rounds x ${#VARIANTS[@]} variants"
# One psql session; round r runs the variants starting at the (r mod n)-th.
# Each timed statement is preceded by a MARK line; its count and its "Time:"
# line follow.  The SET ROLE statements are timed too, and ignored.
n=${#VARIANTS[@]}
{
	session_head
	echo '\timing on'
	for ((r = 1; r <= ROUNDS; r++)); do
		for ((i = 0; i < n; i++)); do
			v=${VARIANTS[$(((i + r) % n))]}
			echo "SET ROLE app_$v;"
			echo "\\echo MARK $r $v"
			echo "SELECT count(*) FROM docs;"
		done
	done
} | bpsql -At >"$WORK/out/timing.raw"

awk '
	$1 == "MARK" { r = $2; v = $3; cnt = ""; next }
	v != "" && $1 == "Time:" { print r, v, cnt, $2; v = ""; next }
	v != "" { cnt = $0 }
' "$WORK/out/timing.raw" >"$WORK/out/timings.txt"
[ "$(wc -l <"$WORK/out/timings.txt")" = $((ROUNDS * n)) ] ||
	die "expected $((ROUNDS * n)) timings, parsed $(wc -l <"$WORK/out/timings.txt") (see $WORK/out/timing.raw)"
bad=$(awk -v e="$EXPECTED" '$3 != e' "$WORK/out/timings.txt")
[ -z "$bad" ] || die "a timed query returned the wrong count (expected $EXPECTED): $bad"

# the timing session has ended: wait until its statistics are flushed
for _ in $(seq 50); do
	[ "$(bpsql -At -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")" = 0 ] && break
	sleep 0.1
done
sleep 0.5
READS_AFTER=$(bpsql -At -c "SELECT heap_blks_read FROM pg_statio_user_tables WHERE relname = 'docs'")
READS=$((READS_AFTER - READS_BEFORE))

# one EXPLAIN ANALYZE per variant, untimed, for the rows removed and the buffers
for v in "${VARIANTS[@]}"; do
	{
		session_head
		echo "SET ROLE app_$v;"
		echo "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, COSTS OFF) SELECT count(*) FROM docs;"
	} | bpsql -At | grep -v '^SET|' >"$WORK/out/analyze_$v.txt"
done

PG_VERSION=$(bpsql -At -c "SHOW server_version")
PG_FULL=$(bpsql -At -c "SELECT version()")
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
stop_server

# ---------------------------------------------------------------- report
# median (mean of the two middle values for an even count) and min, in ms
stats() {
	awk -v v="$1" '$2 == v {print $4}' "$WORK/out/timings.txt" | sort -g | awk '
		{ a[NR] = $1 }
		END {
			m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
			printf "%.3f %.3f %.3f\n", m, a[1], a[NR]
		}'
}
declare -A MED MIN MAX
for v in "${VARIANTS[@]}"; do
	read -r MED[$v] MIN[$v] MAX[$v] < <(stats "$v")
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

table() {
	echo "| variant | policy expression | median ms | min ms | max ms | ratio to constant (medians) | per-round ratio (median) |"
	echo "|---|---|---:|---:|---:|---:|---:|"
	for v in "${VARIANTS[@]}"; do
		printf '| %s (%s) | `%s` | %.1f | %.1f | %.1f | %s× | %s× |\n' "$v" "${LABEL[$v]}" "${EXPR[$v]}" \
			"${MED[$v]}" "${MIN[$v]}" "${MAX[$v]}" "$(ratio "${MED[$v]}" "${MED[const]}")" "$(paired "$v" %.2f)"
	done
}
R3=$(awk -v a="${MED[initplan]}" -v b="${MED[const]}" 'BEGIN { printf "%.3f", a / b }')
if awk -v r="$R3" -v t="$TARGET" 'BEGIN { exit !(r <= t) }'; then
	VERDICT="target (recommended form within ${TARGET}x of the constant): met (ratio $R3)"
else
	VERDICT="target (recommended form within ${TARGET}x of the constant): NOT met (ratio $R3)"
fi
# the same comparison paired by round (median of variant/const within each
# round), which cancels drift between rounds
paired() {
	awk -v v="$1" '
		{ t[$1, $2] = $4; rs[$1] = 1 }
		END { for (r in rs) print t[r, v] / t[r, "const"] }' "$WORK/out/timings.txt" |
		sort -g | awk -v f="$2" '{ a[NR] = $1 } END { printf f, (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
PAIRED=$(paired initplan %.3f)

ELAPSED=$((SECONDS - T0))
mkdir -p "$(dirname "$RESULT")"
{
	echo "# current_tenant() in a row-level security policy: $DATE ($MODE mode)"
	echo
	echo "Made by \`${QUICK:+QUICK=1 }bash bench/tenant_policy.sh\` in $((ELAPSED / 60)) min $((ELAPSED % 60)) s."
	echo
	echo "The issue's contract: a benchmark measures \`current_tenant()\` in a policy over a"
	echo "1-million-row table against the same scan with a constant; target: within 1.1×."
	echo "The target applies to the form the extension recommends,"
	echo "\`USING (tenant_id = (SELECT netrun_pool.current_tenant())::uuid)\`."
	echo
	echo "**$VERDICT**"
	echo
	echo "## Results"
	echo
	table
	echo
	echo "Each query returned the tenant's $EXPECTED of $ROWS rows. The verdict uses the ratio"
	echo "of the medians; the last column is the median over rounds of (variant / const) within"
	echo "a round, which cancels drift between rounds (initplan: $PAIRED)."
	echo
	echo "What the plans below show: in the recommended form the InitPlan computes"
	echo "\`current_tenant()::uuid\` once and the filter is \`tenant_id = \$0\`, the same"
	echo "comparison as the constant's. With the \`::uuid\` cast outside the subquery"
	echo "(\`cast_outside\`) the filter is \`tenant_id = (\$0)::uuid\`: a text-to-uuid"
	echo "conversion on every row, which costs about as much as calling the function per row."
	echo
	echo "## Machine"
	echo
	echo "- $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo) RAM"
	echo "- $PG_FULL"
	echo "- netrun_pool at $GIT_REV$([ "$GIT_DIRTY" != 0 ] && echo " plus uncommitted changes under src/, sql/ (\`git status --porcelain\` lines: $GIT_DIRTY; the working tree was built)"), built without assertions (\`-O2\`, PGXS defaults)"
	echo "- load average before the run: $LOAD_BEFORE; after: $LOAD_AFTER"
	echo
	echo "## Method"
	echo
	echo "- One server: \`shared_buffers = 256MB\`, \`max_parallel_workers_per_gather = 0\`,"
	echo "  \`jit = off\`, \`shared_preload_libraries = 'netrun_pool'\`; clients over the Unix socket."
	echo "- \`docs(id int, tenant_id uuid, body text)\`: $ROWS rows, $TENANTS tenants (row g belongs"
	echo "  to tenant g mod $TENANTS, so every page holds every tenant), \`VACUUM (FREEZE, ANALYZE)\`,"
	echo "  no index: every query is a full sequential scan ($TABLE_PAGES pages, $TABLE_SIZE) that"
	echo "  evaluates the policy on every row, the worst case for a per-row expression."
	echo "- RLS enabled and forced on \`docs\`; one policy per variant, each \`FOR SELECT TO app_<variant>\`"
	echo "  (a non-owner, non-superuser role), so all variants scan the same heap pages and"
	echo "  \`SET ROLE app_<variant>\` picks the policy."
	echo "- The session: \`SET netrun_pool.tenant_id_format = 'uuid'\` as superuser, then"
	echo "  \`SET ROLE app_const; SELECT netrun_pool.set_tenant('$TENANT')\` (which also sets"
	echo "  the mirror \`app.current_tenant_id\`)."
	echo "- Warm-up: \`pg_prewarm('docs')\`, then two untimed scans per variant. Heap blocks read"
	echo "  from outside shared buffers during the timed rounds: $READS."
	echo "- Timed: \`SELECT count(*) FROM docs\` in one psql session, $ROUNDS rounds, each round"
	echo "  running every variant once in a rotating order; the time is psql's \`\\timing\`"
	echo "  (client-side wall time of the statement: parse, plan with the policy, execute, result"
	echo "  over the socket). No instrumentation runs in the server; the round trip and planning"
	echo "  add well under 1 ms to every variant alike. The EXPLAIN ANALYZE below was run"
	echo "  separately, after the timed rounds."
	echo
	echo "## Plans"
	echo
	# the recommended form first
	for v in initplan $(printf '%s\n' "${VARIANTS[@]}" | grep -vx initplan); do
		echo "### $v: \`${EXPR[$v]}\`"
		echo
		echo '```'
		echo "=> EXPLAIN (COSTS OFF) SELECT count(*) FROM docs;   -- as app_$v"
		cat "$WORK/out/plan_$v.txt"
		echo
		echo "=> EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, COSTS OFF) SELECT count(*) FROM docs;"
		cat "$WORK/out/analyze_$v.txt"
		echo '```'
		echo
	done
	echo "## Raw timings (ms)"
	echo
	echo "| round |$(printf ' %s |' "${VARIANTS[@]}")"
	echo "|---:|$(printf -- '---:|%.0s' "${VARIANTS[@]}")"
	awk -v vs="${VARIANTS[*]}" '
		{ t[$1, $2] = $4; if ($1 > max) max = $1 }
		END {
			n = split(vs, v, " ")
			for (r = 1; r <= max; r++) {
				line = "| " r " |"
				for (i = 1; i <= n; i++) line = line " " t[r, v[i]] " |"
				print line
			}
		}' "$WORK/out/timings.txt"
} >"$RESULT"

echo
echo "netrun_pool tenant policy bench, $MODE mode, $DATE: $ROWS rows, $ROUNDS rounds, PostgreSQL $PG_VERSION, $(nproc) cores"
echo
table
echo
echo "$VERDICT"
echo "(median of per-round ratios initplan/const: $PAIRED; heap blocks read during timing: $READS)"
echo
echo "results: $RESULT"
