//! `iac query messages` and `iac query count`.
//!
//! Rows are streamed: `query_raw` hands back a `RowStream` and each row is written before the
//! next is read. tokio-postgres passes server messages to the stream through a channel of one
//! batch, so a slow writer (a pipe, a terminal) slows the server down instead of filling memory.
//!
//! `--since` filters on a timestamp column: `--time-column` names it, otherwise it is the
//! first `timestamptz` or `timestamp` column in table order (the JDBC sink's table has one at
//! most unless the messages carry more). TIME is either an age (`90s`, `15m`, `2h`, `7d`,
//! `1w`: rows newer than now minus that, by the server's clock) or anything PostgreSQL reads
//! as a `timestamptz` (`2026-11-25`, `2026-11-25 16:00:00+01`); a time without a zone is UTC.
//!
//! Rows come in the order the server returns them, with no `ORDER BY`: for the append-only
//! sink table that is (near) insertion order, and sorting a large table would cost the server
//! a full sort before the first row arrives. `--limit N` keeps that order. `--latest N` orders
//! by time (see [`super::order`]); `--follow` is in [`super::follow`].

use std::io::Write;

use futures::{TryStreamExt, pin_mut};
use postgres_protocol::escape::escape_identifier;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::QueryError;
use super::format::{self, Column, Format};
use super::order::{Order, Use};
use super::relation::{self, TableName};

#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    /// Seconds before now.
    Age(f64),
    /// A time the server parses.
    At(String),
}

impl Since {
    pub fn parse(s: &str) -> Since {
        let t = s.trim();
        let unit = t.chars().last().unwrap_or(' ');
        let scale = match unit {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            'w' => 604_800.0,
            _ => return Since::At(t.to_owned()),
        };
        match t[..t.len() - 1].trim().parse::<u64>() {
            Ok(n) => Since::Age(n as f64 * scale),
            Err(_) => Since::At(t.to_owned()),
        }
    }
}

/// What to read: the same filter serves `messages` and `count`.
pub struct Filter {
    pub since: Option<Since>,
    pub time_column: Option<String>,
}

/// A statement parameter of any type.
pub(super) type Param = Box<dyn ToSql + Sync + Send>;

/// The filter as a condition on the table's columns, with its parameter as `$param`; None
/// without `--since`.
pub(super) fn since_condition(
    filter: &Filter,
    columns: &[Column],
    table: &TableName,
    param: usize,
) -> Result<Option<(String, Param)>, QueryError> {
    let Some(since) = &filter.since else { return Ok(None) };
    let column = match &filter.time_column {
        Some(name) => columns
            .iter()
            .find(|c| &c.name == name)
            .ok_or_else(|| QueryError::ColumnMissing { table: table.to_string(), column: name.clone() })?,
        None => columns
            .iter()
            .find(|c| c.kind.is_time())
            .ok_or_else(|| QueryError::NoTimeColumn { table: table.to_string(), flag: "--since" })?,
    };
    let col = escape_identifier(&column.name);
    Ok(Some(match since {
        Since::Age(secs) => (format!("{col} >= now() - make_interval(secs => ${param})"), Box::new(*secs)),
        Since::At(text) => (format!("{col} >= ${param}::text::timestamptz"), Box::new(text.clone())),
    }))
}

/// The WHERE clause for the filter and its parameter, numbered from `$1`.
fn where_clause(
    filter: &Filter,
    columns: &[Column],
    table: &TableName,
) -> Result<(String, Option<Box<dyn ToSql + Sync + Send>>), QueryError> {
    Ok(match since_condition(filter, columns, table, 1)? {
        Some((cond, param)) => (format!(" WHERE {cond}"), Some(param)),
        None => (String::new(), None),
    })
}

pub(super) async fn prepare_filter(client: &Client, filter: &Filter) -> Result<(), QueryError> {
    if filter.since.is_some() {
        // Times without a zone, and `timestamp` columns, are read as UTC.
        client.batch_execute("SET TIME ZONE 'UTC'").await.map_err(|e| QueryError::server(&e))?;
    }
    Ok(())
}

pub async fn messages(
    client: &Client,
    table: &TableName,
    database: &str,
    filter: &Filter,
    limit: Option<u64>,
    format: Format,
    out: impl Write,
) -> Result<u64, QueryError> {
    relation::oid(client, table, database).await?;
    let columns = relation::columns(client, table).await?;
    prepare_filter(client, filter).await?;
    let (clause, param) = where_clause(filter, &columns, table)?;
    let mut params: Vec<Param> = param.into_iter().collect();
    let mut sql = format!("SELECT {} FROM {}{clause}", relation::select_list(&columns), table.sql());
    if let Some(n) = limit {
        params.push(Box::new(i64::try_from(n).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT ${}", params.len()));
    }
    stream_rows(client, &sql, &params, &columns, format, out).await
}

/// `--latest N`: the newest `n` rows by the time column (ties broken by the primary key),
/// printed oldest first. The server picks them with a top-N sort (memory for `n` rows, one
/// pass over the table) and sorts those `n` back; rows still stream to the writer.
pub async fn latest(
    client: &Client,
    table: &TableName,
    database: &str,
    filter: &Filter,
    n: u64,
    format: Format,
    out: impl Write,
) -> Result<u64, QueryError> {
    let oid = relation::oid(client, table, database).await?;
    let columns = relation::columns(client, table).await?;
    let key = relation::primary_key(client, oid).await?;
    let order = Order::resolve(&columns, filter.time_column.as_deref(), &key, table)?;
    order.check(Use::Latest, table)?;
    prepare_filter(client, filter).await?;
    let since = since_condition(filter, &columns, table, 1)?;
    let (cond, mut params): (Option<String>, Vec<Param>) = match since {
        Some((c, p)) => (Some(c), vec![p]),
        None => (None, Vec::new()),
    };
    params.push(Box::new(i64::try_from(n).unwrap_or(i64::MAX)));
    let sql = order.latest_sql(table, &columns, cond.as_deref(), params.len());
    stream_rows(client, &sql, &params, &columns, format, out).await
}

/// Run `sql` and stream its rows to the writer for `format`; returns how many it wrote.
async fn stream_rows(
    client: &Client,
    sql: &str,
    params: &[Param],
    columns: &[format::Column],
    format: Format,
    out: impl Write,
) -> Result<u64, QueryError> {
    let stmt = client.prepare(sql).await.map_err(|e| QueryError::server(&e))?;
    let stream =
        client.query_raw(&stmt, params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync))).await.map_err(|e| QueryError::server(&e))?;
    pin_mut!(stream);
    let mut writer = format::writer(format, columns, out);
    let mut rows = 0u64;
    while let Some(row) = stream.try_next().await.map_err(|e| QueryError::server(&e))? {
        writer.row(&row).map_err(QueryError::Output)?;
        rows += 1;
    }
    writer.finish(rows).map_err(QueryError::Output)?;
    Ok(rows)
}

pub async fn count(client: &Client, table: &TableName, database: &str, filter: &Filter) -> Result<i64, QueryError> {
    relation::oid(client, table, database).await?;
    let columns = if filter.since.is_some() { relation::columns(client, table).await? } else { Vec::new() };
    prepare_filter(client, filter).await?;
    let (clause, param) = where_clause(filter, &columns, table)?;
    let sql = format!("SELECT count(*) FROM {}{clause}", table.sql());
    let params: Vec<&(dyn ToSql + Sync)> = param.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    let row = client.query_one(&sql, &params).await.map_err(|e| QueryError::server(&e))?;
    row.try_get(0).map_err(|e| QueryError::server(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_an_age_or_a_time() {
        assert_eq!(Since::parse("15m"), Since::Age(900.0));
        assert_eq!(Since::parse("2 h"), Since::Age(7200.0));
        assert_eq!(Since::parse("1w"), Since::Age(604_800.0));
        assert_eq!(Since::parse("2026-11-25"), Since::At("2026-11-25".into()));
        assert_eq!(Since::parse("2026-11-25 10:00:00+01"), Since::At("2026-11-25 10:00:00+01".into()));
        assert_eq!(Since::parse("yesterday"), Since::At("yesterday".into()));
    }
}
