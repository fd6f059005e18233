//! Guarantee 2, "acknowledged means durable", against the real binary:
//! four clients stream writes (create, lease, checkpoint, complete) while
//! the server is SIGKILLed; after a restart on the same data directory every
//! write that was answered 2xx must be there, exactly once, and the event
//! log must still be gapless.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, read_token};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Clients.
const WORKERS: usize = 4;
/// Rounds per client at most (create, claim, 2 checkpoints, complete).
const MAX_ROUNDS: usize = 250;
/// Acknowledged writes before the kill.
const KILL_AFTER: usize = 300;

/// What the server acknowledged (answered 2xx) before it died.
#[derive(Default)]
struct Ledger {
    /// Task id → title.
    created: BTreeMap<String, String>,
    /// (task, attempt) of granted leases.
    leased: Vec<(String, u64)>,
    /// (task, seq) → (summary, state).
    checkpoints: BTreeMap<(String, i64), (String, Value)>,
    /// Task → result.
    completed: BTreeMap<String, Value>,
    /// Create requests that got no answer (may or may not have committed).
    unanswered_creates: usize,
    /// Any non-2xx answer: none is expected in this workload.
    unexpected: Vec<String>,
}

struct Shared {
    ledger: Mutex<Ledger>,
    acked: AtomicUsize,
    progress: Notify,
    finished: AtomicUsize,
}

impl Shared {
    fn ack(&self, f: impl FnOnce(&mut Ledger)) {
        f(&mut self.ledger.lock().unwrap());
        self.acked.fetch_add(1, Ordering::SeqCst);
        self.progress.notify_waiters();
    }

    fn unexpected(&self, what: String) {
        self.ledger.lock().unwrap().unexpected.push(what);
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// `Err` means no HTTP answer (connection refused or reset, timeout).
type Answer = Result<(u16, Value), reqwest::Error>;

impl Api {
    fn new(base: &str, token: &str) -> Api {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Api {
            http,
            base: base.to_owned(),
            token: token.to_owned(),
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Answer {
        let r = rb.bearer_auth(&self.token).send().await?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, body))
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        let url = format!("{}{path}", self.base);
        self.send(self.http.post(url).json(body)).await
    }

    async fn get(&self, path: &str) -> Answer {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(url)).await
    }

    /// A GET that must answer 200 (used after the restart).
    async fn get_ok(&self, path: &str) -> Value {
        match self.get(path).await {
            Ok((200, v)) => v,
            other => panic!("GET {path}: {other:?}"),
        }
    }
}

/// One client: bounded rounds, stops at the first request without an answer
/// (the server is gone).
async fn worker(w: usize, api: Arc<Api>, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    'rounds: for round in 0..MAX_ROUNDS {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let title = format!("w{w} r{round}");
        match api.post("/v1/tasks", &json!({"title": title})).await {
            Ok((201, t)) => {
                let id = t["id"].as_str().expect("task id").to_owned();
                shared.ack(|l| {
                    let prev = l.created.insert(id.clone(), title.clone());
                    assert!(prev.is_none(), "task id {id} handed out twice");
                });
            }
            Ok((s, b)) => {
                shared.unexpected(format!("create: {s} {b}"));
                continue;
            }
            Err(_) => {
                shared.ledger.lock().unwrap().unanswered_creates += 1;
                break;
            }
        }

        let claim = json!({"worker": format!("w{w}"), "max": 1, "wait_ms": 0});
        let lease = match api.post("/v1/leases", &claim).await {
            Ok((200, b)) => {
                let Some(g) = b["leases"].as_array().and_then(|a| a.first()).cloned() else {
                    // Others took every ready task; go and make another.
                    continue;
                };
                let task = g["task"]["id"].as_str().unwrap().to_owned();
                let attempt = g["attempt"].as_u64().unwrap();
                let token = g["lease"].as_str().unwrap().to_owned();
                shared.ack(|l| l.leased.push((task.clone(), attempt)));
                (task, token)
            }
            Ok((s, b)) => {
                shared.unexpected(format!("claim: {s} {b}"));
                continue;
            }
            Err(_) => break,
        };
        let (task, token) = lease;

        for k in 1..=2 {
            let summary = format!("{task} by w{w} r{round} step {k}");
            let state = json!({"worker": w, "round": round, "step": k});
            let body = json!({"lease": token, "summary": summary, "state": state});
            match api
                .post(&format!("/v1/tasks/{task}/checkpoints"), &body)
                .await
            {
                Ok((201, c)) => {
                    let seq = c["seq"].as_i64().expect("checkpoint seq");
                    shared.ack(|l| {
                        let prev = l
                            .checkpoints
                            .insert((task.clone(), seq), (summary.clone(), state.clone()));
                        assert!(prev.is_none(), "checkpoint {task}#{seq} acknowledged twice");
                    });
                }
                Ok((s, b)) => {
                    shared.unexpected(format!("checkpoint {task}: {s} {b}"));
                    continue 'rounds;
                }
                Err(_) => break 'rounds,
            }
        }

        let result = json!({"worker": w, "round": round, "ok": true});
        let body = json!({"lease": token, "result": result});
        match api.post(&format!("/v1/tasks/{task}/complete"), &body).await {
            Ok((200, t)) => {
                if t["status"] != "done" {
                    shared.unexpected(format!("complete {task} answered {t}"));
                }
                shared.ack(|l| {
                    l.completed.insert(task.clone(), result.clone());
                });
            }
            Ok((s, b)) => shared.unexpected(format!("complete {task}: {s} {b}")),
            Err(_) => break,
        }
    }
    shared.finished.fetch_add(1, Ordering::SeqCst);
    shared.progress.notify_waiters();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Server::start(dir.path());
    let token_file = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let api = Arc::new(Api::new(&first.base, &first.token));

    let shared = Arc::new(Shared {
        ledger: Mutex::new(Ledger::default()),
        acked: AtomicUsize::new(0),
        progress: Notify::new(),
        finished: AtomicUsize::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(w, api.clone(), shared.clone(), stop.clone())))
        .collect();

    // Wait (on a notification, bounded) for enough acknowledged writes.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let woken = shared.progress.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if shared.acked.load(Ordering::SeqCst) >= KILL_AFTER
            || shared.finished.load(Ordering::SeqCst) == WORKERS
        {
            break;
        }
        if tokio::time::timeout_at(deadline, woken).await.is_err() {
            stop.store(true, Ordering::SeqCst);
            panic!(
                "only {} acknowledged writes within 120 s; stderr:\n{}",
                shared.acked.load(Ordering::SeqCst),
                first.proc.stderr()
            );
        }
    }
    let acked_at_kill = shared.acked.load(Ordering::SeqCst);
    assert!(
        acked_at_kill >= KILL_AFTER,
        "the clients finished before the kill with {acked_at_kill} writes; {:?}",
        shared.ledger.lock().unwrap().unexpected
    );

    // kill -9 with requests in flight.
    let status = first.proc.kill9();
    assert!(!status.success(), "SIGKILLed server reported {status:?}");
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("a client did not stop after the kill")
            .expect("client panicked");
    }
    let ledger = std::mem::take(&mut *shared.ledger.lock().unwrap());
    assert!(
        ledger.unexpected.is_empty(),
        "non-2xx answers during the run: {:#?}",
        ledger.unexpected
    );
    let acked_total = shared.acked.load(Ordering::SeqCst);
    eprintln!(
        "killed after {acked_at_kill} acknowledged writes ({acked_total} in all): {} tasks, {} leases, \
         {} checkpoints, {} completions, {} creates unanswered",
        ledger.created.len(),
        ledger.leased.len(),
        ledger.checkpoints.len(),
        ledger.completed.len(),
        ledger.unanswered_creates
    );

    // Restart on the same directory: same token file, same token.
    let second = Server::start(dir.path());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("admin.token")).unwrap(),
        token_file,
        "admin.token rewritten on restart"
    );
    assert_eq!(read_token(dir.path()), first.token);
    let api = Api::new(&second.base, &first.token);

    // Every task, page by page, each once.
    let mut tasks: HashMap<String, Value> = HashMap::new();
    let mut cursor: Option<String> = None;
    for _page in 0..1000 {
        let path = match &cursor {
            Some(c) => format!("/v1/tasks?limit=500&cursor={c}"),
            None => "/v1/tasks?limit=500".to_owned(),
        };
        let page = api.get_ok(&path).await;
        for t in page["tasks"].as_array().expect("tasks array") {
            let id = t["id"].as_str().unwrap().to_owned();
            assert!(
                tasks.insert(id.clone(), t.clone()).is_none(),
                "task {id} listed twice"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                cursor = None;
                break;
            }
        }
    }
    assert!(cursor.is_none(), "task listing did not end");
    for (id, title) in &ledger.created {
        let t = tasks
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged task {id} ({title}) lost"));
        assert_eq!(t["title"], title.as_str(), "task {id}");
    }
    let extra = tasks.len() - ledger.created.len().min(tasks.len());
    assert!(
        tasks.len() >= ledger.created.len() && extra <= ledger.unanswered_creates,
        "{} tasks after restart; {} acknowledged, {} creates unanswered",
        tasks.len(),
        ledger.created.len(),
        ledger.unanswered_creates
    );
    for id in tasks.keys() {
        if !ledger.created.contains_key(id) {
            // Only an unanswered create may have left this behind.
            let title = tasks[id]["title"].as_str().unwrap_or_default();
            assert!(
                title.starts_with('w') && !ledger.created.values().any(|t| t == title),
                "unexpected task {id} {title:?}"
            );
        }
    }

    // Granted leases left their attempt behind.
    for (task, attempt) in &ledger.leased {
        let t = &tasks[task];
        assert!(
            t["attempts"].as_u64().unwrap() >= *attempt,
            "task {task}: lease for attempt {attempt} acknowledged, task shows {}",
            t["attempts"]
        );
        let status = t["status"].as_str().unwrap();
        assert!(
            status == "running" || status == "done",
            "task {task}: leased, now {status}"
        );
        let list = api.get_ok(&format!("/v1/tasks/{task}/attempts")).await;
        assert!(
            list["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["n"].as_u64() == Some(*attempt)),
            "task {task}: attempt {attempt} missing: {list}"
        );
    }

    // Every acknowledged checkpoint, with its number and contents.
    let cp_tasks: HashSet<&String> = ledger.checkpoints.keys().map(|(t, _)| t).collect();
    let mut listed_cps: HashMap<String, Vec<Value>> = HashMap::new();
    for task in cp_tasks {
        let list = api.get_ok(&format!("/v1/tasks/{task}/checkpoints")).await;
        let cps = list["checkpoints"].as_array().unwrap().clone();
        let seqs: Vec<i64> = cps.iter().map(|c| c["seq"].as_i64().unwrap()).collect();
        let want: Vec<i64> = (1..=seqs.len() as i64).collect();
        assert_eq!(seqs, want, "task {task}: checkpoint numbers");
        assert_eq!(
            tasks[task]["checkpoint_seq"].as_i64(),
            seqs.last().copied(),
            "task {task}: checkpoint_seq"
        );
        listed_cps.insert(task.clone(), cps);
    }
    for ((task, seq), (summary, state)) in &ledger.checkpoints {
        let c = listed_cps[task]
            .iter()
            .find(|c| c["seq"].as_i64() == Some(*seq))
            .unwrap_or_else(|| panic!("acknowledged checkpoint {task}#{seq} lost"));
        assert_eq!(c["summary"], summary.as_str(), "checkpoint {task}#{seq}");
        assert_eq!(&c["state"], state, "checkpoint {task}#{seq}");
    }

    // Every acknowledged completion.
    for (task, result) in &ledger.completed {
        let t = &tasks[task];
        assert_eq!(t["status"], "done", "completed task {task}: {t}");
        assert_eq!(&t["result"], result, "completed task {task}");
    }

    // The event log: seq 1..=N without holes or repeats, one task.created
    // per task, and the log agrees with the state.
    let mut events: Vec<Value> = vec![];
    let mut after = 0i64;
    for _page in 0..10_000 {
        let page = api
            .get_ok(&format!("/v1/events?after={after}&limit=500"))
            .await;
        let batch = page["events"].as_array().unwrap();
        if batch.is_empty() {
            break;
        }
        events.extend(batch.iter().cloned());
        let next = page["next_after"].as_i64().unwrap();
        assert!(next > after, "next_after did not advance");
        after = next;
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["seq"].as_i64(),
            Some(i as i64 + 1),
            "event log has a gap or repeat at position {i}: {e}"
        );
    }
    let mut kinds: HashMap<(&str, &str), usize> = HashMap::new();
    for e in &events {
        if let (Some(task), Some(kind)) = (e["task_id"].as_str(), e["kind"].as_str()) {
            *kinds.entry((task, kind)).or_default() += 1;
        }
    }
    let count = |task: &str, kind: &str| kinds.get(&(task, kind)).copied().unwrap_or(0);
    for id in ledger.created.keys() {
        assert_eq!(count(id, "task.created"), 1, "task.created events of {id}");
    }
    let created_events = events
        .iter()
        .filter(|e| e["kind"] == "task.created")
        .count();
    assert_eq!(
        created_events,
        tasks.len(),
        "task.created events vs tasks listed"
    );
    for (id, t) in &tasks {
        assert_eq!(count(id, "task.created"), 1, "task.created events of {id}");
        assert_eq!(
            count(id, "task.leased") as u64,
            t["attempts"].as_u64().unwrap(),
            "task.leased events vs attempts of {id}"
        );
        assert_eq!(
            count(id, "checkpoint.created") as i64,
            t["checkpoint_seq"].as_i64().unwrap(),
            "checkpoint.created events vs checkpoint_seq of {id}"
        );
        let done = usize::from(t["status"] == "done");
        assert_eq!(
            count(id, "task.completed"),
            done,
            "task.completed events of {id} ({})",
            t["status"]
        );
    }

    // The log goes on from N + 1 after the crash.
    let last = events.last().map_or(0, |e| e["seq"].as_i64().unwrap());
    let (s, t) = api
        .post("/v1/tasks", &json!({"title": "after the crash"}))
        .await
        .expect("create after restart");
    assert_eq!(s, 201, "{t}");
    let page = api.get_ok(&format!("/v1/events?after={last}")).await;
    let seqs: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![last + 1], "events after the restart");
    assert_eq!(page["events"][0]["kind"], "task.created");
    assert_eq!(page["events"][0]["task_id"], t["id"]);
}
