//! Guarantee 6: bad input gets a clear 4xx JSON error, and nothing is lost
//! or half-written.
//!
//! One table of bad requests is fired at a server holding a small fixture
//! (a done task, a running task with a lease and a checkpoint, a ready task
//! with a decision, a waiting task). Every answer must be the expected 4xx
//! with the one error shape; afterwards the tenant's tasks, board, event log
//! and every fixture task read back exactly as before.

#[macro_use]
mod support;

use aruntime_api::ErrorCode;
use aruntime_api::limits::{MAX_BLOB, MAX_JSON_BODY, MAX_NAME, MAX_STATE};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{Backend, TestServer, code, id};

const JSON: Option<&str> = Some("application/json");
const TENANT: &str = "bad-input";

/// Who sends a request.
#[derive(Debug, Clone, Copy)]
enum Who {
    /// No Authorization header.
    Nobody,
    /// This exact Authorization header value.
    Header(&'static str),
    /// A well-formed bearer token nobody issued.
    Unknown,
    /// The admin of the default tenant (may create tenants).
    System,
    Admin,
    Operator,
    Worker,
    Viewer,
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    who: Who,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    status: u16,
    code: ErrorCode,
}

#[allow(clippy::too_many_arguments)]
fn case(
    name: &'static str,
    method: Method,
    path: impl Into<String>,
    who: Who,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    status: u16,
    code: ErrorCode,
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        who,
        content_type,
        body,
        status,
        code,
    }
}

/// A JSON body.
fn j(v: Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(&v).unwrap())
}

/// Raw body bytes.
fn b(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

struct Tokens {
    system: String,
    admin: String,
    operator: String,
    worker: String,
    viewer: String,
}

impl Tokens {
    fn header(&self, who: Who) -> Option<String> {
        let bearer = |t: &str| Some(format!("Bearer {t}"));
        match who {
            Who::Nobody => None,
            Who::Header(h) => Some(h.to_owned()),
            Who::Unknown => {
                bearer("art_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab")
            }
            Who::System => bearer(&self.system),
            Who::Admin => bearer(&self.admin),
            Who::Operator => bearer(&self.operator),
            Who::Worker => bearer(&self.worker),
            Who::Viewer => bearer(&self.viewer),
        }
    }
}

/// Sends one request; returns status, content type and body text, or the
/// transport error.
async fn send(
    ts: &TestServer,
    method: Method,
    path: &str,
    auth: Option<String>,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> Result<(u16, Option<String>, String), String> {
    let mut req = ts.http.request(method, format!("{}{}", ts.base, path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("transport error: {e:?}"))?;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp
        .text()
        .await
        .map_err(|e| format!("reading the body: {e:?}"))?;
    Ok((status, ct, text))
}

/// Checks one answer against the case; returns what is wrong, if anything.
fn check(c: &Case, status: u16, content_type: Option<&str>, text: &str) -> Vec<String> {
    let mut wrong = vec![];
    if status >= 500 {
        wrong.push(format!("server error {status}"));
    }
    if status != c.status {
        wrong.push(format!("status {status}, want {}", c.status));
    }
    if !content_type.is_some_and(|ct| ct.starts_with("application/json")) {
        wrong.push(format!(
            "content-type {content_type:?}, want application/json"
        ));
    }
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            wrong.push(format!("body is not JSON ({e}): {text:.300}"));
            return wrong;
        }
    };
    let top_ok = v
        .as_object()
        .is_some_and(|o| o.len() == 1 && o.contains_key("error"));
    if !top_ok {
        wrong.push(format!("body is not {{\"error\": ...}}: {v}"));
    }
    let e = &v["error"];
    let keys_ok = e.as_object().is_some_and(|o| {
        o.len() == 3
            && o.contains_key("code")
            && o.contains_key("message")
            && o.contains_key("details")
    });
    if !keys_ok {
        wrong.push(format!("error is not {{code, message, details}}: {e}"));
    }
    if code(&v) != c.code.as_str() {
        wrong.push(format!("code {:?}, want {:?}", code(&v), c.code.as_str()));
    }
    match ErrorCode::parse(code(&v)) {
        Some(parsed) if parsed.status() != status => wrong.push(format!(
            "code {} goes with {}, answered {status}",
            code(&v),
            parsed.status()
        )),
        Some(_) => {}
        None => wrong.push(format!("code {:?} is not a stable code", code(&v))),
    }
    if e["message"].as_str().is_none_or(|m| m.trim().is_empty()) {
        wrong.push(format!("message missing or empty: {e}"));
    }
    if !e["details"].is_object() {
        wrong.push(format!("details is not an object: {e}"));
    }
    wrong
}

/// What the bad requests aim at.
struct Fixture {
    /// A completed task.
    done: String,
    /// The lease `done` was completed under.
    done_lease: String,
    /// A running task with one checkpoint.
    run: String,
    /// Its live lease.
    lease: String,
    /// A blob the tenant uploaded.
    blob_sha: String,
    /// A ready task with a decision.
    ready: String,
    /// A backlog task waiting on `ready`, its parent.
    waiting: String,
}

/// Bytes of an upload one byte over the blob limit.
fn big_blob() -> Vec<u8> {
    vec![b'x'; MAX_BLOB + 1]
}

/// Bytes a viewer tries to upload.
const VIEWER_BLOB: &[u8] = b"a viewer may not upload";

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Valid JSON whose fields all pass their rules, padded with whitespace
/// past the JSON body limit.
fn padded(v: Value) -> Option<Vec<u8>> {
    let mut s = serde_json::to_vec(&v).unwrap();
    s.extend(std::iter::repeat_n(b' ', MAX_JSON_BODY + 1 - s.len()));
    Some(s)
}

/// The table: name, method, path, who, content type, body, status, code.
#[rustfmt::skip]
fn cases(f: &Fixture) -> Vec<Case> {
    use ErrorCode::*;
    use Who::*;
    let Fixture { done, done_lease, run, lease, blob_sha, ready, waiting } = f;
    let nobody = uuid::Uuid::new_v4().to_string();
    let never_sha = sha_hex(b"bytes nobody ever uploaded");
    let big_state = json!({"s": "a".repeat(MAX_STATE)});
    let big_state_body = serde_json::to_vec(&json!({"lease": lease, "summary": "big", "state": big_state})).unwrap();
    assert!(big_state_body.len() < MAX_JSON_BODY);
    let cp = format!("/v1/tasks/{run}/checkpoints");
    let t = |id: &str, sub: &str| format!("/v1/tasks/{id}{sub}");
    vec![
        // Malformed JSON.
        case("truncated json", Method::POST, "/v1/tasks", Operator, JSON, b("{\"title\": "), 400, MalformedRequest),
        case("not json at all", Method::POST, "/v1/tasks", Operator, JSON, b("title=x"), 400, MalformedRequest),
        case("empty body declared json", Method::POST, "/v1/tasks", Operator, JSON, b(""), 400, MalformedRequest),
        case("trailing comma", Method::POST, "/v1/leases", Worker, JSON, b("{\"worker\": \"w\",}"), 400, MalformedRequest),
        case("invalid utf-8", Method::POST, "/v1/tasks", Operator, JSON, Some(b"{\"title\": \"\xff\xfe\"}".to_vec()), 400, MalformedRequest),
        case("truncated checkpoint", Method::POST, cp.clone(), Worker, JSON, b("{\"lease\": \"ls_"), 400, MalformedRequest),
        case("truncated complete", Method::POST, t(run, "/complete"), Worker, JSON, b("{\"lease\""), 400, MalformedRequest),
        case("truncated patch", Method::PATCH, t(ready, ""), Operator, JSON, b("{\"title\": \"x\""), 400, MalformedRequest),
        // Wrong types.
        case("title is a number", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": 5})), 422, InvalidInput),
        case("priority is a string", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "x", "priority": "high"})), 422, InvalidInput),
        case("labels is a string", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "x", "labels": "a"})), 422, InvalidInput),
        case("depends_on not uuids", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "x", "depends_on": ["nope"]})), 422, InvalidInput),
        case("body is an array", Method::POST, "/v1/tasks", Operator, JSON, j(json!([{"title": "x"}])), 422, InvalidInput),
        case("body is null", Method::POST, "/v1/tasks", Operator, JSON, b("null"), 422, InvalidInput),
        case("priority overflows i32", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "x", "priority": 1u64 << 40})), 422, InvalidInput),
        case("claim max negative", Method::POST, "/v1/leases", Worker, JSON, j(json!({"worker": "w", "max": -1})), 422, InvalidInput),
        case("lease is a number", Method::POST, t(run, "/complete"), Worker, JSON, j(json!({"lease": 123})), 422, InvalidInput),
        case("retryable is a string", Method::POST, t(run, "/fail"), Worker, JSON, j(json!({"lease": lease, "error": "e", "retryable": "no"})), 422, InvalidInput),
        case("patch priority float", Method::PATCH, t(ready, ""), Operator, JSON, j(json!({"priority": 1.5})), 422, InvalidInput),
        case("decision title is a list", Method::POST, t(ready, "/decisions"), Operator, JSON, j(json!({"title": ["x"]})), 422, InvalidInput),
        case("unknown role", Method::POST, format!("/v1/tenants/{TENANT}/tokens"), Admin, JSON, j(json!({"role": "superuser"})), 422, InvalidInput),
        case("artifacts is an object", Method::POST, cp.clone(), Worker, JSON, j(json!({"lease": lease, "summary": "s", "artifacts": {"a": 1}})), 422, InvalidInput),
        // Missing required fields.
        case("task without title", Method::POST, "/v1/tasks", Operator, JSON, j(json!({})), 422, InvalidInput),
        case("claim without worker", Method::POST, "/v1/leases", Worker, JSON, j(json!({})), 422, InvalidInput),
        case("checkpoint without summary", Method::POST, cp.clone(), Worker, JSON, j(json!({"lease": lease})), 422, InvalidInput),
        case("checkpoint without lease", Method::POST, cp.clone(), Worker, JSON, j(json!({"summary": "s"})), 422, InvalidInput),
        case("complete without lease", Method::POST, t(run, "/complete"), Worker, JSON, j(json!({"result": {}})), 422, InvalidInput),
        case("fail without error", Method::POST, t(run, "/fail"), Worker, JSON, j(json!({"lease": lease})), 422, InvalidInput),
        case("block without reason", Method::POST, t(run, "/block"), Worker, JSON, j(json!({"lease": lease})), 422, InvalidInput),
        case("release without lease", Method::POST, t(run, "/release"), Worker, JSON, j(json!({"notes": "n"})), 422, InvalidInput),
        case("decision without title", Method::POST, t(ready, "/decisions"), Operator, JSON, j(json!({"rationale": "r"})), 422, InvalidInput),
        case("tenant without name", Method::POST, "/v1/tenants", System, JSON, j(json!({})), 422, InvalidInput),
        case("token without role", Method::POST, format!("/v1/tenants/{TENANT}/tokens"), Admin, JSON, j(json!({"name": "n"})), 422, InvalidInput),
        // Values that break a rule.
        case("blank title", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "   "})), 422, InvalidInput),
        case("label with a space", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "x", "labels": ["a b"]})), 422, InvalidInput),
        case("zero max_attempts", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "x", "max_attempts": 0})), 422, InvalidInput),
        case("zero lease ttl", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "x", "lease_ttl_s": 0})), 422, InvalidInput),
        case("title too long", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "t".repeat(MAX_NAME + 1)})), 413, PayloadTooLarge),
        case("claim max zero", Method::POST, "/v1/leases", Worker, JSON, j(json!({"worker": "w", "max": 0})), 422, InvalidInput),
        case("claim wait too long", Method::POST, "/v1/leases", Worker, JSON, j(json!({"worker": "w", "wait_ms": 60_001})), 422, InvalidInput),
        case("blank worker name", Method::POST, "/v1/leases", Worker, JSON, j(json!({"worker": ""})), 422, InvalidInput),
        case("artifact sha not hex", Method::POST, cp.clone(), Worker, JSON, j(json!({"lease": lease, "summary": "s", "artifacts": [{"name": "a", "sha256": "xyz"}]})), 422, InvalidInput),
        case("patch blank title", Method::PATCH, t(ready, ""), Operator, JSON, j(json!({"title": ""})), 422, InvalidInput),
        case("blank decision title", Method::POST, t(ready, "/decisions"), Operator, JSON, j(json!({"title": " "})), 422, InvalidInput),
        // Unknown fields.
        case("task with unknown field", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "x", "bogus": 1})), 422, InvalidInput),
        case("task naming a tenant", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "x", "tenant": "default"})), 422, InvalidInput),
        case("claim with unknown field", Method::POST, "/v1/leases", Worker, JSON, j(json!({"worker": "w", "tenant": "default"})), 422, InvalidInput),
        case("patch status", Method::PATCH, t(ready, ""), Operator, JSON, j(json!({"status": "done"})), 422, InvalidInput),
        case("checkpoint with unknown field", Method::POST, cp.clone(), Worker, JSON, j(json!({"lease": lease, "summary": "s", "extra": true})), 422, InvalidInput),
        case("complete with unknown field", Method::POST, t(run, "/complete"), Worker, JSON, j(json!({"lease": lease, "status": "done"})), 422, InvalidInput),
        case("tenant with unknown field", Method::POST, "/v1/tenants", System, JSON, j(json!({"name": "zz-new", "owner": "me"})), 422, InvalidInput),
        // Content type.
        case("task without content-type", Method::POST, "/v1/tasks", Operator, None, j(json!({"title": "x"})), 415, UnsupportedMediaType),
        case("task as text/plain", Method::POST, "/v1/tasks", Operator, Some("text/plain"), j(json!({"title": "x"})), 415, UnsupportedMediaType),
        case("claim without content-type", Method::POST, "/v1/leases", Worker, None, j(json!({"worker": "w"})), 415, UnsupportedMediaType),
        case("checkpoint as form", Method::POST, cp.clone(), Worker, Some("application/x-www-form-urlencoded"), j(json!({"lease": lease, "summary": "s"})), 415, UnsupportedMediaType),
        case("complete without content-type", Method::POST, t(run, "/complete"), Worker, None, j(json!({"lease": lease})), 415, UnsupportedMediaType),
        case("patch without content-type", Method::PATCH, t(ready, ""), Operator, None, j(json!({"title": "x"})), 415, UnsupportedMediaType),
        // Oversized.
        case("task body over 2 MiB", Method::POST, "/v1/tasks", Operator, JSON, padded(json!({"title": "padded"})), 413, PayloadTooLarge),
        case("claim body over 2 MiB", Method::POST, "/v1/leases", Worker, JSON, padded(json!({"worker": "padded"})), 413, PayloadTooLarge),
        case("checkpoint body over 2 MiB", Method::POST, cp.clone(), Worker, JSON, padded(json!({"lease": lease, "summary": "padded"})), 413, PayloadTooLarge),
        case("checkpoint state over 1 MiB", Method::POST, cp.clone(), Worker, JSON, Some(big_state_body.clone()), 413, PayloadTooLarge),
        case("checkpoint test_results over 1 MiB", Method::POST, cp.clone(), Worker, JSON, j(json!({"lease": lease, "summary": "big", "test_results": big_state})), 413, PayloadTooLarge),
        case("complete result over 1 MiB", Method::POST, t(run, "/complete"), Worker, JSON, j(json!({"lease": lease, "result": big_state})), 413, PayloadTooLarge),
        case("goal over 64 KiB", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "x", "goal": "g".repeat(64 * 1024 + 1)})), 413, PayloadTooLarge),
        case("blob over 16 MiB", Method::PUT, "/v1/blobs", Worker, Some("application/octet-stream"), Some(big_blob()), 413, PayloadTooLarge),
        // Unknown blob.
        case("artifact never uploaded", Method::POST, cp.clone(), Worker, JSON, j(json!({"lease": lease, "summary": "s", "artifacts": [{"name": "a", "sha256": never_sha}]})), 422, UnknownBlob),
        case("second artifact never uploaded", Method::POST, cp.clone(), Worker, JSON, j(json!({"lease": lease, "summary": "s", "artifacts": [{"name": "ok", "sha256": blob_sha}, {"name": "b", "sha256": never_sha}]})), 422, UnknownBlob),
        // Unknown and malformed ids.
        case("get unknown task", Method::GET, t(&nobody, ""), Viewer, None, None, 404, NotFound),
        case("get non-uuid task", Method::GET, "/v1/tasks/not-a-uuid", Viewer, None, None, 404, NotFound),
        case("get numeric task id", Method::GET, "/v1/tasks/12345", Viewer, None, None, 404, NotFound),
        case("patch unknown task", Method::PATCH, t(&nobody, ""), Operator, JSON, j(json!({"title": "x"})), 404, NotFound),
        case("cancel unknown task", Method::POST, t(&nobody, "/cancel"), Operator, None, None, 404, NotFound),
        case("hold non-uuid task", Method::POST, "/v1/tasks/xyz/hold", Operator, None, None, 404, NotFound),
        case("checkpoint unknown task", Method::POST, t(&nobody, "/checkpoints"), Worker, JSON, j(json!({"lease": lease, "summary": "s"})), 404, NotFound),
        case("complete unknown task", Method::POST, t(&nobody, "/complete"), Worker, JSON, j(json!({"lease": lease})), 404, NotFound),
        case("checkpoints of unknown task", Method::GET, t(&nobody, "/checkpoints"), Viewer, None, None, 404, NotFound),
        case("unknown checkpoint seq", Method::GET, t(run, "/checkpoints/99"), Viewer, None, None, 404, NotFound),
        case("non-numeric checkpoint seq", Method::GET, t(run, "/checkpoints/latest"), Viewer, None, None, 404, NotFound),
        case("attempts of unknown task", Method::GET, t(&nobody, "/attempts"), Viewer, None, None, 404, NotFound),
        case("decisions of unknown task", Method::GET, t(&nobody, "/decisions"), Viewer, None, None, 404, NotFound),
        case("decide on unknown task", Method::POST, t(&nobody, "/decisions"), Operator, JSON, j(json!({"title": "x"})), 404, NotFound),
        case("context of unknown task", Method::GET, t(&nobody, "/context"), Viewer, None, None, 404, NotFound),
        case("context of non-uuid task", Method::GET, "/v1/tasks/nope/context", Viewer, None, None, 404, NotFound),
        case("unknown blob", Method::GET, format!("/v1/blobs/{never_sha}"), Viewer, None, None, 404, NotFound),
        case("non-hex blob", Method::GET, "/v1/blobs/not-a-sha", Viewer, None, None, 404, NotFound),
        case("token for unknown tenant", Method::POST, "/v1/tenants/no-such-tenant/tokens", System, JSON, j(json!({"role": "viewer"})), 404, NotFound),
        case("token for another tenant", Method::POST, "/v1/tenants/default/tokens", Admin, JSON, j(json!({"role": "admin"})), 404, NotFound),
        // Unknown routes.
        case("unknown v1 route", Method::GET, "/v1/nope", Admin, None, None, 404, RouteNotFound),
        case("unknown task sub-route", Method::POST, t(ready, "/explode"), Admin, JSON, j(json!({})), 404, RouteNotFound),
        case("unknown version", Method::POST, "/v2/tasks", Admin, JSON, j(json!({"title": "x"})), 404, RouteNotFound),
        case("too deep", Method::GET, t(run, "/checkpoints/1/extra"), Admin, None, None, 404, RouteNotFound),
        // Wrong method.
        case("delete a task", Method::DELETE, t(ready, ""), Admin, None, None, 405, MethodNotAllowed),
        case("put tasks", Method::PUT, "/v1/tasks", Admin, JSON, j(json!({"title": "x"})), 405, MethodNotAllowed),
        case("get leases", Method::GET, "/v1/leases", Admin, None, None, 405, MethodNotAllowed),
        case("get complete", Method::GET, t(run, "/complete"), Admin, None, None, 405, MethodNotAllowed),
        case("get hold", Method::GET, t(ready, "/hold"), Admin, None, None, 405, MethodNotAllowed),
        case("post blobs", Method::POST, "/v1/blobs", Admin, Some("application/octet-stream"), b("x"), 405, MethodNotAllowed),
        case("delete a blob", Method::DELETE, format!("/v1/blobs/{}", blob_sha), Admin, None, None, 405, MethodNotAllowed),
        case("get heartbeat", Method::GET, format!("/v1/leases/{lease}/heartbeat"), Admin, None, None, 405, MethodNotAllowed),
        case("get tenants", Method::GET, "/v1/tenants", System, None, None, 405, MethodNotAllowed),
        // Invalid transitions.
        case("unblock a ready task", Method::POST, t(ready, "/unblock"), Operator, None, None, 409, InvalidTransition),
        case("reopen a done task", Method::POST, t(done, "/reopen"), Operator, None, None, 409, InvalidTransition),
        case("reopen a running task", Method::POST, t(run, "/reopen"), Operator, None, None, 409, InvalidTransition),
        case("cancel a done task", Method::POST, t(done, "/cancel"), Operator, None, None, 409, InvalidTransition),
        case("hold a done task", Method::POST, t(done, "/hold"), Operator, None, None, 409, InvalidTransition),
        case("hold a running task", Method::POST, t(run, "/hold"), Operator, None, None, 409, InvalidTransition),
        case("unhold a task not held", Method::POST, t(ready, "/unhold"), Operator, None, None, 409, InvalidTransition),
        case("unhold a waiting task not held", Method::POST, t(waiting, "/unhold"), Operator, None, None, 409, InvalidTransition),
        case("unblock a running task", Method::POST, t(run, "/unblock"), Admin, None, None, 409, InvalidTransition),
        case("new dependencies on a done task", Method::PATCH, t(done, ""), Operator, JSON, j(json!({"depends_on": [ready]})), 409, InvalidTransition),
        case("new dependencies on a running task", Method::PATCH, t(run, ""), Operator, JSON, j(json!({"depends_on": []})), 409, InvalidTransition),
        // Lease writes with a bogus, foreign or finished lease.
        case("heartbeat bogus lease", Method::POST, "/v1/leases/ls_bogus/heartbeat", Worker, None, None, 409, LeaseLost),
        case("heartbeat finished lease", Method::POST, format!("/v1/leases/{done_lease}/heartbeat"), Worker, None, None, 409, LeaseLost),
        case("checkpoint bogus lease", Method::POST, cp.clone(), Worker, JSON, j(json!({"lease": "ls_bogus", "summary": "s"})), 409, LeaseLost),
        case("checkpoint finished lease", Method::POST, cp.clone(), Worker, JSON, j(json!({"lease": done_lease, "summary": "s"})), 409, LeaseLost),
        case("complete bogus lease", Method::POST, t(run, "/complete"), Worker, JSON, j(json!({"lease": "ls_bogus"})), 409, LeaseLost),
        case("fail bogus lease", Method::POST, t(run, "/fail"), Worker, JSON, j(json!({"lease": "ls_bogus", "error": "e"})), 409, LeaseLost),
        case("block bogus lease", Method::POST, t(run, "/block"), Worker, JSON, j(json!({"lease": "ls_bogus", "reason": "r"})), 409, LeaseLost),
        case("release bogus lease", Method::POST, t(run, "/release"), Worker, JSON, j(json!({"lease": "ls_bogus"})), 409, LeaseLost),
        case("empty lease", Method::POST, t(run, "/complete"), Worker, JSON, j(json!({"lease": ""})), 409, LeaseLost),
        case("lease of another task", Method::POST, t(ready, "/complete"), Worker, JSON, j(json!({"lease": lease})), 409, LeaseLost),
        case("checkpoint with another task's lease", Method::POST, t(ready, "/checkpoints"), Worker, JSON, j(json!({"lease": lease, "summary": "s"})), 409, LeaseLost),
        case("complete a done task", Method::POST, t(done, "/complete"), Worker, JSON, j(json!({"lease": done_lease})), 409, LeaseLost),
        case("release a done task with a live lease", Method::POST, t(done, "/release"), Worker, JSON, j(json!({"lease": lease})), 409, LeaseLost),
        // Authentication.
        case("no token on list", Method::GET, "/v1/tasks", Nobody, None, None, 401, Unauthorized),
        case("no token on create", Method::POST, "/v1/tasks", Nobody, JSON, j(json!({"title": "x"})), 401, Unauthorized),
        case("no token on claim", Method::POST, "/v1/leases", Nobody, JSON, j(json!({"worker": "w"})), 401, Unauthorized),
        case("no token on heartbeat", Method::POST, format!("/v1/leases/{lease}/heartbeat"), Nobody, None, None, 401, Unauthorized),
        case("no token on complete", Method::POST, t(run, "/complete"), Nobody, JSON, j(json!({"lease": lease})), 401, Unauthorized),
        case("no token on blob upload", Method::PUT, "/v1/blobs", Nobody, Some("application/octet-stream"), b("x"), 401, Unauthorized),
        case("no token on metrics", Method::GET, "/metrics", Nobody, None, None, 401, Unauthorized),
        case("unknown token", Method::GET, "/v1/tasks", Unknown, None, None, 401, Unauthorized),
        case("unknown token on create", Method::POST, "/v1/tasks", Unknown, JSON, j(json!({"title": "x"})), 401, Unauthorized),
        case("unknown token on cancel", Method::POST, t(ready, "/cancel"), Unknown, None, None, 401, Unauthorized),
        case("basic auth", Method::GET, "/v1/tasks", Header("Basic dXNlcjpwYXNz"), None, None, 401, Unauthorized),
        case("bearer without token", Method::GET, "/v1/tasks", Header("Bearer "), None, None, 401, Unauthorized),
        case("token without scheme", Method::GET, "/v1/board", Header("art_abc"), None, None, 401, Unauthorized),
        // Roles.
        case("viewer creates a task", Method::POST, "/v1/tasks", Viewer, JSON, j(json!({"title": "x"})), 403, Forbidden),
        case("viewer patches a task", Method::PATCH, t(ready, ""), Viewer, JSON, j(json!({"title": "x"})), 403, Forbidden),
        case("viewer leases", Method::POST, "/v1/leases", Viewer, JSON, j(json!({"worker": "w"})), 403, Forbidden),
        case("viewer cancels", Method::POST, t(ready, "/cancel"), Viewer, None, None, 403, Forbidden),
        case("viewer holds", Method::POST, t(ready, "/hold"), Viewer, None, None, 403, Forbidden),
        case("viewer unblocks", Method::POST, t(ready, "/unblock"), Viewer, None, None, 403, Forbidden),
        case("viewer heartbeats", Method::POST, format!("/v1/leases/{lease}/heartbeat"), Viewer, None, None, 403, Forbidden),
        case("viewer checkpoints", Method::POST, cp.clone(), Viewer, JSON, j(json!({"lease": lease, "summary": "s"})), 403, Forbidden),
        case("viewer completes", Method::POST, t(run, "/complete"), Viewer, JSON, j(json!({"lease": lease})), 403, Forbidden),
        case("viewer releases", Method::POST, t(run, "/release"), Viewer, JSON, j(json!({"lease": lease})), 403, Forbidden),
        case("viewer decides", Method::POST, t(ready, "/decisions"), Viewer, JSON, j(json!({"title": "x"})), 403, Forbidden),
        case("viewer uploads a blob", Method::PUT, "/v1/blobs", Viewer, Some("application/octet-stream"), Some(VIEWER_BLOB.to_vec()), 403, Forbidden),
        case("worker creates a tenant", Method::POST, "/v1/tenants", Worker, JSON, j(json!({"name": "zz-worker"})), 403, Forbidden),
        case("tenant admin creates a tenant", Method::POST, "/v1/tenants", Admin, JSON, j(json!({"name": "zz-admin"})), 403, Forbidden),
        case("worker creates a task", Method::POST, "/v1/tasks", Worker, JSON, j(json!({"title": "x"})), 403, Forbidden),
        case("worker cancels", Method::POST, t(run, "/cancel"), Worker, None, None, 403, Forbidden),
        case("worker makes a token", Method::POST, format!("/v1/tenants/{TENANT}/tokens"), Worker, JSON, j(json!({"role": "admin"})), 403, Forbidden),
        case("operator makes a token", Method::POST, format!("/v1/tenants/{TENANT}/tokens"), Operator, JSON, j(json!({"role": "admin"})), 403, Forbidden),
        case("operator leases", Method::POST, "/v1/leases", Operator, JSON, j(json!({"worker": "w"})), 403, Forbidden),
        case("operator completes", Method::POST, t(run, "/complete"), Operator, JSON, j(json!({"lease": lease})), 403, Forbidden),
        // Query strings.
        case("unknown status filter", Method::GET, "/v1/tasks?status=bogus", Viewer, None, None, 400, MalformedRequest),
        case("non-numeric limit", Method::GET, "/v1/tasks?limit=abc", Viewer, None, None, 400, MalformedRequest),
        case("negative limit", Method::GET, "/v1/tasks?limit=-1", Viewer, None, None, 400, MalformedRequest),
        case("non-uuid parent filter", Method::GET, "/v1/tasks?parent=nope", Viewer, None, None, 400, MalformedRequest),
        case("non-uuid cursor", Method::GET, "/v1/tasks?cursor=nope", Viewer, None, None, 400, MalformedRequest),
        case("unknown task query param", Method::GET, "/v1/tasks?owner=me", Viewer, None, None, 400, MalformedRequest),
        case("non-numeric after", Method::GET, "/v1/events?after=x", Viewer, None, None, 400, MalformedRequest),
        case("non-uuid event task", Method::GET, "/v1/events?task=nope", Viewer, None, None, 400, MalformedRequest),
        case("unknown event query param", Method::GET, "/v1/events?tenant=default", Viewer, None, None, 400, MalformedRequest),
        case("board flag not a bool", Method::GET, "/v1/board?include_cancelled=maybe", Viewer, None, None, 400, MalformedRequest),
        case("unknown context format", Method::GET, t(ready, "/context?format=xml"), Viewer, None, None, 400, MalformedRequest),
        case("negative context max_bytes", Method::GET, t(ready, "/context?max_bytes=-1"), Viewer, None, None, 400, MalformedRequest),
        case("context cannot fit", Method::GET, t(ready, "/context?max_bytes=10"), Viewer, None, None, 422, ContextTooLarge),
        // Dependencies and parents that do not exist.
        case("depends on unknown id", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "x", "depends_on": [nobody]})), 422, InvalidInput),
        case("depends on known and unknown ids", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "x", "depends_on": [ready, nobody]})), 422, InvalidInput),
        case("parent unknown", Method::POST, "/v1/tasks", Operator, JSON, j(json!({"title": "x", "parent_id": nobody})), 422, InvalidInput),
        case("patch depends on unknown id", Method::PATCH, t(ready, ""), Operator, JSON, j(json!({"depends_on": [nobody], "title": "renamed"})), 422, InvalidInput),
        case("patch depends on itself", Method::PATCH, t(ready, ""), Operator, JSON, j(json!({"depends_on": [ready], "title": "renamed"})), 422, DependencyCycle),
        case("patch makes a cycle", Method::PATCH, t(ready, ""), Operator, JSON, j(json!({"depends_on": [waiting]})), 422, DependencyCycle),
        // Tenant names.
        case("tenant name with capitals", Method::POST, "/v1/tenants", System, JSON, j(json!({"name": "UPPER"})), 422, InvalidInput),
        case("tenant name with a space", Method::POST, "/v1/tenants", System, JSON, j(json!({"name": "two words"})), 422, InvalidInput),
        case("tenant name with a slash", Method::POST, "/v1/tenants", System, JSON, j(json!({"name": "a/b"})), 422, InvalidInput),
        case("empty tenant name", Method::POST, "/v1/tenants", System, JSON, j(json!({"name": ""})), 422, InvalidInput),
        case("tenant name too long", Method::POST, "/v1/tenants", System, JSON, j(json!({"name": "n".repeat(65)})), 422, InvalidInput),
        case("tenant name not a string", Method::POST, "/v1/tenants", System, JSON, j(json!({"name": 7})), 422, InvalidInput),
        case("tenant that exists", Method::POST, "/v1/tenants", System, JSON, j(json!({"name": TENANT})), 409, AlreadyExists),
    ]
}

async fn get_ok(ts: &TestServer, path: &str, token: &str) -> Value {
    let (s, v) = ts.get(path, token).await;
    assert_eq!(s, 200, "GET {path}: {v}");
    v
}

/// Everything a user can read about the tenant and the given tasks.
async fn snapshot(ts: &TestServer, token: &str, tasks: &[&str]) -> Value {
    let mut per_task = serde_json::Map::new();
    for t in tasks {
        let mut one = serde_json::Map::new();
        for sub in ["", "/checkpoints", "/attempts", "/decisions", "/context"] {
            let v = get_ok(ts, &format!("/v1/tasks/{t}{sub}"), token).await;
            one.insert(sub.to_owned(), v);
        }
        per_task.insert((*t).to_owned(), Value::Object(one));
    }
    json!({
        "tasks": get_ok(ts, "/v1/tasks?limit=500", token).await,
        "board": get_ok(ts, "/v1/board?include_cancelled=true", token).await,
        "events": get_ok(ts, "/v1/events?limit=500", token).await,
        "per_task": per_task,
    })
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}

/// Where two snapshots differ, as `path: before -> after` lines.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                diff(&format!("{path}.{k}"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ => out.push(format!("{path}: {} -> {}", short(a), short(b))),
    }
}

async fn bad_requests_get_clear_errors_and_write_nothing(backend: Backend) {
    let ts = server!(backend);
    let tok = Tokens {
        system: ts.admin.clone(),
        admin: ts.token(TENANT, "admin").await,
        operator: ts.token(TENANT, "operator").await,
        worker: ts.token(TENANT, "worker").await,
        viewer: ts.token(TENANT, "viewer").await,
    };
    let fx = fixture(&ts, &tok).await;
    let tasks = [
        fx.done.as_str(),
        fx.run.as_str(),
        fx.ready.as_str(),
        fx.waiting.as_str(),
    ];
    let before = snapshot(&ts, &tok.admin, &tasks).await;
    let before_default = snapshot(&ts, &tok.system, &[]).await;

    let cases = cases(&fx);
    let mut failures = vec![];
    for c in &cases {
        let answer = send(
            &ts,
            c.method.clone(),
            &c.path,
            tok.header(c.who),
            c.content_type,
            c.body.clone(),
        )
        .await;
        let wrong = match &answer {
            Err(e) => vec![e.clone()],
            Ok((status, ct, text)) => {
                let mut w = check(c, *status, ct.as_deref(), text);
                if !w.is_empty() {
                    w.push(format!("body: {}", short(&Value::String(text.clone()))));
                }
                w
            }
        };
        if !wrong.is_empty() {
            failures.push(format!(
                "[{}] {} {}: {}",
                c.name,
                c.method,
                c.path,
                wrong.join("; ")
            ));
        }
    }

    // Nothing was written: every read answers as before.
    let after = snapshot(&ts, &tok.admin, &tasks).await;
    let after_default = snapshot(&ts, &tok.system, &[]).await;
    let mut changed = vec![];
    diff(TENANT, &before, &after, &mut changed);
    diff("default", &before_default, &after_default, &mut changed);
    for c in changed {
        failures.push(format!("partial write: {c}"));
    }
    // Refused uploads left no blob behind.
    for sha in [sha_hex(&big_blob()), sha_hex(VIEWER_BLOB)] {
        let (s, text) = ts
            .raw(
                Method::GET,
                &format!("/v1/blobs/{sha}"),
                Some(&tok.admin),
                None,
                None,
            )
            .await;
        if s != 404 {
            failures.push(format!("refused blob {sha} is readable: {s} {text:.200}"));
        }
    }
    // Refused tenants were not created: a token for one finds no tenant.
    for name in ["UPPER", "zz-worker", "zz-admin", "zz-new"] {
        let (s, v) = ts
            .post(
                &format!("/v1/tenants/{name}/tokens"),
                &ts.admin,
                json!({"role": "viewer"}),
            )
            .await;
        if s != 404 || code(&v) != "not_found" {
            failures.push(format!("refused tenant {name} exists: {s} {v}"));
        }
    }
    // The lease survived every refused write and still works.
    let (s, v) = ts
        .call(
            Method::POST,
            &format!("/v1/leases/{}/heartbeat", fx.lease),
            &tok.worker,
            None,
        )
        .await;
    if s != 200 {
        failures.push(format!("the fixture lease no longer heartbeats: {s} {v}"));
    }

    assert!(
        failures.is_empty(),
        "{} bad-input checks failed ({} cases):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    ts.stop().await;
}

/// Unknown fields are refused inside nested request objects too: an
/// artifact `{name, sha256}` with an extra key is as wrong as a checkpoint
/// with one, the refusal says where it is, and the checkpoint must not be
/// written.
async fn unknown_field_inside_an_artifact_is_refused_and_writes_nothing(backend: Backend) {
    let ts = server!(backend);
    let tok = Tokens {
        system: ts.admin.clone(),
        admin: ts.token(TENANT, "admin").await,
        operator: ts.token(TENANT, "operator").await,
        worker: ts.token(TENANT, "worker").await,
        viewer: ts.token(TENANT, "viewer").await,
    };
    let fx = fixture(&ts, &tok).await;
    let before = snapshot(&ts, &tok.admin, &[fx.run.as_str()]).await;

    let c = case(
        "artifact with unknown field",
        Method::POST,
        format!("/v1/tasks/{}/checkpoints", fx.run),
        Who::Worker,
        JSON,
        j(json!({"lease": fx.lease, "summary": "s",
                 "artifacts": [{"name": "a", "sha256": fx.blob_sha, "size": 1}]})),
        422,
        ErrorCode::InvalidInput,
    );
    let (status, ct, text) = send(
        &ts,
        c.method.clone(),
        &c.path,
        tok.header(c.who),
        c.content_type,
        c.body.clone(),
    )
    .await
    .unwrap();
    let mut failures = check(&c, status, ct.as_deref(), &text);
    // The message names where the bad value sits: bodies are parsed
    // without tracking the path first, and one that fails is parsed again
    // with it.
    let message = serde_json::from_str::<Value>(&text).unwrap_or_default()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !message.contains("artifacts[0]") || !message.contains("size") {
        failures.push(format!(
            "message does not name artifacts[0].size: {message:?}"
        ));
    }
    let after = snapshot(&ts, &tok.admin, &[fx.run.as_str()]).await;
    let mut changed = vec![];
    diff(TENANT, &before, &after, &mut changed);
    failures.extend(changed.into_iter().map(|c| format!("written anyway: {c}")));
    assert!(
        failures.is_empty(),
        "POST {} answered {status} {}:\n{}",
        c.path,
        short(&Value::String(text.clone())),
        failures.join("\n")
    );
    ts.stop().await;
}

/// A done task, a running task with a live lease and a checkpoint with an
/// artifact, a ready task with a decision, and a backlog task waiting on it.
async fn fixture(ts: &TestServer, tok: &Tokens) -> Fixture {
    let done = id(&ts
        .task(
            &tok.operator,
            json!({"title": "done task", "priority": 100}),
        )
        .await);
    let leases = ts.claim(&tok.worker, "w-done", 1).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["task"]["id"], done.as_str());
    let done_lease = leases[0]["lease"].as_str().unwrap().to_owned();
    let (s, v) = ts
        .post(
            &format!("/v1/tasks/{done}/complete"),
            &tok.worker,
            json!({"lease": done_lease, "result": {"ok": true}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "done");

    let run = id(&ts
        .task(
            &tok.operator,
            json!({"title": "running task", "priority": 50}),
        )
        .await);
    let leases = ts.claim(&tok.worker, "w-run", 1).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["task"]["id"], run.as_str());
    let lease = leases[0]["lease"].as_str().unwrap().to_owned();
    let (s, text) = ts
        .raw(
            Method::PUT,
            "/v1/blobs",
            Some(&tok.worker),
            Some("application/octet-stream"),
            Some(b"fixture artifact".to_vec()),
        )
        .await;
    assert_eq!(s, 201, "{text}");
    let blob_sha = serde_json::from_str::<Value>(&text).unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = ts
        .post(
            &format!("/v1/tasks/{run}/checkpoints"),
            &tok.worker,
            json!({"lease": lease, "summary": "halfway", "state": {"step": 1},
                   "artifacts": [{"name": "a.txt", "sha256": blob_sha}]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    let ready = id(&ts.task(&tok.operator, json!({"title": "ready task"})).await);
    let (s, v) = ts
        .post(
            &format!("/v1/tasks/{ready}/decisions"),
            &tok.operator,
            json!({"title": "use sqlite", "rationale": "embedded"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let waiting = ts
        .task(
            &tok.operator,
            json!({"title": "waiting task", "parent_id": ready, "depends_on": [ready]}),
        )
        .await;
    assert_eq!(waiting["status"], "backlog");

    // Time passes, so a lease renewal that should not happen would show.
    ts.advance_s(5);
    Fixture {
        done,
        done_lease,
        run,
        lease,
        blob_sha,
        ready,
        waiting: id(&waiting),
    }
}

/// The other side of the content-type cases above: a JSON body is taken
/// under any spelling of `application/json`, with parameters, or as a
/// `+json` type. The server reads the plain spelling on a shorter path
/// than the rest; both must accept, and each create must carry its
/// `Idempotency-Key` (a retry under the same key names the same task).
async fn json_bodies_are_taken_under_every_json_content_type(backend: Backend) {
    let ts = server!(backend);
    let token = ts.token(TENANT, "operator").await;
    for (i, ct) in [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/vnd.aruntime+json",
    ]
    .into_iter()
    .enumerate()
    {
        let body = j(json!({"title": format!("typed {i}")}));
        let mut ids = vec![];
        for want in [201, 200] {
            let resp = ts
                .http
                .post(format!("{}/v1/tasks", ts.base))
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", ct)
                .header("idempotency-key", format!("key-{i}"))
                .body(body.clone().unwrap_or_default())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), want, "{ct}");
            let task: Value = resp.json().await.unwrap();
            assert_eq!(task["title"], format!("typed {i}"), "{ct}");
            ids.push(task["id"].clone());
        }
        assert_eq!(ids[0], ids[1], "{ct}: the retry named another task");
    }
    ts.stop().await;
}

backends!(
    bad_requests_get_clear_errors_and_write_nothing,
    unknown_field_inside_an_artifact_is_refused_and_writes_nothing,
    json_bodies_are_taken_under_every_json_content_type,
);
