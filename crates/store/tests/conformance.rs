//! The store conformance suite: one set of behaviours every backend must
//! show, written once as functions over a [`Harness`] and expanded per
//! backend by `conformance!`. Any change to the `Store` trait extends it.

use std::collections::HashSet;
use std::sync::Arc;

use aruntime_api::{BoardQuery, EventQuery, NewCheckpoint, NewTask, TaskQuery};
use aruntime_core::{Artifact, Clock, MockClock, Role, TaskStatus, Timestamp};
use aruntime_store::postgres::{PgConfig, PgStore};
use aruntime_store::sqlite::{Durability, SqliteConfig, SqliteStore};
use aruntime_store::{ClaimParams, Claimed, Finish, Idempotency, Store, StoreError};
use serde_json::json;

struct Harness {
    store: Arc<dyn Store>,
    clock: MockClock,
    /// A URL for connecting to the store's database behind its back, to
    /// make it refuse some writes.
    url: String,
    postgres: bool,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = SqliteConfig::new(dir.path());
        cfg.durability = Durability::Normal;
        let store = Arc::new(SqliteStore::open(&cfg).await.unwrap());
        let h = Harness {
            store,
            clock: MockClock::default(),
            url: format!("sqlite://{}", dir.path().join("aruntime.db").display()),
            postgres: false,
            _dir: dir,
        };
        assert!(
            h.store
                .bootstrap("admin-hash", h.clock.now())
                .await
                .unwrap()
        );
        h.store.tenant_create("b", h.clock.now()).await.unwrap();
        h
    }

    async fn postgres() -> Option<(Harness, aruntime_testkit::TestDb)> {
        let db = aruntime_testkit::TestDb::create().await?;
        let store = Arc::new(PgStore::open(&PgConfig::new(&db.url)).await.unwrap());
        let h = Harness {
            store,
            clock: MockClock::default(),
            url: db.url.clone(),
            postgres: true,
            _dir: tempfile::tempdir().unwrap(),
        };
        assert!(
            h.store
                .bootstrap("admin-hash", h.clock.now())
                .await
                .unwrap()
        );
        h.store.tenant_create("b", h.clock.now()).await.unwrap();
        Some((h, db))
    }

    async fn task(&self, tenant: &str, spec: NewTask) -> uuid::Uuid {
        self.store
            .task_create(tenant, spec, None, self.clock.now())
            .await
            .unwrap()
            .value
            .id
    }

    /// The leases a claim of `p` in `tenant` grants at `now`.
    async fn granted(&self, tenant: &str, p: ClaimParams, now: Timestamp) -> Vec<Claimed> {
        self.store
            .lease_claim(tenant, p, now)
            .await
            .unwrap()
            .granted
    }

    fn params(worker: &str, max: u32) -> ClaimParams {
        ClaimParams {
            worker: worker.into(),
            capabilities: vec![],
            max,
            ttl_s: Some(30),
        }
    }

    /// Makes the database itself refuse every task titled `boom`, the way
    /// a constraint or a full disk refuses a write the store let through.
    async fn refuse_boom(&self) {
        use sqlx::Connection;
        let sql = if self.postgres {
            "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.title = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER refuse_boom BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION refuse_boom()"
        } else {
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON tasks WHEN NEW.title = 'boom' \
             BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
        };
        if self.postgres {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
    }

    async fn events(&self, tenant: &str) -> Vec<aruntime_core::Event> {
        let q = EventQuery {
            limit: Some(500),
            ..Default::default()
        };
        self.events_paged(tenant, q).await
    }

    /// Every event `q` selects, page after page from `q.after`.
    async fn events_paged(&self, tenant: &str, mut q: EventQuery) -> Vec<aruntime_core::Event> {
        let mut all = vec![];
        loop {
            let page = self.store.event_list(tenant, &q).await.unwrap();
            if page.events.is_empty() {
                return all;
            }
            q.after = page.next_after;
            all.extend(page.events);
        }
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Harness::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    // Without PostgreSQL the harness has said loudly why.
                    if let Some((h, _db)) = super::Harness::postgres().await {
                        super::$name(&h).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    concurrent_claims_never_overlap,
    stale_lease_writes_change_nothing,
    expiry_is_enforced_at_claim_time_without_a_sweeper,
    an_empty_claim_knows_when_to_look_again,
    one_refused_write_does_not_spoil_its_batch,
    a_group_the_database_refuses_does_not_spoil_its_batch,
    event_log_is_gapless_per_tenant,
    a_write_with_more_events_than_one_statement_holds_keeps_the_log_gapless,
    completion_readies_dependents_in_the_same_transaction,
    idempotent_creates_race_to_one_task,
    blobs_are_deduplicated_per_tenant,
    tokens_resolve_to_their_tenant,
    concurrent_completions_are_answered_as_if_alone,
    concurrent_claims_respect_each_max_worker_and_label,
    completions_in_one_batch_release_a_shared_dependent,
    contexts_read_together_match_contexts_read_alone,
    a_claim_of_fresh_tasks_brings_the_decisions_they_have,
    any_tenant_id_is_written_safely,
    creates_together_answer_each_task_as_stored,
    completions_together_release_only_their_own_dependents,
    a_tasks_events_page_through_its_own_part_of_the_log,
    the_board_counts_and_orders_every_status,
);

async fn concurrent_claims_never_overlap(h: &Harness) {
    for i in 0..200 {
        h.task("default", NewTask::titled(format!("t{i}"))).await;
    }
    let mut joins = vec![];
    for w in 0..16 {
        let store = h.store.clone();
        let now = h.clock.now();
        joins.push(tokio::spawn(async move {
            let mut mine = vec![];
            loop {
                let out = store
                    .lease_claim("default", Harness::params(&format!("w{w}"), 3), now)
                    .await
                    .unwrap();
                if out.granted.is_empty() {
                    return mine;
                }
                mine.extend(out.granted.into_iter().map(|c| c.task.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for j in joins {
        for id in j.await.unwrap() {
            assert!(seen.insert(id), "task {id} granted twice");
        }
    }
    assert_eq!(seen.len(), 200);
}

async fn stale_lease_writes_change_nothing(h: &Harness) {
    let id = h.task("default", NewTask::titled("t")).await;
    let now = h.clock.now();
    let lease = h
        .granted("default", Harness::params("w", 1), now)
        .await
        .remove(0);
    let cp = |lease: &str| NewCheckpoint {
        lease: lease.into(),
        summary: "s".into(),
        state: json!(null),
        artifacts: vec![],
        test_results: json!(null),
    };
    h.store
        .checkpoint_put("default", id, cp(&lease.lease), now)
        .await
        .unwrap();
    let events_before = h.events("default").await.len();
    for token in ["", "ls_forged", &lease.lease[..lease.lease.len() - 1]] {
        let e = h
            .store
            .checkpoint_put("default", id, cp(token), now)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::LeaseLost), "{e}");
    }
    // The right token from the wrong tenant does not even find the task.
    let e = h
        .store
        .checkpoint_put("b", id, cp(&lease.lease), now)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e}");
    // Expired by one millisecond past the TTL.
    h.clock.advance_ms(30_000);
    let later = h.clock.now();
    let e = h
        .store
        .task_finish(
            "default",
            id,
            &lease.lease,
            Finish::Complete { result: json!(1) },
            later,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::LeaseLost));
    assert!(matches!(
        h.store
            .lease_heartbeat("default", &lease.lease, later)
            .await
            .unwrap_err(),
        StoreError::LeaseLost
    ));
    assert_eq!(h.events("default").await.len(), events_before);
    assert_eq!(
        h.store.checkpoint_list("default", id).await.unwrap().len(),
        1
    );
    assert_eq!(
        h.store.task_get("default", id).await.unwrap().status,
        TaskStatus::Running
    );
}

/// A claim that takes nothing says when a task may next become claimable
/// by time alone (a lease expiring, a backoff ending), which is what a
/// long-poll sleeps until; it must agree with `next_due`. (Leases granted
/// beside it in the same group: `sqlite::tests`, where the group is built
/// by hand.)
async fn an_empty_claim_knows_when_to_look_again(h: &Harness) {
    let now = h.clock.now();
    let claim = |worker: &'static str, ttl: u32| {
        let store = h.store.clone();
        async move {
            let mut p = Harness::params(worker, 1);
            p.ttl_s = Some(ttl);
            store.lease_claim("default", p, now).await.unwrap()
        }
    };
    let empty = claim("a", 30).await;
    assert!(empty.granted.is_empty());
    if let Some(due) = empty.next_due {
        assert_eq!(due, None, "nothing runs and nothing backs off");
    }
    // A running lease: the claim wakes when it expires.
    h.task("default", NewTask::titled("long")).await;
    let long = claim("c", 3600).await.granted;
    assert_eq!(long.len(), 1);
    let empty = claim("d", 30).await;
    assert!(empty.granted.is_empty());
    let read = h.store.next_due("default", now).await.unwrap();
    assert_eq!(read, Some(long[0].expires_at));
    assert_eq!(empty.next_due.unwrap_or(read), read);
    // A backoff: a retryable failure makes the task ready again later.
    let flaky = h.task("default", NewTask::titled("flaky")).await;
    let got = claim("a", 30).await.granted;
    assert_eq!(got[0].task.id, flaky);
    let failed = h
        .store
        .task_finish(
            "default",
            flaky,
            &got[0].lease,
            Finish::Fail {
                error: "flaky".into(),
                retryable: true,
                notes: None,
                do_not_retry: vec![],
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(failed.status, TaskStatus::Ready);
    let read = h.store.next_due("default", now).await.unwrap();
    assert!(read.is_some_and(|t| t > now), "{read:?}");
    let empty = claim("b", 30).await;
    assert!(empty.granted.is_empty());
    assert_eq!(empty.next_due.unwrap_or(read), read);
}

async fn expiry_is_enforced_at_claim_time_without_a_sweeper(h: &Harness) {
    let id = h.task("default", NewTask::titled("t")).await;
    let first = h
        .store
        .lease_claim("default", Harness::params("a", 1), h.clock.now())
        .await
        .unwrap();
    assert_eq!(first.granted.len(), 1);
    h.clock.advance_ms(29_999);
    assert!(
        h.granted("default", Harness::params("b", 1), h.clock.now())
            .await
            .is_empty()
    );
    assert_eq!(
        h.store.next_due("default", h.clock.now()).await.unwrap(),
        Some(first.granted[0].expires_at),
        "a long-poll must know when to look again"
    );
    h.clock.advance_ms(1);
    let second = h
        .store
        .lease_claim("default", Harness::params("b", 1), h.clock.now())
        .await
        .unwrap();
    assert_eq!(second.expired, 1);
    assert_eq!(second.granted[0].task.id, id);
    assert_eq!(second.granted[0].attempt, 2);
}

async fn one_refused_write_does_not_spoil_its_batch(h: &Harness) {
    let mut ids = vec![];
    for i in 0..40 {
        ids.push(h.task("default", NewTask::titled(format!("t{i}"))).await);
    }
    let now = h.clock.now();
    let leases = h.granted("default", Harness::params("w", 40), now).await;
    let events_before = h.events("default").await.len();
    // Half the completions carry a forged token; all are in flight at once so
    // they share commit batches.
    let mut joins = vec![];
    for (i, l) in leases.into_iter().enumerate() {
        let store = h.store.clone();
        let token = if i % 2 == 0 {
            l.lease.clone()
        } else {
            format!("{}x", l.lease)
        };
        joins.push(tokio::spawn(async move {
            let r = store
                .task_finish(
                    "default",
                    l.task.id,
                    &token,
                    Finish::Complete { result: json!(i) },
                    now,
                )
                .await;
            (i, l.task.id, r.is_ok())
        }));
    }
    for j in joins {
        let (i, id, ok) = j.await.unwrap();
        assert_eq!(ok, i % 2 == 0);
        let want = if ok {
            TaskStatus::Done
        } else {
            TaskStatus::Running
        };
        assert_eq!(h.store.task_get("default", id).await.unwrap().status, want);
    }
    assert_eq!(h.events("default").await.len(), events_before + 20);
}

/// The writer runs groups of creates, claims and completions without
/// savepoints, and runs the batch again with them when one fails. Here the
/// database refuses some creates: those fail alone, and everything that
/// shared their batches (other creates, completions, claims, a parked
/// claim) is answered and stored exactly once, with a gapless log.
async fn a_group_the_database_refuses_does_not_spoil_its_batch(h: &Harness) {
    h.refuse_boom().await;
    for i in 0..8 {
        h.task("default", NewTask::titled(format!("first{i}")))
            .await;
    }
    let now = h.clock.now();
    let leases = h.granted("default", Harness::params("w", 8), now).await;
    assert_eq!(leases.len(), 8);
    let events_before = h.events("default").await.len();
    // A claim waiting on the empty queue, which some batch below serves.
    let (_stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let (store, clock) = (
        h.store.clone(),
        Arc::new(MockClock::new(h.clock.now())) as Arc<dyn Clock>,
    );
    let waiting = tokio::spawn(async move {
        aruntime_store::claim_waiting(
            store.as_ref(),
            &clock,
            "default",
            &Harness::params("parked", 1),
            std::time::Duration::from_secs(60),
            &mut stop,
            || (),
        )
        .await
    });
    let mut creates = vec![];
    for i in 0..48 {
        let store = h.store.clone();
        let title = if i % 4 == 1 {
            "boom".to_owned()
        } else {
            format!("ok{i}")
        };
        creates.push(tokio::spawn(async move {
            let r = store
                .task_create("default", NewTask::titled(title.clone()), None, now)
                .await;
            (title, r.map(|t| t.value.id))
        }));
    }
    let mut finishes = vec![];
    for l in &leases {
        let (store, id, token) = (h.store.clone(), l.task.id, l.lease.clone());
        finishes.push(tokio::spawn(async move {
            let how = Finish::Complete { result: json!(1) };
            store.task_finish("default", id, &token, how, now).await
        }));
    }
    let mut made = HashSet::new();
    for j in creates {
        let (title, r) = j.await.unwrap();
        match r {
            Ok(id) => {
                assert_ne!(title, "boom", "the database refuses these");
                assert!(made.insert(id));
            }
            Err(e) => assert_eq!(title, "boom", "a create that shared a batch failed: {e}"),
        }
    }
    assert_eq!(made.len(), 36);
    for j in finishes {
        assert_eq!(j.await.unwrap().unwrap().status, TaskStatus::Done);
    }
    let got = waiting.await.unwrap().unwrap().granted;
    assert_eq!(got.len(), 1, "the parked claim is served once");
    assert!(made.contains(&got[0].task.id));
    let task = h
        .store
        .task_finish(
            "default",
            got[0].task.id,
            &got[0].lease,
            Finish::Complete { result: json!(2) },
            now,
        )
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Done);
    let all = h
        .store
        .task_list("default", &TaskQuery::default())
        .await
        .unwrap();
    assert_eq!(all.tasks.len(), 8 + 36, "no create stored twice, none lost");
    let events = h.events("default").await;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let gapless: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, gapless);
    let new = &events[events_before..];
    let count = |kind: &str| new.iter().filter(|e| e.kind == kind).count();
    assert_eq!(count("task.created"), 36);
    assert_eq!(count("task.completed"), 8 + 1);
    assert_eq!(count("task.leased"), 1);
}

async fn event_log_is_gapless_per_tenant(h: &Harness) {
    let mut joins = vec![];
    for tenant in ["default", "b"] {
        for i in 0..25 {
            let store = h.store.clone();
            let now = h.clock.now();
            joins.push(tokio::spawn(async move {
                store
                    .task_create(tenant, NewTask::titled(format!("{tenant}{i}")), None, now)
                    .await
                    .unwrap();
            }));
        }
    }
    for j in joins {
        j.await.unwrap();
    }
    for tenant in ["default", "b"] {
        let seqs: Vec<i64> = h.events(tenant).await.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=25).collect::<Vec<_>>(), "{tenant}");
    }
}

/// A batch's events are written together before COMMIT, at most 1,024 per
/// statement: a completion releasing 1,100 dependents records more than one
/// statement holds, numbered on without a gap or a repeat.
async fn a_write_with_more_events_than_one_statement_holds_keeps_the_log_gapless(h: &Harness) {
    let root = h.task("default", NewTask::titled("root")).await;
    let mut joins = vec![];
    for i in 0..1100 {
        let store = h.store.clone();
        let now = h.clock.now();
        let mut spec = NewTask::titled(format!("dep {i}"));
        spec.depends_on = vec![root];
        joins.push(tokio::spawn(async move {
            store.task_create("default", spec, None, now).await.unwrap();
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    let l = h
        .granted("default", Harness::params("w", 1), h.clock.now())
        .await;
    assert_eq!(l.len(), 1);
    let before = h.events("default").await.len();
    h.store
        .task_finish(
            "default",
            root,
            &l[0].lease,
            Finish::Complete { result: json!(1) },
            h.clock.now(),
        )
        .await
        .unwrap();
    let seqs: Vec<i64> = h.events("default").await.iter().map(|e| e.seq).collect();
    assert!(
        seqs.len() > before + 1100,
        "the completion and each release are logged: {} after {before}",
        seqs.len()
    );
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
}

async fn completion_readies_dependents_in_the_same_transaction(h: &Harness) {
    let a = h.task("default", NewTask::titled("a")).await;
    let mut spec = NewTask::titled("b");
    spec.depends_on = vec![a, a];
    let b = h.task("default", spec).await;
    let tb = h.store.task_get("default", b).await.unwrap();
    assert_eq!(
        (tb.status, tb.pending_dependencies, tb.depends_on.len()),
        (TaskStatus::Backlog, 1, 1)
    );
    let l = h
        .granted("default", Harness::params("w", 5), h.clock.now())
        .await;
    assert_eq!(l.len(), 1, "the dependent must not be offered");
    h.store
        .task_finish(
            "default",
            a,
            &l[0].lease,
            Finish::Complete {
                result: json!("ok"),
            },
            h.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(
        h.store.task_get("default", b).await.unwrap().status,
        TaskStatus::Ready
    );
    let ready: Vec<_> = h
        .store
        .task_list(
            "default",
            &TaskQuery {
                status: Some(TaskStatus::Ready),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .tasks
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ready, [b]);
}

async fn idempotent_creates_race_to_one_task(h: &Harness) {
    let mut joins = vec![];
    for _ in 0..10 {
        let store = h.store.clone();
        let now = h.clock.now();
        joins.push(tokio::spawn(async move {
            let idem = Idempotency {
                key: "k".into(),
                request_hash: "h".into(),
            };
            store
                .task_create("default", NewTask::titled("once"), Some(idem), now)
                .await
                .unwrap()
        }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for j in joins {
        let c = j.await.unwrap();
        ids.insert(c.value.id);
        created += usize::from(c.created);
    }
    assert_eq!((ids.len(), created), (1, 1));
    // The same key in another tenant is another task.
    let idem = Idempotency {
        key: "k".into(),
        request_hash: "h".into(),
    };
    let other = h
        .store
        .task_create("b", NewTask::titled("once"), Some(idem), h.clock.now())
        .await
        .unwrap();
    assert!(other.created);
}

async fn blobs_are_deduplicated_per_tenant(h: &Harness) {
    let now = h.clock.now();
    let a1 = h
        .store
        .blob_put("default", b"diff --git", now)
        .await
        .unwrap();
    let a2 = h
        .store
        .blob_put("default", b"diff --git", now)
        .await
        .unwrap();
    assert_eq!(a1, a2);
    assert_eq!(
        h.store.blob_get("default", &a1.sha256).await.unwrap(),
        b"diff --git"
    );
    assert!(matches!(
        h.store.blob_get("b", &a1.sha256).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
    // A checkpoint may only name blobs of its own tenant.
    let id = h.task("b", NewTask::titled("t")).await;
    let l = h.granted("b", Harness::params("w", 1), now).await.remove(0);
    let cp = NewCheckpoint {
        lease: l.lease,
        summary: "s".into(),
        state: json!(null),
        artifacts: vec![Artifact {
            name: "d".into(),
            sha256: a1.sha256.clone(),
        }],
        test_results: json!(null),
    };
    assert!(matches!(
        h.store.checkpoint_put("b", id, cp, now).await.unwrap_err(),
        StoreError::UnknownBlob(_)
    ));
}

async fn tokens_resolve_to_their_tenant(h: &Harness) {
    let now = h.clock.now();
    h.store
        .token_create("b", Role::Viewer, None, "hash-b", now)
        .await
        .unwrap();
    let p = h.store.token_lookup("hash-b").await.unwrap().unwrap();
    assert_eq!((p.tenant.as_str(), p.role), ("b", Role::Viewer));
    assert!(h.store.token_lookup("nope").await.unwrap().is_none());
    let admin = h.store.token_lookup("admin-hash").await.unwrap().unwrap();
    assert_eq!(
        (admin.tenant.as_str(), admin.role),
        ("default", Role::Admin)
    );
    assert!(
        !h.store.bootstrap("again", now).await.unwrap(),
        "bootstrap runs once"
    );
    assert!(matches!(
        h.store
            .token_create("ghost", Role::Admin, None, "x", now)
            .await
            .unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

/// Completions in flight together (so the writer groups them): each is
/// answered as it would be alone, and each task keeps its own result.
async fn concurrent_completions_are_answered_as_if_alone(h: &Harness) {
    for i in 0..24 {
        h.task("default", NewTask::titled(format!("t{i}"))).await;
    }
    let now = h.clock.now();
    let leases = h.granted("default", Harness::params("w", 24), now).await;
    assert_eq!(leases.len(), 24);
    // Per lease: complete it twice at once (exactly one may win), and send
    // one completion for a task that does not exist.
    let mut joins = vec![];
    for (i, l) in leases.iter().enumerate() {
        for attempt in 0..2 {
            let (store, id, token) = (h.store.clone(), l.task.id, l.lease.clone());
            joins.push(tokio::spawn(async move {
                let how = Finish::Complete {
                    result: json!({"task": i, "try": attempt}),
                };
                (i, store.task_finish("default", id, &token, how, now).await)
            }));
        }
    }
    let store = h.store.clone();
    let ghost = tokio::spawn(async move {
        let how = Finish::Complete { result: json!(0) };
        store
            .task_finish("default", uuid::Uuid::now_v7(), "ls_nope", how, now)
            .await
    });
    let mut won = vec![0; leases.len()];
    for j in joins {
        let (i, r) = j.await.unwrap();
        match r {
            Ok(task) => {
                won[i] += 1;
                assert_eq!(task.status, TaskStatus::Done);
                assert_eq!(
                    task.result.as_ref().and_then(|r| r["task"].as_u64()),
                    Some(i as u64)
                );
                let stored = h.store.task_get("default", task.id).await.unwrap();
                assert_eq!(
                    stored.result, task.result,
                    "the answer is the row as stored"
                );
                assert_eq!(stored.updated_at, task.updated_at);
            }
            Err(e) => assert!(matches!(e, StoreError::LeaseLost), "{e:?}"),
        }
    }
    assert_eq!(
        won,
        vec![1; leases.len()],
        "each task completes exactly once"
    );
    assert!(matches!(
        ghost.await.unwrap(),
        Err(StoreError::NotFound { .. })
    ));
    for l in &leases {
        let attempts = h.store.attempt_list("default", l.task.id).await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].ended_at, Some(now));
    }
    let completed = h
        .events("default")
        .await
        .into_iter()
        .filter(|e| e.kind == "task.completed")
        .count();
    assert_eq!(completed, leases.len());
}

/// Claims in flight together share one look at the queue: no task twice,
/// no claim over its `max`, each lease in its own worker's name and
/// usable, and labelled tasks only to workers that have the label.
async fn concurrent_claims_respect_each_max_worker_and_label(h: &Harness) {
    for i in 0..30 {
        h.task("default", NewTask::titled(format!("plain {i}")))
            .await;
    }
    for i in 0..5 {
        let mut spec = NewTask::titled(format!("gpu {i}"));
        spec.labels = vec!["gpu".into()];
        // First in line, so the workers that can take them take them first
        // and every task finds a claim whatever order the claims run in.
        spec.priority = 1;
        h.task("default", spec).await;
    }
    let now = h.clock.now();
    let mut joins = vec![];
    for w in 0..12 {
        let store = h.store.clone();
        joins.push(tokio::spawn(async move {
            let mut p = Harness::params(&format!("w{w}"), 4);
            if w % 4 == 0 {
                p.capabilities = vec!["gpu".into()];
            }
            (w, store.lease_claim("default", p, now).await.unwrap())
        }));
    }
    let mut seen = HashSet::new();
    for j in joins {
        let (w, out) = j.await.unwrap();
        assert!(out.granted.len() <= 4, "w{w} got {}", out.granted.len());
        for c in out.granted {
            assert!(seen.insert(c.task.id), "task {} granted twice", c.task.id);
            let lease = c.task.lease.as_ref().unwrap();
            assert_eq!(lease.worker, format!("w{w}"));
            assert_eq!((lease.attempt, c.attempt), (1, 1));
            assert_eq!(lease.expires_at, c.expires_at);
            if !c.task.labels.is_empty() {
                assert_eq!(w % 4, 0, "w{w} has no gpu but got {}", c.task.title);
            }
            let (id, _) = h
                .store
                .lease_heartbeat("default", &c.lease, now)
                .await
                .unwrap();
            assert_eq!(id, c.task.id, "each token is its own task's");
            let attempts = h.store.attempt_list("default", id).await.unwrap();
            assert_eq!(attempts.len(), 1);
            assert_eq!(attempts[0].worker, format!("w{w}"));
        }
    }
    // 12 claims of 4 ask for 48; 35 exist.
    assert_eq!(seen.len(), 35);
}

/// A task waiting on two others becomes ready when both complete in the
/// same instant, whichever batch each lands in.
async fn completions_in_one_batch_release_a_shared_dependent(h: &Harness) {
    let a = h.task("default", NewTask::titled("a")).await;
    let b = h.task("default", NewTask::titled("b")).await;
    let mut spec = NewTask::titled("c");
    spec.depends_on = vec![a, b];
    let c = h.task("default", spec).await;
    let now = h.clock.now();
    let leases = h.granted("default", Harness::params("w", 5), now).await;
    assert_eq!(leases.len(), 2, "c waits for a and b");
    let mut joins = vec![];
    for l in leases {
        let store = h.store.clone();
        joins.push(tokio::spawn(async move {
            let how = Finish::Complete {
                result: json!(null),
            };
            store
                .task_finish("default", l.task.id, &l.lease, how, now)
                .await
        }));
    }
    for j in joins {
        j.await.unwrap().unwrap();
    }
    let tc = h.store.task_get("default", c).await.unwrap();
    assert_eq!((tc.status, tc.pending_dependencies), (TaskStatus::Ready, 0));
}

/// The packets a claim answers with are read for all its tasks at once;
/// each must be the packet `context` gives for that task alone.
async fn contexts_read_together_match_contexts_read_alone(h: &Harness) {
    let store = &h.store;
    let now = h.clock.now();
    let decide = |title: &str| aruntime_api::NewDecision {
        title: title.into(),
        rationale: String::new(),
    };
    let top = h.task("default", NewTask::titled("top")).await;
    let mut spec = NewTask::titled("mid");
    spec.parent_id = Some(top);
    let mid = h.task("default", spec).await;
    store
        .decision_add("default", top, decide("top rule"), now)
        .await
        .unwrap();
    store
        .decision_add("default", mid, decide("mid rule"), now)
        .await
        .unwrap();
    // The goals are held, so only the leaves below are offered.
    for g in [top, mid] {
        store
            .task_steer("default", g, aruntime_store::Steer::Hold, now)
            .await
            .unwrap();
    }
    let mut spec = NewTask::titled("under mid");
    spec.parent_id = Some(mid);
    let leaf = h.task("default", spec).await;
    store
        .decision_add("default", leaf, decide("leaf rule"), now)
        .await
        .unwrap();
    let mut spec = NewTask::titled("under top");
    spec.parent_id = Some(top);
    let side = h.task("default", spec).await;
    let lone = h.task("default", NewTask::titled("alone")).await;
    // `lone` fails once, so it has an earlier attempt to show.
    let first = store
        .lease_claim("default", Harness::params("w", 3), now)
        .await
        .unwrap()
        .granted;
    for c in &first {
        let how = if c.task.id == lone {
            Finish::Fail {
                error: "flaky".into(),
                retryable: true,
                notes: Some("try again".into()),
                do_not_retry: vec![],
            }
        } else {
            Finish::Release {
                notes: None,
                do_not_retry: vec![],
            }
        };
        store
            .task_finish("default", c.task.id, &c.lease, how, now)
            .await
            .unwrap();
    }
    h.clock.advance_ms(3_600_000);
    let granted = store
        .lease_claim("default", Harness::params("w", 10), h.clock.now())
        .await
        .unwrap()
        .granted;
    let ids: HashSet<_> = granted.iter().map(|c| c.task.id).collect();
    assert_eq!(ids, HashSet::from([leaf, side, lone]));
    let tasks = granted.iter().map(|c| c.task.clone()).collect();
    let together = store.contexts("default", tasks).await.unwrap();
    for (c, ctx) in granted.iter().zip(&together) {
        let alone = store.context("default", c.task.id).await.unwrap();
        assert_eq!(ctx, &alone, "{}", c.task.title);
    }
    let of = |id| together.iter().find(|c| c.task.id == id).unwrap();
    let titles = |id| -> Vec<String> { of(id).decisions.iter().map(|d| d.title.clone()).collect() };
    assert_eq!(titles(leaf), ["top rule", "mid rule", "leaf rule"]);
    assert_eq!(titles(side), ["top rule"]);
    assert!(titles(lone).is_empty());
    assert_eq!(of(leaf).goal_chain.len(), 2);
    assert_eq!(
        of(lone).attempts.len(),
        1,
        "the failed attempt, not the running one"
    );
}

/// Fresh tasks (no goal, dependency, checkpoint or earlier attempt) are
/// claimed with packets read from the tasks alone when they count no
/// decisions; one that has a decision must still bring it, and the count
/// must be the task's own.
async fn a_claim_of_fresh_tasks_brings_the_decisions_they_have(h: &Harness) {
    let store = &h.store;
    let now = h.clock.now();
    let plain = h.task("default", NewTask::titled("plain")).await;
    let decided = h.task("default", NewTask::titled("decided")).await;
    for title in ["use sqlite", "no network"] {
        let d = aruntime_api::NewDecision {
            title: title.into(),
            rationale: String::new(),
        };
        store
            .decision_add("default", decided, d, now)
            .await
            .unwrap();
    }
    let counts = |id| async move { store.task_get("default", id).await.unwrap().decision_count };
    assert_eq!((counts(plain).await, counts(decided).await), (0, 2));
    let granted = store
        .lease_claim("default", Harness::params("w", 2), now)
        .await
        .unwrap()
        .granted;
    assert_eq!(granted.len(), 2);
    let tasks = granted.iter().map(|c| c.task.clone()).collect();
    let packets = store.contexts("default", tasks).await.unwrap();
    for (c, packet) in granted.iter().zip(&packets) {
        let titles: Vec<&str> = packet.decisions.iter().map(|d| d.title.as_str()).collect();
        if c.task.id == decided {
            assert_eq!(titles, ["use sqlite", "no network"]);
        } else {
            assert!(titles.is_empty(), "{titles:?}");
        }
        let alone = store.context("default", c.task.id).await.unwrap();
        assert_eq!(packet, &alone, "{}", c.task.title);
    }
}

/// PostgreSQL writes plain tenant ids into a batch's opening and closing
/// statements as literals; any other id must take the parameterized path
/// and behave the same (the API allows only plain names, the store any).
async fn any_tenant_id_is_written_safely(h: &Harness) {
    let odd = "o'brien; DROP TABLE tasks; --";
    h.store.tenant_create(odd, h.clock.now()).await.unwrap();
    let id = h.task(odd, NewTask::titled("t")).await;
    let now = h.clock.now();
    let l = h.granted(odd, Harness::params("w", 1), now).await;
    assert_eq!(l.len(), 1);
    let how = Finish::Complete { result: json!(1) };
    h.store
        .task_finish(odd, id, &l[0].lease, how, now)
        .await
        .unwrap();
    assert_eq!(
        h.store.task_get(odd, id).await.unwrap().status,
        TaskStatus::Done
    );
    let seqs: Vec<i64> = h.events(odd).await.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert!(matches!(
        h.store.task_get("default", id).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Creates in flight together are inserted as one group, whose answers are
/// built from the specs rather than read back: each must be the task as
/// stored, whatever fields it set.
async fn creates_together_answer_each_task_as_stored(h: &Harness) {
    let now = h.clock.now();
    let specs: Vec<NewTask> = (0..24)
        .map(|i| {
            let mut spec = NewTask::titled(format!("t{i} \u{e9}\"'"));
            spec.goal = format!("goal {i}\nline two");
            spec.acceptance = (0..i % 3).map(|k| format!("check {k}")).collect();
            spec.labels = if i % 4 == 0 {
                vec!["gpu".into()]
            } else {
                vec![]
            };
            spec.priority = i - 12;
            spec.hold = i % 5 == 0;
            spec.max_attempts = 1 + (i as u32 % 4);
            spec.lease_ttl_s = 10 + i as u32;
            spec
        })
        .collect();
    let answers = futures::future::join_all(
        specs
            .into_iter()
            .map(|spec| h.store.task_create("default", spec, None, now)),
    )
    .await;
    for a in answers {
        let task = a.unwrap().value;
        let stored = h.store.task_get("default", task.id).await.unwrap();
        assert_eq!(task, stored, "the answer is the task as stored");
    }
}

/// Completions in one group ask in their own statement whether anything
/// depends on each task: the tasks with dependents release them, the rest
/// release nothing.
async fn completions_together_release_only_their_own_dependents(h: &Harness) {
    let mut firsts = vec![];
    let mut dependents = vec![];
    for i in 0..16 {
        let a = h.task("default", NewTask::titled(format!("a{i}"))).await;
        if i % 2 == 0 {
            let mut spec = NewTask::titled(format!("after a{i}"));
            spec.depends_on = vec![a];
            dependents.push(h.task("default", spec).await);
        }
        firsts.push(a);
    }
    let now = h.clock.now();
    let leases = h.granted("default", Harness::params("w", 32), now).await;
    assert_eq!(leases.len(), firsts.len(), "dependents wait");
    let entries = leases
        .iter()
        .map(|l| (l.task.id, l.lease.clone(), json!(null)))
        .collect();
    for done in h.store.task_complete_many("default", entries, now).await {
        assert_eq!(done.unwrap(), TaskStatus::Done);
    }
    for d in &dependents {
        let t = h.store.task_get("default", *d).await.unwrap();
        assert_eq!((t.status, t.pending_dependencies), (TaskStatus::Ready, 0));
    }
    let released = h
        .events("default")
        .await
        .into_iter()
        .filter(|e| e.kind == "task.ready")
        .count();
    assert_eq!(released, dependents.len());
}

/// `GET /v1/events?task=ID` pages through that task's events alone, in log
/// order, resuming after each page's last, while other tasks' events are
/// interleaved with them in the log.
async fn a_tasks_events_page_through_its_own_part_of_the_log(h: &Harness) {
    let mut ids = vec![];
    for i in 0..3 {
        ids.push(h.task("default", NewTask::titled(format!("t{i}"))).await);
    }
    // Claimed and completed one by one, so the three tasks' events interleave.
    for _ in 0..3 {
        let granted = h
            .granted("default", Harness::params("w", 1), h.clock.now())
            .await;
        let entries = granted
            .into_iter()
            .map(|c| (c.task.id, c.lease, serde_json::json!({})))
            .collect();
        for done in h
            .store
            .task_complete_many("default", entries, h.clock.now())
            .await
        {
            done.unwrap();
        }
    }
    let log = h.events("default").await;
    for id in ids {
        let want: Vec<i64> = log
            .iter()
            .filter(|e| e.task_id == Some(id))
            .map(|e| e.seq)
            .collect();
        assert!(want.len() >= 3, "{id}: {want:?}");
        let q = EventQuery {
            task: Some(id),
            limit: Some(1),
            ..Default::default()
        };
        let page = h.events_paged("default", q).await;
        assert!(page.iter().all(|e| e.task_id == Some(id)));
        let got: Vec<i64> = page.iter().map(|e| e.seq).collect();
        assert_eq!(got, want, "{id}");
    }
}

/// Each status's tasks are kept in a different index (ready ones in the
/// claim index, running ones by lease expiry, the rest together), and the
/// board and the counts read each status from its own: every column must
/// count and order exactly its tasks, and no other tenant's.
async fn the_board_counts_and_orders_every_status(h: &Harness) {
    let now = h.clock.now();
    let mut leased = vec![];
    for priority in [10, 20, 30, 40, 50] {
        let mut spec = NewTask::titled(format!("p{priority}"));
        spec.priority = priority;
        spec.max_attempts = 1;
        leased.push(h.task("default", spec).await);
    }
    let granted = h.granted("default", Harness::params("w", 5), now).await;
    assert_eq!(granted.len(), 5);
    let token = |id| {
        granted
            .iter()
            .find(|c| c.task.id == id)
            .map(|c| c.lease.clone())
            .unwrap()
    };
    let (p10, p20, p30, p40, p50) = (leased[0], leased[1], leased[2], leased[3], leased[4]);
    let finishes = [
        (p50, Finish::Complete { result: json!(1) }),
        (
            p40,
            Finish::Fail {
                error: "no".into(),
                retryable: false,
                notes: None,
                do_not_retry: vec![],
            },
        ),
        (
            p30,
            Finish::Block {
                reason: "ask".into(),
            },
        ),
    ];
    for (id, finish) in finishes {
        h.store
            .task_finish("default", id, &token(id), finish, now)
            .await
            .unwrap();
    }
    let cancelled = h.task("default", NewTask::titled("c")).await;
    h.store
        .task_steer("default", cancelled, aruntime_store::Steer::Cancel, now)
        .await
        .unwrap();
    let mut low = NewTask::titled("low");
    low.priority = 1;
    let low = h.task("default", low).await;
    let mut high = NewTask::titled("high");
    high.priority = 5;
    let high = h.task("default", high).await;
    let mut held = NewTask::titled("held");
    held.hold = true;
    let held = h.task("default", held).await;
    h.task("b", NewTask::titled("another tenant's")).await;

    let expected = [
        (TaskStatus::Backlog, vec![held]),
        (TaskStatus::Ready, vec![high, low]),
        (TaskStatus::Running, vec![p20, p10]),
        (TaskStatus::Blocked, vec![p30]),
        (TaskStatus::Done, vec![p50]),
        (TaskStatus::Failed, vec![p40]),
        (TaskStatus::Cancelled, vec![cancelled]),
    ];
    let all = BoardQuery {
        include_cancelled: true,
        cards: None,
    };
    let board = h.store.board("default", &all).await.unwrap();
    let seen: Vec<_> = board
        .columns
        .iter()
        .map(|c| (c.status, c.cards.iter().map(|k| k.id).collect::<Vec<_>>()))
        .collect();
    assert_eq!(seen, expected);
    for c in &board.columns {
        assert_eq!(c.count, c.cards.len() as u64, "{:?}", c.status);
    }
    let counts = h.store.task_counts("default").await.unwrap();
    let want: Vec<_> = expected
        .iter()
        .map(|(s, ids)| (*s, ids.len() as u64))
        .collect();
    assert_eq!(counts, want);

    // A column's count is all its tasks, not the cards shown.
    let one = BoardQuery {
        include_cancelled: false,
        cards: Some(1),
    };
    let board = h.store.board("default", &one).await.unwrap();
    let running = board
        .columns
        .iter()
        .find(|c| c.status == TaskStatus::Running)
        .unwrap();
    assert_eq!(running.count, 2);
    assert_eq!(
        running.cards.iter().map(|k| k.id).collect::<Vec<_>>(),
        [p20]
    );
    assert!(
        board
            .columns
            .iter()
            .all(|c| c.status != TaskStatus::Cancelled)
    );
}
