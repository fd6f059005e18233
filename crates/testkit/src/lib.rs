//! Test infrastructure shared by the crates' test suites: a PostgreSQL
//! database per test, and throwaway PostgreSQL clusters.
//!
//! Where PostgreSQL comes from, in order: `ARUNTIME_TEST_PG_URL` (CI sets it
//! to the machine's server); else a cluster this kit starts with the
//! machine's `initdb`/`pg_ctl` under `target/aruntime-test-pg` and reuses
//! across runs; else the PostgreSQL tests are skipped with a loud message.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, PgConnection};

/// A database created for one test and dropped (`WITH (FORCE)`) when the
/// guard drops.
pub struct TestDb {
    /// URL of the test's own database.
    pub url: String,
    admin_url: String,
    name: String,
}

static SERVER: OnceLock<Option<String>> = OnceLock::new();
static N: AtomicU32 = AtomicU32::new(0);

/// The admin URL of the PostgreSQL server tests use, if any.
pub fn server_url() -> Option<String> {
    SERVER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("ARUNTIME_TEST_PG_URL") {
                return Some(url);
            }
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/aruntime-test-pg");
            match Cluster::reuse_or_start(&dir) {
                Ok(c) => Some(c.url("postgres")),
                Err(e) => {
                    eprintln!(
                        "\n*** SKIPPING PostgreSQL tests: ARUNTIME_TEST_PG_URL is unset and no cluster could be started ({e}) ***\n"
                    );
                    None
                }
            }
        })
        .clone()
}

impl TestDb {
    /// A fresh database, or `None` (after a loud message) without PostgreSQL.
    pub async fn create() -> Option<TestDb> {
        let admin_url = server_url()?;
        let name = format!(
            "aruntime_t_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {admin_url}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("dropping {name}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
        let url = with_database(&admin_url, &name);
        Some(TestDb {
            url,
            admin_url,
            name,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside any async context guarantee: use a thread with
        // its own small runtime.
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut c) = PgConnection::connect(&admin).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            }
        })
        .join();
    }
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A PostgreSQL cluster of its own, in a directory, on a free port.
pub struct Cluster {
    /// Data directory.
    pub dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
}

fn find_bin() -> Result<PathBuf, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "no /usr/lib/postgresql".to_owned())?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .ok_or_else(|| "no initdb under /usr/lib/postgresql".to_owned())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a server binary, as user `postgres` when we are root (the server
/// refuses to run as root).
fn pg_command(bin: &Path, tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn run(mut c: Command) -> Result<(), String> {
    let out = c.output().map_err(|e| format!("{c:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{c:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl Cluster {
    /// `initdb` a new cluster in `dir` (which must not exist) and start it.
    pub fn init(dir: &Path) -> Result<Cluster, String> {
        let bin = find_bin()?;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        if is_root() {
            run({
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(dir);
                c
            })?;
        }
        let mut c = pg_command(&bin, "initdb");
        c.arg("-D")
            .arg(dir)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"]);
        run(c)?;
        let cluster = Cluster {
            dir: dir.to_path_buf(),
            port: free_port()?,
            bin,
        };
        cluster.start()?;
        Ok(cluster)
    }

    fn reuse_or_start(dir: &Path) -> Result<Cluster, String> {
        let port_file = dir.join("aruntime.port");
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            let cluster = Cluster {
                dir: dir.to_path_buf(),
                port: p.trim().parse().map_err(|_| "bad port file".to_owned())?,
                bin: find_bin()?,
            };
            if cluster.start().is_ok() {
                return Ok(cluster);
            }
            let _ = std::fs::remove_dir_all(dir);
        }
        let cluster = Cluster::init(dir)?;
        std::fs::write(&port_file, cluster.port.to_string()).map_err(|e| e.to_string())?;
        Ok(cluster)
    }

    /// Starts the server and waits until it accepts connections (a running
    /// server is left as it is).
    pub fn start(&self) -> Result<(), String> {
        let mut status = pg_command(&self.bin, "pg_ctl");
        status.arg("-D").arg(&self.dir).arg("status");
        if run(status).is_ok() {
            return Ok(());
        }
        let mut c = pg_command(&self.bin, "pg_ctl");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.display()
        );
        c.arg("-D")
            .arg(&self.dir)
            .args(["-o", &opts, "-l"])
            .arg(self.dir.join("server.log"))
            .args(["-w", "start"]);
        run(c)
    }

    /// Stops the server (fast shutdown: open connections are cut).
    pub fn stop(&self) -> Result<(), String> {
        let mut c = pg_command(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(&self.dir)
            .args(["-m", "fast", "-w", "stop"]);
        run(c)
    }

    /// A URL for database `db` of this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_swapped_in_urls() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
