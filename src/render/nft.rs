//! Flows → one nftables table per host (`table inet iac`), as a standalone script and as the
//! body NixOS's `networking.nftables.tables` wraps. Address lists are named sets, so the number
//! of rules a packet traverses does not grow with the number of hosts.

use askama::Template;

use crate::error::Error;
use crate::model::{Host, Protocol};
use crate::policy::{AddrSet, Chain, Flow, Flows, PortRange};

use super::{role_names, template_error};

/// The only table iac owns on every host.
pub const TABLE: &str = "iac";

#[derive(Template)]
#[template(path = "table.nft")]
struct TableTemplate {
    sets: Vec<SetView>,
    blocked: bool,
    input: Vec<RuleView>,
    forward: Vec<RuleView>,
}

#[derive(Template)]
#[template(path = "nftables.nft")]
struct StandaloneTemplate<'a> {
    host: &'a str,
    address: String,
    roles: String,
    table: &'a str,
    body: String,
}

struct SetView {
    name: String,
    interval: bool,
    elements: String,
}

struct RuleView {
    text: String,
    why: String,
}

/// The inside of `table inet iac { … }` for `host`.
pub fn table_body(flows: &Flows, host: &Host) -> Result<String, Error> {
    let file = format!("{}/nftables.nft", host.name);
    let mut sets: Vec<&AddrSet> = Vec::new();
    for flow in flows.for_host(&host.name) {
        for set in std::iter::once(&flow.from).chain(flow.to.as_ref()) {
            match sets.iter().find(|s| s.name == set.name) {
                Some(existing) if existing.members != set.members => {
                    return Err(Error::Render { file, message: format!("set `{}` is derived twice with different members", set.name) });
                }
                Some(_) => {}
                None => sets.push(set),
            }
        }
    }
    let blocked = AddrSet { name: "blocked".into(), members: host.block.clone() };
    let mut views: Vec<SetView> = sets.into_iter().map(set_view).collect();
    if !host.block.is_empty() {
        views.push(set_view(&blocked));
    }
    let rules = |chain| flows.in_chain(&host.name, chain).map(|f| RuleView { text: rule(f), why: comment_text(&f.why) }).collect();
    let t = TableTemplate { sets: views, blocked: !host.block.is_empty(), input: rules(Chain::Input), forward: rules(Chain::Forward) };
    let body = t.render().map_err(|e| template_error(&file, e))?;
    Ok(body.trim_matches('\n').to_string())
}

/// A script for `nft -f` around the `table_body`: owns only its table, never flushes the
/// ruleset, idempotent.
pub fn standalone(host: &Host, table_body: &str) -> Result<String, Error> {
    let body = indent(table_body);
    let t = StandaloneTemplate { host: &host.name, address: host.address.to_string(), roles: role_names(host), table: TABLE, body };
    let mut out = t.render().map_err(|e| template_error(&format!("{}/nftables.nft", host.name), e))?;
    out.push('\n');
    Ok(out)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| if l.is_empty() { String::new() } else { format!("\t{l}") }).collect::<Vec<_>>().join("\n")
}

fn set_view(set: &AddrSet) -> SetView {
    let interval = set.members.iter().any(|m| m.prefix_len() < 32);
    let elements =
        set.members.iter().map(|m| if m.prefix_len() == 32 { m.addr().to_string() } else { m.to_string() }).collect::<Vec<_>>().join(", ");
    SetView { name: set.name.clone(), interval, elements }
}

/// One accept rule: `ip saddr @from [ip daddr @to] [ct status dnat] [proto dport ports] accept`.
fn rule(flow: &Flow) -> String {
    let mut parts = vec![format!("ip saddr @{}", flow.from.name)];
    if let Some(to) = &flow.to {
        parts.push(format!("ip daddr @{}", to.name));
    }
    if flow.dnat_only {
        parts.push("ct status dnat".into());
    }
    if let Some(proto) = flow.proto {
        let p = match proto {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        if flow.ports.is_empty() {
            parts.push(format!("meta l4proto {p}"));
        } else {
            parts.push(format!("{p} dport {}", ports(&flow.ports)));
        }
    }
    parts.push("accept".into());
    parts.push(format!("comment \"{}\"", comment_text(&flow.name)));
    parts.join(" ")
}

fn ports(ports: &[PortRange]) -> String {
    let items: Vec<String> =
        ports.iter().map(|r| if r.first == r.last { r.first.to_string() } else { format!("{}-{}", r.first, r.last) }).collect();
    if items.len() == 1 { items.join("") } else { format!("{{ {} }}", items.join(", ")) }
}

/// Comments are free text from the inventory: keep them on one line and out of nft's quotes.
fn comment_text(raw: &str) -> String {
    raw.chars().map(|c| if c == '"' || c == '\n' || c == '\r' || c == '\\' { '\'' } else { c }).collect()
}
