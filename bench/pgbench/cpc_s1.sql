-- dblink, S1, connecting on every call: dblink(connstr, sql)
SELECT x FROM dblink('@CONNSTR@', 'SELECT 1') AS t(x int);
