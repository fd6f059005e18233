//! The `Prefer` request header (RFC 7240), as far as the API honours it:
//! `return=minimal` on the writes that answer with a task (create, and the
//! lease holder's complete, fail, block and release). Such a write then
//! answers with a [`TaskRef`] (the task's id and status) and says so in
//! `Preference-Applied`; without it, or with `return=representation`, it
//! answers with the whole task as before.
//!
//! Why: a producer that creates tasks by the thousand, or a worker that
//! acknowledges one, has no use for the task it just wrote, yet the whole
//! task was written out by the server and read back by the client on every
//! call, about a fifth of a create's CPU on both sides
//! (docs/performance.md, finding 71). Other preferences are ignored, as
//! the RFC asks.

use std::convert::Infallible;

use aruntime_api::{RETURN_MINIMAL, TaskRef};
use aruntime_core::Task;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiJson;

/// The header a client states its preferences in.
pub const PREFER: HeaderName = HeaderName::from_static(aruntime_api::PREFER);
/// The header that says which preferences the answer honoured.
pub const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// What a task write's client asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prefer {
    /// `return=minimal`: answer with the task's id and status only.
    pub minimal: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Prefer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let values = parts.headers.get_all(PREFER);
        Ok(Prefer {
            minimal: return_pref(values.iter().filter_map(|v| v.to_str().ok()))
                .is_some_and(|v| v.eq_ignore_ascii_case("minimal")),
        })
    }
}

/// The value of the first `return` preference among `headers` (each a
/// comma-separated list; RFC 7240 says a repeated preference counts only
/// the first time). Names are compared without case, a value may be
/// quoted, and parameters after `;` are ignored.
fn return_pref<'a>(headers: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    headers
        .flat_map(|h| h.split(','))
        .map(|pref| {
            let head = pref.split(';').next().unwrap_or_default();
            let (name, value) = head.split_once('=').unwrap_or((head, ""));
            (name.trim(), value.trim().trim_matches('"'))
        })
        .find(|(name, _)| name.eq_ignore_ascii_case("return"))
        .map(|(_, value)| value)
}

impl Prefer {
    /// The answer to a write that produced `task`: the task, or its
    /// [`TaskRef`] when the client asked for `return=minimal`.
    pub fn answer(self, status: StatusCode, task: Task) -> Response {
        if !self.minimal {
            return (status, ApiJson(task)).into_response();
        }
        let brief = TaskRef {
            id: task.id,
            status: task.status,
        };
        let mut r = (status, ApiJson(brief)).into_response();
        r.headers_mut()
            .insert(PREFERENCE_APPLIED, HeaderValue::from_static(RETURN_MINIMAL));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pref(headers: &[&'static str]) -> Option<&'static str> {
        return_pref(headers.iter().copied())
    }

    #[test]
    fn finds_the_first_return_preference() {
        assert_eq!(pref(&["return=minimal"]), Some("minimal"));
        assert_eq!(pref(&["Return = \"minimal\""]), Some("minimal"));
        assert_eq!(
            pref(&["respond-async, wait=10, return=minimal"]),
            Some("minimal")
        );
        assert_eq!(pref(&["return=minimal; foo=bar"]), Some("minimal"));
        assert_eq!(pref(&["wait=5", "return=minimal"]), Some("minimal"));
        assert_eq!(
            pref(&["return=representation", "return=minimal"]),
            Some("representation")
        );
        assert_eq!(pref(&["respond-async"]), None);
        assert_eq!(pref(&["returns=minimal"]), None);
        assert_eq!(pref(&[]), None);
    }
}
