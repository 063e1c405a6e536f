//! Kafka in KRaft mode (Kafka 4 has no ZooKeeper): a StatefulSet of combined broker+controller
//! nodes with a volume each, a headless Service for the pods' stable DNS names and a client
//! Service.
//!
//! The apache/kafka image turns every `KAFKA_*` variable into a broker property and fills in
//! defaults for the ones left unset (among them a listener on localhost), so every property
//! its defaults touch is set here explicitly.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, ExecAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity,
    PodSpec, PodTemplateSpec, Probe, Service, ServicePort, ServiceSpec, TCPSocketAction, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

use super::{
    CLUSTER_DOMAIN, CONTROLLER_PORT, Component, Ctx, FILE_KAFKA, K8sError, KAFKA, KAFKA_BOOTSTRAP, KAFKA_HEADLESS, KAFKA_PORT, KAFKA_UID,
    Object, container_security, env, env_field, pod_security, quantity, resources, yaml,
};

/// The volume's mount point; the log directory is a subdirectory so the volume root (which a
/// provisioner may populate) never has to be empty.
const DATA_DIR: &str = "/var/lib/kafka/data";
pub const LOG_DIR: &str = "/var/lib/kafka/data/kraft-logs";
/// The Kafka tools in the apache/kafka image.
pub const KAFKA_BIN: &str = "/opt/kafka/bin";
const READY_SCRIPT: &str = include_str!("scripts/broker-ready.sh");

pub(super) fn render(ctx: &Ctx) -> Result<String, K8sError> {
    let mut objects = vec![Object::Service(headless(ctx)), Object::Service(bootstrap(ctx)), Object::StatefulSet(statefulset(ctx))];
    if let Some(pdb) = disruption_budget(ctx) {
        objects.push(Object::PodDisruptionBudget(pdb));
    }
    yaml(FILE_KAFKA, &objects)
}

/// With several brokers, a drain (node maintenance) takes one at a time, so the quorum and
/// `min.insync.replicas` hold. One broker has nothing to protect: a budget of zero would only
/// block every drain of its node.
fn disruption_budget(ctx: &Ctx) -> Option<PodDisruptionBudget> {
    (ctx.p.kafka.replicas > 1).then(|| PodDisruptionBudget {
        metadata: ctx.meta(KAFKA, Component::Kafka),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(ctx.selector(Component::Kafka)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// One broker per node. Required when the cluster has at least as many k3s nodes as brokers,
/// so two brokers never share a node (and a node loss never takes two voters); only preferred
/// when it has fewer, where a required rule would leave the surplus brokers Pending forever.
fn spread(ctx: &Ctx) -> PodAntiAffinity {
    let term = PodAffinityTerm {
        label_selector: Some(ctx.selector(Component::Kafka)),
        topology_key: "kubernetes.io/hostname".into(),
        ..Default::default()
    };
    if ctx.k3s_node_count() >= usize::from(ctx.p.kafka.replicas) {
        PodAntiAffinity { required_during_scheduling_ignored_during_execution: Some(vec![term]), ..Default::default() }
    } else {
        PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: term,
            }]),
            ..Default::default()
        }
    }
}

fn ports() -> Vec<ServicePort> {
    vec![
        ServicePort {
            name: Some("kafka".into()),
            port: KAFKA_PORT,
            target_port: Some(IntOrString::String("kafka".into())),
            ..Default::default()
        },
        ServicePort {
            name: Some("controller".into()),
            port: CONTROLLER_PORT,
            target_port: Some(IntOrString::String("controller".into())),
            ..Default::default()
        },
    ]
}

/// Gives `kafka-N.kafka-headless` a DNS record as soon as the pod has an address: the
/// controllers must find each other before any of them is Ready.
fn headless(ctx: &Ctx) -> Service {
    Service {
        metadata: ctx.meta(KAFKA_HEADLESS, Component::Kafka),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(ctx.selector_labels(Component::Kafka)),
            ports: Some(ports()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn bootstrap(ctx: &Ctx) -> Service {
    Service {
        metadata: ctx.meta(KAFKA_BOOTSTRAP, Component::Kafka),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(ctx.selector_labels(Component::Kafka)),
            ports: Some(vec![ServicePort {
                name: Some("kafka".into()),
                port: KAFKA_PORT,
                target_port: Some(IntOrString::String("kafka".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `kafka-N.kafka-headless.NAMESPACE.svc.cluster.local`, with `$(POD_NAME)` for N's pod.
pub fn pod_dns(ctx: &Ctx, pod: &str) -> String {
    format!("{pod}.{KAFKA_HEADLESS}.{}.svc.{CLUSTER_DOMAIN}", ctx.ns())
}

/// The advertised listener: the pod's stable DNS name, never localhost or a pod IP.
pub fn advertised_listeners(ctx: &Ctx) -> String {
    format!("PLAINTEXT://{}:{KAFKA_PORT}", pod_dns(ctx, "$(POD_NAME)"))
}

/// Static KRaft voters, one per broker. A single node votes for itself on localhost, so it
/// never waits for its own DNS record.
pub fn quorum_voters(ctx: &Ctx) -> String {
    if ctx.p.kafka.replicas == 1 {
        return format!("0@localhost:{CONTROLLER_PORT}");
    }
    (0..ctx.p.kafka.replicas)
        .map(|i| format!("{i}@{}:{CONTROLLER_PORT}", pod_dns(ctx, &format!("{KAFKA}-{i}"))))
        .collect::<Vec<_>>()
        .join(",")
}

fn statefulset(ctx: &Ctx) -> StatefulSet {
    let k = &ctx.p.kafka;
    let rf = ctx.replication_factor().to_string();
    let isr = ctx.min_insync_replicas().to_string();
    let env = vec![
        env_field("POD_NAME", "metadata.name"),
        // The StatefulSet ordinal (kafka-2 → 2), from the label Kubernetes ≥ 1.28 sets.
        env_field("KAFKA_NODE_ID", "metadata.labels['apps.kubernetes.io/pod-index']"),
        env("CLUSTER_ID", &k.cluster_id),
        env("KAFKA_PROCESS_ROLES", "broker,controller"),
        env("KAFKA_LISTENERS", format!("PLAINTEXT://:{KAFKA_PORT},CONTROLLER://:{CONTROLLER_PORT}")),
        env("KAFKA_ADVERTISED_LISTENERS", advertised_listeners(ctx)),
        env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"),
        env("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT"),
        env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
        env("KAFKA_CONTROLLER_QUORUM_VOTERS", quorum_voters(ctx)),
        env("KAFKA_LOG_DIRS", LOG_DIR),
        env("KAFKA_NUM_PARTITIONS", "1"),
        env("KAFKA_DEFAULT_REPLICATION_FACTOR", &rf),
        env("KAFKA_MIN_INSYNC_REPLICAS", &isr),
        env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", &rf),
        env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", &rf),
        env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", &isr),
        env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR", &rf),
        env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", &isr),
        // Topics are created on purpose (the producer Job, Connect's internal topics and its
        // dead-letter topic), never by a typo.
        env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false"),
        env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"),
        env("KAFKA_HEAP_OPTS", "-Xms512m -Xmx512m"),
    ];
    let tcp = |port: &str| TCPSocketAction { port: IntOrString::String(port.into()), ..Default::default() };
    let container = Container {
        name: KAFKA.into(),
        image: Some(k.image.clone()),
        ports: Some(vec![
            ContainerPort { name: Some("kafka".into()), container_port: KAFKA_PORT, ..Default::default() },
            ContainerPort { name: Some("controller".into()), container_port: CONTROLLER_PORT, ..Default::default() },
        ]),
        env: Some(env),
        // The original estate's limits: 1Gi and half a core.
        resources: Some(resources("250m", "1Gi", "500m")),
        // The process is up and has bound its listener: from here on liveness applies.
        startup_probe: Some(Probe {
            tcp_socket: Some(tcp("kafka")),
            period_seconds: Some(5),
            failure_threshold: Some(60),
            ..Default::default()
        }),
        // Ready means it serves requests: a real ApiVersions round trip (scripts/broker-ready.sh),
        // a few milliseconds of bash, where `kafka-broker-api-versions.sh` would start a JVM
        // (seconds of CPU under the 500m limit, and a second heap next to the broker's) on
        // every probe.
        readiness_probe: Some(Probe {
            exec: Some(ExecAction { command: Some(vec!["/bin/bash".into(), "-c".into(), READY_SCRIPT.into()]) }),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        // Alive while it holds its port: a broker waiting for its quorum is not dead, and
        // restarting it would not help.
        liveness_probe: Some(Probe {
            tcp_socket: Some(tcp("kafka")),
            period_seconds: Some(20),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount { name: "data".into(), mount_path: DATA_DIR.into(), ..Default::default() }]),
        security_context: Some(container_security(false)),
        ..Default::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        // Service links would hand the broker KAFKA_BOOTSTRAP_PORT=tcp://... and friends.
        enable_service_links: Some(false),
        automount_service_account_token: Some(false),
        security_context: Some(pod_security(KAFKA_UID)),
        termination_grace_period_seconds: Some(60),
        affinity: Some(Affinity { pod_anti_affinity: Some(spread(ctx)), ..Default::default() }),
        ..Default::default()
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some("data".into()), labels: Some(ctx.labels(Component::Kafka)), ..Default::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(k.storage_class.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), quantity(&k.storage))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    StatefulSet {
        metadata: ctx.meta(KAFKA, Component::Kafka),
        spec: StatefulSetSpec {
            service_name: Some(KAFKA_HEADLESS.into()),
            replicas: Some(i32::from(k.replicas)),
            // All brokers start together: with several, none can be Ready before a quorum is.
            pod_management_policy: Some("Parallel".into()),
            selector: ctx.selector(Component::Kafka),
            template: PodTemplateSpec { metadata: Some(ctx.pod_meta(Component::Kafka)), spec: Some(pod) },
            volume_claim_templates: Some(vec![claim]),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".into()),
                when_scaled: Some("Retain".into()),
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}
