//! The sidecar: the MCP server on stdin/stdout, holding one lease for the
//! agent that started it.

use anyhow::Context;
use aruntime_client::Client;
use rmcp::ServiceExt;

use crate::tools::McpTools;

/// Serves the MCP tools on stdin/stdout until the client closes stdin.
///
/// `worker` names this worker on the board; `capabilities` are the labels
/// it handles (a `next_task` call may override them). stdout carries the
/// protocol, so the caller must send logs to stderr only (without ANSI
/// colours: agents often show stderr verbatim).
///
/// A lease still held when this returns is not released: dropping it stops
/// its heartbeat and it expires after its TTL, which counts as an abandoned
/// attempt. That is deliberate: a client that vanished may have crashed on
/// the task, and an attempt budget is what stops a task that crashes every
/// worker from being retried forever.
pub async fn serve_stdio(
    client: Client,
    worker: String,
    capabilities: Vec<String>,
) -> anyhow::Result<()> {
    let tools = McpTools::sidecar(client, worker, capabilities);
    let running = tools
        .serve(rmcp::transport::stdio())
        .await
        .context("starting the MCP session on stdin/stdout")?;
    let reason = running
        .waiting()
        .await
        .context("the MCP session on stdin/stdout failed")?;
    tracing::debug!(?reason, "MCP session on stdin/stdout ended");
    Ok(())
}
