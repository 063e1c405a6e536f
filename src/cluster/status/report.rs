//! The pipeline's state as data: each part healthy or not (with where to look), the lag
//! computed from end and committed offsets, the text for people. Pure; `status` gathers it.

use std::fmt::Write as _;

use serde::Serialize;

use super::super::connect::{ConnectorOffsets, ConnectorStatus};
use super::super::names::KAFKA_STATEFULSET;

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
    pub(super) fn ok(value: T) -> Self {
        Self { ok: true, value: Some(value), problem: None, hint: None }
    }
    pub(super) fn bad(value: Option<T>, problem: impl Into<String>) -> Self {
        Self { ok: false, value, problem: Some(problem.into()), hint: None }
    }
    pub(super) fn hint(mut self, hint: impl Into<String>) -> Self {
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
