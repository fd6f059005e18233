//! Writes under leases: claims, heartbeats, checkpoints, the four ways an
//! attempt ends, and expiry. Every one of them checks the lease token and
//! its expiry against `now` in the same transaction as the write.

use aruntime_api::NewCheckpoint;
use aruntime_core::{
    Command, LeaseInfo, Task, TaskStatus, Timestamp, retry_backoff_ms, transition,
};
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

use super::dialect;
use super::grouped::{Grouped, Pending, checkpoint_many, complete_many, known_blobs};
use super::rows::{self, TASK_COLS, json_text, to_json};
use super::tasks::{CLEAR_LEASE, event, load};
use super::writer::WriteCtx;
use crate::{Finish, Result, StoreError};

/// A fresh lease token: 244 random bits.
///
/// `uuid` draws them from `rand`'s thread-local generator (its `fast-rng`
/// feature: ChaCha12, seeded and reseeded from the operating system), a
/// cryptographically secure source, instead of one `getrandom` system call
/// per id: a task's create and claim made 1.35 of those calls per task in
/// `cycle` (docs/performance.md, finding 71).
pub(crate) fn new_token() -> String {
    format!("ls_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// A lease's token: a claim's secret followed by the task's id, so that a
/// token names its task and a heartbeat finds the task by its key (no
/// index of tokens to keep on every claim and completion).
pub(crate) fn lease_token(secret: &str, task: &str) -> String {
    format!("{secret}{task}")
}

/// The task a token names (see [`lease_token`]); `None` if it names none.
fn task_of_token(token: &str) -> Option<Uuid> {
    let start = token.len().checked_sub(36)?;
    Uuid::try_parse(token.get(start..)?).ok()
}

/// Writes the row of attempt `n`, which ends now. An attempt's row is
/// written once, when it ends: until then it is the task's lease, and its
/// worker and start are read from the task's row (which keeps them after
/// the lease is cleared, so this may run before or after that).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn close_attempt(
    ctx: &mut WriteCtx,
    tenant: &str,
    task: Uuid,
    n: u32,
    outcome: &str,
    notes: Option<String>,
    error: Option<String>,
    at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO attempts (tenant_id, task_id, n, worker, started_at, ended_at, outcome, notes, error) \
         SELECT tenant_id, id, $1, COALESCE(lease_worker, ''), COALESCE(lease_started_at, $2), $3, $4, $5, $6 \
         FROM tasks WHERE tenant_id = $7 AND id = $8",
    )
    .bind(i64::from(n))
    .bind(at.0)
    .bind(at.0)
    .bind(outcome)
    .bind(notes)
    .bind(error)
    .bind(tenant)
    .bind(task.to_string())
    .execute(&mut ctx.conn)
    .await?;
    Ok(())
}

/// Records an expired lease: the attempt is abandoned and the task goes back
/// to ready, or to failed (with an escalation) when its attempts are used up.
pub(crate) async fn expire(
    ctx: &mut WriteCtx,
    tenant: &str,
    id: Uuid,
    now: Timestamp,
) -> Result<bool> {
    let task = load(ctx, tenant, id).await?;
    // Re-checked under the row lock: on PostgreSQL another node may have
    // completed or re-leased the task since it was found expired.
    let Some(lease) = task.lease.clone().filter(|l| l.expires_at <= now) else {
        return Ok(false);
    };
    let failed = task.failed_attempts + 1;
    let t = transition(
        Some(task.status),
        Command::Expire {
            attempts_left: failed < task.max_attempts,
        },
    )?;
    let at = lease.expires_at;
    // The worker is gone and wrote no notes; say what the runtime knows, so
    // the next attempt learns where its predecessor stopped.
    let mut notes = format!(
        "The lease of worker {} expired at {} without a final write.",
        lease.worker,
        at.to_rfc3339()
    );
    if task.checkpoint_seq > 0 {
        notes.push_str(&format!(" Last checkpoint: #{}.", task.checkpoint_seq));
    }
    close_attempt(
        ctx,
        tenant,
        id,
        lease.attempt,
        "abandoned",
        Some(notes),
        None,
        at,
    )
    .await?;
    let error = t
        .escalate
        .then_some("attempts exhausted: the last lease expired");
    let sql = format!(
        "UPDATE tasks SET status = $1, failed_attempts = $2, not_before = 0, {CLEAR_LEASE}, \
         error = COALESCE($3, error), updated_at = $4 WHERE tenant_id = $5 AND id = $6"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(t.to.as_str())
        .bind(i64::from(failed))
        .bind(error)
        .bind(at.0)
        .bind(tenant)
        .bind(id.to_string())
        .execute(&mut ctx.conn)
        .await?;
    let data = json!({"attempt": lease.attempt, "worker": lease.worker, "to": t.to});
    event(ctx, tenant, Some(id), t.event, data, at);
    if t.escalate {
        escalate(ctx, tenant, id, failed, "attempts exhausted", at);
    }
    if t.to == TaskStatus::Ready {
        ctx.wake.ready(tenant, !task.labels.is_empty());
    }
    Ok(true)
}

fn escalate(ctx: &mut WriteCtx, tenant: &str, id: Uuid, failed: u32, reason: &str, at: Timestamp) {
    let data = json!({"reason": reason, "failed_attempts": failed});
    event(ctx, tenant, Some(id), "task.escalated", data, at);
}

/// Expired leases of one tenant, recorded before a claim looks for work.
pub(crate) async fn expire_due_in(ctx: &mut WriteCtx, tenant: &str, now: Timestamp) -> Result<u32> {
    let sql = format!(
        "SELECT id FROM tasks WHERE tenant_id = $1 AND status = 'running' AND lease_expires_at <= $2 \
         ORDER BY lease_expires_at LIMIT 1000{}",
        dialect::SKIP_LOCKED
    );
    let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(now.0)
        .fetch_all(&mut ctx.conn)
        .await?;
    let mut n = 0;
    for id in &ids {
        let id = Uuid::parse_str(id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        n += u32::from(expire(ctx, tenant, id, now).await?);
    }
    Ok(n)
}

/// The sweeper's write for one tenant.
pub(crate) async fn expire_tenant(
    ctx: &mut WriteCtx,
    tenant: String,
    now: Timestamp,
) -> Result<u32> {
    expire_due_in(ctx, &tenant, now).await
}

/// The claim statement: the tasks to lease, in order, as `id`, `priority`,
/// `created_at`. `$1` tenant, `$2` now, `$3` capabilities (JSON), `$4` how
/// many (see [`claim_sql_at`]).
pub(crate) fn claim_sql() -> String {
    claim_sql_at(["$1", "$2", "$3", "$4"], "")
}

/// [`claim_sql`] with its parameters named `p` (tenant, now, capabilities,
/// how many) and `and` appended to its condition. A task is offered only
/// if every one of its labels is a capability. Walks `tasks_claim` in order
/// and stops at the limit, so its cost does not grow with the number of
/// finished tasks.
///
/// The limit is written `+ 0` because SQLite plans a bare `LIMIT ?`
/// around the bound value and re-prepares the statement every time it is
/// bound again: seen as 5 % of the SQLite connection thread's time under
/// `cycle` (`sqlite3Reprepare` under `sqlite3_step`).
pub(crate) fn claim_sql_at([tenant, now, caps, want]: [&str; 4], and: &str) -> String {
    format!(
        "SELECT id, priority, created_at FROM tasks WHERE tenant_id = {tenant} AND status = 'ready' \
         AND not_before <= {now}{and} \
         AND NOT EXISTS (SELECT 1 FROM {labels} WHERE l.value NOT IN (SELECT c.value FROM {caps})) \
         ORDER BY priority DESC, created_at, id LIMIT {want} + 0{skip_locked}",
        labels = dialect::json_values("tasks.labels", "l"),
        caps = dialect::json_values(caps, "c"),
        skip_locked = dialect::SKIP_LOCKED,
    )
}

/// The earliest lease of `tenant` to expire, expired or not, as a scalar
/// subquery (NULL when nothing runs).
pub(crate) fn next_expiry_sql(tenant: &str) -> String {
    format!(
        "(SELECT MIN(lease_expires_at) FROM tasks WHERE tenant_id = {tenant} AND status = 'running')"
    )
}

/// The earliest backoff of `tenant` to end after `now`, as a scalar
/// subquery (NULL when none).
pub(crate) fn next_backoff_sql(tenant: &str, now: &str) -> String {
    format!(
        "(SELECT MIN(not_before) FROM tasks WHERE tenant_id = {tenant} AND status = 'ready' \
         AND not_before > 0 AND not_before > {now})"
    )
}

/// Whether `token` is a task's live lease at `now`, given the lease it
/// holds (token and expiry, present only while it runs). The one rule every
/// worker write is checked by, alone or in a group.
pub(crate) fn lease_is_live(held: Option<(&str, Timestamp)>, token: &str, now: Timestamp) -> bool {
    held.is_some_and(|(held, expires)| held == token && expires > now)
}

/// The task, if `token` is its live lease; `LeaseLost` otherwise.
async fn check_lease(
    ctx: &mut WriteCtx,
    tenant: &str,
    id: Uuid,
    token: &str,
    now: Timestamp,
) -> Result<Task> {
    // One read for both the check and the task: every worker write passes here.
    let sql = format!(
        "SELECT {TASK_COLS}, lease_token FROM tasks WHERE tenant_id = $1 AND id = $2{}",
        dialect::FOR_UPDATE
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(id.to_string())
        .fetch_optional(&mut ctx.conn)
        .await?
        .ok_or_else(|| StoreError::not_found("task", id))?;
    let held: Option<String> = row.try_get("lease_token")?;
    let task = rows::task(&row)?;
    // `task.lease` is set only while the task is running.
    let expires = task.lease.as_ref().map(|l| l.expires_at);
    if !lease_is_live(held.as_deref().zip(expires), token, now) {
        return Err(StoreError::LeaseLost);
    }
    Ok(task)
}

fn lease_of(task: &Task) -> Result<LeaseInfo> {
    task.lease
        .clone()
        .ok_or_else(|| StoreError::Corrupt(format!("running task {} has no lease", task.id)))
}

pub(crate) async fn heartbeat(
    ctx: &mut WriteCtx,
    tenant: String,
    token: String,
    now: Timestamp,
) -> Result<(Uuid, Timestamp)> {
    let id = task_of_token(&token).ok_or(StoreError::LeaseLost)?;
    let row = sqlx::query(
        "UPDATE tasks SET lease_expires_at = $1 + lease_ttl_ms \
         WHERE tenant_id = $2 AND id = $3 AND lease_token = $4 AND status = 'running' \
         AND lease_expires_at > $1 RETURNING id, lease_expires_at",
    )
    .bind(now.0)
    .bind(&tenant)
    .bind(id.to_string())
    .bind(&token)
    .fetch_optional(&mut ctx.conn)
    .await?
    .ok_or(StoreError::LeaseLost)?;
    Ok((
        rows::uuid(&row, "id")?,
        Timestamp(row.try_get("lease_expires_at")?),
    ))
}

/// A checkpoint as the writer stores it. Its JSON is text already, written
/// on the request's thread: a 1 KB state serialized on the writer's thread
/// would be time taken from every other write.
pub(crate) struct CheckpointWrite {
    pub(crate) id: Uuid,
    pub(crate) lease: String,
    pub(crate) summary: String,
    pub(crate) state: Option<String>,
    pub(crate) artifacts: String,
    /// The artifacts' sha256s as given: each must name a blob of the tenant.
    pub(crate) blobs: Vec<String>,
    pub(crate) test_results: Option<String>,
}

impl CheckpointWrite {
    pub(crate) fn of(id: Uuid, cp: &NewCheckpoint) -> Self {
        CheckpointWrite {
            id,
            lease: cp.lease.clone(),
            summary: cp.summary.clone(),
            state: json_text(&cp.state),
            artifacts: to_json(&cp.artifacts),
            blobs: cp.artifacts.iter().map(|a| a.sha256.clone()).collect(),
            test_results: json_text(&cp.test_results),
        }
    }
}

/// Writes one checkpoint and returns its number and attempt. It runs as a
/// group of one (`grouped::checkpoint_many`), the only implementation of
/// the write; only when that group does not write it is the lease, then
/// each artifact, checked here, for the precise error.
pub(crate) async fn checkpoint(
    ctx: &mut WriteCtx,
    tenant: String,
    cp: CheckpointWrite,
    now: Timestamp,
) -> Result<(i64, u32)> {
    let (id, token) = (cp.id, cp.lease.clone());
    let blobs = cp.blobs.clone();
    let pending = Pending {
        now,
        op: Grouped::Checkpoint(cp),
    };
    if let Some(Some(r)) = checkpoint_many(ctx, &tenant, &[&pending])
        .await?
        .into_iter()
        .next()
    {
        return r?.into_checkpointed();
    }
    check_lease(ctx, &tenant, id, &token, now).await?;
    let known = known_blobs(ctx, &tenant, &blobs).await?;
    if let Some(sha) = blobs
        .into_iter()
        .find(|s| !known.contains(&s.to_ascii_lowercase()))
    {
        return Err(StoreError::UnknownBlob(sha));
    }
    Err(StoreError::Corrupt(format!(
        "task {id}: a checkpoint under a live lease was not written"
    )))
}

fn merged(mut old: Vec<String>, new: Vec<String>) -> String {
    for n in new {
        if !old.contains(&n) {
            old.push(n);
        }
    }
    to_json(&old)
}

pub(crate) async fn finish(
    ctx: &mut WriteCtx,
    tenant: String,
    id: Uuid,
    token: String,
    how: Finish,
    now: Timestamp,
) -> Result<Task> {
    // Completion has one implementation, the set-based one; alone it is a
    // group of one. Only when it does not complete is the lease checked
    // here, for the precise error.
    let how = match how {
        Finish::Complete { result } => {
            let op = Grouped::Complete {
                id,
                token: token.clone(),
                result,
                whole: true,
            };
            let done = complete_many(ctx, &tenant, &[&Pending { now, op }]).await?;
            if let Some(Some(r)) = done.into_iter().next() {
                return r?.into_task();
            }
            check_lease(ctx, &tenant, id, &token, now).await?;
            // A live lease the group did not complete: only a database
            // answering out of turn gets here.
            return Err(StoreError::Corrupt(format!(
                "task {id}: a live lease did not complete"
            )));
        }
        how => how,
    };
    let task = check_lease(ctx, &tenant, id, &token, now).await?;
    let lease = lease_of(&task)?;
    let n = lease.attempt;
    let idt = id.to_string();
    let from = Some(task.status);
    match how {
        // Handled above, before the lease check.
        Finish::Complete { .. } => {}
        Finish::Fail {
            error,
            retryable,
            notes,
            do_not_retry,
        } => {
            let failed = task.failed_attempts + 1;
            let attempts_left = failed < task.max_attempts;
            let t = transition(
                from,
                Command::Fail {
                    retryable,
                    attempts_left,
                },
            )?;
            let not_before = if t.to == TaskStatus::Ready {
                now.plus_ms(retry_backoff_ms(failed))
            } else {
                Timestamp(0)
            };
            let sql = format!(
                "UPDATE tasks SET status = $1, failed_attempts = $2, error = $3, not_before = $4, \
                 do_not_retry = $5, {CLEAR_LEASE}, updated_at = $6 WHERE tenant_id = $7 AND id = $8"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(t.to.as_str())
                .bind(i64::from(failed))
                .bind(&error)
                .bind(not_before.0)
                .bind(merged(task.do_not_retry, do_not_retry))
                .bind(now.0)
                .bind(&tenant)
                .bind(&idt)
                .execute(&mut ctx.conn)
                .await?;
            close_attempt(
                ctx,
                &tenant,
                id,
                n,
                "failed",
                notes,
                Some(error.clone()),
                now,
            )
            .await?;
            let data = json!({"attempt": n, "error": error, "retryable": retryable, "to": t.to,
                              "not_before": (t.to == TaskStatus::Ready).then_some(not_before)});
            event(ctx, &tenant, Some(id), t.event, data, now);
            if t.escalate {
                let reason = if retryable {
                    "attempts exhausted"
                } else {
                    "non-retryable failure"
                };
                escalate(ctx, &tenant, id, failed, reason, now);
            }
            if t.to == TaskStatus::Ready {
                ctx.wake.ready(&tenant, !task.labels.is_empty());
            }
        }
        Finish::Block { reason } => {
            let t = transition(from, Command::Block)?;
            let sql = format!(
                "UPDATE tasks SET status = $1, blocked_reason = $2, {CLEAR_LEASE}, updated_at = $3 \
                 WHERE tenant_id = $4 AND id = $5"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(t.to.as_str())
                .bind(&reason)
                .bind(now.0)
                .bind(&tenant)
                .bind(&idt)
                .execute(&mut ctx.conn)
                .await?;
            close_attempt(
                ctx,
                &tenant,
                id,
                n,
                "blocked",
                Some(reason.clone()),
                None,
                now,
            )
            .await?;
            event(
                ctx,
                &tenant,
                Some(id),
                t.event,
                json!({"attempt": n, "reason": reason}),
                now,
            );
        }
        Finish::Release {
            notes,
            do_not_retry,
        } => {
            let t = transition(from, Command::Release)?;
            let sql = format!(
                "UPDATE tasks SET status = $1, not_before = 0, do_not_retry = $2, {CLEAR_LEASE}, updated_at = $3 \
                 WHERE tenant_id = $4 AND id = $5"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(t.to.as_str())
                .bind(merged(task.do_not_retry, do_not_retry))
                .bind(now.0)
                .bind(&tenant)
                .bind(&idt)
                .execute(&mut ctx.conn)
                .await?;
            close_attempt(ctx, &tenant, id, n, "released", notes, None, now).await?;
            event(ctx, &tenant, Some(id), t.event, json!({"attempt": n}), now);
            ctx.wake.ready(&tenant, !task.labels.is_empty());
        }
    }
    load(ctx, &tenant, id).await
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn a_token_names_its_task_and_nothing_else_does() {
        let id = Uuid::now_v7();
        let token = lease_token(&new_token(), &id.to_string());
        assert_eq!(task_of_token(&token), Some(id));
        for bogus in [
            "",
            "ls_bogus",
            "é",
            &id.to_string()[1..],
            &format!("{token}x"),
        ] {
            assert_eq!(task_of_token(bogus), None, "{bogus:?}");
        }
    }
}
