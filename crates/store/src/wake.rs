//! Per-tenant wake-ups: a long-polling claim waits here instead of polling
//! the database, and is woken when a write of its tenant made a task ready.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// One `Notify` per tenant, created on first use.
#[derive(Debug, Default)]
pub struct Wakeups {
    tenants: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakeups {
    /// The tenant's notifier. Create the `notified()` future and `enable()`
    /// it before looking for work, so a wake-up in between is not lost.
    pub fn tenant(&self, tenant: &str) -> Arc<Notify> {
        let mut map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(tenant.to_owned()).or_default().clone()
    }

    /// Wakes every waiter of `tenant`. Call only after the commit that made
    /// a task ready, or the woken claim may not see it.
    pub fn wake(&self, tenant: &str) {
        let map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(tenant) {
            n.notify_waiters();
        }
    }

    /// Wakes up to `n` waiters of `tenant`, for `n` tasks any worker may
    /// take: waking all of them would send every idle worker to the writer
    /// for tasks one of them gets. A wake-up with nobody waiting is kept
    /// for the next claim to wait, so none is lost.
    pub fn wake_some(&self, tenant: &str, n: u32) {
        let map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(notify) = map.get(tenant) {
            for _ in 0..n {
                notify.notify_one();
            }
        }
    }

    /// Wakes every waiter of every tenant: after a lost connection, when
    /// wake-ups from other nodes may have been missed.
    pub fn wake_all(&self) {
        let map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        for n in map.values() {
            n.notify_waiters();
        }
    }
}
