//! Guarantee 5: no request with tenant B's key can read, list, infer or
//! change tenant A's tasks, blobs, events or metrics labels.
//!
//! Tenant A ("alpha-corp") holds a goal with a label, a dependency that is
//! running under a lease with a checkpoint carrying an uploaded artifact, a
//! child waiting on both, and a decision. Tenant B ("beta-corp") holds one
//! running task of its own. Every name A chose contains "alpha", so a leak
//! into any of B's answers is easy to spot.

#[macro_use]
mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Backend, TestServer, code, id};

const A: &str = "alpha-corp";
const B: &str = "beta-corp";
const B_ROLES: [&str; 5] = ["admin", "operator", "worker", "agent", "viewer"];
const ARTIFACT: &[u8] = b"alpha artifact bytes, identical in both tenants";

struct World {
    ts: TestServer,
    a_admin: String,
    a_worker: String,
    /// B's tokens, by role, in `B_ROLES` order.
    b: Vec<(&'static str, String)>,
    /// A's goal: ready, labelled `alpha-label`, with a decision.
    goal: String,
    /// A's dependency: running under `lease`, one checkpoint with the artifact.
    dep: String,
    /// A's child of `goal`, waiting on `dep`.
    child: String,
    lease: String,
    sha: String,
    /// B's own task, running under `b_lease`.
    b_task: String,
    b_lease: String,
}

impl World {
    fn b(&self, role: &str) -> &str {
        &self.b.iter().find(|(r, _)| *r == role).unwrap().1
    }

    fn a_ids(&self) -> [&str; 3] {
        [&self.goal, &self.dep, &self.child]
    }
}

async fn world(backend: Backend) -> Option<World> {
    let ts = TestServer::start_on(backend).await?;
    let a_admin = ts.token(A, "admin").await;
    let a_operator = ts.token(A, "operator").await;
    let a_worker = ts.token(A, "worker").await;
    let mut b = vec![];
    for role in B_ROLES {
        b.push((role, ts.token(B, role).await));
    }

    let goal = id(&ts
        .task(
            &a_operator,
            json!({"title": "alpha goal", "goal": "alpha plans", "labels": ["alpha-label"]}),
        )
        .await);
    let dep = id(&ts
        .task(
            &a_operator,
            json!({"title": "alpha dependency", "priority": 10}),
        )
        .await);
    let child = ts
        .task(
            &a_operator,
            json!({"title": "alpha child", "parent_id": goal, "depends_on": [dep]}),
        )
        .await;
    assert_eq!(child["status"], "backlog");
    let child = id(&child);

    let leases = ts.claim(&a_worker, "alpha-worker", 1).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["task"]["id"], dep.as_str());
    let lease = leases[0]["lease"].as_str().unwrap().to_owned();
    let (s, text) = ts
        .raw(
            Method::PUT,
            "/v1/blobs",
            Some(&a_worker),
            Some("application/octet-stream"),
            Some(ARTIFACT.to_vec()),
        )
        .await;
    assert_eq!(s, 201, "{text}");
    let sha = serde_json::from_str::<Value>(&text).unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = ts
        .post(
            &format!("/v1/tasks/{dep}/checkpoints"),
            &a_worker,
            json!({"lease": lease, "summary": "alpha halfway", "state": {"alpha": 1},
                   "artifacts": [{"name": "alpha.log", "sha256": sha}]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = ts
        .post(
            &format!("/v1/tasks/{goal}/decisions"),
            &a_operator,
            json!({"title": "alpha decision", "rationale": "alpha reasons"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    let b_operator = &b.iter().find(|(r, _)| *r == "operator").unwrap().1;
    let b_worker = &b.iter().find(|(r, _)| *r == "worker").unwrap().1;
    let b_task = id(&ts.task(b_operator, json!({"title": "beta task"})).await);
    let leases = ts.claim(b_worker, "beta-worker", 10).await;
    assert_eq!(leases.len(), 1, "B's worker leased {leases:?}");
    assert_eq!(leases[0]["task"]["id"], b_task.as_str());
    let b_lease = leases[0]["lease"].as_str().unwrap().to_owned();

    // Time passes, so a lease renewal that should not happen would show.
    ts.advance_s(5);
    Some(World {
        ts,
        a_admin,
        a_worker,
        b,
        goal,
        dep,
        child,
        lease,
        sha,
        b_task,
        b_lease,
    })
}

async fn get_ok(ts: &TestServer, path: &str, token: &str) -> Value {
    let (s, v) = ts.get(path, token).await;
    assert_eq!(s, 200, "GET {path}: {v}");
    v
}

/// Everything A can read about itself.
async fn snapshot_a(w: &World) -> Value {
    let mut per_task = serde_json::Map::new();
    for t in w.a_ids() {
        for sub in ["", "/checkpoints", "/attempts", "/decisions", "/context"] {
            let v = get_ok(&w.ts, &format!("/v1/tasks/{t}{sub}"), &w.a_admin).await;
            per_task.insert(format!("{t}{sub}"), v);
        }
    }
    json!({
        "tasks": get_ok(&w.ts, "/v1/tasks?limit=500", &w.a_admin).await,
        "board": get_ok(&w.ts, "/v1/board?include_cancelled=true", &w.a_admin).await,
        "events": get_ok(&w.ts, "/v1/events?limit=500", &w.a_admin).await,
        "per_task": per_task,
    })
}

/// Sends a request; returns the status and the body text.
async fn send(
    ts: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, String) {
    let (ct, bytes) = match body {
        Some(b) => (
            Some("application/json"),
            Some(serde_json::to_vec(b).unwrap()),
        ),
        None => (None, None),
    };
    ts.raw(method, path, Some(token), ct, bytes).await
}

/// The body as JSON with `secret` replaced by a placeholder, so answers
/// about two different ids can be compared.
fn masked(text: &str, secret: &str) -> Value {
    let text = text.replace(secret, "<ID>");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// What a role may do, as role.rs says; used to predict 403 against 404.
#[derive(Debug, Clone, Copy)]
enum Perm {
    Read,
    WriteTasks,
    Steer,
    Work,
    /// Recording a decision: WriteTasks or Work.
    Decide,
}

fn allows(role: &str, p: Perm) -> bool {
    matches!(
        (role, p),
        ("admin", _)
            | (_, Perm::Read)
            | ("operator", Perm::WriteTasks | Perm::Steer | Perm::Decide)
            | ("worker", Perm::Work | Perm::Decide)
            | ("agent", Perm::WriteTasks | Perm::Work | Perm::Decide)
    )
}

/// Checks that `text` mentions nothing of A.
fn leaks(w: &World, text: &str) -> Vec<String> {
    let mut found = vec![];
    for secret in [A, "alpha", w.sha.as_str(), w.lease.as_str()]
        .into_iter()
        .chain(w.a_ids())
    {
        if text.to_lowercase().contains(&secret.to_lowercase()) {
            found.push(secret.to_owned());
        }
    }
    found
}

async fn per_task_routes_answer_as_for_a_task_that_never_existed(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let before = snapshot_a(&w).await;
    let lease = w.lease.as_str();
    let routes: Vec<(Method, &str, Option<Value>, Perm)> = vec![
        (Method::GET, "", None, Perm::Read),
        (
            Method::PATCH,
            "",
            Some(json!({"title": "beta was here"})),
            Perm::WriteTasks,
        ),
        (
            Method::PATCH,
            "",
            Some(json!({"depends_on": []})),
            Perm::WriteTasks,
        ),
        (Method::POST, "/hold", None, Perm::Steer),
        (Method::POST, "/unhold", None, Perm::Steer),
        (Method::POST, "/unblock", None, Perm::Steer),
        (Method::POST, "/cancel", None, Perm::Steer),
        (Method::POST, "/reopen", None, Perm::Steer),
        (
            Method::POST,
            "/checkpoints",
            Some(json!({"lease": lease, "summary": "beta"})),
            Perm::Work,
        ),
        (
            Method::POST,
            "/checkpoints",
            Some(json!({"lease": w.b_lease, "summary": "beta"})),
            Perm::Work,
        ),
        (Method::GET, "/checkpoints", None, Perm::Read),
        (Method::GET, "/checkpoints/1", None, Perm::Read),
        (
            Method::POST,
            "/complete",
            Some(json!({"lease": lease, "result": "beta"})),
            Perm::Work,
        ),
        (
            Method::POST,
            "/fail",
            Some(json!({"lease": lease, "error": "beta", "retryable": false})),
            Perm::Work,
        ),
        (
            Method::POST,
            "/block",
            Some(json!({"lease": lease, "reason": "beta"})),
            Perm::Work,
        ),
        (
            Method::POST,
            "/release",
            Some(json!({"lease": lease})),
            Perm::Work,
        ),
        (Method::GET, "/attempts", None, Perm::Read),
        (
            Method::POST,
            "/decisions",
            Some(json!({"title": "beta decision"})),
            Perm::Decide,
        ),
        (Method::GET, "/decisions", None, Perm::Read),
        (Method::GET, "/context", None, Perm::Read),
        (Method::GET, "/context?format=markdown", None, Perm::Read),
        (Method::GET, "/context?max_bytes=100000", None, Perm::Read),
    ];

    let mut failures = vec![];
    for (role, token) in &w.b {
        for (method, sub, body, perm) in &routes {
            let never = uuid::Uuid::new_v4().to_string();
            let (ns, ntext) = send(
                &w.ts,
                method.clone(),
                &format!("/v1/tasks/{never}{sub}"),
                token,
                body.as_ref(),
            )
            .await;
            let want = if allows(role, *perm) {
                (404, "not_found")
            } else {
                (403, "forbidden")
            };
            let nv = masked(&ntext, &never);
            if (ns, code(&nv)) != want {
                failures.push(format!(
                    "B {role} {method} /v1/tasks/<never>{sub}: {ns} {ntext}, want {want:?}"
                ));
            }
            for a_id in w.a_ids() {
                let path = format!("/v1/tasks/{a_id}{sub}");
                let (s, text) = send(&w.ts, method.clone(), &path, token, body.as_ref()).await;
                let v = masked(&text, a_id);
                if (s, code(&v)) != want {
                    failures.push(format!(
                        "B {role} {method} {path}: {s} {text}, want {want:?}"
                    ));
                }
                if s != ns || v != nv {
                    failures.push(format!(
                        "B {role} {method} {path}: answers {s} {v} but a never-existing id \
                         answers {ns} {nv}"
                    ));
                }
                let found = leaks(&w, &text.replace(a_id, ""));
                if !found.is_empty() {
                    failures.push(format!("B {role} {method} {path} leaks {found:?}: {text}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} isolation failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        snapshot_a(&w).await,
        before,
        "B's requests changed tenant A"
    );
    w.ts.stop().await;
}

async fn lists_board_and_events_show_nothing_of_the_other_tenant(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    // A sees its own, so the checks below are not vacuous.
    let a_list = get_ok(&w.ts, "/v1/tasks", &w.a_admin).await;
    assert_eq!(a_list["tasks"].as_array().unwrap().len(), 3, "{a_list}");
    let a_events = get_ok(&w.ts, &format!("/v1/events?task={}", w.dep), &w.a_admin).await;
    assert!(!a_events["events"].as_array().unwrap().is_empty());

    let mut failures = vec![];
    for (role, token) in &w.b {
        for path in [
            "/v1/tasks",
            "/v1/tasks?limit=500",
            "/v1/tasks?status=ready",
            "/v1/tasks?status=backlog",
            "/v1/tasks?label=alpha-label",
            "/v1/board",
            "/v1/board?include_cancelled=true&cards=500",
            "/v1/events",
            "/v1/events?after=0&limit=500",
        ] {
            let (s, text) = send(&w.ts, Method::GET, path, token, None).await;
            if s != 200 {
                failures.push(format!("B {role} GET {path}: {s} {text}"));
            }
            let found = leaks(&w, &text);
            if !found.is_empty() {
                failures.push(format!("B {role} GET {path} leaks {found:?}: {text}"));
            }
        }
        // B's list is exactly B's one task; its board counts only it.
        let list = get_ok(&w.ts, "/v1/tasks", token).await;
        let ids: Vec<&str> = list["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        if ids != [w.b_task.as_str()] {
            failures.push(format!("B {role} lists {ids:?}, want only B's task"));
        }
        let board = get_ok(&w.ts, "/v1/board?include_cancelled=true", token).await;
        let total: u64 = board["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["count"].as_u64().unwrap())
            .sum();
        if total != 1 {
            failures.push(format!(
                "B {role} board counts {total} tasks, want 1: {board}"
            ));
        }
        let events = get_ok(&w.ts, "/v1/events?limit=500", token).await;
        for e in events["events"].as_array().unwrap() {
            if e["task_id"] != w.b_task.as_str() {
                failures.push(format!("B {role} sees event {e}"));
            }
        }
        // Filters naming A's ids answer as for ids that never existed.
        for a_id in w.a_ids() {
            for (tmpl, field) in [
                ("/v1/events?task=", "events"),
                ("/v1/tasks?parent=", "tasks"),
            ] {
                let never = uuid::Uuid::new_v4().to_string();
                let (ns, ntext) =
                    send(&w.ts, Method::GET, &format!("{tmpl}{never}"), token, None).await;
                let path = format!("{tmpl}{a_id}");
                let (s, text) = send(&w.ts, Method::GET, &path, token, None).await;
                let (v, nv) = (masked(&text, a_id), masked(&ntext, &never));
                if s != ns || v != nv {
                    failures.push(format!(
                        "B {role} GET {path}: {s} {v}, never-existing id: {ns} {nv}"
                    ));
                }
                if s == 200 && !v[field].as_array().is_some_and(|a| a.is_empty()) {
                    failures.push(format!("B {role} GET {path} shows {text}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} isolation failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    w.ts.stop().await;
}

async fn blobs_are_per_tenant(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let a_events = get_ok(&w.ts, "/v1/events?limit=500", &w.a_admin).await;
    let never = "ab".repeat(32);
    let mut failures = vec![];
    for (role, token) in &w.b {
        let (ns, ntext) = send(
            &w.ts,
            Method::GET,
            &format!("/v1/blobs/{never}"),
            token,
            None,
        )
        .await;
        for sha in [w.sha.clone(), w.sha.to_uppercase()] {
            let path = format!("/v1/blobs/{sha}");
            let (s, text) = send(&w.ts, Method::GET, &path, token, None).await;
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if s != 404 || code(&v) != "not_found" {
                failures.push(format!("B {role} GET {path}: {s} {text:.200}"));
            }
            let (v, nv) = (masked(&text.to_lowercase(), &w.sha), masked(&ntext, &never));
            if s != ns || v != nv {
                failures.push(format!(
                    "B {role} GET {path}: {s} {v}, never-uploaded: {ns} {nv}"
                ));
            }
        }
    }
    // B cannot attach A's blob: it is unknown in B, like one never uploaded.
    let b_worker = w.b("worker");
    let cp = format!("/v1/tasks/{}/checkpoints", w.b_task);
    let attach = |sha: &str| json!({"lease": w.b_lease, "summary": "beta", "artifacts": [{"name": "x", "sha256": sha}]});
    let (s, text) = send(&w.ts, Method::POST, &cp, b_worker, Some(&attach(&w.sha))).await;
    let (ns, ntext) = send(&w.ts, Method::POST, &cp, b_worker, Some(&attach(&never))).await;
    let v = masked(&text, &w.sha);
    if s != 422 || code(&v) != "unknown_blob" || s != ns || v != masked(&ntext, &never) {
        failures.push(format!(
            "B attaching A's blob: {s} {text}; attaching a never-uploaded one: {ns} {ntext}"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} isolation failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // B uploads the same bytes: it gets its own blob, under the same address.
    let (s, text) =
        w.ts.raw(
            Method::PUT,
            "/v1/blobs",
            Some(b_worker),
            Some("application/octet-stream"),
            Some(ARTIFACT.to_vec()),
        )
        .await;
    assert_eq!(s, 201, "{text}");
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["sha256"], w.sha.as_str());
    assert_eq!(r["size"], ARTIFACT.len());
    for token in [w.b("viewer"), w.a_admin.as_str(), w.a_worker.as_str()] {
        let (s, bytes) =
            w.ts.raw(
                Method::GET,
                &format!("/v1/blobs/{}", w.sha),
                Some(token),
                None,
                None,
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(bytes.as_bytes(), ARTIFACT);
    }
    let (s, v) = w.ts.post(&cp, b_worker, attach(&w.sha)).await;
    assert_eq!(s, 201, "B attaches its own blob: {v}");

    // A's checkpoint, its artifact and its event log are as they were.
    let cps = get_ok(
        &w.ts,
        &format!("/v1/tasks/{}/checkpoints", w.dep),
        &w.a_admin,
    )
    .await;
    assert_eq!(cps["checkpoints"].as_array().unwrap().len(), 1, "{cps}");
    assert_eq!(
        cps["checkpoints"][0]["artifacts"],
        json!([{"name": "alpha.log", "sha256": w.sha}])
    );
    assert_eq!(
        get_ok(&w.ts, "/v1/events?limit=500", &w.a_admin).await,
        a_events
    );
    w.ts.stop().await;
}

async fn other_tenant_cannot_claim_tasks_or_use_a_lease(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let before = snapshot_a(&w).await;
    let dep_before = get_ok(&w.ts, &format!("/v1/tasks/{}", w.dep), &w.a_admin).await;

    let mut failures = vec![];
    // A's goal is ready and carries `alpha-label`; nothing of B's is ready.
    for role in ["admin", "worker", "agent"] {
        for caps in [json!([]), json!(["alpha-label"])] {
            let body = json!({"worker": "beta-thief", "capabilities": caps, "max": 100});
            let (s, v) = w.ts.post("/v1/leases", w.b(role), body).await;
            if s != 200 || v["leases"] != json!([]) {
                failures.push(format!("B {role} claim with {caps}: {s} {v}"));
            }
        }
    }
    // A's lease token, heartbeated by B, answers like a token never issued.
    for (role, token) in &w.b {
        let path = format!("/v1/leases/{}/heartbeat", w.lease);
        let (s, text) = send(&w.ts, Method::POST, &path, token, None).await;
        let never = "ls_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";
        let (ns, ntext) = send(
            &w.ts,
            Method::POST,
            &format!("/v1/leases/{never}/heartbeat"),
            token,
            None,
        )
        .await;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let ok = if allows(role, Perm::Work) {
            matches!((s, code(&v)), (409, "lease_lost") | (404, "not_found"))
        } else {
            (s, code(&v)) == (403, "forbidden")
        };
        if !ok {
            failures.push(format!("B {role} heartbeats A's lease: {s} {text}"));
        }
        if s != ns || masked(&text, &w.lease) != masked(&ntext, never) {
            failures.push(format!(
                "B {role} heartbeats A's lease: {s} {text}; a never-issued one: {ns} {ntext}"
            ));
        }
    }
    // A's lease on B's own task is simply not B's lease.
    let (s, v) =
        w.ts.post(
            &format!("/v1/tasks/{}/complete", w.b_task),
            w.b("worker"),
            json!({"lease": w.lease}),
        )
        .await;
    if (s, code(&v)) != (409, "lease_lost") {
        failures.push(format!("B completes its task with A's lease: {s} {v}"));
    }
    // Nor does a batch of completions reach A's task, even with A's lease.
    let body = json!({"completions": [{"task": w.dep, "lease": w.lease}]});
    let (s, v) = w.ts.post("/v1/leases/complete", w.b("worker"), body).await;
    if (s, v["results"][0]["error"]["code"].as_str()) != (200, Some("not_found")) {
        failures.push(format!("B completes A's task in a batch: {s} {v}"));
    }
    assert!(
        failures.is_empty(),
        "{} isolation failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        snapshot_a(&w).await,
        before,
        "B's requests changed tenant A"
    );

    // A's lease is unaffected: it heartbeats (and is renewed from now), and
    // completing the dependency readies the child.
    let (s, v) =
        w.ts.call(
            Method::POST,
            &format!("/v1/leases/{}/heartbeat", w.lease),
            &w.a_worker,
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["task_id"], w.dep.as_str());
    assert_ne!(v["expires_at"], dep_before["lease"]["expires_at"]);
    let (s, v) =
        w.ts.post(
            &format!("/v1/tasks/{}/complete", w.dep),
            &w.a_worker,
            json!({"lease": w.lease, "result": {"alpha": "done"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "done");
    let child = get_ok(&w.ts, &format!("/v1/tasks/{}", w.child), &w.a_admin).await;
    assert_eq!(child["status"], "ready");

    // B still gets nothing; A gets exactly its two ready tasks.
    let leases = w.ts.claim(w.b("worker"), "beta-thief", 100).await;
    assert!(leases.is_empty(), "B leased {leases:?}");
    let body = json!({"worker": "alpha-worker", "capabilities": ["alpha-label"], "max": 100});
    let (s, v) = w.ts.post("/v1/leases", &w.a_worker, body).await;
    assert_eq!(s, 200, "{v}");
    let mut got: Vec<&str> = v["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["task"]["id"].as_str().unwrap())
        .collect();
    got.sort_unstable();
    let mut want = vec![w.goal.as_str(), w.child.as_str()];
    want.sort_unstable();
    assert_eq!(got, want);

    // B's own lease was never disturbed either.
    let (s, v) =
        w.ts.post(
            &format!("/v1/tasks/{}/complete", w.b_task),
            w.b("worker"),
            json!({"lease": w.b_lease}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    w.ts.stop().await;
}

async fn tokens_and_tenants_cannot_be_made_across_tenants(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let mut failures = vec![];
    for (role, token) in &w.b {
        let body = json!({"role": "admin"});
        let path = format!("/v1/tenants/{A}/tokens");
        let (s, text) = send(&w.ts, Method::POST, &path, token, Some(&body)).await;
        let (ns, ntext) = send(
            &w.ts,
            Method::POST,
            "/v1/tenants/never-corp/tokens",
            token,
            Some(&body),
        )
        .await;
        let v = masked(&text, A);
        let want = if *role == "admin" {
            (404, "not_found")
        } else {
            (403, "forbidden")
        };
        if (s, code(&v)) != want {
            failures.push(format!("B {role} POST {path}: {s} {text}, want {want:?}"));
        }
        if s != ns || v != masked(&ntext, "never-corp") {
            failures.push(format!(
                "B {role} POST {path}: {s} {text}; for a tenant never made: {ns} {ntext}"
            ));
        }
        // Creating tenants is for the default tenant's admin only; an
        // existing name answers like a new one (no 409 that would leak it).
        for name in [A, "gamma-corp"] {
            let (s, v) = w.ts.post("/v1/tenants", token, json!({"name": name})).await;
            if (s, code(&v)) != (403, "forbidden") {
                failures.push(format!("B {role} creates tenant {name}: {s} {v}"));
            }
        }
    }
    // The refused tenant was not made; B's admin can still make B's tokens.
    let (s, v) =
        w.ts.post(
            "/v1/tenants/gamma-corp/tokens",
            &w.ts.admin,
            json!({"role": "viewer"}),
        )
        .await;
    if (s, code(&v)) != (404, "not_found") {
        failures.push(format!("tenant gamma-corp exists after refusals: {s} {v}"));
    }
    let (s, v) =
        w.ts.post(
            &format!("/v1/tenants/{B}/tokens"),
            w.b("admin"),
            json!({"role": "viewer"}),
        )
        .await;
    if s != 201 || v["tenant"] != B {
        failures.push(format!("B's admin makes a B token: {s} {v}"));
    }
    assert!(
        failures.is_empty(),
        "{} isolation failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    w.ts.stop().await;
}

async fn metrics_show_only_the_callers_tenant(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let (s, a_metrics) =
        w.ts.raw(Method::GET, "/metrics", Some(&w.a_admin), None, None)
            .await;
    assert_eq!(s, 200);
    assert!(
        a_metrics.contains(&format!("tenant=\"{A}\"")),
        "A's own metrics carry its label:\n{a_metrics}"
    );
    let mut failures = vec![];
    for (role, token) in &w.b {
        let (s, text) =
            w.ts.raw(Method::GET, "/metrics", Some(token), None, None)
                .await;
        if s != 200 {
            failures.push(format!("B {role} GET /metrics: {s} {text:.200}"));
            continue;
        }
        if !text.contains(&format!("tenant=\"{B}\"")) {
            failures.push(format!("B {role} metrics lack B's own label"));
        }
        for line in text.lines() {
            let found = leaks(&w, line);
            if !found.is_empty() {
                failures.push(format!("B {role} metrics line leaks {found:?}: {line}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} isolation failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    w.ts.stop().await;
}

/// A request body naming the given id.
type BodyFor = fn(&str) -> Value;

async fn references_to_the_other_tenants_ids_answer_as_unknown_ids(backend: Backend) {
    let Some(w) = world(backend).await else {
        return;
    };
    let b_operator = w.b("operator");
    let b_ready = id(&w.ts.task(b_operator, json!({"title": "beta ready"})).await);
    let before = snapshot_a(&w).await;
    let b_list = get_ok(&w.ts, "/v1/tasks", b_operator).await;

    let mut failures = vec![];
    for a_id in w.a_ids() {
        let never = uuid::Uuid::new_v4().to_string();
        let attempts: [(Method, String, BodyFor); 3] = [
            (
                Method::POST,
                "/v1/tasks".to_owned(),
                |x| json!({"title": "beta child", "parent_id": x}),
            ),
            (
                Method::POST,
                "/v1/tasks".to_owned(),
                |x| json!({"title": "beta follower", "depends_on": [x]}),
            ),
            (
                Method::PATCH,
                format!("/v1/tasks/{b_ready}"),
                |x| json!({"depends_on": [x]}),
            ),
        ];
        for (method, path, body) in &attempts {
            let (s, text) = send(&w.ts, method.clone(), path, b_operator, Some(&body(a_id))).await;
            let (ns, ntext) =
                send(&w.ts, method.clone(), path, b_operator, Some(&body(&never))).await;
            let v = masked(&text, a_id);
            if (s, code(&v)) != (422, "invalid_input") {
                failures.push(format!(
                    "B {method} {path} naming A's {a_id}: {s} {text}, want 422 invalid_input"
                ));
            }
            if s != ns || v != masked(&ntext, &never) {
                failures.push(format!(
                    "B {method} {path} naming A's {a_id}: {s} {text}; a never-existing id: \
                     {ns} {ntext}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} isolation failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(get_ok(&w.ts, "/v1/tasks", b_operator).await, b_list);
    assert_eq!(
        snapshot_a(&w).await,
        before,
        "B's requests changed tenant A"
    );
    w.ts.stop().await;
}

backends!(
    per_task_routes_answer_as_for_a_task_that_never_existed,
    lists_board_and_events_show_nothing_of_the_other_tenant,
    blobs_are_per_tenant,
    other_tenant_cannot_claim_tasks_or_use_a_lease,
    tokens_and_tenants_cannot_be_made_across_tenants,
    metrics_show_only_the_callers_tenant,
    references_to_the_other_tenants_ids_answer_as_unknown_ids,
);
