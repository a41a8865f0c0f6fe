-- dblink, S3, connecting on every call
\set id random(1, 999901)
SELECT * FROM dblink('@CONNSTR@', 'SELECT id, payload FROM t WHERE id BETWEEN ' || :id || ' AND ' || :id || ' + 99') AS t(id int, payload text);
