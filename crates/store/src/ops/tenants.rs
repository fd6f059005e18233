//! Tenants, tokens and the first-start bootstrap.

use aruntime_api::Tenant;
use aruntime_core::{DEFAULT_TENANT, Role, Timestamp};

use super::writer::WriteCtx;
use crate::{Result, StoreError};

pub(crate) async fn bootstrap(ctx: &mut WriteCtx, hash: String, now: Timestamp) -> Result<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
        .fetch_one(&mut ctx.conn)
        .await?;
    if n > 0 {
        return Ok(false);
    }
    create(ctx, DEFAULT_TENANT.to_owned(), now).await?;
    token(
        ctx,
        DEFAULT_TENANT.to_owned(),
        Role::Admin,
        Some("bootstrap".into()),
        hash,
        now,
    )
    .await?;
    Ok(true)
}

pub(crate) async fn create(ctx: &mut WriteCtx, name: String, now: Timestamp) -> Result<Tenant> {
    let inserted =
        sqlx::query("INSERT INTO tenants (id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&name)
            .bind(now.0)
            .execute(&mut ctx.conn)
            .await?
            .rows_affected();
    if inserted == 0 {
        return Err(StoreError::AlreadyExists {
            kind: "tenant",
            id: name,
        });
    }
    Ok(Tenant {
        name,
        created_at: now,
    })
}

pub(crate) async fn token(
    ctx: &mut WriteCtx,
    tenant: String,
    role: Role,
    name: Option<String>,
    hash: String,
    now: Timestamp,
) -> Result<()> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM tenants WHERE id = $1")
        .bind(&tenant)
        .fetch_optional(&mut ctx.conn)
        .await?;
    if found.is_none() {
        return Err(StoreError::not_found("tenant", tenant));
    }
    sqlx::query(
        "INSERT INTO tokens (hash, tenant_id, role, name, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash)
    .bind(&tenant)
    .bind(role.as_str())
    .bind(name)
    .bind(now.0)
    .execute(&mut ctx.conn)
    .await?;
    Ok(())
}
