//! SQLite's migrations, run on start by the shared runner.

use super::Conn;
use super::migrate::{Migrations, apply};
use crate::Result;

const MIGRATIONS: &Migrations = &[
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
    (
        3,
        "event_seq_from_log",
        include_str!("../../migrations/sqlite/0003_event_seq_from_log.sql"),
    ),
    (
        4,
        "slimmer_task_indexes",
        include_str!("../../migrations/sqlite/0004_slimmer_task_indexes.sql"),
    ),
    (
        5,
        "no_lease_token_index",
        include_str!("../../migrations/sqlite/0005_no_lease_token_index.sql"),
    ),
    (
        6,
        "attempts_written_once",
        include_str!("../../migrations/sqlite/0006_attempts_written_once.sql"),
    ),
    (
        7,
        "decision_count",
        include_str!("../../migrations/sqlite/0007_decision_count.sql"),
    ),
];

pub(crate) async fn migrate(conn: &mut Conn) -> Result<()> {
    apply(conn, MIGRATIONS).await
}

#[cfg(test)]
mod tests {
    use aruntime_core::{AttemptOutcome, TaskStatus, Timestamp};
    use serde_json::json;
    use sqlx::ConnectOptions;
    use uuid::Uuid;

    use super::super::{Durability, SqliteConfig, SqliteStore, options};
    use super::{MIGRATIONS, apply};
    use crate::{Finish, Store};

    /// A lease granted before attempts were written once (migration 6)
    /// still shows its running attempt, with the start the old row held,
    /// after the upgrade; its completion writes that attempt's one row.
    #[tokio::test]
    async fn an_attempt_running_across_the_upgrade_keeps_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = options(&dir.path().join("aruntime.db"), Durability::Full)
            .connect()
            .await
            .unwrap();
        apply(&mut conn, &MIGRATIONS[..5]).await.unwrap();
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

        let store = SqliteStore::open(&SqliteConfig::new(dir.path()))
            .await
            .unwrap();
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
