//! The simulated estate: which namespaces exist, their addresses and links (`plan`, pure: it
//! only names things), and the `ip`/`bridge`/`nft` commands that build it (`build`).
//!
//! ```text
//!   admin    alkaid    alphard ── cni0 ── pod@alphard
//!     │        │        │  └ flannel.1 ═╗ VXLAN id 1, udp 8472
//!     │        │        │  ┌ flannel.1 ═╝
//!     │        │      hamal ─── cni0 ── pod@hamal
//!   ══╧════════╧════════╧════════╧═══ bridge per declared network (namespace sw<N>)
//!            │
//!          router ─┬─ dns (the upstream resolver, own point-to-point segment)
//!                  └─ untrusted (own segment, or on the LAN when a LAN address no flow admits exists)
//! ```
//!
//! See docs/simulate.md for why each piece is there.

//! The types here are the plan's vocabulary; `plan` fills them in, `build` makes them real.

mod build;
mod plan;

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::netns::Netns;

pub use build::build;
pub use plan::{STANDIN_TABLES, plan, standin_ruleset};

/// Port of the stand-in workload every pod serves (TCP and UDP).
pub const POD_PORT: u16 = 8080;
/// The router's side of every point-to-point link to an off-LAN segment.
pub const ROUTER_P2P: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);
/// Where the untrusted host sits when every LAN address is admitted somewhere: TEST-NET-1
/// (RFC 5737), never routed anywhere.
pub const UNTRUSTED_FALLBACK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 66);
/// The VXLAN network identifier flannel uses.
pub const VXLAN_ID: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// An inventory host; `node` indexes `Topology::nodes` for k3s nodes.
    Host { name: String, node: Option<usize> },
    /// The stand-in pod behind node `node`.
    Pod { node: usize },
    /// An admin workstation (an address in the first admin network).
    Admin,
    /// A host no flow admits.
    Untrusted,
    /// An upstream resolver.
    Dns,
    /// A source that only an inventory-declared set names (`allow`, database clients).
    Client,
    /// A destination outside the estate that a forward flow names (`egress`).
    Remote,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    /// On LAN `lan`'s bridge, `addr/prefix`, default route via the router.
    Lan { lan: usize, prefix: u8 },
    /// Its own point-to-point segment behind the router (`addr/32`).
    Routed,
    /// On node `node`'s cni0 bridge.
    Pod { node: usize },
}

/// A namespace that sends or answers probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub label: String,
    pub ns: Netns,
    pub role: Role,
    pub addr: Ipv4Addr,
    pub attach: Attach,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lan {
    pub name: String,
    /// The namespace that holds the bridge.
    pub ns: Netns,
    pub cidr: Ipv4Net,
    pub router_addr: Ipv4Addr,
}

/// A k3s node as flannel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub host: String,
    pub addr: Ipv4Addr,
    /// Index into `Topology::members` of the node's host namespace.
    pub member: usize,
    /// This node's /24 of the pod CIDR (flannel hands them out in join order).
    pub subnet: Ipv4Net,
    /// flannel.1's MAC address.
    pub mac: [u8; 6],
}

impl Node {
    pub fn cni_gateway(&self) -> Ipv4Addr {
        nth(self.subnet, 1)
    }
    pub fn pod_addr(&self) -> Ipv4Addr {
        nth(self.subnet, 2)
    }
    /// flannel.1's own address: the subnet's network address.
    pub fn vtep_addr(&self) -> Ipv4Addr {
        self.subnet.network()
    }
    pub fn mac_text(&self) -> String {
        self.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPlan {
    pub pod_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    pub api_vip: Ipv4Addr,
    /// The API endpoint the VIP is DNATed to (first server), port 6443.
    pub api_server: Ipv4Addr,
    pub masquerade: bool,
    /// Every Service the kube-proxy stand-in DNATs, the API first.
    pub services: Vec<Service>,
}

/// A ClusterIP Service with one endpoint, as kube-proxy rewrites it in prerouting/output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub vip: Ipv4Addr,
    pub proto: crate::model::Protocol,
    pub port: u16,
    pub endpoint: Ipv4Addr,
    pub endpoint_port: u16,
}

impl ClusterPlan {
    /// kube-proxy's rewrite of a destination, if it is a Service.
    pub fn service(&self, vip: Ipv4Addr, proto: crate::model::Protocol, port: u16) -> Option<&Service> {
        self.services.iter().find(|s| s.vip == vip && s.proto == proto && s.port == port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub prefix: String,
    pub router: Netns,
    pub lans: Vec<Lan>,
    pub nodes: Vec<Node>,
    pub members: Vec<Member>,
    pub cluster: Option<ClusterPlan>,
}

impl Topology {
    pub fn host_member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| matches!(&m.role, Role::Host { name: n, .. } if n == name))
    }
    pub fn untrusted(&self) -> Option<usize> {
        self.members.iter().position(|m| m.role == Role::Untrusted)
    }
    pub fn namespace_count(&self) -> usize {
        1 + self.lans.len() + self.members.len()
    }
}

fn nth(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).saturating_add(n))
}
