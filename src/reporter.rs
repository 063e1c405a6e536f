//! How the library tells people what it does while it runs, without printing.
//!
//! Library code never writes to stdout or stderr itself (clippy's `print_stdout` and
//! `print_stderr` lints say so): it hands lines to a [`Reporter`], and the command layer
//! (`src/command`) decides where they go, the terminal in the `iac` binary. Tests collect the
//! lines ([`Collect`]) and assert them; callers that want silence pass [`Silent`]. A leaf
//! module: it imports nothing of the crate.

use std::sync::Mutex;

/// Where a running command's lines go. Each call is one line, without its newline.
pub trait Reporter: Sync {
    /// A line of the command's result, which scripts may read (stdout): `iac apply`'s
    /// `kind/name outcome` lines, a report.
    fn result(&self, line: &str);
    /// A line of progress for people (stderr): what is being waited for, what was built.
    fn progress(&self, line: &str);
    /// A problem that does not stop the command (stderr, after `warning: `).
    fn warning(&self, line: &str);
}

/// Says nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Reporter for Silent {
    fn result(&self, _: &str) {}
    fn progress(&self, _: &str) {}
    fn warning(&self, _: &str) {}
}

/// One line a [`Collect`] received, with its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Result(String),
    Progress(String),
    Warning(String),
}

/// Keeps every line, in order: for tests, and for callers that show them later.
#[derive(Debug, Default)]
pub struct Collect(Mutex<Vec<Line>>);

impl Collect {
    /// Every line so far.
    pub fn lines(&self) -> Vec<Line> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn push(&self, line: Line) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line);
        }
    }
}

impl Reporter for Collect {
    fn result(&self, line: &str) {
        self.push(Line::Result(line.to_owned()));
    }
    fn progress(&self, line: &str) {
        self.push(Line::Progress(line.to_owned()));
    }
    fn warning(&self, line: &str) {
        self.push(Line::Warning(line.to_owned()));
    }
}

/// Every line of `text` as a result line: for a multi-line report built as one string.
pub fn result_text(reporter: &dyn Reporter, text: &str) {
    for line in text.lines() {
        reporter.result(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_keeps_the_order_and_the_kind() {
        let c = Collect::default();
        c.progress("waiting");
        result_text(&c, "a\nb\n");
        c.warning("careful");
        assert_eq!(
            c.lines(),
            [Line::Progress("waiting".into()), Line::Result("a".into()), Line::Result("b".into()), Line::Warning("careful".into())]
        );
    }
}
