//! aruntime's MCP server: the task tools a coding agent uses to take work
//! from the board, checkpoint it and finish it, over the Model Context
//! Protocol (the official `rmcp` SDK).
//!
//! One tool router serves two modes:
//!
//! - **Sidecar** ([`serve_stdio`], `aruntime mcp`): the agent starts the
//!   process and talks to it over stdin/stdout. The process holds at most
//!   one lease and heartbeats it in the background while it lives, so worker
//!   tools need no lease argument. When the agent dies, stdin closes, the
//!   process exits, the heartbeat stops and the lease expires: the next
//!   worker resumes from the last checkpoint.
//! - **Stateless** ([`http_service`], `/mcp` on the server): streamable HTTP
//!   without MCP sessions, because server nodes share nothing but the
//!   database. `next_task` hands out the lease token, every worker tool takes
//!   it back together with the task id, and each call renews the lease. The
//!   caller's `Authorization: Bearer` header is forwarded to the API.
//!
//! Key decision: every tool goes through `aruntime-client`, never around
//! it. Over HTTP the client's transport hands each request to the server's
//! own API router in-process, so the MCP tools run exactly the code (auth,
//! validation, fencing) that the HTTP API runs, and cannot drift from it.
//!
//! Tool errors are returned as MCP tool results with `isError: true` and the
//! text `code: message`, where `code` is the API's stable error code (e.g.
//! `lease_lost: ...`), so an agent sees why a call failed and can act on it.

mod http;
mod stdio;
mod tools;

pub use http::{HttpOptions, http_service};
pub use stdio::serve_stdio;
pub use tokio_util::sync::CancellationToken;
pub use tools::McpTools;
