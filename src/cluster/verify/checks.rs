//! The checklist's pure half: each check built from what the API server answered (nodes,
//! system pods, a probe pod's log), and the probe pods' specs and shell scripts.
//! Nothing here talks to the cluster, so every check is unit-tested with hand-made objects;
//! `verify` (the module above) makes the calls and feeds the answers in.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::super::conditions;
use super::report::{Check, CheckStatus};
use crate::model::{Cluster, Host, Role, Site};

/// Every inventory k3s node, matched among the API's nodes by name or InternalIP: one check
/// each, and the Ready ones as (inventory host, node name) for the in-pod checks.
pub fn node_checks(site: &Site, nodes: &[Node]) -> (Vec<Check>, Vec<(String, String)>) {
    let server = site.first_server().map(|h| h.name.as_str()).unwrap_or("the k3s server");
    let mut checks = Vec::new();
    let mut ready = Vec::new();
    for host in site.k3s_nodes() {
        let check = node_check(host, find_node(host, nodes), server);
        if check.status == CheckStatus::Pass
            && let Some(node) = find_node(host, nodes)
        {
            ready.push((host.name.clone(), node.name_any()));
        }
        checks.push(check);
    }
    (checks, ready)
}

fn find_node<'a>(host: &Host, nodes: &'a [Node]) -> Option<&'a Node> {
    let addr = host.address.to_string();
    nodes.iter().find(|n| {
        n.name_any() == host.name
            || n.status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .is_some_and(|a| a.iter().any(|a| a.type_ == "InternalIP" && a.address == addr))
    })
}

fn node_check(host: &Host, found: Option<&Node>, server: &str) -> Check {
    let name = format!("node {} registered and Ready", host.name);
    let unit = if host.has(Role::K3sServer) { "k3s" } else { "k3s-agent" };
    let h = &host.name;
    match found {
        None => Check::fail(
            name,
            "not registered",
            format!("on {h}: systemctl status {unit}; journalctl -u {unit}. An agent needs the token file and TCP 6443 to {server}"),
        ),
        Some(node) => match conditions::node_ready(node) {
            Ok(()) => {
                let version = node.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| i.kubelet_version.clone());
                Check::pass(name, format!("Ready ({})", version.unwrap_or_default()))
            }
            Err(why) => Check::fail(
                name,
                why,
                format!(
                    "on {h}: journalctl -u {unit}. NotReady usually means the kubelet or flannel is down; \
                     nodes need UDP 8472 (VXLAN) and TCP 10250 between them"
                ),
            ),
        },
    }
}

/// A system component and how to find its pods in kube-system.
pub struct Component {
    pub name: &'static str,
    pub selector: &'static str,
    pub hint: String,
}

/// The kube-system components every k3s estate of ours runs.
pub fn components(site: &Site, cluster: &Cluster) -> [Component; 3] {
    let api = cluster.api_service_ip();
    let dns_up: Vec<String> = site.dns_upstream.iter().map(ToString::to_string).collect();
    [
        Component {
            name: "CoreDNS",
            selector: "k8s-app=kube-dns",
            hint: format!(
                "kubectl -n kube-system logs -l k8s-app=kube-dns. CoreDNS needs the API at {api}:443 and the \
                 upstream resolver {} on UDP/TCP 53: see the nodes' input and forward chains (iac flows)",
                dns_up.join(", ")
            ),
        },
        Component {
            name: "local-path-provisioner",
            selector: "app=local-path-provisioner",
            hint: format!("kubectl -n kube-system logs -l app=local-path-provisioner; it needs the API at {api}:443"),
        },
        Component {
            name: "metrics-server",
            selector: "k8s-app=metrics-server",
            hint: "kubectl -n kube-system logs -l k8s-app=metrics-server; it scrapes every kubelet on TCP 10250".into(),
        },
    ]
}

/// A component's pods (those not being deleted) must all be ready.
pub fn component_check(c: &Component, pods: &[Pod]) -> Check {
    let name = format!("{} pods Running and ready", c.name);
    let live: Vec<&Pod> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    if live.is_empty() {
        return Check::fail(name, format!("no pod with label {} in kube-system", c.selector), c.hint.clone());
    }
    let not_ready: Vec<String> =
        live.iter().filter(|p| !conditions::pod_ready(p)).map(|p| format!("{} ({})", p.name_any(), conditions::pod_state(p))).collect();
    if not_ready.is_empty() {
        Check::pass(name, format!("{}/{} ready", live.len(), live.len()))
    } else {
        Check::fail(name, format!("{}/{} ready; {}", live.len() - not_ready.len(), live.len(), not_ready.join("; ")), c.hint.clone())
    }
}

/// What a probe pod printed: `iac-probe KEY ok` or `iac-probe KEY fail DETAIL` per line.
fn parse_probe_log(log: &str) -> BTreeMap<String, Result<(), String>> {
    log.lines()
        .filter_map(|l| l.strip_prefix("iac-probe "))
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            let key = parts.next()?.to_owned();
            match parts.next()? {
                "ok" => Some((key, Ok(()))),
                _ => Some((key, Err(parts.next().unwrap_or("").trim().to_owned()))),
            }
        })
        .collect()
}

/// The shell prelude every probe pod runs: `probe KEY CMD...` prints a marker line.
const PRELUDE: &str = r#"rc=0
probe() { key=$1; shift; if out=$("$@" 2>&1); then echo "iac-probe $key ok"; else echo "iac-probe $key fail $(echo "$out" | tail -n 3 | tr '\n' ' ')"; rc=1; fi; }
"#;

/// A hostname safe to put in a shell command line.
pub fn safe_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// A short-lived probe pod pinned to `node`, running `script` with busybox's `sh`.
pub fn probe_pod(image: &str, role: &str, node: &str, script: String) -> Pod {
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("iac-verify-{role}-")),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/name".to_owned(), "iac-verify".to_owned()),
                ("app.kubernetes.io/component".to_owned(), role.to_owned()),
                ("app.kubernetes.io/managed-by".to_owned(), "iac".to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.to_owned()),
            restart_policy: Some("Never".into()),
            termination_grace_period_seconds: Some(0),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            containers: vec![Container {
                name: "probe".into(),
                image: Some(image.to_owned()),
                command: Some(vec!["sh".into(), "-c".into(), script]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// One check a probe pod's log answers: its marker key, the check's name and its hint.
pub type ProbeItem = (&'static str, String, String);

/// DNS (cluster and external names) and the API service VIP, from a pod on `host`: the checks
/// and the script that answers them. `external` must be [`safe_name`].
pub fn network_probe(host: &str, external: &str, api_ip: &str) -> ([ProbeItem; 3], String) {
    let items = [
        (
            "dns-cluster",
            format!("DNS kubernetes.default from a pod on {host}"),
            format!(
                "CoreDNS is unreachable from this node's pods or cannot reach the API: check CoreDNS (above) \
                 and that the forward chain accepts the pod and service CIDRs (iac flows --host {host})"
            ),
        ),
        (
            "dns-external",
            format!("DNS {external} from a pod on {host}"),
            "CoreDNS cannot reach the upstream resolver: the node must forward UDP/TCP 53 from the pod CIDR \
             to [dns] upstream, and k3s must run with --resolv-conf naming it"
                .to_owned(),
        ),
        (
            "api-vip",
            format!("API service {api_ip}:443 from a pod on {host}"),
            "pods cannot reach the API through the service VIP: kube-proxy DNATs it to the server's 6443, \
             which must accept the pod CIDR and the other nodes' addresses on its input chain"
                .to_owned(),
        ),
    ];
    let script = format!(
        "{PRELUDE}probe dns-cluster nslookup kubernetes.default.svc.cluster.local\n\
         probe dns-external nslookup {external}\nprobe api-vip nc -z -w 5 {api_ip} 443\nexit $rc\n"
    );
    (items, script)
}

/// What a failed pod-to-pod check means.
pub const POD_TO_POD_HINT: &str = "cross-node pod traffic is dropped: nodes need UDP 8472 (flannel VXLAN) between them and the \
                                   forward chain must accept the pod CIDR";

/// The server pod's command: busybox's httpd on 8080.
pub const POD_TO_POD_SERVER: &str = "exec httpd -f -p 8080 -h /tmp";

/// The client pod's script: connect to the server pod's `ip`:8080.
pub fn pod_to_pod_script(ip: &str) -> String {
    format!("{PRELUDE}probe pod-to-pod nc -z -w 5 {ip} 8080\nexit $rc\n")
}

/// How a probe pod ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub phase: String,
    pub log: String,
}

/// Turn a probe pod's log (or why it did not run) into one check per expected marker.
pub fn probe_checks<E: std::fmt::Display>(items: &[ProbeItem], ended: Result<Ended, E>, host: &str) -> Vec<Check> {
    match ended {
        Err(e) => items
            .iter()
            .map(|(_, name, _)| {
                Check::fail(
                    name.clone(),
                    format!("probe pod did not run: {e}"),
                    format!("kubectl get events; the probe image must be pullable on {host}"),
                )
            })
            .collect(),
        Ok(ended) => {
            let results = parse_probe_log(&ended.log);
            items
                .iter()
                .map(|(key, name, hint)| match results.get(*key) {
                    Some(Ok(())) => Check::pass(name.clone(), "ok"),
                    Some(Err(detail)) => {
                        Check::fail(name.clone(), if detail.is_empty() { "failed".into() } else { detail.clone() }, hint.clone())
                    }
                    None => Check::fail(
                        name.clone(),
                        format!("probe pod ended {} without reporting; log: {}", ended.phase, ended.log.trim()),
                        hint.clone(),
                    ),
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        crate::load_site(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hosts/inventory.toml")).unwrap()
    }

    fn node(value: serde_json::Value) -> Node {
        serde_json::from_value(value).unwrap()
    }

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn probe_log_markers() {
        let log = "Server: 10.43.0.10\niac-probe dns-cluster ok\niac-probe dns-external fail ;; connection timed out; no servers could be reached \niac-probe api-vip ok\n";
        let r = parse_probe_log(log);
        assert_eq!(r["dns-cluster"], Ok(()));
        assert_eq!(r["dns-external"], Err(";; connection timed out; no servers could be reached".into()));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn external_name_must_be_shell_safe() {
        assert!(safe_name("example.com"));
        assert!(!safe_name("example.com; rm -rf /"));
        assert!(!safe_name(""));
    }

    #[test]
    fn nodes_match_by_name_or_internal_ip_and_must_be_ready() {
        let site = site();
        let ready = |name: &str, ip: &str| {
            node(serde_json::json!({"metadata": {"name": name}, "status": {
                "addresses": [{"type": "InternalIP", "address": ip}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "nodeInfo": {"kubeletVersion": "v1.32.5+k3s1", "architecture": "", "bootID": "", "containerRuntimeVersion": "",
                    "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "operatingSystem": "", "osImage": "", "systemUUID": ""}}}))
        };
        // alphard by name; hamal registered under another name, found by its address.
        let nodes = [ready("alphard", "172.22.0.134"), ready("ip-172-22-0-135", "172.22.0.135")];
        let (checks, up) = node_checks(&site, &nodes);
        assert!(checks.iter().all(|c| c.status == CheckStatus::Pass), "{checks:?}");
        assert_eq!(checks[0].detail, "Ready (v1.32.5+k3s1)");
        assert_eq!(up, [("alphard".to_string(), "alphard".to_string()), ("hamal".to_string(), "ip-172-22-0-135".to_string())]);

        let not_ready = node(serde_json::json!({"metadata": {"name": "alphard"},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "flannel down"}]}}));
        let (checks, up) = node_checks(&site, &[not_ready]);
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].status, CheckStatus::Fail);
        assert!(checks[0].hint.as_deref().is_some_and(|h| h.starts_with("on alphard: journalctl -u k3s.")), "{checks:?}");
        assert_eq!((checks[1].detail.as_str(), checks[1].status), ("not registered", CheckStatus::Fail));
        assert!(checks[1].hint.as_deref().is_some_and(|h| h.contains("systemctl status k3s-agent") && h.contains("TCP 6443 to alphard")));
        assert!(up.is_empty());
    }

    #[test]
    fn a_component_passes_only_when_every_live_pod_is_ready() {
        let site = site();
        let cluster = site.cluster.as_ref().unwrap();
        let [coredns, ..] = components(&site, cluster);
        assert!(coredns.hint.contains("10.43.0.1:443"), "{}", coredns.hint);
        let ready = pod(serde_json::json!({"metadata": {"name": "coredns-1"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}));
        let waiting = pod(serde_json::json!({"metadata": {"name": "coredns-2"},
            "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}}));
        let leaving = pod(serde_json::json!({"metadata": {"name": "coredns-0", "deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        assert_eq!(component_check(&coredns, &[ready.clone(), leaving.clone()]).detail, "1/1 ready");
        let c = component_check(&coredns, &[ready, waiting]);
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.starts_with("1/2 ready; coredns-2 ("), "{}", c.detail);
        let c = component_check(&coredns, &[leaving]);
        assert_eq!((c.status, c.detail.as_str()), (CheckStatus::Fail, "no pod with label k8s-app=kube-dns in kube-system"));
    }

    #[test]
    fn a_probe_log_becomes_one_check_per_marker() {
        let (items, script) = network_probe("hamal", "example.com", "10.43.0.1");
        assert!(script.contains("probe dns-external nslookup example.com\n") && script.ends_with("exit $rc\n"), "{script}");
        let log = "iac-probe dns-cluster ok\niac-probe dns-external fail timed out\n";
        let ended: Result<Ended, String> = Ok(Ended { phase: "Failed".into(), log: log.into() });
        let checks = probe_checks(&items, ended, "hamal");
        let got: Vec<(CheckStatus, &str)> = checks.iter().map(|c| (c.status, c.detail.as_str())).collect();
        assert_eq!(got[..2], [(CheckStatus::Pass, "ok"), (CheckStatus::Fail, "timed out")]);
        assert_eq!(got[2].0, CheckStatus::Fail);
        assert!(got[2].1.starts_with("probe pod ended Failed without reporting"), "{got:?}");
        let checks = probe_checks(&items, Err::<Ended, _>("ImagePullBackOff"), "hamal");
        assert!(checks.iter().all(|c| c.detail == "probe pod did not run: ImagePullBackOff"));
        assert!(checks[0].hint.as_deref().is_some_and(|h| h.ends_with("pullable on hamal")));
    }

    #[test]
    fn probe_pods_are_pinned_short_lived_and_unprivileged() {
        let p = probe_pod("busybox:1.37", "net", "hamal", pod_to_pod_script("10.42.0.9"));
        let spec = p.spec.unwrap();
        assert_eq!(p.metadata.generate_name.as_deref(), Some("iac-verify-net-"));
        assert_eq!((spec.node_name.as_deref(), spec.restart_policy.as_deref()), (Some("hamal"), Some("Never")));
        assert_eq!(spec.automount_service_account_token, Some(false));
        let command = spec.containers[0].command.clone().unwrap();
        assert_eq!(command[..2], ["sh".to_string(), "-c".to_string()]);
        assert!(command[2].contains("probe pod-to-pod nc -z -w 5 10.42.0.9 8080\n"));
    }
}
