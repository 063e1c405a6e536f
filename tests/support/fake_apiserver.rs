//! An in-process fake Kubernetes API server for the cluster tests: plain HTTP on 127.0.0.1,
//! answering the real API paths with real Kubernetes JSON. It keeps objects in memory, plays the
//! controllers and kubelet instantly (a StatefulSet is ready as soon as it is applied, a probe pod
//! has finished as soon as it is created) as the scenario says, implements server-side apply
//! closely enough to show idempotency (same applied config -> same resourceVersion), dryRun=All,
//! generateName, pod logs, and the service proxy to a fake Kafka Connect REST API. Every request
//! is recorded so tests can assert order and content.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: String,
}

impl Recorded {
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
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
    /// system pods ready, DNS working, Kafka and Connect becoming ready, the connector running.
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
        }
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub requests: Vec<Recorded>,
    /// Stored objects by collection path (e.g. `/apis/apps/v1/namespaces/p/statefulsets`) and name.
    pub objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// The last applied configuration per object path, to tell no-op applies.
    applied: BTreeMap<String, Value>,
    rv: u64,
    names: u64,
    connector: Option<Value>,
    status_polls: usize,
    conflicts_left: usize,
}

pub struct Fake {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    pub scenario: Arc<Scenario>,
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
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Fake { addr, state, scenario }
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
        _ => return None,
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "999"}, "items": items})
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        obj.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v)
    })
}

async fn handle(state: Arc<Mutex<State>>, scenario: Arc<Scenario>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query: BTreeMap<String, String> = req
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
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut st = state.lock().unwrap();
    st.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
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
    match *method {
        Method::POST => create(st, sc, path, body),
        Method::GET => {
            let (coll, name) = split_name(path);
            match st.objects.get(&coll).and_then(|c| c.get(&name)) {
                Some(o) => reply(StatusCode::OK, o),
                None => status(StatusCode::NOT_FOUND, "NotFound", &format!("\"{name}\" not found")),
            }
        }
        Method::DELETE => {
            let (coll, name) = split_name(path);
            match st.objects.get_mut(&coll).and_then(|c| c.remove(&name)) {
                Some(o) => reply(StatusCode::OK, &o),
                None => status(StatusCode::NOT_FOUND, "NotFound", &format!("\"{name}\" not found")),
            }
        }
        Method::PATCH => server_side_apply(st, sc, path, query, ct, body),
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "not supported by the fake"),
    }
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
            let created = st.connector.is_none();
            st.connector = Some(config.clone());
            let answer = json!({"name": name, "config": config, "tasks": [], "type": "sink"});
            reply(if created { StatusCode::CREATED } else { StatusCode::OK }, &answer)
        }
        (Method::GET, ["connectors", name, "status"]) => {
            if st.connector.is_none() {
                return connect_error(StatusCode::NOT_FOUND, &format!("No status found for connector {name}"));
            }
            let i = st.status_polls.min(sc.connector_statuses.len() - 1);
            st.status_polls += 1;
            reply(StatusCode::OK, &sc.connector_statuses[i])
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
    let ns = coll.split('/').nth(4).unwrap_or("default").to_owned();
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

/// Server-side apply as the API server does it, in the parts that matter here: fieldManager is
/// required, the body must be `application/apply-patch+yaml`, an apply identical to the last one
/// changes nothing (same resourceVersion, same generation), dryRun=All persists nothing.
fn server_side_apply(st: &mut State, sc: &Scenario, path: &str, query: &BTreeMap<String, String>, ct: &str, body: &str) -> Reply {
    if ct != "application/apply-patch+yaml" {
        return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", &format!("the fake only takes apply patches, got {ct}"));
    }
    if query.get("fieldManager").is_none_or(|m| m.is_empty()) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        );
    }
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
    let existing = st.objects.get(&coll).and_then(|c| c.get(&name)).cloned();
    if let Some(e) = &existing
        && st.applied.get(path) == Some(&applied)
    {
        return reply(StatusCode::OK, e);
    }
    if let Some(e) = &existing
        && e["kind"] == "Job"
        && e.pointer("/spec/template") != applied.pointer("/spec/template")
    {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!("Job.batch \"{name}\" is invalid: spec.template: Invalid value: core.PodTemplateSpec{{...}}: field is immutable"),
        );
    }
    let mut obj = applied.clone();
    let ns = coll.split('/').nth(4).map(str::to_owned);
    let (uid, generation) = match &existing {
        Some(e) => {
            let g = e.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
            let spec_changed = e.get("spec") != applied.get("spec");
            (e["metadata"]["uid"].clone(), if spec_changed { g + 1 } else { g })
        }
        None => (json!(format!("uid-{name}")), 1),
    };
    let rv = if dry_run {
        existing.as_ref().map(|e| e["metadata"]["resourceVersion"].clone()).unwrap_or(json!(""))
    } else {
        st.rv += 1;
        json!(st.rv.to_string())
    };
    let meta = obj["metadata"].as_object_mut().unwrap();
    meta.insert("uid".into(), uid);
    meta.insert("resourceVersion".into(), rv);
    meta.insert("generation".into(), json!(generation));
    if let (Some(ns), true) = (ns, path.contains("/namespaces/") && !coll.ends_with("/api/v1/namespaces")) {
        meta.insert("namespace".into(), json!(ns));
    }
    meta.insert(
        "managedFields".into(),
        json!([{"manager": query["fieldManager"], "operation": "Apply", "apiVersion": applied["apiVersion"], "fieldsType": "FieldsV1"}]),
    );
    controllers(sc, &mut obj, generation);
    if !dry_run {
        st.objects.entry(coll).or_default().insert(name, obj.clone());
        st.applied.insert(path.to_owned(), applied);
    }
    reply(if existing.is_some() { StatusCode::OK } else { StatusCode::CREATED }, &obj)
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
