//! Group commit: one task owns the SQLite write connection and commits, in
//! one transaction, every write that queued up while the previous commit was
//! being flushed.
//!
//! Each write runs inside its own savepoint, so a write that fails (a lost
//! lease, an invalid transition) is rolled back alone while the rest of the
//! batch commits. Callers are answered after COMMIT returns, i.e. after the
//! WAL was synced (with `synchronous=FULL`): an answer means durable.
//! Wake-ups for long-polling claims are sent only after the commit, so a
//! woken claim always sees the task that woke it.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use crate::{Result, StoreError, Wakeups};

/// What a write sees: the connection (inside the batch transaction) and the
/// set of tenants to wake once the batch commits.
pub(crate) struct WriteCtx {
    pub(crate) conn: SqliteConnection,
    pub(crate) wake: HashSet<String>,
}

trait Job: Send {
    /// Runs the write; returns whether it succeeded (else it is rolled back).
    fn run<'a>(&'a mut self, ctx: &'a mut WriteCtx) -> BoxFuture<'a, bool>;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

struct Typed<T, F> {
    f: Option<F>,
    out: Option<Result<T>>,
    tx: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Typed<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
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
    /// Starts the writer task on `conn`. `max_batch` bounds how many writes
    /// share one transaction (and so how long the first waits for the last).
    pub(crate) fn spawn(conn: SqliteConnection, wakeups: Arc<Wakeups>, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel(max_batch * 4);
        let ctx = WriteCtx {
            conn,
            wake: HashSet::new(),
        };
        tokio::spawn(run(ctx, rx, wakeups, max_batch));
        Writer { tx }
    }

    /// Queues a write and waits until its batch is committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(Typed {
            f: Some(f),
            out: None,
            tx,
        });
        self.tx.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(
    mut ctx: WriteCtx,
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
        let outcome = apply(&mut ctx, &mut batch).await;
        if outcome.is_ok() {
            for t in ctx.wake.drain() {
                wakeups.wake(&t);
            }
        } else {
            ctx.wake.clear();
        }
        for job in batch.drain(..) {
            job.finish(outcome.clone());
        }
    }
}

async fn exec(ctx: &mut WriteCtx, sql: &'static str) -> Result<(), String> {
    sqlx::query(sql)
        .execute(&mut ctx.conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn apply(ctx: &mut WriteCtx, batch: &mut [Box<dyn Job>]) -> Result<(), String> {
    exec(ctx, super::dialect::BEGIN).await?;
    let body = async {
        for job in batch.iter_mut() {
            exec(ctx, "SAVEPOINT job").await?;
            if !job.run(ctx).await {
                exec(ctx, "ROLLBACK TO job").await?;
            }
            exec(ctx, "RELEASE job").await?;
        }
        exec(ctx, "COMMIT").await
    };
    let r = body.await;
    if let Err(e) = &r {
        tracing::error!(error = %e, "write batch failed; rolling back");
        let _ = exec(ctx, "ROLLBACK").await;
    }
    r
}
