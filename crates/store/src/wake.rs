//! Waiting claims, per tenant: a long-polling claim parks here instead of
//! polling the database. It is served in two ways.
//!
//! - **Parked with the writer.** A batch that makes a task of the tenant
//!   ready also runs the parked claims, in the same transaction, so the
//!   create and the lease it answers commit together: one flush between a
//!   task's creation and its worker, not two (see `ops::writer`).
//! - **Woken.** Every waiter also listens on the tenant's [`Notify`]: for
//!   writes on other nodes (PostgreSQL NOTIFY; the node's own come back to
//!   it too, and are ignored), for a task that became ready while the
//!   claim was between its look and its parking, and for whatever a batch
//!   left over. A woken claim leaves the park and looks again.
//!
//! Leaving is a handshake, so no lease is granted to a claim that already
//! left: a slot the writer has taken stays the writer's until it answers,
//! and a waiter that leaves meanwhile waits for that answer (one batch).
//! Only a claim whose request is dropped while the writer holds it (the
//! client hung up) loses its grant, which then expires after its TTL, as a
//! claim dropped mid-write always has.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use aruntime_core::{Clock, Timestamp};
use tokio::sync::{Notify, oneshot};

use crate::{ClaimOutcome, ClaimParams};

/// The tenants' waiting claims.
#[derive(Default)]
pub struct Wakeups {
    tenants: Mutex<HashMap<String, Waiting>>,
    /// The server process of this node's writer connection (PostgreSQL;
    /// 0 until known), whose `NOTIFY`s come back to this node's listener.
    own_notifier: AtomicU32,
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeups").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Waiting {
    notify: Arc<Notify>,
    /// Parked claims, oldest first.
    parked: Vec<Slot>,
    next_id: u64,
}

struct Slot {
    id: u64,
    params: ClaimParams,
    clock: Arc<dyn Clock>,
    tx: Option<oneshot::Sender<ClaimOutcome>>,
    /// The writer is running this claim in a batch.
    taken: bool,
    /// The waiter left while the writer held it, and waits for its answer.
    leaving: bool,
}

/// A parked claim the writer took into a batch: run it with `params` at `now`.
pub(crate) struct Taken {
    pub(crate) id: u64,
    pub(crate) now: Timestamp,
    pub(crate) params: ClaimParams,
}

impl Wakeups {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Waiting>> {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tenant's notifier. Create the `notified()` future and `enable()`
    /// it before looking for work, so a wake-up in between is not lost.
    pub fn tenant(&self, tenant: &str) -> Arc<Notify> {
        self.lock()
            .entry(tenant.to_owned())
            .or_default()
            .notify
            .clone()
    }

    /// The writer (re)connected as server process `pid`.
    pub(crate) fn notifies_from(&self, pid: u32) {
        self.own_notifier.store(pid, Ordering::Relaxed);
    }

    /// Whether a `NOTIFY` from server process `pid` is this node's own.
    pub(crate) fn is_own_notify(&self, pid: u32) -> bool {
        pid != 0 && self.own_notifier.load(Ordering::Relaxed) == pid
    }

    /// Parks a claim of `tenant` with the writer until it is granted work or
    /// leaves (see [`Parked::leave`]). `clock` dates the grant.
    pub fn park(&self, tenant: &str, params: ClaimParams, clock: Arc<dyn Clock>) -> Parked<'_> {
        let (tx, rx) = oneshot::channel();
        let mut map = self.lock();
        let w = map.entry(tenant.to_owned()).or_default();
        let id = w.next_id;
        w.next_id += 1;
        w.parked.push(Slot {
            id,
            params,
            clock,
            tx: Some(tx),
            taken: false,
            leaving: false,
        });
        Parked {
            wakeups: self,
            tenant: tenant.to_owned(),
            id,
            rx,
            done: false,
        }
    }

    /// Takes parked claims of `tenant` for `ready` newly ready tasks, oldest
    /// first, until their `max`es cover them; every parked claim when
    /// `everyone` (a labelled task only some of them may take). Each must be
    /// [`settle`](Self::settle)d.
    pub(crate) fn take(&self, tenant: &str, ready: u32, everyone: bool) -> Vec<Taken> {
        let mut map = self.lock();
        let Some(w) = map.get_mut(tenant) else {
            return vec![];
        };
        let mut out = vec![];
        let mut covered = 0u32;
        for s in w.parked.iter_mut().filter(|s| !s.taken) {
            if !everyone && covered >= ready {
                break;
            }
            s.taken = true;
            covered = covered.saturating_add(s.params.max);
            out.push(Taken {
                id: s.id,
                now: s.clock.now(),
                params: s.params.clone(),
            });
        }
        out
    }

    /// Ends the writer's hold on a taken claim. A grant (`out` with leases,
    /// committed) goes to the waiter; otherwise the claim parks again, or,
    /// if its waiter left meanwhile, is answered with nothing.
    pub(crate) fn settle(&self, tenant: &str, id: u64, out: Option<ClaimOutcome>) {
        let mut map = self.lock();
        let Some(w) = map.get_mut(tenant) else {
            return;
        };
        let Some(i) = w.parked.iter().position(|s| s.id == id) else {
            return;
        };
        let granted = out.as_ref().is_some_and(|o| !o.granted.is_empty());
        if !granted && !w.parked[i].leaving {
            w.parked[i].taken = false;
            return;
        }
        let mut slot = w.parked.remove(i);
        let answer = out.filter(|_| granted).unwrap_or_default();
        let n = answer.granted.len();
        if let Some(tx) = slot.tx.take()
            && tx.send(answer).is_err()
            && n > 0
        {
            tracing::warn!(
                tenant,
                leases = n,
                "a claim went away while its leases were granted; they expire after their TTL"
            );
        }
    }

    /// Wakes every waiter of `tenant`. Call only after the commit that made
    /// a task ready, or the woken claim may not see it.
    pub fn wake(&self, tenant: &str) {
        if let Some(w) = self.lock().get(tenant) {
            w.notify.notify_waiters();
        }
    }

    /// Wakes up to `n` waiters of `tenant`, for `n` tasks any worker may
    /// take: waking all of them would send every idle worker to the writer
    /// for tasks one of them gets. A wake-up with nobody waiting is kept
    /// for the next claim to wait, so none is lost.
    pub fn wake_some(&self, tenant: &str, n: u32) {
        if let Some(w) = self.lock().get(tenant) {
            for _ in 0..n {
                w.notify.notify_one();
            }
        }
    }

    /// Wakes every waiter of every tenant: after a lost connection, when
    /// wake-ups from other nodes may have been missed.
    pub fn wake_all(&self) {
        for w in self.lock().values() {
            w.notify.notify_waiters();
        }
    }
}

/// A claim parked with the writer; see [`Wakeups::park`]. Dropping it
/// unparks the claim.
pub struct Parked<'a> {
    wakeups: &'a Wakeups,
    tenant: String,
    id: u64,
    rx: oneshot::Receiver<ClaimOutcome>,
    done: bool,
}

impl Parked<'_> {
    /// Resolves when the writer grants this claim work. Cancel-safe; a
    /// writer that is gone never resolves it.
    pub async fn granted(&mut self) -> ClaimOutcome {
        match (&mut self.rx).await {
            Ok(out) => {
                self.done = true;
                out
            }
            Err(_) => std::future::pending().await,
        }
    }

    /// Leaves the park. If the writer holds the claim in a batch, waits for
    /// that batch and returns what it granted (possibly nothing).
    pub async fn leave(mut self) -> Option<ClaimOutcome> {
        self.done = true;
        let held = {
            let mut map = self.wakeups.lock();
            match map.get_mut(&self.tenant) {
                None => false,
                Some(w) => match w.parked.iter().position(|s| s.id == self.id) {
                    // Settled already: the answer is in the channel.
                    None => true,
                    Some(i) if w.parked[i].taken => {
                        w.parked[i].leaving = true;
                        true
                    }
                    Some(i) => {
                        w.parked.remove(i);
                        false
                    }
                },
            }
        };
        if held {
            (&mut self.rx).await.ok()
        } else {
            None
        }
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut map = self.wakeups.lock();
        if let Some(w) = map.get_mut(&self.tenant)
            && let Some(i) = w.parked.iter().position(|s| s.id == self.id)
        {
            if w.parked[i].taken {
                w.parked[i].leaving = true;
            } else {
                w.parked.remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The parking handshake, driven by hand in the writer's place: no
    //! grant may reach a claim that left, and none may be lost by one that
    //! leaves while the writer holds it.

    use super::*;
    use crate::Claimed;
    use aruntime_core::{MockClock, Task};
    use serde_json::json;

    fn clock() -> Arc<dyn Clock> {
        Arc::new(MockClock::new(Timestamp(1_000)))
    }

    fn params(max: u32) -> ClaimParams {
        ClaimParams {
            worker: "w".into(),
            capabilities: vec![],
            max,
            ttl_s: None,
        }
    }

    fn grant() -> ClaimOutcome {
        let task: Task = serde_json::from_value(json!({
            "id": "0190b5a4-0000-7000-8000-000000000001", "title": "t", "goal": "",
            "acceptance": [], "labels": [], "priority": 0, "status": "running",
            "held": false, "parent_id": null, "depends_on": [],
            "pending_dependencies": 0, "max_attempts": 3, "failed_attempts": 0,
            "attempts": 1, "lease_ttl_s": 60, "not_before": null, "lease": null,
            "result": null, "error": null, "blocked_reason": null,
            "do_not_retry": [], "checkpoint_seq": 0,
            "created_at": "2026-11-21T00:00:00.000Z", "updated_at": "2026-11-21T00:00:00.000Z"
        }))
        .unwrap();
        ClaimOutcome {
            granted: vec![Claimed {
                task,
                attempt: 1,
                lease: "tok".into(),
                expires_at: Timestamp(61_000),
            }],
            ..ClaimOutcome::default()
        }
    }

    #[tokio::test]
    async fn a_claim_leaving_while_the_writer_holds_it_gets_the_grant() {
        let w = Wakeups::default();
        let parked = w.park("t", params(1), clock());
        let taken = w.take("t", 1, false);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].now, Timestamp(1_000), "dated by the claim's clock");
        let leave = parked.leave();
        tokio::pin!(leave);
        // Held: leaving waits for the writer's answer instead of returning.
        assert!(futures::poll!(leave.as_mut()).is_pending());
        w.settle("t", taken[0].id, Some(grant()));
        let got = leave.await.expect("the grant reaches the claim that left");
        assert_eq!(got.granted.len(), 1);
    }

    #[tokio::test]
    async fn a_claim_the_writer_could_not_serve_parks_again() {
        let w = Wakeups::default();
        let mut parked = w.park("t", params(1), clock());
        let taken = w.take("t", 1, false);
        w.settle("t", taken[0].id, Some(ClaimOutcome::default()));
        assert!(futures::poll!(std::pin::pin!(parked.granted())).is_pending());
        let again = w.take("t", 1, false);
        assert_eq!(again.len(), 1, "parked again, so the next batch takes it");
        w.settle("t", again[0].id, Some(grant()));
        assert_eq!(parked.granted().await.granted.len(), 1);
    }

    #[tokio::test]
    async fn a_claim_that_left_is_not_taken() {
        let w = Wakeups::default();
        let parked = w.park("t", params(1), clock());
        assert!(parked.leave().await.is_none());
        assert!(w.take("t", 1, true).is_empty());
        let dropped = w.park("t", params(1), clock());
        drop(dropped);
        assert!(
            w.take("t", 1, true).is_empty(),
            "dropping a claim unparks it"
        );
    }

    #[tokio::test]
    async fn a_claim_dropped_while_held_is_settled_without_a_waiter() {
        let w = Wakeups::default();
        let parked = w.park("t", params(1), clock());
        let taken = w.take("t", 1, false);
        drop(parked);
        w.settle("t", taken[0].id, Some(grant()));
        assert!(w.take("t", 1, true).is_empty(), "its slot is gone");
    }

    #[tokio::test]
    async fn the_writer_takes_claims_oldest_first_until_their_max_covers_the_ready_tasks() {
        let w = Wakeups::default();
        let _a = w.park("t", params(2), clock());
        let _b = w.park("t", params(1), clock());
        let _c = w.park("t", params(1), clock());
        let _other = w.park("u", params(1), clock());
        let ids = |v: Vec<Taken>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(ids(w.take("t", 3, false)), [0, 1]);
        assert_eq!(
            ids(w.take("t", 5, false)),
            [2],
            "held claims are not taken twice"
        );
        w.settle("t", 0, None);
        w.settle("t", 1, None);
        w.settle("t", 2, None);
        assert_eq!(
            ids(w.take("t", 1, true)),
            [0, 1, 2],
            "a labelled task takes every claim"
        );
    }
}
