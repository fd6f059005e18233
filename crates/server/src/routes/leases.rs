//! The worker's side: claiming leases (with long-poll), heartbeats, and the
//! writes fenced by the lease token.

use std::time::Duration;

use aruntime_api::{
    BlockRequest, ClaimRequest, ClaimResponse, CompleteLeases, CompleteRequest, CompletedLeases,
    FailRequest, GrantedLease, HeartbeatResponse, LeaseOutcome, NewCheckpoint, ReleaseRequest,
};
use aruntime_core::{Checkpoint, Permission};
use aruntime_store::{ClaimParams, Finish, claim_waiting};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::auth::Auth;
use crate::error::{ApiError, ApiJson, ApiResult, task_id};
use crate::prefer::Prefer;
use crate::state::AppState;

/// `POST /v1/leases`: long-polls up to `wait_ms` (see [`claim_waiting`]),
/// returning at once when the server shuts down.
pub(super) async fn claim(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> ApiResult<ApiJson<ClaimResponse>> {
    auth.require(Permission::Work)?;
    req.validate()?;
    let tenant = auth.tenant().to_owned();
    let params = ClaimParams {
        worker: req.worker,
        capabilities: req.capabilities,
        max: req.max,
        ttl_s: req.ttl_s,
    };
    let mut shutdown = s.shutdown.clone();
    let out = claim_waiting(
        s.store.as_ref(),
        &s.clock,
        &tenant,
        &params,
        Duration::from_millis(req.wait_ms),
        &mut shutdown,
        || s.metrics.polling(&tenant),
    )
    .await?;
    s.metrics.leases_expired(&tenant, u64::from(out.expired));
    s.metrics.leases_granted(&tenant, out.granted.len() as u64);
    let tasks = out.granted.iter().map(|c| c.task.clone()).collect();
    let contexts = s.store.contexts(&tenant, tasks).await?;
    let mut leases = Vec::with_capacity(out.granted.len());
    for (c, context) in out.granted.into_iter().zip(contexts) {
        leases.push(GrantedLease {
            task: c.task,
            attempt: c.attempt,
            lease: c.lease,
            expires_at: c.expires_at,
            context,
        });
    }
    Ok(ApiJson(ClaimResponse { leases }))
}

pub(super) async fn heartbeat(
    State(s): State<AppState>,
    auth: Auth,
    Path(lease): Path<String>,
) -> ApiResult<ApiJson<HeartbeatResponse>> {
    auth.require(Permission::Work)?;
    let (task_id, expires_at) = s
        .store
        .lease_heartbeat(auth.tenant(), &lease, s.clock.now())
        .await?;
    Ok(ApiJson(HeartbeatResponse {
        task_id,
        expires_at,
    }))
}

pub(super) async fn checkpoint(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(cp): ApiJson<NewCheckpoint>,
) -> ApiResult<(StatusCode, ApiJson<Checkpoint>)> {
    auth.require(Permission::Work)?;
    let id = task_id(&id)?;
    cp.validate()?;
    let c = s
        .store
        .checkpoint_put(auth.tenant(), id, cp, s.clock.now())
        .await?;
    Ok((StatusCode::CREATED, ApiJson(c)))
}

/// Ends the lease `how`; answers with the task, or with `Prefer:
/// return=minimal` its id and status.
async fn finish(
    s: &AppState,
    auth: &Auth,
    id: &str,
    lease: &str,
    how: Finish,
    prefer: Prefer,
) -> ApiResult<Response> {
    auth.require(Permission::Work)?;
    let id = task_id(id)?;
    let task = s
        .store
        .task_finish(auth.tenant(), id, lease, how, s.clock.now())
        .await?;
    Ok(prefer.answer(StatusCode::OK, task))
}

pub(super) async fn complete(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    prefer: Prefer,
    ApiJson(r): ApiJson<CompleteRequest>,
) -> ApiResult<Response> {
    r.validate()?;
    finish(
        &s,
        &auth,
        &id,
        &r.lease,
        Finish::Complete { result: r.result },
        prefer,
    )
    .await
}

/// `POST /v1/leases/complete`: see
/// [`task_complete_many`](aruntime_store::Store::task_complete_many).
pub(super) async fn complete_many(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(r): ApiJson<CompleteLeases>,
) -> ApiResult<ApiJson<CompletedLeases>> {
    auth.require(Permission::Work)?;
    r.validate()?;
    let tasks: Vec<_> = r.completions.iter().map(|c| c.task).collect();
    let entries = r
        .completions
        .into_iter()
        .map(|c| (c.task, c.lease, c.result))
        .collect();
    let answers = s
        .store
        .task_complete_many(auth.tenant(), entries, s.clock.now())
        .await;
    let results = tasks
        .into_iter()
        .zip(answers)
        .map(|(task, answer)| match answer {
            Ok(status) => LeaseOutcome {
                task,
                status: Some(status),
                error: None,
            },
            Err(e) => LeaseOutcome {
                task,
                status: None,
                error: Some(ApiError::from(e).detail()),
            },
        })
        .collect();
    Ok(ApiJson(CompletedLeases { results }))
}

pub(super) async fn fail(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    prefer: Prefer,
    ApiJson(r): ApiJson<FailRequest>,
) -> ApiResult<Response> {
    r.validate()?;
    let how = Finish::Fail {
        error: r.error,
        retryable: r.retryable,
        notes: r.notes,
        do_not_retry: r.do_not_retry,
    };
    finish(&s, &auth, &id, &r.lease, how, prefer).await
}

pub(super) async fn block(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    prefer: Prefer,
    ApiJson(r): ApiJson<BlockRequest>,
) -> ApiResult<Response> {
    r.validate()?;
    let how = Finish::Block { reason: r.reason };
    finish(&s, &auth, &id, &r.lease, how, prefer).await
}

pub(super) async fn release(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    prefer: Prefer,
    ApiJson(r): ApiJson<ReleaseRequest>,
) -> ApiResult<Response> {
    r.validate()?;
    let how = Finish::Release {
        notes: r.notes,
        do_not_retry: r.do_not_retry,
    };
    finish(&s, &auth, &id, &r.lease, how, prefer).await
}
