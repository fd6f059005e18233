//! SQLite's migrations, run on start by the shared runner.

use super::Conn;
use super::migrate::{Migrations, apply};
use crate::Result;

pub(crate) const MIGRATIONS: &Migrations = &[
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
    (
        8,
        "claim_index_ready_only",
        include_str!("../../migrations/sqlite/0008_claim_index_ready_only.sql"),
    ),
];

pub(crate) async fn migrate(conn: &mut Conn) -> Result<()> {
    apply(conn, MIGRATIONS).await
}
