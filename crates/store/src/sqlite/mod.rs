//! The embedded SQLite backend: one database file in WAL mode plus a blob
//! directory, all under the data directory.
//!
//! SQLite allows one writer at a time, so every write goes through the
//! group-commit [`writer`]; reads use a small pool beside it. The SQL
//! operations are shared with PostgreSQL (`src/ops/`); what differs is in
//! [`dialect`]: no row locks or `SKIP LOCKED` (there is only one writer, so a
//! claim never contends), `json_each` for JSON arrays, and wake-ups that stay
//! in this process.

// The shared operations are compiled once per backend on purpose: each
// backend gives them its own connection, row and dialect types.
#[allow(clippy::duplicate_mod)]
#[path = "../ops/bulk.rs"]
mod bulk;
pub(crate) mod ffi;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/grouped.rs"]
mod grouped;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/leases.rs"]
mod leases;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/migrate.rs"]
mod migrate;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/plans.rs"]
mod plans;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/reads.rs"]
mod reads;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/rows.rs"]
mod rows;
mod schema;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/store.rs"]
mod store;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/tasks.rs"]
mod tasks;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/tenants.rs"]
mod tenants;
mod wal;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/writer.rs"]
mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::blobs::BlobDir;
use crate::{Result, Wakeups};
use writer::Writer;

type ConnectOpts = SqliteConnectOptions;
type Conn = sqlx::SqliteConnection;
type Db = sqlx::Sqlite;
type DbRow = sqlx::sqlite::SqliteRow;
type Pool = sqlx::SqlitePool;
type Backend = SqliteStore;

/// What SQLite says differently from PostgreSQL.
mod dialect {
    use super::writer::WriteCtx;
    use crate::Result;

    /// Row locks: none needed, there is one writer.
    pub(crate) const FOR_UPDATE: &str = "";
    /// Claims never contend, there is one writer.
    pub(crate) const SKIP_LOCKED: &str = "";
    /// Ready tasks are found through the claim index. Without statistics
    /// SQLite reads `status = 'ready' AND not_before <= ?` through the
    /// primary key instead, every task of the tenant (3 ms per create at
    /// 10,000 done tasks, performance.md, finding 55).
    pub(crate) const BY_CLAIM_INDEX: &str = " INDEXED BY tasks_claim";
    /// Reads of one status name the index that holds it (`reads::tasks_of`),
    /// for the same reason: without statistics SQLite counts a tenant's
    /// ready or running tasks through the primary key, all of them.
    pub(crate) const NAMES_INDEXES: bool = true;
    /// SQLite has no `INSERT`/`UPDATE` inside `WITH`.
    pub(crate) const WRITES_IN_WITH: bool = false;
    /// A statement's rows are bound cell by cell, as `VALUES` padded to a
    /// power of two (`ops/bulk.rs`): SQLite has no arrays.
    pub(crate) const ROWS_AS_ARRAYS: bool = false;

    /// The conflict clause of the writer's set-based writes. With SQLite's
    /// default (`ABORT`) a statement that writes many rows keeps a
    /// statement journal so it can undo itself alone; 4 % of the writer's
    /// time in `cycle`. Nothing needs that undo: a set-based write that
    /// fails fails its whole group, and the writer then rolls back the
    /// transaction or the group's savepoint (`ops/writer.rs`), taking the
    /// rows the statement did write with it.
    pub(crate) const OR_FAIL: &str = " OR FAIL";

    /// SQLite builds a statement's temporary tables as B-trees of their
    /// own, each opened, written and closed at every execution: a
    /// `MATERIALIZED` table of rows, the copy of an `INSERT … SELECT` that
    /// reads its own table (so the insert cannot see its own rows), a
    /// `RETURNING` buffer. An idle queue's create and the lease it grants
    /// opened 13 of them per task; avoiding them took a fifth off the
    /// writer's instructions there (performance.md, finding 65). The
    /// writer avoids them where it can know the answer another way: a lone
    /// row is not materialized, and a read the insert would make of its own
    /// table is made by a statement of its own just before it, on the same
    /// connection, in the same transaction, with nothing written in
    /// between.
    pub(crate) const AVOID_TEMP_TABLES: bool = true;

    /// What the set-based statements run on: the writer connection's raw
    /// handle, called from the writer's thread (see [`ffi`](super::ffi)).
    pub(crate) type Fast = super::ffi::Handle;
    /// The rows they return.
    pub(crate) type FastRow = super::ffi::FfiRow;

    pub(crate) async fn fast(conn: &mut super::Conn, _: &crate::Wakeups) -> Result<Fast> {
        Fast::of(conn).await
    }

    /// Runs one of the writer's set-based statements, in place. The text
    /// may be borrowed: a statement run once per row (`grouped.rs`) is
    /// then not copied for each.
    pub(crate) async fn fetch(
        ctx: &mut WriteCtx,
        sql: impl AsRef<str> + Into<String>,
        args: Vec<super::bulk::Cell>,
    ) -> Result<Vec<FastRow>> {
        ctx.fast.fetch(sql.as_ref(), &args)
    }

    /// Opens a write transaction (a deferred BEGIN that later writes can fail with SQLITE_BUSY).
    pub(crate) const BEGIN: &str = "BEGIN IMMEDIATE";
    /// The migrations bookkeeping table.
    pub(crate) const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";
    /// Records an applied migration: `$1` version, `$2` name.
    pub(crate) const RECORD_MIGRATION: &str = "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, datetime('now'))";

    /// A JSON array (a column or a bound parameter) as rows with a `value`
    /// column, named `alias`.
    pub(crate) fn json_values(expr: &str, alias: &str) -> String {
        format!("json_each({expr}) AS {alias}")
    }

    /// Parameter `n` of a statement whose parameters are all written in
    /// order: anonymous, since SQLite finds a named one by walking the list
    /// of names.
    pub(crate) fn param(_n: usize) -> String {
        "?".to_owned()
    }

    /// `IN` a JSON array of ids bound as `param`. SQLite probes the key
    /// index once per element.
    pub(crate) fn in_list(param: &str) -> String {
        format!("IN (SELECT value FROM json_each({param}))")
    }

    /// Opens a batch's transaction. Writes of one tenant need no lock:
    /// this process's writer is the only one.
    pub(crate) async fn begin(ctx: &mut WriteCtx, _: &[String]) -> Result<()> {
        ctx.fast.fetch(BEGIN, &[])?;
        Ok(())
    }

    /// Commits a batch. Wake-ups stay in this process; nothing to announce.
    pub(crate) async fn commit(ctx: &mut WriteCtx) -> Result<()> {
        ctx.fast.fetch("COMMIT", &[])?;
        Ok(())
    }

    /// Runs statements with neither parameters nor rows (savepoints and
    /// rollbacks), in place: through sqlx each was a hand-off to its
    /// connection thread and back, and a batch opens a savepoint per write
    /// that is not grouped.
    pub(crate) async fn exec(ctx: &mut WriteCtx, sql: &'static str) -> Result<()> {
        for one in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            ctx.fast.fetch(one, &[])?;
        }
        Ok(())
    }

    /// Idempotent creates are already serialized by the single writer.
    pub(crate) async fn lock_key(_: &mut WriteCtx, _: &str, _: &str) -> Result<()> {
        Ok(())
    }
}

/// Blobs as files in the data directory, with a row per tenant and sha.
mod blobs {
    use aruntime_api::BlobRef;
    use aruntime_core::Timestamp;

    use super::SqliteStore;
    use crate::Result;

    pub(super) async fn put(
        store: &SqliteStore,
        tenant: &str,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<BlobRef> {
        // The file is durable before its row commits, so a row never points
        // at a missing file; a crash in between leaves an orphan file that
        // the next upload of the same bytes adopts.
        let sha = store.blobs.put(tenant, bytes).await?;
        let size = bytes.len() as u64;
        let (t, s) = (tenant.to_owned(), sha.clone());
        // In place on the writer's thread, like its other hot statements
        // (see `ffi`): `checkpointed` writes a blob per task.
        let size_i64 = i64::try_from(size).unwrap_or(i64::MAX);
        store
            .writer
            .write(None, move |ctx| {
                Box::pin(async move {
                    let row = [t.into(), s.into(), size_i64.into(), now.0.into()];
                    ctx.fast.fetch(
                        "INSERT INTO blobs (tenant_id, sha256, size, created_at) VALUES (?, ?, ?, ?) \
                         ON CONFLICT DO NOTHING",
                        &row,
                    )?;
                    Ok(())
                })
            })
            .await?;
        Ok(BlobRef { sha256: sha, size })
    }

    pub(super) async fn get(store: &SqliteStore, tenant: &str, sha: &str) -> Result<Vec<u8>> {
        store.blobs.get(tenant, sha).await
    }
}

/// How hard SQLite flushes before a commit returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: an acknowledged write survives a power cut.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a process crash; the last commits may
    /// be lost on a power cut.
    Normal,
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            _ => Err(format!("unknown durability {s:?}: use full or normal")),
        }
    }
}

/// Settings of the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Directory holding `aruntime.db` and `blobs/`.
    pub data_dir: PathBuf,
    /// Flush policy.
    pub durability: Durability,
    /// Most writes committed together.
    pub max_batch: usize,
}

impl SqliteConfig {
    /// Defaults for `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            data_dir: data_dir.into(),
            durability: Durability::Full,
            max_batch: 512,
        }
    }
}

/// The SQLite store.
pub struct SqliteStore {
    writer: Writer,
    read: Pool,
    blobs: BlobDir,
    wakeups: Arc<Wakeups>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database under `cfg.data_dir`, runs
    /// migrations and starts the writer.
    pub async fn open(cfg: &SqliteConfig) -> Result<Self> {
        tokio::fs::create_dir_all(&cfg.data_dir).await?;
        let path = cfg.data_dir.join("aruntime.db");
        let opts = options(&path, cfg.durability);
        let mut conn = opts.connect().await?;
        schema::migrate(&mut conn).await?;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&mut conn)
            .await?;
        // Closing the last connection checkpoints the WAL and deletes it,
        // so the WAL written next is the one every connection opens.
        sqlx::Connection::close(conn).await?;
        if wal::preallocate(&path, u64::try_from(page_size).unwrap_or(4096)).await? {
            tracing::debug!(page_size, "wrote the WAL ahead");
        }
        let read = SqlitePoolOptions::new()
            // Every request reads (its token, at least); pinging each
            // connection before handing it out doubled the round trips. A
            // connection that died is found by its query failing instead
            // (a 503 the client retries), and the pool drops it.
            .test_before_acquire(false)
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options(&path, cfg.durability))
            .await?;
        let wakeups = Arc::new(Wakeups::default());
        Ok(SqliteStore {
            writer: Writer::spawn(opts, wakeups.clone(), cfg.max_batch, Arc::default()).await?,
            read,
            blobs: BlobDir::new(cfg.data_dir.join("blobs")),
            wakeups,
        })
    }
}

fn options(path: &Path, durability: Durability) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Normal => SqliteSynchronous::Normal,
        })
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // The statement journal each savepoint keeps (the writer opens one
        // per group) spills to a temporary file past 64 KiB by default:
        // under `cycle` a batch's groups opened, wrote and unlinked one,
        // 6 % of the connection thread's time. It only serves rollbacks
        // inside a transaction, so memory loses nothing durable.
        .pragma("temp_store", "memory")
        .pragma("wal_autocheckpoint", wal::AUTOCHECKPOINT_PAGES.to_string())
}

/// What the shared tests of `ops/` open a SQLite store with.
#[cfg(test)]
mod testing {
    use super::{SqliteConfig, SqliteStore};
    use crate::Store;
    use aruntime_core::Timestamp;

    /// A fresh store with tenant `default`, bootstrapped at `now`, and what
    /// keeps its files.
    pub(crate) async fn bootstrapped(now: Timestamp) -> Option<(tempfile::TempDir, SqliteStore)> {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteConfig::new(dir.path()))
            .await
            .unwrap();
        assert!(store.bootstrap("admin-hash", now).await.unwrap());
        Some((dir, store))
    }

    /// A fresh database migrated up to, not including, migration `name`,
    /// a connection to it, and what keeps its files.
    pub(crate) async fn migrated_until(name: &str) -> Option<(tempfile::TempDir, super::Conn)> {
        use sqlx::ConnectOptions;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aruntime.db");
        let mut conn = super::options(&path, super::Durability::Full)
            .connect()
            .await
            .unwrap();
        super::migrate::apply_until(&mut conn, super::schema::MIGRATIONS, name)
            .await
            .unwrap();
        Some((dir, conn))
    }

    /// The store on a database [`migrated_until`] made, migrated to the end.
    pub(crate) async fn reopen(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&SqliteConfig::new(dir.path()))
            .await
            .unwrap()
    }

    /// Nothing to wait for: one node, no listener.
    pub(crate) async fn notifications_settled(_: &tempfile::TempDir, _: &SqliteStore) {}
}
