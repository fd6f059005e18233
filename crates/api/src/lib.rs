//! The HTTP contract's types: request bodies, responses, the error shape and
//! its stable codes, and the input limits.
//!
//! Key decision: one crate owns the wire format so that the server, the Rust
//! client, the CLI and the MCP server cannot drift apart. Request types
//! reject unknown fields, so a misspelt field is an error, not a silent
//! default.

pub mod error;
pub mod limits;
pub mod plan;
pub mod requests;
pub mod responses;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use plan::{PlanEntry, PlanImport, PlanImported, PlanItem};
pub use requests::*;
pub use responses::*;
