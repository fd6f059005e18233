//! The PostgreSQL backend, for several stateless server nodes on one
//! database. Nothing but the database holds state: blobs live in it too, and
//! wake-ups for long-polling claims travel between nodes with
//! `LISTEN/NOTIFY`.
//!
//! The SQL operations are shared with SQLite (`src/ops/`); what differs is in
//! [`dialect`]: every write takes its tenant's row lock first (the per-tenant
//! event counter needs it anyway, and one lock order means no deadlocks),
//! tasks are read `FOR UPDATE`, claims skip rows other nodes hold
//! (`FOR UPDATE SKIP LOCKED`), and JSON arrays are read with
//! `jsonb_array_elements_text`.

// The shared operations are compiled once per backend on purpose: each
// backend gives them its own connection, row and dialect types.
#[allow(clippy::duplicate_mod)]
#[path = "../ops/bulk.rs"]
mod bulk;
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
mod stats;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/store.rs"]
mod store;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/tasks.rs"]
mod tasks;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/tenants.rs"]
mod tenants;
#[allow(clippy::duplicate_mod)]
#[path = "../ops/writer.rs"]
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::{Result, Wakeups};
use writer::Writer;

/// The channel wake-ups travel on between nodes.
const CHANNEL: &str = "aruntime_ready";

type ConnectOpts = PgConnectOptions;
type Conn = sqlx::PgConnection;
type Db = sqlx::Postgres;
type DbRow = sqlx::postgres::PgRow;
type Pool = sqlx::PgPool;
type Backend = PgStore;

/// What PostgreSQL says differently from SQLite.
mod dialect {
    use super::writer::WriteCtx;
    use crate::Result;

    /// Tasks are read with a row lock inside writes.
    pub(crate) const FOR_UPDATE: &str = " FOR UPDATE";
    /// Claims pass over rows another node is working on.
    pub(crate) const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";
    /// The planner finds the claim index by itself, from statistics.
    pub(crate) const BY_CLAIM_INDEX: &str = "";
    /// Nor the indexes that hold each status (`reads::tasks_of`).
    pub(crate) const NAMES_INDEXES: bool = false;
    /// Data-modifying statements in `WITH`: a group's update and the
    /// writes that follow from its rows go in one round trip.
    pub(crate) const WRITES_IN_WITH: bool = true;
    /// A statement's rows are bound as one array per column (`ops/bulk.rs`).
    pub(crate) const ROWS_AS_ARRAYS: bool = true;
    /// A statement is always undone whole; there is no conflict clause.
    pub(crate) const OR_FAIL: &str = "";
    /// Temporary tables are cheap here, and a statement apart to avoid
    /// one would be a round trip (see SQLite's `AVOID_TEMP_TABLES`).
    pub(crate) const AVOID_TEMP_TABLES: bool = false;

    /// What the set-based statements run on besides the connection:
    /// nothing here, they go through sqlx.
    pub(crate) type Fast = ();
    /// The rows they return.
    pub(crate) type FastRow = sqlx::postgres::PgRow;

    /// Also tells `wakeups` which server process the writer's `NOTIFY`s
    /// come from, so that the node's listener can ignore its own.
    pub(crate) async fn fast(conn: &mut super::Conn, wakeups: &crate::Wakeups) -> Result<Fast> {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await?;
        wakeups.notifies_from(u32::try_from(pid).unwrap_or(0));
        Ok(())
    }

    /// Runs one of the writer's set-based statements. sqlx takes the
    /// text owned, so a borrowed one is copied here.
    pub(crate) async fn fetch(
        ctx: &mut WriteCtx,
        sql: impl AsRef<str> + Into<String>,
        args: Vec<super::bulk::Cell>,
    ) -> Result<Vec<FastRow>> {
        use super::bulk::Cell;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.into()));
        for cell in args {
            q = match cell {
                Cell::Text(v) => q.bind(v),
                Cell::Int(v) => q.bind(v),
                Cell::Bool(v) => q.bind(v),
                Cell::Texts(v) => q.bind(v),
                Cell::Ints(v) => q.bind(v),
                Cell::Bools(v) => q.bind(v),
            };
        }
        Ok(q.fetch_all(&mut ctx.conn).await?)
    }

    /// Opens a write transaction.
    pub(crate) const BEGIN: &str = "BEGIN";
    /// The migrations bookkeeping table.
    pub(crate) const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";
    /// Records an applied migration: `$1` version, `$2` name.
    pub(crate) const RECORD_MIGRATION: &str =
        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)";

    /// A JSON array (a column or a bound parameter) as rows with a `value`
    /// column, named `alias`.
    pub(crate) fn json_values(expr: &str, alias: &str) -> String {
        format!("jsonb_array_elements_text(({expr})::jsonb) AS {alias}(value)")
    }

    /// Parameter `n` of a statement whose parameters are all written in
    /// order.
    pub(crate) fn param(n: usize) -> String {
        format!("${n}")
    }

    /// `IN` a JSON array of ids bound as `param`, as `= ANY(array)`:
    /// PostgreSQL plans `IN (SELECT … FROM jsonb_array_elements_text(…))`
    /// as a join with a guessed 100 rows, which can scan the table; an array
    /// makes it one index probe per element.
    pub(crate) fn in_list(param: &str) -> String {
        format!("= ANY(ARRAY(SELECT jsonb_array_elements_text(({param})::jsonb)))")
    }

    /// Whether `s` may be written into SQL as a string literal as it is.
    /// Tenant ids are names of a-z, 0-9, `-` and `_`; anything else takes
    /// the parameterized path below, so nothing depends on that rule.
    fn literal_ok(s: &str) -> bool {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    fn literals(tenants: &[String]) -> String {
        let quoted: Vec<String> = tenants.iter().map(|t| format!("'{t}'")).collect();
        quoted.join(", ")
    }

    /// Opens a batch's transaction and locks the rows of the tenants it
    /// writes for, all in one statement and in id order: the gapless event
    /// log needs one writer per tenant at a time, and one lock order on
    /// every node means nodes never deadlock. Both travel in one round trip
    /// (tenant ids inline) when the ids allow it.
    pub(crate) async fn begin(ctx: &mut WriteCtx, tenants: &[String]) -> Result<()> {
        if tenants.iter().all(|t| literal_ok(t)) {
            let sql = if tenants.is_empty() {
                BEGIN.to_owned()
            } else {
                format!(
                    "{BEGIN}; SELECT 1 FROM tenants WHERE id IN ({}) ORDER BY id FOR UPDATE",
                    literals(tenants)
                )
            };
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut ctx.conn)
                .await?;
            return Ok(());
        }
        sqlx::raw_sql(BEGIN).execute(&mut ctx.conn).await?;
        sqlx::query("SELECT 1 FROM tenants WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(tenants)
            .execute(&mut ctx.conn)
            .await?;
        Ok(())
    }

    /// Commits a batch, first telling the other nodes' waiting claims which
    /// tenants have new work (`NOTIFY` is delivered only if the transaction
    /// commits); in one round trip when the tenant ids allow it.
    pub(crate) async fn commit(ctx: &mut WriteCtx) -> Result<()> {
        let tenants: Vec<String> = ctx.wake.tenants().cloned().collect();
        if tenants.iter().all(|t| literal_ok(t)) {
            let mut sql = String::new();
            for t in &tenants {
                sql.push_str(&format!("NOTIFY {}, '{t}'; ", super::CHANNEL));
            }
            sql.push_str("COMMIT");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut ctx.conn)
                .await?;
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, t) FROM unnest($2::text[]) AS t")
            .bind(super::CHANNEL)
            .bind(tenants)
            .execute(&mut ctx.conn)
            .await?;
        sqlx::raw_sql("COMMIT").execute(&mut ctx.conn).await?;
        Ok(())
    }

    /// Runs statements with neither parameters nor rows (savepoints and
    /// rollbacks).
    pub(crate) async fn exec(ctx: &mut WriteCtx, sql: &'static str) -> Result<()> {
        sqlx::raw_sql(sql).execute(&mut ctx.conn).await?;
        Ok(())
    }

    /// Serializes creates that share an Idempotency-Key, across nodes
    /// (tenant names contain no `/`, so the lock name is unambiguous).
    pub(crate) async fn lock_key(ctx: &mut WriteCtx, tenant: &str, key: &str) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("{tenant}/{key}"))
            .execute(&mut ctx.conn)
            .await?;
        Ok(())
    }
}

/// Blobs as rows, so that every node serves every blob.
mod blobs {
    use aruntime_api::BlobRef;
    use aruntime_core::Timestamp;
    use sha2::{Digest, Sha256};

    use super::PgStore;
    use crate::{Result, StoreError};

    pub(super) async fn put(
        store: &PgStore,
        tenant: &str,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<BlobRef> {
        let sha = hex::encode(Sha256::digest(bytes));
        let size = bytes.len() as u64;
        let (t, s, data) = (tenant.to_owned(), sha.clone(), bytes.to_vec());
        store
            .writer
            .write(None, move |ctx| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO blobs (tenant_id, sha256, size, created_at, data) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(t)
                    .bind(s)
                    .bind(i64::try_from(size).unwrap_or(i64::MAX))
                    .bind(now.0)
                    .bind(data)
                    .execute(&mut ctx.conn)
                    .await?;
                    Ok(())
                })
            })
            .await?;
        Ok(BlobRef { sha256: sha, size })
    }

    pub(super) async fn get(store: &PgStore, tenant: &str, sha: &str) -> Result<Vec<u8>> {
        sqlx::query_scalar("SELECT data FROM blobs WHERE tenant_id = $1 AND sha256 = $2")
            .bind(tenant)
            .bind(sha)
            .fetch_optional(&store.read)
            .await?
            .ok_or_else(|| StoreError::not_found("blob", sha))
    }
}

/// Settings of the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user@host:port/db`.
    pub url: String,
    /// Connections for reads.
    pub read_connections: u32,
    /// Most writes committed together in one transaction (on this node's
    /// one write connection).
    pub max_batch: usize,
    /// Longest a statement may run before it is cancelled.
    pub statement_timeout: Duration,
    /// How often the store looks for tables with stale planner statistics
    /// and analyzes them (see [`PgStore::refresh_statistics`]), when this
    /// node has committed writes since its last look; `None` leaves them to
    /// autovacuum and the operator.
    pub statistics_every: Option<Duration>,
}

impl PgConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            read_connections: 8,
            max_batch: 512,
            statement_timeout: Duration::from_secs(30),
            statistics_every: Some(Duration::from_millis(100)),
        }
    }
}

/// The PostgreSQL store.
pub struct PgStore {
    writer: Writer,
    read: Pool,
    wakeups: Arc<Wakeups>,
    /// The store's background tasks: the listener for other nodes'
    /// wake-ups and, if configured, the one keeping planner statistics
    /// current ([`stats`]). Each holds a clone of `read`, so the pool would
    /// never close and the listener's connection would outlive the store.
    background: Vec<tokio::task::AbortHandle>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

impl PgStore {
    /// Connects, runs migrations (once, even when nodes start together) and
    /// starts listening for other nodes' wake-ups.
    pub async fn open(cfg: &PgConfig) -> Result<Self> {
        let timeout_ms = cfg.statement_timeout.as_millis().to_string();
        let opts = PgConnectOptions::from_str(&cfg.url)?
            .options([("statement_timeout", timeout_ms.as_str())])
            .application_name("aruntime");
        let mut conn = opts.connect().await?;
        schema::migrate(&mut conn).await?;
        sqlx::Connection::close(conn).await?;
        let read = PgPoolOptions::new()
            // Every request reads (its token, at least); pinging each
            // connection before handing it out doubled the round trips. A
            // connection that died is found by its query failing instead
            // (a 503 the client retries), and the pool drops it.
            .test_before_acquire(false)
            .max_connections(cfg.read_connections.max(1))
            // While the database is down, requests wait this long for their
            // 503: short enough for a readiness probe's timeout.
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(opts.clone())
            .await?;
        let wakeups = Arc::new(Wakeups::default());
        stats::warn_if_autovacuum_off(&read).await?;
        let commits = Arc::new(AtomicU64::new(0));
        let writer = Writer::spawn(opts, wakeups.clone(), cfg.max_batch, commits.clone()).await?;
        let mut background =
            vec![tokio::spawn(listen(read.clone(), wakeups.clone())).abort_handle()];
        if let Some(every) = cfg.statistics_every {
            let keeper = stats::keep_fresh(read.clone(), commits, every);
            background.push(tokio::spawn(keeper).abort_handle());
        }
        Ok(PgStore {
            writer,
            read,
            wakeups,
            background,
        })
    }
}

impl PgStore {
    /// Analyzes aruntime's tables whose planner statistics are missing or
    /// stale, as the store does by itself (every 100 ms while it writes);
    /// returns the tables analyzed (none while another node is at it).
    pub async fn refresh_statistics(&self) -> Result<Vec<String>> {
        stats::refresh(&self.read).await
    }

    /// `EXPLAIN` of the claim statement for `tenant`, as PostgreSQL would run
    /// it now: to check that claims stay an index walk as the table grows.
    pub async fn explain_claim(
        &self,
        tenant: &str,
        now: aruntime_core::Timestamp,
    ) -> Result<String> {
        let sql = format!("EXPLAIN {}", leases::claim_sql());
        let lines: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(now.0)
            .bind("[]")
            .bind(10_i64)
            .fetch_all(&self.read)
            .await?;
        Ok(lines.join("\n"))
    }
}

/// Forwards other nodes' wake-ups to this node's waiters, reconnecting
/// after the database comes back. Ends when the pool is closed.
async fn listen(pool: Pool, wakeups: Arc<Wakeups>) {
    let mut backoff = Duration::from_millis(100);
    while !pool.is_closed() {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        if listener.listen(CHANNEL).await.is_err() {
            continue;
        }
        backoff = Duration::from_millis(100);
        // Wake-ups sent while this node was not listening are lost; waking
        // everyone makes the waiting claims look again.
        wakeups.wake_all();
        loop {
            match listener.try_recv().await {
                // This node's writer sent it and has woken this node's
                // waiters already, as many as its batch left work for;
                // waking all of them again sent each to look for nothing.
                Ok(Some(n)) if wakeups.is_own_notify(n.process_id()) => {}
                Ok(Some(n)) => wakeups.wake(n.payload()),
                Ok(None) => wakeups.wake_all(),
                Err(_) => break,
            }
        }
    }
}

/// What the shared tests of `ops/` open a PostgreSQL store with.
#[cfg(test)]
mod testing {
    use super::{PgConfig, PgStore};
    use crate::Store;
    use aruntime_core::Timestamp;

    /// A fresh store in a database of its own, with tenant `default`,
    /// bootstrapped at `now`, and the guard that drops the database; `None`
    /// (after a loud message) without PostgreSQL.
    pub(crate) async fn bootstrapped(
        now: Timestamp,
    ) -> Option<(aruntime_testkit::TestDb, PgStore)> {
        let db = aruntime_testkit::TestDb::create().await?;
        let store = PgStore::open(&PgConfig::new(&db.url)).await.unwrap();
        assert!(store.bootstrap("admin-hash", now).await.unwrap());
        Some((db, store))
    }

    /// A database of its own migrated up to, not including, migration
    /// `name`, a connection to it, and the guard that drops it; `None`
    /// (after a loud message) without PostgreSQL.
    pub(crate) async fn migrated_until(
        name: &str,
    ) -> Option<(aruntime_testkit::TestDb, super::Conn)> {
        use sqlx::Connection;
        let db = aruntime_testkit::TestDb::create().await?;
        let mut conn = super::Conn::connect(&db.url).await.unwrap();
        super::migrate::apply_until(&mut conn, super::schema::MIGRATIONS, name)
            .await
            .unwrap();
        Some((db, conn))
    }

    /// The store on a database [`migrated_until`] made, migrated to the end.
    pub(crate) async fn reopen(db: &aruntime_testkit::TestDb) -> PgStore {
        PgStore::open(&PgConfig::new(&db.url)).await.unwrap()
    }

    /// Returns once the store's listener listens and has handled every
    /// `NOTIFY` committed before the call: it sends one from a connection
    /// of its own, for a tenant nobody else uses, and waits for it (or for
    /// the wake-up the listener gives everyone when it starts listening).
    pub(crate) async fn notifications_settled(db: &aruntime_testkit::TestDb, store: &PgStore) {
        use sqlx::Connection;
        let marker = store.wakeups.tenant("~marker");
        let woken = marker.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let mut conn = super::Conn::connect(&db.url).await.unwrap();
        sqlx::query("SELECT pg_notify($1, '~marker')")
            .bind(super::CHANNEL)
            .execute(&mut conn)
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(30), woken)
            .await
            .expect("the listener never passed the marker on");
    }
}
