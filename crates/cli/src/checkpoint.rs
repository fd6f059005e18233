//! `aruntime checkpoint`: run by CMD inside `aruntime worker`, it records
//! where the work stands under the worker's lease, uploading artifacts as
//! blobs first.

use std::path::PathBuf;

use anyhow::Context;
use aruntime_api::NewCheckpoint;
use aruntime_client::Client;
use aruntime_core::Artifact;
use serde_json::Value;
use uuid::Uuid;

use crate::output;

/// `aruntime checkpoint` arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct CheckpointArgs {
    /// Where the work stands, for whoever resumes it.
    #[arg(long)]
    summary: String,
    /// A file holding the state to resume from (JSON, or any text).
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// The state inline, as JSON.
    #[arg(long, conflicts_with = "state_file")]
    state: Option<String>,
    /// A file to attach (repeatable); stored as a content-addressed blob.
    #[arg(long = "artifact")]
    artifacts: Vec<PathBuf>,
    /// A JSON file with test results.
    #[arg(long)]
    test_results: Option<PathBuf>,
    /// The task; set by `aruntime worker`.
    #[arg(long, env = "ARUNTIME_TASK_ID")]
    task: Uuid,
    /// The lease token; set by `aruntime worker`.
    #[arg(long, env = "ARUNTIME_LEASE", hide_env_values = true)]
    lease: String,
}

/// JSON if it parses, else the text as a JSON string.
fn json_or_text(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

pub(crate) async fn run(client: &Client, a: CheckpointArgs, json: bool) -> anyhow::Result<()> {
    let state = match (&a.state_file, a.state) {
        (Some(f), _) => json_or_text(read(f)?),
        (None, Some(s)) => serde_json::from_str(&s).context("--state is not valid JSON")?,
        (None, None) => Value::Null,
    };
    let test_results = match &a.test_results {
        Some(f) => json_or_text(read(f)?),
        None => Value::Null,
    };
    let mut artifacts = vec![];
    for path in &a.artifacts {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let blob = client.blob_put(bytes).await?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        artifacts.push(Artifact {
            name,
            sha256: blob.sha256,
        });
    }
    let cp = NewCheckpoint {
        lease: a.lease,
        summary: a.summary,
        state,
        artifacts,
        test_results,
    };
    let c = client.checkpoint(a.task, &cp).await?;
    if json {
        output::json(&c)
    } else {
        eprintln!("checkpoint {} written for task {}", c.seq, a.task);
        Ok(())
    }
}
