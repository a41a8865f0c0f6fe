--
-- Row-level security checked where the rows live: rls_audit(),
-- rls_status() and verify_rls_enabled() given a connection (or cluster)
-- name run on that remote, through the pool, for the pool's role there.
--
-- The "remote" is this same instance over its Unix socket (as in
-- 03_calls), reached by one connection per role: rr_super logs in as the
-- bootstrap superuser, rr_owner as the tables' owner, rr_app as the
-- application (neither a superuser nor an owner), rr_bypasser as a login
-- role with BYPASSRLS.  So each remote answer can be compared with the
-- local one under SET ROLE: they must be the same.  t/013_remote_rls.pl
-- does it against a separate server without netrun_pool.
--
\set VERBOSITY default
CREATE ROLE rr_owner LOGIN;
CREATE ROLE rr_app LOGIN;
CREATE ROLE rr_bypasser LOGIN BYPASSRLS;
CREATE SCHEMA rr;
GRANT USAGE, CREATE ON SCHEMA rr TO rr_owner;
GRANT USAGE ON SCHEMA rr TO rr_app, rr_bypasser;

-- The mistakes of 05_rls, seeded again, plus a policy on another setting.
SET ROLE rr_owner;
CREATE TABLE rr.no_rls (id int, tenant_id text);
CREATE TABLE rr.no_force (id int, tenant_id text);
ALTER TABLE rr.no_force ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON rr.no_force
  USING (tenant_id = (SELECT netrun_pool.current_tenant()));
CREATE TABLE rr.no_policy (id int, tenant_id text);
ALTER TABLE rr.no_policy ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE TABLE rr.other_policy (id int, tenant_id text, is_public boolean);
ALTER TABLE rr.other_policy ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON rr.other_policy
  USING (tenant_id = (SELECT netrun_pool.current_tenant()));
CREATE POLICY public_rows ON rr.other_policy USING (is_public);
CREATE TABLE rr.mirror (id int, tenant_id text);
ALTER TABLE rr.mirror ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON rr.mirror
  USING (tenant_id = current_setting('app.current_tenant_id', true));
CREATE TABLE rr.other_setting (id int, tenant_id text);
ALTER TABLE rr.other_setting ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON rr.other_setting
  USING (tenant_id = current_setting('app.tenant', true));
CREATE TABLE rr.good (id int, tenant_id text);
SELECT netrun_pool.enable_tenant_rls('rr.good');
CREATE TABLE rr.lookup (code text);
CREATE VIEW rr.good_view AS SELECT * FROM rr.good;
RESET ROLE;

-- Registry changes reach the worker within a moment: wait for its load.
CREATE FUNCTION rr_wait_for_load(before bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..200 LOOP
    EXIT WHEN (SELECT generation FROM netrun_pool.worker_status()) > before;
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;

-- One connection per role; rr_owner and rr_app also make up a cluster.
-- rr_app_t is rr_app again, on a remote whose tenant setting is app.tenant.
-- rr_down points where nothing listens.
SELECT generation AS before FROM netrun_pool.worker_status() \gset
SELECT netrun_pool.register(c.name,
         format('host=%s port=%s dbname=contrib_regression%s',
                current_setting('unix_socket_directories'), current_setting('port'),
                coalesce(' user=' || c.login, '')),
         cluster => c.cluster, tenant_setting => c.setting, pool_max => 1,
         acquire_timeout_ms => 2000)
  FROM (VALUES ('rr_super', NULL, NULL, 'app.current_tenant_id'),
               ('rr_owner', 'rr_owner', 'rr_cluster', 'app.current_tenant_id'),
               ('rr_app', 'rr_app', 'rr_cluster', 'app.current_tenant_id'),
               ('rr_bypasser', 'rr_bypasser', NULL, 'app.current_tenant_id'),
               ('rr_app_t', 'rr_app', NULL, 'app.tenant')) c (name, login, cluster, setting);
SELECT netrun_pool.register('rr_down', 'host=127.0.0.1 port=1 dbname=nowhere',
                            connect_timeout_ms => 500, acquire_timeout_ms => 1000);
SELECT rr_wait_for_load(:before);

-- What the remote says, for each role.  The table findings are those of
-- 05_rls; besides, the remote role is reported when it is a superuser or
-- has BYPASSRLS, and a table is reported when the remote role owns it:
-- without FORCE, RLS does not apply to it; with FORCE, the SQL a caller
-- sends through the pool can still turn RLS off.
SELECT remote, severity, table_name, finding
  FROM netrun_pool.rls_audit(ARRAY['rr'], connection => 'rr_super');
SELECT remote, severity, table_name, finding
  FROM netrun_pool.rls_audit(ARRAY['rr'], connection => 'rr_owner');
SELECT remote, severity, table_name, finding
  FROM netrun_pool.rls_audit(ARRAY['rr'], connection => 'rr_app');
SELECT remote, severity, table_name, finding
  FROM netrun_pool.rls_audit(ARRAY['rr'], connection => 'rr_bypasser');
-- A hint for a remote says what to run there, in plain SQL: the remote
-- need not have netrun_pool.
SELECT table_name, hint
  FROM netrun_pool.rls_audit(ARRAY['rr'], connection => 'rr_owner');
SELECT table_name, hint
  FROM netrun_pool.rls_audit(ARRAY['rr'], connection => 'rr_bypasser') WHERE table_name IS NULL;

-- The same findings as the local audit run as each role.
CREATE TABLE rr_findings (who text, side text, table_name text, severity text, finding text);
GRANT INSERT ON rr_findings TO PUBLIC;
INSERT INTO rr_findings SELECT 'rr_super', 'local', table_name, severity, finding
  FROM netrun_pool.rls_audit(ARRAY['rr']);
SET ROLE rr_owner;
INSERT INTO rr_findings SELECT 'rr_owner', 'local', table_name, severity, finding
  FROM netrun_pool.rls_audit(ARRAY['rr']);
SET ROLE rr_app;
INSERT INTO rr_findings SELECT 'rr_app', 'local', table_name, severity, finding
  FROM netrun_pool.rls_audit(ARRAY['rr']);
SET ROLE rr_bypasser;
INSERT INTO rr_findings SELECT 'rr_bypasser', 'local', table_name, severity, finding
  FROM netrun_pool.rls_audit(ARRAY['rr']);
RESET ROLE;
INSERT INTO rr_findings SELECT c, 'remote', a.table_name, a.severity, a.finding
  FROM unnest(ARRAY['rr_super', 'rr_owner', 'rr_app', 'rr_bypasser']) c,
       netrun_pool.rls_audit(ARRAY['rr'], c) a;
SELECT who, count(*) FILTER (WHERE side = 'local') AS local,
       count(*) FILTER (WHERE side = 'remote') AS remote
  FROM rr_findings GROUP BY who ORDER BY who;
-- Nothing found on one side only (expect no rows).
(SELECT who, table_name, severity, finding FROM rr_findings WHERE side = 'local'
 EXCEPT ALL
 SELECT who, table_name, severity, finding FROM rr_findings WHERE side = 'remote')
UNION ALL
(SELECT who, table_name, severity, finding FROM rr_findings WHERE side = 'remote'
 EXCEPT ALL
 SELECT who, table_name, severity, finding FROM rr_findings WHERE side = 'local');

-- The remote's tenant setting is the connection's tenant_setting: on
-- rr_app_t, where the pool sets app.tenant, the policy on app.tenant is the
-- one that reads the tenant, and the policy on app.current_tenant_id does
-- not (here it is the other way round).
SELECT remote, severity, table_name, finding
  FROM netrun_pool.rls_audit(ARRAY['rr'], connection => 'rr_app_t')
 WHERE table_name IN ('rr.mirror', 'rr.other_setting');
SELECT severity, table_name, finding
  FROM netrun_pool.rls_audit(ARRAY['rr'])
 WHERE table_name IN ('rr.mirror', 'rr.other_setting');

-- rls_status() and verify_rls_enabled() on a remote take the table as
-- text, looked up there; the answer also names the connection and the
-- role it is for.  Each role's answer matches the local one.
SELECT netrun_pool.rls_status('rr.no_force', 'rr_owner');
SELECT netrun_pool.rls_status('rr.no_force', connection => 'rr_app');
CREATE FUNCTION rr_status(who text) RETURNS TABLE (tbl text, verified boolean, uses_tenant boolean, reason text)
LANGUAGE sql AS $$
  SELECT t, netrun_pool.verify_rls_enabled(t, who),
         (netrun_pool.rls_status(t, who) ->> 'uses_tenant')::boolean,
         netrun_pool.rls_status(t, who) ->> 'reason'
    FROM unnest('{rr.no_rls, rr.no_force, rr.no_policy, rr.other_policy, rr.mirror,
                  rr.other_setting, rr.good}'::text[]) t
$$;
CREATE FUNCTION rr_local_status() RETURNS TABLE (tbl text, verified boolean, uses_tenant boolean, reason text)
LANGUAGE sql AS $$
  SELECT t, netrun_pool.verify_rls_enabled(t::regclass),
         (netrun_pool.rls_status(t::regclass) ->> 'uses_tenant')::boolean,
         netrun_pool.rls_status(t::regclass) ->> 'reason'
    FROM unnest('{rr.no_rls, rr.no_force, rr.no_policy, rr.other_policy, rr.mirror,
                  rr.other_setting, rr.good}'::text[]) t
$$;
SELECT * FROM rr_status('rr_super');
SELECT * FROM rr_status('rr_owner');
SELECT * FROM rr_status('rr_app');
SELECT * FROM rr_status('rr_bypasser');
-- rr.other_setting reads the tenant on rr_app_t only.
SELECT tbl, uses_tenant FROM rr_status('rr_app_t')
 WHERE tbl IN ('rr.mirror', 'rr.other_setting');
-- The local answers, as each role: the same (expect no rows).
CREATE TABLE rr_status_local (who text, tbl text, verified boolean, uses_tenant boolean, reason text);
GRANT INSERT ON rr_status_local TO PUBLIC;
INSERT INTO rr_status_local SELECT 'rr_super', * FROM rr_local_status();
SET ROLE rr_owner;
INSERT INTO rr_status_local SELECT 'rr_owner', * FROM rr_local_status();
SET ROLE rr_app;
INSERT INTO rr_status_local SELECT 'rr_app', * FROM rr_local_status();
SET ROLE rr_bypasser;
INSERT INTO rr_status_local SELECT 'rr_bypasser', * FROM rr_local_status();
RESET ROLE;
SELECT who, count(*) AS tables FROM rr_status_local GROUP BY who ORDER BY who;
(SELECT * FROM rr_status_local
 EXCEPT ALL
 SELECT c, s.* FROM unnest(ARRAY['rr_super', 'rr_owner', 'rr_app', 'rr_bypasser']) c, rr_status(c) s)
UNION ALL
(SELECT c, s.* FROM unnest(ARRAY['rr_super', 'rr_owner', 'rr_app', 'rr_bypasser']) c, rr_status(c) s
 EXCEPT ALL
 SELECT * FROM rr_status_local);

-- A cluster name: every member is asked.  The audit says which member
-- each finding is from; rls_status() answers for the first member (by
-- name) where RLS does not protect the rows, and verify_rls_enabled() is
-- true only if it is true on every member.
SELECT remote, severity, table_name, finding
  FROM netrun_pool.rls_audit(ARRAY['rr'], 'rr_cluster')
 WHERE table_name IN ('rr.no_force', 'rr.good');
SELECT netrun_pool.rls_status('rr.no_force', 'rr_cluster') ->> 'connection' AS weakest,
       netrun_pool.verify_rls_enabled('rr.no_force', 'rr_cluster') AS verified;
SELECT netrun_pool.rls_status('rr.good', 'rr_cluster') ->> 'connection' AS first,
       netrun_pool.verify_rls_enabled('rr.good', 'rr_cluster') AS verified;

-- The text form with no connection is the local check, the name looked up
-- in the caller's search_path, as regclass would be.  On a remote, the
-- name is looked up in the search_path of the connection's role there.
SET search_path = rr, public;
SELECT netrun_pool.rls_status('good', NULL) ->> 'table' AS local_table,
       netrun_pool.verify_rls_enabled('good', NULL) AS local_verified;
SELECT netrun_pool.rls_status('good', 'rr_app');
RESET search_path;
-- NULL in, NULL out; a schema that does not exist has no findings.
SELECT netrun_pool.rls_status(NULL, 'rr_app') IS NULL AS status_null,
       netrun_pool.verify_rls_enabled(NULL, 'rr_app') IS NULL AS verify_null;
SELECT count(*) AS findings
  FROM netrun_pool.rls_audit(ARRAY['rr_no_such_schema'], 'rr_app') WHERE table_name IS NOT NULL;

--
-- Errors.  A remote check is a pooled call, and fails as one: an unknown
-- connection (42704), no usage (42501), the password rule, a remote that
-- is down (class 08).  A table the remote does not have is 42P01; a view
-- is not a table (42809).
--
CREATE FUNCTION rr_error(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE state text; msg text; detail text; hint text;
BEGIN
  EXECUTE sql;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
      detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
  RETURN format('%s: %s | detail: %s | hint: %s', state, msg, nullif(detail, ''), nullif(hint, ''));
END $$;
SELECT rr_error($$SELECT netrun_pool.rls_status('rr.no_such_table', 'rr_app')$$);
SELECT rr_error($$SELECT netrun_pool.verify_rls_enabled('rr.no_such_table', 'rr_cluster')$$);
SELECT rr_error($$SELECT netrun_pool.rls_status('rr.good_view', 'rr_app')$$);
SELECT rr_error($$SELECT netrun_pool.rls_status('no_such_table', NULL)$$);
SELECT rr_error($$SELECT * FROM netrun_pool.rls_audit(connection => 'rr_nope')$$);
SELECT rr_error($$SELECT netrun_pool.rls_status('rr.good', 'rr_nope')$$);
SELECT rr_error($$SELECT netrun_pool.rls_status('rr.good', repeat('x', 100))$$);
-- Callers need usage on the connection, or on a member of the cluster.
SET ROLE rr_app;
SELECT rr_error($$SELECT * FROM netrun_pool.rls_audit(connection => 'rr_app')$$);
SELECT rr_error($$SELECT netrun_pool.verify_rls_enabled('rr.good', 'rr_cluster')$$);
RESET ROLE;
-- With usage, the password rule applies as to any call (CVE-2007-3278).
SELECT generation AS before FROM netrun_pool.worker_status() \gset
SELECT netrun_pool.grant_usage('rr_app', 'rr_app');
SELECT rr_wait_for_load(:before);
SET ROLE rr_app;
SELECT rr_error($$SELECT netrun_pool.verify_rls_enabled('rr.good', 'rr_app')$$);
RESET ROLE;
-- Waived by a superuser, the application may check its own remote; the
-- answer is for the pool's role there, whoever asks.
SELECT generation AS before FROM netrun_pool.worker_status() \gset
SELECT netrun_pool.configure('rr_app', password_required => false);
SELECT rr_wait_for_load(:before);
SET ROLE rr_app;
SELECT netrun_pool.rls_status('rr.no_force', 'rr_app') ->> 'role' AS remote_role,
       netrun_pool.verify_rls_enabled('rr.no_force', 'rr_app') AS verified;
-- The cluster: only the members the caller may use are asked.
SELECT DISTINCT remote FROM netrun_pool.rls_audit(ARRAY['rr'], 'rr_cluster');
RESET ROLE;
-- A remote that is down: its call fails (08001 while it is tried, 08004
-- once its circuit is open), and so does the check.
DO $$
BEGIN
  PERFORM netrun_pool.rls_audit(connection => 'rr_down');
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'class %, names the connection: %', left(SQLSTATE, 2), SQLERRM LIKE '%"rr_down"%';
END $$;

-- Clean up.
DROP FUNCTION rr_wait_for_load(bigint), rr_error(text), rr_status(text), rr_local_status();
DROP TABLE rr_findings, rr_status_local;
SELECT netrun_pool.unregister(name) FROM netrun_pool.registry WHERE name LIKE 'rr\_%' ORDER BY name;
SET client_min_messages = warning;
DROP SCHEMA rr CASCADE;
RESET client_min_messages;
DROP ROLE rr_owner, rr_app, rr_bypasser;
