//! Health, readiness, metrics and the OpenAPI document.

use aruntime_api::ErrorCode;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::auth::Auth;
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;

/// Liveness: the process answers.
pub(super) async fn healthz() -> ApiJson<Value> {
    ApiJson(json!({"status": "ok"}))
}

/// Readiness: the database answers.
pub(super) async fn readyz(State(s): State<AppState>) -> ApiResult<ApiJson<Value>> {
    s.store
        .ping()
        .await
        .map_err(|_| ApiError::new(ErrorCode::Unavailable, "the database does not answer"))?;
    Ok(ApiJson(json!({"status": "ready"})))
}

/// Prometheus text for the caller's tenant (any role; send the token as a
/// bearer credential from the scraper).
pub(super) async fn metrics(State(s): State<AppState>, auth: Auth) -> ApiResult<impl IntoResponse> {
    let counts = s.store.task_counts(auth.tenant()).await?;
    let body = s.metrics.render(auth.tenant(), &counts);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

/// The OpenAPI 3.1 document, generated from the wire types.
pub(super) async fn openapi() -> ApiJson<Value> {
    ApiJson(crate::openapi::document())
}
