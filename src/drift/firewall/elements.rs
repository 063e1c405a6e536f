//! A set's elements as values, not as text: an IPv4 set is the union of the address ranges its
//! elements cover, so `10.0.0.0/24`, `10.0.0.0-10.0.0.255` and two `/25`s are the same set
//! (nft may print one where it was given the other: an interval set merges adjacent elements).
//! Elements of any other type are compared by their JSON form.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnet::Ipv4Subnets;
use nftables::expr::{Expression, NamedExpression};
use rangemap::RangeInclusiveSet;

/// What a set holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elements {
    /// IPv4 addresses, as ranges (`u32` of the address).
    pub ranges: RangeInclusiveSet<u32>,
    /// Everything else, one JSON text per element.
    pub other: BTreeSet<String>,
}

impl Elements {
    /// The elements of a set of type `ipv4_addr` (`ipv4`) or of another type.
    pub fn from_typed(ipv4: bool, elems: &[Expression<'_>]) -> Self {
        let mut out = Elements::default();
        for e in elems {
            match ipv4.then(|| ipv4_range(e)).flatten() {
                Some(r) => out.ranges.insert(r),
                None => {
                    out.other.insert(serde_json::to_string(e).unwrap_or_default());
                }
            }
        }
        out
    }

    /// The elements of `self` that `other` lacks, each as people write them (`10.0.0.0/24`,
    /// `10.0.0.1-10.0.0.5`, or the JSON of a non-address element).
    pub fn minus(&self, other: &Elements) -> Vec<String> {
        let mut left = self.ranges.clone();
        for r in other.ranges.iter() {
            left.remove(r.clone());
        }
        let mut out: Vec<String> = left.iter().map(|r| describe(r.clone())).collect();
        out.extend(self.other.difference(&other.other).cloned());
        out
    }

    pub fn len(&self) -> usize {
        self.ranges.len() + self.other.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The address range an element covers: an address, a prefix, a range, or any of those wrapped
/// in an `elem` object (which carries a timeout or comment).
fn ipv4_range(e: &Expression<'_>) -> Option<RangeInclusive<u32>> {
    let addr = |e: &Expression<'_>| match e {
        Expression::String(s) => s.parse::<Ipv4Addr>().ok().map(u32::from),
        _ => None,
    };
    match e {
        Expression::String(_) => addr(e).map(|a| a..=a),
        Expression::Range(r) => {
            let (a, b) = (addr(&r.range[0])?, addr(&r.range[1])?);
            (a <= b).then_some(a..=b)
        }
        Expression::Named(NamedExpression::Prefix(p)) => {
            let base = addr(&p.addr)?;
            let len = u8::try_from(p.len).ok().filter(|l| *l <= 32)?;
            let net = ipnet::Ipv4Net::new(Ipv4Addr::from(base), len).ok()?.trunc();
            Some(u32::from(net.network())..=u32::from(net.broadcast()))
        }
        Expression::Named(NamedExpression::Elem(el)) => ipv4_range(&el.val),
        _ => None,
    }
}

/// A range as people write it: one address, one prefix, or `first-last`.
pub fn describe(r: RangeInclusive<u32>) -> String {
    let (a, b) = (Ipv4Addr::from(*r.start()), Ipv4Addr::from(*r.end()));
    if a == b {
        return a.to_string();
    }
    let mut nets = Ipv4Subnets::new(a, b, 0);
    match (nets.next(), nets.next()) {
        (Some(net), None) => net.to_string(),
        _ => format!("{a}-{b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Vec<Expression<'static>> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_prefix_and_the_range_it_covers_are_equal() {
        let a = Elements::from_typed(true, &parse(r#"[{"prefix": {"addr": "10.0.0.0", "len": 24}}]"#));
        let b = Elements::from_typed(true, &parse(r#"[{"range": ["10.0.0.0", "10.0.0.255"]}]"#));
        let halves = Elements::from_typed(
            true,
            &parse(
                r#"[{"prefix": {"addr": "10.0.0.0", "len": 25}}, {"elem": {"val": {"prefix": {"addr": "10.0.0.128", "len": 25}}, "comment": "x"}}]"#,
            ),
        );
        assert_eq!(a, b);
        assert_eq!(a, halves);
        assert!(a.minus(&b).is_empty() && b.minus(&a).is_empty());
    }

    #[test]
    fn differences_are_ranges_written_as_prefixes_where_they_are() {
        let rendered = Elements::from_typed(true, &parse(r#"[{"prefix": {"addr": "10.0.0.0", "len": 24}}, "172.22.0.133"]"#));
        let live = Elements::from_typed(true, &parse(r#"[{"range": ["10.0.0.0", "10.0.0.127"]}, "10.0.0.200", "192.168.1.1"]"#));
        assert_eq!(rendered.minus(&live), ["10.0.0.128-10.0.0.199", "10.0.0.201-10.0.0.255", "172.22.0.133"]);
        assert_eq!(live.minus(&rendered), ["192.168.1.1"]);
        let upper = Elements::from_typed(true, &parse(r#"[{"range": ["10.0.0.0", "10.0.0.127"]}]"#));
        assert_eq!(rendered.minus(&upper)[0], "10.0.0.128/25");
    }

    #[test]
    fn other_types_compare_as_values() {
        let a = Elements::from_typed(false, &parse(r#"[22, 6443]"#));
        let b = Elements::from_typed(false, &parse(r#"[22]"#));
        assert_eq!(a.minus(&b), ["6443"]);
        assert_eq!(a.len(), 2);
    }
}
