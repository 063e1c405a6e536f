//! `iac verify`: the cluster health checklist. Each item passes, fails (with a hint that says
//! where to look) or is skipped (with why). The in-pod checks run short-lived busybox pods pinned
//! to each node, because the failures that matter (the forward chain dropping pod traffic, DNS
//! not forwarded) are only visible from inside the pod network.
//!
//! This file makes the calls (list nodes and pods, run the probe pods, read their logs);
//! `checks` turns every answer into a check and is tested without an API server; `report`
//! is the result.

mod checks;
mod report;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::{Client, ResourceExt};

use super::Error;
use super::conditions;
use super::wait::{self, Progress, Waits};
use crate::model::Site;
use crate::reporter::Reporter;

use checks::{Ended, POD_TO_POD_HINT, POD_TO_POD_SERVER, ProbeItem};
pub use report::{Check, CheckStatus, Report};

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

/// Run every check; waits and warnings go to `report`.
pub async fn verify(client: &Client, site: &Site, opts: &VerifyOptions, report: &dyn Reporter) -> Result<Report, Error> {
    let cluster = site.cluster.as_ref().ok_or(Error::Missing("cluster"))?;
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
    let (node_checks, ready_nodes) = checks::node_checks(site, &nodes.items);
    checks.extend(node_checks);

    let system = Api::<Pod>::namespaced(client.clone(), "kube-system");
    for c in &checks::components(site, cluster) {
        let pods = system.list(&ListParams::default().labels(c.selector)).await?;
        checks.push(checks::component_check(c, &pods.items));
    }

    if ready_nodes.is_empty() {
        checks.push(Check::skip("checks from inside pods", "no inventory node is Ready"));
        return Ok(Report::new(checks));
    }
    let probes = Probes { pods: Api::namespaced(client.clone(), &opts.probe_namespace), opts, report };
    let api_ip = cluster.api_service_ip().to_string();
    let runs = join_all(ready_nodes.iter().map(|(host, node)| probes.network_from(host, node, &api_ip))).await;
    checks.extend(runs.into_iter().flatten());
    checks.extend(probes.pod_to_pod(&ready_nodes).await);
    Ok(Report::new(checks))
}

struct Probes<'a> {
    pods: Api<Pod>,
    opts: &'a VerifyOptions,
    report: &'a dyn Reporter,
}

impl Probes<'_> {
    async fn create(&self, pod: &Pod) -> Result<String, Error> {
        Ok(self.pods.create(&PostParams::default(), pod).await?.name_any())
    }

    async fn delete(&self, name: &str) {
        if let Err(e) = self.pods.delete(name, &DeleteParams::default().grace_period(0)).await {
            self.report.warning(&format!("could not delete probe pod {name}: {e}"));
        }
    }

    /// Run a pod to completion and read its log; the pod is deleted whatever happens.
    async fn run(&self, role: &str, node: &str, script: String) -> Result<Ended, Error> {
        let name = self.create(&checks::probe_pod(&self.opts.probe_image, role, node, script)).await?;
        let result = self.finish(&name, node).await;
        self.delete(&name).await;
        result
    }

    async fn finish(&self, name: &str, node: &str) -> Result<Ended, Error> {
        let what = format!("probe pod {name} on {node} to finish");
        let phase = wait::until(&what, self.opts.waits, self.report, || async {
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
        let (items, script) = checks::network_probe(host, ext, api_ip);
        if !checks::safe_name(ext) {
            return vec![Check::fail(items[1].1.clone(), format!("`{ext}` is not a host name"), "pass --external-name NAME")];
        }
        let ended = self.run("net", node, script).await;
        checks::probe_checks(&items, ended, host)
    }

    /// A server pod on the first node, a client pod on each other node connecting to its pod IP.
    async fn pod_to_pod(&self, nodes: &[(String, String)]) -> Vec<Check> {
        let [(server_host, server_node), clients @ ..] = nodes else { return vec![] };
        if clients.is_empty() {
            return vec![Check::skip("pod-to-pod across nodes", "only one Ready node")];
        }
        let names: Vec<String> = clients.iter().map(|(h, _)| format!("pod on {h} reaches a pod on {server_host}")).collect();
        let hint = POD_TO_POD_HINT;
        let server_pod = checks::probe_pod(&self.opts.probe_image, "server", server_node, POD_TO_POD_SERVER.into());
        let server = match self.create(&server_pod).await {
            Ok(n) => n,
            Err(e) => {
                return names.into_iter().map(|n| Check::fail(n, format!("cannot create the server pod: {e}"), hint)).collect();
            }
        };
        let what = format!("probe server pod {server} on {server_host} to be ready");
        let ip = wait::until(&what, self.opts.waits, self.report, || async {
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
                let runs = join_all(clients.iter().map(|(_, node)| self.run("client", node, checks::pod_to_pod_script(&ip)))).await;
                names
                    .into_iter()
                    .zip(runs)
                    .zip(clients)
                    .flat_map(|((name, ended), (host, _))| {
                        let item: ProbeItem = ("pod-to-pod", name, hint.to_owned());
                        checks::probe_checks(&[item], ended, host)
                    })
                    .collect()
            }
        };
        self.delete(&server).await;
        checks
    }
}
