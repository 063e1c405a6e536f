//! What a deploy shows while hosts deploy in parallel, and the summary table afterwards.
//!
//! The running deploy reports each host's steps to a [`View`]; the command layer implements
//! it (on a terminal a live line per host, otherwise one plain `host: step` line per step, so
//! a log reads in order). The summary is text the command prints.

use std::time::Duration;

use super::host::{HostResult, Outcome};

/// Where a running deploy shows its hosts' steps; `i` indexes the hosts in deploy order. Called
/// from one thread only (the one that called `Prepared::run`).
pub trait View {
    /// Host `i` starts a new step ("building", "switching").
    fn step(&self, i: usize, message: &str);
    /// The latest output line of host `i`'s current step (Nix's build log): for a live view;
    /// a log would drown in it.
    fn note(&self, i: usize, note: &str);
    /// Host `i` is done.
    fn done(&self, i: usize, outcome: &Outcome);
}

/// A finished host in one line: `action: result (time)`.
pub fn done_line(outcome: &Outcome) -> String {
    format!("{}: {} ({})", outcome.action.as_str(), outcome.result.text(), seconds(outcome.elapsed))
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// HOST / ACTION / RESULT / TIME, one row per host, then the details of every host that did
/// not succeed.
pub fn summary(names: &[&str], outcomes: &[Outcome]) -> String {
    let rows: Vec<[String; 4]> = names
        .iter()
        .zip(outcomes)
        .map(|(n, o)| [n.to_string(), o.action.as_str().to_string(), o.result.text(), seconds(o.elapsed)])
        .collect();
    let header = ["HOST", "ACTION", "RESULT", "TIME"].map(String::from);
    let mut width = [0; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::from("\n");
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3]
        );
        s.push_str(line.trim_end());
        s.push('\n');
    }
    for (n, o) in names.iter().zip(outcomes) {
        let mut lines: Vec<String> = o.removed.iter().map(|p| format!("removed the stale secret file {p}")).collect();
        lines.extend(o.warnings.iter().map(|w| format!("warning: {w}")));
        if !matches!(o.result, HostResult::Ok(_)) && !o.detail.is_empty() {
            lines.push(o.detail.clone());
        }
        if !lines.is_empty() {
            s.push_str(&format!("\n{n}:\n{}\n", indent(&lines.join("\n"))));
        }
    }
    s
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}
