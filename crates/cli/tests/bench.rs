//! `aruntime bench` through the real binary, on a few thousand tasks: that
//! it runs each target it is given, reports every throughput beside its
//! baseline with the CPU each side spent, and prints the same as a table.
//! No figure is compared with a threshold: speed is measured, not tested.
//! And that a bench killed outright leaves no server behind, and that the
//! PostgreSQL database it could not drop is dropped by the next bench.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{
    KillOnDrop, Proc, children, cmdline, command, pid_alive, stdout_of_success, wait_for,
};

const RUN: Duration = Duration::from_secs(180);

fn bench(dir: &std::path::Path, json: bool) -> String {
    let mut args = vec![
        "bench",
        "--target",
        "embedded,sqlite",
        "--workload",
        "cycle,latency",
        // Enough that each side's CPU spans several of the kernel's 10 ms
        // ticks on quick cores (300 tasks took 15 ms, and a side could
        // read zero).
        "--tasks",
        "5000",
        "--samples",
        "10",
        "--baseline-secs",
        "0.2",
        "--dir",
    ];
    let dir = dir.to_string_lossy().into_owned();
    args.push(&dir);
    if json {
        args.push("--json");
    }
    stdout_of_success(command(&args), RUN)
}

#[test]
fn bench_reports_each_throughput_with_its_baseline_and_cpu_per_task() {
    let dir = tempfile::tempdir().unwrap();
    let text = bench(dir.path(), true);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    let targets = report["targets"].as_array().unwrap();
    let names: Vec<&str> = targets
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["embedded", "sqlite"]);
    for t in targets {
        let name = t["target"].as_str().unwrap();
        let baseline = t["baseline_commits_per_s"].as_f64().unwrap();
        assert!(baseline > 0.0, "{name}: baseline {baseline}");
        let rows = t["rows"].as_array().unwrap();
        let cycle = rows.iter().find(|r| r["workload"] == "cycle").unwrap();
        let tps = cycle["tasks_per_s"].as_f64().unwrap();
        let ratio = cycle["ratio_to_baseline"].as_f64().unwrap();
        assert!((ratio - tps / baseline).abs() < 1e-9, "{name}: {cycle}");
        assert!(cycle["rss_mib"].as_f64().unwrap() > 0.0, "{name}: {cycle}");
        // Read from /proc: every Linux this runs on has it.
        let cpu = &cycle["cpu"];
        assert!(cpu["cores"].as_u64().unwrap() >= 1, "{name}: {cpu}");
        assert!(
            cpu["machine_us_per_task"].as_f64().unwrap() > 0.0,
            "{name}: {cpu}"
        );
        assert!(
            cpu["server_us_per_task"].as_f64().unwrap() > 0.0,
            "{name}: {cpu}"
        );
        let share = cpu["busy_share"].as_f64().unwrap();
        assert!(share > 0.0 && share <= 1.0, "{name}: {cpu}");
        let bench_side = cpu["bench_us_per_task"].as_f64().unwrap();
        // Embedded, the bench process is the server: counted once, as it.
        // Over HTTP the floor (empty requests) is measured beside the
        // baseline, and `cycle` says how many requests a task took: at
        // least its create, plus its share of the claims and completions.
        if name == "embedded" {
            assert_eq!(bench_side, 0.0, "{cpu}");
            assert!(t.get("http_floor").is_none(), "{t}");
            assert!(cycle.get("requests_per_task").is_none(), "{cycle}");
        } else {
            assert!(bench_side > 0.0, "{cpu}");
            let floor = &t["http_floor"];
            assert_eq!(floor["clients"], 64, "{floor}");
            let rate = floor["requests_per_s"].as_f64().unwrap();
            assert!(rate > 0.0, "{floor}");
            assert!(
                floor["cpu"]["machine_us_per_task"].as_f64().unwrap() > 0.0,
                "{floor}"
            );
            let per = cycle["requests_per_task"].as_f64().unwrap();
            assert!(per > 1.0 && per < 3.0, "{cycle}");
            let allowed = cycle["http_floor_tasks_per_s"].as_f64().unwrap();
            assert!((allowed - rate / per).abs() < 1e-6 * allowed, "{cycle}");
        }
        let latency = rows.iter().find(|r| r["workload"] == "latency").unwrap();
        assert!(latency.get("cpu").is_none(), "{latency}");
        assert!(latency["tasks_per_s"].is_null(), "{latency}");
    }

    let table = bench(dir.path(), false);
    for want in [
        "baseline:",
        "WORKLOAD",
        "×BASE",
        "cycle",
        "CPU ",
        "µs per task",
        "HTTP floor:",
        "HTTP requests per task",
    ] {
        assert!(table.contains(want), "no {want:?} in:\n{table}");
    }
}

/// `scale` probes a store of 10k tasks and one of `--scale-max` in turn,
/// and reports both latencies from the same number of probes.
#[test]
fn scale_measures_both_store_sizes_with_every_probe() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    let text = stdout_of_success(
        command(&[
            "bench",
            "--target",
            "sqlite",
            "--workload",
            "scale",
            "--scale-max",
            "20000",
            "--baseline-secs",
            "0.2",
            "--dir",
            &data,
            "--json",
        ]),
        RUN,
    );
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    let row = &report["targets"][0]["rows"][0];
    assert_eq!(row["workload"], "scale", "{row}");
    let names: Vec<&str> = row["latencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["claim @10k", "claim @20k"], "{row}");
    for l in row["latencies"].as_array().unwrap() {
        assert_eq!(l["samples"], 300, "{row}");
        assert!(l["p50_ms"].as_f64().unwrap() > 0.0, "{row}");
    }
    let note = row["notes"][0].as_str().unwrap();
    assert!(note.starts_with("p50 ratio 20k / 10k = "), "{note}");
    // Both stores' data directories go when the run ends.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_bench_killed_outright_leaves_no_server_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&[
        "bench",
        "--target",
        "sqlite",
        "--workload",
        "latency",
        // Far more than the test lets it run: it is killed mid-workload.
        "--samples",
        "10000000",
        "--baseline-secs",
        "0.2",
        "--dir",
    ]);
    cmd.arg(dir.path());
    let mut bench = Proc::spawn(cmd);
    // Once the workload runs, its server has printed its address: a server
    // killed with the bench before that would die of the closed pipe when
    // it printed, and show nothing.
    wait_for("the latency workload to start", RUN, || {
        bench.stderr().contains("Latency").then_some(())
    });
    let server = wait_for("the bench's server", RUN, || {
        children(bench.pid())
            .into_iter()
            .find(|p| cmdline(*p).contains(" serve "))
    });
    // Should the server outlive the assertion below, it is killed anyway.
    let mut guard = KillOnDrop::default();
    guard.add(server, " serve ");

    bench.kill9();
    wait_for("the orphaned server to exit", RUN, || {
        (!pid_alive(server)).then_some(())
    });
}

/// The bench databases of process `pid` on the server at `admin`.
async fn databases_of(admin: &str, pid: u32) -> Vec<String> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
        .bind(format!("aruntime\\_bench\\_%\\_{pid}\\_%"))
        .fetch_all(&mut c)
        .await
        .unwrap()
}

fn pg_bench(admin: &str, dir: &std::path::Path, samples: &str) -> std::process::Command {
    let mut cmd = command(&[
        "bench",
        "--target",
        "pg1",
        "--workload",
        "latency",
        "--samples",
        samples,
        "--baseline-secs",
        "0.2",
        "--pg-url",
        admin,
        "--dir",
    ]);
    cmd.arg(dir);
    cmd
}

#[tokio::test]
async fn the_next_bench_drops_the_database_a_killed_bench_left() {
    let Some(admin) = aruntime_testkit::server_url() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Far more samples than the test lets it take: it is killed mid-workload.
    let mut killed = Proc::spawn(pg_bench(&admin, dir.path(), "10000000"));
    wait_for("the latency workload to start", RUN, || {
        killed.stderr().contains("Latency").then_some(())
    });
    let mut guard = KillOnDrop::default();
    for server in children(killed.pid()) {
        guard.add(server, " serve ");
    }
    let pid = killed.pid();
    killed.kill9();
    let left = databases_of(&admin, pid).await;
    assert_eq!(left.len(), 1, "the killed bench's database: {left:?}");

    let out = stdout_of_success(pg_bench(&admin, dir.path(), "3"), RUN);
    assert!(!out.is_empty());
    let still = databases_of(&admin, pid).await;
    assert!(still.is_empty(), "left after the next bench: {still:?}");
}
