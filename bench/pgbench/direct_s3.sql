-- pgbench straight at the remote, S3
\set id random(1, 999901)
SELECT id, payload FROM t WHERE id BETWEEN :id AND :id + 99;
