//! Importing a plan: the goal and its subtasks created in one transaction,
//! matched by key so that importing again creates only what is new.

use std::collections::HashMap;

use aruntime_api::{NewTask, PlanEntry, PlanImport, PlanImported, PlanItem, TaskPatch};
use aruntime_core::{Task, TaskStatus, Timestamp};
use uuid::Uuid;

use super::rows;
use super::tasks::{self, load};
use super::writer::WriteCtx;
use crate::{Created, Idempotency, Result, StoreError};

fn spec(item: &PlanItem, depends_on: Vec<Uuid>, parent_id: Option<Uuid>) -> NewTask {
    NewTask {
        title: item.title.clone(),
        goal: item.goal.clone(),
        acceptance: item.acceptance.clone(),
        labels: item.labels.clone(),
        priority: item.priority,
        depends_on,
        parent_id,
        max_attempts: item.max_attempts,
        lease_ttl_s: item.lease_ttl_s,
        hold: false,
    }
}

/// The task created under `key` by an earlier import, or a new one.
async fn ensure(
    ctx: &mut WriteCtx,
    tenant: &str,
    key: String,
    spec: NewTask,
    now: Timestamp,
) -> Result<Created<Task>> {
    let found = sqlx::query("SELECT id FROM tasks WHERE tenant_id = $1 AND idem_key = $2")
        .bind(tenant)
        .bind(&key)
        .fetch_optional(&mut ctx.conn)
        .await?;
    if let Some(row) = found {
        let id = rows::uuid(&row, "id")?;
        return Ok(Created {
            value: load(ctx, tenant, id).await?,
            created: false,
        });
    }
    // The hash is fixed: an import matches by key alone, never conflicts.
    let idem = Idempotency {
        key,
        request_hash: "plan".into(),
    };
    tasks::create(ctx, tenant.to_owned(), spec, Some(idem), now).await
}

/// Creates what the plan names and does not exist yet. The goal waits on
/// every subtask, so it becomes ready last: its worker sees all their
/// results and checks the goal's acceptance criteria.
pub(crate) async fn import(
    ctx: &mut WriteCtx,
    tenant: String,
    plan: PlanImport,
    now: Timestamp,
) -> Result<PlanImported> {
    let order = plan.order().map_err(|e| StoreError::Invalid {
        field: e.field,
        message: e.message,
    })?;
    // The goal first, without dependencies: its children need its id.
    let mut goal = ensure(
        ctx,
        &tenant,
        format!("plan:{}", plan.key),
        spec(&plan.goal, vec![], None),
        now,
    )
    .await?;
    let mut ids: HashMap<&str, Uuid> = HashMap::new();
    let mut entries: Vec<Option<PlanEntry>> = vec![None; plan.tasks.len()];
    for i in order {
        let item = &plan.tasks[i];
        let deps = item
            .depends_on
            .iter()
            .filter_map(|k| ids.get(k.as_str()).copied())
            .collect();
        let c = ensure(
            ctx,
            &tenant,
            format!("plan:{}:{}", plan.key, item.key),
            spec(item, deps, Some(goal.value.id)),
            now,
        )
        .await?;
        ids.insert(item.key.as_str(), c.value.id);
        entries[i] = Some(PlanEntry {
            key: item.key.clone(),
            created: c.created,
            task: c.value,
        });
    }
    let mut all: Vec<Uuid> = goal.value.depends_on.clone();
    for e in entries.iter().flatten() {
        if !all.contains(&e.task.id) {
            all.push(e.task.id);
        }
    }
    let waits_on_all = all.len() == goal.value.depends_on.len();
    // A goal already leased or finished keeps its dependencies; new items
    // then only add to the board.
    let editable = matches!(goal.value.status, TaskStatus::Backlog | TaskStatus::Ready);
    if !waits_on_all && editable {
        let patch = TaskPatch {
            depends_on: Some(all),
            ..TaskPatch::default()
        };
        goal.value = tasks::patch(ctx, tenant.clone(), goal.value.id, patch, now).await?;
    }
    Ok(PlanImported {
        key: plan.key,
        goal: PlanEntry {
            key: String::new(),
            created: goal.created,
            task: goal.value,
        },
        tasks: entries.into_iter().flatten().collect(),
    })
}
