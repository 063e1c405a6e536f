//! Kubernetes manifests for the Kafka → Kafka Connect → PostgreSQL pipeline, one file per
//! workload. Every object is a k8s-openapi type serialized by serde-saphyr; the only text built
//! here by hand is the Connect worker's `.properties` file and the container shell scripts.
//!
//! The names below are a contract with `iac apply` (it waits on and talks to these objects).

mod connect;
mod connector;
mod kafka;
mod kustomization;
mod namespace;
mod network_policy;
mod producer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Capabilities, EmptyDirVolumeSource, PodSecurityContext, ResourceRequirements, SeccompProfile, SecurityContext, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Serialize;

use crate::model::{Pipeline, Site};

pub use connect::{CONFIG_MAP as CONNECT_CONFIG_MAP, OFFSET_FLUSH_INTERVAL_MS, Setting};
pub use connector::{CONNECTOR_CLASS, KAFKA_PK_COLUMNS, connector_config, dlq_topic_of};
pub use kafka::KAFKA_BIN;
pub use namespace::POD_SECURITY_LEVEL;

/// The Connect worker's settings for a site's pipeline (empty without one), with the worker
/// property each becomes: for tests and docs that check the image's variable mapping.
pub fn worker_settings(site: &Site) -> Result<Vec<Setting>, K8sError> {
    let Some(p) = &site.pipeline else { return Ok(Vec::new()) };
    Ok(connect::worker_settings(&Ctx::new(site, p)?))
}

/// The StatefulSet, and the prefix of its pods' names (`kafka-0`, ...).
pub const KAFKA: &str = "kafka";
/// Headless Service that gives every broker pod a stable DNS name, Ready or not.
pub const KAFKA_HEADLESS: &str = "kafka-headless";
/// Client Service. Never `kafka`: its service-link variables (`KAFKA_PORT`, ...) would become
/// broker properties in the apache/kafka image.
pub const KAFKA_BOOTSTRAP: &str = "kafka-bootstrap";
/// Deployment, Service and REST host of Kafka Connect.
pub const CONNECT: &str = "kafka-connect";
/// Created at apply time (never rendered): holds the database password under `SECRET_KEY`.
/// The model owns the names: validation refuses a declared Kubernetes consumer that would
/// collide with them.
pub const SECRET: &str = crate::model::PIPELINE_SECRET;
pub const SECRET_KEY: &str = crate::model::PIPELINE_SECRET_KEY;
/// The Connect worker reads the password from this variable (`${env:PG_PASSWORD}`).
pub const PASSWORD_VAR: &str = "PG_PASSWORD";
pub const REGISTER_JOB: &str = "register-connector";
pub const PRODUCER_JOB: &str = "demo-producer";
/// k3s's default `--cluster-domain`.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
pub const KAFKA_PORT: i32 = 9092;
pub const CONTROLLER_PORT: i32 = 9093;
pub const CONNECT_PORT: i32 = 8083;
/// `appuser` in the apache/kafka image (its Dockerfile: `adduser ... appuser`, uid 1000).
pub const KAFKA_UID: i64 = 1000;
/// `kafka` in Debezium's images (`debezium/container-images`, `kafka/3.4/Dockerfile`:
/// `useradd -u 1001 -r -g kafka ... kafka`). The image names its user by name (`USER kafka`), so
/// the kubelet cannot check `runAsNonRoot` unless the pod names the number.
pub const CONNECT_UID: i64 = 1001;
/// Pod template annotation: the sha256 of the Connect worker settings (the ConfigMap the pod
/// reads through `envFrom`). A changed ConfigMap alone would not restart the pod; a changed
/// annotation does.
pub const ANNOTATION_WORKER_CONFIG: &str = "iac/worker-config-sha256";
/// Pod template annotation `iac apply` stamps with the `pipeline-postgres` Secret's
/// resourceVersion, so a rotated password restarts Connect (the worker reads it at start).
pub const ANNOTATION_SECRET_VERSION: &str = "iac/secret-version";
/// Deployment annotation naming the connector this Connect runs for iac: when the inventory
/// renames it, `iac apply` reads the old name here and deletes that connector from Connect.
pub const ANNOTATION_CONNECTOR: &str = "iac/connector";
/// Labels every rendered object carries; `iac apply` prunes by them.
pub const LABEL_PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "iac-pipeline");
pub const LABEL_MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "iac");
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";

/// The directory of the rendered tree that holds the manifests, and its files: the contract
/// `iac apply` (src/cluster) reads them by.
pub const DIR: &str = "k8s";
pub const FILE_NAMESPACE: &str = "namespace.yaml";
pub const FILE_NETWORK_POLICY: &str = "network-policy.yaml";
pub const FILE_KAFKA: &str = "kafka.yaml";
pub const FILE_CONNECT: &str = "connect.yaml";
pub const FILE_CONNECTOR: &str = "connector.json";
pub const FILE_REGISTER: &str = "register-connector.yaml";
pub const FILE_PRODUCER: &str = "producer.yaml";
pub const FILE_KUSTOMIZATION: &str = "kustomization.yaml";

/// A failure to serialize a rendered object.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("rendering {file}: {source}")]
    Yaml { file: &'static str, source: serde_saphyr::ser::Error },
    #[error("rendering {file}: {source}")]
    Json { file: &'static str, source: serde_json::Error },
    #[error("rendering k8s manifests: {0}")]
    Model(String),
}

/// The workload a label or object belongs to (`app.kubernetes.io/component`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Namespace,
    Kafka,
    Connect,
    RegisterConnector,
    Producer,
    NetworkPolicy,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Namespace => "namespace",
            Component::Kafka => "kafka",
            Component::Connect => "connect",
            Component::RegisterConnector => "register-connector",
            Component::Producer => "producer",
            Component::NetworkPolicy => "network-policy",
        }
    }

    /// `app.kubernetes.io/name`: the application the object runs.
    fn app_name(self) -> &'static str {
        match self {
            Component::Namespace => "iac-pipeline",
            Component::Kafka => KAFKA,
            Component::Connect => CONNECT,
            Component::RegisterConnector => REGISTER_JOB,
            Component::Producer => PRODUCER_JOB,
            Component::NetworkPolicy => "iac-pipeline",
        }
    }
}

/// What every renderer of this module reads: the pipeline and the facts derived from the site.
pub(crate) struct Ctx<'a> {
    pub site: &'a Site,
    pub p: &'a Pipeline,
    /// The database host's address and port, from the inventory.
    pub db_address: std::net::Ipv4Addr,
    pub db_port: u16,
    pub db_owner: String,
}

impl<'a> Ctx<'a> {
    fn new(site: &'a Site, p: &'a Pipeline) -> Result<Self, K8sError> {
        let db = site.database(&p.database).ok_or_else(|| K8sError::Model(format!("unknown database `{}`", p.database)))?;
        let host = site.host(&db.host).ok_or_else(|| K8sError::Model(format!("unknown host `{}`", db.host)))?;
        Ok(Self { site, p, db_address: host.address, db_port: db.port, db_owner: db.owner.clone() })
    }

    pub fn ns(&self) -> &str {
        &self.p.namespace
    }

    /// The k3s nodes' addresses, as the firewall's `k3s_nodes` set has them.
    pub fn node_addresses(&self) -> Vec<ipnet::Ipv4Net> {
        crate::policy::node_addresses(self.site)
    }

    /// Node names of the k3s servers: the inventory host names, which the generated NixOS
    /// module makes the hostnames and so k3s's node names (`kubernetes.io/hostname`).
    pub fn server_nodes(&self) -> Vec<String> {
        self.site.hosts_with(crate::model::Role::K3sServer).map(|h| h.name.clone()).collect()
    }

    pub fn k3s_node_count(&self) -> usize {
        self.site.k3s_nodes().count()
    }

    /// `NAME.NAMESPACE.svc.cluster.local`: a Service's name as any pod resolves it.
    pub fn service_host(&self, service: &str) -> String {
        format!("{service}.{}.svc.{CLUSTER_DOMAIN}", self.p.namespace)
    }

    pub fn bootstrap_servers(&self) -> String {
        format!("{}:{KAFKA_PORT}", self.service_host(KAFKA_BOOTSTRAP))
    }

    pub fn connect_url(&self) -> String {
        format!("http://{}:{CONNECT_PORT}", self.service_host(CONNECT))
    }

    /// Replication factor of every topic, internal or not: up to three copies.
    pub fn replication_factor(&self) -> u16 {
        self.p.kafka.replicas.min(3)
    }

    /// `min.insync.replicas`: two once there are three copies, so one broker may be down; one
    /// below that, so a single broker (or one of two) keeps accepting writes.
    pub fn min_insync_replicas(&self) -> u16 {
        if self.replication_factor() >= 3 { 2 } else { 1 }
    }

    pub fn labels(&self, c: Component) -> BTreeMap<String, String> {
        let mut l = self.selector_labels(c);
        l.insert(LABEL_PART_OF.0.into(), LABEL_PART_OF.1.into());
        l.insert(LABEL_MANAGED_BY.0.into(), LABEL_MANAGED_BY.1.into());
        l
    }

    /// The stable subset used in selectors (selectors of a StatefulSet or Deployment are
    /// immutable, so nothing here may change between renders of the same inventory).
    pub fn selector_labels(&self, c: Component) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), c.app_name().to_string()),
            (LABEL_INSTANCE.to_string(), self.site.name.clone()),
            ("app.kubernetes.io/component".to_string(), c.as_str().to_string()),
        ])
    }

    pub fn selector(&self, c: Component) -> LabelSelector {
        LabelSelector { match_labels: Some(self.selector_labels(c)), ..Default::default() }
    }

    pub fn meta(&self, name: &str, c: Component) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(self.p.namespace.clone()),
            labels: Some(self.labels(c)),
            ..Default::default()
        }
    }

    pub fn pod_meta(&self, c: Component) -> ObjectMeta {
        ObjectMeta { labels: Some(self.labels(c)), ..Default::default() }
    }
}

/// Render every file under `DIR` (`k8s/`).
pub fn render(site: &Site, pipeline: &Pipeline) -> Result<Vec<(PathBuf, String)>, K8sError> {
    let ctx = Ctx::new(site, pipeline)?;
    let mut files = vec![
        (FILE_NAMESPACE, namespace::render(&ctx)?),
        (FILE_NETWORK_POLICY, network_policy::render(&ctx)?),
        (FILE_KAFKA, kafka::render(&ctx)?),
        (FILE_CONNECT, connect::render(&ctx)?),
        (FILE_CONNECTOR, connector::render(&ctx)?),
        (FILE_REGISTER, connector::register_job(&ctx)?),
        (FILE_PRODUCER, producer::render(&ctx)?),
    ];
    let resources: Vec<&str> = files.iter().map(|(f, _)| *f).filter(|f| f.ends_with(".yaml")).collect();
    let kustomization = kustomization::render(&resources)?;
    files.push((FILE_KUSTOMIZATION, kustomization));
    Ok(files.into_iter().map(|(f, text)| (Path::new(DIR).join(f), text)).collect())
}

/// Several objects of different kinds as one multi-document YAML file. A handful live for the
/// length of one render, so their differing sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum Object {
    Namespace(k8s_openapi::api::core::v1::Namespace),
    Service(k8s_openapi::api::core::v1::Service),
    ConfigMap(k8s_openapi::api::core::v1::ConfigMap),
    StatefulSet(k8s_openapi::api::apps::v1::StatefulSet),
    Deployment(k8s_openapi::api::apps::v1::Deployment),
    Job(k8s_openapi::api::batch::v1::Job),
    NetworkPolicy(k8s_openapi::api::networking::v1::NetworkPolicy),
    PodDisruptionBudget(k8s_openapi::api::policy::v1::PodDisruptionBudget),
}

pub(crate) fn yaml(file: &'static str, objects: &[Object]) -> Result<String, K8sError> {
    let mut out = String::from("# Generated by `iac render` from the inventory. Do not edit.\n");
    let docs = serde_saphyr::to_string_multiple(objects).map_err(|source| K8sError::Yaml { file, source })?;
    out.push_str(&docs);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

pub(crate) fn quantity(q: &str) -> Quantity {
    Quantity(q.to_string())
}

pub(crate) fn resources(cpu_request: &str, memory: &str, cpu_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".into(), quantity(cpu_request)), ("memory".into(), quantity(memory))])),
        limits: Some(BTreeMap::from([("cpu".into(), quantity(cpu_limit)), ("memory".into(), quantity(memory))])),
        ..Default::default()
    }
}

/// Every pod runs as its image's unprivileged user (by number, so the kubelet can check
/// `runAsNonRoot`), with the runtime's seccomp profile: with `container_security`, what the
/// Pod Security `restricted` level the namespace enforces requires.
pub(crate) fn pod_security(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}

/// No privilege escalation and no capabilities. `read_only_root` is false only for the JVM
/// containers: the apache/kafka image's scripts write their config and logs under /opt/kafka,
/// and Debezium's entrypoint writes the worker properties under /kafka/config.
pub(crate) fn container_security(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        read_only_root_filesystem: Some(read_only_root),
        run_as_non_root: Some(true),
        ..Default::default()
    }
}

pub(crate) fn empty_dir(name: &str) -> Volume {
    Volume { name: name.into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() }
}

pub(crate) fn env(name: &str, value: impl Into<String>) -> k8s_openapi::api::core::v1::EnvVar {
    k8s_openapi::api::core::v1::EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() }
}

pub(crate) fn env_field(name: &str, field_path: &str) -> k8s_openapi::api::core::v1::EnvVar {
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector};
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: field_path.into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
