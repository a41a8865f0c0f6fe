-- dblink, S4, persistent connection
\if :connected = 0
SELECT dblink_connect('bench', '@CONNSTR@');
\set connected 1
\endif
SELECT count(*), sum(length(payload)) FROM dblink('bench', 'SELECT id, payload FROM t WHERE id <= 100000') AS t(id int, payload text);
