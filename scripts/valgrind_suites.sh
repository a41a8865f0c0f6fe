#!/usr/bin/env bash
# The engine of "make test-valgrind" (run it through make, which stages the
# build first): the regression, isolation and TAP suites, unchanged, with
# every server that preloads netrun_pool running under valgrind memcheck.
#
# How the servers end up under valgrind: a private copy of the install
# under $VG_DIR/root (our freshly built library and extension files, links
# to everything else of PostgreSQL's), whose bin dir goes first in PATH
# (TAP) and is pg_regress's --bindir.  In it, "postgres" is a script that
# runs the real binary (copied as postgres.bin, so that it finds the
# private lib and share dirs next to it) under valgrind when the data
# directory's configuration preloads netrun_pool, and natively otherwise
# (remotes, pg_ctl's version check).  pg_ctl is a copy too: it looks for
# postgres next to its own resolved path.  initdb is a link to the real
# one, so bootstrap never runs under valgrind.  Forked children stay under
# valgrind: the launcher, the worker and every backend.
#
# Each process logs to $VG_DIR/log/SUITE/vg.*.  A report (invalid read,
# write or free, uninitialised value, a crash or failed Assert) with a
# stack frame in netrun_pool's code fails the run; reports entirely inside
# PostgreSQL's own code (it writes struct padding to files, which its own
# suppression file hides and Debian does not ship) are counted and shown
# by kind, but do not fail it.
#
# Environment: VG_SUITES (default "workload regress isolation tap"; the
# workload is a short script taking every call path), PROVE_TESTS,
# VG_OPTS (extra valgrind options, e.g. --track-origins=yes),
# PG_TEST_TIMEOUT_DEFAULT (default 180), NETRUN_STREAM_ROWS (t/004's
# big stream, default 1000000 here instead of 10 million).
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
# count_suite, shared with test.sh; make's PG_BINDIR is kept over common.sh's
make_bindir=${PG_BINDIR:-}
. "$src/scripts/common.sh"
PG_BINDIR=$make_bindir
: "${VG_DIR:?run this through make test-valgrind}" "${PG_BINDIR:?}" "${PG_PKGLIBDIR:?}" "${PG_SHAREDIR:?}"
MAKE=${MAKE:-make}
suites=${VG_SUITES:-workload regress isolation tap}
root=$VG_DIR/root
bin=$root$PG_BINDIR

command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }

# --- the private install: our files (staged by make) plus links to the rest
link_missing() {
	local from=$1 to=$2 f
	mkdir -p "$to"
	for f in "$from"/*; do
		[ -e "$to/${f##*/}" ] || ln -s "$f" "$to/${f##*/}"
	done
}
link_missing "$PG_PKGLIBDIR" "$root$PG_PKGLIBDIR"
mkdir -p "$root$PG_SHAREDIR/extension"
link_missing "$PG_SHAREDIR/extension" "$root$PG_SHAREDIR/extension"
link_missing "$PG_SHAREDIR" "$root$PG_SHAREDIR"
mkdir -p "$bin"
cp "$PG_BINDIR/postgres" "$bin/postgres.bin"
cp "$PG_BINDIR/pg_ctl" "$bin/pg_ctl"
for f in "$PG_BINDIR"/*; do
	case ${f##*/} in postgres | postmaster | pg_ctl) ;; *) ln -s "$f" "$bin/${f##*/}" ;; esac
done
ln -s postgres "$bin/postmaster"

# Our frames: full source paths (--fullpath-after= with nothing after it
# keeps the whole path) under this tree's src/, or the library itself.
ours_re="(\\($src/src/[^ ]*\\.[ch]:[0-9]+\\))|(\\(in [^)]*/netrun_pool\\.so\\))"

cat >"$bin/postgres" <<EOF
#!/bin/sh
# Written by scripts/valgrind_suites.sh: postgres under valgrind when the
# server preloads netrun_pool, natively otherwise.
real='$bin/postgres.bin'
datadir=\${PGDATA:-}
prev=
preload=
for a in "\$@"; do
	[ "\$prev" = -D ] && datadir=\$a
	case \$a in
	-V | --version | -C | --describe-config | --single | --boot | --help) exec "\$real" "\$@" ;;
	-D?*) datadir=\${a#-D} ;;
	*shared_preload_libraries=*netrun_pool*) preload=1 ;;
	esac
	prev=\$a
done
if [ -z "\$preload" ] && [ -n "\$datadir" ] &&
	cat "\$datadir/postgresql.conf" "\$datadir/postgresql.auto.conf" 2>/dev/null |
	grep -E '^[[:space:]]*shared_preload_libraries[[:space:]]*(=|[[:space:]])' | tail -n 1 |
	grep -q netrun_pool; then
	preload=1
fi
[ -n "\$preload" ] || exec "\$real" "\$@"
logdir=\${NETRUN_VG_LOGDIR:-$VG_DIR/log/other}
mkdir -p "\$logdir"
# pids repeat (pid_max may be 32768): a name per server start, then the pid
NETRUN_VG_START=\$(date +%s%N).\$\$
export NETRUN_VG_START
exec valgrind --quiet --error-limit=no --num-callers=40 --leak-check=no \\
	--trace-children=yes --smc-check=all-non-file --fullpath-after= \\
	--log-file="\$logdir/vg.%q{NETRUN_VG_START}.%p" \${VG_OPTS:-} "\$real" "\$@"
EOF
chmod 755 "$bin/postgres"

# --- the suites ----------------------------------------------------------
export PATH="$bin:$PATH"
# The framework's own default, kept: t/008 runs each load for this long,
# and under valgrind its scenarios need all of it.  The price: a poll that
# cannot succeed here (see docs/reliability.md, "Under valgrind") makes 10 x this many tries,
# each a new connection (0.2 to 1 s under valgrind).
export PG_TEST_TIMEOUT_DEFAULT=${PG_TEST_TIMEOUT_DEFAULT:-180}
# pg_regress's and pg_ctl's wait for a starting or stopping server
export PGCTLTIMEOUT=${PGCTLTIMEOUT:-600}
export NETRUN_STREAM_ROWS=${NETRUN_STREAM_ROWS:-1000000}
export VG_OPTS=${VG_OPTS:-}

passed=0 failed=0 failed_suites=() lines=()

# Reports in one suite's logs: prints "total ours", writes our reports to
# $2 and the kinds of the others (one per line) to $3.
classify() {
	local dir=$1 ours_out=$2 kinds_out=$3
	: >"$ours_out"
	: >"$kinds_out"
	[ -d "$dir" ] || { echo "0 0"; return; }
	find "$dir" -type f -name 'vg.*' -size +0 -print0 | xargs -0 -r awk -v re="$ours_re" \
		-v ours_out="$ours_out" -v kinds_out="$kinds_out" '
		function flush() {
			if (kind != "") {
				total++
				# PostgreSQL writes uninitialised padding to files itself;
				# such a syscall report is ours only if our code is on top.
				if ((kind !~ /^Syscall param/ && all ~ re) || top ~ re) {
					ours++
					print "---- " file "\n" buf "\n" >> ours_out
				} else {
					k = kind; gsub(/0x[0-9A-Fa-f]+/, "ADDR", k); gsub(/[0-9]+ bytes/, "N bytes", k)
					print k " @ " first (all ~ re ? " [netrun_pool deeper in the stack]" : "") >> kinds_out
				}
			}
			kind = ""; buf = ""; all = ""; top = ""; first = ""; depth = 0
		}
		FNR == 1 { flush() }
		/^==[0-9]+== Warning:/ { next }
		/^==[0-9]+== [A-Z]/ { flush(); kind = $0; sub(/^==[0-9]+== /, "", kind); buf = $0; file = FILENAME; next }
		/^==[0-9]+== *$/ { flush(); next }
		kind != "" {
			buf = buf "\n" $0; all = all " " $0
			if ($0 ~ /(at|by) 0x/) {
				if (depth < 4) top = top " " $0
				depth++
				# the first named frame outside glibc (relative source
				# paths) and valgrind, as a name for the kind
				f = $0; sub(/^.*(at|by) 0x[0-9A-Fa-f]+: /, "", f)
				if (first == "" && f !~ /^\?\?\?|vgpreload/ && (f ~ /\(in \// || f !~ /\([^\/]/)) {
					sub(/\(in .*\//, "(", f); first = f
				}
			}
		}
		END { flush(); print total + 0, ours + 0 > "/dev/stderr" }' 2>&1 >/dev/null |
		awk '{ t += $1; o += $2 } END { print t + 0, o + 0 }'
}

# The workload: a local server (preloading, so under valgrind) and a
# remote, on sockets in a private dir, and one psql script that takes every
# call path: rows, JSON, errors, exec_transaction, begin, session mode,
# tenants, a statement timeout, health, configure and a forced unregister.
run_workload() {
	local run=$VG_DIR/run d=$VG_DIR/workload q rc=0 want
	mkdir -p "$run" "$d"
	initdb -D "$d/remote" -A trust >/dev/null && initdb -D "$d/local" -A trust >/dev/null || return 1
	cat >>"$d/local/postgresql.conf" <<CONF
shared_preload_libraries = 'netrun_pool'
netrun_pool.database = 'postgres'
max_worker_processes = 16
netrun_pool.health_interval_ms = 200
netrun_pool.unhealthy_after = 2
CONF
	pg_ctl -D "$d/remote" -l "$d/remote.log" -o "-p 54391 -k $run -c listen_addresses=''" -w start >/dev/null &&
		pg_ctl -D "$d/local" -l "$d/local.log" -o "-p 54390 -k $run -c listen_addresses=''" -w start >/dev/null || return 1
	q() { psql -X -q -h "$run" -p 54390 -d postgres -v ON_ERROR_STOP=0 "$@"; }
	q -c "CREATE EXTENSION netrun_pool"
	for _ in $(seq 600); do
		[ "$(q -At -c "SELECT state FROM netrun_pool.worker_status()")" = running ] && break
		sleep 0.5
	done
	q >"$d/workload.out" 2>&1 <<SQL
SELECT netrun_pool.register('r', 'host=$run port=54391 dbname=postgres', pool_min => 1, pool_max => 2, tenant_guard => 'off');
SELECT netrun_pool.register('s', 'host=$run port=54391 dbname=postgres', pool_mode => 'session', pool_max => 1);
SELECT netrun_pool.register('c1', 'host=$run port=54391 dbname=postgres', cluster => 'c', pool_max => 1);
SELECT netrun_pool.register('c2', 'host=$run port=54391 dbname=postgres', cluster => 'c', role => 'replica', max_replica_lag_ms => 1000);
SELECT netrun_pool.register('down', 'host=127.0.0.1 port=1 dbname=x', connect_timeout_ms => 300);
SELECT pg_sleep(4);
SELECT name, status, circuit, consecutive_failures > 0 AS failing FROM netrun_pool.health ORDER BY name;
SELECT netrun_pool.fetchval('down', 'SELECT 1');
SELECT netrun_pool.fetchval('c', 'SELECT 1'), netrun_pool.fetchval('c', 'SELECT 2', read_only => true);
BEGIN; SELECT netrun_pool.begin('c'); SELECT netrun_pool.fetchval('c', 'SELECT 3'); COMMIT;
SELECT length(netrun_pool.health_check()::text) > 0, netrun_pool.ready(), netrun_pool.alive(), length(netrun_pool.prometheus()) > 0;
SELECT netrun_pool.reset_stats('c');
SELECT netrun_pool.set_tenant('acme');
SELECT netrun_pool.fetchval('r', 'SELECT ''tenant on the remote: '' || current_setting(''app.current_tenant_id'', true)');
SELECT netrun_pool.fetchval('r', 'SELECT 1', read_only => true);
SELECT netrun_pool.exec_transaction('r', ARRAY['SELECT 1', 'SELECT 2']);
BEGIN; SELECT netrun_pool.begin('r'); SELECT netrun_pool.exec('r', 'SELECT 1'); SELECT netrun_pool.clear_tenant(); SELECT netrun_pool.exec('r', 'SELECT 2'); COMMIT;
SELECT netrun_pool.set_tenant_token('a.b.c');
SELECT netrun_pool.set_tenant_token('eyJhbGciOiJub25lIn0.eyJ0ZW5hbnRfaWQiOiJ4In0.');
SET netrun_pool.tenant_id = 'evil';
SELECT netrun_pool.tenant_schema('acme'), netrun_pool.validate_schema_name('x');
SELECT netrun_pool.clear_tenant();
SELECT * FROM netrun_pool.query('r', 'SELECT g, g::text || \$1 FROM generate_series(1, 200000) g', ARRAY['x']) AS t(a int, b text) LIMIT 3;
SELECT count(*) FROM netrun_pool.query_json('r', 'SELECT g, NULL::int AS n, g % 2 = 0 AS b, ''{"k": 1}''::jsonb AS j FROM generate_series(1, 20000) g');
SELECT netrun_pool.fetchval('r', 'SELECT NULL');
SELECT netrun_pool.exec('r', 'CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)');
SELECT netrun_pool.exec_transaction('r', ARRAY['INSERT INTO t VALUES (1)', 'DELETE FROM t']);
SELECT netrun_pool.exec_transaction('r', ARRAY['INSERT INTO t VALUES (2)', 'INSERT INTO t VALUES (2)']);
SELECT netrun_pool.fetchval('r', 'SELEC 1');
SELECT * FROM netrun_pool.query('r', 'SELECT 1, 2') AS t(a int);
SELECT * FROM netrun_pool.query('r', 'SELECT ''x''') AS t(a int);
BEGIN; SELECT netrun_pool.begin('r'); SELECT netrun_pool.exec('r', 'INSERT INTO t VALUES (3)'); COMMIT;
BEGIN; SELECT netrun_pool.begin('r'); SELECT netrun_pool.exec('r', 'INSERT INTO t VALUES (4)'); ROLLBACK;
SELECT netrun_pool.exec('s', 'SET work_mem = ''8MB''');
SELECT netrun_pool.release('s');
SELECT netrun_pool.exec('s', 'SET work_mem = ''16MB''');
SELECT * FROM netrun_pool.query('s', 'SELECT ''x''') AS t(a int);
SELECT netrun_pool.fetchval('s', 'SHOW work_mem');
SELECT netrun_pool.fetchval('s', 'SHOW work_mem');
SELECT netrun_pool.release('s');
SET statement_timeout = '300ms';
SELECT netrun_pool.fetchval('r', 'SELECT pg_sleep(10)');
RESET statement_timeout;
SELECT netrun_pool.fetchval('r', 'SELECT 1');
SELECT * FROM netrun_pool.pool_stats;
SELECT * FROM netrun_pool.health;
SELECT netrun_pool.configure('r', pool_max => 3);
SELECT netrun_pool.configure('down', enabled => false);
SELECT netrun_pool.unregister('c2');
SELECT pg_sleep(1);
SELECT netrun_pool.unregister('s', force => true);
SELECT netrun_pool.fetchval('r', 'SELECT 2');
SQL
	pg_ctl -D "$d/local" -m fast -w stop >/dev/null || rc=1
	pg_ctl -D "$d/remote" -m fast -w stop >/dev/null || rc=1
	cat "$d/workload.out"
	# it must have run: its calls answer with these
	for want in 'INSERT 0 1' '20000' '3 | 3x' 'canceling statement due to statement timeout' \
		'session of netrun_pool connection "s" was lost' 'netrun_pool connection "down" is unavailable' \
		'down | unhealthy' 'tenant on the remote: acme'; do
		grep -q -- "$want" "$d/workload.out" || { echo "workload did not run as expected (no '$want')"; rc=1; }
	done
	[ "$rc" = 0 ] && echo "test workload ... ok" || echo "test workload ... FAILED"
	return "$rc"
}

for suite in $suites; do
	out=$VG_DIR/$suite.out
	logdir=$VG_DIR/log/$suite
	mkdir -p "$logdir"
	echo "== $suite under valgrind ($(date +%T))"
	start=$(date +%s)
	if [ "$suite" = workload ]; then
		NETRUN_VG_LOGDIR=$logdir run_workload 2>&1 | tee "$out"
	else
		NETRUN_VG_LOGDIR=$logdir "$MAKE" -C "$src" -s "test-$suite" TEST_BINDIR="$bin" \
			${PROVE_TESTS:+PROVE_TESTS="$PROVE_TESTS"} 2>&1 | tee "$out"
	fi
	rc=${PIPESTATUS[0]}
	secs=$(($(date +%s) - start))
	count_suite "$suite" "$out" "$rc"
	p=$suite_passed f=$suite_failed
	passed=$((passed + p))
	failed=$((failed + f))
	[ "$rc" != 0 ] && failed_suites+=("$suite")
	read -r total ours < <(classify "$logdir" "$VG_DIR/$suite.ours" "$VG_DIR/$suite.kinds")
	nproc=$(find "$logdir" -type f -name 'vg.*' | wc -l)
	lines+=("$(printf '%-10s %3d passed %3d failed %6ds   valgrind: %d processes, %d reports, %d in netrun_pool' \
		"$suite" "$p" "$f" "$secs" "$nproc" "$total" "$ours")")
	if [ "$ours" -gt 0 ]; then
		failed_suites+=("$suite(valgrind)")
		echo "---- valgrind reports in netrun_pool's code ($suite)"
		head -n 400 "$VG_DIR/$suite.ours"
	fi
	if [ "$rc" != 0 ]; then
		[ -f "$src/build/$suite/regression.diffs" ] && head -n 300 "$src/build/$suite/regression.diffs"
		for l in "$src"/build/"$suite"/log/*.log "$src"/build/"$suite"/tmp_check/log/*; do
			[ -f "$l" ] || continue
			echo "---- $l (last 60 lines)"
			tail -n 60 "$l"
		done
	fi
done

echo
echo "== valgrind summary"
printf '%s\n' "${lines[@]}"
if cat "$VG_DIR"/*.kinds 2>/dev/null | grep -q .; then
	echo "reports inside PostgreSQL's own code, by kind (not failures):"
	cat "$VG_DIR"/*.kinds | sort | uniq -c | sort -rn | head -n 15
fi
echo "logs: $VG_DIR/log"
[ ${#failed_suites[@]} -gt 0 ] && echo "failed: ${failed_suites[*]}"
echo "tests: $passed passed, $failed failed"
[ ${#failed_suites[@]} -eq 0 ] && [ "$failed" -eq 0 ]
