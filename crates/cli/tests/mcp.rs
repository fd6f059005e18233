//! The MCP server, driven by the official Python MCP SDK (`tests/mcp/agent.py`)
//! over both transports: streamable HTTP at `/mcp` and the `aruntime mcp`
//! stdio sidecar. The agent checks what a client sees (the tools and their
//! schemas, tool errors); these tests check what the server recorded, and
//! that a sidecar that dies, or whose agent dies, leaves its task to the
//! next worker with the checkpoint. Also: `/mcp` refuses bad tokens and
//! foreign `Host`s, and an MCP long-poll does not hold up shutdown.
//!
//! Needs `python3`; installs the `mcp` package with pip when it is missing.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Proc, Server, binary, http, read_response};

/// How long a SIGTERMed server may take to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// How long one agent run may take (it long-polls for at most 10 s).
const AGENT_DEADLINE: Duration = Duration::from_secs(120);

/// The agent script.
const AGENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/agent.py");

/// Installs the Python MCP SDK once per test binary if it is missing.
fn python_mcp() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let have = Command::new("python3")
            .args(["-c", "import mcp"])
            .status()
            .unwrap_or_else(|e| panic!("these tests need python3 on the PATH: {e}"))
            .success();
        if !have {
            let ok = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "mcp"])
                .status()
                .expect("run pip")
                .success();
            assert!(ok, "`python3 -m pip install --quiet mcp` failed");
        }
    });
}

/// Runs `agent.py ARGS` to the end and returns its JSON report (the last
/// stdout line). Panics with its stderr if it fails.
fn agent(args: &[&str]) -> Value {
    python_mcp();
    let mut cmd = Command::new("python3");
    cmd.arg(AGENT).args(args);
    let mut p = Proc::spawn(cmd);
    let status = p
        .wait_timeout(AGENT_DEADLINE)
        .unwrap_or_else(|| panic!("agent.py {args:?} still runs after {AGENT_DEADLINE:?}"));
    p.drain_output(Duration::from_secs(10));
    assert!(
        status.success(),
        "agent.py {args:?} failed ({status:?}); stderr:\n{}",
        p.stderr()
    );
    let lines = p.stdout_lines();
    let last = lines
        .last()
        .unwrap_or_else(|| panic!("agent.py {args:?} printed nothing; stderr:\n{}", p.stderr()));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("agent.py report {last:?}: {e}"))
}

/// `GET path` as JSON, asserting 200.
fn get(srv: &Server, path: &str) -> Value {
    let r = http(srv.addr, "GET", path, Some(&srv.token), None);
    assert_eq!(
        r.status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

/// What the agent's `work` left behind: a done task with its result, the
/// checkpoint and the decision.
fn assert_worked(srv: &Server, report: &Value, tools_expected: &[&str]) {
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in tools_expected {
        assert!(tools.contains(t), "tool {t} not listed: {tools:?}");
    }
    let id = report["task_id"].as_str().unwrap();

    let task = get(srv, &format!("/v1/tasks/{id}"));
    assert_eq!(task["status"], "done", "{task}");
    assert_eq!(task["result"], json!({"answer": 42}), "{task}");
    assert_eq!(task["attempts"], 1, "{task}");

    let cps = get(srv, &format!("/v1/tasks/{id}/checkpoints"));
    let cps = cps["checkpoints"].as_array().unwrap();
    assert_eq!(cps.len(), 1, "{cps:?}");
    assert_eq!(cps[0]["summary"], report["summary"]);
    assert_eq!(cps[0]["state"], json!({"step": 1}));
    assert_eq!(cps[0]["seq"], report["seq"]);

    let decisions = get(srv, &format!("/v1/tasks/{id}/decisions"));
    assert_eq!(decisions["decisions"][0]["title"], "use the MCP tools");
}

const TOOLS: &[&str] = &[
    "next_task",
    "get_context",
    "checkpoint",
    "complete_task",
    "fail_task",
    "block_task",
    "add_task",
    "list_tasks",
    "record_decision",
    "heartbeat",
];

#[test]
fn http_transport_leases_checkpoints_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path());
    let url = format!("{}/mcp", srv.base);
    let report = agent(&["http", &url, &srv.token]);
    assert_worked(&srv, &report, TOOLS);
}

#[test]
fn http_transport_refuses_missing_or_unknown_tokens_and_foreign_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path());
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});

    // Rejected before any MCP processing, with the API's own error shape.
    let r = http(srv.addr, "POST", "/mcp", None, Some(&list));
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.json()["error"]["code"], "unauthorized");
    let r = http(srv.addr, "POST", "/mcp", Some("art_unknown"), Some(&list));
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.json()["error"]["code"], "unauthorized");

    // A Host other than a loopback name (DNS rebinding) is refused even with
    // a good token.
    let host = format!("attacker.example:{}", srv.addr.port());
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&mcp_request(&host, &srv.token, &list)).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    // The same request with the server's own address is served.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&mcp_request(&srv.addr.to_string(), &srv.token, &list))
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json()["result"]["tools"].is_array(), "{r:?}");
}

/// A raw MCP POST (JSON-RPC `body`) with the given `Host` header.
fn mcp_request(host: &str, token: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn sigterm_with_an_mcp_long_poll_in_flight_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Server::start(dir.path());

    // Nothing is ready, so this next_task would wait 60 s.
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "next_task", "arguments": {"wait_ms": 60000}}});
    let mut conn = TcpStream::connect(srv.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    conn.write_all(&mcp_request(&srv.addr.to_string(), &srv.token, &call))
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_response(&mut conn));
    });

    // Polled with a deadline until the claim is waiting inside the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = http(srv.addr, "GET", "/metrics", Some(&srv.token), None);
        let body = String::from_utf8_lossy(&m.body).into_owned();
        if body.contains("aruntime_claims_waiting{tenant=\"default\"} 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the MCP claim never waited:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    srv.proc.sigterm();
    let Some(status) = srv.proc.wait_timeout(EXIT_DEADLINE) else {
        panic!(
            "aruntime still running {EXIT_DEADLINE:?} after SIGTERM with an MCP call in flight; \
             stderr:\n{}",
            srv.proc.stderr()
        );
    };
    assert!(status.success(), "exit status {status:?}");
    // Whatever the answer (the call is cut short), the connection ends.
    let _answer = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the MCP connection did not finish after the server exited");
}

#[test]
fn stdio_sidecar_leases_checkpoints_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path());
    let report = agent(&["stdio", binary(), &srv.base, &srv.token]);
    assert_worked(&srv, &report, TOOLS);
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
fn exited(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "PID (COMM) STATE ...": COMM may contain spaces, so split after ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Leases, checkpoints and abandons a task through the sidecar (`how`:
/// `kill` SIGKILLs the sidecar, `exit` kills only the agent), then checks
/// that the sidecar is gone and a plain HTTP worker gets the task as
/// attempt 2 with the checkpoint to resume from.
fn abandoned_task_is_resumed(how: &str) {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path());
    let report = agent(&["abandon", binary(), &srv.base, &srv.token, how]);
    let id = report["task_id"].as_str().unwrap();
    let pid = report["pid"].as_u64().unwrap();

    // With its agent gone the sidecar must exit, or its heartbeat would keep
    // the lease forever.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !exited(pid) {
        assert!(
            Instant::now() < deadline,
            "the sidecar (pid {pid}) still runs 30 s after its agent died ({how})"
        );
        // A poll interval, not a synchronisation: the condition is re-checked.
        std::thread::sleep(Duration::from_millis(10));
    }

    // The lease (TTL 2 s) runs out with nobody renewing it; the long-poll
    // returns once it has.
    let claim = json!({"worker": "successor", "wait_ms": 20000});
    let r = http(
        srv.addr,
        "POST",
        "/v1/leases",
        Some(&srv.token),
        Some(&claim),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let leases = r.json()["leases"].clone();
    assert_eq!(
        leases.as_array().unwrap().len(),
        1,
        "nothing re-leased: {leases}"
    );
    let lease = &leases[0];
    assert_eq!(lease["task"]["id"], id);
    assert_eq!(lease["attempt"], 2, "{lease}");
    let cp = &lease["context"]["latest_checkpoint"];
    assert_eq!(cp["summary"], report["summary"], "{lease}");
    assert_eq!(cp["state"], json!({"step": 1}));
}

#[test]
fn killed_sidecar_leaves_its_task_to_the_next_worker() {
    abandoned_task_is_resumed("kill");
}

#[test]
fn sidecar_exits_when_its_agent_dies_and_the_task_is_resumed() {
    abandoned_task_is_resumed("exit");
}
