//! Decoding rows into domain records, and the JSON/UUID column helpers.
//! Shared by both backends (compiled once per backend; `DbRow` is its row type).

use aruntime_core::{
    Attempt, AttemptOutcome, Checkpoint, Decision, Event, LeaseInfo, Task, TaskStatus, Timestamp,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use super::DbRow;
use crate::{Result, StoreError};

/// The task columns every task query selects, in [`task`]'s order.
pub(crate) const TASK_COLS: &str = "id, title, goal, acceptance, labels, priority, status, held, \
    parent_id, depends_on, pending_deps, max_attempts, failed_attempts, attempts, lease_ttl_s, \
    not_before, lease_worker, lease_attempt, lease_expires_at, result, error, blocked_reason, \
    do_not_retry, checkpoint_seq, created_at, updated_at";

fn corrupt(col: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{col}: {e}"))
}

pub(crate) fn json<T: DeserializeOwned>(row: &DbRow, col: &str) -> Result<T> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| corrupt(col, e))
}

pub(crate) fn opt_json(row: &DbRow, col: &str) -> Result<Option<Value>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(col, e)))
        .transpose()
}

pub(crate) fn uuid(row: &DbRow, col: &str) -> Result<Uuid> {
    let s: String = row.try_get(col)?;
    Uuid::parse_str(&s).map_err(|e| corrupt(col, e))
}

fn opt_uuid(row: &DbRow, col: &str) -> Result<Option<Uuid>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| Uuid::parse_str(&s).map_err(|e| corrupt(col, e)))
        .transpose()
}

fn ts(row: &DbRow, col: &str) -> Result<Timestamp> {
    Ok(Timestamp(row.try_get(col)?))
}

fn u32_col(row: &DbRow, col: &str) -> Result<u32> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|e| corrupt(col, e))
}

/// JSON text for a value column; `NULL` for JSON null.
pub(crate) fn json_text(v: &Value) -> Option<String> {
    (!v.is_null()).then(|| v.to_string())
}

/// JSON text for a list or struct column.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

pub(crate) fn status(row: &DbRow) -> Result<TaskStatus> {
    let s: String = row.try_get("status")?;
    TaskStatus::parse(&s).ok_or_else(|| corrupt("status", s))
}

pub(crate) fn task(row: &DbRow) -> Result<Task> {
    let status = status(row)?;
    let lease_worker: Option<String> = row.try_get("lease_worker")?;
    let lease_expires: Option<i64> = row.try_get("lease_expires_at")?;
    let lease_attempt: Option<i64> = row.try_get("lease_attempt")?;
    let lease = match (status, lease_worker, lease_expires, lease_attempt) {
        (TaskStatus::Running, Some(worker), Some(exp), Some(n)) => Some(LeaseInfo {
            worker,
            attempt: u32::try_from(n).map_err(|e| corrupt("lease_attempt", e))?,
            expires_at: Timestamp(exp),
        }),
        _ => None,
    };
    let not_before: i64 = row.try_get("not_before")?;
    Ok(Task {
        id: uuid(row, "id")?,
        title: row.try_get("title")?,
        goal: row.try_get("goal")?,
        acceptance: json(row, "acceptance")?,
        labels: json(row, "labels")?,
        priority: row.try_get("priority")?,
        status,
        held: row.try_get("held")?,
        parent_id: opt_uuid(row, "parent_id")?,
        depends_on: json(row, "depends_on")?,
        pending_dependencies: u32_col(row, "pending_deps")?,
        max_attempts: u32_col(row, "max_attempts")?,
        failed_attempts: u32_col(row, "failed_attempts")?,
        attempts: u32_col(row, "attempts")?,
        lease_ttl_s: u32_col(row, "lease_ttl_s")?,
        not_before: (status == TaskStatus::Ready && not_before > 0)
            .then_some(Timestamp(not_before)),
        lease,
        result: opt_json(row, "result")?,
        error: row.try_get("error")?,
        blocked_reason: row.try_get("blocked_reason")?,
        do_not_retry: json(row, "do_not_retry")?,
        checkpoint_seq: row.try_get("checkpoint_seq")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

pub(crate) fn attempt(row: &DbRow) -> Result<Attempt> {
    let outcome: String = row.try_get("outcome")?;
    let ended: Option<i64> = row.try_get("ended_at")?;
    Ok(Attempt {
        n: u32_col(row, "n")?,
        worker: row.try_get("worker")?,
        started_at: ts(row, "started_at")?,
        ended_at: ended.map(Timestamp),
        outcome: AttemptOutcome::parse(&outcome).ok_or_else(|| corrupt("outcome", outcome))?,
        notes: row.try_get("notes")?,
        error: row.try_get("error")?,
    })
}

pub(crate) fn checkpoint(row: &DbRow) -> Result<Checkpoint> {
    Ok(Checkpoint {
        seq: row.try_get("seq")?,
        attempt: u32_col(row, "attempt")?,
        summary: row.try_get("summary")?,
        state: opt_json(row, "state")?.unwrap_or(Value::Null),
        artifacts: json(row, "artifacts")?,
        test_results: opt_json(row, "test_results")?.unwrap_or(Value::Null),
        created_at: ts(row, "created_at")?,
    })
}

pub(crate) fn decision(row: &DbRow) -> Result<Decision> {
    Ok(Decision {
        id: uuid(row, "id")?,
        task_id: uuid(row, "task_id")?,
        title: row.try_get("title")?,
        rationale: row.try_get("rationale")?,
        created_at: ts(row, "created_at")?,
    })
}

pub(crate) fn event(row: &DbRow) -> Result<Event> {
    Ok(Event {
        seq: row.try_get("seq")?,
        task_id: opt_uuid(row, "task_id")?,
        kind: row.try_get("kind")?,
        data: json(row, "data")?,
        at: ts(row, "at")?,
    })
}
