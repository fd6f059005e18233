//! The one error shape of the API and the stable codes it carries.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// A stable code from [`ErrorCode`].
    pub code: String,
    /// A sentence for a person.
    pub message: String,
    /// Structured details (the field at fault, limits); `{}` when none.
    pub details: Value,
}

macro_rules! codes {
    ($($(#[doc = $doc:literal])* $variant:ident = ($code:literal, $status:literal),)*) => {
        /// Every error code the API returns. Codes are stable; messages are not.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, for docs and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status that goes with it.
            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// Parses a wire code.
            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s { $($code => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    /// The body is not valid JSON, or a query string does not parse.
    MalformedRequest = ("malformed_request", 400),
    /// The JSON parses but a field is missing, has the wrong type, or breaks a rule.
    InvalidInput = ("invalid_input", 422),
    /// The request body or a field in it is larger than allowed.
    PayloadTooLarge = ("payload_too_large", 413),
    /// The body is not declared as JSON.
    UnsupportedMediaType = ("unsupported_media_type", 415),
    /// No bearer token, or one that is not known.
    Unauthorized = ("unauthorized", 401),
    /// The token's role may not do this.
    Forbidden = ("forbidden", 403),
    /// No such resource in the caller's tenant (whether or not it exists elsewhere).
    NotFound = ("not_found", 404),
    /// No such route.
    RouteNotFound = ("route_not_found", 404),
    /// The route exists but not with this method.
    MethodNotAllowed = ("method_not_allowed", 405),
    /// The lease token is stale, expired or belongs to another task; nothing changed.
    LeaseLost = ("lease_lost", 409),
    /// The state machine does not allow this command from the task's status.
    InvalidTransition = ("invalid_transition", 409),
    /// The dependencies given would form a cycle.
    DependencyCycle = ("dependency_cycle", 422),
    /// The resource already exists (e.g. a tenant name).
    AlreadyExists = ("already_exists", 409),
    /// The Idempotency-Key was used before with a different request.
    IdempotencyConflict = ("idempotency_conflict", 409),
    /// A referenced blob was never uploaded to this tenant.
    UnknownBlob = ("unknown_blob", 422),
    /// The context cannot be fitted into the requested `max_bytes`.
    ContextTooLarge = ("context_too_large", 422),
    /// The database is unreachable or overloaded; retry.
    Unavailable = ("unavailable", 503),
    /// A bug; the details are in the server log, never in the response.
    Internal = ("internal", 500),
}
