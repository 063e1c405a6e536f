//! `iac verify`, `iac apply` and `iac pipeline status` against the in-process fake API server
//! (tests/support/fake_apiserver.rs). The binary runs for real; only the API server is fake.

#[path = "support/fake_apiserver.rs"]
mod fake;
mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use fake::{Fake, Scenario, connector_status, node, system_pod};
use serde_json::{Value, json};
use support::repo;

const PASSWORD: &str = "fixture-pw-Zq7xK2";
const NS: &str = "/api/v1/namespaces/kafka-pipeline";
const APPS: &str = "/apis/apps/v1/namespaces/kafka-pipeline";
const BATCH: &str = "/apis/batch/v1/namespaces/kafka-pipeline";

struct Env {
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    generated: PathBuf,
    fake: Fake,
}

async fn env(scenario: Scenario) -> Env {
    let fake = Fake::start(scenario).await;
    let dir = tempfile::tempdir().unwrap();
    let k8s = dir.path().join("generated/k8s");
    std::fs::create_dir_all(&k8s).unwrap();
    for f in std::fs::read_dir(repo().join("tests/fixtures/k8s")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), k8s.join(f.file_name())).unwrap();
    }
    Env { kubeconfig: fake.kubeconfig(dir.path()), generated: dir.path().join("generated"), _dir: dir, fake }
}

impl Env {
    async fn iac(&self, args: &[&str], password: bool) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_iac"));
        cmd.args(args)
            .arg("--inventory")
            .arg(repo().join("hosts/inventory.toml"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env_remove("KUBECONFIG")
            .env_remove("IAC_PG_PASSWORD")
            .env_remove("IAC_INVENTORY");
        if password {
            cmd.env("IAC_PG_PASSWORD", PASSWORD);
        }
        let out = cmd.output().await.unwrap();
        eprintln!("--- iac {}\n{}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
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
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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
    assert!(text.starts_with("[FAIL] API server reachable: "), "{text}");
    assert!(text.contains("that k3s runs on alphard"), "{text}");
    assert!(text.contains("[SKIP] remaining checks"), "{text}");

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
    fake.requests()
        .iter()
        .filter(|r| !matches!(r.path.as_str(), "/api/v1" | "/apis/apps/v1" | "/apis/batch/v1"))
        .map(|r| {
            let p = r.path.replace(NS, "NS").replace(APPS, "APPS").replace(BATCH, "BATCH");
            format!("{} {p}", r.method)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_goes_in_dependency_order_and_waits() {
    let e = env(Scenario::healthy()).await;
    let out = e.apply(&[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let proxy = "NS/services/kafka-connect:8083/proxy";
    let expected = vec![
        "GET NS".to_owned(),
        "PATCH NS".to_owned(),
        "GET NS/secrets/pipeline-postgres".to_owned(),
        "PATCH NS/secrets/pipeline-postgres".to_owned(),
        "GET NS/services/kafka-headless".to_owned(),
        "PATCH NS/services/kafka-headless".to_owned(),
        "GET NS/services/kafka-bootstrap".to_owned(),
        "PATCH NS/services/kafka-bootstrap".to_owned(),
        "GET APPS/statefulsets/kafka".to_owned(),
        "PATCH APPS/statefulsets/kafka".to_owned(),
        "GET APPS/statefulsets/kafka".to_owned(),
        "GET APPS/deployments/kafka-connect".to_owned(),
        "PATCH APPS/deployments/kafka-connect".to_owned(),
        "GET NS/services/kafka-connect".to_owned(),
        "PATCH NS/services/kafka-connect".to_owned(),
        "GET APPS/deployments/kafka-connect".to_owned(),
        format!("PUT {proxy}/connectors/postgres-sink/config"),
        format!("PUT {proxy}/connectors/postgres-sink/config"),
        format!("GET {proxy}/connectors/postgres-sink/status"),
        format!("GET {proxy}/connectors/postgres-sink/status"),
        "GET BATCH/jobs/demo-producer".to_owned(),
        "PATCH BATCH/jobs/demo-producer".to_owned(),
        "GET BATCH/jobs/demo-producer".to_owned(),
    ];
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
    assert!(reqs.iter().all(|r| !r.path.contains("register-connector")));
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
    // The connector config went through the proxy as connector.json's config.
    let put = reqs.iter().rfind(|r| r.method == "PUT").unwrap();
    let sent: Value = serde_json::from_str(&put.body).unwrap();
    assert_eq!(sent["connector.class"], "io.aiven.connect.jdbc.JdbcSinkConnector");
    assert_eq!(sent["connection.password"], "${env:PG_PASSWORD}");

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
    assert!(text.contains("statefulset/kafka created\n"), "{text}");
    assert!(text.contains("connector/postgres-sink created\nconnector/postgres-sink connector RUNNING, tasks: 0 RUNNING\n"), "{text}");
    assert!(text.ends_with("8 objects applied, 8 changed\n"), "{text}");
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
    assert!(!text.contains(" created") || text.contains("connector/"), "{text}");
    assert_eq!(text.matches(" unchanged\n").count(), 8, "{text}");
    assert!(text.contains("connector/postgres-sink configured\n"), "PUT config is idempotent: 200, not 201\n{text}");
    assert!(text.ends_with("8 objects applied, 0 changed\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_producer_replaces_the_finished_job() {
    let e = env(Scenario::healthy()).await;
    assert!(e.apply(&[]).await.status.success());
    let producer = e.generated.join("k8s/producer.yaml");
    let text = std::fs::read_to_string(&producer).unwrap().replace("echo produce", "echo produce 20");
    std::fs::write(&producer, text).unwrap();
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
    assert!(text.ends_with("8 objects applied, 1 changed\n"), "{text}");
    let all = trace(&e.fake);
    // The rejected apply (422), the look at the old Job, its deletion, the wait until it is
    // gone, the fresh apply and the wait for completion.
    assert_eq!(
        all[all.len() - 7..],
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
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_sends_dry_run_all_and_persists_nothing() {
    let e = env(Scenario::healthy()).await;
    let out = e.apply(&["--dry-run"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let reqs = e.fake.requests();
    let patches: Vec<_> = reqs.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 8);
    assert!(patches.iter().all(|p| p.query.get("dryRun").map(String::as_str) == Some("All")));
    assert!(e.fake.state.lock().unwrap().objects.values().all(|c| c.is_empty()), "a dry run stored objects");
    assert!(reqs.iter().all(|r| !r.path.ends_with("/connectors/postgres-sink/config")), "no connector registration");
    let text = stdout(&out);
    assert!(text.contains("namespace/kafka-pipeline created (dry run)"), "{text}");
    // Nothing can be dry-run inside a namespace that does not exist yet: said, not failed.
    assert!(text.contains("statefulset/kafka not checked (dry run): namespaces \"kafka-pipeline\" not found"), "{text}");
    assert!(text.contains("8 objects applied, 1 changed, 7 not checked (their namespace does not exist yet) (dry run)"), "{text}");
    assert!(text.contains("(dry run) would wait for statefulset/kafka"), "{text}");
    assert!(text.contains("connector/postgres-sink not validated: Kafka Connect is not reachable"), "{text}");

    // After a real apply, a dry run reports no change and has Connect validate the config.
    assert!(e.apply(&[]).await.status.success());
    let out = e.apply(&["--dry-run"]).await;
    let text = stdout(&out);
    assert_eq!(text.matches(" unchanged (dry run)\n").count(), 8, "{text}");
    assert!(text.contains("connector/postgres-sink config valid (dry run: not registered)"), "{text}");
    assert!(
        e.fake.requests().iter().any(|r| r.path.ends_with("/connector-plugins/io.aiven.connect.jdbc.JdbcSinkConnector/config/validate"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_connector_task_stops_apply_with_its_trace() {
    let mut s = Scenario::healthy();
    s.connect_conflicts = 0;
    let trace = "org.apache.kafka.connect.errors.ConnectException: org.postgresql.util.PSQLException: FATAL: password authentication failed for user \"kafka\"\n\tat io.aiven.connect.jdbc.sink.JdbcDbWriter.write(JdbcDbWriter.java:64)";
    s.connector_statuses = vec![connector_status("RUNNING", &[("FAILED", Some(trace))])];
    let e = env(s).await;
    let out = e.apply(&[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("task 0 of connector postgres-sink FAILED on 10.42.1.9:8083:"), "{err}");
    assert!(err.contains("password authentication failed for user \"kafka\""), "{err}");
    assert!(err.contains("JdbcDbWriter.java:64"), "{err}");
    assert!(e.fake.requests().iter().all(|r| !r.path.contains("demo-producer")), "the producer must not start");
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
    assert!(e.fake.requests().iter().all(|r| !r.path.contains("deployments")), "Connect must not be applied");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_password_apply_touches_nothing() {
    let e = env(Scenario::healthy()).await;
    let generated = e.generated.to_str().unwrap().to_owned();
    let out = e.iac(&["apply", "--generated", &generated], false).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("set the environment variable IAC_PG_PASSWORD (pipeline.password_env) or pass --password-file"));
    assert!(e.fake.requests().is_empty());

    // --password-file works instead of the variable.
    let pw = e.generated.join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let out = e.iac(&["apply", "--generated", &generated, "--password-file", pw.to_str().unwrap()], false).await;
    assert!(out.status.success());
    let secret = e.fake.object(&format!("{NS}/secrets"), "pipeline-postgres").unwrap();
    assert_eq!(secret["data"]["password"], serde_json::to_value(k8s_openapi::ByteString(PASSWORD.as_bytes().to_vec())).unwrap());
}

// ---------------------------------------------------------------- pipeline status

async fn lib_client(e: &Env) -> kube::Client {
    iac::cluster::connect_client(Some(&e.kubeconfig), None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_status_shows_kafka_connector_and_rows() {
    let e = env(Scenario::healthy()).await;
    let site = iac::load_site(&repo().join("hosts/inventory.toml")).unwrap();
    let client = lib_client(&e).await;

    // Connect is not deployed: the service proxy answers 503. kube's default retry would back
    // off for minutes on it; the client disables it, so the answer comes at once.
    let t = Instant::now();
    let before = iac::cluster::status::status(&client, &site, async { Ok::<i64, String>(0) }).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "status took {:?}", t.elapsed());
    assert!(!before.healthy());
    let text = before.text();
    assert!(text.contains("kafka      BAD  statefulset/kafka in kafka-pipeline: not found: run `iac apply`"), "{text}");
    assert!(text.contains("connector  BAD  Kafka Connect not reachable"), "{text}");

    assert!(e.apply(&[]).await.status.success());
    let st = iac::cluster::status::status(&client, &site, async { Ok::<i64, String>(10) }).await.unwrap();
    assert!(st.healthy(), "{}", st.text());
    assert_eq!(
        st.text(),
        "kafka      ok   statefulset/kafka in kafka-pipeline: 1/1 ready\n\
         connector  ok   postgres-sink: connector RUNNING, tasks: 0 RUNNING\n\
         sink       ok   10 rows in kafka_messages\n"
    );
    let j = serde_json::to_value(&st).unwrap();
    assert_eq!(j["rows"], json!({"ok": true, "value": 10}));
    assert_eq!(j["connector"]["value"]["tasks"][0]["state"], "RUNNING");

    let failing = iac::cluster::status::status(&client, &site, async { Err::<i64, _>("connection refused") }).await.unwrap();
    assert!(!failing.healthy());
    assert!(failing.text().contains("sink       BAD  kafka_messages: row count unavailable: connection refused"));

    // The binary reads the row count from a real PostgreSQL, the way `iac query count` does.
    let server = support::pg::PgServer::shared();
    let db = server.fresh_database("status");
    server.psql(&db.name, &format!("CREATE TABLE kafka_messages (id int); ALTER TABLE kafka_messages OWNER TO {}; INSERT INTO kafka_messages SELECT generate_series(1, 7)", db.user));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_iac"));
    db.apply_env(&mut cmd)
        .args(["pipeline", "status", "--inventory"])
        .arg(repo().join("hosts/inventory.toml"))
        .arg("--kubeconfig")
        .arg(&e.kubeconfig)
        .env_remove("KUBECONFIG");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("sink       ok   7 rows in kafka_messages"), "{}", stdout(&out));

    // With the server gone, the status says why and fails.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_iac"));
    db.apply_env(&mut cmd)
        .env("PGPORT", "1")
        .args(["pipeline", "status", "--inventory"])
        .arg(repo().join("hosts/inventory.toml"))
        .arg("--kubeconfig")
        .arg(&e.kubeconfig)
        .env_remove("KUBECONFIG");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("sink       BAD  kafka_messages: row count unavailable"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_status_shows_a_failed_task() {
    let mut s = Scenario::healthy();
    s.connector_statuses = vec![connector_status("RUNNING", &[("FAILED", Some("java.lang.OutOfMemoryError: Java heap space"))])];
    let e = env(s).await;
    let site = iac::load_site(&repo().join("hosts/inventory.toml")).unwrap();
    assert_eq!(e.apply(&[]).await.status.code(), Some(1));
    let client = lib_client(&e).await;
    let st = iac::cluster::status::status(&client, &site, async { Ok::<i64, String>(3) }).await.unwrap();
    assert!(!st.healthy());
    let text = st.text();
    assert!(text.contains("kafka      ok"), "{text}");
    assert!(
        text.contains("connector  BAD  postgres-sink: connector RUNNING, tasks: 0 FAILED\ntask 0 of connector postgres-sink FAILED"),
        "{text}"
    );
    assert!(text.contains("java.lang.OutOfMemoryError: Java heap space"), "{text}");
}
