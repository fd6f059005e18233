-- Event numbers now come from the log itself (the last seq of the tenant
-- plus one, under the tenant's write lock), which saves a statement per
-- event; the counter column is no longer kept.
ALTER TABLE tenants DROP COLUMN event_seq;
