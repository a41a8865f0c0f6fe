--
-- The first minutes: errors that say what to do, and test().
-- (The instance calls itself over its socket.)
--

-- A call inside the very transaction that registers the connection: the
-- worker cannot see it yet, and the message says to commit first.
BEGIN;
SELECT netrun_pool.register('fm_early',
    format('host=%s port=%s dbname=contrib_regression',
           current_setting('unix_socket_directories'), current_setting('port')));
SELECT netrun_pool.fetchval('fm_early', 'SELECT 1');
ROLLBACK;

-- Registered and committed: the next call works at once (it waits for the
-- worker to load the change, if it has not yet).
SELECT netrun_pool.register('fm_self',
    format('host=%s port=%s dbname=contrib_regression',
           current_setting('unix_socket_directories'), current_setting('port')),
    tenant_guard => 'off');
SELECT netrun_pool.fetchval('fm_self', 'SELECT 1') AS right_after_register;

-- A name that is nearly a registered one: the hint suggests it.
SELECT netrun_pool.fetchval('fm_slef', 'SELECT 1');
-- A name that is nothing like one: the hint says where to look.
SELECT netrun_pool.fetchval('zzzzzzzz', 'SELECT 1');

-- No usage: the hint is the exact grant a superuser would run.
CREATE ROLE fm_app;
SET ROLE fm_app;
SELECT netrun_pool.fetchval('fm_self', 'SELECT 1');
-- ... and a role that sees nothing is not told "healthy".
SELECT netrun_pool.health_check() - 'timestamp' AS sees_nothing;
-- nor is a name it may not use suggested to it
SELECT netrun_pool.fetchval('fm_slef', 'SELECT 1');
RESET ROLE;

-- A remote syntax error keeps its position: psql shows where.
SELECT netrun_pool.fetchval('fm_self', 'SELECT 1 FROM pg_class WHER relname = ''x''');

-- A value that does not convert names its column, here and on the remote.
SELECT * FROM netrun_pool.query('fm_self', 'SELECT 1 AS a, ''not a number'' AS b')
    AS t(first int, second int);

-- A tenant-carrying call whose remote policy cannot read the tenant
-- (here a cast, as a uuid policy would do) names the tenant it carried.
SELECT netrun_pool.set_tenant('acme');
SELECT netrun_pool.fetchval('fm_self',
    'SELECT current_setting(''app.current_tenant_id'')::uuid');
SELECT netrun_pool.clear_tenant();

-- test(): one call through the pool, and what it found.
SELECT (netrun_pool.test('fm_self') - 'server_version' - 'user') AS works;
SELECT netrun_pool.register('fm_down', 'host=127.0.0.1 port=1 dbname=x', tenant_guard => 'off');
SELECT netrun_pool.test('fm_down') - 'detail' AS refused;
SELECT netrun_pool.test('fm_nope');

-- Clean up.
SELECT netrun_pool.unregister('fm_self');
SELECT netrun_pool.unregister('fm_down');
DROP ROLE fm_app;
