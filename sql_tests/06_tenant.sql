--
-- The tenant context: netrun_pool.tenant_id can be read by anyone and
-- changed only by set_tenant(), set_tenant_token() and clear_tenant().
-- Every other way around the guard is tried here by an application role
-- that is neither a superuser nor a table owner, and each fails closed.
-- Then: formats, is_local, the mirror and the usual policy, signed tokens,
-- schema-per-tenant, and the tenant travelling with pooled calls.
--
\set VERBOSITY default
CREATE ROLE t_app LOGIN;

-- Nothing set: the function is NULL (a policy on it matches nothing).
SET ROLE t_app;
SELECT current_setting('netrun_pool.tenant_id') AS setting,
       netrun_pool.current_tenant() IS NULL AS no_tenant;
SELECT netrun_pool.set_tenant('acme');
SELECT current_setting('netrun_pool.tenant_id') AS setting,
       netrun_pool.current_tenant() AS tenant,
       current_setting('app.current_tenant_id') AS mirror;

-- Every way around the guard fails and leaves the tenant unchanged.
SET netrun_pool.tenant_id = 'evil';
SELECT set_config('netrun_pool.tenant_id', 'evil', false);
BEGIN;
SET LOCAL netrun_pool.tenant_id = 'evil';
ROLLBACK;
RESET netrun_pool.tenant_id;
SET netrun_pool.tenant_id TO DEFAULT;
SELECT netrun_pool.current_tenant() AS still;
RESET ROLE;
-- A function's SET clause is refused when it is created, even by a superuser.
CREATE FUNCTION t_evil() RETURNS text LANGUAGE sql
  SET netrun_pool.tenant_id = 'evil' AS 'SELECT 1::text';
-- ALTER ROLE / DATABASE ... SET are refused, even to a superuser.
ALTER ROLE t_app SET netrun_pool.tenant_id = 'evil';
ALTER DATABASE contrib_regression SET netrun_pool.tenant_id = 'evil';
ALTER SYSTEM SET netrun_pool.tenant_id = 'evil';
-- A SECURITY DEFINER function owned by a superuser cannot set it either.
CREATE FUNCTION t_definer() RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  RETURN set_config('netrun_pool.tenant_id', 'evil', false);
END $$;
GRANT EXECUTE ON FUNCTION t_definer() TO t_app;
SET ROLE t_app;
SELECT t_definer();
SELECT netrun_pool.current_tenant() AS still;

-- The mirror is an ordinary setting: anyone can SET it.  Policies built
-- on current_tenant() are not fooled; policies on the mirror would be.
SET app.current_tenant_id = 'evil';
SELECT current_setting('app.current_tenant_id') AS mirror,
       netrun_pool.current_tenant() AS tenant;

-- RESET ALL and DISCARD ALL may only clear it.
SELECT netrun_pool.set_tenant('acme');
RESET ALL;
SELECT current_user, netrun_pool.current_tenant() IS NULL AS cleared;
SELECT netrun_pool.set_tenant('acme');
RESET ROLE;
DISCARD ALL;
SELECT netrun_pool.current_tenant() IS NULL AS cleared;

-- is_local behaves as in set_config: it ends with the transaction; a
-- rolled-back set_tenant changes nothing.
SET ROLE t_app;
SELECT netrun_pool.set_tenant('outer');
BEGIN;
SELECT netrun_pool.set_tenant('inner', true);
SELECT netrun_pool.current_tenant() AS in_transaction;
COMMIT;
SELECT netrun_pool.current_tenant() AS after_commit;
BEGIN;
SELECT netrun_pool.set_tenant('rolled-back');
ROLLBACK;
SELECT netrun_pool.current_tenant() AS after_rollback;
SELECT netrun_pool.clear_tenant();
SELECT netrun_pool.current_tenant() IS NULL AS cleared,
       current_setting('app.current_tenant_id') AS mirror;
SELECT netrun_pool.set_tenant(NULL);
RESET ROLE;

-- Formats: a value that does not match is 22P02, and changes nothing.
SET ROLE t_app;
SELECT netrun_pool.set_tenant('kept');
RESET ROLE;
SET netrun_pool.tenant_id_format = 'uuid';
SELECT netrun_pool.set_tenant('not-a-uuid');
SELECT netrun_pool.set_tenant('6F1C1F4E-8A1B-4C2D-9E3F-0A1B2C3D4E5F');
SET netrun_pool.tenant_id_format = 'integer';
SELECT netrun_pool.set_tenant('12a');
SELECT netrun_pool.set_tenant('42');
SET netrun_pool.tenant_id_format = 'slug';
SELECT netrun_pool.set_tenant('Acme Corp');
SELECT netrun_pool.set_tenant('acme-corp');
SELECT netrun_pool.set_tenant('bad');
SET netrun_pool.tenant_id_format = 'text';
SELECT netrun_pool.set_tenant(E'line\nbreak');
SELECT netrun_pool.set_tenant('');
SELECT netrun_pool.current_tenant() AS unchanged;
-- The settings that shape the tenant are for superusers.
SET ROLE t_app;
SET netrun_pool.tenant_id_format = 'text';
SET netrun_pool.tenant_mode = 'open';
SET netrun_pool.tenant_setting = 'app.other';
SHOW netrun_pool.tenant_key_file;
RESET ROLE;
SELECT netrun_pool.clear_tenant();

-- The usual policy: tenant_id = current_setting('app.current_tenant_id')::uuid,
-- FORCEd, read by the application role: each tenant sees its own rows.
SET netrun_pool.tenant_id_format = 'uuid';
CREATE TABLE t_docs (id int, tenant_id uuid, body text);
INSERT INTO t_docs VALUES
  (1, '11111111-1111-1111-1111-111111111111', 'a1'),
  (2, '11111111-1111-1111-1111-111111111111', 'a2'),
  (3, '22222222-2222-2222-2222-222222222222', 'b1');
ALTER TABLE t_docs ENABLE ROW LEVEL SECURITY;
ALTER TABLE t_docs FORCE ROW LEVEL SECURITY;
CREATE POLICY t_docs_tenant ON t_docs
  USING (tenant_id = current_setting('app.current_tenant_id', true)::uuid);
GRANT SELECT ON t_docs TO t_app;
SET ROLE t_app;
SELECT netrun_pool.set_tenant('11111111-1111-1111-1111-111111111111');
SELECT id, body FROM t_docs ORDER BY id;
SELECT netrun_pool.set_tenant('22222222-2222-2222-2222-222222222222');
SELECT id, body FROM t_docs ORDER BY id;
RESET ROLE;
DROP TABLE t_docs;
SET netrun_pool.tenant_id_format = 'text';
SELECT netrun_pool.clear_tenant();

-- Signed mode: non-superusers need a token: a compact JWT, HS256, signed
-- with the key in netrun_pool.tenant_key_file (here the instance's secret
-- key file; the key is its contents without the trailing newline).  The
-- tokens are made with pgcrypto, as any JWT library would make them.
CREATE EXTENSION pgcrypto;
SELECT current_setting('netrun_pool.secret_key_file') AS keyfile \gset
ALTER SYSTEM SET netrun_pool.tenant_key_file = :'keyfile';
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
CREATE FUNCTION t_b64url(bytea) RETURNS text LANGUAGE sql IMMUTABLE AS
  $$ SELECT rtrim(translate(replace(encode($1, 'base64'), E'\n', ''), '+/', '-_'), '=') $$;
CREATE FUNCTION t_token(header jsonb, payload jsonb, key text DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
  SELECT h || '.' || p || '.' ||
         t_b64url(hmac(h || '.' || p,
                       coalesce(key, rtrim(pg_read_file(current_setting('netrun_pool.tenant_key_file')), E'\n ')),
                       'sha256'))
    FROM (SELECT t_b64url(convert_to(header::text, 'UTF8')) AS h,
                 t_b64url(convert_to(payload::text, 'UTF8')) AS p) s
$$;
CREATE TABLE t_tokens (label text, token text);
INSERT INTO t_tokens VALUES
  ('valid', t_token('{"alg":"HS256","typ":"JWT"}',
                    jsonb_build_object('tenant_id', 'acme', 'exp', extract(epoch FROM now())::int + 300))),
  ('numeric claim', t_token('{"alg":"HS256"}',
                    jsonb_build_object('tenant_id', 42, 'exp', extract(epoch FROM now())::int + 300))),
  ('expired', t_token('{"alg":"HS256","typ":"JWT"}',
                    jsonb_build_object('tenant_id', 'acme', 'exp', extract(epoch FROM now())::int - 10))),
  ('not yet valid', t_token('{"alg":"HS256","typ":"JWT"}',
                    jsonb_build_object('tenant_id', 'acme', 'exp', extract(epoch FROM now())::int + 300,
                                       'nbf', extract(epoch FROM now())::int + 200))),
  ('no exp', t_token('{"alg":"HS256","typ":"JWT"}', '{"tenant_id":"acme"}')),
  ('no tenant claim', t_token('{"alg":"HS256","typ":"JWT"}',
                    jsonb_build_object('sub', 'x', 'exp', extract(epoch FROM now())::int + 300))),
  ('wrong key', t_token('{"alg":"HS256","typ":"JWT"}',
                    jsonb_build_object('tenant_id', 'acme', 'exp', extract(epoch FROM now())::int + 300),
                    'not-the-key-not-the-key-not-the-key')),
  ('alg none', t_b64url('{"alg":"none","typ":"JWT"}') || '.' ||
               t_b64url(convert_to(jsonb_build_object('tenant_id', 'acme',
                        'exp', extract(epoch FROM now())::int + 300)::text, 'UTF8')) || '.'),
  ('alg HS512', t_token('{"alg":"HS512","typ":"JWT"}',
                    jsonb_build_object('tenant_id', 'acme', 'exp', extract(epoch FROM now())::int + 300))),
  ('malformed', 'not.a-token'),
  ('not json', t_b64url('{"alg":') || '.' || t_b64url('x') || '.' || t_b64url('y'));
-- altered: the valid token's payload swapped for another tenant's, its
-- signature kept
INSERT INTO t_tokens
SELECT 'altered', split_part(token, '.', 1) || '.' ||
       t_b64url(convert_to(jsonb_build_object('tenant_id', 'evil',
                'exp', extract(epoch FROM now())::int + 300)::text, 'UTF8')) || '.' ||
       split_part(token, '.', 3)
  FROM t_tokens WHERE label = 'valid';
GRANT SELECT ON t_tokens TO t_app;
-- Try each token as the application role, in label order; each line ends
-- with the tenant after the attempt (a refused token leaves it unchanged).
-- Timestamps in details are masked.
CREATE FUNCTION t_try(label text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  msg text; detail text; state text; outcome text;
BEGIN
  BEGIN
    outcome := 'accepted: ' || netrun_pool.set_tenant_token((SELECT token FROM t_tokens t WHERE t.label = t_try.label));
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL, state = RETURNED_SQLSTATE;
    outcome := state || ': ' || msg || ' / ' ||
           regexp_replace(coalesce(detail, ''), '\d{4}-\d\d-\d\d [0-9:.+-]+', 'TIME', 'g');
  END;
  RETURN outcome || ' -> ' || coalesce(netrun_pool.current_tenant(), '<none>');
END $$;
SET netrun_pool.tenant_mode = 'signed';
SET ROLE t_app;
SELECT netrun_pool.set_tenant('acme');
SELECT label, t_try(label) AS outcome FROM (SELECT label FROM t_tokens ORDER BY label) t;
SELECT netrun_pool.set_tenant_token(NULL);
RESET ROLE;
-- A superuser may still use set_tenant() in signed mode.
SELECT netrun_pool.set_tenant('admin-chosen');
SET netrun_pool.tenant_mode = 'open';
SELECT netrun_pool.clear_tenant();
-- Without a key file, tokens cannot be checked.
ALTER SYSTEM RESET netrun_pool.tenant_key_file;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
SELECT t_try('valid');
DROP FUNCTION t_try(text);
DROP TABLE t_tokens;
DROP FUNCTION t_token(jsonb, jsonb, text);
DROP FUNCTION t_b64url(bytea);
DROP EXTENSION pgcrypto;

-- Schema-per-tenant: the tenant's schema name, checked, never strange.
SELECT netrun_pool.tenant_schema('acme'), netrun_pool.tenant_schema('6f1c1f4e-8a1b-4c2d-9e3f-0a1b2c3d4e5f');
SELECT netrun_pool.tenant_schema('Acme Corp');
SELECT netrun_pool.tenant_schema('x"; DROP SCHEMA public; --');
SELECT netrun_pool.tenant_schema(repeat('a', 60));
SELECT netrun_pool.tenant_schema();
SELECT name, netrun_pool.validate_schema_name(name)
  FROM unnest(ARRAY['tenant_acme', '_x', 'Tenant', '1abc', 'a"b', 'a b', 'pg_temp', repeat('a', 63), repeat('a', 64), '']) name;
-- With tenant_search_path, setting a tenant sets search_path too, with
-- the same scope; clearing leaves the shared schema and public.
SET netrun_pool.tenant_search_path = on;
SELECT netrun_pool.set_tenant('acme');
SHOW search_path;
BEGIN;
SELECT netrun_pool.set_tenant('globex', true);
SHOW search_path;
COMMIT;
SHOW search_path;
SELECT netrun_pool.clear_tenant();
SHOW search_path;
RESET netrun_pool.tenant_search_path;
RESET search_path;

-- Pooled calls carry the tenant: each call sets the remote's tenant
-- setting (a per-connection option) to its tenant or to '', and the reset
-- between callers clears it, so the next call, on the same single
-- connection, sees only its own.
SELECT netrun_pool.register('t_self',
    format('host=%s port=%s dbname=contrib_regression',
           current_setting('unix_socket_directories'), current_setting('port')),
    pool_max => 1, tenant_setting => 'app.tenant');
SELECT netrun_pool.register('t_bad', 'dbname=x', tenant_setting => 'no_dot');
SELECT netrun_pool.register('t_bad', 'dbname=x', tenant_guard => 'maybe');
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN (SELECT status FROM netrun_pool.health WHERE name = 't_self') <> 'unknown';
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
CREATE FUNCTION t_remote_tenant(ro boolean DEFAULT false) RETURNS text LANGUAGE sql AS $$
  SELECT netrun_pool.fetchval('t_self',
    'SELECT coalesce(nullif(current_setting(''app.tenant'', true), ''''), ''<none>'')', read_only => ro)
$$;
SELECT t_remote_tenant() AS before;
SELECT netrun_pool.set_tenant('acme');
-- This server runs netrun_pool with tenant_mode = open: it does not
-- enforce the guard, and the default tenant_guard => 'required' refuses
-- to carry a tenant there (a call without one still runs).
SELECT t_remote_tenant() AS refused;
SELECT name, tenant_guard, tenant_guard_detail FROM netrun_pool.health WHERE name = 't_self';
SELECT netrun_pool.configure('t_self', tenant_guard => 'off');
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN (SELECT tenant_guard_status FROM netrun_pool.connections WHERE name = 't_self') = 'off';
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT tenant_guard, tenant_guard_status FROM netrun_pool.connections WHERE name = 't_self';
SELECT t_remote_tenant() AS with_tenant, t_remote_tenant(true) AS read_only;
-- exec_transaction's statements run with it too (this one copies it into
-- a session setting of the remote connection, which the reset between
-- callers clears before the next call)
SELECT netrun_pool.exec_transaction('t_self', ARRAY[
  'SELECT set_config(''app.seen'', current_setting(''app.tenant''), false)']);
SELECT netrun_pool.fetchval('t_self', 'SELECT coalesce(nullif(current_setting(''app.seen'', true), ''''), ''<reset>'')') AS after_reset;
SELECT netrun_pool.clear_tenant();
SELECT t_remote_tenant() AS after_clear;
-- Inside begin() the tenant is set in the remote transaction; a tenant
-- cleared mid-transaction is cleared there too.
BEGIN;
SELECT netrun_pool.set_tenant('acme');
SELECT netrun_pool.begin('t_self');
SELECT t_remote_tenant() AS in_begin;
SELECT netrun_pool.clear_tenant();
SELECT t_remote_tenant() AS cleared_in_begin;
COMMIT;
SELECT t_remote_tenant() AS after_commit;
-- A value is a parameter, never SQL.
SELECT netrun_pool.set_tenant($$x'); SELECT pg_sleep(10); --$$);
SELECT t_remote_tenant() AS odd_tenant;
SELECT netrun_pool.clear_tenant();

-- The remote half of the guard.  On a server with tenant_mode = pool only
-- a pool's signed assertion sets the tenant: set_tenant() is refused to
-- the application, and an assertion needs a session bound by guard_hello()
-- and the key.
SELECT netrun_pool.guard_hello('not hex');
SELECT netrun_pool.guard_hello(repeat('0', 32)) AS open_mode;
SELECT netrun_pool.guard_assert('acme', 1, repeat('0', 64));
SET netrun_pool.tenant_mode = pool;
SELECT netrun_pool.guard_hello(repeat('0', 32)) AS without_key;
SELECT netrun_pool.guard_assert('acme', 1, repeat('0', 64));
SELECT netrun_pool.guard_assert(NULL, 1, repeat('0', 64));
SET ROLE t_app;
SELECT netrun_pool.set_tenant('acme');
SELECT netrun_pool.set_tenant_token('x.y.z');
SELECT netrun_pool.clear_tenant();
RESET ROLE;
RESET netrun_pool.tenant_mode;

-- Clean up.
DROP FUNCTION t_remote_tenant(boolean);
SELECT netrun_pool.unregister('t_self');
DROP FUNCTION t_definer();
DROP ROLE t_app;
