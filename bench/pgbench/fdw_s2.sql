-- postgres_fdw, S2: the WHERE clause is pushed down
\set id random(1, 1000000)
SELECT id, payload FROM f_t WHERE id = :id;
