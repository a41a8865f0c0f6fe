#!/usr/bin/env bash
# The demo: builds and installs netrun_pool, starts a local server with the
# extension preloaded and a real remote PostgreSQL, both on loopback and
# both under one folder ($NETRUN_DEMO_DIR, default /var/tmp/netrun_pool_demo),
# and shows the extension at work.  Run it again and it replaces the first
# demo.  Stop everything with: bash $NETRUN_DEMO_DIR/stop.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

require_root
DEMO_USER=netrun_demo
DEMO_DIR=${NETRUN_DEMO_DIR:-/var/tmp/netrun_pool_demo}

ensure_packages
ensure_user "$DEMO_USER"

# Replace an earlier demo: stop its servers, then remove its folder.
if [ -d "$DEMO_DIR" ]; then
	for d in "$DEMO_DIR/local" "$DEMO_DIR/remote" "$DEMO_DIR/replica"; do
		[ -f "$d/postmaster.pid" ] &&
			as_user "$DEMO_USER" pg_ctl -D "$d" -m fast -w stop >/dev/null 2>&1 || true
	done
	rm -rf "$DEMO_DIR"
fi
mkdir -p "$DEMO_DIR/run"
copy_tree "$here" "$DEMO_DIR/src" "$DEMO_USER"
chown -R "$DEMO_USER:" "$DEMO_DIR"

echo "== building and installing netrun_pool"
build_and_install "$DEMO_DIR/src" "$DEMO_USER"

# Two free loopback ports.
LOCAL_PORT=$(next_port 55432 "$DEMO_DIR/run")
REMOTE_PORT=$(next_port $((LOCAL_PORT + 1)) "$DEMO_DIR/run")
REPLICA_PORT=$(next_port $((REMOTE_PORT + 1)) "$DEMO_DIR/run")

start_server() {
	local name=$1 port=$2 extra=$3
	as_user "$DEMO_USER" initdb -D "$DEMO_DIR/$name" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
	cat >>"$DEMO_DIR/$name/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DEMO_DIR/run'
log_line_prefix = '%m [%p] %b '
$extra
CONF
	as_user "$DEMO_USER" pg_ctl -D "$DEMO_DIR/$name" -l "$DEMO_DIR/$name.log" -w start >/dev/null
}

# The guard key, shared by the pool's server and the remote: only the pool's
# assertions signed with it set the tenant on the remote.
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DEMO_DIR/guard.key")
chown "$DEMO_USER:" "$DEMO_DIR/guard.key"

echo "== starting the remote server on 127.0.0.1:$REMOTE_PORT (scram-sha-256 over TCP, netrun_pool's tenant guard)"
start_server remote "$REMOTE_PORT" "password_encryption = 'scram-sha-256'
session_preload_libraries = 'netrun_pool'
netrun_pool.tenant_mode = pool
netrun_pool.guard_key_file = '$DEMO_DIR/guard.key'"
printf 'local all all trust\nlocal replication all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$DEMO_DIR/remote/pg_hba.conf"
as_user "$DEMO_USER" pg_ctl -D "$DEMO_DIR/remote" reload >/dev/null

echo "== starting a streaming replica of it on 127.0.0.1:$REPLICA_PORT (pg_basebackup -R)"
as_user "$DEMO_USER" pg_basebackup -D "$DEMO_DIR/replica" -R -h "$DEMO_DIR/run" -p "$REMOTE_PORT" -X stream
sed -i "s/^port = .*/port = $REPLICA_PORT/" "$DEMO_DIR/replica/postgresql.conf"
as_user "$DEMO_USER" pg_ctl -D "$DEMO_DIR/replica" -l "$DEMO_DIR/replica.log" -w start >/dev/null
REMOTE_PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

# The key that encrypts registry passwords: 32 random bytes, mode 600.
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DEMO_DIR/secret.key")
chown "$DEMO_USER:" "$DEMO_DIR/secret.key"

echo "== starting the local server on 127.0.0.1:$LOCAL_PORT (netrun_pool preloaded)"
start_server local "$LOCAL_PORT" "shared_preload_libraries = 'netrun_pool'
netrun_pool.database = 'postgres'
netrun_pool.secret_key_file = '$DEMO_DIR/secret.key'
netrun_pool.guard_key_file = '$DEMO_DIR/guard.key'
netrun_pool.health_interval_ms = 500"

cat >"$DEMO_DIR/stop.sh" <<STOP
#!/usr/bin/env bash
# Stops the netrun_pool demo servers.
for d in "$DEMO_DIR/local" "$DEMO_DIR/remote" "$DEMO_DIR/replica"; do
	runuser -u $DEMO_USER -- $PG_BINDIR/pg_ctl -D "\$d" -m fast -w stop
done
STOP
chmod +x "$DEMO_DIR/stop.sh"

lpsql() { as_user "$DEMO_USER" psql -X -q -h "$DEMO_DIR/run" -p "$LOCAL_PORT" -d postgres "$@"; }
rpsql() { as_user "$DEMO_USER" psql -X -q -h "$DEMO_DIR/run" -p "$REMOTE_PORT" -d postgres "$@"; }
show() { echo; echo "local=# $1"; lpsql -c "$1"; }

echo "== the remote"
rpsql -At -c "SELECT 'remote is up: ' || version()"
# netrun_pool on the remote too: its tenant guard (guard_hello, guard_assert,
# current_tenant); no worker runs there.
rpsql -c "CREATE EXTENSION netrun_pool"
rpsql -c "CREATE ROLE app LOGIN PASSWORD '$REMOTE_PASSWORD'; CREATE TABLE items (id int PRIMARY KEY, label text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g; GRANT SELECT, UPDATE ON items TO app"

echo "== the extension"
lpsql -c "CREATE EXTENSION netrun_pool"
# The worker picks the extension up within a second.
for _ in $(seq 100); do
	[ "$(lpsql -At -c "SELECT state FROM netrun_pool.worker_status()")" = running ] && break
	sleep 0.1
done
show "SELECT * FROM netrun_pool.worker_status()"
show "SELECT pid, backend_type, datname FROM pg_stat_activity WHERE backend_type LIKE 'netrun_pool%'"
show "SELECT name, setting FROM pg_settings WHERE name LIKE 'netrun_pool.%' ORDER BY name"

echo
echo "== the registry: the remote, registered with its password (stored encrypted)"
register_sql="SELECT netrun_pool.register('demo_remote', 'postgresql://app:%s@127.0.0.1:$REMOTE_PORT/postgres', pool_min => 1, pool_max => 4, region => 'local')"
echo
echo "local=# $(printf "$register_sql" '***')"
lpsql -c "$(printf "$register_sql" "$REMOTE_PASSWORD")"
show "CREATE ROLE app_reader LOGIN; SELECT netrun_pool.grant_usage('demo_remote', 'app_reader')"
show "SELECT name, kind, role, host, port, dbname, \"user\", has_password, pool_min, pool_max, pool_mode, enabled FROM netrun_pool.connections"
show "SELECT name, conninfo, length(secret) AS secret_bytes FROM netrun_pool.registry"
show "SELECT * FROM netrun_pool.check_secrets()"
show "SET ROLE app_reader; SELECT name, netrun_pool.has_usage(name) FROM netrun_pool.connections"
for _ in $(seq 50); do
	[ "$(lpsql -At -c "SELECT pools FROM netrun_pool.worker_status()")" = 1 ] && break
	sleep 0.1
done
show "SELECT state, pools, generation FROM netrun_pool.worker_status()"

echo
echo "== pooled calls: every backend shares the worker's connections to the remote"
show "SELECT * FROM netrun_pool.query('demo_remote', 'SELECT id, label FROM items WHERE id <= \$1 ORDER BY id', ARRAY['3']) AS t(id int, label text)"
show "SELECT * FROM netrun_pool.query_json('demo_remote', 'SELECT id, label, id % 2 = 0 AS even FROM items ORDER BY id LIMIT 2', read_only => true)"
show "SELECT netrun_pool.fetchval('demo_remote', 'SELECT count(*) FROM items')"
show "SELECT netrun_pool.exec('demo_remote', 'UPDATE items SET label = upper(label) WHERE id = \$1', ARRAY['1'])"
show "SET ROLE app_reader; SELECT netrun_pool.fetchval('demo_remote', 'SELECT label FROM items WHERE id = 1')"
show "SELECT netrun_pool.exec_transaction('demo_remote', ARRAY['UPDATE items SET label = lower(label) WHERE id = 1', 'UPDATE items SET label = label || ''!'' WHERE id = 2'])"

echo
echo "== a cluster: the remote and its streaming replica; writes go to the primary,"
echo "== read_only reads to the replica (routing follows what the health probes see)"
register_sql="SELECT netrun_pool.register('demo_replica', 'postgresql://app:%s@127.0.0.1:$REPLICA_PORT/postgres', role => 'replica', cluster => 'demo', pool_max => 4, max_replica_lag_ms => 5000)"
echo
echo "local=# $(printf "$register_sql" '***')"
lpsql -c "$(printf "$register_sql" "$REMOTE_PASSWORD")"
show "SELECT netrun_pool.configure('demo_remote', cluster => 'demo')"
for _ in $(seq 100); do
	[ "$(lpsql -At -c "SELECT count(*) FROM netrun_pool.health WHERE status IN ('healthy', 'degraded')")" = 2 ] && break
	sleep 0.1
done
show "SELECT netrun_pool.fetchval('demo', 'SELECT format(''write on port %s, in recovery: %s'', inet_server_port(), pg_is_in_recovery())') AS write_path, netrun_pool.fetchval('demo', 'SELECT format(''read on port %s, in recovery: %s'', inet_server_port(), pg_is_in_recovery())', read_only => true) AS read_path"

echo
echo "== what operators read"
# the worker publishes the gauges every 250 ms: let them settle
sleep 0.3
show "SELECT name, cluster, role, pool_mode, status, pool_max, total, checked_out, idle, waiting, available, utilization_percent FROM netrun_pool.pool_stats"
show "SELECT name, acquired_total, acquire_wait_avg_ms, acquire_wait_p95_ms, queries_total, query_avg_ms, query_p95_ms, errors_total, created_total, last_error FROM netrun_pool.pool_stats"
show "SELECT name, status, latency_ms, circuit, is_replica, replica_lag_ms, server_version, consecutive_failures FROM netrun_pool.health"
show "SELECT jsonb_pretty(netrun_pool.health_check('demo_remote'))"
show "SELECT netrun_pool.alive(), netrun_pool.ready(), netrun_pool.ready('demo')"
echo
echo "local=# SELECT netrun_pool.prometheus()   -- a few lines of it"
lpsql -At -c "SELECT netrun_pool.prometheus()" | grep -E '^netrun_pool_(up|healthy|queries_total|acquire_wait_seconds)[{ ]' | head -12

echo
echo "== the circuit breaker: the replica stops"
as_user "$DEMO_USER" pg_ctl -D "$DEMO_DIR/replica" -m immediate -w stop >/dev/null
for _ in $(seq 100); do
	[ "$(lpsql -At -c "SELECT circuit FROM netrun_pool.health WHERE name = 'demo_replica'")" != closed ] && break
	sleep 0.1
done
show "SELECT name, status, circuit, consecutive_failures, left(last_error, 70) AS last_error FROM netrun_pool.health"
show "SELECT netrun_pool.fetchval('demo_replica', 'SELECT 1')" || true
show "SELECT netrun_pool.fetchval('demo', 'SELECT format(''read on port %s: the replica is down, the primary answers'', inet_server_port())', read_only => true)"
echo
echo "== the replica comes back"
as_user "$DEMO_USER" pg_ctl -D "$DEMO_DIR/replica" -l "$DEMO_DIR/replica.log" -w start >/dev/null
for _ in $(seq 200); do
	[ "$(lpsql -At -c "SELECT circuit FROM netrun_pool.health WHERE name = 'demo_replica'")" = closed ] && break
	sleep 0.1
done
show "SELECT name, status, circuit, consecutive_failures FROM netrun_pool.health"
show "SELECT netrun_pool.fetchval('demo', 'SELECT format(''read on port %s, in recovery: %s'', inet_server_port(), pg_is_in_recovery())', read_only => true)"
echo
echo "== tenants: a tenant setting that cannot be spoofed, carried to the remote's own RLS"
echo "remote=# CREATE TABLE orders (...); ... CREATE POLICY orders_tenant ON orders USING (tenant = netrun_pool.current_tenant())"
rpsql -c "CREATE TABLE orders (id int PRIMARY KEY, tenant text NOT NULL, total numeric);
INSERT INTO orders SELECT g, CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END, g * 10 FROM generate_series(1, 6) g;
ALTER TABLE orders ENABLE ROW LEVEL SECURITY; ALTER TABLE orders FORCE ROW LEVEL SECURITY;
CREATE POLICY orders_tenant ON orders USING (tenant = netrun_pool.current_tenant());
GRANT SELECT ON orders TO app"
show "SELECT name, tenant_guard, tenant_guard_detail FROM netrun_pool.health"
show "SET ROLE app_reader; SELECT netrun_pool.set_tenant('acme'); SELECT * FROM netrun_pool.query('demo_remote', 'SELECT id, tenant, total FROM orders ORDER BY id') AS t(id int, tenant text, total numeric)"
show "SET ROLE app_reader; SELECT netrun_pool.set_tenant('globex'); SELECT * FROM netrun_pool.query('demo_remote', 'SELECT id, tenant, total FROM orders ORDER BY id') AS t(id int, tenant text, total numeric)"
show "SET ROLE app_reader; SELECT netrun_pool.set_tenant('acme'); SET netrun_pool.tenant_id = 'globex'" || true
echo
echo "== the caller's own SQL, run on the remote, tries to pick another tenant: the remote's guard refuses"
show "SET ROLE app_reader; SELECT netrun_pool.set_tenant('acme'); SELECT netrun_pool.fetchval('demo_remote', \$\$SELECT netrun_pool.set_tenant('globex')\$\$)" || true
show "SET ROLE app_reader; SELECT netrun_pool.set_tenant('acme'); SELECT netrun_pool.fetchval('demo_remote', \$\$SELECT set_config('netrun_pool.tenant_id', 'globex', false)\$\$)" || true
show "SET ROLE app_reader; SELECT netrun_pool.set_tenant('acme'); SELECT * FROM netrun_pool.query('demo_remote', \$\$SELECT set_config('app.current_tenant_id', 'globex', true), (SELECT string_agg(DISTINCT tenant, ',') FROM orders)\$\$) AS t(mirror text, tenants_seen text)"
show "SET ROLE app_reader; SELECT count(*) AS rows_with_no_tenant_set FROM netrun_pool.query('demo_remote', 'SELECT id FROM orders') AS t(id int)"
echo
echo "remote=# SELECT application_name, count(*) FROM pg_stat_activity WHERE application_name LIKE 'netrun_pool:%' GROUP BY 1"
rpsql -c "SELECT application_name, count(*) FROM pg_stat_activity WHERE application_name LIKE 'netrun_pool:%' GROUP BY 1"

cat <<DONE

The demo is running under $DEMO_DIR (logs: local.log, remote.log, replica.log).
  connect to the local server:   psql -h 127.0.0.1 -p $LOCAL_PORT -U $DEMO_USER postgres
  connect to the remote server:  psql -h $DEMO_DIR/run -p $REMOTE_PORT -U $DEMO_USER postgres
  connect to its replica:        psql -h $DEMO_DIR/run -p $REPLICA_PORT -U $DEMO_USER postgres
  (over TCP the remote wants scram-sha-256: user app, password in the registry, encrypted)
  stop everything:               bash $DEMO_DIR/stop.sh
DONE
