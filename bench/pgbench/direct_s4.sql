-- pgbench straight at the remote, S4: the 100,000 rows travel to pgbench
SELECT id, payload FROM t WHERE id <= 100000;
