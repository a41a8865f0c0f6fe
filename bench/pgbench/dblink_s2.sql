-- dblink, S2, persistent connection
\if :connected = 0
SELECT dblink_connect('bench', '@CONNSTR@');
\set connected 1
\endif
\set id random(1, 1000000)
SELECT * FROM dblink('bench', 'SELECT id, payload FROM t WHERE id = ' || :id) AS t(id int, payload text);
