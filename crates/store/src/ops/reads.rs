//! Reads, served by a pool of connections beside the writer (WAL lets them
//! run while a batch commits). Reads that combine several queries run in one
//! read transaction, so they see one snapshot.

use aruntime_api::{
    Board, BoardQuery, Card, Column, EventPage, EventQuery, TaskPage, TaskQuery, page_size,
};
use aruntime_core::context::{ContextBundle, DependencyResult, GoalRef, TaskBrief};
use aruntime_core::{Attempt, Checkpoint, Decision, Principal, Role, Task, TaskStatus, Timestamp};
use std::collections::{HashMap, HashSet};

use sqlx::Row;
use uuid::Uuid;

use super::rows::{self, TASK_COLS, to_json};
use super::{Conn, Pool, dialect, leases};
use crate::{Result, StoreError};

pub(crate) async fn task(conn: &mut Conn, tenant: &str, id: Uuid) -> Result<Task> {
    let sql = format!("SELECT {TASK_COLS} FROM tasks WHERE tenant_id = $1 AND id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::not_found("task", id))?;
    rows::task(&row)
}

pub(crate) async fn task_get(pool: &Pool, tenant: &str, id: Uuid) -> Result<Task> {
    let mut conn = pool.acquire().await?;
    task(&mut conn, tenant, id).await
}

pub(crate) async fn task_list(pool: &Pool, tenant: &str, q: &TaskQuery) -> Result<TaskPage> {
    let limit = page_size(q.limit, 50);
    let sql = format!(
        "SELECT {TASK_COLS} FROM tasks WHERE tenant_id = $1 \
         AND ($2 IS NULL OR status = $2) \
         AND ($3 IS NULL OR parent_id = $3) \
         AND ($4 IS NULL OR EXISTS (SELECT 1 FROM {labels} WHERE l.value = $4)) \
         AND ($5 IS NULL OR id > $5) \
         ORDER BY id LIMIT $6",
        labels = dialect::json_values("tasks.labels", "l")
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(q.status.map(TaskStatus::as_str))
        .bind(q.parent.map(|p| p.to_string()))
        .bind(q.label.as_deref())
        .bind(q.cursor.map(|c| c.to_string()))
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
    let mut tasks = rows.iter().map(rows::task).collect::<Result<Vec<_>>>()?;
    let next_cursor = if tasks.len() > limit as usize {
        tasks.truncate(limit as usize);
        tasks.last().map(|t| t.id)
    } else {
        None
    };
    Ok(TaskPage { tasks, next_cursor })
}

pub(crate) async fn task_counts(pool: &Pool, tenant: &str) -> Result<Vec<(TaskStatus, u64)>> {
    // Three counts, one per index that holds a part of the tasks: a plain
    // `GROUP BY status` would match none of the partial indexes.
    let sql = format!(
        "SELECT status, COUNT(*) AS n FROM {settled} GROUP BY status \
         UNION ALL SELECT 'ready', COUNT(*) FROM {ready} \
         UNION ALL SELECT 'running', COUNT(*) FROM {running}",
        settled = tenant_tasks_by("tasks_settled", SETTLED),
        ready = tasks_of(TaskStatus::Ready),
        running = tasks_of(TaskStatus::Running),
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .fetch_all(pool)
        .await?;
    let mut out: Vec<(TaskStatus, u64)> = TaskStatus::ALL.iter().map(|s| (*s, 0)).collect();
    for row in rows {
        let s = rows::status(&row)?;
        let n: i64 = row.try_get("n")?;
        if let Some(slot) = out.iter_mut().find(|(st, _)| *st == s) {
            slot.1 = u64::try_from(n).unwrap_or(0);
        }
    }
    Ok(out)
}

/// The condition of the partial index that holds neither ready nor running
/// tasks (`tasks_settled`).
const SETTLED: &str = "status <> 'ready' AND status <> 'running'";

/// `FROM` and `WHERE` for the tasks of one tenant (`$1`) in `status`, read
/// through the index that holds them: `tasks_claim` holds the ready ones,
/// `tasks_expiry_by_tenant` the running ones and `tasks_settled` the rest
/// (migration 0008 on SQLite, 0009 on PostgreSQL). A partial index serves
/// a query only if the query repeats the index's condition: SQLite matches
/// terms, not values, and PostgreSQL cannot prove it for a parameter in a
/// generic plan. So the status is written inline; it is one of the enum's
/// fixed names, never a client's text.
fn tasks_of(status: TaskStatus) -> String {
    let name = status.as_str();
    match status {
        TaskStatus::Ready => tenant_tasks_by("tasks_claim", &format!("status = '{name}'")),
        TaskStatus::Running => {
            tenant_tasks_by("tasks_expiry_by_tenant", &format!("status = '{name}'"))
        }
        _ => tenant_tasks_by("tasks_settled", &format!("status = '{name}' AND {SETTLED}")),
    }
}

/// `FROM` and `WHERE` for the tasks of one tenant (`$1`) that meet `cond`,
/// read through `index` (named where the dialect needs it named).
fn tenant_tasks_by(index: &str, cond: &str) -> String {
    let indexed_by = if dialect::NAMES_INDEXES {
        format!(" INDEXED BY {index}")
    } else {
        String::new()
    };
    format!("tasks{indexed_by} WHERE tenant_id = $1 AND {cond}")
}

pub(crate) async fn board(pool: &Pool, tenant: &str, q: &BoardQuery) -> Result<Board> {
    let per_column = page_size(q.cards, 50);
    let mut tx = pool.begin().await?;
    let mut columns = vec![];
    for status in TaskStatus::ALL {
        if status == TaskStatus::Cancelled && !q.include_cancelled {
            continue;
        }
        let from = tasks_of(status);
        let sql = format!("SELECT COUNT(*) FROM {from}");
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await?;
        // Running tasks are few (one per lease held) and their index is by
        // expiry, so the database sorts them; the other columns are read
        // in order.
        let sql = format!(
            "SELECT {TASK_COLS} FROM {from} ORDER BY priority DESC, created_at, id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(i64::from(per_column))
            .fetch_all(&mut *tx)
            .await?;
        let cards = rows
            .iter()
            .map(|r| {
                rows::task(r).map(|t| Card {
                    held: t.held,
                    id: t.id,
                    title: t.title,
                    priority: t.priority,
                    labels: t.labels,
                    attempts: t.attempts,
                    worker: t.lease.map(|l| l.worker),
                    created_at: t.created_at,
                    updated_at: t.updated_at,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        columns.push(Column {
            status,
            count: u64::try_from(count).unwrap_or(0),
            cards,
        });
    }
    tx.commit().await?;
    Ok(Board { columns })
}

async fn checkpoints(
    conn: &mut Conn,
    tenant: &str,
    task: Uuid,
    seq: Option<i64>,
) -> Result<Vec<Checkpoint>> {
    let rows = sqlx::query(
        "SELECT * FROM checkpoints WHERE tenant_id = $1 AND task_id = $2 AND ($3 IS NULL OR seq = $3) ORDER BY seq",
    )
    .bind(tenant)
    .bind(task.to_string())
    .bind(seq)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(rows::checkpoint).collect()
}

pub(crate) async fn checkpoint_list(
    pool: &Pool,
    tenant: &str,
    id: Uuid,
) -> Result<Vec<Checkpoint>> {
    let mut tx = pool.begin().await?;
    task(&mut tx, tenant, id).await?;
    checkpoints(&mut tx, tenant, id, None).await
}

pub(crate) async fn checkpoint_get(
    pool: &Pool,
    tenant: &str,
    id: Uuid,
    seq: i64,
) -> Result<Checkpoint> {
    let mut conn = pool.acquire().await?;
    checkpoints(&mut conn, tenant, id, Some(seq))
        .await?
        .pop()
        .ok_or_else(|| StoreError::not_found("checkpoint", format!("{id}/{seq}")))
}

/// The task's attempts: the ended ones' rows, then the running one, which
/// is the task's lease until it ends (`leases::close_attempt`).
pub(crate) async fn attempt_list(pool: &Pool, tenant: &str, id: Uuid) -> Result<Vec<Attempt>> {
    let mut tx = pool.begin().await?;
    let lease = sqlx::query(
        "SELECT status, lease_attempt, lease_worker, lease_started_at FROM tasks \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id.to_string())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StoreError::not_found("task", id))?;
    let rows =
        sqlx::query("SELECT * FROM attempts WHERE tenant_id = $1 AND task_id = $2 ORDER BY n")
            .bind(tenant)
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await?;
    let mut out = rows.iter().map(rows::attempt).collect::<Result<Vec<_>>>()?;
    out.extend(rows::running_attempt(&lease)?);
    Ok(out)
}

/// The task's ancestors, outermost first.
async fn decisions_for(conn: &mut Conn, tenant: &str, ids: &[Uuid]) -> Result<Vec<Decision>> {
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM decisions WHERE tenant_id = $1 AND task_id {} \
             ORDER BY created_at, id",
        dialect::in_list("$2")
    )))
    .bind(tenant)
    .bind(to_json(&ids))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(rows::decision).collect()
}

pub(crate) async fn decision_list(pool: &Pool, tenant: &str, id: Uuid) -> Result<Vec<Decision>> {
    let mut tx = pool.begin().await?;
    let t = task(&mut tx, tenant, id).await?;
    let goals = goals_of(&mut tx, tenant, std::slice::from_ref(&t)).await?;
    let mut ids: Vec<Uuid> = chain_of(&t, &goals).iter().map(|g| g.id).collect();
    ids.push(id);
    decisions_for(&mut tx, tenant, &ids).await
}

/// Every goal above `tasks`, one level of ancestry per query. Parents are
/// fixed at creation and must exist then, so chains have no cycle; the
/// bound only guards against a damaged database.
async fn goals_of(conn: &mut Conn, tenant: &str, tasks: &[Task]) -> Result<HashMap<Uuid, Task>> {
    let mut goals: HashMap<Uuid, Task> = HashMap::new();
    let mut wanted: Vec<Uuid> = tasks.iter().filter_map(|t| t.parent_id).collect();
    for _ in 0..256 {
        wanted.retain(|p| !goals.contains_key(p));
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            break;
        }
        let found = tasks_by_id(conn, tenant, &wanted).await?;
        if let Some(missing) = wanted.iter().find(|p| !found.contains_key(p)) {
            return Err(StoreError::not_found("task", missing));
        }
        wanted = found.values().filter_map(|g| g.parent_id).collect();
        goals.extend(found);
    }
    Ok(goals)
}

/// `t`'s goals from the top down, out of [`goals_of`]'s answer.
fn chain_of(t: &Task, goals: &HashMap<Uuid, Task>) -> Vec<GoalRef> {
    let mut chain = vec![];
    let mut next = t.parent_id;
    while let Some(g) = next
        .and_then(|p| goals.get(&p))
        .filter(|_| chain.len() < 256)
    {
        next = g.parent_id;
        chain.push(GoalRef {
            id: g.id,
            title: g.title.clone(),
            goal: g.goal.clone(),
        });
    }
    chain.reverse();
    chain
}

/// Tasks by id, in one query.
async fn tasks_by_id(conn: &mut Conn, tenant: &str, ids: &[Uuid]) -> Result<HashMap<Uuid, Task>> {
    let sql = format!(
        "SELECT {TASK_COLS} FROM tasks WHERE tenant_id = $1 AND id {}",
        dialect::in_list("$2")
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(to_json(&ids))
        .fetch_all(&mut *conn)
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in &rows {
        let t = rows::task(row)?;
        out.insert(t.id, t);
    }
    Ok(out)
}

pub(crate) async fn context(pool: &Pool, tenant: &str, id: Uuid) -> Result<ContextBundle> {
    let mut tx = pool.begin().await?;
    let t = task(&mut tx, tenant, id).await?;
    let mut out = contexts_in(&mut tx, tenant, vec![t]).await?;
    tx.commit().await?;
    out.pop()
        .ok_or_else(|| StoreError::Corrupt("no context assembled".into()))
}

pub(crate) async fn contexts(
    pool: &Pool,
    tenant: &str,
    tasks: Vec<Task>,
) -> Result<Vec<ContextBundle>> {
    if tasks.is_empty() {
        return Ok(vec![]);
    }
    // Fresh tasks with no goal, dependency, checkpoint or earlier attempt
    // (a queue's usual claim) need only their decisions: one query, its
    // own snapshot, so no transaction around it; and none at all when the
    // tasks say they have no decisions (the lease route's read, on the
    // path from create to lease, finding 40).
    let one_query = tasks.iter().all(|t| {
        t.parent_id.is_none()
            && t.depends_on.is_empty()
            && t.checkpoint_seq == 0
            && !has_earlier_attempts(t)
    });
    if one_query && tasks.iter().all(|t| t.decision_count == 0) {
        return Ok(tasks
            .into_iter()
            .map(|t| packet(t, vec![], vec![], vec![], vec![], None))
            .collect());
    }
    if one_query {
        let mut conn = pool.acquire().await?;
        return contexts_in(&mut conn, tenant, tasks).await;
    }
    let mut tx = pool.begin().await?;
    let out = contexts_in(&mut tx, tenant, tasks).await?;
    tx.commit().await?;
    Ok(out)
}

/// A task's attempts are numbered 1..=attempts; whether any is over (the
/// running one is left out of a packet).
fn has_earlier_attempts(t: &Task) -> bool {
    t.attempts > 1 || (t.attempts == 1 && t.status != TaskStatus::Running)
}

/// The resume packets of `tasks`, in a number of queries that does not grow
/// with how many there are (a claim of 32 answered with 32 packets read one
/// by one spent more time reading than the claim spent writing): one per
/// level of goal ancestry, one for decisions, one for dependencies, one for
/// earlier attempts, and one per task that has a checkpoint.
async fn contexts_in(
    conn: &mut Conn,
    tenant: &str,
    tasks: Vec<Task>,
) -> Result<Vec<ContextBundle>> {
    let goals = goals_of(conn, tenant, &tasks).await?;
    let chains: Vec<Vec<GoalRef>> = tasks.iter().map(|t| chain_of(t, &goals)).collect();
    let mut ids: Vec<Uuid> = tasks.iter().map(|t| t.id).collect();
    ids.extend(goals.keys());
    let decisions = decisions_for(conn, tenant, &ids).await?;
    let mut deps: Vec<Uuid> = tasks.iter().flat_map(|t| t.depends_on.clone()).collect();
    deps.sort_unstable();
    deps.dedup();
    let deps = if deps.is_empty() {
        HashMap::new()
    } else {
        tasks_by_id(conn, tenant, &deps).await?
    };
    let earlier: Vec<Uuid> = tasks
        .iter()
        .filter(|t| has_earlier_attempts(t))
        .map(|t| t.id)
        .collect();
    let mut attempts: HashMap<Uuid, Vec<Attempt>> = HashMap::new();
    if !earlier.is_empty() {
        let sql = format!(
            "SELECT * FROM attempts WHERE tenant_id = $1 AND task_id {} ORDER BY task_id, n",
            dialect::in_list("$2")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(to_json(&earlier))
            .fetch_all(&mut *conn)
            .await?;
        // Only ended attempts have rows (a running one is its task's lease).
        for row in &rows {
            attempts
                .entry(rows::uuid(row, "task_id")?)
                .or_default()
                .push(rows::attempt(row)?);
        }
    }
    let mut out = Vec::with_capacity(tasks.len());
    for (t, goal_chain) in tasks.into_iter().zip(chains) {
        let mut mine: HashSet<Uuid> = goal_chain.iter().map(|g| g.id).collect();
        mine.insert(t.id);
        let decisions: Vec<Decision> = decisions
            .iter()
            .filter(|d| mine.contains(&d.task_id))
            .cloned()
            .collect();
        let mut dependencies = Vec::with_capacity(t.depends_on.len());
        for d in &t.depends_on {
            let dt = deps
                .get(d)
                .ok_or_else(|| StoreError::not_found("task", d))?;
            dependencies.push(DependencyResult {
                id: dt.id,
                title: dt.title.clone(),
                status: dt.status,
                result: dt.result.clone(),
            });
        }
        let latest_checkpoint = if t.checkpoint_seq > 0 {
            checkpoints(conn, tenant, t.id, Some(t.checkpoint_seq))
                .await?
                .pop()
        } else {
            None
        };
        let attempts = attempts.remove(&t.id).unwrap_or_default();
        out.push(packet(
            t,
            goal_chain,
            dependencies,
            decisions,
            attempts,
            latest_checkpoint,
        ));
    }
    Ok(out)
}

/// A task's resume packet from its parts.
fn packet(
    t: Task,
    goal_chain: Vec<GoalRef>,
    dependencies: Vec<DependencyResult>,
    decisions: Vec<Decision>,
    attempts: Vec<Attempt>,
    latest_checkpoint: Option<Checkpoint>,
) -> ContextBundle {
    ContextBundle {
        attempts,
        task: TaskBrief {
            id: t.id,
            title: t.title,
            goal: t.goal,
            status: t.status,
            labels: t.labels,
            priority: t.priority,
        },
        goal_chain,
        acceptance: t.acceptance,
        dependencies,
        decisions,
        latest_checkpoint,
        do_not_retry: t.do_not_retry,
        omitted: vec![],
    }
}

pub(crate) async fn event_list(pool: &Pool, tenant: &str, q: &EventQuery) -> Result<EventPage> {
    let limit = page_size(q.limit, 100);
    // Two statements, not one with `($3 IS NULL OR task_id = $3)`: a
    // statement prepared once cannot know which half holds, so SQLite
    // planned that one on the primary key alone and a task's few events
    // were found by reading the tenant's whole log after `after`. With
    // the task named, `events_task` leads straight to them.
    // The task, when named, is bound last, so both statements share the
    // rest of their parameters.
    let sql = match q.task {
        Some(_) => {
            "SELECT * FROM events WHERE tenant_id = $1 AND task_id = $4 AND seq > $2 \
             ORDER BY seq LIMIT $3"
        }
        None => "SELECT * FROM events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    };
    let mut query = sqlx::query(sql)
        .bind(tenant)
        .bind(q.after)
        .bind(i64::from(limit));
    if let Some(task) = q.task {
        query = query.bind(task.to_string());
    }
    let rows = query.fetch_all(pool).await?;
    let events = rows.iter().map(rows::event).collect::<Result<Vec<_>>>()?;
    let next_after = events.last().map_or(q.after, |e| e.seq);
    Ok(EventPage { events, next_after })
}

pub(crate) async fn next_due(
    pool: &Pool,
    tenant: &str,
    now: Timestamp,
) -> Result<Option<Timestamp>> {
    let sql = format!(
        "SELECT MIN(t) FROM (SELECT {} AS t UNION ALL SELECT {} AS t) AS due",
        leases::next_expiry_sql("$1"),
        leases::next_backoff_sql("$1", "$2"),
    );
    let due: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(now.0)
        .fetch_one(pool)
        .await?;
    Ok(due.map(Timestamp))
}

pub(crate) async fn token_lookup(pool: &Pool, hash: &str) -> Result<Option<Principal>> {
    let row = sqlx::query("SELECT tenant_id, role FROM tokens WHERE hash = $1")
        .bind(hash)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.try_get("role")?;
    Ok(Some(Principal {
        tenant: row.try_get("tenant_id")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
    }))
}

pub(crate) async fn blob_known(pool: &Pool, tenant: &str, sha: &str) -> Result<bool> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM blobs WHERE tenant_id = $1 AND sha256 = $2")
            .bind(tenant)
            .bind(sha)
            .fetch_optional(pool)
            .await?;
    Ok(found.is_some())
}

/// Tenants with an expired lease (for the sweeper, which then takes each
/// tenant in its own write).
pub(crate) async fn tenants_with_expired(
    pool: &Pool,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        // `+ 0`: see `claim_sql`.
        "SELECT DISTINCT tenant_id FROM tasks WHERE status = 'running' AND lease_expires_at <= $1 LIMIT $2 + 0",
    )
    .bind(now.0)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?)
}
