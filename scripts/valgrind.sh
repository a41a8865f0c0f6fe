#!/usr/bin/env bash
# netrun_pool under valgrind: the local server (postmaster, launcher, worker
# and backends: forked children stay under valgrind) runs a workload that
# takes every call path, against a real remote; any invalid read or write,
# use of uninitialised memory, or bad free whose stack goes through
# netrun_pool.so fails the run.
#
#   bash scripts/valgrind.sh          (as root; a few minutes)
#
# AddressSanitizer is not used: preloading its runtime into Debian's
# (uninstrumented) postgres binary deadlocks at start-up on this platform.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

require_root
TEST_USER=netrun_test
ensure_packages valgrind
ensure_user "$TEST_USER"

start_run netrun_pool_valgrind "$TEST_USER"
chown "$TEST_USER:" "$work"
install -d -o "$TEST_USER" "$work/run" "$work/vg"

echo "== build (assertions on)"
build_and_install "$work/src" "$TEST_USER" ASSERT=1

u() { as_user "$TEST_USER" "$@"; }
u initdb -D "$work/remote" -A trust >/dev/null
u initdb -D "$work/local" -A trust >/dev/null
u pg_ctl -D "$work/remote" -l "$work/remote.log" -o "-p 54391 -k $work/run -c listen_addresses=''" -w start >/dev/null

echo "== local server under valgrind (slow)"
u valgrind --quiet --error-limit=no --num-callers=30 --track-origins=yes \
	--log-file="$work/vg/vg.%p" \
	postgres -D "$work/local" -p 54390 -k "$work/run" -c listen_addresses='' \
	-c shared_preload_libraries=netrun_pool -c netrun_pool.database=postgres \
	-c max_worker_processes=16 -c netrun_pool.health_interval_ms=200 \
	-c netrun_pool.unhealthy_after=2 >"$work/local.log" 2>&1 &
for _ in $(seq 600); do
	u pg_isready -q -h "$work/run" -p 54390 && break
	sleep 0.5
done

lsql() { u psql -X -q -h "$work/run" -p 54390 -d postgres -v ON_ERROR_STOP=0 "$@"; }
lsql -c "CREATE EXTENSION netrun_pool"
for _ in $(seq 120); do
	[ "$(lsql -At -c "SELECT state FROM netrun_pool.worker_status()")" = running ] && break
	sleep 0.5
done

echo "== workload"
lsql >"$work/workload.out" 2>&1 <<SQL
SELECT netrun_pool.register('r', 'host=$work/run port=54391 dbname=postgres', pool_min => 1, pool_max => 2);
SELECT netrun_pool.register('s', 'host=$work/run port=54391 dbname=postgres', pool_mode => 'session', pool_max => 1);
SELECT netrun_pool.register('c1', 'host=$work/run port=54391 dbname=postgres', cluster => 'c', pool_max => 1);
SELECT netrun_pool.register('c2', 'host=$work/run port=54391 dbname=postgres', cluster => 'c', role => 'replica', max_replica_lag_ms => 1000);
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
u pg_ctl -D "$work/local" -m fast -w -t 300 stop >/dev/null
u pg_ctl -D "$work/remote" -m fast -w stop >/dev/null

# Which valgrind errors are ours.  Memory errors (invalid reads, writes and
# frees, uses of uninitialised values) count when any frame is in one of our
# source files.  "Syscall param ... uninitialised byte(s)" counts only when
# our code is near the top of the stack: PostgreSQL itself writes struct
# padding to files (XLOG, the relcache init file), which its own
# suppression file hides and Debian does not ship.
ours_re='\((api|channel|conninfo|guc|health|launcher|module|pool|redact|registry|route|secret|shmem|stats|status|tenant|views|worker)\.c:[0-9]+\)'
ours=0
for f in "$work"/vg/vg.*; do
	[ -s "$f" ] || continue
	hits=$(awk -v re="$ours_re" '
		function flush() {
			if (kind != "" && ((kind !~ /^Syscall param/ && all ~ re) || top ~ re))
				{ print buf; print ""; }
			kind = ""; buf = ""; all = ""; top = ""; depth = 0
		}
		/^==[0-9]+== [A-Z]/ { flush(); kind = $0; sub(/^==[0-9]+== /, "", kind); buf = $0; next }
		/^==[0-9]+== *$/ { flush(); next }
		kind != "" {
			buf = buf "\n" $0; all = all " " $0
			if ($0 ~ /(at|by) 0x/ && depth < 4) { top = top " " $0; depth++ }
		}
		END { flush() }' "$f")
	if [ -n "$hits" ]; then
		echo "---- $f"
		echo "$hits" | head -80
		ours=$((ours + 1))
	fi
done
all_reports=$(cat "$work"/vg/vg.* 2>/dev/null | grep -c -E '^==[0-9]+== [A-Z]')
# The workload must have run: its calls answer with these.
for want in 'INSERT 0 1' '20000' '3 | 3x' 'canceling statement due to statement timeout' 'session of netrun_pool connection "s" was lost' \
	'netrun_pool connection "down" is unavailable' 'down | unhealthy' 'tenant on the remote: acme'; do
	grep -q -- "$want" "$work/workload.out" || { echo "workload did not run as expected (no '$want')"; cat "$work/workload.out"; exit 1; }
done
echo "== valgrind: $all_reports reports in all, $ours process logs with errors in netrun_pool's code"
[ "$ours" -eq 0 ]
