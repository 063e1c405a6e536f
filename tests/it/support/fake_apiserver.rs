//! An in-process fake Kubernetes API server for the cluster tests: plain HTTP on 127.0.0.1,
//! answering the real API paths with real Kubernetes JSON. It keeps objects in memory and plays
//! the controllers and kubelet instantly (a StatefulSet is ready as soon as it is applied, with
//! its pods; a probe pod has finished as soon as it is created) as the scenario says.
//!
//! Where `iac` depends on the API server's behaviour, the fake answers as a real one does:
//! - server-side apply: `fieldManager` required, field ownership per manager (`managedFields`,
//!   FieldsV1), 409 Conflict with `FieldManagerConflict` causes when another manager owns a field
//!   with a different value and `force` is off, fields the manager no longer applies are removed,
//!   an apply that changes nothing keeps the resourceVersion; `dryRun=All` persists nothing;
//! - 422 Invalid (Status with `details.causes[].field`) for immutable fields: a StatefulSet's
//!   spec outside replicas/ordinals/template/updateStrategy/revisionHistoryLimit/
//!   persistentVolumeClaimRetentionPolicy/minReadySeconds ("Forbidden: updates to statefulset
//!   spec ..."), a Deployment's or Job's selector and a Job's template ("field is immutable"),
//!   and a validation error that is not about immutability (a negative Job backoffLimit);
//! - merge patches by another manager (`kubectl edit`'s Update operation);
//! - lists with label selectors, DELETE with `propagationPolicy`, generateName, pod logs;
//! - the service proxy to a fake Kafka Connect REST API (connectors by name, status, the
//!   KIP-875 offsets endpoint, validate, 409 while "rebalancing");
//! - the `exec` subresource over a WebSocket upgrade with the v5/v4.channel.k8s.io protocols
//!   (kube-rs's `Client::connect`): the fake kubelet runs the command with the real bash, with
//!   stand-ins for the Kafka tools on `KAFKA_BIN`, and streams stdout/stderr/status frames.
//!
//! Every request is recorded so tests can assert order and content.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Every value of every query parameter, in order (`command` repeats for exec).
    pub query_all: Vec<(String, String)>,
    pub content_type: String,
    pub body: String,
}

/// What the fake cluster looks like and how its "controllers" behave.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub nodes: Vec<Value>,
    pub system_pods: Vec<Value>,
    /// Nodes whose probe pods cannot resolve external names.
    pub external_dns_broken_on: Vec<String>,
    /// Probe pods never start (their image cannot be pulled).
    pub probe_pods_stuck: bool,
    /// The StatefulSet's pods become ready.
    pub kafka_ready: bool,
    /// How the producer Job ends: "Complete" or "Failed".
    pub job_outcome: &'static str,
    /// 409 answers to PUT /connectors/NAME/config before it succeeds.
    pub connect_conflicts: usize,
    /// Successive answers to GET /connectors/NAME/status (the last one repeats).
    pub connector_statuses: Vec<Value>,
    /// Successive committed offsets of the sink's partition 0 (GET /connectors/NAME/offsets;
    /// the last one repeats). Empty: the connector has committed nothing yet.
    pub committed: Vec<i64>,
    /// The topic's partitions' end offsets, as `kafka-get-offsets.sh --time -1` prints them.
    pub topic_end: Vec<i64>,
    /// The dead-letter topic's (earliest, latest) offset of partition 0; None: no such topic.
    pub dlq: Option<(i64, i64)>,
}

pub fn node(name: &str, ip: &str, ready: &str) -> Value {
    let (reason, message) = if ready == "True" {
        ("KubeletReady", "kubelet is posting ready status")
    } else {
        (
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
        )
    };
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "100",
            "labels": {"kubernetes.io/hostname": name}},
        "spec": {"podCIDR": "10.42.0.0/24"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
                {"type": "Ready", "status": ready, "reason": reason, "message": message,
                 "lastHeartbeatTime": "2026-11-25T16:00:00Z", "lastTransitionTime": "2026-11-25T15:00:00Z"}
            ],
            "nodeInfo": {"architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "containerd://2.1.4-k3s1",
                "kernelVersion": "6.12.58", "kubeProxyVersion": "v1.33.5+k3s1", "kubeletVersion": "v1.33.5+k3s1",
                "machineID": "m", "operatingSystem": "linux", "osImage": "NixOS 25.11 (Xantusia)", "systemUUID": "s"}
        }
    })
}

pub fn system_pod(name: &str, labels: Value, node: &str, ready: bool) -> Value {
    let state = if ready {
        json!({"running": {"startedAt": "2026-11-25T15:01:00Z"}})
    } else {
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}})
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system", "labels": labels, "uid": format!("uid-{name}"), "resourceVersion": "200"},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "rancher/x"}]},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": if ready { "True" } else { "False" }},
                {"type": "ContainersReady", "status": if ready { "True" } else { "False" }},
                {"type": "PodScheduled", "status": "True"}
            ],
            "containerStatuses": [{"name": "main", "ready": ready, "restartCount": if ready { 0 } else { 12 },
                "image": "rancher/x", "imageID": "", "state": state}]
        }
    })
}

pub fn connector_status(state: &str, tasks: &[(&str, Option<&str>)]) -> Value {
    let tasks: Vec<Value> = tasks
        .iter()
        .enumerate()
        .map(|(i, (s, trace))| {
            let mut t = json!({"id": i, "state": s, "worker_id": "10.42.1.9:8083"});
            if let Some(tr) = trace {
                t["trace"] = json!(tr);
            }
            t
        })
        .collect();
    json!({"name": "postgres-sink", "connector": {"state": state, "worker_id": "10.42.1.9:8083"}, "tasks": tasks, "type": "sink"})
}

impl Scenario {
    /// The bundled inventory's estate, all well: alphard (server) and hamal (agent) Ready,
    /// system pods ready, DNS working, Kafka and Connect becoming ready, the connector running
    /// and caught up.
    pub fn healthy() -> Self {
        Self {
            nodes: vec![node("alphard", "172.22.0.134", "True"), node("hamal", "172.22.0.135", "True")],
            system_pods: vec![
                system_pod("coredns-6f9c8d7b5-x2k4q", json!({"k8s-app": "kube-dns"}), "alphard", true),
                system_pod("local-path-provisioner-5cf85fd84d-qm7r2", json!({"app": "local-path-provisioner"}), "alphard", true),
                system_pod("metrics-server-5985cbc9d7-8lzvn", json!({"k8s-app": "metrics-server"}), "hamal", true),
            ],
            external_dns_broken_on: vec![],
            probe_pods_stuck: false,
            kafka_ready: true,
            job_outcome: "Complete",
            connect_conflicts: 1,
            connector_statuses: vec![connector_status("RUNNING", &[]), connector_status("RUNNING", &[("RUNNING", None)])],
            committed: vec![10],
            topic_end: vec![10],
            dlq: None,
        }
    }
}

/// Which fields a manager owns: leaf paths of the object (lists are atomic, as the fake does not
/// model associative-list keys), and how it last wrote them.
#[derive(Debug, Clone, Default)]
struct Owner {
    operation: &'static str,
    api_version: String,
    fields: BTreeSet<Vec<String>>,
}

#[derive(Debug, Default)]
pub struct State {
    pub requests: Vec<Recorded>,
    /// Stored objects by collection path (e.g. `/apis/apps/v1/namespaces/p/statefulsets`) and name.
    pub objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// Field owners per object path and manager.
    owners: BTreeMap<String, BTreeMap<String, Owner>>,
    rv: u64,
    names: u64,
    /// Kafka Connect's connectors: name -> config.
    pub connectors: BTreeMap<String, Value>,
    status_polls: usize,
    offset_polls: usize,
    conflicts_left: usize,
    /// Exec commands the fake kubelet ran: (pod path, container, command).
    pub execs: Vec<(String, String, Vec<String>)>,
}

pub struct Fake {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

type Reply = Response<Full<Bytes>>;

impl Fake {
    pub async fn start(scenario: Scenario) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State { conflicts_left: scenario.connect_conflicts, rv: 1000, ..State::default() }));
        let scenario = Arc::new(scenario);
        let (st, sc) = (state.clone(), scenario.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (st, sc) = (st.clone(), sc.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), sc.clone(), req));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).with_upgrades().await;
                });
            }
        });
        Fake { addr, state }
    }

    /// A kubeconfig naming this server (plain HTTP, a bearer token).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, kubeconfig_text(&format!("http://{}", self.addr))).unwrap();
        path
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn object(&self, collection: &str, name: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(collection).and_then(|c| c.get(name)).cloned()
    }

    pub fn collection(&self, collection: &str) -> BTreeMap<String, Value> {
        self.state.lock().unwrap().objects.get(collection).cloned().unwrap_or_default()
    }

    /// Managers of an object and the dotted paths each owns (`.spec.replicas`).
    pub fn managers(&self, path: &str) -> BTreeMap<String, BTreeSet<String>> {
        let st = self.state.lock().unwrap();
        st.owners
            .get(path)
            .map(|m| m.iter().map(|(k, o)| (k.clone(), o.fields.iter().map(|f| dotted(f)).collect())).collect())
            .unwrap_or_default()
    }
}

pub fn kubeconfig_text(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n"
    )
}

fn reply(code: StatusCode, body: &Value) -> Reply {
    Response::builder()
        .status(code)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap()
}

fn text(code: StatusCode, body: &str) -> Reply {
    Response::builder().status(code).header("Content-Type", "text/plain").body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

fn status(code: StatusCode, reason: &str, message: &str) -> Reply {
    reply(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

/// A Status with `details`, as the API server sends for 409 and 422.
fn status_with(code: StatusCode, reason: &str, message: &str, kind: &str, group: &str, name: &str, causes: Value) -> Reply {
    reply(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                "reason": reason, "details": {"name": name, "group": group, "kind": kind, "causes": causes}, "code": code.as_u16()}),
    )
}

fn resource(name: &str, kind: &str, namespaced: bool) -> Value {
    json!({"name": name, "singularName": kind.to_lowercase(), "namespaced": namespaced, "kind": kind,
           "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
}

fn discovery(path: &str) -> Option<Value> {
    let (gv, resources) = match path {
        "/api/v1" => (
            "v1",
            vec![
                resource("namespaces", "Namespace", false),
                resource("nodes", "Node", false),
                resource("pods", "Pod", true),
                json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}),
                json!({"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]}),
                resource("secrets", "Secret", true),
                resource("services", "Service", true),
                json!({"name": "services/proxy", "singularName": "", "namespaced": true, "kind": "ServiceProxyOptions", "verbs": ["create", "delete", "get", "patch", "update"]}),
                resource("configmaps", "ConfigMap", true),
                resource("serviceaccounts", "ServiceAccount", true),
                resource("persistentvolumeclaims", "PersistentVolumeClaim", true),
            ],
        ),
        "/apis/apps/v1" => ("apps/v1", vec![resource("statefulsets", "StatefulSet", true), resource("deployments", "Deployment", true)]),
        "/apis/batch/v1" => ("batch/v1", vec![resource("jobs", "Job", true)]),
        "/apis/policy/v1" => ("policy/v1", vec![resource("poddisruptionbudgets", "PodDisruptionBudget", true)]),
        "/apis/networking.k8s.io/v1" => ("networking.k8s.io/v1", vec![resource("networkpolicies", "NetworkPolicy", true)]),
        _ => return None,
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// Collection names the fake serves as lists.
const PLURALS: &[&str] = &[
    "namespaces",
    "pods",
    "secrets",
    "services",
    "configmaps",
    "persistentvolumeclaims",
    "statefulsets",
    "deployments",
    "jobs",
    "poddisruptionbudgets",
    "networkpolicies",
];

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "999"}, "items": items})
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        obj.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v)
    })
}

async fn handle(state: Arc<Mutex<State>>, scenario: Arc<Scenario>, mut req: Request<Incoming>) -> Result<Reply, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query_all: Vec<(String, String)> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), percent_decode(v))
        })
        .collect();
    let query: BTreeMap<String, String> = query_all.iter().cloned().collect();
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let upgrade = req.headers().get("upgrade").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade && path.ends_with("/exec") {
        state.lock().unwrap().requests.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            query_all: query_all.clone(),
            content_type,
            body: String::new(),
        });
        return Ok(exec(state, scenario, &mut req, &path, &query_all));
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut st = state.lock().unwrap();
    st.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        query_all,
        content_type: content_type.clone(),
        body: body.clone(),
    });
    Ok(route(&mut st, &scenario, &method, &path, &query, &content_type, &body))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn route(st: &mut State, sc: &Scenario, method: &Method, path: &str, query: &BTreeMap<String, String>, ct: &str, body: &str) -> Reply {
    if path == "/version" {
        return reply(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.5+k3s1", "gitCommit": "abc", "gitTreeState": "clean",
                    "buildDate": "2025-10-01T00:00:00Z", "goVersion": "go1.24.6", "compiler": "gc", "platform": "linux/amd64"}),
        );
    }
    if let Some(d) = discovery(path) {
        return reply(StatusCode::OK, &d);
    }
    if path == "/api/v1/nodes" {
        return reply(StatusCode::OK, &list("Node", sc.nodes.clone()));
    }
    if path == "/api/v1/namespaces/kube-system/pods" && method == Method::GET {
        let sel = query.get("labelSelector").cloned().unwrap_or_default();
        let items = sc.system_pods.iter().filter(|p| labels_match(p, &sel)).cloned().collect();
        return reply(StatusCode::OK, &list("Pod", items));
    }
    if let Some((ns, rest)) = proxy_path(path) {
        return connect_proxy(st, sc, method, &ns, &rest, body);
    }
    if let Some(pod_path) = path.strip_suffix("/log") {
        let (coll, name) = split_name(pod_path);
        return match st.objects.get(&coll).and_then(|c| c.get(&name)) {
            Some(pod) => text(StatusCode::OK, pod.pointer("/metadata/annotations/fake.log").and_then(Value::as_str).unwrap_or("")),
            None => status(StatusCode::NOT_FOUND, "NotFound", &format!("pods \"{name}\" not found")),
        };
    }
    if path.ends_with("/exec") {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "Upgrade request required");
    }
    let is_list = PLURALS.iter().any(|p| path.ends_with(&format!("/{p}")));
    match *method {
        Method::POST => create(st, sc, path, body),
        Method::GET if is_list => {
            let sel = query.get("labelSelector").cloned().unwrap_or_default();
            let items = st.objects.get(path).map(|c| c.values().filter(|o| labels_match(o, &sel)).cloned().collect()).unwrap_or_default();
            reply(StatusCode::OK, &list("Object", items))
        }
        Method::GET => {
            let (coll, name) = split_name(path);
            match st.objects.get(&coll).and_then(|c| c.get(&name)) {
                Some(o) => reply(StatusCode::OK, o),
                None => status(StatusCode::NOT_FOUND, "NotFound", &format!("\"{name}\" not found")),
            }
        }
        Method::DELETE => {
            let (coll, name) = split_name(path);
            st.owners.remove(path);
            match st.objects.get_mut(&coll).and_then(|c| c.remove(&name)) {
                Some(o) => {
                    // Foreground/Background propagation deletes the pods a StatefulSet owns;
                    // Orphan leaves them (they lose their owner reference).
                    let orphan = serde_json::from_str::<Value>(body).ok().and_then(|b| b["propagationPolicy"].as_str().map(str::to_owned))
                        == Some("Orphan".into());
                    if o["kind"] == "StatefulSet" && !orphan {
                        let pods = coll.replace("/apis/apps/v1/", "/api/v1/").replace("/statefulsets", "/pods");
                        if let Some(c) = st.objects.get_mut(&pods) {
                            c.retain(|_, p| p.pointer("/metadata/annotations/fake.owner").and_then(Value::as_str) != Some(name.as_str()));
                        }
                    }
                    reply(StatusCode::OK, &o)
                }
                None => status(StatusCode::NOT_FOUND, "NotFound", &format!("\"{name}\" not found")),
            }
        }
        Method::PATCH if ct == "application/merge-patch+json" => merge_patch(st, sc, path, query, body),
        Method::PATCH => server_side_apply(st, sc, path, query, ct, body),
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "not supported by the fake"),
    }
}

/// The namespace of a namespaced collection path (`.../namespaces/NS/KIND`).
fn namespace_of(coll: &str) -> Option<String> {
    let rest = coll.split("/namespaces/").nth(1)?;
    let ns = rest.split('/').next()?;
    rest.contains('/').then(|| ns.to_owned())
}

fn split_name(path: &str) -> (String, String) {
    let (coll, name) = path.rsplit_once('/').unwrap_or((path, ""));
    (coll.to_owned(), name.to_owned())
}

fn proxy_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (ns, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("services/kafka-connect:8083/proxy")?;
    Some((ns.to_owned(), rest.to_owned()))
}

fn connect_error(code: StatusCode, message: &str) -> Reply {
    reply(code, &json!({"error_code": code.as_u16(), "message": message}))
}

/// Kafka Connect's REST API behind the service proxy. Without an applied `kafka-connect`
/// Deployment there are no endpoints, as on a real cluster.
fn connect_proxy(st: &mut State, sc: &Scenario, method: &Method, ns: &str, rest: &str, body: &str) -> Reply {
    let deployments = format!("/apis/apps/v1/namespaces/{ns}/deployments");
    if st.objects.get(&deployments).and_then(|c| c.get("kafka-connect")).is_none() {
        return status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "no endpoints available for service \"kafka-connect:8083\"");
    }
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    match (method.clone(), parts.as_slice()) {
        (Method::GET, ["connectors"]) => reply(StatusCode::OK, &json!(st.connectors.keys().collect::<Vec<_>>())),
        (Method::PUT, ["connectors", name, "config"]) => {
            if st.conflicts_left > 0 {
                st.conflicts_left -= 1;
                return connect_error(
                    StatusCode::CONFLICT,
                    "Cannot complete request momentarily due to stale configuration (typically caused by a concurrent config change)",
                );
            }
            let config: Value = match serde_json::from_str(body) {
                Ok(v) => v,
                Err(e) => return connect_error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            let created = st.connectors.insert((*name).to_owned(), config.clone()).is_none();
            let answer = json!({"name": name, "config": config, "tasks": [], "type": "sink"});
            reply(if created { StatusCode::CREATED } else { StatusCode::OK }, &answer)
        }
        (Method::DELETE, ["connectors", name]) => match st.connectors.remove(*name) {
            Some(_) => Response::builder().status(StatusCode::NO_CONTENT).body(Full::new(Bytes::new())).unwrap(),
            None => connect_error(StatusCode::NOT_FOUND, &format!("Connector {name} not found")),
        },
        (Method::GET, ["connectors", name, "status"]) => {
            if !st.connectors.contains_key(*name) {
                return connect_error(StatusCode::NOT_FOUND, &format!("No status found for connector {name}"));
            }
            let i = st.status_polls.min(sc.connector_statuses.len() - 1);
            st.status_polls += 1;
            let mut s = sc.connector_statuses[i].clone();
            s["name"] = json!(name);
            reply(StatusCode::OK, &s)
        }
        // KIP-875 (Kafka >= 3.6): a sink connector's offsets are its consumer group's committed
        // offsets, keyed by kafka_topic/kafka_partition (connect/runtime SinkUtils.java).
        (Method::GET, ["connectors", name, "offsets"]) => {
            let Some(config) = st.connectors.get(*name) else {
                return connect_error(StatusCode::NOT_FOUND, &format!("Connector {name} not found"));
            };
            let topic = config["topics"].as_str().unwrap_or("").to_owned();
            let offsets: Vec<Value> = if sc.committed.is_empty() {
                vec![]
            } else {
                let i = st.offset_polls.min(sc.committed.len() - 1);
                st.offset_polls += 1;
                vec![json!({"partition": {"kafka_topic": topic, "kafka_partition": 0}, "offset": {"kafka_offset": sc.committed[i]}})]
            };
            reply(StatusCode::OK, &json!({"offsets": offsets}))
        }
        (Method::PUT, ["connector-plugins", class, "config", "validate"]) => reply(
            StatusCode::OK,
            &json!({"name": class, "error_count": 0, "groups": ["Common"], "configs": [
                {"definition": {"name": "connection.url"}, "value": {"name": "connection.url", "value": "x", "errors": [], "visible": true}}]}),
        ),
        _ => connect_error(StatusCode::NOT_FOUND, "HTTP 404 Not Found"),
    }
}

/// POST: pods only (the verify probes). The fake kubelet runs them at once.
fn create(st: &mut State, sc: &Scenario, coll: &str, body: &str) -> Reply {
    let mut obj: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    };
    let name = match obj.pointer("/metadata/name").and_then(Value::as_str) {
        Some(n) => n.to_owned(),
        None => match obj.pointer("/metadata/generateName").and_then(Value::as_str) {
            Some(prefix) => {
                st.names += 1;
                format!("{prefix}{:05x}", 0x1a2b3 + st.names)
            }
            None => return status(StatusCode::BAD_REQUEST, "Invalid", "name or generateName is required"),
        },
    };
    st.rv += 1;
    let ns = namespace_of(coll).unwrap_or_else(|| "default".into());
    obj["metadata"]["name"] = json!(name);
    obj["metadata"]["namespace"] = json!(ns);
    obj["metadata"]["uid"] = json!(format!("uid-{name}"));
    obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
    if coll.ends_with("/pods") {
        run_probe_pod(sc, &mut obj);
    }
    st.objects.entry(coll.to_owned()).or_default().insert(name, obj.clone());
    reply(StatusCode::CREATED, &obj)
}

/// Play the kubelet for a verify probe pod: read its role and node, decide its log and phase.
fn run_probe_pod(sc: &Scenario, pod: &mut Value) {
    let role = pod.pointer("/metadata/labels/app.kubernetes.io~1component").and_then(Value::as_str).unwrap_or("").to_owned();
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("").to_owned();
    let script = pod.pointer("/spec/containers/0/command/2").and_then(Value::as_str).unwrap_or("").to_owned();
    if sc.probe_pods_stuck {
        pod["status"] = json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "probe", "ready": false, "restartCount": 0, "image": "busybox:1.37", "imageID": "",
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"busybox:1.37\""}}}]});
        return;
    }
    let (phase, log) = match role.as_str() {
        "net" => {
            let broken = sc.external_dns_broken_on.contains(&node);
            let ext = if broken {
                "iac-probe dns-external fail ;; connection timed out; no servers could be reached"
            } else {
                "iac-probe dns-external ok"
            };
            assert!(script.contains("nc -z -w 5 10.43.0.1 443"), "probe must target the API VIP: {script}");
            (if broken { "Failed" } else { "Succeeded" }, format!("iac-probe dns-cluster ok\n{ext}\niac-probe api-vip ok\n"))
        }
        "client" => {
            assert!(script.contains("10.42.0.50 8080"), "client must target the server pod's IP: {script}");
            ("Succeeded", "iac-probe pod-to-pod ok\n".to_owned())
        }
        "server" => ("Running", String::new()),
        _ => ("Pending", String::new()),
    };
    pod["metadata"]["annotations"] = json!({"fake.log": log});
    let ready = if phase == "Running" { "True" } else { "False" };
    pod["status"] = json!({"phase": phase, "podIP": "10.42.0.50", "hostIP": "172.22.0.134",
        "conditions": [{"type": "Ready", "status": ready}]});
}

// ------------------------------------------------------------------ field ownership

fn dotted(path: &[String]) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

/// Leaf paths of an object, lists atomic. Server-maintained fields are not anyone's.
fn leaves(v: &Value, prefix: &mut Vec<String>, out: &mut BTreeMap<Vec<String>, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let skip = (prefix.is_empty() && k == "status")
                    || (prefix.len() == 1
                        && prefix[0] == "metadata"
                        && matches!(k.as_str(), "resourceVersion" | "uid" | "generation" | "managedFields" | "creationTimestamp"));
                if skip {
                    continue;
                }
                prefix.push(k.clone());
                leaves(child, prefix, out);
                prefix.pop();
            }
        }
        other => {
            out.insert(prefix.clone(), other.clone());
        }
    }
}

fn leaf_map(v: &Value) -> BTreeMap<Vec<String>, Value> {
    let mut out = BTreeMap::new();
    leaves(v, &mut Vec::new(), &mut out);
    out
}

fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn set_path(v: &mut Value, path: &[String], value: Value) {
    let mut cur = v;
    for k in &path[..path.len() - 1] {
        if !cur.get(k).is_some_and(Value::is_object) {
            cur[k.as_str()] = json!({});
        }
        cur = cur.get_mut(k).unwrap();
    }
    cur[path[path.len() - 1].as_str()] = value;
}

fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut cur = v;
    for k in parents {
        let Some(next) = cur.get_mut(k) else { return };
        cur = next;
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// `managedFields` as the API server writes it: one entry per manager, FieldsV1 as nested
/// `f:` keys.
fn managed_fields(owners: &BTreeMap<String, Owner>) -> Value {
    let entries: Vec<Value> = owners
        .iter()
        .filter(|(_, o)| !o.fields.is_empty())
        .map(|(m, o)| {
            let mut fields = json!({});
            for f in &o.fields {
                let path: Vec<String> = f.iter().map(|k| format!("f:{k}")).collect();
                set_path(&mut fields, &path, json!({}));
            }
            json!({"manager": m, "operation": o.operation, "apiVersion": o.api_version, "fieldsType": "FieldsV1", "fieldsV1": fields})
        })
        .collect();
    Value::Array(entries)
}

/// The API server's immutability rules for the kinds iac applies, checked on the object as it
/// would become. `Some(reply)` is the 422.
fn immutable(kind: &str, name: &str, old: &Value, new: &Value) -> Option<Reply> {
    match kind {
        "StatefulSet" => {
            // apps/validation ValidateStatefulSetUpdate: only these may change.
            let free = [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            let rest = |v: &Value| {
                let mut spec = v["spec"].clone();
                if let Some(m) = spec.as_object_mut() {
                    for f in free {
                        m.remove(f);
                    }
                }
                spec
            };
            (rest(old) != rest(new)).then(|| {
                let detail = "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";
                status_with(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    &format!("StatefulSet.apps \"{name}\" is invalid: spec: {detail}"),
                    "StatefulSet",
                    "apps",
                    name,
                    json!([{"reason": "FieldValueForbidden", "message": detail, "field": "spec"}]),
                )
            })
        }
        "Deployment" | "Job" => {
            let (group, type_name) = if kind == "Job" { ("batch", "Job.batch") } else { ("apps", "Deployment.apps") };
            let mut causes = Vec::new();
            let mut messages = Vec::new();
            let mut fields = vec![("selector", "v1.LabelSelector{...}")];
            if kind == "Job" {
                fields.push(("template", "core.PodTemplateSpec{...}"));
            }
            for (field, shown) in fields {
                // A selector the server generated (Jobs) is not compared when the new one omits it.
                if new["spec"].get(field).is_some() && old["spec"].get(field) != new["spec"].get(field) {
                    let message = format!("Invalid value: {shown}: field is immutable");
                    messages.push(format!("spec.{field}: {message}"));
                    causes.push(json!({"reason": "FieldValueInvalid", "message": message, "field": format!("spec.{field}")}));
                }
            }
            (!causes.is_empty()).then(|| {
                status_with(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    &format!("{type_name} \"{name}\" is invalid: {}", messages.join(", ")),
                    kind,
                    group,
                    name,
                    Value::Array(causes),
                )
            })
        }
        _ => None,
    }
}

/// Validation that has nothing to do with immutability: a negative backoffLimit.
fn invalid(kind: &str, name: &str, obj: &Value) -> Option<Reply> {
    let limit = obj.pointer("/spec/backoffLimit").and_then(Value::as_i64)?;
    (kind == "Job" && limit < 0).then(|| {
        let message = format!("Invalid value: {limit}: must be greater than or equal to 0");
        status_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!("Job.batch \"{name}\" is invalid: spec.backoffLimit: {message}"),
            "Job",
            "batch",
            name,
            json!([{"reason": "FieldValueInvalid", "message": message, "field": "spec.backoffLimit"}]),
        )
    })
}

/// Server-side apply as the API server does it, in the parts that matter here (see the module
/// documentation).
fn server_side_apply(st: &mut State, sc: &Scenario, path: &str, query: &BTreeMap<String, String>, ct: &str, body: &str) -> Reply {
    if ct != "application/apply-patch+yaml" {
        return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", &format!("the fake only takes apply patches, got {ct}"));
    }
    let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()).cloned() else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        );
    };
    let force = query.get("force").map(String::as_str) == Some("true");
    let applied: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    };
    let (coll, name) = split_name(path);
    if applied.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str()) {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "the name of the object does not match the URL");
    }
    let dry_run = query.get("dryRun").map(String::as_str) == Some("All");
    if let Some(ns) = path
        .strip_prefix("/api/v1/namespaces/")
        .or_else(|| path.split("/namespaces/").nth(1))
        .and_then(|r| r.split_once('/'))
        .map(|(ns, _)| ns)
        && st.objects.get("/api/v1/namespaces").is_none_or(|c| !c.contains_key(ns))
    {
        return status(StatusCode::NOT_FOUND, "NotFound", &format!("namespaces \"{ns}\" not found"));
    }
    let kind = applied["kind"].as_str().unwrap_or("").to_owned();
    let api_version = applied["apiVersion"].as_str().unwrap_or("").to_owned();
    let existing = st.objects.get(&coll).and_then(|c| c.get(&name)).cloned();
    let mut owners = st.owners.get(path).cloned().unwrap_or_default();
    let new_leaves = leaf_map(&applied);

    // Conflicts: fields another manager owns whose live value differs from the applied one.
    let mut conflicts = Vec::new();
    if let Some(live) = &existing {
        for (other, o) in owners.iter().filter(|(m, _)| **m != manager) {
            for f in o.fields.iter().filter(|f| new_leaves.contains_key(*f)) {
                if get_path(live, f) != new_leaves.get(f) {
                    conflicts.push((other.clone(), o.api_version.clone(), f.clone()));
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let lines: Vec<String> = conflicts.iter().map(|(m, v, f)| format!("conflict with \"{m}\" using {v}: {}", dotted(f))).collect();
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, v, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\" using {v}"), "field": dotted(f)}))
            .collect();
        let n = conflicts.len();
        return status_with(
            StatusCode::CONFLICT,
            "Conflict",
            &format!("Apply failed with {n} conflict{}: {}", if n == 1 { "" } else { "s" }, lines.join("\n")),
            &kind,
            applied["apiVersion"].as_str().unwrap_or("").split('/').next().unwrap_or(""),
            &name,
            Value::Array(causes),
        );
    }

    // The object as it becomes: the manager's old fields it no longer applies are removed
    // (unless another manager shares them), its new fields set; forced conflicts change owner.
    let mut merged = existing.clone().unwrap_or_else(|| json!({}));
    let mine = owners.get(&manager).map(|o| o.fields.clone()).unwrap_or_default();
    for f in mine.iter().filter(|f| !new_leaves.contains_key(*f)) {
        let shared = owners.iter().any(|(m, o)| *m != manager && o.fields.contains(f));
        if !shared {
            remove_path(&mut merged, f);
        }
    }
    for (f, v) in &new_leaves {
        set_path(&mut merged, f, v.clone());
    }
    for (_, _, f) in &conflicts {
        for (m, o) in owners.iter_mut() {
            if *m != manager {
                o.fields.remove(f);
            }
        }
    }
    owners.insert(
        manager.clone(),
        Owner { operation: "Apply", api_version: api_version.clone(), fields: new_leaves.keys().cloned().collect() },
    );

    if let Some(old) = &existing
        && let Some(rejected) = immutable(&kind, &name, old, &merged)
    {
        return rejected;
    }
    if let Some(rejected) = invalid(&kind, &name, &merged) {
        return rejected;
    }
    finish(st, sc, path, &coll, &name, existing, merged, owners, dry_run)
}

/// An Update by another manager (`kubectl edit`, a controller): an RFC 7386 merge patch.
fn merge_patch(st: &mut State, sc: &Scenario, path: &str, query: &BTreeMap<String, String>, body: &str) -> Reply {
    let manager = query.get("fieldManager").cloned().unwrap_or_else(|| "kubectl-edit".into());
    let (coll, name) = split_name(path);
    let Some(existing) = st.objects.get(&coll).and_then(|c| c.get(&name)).cloned() else {
        return status(StatusCode::NOT_FOUND, "NotFound", &format!("\"{name}\" not found"));
    };
    let patch: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    };
    fn merge(target: &mut Value, patch: &Value) {
        match (target.as_object_mut(), patch.as_object()) {
            (Some(t), Some(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            _ => *target = patch.clone(),
        }
    }
    let mut merged = existing.clone();
    merge(&mut merged, &patch);
    let mut owners = st.owners.get(path).cloned().unwrap_or_default();
    let touched = leaf_map(&patch);
    for o in owners.values_mut() {
        o.fields.retain(|f| !touched.contains_key(f));
    }
    let api_version = existing["apiVersion"].as_str().unwrap_or("").to_owned();
    let entry = owners.entry(manager).or_insert(Owner { operation: "Update", api_version, fields: BTreeSet::new() });
    entry.fields.extend(touched.keys().cloned());
    let kind = existing["kind"].as_str().unwrap_or("").to_owned();
    if let Some(rejected) = immutable(&kind, &name, &existing, &merged) {
        return rejected;
    }
    finish(st, sc, path, &coll, &name, Some(existing), merged, owners, false)
}

/// Store (unless a dry run) with resourceVersion, generation and managedFields; run the
/// controllers.
#[allow(clippy::too_many_arguments)]
fn finish(
    st: &mut State,
    sc: &Scenario,
    path: &str,
    coll: &str,
    name: &str,
    existing: Option<Value>,
    mut obj: Value,
    owners: BTreeMap<String, Owner>,
    dry_run: bool,
) -> Reply {
    let strip = |v: &Value| leaf_map(v);
    let unchanged = existing.as_ref().is_some_and(|e| strip(e) == strip(&obj));
    let (uid, generation, rv) = match &existing {
        Some(e) if unchanged => {
            (e["metadata"]["uid"].clone(), e["metadata"]["generation"].clone(), e["metadata"]["resourceVersion"].clone())
        }
        Some(e) => {
            let g = e.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
            let spec_changed = e.get("spec") != obj.get("spec");
            let rv = if dry_run {
                e["metadata"]["resourceVersion"].clone()
            } else {
                st.rv += 1;
                json!(st.rv.to_string())
            };
            (e["metadata"]["uid"].clone(), json!(if spec_changed { g + 1 } else { g }), rv)
        }
        None => {
            let rv = if dry_run {
                json!("")
            } else {
                st.rv += 1;
                json!(st.rv.to_string())
            };
            (json!(format!("uid-{name}")), json!(1), rv)
        }
    };
    let ns = namespace_of(coll);
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let meta = obj["metadata"].as_object_mut().unwrap();
    meta.insert("uid".into(), uid);
    meta.insert("resourceVersion".into(), rv);
    meta.insert("generation".into(), generation.clone());
    if let (Some(ns), true) = (ns.clone(), path.contains("/namespaces/") && !coll.ends_with("/api/v1/namespaces")) {
        meta.insert("namespace".into(), json!(ns));
    }
    meta.insert("managedFields".into(), managed_fields(&owners));
    if let Some(e) = &existing
        && let Some(s) = e.get("status")
    {
        obj["status"] = s.clone();
    }
    controllers(sc, &mut obj, generation.as_i64().unwrap_or(1));
    if !dry_run {
        if obj["kind"] == "StatefulSet"
            && let Some(ns) = &ns
        {
            run_statefulset_pods(st, sc, ns, &obj);
        }
        st.objects.entry(coll.to_owned()).or_default().insert(name.to_owned(), obj.clone());
        st.owners.insert(path.to_owned(), owners);
    }
    reply(if existing.is_some() { StatusCode::OK } else { StatusCode::CREATED }, &obj)
}

/// The StatefulSet controller and kubelet: pods NAME-0 .. NAME-(n-1) with the template's
/// labels, Running and Ready when the scenario says Kafka gets ready.
fn run_statefulset_pods(st: &mut State, sc: &Scenario, ns: &str, sts: &Value) {
    let name = sts["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let replicas = sts.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let labels = sts.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}));
    let containers = sts.pointer("/spec/template/spec/containers").cloned().unwrap_or(json!([]));
    let pods = st.objects.entry(format!("/api/v1/namespaces/{ns}/pods")).or_default();
    for i in 0..replicas {
        let pod = format!("{name}-{i}");
        let ready = if sc.kafka_ready { "True" } else { "False" };
        let mut l = labels.clone();
        l["apps.kubernetes.io/pod-index"] = json!(i.to_string());
        l["statefulset.kubernetes.io/pod-name"] = json!(pod);
        pods.insert(
            pod.clone(),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "namespace": ns, "labels": l, "uid": format!("uid-{pod}"), "resourceVersion": "1",
                    "annotations": {"fake.owner": name}},
                "spec": {"containers": containers},
                "status": {"phase": "Running", "podIP": format!("10.42.0.{}", 60 + i), "conditions": [{"type": "Ready", "status": ready}]}}),
        );
    }
}

/// The controllers' work, done instantly: StatefulSet and Deployment status, Job outcome.
fn controllers(sc: &Scenario, obj: &mut Value, generation: i64) {
    let replicas = obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    match obj["kind"].as_str().unwrap_or("") {
        "StatefulSet" => {
            let ready = if sc.kafka_ready { replicas } else { 0 };
            obj["status"] = json!({"replicas": replicas, "readyReplicas": ready, "currentReplicas": replicas,
                "updatedReplicas": replicas, "availableReplicas": ready, "observedGeneration": generation,
                "currentRevision": "kafka-7d9c", "updateRevision": "kafka-7d9c"});
        }
        "Deployment" => {
            obj["status"] = json!({"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas,
                "availableReplicas": replicas, "observedGeneration": generation,
                "conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]});
        }
        "Job" => {
            obj["status"] = if sc.job_outcome == "Complete" {
                json!({"succeeded": 1, "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]})
            } else {
                json!({"failed": 4, "conditions": [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"},
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})
            };
        }
        _ => {}
    }
}

// ------------------------------------------------------------------ exec

/// The exec subresource: a WebSocket upgrade as the API server answers it (101, the accept key
/// of RFC 6455, the first sub-protocol of the client's list it supports: v5.channel.k8s.io,
/// then v4), then the fake kubelet runs the command and streams channel-prefixed binary frames:
/// 1 stdout, 2 stderr, 3 the final Status (`Success`, or `Failure` with reason
/// `NonZeroExitCode` and an `ExitCode` cause), and closes.
fn exec(state: Arc<Mutex<State>>, sc: Arc<Scenario>, req: &mut Request<Incoming>, path: &str, query: &[(String, String)]) -> Reply {
    let (coll, pod) = split_name(path.trim_end_matches("/exec"));
    let found = state.lock().unwrap().objects.get(&coll).and_then(|c| c.get(&pod)).cloned();
    let Some(found) = found else {
        return status(StatusCode::NOT_FOUND, "NotFound", &format!("pods \"{pod}\" not found"));
    };
    let offered = req.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let Some(protocol) = offered.split(',').map(str::trim).find(|p| *p == "v5.channel.k8s.io" || *p == "v4.channel.k8s.io") else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "no supported websocket subprotocol");
    };
    let protocol = protocol.to_owned();
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| derive_accept_key(k.as_bytes())) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "missing Sec-WebSocket-Key");
    };
    let command: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let container = query.iter().find(|(k, _)| k == "container").map(|(_, v)| v.clone()).unwrap_or_default();
    let known = found.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten().any(|c| c["name"] == container.as_str());
    if !known {
        return status(StatusCode::BAD_REQUEST, "BadRequest", &format!("container {container} is not valid for pod {pod}"));
    }
    state.lock().unwrap().execs.push((path.to_owned(), container, command.clone()));
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let (stdout, stderr, code) = kubelet_exec(&sc, &command).await;
        let frame = |channel: u8, data: &[u8]| {
            let mut v = vec![channel];
            v.extend_from_slice(data);
            Message::binary(v)
        };
        if !stdout.is_empty() {
            let _ = ws.send(frame(1, &stdout)).await;
        }
        if !stderr.is_empty() {
            let _ = ws.send(frame(2, &stderr)).await;
        }
        let st = if code == 0 {
            json!({"metadata": {}, "status": "Success"})
        } else {
            json!({"metadata": {}, "status": "Failure",
                "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
                "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
        };
        let _ = ws.send(frame(3, &serde_json::to_vec(&st).unwrap())).await;
        let _ = ws.close(None).await;
        while ws.next().await.is_some() {}
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", key)
        .header("Sec-WebSocket-Protocol", protocol)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Run an exec'd command for real with bash, in a directory whose `kafka-get-offsets.sh`
/// prints the scenario's offsets in the tool's format (`topic:partition:offset`, for the topics
/// `--topic` matches as a regular expression, at `--time -1` latest or `-2` earliest).
async fn kubelet_exec(sc: &Scenario, command: &[String]) -> (Vec<u8>, Vec<u8>, i32) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let mut latest = String::new();
    let mut earliest = String::new();
    for (p, end) in sc.topic_end.iter().enumerate() {
        latest.push_str(&format!("demo-messages:{p}:{end}\n"));
        earliest.push_str(&format!("demo-messages:{p}:0\n"));
    }
    if let Some((first, last)) = sc.dlq {
        latest.push_str(&format!("demo-messages-dlq:0:{last}\n"));
        earliest.push_str(&format!("demo-messages-dlq:0:{first}\n"));
    }
    std::fs::write(dir.path().join("latest"), latest).unwrap();
    std::fs::write(dir.path().join("earliest"), earliest).unwrap();
    let stub = format!(
        "#!/bin/bash\n# kafka-get-offsets.sh stand-in: --bootstrap-server B --topic REGEX --time -1|-2\n\
         set -eu\necho \"$@\" >> {log}\ntopic= time=\nwhile [ $# -gt 0 ]; do case \"$1\" in --topic) topic=$2; shift 2;; --time) time=$2; shift 2;; \
         --bootstrap-server) shift 2;; *) echo \"unknown option $1\" >&2; exit 2;; esac; done\n\
         case \"$time\" in -1) file={dir}/latest;; -2) file={dir}/earliest;; *) echo \"bad --time $time\" >&2; exit 2;; esac\n\
         while IFS=: read -r t p o; do if [[ \"$t\" =~ $topic ]]; then echo \"$t:$p:$o\"; fi; done < \"$file\"\n",
        log = dir.path().join("calls").display(),
        dir = dir.path().display()
    );
    let tool = bin.join("kafka-get-offsets.sh");
    std::fs::write(&tool, stub).unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&tool).status().unwrap();
    let Some((program, args)) = command.split_first() else { return (vec![], b"no command".to_vec(), 126) };
    let out = tokio::process::Command::new(program).args(args).env("KAFKA_BIN", &bin).output().await;
    match out {
        Ok(o) => (o.stdout, o.stderr, o.status.code().unwrap_or(128)),
        Err(e) => (vec![], e.to_string().into_bytes(), 127),
    }
}
