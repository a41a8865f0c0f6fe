-- postgres_fdw, S4: OFFSET 0 keeps the aggregate local, so the 100,000 rows
-- travel (without it postgres_fdw would push count/sum down to the remote)
SELECT count(*), sum(length(payload)) FROM (SELECT id, payload FROM f_t WHERE id <= 100000 OFFSET 0) s;
