//! The comparison, pure: the rendered `table inet iac` (as the kernel lists it) against the
//! live ruleset, and the other tables' base chains that drop.

use similar::{Algorithm, DiffOp, capture_diff_slices};

use super::ruleset::{Chain, Ruleset, SetInfo, Table, TableId};
use crate::drift::report::{Change, Finding};

/// The family and name of the table iac owns on every host.
pub const OUR_TABLE: (&str, &str) = ("inet", "iac");

/// The hooks on which a drop in any table's base chain cuts traffic our table admits: nft
/// evaluates every base chain of a hook, and a drop in any of them is final, while an accept
/// only ends its own chain (DESIGN.md, fact 1: how the seed's cluster lost its network).
const GUARDED_HOOKS: [&str; 2] = ["input", "forward"];

/// Every difference between `expected` (the rendered table, loaded and listed by the local
/// kernel) and `live` (the host's whole ruleset).
pub fn compare(expected: &Ruleset, live: &Ruleset) -> Vec<Finding> {
    let id = TableId { family: OUR_TABLE.0.into(), name: OUR_TABLE.1.into() };
    let mut out = Vec::new();
    match (expected.tables.get(&id), live.tables.get(&id)) {
        (Some(want), Some(have)) => table(want, have, &mut out),
        (Some(want), None) => out.push(Finding::missing(
            format!("table {id}"),
            format!("the whole table ({} sets, {} chains): iac's firewall is not loaded", want.sets.len(), want.chains.len()),
        )),
        (None, _) => out.push(Finding::missing(format!("table {id}"), "the rendered ruleset has no such table")),
    }
    foreign_drops(live, &id, &mut out);
    out
}

fn table(want: &Table, have: &Table, out: &mut Vec<Finding>) {
    for (name, w) in &want.sets {
        match have.sets.get(name) {
            None => out.push(Finding::missing(format!("set {name}"), format!("the set ({} elements)", w.elements.len()))),
            Some(h) => set(name, w, h, out),
        }
    }
    for (name, h) in have.sets.iter().filter(|(n, _)| !want.sets.contains_key(*n)) {
        out.push(Finding::extra(format!("set {name}"), format!("a set not rendered ({} elements)", h.elements.len())));
    }
    for (name, w) in &want.chains {
        match have.chains.get(name) {
            None => out.push(Finding::missing(
                format!("chain {name}"),
                format!("the chain ({}{} rules)", w.base.as_ref().map(|b| format!("{b}; ")).unwrap_or_default(), w.rules.len()),
            )),
            Some(h) => chain(name, w, h, out),
        }
    }
    for (name, h) in have.chains.iter().filter(|(n, _)| !want.chains.contains_key(*n)) {
        let rules: Vec<&str> = h.rules.iter().map(|r| r.text.as_str()).collect();
        out.push(Finding::extra(
            format!("chain {name}"),
            format!("a chain not rendered ({}rules: {})", h.base.as_ref().map(|b| format!("{b}; ")).unwrap_or_default(), rules.join("; ")),
        ));
    }
    for o in want.others.difference(&have.others) {
        out.push(Finding::missing(o.clone(), "rendered, not on the host"));
    }
    for o in have.others.difference(&want.others) {
        out.push(Finding::extra(o.clone(), "on the host, not rendered"));
    }
}

fn set(name: &str, want: &SetInfo, have: &SetInfo, out: &mut Vec<Finding>) {
    let subject = format!("set {name}");
    if want.kind != have.kind {
        out.push(Finding::changed(&subject, format!("type {}", want.kind), format!("type {}", have.kind)));
    }
    if want.flags != have.flags {
        let flags = |s: &SetInfo| {
            format!("flags {}", if s.flags.is_empty() { "none".to_string() } else { s.flags.iter().cloned().collect::<Vec<_>>().join(",") })
        };
        out.push(Finding::changed(&subject, flags(want), flags(have)));
    }
    for e in want.elements.minus(&have.elements) {
        out.push(Finding::missing(&subject, format!("element {e}")));
    }
    for e in have.elements.minus(&want.elements) {
        out.push(Finding::extra(&subject, format!("element {e}")));
    }
}

/// A base chain's attachment and policy, then its rules in order: a shortest edit script over
/// the rules' statements (Myers, as `diff` does), so one inserted rule is one `+` line and not
/// a shift of every rule after it. Positions count from 1 (the rendered position for a missing
/// rule, the live one for an extra).
fn chain(name: &str, want: &Chain, have: &Chain, out: &mut Vec<Finding>) {
    let subject = format!("chain {name}");
    match (&want.base, &have.base) {
        (Some(w), Some(h)) => {
            if w.policy != h.policy {
                out.push(Finding::changed(&subject, format!("policy {}", w.policy), format!("policy {}", h.policy)));
            }
            if (&w.kind, &w.hook, w.prio) != (&h.kind, &h.hook, h.prio) {
                let attach = |b: &super::ruleset::Base| format!("type {} hook {} priority {}", b.kind, b.hook, b.prio);
                out.push(Finding::changed(&subject, attach(w), attach(h)));
            }
        }
        (Some(w), None) => {
            out.push(Finding::changed(&subject, format!("a base chain ({w})"), "a regular chain (no hook: it sees no packets)"))
        }
        (None, Some(h)) => out.push(Finding::changed(&subject, "a regular chain", format!("a base chain ({h})"))),
        (None, None) => {}
    }
    let w: Vec<&str> = want.rules.iter().map(|r| r.key.as_str()).collect();
    let h: Vec<&str> = have.rules.iter().map(|r| r.key.as_str()).collect();
    for op in capture_diff_slices(Algorithm::Myers, &w, &h) {
        let (old, new) = match op {
            DiffOp::Equal { .. } => continue,
            DiffOp::Delete { old_index, old_len, .. } => (old_index..old_index + old_len, 0..0),
            DiffOp::Insert { new_index, new_len, .. } => (0..0, new_index..new_index + new_len),
            DiffOp::Replace { old_index, old_len, new_index, new_len } => (old_index..old_index + old_len, new_index..new_index + new_len),
        };
        for i in old {
            out.push(Finding::missing(format!("{subject}, rule {}", i + 1), want.rules[i].text.clone()));
        }
        for i in new {
            out.push(Finding::extra(format!("{subject}, rule {}", i + 1), have.rules[i].text.clone()));
        }
    }
}

/// Other tables' base chains on the input or forward hook that drop: by policy, or by a rule
/// of their own that drops or rejects. Rules reached through a jump are not followed (kube-
/// proxy's own chains reject traffic to unallocated service addresses by design).
fn foreign_drops(live: &Ruleset, ours: &TableId, out: &mut Vec<Finding>) {
    for (id, t) in live.tables.iter().filter(|(id, _)| *id != ours && matches!(id.family.as_str(), "ip" | "ip6" | "inet")) {
        for (name, c) in &t.chains {
            let Some(base) = c.base.as_ref().filter(|b| GUARDED_HOOKS.contains(&b.hook.as_str())) else { continue };
            let subject = format!("table {id}, chain {name} (hook {}, priority {})", base.hook, base.prio);
            if base.policy == "drop" {
                out.push(Finding::warning(
                    Change::ForeignDrop,
                    &subject,
                    format!("policy drop: a drop in any base chain is final, so what iac's table accepts on the {} hook is dropped here unless this chain accepts it too", base.hook),
                ));
            }
            for (i, r) in c.rules.iter().enumerate().filter(|(_, r)| r.drops) {
                out.push(Finding::warning(
                    Change::ForeignDrop,
                    format!("{subject}, rule {}", i + 1),
                    format!("{} (drops whatever it matches, whatever iac's table accepts)", r.text),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ruleset::parse;
    use super::*;

    fn listing(objects: &str) -> Ruleset {
        parse(&format!(r#"{{"nftables": [{{"table": {{"family": "inet", "name": "iac"}}}}, {objects}]}}"#)).unwrap()
    }

    const CHAIN: &str =
        r#"{"chain": {"family": "inet", "table": "iac", "name": "input", "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}"#;

    fn rule(port: u16) -> String {
        format!(
            r#"{{"rule": {{"family": "inet", "table": "iac", "chain": "input", "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "tcp", "field": "dport"}}}}, "right": {port}}}}}, {{"accept": null}}]}}}}"#
        )
    }

    fn texts(f: &[Finding]) -> Vec<String> {
        f.iter().map(Finding::text).collect()
    }

    #[test]
    fn equal_listings_have_no_findings() {
        let a = listing(&format!("{CHAIN}, {}, {}", rule(22), rule(80)));
        assert!(compare(&a, &a).is_empty());
    }

    #[test]
    fn one_inserted_rule_is_one_line() {
        let want = listing(&format!("{CHAIN}, {}, {}, {}", rule(22), rule(80), rule(443)));
        let have = listing(&format!("{CHAIN}, {}, {}, {}, {}", rule(22), rule(8080), rule(80), rule(443)));
        assert_eq!(texts(&compare(&want, &have)), ["+ chain input, rule 2: tcp dport 8080 accept"]);
        assert_eq!(texts(&compare(&have, &want)), ["- chain input, rule 2: tcp dport 8080 accept"]);
        // A changed rule is the old one missing and the new one extra, at their positions.
        let changed = listing(&format!("{CHAIN}, {}, {}, {}", rule(22), rule(81), rule(443)));
        assert_eq!(
            texts(&compare(&want, &changed)),
            ["- chain input, rule 2: tcp dport 80 accept", "+ chain input, rule 2: tcp dport 81 accept"]
        );
    }

    #[test]
    fn policies_and_missing_tables() {
        let want = listing(CHAIN);
        let have = listing(&CHAIN.replace(r#""policy": "drop""#, r#""policy": "accept""#));
        assert_eq!(texts(&compare(&want, &have)), ["~ chain input: policy accept (rendered: policy drop)"]);
        let empty = parse(r#"{"nftables": []}"#).unwrap();
        assert_eq!(texts(&compare(&want, &empty)), ["- table inet iac: the whole table (0 sets, 1 chains): iac's firewall is not loaded"]);
    }

    #[test]
    fn foreign_base_chains_that_drop_are_warnings() {
        let want = listing(CHAIN);
        let have = parse(&format!(
            r#"{{"nftables": [{{"table": {{"family": "inet", "name": "iac"}}}}, {CHAIN},
            {{"chain": {{"family": "ip", "table": "filter", "name": "FORWARD", "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}}},
            {{"chain": {{"family": "ip", "table": "filter", "name": "OUTPUT", "type": "filter", "hook": "output", "prio": 0, "policy": "drop"}}}},
            {{"chain": {{"family": "ip", "table": "nat", "name": "KUBE-X"}}}},
            {{"rule": {{"family": "ip", "table": "nat", "chain": "KUBE-X", "expr": [{{"drop": null}}]}}}},
            {{"chain": {{"family": "inet", "table": "other", "name": "in", "type": "filter", "hook": "input", "prio": -5, "policy": "accept"}}}},
            {{"rule": {{"family": "inet", "table": "other", "chain": "in", "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "tcp", "field": "dport"}}}}, "right": 6443}}}}, {{"reject": null}}]}}}},
            {{"chain": {{"family": "ip", "table": "filter", "name": "INPUT", "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}}},
            {{"rule": {{"family": "ip", "table": "filter", "chain": "INPUT", "expr": [{{"xt": {{"type": "match", "name": "comment"}}}}, {{"counter": {{"packets": 0, "bytes": 0}}}}]}}}},
            {{"rule": {{"family": "ip", "table": "filter", "chain": "INPUT", "expr": [{{"counter": {{"packets": 0, "bytes": 0}}}}, {{"xt": {{"type": "target", "name": "REJECT"}}}}]}}}}]}}"#
        ))
        .unwrap();
        let found = compare(&want, &have);
        assert!(found.iter().all(|f| f.severity == crate::drift::report::Severity::Warning));
        let t = texts(&found);
        assert_eq!(t.len(), 3, "{t:#?}");
        assert!(t[0].starts_with("! table inet other, chain in (hook input, priority -5), rule 1: tcp dport 6443 reject"), "{t:#?}");
        assert!(t[1].starts_with("! table ip filter, chain FORWARD (hook forward, priority 0): policy drop"), "{t:#?}");
        // iptables-nft's `-j REJECT`, and not its comment match.
        assert!(
            t[2].starts_with(
                r#"! table ip filter, chain INPUT (hook input, priority 0), rule 2: counter {"xt":{"name":"REJECT","type":"target"}}"#
            ),
            "{t:#?}"
        );
    }
}
