//! Every rendered ruleset against the real `nft`, inside a private network namespace:
//! it passes `nft -c`, loads, loads a second time to the same ruleset, and leaves the tables
//! of others (kube-proxy, flannel through iptables-nft) in place.

use std::path::Path;
use std::process::Command;

use crate::support::{self, bundled_inventory, project_with, repo, run_iac, text};

/// Run `script` with sh in a fresh network namespace (unprivileged through a user namespace).
fn in_netns(script: &str, dir: &Path) -> std::process::Output {
    Command::new("unshare").args(["-rn", "sh", "-euc", script]).current_dir(dir).output().expect("unshare runs")
}

/// Tables that k3s, flannel and kube-proxy own on a real node, as iptables-nft creates them.
const OTHERS: &str = r#"
table ip kube-proxy-standin {
	chain prerouting { type nat hook prerouting priority dstnat; policy accept; ip daddr 10.43.0.1 tcp dport 443 dnat to 172.22.0.134:6443; }
}
table ip filter {
	chain FORWARD { type filter hook forward priority filter; policy accept; ip saddr 10.42.0.0/16 accept; }
}
"#;

fn check_ruleset(file: &Path) {
    if support::tool("nft").is_none() || support::tool("unshare").is_none() {
        return;
    }
    let dir = file.parent().unwrap();
    std::fs::write(dir.join("others.nft"), OTHERS).unwrap();
    let name = file.file_name().unwrap().to_string_lossy();
    let script = format!(
        "nft -c -f {name}
         nft -f others.nft
         nft -f {name}
         nft list ruleset > first.txt
         nft -f {name}
         nft list ruleset > second.txt
         cmp first.txt second.txt
         nft list table ip kube-proxy-standin > /dev/null
         nft list table ip filter > /dev/null
         nft list table inet iac > /dev/null"
    );
    let out = in_netns(&script, dir);
    assert!(out.status.success(), "{}: {}{}", file.display(), text(&out.stdout), text(&out.stderr));
}

#[test]
fn bundled_rulesets_check_load_twice_and_keep_other_tables() {
    for host in ["alphard", "hamal", "alkaid"] {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("ruleset.nft");
        std::fs::copy(repo().join("generated").join(host).join("nftables.nft"), &file).unwrap();
        check_ruleset(&file);
    }
}

#[test]
fn grown_inventory_rulesets_load() {
    let grown = bundled_inventory()
        + r#"
[hosts.mizar]
address = "172.22.0.136"
roles = ["k3s-server"]
firewall.block = ["192.168.7.0/24"]
firewall.allow = [{ from = ["admin", "hamal", "10.9.0.0/16"], proto = "tcp", ports = [80, 443], why = "an \"ingress\" for ${users}" }]
"#;
    let dir = project_with(&grown);
    let out = run_iac(dir.path(), &["render"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for host in ["alphard", "hamal", "alkaid", "mizar"] {
        check_ruleset(&dir.path().join("generated").join(host).join("nftables.nft"));
    }
}

#[test]
fn rulesets_never_flush_and_own_only_their_table() {
    for host in ["alphard", "hamal", "alkaid"] {
        let text = std::fs::read_to_string(repo().join("generated").join(host).join("nftables.nft")).unwrap();
        let rules: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
        assert!(!rules.iter().any(|l| l.contains("flush")), "{host} flushes");
        let tables: Vec<&&str> = rules.iter().filter(|l| l.starts_with("table ") || l.starts_with("delete table")).collect();
        assert_eq!(tables, [&"table inet iac {}", &"delete table inet iac", &"table inet iac {"], "{host}");
    }
}

/// The outage: a forward chain with policy drop and no accepts. Every k3s node's forward chain
/// must accept pod traffic and DNATed Service traffic itself.
#[test]
fn k3s_forward_chains_accept_pod_and_service_traffic() {
    for host in ["alphard", "hamal"] {
        let text = std::fs::read_to_string(repo().join("generated").join(host).join("nftables.nft")).unwrap();
        let forward = text.split("chain forward {").nth(1).expect("forward chain");
        assert!(forward.contains("policy drop;"));
        assert!(forward.contains("ip saddr @pod_cidr ip daddr @pod_cidr accept"), "{host}");
        assert!(forward.contains("ip saddr @pod_cidr ct status dnat accept"), "{host}");
        assert!(forward.contains("ip saddr @pod_cidr ip daddr @dns_upstream udp dport 53 accept"), "{host}");
        assert!(forward.contains("ip saddr @pod_cidr ip daddr @dns_upstream tcp dport 53 accept"), "{host}");
    }
}
