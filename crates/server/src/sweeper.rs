//! The tidy-up sweeper: records expired leases every second so the board
//! and metrics show them promptly. Correctness never depends on it: claims
//! and writes check expiry themselves.

use std::time::Duration;

use crate::state::AppState;

/// Runs until the server shuts down.
pub(crate) async fn run(state: AppState) {
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        match state.store.lease_expire_due(state.clock.now(), 1000).await {
            Ok(expired) => {
                for (tenant, n) in expired {
                    state.metrics.leases_expired(&tenant, u64::from(n));
                }
            }
            Err(e) => tracing::warn!(error = %e, "lease sweep failed"),
        }
    }
}
