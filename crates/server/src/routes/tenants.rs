//! Tenants and their API tokens.

use aruntime_api::{CreateTenant, CreateToken, ErrorCode, Tenant, TokenCreated};
use aruntime_core::Permission;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::auth::{Auth, hash_token, new_token};
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::state::AppState;

/// `POST /v1/tenants`: admin of the default tenant only.
pub(super) async fn create(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, ApiJson<Tenant>)> {
    auth.require_system_admin()?;
    req.validate()?;
    let t = s.store.tenant_create(&req.name, s.clock.now()).await?;
    Ok((StatusCode::CREATED, ApiJson(t)))
}

/// `POST /v1/tenants/{tenant}/tokens`: an admin of that tenant, or of the
/// default tenant.
pub(super) async fn token(
    State(s): State<AppState>,
    auth: Auth,
    Path(tenant): Path<String>,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, ApiJson<TokenCreated>)> {
    auth.require(Permission::ManageTokens)?;
    if tenant != auth.tenant() {
        // Another tenant's name answers like a missing one unless the
        // caller may manage tenants at all.
        auth.require_system_admin()
            .map_err(|_| ApiError::new(ErrorCode::NotFound, format!("no tenant {tenant}")))?;
    }
    req.validate()?;
    let token = new_token();
    s.store
        .token_create(
            &tenant,
            req.role,
            req.name,
            &hash_token(&token),
            s.clock.now(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(TokenCreated {
            token,
            tenant,
            role: req.role,
        }),
    ))
}
