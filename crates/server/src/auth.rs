//! Who is calling: the bearer token resolved to a tenant and role. Tokens
//! are stored as sha256 hashes; the tenant always comes from the token,
//! never from the request body.

use aruntime_api::ErrorCode;
use aruntime_core::{DEFAULT_TENANT, Permission, Principal, Role};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

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
        let principal = state
            .store
            .token_lookup(&hash_token(token))
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "unknown token"))?;
        Ok(Auth(principal))
    }
}
