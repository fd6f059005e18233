//! The `aruntime` command.
//!
//! `aruntime serve` runs the server: flags first, then `ARUNTIME_*`
//! environment variables, then defaults that work on a laptop
//! (`127.0.0.1:8770`, `./.aruntime`, embedded SQLite).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use aruntime_core::SystemClock;
use aruntime_server::{ServeConfig, Server, shutdown_signal};
use aruntime_store::sqlite::Durability;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "aruntime",
    version,
    about = "A durable runtime for long-running AI-agent work"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
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
    /// Log filter, e.g. `info` or `aruntime_server=debug`.
    #[arg(long, env = "ARUNTIME_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aruntime: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aruntime: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(a) => serve(a).await,
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
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
    // Printed on stdout, alone on its line, so scripts can read the port.
    println!("aruntime listening on http://{}", server.addr);
    server.run(shutdown_signal()).await?;
    eprintln!("aruntime: stopped");
    Ok(())
}
