//! The rendered tree: snapshots of every file, `render --check`, and the atomic-write guarantee.

mod support;

use std::path::Path;

use support::{bundled_inventory, project_with, repo, run_iac, snapshot_dir, text};

fn render_bundled() -> iac::render::Tree {
    let site = iac::load_site(&repo().join("hosts/inventory.toml")).expect("bundled inventory is valid");
    iac::render::render(&site).expect("renders")
}

/// Review these like code: every change to a generated file shows up here as a diff.
/// (The Kubernetes manifests have their own snapshots in tests/k8s_snapshots.rs.)
#[test]
fn snapshots_of_every_rendered_host_file() {
    let tree = render_bundled();
    for (path, content) in tree.iter().filter(|(p, _)| !p.starts_with("k8s")) {
        let name = path.display().to_string().replace(['/', '.'], "_");
        insta::assert_snapshot!(name, content);
    }
}

#[test]
fn committed_tree_is_up_to_date() {
    let out = run_iac(&repo(), &["render", "--check"]);
    assert!(out.status.success(), "generated/ is stale:\n{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn check_reports_drift_with_a_diff_and_exit_1() {
    let dir = project_with(&bundled_inventory());
    assert!(run_iac(dir.path(), &["render"]).status.success());
    let nft = dir.path().join("generated/hamal/nftables.nft");
    let edited = std::fs::read_to_string(&nft).unwrap().replace("policy drop", "policy accept");
    std::fs::write(&nft, edited).unwrap();
    std::fs::write(dir.path().join("generated/stray.txt"), "x\n").unwrap();

    let out = run_iac(dir.path(), &["render", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    let diff = text(&out.stdout);
    assert!(diff.contains("--- generated/hamal/nftables.nft"), "{diff}");
    assert!(diff.contains("-\t\ttype filter hook input priority filter; policy accept;"), "{diff}");
    assert!(diff.contains("+\t\ttype filter hook input priority filter; policy drop;"), "{diff}");
    assert!(diff.contains("+++ /dev/null"), "extra files are reported: {diff}");
}

#[test]
fn check_on_a_missing_tree_fails() {
    let dir = project_with(&bundled_inventory());
    let out = run_iac(dir.path(), &["render", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("generated").exists(), "--check never writes");
}

#[test]
fn render_replaces_the_whole_tree() {
    let dir = project_with(&bundled_inventory());
    assert!(run_iac(dir.path(), &["render"]).status.success());
    std::fs::write(dir.path().join("generated/stale.nix"), "{}").unwrap();
    assert!(run_iac(dir.path(), &["render"]).status.success());
    assert!(!dir.path().join("generated/stale.nix").exists(), "files from an older render are removed");
    assert!(run_iac(dir.path(), &["render", "--check"]).status.success());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".iac-"))
        .collect();
    assert!(leftovers.is_empty(), "staging directories are cleaned up: {leftovers:?}");
}

#[test]
fn render_refuses_to_replace_a_foreign_directory() {
    let dir = project_with(&bundled_inventory());
    let out_dir = dir.path().join("precious");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(out_dir.join("thesis.tex"), "years of work").unwrap();
    let out = run_iac(dir.path(), &["render", "--out", "precious"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not written by iac"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(out_dir.join("thesis.tex")).unwrap(), "years of work");
}

/// A write that fails half-way (here: a file where a directory must go) leaves the previous
/// tree exactly as it was and no staging directory behind.
#[test]
fn failed_write_leaves_previous_tree_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("generated");
    let tree = render_bundled();
    iac::output::write_tree(&out, &tree).unwrap();
    let before = snapshot_dir(&out);

    let mut broken = tree.clone();
    broken.insert("alphard".into(), "a file where a directory must be".into());
    assert!(iac::output::write_tree(&out, &broken).is_err());
    assert_eq!(before, snapshot_dir(&out));
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("generated")], "staging directory left behind");
}

#[test]
fn every_host_gets_its_files() {
    let tree = render_bundled();
    for host in ["alphard", "hamal", "alkaid"] {
        for file in ["nftables.nft", "default.nix"] {
            assert!(tree.contains_key(Path::new(host).join(file).as_path()), "{host}/{file}");
        }
    }
    assert!(tree.contains_key(Path::new("alkaid/postgresql.nix")));
    assert!(!tree.contains_key(Path::new("alphard/postgresql.nix")));
}

/// Adding a host, a second server and another database takes only inventory edits.
#[test]
fn inventory_growth_needs_no_code() {
    let grown = bundled_inventory()
        + r#"
[hosts.mizar]
address = "172.22.0.136"
roles = ["k3s-server"]

[hosts.polaris]
address = "172.22.0.140"
roles = ["postgresql"]
ssh_port = 2222

[databases.metrics]
host = "polaris"
owner = "grafana"
password_file = "/var/lib/secrets/metrics"
clients = ["cluster"]
"#;
    let dir = project_with(&grown);
    let out = run_iac(dir.path(), &["render"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let g = dir.path().join("generated");
    let alphard = std::fs::read_to_string(g.join("alphard/nftables.nft")).unwrap();
    assert!(alphard.contains("elements = { 172.22.0.134, 172.22.0.136 }"), "two servers in k3s_servers:\n{alphard}");
    assert!(alphard.contains("ip saddr @k3s_servers tcp dport 2379-2380 accept"), "etcd between servers:\n{alphard}");
    let alphard_nix = std::fs::read_to_string(g.join("alphard/default.nix")).unwrap();
    assert!(alphard_nix.contains("clusterInit = true;"), "{alphard_nix}");
    let mizar_nix = std::fs::read_to_string(g.join("mizar/default.nix")).unwrap();
    assert!(mizar_nix.contains(r#"serverAddr = "https://172.22.0.134:6443";"#), "{mizar_nix}");
    let polaris = std::fs::read_to_string(g.join("polaris/nftables.nft")).unwrap();
    assert!(polaris.contains("ip saddr @admin tcp dport 2222 accept"), "{polaris}");
    let pg = std::fs::read_to_string(g.join("polaris/postgresql.nix")).unwrap();
    // The node addresses .134 and .135 aggregate into one /31, as in the firewall set.
    assert!(pg.contains("host metrics grafana 172.22.0.134/31 scram-sha-256"), "{pg}");
    assert!(pg.contains("host metrics grafana 172.22.0.136/32 scram-sha-256"), "{pg}");
    assert!(pg.contains(r#"ALTER DATABASE "metrics" OWNER TO "grafana";"#), "owner differs from db name:\n{pg}");
    let hamal = std::fs::read_to_string(g.join("hamal/nftables.nft")).unwrap();
    assert!(hamal.contains("elements = { 172.22.0.133, 172.22.0.140 }"), "pods may reach the new database server:\n{hamal}");
}

/// No secret value is ever rendered: the inventory only names where the password lives.
#[test]
fn no_secret_in_the_rendered_tree() {
    let dir = project_with(&bundled_inventory());
    let secret = "s3cr3t-kafka-password-4f1d";
    let secret_file = dir.path().join("pw");
    std::fs::write(&secret_file, secret).unwrap();
    let inv = bundled_inventory().replace("/var/lib/secrets/postgresql-kafka", &secret_file.display().to_string());
    std::fs::write(dir.path().join("hosts/inventory.toml"), inv).unwrap();
    assert!(run_iac(dir.path(), &["render"]).status.success());
    for (path, bytes) in snapshot_dir(&dir.path().join("generated")) {
        assert!(!String::from_utf8_lossy(&bytes).contains(secret), "{} holds the secret", path.display());
    }
}
