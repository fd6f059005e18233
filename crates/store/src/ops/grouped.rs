//! Set-based writes. Within one batch the writer runs every plain create of
//! a tenant as one group, every claim as another, every checkpoint as a
//! third and every completion as a fourth, each in a fixed number of
//! statements however many writes it holds. These are the writes every
//! task goes through, so under load their cost per task shrinks as batches
//! grow, instead of staying at one round trip to the database per
//! statement.
//!
//! Claims gain the most: with workers waiting, each new task wakes one of
//! them, so claims arrive about as often as tasks do. A group serves them
//! in arrival order from one look at the queue, each up to its own `max`.
//!
//! A group answers each write exactly as the write would be answered alone:
//! the rows come back through `RETURNING` in the same columns a load reads.
//! A write the group cannot settle in bulk (a completion whose lease does
//! not match, or a second completion of the same task in the batch) is
//! left to run alone afterwards through the ordinary path, which gives it
//! its precise error. A group that fails as a whole makes the writer run
//! the batch again with a savepoint around each group; the failing group is
//! then rolled back to its savepoint and each of its writes runs alone.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use aruntime_api::NewTask;
use aruntime_core::{Command, Task, TaskStatus, Timestamp, transition};
use serde_json::Value;
use uuid::Uuid;

use super::bulk::{Kind, MAX_ROWS, Rows};
use super::dialect::{self, OR_FAIL};
use super::leases::{self, CheckpointWrite};
use super::rows::{self, Get, TASK_COLS, json_text, to_json};
use super::tasks::{
    self, AttemptData, CLEAR_LEASE, CheckpointData, CreatedData, INTO_EVENTS, LeasedData, events,
    release_dependents,
};
use super::writer::WriteCtx;
use crate::{ClaimOutcome, ClaimParams, Claimed, Finish, Result, StoreError};

/// A write the writer may run set-based with others of its tenant and kind.
pub(crate) enum Grouped {
    /// A create with no idempotency key, parent or dependencies.
    Create(NewTask),
    /// A claim.
    Claim(ClaimParams),
    /// A completion of task `id` under lease `token`.
    Complete {
        id: Uuid,
        token: String,
        result: Value,
        /// Whether the caller wants the task back. A batch acknowledgement
        /// wants only the new status, and a group of those reads back two
        /// columns per task instead of 26 (performance.md, finding 36).
        whole: bool,
    },
    /// A checkpoint under a lease.
    Checkpoint(CheckpointWrite),
}

/// What a grouped write returns.
pub(crate) enum Answer {
    /// The task as written (creates and completions).
    Task(Box<Task>),
    /// What a claim got.
    Claim(ClaimOutcome),
    /// A completion that did not ask for its task back: it is done.
    Completed,
    /// A checkpoint written: its number and the attempt that wrote it.
    Checkpointed { seq: i64, attempt: u32 },
}

impl Answer {
    pub(crate) fn into_task(self) -> Result<Task> {
        match self {
            Answer::Task(t) => Ok(*t),
            Answer::Claim(_) | Answer::Completed | Answer::Checkpointed { .. } => Err(
                StoreError::Corrupt("a task write answered without its task".into()),
            ),
        }
    }

    /// The status a completion left its task in.
    pub(crate) fn into_status(self) -> Result<TaskStatus> {
        match self {
            Answer::Task(t) => Ok(t.status),
            Answer::Completed => Ok(TaskStatus::Done),
            Answer::Claim(_) | Answer::Checkpointed { .. } => Err(StoreError::Corrupt(
                "a completion answered as another write".into(),
            )),
        }
    }

    pub(crate) fn into_claim(self) -> Result<ClaimOutcome> {
        match self {
            Answer::Claim(c) => Ok(c),
            Answer::Task(_) | Answer::Completed | Answer::Checkpointed { .. } => Err(
                StoreError::Corrupt("a claim answered as another write".into()),
            ),
        }
    }

    /// A checkpoint's number and attempt.
    pub(crate) fn into_checkpointed(self) -> Result<(i64, u32)> {
        match self {
            Answer::Checkpointed { seq, attempt } => Ok((seq, attempt)),
            Answer::Task(_) | Answer::Completed | Answer::Claim(_) => Err(StoreError::Corrupt(
                "a checkpoint answered as another write".into(),
            )),
        }
    }
}

impl Grouped {
    /// Writes of one kind share a group, and the groups of a tenant run in
    /// this order. Checkpoints before completions: a worker that sent its
    /// last checkpoint and its completion together sees both written.
    pub(crate) fn kind(&self) -> u8 {
        match self {
            Grouped::Create(_) => 0,
            Grouped::Claim(_) => 1,
            Grouped::Checkpoint(_) => 2,
            Grouped::Complete { .. } => 3,
        }
    }

    /// Whether a create can join a group: the rest need lookups per task.
    pub(crate) fn plain_create(spec: &NewTask) -> bool {
        spec.parent_id.is_none() && spec.depends_on.is_empty()
    }
}

/// A grouped write and the time it was made.
pub(crate) struct Pending {
    pub(crate) now: Timestamp,
    pub(crate) op: Grouped,
}

/// Runs `items`, all of one tenant and one kind, as one group. Answers each
/// item in order; `None` leaves it to [`run_one`].
pub(crate) async fn run_many(
    ctx: &mut WriteCtx,
    tenant: &str,
    items: &[&Pending],
) -> Result<Vec<Option<Result<Answer>>>> {
    let tasks = |v: Vec<Option<Result<Task>>>| {
        v.into_iter()
            .map(|a| a.map(|r| r.map(|t| Answer::Task(Box::new(t)))))
            .collect()
    };
    Ok(match items.first().map(|p| &p.op) {
        Some(Grouped::Create(_)) => tasks(create_many(ctx, tenant, items).await?),
        Some(Grouped::Complete { .. }) => complete_many(ctx, tenant, items).await?,
        Some(Grouped::Checkpoint(_)) => checkpoint_many(ctx, tenant, items).await?,
        Some(Grouped::Claim(_)) => claim_many(ctx, tenant, items)
            .await?
            .into_iter()
            .map(|c| Some(Ok(Answer::Claim(c))))
            .collect(),
        None => vec![],
    })
}

/// Runs one grouped write alone, through the ordinary path (claims and
/// completions are then groups of one; a completion that fails says why).
pub(crate) async fn run_one(ctx: &mut WriteCtx, tenant: String, p: Pending) -> Result<Answer> {
    match p.op {
        Grouped::Create(spec) => Ok(Answer::Task(Box::new(
            tasks::create(ctx, tenant, spec, None, p.now).await?.value,
        ))),
        Grouped::Complete {
            id, token, result, ..
        } => Ok(Answer::Task(Box::new(
            leases::finish(ctx, tenant, id, token, Finish::Complete { result }, p.now).await?,
        ))),
        Grouped::Claim(_) => {
            let mut out = claim_many(ctx, &tenant, &[&p]).await?;
            Ok(Answer::Claim(out.pop().unwrap_or_default()))
        }
        Grouped::Checkpoint(cp) => {
            let (seq, attempt) = leases::checkpoint(ctx, tenant, cp, p.now).await?;
            Ok(Answer::Checkpointed { seq, attempt })
        }
    }
}

/// The earliest time among `items`: what a group checks due times against,
/// so it never treats something as due earlier than one of its writes would.
fn earliest(items: &[&Pending]) -> Timestamp {
    Timestamp(items.iter().map(|p| p.now.0).min().unwrap_or(0))
}

/// The latest time among `items`: a group's events carry one time.
fn latest(items: &[&Pending]) -> Timestamp {
    Timestamp(items.iter().map(|p| p.now.0).max().unwrap_or(0))
}

/// Inserts every task in one statement and logs their creation.
///
/// The answers are built from what was inserted rather than read back: a
/// new task's every other column is either its spec or a default, and
/// returning and decoding 26 columns per row was work on the writer's
/// serial path (performance.md, finding 32). A conformance test compares
/// each answer with the task read back.
///
/// Claims parked for the tenant are served by the same statement when
/// that is what their own look would do (see [`Handover`]): the tasks they
/// get are inserted already leased.
async fn create_many(
    ctx: &mut WriteCtx,
    tenant: &str,
    items: &[&Pending],
) -> Result<Vec<Option<Result<Task>>>> {
    const COLS: &[(&str, Kind)] = &[
        ("v_id", Kind::Text),
        ("v_title", Kind::Text),
        ("v_goal", Kind::Text),
        ("v_acceptance", Kind::Text),
        ("v_labels", Kind::Text),
        ("v_priority", Kind::Int),
        ("v_status", Kind::Text),
        ("v_held", Kind::Bool),
        ("v_max_attempts", Kind::Int),
        ("v_lease_ttl_s", Kind::Int),
        ("v_now", Kind::Int),
        ("v_token", Kind::Text),
        ("v_worker", Kind::Text),
        ("v_ttl_ms", Kind::Int),
        ("v_leased_at", Kind::Int),
    ];
    let mut made = Vec::with_capacity(items.len());
    for p in items {
        let Grouped::Create(spec) = &p.op else {
            return Ok(items.iter().map(|_| None).collect());
        };
        let t = transition(None, Command::Create { waiting: spec.hold })?;
        made.push((Uuid::now_v7(), t, spec, p.now));
    }
    let handover = Handover::plan(ctx, tenant, &made);
    // SQLite asks `g.ok` (`Handover::clear_sql`) by a statement of its own,
    // `queue_is_clear`, then inserts the rows leased or not as the answer
    // says: the insert then reads no table of its own and returns nothing,
    // so SQLite stages nothing (`AVOID_TEMP_TABLES`). A statement that
    // succeeds has inserted every row (`OR FAIL` skips none), so neither
    // backend returns the ids.
    let leasing = if handover.taken.is_empty() {
        false
    } else if dialect::AVOID_TEMP_TABLES {
        match handover.queue_is_clear(ctx, tenant).await {
            Ok(clear) => clear,
            Err(e) => {
                handover.give_back(ctx);
                return Err(e);
            }
        }
    } else {
        true
    };
    let mut rows_in = Rows::new(COLS).read_once();
    for (k, (id, t, spec, now)) in made.iter().enumerate() {
        // A row's lease, if the insert may grant it.
        let lease = handover.lease_of(k).filter(|_| leasing);
        rows_in.push([
            id.to_string().into(),
            spec.title.as_str().into(),
            spec.goal.as_str().into(),
            to_json(&spec.acceptance).into(),
            to_json(&spec.labels).into(),
            i64::from(spec.priority).into(),
            t.to.as_str().into(),
            spec.hold.into(),
            i64::from(spec.max_attempts).into(),
            i64::from(spec.lease_ttl_s).into(),
            now.0.into(),
            lease.map(|l| l.token.clone()).into(),
            lease
                .map(|l| handover.taken[l.claim].params.worker.clone())
                .into(),
            lease.map(|l| l.ttl_ms).into(),
            lease.map(|l| handover.taken[l.claim].now.0).into(),
        ]);
    }
    // PostgreSQL's insert asks `g.ok` itself and says which rows it leased.
    let guard_inside = leasing && !dialect::AVOID_TEMP_TABLES;
    // The creations are logged first, then the leases the insert grants,
    // as a claim's own statement would log them after the insert.
    let mark = ctx.events.mark();
    let created_log = made
        .iter()
        .map(|(id, t, spec, _)| {
            let data = CreatedData {
                depends_on: &[],
                parent_id: None,
                status: t.to,
                title: &spec.title,
            };
            (Some(*id), t.event, to_json(&data))
        })
        .collect();
    events(ctx, tenant, created_log, latest(items));
    // On PostgreSQL, when the insert may serve parked claims (an idle
    // queue's path: a create, the grant to the worker waiting for it,
    // nothing else), the insert writes the batch's events itself, the
    // leases among them only if it granted them (`g.ok`): the events'
    // own statement before COMMIT was one round trip in four on that
    // path (performance.md, finding 68). Only when every event waiting is
    // this tenant's, so the log keeps the order they were recorded in.
    let inline_log = if guard_inside {
        let leases = ctx.events.mark();
        let granted = handover.log_leases(ctx, tenant, &made, None)?;
        match ctx.events.unwritten_rows_of(tenant) {
            Some(rows) => Some(InlineLog {
                unconditional: (rows.len() - granted) as i64,
                rows,
                leases,
            }),
            None => {
                ctx.events.rewind(leases);
                None
            }
        }
    } else {
        None
    };
    let leases_mark = inline_log.as_ref().map(|l| l.leases);
    let sql = if dialect::AVOID_TEMP_TABLES && made.len() == 1 {
        Cow::Borrowed(LONE_INSERT)
    } else {
        // The writer's batches are capped at `MAX_ROWS` writes, so one statement.
        let (with, mut p) = rows_in.with_clause();
        if !leasing {
            Cow::Owned(format!(
                "{with} INSERT{OR_FAIL} INTO tasks (tenant_id, id, title, goal, acceptance, labels, priority, status, held, \
                 parent_id, depends_on, pending_deps, max_attempts, lease_ttl_s, idem_key, idem_hash, \
                 created_at, updated_at) \
                 SELECT {tenant}, v_id, v_title, v_goal, v_acceptance, v_labels, v_priority, v_status, v_held, \
                 NULL, '[]', 0, v_max_attempts, v_lease_ttl_s, NULL, NULL, v_now, v_now \
                 FROM v WHERE v_id IS NOT NULL",
                tenant = p.next(),
            ))
        } else {
            // `g.ok`: nothing else is claimable and no lease has expired (the
            // claims' look would record it first), so each claim's look would
            // offer exactly these tasks, in the order `plan` handed them out.
            // Otherwise every row goes in ready and the claims look as usual.
            // Materialized: PostgreSQL would otherwise inline `g` into every
            // `CASE`, its two probes run once per column that reads it.
            let (guard, from, leased, returning) = if !guard_inside {
                (String::new(), "v", "(v_token IS NOT NULL)", "")
            } else {
                let (t1, now1, t2, now2) = (p.next(), p.next(), p.next(), p.next());
                (
                    format!(
                        ", g AS MATERIALIZED (SELECT {} AS ok)",
                        Handover::clear_sql(&t1, &now1, &t2, &now2)
                    ),
                    "v, g",
                    "(g.ok AND v_token IS NOT NULL)",
                    " RETURNING id, status",
                )
            };
            let t = p.next();
            // PostgreSQL: with the log to write (`inline_log`, above) the
            // insert becomes one of the statement's `WITH` writes, beside the
            // events'.
            let (head, tail) = match &inline_log {
                None => (String::new(), String::new()),
                Some(log) => {
                    let e = log.rows.cte("e", &mut p);
                    let k = p.next();
                    (
                        format!(
                            ", {e}, last AS (SELECT {} AS seq), ins AS (",
                            tasks::last_event_seq_sql(&t)
                        ),
                        format!(
                            "), logged AS (INSERT {INTO_EVENTS} \
                             SELECT {t}, last.seq + e.v_ord, e.v_task, e.v_kind, e.v_data, e.v_at \
                             FROM e CROSS JOIN last CROSS JOIN g \
                             WHERE e.v_ord IS NOT NULL AND (e.v_ord <= {k} OR g.ok)) \
                             SELECT id, status FROM ins"
                        ),
                    )
                }
            };
            Cow::Owned(format!(
                "{with}{guard}{head} \
                 INSERT{OR_FAIL} INTO tasks (tenant_id, id, title, goal, acceptance, labels, priority, status, held, \
                 parent_id, depends_on, pending_deps, max_attempts, lease_ttl_s, idem_key, idem_hash, \
                 attempts, lease_token, lease_worker, lease_attempt, lease_started_at, lease_ttl_ms, \
                 lease_expires_at, created_at, updated_at) \
                 SELECT {t}, v_id, v_title, v_goal, v_acceptance, v_labels, v_priority, \
                 CASE WHEN {leased} THEN {running} ELSE v_status END, v_held, \
                 NULL, '[]', 0, v_max_attempts, v_lease_ttl_s, NULL, NULL, \
                 CASE WHEN {leased} THEN 1 ELSE 0 END, \
                 CASE WHEN {leased} THEN v_token END, CASE WHEN {leased} THEN v_worker END, \
                 CASE WHEN {leased} THEN 1 END, CASE WHEN {leased} THEN v_leased_at END, \
                 CASE WHEN {leased} THEN v_ttl_ms END, \
                 CASE WHEN {leased} THEN v_leased_at + v_ttl_ms END, \
                 v_now, CASE WHEN {leased} THEN v_leased_at ELSE v_now END \
                 FROM {from} WHERE v_id IS NOT NULL{returning}{tail}",
                running = "'running'",
            ))
        }
    };
    let mut args = if guard_inside {
        let asked = handover.asked().0;
        rows_in.args_then([
            tenant.into(),
            asked.into(),
            tenant.into(),
            asked.into(),
            tenant.into(),
        ])
    } else {
        rows_in.args_then([tenant.into()])
    };
    if let Some(log) = inline_log {
        args.extend(log.rows.into_args());
        args.push(log.unconditional.into());
    }
    let returned = dialect::fetch(ctx, sql, args).await;
    let returned = match returned {
        Ok(r) => r,
        Err(e) => {
            ctx.events.rewind(mark);
            handover.give_back(ctx);
            return Err(e);
        }
    };
    let mut leased = HashSet::new();
    if leasing && !guard_inside {
        leased.extend(handover.order.iter().map(|&k| made[k].0));
    }
    for row in &returned {
        if row.col::<String>("status")? == TaskStatus::Running.as_str() {
            leased.insert(rows::uuid(row, "id")?);
        }
    }
    let mut out = Vec::with_capacity(made.len());
    for (id, t, spec, now) in &made {
        if t.to == TaskStatus::Ready && !leased.contains(id) {
            ctx.wake.ready(tenant, !spec.labels.is_empty());
        }
        // Answered as created, before the lease in the same transaction,
        // as when the parked claim leases it with a statement of its own.
        out.push(Some(Ok(created(*id, spec, t.to, *now))));
    }
    if let Some(leases) = leases_mark {
        // The statement wrote the leases' events only if it granted them.
        if leased.is_empty() {
            ctx.events.rewind(leases);
        }
        ctx.events.all_written();
    }
    handover.settle(ctx, tenant, &made, &leased, leases_mark.is_none())?;
    Ok(out)
}

/// `create_many`'s insert of one row on SQLite, the whole of an idle
/// queue's create: the row's cells (`COLS` in order, then the tenant) as
/// the values of a plain `INSERT … VALUES`, its lease columns set when its
/// lease is (the insert grants it). The same statement as `INSERT … SELECT
/// … FROM v` counts as a write of many rows, and the foreign key to
/// `tenants` makes it one that may abort, so SQLite kept a statement
/// journal for it: about a tenth of the writer's work on a lone create
/// (performance.md, finding 69). `?n` is SQLite's parameter n.
const LONE_INSERT: &str = "INSERT INTO tasks (tenant_id, id, title, goal, acceptance, labels, \
     priority, status, held, parent_id, depends_on, pending_deps, max_attempts, lease_ttl_s, \
     idem_key, idem_hash, attempts, lease_token, lease_worker, lease_attempt, lease_started_at, \
     lease_ttl_ms, lease_expires_at, created_at, updated_at) \
     VALUES (?16, ?1, ?2, ?3, ?4, ?5, ?6, CASE WHEN ?12 IS NOT NULL THEN 'running' ELSE ?7 END, \
     ?8, NULL, '[]', 0, ?9, ?10, NULL, NULL, CASE WHEN ?12 IS NOT NULL THEN 1 ELSE 0 END, \
     ?12, ?13, CASE WHEN ?12 IS NOT NULL THEN 1 END, ?15, ?14, ?15 + ?14, ?11, COALESCE(?15, ?11))";

/// The events a create group's insert writes itself (PostgreSQL, see
/// `create_many`): every event of the batch not yet written, numbered from
/// the log's last; the last of them are the leases the insert may grant.
struct InlineLog {
    rows: Rows,
    /// How many of `rows` are written whatever `g.ok` says: all but the
    /// leases.
    unconditional: i64,
    /// Where the leases' events start in the batch's events.
    leases: tasks::EventsMark,
}

/// Parked claims served by the insert that creates their tasks, the
/// commonest path of an idle queue: a worker waits, a task arrives. A
/// claim's own look after the insert would cost a statement, and a second
/// write of each row with its indexes, for an answer known in advance.
///
/// Known only when nothing else is claimable: the handover plans for the
/// group's ready tasks when none has labels (a labelled one may rank
/// first for some claims and not for others), ranks them as the queue
/// does, and takes parked claims oldest first, each up to its `max`, as
/// [`Wakeups::take`](crate::Wakeups) would for them after the insert. Not
/// when the batch holds claims of the tenant: those are served first, and
/// parked ones get what they leave. The
/// insert then leases the planned rows only if no other task of the tenant
/// is ready and due and no lease has expired (`g.ok`), a test made on
/// the state it writes under, while the tenant is locked: inside the
/// insert on PostgreSQL, by the statement just before it on SQLite's one
/// writer connection. If the
/// test fails, every row goes in ready and the claims are given back at
/// once, to be served after the writes like any other parked claim.
struct Handover {
    /// The claims taken, in the order they were parked.
    taken: Vec<crate::wake::Taken>,
    /// Per row of the group: the lease planned for it.
    leases: Vec<Option<Planned>>,
    /// The rows with a planned lease, in the queue's order: the order
    /// their claims get them and the log records their leases.
    order: Vec<usize>,
    /// Where the taken claims start in `ctx.parked`.
    first: usize,
}

/// A lease the insert grants if it may.
struct Planned {
    /// Index in [`Handover::taken`].
    claim: usize,
    token: String,
    ttl_ms: i64,
}

/// A row of a create group: its id, its transition, its spec and its time.
type Made<'a> = (Uuid, aruntime_core::Transition, &'a NewTask, Timestamp);

impl Handover {
    fn plan(ctx: &mut WriteCtx, tenant: &str, made: &[Made<'_>]) -> Handover {
        let mut h = Handover {
            taken: vec![],
            leases: made.iter().map(|_| None).collect(),
            order: vec![],
            first: ctx.parked.len(),
        };
        let ready: Vec<usize> = (0..made.len())
            .filter(|&k| made[k].1.to == TaskStatus::Ready)
            .collect();
        if ready.is_empty()
            || ready.iter().any(|&k| !made[k].2.labels.is_empty())
            || ctx.claiming.iter().any(|t| t == tenant)
        {
            return h;
        }
        h.taken = ctx.wakeups.take(
            tenant,
            u32::try_from(ready.len()).unwrap_or(u32::MAX),
            false,
        );
        if h.taken.is_empty() {
            return h;
        }
        // Recorded before anything runs: however the batch ends, each
        // taken claim is settled, so none waits for an answer forever.
        ctx.parked
            .extend(h.taken.iter().map(|t| (tenant.to_owned(), t.id, None)));
        let mut order = ready;
        // The queue's order: priority, then creation time, then id.
        order.sort_by_key(|&k| {
            (
                std::cmp::Reverse(made[k].2.priority),
                made[k].3.0,
                made[k].0,
            )
        });
        let mut order = order.into_iter();
        for (c, claim) in h.taken.iter().enumerate() {
            let secret = leases::new_token();
            for k in order.by_ref().take(claim.params.max as usize) {
                let ttl_s = claim.params.ttl_s.unwrap_or(made[k].2.lease_ttl_s);
                h.leases[k] = Some(Planned {
                    claim: c,
                    token: leases::lease_token(&secret, &made[k].0.to_string()),
                    ttl_ms: i64::from(ttl_s) * 1000,
                });
                h.order.push(k);
            }
        }
        h
    }

    /// `g.ok`, true when nothing of `tenant` but the group's rows would
    /// be offered to a claim looking at `now`: no other task is ready and
    /// due, no lease has expired.
    fn clear_sql(t1: &str, now1: &str, t2: &str, now2: &str) -> String {
        format!(
            "NOT EXISTS (SELECT 1 FROM tasks{by_claim} WHERE tenant_id = {t1} \
             AND status = 'ready' AND not_before <= {now1}) \
             AND NOT EXISTS (SELECT 1 FROM tasks WHERE tenant_id = {t2} AND status = 'running' \
             AND lease_expires_at <= {now2})",
            by_claim = dialect::BY_CLAIM_INDEX,
        )
    }

    /// Asks `g.ok` by a statement of its own, before the insert.
    async fn queue_is_clear(&self, ctx: &mut WriteCtx, tenant: &str) -> Result<bool> {
        // One text for every create that serves a parked claim: built once.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            let p = |n| dialect::param(n);
            format!(
                "SELECT {} AS ok",
                Handover::clear_sql(&p(1), &p(2), &p(3), &p(4))
            )
        });
        let asked = self.asked().0;
        let rows = dialect::fetch(
            ctx,
            SQL.as_str(),
            vec![tenant.into(), asked.into(), tenant.into(), asked.into()],
        )
        .await?;
        match rows.first() {
            Some(r) => r.col("ok"),
            None => Ok(false),
        }
    }

    fn lease_of(&self, k: usize) -> Option<&Planned> {
        self.leases.get(k).and_then(Option::as_ref)
    }

    /// The time the insert tests due tasks and expired leases against:
    /// the earliest of the claims' (see [`earliest`]).
    fn asked(&self) -> Timestamp {
        Timestamp(self.taken.iter().map(|t| t.now.0).min().unwrap_or(0))
    }

    /// Parks the taken claims again, at once: this group grants them
    /// nothing, and a later step of the batch may.
    fn give_back(&self, ctx: &mut WriteCtx) {
        if self.taken.is_empty() {
            return;
        }
        for (tenant, id, _) in ctx.parked.drain(self.first..) {
            ctx.wakeups.settle(&tenant, id, None);
        }
    }

    /// Logs the leases the insert grants (each planned one, or those in
    /// `leased`) after the creations, in the queue's order, as a claim's
    /// own statement would; returns how many.
    fn log_leases(
        &self,
        ctx: &mut WriteCtx,
        tenant: &str,
        made: &[Made<'_>],
        leased: Option<&HashSet<Uuid>>,
    ) -> Result<usize> {
        let t = transition(Some(TaskStatus::Ready), Command::Lease)?;
        let mut logged = Vec::with_capacity(self.order.len());
        for &k in &self.order {
            let (Some(plan), (id, ..)) = (&self.leases[k], &made[k]) else {
                continue;
            };
            if leased.is_some_and(|l| !l.contains(id)) {
                continue;
            }
            let claim = &self.taken[plan.claim];
            let data = LeasedData {
                attempt: 1,
                expires_at: Timestamp(claim.now.0 + plan.ttl_ms),
                worker: &claim.params.worker,
            };
            logged.push((Some(*id), t.event, to_json(&data)));
        }
        let n = logged.len();
        // A group's events carry one time: the latest of its claims'.
        let at = Timestamp(self.taken.iter().map(|t| t.now.0).max().unwrap_or(0));
        events(ctx, tenant, logged, at);
        Ok(n)
    }

    /// Answers each taken claim with what the insert leased it, and with
    /// `log` logs the leases ([`log_leases`](Self::log_leases)).
    fn settle(
        self,
        ctx: &mut WriteCtx,
        tenant: &str,
        made: &[Made<'_>],
        leased: &HashSet<Uuid>,
        log: bool,
    ) -> Result<()> {
        if self.taken.is_empty() {
            return Ok(());
        }
        if leased.is_empty() {
            self.give_back(ctx);
            return Ok(());
        }
        let t = transition(Some(TaskStatus::Ready), Command::Lease)?;
        if log {
            self.log_leases(ctx, tenant, made, Some(leased))?;
        }
        let mut outs: Vec<ClaimOutcome> =
            self.taken.iter().map(|_| ClaimOutcome::default()).collect();
        for &k in &self.order {
            let (Some(plan), (id, _, spec, now)) = (&self.leases[k], &made[k]) else {
                continue;
            };
            // Inserted ready: the insert found the queue not clear.
            if !leased.contains(id) {
                continue;
            }
            let claim = &self.taken[plan.claim];
            let at = claim.now;
            let expires_at = Timestamp(at.0 + plan.ttl_ms);
            let mut task = created(*id, spec, t.to, *now);
            task.attempts = 1;
            task.updated_at = at;
            task.lease = Some(aruntime_core::LeaseInfo {
                worker: claim.params.worker.clone(),
                attempt: 1,
                expires_at,
            });
            outs[plan.claim].granted.push(Claimed {
                lease: plan.token.clone(),
                attempt: 1,
                expires_at,
                task,
            });
        }
        for (slot, out) in ctx.parked[self.first..].iter_mut().zip(outs) {
            slot.2 = Some(out);
        }
        Ok(())
    }
}

/// The task `create_many` inserted for `spec`, as a read would return it.
fn created(id: Uuid, spec: &NewTask, status: TaskStatus, now: Timestamp) -> Task {
    Task {
        id,
        title: spec.title.clone(),
        goal: spec.goal.clone(),
        acceptance: spec.acceptance.clone(),
        labels: spec.labels.clone(),
        priority: spec.priority,
        status,
        held: spec.hold,
        parent_id: None,
        depends_on: vec![],
        pending_dependencies: 0,
        max_attempts: spec.max_attempts,
        failed_attempts: 0,
        attempts: 0,
        lease_ttl_s: spec.lease_ttl_s,
        not_before: None,
        lease: None,
        result: None,
        error: None,
        blocked_reason: None,
        do_not_retry: vec![],
        checkpoint_seq: 0,
        decision_count: 0,
        created_at: now,
        updated_at: now,
    }
}

/// Completes, in one statement for the group, every task whose lease
/// matches, closes their attempts, logs them and releases their dependents.
/// Where the dialect allows writes in `WITH` (PostgreSQL), the lease check,
/// the update and the attempts' close are one statement; elsewhere the
/// leases are read first and the attempts closed after (SQLite ran the
/// check inside the `UPDATE` slower than apart: performance.md, finding 19).
pub(crate) async fn complete_many(
    ctx: &mut WriteCtx,
    tenant: &str,
    items: &[&Pending],
) -> Result<Vec<Option<Result<Answer>>>> {
    let t = transition(Some(TaskStatus::Running), Command::Complete)?;
    // One statement for the group, so whole tasks for all if one asks.
    let whole = items
        .iter()
        .any(|p| matches!(p.op, Grouped::Complete { whole: true, .. }));
    let now = latest(items);
    let (returned, winners, logged_in_sql) = if dialect::WRITES_IN_WITH {
        complete_checked_in_sql(ctx, tenant, items, t.to, t.event, now, whole).await?
    } else {
        complete_after_lease_read(ctx, tenant, items, t.to, whole).await?
    };
    const CLOSED: &[(&str, Kind)] = &[
        ("v_id", Kind::Text),
        ("v_n", Kind::Int),
        ("v_worker", Kind::Text),
        ("v_started", Kind::Int),
        ("v_now", Kind::Int),
    ];
    let mut out: Vec<Option<Result<Answer>>> = items.iter().map(|_| None).collect();
    let mut closing = Rows::new(CLOSED).read_once();
    let mut logged = Vec::with_capacity(returned.len());
    let mut released = Vec::with_capacity(returned.len());
    for row in &returned {
        let (id, answer) = if whole {
            let task = rows::task(row)?;
            (task.id, Answer::Task(Box::new(task)))
        } else {
            (rows::uuid(row, "id")?, Answer::Completed)
        };
        let Some(&i) = winners.get(&id) else {
            continue;
        };
        // A running task's `attempts` is its lease's attempt number.
        let n: i64 = row.col("attempts")?;
        // With writes in `WITH`, `update_done` wrote them. The lease's
        // worker and start outlive it in the row (`CLEAR_LEASE`).
        if !dialect::WRITES_IN_WITH {
            let now = items[i].now.0;
            let worker: Option<String> = row.col("lease_worker")?;
            let started: Option<i64> = row.col("lease_started_at")?;
            closing.push([
                id.to_string().into(),
                n.into(),
                worker.unwrap_or_default().into(),
                started.unwrap_or(now).into(),
                now.into(),
            ]);
        }
        logged.push((i, (Some(id), t.event, to_json(&AttemptData { attempt: n }))));
        if row.col::<bool>("has_deps")? {
            released.push(id);
        }
        out[i] = Some(Ok(answer));
    }
    if !closing.is_empty() {
        let (with, mut p) = closing.with_clause();
        let sql = format!(
            "{with} INSERT{OR_FAIL} INTO attempts {ENDED_COLS} \
             SELECT {tenant}, v_id, v_n, v_worker, v_started, v_now, 'completed' FROM v WHERE v_id IS NOT NULL",
            tenant = p.next(),
        );
        dialect::fetch(ctx, sql, closing.args_then([tenant.into()])).await?;
    }
    // Logged in the order the writes arrived, unless the statement did.
    if !logged_in_sql {
        logged.sort_by_key(|(i, _)| *i);
        events(
            ctx,
            tenant,
            logged.into_iter().map(|(_, e)| e).collect(),
            now,
        );
    }
    release_dependents(ctx, tenant, &released, now).await?;
    Ok(out)
}

/// Writes, in a fixed number of statements for the group, every checkpoint
/// whose lease is live and whose artifacts are all known blobs, renews
/// those leases (a checkpoint is proof of life, like a heartbeat) and logs
/// them. The leases and the blobs are read first, as a completion group
/// reads its leases. Only the first checkpoint of a task in the group is
/// tried; any other, and any that fails a check, runs alone afterwards
/// (`leases::checkpoint`), which numbers it after this one or says why not.
pub(crate) async fn checkpoint_many(
    ctx: &mut WriteCtx,
    tenant: &str,
    items: &[&Pending],
) -> Result<Vec<Option<Result<Answer>>>> {
    let mut out: Vec<Option<Result<Answer>>> = items.iter().map(|_| None).collect();
    let writes: Vec<(usize, &CheckpointWrite, Timestamp)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.op {
            Grouped::Checkpoint(cp) => Some((i, cp, p.now)),
            Grouped::Create(_) | Grouped::Claim(_) | Grouped::Complete { .. } => None,
        })
        .collect();
    if writes.is_empty() {
        return Ok(out);
    }
    let ids: Vec<Uuid> = writes.iter().map(|(_, cp, _)| cp.id).collect();
    let sql = format!(
        "SELECT id, status, lease_token, lease_expires_at, lease_attempt, checkpoint_seq \
         FROM tasks WHERE tenant_id = $1 AND id {}{}",
        dialect::in_list("$2"),
        dialect::FOR_UPDATE
    );
    let leases = dialect::fetch(ctx, sql, vec![tenant.into(), to_json(&ids).into()]).await?;
    // Each running task's lease, attempt and last checkpoint number.
    let mut held: HashMap<Uuid, (String, Timestamp, i64, i64)> =
        HashMap::with_capacity(leases.len());
    for row in &leases {
        let token: Option<String> = row.col("lease_token")?;
        let expires: Option<i64> = row.col("lease_expires_at")?;
        let attempt: Option<i64> = row.col("lease_attempt")?;
        if let (TaskStatus::Running, Some(token), Some(expires), Some(attempt)) =
            (rows::status(row)?, token, expires, attempt)
        {
            let seq: i64 = row.col("checkpoint_seq")?;
            held.insert(
                rows::uuid(row, "id")?,
                (token, Timestamp(expires), attempt, seq),
            );
        }
    }
    let known = known_blobs(ctx, tenant, writes.iter().flat_map(|(_, cp, _)| &cp.blobs)).await?;
    const WRITTEN: &[(&str, Kind)] = &[
        ("v_id", Kind::Text),
        ("v_seq", Kind::Int),
        ("v_attempt", Kind::Int),
        ("v_summary", Kind::Text),
        ("v_state", Kind::Text),
        ("v_artifacts", Kind::Text),
        ("v_tests", Kind::Text),
        ("v_now", Kind::Int),
    ];
    const RENEWED: &[(&str, Kind)] = &[
        ("v_id", Kind::Text),
        ("v_seq", Kind::Int),
        ("v_now", Kind::Int),
    ];
    let (mut written, mut renewed) = (Rows::new(WRITTEN).read_once(), Rows::new(RENEWED));
    let mut logged = Vec::with_capacity(writes.len());
    let mut tried: HashSet<Uuid> = HashSet::with_capacity(writes.len());
    for (i, cp, now) in writes {
        if !tried.insert(cp.id) {
            continue;
        }
        let Some((token, expires, attempt, last)) = held.get(&cp.id) else {
            continue;
        };
        let known_blobs = cp
            .blobs
            .iter()
            .all(|s| known.contains(&s.to_ascii_lowercase()));
        if !known_blobs || !leases::lease_is_live(Some((token.as_str(), *expires)), &cp.lease, now)
        {
            continue;
        }
        let (seq, attempt) = (last + 1, *attempt);
        let id = cp.id.to_string();
        written.push([
            id.clone().into(),
            seq.into(),
            attempt.into(),
            cp.summary.as_str().into(),
            cp.state.clone().into(),
            cp.artifacts.as_str().into(),
            cp.test_results.clone().into(),
            now.0.into(),
        ]);
        renewed.push([id.into(), seq.into(), now.0.into()]);
        let attempt = u32::try_from(attempt)
            .map_err(|_| StoreError::Corrupt(format!("task {}: attempt {attempt}", cp.id)))?;
        let data = CheckpointData {
            attempt,
            seq,
            summary: &cp.summary,
        };
        logged.push((Some(cp.id), "checkpoint.created", to_json(&data)));
        out[i] = Some(Ok(Answer::Checkpointed { seq, attempt }));
    }
    if written.is_empty() {
        return Ok(out);
    }
    let (with, mut p) = written.with_clause();
    let sql = format!(
        "{with} INSERT{OR_FAIL} INTO checkpoints \
         (tenant_id, task_id, seq, attempt, summary, state, artifacts, test_results, created_at) \
         SELECT {tenant}, v_id, v_seq, v_attempt, v_summary, v_state, v_artifacts, v_tests, v_now \
         FROM v WHERE v_id IS NOT NULL",
        tenant = p.next(),
    );
    dialect::fetch(ctx, sql, written.args_then([tenant.into()])).await?;
    let (with, mut p) = renewed.with_clause();
    let sql = format!(
        "{with} UPDATE{OR_FAIL} tasks SET checkpoint_seq = v.v_seq, \
         lease_expires_at = v.v_now + tasks.lease_ttl_ms, updated_at = v.v_now \
         FROM v WHERE tasks.tenant_id = {tenant} AND tasks.id = v.v_id",
        tenant = p.next(),
    );
    dialect::fetch(ctx, sql, renewed.args_then([tenant.into()])).await?;
    events(ctx, tenant, logged, latest(items));
    Ok(out)
}

/// Which of `shas` (any case) name blobs of `tenant`, lower-cased as the
/// blobs table keeps them; one statement for all of them.
pub(crate) async fn known_blobs<'a>(
    ctx: &mut WriteCtx,
    tenant: &str,
    shas: impl IntoIterator<Item = &'a String>,
) -> Result<HashSet<String>> {
    let mut shas: Vec<String> = shas.into_iter().map(|s| s.to_ascii_lowercase()).collect();
    shas.sort_unstable();
    shas.dedup();
    let mut known = HashSet::with_capacity(shas.len());
    if shas.is_empty() {
        return Ok(known);
    }
    let sql = format!(
        "SELECT sha256 FROM blobs WHERE tenant_id = $1 AND sha256 {}",
        dialect::in_list("$2")
    );
    for row in dialect::fetch(ctx, sql, vec![tenant.into(), to_json(&shas).into()]).await? {
        known.insert(row.col("sha256")?);
    }
    Ok(known)
}

/// The columns of a completed attempt's row, inserted from a `SELECT`.
const ENDED_COLS: &str = "(tenant_id, task_id, n, worker, started_at, ended_at, outcome)";

/// Completed rows, for each completed task the item that completed it, and
/// whether the statement also logged the completions.
type Completed = (Vec<dialect::FastRow>, HashMap<Uuid, usize>, bool);

/// One statement: update the tasks whose lease is live and matches, write
/// those tasks' attempts, and log the completions after the events the
/// batch has recorded so far, which it writes too (one statement less
/// before COMMIT; `BatchEvents`). Only the first completion of a task in
/// the group is tried; any other runs alone afterwards, answered as then.
/// When the batch holds another tenant's unwritten events, or more than
/// one statement's worth, the completions are recorded as usual instead.
async fn complete_checked_in_sql(
    ctx: &mut WriteCtx,
    tenant: &str,
    items: &[&Pending],
    to: TaskStatus,
    event: &str,
    now: Timestamp,
    whole: bool,
) -> Result<Completed> {
    const DONE: &[(&str, Kind)] = &[
        ("v_id", Kind::Text),
        ("v_token", Kind::Text),
        ("v_result", Kind::Text),
        ("v_now", Kind::Int),
        ("v_ord", Kind::Int),
    ];
    let mut first: HashMap<Uuid, usize> = HashMap::with_capacity(items.len());
    let mut done = Rows::new(DONE);
    for (i, p) in items.iter().enumerate() {
        let Grouped::Complete {
            id, token, result, ..
        } = &p.op
        else {
            continue;
        };
        if first.contains_key(id) {
            continue;
        }
        first.insert(*id, i);
        done.push([
            id.to_string().into(),
            token.as_str().into(),
            json_text(result).into(),
            p.now.0.into(),
            (i as i64).into(),
        ]);
    }
    if done.is_empty() {
        return Ok((vec![], first, false));
    }
    let log = ctx.events.unwritten_rows_of(tenant).map(|earlier| Log {
        earlier,
        event,
        at: now,
    });
    let logged = log.is_some();
    let returned = update_done(ctx, tenant, done, to, whole, log).await?;
    if logged {
        ctx.events.all_written();
    }
    Ok((returned, first, logged))
}

/// What a completion statement logs (PostgreSQL): the batch's unwritten
/// events, then a `event` for each completion (`{"attempt": n}`, as
/// `complete_many` records it), at `at`.
struct Log<'a> {
    earlier: Rows,
    event: &'a str,
    at: Timestamp,
}

/// Reads every lease in one statement, then completes the tasks whose
/// lease matches: SQLite's path (no writes in `WITH`). Each task completes
/// at most once here: the first matching write of it wins; any other runs
/// alone afterwards.
///
/// The lease read also brings what the completion needs of the row (the
/// attempt, the lease's worker and start, whether anything depends on the
/// task), none of which the update changes; each task is then updated by
/// its key, and a whole answer is read back by key. None of these
/// statements opens a temporary B-tree, where one `UPDATE … FROM v …
/// RETURNING` opened three and a lease read through `IN (…)` one more
/// (`AVOID_TEMP_TABLES`; performance.md, finding 66).
async fn complete_after_lease_read(
    ctx: &mut WriteCtx,
    tenant: &str,
    items: &[&Pending],
    to: TaskStatus,
    whole: bool,
) -> Result<Completed> {
    let mut ids: Vec<Uuid> = items
        .iter()
        .filter_map(|p| match &p.op {
            Grouped::Complete { id, .. } => Some(*id),
            Grouped::Create(_) | Grouped::Claim(_) | Grouped::Checkpoint(_) => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // This function's texts depend on nothing but constants: each is
    // built once, not on every batch (formatting statement texts was a
    // tenth of the writer's instructions on an idle queue's path).
    static LEASE_READ_COLS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "id, status, lease_token, lease_expires_at, attempts, lease_worker, lease_started_at, {}",
            has_deps("tasks.tenant_id", "tasks")
        )
    });
    static WHOLE_COLS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "{TASK_COLS}, lease_started_at, {}",
            has_deps("tasks.tenant_id", "tasks")
        )
    });
    static BY_KEY: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE{OR_FAIL} tasks SET status = $1, result = $2, error = NULL, {CLEAR_LEASE}, \
             updated_at = $3 WHERE tenant_id = $4 AND id = $5"
        )
    });
    let cols = if whole {
        "id, status, lease_token, lease_expires_at"
    } else {
        LEASE_READ_COLS.as_str()
    };
    let leases = rows_by_id(ctx, tenant, cols, &ids).await?;
    let mut held: HashMap<Uuid, (String, Timestamp)> = HashMap::with_capacity(leases.len());
    for row in &leases {
        let token: Option<String> = row.col("lease_token")?;
        let expires: Option<i64> = row.col("lease_expires_at")?;
        if let (TaskStatus::Running, Some(token), Some(expires)) =
            (rows::status(row)?, token, expires)
        {
            held.insert(rows::uuid(row, "id")?, (token, Timestamp(expires)));
        }
    }
    let mut winners: HashMap<Uuid, usize> = HashMap::with_capacity(items.len());
    for (i, p) in items.iter().enumerate() {
        let Grouped::Complete {
            id, token, result, ..
        } = &p.op
        else {
            continue;
        };
        let lease = held.get(id).map(|(t, expires)| (t.as_str(), *expires));
        if !leases::lease_is_live(lease, token, p.now) || winners.contains_key(id) {
            continue;
        }
        winners.insert(*id, i);
        let args = vec![
            to.as_str().into(),
            json_text(result).into(),
            p.now.0.into(),
            tenant.into(),
            id.to_string().into(),
        ];
        dialect::fetch(ctx, BY_KEY.as_str(), args).await?;
    }
    if winners.is_empty() {
        return Ok((vec![], winners, false));
    }
    let returned = if whole {
        let ids: Vec<Uuid> = winners.keys().copied().collect();
        rows_by_id(ctx, tenant, &WHOLE_COLS, &ids).await?
    } else {
        // The lease read is the row as updated, in every column the
        // completion reads.
        let mut kept = Vec::with_capacity(winners.len());
        for row in leases {
            if winners.contains_key(&rows::uuid(&row, "id")?) {
                kept.push(row);
            }
        }
        kept
    };
    Ok((returned, winners, false))
}

/// Whether another task depends on task `task` (a row's alias) of
/// `tenant`, as the column `has_deps`: most tasks have none, and a
/// completion that asks in the statement it already makes skips a lookup
/// of its own (a round trip per completion group on PostgreSQL).
fn has_deps(tenant: &str, task: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM task_deps d WHERE d.tenant_id = {tenant} \
         AND d.depends_on = {task}.id) AS has_deps"
    )
}

/// `cols` of the tenant's tasks in `ids` (no repeats), in one statement by
/// primary key, for SQLite's writer: the ids drive the loop from the JSON
/// array, which opens no temporary B-tree as `IN (…)` does; a lone id is a
/// plain key. The tasks come in no particular order.
async fn rows_by_id<I: ToString + serde::Serialize>(
    ctx: &mut WriteCtx,
    tenant: &str,
    cols: &str,
    ids: &[I],
) -> Result<Vec<dialect::FastRow>> {
    let (sql, ids) = match ids {
        [id] => (
            format!("SELECT {cols} FROM tasks WHERE tenant_id = $1 AND id = $2"),
            id.to_string().into(),
        ),
        // The ids under a name of their own: `json_each` has an `id`
        // column too.
        _ => (
            format!(
                "SELECT {cols} FROM (SELECT value AS k FROM {}) AS j \
                 CROSS JOIN tasks WHERE tasks.tenant_id = $1 AND tasks.id = j.k",
                dialect::json_values("$2", "a")
            ),
            to_json(&ids).into(),
        ),
    };
    dialect::fetch(ctx, sql, vec![tenant.into(), ids]).await
}

/// Completes the tasks in `done` (`v_id`, `v_token`, `v_result`, `v_now`,
/// `v_ord`) in one statement with writes in `WITH` (PostgreSQL) and
/// returns their rows (`whole`, or only `id` and `attempts`), each with
/// `has_deps`: whether another task depends on it. The statement also
/// checks each lease (the same test as `leases::lease_is_live`, row by
/// row), writes the completed tasks' attempts, and with `log` writes the
/// events it holds.
async fn update_done(
    ctx: &mut WriteCtx,
    tenant: &str,
    done: Rows,
    to: TaskStatus,
    whole: bool,
    log: Option<Log<'_>>,
) -> Result<Vec<dialect::FastRow>> {
    // The lease's worker and start, for the attempt's row.
    let cols = if whole {
        format!("{TASK_COLS}, lease_started_at")
    } else {
        "id, attempts, updated_at, lease_worker, lease_started_at".to_owned()
    };
    let (with, mut p) = done.with_clause();
    let (status, tenant_p) = (p.next(), p.next());
    let set = format!(
        "UPDATE{OR_FAIL} tasks SET status = {status}, result = v.v_result, error = NULL, {CLEAR_LEASE}, \
         updated_at = v.v_now FROM v WHERE tasks.tenant_id = {tenant_p} AND tasks.id = v.v_id"
    );
    let mut args = done.args_then([to.as_str().into(), tenant.into()]);
    // The batch's earlier events first, then one per completion in the
    // order the writes arrived, numbered from the log's last (the writer
    // holds the tenant's lock; see `tasks::flush_events`).
    let logging = match log {
        None => String::new(),
        Some(Log { earlier, event, at }) => {
            let k = earlier.len() as i64;
            let e = earlier.cte("e", &mut p);
            let (k_p, event_p, at_p) = (p.next(), p.next(), p.next());
            args.extend(earlier.into_args());
            args.extend([k.into(), event.into(), at.0.into()]);
            format!(
                "{e}, last AS (SELECT {} AS seq), \
                 earlier AS (INSERT {INTO_EVENTS} \
                 SELECT {tenant_p}, last.seq + e.v_ord, e.v_task, e.v_kind, e.v_data, e.v_at \
                 FROM e CROSS JOIN last WHERE e.v_ord IS NOT NULL), \
                 logged AS (INSERT {INTO_EVENTS} \
                 SELECT {tenant_p}, last.seq + {k_p} + row_number() OVER (ORDER BY v.v_ord), \
                 done.id, {event_p}, '{{\"attempt\":' || done.attempts || '}}', {at_p} \
                 FROM done JOIN v ON v.v_id = done.id CROSS JOIN last), ",
                tasks::last_event_seq_sql(&tenant_p),
            )
        }
    };
    let sql = format!(
        "{with}, done AS ({set} AND tasks.status = 'running' AND tasks.lease_token = v.v_token \
         AND tasks.lease_expires_at > v.v_now RETURNING {cols}), \
         {logging}closed AS (INSERT INTO attempts {ENDED_COLS} SELECT {tenant_p}, done.id, done.attempts, \
         COALESCE(done.lease_worker, ''), COALESCE(done.lease_started_at, done.updated_at), \
         done.updated_at, 'completed' FROM done) \
         SELECT done.*, {} FROM done",
        has_deps(&tenant_p, "done")
    );
    dialect::fetch(ctx, sql, args).await
}

/// What a group's first look at the queue learned about time.
#[derive(Clone, Copy, Default)]
struct Timing {
    /// The earliest lease of the tenant to expire, expired or not.
    expiry: Option<i64>,
    /// The earliest backoff of the tenant to end after the look.
    backoff: Option<i64>,
}

impl Timing {
    /// Whether some lease has expired at `now`.
    fn expired(&self, now: Timestamp) -> bool {
        self.expiry.is_some_and(|t| t <= now.0)
    }

    /// [`Store::next_due`](crate::Store::next_due) at the look's time.
    fn next_due(&self) -> Option<Timestamp> {
        self.expiry
            .into_iter()
            .chain(self.backoff)
            .min()
            .map(Timestamp)
    }
}

/// The tasks a claim would be offered, best first, and (with
/// `ask_time`) when the tenant's next lease expires and its next backoff
/// ends: in the same statement, since every claim group needs to know
/// whether a lease has expired, and a claim that finds nothing needs the
/// rest to know how long to wait.
async fn look(
    ctx: &mut WriteCtx,
    tenant: &str,
    now: Timestamp,
    caps: &[String],
    want: usize,
    ask_time: bool,
) -> Result<(Vec<String>, Option<Timing>)> {
    let mut sql = format!(
        "SELECT id, priority, created_at, 0 AS kind FROM ({}) AS r",
        leases::claim_sql()
    );
    if ask_time {
        sql.push_str(&format!(
            " UNION ALL SELECT NULL, 0, {}, 1 UNION ALL SELECT NULL, 0, {}, 2",
            leases::next_expiry_sql("$1"),
            leases::next_backoff_sql("$1", "$2"),
        ));
    }
    let args = vec![
        tenant.into(),
        now.0.into(),
        to_json(&caps).into(),
        (want as i64).into(),
    ];
    let rows = dialect::fetch(ctx, sql, args).await?;
    let mut timing = Timing::default();
    let mut offered = Vec::with_capacity(rows.len());
    for row in &rows {
        let kind: i32 = row.col("kind")?;
        let at: Option<i64> = row.col("created_at")?;
        match kind {
            0 => {
                let priority: i32 = row.col("priority")?;
                let id: String = row.col("id")?;
                offered.push((std::cmp::Reverse(priority), at.unwrap_or(0), id));
            }
            1 => timing.expiry = at,
            _ => timing.backoff = at,
        }
    }
    // The claim statement's order, which a union does not promise to keep.
    offered.sort_unstable();
    Ok((
        offered.into_iter().map(|(_, _, id)| id).collect(),
        ask_time.then_some(timing),
    ))
}

/// Claims of one capability set, in arrival order, each with its item's
/// index in the group.
type Claims<'a> = [(usize, &'a ClaimParams)];

/// The claims of a group by capability set (sorted and deduplicated).
type ByCaps<'a> = Vec<(Vec<String>, Vec<(usize, &'a ClaimParams)>)>;

/// A lease a claim group granted: the claiming item's index, the lease
/// token and the task, in the order the queue offered the tasks.
type Grant = (usize, String, Task);

/// Records expired leases once, then serves the claims in arrival order:
/// claims with the same capabilities share one look at the queue and the
/// statements that lease, and the group one for events.
pub(crate) async fn claim_many(
    ctx: &mut WriteCtx,
    tenant: &str,
    items: &[&Pending],
) -> Result<Vec<ClaimOutcome>> {
    let mut out: Vec<ClaimOutcome> = items.iter().map(|_| ClaimOutcome::default()).collect();
    let asked = earliest(items);
    // Claims by capability set, each set in arrival order.
    let mut by_caps: ByCaps = vec![];
    for (i, p) in items.iter().enumerate() {
        let Grouped::Claim(c) = &p.op else {
            continue;
        };
        let mut caps = c.capabilities.clone();
        caps.sort_unstable();
        caps.dedup();
        match by_caps.iter_mut().find(|(k, _)| *k == caps) {
            Some((_, v)) => v.push((i, c)),
            None => by_caps.push((caps, vec![(i, c)])),
        }
    }
    let t = transition(Some(TaskStatus::Ready), Command::Lease)?;
    let mut logged = vec![];
    for (k, (caps, claims)) in by_caps.into_iter().enumerate() {
        let set = ClaimSet {
            caps: &caps,
            claims: &claims,
            asked,
            to: t.to,
        };
        // Expired leases are recorded before anything is offered. Whether
        // there are any is asked by the group's first lease statement (one
        // statement less on every claim), which then leases nothing; only
        // if there are does the group record them and lease again.
        let (mut grants, timing) = lease(ctx, tenant, items, &set, k == 0).await?;
        if let Some(timing) = timing {
            if timing.expired(asked) {
                let expired = leases::expire_due_in(ctx, tenant, asked).await?;
                if let Some(first) = out.first_mut() {
                    first.expired = expired;
                }
                grants = lease(ctx, tenant, items, &set, false).await?.0;
            } else {
                // Nothing expired, so nothing this group does changes when
                // the next lease expires or backoff ends; a claim that takes
                // nothing waits until then.
                for o in out.iter_mut() {
                    o.next_due = Some(timing.next_due());
                }
            }
        }
        for (i, token, task) in grants {
            let Some(lease) = task.lease.as_ref() else {
                return Err(StoreError::Corrupt(format!(
                    "leased task {} has no lease",
                    task.id
                )));
            };
            let (attempt, expires_at) = (lease.attempt, lease.expires_at);
            let data = LeasedData {
                attempt,
                expires_at,
                worker: &lease.worker,
            };
            logged.push((Some(task.id), t.event, to_json(&data)));
            out[i].granted.push(Claimed {
                lease: token,
                attempt,
                expires_at,
                task,
            });
        }
    }
    // Leases granted here expire too: a claim left empty must wake for
    // them as well (the look that timed it ran before they existed).
    let soonest = out
        .iter()
        .flat_map(|o| o.granted.iter().map(|c| c.expires_at))
        .min();
    if let Some(soonest) = soonest {
        for o in out.iter_mut() {
            if let Some(due) = o.next_due.as_mut() {
                *due = Some(due.map_or(soonest, |d| d.min(soonest)));
            }
        }
    }
    events(ctx, tenant, logged, latest(items));
    Ok(out)
}

/// The `SET` of a lease, each part an SQL expression: `status` the leased
/// status, `token` the lease token, `worker`, `ttl` (ms, or NULL for the
/// task's own) and `now`.
fn lease_set(status: &str, token: &str, worker: &str, ttl: &str, now: &str) -> String {
    format!(
        "status = {status}, attempts = attempts + 1, lease_token = {token}, \
         lease_worker = {worker}, lease_attempt = attempts + 1, lease_started_at = {now}, \
         lease_ttl_ms = COALESCE({ttl}, lease_ttl_s * 1000), \
         lease_expires_at = {now} + COALESCE({ttl}, lease_ttl_s * 1000), \
         not_before = 0, updated_at = {now}"
    )
}

/// What one capability set's claims lease with.
struct ClaimSet<'a> {
    caps: &'a [String],
    claims: &'a Claims<'a>,
    /// The group's time for due checks (see [`earliest`]).
    asked: Timestamp,
    /// A leased task's status.
    to: TaskStatus,
}

impl ClaimSet<'_> {
    /// How many tasks the set asks for: one statement's worth at most;
    /// claims beyond it find the rest next time.
    fn want(&self) -> usize {
        self.claims
            .iter()
            .map(|(_, c)| c.max as usize)
            .sum::<usize>()
            .min(MAX_ROWS)
    }
}

/// Leases tasks to `set`'s claims and, with `ask_time`, says when the
/// tenant's next lease expires and its next backoff ends, as of before
/// the leases. When a lease has expired (and `ask_time`), it leases
/// nothing: expired leases are recorded first, and the caller leases again.
///
/// A lease starts an attempt, but writes no attempt row: until it ends,
/// the attempt is the task's lease (`leases::close_attempt`).
///
/// Where the dialect allows writes in `WITH` (PostgreSQL), the look at the
/// queue and the leases are one statement;
/// elsewhere the look comes first (SQLite has no writes in `WITH`, and
/// there a statement is a function call, not a round trip).
async fn lease(
    ctx: &mut WriteCtx,
    tenant: &str,
    items: &[&Pending],
    set: &ClaimSet<'_>,
    ask_time: bool,
) -> Result<(Vec<Grant>, Option<Timing>)> {
    if dialect::WRITES_IN_WITH {
        lease_at_once(ctx, tenant, items, set, ask_time).await
    } else {
        lease_after_look(ctx, tenant, items, set, ask_time).await
    }
}

/// [`lease`] in one statement: the claim statement (`leases::claim_sql_at`)
/// numbers the tasks it offers in order, and each claim takes the numbers
/// in its range (the claims' `max`es laid end to end, in arrival order).
/// Each token is its claim's secret followed by the task id
/// (`leases::lease_token`), built by the statement.
async fn lease_at_once(
    ctx: &mut WriteCtx,
    tenant: &str,
    items: &[&Pending],
    set: &ClaimSet<'_>,
    ask_time: bool,
) -> Result<(Vec<Grant>, Option<Timing>)> {
    const CLAIMING: &[(&str, Kind)] = &[
        ("v_lo", Kind::Int),
        ("v_hi", Kind::Int),
        ("v_secret", Kind::Text),
        ("v_worker", Kind::Text),
        ("v_ttl", Kind::Int),
        ("v_now", Kind::Int),
    ];
    let mut claiming = Rows::new(CLAIMING);
    // (item, first rank, last rank, secret)
    let mut ranges: Vec<(usize, i64, i64, String)> = Vec::with_capacity(set.claims.len());
    let mut lo = 0i64;
    for (i, c) in set.claims {
        let hi = lo + i64::from(c.max);
        let secret = leases::new_token();
        claiming.push([
            lo.into(),
            hi.into(),
            secret.as_str().into(),
            c.worker.as_str().into(),
            c.ttl_s.map(|s| i64::from(s) * 1000).into(),
            items[*i].now.0.into(),
        ]);
        ranges.push((*i, lo, hi, secret));
        lo = hi;
    }
    let (with, mut p) = claiming.with_clause();
    let (t, now, caps, want, status) = (p.next(), p.next(), p.next(), p.next(), p.next());
    // With `ask_time`, no lease may have expired: the same test the
    // timing's `expiry` answers, in the same snapshot.
    let guard = if ask_time {
        format!(
            " AND NOT EXISTS (SELECT 1 FROM tasks x WHERE x.tenant_id = {t} \
             AND x.status = 'running' AND x.lease_expires_at <= {now})"
        )
    } else {
        String::new()
    };
    let pick = leases::claim_sql_at([&t, &now, &caps, &want], &guard);
    let mut sql = format!(
        "{with}, pick AS (SELECT id AS p_id, \
         row_number() OVER (ORDER BY priority DESC, created_at, id) AS p_rank FROM ({pick}) AS r), \
         leased AS (UPDATE tasks SET {set} \
         FROM pick JOIN v ON pick.p_rank > v.v_lo AND pick.p_rank <= v.v_hi \
         WHERE tasks.tenant_id = {t} AND tasks.id = pick.p_id RETURNING {TASK_COLS}, pick.p_rank) ",
        set = lease_set(
            &status,
            "v.v_secret || tasks.id",
            "v.v_worker",
            "v.v_ttl",
            "v.v_now"
        ),
    );
    if ask_time {
        // One row even when nothing is leased, for the timing. Both read
        // the snapshot from before the leases, as a look before them would.
        sql.push_str(&format!(
            "SELECT leased.*, tm.expiry, tm.backoff FROM (SELECT {} AS expiry, {} AS backoff) AS tm \
             LEFT JOIN leased ON true",
            leases::next_expiry_sql(&t),
            leases::next_backoff_sql(&t, &now),
        ));
    } else {
        sql.push_str("SELECT * FROM leased");
    }
    let args = claiming.args_then([
        tenant.into(),
        set.asked.0.into(),
        to_json(&set.caps).into(),
        (set.want() as i64).into(),
        set.to.as_str().into(),
    ]);
    let rows = dialect::fetch(ctx, sql, args).await?;
    let mut timing = None;
    let mut grants: Vec<(i64, Grant)> = Vec::with_capacity(rows.len());
    for row in &rows {
        if ask_time {
            timing = Some(Timing {
                expiry: row.col("expiry")?,
                backoff: row.col("backoff")?,
            });
        }
        let Some(rank) = row.col::<Option<i64>>("p_rank")? else {
            continue;
        };
        let Some((i, _, _, secret)) = ranges
            .iter()
            .find(|(_, lo, hi, _)| *lo < rank && rank <= *hi)
        else {
            return Err(StoreError::Corrupt(format!(
                "a lease ranked {rank} fits no claim"
            )));
        };
        let task = rows::task(row)?;
        let token = leases::lease_token(secret, &task.id.to_string());
        grants.push((rank, (*i, token, task)));
    }
    grants.sort_unstable_by_key(|(rank, _)| *rank);
    Ok((grants.into_iter().map(|(_, g)| g).collect(), timing))
}

/// [`lease`] as a look at the queue, then the leases: SQLite's path.
async fn lease_after_look(
    ctx: &mut WriteCtx,
    tenant: &str,
    items: &[&Pending],
    set: &ClaimSet<'_>,
    ask_time: bool,
) -> Result<(Vec<Grant>, Option<Timing>)> {
    let (offered, timing) = look(ctx, tenant, set.asked, set.caps, set.want(), ask_time).await?;
    if offered.is_empty() || timing.is_some_and(|t| t.expired(set.asked)) {
        return Ok((vec![], timing));
    }
    // (task, item, token), in the order the queue offered the tasks. Each
    // task's token is its claim's secret followed by the task id
    // (`leases::lease_token`): tokens differ per task and per attempt
    // without a random draw each, and name their task.
    let mut assigned: Vec<(String, usize, String)> = vec![];
    let mut offered = offered.into_iter();
    // Each task is leased by its key and the leased rows are read back by
    // key: one `UPDATE … FROM v … RETURNING` for all opened three
    // temporary B-trees (`AVOID_TEMP_TABLES`; performance.md, finding 66).
    // The look read these tasks ready in this transaction, on the one
    // writer connection, so each update finds its row.
    // Built once: it depends on nothing but constants.
    static BY_KEY: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE{OR_FAIL} tasks SET {} WHERE tenant_id = $6 AND id = $7",
            lease_set("$1", "$2", "$3", "$4", "$5"),
        )
    });
    for (i, c) in set.claims {
        let secret = leases::new_token();
        for id in offered.by_ref().take(c.max as usize) {
            let token = leases::lease_token(&secret, &id);
            let args = vec![
                set.to.as_str().into(),
                token.as_str().into(),
                c.worker.as_str().into(),
                c.ttl_s.map(|s| i64::from(s) * 1000).into(),
                items[*i].now.0.into(),
                tenant.into(),
                id.as_str().into(),
            ];
            dialect::fetch(ctx, BY_KEY.as_str(), args).await?;
            assigned.push((id, *i, token));
        }
    }
    let ids: Vec<&str> = assigned.iter().map(|(id, _, _)| id.as_str()).collect();
    let leased = rows_by_id(ctx, tenant, TASK_COLS, &ids).await?;
    let mut granted: HashMap<String, Task> = HashMap::with_capacity(leased.len());
    for row in &leased {
        let task = rows::task(row)?;
        granted.insert(task.id.to_string(), task);
    }
    let mut grants = Vec::with_capacity(granted.len());
    for (id, i, token) in assigned {
        if let Some(task) = granted.remove(&id) {
            grants.push((i, token, task));
        }
    }
    Ok((grants, timing))
}

/// The group paths built by hand, so that they run as groups whatever the
/// timing (through the API, which writes share a group depends on when
/// they reach the writer), on each backend this file is compiled for.
#[cfg(test)]
mod tests {
    use super::super::{Backend, testing::bootstrapped};
    use super::*;
    use crate::Store;

    /// Runs `items` (one tenant, one kind) as one group in one batch.
    async fn group(store: &Backend, items: Vec<Pending>) -> Vec<Option<crate::Result<Answer>>> {
        store
            .writer
            .write(Some("default".into()), move |ctx| {
                Box::pin(async move {
                    let items: Vec<&Pending> = items.iter().collect();
                    run_many(ctx, "default", &items).await
                })
            })
            .await
            .unwrap()
    }

    fn params(worker: &str, max: u32, ttl_s: u32) -> ClaimParams {
        ClaimParams {
            worker: worker.into(),
            capabilities: vec![],
            max,
            ttl_s: Some(ttl_s),
        }
    }

    /// A batch that creates, claims and completes keeps its events in the
    /// order it recorded them, numbered without gaps, whoever writes them
    /// (on PostgreSQL the completion statement writes them all); the
    /// completions are logged in the order they arrived.
    #[tokio::test]
    async fn one_batch_logs_its_groups_in_order() {
        let now = Timestamp(1_000_000);
        let Some((_guard, store)) = bootstrapped(now).await else {
            return;
        };
        let before = store
            .event_list("default", &Default::default())
            .await
            .unwrap()
            .events
            .len();
        let completed: Vec<Uuid> = store
            .writer
            .write(Some("default".into()), move |ctx| {
                Box::pin(async move {
                    let creates: Vec<Pending> = (0..3)
                        .map(|i| Pending {
                            now,
                            op: Grouped::Create(NewTask::titled(format!("t{i}"))),
                        })
                        .collect();
                    run_many(ctx, "default", &creates.iter().collect::<Vec<_>>()).await?;
                    let claim = [Pending {
                        now,
                        op: Grouped::Claim(params("w", 3, 60)),
                    }];
                    let mut got = run_many(ctx, "default", &[&claim[0]]).await?;
                    let Some(Some(Ok(claimed))) = got.pop() else {
                        panic!("the claim was not answered");
                    };
                    let granted = claimed.into_claim()?.granted;
                    assert_eq!(granted.len(), 3);
                    // Completed in the reverse of the queue's order.
                    let completes: Vec<Pending> = granted
                        .iter()
                        .rev()
                        .map(|c| Pending {
                            now,
                            op: Grouped::Complete {
                                id: c.task.id,
                                token: c.lease.clone(),
                                result: serde_json::json!(null),
                                whole: false,
                            },
                        })
                        .collect();
                    run_many(ctx, "default", &completes.iter().collect::<Vec<_>>()).await?;
                    Ok(granted.iter().rev().map(|c| c.task.id).collect())
                })
            })
            .await
            .unwrap();
        let events = store
            .event_list("default", &Default::default())
            .await
            .unwrap()
            .events;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
        let ours = &events[before..];
        let kinds: Vec<&str> = ours.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                ["task.created"; 3].as_slice(),
                &["task.leased"; 3],
                &["task.completed"; 3]
            ]
            .concat()
        );
        let done_order: Vec<Uuid> = ours[6..].iter().filter_map(|e| e.task_id).collect();
        assert_eq!(done_order, completed);
        for e in &ours[6..] {
            assert_eq!(e.data, serde_json::json!({"attempt": 1}));
        }
    }

    /// A batch with no completion writes its events in a statement of
    /// their own before COMMIT: whatever a title holds comes back from the
    /// log as it went in.
    #[tokio::test]
    async fn events_written_at_commit_keep_their_data() {
        let now = Timestamp(1_000_000);
        let Some((_guard, store)) = bootstrapped(now).await else {
            return;
        };
        let titles = [
            "it's",
            "\\'; DROP TABLE events; --",
            "$$ E'\\x41' \n ünïcødé ✓",
        ];
        let creates: Vec<Pending> = titles
            .iter()
            .map(|t| Pending {
                now,
                op: Grouped::Create(NewTask::titled(*t)),
            })
            .collect();
        group(&store, creates).await;
        let events = store
            .event_list("default", &Default::default())
            .await
            .unwrap()
            .events;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
        let logged: Vec<&str> = events
            .iter()
            .filter(|e| e.kind == "task.created")
            .filter_map(|e| e.data["title"].as_str())
            .collect();
        assert_eq!(logged, titles);
    }

    /// Claims in one group take the queue's tasks in order, each as many as
    /// its `max` in arrival order, each under its own worker, TTL and
    /// token; the last claim gets what is left.
    #[tokio::test]
    async fn claims_in_one_group_take_the_queue_in_turn() {
        let now = Timestamp(1_000_000);
        let Some((_guard, store)) = bootstrapped(now).await else {
            return;
        };
        let mut queue = vec![];
        for k in 0..7 {
            let mut spec = NewTask::titled(format!("t{k}"));
            spec.priority = 10 - k;
            let made = store.task_create("default", spec, None, now).await;
            queue.push(made.unwrap().value.id);
        }
        let claims = [("w0", 2, 10), ("w1", 3, 20), ("w2", 4, 30)].map(|(w, max, ttl)| Pending {
            now,
            op: Grouped::Claim(params(w, max, ttl)),
        });
        let outs: Vec<ClaimOutcome> = group(&store, claims.into())
            .await
            .into_iter()
            .map(|a| a.unwrap().unwrap().into_claim().unwrap())
            .collect();
        let expected = [
            (&queue[0..2], "w0", 10),
            (&queue[2..5], "w1", 20),
            (&queue[5..], "w2", 30),
        ];
        for (out, (ids, worker, ttl)) in outs.iter().zip(expected) {
            let got: Vec<Uuid> = out.granted.iter().map(|c| c.task.id).collect();
            assert_eq!(got, ids, "{worker}");
            for c in &out.granted {
                let lease = c.task.lease.as_ref().unwrap();
                assert_eq!(lease.worker, worker);
                assert_eq!((lease.attempt, c.attempt), (1, 1));
                assert_eq!(c.expires_at, Timestamp(now.0 + ttl * 1000));
                assert_eq!(c.task, store.task_get("default", c.task.id).await.unwrap());
                let (id, _) = store
                    .lease_heartbeat("default", &c.lease, now)
                    .await
                    .unwrap();
                assert_eq!(id, c.task.id, "each token is its own task's");
                let attempts = store.attempt_list("default", id).await.unwrap();
                assert_eq!(attempts.len(), 1);
                assert_eq!(attempts[0].worker, worker);
            }
        }
        let leased = store
            .event_list("default", &Default::default())
            .await
            .unwrap()
            .events
            .into_iter()
            .filter(|e| e.kind == "task.leased")
            .filter_map(|e| e.task_id)
            .collect::<Vec<_>>();
        assert_eq!(
            leased,
            queue[..7],
            "one event per lease, in the queue's order"
        );
    }

    /// Claims answered together, one granted a short lease and the other
    /// nothing: the empty one must wake by that lease's expiry, although
    /// the look that timed it ran before the lease existed. (Through the
    /// API, which claims share a group depends on timing; here it cannot.)
    #[tokio::test]
    async fn an_empty_claim_wakes_for_a_lease_granted_beside_it() {
        let now = Timestamp(1_000_000);
        let Some((_guard, store)) = bootstrapped(now).await else {
            return;
        };
        let params = |worker: &str, ttl_s: u32| ClaimParams {
            worker: worker.into(),
            capabilities: vec![],
            max: 1,
            ttl_s: Some(ttl_s),
        };
        let claim = |worker: &str, ttl_s: u32| Pending {
            now,
            op: Grouped::Claim(params(worker, ttl_s)),
        };
        store
            .task_create("default", NewTask::titled("long"), None, now)
            .await
            .unwrap();
        let long = store
            .lease_claim("default", params("a", 3600), now)
            .await
            .unwrap();
        assert_eq!(long.granted.len(), 1);
        store
            .task_create("default", NewTask::titled("short"), None, now)
            .await
            .unwrap();
        let outs: Vec<_> = group(&store, vec![claim("b", 5), claim("c", 5)])
            .await
            .into_iter()
            .map(|a| a.unwrap().unwrap().into_claim().unwrap())
            .collect();
        let short = outs[0].granted[0].expires_at;
        assert_eq!(short, Timestamp(now.0 + 5_000));
        assert!(outs[1].granted.is_empty());
        assert_eq!(outs[1].next_due, Some(Some(short)));
        assert_eq!(store.next_due("default", now).await.unwrap(), Some(short));
    }

    /// The grouped create and completion paths, built by hand so that they
    /// run as groups whatever the timing: creates answer each task as
    /// stored, and a completion releases dependents only of its own task.
    #[tokio::test]
    async fn groups_answer_as_stored_and_release_only_their_dependents() {
        let now = Timestamp(1_000_000);
        let Some((_guard, store)) = bootstrapped(now).await else {
            return;
        };
        let mut labelled = NewTask::titled("b");
        labelled.labels = vec!["gpu".into()];
        labelled.acceptance = vec!["it works".into()];
        labelled.priority = 3;
        let creates = [NewTask::titled("a"), labelled].map(|spec| Pending {
            now,
            op: Grouped::Create(spec),
        });
        let made = group(&store, creates.into()).await;
        let mut ids = vec![];
        for answer in made {
            let task = answer.unwrap().unwrap().into_task().unwrap();
            assert_eq!(task, store.task_get("default", task.id).await.unwrap());
            ids.push(task.id);
        }
        let mut after = NewTask::titled("after a");
        after.depends_on = vec![ids[0]];
        let after = store
            .task_create("default", after, None, now)
            .await
            .unwrap()
            .value
            .id;
        let params = ClaimParams {
            worker: "w".into(),
            capabilities: vec!["gpu".into()],
            max: 5,
            ttl_s: Some(60),
        };
        let leases = store
            .lease_claim("default", params, now)
            .await
            .unwrap()
            .granted;
        assert_eq!(leases.len(), 2);
        // Two groups, one not asking for its tasks back and one asking:
        // each answers as asked, and both complete.
        for (whole, leases) in [(false, &leases[..1]), (true, &leases[1..])] {
            let completions: Vec<Pending> = leases
                .iter()
                .map(|l| Pending {
                    now,
                    op: Grouped::Complete {
                        id: l.task.id,
                        token: l.lease.clone(),
                        result: serde_json::json!(null),
                        whole,
                    },
                })
                .collect();
            for (done, l) in group(&store, completions).await.into_iter().zip(leases) {
                match done.unwrap().unwrap() {
                    Answer::Task(task) => {
                        assert!(whole);
                        assert_eq!(*task, store.task_get("default", l.task.id).await.unwrap());
                    }
                    Answer::Completed => assert!(!whole),
                    Answer::Claim(_) | Answer::Checkpointed { .. } => {
                        panic!("a completion answered as another write")
                    }
                }
                let task = store.task_get("default", l.task.id).await.unwrap();
                assert_eq!(task.status, aruntime_core::TaskStatus::Done);
                let attempts = store.attempt_list("default", l.task.id).await.unwrap();
                assert_eq!(
                    attempts[0].outcome,
                    aruntime_core::AttemptOutcome::Completed
                );
            }
        }
        let after = store.task_get("default", after).await.unwrap();
        assert_eq!(after.status, aruntime_core::TaskStatus::Ready);
        let ready = store
            .event_list("default", &Default::default())
            .await
            .unwrap()
            .events
            .into_iter()
            .filter(|e| e.kind == "task.ready")
            .count();
        assert_eq!(ready, 1);
    }

    /// A group of checkpoints writes each one whose lease is live and whose
    /// artifacts are known, renews its lease and logs it; it leaves the
    /// rest (a second checkpoint of a task, an unknown blob, a stale
    /// token) to run alone, where the first is numbered after the group's
    /// and the others fail as they would alone.
    #[tokio::test]
    async fn a_checkpoint_group_writes_the_live_ones_and_leaves_the_rest() {
        let now = Timestamp(1_000_000);
        let Some((_guard, store)) = bootstrapped(now).await else {
            return;
        };
        for n in 0..4 {
            store
                .task_create("default", NewTask::titled(format!("t{n}")), None, now)
                .await
                .unwrap();
        }
        let leases = store
            .lease_claim("default", params("w", 4, 60), now)
            .await
            .unwrap()
            .granted;
        assert_eq!(leases.len(), 4);
        let blob = store.blob_put("default", b"log", now).await.unwrap();
        let artifact = |sha: &str| aruntime_core::Artifact {
            name: "out.log".into(),
            sha256: sha.into(),
        };
        let cp = |l: &crate::Claimed, lease: &str, artifacts| {
            leases::CheckpointWrite::of(
                l.task.id,
                &aruntime_api::NewCheckpoint {
                    lease: lease.into(),
                    summary: format!("at {}", l.task.title),
                    state: serde_json::json!({"step": 1}),
                    artifacts,
                    test_results: Value::Null,
                },
            )
        };
        let (a, b, c, d) = (&leases[0], &leases[1], &leases[2], &leases[3]);
        let later = Timestamp(now.0 + 5_000);
        let writes = vec![
            // The sha as given, in capitals: blobs are found by its lower case.
            cp(
                a,
                &a.lease,
                vec![artifact(&blob.sha256.to_ascii_uppercase())],
            ),
            cp(a, &a.lease, vec![]),
            cp(b, &b.lease, vec![artifact(&"0".repeat(64))]),
            cp(c, &format!("{}x", c.lease), vec![]),
            cp(d, &d.lease, vec![]),
        ];
        let items = writes
            .into_iter()
            .map(|w| Pending {
                now: later,
                op: Grouped::Checkpoint(w),
            })
            .collect();
        let answers: Vec<Option<(i64, u32)>> = group(&store, items)
            .await
            .into_iter()
            .map(|a| a.map(|r| r.unwrap().into_checkpointed().unwrap()))
            .collect();
        assert_eq!(answers, [Some((1, 1)), None, None, None, Some((1, 1))]);
        for l in [a, d] {
            let task = store.task_get("default", l.task.id).await.unwrap();
            assert_eq!(task.checkpoint_seq, 1);
            let lease = task.lease.unwrap();
            assert_eq!(lease.expires_at, Timestamp(later.0 + 60_000));
            let written = store.checkpoint_list("default", l.task.id).await.unwrap();
            assert_eq!(written.len(), 1);
            assert_eq!(written[0].state, serde_json::json!({"step": 1}));
            assert_eq!(written[0].created_at, later);
        }
        let listed = store.checkpoint_list("default", a.task.id).await.unwrap();
        assert_eq!(
            listed[0].artifacts[0].sha256,
            blob.sha256.to_ascii_uppercase()
        );
        for l in [b, c] {
            let task = store.task_get("default", l.task.id).await.unwrap();
            assert_eq!(task.checkpoint_seq, 0);
            assert_eq!(task.lease.unwrap().expires_at, Timestamp(now.0 + 60_000));
        }
        let logged: Vec<(Option<Uuid>, Value)> = store
            .event_list("default", &Default::default())
            .await
            .unwrap()
            .events
            .into_iter()
            .filter(|e| e.kind == "checkpoint.created")
            .map(|e| (e.task_id, e.data))
            .collect();
        let data = |l: &crate::Claimed| serde_json::json!({"attempt": 1, "seq": 1, "summary": format!("at {}", l.task.title)});
        assert_eq!(
            logged,
            [(Some(a.task.id), data(a)), (Some(d.task.id), data(d))]
        );
        // What the group left runs alone, through the store.
        let alone = |lease: &str, artifacts| aruntime_api::NewCheckpoint {
            lease: lease.into(),
            summary: "again".into(),
            state: Value::Null,
            artifacts,
            test_results: Value::Null,
        };
        let second = store
            .checkpoint_put("default", a.task.id, alone(&a.lease, vec![]), later)
            .await
            .unwrap();
        assert_eq!((second.seq, second.attempt), (2, 1));
        let unknown = store
            .checkpoint_put(
                "default",
                b.task.id,
                alone(&b.lease, vec![artifact(&"0".repeat(64))]),
                later,
            )
            .await;
        assert!(matches!(unknown, Err(StoreError::UnknownBlob(s)) if s == "0".repeat(64)));
        let stale = store
            .checkpoint_put(
                "default",
                c.task.id,
                alone(&format!("{}x", c.lease), vec![]),
                later,
            )
            .await;
        assert!(matches!(stale, Err(StoreError::LeaseLost)));
    }
}
