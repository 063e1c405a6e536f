//! Kafka Connect in distributed mode, from Debezium's Connect image, which already carries the
//! JDBC sink connector and its PostgreSQL driver: nothing is downloaded when the pod starts.
//!
//! Sources this file depends on (read, not copied):
//! - `debezium/container-images`, `connect/3.4/Dockerfile`: `docker-maven-download debezium jdbc`
//!   unpacks `debezium-connector-jdbc-<version>-plugin.tar.gz` into `$KAFKA_CONNECT_PLUGINS_DIR`
//!   (`/kafka/connect`, `connect-base/3.4/Dockerfile`), which is also `CONNECT_PLUGIN_PATH`.
//!   The plugin bundles `org.postgresql:postgresql` (a compile dependency in
//!   `debezium/debezium`, `debezium-connector-jdbc/pom.xml`, packed by its connector assembly).
//! - `connect-base/3.4/docker-entrypoint.sh`: `start` maps `BOOTSTRAP_SERVERS`, `GROUP_ID`,
//!   `CONFIG_STORAGE_TOPIC`, `OFFSET_STORAGE_TOPIC`, `STATUS_STORAGE_TOPIC`, `KEY_CONVERTER`,
//!   `VALUE_CONVERTER`, `OFFSET_FLUSH_INTERVAL_MS`, `ADVERTISED_HOST_NAME` and `HEAP_OPTS` to
//!   `CONNECT_*` variables (and `KAFKA_HEAP_OPTS`), then writes every `CONNECT_X_Y=v` into
//!   `/kafka/config/connect-distributed.properties` as `x.y=v` (lowercased, `_` → `.`), editing
//!   the line Kafka's sample file already has or appending one, and runs
//!   `connect-distributed.sh` on it. Its sed uses `@` as delimiter ("no config names or values
//!   may contain an '@' char"), so no value here may hold `@`, `&`, `\` or a newline (checked in
//!   the tests). It exits if `BOOTSTRAP_SERVERS`, `GROUP_ID`, `CONFIG_STORAGE_TOPIC` or
//!   `OFFSET_STORAGE_TOPIC` is unset.
//! - `kafka/3.4/Dockerfile`: Kafka 4.1.1 (so `GET /health`, Kafka ≥ 3.9, and the offsets API of
//!   KIP-875, Kafka ≥ 3.6, that `iac pipeline status` reads); user `kafka`, uid 1001, owning
//!   `/kafka` (the entrypoint writes under `/kafka/config`, `/kafka/data`, `/kafka/logs`).
//!
//! The worker properties are Kafka Connect's own (apache/kafka,
//! `connect/runtime/.../DistributedConfig.java` and `WorkerConfig.java`; the config provider
//! `clients/.../config/provider/EnvVarConfigProvider.java`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, NodeAffinity,
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, PodTemplateSpec, Probe, SecretKeySelector, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::{
    ANNOTATION_CONNECTOR, ANNOTATION_WORKER_CONFIG, CONNECT, CONNECT_PORT, CONNECT_UID, Component, Ctx, FILE_CONNECT, K8sError, Object,
    PASSWORD_VAR, SECRET, SECRET_KEY, container_security, env, env_field, pod_security, resources, yaml,
};

pub const CONFIG_MAP: &str = "kafka-connect-config";
pub const GROUP_ID: &str = "iac-connect";
pub const INTERNAL_TOPICS: [&str; 3] = ["connect-configs", "connect-offsets", "connect-status"];
/// How often the sink commits its consumer offsets (`offset.flush.interval.ms`, which sink
/// tasks use as their commit interval): `iac pipeline status` compares two samples of the
/// committed offsets taken further apart than this.
pub const OFFSET_FLUSH_INTERVAL_MS: u64 = 5000;

/// One worker setting: the variable the image's entrypoint reads, its value, and the worker
/// property it ends up as.
pub struct Setting {
    pub var: &'static str,
    pub value: String,
    pub property: &'static str,
}

fn setting(var: &'static str, property: &'static str, value: impl Into<String>) -> Setting {
    Setting { var, value: value.into(), property }
}

pub(super) fn render(ctx: &Ctx) -> Result<String, K8sError> {
    yaml(FILE_CONNECT, &[Object::ConfigMap(config_map(ctx)), Object::Service(service(ctx)), Object::Deployment(deployment(ctx))])
}

/// The worker's settings, in the entrypoint's variables. Every property is one Kafka Connect
/// documents; the variable is the one `docker-entrypoint.sh` maps to it.
pub fn worker_settings(ctx: &Ctx) -> Vec<Setting> {
    let rf = ctx.replication_factor().to_string();
    let [configs, offsets, status] = INTERNAL_TOPICS;
    let json = "org.apache.kafka.connect.json.JsonConverter";
    vec![
        // Required by the entrypoint (it exits without them) and by DistributedConfig.
        setting("BOOTSTRAP_SERVERS", "bootstrap.servers", ctx.bootstrap_servers()),
        setting("GROUP_ID", "group.id", GROUP_ID),
        setting("CONFIG_STORAGE_TOPIC", "config.storage.topic", configs),
        setting("OFFSET_STORAGE_TOPIC", "offset.storage.topic", offsets),
        setting("STATUS_STORAGE_TOPIC", "status.storage.topic", status),
        // Kafka's sample worker file sets these three to 1; the entrypoint keeps the sample's
        // line unless a CONNECT_ variable replaces it.
        setting("CONNECT_CONFIG_STORAGE_REPLICATION_FACTOR", "config.storage.replication.factor", rf.clone()),
        setting("CONNECT_OFFSET_STORAGE_REPLICATION_FACTOR", "offset.storage.replication.factor", rf.clone()),
        setting("CONNECT_STATUS_STORAGE_REPLICATION_FACTOR", "status.storage.replication.factor", rf),
        // The entrypoint defaults both to JsonConverter already; said here so the envelope
        // contract with the producer ({"schema", "payload"}) is visible in one place.
        setting("KEY_CONVERTER", "key.converter", json),
        setting("VALUE_CONVERTER", "value.converter", json),
        setting("CONNECT_KEY_CONVERTER_SCHEMAS_ENABLE", "key.converter.schemas.enable", "true"),
        setting("CONNECT_VALUE_CONVERTER_SCHEMAS_ENABLE", "value.converter.schemas.enable", "true"),
        // The entrypoint's default is 60000; the sink commits its offsets at this interval.
        setting("OFFSET_FLUSH_INTERVAL_MS", "offset.flush.interval.ms", OFFSET_FLUSH_INTERVAL_MS.to_string()),
        setting("CONNECT_LISTENERS", "listeners", format!("http://0.0.0.0:{CONNECT_PORT}")),
        // `${env:PG_PASSWORD}` in the connector config is resolved inside the worker, from its
        // environment; the allowlist keeps every other variable out of reach of a config.
        setting("CONNECT_CONFIG_PROVIDERS", "config.providers", "env"),
        setting(
            "CONNECT_CONFIG_PROVIDERS_ENV_CLASS",
            "config.providers.env.class",
            "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
        ),
        setting(
            "CONNECT_CONFIG_PROVIDERS_ENV_PARAM_ALLOWLIST_PATTERN",
            "config.providers.env.param.allowlist.pattern",
            format!("^{PASSWORD_VAR}$"),
        ),
        // The entrypoint turns HEAP_OPTS into KAFKA_HEAP_OPTS. The image loads every Debezium
        // plugin's classes at start, so the heap leaves room below the 1Gi limit for metaspace.
        setting("HEAP_OPTS", "KAFKA_HEAP_OPTS", "-Xms256m -Xmx512m"),
    ]
}

/// sha256 of the worker settings as the pod reads them: the pod template carries it, so a
/// changed setting rolls the Deployment even though the pod spec itself did not change.
pub(super) fn worker_config_hash(ctx: &Ctx) -> String {
    let mut h = Sha256::new();
    for s in worker_settings(ctx) {
        h.update(s.var.as_bytes());
        h.update(b"=");
        h.update(s.value.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn config_map(ctx: &Ctx) -> ConfigMap {
    ConfigMap {
        metadata: ctx.meta(CONFIG_MAP, Component::Connect),
        data: Some(worker_settings(ctx).into_iter().map(|s| (s.var.to_string(), s.value)).collect()),
        ..Default::default()
    }
}

fn service(ctx: &Ctx) -> Service {
    Service {
        metadata: ctx.meta(CONNECT, Component::Connect),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(ctx.selector_labels(Component::Connect)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: CONNECT_PORT,
                target_port: Some(IntOrString::String("http".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// On a k3s server, so that the API server's service proxy (how `iac` reaches the REST API)
/// connects from the same node, which kube-router always admits (see `network_policy.rs`).
fn on_a_server(ctx: &Ctx) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "kubernetes.io/hostname".into(),
                        operator: "In".into(),
                        values: Some(ctx.server_nodes()),
                    }]),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn deployment(ctx: &Ctx) -> Deployment {
    let password = EnvVar {
        name: PASSWORD_VAR.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: SECRET.into(), key: SECRET_KEY.into(), optional: Some(false) }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let health = || HTTPGetAction { path: Some("/health".into()), port: IntOrString::String("http".into()), ..Default::default() };
    let worker = Container {
        name: CONNECT.into(),
        image: Some(ctx.p.connect.image.clone()),
        // The image's entrypoint and its `start` command (its Dockerfile's ENTRYPOINT and CMD),
        // named so that nothing depends on what a later tag defaults to.
        command: Some(vec!["/docker-entrypoint.sh".into()]),
        args: Some(vec!["start".into()]),
        ports: Some(vec![ContainerPort { name: Some("http".into()), container_port: CONNECT_PORT, ..Default::default() }]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: CONFIG_MAP.into(), optional: Some(false) }),
            ..Default::default()
        }]),
        // Other workers forward REST calls to the leader at this address (`rest.advertised.host.name`);
        // a pod's hostname does not resolve, its IP does.
        env: Some(vec![env_field("ADVERTISED_HOST_NAME", "status.podIP"), env("ADVERTISED_PORT", CONNECT_PORT.to_string()), password]),
        resources: Some(resources("250m", "1Gi", "1")),
        // GET /health (Kafka ≥ 3.9) answers 200 only once the worker has joined its group.
        startup_probe: Some(Probe { http_get: Some(health()), period_seconds: Some(5), failure_threshold: Some(60), ..Default::default() }),
        readiness_probe: Some(Probe {
            http_get: Some(health()),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(health()),
            period_seconds: Some(20),
            timeout_seconds: Some(10),
            failure_threshold: Some(6),
            ..Default::default()
        }),
        security_context: Some(container_security(false)),
        ..Default::default()
    };
    let mut template_meta = ctx.pod_meta(Component::Connect);
    template_meta.annotations = Some(BTreeMap::from([(ANNOTATION_WORKER_CONFIG.to_string(), worker_config_hash(ctx))]));
    let mut meta = ctx.meta(CONNECT, Component::Connect);
    meta.annotations = Some(BTreeMap::from([(ANNOTATION_CONNECTOR.to_string(), ctx.p.connect.connector.clone())]));
    Deployment {
        metadata: meta,
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: ctx.selector(Component::Connect),
            template: PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(PodSpec {
                    enable_service_links: Some(false),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security(CONNECT_UID)),
                    affinity: Some(on_a_server(ctx)),
                    containers: vec![worker],
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}
