//! Storage for aruntime: the [`Store`] trait every backend implements, its
//! error type, and the embedded SQLite backend.
//!
//! Key decision: writes are batched. The SQLite backend funnels every state
//! change through one writer task that commits whatever arrived while the
//! previous commit was flushing in a single transaction (group commit), each
//! change in its own savepoint so one refused request cannot spoil its
//! neighbours. A caller is answered only after its transaction is durable.
//! Per-request transactions would cap throughput at the disk's flush rate.
//!
//! Every write under a lease takes the lease token and `now`: expiry is
//! checked at write time, never left to a background reaper, and tests
//! control time through the clock that produces `now`.
//!
//! # Layout
//! - `error`: [`StoreError`].
//! - `wake`: per-tenant wake-ups for long-polling claims.
//! - `blobs`: content-addressed files on disk.
//! - `ops/`: the SQL operations (`tasks`, `leases`, `reads`, `tenants`,
//!   `rows`, and the `Store` impl), compiled once per backend.
//! - `sqlite/`: the embedded backend (group-commit `writer`, `schema`, its
//!   `dialect`, blobs as files).
//! - `postgres/`: the multi-node backend (transaction-per-write `writer`,
//!   `schema` with an advisory lock, its `dialect`, blobs in the database,
//!   LISTEN/NOTIFY wake-ups).

mod blobs;
mod error;
mod long_poll;
pub mod postgres;
pub mod sqlite;
mod wake;

use std::sync::Arc;

use aruntime_api::{
    BlobRef, Board, BoardQuery, EventPage, EventQuery, NewCheckpoint, NewDecision, NewTask,
    TaskPage, TaskPatch, TaskQuery, Tenant,
};
use aruntime_core::context::ContextBundle;
use aruntime_core::{Attempt, Checkpoint, Decision, Principal, Role, Task, TaskStatus, Timestamp};
use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

pub use error::{Result, StoreError};
pub use long_poll::claim_waiting;
pub use wake::Wakeups;

/// The name of the thread each store's writer runs on: every write of a
/// SQLite store runs there, so a benchmark reads that thread's CPU apart.
pub const WRITER_THREAD: &str = "aruntime-writer";

/// A person-driven transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// Hold in the backlog.
    Hold,
    /// Lift the hold.
    Unhold,
    /// Let a blocked task go on.
    Unblock,
    /// Cancel.
    Cancel,
    /// Reopen a failed or cancelled task.
    Reopen,
}

impl Steer {
    /// Parses the path segment (`hold`, `unhold`, …).
    pub fn parse(s: &str) -> Option<Steer> {
        Some(match s {
            "hold" => Steer::Hold,
            "unhold" => Steer::Unhold,
            "unblock" => Steer::Unblock,
            "cancel" => Steer::Cancel,
            "reopen" => Steer::Reopen,
            _ => return None,
        })
    }
}

/// How a worker ends its attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// Done, with its result.
    Complete {
        /// The result and its evidence.
        result: Value,
    },
    /// Failed.
    Fail {
        /// What went wrong.
        error: String,
        /// Worth retrying.
        retryable: bool,
        /// What was tried.
        notes: Option<String>,
        /// Approaches not to repeat.
        do_not_retry: Vec<String>,
    },
    /// Waits for a person.
    Block {
        /// What for.
        reason: String,
    },
    /// Hands back with notes.
    Release {
        /// What was done, what is next.
        notes: Option<String>,
        /// Approaches not to repeat.
        do_not_retry: Vec<String>,
    },
}

/// An `Idempotency-Key` and a hash of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The client's key.
    pub key: String,
    /// sha256 of the request body, to tell a retry from a reuse.
    pub request_hash: String,
}

/// A claim request as the store sees it.
#[derive(Debug, Clone)]
pub struct ClaimParams {
    /// The worker's name.
    pub worker: String,
    /// Labels it handles.
    pub capabilities: Vec<String>,
    /// Most tasks to lease.
    pub max: u32,
    /// Lease TTL override, seconds.
    pub ttl_s: Option<u32>,
}

/// One lease granted by a claim.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The task, now running.
    pub task: Task,
    /// Attempt number.
    pub attempt: u32,
    /// Lease token.
    pub lease: String,
    /// Expiry.
    pub expires_at: Timestamp,
}

/// What a claim did.
#[derive(Debug, Clone, Default)]
pub struct ClaimOutcome {
    /// Leases granted.
    pub granted: Vec<Claimed>,
    /// Expired leases found and recorded on the way.
    pub expired: u32,
    /// What [`Store::next_due`] would have answered when the claim looked
    /// at the queue, if the claim could tell (`None` when it could not).
    /// A claim that found nothing and waits needs it; carried here, it
    /// saves a read per empty claim (a fifth of `cycle`'s claims on a
    /// queue its workers outpace).
    pub next_due: Option<Option<Timestamp>>,
}

/// A write that created something or found it already there.
#[derive(Debug, Clone)]
pub struct Created<T> {
    /// The thing.
    pub value: T,
    /// False when an idempotent retry returned the earlier result.
    pub created: bool,
}

/// The storage abstraction. Every method is scoped to one tenant, except the
/// few marked otherwise. Implementations apply each write with its event in
/// one transaction and answer only once it is durable.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates tenant `default` and an admin token with this hash, if the
    /// database has no tenant yet. Returns whether it did.
    async fn bootstrap(&self, admin_token_hash: &str, now: Timestamp) -> Result<bool>;
    /// Creates a tenant.
    async fn tenant_create(&self, name: &str, now: Timestamp) -> Result<Tenant>;
    /// Stores a token hash for `tenant`.
    async fn token_create(
        &self,
        tenant: &str,
        role: Role,
        name: Option<String>,
        hash: &str,
        now: Timestamp,
    ) -> Result<()>;
    /// Resolves a token hash (across tenants: it is how the tenant is found).
    async fn token_lookup(&self, hash: &str) -> Result<Option<Principal>>;

    /// Creates a task (or returns the one an idempotent retry created).
    async fn task_create(
        &self,
        tenant: &str,
        spec: NewTask,
        idem: Option<Idempotency>,
        now: Timestamp,
    ) -> Result<Created<Task>>;
    /// One task.
    /// Creates a plan's goal and subtasks that do not exist yet, in one
    /// transaction.
    async fn plan_import(
        &self,
        tenant: &str,
        plan: aruntime_api::PlanImport,
        now: Timestamp,
    ) -> Result<aruntime_api::PlanImported>;

    async fn task_get(&self, tenant: &str, id: Uuid) -> Result<Task>;
    /// A filtered page of tasks, oldest first.
    async fn task_list(&self, tenant: &str, q: &TaskQuery) -> Result<TaskPage>;
    /// Edits fields (and dependencies, refusing cycles).
    async fn task_patch(
        &self,
        tenant: &str,
        id: Uuid,
        patch: TaskPatch,
        now: Timestamp,
    ) -> Result<Task>;
    /// A person-driven transition.
    async fn task_steer(&self, tenant: &str, id: Uuid, cmd: Steer, now: Timestamp) -> Result<Task>;
    /// The board.
    async fn board(&self, tenant: &str, q: &BoardQuery) -> Result<Board>;
    /// Counts by status.
    async fn task_counts(&self, tenant: &str) -> Result<Vec<(TaskStatus, u64)>>;

    /// Leases up to `max` ready tasks; expired leases met on the way are
    /// recorded as abandoned first.
    async fn lease_claim(
        &self,
        tenant: &str,
        p: ClaimParams,
        now: Timestamp,
    ) -> Result<ClaimOutcome>;
    /// Extends a live lease by its TTL.
    async fn lease_heartbeat(
        &self,
        tenant: &str,
        lease: &str,
        now: Timestamp,
    ) -> Result<(Uuid, Timestamp)>;
    /// Records a checkpoint under a live lease (and extends the lease).
    async fn checkpoint_put(
        &self,
        tenant: &str,
        task: Uuid,
        cp: NewCheckpoint,
        now: Timestamp,
    ) -> Result<Checkpoint>;
    /// Ends the attempt holding `lease`.
    async fn task_finish(
        &self,
        tenant: &str,
        task: Uuid,
        lease: &str,
        how: Finish,
        now: Timestamp,
    ) -> Result<Task>;
    /// Completes several leased tasks, each `(task, lease, result)`. All go
    /// to the writer at once, so they usually share one transaction; each
    /// answer, in order, is the status [`task_finish`](Self::task_finish)
    /// would leave the task in alone, or its error. Only the status: a
    /// batch acknowledgement does not read the tasks back.
    async fn task_complete_many(
        &self,
        tenant: &str,
        entries: Vec<(Uuid, String, Value)>,
        now: Timestamp,
    ) -> Vec<Result<TaskStatus>>;
    /// Records expired leases in every tenant (the tidy-up sweeper; never
    /// needed for correctness). Returns how many per tenant.
    async fn lease_expire_due(&self, now: Timestamp, limit: u32) -> Result<Vec<(String, u32)>>;
    /// The next moment a task of `tenant` may become claimable without any
    /// write: the earliest lease expiry or backoff end after `now`.
    async fn next_due(&self, tenant: &str, now: Timestamp) -> Result<Option<Timestamp>>;

    /// Checkpoints of a task, oldest first.
    async fn checkpoint_list(&self, tenant: &str, task: Uuid) -> Result<Vec<Checkpoint>>;
    /// One checkpoint.
    async fn checkpoint_get(&self, tenant: &str, task: Uuid, seq: i64) -> Result<Checkpoint>;
    /// Attempts of a task, oldest first.
    async fn attempt_list(&self, tenant: &str, task: Uuid) -> Result<Vec<Attempt>>;
    /// Records a decision on a task.
    async fn decision_add(
        &self,
        tenant: &str,
        task: Uuid,
        d: NewDecision,
        now: Timestamp,
    ) -> Result<Decision>;
    /// Decisions that apply to a task (its own and its goals').
    async fn decision_list(&self, tenant: &str, task: Uuid) -> Result<Vec<Decision>>;
    /// The resume packet, read in one snapshot.
    async fn context(&self, tenant: &str, task: Uuid) -> Result<ContextBundle>;
    /// The resume packets of tasks just read or leased (as given, not read
    /// again), in one snapshot and a few queries however many there are.
    async fn contexts(&self, tenant: &str, tasks: Vec<Task>) -> Result<Vec<ContextBundle>>;

    /// Stores bytes under their sha256 (deduplicated per tenant).
    async fn blob_put(&self, tenant: &str, bytes: &[u8], now: Timestamp) -> Result<BlobRef>;
    /// The bytes of a blob of this tenant.
    async fn blob_get(&self, tenant: &str, sha256: &str) -> Result<Vec<u8>>;

    /// A page of the tenant's event log.
    async fn event_list(&self, tenant: &str, q: &EventQuery) -> Result<EventPage>;

    /// Where to wait for tasks becoming ready.
    fn wakeups(&self) -> Arc<Wakeups>;
    /// Answers when the database does.
    async fn ping(&self) -> Result<()>;
}
