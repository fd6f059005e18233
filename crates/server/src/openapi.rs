//! The OpenAPI 3.1 document, generated from the wire types' JSON schemas.
//! Each route the router serves is listed here once; a test walks this
//! document against the router so the two cannot drift apart.

use aruntime_api::*;
use aruntime_core::context::ContextBundle;
use aruntime_core::{Checkpoint, Decision, Task};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

struct Doc {
    g: SchemaGenerator,
    paths: Map<String, Value>,
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

impl Doc {
    #[allow(clippy::too_many_arguments)]
    fn op(
        &mut self,
        method: &str,
        path: &str,
        summary: &str,
        body: Option<Schema>,
        query: Option<Schema>,
        status: u16,
        response: Option<Schema>,
    ) {
        let mut params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if let Some(q) = query {
            let props = q
                .as_object()
                .and_then(|o| o.get("properties"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (name, s) in props {
                params.push(json!({"name": name, "in": "query", "required": false, "schema": s}));
            }
        }
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                status.to_string(): match &response {
                    Some(r) => json!({"description": "success", "content": {"application/json": {"schema": r}}}),
                    None => json!({"description": "success"}),
                },
                "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            },
        });
        if let Some(b) = body {
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": b}}});
        }
        let entry = self
            .paths
            .entry(path.to_owned())
            .or_insert_with(|| json!({}));
        entry[method] = op;
    }

    /// Documents `Prefer: return=minimal` on a task write already listed
    /// (see [`crate::prefer`]): the header, and a [`TaskRef`] as the other
    /// shape of its answer.
    fn prefer_minimal(&mut self, method: &str, path: &str, status: u16) {
        let brief = serde_json::to_value(schema::<TaskRef>(&mut self.g)).unwrap_or_default();
        let Some(op) = self.paths.get_mut(path).and_then(|p| p.get_mut(method)) else {
            return;
        };
        if let Some(params) = op["parameters"].as_array_mut() {
            params.push(json!({
                "name": "Prefer",
                "in": "header",
                "required": false,
                "description": "`return=minimal`: answer with the task's id and status only (a TaskRef), \
                                acknowledged in `Preference-Applied` (RFC 7240)",
                "schema": {"type": "string"},
            }));
        }
        let body =
            &mut op["responses"][status.to_string()]["content"]["application/json"]["schema"];
        let full = body.take();
        *body = json!({"oneOf": [full, brief]});
    }
}

/// The document served at `/openapi.json`.
pub fn document() -> Value {
    let g = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let mut d = Doc {
        g,
        paths: Map::new(),
    };
    macro_rules! s {
        ($t:ty) => {
            Some(schema::<$t>(&mut d.g))
        };
    }
    let _ = schema::<ErrorBody>(&mut d.g);
    let none = || None;
    let b = s!(CreateTenant);
    let r = s!(Tenant);
    d.op(
        "post",
        "/v1/tenants",
        "Create a tenant (admin of the default tenant)",
        b,
        none(),
        201,
        r,
    );
    let (b, r) = (s!(CreateToken), s!(TokenCreated));
    d.op(
        "post",
        "/v1/tenants/{tenant}/tokens",
        "Create an API token",
        b,
        none(),
        201,
        r,
    );
    let (b, r) = (s!(NewTask), s!(Task));
    d.op(
        "post",
        "/v1/tasks",
        "Create a task (honours Idempotency-Key and Prefer: return=minimal)",
        b,
        none(),
        201,
        r,
    );
    d.prefer_minimal("post", "/v1/tasks", 201);
    let (b, r) = (s!(PlanImport), s!(PlanImported));
    d.op(
        "post",
        "/v1/plans",
        "Import a goal and its subtasks in one transaction (idempotent by key)",
        b,
        none(),
        201,
        r,
    );
    let (q, r) = (s!(TaskQuery), s!(TaskPage));
    d.op("get", "/v1/tasks", "List tasks", none(), q, 200, r);
    let r = s!(Task);
    d.op(
        "get",
        "/v1/tasks/{id}",
        "Get a task",
        none(),
        none(),
        200,
        r,
    );
    let (b, r) = (s!(TaskPatch), s!(Task));
    d.op("patch", "/v1/tasks/{id}", "Edit a task", b, none(), 200, r);
    for (verb, what) in [
        ("hold", "Hold a task in the backlog"),
        ("unhold", "Lift a hold"),
        ("unblock", "Let a blocked task go on"),
        ("cancel", "Cancel a task"),
        ("reopen", "Reopen a failed or cancelled task"),
    ] {
        let r = s!(Task);
        d.op(
            "post",
            &format!("/v1/tasks/{{id}}/{verb}"),
            what,
            none(),
            none(),
            200,
            r,
        );
    }
    let (b, r) = (s!(NewCheckpoint), s!(Checkpoint));
    d.op(
        "post",
        "/v1/tasks/{id}/checkpoints",
        "Write a checkpoint under a lease",
        b,
        none(),
        201,
        r,
    );
    let r = s!(CheckpointList);
    d.op(
        "get",
        "/v1/tasks/{id}/checkpoints",
        "List checkpoints",
        none(),
        none(),
        200,
        r,
    );
    let r = s!(Checkpoint);
    d.op(
        "get",
        "/v1/tasks/{id}/checkpoints/{seq}",
        "Get a checkpoint",
        none(),
        none(),
        200,
        r,
    );
    let (b, r) = (s!(CompleteRequest), s!(Task));
    d.op(
        "post",
        "/v1/tasks/{id}/complete",
        "Complete under a lease",
        b,
        none(),
        200,
        r,
    );
    d.prefer_minimal("post", "/v1/tasks/{id}/complete", 200);
    let (b, r) = (s!(FailRequest), s!(Task));
    d.op(
        "post",
        "/v1/tasks/{id}/fail",
        "Report a failure under a lease",
        b,
        none(),
        200,
        r,
    );
    d.prefer_minimal("post", "/v1/tasks/{id}/fail", 200);
    let (b, r) = (s!(BlockRequest), s!(Task));
    d.op(
        "post",
        "/v1/tasks/{id}/block",
        "Block under a lease",
        b,
        none(),
        200,
        r,
    );
    d.prefer_minimal("post", "/v1/tasks/{id}/block", 200);
    let (b, r) = (s!(ReleaseRequest), s!(Task));
    d.op(
        "post",
        "/v1/tasks/{id}/release",
        "Hand the task back with notes",
        b,
        none(),
        200,
        r,
    );
    d.prefer_minimal("post", "/v1/tasks/{id}/release", 200);
    let r = s!(AttemptList);
    d.op(
        "get",
        "/v1/tasks/{id}/attempts",
        "List attempts",
        none(),
        none(),
        200,
        r,
    );
    let (b, r) = (s!(NewDecision), s!(Decision));
    d.op(
        "post",
        "/v1/tasks/{id}/decisions",
        "Record a decision",
        b,
        none(),
        201,
        r,
    );
    let r = s!(DecisionList);
    d.op(
        "get",
        "/v1/tasks/{id}/decisions",
        "Decisions that apply to a task",
        none(),
        none(),
        200,
        r,
    );
    let (q, r) = (s!(ContextQuery), s!(ContextBundle));
    d.op(
        "get",
        "/v1/tasks/{id}/context",
        "The resume packet (json or markdown)",
        none(),
        q,
        200,
        r,
    );
    let (q, r) = (s!(BoardQuery), s!(Board));
    d.op("get", "/v1/board", "The board", none(), q, 200, r);
    let (b, r) = (s!(ClaimRequest), s!(ClaimResponse));
    d.op(
        "post",
        "/v1/leases",
        "Lease ready tasks (long-polls up to wait_ms)",
        b,
        none(),
        200,
        r,
    );
    let (b, r) = (s!(CompleteLeases), s!(CompletedLeases));
    d.op(
        "post",
        "/v1/leases/complete",
        "Complete several leased tasks; each entry succeeds or fails alone",
        b,
        none(),
        200,
        r,
    );
    let r = s!(HeartbeatResponse);
    d.op(
        "post",
        "/v1/leases/{lease}/heartbeat",
        "Renew a lease",
        none(),
        none(),
        200,
        r,
    );
    let (q, r) = (s!(EventQuery), s!(EventPage));
    d.op(
        "get",
        "/v1/events",
        "The tenant's event log",
        none(),
        q,
        200,
        r,
    );
    let r = s!(BlobRef);
    d.op(
        "put",
        "/v1/blobs",
        "Upload a blob (raw bytes)",
        none(),
        none(),
        201,
        r,
    );
    d.op(
        "get",
        "/v1/blobs/{sha256}",
        "Download a blob",
        none(),
        none(),
        200,
        none(),
    );
    d.op("get", "/healthz", "Liveness", none(), none(), 200, none());
    d.op(
        "get",
        "/readyz",
        "Readiness (the database answers)",
        none(),
        none(),
        200,
        none(),
    );
    d.op(
        "get",
        "/metrics",
        "Prometheus metrics of the caller's tenant",
        none(),
        none(),
        200,
        none(),
    );
    d.op(
        "get",
        "/openapi.json",
        "This document",
        none(),
        none(),
        200,
        none(),
    );
    let schemas = d.g.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "aruntime", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}],
        "paths": d.paths,
    })
}
