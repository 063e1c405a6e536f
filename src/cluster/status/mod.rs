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
//!
//! This file makes the calls; `report` is the state they add up to, pure and unit-tested.

mod report;

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncReadExt;

use super::Error;
use super::conditions;
use super::connect::{ConnectApi, ConnectorOffsets};
use super::names::{KAFKA_CONTAINER, KAFKA_STATEFULSET, dlq_topic_of};
use super::wait::Progress;
use crate::model::Site;

pub use report::{DeadLetters, Lag, Part, PipelineStatus, TopicOffsets, lag};

const OFFSETS_SCRIPT: &str = include_str!("../scripts/topic-offsets.sh");
/// A JVM tool started in a broker pod under its CPU limit: seconds, not minutes.
const EXEC_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// Between the two samples of the lag, when the first shows one. Longer than the worker's
    /// offset commit interval, or a sink that is consuming looks stuck.
    pub lag_interval: Duration,
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
