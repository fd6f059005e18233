//! A held lease: its task and context, a background heartbeat, and the
//! fenced writes. The heartbeat stops when the lease is finished, lost or
//! dropped; whoever does the work watches [`LeaseHandle::lost`] and stops.

use std::time::Duration;

use aruntime_api::{
    BlockRequest, CompleteRequest, ErrorCode, FailRequest, GrantedLease, LeaseCompletion,
    LeaseOutcome, NewCheckpoint, ReleaseRequest,
};
use aruntime_core::context::ContextBundle;
use aruntime_core::{Artifact, Checkpoint, Task, Timestamp};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::{Client, ClientError, Finish, Result};

/// Where a lease stands, as this client knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseState {
    /// Held until `expires_at` (server time) unless renewed.
    Held {
        /// The latest expiry the server granted.
        expires_at: Timestamp,
    },
    /// No longer held: stop working on the task.
    Lost {
        /// Why the client believes so.
        reason: String,
    },
    /// Completed, failed, blocked or released by this holder.
    Finished,
}

/// A lease on one task. Dropping it stops the heartbeat, so the lease
/// expires on its own unless finished first.
#[derive(Debug)]
pub struct LeaseHandle {
    client: Client,
    granted: GrantedLease,
    state: watch::Sender<LeaseState>,
    heartbeat: JoinHandle<()>,
}

impl Drop for LeaseHandle {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// The lease's TTL, from the server's own timestamps so that a skewed
/// client clock does not matter.
fn ttl_of(g: &GrantedLease) -> Duration {
    let ms = g.expires_at.0 - g.task.updated_at.0;
    Duration::from_millis(u64::try_from(ms).unwrap_or(0).max(1_000))
}

impl LeaseHandle {
    pub(crate) fn start(client: Client, granted: GrantedLease) -> LeaseHandle {
        let (state, _) = watch::channel(LeaseState::Held {
            expires_at: granted.expires_at,
        });
        let heartbeat = tokio::spawn(heartbeat(
            client.clone(),
            granted.lease.clone(),
            ttl_of(&granted),
            state.clone(),
        ));
        LeaseHandle {
            client,
            granted,
            state,
            heartbeat,
        }
    }

    /// The task as it was when leased.
    pub fn task(&self) -> &Task {
        &self.granted.task
    }

    /// The task's id.
    pub fn task_id(&self) -> Uuid {
        self.granted.task.id
    }

    /// The lease token.
    pub fn token(&self) -> &str {
        &self.granted.lease
    }

    /// The attempt number this lease opened.
    pub fn attempt(&self) -> u32 {
        self.granted.attempt
    }

    /// The resume packet delivered with the lease.
    pub fn context(&self) -> &ContextBundle {
        &self.granted.context
    }

    /// The granted lease as the server sent it.
    pub fn granted(&self) -> &GrantedLease {
        &self.granted
    }

    /// Where the lease stands now.
    pub fn state(&self) -> LeaseState {
        self.state.borrow().clone()
    }

    /// Follows the lease's state: each renewal, the loss, the finish.
    pub fn subscribe(&self) -> watch::Receiver<LeaseState> {
        self.state.subscribe()
    }

    /// Whether the lease is known to be lost.
    pub fn is_lost(&self) -> bool {
        matches!(*self.state.borrow(), LeaseState::Lost { .. })
    }

    /// Resolves with the reason once the lease is lost; never resolves
    /// while it is held. Finishing does not count as losing.
    pub async fn lost(&self) -> String {
        let mut rx = self.state.subscribe();
        loop {
            if let LeaseState::Lost { reason } = &*rx.borrow_and_update() {
                return reason.clone();
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`; this cannot end first.
                std::future::pending::<()>().await;
            }
        }
    }

    fn note(&self, r: &Result<impl Sized>) {
        if let Err(ClientError::LeaseLost { message }) = r {
            self.state.send_replace(LeaseState::Lost {
                reason: message.clone(),
            });
            self.heartbeat.abort();
        }
    }

    /// Writes a checkpoint, which also renews the lease.
    pub async fn checkpoint(
        &self,
        summary: impl Into<String>,
        state: Value,
        artifacts: Vec<Artifact>,
        test_results: Value,
    ) -> Result<Checkpoint> {
        let cp = NewCheckpoint {
            lease: self.granted.lease.clone(),
            summary: summary.into(),
            state,
            artifacts,
            test_results,
        };
        let r = self.client.checkpoint(self.task_id(), &cp).await;
        self.note(&r);
        r
    }

    async fn finish(&self, how: Finish) -> Result<Task> {
        let r = self.client.finish(self.task_id(), &how).await;
        self.note(&r);
        if r.is_ok() {
            self.heartbeat.abort();
            self.state.send_replace(LeaseState::Finished);
        }
        r
    }

    /// Completes the task with its result.
    pub async fn complete(&self, result: Value) -> Result<Task> {
        let lease = self.granted.lease.clone();
        self.finish(Finish::Complete(CompleteRequest { lease, result }))
            .await
    }

    /// Reports a failure; retryable failures go back to the board after
    /// a backoff while attempts remain.
    pub async fn fail(
        &self,
        error: impl Into<String>,
        retryable: bool,
        notes: Option<String>,
    ) -> Result<Task> {
        let req = FailRequest {
            lease: self.granted.lease.clone(),
            error: error.into(),
            retryable,
            notes,
            do_not_retry: vec![],
        };
        self.finish(Finish::Fail(req)).await
    }

    /// Stops to wait for a person.
    pub async fn block(&self, reason: impl Into<String>) -> Result<Task> {
        let req = BlockRequest {
            lease: self.granted.lease.clone(),
            reason: reason.into(),
        };
        self.finish(Finish::Block(req)).await
    }

    /// Hands the task back with notes for the next attempt.
    pub async fn release(&self, notes: Option<String>) -> Result<Task> {
        let req = ReleaseRequest {
            lease: self.granted.lease.clone(),
            notes,
            do_not_retry: vec![],
        };
        self.finish(Finish::Release(req)).await
    }
}

impl Client {
    /// Completes held leases in one request, each with its result, and
    /// settles each handle by its own outcome: finished (heartbeat
    /// stopped), lost, or still held when the entry failed for another
    /// reason. Outcomes come back in the order given.
    pub async fn complete_all(
        &self,
        done: Vec<(&LeaseHandle, Value)>,
    ) -> Result<Vec<LeaseOutcome>> {
        let mut handles = Vec::with_capacity(done.len());
        let mut completions = Vec::with_capacity(done.len());
        for (h, result) in done {
            completions.push(LeaseCompletion {
                task: h.task_id(),
                lease: h.granted.lease.clone(),
                result,
            });
            handles.push(h);
        }
        let outcomes = self.complete_leases(completions).await?;
        for (h, o) in handles.into_iter().zip(&outcomes) {
            match &o.error {
                None => {
                    h.heartbeat.abort();
                    h.state.send_replace(LeaseState::Finished);
                }
                Some(e) if e.code == ErrorCode::LeaseLost.as_str() => {
                    h.heartbeat.abort();
                    h.state.send_replace(LeaseState::Lost {
                        reason: e.message.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(outcomes)
    }
}

/// Renews every third of the TTL. A refused renewal means the lease is
/// lost; failing to reach the server is only fatal once a whole TTL has
/// passed since the last renewal, because by then the lease has expired.
async fn heartbeat(client: Client, lease: String, ttl: Duration, state: watch::Sender<LeaseState>) {
    let every = (ttl / 3).max(Duration::from_millis(200));
    let mut renewed = Instant::now();
    let mut next = renewed + every;
    loop {
        tokio::time::sleep_until(next).await;
        match client.heartbeat(&lease).await {
            Ok(r) => {
                renewed = Instant::now();
                next = renewed + every;
                state.send_replace(LeaseState::Held {
                    expires_at: r.expires_at,
                });
            }
            Err(ClientError::LeaseLost { message }) => {
                state.send_replace(LeaseState::Lost { reason: message });
                return;
            }
            Err(e) if renewed.elapsed() >= ttl => {
                state.send_replace(LeaseState::Lost {
                    reason: format!("could not renew the lease before it expired: {e}"),
                });
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed; retrying");
                next = Instant::now() + (every / 4).max(Duration::from_millis(100));
            }
        }
    }
}
