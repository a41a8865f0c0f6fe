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
    OUT reloads bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'netrun_worker_status'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION netrun_pool.worker_status() IS
    'state of the netrun_pool launcher and worker processes';

REVOKE ALL ON FUNCTION netrun_pool.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION netrun_pool.worker_status() TO pg_monitor;
