//! Writes that people and planners make on tasks: create, patch (with
//! dependency cycle checks), hold/unhold/unblock/cancel/reopen, decisions;
//! plus the helpers every write shares (loading a task, appending an event,
//! releasing dependents).

use std::collections::{BTreeMap, HashSet};

use aruntime_api::{NewDecision, NewTask, TaskPatch};
use aruntime_core::{
    Command, Decision, InvalidTransition, Task, TaskStatus, Timestamp, transition,
};
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

use super::bulk::{Cell, Kind, MAX_ROWS, Rows};
use super::dialect::{self, OR_FAIL};
use super::rows::{self, Get, TASK_COLS, to_json};
use super::writer::WriteCtx;
use crate::{Created, Idempotency, Result, Steer, StoreError};

/// SQL that ends the lease, for `UPDATE tasks SET ...`. `lease_worker` and
/// `lease_started_at` stay: the ended attempt's row is written from them,
/// and a grouped completion does so from the row it updated, which is all
/// `RETURNING` sees (migration 0006 on SQLite, 0007 on PostgreSQL). A
/// task's lease is only read while it runs.
pub(crate) const CLEAR_LEASE: &str =
    "lease_token = NULL, lease_attempt = NULL, lease_ttl_ms = NULL, lease_expires_at = NULL";

/// The task as the writer sees it inside the batch transaction.
pub(crate) async fn load(ctx: &mut WriteCtx, tenant: &str, id: Uuid) -> Result<Task> {
    let sql = format!(
        "SELECT {TASK_COLS} FROM tasks WHERE tenant_id = $1 AND id = $2{}",
        dialect::FOR_UPDATE
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(id.to_string())
        .fetch_optional(&mut ctx.conn)
        .await?
        .ok_or_else(|| StoreError::not_found("task", id))?;
    rows::task(&row)
}

/// An event recorded by a write, appended to the log when its batch is
/// about to commit (see [`flush_events`]).
pub(crate) struct PendingEvent {
    tenant: String,
    task: Option<Uuid>,
    kind: &'static str,
    /// The event's data, as the JSON text the log stores.
    data: String,
    at: Timestamp,
}

/// The events a batch recorded, in order; the first `written` of them are
/// already in the log (a statement that ran anyway took them along,
/// `grouped::complete_many` on PostgreSQL), the rest wait for
/// [`flush_events`].
#[derive(Default)]
pub(crate) struct BatchEvents {
    recorded: Vec<PendingEvent>,
    written: usize,
}

/// Where a [`BatchEvents`] stood, to go back to when a savepoint is
/// rolled back.
#[derive(Clone, Copy, Default)]
pub(crate) struct EventsMark {
    recorded: usize,
    written: usize,
}

impl BatchEvents {
    pub(crate) fn mark(&self) -> EventsMark {
        EventsMark {
            recorded: self.recorded.len(),
            written: self.written,
        }
    }

    /// Forgets what was recorded, and that anything was written, after `m`
    /// (the database rolled those writes back too).
    pub(crate) fn rewind(&mut self, m: EventsMark) {
        self.recorded.truncate(m.recorded);
        self.written = m.written;
    }

    pub(crate) fn clear(&mut self) {
        self.recorded.clear();
        self.written = 0;
    }

    /// The events not yet written as the rows of one insert
    /// ([`event_rows`]), if all are `tenant`'s and one statement holds them.
    pub(crate) fn unwritten_rows_of(&self, tenant: &str) -> Option<Rows> {
        let rest = self.recorded.get(self.written..)?;
        (rest.len() <= MAX_ROWS && rest.iter().all(|e| e.tenant == tenant))
            .then(|| event_rows(rest))
    }

    /// Says every event recorded so far is in the log.
    pub(crate) fn all_written(&mut self) {
        self.written = self.recorded.len();
    }
}

/// `events` as the rows of an events insert (`EVENT_COLS`), `v_ord`
/// numbering them from 1 in order.
pub(crate) fn event_rows(events: &[PendingEvent]) -> Rows {
    let mut rows = Rows::new(EVENT_COLS);
    for (ord, e) in (1i64..).zip(events) {
        rows.push(e.cells(ord));
    }
    rows
}

impl PendingEvent {
    /// The cells of its row in an events insert (`EVENT_COLS`), `ord` its
    /// place among the rows the statement numbers.
    fn cells(&self, ord: i64) -> [Cell; 5] {
        [
            ord.into(),
            self.task.map(|t| t.to_string()).into(),
            self.kind.into(),
            self.data.clone().into(),
            self.at.0.into(),
        ]
    }
}

/// The target of every insert of events (`INSERT … INTO_EVENTS SELECT …`).
pub(crate) const INTO_EVENTS: &str = "INTO events (tenant_id, seq, task_id, kind, data, at)";

/// The last number in `tenant`'s log (0 if empty), one probe of the
/// primary key; new events are numbered from it.
pub(crate) fn last_event_seq_sql(tenant: &str) -> String {
    format!(
        "COALESCE((SELECT e.seq FROM events e WHERE e.tenant_id = {tenant} \
         ORDER BY e.seq DESC LIMIT 1), 0)"
    )
}

/// The columns of events rows bound as parameters.
const EVENT_COLS: &[(&str, Kind)] = &[
    ("v_ord", Kind::Int),
    ("v_task", Kind::Text),
    ("v_kind", Kind::Text),
    ("v_data", Kind::Text),
    ("v_at", Kind::Int),
];

/// Appends to the tenant's gapless event log, in the caller's transaction.
/// The row is written with the rest of the batch's events just before
/// COMMIT, so a write that is rolled back to its savepoint takes its events
/// with it (the writer truncates them) and a batch pays one statement per
/// tenant for all its events instead of one or two per write.
///
/// `data` is serialized at once.
pub(crate) fn event(
    ctx: &mut WriteCtx,
    tenant: &str,
    task: Option<Uuid>,
    kind: &'static str,
    data: impl serde::Serialize,
    now: Timestamp,
) {
    record(ctx, tenant, task, kind, to_json(&data), now);
}

/// Keeps an event, its data already JSON text, for [`flush_events`].
fn record(
    ctx: &mut WriteCtx,
    tenant: &str,
    task: Option<Uuid>,
    kind: &'static str,
    data: String,
    at: Timestamp,
) {
    ctx.events.recorded.push(PendingEvent {
        tenant: tenant.to_owned(),
        task,
        kind,
        data,
        at,
    });
}

// The event data of the hot paths (grouped creates, claims, completions
// and checkpoints: three events or more per task) is written from these
// structs, not from `json!` values: a value builds a map node and a string
// per key only to be written out and freed, all on the writer thread,
// which bounds SQLite's throughput (performance.md, finding 62). Their
// fields are declared in the order of their names, the order `json!` maps
// write their keys in, so the log's text is the same either way.

/// A created task's event data: `{"depends_on", "parent_id", "status", "title"}`.
#[derive(serde::Serialize)]
pub(crate) struct CreatedData<'a> {
    pub(crate) depends_on: &'a [Uuid],
    pub(crate) parent_id: Option<Uuid>,
    pub(crate) status: TaskStatus,
    pub(crate) title: &'a str,
}

/// A granted lease's event data: `{"attempt", "expires_at", "worker"}`.
#[derive(serde::Serialize)]
pub(crate) struct LeasedData<'a> {
    pub(crate) attempt: u32,
    pub(crate) expires_at: Timestamp,
    pub(crate) worker: &'a str,
}

/// An ended attempt's event data: `{"attempt"}`.
#[derive(serde::Serialize)]
pub(crate) struct AttemptData {
    pub(crate) attempt: i64,
}

/// A written checkpoint's event data: `{"attempt", "seq", "summary"}`.
#[derive(serde::Serialize)]
pub(crate) struct CheckpointData<'a> {
    pub(crate) attempt: u32,
    pub(crate) seq: i64,
    pub(crate) summary: &'a str,
}

/// Appends several events in order (for groups, batch claims and fan-out
/// releases), their data already JSON text (`rows::to_json`); see [`event`].
pub(crate) fn events(
    ctx: &mut WriteCtx,
    tenant: &str,
    items: Vec<(Option<Uuid>, &'static str, String)>,
    now: Timestamp,
) {
    for (task, kind, data) in items {
        record(ctx, tenant, task, kind, data, now);
    }
}

/// Writes the batch's recorded events: per tenant, in the order they were
/// recorded, one statement per [`MAX_ROWS`](super::bulk::MAX_ROWS).
///
/// Events are numbered from the log itself, its last plus one: the writer
/// holds the tenant's lock (PostgreSQL) or is the only writer (SQLite), so
/// the log stays gapless, and the primary key makes the lookup one index
/// probe. On PostgreSQL the last number is read inside the insert, once
/// per statement (it reads its snapshot, never its own rows). SQLite would
/// stage every row of such an insert in a temporary table first, so there
/// it is read just before, by a statement of its own
/// ([`AVOID_TEMP_TABLES`](dialect::AVOID_TEMP_TABLES)).
pub(crate) async fn flush_events(ctx: &mut WriteCtx) -> Result<()> {
    let BatchEvents {
        mut recorded,
        written,
    } = std::mem::take(&mut ctx.events);
    let mut pending = recorded.split_off(written.min(recorded.len()));
    // A stable sort keeps each tenant's events in the order they happened.
    pending.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    for tenant_events in pending.chunk_by(|a, b| a.tenant == b.tenant) {
        for chunk in tenant_events.chunks(super::bulk::MAX_ROWS) {
            let Some(tenant) = chunk.first().map(|e| e.tenant.as_str()) else {
                continue;
            };
            let rows_in = event_rows(chunk).read_once();
            let (with, mut p) = rows_in.with_clause();
            let (t, last) = (p.next(), p.next());
            let (last, last_arg) = if dialect::AVOID_TEMP_TABLES {
                let read = format!("SELECT {} AS last", last_event_seq_sql(&dialect::param(1)));
                let rows = dialect::fetch(ctx, read, vec![tenant.into()]).await?;
                let seq: i64 = match rows.first() {
                    Some(r) => r.col("last")?,
                    None => 0,
                };
                (last, Cell::from(seq))
            } else {
                (last_event_seq_sql(&last), Cell::from(tenant))
            };
            let sql = format!(
                "{with} INSERT{OR_FAIL} {INTO_EVENTS} SELECT {t}, {last} + v_ord, v_task, v_kind, v_data, v_at \
                 FROM v WHERE v_ord IS NOT NULL",
            );
            dialect::fetch(ctx, sql, rows_in.args_then([tenant.into(), last_arg])).await?;
        }
    }
    Ok(())
}

fn dedup(ids: Vec<Uuid>) -> Vec<Uuid> {
    let mut seen = HashSet::new();
    ids.into_iter().filter(|i| seen.insert(*i)).collect()
}

/// Counts the dependencies that are not done; refuses unknown ids.
async fn count_pending(ctx: &mut WriteCtx, tenant: &str, deps: &[Uuid]) -> Result<u32> {
    let mut pending = 0;
    for (i, d) in deps.iter().enumerate() {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM tasks WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(d.to_string())
                .fetch_optional(&mut ctx.conn)
                .await?;
        match status.as_deref() {
            None => {
                return Err(StoreError::Invalid {
                    field: format!("depends_on[{i}]"),
                    message: format!("no task {d} in this tenant"),
                });
            }
            Some("done") => {}
            Some(_) => pending += 1,
        }
    }
    Ok(pending)
}

async fn insert_deps(ctx: &mut WriteCtx, tenant: &str, id: Uuid, deps: &[Uuid]) -> Result<()> {
    for d in deps {
        sqlx::query("INSERT INTO task_deps (tenant_id, task_id, depends_on) VALUES ($1, $2, $3)")
            .bind(tenant)
            .bind(id.to_string())
            .bind(d.to_string())
            .execute(&mut ctx.conn)
            .await?;
    }
    Ok(())
}

pub(crate) async fn create(
    ctx: &mut WriteCtx,
    tenant: String,
    spec: NewTask,
    idem: Option<Idempotency>,
    now: Timestamp,
) -> Result<Created<Task>> {
    if let Some(i) = &idem {
        dialect::lock_key(ctx, &tenant, &i.key).await?;
        let row =
            sqlx::query("SELECT id, idem_hash FROM tasks WHERE tenant_id = $1 AND idem_key = $2")
                .bind(&tenant)
                .bind(&i.key)
                .fetch_optional(&mut ctx.conn)
                .await?;
        if let Some(row) = row {
            let hash: Option<String> = row.try_get("idem_hash")?;
            if hash.as_deref() != Some(i.request_hash.as_str()) {
                return Err(StoreError::IdempotencyConflict);
            }
            let id = rows::uuid(&row, "id")?;
            let value = load(ctx, &tenant, id).await?;
            return Ok(Created {
                value,
                created: false,
            });
        }
    }
    if let Some(p) = spec.parent_id {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM tasks WHERE tenant_id = $1 AND id = $2")
                .bind(&tenant)
                .bind(p.to_string())
                .fetch_optional(&mut ctx.conn)
                .await?;
        if found.is_none() {
            return Err(StoreError::Invalid {
                field: "parent_id".into(),
                message: format!("no task {p} in this tenant"),
            });
        }
    }
    let deps = dedup(spec.depends_on);
    let pending = count_pending(ctx, &tenant, &deps).await?;
    let t = transition(
        None,
        Command::Create {
            waiting: pending > 0 || spec.hold,
        },
    )?;
    let id = Uuid::now_v7();
    let sql = format!(
        "INSERT INTO tasks (tenant_id, id, title, goal, acceptance, labels, priority, status, held, \
         parent_id, depends_on, pending_deps, max_attempts, lease_ttl_s, idem_key, idem_hash, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
         RETURNING {TASK_COLS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&tenant)
        .bind(id.to_string())
        .bind(&spec.title)
        .bind(&spec.goal)
        .bind(to_json(&spec.acceptance))
        .bind(to_json(&spec.labels))
        .bind(spec.priority)
        .bind(t.to.as_str())
        .bind(spec.hold)
        .bind(spec.parent_id.map(|p| p.to_string()))
        .bind(to_json(&deps))
        .bind(i64::from(pending))
        .bind(i64::from(spec.max_attempts))
        .bind(i64::from(spec.lease_ttl_s))
        .bind(idem.as_ref().map(|i| i.key.clone()))
        .bind(idem.as_ref().map(|i| i.request_hash.clone()))
        .bind(now.0)
        .bind(now.0)
        .fetch_one(&mut ctx.conn)
        .await?;
    let value = rows::task(&row)?;
    insert_deps(ctx, &tenant, id, &deps).await?;
    let data = json!({"title": spec.title, "status": t.to, "parent_id": spec.parent_id, "depends_on": deps});
    event(ctx, &tenant, Some(id), t.event, data, now);
    if t.to == TaskStatus::Ready {
        ctx.wake.ready(&tenant, !spec.labels.is_empty());
    }
    Ok(Created {
        value,
        created: true,
    })
}

/// Follows dependency edges from `deps`; returns a path back to `id` if any.
async fn find_cycle(
    ctx: &mut WriteCtx,
    tenant: &str,
    id: Uuid,
    deps: &[Uuid],
) -> Result<Option<Vec<Uuid>>> {
    // Depth-first with explicit paths; the graph is a DAG before this edit,
    // so every node is expanded once.
    let mut stack: Vec<Vec<Uuid>> = deps.iter().map(|d| vec![id, *d]).collect();
    let mut seen = HashSet::new();
    while let Some(path) = stack.pop() {
        let node = *path.last().unwrap_or(&id);
        if node == id {
            return Ok(Some(path));
        }
        if !seen.insert(node) {
            continue;
        }
        let next: Option<String> =
            sqlx::query_scalar("SELECT depends_on FROM tasks WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(node.to_string())
                .fetch_optional(&mut ctx.conn)
                .await?;
        let next: Vec<Uuid> = match next {
            Some(s) => serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            None => vec![],
        };
        for n in next {
            let mut p = path.clone();
            p.push(n);
            stack.push(p);
        }
    }
    Ok(None)
}

pub(crate) async fn patch(
    ctx: &mut WriteCtx,
    tenant: String,
    id: Uuid,
    patch: TaskPatch,
    now: Timestamp,
) -> Result<Task> {
    let task = load(ctx, &tenant, id).await?;
    let mut fields: Vec<&str> = vec![];
    if let Some(deps) = patch.depends_on {
        if !matches!(task.status, TaskStatus::Backlog | TaskStatus::Ready) {
            return Err(InvalidTransition {
                from: task.status.as_str(),
                command: "change the dependencies of",
            }
            .into());
        }
        let deps = dedup(deps);
        let pending = count_pending(ctx, &tenant, &deps).await?;
        if let Some(path) = find_cycle(ctx, &tenant, id, &deps).await? {
            return Err(StoreError::DependencyCycle { path });
        }
        sqlx::query("DELETE FROM task_deps WHERE tenant_id = $1 AND task_id = $2")
            .bind(&tenant)
            .bind(id.to_string())
            .execute(&mut ctx.conn)
            .await?;
        insert_deps(ctx, &tenant, id, &deps).await?;
        let cmd = match (task.status, pending > 0, task.held) {
            (TaskStatus::Ready, true, _) => Some(Command::DependencyAdded),
            (TaskStatus::Backlog, false, false) => Some(Command::DependenciesDone),
            _ => None,
        };
        let to = match cmd {
            Some(cmd) => {
                let t = transition(Some(task.status), cmd)?;
                event(
                    ctx,
                    &tenant,
                    Some(id),
                    t.event,
                    json!({"status": t.to}),
                    now,
                );
                t.to
            }
            None => task.status,
        };
        sqlx::query("UPDATE tasks SET depends_on = $1, pending_deps = $2, status = $3 WHERE tenant_id = $4 AND id = $5")
            .bind(to_json(&deps))
            .bind(i64::from(pending))
            .bind(to.as_str())
            .bind(&tenant)
            .bind(id.to_string())
            .execute(&mut ctx.conn)
            .await?;
        fields.push("depends_on");
    }
    for (name, present) in [
        ("title", patch.title.is_some()),
        ("goal", patch.goal.is_some()),
        ("acceptance", patch.acceptance.is_some()),
        ("labels", patch.labels.is_some()),
        ("priority", patch.priority.is_some()),
    ] {
        if present {
            fields.push(name);
        }
    }
    sqlx::query(
        "UPDATE tasks SET title = COALESCE($1, title), goal = COALESCE($2, goal), \
         acceptance = COALESCE($3, acceptance), labels = COALESCE($4, labels), \
         priority = COALESCE($5, priority), updated_at = $6 WHERE tenant_id = $7 AND id = $8",
    )
    .bind(patch.title)
    .bind(patch.goal)
    .bind(patch.acceptance.map(|a| to_json(&a)))
    .bind(patch.labels.map(|l| to_json(&l)))
    .bind(patch.priority)
    .bind(now.0)
    .bind(&tenant)
    .bind(id.to_string())
    .execute(&mut ctx.conn)
    .await?;
    event(
        ctx,
        &tenant,
        Some(id),
        "task.updated",
        json!({"fields": fields}),
        now,
    );
    let task = load(ctx, &tenant, id).await?;
    if task.status == TaskStatus::Ready {
        // Labels or dependencies may now match a waiting worker.
        ctx.wake.all(&tenant);
    }
    Ok(task)
}

pub(crate) async fn steer(
    ctx: &mut WriteCtx,
    tenant: String,
    id: Uuid,
    cmd: Steer,
    now: Timestamp,
) -> Result<Task> {
    let task = load(ctx, &tenant, id).await?;
    let from = Some(task.status);
    let pending = task.pending_dependencies > 0;
    // Each command changes the status plus a fixed set of columns.
    let (t, set) = match cmd {
        Steer::Hold => (transition(from, Command::Hold)?, "held = TRUE"),
        Steer::Unhold => {
            if !task.held {
                return Err(InvalidTransition {
                    from: "not held",
                    command: "unhold",
                }
                .into());
            }
            let deps_pending = pending;
            (
                transition(from, Command::Unhold { deps_pending })?,
                "held = FALSE",
            )
        }
        Steer::Unblock => (
            transition(from, Command::Unblock)?,
            "blocked_reason = NULL, not_before = 0",
        ),
        Steer::Cancel => {
            let t = transition(from, Command::Cancel)?;
            if let Some(lease) = &task.lease {
                let n = lease.attempt;
                super::leases::close_attempt(ctx, &tenant, id, n, "cancelled", None, None, now)
                    .await?;
            }
            (t, CLEAR_LEASE)
        }
        Steer::Reopen => {
            let waiting = pending || task.held;
            (
                transition(from, Command::Reopen { waiting })?,
                "failed_attempts = 0, error = NULL, not_before = 0",
            )
        }
    };
    let sql = format!(
        "UPDATE tasks SET status = $1, {set}, updated_at = $2 WHERE tenant_id = $3 AND id = $4"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(t.to.as_str())
        .bind(now.0)
        .bind(&tenant)
        .bind(id.to_string())
        .execute(&mut ctx.conn)
        .await?;
    event(
        ctx,
        &tenant,
        Some(id),
        t.event,
        json!({"from": task.status, "to": t.to}),
        now,
    );
    if t.to == TaskStatus::Ready {
        ctx.wake.ready(&tenant, !task.labels.is_empty());
    }
    load(ctx, &tenant, id).await
}

/// After the tasks in `done` completed: fewer pending dependencies for each
/// dependent, and those with none left (and not held) become ready in this
/// transaction.
pub(crate) async fn release_dependents(
    ctx: &mut WriteCtx,
    tenant: &str,
    done: &[Uuid],
    now: Timestamp,
) -> Result<()> {
    // Set-based, so completions releasing a thousand dependents cost five
    // statements, not four per dependent: find them, decrement them all,
    // promote the ones whose last dependency this was, log one event each.
    //
    // The dependents are looked up on their own first: as a subquery of the
    // UPDATE, PostgreSQL walked every task of the tenant on each completion
    // (seen in `pg_stat_user_indexes` during `cycle`: thousands of tuples
    // read per scan of the primary key).
    if done.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT task_id, depends_on FROM task_deps WHERE tenant_id = $1 AND depends_on {}",
        dialect::in_list("$2")
    );
    let edges = dialect::fetch(ctx, sql, vec![tenant.into(), to_json(&done).into()]).await?;
    if edges.is_empty() {
        return Ok(());
    }
    // Per dependent: how many of its dependencies are done now, and the
    // last of them (named in its event).
    let mut freed: BTreeMap<String, (i64, Uuid)> = BTreeMap::new();
    for row in &edges {
        let e = freed.entry(row.col("task_id")?).or_insert((0, Uuid::nil()));
        e.0 += 1;
        e.1 = rows::uuid(row, "depends_on")?;
    }
    let mut by_count: BTreeMap<i64, Vec<&String>> = BTreeMap::new();
    for (id, (n, _)) in &freed {
        by_count.entry(*n).or_default().push(id);
    }
    let mut ready = vec![];
    for (n, ids) in by_count {
        let sql = format!(
            "UPDATE tasks SET pending_deps = CASE WHEN pending_deps > $1 THEN pending_deps - $1 ELSE 0 END, \
             updated_at = $2 WHERE tenant_id = $3 AND pending_deps > 0 AND id {} \
             RETURNING id, pending_deps, held, status",
            dialect::in_list("$4")
        );
        let decremented = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(n)
            .bind(now.0)
            .bind(tenant)
            .bind(to_json(&ids))
            .fetch_all(&mut ctx.conn)
            .await?;
        for row in &decremented {
            let pending: i64 = row.try_get("pending_deps")?;
            let held: bool = row.try_get("held")?;
            if pending == 0 && !held && rows::status(row)? == TaskStatus::Backlog {
                ready.push(rows::uuid(row, "id")?);
            }
        }
    }
    if ready.is_empty() {
        return Ok(());
    }
    let t = transition(Some(TaskStatus::Backlog), Command::DependenciesDone)?;
    let sql = format!(
        "UPDATE tasks SET status = $1 WHERE tenant_id = $2 AND id {}",
        dialect::in_list("$3")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(t.to.as_str())
        .bind(tenant)
        .bind(to_json(&ready))
        .execute(&mut ctx.conn)
        .await?;
    let logged = ready
        .into_iter()
        .map(|id| {
            let after = freed.get(&id.to_string()).map(|f| f.1);
            (Some(id), t.event, to_json(&json!({"after": after})))
        })
        .collect();
    events(ctx, tenant, logged, now);
    ctx.wake.all(tenant);
    Ok(())
}

pub(crate) async fn decision_add(
    ctx: &mut WriteCtx,
    tenant: String,
    task: Uuid,
    d: NewDecision,
    now: Timestamp,
) -> Result<Decision> {
    // Counted on the task, so that a claim of tasks without decisions reads
    // none (`reads::contexts`); the same statement says the task exists.
    sqlx::query(
        "UPDATE tasks SET decision_count = decision_count + 1 \
         WHERE tenant_id = $1 AND id = $2 RETURNING id",
    )
    .bind(&tenant)
    .bind(task.to_string())
    .fetch_optional(&mut ctx.conn)
    .await?
    .ok_or_else(|| StoreError::not_found("task", task))?;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO decisions (tenant_id, id, task_id, title, rationale, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&tenant)
    .bind(id.to_string())
    .bind(task.to_string())
    .bind(&d.title)
    .bind(&d.rationale)
    .bind(now.0)
    .execute(&mut ctx.conn)
    .await?;
    event(
        ctx,
        &tenant,
        Some(task),
        "decision.recorded",
        json!({"id": id, "title": d.title}),
        now,
    );
    Ok(Decision {
        id,
        task_id: task,
        title: d.title,
        rationale: d.rationale,
        created_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The structs the hot paths log from write what the `json!` maps they
    /// replaced wrote, byte for byte: readers of the log see no change.
    #[test]
    fn hot_event_data_is_written_as_the_json_maps_were() {
        let id = Uuid::now_v7();
        let created = CreatedData {
            depends_on: &[],
            parent_id: None,
            status: TaskStatus::Ready,
            title: "a \"quoted\" title",
        };
        assert_eq!(
            to_json(&created),
            json!({"title": "a \"quoted\" title", "status": TaskStatus::Ready, "parent_id": null, "depends_on": []}).to_string()
        );
        let leased = LeasedData {
            attempt: 2,
            expires_at: Timestamp(1_700_000_000_123),
            worker: "w-1",
        };
        assert_eq!(
            to_json(&leased),
            json!({"attempt": 2, "worker": "w-1", "expires_at": Timestamp(1_700_000_000_123)})
                .to_string()
        );
        assert_eq!(
            to_json(&AttemptData { attempt: 3 }),
            json!({"attempt": 3}).to_string()
        );
        let checkpoint = CheckpointData {
            attempt: 1,
            seq: 4,
            summary: "tests \"pass\"",
        };
        assert_eq!(
            to_json(&checkpoint),
            json!({"seq": 4, "attempt": 1, "summary": "tests \"pass\""}).to_string()
        );
        let with_deps = CreatedData {
            depends_on: &[id],
            parent_id: Some(id),
            status: TaskStatus::Backlog,
            title: "t",
        };
        assert_eq!(
            to_json(&with_deps),
            json!({"title": "t", "status": TaskStatus::Backlog, "parent_id": id, "depends_on": [id]}).to_string()
        );
    }
}
