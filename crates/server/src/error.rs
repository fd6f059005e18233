//! The API's one error shape, and extractors that send malformed input
//! through it instead of axum's plain-text rejections.

use aruntime_api::requests::Invalid;
use aruntime_api::{ErrorBody, ErrorCode, ErrorDetail};
use aruntime_store::StoreError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// An error answered as `{"error": {"code", "message", "details"}}`.
#[derive(Debug)]
pub struct ApiError {
    /// Stable code; decides the HTTP status.
    pub code: ErrorCode,
    /// For a person.
    pub message: String,
    /// Structured details.
    pub details: Value,
}

impl ApiError {
    /// An error without details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    /// Adds details.
    pub fn with(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Handler results.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// The body's inside, as batch answers carry it per entry.
    pub fn detail(self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.as_str().to_owned(),
            message: self.message,
            details: self.details,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: self.detail(),
        };
        (status, Json(body)).into_response()
    }
}

impl From<Invalid> for ApiError {
    fn from(i: Invalid) -> Self {
        ApiError::new(i.code, i.message).with(json!({"field": i.field}))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let msg = e.to_string();
        match e {
            StoreError::NotFound { kind, id } => {
                ApiError::new(ErrorCode::NotFound, msg).with(json!({"kind": kind, "id": id}))
            }
            StoreError::LeaseLost => ApiError::new(ErrorCode::LeaseLost, msg),
            StoreError::InvalidTransition(t) => ApiError::new(ErrorCode::InvalidTransition, msg)
                .with(json!({"from": t.from, "command": t.command})),
            StoreError::Invalid { field, .. } => {
                ApiError::new(ErrorCode::InvalidInput, msg).with(json!({"field": field}))
            }
            StoreError::DependencyCycle { path } => {
                ApiError::new(ErrorCode::DependencyCycle, msg).with(json!({"cycle": path}))
            }
            StoreError::AlreadyExists { kind, id } => {
                ApiError::new(ErrorCode::AlreadyExists, msg).with(json!({"kind": kind, "id": id}))
            }
            StoreError::IdempotencyConflict => ApiError::new(ErrorCode::IdempotencyConflict, msg),
            StoreError::UnknownBlob(sha) => {
                ApiError::new(ErrorCode::UnknownBlob, msg).with(json!({"sha256": sha}))
            }
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "storage unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "storage is unavailable; retry shortly",
                )
            }
            e => {
                // 5xx details go to the log, never to the client.
                tracing::error!(error = %e, "internal error");
                ApiError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

fn body_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
    } else {
        ApiError::new(ErrorCode::MalformedRequest, text)
    }
}

/// `Json<T>` whose rejections use the API error shape; as an answer, it is
/// written into a buffer sized for one task (see `ANSWER_CAPACITY`).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // What nearly every client sends skips axum's check, which parses
        // the header into a `mime::Mime` (allocating) on every request; any
        // other value still gets that check, so what is accepted is the
        // same.
        let plain = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"application/json"));
        let parsed = if plain {
            match Bytes::from_request(req, state).await {
                // A plain parse first: axum's `from_bytes` tracks the path
                // to every value it reads, for the message of a refusal,
                // and that tracking was most of a request's parse
                // (performance.md, finding 72). It accepts the same texts,
                // so only a body that fails is read again, for the path.
                Ok(bytes) => match serde_json::from_slice::<T>(&bytes) {
                    Ok(v) => Ok(Json(v)),
                    Err(_) => Json::<T>::from_bytes(&bytes),
                },
                Err(e) => Err(e.into()),
            }
        } else {
            Json::<T>::from_request(req, state).await
        };
        match parsed {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::new(ErrorCode::InvalidInput, e.body_text()))
            }
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::new(ErrorCode::MalformedRequest, e.body_text()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body with Content-Type: application/json",
            )),
            Err(JsonRejection::BytesRejection(e)) => Err(body_rejection(e.status(), e.body_text())),
            Err(e) => Err(body_rejection(e.status(), e.body_text())),
        }
    }
}

/// Bytes a JSON answer starts with. axum's `Json` starts at 128 and grows
/// by doubling, so a task (about 500 bytes) was copied three times on its
/// way out; growing and copying was about a tenth of a request thread's
/// CPU under `aruntime bench` (docs/performance.md, finding 53).
const ANSWER_CAPACITY: usize = 1024;

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        let mut buf = Vec::with_capacity(ANSWER_CAPACITY);
        match serde_json::to_writer(&mut buf, &self.0) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                buf,
            )
                .into_response(),
            // Only a map with non-string keys or a failing `Serialize` impl
            // gets here: a bug in the server, answered in the one shape.
            Err(e) => {
                tracing::error!(error = %e, "serializing an answer");
                ApiError::new(ErrorCode::Internal, "internal error").into_response()
            }
        }
    }
}

/// A raw body whose rejections use the API error shape.
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(|e: BytesRejection| body_rejection(e.status(), e.body_text()))
    }
}

/// `Query<T>` whose rejections use the API error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::new(ErrorCode::MalformedRequest, e.body_text()))
    }
}

/// Parses a task id from a path; anything that is not a UUID is simply not
/// found (so a malformed id and another tenant's id answer alike).
pub fn task_id(s: &str) -> ApiResult<uuid::Uuid> {
    uuid::Uuid::parse_str(s).map_err(|_| {
        ApiError::new(ErrorCode::NotFound, format!("no task {s} in this tenant"))
            .with(json!({"kind": "task", "id": s}))
    })
}
