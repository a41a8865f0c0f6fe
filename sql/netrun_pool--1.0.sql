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
    tenant_setting       text NOT NULL DEFAULT 'app.current_tenant_id'
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
    -- A cluster name stands wherever a connection name is accepted, so it
    -- follows the same rules and must not be mistaken for a connection.
    IF r.cluster IS NOT NULL AND r.cluster !~ '^[a-z_][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid cluster name "%"', r.cluster
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
        RAISE EXCEPTION 'invalid tenant_setting "%" for netrun_pool connection "%"', r.tenant_setting, r.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a custom setting name such as app.current_tenant_id.';
    END IF;
    IF octet_length(r.region) > 63 THEN
        RAISE EXCEPTION 'region must be at most 63 bytes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF r.kind NOT IN ('admin', 'shared', 'analytics', 'dedicated') THEN
        RAISE EXCEPTION 'invalid kind "%" for netrun_pool connection "%"', r.kind, r.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Valid kinds are admin, shared, analytics and dedicated.';
    END IF;
    IF r.role NOT IN ('primary', 'replica') THEN
        RAISE EXCEPTION 'invalid role "%" for netrun_pool connection "%"', r.role, r.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Valid roles are primary and replica.';
    END IF;
    IF r.pool_mode NOT IN ('transaction', 'session', 'none') THEN
        RAISE EXCEPTION 'invalid pool_mode "%" for netrun_pool connection "%"', r.pool_mode, r.name
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
            ('max_replica_lag_ms', r.max_replica_lag_ms, 0)) v
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
                                  n_conns, r.pool_max + r.max_overflow, max_conns),
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
        RAISE EXCEPTION 'invalid netrun_pool connection name "%"', name
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
    RAISE EXCEPTION 'netrun_pool connection "%" does not exist', name
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
    tenant_setting text DEFAULT 'app.current_tenant_id')
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
             now(), now(), max_replica_lag_ms, tenant_setting);
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
    tenant_setting text DEFAULT NULL)
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
       r.max_replica_lag_ms, r.tenant_setting, r.created_at, r.updated_at
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
        integer, text, integer, integer, integer, integer, integer, boolean, boolean, integer, text),
    netrun_pool.configure(text, text, text, text, text, text, integer, integer,
        integer, text, integer, integer, integer, integer, integer, boolean, boolean, integer, text),
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
    OUT last_error text, OUT last_error_at timestamptz, OUT stats_reset timestamptz)
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
    OUT server_version text, OUT remote_time timestamptz, OUT last_error text)
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
