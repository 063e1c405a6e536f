//! How `--latest` and `--follow` order rows, and the SQL that reads them in that order.
//!
//! **Time first, then a key.** "Newest" means the time column (`--time-column`, else the
//! first `timestamp`/`timestamptz` column; for the bundled pipeline that is the payload's
//! `created_at`, which the producer stamps and the JDBC sink stores as `TIMESTAMP`). Times
//! are not unique (the demo producer stamps whole seconds), so ties are broken by the table's
//! primary key, which makes the order total and repeatable. Rows with a NULL time count as
//! the oldest.
//!
//! **Two ways to follow**, chosen from the primary key:
//!
//! - [`Key::Kafka`]: the key is the sink's Kafka coordinates (`pk.mode=kafka`), in the order
//!   both the Aiven/Confluent and the Debezium JDBC sink create it: `__connect_topic`,
//!   `__connect_partition`, `__connect_offset` (Aiven-Open/jdbc-connector-for-apache-kafka
//!   `JdbcSinkConfig.DEFAULT_KAFKA_PK_NAMES`; debezium/debezium
//!   `debezium-connector-jdbc/.../GeneralDatabaseDialect.getColumnValueForKafkaKeyMode`).
//!   Kafka offsets only grow within a partition and one task writes a partition in offset
//!   order, so the cursor is "the highest offset seen per partition": a poll reads, for each
//!   partition, the rows above it. That is a range scan of the primary-key index per partition
//!   (the partitions themselves are found by a loose index scan), so a poll costs the same on
//!   a table of ten rows or ten million. A row whose time is older than rows already printed
//!   (another partition delivered late, a producer with a slow clock) is still printed, once,
//!   when it arrives. An upsert replay (the sink re-writing offsets it already wrote, after a
//!   restart) keeps its coordinates and is not printed again.
//! - [`Key::Primary`]: any other primary key. The cursor is the last `(time, key...)` printed
//!   and a poll reads `WHERE (time, key...) > cursor`. A row inserted later with a time at or
//!   before the cursor is never printed (that is the price of a time cursor); an upsert of a
//!   printed row keeps its key and time and is not printed again. Without an index that leads
//!   with the time column the server scans the table on each poll.
//!
//! The SQL below names every column through `escape_identifier`; the table is always `k`.
//! Columns the cursor needs ride along at the end of each row ("hidden" columns, raw, in the
//! binary format) and are never printed: the writers print only the table's columns.

use postgres_protocol::escape::escape_identifier;

use super::QueryError;
use super::format::{Column, Kind};
use super::relation::{TableName, select_list};

/// At most this many rows per partition (Kafka) or per poll (keyset) are read by one poll; a
/// poll that reaches it is followed by the next at once. The `ORDER BY ... LIMIT` is also what
/// makes the planner read a partition through the primary-key index in offset order rather
/// than scan the table (a bare `offset > $x` is estimated to match a third of the rows).
pub const POLL_BATCH: u32 = 10_000;

/// The sink's Kafka coordinate columns with `pk.mode=kafka`, in primary-key order.
pub const KAFKA_COORDINATES: [&str; 3] = ["__connect_topic", "__connect_partition", "__connect_offset"];

/// What breaks ties in time, and what `--follow` keeps its cursor on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// The primary key is the Kafka coordinates: indexes of topic, partition, offset.
    Kafka { topic: usize, partition: usize, offset: usize },
    /// Another primary key: indexes of its columns, in index order.
    Primary(Vec<usize>),
    /// No primary key (a view, a table without one): ties stay in the server's order.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Index of the time column, if the table has one.
    pub time: Option<usize>,
    pub key: Key,
}

/// Why an order does not serve, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Latest,
    Follow,
}

impl Use {
    fn flag(self) -> &'static str {
        match self {
            Use::Latest => "--latest",
            Use::Follow => "--follow",
        }
    }
}

impl Order {
    /// The order of a table from its columns, the chosen time column and its primary key.
    pub fn resolve(columns: &[Column], time_column: Option<&str>, primary_key: &[String], table: &TableName) -> Result<Order, QueryError> {
        let index = |name: &str| columns.iter().position(|c| c.name == name);
        let time = match time_column {
            Some(name) => Some(index(name).ok_or_else(|| QueryError::ColumnMissing { table: table.to_string(), column: name.into() })?),
            None => columns.iter().position(|c| c.kind.is_time()),
        };
        let pk: Option<Vec<usize>> = primary_key.iter().map(|n| index(n)).collect();
        let key = match pk {
            Some(pk) if pk.is_empty() => Key::None,
            Some(pk) if is_kafka(columns, primary_key, &pk) => Key::Kafka { topic: pk[0], partition: pk[1], offset: pk[2] },
            Some(pk) => Key::Primary(pk),
            None => Key::None,
        };
        Ok(Order { time, key })
    }

    /// Refuse what this order cannot do: `--latest` needs a time; `--follow` needs Kafka
    /// coordinates, or a time and a primary key.
    pub fn check(&self, what: Use, table: &TableName) -> Result<(), QueryError> {
        let no_time = || QueryError::NoTimeColumn { table: table.to_string(), flag: what.flag() };
        match (what, &self.key) {
            (Use::Latest, _) if self.time.is_none() => Err(no_time()),
            (Use::Follow, Key::Kafka { .. }) | (Use::Latest, _) => Ok(()),
            (Use::Follow, Key::None) => Err(QueryError::NoKey { table: table.to_string() }),
            (Use::Follow, Key::Primary(_)) if self.time.is_none() => Err(no_time()),
            (Use::Follow, Key::Primary(_)) => Ok(()),
        }
    }

    /// The hidden columns, by index into the table's columns: the time (if any), then the key.
    pub fn hidden(&self) -> Vec<usize> {
        let mut h: Vec<usize> = self.time.into_iter().collect();
        match &self.key {
            Key::Kafka { topic, partition, offset } => h.extend([*topic, *partition, *offset]),
            Key::Primary(cols) => h.extend(cols),
            Key::None => {}
        }
        h
    }

    /// `ORDER BY` items over the table's own columns, oldest first or newest first.
    fn by_columns(&self, columns: &[Column], newest_first: bool) -> String {
        let (dir, nulls) = if newest_first { (" DESC", " NULLS LAST") } else { ("", " NULLS FIRST") };
        self.hidden()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let extra = if i == 0 && self.time.is_some() { nulls } else { "" };
                format!("k.{}{dir}{extra}", escape_identifier(&columns[*c].name))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `ORDER BY` items by output position: the hidden columns start after the table's own.
    fn by_position(&self, columns: &[Column]) -> String {
        let first = columns.len() + 1;
        (0..self.hidden().len())
            .map(|i| if i == 0 && self.time.is_some() { format!("{} NULLS FIRST", first + i) } else { (first + i).to_string() })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The select list: the table's columns as printed, then the hidden ones (raw).
    fn select(&self, columns: &[Column]) -> String {
        let mut items: Vec<String> = Vec::new();
        let shown = select_list(columns);
        if !shown.is_empty() {
            items.push(shown);
        }
        for (i, c) in self.hidden().iter().enumerate() {
            items.push(format!("k.{} AS \"iac:{i}\"", escape_identifier(&columns[*c].name)));
        }
        items.join(", ")
    }

    /// Position (0-based) of hidden column `i` in a row.
    pub fn hidden_at(&self, columns: &[Column], i: usize) -> usize {
        columns.len() + i
    }

    /// Position (0-based) of the first key column among the hidden ones.
    pub fn key_at(&self, columns: &[Column]) -> usize {
        columns.len() + usize::from(self.time.is_some())
    }

    /// The newest `$n` rows (`n_param` is the parameter number), printed oldest first.
    pub fn latest_sql(&self, table: &TableName, columns: &[Column], filter: Option<&str>, n_param: usize) -> String {
        format!(
            "SELECT * FROM (SELECT {} FROM {} AS k{} ORDER BY {} LIMIT ${n_param}) AS latest ORDER BY {}",
            self.select(columns),
            table.sql(),
            where_(filter),
            self.by_columns(columns, true),
            self.by_position(columns)
        )
    }

    /// Every row (that passes the filter), oldest first.
    pub fn ordered_sql(&self, table: &TableName, columns: &[Column], filter: Option<&str>) -> String {
        format!("SELECT {} FROM {} AS k{} ORDER BY {}", self.select(columns), table.sql(), where_(filter), self.by_columns(columns, false))
    }

    /// Kafka key: the highest offset per partition, as (topic text, partition int8, offset int8).
    pub fn kafka_cursor_sql(&self, table: &TableName, columns: &[Column]) -> Option<String> {
        let Key::Kafka { topic, partition, offset } = self.key else { return None };
        let (t, p, o) = (name(columns, topic), name(columns, partition), name(columns, offset));
        Some(format!(
            "{} SELECT parts.t::text, parts.p::int8, (SELECT max(k.{o}) FROM {tbl} AS k WHERE k.{t} = parts.t AND k.{p} = parts.p)::int8 FROM parts",
            partitions(table, &t, &p),
            tbl = table.sql()
        ))
    }

    /// Kafka key: rows above the offsets seen, per partition (`$1` topics, `$2` partitions,
    /// `$3` offsets; a partition not in them is read from its start), at most [`POLL_BATCH`]
    /// per partition. The last column says whether the row passes the filter; every row moves
    /// the cursor.
    pub fn kafka_poll_sql(&self, table: &TableName, columns: &[Column], filter: Option<&str>) -> Option<String> {
        let Key::Kafka { topic, partition, offset } = self.key else { return None };
        let (t, p, o) = (name(columns, topic), name(columns, partition), name(columns, offset));
        Some(format!(
            "{} SELECT r.* FROM parts \
             LEFT JOIN unnest($1::text[], $2::int8[], $3::int8[]) AS seen(t, p, o) ON seen.t = parts.t::text AND seen.p = parts.p \
             CROSS JOIN LATERAL (SELECT {}, {} AS \"iac:keep\" FROM {tbl} AS k \
               WHERE k.{t} = parts.t AND k.{p} = parts.p AND k.{o} > coalesce(seen.o, -1) \
               ORDER BY k.{o} LIMIT {POLL_BATCH}) AS r \
             ORDER BY {}",
            partitions(table, &t, &p),
            self.select(columns),
            keep(filter),
            self.by_position(columns),
            tbl = table.sql()
        ))
    }

    /// Primary key: the newest (time, key...) with a time, as hidden columns.
    pub fn keyset_cursor_sql(&self, table: &TableName, columns: &[Column]) -> Option<String> {
        let time = self.time?;
        matches!(self.key, Key::Primary(_)).then(|| {
            format!(
                "SELECT {} FROM {} AS k WHERE k.{} IS NOT NULL ORDER BY {} LIMIT 1",
                self.hidden_list(columns),
                table.sql(),
                name(columns, time),
                self.by_columns(columns, true)
            )
        })
    }

    /// Primary key: rows after the cursor (`$1`..`$m`, the hidden columns' values), or, with
    /// no cursor yet, every row with a time; at most [`POLL_BATCH`]. The last column is the
    /// filter, as for Kafka.
    pub fn keyset_poll_sql(&self, table: &TableName, columns: &[Column], filter: Option<&str>, after_cursor: bool) -> Option<String> {
        let time = self.time?;
        if !matches!(self.key, Key::Primary(_)) {
            return None;
        }
        let condition = if after_cursor {
            let params: Vec<String> = (1..=self.hidden().len()).map(|i| format!("${i}")).collect();
            format!("({}) > ({})", self.hidden_list(columns), params.join(", "))
        } else {
            format!("k.{} IS NOT NULL", name(columns, time))
        };
        Some(format!(
            "SELECT {}, {} AS \"iac:keep\" FROM {} AS k WHERE {condition} ORDER BY {} LIMIT {POLL_BATCH}",
            self.select(columns),
            keep(filter),
            table.sql(),
            self.by_columns(columns, false)
        ))
    }

    fn hidden_list(&self, columns: &[Column]) -> String {
        self.hidden().iter().map(|c| format!("k.{}", name(columns, *c))).collect::<Vec<_>>().join(", ")
    }
}

fn name(columns: &[Column], i: usize) -> String {
    escape_identifier(&columns[i].name)
}

fn where_(filter: Option<&str>) -> String {
    filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
}

fn keep(filter: Option<&str>) -> String {
    filter.map_or_else(|| "true".to_owned(), |f| format!("({f}) IS TRUE"))
}

/// The table's distinct (topic, partition) pairs by a loose index scan: one probe of the
/// primary-key index per pair instead of reading the table.
fn partitions(table: &TableName, t: &str, p: &str) -> String {
    format!(
        "WITH RECURSIVE parts(t, p) AS ( \
           (SELECT k.{t}, k.{p} FROM {tbl} AS k ORDER BY 1, 2 LIMIT 1) \
           UNION ALL \
           SELECT n.t, n.p FROM parts, LATERAL (SELECT k.{t} AS t, k.{p} AS p FROM {tbl} AS k \
             WHERE (k.{t}, k.{p}) > (parts.t, parts.p) ORDER BY 1, 2 LIMIT 1) AS n)",
        tbl = table.sql()
    )
}

/// The Kafka coordinates as the sinks create them: text topic, integer partition and offset.
fn is_kafka(columns: &[Column], names: &[String], pk: &[usize]) -> bool {
    names.iter().map(String::as_str).eq(KAFKA_COORDINATES)
        && columns[pk[0]].kind == Kind::Text
        && matches!(columns[pk[1]].kind, Kind::Int2 | Kind::Int4 | Kind::Int8)
        && matches!(columns[pk[2]].kind, Kind::Int4 | Kind::Int8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, kind: Kind) -> Column {
        Column { name: name.into(), kind }
    }

    fn sink() -> Vec<Column> {
        vec![
            col("__connect_topic", Kind::Text),
            col("__connect_partition", Kind::Int4),
            col("__connect_offset", Kind::Int8),
            col("id", Kind::Int4),
            col("message", Kind::Text),
            col("created_at", Kind::Timestamp),
        ]
    }

    fn pk(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn table() -> TableName {
        TableName::new(None, "kafka_messages".into()).unwrap()
    }

    #[test]
    fn the_sink_table_follows_by_kafka_coordinates_and_orders_by_created_at() {
        let o = Order::resolve(&sink(), None, &pk(&KAFKA_COORDINATES), &table()).unwrap();
        assert_eq!(o, Order { time: Some(5), key: Key::Kafka { topic: 0, partition: 1, offset: 2 } });
        assert_eq!(o.hidden(), vec![5, 0, 1, 2]);
        assert!(o.check(Use::Latest, &table()).is_ok() && o.check(Use::Follow, &table()).is_ok());
        assert_eq!(
            o.latest_sql(&table(), &sink(), None, 1),
            "SELECT * FROM (SELECT \"__connect_topic\", \"__connect_partition\", \"__connect_offset\", \"id\", \"message\", \"created_at\", \
             k.\"created_at\" AS \"iac:0\", k.\"__connect_topic\" AS \"iac:1\", k.\"__connect_partition\" AS \"iac:2\", \
             k.\"__connect_offset\" AS \"iac:3\" FROM \"kafka_messages\" AS k \
             ORDER BY k.\"created_at\" DESC NULLS LAST, k.\"__connect_topic\" DESC, k.\"__connect_partition\" DESC, k.\"__connect_offset\" DESC \
             LIMIT $1) AS latest ORDER BY 7 NULLS FIRST, 8, 9, 10"
        );
    }

    #[test]
    fn a_different_key_order_or_type_is_not_kafka() {
        let reordered = pk(&["__connect_partition", "__connect_topic", "__connect_offset"]);
        let o = Order::resolve(&sink(), None, &reordered, &table()).unwrap();
        assert_eq!(o.key, Key::Primary(vec![1, 0, 2]));
        let mut cols = sink();
        cols[2].kind = Kind::Numeric;
        let o = Order::resolve(&cols, None, &pk(&KAFKA_COORDINATES), &table()).unwrap();
        assert!(matches!(o.key, Key::Primary(_)));
    }

    #[test]
    fn what_each_flag_needs() {
        let cols = vec![col("id", Kind::Int8), col("at", Kind::TimestampTz), col("note", Kind::Text)];
        // A primary key and a time: both.
        let o = Order::resolve(&cols, None, &pk(&["id"]), &table()).unwrap();
        assert_eq!(o, Order { time: Some(1), key: Key::Primary(vec![0]) });
        assert!(o.check(Use::Follow, &table()).is_ok());
        // No primary key: --latest only.
        let o = Order::resolve(&cols, None, &[], &table()).unwrap();
        assert!(o.check(Use::Latest, &table()).is_ok());
        assert!(matches!(o.check(Use::Follow, &table()), Err(QueryError::NoKey { .. })));
        // No time column: neither, unless one is named (any orderable column will do).
        let o = Order::resolve(&cols[..1], None, &pk(&["id"]), &table()).unwrap();
        assert!(matches!(o.check(Use::Latest, &table()), Err(QueryError::NoTimeColumn { flag: "--latest", .. })));
        assert!(matches!(o.check(Use::Follow, &table()), Err(QueryError::NoTimeColumn { flag: "--follow", .. })));
        let o = Order::resolve(&cols, Some("id"), &pk(&["id"]), &table()).unwrap();
        assert_eq!(o.time, Some(0));
        assert!(matches!(Order::resolve(&cols, Some("nope"), &[], &table()), Err(QueryError::ColumnMissing { .. })));
        // Kafka coordinates follow without a time (ordered by coordinates), but --latest needs one.
        let kafka = &sink()[..5];
        let o = Order::resolve(kafka, None, &pk(&KAFKA_COORDINATES), &table()).unwrap();
        assert!(o.check(Use::Follow, &table()).is_ok());
        assert!(o.check(Use::Latest, &table()).is_err());
    }

    #[test]
    fn keyset_poll_compares_the_whole_key() {
        let cols = vec![col("at", Kind::Timestamp), col("a", Kind::Text), col("b", Kind::Int4)];
        let o = Order::resolve(&cols, None, &pk(&["a", "b"]), &table()).unwrap();
        let sql = o.keyset_poll_sql(&table(), &cols, Some("\"at\" >= $4"), true).unwrap();
        assert!(sql.contains("WHERE (k.\"at\", k.\"a\", k.\"b\") > ($1, $2, $3) ORDER BY k.\"at\" NULLS FIRST, k.\"a\", k.\"b\""), "{sql}");
        assert!(sql.contains("(\"at\" >= $4) IS TRUE AS \"iac:keep\""), "{sql}");
        let first = o.keyset_poll_sql(&table(), &cols, None, false).unwrap();
        assert!(first.contains("true AS \"iac:keep\"") && first.contains("WHERE k.\"at\" IS NOT NULL"), "{first}");
        assert!(o.kafka_poll_sql(&table(), &cols, None).is_none());
    }
}
