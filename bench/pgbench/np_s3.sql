-- netrun_pool, S3: 100 rows (a primary-key range)
\set id random(1, 999901)
SELECT * FROM netrun_pool.query('@POOL@', 'SELECT id, payload FROM t WHERE id BETWEEN $1 AND $1 + 99', ARRAY[:id::text]) AS t(id int, payload text);
