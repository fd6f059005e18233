//! Guarantees 1 and 3 over HTTP: exclusive leases under racing workers,
//! fencing of a zombie worker after expiry, and recovery with the latest
//! checkpoint and earlier attempts' notes. Time moves only by the mock clock.

#[macro_use]
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use support::{Backend, code, id};

async fn eight_workers_race_for_500_tasks_and_each_completes_once(backend: Backend) {
    let srv = Arc::new(server!(backend));
    let worker = srv.token("default", "worker").await;
    let mut ids = HashSet::new();
    for i in 0..500 {
        let t = srv
            .task(&srv.admin, json!({"title": format!("task {i}")}))
            .await;
        ids.insert(id(&t));
    }
    // task id -> lease token currently held; a second grant while one is
    // live is the bug this test exists to catch.
    let live: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let completed: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut workers = vec![];
    for w in 0..8 {
        let (srv, worker, live, completed) =
            (srv.clone(), worker.clone(), live.clone(), completed.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let max = 1 + (w % 4);
                let leases = srv.claim(&worker, &format!("w{w}"), max).await;
                if leases.is_empty() {
                    return;
                }
                for l in &leases {
                    let task = l["task"]["id"].as_str().unwrap().to_owned();
                    let token = l["lease"].as_str().unwrap().to_owned();
                    let prev = live.lock().unwrap().insert(task.clone(), token.clone());
                    assert!(prev.is_none(), "task {task} leased twice at once");
                }
                for l in leases {
                    let task = l["task"]["id"].as_str().unwrap().to_owned();
                    let token = l["lease"].as_str().unwrap();
                    let (s, _) = srv
                        .post(
                            &format!("/v1/tasks/{task}/checkpoints"),
                            &worker,
                            json!({"lease": token, "summary": "half"}),
                        )
                        .await;
                    assert_eq!(s, 201);
                    live.lock().unwrap().remove(&task);
                    let (s, v) = srv
                        .post(
                            &format!("/v1/tasks/{task}/complete"),
                            &worker,
                            json!({"lease": token, "result": {"by": w}}),
                        )
                        .await;
                    assert_eq!(s, 200, "{v}");
                    completed.lock().unwrap().push(task);
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let completed = completed.lock().unwrap().clone();
    assert_eq!(completed.len(), 500);
    assert_eq!(completed.iter().cloned().collect::<HashSet<_>>(), ids);
    // The durable record agrees: one attempt each, done, one completion event.
    let mut events = vec![];
    let mut after = 0;
    loop {
        let (_, page) = srv
            .get(&format!("/v1/events?after={after}&limit=500"), &srv.admin)
            .await;
        let batch = page["events"].as_array().unwrap().clone();
        if batch.is_empty() {
            break;
        }
        after = page["next_after"].as_i64().unwrap();
        events.extend(batch);
    }
    let mut done_per_task: HashMap<String, usize> = HashMap::new();
    for e in &events {
        if e["kind"] == "task.completed" {
            *done_per_task
                .entry(e["task_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(done_per_task.len(), 500);
    assert!(done_per_task.values().all(|n| *n == 1));
    let (_, board) = srv.get("/v1/board", &srv.admin).await;
    let done = board["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "done")
        .unwrap();
    assert_eq!(done["count"], 500);
    for t in ids.iter().take(20) {
        let (_, a) = srv
            .get(&format!("/v1/tasks/{t}/attempts"), &srv.admin)
            .await;
        assert_eq!(a["attempts"].as_array().unwrap().len(), 1);
    }
}

async fn zombie_worker_is_fenced_and_next_attempt_resumes_from_its_checkpoint(backend: Backend) {
    let srv = server!(backend);
    let worker = srv.token("default", "worker").await;
    let t = srv
        .task(
            &srv.admin,
            json!({"title": "port the parser", "acceptance": ["tests pass"], "lease_ttl_s": 30}),
        )
        .await;
    let tid = id(&t);
    let first = srv.claim(&worker, "zombie", 1).await.remove(0);
    let zombie = first["lease"].as_str().unwrap().to_owned();
    assert_eq!(first["attempt"], 1);
    let (s, _) = srv
        .post(
            &format!("/v1/tasks/{tid}/checkpoints"),
            &worker,
            json!({"lease": zombie, "summary": "lexer done", "state": {"step": 2}}),
        )
        .await;
    assert_eq!(s, 201);

    // Still live one second before expiry (the checkpoint renewed it)...
    srv.advance_s(29);
    let (s, _) = srv
        .post(
            &format!("/v1/leases/{zombie}/heartbeat"),
            &worker,
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    // ...then the worker goes silent past its TTL.
    srv.advance_s(31);
    let before = srv
        .get(&format!("/v1/tasks/{tid}/checkpoints"), &srv.admin)
        .await
        .1;
    for (path, body) in [
        (format!("/v1/leases/{zombie}/heartbeat"), json!({})),
        (
            format!("/v1/tasks/{tid}/checkpoints"),
            json!({"lease": zombie, "summary": "late"}),
        ),
        (
            format!("/v1/tasks/{tid}/complete"),
            json!({"lease": zombie, "result": "late"}),
        ),
        (
            format!("/v1/tasks/{tid}/fail"),
            json!({"lease": zombie, "error": "late"}),
        ),
        (format!("/v1/tasks/{tid}/release"), json!({"lease": zombie})),
        (
            format!("/v1/tasks/{tid}/block"),
            json!({"lease": zombie, "reason": "late"}),
        ),
    ] {
        let (s, v) = srv.post(&path, &worker, body).await;
        assert_eq!((s, code(&v)), (409, "lease_lost"), "{path}: {v}");
    }
    let after = srv
        .get(&format!("/v1/tasks/{tid}/checkpoints"), &srv.admin)
        .await
        .1;
    assert_eq!(before, after, "a fenced write changed the checkpoints");

    // No sweeper has to run: the claim itself sees the expiry.
    let second = srv.claim(&worker, "rescuer", 1).await.remove(0);
    assert_eq!(second["task"]["id"], tid.as_str());
    assert_eq!(second["attempt"], 2);
    let ctx = &second["context"];
    assert_eq!(ctx["latest_checkpoint"]["summary"], "lexer done");
    assert_eq!(ctx["latest_checkpoint"]["state"], json!({"step": 2}));
    assert_eq!(ctx["acceptance"], json!(["tests pass"]));
    let attempts = ctx["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["outcome"], "abandoned");
    assert_eq!(attempts[0]["worker"], "zombie");
    assert!(
        attempts[0]["notes"]
            .as_str()
            .unwrap()
            .contains("Last checkpoint: #1")
    );

    // The zombie still cannot write, even though the task is running again.
    let (s, v) = srv
        .post(
            &format!("/v1/tasks/{tid}/complete"),
            &worker,
            json!({"lease": zombie}),
        )
        .await;
    assert_eq!((s, code(&v)), (409, "lease_lost"));
    let lease = second["lease"].as_str().unwrap();
    let (s, v) = srv
        .post(
            &format!("/v1/tasks/{tid}/complete"),
            &worker,
            json!({"lease": lease, "result": "ok"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "done");
    assert_eq!(v["result"], "ok");
}

async fn handoff_notes_and_do_not_retry_reach_every_later_attempt(backend: Backend) {
    let srv = server!(backend);
    let w = srv.token("default", "agent").await;
    let tid = id(&srv
        .task(
            &w,
            json!({"title": "fix the flaky test", "max_attempts": 5}),
        )
        .await);

    let l1 = srv.claim(&w, "session-1", 1).await.remove(0);
    let (s, _) = srv
        .post(
            &format!("/v1/tasks/{tid}/release"),
            &w,
            json!({"lease": l1["lease"], "notes": "context window full; bisected to commit abc", "do_not_retry": ["raising the timeout"]}),
        )
        .await;
    assert_eq!(s, 200);

    let l2 = srv.claim(&w, "session-2", 1).await.remove(0);
    assert_eq!(l2["attempt"], 2);
    assert_eq!(
        l2["context"]["attempts"][0]["notes"],
        "context window full; bisected to commit abc"
    );
    assert_eq!(
        l2["context"]["do_not_retry"],
        json!(["raising the timeout"])
    );
    let (s, v) = srv
        .post(
            &format!("/v1/tasks/{tid}/fail"),
            &w,
            json!({"lease": l2["lease"], "error": "segfault in fixture", "notes": "tried a mutex", "do_not_retry": ["a global mutex", "raising the timeout"]}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "ready");
    assert_eq!(
        v["do_not_retry"],
        json!(["raising the timeout", "a global mutex"])
    );

    // Backoff: not claimable until not_before.
    assert!(srv.claim(&w, "session-3", 1).await.is_empty());
    srv.advance_s(1);
    let l3 = srv.claim(&w, "session-3", 1).await.remove(0);
    let notes: Vec<&str> = l3["context"]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["notes"].as_str().unwrap())
        .collect();
    assert_eq!(
        notes,
        [
            "context window full; bisected to commit abc",
            "tried a mutex"
        ]
    );
    assert_eq!(l3["context"]["attempts"][1]["error"], "segfault in fixture");

    let (_, md) = srv
        .raw(
            reqwest::Method::GET,
            &format!("/v1/tasks/{tid}/context?format=markdown"),
            Some(&w),
            None,
            None,
        )
        .await;
    assert!(
        md.contains("## Do not retry\n- raising the timeout\n- a global mutex"),
        "{md}"
    );
    assert!(md.contains("### Attempt 1 by session-1: released"));
}

async fn failures_back_off_then_escalate_when_attempts_run_out(backend: Backend) {
    let srv = server!(backend);
    let w = srv.token("default", "worker").await;
    let tid = id(&srv
        .task(&srv.admin, json!({"title": "flaky", "max_attempts": 3}))
        .await);
    for (n, wait) in [(1, 1), (2, 2)] {
        let l = srv.claim(&w, "w", 1).await.remove(0);
        assert_eq!(l["attempt"], n);
        let (_, v) = srv
            .post(
                &format!("/v1/tasks/{tid}/fail"),
                &w,
                json!({"lease": l["lease"], "error": format!("boom {n}")}),
            )
            .await;
        assert_eq!(v["status"], "ready");
        srv.advance_s(wait - 1);
        assert!(
            srv.claim(&w, "w", 1).await.is_empty(),
            "claimable before its backoff ended"
        );
        srv.advance_s(1);
    }
    let l = srv.claim(&w, "w", 1).await.remove(0);
    let (_, v) = srv
        .post(
            &format!("/v1/tasks/{tid}/fail"),
            &w,
            json!({"lease": l["lease"], "error": "boom 3"}),
        )
        .await;
    assert_eq!(v["status"], "failed");
    assert_eq!(v["failed_attempts"], 3);
    let (_, ev) = srv.get(&format!("/v1/events?task={tid}"), &srv.admin).await;
    let kinds: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.last(), Some(&"task.escalated"));

    // A person reopens it: a fresh budget, history kept.
    let (s, v) = srv
        .post(&format!("/v1/tasks/{tid}/reopen"), &srv.admin, json!({}))
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ready")));
    let l = srv.claim(&w, "w", 1).await.remove(0);
    assert_eq!(l["attempt"], 4);
    assert_eq!(l["context"]["attempts"].as_array().unwrap().len(), 3);

    // A non-retryable failure fails at once.
    let (_, v) = srv
        .post(
            &format!("/v1/tasks/{tid}/fail"),
            &w,
            json!({"lease": l["lease"], "error": "bad spec", "retryable": false}),
        )
        .await;
    assert_eq!(v["status"], "failed");
}

async fn expired_leases_count_as_attempts_and_escalate(backend: Backend) {
    let srv = server!(backend);
    let w = srv.token("default", "worker").await;
    let tid = id(&srv
        .task(
            &srv.admin,
            json!({"title": "t", "max_attempts": 2, "lease_ttl_s": 10}),
        )
        .await);
    srv.claim(&w, "a", 1).await;
    srv.advance_s(10);
    let l = srv.claim(&w, "b", 1).await;
    assert_eq!(l[0]["attempt"], 2);
    srv.advance_s(10);
    assert!(srv.claim(&w, "c", 1).await.is_empty());
    let (_, t) = srv.get(&format!("/v1/tasks/{tid}"), &srv.admin).await;
    assert_eq!(t["status"], "failed");
    let (_, a) = srv
        .get(&format!("/v1/tasks/{tid}/attempts"), &srv.admin)
        .await;
    let outcomes: Vec<&str> = a["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["abandoned", "abandoned"]);
}

async fn block_waits_for_a_person_then_resumes(backend: Backend) {
    let srv = server!(backend);
    let w = srv.token("default", "worker").await;
    let op = srv.token("default", "operator").await;
    let tid = id(&srv.task(&op, json!({"title": "deploy"})).await);
    let l = srv.claim(&w, "w", 1).await.remove(0);
    let (_, v) = srv
        .post(
            &format!("/v1/tasks/{tid}/block"),
            &w,
            json!({"lease": l["lease"], "reason": "needs prod credentials"}),
        )
        .await;
    assert_eq!(v["status"], "blocked");
    assert_eq!(v["blocked_reason"], "needs prod credentials");
    assert!(srv.claim(&w, "w", 1).await.is_empty());
    let (s, v) = srv
        .post(&format!("/v1/tasks/{tid}/unblock"), &w, json!({}))
        .await;
    assert_eq!(
        (s, code(&v)),
        (403, "forbidden"),
        "a worker may not unblock"
    );
    let (s, _) = srv
        .post(&format!("/v1/tasks/{tid}/unblock"), &op, json!({}))
        .await;
    assert_eq!(s, 200);
    let l = srv.claim(&w, "w", 1).await.remove(0);
    assert_eq!(l["context"]["attempts"][0]["outcome"], "blocked");
    assert_eq!(
        l["context"]["attempts"][0]["notes"],
        "needs prod credentials"
    );
}

async fn claims_match_labels_and_priority(backend: Backend) {
    let srv = server!(backend);
    let w = srv.token("default", "worker").await;
    let low = id(&srv
        .task(&srv.admin, json!({"title": "low", "priority": 1}))
        .await);
    let gpu = id(&srv
        .task(
            &srv.admin,
            json!({"title": "gpu", "priority": 9, "labels": ["gpu"]}),
        )
        .await);
    let high = id(&srv
        .task(
            &srv.admin,
            json!({"title": "high", "priority": 5, "labels": ["rust"]}),
        )
        .await);
    let (_, v) = srv
        .post(
            "/v1/leases",
            &w,
            json!({"worker": "w", "capabilities": ["rust"], "max": 5}),
        )
        .await;
    let got: Vec<&str> = v["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["task"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [high.as_str(), low.as_str()]);
    let (_, v) = srv
        .post(
            "/v1/leases",
            &w,
            json!({"worker": "g", "capabilities": ["gpu", "rust"]}),
        )
        .await;
    assert_eq!(v["leases"][0]["task"]["id"], gpu.as_str());
}

async fn a_long_poll_is_woken_by_a_new_task(backend: Backend) {
    let srv = Arc::new(server!(backend));
    let w = srv.token("default", "worker").await;
    let poll = {
        let (srv, w) = (srv.clone(), w.clone());
        tokio::spawn(async move {
            srv.post(
                "/v1/leases",
                &w,
                json!({"worker": "poller", "wait_ms": 30000}),
            )
            .await
        })
    };
    waiting(&srv, &srv.admin, "default", 1).await;
    let tid = id(&srv.task(&srv.admin, json!({"title": "wake up"})).await);
    // Woken, not timed out: it must return long before its 30 s wait.
    let (s, v) = tokio::time::timeout(std::time::Duration::from_secs(10), poll)
        .await
        .expect("long-poll was not woken")
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(v["leases"][0]["task"]["id"], tid.as_str());
}

/// Waits (bounded) until `n` claims of `tenant` are parked, as /metrics
/// reports them to `admin`, an admin of the tenant.
async fn waiting(srv: &support::TestServer, admin: &str, tenant: &str, n: u32) {
    let line = format!("aruntime_claims_waiting{{tenant=\"{tenant}\"}} {n}");
    for _ in 0..2000 {
        let (_, m) = srv
            .raw(reqwest::Method::GET, "/metrics", Some(admin), None, None)
            .await;
        if m.contains(&line) {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{n} claims of {tenant} never started waiting");
}

/// Claims parked with the writer are served by the batch that makes a task
/// ready, but only with tasks they may take: a labelled task goes to the
/// claim with the label even when a plain claim parked first, and another
/// tenant's task goes to none of them.
async fn parked_claims_get_only_what_they_may_take(backend: Backend) {
    let srv = Arc::new(server!(backend));
    let w = srv.token("default", "worker").await;
    let b_admin = srv.token("beta-corp", "admin").await;
    let b_w = srv.token("beta-corp", "worker").await;
    let poll = |token: String, body: Value| {
        let srv = srv.clone();
        tokio::spawn(async move { srv.post("/v1/leases", &token, body).await })
    };
    let leased = |r: (u16, Value)| {
        assert_eq!(r.0, 200, "{}", r.1);
        let ids: Vec<String> = r.1["leases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["task"]["id"].as_str().unwrap().to_owned())
            .collect();
        ids
    };
    let long = std::time::Duration::from_secs(10);
    let plain = poll(
        w.clone(),
        json!({"worker": "plain", "max": 5, "wait_ms": 30000}),
    );
    waiting(&srv, &srv.admin, "default", 1).await;
    let gpu = poll(
        w.clone(),
        json!({"worker": "gpu", "capabilities": ["gpu"], "wait_ms": 30000}),
    );
    let theirs = poll(b_w, json!({"worker": "theirs", "wait_ms": 30000}));
    waiting(&srv, &srv.admin, "default", 2).await;
    waiting(&srv, &b_admin, "beta-corp", 1).await;

    let render = id(&srv
        .task(&srv.admin, json!({"title": "render", "labels": ["gpu"]}))
        .await);
    let got = tokio::time::timeout(long, gpu).await.unwrap().unwrap();
    assert_eq!(leased(got), [render.as_str()]);

    let b_task = id(&srv.task(&b_admin, json!({"title": "beta's"})).await);
    let got = tokio::time::timeout(long, theirs).await.unwrap().unwrap();
    assert_eq!(leased(got), [b_task]);

    let mine = id(&srv.task(&srv.admin, json!({"title": "plain"})).await);
    let got = tokio::time::timeout(long, plain).await.unwrap().unwrap();
    assert_eq!(
        leased(got),
        [mine.as_str()],
        "the plain claim got only its tenant's plain task"
    );
    for (task, worker) in [(&render, "gpu"), (&mine, "plain")] {
        let (_, t) = srv.get(&format!("/v1/tasks/{task}"), &srv.admin).await;
        assert_eq!(t["status"], "running", "{t}");
        assert_eq!(t["lease"]["worker"], worker, "{t}");
        assert_eq!(t["attempts"], 1, "{t}");
    }
}

async fn idempotency_key_makes_create_safe_to_retry(backend: Backend) {
    let srv = server!(backend);
    let send = |body: Value, key: &'static str| {
        let srv = &srv;
        async move {
            let resp = srv
                .http
                .post(format!("{}/v1/tasks", srv.base))
                .bearer_auth(&srv.admin)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (s1, a) = send(json!({"title": "once"}), "k1").await;
    let (s2, b) = send(json!({"title": "once"}), "k1").await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(a["id"], b["id"]);
    let (s3, c) = send(json!({"title": "different"}), "k1").await;
    assert_eq!((s3, code(&c)), (409, "idempotency_conflict"));
    let (_, list) = srv.get("/v1/tasks", &srv.admin).await;
    assert_eq!(list["tasks"].as_array().unwrap().len(), 1);
}

/// `POST /v1/leases/complete`: each entry is answered as if sent alone,
/// in the order sent, and one refused entry changes nothing for the others.
async fn batch_completion_answers_each_entry_alone(backend: Backend) {
    let srv = server!(backend);
    let worker = srv.token("default", "worker").await;
    for i in 0..3 {
        srv.task(&srv.admin, json!({"title": format!("t{i}")}))
            .await;
    }
    let leases = srv.claim(&worker, "w", 3).await;
    assert_eq!(leases.len(), 3);
    let task = |i: usize| leases[i]["task"]["id"].as_str().unwrap().to_owned();
    let lease = |i: usize| leases[i]["lease"].as_str().unwrap().to_owned();
    let never = "00000000-0000-7000-8000-000000000000";
    let body = json!({"completions": [
        {"task": task(0), "lease": lease(0), "result": {"n": 0}},
        {"task": task(1), "lease": lease(2)},
        {"task": never, "lease": lease(1)},
        {"task": task(2), "lease": lease(2), "result": {"n": 2}},
        {"task": task(0), "lease": lease(0)},
    ]});
    let (s, v) = srv.post("/v1/leases/complete", &worker, body).await;
    assert_eq!(s, 200, "{v}");
    let results = v["results"].as_array().unwrap();
    let got: Vec<(String, String)> = results
        .iter()
        .map(|r| {
            let outcome = r["status"].as_str().or(r["error"]["code"].as_str());
            (
                r["task"].as_str().unwrap().to_owned(),
                outcome.unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        (task(0), "done"),
        (task(1), "lease_lost"),
        (never.to_owned(), "not_found"),
        (task(2), "done"),
        // The same task again: its lease ended with the first entry.
        (task(0), "lease_lost"),
    ]
    .map(|(t, o)| (t, o.to_owned()));
    assert_eq!(got, want);
    for (i, status, result) in [
        (0, "done", json!({"n": 0})),
        (1, "running", Value::Null),
        (2, "done", json!({"n": 2})),
    ] {
        let (_, t) = srv.get(&format!("/v1/tasks/{}", task(i)), &srv.admin).await;
        assert_eq!(t["status"], status, "{t}");
        assert_eq!(t["result"], result, "{t}");
    }
    // Task 1's own lease still completes it.
    let body = json!({"completions": [{"task": task(1), "lease": lease(1)}]});
    let (s, v) = srv.post("/v1/leases/complete", &worker, body).await;
    assert_eq!(
        (s, v["results"][0]["status"].as_str()),
        (200, Some("done")),
        "{v}"
    );
    // The request as a whole is checked first.
    let (s, v) = srv
        .post("/v1/leases/complete", &worker, json!({"completions": []}))
        .await;
    assert_eq!((s, code(&v)), (422, "invalid_input"), "{v}");
    let many: Vec<Value> = (0..101)
        .map(|_| json!({"task": never, "lease": "x"}))
        .collect();
    let (s, v) = srv
        .post("/v1/leases/complete", &worker, json!({"completions": many}))
        .await;
    assert_eq!((s, code(&v)), (422, "invalid_input"), "{v}");
    let (s, v) = srv
        .post(
            "/v1/leases/complete",
            &worker,
            json!({"completions": [{"task": "nope", "lease": "x"}]}),
        )
        .await;
    assert_eq!((s, code(&v)), (422, "invalid_input"), "{v}");
}

backends!(
    eight_workers_race_for_500_tasks_and_each_completes_once,
    zombie_worker_is_fenced_and_next_attempt_resumes_from_its_checkpoint,
    handoff_notes_and_do_not_retry_reach_every_later_attempt,
    failures_back_off_then_escalate_when_attempts_run_out,
    expired_leases_count_as_attempts_and_escalate,
    block_waits_for_a_person_then_resumes,
    claims_match_labels_and_priority,
    a_long_poll_is_woken_by_a_new_task,
    parked_claims_get_only_what_they_may_take,
    idempotency_key_makes_create_safe_to_retry,
    batch_completion_answers_each_entry_alone,
);
