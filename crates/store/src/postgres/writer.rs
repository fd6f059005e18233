//! Writes on PostgreSQL: each write is its own transaction on one of a few
//! dedicated connections.
//!
//! PostgreSQL already shares WAL flushes between transactions that commit at
//! the same moment, so concurrent requests get group commit from the server
//! itself; separate transactions also let every write take its tenant's lock
//! first, which keeps writes from several nodes free of deadlocks.
//!
//! A connection that fails is dropped and a new one is opened for the next
//! write, so the node recovers by itself after the database restarts;
//! meanwhile writes fail fast as unavailable (503).
//!
//! Wake-ups are sent with `pg_notify` inside the transaction (PostgreSQL
//! delivers them at commit, to every node) and to this node's own waiters
//! right after the commit.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::Semaphore;

use crate::{Result, StoreError, Wakeups};

/// The channel wake-ups travel on.
pub(crate) const CHANNEL: &str = "aruntime_ready";

/// What a write sees: its connection (inside its transaction) and the
/// tenants to wake once it commits.
pub(crate) struct WriteCtx {
    pub(crate) conn: PgConnection,
    pub(crate) wake: HashSet<String>,
}

/// Runs writes, each in its own transaction.
pub(crate) struct Writer {
    idle: Mutex<Vec<PgConnection>>,
    permits: Semaphore,
    opts: PgConnectOptions,
    wakeups: Arc<Wakeups>,
}

impl Writer {
    pub(crate) fn new(opts: PgConnectOptions, connections: usize, wakeups: Arc<Wakeups>) -> Self {
        Writer {
            idle: Mutex::new(vec![]),
            permits: Semaphore::new(connections.max(1)),
            opts,
            wakeups,
        }
    }

    async fn conn(&self) -> Result<PgConnection> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(c) => Ok(c),
            None => Ok(self.opts.connect().await?),
        }
    }

    /// Runs `f` in a transaction and answers once it has committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let mut ctx = WriteCtx {
            conn: self.conn().await?,
            wake: HashSet::new(),
        };
        if sqlx::query(super::dialect::BEGIN)
            .execute(&mut ctx.conn)
            .await
            .is_err()
        {
            // An idle connection may have died while it waited (the database
            // restarted). Nothing has happened yet, so a fresh one is safe.
            ctx.conn = self.opts.connect().await?;
            sqlx::query(super::dialect::BEGIN)
                .execute(&mut ctx.conn)
                .await?;
        }
        let out = f(&mut ctx).await;
        let committed = match out {
            Ok(v) => commit(&mut ctx).await.map(|()| v),
            Err(e) => {
                // A failed rollback means the connection is gone: drop it.
                if sqlx::query("ROLLBACK")
                    .execute(&mut ctx.conn)
                    .await
                    .is_err()
                {
                    return Err(e);
                }
                Err(e)
            }
        };
        if committed.is_ok() {
            for t in ctx.wake.drain() {
                self.wakeups.wake(&t);
            }
        }
        if committed.is_ok() || !matches!(committed, Err(StoreError::CommitFailed(_))) {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(ctx.conn);
        }
        committed
    }
}

async fn commit(ctx: &mut WriteCtx) -> Result<()> {
    for t in &ctx.wake {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(t)
            .execute(&mut ctx.conn)
            .await?;
    }
    sqlx::query("COMMIT")
        .execute(&mut ctx.conn)
        .await
        .map_err(|e| StoreError::CommitFailed(e.to_string()))?;
    Ok(())
}
