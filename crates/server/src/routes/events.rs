//! The tenant's event log.

use aruntime_api::{EventPage, EventQuery};
use axum::extract::State;

use crate::auth::Auth;
use crate::error::{ApiJson, ApiQuery, ApiResult};
use crate::state::AppState;

/// `GET /v1/events?after=SEQ&task=ID&limit=N`.
pub(super) async fn list(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<ApiJson<EventPage>> {
    Ok(ApiJson(s.store.event_list(auth.tenant(), &q).await?))
}
