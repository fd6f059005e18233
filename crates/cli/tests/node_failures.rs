//! Process-level failures of a multi-node deployment (several stateless
//! `aruntime serve` nodes on one PostgreSQL database), against the real
//! binary:
//!
//! - `kill -9` of one node while workers on both nodes stream
//!   claim → checkpoint → complete: the tasks the dead node's workers held
//!   come back when their leases expire, the other node's long-polling
//!   workers finish them, and no acknowledged write is lost or doubled
//!   (guarantees 1, 2 and 3 of DESIGN.md).
//! - a PostgreSQL restart while workers on both nodes stream
//!   create → claim → complete: while the database is down every node
//!   answers 503 `unavailable` (never a 500, never a hang), `/readyz` says
//!   so, and the nodes recover by themselves once it is back, without being
//!   restarted; nothing acknowledged is lost or duplicated.
//!
//! Synchronisation is by condition variables on what the clients observed;
//! the only sleeps are a short pause between retries of a request refused
//! while the database is down, and the 50 ms poll interval of `/readyz`
//! after the restart (there is no event to wait on for either).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aruntime_testkit::{Cluster, TestDb};
use serde_json::{Value, json};
use support::{
    Proc, Resp, START_TIMEOUT, Server, command, http, parse_listening, read_response, read_token,
    request_bytes,
};

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// `aruntime serve` on `url`. The first node on an empty database writes
/// `<data_dir>/admin.token`; later nodes write none and are given the first
/// node's token.
fn start_node(data_dir: &Path, url: &str, token: Option<&str>) -> Server {
    let dir = data_dir.to_str().expect("utf-8 temp path");
    let proc = Proc::spawn(command(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir,
        "--database",
        url,
    ]));
    let Some(line) = proc.first_line(START_TIMEOUT) else {
        proc.drain_output(Duration::from_secs(5));
        panic!(
            "node on {url} printed no address within {START_TIMEOUT:?}; stderr:\n{}",
            proc.stderr()
        );
    };
    let addr = parse_listening(&line);
    let token = match token {
        Some(t) => t.to_owned(),
        None => read_token(data_dir),
    };
    Server {
        proc,
        addr,
        base: format!("http://{addr}"),
        token,
        data_dir: data_dir.to_path_buf(),
    }
}

/// One request on a fresh connection; `Err` when there is no HTTP answer
/// (connection refused or cut, timeout), where `support::http` would panic.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> std::io::Result<Resp> {
    let mut req = request_bytes(addr, method, path, Some(token), body);
    if let Some(key) = idempotency_key {
        let at = req
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("request line")
            + 2;
        req.splice(at..at, format!("Idempotency-Key: {key}\r\n").into_bytes());
    }
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(&req)?;
    read_response(&mut s)
}

/// The body as JSON, or as a JSON string when it is not JSON.
fn body(r: &Resp) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()))
}

/// `error.code` of an error answer.
fn code(r: &Resp) -> String {
    body(r)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A GET through a live node that must answer 200.
fn get_ok(node: &Server, path: &str) -> Value {
    let r = http(node.addr, "GET", path, Some(&node.token), None);
    assert_eq!(
        r.status,
        200,
        "GET {path} on {}: {}",
        node.addr,
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

/// Every task, page by page; each id must be listed once.
fn all_tasks(node: &Server) -> BTreeMap<String, Value> {
    let mut tasks = BTreeMap::new();
    let mut cursor: Option<String> = None;
    for _page in 0..1000 {
        let path = match &cursor {
            Some(c) => format!("/v1/tasks?limit=500&cursor={c}"),
            None => "/v1/tasks?limit=500".to_owned(),
        };
        let page = get_ok(node, &path);
        for t in page["tasks"].as_array().expect("tasks array") {
            let id = t["id"].as_str().expect("task id").to_owned();
            assert!(
                tasks.insert(id.clone(), t.clone()).is_none(),
                "task {id} listed twice"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return tasks,
        }
    }
    panic!("task listing did not end after 1000 pages");
}

/// The whole event log, asserted gapless: seq 1..=N, no hole, no repeat.
fn all_events(node: &Server) -> Vec<Value> {
    let mut events: Vec<Value> = vec![];
    let mut after = 0i64;
    for _page in 0..10_000 {
        let page = get_ok(node, &format!("/v1/events?after={after}&limit=500"));
        let batch = page["events"].as_array().expect("events array");
        if batch.is_empty() {
            break;
        }
        events.extend(batch.iter().cloned());
        let next = page["next_after"].as_i64().expect("next_after");
        assert!(next > after, "next_after did not advance past {after}");
        after = next;
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["seq"].as_i64(),
            Some(i as i64 + 1),
            "the event log has a gap or a repeat at position {i}: {e}"
        );
    }
    events
}

/// (task, kind) → how many events.
fn event_counts(events: &[Value]) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for e in events {
        if let (Some(t), Some(k)) = (e["task_id"].as_str(), e["kind"].as_str()) {
            *counts.entry((t.to_owned(), k.to_owned())).or_default() += 1;
        }
    }
    counts
}

/// Board column → task count, read through `addr`; `None` without a 200.
fn board_counts(addr: SocketAddr, token: &str) -> Option<HashMap<String, u64>> {
    let r = call(addr, "GET", "/v1/board", token, None, None).ok()?;
    if r.status != 200 {
        return None;
    }
    let b = body(&r);
    Some(
        b["columns"]
            .as_array()?
            .iter()
            .filter_map(|c| Some((c["status"].as_str()?.to_owned(), c["count"].as_u64()?)))
            .collect(),
    )
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Milliseconds since the epoch of the API's timestamps,
/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, always this shape).
fn rfc3339_ms(s: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| -> i64 {
        s.get(r)
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("timestamp {s:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ"))
    };
    assert!(s.len() == 24 && s.ends_with('Z'), "timestamp {s:?}");
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23)
}

// ---------------------------------------------------------------------------
// 1. kill -9 of one node mid-load
// ---------------------------------------------------------------------------

const T1_TASKS: usize = 200;
/// Workers per node.
const T1_WORKERS: usize = 4;
/// Acknowledged completions before node A is killed.
const KILL_AFTER: usize = 60;
/// Lease TTL of the tasks and the claims, seconds.
const T1_TTL_S: u64 = 2;

/// A lease node B was granted on a task that had been leased before.
struct Retake {
    attempt: u64,
    at: Instant,
    /// `context.latest_checkpoint.seq` handed to the new attempt.
    latest_checkpoint: Option<i64>,
    /// `context.attempts`: (n, outcome) of the earlier attempts.
    earlier: Vec<(u64, String)>,
}

/// A lease a worker of node A held (granted, not completed) when A died.
struct Held {
    task: String,
    attempt: u64,
    /// The checkpoint it acknowledged under that lease, if any.
    checkpoint: Option<i64>,
    /// The lease's `expires_at` as the claim answered it.
    expires_at: String,
}

#[derive(Default)]
struct Ledger1 {
    /// Task id → title (acknowledged creates).
    created: BTreeMap<String, String>,
    /// (task, seq) → (summary, state) (acknowledged checkpoints).
    checkpoints: BTreeMap<(String, i64), (String, Value)>,
    /// Task → (node, result) (acknowledged completions).
    completed: BTreeMap<String, (char, Value)>,
    /// Leases A's frozen workers held when A was killed.
    held: Vec<Held>,
    /// A's workers parked holding leases.
    frozen: usize,
    /// Task → leases B got on it for attempt 2 or later.
    retakes: HashMap<String, Vec<Retake>>,
    /// 409 lease_lost answers (allowed: a lease may run out under load).
    lease_lost: Vec<String>,
    /// Anything else that was not expected.
    unexpected: Vec<String>,
    /// Workers that have stopped, per node.
    finished_a: usize,
    finished_b: usize,
}

struct Run1 {
    ledger: Mutex<Ledger1>,
    cv: Condvar,
    /// A's workers park (holding their leases) at their next checkpoint.
    freeze: AtomicBool,
    /// Set just before A is killed: from then on A's failures are expected.
    killing: AtomicBool,
    /// Set (under the lock) once A has been killed and reaped.
    killed: AtomicBool,
    /// The test failed: every worker stops.
    abort: AtomicBool,
    deadline: Instant,
}

impl Run1 {
    fn ledger(&self) -> MutexGuard<'_, Ledger1> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Ledger1)) {
        f(&mut self.ledger());
        self.cv.notify_all();
    }

    fn unexpected(&self, what: String) {
        self.update(|l| l.unexpected.push(what));
    }

    /// Waits (bounded) until `done` holds; returns whether it does.
    fn wait_for(&self, timeout: Duration, done: impl Fn(&Ledger1) -> bool) -> bool {
        let g = self.ledger();
        let (g, _) = self
            .cv
            .wait_timeout_while(g, timeout, |l| !done(l))
            .unwrap_or_else(|p| p.into_inner());
        done(&g)
    }
}

/// Unparks and stops the workers if the test fails while they run (a
/// failed assertion would otherwise wait for their deadline).
struct StopWorkers<'a>(&'a Run1);

impl Drop for StopWorkers<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abort.store(true, Ordering::SeqCst);
            self.0.killing.store(true, Ordering::SeqCst);
            self.0
                .update(|_| self.0.killed.store(true, Ordering::SeqCst));
        }
    }
}

/// Marks the worker finished when it returns, however it returns.
struct Finished<'a>(&'a Run1, char);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        let node = self.1;
        self.0.update(|l| match node {
            'A' => l.finished_a += 1,
            _ => l.finished_b += 1,
        });
    }
}

/// What a worker does after a request got no HTTP answer: on A once the
/// kill has begun that is expected (stop); anywhere else it is a failure.
fn no_answer(run: &Run1, node: char, what: &str, e: &std::io::Error) {
    if !(node == 'A' && run.killing.load(Ordering::SeqCst)) {
        run.unexpected(format!("{node}: {what}: no answer: {e}"));
    }
}

/// One worker: claim (max 2, long-poll 3 s, TTL 2 s), checkpoint once,
/// complete; bounded in rounds and time.
fn worker1(node: char, w: usize, addr: SocketAddr, token: &str, run: &Run1) {
    let _finished = Finished(run, node);
    let name = format!("{node}{w}");
    'claims: for round in 0..10_000 {
        if Instant::now() >= run.deadline
            || run.abort.load(Ordering::SeqCst)
            || run.ledger().completed.len() >= T1_TASKS
        {
            break;
        }
        if node == 'A' && run.killing.load(Ordering::SeqCst) {
            break;
        }
        let claim = json!({"worker": name, "max": 2, "wait_ms": 3000, "ttl_s": T1_TTL_S});
        let leases = match call(addr, "POST", "/v1/leases", token, Some(&claim), None) {
            Ok(r) if r.status == 200 => body(&r)["leases"].as_array().cloned().unwrap_or_default(),
            Ok(r) => {
                run.unexpected(format!("{name} claim: {} {}", r.status, body(&r)));
                continue;
            }
            Err(e) => {
                no_answer(run, node, "claim", &e);
                break;
            }
        };
        let claimed_at = Instant::now();
        if leases.is_empty() {
            // Nothing claimable for 3 s: stop once every task is done (a
            // completion A committed but could not acknowledge counts too).
            if node == 'B' {
                let done = board_counts(addr, token)
                    .and_then(|c| c.get("done").copied())
                    .unwrap_or(0);
                if done as usize >= T1_TASKS {
                    break;
                }
            }
            continue;
        }
        if node == 'B' {
            run.update(|l| {
                for g in &leases {
                    let attempt = g["attempt"].as_u64().unwrap_or(0);
                    if attempt < 2 {
                        continue;
                    }
                    let ctx = &g["context"];
                    let earlier = ctx["attempts"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|x| {
                                    (
                                        x["n"].as_u64().unwrap_or(0),
                                        x["outcome"].as_str().unwrap_or_default().to_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let task = g["task"]["id"].as_str().unwrap_or_default().to_owned();
                    l.retakes.entry(task).or_default().push(Retake {
                        attempt,
                        at: claimed_at,
                        latest_checkpoint: ctx["latest_checkpoint"]["seq"].as_i64(),
                        earlier,
                    });
                }
            });
        }
        for (i, g) in leases.iter().enumerate() {
            let task = g["task"]["id"].as_str().expect("leased task id").to_owned();
            let attempt = g["attempt"].as_u64().expect("attempt");
            let lease = g["lease"].as_str().expect("lease token").to_owned();

            let summary = format!("{task} attempt {attempt} by {name} round {round}");
            let state = json!({"node": node.to_string(), "worker": w, "attempt": attempt});
            let cp = json!({"lease": lease, "summary": summary, "state": state});
            let path = format!("/v1/tasks/{task}/checkpoints");
            let seq = match call(addr, "POST", &path, token, Some(&cp), None) {
                Ok(r) if r.status == 201 => {
                    let seq = body(&r)["seq"].as_i64().expect("checkpoint seq");
                    run.update(|l| {
                        let prev = l
                            .checkpoints
                            .insert((task.clone(), seq), (summary.clone(), state.clone()));
                        if prev.is_some() {
                            l.unexpected
                                .push(format!("checkpoint {task}#{seq} acknowledged twice"));
                        }
                    });
                    seq
                }
                Ok(r) if r.status == 409 && code(&r) == "lease_lost" => {
                    run.update(|l| l.lease_lost.push(format!("{name} checkpoint {task}")));
                    continue;
                }
                Ok(r) => {
                    run.unexpected(format!(
                        "{name} checkpoint {task}: {} {}",
                        r.status,
                        body(&r)
                    ));
                    continue;
                }
                Err(e) => {
                    no_answer(run, node, "checkpoint", &e);
                    break 'claims;
                }
            };

            if node == 'A' && run.freeze.load(Ordering::SeqCst) {
                // Park holding this lease (and the rest of the batch) until
                // A has been killed: these are the leases B must recover.
                let mut l = run.ledger();
                for (j, g) in leases.iter().enumerate().skip(i) {
                    l.held.push(Held {
                        task: g["task"]["id"].as_str().unwrap_or_default().to_owned(),
                        attempt: g["attempt"].as_u64().unwrap_or(0),
                        checkpoint: (j == i).then_some(seq),
                        expires_at: g["expires_at"].as_str().unwrap_or_default().to_owned(),
                    });
                }
                l.frozen += 1;
                run.cv.notify_all();
                let (l, _) = run
                    .cv
                    .wait_timeout_while(l, Duration::from_secs(120), |_| {
                        !run.killed.load(Ordering::SeqCst)
                    })
                    .unwrap_or_else(|p| p.into_inner());
                drop(l);
                // Its node is gone: the completion must get no answer.
                let done = json!({"lease": lease, "result": {"node": "A", "worker": w}});
                let path = format!("/v1/tasks/{task}/complete");
                if let Ok(r) = call(addr, "POST", &path, token, Some(&done), None) {
                    run.unexpected(format!(
                        "{name}: complete {task} on the killed node answered {} {}",
                        r.status,
                        body(&r)
                    ));
                }
                break 'claims;
            }

            let result = json!({"node": node.to_string(), "worker": w, "attempt": attempt});
            let done = json!({"lease": lease, "result": result});
            let path = format!("/v1/tasks/{task}/complete");
            match call(addr, "POST", &path, token, Some(&done), None) {
                Ok(r) if r.status == 200 => {
                    let t = body(&r);
                    run.update(|l| {
                        if t["status"] != "done" {
                            l.unexpected.push(format!("complete {task} answered {t}"));
                        }
                        if l.completed
                            .insert(task.clone(), (node, result.clone()))
                            .is_some()
                        {
                            l.unexpected
                                .push(format!("completion of {task} acknowledged twice"));
                        }
                    });
                }
                Ok(r) if r.status == 409 && code(&r) == "lease_lost" => {
                    run.update(|l| l.lease_lost.push(format!("{name} complete {task}")));
                }
                Ok(r) => {
                    run.unexpected(format!("{name} complete {task}: {} {}", r.status, body(&r)));
                }
                Err(e) => {
                    no_answer(run, node, "complete", &e);
                    break 'claims;
                }
            }
        }
    }
}

fn test_db() -> Option<TestDb> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(TestDb::create())
}

#[test]
fn kill_9_of_one_node_mid_load_loses_nothing() {
    let Some(db) = test_db() else {
        eprintln!("\n*** SKIPPING kill_9_of_one_node_mid_load_loses_nothing: no PostgreSQL ***\n");
        return;
    };
    let began = Instant::now();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = start_node(dir_a.path(), &db.url, None);
    let b = start_node(dir_b.path(), &db.url, Some(&a.token));
    assert!(
        !dir_b.path().join("admin.token").exists(),
        "the second node on the database wrote a token file"
    );

    let run = Run1 {
        ledger: Mutex::new(Ledger1::default()),
        cv: Condvar::new(),
        freeze: AtomicBool::new(false),
        killing: AtomicBool::new(false),
        killed: AtomicBool::new(false),
        abort: AtomicBool::new(false),
        deadline: Instant::now() + Duration::from_secs(150),
    };

    for i in 0..T1_TASKS {
        let node = if i % 2 == 0 { &a } else { &b };
        let title = format!("t{i}");
        let spec = json!({"title": title, "lease_ttl_s": T1_TTL_S, "max_attempts": 10});
        let r = http(node.addr, "POST", "/v1/tasks", Some(&a.token), Some(&spec));
        assert_eq!(r.status, 201, "create {title}: {}", body(&r));
        let id = r.json()["id"].as_str().expect("task id").to_owned();
        run.ledger().created.insert(id, title);
    }

    let mut killed_at: Option<Instant> = None;
    std::thread::scope(|s| {
        let _stop = StopWorkers(&run);
        let mut handles = vec![];
        for (node, server) in [('A', &a), ('B', &b)] {
            for w in 0..T1_WORKERS {
                let (addr, token, run) = (server.addr, a.token.clone(), &run);
                handles.push(s.spawn(move || worker1(node, w, addr, &token, run)));
            }
        }

        // Enough acknowledged completions (waited for, not slept for).
        let ok = run.wait_for(Duration::from_secs(120), |l| {
            l.completed.len() >= KILL_AFTER || l.finished_a + l.finished_b == 2 * T1_WORKERS
        });
        {
            let l = run.ledger();
            assert!(
                ok && l.completed.len() >= KILL_AFTER,
                "only {} completions acknowledged before the kill; unexpected: {:#?}",
                l.completed.len(),
                l.unexpected
            );
        }

        // Make sure A's workers hold leases when it dies: they park at
        // their next checkpoint.
        run.freeze.store(true, Ordering::SeqCst);
        let parked = run.wait_for(Duration::from_secs(30), |l| {
            l.frozen >= 1 || l.finished_a == T1_WORKERS
        });
        let completed_at_kill = run.ledger().completed.len();
        assert!(
            parked && run.ledger().frozen >= 1,
            "no worker of A parked holding a lease; unexpected: {:#?}",
            run.ledger().unexpected
        );

        run.killing.store(true, Ordering::SeqCst);
        let t_kill = Instant::now();
        killed_at = Some(t_kill);
        let status = a.proc.kill9();
        assert!(!status.success(), "SIGKILLed node reported {status:?}");
        run.update(|_| run.killed.store(true, Ordering::SeqCst));

        // B's long-polling workers finish A's held tasks once the leases
        // expire: wait for their acknowledged completions.
        let held: Vec<String> = run.ledger().held.iter().map(|h| h.task.clone()).collect();
        let recovered = run.wait_for(Duration::from_secs(60), |l| {
            held.iter()
                .all(|t| l.completed.get(t).is_some_and(|(n, _)| *n == 'B'))
                || l.finished_b == T1_WORKERS
        });
        let recovery = t_kill.elapsed();
        let all_done = run.wait_for(Duration::from_secs(120), |l| {
            l.finished_a + l.finished_b == 2 * T1_WORKERS
        });
        for h in handles {
            h.join().expect("a worker panicked");
        }
        assert!(all_done, "workers did not stop in time");

        let l = run.ledger();
        eprintln!(
            "kill -9 of node A after {completed_at_kill} acknowledged completions; \
             {} leases held by {} parked workers of A; held tasks completed through B \
             {} ms after the kill (all recovered: {recovered}); whole run {} ms; \
             {} checkpoints, {} completions acknowledged, {} lease_lost answers",
            l.held.len(),
            l.frozen,
            ms(recovery),
            ms(began.elapsed()),
            l.checkpoints.len(),
            l.completed.len(),
            l.lease_lost.len(),
        );
    });

    let l = std::mem::take(&mut *run.ledger());
    assert!(
        l.unexpected.is_empty(),
        "unexpected answers during the run: {:#?}",
        l.unexpected
    );
    let killed_at = killed_at.expect("A was killed");

    // Everything through the surviving node.
    let tasks = all_tasks(&b);
    assert_eq!(tasks.len(), T1_TASKS, "tasks listed through B");
    for (id, title) in &l.created {
        let t = tasks
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged task {id} ({title}) lost"));
        assert_eq!(t["title"], title.as_str(), "task {id}");
        assert_eq!(t["status"], "done", "task {id} not finished: {t}");
    }
    for (task, (node, result)) in &l.completed {
        assert_eq!(
            &tasks[task]["result"], result,
            "task {task}: result of the completion acknowledged by {node}"
        );
    }

    // Every acknowledged checkpoint, with its contents.
    let mut listed: HashMap<String, Vec<Value>> = HashMap::new();
    for ((task, seq), (summary, state)) in &l.checkpoints {
        let cps = listed.entry(task.clone()).or_insert_with(|| {
            get_ok(&b, &format!("/v1/tasks/{task}/checkpoints"))["checkpoints"]
                .as_array()
                .expect("checkpoints array")
                .clone()
        });
        let c = cps
            .iter()
            .find(|c| c["seq"].as_i64() == Some(*seq))
            .unwrap_or_else(|| panic!("acknowledged checkpoint {task}#{seq} lost"));
        assert_eq!(c["summary"], summary.as_str(), "checkpoint {task}#{seq}");
        assert_eq!(&c["state"], state, "checkpoint {task}#{seq}");
    }

    // The event log: gapless, one task.created and one task.completed each.
    let events = all_events(&b);
    let counts = event_counts(&events);
    let count = |t: &str, k: &str| {
        counts
            .get(&(t.to_owned(), k.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    for id in tasks.keys() {
        assert_eq!(count(id, "task.created"), 1, "task.created events of {id}");
        assert_eq!(
            count(id, "task.completed"),
            1,
            "task.completed events of {id}"
        );
        assert_eq!(
            count(id, "task.leased") as u64,
            tasks[id]["attempts"].as_u64().expect("attempts"),
            "task.leased events vs attempts of {id}"
        );
    }

    // The leases A's workers held: abandoned when they expired, then the
    // task was completed through B, whose attempt was handed the held
    // attempt's checkpoint and its history.
    assert!(!l.held.is_empty(), "A held no lease when it was killed");
    for h in &l.held {
        let attempts = get_ok(&b, &format!("/v1/tasks/{}/attempts", h.task));
        let list = attempts["attempts"].as_array().expect("attempts array");
        let mine = list
            .iter()
            .find(|x| x["n"].as_u64() == Some(h.attempt))
            .unwrap_or_else(|| {
                panic!("task {}: attempt {} missing: {attempts}", h.task, h.attempt)
            });
        assert_eq!(
            mine["outcome"], "abandoned",
            "task {}: the attempt A held when it was killed: {attempts}",
            h.task
        );
        let last = list.last().expect("an attempt");
        // Not taken over before A's lease ran out (guarantee 1): compared
        // on the server's clock, as the API reports it.
        let b_started = last["started_at"].as_str().unwrap_or_default();
        let (expiry, start) = (rfc3339_ms(&h.expires_at), rfc3339_ms(b_started));
        assert!(
            start >= expiry,
            "task {}: attempt {} started at {b_started}, before A's lease expired at {}",
            h.task,
            last["n"],
            h.expires_at
        );
        eprintln!(
            "  held task {} (attempt {}, lease expiring at {}): attempt {} leased on B \
             {} ms after that expiry, {} ms after the kill; completed through B",
            h.task,
            h.attempt,
            h.expires_at,
            last["n"],
            start - expiry,
            l.retakes
                .get(&h.task)
                .and_then(|v| v.first())
                .map_or(0, |r| ms(r.at.saturating_duration_since(killed_at))),
        );
        assert_eq!(
            last["outcome"], "completed",
            "task {}: last attempt: {attempts}",
            h.task
        );
        assert!(
            last["n"].as_u64() > Some(h.attempt),
            "task {}: completed by attempt {} although attempt {} was A's: {attempts}",
            h.task,
            last["n"],
            h.attempt
        );
        let (node, _) = l
            .completed
            .get(&h.task)
            .unwrap_or_else(|| panic!("held task {} has no acknowledged completion", h.task));
        assert_eq!(*node, 'B', "held task {} completed through {node}", h.task);
        let retake = l
            .retakes
            .get(&h.task)
            .and_then(|v| v.iter().find(|r| r.attempt > h.attempt))
            .unwrap_or_else(|| panic!("held task {} was never re-leased on B", h.task));
        assert!(
            retake
                .earlier
                .iter()
                .any(|(n, o)| *n == h.attempt && o == "abandoned"),
            "task {}: the context of attempt {} does not show attempt {} abandoned: {:?}",
            h.task,
            retake.attempt,
            h.attempt,
            retake.earlier
        );
        if let Some(seq) = h.checkpoint {
            assert!(
                retake.latest_checkpoint >= Some(seq),
                "task {}: attempt {} resumed from checkpoint {:?}, A had acknowledged #{seq}",
                h.task,
                retake.attempt,
                retake.latest_checkpoint
            );
        }
    }
    let abandoned_any = tasks.keys().any(|id| {
        get_ok(&b, &format!("/v1/tasks/{id}/attempts"))["attempts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["outcome"] == "abandoned"))
    });
    assert!(abandoned_any, "no task shows an abandoned attempt");
    drop(dir_a);
}

// ---------------------------------------------------------------------------
// 2. PostgreSQL restart mid-load
// ---------------------------------------------------------------------------

/// Workers per node.
const T2_WORKERS: usize = 3;
/// Acknowledged writes before the database is stopped, and again after it
/// is back.
const T2_WRITES: usize = 150;
/// Lease TTL of the tasks, seconds (leases granted but not acknowledged
/// while the database went away come back this fast).
const T2_TTL_S: u64 = 2;

#[derive(Default)]
struct Ledger2 {
    /// Title (also the Idempotency-Key) → task id (acknowledged creates).
    created: BTreeMap<String, String>,
    /// Every title a create was sent for, answered or not.
    sent: BTreeSet<String>,
    /// Task → result (acknowledged completions).
    completed: BTreeMap<String, Value>,
    /// Completions refused 409 after a 503 whose first try had committed
    /// without an answer (the task shows this worker's result; allowed,
    /// not acknowledged).
    committed_unanswered: Vec<String>,
    /// Completions refused 409 after a 503 because the lease ran out while
    /// the database was away (allowed; the task is finished later).
    expired_in_outage: Vec<String>,
    /// 409 lease_lost without an earlier 503 (the lease ran out while the
    /// database was away; allowed).
    lease_lost: Vec<String>,
    /// 503 `unavailable` answers seen by the workers, per node.
    unavailable: [usize; 2],
    /// When both nodes answered /readyz 200 again.
    ready_at: Option<Instant>,
    /// 503 answers to requests sent after that: "request → 503".
    unavailable_after_ready: Vec<String>,
    /// 503 answers that arrived after PostgreSQL was running again
    /// (sent while it was down or after): "request → 503".
    unavailable_after_restart: Vec<String>,
    /// Acknowledged writes (create, claim with a lease, complete).
    acked: usize,
    /// When PostgreSQL was started again, and the first acknowledged write
    /// after that.
    restarted_at: Option<Instant>,
    first_ack_after_restart: Option<Instant>,
    unexpected: Vec<String>,
    finished: usize,
}

struct Run2 {
    ledger: Mutex<Ledger2>,
    cv: Condvar,
    /// The workers stop after their current cycle.
    stop: AtomicBool,
    /// The test failed: the workers stop at once, retries included.
    abort: AtomicBool,
    deadline: Instant,
}

impl Run2 {
    fn ledger(&self) -> MutexGuard<'_, Ledger2> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Ledger2)) {
        f(&mut self.ledger());
        self.cv.notify_all();
    }

    fn ack(&self, f: impl FnOnce(&mut Ledger2)) {
        self.update(|l| {
            f(l);
            l.acked += 1;
            if l.restarted_at.is_some() && l.first_ack_after_restart.is_none() {
                l.first_ack_after_restart = Some(Instant::now());
            }
        });
    }

    fn unexpected(&self, what: String) {
        self.update(|l| l.unexpected.push(what));
    }

    fn wait_for(&self, timeout: Duration, done: impl Fn(&Ledger2) -> bool) -> bool {
        let g = self.ledger();
        let (g, _) = self
            .cv
            .wait_timeout_while(g, timeout, |l| !done(l))
            .unwrap_or_else(|p| p.into_inner());
        done(&g)
    }
}

/// A request retried while it is answered 503 (bounded in count and by the
/// run's deadline). Returns the first other answer and whether a 503 came
/// before it; `None` at the deadline.
#[allow(clippy::too_many_arguments)]
fn retrying(
    run: &Run2,
    node: usize,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body_: Option<&Value>,
    key: Option<&str>,
) -> Option<(Resp, bool)> {
    let mut saw_503 = false;
    for _try in 0..100_000 {
        if Instant::now() >= run.deadline || run.abort.load(Ordering::SeqCst) {
            return None;
        }
        let sent = Instant::now();
        match call(addr, method, path, token, body_, key) {
            Ok(r) if r.status == 503 => {
                saw_503 = true;
                if code(&r) != "unavailable" {
                    run.unexpected(format!("{method} {path}: 503 {}", body(&r)));
                }
                run.update(|l| {
                    l.unavailable[node] += 1;
                    let what = format!(
                        "node {node}: {method} {} sent {} ms before the restart → 503 {}",
                        path.split('/').take(3).collect::<Vec<_>>().join("/"),
                        l.restarted_at
                            .map_or(0, |t| t.duration_since(sent).as_millis()),
                        body(&r)["error"]["message"]
                    );
                    if l.ready_at.is_some_and(|t| sent > t) {
                        l.unavailable_after_ready.push(what.clone());
                    }
                    if l.restarted_at.is_some() {
                        l.unavailable_after_restart.push(what);
                    }
                });
            }
            Ok(r) => return Some((r, saw_503)),
            // The nodes stay up in this test: a request without an answer
            // (a hang past 30 s, a cut connection) is a failure.
            Err(e) => run.unexpected(format!("{method} {path} on node {node}: no answer: {e}")),
        }
        // The database is down: pause briefly before retrying. This is a
        // retry interval, not synchronisation (the answer is re-checked).
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn worker2(node: usize, w: usize, addr: SocketAddr, token: &str, run: &Run2) {
    struct Done<'a>(&'a Run2);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.update(|l| l.finished += 1);
        }
    }
    let _done = Done(run);
    let name = format!("n{node}w{w}");
    for round in 0..5_000 {
        if run.stop.load(Ordering::SeqCst) || Instant::now() >= run.deadline {
            break;
        }
        // Create, with an Idempotency-Key so a retry after an unanswered
        // (possibly committed) attempt cannot create a second task.
        let title = format!("{name}-r{round}");
        run.update(|l| {
            l.sent.insert(title.clone());
        });
        let spec = json!({"title": title, "lease_ttl_s": T2_TTL_S, "max_attempts": 20});
        let Some((r, _)) = retrying(
            run,
            node,
            addr,
            "POST",
            "/v1/tasks",
            token,
            Some(&spec),
            Some(title.as_str()),
        ) else {
            break;
        };
        if r.status != 201 && r.status != 200 {
            run.unexpected(format!("create {title}: {} {}", r.status, body(&r)));
            continue;
        }
        let id = body(&r)["id"].as_str().expect("task id").to_owned();
        run.ack(|l| {
            if let Some(prev) = l.created.insert(title.clone(), id.clone()) {
                l.unexpected
                    .push(format!("create {title} answered {id}, earlier {prev}"));
            }
        });

        // Claim whatever is ready (not necessarily the task just made).
        let claim = json!({"worker": name, "max": 1, "wait_ms": 1000});
        let Some((r, _)) = retrying(
            run,
            node,
            addr,
            "POST",
            "/v1/leases",
            token,
            Some(&claim),
            None,
        ) else {
            break;
        };
        if r.status != 200 {
            run.unexpected(format!("claim: {} {}", r.status, body(&r)));
            continue;
        }
        let leases = body(&r)["leases"].as_array().cloned().unwrap_or_default();
        let Some(g) = leases.first() else {
            continue;
        };
        let task = g["task"]["id"].as_str().expect("task id").to_owned();
        let lease = g["lease"].as_str().expect("lease").to_owned();
        run.ack(|_| {});

        let result = json!({"by": name, "round": round});
        let done = json!({"lease": lease, "result": result});
        let path = format!("/v1/tasks/{task}/complete");
        let Some((r, saw_503)) = retrying(run, node, addr, "POST", &path, token, Some(&done), None)
        else {
            break;
        };
        match r.status {
            200 => {
                let t = body(&r);
                run.ack(|l| {
                    if t["status"] != "done" {
                        l.unexpected.push(format!("complete {task} answered {t}"));
                    }
                    if l.completed.insert(task.clone(), result.clone()).is_some() {
                        l.unexpected
                            .push(format!("completion of {task} acknowledged twice"));
                    }
                });
            }
            409 if saw_503 && matches!(code(&r).as_str(), "lease_lost" | "invalid_transition") => {
                // Did the try answered 503 commit after all?
                let got = retrying(
                    run,
                    node,
                    addr,
                    "GET",
                    &format!("/v1/tasks/{task}"),
                    token,
                    None,
                    None,
                );
                let t = got.map(|(r, _)| body(&r)).unwrap_or_default();
                run.update(|l| {
                    if t["status"] == "done" && t["result"] == result {
                        l.committed_unanswered.push(task.clone());
                    } else {
                        l.expired_in_outage.push(task.clone());
                    }
                });
            }
            409 if code(&r) == "lease_lost" => {
                run.update(|l| l.lease_lost.push(task.clone()));
            }
            s => run.unexpected(format!("complete {task}: {s} {}", body(&r))),
        }
    }
}

/// Stops the throwaway cluster however the test ends.
struct ClusterGuard(Cluster);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        // A no-op error if it is already stopped.
        let _ = self.0.stop();
    }
}

/// `GET /readyz` → (status, error code, how long the answer took).
fn readyz(addr: SocketAddr, token: &str) -> (Option<u16>, String, Duration) {
    let t = Instant::now();
    match call(addr, "GET", "/readyz", token, None, None) {
        Ok(r) => (Some(r.status), code(&r), t.elapsed()),
        Err(e) => (None, e.to_string(), t.elapsed()),
    }
}

#[test]
fn postgres_restart_mid_load_nodes_recover_and_lose_nothing() {
    let began = Instant::now();
    // Under /tmp and traversable: the cluster runs as user postgres.
    let tmp = tempfile::Builder::new()
        .prefix("aruntime-pgrestart-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod 0755");
    }
    let cluster = match Cluster::init(&tmp.path().join("pg")) {
        Ok(c) => c,
        Err(e) if e.starts_with("no /usr/lib/postgresql") || e.starts_with("no initdb") => {
            eprintln!(
                "\n*** SKIPPING postgres_restart_mid_load_nodes_recover_and_lose_nothing: \
                 no PostgreSQL binaries ({e}) ***\n"
            );
            return;
        }
        Err(e) => panic!("could not start a throwaway PostgreSQL cluster: {e}"),
    };
    let guard = ClusterGuard(cluster);
    let url = guard.0.url("postgres");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(dir_a.path(), &url, None);
    let b = start_node(dir_b.path(), &url, Some(&a.token));
    assert!(
        !dir_b.path().join("admin.token").exists(),
        "the second node on the database wrote a token file"
    );
    let nodes = [&a, &b];

    let run = Run2 {
        ledger: Mutex::new(Ledger2::default()),
        cv: Condvar::new(),
        stop: AtomicBool::new(false),
        abort: AtomicBool::new(false),
        deadline: Instant::now() + Duration::from_secs(240),
    };

    let mut figures = String::new();
    std::thread::scope(|s| {
        // Stops the workers if an assertion fails while they run.
        struct Stop<'a>(&'a Run2);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.abort.store(true, Ordering::SeqCst);
                }
                self.0.stop.store(true, Ordering::SeqCst);
            }
        }
        let _stop = Stop(&run);
        let mut handles = vec![];
        for (i, server) in nodes.iter().enumerate() {
            for w in 0..T2_WORKERS {
                let (addr, token, run) = (server.addr, a.token.clone(), &run);
                handles.push(s.spawn(move || worker2(i, w, addr, &token, run)));
            }
        }
        let all = 2 * T2_WORKERS;

        // Some acknowledged writes first.
        let ok = run.wait_for(Duration::from_secs(60), |l| {
            l.acked >= T2_WRITES || l.finished == all
        });
        assert!(
            ok && run.ledger().acked >= T2_WRITES,
            "only {} writes acknowledged before the restart; unexpected: {:#?}",
            run.ledger().acked,
            run.ledger().unexpected
        );

        // Stop PostgreSQL under load.
        let acked_before_stop = run.ledger().acked;
        let stopped_at = Instant::now();
        guard.0.stop().expect("stop PostgreSQL");
        let acked_when_stopped = run.ledger().acked;

        // Both nodes say so: a write and /readyz answer 503 `unavailable`
        // (asked of both nodes at once).
        let probes: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let (addr, token) = (n.addr, n.token.clone());
                s.spawn(move || {
                    let t = Instant::now();
                    let key = format!("probe-{i}");
                    let spec = json!({"title": key, "lease_ttl_s": T2_TTL_S});
                    let w = call(addr, "POST", "/v1/tasks", &token, Some(&spec), Some(&key));
                    let write = w.map(|r| (r.status, code(&r))).map_err(|e| e.to_string());
                    let write_took = t.elapsed();
                    (write, write_took, readyz(addr, &token))
                })
            })
            .collect();
        for (i, p) in probes.into_iter().enumerate() {
            let (write, write_took, (ready, ready_code, ready_took)) =
                p.join().expect("probe panicked");
            assert_eq!(
                write,
                Ok((503, "unavailable".to_owned())),
                "node {i}: POST /v1/tasks with PostgreSQL down"
            );
            assert_eq!(
                (ready, ready_code.as_str()),
                (Some(503), "unavailable"),
                "node {i}: /readyz with PostgreSQL down"
            );
            figures.push_str(&format!(
                "node {i} with PostgreSQL down: POST /v1/tasks answered 503 in {} ms, \
                 /readyz 503 in {} ms\n",
                ms(write_took),
                ms(ready_took)
            ));
        }

        // Start it again; the nodes are NOT restarted.
        let acked_before_start = run.ledger().acked;
        guard.0.start().expect("start PostgreSQL again");
        let started_at = Instant::now();
        run.update(|l| l.restarted_at = Some(started_at));
        let outage = started_at.duration_since(stopped_at);

        // Poll /readyz (bounded: every 50 ms for up to 60 s) until both
        // nodes are ready; there is no event to wait on.
        let mut ready_after: [Option<Duration>; 2] = [None, None];
        let poll_deadline = started_at + Duration::from_secs(60);
        for _poll in 0..100_000 {
            for (i, n) in nodes.iter().enumerate() {
                if ready_after[i].is_none() && readyz(n.addr, &n.token).0 == Some(200) {
                    ready_after[i] = Some(started_at.elapsed());
                }
            }
            if ready_after.iter().all(Option::is_some) || Instant::now() >= poll_deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (ra, rb) = (ready_after[0], ready_after[1]);
        assert!(
            ra.is_some() && rb.is_some(),
            "nodes not ready 60 s after PostgreSQL came back (A: {ra:?}, B: {rb:?}); \
             stderr A:\n{}\nstderr B:\n{}",
            a.proc.stderr(),
            b.proc.stderr()
        );

        run.update(|l| l.ready_at = Some(Instant::now()));

        // The workers go on: as many acknowledged writes again.
        let acked_at_start = run.ledger().acked;
        let more = run.wait_for(Duration::from_secs(60), |l| {
            l.acked >= acked_at_start + T2_WRITES || l.finished == all
        });
        let (acked_now, first_after) = {
            let l = run.ledger();
            (l.acked, l.first_ack_after_restart)
        };
        run.stop.store(true, Ordering::SeqCst);
        let stopped = run.wait_for(Duration::from_secs(120), |l| l.finished == all);
        for h in handles {
            h.join().expect("a worker panicked");
        }
        assert!(stopped, "workers did not stop in time");
        assert!(
            more && acked_now >= acked_at_start + T2_WRITES,
            "only {} writes acknowledged after the restart (60 s); unexpected: {:#?}",
            acked_now - acked_at_start,
            run.ledger().unexpected
        );
        let l = run.ledger();
        figures.push_str(&format!(
            "PostgreSQL stopped after {acked_before_stop} acknowledged writes \
             ({} more answered while pg_ctl stop ran, {} while it was down), down for {} ms; \
             readyz 200 again {} ms (A) and {} ms (B) after pg_ctl start returned; \
             first acknowledged write {} ms after it; workers saw {} + {} 503s, {} of them to \
             requests sent after both nodes were ready {:?}, {} answered after the restart {:?}; completions refused 409 after a \
             503: {} had committed unanswered, {} lost their lease in the outage; \
             {} lease_lost otherwise\n",
            acked_when_stopped - acked_before_stop,
            acked_before_start - acked_when_stopped,
            ms(outage),
            ms(ra.unwrap_or_default()),
            ms(rb.unwrap_or_default()),
            first_after.map_or(0, |t| ms(t.saturating_duration_since(started_at))),
            l.unavailable[0],
            l.unavailable[1],
            l.unavailable_after_ready.len(),
            l.unavailable_after_ready,
            l.unavailable_after_restart.len(),
            l.unavailable_after_restart,
            l.committed_unanswered.len(),
            l.expired_in_outage.len(),
            l.lease_lost.len(),
        ));
    });

    // Finish every task left over (leases granted without an answer while
    // the database went away expire after the TTL; the long-poll is woken
    // then), alternating the nodes.
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    let mut drained = false;
    for round in 0..1_000 {
        let counts = board_counts(a.addr, &a.token).expect("board");
        let open: u64 = ["backlog", "ready", "running", "blocked"]
            .iter()
            .map(|c| counts.get(*c).copied().unwrap_or(0))
            .sum();
        if open == 0 {
            drained = true;
            break;
        }
        if Instant::now() >= drain_deadline {
            break;
        }
        let node = nodes[round % 2];
        let claim = json!({"worker": "drain", "max": 10, "wait_ms": 3000});
        let r = http(
            node.addr,
            "POST",
            "/v1/leases",
            Some(&a.token),
            Some(&claim),
        );
        assert_eq!(r.status, 200, "drain claim: {}", body(&r));
        for g in r.json()["leases"].as_array().expect("leases") {
            let task = g["task"]["id"].as_str().expect("task id").to_owned();
            let result = json!({"by": "drain"});
            let done = json!({"lease": g["lease"], "result": result});
            let path = format!("/v1/tasks/{task}/complete");
            let r = http(node.addr, "POST", &path, Some(&a.token), Some(&done));
            assert_eq!(r.status, 200, "drain complete {task}: {}", body(&r));
            run.ack(|l| {
                l.completed.insert(task.clone(), result.clone());
            });
        }
    }
    assert!(drained, "tasks still open 60 s after the workers stopped");

    let l = std::mem::take(&mut *run.ledger());
    eprint!("{figures}");
    eprintln!(
        "{} tasks acknowledged, {} creates sent, {} completions acknowledged; whole run {} ms",
        l.created.len(),
        l.sent.len(),
        l.completed.len(),
        ms(began.elapsed())
    );
    assert!(
        l.unexpected.is_empty(),
        "unexpected answers during the run: {:#?}",
        l.unexpected
    );
    assert!(
        l.unavailable[0] > 0 && l.unavailable[1] > 0,
        "the workers of each node should have seen 503s: {:?}",
        l.unavailable
    );

    // Every acknowledged task exactly once (by its Idempotency-Key/title),
    // no task that was never asked for, everything done.
    for (label, node) in [("A", &a), ("B", &b)] {
        let tasks = all_tasks(node);
        let mut by_title: HashMap<&str, Vec<&String>> = HashMap::new();
        for (id, t) in &tasks {
            by_title
                .entry(t["title"].as_str().expect("title"))
                .or_default()
                .push(id);
        }
        for (title, ids) in &by_title {
            assert_eq!(ids.len(), 1, "via {label}: title {title} has tasks {ids:?}");
            assert!(
                l.sent.contains(*title),
                "via {label}: task {title:?} ({ids:?}) was never asked for \
                 (a create answered 503 committed?)"
            );
        }
        for (title, id) in &l.created {
            let t = tasks
                .get(id)
                .unwrap_or_else(|| panic!("via {label}: acknowledged task {id} ({title}) lost"));
            assert_eq!(t["title"], title.as_str(), "task {id}");
        }
        for (id, t) in &tasks {
            assert_eq!(t["status"], "done", "via {label}: task {id} not done: {t}");
        }
        for (id, result) in &l.completed {
            let t = tasks
                .get(id)
                .unwrap_or_else(|| panic!("via {label}: completed task {id} lost"));
            assert_eq!(&t["result"], result, "via {label}: result of {id}");
        }

        // The event log.
        let events = all_events(node);
        let counts = event_counts(&events);
        for id in tasks.keys() {
            for kind in ["task.created", "task.completed"] {
                let n = counts
                    .get(&(id.clone(), kind.to_owned()))
                    .copied()
                    .unwrap_or(0);
                assert_eq!(n, 1, "via {label}: {kind} events of {id}");
            }
        }
        let created = events
            .iter()
            .filter(|e| e["kind"] == "task.created")
            .count();
        assert_eq!(created, tasks.len(), "via {label}: task.created events");
    }

    drop(a);
    drop(b);
    guard.0.stop().expect("stop the throwaway PostgreSQL");
}
