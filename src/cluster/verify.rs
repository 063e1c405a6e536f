//! `iac verify`: the cluster health checklist. Each item passes, fails (with a hint that says
//! where to look) or is skipped (with why). The in-pod checks run short-lived busybox pods pinned
//! to each node, because the failures that matter (the forward chain dropping pod traffic, DNS
//! not forwarded) are only visible from inside the pod network.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::Error;
use super::conditions;
use super::wait::{self, Progress, Waits};
use crate::model::{Role, Site};

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Image of the probe pods; it needs `sh`, `nslookup`, `nc` and `httpd` (busybox).
    pub probe_image: String,
    pub probe_namespace: String,
    /// A name outside the cluster that CoreDNS must resolve through the upstream resolver.
    pub external_name: String,
    pub waits: Waits,
    /// The API server address the client talks to, for messages.
    pub server: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), status: CheckStatus::Pass, detail: detail.into(), hint: None }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { name: name.into(), status: CheckStatus::Fail, detail: detail.into(), hint: Some(hint.into()) }
    }
    fn skip(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), status: CheckStatus::Skip, detail: detail.into(), hint: None }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
    /// Why the checks after the last one did not run (the API server is unreachable). Said,
    /// but not counted as a check of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Self {
        Self { ok: checks.iter().all(|c| c.status != CheckStatus::Fail), checks, not_run: None }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let tag = match c.status {
                CheckStatus::Pass => "PASS",
                CheckStatus::Fail => "FAIL",
                CheckStatus::Skip => "SKIP",
            };
            let _ = writeln!(out, "[{tag}] {}: {}", c.name, c.detail);
            if let Some(h) = &c.hint {
                let _ = writeln!(out, "       hint: {h}");
            }
        }
        if let Some(why) = &self.not_run {
            let _ = writeln!(out, "(the other checks did not run: {why})");
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        let _ = writeln!(
            out,
            "{} check{}: {} passed, {} failed, {} skipped",
            self.checks.len(),
            if self.checks.len() == 1 { "" } else { "s" },
            count(CheckStatus::Pass),
            count(CheckStatus::Fail),
            count(CheckStatus::Skip)
        );
        out
    }
}

/// A system component and how to find its pods in kube-system.
struct Component {
    name: &'static str,
    selector: &'static str,
    hint: String,
}

pub async fn verify(client: &Client, site: &Site, opts: &VerifyOptions) -> Result<Report, Error> {
    let cluster = site.cluster.as_ref().ok_or(Error::Missing("cluster"))?;
    let server = site.first_server().map(|h| h.name.as_str()).unwrap_or("the k3s server");
    let mut checks = Vec::new();

    match client.apiserver_version().await {
        Ok(v) => checks.push(Check::pass("API server reachable", format!("Kubernetes {}", v.git_version))),
        Err(e) => {
            checks.push(Check::fail(
                "API server reachable",
                format!("{}: {}", opts.server, super::describe(&e)),
                super::reach_hint(site, &opts.server),
            ));
            let mut report = Report::new(checks);
            report.not_run = Some("they all need the API server".into());
            return Ok(report);
        }
    }

    // Nodes: every inventory k3s node, matched by name or InternalIP.
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?;
    let mut ready_nodes = Vec::new();
    for host in site.k3s_nodes() {
        let name = format!("node {} registered and Ready", host.name);
        let unit = if host.has(Role::K3sServer) { "k3s" } else { "k3s-agent" };
        let addr = host.address.to_string();
        let found = nodes.items.iter().find(|n| {
            n.name_any() == host.name
                || n.status
                    .as_ref()
                    .and_then(|s| s.addresses.as_ref())
                    .is_some_and(|a| a.iter().any(|a| a.type_ == "InternalIP" && a.address == addr))
        });
        match found {
            None => checks.push(Check::fail(
                name,
                "not registered",
                format!(
                    "on {h}: systemctl status {unit}; journalctl -u {unit}. An agent needs the token file \
                     and TCP 6443 to {server}",
                    h = host.name
                ),
            )),
            Some(node) => match conditions::node_ready(node) {
                Ok(()) => {
                    let version = node.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| i.kubelet_version.clone());
                    checks.push(Check::pass(name, format!("Ready ({})", version.unwrap_or_default())));
                    ready_nodes.push((host.name.clone(), node.name_any()));
                }
                Err(why) => checks.push(Check::fail(
                    name,
                    why,
                    format!(
                        "on {h}: journalctl -u {unit}. NotReady usually means the kubelet or flannel is down; \
                         nodes need UDP 8472 (VXLAN) and TCP 10250 between them",
                        h = host.name
                    ),
                )),
            },
        }
    }

    let api = cluster.api_service_ip();
    let dns_up: Vec<String> = site.dns_upstream.iter().map(ToString::to_string).collect();
    let components = [
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
    ];
    let system = Api::<Pod>::namespaced(client.clone(), "kube-system");
    for c in &components {
        let pods = system.list(&ListParams::default().labels(c.selector)).await?;
        checks.push(component_check(c, &pods.items));
    }

    if ready_nodes.is_empty() {
        checks.push(Check::skip("checks from inside pods", "no inventory node is Ready"));
        return Ok(Report::new(checks));
    }
    let probes = Probes { pods: Api::namespaced(client.clone(), &opts.probe_namespace), opts };
    let api_ip = api.to_string();
    let runs = join_all(ready_nodes.iter().map(|(host, node)| probes.network_from(host, node, &api_ip))).await;
    checks.extend(runs.into_iter().flatten());
    checks.extend(probes.pod_to_pod(&ready_nodes).await);
    Ok(Report::new(checks))
}

fn component_check(c: &Component, pods: &[Pod]) -> Check {
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
fn safe_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

struct Probes<'a> {
    pods: Api<Pod>,
    opts: &'a VerifyOptions,
}

/// How a probe pod ended.
struct Ended {
    phase: String,
    log: String,
}

impl Probes<'_> {
    fn pod(&self, role: &str, node: &str, script: String) -> Pod {
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
                    image: Some(self.opts.probe_image.clone()),
                    command: Some(vec!["sh".into(), "-c".into(), script]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    async fn create(&self, pod: &Pod) -> Result<String, Error> {
        Ok(self.pods.create(&PostParams::default(), pod).await?.name_any())
    }

    async fn delete(&self, name: &str) {
        if let Err(e) = self.pods.delete(name, &DeleteParams::default().grace_period(0)).await {
            eprintln!("warning: could not delete probe pod {name}: {e}");
        }
    }

    /// Run a pod to completion and read its log; the pod is deleted whatever happens.
    async fn run(&self, role: &str, node: &str, script: String) -> Result<Ended, Error> {
        let name = self.create(&self.pod(role, node, script)).await?;
        let result = self.finish(&name, node).await;
        self.delete(&name).await;
        result
    }

    async fn finish(&self, name: &str, node: &str) -> Result<Ended, Error> {
        let what = format!("probe pod {name} on {node} to finish");
        let phase = wait::until(&what, self.opts.waits, || async {
            let pod = self.pods.get(name).await?;
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            Ok(match phase.as_str() {
                "Succeeded" | "Failed" => Progress::Done(phase),
                _ => Progress::Pending(conditions::pod_state(&pod)),
            })
        })
        .await?;
        let log = self.pods.logs(name, &LogParams::default()).await?;
        Ok(Ended { phase, log })
    }

    /// DNS (cluster and external names) and the API service VIP, from a pod on `node`.
    async fn network_from(&self, host: &str, node: &str, api_ip: &str) -> Vec<Check> {
        let ext = &self.opts.external_name;
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
                format!("DNS {ext} from a pod on {host}"),
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
        if !safe_name(ext) {
            return vec![Check::fail(items[1].1.clone(), format!("`{ext}` is not a host name"), "pass --external-name NAME")];
        }
        let script = format!(
            "{PRELUDE}probe dns-cluster nslookup kubernetes.default.svc.cluster.local\n\
             probe dns-external nslookup {ext}\nprobe api-vip nc -z -w 5 {api_ip} 443\nexit $rc\n"
        );
        let ended = self.run("net", node, script).await;
        probe_checks(&items, ended, host)
    }

    /// A server pod on the first node, a client pod on each other node connecting to its pod IP.
    async fn pod_to_pod(&self, nodes: &[(String, String)]) -> Vec<Check> {
        let [(server_host, server_node), clients @ ..] = nodes else { return vec![] };
        if clients.is_empty() {
            return vec![Check::skip("pod-to-pod across nodes", "only one Ready node")];
        }
        let names: Vec<String> = clients.iter().map(|(h, _)| format!("pod on {h} reaches a pod on {server_host}")).collect();
        let hint = "cross-node pod traffic is dropped: nodes need UDP 8472 (flannel VXLAN) between them and the forward \
                    chain must accept the pod CIDR";
        let server = match self.create(&self.pod("server", server_node, "exec httpd -f -p 8080 -h /tmp".into())).await {
            Ok(n) => n,
            Err(e) => {
                return names.into_iter().map(|n| Check::fail(n, format!("cannot create the server pod: {e}"), hint)).collect();
            }
        };
        let what = format!("probe server pod {server} on {server_host} to be ready");
        let ip = wait::until(&what, self.opts.waits, || async {
            let pod = self.pods.get(&server).await?;
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
            Ok(match ip {
                Some(ip) if conditions::pod_ready(&pod) => Progress::Done(ip),
                _ if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed") => {
                    Progress::Failed(conditions::pod_state(&pod))
                }
                _ => Progress::Pending(conditions::pod_state(&pod)),
            })
        })
        .await;
        let checks = match ip {
            Err(e) => names.into_iter().map(|n| Check::fail(n, format!("server pod: {e}"), hint)).collect(),
            Ok(ip) => {
                let runs = join_all(
                    clients
                        .iter()
                        .map(|(_, node)| self.run("client", node, format!("{PRELUDE}probe pod-to-pod nc -z -w 5 {ip} 8080\nexit $rc\n"))),
                )
                .await;
                names
                    .into_iter()
                    .zip(runs)
                    .zip(clients)
                    .flat_map(|((name, ended), (host, _))| probe_checks(&[("pod-to-pod", name, hint.to_owned())], ended, host))
                    .collect()
            }
        };
        self.delete(&server).await;
        checks
    }
}

/// Turn a probe pod's log into one check per expected marker.
fn probe_checks(items: &[(&str, String, String)], ended: Result<Ended, Error>, host: &str) -> Vec<Check> {
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
    fn report_fails_when_any_check_fails() {
        let r = Report::new(vec![Check::pass("a", "ok"), Check::skip("b", "n/a")]);
        assert!(r.ok);
        let r = Report::new(vec![Check::pass("a", "ok"), Check::fail("c", "down", "look")]);
        assert!(!r.ok);
        assert!(r.text().contains("[FAIL] c: down\n       hint: look\n"));
        assert!(r.text().ends_with("2 checks: 1 passed, 1 failed, 0 skipped\n"));
        let mut r = Report::new(vec![Check::fail("API server reachable", "refused", "look")]);
        r.not_run = Some("they all need the API server".into());
        assert!(
            r.text().ends_with("(the other checks did not run: they all need the API server)\n1 check: 0 passed, 1 failed, 0 skipped\n")
        );
    }
}
