//! Versioned migrations for PostgreSQL, run on start. Nodes starting at
//! once serialize on an advisory lock, so each migration runs exactly once.

use sqlx::PgConnection;

use crate::Result;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "core",
        include_str!("../../migrations/postgres/0001_core.sql"),
    ),
    (
        2,
        "expiry_index",
        include_str!("../../migrations/postgres/0002_expiry_index.sql"),
    ),
];

/// An arbitrary constant naming aruntime's migration lock.
const LOCK: i64 = 0x6172_756e_7469_6d65;

pub(crate) async fn migrate(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await?;
    let r = apply(conn).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await;
    r
}

async fn apply(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&mut *conn)
    .await?;
    for (version, name, sql) in MIGRATIONS {
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *conn)
                .await?;
        if done.is_some() {
            continue;
        }
        // DDL is transactional in PostgreSQL: a migration applies whole or not at all.
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
        let applied = async {
            sqlx::raw_sql(*sql).execute(&mut *conn).await?;
            sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
                .bind(version)
                .bind(name)
                .execute(&mut *conn)
                .await?;
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await
        }
        .await;
        if let Err(e) = applied {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            return Err(e.into());
        }
        tracing::info!(version, name, "applied migration");
    }
    Ok(())
}
