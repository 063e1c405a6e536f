//! Per-host progress while hosts deploy in parallel, and the summary table afterwards.
//!
//! On a terminal each host gets a live line (indicatif); otherwise (CI logs, pipes) every step
//! is one plain `host: step` line on stderr, so a log reads in order.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::host::{HostResult, Outcome};

pub(super) enum View {
    /// The bars share their MultiProgress state; the handle itself need not be kept. The
    /// style replaces the spinner and clock once a host is done.
    Live(Vec<ProgressBar>, ProgressStyle, RefCell<Vec<String>>),
    Plain(Vec<String>),
}

impl View {
    pub(super) fn new(names: &[&str]) -> Self {
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
        if std::io::stderr().is_terminal() {
            let running = ProgressStyle::with_template(&format!("{{spinner}} {{prefix:{width}}}  {{wide_msg}} {{elapsed:>4}}"));
            let finished = ProgressStyle::with_template(&format!("  {{prefix:{width}}}  {{wide_msg}}"));
            if let (Ok(style), Ok(finished)) = (running, finished) {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                let bars = names
                    .iter()
                    .map(|n| {
                        let bar = multi.add(ProgressBar::new_spinner().with_style(style.clone()).with_prefix(n.to_string()));
                        bar.set_message("waiting");
                        bar.enable_steady_tick(Duration::from_millis(120));
                        bar
                    })
                    .collect();
                let steps = RefCell::new(vec![String::new(); names.len()]);
                return Self::Live(bars, finished, steps);
            }
        }
        Self::Plain(names.iter().map(|n| format!("{n:width$}")).collect())
    }

    pub(super) fn step(&self, i: usize, message: &str) {
        match self {
            Self::Live(bars, _, steps) => {
                if let Some(bar) = bars.get(i) {
                    bar.set_message(message.to_string());
                }
                if let Some(step) = steps.borrow_mut().get_mut(i) {
                    *step = message.to_string();
                }
            }
            Self::Plain(names) => eprintln!("{}  {message}", names.get(i).map_or("?", String::as_str)),
        }
    }

    /// The latest output line of the current step, after the step's name: live view only (in
    /// a log every build line would drown the steps).
    pub(super) fn note(&self, i: usize, note: &str) {
        if let Self::Live(bars, _, steps) = self
            && let (Some(bar), Some(step)) = (bars.get(i), steps.borrow().get(i))
        {
            bar.set_message(format!("{step}: {note}"));
        }
    }

    pub(super) fn done(&self, i: usize, outcome: &Outcome) {
        let line = format!("{}: {} ({})", outcome.action.as_str(), outcome.result.text(), seconds(outcome.elapsed));
        match self {
            Self::Live(bars, finished, _) => {
                if let Some(bar) = bars.get(i) {
                    bar.set_style(finished.clone());
                    bar.finish_with_message(line);
                }
            }
            Self::Plain(names) => eprintln!("{}  {line}", names.get(i).map_or("?", String::as_str)),
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// HOST / ACTION / RESULT / TIME, one row per host, then the details of every host that did
/// not succeed.
pub(super) fn summary(names: &[&str], outcomes: &[Outcome]) -> String {
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
        if !matches!(o.result, HostResult::Ok(_)) && !o.detail.is_empty() {
            s.push_str(&format!("\n{n}:\n{}\n", indent(&o.detail)));
        }
    }
    s
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}
