//! `aruntime plan import FILE`: a goal and its subtasks from a TOML, YAML
//! or markdown checklist file, imported in one transaction.
//!
//! TOML and YAML files hold the goal's fields at the top level and a
//! `tasks` list; each task's `key` defaults to a slug of its title and
//! `depends_on` (or `after`) names other tasks' keys. A markdown file is a
//! checklist:
//!
//! ```markdown
//! # Ship the login page            <- the goal's title
//! Why and what, in prose.           <- the goal
//! ## Acceptance                     <- the goal's acceptance criteria
//! - a person can log in
//! ## Tasks
//! - [ ] Design the form (labels: ui)
//!   - matches the mockup            <- nested items: the task's acceptance
//! - [ ] Build the form (after: design-the-form)
//! - [x] Already done                <- skipped; dependencies on it are met
//! ```
//!
//! The plan's key defaults to the file's name without extension, so
//! importing the same file again creates nothing new.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, bail};
use aruntime_api::{PlanImport, PlanImported, PlanItem};
use aruntime_client::Client;
use serde::Deserialize;

use crate::output::out;
use crate::output::{self, Table};

/// A task as written in a TOML or YAML plan.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileItem {
    #[serde(default)]
    key: Option<String>,
    title: String,
    #[serde(default)]
    goal: String,
    #[serde(default)]
    acceptance: Vec<String>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default, alias = "after")]
    depends_on: Vec<String>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    lease_ttl_s: Option<u32>,
}

/// A TOML or YAML plan: the goal's fields, then its tasks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlan {
    #[serde(default)]
    key: Option<String>,
    title: String,
    #[serde(default)]
    goal: String,
    #[serde(default)]
    acceptance: Vec<String>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    tasks: Vec<FileItem>,
}

/// A key from a title: lowercase words joined by `-`.
pub(crate) fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out: String = out.trim_end_matches('-').chars().take(60).collect();
    out.trim_end_matches('-').to_owned()
}

impl FileItem {
    fn into_item(self) -> PlanItem {
        let mut i = PlanItem::new(self.key.unwrap_or_else(|| slug(&self.title)), self.title);
        i.goal = self.goal;
        i.acceptance = self.acceptance;
        i.labels = self.labels;
        i.priority = self.priority;
        i.depends_on = self.depends_on;
        if let Some(n) = self.max_attempts {
            i.max_attempts = n;
        }
        if let Some(t) = self.lease_ttl_s {
            i.lease_ttl_s = t;
        }
        i
    }
}

impl FilePlan {
    fn into_plan(self, default_key: &str) -> PlanImport {
        let mut goal = PlanItem::new("", self.title);
        goal.goal = self.goal;
        goal.acceptance = self.acceptance;
        goal.labels = self.labels;
        goal.priority = self.priority;
        PlanImport {
            key: self.key.unwrap_or_else(|| default_key.to_owned()),
            goal,
            tasks: self.tasks.into_iter().map(FileItem::into_item).collect(),
        }
    }
}

/// Splits `Title (after: a, b) (labels: x)` into the title and annotations.
fn annotations(text: &str) -> (String, Vec<String>, Vec<String>) {
    let mut title = text.trim().to_owned();
    let (mut after, mut labels) = (vec![], vec![]);
    while let Some(open) = title.rfind('(') {
        let Some(inner) = title[open..]
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
        else {
            break;
        };
        let Some((k, v)) = inner.split_once(':') else {
            break;
        };
        let list = crate::tasks::split_list(v);
        match k.trim() {
            "after" | "depends on" => after.splice(0..0, list),
            "labels" | "label" => labels.splice(0..0, list),
            _ => break,
        };
        title = title[..open].trim_end().to_owned();
    }
    (title, after, labels)
}

/// Parses a markdown checklist plan.
pub(crate) fn parse_markdown(text: &str, default_key: &str) -> anyhow::Result<PlanImport> {
    enum Section {
        Goal,
        Acceptance,
        Tasks,
    }
    let mut title = None;
    let mut goal = String::new();
    let mut acceptance = vec![];
    let mut tasks: Vec<PlanItem> = vec![];
    let mut done: HashSet<String> = HashSet::new();
    // Whether nested bullets belong to the last task (false after a checked one).
    let mut nest_into_last = false;
    let mut section = Section::Goal;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indented = line.len() - trimmed.len() >= 2;
        if let Some(h) = trimmed.strip_prefix("# ") {
            if title.is_some() {
                bail!("line {}: a plan has one `# title`", n + 1);
            }
            title = Some(h.trim().to_owned());
            section = Section::Goal;
            continue;
        }
        if let Some(h) = trimmed.strip_prefix("## ") {
            section = if h.to_lowercase().contains("acceptance") {
                Section::Acceptance
            } else {
                Section::Tasks
            };
            continue;
        }
        let bullet = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "));
        let check = bullet.and_then(|b| {
            b.strip_prefix("[ ] ")
                .map(|t| (false, t))
                .or_else(|| b.strip_prefix("[x] ").map(|t| (true, t)))
                .or_else(|| b.strip_prefix("[X] ").map(|t| (true, t)))
        });
        match (check, bullet) {
            (Some((checked, text)), _) if !indented => {
                let (title, after, labels) = annotations(text);
                let key = slug(&title);
                if checked {
                    done.insert(key);
                    nest_into_last = false;
                    continue;
                }
                let mut item = PlanItem::new(key, title);
                item.depends_on = after;
                item.labels = labels;
                tasks.push(item);
                nest_into_last = true;
            }
            (_, Some(b)) if indented && !tasks.is_empty() => {
                if let Some(last) = tasks.last_mut().filter(|_| nest_into_last) {
                    last.acceptance.push(b.trim().to_owned());
                }
            }
            (_, Some(b)) if matches!(section, Section::Acceptance) => {
                acceptance.push(b.trim().to_owned());
            }
            _ if matches!(section, Section::Goal) && title.is_some() => {
                goal.push_str(line);
                goal.push('\n');
            }
            _ => {}
        }
    }
    let Some(title) = title else {
        bail!("a markdown plan starts with `# the goal's title`");
    };
    for t in &mut tasks {
        t.depends_on.retain(|d| !done.contains(d));
    }
    let mut g = PlanItem::new("", title);
    g.goal = goal.trim().to_owned();
    g.acceptance = acceptance;
    Ok(PlanImport {
        key: default_key.to_owned(),
        goal: g,
        tasks,
    })
}

/// Reads a plan file; the format follows the extension.
pub(crate) fn read(path: &Path, key: Option<String>) -> anyhow::Result<PlanImport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let stem = path
        .file_stem()
        .map(|s| slug(&s.to_string_lossy()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "plan".into());
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut plan = match ext.as_str() {
        "toml" => toml::from_str::<FilePlan>(&text)
            .with_context(|| format!("{} is not a valid TOML plan", path.display()))?
            .into_plan(&stem),
        "yaml" | "yml" => serde_yaml::from_str::<FilePlan>(&text)
            .with_context(|| format!("{} is not a valid YAML plan", path.display()))?
            .into_plan(&stem),
        "md" | "markdown" => parse_markdown(&text, &stem)
            .with_context(|| format!("{} is not a valid markdown plan", path.display()))?,
        _ => bail!(
            "{}: plan files end in .toml, .yaml, .yml or .md",
            path.display()
        ),
    };
    if let Some(k) = key {
        plan.key = k;
    }
    Ok(plan)
}

pub(crate) async fn import(
    client: &Client,
    path: &Path,
    key: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let plan = read(path, key)?;
    let out = client.plan_import(&plan).await?;
    if json {
        return output::json(&out);
    }
    out!("{}", summary(&out));
    Ok(())
}

/// What an import did, for a person.
pub(crate) fn summary(out: &PlanImported) -> String {
    let created = out.created();
    let total = out.tasks.len() + 1;
    let mut s = if created == 0 {
        format!("plan `{}`: already imported; nothing created\n", out.key)
    } else {
        format!("plan `{}`: created {created} of {total} tasks\n", out.key)
    };
    let mut t = Table::new(&["", "KEY", "STATUS", "ID", "TITLE"]).indent(2);
    for e in std::iter::once(&out.goal).chain(&out.tasks) {
        t.row(vec![
            if e.created { "+" } else { "=" }.into(),
            if e.key.is_empty() {
                "(goal)".into()
            } else {
                e.key.clone()
            },
            e.task.status.as_str().into(),
            e.task.id.to_string(),
            e.task.title.clone(),
        ]);
    }
    s.push_str(&t.render());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_checklist_becomes_a_plan() {
        let md = "# Ship login\n\nLet people log in.\n\n## Acceptance\n- a person can log in\n\n\
                  ## Tasks\n- [ ] Design the form (labels: ui, design)\n  - matches the mockup\n\
                  - [x] Set up the repo\n- [ ] Build the form (after: design-the-form, set-up-the-repo)\n\
                  - [ ] Test it (after: build-the-form)\n";
        let p = parse_markdown(md, "login").unwrap();
        assert_eq!(p.key, "login");
        assert_eq!(p.goal.title, "Ship login");
        assert_eq!(p.goal.goal, "Let people log in.");
        assert_eq!(p.goal.acceptance, vec!["a person can log in"]);
        let keys: Vec<&str> = p.tasks.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["design-the-form", "build-the-form", "test-it"]);
        assert_eq!(p.tasks[0].labels, ["ui", "design"]);
        assert_eq!(p.tasks[0].acceptance, ["matches the mockup"]);
        assert_eq!(p.tasks[1].depends_on, ["design-the-form"]);
        assert_eq!(p.tasks[2].depends_on, ["build-the-form"]);
        p.validate().unwrap();
    }

    #[test]
    fn toml_and_yaml_plans_agree() {
        let toml_text = "title = \"G\"\nacceptance = [\"ok\"]\n\n[[tasks]]\ntitle = \"First step\"\n\n\
                         [[tasks]]\nkey = \"two\"\ntitle = \"Second\"\nafter = [\"first-step\"]\n";
        let yaml_text = "title: G\nacceptance: [ok]\ntasks:\n  - title: First step\n  - key: two\n    \
                         title: Second\n    depends_on: [first-step]\n";
        let a = toml::from_str::<FilePlan>(toml_text)
            .unwrap()
            .into_plan("k");
        let b = serde_yaml::from_str::<FilePlan>(yaml_text)
            .unwrap()
            .into_plan("k");
        assert_eq!(a, b);
        assert_eq!(a.tasks[1].depends_on, ["first-step"]);
        a.validate().unwrap();
    }

    #[test]
    fn slugs_are_keys() {
        assert_eq!(slug("Build the form!"), "build-the-form");
        assert_eq!(slug("  --x--  "), "x");
    }
}
