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
//! A batch that makes tasks of a tenant ready also serves the claims
//! parked for that tenant (see [`Wakeups`]), after its writes and before
//! COMMIT: on an idle queue the create and the lease it wakes commit in one
//! transaction, so a task reaches its worker one flush after it was sent.
//!
//! A write that fails (a lost lease, an invalid transition) is rolled back
//! alone while the rest of the batch commits: each write that runs on its
//! own does so in a savepoint. Groups of writes (creates, claims,
//! completions) first run without one, since they settle what they cannot
//! do in bulk by leaving it to run alone and so almost never fail; a
//! savepoint per group was three of a `cycle` batch's ~14 round trips to
//! PostgreSQL. If a group does fail, the whole transaction is rolled back
//! and the batch runs again with a savepoint around every group (see
//! [`apply`]). Callers are answered after COMMIT returns: an answer means
//! durable. Wake-ups for long-polling claims are sent only after the commit,
//! so a woken claim always sees the task that woke it.
//!
//! Opening a batch, the backend locks every tenant the batch writes for, in
//! one statement and in sorted order (`dialect::begin`; nothing to lock on
//! SQLite, where this writer is the only one). One lock order for all nodes
//! means nodes never deadlock.
//!
//! A batch that fails as a whole (the connection broke, COMMIT failed)
//! answers every write in it with [`StoreError::CommitFailed`], a 503, and
//! the connection is replaced before the next batch, so the node recovers by
//! itself after the database restarts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use sqlx::ConnectOptions;

use super::bulk::MAX_ROWS;
use super::grouped::{self, Answer, Grouped, Pending};
use super::tasks::{BatchEvents, EventsMark, flush_events};
use super::{Conn, ConnectOpts, dialect};
use crate::{ClaimOutcome, Result, StoreError, Wakeups};

/// What a write sees: the connection (inside the batch transaction) and the
/// tenants to wake once the batch commits.
pub(crate) struct WriteCtx {
    /// What the set-based statements run on besides `conn` (SQLite: its
    /// raw handle). Declared first, so it is dropped first: on SQLite its
    /// prepared statements must be finalized before the connection closes.
    pub(crate) fast: dialect::Fast,
    pub(crate) conn: Conn,
    pub(crate) wake: WakeList,
    /// The claims parked with this writer.
    pub(crate) wakeups: Arc<Wakeups>,
    /// Parked claims this batch took, by tenant and slot, with what they
    /// got. Their grants are not among the ready tasks `wake` counts.
    pub(crate) parked: Vec<(String, u64, Option<ClaimOutcome>)>,
    /// Tenants with claims of their own in the batch: these come before
    /// the parked ones, so no create hands its task to a parked claim.
    pub(crate) claiming: Vec<String>,
    /// Events the batch's writes recorded, written just before COMMIT
    /// unless a statement took them along.
    pub(crate) events: BatchEvents,
    /// See [`Writer::groups_failed`].
    groups_failed: Arc<AtomicU64>,
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

    /// `n` of the tasks made ready for `tenant` went to claims of the
    /// batch, its own or parked ones.
    fn served(&mut self, tenant: &str, n: usize) {
        if let Some(e) = self.tenants.get_mut(tenant) {
            e.0 = e.0.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
        }
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
    /// The write, if it may run set-based with others of its kind and has
    /// not run yet.
    fn grouped(&self) -> Option<&Pending> {
        None
    }
    /// Takes the answer its group gave it.
    fn answer(&mut self, _: Result<Answer>) {}
    /// Whether its group already answered it.
    fn answered(&self) -> bool {
        false
    }
    /// Forgets its group's answer: the batch is running again.
    fn unanswer(&mut self) {}
    /// How many leases its answer grants, if it is a claim.
    fn leases(&self) -> usize {
        0
    }
    /// Forgets when its claim, if it is one and took nothing, would have
    /// looked again by itself: leases granted later in the batch expire
    /// at times its look did not see.
    fn forget_due(&mut self) {}
    /// Runs the write; returns whether it succeeded (else it is rolled back).
    fn run<'a>(&'a mut self, ctx: &'a mut WriteCtx) -> BoxFuture<'a, bool>;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

fn answer_of<T>(out: Option<Result<T>>, commit: Result<(), String>) -> Result<T> {
    match commit {
        Err(e) => Err(StoreError::CommitFailed(e)),
        Ok(()) => out.unwrap_or(Err(StoreError::Closed)),
    }
}

/// A write that may run in a group (see [`grouped`](super::grouped)).
struct GroupJob {
    tenant: String,
    pending: Option<Pending>,
    out: Option<Result<Answer>>,
    tx: oneshot::Sender<Result<Answer>>,
}

impl Job for GroupJob {
    fn tenant(&self) -> Option<&str> {
        Some(&self.tenant)
    }

    fn grouped(&self) -> Option<&Pending> {
        self.pending.as_ref().filter(|_| self.out.is_none())
    }

    fn answer(&mut self, r: Result<Answer>) {
        self.out = Some(r);
    }

    fn answered(&self) -> bool {
        self.out.is_some()
    }

    fn unanswer(&mut self) {
        if self.pending.is_some() {
            self.out = None;
        }
    }

    fn leases(&self) -> usize {
        match &self.out {
            Some(Ok(Answer::Claim(c))) => c.granted.len(),
            _ => 0,
        }
    }

    fn forget_due(&mut self) {
        if let Some(Ok(Answer::Claim(c))) = self.out.as_mut() {
            c.next_due = None;
        }
    }

    fn run<'a>(&'a mut self, ctx: &'a mut WriteCtx) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Some(p) = self.pending.take() else {
                return false;
            };
            let r = grouped::run_one(ctx, self.tenant.clone(), p).await;
            let ok = r.is_ok();
            self.out = Some(r);
            ok
        })
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let _ = self.tx.send(answer_of(self.out, commit));
    }
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
        let _ = self.tx.send(answer_of(self.out, commit));
    }
}

/// The handle requests use to queue writes.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Box<dyn Job>>,
    // Read by tests only: a group that fails still answers each of its
    // writes (they run alone), so nothing else shows that a set-based
    // statement broke.
    #[cfg_attr(not(test), allow(dead_code))]
    groups_failed: Arc<AtomicU64>,
}

impl Writer {
    /// Connects with `opts` and starts the writer on a thread of its own,
    /// reconnecting after a failed batch. `max_batch` bounds how many
    /// writes share one transaction (and so how long the first waits for
    /// the last); it is capped at [`MAX_ROWS`], so a group's rows fit one
    /// statement. It adds one to `commits` for each batch it commits (the
    /// PostgreSQL store's statistics keeper looks only after writes).
    ///
    /// Why a thread of its own: every statement of a batch is an `.await`,
    /// and on the server's runtime the writer waited behind every request
    /// task for each one (seen: groups of 9 and of 55 creates both took
    /// about 4 ms under load). On its own single-threaded runtime it
    /// resumes as soon as the database answers.
    pub(crate) async fn spawn(
        opts: ConnectOpts,
        wakeups: Arc<Wakeups>,
        max_batch: usize,
        commits: Arc<AtomicU64>,
    ) -> Result<Self> {
        let max_batch = max_batch.clamp(1, MAX_ROWS);
        let (tx, rx) = mpsc::channel(max_batch * 4);
        let (ready_tx, ready_rx) = oneshot::channel::<Result<()>>();
        let groups_failed = Arc::new(AtomicU64::new(0));
        let failed = groups_failed.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(crate::WRITER_THREAD.into())
            .spawn(move || {
                runtime.block_on(async move {
                    match connect(&opts, &wakeups).await {
                        Ok(conn) => {
                            let _ = ready_tx.send(Ok(()));
                            run(Some(conn), opts, rx, wakeups, max_batch, &commits, failed).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })?;
        ready_rx.await.map_err(|_| StoreError::Closed)??;
        Ok(Writer { tx, groups_failed })
    }

    /// How many groups of writes failed as a whole and had their writes
    /// run alone instead.
    #[cfg(test)]
    pub(crate) fn groups_failed(&self) -> u64 {
        self.groups_failed.load(Ordering::Relaxed)
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
        self.queue(job, rx).await
    }

    /// Queues a write that may run set-based with others of its tenant and
    /// kind, and waits until its batch is committed.
    pub(crate) async fn write_grouped(&self, tenant: String, pending: Pending) -> Result<Answer> {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(GroupJob {
            tenant,
            pending: Some(pending),
            out: None,
            tx,
        });
        self.queue(job, rx).await
    }

    /// Hands `job` to the writer and waits for the answer it sends on `rx`.
    async fn queue<T>(&self, job: Box<dyn Job>, rx: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.tx.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// The writer's connection, and what its set-based statements run on.
type Connected = (dialect::Fast, Conn);

async fn connect(opts: &ConnectOpts, wakeups: &Wakeups) -> Result<Connected> {
    let mut conn = opts.connect().await?;
    Ok((dialect::fast(&mut conn, wakeups).await?, conn))
}

async fn run(
    mut conn: Option<Connected>,
    opts: ConnectOpts,
    mut rx: mpsc::Receiver<Box<dyn Job>>,
    wakeups: Arc<Wakeups>,
    max_batch: usize,
    commits: &AtomicU64,
    groups_failed: Arc<AtomicU64>,
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
            None => connect(&opts, &wakeups).await.map_err(|e| e.to_string()),
        };
        let outcome = match outcome {
            Err(e) => Err(e),
            Ok((fast, c)) => {
                let mut ctx = WriteCtx {
                    fast,
                    conn: c,
                    wake: WakeList::default(),
                    wakeups: wakeups.clone(),
                    parked: vec![],
                    claiming: vec![],
                    events: BatchEvents::default(),
                    groups_failed: groups_failed.clone(),
                };
                let t0 = std::time::Instant::now();
                // Counted only for the trace: the writer's path is the hot one.
                let kinds = tracing::enabled!(tracing::Level::DEBUG).then(|| kinds(&batch));
                let r = apply(&mut ctx, &mut batch, &wakeups).await;
                tracing::debug!(writes = batch.len(), ?kinds, parked = ctx.parked.len(), elapsed = ?t0.elapsed(), "write batch");
                // Parked claims first: their grants are what an idle
                // queue's latency waits for.
                for (tenant, id, out) in ctx.parked.drain(..) {
                    wakeups.settle(&tenant, id, out.filter(|_| r.is_ok()));
                }
                // A connection whose batch failed may be broken; the next
                // batch opens a fresh one.
                if r.is_ok() {
                    commits.fetch_add(1, Ordering::Relaxed);
                    ctx.wake.send(&wakeups);
                    conn = Some((ctx.fast, ctx.conn));
                } else {
                    // Its server process may be gone, and its id given to
                    // another node's connection, whose wake-ups this node
                    // would then ignore until it reconnects.
                    wakeups.notifies_from(0);
                }
                r
            }
        };
        for job in batch.drain(..) {
            job.finish(outcome.clone());
        }
    }
}

/// How many creates, claims, checkpoints, completions and other writes a
/// batch holds.
fn kinds(batch: &[Box<dyn Job>]) -> [usize; 5] {
    let mut n = [0; 5];
    for j in batch {
        n[j.grouped().map_or(4, |p| usize::from(p.op.kind()).min(3))] += 1;
    }
    n
}

/// Why a batch stopped before COMMIT.
enum Stop {
    /// A group failed with no savepoint to roll back to: run the whole
    /// batch again, carefully.
    Redo,
    /// The batch failed as a whole.
    Failed(String),
}

impl From<String> for Stop {
    fn from(e: String) -> Self {
        Stop::Failed(e)
    }
}

/// The savepoint each write (or group of writes) runs in.
///
/// A lazy one opens nothing for a group: a group that fails then asks for
/// the batch to run again ([`Stop::Redo`]). Once a write that cannot run
/// twice (one that runs on its own) has run, every later step needs a real
/// savepoint, so the first such write ends the laziness.
struct Savepoint {
    lazy: bool,
    open: bool,
    /// Where the batch's events stood when it was opened.
    events: EventsMark,
}

impl Savepoint {
    fn new(lazy: bool) -> Self {
        Savepoint {
            lazy,
            open: false,
            events: EventsMark::default(),
        }
    }

    /// Starts a group's step: a fresh savepoint unless lazy.
    async fn group(&mut self, ctx: &mut WriteCtx) -> Result<(), Stop> {
        if self.lazy {
            return Ok(());
        }
        self.next(ctx).await
    }

    /// Opens a fresh savepoint, releasing the previous one in the same
    /// round trip to the connection.
    async fn next(&mut self, ctx: &mut WriteCtx) -> Result<(), Stop> {
        let sql = if self.open {
            "RELEASE job; SAVEPOINT job"
        } else {
            "SAVEPOINT job"
        };
        self.lazy = false;
        self.open = true;
        self.events = ctx.events.mark();
        Ok(exec(ctx, sql).await?)
    }

    /// Undoes what ran since [`next`](Self::next), events included; a
    /// lazy one cannot, and asks for the batch to run again.
    async fn rollback(&self, ctx: &mut WriteCtx) -> Result<(), Stop> {
        if self.lazy {
            return Err(Stop::Redo);
        }
        ctx.events.rewind(self.events);
        Ok(exec(ctx, "ROLLBACK TO job").await?)
    }
}

/// Runs the grouped writes of `batch`, one group per tenant and kind.
async fn run_groups(
    ctx: &mut WriteCtx,
    sp: &mut Savepoint,
    batch: &mut [Box<dyn Job>],
) -> Result<(), Stop> {
    let mut keys: Vec<(String, u8, usize)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, j)| Some((j.tenant()?.to_owned(), j.grouped()?.op.kind(), i)))
        .collect();
    keys.sort();
    for group in keys.chunk_by(|a, b| (&a.0, a.1) == (&b.0, b.1)) {
        let Some((tenant, _, _)) = group.first() else {
            continue;
        };
        sp.group(ctx).await?;
        let answers = {
            let items: Vec<&Pending> = group
                .iter()
                .filter_map(|(_, _, i)| batch[*i].grouped())
                .collect();
            grouped::run_many(ctx, tenant, &items).await
        };
        match answers {
            Ok(answers) => {
                for ((_, _, i), a) in group.iter().zip(answers) {
                    if let Some(a) = a {
                        batch[*i].answer(a);
                    }
                }
            }
            // Each write of the group runs alone instead, for its own answer.
            Err(e) => {
                ctx.groups_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, writes = group.len(), "group write failed; running its writes one by one");
                sp.rollback(ctx).await?;
            }
        }
    }
    Ok(())
}

/// Runs the claims parked for the tenants this batch made tasks ready for,
/// each tenant's as one group in a savepoint of its own. Only tenants the
/// batch locked: the others' claims would write outside their tenant's lock.
async fn serve_parked(
    ctx: &mut WriteCtx,
    sp: &mut Savepoint,
    wakeups: &Wakeups,
    locked: &[String],
) -> Result<(), Stop> {
    let ready: Vec<(String, u32, bool)> = ctx
        .wake
        .tenants
        .iter()
        .filter(|(t, (n, everyone))| (*n > 0 || *everyone) && locked.binary_search(t).is_ok())
        .map(|(t, (n, everyone))| (t.clone(), *n, *everyone))
        .collect();
    for (tenant, n, everyone) in ready {
        let taken = wakeups.take(&tenant, n, everyone);
        if taken.is_empty() {
            continue;
        }
        // Recorded before anything runs: however the batch ends, each
        // taken claim is settled, so none waits for an answer forever.
        let first = ctx.parked.len();
        ctx.parked
            .extend(taken.iter().map(|t| (tenant.clone(), t.id, None)));
        sp.group(ctx).await?;
        let pending: Vec<Pending> = taken
            .into_iter()
            .map(|t| Pending {
                now: t.now,
                op: Grouped::Claim(t.params),
            })
            .collect();
        let items: Vec<&Pending> = pending.iter().collect();
        match grouped::claim_many(ctx, &tenant, &items).await {
            Ok(outs) => {
                // What they leased was counted as ready: nobody else is
                // to be woken for it.
                let n = outs.iter().map(|o| o.granted.len()).sum();
                ctx.wake.served(&tenant, n);
                for (slot, out) in ctx.parked[first..].iter_mut().zip(outs) {
                    slot.2 = Some(out);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, claims = items.len(), "parked claims failed; they stay parked");
                sp.rollback(ctx).await?;
            }
        }
    }
    Ok(())
}

async fn exec(ctx: &mut WriteCtx, sql: &'static str) -> Result<(), String> {
    dialect::exec(ctx, sql).await.map_err(|e| e.to_string())
}

/// Runs the batch with lazy savepoints and, if a group failed, once more
/// from the start with a savepoint around every group, so that only the
/// failed group's writes run alone. What the first run did is undone: the
/// transaction is rolled back, its groups' answers and events dropped, and
/// the parked claims it took park again, to be taken again.
async fn apply(
    ctx: &mut WriteCtx,
    batch: &mut [Box<dyn Job>],
    wakeups: &Wakeups,
) -> Result<(), String> {
    let r = match attempt(ctx, batch, wakeups, true).await {
        Err(Stop::Redo) => {
            tracing::warn!(
                writes = batch.len(),
                "a group failed; running the batch again with savepoints"
            );
            match exec(ctx, "ROLLBACK").await {
                Err(e) => Err(Stop::Failed(e)),
                Ok(()) => {
                    for (tenant, id, _) in ctx.parked.drain(..) {
                        wakeups.settle(&tenant, id, None);
                    }
                    ctx.wake = WakeList::default();
                    ctx.events.clear();
                    for job in batch.iter_mut() {
                        job.unanswer();
                    }
                    attempt(ctx, batch, wakeups, false).await
                }
            }
        }
        r => r,
    };
    let r = r.map_err(|e| match e {
        Stop::Failed(e) => e,
        Stop::Redo => "a group failed outside a savepoint".to_owned(),
    });
    if let Err(e) = &r {
        tracing::error!(error = %e, "write batch failed; rolling back");
        let _ = exec(ctx, "ROLLBACK").await;
    }
    r
}

/// One run of the batch, from BEGIN to COMMIT.
async fn attempt(
    ctx: &mut WriteCtx,
    batch: &mut [Box<dyn Job>],
    wakeups: &Wakeups,
    lazy: bool,
) -> Result<(), Stop> {
    let mut tenants: Vec<String> = batch
        .iter()
        .filter_map(|j| j.tenant().map(str::to_owned))
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    dialect::begin(ctx, &tenants)
        .await
        .map_err(|e| e.to_string())?;
    let mut sp = Savepoint::new(lazy);
    ctx.claiming = batch
        .iter()
        .filter(|j| {
            j.grouped()
                .is_some_and(|p| matches!(p.op, Grouped::Claim(_)))
        })
        .filter_map(|j| j.tenant().map(str::to_owned))
        .collect();
    // A write alone needs no savepoint (one round trip less on the path an
    // idle queue's latency is made of): if it fails, its transaction is
    // rolled back whole and it keeps its own error. Not a grouped one:
    // alone, it still takes its group's path, a few set-based statements
    // run in place, where its ordinary path is several statements through
    // sqlx's connection thread; and a lazy savepoint costs nothing until
    // the group fails (performance.md, finding 54).
    if let [job] = batch
        && job.grouped().is_none()
    {
        if !job.run(ctx).await {
            ctx.wake = WakeList::default();
            ctx.events.clear();
            return Ok(exec(ctx, "ROLLBACK").await?);
        }
    } else {
        // Grouped writes go first: a claim later in the batch then sees
        // the tasks created in it. The batch's writes were all in flight
        // at once, so any order is one they could have had.
        run_groups(ctx, &mut sp, batch).await?;
        for job in batch.iter_mut() {
            if job.answered() {
                continue;
            }
            sp.next(ctx).await?;
            if !job.run(ctx).await {
                sp.rollback(ctx).await?;
            }
        }
    }
    // What the batch's own claims leased is not there for the parked ones:
    // counted as ready, it took parked claims into the batch to find
    // nothing and woke others to look again for nothing, each look a write
    // (five claim writes per claim that got work, in `cycle`).
    for job in batch.iter() {
        if let (Some(tenant), n @ 1..) = (job.tenant(), job.leases()) {
            ctx.wake.served(tenant, n);
        }
    }
    serve_parked(ctx, &mut sp, wakeups, &tenants).await?;
    // `ctx.parked` holds only what this run's `serve_parked` took.
    let granted_late: Vec<&str> = ctx
        .parked
        .iter()
        .filter(|(_, _, out)| out.as_ref().is_some_and(|o| !o.granted.is_empty()))
        .map(|(t, _, _)| t.as_str())
        .collect();
    if !granted_late.is_empty() {
        for job in batch.iter_mut() {
            if job.tenant().is_some_and(|t| granted_late.contains(&t)) {
                job.forget_due();
            }
        }
    }
    flush_events(ctx).await.map_err(|e| e.to_string())?;
    // COMMIT also releases the last savepoint.
    Ok(dialect::commit(ctx).await.map_err(|e| e.to_string())?)
}

#[cfg(test)]
mod tests {
    //! What a batch tells the claims waiting beside it, on each backend
    //! this file is compiled for.

    use aruntime_api::NewTask;
    use aruntime_core::{Clock, MockClock, Timestamp};
    use futures::FutureExt;

    use super::super::testing::{bootstrapped, notifications_settled};
    use super::*;
    use crate::{ClaimParams, Store};

    fn params(worker: &str) -> ClaimParams {
        ClaimParams {
            worker: worker.into(),
            capabilities: vec![],
            max: 1,
            ttl_s: Some(60),
        }
    }

    /// A batch whose own claim leases the task it creates leaves nothing
    /// for the claims parked beside it: none may be taken into the batch
    /// or woken to look again, since each look is a write that finds
    /// nothing. On PostgreSQL the batch's `NOTIFY` comes back to the node's
    /// own listener, which must not wake them either. (Without either
    /// guard the parked claim is woken.)
    #[tokio::test]
    async fn a_batch_that_leases_what_it_made_ready_wakes_nobody() {
        let now = Timestamp(1_000_000);
        let Some((guard, store)) = bootstrapped(now).await else {
            return;
        };
        notifications_settled(&guard, &store).await;
        let wakeups = store.wakeups();
        let notify = wakeups.tenant("default");
        let woken = notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let clock: Arc<dyn Clock> = Arc::new(MockClock::new(now));
        let mut parked = wakeups.park("default", params("parked"), clock);

        // The writer is held by a write of its own until the create and the
        // claim are both queued, so that they share the next batch.
        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let hold = store.writer.write(None, move |_| {
            Box::pin(async move {
                let _ = started_tx.send(());
                let _ = release_rx.await;
                Ok(())
            })
        });
        // Sent only once the hold runs, so that it runs alone.
        let rest = async {
            started_rx.await.unwrap();
            let queue = &store.writer.tx;
            let release = async {
                while queue.max_capacity() - queue.capacity() < 2 {
                    tokio::task::yield_now().await;
                }
                release_tx.send(()).unwrap();
            };
            let (created, claimed, ()) = tokio::join!(
                store.task_create("default", NewTask::titled("t"), None, now),
                store.lease_claim("default", params("w"), now),
                release,
            );
            (created, claimed)
        };
        let (held, (created, claimed)) = tokio::join!(hold, rest);
        held.unwrap();
        let created = created.unwrap().value;
        let claimed = claimed.unwrap();
        assert_eq!(claimed.granted.len(), 1, "the claim beside the create");
        assert_eq!(claimed.granted[0].task.id, created.id);

        notifications_settled(&guard, &store).await;
        assert!(
            woken.as_mut().now_or_never().is_none(),
            "a waiter was woken for a task already leased"
        );
        assert!(parked.granted().now_or_never().is_none());
    }
    /// The tenant's whole log, checked to be numbered from 1 without gaps.
    async fn gapless_log(store: &super::super::Backend) -> Vec<aruntime_core::Event> {
        let events = store
            .event_list("default", &aruntime_api::EventQuery::default())
            .await
            .unwrap()
            .events;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
        events
    }

    /// A create that finds a claim parked for it inserts the task already
    /// leased to that claim (`grouped::Handover`). Everything the claim
    /// and the log say must be what a claim's own statement would have
    /// written: the task it got is the task as read back, the lease works,
    /// and the log holds the creation, then the lease.
    #[tokio::test]
    async fn a_create_hands_its_task_to_the_claim_parked_for_it() {
        let now = Timestamp(1_000_000);
        let Some((_guard, store)) = bootstrapped(now).await else {
            return;
        };
        let at = Timestamp(now.0 + 5);
        let clock: Arc<dyn Clock> = Arc::new(MockClock::new(at));
        let wakeups = store.wakeups();
        let mut parked = wakeups.park("default", params("w"), clock);
        let mut spec = NewTask::titled("handed over");
        spec.priority = 3;
        let created = store
            .task_create("default", spec, None, now)
            .await
            .unwrap()
            .value;
        assert_eq!(created.status, aruntime_core::TaskStatus::Ready);
        let out = parked.granted().await;
        assert_eq!(out.granted.len(), 1);
        let got = &out.granted[0];
        let read = store.task_get("default", created.id).await.unwrap();
        assert_eq!(got.task, read, "the claim's task is the task as stored");
        assert_eq!(read.status, aruntime_core::TaskStatus::Running);
        assert_eq!(read.attempts, 1);
        assert_eq!(got.attempt, 1);
        assert_eq!(got.expires_at, Timestamp(at.0 + 60_000));
        assert_eq!(
            read.lease.as_ref().map(|l| l.expires_at),
            Some(got.expires_at)
        );
        // On PostgreSQL the insert writes these events itself (finding 68):
        // numbered on from the log, with the data a claim would log.
        let log = gapless_log(&store).await;
        let ours: Vec<(&str, &serde_json::Value, Timestamp)> = log
            .iter()
            .filter(|e| e.task_id == Some(created.id))
            .map(|e| (e.kind.as_str(), &e.data, e.at))
            .collect();
        assert_eq!(
            ours,
            [
                (
                    "task.created",
                    &serde_json::json!({"depends_on": [], "parent_id": null,
                        "status": "ready", "title": "handed over"}),
                    now
                ),
                (
                    "task.leased",
                    &serde_json::json!({"attempt": 1,
                        "expires_at": got.expires_at, "worker": "w"}),
                    at
                ),
            ]
        );
        let attempts = store.attempt_list("default", created.id).await.unwrap();
        assert_eq!(attempts.len(), 1, "the lease is the task's running attempt");
        let done = store
            .task_finish(
                "default",
                created.id,
                &got.lease,
                crate::Finish::Complete {
                    result: serde_json::json!({"ok": true}),
                },
                Timestamp(at.0 + 10),
            )
            .await
            .unwrap();
        assert_eq!(done.status, aruntime_core::TaskStatus::Done);
        assert_eq!(store.writer.groups_failed(), 0, "the create's group ran");
    }

    /// A parked claim is owed the queue's best task, not the newest: when
    /// another task is already claimable, the create inserts its task
    /// ready and the claim looks as usual, taking the older one. (Only a
    /// claim parked by hand can sit beside a claimable task; a real one
    /// parks after a look that found nothing, but a task may become due
    /// while it waits, as an expired lease does.)
    #[tokio::test]
    async fn a_parked_claim_gets_the_older_claimable_task_not_the_new_one() {
        let now = Timestamp(1_000_000);
        let Some((_guard, store)) = bootstrapped(now).await else {
            return;
        };
        let older = store
            .task_create("default", NewTask::titled("older"), None, now)
            .await
            .unwrap()
            .value;
        let clock: Arc<dyn Clock> = Arc::new(MockClock::new(Timestamp(now.0 + 5)));
        let wakeups = store.wakeups();
        let mut parked = wakeups.park("default", params("w"), clock);
        let newer = store
            .task_create(
                "default",
                NewTask::titled("newer"),
                None,
                Timestamp(now.0 + 1),
            )
            .await
            .unwrap()
            .value;
        let out = parked.granted().await;
        assert_eq!(out.granted.len(), 1);
        assert_eq!(out.granted[0].task.id, older.id, "the queue's order");
        let newer = store.task_get("default", newer.id).await.unwrap();
        assert_eq!(newer.status, aruntime_core::TaskStatus::Ready);
        assert_eq!(newer.attempts, 0);
        // The lease the insert planned and did not grant is not logged;
        // the one the claim took instead is, once, after the creation.
        let log = gapless_log(&store).await;
        let ours: Vec<(Option<uuid::Uuid>, &str)> = log
            .iter()
            .filter(|e| e.task_id == Some(older.id) || e.task_id == Some(newer.id))
            .map(|e| (e.task_id, e.kind.as_str()))
            .collect();
        assert_eq!(
            ours,
            [
                (Some(older.id), "task.created"),
                (Some(newer.id), "task.created"),
                (Some(older.id), "task.leased"),
            ]
        );
        assert_eq!(store.writer.groups_failed(), 0, "the create's group ran");
    }
}
