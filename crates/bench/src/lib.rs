//! `aruntime bench`: throughput, latency, recovery and scale workloads, on
//! the embedded store, a loopback server on SQLite, and PostgreSQL with one
//! and two nodes. Beside each target it measures a baseline on the same
//! database and durability settings — the raw rate of single-row insert
//! transactions on one connection — and prints every throughput as a ratio
//! to it, plus the server's RSS after each workload. Nothing here asserts a
//! figure: numbers drift from run to run and machine to machine; ratios
//! measured in the same run are what to compare.

mod cpu;
mod driver;
mod plot;
mod progress;
mod stats;
mod target;
mod workloads;

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

pub use cpu::CpuUse;
pub use plot::Point;
pub use stats::Latency;
use target::Target;
pub use target::TargetKind;
pub use workloads::Ack;
pub use workloads::{HttpFloor, Measured, Named};
use workloads::{Load, Work, human};

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Create, lease in batches, complete.
    Cycle,
    /// Lease, three checkpoints (1 KB state, a 64 KB artifact), complete.
    Checkpointed,
    /// One idle long-polling worker; create→lease latency.
    Latency,
    /// A worker dies holding a task; time until another holds it.
    Recovery,
    /// Claim latency with 10k and with 1M tasks in the store.
    Scale,
    /// One completion releasing 1,000 dependents.
    Fanout,
}

/// `aruntime bench` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Targets to run, comma-separated; default embedded,sqlite, plus
    /// pg1,pg2 when a PostgreSQL URL is given.
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<TargetKind>,
    /// Workloads to run, comma-separated; default all.
    #[arg(long, value_delimiter = ',')]
    pub workload: Vec<Workload>,
    /// Tasks per throughput run.
    #[arg(long, default_value_t = 20_000)]
    pub tasks: u64,
    /// Concurrent workers in throughput runs.
    #[arg(long, default_value_t = 16)]
    pub workers: u32,
    /// Leases per claim in throughput runs.
    #[arg(long, default_value_t = 32)]
    pub batch: u32,
    /// Concurrent producers in throughput runs, each creating one task at a
    /// time (one request per task, no batching), as many clients would.
    #[arg(long, default_value_t = 64)]
    pub producers: u32,
    /// How workers acknowledge what a claim gave them in throughput runs.
    #[arg(long, value_enum, default_value_t = Ack::Batch)]
    pub ack: Ack,
    /// Samples for `latency`.
    #[arg(long, default_value_t = 300)]
    pub samples: u32,
    /// Tasks in the store for the large `scale` measurement.
    #[arg(long, default_value_t = 1_000_000)]
    pub scale_max: u64,
    /// PostgreSQL server to create throwaway databases on.
    #[arg(long, env = "ARUNTIME_BENCH_PG_URL")]
    pub pg_url: Option<String>,
    /// Where data directories go (on the file system being measured).
    #[arg(long, default_value = "./.aruntime-bench")]
    pub dir: PathBuf,
    /// Seconds spent measuring each baseline.
    #[arg(long, default_value_t = 3.0)]
    pub baseline_secs: f64,
    /// Seconds spent measuring each HTTP target's floor (empty requests);
    /// 0 skips it. Its default is `--baseline-secs`.
    #[arg(long)]
    pub floor_secs: Option<f64>,
    /// Also sweep workers × batch size for `cycle` on the first target and
    /// draw tasks/s against them into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// One workload's result on one target.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// What it measured.
    #[serde(flatten)]
    pub measured: Measured,
    /// `tasks_per_s` divided by the baseline.
    pub ratio_to_baseline: Option<f64>,
    /// Tasks per second the target's HTTP floor allows at this workload's
    /// requests per task: the floor's requests/s divided by them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_floor_tasks_per_s: Option<f64>,
    /// Server RSS after the workload, MiB.
    pub rss_mib: f64,
}

/// Everything measured on one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The target.
    pub target: TargetKind,
    /// In words.
    pub description: &'static str,
    /// Single-row insert commits per second, one connection.
    pub baseline_commits_per_s: f64,
    /// Empty HTTP requests per second (targets over HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_floor: Option<HttpFloor>,
    /// The workloads.
    pub rows: Vec<Row>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command's parameters.
    pub tasks: u64,
    /// Workers per throughput run.
    pub workers: u32,
    /// Batch size per claim.
    pub batch: u32,
    /// Concurrent producers creating tasks.
    pub producers: u32,
    /// How workers acknowledge a claim's tasks.
    pub ack: Ack,
    /// Per target.
    pub targets: Vec<TargetReport>,
    /// The sweep, when `--plot` was given.
    pub sweep: Vec<plot::Point>,
}

fn load(a: &BenchArgs, tasks: u64, work: Work) -> Load {
    Load {
        tasks,
        producers: a.producers,
        workers: a.workers,
        batch: a.batch,
        work,
        ack: a.ack,
    }
}

async fn run_workload(t: &Target, w: Workload, a: &BenchArgs, quiet: bool) -> Result<Measured> {
    let api = t.api.clone();
    match w {
        Workload::Cycle => {
            workloads::throughput(api, load(a, a.tasks, Work::Plain), &t.pids(), quiet).await
        }
        Workload::Checkpointed => {
            // Each task moves 67 KB and four more writes: a tenth as many.
            let n = (a.tasks / 10).max(100);
            workloads::throughput(api, load(a, n, Work::Checkpointed), &t.pids(), quiet).await
        }
        Workload::Latency => workloads::latency(api, a.samples, quiet).await,
        Workload::Recovery => workloads::recovery(api, 5, quiet).await,
        Workload::Scale => {
            let small = 10_000.min(a.scale_max);
            let other = Target::start(t.kind, &a.dir, a.pg_url.as_deref())
                .await
                .context("starting the small store for scale")?;
            let m = workloads::scale(t, &other, small, a.scale_max.max(small), quiet).await;
            other.stop().await?;
            m
        }
        Workload::Fanout => workloads::fanout(api, 1_000, quiet).await,
    }
}

fn print_target(r: &TargetReport) {
    println!(
        "\n{} — {}",
        format!("{:?}", r.target).to_lowercase(),
        r.description
    );
    println!(
        "baseline: {:.0} single-row commits/s (one connection, same database and durability)",
        r.baseline_commits_per_s
    );
    if let Some(f) = &r.http_floor {
        let cpu = f.cpu.as_ref().map_or_else(String::new, |c| {
            format!(
                ", CPU {:.0} µs each (server {:.0}, bench clients {:.0})",
                c.machine_us_per_task, c.server_us_per_task, c.bench_us_per_task
            )
        });
        println!(
            "HTTP floor: {:.0} empty requests/s ({} clients, GET /healthz){cpu}",
            f.requests_per_s, f.clients
        );
    }
    println!(
        "  {:<13} {:>12} {:>8}   {:<44} {:>8}",
        "WORKLOAD", "TASKS/S", "×BASE", "LATENCY p50 / p99 (ms)", "RSS MiB"
    );
    for row in &r.rows {
        let tput = row
            .measured
            .tasks_per_s
            .map_or_else(|| "-".into(), |v| format!("{v:.0}"));
        let ratio = row
            .ratio_to_baseline
            .map_or_else(|| "-".into(), |v| format!("{v:.2}×"));
        let lats: Vec<String> = row
            .measured
            .latencies
            .iter()
            .map(|n| {
                format!(
                    "{} {:.2} / {:.2}",
                    n.name, n.latency.p50_ms, n.latency.p99_ms
                )
            })
            .collect();
        let name = format!("{:?}", row.workload).to_lowercase();
        println!(
            "  {:<13} {:>12} {:>8}   {:<44} {:>8.1}",
            name,
            tput,
            ratio,
            lats.join(", "),
            row.rss_mib
        );
        let mut cpu = row.measured.cpu.as_ref().map(cpu_notes).unwrap_or_default();
        if let (Some(per), Some(allowed)) =
            (row.measured.requests_per_task, row.http_floor_tasks_per_s)
        {
            cpu.push(format!(
                "{per:.2} HTTP requests per task; at the HTTP floor's rate they alone would allow {allowed:.0} tasks/s"
            ));
        }
        for note in row.measured.notes.iter().chain(&cpu) {
            println!("  {:<13} {:>12} {:>8}   {note}", "", "", "");
        }
    }
}

/// CPU per task in words: what each side took, how busy the cores were,
/// and the most the machine could do at that cost; then the writer
/// thread's share, if it was seen.
fn cpu_notes(c: &CpuUse) -> Vec<String> {
    let sides = if c.bench_us_per_task > 0.0 {
        format!(
            "server {:.0}, bench clients {:.0}, rest {:.0}",
            c.server_us_per_task,
            c.bench_us_per_task,
            (c.machine_us_per_task - c.server_us_per_task - c.bench_us_per_task).max(0.0)
        )
    } else {
        format!(
            "this process {:.0}, rest {:.0}",
            c.server_us_per_task,
            (c.machine_us_per_task - c.server_us_per_task).max(0.0)
        )
    };
    let mut notes = vec![format!(
        "CPU {:.0} µs per task ({sides}); {} cores {:.0} % busy; at this cost the cores allow {:.0} tasks/s",
        c.machine_us_per_task,
        c.cores,
        c.busy_share * 100.0,
        c.cpu_bound_tasks_per_s
    )];
    if c.writer_us_per_task > 0.0 {
        notes.push(format!(
            "of which the writer thread {:.0} µs per task, {:.0} % of one core; at this cost it allows {:.0} tasks/s",
            c.writer_us_per_task,
            c.writer_busy_share * 100.0,
            1e6 / c.writer_us_per_task
        ));
    }
    notes
}

/// Runs the benchmark and prints the report.
pub async fn run(mut a: BenchArgs) -> Result<Report> {
    if a.target.is_empty() {
        a.target = vec![TargetKind::Embedded, TargetKind::Sqlite];
        if a.pg_url.is_some() {
            a.target.extend([TargetKind::Pg1, TargetKind::Pg2]);
        }
    }
    if a.workload.is_empty() {
        a.workload = vec![
            Workload::Cycle,
            Workload::Checkpointed,
            Workload::Latency,
            Workload::Recovery,
            Workload::Scale,
            Workload::Fanout,
        ];
    }
    for &t in &a.target {
        Target::check(t, a.pg_url.as_deref())?;
    }
    if let Some(url) = a
        .pg_url
        .as_deref()
        .filter(|_| a.target.iter().any(|t| t.is_pg()))
    {
        for name in target::drop_orphaned_databases(url).await? {
            eprintln!("dropped database {name}, left behind by a bench that was killed");
        }
    }
    let quiet = false;
    let mut report = Report {
        tasks: a.tasks,
        workers: a.workers,
        batch: a.batch,
        producers: a.producers,
        ack: a.ack,
        targets: vec![],
        sweep: vec![],
    };
    for &kind in &a.target {
        eprintln!("\n== {} ==", kind.describe());
        let t = Target::start(kind, &a.dir, a.pg_url.as_deref())
            .await
            .with_context(|| format!("starting target {kind:?}"))?;
        eprintln!(
            "  baseline: single-row commits for {:.0} s",
            a.baseline_secs
        );
        let baseline = t.baseline(a.baseline_secs).await?;
        let floor_secs = a.floor_secs.unwrap_or(a.baseline_secs);
        let floor = if kind == TargetKind::Embedded || floor_secs <= 0.0 {
            None
        } else {
            eprintln!(
                "  HTTP floor: {} clients sending empty requests for {floor_secs:.0} s",
                a.producers
            );
            Some(workloads::http_floor(t.api.clone(), a.producers, floor_secs, &t.pids()).await?)
        };
        let mut tr = TargetReport {
            target: kind,
            description: kind.describe(),
            baseline_commits_per_s: baseline,
            http_floor: floor,
            rows: vec![],
        };
        for &w in &a.workload {
            eprintln!("  {w:?}");
            let measured = run_workload(&t, w, &a, quiet)
                .await
                .with_context(|| format!("{w:?} on {kind:?}"))?;
            let floor_rate = tr.http_floor.as_ref().map(|f| f.requests_per_s);
            tr.rows.push(Row {
                workload: w,
                ratio_to_baseline: measured.tasks_per_s.map(|v| v / baseline),
                http_floor_tasks_per_s: floor_rate
                    .zip(measured.requests_per_task)
                    .map(|(rate, per)| rate / per),
                measured,
                rss_mib: t.rss_mib(),
            });
        }
        if !a.json {
            print_target(&tr);
        }
        if let (Some(path), true) = (&a.plot, report.targets.is_empty()) {
            // A fresh target, so earlier workloads do not weigh on the sweep.
            t.stop().await?;
            let t = Target::start(kind, &a.dir, a.pg_url.as_deref()).await?;
            let n = (a.tasks / 4).max(1_000);
            for workers in [1, 2, 4, 8, 16, 32] {
                for batch in [1, 8, 32] {
                    eprintln!("  sweep: {workers} workers × batch {batch}");
                    let shape = Load {
                        workers,
                        batch,
                        ..load(&a, n, Work::Plain)
                    };
                    let m = workloads::throughput(t.api.clone(), shape, &t.pids(), quiet).await?;
                    report.sweep.push(plot::Point {
                        workers,
                        batch,
                        tasks_per_s: m.tasks_per_s.unwrap_or(0.0),
                    });
                }
            }
            let title = format!(
                "cycle on {} ({} tasks per point)",
                kind.describe(),
                human(n)
            );
            std::fs::write(path, plot::svg(&title, &report.sweep, baseline))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("  wrote {}", path.display());
            t.stop().await?;
        } else {
            t.stop().await?;
        }
        report.targets.push(tr);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(report)
}
