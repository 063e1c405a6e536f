//! Which probes to send and what each should do (`plan`, pure: an oracle that walks a packet
//! through the chains it crosses and asks the flows), and sending them for real (`run`): TCP
//! handshakes plus an echoed nonce, UDP request/reply, one-way UDP through the VXLAN overlay,
//! and a forged VXLAN frame from the untrusted host.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::model::{Protocol, Site};
use crate::policy::{Chain, DNS_PORT, FLANNEL_VXLAN_PORT, Flow, Flows};

use super::SimulateError;
use super::topology::{POD_PORT, Role, Topology, VXLAN_ID};

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

/// The model's answer: the first flow of `host`'s `chain` that accepts `pkt`.
fn admit(site: &Site, flows: &Flows, host: &str, chain: Chain, pkt: &Packet) -> Option<usize> {
    if site.host(host).is_some_and(|h| h.block.iter().any(|n| n.contains(&pkt.src))) {
        return None;
    }
    flows.all().iter().position(|f| f.host == host && matches(f, chain, pkt))
}

fn matches(f: &Flow, chain: Chain, pkt: &Packet) -> bool {
    f.chain == chain
        && f.from.contains(pkt.src)
        && f.to.as_ref().is_none_or(|t| t.contains(pkt.dst))
        && f.proto.is_none_or(|p| p == pkt.proto)
        && (f.ports.is_empty() || f.ports.iter().any(|r| r.contains(pkt.port)))
        && (!f.dnat_only || pkt.dnat)
}

struct Oracle<'a> {
    site: &'a Site,
    flows: &'a Flows,
    t: &'a Topology,
}

impl Oracle<'_> {
    fn hop(&self, host: &str, chain: Chain, packet: Packet) -> Hop {
        Hop { host: host.to_string(), chain, packet, admitted_by: admit(self.site, self.flows, host, chain, &packet) }
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
fn inject_source(t: &Topology, node: usize) -> Option<Ipv4Addr> {
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
            .filter(|p| p.hops.iter().any(|h| h.host == f.host && h.chain == f.chain && matches(f, h.chain, &h.packet)))
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
                .any(|p| p.expect && p.hops.iter().any(|h| h.host == f.host && h.chain == f.chain && matches(f, h.chain, &h.packet)))
        })
        .collect()
}

/// Datagrams each UDP listener received, with the source it saw, by (address, port).
pub type Receipts = Arc<Mutex<HashMap<(Ipv4Addr, u16), Vec<(Vec<u8>, Ipv4Addr)>>>>;

/// Start every listener in its namespace; they live until the process ends.
pub fn start_listeners(t: &Topology, eps: &[Endpoint]) -> Result<Receipts, SimulateError> {
    let receipts: Receipts = Arc::default();
    for e in eps {
        let m = &t.members[e.member];
        let addr = SocketAddrV4::new(m.addr, e.port);
        match e.proto {
            Protocol::Tcp => {
                let listener = m.ns.run_within(move || TcpListener::bind(addr))?;
                thread::spawn(move || serve_tcp(listener));
            }
            Protocol::Udp => {
                let socket = m.ns.run_within(move || UdpSocket::bind(addr))?;
                let r = Arc::clone(&receipts);
                thread::spawn(move || serve_udp(socket, addr, r));
            }
        }
    }
    Ok(receipts)
}

/// Echo the nonce, then the source address this end saw (masquerade shows here).
fn echo(payload: &[u8], peer: std::net::SocketAddr) -> Vec<u8> {
    let mut reply = payload.to_vec();
    reply.extend_from_slice(format!(" from {}", peer.ip()).as_bytes());
    reply
}

fn serve_tcp(listener: TcpListener) {
    for mut conn in listener.incoming().flatten() {
        thread::spawn(move || {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 256];
            if let (Ok(n), Ok(peer)) = (conn.read(&mut buf), conn.peer_addr()) {
                let _ = conn.write_all(&echo(&buf[..n], peer));
            }
        });
    }
}

fn serve_udp(socket: UdpSocket, addr: SocketAddrV4, receipts: Receipts) {
    let mut buf = [0u8; 1500];
    while let Ok((n, peer)) = socket.recv_from(&mut buf) {
        if let (Ok(mut r), std::net::SocketAddr::V4(p)) = (receipts.lock(), peer) {
            r.entry((*addr.ip(), addr.port())).or_default().push((buf[..n].to_vec(), *p.ip()));
        }
        let _ = socket.send_to(&echo(&buf[..n], peer), peer);
    }
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
    fn failed(detail: impl Into<String>) -> Self {
        Self { passed: false, seen_from: None, detail: detail.into() }
    }
    fn passed(seen_from: Option<Ipv4Addr>, detail: impl Into<String>) -> Self {
        Self { passed: true, seen_from, detail: detail.into() }
    }
}

/// Send every probe at once (each from its own namespace) and collect the outcomes in order.
pub fn run(t: &Topology, probes: &[Probe], receipts: &Receipts, timeout: Duration) -> Vec<Outcome> {
    let handles: Vec<_> = probes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let nonce = format!("iac-simulate-{}-{i}", std::process::id()).into_bytes();
            let p = p.clone();
            let dst = SocketAddrV4::new(p.to, p.port);
            let receipts = Arc::clone(receipts);
            let inject = match p.method {
                Method::VxlanInject { node } => {
                    let n = &t.nodes[node];
                    inject_source(t, node).map(|src| (n.mac, src, n.pod_addr()))
                }
                _ => None,
            };
            let one_way_target = match p.method {
                Method::VxlanInject { node } => (t.nodes[node].pod_addr(), POD_PORT),
                _ => (p.to, p.port),
            };
            t.members[p.from].ns.within(move || {
                Ok(match p.method {
                    Method::Tcp => tcp_probe(dst, &nonce, timeout),
                    Method::UdpEcho => udp_echo(dst, &nonce, timeout),
                    Method::UdpOneWay | Method::VxlanInject { .. } => {
                        let payload = match inject {
                            Some((mac, src, pod)) => vxlan_frame(mac, src, pod, &nonce),
                            None => nonce.clone(),
                        };
                        one_way(dst, &payload, &nonce, one_way_target, &receipts, timeout)
                    }
                })
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| match h.join() {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => Outcome::failed(format!("could not run: {e}")),
            Err(_) => Outcome::failed("probe thread panicked"),
        })
        .collect()
}

/// The source address in an echo (`NONCE from ADDR`), if the echo carries our nonce.
fn parse_echo(reply: &[u8], nonce: &[u8]) -> Option<Ipv4Addr> {
    let rest = reply.strip_prefix(nonce)?;
    std::str::from_utf8(rest).ok()?.strip_prefix(" from ")?.trim().parse().ok()
}

fn tcp_probe(dst: SocketAddrV4, nonce: &[u8], timeout: Duration) -> Outcome {
    let mut s = match TcpStream::connect_timeout(&dst.into(), timeout) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Outcome::failed("no handshake (timeout)"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Outcome::failed("reset"),
        Err(e) => return Outcome::failed(e.to_string()),
    };
    let _ = s.set_read_timeout(Some(timeout));
    if let Err(e) = s.write_all(nonce) {
        return Outcome::failed(format!("handshake, then {e}"));
    }
    let mut reply = Vec::new();
    match s.read_to_end(&mut reply) {
        Ok(_) => match parse_echo(&reply, nonce) {
            Some(seen) => Outcome::passed(Some(seen), "handshake + echo"),
            None => Outcome::failed("handshake, wrong echo"),
        },
        Err(e) => Outcome::failed(format!("handshake, no echo ({e})")),
    }
}

fn udp_echo(dst: SocketAddrV4, nonce: &[u8], timeout: Duration) -> Outcome {
    let s = match UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect(dst).map(|_| s)) {
        Ok(s) => s,
        Err(e) => return Outcome::failed(e.to_string()),
    };
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    // Two tries within the timeout: the first datagram may wait for ARP.
    for attempt in 0..2u32 {
        if let Err(e) = s.send(nonce) {
            return Outcome::failed(e.to_string());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = if attempt == 0 { left / 2 } else { left };
        let _ = s.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        if let Some(seen) = s.recv(&mut buf).ok().and_then(|n| parse_echo(&buf[..n], nonce)) {
            return Outcome::passed(Some(seen), "reply");
        }
    }
    Outcome::failed("no reply (timeout)")
}

fn one_way(dst: SocketAddrV4, payload: &[u8], nonce: &[u8], target: (Ipv4Addr, u16), receipts: &Receipts, timeout: Duration) -> Outcome {
    let s = match UdpSocket::bind("0.0.0.0:0") {
        Ok(s) => s,
        Err(e) => return Outcome::failed(e.to_string()),
    };
    let deadline = Instant::now() + timeout;
    let mut sent_again = false;
    let _ = s.send_to(payload, dst);
    while Instant::now() < deadline {
        let seen =
            receipts.lock().ok().and_then(|r| r.get(&target).and_then(|v| v.iter().find(|(d, _)| d == nonce).map(|(_, from)| *from)));
        if let Some(from) = seen {
            return Outcome::passed(Some(from), format!("received by {}:{}", target.0, target.1));
        }
        if !sent_again && deadline.saturating_duration_since(Instant::now()) < timeout / 2 {
            let _ = s.send_to(payload, dst);
            sent_again = true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    Outcome::failed("never arrived (timeout)")
}

/// A VXLAN packet body (RFC 7348): header with VNI, then an Ethernet frame to `dst_mac`
/// carrying IPv4/UDP `src` → `pod`:POD_PORT with `payload`.
pub fn vxlan_frame(dst_mac: [u8; 6], src: Ipv4Addr, pod: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x08, 0, 0, 0];
    f.extend_from_slice(&VXLAN_ID.to_be_bytes()[1..]);
    f.push(0);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    f.extend_from_slice(&[0x08, 0x00]);
    let udp_len = 8 + payload.len();
    let total = u16::try_from(20 + udp_len).unwrap_or(u16::MAX);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0x1a, 0xc0, 0x40, 0x00, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&pod.octets());
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&POD_PORT.to_be_bytes());
    f.extend_from_slice(&u16::try_from(udp_len).unwrap_or(u16::MAX).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed for IPv4)
    f.extend_from_slice(payload);
    f
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_header() {
        // Example header from RFC 1071 discussions: checksum field zeroed.
        let h = [0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7];
        assert_eq!(ipv4_checksum(&h), 0xb861);
    }

    #[test]
    fn vxlan_frame_layout() {
        let f = vxlan_frame([2, 0x1a, 0xc0, 0, 0, 1], Ipv4Addr::new(10, 42, 1, 77), Ipv4Addr::new(10, 42, 0, 2), b"x");
        assert_eq!(&f[..8], &[0x08, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(&f[8..14], &[2, 0x1a, 0xc0, 0, 0, 1]);
        assert_eq!(f.len(), 8 + 14 + 20 + 8 + 1);
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
