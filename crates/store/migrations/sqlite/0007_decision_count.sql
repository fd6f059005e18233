-- How many decisions each task has, kept on the task: a claim answers with
-- each task's resume packet, and for tasks without decisions (most of a
-- queue) it then reads nothing at all.
ALTER TABLE tasks ADD COLUMN decision_count BIGINT NOT NULL DEFAULT 0;
UPDATE tasks SET decision_count = (
    SELECT COUNT(*) FROM decisions d WHERE d.tenant_id = tasks.tenant_id AND d.task_id = tasks.id
) WHERE EXISTS (
    SELECT 1 FROM decisions d WHERE d.tenant_id = tasks.tenant_id AND d.task_id = tasks.id
);
