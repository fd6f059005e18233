//! Request bodies and query strings, with their validation.

use aruntime_core::{Artifact, Role, TaskStatus, context::Format};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::ErrorCode;
use crate::limits::*;

/// A field that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// `invalid_input` or `payload_too_large`.
    pub code: ErrorCode,
    /// The field at fault, e.g. `labels[2]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

pub(crate) type Checked = Result<(), Invalid>;

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        code: ErrorCode::InvalidInput,
        field: field.into(),
        message: message.into(),
    }
}

pub(crate) fn too_large(field: &str, max: usize) -> Invalid {
    Invalid {
        code: ErrorCode::PayloadTooLarge,
        field: field.into(),
        message: format!("{field} is larger than {max} bytes"),
    }
}

pub(crate) fn name(field: &str, v: &str) -> Checked {
    if v.trim().is_empty() {
        return Err(invalid(field, format!("{field} must not be empty")));
    }
    if v.len() > MAX_NAME {
        return Err(too_large(field, MAX_NAME));
    }
    Ok(())
}

pub(crate) fn text(field: &str, v: &str) -> Checked {
    if v.len() > MAX_TEXT {
        return Err(too_large(field, MAX_TEXT));
    }
    Ok(())
}

fn opt_text(field: &str, v: &Option<String>) -> Checked {
    v.as_deref().map_or(Ok(()), |v| text(field, v))
}

pub(crate) fn items<T>(field: &str, v: &[T], each: impl Fn(&str, &T) -> Checked) -> Checked {
    if v.len() > MAX_ITEMS {
        return Err(invalid(
            field,
            format!("{field} has more than {MAX_ITEMS} entries"),
        ));
    }
    v.iter()
        .enumerate()
        .try_for_each(|(i, x)| each(&format!("{field}[{i}]"), x))
}

fn json(field: &str, v: &Value) -> Checked {
    // Serializing to count is exact and cheap next to the request parse.
    let n = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    if n > MAX_STATE {
        return Err(too_large(field, MAX_STATE));
    }
    Ok(())
}

pub(crate) fn label(field: &str, v: &str) -> Checked {
    name(field, v)?;
    if v.chars().any(|c| c.is_whitespace() || c == ',') {
        return Err(invalid(field, "labels contain no spaces or commas"));
    }
    Ok(())
}

pub(crate) fn ttl(field: &str, v: u32) -> Checked {
    if !(MIN_TTL_S..=MAX_TTL_S).contains(&v) {
        return Err(invalid(
            field,
            format!("{field} must be {MIN_TTL_S}..={MAX_TTL_S} seconds"),
        ));
    }
    Ok(())
}

/// `POST /v1/tenants`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Lowercase letters, digits, `-` and `_`; at most 64.
    pub name: String,
}

impl CreateTenant {
    /// Checks the name.
    pub fn validate(&self) -> Checked {
        let ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            return Err(invalid(
                "name",
                "tenant names are 1-64 of a-z, 0-9, - and _",
            ));
        }
        Ok(())
    }
}

/// `POST /v1/tenants/{tenant}/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token may do.
    pub role: Role,
    /// A note saying who holds it.
    #[serde(default)]
    pub name: Option<String>,
}

impl CreateToken {
    /// Checks the note's length.
    pub fn validate(&self) -> Checked {
        self.name.as_deref().map_or(Ok(()), |n| name("name", n))
    }
}

pub(crate) fn default_attempts() -> u32 {
    3
}
pub(crate) fn default_ttl() -> u32 {
    60
}

/// `POST /v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// One line.
    pub title: String,
    /// The intent, in markdown.
    #[serde(default)]
    pub goal: String,
    /// What must be true when done.
    #[serde(default)]
    pub acceptance: Vec<String>,
    /// Capabilities a worker needs.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Higher first; default 0.
    #[serde(default)]
    pub priority: i32,
    /// Tasks that must be done first (same tenant).
    #[serde(default)]
    pub depends_on: Vec<Uuid>,
    /// The goal this task belongs to.
    #[serde(default)]
    pub parent_id: Option<Uuid>,
    /// Failed or abandoned attempts allowed; default 3.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Default lease TTL in seconds; default 60.
    #[serde(default = "default_ttl")]
    pub lease_ttl_s: u32,
    /// Start held in the backlog.
    #[serde(default)]
    pub hold: bool,
}

impl NewTask {
    /// A task with just a title; the rest defaults.
    pub fn titled(title: impl Into<String>) -> Self {
        NewTask {
            title: title.into(),
            goal: String::new(),
            acceptance: vec![],
            labels: vec![],
            priority: 0,
            depends_on: vec![],
            parent_id: None,
            max_attempts: default_attempts(),
            lease_ttl_s: default_ttl(),
            hold: false,
        }
    }

    /// Checks every field against its rule and limit.
    pub fn validate(&self) -> Checked {
        name("title", &self.title)?;
        text("goal", &self.goal)?;
        items("acceptance", &self.acceptance, |f, v| text(f, v))?;
        items("labels", &self.labels, |f, v| label(f, v))?;
        items("depends_on", &self.depends_on, |_, _| Ok(()))?;
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(invalid(
                "max_attempts",
                format!("max_attempts must be 1..={MAX_ATTEMPTS}"),
            ));
        }
        ttl("lease_ttl_s", self.lease_ttl_s)
    }
}

/// `PATCH /v1/tasks/{id}`: only the fields present change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    /// New title.
    #[serde(default)]
    pub title: Option<String>,
    /// New goal.
    #[serde(default)]
    pub goal: Option<String>,
    /// New acceptance criteria.
    #[serde(default)]
    pub acceptance: Option<Vec<String>>,
    /// New labels.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// New priority.
    #[serde(default)]
    pub priority: Option<i32>,
    /// New dependency set (backlog or ready tasks only; cycles refused).
    #[serde(default)]
    pub depends_on: Option<Vec<Uuid>>,
}

impl TaskPatch {
    /// Checks the fields present.
    pub fn validate(&self) -> Checked {
        if let Some(t) = &self.title {
            name("title", t)?;
        }
        opt_text("goal", &self.goal)?;
        if let Some(a) = &self.acceptance {
            items("acceptance", a, |f, v| text(f, v))?;
        }
        if let Some(l) = &self.labels {
            items("labels", l, |f, v| label(f, v))?;
        }
        if let Some(d) = &self.depends_on {
            items("depends_on", d, |_, _| Ok(()))?;
        }
        Ok(())
    }
}

/// `GET /v1/tasks` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    /// Only this status.
    #[serde(default)]
    pub status: Option<TaskStatus>,
    /// Only tasks carrying this label.
    #[serde(default)]
    pub label: Option<String>,
    /// Only children of this task.
    #[serde(default)]
    pub parent: Option<Uuid>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<Uuid>,
    /// Page size, default 50, at most 500.
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `POST /v1/leases`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The worker's name, shown on the board and in attempts.
    pub worker: String,
    /// Labels it can handle; a task is offered only if all its labels are here.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Most tasks to lease at once; default 1.
    #[serde(default = "one")]
    pub max: u32,
    /// Long-poll this long when nothing is ready; default 0.
    #[serde(default)]
    pub wait_ms: u64,
    /// Lease TTL in seconds; default: each task's own `lease_ttl_s`.
    #[serde(default)]
    pub ttl_s: Option<u32>,
}

fn one() -> u32 {
    1
}

impl ClaimRequest {
    /// Checks limits.
    pub fn validate(&self) -> Checked {
        name("worker", &self.worker)?;
        items("capabilities", &self.capabilities, |f, v| label(f, v))?;
        if !(1..=MAX_CLAIM).contains(&self.max) {
            return Err(invalid("max", format!("max must be 1..={MAX_CLAIM}")));
        }
        if self.wait_ms > MAX_WAIT_MS {
            return Err(invalid(
                "wait_ms",
                format!("wait_ms must be at most {MAX_WAIT_MS}"),
            ));
        }
        self.ttl_s.map_or(Ok(()), |t| ttl("ttl_s", t))
    }
}

/// `POST /v1/tasks/{id}/checkpoints`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCheckpoint {
    /// The lease token.
    pub lease: String,
    /// Where the work stands.
    pub summary: String,
    /// State to resume from.
    #[serde(default)]
    pub state: Value,
    /// Uploaded blobs to attach.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// Test results.
    #[serde(default)]
    pub test_results: Value,
}

impl NewCheckpoint {
    /// Checks limits.
    pub fn validate(&self) -> Checked {
        text("summary", &self.summary)?;
        json("state", &self.state)?;
        json("test_results", &self.test_results)?;
        items("artifacts", &self.artifacts, |f, a| {
            name(&format!("{f}.name"), &a.name)?;
            let hex = a.sha256.len() == 64 && a.sha256.chars().all(|c| c.is_ascii_hexdigit());
            if !hex {
                return Err(invalid(
                    format!("{f}.sha256"),
                    "sha256 must be 64 hex digits",
                ));
            }
            Ok(())
        })
    }
}

/// `POST /v1/tasks/{id}/complete`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The lease token.
    pub lease: String,
    /// The outcome and its acceptance evidence.
    #[serde(default)]
    pub result: Value,
}

impl CompleteRequest {
    /// Checks limits.
    pub fn validate(&self) -> Checked {
        json("result", &self.result)
    }
}

/// `POST /v1/leases/complete`: completes several leased tasks in one
/// request, as a worker does with what one claim gave it.
///
/// Each entry stands alone, exactly as if sent to
/// `POST /v1/tasks/{id}/complete`: a lost lease fails its own entry and
/// no other. The request is one round trip instead of one per task, and
/// the writer usually commits its entries in one transaction.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteLeases {
    /// 1 to 100 completions (as many as one claim may grant).
    pub completions: Vec<LeaseCompletion>,
}

/// One entry of [`CompleteLeases`].
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseCompletion {
    /// The task leased.
    pub task: Uuid,
    /// The lease token.
    pub lease: String,
    /// The outcome and its acceptance evidence.
    #[serde(default)]
    pub result: Value,
}

impl CompleteLeases {
    /// Checks limits.
    pub fn validate(&self) -> Checked {
        let n = self.completions.len();
        if !(1..=MAX_CLAIM as usize).contains(&n) {
            return Err(invalid(
                "completions",
                format!("completions must hold 1..={MAX_CLAIM} entries"),
            ));
        }
        self.completions
            .iter()
            .enumerate()
            .try_for_each(|(i, c)| json(&format!("completions[{i}].result"), &c.result))
    }
}

/// `POST /v1/tasks/{id}/fail`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// The lease token.
    pub lease: String,
    /// What went wrong.
    pub error: String,
    /// Retry after backoff if attempts remain; default true.
    #[serde(default = "yes")]
    pub retryable: bool,
    /// What was tried, for the next attempt.
    #[serde(default)]
    pub notes: Option<String>,
    /// Approaches that must not be tried again.
    #[serde(default)]
    pub do_not_retry: Vec<String>,
}

fn yes() -> bool {
    true
}

impl FailRequest {
    /// Checks limits.
    pub fn validate(&self) -> Checked {
        text("error", &self.error)?;
        opt_text("notes", &self.notes)?;
        items("do_not_retry", &self.do_not_retry, |f, v| text(f, v))
    }
}

/// `POST /v1/tasks/{id}/block`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// The lease token.
    pub lease: String,
    /// What it waits for.
    pub reason: String,
}

impl BlockRequest {
    /// Checks limits.
    pub fn validate(&self) -> Checked {
        text("reason", &self.reason)
    }
}

/// `POST /v1/tasks/{id}/release`: hand the task back with notes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The lease token.
    pub lease: String,
    /// What was done and what is next.
    #[serde(default)]
    pub notes: Option<String>,
    /// Approaches that must not be tried again.
    #[serde(default)]
    pub do_not_retry: Vec<String>,
}

impl ReleaseRequest {
    /// Checks limits.
    pub fn validate(&self) -> Checked {
        opt_text("notes", &self.notes)?;
        items("do_not_retry", &self.do_not_retry, |f, v| text(f, v))
    }
}

/// `POST /v1/tasks/{id}/decisions`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDecision {
    /// The decision.
    pub title: String,
    /// Why.
    #[serde(default)]
    pub rationale: String,
}

impl NewDecision {
    /// Checks limits.
    pub fn validate(&self) -> Checked {
        name("title", &self.title)?;
        text("rationale", &self.rationale)
    }
}

/// `GET /v1/tasks/{id}/context` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextQuery {
    /// `json` (default) or `markdown`.
    #[serde(default)]
    pub format: Format,
    /// Fit the rendering into this many bytes.
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

/// `GET /v1/events` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Events with `seq` greater than this; default 0.
    #[serde(default)]
    pub after: i64,
    /// Only events of this task.
    #[serde(default)]
    pub task: Option<Uuid>,
    /// Page size, default 100, at most 500.
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `GET /v1/board` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoardQuery {
    /// Show the cancelled column too.
    #[serde(default)]
    pub include_cancelled: bool,
    /// Cards per column, default 50, at most 500.
    #[serde(default)]
    pub cards: Option<u32>,
}

/// Clamps an optional page size.
pub fn page_size(limit: Option<u32>, default: u32) -> u32 {
    limit.unwrap_or(default).clamp(1, MAX_PAGE)
}
