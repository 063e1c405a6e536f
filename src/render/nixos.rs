//! The NixOS module of each host: iac's nftables table through `networking.nftables.tables`
//! (flushRuleset off, networking.firewall off), and its k3s role.

use askama::Template;

use super::Error;
use crate::model::{Host, Role, Site};
use crate::policy::K3S_API_PORT;

use super::filters;
use super::nft::TABLE;
use super::{role_names, template_error};
use crate::escape;

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
    /// The table content as an indented Nix string literal.
    content: String,
    k3s: Option<K3sView>,
}

struct K3sView {
    role: &'static str,
    /// The resolv.conf text as an indented Nix string literal.
    resolv_conf: String,
    token_file: String,
    cluster_init: bool,
    server_addr: Option<String>,
    flags: Vec<String>,
}

/// `content` is the host's nftables table content (`nft::table_content`), carried verbatim:
/// Nix evaluates the literal back to exactly that text (`escape::nix::indented`).
pub fn host_module(site: &Site, host: &Host, content: &str) -> Result<String, Error> {
    let file = format!("{}/default.nix", host.name);
    let refused = |what: &str, e: escape::Refused| Error::Render { file: file.clone(), message: format!("{what}: {e}") };
    let imports = if host.has(Role::Postgresql) { vec!["./postgresql.nix"] } else { vec![] };
    let t = HostTemplate {
        host: &host.name,
        address: host.address.to_string(),
        roles: role_names(host),
        imports,
        nameservers: site.dns_upstream.iter().map(ToString::to_string).collect(),
        table: TABLE,
        content: escape::nix::indented(content, 8).map_err(|e| refused("the nftables table", e))?,
        k3s: k3s(site, host).map_err(|e| refused("the k3s settings", e))?,
    };
    let mut out = t.render().map_err(|e| template_error(&file, e))?;
    out.push('\n');
    Ok(out)
}

fn k3s(site: &Site, host: &Host) -> Result<Option<K3sView>, escape::Refused> {
    let Some(cluster) = site.cluster.as_ref() else { return Ok(None) };
    let Some(first) = site.first_server() else { return Ok(None) };
    if !host.is_k3s_node() {
        return Ok(None);
    }
    let server = host.has(Role::K3sServer);
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
        for d in &cluster.disable {
            flags.push(escape::unit::k3s_flag("disable", d)?);
        }
    }
    let resolv: String = site.dns_upstream.iter().map(|n| format!("nameserver {n}\n")).collect();
    Ok(Some(K3sView {
        role: if server { "server" } else { "agent" },
        resolv_conf: escape::nix::indented(&resolv, 4)?,
        // NixOS's k3s module joins tokenFile into ExecStart= (`--token-file PATH`).
        token_file: escape::unit::path(&cluster.token_file)?.to_string(),
        cluster_init: server && is_first && several_servers,
        server_addr,
        flags,
    }))
}
