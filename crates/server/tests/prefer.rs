//! `Prefer: return=minimal` (RFC 7240) on the writes that answer with a
//! task: the answer is the task's id and status, acknowledged in
//! `Preference-Applied`; without the preference, the whole task as before.

#[macro_use]
mod support;

use serde_json::{Value, json};
use support::{Backend, TestServer, code, id};

/// POSTs `body` with `prefer` (if any); returns the status, the
/// `Preference-Applied` and `Location` headers and the JSON answer.
async fn post(
    srv: &TestServer,
    path: &str,
    token: &str,
    prefer: Option<&str>,
    body: Value,
    idempotency_key: Option<&str>,
) -> (u16, Option<String>, Option<String>, Value) {
    let mut req = srv
        .http
        .post(format!("{}{path}", srv.base))
        .bearer_auth(token)
        .json(&body);
    if let Some(p) = prefer {
        req = req.header("prefer", p);
    }
    if let Some(k) = idempotency_key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (applied, location) = (header("preference-applied"), header("location"));
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    (status, applied, location, v)
}

async fn a_minimal_create_answers_with_the_id_and_status_only(backend: Backend) {
    let srv = server!(backend);
    let (s, applied, location, v) = post(
        &srv,
        "/v1/tasks",
        &srv.admin,
        Some("return=minimal"),
        json!({"title": "fire and forget"}),
        None,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(applied.as_deref(), Some("return=minimal"));
    let task = id(&v);
    assert_eq!(v, json!({"id": task, "status": "ready"}));
    assert_eq!(location, Some(format!("/v1/tasks/{task}")));
    // The task is there in full for whoever reads it.
    let (s, full) = srv.get(&format!("/v1/tasks/{task}"), &srv.admin).await;
    assert_eq!(s, 200);
    assert_eq!(full["title"], "fire and forget");

    // A replay under the same key is 200, minimal too, for the same task.
    let body = json!({"title": "once"});
    let key = Some("k-1");
    let (s, _, _, first) = post(&srv, "/v1/tasks", &srv.admin, None, body.clone(), key).await;
    assert_eq!(s, 201);
    let (s, applied, location, again) = post(
        &srv,
        "/v1/tasks",
        &srv.admin,
        Some("return=minimal"),
        body,
        key,
    )
    .await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(applied.as_deref(), Some("return=minimal"));
    assert_eq!(location, None, "only a 201 names a new resource");
    assert_eq!(again, json!({"id": id(&first), "status": "ready"}));
}

async fn without_the_preference_the_whole_task_comes_back(backend: Backend) {
    let srv = server!(backend);
    for prefer in [None, Some("return=representation"), Some("respond-async")] {
        let (s, applied, location, v) = post(
            &srv,
            "/v1/tasks",
            &srv.admin,
            prefer,
            json!({"title": "full"}),
            None,
        )
        .await;
        assert_eq!(s, 201, "{prefer:?}: {v}");
        assert_eq!(applied, None, "{prefer:?}");
        assert_eq!(v["title"], "full", "{prefer:?}");
        assert_eq!(v["max_attempts"], 3, "{prefer:?}");
        assert_eq!(location, Some(format!("/v1/tasks/{}", id(&v))));
    }
}

async fn a_minimal_completion_answers_with_done_and_a_lost_lease_is_still_an_error(
    backend: Backend,
) {
    let srv = server!(backend);
    let worker = srv.token("default", "worker").await;
    let t = srv.task(&srv.admin, json!({"title": "work"})).await;
    let lease = srv.claim(&worker, "w", 1).await;
    let token = lease[0]["lease"].as_str().unwrap().to_owned();
    let path = format!("/v1/tasks/{}/complete", id(&t));
    let body = json!({"lease": token, "result": {"ok": true}});
    let (s, applied, _, v) = post(
        &srv,
        &path,
        &worker,
        Some("return=minimal"),
        body.clone(),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(applied.as_deref(), Some("return=minimal"));
    assert_eq!(v, json!({"id": id(&t), "status": "done"}));
    // The same lease again: refused in the one error shape, preference or not.
    let (s, applied, _, v) = post(&srv, &path, &worker, Some("return=minimal"), body, None).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(applied, None);
    assert_eq!(code(&v), "lease_lost");

    // fail, block and release honour it too.
    for (verb, extra, status) in [
        ("fail", json!({"error": "boom", "retryable": true}), "ready"),
        ("block", json!({"reason": "needs a person"}), "blocked"),
        ("release", json!({"notes": "later"}), "ready"),
    ] {
        let t = srv.task(&srv.admin, json!({"title": verb})).await;
        let lease = srv.claim(&worker, "w", 1).await;
        assert_eq!(lease.len(), 1, "{verb}");
        let mut body = extra;
        body["lease"] = lease[0]["lease"].clone();
        let (s, applied, _, v) = post(
            &srv,
            &format!("/v1/tasks/{}/{verb}", id(&t)),
            &worker,
            Some("return=minimal"),
            body,
            None,
        )
        .await;
        assert_eq!(s, 200, "{verb}: {v}");
        assert_eq!(applied.as_deref(), Some("return=minimal"), "{verb}");
        assert_eq!(v, json!({"id": id(&t), "status": status}), "{verb}");
    }
}

backends!(
    a_minimal_create_answers_with_the_id_and_status_only,
    without_the_preference_the_whole_task_comes_back,
    a_minimal_completion_answers_with_done_and_a_lost_lease_is_still_an_error,
);

/// The OpenAPI document lists the header and the second answer shape.
#[tokio::test]
async fn the_document_lists_the_preference() {
    let doc = aruntime_server::openapi::document();
    for (path, status) in [
        ("/v1/tasks", "201"),
        ("/v1/tasks/{id}/complete", "200"),
        ("/v1/tasks/{id}/release", "200"),
    ] {
        let op = &doc["paths"][path]["post"];
        let params = op["parameters"].as_array().unwrap();
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "Prefer" && p["in"] == "header"),
            "{path}: {params:?}"
        );
        let shapes = &op["responses"][status]["content"]["application/json"]["schema"]["oneOf"];
        let refs: Vec<&str> = shapes
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["$ref"].as_str())
            .collect();
        assert_eq!(
            refs,
            ["#/components/schemas/Task", "#/components/schemas/TaskRef"],
            "{path}"
        );
    }
}
