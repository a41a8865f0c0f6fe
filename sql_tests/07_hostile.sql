--
-- Hostile input: values built to hurt, and the exact answer to each.
-- (02_registry and 03_calls show the everyday mistakes; t/010_hostile.pl
-- throws generated ones by the thousand.)
--
-- A message quotes at most the first 64 characters of a value it refuses,
-- then "...": a 1 MB name is never echoed back in full.
--
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT netrun_pool.register('self',
    format('host=%s port=%s dbname=contrib_regression',
           current_setting('unix_socket_directories'), current_setting('port')),
    pool_max => 2, acquire_timeout_ms => 5000);
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    EXIT WHEN (SELECT pools FROM netrun_pool.worker_status()) = 1;
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;

--
-- 1 MB values: refused with the value clipped.
--
SELECT netrun_pool.register(repeat('n', 1000000), 'host=x');
SELECT netrun_pool.configure(repeat('n', 1000000), pool_max => 1);
SELECT netrun_pool.unregister(repeat('é', 100000));
SELECT netrun_pool.fetchval(repeat('n', 1000000), 'SELECT 1');
SELECT netrun_pool.health_check(repeat('n', 1000000));
SELECT netrun_pool.register('x', 'host=x', kind => repeat('k', 1000000));
SELECT netrun_pool.register('x', 'host=x', cluster => repeat('c', 1000000));
SELECT netrun_pool.register('x', 'host=x', tenant_setting => repeat('s', 1000000));
SELECT netrun_pool.tenant_schema(repeat('t', 1000000));
SELECT netrun_pool.tenant_schema(repeat('t', 200));
SELECT netrun_pool.unroute_tenant(repeat('t', 1000000));
-- 64 characters are quoted whole; multibyte characters are never split.
SELECT netrun_pool.fetchval(repeat('é', 64), 'SELECT 1');
SELECT netrun_pool.fetchval(repeat('é', 65), 'SELECT 1');
-- A 1 MB conninfo: libpq's reason, with the value left out.
SELECT netrun_pool.register('x', repeat('h', 1000000));
SELECT netrun_pool.register('x', 'host=x ' || repeat('h', 1000000));

--
-- Names that are nearly names: never folded, trimmed, unquoted or run.
--
SELECT netrun_pool.fetchval('SELF', 'SELECT 1');
SELECT netrun_pool.fetchval('self ', 'SELECT 1');
SELECT netrun_pool.fetchval('"self"', 'SELECT 1');
SELECT netrun_pool.fetchval('self''; DROP TABLE x; --', 'SELECT 1');
SELECT netrun_pool.fetchval(E'self\n', 'SELECT 1');
SELECT netrun_pool.fetchval('%s%s%n', 'SELECT 1');
SELECT netrun_pool.fetchval('', 'SELECT 1');
SELECT netrun_pool.register('self"; DROP TABLE x; --', 'host=x');
SELECT netrun_pool.register(E'tab\there', 'host=x');
SELECT netrun_pool.register('x', 'host=x', cluster => 'c; DROP TABLE x');

-- release() of a name one byte longer than a connection's 63 must not
-- release that connection's session (it used to be cut to 63 bytes).
SELECT netrun_pool.register(repeat('l', 63),
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
SELECT netrun_pool.exec(repeat('l', 63), 'SET application_name = ''kept''');
SELECT netrun_pool.release(repeat('l', 63) || 'x');
SELECT netrun_pool.fetchval(repeat('l', 63), 'SHOW application_name') AS same_session;
SELECT netrun_pool.release(repeat('l', 63));
SELECT netrun_pool.unregister(repeat('l', 63));

--
-- register() takes no NULL setting (it used to fail on the table's NOT
-- NULL constraint, or as "must be greater than zero").
--
SELECT netrun_pool.register('x', 'host=x', pool_max => NULL);
SELECT netrun_pool.register('x', 'host=x', password_required => NULL);
SELECT netrun_pool.register('x', 'host=x', kind => NULL);
SELECT netrun_pool.register('x', 'host=x', tenant_setting => NULL);
-- The sum of pool_max and max_overflow does not overflow (it used to be
-- "integer out of range").
SELECT netrun_pool.register('x', 'host=x', pool_max => 2147483647, max_overflow => 1);
-- configure() reads NULL as "unchanged".
SELECT netrun_pool.configure('self', pool_max => NULL, kind => NULL);
SELECT pool_max, kind FROM netrun_pool.connections WHERE name = 'self';

--
-- Parameters.
--
-- 1 MB in one parameter, and back.
SELECT netrun_pool.fetchval('self', 'SELECT length($1)', ARRAY[repeat('p', 1000000)]);
-- An array whose subscripts start at 0 is still $1, $2 in order.
SELECT netrun_pool.fetchval('self', 'SELECT $1 || $2', '[0:1]={a,b}'::text[]);
SELECT netrun_pool.fetchval('self', 'SELECT 1', ARRAY[]::text[]);
-- 10,000 parameters travel and add up; 65,536 is one too many.
SELECT netrun_pool.fetchval('self',
    (SELECT 'SELECT sum(x) FROM unnest(ARRAY[' || string_agg('$' || i, ', ') || ']::int[]) x'
       FROM generate_series(1, 10000) i),
    (SELECT array_agg(i::text) FROM generate_series(1, 10000) i));
SELECT netrun_pool.fetchval('self', 'SELECT 1', array_fill('1'::text, ARRAY[65536]));

--
-- Column definition lists that do not match (03_calls has one too many
-- remote columns, and text read as int).
--
SELECT * FROM netrun_pool.query('self', 'SELECT 1') AS t(a int, b int);
SELECT * FROM netrun_pool.query('self', 'SELECT ''2026-01-01''::date') AS t(a int);
SELECT * FROM netrun_pool.query('self', 'SELECT 1') AS t(a date);
SELECT * FROM netrun_pool.query('self', 'SELECT 1, 2') AS t(a text, b netrun_no_such_type);

--
-- SQL: 1 MB of it, and two statements in one (the extended protocol
-- takes one).
--
SELECT length(netrun_pool.fetchval('self', 'SELECT ''' || repeat('x', 1000000) || ''''));
SELECT netrun_pool.fetchval('self', 'SELECT 1; SELECT 2');

-- After all that the connection still serves, and nothing is held.
SELECT netrun_pool.fetchval('self', 'SELECT ''still serving''');
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN (SELECT checked_out = 0 AND waiting = 0 FROM netrun_pool.pool_stats WHERE name = 'self');
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT checked_out, waiting FROM netrun_pool.pool_stats WHERE name = 'self';

SELECT netrun_pool.unregister('self');
