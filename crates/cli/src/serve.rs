//! `aruntime serve`: flags first, then `ARUNTIME_*` environment variables,
//! then defaults that work on a laptop (`127.0.0.1:8770`, `./.aruntime`,
//! embedded SQLite).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use aruntime_core::SystemClock;
use aruntime_server::{ServeConfig, Server, shutdown_signal};
use aruntime_store::sqlite::Durability;

/// `aruntime serve` arguments.
#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on; port 0 picks a free one and prints it.
    #[arg(long, env = "ARUNTIME_LISTEN", default_value = "127.0.0.1:8770")]
    listen: SocketAddr,
    /// Directory for the database, blobs and the admin token.
    #[arg(long, env = "ARUNTIME_DATA_DIR", default_value = "./.aruntime")]
    data_dir: PathBuf,
    /// Database: omit for SQLite in the data directory, or `sqlite://DIR`.
    #[arg(long, env = "ARUNTIME_DATABASE")]
    database: Option<String>,
    /// SQLite flush policy: `full` (survives power loss) or `normal`
    /// (survives a crash of the process; faster).
    #[arg(long, env = "ARUNTIME_SQLITE_SYNC", default_value = "full")]
    sqlite_sync: Durability,
    /// `Host` names `/mcp` accepts besides localhost, 127.0.0.1 and ::1
    /// (a DNS-rebinding guard), comma-separated.
    #[arg(long, env = "ARUNTIME_MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    mcp_allowed_hosts: Vec<String>,
    /// Log filter, e.g. `info` or `aruntime_server=debug`.
    #[arg(long, env = "ARUNTIME_LOG", default_value = "info")]
    log: String,
    /// Stop (as on SIGTERM) when standard input reaches end-of-file. A
    /// supervisor that holds the other end of a pipe then takes the server
    /// down with it even when it is killed outright, which no signal
    /// handler of its own can do; `aruntime bench` starts its servers so.
    #[arg(long)]
    exit_on_stdin_close: bool,
}

pub(crate) async fn run(a: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&a.log).context("--log")?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cfg = ServeConfig {
        listen: a.listen,
        data_dir: a.data_dir,
        database: a.database,
        durability: a.sqlite_sync,
        mcp_allowed_hosts: a.mcp_allowed_hosts,
    };
    let server = Server::bind(&cfg, Arc::new(SystemClock))
        .await
        .with_context(|| {
            format!(
                "starting on {} with data in {}",
                cfg.listen,
                cfg.data_dir.display()
            )
        })?;
    if let Some(path) = &server.admin_token_file {
        eprintln!(
            "aruntime: first start: created tenant `default`; admin token in {}",
            path.display()
        );
    }
    let stdin_closed = a
        .exit_on_stdin_close
        .then(stdin_closed)
        .transpose()
        .context("watching standard input (--exit-on-stdin-close)")?;
    // Printed on stdout, alone on its line, so scripts can read the port.
    println!("aruntime listening on http://{}", server.addr);
    server
        .run(async move {
            match stdin_closed {
                None => shutdown_signal().await,
                Some(closed) => tokio::select! {
                    () = shutdown_signal() => {}
                    _ = closed => say(aruntime_server::STOP_LINES[0]),
                },
            }
        })
        .await?;
    say(aruntime_server::STOP_LINES[1]);
    Ok(())
}

/// Writes a line about the server's life on stderr, ignoring a failure:
/// `eprintln!` panics when stderr is gone (a parent that read it was
/// killed), and a server that is stopping must not panic over a message.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Resolves when standard input reaches end-of-file (or fails to read).
///
/// Read on a plain thread, not tokio's `stdin`: that one reads on a
/// blocking task, which the runtime waits for at exit, so a server stopped
/// by a signal while its input is still open would never exit.
fn stdin_closed() -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("aruntime-stdin".into())
        .spawn(move || {
            let mut sink = [0u8; 512];
            let mut stdin = std::io::stdin().lock();
            while let Ok(1..) = std::io::Read::read(&mut stdin, &mut sink) {}
            let _ = tx.send(());
        })?;
    Ok(rx)
}
