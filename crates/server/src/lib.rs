//! aruntime's HTTP server: routes, authentication, the API error shape,
//! long-poll wake-ups, metrics and the OpenAPI document.
//!
//! Key decision: handlers are thin. Each checks the caller's role, validates
//! the body with the shared `aruntime-api` rules, and makes one store call;
//! the store owns every state rule and transaction. The server keeps no
//! state of its own besides metrics, so several nodes can share a database.
//!
//! `/mcp` serves the MCP tools (`aruntime-mcp`) over streamable HTTP without
//! sessions; they call this same API router in-process.

pub mod auth;
pub mod error;
mod in_process;
pub mod metrics;
pub mod openapi;
pub mod prefer;
mod routes;
pub mod state;
mod sweeper;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aruntime_core::Clock;
use aruntime_store::postgres::{PgConfig, PgStore};
use aruntime_store::sqlite::{Durability, SqliteConfig, SqliteStore};
use aruntime_store::{Store, StoreError};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

pub use routes::router;

/// What `aruntime serve --exit-on-stdin-close` prints on stderr when its
/// input closes, then when it has stopped. A parent that closed the input
/// itself (`aruntime bench`) knows both and need not show them.
pub const STOP_LINES: [&str; 2] = [
    "aruntime: standard input closed; stopping",
    "aruntime: stopped",
];
pub use state::{AppState, Shared};

/// What `aruntime serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Data directory (database, blobs, admin token).
    pub data_dir: PathBuf,
    /// Omitted or `sqlite` for SQLite in the data dir, `sqlite://DIR`, or
    /// `postgres://…` to share a PostgreSQL database with other nodes.
    pub database: Option<String>,
    /// SQLite flush policy.
    pub durability: Durability,
    /// `Host` names `/mcp` accepts besides loopback ones (DNS-rebinding
    /// guard); needed when agents reach the server by another name.
    pub mcp_allowed_hosts: Vec<String>,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The storage backend failed to open.
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    /// Listening or writing the token file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// An unsupported `--database`.
    #[error(
        "unsupported database {0:?}: this build serves SQLite only (omit --database or use sqlite://PATH)"
    )]
    UnsupportedDatabase(String),
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    stop: tokio::sync::watch::Sender<bool>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Where the admin token was written on first start.
    pub admin_token_file: Option<PathBuf>,
}

/// Opens the store named by the config.
pub async fn open_store(cfg: &ServeConfig) -> Result<Arc<dyn Store>, ServeError> {
    let data_dir = match cfg.database.as_deref() {
        None | Some("sqlite") => cfg.data_dir.clone(),
        Some(url) if url.starts_with("sqlite://") => PathBuf::from(&url["sqlite://".len()..]),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            return Ok(Arc::new(PgStore::open(&PgConfig::new(url)).await?));
        }
        Some(other) => return Err(ServeError::UnsupportedDatabase(other.to_owned())),
    };
    let mut sc = SqliteConfig::new(data_dir);
    sc.durability = cfg.durability;
    Ok(Arc::new(SqliteStore::open(&sc).await?))
}

/// On an empty database: creates tenant `default` with an admin token and
/// writes the token to `<data_dir>/admin.token` (mode 0600).
pub async fn bootstrap_admin(
    store: &dyn Store,
    data_dir: &Path,
    clock: &dyn Clock,
) -> Result<Option<PathBuf>, ServeError> {
    let token = auth::new_token();
    // The token reaches the disk before the database knows it, so a crash in
    // between never leaves an admin token nobody can read.
    std::fs::create_dir_all(data_dir)?;
    let tmp = data_dir.join("admin.token.new");
    write_private(&tmp, &token)?;
    if store
        .bootstrap(&auth::hash_token(&token), clock.now())
        .await?
    {
        let path = data_dir.join("admin.token");
        std::fs::rename(&tmp, &path)?;
        Ok(Some(path))
    } else {
        std::fs::remove_file(&tmp)?;
        Ok(None)
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

impl Server {
    /// Opens the store, bootstraps it, and binds the listener.
    pub async fn bind(cfg: &ServeConfig, clock: Arc<dyn Clock>) -> Result<Server, ServeError> {
        let store = open_store(cfg).await?;
        let admin_token_file =
            bootstrap_admin(store.as_ref(), &cfg.data_dir, clock.as_ref()).await?;
        let listener = TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let (state, stop) = AppState::new(store, clock, cfg.mcp_allowed_hosts.clone());
        Ok(Server {
            listener,
            state,
            stop,
            addr,
            admin_token_file,
        })
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests
    /// (long-polls return at once) and returns.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let sweeper = tokio::spawn(sweeper::run(self.state.clone()));
        let app = router(self.state.clone());
        let stop = self.stop;
        let signal = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        // Responses are small and latency is the point of a long-poll:
        // never hold one back waiting for an acknowledgement (Nagle).
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await?;
        let _ = sweeper.await;
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
