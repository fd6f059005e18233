//! `aruntime board`: the board as a person reads it in a terminal, once or
//! refreshed with `--watch`.

use std::time::Duration;

use aruntime_api::{Board, BoardQuery};
use aruntime_client::Client;
use aruntime_core::{TaskStatus, Timestamp};

use crate::output::{self, Table, age, clip, list};
use crate::output::{out, outln};

/// Longest title shown; the rest is in `aruntime task show`.
const TITLE_WIDTH: usize = 48;

/// The board as text, ages measured against `now`.
pub(crate) fn render(board: &Board, now: Timestamp) -> String {
    let total: u64 = board.columns.iter().map(|c| c.count).sum();
    let summary: Vec<String> = board
        .columns
        .iter()
        .map(|c| format!("{} {}", c.status.as_str(), c.count))
        .collect();
    let mut out = format!("{total} tasks: {}\n", summary.join(" · "));
    for col in &board.columns {
        out.push('\n');
        out.push_str(&format!(
            "{} ({})\n",
            col.status.as_str().to_uppercase(),
            col.count
        ));
        if col.cards.is_empty() {
            out.push_str("  (empty)\n");
            continue;
        }
        let running = col.status == TaskStatus::Running;
        let mut header = vec!["PRI", "TITLE", "LABELS", "ATT", "AGE"];
        if running {
            header.push("WORKER");
        }
        header.push("ID");
        let mut t = Table::new(&header).indent(2);
        for c in &col.cards {
            let title = if c.held {
                format!("{} (held)", clip(&c.title, TITLE_WIDTH))
            } else {
                clip(&c.title, TITLE_WIDTH)
            };
            let mut row = vec![
                c.priority.to_string(),
                title,
                list(&c.labels),
                c.attempts.to_string(),
                age(now, c.created_at),
            ];
            if running {
                row.push(c.worker.clone().unwrap_or_else(|| "-".into()));
            }
            row.push(c.id.to_string());
            t.row(row);
        }
        out.push_str(&t.render());
        let shown = t.len() as u64;
        if shown < col.count {
            out.push_str(&format!("  … and {} more\n", col.count - shown));
        }
    }
    out
}

/// Prints the board once, or every `interval` until interrupted.
pub(crate) async fn run(
    client: &Client,
    q: &BoardQuery,
    json: bool,
    watch: Option<Duration>,
) -> anyhow::Result<()> {
    let Some(every) = watch else {
        let board = client.board(q).await?;
        return if json {
            output::json(&board)
        } else {
            out!("{}", render(&board, output::now()));
            Ok(())
        };
    };
    loop {
        let board = client.board(q).await?;
        if json {
            // One document per line, for `jq` or a log.
            outln!("{}", serde_json::to_string(&board)?);
        } else {
            // Home the cursor and clear, then redraw.
            out!("\x1b[H\x1b[2J{}", render(&board, output::now()));
            outln!(
                "\n(refreshing every {}s; Ctrl-C to stop)",
                every.as_secs_f32()
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
