//! `aruntime plan import` and `aruntime worker -- CMD` end to end, through
//! the real binary on SQLite: a plan is imported (twice, idempotently), two
//! workers run a bash script for each task, one of them is SIGKILLed in the
//! middle of a task, and the other one resumes that task from its
//! checkpoint and finishes the plan. Also how CMD's exit code maps to the
//! task's fate, and what Ctrl-C / SIGTERM do to a running worker.
//!
//! Nothing sleeps to synchronise: the test waits for marker files and task
//! states by polling with a deadline, and the workers themselves wait with
//! long-poll claims.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::{
    KillOnDrop, Proc, Server, api, binary, client_command, pid_alive, run_with_timeout,
    send_signal, wait_for,
};

/// How long any single step (a command, a task reaching a state) may take.
const STEP: Duration = Duration::from_secs(60);

/// Skips (loudly) when `jq`, which the worker scripts use, is missing.
fn have_jq(test: &str) -> bool {
    if Command::new("jq").arg("--version").output().is_err() {
        eprintln!("SKIPPED {test}: `jq` is not installed (.ci/run installs it)");
        return false;
    }
    true
}

fn task(server: &Server, id: &str) -> Value {
    api(server, "GET", &format!("/v1/tasks/{id}"), None)
}

fn attempts(server: &Server, id: &str) -> Vec<Value> {
    let v = api(server, "GET", &format!("/v1/tasks/{id}/attempts"), None);
    v["attempts"].as_array().unwrap().clone()
}

fn task_count(server: &Server) -> usize {
    let v = api(server, "GET", "/v1/tasks?limit=500", None);
    assert!(v["next_cursor"].is_null(), "more than one page: {v}");
    v["tasks"].as_array().unwrap().len()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The plan: a goal and A → B → C. B's lease is short so that a dead
/// worker's hold on it runs out quickly; A and C keep the default-ish long
/// TTL so a loaded machine cannot make their leases expire by accident.
const PLAN: &str = r#"
title = "Ship the importer"
goal = "Import the customer file end to end."
acceptance = ["every row is imported"]

[[tasks]]
key = "a"
title = "Step A"
lease_ttl_s = 30

[[tasks]]
key = "b"
title = "Step B"
after = ["a"]
lease_ttl_s = 3

[[tasks]]
key = "c"
title = "Step C"
after = ["b"]
lease_ttl_s = 30
"#;

/// Run by `aruntime worker` for every task. It reads the context bundle to
/// learn whether an earlier attempt left a checkpoint, writes its own
/// checkpoint, and completes with `{"resumed_from": <step or null>, ...}`.
/// On B's first attempt it instead announces itself (worker name and pid)
/// in a marker file and blocks forever, as an agent stuck in a long step.
/// `exec` makes the `sleep` keep bash's pid, so the test can clean it up.
const SCRIPT: &str = r#"
set -euo pipefail
ctx="$ARUNTIME_CONTEXT_JSON"
title=$(jq -r '.task.title' "$ctx")
resumed=$(jq -c '.latest_checkpoint.state.step // null' "$ctx")
earlier=$(jq -c '[.attempts[] | .outcome]' "$ctx")
"$AR_BIN" checkpoint --summary "$title: step 1 done by $AR_WORKER_NAME (attempt $ARUNTIME_ATTEMPT)" \
  --state '{"step":1}'
if [ "$title" = "Step B" ] && [ "$ARUNTIME_ATTEMPT" = 1 ]; then
  echo "$AR_WORKER_NAME $$" > "$AR_DIR/started-B-1.tmp"
  mv "$AR_DIR/started-B-1.tmp" "$AR_DIR/started-B-1"
  exec sleep 1000
fi
jq -n --argjson r "$resumed" --argjson e "$earlier" --arg by "$AR_WORKER_NAME" \
  '{resumed_from: $r, earlier_attempts: $e, by: $by}' > "$ARUNTIME_RESULT"
"#;

fn start_worker(server: &Server, dir: &Path, name: &str, script: &Path) -> Proc {
    let workdir = dir.join(format!("work-{name}"));
    let mut cmd = client_command(
        server,
        &[
            "worker",
            "--name",
            name,
            "--idle-exit",
            "10",
            "--workdir",
            workdir.to_str().unwrap(),
            "--",
            "bash",
            script.to_str().unwrap(),
        ],
    );
    cmd.env("AR_BIN", binary())
        .env("AR_DIR", dir)
        .env("AR_WORKER_NAME", name);
    Proc::spawn(cmd)
}

#[test]
fn a_killed_worker_s_task_is_resumed_from_its_checkpoint_and_the_plan_finishes() {
    if !have_jq("a_killed_worker_s_task_is_resumed_from_its_checkpoint_and_the_plan_finishes") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Server::start(&dir.join("data"));
    let plan = dir.join("importer.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let plan_arg = plan.to_str().unwrap();

    // First import: a summary with the plan key (the file's name), every
    // item marked `+` (created), A ready and the rest waiting.
    let out = run_with_timeout(client_command(&server, &["plan", "import", plan_arg]), STEP);
    assert!(out.status.success(), "import failed: {}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("plan `importer`: created 4 of 4 tasks"),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = lines
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let summary: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[0], r[1], r[2])).collect();
    assert_eq!(
        summary,
        [
            ("+", "(goal)", "backlog"),
            ("+", "a", "ready"),
            ("+", "b", "backlog"),
            ("+", "c", "backlog"),
        ],
        "{text}"
    );
    assert_eq!(task_count(&server), 4);

    // Importing again creates nothing and says so, in JSON and in text.
    let out = run_with_timeout(
        client_command(&server, &["plan", "import", "--json", plan_arg]),
        STEP,
    );
    assert!(out.status.success(), "re-import failed: {}", stderr(&out));
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["key"], "importer");
    assert_eq!(again["goal"]["created"], false, "{again:#}");
    let entries = again["tasks"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| e["created"] == false), "{again:#}");
    let ids: HashMap<String, String> = entries
        .iter()
        .map(|e| {
            let key = e["key"].as_str().unwrap().to_owned();
            (key, e["task"]["id"].as_str().unwrap().to_owned())
        })
        .chain([(
            "goal".to_owned(),
            again["goal"]["task"]["id"].as_str().unwrap().to_owned(),
        )])
        .collect();
    // The ids are the first import's: the summary's ID column.
    for (row, key) in rows.iter().zip(["goal", "a", "b", "c"]) {
        assert_eq!(row[3], ids[key], "{text}");
    }
    assert_eq!(task_count(&server), 4, "a re-import created tasks");
    let out = run_with_timeout(client_command(&server, &["plan", "import", plan_arg]), STEP);
    assert!(
        stdout(&out).starts_with("plan `importer`: already imported; nothing created\n"),
        "{}",
        stdout(&out)
    );
    assert_eq!(task_count(&server), 4, "a re-import created tasks");

    // Two workers share the plan.
    let script = dir.join("step.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    // Killed when the test ends, pass or fail.
    let mut orphans = KillOnDrop::default();
    let mut workers: HashMap<&str, Proc> = ["w1", "w2"]
        .into_iter()
        .map(|n| (n, start_worker(&server, dir, n, &script)))
        .collect();

    // Whoever gets B's first attempt blocks; SIGKILL that worker. Its
    // script's `sleep` is orphaned (nothing kills it after a SIGKILL), so
    // it is killed at the end.
    let marker = dir.join("started-B-1");
    let announced = wait_for("B's first attempt to start", STEP, || {
        for (name, w) in workers.iter_mut() {
            if let Some(s) = w.wait_timeout(Duration::ZERO) {
                panic!("worker {name} exited early ({s}): {}", w.stderr());
            }
        }
        std::fs::read_to_string(&marker).ok()
    });
    let (victim, sleep_pid) = announced.trim().split_once(' ').unwrap();
    let sleep_pid: u32 = sleep_pid.parse().unwrap();
    orphans.add(sleep_pid, "sleep");
    let (victim, survivor) = match victim {
        "w1" => ("w1", "w2"),
        "w2" => ("w2", "w1"),
        other => panic!("unknown worker {other:?} in the marker"),
    };
    let b = task(&server, &ids["b"]);
    assert_eq!(b["status"], "running", "{b:#}");
    assert_eq!(b["lease"]["worker"], victim, "{b:#}");
    assert_eq!(b["lease"]["attempt"], 1, "{b:#}");
    workers.get_mut(victim).unwrap().kill9();

    // The survivor takes B over once its 3 s lease runs out, then does C
    // and finally the goal, which depends on all three.
    wait_for("the goal to be done", STEP, || {
        let w = workers.get_mut(survivor).unwrap();
        if let Some(s) = w.wait_timeout(Duration::ZERO) {
            panic!(
                "worker {survivor} exited before the goal was done ({s}): {}",
                w.stderr()
            );
        }
        (task(&server, &ids["goal"])["status"] == "done").then_some(())
    });
    // With nothing left it stops on its own after `--idle-exit 10`.
    let w = workers.get_mut(survivor).unwrap();
    let status = w
        .wait_timeout(STEP)
        .expect("the survivor did not exit when idle");
    w.drain_output(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{}", w.stderr());
    let log = w.stderr();
    assert!(log.contains("idle; exiting"), "{log}");
    // What a person watching the survivor saw of the handoff.
    assert!(
        log.contains(&format!("leased \"Step B\" (task {}, attempt 2)", ids["b"])),
        "{log}"
    );
    assert!(
        log.contains(&format!("task {} completed", ids["b"])),
        "{log}"
    );

    for key in ["goal", "a", "b", "c"] {
        let t = task(&server, &ids[key]);
        assert_eq!(t["status"], "done", "{key}: {t:#}");
    }

    // B: attempt 1 (the killed worker) abandoned, attempt 2 (the survivor)
    // completed, having seen attempt 1's checkpoint in its context.
    let b = task(&server, &ids["b"]);
    let ab = attempts(&server, &ids["b"]);
    assert_eq!(ab.len(), 2, "{ab:#?}");
    assert_eq!(ab[0]["outcome"], "abandoned", "{ab:#?}");
    assert_eq!(ab[0]["worker"], victim, "{ab:#?}");
    // The dead worker wrote no notes; the runtime says where it stopped.
    let notes = ab[0]["notes"].as_str().unwrap_or_default();
    assert!(
        notes.contains(&format!("The lease of worker {victim} expired"))
            && notes.contains("Last checkpoint: #1."),
        "{ab:#?}"
    );
    assert_eq!(ab[1]["outcome"], "completed", "{ab:#?}");
    assert_eq!(ab[1]["worker"], survivor, "{ab:#?}");
    assert_eq!(
        b["result"],
        json!({"resumed_from": 1, "earlier_attempts": ["abandoned"], "by": survivor}),
        "{b:#}"
    );
    let cps = api(
        &server,
        "GET",
        &format!("/v1/tasks/{}/checkpoints", ids["b"]),
        None,
    );
    let cps = cps["checkpoints"].as_array().unwrap();
    let first = cps
        .iter()
        .find(|c| c["attempt"] == 1)
        .unwrap_or_else(|| panic!("no checkpoint of attempt 1: {cps:#?}"));
    assert_eq!(first["state"], json!({"step": 1}));
    assert_eq!(
        first["summary"],
        format!("Step B: step 1 done by {victim} (attempt 1)")
    );
    assert!(cps.iter().any(|c| c["attempt"] == 2), "{cps:#?}");

    // Everything else went through once, from scratch.
    for key in ["a", "c", "goal"] {
        let t = task(&server, &ids[key]);
        let att = attempts(&server, &ids[key]);
        assert_eq!(att.len(), 1, "{key}: {att:#?}");
        assert_eq!(att[0]["outcome"], "completed", "{key}: {att:#?}");
        assert_eq!(t["result"]["resumed_from"], Value::Null, "{key}: {t:#}");
        assert_eq!(t["result"]["earlier_attempts"], json!([]), "{key}: {t:#}");
    }
}

/// A fresh server with one ready task per label, for `--once` workers.
fn one_task_per_label(server: &Server, labels: &[&str]) -> HashMap<String, String> {
    labels
        .iter()
        .map(|l| {
            let t = api(
                server,
                "POST",
                "/v1/tasks",
                Some(&json!({"title": format!("task {l}"), "labels": [l]})),
            );
            ((*l).to_owned(), t["id"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// `aruntime worker --once --capabilities LABEL -- bash -c SCRIPT`, to the end.
fn work_once(server: &Server, dir: &Path, label: &str, script: &str) -> std::process::Output {
    let workdir = dir.join(format!("work-{label}"));
    let cmd = client_command(
        server,
        &[
            "worker",
            "--once",
            "--name",
            &format!("once-{label}"),
            "--capabilities",
            label,
            "--workdir",
            workdir.to_str().unwrap(),
            "--",
            "bash",
            "-c",
            script,
        ],
    );
    let out = run_with_timeout(cmd, STEP);
    assert_eq!(
        out.status.code(),
        Some(0),
        "worker for {label}:\n{}",
        stderr(&out)
    );
    out
}

#[test]
fn cmd_exit_codes_map_to_block_retryable_failure_and_completion() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Server::start(&dir.join("data"));
    let ids = one_task_per_label(&server, &["exit3", "exit7", "exit0", "exit0-bare"]);

    // Exit 3 (the default --block-exit-code): blocked for a person, with
    // the exit and CMD's last output as the reason.
    let out = work_once(
        &server,
        dir,
        "exit3",
        "echo 'checking credentials'; echo 'need a person: the API key is missing'; exit 3",
    );
    assert!(
        stderr(&out).contains(&format!("task {} blocked", ids["exit3"])),
        "{}",
        stderr(&out)
    );
    let t = task(&server, &ids["exit3"]);
    assert_eq!(t["status"], "blocked", "{t:#}");
    let reason = t["blocked_reason"].as_str().unwrap();
    assert!(reason.contains("exited with code 3"), "{reason}");
    assert!(
        reason.contains("need a person: the API key is missing"),
        "{reason}"
    );
    assert_eq!(attempts(&server, &ids["exit3"])[0]["outcome"], "blocked");

    // Any other non-zero exit: a retryable failure. The task goes back to
    // ready (after a backoff) and the attempt's notes end with CMD's last
    // line of output, so the next attempt knows what went wrong.
    let out = work_once(
        &server,
        dir,
        "exit7",
        "echo 'compiling'; echo 'error: linker failed at step 4'; exit 7",
    );
    assert!(
        stderr(&out).contains(&format!("task {} failed", ids["exit7"])),
        "{}",
        stderr(&out)
    );
    let t = task(&server, &ids["exit7"]);
    assert_eq!(t["status"], "ready", "{t:#}");
    assert_eq!(t["failed_attempts"], 1, "{t:#}");
    assert!(!t["not_before"].is_null(), "no retry backoff: {t:#}");
    assert_eq!(t["error"], "`bash` exited with code 7", "{t:#}");
    let att = attempts(&server, &ids["exit7"]);
    assert_eq!(att[0]["outcome"], "failed", "{att:#?}");
    assert_eq!(att[0]["error"], "`bash` exited with code 7", "{att:#?}");
    let notes = att[0]["notes"].as_str().unwrap();
    assert!(
        notes.trim_end().ends_with("error: linker failed at step 4"),
        "{notes}"
    );
    assert!(notes.contains("compiling"), "{notes}");

    // Exit 0 with a result file: done, with the file's JSON as the result.
    work_once(
        &server,
        dir,
        "exit0",
        r#"echo '{"rows": 42, "ok": true}' > "$ARUNTIME_RESULT"; exit 0"#,
    );
    let t = task(&server, &ids["exit0"]);
    assert_eq!(t["status"], "done", "{t:#}");
    assert_eq!(t["result"], json!({"rows": 42, "ok": true}), "{t:#}");
    assert_eq!(attempts(&server, &ids["exit0"])[0]["outcome"], "completed");

    // Exit 0 without one: done, with the exit code and the output's tail.
    work_once(&server, dir, "exit0-bare", "echo 'all 12 files converted'");
    let t = task(&server, &ids["exit0-bare"]);
    assert_eq!(t["status"], "done", "{t:#}");
    assert_eq!(t["result"]["exit_code"], 0, "{t:#}");
    assert!(
        t["result"]["output_tail"]
            .as_str()
            .unwrap()
            .contains("all 12 files converted"),
        "{t:#}"
    );
}

/// Starts a worker for tasks labelled `label` (or unlabelled) running
/// `script`, waits until the script has created `marker`, and returns the
/// worker.
fn worker_in_task(
    server: &Server,
    dir: &Path,
    name: &str,
    label: &str,
    script: &str,
    marker: &Path,
) -> Proc {
    let workdir = dir.join(format!("work-{name}"));
    let mut cmd = client_command(
        server,
        &[
            "worker",
            "--name",
            name,
            "--capabilities",
            label,
            "--workdir",
            workdir.to_str().unwrap(),
            "--",
            "bash",
            "-c",
            script,
        ],
    );
    cmd.current_dir(dir);
    let mut w = Proc::spawn(cmd);
    wait_for(&format!("{name}'s CMD to start"), STEP, || {
        if let Some(s) = w.wait_timeout(Duration::ZERO) {
            panic!("worker {name} exited early ({s}): {}", w.stderr());
        }
        marker.exists().then_some(())
    });
    w
}

#[test]
fn ctrl_c_or_sigterm_stops_cmd_and_releases_the_task() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Server::start(&dir.join("data"));
    let mut orphans = KillOnDrop::default();

    for sig in ["INT", "TERM"] {
        let t = api(
            &server,
            "POST",
            "/v1/tasks",
            // Its own label, so this round's worker cannot pick up the
            // task the previous round released.
            Some(&json!({"title": format!("long job ({sig})"), "labels": [sig]})),
        );
        let id = t["id"].as_str().unwrap();
        let marker = dir.join(format!("marker-{sig}"));
        let pidfile = dir.join(format!("pid-{sig}"));
        // `exec` keeps the pid, so the file names the very process the
        // worker must stop; the marker comes after the pid file.
        let script = format!(
            "echo $$ > {p}; echo 'working on it'; touch {m}; exec sleep 1000",
            p = pidfile.display(),
            m = marker.display()
        );
        let name = format!("w-{sig}");
        let mut w = worker_in_task(&server, dir, &name, sig, &script, &marker);
        let cmd_pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        orphans.add(cmd_pid, "sleep");
        assert_eq!(task(&server, id)["status"], "running");

        assert!(send_signal(w.pid(), sig), "kill -{sig} failed");
        let status = w
            .wait_timeout(STEP)
            .unwrap_or_else(|| panic!("worker ignored SIG{sig}: {}", w.stderr()));
        w.drain_output(Duration::from_secs(5));
        assert_eq!(status.code(), Some(130), "SIG{sig}: {}", w.stderr());
        assert!(
            w.stderr()
                .contains(&format!("interrupted; released task {id}")),
            "{}",
            w.stderr()
        );
        assert!(
            !pid_alive(cmd_pid),
            "SIG{sig}: CMD (pid {cmd_pid}) still runs"
        );

        // Handed back at once (no waiting for a lease to expire), with a
        // note for whoever picks it up next.
        let t = task(&server, id);
        assert_eq!(t["status"], "ready", "{t:#}");
        assert!(t["lease"].is_null(), "{t:#}");
        assert_eq!(t["failed_attempts"], 0, "a release is not a failure: {t:#}");
        let att = attempts(&server, id);
        assert_eq!(att.len(), 1, "{att:#?}");
        assert_eq!(att[0]["outcome"], "released", "{att:#?}");
        assert_eq!(att[0]["worker"], name.as_str(), "{att:#?}");
        let notes = att[0]["notes"].as_str().unwrap();
        assert!(notes.contains("interrupted"), "{notes}");
        assert!(notes.contains("working on it"), "{notes}");
    }
}

/// A CMD that starts its own children (a shell script running a build, an
/// agent running tools) must not leave them running when the worker stops
/// it: they would keep working on a task that has been handed to someone
/// else.
#[test]
fn sigterm_also_stops_cmd_s_children() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Server::start(&dir.join("data"));
    let mut orphans = KillOnDrop::default();
    api(
        &server,
        "POST",
        "/v1/tasks",
        Some(&json!({"title": "build"})),
    );
    let marker = dir.join("marker");
    let pidfile = dir.join("child.pid");
    let script = format!(
        "sleep 1000 & echo $! > {p}; touch {m}; wait",
        p = pidfile.display(),
        m = marker.display()
    );
    let mut w = worker_in_task(&server, dir, "w-tree", "", &script, &marker);
    let child: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    orphans.add(child, "sleep");
    w.sigterm();
    assert_eq!(w.wait_timeout(STEP).and_then(|s| s.code()), Some(130));
    wait_for("CMD's child to be stopped", Duration::from_secs(10), || {
        (!pid_alive(child)).then_some(())
    });
}
