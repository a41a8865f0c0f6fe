-- netrun_pool, S2: one row by primary key
\set id random(1, 1000000)
SELECT * FROM netrun_pool.query('@POOL@', 'SELECT id, payload FROM t WHERE id = $1', ARRAY[:id::text]) AS t(id int, payload text);
