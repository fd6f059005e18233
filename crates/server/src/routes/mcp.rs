//! `/mcp`: the MCP tools over streamable HTTP (stateless), calling the API
//! in-process with the caller's bearer token.

use std::sync::Arc;

use aruntime_mcp::{CancellationToken, HttpOptions};
use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::auth::Auth;
use crate::in_process::InProcess;
use crate::state::AppState;

/// The base URL of in-process requests; the router matches paths only.
const IN_PROCESS_BASE: &str = "http://in-process";

/// `/mcp` over `api`, which must not itself contain `/mcp`.
pub(super) fn router(api: Router, state: AppState) -> Router {
    let service = aruntime_mcp::http_service(
        Arc::new(InProcess::new(api)),
        IN_PROCESS_BASE,
        options(&state),
        cancel_on_shutdown(&state),
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn_with_state(state, authenticate))
}

/// Loopback names always, plus the configured ones.
fn options(state: &AppState) -> HttpOptions {
    let mut o = HttpOptions::default();
    o.allowed_hosts
        .extend(state.mcp_allowed_hosts.iter().cloned());
    o
}

/// Refuses a request without a known bearer token with the API's own 401
/// before any MCP processing, so a client learns at connect time that its
/// token is wrong rather than on its first tool call.
async fn authenticate(_: Auth, req: Request, next: Next) -> Response {
    next.run(req).await
}

/// rmcp ends its streams on a `CancellationToken`; the server announces
/// shutdown on a watch channel, so one is turned into the other.
fn cancel_on_shutdown(state: &AppState) -> CancellationToken {
    let token = CancellationToken::new();
    let mut stop = state.shutdown.clone();
    let cancel = token.clone();
    tokio::spawn(async move {
        // An error means the sender is gone without a shutdown: then
        // nothing will ever stop the server through this channel.
        if stop.wait_for(|stopping| *stopping).await.is_ok() {
            cancel.cancel();
        }
    });
    token
}
