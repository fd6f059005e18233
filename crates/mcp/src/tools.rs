//! The tools, their argument schemas, and the two ways a lease is held:
//! by this process (sidecar) or by the caller, who passes it back (stateless).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aruntime_api::{
    BlockRequest, ClaimRequest, CompleteRequest, FailRequest, GrantedLease, NewCheckpoint,
    NewDecision, NewTask, ReleaseRequest, TaskQuery,
};
use aruntime_client::{Client, ClientError, Finish, LeaseHandle, LeaseState, Transport};
use aruntime_core::context::{ContextBundle, Format};
use aruntime_core::{Task, TaskStatus, Timestamp};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Extensions, Implementation, ServerCapabilities, ServerConfig,
};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

/// How long `next_task` waits for work by default: long enough that an
/// idle agent does not spin, short enough to stay under client timeouts.
const DEFAULT_WAIT_MS: u64 = 20_000;
/// The default budget for a context bundle in a tool result: roughly 4k
/// tokens, a modest share of a model's window.
const DEFAULT_MAX_BYTES: usize = 16_000;
/// The worker name of HTTP callers that do not give one.
const DEFAULT_HTTP_WORKER: &str = "mcp";

/// A tool's outcome. The error text is `code: message`; the MCP SDK turns
/// it into a tool result with `isError: true`, which the model gets to see.
type ToolResult = Result<CallToolResult, String>;

const SIDECAR_INSTRUCTIONS: &str = "\
aruntime is a durable task board. Call next_task to lease a task and read its \
context (goal, acceptance criteria, earlier attempts, the latest checkpoint to \
resume from). This process holds the lease and renews it while you work; call \
checkpoint after every meaningful step so a successor can resume if you stop, \
then end with complete_task, fail_task, block_task or release_task. Worker \
tools act on the held lease without task_id or lease arguments.";

const STATELESS_INSTRUCTIONS: &str = "\
aruntime is a durable task board. Call next_task to lease a task and read its \
context (goal, acceptance criteria, earlier attempts, the latest checkpoint to \
resume from). The server keeps no session: pass the task_id and lease that \
next_task returned to every worker tool. The lease expires unless renewed: \
checkpoint, get_context with the lease, and heartbeat all renew it. End with \
complete_task, fail_task, block_task or release_task.";

/// The MCP tool handler, in sidecar or stateless mode. Cheap to clone.
#[derive(Clone)]
pub struct McpTools {
    mode: Arc<Mode>,
    tool_router: ToolRouter<McpTools>,
}

impl std::fmt::Debug for McpTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &*self.mode {
            Mode::Sidecar(_) => "sidecar",
            Mode::Stateless { .. } => "stateless",
        };
        f.debug_struct("McpTools")
            .field("mode", &mode)
            .finish_non_exhaustive()
    }
}

enum Mode {
    /// One agent over stdio; this process holds its lease.
    Sidecar(Sidecar),
    /// Any caller over HTTP; the caller holds the lease token and each
    /// call authenticates with its own bearer token.
    Stateless {
        base: String,
        transport: Arc<dyn Transport>,
    },
}

struct Sidecar {
    client: Client,
    worker: String,
    capabilities: Vec<String>,
    /// Serialises `next_task`, so two concurrent calls cannot lease two
    /// tasks. A separate lock from `held`, so worker tools are not stuck
    /// behind a long-poll.
    claiming: tokio::sync::Mutex<()>,
    /// The lease this process holds; its handle heartbeats in the background
    /// until it is dropped.
    held: Mutex<Option<Arc<LeaseHandle>>>,
}

impl Sidecar {
    fn held(&self) -> MutexGuard<'_, Option<Arc<LeaseHandle>>> {
        // Nothing panics while holding the lock; if something ever did, the
        // `Option` inside is still consistent.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets `lease` if it is still the one held (dropping the handle
    /// stops its heartbeat).
    fn clear(&self, lease: &Arc<LeaseHandle>) {
        let mut held = self.held();
        if held.as_ref().is_some_and(|h| Arc::ptr_eq(h, lease)) {
            *held = None;
        }
    }
}

/// The lease a worker tool acts on.
enum Target {
    /// The one this process holds.
    Held(Arc<LeaseHandle>),
    /// One the caller passed in.
    Given { task_id: Uuid, lease: String },
}

impl Target {
    fn task_id(&self) -> Uuid {
        match self {
            Target::Held(h) => h.task_id(),
            Target::Given { task_id, .. } => *task_id,
        }
    }

    fn lease(&self) -> String {
        match self {
            Target::Held(h) => h.token().to_owned(),
            Target::Given { lease, .. } => lease.clone(),
        }
    }
}

// ---- arguments ----

/// Arguments of `next_task`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NextTaskArgs {
    /// How long to wait for a task when none is ready, in milliseconds
    /// (default 20000, at most 60000).
    #[serde(default)]
    wait_ms: Option<u64>,
    /// Labels this worker can handle; a task is offered only if all its labels
    /// are among them. Default: the worker's configured capabilities (none
    /// over HTTP).
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    /// Budget for the returned context in bytes (default 16000); the least
    /// important parts are dropped first.
    #[serde(default)]
    max_bytes: Option<usize>,
    /// The worker name shown on the board (HTTP only; default "mcp").
    #[serde(default)]
    worker: Option<String>,
}

/// Arguments of `get_context`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GetContextArgs {
    /// The task. Default (stdio): the leased task.
    #[serde(default)]
    task_id: Option<Uuid>,
    /// A lease on the task: given, it is renewed too (and an error says if it
    /// was lost).
    #[serde(default)]
    lease: Option<String>,
    /// Budget in bytes (default 16000).
    #[serde(default)]
    max_bytes: Option<usize>,
}

/// Arguments of `checkpoint`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CheckpointArgs {
    /// Where the work stands and what comes next, for whoever resumes.
    summary: String,
    /// Any JSON to resume from (files touched, step reached, ...).
    #[serde(default)]
    state: Option<Value>,
    /// Test results, as any JSON.
    #[serde(default)]
    test_results: Option<Value>,
    /// The task (required over HTTP; over stdio, default the held lease's).
    #[serde(default)]
    task_id: Option<Uuid>,
    /// The lease token from next_task (required over HTTP).
    #[serde(default)]
    lease: Option<String>,
}

/// Arguments of `complete_task`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CompleteArgs {
    /// The outcome, as any JSON: what was done and the evidence for each
    /// acceptance criterion.
    #[serde(default)]
    result: Option<Value>,
    /// The task (required over HTTP).
    #[serde(default)]
    task_id: Option<Uuid>,
    /// The lease token (required over HTTP).
    #[serde(default)]
    lease: Option<String>,
}

/// Arguments of `fail_task`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FailArgs {
    /// What went wrong.
    error: String,
    /// Whether another attempt may succeed (default true); retries follow a
    /// backoff while the task's attempt budget lasts.
    #[serde(default)]
    retryable: Option<bool>,
    /// What was tried, for the next attempt.
    #[serde(default)]
    notes: Option<String>,
    /// Approaches that must not be tried again.
    #[serde(default)]
    do_not_retry: Option<Vec<String>>,
    /// The task (required over HTTP).
    #[serde(default)]
    task_id: Option<Uuid>,
    /// The lease token (required over HTTP).
    #[serde(default)]
    lease: Option<String>,
}

/// Arguments of `block_task`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct BlockArgs {
    /// What a person must decide or provide before work can continue.
    reason: String,
    /// The task (required over HTTP).
    #[serde(default)]
    task_id: Option<Uuid>,
    /// The lease token (required over HTTP).
    #[serde(default)]
    lease: Option<String>,
}

/// Arguments of `release_task`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReleaseArgs {
    /// What was done and what is next, for the next attempt.
    #[serde(default)]
    notes: Option<String>,
    /// Approaches that must not be tried again.
    #[serde(default)]
    do_not_retry: Option<Vec<String>>,
    /// The task (required over HTTP).
    #[serde(default)]
    task_id: Option<Uuid>,
    /// The lease token (required over HTTP).
    #[serde(default)]
    lease: Option<String>,
}

/// Arguments of `heartbeat`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HeartbeatArgs {
    /// The task; if given, checked against the lease.
    #[serde(default)]
    task_id: Option<Uuid>,
    /// The lease token (required over HTTP).
    #[serde(default)]
    lease: Option<String>,
}

/// Arguments of `add_task`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AddTaskArgs {
    /// One line.
    title: String,
    /// The intent, in markdown.
    #[serde(default)]
    goal: Option<String>,
    /// What must be true when done.
    #[serde(default)]
    acceptance: Option<Vec<String>>,
    /// Capabilities a worker needs (no spaces or commas).
    #[serde(default)]
    labels: Option<Vec<String>>,
    /// Higher is leased first; default 0.
    #[serde(default)]
    priority: Option<i32>,
    /// Tasks that must be done first.
    #[serde(default)]
    depends_on: Option<Vec<Uuid>>,
    /// The goal (task) this one belongs to.
    #[serde(default)]
    parent_id: Option<Uuid>,
    /// Failed or abandoned attempts allowed; default 3.
    #[serde(default)]
    max_attempts: Option<u32>,
    /// Seconds a lease lasts without renewal; default 60.
    #[serde(default)]
    lease_ttl_s: Option<u32>,
    /// Start held in the backlog instead of ready.
    #[serde(default)]
    hold: Option<bool>,
    /// A key that makes retries safe: the same key returns the task created
    /// first instead of a second one.
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// Arguments of `list_tasks`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListTasksArgs {
    /// Only tasks in this status.
    #[serde(default)]
    status: Option<TaskStatus>,
    /// Only tasks carrying this label.
    #[serde(default)]
    label: Option<String>,
    /// Only children of this task.
    #[serde(default)]
    parent: Option<Uuid>,
    /// Page size, default 50, at most 500.
    #[serde(default)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<Uuid>,
}

/// Arguments of `record_decision`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RecordDecisionArgs {
    /// The decision, in one line.
    title: String,
    /// Why it was made.
    #[serde(default)]
    rationale: Option<String>,
    /// The task (or goal) it applies to. Default (stdio): the leased task.
    #[serde(default)]
    task_id: Option<Uuid>,
}

// ---- results ----

/// A result with one JSON text block.
fn json_result(v: &Value) -> CallToolResult {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// `code: message` for a failed API call, with what to do about a lost lease.
fn api_error(e: ClientError) -> String {
    match e {
        ClientError::LeaseLost { .. } => format!(
            "{e} (stop working on this task: another worker may hold it now; call next_task for new work)"
        ),
        ClientError::Api { .. } => e.to_string(),
        ClientError::Unreachable { .. } => format!("unavailable: {e}"),
        ClientError::Protocol { .. } => format!("internal: {e}"),
        ClientError::Config(m) => format!("invalid_input: {m}"),
    }
}

/// The parts of a task worth showing an agent.
fn task_brief(t: &Task) -> Value {
    json!({
        "id": t.id,
        "title": t.title,
        "status": t.status,
        "priority": t.priority,
        "labels": t.labels,
        "attempts": t.attempts,
        "parent_id": t.parent_id,
    })
}

/// The bundle as markdown within `max` bytes. When even the parts that are
/// never dropped exceed the budget, the smallest rendering is returned with
/// a note: an agent holding a lease needs its goal more than a size limit.
fn render(bundle: ContextBundle, max: usize) -> (String, Option<String>) {
    match bundle.clone().render_fitted(Format::Markdown, Some(max)) {
        Ok(md) => (md, None),
        Err(e) => {
            let md = bundle
                .render_fitted(Format::Markdown, Some(e.min_bytes))
                .unwrap_or_else(|e| e.to_string());
            (md, Some(e.to_string()))
        }
    }
}

const STATELESS_NEEDS_LEASE: &str = "invalid_input: task_id and lease are required over HTTP \
     (the server keeps no session): pass the values next_task returned";

impl McpTools {
    /// The sidecar: `client` is the agent's API connection.
    pub(crate) fn sidecar(client: Client, worker: String, capabilities: Vec<String>) -> McpTools {
        McpTools::with_mode(Mode::Sidecar(Sidecar {
            client,
            worker,
            capabilities,
            claiming: tokio::sync::Mutex::new(()),
            held: Mutex::new(None),
        }))
    }

    /// Stateless: each call's client is built from its bearer token.
    pub(crate) fn stateless(transport: Arc<dyn Transport>, base: &str) -> McpTools {
        McpTools::with_mode(Mode::Stateless {
            base: base.to_owned(),
            transport,
        })
    }

    fn with_mode(mode: Mode) -> McpTools {
        McpTools {
            mode: Arc::new(mode),
            tool_router: McpTools::tool_router(),
        }
    }

    /// The API client for this call: the sidecar's own, or one carrying the
    /// HTTP caller's bearer token (from the request parts rmcp puts in the
    /// request's extensions).
    fn client(&self, ext: &Extensions) -> Result<Client, String> {
        match &*self.mode {
            Mode::Sidecar(s) => Ok(s.client.clone()),
            Mode::Stateless { base, transport } => {
                let token = ext
                    .get::<http::request::Parts>()
                    .and_then(|p| p.headers.get(http::header::AUTHORIZATION))
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        "unauthorized: send Authorization: Bearer <token> with every MCP request"
                            .to_owned()
                    })?;
                Client::with_transport(base, token, transport.clone())
                    .map_err(|e| format!("unauthorized: {e}"))
            }
        }
    }

    /// The lease a worker tool acts on: the one given, or the held one.
    fn target(&self, task_id: Option<Uuid>, lease: Option<String>) -> Result<Target, String> {
        match (task_id, lease, &*self.mode) {
            (Some(task_id), Some(lease), Mode::Sidecar(s)) => {
                // The held lease passed explicitly is still the held lease:
                // finishing it must stop its heartbeat.
                let held = s.held().clone();
                if let Some(h) = held.filter(|h| h.token() == lease && h.task_id() == task_id) {
                    return Ok(Target::Held(h));
                }
                Ok(Target::Given { task_id, lease })
            }
            (Some(task_id), Some(lease), Mode::Stateless { .. }) => {
                Ok(Target::Given { task_id, lease })
            }
            (None, None, Mode::Sidecar(s)) => s.held().clone().map(Target::Held).ok_or_else(|| {
                "no_lease: this process holds no lease; call next_task first \
                     (or pass task_id and lease)"
                    .to_owned()
            }),
            (None, None, Mode::Stateless { .. }) => Err(STATELESS_NEEDS_LEASE.to_owned()),
            _ => Err(match &*self.mode {
                Mode::Sidecar(_) => {
                    "invalid_input: pass both task_id and lease, or neither to act \
                                     on the lease this process holds"
                        .to_owned()
                }
                Mode::Stateless { .. } => STATELESS_NEEDS_LEASE.to_owned(),
            }),
        }
    }

    /// The task a read-only tool is about: the one given, or the held one's.
    fn task_of(&self, task_id: Option<Uuid>) -> Result<Uuid, String> {
        if let Some(id) = task_id {
            return Ok(id);
        }
        match &*self.mode {
            Mode::Sidecar(s) => s.held().as_ref().map(|h| h.task_id()).ok_or_else(|| {
                "invalid_input: task_id is required when this process holds no lease".to_owned()
            }),
            Mode::Stateless { .. } => Err("invalid_input: task_id is required".to_owned()),
        }
    }

    /// `api_error`, and if the server says the held lease is lost, forgets
    /// it, so the next `next_task` leases anew instead of returning it (the
    /// background heartbeat may not have noticed yet).
    fn lease_error(&self, lease: &str, e: ClientError) -> String {
        if let (ClientError::LeaseLost { .. }, Mode::Sidecar(s)) = (&e, &*self.mode) {
            let mut held = s.held();
            if held.as_ref().is_some_and(|h| h.token() == lease) {
                *held = None;
            }
        }
        api_error(e)
    }

    /// Ends the target's lease; a held lease is forgotten once the server
    /// has accepted, which stops its heartbeat.
    async fn finish(&self, ext: &Extensions, target: Target, how: Finish) -> ToolResult {
        let client = self.client(ext)?;
        let task = client
            .finish(target.task_id(), &how)
            .await
            .map_err(|e| self.lease_error(&target.lease(), e))?;
        if let (Target::Held(h), Mode::Sidecar(s)) = (&target, &*self.mode) {
            s.clear(h);
        }
        Ok(json_result(&json!({ "task": task_brief(&task) })))
    }

    /// The markdown context of `id`, fetched now (so it has the latest
    /// checkpoint) and fitted locally, so an oversized context still comes
    /// back rather than failing.
    async fn fetch_context(&self, client: &Client, id: Uuid, max: usize) -> Result<String, String> {
        let json = client
            .context(id, Format::Json, None)
            .await
            .map_err(api_error)?;
        let bundle: ContextBundle = serde_json::from_str(&json)
            .map_err(|e| format!("internal: the server's context bundle does not parse: {e}"))?;
        let (md, note) = render(bundle, max);
        Ok(match note {
            Some(n) => format!("<!-- {n}; showing the smallest rendering -->\n{md}"),
            None => md,
        })
    }
}

/// `next_task`'s answer: a JSON block about the lease, then the context.
fn lease_result(
    g: &GrantedLease,
    expires_at: Timestamp,
    show_token: bool,
    note: &str,
    context: String,
) -> CallToolResult {
    let mut head = json!({
        "task_id": g.task.id,
        "attempt": g.attempt,
        "title": g.task.title,
        "expires_at": expires_at,
        "note": note,
    });
    if show_token {
        head["lease"] = json!(g.lease);
    }
    let text = serde_json::to_string_pretty(&head).unwrap_or_else(|_| head.to_string());
    CallToolResult::success(vec![ContentBlock::text(text), ContentBlock::text(context)])
}

#[tool_router]
impl McpTools {
    #[tool(
        description = "Lease the next ready task and get its context: goal, acceptance criteria, \
                       results of dependencies, decisions, earlier attempts and the latest \
                       checkpoint to resume from. Waits up to wait_ms for a task. Returns a JSON \
                       block (task_id, attempt, title, expires_at; over HTTP also the lease token) \
                       and the context in markdown. Over stdio this process holds at most one \
                       lease: while it holds one, that task is returned again."
    )]
    async fn next_task(
        &self,
        Parameters(a): Parameters<NextTaskArgs>,
        ext: Extensions,
    ) -> ToolResult {
        let client = self.client(&ext)?;
        let max = a.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        let wait_ms = a.wait_ms.unwrap_or(DEFAULT_WAIT_MS);
        match &*self.mode {
            Mode::Sidecar(s) => {
                let _claiming = s.claiming.lock().await;
                let current = s.held().clone();
                if let Some(h) = current {
                    if let LeaseState::Held { expires_at } = h.state() {
                        let context = self.fetch_context(&client, h.task_id(), max).await?;
                        let note = "This process already holds a lease on this task (one at a \
                                    time): finish it with complete_task, fail_task, block_task \
                                    or release_task before asking for another.";
                        return Ok(lease_result(h.granted(), expires_at, false, note, context));
                    }
                    // Lost (or finished elsewhere): make room for a new one.
                    s.clear(&h);
                }
                let req = ClaimRequest {
                    worker: s.worker.clone(),
                    capabilities: a.capabilities.unwrap_or_else(|| s.capabilities.clone()),
                    max: 1,
                    wait_ms,
                    ttl_s: None,
                };
                let Some(lease) = client.claim(&req).await.map_err(api_error)?.pop() else {
                    return Ok(no_task(wait_ms));
                };
                let lease = Arc::new(lease);
                *s.held() = Some(lease.clone());
                let (context, fit) = render(lease.context().clone(), max);
                let note = fit.map_or_else(String::new, |n| format!("{n}. "))
                    + "This process holds the lease and renews it while it runs. Checkpoint \
                       after each step; end with complete_task, fail_task, block_task or \
                       release_task. Worker tools need no task_id or lease.";
                let g = lease.granted();
                Ok(lease_result(g, g.expires_at, false, &note, context))
            }
            Mode::Stateless { .. } => {
                let req = ClaimRequest {
                    worker: a.worker.unwrap_or_else(|| DEFAULT_HTTP_WORKER.to_owned()),
                    capabilities: a.capabilities.unwrap_or_default(),
                    max: 1,
                    wait_ms,
                    ttl_s: None,
                };
                let resp = client.claim_raw(&req).await.map_err(api_error)?;
                let Some(g) = resp.leases.into_iter().next() else {
                    return Ok(no_task(wait_ms));
                };
                let (context, fit) = render(g.context.clone(), max);
                let note = fit.map_or_else(String::new, |n| format!("{n}. "))
                    + "Pass task_id and lease to every worker tool. The lease expires at \
                       expires_at unless renewed: checkpoint, get_context with the lease, and \
                       heartbeat renew it. End with complete_task, fail_task, block_task or \
                       release_task.";
                Ok(lease_result(&g, g.expires_at, true, &note, context))
            }
        }
    }

    #[tool(
        description = "Read a task's context (the resume packet) in markdown, fitted to max_bytes. \
                       Given a lease, also renews it."
    )]
    async fn get_context(
        &self,
        Parameters(a): Parameters<GetContextArgs>,
        ext: Extensions,
    ) -> ToolResult {
        let client = self.client(&ext)?;
        let id = self.task_of(a.task_id)?;
        if let Some(lease) = &a.lease {
            // Renewing first also tells a worker that lost its lease to stop.
            let hb = client
                .heartbeat(lease)
                .await
                .map_err(|e| self.lease_error(lease, e))?;
            if hb.task_id != id {
                return Err(format!(
                    "invalid_input: that lease is on task {}, not {id}",
                    hb.task_id
                ));
            }
        }
        let md = self
            .fetch_context(&client, id, a.max_bytes.unwrap_or(DEFAULT_MAX_BYTES))
            .await?;
        Ok(CallToolResult::success(vec![ContentBlock::text(md)]))
    }

    #[tool(
        description = "Record progress on the leased task: a summary of where the work stands and \
                       what is next, and optional JSON state to resume from. Renews the lease. \
                       Checkpoint after every meaningful step: if this worker stops, the next one \
                       starts from the latest checkpoint."
    )]
    async fn checkpoint(
        &self,
        Parameters(a): Parameters<CheckpointArgs>,
        ext: Extensions,
    ) -> ToolResult {
        let target = self.target(a.task_id, a.lease)?;
        let client = self.client(&ext)?;
        let cp = NewCheckpoint {
            lease: target.lease(),
            summary: a.summary,
            state: a.state.unwrap_or(Value::Null),
            artifacts: vec![],
            test_results: a.test_results.unwrap_or(Value::Null),
        };
        let saved = client
            .checkpoint(target.task_id(), &cp)
            .await
            .map_err(|e| self.lease_error(&cp.lease, e))?;
        Ok(json_result(&json!({
            "task_id": target.task_id(),
            "seq": saved.seq,
            "attempt": saved.attempt,
            "note": "checkpoint saved; the lease was renewed",
        })))
    }

    #[tool(
        description = "Finish the leased task as done, with its result (any JSON: what was done and \
                       the evidence for each acceptance criterion). Ends the lease."
    )]
    async fn complete_task(
        &self,
        Parameters(a): Parameters<CompleteArgs>,
        ext: Extensions,
    ) -> ToolResult {
        let target = self.target(a.task_id, a.lease)?;
        let how = Finish::Complete(CompleteRequest {
            lease: target.lease(),
            result: a.result.unwrap_or(Value::Null),
        });
        self.finish(&ext, target, how).await
    }

    #[tool(
        description = "Report that the leased task failed. Retryable failures (the default) go \
                       back to the board after a backoff while the attempt budget lasts; the \
                       notes and do_not_retry list reach the next attempt. Ends the lease."
    )]
    async fn fail_task(&self, Parameters(a): Parameters<FailArgs>, ext: Extensions) -> ToolResult {
        let target = self.target(a.task_id, a.lease)?;
        let how = Finish::Fail(FailRequest {
            lease: target.lease(),
            error: a.error,
            retryable: a.retryable.unwrap_or(true),
            notes: a.notes,
            do_not_retry: a.do_not_retry.unwrap_or_default(),
        });
        self.finish(&ext, target, how).await
    }

    #[tool(
        description = "Stop the leased task until a person acts: say what they must decide or \
                       provide. Ends the lease; the task waits in the blocked column."
    )]
    async fn block_task(
        &self,
        Parameters(a): Parameters<BlockArgs>,
        ext: Extensions,
    ) -> ToolResult {
        let target = self.target(a.task_id, a.lease)?;
        let how = Finish::Block(BlockRequest {
            lease: target.lease(),
            reason: a.reason,
        });
        self.finish(&ext, target, how).await
    }

    #[tool(
        description = "Hand the leased task back unfinished (e.g. when your context window is \
                       filling up), with notes for the next attempt. Does not count against the \
                       attempt budget. Checkpoint first. Ends the lease."
    )]
    async fn release_task(
        &self,
        Parameters(a): Parameters<ReleaseArgs>,
        ext: Extensions,
    ) -> ToolResult {
        let target = self.target(a.task_id, a.lease)?;
        let how = Finish::Release(ReleaseRequest {
            lease: target.lease(),
            notes: a.notes,
            do_not_retry: a.do_not_retry.unwrap_or_default(),
        });
        self.finish(&ext, target, how).await
    }

    #[tool(
        description = "Renew a lease now and get its new expiry. Over HTTP, call it during long \
                       pauses between other calls; over stdio this process renews its lease by \
                       itself."
    )]
    async fn heartbeat(
        &self,
        Parameters(a): Parameters<HeartbeatArgs>,
        ext: Extensions,
    ) -> ToolResult {
        let lease = match (a.lease, &*self.mode) {
            (Some(lease), _) => lease,
            (None, Mode::Sidecar(s)) => s
                .held()
                .as_ref()
                .map(|h| h.token().to_owned())
                .ok_or_else(|| {
                    "no_lease: this process holds no lease; call next_task first".to_owned()
                })?,
            (None, Mode::Stateless { .. }) => {
                return Err("invalid_input: lease is required over HTTP".to_owned());
            }
        };
        let client = self.client(&ext)?;
        let hb = client
            .heartbeat(&lease)
            .await
            .map_err(|e| self.lease_error(&lease, e))?;
        if let Some(id) = a.task_id.filter(|id| *id != hb.task_id) {
            return Err(format!(
                "invalid_input: that lease is on task {}, not {id}",
                hb.task_id
            ));
        }
        Ok(json_result(&json!({
            "task_id": hb.task_id,
            "expires_at": hb.expires_at,
        })))
    }

    #[tool(
        description = "Create a task on the board (needs a token allowed to create tasks). Use \
                       parent_id to make it a step of a goal and depends_on to order it after \
                       others."
    )]
    async fn add_task(
        &self,
        Parameters(a): Parameters<AddTaskArgs>,
        ext: Extensions,
    ) -> ToolResult {
        let client = self.client(&ext)?;
        let mut spec = NewTask::titled(a.title);
        spec.goal = a.goal.unwrap_or_default();
        spec.acceptance = a.acceptance.unwrap_or_default();
        spec.labels = a.labels.unwrap_or_default();
        spec.priority = a.priority.unwrap_or(spec.priority);
        spec.depends_on = a.depends_on.unwrap_or_default();
        spec.parent_id = a.parent_id;
        spec.max_attempts = a.max_attempts.unwrap_or(spec.max_attempts);
        spec.lease_ttl_s = a.lease_ttl_s.unwrap_or(spec.lease_ttl_s);
        spec.hold = a.hold.unwrap_or(false);
        let (task, created) = client
            .task_create(&spec, a.idempotency_key.as_deref())
            .await
            .map_err(api_error)?;
        Ok(json_result(
            &json!({ "task": task_brief(&task), "created": created }),
        ))
    }

    #[tool(
        description = "List tasks, oldest first, optionally by status (backlog, ready, running, \
                       blocked, done, failed, cancelled), label or parent. Follow next_cursor for \
                       more."
    )]
    async fn list_tasks(
        &self,
        Parameters(a): Parameters<ListTasksArgs>,
        ext: Extensions,
    ) -> ToolResult {
        let client = self.client(&ext)?;
        let q = TaskQuery {
            status: a.status,
            label: a.label,
            parent: a.parent,
            cursor: a.cursor,
            limit: a.limit,
        };
        let page = client.tasks(&q).await.map_err(api_error)?;
        let tasks: Vec<Value> = page.tasks.iter().map(task_brief).collect();
        Ok(json_result(
            &json!({ "tasks": tasks, "next_cursor": page.next_cursor }),
        ))
    }

    #[tool(
        description = "Record a decision on a task or goal (what was decided and why), so every \
                       later attempt on it and on the tasks under it sees it in its context."
    )]
    async fn record_decision(
        &self,
        Parameters(a): Parameters<RecordDecisionArgs>,
        ext: Extensions,
    ) -> ToolResult {
        let client = self.client(&ext)?;
        let id = self.task_of(a.task_id)?;
        let d = NewDecision {
            title: a.title,
            rationale: a.rationale.unwrap_or_default(),
        };
        let saved = client.decision_add(id, &d).await.map_err(api_error)?;
        Ok(json_result(&json!({
            "id": saved.id,
            "task_id": saved.task_id,
            "title": saved.title,
        })))
    }
}

/// `next_task`'s answer when nothing became ready in time.
fn no_task(wait_ms: u64) -> CallToolResult {
    json_result(&json!({
        "task_id": null,
        "note": format!(
            "No task was ready within {wait_ms} ms. Call next_task again to keep waiting, \
             or list_tasks to see the board."
        ),
    }))
}

// The router built once in `with_mode`; the macro's default rebuilds it per call.
#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpTools {
    fn get_info(&self) -> ServerConfig {
        let instructions = match &*self.mode {
            Mode::Sidecar(_) => SIDECAR_INSTRUCTIONS,
            Mode::Stateless { .. } => STATELESS_INSTRUCTIONS,
        };
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("aruntime", env!("CARGO_PKG_VERSION")))
            .with_instructions(instructions)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A transport for tests that never reach the server.
    struct Unreachable;

    #[async_trait::async_trait]
    impl Transport for Unreachable {
        async fn send(
            &self,
            _: http::Request<bytes::Bytes>,
            _: Duration,
        ) -> Result<http::Response<bytes::Bytes>, String> {
            Err("no server in unit tests".into())
        }
    }

    fn stateless() -> McpTools {
        McpTools::stateless(Arc::new(Unreachable), "http://in-process")
    }

    #[test]
    fn stateless_worker_tools_need_both_task_and_lease() {
        let tools = stateless();
        let id = Uuid::now_v7();
        for (task_id, lease) in [(None, None), (Some(id), None), (None, Some("l".to_owned()))] {
            let err = tools.target(task_id, lease).err().unwrap();
            assert!(err.starts_with("invalid_input: task_id and lease"), "{err}");
        }
        let t = tools.target(Some(id), Some("l".into())).ok().unwrap();
        assert_eq!((t.task_id(), t.lease()), (id, "l".to_owned()));
    }

    #[test]
    fn stateless_calls_use_the_callers_bearer_token() {
        let tools = stateless();
        let err = tools.client(&Extensions::default()).err().unwrap();
        assert!(err.starts_with("unauthorized:"), "{err}");

        let (parts, ()) = http::Request::builder()
            .header("authorization", "Bearer art_abc")
            .body(())
            .unwrap()
            .into_parts();
        let mut ext = Extensions::default();
        ext.insert(parts);
        assert_eq!(tools.client(&ext).unwrap().token(), "art_abc");
    }
}
