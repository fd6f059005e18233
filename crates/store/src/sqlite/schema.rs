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
];

pub(crate) async fn migrate(conn: &mut Conn) -> Result<()> {
    apply(conn, MIGRATIONS).await
}
