-- The durable core: tenants, tokens, tasks and their history.
-- The same shape as the SQLite schema, so one set of SQL operations serves both:
-- times are BIGINT milliseconds since the epoch (UTC); ids and JSON are TEXT
-- (JSON is cast to jsonb where a query looks inside it).

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    event_seq   BIGINT NOT NULL DEFAULT 0,   -- last event number: the log is gapless per tenant
    created_at  BIGINT NOT NULL
);

CREATE TABLE tokens (
    hash        TEXT PRIMARY KEY,             -- sha256 of the bearer token; the token itself is never stored
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    role        TEXT NOT NULL,
    name        TEXT,
    created_at  BIGINT NOT NULL
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
    held             BOOLEAN NOT NULL,
    parent_id        TEXT,
    depends_on       TEXT NOT NULL,           -- JSON array of ids; task_deps holds the reverse edges
    pending_deps     BIGINT NOT NULL,
    max_attempts     BIGINT NOT NULL,
    failed_attempts  BIGINT NOT NULL DEFAULT 0,
    attempts         BIGINT NOT NULL DEFAULT 0,
    lease_ttl_s      BIGINT NOT NULL,
    not_before       BIGINT NOT NULL DEFAULT 0,
    lease_token      TEXT,
    lease_worker     TEXT,
    lease_attempt    BIGINT,
    lease_ttl_ms     BIGINT,
    lease_expires_at BIGINT,
    result           TEXT,
    error            TEXT,
    blocked_reason   TEXT,
    do_not_retry     TEXT NOT NULL DEFAULT '[]',
    checkpoint_seq   BIGINT NOT NULL DEFAULT 0,
    idem_key         TEXT,
    idem_hash        TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

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
);

CREATE TABLE attempts (
    tenant_id   TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    n           BIGINT NOT NULL,
    worker      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    outcome     TEXT NOT NULL,
    notes       TEXT,
    error       TEXT,
    PRIMARY KEY (tenant_id, task_id, n)
);

CREATE TABLE checkpoints (
    tenant_id     TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    attempt       BIGINT NOT NULL,
    summary       TEXT NOT NULL,
    state         TEXT,
    artifacts     TEXT NOT NULL,
    test_results  TEXT,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, task_id, seq)
);

CREATE TABLE decisions (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    title       TEXT NOT NULL,
    rationale   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX decisions_task ON decisions (tenant_id, task_id, created_at);

CREATE TABLE events (
    tenant_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    task_id     TEXT,
    kind        TEXT NOT NULL,
    data        TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX events_task ON events (tenant_id, task_id, seq);

CREATE TABLE blobs (
    tenant_id   TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    data        BYTEA NOT NULL,               -- in the database, so every node serves every blob
    PRIMARY KEY (tenant_id, sha256)
);
