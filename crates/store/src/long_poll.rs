//! A claim that waits: the long-poll behind `POST /v1/leases`, shared by the
//! server and by whatever drives a store in-process (the benchmark's
//! embedded target), so both wait the same way.

use std::sync::Arc;
use std::time::Duration;

use aruntime_core::Clock;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{ClaimOutcome, ClaimParams, Result, Store};

/// Claims for `tenant`. With nothing ready it parks with the writer (see
/// [`Wakeups`](crate::Wakeups)) for up to `wait`: the batch that makes a
/// task ready grants it in the same transaction. It also wakes for a write
/// on another node, or at the moment an expired lease or a backoff makes a
/// task claimable, and looks again; it never polls. It
/// returns early, with what it has (possibly nothing), once `stop` turns
/// true; a `stop` whose sender is gone never stops it. `waiting` is called
/// before each wait and what it returns is held during the wait (a metrics
/// gauge). `expired` counts the expired leases found over every look.
pub async fn claim_waiting<G>(
    store: &dyn Store,
    clock: &Arc<dyn Clock>,
    tenant: &str,
    params: &ClaimParams,
    wait: Duration,
    stop: &mut watch::Receiver<bool>,
    waiting: impl Fn() -> G,
) -> Result<ClaimOutcome> {
    let deadline = Instant::now() + wait;
    let wakeups = store.wakeups();
    let notify = wakeups.tenant(tenant);
    let mut expired = 0;
    loop {
        // Registered before looking, so a wake-up in between is not lost.
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let now = clock.now();
        let mut out = store.lease_claim(tenant, params.clone(), now).await?;
        expired += out.expired;
        if !out.granted.is_empty() || Instant::now() >= deadline || *stop.borrow() {
            out.expired = expired;
            return Ok(out);
        }
        let mut until = deadline;
        // The claim's own look usually answered this; else ask.
        let due = match out.next_due {
            Some(due) => due,
            None => store.next_due(tenant, now).await?,
        };
        if let Some(due) = due {
            let ms = u64::try_from(due.0 - now.0).unwrap_or(0) + 1;
            until = until.min(Instant::now() + Duration::from_millis(ms));
        }
        let _waiting = waiting();
        let mut parked = wakeups.park(tenant, params.clone(), clock.clone());
        let stopped = async {
            if stop.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let got = tokio::select! {
            out = parked.granted() => Some(out),
            _ = &mut woken => None,
            _ = tokio::time::sleep_until(until) => None,
            _ = stopped => None,
        };
        let got = match got {
            Some(out) => Some(out),
            None => parked.leave().await,
        };
        if let Some(mut out) = got.filter(|o| !o.granted.is_empty()) {
            out.expired += expired;
            return Ok(out);
        }
    }
}
