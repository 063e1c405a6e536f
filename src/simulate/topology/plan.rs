//! Plan the simulated estate from the site and its flows: which namespaces, their roles and
//! addresses, LANs, k3s nodes with their pod subnets, the Services the kube-proxy stand-in
//! rewrites, and the stand-ins' nftables text. Pure: names and addresses only; `build` makes
//! them real.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::model::Site;
use crate::policy::{Chain, Flows};

use super::super::SimulateError;
use super::super::netns::Netns;
use super::{Attach, ClusterPlan, Lan, Member, Node, POD_PORT, Role, Service, Topology, UNTRUSTED_FALLBACK, nth};

/// Namespace names: `prefix` (e.g. `iacsim-<pid>`) plus a short, unique suffix.
fn ns(prefix: &str, suffix: &str) -> Netns {
    Netns(format!("{prefix}-{suffix}"))
}

/// The highest usable address of `net` that is not taken and satisfies `ok`.
fn free_from_top(net: Ipv4Net, taken: &[Ipv4Addr], ok: impl Fn(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
    let first = u32::from(net.network());
    let last = u32::from(net.broadcast());
    let (lo, hi) = if net.prefix_len() >= 31 { (first, last) } else { (first + 1, last - 1) };
    (lo..=hi).rev().map(Ipv4Addr::from).find(|a| !taken.contains(a) && ok(*a))
}

/// Derive the simulated estate from the site and its flows.
pub fn plan(site: &Site, flows: &Flows, prefix: &str) -> Result<Topology, SimulateError> {
    let mut taken: Vec<Ipv4Addr> = site.hosts.iter().map(|h| h.address).chain(site.dns_upstream.iter().copied()).collect();
    let mut lans = Vec::new();
    for (i, net) in site.networks.iter().enumerate() {
        let router_addr = free_from_top(net.cidr, &taken, |_| true)
            .ok_or_else(|| SimulateError::Unsupported(format!("network `{}` has no free address for the router", net.name)))?;
        taken.push(router_addr);
        lans.push(Lan { name: net.name.clone(), ns: ns(prefix, &format!("sw{i}")), cidr: net.cidr, router_addr });
    }
    let lan_of = |a: Ipv4Addr| lans.iter().position(|l| l.cidr.contains(&a));
    let attach_for = |a: Ipv4Addr| match lan_of(a) {
        Some(lan) => Attach::Lan { lan, prefix: lans[lan].cidr.prefix_len() },
        None => Attach::Routed,
    };

    let mut members = Vec::new();
    let mut nodes = Vec::new();
    // Flannel numbers nodes in join order: the first server first.
    let first = site.first_server().map(|h| h.name.clone());
    let mut k3s: Vec<&crate::model::Host> = site.k3s_nodes().collect();
    k3s.sort_by_key(|h| Some(&h.name) != first.as_ref());
    let mut cluster = None;
    if let Some(c) = &site.cluster {
        if c.pod_cidr.prefix_len() > 24 {
            return Err(SimulateError::Unsupported(format!("pod CIDR {} is smaller than a /24 per node", c.pod_cidr)));
        }
        let mut subnets = c.pod_cidr.subnets(24).map_err(|e| SimulateError::Unsupported(e.to_string()))?;
        for (i, h) in k3s.iter().enumerate() {
            let subnet = subnets.next().ok_or_else(|| SimulateError::Unsupported(format!("pod CIDR {} has too few /24s", c.pod_cidr)))?;
            let n = u8::try_from(i + 1).map_err(|_| SimulateError::Unsupported("more than 254 k3s nodes".into()))?;
            nodes.push(Node { host: h.name.clone(), addr: h.address, member: 0, subnet, mac: [0x02, 0x1a, 0xc0, 0x00, 0x00, n] });
        }
        if let Some(server) = site.first_server() {
            use crate::model::Protocol::{Tcp, Udp};
            let svc = |name: &str, vip, proto, port, endpoint, endpoint_port| Service {
                name: name.to_string(),
                vip,
                proto,
                port,
                endpoint,
                endpoint_port,
            };
            let mut services = vec![svc("kubernetes", c.api_service_ip(), Tcp, 443, server.address, crate::policy::K3S_API_PORT)];
            // The stand-in CoreDNS runs in the first node's pod, like the one replica k3s runs.
            if let Some(n0) = nodes.first() {
                for proto in [Udp, Tcp] {
                    services.push(svc(
                        "kube-dns",
                        c.dns_service_ip(),
                        proto,
                        crate::policy::DNS_PORT,
                        n0.pod_addr(),
                        crate::policy::DNS_PORT,
                    ));
                }
            }
            // One Service per node, endpoint in that node's pod: pods elsewhere reach it
            // through their node's forward chain as DNATed traffic.
            for (i, n) in nodes.iter().enumerate() {
                let vip = nth(c.service_cidr, 100 + u32::try_from(i).unwrap_or(0));
                services.push(svc(&format!("demo-{}", n.host), vip, Tcp, 80, n.pod_addr(), POD_PORT));
            }
            cluster = Some(ClusterPlan {
                pod_cidr: c.pod_cidr,
                service_cidr: c.service_cidr,
                api_vip: c.api_service_ip(),
                api_server: server.address,
                masquerade: c.masquerade,
                services,
            });
        }
    }
    for h in &site.hosts {
        let node = nodes.iter().position(|n| n.host == h.name);
        if let Some(i) = node {
            nodes[i].member = members.len();
        }
        members.push(Member {
            label: h.name.clone(),
            ns: ns(prefix, &format!("h-{}", h.name)),
            role: Role::Host { name: h.name.clone(), node },
            addr: h.address,
            attach: attach_for(h.address),
        });
    }
    for (i, n) in nodes.iter().enumerate() {
        members.push(Member {
            label: format!("pod@{}", n.host),
            ns: ns(prefix, &format!("pod-{}", n.host)),
            role: Role::Pod { node: i },
            addr: n.pod_addr(),
            attach: Attach::Pod { node: i },
        });
    }

    // The admin workstation: inside a LAN when the admin network overlaps one.
    if let Some(admin) = site.admin.first() {
        let on_lan = lans.iter().find_map(|l| free_from_top(l.cidr, &taken, |a| admin.contains(&a)));
        let addr = match on_lan {
            Some(a) => a,
            None => (u32::from(admin.network())..=u32::from(admin.broadcast()))
                .map(Ipv4Addr::from)
                .find(|a| !taken.contains(a) && lan_of(*a).is_none() && (admin.prefix_len() >= 31 || *a != admin.network()))
                .ok_or_else(|| SimulateError::Unsupported(format!("no free address in admin network {admin}")))?,
        };
        taken.push(addr);
        members.push(Member { label: "admin".into(), ns: ns(prefix, "admin"), role: Role::Admin, addr, attach: attach_for(addr) });
    }

    // The untrusted host: a LAN address no flow admits from, else its own segment.
    let admitted = |a: Ipv4Addr| flows.all().iter().any(|f| f.from.contains(a));
    let on_lan = lans.iter().find_map(|l| free_from_top(l.cidr, &taken, |a| !admitted(a)));
    let addr = on_lan.unwrap_or(UNTRUSTED_FALLBACK);
    taken.push(addr);
    members.push(Member { label: "untrusted".into(), ns: ns(prefix, "untrusted"), role: Role::Untrusted, addr, attach: attach_for(addr) });

    for (i, a) in site.dns_upstream.iter().enumerate() {
        let label = if site.dns_upstream.len() == 1 { "dns".to_string() } else { format!("dns{}", i + 1) };
        members.push(Member { label: label.clone(), ns: ns(prefix, &label), role: Role::Dns, addr: *a, attach: attach_for(*a) });
    }

    // Sets no namespace stands in for yet: inventory `allow` sources and `egress` targets.
    for f in flows.all() {
        let (set, role) = match (f.chain, &f.to) {
            (Chain::Input, _) => (&f.from, Role::Client),
            (Chain::Forward, Some(to)) => (to, Role::Remote),
            (Chain::Forward, None) => continue,
        };
        let covered = members.iter().any(|m| set.contains(m.addr))
            || (role == Role::Client && cluster.is_some() && nodes.iter().any(|n| set.contains(n.addr)))
            || set.members.iter().any(|net| cluster.as_ref().is_some_and(|c| c.pod_cidr.contains(net) || c.service_cidr.contains(net)));
        if covered {
            continue;
        }
        let Some(net) = set.members.first() else { continue };
        let addr = (u32::from(net.network())..=u32::from(net.broadcast()))
            .map(Ipv4Addr::from)
            .find(|a| !taken.contains(a) && (net.prefix_len() >= 31 || *a != net.network()))
            .ok_or_else(|| SimulateError::Unsupported(format!("no free address in {net} (set `{}`)", set.name)))?;
        taken.push(addr);
        let kind = if role == Role::Client { "client" } else { "remote" };
        let label = format!("{kind}{}", 1 + members.iter().filter(|m| m.role == role).count());
        members.push(Member { label: label.clone(), ns: ns(prefix, &label), role, addr, attach: attach_for(addr) });
    }

    Ok(Topology { prefix: prefix.to_string(), router: ns(prefix, "router"), lans, nodes, members, cluster })
}

/// nftables for the stand-ins of kube-proxy (Service DNAT) and flannel (pod masquerade, and
/// the forward accepts flannel adds, which cannot rescue a drop in our table: fact 1).
pub fn standin_ruleset(c: &ClusterPlan) -> String {
    let dnat: String = c
        .services
        .iter()
        .map(|s| {
            let p = if s.proto == crate::model::Protocol::Tcp { "tcp" } else { "udp" };
            format!(" ip daddr {} {p} dport {} dnat to {}:{};", s.vip, s.port, s.endpoint, s.endpoint_port)
        })
        .collect();
    let mut s = format!(
        "table ip kube-proxy-standin {{\n\
         \tchain prerouting {{ type nat hook prerouting priority dstnat; policy accept;{dnat} }}\n\
         \tchain output {{ type nat hook output priority -100; policy accept;{dnat} }}\n\
         }}\n\
         table ip flannel-standin {{\n\
         \tchain forward {{ type filter hook forward priority filter; policy accept; ip saddr {pods} accept; ip daddr {pods} accept; }}\n",
        pods = c.pod_cidr
    );
    if c.masquerade {
        s.push_str(&format!(
            "\tchain postrouting {{ type nat hook postrouting priority srcnat; policy accept; ip saddr {pods} ip daddr != {pods} masquerade; }}\n",
            pods = c.pod_cidr
        ));
    }
    s.push_str("}\n");
    s
}

/// The stand-ins' tables, as `nft list table` names them.
pub const STANDIN_TABLES: [&str; 2] = ["ip kube-proxy-standin", "ip flannel-standin"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_from_top_skips_taken_and_edges() {
        let net: Ipv4Net = "10.0.0.0/29".parse().unwrap_or_else(|_| unreachable!());
        let taken = vec![Ipv4Addr::new(10, 0, 0, 6)];
        assert_eq!(free_from_top(net, &taken, |_| true), Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(free_from_top(net, &taken, |a| a.octets()[3] < 3), Some(Ipv4Addr::new(10, 0, 0, 2)));
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    fn site(admin: Option<&str>) -> Site {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hosts/inventory.toml");
        let Some(admin) = admin else { return crate::load_site(&path).unwrap_or_else(|e| panic!("{e}")) };
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let text = text.replace("admin = [\"172.22.0.0/24\"]", &format!("admin = [\"{admin}\"]"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("inventory.toml");
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        crate::load_site(&p).unwrap_or_else(|e| panic!("{e}"))
    }

    fn member<'a>(t: &'a Topology, label: &str) -> &'a Member {
        t.members.iter().find(|m| m.label == label).unwrap_or_else(|| panic!("no member {label}"))
    }

    #[test]
    fn bundled_inventory_puts_the_untrusted_host_behind_the_router() {
        let s = site(None);
        let t = plan(&s, &crate::policy::flows(&s), "t").unwrap_or_else(|e| panic!("{e}"));
        // The admin network is the whole LAN: no LAN address is untrusted.
        assert_eq!(member(&t, "untrusted").addr, UNTRUSTED_FALLBACK);
        assert_eq!(member(&t, "untrusted").attach, Attach::Routed);
        assert_eq!(member(&t, "admin").addr, Ipv4Addr::new(172, 22, 0, 253));
        assert_eq!(t.lans[0].router_addr, Ipv4Addr::new(172, 22, 0, 254));
        assert_eq!(member(&t, "dns").attach, Attach::Routed);
        let nodes: Vec<(&str, String)> = t.nodes.iter().map(|n| (n.host.as_str(), n.subnet.to_string())).collect();
        assert_eq!(nodes, [("alphard", "10.42.0.0/24".to_string()), ("hamal", "10.42.1.0/24".to_string())]);
        assert_eq!(member(&t, "pod@hamal").addr, Ipv4Addr::new(10, 42, 1, 2));
        let c = t.cluster.as_ref().unwrap_or_else(|| panic!("cluster"));
        let api = c.service(Ipv4Addr::new(10, 43, 0, 1), crate::model::Protocol::Tcp, 443).unwrap_or_else(|| panic!("api"));
        assert_eq!((api.endpoint, api.endpoint_port), (Ipv4Addr::new(172, 22, 0, 134), 6443));
        assert!(standin_ruleset(c).contains("ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 masquerade"));
    }

    #[test]
    fn a_narrow_admin_network_leaves_an_untrusted_lan_address() {
        let s = site(Some("172.22.0.10/32"));
        let t = plan(&s, &crate::policy::flows(&s), "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(member(&t, "admin").addr, Ipv4Addr::new(172, 22, 0, 10));
        let u = member(&t, "untrusted");
        assert!(matches!(u.attach, Attach::Lan { .. }));
        assert!(t.lans[0].cidr.contains(&u.addr) && u.addr != Ipv4Addr::new(172, 22, 0, 10));
    }
}
