//! Decoding rows into domain records, and the JSON/UUID column helpers.
//! Shared by both backends (compiled once per backend; `DbRow` is its row type).

use aruntime_core::{
    Attempt, AttemptOutcome, Checkpoint, Decision, Event, LeaseInfo, Task, TaskStatus, Timestamp,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use super::{Db, DbRow};
use crate::sqlite::ffi::{FfiRow, Val};
use crate::{Result, StoreError};

/// A row the decoders below read: sqlx's, or one the SQLite writer read
/// through SQLite's C API ([`FfiRow`]).
pub(crate) trait Get {
    /// Column `name`, decoded.
    fn col<T: Col>(&self, name: &str) -> Result<T>;

    /// Text column `name`, borrowed from the row: for columns that are
    /// parsed (ids, JSON, statuses), which need no copy of their own.
    fn text(&self, name: &str) -> Result<Option<&str>>;
}

/// A column type both kinds of row decode.
pub(crate) trait Col: Sized + for<'r> sqlx::Decode<'r, Db> + sqlx::Type<Db> {
    /// From a value SQLite returned, if it has this type.
    fn from_val(v: &Val) -> Option<Self>;
}

impl Get for DbRow {
    fn col<T: Col>(&self, name: &str) -> Result<T> {
        Ok(self.try_get(name)?)
    }

    fn text(&self, name: &str) -> Result<Option<&str>> {
        Ok(self.try_get(name)?)
    }
}

impl Get for FfiRow {
    fn col<T: Col>(&self, name: &str) -> Result<T> {
        let v = self.val(name)?;
        T::from_val(v).ok_or_else(|| corrupt(name, format!("unexpected {v:?}")))
    }

    fn text(&self, name: &str) -> Result<Option<&str>> {
        match self.val(name)? {
            Val::Text(s) => Ok(Some(s)),
            Val::Null => Ok(None),
            v => Err(corrupt(name, format!("unexpected {v:?}"))),
        }
    }
}

impl Col for String {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl Col for i64 {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(n) => Some(*n),
            _ => None,
        }
    }
}

impl Col for i32 {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(n) => i32::try_from(*n).ok(),
            _ => None,
        }
    }
}

impl Col for bool {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(n) => Some(*n != 0),
            _ => None,
        }
    }
}

impl<T: Col> Col for Option<T>
where
    Option<T>: for<'r> sqlx::Decode<'r, Db> + sqlx::Type<Db>,
{
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Null => Some(None),
            v => T::from_val(v).map(Some),
        }
    }
}

/// The task columns every task query selects, in [`task`]'s order.
pub(crate) const TASK_COLS: &str = "id, title, goal, acceptance, labels, priority, status, held, \
    parent_id, depends_on, pending_deps, max_attempts, failed_attempts, attempts, lease_ttl_s, \
    not_before, lease_worker, lease_attempt, lease_expires_at, result, error, blocked_reason, \
    do_not_retry, checkpoint_seq, decision_count, created_at, updated_at";

fn corrupt(col: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{col}: {e}"))
}

/// Text column `col`, which must not be NULL.
fn some_text<'r>(row: &'r impl Get, col: &str) -> Result<&'r str> {
    row.text(col)?
        .ok_or_else(|| corrupt(col, "unexpected NULL"))
}

pub(crate) fn json<T: DeserializeOwned>(row: &impl Get, col: &str) -> Result<T> {
    serde_json::from_str(some_text(row, col)?).map_err(|e| corrupt(col, e))
}

pub(crate) fn opt_json(row: &impl Get, col: &str) -> Result<Option<Value>> {
    row.text(col)?
        .map(|s| serde_json::from_str(s).map_err(|e| corrupt(col, e)))
        .transpose()
}

pub(crate) fn uuid(row: &impl Get, col: &str) -> Result<Uuid> {
    Uuid::parse_str(some_text(row, col)?).map_err(|e| corrupt(col, e))
}

fn opt_uuid(row: &impl Get, col: &str) -> Result<Option<Uuid>> {
    row.text(col)?
        .map(|s| Uuid::parse_str(s).map_err(|e| corrupt(col, e)))
        .transpose()
}

fn ts(row: &impl Get, col: &str) -> Result<Timestamp> {
    Ok(Timestamp(row.col(col)?))
}

fn u32_col(row: &impl Get, col: &str) -> Result<u32> {
    let v: i64 = row.col(col)?;
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

pub(crate) fn status(row: &impl Get) -> Result<TaskStatus> {
    let s = some_text(row, "status")?;
    TaskStatus::parse(s).ok_or_else(|| corrupt("status", s))
}

pub(crate) fn task(row: &impl Get) -> Result<Task> {
    // In `TASK_COLS` order, where an `FfiRow` finds each column at once.
    let id = uuid(row, "id")?;
    let title = row.col("title")?;
    let goal = row.col("goal")?;
    let acceptance = json(row, "acceptance")?;
    let labels = json(row, "labels")?;
    let priority = row.col("priority")?;
    let status = status(row)?;
    let held = row.col("held")?;
    let parent_id = opt_uuid(row, "parent_id")?;
    let depends_on = json(row, "depends_on")?;
    let pending_dependencies = u32_col(row, "pending_deps")?;
    let max_attempts = u32_col(row, "max_attempts")?;
    let failed_attempts = u32_col(row, "failed_attempts")?;
    let attempts = u32_col(row, "attempts")?;
    let lease_ttl_s = u32_col(row, "lease_ttl_s")?;
    let not_before: i64 = row.col("not_before")?;
    let lease_worker: Option<String> = row.col("lease_worker")?;
    let lease_attempt: Option<i64> = row.col("lease_attempt")?;
    let lease_expires: Option<i64> = row.col("lease_expires_at")?;
    let lease = match (status, lease_worker, lease_expires, lease_attempt) {
        (TaskStatus::Running, Some(worker), Some(exp), Some(n)) => Some(LeaseInfo {
            worker,
            attempt: u32::try_from(n).map_err(|e| corrupt("lease_attempt", e))?,
            expires_at: Timestamp(exp),
        }),
        _ => None,
    };
    Ok(Task {
        id,
        title,
        goal,
        acceptance,
        labels,
        priority,
        status,
        held,
        parent_id,
        depends_on,
        pending_dependencies,
        max_attempts,
        failed_attempts,
        attempts,
        lease_ttl_s,
        not_before: (status == TaskStatus::Ready && not_before > 0)
            .then_some(Timestamp(not_before)),
        lease,
        result: opt_json(row, "result")?,
        error: row.col("error")?,
        blocked_reason: row.col("blocked_reason")?,
        do_not_retry: json(row, "do_not_retry")?,
        checkpoint_seq: row.col("checkpoint_seq")?,
        decision_count: u32_col(row, "decision_count")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
    })
}

pub(crate) fn attempt(row: &impl Get) -> Result<Attempt> {
    let outcome = some_text(row, "outcome")?;
    let ended: Option<i64> = row.col("ended_at")?;
    Ok(Attempt {
        n: u32_col(row, "n")?,
        worker: row.col("worker")?,
        started_at: ts(row, "started_at")?,
        ended_at: ended.map(Timestamp),
        outcome: AttemptOutcome::parse(outcome).ok_or_else(|| corrupt("outcome", outcome))?,
        notes: row.col("notes")?,
        error: row.col("error")?,
    })
}

/// The attempt a running task's lease is, from its `status`,
/// `lease_attempt`, `lease_worker` and `lease_started_at`; `None` unless
/// it runs.
pub(crate) fn running_attempt(row: &impl Get) -> Result<Option<Attempt>> {
    if status(row)? != TaskStatus::Running {
        return Ok(None);
    }
    let n: Option<i64> = row.col("lease_attempt")?;
    let worker: Option<String> = row.col("lease_worker")?;
    let started: Option<i64> = row.col("lease_started_at")?;
    let (Some(n), Some(worker), Some(started)) = (n, worker, started) else {
        return Err(corrupt("lease", "a running task without its lease"));
    };
    Ok(Some(Attempt {
        n: u32::try_from(n).map_err(|e| corrupt("lease_attempt", e))?,
        worker,
        started_at: Timestamp(started),
        ended_at: None,
        outcome: AttemptOutcome::Running,
        notes: None,
        error: None,
    }))
}

pub(crate) fn checkpoint(row: &impl Get) -> Result<Checkpoint> {
    Ok(Checkpoint {
        seq: row.col("seq")?,
        attempt: u32_col(row, "attempt")?,
        summary: row.col("summary")?,
        state: opt_json(row, "state")?.unwrap_or(Value::Null),
        artifacts: json(row, "artifacts")?,
        test_results: opt_json(row, "test_results")?.unwrap_or(Value::Null),
        created_at: ts(row, "created_at")?,
    })
}

pub(crate) fn decision(row: &impl Get) -> Result<Decision> {
    Ok(Decision {
        id: uuid(row, "id")?,
        task_id: uuid(row, "task_id")?,
        title: row.col("title")?,
        rationale: row.col("rationale")?,
        created_at: ts(row, "created_at")?,
    })
}

pub(crate) fn event(row: &impl Get) -> Result<Event> {
    Ok(Event {
        seq: row.col("seq")?,
        task_id: opt_uuid(row, "task_id")?,
        kind: row.col("kind")?,
        data: json(row, "data")?,
        at: ts(row, "at")?,
    })
}
