//! The demo producer: a Job that creates the topic and writes messages in the envelope form
//! the JDBC sink needs.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

use super::{
    Component, Ctx, FILE_PRODUCER, K8sError, KAFKA_UID, Object, PRODUCER_JOB, container_security, env, pod_security, resources, yaml,
};

const SCRIPT: &str = include_str!("scripts/produce.sh");

pub(super) fn render(ctx: &Ctx) -> Result<String, K8sError> {
    let container = Container {
        name: "producer".into(),
        image: Some(ctx.p.kafka.image.clone()),
        command: Some(vec!["/bin/bash".into(), "-c".into(), SCRIPT.into()]),
        env: Some(vec![
            env("BOOTSTRAP", ctx.bootstrap_servers()),
            env("TOPIC", &ctx.p.topic),
            env("PARTITIONS", "1"),
            env("REPLICATION_FACTOR", ctx.replication_factor().to_string()),
            env("MESSAGES", ctx.p.producer_messages.to_string()),
            env("KAFKA_HEAP_OPTS", "-Xmx256m"),
        ]),
        resources: Some(resources("100m", "512Mi", "500m")),
        security_context: Some(container_security(false)),
        ..Default::default()
    };
    let job = Job {
        metadata: ctx.meta(PRODUCER_JOB, Component::Producer),
        spec: Some(JobSpec {
            backoff_limit: Some(4),
            active_deadline_seconds: Some(900),
            template: PodTemplateSpec {
                metadata: Some(ctx.pod_meta(Component::Producer)),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    enable_service_links: Some(false),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security(KAFKA_UID)),
                    containers: vec![container],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    yaml(FILE_PRODUCER, &[Object::Job(job)])
}
