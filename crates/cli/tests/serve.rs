//! `aruntime serve` as a process: the address it prints, the admin token
//! file, SIGTERM with a long-poll in flight, stopping when its standard
//! input closes, a refused `--database`, and `--help`.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Proc, Server, command, http, read_response, request_bytes};

/// How long a SIGTERMed server may take to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

#[test]
fn listen_port_zero_prints_the_bound_address_and_healthz_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Server::start(dir.path());

    assert!(srv.addr.ip().is_loopback(), "bound to {}", srv.addr);
    assert_eq!(srv.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(srv.addr.port(), 0, "printed port 0");

    let r = http(srv.addr, "GET", "/healthz", None, None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), json!({"status": "ok"}));

    // The address line is the only thing on stdout for the process's life.
    srv.proc.sigterm();
    let status = srv
        .proc
        .wait_timeout(EXIT_DEADLINE)
        .expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    srv.proc.drain_output(Duration::from_secs(5));
    assert_eq!(
        srv.proc.stdout_lines(),
        vec![format!("aruntime listening on http://{}", srv.addr)],
        "stdout must hold exactly the address line"
    );
}

#[test]
fn exit_on_stdin_close_stops_the_server_when_its_input_closes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&["serve", "--listen", "127.0.0.1:0", "--data-dir"]);
    cmd.arg(dir.path()).arg("--exit-on-stdin-close");
    let (mut proc, mut stdin) = Proc::spawn_with_stdin(cmd);
    let line = proc
        .first_line(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no address line; stderr:\n{}", proc.stderr()));
    let addr = support::parse_listening(&line);

    // Input that is not end-of-file changes nothing.
    stdin.write_all(b"ignored\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(http(addr, "GET", "/healthz", None, None).status, 200);
    assert!(proc.wait_timeout(Duration::ZERO).is_none(), "exited early");

    drop(stdin);
    let status = proc
        .wait_timeout(EXIT_DEADLINE)
        .unwrap_or_else(|| panic!("still running after its input closed"));
    assert!(status.success(), "exit status {status:?}");
    proc.drain_output(Duration::from_secs(5));
    assert!(
        proc.stderr().contains("standard input closed"),
        "stderr:\n{}",
        proc.stderr()
    );
}

#[test]
fn admin_token_is_private_works_and_survives_a_restart() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.token");
    let mut first = Server::start(dir.path());

    let meta = std::fs::metadata(&path).expect("admin.token exists");
    assert!(meta.is_file());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "admin.token mode is {:o}",
        meta.permissions().mode() & 0o777
    );
    let contents = std::fs::read_to_string(&path).unwrap();
    assert!(!first.token.is_empty(), "empty token");
    assert!(
        !dir.path().join("admin.token.new").exists(),
        "temporary token file left behind"
    );

    // The token is a working bearer credential; others are not.
    let ok = http(first.addr, "GET", "/v1/tasks", Some(&first.token), None);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.json()["tasks"].is_array());
    let created = http(
        first.addr,
        "POST",
        "/v1/tasks",
        Some(&first.token),
        Some(&json!({"title": "made with the admin token"})),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let none = http(first.addr, "GET", "/v1/tasks", None, None);
    assert_eq!(none.status, 401, "{none:?}");
    let wrong = http(first.addr, "GET", "/v1/tasks", Some("not-a-token"), None);
    assert_eq!(wrong.status, 401, "{wrong:?}");

    first.proc.sigterm();
    let status = first
        .proc
        .wait_timeout(EXIT_DEADLINE)
        .expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    first.proc.drain_output(Duration::from_secs(5));
    assert!(
        first.proc.stderr().contains("first start"),
        "first start should say it created the token; stderr:\n{}",
        first.proc.stderr()
    );

    // A second start keeps the file and the token.
    let second = Server::start(dir.path());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        contents,
        "admin.token was rewritten on the second start"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(second.token, first.token);
    let r = http(
        second.addr,
        "GET",
        &format!("/v1/tasks/{id}"),
        Some(&first.token),
        None,
    );
    assert_eq!(r.status, 200, "old token refused after restart: {r:?}");
    assert_eq!(r.json()["title"], "made with the admin token");
    assert!(
        !second.proc.stderr().contains("first start"),
        "second start claims to be a first start; stderr:\n{}",
        second.proc.stderr()
    );
}

/// From `/proc/net/tcp`: (tx_queue, rx_queue) of the IPv4 socket whose
/// local port is `local` and remote port is `remote`. `None` when not found
/// or not on Linux.
fn tcp_queues(local: u16, remote: u16) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        if port(f[1]) == Some(local) && port(f[2]) == Some(remote) {
            let (tx, rx) = f[4].split_once(':')?;
            return Some((
                u64::from_str_radix(tx, 16).ok()?,
                u64::from_str_radix(rx, 16).ok()?,
            ));
        }
    }
    None
}

#[test]
fn sigterm_exits_promptly_and_answers_a_pending_long_poll() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Server::start(dir.path());

    // Nothing is ready, so this claim would wait 30 s.
    let mut conn = TcpStream::connect(srv.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let client_port = conn.local_addr().unwrap().port();
    let body = json!({"worker": "w-longpoll", "max": 1, "wait_ms": 30000});
    conn.write_all(&request_bytes(
        srv.addr,
        "POST",
        "/v1/leases",
        Some(&srv.token),
        Some(&body),
    ))
    .unwrap();
    let sent = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = read_response(&mut conn);
        let _ = tx.send((Instant::now(), r));
    });

    // Wait until the server process has read the whole request (its socket's
    // receive queue is empty and our send queue is acknowledged), so the
    // claim is in its handler when the signal lands, not still in a socket
    // buffer. Polled with a deadline; skipped where /proc/net/tcp is absent.
    if std::path::Path::new("/proc/net/tcp").exists() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let server_side = tcp_queues(srv.addr.port(), client_port);
            let client_side = tcp_queues(client_port, srv.addr.port());
            if let (Some((_, 0)), Some((0, _))) = (server_side, client_side) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not read the long-poll request: server {server_side:?}, client {client_side:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(
        rx.try_recv().is_err(),
        "the long-poll returned before SIGTERM although nothing was ready"
    );

    let signalled = Instant::now();
    srv.proc.sigterm();
    let status = srv.proc.wait_timeout(EXIT_DEADLINE);
    let exited = Instant::now();
    let Some(status) = status else {
        panic!(
            "aruntime still running {EXIT_DEADLINE:?} after SIGTERM with a long-poll in flight; stderr:\n{}",
            srv.proc.stderr()
        );
    };
    srv.proc.drain_output(Duration::from_secs(5));
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        srv.proc.stderr()
    );
    assert!(
        srv.proc.stderr().contains("aruntime: stopped"),
        "stderr:\n{}",
        srv.proc.stderr()
    );

    // The long-poll got a real answer (a dead process cannot write one), and
    // long before its 30 s wait ran out.
    let (answered, resp) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the long-poll connection did not finish after the server exited");
    let resp = resp.unwrap_or_else(|e| panic!("long-poll got no HTTP answer: {e}"));
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json(), json!({"leases": []}));
    assert!(
        answered.duration_since(sent) < Duration::from_secs(15),
        "the long-poll took {:?}",
        answered.duration_since(sent)
    );
    assert!(
        exited.duration_since(signalled) < EXIT_DEADLINE,
        "exit took {:?}",
        exited.duration_since(signalled)
    );
}

#[test]
fn unsupported_database_url_is_refused_clearly() {
    for url in ["mysql://user@127.0.0.1/db", "redis://127.0.0.1:6379"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data_str = data.to_str().unwrap();
        let mut p = Proc::spawn(command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_str,
            "--database",
            url,
        ]));
        let status = p.wait_timeout(Duration::from_secs(30));
        p.drain_output(Duration::from_secs(5));
        let Some(status) = status else {
            panic!(
                "aruntime kept running with --database {url}; stdout {:?}; stderr:\n{}",
                p.stdout_lines(),
                p.stderr()
            );
        };
        let stderr = p.stderr();
        assert!(!status.success(), "--database {url} exited with {status:?}");
        assert!(
            stderr.contains("unsupported database") && stderr.contains(url),
            "--database {url}: stderr does not say why:\n{stderr}"
        );
        assert!(
            p.stdout_lines().is_empty(),
            "--database {url}: printed {:?}",
            p.stdout_lines()
        );
        assert!(
            !data.join("admin.token").exists(),
            "--database {url}: an admin token was written although nothing started"
        );
    }
}

#[test]
fn unreachable_postgres_fails_to_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Port 1 on loopback: nothing listens there, so the connect is refused.
    let url = "postgres://postgres@127.0.0.1:1/aruntime";
    let mut p = Proc::spawn(command(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--database",
        url,
    ]));
    let status = p
        .wait_timeout(Duration::from_secs(60))
        .expect("aruntime kept running");
    p.drain_output(Duration::from_secs(5));
    assert!(!status.success());
    let stderr = p.stderr();
    assert!(
        stderr.contains("opening the store"),
        "stderr does not say why:\n{stderr}"
    );
    assert!(p.stdout_lines().is_empty());
}

#[test]
fn help_succeeds() {
    let top = command(&["--help"]).output().unwrap();
    assert!(top.status.success(), "{top:?}");
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(text.contains("serve"), "--help:\n{text}");

    let serve = command(&["serve", "--help"]).output().unwrap();
    assert!(serve.status.success(), "{serve:?}");
    let text = String::from_utf8_lossy(&serve.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--database",
        "--sqlite-sync",
        "--log",
    ] {
        assert!(text.contains(flag), "serve --help lacks {flag}:\n{text}");
    }

    let version = command(&["--version"]).output().unwrap();
    assert!(version.status.success(), "{version:?}");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("aruntime "));
}
