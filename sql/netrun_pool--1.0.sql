/* netrun_pool--1.0.sql: the SQL objects of netrun_pool 1.0 */

\echo Use "CREATE EXTENSION netrun_pool" to load this file. \quit

-- Everyone may look into the schema; each object grants its own privileges.
GRANT USAGE ON SCHEMA netrun_pool TO PUBLIC;

-- What the launcher and the pool worker are doing (read from shared memory).
CREATE FUNCTION netrun_pool.worker_status(
    OUT launcher_pid integer,
    OUT worker_pid integer,
    OUT state text,
    OUT database name,
    OUT started_at timestamptz,
    OUT starts bigint,
    OUT reloads bigint,
    OUT pools integer,
    OUT generation bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'netrun_worker_status'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION netrun_pool.worker_status() IS
    'state of the netrun_pool launcher and worker processes';

REVOKE ALL ON FUNCTION netrun_pool.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION netrun_pool.worker_status() TO pg_monitor;

------------------------------------------------------------------------------
-- Registry of remote servers
--
-- The rows of the database named by netrun_pool.database are the registry;
-- the worker loads them into shared memory whenever they change.  Passwords
-- never sit here in clear: "secret" is an AES-256-GCM blob (see secret.c).
-- Only superusers can read or write these tables; everyone else sees the
-- connections view.
------------------------------------------------------------------------------

CREATE TABLE netrun_pool.registry (
    name                 text PRIMARY KEY,
    conninfo             text NOT NULL,      -- normalized, without secrets
    secret               bytea,              -- encrypted password/sslpassword
    kind                 text NOT NULL,
    role                 text NOT NULL,
    cluster              text,
    region               text,
    pool_min             integer NOT NULL,
    pool_max             integer NOT NULL,
    max_overflow         integer NOT NULL,
    pool_mode            text NOT NULL,
    acquire_timeout_ms   integer NOT NULL,
    connect_timeout_ms   integer NOT NULL,
    statement_timeout_ms integer NOT NULL,
    idle_timeout_s       integer NOT NULL,
    recycle_s            integer NOT NULL,
    password_required    boolean NOT NULL,
    enabled              boolean NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    max_replica_lag_ms   integer NOT NULL DEFAULT 0,  -- 0: no limit
    tenant_setting       text NOT NULL DEFAULT 'app.current_tenant_id',
    tenant_guard         text NOT NULL DEFAULT 'required',
    pipeline_depth       integer NOT NULL DEFAULT 1
);

CREATE TABLE netrun_pool.usage_grants (
    name    text NOT NULL REFERENCES netrun_pool.registry (name) ON DELETE CASCADE,
    grantee regrole NOT NULL,
    PRIMARY KEY (name, grantee)
);

REVOKE ALL ON netrun_pool.registry, netrun_pool.usage_grants FROM PUBLIC;

-- pg_dump keeps the rows (and so the encrypted secrets and the grants).
SELECT pg_catalog.pg_extension_config_dump('netrun_pool.registry', '');
SELECT pg_catalog.pg_extension_config_dump('netrun_pool.usage_grants', '');

-- Any committed change, through our functions, plain DML, COPY or
-- pg_restore, bumps the shared generation and wakes the worker.
CREATE FUNCTION netrun_pool._registry_changed() RETURNS trigger
AS 'MODULE_PATHNAME', 'netrun_registry_changed'
LANGUAGE C;

CREATE TRIGGER registry_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON netrun_pool.registry
    FOR EACH STATEMENT EXECUTE FUNCTION netrun_pool._registry_changed();
CREATE TRIGGER usage_grants_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON netrun_pool.usage_grants
    FOR EACH STATEMENT EXECUTE FUNCTION netrun_pool._registry_changed();

-- Normalize a connection string: strip "+driver" from SQLAlchemy-style
-- URIs, validate with libpq, refuse keys the pool controls, and move the
-- secrets into an encrypted blob.  Hides the caller's statement text.
CREATE FUNCTION netrun_pool._prepare_conninfo(
    name text, conninfo text, OUT conninfo text, OUT secret bytea)
RETURNS record
AS 'MODULE_PATHNAME', 'netrun_prepare_conninfo'
LANGUAGE C STRICT VOLATILE;

-- unregister(force => true): the worker cancels calls in flight at commit.
CREATE FUNCTION netrun_pool._request_force_retire(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'netrun_request_force_retire'
LANGUAGE C STRICT VOLATILE;

-- One field of a normalized connection string (NULL if absent).
CREATE FUNCTION netrun_pool._conninfo_get(conninfo text, key text)
RETURNS text
AS 'MODULE_PATHNAME', 'netrun_conninfo_get'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

-- Marks the current call as a registry change: errors raised until the end
-- of the transaction do not log the statement (which may hold a password).
CREATE FUNCTION netrun_pool._begin_registry_change()
RETURNS void
AS 'MODULE_PATHNAME', 'netrun_begin_registry_change'
LANGUAGE C STRICT VOLATILE;

-- A value the caller gave, fit to quote in a message: its first 64
-- characters, then "...", as netrun_message_value() does in C (64 is
-- NETRUN_MESSAGE_VALUE_CHARS there), so that a 1 MB name is not echoed
-- back in full.
CREATE FUNCTION netrun_pool._message_value(value text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN length(value) > 64 THEN left(value, 64) || '...' ELSE value END;

-- Every check a registry row must pass, shared by register and configure.
CREATE FUNCTION netrun_pool._check_registry_row(r netrun_pool.registry)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    max_pools integer := current_setting('netrun_pool.max_pools', true)::integer;
    max_conns integer := current_setting('netrun_pool.max_connections', true)::integer;
    n_pools   integer;
    n_conns   bigint;
    setting   text;
    val       integer;
    min_value integer;
BEGIN
    -- register() takes every setting, and NULL is none of them (configure()
    -- reads NULL as unchanged, so none reaches here from it).
    FOR setting IN
        SELECT key FROM jsonb_each(to_jsonb(r))
         WHERE value = 'null' AND key NOT IN ('secret', 'cluster', 'region')
    LOOP
        RAISE EXCEPTION '% must not be null', setting
            USING ERRCODE = 'null_value_not_allowed';
    END LOOP;
    -- A cluster name stands wherever a connection name is accepted, so it
    -- follows the same rules and must not be mistaken for a connection.
    IF r.cluster IS NOT NULL AND r.cluster !~ '^[a-z_][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid cluster name "%"', netrun_pool._message_value(r.cluster)
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'A name is 1 to 63 lowercase letters, digits or underscores, and does not start with a digit.';
    END IF;
    IF EXISTS (SELECT 1 FROM netrun_pool.registry g WHERE g.name = r.cluster) THEN
        RAISE EXCEPTION 'cluster name "%" is already the name of a netrun_pool connection', r.cluster
            USING ERRCODE = 'duplicate_object';
    END IF;
    IF EXISTS (SELECT 1 FROM netrun_pool.registry g
                WHERE g.cluster = r.name AND g.name <> r.name) THEN
        RAISE EXCEPTION 'netrun_pool connection name "%" is already the name of a cluster', r.name
            USING ERRCODE = 'duplicate_object';
    END IF;
    -- The remote setting that carries the tenant: a custom setting name.
    IF r.tenant_setting !~ '^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_.]*$' OR octet_length(r.tenant_setting) > 127 THEN
        RAISE EXCEPTION 'invalid tenant_setting "%" for netrun_pool connection "%"', netrun_pool._message_value(r.tenant_setting), r.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a custom setting name such as app.current_tenant_id.';
    END IF;
    IF octet_length(r.region) > 63 THEN
        RAISE EXCEPTION 'region must be at most 63 bytes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.kind NOT IN ('admin', 'shared', 'analytics', 'dedicated') THEN
        RAISE EXCEPTION 'invalid kind "%" for netrun_pool connection "%"', netrun_pool._message_value(r.kind), r.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Valid kinds are admin, shared, analytics and dedicated.';
    END IF;
    IF r.role NOT IN ('primary', 'replica') THEN
        RAISE EXCEPTION 'invalid role "%" for netrun_pool connection "%"', netrun_pool._message_value(r.role), r.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Valid roles are primary and replica.';
    END IF;
    IF r.tenant_guard NOT IN ('required', 'if_available', 'off') THEN
        RAISE EXCEPTION 'invalid tenant_guard "%" for netrun_pool connection "%"', netrun_pool._message_value(r.tenant_guard), r.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Valid values are required, if_available and off.';
    END IF;
    IF r.pool_mode NOT IN ('transaction', 'session', 'none') THEN
        RAISE EXCEPTION 'invalid pool_mode "%" for netrun_pool connection "%"', netrun_pool._message_value(r.pool_mode), r.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Valid pool modes are transaction, session and none.';
    END IF;
    -- Limits: each setting with the least value it may take.
    FOR setting, val, min_value IN
        SELECT * FROM (VALUES
            ('pool_max', r.pool_max, 1), ('acquire_timeout_ms', r.acquire_timeout_ms, 1),
            ('connect_timeout_ms', r.connect_timeout_ms, 1), ('idle_timeout_s', r.idle_timeout_s, 1),
            ('recycle_s', r.recycle_s, 1), ('pool_min', r.pool_min, 0),
            ('max_overflow', r.max_overflow, 0), ('statement_timeout_ms', r.statement_timeout_ms, 0),
            ('max_replica_lag_ms', r.max_replica_lag_ms, 0),
            ('pipeline_depth', r.pipeline_depth, 1)) v
    LOOP
        IF val >= min_value THEN
            CONTINUE;
        ELSIF min_value = 1 THEN
            RAISE EXCEPTION '% must be greater than zero', setting
                USING ERRCODE = 'invalid_parameter_value';
        ELSIF setting = 'statement_timeout_ms' THEN
            RAISE EXCEPTION '% must not be negative', setting
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 0 for no timeout.';
        ELSIF setting = 'max_replica_lag_ms' THEN
            RAISE EXCEPTION '% must not be negative', setting
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 0 for no limit.';
        ELSE
            RAISE EXCEPTION '% must not be negative', setting
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    IF r.pipeline_depth > 16 THEN
        RAISE EXCEPTION 'pipeline_depth must be at most 16'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 1 to send each call alone on its connection.';
    END IF;
    IF r.pool_min > r.pool_max THEN
        RAISE EXCEPTION 'pool_min (%) must not exceed pool_max (%)', r.pool_min, r.pool_max
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Shared memory is sized at server start; refuse now what would not fit.
    SELECT count(*), coalesce(sum(g.pool_max + g.max_overflow), 0)
      INTO n_pools, n_conns
      FROM netrun_pool.registry g WHERE g.name <> r.name;
    IF max_pools IS NOT NULL AND n_pools + 1 > max_pools THEN
        RAISE EXCEPTION 'too many netrun_pool connections'
            USING ERRCODE = 'configuration_limit_exceeded',
                  DETAIL = format('netrun_pool.max_pools is %s and %s connections are registered.',
                                  max_pools, n_pools),
                  HINT = 'Raise netrun_pool.max_pools and restart the server.';
    END IF;
    IF max_conns IS NOT NULL AND n_conns + r.pool_max + r.max_overflow > max_conns THEN
        RAISE EXCEPTION 'netrun_pool connection "%" would exceed netrun_pool.max_connections', r.name
            USING ERRCODE = 'configuration_limit_exceeded',
                  DETAIL = format('The other connections may open %s remote connections, this one %s (pool_max + max_overflow), and netrun_pool.max_connections is %s.',
                                  n_conns, r.pool_max::bigint + r.max_overflow, max_conns),
                  HINT = 'Lower pool_max or max_overflow, or raise netrun_pool.max_connections and restart the server.';
    END IF;
END
$$;

-- The registry lives in one database; refuse changes made anywhere else,
-- take the lock that serializes registry changes, and hide the statement.
CREATE FUNCTION netrun_pool._lock_registry()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    home text := current_setting('netrun_pool.database', true);
BEGIN
    PERFORM netrun_pool._begin_registry_change();
    IF NOT (SELECT rolsuper FROM pg_roles WHERE oid = current_user::regrole) THEN
        RAISE EXCEPTION 'permission denied to change the netrun_pool registry'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only superusers may register, configure, unregister, grant or revoke netrun_pool connections.';
    END IF;
    IF home IS NOT NULL AND home <> current_database() THEN
        RAISE EXCEPTION 'the netrun_pool registry lives in database "%"', home
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Connect to database "%s" to change it.', home);
    END IF;
    -- One registry change at a time: the capacity checks count rows.
    LOCK TABLE netrun_pool.registry IN SHARE ROW EXCLUSIVE MODE;
END
$$;

CREATE FUNCTION netrun_pool._check_name(name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'netrun_pool connection name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF name !~ '^[a-z_][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid netrun_pool connection name "%"', netrun_pool._message_value(name)
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'A name is 1 to 63 lowercase letters, digits or underscores, and does not start with a digit.';
    END IF;
END
$$;

CREATE FUNCTION netrun_pool._not_found(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'netrun_pool connection "%" does not exist', netrun_pool._message_value(name)
        USING ERRCODE = 'undefined_object';
END
$$;

CREATE FUNCTION netrun_pool._require_connection(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM netrun_pool.registry g WHERE g.name = _require_connection.name) THEN
        PERFORM netrun_pool._not_found(name);
    END IF;
END
$$;

CREATE FUNCTION netrun_pool.register(
    name text, conninfo text,
    kind text DEFAULT 'shared', role text DEFAULT 'primary',
    cluster text DEFAULT NULL, region text DEFAULT NULL,
    pool_min integer DEFAULT 0, pool_max integer DEFAULT 10,
    max_overflow integer DEFAULT 0,
    pool_mode text DEFAULT 'transaction',
    acquire_timeout_ms integer DEFAULT 30000,
    connect_timeout_ms integer DEFAULT 10000,
    statement_timeout_ms integer DEFAULT 0,
    idle_timeout_s integer DEFAULT 600,
    recycle_s integer DEFAULT 3600,
    password_required boolean DEFAULT true,
    enabled boolean DEFAULT true,
    max_replica_lag_ms integer DEFAULT 0,
    tenant_setting text DEFAULT 'app.current_tenant_id',
    tenant_guard text DEFAULT 'required',
    pipeline_depth integer DEFAULT 1)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r netrun_pool.registry;
    p record;
BEGIN
    PERFORM netrun_pool._lock_registry();
    PERFORM netrun_pool._check_name(name);
    IF EXISTS (SELECT 1 FROM netrun_pool.registry g WHERE g.name = register.name) THEN
        RAISE EXCEPTION 'netrun_pool connection "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Use netrun_pool.configure() to change it.';
    END IF;
    IF conninfo IS NULL THEN
        RAISE EXCEPTION 'conninfo must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    p := netrun_pool._prepare_conninfo(name, conninfo);
    r := ROW(name, p.conninfo, p.secret, kind, role, cluster, region,
             pool_min, pool_max, max_overflow, pool_mode,
             acquire_timeout_ms, connect_timeout_ms, statement_timeout_ms,
             idle_timeout_s, recycle_s, password_required, enabled,
             now(), now(), max_replica_lag_ms, tenant_setting, tenant_guard,
             pipeline_depth);
    PERFORM netrun_pool._check_registry_row(r);
    INSERT INTO netrun_pool.registry SELECT r.*;
END
$$;

CREATE FUNCTION netrun_pool.configure(
    name text, conninfo text DEFAULT NULL,
    kind text DEFAULT NULL, role text DEFAULT NULL,
    cluster text DEFAULT NULL, region text DEFAULT NULL,
    pool_min integer DEFAULT NULL, pool_max integer DEFAULT NULL,
    max_overflow integer DEFAULT NULL,
    pool_mode text DEFAULT NULL,
    acquire_timeout_ms integer DEFAULT NULL,
    connect_timeout_ms integer DEFAULT NULL,
    statement_timeout_ms integer DEFAULT NULL,
    idle_timeout_s integer DEFAULT NULL,
    recycle_s integer DEFAULT NULL,
    password_required boolean DEFAULT NULL,
    enabled boolean DEFAULT NULL,
    max_replica_lag_ms integer DEFAULT NULL,
    tenant_setting text DEFAULT NULL,
    tenant_guard text DEFAULT NULL,
    pipeline_depth integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r netrun_pool.registry;
    p record;
BEGIN
    PERFORM netrun_pool._lock_registry();
    SELECT * INTO r FROM netrun_pool.registry g WHERE g.name = configure.name FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM netrun_pool._not_found(name);
    END IF;
    IF conninfo IS NOT NULL THEN
        p := netrun_pool._prepare_conninfo(name, conninfo);
        r.conninfo := p.conninfo;
        r.secret := p.secret;
    END IF;
    r.kind                 := coalesce(kind, r.kind);
    r.role                 := coalesce(role, r.role);
    r.cluster              := coalesce(cluster, r.cluster);
    r.region               := coalesce(region, r.region);
    r.pool_min             := coalesce(pool_min, r.pool_min);
    r.pool_max             := coalesce(pool_max, r.pool_max);
    r.max_overflow         := coalesce(max_overflow, r.max_overflow);
    r.pool_mode            := coalesce(pool_mode, r.pool_mode);
    r.acquire_timeout_ms   := coalesce(acquire_timeout_ms, r.acquire_timeout_ms);
    r.connect_timeout_ms   := coalesce(connect_timeout_ms, r.connect_timeout_ms);
    r.statement_timeout_ms := coalesce(statement_timeout_ms, r.statement_timeout_ms);
    r.idle_timeout_s       := coalesce(idle_timeout_s, r.idle_timeout_s);
    r.recycle_s            := coalesce(recycle_s, r.recycle_s);
    r.password_required    := coalesce(password_required, r.password_required);
    r.enabled              := coalesce(enabled, r.enabled);
    r.max_replica_lag_ms   := coalesce(max_replica_lag_ms, r.max_replica_lag_ms);
    r.tenant_setting       := coalesce(tenant_setting, r.tenant_setting);
    r.tenant_guard         := coalesce(tenant_guard, r.tenant_guard);
    r.pipeline_depth       := coalesce(pipeline_depth, r.pipeline_depth);
    r.updated_at           := now();
    PERFORM netrun_pool._check_registry_row(r);
    UPDATE netrun_pool.registry g SET
        conninfo = r.conninfo, secret = r.secret, kind = r.kind, role = r.role,
        cluster = r.cluster, region = r.region, pool_min = r.pool_min,
        pool_max = r.pool_max, max_overflow = r.max_overflow,
        pool_mode = r.pool_mode, acquire_timeout_ms = r.acquire_timeout_ms,
        connect_timeout_ms = r.connect_timeout_ms,
        statement_timeout_ms = r.statement_timeout_ms,
        idle_timeout_s = r.idle_timeout_s, recycle_s = r.recycle_s,
        password_required = r.password_required, enabled = r.enabled,
        max_replica_lag_ms = r.max_replica_lag_ms, tenant_setting = r.tenant_setting,
        tenant_guard = r.tenant_guard, pipeline_depth = r.pipeline_depth,
        updated_at = r.updated_at
     WHERE g.name = r.name;
END
$$;

CREATE FUNCTION netrun_pool.unregister(name text, force boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM netrun_pool._lock_registry();
    DELETE FROM netrun_pool.registry g WHERE g.name = unregister.name;
    IF NOT FOUND THEN
        PERFORM netrun_pool._not_found(name);
    END IF;
    -- The worker retires the pool at its next reload: calls in flight
    -- finish on their connections, which then close.  With force, those
    -- calls fail at once and their connections close.
    IF force THEN
        PERFORM netrun_pool._request_force_retire(name);
    END IF;
END
$$;

CREATE FUNCTION netrun_pool.grant_usage(name text, grantee regrole)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM netrun_pool._lock_registry();
    PERFORM netrun_pool._require_connection(name);
    IF grantee IS NULL THEN
        RAISE EXCEPTION 'grantee must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF (SELECT count(*) FROM netrun_pool.usage_grants u
         WHERE u.name = grant_usage.name AND u.grantee <> grant_usage.grantee) >= 32 THEN
        RAISE EXCEPTION 'too many grantees for netrun_pool connection "%"', name
            USING ERRCODE = 'configuration_limit_exceeded',
                  DETAIL = 'A connection may be granted to at most 32 roles.',
                  HINT = 'Grant usage to a group role and make the users members of it.';
    END IF;
    INSERT INTO netrun_pool.usage_grants VALUES (name, grantee)
        ON CONFLICT DO NOTHING;
END
$$;

CREATE FUNCTION netrun_pool.revoke_usage(name text, grantee regrole)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM netrun_pool._lock_registry();
    PERFORM netrun_pool._require_connection(name);
    DELETE FROM netrun_pool.usage_grants u
     WHERE u.name = revoke_usage.name AND u.grantee = revoke_usage.grantee;
END
$$;

-- Does a role have usage on the connection?  Superusers always do; other
-- roles through a grant to a role they are a member of (with INHERIT), as
-- has_table_privilege() answers for tables.  The default is evaluated in
-- the caller's context, so it is the caller, not this function's owner.
CREATE FUNCTION netrun_pool.has_usage(name text, role regrole DEFAULT current_user::regrole)
RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM netrun_pool.registry g WHERE g.name = has_usage.name)
       AND (coalesce((SELECT a.rolsuper FROM pg_authid a WHERE a.oid = has_usage.role), false)
            OR EXISTS (SELECT 1 FROM netrun_pool.usage_grants u
                        WHERE u.name = has_usage.name
                          AND pg_has_role(has_usage.role, u.grantee, 'USAGE')))
$$;

-- Whether the remote enforces the tenant guard, as the worker last found
-- it: enforced, absent, off or unknown (health has the reason).
CREATE FUNCTION netrun_pool._tenant_guard_status(name text)
RETURNS text
AS 'MODULE_PATHNAME', 'netrun_tenant_guard_status'
LANGUAGE C STRICT STABLE;

-- What a role may know about the connections it may use: never a secret.
-- security_barrier: a caller's function in WHERE cannot see hidden rows.
CREATE VIEW netrun_pool.connections WITH (security_barrier) AS
SELECT r.name, r.kind, r.role, r.cluster, r.region,
       netrun_pool._conninfo_get(r.conninfo, 'host')    AS host,
       netrun_pool._conninfo_get(r.conninfo, 'port')    AS port,
       netrun_pool._conninfo_get(r.conninfo, 'dbname')  AS dbname,
       netrun_pool._conninfo_get(r.conninfo, 'user')    AS "user",
       netrun_pool._conninfo_get(r.conninfo, 'sslmode') AS sslmode,
       r.secret IS NOT NULL AS has_password,
       r.pool_min, r.pool_max, r.max_overflow, r.pool_mode,
       r.acquire_timeout_ms, r.connect_timeout_ms, r.statement_timeout_ms,
       r.idle_timeout_s, r.recycle_s, r.password_required, r.enabled,
       r.max_replica_lag_ms, r.tenant_setting, r.created_at, r.updated_at,
       r.tenant_guard,
       netrun_pool._tenant_guard_status(r.name) AS tenant_guard_status,
       r.pipeline_depth
  FROM netrun_pool.registry r
 WHERE coalesce((SELECT a.rolsuper FROM pg_authid a WHERE a.rolname = current_user), false)
    OR pg_has_role('pg_read_all_settings', 'USAGE')
    OR EXISTS (SELECT 1 FROM netrun_pool.usage_grants u
                WHERE u.name = r.name AND pg_has_role(u.grantee, 'USAGE'));

GRANT SELECT ON netrun_pool.connections TO PUBLIC;

-- Changing the registry is for superusers; the functions check it too, in
-- case someone grants EXECUTE.
-- Whether each stored secret decrypts with the current key file.
CREATE FUNCTION netrun_pool.check_secrets(OUT name text, OUT decrypts boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'netrun_check_secrets'
LANGUAGE C STRICT VOLATILE;

REVOKE ALL ON FUNCTION
    netrun_pool.check_secrets(),
    netrun_pool.register(text, text, text, text, text, text, integer, integer,
        integer, text, integer, integer, integer, integer, integer, boolean, boolean, integer, text, text, integer),
    netrun_pool.configure(text, text, text, text, text, text, integer, integer,
        integer, text, integer, integer, integer, integer, integer, boolean, boolean, integer, text, text, integer),
    netrun_pool.unregister(text, boolean),
    netrun_pool.grant_usage(text, regrole),
    netrun_pool.revoke_usage(text, regrole),
    netrun_pool._prepare_conninfo(text, text),
    netrun_pool._request_force_retire(text),
    netrun_pool._begin_registry_change(),
    netrun_pool._lock_registry(),
    netrun_pool._check_registry_row(netrun_pool.registry)
FROM PUBLIC;

------------------------------------------------------------------------------
-- Calls through the pool.  Usage on the connection is checked inside; the
-- worker runs the statement on a pooled connection.
------------------------------------------------------------------------------

-- Rows typed by the caller's column list, like dblink:
--   SELECT * FROM netrun_pool.query('orders', 'SELECT id, total FROM t') AS t(id int, total numeric)
CREATE FUNCTION netrun_pool.query(name text, sql text, params text[] DEFAULT NULL,
                                  read_only boolean DEFAULT false)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'netrun_query'
LANGUAGE C VOLATILE;

-- One jsonb object per row, keyed by remote column name.
CREATE FUNCTION netrun_pool.query_json(name text, sql text, params text[] DEFAULT NULL,
                                       read_only boolean DEFAULT false)
RETURNS SETOF jsonb
AS 'MODULE_PATHNAME', 'netrun_query_json'
LANGUAGE C VOLATILE;

-- The first column of the first row, or NULL.
CREATE FUNCTION netrun_pool.fetchval(name text, sql text, params text[] DEFAULT NULL,
                                     read_only boolean DEFAULT false)
RETURNS text
AS 'MODULE_PATHNAME', 'netrun_fetchval'
LANGUAGE C VOLATILE;

-- The remote command tag, for example 'INSERT 0 1'.
CREATE FUNCTION netrun_pool.exec(name text, sql text, params text[] DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'netrun_exec'
LANGUAGE C VOLATILE;

-- Statements in one remote transaction, all or nothing; their command tags.
CREATE FUNCTION netrun_pool.exec_transaction(name text, statements text[])
RETURNS text[]
AS 'MODULE_PATHNAME', 'netrun_exec_transaction'
LANGUAGE C VOLATILE;

-- Pin a connection and open a remote transaction for the rest of the local
-- transaction; it commits at the local commit, rolls back at the abort.
CREATE FUNCTION netrun_pool.begin(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'netrun_begin'
LANGUAGE C VOLATILE;

-- Session mode: give the session's connection back to the pool.
CREATE FUNCTION netrun_pool.release(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'netrun_release'
LANGUAGE C VOLATILE;

-- Try a connection once, through the pool, and say what happened: for the
-- first minutes after register(), and after a configure() of its
-- conninfo.  Never raises for the remote's failure: the answer says it
-- (ok false, the SQLSTATE, message, detail and hint of the error).
CREATE FUNCTION netrun_pool.test(name text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    answer jsonb;
    state text;
    msg text;
    detail text;
    hint text;
BEGIN
    SELECT j INTO answer
      FROM netrun_pool.query_json(name,
           'SELECT current_user AS "user", current_database() AS database, '
           'current_setting(''server_version'') AS server_version, '
           'pg_is_in_recovery() AS in_recovery') AS j;
    RETURN jsonb_build_object('ok', true) || answer ||
           jsonb_build_object('tenant_guard',
                              (SELECT c.tenant_guard_status FROM netrun_pool.connections c
                                WHERE c.name = test.name));
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    -- our own refusals about the name are the caller's mistake: raise them
    IF state IN ('42704', '42501', '22004', '42602', '55000') THEN
        RAISE;
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object('ok', false, 'sqlstate', state, 'error', msg,
                                                'detail', nullif(detail, ''), 'hint', nullif(hint, '')));
END
$$;

------------------------------------------------------------------------------
-- What operators read: pool metrics, health, probes for orchestrators.
-- Superusers and pg_monitor members see every connection; other roles see
-- the connections they have usage on.  Nothing here shows a secret.
------------------------------------------------------------------------------

-- One row per connection: pgbouncer's SHOW POOLS and SHOW STATS in one,
-- with percentiles and health.  Gauges are published by the worker every
-- 250 ms; counters and histograms are live.
CREATE FUNCTION netrun_pool.pool_stats(
    OUT name text, OUT cluster text, OUT role text, OUT pool_mode text,
    OUT status text,
    OUT pool_min integer, OUT pool_max integer, OUT max_overflow integer,
    OUT total integer, OUT checked_out integer, OUT idle integer,
    OUT overflow integer, OUT waiting integer, OUT available integer,
    OUT utilization_percent double precision,
    OUT acquired_total bigint, OUT acquire_wait_avg_ms double precision,
    OUT acquire_wait_p95_ms double precision, OUT acquire_wait_max_ms double precision,
    OUT queries_total bigint, OUT query_avg_ms double precision,
    OUT query_p95_ms double precision,
    OUT errors_total bigint, OUT timeouts_total bigint, OUT exhausted_total bigint,
    OUT created_total bigint, OUT closed_total bigint, OUT recycled_total bigint,
    OUT last_error text, OUT last_error_at timestamptz, OUT stats_reset timestamptz,
    OUT pipelined_total bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'netrun_pool_stats'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW netrun_pool.pool_stats AS SELECT * FROM netrun_pool.pool_stats();
GRANT SELECT ON netrun_pool.pool_stats TO PUBLIC;

-- One row per connection: what its health probes found.
CREATE FUNCTION netrun_pool.health(
    OUT name text, OUT status text, OUT latency_ms double precision,
    OUT checked_at timestamptz, OUT consecutive_failures integer,
    OUT circuit text, OUT is_replica boolean, OUT replica_lag_ms bigint,
    OUT server_version text, OUT remote_time timestamptz, OUT last_error text,
    OUT tenant_guard text, OUT tenant_guard_detail text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'netrun_health'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW netrun_pool.health AS SELECT * FROM netrun_pool.health();
GRANT SELECT ON netrun_pool.health TO PUBLIC;

-- The keys application pools report, for one connection (or cluster), or
-- for all with an overall status.
CREATE FUNCTION netrun_pool.health_check(name text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'netrun_health_check'
LANGUAGE C VOLATILE;

-- Readiness: the worker serves and the connections answer their probes.
CREATE FUNCTION netrun_pool.ready(name text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'netrun_ready'
LANGUAGE C VOLATILE;

-- Liveness: the worker is running.
CREATE FUNCTION netrun_pool.alive()
RETURNS boolean
AS 'MODULE_PATHNAME', 'netrun_alive'
LANGUAGE C VOLATILE;

-- Counters and histograms start again (health is kept).
CREATE FUNCTION netrun_pool.reset_stats(name text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'netrun_reset_stats'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION netrun_pool.reset_stats(text) FROM PUBLIC;

-- Every metric in the Prometheus text exposition format.
CREATE FUNCTION netrun_pool.prometheus()
RETURNS text
AS 'MODULE_PATHNAME', 'netrun_prometheus'
LANGUAGE C VOLATILE;

------------------------------------------------------------------------------
-- The tenant context.  netrun_pool.tenant_id can be read by anyone
-- (current_setting, current_tenant()) and changed only by these functions:
-- SET, set_config, ALTER ROLE/DATABASE SET, PGOPTIONS and RESET are refused.
------------------------------------------------------------------------------

-- Set the tenant (and its mirror, and in schema mode the search_path) with
-- the scope of set_config(..., is_local); returns the tenant as stored.
CREATE FUNCTION netrun_pool.set_tenant(tenant text, is_local boolean DEFAULT false)
RETURNS text
AS 'MODULE_PATHNAME', 'netrun_set_tenant'
LANGUAGE C VOLATILE;

-- The same from a compact JWT signed with HS256 under netrun_pool.tenant_key_file.
CREATE FUNCTION netrun_pool.set_tenant_token(token text, is_local boolean DEFAULT false)
RETURNS text
AS 'MODULE_PATHNAME', 'netrun_set_tenant_token'
LANGUAGE C VOLATILE;

CREATE FUNCTION netrun_pool.clear_tenant()
RETURNS void
AS 'MODULE_PATHNAME', 'netrun_clear_tenant'
LANGUAGE C VOLATILE;

-- The tenant, or NULL: a policy on it matches no row when none is set.
-- Write policies as tenant_id = (SELECT netrun_pool.current_tenant()::uuid),
-- the cast inside the subquery: it is then evaluated once per query, and
-- the scan compares with a value, not a text cast on every row.
CREATE FUNCTION netrun_pool.current_tenant()
RETURNS text
AS 'MODULE_PATHNAME', 'netrun_current_tenant'
LANGUAGE C STABLE PARALLEL SAFE;

-- The remote half of the tenant guard, on a server with
-- netrun_pool.tenant_mode = pool: a pool binds its session with
-- guard_hello() (which proves this server holds netrun_pool.guard_key_file)
-- and sets the tenant only with assertions signed with that key, bound to
-- the session and numbered.  Anyone may call them: a caller's own SQL runs
-- in the pool's session, and without the key it can assert nothing.
CREATE FUNCTION netrun_pool.guard_hello(challenge text)
RETURNS text
AS 'MODULE_PATHNAME', 'netrun_guard_hello'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION netrun_pool.guard_assert(tenant text, seq bigint, mac text)
RETURNS void
AS 'MODULE_PATHNAME', 'netrun_guard_assert'
LANGUAGE C VOLATILE;

-- netrun_pool.tenant_schema_prefix || the tenant as a slug ('-' -> '_').
CREATE FUNCTION netrun_pool.tenant_schema(tenant text DEFAULT NULL)
RETURNS name
AS 'MODULE_PATHNAME', 'netrun_tenant_schema'
LANGUAGE C STABLE PARALLEL SAFE;

-- 1 to 63 bytes of [a-z0-9_], not starting with a digit or pg_.
CREATE FUNCTION netrun_pool.validate_schema_name(text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'netrun_validate_schema_name'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

------------------------------------------------------------------------------
-- Row-level security that does what it says: verify it for the current
-- role, audit a database for the usual mistakes, set a table up the right
-- way, and stop (or flag) a careless CREATE or ALTER TABLE.
--
-- RLS does not protect rows from a superuser, from a role with BYPASSRLS,
-- or from the table's owner (and the members of the owning role) unless
-- FORCE ROW LEVEL SECURITY is set; and a table with RLS but no policy
-- hides every row.  These functions are not SECURITY DEFINER: they answer
-- for the role that calls them, or, given a connection, for the pool's
-- role on that remote, where the application's rows live.
------------------------------------------------------------------------------

-- The column that holds the tenant (netrun_pool.tenant_column).  Read with
-- missing_ok: in a database where the library is not loaded yet the
-- setting may not exist, and the event trigger must never break DDL.
CREATE FUNCTION netrun_pool._tenant_column()
RETURNS name
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(nullif(current_setting('netrun_pool.tenant_column', true), ''), 'tenant_id')::name
$$;

-- The facts every check below rests on, read from the catalogs of one
-- database by the role that asks there: this database and the current
-- role, or a remote and the pool's role on it (through query_json(), as
-- any pooled call).  One SQL text, _rls_facts_sql(), serves both, so a
-- remote is judged exactly as this database is.  It must stand alone on a
-- plain PostgreSQL (10 or later) without netrun_pool: every table and
-- function is schema-qualified (a temporary table named pg_class must not
-- answer) and nothing of ours is called.
--
-- One row per relation that matters, each with the asking role's facts;
-- when none matters, one row of the role's facts alone (table_name NULL),
-- so that the role findings are never lost.  Parameters:
--   $1 the tenant column;
--   $2 the setting a policy may read the tenant from: the mirror here, the
--      connection's tenant_setting on a remote;
--   $3 the schemas to audit (NULL: all but the system schemas, other
--      sessions' temporary schemas and netrun_pool);
--   $4 one relation by OID (here), or $5 by name (looked up where the text
--      runs): that relation whatever its kind, instead of the audit's
--      tables (those with the tenant column or RLS enabled).
-- A policy reads the tenant 'protected' when it calls
-- netrun_pool.current_tenant() (found by its dependency, whatever the
-- search_path makes pg_get_expr() print) or reads the netrun_pool.tenant_id
-- setting, and 'mirror' when it reads only the $2 setting.
CREATE TYPE netrun_pool._rls_fact AS (
    connection            text,     -- where it was read: NULL here
    tenant_setting        text,     -- $2
    role_name             text,     -- the role asking: current_user there
    role_superuser        boolean,
    role_bypassrls        boolean,
    bypassrls_login_roles jsonb,    -- names; superusers left out
    table_name            text,     -- schema.table, quoted where needed
    relname               text,
    relkind               text,
    enabled               boolean,
    forced                boolean,
    owned                 boolean,  -- by the role, or a role it is a member of
    has_tenant_column     boolean,
    policies              jsonb     -- [{"name", "permissive", "reference"}]
);

CREATE FUNCTION netrun_pool._rls_facts_sql()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN $facts$
WITH args AS (
    SELECT $1::pg_catalog.name AS tenant_column,
           NULLIF($2::pg_catalog.text, '') AS tenant_setting,
           $3::pg_catalog.name[] AS schemas,
           $4::pg_catalog.oid IS NOT NULL OR $5::pg_catalog.text IS NOT NULL AS one,
           coalesce($4::pg_catalog.oid,
                    pg_catalog.to_regclass($5::pg_catalog.text)::pg_catalog.oid) AS target
), me AS (
    SELECT r.rolname::pg_catalog.text AS role_name, r.rolsuper AS role_superuser,
           r.rolbypassrls AS role_bypassrls,
           (SELECT coalesce(pg_catalog.jsonb_agg(b.rolname::pg_catalog.text ORDER BY b.rolname), '[]')
              FROM pg_catalog.pg_roles b
             WHERE b.rolcanlogin AND b.rolbypassrls AND NOT b.rolsuper) AS bypassrls_login_roles
      FROM pg_catalog.pg_roles r
     WHERE r.rolname = CURRENT_USER
), tables AS (
    SELECT c.oid, pg_catalog.format('%I.%I', n.nspname, c.relname) AS table_name,
           c.relname::pg_catalog.text AS relname, c.relkind::pg_catalog.text AS relkind,
           c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
           pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owned,
           EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attname = args.tenant_column
                      AND a.attnum > 0 AND NOT a.attisdropped) AS has_tenant_column,
           args.one
      FROM args, pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE CASE WHEN args.one THEN c.oid = args.target
                WHEN args.schemas IS NULL THEN
                     c.relkind IN ('r', 'p')
                     AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'netrun_pool')
                     AND n.nspname NOT LIKE E'pg\\_toast%'
                     AND (n.nspname NOT LIKE E'pg\\_temp\\_%' OR n.oid = pg_catalog.pg_my_temp_schema())
                ELSE c.relkind IN ('r', 'p') AND n.nspname = ANY (args.schemas) END
), policies AS (
    SELECT p.polrelid,
           pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'name', p.polname, 'permissive', p.polpermissive,
               'reference', CASE
                   WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                  JOIN pg_catalog.pg_proc f ON f.oid = d.refobjid
                                  JOIN pg_catalog.pg_namespace fn ON fn.oid = f.pronamespace
                                 WHERE d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass
                                   AND d.objid = p.oid
                                   AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                                   AND fn.nspname = 'netrun_pool' AND f.proname = 'current_tenant')
                     OR pg_catalog.strpos(x.expr, '''netrun_pool.tenant_id''') > 0 THEN 'protected'
                   WHEN pg_catalog.strpos(x.expr, pg_catalog.quote_literal(args.tenant_setting)) > 0
                     THEN 'mirror'
               END) ORDER BY p.polname) AS policies
      FROM args, pg_catalog.pg_policy p
     CROSS JOIN LATERAL (
           SELECT coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '') || ' ' ||
                  coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '') AS expr) x
     WHERE p.polrelid IN (SELECT t.oid FROM tables t)
     GROUP BY p.polrelid
)
SELECT args.tenant_setting, me.role_name, me.role_superuser, me.role_bypassrls,
       me.bypassrls_login_roles, t.table_name, t.relname, t.relkind, t.enabled, t.forced,
       t.owned, t.has_tenant_column, coalesce(p.policies, '[]') AS policies
  FROM args CROSS JOIN me
  LEFT JOIN (tables t LEFT JOIN policies p ON p.polrelid = t.oid)
         ON t.one OR t.has_tenant_column OR t.enabled
$facts$;

-- The connections a remote check runs on, by name: the connection of that
-- name, or every enabled member of the cluster of that name that the
-- caller may use, each with its tenant_setting.  A name that is neither
-- (or a cluster with no such member) comes back as it is, so that
-- query_json() refuses it with the error any call on it gets.
CREATE FUNCTION netrun_pool._rls_targets(target text)
RETURNS TABLE (name text, tenant_setting text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH members AS (
        SELECT c.name, c.tenant_setting FROM netrun_pool.connections c
         WHERE c.cluster = target AND c.enabled AND netrun_pool.has_usage(c.name)
           AND NOT EXISTS (SELECT 1 FROM netrun_pool.connections x WHERE x.name = target)
    )
    SELECT m.name, m.tenant_setting FROM members m
    UNION ALL
    SELECT target, (SELECT x.tenant_setting FROM netrun_pool.connections x WHERE x.name = target)
     WHERE NOT EXISTS (SELECT 1 FROM members)
    ORDER BY 1
$$;

-- The facts, here (connection NULL: for the current role, with the mirror
-- setting) or on each target of a connection or cluster name (for the
-- pool's role there, with the connection's tenant_setting).  The tenant
-- column is ours in both cases: it is the application's.
CREATE FUNCTION netrun_pool._rls_facts(connection text, schemas name[], rel_oid oid, rel_name text)
RETURNS SETOF netrun_pool._rls_fact
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target record;
BEGIN
    IF connection IS NULL THEN
        RETURN QUERY EXECUTE 'SELECT NULL::text, f.* FROM (' || netrun_pool._rls_facts_sql() || ') f'
            USING netrun_pool._tenant_column(), current_setting('netrun_pool.tenant_setting', true),
                  schemas, rel_oid, rel_name;
        RETURN;
    END IF;
    FOR target IN SELECT * FROM netrun_pool._rls_targets(connection) LOOP
        RETURN QUERY
        SELECT f.*
          FROM netrun_pool.query_json(target.name, netrun_pool._rls_facts_sql(),
                   ARRAY[netrun_pool._tenant_column()::text, target.tenant_setting,
                         schemas::text, NULL, rel_name]) j
         CROSS JOIN LATERAL jsonb_populate_record(NULL::netrun_pool._rls_fact,
                   j || jsonb_build_object('connection', target.name)) f;
    END LOOP;
END
$$;

-- rls_status()'s answer from a table's facts.  The reasons are checked in
-- this order: the table first, then who is asking, as the executor decides
-- (check_enable_rls): superuser, then the role's own BYPASSRLS (not
-- inherited), then ownership, which members of the owning role share.
CREATE FUNCTION netrun_pool._rls_status(f netrun_pool._rls_fact)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'table', f.table_name,
        'enabled', f.enabled,
        'forced', f.forced,
        'policies', jsonb_array_length(f.policies),
        'uses_tenant', EXISTS (SELECT 1 FROM jsonb_array_elements(f.policies) p
                                WHERE p ->> 'reference' IS NOT NULL),
        'bypassed_by_current_role', b.bypassed,
        'reason', CASE
            WHEN NOT f.enabled THEN 'row-level security is not enabled'
            WHEN jsonb_array_length(f.policies) = 0 THEN 'no policy exists'
            WHEN f.role_superuser THEN 'the current role is a superuser'
            WHEN f.role_bypassrls THEN 'the current role has BYPASSRLS'
            WHEN b.bypassed THEN 'the current role owns the table and FORCE is not set'
            ELSE 'row-level security applies to the current role'
        END)
      FROM (SELECT f.role_superuser OR f.role_bypassrls OR (f.owned AND NOT f.forced) AS bypassed) b
$$;

-- verify_rls_enabled()'s yes or no, from a status.
CREATE FUNCTION netrun_pool._rls_verified(status jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN (status ->> 'enabled')::boolean
   AND (status ->> 'policies')::integer > 0
   AND NOT (status ->> 'bypassed_by_current_role')::boolean;

-- Whether RLS protects a table's rows from the current role, and why.
CREATE FUNCTION netrun_pool.rls_status(tbl regclass)
RETURNS jsonb
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f netrun_pool._rls_fact;
BEGIN
    SELECT * INTO f FROM netrun_pool._rls_facts(NULL, NULL, tbl, NULL);
    IF f.table_name IS NULL OR f.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', coalesce(f.relname, tbl::text)
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Row-level security applies to ordinary and partitioned tables.';
    END IF;
    -- the name as regclass prints it under this search_path, as always
    RETURN netrun_pool._rls_status(f) || jsonb_build_object('table', tbl::text);
END
$$;

COMMENT ON FUNCTION netrun_pool.rls_status(regclass) IS
    'whether row-level security protects the rows of a table from the current role, and why';

-- The same on a remote, for the pool's role there: the table is named as
-- text, looked up on the remote.  The answer also says where ("connection")
-- and for whom ("role").  For a cluster name, every member is asked, and
-- the answer is the first member's (by name) where RLS does not protect
-- the rows, else the first member's.
CREATE FUNCTION netrun_pool._rls_remote_status(tbl text, connection text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f       netrun_pool._rls_fact;
    status  jsonb;
    weakest jsonb;
BEGIN
    FOR f IN SELECT * FROM netrun_pool._rls_facts(connection, NULL, NULL, tbl) LOOP
        IF f.table_name IS NULL THEN
            RAISE EXCEPTION 'relation "%" does not exist on netrun_pool connection "%"',
                  netrun_pool._message_value(tbl), f.connection
                USING ERRCODE = 'undefined_table',
                      HINT = 'The name is looked up on the remote, in the search_path of the connection''s role there.';
        END IF;
        IF f.relkind NOT IN ('r', 'p') THEN
            RAISE EXCEPTION '"%" is not a table', f.relname
                USING ERRCODE = 'wrong_object_type',
                      DETAIL = 'Row-level security applies to ordinary and partitioned tables.';
        END IF;
        status := netrun_pool._rls_status(f)
                  || jsonb_build_object('connection', f.connection, 'role', f.role_name);
        IF weakest IS NULL
           OR (netrun_pool._rls_verified(weakest) AND NOT netrun_pool._rls_verified(status)) THEN
            weakest := status;
        END IF;
    END LOOP;
    RETURN weakest;
END
$$;

-- The text form: on a connection (or cluster), or here when connection is
-- NULL.  No SET search_path, so that here the name is looked up in the
-- caller's search_path, as regclass would be; the body is bound when the
-- function is created.
CREATE FUNCTION netrun_pool.rls_status(tbl text, connection text)
RETURNS jsonb
LANGUAGE sql VOLATILE
RETURN CASE WHEN tbl IS NULL THEN NULL
            WHEN connection IS NULL THEN netrun_pool.rls_status(tbl::regclass)
            ELSE netrun_pool._rls_remote_status(tbl, connection) END;

COMMENT ON FUNCTION netrun_pool.rls_status(text, text) IS
    'whether row-level security protects the rows of a table on a remote from the pool''s role there, and why';

-- True only when RLS is enabled, a policy exists and the current role does
-- not bypass it.
CREATE FUNCTION netrun_pool.verify_rls_enabled(tbl regclass)
RETURNS boolean
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT netrun_pool._rls_verified(netrun_pool.rls_status(tbl))
$$;

COMMENT ON FUNCTION netrun_pool.verify_rls_enabled(regclass) IS
    'true if row-level security protects the rows of the table from the current role';

-- On a remote, for the pool's role there; for a cluster, on every member.
CREATE FUNCTION netrun_pool.verify_rls_enabled(tbl text, connection text)
RETURNS boolean
LANGUAGE sql VOLATILE
RETURN netrun_pool._rls_verified(netrun_pool.rls_status(tbl, connection));

COMMENT ON FUNCTION netrun_pool.verify_rls_enabled(text, text) IS
    'true if row-level security protects the rows of a table on a remote from the pool''s role there';

-- Every mistake that makes RLS silently do nothing, in the given schemas,
-- here for the current role, or on a connection for the pool's role there
-- (on each member of a cluster; "remote" says which).  Tables count when
-- they have the tenant column or RLS enabled; policies are checked on
-- tables with the tenant column, and only permissive ones (a restrictive
-- policy can only narrow what a tenant sees).  Role findings have no
-- table.  Superusers have one finding: RLS never applies to them, whatever
-- else is true.  A hint for a remote says what to run there, and never
-- names our functions, which a plain remote does not have.
CREATE FUNCTION netrun_pool.rls_audit(schemas name[] DEFAULT NULL, connection text DEFAULT NULL)
RETURNS TABLE (table_name text, severity text, finding text, hint text, remote text)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
WITH facts AS (
    SELECT f.*,
           CASE WHEN f.connection IS NULL THEN 'Run ' ELSE 'On the remote, run ' END AS run,
           CASE WHEN f.connection IS NULL THEN 'Connect the application as a role'
                ELSE 'Register the connection with a remote role' END AS connect_as,
           netrun_pool._tenant_column() AS tenant_column
      FROM netrun_pool._rls_facts(rls_audit.connection, schemas, NULL, NULL) f
), me AS (
    SELECT DISTINCT ON (f.connection) f.* FROM facts f
), checked AS (
    SELECT * FROM facts WHERE table_name IS NOT NULL
), policies AS (
    SELECT t.*, p.name AS polname, p.permissive AS polpermissive, p.reference AS tenant_reference
      FROM checked t,
           jsonb_to_recordset(t.policies) AS p(name text, permissive boolean, reference text)
), findings AS (
    SELECT connection, table_name, 'critical' AS severity,
           format('table has column "%s" but row-level security is not enabled', tenant_column) AS finding,
           CASE WHEN connection IS NULL
                THEN format('Run SELECT netrun_pool.enable_tenant_rls(%L);', table_name)
                ELSE format('On the remote, run ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY; and create a policy on "%s".',
                            table_name, tenant_column) END AS hint
      FROM checked WHERE has_tenant_column AND NOT enabled
    UNION ALL
    SELECT connection, table_name, 'critical',
           'the current role owns the table and FORCE is not set: row-level security does not apply to it',
           format('%s that does not own the table, or %sALTER TABLE %s FORCE ROW LEVEL SECURITY;',
                  connect_as, lower(run), table_name)
      FROM checked WHERE owned AND enabled AND NOT forced AND NOT role_superuser
    UNION ALL
    SELECT connection, table_name, 'warning',
           'the current role owns the table: it can turn row-level security off',
           format('%s that does not own its tables.', connect_as)
      FROM checked WHERE owned AND enabled AND forced AND NOT role_superuser
    UNION ALL
    SELECT connection, table_name, 'warning',
           'row-level security is not forced: the table owner bypasses it',
           format('%sALTER TABLE %s FORCE ROW LEVEL SECURITY;', run, table_name)
      FROM checked WHERE enabled AND NOT forced
    UNION ALL
    SELECT connection, table_name, 'critical',
           'row-level security is enabled but no policy exists: every row is hidden',
           CASE WHEN connection IS NULL AND has_tenant_column
                THEN format('Run SELECT netrun_pool.enable_tenant_rls(%L);', table_name)
                WHEN connection IS NULL
                THEN 'Create a policy with CREATE POLICY, or disable row-level security.'
                WHEN has_tenant_column
                THEN format('On the remote, create a policy on "%s" with CREATE POLICY.', tenant_column)
                ELSE 'On the remote, create a policy with CREATE POLICY, or disable row-level security.' END
      FROM checked WHERE enabled AND jsonb_array_length(policies) = 0
    UNION ALL
    SELECT connection, table_name, 'warning',
           format('policy "%s" does not reference the tenant', polname),
           format('Permissive policies are combined with OR, so it widens what every tenant sees: compare "%s" with %s in it, or drop it.',
                  tenant_column,
                  CASE WHEN connection IS NULL THEN '(SELECT netrun_pool.current_tenant())'
                       ELSE format('current_setting(%L, true)', tenant_setting) END)
      FROM policies WHERE has_tenant_column AND polpermissive AND tenant_reference IS NULL
    UNION ALL
    SELECT connection, table_name, 'info',
           format('policy "%s" reads the tenant from setting "%s", which any SQL can SET',
                  polname, tenant_setting),
           CASE WHEN connection IS NULL
                THEN format('Compare with (SELECT netrun_pool.current_tenant()) instead, which cannot be spoofed: SELECT netrun_pool.enable_tenant_rls(%L) writes such a policy.',
                            table_name)
                ELSE 'The pool sets it on every call, but the SQL a caller sends through the pool can set it too. Run netrun_pool on the remote (tenant_mode = pool) and compare with (SELECT netrun_pool.current_tenant()) there: only the pool''s signed assertions set that.' END
      FROM policies WHERE tenant_reference = 'mirror'
    UNION ALL
    SELECT connection, NULL, 'critical',
           'the current role is a superuser: row-level security does not apply to it',
           format('%s that is neither a superuser nor the owner of its tables.', connect_as)
      FROM me WHERE role_superuser
    UNION ALL
    SELECT connection, NULL, 'critical',
           'the current role has BYPASSRLS: row-level security does not apply to it',
           format('%s without BYPASSRLS, or %sALTER ROLE %I NOBYPASSRLS;',
                  connect_as, lower(run), role_name)
      FROM me WHERE role_bypassrls AND NOT role_superuser
    UNION ALL
    SELECT m.connection, NULL, 'warning',
           format('login role "%s" has BYPASSRLS: row-level security does not apply to it', r.name),
           format('%sALTER ROLE %I NOBYPASSRLS; unless it is meant to see every tenant''s rows.',
                  m.run, r.name)
      FROM me m, jsonb_array_elements_text(m.bypassrls_login_roles) AS r(name)
     WHERE r.name <> m.role_name
)
SELECT f.table_name, f.severity, f.finding, f.hint, f.connection FROM findings f
 ORDER BY CASE f.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
          f.connection COLLATE "C" NULLS FIRST, f.table_name COLLATE "C" NULLS FIRST,
          f.finding COLLATE "C"
$$;

COMMENT ON FUNCTION netrun_pool.rls_audit(name[], text) IS
    'tables and roles for which row-level security does not keep tenants apart, with how to fix each';

-- Set a table up for tenant isolation: RLS enabled (and FORCEd), and one
-- policy, netrun_pool_tenant_isolation, comparing the tenant column with
-- (SELECT netrun_pool.current_tenant()::type).  The subquery makes the
-- tenant an InitPlan, computed and cast once per query instead of once per
-- row.  The tenant
-- is cast to the column's type without its typmod, and not at all for
-- string types: a cast to varchar(n) or numeric(p) would truncate or round
-- it into another tenant's id.  Idempotent; force => false leaves FORCE as
-- it is.  ALTER TABLE requires the owner.
CREATE FUNCTION netrun_pool.enable_tenant_rls(tbl regclass, tenant_column name DEFAULT NULL,
                                              force boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col     name := coalesce(tenant_column, netrun_pool._tenant_column());
    rel     record;
    category "char";
    typname text;
    tenant  text := '(SELECT netrun_pool.current_tenant())';
    cond    text;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relkind, c.relname INTO rel FROM pg_class c WHERE c.oid = tbl;
    IF NOT FOUND OR rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', coalesce(rel.relname::text, tbl::text)
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Row-level security applies to ordinary and partitioned tables.';
    END IF;
    SELECT t.typcategory, format_type(a.atttypid, NULL) INTO category, typname
      FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" does not exist in table "%"', col, rel.relname
            USING ERRCODE = 'undefined_column',
                  HINT = 'Pass the tenant column as tenant_column, or set netrun_pool.tenant_column.';
    END IF;
    -- The cast goes inside the subquery: the InitPlan then yields a value
    -- of the column's type, and the scan compares with it, instead of
    -- casting text on every row (five times slower on a uuid column,
    -- bench/tenant_policy.sh).
    IF category <> 'S' THEN
        tenant := format('(SELECT netrun_pool.current_tenant()::%s)', typname);
    END IF;
    cond := format('%I = %s', col, tenant);

    -- tbl::text is qualified and quoted under this function's search_path.
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    IF force THEN
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_policy p
                WHERE p.polrelid = tbl AND p.polname = 'netrun_pool_tenant_isolation') THEN
        EXECUTE format('DROP POLICY netrun_pool_tenant_isolation ON %s', tbl);
    END IF;
    EXECUTE format('CREATE POLICY netrun_pool_tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING (%s) WITH CHECK (%s)',
                   tbl, cond, cond);
END
$$;

COMMENT ON FUNCTION netrun_pool.enable_tenant_rls(regclass, name, boolean) IS
    'enable (and force) row-level security on a table, with one policy on the current tenant';

-- netrun_pool.enforce_rls: tables that have the tenant column and no RLS.
--
-- CREATE TABLE cannot enable RLS in the same statement, so the check is
-- deferred to the end of the transaction: the event trigger notes each
-- such table in _rls_pending, whose deferred constraint trigger checks it
-- again at commit.  A table created and set up with enable_tenant_rls()
-- in one transaction passes; a lone CREATE TABLE (autocommit) warns or
-- fails as it ends.  The mode is read again at commit, so a superuser may
-- SET LOCAL netrun_pool.enforce_rls = off for one transaction.
CREATE UNLOGGED TABLE netrun_pool._rls_pending (
    relid         oid NOT NULL,
    tenant_column name NOT NULL
);

-- Any role's DDL adds rows (the event trigger runs as that role); only the
-- check, as the extension's owner, reads and removes them.  Rows never
-- outlive their transaction.
REVOKE ALL ON netrun_pool._rls_pending FROM PUBLIC;
GRANT INSERT ON netrun_pool._rls_pending TO PUBLIC;

CREATE FUNCTION netrun_pool._rls_pending_check()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mode text := coalesce(current_setting('netrun_pool.enforce_rls', true), 'off');
    rel  record;
BEGIN
    -- The first firing for a table takes all its rows: one report each.
    DELETE FROM netrun_pool._rls_pending p WHERE p.relid = NEW.relid;
    IF NOT FOUND OR mode = 'off' THEN
        RETURN NULL;
    END IF;
    -- Dropped, given RLS, or the column dropped since: nothing to say.
    SELECT c.relname, format('%I.%I', n.nspname, c.relname) AS qualified INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = NEW.relid AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
       AND EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attname = NEW.tenant_column
                      AND a.attnum > 0 AND NOT a.attisdropped);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF mode = 'error' THEN
        RAISE EXCEPTION 'table "%" has column "%" but no row-level security', rel.relname, NEW.tenant_column
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'netrun_pool.enforce_rls is "error": a table with the tenant column must have row-level security by the end of the transaction that creates or alters it.',
                  HINT = format('Run SELECT netrun_pool.enable_tenant_rls(%L); in the same transaction.',
                                rel.qualified);
    END IF;
    RAISE WARNING 'table "%" has column "%" but no row-level security', rel.relname, NEW.tenant_column
        USING HINT = format('Run SELECT netrun_pool.enable_tenant_rls(%L);', rel.qualified);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER rls_pending_check
    AFTER INSERT ON netrun_pool._rls_pending
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION netrun_pool._rls_pending_check();

-- Not SECURITY DEFINER: it runs as whoever runs the DDL, and returns at
-- once when enforce_rls is off.  Temporary tables are private to their
-- session and left alone (they may also be created in read-only
-- transactions, where the note could not be written), as are our own.
CREATE FUNCTION netrun_pool._enforce_rls()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mode text := coalesce(current_setting('netrun_pool.enforce_rls', true), 'off');
    col  name;
BEGIN
    IF mode = 'off' THEN
        RETURN;
    END IF;
    col := netrun_pool._tenant_column();
    INSERT INTO netrun_pool._rls_pending (relid, tenant_column)
    SELECT DISTINCT c.oid, col
      FROM pg_event_trigger_ddl_commands() d
      JOIN pg_class c ON c.oid = d.objid
     WHERE d.classid = 'pg_class'::regclass
       AND c.relkind IN ('r', 'p')
       AND c.relpersistence <> 't'
       AND c.relnamespace <> 'netrun_pool'::regnamespace
       AND NOT c.relrowsecurity
       AND EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attname = col
                      AND a.attnum > 0 AND NOT a.attisdropped);
END
$$;

------------------------------------------------------------------------------
-- Tenant routing: which connection serves a tenant.  Routes are kept with
-- the registry (same database, superusers only) and go when their
-- connection is unregistered.
------------------------------------------------------------------------------

CREATE TABLE netrun_pool.tenant_routes (
    tenant     text PRIMARY KEY,
    connection text NOT NULL REFERENCES netrun_pool.registry (name) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON netrun_pool.tenant_routes FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('netrun_pool.tenant_routes', '');

-- A tenant as current_tenant() returns it (set_tenant()'s own check and
-- canonical form, in C): routes and look-ups use it.  With strict, a
-- tenant set_tenant() would refuse is its error; otherwise it is kept as
-- given, and matches no route.
CREATE FUNCTION netrun_pool._normalize_tenant(tenant text, strict boolean)
RETURNS text
AS 'MODULE_PATHNAME', 'netrun_normalize_tenant'
LANGUAGE C STABLE STRICT PARALLEL SAFE;


-- Route a tenant to a connection (a new route, or a changed one).
CREATE FUNCTION netrun_pool.route_tenant(tenant text, connection text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    route_key text;
BEGIN
    PERFORM netrun_pool._lock_registry();
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'tenant must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tenant = '' THEN
        RAISE EXCEPTION 'tenant must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A route for a tenant that set_tenant() would refuse could never be
    -- used: the same check, in the same words.
    route_key := netrun_pool._normalize_tenant(tenant, true);
    IF connection IS NULL THEN
        RAISE EXCEPTION 'netrun_pool connection name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM netrun_pool._require_connection(connection);
    INSERT INTO netrun_pool.tenant_routes (tenant, connection)
    VALUES (route_key, route_tenant.connection)
        ON CONFLICT ON CONSTRAINT tenant_routes_pkey
        DO UPDATE SET connection = EXCLUDED.connection;
END
$$;

-- Remove a tenant's route; a tenant without one is a notice, as DROP ...
-- IF EXISTS does, so scripts may run it again.
CREATE FUNCTION netrun_pool.unroute_tenant(tenant text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM netrun_pool._lock_registry();
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'tenant must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    DELETE FROM netrun_pool.tenant_routes r
     WHERE r.tenant = netrun_pool._normalize_tenant(unroute_tenant.tenant, false);
    IF NOT FOUND THEN
        RAISE NOTICE 'tenant "%" has no route, skipping', netrun_pool._message_value(tenant);
    END IF;
END
$$;

-- The connection for a tenant (by default the current one): its route,
-- else netrun_pool.default_tenant_connection, else NULL.  SECURITY DEFINER
-- so that every role may read the routes, which it cannot select.
CREATE FUNCTION netrun_pool.tenant_connection(tenant text DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT r.connection FROM netrun_pool.tenant_routes r
          WHERE r.tenant = netrun_pool._normalize_tenant(coalesce(tenant_connection.tenant,
                                                                   netrun_pool.current_tenant()), false)),
        nullif(current_setting('netrun_pool.default_tenant_connection', true), ''))
$$;

COMMENT ON FUNCTION netrun_pool.tenant_connection(text) IS
    'the connection that serves a tenant: its route, else netrun_pool.default_tenant_connection';

REVOKE ALL ON FUNCTION
    netrun_pool.route_tenant(text, text),
    netrun_pool.unroute_tenant(text),
    netrun_pool._rls_pending_check(),
    netrun_pool._enforce_rls()
FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    netrun_pool.rls_status(regclass),
    netrun_pool.rls_status(text, text),
    netrun_pool.verify_rls_enabled(regclass),
    netrun_pool.verify_rls_enabled(text, text),
    netrun_pool.rls_audit(name[], text),
    netrun_pool.enable_tenant_rls(regclass, name, boolean),
    netrun_pool.tenant_connection(text)
TO PUBLIC;

-- The worker, waiting for this extension, looks at once when this
-- transaction commits (it counts as a registry change), so that a call
-- made right after CREATE EXTENSION finds it running.
CREATE FUNCTION netrun_pool._registry_touch()
RETURNS void
AS 'MODULE_PATHNAME', 'netrun_registry_touch'
LANGUAGE C STRICT VOLATILE;

REVOKE ALL ON FUNCTION netrun_pool._registry_touch() FROM PUBLIC;

SELECT netrun_pool._registry_touch();

-- Last, so that it sees none of the statements above.
CREATE EVENT TRIGGER netrun_pool_enforce_rls
    ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE TABLE AS', 'SELECT INTO')
    EXECUTE FUNCTION netrun_pool._enforce_rls();
