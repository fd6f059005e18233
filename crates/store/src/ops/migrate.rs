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

/// Applies `migrations` up to, not including, the one called `name`: how
/// the upgrade tests build a database as an older version left it.
#[cfg(test)]
pub(crate) async fn apply_until(
    conn: &mut Conn,
    migrations: &Migrations,
    name: &str,
) -> Result<()> {
    let until = migrations
        .iter()
        .position(|m| m.1 == name)
        .unwrap_or(migrations.len());
    apply(conn, &migrations[..until]).await
}

#[cfg(test)]
mod tests {
    use aruntime_core::{AttemptOutcome, TaskStatus, Timestamp};
    use serde_json::json;
    use uuid::Uuid;

    use super::super::testing::{migrated_until, reopen};
    use crate::{Finish, Store};

    /// A lease granted before attempts were written once still shows its
    /// running attempt, with the start the old row held, after the
    /// upgrade; its completion writes that attempt's one row.
    #[tokio::test]
    async fn an_attempt_running_across_the_upgrade_keeps_its_start() {
        let Some((guard, mut conn)) = migrated_until("attempts_written_once").await else {
            return;
        };
        let id = Uuid::now_v7();
        let token = format!("ls_{}{id}", Uuid::new_v4().simple());
        sqlx::query("INSERT INTO tenants (id, created_at) VALUES ('default', 0)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO tasks (tenant_id, id, title, goal, acceptance, labels, priority, status, \
             held, depends_on, pending_deps, max_attempts, attempts, lease_ttl_s, lease_token, \
             lease_worker, lease_attempt, lease_ttl_ms, lease_expires_at, created_at, updated_at) \
             VALUES ('default', $1, 't', '', '[]', '[]', 0, 'running', FALSE, '[]', 0, 3, 1, 60, \
             $2, 'w1', 1, 60000, 61000, 500, 1000)",
        )
        .bind(id.to_string())
        .bind(&token)
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO attempts (tenant_id, task_id, n, worker, started_at, outcome) \
             VALUES ('default', $1, 1, 'w1', 1000, 'running')",
        )
        .bind(id.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::Connection::close(conn).await.unwrap();

        let store = reopen(&guard).await;
        let running = store.attempt_list("default", id).await.unwrap();
        assert_eq!(running.len(), 1, "{running:?}");
        assert_eq!(running[0].outcome, AttemptOutcome::Running);
        assert_eq!((running[0].n, running[0].worker.as_str()), (1, "w1"));
        assert_eq!(running[0].started_at, Timestamp(1000));

        let done = store
            .task_finish(
                "default",
                id,
                &token,
                Finish::Complete {
                    result: json!({"ok": true}),
                },
                Timestamp(2000),
            )
            .await
            .unwrap();
        assert_eq!(done.status, TaskStatus::Done);
        let ended = store.attempt_list("default", id).await.unwrap();
        assert_eq!(ended.len(), 1, "{ended:?}");
        assert_eq!(ended[0].outcome, AttemptOutcome::Completed);
        assert_eq!(ended[0].started_at, Timestamp(1000));
        assert_eq!(ended[0].ended_at, Some(Timestamp(2000)));
    }
}
