//! Tasks as people and planners see them: create, read, list, edit, steer,
//! the board, decisions, history and the context bundle.

use aruntime_api::{
    AttemptList, Board, BoardQuery, CheckpointList, ContextQuery, DecisionList, ErrorCode,
    NewDecision, NewTask, PlanImport, PlanImported, TaskPage, TaskPatch, TaskQuery,
};
use aruntime_core::context::Format;
use aruntime_core::{Checkpoint, Decision, Permission, Task};
use aruntime_store::{Idempotency, Steer};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::Auth;
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult, task_id};
use crate::prefer::Prefer;
use crate::state::AppState;

/// The `Idempotency-Key` header, if sent. Taken alone rather than through
/// a `HeaderMap` extractor, which clones every header of every create.
pub(super) struct IdempotencyKey(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IdempotencyKey(
            parts.headers.get("idempotency-key").cloned(),
        ))
    }
}

fn idempotency(key: &IdempotencyKey, spec: &NewTask) -> ApiResult<Option<Idempotency>> {
    let Some(v) = &key.0 else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidInput,
                "Idempotency-Key must be 1-255 visible ASCII characters",
            )
        })?;
    let canonical = serde_json::to_vec(spec).unwrap_or_default();
    Ok(Some(Idempotency {
        key: key.to_owned(),
        request_hash: hex::encode(Sha256::digest(&canonical)),
    }))
}

/// `POST /v1/tasks`: 201 when created, 200 when an idempotent retry.
/// `POST /v1/tasks`: 201 with the task's `Location` when it was created,
/// 200 when an `Idempotency-Key` found it already there. With `Prefer:
/// return=minimal` the body is its id and status only.
pub(super) async fn create(
    State(s): State<AppState>,
    auth: Auth,
    key: IdempotencyKey,
    prefer: Prefer,
    ApiJson(spec): ApiJson<NewTask>,
) -> ApiResult<Response> {
    auth.require(Permission::WriteTasks)?;
    spec.validate()?;
    let idem = idempotency(&key, &spec)?;
    let c = s
        .store
        .task_create(auth.tenant(), spec, idem, s.clock.now())
        .await?;
    if !c.created {
        return Ok(prefer.answer(StatusCode::OK, c.value));
    }
    let location = HeaderValue::try_from(format!("/v1/tasks/{}", c.value.id));
    let mut r = prefer.answer(StatusCode::CREATED, c.value);
    if let Ok(v) = location {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// `POST /v1/plans`: 201 when anything was created, 200 when the plan was
/// already there in full.
pub(super) async fn import_plan(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(plan): ApiJson<PlanImport>,
) -> ApiResult<(StatusCode, ApiJson<PlanImported>)> {
    auth.require(Permission::WriteTasks)?;
    plan.validate()?;
    let out = s
        .store
        .plan_import(auth.tenant(), plan, s.clock.now())
        .await?;
    let status = if out.created() > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, ApiJson(out)))
}

pub(super) async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<Task>> {
    Ok(ApiJson(
        s.store.task_get(auth.tenant(), task_id(&id)?).await?,
    ))
}

pub(super) async fn list(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<TaskQuery>,
) -> ApiResult<ApiJson<TaskPage>> {
    Ok(ApiJson(s.store.task_list(auth.tenant(), &q).await?))
}

pub(super) async fn patch(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(p): ApiJson<TaskPatch>,
) -> ApiResult<ApiJson<Task>> {
    auth.require(Permission::WriteTasks)?;
    let id = task_id(&id)?;
    p.validate()?;
    Ok(ApiJson(
        s.store
            .task_patch(auth.tenant(), id, p, s.clock.now())
            .await?,
    ))
}

/// `POST /v1/tasks/{id}/{hold|unhold|unblock|cancel|reopen}`. Takes no body.
pub(super) async fn steer(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    cmd: Steer,
) -> ApiResult<ApiJson<Task>> {
    auth.require(Permission::Steer)?;
    let id = task_id(&id)?;
    Ok(ApiJson(
        s.store
            .task_steer(auth.tenant(), id, cmd, s.clock.now())
            .await?,
    ))
}

pub(super) async fn board(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<BoardQuery>,
) -> ApiResult<ApiJson<Board>> {
    Ok(ApiJson(s.store.board(auth.tenant(), &q).await?))
}

pub(super) async fn checkpoints(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<CheckpointList>> {
    let checkpoints = s
        .store
        .checkpoint_list(auth.tenant(), task_id(&id)?)
        .await?;
    Ok(ApiJson(CheckpointList { checkpoints }))
}

pub(super) async fn checkpoint(
    State(s): State<AppState>,
    auth: Auth,
    Path((id, seq)): Path<(String, String)>,
) -> ApiResult<ApiJson<Checkpoint>> {
    let id = task_id(&id)?;
    let seq: i64 = seq
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::NotFound, format!("no checkpoint {seq}")))?;
    Ok(ApiJson(
        s.store.checkpoint_get(auth.tenant(), id, seq).await?,
    ))
}

pub(super) async fn attempts(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<AttemptList>> {
    let attempts = s.store.attempt_list(auth.tenant(), task_id(&id)?).await?;
    Ok(ApiJson(AttemptList { attempts }))
}

/// `POST /v1/tasks/{id}/decisions`: workers may record decisions too.
pub(super) async fn decide(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(d): ApiJson<NewDecision>,
) -> ApiResult<(StatusCode, ApiJson<Decision>)> {
    if auth.require(Permission::WriteTasks).is_err() {
        auth.require(Permission::Work)?;
    }
    let id = task_id(&id)?;
    d.validate()?;
    let d = s
        .store
        .decision_add(auth.tenant(), id, d, s.clock.now())
        .await?;
    Ok((StatusCode::CREATED, ApiJson(d)))
}

pub(super) async fn decisions(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<DecisionList>> {
    let decisions = s.store.decision_list(auth.tenant(), task_id(&id)?).await?;
    Ok(ApiJson(DecisionList { decisions }))
}

/// `GET /v1/tasks/{id}/context?format=json|markdown&max_bytes=N`.
pub(super) async fn context(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ContextQuery>,
) -> ApiResult<Response> {
    let bundle = s.store.context(auth.tenant(), task_id(&id)?).await?;
    let body = bundle.render_fitted(q.format, q.max_bytes).map_err(|e| {
        ApiError::new(ErrorCode::ContextTooLarge, e.to_string())
            .with(json!({"max_bytes": e.max_bytes, "min_bytes": e.min_bytes}))
    })?;
    let content_type = match q.format {
        Format::Json => "application/json",
        Format::Markdown => "text/markdown; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
