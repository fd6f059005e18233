//! The client against a real in-process server with a mock clock: typed
//! errors, background heartbeats that keep a lease past its TTL, loss
//! detection, and plan import.

use std::sync::Arc;
use std::time::Duration;

use aruntime_api::{ClaimRequest, CompleteRequest, NewTask, PlanImport, PlanItem, TaskQuery};
use aruntime_client::{Client, ClientError, Finish, LeaseState, Steer};
use aruntime_core::{MockClock, TaskStatus};
use aruntime_server::{ServeConfig, Server};
use aruntime_store::sqlite::Durability;
use serde_json::json;
use tokio::sync::watch;

struct Running {
    client: Client,
    clock: Arc<MockClock>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
    // Dropped last: the database goes away after the server.
    _db: Option<aruntime_testkit::TestDb>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start() -> Running {
    start_on(false).await.unwrap()
}

/// On SQLite, or on PostgreSQL when `pg` (`None` if it is unavailable here;
/// the testkit says so loudly).
async fn start_on(pg: bool) -> Option<Running> {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(MockClock::default());
    let db = if pg {
        Some(aruntime_testkit::TestDb::create().await?)
    } else {
        None
    };
    let cfg = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        database: db.as_ref().map(|d| d.url.clone()),
        durability: Durability::Normal,
        mcp_allowed_hosts: vec![],
    };
    let server = Server::bind(&cfg, clock.clone()).await.unwrap();
    let url = format!("http://{}", server.addr);
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = server
            .run(async {
                let _ = rx.await;
            })
            .await;
    });
    Some(Running {
        client: Client::new(&url, token.trim()).unwrap(),
        clock,
        stop: Some(tx),
        _dir: dir,
        _db: db,
    })
}

fn claim(worker: &str) -> ClaimRequest {
    ClaimRequest {
        worker: worker.into(),
        capabilities: vec![],
        max: 1,
        wait_ms: 0,
        ttl_s: Some(3),
    }
}

/// The next state after the current one, or a failure after 10 s.
async fn next_state(rx: &mut watch::Receiver<LeaseState>) -> LeaseState {
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("the lease state did not change within 10 s")
        .unwrap();
    rx.borrow_and_update().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_lease_past_its_ttl_and_report_its_loss() {
    let s = start().await;
    let (task, created) = s
        .client
        .task_create(&NewTask::titled("long job"), Some("k1"))
        .await
        .unwrap();
    assert!(created);
    let mut leases = s.client.claim(&claim("w1")).await.unwrap();
    let lease = leases.pop().unwrap();
    assert_eq!(lease.task_id(), task.id);
    let mut rx = lease.subscribe();
    let first = match lease.state() {
        LeaseState::Held { expires_at } => expires_at,
        other => panic!("{other:?}"),
    };
    // Server time passes beyond the original TTL, in steps the background
    // heartbeat (every second, real time) renews across.
    for _ in 0..3 {
        s.clock.advance_ms(2_000);
        match next_state(&mut rx).await {
            LeaseState::Held { expires_at } => assert!(expires_at > first),
            other => panic!("expected a renewal, got {other:?}"),
        }
    }
    // Still held: a fenced write goes through, 6 s of server time later.
    let cp = lease
        .checkpoint("still going", json!({"step": 2}), vec![], json!(null))
        .await
        .unwrap();
    assert_eq!(cp.seq, 1);
    // Another worker finds nothing to claim.
    assert!(s.client.claim(&claim("w2")).await.unwrap().is_empty());

    // A person cancels the task: the next heartbeat learns the lease is gone.
    s.client.steer(task.id, Steer::Cancel).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), lease.lost())
        .await
        .expect("loss not noticed within 10 s");
    assert!(!reason.is_empty());
    assert!(lease.is_lost());
    let err = lease.complete(json!({})).await.unwrap_err();
    assert!(matches!(err, ClientError::LeaseLost { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_stops_the_heartbeat_and_errors_are_typed() {
    let s = start().await;
    let (task, _) = s
        .client
        .task_create(&NewTask::titled("short job"), None)
        .await
        .unwrap();
    let lease = s.client.claim(&claim("w1")).await.unwrap().pop().unwrap();
    let done = lease.complete(json!({"ok": true})).await.unwrap();
    assert_eq!(done.status, TaskStatus::Done);
    assert_eq!(lease.state(), LeaseState::Finished);

    // The server's code and message arrive typed.
    let err = s.client.steer(task.id, Steer::Unblock).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.as_str()), Some("invalid_transition"));
    let err = s.client.task(uuid::Uuid::now_v7()).await.unwrap_err();
    assert!(matches!(&err, ClientError::Api { status: 404, code, .. } if code == "not_found"));
    let err = s
        .client
        .task_create(&NewTask::titled(""), None)
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.as_str()), Some("invalid_input"));

    // A wrong token, a wrong URL.
    let bad = Client::new(s.client.url(), "art_nope").unwrap();
    let err = bad.tasks(&TaskQuery::default()).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.as_str()), Some("unauthorized"));
    let nowhere = Client::new("http://127.0.0.1:9", "t").unwrap();
    let err = nowhere.ready().await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(matches!(
        Client::new("ftp://x", "t").unwrap_err(),
        ClientError::Config(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_import_once_and_grow_by_key_sqlite() {
    plans_import_once_and_grow_by_key(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_import_once_and_grow_by_key_postgres() {
    plans_import_once_and_grow_by_key(true).await;
}

async fn plans_import_once_and_grow_by_key(pg: bool) {
    let Some(s) = start_on(pg).await else {
        return;
    };
    let mut b = PlanItem::new("b", "Build");
    b.depends_on = vec!["a".into()];
    let mut plan = PlanImport {
        key: "ship".into(),
        goal: PlanItem::new("", "Ship it"),
        tasks: vec![b, PlanItem::new("a", "Design")],
    };
    let first = s.client.plan_import(&plan).await.unwrap();
    assert_eq!(first.created(), 3);
    let (a, b) = (&first.tasks[1].task, &first.tasks[0].task);
    assert_eq!(a.status, TaskStatus::Ready);
    assert_eq!(b.status, TaskStatus::Backlog);
    assert_eq!(b.depends_on, vec![a.id]);
    assert_eq!(b.parent_id, Some(first.goal.task.id));
    assert_eq!(first.goal.task.status, TaskStatus::Backlog);
    assert_eq!(first.goal.task.depends_on.len(), 2);

    let again = s.client.plan_import(&plan).await.unwrap();
    assert_eq!(again.created(), 0);
    assert_eq!(again.goal.task.id, first.goal.task.id);

    // Adding an item creates just it, and the goal waits on it too.
    let mut c = PlanItem::new("c", "Check");
    c.depends_on = vec!["b".into()];
    plan.tasks.push(c);
    let grown = s.client.plan_import(&plan).await.unwrap();
    assert_eq!(grown.created(), 1);
    assert!(grown.tasks[2].created);
    assert_eq!(grown.tasks[2].task.depends_on, vec![b.id]);
    assert_eq!(grown.goal.task.depends_on.len(), 3);
    let all = s.client.tasks_all(&TaskQuery::default()).await.unwrap();
    assert_eq!(all.len(), 4);

    // A cycle is refused whole: nothing of it is created.
    let mut x = PlanItem::new("x", "X");
    x.depends_on = vec!["y".into()];
    let mut y = PlanItem::new("y", "Y");
    y.depends_on = vec!["x".into()];
    let cyclic = PlanImport {
        key: "loop".into(),
        goal: PlanItem::new("", "Loop"),
        tasks: vec![x, y],
    };
    let err = s.client.plan_import(&cyclic).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.as_str()), Some("dependency_cycle"));
    let all = s.client.tasks_all(&TaskQuery::default()).await.unwrap();
    assert_eq!(all.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_leases_together_settles_each_handle_by_its_own_outcome() {
    let s = start().await;
    let mut held = vec![];
    // The first lease lasts a minute, the second 3 s.
    for (i, ttl_s) in [(0, 60), (1, 3)] {
        s.client
            .task_create(&NewTask::titled(format!("job {i}")), None)
            .await
            .unwrap();
        let req = ClaimRequest {
            ttl_s: Some(ttl_s),
            ..claim("w1")
        };
        held.push(s.client.claim(&req).await.unwrap().pop().unwrap());
    }
    // The mock clock passes the second lease's TTL; another worker takes
    // its task.
    s.clock.advance_ms(4_000);
    let taken = s.client.claim(&claim("w2")).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].task_id(), held[1].task_id());
    let outcomes = s
        .client
        .complete_all(vec![
            (&held[0], json!({"n": 0})),
            (&held[1], json!({"n": 1})),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes[0].task, held[0].task_id());
    assert_eq!(outcomes[0].status, Some(TaskStatus::Done));
    let lost = outcomes[1].error.as_ref().map(|e| e.code.as_str());
    assert_eq!(lost, Some("lease_lost"));
    assert_eq!(held[0].state(), LeaseState::Finished);
    assert!(held[1].is_lost());
    // The task taken over is untouched.
    let t = s.client.task(held[1].task_id()).await.unwrap();
    assert_eq!(t.status, TaskStatus::Running);
}

/// `task_create_minimal` and `finish_minimal` send `Prefer:
/// return=minimal` and read the id and status the server answers with;
/// an idempotent replay still says it created nothing, and a refused
/// finish is still a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_answers_carry_the_id_and_status() {
    let r = start().await;
    let spec = NewTask::titled("minimal");
    let (made, created) = r
        .client
        .task_create_minimal(&spec, Some("k"))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(made.status, TaskStatus::Ready);
    let (again, created) = r
        .client
        .task_create_minimal(&spec, Some("k"))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, made.id);
    assert_eq!(r.client.task(made.id).await.unwrap().title, "minimal");

    let lease = r
        .client
        .claim_raw(&claim("w"))
        .await
        .unwrap()
        .leases
        .remove(0);
    assert_eq!(lease.task.id, made.id);
    let how = Finish::Complete(CompleteRequest {
        lease: lease.lease,
        result: json!({"ok": true}),
    });
    let done = r.client.finish_minimal(made.id, &how).await.unwrap();
    assert_eq!((done.id, done.status), (made.id, TaskStatus::Done));
    let err = r.client.finish_minimal(made.id, &how).await.unwrap_err();
    assert!(matches!(err, ClientError::LeaseLost { .. }), "{err:?}");
}
