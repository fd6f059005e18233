//! Applies versioned migrations, each once, in its own transaction, and
//! records it in `schema_migrations`. Shared by both backends; the dialect
//! gives the `BEGIN`, the bookkeeping table and its insert.

use super::Conn;
use super::dialect::{BEGIN, MIGRATIONS_TABLE, RECORD_MIGRATION};
use crate::Result;

/// `(version, name, sql)`, in version order.
pub(crate) type Migrations = [(i64, &'static str, &'static str)];

pub(crate) async fn apply(conn: &mut Conn, migrations: &Migrations) -> Result<()> {
    sqlx::raw_sql(MIGRATIONS_TABLE).execute(&mut *conn).await?;
    for (version, name, sql) in migrations {
        sqlx::raw_sql(BEGIN).execute(&mut *conn).await?;
        // Checked inside the transaction, so two processes starting on one
        // database cannot both apply it.
        let applied = async {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *conn)
                    .await?;
            if done.is_none() {
                sqlx::raw_sql(*sql).execute(&mut *conn).await?;
                sqlx::query(RECORD_MIGRATION)
                    .bind(version)
                    .bind(*name)
                    .execute(&mut *conn)
                    .await?;
            }
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
            Ok::<bool, sqlx::Error>(done.is_none())
        }
        .await;
        match applied {
            Ok(true) => tracing::info!(version, name, "applied migration"),
            Ok(false) => {}
            Err(e) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                return Err(e.into());
            }
        }
    }
    Ok(())
}
