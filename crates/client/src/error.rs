//! What a call can fail with. The server's error codes arrive typed; losing
//! a lease has its own variant because a worker must stop on it.

use aruntime_api::{ErrorBody, ErrorCode};
use serde_json::Value;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The lease is no longer held: it expired, or the task moved on. The
    /// worker must stop work on the task; nothing it sent was written.
    #[error("lease_lost: {message}")]
    LeaseLost {
        /// The server's explanation.
        message: String,
    },
    /// The server refused the request.
    #[error("{code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The stable error code (see [`ErrorCode`]).
        code: String,
        /// The server's message.
        message: String,
        /// Machine-readable details, if any.
        details: Option<Value>,
    },
    /// The server could not be reached or the connection broke.
    #[error("cannot reach the server at {url}: {message}")]
    Unreachable {
        /// Where we tried.
        url: String,
        /// What happened.
        message: String,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected answer from the server (HTTP {status}): {message}")]
    Protocol {
        /// HTTP status.
        status: u16,
        /// What did not parse.
        message: String,
    },
    /// The client was given something it cannot use (a bad URL or token).
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::LeaseLost { .. } => Some(ErrorCode::LeaseLost),
            ClientError::Api { code, .. } => ErrorCode::parse(code),
            _ => None,
        }
    }

    /// Worth retrying later: the server or its database is unavailable.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
            || matches!(
                self.code(),
                Some(ErrorCode::Unavailable | ErrorCode::Internal)
            )
    }

    pub(crate) fn from_body(status: u16, body: &[u8]) -> ClientError {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) if b.error.code == ErrorCode::LeaseLost.as_str() => ClientError::LeaseLost {
                message: b.error.message,
            },
            Ok(b) => ClientError::Api {
                status,
                code: b.error.code,
                message: b.error.message,
                details: Some(b.error.details)
                    .filter(|d| !d.as_object().is_some_and(|o| o.is_empty())),
            },
            Err(_) => ClientError::Protocol {
                status,
                message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            },
        }
    }
}

/// Results of client calls.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
