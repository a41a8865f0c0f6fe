-- dblink, S6: S2 carrying a tenant, persistent connection.  One dblink()
-- call sends two statements in one simple-protocol message, which the
-- remote runs as one transaction: set_config(..., true) sets the tenant for
-- that transaction only, then the query runs under it.  dblink returns the
-- last statement's rows, and every statement's rows must have as many
-- columns as AS t(...) (hence NULL::int).  One round trip, as a pooled call.
\if :connected = 0
SELECT dblink_connect('bench', '@CONNSTR@');
\set connected 1
\endif
\set id random(1, 1000000)
SELECT * FROM dblink('bench', 'SELECT NULL::int, set_config(''app.current_tenant_id'', ''tenant_' || :client_id || ''', true); SELECT id, payload FROM t WHERE id = ' || :id) AS t(id int, payload text);
