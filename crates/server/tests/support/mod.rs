//! A real server on 127.0.0.1:0 in this process, over a temp data dir, with
//! a mock clock; and a small JSON client for it.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use aruntime_core::MockClock;
use aruntime_server::{ServeConfig, Server};
use aruntime_store::sqlite::Durability;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Which storage backend a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A test server on `backend`, or an early return when that backend is not
/// available here (the testkit has said so loudly).
#[allow(unused_macros)]
macro_rules! server {
    ($backend:expr) => {
        match $crate::support::TestServer::start_on($backend).await {
            Some(s) => s,
            None => return,
        }
    };
}

/// Expands test functions `async fn name(backend: Backend)` into one test
/// per backend: `sqlite::name` and `postgres::name`.
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}

pub struct TestServer {
    pub base: String,
    pub admin: String,
    pub clock: Arc<MockClock>,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    // Dropped last: the database goes away after the server.
    _db: Option<aruntime_testkit::TestDb>,
}

impl TestServer {
    /// On SQLite.
    pub async fn start() -> TestServer {
        TestServer::start_on(Backend::Sqlite).await.unwrap()
    }

    /// On `backend`; `None` when PostgreSQL is not available here.
    pub async fn start_on(backend: Backend) -> Option<TestServer> {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(MockClock::default());
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(aruntime_testkit::TestDb::create().await?),
        };
        let cfg = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            database: db.as_ref().map(|d| d.url.clone()),
            durability: Durability::Normal,
            mcp_allowed_hosts: vec![],
        };
        let server = Server::bind(&cfg, clock.clone()).await.unwrap();
        let base = format!("http://{}", server.addr);
        let admin = std::fs::read_to_string(dir.path().join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Some(TestServer {
            base,
            admin,
            clock,
            http: reqwest::Client::new(),
            dir,
            stop: Some(tx),
            task: Some(task),
            _db: db,
        })
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    /// Sends a request; returns the status and the body as text.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, String) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// Sends JSON (or nothing); returns the status and the JSON answer
    /// (`null` when the body is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (ct, bytes) = match body {
            Some(b) => (
                Some("application/json"),
                Some(serde_json::to_vec(&b).unwrap()),
            ),
            None => (None, None),
        };
        let (status, text) = self.raw(method, path, Some(token), ct, bytes).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// A token of `role` in `tenant`, creating the tenant if needed.
    pub async fn token(&self, tenant: &str, role: &str) -> String {
        if tenant != "default" {
            let (s, _) = self
                .post("/v1/tenants", &self.admin, json!({"name": tenant}))
                .await;
            assert!(s == 201 || s == 409, "creating tenant {tenant}: {s}");
        }
        let (s, v) = self
            .post(
                &format!("/v1/tenants/{tenant}/tokens"),
                &self.admin,
                json!({"role": role}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    /// Creates a task; returns it.
    pub async fn task(&self, token: &str, body: Value) -> Value {
        let (s, v) = self.post("/v1/tasks", token, body).await;
        assert_eq!(s, 201, "{v}");
        v
    }

    /// Claims without waiting; returns the granted leases.
    pub async fn claim(&self, token: &str, worker: &str, max: u32) -> Vec<Value> {
        let (s, v) = self
            .post("/v1/leases", token, json!({"worker": worker, "max": max}))
            .await;
        assert_eq!(s, 200, "{v}");
        v["leases"].as_array().unwrap().clone()
    }

    pub fn advance_s(&self, s: i64) {
        self.clock.advance_ms(s * 1000);
    }
}

pub fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}
