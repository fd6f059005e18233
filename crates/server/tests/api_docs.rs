//! The OpenAPI document and the router agree, and /metrics and health work.

#[macro_use]
mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Backend, code};

async fn every_documented_operation_is_routed(backend: Backend) {
    let srv = server!(backend);
    let (s, doc) = srv
        .raw(Method::GET, "/openapi.json", None, None, None)
        .await;
    assert_eq!(s, 200);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 25, "{} paths", paths.len());
    let mut checked = 0;
    for (path, ops) in paths {
        let concrete = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    uuid::Uuid::now_v7().to_string()
                } else {
                    seg.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in ops.as_object().unwrap() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = op.get("requestBody").map(|_| json!({}));
            let (s, v) = srv.call(m, &concrete, &srv.admin, body).await;
            assert!(
                s != 405 && code(&v) != "route_not_found",
                "{method} {path} is documented but not routed: {s} {v}"
            );
            assert!(s < 500, "{method} {path}: {s} {v}");
            checked += 1;
        }
        // Every schema reference resolves.
        for r in find_refs(ops) {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {r}"
            );
        }
    }
    assert!(checked >= 30);
}

fn find_refs(v: &Value) -> Vec<String> {
    match v {
        Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| {
                if k == "$ref" {
                    vec![v.as_str().unwrap_or("").to_owned()]
                } else {
                    find_refs(v)
                }
            })
            .collect(),
        Value::Array(a) => a.iter().flat_map(find_refs).collect(),
        _ => vec![],
    }
}

async fn metrics_show_tasks_leases_and_latency(backend: Backend) {
    let srv = server!(backend);
    let a = srv.task(&srv.admin, json!({"title": "a"})).await;
    srv.task(&srv.admin, json!({"title": "b"})).await;
    let (s, _) = srv
        .get(
            &format!("/v1/tasks/{}", a["id"].as_str().unwrap()),
            &srv.admin,
        )
        .await;
    assert_eq!(s, 200);
    srv.claim(&srv.admin, "w", 1).await;
    let (s, m) = srv
        .raw(Method::GET, "/metrics", Some(&srv.admin), None, None)
        .await;
    assert_eq!(s, 200);
    for line in [
        "aruntime_tasks{tenant=\"default\",status=\"ready\"} 1",
        "aruntime_tasks{tenant=\"default\",status=\"running\"} 1",
        "aruntime_leases_granted_total{tenant=\"default\"} 1",
        "# TYPE aruntime_http_request_duration_seconds histogram",
        "aruntime_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/tasks\",status=\"201\"} 2",
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
    assert!(
        m.contains("route=\"/v1/tasks/{id}\""),
        "routes are labelled by template"
    );
    assert!(
        !m.contains(a["id"].as_str().unwrap()),
        "raw ids must not become labels"
    );
    let (s, _) = srv.raw(Method::GET, "/metrics", None, None, None).await;
    assert_eq!(s, 401);
    let (s, v) = srv.raw(Method::GET, "/healthz", None, None, None).await;
    assert_eq!((s, v.as_str()), (200, r#"{"status":"ok"}"#));
    let (s, _) = srv.raw(Method::GET, "/readyz", None, None, None).await;
    assert_eq!(s, 200);
}

backends!(
    every_documented_operation_is_routed,
    metrics_show_tasks_leases_and_latency,
);
