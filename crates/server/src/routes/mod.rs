//! The HTTP routes, one module per resource, assembled into one router.

mod blobs;
mod events;
mod leases;
mod mcp;
mod system;
mod tasks;
mod tenants;

use std::time::Instant;

use aruntime_api::ErrorCode;
use aruntime_api::limits::{MAX_BLOB, MAX_JSON_BODY};

/// Blob uploads the server reads at once, per node; the rest wait, unread.
const MAX_UPLOADS: usize = 16;
use aruntime_store::Steer;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

/// The whole API, and the MCP endpoint at `/mcp`. Call it inside a Tokio
/// runtime: it spawns the task that ends MCP streams on shutdown.
pub fn router(state: AppState) -> Router {
    let api = api(state.clone());
    // The MCP tools call the API router built without `/mcp`, so a tool
    // can never reach the MCP endpoint again.
    let mcp = mcp::router(api.clone(), state);
    api.merge(mcp)
}

/// Everything but `/mcp`.
fn api(state: AppState) -> Router {
    let steer = |cmd: Steer| {
        post(move |s: State<AppState>, a: Auth, p: Path<String>| tasks::steer(s, a, p, cmd))
    };
    let api = Router::new()
        .route("/v1/tenants", post(tenants::create))
        .route("/v1/tenants/{tenant}/tokens", post(tenants::token))
        .route("/v1/tasks", post(tasks::create).get(tasks::list))
        .route("/v1/plans", post(tasks::import_plan))
        .route("/v1/tasks/{id}", get(tasks::get).patch(tasks::patch))
        .route("/v1/tasks/{id}/hold", steer(Steer::Hold))
        .route("/v1/tasks/{id}/unhold", steer(Steer::Unhold))
        .route("/v1/tasks/{id}/unblock", steer(Steer::Unblock))
        .route("/v1/tasks/{id}/cancel", steer(Steer::Cancel))
        .route("/v1/tasks/{id}/reopen", steer(Steer::Reopen))
        .route(
            "/v1/tasks/{id}/checkpoints",
            post(leases::checkpoint).get(tasks::checkpoints),
        )
        .route("/v1/tasks/{id}/checkpoints/{seq}", get(tasks::checkpoint))
        .route("/v1/tasks/{id}/complete", post(leases::complete))
        .route("/v1/tasks/{id}/fail", post(leases::fail))
        .route("/v1/tasks/{id}/block", post(leases::block))
        .route("/v1/tasks/{id}/release", post(leases::release))
        .route("/v1/tasks/{id}/attempts", get(tasks::attempts))
        .route(
            "/v1/tasks/{id}/decisions",
            post(tasks::decide).get(tasks::decisions),
        )
        .route("/v1/tasks/{id}/context", get(tasks::context))
        .route("/v1/board", get(tasks::board))
        .route("/v1/leases", post(leases::claim))
        .route("/v1/leases/complete", post(leases::complete_many))
        .route("/v1/leases/{lease}/heartbeat", post(leases::heartbeat))
        .route("/v1/events", get(events::list))
        .route("/v1/blobs/{sha256}", get(blobs::get))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY));
    // Uploads wait their turn before their bodies are read: each holds its
    // whole body in memory until it is on disk, and 512 checkpoints
    // uploading 64 KB artifacts at once left the server ~15 MiB larger for
    // good (performance.md, finding 30). A waiting upload costs a socket.
    let blob_upload = Router::new()
        .route("/v1/blobs", put(blobs::put))
        .layer(DefaultBodyLimit::max(MAX_BLOB))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(MAX_UPLOADS));
    Router::new()
        .merge(api)
        .merge(blob_upload)
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .fallback(|| async { ApiError::new(ErrorCode::RouteNotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Records latency per route template and logs server errors.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    // Both cheap to clone (a standard method is inline, a matched path an
    // `Arc<str>`): nothing is allocated per request for the metrics.
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    state
        .metrics
        .request(method.as_str(), route, status, start.elapsed());
    if status >= 500 {
        tracing::warn!(%method, %route, status, "request failed");
    }
    resp
}
