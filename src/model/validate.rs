//! Inventory schema → validated `Site`. Every rule that can be checked without rendering lives
//! here, and every error names file, line and key. All errors are collected, not just the first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::ops::Range;

use ipnet::Ipv4Net;
use toml::Spanned;

use crate::error::{InventoryError, InventoryErrors};
use crate::inventory::Source;
use crate::inventory::schema::{self as schema, InventoryFile, RoleName, Text};

use super::{Allow, Client, Cluster, Connect, Database, Egress, Host, Kafka, Network, Pipeline, Role, Site};

/// Names that would collide with directories `iac render` writes next to the host directories.
const RESERVED_HOST_NAMES: &[&str] = &["k8s"];

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

    fn site(&mut self, file: InventoryFile) -> Site {
        let networks = self.networks(&file.networks);
        let admin = self.admin(&file.access.admin);
        let dns_upstream = self.addresses(&file.dns.upstream, "dns.upstream");
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
        let databases = self.databases(&file, &hosts, &refs);
        let pipeline = file.pipeline.as_ref().map(|p| self.pipeline(p, &databases, refs.has_cluster));
        let cluster = cluster.map(|c| Cluster { egress: self.egress(&file), ..c });

        Site { name: file.site.name, networks, admin, dns_upstream, cluster, hosts, databases, pipeline }
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

    fn addresses(&mut self, list: &Spanned<Vec<Text>>, key: &str) -> Vec<Ipv4Addr> {
        list.get_ref().iter().enumerate().filter_map(|(i, t)| self.address(t, &format!("{key}[{i}]"))).collect()
    }

    /// `span` points at the entry the name belongs to (map keys carry no position).
    fn name(&mut self, n: &str, span: Range<usize>, key: &str, what: &str) {
        let ok = !n.is_empty()
            && n.len() <= 63
            && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !n.starts_with('-')
            && !n.ends_with('-');
        if !ok {
            self.error(span, key, format!("{what} name `{n}` must be a DNS label: lowercase letters, digits and '-'"));
        }
    }

    fn networks(&mut self, networks: &BTreeMap<String, schema::NetworkSection>) -> Vec<Network> {
        let mut out = Vec::new();
        for (name, net) in networks {
            let key = format!("networks.{name}");
            self.name(name, net.cidr.span(), &key, "network");
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
        if !c.token_file.starts_with('/') {
            self.error(c.pod_cidr.span(), "cluster.token_file", "must be an absolute path on the k3s nodes");
        }
        Cluster {
            pod_cidr: pod.unwrap_or_default(),
            service_cidr: svc.unwrap_or_default(),
            masquerade: c.masquerade,
            token_file: c.token_file.clone(),
            disable: c.disable.clone(),
            egress: Vec::new(),
        }
    }

    fn egress(&mut self, file: &InventoryFile) -> Vec<Egress> {
        let Some(cluster) = &file.cluster else { return Vec::new() };
        let mut out = Vec::new();
        for (i, e) in cluster.get_ref().egress.iter().enumerate() {
            let key = format!("cluster.egress[{i}]");
            let to = e.to.get_ref().iter().enumerate().filter_map(|(j, t)| self.cidr(t, &format!("{key}.to[{j}]"))).collect();
            let ports = self.ports(&e.ports, &format!("{key}.ports"));
            out.push(Egress { to, proto: e.proto, ports, why: e.why.clone() });
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
    /// routing ambiguous and the firewall sets meaningless.
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
            self.name(&name, h.address.span(), &key, "host");
            if RESERVED_HOST_NAMES.contains(&name.as_str()) {
                self.error(h.address.span(), &key, format!("`{name}` is reserved: iac writes generated/{name}/ itself"));
            }
            let address = self.address(&h.address, &format!("{key}.address"));
            let mut network = String::new();
            if let Some(addr) = address {
                if let Some(other) = seen.insert(addr, name.clone()) {
                    self.error(h.address.span(), format!("{key}.address"), format!("{addr} is already the address of host `{other}`"));
                }
                match networks.iter().find(|n| n.cidr.contains(&addr)) {
                    Some(n) => network = n.name.clone(),
                    None => self.error(h.address.span(), format!("{key}.address"), format!("{addr} is outside every declared network")),
                }
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
            let block = self.block(&h.firewall.block, admin, &key);
            let allow = self.allow(&h.firewall.allow, refs, &key);
            out.push(Host {
                name,
                address: address.unwrap_or(Ipv4Addr::UNSPECIFIED),
                network,
                roles,
                ssh_user: h.ssh_user.clone(),
                ssh_port: *h.ssh_port.get_ref(),
                system: h.system.clone(),
                join,
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
            out.push(Allow { from, proto: a.proto, ports, why: a.why.clone() });
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
            self.error(span, "hosts", "the [cluster] has no host with role `k3s-server`");
        }
        if any_k3s && !has_cluster {
            self.error(file.hosts.span(), "cluster", "hosts have k3s roles but there is no [cluster] section");
        }
    }

    fn databases(&mut self, file: &InventoryFile, hosts: &[Host], refs: &Refs) -> Vec<Database> {
        let mut out = Vec::new();
        for (name, d) in &file.databases {
            let name = name.clone();
            let key = format!("databases.{name}");
            self.sql_identifier(&name, d.host.span(), &key, "database");
            self.sql_identifier(&d.owner, d.host.span(), &format!("{key}.owner"), "owner");
            match hosts.iter().find(|h| &h.name == d.host.get_ref()) {
                None => self.error(d.host.span(), format!("{key}.host"), format!("unknown host `{}`", d.host.get_ref())),
                Some(h) if !h.has(Role::Postgresql) => {
                    self.error(d.host.span(), format!("{key}.host"), format!("host `{}` has no `postgresql` role", h.name))
                }
                Some(_) => {}
            }
            if !d.password_file.starts_with('/') {
                self.error(d.host.span(), format!("{key}.password_file"), "must be an absolute path on the database host");
            }
            let clients = self.clients(&d.clients, refs, &format!("{key}.clients"));
            out.push(Database {
                name,
                host: d.host.get_ref().clone(),
                port: d.port,
                owner: d.owner.clone(),
                password_file: d.password_file.clone(),
                clients,
            });
        }
        out
    }

    /// Database and role names go into pg_hba lines and SQL; keep them plain identifiers.
    fn sql_identifier(&mut self, name: &str, span: Range<usize>, key: &str, what: &str) {
        let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && name.len() <= 63;
        if !ok {
            self.error(span, key, format!("{what} `{name}` must be a lowercase SQL identifier (a-z, 0-9, _)"));
        }
    }

    fn pipeline(&mut self, p: &Spanned<schema::PipelineSection>, databases: &[Database], has_cluster: bool) -> Pipeline {
        let s = p.get_ref();
        // A defaulted value has no position of its own: its errors point at `[pipeline]`.
        let at = |span: Range<usize>| if span.is_empty() { p.span() } else { span };
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
        self.name(&s.namespace, p.span(), "pipeline.namespace", "namespace");
        self.sql_identifier(&s.table, p.span(), "pipeline.table", "table");
        if !is_topic_name(&s.topic) {
            self.error(p.span(), "pipeline.topic", format!("`{}` is not a valid Kafka topic name", s.topic));
        }
        let k = &s.kafka;
        if let Err(why) = check_brokers(*k.replicas.get_ref()) {
            self.error(at(k.replicas.span()), "pipeline.kafka.replicas", why);
        }
        if let Err(why) = check_cluster_id(k.cluster_id.get_ref()) {
            self.error(at(k.cluster_id.span()), "pipeline.kafka.cluster_id", format!("`{}` {why}", k.cluster_id.get_ref()));
        }
        if !is_quantity(k.storage.get_ref()) {
            self.error(at(k.storage.span()), "pipeline.kafka.storage", format!("`{}` is not a storage size like 5Gi", k.storage.get_ref()));
        }
        let c = &s.connect;
        self.name(c.connector.get_ref(), at(c.connector.span()), "pipeline.connect.connector", "connector");
        for (key, image) in
            [("pipeline.kafka.image", &k.image), ("pipeline.connect.image", &c.image), ("pipeline.connect.curl_image", &c.curl_image)]
        {
            if let Err(why) = check_image(image.get_ref()) {
                self.error(at(image.span()), key, format!("`{}` {why}", image.get_ref()));
            }
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
            namespace: s.namespace.clone(),
            database: s.database.get_ref().clone(),
            topic: s.topic.clone(),
            table: s.table.clone(),
            password_env: s.password_env.clone(),
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

/// Every broker is also a KRaft controller, and a quorum of n voters survives the loss of
/// (n - 1) / 2 of them. One broker is the bundled development estate and makes no claim to
/// survive anything; two brokers cost twice as much and still stop at the first loss, because a
/// quorum of two needs both voters.
fn check_brokers(n: u16) -> Result<(), String> {
    match n {
        0 => Err("needs at least one broker".into()),
        2 => Err("2 brokers cannot keep a KRaft quorum through the loss of one (a quorum of 2 voters needs both): \
                  use 1 (a development estate without redundancy) or 3 or more"
            .into()),
        _ => Ok(()),
    }
}

/// A container image pinned by tag, optionally by digest too: `[REGISTRY/]NAME:TAG[@sha256:HEX]`.
/// `latest` or no tag at all would let the image change under the same manifest.
fn check_image(image: &str) -> Result<(), &'static str> {
    let (name_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let hex = d.strip_prefix("sha256:").ok_or("has a digest that is not sha256:<64 hex digits>")?;
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
            return Err("has a digest that is not sha256:<64 lowercase hex digits>");
        }
    }
    // The tag follows the last ':' after the last '/' (a registry may carry a :port).
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let Some(colon) = name_tag[last_slash..].rfind(':').map(|i| i + last_slash) else {
        return Err("names no tag: pin the image by tag (NAME:TAG, optionally @sha256:DIGEST)");
    };
    let (name, tag) = (&name_tag[..colon], &name_tag[colon + 1..]);
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !tag_ok {
        return Err("has an invalid tag (letters, digits, '_', '.', '-'; at most 128)");
    }
    if tag == "latest" {
        return Err("is pinned to `latest`, which changes under the same manifest: name a released tag");
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // A first component with '.' or ':' (or `localhost`) is a registry host[:port].
    if parts.len() > 1 && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = host.split_once(':').unwrap_or((host, "0"));
        let host_ok = !h.is_empty()
            && h.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            && port.parse::<u16>().is_ok();
        if !host_ok {
            return Err("has an invalid registry host");
        }
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
    };
    if parts.is_empty() || !parts.iter().all(|c| component_ok(c)) {
        return Err("is not an image reference (lowercase path components of letters, digits, '.', '_', '-')");
    }
    Ok(())
}

/// Kafka's rule: 1-249 characters of letters, digits, '.', '_' and '-', and not `.` or `..`.
fn is_topic_name(t: &str) -> bool {
    !t.is_empty() && t.len() <= 249 && t != "." && t != ".." && t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// A KRaft cluster id is a UUID in URL-safe base64 without padding: 22 characters that decode to
/// 16 bytes (Kafka's `Uuid.fromString`) and encode back to the same text. The last character
/// carries only 2 of the 128 bits, so most 22-character strings decode (Java's decoder ignores
/// the 4 spare bits) but do not round-trip: the broker would record a different id than the one
/// the manifest names. The all-zero and metadata-topic ids are reserved, and an id starting with
/// '-' reads as an option to `kafka-storage.sh format -t` (Kafka's own generator avoids them).
fn check_cluster_id(id: &str) -> Result<(), String> {
    use base64::Engine as _;
    use base64::alphabet::URL_SAFE;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const HOW: &str = "`kafka-storage.sh random-uuid` prints one";
    // Decodes as leniently as java.util.Base64's URL decoder (spare bits ignored), encodes
    // canonically, as Kafka's Uuid.toString does.
    let lenient = GeneralPurpose::new(
        &URL_SAFE,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    if id.len() != 22 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("is not a KRaft cluster id: 22 characters of URL-safe base64 ({HOW})"));
    }
    let bytes = lenient.decode(id).map_err(|e| format!("is not URL-safe base64: {e} ({HOW})"))?;
    let canonical = lenient.encode(&bytes);
    if bytes.len() != 16 || canonical != id {
        return Err(format!("does not round-trip: its 16 bytes encode as `{canonical}`; use that, or a fresh id ({HOW})"));
    }
    if id == "AAAAAAAAAAAAAAAAAAAAAA" || id == "AAAAAAAAAAAAAAAAAAAAAQ" {
        return Err("is a reserved id".into());
    }
    if id.starts_with('-') {
        return Err(format!("starts with '-', which kafka-storage.sh would read as an option ({HOW})"));
    }
    Ok(())
}

/// A Kubernetes quantity for a volume size: a plain or decimal number with an optional binary
/// or decimal suffix (`5Gi`, `1.5Gi`, `500M`).
fn is_quantity(q: &str) -> bool {
    let number = q.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &q[number.len()..];
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    !whole.is_empty()
        && whole.chars().all(|c| c.is_ascii_digit())
        && fraction.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
        && ["", "Ki", "Mi", "Gi", "Ti", "Pi", "k", "M", "G", "T", "P"].contains(&suffix)
}

struct Refs<'a> {
    hosts: &'a BTreeSet<String>,
    k3s: &'a BTreeSet<String>,
    has_cluster: bool,
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids() {
        assert!(check_cluster_id("euNKiNAFMRq_9pSVJThoTA").is_ok());
        assert!(check_cluster_id("5L6g3nShT-eMCtK--X86sw").is_ok());
        assert!(check_cluster_id("short").is_err());
        assert!(check_cluster_id("iacKRaftCluster000000+").is_err(), "standard base64, not URL-safe");
        assert!(check_cluster_id("AAAAAAAAAAAAAAAAAAAAAA").is_err(), "reserved");
        // The id this project shipped before: it decodes, but to bytes that encode differently.
        let e = check_cluster_id("iacKRaftCluster0000001").unwrap_err();
        assert!(e.contains("does not round-trip") && e.contains("iacKRaftCluster000000w"), "{e}");
        assert!(check_cluster_id("iacKRaftCluster000000w").is_ok());
        assert!(check_cluster_id("-acKRaftCluster000000w").unwrap_err().contains("starts with '-'"));
    }

    /// The last character of a canonical id carries 2 bits: only A, Q, g and w round-trip.
    #[test]
    fn cluster_id_round_trip_is_exactly_the_canonical_encoding() {
        use base64::Engine as _;
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let ok: String = alphabet.chars().filter(|c| check_cluster_id(&format!("euNKiNAFMRq_9pSVJThoT{c}")).is_ok()).collect();
        assert_eq!(ok, "AQgw");
        for seed in 0u8..=255 {
            let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([seed.wrapping_mul(37) | 1; 16]);
            assert!(check_cluster_id(&id).is_ok() || id.starts_with('-'), "{id}");
        }
    }

    #[test]
    fn broker_counts() {
        assert!(check_brokers(1).is_ok());
        assert!(check_brokers(0).is_err());
        assert!(check_brokers(2).unwrap_err().contains("cannot keep a KRaft quorum"));
        for n in 3..=9 {
            assert!(check_brokers(n).is_ok());
        }
    }

    #[test]
    fn image_references() {
        for ok in [
            "apache/kafka:4.1.1",
            "quay.io/debezium/connect:3.4.3.Final",
            "registry.example:5000/team/connect:1.0",
            "localhost/connect:dev",
            "curlimages/curl:8.11.1",
            &format!("quay.io/debezium/connect:3.4.3.Final@sha256:{}", "ab".repeat(32)),
        ] {
            assert!(check_image(ok).is_ok(), "{ok}: {:?}", check_image(ok));
        }
        for (bad, why) in [
            ("apache/kafka", "names no tag"),
            ("registry.example:5000/connect", "names no tag"),
            ("apache/kafka:latest", "latest"),
            ("Apache/kafka:4.1.1", "not an image reference"),
            ("apache/kafka:4.1.1@sha256:abc", "digest"),
            ("apache/kafka:4.1.1@md5:abc", "digest"),
            ("apache//kafka:4", "not an image reference"),
            ("apache/kafka:-x", "invalid tag"),
            ("apache/kafka :4", "not an image reference"),
        ] {
            let e = check_image(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn quantities() {
        for ok in ["5Gi", "500Mi", "10G", "1073741824", "1.5Gi"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "5 Gi", "5GB", "-5Gi", "1.Gi", ".5Gi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn topic_names() {
        assert!(is_topic_name("demo-messages"));
        assert!(is_topic_name("a.b_c"));
        for bad in ["", ".", "..", "a b", "a/b", &"x".repeat(250)] {
            assert!(!is_topic_name(bad), "{bad}");
        }
    }
}
