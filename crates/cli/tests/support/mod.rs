//! Runs the real `aruntime` binary as a child process, and a tiny blocking
//! HTTP/1.1 client for talking to it without an async runtime.
//!
//! Nothing here sleeps to synchronise: the listening address is read from
//! the child's stdout (with a timeout), and waiting for an exit polls
//! `try_wait` until a deadline.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a server may take to print its address.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_aruntime")
}

/// `aruntime ARGS` with no `ARUNTIME_*` variables inherited from the
/// environment, so only the flags given here configure it.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ARUNTIME_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A child process whose stdout lines and stderr bytes are collected by
/// background threads (so it never blocks on a full pipe). Killed on drop.
pub struct Proc {
    child: Child,
    /// Lines of stdout as they arrive; the first one is also sent on `first`.
    stdout_lines: Arc<Mutex<Vec<String>>>,
    stdout_done: mpsc::Receiver<()>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: mpsc::Receiver<()>,
    first: mpsc::Receiver<String>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr piped.
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null());
        Proc::spawn_piped(cmd)
    }

    /// Spawns `cmd` with stdin piped too, and hands back the writing end.
    pub fn spawn_with_stdin(mut cmd: Command) -> (Proc, ChildStdin) {
        cmd.stdin(Stdio::piped());
        let mut p = Proc::spawn_piped(cmd);
        let stdin = p.child.stdin.take().expect("stdin piped");
        (p, stdin)
    }

    fn spawn_piped(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn aruntime");
        let out = child.stdout.take().expect("stdout piped");
        let err = child.stderr.take().expect("stderr piped");

        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let (first_tx, first) = mpsc::channel();
        let (out_done_tx, stdout_done) = mpsc::channel();
        {
            let lines = stdout_lines.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(out);
                let mut sent = false;
                loop {
                    let mut line = String::new();
                    match r.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = line.trim_end_matches(['\r', '\n']).to_owned();
                            lines.lock().unwrap().push(line.clone());
                            if !sent {
                                let _ = first_tx.send(line);
                                sent = true;
                            }
                        }
                    }
                }
                let _ = out_done_tx.send(());
            });
        }

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (err_done_tx, stderr_done) = mpsc::channel();
        {
            let buf = stderr.clone();
            std::thread::spawn(move || {
                let mut r = err;
                let mut chunk = [0u8; 4096];
                loop {
                    match r.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = err_done_tx.send(());
            });
        }

        Proc {
            child,
            stdout_lines,
            stdout_done,
            stderr,
            stderr_done,
            first,
            status: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first stdout line, or `None` if none came within `timeout`
    /// (including when the process exited without printing one).
    pub fn first_line(&self, timeout: Duration) -> Option<String> {
        self.first.recv_timeout(timeout).ok()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Every stdout line so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_lines.lock().unwrap().clone()
    }

    /// Waits for the output pipes to reach end-of-file (after an exit),
    /// so `stdout_lines` and `stderr` are complete. Bounded by `timeout`.
    pub fn drain_output(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let _ = self.stdout_done.recv_timeout(left());
        let _ = self.stderr_done.recv_timeout(left());
    }

    /// Polls for the exit until `timeout` has passed; `None` if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.status {
            return Some(s);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.status = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // A poll interval, not a synchronisation: the condition is re-checked.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        // `Child::kill` sends SIGKILL on Unix.
        self.child.kill().expect("SIGKILL");
        let s = self.child.wait().expect("reap");
        self.status = Some(s);
        s
    }

    /// Sends SIGTERM with the system `kill` command (the workspace forbids
    /// `unsafe`, so no `libc::kill`).
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill -TERM")
            .success();
        assert!(ok, "kill -TERM {} failed", self.pid());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running `aruntime serve`.
pub struct Server {
    pub proc: Proc,
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The admin token read from `<data_dir>/admin.token`, trimmed.
    pub token: String,
    pub data_dir: PathBuf,
}

/// Parses `aruntime listening on http://IP:PORT`.
pub fn parse_listening(line: &str) -> SocketAddr {
    let rest = line
        .strip_prefix("aruntime listening on http://")
        .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"));
    rest.parse()
        .unwrap_or_else(|e| panic!("bad address {rest:?} in {line:?}: {e}"))
}

impl Server {
    /// `aruntime serve --listen 127.0.0.1:0 --data-dir DIR` with defaults
    /// for everything else (durable SQLite).
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// As [`Server::start`], with extra flags.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        let dir = data_dir.to_str().expect("utf-8 temp path");
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", dir];
        args.extend_from_slice(extra);
        let mut proc = Proc::spawn(command(&args));
        let Some(line) = proc.first_line(START_TIMEOUT) else {
            let status = proc.wait_timeout(Duration::from_secs(5));
            proc.drain_output(Duration::from_secs(5));
            panic!(
                "aruntime printed no address within {START_TIMEOUT:?} (exit: {status:?}); stderr:\n{}",
                proc.stderr()
            );
        };
        let addr = parse_listening(&line);
        let token = read_token(data_dir);
        Server {
            proc,
            addr,
            base: format!("http://{addr}"),
            token,
            data_dir: data_dir.to_path_buf(),
        }
    }
}

/// The admin token in `<dir>/admin.token`, trimmed.
pub fn read_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("admin.token"))
        .expect("read admin.token")
        .trim()
        .to_owned()
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Formats one HTTP/1.1 request with `Connection: close`.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Vec<u8> {
    let body = body.map(|b| serde_json::to_vec(b).unwrap());
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = &body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(&b);
    }
    bytes
}

/// Reads a whole `Connection: close` response.
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Resp> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Splits a raw response into status, head and body (Content-Length or
/// to end of stream; axum answers JSON with a Content-Length).
pub fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(format!(
                "no complete response head in {} bytes: {:?}",
                raw.len(),
                String::from_utf8_lossy(raw)
            ))
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line: {head:?}")))?;
    let body = raw[split + 4..].to_vec();
    Ok(Resp { status, head, body })
}

/// One blocking request on a fresh connection (timeout 30 s).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&request_bytes(addr, method, path, token, body))
        .unwrap();
    read_response(&mut s).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

// ---- Helpers for the client-command tests (worker_e2e.rs, cli_output.rs) ----

/// `aruntime ARGS` pointed at `server` through `ARUNTIME_URL` and
/// `ARUNTIME_TOKEN`, set explicitly because [`command`] clears them.
pub fn client_command(server: &Server, args: &[&str]) -> Command {
    let mut cmd = command(args);
    cmd.env("ARUNTIME_URL", &server.base)
        .env("ARUNTIME_TOKEN", &server.token);
    cmd
}

/// Runs `cmd` as [`run_with_timeout`] does and returns its stdout; panics
/// with the command, its exit code and its stderr unless it succeeded.
pub fn stdout_of_success(cmd: Command, timeout: Duration) -> String {
    let what = format!("{cmd:?}");
    let out = run_with_timeout(cmd, timeout);
    assert!(
        out.status.success(),
        "{what} exited {:?}:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{what} printed non-UTF-8: {e}"))
}

/// Runs `cmd` to completion with stdin closed, keeping stdout and stderr
/// byte for byte. Panics (after killing it) if it runs past `timeout`, so a
/// hung command fails the test instead of hanging it.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> std::process::Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = read_all(Box::new(child.stdout.take().expect("stdout piped")));
    let err = read_all(Box::new(child.stderr.take().expect("stderr piped")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still ran after {timeout:?}");
        }
        // A poll interval, not a synchronisation: the exit is re-checked.
        std::thread::sleep(Duration::from_millis(5));
    };
    std::process::Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Polls `probe` every 20 ms until it returns `Some`, for at most `timeout`;
/// panics naming `what` if it never does.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        // A poll interval, not a synchronisation: the condition is re-checked.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `SIG` (e.g. `"INT"`, `"KILL"`) to `pid` with the system `kill`
/// command; whether it was delivered is returned, not asserted.
pub fn send_signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `pid` is a live (not zombie) process, from `/proc/PID/stat`.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// The command line of `pid` with NULs as spaces; empty if it is gone.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// SIGKILLs processes this test started outside [`Proc`] (e.g. a worker's
/// orphaned child) when dropped, so a failing test leaves nothing running.
/// Each pid comes with a piece of its command line, checked first so a
/// recycled pid is never hit.
#[derive(Default)]
pub struct KillOnDrop(pub Vec<(u32, String)>);

impl KillOnDrop {
    /// Kills `pid` on drop if its command line still contains `cmd`.
    pub fn add(&mut self, pid: u32, cmd: &str) {
        self.0.push((pid, cmd.to_owned()));
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for (pid, cmd) in &self.0 {
            if pid_alive(*pid) && cmdline(*pid).contains(cmd.as_str()) {
                send_signal(*pid, "KILL");
            }
        }
    }
}

/// `METHOD PATH` with the server's admin token; panics unless it answers
/// 2xx, and returns the JSON body.
pub fn api(server: &Server, method: &str, path: &str, body: Option<&Value>) -> Value {
    let r = http(server.addr, method, path, Some(&server.token), body);
    assert!(
        (200..300).contains(&r.status),
        "{method} {path} answered {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

/// The pids of `pid`'s children, from every thread's
/// `/proc/PID/task/TID/children` (a child belongs to the thread that
/// spawned it).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}
