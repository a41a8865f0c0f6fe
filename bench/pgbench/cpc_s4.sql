-- dblink, S4, connecting on every call
SELECT count(*), sum(length(payload)) FROM dblink('@CONNSTR@', 'SELECT id, payload FROM t WHERE id <= 100000') AS t(id int, payload text);
