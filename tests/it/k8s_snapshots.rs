//! Snapshots of every file under `generated/k8s/`: the bundled inventory, and a variant with
//! three brokers and a digest-pinned Connect image, so a change to any manifest shows up as a
//! reviewed diff.

use std::path::PathBuf;

use iac::inventory::{Source, parse};
use iac::model::validate;
use iac::render::{Tree, render};

use crate::support::{bundled_inventory, replace_once};

fn render_text(text: &str) -> Tree {
    let source = Source::new("inventory.toml", text);
    let file = parse(&source).expect("parses");
    let site = validate(&source, file).expect("validates");
    render(&site).expect("renders")
}

fn k8s_files(tree: &Tree) -> Vec<(&PathBuf, &String)> {
    tree.iter().filter(|(p, _)| p.starts_with("k8s")).collect()
}

#[test]
fn bundled_inventory_manifests() {
    let tree = render_text(&bundled_inventory());
    let files = k8s_files(&tree);
    let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    assert_eq!(
        names,
        [
            "k8s/connect.yaml",
            "k8s/connector.json",
            "k8s/kafka.yaml",
            "k8s/kustomization.yaml",
            "k8s/namespace.yaml",
            "k8s/network-policy.yaml",
            "k8s/producer.yaml",
            "k8s/register-connector.yaml"
        ]
    );
    for (path, text) in files {
        let name = path.file_name().expect("file name").to_string_lossy().into_owned();
        insta::assert_snapshot!(format!("bundled__{name}"), text);
    }
}

/// Three brokers on a two-node cluster (soft anti-affinity, a PodDisruptionBudget) and a Connect
/// image pinned by digest.
#[test]
fn three_brokers_and_a_digest_pinned_image() {
    let text = replace_once(&bundled_inventory(), "replicas = 1", "replicas = 3");
    let text = replace_once(
        &text,
        "image = \"quay.io/debezium/connect:3.4.3.Final\"",
        "image = \"quay.io/debezium/connect:3.4.3.Final@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"",
    );
    let tree = render_text(&text);
    for name in ["kafka.yaml", "connect.yaml", "connector.json", "network-policy.yaml"] {
        let body = &tree[&PathBuf::from("k8s").join(name)];
        insta::assert_snapshot!(format!("three_brokers__{name}"), body);
    }
}
