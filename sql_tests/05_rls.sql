--
-- Row-level security that does what it says, and tenant routing:
-- rls_status() and verify_rls_enabled() answering for the current role,
-- rls_audit() finding every seeded mistake, enable_tenant_rls() and its
-- policy at work, the enforce_rls event trigger, and route_tenant(),
-- tenant_connection() and unroute_tenant().
--
-- rls_owner owns the tables, and rls_owner_member, a member of it, owns
-- them too; rls_app is the application, neither a superuser nor an owner;
-- rls_bypasser is a login role with BYPASSRLS.  This session is a
-- superuser.
--
\set VERBOSITY default
CREATE ROLE rls_owner;
CREATE ROLE rls_owner_member IN ROLE rls_owner;
CREATE ROLE rls_app LOGIN;
CREATE ROLE rls_bypasser LOGIN BYPASSRLS;
CREATE SCHEMA rls_demo;
GRANT USAGE, CREATE ON SCHEMA rls_demo TO rls_owner;
GRANT USAGE ON SCHEMA rls_demo TO rls_app, rls_bypasser;

-- Tables with a tenant_id column, owned by rls_owner, each with one of the
-- usual mistakes.
SET ROLE rls_owner;
-- No row-level security at all.
CREATE TABLE rls_demo.no_rls (id int, tenant_id text);
-- A tenant policy, but not FORCEd: the owner bypasses it.
CREATE TABLE rls_demo.no_force (id int, tenant_id text);
ALTER TABLE rls_demo.no_force ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON rls_demo.no_force
  USING (tenant_id = (SELECT netrun_pool.current_tenant()));
-- FORCEd, but no policy: every row is hidden.
CREATE TABLE rls_demo.no_policy (id int, tenant_id text);
ALTER TABLE rls_demo.no_policy ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
-- A permissive policy that ignores the tenant: it is ORed with the tenant
-- policy, so every tenant sees the public rows of every other.  The
-- restrictive policy ignores the tenant too, but can only narrow what a
-- tenant sees: it is not reported.
CREATE TABLE rls_demo.other_policy (id int, tenant_id text, is_public boolean, deleted boolean);
ALTER TABLE rls_demo.other_policy ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON rls_demo.other_policy
  USING (tenant_id = (SELECT netrun_pool.current_tenant()));
CREATE POLICY public_rows ON rls_demo.other_policy USING (is_public);
CREATE POLICY live_rows ON rls_demo.other_policy AS RESTRICTIVE USING (NOT deleted);
-- A policy on the mirror setting, which any SQL can SET.
CREATE TABLE rls_demo.mirror (id int, tenant_id uuid);
ALTER TABLE rls_demo.mirror ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON rls_demo.mirror
  USING (tenant_id = current_setting('app.current_tenant_id', true)::uuid);
-- Set up right, by enable_tenant_rls(): nothing to report.
CREATE TABLE rls_demo.good (id int, tenant_id text);
SELECT netrun_pool.enable_tenant_rls('rls_demo.good');
-- No tenant column and no RLS: not a tenant table, nothing to report.
CREATE TABLE rls_demo.lookup (code text);
CREATE VIEW rls_demo.good_view AS SELECT * FROM rls_demo.good;
RESET ROLE;

-- rls_audit() finds every mistake, most serious first.  Role findings
-- have no table: this session is a superuser, and rls_bypasser has
-- BYPASSRLS.
SELECT severity, table_name, finding
  FROM netrun_pool.rls_audit(ARRAY['rls_demo']);
-- Each finding says how to fix it.
SELECT table_name, hint
  FROM netrun_pool.rls_audit(ARRAY['rls_demo']);
-- The application role is no superuser: only rls_bypasser is left among
-- the role findings.
SET ROLE rls_app;
SELECT severity, table_name, finding
  FROM netrun_pool.rls_audit(ARRAY['rls_demo']) WHERE table_name IS NULL;
RESET ROLE;
-- Without schemas, every schema but the system ones and netrun_pool's.
SELECT count(*) AS in_rls_demo
  FROM netrun_pool.rls_audit() WHERE table_name LIKE 'rls\_demo.%';
-- (With "tenant" as the tenant column, netrun_pool.tenant_routes would be
-- reported: it is, only when its schema is asked for.)
SET netrun_pool.tenant_column = 'tenant';
SELECT (SELECT count(*) FROM netrun_pool.rls_audit()
         WHERE table_name LIKE 'netrun\_pool.%') AS by_default,
       (SELECT count(*) FROM netrun_pool.rls_audit(ARRAY['netrun_pool'])
         WHERE table_name LIKE 'netrun\_pool.%') AS asked_for;
RESET netrun_pool.tenant_column;

-- rls_status() tells whether RLS protects a table's rows from the current
-- role, and why; verify_rls_enabled() is its yes or no.  Neither is
-- SECURITY DEFINER: they answer for the role that calls them.  The forms
-- that take a connection ask a remote through the pool (08_remote_rls),
-- so they are volatile.
SELECT proname, pg_get_function_arguments(oid) AS arguments,
       prosecdef, provolatile, proisstrict FROM pg_proc
 WHERE pronamespace = 'netrun_pool'::regnamespace
   AND proname IN ('rls_status', 'verify_rls_enabled', 'rls_audit')
 ORDER BY proname, arguments;
SELECT netrun_pool.rls_status('rls_demo.good');
CREATE FUNCTION rls_check() RETURNS TABLE (tbl text, verified boolean, uses_tenant boolean, reason text)
LANGUAGE sql AS $$
  SELECT t::text, netrun_pool.verify_rls_enabled(t),
         (netrun_pool.rls_status(t) ->> 'uses_tenant')::boolean,
         netrun_pool.rls_status(t) ->> 'reason'
    FROM unnest('{rls_demo.no_rls, rls_demo.no_force, rls_demo.no_policy,
                  rls_demo.other_policy, rls_demo.mirror, rls_demo.good}'::regclass[]) t
$$;
-- A superuser: RLS never applies to it.
SELECT * FROM rls_check();
-- The owner: bypasses RLS where it is not FORCEd.
SET ROLE rls_owner;
SELECT * FROM rls_check();
-- A member of the owning role is an owner too.
SET ROLE rls_owner_member;
SELECT * FROM rls_check();
-- The application role: protected wherever a policy exists.
SET ROLE rls_app;
SELECT * FROM rls_check();
-- A role with BYPASSRLS.
SET ROLE rls_bypasser;
SELECT * FROM rls_check();
RESET ROLE;
-- Only tables have row-level security; NULL in, NULL out.
SELECT netrun_pool.rls_status('rls_demo.good_view');
SELECT netrun_pool.verify_rls_enabled('rls_demo.good_view');
SELECT netrun_pool.rls_status(NULL) IS NULL AS status_null,
       netrun_pool.verify_rls_enabled(NULL) IS NULL AS verify_null;

-- enable_tenant_rls() enables and FORCEs RLS and writes one policy on
-- (SELECT netrun_pool.current_tenant()), cast to the column's type.
-- Called twice, it still leaves one policy.
SET ROLE rls_owner;
SELECT netrun_pool.enable_tenant_rls('rls_demo.no_rls');
SELECT netrun_pool.enable_tenant_rls('rls_demo.no_rls');
SELECT netrun_pool.enable_tenant_rls('rls_demo.mirror');
RESET ROLE;
SELECT c.relname, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
       p.policyname, p.permissive, p.roles, p.cmd, p.qual, p.with_check
  FROM pg_class c JOIN pg_policies p ON p.schemaname = 'rls_demo' AND p.tablename = c.relname
 WHERE c.oid IN ('rls_demo.no_rls'::regclass, 'rls_demo.mirror'::regclass)
 ORDER BY c.relname, p.policyname;
-- The older policy on the mirror is left alone, and is still reported.
SELECT severity, table_name, finding
  FROM netrun_pool.rls_audit(ARRAY['rls_demo']) WHERE table_name = 'rls_demo.mirror';
-- force => false does not FORCE (nor unFORCE) the table.
SET ROLE rls_owner;
CREATE TABLE rls_demo.soft (id int, tenant_id text);
SELECT netrun_pool.enable_tenant_rls('rls_demo.soft', force => false);
SELECT netrun_pool.enable_tenant_rls('rls_demo.no_policy', force => false);
RESET ROLE;
SELECT relname, relrowsecurity AS enabled, relforcerowsecurity AS forced
  FROM pg_class WHERE oid IN ('rls_demo.soft'::regclass, 'rls_demo.no_policy'::regclass)
 ORDER BY relname;
-- Another tenant column: netrun_pool.tenant_column, or the argument.  The
-- tenant is cast to the column's type, but never to a string type with a
-- length (varchar(36) would truncate a longer tenant into another's id):
-- string columns are compared as text.
SET ROLE rls_owner;
CREATE TABLE rls_demo.orgs (id int, org_id bigint);
RESET ROLE;
SET netrun_pool.tenant_column = 'org_id';
SELECT severity, table_name, finding
  FROM netrun_pool.rls_audit(ARRAY['rls_demo']) WHERE table_name = 'rls_demo.orgs';
SET ROLE rls_owner;
SELECT netrun_pool.enable_tenant_rls('rls_demo.orgs');
RESET ROLE;
RESET netrun_pool.tenant_column;
SET ROLE rls_owner;
CREATE TABLE rls_demo.accounts (id int, account_tenant varchar(36));
SELECT netrun_pool.enable_tenant_rls('rls_demo.accounts', 'account_tenant');
RESET ROLE;
SELECT tablename, qual FROM pg_policies
 WHERE schemaname = 'rls_demo' AND tablename IN ('orgs', 'accounts') ORDER BY tablename;
-- Errors: no such column (42703), not a table (42809), not the owner
-- (42501, from ALTER TABLE), no table (22004).
SELECT netrun_pool.enable_tenant_rls('rls_demo.lookup');
\echo :LAST_ERROR_SQLSTATE
SELECT netrun_pool.enable_tenant_rls('rls_demo.good', 'no_such_column');
SELECT netrun_pool.enable_tenant_rls('rls_demo.good_view');
\echo :LAST_ERROR_SQLSTATE
SET ROLE rls_app;
SELECT netrun_pool.enable_tenant_rls('rls_demo.no_force');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT netrun_pool.enable_tenant_rls(NULL);
\echo :LAST_ERROR_SQLSTATE
-- What is left for the audit.
SELECT severity, table_name, finding
  FROM netrun_pool.rls_audit(ARRAY['rls_demo']);

-- The policy at work: a superuser's table with two tenants' rows, read
-- and written by the application role.
CREATE TABLE rls_demo.docs (id int, tenant_id text, body text);
INSERT INTO rls_demo.docs VALUES (1, 'acme', 'a1'), (2, 'acme', 'a2'), (3, 'globex', 'g1');
SELECT netrun_pool.enable_tenant_rls('rls_demo.docs');
GRANT SELECT, INSERT ON rls_demo.docs TO rls_app;
SET ROLE rls_app;
SELECT netrun_pool.verify_rls_enabled('rls_demo.docs');
-- Each tenant sees its own rows.
SELECT netrun_pool.set_tenant('acme');
SELECT id, tenant_id, body FROM rls_demo.docs ORDER BY id;
SELECT netrun_pool.set_tenant('globex');
SELECT id, tenant_id, body FROM rls_demo.docs ORDER BY id;
-- It may add rows of its own tenant, not of another.
INSERT INTO rls_demo.docs VALUES (4, 'globex', 'g2');
INSERT INTO rls_demo.docs VALUES (5, 'acme', 'forged');
\echo :LAST_ERROR_SQLSTATE
-- The tenant is an InitPlan: computed once per query, not once per row.
EXPLAIN (COSTS OFF) SELECT * FROM rls_demo.docs;
-- No tenant, no rows, and nothing can be added (fail closed).
SELECT netrun_pool.clear_tenant();
SELECT count(*) AS rows_without_tenant FROM rls_demo.docs;
INSERT INTO rls_demo.docs VALUES (6, 'acme', 'no tenant');
RESET ROLE;
-- The superuser bypasses it and sees every row.
SELECT id, tenant_id, body FROM rls_demo.docs ORDER BY id;

-- netrun_pool.enforce_rls is an event trigger at the end of these
-- commands.
SELECT evtname, evtevent, evttags, evtenabled FROM pg_event_trigger
 WHERE evtname = 'netrun_pool_enforce_rls';
-- off (the default): nothing is said.
CREATE TABLE rls_demo.e_off (id int, tenant_id text);
-- warn: a warning as the statement's transaction ends; the table stays.
SET netrun_pool.enforce_rls = warn;
CREATE TABLE rls_demo.e_warn (id int, tenant_id text);
SELECT to_regclass('rls_demo.e_warn') IS NOT NULL AS created;
-- error: a careless CREATE TABLE fails and is rolled back (55000).
SET netrun_pool.enforce_rls = error;
CREATE TABLE rls_demo.e_error (id int, tenant_id text);
\echo :LAST_ERROR_SQLSTATE
SELECT to_regclass('rls_demo.e_error') IS NULL AS not_created;
-- CREATE TABLE AS and SELECT INTO too.
CREATE TABLE rls_demo.e_as AS SELECT 1 AS id, 'acme'::text AS tenant_id;
SELECT 1 AS id, 'acme'::text AS tenant_id INTO rls_demo.e_into;
-- ALTER TABLE of a tenant table without RLS, whatever it changes; and
-- disabling RLS on one.
ALTER TABLE rls_demo.e_off ADD COLUMN note text;
ALTER TABLE rls_demo.docs DISABLE ROW LEVEL SECURITY;
SELECT relrowsecurity FROM pg_class WHERE oid = 'rls_demo.docs'::regclass;
-- The check runs at the end of the transaction, so creating the table and
-- enabling RLS in one transaction passes ...
BEGIN;
CREATE TABLE rls_demo.e_tx (id int, tenant_id text);
CREATE INDEX ON rls_demo.e_tx (tenant_id);
SELECT netrun_pool.enable_tenant_rls('rls_demo.e_tx');
COMMIT;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'rls_demo.e_tx'::regclass;
-- ... and a transaction that forgets fails at COMMIT, once per table.
BEGIN;
CREATE TABLE rls_demo.e_forgot (id int, tenant_id text);
ALTER TABLE rls_demo.e_forgot ADD COLUMN note text;
COMMIT;
SELECT to_regclass('rls_demo.e_forgot') IS NULL AS not_created;
-- A partitioned table and its partitions each need their own RLS: a
-- query on a partition does not apply the parent's policies.
BEGIN;
CREATE TABLE rls_demo.e_parted (id int, tenant_id text) PARTITION BY LIST (tenant_id);
SELECT netrun_pool.enable_tenant_rls('rls_demo.e_parted');
CREATE TABLE rls_demo.e_parted_acme PARTITION OF rls_demo.e_parted FOR VALUES IN ('acme');
SELECT netrun_pool.enable_tenant_rls('rls_demo.e_parted_acme');
COMMIT;
CREATE TABLE rls_demo.e_parted_globex PARTITION OF rls_demo.e_parted FOR VALUES IN ('globex');
-- Tables without the tenant column, and temporary tables, pass.
CREATE TABLE rls_demo.e_plain (id int);
CREATE TEMP TABLE e_temp (id int, tenant_id text);
DROP TABLE e_temp;
-- A column added to a table that already has RLS passes.
ALTER TABLE rls_demo.lookup ENABLE ROW LEVEL SECURITY;
ALTER TABLE rls_demo.lookup ADD COLUMN tenant_id text;
-- Other roles are held to it, and cannot change it.
SET ROLE rls_owner;
CREATE TABLE rls_demo.e_owner (id int, tenant_id text);
SET netrun_pool.enforce_rls = off;
RESET ROLE;
-- A superuser may switch it off for one transaction.
BEGIN;
SET LOCAL netrun_pool.enforce_rls = off;
CREATE TABLE rls_demo.e_legacy (id int, tenant_id text);
COMMIT;
SELECT to_regclass('rls_demo.e_legacy') IS NOT NULL AS created;
RESET netrun_pool.enforce_rls;

-- Tenant routing.  Two connections (never used here, so they need no
-- server).
SELECT netrun_pool.register('rls_east', 'host=127.0.0.1 port=1 dbname=east', pool_max => 1);
SELECT netrun_pool.register('rls_west', 'host=127.0.0.1 port=1 dbname=west', pool_max => 1);
SELECT netrun_pool.route_tenant('acme', 'rls_east');
SELECT netrun_pool.route_tenant('globex', 'rls_west');
-- Routing a routed tenant again moves it.
SELECT netrun_pool.route_tenant('acme', 'rls_west');
SELECT tenant, connection FROM netrun_pool.tenant_routes ORDER BY tenant;
-- A tenant with no route has no connection, unless there is a default.
SELECT netrun_pool.tenant_connection('acme') AS acme,
       netrun_pool.tenant_connection('initech') IS NULL AS initech_none;
SET netrun_pool.default_tenant_connection = 'rls_east';
SELECT netrun_pool.tenant_connection('initech') AS initech;
-- Any role may ask, by default for the current tenant; only superusers
-- may read or change the routes and the default.
SET ROLE rls_app;
SELECT netrun_pool.set_tenant('globex');
SELECT netrun_pool.tenant_connection() AS current_tenant;
SELECT netrun_pool.clear_tenant();
SELECT netrun_pool.tenant_connection() AS no_tenant;
SELECT * FROM netrun_pool.tenant_routes;
SELECT netrun_pool.route_tenant('initech', 'rls_west');
SELECT netrun_pool.unroute_tenant('acme');
SET netrun_pool.default_tenant_connection = 'rls_west';
RESET ROLE;
-- Errors: an unknown connection (42704), a missing tenant or connection
-- (22004), an empty tenant (22023).
SELECT netrun_pool.route_tenant('acme', 'nope');
\echo :LAST_ERROR_SQLSTATE
SELECT netrun_pool.route_tenant(NULL, 'rls_east');
\echo :LAST_ERROR_SQLSTATE
SELECT netrun_pool.route_tenant('acme', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT netrun_pool.route_tenant('', 'rls_east');
\echo :LAST_ERROR_SQLSTATE
-- Under tenant_id_format = uuid, tenants are stored and looked up as
-- set_tenant() returns them: lower case.
SET netrun_pool.tenant_id_format = 'uuid';
SELECT netrun_pool.route_tenant('6F1C1F4E-8A1B-4C2D-9E3F-0A1B2C3D4E5F', 'rls_east');
SELECT netrun_pool.tenant_connection('6f1c1f4e-8a1b-4c2d-9e3f-0a1b2c3d4e5f') AS lower,
       netrun_pool.tenant_connection('6F1C1F4E-8A1B-4C2D-9E3F-0A1B2C3D4E5F') AS upper;
-- A tenant that set_tenant() would refuse there cannot be routed (22P02).
SELECT netrun_pool.route_tenant('not-a-uuid', 'rls_east');
\echo :LAST_ERROR_SQLSTATE
-- (Asked for one, tenant_connection() finds no route: the default.)
SELECT netrun_pool.tenant_connection('not-a-uuid') AS not_a_uuid;
SELECT netrun_pool.unroute_tenant('6F1C1F4E-8A1B-4C2D-9E3F-0A1B2C3D4E5F');
SELECT count(*) AS routes FROM netrun_pool.tenant_routes WHERE tenant LIKE '6f1c%';
RESET netrun_pool.tenant_id_format;
-- unroute_tenant() removes a route; a tenant without one is a notice.
SELECT netrun_pool.unroute_tenant('acme');
SELECT netrun_pool.tenant_connection('acme') AS acme_default;
SELECT netrun_pool.unroute_tenant('acme');
SELECT netrun_pool.unroute_tenant(NULL);
-- Unregistering a connection removes its routes.
SELECT tenant, connection FROM netrun_pool.tenant_routes ORDER BY tenant;
SELECT netrun_pool.unregister('rls_west');
SELECT tenant, connection FROM netrun_pool.tenant_routes ORDER BY tenant;
-- pg_dump keeps the routes.
SELECT 'netrun_pool.tenant_routes'::regclass = ANY (extconfig) AS dumped
  FROM pg_extension WHERE extname = 'netrun_pool';
RESET netrun_pool.default_tenant_connection;

-- Clean up.
SELECT netrun_pool.unregister('rls_east');
DROP FUNCTION rls_check();
SET client_min_messages = warning;
DROP SCHEMA rls_demo CASCADE;
RESET client_min_messages;
DROP ROLE rls_owner_member, rls_owner, rls_app, rls_bypasser;
