//! Build a planned estate: every namespace, veth, bridge, address and route, flannel's VXLAN
//! overlay and the stand-in tables, with `ip`, `bridge` and `nft` run in the namespaces.

use crate::policy::FLANNEL_VXLAN_PORT;

use super::super::SimulateError;
use super::super::netns::{self, Guard};
use super::plan::standin_ruleset;
use super::{Attach, ROUTER_P2P, Role, Topology, VXLAN_ID};

/// Create every namespace, link, address, route, VXLAN device and stand-in table.
pub fn build(t: &Topology, guard: &Guard) -> Result<(), SimulateError> {
    guard.add(&t.router.0)?;
    for lan in &t.lans {
        guard.add(&lan.ns.0)?;
        lan.ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        lan.ns.ip(&["link", "set", "br0", "up"])?;
    }
    for m in &t.members {
        guard.add(&m.ns.0)?;
    }
    t.router.sysctl("net.ipv4.ip_forward", "1")?;
    for (i, lan) in t.lans.iter().enumerate() {
        let port = format!("p{}", t.members.len());
        let dev = format!("lan{i}");
        lan.ns.ip(&["link", "add", &port, "type", "veth", "peer", "name", &dev, "netns", &t.router.0])?;
        lan.ns.ip(&["link", "set", &port, "master", "br0", "up"])?;
        t.router.ip(&["addr", "add", &format!("{}/{}", lan.router_addr, lan.cidr.prefix_len()), "dev", &dev])?;
        t.router.ip(&["link", "set", &dev, "up"])?;
    }
    // Nodes first: pods attach to their cni0.
    for n in &t.nodes {
        let node_ns = &t.members[n.member].ns;
        node_ns.sysctl("net.ipv4.ip_forward", "1")?;
        node_ns.ip(&["link", "add", "cni0", "type", "bridge"])?;
        node_ns.ip(&["addr", "add", &format!("{}/24", n.cni_gateway()), "dev", "cni0"])?;
        node_ns.ip(&["link", "set", "cni0", "up"])?;
    }
    for (k, m) in t.members.iter().enumerate() {
        match &m.attach {
            Attach::Lan { lan, prefix } => {
                let lan = &t.lans[*lan];
                let port = format!("p{k}");
                lan.ns.ip(&["link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &m.ns.0])?;
                lan.ns.ip(&["link", "set", &port, "master", "br0", "up"])?;
                m.ns.ip(&["addr", "add", &format!("{}/{prefix}", m.addr), "dev", "eth0"])?;
                m.ns.ip(&["link", "set", "eth0", "up"])?;
                m.ns.ip(&["route", "add", "default", "via", &lan.router_addr.to_string()])?;
            }
            Attach::Routed => {
                let dev = format!("r{k}");
                let p2p = format!("{ROUTER_P2P}");
                t.router.ip(&["link", "add", &dev, "type", "veth", "peer", "name", "eth0", "netns", &m.ns.0])?;
                t.router.ip(&["addr", "add", &format!("{p2p}/32"), "dev", &dev])?;
                t.router.ip(&["link", "set", &dev, "up"])?;
                t.router.ip(&["route", "add", &format!("{}/32", m.addr), "dev", &dev])?;
                m.ns.ip(&["addr", "add", &format!("{}/32", m.addr), "dev", "eth0"])?;
                m.ns.ip(&["link", "set", "eth0", "up"])?;
                m.ns.ip(&["route", "add", &format!("{p2p}/32"), "dev", "eth0"])?;
                m.ns.ip(&["route", "add", "default", "via", &p2p, "dev", "eth0"])?;
            }
            Attach::Pod { node } => {
                let n = &t.nodes[*node];
                let node_ns = &t.members[n.member].ns;
                let port = format!("veth{k}");
                node_ns.ip(&["link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &m.ns.0])?;
                node_ns.ip(&["link", "set", &port, "master", "cni0", "up"])?;
                m.ns.ip(&["link", "set", "eth0", "mtu", "1450"])?;
                m.ns.ip(&["addr", "add", &format!("{}/24", m.addr), "dev", "eth0"])?;
                m.ns.ip(&["link", "set", "eth0", "up"])?;
                m.ns.ip(&["route", "add", "default", "via", &n.cni_gateway().to_string()])?;
            }
        }
    }
    build_overlay(t)?;
    Ok(())
}

/// flannel's VXLAN backend, as flannel sets it up: flannel.1 with the subnet's network
/// address, a route per remote subnet via the remote VTEP address, a permanent neighbour entry
/// for that address and an FDB entry that sends its MAC to the remote node on UDP 8472.
fn build_overlay(t: &Topology) -> Result<(), SimulateError> {
    let Some(c) = &t.cluster else { return Ok(()) };
    let vni = VXLAN_ID.to_string();
    let port = FLANNEL_VXLAN_PORT.to_string();
    for n in &t.nodes {
        let node_ns = &t.members[n.member].ns;
        let local = n.addr.to_string();
        let mac = n.mac_text();
        node_ns.ip(&[
            "link",
            "add",
            "flannel.1",
            "address",
            &mac,
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &local,
            "dev",
            "eth0",
            "dstport",
            &port,
            "nolearning",
        ])?;
        node_ns.ip(&["link", "set", "flannel.1", "mtu", "1450", "up"])?;
        node_ns.ip(&["addr", "add", &format!("{}/32", n.vtep_addr()), "dev", "flannel.1"])?;
        for o in t.nodes.iter().filter(|o| o.host != n.host) {
            let vtep = o.vtep_addr().to_string();
            let omac = o.mac_text();
            node_ns.ip(&["route", "add", &o.subnet.to_string(), "via", &vtep, "dev", "flannel.1", "onlink"])?;
            node_ns.ip(&["neigh", "replace", &vtep, "lladdr", &omac, "dev", "flannel.1", "nud", "permanent"])?;
            let args: Vec<String> = ["-n", &node_ns.0, "fdb", "append", &omac, "dev", "flannel.1", "dst", &o.addr.to_string()]
                .iter()
                .map(|s| s.to_string())
                .collect();
            netns::run("bridge", &args)?;
        }
        node_ns.exec("nft", &["-f", "-"], Some(&standin_ruleset(c)))?;
    }
    // Everyone else reaches pod subnets through the node that owns them (as a LAN with static
    // routes would); the router also knows the service CIDR (behind the first server), so the
    // untrusted host can try the API VIP.
    for n in &t.nodes {
        t.router.ip(&["route", "add", &n.subnet.to_string(), "via", &n.addr.to_string()])?;
        for m in &t.members {
            let on_same_lan = matches!(m.attach, Attach::Lan { .. }) && m.attach == t.members[n.member].attach;
            let is_node = matches!(m.role, Role::Host { node: Some(_), .. });
            if on_same_lan && !is_node {
                m.ns.ip(&["route", "add", &n.subnet.to_string(), "via", &n.addr.to_string()])?;
            }
        }
    }
    t.router.ip(&["route", "add", &c.service_cidr.to_string(), "via", &c.api_server.to_string()])?;
    let server_attach = t.members.iter().find(|m| m.addr == c.api_server).map(|m| &m.attach);
    if let Some(u) =
        t.untrusted().map(|i| &t.members[i]).filter(|u| matches!(u.attach, Attach::Lan { .. }) && Some(&u.attach) == server_attach)
    {
        u.ns.ip(&["route", "add", &c.service_cidr.to_string(), "via", &c.api_server.to_string()])?;
    }
    Ok(())
}
