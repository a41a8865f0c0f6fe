-- netrun_pool, S7: S2 as a read-only call (BEGIN READ ONLY ... COMMIT on the remote)
\set id random(1, 1000000)
SELECT * FROM netrun_pool.query('@POOL@', 'SELECT id, payload FROM t WHERE id = $1', ARRAY[:id::text], read_only => true) AS t(id int, payload text);
