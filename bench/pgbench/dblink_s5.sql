-- dblink, S5, persistent connection
\if :connected = 0
SELECT dblink_connect('bench', '@CONNSTR@');
\set connected 1
\endif
\set v random(1, 1000000)
SELECT dblink_exec('bench', 'INSERT INTO ins(v) VALUES (' || :v || ')');
