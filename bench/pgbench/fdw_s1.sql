-- postgres_fdw, S1: f_one is a foreign table over the remote view one (SELECT 1 AS x)
SELECT x FROM f_one;
