-- Fewer index writes per state change. Every claim and every completion
-- rewrote an entry in each index that has `status` in its key or predicate;
-- two of them served rare reads:
-- * tasks_expiry (all tenants' running leases by expiry) duplicated
--   tasks_expiry_by_tenant, which the sweeper's scan of running leases can use;
-- * tasks_not_before held every task, for a lookup of the next backoff to
--   end: only ready tasks waiting out a backoff need to be in it.
DROP INDEX tasks_expiry;
DROP INDEX tasks_not_before;
CREATE INDEX tasks_backoff ON tasks (tenant_id, not_before) WHERE status = 'ready' AND not_before > 0;
