//! The model's answer for one packet: which flow of a host's chain admits it, if any. This is
//! what the rendered rulesets must do (a blocked source is dropped first, then the first flow
//! that matches accepts; `templates/table.nft`), so `iac simulate` predicts each probe's
//! verdict with it and compares the kernel's. Pure: no namespace, no packet is sent.

use std::net::Ipv4Addr;

use crate::model::{Protocol, Site};

use super::{Chain, Flow, Flows};

/// What a packet looks like where a chain sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: Protocol,
    pub port: u16,
    /// kube-proxy rewrote the destination (`ct status dnat`).
    pub dnat: bool,
}

impl Flow {
    /// Whether this flow accepts `packet` in `chain`: same chain, source in `from`,
    /// destination in `to` (when set), protocol and port among the flow's (when set), and
    /// DNATed when the flow admits only Service traffic.
    pub fn admits(&self, chain: Chain, packet: &Packet) -> bool {
        self.chain == chain
            && self.from.contains(packet.src)
            && self.to.as_ref().is_none_or(|t| t.contains(packet.dst))
            && self.proto.is_none_or(|p| p == packet.proto)
            && (self.ports.is_empty() || self.ports.iter().any(|r| r.contains(packet.port)))
            && (!self.dnat_only || packet.dnat)
    }
}

/// The index (into `flows.all()`) of the first flow of `host`'s `chain` that admits `packet`;
/// None when the host blocks its source (`firewall.block`, dropped before any flow) or no flow
/// admits it (the chain's policy drops it).
pub fn verdict(site: &Site, flows: &Flows, host: &str, chain: Chain, packet: &Packet) -> Option<usize> {
    if site.host(host).is_some_and(|h| h.block.iter().any(|n| n.contains(&packet.src))) {
        return None;
    }
    flows.all().iter().position(|f| f.host == host && f.admits(chain, packet))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{AddrSet, PortRange};

    fn set(name: &str, nets: &[&str]) -> AddrSet {
        AddrSet::new(name, nets.iter().map(|n| n.parse().unwrap()))
    }

    fn flow(chain: Chain, from: &str, to: Option<&str>, proto: Option<Protocol>, ports: &[(u16, u16)]) -> Flow {
        Flow {
            host: "h".into(),
            chain,
            name: "f".into(),
            from: set("from", &[from]),
            to: to.map(|t| set("to", &[t])),
            proto,
            ports: ports.iter().map(|&(first, last)| PortRange { first, last }).collect(),
            dnat_only: false,
            why: String::new(),
            grant: None,
        }
    }

    fn packet(src: &str, dst: &str, proto: Protocol, port: u16) -> Packet {
        Packet { src: src.parse().unwrap(), dst: dst.parse().unwrap(), proto, port, dnat: false }
    }

    #[test]
    fn source_protocol_and_port_range_must_all_match() {
        let f = flow(Chain::Input, "10.0.0.0/24", None, Some(Protocol::Tcp), &[(2379, 2380)]);
        assert!(f.admits(Chain::Input, &packet("10.0.0.9", "10.0.0.1", Protocol::Tcp, 2380)));
        assert!(!f.admits(Chain::Input, &packet("10.0.1.9", "10.0.0.1", Protocol::Tcp, 2380)), "source outside the set");
        assert!(!f.admits(Chain::Input, &packet("10.0.0.9", "10.0.0.1", Protocol::Udp, 2380)), "other protocol");
        assert!(!f.admits(Chain::Input, &packet("10.0.0.9", "10.0.0.1", Protocol::Tcp, 2381)), "port past the range");
        assert!(!f.admits(Chain::Forward, &packet("10.0.0.9", "10.0.0.1", Protocol::Tcp, 2380)), "other chain");
    }

    #[test]
    fn no_protocol_and_no_ports_admit_everything_from_the_source() {
        let f = flow(Chain::Forward, "10.42.0.0/16", Some("10.42.0.0/16"), None, &[]);
        assert!(f.admits(Chain::Forward, &packet("10.42.1.2", "10.42.0.2", Protocol::Udp, 53)));
        assert!(f.admits(Chain::Forward, &packet("10.42.1.2", "10.42.0.2", Protocol::Tcp, 65535)));
        assert!(!f.admits(Chain::Forward, &packet("10.42.1.2", "172.22.0.1", Protocol::Tcp, 80)), "destination outside `to`");
    }

    #[test]
    fn a_dnat_only_flow_admits_only_rewritten_packets() {
        let f = Flow { dnat_only: true, ..flow(Chain::Forward, "10.42.0.0/16", None, None, &[]) };
        let p = packet("10.42.0.2", "172.22.0.134", Protocol::Tcp, 6443);
        assert!(!f.admits(Chain::Forward, &p));
        assert!(f.admits(Chain::Forward, &Packet { dnat: true, ..p }));
    }

    #[test]
    fn the_first_admitting_flow_of_the_host_answers_and_a_block_wins() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hosts/inventory.toml");
        let mut site = crate::load_site(&path).unwrap();
        let flows = crate::policy::flows(&site);
        let admin = packet("172.22.0.10", "172.22.0.133", Protocol::Tcp, 22);
        let i = verdict(&site, &flows, "alkaid", Chain::Input, &admin).unwrap();
        assert_eq!((flows.all()[i].host.as_str(), flows.all()[i].name.as_str()), ("alkaid", "ssh"));
        assert_eq!(verdict(&site, &flows, "alkaid", Chain::Input, &Packet { port: 23, ..admin }), None);
        // Another host's flows never answer for alkaid.
        assert_eq!(verdict(&site, &flows, "nosuch", Chain::Input, &admin), None);
        let alkaid = site.hosts.iter_mut().find(|h| h.name == "alkaid").unwrap();
        alkaid.block.push("172.22.0.10/32".parse().unwrap());
        assert_eq!(verdict(&site, &flows, "alkaid", Chain::Input, &admin), None);
    }
}
