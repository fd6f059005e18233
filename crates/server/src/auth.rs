//! Who is calling: the bearer token resolved to a tenant and role. Tokens
//! are stored as sha256 hashes; the tenant always comes from the token,
//! never from the request body.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aruntime_api::ErrorCode;
use aruntime_core::{DEFAULT_TENANT, Permission, Principal, Role};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How long a resolved token is trusted without asking the database again.
pub const TOKEN_TTL: Duration = Duration::from_secs(5);

/// Tokens resolved in the last [`TOKEN_TTL`]. Every request names its
/// token, and reading it from the database was one more round trip on
/// every write's path. The API cannot revoke a token; one deleted in the
/// database stops working within the TTL. Unknown tokens are never
/// remembered, so guessing fills nothing.
///
/// Keyed by the token itself, not its SHA-256 (which is what the database
/// keeps): hashing each request's token only to look it up took 2 % of the
/// request threads in a `cycle` profile. Each token is in this process's
/// memory for its request anyway; the cache holds at most [`Self::MAX`] of
/// them for at most the TTL. A hit is the whole token compared equal, so
/// no other string can stand in for one, and the map's per-process random
/// hash key decides which stored tokens a guess is compared with.
#[derive(Debug, Default)]
pub struct TokenCache {
    known: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl TokenCache {
    /// Most tokens remembered; past it the cache starts over.
    const MAX: usize = 10_000;

    fn get(&self, token: &str) -> Option<Principal> {
        let known = self.known.lock().ok()?;
        known
            .get(token)
            .filter(|(_, at)| at.elapsed() < TOKEN_TTL)
            .map(|(p, _)| p.clone())
    }

    fn put(&self, token: String, p: Principal) {
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= Self::MAX {
                known.clear();
            }
            known.insert(token, (p, Instant::now()));
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl Auth {
    /// The caller's tenant.
    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }

    /// Refuses with 403 unless the role allows `p`.
    pub fn require(&self, p: Permission) -> ApiResult<()> {
        if self.0.role.allows(p) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("a {} token may not do this", self.0.role.as_str()),
            ))
        }
    }

    /// Refuses unless the caller is an admin of the `default` tenant, the
    /// only one that may create tenants and act across them.
    pub fn require_system_admin(&self) -> ApiResult<()> {
        if self.0.role == Role::Admin && self.0.tenant == DEFAULT_TENANT {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                "only an admin of the default tenant may manage tenants",
            ))
        }
    }
}

/// sha256 hex of a token: what the database keeps.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh API token: 244 random bits.
pub fn new_token() -> String {
    format!(
        "art_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "send Authorization: Bearer <token>",
                )
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "send Authorization: Bearer <token>",
                )
            })?;
        if let Some(p) = state.tokens.get(token) {
            return Ok(Auth(p));
        }
        let principal = state
            .store
            .token_lookup(&hash_token(token))
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "unknown token"))?;
        state.tokens.put(token.to_owned(), principal.clone());
        Ok(Auth(principal))
    }
}
