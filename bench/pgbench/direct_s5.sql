-- pgbench straight at the remote, S5
\set v random(1, 1000000)
INSERT INTO ins(v) VALUES (:v);
