//! Group commit, on both backends: one task owns the write connection and
//! commits, in one transaction, every write that queued up while the
//! previous commit was being flushed.
//!
//! Why one transaction for many requests: a durable commit costs a flush
//! (an fsync on SQLite, a WAL flush on PostgreSQL), and on PostgreSQL every
//! write of a tenant also waits for the tenant's lock (the gapless event log
//! needs one writer per tenant at a time), so writes committed one by one
//! run at the flush rate at best. Batched, the flush and the lock are paid
//! once per batch.
//!
//! Each write runs inside its own savepoint, so a write that fails (a lost
//! lease, an invalid transition) is rolled back alone while the rest of the
//! batch commits. Callers are answered after COMMIT returns: an answer means
//! durable. Wake-ups for long-polling claims are sent only after the commit,
//! so a woken claim always sees the task that woke it.
//!
//! Before the first write of a batch the backend locks every tenant the
//! batch writes for, in one statement and in sorted order
//! (`dialect::lock_tenants`; a no-op on SQLite, where this writer is the only
//! one). One lock order for all nodes means nodes never deadlock.
//!
//! A batch that fails as a whole (the connection broke, COMMIT failed)
//! answers every write in it with [`StoreError::CommitFailed`], a 503, and
//! the connection is replaced before the next batch, so the node recovers by
//! itself after the database restarts.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use sqlx::ConnectOptions;

use super::{Conn, ConnectOpts, dialect};
use crate::{Result, StoreError, Wakeups};

/// What a write sees: the connection (inside the batch transaction) and the
/// tenants to wake once the batch commits.
pub(crate) struct WriteCtx {
    pub(crate) conn: Conn,
    pub(crate) wake: WakeList,
}

/// Tenants whose waiting claims should look again after the commit, and how.
#[derive(Debug, Default)]
pub(crate) struct WakeList {
    /// Per tenant: how many unlabelled tasks became ready, and whether a
    /// labelled one did (only some workers can take those, so every waiter
    /// of the tenant is woken for it).
    tenants: HashMap<String, (u32, bool)>,
}

impl WakeList {
    /// One task of `tenant` became ready; `labelled` if only some workers may take it.
    pub(crate) fn ready(&mut self, tenant: &str, labelled: bool) {
        let e = self.tenants.entry(tenant.to_owned()).or_default();
        e.0 = e.0.saturating_add(1);
        e.1 |= labelled;
    }

    /// Something changed that any waiter of `tenant` may care about.
    pub(crate) fn all(&mut self, tenant: &str) {
        self.tenants.entry(tenant.to_owned()).or_default().1 = true;
    }

    /// The tenants to wake. Only PostgreSQL reads them (to tell other nodes).
    #[allow(dead_code)]
    pub(crate) fn tenants(&self) -> impl Iterator<Item = &String> {
        self.tenants.keys()
    }

    fn send(&mut self, wakeups: &Wakeups) {
        for (t, (n, everyone)) in self.tenants.drain() {
            if everyone {
                wakeups.wake(&t);
            } else {
                wakeups.wake_some(&t, n);
            }
        }
    }
}

trait Job: Send {
    /// The tenant whose lock the write needs, if any.
    fn tenant(&self) -> Option<&str>;
    /// Runs the write; returns whether it succeeded (else it is rolled back).
    fn run<'a>(&'a mut self, ctx: &'a mut WriteCtx) -> BoxFuture<'a, bool>;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

struct Typed<T, F> {
    tenant: Option<String>,
    f: Option<F>,
    out: Option<Result<T>>,
    tx: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Typed<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    fn run<'a>(&'a mut self, ctx: &'a mut WriteCtx) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Some(f) = self.f.take() else {
                return false;
            };
            let r = f(ctx).await;
            let ok = r.is_ok();
            self.out = Some(r);
            ok
        })
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let answer = match commit {
            Err(e) => Err(StoreError::CommitFailed(e)),
            Ok(()) => self.out.unwrap_or(Err(StoreError::Closed)),
        };
        let _ = self.tx.send(answer);
    }
}

/// The handle requests use to queue writes.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer task on `conn`, reconnecting with `opts` after a
    /// failed batch. `max_batch` bounds how many writes share one
    /// transaction (and so how long the first waits for the last).
    pub(crate) fn spawn(
        conn: Conn,
        opts: ConnectOpts,
        wakeups: Arc<Wakeups>,
        max_batch: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(max_batch * 4);
        tokio::spawn(run(Some(conn), opts, rx, wakeups, max_batch));
        Writer { tx }
    }

    /// Queues a write for `tenant` (whose lock it holds while it runs; `None`
    /// for writes outside any tenant) and waits until its batch is committed.
    pub(crate) async fn write<T, F>(&self, tenant: Option<String>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(Typed {
            tenant,
            f: Some(f),
            out: None,
            tx,
        });
        self.tx.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(
    mut conn: Option<Conn>,
    opts: ConnectOpts,
    mut rx: mpsc::Receiver<Box<dyn Job>>,
    wakeups: Arc<Wakeups>,
    max_batch: usize,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let outcome = match conn.take() {
            Some(c) => Ok(c),
            None => opts.connect().await.map_err(|e| e.to_string()),
        };
        let outcome = match outcome {
            Err(e) => Err(e),
            Ok(c) => {
                let mut ctx = WriteCtx {
                    conn: c,
                    wake: WakeList::default(),
                };
                let r = apply(&mut ctx, &mut batch).await;
                // A connection whose batch failed may be broken; the next
                // batch opens a fresh one.
                if r.is_ok() {
                    ctx.wake.send(&wakeups);
                    conn = Some(ctx.conn);
                }
                r
            }
        };
        for job in batch.drain(..) {
            job.finish(outcome.clone());
        }
    }
}

async fn exec(ctx: &mut WriteCtx, sql: &'static str) -> Result<(), String> {
    sqlx::raw_sql(sql)
        .execute(&mut ctx.conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn apply(ctx: &mut WriteCtx, batch: &mut [Box<dyn Job>]) -> Result<(), String> {
    exec(ctx, dialect::BEGIN).await?;
    let body = async {
        let mut tenants: Vec<String> = batch
            .iter()
            .filter_map(|j| j.tenant().map(str::to_owned))
            .collect();
        tenants.sort_unstable();
        tenants.dedup();
        dialect::lock_tenants(ctx, &tenants)
            .await
            .map_err(|e| e.to_string())?;
        // Savepoint statements travel together, so a write costs one extra
        // round trip to the connection, not two.
        let mut open = "SAVEPOINT job";
        for job in batch.iter_mut() {
            exec(ctx, open).await?;
            open = "RELEASE job; SAVEPOINT job";
            if !job.run(ctx).await {
                exec(ctx, "ROLLBACK TO job").await?;
            }
        }
        dialect::before_commit(ctx)
            .await
            .map_err(|e| e.to_string())?;
        // COMMIT also releases the last savepoint.
        exec(ctx, "COMMIT").await
    };
    let r = body.await;
    if let Err(e) = &r {
        tracing::error!(error = %e, "write batch failed; rolling back");
        let _ = exec(ctx, "ROLLBACK").await;
    }
    r
}
