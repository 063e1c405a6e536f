//! `iac query messages --follow`: print the rows (all, or the newest N), then poll for new
//! ones and print each once, in order, until SIGINT or SIGTERM (exit 0) or until the server
//! goes away (exit 3).
//!
//! The first rows and the cursor come from one `REPEATABLE READ` snapshot, so a row committed
//! meanwhile is neither lost nor printed twice. Each poll then reads only what lies beyond the
//! cursor (see [`super::order`] for the two kinds of cursor and what happens to late rows and
//! upsert replays); no poll uses OFFSET or re-reads what was printed. Rows are flushed after
//! each poll, so a pipe sees them at once. Only JSON lines and the table stream forever: a
//! JSON array would never be closed, so `--format json` is refused.
//!
//! A row is written synchronously, so stopping between two awaits (a signal) never leaves half
//! a row; the table's `(N rows)` footer is printed on the way out.
//!
//! Why this file is long: the polling loop, its cursor and the cursor's SQL parameter type are
//! one state machine; `order` already holds what it orders by and the SQL.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::io::{self, Write};
use std::time::Duration;

use bytes::BytesMut;
use futures::{TryStreamExt, pin_mut};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Row, Statement};

use super::connect::ConnectionEnd;
use super::format::{self, Column, Format, RowWriter, Value};
use super::messages::{Filter, Param, prepare_filter, since_condition};
use super::order::{Key, Order, POLL_BATCH, Use};
use super::relation::{self, TableName};
use super::{QueryError, describe};
use crate::reporter::Reporter;

/// `--interval`: a friendly duration as jiff reads it (`1s`, `500ms`, `2m`, `1.5s`; jiff's
/// `SignedDuration: FromStr`, ISO 8601 or its "friendly" format), or plain seconds (`0.5`).
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let d = match t.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => return Err(format!("invalid interval {s:?}")),
        Err(_) => {
            let sd: jiff::SignedDuration = t.parse().map_err(|e| format!("invalid interval {s:?}: {e}"))?;
            Duration::try_from(sd).map_err(|_| format!("invalid interval {s:?}: must not be negative"))?
        }
    };
    if d < Duration::from_millis(10) {
        return Err(format!("interval {s:?} is too short (at least 10ms)"));
    }
    Ok(d)
}

/// `--follow` streams forever: a JSON array cannot be.
pub fn check_format(format: Format) -> Result<(), QueryError> {
    match format {
        Format::Json => Err(QueryError::Config(
            "--follow never ends, so a JSON array would never close: use --format jsonl (one object per line)".into(),
        )),
        Format::Table | Format::Jsonl => Ok(()),
    }
}

/// SIGINT and SIGTERM, caught so `--follow` can end its output and exit 0.
pub struct Shutdown {
    int: Signal,
    term: Signal,
}

impl Shutdown {
    /// Must run inside the runtime (tokio's signal driver).
    pub fn install() -> Result<Shutdown, QueryError> {
        let on = |kind| signal(kind).map_err(|e| QueryError::Config(format!("cannot watch for signals: {e}")));
        Ok(Shutdown { int: on(SignalKind::interrupt())?, term: on(SignalKind::terminate())? })
    }

    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

pub struct Options<'a> {
    pub filter: &'a Filter,
    /// Where the note that `--follow` waits for its table goes (stderr for people).
    pub report: &'a dyn Reporter,
    /// Start with the newest N rows instead of all of them.
    pub latest: Option<u64>,
    pub interval: Duration,
    pub format: Format,
}

/// Follow the table until `shutdown`; the number of rows printed. `server` names the server
/// in errors; `end` tells why the connection ended if it does.
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    client: &Client,
    mut end: ConnectionEnd,
    server: &str,
    table: &TableName,
    database: &str,
    options: &Options<'_>,
    shutdown: &mut Shutdown,
    out: impl Write,
) -> Result<u64, QueryError> {
    check_format(options.format)?;
    let waited = tokio::select! {
        r = wait_for_table(client, table, database, options) => r,
        () = shutdown.wait() => return Ok(0),
    };
    let oid = match waited {
        Ok(oid) => oid,
        Err(e) => return Err(lost_or_server(&e, client, &mut end, server).await),
    };
    let columns = relation::columns(client, table).await?;
    let key = relation::primary_key(client, oid).await?;
    let order = Order::resolve(&columns, options.filter.time_column.as_deref(), &key, table)?;
    order.check(Use::Follow, table)?;
    if options.latest.is_some() {
        order.check(Use::Latest, table)?;
    }
    prepare_filter(client, options.filter).await?;
    no_jit(client).await?;
    let mut state = State { writer: format::writer(options.format, &columns, out), rows: 0 };
    let follower = Follower { client, order: &order, columns: &columns, table, options };
    let outcome = {
        let run = follower.run(&mut state);
        tokio::select! {
            r = run => r,
            () = shutdown.wait() => Ok(()),
        }
    };
    if let Err(fail) = outcome {
        return Err(match fail {
            Fail::Pg(e) => lost_or_server(&e, client, &mut end, server).await,
            Fail::Other(e) => e,
        });
    }
    state.writer.finish(state.rows).map_err(QueryError::Output)?;
    Ok(state.rows)
}

/// The table's OID, once it exists. The JDBC sink creates its table with the first record it
/// writes (`schema.evolution = basic`, `src/render/k8s/connector.rs`), so a `--follow` started
/// right after a deploy finds none yet: like `tail -F`, it waits, checking every `--interval`,
/// and says so once.
async fn wait_for_table(client: &Client, table: &TableName, database: &str, options: &Options<'_>) -> Result<u32, tokio_postgres::Error> {
    let mut told = false;
    loop {
        if let Some(oid) = relation::oid_if_exists(client, table).await? {
            return Ok(oid);
        }
        if !told {
            options
                .report
                .progress(&format!("waiting for table {table} in database \"{database}\" (the sink creates it with its first record)"));
            told = true;
        }
        tokio::time::sleep(options.interval).await;
    }
}

/// Turn off JIT compilation for this session. The poll's estimate (up to [`POLL_BATCH`] rows
/// per partition, for a hundred partitions the planner assumes) is far above `jit_above_cost`,
/// so the server would compile it on every poll: measured on 1,000,000 rows, 25 ms of JIT for
/// 0.1 ms of index reads. Servers before PostgreSQL 11 have no `jit` setting; that is fine.
async fn no_jit(client: &Client) -> Result<(), QueryError> {
    match client.batch_execute("SET jit = off").await {
        Err(e) if e.code() != Some(&SqlState::UNDEFINED_OBJECT) => Err(QueryError::server(&e)),
        _ => Ok(()),
    }
}

struct State<'w> {
    writer: Box<dyn RowWriter + 'w>,
    rows: u64,
}

impl State<'_> {
    fn print(&mut self, row: &Row) -> Result<(), Fail> {
        self.writer.row(row)?;
        self.rows += 1;
        Ok(())
    }
}

enum Fail {
    Pg(tokio_postgres::Error),
    Other(QueryError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<QueryError> for Fail {
    fn from(e: QueryError) -> Self {
        Fail::Other(e)
    }
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Other(QueryError::Output(e))
    }
}

/// A failed request: the connection is gone (closed, or the server said it is shutting down:
/// SQLSTATE class 57P "operator intervention" or 08 "connection exception"), or the server
/// refused the statement.
async fn lost_or_server(e: &tokio_postgres::Error, client: &Client, end: &mut ConnectionEnd, server: &str) -> QueryError {
    let code = e.code().map(|c| c.code());
    let gone = e.is_closed() || client.is_closed() || code.is_some_and(|c| c.starts_with("57P") || c.starts_with("08"));
    if !gone {
        return QueryError::server(e);
    }
    let message = match (e.as_db_error(), end.reason().await) {
        (None, Some(reason)) => reason,
        _ => describe(e),
    };
    QueryError::ConnectionLost { server: server.into(), message }
}

/// Where the last poll stopped.
enum Cursor {
    /// Highest offset seen per (topic, partition).
    Kafka(BTreeMap<(String, i64), i64>),
    /// The last (time, key...) seen, as the server sent it; None before the first row.
    Keyset(Option<Vec<RawValue>>),
}

/// A value sent back exactly as the server sent it (binary format), for a parameter of the
/// same type: the keyset cursor round-trips any key type without decoding it.
#[derive(Debug, Clone)]
struct RawValue {
    ty: Type,
    bytes: Vec<u8>,
}

impl ToSql for RawValue {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        if *ty != self.ty {
            return Err(format!("cursor value of type {} cannot be sent as {}", self.ty, ty).into());
        }
        out.extend_from_slice(&self.bytes);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

struct Follower<'a> {
    client: &'a Client,
    order: &'a Order,
    columns: &'a [Column],
    table: &'a TableName,
    options: &'a Options<'a>,
}

impl Follower<'_> {
    async fn run(&self, state: &mut State<'_>) -> Result<(), Fail> {
        let mut cursor = self.start(state).await?;
        state.writer.flush()?;
        let mut statements = BTreeMap::new();
        let mut more = false;
        loop {
            if !more {
                tokio::time::sleep(self.options.interval).await;
            }
            more = self.poll(&mut cursor, &mut statements, state).await?;
            state.writer.flush()?;
        }
    }

    /// The since filter as a condition whose parameter is `$param`.
    fn since(&self, param: usize) -> Result<(Option<String>, Vec<Param>), QueryError> {
        Ok(match since_condition(self.options.filter, self.columns, self.table, param)? {
            Some((cond, p)) => (Some(cond), vec![p]),
            None => (None, Vec::new()),
        })
    }

    /// The first rows and the cursor, from one snapshot.
    async fn start(&self, state: &mut State<'_>) -> Result<Cursor, Fail> {
        self.client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        let (cond, mut params) = self.since(1)?;
        let sql = match self.options.latest {
            Some(n) => {
                params.push(Box::new(i64::try_from(n).unwrap_or(i64::MAX)));
                self.order.latest_sql(self.table, self.columns, cond.as_deref(), params.len())
            }
            None => self.order.ordered_sql(self.table, self.columns, cond.as_deref()),
        };
        let stream = self.client.query_raw(&sql, params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync))).await?;
        pin_mut!(stream);
        while let Some(row) = stream.try_next().await? {
            state.print(&row)?;
        }
        let cursor = self.initial_cursor().await?;
        self.client.batch_execute("COMMIT").await?;
        Ok(cursor)
    }

    async fn initial_cursor(&self) -> Result<Cursor, Fail> {
        if let Some(sql) = self.order.kafka_cursor_sql(self.table, self.columns) {
            let mut seen = BTreeMap::new();
            for row in self.client.query(&sql, &[]).await? {
                let offset: Option<i64> = row.try_get(2)?;
                seen.insert((row.try_get(0)?, row.try_get(1)?), offset.unwrap_or(-1));
            }
            return Ok(Cursor::Kafka(seen));
        }
        let sql = self.order.keyset_cursor_sql(self.table, self.columns).ok_or_else(|| unsupported(self.table))?;
        let row = self.client.query_opt(&sql, &[]).await?;
        Ok(Cursor::Keyset(match row {
            Some(row) => Some(raw_values(&row, 0, self.order.hidden().len())?),
            None => None,
        }))
    }

    /// One poll: print what lies beyond the cursor and move it. True when it stopped at
    /// [`POLL_BATCH`], so more rows are waiting.
    async fn poll(&self, cursor: &mut Cursor, statements: &mut BTreeMap<String, Statement>, state: &mut State<'_>) -> Result<bool, Fail> {
        let (sql, params): (String, Vec<Param>) = match &*cursor {
            Cursor::Kafka(seen) => {
                let (cond, since) = self.since(4)?;
                let sql = self.order.kafka_poll_sql(self.table, self.columns, cond.as_deref()).ok_or_else(|| unsupported(self.table))?;
                let topics: Vec<String> = seen.keys().map(|(t, _)| t.clone()).collect();
                let partitions: Vec<i64> = seen.keys().map(|(_, p)| *p).collect();
                let offsets: Vec<i64> = seen.values().copied().collect();
                let mut params: Vec<Param> = vec![Box::new(topics), Box::new(partitions), Box::new(offsets)];
                params.extend(since);
                (sql, params)
            }
            Cursor::Keyset(last) => {
                let after = last.is_some();
                let first = if after { self.order.hidden().len() + 1 } else { 1 };
                let (cond, since) = self.since(first)?;
                let sql =
                    self.order.keyset_poll_sql(self.table, self.columns, cond.as_deref(), after).ok_or_else(|| unsupported(self.table))?;
                let mut params: Vec<Param> = last.iter().flatten().map(|v| Box::new(v.clone()) as Param).collect();
                params.extend(since);
                (sql, params)
            }
        };
        // Each statement text is prepared once (the Kafka poll has one, the keyset poll two).
        let stmt = match statements.get(&sql) {
            Some(stmt) => stmt.clone(),
            None => {
                let stmt = self.client.prepare(&sql).await?;
                statements.insert(sql, stmt.clone());
                stmt
            }
        };
        let stream = self.client.query_raw(&stmt, params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync))).await?;
        pin_mut!(stream);
        // Rows read per partition (Kafka: the batch is per partition), or in all (keyset).
        let mut read: BTreeMap<(String, i64), u32> = BTreeMap::new();
        while let Some(row) = stream.try_next().await? {
            let partition = self.advance(cursor, &row)?;
            *read.entry(partition.unwrap_or_default()).or_default() += 1;
            let keep: bool = row.try_get(row.len() - 1)?;
            if keep {
                state.print(&row)?;
            }
        }
        Ok(read.values().any(|n| *n >= POLL_BATCH))
    }

    /// Move the cursor past `row` (every row read, printed or filtered out); the row's
    /// (topic, partition) for a Kafka cursor.
    fn advance(&self, cursor: &mut Cursor, row: &Row) -> Result<Option<(String, i64)>, Fail> {
        let at = self.order.key_at(self.columns);
        match cursor {
            Cursor::Kafka(seen) => {
                let Key::Kafka { topic, partition, offset } = self.order.key else { return Err(unsupported(self.table).into()) };
                let text = |i: usize, c: usize| -> Result<Option<String>, Fail> {
                    Ok(match format::cell(row, at + i, self.columns[c].kind)? {
                        Value::Text(s) => Some(s.to_owned()),
                        _ => None,
                    })
                };
                let int = |i: usize, c: usize| -> Result<Option<i64>, Fail> {
                    Ok(match format::cell(row, at + i, self.columns[c].kind)? {
                        Value::Int(n) => Some(n),
                        _ => None,
                    })
                };
                if let (Some(t), Some(p), Some(o)) = (text(0, topic)?, int(1, partition)?, int(2, offset)?) {
                    let entry = seen.entry((t.clone(), p)).or_insert(o);
                    *entry = (*entry).max(o);
                    return Ok(Some((t, p)));
                }
                Ok(None)
            }
            Cursor::Keyset(last) => {
                let first = self.order.hidden_at(self.columns, 0);
                *last = Some(raw_values(row, first, self.order.hidden().len())?);
                Ok(None)
            }
        }
    }
}

/// `count` raw values from position `first` of `row`.
fn raw_values(row: &Row, first: usize, count: usize) -> Result<Vec<RawValue>, Fail> {
    (first..first + count)
        .map(|i| {
            let bytes = format::raw(row, i)?.ok_or_else(|| QueryError::Server("a cursor column is NULL".into()))?;
            Ok(RawValue { ty: row.columns()[i].type_().clone(), bytes: bytes.to_vec() })
        })
        .collect()
}

fn unsupported(table: &TableName) -> QueryError {
    QueryError::NoKey { table: table.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_interval("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("3"), Ok(Duration::from_secs(3)));
        assert!(parse_interval("0").unwrap_err().contains("too short"));
        assert!(parse_interval("-1s").is_err());
        assert!(parse_interval("-1").is_err());
        assert!(parse_interval("soon").unwrap_err().contains("invalid interval"));
        assert!(parse_interval("NaN").is_err());
    }

    #[test]
    fn json_arrays_do_not_follow() {
        assert!(check_format(Format::Json).is_err());
        assert!(check_format(Format::Jsonl).is_ok() && check_format(Format::Table).is_ok());
    }
}
