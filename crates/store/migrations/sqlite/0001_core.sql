-- The durable core: tenants, tokens, tasks and their history.
-- Times are integer milliseconds since the epoch (UTC); JSON is stored as TEXT.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    event_seq   INTEGER NOT NULL DEFAULT 0,   -- last event number: the log is gapless per tenant
    created_at  INTEGER NOT NULL
);

CREATE TABLE tokens (
    hash        TEXT PRIMARY KEY,             -- sha256 of the bearer token; the token itself is never stored
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    role        TEXT NOT NULL,
    name        TEXT,
    created_at  INTEGER NOT NULL
);

CREATE TABLE tasks (
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    id               TEXT NOT NULL,
    title            TEXT NOT NULL,
    goal             TEXT NOT NULL,
    acceptance       TEXT NOT NULL,           -- JSON array of strings
    labels           TEXT NOT NULL,           -- JSON array of strings
    priority         INTEGER NOT NULL,
    status           TEXT NOT NULL,
    held             INTEGER NOT NULL,
    parent_id        TEXT,
    depends_on       TEXT NOT NULL,           -- JSON array of ids; task_deps holds the reverse edges
    pending_deps     INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_ttl_s      INTEGER NOT NULL,
    not_before       INTEGER NOT NULL DEFAULT 0,
    lease_token      TEXT,
    lease_worker     TEXT,
    lease_attempt    INTEGER,
    lease_ttl_ms     INTEGER,
    lease_expires_at INTEGER,
    result           TEXT,
    error            TEXT,
    blocked_reason   TEXT,
    do_not_retry     TEXT NOT NULL DEFAULT '[]',
    checkpoint_seq   INTEGER NOT NULL DEFAULT 0,
    idem_key         TEXT,
    idem_hash        TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;

CREATE INDEX tasks_claim ON tasks (tenant_id, status, priority DESC, created_at, id);
CREATE INDEX tasks_expiry ON tasks (status, lease_expires_at) WHERE status = 'running';
CREATE INDEX tasks_not_before ON tasks (tenant_id, status, not_before);
CREATE INDEX tasks_parent ON tasks (tenant_id, parent_id) WHERE parent_id IS NOT NULL;
CREATE UNIQUE INDEX tasks_lease ON tasks (lease_token) WHERE lease_token IS NOT NULL;
CREATE UNIQUE INDEX tasks_idem ON tasks (tenant_id, idem_key) WHERE idem_key IS NOT NULL;

CREATE TABLE task_deps (
    tenant_id   TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    depends_on  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, depends_on, task_id)
) WITHOUT ROWID;

CREATE TABLE attempts (
    tenant_id   TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    n           INTEGER NOT NULL,
    worker      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    outcome     TEXT NOT NULL,
    notes       TEXT,
    error       TEXT,
    PRIMARY KEY (tenant_id, task_id, n)
) WITHOUT ROWID;

CREATE TABLE checkpoints (
    tenant_id     TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    summary       TEXT NOT NULL,
    state         TEXT,
    artifacts     TEXT NOT NULL,
    test_results  TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, task_id, seq)
) WITHOUT ROWID;

CREATE TABLE decisions (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    title       TEXT NOT NULL,
    rationale   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX decisions_task ON decisions (tenant_id, task_id, created_at);

CREATE TABLE events (
    tenant_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    task_id     TEXT,
    kind        TEXT NOT NULL,
    data        TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, seq)
) WITHOUT ROWID;
CREATE INDEX events_task ON events (tenant_id, task_id, seq);

CREATE TABLE blobs (
    tenant_id   TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, sha256)
) WITHOUT ROWID;
