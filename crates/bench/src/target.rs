//! Where a workload runs: the embedded store, or real `aruntime serve`
//! processes (one on SQLite, one or two on PostgreSQL), started here and
//! stopped at the end. Also the baseline measured beside each target, the
//! seeding of done tasks for `scale`, and reading a server's RSS.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use aruntime_client::Client;
use aruntime_core::{Clock, SystemClock};
use aruntime_server::{STOP_LINES, ServeConfig};
use aruntime_store::sqlite::Durability;
use sqlx::{ConnectOptions, Connection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::driver::{Api, Embedded, Http};

/// A place to run workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// The SQLite store called in-process, no HTTP.
    Embedded,
    /// One `aruntime serve` on SQLite, over loopback HTTP.
    Sqlite,
    /// One `aruntime serve` on PostgreSQL.
    Pg1,
    /// Two `aruntime serve` nodes sharing one PostgreSQL database.
    Pg2,
}

impl TargetKind {
    /// How the report names it.
    pub fn describe(self) -> &'static str {
        match self {
            TargetKind::Embedded => "embedded store (SQLite, synchronous=FULL, no HTTP)",
            TargetKind::Sqlite => "1 server on SQLite (synchronous=FULL), loopback HTTP",
            TargetKind::Pg1 => "1 server on PostgreSQL (synchronous_commit=on), loopback HTTP",
            TargetKind::Pg2 => "2 servers on one PostgreSQL database, loopback HTTP",
        }
    }

    pub(crate) fn is_pg(self) -> bool {
        matches!(self, TargetKind::Pg1 | TargetKind::Pg2)
    }
}

/// A running target.
pub(crate) struct Target {
    /// What it is.
    pub(crate) kind: TargetKind,
    /// The operations.
    pub(crate) api: Arc<dyn Api>,
    /// Server processes (empty when embedded).
    nodes: Vec<Child>,
    /// The database, for the baseline and seeding.
    db: Db,
    _dir: tempfile::TempDir,
}

enum Db {
    Sqlite(PathBuf),
    Pg {
        admin_url: String,
        url: String,
        name: String,
    },
}

/// `postgres://u@h:p/db?x` with another database name.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let root = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

/// Who created a bench database: the host (a hash of its name) and the
/// process. A bench drops its database when it stops, but one killed
/// outright cannot; the next bench on the same host finds the database by
/// its name, sees that its process is gone, and drops it
/// ([`drop_orphaned_databases`]). The host is part of the name because a
/// PostgreSQL server may serve benches on several machines, whose process
/// ids mean nothing here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    host: u32,
    pid: u32,
}

const BENCH_DB_PREFIX: &str = "aruntime_bench_";

impl Owner {
    fn me() -> Owner {
        Owner {
            host: host_hash(),
            pid: std::process::id(),
        }
    }

    /// `aruntime_bench_<host>_<pid>_<random>`: 40 characters at most,
    /// within PostgreSQL's 63.
    fn database_name(self) -> String {
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!(
            "{BENCH_DB_PREFIX}{:08x}_{}_{}",
            self.host,
            self.pid,
            &random[..8]
        )
    }

    /// The owner a database name records; `None` for any other name,
    /// including those of benches older than this scheme.
    fn of_database(name: &str) -> Option<Owner> {
        let mut parts = name.strip_prefix(BENCH_DB_PREFIX)?.split('_');
        let (host, pid, random) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || host.len() != 8 || random.len() != 8 {
            return None;
        }
        Some(Owner {
            host: u32::from_str_radix(host, 16).ok()?,
            pid: pid.parse().ok()?,
        })
    }
}

/// FNV-1a of the kernel's host name: stable across runs and builds, which
/// `std`'s hasher does not promise. 0 where the name cannot be read.
fn host_hash() -> u32 {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    name.trim().bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Whether process `pid` still runs on this host.
fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Drops the databases that benches on this host created and did not drop
/// because they were killed: those whose process is gone. Returns their
/// names. Does nothing where `/proc` cannot tell which processes run.
pub(crate) async fn drop_orphaned_databases(admin_url: &str) -> Result<Vec<String>> {
    if !Path::new("/proc/self").exists() {
        return Ok(vec![]);
    }
    let me = Owner::me();
    let mut c = sqlx::PgConnection::connect(admin_url)
        .await
        .context("connecting to PostgreSQL")?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname",
    )
    .bind(BENCH_DB_PREFIX)
    .fetch_all(&mut c)
    .await?;
    let mut dropped = vec![];
    for name in names {
        let orphaned = Owner::of_database(&name)
            .is_some_and(|o| o.host == me.host && o.pid != me.pid && !process_alive(o.pid));
        if orphaned {
            drop_database(&mut c, &name)
                .await
                .with_context(|| format!("dropping {name}, left by a killed bench"))?;
            dropped.push(name);
        }
    }
    Ok(dropped)
}

/// Drops a bench database, with whatever sessions a dead bench's servers
/// may still hold on it.
async fn drop_database(c: &mut sqlx::PgConnection, name: &str) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(c)
    .await?;
    Ok(())
}

/// Single-row insert transactions per second on `c` over `run`.
async fn commit_rate<C>(c: &mut C, run: Duration) -> Result<f64>
where
    C: Connection,
    for<'e> &'e mut C: sqlx::Executor<'e, Database = C::Database>,
    <C::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<C::Database>,
    for<'q> &'q str: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
{
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < run {
        sqlx::query("INSERT INTO baseline (v) VALUES ($1)")
            .bind("x")
            .execute(&mut *c)
            .await?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// How long a server may take to stop once asked, before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

async fn start_node(exe: &Path, dir: &Path, database: Option<&str>) -> Result<(Child, String)> {
    // `ARUNTIME_BENCH_SERVER_LOG` (say `aruntime_store=debug`, for the
    // writer's batch trace) is how a profiling run sees inside the servers;
    // every other `ARUNTIME_` variable is removed so the shell cannot skew
    // a run.
    let log = std::env::var("ARUNTIME_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into());
    let mut cmd = Command::new(exe);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log",
        &log,
        "--data-dir",
    ])
    .arg(dir)
    .arg("--exit-on-stdin-close")
    // The pipe's write end lives in the `Child` (never taken): when this
    // process ends, even by SIGKILL, the server reads end-of-file and stops
    // instead of running on as an orphan.
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ARUNTIME_") {
            cmd.env_remove(k);
        }
    }
    if let Some(url) = database {
        cmd.args(["--database", url]);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let out = child.stdout.take().context("server stdout")?;
    let mut lines = BufReader::new(out).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("the server did not start within 60 s")??
        .ok_or_else(|| anyhow!("the server exited before listening"))?;
    let url = line
        .strip_prefix("aruntime listening on ")
        .ok_or_else(|| anyhow!("unexpected first line from the server: {line}"))?
        .to_owned();
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // What the server says on stderr (its warnings, a profiling run's log)
    // is passed on, except the two lines that answer the bench's own
    // request to stop (`Target::stop`), which would only clutter the report.
    if let Some(err) = child.stderr.take() {
        let mut lines = BufReader::new(err).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if !STOP_LINES.contains(&line.as_str()) {
                    eprintln!("{line}");
                }
            }
        });
    }
    Ok((child, url))
}

impl Target {
    /// Starts `kind` in a fresh directory under `parent`. PostgreSQL targets
    /// create their own database from `pg_url` and drop it at the end.
    pub(crate) async fn start(
        kind: TargetKind,
        parent: &Path,
        pg_url: Option<&str>,
    ) -> Result<Target> {
        std::fs::create_dir_all(parent)?;
        let dir = tempfile::tempdir_in(parent)?;
        let data = dir.path().to_path_buf();
        let db = if kind.is_pg() {
            let admin_url = pg_url
                .ok_or_else(|| anyhow!("{kind:?} needs --pg-url (or ARUNTIME_BENCH_PG_URL)"))?
                .to_owned();
            let name = Owner::me().database_name();
            let mut c = sqlx::PgConnection::connect(&admin_url)
                .await
                .context("connecting to PostgreSQL")?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut c)
                .await?;
            let url = with_database(&admin_url, &name);
            Db::Pg {
                admin_url,
                url,
                name,
            }
        } else {
            Db::Sqlite(data.join("aruntime.db"))
        };
        let (api, nodes): (Arc<dyn Api>, Vec<Child>) = match kind {
            TargetKind::Embedded => {
                let cfg = ServeConfig {
                    listen: "127.0.0.1:0".parse()?,
                    data_dir: data.clone(),
                    database: None,
                    durability: Durability::Full,
                    mcp_allowed_hosts: vec![],
                };
                let store = aruntime_server::open_store(&cfg).await?;
                aruntime_server::bootstrap_admin(store.as_ref(), &data, &SystemClock).await?;
                let api = Embedded {
                    store,
                    tenant: aruntime_core::DEFAULT_TENANT.into(),
                    waiting: Arc::default(),
                };
                (Arc::new(api), vec![])
            }
            _ => {
                let exe = std::env::current_exe()?;
                let database = match &db {
                    Db::Pg { url, .. } => Some(url.as_str()),
                    Db::Sqlite(_) => None,
                };
                let count = if kind == TargetKind::Pg2 { 2 } else { 1 };
                let mut nodes = vec![];
                let mut clients = vec![];
                for _ in 0..count {
                    let (child, url) = start_node(&exe, &data, database).await?;
                    let token = std::fs::read_to_string(data.join("admin.token"))
                        .context("reading the bench server's admin token")?;
                    clients.push(Client::new(&url, token.trim())?);
                    nodes.push(child);
                }
                (Arc::new(Http::new(clients)), nodes)
            }
        };
        Ok(Target {
            kind,
            api,
            nodes,
            db,
            _dir: dir,
        })
    }

    /// The server processes' ids; none when the store is embedded here.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(Child::id).collect()
    }

    /// Resident memory of the server processes (this process when
    /// embedded), in MiB; the largest node's when there are several.
    pub(crate) fn rss_mib(&self) -> f64 {
        let pids: Vec<String> = if self.nodes.is_empty() {
            vec!["self".into()]
        } else {
            self.pids().iter().map(u32::to_string).collect()
        };
        pids.iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter_map(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .fold(0.0, f64::max)
            / 1024.0
    }

    /// The raw rate of single-row insert transactions, one connection, on
    /// the same database and durability settings, measured for `secs`.
    pub(crate) async fn baseline(&self, secs: f64) -> Result<f64> {
        let run = Duration::from_secs_f64(secs);
        match &self.db {
            Db::Sqlite(path) => {
                let file = path.with_file_name("baseline.db");
                let mut c = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&file)
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                    .connect()
                    .await?;
                sqlx::query(
                    "CREATE TABLE IF NOT EXISTS baseline (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
                )
                .execute(&mut c)
                .await?;
                commit_rate(&mut c, run).await
            }
            Db::Pg { url, .. } => {
                let mut c = sqlx::PgConnection::connect(url).await?;
                sqlx::query("CREATE TABLE IF NOT EXISTS baseline (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)")
                    .execute(&mut c)
                    .await?;
                commit_rate(&mut c, run).await
            }
        }
    }

    /// Adds `n` done tasks straight into the tasks table (the same columns
    /// the runtime writes), in chunks. Once per store: the seeded ids are
    /// numbered from 1, so a second call would collide on the primary key.
    /// Seeding through the API would take minutes per million and measure
    /// nothing `scale` is about.
    pub(crate) async fn seed_done(&self, n: u64, mut progress: impl FnMut(u64)) -> Result<()> {
        const CHUNK: u64 = 50_000;
        let now = SystemClock.now().0 - 86_400_000;
        let mut done = 0;
        match &self.db {
            Db::Sqlite(path) => {
                let mut c = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .busy_timeout(Duration::from_secs(30))
                    .connect()
                    .await?;
                while done < n {
                    let k = CHUNK.min(n - done);
                    let sql = "WITH RECURSIVE s(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM s WHERE i < $2) \
                        INSERT INTO tasks (tenant_id, id, title, goal, acceptance, labels, priority, status, held, \
                        depends_on, pending_deps, max_attempts, attempts, lease_ttl_s, result, created_at, updated_at) \
                        SELECT 'default', printf('00000001-0000-7000-8000-%012d', i), 'seeded', '', '[]', '[]', 0, \
                        'done', 0, '[]', 0, 3, 1, 60, '{}', $3 + i, $3 + i FROM s";
                    sqlx::query(sql)
                        .bind(i64::try_from(done + 1)?)
                        .bind(i64::try_from(done + k)?)
                        .bind(now)
                        .execute(&mut c)
                        .await?;
                    done += k;
                    progress(done);
                }
                sqlx::query("ANALYZE").execute(&mut c).await?;
            }
            Db::Pg { url, .. } => {
                let mut c = sqlx::PgConnection::connect(url).await?;
                while done < n {
                    let k = CHUNK.min(n - done);
                    let sql = "INSERT INTO tasks (tenant_id, id, title, goal, acceptance, labels, priority, status, held, \
                        depends_on, pending_deps, max_attempts, attempts, lease_ttl_s, result, created_at, updated_at) \
                        SELECT 'default', '00000001-0000-7000-8000-' || lpad(i::text, 12, '0'), \
                        'seeded', '', '[]', '[]', 0, 'done', false, '[]', 0, 3, 1, 60, '{}', $3 + i, $3 + i \
                        FROM generate_series($1::bigint, $2::bigint) AS i";
                    sqlx::query(sql)
                        .bind(i64::try_from(done + 1)?)
                        .bind(i64::try_from(done + k)?)
                        .bind(now)
                        .execute(&mut c)
                        .await?;
                    done += k;
                    progress(done);
                }
                sqlx::query("ANALYZE tasks").execute(&mut c).await?;
            }
        }
        Ok(())
    }

    /// Stops the servers and drops a PostgreSQL database.
    ///
    /// Each server is first asked to stop (its stdin closed, which
    /// `--exit-on-stdin-close` answers with a graceful shutdown) and killed
    /// only if it has not exited within [`STOP_GRACE`]: a server that ends
    /// normally closes its store cleanly, and a profiler wrapped around it
    /// (`valgrind --trace-children=yes aruntime bench …`) gets to write
    /// its counts, which a SIGKILL loses.
    pub(crate) async fn stop(mut self) -> Result<()> {
        for c in &mut self.nodes {
            drop(c.stdin.take());
        }
        for c in &mut self.nodes {
            if tokio::time::timeout(STOP_GRACE, c.wait()).await.is_err() {
                let _ = c.kill().await;
            }
        }
        if let Db::Pg {
            admin_url, name, ..
        } = &self.db
        {
            let mut c = sqlx::PgConnection::connect(admin_url).await?;
            drop_database(&mut c, name).await?;
        }
        Ok(())
    }

    /// Refuses PostgreSQL targets without a URL, before any work starts.
    pub(crate) fn check(kind: TargetKind, pg_url: Option<&str>) -> Result<()> {
        if kind.is_pg() && pg_url.is_none() {
            bail!("target {kind:?} needs --pg-url or ARUNTIME_BENCH_PG_URL");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_database_name_records_its_owner() {
        use super::Owner;
        let me = Owner {
            host: 0xdead_beef,
            pid: 4_194_304,
        };
        let name = me.database_name();
        assert!(name.len() <= 63, "{name}");
        assert_eq!(Owner::of_database(&name), Some(me));
        // Names of older benches (pid and a whole uuid) and of anything
        // else are never taken for a bench's.
        for other in [
            "aruntime_bench_1234_0123456789abcdef0123456789abcdef",
            "aruntime_bench_deadbeef_12_abcdefgh_x",
            "aruntime_t_1_2",
            "postgres",
        ] {
            assert_eq!(Owner::of_database(other), None, "{other}");
        }
    }

    #[test]
    fn database_name_is_replaced() {
        use super::with_database as w;
        assert_eq!(
            w("postgres://u@h:5432/postgres", "b"),
            "postgres://u@h:5432/b"
        );
        assert_eq!(
            w("postgres://u@h/x?sslmode=disable", "b"),
            "postgres://u@h/b?sslmode=disable"
        );
        assert_eq!(w("postgres://u@h", "b"), "postgres://u@h/b");
    }
}
