//! `iac verify`, `iac apply` and `iac pipeline status` against the in-process fake API server
//! (tests/it/support/fake_apiserver.rs). The binary runs for real; only the API server is fake. The
//! manifests applied are the ones `iac render` writes: each test renders an inventory into its
//! own directory first.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::fake_apiserver::{self as fake, Fake, Scenario, connector_status, node, system_pod};
use crate::support::{self, bundled_inventory, replace_once, stderr, stdout};

const PASSWORD: &str = "fixture-pw-Zq7xK2";
const NS: &str = "/api/v1/namespaces/kafka-pipeline";
const APPS: &str = "/apis/apps/v1/namespaces/kafka-pipeline";
const BATCH: &str = "/apis/batch/v1/namespaces/kafka-pipeline";
const NETPOL: &str = "/apis/networking.k8s.io/v1/namespaces/kafka-pipeline";
const POLICY: &str = "/apis/policy/v1/namespaces/kafka-pipeline";

struct Env {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    inventory: PathBuf,
    generated: PathBuf,
    fake: Fake,
}

async fn env(scenario: Scenario) -> Env {
    env_with(scenario, &bundled_inventory()).await
}

/// A fake cluster, and `inventory` rendered by the binary into a directory of the test's own.
async fn env_with(scenario: Scenario, inventory: &str) -> Env {
    let fake = Fake::start(scenario).await;
    let dir = tempfile::tempdir().unwrap();
    let e = Env {
        kubeconfig: fake.kubeconfig(dir.path()),
        inventory: dir.path().join("inventory.toml"),
        generated: dir.path().join("generated"),
        dir,
        fake,
    };
    e.render(inventory);
    e
}

impl Env {
    /// (Re-)render `inventory` into this environment's generated/ (the artifact `iac apply` reads).
    fn render(&self, inventory: &str) {
        std::fs::write(&self.inventory, inventory).unwrap();
        let out = support::iac().args(["render", "--inventory"]).arg(&self.inventory).arg("--out").arg(&self.generated).output().unwrap();
        assert!(out.status.success(), "render: {}", stderr(&out));
    }

    async fn iac(&self, args: &[&str], password: bool) -> Output {
        self.iac_env(args, if password { Some(PASSWORD) } else { None }).await
    }

    async fn iac_env(&self, args: &[&str], password: Option<&str>) -> Output {
        let mut cmd = tokio::process::Command::from(support::iac());
        cmd.args(args)
            .arg("--inventory")
            .arg(&self.inventory)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env_remove("KUBECONFIG")
            .env_remove("IAC_PG_PASSWORD")
            .env_remove("IAC_INVENTORY");
        if let Some(pw) = password {
            cmd.env("IAC_PG_PASSWORD", pw);
        }
        let out = cmd.output().await.unwrap();
        eprintln!("--- iac {}\n{}{}", args.join(" "), stdout(&out), stderr(&out));
        out
    }

    async fn verify(&self, extra: &[&str]) -> Output {
        let mut args = vec!["verify", "--timeout", "20"];
        args.extend_from_slice(extra);
        self.iac(&args, false).await
    }

    async fn apply(&self, extra: &[&str]) -> Output {
        let generated = self.generated.to_str().unwrap().to_owned();
        let mut args = vec!["apply", "--generated", &generated, "--timeout", "20"];
        args.extend_from_slice(extra);
        self.iac(&args, true).await
    }

    fn site(&self) -> iac::model::Site {
        iac::load_site(&self.inventory).unwrap()
    }
}

// ---------------------------------------------------------------- verify

#[tokio::test(flavor = "multi_thread")]
async fn verify_healthy_cluster_passes_and_cleans_up_its_pods() {
    let e = env(Scenario::healthy()).await;
    let out = e.verify(&[]).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    for line in [
        "[PASS] API server reachable: Kubernetes v1.33.5+k3s1",
        "[PASS] node alphard registered and Ready: Ready (v1.33.5+k3s1)",
        "[PASS] node hamal registered and Ready: Ready (v1.33.5+k3s1)",
        "[PASS] CoreDNS pods Running and ready: 1/1 ready",
        "[PASS] local-path-provisioner pods Running and ready: 1/1 ready",
        "[PASS] metrics-server pods Running and ready: 1/1 ready",
        "[PASS] DNS kubernetes.default from a pod on alphard: ok",
        "[PASS] DNS example.com from a pod on hamal: ok",
        "[PASS] API service 10.43.0.1:443 from a pod on alphard: ok",
        "[PASS] API service 10.43.0.1:443 from a pod on hamal: ok",
        "[PASS] pod on hamal reaches a pod on alphard: ok",
        "13 checks: 13 passed, 0 failed, 0 skipped",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    // Probe pods: pinned to each node, created with generateName, all deleted afterwards.
    let created: Vec<Value> = e
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/namespaces/default/pods")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    let placed: Vec<(String, String)> = created
        .iter()
        .map(|p| {
            (
                p["metadata"]["labels"]["app.kubernetes.io/component"].as_str().unwrap().to_owned(),
                p["spec"]["nodeName"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [("net", "alphard"), ("net", "hamal"), ("server", "alphard"), ("client", "hamal")] {
        assert!(placed.contains(&(want.0.to_owned(), want.1.to_owned())), "{placed:?}");
    }
    assert!(created.iter().all(|p| p["metadata"]["generateName"].as_str().unwrap().starts_with("iac-verify-")));
    let deletes = e.fake.requests().iter().filter(|r| r.method == "DELETE").count();
    assert_eq!(deletes, 4);
    assert!(e.fake.collection("/api/v1/namespaces/default/pods").is_empty(), "probe pods left behind");

    let out = e.verify(&["--format", "json"]).await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["checks"].as_array().unwrap().len(), 13);
    assert_eq!(
        report["checks"][1],
        json!({"name": "node alphard registered and Ready", "status": "pass", "detail": "Ready (v1.33.5+k3s1)"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_a_not_ready_node() {
    let mut s = Scenario::healthy();
    s.nodes[1] = node("hamal", "172.22.0.135", "False");
    let e = env(s).await;
    let out = e.verify(&["--format", "json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hamal = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "node hamal registered and Ready").unwrap();
    assert_eq!(hamal["status"], "fail");
    assert!(hamal["detail"].as_str().unwrap().starts_with("Ready=False (KubeletNotReady: container runtime network not ready"));
    assert!(hamal["hint"].as_str().unwrap().contains("journalctl -u k3s-agent"));
    // No probe pod is pinned to a NotReady node; pod-to-pod needs two Ready nodes.
    let skip = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "pod-to-pod across nodes").unwrap();
    assert_eq!(skip["status"], "skip");
    assert!(e.fake.requests().iter().filter(|r| r.method == "POST").all(|r| !r.body.contains("\"nodeName\":\"hamal\"")));
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_an_unregistered_node_and_a_coredns_pod_not_ready() {
    let mut s = Scenario::healthy();
    s.nodes.truncate(1);
    s.system_pods[0] = system_pod("coredns-6f9c8d7b5-x2k4q", json!({"k8s-app": "kube-dns"}), "alphard", false);
    let e = env(s).await;
    let out = e.verify(&[]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("[FAIL] node hamal registered and Ready: not registered\n       hint: on hamal: systemctl status k3s-agent"),
        "{text}"
    );
    assert!(
        text.contains(
            "[FAIL] CoreDNS pods Running and ready: 0/1 ready; coredns-6f9c8d7b5-x2k4q (Running, not ready, main: CrashLoopBackOff)"
        ),
        "{text}"
    );
    assert!(text.contains("CoreDNS needs the API at 10.43.0.1:443 and the upstream resolver 172.22.100.104"), "{text}");
    assert!(text.contains("[PASS] metrics-server pods Running and ready"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_a_failing_dns_probe_pod() {
    let mut s = Scenario::healthy();
    s.external_dns_broken_on = vec!["hamal".into()];
    let e = env(s).await;
    let out = e.verify(&["--external-name", "nixos.org"]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[PASS] DNS nixos.org from a pod on alphard: ok"), "{text}");
    assert!(text.contains("[FAIL] DNS nixos.org from a pod on hamal: ;; connection timed out; no servers could be reached"), "{text}");
    assert!(text.contains("hint: CoreDNS cannot reach the upstream resolver"), "{text}");
    assert!(text.contains("[PASS] DNS kubernetes.default from a pod on hamal: ok"), "{text}");
    assert!(e.fake.collection("/api/v1/namespaces/default/pods").is_empty(), "the failed probe pod must be deleted too");
    let probe = e.fake.requests().into_iter().find(|r| r.method == "POST" && r.body.contains("hamal")).unwrap();
    assert!(probe.body.contains("nslookup nixos.org"), "{}", probe.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_without_an_api_server_fails_with_a_hint() {
    let e = env(Scenario::healthy()).await;
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(&e.kubeconfig, fake::kubeconfig_text(&format!("http://127.0.0.1:{port}"))).unwrap();
    let out = e.verify(&[]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1));
    // The address it tried, the whole cause (not just "client error (Connect)"), where to look.
    assert!(text.starts_with(&format!("[FAIL] API server reachable: http://127.0.0.1:{port}: client error (Connect)")), "{text}");
    assert!(text.contains("Connection refused"), "{text}");
    assert!(text.contains("is k3s running on alphard (systemctl status k3s)?"), "{text}");
    assert!(text.contains("172.22.0.134:6443"), "{text}");
    // The checks that could not run are said, not counted as a check.
    assert!(!text.contains("[SKIP]"), "{text}");
    assert!(
        text.ends_with("(the other checks did not run: they all need the API server)\n1 check: 0 passed, 1 failed, 0 skipped\n"),
        "{text}"
    );

    // --context picks another cluster of the same kubeconfig.
    let two = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         - name: good\n  cluster:\n    server: http://{}\ncontexts:\n- name: dead\n  context:\n    cluster: dead\n    user: u\n\
         - name: good\n  context:\n    cluster: good\n    user: u\ncurrent-context: dead\nusers:\n- name: u\n  user:\n    token: t\n",
        e.fake.addr
    );
    std::fs::write(&e.kubeconfig, two).unwrap();
    let out = e.verify(&["--context", "good"]).await;
    assert!(out.status.success(), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_gives_up_on_probe_pods_that_never_start_and_deletes_them() {
    let mut s = Scenario::healthy();
    s.probe_pods_stuck = true;
    let e = env(s).await;
    let t = Instant::now();
    let out = e.iac(&["verify", "--timeout", "2"], false).await;
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("[FAIL] DNS kubernetes.default from a pod on hamal: probe pod did not run: timed out after 2s waiting for probe pod iac-verify-net-"),
        "{text}"
    );
    assert!(text.contains("(last seen: Pending, probe: ImagePullBackOff)"), "{text}");
    assert!(text.contains("hint: kubectl get events; the probe image must be pullable on hamal"), "{text}");
    assert!(text.contains("[FAIL] pod on hamal reaches a pod on alphard: server pod: timed out after 2s"), "{text}");
    assert!(e.fake.collection("/api/v1/namespaces/default/pods").is_empty(), "stuck probe pods must be deleted");
}

// ---------------------------------------------------------------- apply

/// The requests that matter for ordering: no discovery, compact.
fn trace(fake: &Fake) -> Vec<String> {
    trace_of(&fake.requests())
}

fn trace_of(reqs: &[fake::Recorded]) -> Vec<String> {
    reqs.iter()
        .filter(|r| {
            !matches!(r.path.as_str(), "/api/v1" | "/apis/apps/v1" | "/apis/batch/v1" | "/apis/networking.k8s.io/v1" | "/apis/policy/v1")
        })
        .map(|r| {
            let p =
                r.path.replace(NS, "NS").replace(APPS, "APPS").replace(BATCH, "BATCH").replace(NETPOL, "NETPOL").replace(POLICY, "POLICY");
            format!("{} {p}", r.method)
        })
        .collect()
}

fn get_patch(path: &str) -> [String; 2] {
    [format!("GET {path}"), format!("PATCH {path}")]
}

/// The prune stage: one labelled list per kind the renderer may have emitted.
fn prune_lists() -> Vec<String> {
    [
        "NS/services",
        "NS/configmaps",
        "APPS/statefulsets",
        "APPS/deployments",
        "BATCH/jobs",
        "NETPOL/networkpolicies",
        "POLICY/poddisruptionbudgets",
    ]
    .iter()
    .map(|p| format!("GET {p}"))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_goes_in_dependency_order_and_waits() {
    let e = env(Scenario::healthy()).await;
    let out = e.apply(&[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let proxy = "NS/services/kafka-connect:8083/proxy";
    let mut expected: Vec<String> = get_patch("NS").to_vec();
    for np in ["default-deny", "kafka", "kafka-connect", "register-connector", "demo-producer"] {
        expected.extend(get_patch(&format!("NETPOL/networkpolicies/{np}")));
    }
    expected.extend(get_patch("NS/secrets/pipeline-postgres"));
    expected.push("GET NS/secrets/pipeline-postgres".into());
    expected.extend(get_patch("NS/services/kafka-headless"));
    expected.extend(get_patch("NS/services/kafka-bootstrap"));
    expected.extend(get_patch("APPS/statefulsets/kafka"));
    expected.push("GET APPS/statefulsets/kafka".into());
    expected.push("GET APPS/deployments/kafka-connect".into());
    expected.extend(get_patch("NS/configmaps/kafka-connect-config"));
    expected.extend(get_patch("NS/services/kafka-connect"));
    expected.extend(get_patch("APPS/deployments/kafka-connect"));
    expected.push("GET APPS/deployments/kafka-connect".into());
    expected.extend([
        format!("PUT {proxy}/connectors/postgres-sink/config"),
        format!("PUT {proxy}/connectors/postgres-sink/config"),
        format!("GET {proxy}/connectors/postgres-sink/status"),
        format!("GET {proxy}/connectors/postgres-sink/status"),
    ]);
    expected.extend(get_patch("BATCH/jobs/demo-producer"));
    expected.push("GET BATCH/jobs/demo-producer".into());
    expected.extend(prune_lists());
    assert_eq!(trace(&e.fake), expected);

    let reqs = e.fake.requests();
    // Every apply: server-side, field manager iac, forced, not a dry run.
    for r in reqs.iter().filter(|r| r.method == "PATCH") {
        assert_eq!(r.content_type, "application/apply-patch+yaml", "{}", r.path);
        assert_eq!(r.query.get("fieldManager").map(String::as_str), Some("iac"));
        assert_eq!(r.query.get("force").map(String::as_str), Some("true"));
        assert!(!r.query.contains_key("dryRun"));
    }
    // The kubectl-only Job is not applied.
    assert!(reqs.iter().all(|r| !r.path.contains("register-connector") || r.path.contains("networkpolicies")));
    // The Secret carries the password from the environment, base64-encoded, and nothing else shows it.
    let secret = reqs.iter().find(|r| r.method == "PATCH" && r.path.ends_with("/secrets/pipeline-postgres")).unwrap();
    let secret: Value = serde_json::from_str(&secret.body).unwrap();
    let encoded = serde_json::to_value(k8s_openapi::ByteString(PASSWORD.as_bytes().to_vec())).unwrap();
    assert_eq!(secret["data"]["password"], encoded);
    assert_eq!(secret["metadata"]["labels"]["app.kubernetes.io/managed-by"], "iac");
    for r in &reqs {
        assert!(!r.body.contains(PASSWORD), "password in clear in {} {}", r.method, r.path);
    }
    assert!(!stdout(&out).contains(PASSWORD) && !stderr(&out).contains(PASSWORD));
    // Connect's pod template carries the Secret's version (its resourceVersion, not a hash of
    // the value) and the rendered worker config's hash.
    let secret_rv = e.fake.object(&format!("{NS}/secrets"), "pipeline-postgres").unwrap()["metadata"]["resourceVersion"].clone();
    let dep = e.fake.object(&format!("{APPS}/deployments"), "kafka-connect").unwrap();
    let annotations = &dep["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["iac/secret-version"], secret_rv);
    assert_eq!(annotations["iac/worker-config-sha256"].as_str().unwrap().len(), 64);
    // The connector config went through the proxy as connector.json's config.
    let put = reqs.iter().rfind(|r| r.method == "PUT").unwrap();
    let sent: Value = serde_json::from_str(&put.body).unwrap();
    assert_eq!(sent["connector.class"], "io.debezium.connector.jdbc.JdbcSinkConnector");
    assert_eq!(sent["connection.password"], "${env:PG_PASSWORD}");
    let rendered: Value = serde_json::from_str(&std::fs::read_to_string(e.generated.join("k8s/connector.json")).unwrap()).unwrap();
    assert_eq!(sent, rendered["config"]);

    let err = stderr(&out);
    for line in [
        "waiting for statefulset/kafka in kafka-pipeline to be ready (timeout 20s)",
        "waiting for deployment/kafka-connect in kafka-pipeline to be ready (timeout 20s)",
        "Kafka Connect to accept connector postgres-sink: 409: the worker group is rebalancing",
        "connector postgres-sink and its tasks to be RUNNING: connector RUNNING, tasks: none yet",
        "waiting for job/demo-producer in kafka-pipeline to complete (timeout 20s)",
    ] {
        assert!(err.contains(line), "missing `{line}` in\n{err}");
    }
    let text = stdout(&out);
    assert!(text.contains("== network policies\nnetworkpolicy/default-deny created\n"), "{text}");
    assert!(text.contains("statefulset/kafka created\n"), "{text}");
    assert!(text.contains("connector/postgres-sink created\nconnector/postgres-sink connector RUNNING, tasks: 0 RUNNING\n"), "{text}");
    // Namespace 1 + NetworkPolicies 5 + Secret 1 + Kafka 3 + Connect 3 + producer 1; the
    // registration Job and its ConfigMap are for kubectl users.
    assert!(text.ends_with("14 objects applied, 14 changed\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_twice_changes_nothing() {
    let e = env(Scenario::healthy()).await;
    assert!(e.apply(&[]).await.status.success());
    let first = e.fake.requests().len();
    let versions = |f: &Fake| -> Vec<(String, Value)> {
        f.state
            .lock()
            .unwrap()
            .objects
            .iter()
            .flat_map(|(c, objs)| objs.iter().map(move |(n, o)| (format!("{c}/{n}"), o["metadata"]["resourceVersion"].clone())))
            .collect()
    };
    let before = versions(&e.fake);
    let out = e.apply(&[]).await;
    assert!(out.status.success());
    let reqs = e.fake.requests();
    let patches = |rs: &[fake::Recorded]| -> Vec<(String, String)> {
        rs.iter().filter(|r| r.method == "PATCH").map(|r| (r.path.clone(), r.body.clone())).collect()
    };
    assert_eq!(patches(&reqs[..first]), patches(&reqs[first..]), "the second apply must send the same patches");
    assert_eq!(before, versions(&e.fake), "no object changed its resourceVersion");
    let text = stdout(&out);
    assert_eq!(text.matches(" unchanged\n").count(), 14, "{text}");
    assert!(text.contains("connector/postgres-sink configured\n"), "PUT config is idempotent: 200, not 201\n{text}");
    assert!(!text.contains("prune"), "{text}");
    assert!(text.ends_with("14 objects applied, 0 changed\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_producer_replaces_the_finished_job() {
    let e = env(Scenario::healthy()).await;
    assert!(e.apply(&[]).await.status.success());
    e.render(&format!("{}\n[pipeline.producer]\nmessages = 20\n", bundled_inventory()));
    let first = e.fake.requests().len();

    let out = e.apply(&["--dry-run"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("job/demo-producer would be replaced: its template changed and Jobs are immutable (dry run)"));
    assert!(e.fake.requests()[first..].iter().all(|r| r.method != "DELETE"), "a dry run deletes nothing");

    let out = e.apply(&[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "job/demo-producer replacing the finished Job: its template changed and Jobs are immutable\njob/demo-producer created\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("14 objects applied, 1 changed\n"), "{text}");
    let all = trace(&e.fake);
    let tail = &all[all.len() - 7 - prune_lists().len()..all.len() - prune_lists().len()];
    // The rejected apply (422), the look at the old Job, its deletion, the wait until it is
    // gone, the fresh apply and the wait for completion.
    assert_eq!(
        tail,
        [
            "PATCH BATCH/jobs/demo-producer",
            "GET BATCH/jobs/demo-producer",
            "DELETE BATCH/jobs/demo-producer",
            "GET BATCH/jobs/demo-producer",
            "GET BATCH/jobs/demo-producer",
            "PATCH BATCH/jobs/demo-producer",
            "GET BATCH/jobs/demo-producer",
        ]
    );
    let job = e.fake.object(&format!("{BATCH}/jobs"), "demo-producer").unwrap();
    let env: Vec<Value> = job["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().clone();
    assert!(env.contains(&json!({"name": "MESSAGES", "value": "20"})), "{env:?}");
}

/// A 422 on a Job that is not about an immutable field is an error to show, not a reason to
/// delete anything.
#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_job_is_refused_without_deleting_it() {
    let e = env(Scenario::healthy()).await;
    assert!(e.apply(&[]).await.status.success());
    let producer = e.generated.join("k8s/producer.yaml");
    let text = replace_once(&std::fs::read_to_string(&producer).unwrap(), "backoffLimit: 4", "backoffLimit: -1");
    std::fs::write(&producer, text).unwrap();
    let first = e.fake.requests().len();
    let out = e.apply(&[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("applying job/demo-producer failed: the API server refused it: 422 Invalid: Job.batch \"demo-producer\" is invalid"),
        "{err}"
    );
    assert!(err.contains("spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"), "{err}");
    assert!(e.fake.requests()[first..].iter().all(|r| r.method != "DELETE"), "nothing deleted");
    assert!(e.fake.object(&format!("{BATCH}/jobs"), "demo-producer").is_some());
}

/// A StatefulSet change to a field fixed at creation: explained with the way through; with
/// --recreate-statefulsets, deleted with orphan propagation (pods and claims stay) and created
/// anew.
#[tokio::test(flavor = "multi_thread")]
async fn an_immutable_statefulset_change_is_explained_then_recreated_on_request() {
    let e = env(Scenario::healthy()).await;
    assert!(e.apply(&[]).await.status.success());
    let pods = format!("{NS}/pods");
    assert!(e.fake.object(&pods, "kafka-0").is_some(), "the fake controller runs the broker pod");
    e.render(&replace_once(&bundled_inventory(), "storage = \"5Gi\"", "storage = \"10Gi\""));

    let first = e.fake.requests().len();
    let out = e.apply(&[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("applying statefulset/kafka failed: the API server refused it: 422 Invalid: StatefulSet.apps \"kafka\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than"), "{err}");
    assert!(err.contains("run `iac apply --recreate-statefulsets`"), "{err}");
    assert!(err.contains("propagationPolicy=Orphan"), "{err}");
    assert!(e.fake.requests()[first..].iter().all(|r| r.method != "DELETE"), "nothing deleted without the flag");
    assert!(e.fake.requests()[first..].iter().all(|r| !r.path.contains("deployments/kafka-connect") || r.method == "GET"), "stops there");

    // The dry run reports it would re-create, and deletes nothing.
    let first = e.fake.requests().len();
    let out = e.apply(&["--recreate-statefulsets", "--dry-run"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("statefulset/kafka would be deleted (orphaning its pods and volumes) and re-created"));
    assert!(e.fake.requests()[first..].iter().all(|r| r.method != "DELETE"));

    let first = e.fake.requests().len();
    let out = e.apply(&["--recreate-statefulsets"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "statefulset/kafka re-creating: deleting it with propagationPolicy=Orphan (pods and volumes stay)\nstatefulset/kafka created\n"
        ),
        "{text}"
    );
    let reqs = e.fake.requests();
    let delete = reqs[first..].iter().find(|r| r.method == "DELETE").expect("a DELETE");
    assert_eq!(delete.path, format!("{APPS}/statefulsets/kafka"));
    let body: Value = serde_json::from_str(&delete.body).unwrap();
    assert_eq!(body["propagationPolicy"], "Orphan");
    let sts = e.fake.object(&format!("{APPS}/statefulsets"), "kafka").unwrap();
    assert_eq!(sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "10Gi");
}

/// Objects with our labels that are no longer rendered go, after the rest applied; objects of
/// another instance, the Secret and what is rendered but not applied (the registration Job) stay.
#[tokio::test(flavor = "multi_thread")]
async fn what_is_no_longer_rendered_is_pruned() {
    let three = replace_once(&bundled_inventory(), "replicas = 1", "replicas = 3");
    let e = env_with(Scenario::healthy(), &three).await;
    assert!(e.apply(&[]).await.status.success());
    assert!(e.fake.object(&format!("{POLICY}/poddisruptionbudgets"), "kafka").is_some(), "three brokers have a budget");
    // A Service an earlier render had, and objects that must survive: another instance's, and
    // the registration Job a kubectl user applied.
    let raw = iac::cluster::connect_client(Some(&e.kubeconfig), None).await.unwrap().client;
    let apply = |path: String, body: Value| {
        let raw = raw.clone();
        async move {
            let req = http::Request::patch(format!("{path}?fieldManager=iac&force=true"))
                .header("Content-Type", "application/apply-patch+yaml")
                .body(serde_json::to_vec(&body).unwrap())
                .unwrap();
            raw.request::<Value>(req).await.unwrap();
        }
    };
    let labels = |instance: &str| json!({"app.kubernetes.io/managed-by": "iac", "app.kubernetes.io/part-of": "iac-pipeline", "app.kubernetes.io/instance": instance, "app.kubernetes.io/component": "kafka"});
    apply(format!("{NS}/services/kafka-old"), json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kafka-old", "labels": labels("loe-homelab")}, "spec": {"ports": [{"port": 9092}]}})).await;
    apply(format!("{NS}/services/kafka-other"), json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kafka-other", "labels": labels("another-site")}, "spec": {"ports": [{"port": 9092}]}})).await;
    let register: Vec<Value> =
        serde_saphyr::from_str_multiple(&std::fs::read_to_string(e.generated.join("k8s/register-connector.yaml")).unwrap()).unwrap();
    let job = register.iter().find(|d| d["kind"] == "Job").unwrap().clone();
    apply(format!("{BATCH}/jobs/register-connector"), job).await;

    // Back to one broker: the budget is no longer rendered.
    e.render(&bundled_inventory());
    let out = e.apply(&[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("== prune\n"), "{text}");
    assert!(text.contains("service/kafka-old pruned: no longer rendered\n"), "{text}");
    assert!(text.contains("poddisruptionbudget/kafka pruned: no longer rendered\n"), "{text}");
    // One broker again: the StatefulSet, the worker config (replication factor), Connect and the
    // producer change too.
    assert!(text.ends_with("14 objects applied, 4 changed, 2 pruned\n"), "{text}");
    assert!(e.fake.object(&format!("{POLICY}/poddisruptionbudgets"), "kafka").is_none());
    assert!(e.fake.object(&format!("{NS}/services"), "kafka-old").is_none());
    assert!(e.fake.object(&format!("{NS}/services"), "kafka-other").is_some(), "another instance's object stays");
    assert!(e.fake.object(&format!("{BATCH}/jobs"), "register-connector").is_some(), "rendered, so not pruned");
    assert!(e.fake.object(&format!("{NS}/secrets"), "pipeline-postgres").is_some());
    // Pruning comes last, after the producer finished.
    let all = trace(&e.fake);
    let last_patch = all.iter().rposition(|l| l.starts_with("PATCH")).unwrap();
    for pruned in ["DELETE NS/services/kafka-old", "DELETE POLICY/poddisruptionbudgets/kafka"] {
        assert!(all.iter().position(|l| l == pruned).unwrap() > last_patch, "{all:#?}");
    }
}

/// A renamed connector is registered under its new name and the old one deleted from Connect.
#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_connector_is_deleted_from_connect() {
    let e = env(Scenario::healthy()).await;
    assert!(e.apply(&[]).await.status.success());
    assert_eq!(e.fake.state.lock().unwrap().connectors.keys().collect::<Vec<_>>(), ["postgres-sink"]);
    e.render(&replace_once(&bundled_inventory(), "connector = \"postgres-sink\"", "connector = \"orders-sink\""));
    let first = e.fake.requests().len();
    let out = e.apply(&[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("connector/orders-sink created\n"), "{text}");
    assert!(text.contains("connector/postgres-sink deleted: renamed to orders-sink\n"), "{text}");
    let proxy = "NS/services/kafka-connect:8083/proxy";
    let tail = trace_of(&e.fake.requests()[first..]);
    let put = tail.iter().position(|l| *l == format!("PUT {proxy}/connectors/orders-sink/config")).unwrap();
    let delete = tail.iter().position(|l| *l == format!("DELETE {proxy}/connectors/postgres-sink")).unwrap();
    assert!(put < delete, "the new connector first: {tail:#?}");
    assert_eq!(e.fake.state.lock().unwrap().connectors.keys().collect::<Vec<_>>(), ["orders-sink"]);
    // Once renamed, a repeat does not delete again.
    let out = e.apply(&[]).await;
    assert!(!stdout(&out).contains("deleted"), "{}", stdout(&out));
}

/// Server-side apply with field managers: a hand edit by another manager would make a plain
/// apply fail with 409; iac forces, so it takes the field back, and the API server records iac
/// as its owner again.
#[tokio::test(flavor = "multi_thread")]
async fn a_hand_edit_is_taken_back_and_ownership_returns_to_iac() {
    let e = env(Scenario::healthy()).await;
    assert!(e.apply(&[]).await.status.success());
    let sts = format!("{APPS}/statefulsets/kafka");
    let raw = iac::cluster::connect_client(Some(&e.kubeconfig), None).await.unwrap().client;
    // kubectl edit: an Update by manager kubectl-edit.
    let edit = http::Request::patch(format!("{sts}?fieldManager=kubectl-edit"))
        .header("Content-Type", "application/merge-patch+json")
        .body(br#"{"spec":{"replicas":3}}"#.to_vec())
        .unwrap();
    raw.request::<Value>(edit).await.unwrap();
    assert!(e.fake.managers(&sts)["kubectl-edit"].contains(".spec.replicas"));

    // Without force the API server refuses iac's apply: kube-rs surfaces the Status.
    let body = e.fake.object(&format!("{APPS}/statefulsets"), "kafka").map(|mut o| {
        o["spec"]["replicas"] = json!(1);
        for f in ["status", "metadata"] {
            o.as_object_mut().unwrap().remove(f);
        }
        o["metadata"] = json!({"name": "kafka", "namespace": "kafka-pipeline"});
        o
    });
    let plain = http::Request::patch(format!("{sts}?fieldManager=iac"))
        .header("Content-Type", "application/apply-patch+yaml")
        .body(serde_json::to_vec(&body.unwrap()).unwrap())
        .unwrap();
    match raw.request::<Value>(plain).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            let cause = &s.details.as_ref().unwrap().causes[0];
            assert_eq!((cause.reason.as_str(), cause.field.as_str()), ("FieldManagerConflict", ".spec.replicas"));
            assert!(s.message.contains("conflict with \"kubectl-edit\""), "{}", s.message);
        }
        other => panic!("expected a 409, got {other:?}"),
    }

    let out = e.apply(&[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("statefulset/kafka configured\n"), "{}", stdout(&out));
    let managers = e.fake.managers(&sts);
    assert!(managers["iac"].contains(".spec.replicas"), "{managers:?}");
    assert!(!managers.get("kubectl-edit").is_some_and(|f| f.contains(".spec.replicas")), "{managers:?}");
    let live = e.fake.object(&format!("{APPS}/statefulsets"), "kafka").unwrap();
    assert_eq!(live["spec"]["replicas"], 1);
    let entries = live["metadata"]["managedFields"].as_array().unwrap();
    assert!(
        entries.iter().any(|m| m["manager"] == "iac" && m["operation"] == "Apply" && m["fieldsV1"]["f:spec"]["f:replicas"] == json!({}))
    );
}

/// A rotated password and a changed worker config both change Connect's pod template, so the
/// Deployment rolls; an unchanged re-apply does not.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_password_or_a_changed_worker_config_restarts_connect() {
    let e = env(Scenario::healthy()).await;
    assert!(e.apply(&[]).await.status.success());
    let dep = |e: &Env| e.fake.object(&format!("{APPS}/deployments"), "kafka-connect").unwrap();
    let template = |d: &Value| d["spec"]["template"]["metadata"]["annotations"].clone();
    let before = dep(&e);

    let generated = e.generated.to_str().unwrap().to_owned();
    let out = e.iac_env(&["apply", "--generated", &generated, "--timeout", "20"], Some("a-new-password-4Xq")).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("secret/pipeline-postgres configured\n"), "{text}");
    assert!(text.contains("deployment/kafka-connect configured\n"), "{text}");
    let rotated = dep(&e);
    assert_ne!(template(&before)["iac/secret-version"], template(&rotated)["iac/secret-version"]);
    assert_eq!(template(&before)["iac/worker-config-sha256"], template(&rotated)["iac/worker-config-sha256"]);
    assert_eq!(rotated["metadata"]["generation"].as_i64(), before["metadata"]["generation"].as_i64().map(|g| g + 1), "a new rollout");
    assert!(!serde_json::to_string(&rotated).unwrap().contains("a-new-password-4Xq"));

    // Three brokers: the internal topics' replication factor, so the worker config, changes.
    e.render(&replace_once(&bundled_inventory(), "replicas = 1", "replicas = 3"));
    let generated = e.generated.to_str().unwrap().to_owned();
    let out = e.iac_env(&["apply", "--generated", &generated, "--timeout", "20"], Some("a-new-password-4Xq")).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("configmap/kafka-connect-config configured\n"), "{text}");
    assert!(text.contains("deployment/kafka-connect configured\n"), "{text}");
    let reconfigured = dep(&e);
    assert_ne!(template(&rotated)["iac/worker-config-sha256"], template(&reconfigured)["iac/worker-config-sha256"]);
    assert_eq!(template(&rotated)["iac/secret-version"], template(&reconfigured)["iac/secret-version"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_sends_dry_run_all_and_persists_nothing() {
    let e = env(Scenario::healthy()).await;
    let out = e.apply(&["--dry-run"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let reqs = e.fake.requests();
    let patches: Vec<_> = reqs.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 14);
    assert!(patches.iter().all(|p| p.query.get("dryRun").map(String::as_str) == Some("All")));
    assert!(e.fake.state.lock().unwrap().objects.values().all(|c| c.is_empty()), "a dry run stored objects");
    assert!(reqs.iter().all(|r| !r.path.ends_with("/connectors/postgres-sink/config")), "no connector registration");
    assert!(reqs.iter().all(|r| r.method != "DELETE"));
    let text = stdout(&out);
    assert!(text.contains("namespace/kafka-pipeline created (dry run)"), "{text}");
    // Nothing can be dry-run inside a namespace that does not exist yet: said, not failed.
    assert!(text.contains("statefulset/kafka not checked (dry run): namespaces \"kafka-pipeline\" not found"), "{text}");
    assert!(text.contains("14 objects applied, 1 changed, 13 not checked (their namespace does not exist yet) (dry run)"), "{text}");
    assert!(text.contains("(dry run) would wait for statefulset/kafka"), "{text}");
    assert!(text.contains("connector/postgres-sink not validated: Kafka Connect is not reachable"), "{text}");

    // After a real apply, a dry run reports no change and has Connect validate the config.
    assert!(e.apply(&[]).await.status.success());
    let out = e.apply(&["--dry-run"]).await;
    let text = stdout(&out);
    assert_eq!(text.matches(" unchanged (dry run)\n").count(), 14, "{text}");
    assert!(text.contains("connector/postgres-sink config valid (dry run: not registered)"), "{text}");
    assert!(
        e.fake
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/connector-plugins/io.debezium.connector.jdbc.JdbcSinkConnector/config/validate"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_connector_task_stops_apply_with_its_trace() {
    let mut s = Scenario::healthy();
    s.connect_conflicts = 0;
    let trace = "org.apache.kafka.connect.errors.ConnectException: org.postgresql.util.PSQLException: FATAL: password authentication failed for user \"kafka\"\n\tat io.debezium.connector.jdbc.JdbcChangeEventSink.execute(JdbcChangeEventSink.java:103)";
    s.connector_statuses = vec![connector_status("RUNNING", &[("FAILED", Some(trace))])];
    let e = env(s).await;
    let out = e.apply(&[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("task 0 of connector postgres-sink FAILED on 10.42.1.9:8083:"), "{err}");
    assert!(err.contains("password authentication failed for user \"kafka\""), "{err}");
    assert!(err.contains("JdbcChangeEventSink.java:103"), "{err}");
    assert!(e.fake.requests().iter().all(|r| !r.path.contains("jobs/demo-producer")), "the producer must not start");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_producer_job_fails_fast() {
    let mut s = Scenario::healthy();
    s.job_outcome = "Failed";
    let e = env(s).await;
    let generated = e.generated.to_str().unwrap().to_owned();
    let t = Instant::now();
    let out = e.iac(&["apply", "--generated", &generated, "--timeout", "120"], true).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(t.elapsed() < Duration::from_secs(30), "waited {:?} for a failed Job", t.elapsed());
    let err = stderr(&out);
    assert!(
        err.contains(
            "job/demo-producer in kafka-pipeline to complete failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_that_never_gets_ready_times_out_and_stops() {
    let mut s = Scenario::healthy();
    s.kafka_ready = false;
    let e = env(s).await;
    let generated = e.generated.to_str().unwrap().to_owned();
    let t = Instant::now();
    let out = e.iac(&["apply", "--generated", &generated, "--timeout", "3"], true).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(t.elapsed() < Duration::from_secs(15));
    let err = stderr(&out);
    assert!(
        err.contains(
            "error: timed out after 3s waiting for statefulset/kafka in kafka-pipeline to be ready (last seen: 0/1 ready, 1/1 updated)"
        ),
        "{err}"
    );
    assert!(e.fake.requests().iter().all(|r| !r.path.contains("deployments") || r.method == "GET"), "Connect must not be applied");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_password_apply_touches_nothing() {
    let e = env(Scenario::healthy()).await;
    let generated = e.generated.to_str().unwrap().to_owned();
    let secrets = e.dir.path().join("secrets");
    let out = e.iac(&["apply", "--generated", &generated, "--secrets-dir", secrets.to_str().unwrap()], false).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "cannot read {}/kafka-db.age: No such file or directory (os error 2) (the database's declared secret: `iac secrets init` \
             creates it, --identity names the admin key; or set the variable pipeline.password_env names, or pass --password-file)",
            secrets.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(e.fake.requests().is_empty());

    // --password-file works instead of the variable.
    let pw = e.dir.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let out = e.iac(&["apply", "--generated", &generated, "--password-file", pw.to_str().unwrap()], false).await;
    assert!(out.status.success());
    let secret = e.fake.object(&format!("{NS}/secrets"), "pipeline-postgres").unwrap();
    assert_eq!(secret["data"]["password"], serde_json::to_value(k8s_openapi::ByteString(PASSWORD.as_bytes().to_vec())).unwrap());
}

/// By default the pipeline's Secret gets the database's declared secret, decrypted with the
/// admin's identity: the value the host's file holds (less one trailing newline, as psql reads
/// it there), so the host and the cluster cannot disagree. A Kubernetes consumer declared in
/// `[secrets.*]` gets its own Secret with the exact bytes. Nothing shows a value.
#[tokio::test(flavor = "multi_thread")]
async fn apply_takes_the_password_from_the_declared_secret() {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let inventory =
        replace_once(&bundled_inventory(), "age1sr4730t9hmwqf5nlk0tukp9tuekwpjecjjvqxkup7hve7pq4zc0snpe7c6", &id.to_public().to_string());
    let inventory = replace_once(
        &inventory,
        "hosts = [{ host = \"alkaid\", path = \"/var/lib/secrets/postgresql-kafka\" }]",
        "hosts = [{ host = \"alkaid\", path = \"/var/lib/secrets/postgresql-kafka\" }]\nkubernetes = [{ secret = \"grafana\", key = \"db-password\" }]",
    );
    let e = env_with(Scenario::healthy(), &inventory).await;
    let key = e.dir.path().join("admin.key");
    std::fs::write(&key, id.to_string().expose_secret()).unwrap();
    let secrets = e.dir.path().join("secrets");
    let value = "declared-pw-Vt4\n";
    secrets_set(&e.inventory, &secrets, "kafka-db", value);

    let generated = e.generated.to_str().unwrap().to_owned();
    let args = [
        "apply",
        "--generated",
        &generated,
        "--timeout",
        "20",
        "--secrets-dir",
        secrets.to_str().unwrap(),
        "--identity",
        key.to_str().unwrap(),
    ];
    let out = e.iac(&args, false).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = |s: &str| serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec())).unwrap();
    let secret = e.fake.object(&format!("{NS}/secrets"), "pipeline-postgres").unwrap();
    assert_eq!(secret["data"]["password"], bytes("declared-pw-Vt4"));
    let grafana = e.fake.object(&format!("{NS}/secrets"), "grafana").unwrap();
    assert_eq!(grafana["data"]["db-password"], bytes(value));
    assert_eq!(grafana["metadata"]["labels"]["app.kubernetes.io/managed-by"], "iac");
    assert!(stdout(&out).contains("secret/grafana created"), "{}", stdout(&out));
    for r in e.fake.requests() {
        assert!(!r.body.contains("declared-pw-Vt4"), "password in clear in {} {}", r.method, r.path);
    }
    assert!(!stdout(&out).contains("declared-pw") && !stderr(&out).contains("declared-pw"));

    // The variable pipeline.password_env names still overrides it.
    let out = e.iac(&args, true).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let secret = e.fake.object(&format!("{NS}/secrets"), "pipeline-postgres").unwrap();
    assert_eq!(secret["data"]["password"], bytes(PASSWORD));
}

// ---------------------------------------------------------------- errors for people

/// No API server: the commands name the address they tried and what to check; kube's own text
/// stopped at "ServiceError: client error (Connect)".
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_api_server_is_named_with_a_hint() {
    let e = env(Scenario::healthy()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(&e.kubeconfig, fake::kubeconfig_text(&format!("http://127.0.0.1:{port}"))).unwrap();
    let out = e.iac(&["pipeline", "status"], false).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with(&format!("error: cannot reach the Kubernetes API server at http://127.0.0.1:{port}: ")), "{err}");
    assert!(err.contains("client error (Connect)") && err.contains("Connection refused"), "{err}");
    assert!(err.contains("hint: is k3s running on alphard (systemctl status k3s)? The kubeconfig must name 172.22.0.134:6443"), "{err}");
    assert!(!err.contains("ServiceError"), "{err}");
    let generated = e.generated.to_str().unwrap().to_owned();
    let out = e.iac(&["apply", "--generated", &generated], true).await;
    assert!(stderr(&out).contains(&format!("cannot reach the Kubernetes API server at http://127.0.0.1:{port}")), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_kubeconfig_is_named_once() {
    let e = env(Scenario::healthy()).await;
    let missing = e.dir.path().join("no-such-kubeconfig");
    let mut cmd = tokio::process::Command::from(support::iac());
    cmd.args(["pipeline", "status", "--inventory"]).arg(&e.inventory).arg("--kubeconfig").arg(&missing).env_remove("KUBECONFIG");
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), format!("error: cannot read the kubeconfig {}: No such file or directory (os error 2)\n", missing.display()));
    // $KUBECONFIG naming one missing file: the same message.
    let mut cmd = tokio::process::Command::from(support::iac());
    cmd.args(["pipeline", "status", "--inventory"]).arg(&e.inventory).env("KUBECONFIG", &missing);
    let out = cmd.output().await.unwrap();
    assert!(stderr(&out).starts_with(&format!("error: cannot read the kubeconfig {}:", missing.display())), "{}", stderr(&out));
}

/// `iac secrets set NAME` for `inventory` into `dir`, the value on stdin as a user types it.
fn secrets_set(inventory: &std::path::Path, dir: &std::path::Path, name: &str, value: &str) {
    let mut set = support::iac();
    set.args(["secrets", "set", name, "--inventory"]).arg(inventory).arg("--secrets-dir").arg(dir).stdin(std::process::Stdio::piped());
    let mut child = set.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), value.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

// ---------------------------------------------------------------- pipeline status

fn fast() -> iac::cluster::status::StatusOptions {
    iac::cluster::status::StatusOptions { lag_interval: Duration::from_millis(200) }
}

async fn lib_client(e: &Env) -> kube::Client {
    iac::cluster::connect_client(Some(&e.kubeconfig), None).await.unwrap().client
}

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_status_shows_kafka_connector_lag_dead_letters_and_rows() {
    let e = env(Scenario::healthy()).await;
    let site = e.site();
    let client = lib_client(&e).await;

    // Connect is not deployed: the service proxy answers 503. kube's default retry would back
    // off for minutes on it; the client disables it, so the answer comes at once.
    let t = Instant::now();
    let before = iac::cluster::status::status(&client, &site, &fast(), async { Ok::<i64, String>(0) }).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "status took {:?}", t.elapsed());
    assert!(!before.healthy());
    let text = before.text();
    assert!(text.contains("kafka        BAD  statefulset/kafka in kafka-pipeline: not found: run `iac apply`"), "{text}");
    assert!(text.contains("connector    BAD  Kafka Connect not reachable"), "{text}");
    assert!(text.contains("lag          BAD  unknown until Kafka and the connector are up"), "{text}");

    assert!(e.apply(&[]).await.status.success());
    let first = e.fake.requests().len();
    let st = iac::cluster::status::status(&client, &site, &fast(), async { Ok::<i64, String>(10) }).await.unwrap();
    assert!(st.healthy(), "{}", st.text());
    assert_eq!(
        st.text(),
        "kafka        ok   statefulset/kafka in kafka-pipeline: 1/1 ready\n\
         connector    ok   postgres-sink: connector RUNNING, tasks: 0 RUNNING\n\
         lag          ok   demo-messages: 0 behind (committed 10 of 10)\n\
         dead letters ok   demo-messages-dlq: none\n\
         sink         ok   10 rows in kafka_messages\n"
    );
    let j = serde_json::to_value(&st).unwrap();
    assert_eq!(j["rows"], json!({"ok": true, "value": 10}));
    assert_eq!(j["lag"]["value"], json!({"topic": "demo-messages", "end": 10, "committed": 10, "behind": 0}));
    assert_eq!(j["connector"]["value"]["tasks"][0]["state"], "RUNNING");

    // The end offsets came from an exec into the broker pod, over the exec subresource.
    let reqs = e.fake.requests();
    let exec = reqs[first..].iter().find(|r| r.path.ends_with("/exec")).expect("an exec request");
    assert_eq!(exec.path, format!("{NS}/pods/kafka-0/exec"));
    assert_eq!(exec.query["container"], "kafka");
    let command: Vec<&str> = exec.query_all.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.as_str()).collect();
    assert_eq!(command[..2], ["/bin/bash", "-c"]);
    assert_eq!(command[3..], ["iac-topic-offsets", "demo-messages", "demo-messages-dlq"]);
    assert!(reqs[first..].iter().any(|r| r.path.ends_with("/connectors/postgres-sink/offsets")));

    let failing = iac::cluster::status::status(&client, &site, &fast(), async { Err::<i64, _>("connection refused") }).await.unwrap();
    assert!(!failing.healthy());
    assert!(failing.text().contains("sink         BAD  kafka_messages: row count unavailable: connection refused"));

    // The binary reads the row count from a real PostgreSQL, the way `iac query count` does.
    let server = support::pg::PgServer::shared();
    let db = server.fresh_database("status");
    server.psql(&db.name, &format!("CREATE TABLE kafka_messages (id int); ALTER TABLE kafka_messages OWNER TO {}; INSERT INTO kafka_messages SELECT generate_series(1, 7)", db.user));
    let mut cmd = support::iac();
    db.apply_env(&mut cmd)
        .args(["pipeline", "status", "--inventory"])
        .arg(&e.inventory)
        .arg("--kubeconfig")
        .arg(&e.kubeconfig)
        .env_remove("KUBECONFIG");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("sink         ok   7 rows in kafka_messages"), "{}", stdout(&out));

    // With the server gone, the status says why and fails.
    let mut cmd = support::iac();
    db.apply_env(&mut cmd)
        .env("PGPORT", "1")
        .args(["pipeline", "status", "--inventory"])
        .arg(&e.inventory)
        .arg("--kubeconfig")
        .arg(&e.kubeconfig)
        .env_remove("KUBECONFIG");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("sink         BAD  kafka_messages: row count unavailable"), "{}", stdout(&out));
}

/// `iac pipeline status` reads the sink's row count as the database owner with its declared
/// secret, like `iac query` (no PGPASSWORD, no pgpass file): the inventory's pipeline database
/// is a fresh database of the real test server, `secrets/kafka-db.age` is written by the real
/// `iac secrets set` for a fresh admin key, and the owner's role has that password. Without an
/// identity the count is unavailable; the value is never printed.
#[tokio::test(flavor = "multi_thread")]
async fn pipeline_status_counts_rows_with_the_declared_secret() {
    use crate::support::pg::{HOST, clear_pg_env};
    let e = env(Scenario::healthy()).await;
    let pg = support::pg::PgServer::shared();
    let db = pg.fresh_database("status_secret");
    let keys = tempfile::tempdir().unwrap();
    let admin = support::new_age_key(&keys.path().join("admin.key"));
    let inventory = replace_once(&bundled_inventory(), support::EXAMPLE_ADMIN, &admin);
    let inventory = replace_once(
        &inventory,
        "[databases.kafka]\nhost = \"alkaid\"\nowner = \"kafka\"\n",
        &format!("[databases.{}]\nhost = \"alkaid\"\nowner = \"{}\"\n", db.name, db.user),
    );
    let inventory = replace_once(&inventory, "database = \"kafka\"\n", &format!("database = \"{}\"\n", db.name));
    e.render(&inventory);
    let password = "Status-secret-7f3a9c";
    let secrets = keys.path().join("secrets");
    secrets_set(&e.inventory, &secrets, "kafka-db", password);
    pg.psql("postgres", &format!("ALTER ROLE {} PASSWORD '{password}'", db.user));
    pg.psql(
        &db.name,
        &format!("CREATE TABLE kafka_messages (id int); ALTER TABLE kafka_messages OWNER TO {}; INSERT INTO kafka_messages SELECT generate_series(1, 3)", db.user),
    );

    let status = |identity: Option<&std::path::Path>| {
        let mut cmd = support::iac();
        clear_pg_env(&mut cmd)
            .env("HOME", keys.path())
            .env("PGHOST", HOST)
            .env("PGPORT", db.port.to_string())
            .args(["pipeline", "status", "--inventory"])
            .arg(&e.inventory)
            .arg("--kubeconfig")
            .arg(&e.kubeconfig)
            .arg("--secrets-dir")
            .arg(&secrets)
            .env_remove("KUBECONFIG")
            .env_remove("IAC_IDENTITY");
        if let Some(i) = identity {
            cmd.arg("--identity").arg(i);
        }
        cmd
    };
    let mut with = status(Some(&keys.path().join("admin.key")));
    let out = tokio::task::spawn_blocking(move || with.output().unwrap()).await.unwrap();
    assert!(stdout(&out).contains("sink         ok   3 rows in kafka_messages"), "{}{}", stdout(&out), stderr(&out));
    assert!(!stdout(&out).contains(password) && !stderr(&out).contains(password));

    let mut without = status(None);
    let out = tokio::task::spawn_blocking(move || without.output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("sink         BAD  kafka_messages: row count unavailable"), "{}{}", stdout(&out), stderr(&out));
    assert!(!stdout(&out).contains(password) && !stderr(&out).contains(password));
}

/// Records in the dead-letter topic fail the status even though the connector runs and the sink
/// keeps up: today's check was green with every record there.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_fail_the_status() {
    let mut s = Scenario::healthy();
    s.dlq = Some((2, 10));
    let e = env(s).await;
    assert!(e.apply(&[]).await.status.success());
    let st = iac::cluster::status::status(&lib_client(&e).await, &e.site(), &fast(), async { Ok::<i64, String>(0) }).await.unwrap();
    assert!(!st.healthy());
    let text = st.text();
    assert!(text.contains("connector    ok"), "{text}");
    assert!(text.contains("lag          ok"), "{text}");
    assert!(text.contains("dead letters BAD  demo-messages-dlq: 8 records\n"), "{text}");
    assert!(
        text.contains(
            "hint: read them with their reasons: kubectl -n kafka-pipeline exec kafka-0 -- /opt/kafka/bin/kafka-console-consumer.sh"
        ),
        "{text}"
    );
    // The earliest offsets were read only because the topic holds records.
    let calls = e.fake.state.lock().unwrap().execs.len();
    assert_eq!(calls, 1);
}

/// A lag that does not shrink between two samples is a failure; one that shrinks is progress.
#[tokio::test(flavor = "multi_thread")]
async fn a_lag_must_shrink_between_two_samples() {
    let mut s = Scenario::healthy();
    s.committed = vec![4, 4];
    s.topic_end = vec![10];
    let e = env(s).await;
    assert!(e.apply(&[]).await.status.success());
    let t = Instant::now();
    let st = iac::cluster::status::status(&lib_client(&e).await, &e.site(), &fast(), async { Ok::<i64, String>(4) }).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200), "two samples, the interval apart");
    assert!(!st.healthy());
    let text = st.text();
    assert!(
        text.contains("lag          BAD  demo-messages: 6 behind (committed 4 of 10), then 6 behind: not shrinking over 0.2s\n"),
        "{text}"
    );
    assert!(text.contains("hint: the sink is not keeping up: kubectl -n kafka-pipeline logs deploy/kafka-connect"), "{text}");
    assert_eq!(e.fake.state.lock().unwrap().execs.len(), 2, "end offsets read at each sample");

    let mut s = Scenario::healthy();
    s.committed = vec![4, 9];
    s.topic_end = vec![10];
    let e = env(s).await;
    assert!(e.apply(&[]).await.status.success());
    let st = iac::cluster::status::status(&lib_client(&e).await, &e.site(), &fast(), async { Ok::<i64, String>(9) }).await.unwrap();
    assert!(st.healthy(), "{}", st.text());
    assert!(st.text().contains("lag          ok   demo-messages: 6 behind (committed 4 of 10), then 1 behind\n"), "{}", st.text());

    // The binary: exit 1 and the same line, with the interval from the command line.
    let mut s = Scenario::healthy();
    s.committed = vec![4];
    let e = env(s).await;
    assert!(e.apply(&[]).await.status.success());
    let out = e.iac(&["pipeline", "status", "--lag-interval-ms", "100"], false).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("lag          BAD  demo-messages: 6 behind (committed 4 of 10), then 6 behind: not shrinking over 0.1s"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_status_shows_a_failed_task() {
    let mut s = Scenario::healthy();
    s.connector_statuses = vec![connector_status("RUNNING", &[("FAILED", Some("java.lang.OutOfMemoryError: Java heap space"))])];
    let e = env(s).await;
    assert_eq!(e.apply(&[]).await.status.code(), Some(1));
    let st = iac::cluster::status::status(&lib_client(&e).await, &e.site(), &fast(), async { Ok::<i64, String>(3) }).await.unwrap();
    assert!(!st.healthy());
    let text = st.text();
    assert!(text.contains("kafka        ok"), "{text}");
    assert!(
        text.contains("connector    BAD  postgres-sink: connector RUNNING, tasks: 0 FAILED\ntask 0 of connector postgres-sink FAILED"),
        "{text}"
    );
    assert!(text.contains("java.lang.OutOfMemoryError: Java heap space"), "{text}");
}
