//! `aruntime worker -- CMD ARGS`: makes any command-line agent durable.
//!
//! For each leased task it writes the context bundle to files, runs CMD
//! with the lease in its environment, heartbeats while CMD runs, and maps
//! CMD's exit to complete (0), block (`--block-exit-code`, default 3) or a
//! retryable failure (anything else, with the tail of CMD's output as the
//! attempt's notes). A lost lease stops CMD; Ctrl-C (or SIGTERM) stops it
//! and releases the task with a note instead of leaving it to expire.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use aruntime_api::ClaimRequest;
use aruntime_client::{Client, ClientError, LeaseHandle};
use aruntime_core::context::Format;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::tasks::split_list;

/// How long CMD may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How much of CMD's output is kept for the attempt's notes.
const TAIL_BYTES: usize = 4000;
/// How long one claim long-polls.
const POLL_MS: u64 = 30_000;

/// `aruntime worker` arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct WorkerArgs {
    /// Name shown on the board and in attempts; default HOST-PID.
    #[arg(long, env = "ARUNTIME_WORKER")]
    name: Option<String>,
    /// Labels this worker can handle, comma-separated.
    #[arg(long, default_value = "")]
    capabilities: String,
    /// Stop after this many tasks.
    #[arg(long)]
    max_tasks: Option<u64>,
    /// Work one task, then exit (`--max-tasks 1`).
    #[arg(long)]
    once: bool,
    /// Exit after this many seconds without a task; default: keep waiting.
    #[arg(long)]
    idle_exit: Option<u64>,
    /// CMD exits with this code to block the task for a person.
    #[arg(long, default_value_t = 3)]
    block_exit_code: i32,
    /// Lease time-to-live in seconds; default: each task's own.
    #[arg(long)]
    ttl: Option<u32>,
    /// Size limit of the markdown context file.
    #[arg(long, default_value_t = 64 * 1024)]
    context_bytes: u64,
    /// Where per-task files go; default a temporary directory.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Keep each task's files after it ends.
    #[arg(long)]
    keep_files: bool,
    /// The command to run for each task, after `--`.
    #[arg(last = true, required = true)]
    cmd: Vec<String>,
}

/// How one task ended for this worker.
enum Outcome {
    Finished(&'static str),
    Lost,
    Interrupted,
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".into())
}

/// Set to true on the first Ctrl-C or SIGTERM.
fn stop_signal() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// Runs the worker loop; returns the process's exit code.
pub(crate) async fn run(client: Client, a: WorkerArgs) -> anyhow::Result<i32> {
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let max = if a.once { Some(1) } else { a.max_tasks };
    let workdir = match &a.workdir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("aruntime-worker-{}", std::process::id())),
    };
    let mut stop = stop_signal()?;
    let mut req = ClaimRequest {
        worker: name.clone(),
        capabilities: split_list(&a.capabilities),
        max: 1,
        wait_ms: POLL_MS,
        ttl_s: a.ttl,
    };
    eprintln!(
        "aruntime worker {name}: waiting for tasks at {}",
        client.url()
    );
    let mut done = 0u64;
    let mut idle_since = Instant::now();
    let mut retry = Duration::from_millis(250);
    while max.is_none_or(|m| done < m) {
        // Long-poll no longer than the idle limit has left, so it is kept.
        req.wait_ms = a.idle_exit.map_or(POLL_MS, |s| {
            let left = Duration::from_secs(s).saturating_sub(idle_since.elapsed());
            u64::try_from(left.as_millis())
                .unwrap_or(POLL_MS)
                .min(POLL_MS)
        });
        let claimed = tokio::select! {
            r = client.claim(&req) => r,
            _ = stop.changed() => return Ok(130),
        };
        let lease = match claimed {
            Ok(mut v) if !v.is_empty() => {
                retry = Duration::from_millis(250);
                v.swap_remove(0)
            }
            Ok(_) => {
                if a.idle_exit
                    .is_some_and(|s| idle_since.elapsed() >= Duration::from_secs(s))
                {
                    eprintln!("aruntime worker {name}: idle; exiting");
                    break;
                }
                continue;
            }
            Err(e) if e.is_transient() => {
                eprintln!("aruntime worker {name}: {e}; retrying in {retry:?}");
                tokio::select! {
                    _ = tokio::time::sleep(retry) => {}
                    _ = stop.changed() => return Ok(130),
                }
                retry = (retry * 2).min(Duration::from_secs(10));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let outcome = work(&client, &a, &workdir, &lease, &mut stop).await?;
        done += 1;
        idle_since = Instant::now();
        match outcome {
            Outcome::Finished(how) => {
                eprintln!("aruntime worker {name}: task {} {how}", lease.task_id())
            }
            Outcome::Lost => {}
            Outcome::Interrupted => return Ok(130),
        }
    }
    Ok(0)
}

/// Stops CMD's whole process group: SIGTERM, up to `grace` to exit, then
/// SIGKILL for whatever is left (children that ignore SIGTERM included).
/// Ctrl-C in a terminal reaches only the worker's own group, so this is
/// also how CMD hears about it.
async fn stop_group(child: &mut tokio::process::Child, grace: Duration) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    let group = Pid::from_raw(pid);
    if !grace.is_zero() {
        let _ = killpg(group, Signal::SIGTERM);
        let _ = tokio::time::timeout(grace, child.wait()).await;
    }
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait().await;
}

/// Keeps the last [`TAIL_BYTES`] of what CMD printed, and passes it on.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    tail: Arc<Mutex<VecDeque<u8>>>,
) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let _ = to.write_all(&buf[..n]).await;
        let _ = to.flush().await;
        if let Ok(mut t) = tail.lock() {
            t.extend(&buf[..n]);
            let extra = t.len().saturating_sub(TAIL_BYTES);
            t.drain(..extra);
        }
    }
}

async fn write_context(
    client: &Client,
    lease: &LeaseHandle,
    dir: &Path,
    max: u64,
) -> anyhow::Result<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating {}", dir.display()))?;
    let id = lease.task_id();
    // When even the essentials do not fit, a whole bundle beats none.
    let md = match client.context(id, Format::Markdown, Some(max)).await {
        Err(ClientError::Api { code, .. }) if code == "context_too_large" => {
            client.context(id, Format::Markdown, None).await?
        }
        r => r?,
    };
    tokio::fs::write(dir.join("context.md"), md).await?;
    let json = serde_json::to_vec_pretty(lease.context())?;
    tokio::fs::write(dir.join("context.json"), json).await?;
    Ok(())
}

/// The result CMD left in its result file: JSON, or text wrapped in JSON.
fn read_result(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|_| json!({ "text": text.trim() })))
}

async fn work(
    client: &Client,
    a: &WorkerArgs,
    workdir: &Path,
    lease: &LeaseHandle,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<Outcome> {
    let id = lease.task_id();
    eprintln!(
        "aruntime worker: leased \"{}\" (task {id}, attempt {})",
        lease.task().title,
        lease.attempt()
    );
    let dir = workdir.join(format!("{id}-{}", lease.attempt()));
    if let Err(e) = write_context(client, lease, &dir, a.context_bytes).await {
        // Without its context CMD cannot resume; hand the task back.
        let note = format!("the worker could not prepare the context: {e:#}");
        let _ = lease.release(Some(note)).await;
        return Err(e);
    }
    let result_path = dir.join("result.json");
    let program = a.cmd.first().context("no command given after `--`")?;
    let spawned = Command::new(program)
        .args(&a.cmd[1..])
        .env("ARUNTIME_TASK_ID", id.to_string())
        .env("ARUNTIME_LEASE", lease.token())
        .env("ARUNTIME_ATTEMPT", lease.attempt().to_string())
        .env("ARUNTIME_CONTEXT", dir.join("context.md"))
        .env("ARUNTIME_CONTEXT_JSON", dir.join("context.json"))
        .env("ARUNTIME_RESULT", &result_path)
        .env("ARUNTIME_URL", client.url())
        .env("ARUNTIME_TOKEN", client.token())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so stopping CMD stops everything it
        // started (an agent's tools, a script's children) too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("cannot start `{program}`: {e}");
            lease.fail(msg.clone(), false, None).await?;
            anyhow::bail!(msg);
        }
    };
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let mut pumps = vec![];
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(out, tokio::io::stdout(), tail.clone())));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(err, tokio::io::stderr(), tail.clone())));
    }
    let status = tokio::select! {
        s = child.wait() => Some(s.context("waiting for CMD")?),
        reason = lease.lost() => {
            // The task is someone else's now: no grace period.
            stop_group(&mut child, Duration::ZERO).await;
            eprintln!("aruntime worker: lease on task {id} lost ({reason}); stopped CMD");
            return Ok(Outcome::Lost);
        }
        _ = stop.changed() => {
            stop_group(&mut child, STOP_GRACE).await;
            None
        }
    };
    if status.is_some() {
        // The task's processes end with the task: nothing CMD left behind
        // keeps working on it.
        if let Some(pid) = pid {
            let group = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
    // A grandchild may hold the pipes open; do not wait for it forever.
    for p in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
    }
    let tail = tail
        .lock()
        .map(|t| String::from_utf8_lossy(&Vec::from(t.clone())).into_owned())
        .unwrap_or_default();
    let notes = |what: &str| {
        if tail.trim().is_empty() {
            what.to_owned()
        } else {
            format!("{what}\n\nlast output:\n{}", tail.trim_end())
        }
    };
    let finished = match status {
        None => {
            lease
                .release(Some(notes(
                    "the worker was interrupted (Ctrl-C or SIGTERM) and released the task",
                )))
                .await?;
            eprintln!("aruntime worker: interrupted; released task {id}");
            return Ok(Outcome::Interrupted);
        }
        Some(s) if s.success() => {
            let result = read_result(&result_path)
                .unwrap_or_else(|| json!({ "exit_code": 0, "output_tail": tail }));
            lease.complete(result).await.map(|_| "completed")
        }
        Some(s) if s.code() == Some(a.block_exit_code) => {
            let reason = read_result(&result_path)
                .map(|v| {
                    v.get("text")
                        .and_then(Value::as_str)
                        .map_or_else(|| v.to_string(), str::to_owned)
                })
                .unwrap_or_else(|| {
                    notes(&format!(
                        "`{program}` exited with code {}",
                        a.block_exit_code
                    ))
                });
            lease.block(reason).await.map(|_| "blocked")
        }
        Some(s) => {
            let error = match s.code() {
                Some(c) => format!("`{program}` exited with code {c}"),
                None => format!("`{program}` was killed by a signal"),
            };
            let tail =
                (!tail.trim().is_empty()).then(|| format!("last output:\n{}", tail.trim_end()));
            lease.fail(error, true, tail).await.map(|_| "failed")
        }
    };
    if !a.keep_files {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    match finished {
        Ok(how) => Ok(Outcome::Finished(how)),
        Err(ClientError::LeaseLost { message }) => {
            eprintln!(
                "aruntime worker: lease on task {id} lost before it could be finished: {message}"
            );
            Ok(Outcome::Lost)
        }
        Err(e) => Err(e.into()),
    }
}
