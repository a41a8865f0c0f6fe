-- postgres_fdw, S3
\set id random(1, 999901)
SELECT id, payload FROM f_t WHERE id BETWEEN :id AND :id + 99;
