//! The validated estate: plain data with every address parsed and every reference resolved.
//! Nothing here knows about nftables, Nix or YAML; renderers read it, nothing writes back.

pub mod image_ref;
pub mod ports;
pub mod rules;
mod secrets;
mod targets;
mod validate;

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

pub use crate::inventory::schema::{InsertMode, Protocol, SecretKind};
pub use secrets::{Delivery, PIPELINE_SECRET, PIPELINE_SECRET_KEY, Recipient, RecipientOwner, SecretFile, default_path};
pub use targets::{Targets, UnknownHost};
pub use validate::validate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub name: String,
    pub networks: Vec<Network>,
    /// Sources allowed to SSH, reach the k3s API and the databases.
    pub admin: Vec<Ipv4Net>,
    pub dns_upstream: Vec<Ipv4Addr>,
    pub cluster: Option<Cluster>,
    /// Sorted by name.
    pub hosts: Vec<Host>,
    pub databases: Vec<Database>,
    pub pipeline: Option<Pipeline>,
    /// Sorted by name.
    pub admins: Vec<Admin>,
    /// Sorted by name.
    pub secrets: Vec<Secret>,
    /// `iac deploy` may write decrypted secrets to hosts without a host key.
    pub push_secrets: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub cidr: Ipv4Net,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub pod_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    pub masquerade: bool,
    /// The declared secret that holds the join token (each node reads it at its own path).
    pub token: String,
    pub disable: Vec<String>,
    pub egress: Vec<Egress>,
}

impl Cluster {
    /// The `kubernetes` Service VIP: the first address of the service CIDR.
    pub fn api_service_ip(&self) -> Ipv4Addr {
        nth_host(self.service_cidr, 1)
    }

    /// CoreDNS's Service VIP as k3s assigns it: the tenth address of the service CIDR.
    pub fn dns_service_ip(&self) -> Ipv4Addr {
        nth_host(self.service_cidr, 10)
    }
}

fn nth_host(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).saturating_add(n))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    pub to: Vec<Ipv4Net>,
    pub proto: Protocol,
    pub ports: Vec<u16>,
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    K3sServer,
    K3sAgent,
    Postgresql,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub address: Ipv4Addr,
    /// Name of the declared network that contains `address`.
    pub network: String,
    pub roles: Vec<Role>,
    pub ssh_user: String,
    pub ssh_port: u16,
    pub system: String,
    /// For k3s nodes other than the first server: the server they join.
    pub join: Option<String>,
    /// `ssh-ed25519 BASE64` (no comment): the host decrypts its secrets with this key.
    pub host_key: Option<String>,
    pub block: Vec<Ipv4Net>,
    pub allow: Vec<Allow>,
}

impl Host {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_k3s_node(&self) -> bool {
        self.has(Role::K3sServer) || self.has(Role::K3sAgent)
    }
}

/// A service a host offers beyond the derived ones, declared in its `firewall.allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    pub from: Vec<Client>,
    pub proto: Protocol,
    pub ports: Vec<u16>,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub owner: String,
    /// The declared secret that holds the owner's password.
    pub password: String,
    pub clients: Vec<Client>,
}

/// Someone who may decrypt every secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub name: String,
    /// `age1…` or `ssh-ed25519 BASE64` (no comment).
    pub key: String,
}

/// A secret of the estate: its kind and every consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub name: String,
    pub kind: SecretKind,
    pub hosts: Vec<SecretConsumer>,
    pub kubernetes: Vec<KubeSecret>,
}

/// A host that reads a secret from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretConsumer {
    pub host: String,
    pub path: String,
    pub owner: String,
    pub group: String,
    /// Permission bits, never any for others.
    pub mode: u32,
}

/// A key of a Kubernetes Secret in the pipeline's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeSecret {
    pub secret: String,
    pub key: String,
}

/// A source of traffic as the inventory names it. `Cluster` (the k3s pods) resolves to node
/// addresses or the pod CIDR depending on where the traffic arrives: see `policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    Cluster,
    Admin,
    Host(String),
    Cidr(Ipv4Net),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub namespace: String,
    pub database: String,
    pub topic: String,
    pub table: String,
    pub password_env: String,
    pub kafka: Kafka,
    pub connect: Connect,
    pub producer_messages: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kafka {
    /// `replicas` is 1 (a development estate: no redundancy) or at least 3 (a KRaft quorum
    /// that survives the loss of one voter); validation refuses 2.
    pub image: String,
    pub replicas: u16,
    pub storage: String,
    pub storage_class: String,
    pub cluster_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// An image that carries the JDBC sink connector and the PostgreSQL driver.
    pub image: String,
    pub connector: String,
    pub insert_mode: InsertMode,
    pub curl_image: String,
}

impl Site {
    /// `hosts` is sorted by name (validation builds it from a sorted map), so a lookup is a
    /// binary search: renderers look hosts up per node and per database.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.binary_search_by(|h| h.name.as_str().cmp(name)).ok().map(|i| &self.hosts[i])
    }

    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.iter().find(|d| d.name == name)
    }

    pub fn hosts_with(&self, role: Role) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.has(role))
    }

    pub fn k3s_nodes(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.is_k3s_node())
    }

    /// The server every other node joins: the first k3s server by name.
    pub fn first_server(&self) -> Option<&Host> {
        self.hosts_with(Role::K3sServer).next()
    }
}
