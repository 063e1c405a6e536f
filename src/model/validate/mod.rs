//! Inventory schema → validated `Site`. Every rule that can be checked without rendering lives
//! here, and every error names file, line and key. All errors are collected, not just the first.
//!
//! Why this file is long: it is one pass over the schema that collects every error with its
//! span, and it checks the cross-references between sections (hosts a database or the
//! pipeline names, ports that collide), which a split by section would scatter. The rules about
//! single values live in `rules.rs` and `image_ref.rs`; the secrets (`[admins]`, `[secrets]`
//! and the references to them) in `secrets.rs`.

mod secrets;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::ops::Range;

use ipnet::Ipv4Net;
use toml::Spanned;

use crate::escape;
use crate::inventory::schema::{self as schema, InventoryFile, RoleName, Text};
use crate::inventory::{InventoryError, InventoryErrors, Source};

use super::ports::{ETCD_FIRST, ETCD_LAST, K3S_API_PORT, KUBELET_PORT};
use super::rules;
use super::{Allow, Client, Cluster, Connect, Database, Egress, Host, Kafka, Network, Pipeline, Role, Site};
use secrets::SecretRefs;

/// Names that would collide with directories `iac render` writes next to the host directories.
/// Host names that already mean something: `k8s` is a directory of generated/, `admin` and
/// `cluster` are the words for the admin networks and the pods in `from` and `clients`, so a
/// host of that name could never be named there.
const RESERVED_HOST_NAMES: &[(&str, &str)] = &[
    ("k8s", "iac writes generated/k8s/ itself"),
    ("admin", "in `from` and `clients` it means the admin networks"),
    ("cluster", "in `from` and `clients` it means the cluster's pods"),
];

pub fn validate(source: &Source, file: InventoryFile) -> Result<Site, InventoryErrors> {
    let mut v = Validator { source, errors: Vec::new() };
    let site = v.site(file);
    if v.errors.is_empty() { Ok(site) } else { Err(InventoryErrors(v.errors)) }
}

struct Validator<'a> {
    source: &'a Source,
    errors: Vec<InventoryError>,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let e = self.source.error(span, key, message);
        self.errors.push(e);
    }

    /// Apply a rule of `rules` to a located value.
    fn check(&mut self, value: &Text, key: &str, rule: impl Fn(&str) -> Result<(), String>) {
        if let Err(why) = rule(value.get_ref()) {
            self.error(value.span(), key, why);
        }
    }

    /// A path on a target host that lands in a systemd unit (escape::unit::path).
    fn unit_path(&mut self, value: &Text, key: &str) {
        if let Err(e) = escape::unit::path(value.get_ref()) {
            self.error(value.span(), key, format!("`{}` {e}", rules::printable(value.get_ref())));
        }
    }

    fn site(&mut self, file: InventoryFile) -> Site {
        // The site name is the `app.kubernetes.io/instance` label of every pipeline object.
        self.check(&file.site.name, "site.name", rules::dns_label);
        let networks = self.networks(&file);
        let admin = self.admin(&file.access.admin);
        let dns_upstream = self.dns_upstream(&file.dns.upstream);
        let cluster = file.cluster.as_ref().map(|c| self.cluster(c.get_ref()));
        self.no_overlaps(&file, &networks, cluster.as_ref());

        let k3s_names: BTreeSet<String> = file
            .hosts
            .get_ref()
            .iter()
            .filter(|(_, h)| h.roles.get_ref().iter().any(|r| matches!(r, RoleName::K3sServer | RoleName::K3sAgent)))
            .map(|(n, _)| n.clone())
            .collect();
        let host_names: BTreeSet<String> = file.hosts.get_ref().keys().cloned().collect();
        let refs = Refs { hosts: &host_names, k3s: &k3s_names, has_cluster: cluster.is_some() };

        let hosts = self.hosts(&file, &networks, &admin, &refs);
        self.cluster_has_server(&file, &hosts, cluster.is_some());
        let admins = self.admins(&file);
        let secrets = self.secrets(&file, &hosts, &admins);
        let secret_refs = SecretRefs { secrets: &secrets };
        let databases = self.databases(&file, &hosts, &refs, &secret_refs);
        let pipeline = file.pipeline.as_ref().map(|p| self.pipeline(p, &databases, refs.has_cluster));
        let token = file.cluster.as_ref().map(|c| self.cluster_token(c, &secret_refs)).unwrap_or_default();
        let cluster = cluster.map(|c| Cluster { egress: self.egress(&file), token, ..c });

        self.port_conflicts(&file, &hosts);
        if let (Some(c), Some(cs)) = (&cluster, &file.cluster) {
            self.pod_cidr_fits(c, cs.get_ref(), hosts.iter().filter(|h| h.is_k3s_node()).count());
            self.disabled_components(cs.get_ref(), file.pipeline.as_ref().map(|p| p.get_ref()));
        }
        let push_secrets = *file.access.push_secrets.get_ref();
        Site {
            name: file.site.name.into_inner(),
            networks,
            admin,
            dns_upstream,
            cluster,
            hosts,
            databases,
            pipeline,
            admins,
            secrets,
            push_secrets,
        }
    }

    fn cidr(&mut self, text: &Text, key: &str) -> Option<Ipv4Net> {
        let raw = text.get_ref().trim();
        let parsed = if raw.contains('/') {
            raw.parse::<Ipv4Net>().map_err(|_| ())
        } else {
            raw.parse::<Ipv4Addr>().map(Ipv4Net::from).map_err(|_| ())
        };
        match parsed {
            Ok(net) if net.trunc() != net => {
                self.error(text.span(), key, format!("`{raw}` has host bits set; did you mean `{}`?", net.trunc()));
                None
            }
            Ok(net) => Some(net),
            Err(()) if raw.contains(':') => {
                self.error(text.span(), key, format!("`{raw}` is IPv6; iac supports IPv4 networks only for now"));
                None
            }
            Err(()) => {
                self.error(text.span(), key, format!("`{raw}` is not a valid IPv4 CIDR (like 172.22.0.0/24)"));
                None
            }
        }
    }

    fn address(&mut self, text: &Text, key: &str) -> Option<Ipv4Addr> {
        let raw = text.get_ref().trim();
        match raw.parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) if raw.contains(':') => {
                self.error(text.span(), key, format!("`{raw}` is IPv6; iac supports IPv4 addresses only for now"));
                None
            }
            Err(_) => {
                self.error(text.span(), key, format!("`{raw}` is not a valid IPv4 address"));
                None
            }
        }
    }

    /// The resolvers hosts and CoreDNS forward to. k3s replaces a loopback resolver with
    /// 8.8.8.8 (DESIGN fact 10), and no resolver answers from a multicast, broadcast or
    /// unspecified address.
    fn dns_upstream(&mut self, list: &Spanned<Vec<Text>>) -> Vec<Ipv4Addr> {
        if list.get_ref().is_empty() {
            self.error(list.span(), "dns.upstream", "no resolver: hosts and CoreDNS need at least one upstream address");
        }
        let mut out = Vec::new();
        for (i, t) in list.get_ref().iter().enumerate() {
            let key = format!("dns.upstream[{i}]");
            let Some(a) = self.address(t, &key) else { continue };
            if let Some(why) = unusable_address(a) {
                self.error(
                    t.span(),
                    key,
                    format!("{a} is {why}: it cannot be a resolver (k3s would fall back to 8.8.8.8 for a loopback one)"),
                );
            }
            out.push(a);
        }
        out
    }

    /// A name that must be a DNS label, standing at `span` (a map key's own position).
    fn name(&mut self, n: &str, span: Range<usize>, key: &str, what: &str) {
        if let Err(why) = rules::dns_label(n) {
            self.error(span, key, format!("{what} name {why}"));
        }
    }

    fn networks(&mut self, file: &InventoryFile) -> Vec<Network> {
        let networks = &file.networks;
        let mut out = Vec::new();
        for (name, net) in networks {
            let key = format!("networks.{name}");
            self.name(name, file.keys.span("networks", name), &key, "network");
            if let Some(cidr) = self.cidr(&net.cidr, &format!("{key}.cidr")) {
                out.push(Network { name: name.clone(), cidr });
            }
        }
        if networks.is_empty() {
            self.error(0..0, "networks", "no network declared: every host must sit in a declared [networks.NAME]");
        }
        out
    }

    fn admin(&mut self, admin: &Spanned<Vec<Text>>) -> Vec<Ipv4Net> {
        if admin.get_ref().is_empty() {
            self.error(admin.span(), "access.admin", "no admin network: SSH, the deploy path, would be closed on every host");
        }
        admin.get_ref().iter().enumerate().filter_map(|(i, t)| self.cidr(t, &format!("access.admin[{i}]"))).collect()
    }

    fn cluster(&mut self, c: &schema::ClusterSection) -> Cluster {
        let pod = self.cidr(&c.pod_cidr, "cluster.pod_cidr");
        let svc = self.cidr(&c.service_cidr, "cluster.service_cidr");
        if let Some(old) = &c.token_file {
            self.removed(old.span(), "cluster.token_file", "token", "cluster token");
        }
        if let Some(svc) = svc {
            // The API VIP is .1 and CoreDNS .10; kube-apiserver refuses a range with more than
            // 20 host bits (prefix shorter than /12).
            if svc.prefix_len() > 28 || svc.prefix_len() < 12 {
                self.error(
                    c.service_cidr.span(),
                    "cluster.service_cidr",
                    format!("{svc} must be between a /12 and a /28 (the DNS VIP is its 10th address)"),
                );
            }
        }
        for (i, d) in c.disable.iter().enumerate() {
            if !rules::K3S_PACKAGED.contains(&d.get_ref().as_str()) {
                self.error(
                    d.span(),
                    format!("cluster.disable[{i}]"),
                    format!(
                        "`{}` is not a packaged k3s component (one of: {})",
                        rules::printable(d.get_ref()),
                        rules::K3S_PACKAGED.join(", ")
                    ),
                );
            }
        }
        Cluster {
            pod_cidr: pod.unwrap_or_default(),
            service_cidr: svc.unwrap_or_default(),
            masquerade: c.masquerade,
            token: String::new(),
            disable: c.disable.iter().map(|d| d.get_ref().clone()).collect(),
            egress: Vec::new(),
        }
    }

    fn egress(&mut self, file: &InventoryFile) -> Vec<Egress> {
        let Some(cluster) = &file.cluster else { return Vec::new() };
        let mut out = Vec::new();
        for (i, e) in cluster.get_ref().egress.iter().enumerate() {
            let key = format!("cluster.egress[{i}]");
            if e.to.get_ref().is_empty() {
                // It becomes the elements of a set, and nft has no syntax for an empty list.
                self.error(e.to.span(), format!("{key}.to"), "needs at least one destination CIDR");
            }
            let to = e.to.get_ref().iter().enumerate().filter_map(|(j, t)| self.cidr(t, &format!("{key}.to[{j}]"))).collect();
            let ports = self.ports(&e.ports, &format!("{key}.ports"));
            self.check(&e.why, &format!("{key}.why"), rules::free_text);
            out.push(Egress { to, proto: e.proto, ports, why: e.why.get_ref().clone() });
        }
        out
    }

    fn ports(&mut self, ports: &Spanned<Vec<u16>>, key: &str) -> Vec<u16> {
        if ports.get_ref().is_empty() || ports.get_ref().contains(&0) {
            self.error(ports.span(), key, "needs at least one port, each between 1 and 65535");
        }
        let mut p = ports.get_ref().clone();
        p.sort_unstable();
        p.dedup();
        p
    }

    /// Declared networks, the pod CIDR and the service CIDR must be disjoint: an overlap makes
    /// routing ambiguous and the firewall sets meaningless. Of two that overlap, the one later in
    /// the file is reported (the networks map is ordered by name, not by where they stand).
    fn no_overlaps(&mut self, file: &InventoryFile, networks: &[Network], cluster: Option<&Cluster>) {
        let mut named: Vec<(String, Ipv4Net, Range<usize>)> = networks
            .iter()
            .map(|n| {
                let span = file.networks.get(&n.name).map_or(0..0, |v| v.cidr.span());
                (format!("networks.{}.cidr", n.name), n.cidr, span)
            })
            .collect();
        if let (Some(c), Some(cs)) = (cluster, &file.cluster) {
            named.push(("cluster.pod_cidr".into(), c.pod_cidr, cs.get_ref().pod_cidr.span()));
            named.push(("cluster.service_cidr".into(), c.service_cidr, cs.get_ref().service_cidr.span()));
        }
        named.sort_by_key(|(_, _, span)| span.start);
        for (i, (ka, a, _)) in named.iter().enumerate() {
            for (kb, b, span) in &named[i + 1..] {
                if overlaps(*a, *b) {
                    self.error(span.clone(), kb.clone(), format!("{b} overlaps {ka} ({a})"));
                }
            }
        }
    }

    fn hosts(&mut self, file: &InventoryFile, networks: &[Network], admin: &[Ipv4Net], refs: &Refs) -> Vec<Host> {
        if file.hosts.get_ref().is_empty() {
            self.error(file.hosts.span(), "hosts", "no host declared");
        }
        let mut seen: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        let mut out = Vec::new();
        for (name, h) in file.hosts.get_ref() {
            let name = name.clone();
            let key = format!("hosts.{name}");
            let name_span = file.keys.span("hosts", &name);
            self.name(&name, name_span.clone(), &key, "host");
            if let Some((_, why)) = RESERVED_HOST_NAMES.iter().find(|(n, _)| *n == name) {
                self.error(name_span, &key, format!("`{name}` is reserved: {why}"));
            }
            let address = self.address(&h.address, &format!("{key}.address"));
            let mut network = String::new();
            if let Some(addr) = address {
                if let Some(other) = seen.insert(addr, name.clone()) {
                    self.error(h.address.span(), format!("{key}.address"), format!("{addr} is already the address of host `{other}`"));
                }
                // An address no host can have is reported as that alone, not also as outside
                // every network.
                match networks.iter().find(|n| n.cidr.contains(&addr)) {
                    Some(n) => network = n.name.clone(),
                    None if unusable_address(addr).is_some() => {}
                    None => self.error(h.address.span(), format!("{key}.address"), format!("{addr} is outside every declared network")),
                }
                let own = networks.iter().find(|n| n.cidr.contains(&addr) && n.cidr.prefix_len() < 31);
                let why = unusable_address(addr).or_else(|| {
                    own.and_then(|n| {
                        if addr == n.cidr.network() {
                            Some("the network address of its network")
                        } else if addr == n.cidr.broadcast() {
                            Some("the broadcast address of its network")
                        } else {
                            None
                        }
                    })
                });
                if let Some(why) = why {
                    self.error(h.address.span(), format!("{key}.address"), format!("{addr} is {why}: no host can have it"));
                }
            }
            self.check(&h.ssh_user, &format!("{key}.ssh_user"), rules::posix_user);
            if !rules::NIXOS_SYSTEMS.contains(&h.system.get_ref().as_str()) {
                self.error(
                    h.system.span(),
                    format!("{key}.system"),
                    format!(
                        "`{}` is not a NixOS system (one of: {})",
                        rules::printable(h.system.get_ref()),
                        rules::NIXOS_SYSTEMS.join(", ")
                    ),
                );
            }
            let roles = self.roles(&h.roles, &key);
            if *h.ssh_port.get_ref() == 0 {
                self.error(h.ssh_port.span(), format!("{key}.ssh_port"), "0 is not a port");
            }
            let join = h.join.as_ref().map(|j| {
                if !refs.k3s.contains(j.get_ref()) || j.get_ref() == &name {
                    self.error(j.span(), format!("{key}.join"), format!("`{}` is not another k3s node of this inventory", j.get_ref()));
                } else if !file.hosts.get_ref().get(j.get_ref()).is_some_and(|o| o.roles.get_ref().contains(&RoleName::K3sServer)) {
                    self.error(j.span(), format!("{key}.join"), format!("`{}` is not a k3s server", j.get_ref()));
                }
                if !roles.iter().any(|r| matches!(r, Role::K3sServer | Role::K3sAgent)) {
                    self.error(j.span(), format!("{key}.join"), "only k3s nodes join a server");
                }
                j.get_ref().clone()
            });
            let host_key = h.host_key.as_ref().and_then(|k| match rules::ssh_ed25519(k.get_ref()) {
                Ok(canonical) => Some(canonical),
                Err(why) => {
                    self.error(k.span(), format!("{key}.host_key"), why);
                    None
                }
            });
            let block = self.block(&h.firewall.block, admin, &key);
            let allow = self.allow(&h.firewall.allow, refs, &key);
            out.push(Host {
                name,
                address: address.unwrap_or(Ipv4Addr::UNSPECIFIED),
                network,
                roles,
                ssh_user: h.ssh_user.get_ref().clone(),
                ssh_port: *h.ssh_port.get_ref(),
                system: h.system.get_ref().clone(),
                join,
                host_key,
                block,
                allow,
            });
        }
        out
    }

    fn roles(&mut self, roles: &Spanned<Vec<RoleName>>, key: &str) -> Vec<Role> {
        let mut out: Vec<Role> = roles
            .get_ref()
            .iter()
            .map(|r| match r {
                RoleName::K3sServer => Role::K3sServer,
                RoleName::K3sAgent => Role::K3sAgent,
                RoleName::Postgresql => Role::Postgresql,
            })
            .collect();
        out.sort();
        out.dedup();
        if out.contains(&Role::K3sServer) && out.contains(&Role::K3sAgent) {
            self.error(roles.span(), format!("{key}.roles"), "a host is a k3s server or a k3s agent, not both");
        }
        out
    }

    /// A block that covers any part of an admin network would cut the deploy path.
    fn block(&mut self, block: &[Text], admin: &[Ipv4Net], key: &str) -> Vec<Ipv4Net> {
        let mut out = Vec::new();
        for (i, t) in block.iter().enumerate() {
            let k = format!("{key}.firewall.block[{i}]");
            let Some(net) = self.cidr(t, &k) else { continue };
            if let Some(a) = admin.iter().find(|a| overlaps(**a, net)) {
                self.error(t.span(), k, format!("blocking {net} would cut SSH from admin network {a}, the deploy path"));
            }
            out.push(net);
        }
        out
    }

    fn allow(&mut self, allow: &[schema::AllowSection], refs: &Refs, key: &str) -> Vec<Allow> {
        let mut out = Vec::new();
        for (i, a) in allow.iter().enumerate() {
            let k = format!("{key}.firewall.allow[{i}]");
            let from = self.clients(&a.from, refs, &format!("{k}.from"));
            let ports = self.ports(&a.ports, &format!("{k}.ports"));
            self.check(&a.why, &format!("{k}.why"), rules::free_text);
            out.push(Allow { from, proto: a.proto, ports, why: a.why.get_ref().clone() });
        }
        out
    }

    fn clients(&mut self, list: &Spanned<Vec<Text>>, refs: &Refs, key: &str) -> Vec<Client> {
        if list.get_ref().is_empty() {
            self.error(list.span(), key, "needs at least one source");
        }
        let mut out = Vec::new();
        for (i, t) in list.get_ref().iter().enumerate() {
            let k = format!("{key}[{i}]");
            let word = t.get_ref().as_str();
            let client = match word {
                "admin" => Some(Client::Admin),
                "cluster" if refs.has_cluster => Some(Client::Cluster),
                "cluster" => {
                    self.error(t.span(), k, "`cluster` needs a [cluster] section");
                    None
                }
                w if refs.hosts.contains(w) => Some(Client::Host(w.to_string())),
                w if w.chars().next().is_some_and(|c| c.is_ascii_digit()) || w.contains(':') => self.cidr(t, &k).map(Client::Cidr),
                w => {
                    self.error(t.span(), k, format!("unknown host `{w}` (expected a host name, a CIDR, `admin` or `cluster`)"));
                    None
                }
            };
            out.extend(client);
        }
        out
    }

    fn cluster_has_server(&mut self, file: &InventoryFile, hosts: &[Host], has_cluster: bool) {
        let any_k3s = hosts.iter().any(Host::is_k3s_node);
        let any_server = hosts.iter().any(|h| h.has(Role::K3sServer));
        if has_cluster && !any_server {
            let span = file.cluster.as_ref().map_or(0..0, Spanned::span);
            self.error(span, "cluster", "the [cluster] has no host with role `k3s-server`");
        }
        if any_k3s && !has_cluster {
            // Reported at each k3s host's own roles: that is what needs the section.
            for h in hosts.iter().filter(|h| h.is_k3s_node()) {
                let span = file.hosts.get_ref().get(&h.name).map_or(0..0, |s| s.roles.span());
                let role = if h.has(Role::K3sServer) { "k3s-server" } else { "k3s-agent" };
                self.error(
                    span,
                    format!("hosts.{}.roles", h.name),
                    format!("role `{role}` needs a [cluster] section (pod and service CIDRs, the token), and there is none"),
                );
            }
        }
    }

    fn databases(&mut self, file: &InventoryFile, hosts: &[Host], refs: &Refs, secrets: &SecretRefs) -> Vec<Database> {
        let mut out = Vec::new();
        for (name, d) in &file.databases {
            let name = name.clone();
            let key = format!("databases.{name}");
            if let Err(why) = rules::sql_identifier(&name) {
                self.error(file.keys.span("databases", &name), &key, format!("database {why}"));
            }
            self.owner(&d.owner, &format!("{key}.owner"));
            if *d.port.get_ref() == 0 {
                self.error(d.port.span(), format!("{key}.port"), "0 is not a port");
            }
            match hosts.iter().find(|h| &h.name == d.host.get_ref()) {
                None => self.error(d.host.span(), format!("{key}.host"), format!("unknown host `{}`", d.host.get_ref())),
                Some(h) if !h.has(Role::Postgresql) => {
                    self.error(d.host.span(), format!("{key}.host"), format!("host `{}` has no `postgresql` role", h.name))
                }
                Some(_) => {}
            }
            if let Some(old) = &d.password_file {
                self.removed(old.span(), &format!("{key}.password_file"), "password", "owner's password");
            }
            let password = self.secret_ref(d.password.as_ref(), &format!("{key}.password"), file.keys.span("databases", &name), secrets);
            let clients = self.clients(&d.clients, refs, &format!("{key}.clients"));
            out.push(Database {
                name,
                host: d.host.get_ref().clone(),
                port: *d.port.get_ref(),
                owner: d.owner.get_ref().clone(),
                password,
                clients,
            });
        }
        out
    }

    /// The owner role: a SQL identifier, not the superuser the NixOS module's peer map needs,
    /// and not in the `pg_` namespace PostgreSQL reserves for its own roles.
    fn owner(&mut self, owner: &Text, key: &str) {
        let o = owner.get_ref();
        if let Err(why) = rules::sql_identifier(o) {
            self.error(owner.span(), key, format!("owner {why}"));
        } else if o == "postgres" || o.starts_with("pg_") {
            self.error(
                owner.span(),
                key,
                format!("`{o}` is reserved by PostgreSQL (the superuser or a `pg_` role); name the database's own role"),
            );
        }
    }

    /// Two services on one host cannot listen on one TCP port: SSH, PostgreSQL (one server per
    /// host, so one port for all its databases) and the k3s API, etcd and kubelet ports.
    fn port_conflicts(&mut self, file: &InventoryFile, hosts: &[Host]) {
        let several_servers = hosts.iter().filter(|h| h.has(Role::K3sServer)).count() > 1;
        for h in hosts {
            let Some(section) = file.hosts.get_ref().get(&h.name) else { continue };
            let mut taken: Vec<(u16, String)> = Vec::new();
            if h.has(Role::K3sServer) {
                taken.push((K3S_API_PORT, "the k3s API".into()));
                if several_servers {
                    taken.push((ETCD_FIRST, "embedded etcd".into()));
                    taken.push((ETCD_LAST, "embedded etcd".into()));
                }
            }
            if h.is_k3s_node() {
                taken.push((KUBELET_PORT, "the kubelet".into()));
            }
            let mut pg: Option<(u16, String)> = None;
            for (name, d) in file.databases.iter().filter(|(_, d)| d.host.get_ref() == &h.name) {
                let port = *d.port.get_ref();
                let key = format!("databases.{name}.port");
                match &pg {
                    Some((p, first)) if *p != port => self.error(
                        d.port.span(),
                        key,
                        format!("{} runs one PostgreSQL server, already on port {p} for database `{first}`", h.name),
                    ),
                    Some(_) => {}
                    None => {
                        if let Some((_, what)) = taken.iter().find(|(t, _)| *t == port) {
                            self.error(d.port.span(), key, format!("port {port} on {} is already {what}'s", h.name));
                        }
                        pg = Some((port, name.clone()));
                    }
                }
            }
            taken.extend(pg.map(|(p, n)| (p, format!("PostgreSQL (database `{n}`)"))));
            if let Some((_, what)) = taken.iter().find(|(t, _)| *t == h.ssh_port) {
                self.error(
                    section.ssh_port.span(),
                    format!("hosts.{}.ssh_port", h.name),
                    format!("port {} is already {what}'s", h.ssh_port),
                );
            }
        }
    }

    /// k3s gives every node a /24 of the pod CIDR (kube-controller-manager's
    /// `--node-cidr-mask-size`, 24 for IPv4): a smaller pod CIDR, or one with fewer /24s than
    /// k3s nodes, leaves nodes without pod addresses.
    fn pod_cidr_fits(&mut self, c: &Cluster, cs: &schema::ClusterSection, nodes: usize) {
        let prefix = c.pod_cidr.prefix_len();
        let blocks = if prefix > 24 { 0 } else { 1usize << (24 - prefix).min(24) };
        if blocks < nodes.max(1) {
            self.error(
                cs.pod_cidr.span(),
                "cluster.pod_cidr",
                format!(
                    "{} holds {blocks} /24 node ranges but the inventory has {nodes} k3s nodes (k3s gives each node a /24)",
                    c.pod_cidr
                ),
            );
        }
    }

    /// The pipeline needs CoreDNS (Kafka's and Connect's names) and, with the default storage
    /// class, k3s's local-path provisioner.
    fn disabled_components(&mut self, cs: &schema::ClusterSection, pipeline: Option<&schema::PipelineSection>) {
        let Some(p) = pipeline else { return };
        for (i, d) in cs.disable.iter().enumerate() {
            let why = match d.get_ref().as_str() {
                "coredns" => Some("the pipeline's pods find Kafka and Connect by DNS name"),
                "local-storage" if p.kafka.storage_class.get_ref() == "local-path" => {
                    Some("pipeline.kafka.storage_class is `local-path`, which this component provides")
                }
                _ => None,
            };
            if let Some(why) = why {
                self.error(d.span(), format!("cluster.disable[{i}]"), format!("cannot disable `{}`: {why}", d.get_ref()));
            }
        }
    }

    fn pipeline(&mut self, p: &Spanned<schema::PipelineSection>, databases: &[Database], has_cluster: bool) -> Pipeline {
        let s = p.get_ref();
        if !has_cluster {
            self.error(p.span(), "pipeline", "the pipeline runs on k3s: it needs a [cluster] section");
        }
        match databases.iter().find(|d| &d.name == s.database.get_ref()) {
            None => self.error(s.database.span(), "pipeline.database", format!("unknown database `{}`", s.database.get_ref())),
            // Kafka Connect writes from a pod: without `cluster` among the clients, the firewall
            // and pg_hba of the database host would turn it away.
            Some(d) if has_cluster && !d.clients.contains(&Client::Cluster) => self.error(
                s.database.span(),
                "pipeline.database",
                format!("database `{}` does not list `cluster` in its clients, so Kafka Connect could not reach it", d.name),
            ),
            Some(_) => {}
        }
        self.check(&s.namespace, "pipeline.namespace", rules::dns_label);
        self.check(&s.table, "pipeline.table", rules::sql_identifier);
        self.check(&s.topic, "pipeline.topic", rules::topic);
        self.check(&s.password_env, "pipeline.password_env", rules::env_name);
        let k = &s.kafka;
        if let Err(why) = rules::brokers(*k.replicas.get_ref()) {
            self.error(k.replicas.span(), "pipeline.kafka.replicas", why);
        }
        self.check(&k.cluster_id, "pipeline.kafka.cluster_id", rules::cluster_id);
        self.check(&k.storage, "pipeline.kafka.storage", rules::quantity);
        self.check(&k.storage_class, "pipeline.kafka.storage_class", rules::dns_subdomain);
        let c = &s.connect;
        self.check(&c.connector, "pipeline.connect.connector", rules::dns_label);
        for (key, image) in
            [("pipeline.kafka.image", &k.image), ("pipeline.connect.image", &c.image), ("pipeline.connect.curl_image", &c.curl_image)]
        {
            self.check(image, key, rules::pinned_image);
        }
        if let Some(plugin) = &c.plugin {
            self.error(
                plugin.span(),
                "pipeline.connect.plugin",
                "is no longer used: Kafka Connect runs `pipeline.connect.image`, which already carries the JDBC sink \
                 and the PostgreSQL driver (nothing is downloaded at start); delete this section",
            );
        }
        Pipeline {
            namespace: s.namespace.get_ref().clone(),
            database: s.database.get_ref().clone(),
            topic: s.topic.get_ref().clone(),
            table: s.table.get_ref().clone(),
            password_env: s.password_env.get_ref().clone(),
            kafka: Kafka {
                image: k.image.get_ref().clone(),
                replicas: *k.replicas.get_ref(),
                storage: k.storage.get_ref().clone(),
                storage_class: k.storage_class.get_ref().clone(),
                cluster_id: k.cluster_id.get_ref().clone(),
            },
            connect: Connect {
                image: c.image.get_ref().clone(),
                connector: c.connector.get_ref().clone(),
                insert_mode: c.insert_mode,
                curl_image: c.curl_image.get_ref().clone(),
            },
            producer_messages: s.producer.messages,
        }
    }
}

struct Refs<'a> {
    hosts: &'a BTreeSet<String>,
    k3s: &'a BTreeSet<String>,
    has_cluster: bool,
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Why no host (or resolver) can have `a`, if none can: loopback, multicast, the limited
/// broadcast or the unspecified address.
fn unusable_address(a: Ipv4Addr) -> Option<&'static str> {
    if a.is_loopback() {
        Some("a loopback address")
    } else if a.is_multicast() {
        Some("a multicast address")
    } else if a.is_broadcast() {
        Some("the broadcast address")
    } else if a.is_unspecified() {
        Some("the unspecified address")
    } else {
        None
    }
}
