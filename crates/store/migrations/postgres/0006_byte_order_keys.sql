-- Cheaper index work on the hot tables.
--
-- * Keys compare as bytes. Ids, tenant ids and statuses are ASCII, and under
--   the database's collation PostgreSQL compares text through strcoll (only
--   "C" and "POSIX" are plain byte order to it; PostgreSQL 15 treats even
--   "C.UTF-8" as a locale), so every step of every index descent paid a
--   copy, a locale lookup and strcoll. Byte order sorts these values the same
--   way, so no answer changes order.
-- * The foreign key from tasks to tenants is dropped. It ran a query and took
--   a shared lock on the tenant's row for every task inserted (with two nodes
--   writing, that lock is a multixact), and it guarded nothing: tenants are
--   never deleted, and every write names the tenant its token belongs to.
ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_tenant_id_fkey;
ALTER TABLE tasks
    ALTER COLUMN tenant_id TYPE TEXT COLLATE "C",
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN status TYPE TEXT COLLATE "C",
    ALTER COLUMN parent_id TYPE TEXT COLLATE "C",
    ALTER COLUMN idem_key TYPE TEXT COLLATE "C";
ALTER TABLE task_deps
    ALTER COLUMN tenant_id TYPE TEXT COLLATE "C",
    ALTER COLUMN task_id TYPE TEXT COLLATE "C",
    ALTER COLUMN depends_on TYPE TEXT COLLATE "C";
ALTER TABLE attempts
    ALTER COLUMN tenant_id TYPE TEXT COLLATE "C",
    ALTER COLUMN task_id TYPE TEXT COLLATE "C";
ALTER TABLE checkpoints
    ALTER COLUMN tenant_id TYPE TEXT COLLATE "C",
    ALTER COLUMN task_id TYPE TEXT COLLATE "C";
ALTER TABLE decisions
    ALTER COLUMN tenant_id TYPE TEXT COLLATE "C",
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN task_id TYPE TEXT COLLATE "C";
ALTER TABLE events
    ALTER COLUMN tenant_id TYPE TEXT COLLATE "C",
    ALTER COLUMN task_id TYPE TEXT COLLATE "C";
