//! The stateless streamable-HTTP service that a server mounts at `/mcp`.

use std::sync::Arc;

use aruntime_client::Transport;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::tools::McpTools;

/// How the HTTP service accepts requests.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `Host` header values (names, or `name:port`) accepted; others get
    /// 403. This guards a server on a developer's machine against DNS
    /// rebinding from a web page. The default accepts only loopback names:
    /// `localhost`, `127.0.0.1` and `::1`.
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        }
    }
}

/// The MCP tools over streamable HTTP, without sessions.
///
/// Each tool call builds an API client from the request's bearer token,
/// `base` and `transport` (the server passes a transport that calls its own
/// router in-process). Open streams end when `shutdown` is cancelled.
pub fn http_service(
    transport: Arc<dyn Transport>,
    base: &str,
    options: HttpOptions,
    shutdown: CancellationToken,
) -> StreamableHttpService<McpTools, NeverSessionManager> {
    let tools = McpTools::stateless(transport, base);
    let config = StreamableHttpServerConfig::default()
        // No sessions: any node may answer any request, and nothing is lost
        // when one restarts.
        .with_legacy_session_mode(false)
        // Tools answer once, without progress notifications: plain JSON
        // responses are simpler for clients and proxies than an SSE stream.
        .with_json_response(true)
        .with_allowed_hosts(options.allowed_hosts)
        .with_cancellation_token(shutdown);
    StreamableHttpService::new(
        // Cloning shares the tool table instead of rebuilding every tool's
        // schema for each request.
        move || Ok(tools.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    )
}
