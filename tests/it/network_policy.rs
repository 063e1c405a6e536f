//! What the rendered NetworkPolicies admit, as a table of source → destination:port, derived
//! from the objects `iac render` writes (tests/it/support/netpol.rs evaluates NetworkPolicy
//! semantics). The pods are the rendered workloads' pod templates, so their labels are the
//! real ones.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;

use crate::support::netpol::{Cluster, Endpoint};
use crate::support::{self, bundled_inventory, replace_once};

const NS: &str = "kafka-pipeline";

/// Render `inventory` with the binary; return the k8s directory's documents by file.
fn render(inventory: &str) -> (tempfile::TempDir, BTreeMap<String, Vec<Value>>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inventory.toml"), inventory).unwrap();
    let out = support::iac()
        .args(["render", "--inventory"])
        .arg(dir.path().join("inventory.toml"))
        .arg("--out")
        .arg(dir.path().join("generated"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    let k8s = dir.path().join("generated/k8s");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&k8s).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") && !path.ends_with("kustomization.yaml") {
            let docs: Vec<Value> = serde_saphyr::from_str_multiple(&std::fs::read_to_string(&path).unwrap()).unwrap();
            files.insert(path.file_name().unwrap().to_string_lossy().into_owned(), docs);
        }
    }
    (dir, files)
}

fn policies(files: &BTreeMap<String, Vec<Value>>) -> Vec<NetworkPolicy> {
    files.values().flatten().filter(|d| d["kind"] == "NetworkPolicy").map(|d| serde_json::from_value(d.clone()).unwrap()).collect()
}

/// A pod of each rendered workload, labelled from its pod template.
fn pods(files: &BTreeMap<String, Vec<Value>>) -> Vec<Endpoint> {
    let mut ip = 10;
    let mut out = Vec::new();
    for d in files.values().flatten().filter(|d| matches!(d["kind"].as_str(), Some("StatefulSet" | "Deployment" | "Job"))) {
        let labels: BTreeMap<String, String> = serde_json::from_value(d["spec"]["template"]["metadata"]["labels"].clone()).unwrap();
        ip += 1;
        out.push(Endpoint::Pod {
            name: d["metadata"]["name"].as_str().unwrap().to_owned(),
            namespace: d["metadata"]["namespace"].as_str().unwrap().to_owned(),
            labels,
            ip: Ipv4Addr::new(10, 42, 0, ip),
        });
    }
    out
}

fn pod(name: &str, ns: &str, labels: &[(&str, &str)], ip: [u8; 4]) -> Endpoint {
    Endpoint::Pod {
        name: name.into(),
        namespace: ns.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ip: Ipv4Addr::from(ip),
    }
}

fn addr(name: &str, ip: [u8; 4]) -> Endpoint {
    Endpoint::Address { name: name.into(), ip: Ipv4Addr::from(ip) }
}

/// Every (source, destination, proto/port) the policies admit, over the given endpoints.
fn table(cluster: &Cluster, sources: &[Endpoint], targets: &[(Endpoint, &str, u16)]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in sources {
        for (t, proto, port) in targets {
            if s.name() != t.name() && cluster.allows(s, t, proto, *port) {
                out.insert(format!("{} -> {}:{}/{}", s.name(), t.name(), proto.to_lowercase(), port));
            }
        }
    }
    out
}

fn endpoints(files: &BTreeMap<String, Vec<Value>>) -> (Vec<Endpoint>, Vec<(Endpoint, &'static str, u16)>) {
    let workloads = pods(files);
    let find = |n: &str| workloads.iter().find(|p| p.name() == n).unwrap_or_else(|| panic!("no workload {n}")).clone();
    // A pod in another namespace carrying Connect's very labels: namespaces must still separate.
    let Endpoint::Pod { labels: connect_labels, .. } = find("kafka-connect") else { unreachable!() };
    let foreign =
        Endpoint::Pod { name: "foreign".into(), namespace: "other".into(), labels: connect_labels, ip: Ipv4Addr::new(10, 42, 1, 66) };
    let coredns = pod("coredns", "kube-system", &[("k8s-app", "kube-dns")], [10, 42, 0, 2]);
    let mut sources = workloads.clone();
    sources.extend([
        foreign,
        coredns.clone(),
        addr("node alphard", [172, 22, 0, 134]),
        addr("node hamal", [172, 22, 0, 135]),
        addr("database alkaid", [172, 22, 0, 133]),
        addr("admin workstation", [172, 22, 0, 50]),
    ]);
    let targets = vec![
        (find("kafka"), "TCP", 9092),
        (find("kafka"), "TCP", 9093),
        (find("kafka-connect"), "TCP", 8083),
        (find("demo-producer"), "TCP", 8080),
        (find("register-connector"), "TCP", 8080),
        (addr("database alkaid", [172, 22, 0, 133]), "TCP", 5432),
        (addr("database alkaid", [172, 22, 0, 133]), "TCP", 22),
        (coredns.clone(), "UDP", 53),
        (coredns, "TCP", 53),
        (addr("internet", [1, 1, 1, 1]), "TCP", 443),
        (addr("node alphard", [172, 22, 0, 134]), "TCP", 6443),
    ];
    (sources, targets)
}

#[test]
fn the_rendered_policies_admit_exactly_the_pipelines_paths() {
    let (_dir, files) = render(&bundled_inventory());
    let cluster = Cluster::new(policies(&files), &[NS, "kube-system", "other"]);
    assert_eq!(cluster.policies.len(), 5);
    let (sources, targets) = endpoints(&files);
    let got = table(&cluster, &sources, &targets);
    let want: BTreeSet<String> = [
        // Kafka: 9092 from the pipeline's pods, 9093 between brokers.
        "kafka-connect -> kafka:tcp/9092",
        "demo-producer -> kafka:tcp/9092",
        // Connect's REST port: the registration Job and the node addresses (service proxy).
        "register-connector -> kafka-connect:tcp/8083",
        "node alphard -> kafka-connect:tcp/8083",
        "node hamal -> kafka-connect:tcp/8083",
        // Connect's egress: the database's address and port, nothing else outside.
        "kafka-connect -> database alkaid:tcp/5432",
        // DNS for every pipeline pod.
        "kafka -> coredns:udp/53",
        "kafka -> coredns:tcp/53",
        "kafka-connect -> coredns:udp/53",
        "kafka-connect -> coredns:tcp/53",
        "demo-producer -> coredns:udp/53",
        "demo-producer -> coredns:tcp/53",
        "register-connector -> coredns:udp/53",
        "register-connector -> coredns:tcp/53",
        // Not pipeline pods: no policy selects them, so their egress is theirs to decide;
        // what they reach here is unselected (the database host and the internet have no pods).
        "foreign -> database alkaid:tcp/5432",
        "foreign -> database alkaid:tcp/22",
        "foreign -> internet:tcp/443",
        "foreign -> node alphard:tcp/6443",
        "foreign -> coredns:udp/53",
        "foreign -> coredns:tcp/53",
        "coredns -> database alkaid:tcp/5432",
        "coredns -> database alkaid:tcp/22",
        "coredns -> internet:tcp/443",
        "coredns -> node alphard:tcp/6443",
        "node alphard -> database alkaid:tcp/5432",
        "node alphard -> database alkaid:tcp/22",
        "node alphard -> internet:tcp/443",
        "node alphard -> coredns:udp/53",
        "node alphard -> coredns:tcp/53",
        "node hamal -> database alkaid:tcp/5432",
        "node hamal -> database alkaid:tcp/22",
        "node hamal -> internet:tcp/443",
        "node hamal -> node alphard:tcp/6443",
        "node hamal -> coredns:udp/53",
        "node hamal -> coredns:tcp/53",
        "database alkaid -> internet:tcp/443",
        "database alkaid -> node alphard:tcp/6443",
        "database alkaid -> coredns:udp/53",
        "database alkaid -> coredns:tcp/53",
        "admin workstation -> database alkaid:tcp/5432",
        "admin workstation -> database alkaid:tcp/22",
        "admin workstation -> internet:tcp/443",
        "admin workstation -> node alphard:tcp/6443",
        "admin workstation -> coredns:udp/53",
        "admin workstation -> coredns:tcp/53",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing: {missing:#?}\nunexpected: {extra:#?}");

    // The rows that matter, spelled out: what a pipeline pod may NOT do.
    let deny = |s: &str, t: &str| assert!(!got.iter().any(|r| r.starts_with(&format!("{s} -> {t}"))), "{s} -> {t} must be refused");
    deny("foreign", "kafka:");
    deny("foreign", "kafka-connect:");
    deny("admin workstation", "kafka-connect:");
    deny("kafka", "kafka-connect:");
    deny("demo-producer", "kafka-connect:");
    deny("demo-producer", "database alkaid");
    deny("kafka-connect", "internet");
    deny("kafka", "database alkaid");
    deny("register-connector", "kafka:");
    deny("kafka-connect", "kafka:tcp/9093");
    deny("kafka-connect", "node alphard:tcp/6443");
}

/// With three brokers the brokers reach each other on both ports, and the database port and
/// address follow the inventory.
#[test]
fn brokers_reach_each_other_and_the_database_follows_the_inventory() {
    let text = replace_once(&bundled_inventory(), "replicas = 1", "replicas = 3");
    let text = replace_once(&text, "address = \"172.22.0.133\"", "address = \"172.22.0.140\"");
    let text = replace_once(&text, "owner = \"kafka\"", "owner = \"kafka\"\nport = 5433");
    let (_dir, files) = render(&text);
    let cluster = Cluster::new(policies(&files), &[NS, "kube-system", "other"]);
    let workloads = pods(&files);
    let kafka = workloads.iter().find(|p| p.name() == "kafka").unwrap();
    let Endpoint::Pod { labels, .. } = kafka else { unreachable!() };
    let peer = Endpoint::Pod { name: "kafka-1".into(), namespace: NS.into(), labels: labels.clone(), ip: Ipv4Addr::new(10, 42, 1, 9) };
    assert!(cluster.allows(kafka, &peer, "TCP", 9093));
    assert!(cluster.allows(kafka, &peer, "TCP", 9092));
    assert!(!cluster.allows(kafka, &peer, "TCP", 8083));
    let connect = workloads.iter().find(|p| p.name() == "kafka-connect").unwrap();
    assert!(cluster.allows(connect, &addr("db", [172, 22, 0, 140]), "TCP", 5433));
    assert!(!cluster.allows(connect, &addr("db", [172, 22, 0, 140]), "TCP", 5432));
    assert!(!cluster.allows(connect, &addr("old db", [172, 22, 0, 133]), "TCP", 5433));
}

/// The evaluator is not a rubber stamp: hand-written policies give the answers the API
/// reference prescribes.
#[test]
fn the_evaluator_follows_the_api_semantics() {
    let policy = |yaml: &str| -> NetworkPolicy { serde_saphyr::from_str(yaml).unwrap() };
    let a = pod("a", "x", &[("app", "a")], [10, 0, 0, 1]);
    let b = pod("b", "x", &[("app", "b")], [10, 0, 0, 2]);
    let c = pod("c", "y", &[("app", "a")], [10, 0, 0, 3]);
    let outside = addr("outside", [192, 0, 2, 1]);
    // No policy: everything goes.
    let open = Cluster::new(vec![], &["x", "y"]);
    assert!(open.allows(&a, &b, "TCP", 1) && open.allows(&outside, &b, "UDP", 53));
    // Default deny of ingress in x only: nothing reaches x's pods; y's pod still receives.
    let deny = policy("metadata: {name: d, namespace: x}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n");
    let cluster = Cluster::new(vec![deny.clone()], &["x", "y"]);
    assert!(!cluster.allows(&a, &b, "TCP", 80));
    assert!(cluster.allows(&a, &c, "TCP", 80), "egress is not isolated and y has no policy");
    // podSelector alone means the policy's namespace; both selectors mean the intersection.
    let allow_a = policy(
        "metadata: {name: p, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: b}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: a}}}]\n    ports: [{port: 80}]\n",
    );
    let cluster = Cluster::new(vec![deny.clone(), allow_a], &["x", "y"]);
    assert!(cluster.allows(&a, &b, "TCP", 80));
    assert!(!cluster.allows(&a, &b, "UDP", 80), "protocol defaults to TCP");
    assert!(!cluster.allows(&a, &b, "TCP", 81));
    assert!(!cluster.allows(&c, &b, "TCP", 80), "same labels, other namespace");
    let from_y = policy(
        "metadata: {name: q, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}, podSelector: {matchExpressions: [{key: app, operator: In, values: [a]}]}}]\n    ports: [{port: 1000, endPort: 2000}]\n",
    );
    let cluster = Cluster::new(vec![deny, from_y], &["x", "y"]);
    assert!(cluster.allows(&c, &b, "TCP", 1500));
    assert!(!cluster.allows(&c, &b, "TCP", 2001));
    assert!(!cluster.allows(&a, &b, "TCP", 1500), "namespace x is not y");
    // ipBlock with except; egress isolation.
    let egress = policy(
        "metadata: {name: e, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: a}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.1/32]}}]\n",
    );
    let cluster = Cluster::new(vec![egress], &["x", "y"]);
    assert!(!cluster.allows(&a, &outside, "TCP", 443));
    assert!(cluster.allows(&a, &addr("o2", [192, 0, 2, 2]), "UDP", 9));
    assert!(!cluster.allows(&a, &b, "TCP", 80), "a's egress is isolated");
    assert!(cluster.allows(&b, &a, "TCP", 80), "b is not selected");
}

/// The manifests on disk are what the evaluator read: a sanity check that the files exist
/// where `iac apply` reads them.
#[test]
fn the_policies_live_in_their_own_file() {
    let (dir, files) = render(&bundled_inventory());
    assert!(Path::new(&dir.path().join("generated/k8s/network-policy.yaml")).is_file());
    assert_eq!(files["network-policy.yaml"].len(), 5);
    assert!(files.iter().filter(|(f, _)| *f != "network-policy.yaml").all(|(_, docs)| docs.iter().all(|d| d["kind"] != "NetworkPolicy")));
}
