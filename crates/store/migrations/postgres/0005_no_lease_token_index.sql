-- A lease token ends with its task's id, so a heartbeat finds its task by
-- the primary key. The unique index of tokens served only that lookup, and
-- every claim added an entry to it and every completion removed one.
-- Tokens are unique without it: each holds a fresh 128-bit secret.
DROP INDEX tasks_lease;
