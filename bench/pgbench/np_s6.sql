-- netrun_pool, S6: S2 carrying a tenant.  Each pgbench client sets its
-- tenant once (its first transaction; the tenant is a session setting and
-- stays), then every call carries it to the remote: by set_config of the
-- connection's tenant_setting (p4, tenant_guard => 'off') or by the
-- remote guard's signed assertion (p4g, tenant_guard => 'required').
\if :connected = 0
SELECT 1 AS connected FROM netrun_pool.set_tenant('tenant_' || :client_id) \gset
\endif
\set id random(1, 1000000)
SELECT * FROM netrun_pool.query('@POOL@', 'SELECT id, payload FROM t WHERE id = $1', ARRAY[:id::text]) AS t(id int, payload text);
