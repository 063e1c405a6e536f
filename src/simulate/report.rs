//! The simulation's verdict as a table for people: every probe (flow, expected, actual, the
//! chains it crossed, why the flow exists), every ruleset load and reload check, the timings.

use std::time::Duration;

use crate::model::Protocol;
use crate::policy::Chain;

use super::probes::{Method, Outcome, Probe};
use super::topology::Topology;

/// One host's ruleset: the first load, then the reload checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesetCheck {
    pub host: String,
    /// `None` when `nft -f` succeeded, else its error.
    pub load_error: Option<String>,
    pub reload_error: Option<String>,
    /// `nft list table inet iac` after the load equals the listing after the reload.
    pub listing_identical: bool,
    /// Stand-in tables (kube-proxy, flannel) missing after the reload; empty for non-nodes.
    pub standins_missing: Vec<String>,
}

impl RulesetCheck {
    pub fn ok(&self) -> bool {
        self.load_error.is_none() && self.reload_error.is_none() && self.listing_identical && self.standins_missing.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timings {
    pub build: Duration,
    pub load: Duration,
    pub probes: Duration,
    pub reload: Duration,
    pub total: Duration,
}

pub struct Report<'a> {
    pub topology: &'a Topology,
    pub probes: &'a [Probe],
    pub outcomes: &'a [Outcome],
    pub rulesets: &'a [RulesetCheck],
    /// Declared flows no probe can exercise in this topology (e.g. a server's forward rule
    /// for pods reaching another server, with one server), described; shown, not failed.
    pub unprobed: Vec<String>,
    pub timings: Timings,
}

impl Report<'_> {
    pub fn mismatches(&self) -> usize {
        self.probes.iter().zip(self.outcomes).filter(|(p, o)| !p.matches(o)).count()
    }

    pub fn ok(&self) -> bool {
        self.mismatches() == 0 && self.rulesets.iter().all(RulesetCheck::ok)
    }

    pub fn render(&self) -> String {
        let t = self.topology;
        let mut out = String::new();
        out.push_str(&format!("Simulated estate ({} network namespaces, prefix {}):\n", t.namespace_count(), t.prefix));
        for m in &t.members {
            let place = match &m.attach {
                super::topology::Attach::Lan { lan, .. } => format!("LAN {}", t.lans[*lan].name),
                super::topology::Attach::Routed => "own segment behind the router".into(),
                super::topology::Attach::Pod { node } => format!("cni0 of {}", t.nodes[*node].host),
            };
            out.push_str(&format!("  {:<12} {:<15} {}\n", m.label, m.addr, place));
        }
        out.push('\n');

        let verdict = |b: bool| if b { "pass" } else { "refused" };
        let mut rows: Vec<[String; 8]> =
            vec![["RESULT", "FROM", "TO", "SERVICE", "EXPECTED", "ACTUAL", "SEEN FROM", "PATH"].map(String::from)];
        let mut whys = Vec::new();
        for (p, o) in self.probes.iter().zip(self.outcomes) {
            let proto = match p.proto {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
            };
            let service = match p.method {
                Method::UdpOneWay => format!("{proto}/{} one-way", p.port),
                Method::VxlanInject { .. } => format!("{proto}/{} forged vxlan", p.port),
                _ => format!("{proto}/{}", p.port),
            };
            let ok = p.matches(o);
            let actual = if ok {
                verdict(o.passed).to_string()
            } else if p.expect == o.passed {
                format!("pass (expected from {})", p.arrives_from)
            } else {
                format!("{} ({})", verdict(o.passed), o.detail)
            };
            let seen = o.seen_from.map_or_else(|| "-".to_string(), |a| a.to_string());
            let path = p
                .hops
                .iter()
                .map(|h| format!("{}:{}", h.host, if h.chain == Chain::Input { "in" } else { "fwd" }))
                .collect::<Vec<_>>()
                .join(">");
            rows.push([
                if ok { "ok".into() } else { "MISMATCH".into() },
                t.members[p.from].label.clone(),
                p.to_label.clone(),
                service,
                verdict(p.expect).into(),
                actual,
                seen,
                path,
            ]);
            whys.push(p.why.clone());
        }
        let rows: Vec<Vec<String>> = rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.into_iter().chain([if i == 0 { "WHY".to_string() } else { whys[i - 1].clone() }]).collect())
            .collect();
        out.push_str(&crate::table::aligned(&rows));

        out.push_str("\nRulesets (load, reload, listing identical, stand-in tables kept):\n");
        for r in self.rulesets {
            let mut line = format!("  {:<10} ", r.host);
            match (&r.load_error, &r.reload_error) {
                (Some(e), _) => line.push_str(&format!("MISMATCH load failed: {}", one_line(e))),
                (None, Some(e)) => line.push_str(&format!("MISMATCH reload failed: {}", one_line(e))),
                (None, None) if !r.listing_identical => line.push_str("MISMATCH the reload changed `nft list table inet iac`"),
                (None, None) if !r.standins_missing.is_empty() => {
                    line.push_str(&format!("MISMATCH stand-in table(s) gone: {}", r.standins_missing.join(", ")))
                }
                (None, None) => line.push_str("ok (loaded, reloaded, identical listing, other tables intact)"),
            }
            out.push_str(&line);
            out.push('\n');
        }
        if !self.unprobed.is_empty() {
            out.push_str("\nNot exercised (no traffic in this topology crosses the rule; not proven):\n");
            for u in &self.unprobed {
                out.push_str(&format!("  {u}\n"));
            }
        }
        let probes = self.probes.len();
        let mismatches = self.mismatches();
        let tm = &self.timings;
        out.push_str(&format!(
            "\n{} probes: {} as expected, {} mismatched; {} rulesets: {} ok. Time: build {} ms, load {} ms, probes {} ms, reload {} ms, total {} ms.\n",
            probes,
            probes - mismatches,
            mismatches,
            self.rulesets.len(),
            self.rulesets.iter().filter(|r| r.ok()).count(),
            tm.build.as_millis(),
            tm.load.as_millis(),
            tm.probes.as_millis(),
            tm.reload.as_millis(),
            tm.total.as_millis(),
        ));
        out.push_str(if self.ok() { "simulate: PASS\n" } else { "simulate: FAIL\n" });
        out
    }
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).take(3).collect::<Vec<_>>().join(" | ")
}
