-- netrun_pool, S4: a 100,000-row result, counted and summed in the local backend
SELECT count(*), sum(length(payload)) FROM netrun_pool.query('@POOL@', 'SELECT id, payload FROM t WHERE id <= 100000') AS t(id int, payload text);
