//! What every handler shares.

use std::sync::Arc;

use aruntime_core::Clock;
use aruntime_store::Store;
use tokio::sync::watch;

use crate::auth::TokenCache;
use crate::metrics::Metrics;

/// Shared state: the store, the clock, metrics, and the shutdown signal.
#[derive(Clone)]
pub struct AppState {
    /// The storage backend.
    pub store: Arc<dyn Store>,
    /// Where `now` comes from.
    pub clock: Arc<dyn Clock>,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Turns true when the server shuts down; long-polls return early.
    pub shutdown: watch::Receiver<bool>,
    /// Extra `Host` names `/mcp` accepts besides loopback ones.
    pub mcp_allowed_hosts: Arc<Vec<String>>,
    /// Tokens resolved recently.
    pub tokens: Arc<TokenCache>,
}

impl AppState {
    /// State over `store` with `clock`; the returned sender shuts it down.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> (Self, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let state = AppState {
            store,
            clock,
            metrics: Arc::new(Metrics::default()),
            shutdown: rx,
            mcp_allowed_hosts: Arc::new(vec![]),
            tokens: Arc::new(TokenCache::default()),
        };
        (state, tx)
    }
}
