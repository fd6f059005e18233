//! What a person (or a script) sees from the client commands, through the
//! real binary: the terminal board and the `--json` outputs against
//! checked-in snapshots, error messages and exit codes, and the markdown
//! context fitted to a byte budget.
//!
//! Snapshots live in `tests/snapshots/`. Ids, ages and timestamps vary from
//! run to run, so they are redacted before comparing. To accept a change in
//! the output, run with `UPDATE_SNAPSHOTS=1` and review the diff in git.

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, api, client_command, command, http, run_with_timeout, stdout_of_success};

/// How long one command may take.
const STEP: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- helpers

fn run(server: &Server, args: &[&str]) -> Output {
    run_with_timeout(client_command(server, args), STEP)
}

/// Runs a command that must succeed; returns its stdout.
fn ok(server: &Server, args: &[&str]) -> String {
    stdout_of_success(client_command(server, args), STEP)
}

/// Runs a `--json` command that must succeed; returns its stdout parsed,
/// and as printed.
fn ok_json(server: &Server, args: &[&str]) -> (Value, String) {
    let text = ok(server, args);
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("aruntime {args:?} printed invalid JSON ({e}):\n{text}"));
    (v, text)
}

fn create(server: &Server, body: Value) -> String {
    let t = api(server, "POST", "/v1/tasks", Some(&body));
    t["id"].as_str().unwrap().to_owned()
}

/// Claims over HTTP as `worker` with `caps`; the caller made sure exactly
/// one task fits. Returns (task id, lease token).
fn claim(server: &Server, worker: &str, caps: &[&str]) -> (String, String) {
    let r = api(
        server,
        "POST",
        "/v1/leases",
        Some(&json!({"worker": worker, "capabilities": caps, "wait_ms": 10_000, "ttl_s": 600})),
    );
    let l = &r["leases"][0];
    assert!(l.is_object(), "nothing leased: {r:#}");
    (
        l["task"]["id"].as_str().unwrap().to_owned(),
        l["lease"].as_str().unwrap().to_owned(),
    )
}

/// `POST /v1/tasks/{id}/{what}` under `lease` with more fields.
fn finish(server: &Server, id: &str, what: &str, lease: &str, mut body: Value) {
    body["lease"] = json!(lease);
    api(
        server,
        "POST",
        &format!("/v1/tasks/{id}/{what}"),
        Some(&body),
    );
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Replaces every UUID in `text` with `with`.
fn redact_uuids(text: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if rest.len() >= 36 && rest.is_char_boundary(36) && is_uuid(&rest[..36]) {
            out.push_str(with);
            rest = &rest[36..];
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `2025-01-02T03:04:05.678Z`, as the API writes timestamps.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && s.ends_with('Z')
}

fn is_age(s: &str) -> bool {
    s.len() >= 2
        && s[..s.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && s.ends_with(['s', 'm', 'h', 'd'])
}

/// Redacts the terminal board: ids become `<id>` and ages (which must
/// look like `12s`, `5m`, `3h` or `2d`) `<age>`. Each table is cut into
/// cells at its header's column positions, which also checks that every
/// row is aligned under the header, and is then padded again as the CLI
/// pads it (two spaces between columns, the last one unpadded).
fn redact_board(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].starts_with("  PRI ") {
            out.push_str(&redact_uuids(lines[i], "<id>"));
            out.push('\n');
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        while i < lines.len() && lines[i].starts_with("  ") && !lines[i].starts_with("  … and") {
            i += 1;
        }
        for line in redact_table(&lines[start..i], text) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// One board table (header first), redacted and padded again.
fn redact_table(block: &[&str], whole: &str) -> Vec<String> {
    let header: Vec<char> = block[0].chars().collect();
    let starts: Vec<usize> = (1..header.len())
        .filter(|&i| header[i] != ' ' && header[i - 1] == ' ')
        .collect();
    let names: Vec<&str> = block[0].split_whitespace().collect();
    assert_eq!(starts.len(), names.len(), "header {:?}", block[0]);
    let mut rows: Vec<Vec<String>> = vec![];
    for line in block {
        let chars: Vec<char> = line.chars().collect();
        let mut cells = vec![];
        for (k, &s) in starts.iter().enumerate() {
            let e = starts
                .get(k + 1)
                .map_or(chars.len(), |&e| e.min(chars.len()));
            assert!(
                s < chars.len() && chars[s] != ' ' && chars[s - 1] == ' ',
                "column {} is not aligned in {line:?} of\n{whole}",
                names[k]
            );
            let cell = chars[s..e].iter().collect::<String>().trim_end().to_owned();
            let cell = if rows.is_empty() {
                cell
            } else if names[k] == "AGE" {
                assert!(is_age(&cell), "AGE {cell:?} in {line:?} of\n{whole}");
                "<age>".to_owned()
            } else {
                redact_uuids(&cell, "<id>")
            };
            cells.push(cell);
        }
        rows.push(cells);
    }
    let width: Vec<usize> = (0..starts.len())
        .map(|k| rows.iter().map(|r| r[k].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = "  ".to_owned();
            for (k, c) in r.iter().enumerate() {
                line.push_str(c);
                if k + 1 < r.len() {
                    line.push_str(&" ".repeat(width[k] - c.chars().count() + 2));
                }
            }
            line.trim_end().to_owned()
        })
        .collect()
}

/// Redacts `--json` output as printed (so the snapshot also shows the
/// field order and layout): each distinct UUID becomes `<id:N>`, numbered
/// in order of appearance so that which task points at which survives, and
/// each timestamp becomes `<time>`. Checks that the result is still JSON
/// and that no id or `*_at` value escaped redaction.
fn redacted_json(text: &str) -> String {
    let mut ids: Vec<String> = vec![];
    let mut out = String::new();
    let mut rest = text;
    // Walk the string literals; everything between them is copied as is.
    while let Some(open) = rest.find('"') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let mut end = 0;
        let bytes = rest.as_bytes();
        while bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        let lit = &rest[..end];
        if is_uuid(lit) {
            let n = ids.iter().position(|i| i == lit).unwrap_or_else(|| {
                ids.push(lit.to_owned());
                ids.len() - 1
            });
            out.push_str(&format!("<id:{}>", n + 1));
        } else if is_timestamp(lit) {
            out.push_str("<time>");
        } else {
            out.push_str(lit);
        }
        out.push('"');
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("redaction broke the JSON ({e}):\n{out}"));
    check_redacted(&v, &out);
    out
}

/// Every value under a key ending in `id` or `_at` is null or redacted.
fn check_redacted(v: &Value, doc: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k.ends_with("id") || k.ends_with("_at") {
                    let ok = |x: &Value| {
                        x.is_null()
                            || x.as_str()
                                .is_some_and(|s| s == "<time>" || s.starts_with("<id:"))
                    };
                    let fine = match x {
                        Value::Array(a) => a.iter().all(ok),
                        x => ok(x),
                    };
                    assert!(fine, "{k} = {x} was not redacted in:\n{doc}");
                }
                check_redacted(x, doc);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| check_redacted(x, doc)),
        _ => {}
    }
}

/// A line diff (longest common subsequence): ` ` kept, `-` expected only,
/// `+` actual only.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        }
    }
    out
}

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name)
}

/// Compares `actual` with the snapshot `name`, or rewrites the snapshot
/// when `UPDATE_SNAPSHOTS=1`.
fn assert_snapshot(name: &str, actual: &str) {
    let path = snapshot_path(name);
    if std::env::var("UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        eprintln!("updated {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read snapshot {} ({e}); run with UPDATE_SNAPSHOTS=1 to create it. Actual:\n{actual}",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "output differs from snapshot {} (- snapshot, + actual; \
             UPDATE_SNAPSHOTS=1 accepts the new output):\n{}",
            path.display(),
            diff(&expected, actual)
        );
    }
}

// ------------------------------------------------------------------ board

/// A board with a card in every column: done, blocked, failed and running
/// (leased over HTTP), ready ones of several priorities (one with a title
/// too long for the column), a held one and one waiting on a dependency in
/// the backlog, and a cancelled one that only `--all` shows.
fn populate_board(server: &Server) {
    // Each task is leased right after it is created, while it is the only
    // ready one the claimer's capabilities allow, so the claim takes it.
    let id = create(
        server,
        json!({"title": "Write the changelog", "labels": ["docs"], "priority": 2}),
    );
    let (got, lease) = claim(server, "snap-worker", &["docs"]);
    assert_eq!(got, id);
    finish(
        server,
        &id,
        "complete",
        &lease,
        json!({"result": {"ok": true}}),
    );

    let id = create(
        server,
        json!({"title": "Rotate the API keys", "labels": ["ops", "security"], "priority": 5}),
    );
    let (got, lease) = claim(server, "snap-worker", &["ops", "security"]);
    assert_eq!(got, id);
    finish(
        server,
        &id,
        "block",
        &lease,
        json!({"reason": "needs the vault password"}),
    );

    let id = create(
        server,
        json!({"title": "Migrate the legacy DB", "labels": ["db"], "priority": 1}),
    );
    let (got, lease) = claim(server, "snap-worker", &["db"]);
    assert_eq!(got, id);
    finish(
        server,
        &id,
        "fail",
        &lease,
        json!({"error": "schema too old", "retryable": false}),
    );

    let running = create(
        server,
        json!({"title": "Fix the flaky login test", "labels": ["rust"], "priority": 3}),
    );
    let (got, _lease) = claim(server, "snap-worker", &["rust"]);
    assert_eq!(got, running);

    create(
        server,
        json!({"title": "Speed up the build", "priority": 7}),
    );
    create(
        server,
        json!({"title": "Add dark mode", "labels": ["ui", "css"]}),
    );
    create(
        server,
        json!({"title": "Investigate why the nightly export sometimes duplicates rows", "priority": -1}),
    );
    create(
        server,
        json!({"title": "Plan the v2 roadmap", "hold": true, "priority": 4}),
    );
    create(
        server,
        json!({"title": "Publish the release", "depends_on": [running], "labels": ["release"]}),
    );
    let cancelled = create(server, json!({"title": "Old idea"}));
    api(
        server,
        "POST",
        &format!("/v1/tasks/{cancelled}/cancel"),
        None,
    );
}

#[test]
fn board_and_json_outputs_match_their_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    populate_board(&server);

    let text = ok(&server, &["board"]);
    assert_snapshot("board.txt", &redact_board(&text));
    // Things the snapshot shows, spelled out, so that a careless
    // UPDATE_SNAPSHOTS=1 cannot hide their loss.
    assert!(
        text.starts_with(
            "9 tasks: backlog 2 · ready 3 · running 1 · blocked 1 · done 1 · failed 1\n"
        )
    );
    assert!(
        !text.contains("Old idea"),
        "cancelled shows without --all:\n{text}"
    );
    assert!(
        text.contains("snap-worker"),
        "no WORKER in RUNNING:\n{text}"
    );
    assert!(
        text.contains("Investigate why the nightly export sometimes du…"),
        "long title not clipped to 48 characters:\n{text}"
    );
    // `--all` adds the cancelled column.
    let all = ok(&server, &["board", "--all"]);
    assert!(all.contains("\nCANCELLED (1)\n"), "{all}");
    assert!(all.contains("Old idea"), "{all}");
    // `--cards 1` shows one card per column and says how many more.
    let one = ok(&server, &["board", "--cards", "1"]);
    assert!(one.contains("  … and 2 more\n"), "{one}");

    // `task list --json`: an array of tasks, oldest first.
    let (list, printed) = ok_json(&server, &["task", "list", "--json"]);
    let tasks = list.as_array().expect("task list --json is an array");
    // The cancelled task is listed too.
    assert_eq!(tasks.len(), 10, "{list:#}");
    for t in tasks {
        for key in ["id", "title", "status", "labels", "priority", "attempts"] {
            assert!(t.get(key).is_some(), "task without {key}: {t:#}");
        }
    }
    assert_snapshot("task-list.json", &redacted_json(&printed));

    // `board --json`: `{"columns": [{status, count, cards}]}`.
    let (board, printed) = ok_json(&server, &["board", "--json"]);
    let cols = board["columns"]
        .as_array()
        .expect("board --json has columns");
    let statuses: Vec<&str> = cols.iter().map(|c| c["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        ["backlog", "ready", "running", "blocked", "done", "failed"]
    );
    for c in cols {
        assert_eq!(
            c["count"].as_u64().unwrap(),
            c["cards"].as_array().unwrap().len() as u64,
            "{c:#}"
        );
    }
    assert_snapshot("board.json", &redacted_json(&printed));

    // `task list --status` filters, in the table too.
    let blocked = ok(&server, &["task", "list", "--status", "blocked"]);
    assert_eq!(blocked.lines().count(), 2, "{blocked}");
    assert!(blocked.contains("Rotate the API keys"), "{blocked}");
}

#[test]
fn plan_import_json_matches_its_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));
    let plan = tmp.path().join("login.md");
    std::fs::write(
        &plan,
        "# Ship the login page\n\
         Let people log in with their email.\n\n\
         ## Acceptance\n\
         - a person can log in\n\n\
         ## Tasks\n\
         - [ ] Design the form (labels: ui)\n  - matches the mockup\n\
         - [x] Set up the repo\n\
         - [ ] Build the form (after: design-the-form, set-up-the-repo) (labels: ui, rust)\n\
         - [ ] Test it (after: build-the-form)\n",
    )
    .unwrap();
    let (out, printed) = ok_json(
        &server,
        &["plan", "import", "--json", plan.to_str().unwrap()],
    );
    // `{key, goal: {key, created, task}, tasks: [{key, created, task}]}`.
    assert_eq!(out["key"], "login");
    assert_eq!(out["goal"]["key"], "");
    assert_eq!(out["goal"]["created"], true);
    let keys: Vec<&str> = out["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["created"], true, "{e:#}");
            assert_eq!(e["task"]["parent_id"], out["goal"]["task"]["id"], "{e:#}");
            e["key"].as_str().unwrap()
        })
        .collect();
    assert_eq!(keys, ["design-the-form", "build-the-form", "test-it"]);
    assert_snapshot("plan-import.json", &redacted_json(&printed));
}

// ----------------------------------------------------------------- errors

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn errors_say_what_went_wrong_with_the_right_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));

    // An id that exists nowhere.
    let missing = "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee";
    let out = run(&server, &["task", "show", missing]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("not_found"), "{}", stderr_of(&out));
    assert!(out.stdout.is_empty());

    // A token the server does not know (the flag beats the environment).
    let out = run(&server, &["task", "list", "--token", "not-a-real-token"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("unauthorized"),
        "{}",
        stderr_of(&out)
    );

    // An empty title is refused, and nothing is created.
    let out = run(&server, &["task", "add", ""]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("invalid_input"),
        "{}",
        stderr_of(&out)
    );
    let (list, _) = ok_json(&server, &["task", "list", "--json"]);
    assert_eq!(list, json!([]));

    // No server: a port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut cmd = command(&["board", "--url", &url, "--token", "whatever"]);
    cmd.current_dir(tmp.path());
    let out = run_with_timeout(cmd, STEP);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("cannot reach the server at {url}")),
        "{}",
        stderr_of(&out)
    );

    // No token anywhere: says where one would come from.
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = command(&["board", "--url", &server.base]);
    cmd.current_dir(empty.path());
    let out = run_with_timeout(cmd, STEP);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("no API token: set ARUNTIME_TOKEN"),
        "{}",
        stderr_of(&out)
    );

    // A checkpoint under a lease that has been handed back: exit 4 (so a
    // script inside `aruntime worker` can tell it must stop) and
    // `lease_lost`, with the lease and task taken from the environment as
    // `aruntime worker` sets them.
    let id = create(&server, json!({"title": "short-lived lease"}));
    let (got, lease) = claim(&server, "w", &[]);
    assert_eq!(got, id);
    finish(&server, &id, "release", &lease, json!({}));
    let mut cmd = client_command(&server, &["checkpoint", "--summary", "too late"]);
    cmd.env("ARUNTIME_TASK_ID", &id)
        .env("ARUNTIME_LEASE", &lease);
    let out = run_with_timeout(cmd, STEP);
    assert_eq!(out.status.code(), Some(4), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("lease_lost"),
        "{}",
        stderr_of(&out)
    );
    let cps = api(&server, "GET", &format!("/v1/tasks/{id}/checkpoints"), None);
    assert_eq!(cps["checkpoints"], json!([]), "a fenced write was stored");
}

// ---------------------------------------------------------------- context

/// Several hundred bytes of an attempt's notes, distinct per attempt.
fn long_notes(n: u32) -> String {
    (1..=12)
        .map(|i| {
            format!("attempt {n}, finding {i}: the signing key cache is read before it is warm.")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn markdown_context_fits_the_budget_and_keeps_the_essentials() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"));

    // Two goals above the task, held so that claims only find the task.
    let outer = create(
        &server,
        json!({"title": "Launch the public API", "goal": "Open the API to partners.", "hold": true}),
    );
    let inner = create(
        &server,
        json!({"title": "Harden authentication", "goal": "No long-lived secrets.",
               "parent_id": outer, "hold": true}),
    );
    let acceptance = [
        "old tokens keep working for 24 hours",
        "every rotation is logged",
        "a runbook exists",
    ];
    let id = create(
        &server,
        json!({"title": "Add token rotation", "goal": "Rotate signing keys without downtime.",
               "acceptance": acceptance, "labels": ["rust"], "parent_id": inner}),
    );
    api(
        &server,
        "POST",
        &format!("/v1/tasks/{outer}/decisions"),
        Some(&json!({"title": "Use Ed25519", "rationale": "Small keys, fast verification."})),
    );

    // Three attempts, each checkpointing and then handing back with long
    // notes: released, failed (retryable; the next claim long-polls over
    // the backoff), released. The third one's checkpoint is the latest.
    let endings = ["release", "fail", "release"];
    for (i, how) in endings.iter().enumerate() {
        let n = i as u32 + 1;
        let (got, lease) = claim(&server, &format!("ctx-w{n}"), &["rust"]);
        assert_eq!(got, id);
        api(
            &server,
            "POST",
            &format!("/v1/tasks/{id}/checkpoints"),
            Some(
                &json!({"lease": lease, "summary": format!("checkpoint of attempt {n}"),
                         "state": {"step": n}}),
            ),
        );
        let body = match *how {
            "fail" => {
                json!({"error": "tests timed out", "retryable": true, "notes": long_notes(n)})
            }
            _ => json!({"notes": long_notes(n)}),
        };
        finish(&server, &id, how, &lease, body);
    }
    let outcomes = ["released", "failed", "released"];

    let context = |max: Option<usize>| {
        let max = max.map(|m| m.to_string());
        let mut args = vec!["context", id.as_str()];
        if let Some(m) = &max {
            args.extend(["--max-bytes", m.as_str()]);
        }
        run(&server, &args)
    };
    let full = context(None);
    assert!(full.status.success(), "{}", stderr_of(&full));
    let full = String::from_utf8(full.stdout).unwrap();
    for n in 1..=3 {
        assert!(
            full.contains(&long_notes(n)),
            "notes of attempt {n} missing:\n{full}"
        );
    }
    assert!(!full.contains("## Omitted"), "{full}");
    // The command prints the bundle byte for byte as the server renders
    // it, so the budget holds for what a model is given.
    let rendered = http(
        server.addr,
        "GET",
        &format!("/v1/tasks/{id}/context?format=markdown"),
        Some(&server.token),
        None,
    );
    assert_eq!(rendered.status, 200);
    let body = String::from_utf8(rendered.body).unwrap();
    assert_eq!(full, body);
    let rendered = body.len();

    // Too small even for the essentials: refused, with the size that fits.
    let out = context(Some(100));
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("context_too_large"), "{err}");
    let min: usize = err
        .split("at least ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no minimum size in: {err}"));
    assert!(min < full.len(), "min {min} >= full {}", full.len());

    let span = rendered - min;
    let budgets = [
        min,
        min + 1,
        min + span / 4,
        min + span / 2,
        min + 3 * span / 4,
        full.len(),
        rendered - 1,
        rendered,
        rendered + 1000,
    ];
    for max in budgets {
        let out = context(Some(max));
        assert!(
            out.status.success(),
            "--max-bytes {max}: {}",
            stderr_of(&out)
        );
        let md = String::from_utf8(out.stdout).unwrap();
        let at = |what: &str| format!("--max-bytes {max}: {what}:\n{md}");
        assert!(md.len() <= max, "{}", at(&format!("{} bytes", md.len())));

        // Never dropped: the task, its goal, every criterion, and the
        // latest checkpoint (not an earlier one).
        assert!(
            md.starts_with("# Task: Add token rotation\n"),
            "{}",
            at("title")
        );
        assert!(
            md.contains("Rotate signing keys without downtime."),
            "{}",
            at("goal")
        );
        for a in acceptance {
            assert!(md.contains(&format!("- [ ] {a}\n")), "{}", at(a));
        }
        assert!(
            md.contains("## Latest checkpoint (#3, attempt 3)\ncheckpoint of attempt 3\n"),
            "{}",
            at("checkpoint")
        );
        assert!(
            !md.contains("checkpoint of attempt 1"),
            "{}",
            at("old checkpoint")
        );

        // Everything else is either there whole or named as omitted.
        let dropped = md.contains("## Omitted to fit the size limit\n");
        assert_eq!(dropped, max < rendered, "{}", at("omitted section"));
        for (n, outcome) in (1..=3).zip(outcomes) {
            let shown = md.contains(&format!("### Attempt {n} by ctx-w{n}: {outcome}\n"))
                && md.contains(&long_notes(n));
            let omitted = md.contains(&format!("- attempt {n} ({outcome})\n"));
            assert!(shown != omitted, "{}", at(&format!("attempt {n}")));
        }
        for goal in ["Launch the public API", "Harden authentication"] {
            let shown = md.contains(&format!("### {goal} (`"));
            let omitted = md.contains(&format!("- goal {goal}\n"));
            assert!(shown != omitted, "{}", at(goal));
        }
        let shown = md.contains("- **Use Ed25519**: Small keys, fast verification.\n");
        let omitted = md.contains("- decision Use Ed25519\n");
        assert!(shown != omitted, "{}", at("decision"));
        // Oldest attempts go first.
        if md.contains("- attempt 2 (failed)\n") {
            assert!(
                md.contains("- attempt 1 (released)\n"),
                "{}",
                at("drop order")
            );
        }
        if max >= rendered {
            assert_eq!(md, full, "--max-bytes {max} changed a bundle that fits");
        }
    }

    // At the minimum, everything that may go has gone, in order.
    let out = context(Some(min));
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(
        md.trim_end().ends_with(
            "## Omitted to fit the size limit\n\
             - attempt 1 (released)\n\
             - attempt 2 (failed)\n\
             - attempt 3 (released)\n\
             - decision Use Ed25519\n\
             - goal Launch the public API\n\
             - goal Harden authentication"
        ),
        "{md}"
    );
}
