//! A client transport that hands requests to this server's own API router
//! without a socket: the MCP endpoint's tools call the API through it.

use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http;
use tower::ServiceExt;

/// Sends each request through `router` in-process.
#[derive(Clone)]
pub(crate) struct InProcess {
    router: Router,
}

impl InProcess {
    /// Over `router`, which must not contain the MCP endpoint itself (a
    /// tool calling `/mcp` would recurse).
    pub(crate) fn new(router: Router) -> InProcess {
        InProcess { router }
    }
}

#[async_trait]
impl aruntime_client::Transport for InProcess {
    async fn send(
        &self,
        req: http::Request<Bytes>,
        timeout: Duration,
    ) -> Result<http::Response<Bytes>, String> {
        let call = self.router.clone().oneshot(req.map(Body::from));
        let resp = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(never)) => match never {},
            Err(_) => return Err(format!("no answer within {timeout:?}")),
        };
        let (parts, body) = resp.into_parts();
        // The body comes from our own handlers, which bound what they send
        // (the largest is a blob, limited on upload), so no cap is needed.
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|e| format!("reading the response body: {e}"))?;
        Ok(http::Response::from_parts(parts, bytes))
    }
}
