//! A rule's statements as people read them, close to `nft list` (`ip saddr @admin tcp dport 22
//! accept`), for the drift report. Only for display: rules are compared by their JSON. The
//! expressions iac renders and the common ones of other tables get their nft words; anything
//! else shows as its JSON, so nothing is ever hidden.

use nftables::expr::{Expression, MetaKey, NamedExpression, Payload, SetItem};
use nftables::stmt::{Operator, Statement};
use serde::Serialize;

/// The rule, one statement after another.
pub fn rule(stmts: &[Statement<'_>]) -> String {
    stmts.iter().map(statement).collect::<Vec<_>>().join(" ")
}

/// A value of the crate's enums as nft's JSON names it (`drop`, `forward`, `ipv4_addr`).
pub fn word<T: Serialize>(t: &T) -> String {
    match serde_json::to_value(t) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

fn compact<T: Serialize>(t: &T) -> String {
    serde_json::to_string(t).unwrap_or_else(|_| "?".into())
}

fn statement(s: &Statement<'_>) -> String {
    match s {
        Statement::Accept(_) => "accept".into(),
        Statement::Drop(_) => "drop".into(),
        Statement::Continue(_) => "continue".into(),
        Statement::Return(_) => "return".into(),
        Statement::Jump(t) => format!("jump {}", t.target),
        Statement::Goto(t) => format!("goto {}", t.target),
        Statement::Reject(_) => "reject".into(),
        Statement::Counter(_) => "counter".into(),
        Statement::Log(_) => "log".into(),
        Statement::Notrack => "notrack".into(),
        Statement::Match(m) => {
            let left = expr(&m.left);
            let quote =
                matches!(&m.left, Expression::Named(NamedExpression::Meta(k)) if matches!(k.key, MetaKey::Iifname | MetaKey::Oifname));
            let right = match &m.right {
                Expression::String(s) if quote && !s.starts_with('@') => format!("\"{s}\""),
                other => expr(other),
            };
            match m.op {
                Operator::EQ | Operator::IN => format!("{left} {right}"),
                op => format!("{left} {} {right}", word(&op)),
            }
        }
        other => compact(other),
    }
}

fn expr(e: &Expression<'_>) -> String {
    match e {
        Expression::String(s) => s.to_string(),
        Expression::Number(n) => n.to_string(),
        Expression::Boolean(b) => b.to_string(),
        Expression::List(items) => items.iter().map(expr).collect::<Vec<_>>().join(","),
        Expression::Range(r) => format!("{}-{}", expr(&r.range[0]), expr(&r.range[1])),
        Expression::Named(n) => match n {
            NamedExpression::Prefix(p) => format!("{}/{}", expr(&p.addr), p.len),
            NamedExpression::Payload(Payload::PayloadField(f)) => format!("{} {}", f.protocol, f.field),
            NamedExpression::Meta(m) => {
                let key = word(&m.key);
                // nft prints these without `meta`.
                if matches!(m.key, MetaKey::Iifname | MetaKey::Oifname | MetaKey::Iif | MetaKey::Oif | MetaKey::Mark) {
                    key
                } else {
                    format!("meta {key}")
                }
            }
            NamedExpression::CT(c) => format!("ct {}", c.key),
            NamedExpression::Set(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        SetItem::Element(e) => expr(e),
                        SetItem::Mapping(k, v) => format!("{} : {}", expr(k), expr(v)),
                        SetItem::MappingStatement(k, s) => format!("{} : {}", expr(k), statement(s)),
                    })
                    .collect();
                format!("{{ {} }}", items.join(", "))
            }
            NamedExpression::Elem(el) => expr(&el.val),
            other => compact(other),
        },
        other => compact(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_like_nft_list() {
        let stmts: Vec<Statement<'static>> = serde_json::from_str(
            r#"[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"@admin"}},
                {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":22}},{"accept":null}]"#,
        )
        .unwrap();
        assert_eq!(rule(&stmts), "ip saddr @admin tcp dport 22 accept");
        let stmts: Vec<Statement<'static>> = serde_json::from_str(
            r#"[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established","related"]}},{"accept":null}]"#,
        )
        .unwrap();
        assert_eq!(rule(&stmts), "ct state established,related accept");
        let stmts: Vec<Statement<'static>> = serde_json::from_str(
            r#"[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"lo"}},
                {"match":{"op":"!=","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"10.0.0.0","len":8}}}},{"drop":null}]"#,
        )
        .unwrap();
        assert_eq!(rule(&stmts), "iifname \"lo\" ip saddr != 10.0.0.0/8 drop");
    }

    #[test]
    fn what_has_no_words_shows_as_json() {
        let stmts: Vec<Statement<'static>> = serde_json::from_str(r#"[{"xt":{"type":"match","name":"comment"}},{"accept":null}]"#).unwrap();
        assert_eq!(rule(&stmts), r#"{"xt":{"name":"comment","type":"match"}} accept"#);
    }
}
