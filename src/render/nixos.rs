//! The NixOS module of each host: iac's nftables table through `networking.nftables.tables`
//! (flushRuleset off, networking.firewall off), and its k3s role.

use askama::Template;

use crate::error::Error;
use crate::model::{Host, Role, Site};
use crate::policy::K3S_API_PORT;

use super::filters;
use super::nft::TABLE;
use super::{role_names, template_error};

/// Where the generated module points k3s's `--resolv-conf`.
pub const K3S_RESOLV_CONF: &str = "/etc/k3s/resolv.conf";

#[derive(Template)]
#[template(path = "host.nix")]
struct HostTemplate<'a> {
    host: &'a str,
    address: String,
    roles: String,
    imports: Vec<&'static str>,
    nameservers: Vec<String>,
    table: &'a str,
    table_body: String,
    k3s: Option<K3sView>,
}

struct K3sView {
    role: &'static str,
    token_file: String,
    cluster_init: bool,
    server_addr: Option<String>,
    flags: Vec<String>,
}

/// `table_body` is the host's nftables table (`nft::table_body`), carried verbatim.
pub fn host_module(site: &Site, host: &Host, table_body: &str) -> Result<String, Error> {
    let imports = if host.has(Role::Postgresql) { vec!["./postgresql.nix"] } else { vec![] };
    let t = HostTemplate {
        host: &host.name,
        address: host.address.to_string(),
        roles: role_names(host),
        imports,
        nameservers: site.dns_upstream.iter().map(ToString::to_string).collect(),
        table: TABLE,
        table_body: spaces_for_tabs(table_body),
        k3s: k3s(site, host),
    };
    let mut out = t.render().map_err(|e| template_error(&format!("{}/default.nix", host.name), e))?;
    out.push('\n');
    Ok(out)
}

fn k3s(site: &Site, host: &Host) -> Option<K3sView> {
    let cluster = site.cluster.as_ref()?;
    if !host.is_k3s_node() {
        return None;
    }
    let server = host.has(Role::K3sServer);
    let first = site.first_server()?;
    let several_servers = site.hosts_with(Role::K3sServer).count() > 1;
    let is_first = first.name == host.name;
    let joins = host.join.as_deref().and_then(|n| site.host(n)).unwrap_or(first);
    let server_addr = (!is_first).then(|| format!("https://{}:{K3S_API_PORT}", joins.address));

    let mut flags = vec![format!("--node-ip={}", host.address), format!("--resolv-conf={K3S_RESOLV_CONF}")];
    if server {
        flags.push(format!("--cluster-cidr={}", cluster.pod_cidr));
        flags.push(format!("--service-cidr={}", cluster.service_cidr));
        flags.push(format!("--cluster-dns={}", cluster.dns_service_ip()));
        flags.push("--flannel-backend=vxlan".into());
        flags.extend(cluster.disable.iter().map(|d| format!("--disable={d}")));
    }
    Some(K3sView {
        role: if server { "server" } else { "agent" },
        token_file: cluster.token_file.clone(),
        cluster_init: server && is_first && several_servers,
        server_addr,
        flags,
    })
}

/// Nix strips the common indentation of `'' … ''` strings by spaces only; tabs would survive
/// as ragged indentation, so the embedded table is indented with spaces.
fn spaces_for_tabs(text: &str) -> String {
    text.lines()
        .map(|l| {
            let tabs = l.len() - l.trim_start_matches('\t').len();
            format!("{}{}", "  ".repeat(tabs), &l[tabs..])
        })
        .collect::<Vec<_>>()
        .join("\n")
}
