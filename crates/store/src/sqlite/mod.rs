//! The embedded SQLite backend: one database file in WAL mode plus a blob
//! directory, all under the data directory.
//!
//! SQLite allows one writer at a time, so every write goes through the
//! group-commit [`writer`]; reads use a small pool beside it. Differences
//! from a server database: no `SKIP LOCKED` (there is only one writer, so a
//! claim never contends), and wake-ups stay in this process.

mod leases;
mod reads;
mod rows;
mod schema;
mod tasks;
mod tenants;
mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use aruntime_api::{
    BlobRef, Board, BoardQuery, EventPage, EventQuery, NewCheckpoint, NewDecision, NewTask,
    TaskPage, TaskPatch, TaskQuery, Tenant,
};
use aruntime_core::context::ContextBundle;
use aruntime_core::{Attempt, Checkpoint, Decision, Principal, Role, Task, TaskStatus, Timestamp};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};
use uuid::Uuid;

use crate::blobs::BlobDir;
use crate::{
    ClaimOutcome, ClaimParams, Created, Finish, Idempotency, Result, Steer, Store, StoreError,
    Wakeups,
};
use writer::Writer;

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
    read: SqlitePool,
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
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options(&path, cfg.durability))
            .await?;
        let wakeups = Arc::new(Wakeups::default());
        Ok(SqliteStore {
            writer: Writer::spawn(conn, wakeups.clone(), cfg.max_batch.max(1)),
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
}

#[async_trait]
impl Store for SqliteStore {
    async fn bootstrap(&self, admin_token_hash: &str, now: Timestamp) -> Result<bool> {
        let hash = admin_token_hash.to_owned();
        self.writer
            .write(move |ctx| Box::pin(tenants::bootstrap(ctx, hash, now)))
            .await
    }

    async fn tenant_create(&self, name: &str, now: Timestamp) -> Result<Tenant> {
        let name = name.to_owned();
        self.writer
            .write(move |ctx| Box::pin(tenants::create(ctx, name, now)))
            .await
    }

    async fn token_create(
        &self,
        tenant: &str,
        role: Role,
        name: Option<String>,
        hash: &str,
        now: Timestamp,
    ) -> Result<()> {
        let (tenant, hash) = (tenant.to_owned(), hash.to_owned());
        self.writer
            .write(move |ctx| Box::pin(tenants::token(ctx, tenant, role, name, hash, now)))
            .await
    }

    async fn token_lookup(&self, hash: &str) -> Result<Option<Principal>> {
        reads::token_lookup(&self.read, hash).await
    }

    async fn task_create(
        &self,
        tenant: &str,
        spec: NewTask,
        idem: Option<Idempotency>,
        now: Timestamp,
    ) -> Result<Created<Task>> {
        let tenant = tenant.to_owned();
        self.writer
            .write(move |ctx| Box::pin(tasks::create(ctx, tenant, spec, idem, now)))
            .await
    }

    async fn task_get(&self, tenant: &str, id: Uuid) -> Result<Task> {
        reads::task_get(&self.read, tenant, id).await
    }

    async fn task_list(&self, tenant: &str, q: &TaskQuery) -> Result<TaskPage> {
        reads::task_list(&self.read, tenant, q).await
    }

    async fn task_patch(
        &self,
        tenant: &str,
        id: Uuid,
        patch: TaskPatch,
        now: Timestamp,
    ) -> Result<Task> {
        let tenant = tenant.to_owned();
        self.writer
            .write(move |ctx| Box::pin(tasks::patch(ctx, tenant, id, patch, now)))
            .await
    }

    async fn task_steer(&self, tenant: &str, id: Uuid, cmd: Steer, now: Timestamp) -> Result<Task> {
        let tenant = tenant.to_owned();
        self.writer
            .write(move |ctx| Box::pin(tasks::steer(ctx, tenant, id, cmd, now)))
            .await
    }

    async fn board(&self, tenant: &str, q: &BoardQuery) -> Result<Board> {
        reads::board(&self.read, tenant, q).await
    }

    async fn task_counts(&self, tenant: &str) -> Result<Vec<(TaskStatus, u64)>> {
        reads::task_counts(&self.read, tenant).await
    }

    async fn lease_claim(
        &self,
        tenant: &str,
        p: ClaimParams,
        now: Timestamp,
    ) -> Result<ClaimOutcome> {
        let tenant = tenant.to_owned();
        self.writer
            .write(move |ctx| Box::pin(leases::claim(ctx, tenant, p, now)))
            .await
    }

    async fn lease_heartbeat(
        &self,
        tenant: &str,
        lease: &str,
        now: Timestamp,
    ) -> Result<(Uuid, Timestamp)> {
        let (tenant, lease) = (tenant.to_owned(), lease.to_owned());
        self.writer
            .write(move |ctx| Box::pin(leases::heartbeat(ctx, tenant, lease, now)))
            .await
    }

    async fn checkpoint_put(
        &self,
        tenant: &str,
        task: Uuid,
        cp: NewCheckpoint,
        now: Timestamp,
    ) -> Result<Checkpoint> {
        let tenant = tenant.to_owned();
        self.writer
            .write(move |ctx| Box::pin(leases::checkpoint(ctx, tenant, task, cp, now)))
            .await
    }

    async fn task_finish(
        &self,
        tenant: &str,
        task: Uuid,
        lease: &str,
        how: Finish,
        now: Timestamp,
    ) -> Result<Task> {
        let (tenant, lease) = (tenant.to_owned(), lease.to_owned());
        self.writer
            .write(move |ctx| Box::pin(leases::finish(ctx, tenant, task, lease, how, now)))
            .await
    }

    async fn lease_expire_due(&self, now: Timestamp, limit: u32) -> Result<Vec<(String, u32)>> {
        self.writer
            .write(move |ctx| Box::pin(leases::expire_due(ctx, now, limit)))
            .await
    }

    async fn next_due(&self, tenant: &str, now: Timestamp) -> Result<Option<Timestamp>> {
        reads::next_due(&self.read, tenant, now).await
    }

    async fn checkpoint_list(&self, tenant: &str, task: Uuid) -> Result<Vec<Checkpoint>> {
        reads::checkpoint_list(&self.read, tenant, task).await
    }

    async fn checkpoint_get(&self, tenant: &str, task: Uuid, seq: i64) -> Result<Checkpoint> {
        reads::checkpoint_get(&self.read, tenant, task, seq).await
    }

    async fn attempt_list(&self, tenant: &str, task: Uuid) -> Result<Vec<Attempt>> {
        reads::attempt_list(&self.read, tenant, task).await
    }

    async fn decision_add(
        &self,
        tenant: &str,
        task: Uuid,
        d: NewDecision,
        now: Timestamp,
    ) -> Result<Decision> {
        let tenant = tenant.to_owned();
        self.writer
            .write(move |ctx| Box::pin(tasks::decision_add(ctx, tenant, task, d, now)))
            .await
    }

    async fn decision_list(&self, tenant: &str, task: Uuid) -> Result<Vec<Decision>> {
        reads::decision_list(&self.read, tenant, task).await
    }

    async fn context(&self, tenant: &str, task: Uuid) -> Result<ContextBundle> {
        reads::context(&self.read, tenant, task).await
    }

    async fn blob_put(&self, tenant: &str, bytes: &[u8], now: Timestamp) -> Result<BlobRef> {
        // The file is durable before its row commits, so a row never points
        // at a missing file; a crash in between leaves an orphan file that
        // the next upload of the same bytes adopts.
        let sha = self.blobs.put(tenant, bytes).await?;
        let size = bytes.len() as u64;
        let (t, s) = (tenant.to_owned(), sha.clone());
        self.writer
            .write(move |ctx| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO blobs (tenant_id, sha256, size, created_at) VALUES (?, ?, ?, ?) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(t)
                    .bind(s)
                    .bind(i64::try_from(size).unwrap_or(i64::MAX))
                    .bind(now.0)
                    .execute(&mut ctx.conn)
                    .await?;
                    Ok(())
                })
            })
            .await?;
        Ok(BlobRef { sha256: sha, size })
    }

    async fn blob_get(&self, tenant: &str, sha256: &str) -> Result<Vec<u8>> {
        let sha = sha256.to_ascii_lowercase();
        if !reads::blob_known(&self.read, tenant, &sha).await? {
            return Err(StoreError::not_found("blob", sha));
        }
        self.blobs.get(tenant, &sha).await
    }

    async fn event_list(&self, tenant: &str, q: &EventQuery) -> Result<EventPage> {
        reads::event_list(&self.read, tenant, q).await
    }

    fn wakeups(&self) -> Arc<Wakeups> {
        self.wakeups.clone()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }
}
