//! A typed client for the aruntime HTTP API.
//!
//! Requests and responses are the `aruntime-api` types the server itself
//! uses, so the two cannot drift. [`Client::claim`] hands out
//! [`LeaseHandle`]s that heartbeat in the background and report loss.
//!
//! ```no_run
//! # async fn demo() -> aruntime_client::Result<()> {
//! use aruntime_client::Client;
//! use aruntime_api::ClaimRequest;
//! let client = Client::new("http://127.0.0.1:8770", "art_...")?;
//! let req = ClaimRequest { worker: "me".into(), capabilities: vec![], max: 1, wait_ms: 30_000, ttl_s: None };
//! for lease in client.claim(&req).await? {
//!     // ... work, checkpointing with lease.checkpoint(...) ...
//!     lease.complete(serde_json::json!({"ok": true})).await?;
//! }
//! # Ok(()) }
//! ```

mod error;
mod lease;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use aruntime_api::{
    AttemptList, BlobRef, Board, BoardQuery, CheckpointList, ClaimRequest, ClaimResponse,
    CompleteLeases, CompletedLeases, CreateTenant, CreateToken, DecisionList, EventPage,
    EventQuery, HeartbeatResponse, NewCheckpoint, NewDecision, NewTask, PREFER, PlanImport,
    PlanImported, RETURN_MINIMAL, TaskPage, TaskPatch, TaskQuery, TaskRef, Tenant, TokenCreated,
};
pub use aruntime_api::{LeaseCompletion, LeaseOutcome};
use aruntime_core::context::Format;
use aruntime_core::{Checkpoint, Decision, Role, Task};
use bytes::Bytes;
use http::{Method, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

pub use error::{ClientError, Result};
pub use lease::{LeaseHandle, LeaseState};
pub use transport::{HttpTransport, Transport};

/// How long an ordinary call may take before it counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A person's steering command on a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// Keep it in the backlog.
    Hold,
    /// Let it become ready again.
    Unhold,
    /// A blocked task may be worked again.
    Unblock,
    /// Stop it for good (unless reopened).
    Cancel,
    /// A done, failed or cancelled task goes back to work.
    Reopen,
}

impl Steer {
    fn path(self) -> &'static str {
        match self {
            Steer::Hold => "hold",
            Steer::Unhold => "unhold",
            Steer::Unblock => "unblock",
            Steer::Cancel => "cancel",
            Steer::Reopen => "reopen",
        }
    }
}

/// A connection to one aruntime server as one principal. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    base: String,
    token: String,
    transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the server at `url` (e.g. `http://127.0.0.1:8770`).
    pub fn new(url: &str, token: &str) -> Result<Client> {
        let parsed: http::Uri = url
            .parse()
            .map_err(|e| ClientError::Config(format!("server URL `{url}`: {e}")))?;
        if parsed.scheme_str() != Some("http") || parsed.authority().is_none() {
            return Err(ClientError::Config(format!(
                "server URL `{url}` must look like http://HOST:PORT"
            )));
        }
        let transport = HttpTransport::new().map_err(ClientError::Config)?;
        Client::with_transport(url, token, Arc::new(transport))
    }

    /// A client over any [`Transport`]; `base` prefixes every path.
    pub fn with_transport(
        base: &str,
        token: &str,
        transport: Arc<dyn Transport>,
    ) -> Result<Client> {
        if token.is_empty() || !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(ClientError::Config(
                "the API token is empty or contains spaces or control characters".into(),
            ));
        }
        Ok(Client {
            inner: Arc::new(Inner {
                base: base.trim_end_matches('/').to_owned(),
                token: token.to_owned(),
                transport,
            }),
        })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// The bearer token this client uses.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
        extra: &[(&'static str, &str)],
        timeout: Duration,
    ) -> Result<(u16, Bytes)> {
        let url = format!("{}{path}", self.inner.base);
        let mut b = http::Request::builder().method(method).uri(&url).header(
            header::AUTHORIZATION,
            format!("Bearer {}", self.inner.token),
        );
        if let Some((_, ct)) = &body {
            b = b.header(header::CONTENT_TYPE, *ct);
        }
        for &(k, v) in extra {
            b = b.header(k, v);
        }
        let req = b
            .body(body.map(|(b, _)| b).unwrap_or_default())
            .map_err(|e| ClientError::Config(format!("building a request to {url}: {e}")))?;
        let resp = self
            .inner
            .transport
            .send(req, timeout)
            .await
            .map_err(|message| ClientError::Unreachable {
                url: self.inner.base.clone(),
                message,
            })?;
        let status = resp.status().as_u16();
        let body = resp.into_body();
        if status >= 400 {
            return Err(ClientError::from_body(status, &body));
        }
        Ok((status, body))
    }

    async fn json<R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<R> {
        self.json_with(method, path, body, &[], CALL_TIMEOUT)
            .await
            .map(|(_, r)| r)
    }

    async fn json_with<R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        extra: &[(&'static str, &str)],
        timeout: Duration,
    ) -> Result<(u16, R)> {
        let body = match body {
            Some(b) => Some((
                Bytes::from(serde_json::to_vec(b).map_err(|e| ClientError::Config(e.to_string()))?),
                "application/json",
            )),
            None => None,
        };
        let (status, bytes) = self.send(method, path, body, extra, timeout).await?;
        Ok((status, parse(status, &bytes)?))
    }

    fn query(path: &str, q: &impl Serialize) -> Result<String> {
        let qs = serde_urlencoded::to_string(q).map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(if qs.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{qs}")
        })
    }

    // ---- tenants and tokens ----

    /// Creates a tenant (admin of `default` only).
    pub async fn tenant_create(&self, name: &str) -> Result<Tenant> {
        let body = CreateTenant { name: name.into() };
        self.json(Method::POST, "/v1/tenants", Some(&body)).await
    }

    /// Creates a token in `tenant` (the caller's own, unless a system admin).
    pub async fn token_create(
        &self,
        tenant: &str,
        role: Role,
        name: Option<String>,
    ) -> Result<TokenCreated> {
        let body = CreateToken { role, name };
        let path = format!("/v1/tenants/{}/tokens", encode(tenant));
        self.json(Method::POST, &path, Some(&body)).await
    }

    // ---- tasks ----

    /// Creates a task. With `idempotency_key`, a retry returns the first
    /// task instead of creating another; the bool says whether it was new.
    pub async fn task_create(
        &self,
        spec: &NewTask,
        idempotency_key: Option<&str>,
    ) -> Result<(Task, bool)> {
        self.create_as(spec, idempotency_key, false).await
    }

    /// Like [`Client::task_create`], answered with the task's id and status
    /// only (`Prefer: return=minimal`): for producers that do not need the
    /// task they just created, which then costs neither side its JSON.
    pub async fn task_create_minimal(
        &self,
        spec: &NewTask,
        idempotency_key: Option<&str>,
    ) -> Result<(TaskRef, bool)> {
        self.create_as(spec, idempotency_key, true).await
    }

    /// `POST /v1/tasks`, read as `R`; the bool says whether it was new.
    async fn create_as<R: DeserializeOwned>(
        &self,
        spec: &NewTask,
        idempotency_key: Option<&str>,
        minimal: bool,
    ) -> Result<(R, bool)> {
        let headers = [
            (PREFER, RETURN_MINIMAL),
            ("idempotency-key", idempotency_key.unwrap_or_default()),
        ];
        let from = usize::from(!minimal);
        let to = if idempotency_key.is_some() { 2 } else { 1 };
        let extra = headers.get(from..to).unwrap_or_default();
        let (status, r) = self
            .json_with(Method::POST, "/v1/tasks", Some(spec), extra, CALL_TIMEOUT)
            .await?;
        Ok((r, status == 201))
    }

    /// Imports a plan: its goal and subtasks, in one transaction.
    pub async fn plan_import(&self, plan: &PlanImport) -> Result<PlanImported> {
        self.json(Method::POST, "/v1/plans", Some(plan)).await
    }

    /// One task.
    pub async fn task(&self, id: Uuid) -> Result<Task> {
        self.json(Method::GET, &format!("/v1/tasks/{id}"), None::<&()>)
            .await
    }

    /// A page of tasks.
    pub async fn tasks(&self, q: &TaskQuery) -> Result<TaskPage> {
        let path = Client::query("/v1/tasks", q)?;
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// Every task matching `q`, following pages.
    pub async fn tasks_all(&self, q: &TaskQuery) -> Result<Vec<Task>> {
        let mut q = q.clone();
        let mut out = vec![];
        loop {
            let page = self.tasks(&q).await?;
            out.extend(page.tasks);
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Edits a task.
    pub async fn task_patch(&self, id: Uuid, patch: &TaskPatch) -> Result<Task> {
        self.json(Method::PATCH, &format!("/v1/tasks/{id}"), Some(patch))
            .await
    }

    /// Hold, unhold, unblock, cancel or reopen a task.
    pub async fn steer(&self, id: Uuid, cmd: Steer) -> Result<Task> {
        let path = format!("/v1/tasks/{id}/{}", cmd.path());
        self.json(Method::POST, &path, None::<&()>).await
    }

    /// The board.
    pub async fn board(&self, q: &BoardQuery) -> Result<Board> {
        let path = Client::query("/v1/board", q)?;
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// Records a decision on a task.
    pub async fn decision_add(&self, id: Uuid, d: &NewDecision) -> Result<Decision> {
        self.json(Method::POST, &format!("/v1/tasks/{id}/decisions"), Some(d))
            .await
    }

    /// Decisions that apply to a task.
    pub async fn decisions(&self, id: Uuid) -> Result<DecisionList> {
        let path = format!("/v1/tasks/{id}/decisions");
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// A task's attempts.
    pub async fn attempts(&self, id: Uuid) -> Result<AttemptList> {
        let path = format!("/v1/tasks/{id}/attempts");
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// A task's checkpoints.
    pub async fn checkpoints(&self, id: Uuid) -> Result<CheckpointList> {
        let path = format!("/v1/tasks/{id}/checkpoints");
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// The context bundle as text: JSON, or markdown fitted to `max_bytes`.
    pub async fn context(
        &self,
        id: Uuid,
        format: Format,
        max_bytes: Option<u64>,
    ) -> Result<String> {
        #[derive(Serialize)]
        struct Q {
            format: Format,
            #[serde(skip_serializing_if = "Option::is_none")]
            max_bytes: Option<u64>,
        }
        let path = Client::query(&format!("/v1/tasks/{id}/context"), &Q { format, max_bytes })?;
        let (status, body) = self
            .send(Method::GET, &path, None, &[], CALL_TIMEOUT)
            .await?;
        String::from_utf8(body.to_vec()).map_err(|e| ClientError::Protocol {
            status,
            message: e.to_string(),
        })
    }

    /// The tenant's event log after `q.after`.
    pub async fn events(&self, q: &EventQuery) -> Result<EventPage> {
        let path = Client::query("/v1/events", q)?;
        self.json(Method::GET, &path, None::<&()>).await
    }

    // ---- blobs ----

    /// Uploads bytes; their sha256 is their address.
    pub async fn blob_put(&self, bytes: Vec<u8>) -> Result<BlobRef> {
        let body = Some((Bytes::from(bytes), "application/octet-stream"));
        let (status, b) = self
            .send(Method::PUT, "/v1/blobs", body, &[], CALL_TIMEOUT)
            .await?;
        parse(status, &b)
    }

    /// Downloads a blob.
    pub async fn blob_get(&self, sha256: &str) -> Result<Vec<u8>> {
        let path = format!("/v1/blobs/{}", encode(sha256));
        let (_, b) = self
            .send(Method::GET, &path, None, &[], CALL_TIMEOUT)
            .await?;
        Ok(b.to_vec())
    }

    /// The server's metrics, in the Prometheus text format (admin).
    pub async fn metrics(&self) -> Result<String> {
        let (_, b) = self
            .send(Method::GET, "/metrics", None, &[], CALL_TIMEOUT)
            .await?;
        String::from_utf8(b.to_vec())
            .map_err(|e| ClientError::Config(format!("/metrics is not UTF-8: {e}")))
    }

    // ---- leases ----

    /// Leases up to `req.max` ready tasks, long-polling up to `req.wait_ms`.
    /// Each lease heartbeats in the background until it is finished,
    /// dropped or lost.
    pub async fn claim(&self, req: &ClaimRequest) -> Result<Vec<LeaseHandle>> {
        Ok(self
            .claim_raw(req)
            .await?
            .leases
            .into_iter()
            .map(|g| LeaseHandle::start(self.clone(), g))
            .collect())
    }

    /// Like [`Client::claim`], without background heartbeats: the caller
    /// keeps the leases alive itself (stateless MCP, benchmarks).
    pub async fn claim_raw(&self, req: &ClaimRequest) -> Result<ClaimResponse> {
        let timeout = CALL_TIMEOUT + Duration::from_millis(req.wait_ms);
        self.json_with(Method::POST, "/v1/leases", Some(req), &[], timeout)
            .await
            .map(|(_, r)| r)
    }

    /// Renews a lease by its token.
    pub async fn heartbeat(&self, lease: &str) -> Result<HeartbeatResponse> {
        let path = format!("/v1/leases/{}/heartbeat", encode(lease));
        self.json(Method::POST, &path, None::<&()>).await
    }

    /// Writes a checkpoint (renews the lease).
    pub async fn checkpoint(&self, id: Uuid, cp: &NewCheckpoint) -> Result<Checkpoint> {
        let path = format!("/v1/tasks/{id}/checkpoints");
        self.json(Method::POST, &path, Some(cp)).await
    }

    /// Completes several leased tasks in one request (`POST
    /// /v1/leases/complete`). Each outcome stands alone: one entry's lost
    /// lease is its own `error`, not the call's. For held
    /// [`LeaseHandle`]s, [`Client::complete_all`] also stops their heartbeats.
    pub async fn complete_leases(
        &self,
        completions: Vec<LeaseCompletion>,
    ) -> Result<Vec<LeaseOutcome>> {
        let req = CompleteLeases { completions };
        let r: CompletedLeases = self
            .json(Method::POST, "/v1/leases/complete", Some(&req))
            .await?;
        Ok(r.results)
    }

    /// Completes, fails, blocks or releases a task; `body` carries the lease.
    pub async fn finish(&self, id: Uuid, how: &Finish) -> Result<Task> {
        let (path, body) = finish_call(id, how)?;
        self.json(Method::POST, &path, Some(&body)).await
    }

    /// Like [`Client::finish`], answered with the task's id and status only
    /// (`Prefer: return=minimal`).
    pub async fn finish_minimal(&self, id: Uuid, how: &Finish) -> Result<TaskRef> {
        let (path, body) = finish_call(id, how)?;
        let extra = [(PREFER, RETURN_MINIMAL)];
        self.json_with(Method::POST, &path, Some(&body), &extra, CALL_TIMEOUT)
            .await
            .map(|(_, r)| r)
    }

    /// `GET /healthz`: whether the server process answers. It reads
    /// nothing and needs no token: the least a request costs.
    pub async fn health(&self) -> Result<()> {
        self.send(Method::GET, "/healthz", None, &[], CALL_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// `GET /readyz`: whether the server and its database answer.
    pub async fn ready(&self) -> Result<()> {
        self.send(Method::GET, "/readyz", None, &[], CALL_TIMEOUT)
            .await
            .map(|_| ())
    }
}

/// The path and body of a [`Finish`].
fn finish_call(id: Uuid, how: &Finish) -> Result<(String, serde_json::Value)> {
    let (verb, body) = match how {
        Finish::Complete(r) => ("complete", serde_json::to_value(r)),
        Finish::Fail(r) => ("fail", serde_json::to_value(r)),
        Finish::Block(r) => ("block", serde_json::to_value(r)),
        Finish::Release(r) => ("release", serde_json::to_value(r)),
    };
    let body = body.map_err(|e| ClientError::Config(e.to_string()))?;
    Ok((format!("/v1/tasks/{id}/{verb}"), body))
}

/// How a worker ends its lease.
#[derive(Debug, Clone)]
pub enum Finish {
    /// Done, with a result.
    Complete(aruntime_api::CompleteRequest),
    /// Failed, retryable or not.
    Fail(aruntime_api::FailRequest),
    /// Waiting for a person.
    Block(aruntime_api::BlockRequest),
    /// Handed back, with notes for the next attempt.
    Release(aruntime_api::ReleaseRequest),
}

/// A successful answer's JSON body.
fn parse<R: DeserializeOwned>(status: u16, body: &[u8]) -> Result<R> {
    serde_json::from_slice(body).map_err(|e| ClientError::Protocol {
        status,
        message: e.to_string(),
    })
}

/// Percent-encodes one path segment.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
