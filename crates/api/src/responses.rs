//! Response bodies.

use aruntime_core::context::ContextBundle;
use aruntime_core::{Attempt, Checkpoint, Decision, Event, Role, Task, TaskStatus, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tenant {
    /// Its name, which is its id.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A new API token. The token is shown once and stored only as a hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenCreated {
    /// The bearer token.
    pub token: String,
    /// Its tenant.
    pub tenant: String,
    /// Its role.
    pub role: Role,
}

/// A page of tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskPage {
    /// The tasks, oldest first.
    pub tasks: Vec<Task>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<Uuid>,
}

/// The board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Board {
    /// Columns in board order.
    pub columns: Vec<Column>,
}

/// One board column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Column {
    /// Its status.
    pub status: TaskStatus,
    /// How many tasks it holds.
    pub count: u64,
    /// The first cards, highest priority first.
    pub cards: Vec<Card>,
}

/// A task as a board card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Card {
    /// Task id.
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Priority.
    pub priority: i32,
    /// A person holds it in the backlog.
    #[serde(default)]
    pub held: bool,
    /// Labels.
    pub labels: Vec<String>,
    /// Attempts so far.
    pub attempts: u32,
    /// The worker holding it.
    pub worker: Option<String>,
    /// Created at.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// The header a client states its preferences in (RFC 7240).
pub const PREFER: &str = "prefer";

/// The `Prefer` value (RFC 7240) that asks a task write for a [`TaskRef`]
/// instead of the whole task, and the `Preference-Applied` value that
/// says it was honoured.
pub const RETURN_MINIMAL: &str = "return=minimal";

/// A task write's answer when the client sent `Prefer: return=minimal`
/// (RFC 7240): which task, and where it stands now, instead of the whole
/// task. For clients that only need to know the write happened: a producer
/// creating tasks, a worker acknowledging one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskRef {
    /// The task.
    pub id: Uuid,
    /// Its status once written.
    pub status: TaskStatus,
}

/// `POST /v1/leases` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimResponse {
    /// Granted leases; empty when nothing was ready within `wait_ms`.
    pub leases: Vec<GrantedLease>,
}

/// One granted lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GrantedLease {
    /// The task, as it is now (running).
    pub task: Task,
    /// The attempt number this lease opened.
    pub attempt: u32,
    /// The lease token: fences every write of this worker.
    pub lease: String,
    /// When it runs out unless renewed.
    pub expires_at: Timestamp,
    /// The resume packet.
    pub context: ContextBundle,
}

/// `POST /v1/leases/complete` answer: one outcome per entry, in the
/// order sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompletedLeases {
    /// Each entry's outcome.
    pub results: Vec<LeaseOutcome>,
}

/// How one completion of a [`CompletedLeases`] went: `status` when it
/// was written, `error` (the API's error shape) when it was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LeaseOutcome {
    /// The task the entry named.
    pub task: Uuid,
    /// The task's status once written: `done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    /// Why the entry was refused (`lease_lost`, `not_found`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::ErrorDetail>,
}

/// `POST /v1/leases/{lease}/heartbeat` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeartbeatResponse {
    /// The task leased.
    pub task_id: Uuid,
    /// The new expiry.
    pub expires_at: Timestamp,
}

/// Checkpoints of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointList {
    /// Oldest first.
    pub checkpoints: Vec<Checkpoint>,
}

/// Attempts of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AttemptList {
    /// Oldest first.
    pub attempts: Vec<Attempt>,
}

/// Decisions that apply to a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DecisionList {
    /// Oldest first.
    pub decisions: Vec<Decision>,
}

/// A stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BlobRef {
    /// Its sha256, hex: its address.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// A page of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventPage {
    /// In log order.
    pub events: Vec<Event>,
    /// Pass as `after` to continue.
    pub next_after: i64,
}
