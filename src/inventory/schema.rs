//! The TOML schema of `hosts/inventory.toml`, exactly as a user writes it.
//!
//! Every struct denies unknown fields so a typo is an error, not a silently ignored key.
//! Every value a validation rule can reject is `Spanned`, so its error names its own line and
//! column (issue 15: errors borrowed a neighbour's position). Map keys stay plain `String`s so
//! that serde_path_to_error can name them in the dotted key of a schema error; their positions
//! come from a second pass over the text (`KeySpans`).
//!
//! Why this file is long: it is the whole schema, every section a user can write with its
//! defaults, in one place, so the file reads as the reference of the inventory format.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string together with where it stood in the file.
pub type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    /// Where the names of networks, hosts and databases stand (filled by `load::parse`).
    #[serde(skip)]
    pub keys: KeySpans,
    pub site: SiteSection,
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkSection>,
    pub access: AccessSection,
    pub dns: DnsSection,
    pub cluster: Option<Spanned<ClusterSection>>,
    pub hosts: Spanned<BTreeMap<String, HostSection>>,
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseSection>,
    pub pipeline: Option<Spanned<PipelineSection>>,
    /// People who may decrypt every secret (`iac secrets`): their public keys.
    #[serde(default)]
    pub admins: BTreeMap<String, AdminSection>,
    /// Every secret the estate needs, and who consumes it (docs/secrets.md).
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    pub name: Text,
}

/// Positions of map keys (`[hosts.alphard]`): `(table, key)` → span of the key.
#[derive(Debug, Default, Clone)]
pub struct KeySpans(pub BTreeMap<(String, String), std::ops::Range<usize>>);

impl KeySpans {
    /// The span of `key` in `table`; an empty span (line 1) if the text did not have it.
    pub fn span(&self, table: &str, key: &str) -> std::ops::Range<usize> {
        self.0.get(&(table.to_string(), key.to_string())).cloned().unwrap_or(0..0)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    pub cidr: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// CIDRs allowed to SSH into every host (the deploy path), reach the k3s API and the databases.
    pub admin: Spanned<Vec<Text>>,
    /// Whether `iac deploy` may write decrypted secrets over SSH to hosts without a
    /// `host_key` (colmena's model). `false`: every consumer host must declare its host key, and
    /// no secret leaves an admin's machine in clear.
    #[serde(default = "default_true_spanned")]
    pub push_secrets: Spanned<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    pub upstream: Spanned<Vec<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub pod_cidr: Text,
    pub service_cidr: Text,
    /// Whether pod traffic leaving the cluster is masqueraded to the node address (k3s default).
    #[serde(default = "default_true")]
    pub masquerade: bool,
    /// The declared secret (`[secrets.NAME]`) that holds the cluster join token; each k3s node
    /// must be one of its consumers, and reads it at the path declared there.
    pub token: Option<Text>,
    /// Removed: the path now comes from the secret's consumer entry. Kept in the schema to say so.
    pub token_file: Option<Spanned<toml::Value>>,
    /// Packaged k3s components to switch off (`--disable`), e.g. traefik.
    #[serde(default)]
    pub disable: Vec<Text>,
    /// Destinations outside the cluster that pods may reach besides DNS and declared databases.
    #[serde(default)]
    pub egress: Vec<EgressSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSection {
    pub to: Spanned<Vec<Text>>,
    pub proto: Protocol,
    pub ports: Spanned<Vec<u16>>,
    pub why: Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    pub address: Text,
    pub roles: Spanned<Vec<RoleName>>,
    #[serde(default = "default_ssh_user")]
    pub ssh_user: Text,
    #[serde(default = "default_ssh_port")]
    pub ssh_port: Spanned<u16>,
    #[serde(default = "default_system")]
    pub system: Text,
    /// For a k3s agent or additional server: the server it joins (defaults to the first server).
    pub join: Option<Text>,
    /// The host's SSH host key (`ssh-keyscan -t ed25519 HOST`): secrets it consumes are
    /// encrypted to it and decrypted on the host at activation (agenix's model).
    pub host_key: Option<Text>,
    #[serde(default)]
    pub firewall: FirewallSection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum RoleName {
    #[serde(rename = "k3s-server")]
    K3sServer,
    #[serde(rename = "k3s-agent")]
    K3sAgent,
    #[serde(rename = "postgresql")]
    Postgresql,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallSection {
    /// Sources dropped before any accept. Must not cover an admin network.
    #[serde(default)]
    pub block: Vec<Text>,
    /// Extra services this host offers.
    #[serde(default)]
    pub allow: Vec<AllowSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowSection {
    /// CIDRs, host names, or the words `admin` / `cluster`.
    pub from: Spanned<Vec<Text>>,
    pub proto: Protocol,
    pub ports: Spanned<Vec<u16>>,
    pub why: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub host: Text,
    #[serde(default = "default_pg_port")]
    pub port: Spanned<u16>,
    pub owner: Text,
    /// The declared secret (`[secrets.NAME]`) that holds the owner's password; the database
    /// host must be one of its consumers. The pipeline's Kubernetes Secret carries the same value.
    pub password: Option<Text>,
    /// Removed: the path now comes from the secret's consumer entry. Kept in the schema to say so.
    pub password_file: Option<Spanned<toml::Value>>,
    /// Who may connect: `cluster` (the k3s pods), `admin`, host names or CIDRs.
    pub clients: Spanned<Vec<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    #[serde(default = "default_namespace")]
    pub namespace: Text,
    pub database: Text,
    pub topic: Text,
    pub table: Text,
    /// Where `iac apply` reads the database password when it creates the Kubernetes Secret.
    #[serde(default = "default_password_env")]
    pub password_env: Text,
    #[serde(default)]
    pub kafka: KafkaSection,
    #[serde(default)]
    pub connect: ConnectSection,
    #[serde(default)]
    pub producer: ProducerSection,
}

/// `[pipeline.kafka]`. Every value validation inspects keeps its position; a defaulted value has
/// an empty span, and its errors point at the `[pipeline]` section instead.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    #[serde(default = "default_kafka_image")]
    pub image: Text,
    /// Brokers (each also a KRaft controller): 1 (a development estate) or 3 and more.
    #[serde(default = "default_one")]
    pub replicas: Spanned<u16>,
    #[serde(default = "default_kafka_storage")]
    pub storage: Text,
    #[serde(default = "default_storage_class")]
    pub storage_class: Text,
    /// A stable KRaft cluster id: 16 bytes in URL-safe base64 without padding (22 characters).
    #[serde(default = "default_cluster_id")]
    pub cluster_id: Text,
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            image: default_kafka_image(),
            replicas: default_one(),
            storage: default_kafka_storage(),
            storage_class: default_storage_class(),
            cluster_id: default_cluster_id(),
        }
    }
}

/// `[pipeline.connect]`: Kafka Connect runs an image that already carries the JDBC sink and its
/// PostgreSQL driver (Debezium's Connect image), so nothing is downloaded at start.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectSection {
    /// `NAME:TAG`, or `NAME:TAG@sha256:DIGEST` to pin the exact image.
    #[serde(default = "default_connect_image")]
    pub image: Text,
    #[serde(default = "default_connector_name")]
    pub connector: Text,
    /// `upsert` (default) makes a replay after a crash overwrite the same rows (the primary key
    /// is topic/partition/offset); `insert` fails the task on such a replay.
    #[serde(default)]
    pub insert_mode: InsertMode,
    /// A small image with `sh` and `curl`: the registration Job for `kubectl apply -k` users.
    #[serde(default = "default_curl_image")]
    pub curl_image: Text,
    /// Removed: the plugin download of earlier versions. Kept in the schema only to say so
    /// clearly instead of "unknown field".
    pub plugin: Option<Spanned<toml::Value>>,
}

impl Default for ConnectSection {
    fn default() -> Self {
        Self {
            image: default_connect_image(),
            connector: default_connector_name(),
            insert_mode: InsertMode::default(),
            curl_image: default_curl_image(),
            plugin: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InsertMode {
    Insert,
    #[default]
    Upsert,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSection {
    #[serde(default = "default_messages")]
    pub messages: u32,
}

impl Default for ProducerSection {
    fn default() -> Self {
        Self { messages: default_messages() }
    }
}

/// `[admins.NAME]`: one person's public key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// An age recipient (`age1…`, from `age-keygen`) or an OpenSSH `ssh-ed25519 …` public key.
    pub key: Text,
}

/// `[secrets.NAME]`: a secret, what kind of value it holds and who consumes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSection {
    /// What `iac secrets init` generates: `password`, `k3s-token`; `opaque` is never generated
    /// (`iac secrets set NAME`).
    pub kind: Spanned<SecretKind>,
    /// Hosts that get the value in a file.
    #[serde(default)]
    pub hosts: Vec<SecretHostSection>,
    /// Kubernetes Secrets `iac apply` creates from it, in the pipeline's namespace.
    #[serde(default)]
    pub kubernetes: Vec<SecretKubernetesSection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretKind {
    Password,
    K3sToken,
    Opaque,
}

/// One host that reads the secret from a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretHostSection {
    pub host: Text,
    /// Default: `/run/secrets/NAME` on a host with a `host_key` (a tmpfs, decrypted at every
    /// boot), `/var/lib/secrets/NAME` otherwise (pushed by `iac deploy`, kept across reboots).
    pub path: Option<Text>,
    #[serde(default = "default_root")]
    pub owner: Text,
    #[serde(default = "default_root")]
    pub group: Text,
    /// Octal, as chmod takes it; nothing for others.
    #[serde(default = "default_mode")]
    pub mode: Text,
}

/// One key of a Kubernetes Secret.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKubernetesSection {
    pub secret: Text,
    pub key: Text,
}

fn default_root() -> Text {
    unplaced("root")
}
fn default_mode() -> Text {
    unplaced("0400")
}
fn default_true_spanned() -> Spanned<bool> {
    Spanned::new(0..0, true)
}
fn default_true() -> bool {
    true
}
fn default_one() -> Spanned<u16> {
    Spanned::new(0..0, 1)
}
/// A value the file did not set: no position.
fn unplaced(value: &str) -> Text {
    Spanned::new(0..0, value.to_string())
}
fn default_ssh_user() -> Text {
    Spanned::new(0..0, "root".into())
}
fn default_ssh_port() -> Spanned<u16> {
    Spanned::new(0..0, 22)
}
fn default_system() -> Text {
    Spanned::new(0..0, "x86_64-linux".into())
}
fn default_pg_port() -> Spanned<u16> {
    Spanned::new(0..0, 5432)
}
fn default_namespace() -> Text {
    Spanned::new(0..0, "kafka-pipeline".into())
}
fn default_password_env() -> Text {
    Spanned::new(0..0, "IAC_PG_PASSWORD".into())
}
fn default_kafka_image() -> Text {
    unplaced("apache/kafka:4.1.1")
}
fn default_kafka_storage() -> Text {
    unplaced("5Gi")
}
fn default_storage_class() -> Text {
    unplaced("local-path")
}
fn default_cluster_id() -> Text {
    unplaced("euNKiNAFMRq_9pSVJThoTA")
}
fn default_connect_image() -> Text {
    unplaced("quay.io/debezium/connect:3.4.3.Final")
}
fn default_connector_name() -> Text {
    unplaced("postgres-sink")
}
fn default_curl_image() -> Text {
    unplaced("curlimages/curl:8.11.1")
}
fn default_messages() -> u32 {
    10
}
