//! The six workloads. Each returns what it measured; none asserts anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use aruntime_api::NewTask;
use aruntime_core::Artifact;
use futures::future::try_join_all;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex;

use crate::cpu::{self, CpuUse};
use crate::driver::{Api, Lease};
use crate::progress::Progress;
use crate::stats::Latency;
use crate::target::Target;

/// One named latency.
#[derive(Debug, Clone, Serialize)]
pub struct Named {
    /// What was timed.
    pub name: String,
    /// Its percentiles.
    #[serde(flatten)]
    pub latency: Latency,
}

/// What a workload measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Measured {
    /// Tasks per second, for throughput workloads.
    pub tasks_per_s: Option<f64>,
    /// Latencies.
    pub latencies: Vec<Named>,
    /// Other figures, in words.
    pub notes: Vec<String>,
    /// CPU time per task, for throughput workloads on Linux.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUse>,
    /// HTTP requests the clients sent per task, for throughput workloads
    /// over HTTP: creates, claims (empty ones too) and acknowledgements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_task: Option<f64>,
}

/// What the HTTP stack alone allows on this machine: concurrent clients
/// sending `GET /healthz`, which reads nothing, as fast as it answers.
///
/// Why: once group commit has taken the flushes out of the way, `cycle`
/// is bound by CPU, and over loopback a third or more of that CPU is the
/// exchange itself (both processes' HTTP code and the kernel's TCP), paid
/// once per create however little the store does. Measured beside the
/// commit baseline, the floor says how far a throughput ratio could go on
/// these cores with one request per task (performance.md, finding 72).
#[derive(Debug, Clone, Serialize)]
pub struct HttpFloor {
    /// Concurrent clients, each with one request in flight.
    pub clients: u32,
    /// Requests answered per second.
    pub requests_per_s: f64,
    /// CPU per request (`*_per_task` read "per request" here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUse>,
}

/// Sends empty requests from `clients` concurrent clients for `secs`.
/// Only for targets over HTTP.
pub(crate) async fn http_floor(
    api: Arc<dyn Api>,
    clients: u32,
    secs: f64,
    servers: &[u32],
) -> Result<HttpFloor> {
    // Opens a connection before the clock starts.
    api.empty_request().await?;
    let clients = clients.max(1);
    let answered = Arc::new(AtomicU64::new(0));
    let cpu_start = cpu::mark(servers);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let handles = (0..clients).map(|_| {
        let (api, answered) = (api.clone(), answered.clone());
        tokio::spawn(async move {
            while Instant::now() < deadline {
                api.empty_request().await?;
                answered.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    });
    for h in try_join_all(handles).await? {
        h?;
    }
    let (elapsed, cpu_end) = (start.elapsed(), cpu::mark(servers));
    let n = answered.load(Ordering::Relaxed);
    Ok(HttpFloor {
        clients,
        requests_per_s: n as f64 / elapsed.as_secs_f64(),
        cpu: cpu_start
            .zip(cpu_end)
            .map(|(a, b)| a.until(&b, elapsed.as_secs_f64(), n, false)),
    })
}

fn named(name: &str, samples: &mut [Duration]) -> Named {
    Named {
        name: name.into(),
        latency: Latency::of(samples),
    }
}

/// How a worker acknowledges the tasks of one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Ack {
    /// One `POST /v1/leases/complete` for all of them, once all are worked
    /// (what a worker on the client library does).
    Batch,
    /// One `POST /v1/tasks/{id}/complete` per task, as soon as it is worked.
    Each,
}

/// How each leased task is worked in a throughput run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// Complete at once.
    Plain,
    /// Three checkpoints (1 KB state; the second with a 64 KB artifact), then complete.
    Checkpointed,
}

/// Works one leased task up to (not including) its completion.
async fn work_one(api: &dyn Api, l: &Lease, work: Work, state: &serde_json::Value) -> Result<()> {
    if work == Work::Checkpointed {
        for step in 1..=3 {
            let mut artifacts = vec![];
            if step == 2 {
                // Unique bytes per task, so content addressing cannot dedupe them away.
                let mut bytes = vec![b'a'; 64 * 1024];
                bytes[..16].copy_from_slice(l.task.as_bytes());
                let sha256 = api.blob(bytes).await?;
                artifacts.push(Artifact {
                    name: "out.log".into(),
                    sha256,
                });
            }
            api.checkpoint(l, "step", json!({"step": step, "pad": state}), artifacts)
                .await?;
        }
    }
    Ok(())
}

/// The shape of a `cycle` or `checkpointed` run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Tasks created, and completed.
    pub(crate) tasks: u64,
    /// Concurrent producers, one create request per task.
    pub(crate) producers: u32,
    /// Concurrent workers.
    pub(crate) workers: u32,
    /// Leases per claim.
    pub(crate) batch: u32,
    /// What each task costs its worker.
    pub(crate) work: Work,
    /// How its worker acknowledges a claim's tasks.
    pub(crate) ack: Ack,
}

/// `cycle` and `checkpointed`: producers create the tasks, one request
/// each, while workers lease them `batch` at a time, work them and
/// acknowledge them. Throughput is the tasks over the time from the first
/// create to the last completion.
///
/// `servers` are the server processes' ids (none when embedded), whose CPU
/// time is reported apart from the bench's own (see [`crate::cpu`]).
pub(crate) async fn throughput(
    api: Arc<dyn Api>,
    load: Load,
    servers: &[u32],
    quiet: bool,
) -> Result<Measured> {
    let Load {
        tasks: n,
        producers,
        workers,
        batch,
        work,
        ack,
    } = load;
    let producers = u64::from(producers.max(1));
    let completed = Arc::new(AtomicU64::new(0));
    let lease_lat = Arc::new(Mutex::new(Vec::new()));
    let e2e_lat = Arc::new(Mutex::new(Vec::new()));
    // When the last completion was acknowledged. Not when the workers are
    // all back: those parked in a claim when it landed wait out the
    // claim's 200 ms poll first, which the run's time must not include
    // (up to a tenth of a 30,000-task run on SQLite; performance.md,
    // finding 50).
    // With the CPU counters read at the same moment.
    let last_done = Arc::new(std::sync::OnceLock::new());
    let servers: Arc<[u32]> = servers.into();
    let cpu_start = cpu::mark(&servers);
    let sent_start = api.requests_sent();
    let start = Instant::now();
    let mut handles = vec![];
    for p in 0..producers {
        let api = api.clone();
        let count = n / producers + u64::from(p < n % producers);
        handles.push(tokio::spawn(async move {
            for i in 0..count {
                api.create(NewTask::titled(format!("bench {p}-{i}")))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    // About 1 KB of state per checkpoint.
    let state = json!("s".repeat(1000));
    for w in 0..workers {
        let (api, completed, lease_lat, e2e_lat, state, last_done, servers) = (
            api.clone(),
            completed.clone(),
            lease_lat.clone(),
            e2e_lat.clone(),
            state.clone(),
            last_done.clone(),
            servers.clone(),
        );
        handles.push(tokio::spawn(async move {
            let name = format!("bench-w{w}");
            let result = json!({"ok": true});
            while completed.load(Ordering::Relaxed) < n {
                let t0 = Instant::now();
                let leases = api.claim(&name, batch, 200, None).await?;
                if leases.is_empty() {
                    continue;
                }
                lease_lat.lock().await.push(t0.elapsed());
                let done = try_join_all(leases.iter().map(|l| {
                    let (api, state, result) = (api.clone(), &state, &result);
                    async move {
                        work_one(api.as_ref(), l, work, state).await?;
                        if ack == Ack::Each {
                            api.complete(l, result.clone()).await?;
                        }
                        anyhow::Ok(t0.elapsed())
                    }
                }))
                .await?;
                let done = if ack == Ack::Batch {
                    api.complete_many(&leases, result.clone()).await?;
                    vec![t0.elapsed(); leases.len()]
                } else {
                    done
                };
                let before = completed.fetch_add(done.len() as u64, Ordering::Relaxed);
                if before + done.len() as u64 >= n {
                    last_done.get_or_init(|| {
                        (start.elapsed(), cpu::mark(&servers), api.requests_sent())
                    });
                }
                e2e_lat.lock().await.extend(done);
            }
            anyhow::Ok(())
        }));
    }
    let mut bar = Progress::new(
        format!("{n} tasks, {workers} workers × batch {batch}"),
        n,
        quiet,
    );
    let mut all = futures::future::try_join_all(handles);
    let (elapsed, cpu_end, sent_end) = loop {
        tokio::select! {
            r = &mut all => {
                for h in r? { h?; }
                break last_done
                    .get()
                    .cloned()
                    .unwrap_or_else(|| (start.elapsed(), cpu::mark(&servers), api.requests_sent()));
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => bar.set(completed.load(Ordering::Relaxed)),
        }
    };
    bar.finish();
    let mut lease = std::mem::take(&mut *lease_lat.lock().await);
    let mut e2e = std::mem::take(&mut *e2e_lat.lock().await);
    // How full the claims came back says how much the batching saved:
    // workers that outpace the producers claim a task or two at a time.
    let claims = lease.len();
    let cpu = cpu_start
        .zip(cpu_end)
        .map(|(a, b)| a.until(&b, elapsed.as_secs_f64(), n, servers.is_empty()));
    let sent = sent_end.saturating_sub(sent_start);
    Ok(Measured {
        cpu,
        requests_per_task: (sent > 0).then(|| sent as f64 / n.max(1) as f64),
        tasks_per_s: Some(n as f64 / elapsed.as_secs_f64()),
        latencies: vec![named("lease", &mut lease), named("lease→done", &mut e2e)],
        notes: vec![format!(
            "{n} tasks in {:.2} s, {claims} claims that took tasks ({:.1} each), {}",
            elapsed.as_secs_f64(),
            n as f64 / claims.max(1) as f64,
            match ack {
                Ack::Batch => "one completion request per claim",
                Ack::Each => "one completion request per task",
            }
        )],
    })
}

/// `latency`: one idle worker long-polls; tasks are created one at a time;
/// from the start of each create to the worker holding the lease.
pub(crate) async fn latency(api: Arc<dyn Api>, samples: u32, quiet: bool) -> Result<Measured> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, uuid::Uuid)>(1);
    let worker = {
        let api = api.clone();
        tokio::spawn(async move {
            loop {
                let leases = api.claim("bench-idle", 1, 10_000, None).await?;
                for l in leases {
                    let got = Instant::now();
                    api.complete(&l, json!({})).await?;
                    if tx.send((got, l.task)).await.is_err() {
                        return anyhow::Ok(());
                    }
                }
            }
        })
    };
    let mut bar = Progress::new(
        format!("{samples} tasks, one at a time"),
        u64::from(samples),
        quiet,
    );
    let mut lat = vec![];
    for i in 0..samples {
        idle(api.as_ref()).await?;
        let t0 = Instant::now();
        let id = api.create(NewTask::titled(format!("ping {i}"))).await?;
        let Some((got, task)) = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await?
        else {
            bail!("the idle worker stopped");
        };
        if task != id {
            bail!("the idle worker leased {task}, not {id}");
        }
        lat.push(got - t0);
        bar.set(u64::from(i + 1));
    }
    bar.finish();
    // Stop the worker without abandoning a long-poll that could still
    // grab the next workload's task: it takes this last task, finds nobody
    // listening, and returns.
    drop(rx);
    api.create(NewTask::titled("stop")).await?;
    worker.await??;
    Ok(Measured {
        latencies: vec![named("create→lease", &mut lat)],
        ..Measured::default()
    })
}

/// Waits until the worker is long-polling again. Without it, each task
/// would be created while the worker was still completing the previous
/// one, and the workload would measure a busy worker's next claim, not an
/// idle worker being handed new work. Checked between samples, outside
/// the measured interval.
async fn idle(api: &dyn Api) -> Result<()> {
    let give_up = Instant::now() + Duration::from_secs(20);
    while api.waiting().await? == 0 {
        if Instant::now() > give_up {
            bail!("the idle worker never went back to waiting");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Ok(())
}

/// `recovery`: a worker takes a task with a 1 s lease and dies (never
/// heartbeats); another long-polls. From the grant to the dead worker to
/// the other holding the task.
pub(crate) async fn recovery(api: Arc<dyn Api>, rounds: u32, quiet: bool) -> Result<Measured> {
    let mut bar = Progress::new(
        format!("{rounds} dead workers, TTL 1 s"),
        u64::from(rounds),
        quiet,
    );
    let mut lat = vec![];
    for i in 0..rounds {
        let mut spec = NewTask::titled(format!("recover {i}"));
        spec.lease_ttl_s = 1;
        let id = api.create(spec).await?;
        let dead = api.claim("bench-doomed", 1, 5_000, Some(1)).await?;
        let died = Instant::now();
        if dead.first().map(|l| l.task) != Some(id) {
            bail!("the doomed worker did not get task {id}");
        }
        let next = api.claim("bench-rescuer", 1, 10_000, None).await?;
        let took = died.elapsed();
        let Some(l) = next.first() else {
            bail!("nobody recovered task {id} within 10 s");
        };
        if l.task != id || l.attempt != 2 {
            bail!(
                "recovered {} attempt {}, expected {id} attempt 2",
                l.task,
                l.attempt
            );
        }
        api.complete(l, json!({})).await?;
        lat.push(took);
        bar.set(u64::from(i + 1));
    }
    bar.finish();
    Ok(Measured {
        latencies: vec![named("death→re-leased", &mut lat)],
        notes: vec!["lease TTL 1 s; target ≤ TTL + 1 s".into()],
        ..Measured::default()
    })
}

/// Claim latency in each of `stores`, measured in turn, probe by probe.
///
/// Each probe claims one task (a write, so one commit) and completes it.
/// Taking the stores in turn means a drift in the machine's speed (the
/// disk's flush time moves by tens of per cent within minutes here) lands
/// on both alike instead of on whichever was measured second; the order
/// alternates too, and the first probes only warm each store up.
async fn claim_latencies<const N: usize>(
    stores: [&dyn Api; N],
    probes: u32,
) -> Result<[Latency; N]> {
    const WARM: u32 = 20;
    for api in stores {
        for i in 0..WARM + probes {
            api.create(NewTask::titled(format!("probe {i}"))).await?;
        }
    }
    let mut lat: [Vec<Duration>; N] = std::array::from_fn(|_| vec![]);
    for i in 0..WARM + probes {
        for k in 0..N {
            let k = if i % 2 == 0 { k } else { N - 1 - k };
            let api = stores[k];
            let t0 = Instant::now();
            let leases = api.claim("bench-probe", 1, 0, None).await?;
            let took = t0.elapsed();
            if leases.is_empty() {
                bail!("a probe claim found no task");
            }
            if i >= WARM {
                lat[k].push(took);
            }
            for l in &leases {
                api.complete(l, json!({})).await?;
            }
        }
    }
    Ok(lat.map(|mut l| Latency::of(&mut l)))
}

/// `scale`: claim latency in a store of `small` tasks (`small_store`, a
/// fresh target of the same kind) and in one of `large` (`large_store`,
/// the target the other workloads ran on), nearly all done, seeded
/// straight into the table.
///
/// Why two stores measured in the same minutes, not one grown between
/// two measurements: the ratio is about the store's size, and measured
/// one after the other it also held the machine's drift between them
/// (embedded read 1.23 and 1.28 in one session, 0.85–1.07 in the next,
/// with claims of 0.4–1 ms that are mostly one flush). The large store
/// keeps whatever the earlier workloads left in it, and its server's RSS
/// is the one reported. That history is not a size: on SQLite it made the
/// large store the quicker one (ratios 0.77–0.80 in a full run, about 1.0
/// with `scale` alone; performance.md, finding 56).
pub(crate) async fn scale(
    large_store: &Target,
    small_store: &Target,
    small: u64,
    large: u64,
    quiet: bool,
) -> Result<Measured> {
    const PROBES: u32 = 300;
    let mut bar = Progress::new(format!("seeding {small} done tasks"), small, quiet);
    small_store.seed_done(small, |d| bar.set(d)).await?;
    bar.finish();
    let mut bar = Progress::new(format!("seeding {large} done tasks"), large, quiet);
    large_store.seed_done(large, |d| bar.set(d)).await?;
    bar.finish();
    let [at_small, at_large] =
        claim_latencies([small_store.api.as_ref(), large_store.api.as_ref()], PROBES).await?;
    let ratio = at_large.p50_ms / at_small.p50_ms.max(1e-9);
    Ok(Measured {
        latencies: vec![
            Named {
                name: format!("claim @{}", human(small)),
                latency: at_small,
            },
            Named {
                name: format!("claim @{}", human(large)),
                latency: at_large,
            },
        ],
        notes: vec![format!(
            "p50 ratio {} / {} = {ratio:.2} (the two stores probed in turn)",
            human(large),
            human(small)
        )],
        ..Measured::default()
    })
}

/// `10k`, `1M`.
pub(crate) fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// `fanout`: one completion releases `n` dependents; from the completion
/// request to a worker holding the last of them.
pub(crate) async fn fanout(api: Arc<dyn Api>, n: u32, quiet: bool) -> Result<Measured> {
    let root = api.create(NewTask::titled("root")).await?;
    let mut bar = Progress::new(format!("creating {n} dependents"), u64::from(n), quiet);
    let mut made = 0u64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(32) {
        try_join_all(chunk.iter().map(|i| {
            let mut spec = NewTask::titled(format!("dependent {i}"));
            spec.depends_on = vec![root];
            api.create(spec)
        }))
        .await?;
        made += chunk.len() as u64;
        bar.set(made);
    }
    bar.finish();
    let leases = api.claim("bench-root", 1, 1_000, None).await?;
    let Some(l) = leases.first().filter(|l| l.task == root) else {
        bail!("the root task was not the one ready task");
    };
    let t0 = Instant::now();
    api.complete(l, json!({})).await?;
    let acked = t0.elapsed();
    let mut held = vec![];
    while held.len() < n as usize {
        let got = api.claim("bench-fan", 100, 1_000, None).await?;
        if got.is_empty() {
            bail!("only {} of {n} dependents became leasable", held.len());
        }
        held.extend(got);
    }
    let all = t0.elapsed();
    for chunk in held.chunks(64) {
        try_join_all(chunk.iter().map(|l| api.complete(l, json!({})))).await?;
    }
    Ok(Measured {
        notes: vec![
            format!("completion acknowledged after {:.1} ms", ms(acked)),
            format!("all {n} dependents leased after {:.1} ms", ms(all)),
        ],
        latencies: vec![named("complete→all leased", &mut [all])],
        ..Measured::default()
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
