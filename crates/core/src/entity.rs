//! The records aruntime keeps: tasks, attempts, checkpoints, decisions, events.
//! These are also the shapes the API returns.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{Role, TaskStatus, Timestamp};

/// A unit of work on the board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Task {
    /// Unique id (UUID v7, so ids sort by creation).
    pub id: Uuid,
    /// One line.
    pub title: String,
    /// The intent, in markdown.
    pub goal: String,
    /// What must be true for the task to count as done.
    pub acceptance: Vec<String>,
    /// Capabilities a worker must have to lease it.
    pub labels: Vec<String>,
    /// Higher first.
    pub priority: i32,
    /// Board column.
    pub status: TaskStatus,
    /// A person holds it in the backlog.
    pub held: bool,
    /// The goal this task is part of.
    pub parent_id: Option<Uuid>,
    /// Tasks that must be done first.
    pub depends_on: Vec<Uuid>,
    /// How many of `depends_on` are not done yet.
    pub pending_dependencies: u32,
    /// Attempts that may fail or be abandoned before the task fails for good.
    pub max_attempts: u32,
    /// Failed or abandoned attempts since creation or the last reopen.
    pub failed_attempts: u32,
    /// All attempts ever opened (attempt numbers run on across reopens).
    pub attempts: u32,
    /// Default lease time-to-live, seconds.
    pub lease_ttl_s: u32,
    /// A retry waits until then.
    pub not_before: Option<Timestamp>,
    /// The current lease, without its token.
    pub lease: Option<LeaseInfo>,
    /// What the completing worker reported.
    pub result: Option<Value>,
    /// The last failure's error.
    pub error: Option<String>,
    /// Why it is blocked.
    pub blocked_reason: Option<String>,
    /// Approaches later attempts must not try again.
    pub do_not_retry: Vec<String>,
    /// Number of the latest checkpoint (0: none).
    pub checkpoint_seq: i64,
    /// How many decisions are recorded on the task itself.
    #[serde(default)]
    pub decision_count: u32,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A lease as others may see it (the token is only given to its holder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LeaseInfo {
    /// The worker's name.
    pub worker: String,
    /// The attempt number it belongs to.
    pub attempt: u32,
    /// When it runs out unless renewed.
    pub expires_at: Timestamp,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Still holding its lease.
    Running,
    /// Completed the task.
    Completed,
    /// Reported a failure.
    Failed,
    /// Its lease expired.
    Abandoned,
    /// Handed the task back.
    Released,
    /// Stopped to wait for a person.
    Blocked,
    /// The task was cancelled under it.
    Cancelled,
}

impl AttemptOutcome {
    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Running => "running",
            AttemptOutcome::Completed => "completed",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Abandoned => "abandoned",
            AttemptOutcome::Released => "released",
            AttemptOutcome::Blocked => "blocked",
            AttemptOutcome::Cancelled => "cancelled",
        }
    }

    /// Parses a name produced by [`AttemptOutcome::as_str`].
    pub fn parse(s: &str) -> Option<AttemptOutcome> {
        use AttemptOutcome::*;
        [
            Running, Completed, Failed, Abandoned, Released, Blocked, Cancelled,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// One worker's try at a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Attempt {
    /// 1, 2, … per task.
    pub n: u32,
    /// The worker's name.
    pub worker: String,
    /// When the lease was granted.
    pub started_at: Timestamp,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// What the worker tried and why it stopped.
    pub notes: Option<String>,
    /// The error it reported.
    pub error: Option<String>,
}

/// A file attached to a checkpoint, stored as a content-addressed blob.
/// Unknown fields are refused here too, not only at the request's top level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// What it is, e.g. `diff.patch`.
    pub name: String,
    /// The blob's sha256, hex.
    pub sha256: String,
}

/// A recovery point, numbered per task across attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Checkpoint {
    /// 1, 2, … per task.
    pub seq: i64,
    /// The attempt that wrote it.
    pub attempt: u32,
    /// Where the work stands, in words.
    pub summary: String,
    /// Machine state to resume from.
    pub state: Value,
    /// Files (diffs, logs, build outputs).
    pub artifacts: Vec<Artifact>,
    /// Test results, in any JSON shape.
    pub test_results: Value,
    /// When it was written.
    pub created_at: Timestamp,
}

/// An architectural or strategic decision, inherited by subtasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    /// Unique id.
    pub id: Uuid,
    /// The task (or goal) it was recorded on.
    pub task_id: Uuid,
    /// The decision.
    pub title: String,
    /// Why.
    pub rationale: String,
    /// When it was recorded.
    pub created_at: Timestamp,
}

/// One state change, in the tenant's ordered log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// Position in the tenant's log, from 1, without gaps.
    pub seq: i64,
    /// The task it concerns, if any.
    pub task_id: Option<Uuid>,
    /// What happened, e.g. `task.completed`.
    pub kind: String,
    /// Details.
    pub data: Value,
    /// When.
    pub at: Timestamp,
}

/// The acting identity, resolved from a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant it acts in.
    pub tenant: String,
    /// What it may do.
    pub role: Role,
}

/// The tenant created on first start.
pub const DEFAULT_TENANT: &str = "default";
