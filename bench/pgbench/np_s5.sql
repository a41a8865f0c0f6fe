-- netrun_pool, S5: an INSERT of one row
\set v random(1, 1000000)
SELECT netrun_pool.exec('@POOL@', 'INSERT INTO ins(v) VALUES ($1)', ARRAY[:v::text]);
