-- dblink, S5, connecting on every call: dblink_exec(connstr, sql)
\set v random(1, 1000000)
SELECT dblink_exec('@CONNSTR@', 'INSERT INTO ins(v) VALUES (' || :v || ')');
