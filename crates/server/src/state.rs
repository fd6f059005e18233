//! What every handler shares.

use std::ops::Deref;
use std::sync::Arc;

use aruntime_core::Clock;
use aruntime_store::Store;
use tokio::sync::watch;

use crate::auth::TokenCache;
use crate::metrics::Metrics;

/// Shared state, one pointer wide. axum clones the state for each request
/// (the router, the middleware, each `State` extractor) and drops the
/// clones after it: with a field per `Arc` that was a reference count
/// taken and released per field, several times a request, on counters both
/// cores touch (`clone_box` and `drop_in_place<AppState>` 3.4 % of the
/// request threads in a `cycle` profile). Now it is one.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] points to: the store, the clock, metrics, and the
/// shutdown signal.
pub struct Shared {
    /// The storage backend.
    pub store: Arc<dyn Store>,
    /// Where `now` comes from.
    pub clock: Arc<dyn Clock>,
    /// Counters and histograms for `/metrics`.
    pub metrics: Metrics,
    /// Turns true when the server shuts down; long-polls return early.
    pub shutdown: watch::Receiver<bool>,
    /// Extra `Host` names `/mcp` accepts besides loopback ones.
    pub mcp_allowed_hosts: Vec<String>,
    /// Tokens resolved recently.
    pub tokens: TokenCache,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// State over `store` with `clock`, whose `/mcp` also accepts the
    /// `Host` names in `mcp_allowed_hosts`; the returned sender shuts it
    /// down.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        mcp_allowed_hosts: Vec<String>,
    ) -> (Self, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let state = AppState(Arc::new(Shared {
            store,
            clock,
            metrics: Metrics::default(),
            shutdown: rx,
            mcp_allowed_hosts,
            tokens: TokenCache::default(),
        }));
        (state, tx)
    }
}
