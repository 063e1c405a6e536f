//! Kafka Connect's REST API, reached through the API server's service proxy
//! (`/api/v1/namespaces/NS/services/kafka-connect:8083/proxy/...`), so `iac` needs no
//! port-forward and no route into the pod network.

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use serde::{Deserialize, Serialize};

use super::Error;
use super::manifests::Connector;
use super::names::{CONNECT_PORT, CONNECT_SERVICE};
use super::wait::{self, Progress, Waits};
use crate::reporter::Reporter;

#[derive(Clone)]
pub struct ConnectApi {
    client: Client,
    base: String,
}

/// `GET /connectors/NAME/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorStatus {
    pub name: String,
    pub connector: State,
    #[serde(default)]
    pub tasks: Vec<TaskState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub state: String,
    #[serde(default)]
    pub worker_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    pub id: u32,
    pub state: String,
    #[serde(default)]
    pub worker_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl ConnectorStatus {
    /// RUNNING with every task RUNNING is done; a FAILED connector or task is final (its trace
    /// is the reason); anything else (UNASSIGNED, PAUSED, no tasks yet) is still pending.
    pub fn progress(&self) -> Progress<()> {
        if self.connector.state == "FAILED" {
            return Progress::Failed(format!(
                "connector {} FAILED on {}:\n{}",
                self.name,
                self.connector.worker_id,
                self.connector.trace.as_deref().unwrap_or("(no trace)")
            ));
        }
        if let Some(t) = self.tasks.iter().find(|t| t.state == "FAILED") {
            return Progress::Failed(format!(
                "task {} of connector {} FAILED on {}:\n{}",
                t.id,
                self.name,
                t.worker_id,
                t.trace.as_deref().unwrap_or("(no trace)")
            ));
        }
        if self.connector.state == "RUNNING" && !self.tasks.is_empty() && self.tasks.iter().all(|t| t.state == "RUNNING") {
            return Progress::Done(());
        }
        Progress::Pending(self.summary())
    }

    /// `connector RUNNING, tasks: 0 RUNNING`
    pub fn summary(&self) -> String {
        let tasks: Vec<String> = self.tasks.iter().map(|t| format!("{} {}", t.id, t.state)).collect();
        let tasks = if tasks.is_empty() { "none yet".to_owned() } else { tasks.join(", ") };
        format!("connector {}, tasks: {tasks}", self.connector.state)
    }
}

/// `GET /connectors/NAME/offsets` (KIP-875, Kafka >= 3.6): for a sink connector, its consumer
/// group's committed offsets, `{"offsets": [{"partition": {"kafka_topic", "kafka_partition"},
/// "offset": {"kafka_offset"}}]}` (apache/kafka, connect/runtime `SinkUtils.java`). A committed
/// offset is the next record to consume.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConnectorOffsets {
    pub offsets: Vec<SinkOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SinkOffset {
    pub partition: SinkPartition,
    pub offset: SinkPosition,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SinkPartition {
    pub kafka_topic: String,
    pub kafka_partition: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SinkPosition {
    pub kafka_offset: i64,
}

/// `PUT /connector-plugins/CLASS/config/validate`: the only dry run Kafka Connect offers.
#[derive(Debug, Clone, Deserialize)]
pub struct Validation {
    pub error_count: u32,
    #[serde(default)]
    pub configs: Vec<ValidatedConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ValidatedConfig {
    pub value: ValidatedValue,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ValidatedValue {
    pub name: String,
    #[serde(default)]
    pub errors: Vec<String>,
}

impl Validation {
    pub fn errors(&self) -> Vec<String> {
        self.configs.iter().flat_map(|c| c.value.errors.iter().map(move |e| format!("{}: {e}", c.value.name))).collect()
    }
}

/// The connector's name travels in the URL path: keep it to characters that need no escaping.
fn check_name(name: &str) -> Result<(), Error> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        Ok(())
    } else {
        Err(Error::Connect(format!("connector name `{name}` must be made of a-z, 0-9, -, _ and .")))
    }
}

impl ConnectApi {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self { client, base: format!("/api/v1/namespaces/{namespace}/services/{CONNECT_SERVICE}:{CONNECT_PORT}/proxy") }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<(StatusCode, String), Error> {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base)).header("Accept", "application/json");
        if body.is_some() {
            req = req.header("Content-Type", "application/json");
        }
        let req = req.body(kube::client::Body::from(body.unwrap_or_default())).map_err(|e| Error::Connect(e.to_string()))?;
        let res = self.client.send(req).await?;
        let status = res.status();
        let bytes = res.into_body().collect().await.map_err(|e| Error::Connect(e.to_string()))?.to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Create or update the connector (`PUT /connectors/NAME/config` is idempotent). Retries
    /// while the worker group rebalances (409) or Connect's REST server is not up yet (503).
    pub async fn put_config(&self, connector: &Connector, waits: Waits, report: &dyn Reporter) -> Result<bool, Error> {
        check_name(&connector.name)?;
        let body = serde_json::to_vec(&connector.config).map_err(|e| Error::Connect(e.to_string()))?;
        let path = format!("/connectors/{}/config", connector.name);
        let what = format!("Kafka Connect to accept connector {}", connector.name);
        wait::until(&what, waits, report, || async {
            let (status, text) = self.call(Method::PUT, &path, Some(body.clone())).await?;
            Ok(match status {
                StatusCode::CREATED => Progress::Done(true),
                StatusCode::OK => Progress::Done(false),
                StatusCode::CONFLICT => Progress::Pending("409: the worker group is rebalancing".into()),
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => {
                    Progress::Pending(format!("{}: Connect's REST server is not reachable yet", status.as_u16()))
                }
                other => Progress::Failed(format!("PUT {path}: {}: {}", other.as_u16(), connect_message(&text))),
            })
        })
        .await
    }

    /// `None` when Connect does not know the connector (404).
    pub async fn status(&self, name: &str) -> Result<Option<ConnectorStatus>, Error> {
        check_name(name)?;
        let (status, text) = self.call(Method::GET, &format!("/connectors/{name}/status"), None).await?;
        match status {
            StatusCode::OK => serde_json::from_str(&text).map(Some).map_err(|e| Error::Connect(format!("status of {name}: {e}"))),
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(Error::Connect(format!("GET /connectors/{name}/status: {}: {}", other.as_u16(), connect_message(&text)))),
        }
    }

    /// Delete a connector (`DELETE /connectors/NAME`); false when Connect does not know it.
    pub async fn delete(&self, name: &str) -> Result<bool, Error> {
        check_name(name)?;
        let path = format!("/connectors/{name}");
        let (status, text) = self.call(Method::DELETE, &path, None).await?;
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            other => Err(Error::Connect(format!("DELETE {path}: {}: {}", other.as_u16(), connect_message(&text)))),
        }
    }

    /// The sink's committed offsets; `None` when Connect does not know the connector.
    pub async fn offsets(&self, name: &str) -> Result<Option<ConnectorOffsets>, Error> {
        check_name(name)?;
        let path = format!("/connectors/{name}/offsets");
        let (status, text) = self.call(Method::GET, &path, None).await?;
        match status {
            StatusCode::OK => serde_json::from_str(&text).map(Some).map_err(|e| Error::Connect(format!("offsets of {name}: {e}"))),
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(Error::Connect(format!("GET {path}: {}: {}", other.as_u16(), connect_message(&text)))),
        }
    }

    /// Poll the status until the connector and all its tasks run, or one of them fails.
    pub async fn wait_running(&self, name: &str, waits: Waits, report: &dyn Reporter) -> Result<ConnectorStatus, Error> {
        wait::until(&format!("connector {name} and its tasks to be RUNNING"), waits, report, || async {
            Ok(match self.status(name).await? {
                None => Progress::Pending("not known to Connect yet".into()),
                Some(s) => match s.progress() {
                    Progress::Done(()) => Progress::Done(s),
                    Progress::Pending(p) => Progress::Pending(p),
                    Progress::Failed(f) => Progress::Failed(f),
                },
            })
        })
        .await
    }

    pub async fn validate(&self, connector: &Connector) -> Result<Validation, Error> {
        let class = connector
            .config
            .get("connector.class")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| Error::Connect("connector.json has no config.connector.class".into()))?;
        check_name(class)?;
        let mut config = connector.config.clone();
        config.insert("name".into(), connector.name.clone().into());
        let body = serde_json::to_vec(&config).map_err(|e| Error::Connect(e.to_string()))?;
        let path = format!("/connector-plugins/{class}/config/validate");
        let (status, text) = self.call(Method::PUT, &path, Some(body)).await?;
        if status != StatusCode::OK {
            return Err(Error::Connect(format!("PUT {path}: {}: {}", status.as_u16(), connect_message(&text))));
        }
        serde_json::from_str(&text).map_err(|e| Error::Connect(format!("validation answer: {e}")))
    }
}

/// Connect's errors are `{"error_code": N, "message": "..."}`; a proxy error is a Kubernetes
/// Status with `message`; anything else is shown as it came.
fn connect_message(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.trim().chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(v: serde_json::Value) -> ConnectorStatus {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn task_failure_carries_its_trace() {
        let s = status(json!({"name": "postgres-sink", "connector": {"state": "RUNNING", "worker_id": "10.42.1.7:8083"},
            "tasks": [{"id": 0, "state": "FAILED", "worker_id": "10.42.1.7:8083", "trace": "org.apache.kafka.connect.errors.ConnectException: password authentication failed"}], "type": "sink"}));
        let Progress::Failed(reason) = s.progress() else { panic!() };
        assert!(reason.contains("task 0 of connector postgres-sink FAILED"));
        assert!(reason.contains("password authentication failed"));
    }

    #[test]
    fn running_needs_tasks() {
        let s = status(json!({"name": "c", "connector": {"state": "RUNNING", "worker_id": "w"}, "tasks": []}));
        assert_eq!(s.progress(), Progress::Pending("connector RUNNING, tasks: none yet".into()));
        let s = status(
            json!({"name": "c", "connector": {"state": "RUNNING", "worker_id": "w"}, "tasks": [{"id": 0, "state": "RUNNING", "worker_id": "w"}]}),
        );
        assert_eq!(s.progress(), Progress::Done(()));
    }

    #[test]
    fn sink_offsets_parse_as_kip_875_writes_them() {
        let o: ConnectorOffsets = serde_json::from_value(json!({"offsets": [
            {"partition": {"kafka_topic": "demo-messages", "kafka_partition": 0}, "offset": {"kafka_offset": 10}}]}))
        .unwrap();
        assert_eq!(o.offsets[0].partition.kafka_topic, "demo-messages");
        assert_eq!(o.offsets[0].offset.kafka_offset, 10);
    }

    #[test]
    fn names_are_path_safe() {
        assert!(check_name("postgres-sink").is_ok());
        assert!(check_name("../x").is_err());
        assert!(check_name("a b").is_err());
    }
}
