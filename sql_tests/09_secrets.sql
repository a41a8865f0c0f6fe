--
-- Secrets: passwords and tenant tokens kept out of the log and
-- pg_stat_activity, the password file that keeps a password out of SQL
-- text altogether, and what a token's JSON must be.
--
-- The server log and pg_stat_statements are t/012_secrets.pl's to read.
-- Here the log hook's rules show through the client: the hook rewrites a
-- message before it is both logged and sent, so a WARNING (which the
-- server logs) comes back with its secrets blanked.
--
\set VERBOSITY default
\set SHOW_CONTEXT never

DO $$
DECLARE m text;
BEGIN
  FOREACH m IN ARRAY ARRAY[
    -- a URI's password may hold ? , ) & ' and even @: the userinfo runs
    -- to the last '@' of the line
    $m$postgresql://rq:Sp3c?ial,Pw)7&Qz'Kw8@db.example.com/app$m$,
    $m$postgresql://rq:p@ss@db.example.com/app$m$,
    $m$postgresql://rq@db.example.com/app$m$,
    -- which blanks more than the password when a later '@' is on the line
    $m$postgresql://rq:pw@db.example.com/app?application_name=me@home$m$,
    $m$register('a', 'postgresql://u:p1@h1/db'), register('b', 'postgresql://v:p2@h2/db')$m$,
    -- key=value: bare (to white space or the closing quote of a literal),
    -- quoted, quoted inside a SQL literal, in a URI's query
    $m$host=db.example.com password=Sp3c?ial,Pw)7&Qz'Kw8 user=rq$m$,
    $m$host=db.example.com password = 'two words' user=rq$m$,
    $m$SELECT netrun_pool.register('x', 'host=db.example.com sslpassword=it''s password=''a b''')$m$,
    $m$postgresql://rq@db.example.com/app?password=Sp3c?ial,Pw)7&sslmode=require$m$,
    -- a bind parameter is no secret
    $m$UPDATE accounts SET password = $1$m$,
    -- tenant tokens: any compact JWT, and whatever set_tenant_token() is given
    $m$Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnRfaWQiOiJhY21lIn0.c2lnbmF0dXJl$m$,
    $m$SELECT netrun_pool.set_tenant_token('any-token-at-all', true)$m$,
    $m$SELECT netrun_pool.set_tenant_token(token => $t$any-token-at-all$t$)$m$,
    $m$SELECT netrun_pool.set_tenant_token($1, true)$m$
  ] LOOP
    RAISE WARNING '%', m;
  END LOOP;
END $$;

-- CONTEXT lines too: the SQL statement a PL/pgSQL block was running.
\set SHOW_CONTEXT always
DO $$ BEGIN PERFORM 1 / 0 FROM (SELECT 'postgresql://rq:Sp3c?ial,Pw)7@db.example.com/app' AS c) s; END $$;
\set SHOW_CONTEXT never

-- pg_stat_activity shows a placeholder for a statement that holds a
-- secret, from the end of its parse analysis on; other statements show
-- themselves.
SELECT query FROM pg_stat_activity
 WHERE pid = pg_backend_pid() AND 'postgresql://rq:pw@db.example.com/app' <> '';
SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid();

-- The safe way to give a password: a libpq password file, which the
-- worker reads when it connects.  The password is never in SQL text, nor
-- stored by netrun_pool.  The file must be one libpq reads (it skips,
-- without an error, one that is missing, not a file, or open to group or
-- others).  A relative path is relative to the data directory, the
-- server's working directory.
SELECT netrun_pool.register('pf', 'host=db.example.com user=rq passfile=/nonexistent/netrun_pgpass', enabled => false);
SELECT netrun_pool.register('pf', 'host=db.example.com user=rq passfile=/', enabled => false);
SELECT netrun_pool.register('pf', 'host=db.example.com user=rq passfile=' || repeat('p', 1100), enabled => false);
SELECT current_setting('data_directory') || '/netrun_test.pgpass' AS pgpass \gset
COPY (SELECT 'db.example.com:5432:*:rq:pw-in-a-file') TO :'pgpass';
SELECT 'cat > /dev/null; chmod 644 ' || :'pgpass' AS chmod_644,
       'cat > /dev/null; chmod 600 ' || :'pgpass' AS chmod_600,
       'cat > /dev/null; rm ' || :'pgpass' AS remove \gset
COPY (SELECT 1) TO PROGRAM :'chmod_644';
SELECT netrun_pool.register('pf', 'host=db.example.com user=rq passfile=netrun_test.pgpass', enabled => false);
COPY (SELECT 1) TO PROGRAM :'chmod_600';
SELECT netrun_pool.register('pf', 'host=db.example.com user=rq passfile=netrun_test.pgpass', enabled => false);
SELECT name, host, "user", has_password FROM netrun_pool.connections WHERE name = 'pf';
SELECT netrun_pool.unregister('pf');
COPY (SELECT 1) TO PROGRAM :'remove';

-- Only superusers name files in a conninfo, even with EXECUTE granted.
CREATE ROLE t_secrets;
GRANT EXECUTE ON FUNCTION netrun_pool._prepare_conninfo(text, text) TO t_secrets;
SET ROLE t_secrets;
SELECT netrun_pool._prepare_conninfo('x', 'host=h passfile=/etc/shadow');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION netrun_pool._prepare_conninfo(text, text) FROM t_secrets;
DROP ROLE t_secrets;

-- Tenant tokens.  set_tenant_token() shows a placeholder in
-- pg_stat_activity, as registry calls do.  Then what a token's header and
-- payload must be, beyond 06_tenant's checks: UTF-8, no key twice in one
-- object (jsonb would keep the last: a token could name one tenant to
-- another JWT library and another to us), numbers and dates in range.
-- Every refusal is 28000 and echoes no part of the token.
CREATE EXTENSION pgcrypto;
SELECT current_setting('netrun_pool.secret_key_file') AS keyfile \gset
ALTER SYSTEM SET netrun_pool.tenant_key_file = :'keyfile';
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
CREATE FUNCTION t_b64url(bytea) RETURNS text LANGUAGE sql IMMUTABLE AS
  $$ SELECT rtrim(translate(replace(encode($1, 'base64'), E'\n', ''), '+/', '-_'), '=') $$;
-- a token over raw bytes, which jsonb could not hold
CREATE FUNCTION t_token(header bytea, payload bytea) RETURNS text
LANGUAGE sql AS $$
  SELECT h || '.' || p || '.' ||
         t_b64url(hmac(h || '.' || p,
                       rtrim(pg_read_file(current_setting('netrun_pool.tenant_key_file')), E'\n '),
                       'sha256'))
    FROM (SELECT t_b64url(header) AS h, t_b64url(payload) AS p) s
$$;
CREATE FUNCTION t_json(json text) RETURNS bytea LANGUAGE sql AS
  $$ SELECT convert_to(replace(json, 'EXP', (extract(epoch FROM now())::int + 300)::text), 'UTF8') $$;
CREATE FUNCTION t_activity_after(token text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM netrun_pool.set_tenant_token(token, true);
  PERFORM pg_stat_clear_snapshot();
  RETURN (SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid());
END $$;
SELECT t_activity_after(t_token(t_json('{"alg":"HS256"}'), t_json('{"tenant_id":"acme","exp":EXP}')));

CREATE TABLE t_tokens (id serial, label text, token text);
INSERT INTO t_tokens (label, token) VALUES
  ('a valid token', t_token(t_json('{"alg":"HS256"}'), t_json('{"tenant_id":"acme","exp":EXP}'))),
  ('one key in two objects', t_token(t_json('{"alg":"HS256"}'),
     t_json('{"tenant_id":"acme","exp":EXP,"a":{"k":1},"b":{"k":2}}'))),
  ('tenant claim twice', t_token(t_json('{"alg":"HS256"}'),
     t_json('{"tenant_id":"acme","exp":EXP,"tenant_id":"evil"}'))),
  ('tenant claim twice, once escaped', t_token(t_json('{"alg":"HS256"}'),
     t_json('{"tenant_id":"acme","exp":EXP,"tenant\u005fid":"evil"}'))),
  ('alg twice', t_token(t_json('{"alg":"none","alg":"HS256"}'), t_json('{"tenant_id":"acme","exp":EXP}'))),
  ('a key twice in a nested object', t_token(t_json('{"alg":"HS256"}'),
     t_json('{"tenant_id":"acme","exp":EXP,"a":{"k":1,"k":2}}'))),
  ('tenant claim not UTF-8', t_token(t_json('{"alg":"HS256"}'),
     t_json('{"tenant_id":"ac') || '\xff'::bytea || t_json('me","exp":EXP}'))),
  ('tenant claim overlong UTF-8', t_token(t_json('{"alg":"HS256"}'),
     t_json('{"tenant_id":"ac') || '\xc0af'::bytea || t_json('me","exp":EXP}'))),
  ('exp 1e400', t_token(t_json('{"alg":"HS256"}'), t_json('{"tenant_id":"acme","exp":1e400}'))),
  ('exp 1e300', t_token(t_json('{"alg":"HS256"}'), t_json('{"tenant_id":"acme","exp":1e300}'))),
  ('exp -1e300', t_token(t_json('{"alg":"HS256"}'), t_json('{"tenant_id":"acme","exp":-1e300}'))),
  ('exp 1e1001', t_token(t_json('{"alg":"HS256"}'), t_json('{"tenant_id":"acme","exp":1e1001}'))),
  ('nbf 1e400', t_token(t_json('{"alg":"HS256"}'), t_json('{"tenant_id":"acme","exp":EXP,"nbf":1e400}'))),
  ('a long number', t_token(t_json('{"alg":"HS256"}'),
     t_json('{"tenant_id":"acme","exp":EXP,"n":' || repeat('9', 1001) || '}'))),
  ('numeric tenant claim 4.2e1', t_token(t_json('{"alg":"HS256"}'), t_json('{"tenant_id":4.2e1,"exp":EXP}')));
CREATE FUNCTION t_try(label text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  msg text; detail text; state text;
BEGIN
  RETURN 'accepted: ' || netrun_pool.set_tenant_token((SELECT token FROM t_tokens t WHERE t.label = t_try.label), true);
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL, state = RETURNED_SQLSTATE;
  RETURN state || ': ' || msg || ' / ' || coalesce(detail, '');
END $$;
SELECT label, t_try(label) AS outcome FROM t_tokens ORDER BY id;

ALTER SYSTEM RESET netrun_pool.tenant_key_file;
SELECT pg_reload_conf();
DROP FUNCTION t_try(text);
DROP TABLE t_tokens;
DROP FUNCTION t_activity_after(text);
DROP FUNCTION t_json(text);
DROP FUNCTION t_token(bytea, bytea);
DROP FUNCTION t_b64url(bytea);
DROP EXTENSION pgcrypto;
