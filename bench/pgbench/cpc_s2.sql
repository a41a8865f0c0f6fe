-- dblink, S2, connecting on every call
\set id random(1, 1000000)
SELECT * FROM dblink('@CONNSTR@', 'SELECT id, payload FROM t WHERE id = ' || :id) AS t(id int, payload text);
