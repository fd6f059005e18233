//! PostgreSQL's migrations, run on start by the shared runner. Nodes
//! starting at once serialize on an advisory lock around it.

use super::Conn as PgConnection;
use super::migrate::{Migrations, apply};

use crate::Result;

pub(crate) const MIGRATIONS: &Migrations = &[
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
    (
        3,
        "event_seq_from_log",
        include_str!("../../migrations/postgres/0003_event_seq_from_log.sql"),
    ),
    (
        4,
        "slimmer_task_indexes",
        include_str!("../../migrations/postgres/0004_slimmer_task_indexes.sql"),
    ),
    (
        5,
        "no_lease_token_index",
        include_str!("../../migrations/postgres/0005_no_lease_token_index.sql"),
    ),
    (
        6,
        "byte_order_keys",
        include_str!("../../migrations/postgres/0006_byte_order_keys.sql"),
    ),
    (
        7,
        "attempts_written_once",
        include_str!("../../migrations/postgres/0007_attempts_written_once.sql"),
    ),
    (
        8,
        "decision_count",
        include_str!("../../migrations/postgres/0008_decision_count.sql"),
    ),
    (
        9,
        "claim_index_ready_only",
        include_str!("../../migrations/postgres/0009_claim_index_ready_only.sql"),
    ),
];

/// An arbitrary constant naming aruntime's migration lock.
const LOCK: i64 = 0x6172_756e_7469_6d65;

pub(crate) async fn migrate(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await?;
    let r = apply(conn, MIGRATIONS).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut *conn)
        .await;
    r
}
