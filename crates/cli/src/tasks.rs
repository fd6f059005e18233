//! The commands people use on tasks and their tenant: `task ...`,
//! `decision add`, `events`, `tenant add`, `token create`, `context`.

use std::time::Duration;

use aruntime_api::{EventQuery, NewDecision, NewTask, TaskQuery};
use aruntime_client::{Client, Steer};
use aruntime_core::context::Format;
use aruntime_core::{Role, Task, TaskStatus};
use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;

use crate::output::{self, Table, age, clip, list};
use crate::output::{out, outln};

fn status(s: &str) -> Result<TaskStatus, String> {
    TaskStatus::parse(s).ok_or_else(|| format!("unknown status `{s}`"))
}

fn role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown role `{s}`; one of {}", all.join(", "))
    })
}

fn format(s: &str) -> Result<Format, String> {
    match s {
        "markdown" | "md" => Ok(Format::Markdown),
        "json" => Ok(Format::Json),
        _ => Err(format!("unknown format `{s}`; markdown or json")),
    }
}

/// `aruntime task ...`.
#[derive(Subcommand, Debug)]
pub(crate) enum TaskCmd {
    /// Create a task.
    Add {
        /// One line saying what to do.
        title: String,
        /// The intent, in markdown.
        #[arg(long, default_value = "")]
        goal: String,
        /// An acceptance criterion (repeatable).
        #[arg(long = "accept")]
        acceptance: Vec<String>,
        /// A capability the worker needs (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Higher is leased first.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// A task that must be done first (repeatable).
        #[arg(long = "after")]
        depends_on: Vec<Uuid>,
        /// The goal this task is part of.
        #[arg(long)]
        parent: Option<Uuid>,
        /// Failed or abandoned attempts allowed.
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
        /// Lease time-to-live in seconds.
        #[arg(long, default_value_t = 60)]
        ttl: u32,
        /// Keep it in the backlog until `task unhold`.
        #[arg(long)]
        hold: bool,
        /// Makes a retried `add` return the first task instead of a second.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List tasks.
    List {
        /// Only this status (backlog, ready, running, blocked, failed, done, cancelled).
        #[arg(long, value_parser = status)]
        status: Option<TaskStatus>,
        /// Only tasks with this label.
        #[arg(long)]
        label: Option<String>,
        /// Only children of this goal.
        #[arg(long)]
        parent: Option<Uuid>,
    },
    /// A task with its attempts, checkpoints and decisions.
    Show {
        /// The task's id.
        id: Uuid,
    },
    /// Keep a task in the backlog.
    Hold {
        /// The task's id.
        id: Uuid,
    },
    /// Let a held task become ready.
    Unhold {
        /// The task's id.
        id: Uuid,
    },
    /// Let a blocked task be worked again.
    Unblock {
        /// The task's id.
        id: Uuid,
    },
    /// Stop a task for good (until reopened).
    Cancel {
        /// The task's id.
        id: Uuid,
    },
    /// Send a done, failed or cancelled task back to work.
    Reopen {
        /// The task's id.
        id: Uuid,
    },
}

/// `aruntime decision ...`.
#[derive(Subcommand, Debug)]
pub(crate) enum DecisionCmd {
    /// Record a decision on a task or goal; its subtasks inherit it.
    Add {
        /// The task or goal.
        task: Uuid,
        /// The decision, in one line.
        title: String,
        /// Why.
        #[arg(long, default_value = "")]
        why: String,
    },
}

/// `aruntime tenant ...`.
#[derive(Subcommand, Debug)]
pub(crate) enum TenantCmd {
    /// Create a tenant (admin of `default` only).
    Add {
        /// Lowercase letters, digits, `-` and `_`.
        name: String,
    },
}

/// `aruntime token ...`.
#[derive(Subcommand, Debug)]
pub(crate) enum TokenCmd {
    /// Create an API token; it is shown once.
    Create {
        /// admin, operator, worker, agent or viewer.
        #[arg(long, value_parser = role)]
        role: Role,
        /// Its tenant; default `default`.
        #[arg(long, default_value = aruntime_core::DEFAULT_TENANT)]
        tenant: String,
        /// Who holds it.
        #[arg(long)]
        name: Option<String>,
    },
}

/// `aruntime events` arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct EventsArgs {
    /// Start after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// Only this task's events.
    #[arg(long)]
    task: Option<Uuid>,
    /// Keep printing new events until interrupted.
    #[arg(long, short)]
    follow: bool,
}

/// `aruntime context` arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct ContextArgs {
    /// The task; default `$ARUNTIME_TASK_ID`.
    #[arg(env = "ARUNTIME_TASK_ID")]
    task: Uuid,
    /// markdown or json.
    #[arg(long, value_parser = format, default_value = "markdown")]
    format: Format,
    /// Fit into this many bytes, dropping the least important items whole.
    #[arg(long)]
    max_bytes: Option<u64>,
}

/// The column, and whether a person holds it there.
fn status_of(task: &Task) -> String {
    if task.held {
        format!("{} (held)", task.status.as_str())
    } else {
        task.status.as_str().to_owned()
    }
}

fn task_table(tasks: &[Task]) -> String {
    let now = output::now();
    let mut t = Table::new(&["STATUS", "PRI", "TITLE", "LABELS", "ATT", "AGE", "ID"]);
    for task in tasks {
        t.row(vec![
            status_of(task),
            task.priority.to_string(),
            clip(&task.title, 48),
            list(&task.labels),
            task.attempts.to_string(),
            age(now, task.created_at),
            task.id.to_string(),
        ]);
    }
    t.render()
}

fn print_task(task: &Task, json: bool) -> anyhow::Result<()> {
    if json {
        output::json(task)
    } else {
        out!("{}", task_table(std::slice::from_ref(task)));
        Ok(())
    }
}

pub(crate) async fn task(client: &Client, cmd: TaskCmd, json: bool) -> anyhow::Result<()> {
    let steer = |id, s| async move { client.steer(id, s).await };
    let task = match cmd {
        TaskCmd::Add {
            title,
            goal,
            acceptance,
            labels,
            priority,
            depends_on,
            parent,
            max_attempts,
            ttl,
            hold,
            idempotency_key,
        } => {
            let spec = NewTask {
                title,
                goal,
                acceptance,
                labels,
                priority,
                depends_on,
                parent_id: parent,
                max_attempts,
                lease_ttl_s: ttl,
                hold,
            };
            client
                .task_create(&spec, idempotency_key.as_deref())
                .await?
                .0
        }
        TaskCmd::List {
            status,
            label,
            parent,
        } => {
            let q = TaskQuery {
                status,
                label,
                parent,
                ..TaskQuery::default()
            };
            let tasks = client.tasks_all(&q).await?;
            return if json {
                output::json(&tasks)
            } else {
                out!("{}", task_table(&tasks));
                Ok(())
            };
        }
        TaskCmd::Show { id } => return show(client, id, json).await,
        TaskCmd::Hold { id } => steer(id, Steer::Hold).await?,
        TaskCmd::Unhold { id } => steer(id, Steer::Unhold).await?,
        TaskCmd::Unblock { id } => steer(id, Steer::Unblock).await?,
        TaskCmd::Cancel { id } => steer(id, Steer::Cancel).await?,
        TaskCmd::Reopen { id } => steer(id, Steer::Reopen).await?,
    };
    print_task(&task, json)
}

async fn show(client: &Client, id: Uuid, json: bool) -> anyhow::Result<()> {
    let task = client.task(id).await?;
    let attempts = client.attempts(id).await?.attempts;
    let checkpoints = client.checkpoints(id).await?.checkpoints;
    let decisions = client.decisions(id).await?.decisions;
    if json {
        return output::json(&json!({
            "task": task, "attempts": attempts,
            "checkpoints": checkpoints, "decisions": decisions,
        }));
    }
    let now = output::now();
    let mut t = Table::new(&["id", &task.id.to_string()]);
    let mut field = |k: &str, v: String| t.row(vec![k.to_owned(), v]);
    field("title", task.title.clone());
    field("status", status_of(&task));
    field("priority", task.priority.to_string());
    field("labels", list(&task.labels));
    field(
        "attempts",
        format!(
            "{} ({} of {} allowed failures used)",
            task.attempts, task.failed_attempts, task.max_attempts
        ),
    );
    if let Some(l) = &task.lease {
        field(
            "lease",
            format!(
                "{} (attempt {}) until {}",
                l.worker,
                l.attempt,
                l.expires_at.to_rfc3339()
            ),
        );
    }
    if let Some(p) = task.parent_id {
        field("goal", p.to_string());
    }
    if !task.depends_on.is_empty() {
        let deps: Vec<String> = task.depends_on.iter().map(Uuid::to_string).collect();
        field(
            "after",
            format!(
                "{} ({} pending)",
                deps.join(", "),
                task.pending_dependencies
            ),
        );
    }
    if let Some(r) = &task.blocked_reason {
        field("blocked", r.clone());
    }
    if let Some(e) = &task.error {
        field("error", e.clone());
    }
    if let Some(r) = &task.result {
        field("result", r.to_string());
    }
    field("created", format!("{} ago", age(now, task.created_at)));
    field("updated", format!("{} ago", age(now, task.updated_at)));
    out!("{}", t.render());
    if !task.goal.is_empty() {
        outln!("\nGOAL\n{}", task.goal.trim_end());
    }
    if !task.acceptance.is_empty() {
        outln!("\nACCEPTANCE");
        for a in &task.acceptance {
            outln!("  - {a}");
        }
    }
    if !attempts.is_empty() {
        outln!("\nATTEMPTS");
        let mut t = Table::new(&["N", "WORKER", "OUTCOME", "STARTED", "NOTES"]).indent(2);
        for a in &attempts {
            let notes = a
                .error
                .iter()
                .chain(&a.notes)
                .cloned()
                .collect::<Vec<_>>()
                .join(" / ");
            t.row(vec![
                a.n.to_string(),
                a.worker.clone(),
                a.outcome.as_str().into(),
                format!("{} ago", age(now, a.started_at)),
                clip(&notes.replace('\n', " "), 60),
            ]);
        }
        out!("{}", t.render());
    }
    if !checkpoints.is_empty() {
        outln!("\nCHECKPOINTS");
        let mut t = Table::new(&["SEQ", "ATT", "AGE", "ARTIFACTS", "SUMMARY"]).indent(2);
        for c in &checkpoints {
            let names: Vec<String> = c.artifacts.iter().map(|a| a.name.clone()).collect();
            t.row(vec![
                c.seq.to_string(),
                c.attempt.to_string(),
                age(now, c.created_at),
                list(&names),
                clip(&c.summary.replace('\n', " "), 60),
            ]);
        }
        out!("{}", t.render());
    }
    if !decisions.is_empty() {
        outln!("\nDECISIONS");
        for d in &decisions {
            outln!(
                "  - {} ({})",
                d.title,
                if d.rationale.is_empty() {
                    "no rationale"
                } else {
                    &d.rationale
                }
            );
        }
    }
    Ok(())
}

pub(crate) async fn decision(client: &Client, cmd: DecisionCmd, json: bool) -> anyhow::Result<()> {
    let DecisionCmd::Add { task, title, why } = cmd;
    let d = client
        .decision_add(
            task,
            &NewDecision {
                title,
                rationale: why,
            },
        )
        .await?;
    if json {
        output::json(&d)
    } else {
        outln!("recorded decision {} on task {}", d.id, d.task_id);
        Ok(())
    }
}

pub(crate) async fn tenant(client: &Client, cmd: TenantCmd, json: bool) -> anyhow::Result<()> {
    let TenantCmd::Add { name } = cmd;
    let t = client.tenant_create(&name).await?;
    if json {
        output::json(&t)
    } else {
        outln!("created tenant {}", t.name);
        Ok(())
    }
}

pub(crate) async fn token(client: &Client, cmd: TokenCmd, json: bool) -> anyhow::Result<()> {
    let TokenCmd::Create { role, tenant, name } = cmd;
    let t = client.token_create(&tenant, role, name).await?;
    if json {
        output::json(&t)
    } else {
        // The token alone on stdout, so `$(aruntime token create ...)` works.
        eprintln!(
            "{} token for tenant {} (shown once):",
            t.role.as_str(),
            t.tenant
        );
        outln!("{}", t.token);
        Ok(())
    }
}

pub(crate) async fn context(client: &Client, a: ContextArgs) -> anyhow::Result<()> {
    let text = client.context(a.task, a.format, a.max_bytes).await?;
    // Exactly as rendered, so the output keeps within --max-bytes.
    out!("{text}");
    if !text.ends_with('\n') {
        out!("\n");
    }
    Ok(())
}

/// How often `events --follow` asks for more.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

pub(crate) async fn events(client: &Client, a: EventsArgs, json: bool) -> anyhow::Result<()> {
    let mut q = EventQuery {
        after: a.after,
        task: a.task,
        limit: Some(500),
    };
    let mut header = !json;
    loop {
        let page = client.events(&q).await?;
        for e in &page.events {
            if json {
                // One event per line, so a follower can stream them into `jq`.
                outln!("{}", serde_json::to_string(e)?);
                continue;
            }
            if header {
                outln!(
                    "{:>6}  {:<24}  {:<20}  {:<36}  DATA",
                    "SEQ",
                    "AT",
                    "KIND",
                    "TASK"
                );
                header = false;
            }
            let task = e.task_id.map_or_else(|| "-".to_owned(), |t| t.to_string());
            outln!(
                "{:>6}  {:<24}  {:<20}  {:<36}  {}",
                e.seq,
                e.at.to_rfc3339(),
                e.kind,
                task,
                clip(&e.data.to_string(), 80)
            );
        }
        let more = page.next_after > q.after && page.events.len() >= 500;
        q.after = page.next_after.max(q.after);
        if more {
            continue;
        }
        if !a.follow {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// Parses `--capabilities a,b` style lists.
pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}
