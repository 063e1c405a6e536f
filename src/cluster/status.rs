//! `iac pipeline status`: is Kafka ready, is the connector with its tasks running, how many rows
//! reached the sink table. One view, text or JSON, and a non-zero exit when any part is unwell.
//!
//! The row count comes from the caller: the SQL client lives in the query module, and this
//! module only needs a future that yields the count, so it is tested without a database.

use std::fmt::{Display, Write as _};
use std::future::Future;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Client;
use kube::api::Api;
use serde::Serialize;

use super::Error;
use super::conditions;
use super::connect::{ConnectApi, ConnectorStatus};
use super::names::KAFKA_STATEFULSET;
use super::wait::Progress;
use crate::model::Site;

#[derive(Debug, Clone, Serialize)]
pub struct PipelineStatus {
    pub namespace: String,
    pub kafka: Part<String>,
    pub connector: Part<ConnectorStatus>,
    pub table: String,
    pub rows: Part<i64>,
}

/// One part of the pipeline: healthy, or not with what is wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Part<T> {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl<T> Part<T> {
    fn ok(value: T) -> Self {
        Self { ok: true, value: Some(value), problem: None }
    }
    fn bad(value: Option<T>, problem: impl Into<String>) -> Self {
        Self { ok: false, value, problem: Some(problem.into()) }
    }
}

impl PipelineStatus {
    pub fn healthy(&self) -> bool {
        self.kafka.ok && self.connector.ok && self.rows.ok
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, label: &str, ok: bool, text: String| {
            let _ = writeln!(out, "{:<10} {:<4} {text}", label, if ok { "ok" } else { "BAD" });
        };
        let kafka = match (&self.kafka.value, &self.kafka.problem) {
            (_, Some(p)) => format!("statefulset/{KAFKA_STATEFULSET} in {}: {p}", self.namespace),
            (Some(v), None) => format!("statefulset/{KAFKA_STATEFULSET} in {}: {v}", self.namespace),
            (None, None) => String::new(),
        };
        line(&mut out, "kafka", self.kafka.ok, kafka);
        let connector = match (&self.connector.value, &self.connector.problem) {
            (Some(s), p) => {
                let mut t = format!("{}: {}", s.name, s.summary());
                if let Some(p) = p {
                    t.push_str(&format!("\n{p}"));
                }
                t
            }
            (None, Some(p)) => p.clone(),
            (None, None) => String::new(),
        };
        line(&mut out, "connector", self.connector.ok, connector);
        let rows = match (&self.rows.value, &self.rows.problem) {
            (Some(n), _) => format!("{n} rows in {}", self.table),
            (None, Some(p)) => format!("{}: {p}", self.table),
            (None, None) => String::new(),
        };
        line(&mut out, "sink", self.rows.ok, rows);
        out
    }
}

/// Gather the pipeline's state. `row_count` is awaited concurrently with the API calls; its
/// error is shown, not propagated, so the other parts are still reported.
pub async fn status<F, E>(client: &Client, site: &Site, row_count: F) -> Result<PipelineStatus, Error>
where
    F: Future<Output = Result<i64, E>>,
    E: Display,
{
    let pipeline = site.pipeline.as_ref().ok_or(Error::Missing("pipeline"))?;
    let ns = &pipeline.namespace;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let connect = ConnectApi::new(client.clone(), ns);
    let name = &pipeline.connect.connector;
    let (kafka, connector, rows) = tokio::join!(sts.get_opt(KAFKA_STATEFULSET), connect.status(name), row_count);

    let kafka = match kafka? {
        None => Part::bad(None, "not found: run `iac apply`"),
        Some(s) => {
            let ready = s.status.as_ref().and_then(|st| st.ready_replicas).unwrap_or(0);
            let want = s.spec.replicas.unwrap_or(1);
            let summary = format!("{ready}/{want} ready");
            match conditions::statefulset(&s) {
                Progress::Done(()) => Part::ok(summary),
                Progress::Pending(p) | Progress::Failed(p) => Part::bad(Some(summary), p),
            }
        }
    };
    let connector = match connector {
        Err(e) => Part::bad(None, format!("Kafka Connect not reachable: {e}")),
        Ok(None) => Part::bad(None, format!("connector {name} is not registered: run `iac apply`")),
        Ok(Some(s)) => match s.progress() {
            Progress::Done(()) => Part::ok(s),
            Progress::Pending(_) => Part::bad(Some(s), "not running yet"),
            Progress::Failed(f) => Part::bad(Some(s), f),
        },
    };
    let rows = match rows {
        Ok(n) => Part::ok(n),
        Err(e) => Part::bad(None, format!("row count unavailable: {e}")),
    };
    Ok(PipelineStatus { namespace: ns.clone(), kafka, connector, table: pipeline.table.clone(), rows })
}
