//! `POST /v1/plans`: a goal and its subtasks, with dependencies named by
//! key, created in one transaction.
//!
//! Key decision: a plan is identified by its `key`, and each item by the
//! plan key plus its own key, so importing the same file again creates
//! nothing, and importing it after adding items creates only the new ones.
//! Items that already exist are left as they are (a person may have edited
//! or steered them since); the response says which were created.

use std::collections::{HashMap, HashSet};

use aruntime_core::Task;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_ATTEMPTS, MAX_ITEMS, MAX_NAME};
use crate::requests::{
    Checked, Invalid, default_attempts, default_ttl, invalid, items, label, name, text, ttl,
};

/// A plan to import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanImport {
    /// Identifies the plan across imports (letters, digits, `-_.:/`).
    pub key: String,
    /// The goal task every item becomes a child of.
    pub goal: PlanItem,
    /// The subtasks.
    #[serde(default)]
    pub tasks: Vec<PlanItem>,
}

/// The goal or one subtask of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanItem {
    /// Unique within the plan; other items name it in `depends_on`.
    /// Ignored for the goal.
    #[serde(default)]
    pub key: String,
    /// One line.
    pub title: String,
    /// The intent, in markdown.
    #[serde(default)]
    pub goal: String,
    /// What must be true when done.
    #[serde(default)]
    pub acceptance: Vec<String>,
    /// Capabilities a worker needs.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Higher first.
    #[serde(default)]
    pub priority: i32,
    /// Keys of items that must be done first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Failed or abandoned attempts allowed; default 3.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Default lease TTL in seconds; default 60.
    #[serde(default = "default_ttl")]
    pub lease_ttl_s: u32,
}

impl PlanItem {
    /// An item with a key and a title; the rest defaults.
    pub fn new(key: impl Into<String>, title: impl Into<String>) -> Self {
        PlanItem {
            key: key.into(),
            title: title.into(),
            goal: String::new(),
            acceptance: vec![],
            labels: vec![],
            priority: 0,
            depends_on: vec![],
            max_attempts: default_attempts(),
            lease_ttl_s: default_ttl(),
        }
    }

    fn validate(&self, field: &str) -> Checked {
        name(&format!("{field}.title"), &self.title)?;
        text(&format!("{field}.goal"), &self.goal)?;
        items(&format!("{field}.acceptance"), &self.acceptance, |f, v| {
            text(f, v)
        })?;
        items(&format!("{field}.labels"), &self.labels, |f, v| label(f, v))?;
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(invalid(
                format!("{field}.max_attempts"),
                format!("max_attempts must be 1..={MAX_ATTEMPTS}"),
            ));
        }
        ttl(&format!("{field}.lease_ttl_s"), self.lease_ttl_s)
    }
}

fn key_ok(field: &str, k: &str) -> Checked {
    name(field, k)?;
    if k.len() > MAX_NAME / 2
        || !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
    {
        return Err(invalid(
            field,
            format!("{field} must be up to 250 of letters, digits and -_.:/"),
        ));
    }
    Ok(())
}

impl PlanImport {
    /// Checks every item, that keys are unique, that dependencies name
    /// items of the plan, and that they form no cycle.
    pub fn validate(&self) -> Checked {
        key_ok("key", &self.key)?;
        self.goal.validate("goal")?;
        if !self.goal.depends_on.is_empty() {
            return Err(invalid(
                "goal.depends_on",
                "the goal depends on its tasks implicitly; list dependencies on tasks",
            ));
        }
        if self.tasks.len() > MAX_ITEMS {
            return Err(invalid(
                "tasks",
                format!("a plan has at most {MAX_ITEMS} tasks"),
            ));
        }
        let mut keys = HashSet::new();
        for (i, t) in self.tasks.iter().enumerate() {
            let field = format!("tasks[{i}]");
            key_ok(&format!("{field}.key"), &t.key)?;
            t.validate(&field)?;
            if !keys.insert(t.key.as_str()) {
                return Err(invalid(
                    format!("{field}.key"),
                    format!("key `{}` is used twice", t.key),
                ));
            }
        }
        for (i, t) in self.tasks.iter().enumerate() {
            for (j, d) in t.depends_on.iter().enumerate() {
                if !keys.contains(d.as_str()) {
                    return Err(invalid(
                        format!("tasks[{i}].depends_on[{j}]"),
                        format!("no task with key `{d}` in this plan"),
                    ));
                }
            }
        }
        self.order().map(|_| ())
    }

    /// Indexes of `tasks` in an order where every item comes after what it
    /// depends on (Kahn's algorithm, stable in file order), or the cycle.
    pub fn order(&self) -> Result<Vec<usize>, Invalid> {
        let index: HashMap<&str, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.key.as_str(), i))
            .collect();
        let mut waiting: Vec<usize> = self.tasks.iter().map(|t| t.depends_on.len()).collect();
        let mut dependents: Vec<Vec<usize>> = vec![vec![]; self.tasks.len()];
        for (i, t) in self.tasks.iter().enumerate() {
            for d in &t.depends_on {
                if let Some(&j) = index.get(d.as_str()) {
                    dependents[j].push(i);
                }
            }
        }
        let mut out = Vec::with_capacity(self.tasks.len());
        let mut done = vec![false; self.tasks.len()];
        while out.len() < self.tasks.len() {
            let Some(next) = (0..self.tasks.len()).find(|&i| !done[i] && waiting[i] == 0) else {
                let stuck: Vec<&str> = (0..self.tasks.len())
                    .filter(|&i| !done[i])
                    .map(|i| self.tasks[i].key.as_str())
                    .collect();
                return Err(Invalid {
                    code: crate::ErrorCode::DependencyCycle,
                    field: "tasks".into(),
                    message: format!("dependencies form a cycle among: {}", stuck.join(", ")),
                });
            };
            done[next] = true;
            out.push(next);
            for &d in &dependents[next] {
                waiting[d] -= 1;
            }
        }
        Ok(out)
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanImported {
    /// The plan's key.
    pub key: String,
    /// The goal task.
    pub goal: PlanEntry,
    /// The subtasks, in the plan's order.
    pub tasks: Vec<PlanEntry>,
}

/// One item of an imported plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanEntry {
    /// The item's key (empty for the goal).
    pub key: String,
    /// False when it already existed from an earlier import.
    pub created: bool,
    /// The task as it is now.
    pub task: Task,
}

impl PlanImported {
    /// How many tasks this import created, the goal included.
    pub fn created(&self) -> usize {
        std::iter::once(&self.goal)
            .chain(&self.tasks)
            .filter(|e| e.created)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(items: &[(&str, &[&str])]) -> PlanImport {
        PlanImport {
            key: "p".into(),
            goal: PlanItem::new("", "goal"),
            tasks: items
                .iter()
                .map(|(k, deps)| {
                    let mut i = PlanItem::new(*k, format!("do {k}"));
                    i.depends_on = deps.iter().map(|d| (*d).to_owned()).collect();
                    i
                })
                .collect(),
        }
    }

    #[test]
    fn orders_dependencies_first_and_keeps_file_order_otherwise() {
        let p = plan(&[("c", &["b"]), ("a", &[]), ("b", &["a"]), ("d", &[])]);
        p.validate().unwrap();
        assert_eq!(p.order().unwrap(), vec![1, 2, 0, 3]);
    }

    #[test]
    fn refuses_cycles_unknown_keys_and_duplicates() {
        let cycle = plan(&[("a", &["b"]), ("b", &["a"]), ("c", &[])]);
        let e = cycle.validate().unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::DependencyCycle);
        assert!(e.message.contains("a, b"), "{}", e.message);

        let unknown = plan(&[("a", &["zz"])]);
        assert_eq!(
            unknown.validate().unwrap_err().field,
            "tasks[0].depends_on[0]"
        );

        let dup = plan(&[("a", &[]), ("a", &[])]);
        assert_eq!(dup.validate().unwrap_err().field, "tasks[1].key");

        let bad_key = plan(&[("a b", &[])]);
        assert_eq!(bad_key.validate().unwrap_err().field, "tasks[0].key");
    }
}
