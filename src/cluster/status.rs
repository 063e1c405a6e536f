//! `iac pipeline status`: is Kafka ready, is the connector with its tasks running, does the sink
//! keep up with the topic, did any record end in the dead-letter topic, how many rows reached the
//! sink table. One view, text or JSON, and a non-zero exit when any part is unwell: a connector
//! RUNNING with every record in the dead-letter topic, or stuck behind the topic, is not well.
//!
//! Where the numbers come from:
//! - committed offsets: Kafka Connect's `GET /connectors/NAME/offsets` (KIP-875, Kafka >= 3.6;
//!   the Connect image runs Kafka 4.1.1), through the API server's service proxy;
//! - end offsets: `kafka-get-offsets.sh` run in a broker pod through the `exec` subresource
//!   (scripts/topic-offsets.sh). Neither Kafka nor Connect serves end offsets over REST, and the
//!   broker pod already has the tools, the client configuration and the network path;
//! - the row count: the caller's future (the SQL client lives in the query module), awaited
//!   concurrently with the API calls.

use std::fmt::{Display, Write as _};
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, AttachParams};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::Error;
use super::conditions;
use super::connect::{ConnectApi, ConnectorOffsets, ConnectorStatus};
use super::names::{KAFKA_CONTAINER, KAFKA_STATEFULSET, dlq_topic_of};
use super::wait::Progress;
use crate::model::Site;

const OFFSETS_SCRIPT: &str = include_str!("scripts/topic-offsets.sh");
/// A JVM tool started in a broker pod under its CPU limit: seconds, not minutes.
const EXEC_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// Between the two samples of the lag, when the first shows one. Longer than the worker's
    /// offset commit interval, or a sink that is consuming looks stuck.
    pub lag_interval: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineStatus {
    pub namespace: String,
    pub kafka: Part<String>,
    pub connector: Part<ConnectorStatus>,
    pub lag: Part<Lag>,
    pub dead_letters: Part<DeadLetters>,
    pub table: String,
    pub rows: Part<i64>,
}

/// One part of the pipeline: healthy, or not with what is wrong and where to look.
#[derive(Debug, Clone, Serialize)]
pub struct Part<T> {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl<T> Part<T> {
    fn ok(value: T) -> Self {
        Self { ok: true, value: Some(value), problem: None, hint: None }
    }
    fn bad(value: Option<T>, problem: impl Into<String>) -> Self {
        Self { ok: false, value, problem: Some(problem.into()), hint: None }
    }
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The sink's consumer lag on its topic: records in the topic it has not committed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lag {
    pub topic: String,
    pub end: i64,
    pub committed: i64,
    pub behind: i64,
    /// The lag at the second sample, taken only when the first showed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub then_behind: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetters {
    pub topic: String,
    pub records: i64,
}

/// A topic's offsets per partition, as `kafka-get-offsets.sh` prints them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicOffsets {
    pub latest: Vec<(String, i32, i64)>,
    pub earliest: Vec<(String, i32, i64)>,
}

impl TopicOffsets {
    /// `latest demo-messages:0:10` / `earliest demo-messages-dlq:0:3` lines.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (which, rest) = line.split_once(' ').ok_or_else(|| format!("unexpected line `{line}`"))?;
            let mut parts = rest.rsplitn(3, ':');
            let (Some(offset), Some(partition), Some(topic)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("unexpected line `{line}`"));
            };
            let entry = (
                topic.to_owned(),
                partition.parse().map_err(|_| format!("bad partition in `{line}`"))?,
                offset.parse().map_err(|_| format!("bad offset in `{line}`"))?,
            );
            match which {
                "latest" => out.latest.push(entry),
                "earliest" => out.earliest.push(entry),
                _ => return Err(format!("unexpected line `{line}`")),
            }
        }
        Ok(out)
    }

    fn sum(list: &[(String, i32, i64)], topic: &str) -> i64 {
        list.iter().filter(|(t, _, _)| t == topic).map(|(_, _, o)| o).sum()
    }

    /// Records a topic holds now: end minus earliest, over its partitions.
    pub fn depth(&self, topic: &str) -> i64 {
        let latest = Self::sum(&self.latest, topic);
        let earliest = if self.earliest.iter().any(|(t, _, _)| t == topic) { Self::sum(&self.earliest, topic) } else { 0 };
        (latest - earliest).max(0)
    }
}

/// Lag of the sink on `topic`: per partition, end minus committed (a partition with nothing
/// committed yet counts from 0: sink tasks start at the earliest offset).
pub fn lag(topic: &str, ends: &TopicOffsets, committed: &ConnectorOffsets) -> Lag {
    let mut end = 0;
    let mut done = 0;
    let mut behind = 0;
    for (_, partition, e) in ends.latest.iter().filter(|(t, _, _)| t == topic) {
        let c = committed
            .offsets
            .iter()
            .find(|o| o.partition.kafka_topic == topic && o.partition.kafka_partition == *partition)
            .map_or(0, |o| o.offset.kafka_offset);
        end += e;
        done += c.min(*e);
        behind += (e - c).max(0);
    }
    Lag { topic: topic.to_owned(), end, committed: done, behind, then_behind: None }
}

impl PipelineStatus {
    pub fn healthy(&self) -> bool {
        self.kafka.ok && self.connector.ok && self.lag.ok && self.dead_letters.ok && self.rows.ok
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, label: &str, ok: bool, text: String, hint: &Option<String>| {
            let _ = writeln!(out, "{:<12} {:<4} {text}", label, if ok { "ok" } else { "BAD" });
            if let Some(h) = hint {
                let _ = writeln!(out, "{:<17}hint: {h}", "");
            }
        };
        let kafka = match (&self.kafka.value, &self.kafka.problem) {
            (_, Some(p)) => format!("statefulset/{KAFKA_STATEFULSET} in {}: {p}", self.namespace),
            (Some(v), None) => format!("statefulset/{KAFKA_STATEFULSET} in {}: {v}", self.namespace),
            (None, None) => String::new(),
        };
        line(&mut out, "kafka", self.kafka.ok, kafka, &self.kafka.hint);
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
        line(&mut out, "connector", self.connector.ok, connector, &self.connector.hint);
        let lag = match (&self.lag.value, &self.lag.problem) {
            (Some(l), p) => {
                let mut t = format!("{}: {} behind (committed {} of {})", l.topic, l.behind, l.committed, l.end);
                if let Some(then) = l.then_behind {
                    t.push_str(&format!(", then {then} behind"));
                }
                if let Some(p) = p {
                    t.push_str(&format!(": {p}"));
                }
                t
            }
            (None, Some(p)) => p.clone(),
            (None, None) => String::new(),
        };
        line(&mut out, "lag", self.lag.ok, lag, &self.lag.hint);
        let dead = match (&self.dead_letters.value, &self.dead_letters.problem) {
            (Some(d), _) if d.records == 0 => format!("{}: none", d.topic),
            (Some(d), _) => format!("{}: {} record{}", d.topic, d.records, if d.records == 1 { "" } else { "s" }),
            (None, Some(p)) => p.clone(),
            (None, None) => String::new(),
        };
        line(&mut out, "dead letters", self.dead_letters.ok, dead, &self.dead_letters.hint);
        let rows = match (&self.rows.value, &self.rows.problem) {
            (Some(n), _) => format!("{n} rows in {}", self.table),
            (None, Some(p)) => format!("{}: {p}", self.table),
            (None, None) => String::new(),
        };
        line(&mut out, "sink", self.rows.ok, rows, &self.rows.hint);
        out
    }
}

/// Run the offsets script in the first broker pod and parse what it prints.
pub async fn topic_offsets(client: &Client, namespace: &str, topic: &str, dlq: &str) -> Result<TopicOffsets, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = format!("{KAFKA_STATEFULSET}-0");
    let command = ["/bin/bash", "-c", OFFSETS_SCRIPT, "iac-topic-offsets", topic, dlq];
    let run = async {
        let params = AttachParams::default().container(KAFKA_CONTAINER).stdout(true).stderr(true);
        let mut process = pods.exec(&pod, command, &params).await?;
        let (mut stdout, mut stderr) = (process.stdout(), process.stderr());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let read_out = async {
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut err).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = match process.take_status() {
            Some(s) => s.await,
            None => None,
        };
        let _ = process.join().await;
        Ok::<_, Error>((out, err, status))
    };
    let (out, err, status) = tokio::time::timeout(EXEC_TIMEOUT, run).await.map_err(|_| Error::Failed {
        what: format!("reading offsets in pod {pod}"),
        reason: format!("no answer in {}s", EXEC_TIMEOUT.as_secs()),
    })??;
    if let Some(s) = status.filter(|s| s.status.as_deref() == Some("Failure")) {
        let stderr = String::from_utf8_lossy(&err);
        return Err(Error::Failed {
            what: format!("kafka-get-offsets.sh in pod {pod}"),
            reason: format!(
                "{}{}",
                s.message.unwrap_or_default(),
                if stderr.trim().is_empty() { String::new() } else { format!(": {}", stderr.trim()) }
            ),
        });
    }
    TopicOffsets::parse(&String::from_utf8_lossy(&out))
        .map_err(|e| Error::Failed { what: format!("reading offsets in pod {pod}"), reason: e })
}

/// One look at the sink's progress: committed offsets (Connect) and end offsets (the broker).
async fn sample(
    client: &Client,
    connect: &ConnectApi,
    ns: &str,
    name: &str,
    topic: &str,
    dlq: &str,
) -> Result<(TopicOffsets, Option<ConnectorOffsets>), Error> {
    let (ends, committed) = tokio::join!(topic_offsets(client, ns, topic, dlq), connect.offsets(name));
    Ok((ends?, committed?))
}

/// Gather the pipeline's state. `row_count` is awaited concurrently with the API calls; its
/// error is shown, not propagated, so the other parts are still reported.
pub async fn status<F, E>(client: &Client, site: &Site, opts: &StatusOptions, row_count: F) -> Result<PipelineStatus, Error>
where
    F: Future<Output = Result<i64, E>>,
    E: Display,
{
    let pipeline = site.pipeline.as_ref().ok_or(Error::Missing("pipeline"))?;
    let ns = &pipeline.namespace;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let connect = ConnectApi::new(client.clone(), ns);
    let name = &pipeline.connect.connector;
    let topic = &pipeline.topic;
    let dlq = dlq_topic_of(topic);
    let rest = async {
        let (kafka, connector) = tokio::join!(sts.get_opt(KAFKA_STATEFULSET), connect.status(name));
        let kafka = kafka?;
        let flow = match (&kafka, &connector) {
            (Some(_), Ok(Some(_))) => Some(progress(client, &connect, ns, name, topic, &dlq, opts).await),
            _ => None,
        };
        Ok::<_, Error>((kafka, connector, flow))
    };
    let (rest, rows) = tokio::join!(rest, row_count);
    let (kafka, connector, flow) = rest?;

    let kafka = match kafka {
        None => Part::bad(None, "not found: run `iac apply`"),
        Some(s) => {
            let ready = s.status.as_ref().and_then(|st| st.ready_replicas).unwrap_or(0);
            let want = s.spec.replicas.unwrap_or(1);
            let summary = format!("{ready}/{want} ready");
            match conditions::statefulset(&s) {
                Progress::Done(()) => Part::ok(summary),
                Progress::Pending(p) | Progress::Failed(p) => Part::bad(Some(summary), p)
                    .hint(format!("kubectl -n {ns} describe pod {KAFKA_STATEFULSET}-0; kubectl -n {ns} logs {KAFKA_STATEFULSET}-0")),
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
    let (lag, dead_letters) = match flow {
        Some(Ok(parts)) => parts,
        Some(Err(e)) => {
            let why = format!("offsets unavailable: {e}");
            (Part::bad(None, why.clone()), Part::bad(None, why))
        }
        None => {
            let why = "unknown until Kafka and the connector are up";
            (Part::bad(None, why), Part::bad(None, why))
        }
    };
    let rows = match rows {
        Ok(n) => Part::ok(n),
        Err(e) => Part::bad(None, format!("row count unavailable: {e}")),
    };
    Ok(PipelineStatus { namespace: ns.clone(), kafka, connector, lag, dead_letters, table: pipeline.table.clone(), rows })
}

/// Lag and dead letters: a lag is sampled a second time after `opts.lag_interval`; it must have
/// shrunk. Any record in the dead-letter topic is a failure.
async fn progress(
    client: &Client,
    connect: &ConnectApi,
    ns: &str,
    name: &str,
    topic: &str,
    dlq: &str,
    opts: &StatusOptions,
) -> Result<(Part<Lag>, Part<DeadLetters>), Error> {
    let (ends, committed) = sample(client, connect, ns, name, topic, dlq).await?;
    let committed = committed.unwrap_or(ConnectorOffsets { offsets: vec![] });
    let records = ends.depth(dlq);
    let dead = DeadLetters { topic: dlq.to_owned(), records };
    let dead_letters = if records == 0 {
        Part::ok(dead)
    } else {
        Part::bad(Some(dead), "records the sink could not convert or transform").hint(format!(
            "read them with their reasons: kubectl -n {ns} exec {KAFKA_STATEFULSET}-0 -- /opt/kafka/bin/kafka-console-consumer.sh \
             --bootstrap-server localhost:9092 --topic {dlq} --from-beginning --property print.headers=true \
             (the __connect.errors.* headers say why); the producer must send {{\"schema\", \"payload\"}} envelopes"
        ))
    };
    let mut l = lag(topic, &ends, &committed);
    if l.behind == 0 {
        return Ok((Part::ok(l), dead_letters));
    }
    tokio::time::sleep(opts.lag_interval).await;
    let (ends, committed) = sample(client, connect, ns, name, topic, dlq).await?;
    let then = lag(topic, &ends, &committed.unwrap_or(ConnectorOffsets { offsets: vec![] })).behind;
    l.then_behind = Some(then);
    let lag = if then < l.behind {
        Part::ok(l)
    } else {
        Part::bad(Some(l), format!("not shrinking over {:.1}s", opts.lag_interval.as_secs_f64())).hint(format!(
            "the sink is not keeping up: kubectl -n {ns} logs deploy/kafka-connect; a task retrying a database error \
             (password, pg_hba, the firewall of the database host) stays RUNNING while it makes no progress"
        ))
    };
    Ok((lag, dead_letters))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn committed(offsets: &[(i32, i64)]) -> ConnectorOffsets {
        serde_json::from_value(json!({"offsets": offsets.iter().map(|(p, o)|
            json!({"partition": {"kafka_topic": "t", "kafka_partition": p}, "offset": {"kafka_offset": o}})).collect::<Vec<_>>()}))
        .unwrap()
    }

    #[test]
    fn offsets_output_parses() {
        let o = TopicOffsets::parse("latest t:0:10\nlatest t:1:5\nlatest t-dlq:0:7\nearliest t-dlq:0:2\n").unwrap();
        assert_eq!(o.depth("t-dlq"), 5);
        assert_eq!(o.depth("t"), 15);
        assert_eq!(o.depth("absent"), 0);
        assert!(TopicOffsets::parse("t:0:10").is_err());
        assert!(TopicOffsets::parse("latest t:x:10").is_err());
        // Topic names may hold '.', never ':'.
        assert_eq!(TopicOffsets::parse("latest a.b:0:1").unwrap().latest, vec![("a.b".to_string(), 0, 1)]);
    }

    #[test]
    fn lag_per_partition() {
        let ends = TopicOffsets::parse("latest t:0:10\nlatest t:1:5\n").unwrap();
        assert_eq!(lag("t", &ends, &committed(&[(0, 10), (1, 5)])).behind, 0);
        let l = lag("t", &ends, &committed(&[(0, 7)]));
        assert_eq!((l.end, l.committed, l.behind), (15, 7, 8), "partition 1 has nothing committed yet");
    }
}
