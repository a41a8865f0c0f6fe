-- netrun_pool, S1: a SELECT 1 round trip through the pool
SELECT netrun_pool.fetchval('@POOL@', 'SELECT 1');
