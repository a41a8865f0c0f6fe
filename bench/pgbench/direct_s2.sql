-- pgbench straight at the remote, S2
\set id random(1, 1000000)
SELECT id, payload FROM t WHERE id = :id;
