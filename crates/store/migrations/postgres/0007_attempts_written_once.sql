-- An attempt's row is written once, when it ends. A running attempt is the
-- task's lease: its number, worker and (new here) start are the task's
-- `lease_attempt`, `lease_worker` and `lease_started_at`, and reads show it
-- from there. Before, every claim inserted an attempt row and every
-- completion updated it: two writes to `attempts` per task where one is
-- history.
--
-- `lease_worker` and `lease_started_at` now outlive the lease (the other
-- lease columns are cleared): a grouped completion writes the attempt from
-- the row it updated, and `RETURNING` sees only the new values.
ALTER TABLE tasks ADD COLUMN lease_started_at BIGINT;
UPDATE tasks SET lease_started_at = (
    SELECT a.started_at FROM attempts a
    WHERE a.tenant_id = tasks.tenant_id AND a.task_id = tasks.id AND a.n = tasks.lease_attempt
) WHERE lease_attempt IS NOT NULL;
DELETE FROM attempts WHERE outcome = 'running';
