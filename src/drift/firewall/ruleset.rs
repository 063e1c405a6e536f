//! An `nft -j list ruleset` listing, parsed with the `nftables` crate's typed schema and reduced
//! to what drift compares: per table its sets (type, flags, elements as values), its chains
//! (type, hook, priority, policy) and their rules in order. Handles, comments and counters'
//! values are left out: they change without the ruleset meaning anything else.
//!
//! A rule is identified by its statements re-serialized from the typed values. The crate's
//! structs ignore keys they do not know (serde's default; none of them denies unknown fields),
//! so a newer `nft` on the host that adds keys to its JSON is read as the same rule. A newer
//! `nft` can also print a statement or expression the crate has no variant for: then the
//! listing is read object by object, and only the objects the crate cannot read are kept as
//! their raw JSON (still compared, still checked for drops), instead of failing the host.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use nftables::schema::{NfListObject, NfObject, Nftables};
use nftables::stmt::Statement;
use serde_json::Value;

use super::elements::Elements;
use super::show::{self, word};

/// A table's address: family and name (`inet iac`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    pub family: String,
    pub name: String,
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family, self.name)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub tables: BTreeMap<TableId, Table>,
    /// Objects the typed schema could not read (kept raw), for the report.
    pub unparsed: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub sets: BTreeMap<String, SetInfo>,
    pub chains: BTreeMap<String, Chain>,
    /// Other named objects (maps, counters, flowtables, ...) as `kind name`: compared by
    /// presence only.
    pub others: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetInfo {
    /// `ipv4_addr`, or the JSON of a concatenated type.
    pub kind: String,
    pub flags: BTreeSet<String>,
    pub elements: Elements,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// Set for a base chain (one attached to a hook).
    pub base: Option<Base>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub kind: String,
    pub hook: String,
    pub prio: i64,
    pub policy: String,
}

impl fmt::Display for Base {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "type {} hook {} priority {}; policy {}", self.kind, self.hook, self.prio, self.policy)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The statements as JSON: what two rules are compared by.
    pub key: String,
    /// For people (`ip saddr @admin tcp dport 22 accept`).
    pub text: String,
    /// Ends in a `drop` or `reject` statement of its own (not through a jump).
    pub drops: bool,
}

/// A statement that drops the packet: `drop`, `reject`, or the `DROP`/`REJECT` target of a rule
/// iptables-nft wrote (nft lists those as `{"xt": {"type": "target", "name": "REJECT"}}`).
fn drops(s: &Statement<'_>) -> bool {
    match s {
        Statement::Drop(_) | Statement::Reject(_) => true,
        Statement::XT(Some(xt)) => {
            xt.get("type").and_then(Value::as_str) == Some("target")
                && matches!(xt.get("name").and_then(Value::as_str), Some("DROP" | "REJECT"))
        }
        _ => false,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not an nft JSON listing: {0}")]
pub struct ParseError(String);

/// Parse a listing: the typed schema for the whole of it, or object by object when a part of it
/// is beyond the schema (see the module comment).
pub fn parse(json: &str) -> Result<Ruleset, ParseError> {
    let mut out = Ruleset::default();
    match serde_json::from_str::<Nftables<'_>>(json) {
        Ok(listing) => {
            for obj in listing.objects.iter() {
                if let NfObject::ListObject(o) = obj {
                    out.add(o);
                }
            }
        }
        Err(whole) => {
            let v: Value = serde_json::from_str(json).map_err(|e| ParseError(e.to_string()))?;
            let objects = v.get("nftables").and_then(Value::as_array).ok_or_else(|| ParseError(whole.to_string()))?;
            for raw in objects {
                match serde_json::from_value::<NfObject<'_>>(raw.clone()) {
                    Ok(NfObject::ListObject(o)) => out.add(&o),
                    Ok(NfObject::CmdObject(_)) => {}
                    Err(_) => {
                        out.unparsed += 1;
                        out.add_raw(raw);
                    }
                }
            }
        }
    }
    Ok(out)
}

impl Ruleset {
    fn table(&mut self, family: String, name: String) -> &mut Table {
        self.tables.entry(TableId { family, name }).or_default()
    }

    fn add(&mut self, o: &NfListObject<'_>) {
        match o {
            NfListObject::Table(t) => {
                self.table(word(&t.family), t.name.to_string());
            }
            NfListObject::Chain(c) => {
                let base = c.hook.map(|hook| Base {
                    kind: c._type.as_ref().map_or_else(|| "filter".into(), word),
                    hook: word(&hook),
                    prio: c.prio.map_or(0, i64::from),
                    policy: c.policy.as_ref().map_or_else(|| "accept".into(), word),
                });
                self.table(word(&c.family), c.table.to_string()).chains.entry(c.name.to_string()).or_default().base = base;
            }
            NfListObject::Rule(r) => {
                let rule = Rule {
                    key: serde_json::to_string(&r.expr).unwrap_or_default(),
                    text: show::rule(&r.expr),
                    drops: r.expr.iter().any(drops),
                };
                self.table(word(&r.family), r.table.to_string()).chains.entry(r.chain.to_string()).or_default().rules.push(rule);
            }
            NfListObject::Set(s) => {
                let ipv4 = matches!(s.set_type, nftables::schema::SetTypeValue::Single(nftables::schema::SetType::Ipv4Addr));
                let info = SetInfo {
                    kind: word(&s.set_type),
                    flags: s.flags.iter().flatten().map(word).collect(),
                    elements: Elements::from_typed(ipv4, s.elem.as_deref().unwrap_or_default()),
                };
                self.table(word(&s.family), s.table.to_string()).sets.insert(s.name.to_string(), info);
            }
            NfListObject::MetainfoObject(_) | NfListObject::Element(_) => {}
            other => {
                if let Ok(v) = serde_json::to_value(other) {
                    self.add_other(&v);
                }
            }
        }
    }

    /// An object the typed schema could not read, from its JSON.
    fn add_raw(&mut self, raw: &Value) {
        let Some((kind, inner)) = raw.as_object().and_then(|m| m.iter().next()) else { return };
        let s = |k: &str| inner.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        match kind.as_str() {
            "table" => {
                self.table(s("family"), s("name"));
            }
            "chain" => {
                let base = inner.get("hook").and_then(Value::as_str).map(|hook| Base {
                    kind: inner.get("type").and_then(Value::as_str).unwrap_or("filter").into(),
                    hook: hook.into(),
                    prio: inner.get("prio").and_then(Value::as_i64).unwrap_or(0),
                    policy: inner.get("policy").and_then(Value::as_str).unwrap_or("accept").into(),
                });
                self.table(s("family"), s("table")).chains.entry(s("name")).or_default().base = base;
            }
            "rule" => {
                let expr = inner.get("expr").cloned().unwrap_or(Value::Null);
                let drops = expr.as_array().is_some_and(|a| {
                    a.iter().any(|st| {
                        st.get("drop").is_some()
                            || st.get("reject").is_some()
                            || serde_json::from_value::<Statement<'_>>(st.clone()).is_ok_and(|t| drops(&t))
                    })
                });
                let rule = Rule { key: expr.to_string(), text: expr.to_string(), drops };
                self.table(s("family"), s("table")).chains.entry(s("chain")).or_default().rules.push(rule);
            }
            _ => self.add_other(raw),
        }
    }

    fn add_other(&mut self, v: &Value) {
        let Some((kind, inner)) = v.as_object().and_then(|m| m.iter().next()) else { return };
        let s = |k: &str| inner.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        // A set the schema could not read is still a set (with its elements as JSON).
        let (family, table) = (s("family"), s("table"));
        if kind == "set" {
            let elems: Vec<Value> = inner.get("elem").and_then(Value::as_array).cloned().unwrap_or_default();
            let info = SetInfo {
                kind: inner.get("type").map(Value::to_string).unwrap_or_default(),
                flags: inner
                    .get("flags")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|f| f.as_str().unwrap_or("").to_owned())
                    .collect(),
                elements: Elements { other: elems.iter().map(Value::to_string).collect(), ..Elements::default() },
            };
            self.table(family, table).sets.insert(s("name"), info);
            return;
        }
        self.table(family, table).others.insert(format!("{kind} {}", s("name")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"{"nftables": [
        {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "iac", "handle": 2}},
        {"set": {"family": "inet", "name": "admin", "table": "iac", "type": "ipv4_addr", "handle": 3, "flags": ["interval"],
                 "elem": [{"prefix": {"addr": "172.22.0.0", "len": 24}}]}},
        {"chain": {"family": "inet", "table": "iac", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
        {"rule": {"family": "inet", "table": "iac", "chain": "input", "handle": 14, "comment": "ssh", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@admin"}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}, {"accept": null}]}}
    ]}"#;

    #[test]
    fn a_listing_becomes_tables_sets_chains_and_rules() {
        let r = parse(LISTING).unwrap();
        let t = &r.tables[&TableId { family: "inet".into(), name: "iac".into() }];
        assert_eq!(t.sets["admin"].kind, "ipv4_addr");
        assert_eq!(t.sets["admin"].flags, BTreeSet::from(["interval".to_string()]));
        assert_eq!(t.chains["input"].base.as_ref().unwrap().to_string(), "type filter hook input priority 0; policy drop");
        assert_eq!(t.chains["input"].rules[0].text, "ip saddr @admin tcp dport 22 accept");
        assert_eq!(r.unparsed, 0);
    }

    /// A newer nft's JSON: unknown keys in known objects are ignored (the same rule), and an
    /// object the schema has no variant for is kept raw instead of failing the listing.
    #[test]
    fn a_newer_nft_is_read_as_far_as_the_schema_goes() {
        let newer = LISTING
            .replace(r#""handle": 14, "comment": "ssh","#, r#""handle": 99, "comment": "other", "new_key": {"x": 1},"#)
            .replace(r#""policy": "drop"}}"#, r#""policy": "drop", "flags": ["new-flag"]}}"#);
        assert_eq!(parse(&newer).unwrap(), parse(LISTING).unwrap(), "handles, comments and new keys change nothing");
        let unknown = LISTING.replace(
            r#"{"table": {"family": "inet", "name": "iac", "handle": 2}},"#,
            r#"{"table": {"family": "inet", "name": "iac", "handle": 2}},
               {"table": {"family": "ip", "name": "filter", "handle": 5}},
               {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
               {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 2, "expr": [{"some-future-statement": {"x": 1}}, {"drop": null}]}},"#,
        );
        let r = parse(&unknown).unwrap();
        assert_eq!(r.unparsed, 1);
        let filter = &r.tables[&TableId { family: "ip".into(), name: "filter".into() }];
        assert!(filter.chains["FORWARD"].rules[0].drops);
        assert_eq!(
            r.tables[&TableId { family: "inet".into(), name: "iac".into() }],
            parse(LISTING).unwrap().tables.into_values().next().unwrap()
        );
    }

    #[test]
    fn not_a_listing_is_an_error() {
        assert!(parse("ssh: connect to host").is_err());
        assert!(parse(r#"{"other": []}"#).is_err());
    }
}
