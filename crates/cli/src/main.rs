//! The `aruntime` command: the server (`serve`), the client commands people
//! and scripts use (`task`, `board`, `plan`, `events`, ...), the worker
//! wrapper (`worker -- CMD`, `checkpoint`) and the MCP sidecar (`mcp`).
//!
//! Client commands talk to `ARUNTIME_URL` with `ARUNTIME_TOKEN`, or to a
//! local server with its `<data-dir>/admin.token`. Every read command takes
//! `--json`. Errors print the server's code and message and exit 1; a lost
//! lease exits 4, so a script inside `aruntime worker` can stop on it.

mod board;
mod checkpoint;
mod connect;
mod output;
mod plan;
mod serve;
mod tasks;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aruntime_api::BoardQuery;
use aruntime_client::ClientError;
use clap::{Parser, Subcommand};

use crate::connect::Conn;

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

/// Output options shared by client commands.
#[derive(clap::Args, Debug, Clone, Copy)]
struct Out {
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Create, list, show and steer tasks.
    Task {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        out: Out,
        #[command(subcommand)]
        cmd: tasks::TaskCmd,
    },
    /// The board: columns, counts and cards.
    Board {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        out: Out,
        /// Redraw every `--interval` seconds until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Seconds between redraws with `--watch`.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
        /// Show the cancelled column too.
        #[arg(long)]
        all: bool,
        /// Cards per column.
        #[arg(long)]
        cards: Option<u32>,
    },
    /// Import a goal and its subtasks from a TOML, YAML or markdown file.
    Plan {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        out: Out,
        #[command(subcommand)]
        cmd: PlanCmd,
    },
    /// Record decisions that a task and its subtasks inherit.
    Decision {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        out: Out,
        #[command(subcommand)]
        cmd: tasks::DecisionCmd,
    },
    /// The tenant's event log.
    Events {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        out: Out,
        #[command(flatten)]
        args: tasks::EventsArgs,
    },
    /// Manage tenants.
    Tenant {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        out: Out,
        #[command(subcommand)]
        cmd: tasks::TenantCmd,
    },
    /// Manage API tokens.
    Token {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        out: Out,
        #[command(subcommand)]
        cmd: tasks::TokenCmd,
    },
    /// Print a task's context bundle (the resume packet).
    Context {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: tasks::ContextArgs,
    },
    /// Lease tasks and run a command for each: `aruntime worker -- CMD ARGS`.
    Worker {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        args: worker::WorkerArgs,
    },
    /// Record a checkpoint from inside `aruntime worker -- CMD`.
    Checkpoint {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        out: Out,
        #[command(flatten)]
        args: checkpoint::CheckpointArgs,
    },
    /// Measure throughput, latency, recovery and scale against baselines.
    Bench(Box<aruntime_bench::BenchArgs>),
    /// Serve MCP over stdio as an agent's sidecar, holding its lease.
    Mcp {
        #[command(flatten)]
        conn: Conn,
        /// Name shown on the board; default `mcp-PID`.
        #[arg(long, env = "ARUNTIME_WORKER")]
        worker: Option<String>,
        /// Labels the agent can handle, comma-separated.
        #[arg(long, default_value = "")]
        capabilities: String,
    },
}

#[derive(Subcommand, Debug)]
enum PlanCmd {
    /// Create the plan's goal and tasks; importing again creates only new ones.
    Import {
        /// A .toml, .yaml/.yml or .md file.
        file: PathBuf,
        /// The plan's identity across imports; default the file's name.
        #[arg(long)]
        key: Option<String>,
    },
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
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("aruntime: error: {e:#}");
            let lost = e
                .downcast_ref::<ClientError>()
                .is_some_and(|c| matches!(c, ClientError::LeaseLost { .. }));
            ExitCode::from(if lost { 4 } else { 1 })
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Serve(a) => serve::run(a).await?,
        Command::Bench(a) => {
            aruntime_bench::run(*a).await?;
        }
        Command::Task { conn, out, cmd } => tasks::task(&conn.client()?, cmd, out.json).await?,
        Command::Board {
            conn,
            out,
            watch,
            interval,
            all,
            cards,
        } => {
            let q = BoardQuery {
                include_cancelled: all,
                cards,
            };
            let every = watch.then(|| Duration::from_secs_f64(interval.clamp(0.2, 3600.0)));
            board::run(&conn.client()?, &q, out.json, every).await?;
        }
        Command::Plan { conn, out, cmd } => {
            let PlanCmd::Import { file, key } = cmd;
            plan::import(&conn.client()?, &file, key, out.json).await?;
        }
        Command::Decision { conn, out, cmd } => {
            tasks::decision(&conn.client()?, cmd, out.json).await?
        }
        Command::Events { conn, out, args } => {
            tasks::events(&conn.client()?, args, out.json).await?
        }
        Command::Tenant { conn, out, cmd } => tasks::tenant(&conn.client()?, cmd, out.json).await?,
        Command::Token { conn, out, cmd } => tasks::token(&conn.client()?, cmd, out.json).await?,
        Command::Context { conn, args } => tasks::context(&conn.client()?, args).await?,
        Command::Worker { conn, args } => {
            let code = worker::run(conn.client()?, args).await?;
            return Ok(u8::try_from(code).unwrap_or(1));
        }
        Command::Checkpoint { conn, out, args } => {
            checkpoint::run(&conn.client()?, args, out.json).await?
        }
        Command::Mcp {
            conn,
            worker,
            capabilities,
        } => {
            // stdout is the protocol: warnings (failed heartbeats) go to
            // stderr, without colours, which agents often show verbatim.
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .init();
            let worker = worker.unwrap_or_else(|| format!("mcp-{}", std::process::id()));
            let caps = tasks::split_list(&capabilities);
            aruntime_mcp::serve_stdio(conn.client()?, worker, caps).await?;
        }
    }
    Ok(0)
}
