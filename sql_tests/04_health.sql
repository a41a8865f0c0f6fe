--
-- Health, the circuit breaker, cluster names, and what operators read:
-- pool_stats, health, health_check(), ready(), alive(), reset_stats()
-- and prometheus(); their columns, who sees which row, and every error.
--
-- "h_self" is this same instance over its Unix socket (it answers its
-- probes); "h_down" points at a port where nothing listens, so its
-- probes fail and its circuit opens.  Probes run every 200 ms here.
--
\set VERBOSITY default
ALTER SYSTEM SET netrun_pool.health_interval_ms = 200;
ALTER SYSTEM SET netrun_pool.unhealthy_after = 2;
SELECT pg_reload_conf();
-- Registry changes reach the worker within a moment: wait for its load.
CREATE FUNCTION h_wait_for_load(before bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..200 LOOP
    EXIT WHEN (SELECT generation FROM netrun_pool.worker_status()) > before;
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;

SELECT netrun_pool.register('h_self',
    format('host=%s port=%s dbname=contrib_regression',
           current_setting('unix_socket_directories'), current_setting('port')),
    cluster => 'h_cluster', pool_max => 2);
SELECT netrun_pool.register('h_down', 'host=127.0.0.1 port=1 dbname=nowhere',
    connect_timeout_ms => 500, acquire_timeout_ms => 1000);

-- Wait (bounded) until the probes have spoken for both.
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    EXIT WHEN (SELECT count(*) FROM netrun_pool.health
                WHERE (name = 'h_self' AND status IN ('healthy', 'degraded'))
                   OR (name = 'h_down' AND status = 'unhealthy')) = 2;
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;

-- The views' columns.
\d netrun_pool.pool_stats
\d netrun_pool.health

-- A remote that answers: probed, its role and version known, no error.
SELECT name, status IN ('healthy', 'degraded') AS answers, circuit,
       consecutive_failures, is_replica, replica_lag_ms,
       server_version = current_setting('server_version') AS same_version,
       latency_ms >= 0 AS has_latency, checked_at <= clock_timestamp() AS checked,
       abs(extract(epoch FROM remote_time - now())) < 60 AS remote_clock,
       last_error
  FROM netrun_pool.health WHERE name = 'h_self';

-- A remote that is down: unhealthy after unhealthy_after probes, circuit
-- open, libpq's reason kept, nothing known of the server.
SELECT name, status, circuit IN ('open', 'half_open') AS circuit_open,
       consecutive_failures >= 2 AS failed_in_a_row, latency_ms, is_replica,
       server_version, split_part(last_error, E'\n', 1) AS last_error
  FROM netrun_pool.health WHERE name = 'h_down';

-- Calls to it fail at once, with 08004 (the detail gives the last error
-- and when the next probe runs: shown by the TAP tests).
\set VERBOSITY terse
SELECT netrun_pool.fetchval('h_down', 'SELECT 1');
\set VERBOSITY default
DO $$
BEGIN
  PERFORM netrun_pool.exec('h_down', 'SELECT 1');
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'SQLSTATE %: %', SQLSTATE, SQLERRM;
END $$;

-- A cluster name stands for a connection: writes go to its primary, and
-- read_only reads fall back to the primary when there is no replica.
SELECT netrun_pool.fetchval('h_cluster', 'SELECT ''write path'''),
       netrun_pool.fetchval('h_cluster', 'SELECT pg_is_in_recovery()::text', read_only => true);
SELECT netrun_pool.exec('h_cluster', 'SELECT 1');
SELECT * FROM netrun_pool.query('h_cluster', 'SELECT 1, 2') AS t(a int, b int);
-- An error names the member and the cluster.
SELECT netrun_pool.fetchval('h_cluster', 'SELECT 1/0');
SELECT netrun_pool.fetchval('no_such_cluster', 'SELECT 1', read_only => true);
-- begin() on a cluster name stays on the member it was routed to: later
-- calls by the cluster's name run in that remote transaction, and a
-- read_only call is refused there.
BEGIN;
SELECT netrun_pool.begin('h_cluster');
SELECT netrun_pool.fetchval('h_cluster', 'SELECT txid_current()::text')
     = netrun_pool.fetchval('h_self', 'SELECT txid_current()::text') AS same_remote_transaction;
SELECT netrun_pool.begin('h_cluster');
SELECT netrun_pool.fetchval('h_cluster', 'SELECT 1', read_only => true);
ROLLBACK;
-- after the transaction the cluster name routes afresh
SELECT netrun_pool.fetchval('h_cluster', 'SELECT 1', read_only => true);
-- a failed remote commit ends the begin() too (t/006_routing.pl shows the
-- cluster name routing afresh after it)
BEGIN;
SELECT netrun_pool.begin('h_cluster');
DO $$
BEGIN
  PERFORM netrun_pool.exec('h_cluster', 'SELECT 1/0');
EXCEPTION WHEN division_by_zero THEN NULL;
END $$;
COMMIT;
SELECT netrun_pool.fetchval('h_cluster', 'SELECT ''routed afresh''', read_only => true);
-- release() of a cluster that holds nothing is not an error
SELECT netrun_pool.release('h_cluster');
-- Session mode through a cluster name: the session stays on its member
-- until release(cluster), which resets it (DISCARD ALL).
SELECT netrun_pool.register('h_sess',
    format('host=%s port=%s dbname=contrib_regression',
           current_setting('unix_socket_directories'), current_setting('port')),
    cluster => 'h_sc', pool_mode => 'session', pool_max => 1);
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN (SELECT status FROM netrun_pool.health WHERE name = 'h_sess') IN ('healthy', 'degraded');
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT netrun_pool.exec('h_sc', 'SET application_name = ''kept by the session''');
SELECT netrun_pool.fetchval('h_sc', 'SHOW application_name') AS write_path,
       netrun_pool.fetchval('h_sc', 'SHOW application_name', read_only => true) AS read_path;
SELECT netrun_pool.release('h_sc');
SELECT netrun_pool.fetchval('h_sc', 'SHOW application_name') AS after_release;
SELECT netrun_pool.release('h_sc');
SELECT netrun_pool.unregister('h_sess');

-- Counters: connections opened so far; after a reset, exactly the calls
-- made since.
SELECT created_total >= 1 AS created FROM netrun_pool.pool_stats WHERE name = 'h_self';
SELECT netrun_pool.reset_stats('h_self');
SELECT count(netrun_pool.fetchval('h_self', 'SELECT ' || i)) FROM generate_series(1, 20) i;
SELECT netrun_pool.fetchval('h_self', 'SELECT ''secret-looking value''::int');
SELECT name, status IN ('healthy', 'degraded') AS answers, role, cluster, pool_mode,
       acquired_total, queries_total, errors_total, timeouts_total, exhausted_total,
       acquire_wait_avg_ms >= 0 AND acquire_wait_p95_ms >= 0
         AND acquire_wait_max_ms >= acquire_wait_p95_ms AS acquire_wait_ordered,
       query_avg_ms > 0 AND query_p95_ms > 0 AS query_times,
       last_error, last_error_at <= clock_timestamp() AS error_time,
       stats_reset <= clock_timestamp() AS reset_time
  FROM netrun_pool.pool_stats WHERE name = 'h_self';
-- The refused calls count as errors of h_down.
SELECT name, status, errors_total >= 2 AS refused_counted, last_error, queries_total
  FROM netrun_pool.pool_stats WHERE name = 'h_down';
-- reset_stats() keeps health, clears counters.
SELECT netrun_pool.reset_stats();
SELECT name, queries_total, errors_total, last_error, status IN ('healthy', 'degraded') AS answers
  FROM netrun_pool.pool_stats WHERE name LIKE 'h\_%' ORDER BY name;

-- health_check(): the keys application pools report.
SELECT key FROM jsonb_object_keys(netrun_pool.health_check('h_self')) key ORDER BY key;
SELECT hc->>'name' AS name, hc->'healthy' AS healthy, hc->>'pool_size' AS pool_size,
       hc->>'max_overflow' AS max_overflow, hc->>'database' AS database,
       (hc->>'checked_in_connections')::int + (hc->>'checked_out_connections')::int <= 2 AS within_pool,
       (hc->>'timestamp')::timestamptz <= now() + interval '1 minute' AS has_timestamp
  FROM netrun_pool.health_check('h_self') hc;
SELECT hc->>'status' AS status, hc->'healthy' AS healthy, hc->'latency_ms' AS latency,
       hc->>'circuit' AS circuit
  FROM netrun_pool.health_check('h_down') hc;
-- Without a name: every connection, and the worst status overall.
SELECT hc->>'status' AS overall, hc->'healthy' AS healthy,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(hc->'connections') k
         WHERE k LIKE 'h\_%') AS connections
  FROM netrun_pool.health_check() hc;
-- A cluster name: its members, and their overall status.
SELECT hc->>'status' IN ('healthy', 'degraded') AS answers, hc->'healthy' AS healthy,
       (SELECT array_agg(k) FROM jsonb_object_keys(hc->'connections') k) AS members
  FROM netrun_pool.health_check('h_cluster') hc;

-- ready() and alive(), for orchestrators' probes.
SELECT netrun_pool.alive() AS alive,
       netrun_pool.ready('h_self') AS self_ready,
       netrun_pool.ready('h_down') AS down_ready,
       netrun_pool.ready('h_cluster') AS cluster_ready,
       netrun_pool.ready() AS all_ready;

-- prometheus(): the text exposition format.
SELECT line FROM regexp_split_to_table(netrun_pool.prometheus(), E'\n') AS line
 WHERE line LIKE 'netrun_pool_up %'
    OR line LIKE '# TYPE netrun_pool_queries_total %'
    OR line LIKE '# HELP netrun_pool_healthy %'
    OR line ~ '^netrun_pool_(healthy|circuit_open)\{name="h_'
    OR line ~ '^netrun_pool_health_status\{name="h_down",status="unhealthy"\}'
    OR line ~ '^netrun_pool_query_duration_seconds_count\{name="h_self"'
 ORDER BY line;
-- Every line is a comment or a sample: name{labels} value.
SELECT count(*) AS malformed_lines
  FROM regexp_split_to_table(netrun_pool.prometheus(), E'\n') AS line
 WHERE line <> ''
   AND line !~ '^# (HELP|TYPE) netrun_pool_[a-z_]+ .+$'
   AND line !~ '^netrun_pool_[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.]+(e[-+][0-9]+)?$';
-- Every family has exactly one TYPE line.
SELECT count(*) AS families, count(DISTINCT split_part(line, ' ', 3)) AS distinct_families
  FROM regexp_split_to_table(netrun_pool.prometheus(), E'\n') AS line
 WHERE line LIKE '# TYPE %';

-- Bad arguments.
SELECT netrun_pool.health_check('nope');
SELECT netrun_pool.ready('nope');
SELECT netrun_pool.reset_stats('nope');
SELECT netrun_pool.configure('h_self', max_replica_lag_ms => -1);
SELECT netrun_pool.register('h_bad', 'dbname=x', max_replica_lag_ms => -5);

-- Who sees what: superusers and pg_monitor members every row, other roles
-- the connections they have usage on; reset_stats() is for superusers.
CREATE ROLE h_stranger;
CREATE ROLE h_user;
CREATE ROLE h_monitor IN ROLE pg_monitor;
SELECT generation AS gen FROM netrun_pool.worker_status() \gset
SELECT netrun_pool.grant_usage('h_self', 'h_user');
SELECT h_wait_for_load(:gen);
SET ROLE h_stranger;
SELECT count(*) AS stranger_pool_stats FROM netrun_pool.pool_stats;
SELECT count(*) AS stranger_health FROM netrun_pool.health;
SELECT netrun_pool.health_check('h_self');
SELECT netrun_pool.health_check()->'connections' AS stranger_sees;
SELECT position('h_self' IN netrun_pool.prometheus()) AS stranger_metrics;
SELECT netrun_pool.reset_stats('h_self');
RESET ROLE;
SET ROLE h_user;
SELECT name FROM netrun_pool.pool_stats;
SELECT name FROM netrun_pool.health;
SELECT netrun_pool.health_check('h_self')->>'name' AS user_sees;
SELECT netrun_pool.ready('h_down');
RESET ROLE;
SET ROLE h_monitor;
SELECT name FROM netrun_pool.pool_stats WHERE name LIKE 'h\_%' ORDER BY name;
SELECT name FROM netrun_pool.health WHERE name LIKE 'h\_%' ORDER BY name;
RESET ROLE;
SELECT table_name, grantee, privilege_type FROM information_schema.role_table_grants
 WHERE table_schema = 'netrun_pool' AND table_name IN ('pool_stats', 'health')
   AND grantee <> current_user
 ORDER BY table_name, grantee;
SELECT p.proname, has_function_privilege('h_stranger', p.oid, 'EXECUTE') AS public_may_call
  FROM pg_proc p
 WHERE p.pronamespace = 'netrun_pool'::regnamespace
   AND p.proname IN ('health_check', 'ready', 'alive', 'reset_stats', 'prometheus')
 ORDER BY 1;

-- Disabled: not probed, shown as such.
SELECT netrun_pool.configure('h_down', enabled => false);
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN (SELECT status FROM netrun_pool.pool_stats WHERE name = 'h_down') = 'disabled';
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT p.status AS pool_stats_status, h.status AS health_status, h.circuit, h.consecutive_failures
  FROM netrun_pool.pool_stats p JOIN netrun_pool.health h USING (name) WHERE name = 'h_down';

-- Clean up.
SELECT netrun_pool.unregister('h_self');
SELECT netrun_pool.unregister('h_down');
DROP ROLE h_stranger;
DROP ROLE h_user;
DROP ROLE h_monitor;
DROP FUNCTION h_wait_for_load(bigint);
ALTER SYSTEM RESET netrun_pool.health_interval_ms;
ALTER SYSTEM RESET netrun_pool.unhealthy_after;
SELECT pg_reload_conf();
