//! Would the host's NEW firewall still admit this machine's SSH? Asked of the model, not of a
//! copy of it, before anything is built.
//!
//! Why: a ruleset that drops the deployer's own SSH switches fine, then the confirmation over a
//! new connection fails and the host rolls back (tests/it/deploy_e2e.rs, case 2). That is safe
//! but costs the confirmation window and says nothing useful. The preflight already logs in
//! once; its script prints `$SSH_CONNECTION` (`remote::SSH_CONNECTION_WORD`), whose first field
//! is the source address the host's firewall sees for this machine (after any NAT or jump
//! host). [`judge`] asks the host's flows (`policy::verdict`, the same answer `iac simulate`
//! checks the kernel against) whether they admit TCP to the host's `ssh_port` from there.
//!
//! What the rendered table does with what the flows cannot answer (`templates/table.nft`,
//! `render/nft.rs`): it is `table inet`, so IPv6 reaches its chains, but every accept rule
//! starts with `ip saddr @set` (IPv4 only) and the input chain's policy is drop, so a new IPv6
//! connection to the SSH port is dropped; `iifname "lo" accept` admits a connection over the
//! loopback interface (a client address that is a loopback address or the server address
//! itself). An empty or unreadable `$SSH_CONNECTION` (a shell that does not expand it, an
//! sshd that does not set it) cannot be judged: that is a warning, never a refusal.
//!
//! What it cannot see: tables the host's own NixOS configuration adds next to iac's
//! (`networking.nftables.tables`), and a path that changes with the switch itself.

use std::net::IpAddr;

use crate::model::{Host, Protocol, Site};
use crate::policy::{self, Chain, Flows, Packet};

/// The flows of the estate and what to do with a host they would lock out: built once per
/// deploy, asked once per host.
#[derive(Debug, Clone)]
pub(super) struct Check {
    pub flows: Flows,
    /// `--allow-lockout`: warn instead of stopping the host.
    pub allow: bool,
}

/// How the host's new ruleset treats a new SSH connection from where the host sees this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The host's flow of that name admits it.
    Admitted { from: IpAddr, flow: String },
    /// The connection runs over the loopback interface, which the table accepts.
    Loopback { from: IpAddr },
    /// The ruleset drops it; `why` says which part of the table does.
    Dropped { from: IpAddr, why: Dropped },
    /// No address to judge; `seen` is what the host reported (empty when nothing).
    Unknown { seen: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// `hosts.HOST.firewall.block` covers it (dropped before any flow).
    Blocked,
    /// No flow admits TCP to the SSH port from it; the chain's policy drops it.
    NoFlow,
    /// An IPv6 address: every accept rule matches IPv4 sources only.
    Ipv6,
}

/// Judge `ssh_connection` (the value of `$SSH_CONNECTION` the preflight printed, None when it
/// printed none) against `host`'s flows.
pub fn judge(site: &Site, flows: &Flows, host: &Host, ssh_connection: Option<&str>) -> Reach {
    let seen = ssh_connection.unwrap_or("").trim();
    let mut fields = seen.split_whitespace();
    let Some(from) = fields.next().and_then(parse_addr) else { return Reach::Unknown { seen: seen.to_string() } };
    let server = fields.nth(1).and_then(parse_addr);
    if from.is_loopback() || server == Some(from) {
        return Reach::Loopback { from };
    }
    let IpAddr::V4(src) = from else { return Reach::Dropped { from, why: Dropped::Ipv6 } };
    if host.block.iter().any(|n| n.contains(&src)) {
        return Reach::Dropped { from, why: Dropped::Blocked };
    }
    let packet = Packet { src, dst: host.address, proto: Protocol::Tcp, port: host.ssh_port, dnat: false };
    match policy::verdict(site, flows, &host.name, Chain::Input, &packet).and_then(|i| flows.all().get(i)) {
        Some(flow) => Reach::Admitted { from, flow: flow.name.clone() },
        None => Reach::Dropped { from, why: Dropped::NoFlow },
    }
}

/// An address as sshd prints it: IPv4, IPv6, an IPv6 with a zone (`fe80::1%eth0`), and a
/// v4-mapped IPv6 taken as the IPv4 it carries (on the wire, and to nft, that is what it is).
fn parse_addr(text: &str) -> Option<IpAddr> {
    let text = text.split('%').next().unwrap_or(text);
    match text.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        v4 => Some(v4),
    }
}

impl Reach {
    /// Why the host stops, for its summary row; None when the ruleset admits the connection.
    pub fn refusal(&self, host: &Host) -> Option<String> {
        let Self::Dropped { from, .. } = self else { return None };
        let name = &host.name;
        Some(format!(
            "the new firewall of {name} does not admit SSH from {from} (how {name} sees this machine); the confirmation would fail and \
             {name} roll back"
        ))
    }

    /// What to do about a refusal: where SSH is admitted from, and the flag that deploys anyway.
    pub fn hint(&self, site: &Site, flows: &Flows, host: &Host) -> String {
        let admin = site.admin.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let sources = ssh_sources(flows, host);
        let why = match self {
            Self::Dropped { why: Dropped::Blocked, .. } => {
                format!("hosts.{}.firewall.block covers it (dropped before any rule). ", host.name)
            }
            Self::Dropped { why: Dropped::Ipv6, .. } => format!(
                "{} reached it over IPv6, and its table admits new connections over IPv4 only (every rule matches `ip saddr`). ",
                host.name
            ),
            _ => String::new(),
        };
        format!(
            "{why}It admits SSH (tcp/{}) from {sources}. Deploy from an admin network (access.admin = {admin}) or add this \
             address with hosts.{}.firewall.allow; --allow-lockout deploys anyway (the rollback guard then undoes the switch)",
            host.ssh_port, host.name
        )
    }

    /// The warning for a deploy that goes on: `--allow-lockout` over a refusal, or an address
    /// that cannot be judged. None when the ruleset admits the connection.
    pub fn warning(&self, host: &Host, guard: bool) -> Option<String> {
        let after = if guard {
            format!("if it does not, the confirmation fails and {} rolls back", host.name)
        } else {
            format!("--no-rollback: if it does not, nothing undoes the switch and {} stays cut off", host.name)
        };
        match self {
            Self::Admitted { .. } | Self::Loopback { .. } => None,
            Self::Unknown { seen } if seen.is_empty() => Some(format!(
                "cannot tell whether the new firewall of {} admits SSH from this machine: the host reported no $SSH_CONNECTION; {after}",
                host.name
            )),
            Self::Unknown { seen } => Some(format!(
                "cannot tell whether the new firewall of {} admits SSH from this machine: $SSH_CONNECTION is {seen:?}; {after}",
                host.name
            )),
            Self::Dropped { from, .. } => Some(format!(
                "--allow-lockout: the new firewall of {} does not admit SSH from {from} (how it sees this machine); {}",
                host.name,
                if guard { "the confirmation will fail and the host roll back" } else { "nothing undoes the switch" }
            )),
        }
    }
}

/// The sources the host's input flows admit TCP to its SSH port from, for people.
fn ssh_sources(flows: &Flows, host: &Host) -> String {
    let mut nets: Vec<String> = Vec::new();
    for f in flows.in_chain(&host.name, Chain::Input) {
        let proto = f.proto.is_none_or(|p| p == Protocol::Tcp);
        let port = f.ports.is_empty() || f.ports.iter().any(|r| r.contains(host.ssh_port));
        if proto && port && !f.dnat_only {
            nets.extend(f.from.members.iter().map(ToString::to_string).filter(|n| !nets.contains(n)).collect::<Vec<_>>());
        }
    }
    if nets.is_empty() { "nowhere".to_string() } else { nets.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(extra: &str) -> Site {
        let text = format!(
            "[site]\nname = \"t\"\n\n[networks.lan]\ncidr = \"10.9.0.0/24\"\n\n[access]\nadmin = [\"10.9.0.0/28\"]\n\n\
             [dns]\nupstream = [\"10.9.0.53\"]\n\n[hosts.alpha]\naddress = \"10.9.0.20\"\nroles = []\nssh_port = 2222\n{extra}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.toml");
        std::fs::write(&path, text).unwrap();
        crate::load_site(&path).unwrap()
    }

    fn judged(site: &Site, conn: Option<&str>) -> Reach {
        let flows = policy::flows(site);
        judge(site, &flows, site.host("alpha").unwrap(), conn)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_in_an_admin_network_is_admitted_by_the_ssh_flow() {
        let s = site("");
        let r = judged(&s, Some("10.9.0.5 51234 10.9.0.20 2222"));
        assert_eq!(r, Reach::Admitted { from: ip("10.9.0.5"), flow: "ssh".into() });
        assert_eq!(r.refusal(s.host("alpha").unwrap()), None);
        assert_eq!(r.warning(s.host("alpha").unwrap(), true), None);
    }

    #[test]
    fn an_address_outside_every_admin_network_is_refused_with_where_ssh_is_admitted_from() {
        let s = site("");
        let alpha = s.host("alpha").unwrap();
        let r = judged(&s, Some("10.9.0.100 51234 10.9.0.20 2222"));
        assert_eq!(r, Reach::Dropped { from: ip("10.9.0.100"), why: Dropped::NoFlow });
        assert_eq!(
            r.refusal(alpha).unwrap(),
            "the new firewall of alpha does not admit SSH from 10.9.0.100 (how alpha sees this machine); the confirmation would \
             fail and alpha roll back"
        );
        let hint = r.hint(&s, &policy::flows(&s), alpha);
        assert!(
            hint.starts_with("It admits SSH (tcp/2222) from 10.9.0.0/28. Deploy from an admin network (access.admin = 10.9.0.0/28)"),
            "{hint}"
        );
        assert!(hint.contains("hosts.alpha.firewall.allow; --allow-lockout deploys anyway"), "{hint}");
        assert!(
            r.warning(alpha, true).unwrap().starts_with("--allow-lockout: the new firewall of alpha does not admit SSH from 10.9.0.100")
        );
    }

    #[test]
    fn an_allow_rule_for_the_ssh_port_admits_it_and_one_for_another_port_does_not() {
        let allow = |port: u16| {
            format!(
                "\n[[hosts.alpha.firewall.allow]]\nfrom = [\"10.9.0.100/32\"]\nproto = \"tcp\"\nports = [{port}]\nwhy = \"the CI runner\"\n"
            )
        };
        let r = judged(&site(&allow(2222)), Some("10.9.0.100 51234 10.9.0.20 2222"));
        assert!(matches!(r, Reach::Admitted { ref flow, .. } if flow != "ssh"), "{r:?}");
        let r = judged(&site(&allow(22)), Some("10.9.0.100 51234 10.9.0.20 2222"));
        assert_eq!(r, Reach::Dropped { from: ip("10.9.0.100"), why: Dropped::NoFlow }, "the flows' port is ssh_port, not 22");
    }

    #[test]
    fn a_block_wins_over_an_allow_rule_and_says_so() {
        // firewall.block may not cover an admin network; it may cover what an allow rule admits.
        let s = site(
            "firewall.block = [\"10.9.0.96/28\"]\n\n[[hosts.alpha.firewall.allow]]\nfrom = [\"10.9.0.100/32\"]\nproto = \"tcp\"\n\
             ports = [2222]\nwhy = \"the CI runner\"\n",
        );
        let r = judged(&s, Some("10.9.0.100 51234 10.9.0.20 2222"));
        assert_eq!(r, Reach::Dropped { from: ip("10.9.0.100"), why: Dropped::Blocked });
        let hint = r.hint(&s, &policy::flows(&s), s.host("alpha").unwrap());
        assert!(hint.starts_with("hosts.alpha.firewall.block covers it"), "{hint}");
    }

    #[test]
    fn ipv6_is_dropped_by_the_table_and_a_v4_mapped_address_is_ipv4() {
        let s = site("");
        let r = judged(&s, Some("2001:db8::5 51234 2001:db8::20 2222"));
        assert_eq!(r, Reach::Dropped { from: ip("2001:db8::5"), why: Dropped::Ipv6 });
        assert!(r.hint(&s, &policy::flows(&s), s.host("alpha").unwrap()).contains("over IPv4 only"));
        assert_eq!(judged(&s, Some("fe80::5%eth0 51234 fe80::20%eth0 2222")), Reach::Dropped { from: ip("fe80::5"), why: Dropped::Ipv6 });
        assert_eq!(
            judged(&s, Some("::ffff:10.9.0.5 1 ::ffff:10.9.0.20 2222")),
            Reach::Admitted { from: ip("10.9.0.5"), flow: "ssh".into() }
        );
    }

    #[test]
    fn the_loopback_interface_is_accepted_before_any_flow() {
        let s = site("");
        assert_eq!(judged(&s, Some("127.0.0.1 1 127.0.0.1 2222")), Reach::Loopback { from: ip("127.0.0.1") });
        assert_eq!(judged(&s, Some("::1 1 ::1 2222")), Reach::Loopback { from: ip("::1") });
        // The host reaching its own address (a jump through itself) goes over lo too.
        assert_eq!(judged(&s, Some("10.9.0.20 1 10.9.0.20 2222")), Reach::Loopback { from: ip("10.9.0.20") });
    }

    #[test]
    fn no_value_or_garbage_cannot_be_judged_and_only_warns() {
        let s = site("");
        let alpha = s.host("alpha").unwrap();
        for conn in [None, Some(""), Some("  "), Some("not-an-address 1 2 3")] {
            let r = judged(&s, conn);
            assert!(matches!(r, Reach::Unknown { .. }), "{conn:?}: {r:?}");
            assert_eq!(r.refusal(alpha), None);
            let w = r.warning(alpha, true).unwrap();
            assert!(w.starts_with("cannot tell whether the new firewall of alpha admits SSH from this machine"), "{w}");
            assert!(w.ends_with("the confirmation fails and alpha rolls back"), "{w}");
        }
        assert!(judged(&s, None).warning(alpha, false).unwrap().contains("nothing undoes the switch and alpha stays cut off"));
    }
}
