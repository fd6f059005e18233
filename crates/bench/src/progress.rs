//! One progress line on stderr, redrawn in place on a terminal and printed
//! every few seconds otherwise (CI logs).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// A progress line for one step.
pub(crate) struct Progress {
    label: String,
    total: u64,
    tty: bool,
    last: Instant,
    quiet: bool,
}

impl Progress {
    /// Starts a step of `total` units; `quiet` prints nothing.
    pub(crate) fn new(label: impl Into<String>, total: u64, quiet: bool) -> Progress {
        let p = Progress {
            label: label.into(),
            total,
            tty: std::io::stderr().is_terminal(),
            last: Instant::now(),
            quiet,
        };
        p.draw(0);
        p
    }

    fn draw(&self, done: u64) {
        if self.quiet {
            return;
        }
        let width: u64 = 30;
        let filled = (done.min(self.total) * width)
            .checked_div(self.total)
            .unwrap_or(width);
        let bar = format!(
            "{}{}",
            "#".repeat(filled as usize),
            "-".repeat((width - filled) as usize)
        );
        let line = format!("  {:<34} [{bar}] {done}/{}", self.label, self.total);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Reports `done` units finished.
    pub(crate) fn set(&mut self, done: u64) {
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() >= every {
            self.last = Instant::now();
            self.draw(done);
        }
    }

    /// Ends the line.
    pub(crate) fn finish(self) {
        if self.quiet {
            return;
        }
        if self.tty {
            self.draw(self.total);
            eprintln!();
        } else {
            self.draw(self.total);
        }
    }
}
