//! Site → Flows: who talks to whom, on what, and why. This is the one place that knows the
//! k3s/flannel/kube-proxy/PostgreSQL traffic facts; the nftables rules and the pg_hba lines are
//! both printed from these flows, so they cannot disagree. `verdict` answers, from the flows
//! alone, whether a given packet is admitted: the model `iac simulate` checks the kernel against.

mod verdict;

pub use verdict::{Packet, verdict};

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;

use ipnet::Ipv4Net;

use crate::model::{Client, Cluster, Host, Protocol, Role, Site, ports};

pub use crate::model::ports::{DNS_PORT, FLANNEL_VXLAN_PORT, K3S_API_PORT, KUBELET_PORT};
pub const ETCD_PORTS: PortRange = PortRange { first: ports::ETCD_FIRST, last: ports::ETCD_LAST };

/// The netfilter base chain a flow is admitted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Chain {
    /// Traffic addressed to the host itself.
    Input,
    /// Traffic the host routes, here: pod traffic through cni0 and flannel.1.
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        Self { first: port, last: port }
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// A named list of addresses; it becomes an nftables named set of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrSet {
    pub name: String,
    /// Sorted, free of duplicates and of members another member covers.
    pub members: Vec<Ipv4Net>,
}

impl AddrSet {
    /// Members are aggregated: a network that another member covers is dropped and adjacent
    /// networks merge, because nftables interval sets reject overlapping elements.
    fn new(name: impl Into<String>, members: impl IntoIterator<Item = Ipv4Net>) -> Self {
        let members: Vec<Ipv4Net> = members.into_iter().collect();
        Self { name: name.into(), members: Ipv4Net::aggregate(&members) }
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.members.iter().any(|m| m.contains(&addr))
    }
}

/// A database permission that travels with a flow, so pg_hba admits exactly the flow's sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub database: String,
    pub user: String,
}

/// One admitted flow: `from` → `host` (or `to`, when forwarded) on `proto`/`ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The host whose ruleset admits it.
    pub host: String,
    pub chain: Chain,
    /// Short label, printed in rule comments.
    pub name: String,
    pub from: AddrSet,
    /// Destination, for forwarded flows; input flows go to the host itself.
    pub to: Option<AddrSet>,
    /// `None` admits every protocol.
    pub proto: Option<Protocol>,
    /// Empty admits every port.
    pub ports: Vec<PortRange>,
    /// Admit only connections kube-proxy has DNATed (Service traffic).
    pub dnat_only: bool,
    pub why: String,
    pub grant: Option<Grant>,
}

/// Every flow of the estate, in a stable order (host, chain, declaration order), indexed by
/// host: renderers ask for one host's flows many times, and a scan per question made a
/// 1,000-host render quadratic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flows {
    all: Vec<Flow>,
    by_host: HashMap<String, Range<usize>>,
}

impl Flows {
    /// Flows must come grouped by host, as `flows` produces them.
    fn new(all: Vec<Flow>) -> Self {
        let mut by_host: HashMap<String, Range<usize>> = HashMap::new();
        for (i, f) in all.iter().enumerate() {
            by_host.entry(f.host.clone()).and_modify(|r| r.end = i + 1).or_insert(i..i + 1);
        }
        Self { all, by_host }
    }

    pub fn all(&self) -> &[Flow] {
        &self.all
    }

    pub fn for_host<'a>(&'a self, host: &str) -> impl Iterator<Item = &'a Flow> + 'a {
        let range = self.by_host.get(host).cloned().unwrap_or(0..0);
        self.all[range].iter()
    }

    pub fn in_chain<'a>(&'a self, host: &str, chain: Chain) -> impl Iterator<Item = &'a Flow> + 'a {
        self.for_host(host).filter(move |f| f.chain == chain)
    }
}

/// Derive every flow the estate needs from the site.
pub fn flows(site: &Site) -> Flows {
    let mut out = Vec::new();
    for host in &site.hosts {
        let mut b = HostFlows { site, host, out: &mut out };
        b.ssh();
        if let Some(cluster) = site.cluster.as_ref().filter(|_| host.is_k3s_node()) {
            b.k3s_input(cluster);
            b.k3s_forward(cluster);
        }
        b.databases();
        b.allows();
    }
    Flows::new(out)
}

/// Where traffic from the cluster's pods arrives at `target`: a k3s node sees its own pods
/// from the pod CIDR and other nodes' pods masqueraded to their node address; any other host
/// sees node addresses when masquerade is on and pod addresses when it is off.
pub fn cluster_sources(site: &Site, target: &Host) -> Vec<Ipv4Net> {
    let Some(cluster) = &site.cluster else { return Vec::new() };
    let nodes = node_addresses(site);
    if target.is_k3s_node() {
        nodes.into_iter().chain([cluster.pod_cidr]).collect()
    } else if cluster.masquerade {
        nodes
    } else {
        vec![cluster.pod_cidr]
    }
}

/// Every k3s node's address: the `k3s_nodes` set of the firewall, and the node sources of the
/// pipeline's NetworkPolicies.
pub fn node_addresses(site: &Site) -> Vec<Ipv4Net> {
    site.k3s_nodes().map(|h| Ipv4Net::from(h.address)).collect()
}

fn resolve(site: &Site, target: &Host, clients: &[Client]) -> Vec<Ipv4Net> {
    clients
        .iter()
        .flat_map(|c| match c {
            Client::Admin => site.admin.clone(),
            Client::Cluster => cluster_sources(site, target),
            Client::Host(name) => site.host(name).map(|h| Ipv4Net::from(h.address)).into_iter().collect(),
            Client::Cidr(net) => vec![*net],
        })
        .collect()
}

/// nftables identifiers allow letters, digits and '_'.
pub fn set_ident(raw: &str) -> String {
    raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

struct HostFlows<'a> {
    site: &'a Site,
    host: &'a Host,
    out: &'a mut Vec<Flow>,
}

/// A protocol and its ports: what a flow admits once source and destination match.
struct Service {
    proto: Option<Protocol>,
    ports: Vec<PortRange>,
}

impl Service {
    fn tcp(port: u16) -> Self {
        Self { proto: Some(Protocol::Tcp), ports: vec![PortRange::single(port)] }
    }
    fn udp(port: u16) -> Self {
        Self { proto: Some(Protocol::Udp), ports: vec![PortRange::single(port)] }
    }
    fn any() -> Self {
        Self { proto: None, ports: vec![] }
    }
    fn ports(proto: Protocol, ports: &[u16]) -> Self {
        Self { proto: Some(proto), ports: ports.iter().map(|p| PortRange::single(*p)).collect() }
    }
}

impl HostFlows<'_> {
    /// A flow admitted by this host's ruleset; `to` is set for forwarded flows.
    fn flow(&self, chain: Chain, name: &str, from: AddrSet, to: Option<AddrSet>, service: Service, why: String) -> Flow {
        Flow {
            host: self.host.name.clone(),
            chain,
            name: name.into(),
            from,
            to,
            proto: service.proto,
            ports: service.ports,
            dnat_only: false,
            why,
            grant: None,
        }
    }

    fn push(&mut self, chain: Chain, name: &str, from: AddrSet, to: Option<AddrSet>, service: Service, why: String) {
        let flow = self.flow(chain, name, from, to, service, why);
        self.out.push(flow);
    }

    fn admin(&self) -> AddrSet {
        AddrSet::new("admin", self.site.admin.iter().copied())
    }
    fn nodes(&self) -> AddrSet {
        AddrSet::new("k3s_nodes", node_addresses(self.site))
    }
    fn servers(&self) -> AddrSet {
        AddrSet::new("k3s_servers", self.site.hosts_with(Role::K3sServer).map(|h| Ipv4Net::from(h.address)))
    }
    fn pods(cluster: &Cluster) -> AddrSet {
        AddrSet::new("pod_cidr", [cluster.pod_cidr])
    }

    fn ssh(&mut self) {
        let why = "SSH from the admin networks: the deploy path, never cut".to_string();
        self.push(Chain::Input, "ssh", self.admin(), None, Service::tcp(self.host.ssh_port), why);
    }

    fn k3s_input(&mut self, cluster: &Cluster) {
        if self.host.has(Role::K3sServer) {
            let vip = cluster.api_service_ip();
            let api = || Service::tcp(K3S_API_PORT);
            self.push(Chain::Input, "k3s-api", self.admin(), None, api(), "kubectl and iac apply from the admin networks".into());
            let why = format!(
                "nodes join the server; pods on other nodes reach the API VIP {vip}:443, DNATed to 6443 and masqueraded to their node address"
            );
            self.push(Chain::Input, "k3s-api", self.nodes(), None, api(), why);
            let why = format!("pods on this node reach the API VIP {vip}:443, DNATed to this node's 6443");
            self.push(Chain::Input, "k3s-api", Self::pods(cluster), None, api(), why);
            if self.site.hosts_with(Role::K3sServer).count() > 1 {
                let etcd = Service { proto: Some(Protocol::Tcp), ports: vec![ETCD_PORTS] };
                self.push(Chain::Input, "etcd", self.servers(), None, etcd, "embedded etcd peers and clients between servers".into());
            }
        }
        let kubelet = || Service::tcp(KUBELET_PORT);
        let why = "the API server and metrics-server reach the kubelet (logs, exec, metrics)".to_string();
        self.push(Chain::Input, "kubelet", self.nodes(), None, kubelet(), why);
        self.push(Chain::Input, "kubelet", Self::pods(cluster), None, kubelet(), "metrics-server on this node scrapes the kubelet".into());
        let vxlan = Service::udp(FLANNEL_VXLAN_PORT);
        self.push(Chain::Input, "flannel-vxlan", self.nodes(), None, vxlan, "flannel VXLAN overlay between node addresses".into());
    }

    fn k3s_forward(&mut self, cluster: &Cluster) {
        let pods = Self::pods(cluster);
        let why = "pods talk to each other over cni0 and flannel.1".to_string();
        self.push(Chain::Forward, "pod-to-pod", pods.clone(), Some(pods.clone()), Service::any(), why);
        let why = format!("Service traffic ({}) that kube-proxy DNATed to its endpoints", cluster.service_cidr);
        let services = Flow { dnat_only: true, ..self.flow(Chain::Forward, "services", pods.clone(), None, Service::any(), why) };
        self.out.push(services);
        let why = "pods reach the API server on a server node".to_string();
        self.push(Chain::Forward, "k3s-api", pods.clone(), Some(self.servers()), Service::tcp(K3S_API_PORT), why);
        let why = "metrics-server scrapes the kubelets of other nodes".to_string();
        self.push(Chain::Forward, "kubelet", pods.clone(), Some(self.nodes()), Service::tcp(KUBELET_PORT), why);
        if !self.site.dns_upstream.is_empty() {
            let dns = AddrSet::new("dns_upstream", self.site.dns_upstream.iter().map(|a| Ipv4Net::from(*a)));
            for proto in [Protocol::Udp, Protocol::Tcp] {
                let why = "CoreDNS forwards queries to the upstream resolver".to_string();
                self.push(Chain::Forward, "dns", pods.clone(), Some(dns.clone()), Service::ports(proto, &[DNS_PORT]), why);
            }
        }
        // One rule per database port, whatever the number of databases: the destinations are a set.
        let mut by_port: std::collections::BTreeMap<u16, Vec<(&str, Ipv4Net)>> = std::collections::BTreeMap::new();
        for db in self.site.databases.iter().filter(|d| d.clients.contains(&Client::Cluster)) {
            let Some(db_host) = self.site.host(&db.host) else { continue };
            if db_host.name != self.host.name {
                by_port.entry(db.port).or_default().push((db.name.as_str(), Ipv4Net::from(db_host.address)));
            }
        }
        let several_ports = by_port.len() > 1;
        for (port, dbs) in by_port {
            let name = if several_ports { format!("databases_{port}") } else { "databases".to_string() };
            let names: Vec<&str> = dbs.iter().map(|(n, _)| *n).collect();
            let to = AddrSet::new(name, dbs.iter().map(|(_, a)| *a));
            let why = format!("pods reach the database servers of {}", names.join(", "));
            self.push(Chain::Forward, "postgresql", pods.clone(), Some(to), Service::tcp(port), why);
        }
        for (i, e) in cluster.egress.iter().enumerate() {
            let to = AddrSet::new(format!("egress_{i}"), e.to.iter().copied());
            self.push(Chain::Forward, "egress", pods.clone(), Some(to), Service::ports(e.proto, &e.ports), e.why.clone());
        }
    }

    fn databases(&mut self) {
        for db in self.site.databases.iter().filter(|d| d.host == self.host.name) {
            let from = AddrSet::new(format!("pg_{}_clients", set_ident(&db.name)), resolve(self.site, self.host, &db.clients));
            let why = format!("clients of database `{}` (user `{}`)", db.name, db.owner);
            let grant = Some(Grant { database: db.name.clone(), user: db.owner.clone() });
            let flow = Flow { grant, ..self.flow(Chain::Input, "postgresql", from, None, Service::tcp(db.port), why) };
            self.out.push(flow);
        }
    }

    fn allows(&mut self) {
        for (i, a) in self.host.allow.iter().enumerate() {
            let from = AddrSet::new(format!("allow_{i}"), resolve(self.site, self.host, &a.from));
            self.push(Chain::Input, "allow", from, None, Service::ports(a.proto, &a.ports), a.why.clone());
        }
    }
}

/// A plain-text table of flows (optionally of one host), for people reviewing a change.
pub fn table(flows: &Flows, host: Option<&str>) -> String {
    let mut rows = vec![["HOST".to_string(), "CHAIN".into(), "FROM".into(), "TO".into(), "SERVICE".into(), "WHY".into()]];
    for f in flows.all().iter().filter(|f| host.is_none_or(|h| f.host == h)) {
        let members = |s: &AddrSet| format!("@{} ({})", s.name, s.members.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "));
        let to = match (&f.to, f.chain) {
            (Some(set), _) => members(set),
            (None, Chain::Input) => "this host".to_string(),
            (None, Chain::Forward) => "any Service endpoint".to_string(),
        };
        let proto = match f.proto {
            Some(Protocol::Tcp) => "tcp",
            Some(Protocol::Udp) => "udp",
            None => "any",
        };
        let ports: Vec<String> =
            f.ports.iter().map(|r| if r.first == r.last { r.first.to_string() } else { format!("{}-{}", r.first, r.last) }).collect();
        let mut service = if ports.is_empty() { proto.to_string() } else { format!("{proto}/{}", ports.join(",")) };
        if f.dnat_only {
            service.push_str(" (DNATed)");
        }
        let chain = match f.chain {
            Chain::Input => "input",
            Chain::Forward => "forward",
        };
        rows.push([f.host.clone(), chain.into(), members(&f.from), to, service, f.why.clone()]);
    }
    crate::table::aligned(&rows)
}
