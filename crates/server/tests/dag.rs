//! Dependencies: a DAG completes in topological order, a task becomes ready
//! in the same transaction as its last dependency's completion, and cycles
//! are refused.

#[macro_use]
mod support;

use std::collections::HashMap;

use serde_json::json;
use support::{Backend, code, id};

async fn a_dag_completes_in_topological_order(backend: Backend) {
    let srv = server!(backend);
    let w = srv.token("default", "worker").await;
    let goal = id(&srv
        .task(&srv.admin, json!({"title": "ship", "hold": true}))
        .await);
    //   a ─┬─> b ─┬─> d ──> e
    //      └─> c ─┘
    let a = id(&srv
        .task(&srv.admin, json!({"title": "a", "parent_id": goal}))
        .await);
    let b = id(&srv
        .task(
            &srv.admin,
            json!({"title": "b", "parent_id": goal, "depends_on": [a]}),
        )
        .await);
    let c = id(&srv
        .task(
            &srv.admin,
            json!({"title": "c", "parent_id": goal, "depends_on": [a]}),
        )
        .await);
    let d = id(&srv
        .task(
            &srv.admin,
            json!({"title": "d", "parent_id": goal, "depends_on": [b, c]}),
        )
        .await);
    let e = id(&srv
        .task(
            &srv.admin,
            json!({"title": "e", "parent_id": goal, "depends_on": [d]}),
        )
        .await);
    let edges = [(&a, &b), (&a, &c), (&b, &d), (&c, &d), (&d, &e)];
    let (_, t) = srv.get(&format!("/v1/tasks/{d}"), &srv.admin).await;
    assert_eq!(
        (t["status"].as_str(), t["pending_dependencies"].as_u64()),
        (Some("backlog"), Some(2))
    );

    let mut order: Vec<String> = vec![];
    while order.len() < 5 {
        let leases = srv.claim(&w, "w", 10).await;
        assert!(!leases.is_empty(), "stuck after {order:?}");
        for l in leases {
            let tid = l["task"]["id"].as_str().unwrap().to_owned();
            // Every dependency's result is in the bundle when a task starts.
            for dep in l["context"]["dependencies"].as_array().unwrap() {
                assert_eq!(dep["status"], "done");
                assert_eq!(dep["result"]["title"], dep["title"]);
            }
            assert_eq!(l["context"]["goal_chain"][0]["title"], "ship");
            let title = l["task"]["title"].clone();
            let (s, _) = srv
                .post(
                    &format!("/v1/tasks/{tid}/complete"),
                    &w,
                    json!({"lease": l["lease"], "result": {"title": title}}),
                )
                .await;
            assert_eq!(s, 200);
            order.push(tid);
        }
    }
    let pos: HashMap<&String, usize> = order.iter().enumerate().map(|(i, t)| (t, i)).collect();
    for (from, to) in edges {
        assert!(pos[from] < pos[to], "{to} ran before its dependency {from}");
    }
    let (_, ev) = srv.get(&format!("/v1/events?task={e}"), &srv.admin).await;
    let kinds: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "task.created",
            "task.ready",
            "task.leased",
            "task.completed"
        ]
    );
    // The held goal never ran.
    let (_, g) = srv.get(&format!("/v1/tasks/{goal}"), &srv.admin).await;
    assert_eq!(g["status"], "backlog");
}

async fn cycles_and_unknown_dependencies_are_refused(backend: Backend) {
    let srv = server!(backend);
    let a = id(&srv.task(&srv.admin, json!({"title": "a"})).await);
    let b = id(&srv
        .task(&srv.admin, json!({"title": "b", "depends_on": [a]}))
        .await);
    let c = id(&srv
        .task(&srv.admin, json!({"title": "c", "depends_on": [b]}))
        .await);
    let before = srv.get("/v1/events", &srv.admin).await.1;

    let (s, v) = srv
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/tasks/{a}"),
            &srv.admin,
            Some(json!({"depends_on": [c]})),
        )
        .await;
    assert_eq!((s, code(&v)), (422, "dependency_cycle"), "{v}");
    assert_eq!(v["error"]["details"]["cycle"], json!([a, c, b, a]));
    let (s, v) = srv
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/tasks/{a}"),
            &srv.admin,
            Some(json!({"depends_on": [a]})),
        )
        .await;
    assert_eq!((s, code(&v)), (422, "dependency_cycle"));
    let ghost = uuid::Uuid::now_v7();
    let (s, v) = srv
        .post(
            "/v1/tasks",
            &srv.admin,
            json!({"title": "x", "depends_on": [ghost]}),
        )
        .await;
    assert_eq!((s, code(&v)), (422, "invalid_input"));
    assert_eq!(v["error"]["details"]["field"], "depends_on[0]");
    // Nothing of the refused requests was written.
    assert_eq!(srv.get("/v1/events", &srv.admin).await.1, before);
    let (_, t) = srv.get(&format!("/v1/tasks/{a}"), &srv.admin).await;
    assert_eq!(
        (
            t["status"].as_str(),
            t["depends_on"].as_array().unwrap().len()
        ),
        (Some("ready"), 0)
    );

    // A legal edit moves a ready task back to the backlog, and lifting the
    // dependency again brings it back.
    let d = id(&srv.task(&srv.admin, json!({"title": "d"})).await);
    let (_, t) = srv
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/tasks/{d}"),
            &srv.admin,
            Some(json!({"depends_on": [c]})),
        )
        .await;
    assert_eq!(t["status"], "backlog");
    let (_, t) = srv
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/tasks/{d}"),
            &srv.admin,
            Some(json!({"depends_on": []})),
        )
        .await;
    assert_eq!(t["status"], "ready");
}

async fn decisions_are_inherited_by_subtasks(backend: Backend) {
    let srv = server!(backend);
    let goal = id(&srv
        .task(&srv.admin, json!({"title": "goal", "hold": true}))
        .await);
    let sub = id(&srv
        .task(&srv.admin, json!({"title": "sub", "parent_id": goal}))
        .await);
    let (s, _) = srv
        .post(
            &format!("/v1/tasks/{goal}/decisions"),
            &srv.admin,
            json!({"title": "Use SQLite", "rationale": "one file"}),
        )
        .await;
    assert_eq!(s, 201);
    srv.post(
        &format!("/v1/tasks/{sub}/decisions"),
        &srv.admin,
        json!({"title": "No macros"}),
    )
    .await;
    let (_, ctx) = srv
        .get(&format!("/v1/tasks/{sub}/context"), &srv.admin)
        .await;
    let titles: Vec<&str> = ctx["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Use SQLite", "No macros"]);
    let (_, ctx) = srv
        .get(&format!("/v1/tasks/{goal}/context"), &srv.admin)
        .await;
    assert_eq!(
        ctx["decisions"].as_array().unwrap().len(),
        1,
        "decisions do not flow upwards"
    );
}

backends!(
    a_dag_completes_in_topological_order,
    cycles_and_unknown_dependencies_are_refused,
    decisions_are_inherited_by_subtasks,
);
