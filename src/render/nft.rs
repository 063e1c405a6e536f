//! Flows → one nftables table per host (`table inet iac`), as a standalone script and as the
//! body NixOS's `networking.nftables.tables` wraps. Address lists are named sets, so the number
//! of rules a packet traverses does not grow with the number of hosts.

use askama::Template;

use super::Error;
use crate::model::{Host, Protocol};
use crate::policy::{AddrSet, Chain, Flow, Flows, PortRange};

use super::{role_names, template_error};
use crate::escape;

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

/// The table's content as NixOS's `networking.nftables.tables.iac.content` carries it: a
/// first comment line, then the sets and chains indented by one tab.
pub fn table_content(flows: &Flows, host: &Host) -> Result<String, Error> {
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
    let refused = |what: &str, e: escape::Refused| Error::Render { file: file.clone(), message: format!("{what}: {e}") };
    let rules = |chain| -> Result<Vec<RuleView>, Error> {
        flows
            .in_chain(&host.name, chain)
            .map(|f| {
                let why = escape::nft::comment_line(&f.why).map_err(|e| refused(&format!("the reason of flow `{}`", f.name), e))?;
                let text = rule(f).map_err(|e| refused(&format!("the name of flow `{}`", f.name), e))?;
                Ok(RuleView { text, why })
            })
            .collect()
    };
    let t = TableTemplate { sets: views, blocked: !host.block.is_empty(), input: rules(Chain::Input)?, forward: rules(Chain::Forward)? };
    let body = t.render().map_err(|e| template_error(&file, e))?;
    let first = escape::nft::comment_line(&format!("iac table of {}: generated/{}/nftables.nft carries this text", host.name, host.name))
        .map_err(|e| refused("the first comment", e))?;
    Ok(format!("{first}\n{}", body.trim_matches('\n')))
}

/// The text nixpkgs' nftables module writes into its rules script for a table whose content
/// is `content` (nixos/modules/services/networking/nftables.nix, `rulesScript`: an indented
/// string `table ${family} ${name} {` / `  ${content}` / `}` with its indentation stripped).
/// `nix_eval` evaluates the module and that very expression with Nix; this is what it must
/// produce, and what the standalone script carries.
pub fn loaded_text(content: &str) -> String {
    format!("table inet {TABLE} {{\n  {content}\n}}\n")
}

/// A script for `nft -f`: owns only its table, never flushes the ruleset, idempotent; from
/// `table inet iac {` on it is exactly `loaded_text(content)`.
pub fn standalone(host: &Host, content: &str) -> Result<String, Error> {
    let t = StandaloneTemplate { host: &host.name, address: host.address.to_string(), roles: role_names(host), table: TABLE };
    let mut out = t.render().map_err(|e| template_error(&format!("{}/nftables.nft", host.name), e))?;
    out.push('\n');
    out.push_str(&loaded_text(content));
    Ok(out)
}

/// The part of a standalone script that NixOS's module must produce: everything after the
/// `delete table` line. `None` when the script does not have iac's shape.
pub fn loaded_part(standalone: &str) -> Option<&str> {
    let marker = format!("\ndelete table inet {TABLE}\n");
    standalone.find(&marker).map(|i| &standalone[i + marker.len()..])
}

fn set_view(set: &AddrSet) -> SetView {
    let interval = set.members.iter().any(|m| m.prefix_len() < 32);
    let elements =
        set.members.iter().map(|m| if m.prefix_len() == 32 { m.addr().to_string() } else { m.to_string() }).collect::<Vec<_>>().join(", ");
    SetView { name: set.name.clone(), interval, elements }
}

/// One accept rule: `ip saddr @from [ip daddr @to] [ct status dnat] [proto dport ports] accept`.
fn rule(flow: &Flow) -> Result<String, escape::Refused> {
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
    parts.push(format!("comment {}", escape::nft::comment(&flow.name)?));
    Ok(parts.join(" "))
}

fn ports(ports: &[PortRange]) -> String {
    let items: Vec<String> =
        ports.iter().map(|r| if r.first == r.last { r.first.to_string() } else { format!("{}-{}", r.first, r.last) }).collect();
    if items.len() == 1 { items.join("") } else { format!("{{ {} }}", items.join(", ")) }
}
