//! Which probes to send and what each should do (`plan`, pure): for every declared flow the
//! probes that exercise it end to end (they must pass), and the untrusted host against every
//! listener (normally refused). Each probe's path is walked through the chains it crosses and
//! each hop asks the model (`policy::verdict`) which flow admits it. Sending them is
//! `traffic`; the forged VXLAN frame is built by `packet`.

use std::net::Ipv4Addr;

use crate::model::{Protocol, Site};
use crate::policy::{Chain, DNS_PORT, FLANNEL_VXLAN_PORT, Flow, Flows, Packet, verdict};

use super::topology::{POD_PORT, Role, Topology};

/// One base chain a probe crosses, and the flow (index into `Flows`) that admits it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub host: String,
    pub chain: Chain,
    pub packet: Packet,
    pub admitted_by: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Handshake, send a nonce, read it back.
    Tcp,
    /// Send a nonce, wait for the echo.
    UdpEcho,
    /// Send a nonce pod → pod; the receiving pod's listener must record it (one direction of
    /// the VXLAN overlay at a time).
    UdpOneWay,
    /// A forged VXLAN frame to node `node`'s UDP 8472 carrying a datagram for its pod; the pod's
    /// listener must not record it.
    VxlanInject { node: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Index into `Topology::members`.
    pub from: usize,
    pub to: Ipv4Addr,
    pub to_label: String,
    pub proto: Protocol,
    pub port: u16,
    pub method: Method,
    pub expect: bool,
    pub hops: Vec<Hop>,
    /// The source address the destination should see (the node's, when masqueraded).
    pub arrives_from: Ipv4Addr,
    pub why: String,
}

impl Probe {
    /// As declared: passed or refused as expected and, when it passed, seen from the expected
    /// source address.
    pub fn matches(&self, o: &Outcome) -> bool {
        self.expect == o.passed && (!o.passed || o.seen_from.is_none_or(|s| s == self.arrives_from))
    }
}

/// A listener the simulation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub member: usize,
    pub proto: Protocol,
    pub port: u16,
}

/// Every listener: each host serves the union of every host's input ports (so the untrusted
/// probes meet a listener, and only the firewall can refuse them), except UDP 8472 on k3s
/// nodes, which the kernel's VXLAN socket owns; pods serve POD_PORT; resolvers 53; remote
/// egress targets their declared ports.
pub fn endpoints(t: &Topology, flows: &Flows) -> Vec<Endpoint> {
    let mut host_ports: Vec<(Protocol, u16)> = Vec::new();
    for f in flows.all().iter().filter(|f| f.chain == Chain::Input) {
        for (proto, port) in flow_ports(f) {
            if !host_ports.contains(&(proto, port)) {
                host_ports.push((proto, port));
            }
        }
    }
    let mut out = Vec::new();
    for (i, m) in t.members.iter().enumerate() {
        let ports: Vec<(Protocol, u16)> = match &m.role {
            Role::Host { node, .. } => host_ports
                .iter()
                .copied()
                .filter(|&(p, port)| !(node.is_some() && p == Protocol::Udp && port == FLANNEL_VXLAN_PORT))
                .collect(),
            Role::Pod { node } => {
                let mut v = vec![(Protocol::Tcp, POD_PORT), (Protocol::Udp, POD_PORT)];
                // The stand-in CoreDNS (kube-dns endpoint) runs in the first node's pod.
                if *node == 0 {
                    v.extend([(Protocol::Udp, DNS_PORT), (Protocol::Tcp, DNS_PORT)]);
                }
                v
            }
            Role::Dns => vec![(Protocol::Udp, DNS_PORT), (Protocol::Tcp, DNS_PORT)],
            Role::Remote => flows.all().iter().filter(|f| f.to.as_ref().is_some_and(|s| s.contains(m.addr))).flat_map(flow_ports).collect(),
            Role::Admin | Role::Untrusted | Role::Client => vec![],
        };
        let mut seen = Vec::new();
        for (proto, port) in ports {
            if !seen.contains(&(proto, port)) {
                seen.push((proto, port));
                out.push(Endpoint { member: i, proto, port });
            }
        }
    }
    out
}

/// The (protocol, port) pairs that represent a flow: the first and last port of each range;
/// both protocols and POD_PORT when the flow leaves them open.
fn flow_ports(f: &Flow) -> Vec<(Protocol, u16)> {
    let protos = match f.proto {
        Some(p) => vec![p],
        None => vec![Protocol::Tcp, Protocol::Udp],
    };
    let mut ports: Vec<u16> = f.ports.iter().flat_map(|r| [r.first, r.last]).collect();
    ports.dedup();
    if ports.is_empty() {
        ports.push(POD_PORT);
    }
    protos.iter().flat_map(|p| ports.iter().map(move |port| (*p, *port))).collect()
}

struct Oracle<'a> {
    site: &'a Site,
    flows: &'a Flows,
    t: &'a Topology,
}

impl Oracle<'_> {
    fn hop(&self, host: &str, chain: Chain, packet: Packet) -> Hop {
        Hop { host: host.to_string(), chain, packet, admitted_by: verdict(self.site, self.flows, host, chain, &packet) }
    }

    fn host_at(&self, addr: Ipv4Addr) -> Option<&str> {
        self.site.hosts.iter().find(|h| h.address == addr).map(|h| h.name.as_str())
    }

    fn pod_node(&self, addr: Ipv4Addr) -> Option<usize> {
        self.t.nodes.iter().position(|n| n.pod_addr() == addr)
    }

    /// The source address the destination sees: pods leaving the pod CIDR are masqueraded to
    /// their node's address (fact 5), unless they talk to their own node.
    fn arrival(&self, from: usize, to: Ipv4Addr, proto: Protocol, port: u16) -> Ipv4Addr {
        let m = &self.t.members[from];
        let (Role::Pod { node }, Some(c)) = (&m.role, &self.t.cluster) else { return m.addr };
        let n = &self.t.nodes[*node];
        let d = c.service(to, proto, port).map_or(to, |s| s.endpoint);
        if c.masquerade && !c.pod_cidr.contains(&d) && d != n.addr { n.addr } else { m.addr }
    }

    /// The chains a probe crosses, or None when the simulation has no path for it.
    fn path(&self, from: usize, to: Ipv4Addr, proto: Protocol, port: u16, method: Method) -> Option<Vec<Hop>> {
        let m = &self.t.members[from];
        let c = self.t.cluster.as_ref();
        let service = c.and_then(|c| c.service(to, proto, port));
        let pkt = |src, dst, port, dnat| Packet { src, dst, proto, port, dnat };
        if let Method::VxlanInject { node } = method {
            let n = &self.t.nodes[node];
            let inner = Packet { src: inject_source(self.t, node)?, dst: n.pod_addr(), proto: Protocol::Udp, port: POD_PORT, dnat: false };
            return Some(vec![
                self.hop(&n.host, Chain::Input, pkt(m.addr, n.addr, FLANNEL_VXLAN_PORT, false)),
                self.hop(&n.host, Chain::Forward, inner),
            ]);
        }
        if let Role::Pod { node } = m.role {
            let c = c?;
            let n = &self.t.nodes[node];
            let (d, dport, dnat) = match service {
                Some(s) if s.endpoint == m.addr => return None, // hairpin: kube-proxy would masquerade it
                Some(s) => (s.endpoint, s.endpoint_port, true),
                None => (to, port, false),
            };
            if d == n.addr {
                return Some(vec![self.hop(&n.host, Chain::Input, pkt(m.addr, d, dport, dnat))]);
            }
            let mut hops = vec![self.hop(&n.host, Chain::Forward, pkt(m.addr, d, dport, dnat))];
            if let Some(other) = self.pod_node(d).filter(|o| *o != node) {
                let o = &self.t.nodes[other];
                let vx = |a: Ipv4Addr, b: Ipv4Addr| Packet { src: a, dst: b, proto: Protocol::Udp, port: FLANNEL_VXLAN_PORT, dnat: false };
                hops.push(self.hop(&o.host, Chain::Input, vx(n.addr, o.addr)));
                hops.push(self.hop(&o.host, Chain::Forward, pkt(m.addr, d, dport, false)));
                if method != Method::UdpOneWay {
                    hops.push(self.hop(&n.host, Chain::Input, vx(o.addr, n.addr)));
                }
            } else if let Some(h) = self.host_at(d) {
                let src = if c.masquerade && !c.pod_cidr.contains(&d) { n.addr } else { m.addr };
                hops.push(self.hop(h, Chain::Input, pkt(src, d, dport, false)));
            }
            return Some(hops);
        }
        if let Some(s) = service {
            // Outside pods, only the API Service: from a node (kube-proxy's output chain) or
            // from the untrusted host, routed at the first server.
            let is_node = matches!(m.role, Role::Host { node: Some(_), .. });
            if s.name != "kubernetes" || s.endpoint == m.addr || !(is_node || m.role == Role::Untrusted) {
                return None;
            }
            let h = self.host_at(s.endpoint)?;
            return Some(vec![self.hop(h, Chain::Input, pkt(m.addr, s.endpoint, s.endpoint_port, true))]);
        }
        if let Some(h) = self.host_at(to) {
            return (to != m.addr).then(|| vec![self.hop(h, Chain::Input, pkt(m.addr, to, port, false))]);
        }
        // Only the untrusted host probes pods directly (hosts reach pods through flannel.1
        // with its own source address, which no flow of ours is about).
        if let (Some(node), Role::Untrusted) = (self.pod_node(to), &m.role) {
            let n = &self.t.nodes[node];
            return Some(vec![self.hop(&n.host, Chain::Forward, pkt(m.addr, to, port, false))]);
        }
        None
    }
}

/// The inner source of a forged VXLAN frame: a pod address of another node (or of the next
/// /24 when there is one node), which node `node`'s forward chain admits as pod-to-pod.
pub(super) fn inject_source(t: &Topology, node: usize) -> Option<Ipv4Addr> {
    let other = t.nodes.get((node + 1) % t.nodes.len()).filter(|_| t.nodes.len() > 1);
    let subnet = match other {
        Some(o) => o.subnet,
        None => {
            let c = t.cluster.as_ref()?;
            c.pod_cidr.subnets(24).ok()?.nth(t.nodes.len())?
        }
    };
    Some(Ipv4Addr::from(u32::from(subnet.network()) + 77))
}

fn label_of(t: &Topology, addr: Ipv4Addr) -> String {
    if let Some(s) = t.cluster.as_ref().and_then(|c| c.services.iter().find(|s| s.vip == addr)) {
        return format!("svc/{}", s.name);
    }
    t.members.iter().find(|m| m.addr == addr).map_or_else(|| addr.to_string(), |m| m.label.clone())
}

/// Every probe: for each declared flow, the probes that exercise it end to end (they must
/// pass); then the untrusted host against every listener, pod and the API VIP (what the
/// flows say, normally: refused).
pub fn plan(site: &Site, flows: &Flows, t: &Topology) -> Vec<Probe> {
    let oracle = Oracle { site, flows, t };
    let eps = endpoints(t, flows);
    let mut dests: Vec<(Ipv4Addr, Protocol, u16)> = eps.iter().map(|e| (t.members[e.member].addr, e.proto, e.port)).collect();
    if let Some(c) = &t.cluster {
        dests.extend(c.services.iter().map(|s| (s.vip, s.proto, s.port)));
    }
    let untrusted = t.untrusted();
    let mut candidates: Vec<Probe> = Vec::new();
    for (from, m) in t.members.iter().enumerate() {
        if !matches!(m.role, Role::Host { .. } | Role::Pod { .. } | Role::Admin | Role::Client) {
            continue;
        }
        for &(to, proto, port) in &dests {
            if to == m.addr {
                continue;
            }
            let cross_node = matches!(m.role, Role::Pod { node } if oracle.pod_node(to).is_some_and(|o| o != node));
            let method = match proto {
                Protocol::Tcp => Method::Tcp,
                Protocol::Udp if cross_node => Method::UdpOneWay,
                Protocol::Udp => Method::UdpEcho,
            };
            if let Some(hops) = oracle.path(from, to, proto, port, method) {
                let arrives_from = oracle.arrival(from, to, proto, port);
                candidates.push(Probe {
                    from,
                    to,
                    to_label: label_of(t, to),
                    proto,
                    port,
                    method,
                    expect: true,
                    hops,
                    arrives_from,
                    why: String::new(),
                });
            }
        }
    }

    let mut probes: Vec<Probe> = Vec::new();
    let push = |p: Probe, probes: &mut Vec<Probe>| {
        if !probes.iter().any(|q| q.from == p.from && q.to == p.to && q.proto == p.proto && q.port == p.port && q.method == p.method) {
            probes.push(p);
        }
    };
    // Forward flows first: a probe then carries the why of the rule that routes it (pods to
    // the database) rather than of the destination's generic rule (its clients).
    let mut ordered: Vec<&Flow> = flows.all().iter().filter(|f| f.chain == Chain::Forward).collect();
    ordered.extend(flows.all().iter().filter(|f| f.chain == Chain::Input));
    for f in ordered {
        let exercising: Vec<&Probe> = candidates
            .iter()
            .filter(|p| p.hops.iter().any(|h| h.host == f.host && h.chain == f.chain && f.admits(h.chain, &h.packet)))
            .collect();
        let passing: Vec<&Probe> = exercising.iter().copied().filter(|p| p.hops.iter().all(|h| h.admitted_by.is_some())).collect();
        if passing.is_empty() {
            // Declared, yet the model itself refuses it somewhere on the way: probe it anyway,
            // expecting it to pass, so the report shows the contradiction.
            if let Some(p) = exercising.first() {
                push(Probe { why: format!("{} (refused elsewhere by the flows themselves)", f.why), ..(*p).clone() }, &mut probes);
            }
        }
        for p in passing {
            push(Probe { why: f.why.clone(), ..p.clone() }, &mut probes);
        }
    }

    let Some(u) = untrusted else { return probes };
    let mut refused: Vec<(Ipv4Addr, Protocol, u16, Method)> = Vec::new();
    for e in &eps {
        if matches!(t.members[e.member].role, Role::Host { .. } | Role::Pod { .. }) {
            let method = if e.proto == Protocol::Tcp { Method::Tcp } else { Method::UdpEcho };
            refused.push((t.members[e.member].addr, e.proto, e.port, method));
        }
    }
    for (i, n) in t.nodes.iter().enumerate() {
        refused.push((n.addr, Protocol::Udp, FLANNEL_VXLAN_PORT, Method::VxlanInject { node: i }));
    }
    if let Some(c) = &t.cluster {
        refused.push((c.api_vip, Protocol::Tcp, 443, Method::Tcp));
    }
    for (to, proto, port, method) in refused {
        let Some(hops) = oracle.path(u, to, proto, port, method) else { continue };
        let expect = hops.iter().all(|h| h.admitted_by.is_some());
        let why = if expect {
            hops.iter().filter_map(|h| h.admitted_by).map(|i| flows.all()[i].why.clone()).collect::<Vec<_>>().join("; ")
        } else {
            "not declared: no flow admits the untrusted host".to_string()
        };
        let arrives_from = match method {
            Method::VxlanInject { node } => inject_source(t, node).unwrap_or(t.members[u].addr),
            _ => t.members[u].addr,
        };
        push(Probe { from: u, to, to_label: label_of(t, to), proto, port, method, expect, hops, arrives_from, why }, &mut probes);
    }
    probes
}

/// Flows no probe exercises (every one should be; the report lists any that is not).
pub fn unprobed<'a>(flows: &'a Flows, probes: &[Probe]) -> Vec<&'a Flow> {
    flows
        .all()
        .iter()
        .filter(|f| {
            !probes
                .iter()
                .any(|p| p.expect && p.hops.iter().any(|h| h.host == f.host && h.chain == f.chain && f.admits(h.chain, &h.packet)))
        })
        .collect()
}

/// What actually happened to a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub passed: bool,
    /// The source address the listener saw.
    pub seen_from: Option<Ipv4Addr>,
    pub detail: String,
}

impl Outcome {
    pub(super) fn failed(detail: impl Into<String>) -> Self {
        Self { passed: false, seen_from: None, detail: detail.into() }
    }
    pub(super) fn passed(seen_from: Option<Ipv4Addr>, detail: impl Into<String>) -> Self {
        Self { passed: true, seen_from, detail: detail.into() }
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    #[test]
    fn declared_probes_pass_and_untrusted_ones_are_refused_in_the_model() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hosts/inventory.toml");
        let site = crate::load_site(&path).unwrap_or_else(|e| panic!("{e}"));
        let flows = crate::policy::flows(&site);
        let t = super::super::topology::plan(&site, &flows, "t").unwrap_or_else(|e| panic!("{e}"));
        let probes = plan(&site, &flows, &t);
        let u = t.untrusted().unwrap_or_else(|| panic!("untrusted"));
        for p in &probes {
            assert_eq!(p.expect, p.from != u, "{p:?}");
            assert_eq!(p.expect, p.hops.iter().all(|h| h.admitted_by.is_some()), "{p:?}");
        }
        // With one server, no pod crosses the server's forward chain to reach a server.
        let left: Vec<String> = unprobed(&flows, &probes).iter().map(|f| format!("{} {}", f.host, f.name)).collect();
        assert_eq!(left, ["alphard k3s-api"]);
    }
}
