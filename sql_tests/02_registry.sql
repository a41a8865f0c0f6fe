--
-- The registry of remote servers: registering, configuring, grants, the
-- connections view, secrets, and every error a user can cause.
--
-- The temp instance sets netrun_pool.max_pools = 8,
-- netrun_pool.max_connections = 100 and a secret key file.
--
-- Errors show message, detail and hint; not the PL/pgSQL call stack.
\set VERBOSITY default
\set SHOW_CONTEXT never

-- Wait (bounded) until the worker has loaded n connections.
CREATE FUNCTION wait_for_pools(n integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE got integer;
BEGIN
  FOR i IN 1..300 LOOP
    SELECT pools INTO got FROM netrun_pool.worker_status();
    EXIT WHEN got = n;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN got;
END $$;

-- A key=value conninfo, all defaults.
SELECT netrun_pool.register('main_db', 'host=127.0.0.1 port=5432 dbname=app user=app_user');
-- A URI with a password, and every setting named.
SELECT netrun_pool.register('reporting',
    'postgresql://report:s3cret-pw@db.example.com:6543/reports?sslmode=require',
    kind => 'analytics', role => 'replica', cluster => 'reports_cluster',
    region => 'eu-west-1', pool_min => 1, pool_max => 4, max_overflow => 2,
    pool_mode => 'session', acquire_timeout_ms => 500,
    connect_timeout_ms => 2000, statement_timeout_ms => 60000,
    idle_timeout_s => 30, recycle_s => 900, password_required => false,
    enabled => false);
-- SQLAlchemy spellings: the +driver part is dropped.
SELECT netrun_pool.register('from_asyncpg', 'postgresql+asyncpg://app@10.0.0.5/app');
SELECT netrun_pool.register('from_psycopg2', 'postgres+psycopg2://app@10.0.0.6:5433/app');

SELECT name, kind, role, cluster, region, host, port, dbname, "user", sslmode,
       has_password, pool_min, pool_max, max_overflow, pool_mode,
       acquire_timeout_ms, connect_timeout_ms, statement_timeout_ms,
       idle_timeout_s, recycle_s, password_required, enabled,
       created_at = updated_at AS unchanged
  FROM netrun_pool.connections ORDER BY name;

-- The stored conninfo has no password; the secret is ciphertext that does
-- not contain it, and it decrypts with the current key.
SELECT name, conninfo, secret IS NOT NULL AS has_secret,
       position('s3cret' IN conninfo) AS pw_in_conninfo,
       position(convert_to('s3cret-pw', 'UTF8') IN coalesce(secret, '')) AS pw_in_secret
  FROM netrun_pool.registry ORDER BY name;
SELECT * FROM netrun_pool.check_secrets();
-- The view has no column that could hold a secret.
SELECT string_agg(column_name, ', ' ORDER BY ordinal_position)
  FROM information_schema.columns
 WHERE table_schema = 'netrun_pool' AND table_name = 'connections';

-- The worker loads the registry within a second of the commit.
SELECT wait_for_pools(4);

-- configure: NULL means unchanged; updated_at moves.
SELECT netrun_pool.configure('main_db', pool_max => 20, max_overflow => 5, enabled => false);
SELECT name, pool_max, max_overflow, enabled, pool_min, kind,
       updated_at > created_at AS updated
  FROM netrun_pool.connections WHERE name = 'main_db';
-- A new conninfo replaces the old one and its secret.
SELECT netrun_pool.configure('main_db', conninfo => 'host=10.1.1.1 dbname=app user=u password=other-pw');
SELECT host, dbname, "user", has_password FROM netrun_pool.connections WHERE name = 'main_db';

-- A secret is bound to its connection: copied to another row it does not
-- decrypt (AES-GCM associated data is the connection name).
UPDATE netrun_pool.registry SET secret = (SELECT secret FROM netrun_pool.registry WHERE name = 'reporting')
 WHERE name = 'main_db';
SELECT * FROM netrun_pool.check_secrets();
SELECT netrun_pool.configure('main_db', conninfo => 'host=10.1.1.1 dbname=app user=u');

--
-- Bad input: one clear error each.
--
SELECT netrun_pool.register('Main', 'host=x');
SELECT netrun_pool.register('1db', 'host=x');
SELECT netrun_pool.register('', 'host=x');
SELECT netrun_pool.register(NULL, 'host=x');
SELECT netrun_pool.register('db; drop table x', 'host=x');
SELECT netrun_pool.register(repeat('a', 64), 'host=x');
SELECT netrun_pool.register('main_db', 'host=x');
SELECT netrun_pool.register('x', NULL);
SELECT netrun_pool.register('x', 'host=x', kind => 'tiny');
SELECT netrun_pool.register('x', 'host=x', role => 'leader');
SELECT netrun_pool.register('x', 'host=x', pool_mode => 'statement');
SELECT netrun_pool.register('x', 'host=x', pool_min => 5, pool_max => 2);
SELECT netrun_pool.register('x', 'host=x', pool_max => 0);
SELECT netrun_pool.register('x', 'host=x', pool_min => -1);
SELECT netrun_pool.register('x', 'host=x', max_overflow => -1);
SELECT netrun_pool.register('x', 'host=x', acquire_timeout_ms => 0);
SELECT netrun_pool.register('x', 'host=x', connect_timeout_ms => -5);
SELECT netrun_pool.register('x', 'host=x', statement_timeout_ms => -1);
SELECT netrun_pool.register('x', 'host=x', idle_timeout_s => 0);
SELECT netrun_pool.register('x', 'host=x', recycle_s => 0);
SELECT netrun_pool.register('x', 'host=x', cluster => 'Bad Cluster');
SELECT netrun_pool.register('x', 'host=x', cluster => 'main_db');
SELECT netrun_pool.register('reports_cluster', 'host=x');
SELECT netrun_pool.register('x', 'host=x', region => repeat('r', 64));
-- conninfo: unknown keys are named; malformed URIs explained; keys the
-- pool controls are refused.
SELECT netrun_pool.register('x', 'hots=db.example.com');
SELECT netrun_pool.register('x', 'postgresql://h/db?sslmod=require');
SELECT netrun_pool.register('x', 'postgresql://[::1/db');
SELECT netrun_pool.register('x', 'host=x replication=database');
SELECT netrun_pool.register('x', 'host=x application_name=mine');
SELECT netrun_pool.register('x', 'host=x connect_timeout=5');
-- libpq would quote the stray word, which may be a password: redacted.
SELECT netrun_pool.register('x', 'host=x hunter2');
SELECT netrun_pool.register('x', 'postgresql://u:%zz@h/db');
-- Unknown names, everywhere.
SELECT netrun_pool.configure('nope', pool_max => 3);
SELECT netrun_pool.unregister('nope');
SELECT netrun_pool.grant_usage('nope', current_user::regrole);
SELECT netrun_pool.revoke_usage('nope', current_user::regrole);
-- configure checks the merged row.
SELECT netrun_pool.configure('reporting', pool_min => 10);
SELECT netrun_pool.configure('reporting', kind => 'huge');
-- pipeline_depth: 1 (off, the default) to 16.
SELECT netrun_pool.configure('reporting', pipeline_depth => 0);
SELECT netrun_pool.configure('reporting', pipeline_depth => 17);
SELECT netrun_pool.register('deep', 'dbname=x', pipeline_depth => NULL);
-- Nothing above changed the registry.
SELECT count(*) FROM netrun_pool.registry;

--
-- Capacity: shared memory is sized at start; refused at register time.
--
-- Four connections hold 51 remote connections: 60 more do not fit in 100.
SELECT netrun_pool.register('big', 'host=x', pool_max => 60);
SELECT netrun_pool.register('big', 'host=x', pool_max => 40);
SELECT netrun_pool.configure('big', max_overflow => 10);
-- Five registered; three more reach netrun_pool.max_pools = 8.
SELECT netrun_pool.register('p6', 'host=x', pool_max => 1);
SELECT netrun_pool.register('p7', 'host=x', pool_max => 1);
SELECT netrun_pool.register('p8', 'host=x', pool_max => 1);
SELECT netrun_pool.register('p9', 'host=x', pool_max => 1);
SELECT wait_for_pools(8);
-- Room again after an unregister.
SELECT netrun_pool.unregister('big', force => true);
SELECT wait_for_pools(7);
SELECT netrun_pool.register('p9', 'host=x', pool_max => 1);
SELECT netrun_pool.unregister('p9');
SELECT wait_for_pools(7);

--
-- Privileges and grants.
--
CREATE ROLE app_user LOGIN;
CREATE ROLE app_group;
CREATE ROLE member_user LOGIN IN ROLE app_group;
CREATE ROLE settings_reader IN ROLE pg_read_all_settings;
SELECT netrun_pool.grant_usage('main_db', 'app_user');
SELECT netrun_pool.grant_usage('main_db', 'app_user');  -- idempotent
SELECT netrun_pool.grant_usage('reporting', 'app_group');
SELECT netrun_pool.grant_usage('main_db', 'no_such_role');
SELECT name, grantee FROM netrun_pool.usage_grants ORDER BY 1, 2;

SET ROLE app_user;
-- Only superusers change the registry.
SELECT netrun_pool.register('mine', 'host=x');
SELECT netrun_pool.configure('main_db', pool_max => 1);
SELECT netrun_pool.unregister('main_db');
SELECT netrun_pool.grant_usage('reporting', 'app_user');
SELECT netrun_pool.revoke_usage('main_db', 'app_user');
SELECT * FROM netrun_pool.check_secrets();
-- The tables are out of reach; the view shows only usable connections.
SELECT * FROM netrun_pool.registry;
SELECT * FROM netrun_pool.usage_grants;
SELECT name FROM netrun_pool.connections ORDER BY name;
SELECT netrun_pool.has_usage('main_db'), netrun_pool.has_usage('reporting'),
       netrun_pool.has_usage('nope');
-- Even the key file's name is hidden.
SHOW netrun_pool.secret_key_file;
RESET ROLE;

-- Usage through a group role.
SET ROLE member_user;
SELECT name FROM netrun_pool.connections ORDER BY name;
SELECT netrun_pool.has_usage('reporting');
RESET ROLE;

-- pg_read_all_settings members see every connection.
SET ROLE settings_reader;
SELECT name FROM netrun_pool.connections ORDER BY name;
RESET ROLE;

-- A superuser may answer for someone else, as has_table_privilege does.
SELECT netrun_pool.has_usage('main_db', 'app_user'),
       netrun_pool.has_usage('reporting', 'app_user'),
       netrun_pool.has_usage('reporting', 'member_user');

-- EXECUTE granted by mistake still does not open the registry.
GRANT EXECUTE ON FUNCTION netrun_pool.unregister(text, boolean) TO app_user;
GRANT EXECUTE ON FUNCTION netrun_pool._lock_registry() TO app_user;
GRANT EXECUTE ON FUNCTION netrun_pool._begin_registry_change() TO app_user;
SET ROLE app_user;
SELECT netrun_pool.unregister('main_db');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION netrun_pool.unregister(text, boolean) FROM app_user;
REVOKE EXECUTE ON FUNCTION netrun_pool._lock_registry() FROM app_user;
REVOKE EXECUTE ON FUNCTION netrun_pool._begin_registry_change() FROM app_user;

-- Revoking, and unregistering, take the grants away.
SELECT netrun_pool.revoke_usage('main_db', 'app_user');
SELECT netrun_pool.has_usage('main_db', 'app_user');
SELECT netrun_pool.unregister('reporting');
SELECT count(*) FROM netrun_pool.usage_grants;

-- Too many grantees.
DO $$
BEGIN
  FOR i IN 1..32 LOOP
    EXECUTE format('CREATE ROLE grantee_%s', i);
    PERFORM netrun_pool.grant_usage('main_db', format('grantee_%s', i)::regrole);
  END LOOP;
END $$;
SELECT netrun_pool.grant_usage('main_db', 'app_user');
DO $$
BEGIN
  FOR i IN 1..32 LOOP
    PERFORM netrun_pool.revoke_usage('main_db', format('grantee_%s', i)::regrole);
    EXECUTE format('DROP ROLE grantee_%s', i);
  END LOOP;
END $$;

-- The registry lives only in netrun_pool.database.
CREATE DATABASE netrun_elsewhere;
\c netrun_elsewhere
CREATE EXTENSION netrun_pool;
SELECT netrun_pool.register('x', 'host=x');
\c contrib_regression
DROP DATABASE netrun_elsewhere;

-- Clean up.
SELECT netrun_pool.unregister(name) FROM netrun_pool.registry ORDER BY name;
SELECT wait_for_pools(0);
DROP ROLE app_user, member_user, app_group, settings_reader;
DROP FUNCTION wait_for_pools(integer);
