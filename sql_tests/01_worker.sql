--
-- The module, its settings and its processes.
--
-- The temp instance preloads netrun_pool with netrun_pool.database set to
-- this test database, so the worker connects here and waits for us to
-- create the extension.
--
CREATE EXTENSION netrun_pool;

-- The worker picks the new extension up within a second or two; wait for
-- it (bounded) instead of sleeping a fixed time.
DO $$
BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN (SELECT state FROM netrun_pool.worker_status()) = 'running';
    PERFORM pg_sleep(0.1);
  END LOOP;
END
$$;

SELECT state, database,
       launcher_pid > 0 AS has_launcher,
       worker_pid > 0 AS has_worker,
       started_at <= now() AS started_in_past,
       starts >= 1 AS started_once
  FROM netrun_pool.worker_status();

-- Both processes show in pg_stat_activity under their own backend_type; the
-- worker is connected to netrun_pool.database, the launcher to none.
SELECT backend_type, datname
  FROM pg_stat_activity
 WHERE backend_type LIKE 'netrun_pool%'
 ORDER BY backend_type;

SELECT a.pid = s.worker_pid AS same_worker
  FROM pg_stat_activity a, netrun_pool.worker_status() s
 WHERE a.backend_type = 'netrun_pool worker';

-- Settings: the prefix is reserved, so a typo is an error, not a silent
-- placeholder.
SHOW netrun_pool.database;
SET netrun_pool.databse = 'x';
SET netrun_pool.database = 'x';

-- worker_status() is for monitoring roles.
CREATE ROLE netrun_nobody;
SET ROLE netrun_nobody;
SELECT state FROM netrun_pool.worker_status();
RESET ROLE;
GRANT pg_monitor TO netrun_nobody;
SET ROLE netrun_nobody;
SELECT state FROM netrun_pool.worker_status();
RESET ROLE;
DROP ROLE netrun_nobody;

-- The extension lives in its own schema and cannot be moved.
SELECT extname, extnamespace::regnamespace, extrelocatable
  FROM pg_extension WHERE extname = 'netrun_pool';
ALTER EXTENSION netrun_pool SET SCHEMA public;
