-- postgres_fdw, S5
\set v random(1, 1000000)
INSERT INTO f_ins(v) VALUES (:v);
