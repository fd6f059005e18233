//! The `Store` trait implemented once over the shared SQL operations; each
//! backend compiles this file with its own `Backend`, writer and blob store.

use std::sync::Arc;

use aruntime_api::{
    BlobRef, Board, BoardQuery, EventPage, EventQuery, NewCheckpoint, NewDecision, NewTask,
    PlanImport, PlanImported, TaskPage, TaskPatch, TaskQuery, Tenant,
};
use aruntime_core::context::ContextBundle;
use aruntime_core::{Attempt, Checkpoint, Decision, Principal, Role, Task, TaskStatus, Timestamp};
use async_trait::async_trait;
use uuid::Uuid;

use super::grouped::{Grouped, Pending};
use super::{Backend, blobs, leases, plans, reads, tasks, tenants};
use crate::{
    ClaimOutcome, ClaimParams, Created, Finish, Idempotency, Result, Steer, Store, StoreError,
    Wakeups,
};

#[async_trait]
impl Store for Backend {
    async fn bootstrap(&self, admin_token_hash: &str, now: Timestamp) -> Result<bool> {
        let hash = admin_token_hash.to_owned();
        self.writer
            .write(None, move |ctx| {
                Box::pin(tenants::bootstrap(ctx, hash, now))
            })
            .await
    }

    async fn tenant_create(&self, name: &str, now: Timestamp) -> Result<Tenant> {
        let name = name.to_owned();
        self.writer
            .write(None, move |ctx| Box::pin(tenants::create(ctx, name, now)))
            .await
    }

    async fn token_create(
        &self,
        tenant: &str,
        role: Role,
        name: Option<String>,
        hash: &str,
        now: Timestamp,
    ) -> Result<()> {
        let (tenant, hash) = (tenant.to_owned(), hash.to_owned());
        self.writer
            .write(Some(tenant.clone()), move |ctx| {
                Box::pin(tenants::token(ctx, tenant, role, name, hash, now))
            })
            .await
    }

    async fn token_lookup(&self, hash: &str) -> Result<Option<Principal>> {
        reads::token_lookup(&self.read, hash).await
    }

    async fn task_create(
        &self,
        tenant: &str,
        spec: NewTask,
        idem: Option<Idempotency>,
        now: Timestamp,
    ) -> Result<Created<Task>> {
        let tenant = tenant.to_owned();
        if idem.is_none() && Grouped::plain_create(&spec) {
            let pending = Pending {
                now,
                op: Grouped::Create(spec),
            };
            let value = self
                .writer
                .write_grouped(tenant, pending)
                .await?
                .into_task()?;
            return Ok(Created {
                value,
                created: true,
            });
        }
        self.writer
            .write(Some(tenant.clone()), move |ctx| {
                Box::pin(tasks::create(ctx, tenant, spec, idem, now))
            })
            .await
    }

    async fn plan_import(
        &self,
        tenant: &str,
        plan: PlanImport,
        now: Timestamp,
    ) -> Result<PlanImported> {
        let tenant = tenant.to_owned();
        self.writer
            .write(Some(tenant.clone()), move |ctx| {
                Box::pin(plans::import(ctx, tenant, plan, now))
            })
            .await
    }

    async fn task_get(&self, tenant: &str, id: Uuid) -> Result<Task> {
        reads::task_get(&self.read, tenant, id).await
    }

    async fn task_list(&self, tenant: &str, q: &TaskQuery) -> Result<TaskPage> {
        reads::task_list(&self.read, tenant, q).await
    }

    async fn task_patch(
        &self,
        tenant: &str,
        id: Uuid,
        patch: TaskPatch,
        now: Timestamp,
    ) -> Result<Task> {
        let tenant = tenant.to_owned();
        self.writer
            .write(Some(tenant.clone()), move |ctx| {
                Box::pin(tasks::patch(ctx, tenant, id, patch, now))
            })
            .await
    }

    async fn task_steer(&self, tenant: &str, id: Uuid, cmd: Steer, now: Timestamp) -> Result<Task> {
        let tenant = tenant.to_owned();
        self.writer
            .write(Some(tenant.clone()), move |ctx| {
                Box::pin(tasks::steer(ctx, tenant, id, cmd, now))
            })
            .await
    }

    async fn board(&self, tenant: &str, q: &BoardQuery) -> Result<Board> {
        reads::board(&self.read, tenant, q).await
    }

    async fn task_counts(&self, tenant: &str) -> Result<Vec<(TaskStatus, u64)>> {
        reads::task_counts(&self.read, tenant).await
    }

    async fn lease_claim(
        &self,
        tenant: &str,
        p: ClaimParams,
        now: Timestamp,
    ) -> Result<ClaimOutcome> {
        let op = Grouped::Claim(p);
        self.writer
            .write_grouped(tenant.to_owned(), Pending { now, op })
            .await?
            .into_claim()
    }

    async fn lease_heartbeat(
        &self,
        tenant: &str,
        lease: &str,
        now: Timestamp,
    ) -> Result<(Uuid, Timestamp)> {
        let (tenant, lease) = (tenant.to_owned(), lease.to_owned());
        self.writer
            .write(None, move |ctx| {
                Box::pin(leases::heartbeat(ctx, tenant, lease, now))
            })
            .await
    }

    async fn checkpoint_put(
        &self,
        tenant: &str,
        task: Uuid,
        cp: NewCheckpoint,
        now: Timestamp,
    ) -> Result<Checkpoint> {
        let op = Grouped::Checkpoint(leases::CheckpointWrite::of(task, &cp));
        let (seq, attempt) = self
            .writer
            .write_grouped(tenant.to_owned(), Pending { now, op })
            .await?
            .into_checkpointed()?;
        Ok(Checkpoint {
            seq,
            attempt,
            summary: cp.summary,
            state: cp.state,
            artifacts: cp.artifacts,
            test_results: cp.test_results,
            created_at: now,
        })
    }

    async fn task_finish(
        &self,
        tenant: &str,
        task: Uuid,
        lease: &str,
        how: Finish,
        now: Timestamp,
    ) -> Result<Task> {
        let (tenant, lease) = (tenant.to_owned(), lease.to_owned());
        if let Finish::Complete { result } = how {
            let op = Grouped::Complete {
                id: task,
                token: lease,
                result,
                whole: true,
            };
            return self
                .writer
                .write_grouped(tenant, Pending { now, op })
                .await?
                .into_task();
        }
        self.writer
            .write(Some(tenant.clone()), move |ctx| {
                Box::pin(leases::finish(ctx, tenant, task, lease, how, now))
            })
            .await
    }

    async fn task_complete_many(
        &self,
        tenant: &str,
        entries: Vec<(Uuid, String, serde_json::Value)>,
        now: Timestamp,
    ) -> Vec<Result<TaskStatus>> {
        let each = entries.into_iter().map(|(id, token, result)| {
            let op = Grouped::Complete {
                id,
                token,
                result,
                whole: false,
            };
            let pending = Pending { now, op };
            async move {
                self.writer
                    .write_grouped(tenant.to_owned(), pending)
                    .await?
                    .into_status()
            }
        });
        futures::future::join_all(each).await
    }

    async fn lease_expire_due(&self, now: Timestamp, limit: u32) -> Result<Vec<(String, u32)>> {
        // One write per tenant, so each takes only its own tenant's lock.
        let mut out = vec![];
        for tenant in reads::tenants_with_expired(&self.read, now, limit).await? {
            let t = tenant.clone();
            let n = self
                .writer
                .write(Some(tenant.clone()), move |ctx| {
                    Box::pin(leases::expire_tenant(ctx, t, now))
                })
                .await?;
            if n > 0 {
                out.push((tenant, n));
            }
        }
        Ok(out)
    }

    async fn next_due(&self, tenant: &str, now: Timestamp) -> Result<Option<Timestamp>> {
        reads::next_due(&self.read, tenant, now).await
    }

    async fn checkpoint_list(&self, tenant: &str, task: Uuid) -> Result<Vec<Checkpoint>> {
        reads::checkpoint_list(&self.read, tenant, task).await
    }

    async fn checkpoint_get(&self, tenant: &str, task: Uuid, seq: i64) -> Result<Checkpoint> {
        reads::checkpoint_get(&self.read, tenant, task, seq).await
    }

    async fn attempt_list(&self, tenant: &str, task: Uuid) -> Result<Vec<Attempt>> {
        reads::attempt_list(&self.read, tenant, task).await
    }

    async fn decision_add(
        &self,
        tenant: &str,
        task: Uuid,
        d: NewDecision,
        now: Timestamp,
    ) -> Result<Decision> {
        let tenant = tenant.to_owned();
        self.writer
            .write(Some(tenant.clone()), move |ctx| {
                Box::pin(tasks::decision_add(ctx, tenant, task, d, now))
            })
            .await
    }

    async fn decision_list(&self, tenant: &str, task: Uuid) -> Result<Vec<Decision>> {
        reads::decision_list(&self.read, tenant, task).await
    }

    async fn context(&self, tenant: &str, task: Uuid) -> Result<ContextBundle> {
        reads::context(&self.read, tenant, task).await
    }

    async fn contexts(&self, tenant: &str, tasks: Vec<Task>) -> Result<Vec<ContextBundle>> {
        reads::contexts(&self.read, tenant, tasks).await
    }

    async fn blob_put(&self, tenant: &str, bytes: &[u8], now: Timestamp) -> Result<BlobRef> {
        blobs::put(self, tenant, bytes, now).await
    }

    async fn blob_get(&self, tenant: &str, sha256: &str) -> Result<Vec<u8>> {
        let sha = sha256.to_ascii_lowercase();
        if !reads::blob_known(&self.read, tenant, &sha).await? {
            return Err(StoreError::not_found("blob", sha));
        }
        blobs::get(self, tenant, &sha).await
    }

    async fn event_list(&self, tenant: &str, q: &EventQuery) -> Result<EventPage> {
        reads::event_list(&self.read, tenant, q).await
    }

    fn wakeups(&self) -> Arc<Wakeups> {
        self.wakeups.clone()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }
}
