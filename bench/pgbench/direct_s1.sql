-- pgbench straight at the remote, S1
SELECT 1;
