//! One test per validation rule: a broken inventory exits 2, names file, line and key, and
//! leaves the previously rendered tree byte-for-byte as it was.

mod support;

use support::{bundled_inventory, project_with, replace_once, run_iac, snapshot_dir, text};

/// Render the bundled inventory, then replace `from` by `to` in it, render again and check
/// the error names `key` at the first line holding `at`, with `message` in it.
fn assert_rejected(from: &str, to: &str, key: &str, at: &str, message: &str) {
    let good = bundled_inventory();
    let dir = project_with(&good);
    let first = run_iac(dir.path(), &["render"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let before = snapshot_dir(&dir.path().join("generated"));
    assert!(!before.is_empty());

    let bad = replace_once(&good, from, to);
    std::fs::write(dir.path().join("hosts/inventory.toml"), &bad).unwrap();
    let out = run_iac(dir.path(), &["render"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "expected exit 2, got {:?}: {stderr}", out.status);

    // An empty `at` means: the line where the replacement landed.
    let line = if at.is_empty() {
        bad[..good.find(from).unwrap()].matches('\n').count() + 1
    } else {
        bad.lines().position(|l| l.contains(at)).map(|i| i + 1).expect("marker line")
    };
    let want = format!("hosts/inventory.toml:{line}:");
    let hit = stderr.lines().find(|l| l.contains(&want) && l.contains(key));
    let hit = hit.unwrap_or_else(|| panic!("no error at {want} naming `{key}` in:\n{stderr}"));
    assert!(hit.contains(message), "`{message}` not in `{hit}`");
    assert_eq!(before, snapshot_dir(&dir.path().join("generated")), "a failed render changed generated/");
}

#[test]
fn invalid_cidr() {
    assert_rejected(
        r#"pod_cidr = "10.42.0.0/16""#,
        r#"pod_cidr = "10.42.0.0/33""#,
        "cluster.pod_cidr",
        "10.42.0.0/33",
        "not a valid IPv4 CIDR",
    );
}

#[test]
fn cidr_with_host_bits() {
    assert_rejected(r#"cidr = "172.22.0.0/24""#, r#"cidr = "172.22.0.7/24""#, "networks.lan.cidr", "172.22.0.7/24", "host bits");
}

#[test]
fn invalid_address() {
    assert_rejected(
        r#"address = "172.22.0.135""#,
        r#"address = "172.22.0.300""#,
        "hosts.hamal.address",
        "172.22.0.300",
        "not a valid IPv4 address",
    );
}

#[test]
fn invalid_dns_address() {
    assert_rejected(
        r#"upstream = ["172.22.100.104"]"#,
        r#"upstream = ["dns.example"]"#,
        "dns.upstream[0]",
        "dns.example",
        "not a valid IPv4 address",
    );
}

#[test]
fn duplicate_host_address() {
    assert_rejected(
        r#"address = "172.22.0.135""#,
        r#"address = "172.22.0.134""#,
        "hosts.hamal.address",
        "",
        "already the address of host `alphard`",
    );
}

#[test]
fn pod_cidr_overlaps_lan() {
    assert_rejected(
        r#"pod_cidr = "10.42.0.0/16""#,
        r#"pod_cidr = "172.22.0.0/16""#,
        "cluster.pod_cidr",
        "172.22.0.0/16",
        "overlaps networks.lan.cidr",
    );
}

#[test]
fn service_cidr_overlaps_pod_cidr() {
    assert_rejected(
        r#"service_cidr = "10.43.0.0/16""#,
        r#"service_cidr = "10.42.128.0/17""#,
        "cluster.service_cidr",
        "10.42.128.0/17",
        "overlaps cluster.pod_cidr",
    );
}

#[test]
fn host_outside_every_network() {
    assert_rejected(
        r#"address = "172.22.0.133""#,
        r#"address = "192.168.1.133""#,
        "hosts.alkaid.address",
        "192.168.1.133",
        "outside every declared network",
    );
}

#[test]
fn unknown_role() {
    assert_rejected(
        r#"roles = ["k3s-agent"]"#,
        r#"roles = ["k3s-worker"]"#,
        "hosts.hamal.roles",
        "k3s-worker",
        "unknown variant `k3s-worker`",
    );
}

#[test]
fn unknown_host_reference() {
    assert_rejected(r#"host = "alkaid""#, r#"host = "mizar""#, "databases.kafka.host", r#"host = "mizar""#, "unknown host `mizar`");
}

#[test]
fn database_on_host_without_postgresql() {
    assert_rejected(r#"host = "alkaid""#, r#"host = "hamal""#, "databases.kafka.host", r#"host = "hamal""#, "no `postgresql` role");
}

#[test]
fn unknown_client_reference() {
    assert_rejected(
        r#"clients = ["cluster", "admin"]"#,
        r#"clients = ["cluster", "mizar"]"#,
        "databases.kafka.clients[1]",
        "mizar",
        "unknown host `mizar`",
    );
}

#[test]
fn unknown_database_reference() {
    assert_rejected(
        r#"database = "kafka""#,
        r#"database = "events""#,
        "pipeline.database",
        r#"database = "events""#,
        "unknown database `events`",
    );
}

#[test]
fn unknown_join_target() {
    assert_rejected(
        "roles = [\"k3s-agent\"]\n",
        "roles = [\"k3s-agent\"]\njoin = \"alkaid\"\n",
        "hosts.hamal.join",
        r#"join = "alkaid""#,
        "not another k3s node",
    );
}

#[test]
fn no_k3s_server() {
    assert_rejected(r#"roles = ["k3s-server"]"#, r#"roles = ["k3s-agent"]"#, "hosts", "[cluster]", "no host with role `k3s-server`");
}

#[test]
fn block_that_cuts_ssh() {
    assert_rejected(
        "roles = [\"postgresql\"]\n",
        "roles = [\"postgresql\"]\nfirewall.block = [\"172.22.0.0/25\"]\n",
        "hosts.alkaid.firewall.block[0]",
        "172.22.0.0/25",
        "would cut SSH from admin network 172.22.0.0/24",
    );
}

#[test]
fn no_admin_network_cuts_ssh() {
    assert_rejected(r#"admin = ["172.22.0.0/24"]"#, "admin = []", "access.admin", "admin = []", "SSH, the deploy path, would be closed");
}

#[test]
fn unknown_key() {
    assert_rejected("masquerade = true", "masquerade = true\nmasqerade = false", "cluster", "masqerade", "unknown field `masqerade`");
}

#[test]
fn unknown_key_in_host() {
    assert_rejected(
        r#"roles = ["postgresql"]"#,
        "roles = [\"postgresql\"]\nadress = \"1.2.3.4\"",
        "hosts.alkaid",
        "adress",
        "unknown field `adress`",
    );
}

#[test]
fn toml_syntax_error() {
    assert_rejected(r#"name = "loe-homelab""#, r#"name = "loe-homelab"#, "(syntax)", "loe-homelab", "");
}

#[test]
fn every_error_is_reported_at_once() {
    let bad = bundled_inventory().replacen(r#"address = "172.22.0.135""#, r#"address = "172.22.0.300""#, 1).replacen(
        r#"database = "kafka""#,
        r#"database = "events""#,
        1,
    );
    let dir = project_with(&bad);
    let out = run_iac(dir.path(), &["render"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("hosts.hamal.address") && stderr.contains("pipeline.database"), "{stderr}");
    assert!(!dir.path().join("generated").exists(), "nothing may be written on error");
}
