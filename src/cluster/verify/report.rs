//! What `iac verify` reports: checks that pass, fail (with a hint) or are skipped, and the
//! report as text for people (JSON comes from serde).

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), status: CheckStatus::Pass, detail: detail.into(), hint: None }
    }
    pub fn fail(name: impl Into<String>, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { name: name.into(), status: CheckStatus::Fail, detail: detail.into(), hint: Some(hint.into()) }
    }
    pub fn skip(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), status: CheckStatus::Skip, detail: detail.into(), hint: None }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
    /// Why the checks after the last one did not run (the API server is unreachable). Said,
    /// but not counted as a check of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
}

impl Report {
    pub fn new(checks: Vec<Check>) -> Self {
        Self { ok: checks.iter().all(|c| c.status != CheckStatus::Fail), checks, not_run: None }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let tag = match c.status {
                CheckStatus::Pass => "PASS",
                CheckStatus::Fail => "FAIL",
                CheckStatus::Skip => "SKIP",
            };
            let _ = writeln!(out, "[{tag}] {}: {}", c.name, c.detail);
            if let Some(h) = &c.hint {
                let _ = writeln!(out, "       hint: {h}");
            }
        }
        if let Some(why) = &self.not_run {
            let _ = writeln!(out, "(the other checks did not run: {why})");
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        let _ = writeln!(
            out,
            "{} check{}: {} passed, {} failed, {} skipped",
            self.checks.len(),
            if self.checks.len() == 1 { "" } else { "s" },
            count(CheckStatus::Pass),
            count(CheckStatus::Fail),
            count(CheckStatus::Skip)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_fails_when_any_check_fails() {
        let r = Report::new(vec![Check::pass("a", "ok"), Check::skip("b", "n/a")]);
        assert!(r.ok);
        let r = Report::new(vec![Check::pass("a", "ok"), Check::fail("c", "down", "look")]);
        assert!(!r.ok);
        assert!(r.text().contains("[FAIL] c: down\n       hint: look\n"));
        assert!(r.text().ends_with("2 checks: 1 passed, 1 failed, 0 skipped\n"));
        let mut r = Report::new(vec![Check::fail("API server reachable", "refused", "look")]);
        r.not_run = Some("they all need the API server".into());
        assert!(
            r.text().ends_with("(the other checks did not run: they all need the API server)\n1 check: 0 passed, 1 failed, 0 skipped\n")
        );
    }
}
