//! What `iac drift` found: plain data, serialized as it is for `--format json` (its shape is
//! documented in docs/drift.md and kept stable), and the text table for people.
//!
//! Every difference is a [`Finding`] that says which way it goes: `-` rendered but not on the
//! host (missing), `+` on the host but not rendered (extra), `~` present on both sides with a
//! different value, `!` a warning (a foreign table's dropping base chain, an invalid pg_hba line).

use serde::Serialize;

/// How a difference counts. Both make `iac drift` exit 1; a warning is about something iac does
/// not own (another table's chain) that still defeats what it rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Drift,
    Warning,
}

/// Which way a difference goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Rendered, not on the host.
    Missing,
    /// On the host, not rendered.
    Extra,
    /// On both, with different values (`expected` is the rendered one, `actual` the live one).
    Changed,
    /// Another table's base chain on the input or forward hook that drops.
    ForeignDrop,
    /// The server cannot use what it holds (a pg_hba line PostgreSQL rejects).
    Invalid,
}

impl Change {
    fn marker(self) -> char {
        match self {
            Change::Missing => '-',
            Change::Extra => '+',
            Change::Changed => '~',
            Change::ForeignDrop | Change::Invalid => '!',
        }
    }
}

/// One difference between what the inventory renders and what runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub change: Change,
    pub severity: Severity,
    /// What it is about: `chain input, rule 6`, `set admin`, `pg_hba line 2`, `role kafka`.
    pub subject: String,
    /// The rendered value (absent for an extra).
    pub expected: Option<String>,
    /// The live value (absent for a missing one).
    pub actual: Option<String>,
}

impl Finding {
    pub fn missing(subject: impl Into<String>, expected: impl Into<String>) -> Self {
        Self { change: Change::Missing, severity: Severity::Drift, subject: subject.into(), expected: Some(expected.into()), actual: None }
    }

    pub fn extra(subject: impl Into<String>, actual: impl Into<String>) -> Self {
        Self { change: Change::Extra, severity: Severity::Drift, subject: subject.into(), expected: None, actual: Some(actual.into()) }
    }

    pub fn changed(subject: impl Into<String>, expected: impl Into<String>, actual: impl Into<String>) -> Self {
        Self {
            change: Change::Changed,
            severity: Severity::Drift,
            subject: subject.into(),
            expected: Some(expected.into()),
            actual: Some(actual.into()),
        }
    }

    pub fn warning(change: Change, subject: impl Into<String>, actual: impl Into<String>) -> Self {
        Self { change, severity: Severity::Warning, subject: subject.into(), expected: None, actual: Some(actual.into()) }
    }

    /// One line for people: `- chain input, rule 6: ip saddr @admin tcp dport 6443 accept`.
    pub fn text(&self) -> String {
        let m = self.change.marker();
        let (e, a) = (self.expected.as_deref().unwrap_or(""), self.actual.as_deref().unwrap_or(""));
        match self.change {
            Change::Missing => format!("{m} {}: {e}", self.subject),
            Change::Extra | Change::ForeignDrop | Change::Invalid => format!("{m} {}: {a}", self.subject),
            Change::Changed => format!("{m} {}: {a} (rendered: {e})", self.subject),
        }
    }
}

/// The state of one part of one host (firewall, PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    InSync,
    Drift,
    /// It could not be compared; `error` says why.
    Error,
}

/// The firewall or PostgreSQL of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartReport {
    pub state: State,
    pub error: Option<String>,
    pub findings: Vec<Finding>,
}

impl PartReport {
    pub fn compared(findings: Vec<Finding>) -> Self {
        let state = if findings.is_empty() { State::InSync } else { State::Drift };
        Self { state, error: None, findings }
    }

    pub fn failed(error: impl Into<String>) -> Self {
        Self { state: State::Error, error: Some(error.into()), findings: Vec::new() }
    }

    /// Compared, but part of it could not be read (the findings of the rest stand).
    pub fn partly(findings: Vec<Finding>, error: impl Into<String>) -> Self {
        Self { state: State::Error, error: Some(error.into()), findings }
    }
}

/// `/run/current-system` against the flake's build of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GenerationState {
    InSync,
    Differs,
    /// Nothing to compare with: `--no-build`, no `nix` here, or the build failed (`reason`).
    NotBuilt,
    /// The running system could not be read (`reason`).
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenerationReport {
    pub state: GenerationState,
    /// The store path `/run/current-system` points at.
    pub running: Option<String>,
    /// The store path the flake builds for the host.
    pub built: Option<String>,
    pub reason: Option<String>,
}

/// Everything about one host. A host that cannot be reached over SSH has `error` set and its
/// firewall and generation in the error state; the others still report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReport {
    pub host: String,
    pub address: String,
    /// How its state was read: `ssh`, or `local` (`--local`: the kernel iac runs on).
    pub source: Source,
    pub error: Option<String>,
    pub firewall: Option<PartReport>,
    pub postgres: Option<PartReport>,
    pub generation: Option<GenerationReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Ssh,
    Local,
}

/// One rendered object of `generated/k8s` (or a live one that is no longer rendered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectState {
    InSync,
    /// `iac apply` would change the fields listed.
    Differs,
    /// Not in the cluster: `iac apply` would create it.
    Missing,
    /// In the cluster with iac's labels, no longer rendered: `iac apply` would prune it.
    NotRendered,
    /// The API server refuses the rendered object (a 422: an immutable field changed).
    Refused,
}

/// A field whose live value differs from the one a server-side apply would leave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    /// `spec.template.spec.containers[0].image`
    pub path: String,
    pub live: Option<serde_json::Value>,
    pub rendered: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectReport {
    /// `statefulset/kafka`, as `iac apply` names objects.
    pub object: String,
    pub namespace: Option<String>,
    pub state: ObjectState,
    pub fields: Vec<FieldDiff>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterReport {
    pub server: String,
    pub objects: Vec<ObjectReport>,
}

/// The whole report of one `iac drift`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Anything differs (a finding of any severity, a generation that differs, an object that
    /// is not in sync).
    pub drift: bool,
    /// Hosts that could not be compared in full (unreachable, a refused query).
    pub errors: usize,
    pub hosts: Vec<HostReport>,
    pub cluster: Option<ClusterReport>,
}

impl HostReport {
    fn parts(&self) -> impl Iterator<Item = &PartReport> {
        [self.firewall.as_ref(), self.postgres.as_ref()].into_iter().flatten()
    }

    /// Something differs on this host.
    pub fn drifts(&self) -> bool {
        self.parts().any(|p| !p.findings.is_empty()) || self.generation.as_ref().is_some_and(|g| g.state == GenerationState::Differs)
    }

    /// Something of this host could not be compared.
    pub fn failed(&self) -> bool {
        self.error.is_some()
            || self.parts().any(|p| p.state == State::Error)
            || self.generation.as_ref().is_some_and(|g| g.state == GenerationState::Error)
    }
}

impl Report {
    pub fn new(hosts: Vec<HostReport>, cluster: Option<ClusterReport>) -> Self {
        let cluster_drift = cluster.as_ref().is_some_and(|c| c.objects.iter().any(|o| o.state != ObjectState::InSync));
        let drift = hosts.iter().any(HostReport::drifts) || cluster_drift;
        let errors = hosts.iter().filter(|h| h.failed()).count();
        Self { drift, errors, hosts, cluster }
    }

    /// Exit 0 only when everything was compared and matches.
    pub fn clean(&self) -> bool {
        !self.drift && self.errors == 0
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut s = String::new();
        if self.hosts.iter().any(|h| h.parts().any(|p| !p.findings.is_empty())) {
            s.push_str("(- rendered, not on the host   + on the host, not rendered   ~ differs   ! warning)\n");
        }
        for h in &self.hosts {
            let local = if h.source == Source::Local { ", read on this machine (--local)" } else { "" };
            s.push_str(&format!("== {} ({}{local})\n", h.host, h.address));
            if let Some(e) = &h.error {
                s.push_str(&format!("ERROR: {e}\n"));
            }
            for (name, part) in [("firewall", &h.firewall), ("postgres", &h.postgres)] {
                let Some(p) = part else { continue };
                part_text(&mut s, name, p);
            }
            if let Some(g) = &h.generation {
                generation_text(&mut s, g);
            }
        }
        if let Some(c) = &self.cluster {
            cluster_text(&mut s, c);
        }
        s.push_str(&self.summary());
        s.push('\n');
        s
    }

    /// The last line: `drift: DRIFT: 2 of 3 host(s) differ; cluster: 2 of 14 object(s) differ; 1 error(s)`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.hosts.is_empty() {
            let drifting = self.hosts.iter().filter(|h| h.drifts()).count();
            parts.push(format!("{drifting} of {} host(s) differ", self.hosts.len()));
        }
        if let Some(c) = &self.cluster {
            let off = c.objects.iter().filter(|o| o.state != ObjectState::InSync).count();
            parts.push(format!("cluster: {off} of {} object(s) differ", c.objects.len()));
        }
        parts.push(format!("{} error(s)", self.errors));
        let verdict = if self.clean() {
            "in sync"
        } else if self.drift {
            "DRIFT"
        } else {
            "ERROR"
        };
        format!("drift: {verdict}: {}", parts.join("; "))
    }
}

fn part_text(s: &mut String, name: &str, p: &PartReport) {
    match p.state {
        State::InSync => s.push_str(&format!("{name}: in sync\n")),
        State::Drift => s.push_str(&format!("{name}: DRIFT ({} difference(s))\n", p.findings.len())),
        State::Error => s.push_str(&format!("{name}: ERROR: {}\n", p.error.as_deref().unwrap_or("unknown"))),
    }
    for f in &p.findings {
        s.push_str(&format!("  {}\n", f.text()));
    }
}

fn generation_text(s: &mut String, g: &GenerationReport) {
    let running = g.running.as_deref().unwrap_or("?");
    let line = match g.state {
        GenerationState::InSync => format!("generation: in sync ({running})"),
        GenerationState::Differs => {
            format!("generation: DIFFERS: running {running}, the flake builds {}", g.built.as_deref().unwrap_or("?"))
        }
        GenerationState::NotBuilt => format!("generation: not built ({}); running {running}", g.reason.as_deref().unwrap_or("")),
        GenerationState::Error => format!("generation: ERROR: {}", g.reason.as_deref().unwrap_or("")),
    };
    s.push_str(&line);
    s.push('\n');
}

fn cluster_text(s: &mut String, c: &ClusterReport) {
    s.push_str(&format!("== cluster ({})\n", c.server));
    let in_sync = c.objects.iter().filter(|o| o.state == ObjectState::InSync).count();
    for o in c.objects.iter().filter(|o| o.state != ObjectState::InSync) {
        let what = match o.state {
            ObjectState::InSync => "in sync",
            ObjectState::Differs => "DIFFERS (live → what `iac apply` would leave)",
            ObjectState::Missing => "MISSING (`iac apply` creates it)",
            ObjectState::NotRendered => "NOT RENDERED (carries iac's labels; `iac apply` prunes it)",
            ObjectState::Refused => "REFUSED by the API server",
        };
        s.push_str(&format!("  {}: {what}\n", o.object));
        if let Some(m) = &o.message {
            s.push_str(&format!("      {m}\n"));
        }
        for f in &o.fields {
            let show = |v: &Option<serde_json::Value>| v.as_ref().map_or_else(|| "(absent)".to_string(), |v| v.to_string());
            s.push_str(&format!("      {}: {} → {}\n", f.path, show(&f.live), show(&f.rendered)));
        }
    }
    s.push_str(&format!("  {in_sync} of {} object(s) in sync\n", c.objects.len()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_read_as_a_diff() {
        assert_eq!(Finding::missing("set admin", "element 172.22.0.0/24").text(), "- set admin: element 172.22.0.0/24");
        assert_eq!(Finding::extra("chain input, rule 8", "tcp dport 8080 accept").text(), "+ chain input, rule 8: tcp dport 8080 accept");
        assert_eq!(
            Finding::changed("chain forward", "policy drop", "policy accept").text(),
            "~ chain forward: policy accept (rendered: policy drop)"
        );
    }

    #[test]
    fn errors_and_drift_decide_the_verdict() {
        let host = |firewall: PartReport| HostReport {
            host: "a".into(),
            address: "10.0.0.1".into(),
            source: Source::Ssh,
            error: None,
            firewall: Some(firewall),
            postgres: None,
            generation: None,
        };
        let clean = Report::new(vec![host(PartReport::compared(vec![]))], None);
        assert!(clean.clean());
        assert!(clean.summary().starts_with("drift: in sync: 0 of 1 host(s) differ"), "{}", clean.summary());
        let drift = Report::new(vec![host(PartReport::compared(vec![Finding::extra("x", "y")]))], None);
        assert!(drift.drift && !drift.clean());
        let error = Report::new(vec![host(PartReport::failed("unreachable"))], None);
        assert_eq!((error.drift, error.errors), (false, 1));
        assert!(error.summary().starts_with("drift: ERROR:"), "{}", error.summary());
    }
}
