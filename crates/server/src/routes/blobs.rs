//! Content-addressed blobs: upload raw bytes, fetch by sha256.

use aruntime_api::BlobRef;
use aruntime_core::Permission;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::auth::Auth;
use crate::error::{ApiBytes, ApiJson, ApiResult};
use crate::state::AppState;

/// `PUT /v1/blobs` with the raw bytes as body; answers their address.
pub(super) async fn put(
    State(s): State<AppState>,
    auth: Auth,
    ApiBytes(body): ApiBytes,
) -> ApiResult<(StatusCode, ApiJson<BlobRef>)> {
    auth.require(Permission::Work)?;
    let r = s
        .store
        .blob_put(auth.tenant(), &body, s.clock.now())
        .await?;
    Ok((StatusCode::CREATED, ApiJson(r)))
}

pub(super) async fn get(
    State(s): State<AppState>,
    auth: Auth,
    Path(sha): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let bytes = s.store.blob_get(auth.tenant(), &sha).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes))
}
