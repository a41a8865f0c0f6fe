-- dblink, S1, persistent connection: dblink_connect once per pgbench client
-- (its first transaction, left out of the latency figures), then dblink('bench', sql)
\if :connected = 0
SELECT dblink_connect('bench', '@CONNSTR@');
\set connected 1
\endif
SELECT x FROM dblink('bench', 'SELECT 1') AS t(x int);
