-- dblink, S3, persistent connection
\if :connected = 0
SELECT dblink_connect('bench', '@CONNSTR@');
\set connected 1
\endif
\set id random(1, 999901)
SELECT * FROM dblink('bench', 'SELECT id, payload FROM t WHERE id BETWEEN ' || :id || ' AND ' || :id || ' + 99') AS t(id int, payload text);
