//! The context bundle: everything the next worker needs to resume a task,
//! and how it is shrunk to fit a byte budget.
//!
//! Fitting drops whole items, least important first, and lists what it
//! dropped; it never cuts an item in half. The goal, the acceptance criteria
//! and the latest checkpoint are never dropped: if they alone do not fit,
//! fitting fails with the smallest size that would.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{Attempt, Checkpoint, Decision, TaskStatus};

/// The resume packet for one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContextBundle {
    /// The task itself.
    pub task: TaskBrief,
    /// The goals above it, outermost first.
    pub goal_chain: Vec<GoalRef>,
    /// The task's acceptance criteria.
    pub acceptance: Vec<String>,
    /// Results of the tasks it depends on.
    pub dependencies: Vec<DependencyResult>,
    /// Decisions on the task and every goal above it, oldest first.
    pub decisions: Vec<Decision>,
    /// The checkpoint to resume from.
    pub latest_checkpoint: Option<Checkpoint>,
    /// Every earlier attempt, oldest first, with its notes.
    pub attempts: Vec<Attempt>,
    /// Approaches that must not be tried again.
    pub do_not_retry: Vec<String>,
    /// What was left out to fit a byte budget.
    pub omitted: Vec<String>,
}

/// The task's own fields in a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskBrief {
    /// Task id.
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Goal, markdown.
    pub goal: String,
    /// Status when the bundle was made.
    pub status: TaskStatus,
    /// Labels.
    pub labels: Vec<String>,
    /// Priority.
    pub priority: i32,
}

/// A goal above the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GoalRef {
    /// Task id of the goal.
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Goal text.
    pub goal: String,
}

/// A dependency and what it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DependencyResult {
    /// Task id.
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Its status.
    pub status: TaskStatus,
    /// Its result, when done.
    pub result: Option<Value>,
}

/// The bundle's rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The bundle as JSON.
    #[default]
    Json,
    /// Markdown, made for a model's prompt.
    Markdown,
}

/// Even the parts that are never dropped exceed the budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the context needs at least {min_bytes} bytes; {max_bytes} were allowed")]
pub struct DoesNotFit {
    /// The budget asked for.
    pub max_bytes: usize,
    /// The smallest rendering possible.
    pub min_bytes: usize,
}

impl ContextBundle {
    /// Renders in `format`, dropping items until it fits in `max_bytes`.
    pub fn render_fitted(
        mut self,
        format: Format,
        max_bytes: Option<usize>,
    ) -> Result<String, DoesNotFit> {
        let render = |b: &ContextBundle| match format {
            Format::Json => serde_json::to_string(b).unwrap_or_default(),
            Format::Markdown => b.to_markdown(),
        };
        let Some(max) = max_bytes else {
            return Ok(render(&self));
        };
        loop {
            let out = render(&self);
            if out.len() <= max {
                return Ok(out);
            }
            if !self.drop_least_important() {
                return Err(DoesNotFit {
                    max_bytes: max,
                    min_bytes: out.len(),
                });
            }
        }
    }

    /// Drops the least important remaining item, noting it in `omitted`.
    /// Order: earlier attempts (oldest first), dependency results, decisions
    /// (those inherited from the farthest goal first), outer goals, then the
    /// do-not-retry list (last: it prevents repeating known mistakes).
    /// Returns false when only the parts that are never dropped remain.
    fn drop_least_important(&mut self) -> bool {
        if !self.attempts.is_empty() {
            let a = self.attempts.remove(0);
            self.omitted
                .push(format!("attempt {} ({})", a.n, a.outcome.as_str()));
        } else if let Some(d) = self.dependencies.iter_mut().find(|d| d.result.is_some()) {
            d.result = None;
            let note = format!("result of dependency {}", d.title);
            self.omitted.push(note);
        } else if !self.dependencies.is_empty() {
            let d = self.dependencies.remove(0);
            self.omitted.push(format!("dependency {}", d.title));
        } else if !self.decisions.is_empty() {
            let pos = self.farthest_decision();
            let d = self.decisions.remove(pos);
            self.omitted.push(format!("decision {}", d.title));
        } else if !self.goal_chain.is_empty() {
            let g = self.goal_chain.remove(0);
            self.omitted.push(format!("goal {}", g.title));
        } else if !self.do_not_retry.is_empty() {
            let n = self.do_not_retry.len();
            self.do_not_retry.clear();
            self.omitted.push(format!("{n} do-not-retry entries"));
        } else {
            return false;
        }
        true
    }

    /// Index of the decision recorded farthest up the goal chain.
    fn farthest_decision(&self) -> usize {
        let depth = |d: &Decision| {
            self.goal_chain
                .iter()
                .position(|g| g.id == d.task_id)
                .unwrap_or(self.goal_chain.len())
        };
        (0..self.decisions.len())
            .min_by_key(|&i| depth(&self.decisions[i]))
            .unwrap_or(0)
    }

    /// The bundle as markdown for a model's prompt.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write;
        let mut m = String::new();
        let t = &self.task;
        let _ = writeln!(m, "# Task: {}\n", t.title);
        let _ = writeln!(
            m,
            "id `{}` · status {} · priority {} · labels [{}]\n",
            t.id,
            t.status.as_str(),
            t.priority,
            t.labels.join(", ")
        );
        if !self.goal_chain.is_empty() {
            let _ = writeln!(m, "## Part of");
            for g in &self.goal_chain {
                let _ = writeln!(m, "### {} (`{}`)\n{}\n", g.title, g.id, g.goal.trim_end());
            }
        }
        let _ = writeln!(m, "## Goal\n{}\n", t.goal.trim_end());
        if !self.acceptance.is_empty() {
            let _ = writeln!(m, "## Acceptance criteria");
            for a in &self.acceptance {
                let _ = writeln!(m, "- [ ] {a}");
            }
            m.push('\n');
        }
        if !self.decisions.is_empty() {
            let _ = writeln!(m, "## Decisions");
            for d in &self.decisions {
                let _ = writeln!(m, "- **{}**: {}", d.title, d.rationale.trim_end());
            }
            m.push('\n');
        }
        if !self.dependencies.is_empty() {
            let _ = writeln!(m, "## Dependencies");
            for d in &self.dependencies {
                let _ = writeln!(m, "### {} ({})", d.title, d.status.as_str());
                if let Some(r) = &d.result {
                    let _ = writeln!(m, "```json\n{}\n```", pretty(r));
                }
                m.push('\n');
            }
        }
        if let Some(c) = &self.latest_checkpoint {
            let _ = writeln!(
                m,
                "## Latest checkpoint (#{}, attempt {})\n{}\n",
                c.seq,
                c.attempt,
                c.summary.trim_end()
            );
            if !c.state.is_null() {
                let _ = writeln!(m, "State:\n```json\n{}\n```", pretty(&c.state));
            }
            for a in &c.artifacts {
                let _ = writeln!(m, "- artifact `{}`: sha256 {}", a.name, a.sha256);
            }
            if !c.test_results.is_null() {
                let _ = writeln!(
                    m,
                    "Test results:\n```json\n{}\n```",
                    pretty(&c.test_results)
                );
            }
            m.push('\n');
        }
        if !self.attempts.is_empty() {
            let _ = writeln!(m, "## Earlier attempts");
            for a in &self.attempts {
                let _ = writeln!(
                    m,
                    "### Attempt {} by {}: {}",
                    a.n,
                    a.worker,
                    a.outcome.as_str()
                );
                if let Some(e) = &a.error {
                    let _ = writeln!(m, "Error: {}", e.trim_end());
                }
                if let Some(n) = &a.notes {
                    let _ = writeln!(m, "{}", n.trim_end());
                }
                m.push('\n');
            }
        }
        if !self.do_not_retry.is_empty() {
            let _ = writeln!(m, "## Do not retry");
            for d in &self.do_not_retry {
                let _ = writeln!(m, "- {d}");
            }
            m.push('\n');
        }
        if !self.omitted.is_empty() {
            let _ = writeln!(m, "## Omitted to fit the size limit");
            for o in &self.omitted {
                let _ = writeln!(m, "- {o}");
            }
        }
        m
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttemptOutcome, Timestamp};

    fn bundle() -> ContextBundle {
        let goal = Uuid::now_v7();
        ContextBundle {
            task: TaskBrief {
                id: Uuid::now_v7(),
                title: "Write the parser".into(),
                goal: "Parse the config file.".into(),
                status: TaskStatus::Running,
                labels: vec!["rust".into()],
                priority: 1,
            },
            goal_chain: vec![GoalRef {
                id: goal,
                title: "Ship v1".into(),
                goal: "x".repeat(300),
            }],
            acceptance: vec!["tests pass".into()],
            dependencies: vec![DependencyResult {
                id: Uuid::now_v7(),
                title: "Design".into(),
                status: TaskStatus::Done,
                result: Some(serde_json::json!({"doc": "y".repeat(300)})),
            }],
            decisions: vec![Decision {
                id: Uuid::now_v7(),
                task_id: goal,
                title: "Use TOML".into(),
                rationale: "z".repeat(200),
                created_at: Timestamp(0),
            }],
            latest_checkpoint: Some(Checkpoint {
                seq: 3,
                attempt: 2,
                summary: "lexer done".into(),
                state: serde_json::json!({"step": 3}),
                artifacts: vec![],
                test_results: Value::Null,
                created_at: Timestamp(0),
            }),
            attempts: (1..=3)
                .map(|n| Attempt {
                    n,
                    worker: format!("w{n}"),
                    started_at: Timestamp(0),
                    ended_at: None,
                    outcome: AttemptOutcome::Abandoned,
                    notes: Some("n".repeat(200)),
                    error: None,
                })
                .collect(),
            do_not_retry: vec!["regex parsing".into()],
            omitted: vec![],
        }
    }

    #[test]
    fn markdown_never_exceeds_budget_and_keeps_the_essentials() {
        let full = bundle().to_markdown().len();
        let min = {
            let mut b = bundle();
            while b.drop_least_important() {}
            b.to_markdown().len()
        };
        for max in (min..=full + 10).step_by(7) {
            let out = bundle().render_fitted(Format::Markdown, Some(max)).unwrap();
            assert!(out.len() <= max, "{} > {max}", out.len());
            assert!(out.contains("Parse the config file."));
            assert!(out.contains("- [ ] tests pass"));
            assert!(out.contains("lexer done"));
            if max < full {
                assert!(out.contains("## Omitted to fit the size limit"));
            }
        }
        let err = bundle()
            .render_fitted(Format::Markdown, Some(min - 1))
            .unwrap_err();
        assert_eq!(err.min_bytes, min);
    }

    #[test]
    fn oldest_attempts_go_first_whole() {
        let full = bundle().to_markdown().len();
        let out = bundle()
            .render_fitted(Format::Markdown, Some(full - 1))
            .unwrap();
        assert!(!out.contains("Attempt 1 by w1"));
        assert!(out.contains("Attempt 3 by w3"));
        assert!(out.contains("- attempt 1 (abandoned)"));
        // The surviving attempts keep their notes whole.
        assert_eq!(out.matches(&"n".repeat(200)).count(), 2);
    }

    #[test]
    fn json_fits_too() {
        let out = bundle().render_fitted(Format::Json, Some(900)).unwrap();
        assert!(out.len() <= 900);
        let back: ContextBundle = serde_json::from_str(&out).unwrap();
        assert!(back.latest_checkpoint.is_some());
        assert!(!back.omitted.is_empty());
    }
}
