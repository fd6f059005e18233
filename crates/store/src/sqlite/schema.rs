//! Versioned migrations, run on start. Each runs once, in its own
//! transaction, and is recorded in `schema_migrations`.

use sqlx::SqliteConnection;

use crate::Result;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "core",
        include_str!("../../migrations/sqlite/0001_core.sql"),
    ),
    (
        2,
        "expiry_index",
        include_str!("../../migrations/sqlite/0002_expiry_index.sql"),
    ),
];

pub(crate) async fn migrate(conn: &mut SqliteConnection) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    for (version, name, sql) in MIGRATIONS {
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *conn)
                .await?;
        if done.is_some() {
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
            continue;
        }
        let applied = async {
            sqlx::raw_sql(*sql).execute(&mut *conn).await?;
            sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, datetime('now'))")
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
