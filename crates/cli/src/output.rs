//! What a person reads: aligned tables, short ages, and JSON for machines.

use aruntime_core::Timestamp;
use serde::Serialize;

/// Writes to stdout. When the reader has gone (`aruntime ... | head`),
/// exits quietly as other command-line tools do, instead of panicking.
pub(crate) fn write(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("aruntime: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// `print!` through [`write`].
macro_rules! out {
    ($($t:tt)*) => { $crate::output::write(&format!($($t)*)) };
}

/// `println!` through [`write`].
macro_rules! outln {
    ($($t:tt)*) => { $crate::output::write(&format!("{}\n", format_args!($($t)*))) };
}

pub(crate) use {out, outln};

/// Prints `v` as pretty JSON on stdout.
pub(crate) fn json(v: &impl Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A table whose columns are padded to their widest cell. The last column
/// is never padded, so long titles do not leave trailing spaces.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
    indent: usize,
}

impl Table {
    /// A table with this header row.
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
            indent: 0,
        }
    }

    /// Indents every line by `n` spaces.
    pub(crate) fn indent(mut self, n: usize) -> Table {
        self.indent = n;
        self
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Rows added besides the header.
    pub(crate) fn len(&self) -> usize {
        self.rows.len() - 1
    }

    /// The table as lines ending in `\n`.
    pub(crate) fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut width = vec![0; cols];
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in &self.rows {
            let mut line = " ".repeat(self.indent);
            for (i, c) in r.iter().enumerate() {
                line.push_str(c);
                if i + 1 < r.len() {
                    line.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `42s`, `5m`, `3h`, `2d`: how long ago `then` was.
pub(crate) fn age(now: Timestamp, then: Timestamp) -> String {
    let s = (now.0 - then.0).max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Cuts `s` to at most `n` characters, marking the cut.
pub(crate) fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `a,b` or `-`.
pub(crate) fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// Now, by this machine's clock.
pub(crate) fn now() -> Timestamp {
    Timestamp(chrono::Utc::now().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_leaves_no_trailing_space() {
        let mut t = Table::new(&["A", "LONGER", "LAST"]);
        t.row(vec!["xxxx".into(), "y".into(), "z".into()]);
        t.row(vec!["1".into(), "".into(), "".into()]);
        assert_eq!(t.render(), "A     LONGER  LAST\nxxxx  y       z\n1\n");
    }

    #[test]
    fn ages_are_short() {
        let t = Timestamp(1_000_000_000);
        assert_eq!(age(t.plus_ms(59_999), t), "59s");
        assert_eq!(age(t.plus_ms(61_000), t), "1m");
        assert_eq!(age(t.plus_ms(7_300_000), t), "2h");
        assert_eq!(age(t.plus_ms(200_000_000), t), "2d");
        assert_eq!(age(t, t.plus_ms(5)), "0s");
    }
}
