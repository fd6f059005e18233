//! The operations a workload drives, over the store in-process (no HTTP)
//! or over the HTTP client. Both do the same work per call: a claim also
//! loads each task's context bundle, as the server does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use aruntime_api::{CompleteRequest, LeaseCompletion, NewCheckpoint, NewTask};
use aruntime_client::{Client, Finish};
use aruntime_core::{Artifact, Clock, SystemClock, Timestamp};
use aruntime_store::{ClaimParams, Store, claim_waiting};
use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

/// A granted lease, as a workload needs it.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    /// The task.
    pub(crate) task: Uuid,
    /// The token.
    pub(crate) token: String,
    /// The attempt number.
    pub(crate) attempt: u32,
}

/// What workloads call.
#[async_trait]
pub(crate) trait Api: Send + Sync {
    /// Creates a task.
    async fn create(&self, spec: NewTask) -> Result<Uuid>;
    /// Leases up to `max`, waiting up to `wait_ms` for one.
    async fn claim(
        &self,
        worker: &str,
        max: u32,
        wait_ms: u64,
        ttl_s: Option<u32>,
    ) -> Result<Vec<Lease>>;
    /// Writes a checkpoint.
    async fn checkpoint(
        &self,
        l: &Lease,
        summary: &str,
        state: Value,
        artifacts: Vec<Artifact>,
    ) -> Result<()>;
    /// Completes a task.
    async fn complete(&self, l: &Lease, result: Value) -> Result<()>;
    /// Completes several tasks in one call, each with `result`; fails if
    /// any of them was refused.
    async fn complete_many(&self, leases: &[Lease], result: Value) -> Result<()>;
    /// Stores a blob; returns its sha256.
    async fn blob(&self, bytes: Vec<u8>) -> Result<String>;
    /// How many claims are long-polling now, over every node.
    async fn waiting(&self) -> Result<u32>;
    /// One request that does nothing but answer (`GET /healthz`), for the
    /// HTTP floor; an error where there is no HTTP (the embedded store).
    async fn empty_request(&self) -> Result<()>;
    /// HTTP requests sent so far (none without HTTP).
    fn requests_sent(&self) -> u64;
}

/// The store in this process.
pub(crate) struct Embedded {
    /// The store.
    pub(crate) store: Arc<dyn Store>,
    /// The tenant everything runs in.
    pub(crate) tenant: String,
    /// Claims long-polling now (the server's `aruntime_claims_waiting`).
    pub(crate) waiting: Arc<AtomicU32>,
}

/// Counts a claim as long-polling while it lives.
struct Polling(Arc<AtomicU32>);

impl Polling {
    fn new(n: &Arc<AtomicU32>) -> Polling {
        n.fetch_add(1, Ordering::SeqCst);
        Polling(n.clone())
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn new_checkpoint(
    l: &Lease,
    summary: &str,
    state: Value,
    artifacts: Vec<Artifact>,
) -> NewCheckpoint {
    NewCheckpoint {
        lease: l.token.clone(),
        summary: summary.into(),
        state,
        artifacts,
        test_results: Value::Null,
    }
}

fn now() -> Timestamp {
    SystemClock.now()
}

#[async_trait]
impl Api for Embedded {
    async fn create(&self, spec: NewTask) -> Result<Uuid> {
        Ok(self
            .store
            .task_create(&self.tenant, spec, None, now())
            .await?
            .value
            .id)
    }

    async fn claim(
        &self,
        worker: &str,
        max: u32,
        wait_ms: u64,
        ttl_s: Option<u32>,
    ) -> Result<Vec<Lease>> {
        let params = ClaimParams {
            worker: worker.into(),
            capabilities: vec![],
            max,
            ttl_s,
        };
        // Nothing stops an embedded claim early: the sender stays unused.
        let (_never, mut stop) = tokio::sync::watch::channel(false);
        let wait = Duration::from_millis(wait_ms);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let out = claim_waiting(
            self.store.as_ref(),
            &clock,
            &self.tenant,
            &params,
            wait,
            &mut stop,
            || Polling::new(&self.waiting),
        )
        .await?;
        // The server loads the granted tasks' contexts too, all in one
        // call: one context read per task (a transaction and three
        // queries each) cost a quarter of this target's CPU, work the
        // server never does.
        let tasks = out.granted.iter().map(|c| c.task.clone()).collect();
        self.store.contexts(&self.tenant, tasks).await?;
        let mut leases = Vec::with_capacity(out.granted.len());
        for c in out.granted {
            leases.push(Lease {
                task: c.task.id,
                token: c.lease,
                attempt: c.attempt,
            });
        }
        Ok(leases)
    }

    async fn checkpoint(
        &self,
        l: &Lease,
        summary: &str,
        state: Value,
        artifacts: Vec<Artifact>,
    ) -> Result<()> {
        let cp = new_checkpoint(l, summary, state, artifacts);
        self.store
            .checkpoint_put(&self.tenant, l.task, cp, now())
            .await?;
        Ok(())
    }

    async fn complete(&self, l: &Lease, result: Value) -> Result<()> {
        let how = aruntime_store::Finish::Complete { result };
        self.store
            .task_finish(&self.tenant, l.task, &l.token, how, now())
            .await?;
        Ok(())
    }

    async fn complete_many(&self, leases: &[Lease], result: Value) -> Result<()> {
        let entries = leases
            .iter()
            .map(|l| (l.task, l.token.clone(), result.clone()))
            .collect();
        for answer in self
            .store
            .task_complete_many(&self.tenant, entries, now())
            .await
        {
            answer?;
        }
        Ok(())
    }

    async fn blob(&self, bytes: Vec<u8>) -> Result<String> {
        Ok(self
            .store
            .blob_put(&self.tenant, &bytes, now())
            .await?
            .sha256)
    }

    async fn waiting(&self) -> Result<u32> {
        Ok(self.waiting.load(Ordering::SeqCst))
    }

    async fn empty_request(&self) -> Result<()> {
        bail!("the embedded store has no HTTP to send an empty request over")
    }

    fn requests_sent(&self) -> u64 {
        0
    }
}

/// A server over HTTP.
pub(crate) struct Http {
    /// One client per node; calls spread over them round-robin. Every
    /// request takes its client from [`Http::client`], so the round-robin
    /// counter also counts the requests sent.
    pub(crate) clients: Vec<Client>,
    next: std::sync::atomic::AtomicUsize,
}

impl Http {
    /// Over these nodes.
    pub(crate) fn new(clients: Vec<Client>) -> Http {
        Http {
            clients,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn client(&self) -> &Client {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.clients[i % self.clients.len()]
    }
}

#[async_trait]
impl Api for Http {
    /// With `Prefer: return=minimal`: a producer needs only the id, and
    /// the whole task's JSON, written by the server and read here, was
    /// about a fifth of a create's CPU on both sides (performance.md,
    /// finding 71).
    async fn create(&self, spec: NewTask) -> Result<Uuid> {
        Ok(self.client().task_create_minimal(&spec, None).await?.0.id)
    }

    async fn claim(
        &self,
        worker: &str,
        max: u32,
        wait_ms: u64,
        ttl_s: Option<u32>,
    ) -> Result<Vec<Lease>> {
        let req = aruntime_api::ClaimRequest {
            worker: worker.into(),
            capabilities: vec![],
            max,
            wait_ms,
            ttl_s,
        };
        let r = self.client().claim_raw(&req).await?;
        Ok(r.leases
            .into_iter()
            .map(|g| Lease {
                task: g.task.id,
                token: g.lease,
                attempt: g.attempt,
            })
            .collect())
    }

    async fn checkpoint(
        &self,
        l: &Lease,
        summary: &str,
        state: Value,
        artifacts: Vec<Artifact>,
    ) -> Result<()> {
        let cp = new_checkpoint(l, summary, state, artifacts);
        self.client().checkpoint(l.task, &cp).await?;
        Ok(())
    }

    async fn complete(&self, l: &Lease, result: Value) -> Result<()> {
        let how = Finish::Complete(CompleteRequest {
            lease: l.token.clone(),
            result,
        });
        self.client().finish_minimal(l.task, &how).await?;
        Ok(())
    }

    async fn complete_many(&self, leases: &[Lease], result: Value) -> Result<()> {
        let completions = leases
            .iter()
            .map(|l| LeaseCompletion {
                task: l.task,
                lease: l.token.clone(),
                result: result.clone(),
            })
            .collect();
        let outcomes = self.client().complete_leases(completions).await?;
        if let Some(e) = outcomes.iter().find_map(|o| o.error.as_ref()) {
            bail!("a completion was refused: {} ({})", e.message, e.code);
        }
        Ok(())
    }

    async fn blob(&self, bytes: Vec<u8>) -> Result<String> {
        Ok(self.client().blob_put(bytes).await?.sha256)
    }

    async fn empty_request(&self) -> Result<()> {
        Ok(self.client().health().await?)
    }

    fn requests_sent(&self) -> u64 {
        self.next.load(std::sync::atomic::Ordering::Relaxed) as u64
    }

    async fn waiting(&self) -> Result<u32> {
        let mut n = 0;
        for c in &self.clients {
            for line in c.metrics().await?.lines() {
                if let Some(rest) = line.strip_prefix("aruntime_claims_waiting{")
                    && let Some((_, v)) = rest.rsplit_once(' ')
                {
                    n += v.parse::<u32>()?;
                }
            }
        }
        Ok(n)
    }
}
