//! The JDBC sink connector: its configuration (`connector.json`, what `iac apply` PUTs) and a
//! Job that registers it through the Connect REST API, for `kubectl apply -k`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, Container, PodSpec, PodTemplateSpec, Volume, VolumeMount};
use serde::Serialize;

use crate::model::InsertMode;

use super::{
    Component, Ctx, FILE_CONNECTOR, FILE_REGISTER, K8sError, KAFKA_UID, Object, PASSWORD_VAR, REGISTER_JOB, container_security, empty_dir,
    env, pod_security, resources, yaml,
};

/// Debezium's JDBC sink (`debezium/debezium`, `debezium-connector-jdbc/.../JdbcSinkConnector.java`),
/// installed in the Connect image (`connect.rs`).
pub const CONNECTOR_CLASS: &str = "io.debezium.connector.jdbc.JdbcSinkConnector";
/// The key columns `primary.key.mode=kafka` creates: the record's topic (text), partition (int)
/// and offset (bigint) (debezium/debezium at v3.4.3.Final,
/// `debezium-sink/.../bindings/kafka/KafkaDebeziumSinkRecord.java`, `CONNECT_TOPIC`,
/// `CONNECT_PARTITION`, `CONNECT_OFFSET`). The demo producer's records, a struct named
/// `demo_message` without an `op` field, are "flattened" records there (not a Debezium change
/// event envelope), written column for column.
pub const KAFKA_PK_COLUMNS: [&str; 3] = ["__connect_topic", "__connect_partition", "__connect_offset"];
const REGISTER_SCRIPT: &str = include_str!("scripts/register-connector.sh");

#[derive(Serialize)]
struct ConnectorFile<'a> {
    name: &'a str,
    config: &'a BTreeMap<String, String>,
}

/// The JDBC URL: the database host's address and port from the inventory, and the database.
pub fn jdbc_url(ctx: &Ctx) -> String {
    format!("jdbc:postgresql://{}:{}/{}", ctx.db_address, ctx.db_port, ctx.p.database)
}

pub fn dlq_topic(ctx: &Ctx) -> String {
    dlq_topic_of(&ctx.p.topic)
}

/// The dead-letter topic of a topic: `iac pipeline status` reads its depth.
pub fn dlq_topic_of(topic: &str) -> String {
    format!("{topic}-dlq")
}

/// The connector's configuration, as PUT to `/connectors/NAME/config`. Converters come from
/// the worker (JsonConverter with schemas); the password is resolved inside the worker from its
/// environment, so this map holds only the placeholder.
///
/// Every key is documented by the connector (debezium/debezium at the v3.4.3.Final tag the image
/// installs) or by Kafka Connect itself:
/// - `connector.class`, `tasks.max`, `topics`, and the `errors.*` keys: Kafka Connect's
///   `ConnectorConfig.java` and `SinkConnectorConfig.java` (apache/kafka, `connect/runtime`).
/// - `connection.url`, `connection.username`, `connection.password`, `insert.mode`,
///   `schema.evolution`: Debezium's `JdbcSinkConnectorConfig.java` (debezium/debezium,
///   `debezium-connector-jdbc`).
/// - `primary.key.mode`, `collection.name.format` (which replaced `table.name.format`, still
///   accepted as a deprecated alias): Debezium's `SinkConnectorConfig.java` (`debezium-sink`).
pub fn connector_config_of(ctx: &Ctx) -> BTreeMap<String, String> {
    let p = ctx.p;
    let rf = ctx.replication_factor().to_string();
    let insert_mode = match p.connect.insert_mode {
        InsertMode::Insert => "insert",
        InsertMode::Upsert => "upsert",
    };
    [
        ("connector.class", CONNECTOR_CLASS.to_string()),
        ("tasks.max", "1".into()),
        ("topics", p.topic.clone()),
        ("connection.url", jdbc_url(ctx)),
        ("connection.username", ctx.db_owner.clone()),
        ("connection.password", format!("${{env:{PASSWORD_VAR}}}")),
        // The table name, fixed (the default is the topic name).
        ("collection.name.format", p.table.clone()),
        // `basic` creates the table from the first record's schema and adds columns that
        // appear later; `none` (the default) expects the table to exist.
        ("schema.evolution", "basic".into()),
        ("insert.mode", insert_mode.into()),
        // The key is where the record sits in Kafka (__connect_topic, __connect_partition,
        // __connect_offset): a replay after a crash finds its rows again. `upsert` requires a
        // primary key mode (JdbcSinkConnectorConfig.validateInsertMode).
        ("primary.key.mode", "kafka".into()),
        // Records that cannot be converted go to the dead-letter topic with the reason in
        // their headers instead of stopping the task.
        ("errors.tolerance", "all".into()),
        ("errors.log.enable", "true".into()),
        ("errors.log.include.messages", "false".into()),
        ("errors.deadletterqueue.topic.name", dlq_topic(ctx)),
        ("errors.deadletterqueue.topic.replication.factor", rf),
        ("errors.deadletterqueue.context.headers.enable", "true".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The connector configuration of a site's pipeline, for `iac apply` (None without a pipeline).
pub fn connector_config(site: &crate::model::Site) -> Result<Option<BTreeMap<String, String>>, K8sError> {
    let Some(p) = &site.pipeline else { return Ok(None) };
    Ok(Some(connector_config_of(&Ctx::new(site, p)?)))
}

pub(super) fn render(ctx: &Ctx) -> Result<String, K8sError> {
    let config = connector_config_of(ctx);
    let file = ConnectorFile { name: &ctx.p.connect.connector, config: &config };
    let mut text = serde_json::to_string_pretty(&file).map_err(|source| K8sError::Json { file: FILE_CONNECTOR, source })?;
    text.push('\n');
    Ok(text)
}

/// A ConfigMap with the bare config (what the PUT takes) and the Job that PUTs it.
pub(super) fn register_job(ctx: &Ctx) -> Result<String, K8sError> {
    let config = connector_config_of(ctx);
    let body = serde_json::to_string_pretty(&config).map_err(|source| K8sError::Json { file: FILE_REGISTER, source })?;
    let cm = ConfigMap {
        metadata: ctx.meta(REGISTER_JOB, Component::RegisterConnector),
        data: Some(BTreeMap::from([("config.json".to_string(), format!("{body}\n"))])),
        ..Default::default()
    };
    let container = Container {
        name: REGISTER_JOB.into(),
        image: Some(ctx.p.connect.curl_image.clone()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), REGISTER_SCRIPT.into()]),
        env: Some(vec![
            env("CONNECT_URL", ctx.connect_url()),
            env("CONNECTOR", &ctx.p.connect.connector),
            env("CONNECTOR_CLASS", CONNECTOR_CLASS),
            env("CONFIG_FILE", "/etc/connector/config.json"),
        ]),
        resources: Some(resources("10m", "64Mi", "200m")),
        volume_mounts: Some(vec![
            VolumeMount { name: "config".into(), mount_path: "/etc/connector".into(), read_only: Some(true), ..Default::default() },
            VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() },
        ]),
        security_context: Some(container_security(true)),
        ..Default::default()
    };
    let config_volume = Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource { name: REGISTER_JOB.into(), ..Default::default() }),
        ..Default::default()
    };
    let job = Job {
        metadata: ctx.meta(REGISTER_JOB, Component::RegisterConnector),
        spec: Some(JobSpec {
            backoff_limit: Some(4),
            // The script waits for Connect itself; this bounds the whole attempt.
            active_deadline_seconds: Some(900),
            template: PodTemplateSpec {
                metadata: Some(ctx.pod_meta(Component::RegisterConnector)),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    enable_service_links: Some(false),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security(KAFKA_UID)),
                    containers: vec![container],
                    volumes: Some(vec![config_volume, empty_dir("tmp")]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    yaml(FILE_REGISTER, &[Object::ConfigMap(cm), Object::Job(job)])
}
