//! pg_hba rules as PostgreSQL means them, and the comparison of the rendered file with what
//! the server reads (`pg_hba_file_rules`), pure.
//!
//! A rule is its connection type, databases, users, address (normalised: `172.22.0.0` with
//! netmask `255.255.255.0` and `172.22.0.0/24` are one address), method and options. Rules are
//! compared in order, because PostgreSQL takes the first rule that matches a connection: a
//! shortest edit script over whole rules, where a rule that is missing and an extra one with
//! the same type, databases, users and address are one changed method.

use std::net::IpAddr;

use ipnet::IpNet;
use similar::{Algorithm, DiffOp, capture_diff_slices};

use crate::drift::report::{Change, Finding, Severity};

/// What the NixOS postgresql module appends to `services.postgresql.authentication` after the
/// lines we render (`mkAfter`), besides comments; nixpkgs,
/// nixos/modules/services/databases/postgresql.nix, its `config` section:
/// `services.postgresql.authentication = mkMerge [ (mkBefore "# Generated file; do not edit!")
/// (mkAfter ''# default value of services.postgresql.authentication ...'') ]`. The merged text
/// is what the module writes to `hba_file`; `/work/shared/nixos-eval` shows it for alkaid as our
/// line followed by exactly these four.
pub const NIXOS_APPENDED: [&str; 4] = [
    "local all postgres         peer map=postgres",
    "local all all              peer",
    "host  all all 127.0.0.1/32 md5",
    "host  all all ::1/128      md5",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub kind: String,
    pub databases: Vec<String>,
    pub users: Vec<String>,
    /// A network (`172.22.0.0/24`), a keyword or host name as written, or none (`local`).
    pub address: Option<String>,
    pub method: String,
    pub options: Vec<String>,
}

impl Rule {
    /// The rule as a pg_hba line.
    pub fn text(&self) -> String {
        let mut words = vec![self.kind.clone(), self.databases.join(","), self.users.join(",")];
        words.extend(self.address.clone());
        words.push(self.method.clone());
        words.extend(self.options.iter().cloned());
        words.join(" ")
    }

    fn without_method(&self) -> (&str, &[String], &[String], Option<&str>) {
        (&self.kind, &self.databases, &self.users, self.address.as_deref())
    }
}

/// A line of the rendered file as a rule; None for comments and blank lines. Our renderer and
/// the NixOS module write no quoted names and no include directives, so words split on
/// whitespace.
pub fn parse_line(line: &str) -> Option<Rule> {
    let line = line.split('#').next().unwrap_or("").trim();
    let mut words = line.split_whitespace();
    let kind = words.next()?.to_string();
    let list = |w: &str| w.split(',').map(str::to_string).collect::<Vec<_>>();
    let databases = list(words.next()?);
    let users = list(words.next()?);
    let rest: Vec<&str> = words.collect();
    let (address, rest) = if kind == "local" {
        (None, &rest[..])
    } else {
        let (first, after) = rest.split_first()?;
        // An address and a separate netmask, or a CIDR, or a keyword/host name.
        match (first.parse::<IpAddr>(), after.first().and_then(|m| m.parse::<IpAddr>().ok())) {
            (Ok(addr), Some(mask)) => (Some(network(&addr.to_string(), Some(&mask.to_string()))), &after[1..]),
            _ => (Some(network(first, None)), after),
        }
    };
    let (method, options) = rest.split_first()?;
    Some(Rule { kind, databases, users, address, method: method.to_string(), options: options.iter().map(|s| s.to_string()).collect() })
}

/// An address in one form: `ADDR/LEN` for a network (from a CIDR or an address and a netmask),
/// the text as it is for anything else.
pub fn network(address: &str, netmask: Option<&str>) -> String {
    let net = match netmask.map(str::parse::<IpAddr>) {
        Some(Ok(mask)) => address.parse::<IpAddr>().ok().and_then(|a| IpNet::with_netmask(a, mask).ok()),
        _ => address.parse::<IpNet>().ok(),
    };
    net.map_or_else(|| address.to_string(), |n| n.trunc().to_string())
}

/// One row of `pg_hba_file_rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveLine {
    pub line: Option<i32>,
    /// None when PostgreSQL could not read the line (`error` says why).
    pub rule: Option<Rule>,
    pub error: Option<String>,
}

/// The rendered rules against the server's, and the lines the server rejects.
pub fn compare(expected: &[Rule], live: &[LiveLine]) -> Vec<Finding> {
    let mut out = Vec::new();
    for l in live.iter().filter(|l| l.error.is_some()) {
        out.push(Finding {
            change: Change::Invalid,
            severity: Severity::Drift,
            subject: format!("pg_hba line {}", l.line.map_or("?".into(), |n| n.to_string())),
            expected: None,
            actual: Some(format!(
                "{} (PostgreSQL rejects the line, and with it a reload of the whole file)",
                l.error.as_deref().unwrap_or("")
            )),
        });
    }
    let have: Vec<(&Rule, Option<i32>)> = live.iter().filter_map(|l| Some((l.rule.as_ref()?, l.line))).collect();
    let (want_text, have_text): (Vec<String>, Vec<String>) =
        (expected.iter().map(Rule::text).collect(), have.iter().map(|(r, _)| r.text()).collect());
    let line = |i: usize| have[i].1.map_or_else(|| format!("rule {}", i + 1), |n| format!("line {n}"));
    for op in capture_diff_slices(Algorithm::Myers, &want_text, &have_text) {
        let (old, new) = match op {
            DiffOp::Equal { .. } => continue,
            DiffOp::Delete { old_index, old_len, .. } => (old_index..old_index + old_len, 0..0),
            DiffOp::Insert { new_index, new_len, .. } => (0..0, new_index..new_index + new_len),
            DiffOp::Replace { old_index, old_len, new_index, new_len } => (old_index..old_index + old_len, new_index..new_index + new_len),
        };
        let mut extra: Vec<usize> = new.collect();
        for i in old {
            let same_rule = extra.iter().position(|j| have[*j].0.without_method() == expected[i].without_method());
            match same_rule {
                Some(k) => {
                    let j = extra.remove(k);
                    let (w, h) = (&expected[i], have[j].0);
                    let what = |r: &Rule| {
                        format!(
                            "method {}",
                            std::iter::once(r.method.as_str()).chain(r.options.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
                        )
                    };
                    out.push(Finding::changed(
                        format!(
                            "pg_hba {} ({} {} {}{})",
                            line(j),
                            w.kind,
                            w.databases.join(","),
                            w.users.join(","),
                            w.address.as_ref().map(|a| format!(" {a}")).unwrap_or_default()
                        ),
                        what(w),
                        what(h),
                    ));
                }
                None => out.push(Finding::missing(format!("pg_hba rule {}", i + 1), expected[i].text())),
            }
        }
        for j in extra {
            out.push(Finding::extra(format!("pg_hba {}", line(j)), have[j].0.text()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(lines: &[&str]) -> Vec<LiveLine> {
        lines.iter().enumerate().map(|(i, l)| LiveLine { line: Some(i as i32 + 2), rule: parse_line(l), error: None }).collect()
    }

    fn texts(f: &[Finding]) -> Vec<String> {
        f.iter().map(Finding::text).collect()
    }

    #[test]
    fn lines_parse_into_rules() {
        let r = parse_line("host  all all 127.0.0.1/32 md5").unwrap();
        assert_eq!(r.text(), "host all all 127.0.0.1/32 md5");
        assert_eq!(
            parse_line("host kafka kafka 172.22.0.0 255.255.255.0 scram-sha-256").unwrap().address.as_deref(),
            Some("172.22.0.0/24")
        );
        assert_eq!(parse_line("local all postgres         peer map=postgres").unwrap().options, ["map=postgres"]);
        assert_eq!(parse_line("host all all ::1/128 md5").unwrap().address.as_deref(), Some("::1/128"));
        assert_eq!(parse_line("# TYPE  DATABASE  USER  ADDRESS  METHOD"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(network("::1", Some("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), "::1/128");
        assert_eq!(network("samehost", None), "samehost");
    }

    #[test]
    fn added_removed_and_changed_lines() {
        let want: Vec<Rule> = ["host kafka kafka 172.22.0.0/24 scram-sha-256", "local all all peer", "host all all 127.0.0.1/32 md5"]
            .iter()
            .filter_map(|l| parse_line(l))
            .collect();
        assert!(
            compare(&want, &live(&["host kafka kafka 172.22.0.0/24 scram-sha-256", "local all all peer", "host all all 127.0.0.1/32 md5"]))
                .is_empty()
        );
        let found =
            compare(&want, &live(&["host kafka kafka 172.22.0.0/24 md5", "host all all 0.0.0.0/0 trust", "host all all 127.0.0.1/32 md5"]));
        assert_eq!(
            texts(&found),
            [
                "~ pg_hba line 2 (host kafka kafka 172.22.0.0/24): method md5 (rendered: method scram-sha-256)",
                "- pg_hba rule 2: local all all peer",
                "+ pg_hba line 3: host all all 0.0.0.0/0 trust"
            ]
        );
    }

    #[test]
    fn a_line_postgresql_rejects_is_reported() {
        let lines = vec![LiveLine { line: Some(7), rule: None, error: Some("invalid authentication method \"scram\"".into()) }];
        let found = compare(&[], &lines);
        assert!(texts(&found)[0].starts_with("! pg_hba line 7: invalid authentication method \"scram\""), "{found:?}");
    }
}
