-- Expired-lease scans (at every claim, and for a long-poll's next wake-up)
-- are per tenant: index them by tenant, so their cost does not depend on
-- how many leases other tenants hold.
CREATE INDEX tasks_expiry_by_tenant ON tasks (tenant_id, lease_expires_at) WHERE status = 'running';
