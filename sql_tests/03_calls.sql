--
-- Calls through the pool: query, query_json, fetchval, exec; who may call;
-- and every error a caller can cause.
--
-- The "remote" here is this same temp instance, reached over its Unix
-- socket, where it trusts everyone: a remote that asks for no password.
--
\set VERBOSITY default
\set SHOW_CONTEXT errors

SELECT netrun_pool.register('self',
    format('host=%s port=%s dbname=contrib_regression',
           current_setting('unix_socket_directories'), current_setting('port')),
    pool_max => 2, acquire_timeout_ms => 2000);

-- Wait (bounded) until the worker has loaded the connection.
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    EXIT WHEN (SELECT pools FROM netrun_pool.worker_status()) = 1;
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;

CREATE TABLE items (id int PRIMARY KEY, label text, price numeric, tags jsonb, ok boolean);
INSERT INTO items VALUES
  (1, 'apple', 1.50, '["fruit"]', true),
  (2, 'bread', 2.25, NULL, false),
  (3, NULL, 'NaN', '{"a": 1}', NULL);

-- query: rows typed by the column list; params are real parameters.
SELECT * FROM netrun_pool.query('self', 'SELECT id, label, price FROM items ORDER BY id')
  AS t(id int, label text, price numeric);
SELECT * FROM netrun_pool.query('self', 'SELECT id, label FROM items WHERE id = $1 OR label = $2',
                                ARRAY['1', 'bread']) AS t(id int, label text) ORDER BY id;
-- A parameter is a value, never SQL: the quote stays inside it.
SELECT * FROM netrun_pool.query('self', 'SELECT $1::text AS v', ARRAY['x''); DROP TABLE items; --'])
  AS t(v text);
SELECT count(*) FROM items;
-- NULL parameters, and an empty result.
SELECT * FROM netrun_pool.query('self', 'SELECT $1::int IS NULL AS is_null', ARRAY[NULL])
  AS t(is_null boolean);
SELECT * FROM netrun_pool.query('self', 'SELECT id FROM items WHERE false') AS t(id int);
-- Read-only calls run in a READ ONLY remote transaction.
SELECT * FROM netrun_pool.query('self', 'SHOW transaction_read_only', read_only => true)
  AS t(ro text);
SELECT * FROM netrun_pool.query('self', 'SHOW transaction_read_only') AS t(ro text);

-- query_json: one object per row, typed where JSON can say it.
SELECT * FROM netrun_pool.query_json('self', 'SELECT * FROM items ORDER BY id');

-- fetchval: first column of the first row, NULL if none.
SELECT netrun_pool.fetchval('self', 'SELECT label FROM items ORDER BY id');
SELECT netrun_pool.fetchval('self', 'SELECT label FROM items WHERE false') IS NULL AS none;

-- A caller waits for its answer asleep, or polls for it first for up to
-- netrun_pool.spin_wait_us microseconds (0: never).  The answer is the same.
SHOW netrun_pool.spin_wait_us;
SET netrun_pool.spin_wait_us = 0;
SELECT netrun_pool.fetchval('self', 'SELECT label FROM items ORDER BY id');
SET netrun_pool.spin_wait_us = 10000;
SELECT netrun_pool.fetchval('self', 'SELECT label FROM items ORDER BY id');
SELECT netrun_pool.fetchval('self', 'SELECT count(*) FROM items');
-- A statement_timeout that fires while the caller polls ends the call
-- (the previous answer was quick, so this call polls for up to 10 ms),
-- and the next call gets a fresh channel.
SET statement_timeout = '5ms';
SELECT netrun_pool.fetchval('self', 'SELECT pg_sleep(1)');
RESET statement_timeout;
SELECT netrun_pool.fetchval('self', 'SELECT 2');
SET netrun_pool.spin_wait_us = 10001;
SET netrun_pool.spin_wait_us = -1;
RESET netrun_pool.spin_wait_us;

-- exec: the command tag.
SELECT netrun_pool.exec('self', 'INSERT INTO items (id, label) VALUES ($1, $2)', ARRAY['4', 'cheese']);
SELECT netrun_pool.exec('self', 'UPDATE items SET ok = true WHERE ok IS NOT true');
SELECT netrun_pool.exec('self', 'DELETE FROM items WHERE id = 4');

-- A transaction the caller leaves open is rolled back before anyone else
-- gets the connection (transaction pooling): no pooled connection stays
-- idle in a transaction (waited for, bounded: the ROLLBACK is async).
SELECT netrun_pool.exec('self', 'BEGIN');
DO $$
DECLARE n int;
BEGIN
  FOR i IN 1..100 LOOP
    PERFORM pg_stat_clear_snapshot();  -- the view is read once per transaction otherwise
    SELECT count(*) INTO n FROM pg_stat_activity
     WHERE application_name = 'netrun_pool:self' AND state LIKE 'idle in transaction%';
    EXIT WHEN n = 0;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RAISE NOTICE 'pooled connections left in a transaction: %', n;
END $$;

-- What the remote sees.
SELECT * FROM netrun_pool.query('self',
  'SELECT current_setting(''application_name''), current_setting(''DateStyle''), current_setting(''IntervalStyle'')')
  AS t(app text, datestyle text, intervalstyle text);

--
-- Errors.
--
-- The remote's error is the caller's: SQLSTATE, message, detail, hint,
-- plus a context line naming the connection.
CREATE FUNCTION show_error(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE state text; msg text; detail text; hint text; ctx text;
BEGIN
  EXECUTE sql;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
      detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT, ctx = PG_EXCEPTION_CONTEXT;
  RETURN format('%s: %s | detail: %s | hint: %s | context: %s', state, msg,
                nullif(detail, ''), nullif(hint, ''), split_part(ctx, E'\n', 1));
END $$;
SELECT show_error($$SELECT netrun_pool.exec('self', 'INSERT INTO items (id) VALUES (1)')$$);
SELECT show_error($$SELECT netrun_pool.fetchval('self', 'SELECT 1/0')$$);
SELECT show_error($$SELECT netrun_pool.fetchval('self', 'SELEC 1')$$);
SELECT show_error($$SELECT netrun_pool.exec('self', 'DO $x$ BEGIN RAISE EXCEPTION ''custom'' USING ERRCODE = ''P0042'', DETAIL = ''d'', HINT = ''h''; END $x$')$$);

-- A request larger than netrun_pool.max_request_size is refused in the
-- caller's backend, before the worker sees it; within it, it runs.
SET netrun_pool.max_request_size = '64kB';
SELECT show_error($$SELECT netrun_pool.fetchval('self', 'SELECT length(''' || repeat('x', 70000) || ''')')$$);
SELECT show_error($$SELECT netrun_pool.fetchval('self', 'SELECT length($1)', ARRAY[repeat('x', 70000)])$$);
SELECT netrun_pool.fetchval('self', 'SELECT length($1)', ARRAY[repeat('x', 60000)]);
RESET netrun_pool.max_request_size;
SELECT netrun_pool.fetchval('self', 'SELECT length($1)', ARRAY[repeat('x', 70000)]);
-- DNS servers: addresses with optional ports, checked when set.
ALTER SYSTEM SET netrun_pool.dns_servers = '10.0.0.1:99999';
ALTER SYSTEM SET netrun_pool.dns_servers = 'dns.example.com';
ALTER SYSTEM SET netrun_pool.dns_servers = '10.0.0.1,[::1]:5353,127.0.0.1:53';
ALTER SYSTEM RESET netrun_pool.dns_servers;
-- exec_transaction: the statements run in one remote transaction, all or
-- nothing, and their command tags come back.
SELECT netrun_pool.exec_transaction('self', ARRAY[
  'INSERT INTO items (id, label) VALUES (10, ''ten'')',
  'UPDATE items SET label = upper(label) WHERE id = 10',
  'SELECT * FROM items',
  'DELETE FROM items WHERE id = 10']);
-- One failure undoes the lot.
SELECT show_error($$SELECT netrun_pool.exec_transaction('self', ARRAY[
  'INSERT INTO items (id, label) VALUES (11, ''eleven'')',
  'INSERT INTO items (id) VALUES (1)'])$$);
SELECT count(*) AS eleven_rows FROM items WHERE id = 11;
-- No statement may end the transaction: refused before anything runs ...
SELECT netrun_pool.exec_transaction('self', ARRAY['INSERT INTO items (id) VALUES (12)', 'COMMIT']);
SELECT netrun_pool.exec_transaction('self', ARRAY[' /* sneaky */ -- really
  rollback']);
-- ... and what hides behind another first word is refused by the remote:
-- each statement travels alone, and a DO block cannot commit inside a
-- transaction block.
SELECT show_error($$SELECT netrun_pool.exec_transaction('self', ARRAY['INSERT INTO items (id) VALUES (12); COMMIT'])$$);
SELECT show_error($$SELECT netrun_pool.exec_transaction('self', ARRAY['INSERT INTO items (id) VALUES (12)', 'DO $x$ BEGIN COMMIT; END $x$'])$$);
SELECT count(*) AS twelve_rows FROM items WHERE id = 12;
SELECT netrun_pool.exec_transaction('self', ARRAY[]::text[]);
SELECT netrun_pool.exec_transaction('self', ARRAY['SELECT 1', NULL]);
SELECT netrun_pool.exec_transaction('self', NULL);

-- begin(): one remote transaction for the rest of the local one.  Later
-- calls on the name join it; the local commit commits it, the local
-- rollback rolls it back.
CREATE TABLE ledger (id int PRIMARY KEY);
BEGIN;
SELECT netrun_pool.begin('self');
SELECT netrun_pool.begin('self');  -- twice is once
SELECT netrun_pool.exec('self', 'INSERT INTO ledger VALUES (1)');
SELECT netrun_pool.exec_transaction('self', ARRAY['INSERT INTO ledger VALUES (2)']);
SELECT netrun_pool.fetchval('self', 'SELECT count(*) FROM ledger') AS seen_inside;
SELECT count(*) AS seen_outside FROM ledger;
ROLLBACK;
-- the remote transaction ends when its connection closes (bounded wait)
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    PERFORM pg_stat_clear_snapshot();
    EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity
                           WHERE application_name = 'netrun_pool:self'
                             AND state LIKE 'idle in transaction%');
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT count(*) AS after_rollback FROM ledger;
SELECT netrun_pool.exec('self', 'INSERT INTO ledger VALUES (1)') AS id_1_is_free;
BEGIN;
SELECT netrun_pool.begin('self');
SELECT netrun_pool.exec('self', 'INSERT INTO ledger VALUES (2)');
COMMIT;
SELECT count(*) AS after_commit FROM ledger;
-- A remote commit that fails fails the local commit, local work included.
CREATE TABLE deferred_uniq (id int UNIQUE DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE local_mark (x int);
BEGIN;
INSERT INTO local_mark VALUES (1);
SELECT netrun_pool.begin('self');
SELECT netrun_pool.exec('self', 'INSERT INTO deferred_uniq VALUES (1), (1)');
COMMIT;
SELECT (SELECT count(*) FROM local_mark) AS local_rows, (SELECT count(*) FROM deferred_uniq) AS remote_rows;
-- An error inside the remote transaction, even one caught locally, fails
-- the local commit.
BEGIN;
SELECT netrun_pool.begin('self');
SELECT show_error($$SELECT netrun_pool.exec('self', 'INSERT INTO ledger VALUES (1)')$$);
INSERT INTO local_mark VALUES (2);
COMMIT;
SELECT count(*) AS local_rows FROM local_mark;
-- No two-phase commit.
BEGIN;
SELECT netrun_pool.begin('self');
PREPARE TRANSACTION 'netrun_test';
-- A call that fails mid-stream inside begin(), even one caught locally,
-- closes the pinned connection and so rolls the remote work back: later
-- calls and the local commit must say so, never carry on without it.
CREATE TABLE ledger2 (id int PRIMARY KEY);
BEGIN;
SELECT netrun_pool.begin('self');
SELECT netrun_pool.exec('self', 'INSERT INTO ledger2 VALUES (1)');
SELECT show_error($$SELECT * FROM netrun_pool.query('self', 'SELECT ''abc''') AS t(a int)$$);
SELECT netrun_pool.exec('self', 'INSERT INTO ledger2 VALUES (2)');
ROLLBACK;
BEGIN;
SELECT netrun_pool.begin('self');
SELECT netrun_pool.exec('self', 'INSERT INTO ledger2 VALUES (1)');
SELECT show_error($$SELECT * FROM netrun_pool.query('self', 'SELECT ''abc''') AS t(a int)$$);
COMMIT;
SELECT count(*) AS ledger2_rows FROM ledger2;
DROP TABLE ledger2;
-- COPY cannot pass through the pool (libpq's COPY state would never end):
-- a clear error, and the pool goes on serving.  An empty statement is fine.
SELECT netrun_pool.exec('self', 'COPY (SELECT 1) TO STDOUT');
SELECT * FROM netrun_pool.query('self', 'COPY (SELECT 1) TO STDOUT') AS t(x text);
SELECT netrun_pool.exec('self', '') = '' AS empty_statement;
SELECT netrun_pool.fetchval('self', 'SELECT ''still serving''');
-- read_only inside begin() would not be read-only: refused.
BEGIN;
SELECT netrun_pool.begin('self');
SELECT netrun_pool.fetchval('self', 'SELECT 1', read_only => true);
ROLLBACK;
-- Two begin() connections, and the first commit fails: the second is not
-- left pinned with its transaction open; it rolls back with the local one.
SELECT netrun_pool.register('self2',
    format('host=%s port=%s dbname=contrib_regression',
           current_setting('unix_socket_directories'), current_setting('port')));
CREATE TABLE commit_dfr (id int UNIQUE DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE commit_other (id int);
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    BEGIN
      PERFORM netrun_pool.fetchval('self2', 'SELECT 1');
      EXIT;
    EXCEPTION WHEN OTHERS THEN
      PERFORM pg_sleep(0.1);
    END;
  END LOOP;
END $$;
BEGIN;
SELECT netrun_pool.begin('self');
SELECT netrun_pool.begin('self2');
SELECT netrun_pool.exec('self2', 'INSERT INTO commit_other VALUES (1)');
SELECT netrun_pool.exec('self', 'INSERT INTO commit_dfr VALUES (1), (1)');
COMMIT;
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    PERFORM pg_stat_clear_snapshot();
    EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity
                           WHERE application_name LIKE 'netrun_pool:self%'
                             AND state LIKE 'idle in transaction%');
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT (SELECT count(*) FROM commit_dfr) AS dfr_rows, (SELECT count(*) FROM commit_other) AS other_rows;
-- and the next begin() on it starts afresh
BEGIN;
SELECT netrun_pool.begin('self2');
SELECT netrun_pool.exec('self2', 'INSERT INTO commit_other VALUES (2)');
COMMIT;
SELECT array_agg(id) AS other_ids FROM commit_other;
DROP TABLE commit_dfr, commit_other;
SELECT netrun_pool.unregister('self2');

-- After all that, calls outside begin() are plain again.
SELECT netrun_pool.fetchval('self', 'SELECT count(*) FROM ledger');
DROP TABLE ledger, deferred_uniq, local_mark;

-- Session mode: the backend keeps its connection, session state and all,
-- until release(); then the reset between callers and our settings again.
SELECT netrun_pool.register('sess',
    format('host=%s port=%s dbname=contrib_regression',
           current_setting('unix_socket_directories'), current_setting('port')),
    pool_mode => 'session', pool_max => 1);
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    EXIT WHEN (SELECT pools FROM netrun_pool.worker_status()) = 2;
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT netrun_pool.exec('sess', 'SET search_path = pg_catalog');
SELECT netrun_pool.fetchval('sess', 'SHOW search_path') AS same_session;
-- A read_only call or exec_transaction would commit a session's open
-- transaction: refused.
SELECT netrun_pool.exec('sess', 'BEGIN');
SELECT netrun_pool.fetchval('sess', 'SELECT 1', read_only => true);
SELECT netrun_pool.exec_transaction('sess', ARRAY['SELECT 1']);
SELECT netrun_pool.exec('sess', 'ROLLBACK');
SELECT netrun_pool.release('sess');
SELECT netrun_pool.fetchval('sess', 'SHOW search_path') AS after_release;
SELECT netrun_pool.fetchval('sess', 'SHOW DateStyle') AS settings_back;
SELECT netrun_pool.release('sess');
SELECT netrun_pool.release('sess');  -- nothing held: nothing to do
-- A call that fails mid-stream discards this backend's channel, which
-- ends its sessions: the next call on the session pool says so, once.
SELECT netrun_pool.exec('sess', 'SET search_path = pg_catalog');
SELECT * FROM netrun_pool.query('sess', 'SELECT ''not a number''') AS t(a int);
SELECT netrun_pool.fetchval('sess', 'SHOW search_path');
SELECT netrun_pool.fetchval('sess', 'SHOW search_path') AS new_session;
SELECT netrun_pool.release('sess');
SELECT netrun_pool.release(NULL);
SELECT netrun_pool.begin(NULL);
SELECT netrun_pool.unregister('sess');

-- A read-only call cannot write.
SELECT * FROM netrun_pool.query('self', 'DELETE FROM items RETURNING id', read_only => true)
  AS t(id int);
-- The column list must match what comes back.
SELECT * FROM netrun_pool.query('self', 'SELECT 1, 2') AS t(a int);
SELECT * FROM netrun_pool.query('self', 'SELECT ''abc''') AS t(a int);
SELECT * FROM netrun_pool.query('self', 'SELECT 1');
-- Bad arguments.
SELECT netrun_pool.fetchval(NULL, 'SELECT 1');
SELECT netrun_pool.fetchval('self', NULL);
SELECT netrun_pool.fetchval('nope', 'SELECT 1');
SELECT netrun_pool.fetchval('self', 'SELECT $1', ARRAY[ARRAY['a']]);
SELECT netrun_pool.fetchval('self', 'SELECT 1', array_fill('x'::text, ARRAY[70000]));
SELECT netrun_pool.fetchval('self', 'SELECT $1 || $2', ARRAY['only one']);
-- After all those errors the connection still serves.
SELECT netrun_pool.fetchval('self', 'SELECT count(*) FROM items');

-- A disabled connection refuses calls.
SELECT netrun_pool.configure('self', enabled => false);
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    EXIT WHEN (SELECT generation FROM netrun_pool.worker_status()) >= 0
          AND NOT EXISTS (SELECT 1 FROM netrun_pool.connections WHERE enabled);
    PERFORM pg_sleep(0.1);
  END LOOP;
  -- the worker loads the change within a second
  PERFORM pg_sleep(0.5);
END $$;
SELECT netrun_pool.fetchval('self', 'SELECT 1');
SELECT netrun_pool.configure('self', enabled => true);
SELECT pg_sleep(0.5);

--
-- Who may call.
--
CREATE ROLE caller LOGIN;
SET ROLE caller;
-- no usage
SELECT netrun_pool.fetchval('self', 'SELECT 1');
-- polling burns CPU: only a superuser may change how long
SET netrun_pool.spin_wait_us = 0;
RESET ROLE;
SELECT netrun_pool.grant_usage('self', 'caller');
SELECT pg_sleep(0.5);
SET ROLE caller;
-- usage, but this remote asked for no password (CVE-2007-3278)
SELECT netrun_pool.fetchval('self', 'SELECT 1');
RESET ROLE;
-- a superuser may waive that for a connection it trusts
SELECT netrun_pool.configure('self', password_required => false);
SELECT pg_sleep(0.5);
SET ROLE caller;
-- the remote session runs as the connection's user (the bootstrap
-- superuser, named after whichever OS user runs the tests), not as caller
SELECT netrun_pool.fetchval('self', 'SELECT current_user') = session_user AS as_connection_user;
RESET ROLE;

-- pool_stats: each pool's gauges, published by the worker every 250 ms.
-- At rest nothing is checked out and no one waits (bounded wait for the
-- next publication).
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN (SELECT checked_out = 0 AND total > 0 FROM netrun_pool.pool_stats WHERE name = 'self');
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT name, pool_mode, pool_min, pool_max, max_overflow, checked_out, waiting,
       total BETWEEN 1 AND pool_max AS total_within_limit,
       idle = total AS all_idle, overflow, available = pool_max + max_overflow AS all_available,
       utilization_percent
  FROM netrun_pool.pool_stats;
-- Who sees which pool: usage, or pg_monitor.
SET ROLE caller;
SELECT name FROM netrun_pool.pool_stats;
RESET ROLE;
CREATE ROLE stranger;
SET ROLE stranger;
SELECT count(*) AS pools_a_stranger_sees FROM netrun_pool.pool_stats;
RESET ROLE;
GRANT pg_monitor TO stranger;
SET ROLE stranger;
SELECT name FROM netrun_pool.pool_stats;
RESET ROLE;
DROP ROLE stranger;

-- Clean up.
DROP FUNCTION show_error(text);
SELECT netrun_pool.unregister('self');
DROP ROLE caller;
DROP TABLE items;
