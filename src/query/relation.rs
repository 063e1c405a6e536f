//! The table being read: its quoted name and its columns.
//!
//! The name the user gives is one identifier (and an optional schema), never SQL: it is
//! quoted with `postgres_protocol::escape::escape_identifier` wherever it enters a statement,
//! so `--table 'Odd "name"'` reads exactly that table and nothing else.

use std::fmt;

use postgres_protocol::escape::escape_identifier;
use tokio_postgres::Client;

use super::QueryError;
use super::format::{Column, Kind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    pub fn new(schema: Option<String>, name: String) -> Result<TableName, QueryError> {
        for part in schema.iter().chain([&name]) {
            if part.is_empty() || part.contains('\0') {
                return Err(QueryError::Config(format!("invalid table or schema name {part:?}")));
            }
        }
        Ok(TableName { schema, name })
    }

    /// The name as SQL: `"schema"."name"` or `"name"` (then resolved on the search path).
    pub fn sql(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", escape_identifier(s), escape_identifier(&self.name)),
            None => escape_identifier(&self.name),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sql())
    }
}

/// The table's OID, or `TableMissing` naming it. Views and other relations work too.
pub async fn oid(client: &Client, table: &TableName, database: &str) -> Result<u32, QueryError> {
    oid_if_exists(client, table)
        .await
        .map_err(|e| QueryError::server(&e))?
        .ok_or_else(|| QueryError::TableMissing { table: table.to_string(), database: database.into() })
}

/// The table's OID, `None` while it does not exist (`--follow` waits for it); the server's
/// error as it is, so a caller can tell a lost connection from a refused query.
pub async fn oid_if_exists(client: &Client, table: &TableName) -> Result<Option<u32>, tokio_postgres::Error> {
    client.query_one("SELECT to_regclass($1)::oid", &[&table.sql()]).await?.try_get::<_, Option<u32>>(0)
}

/// The columns as a `SELECT *` would return them, with how each is decoded.
pub async fn columns(client: &Client, table: &TableName) -> Result<Vec<Column>, QueryError> {
    let stmt = client.prepare(&format!("SELECT * FROM {} LIMIT 0", table.sql())).await.map_err(|e| QueryError::server(&e))?;
    Ok(stmt.columns().iter().map(|c| Column { name: c.name().to_owned(), kind: Kind::of(c.type_()) }).collect())
}

/// The primary key's column names in index order; empty when there is none (or for a view).
pub async fn primary_key(client: &Client, oid: u32) -> Result<Vec<String>, QueryError> {
    let rows = client
        .query(
            "SELECT a.attname::text
               FROM pg_index i
               CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS u(attnum, n)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.attnum
              WHERE i.indrelid = $1 AND i.indisprimary
              ORDER BY u.n",
            &[&oid],
        )
        .await
        .map_err(|e| QueryError::server(&e))?;
    rows.iter().map(|r| r.try_get(0).map_err(|e| QueryError::server(&e))).collect()
}

/// The select list: every column by quoted name, the ones we do not decode cast to text.
pub fn select_list(columns: &[Column]) -> String {
    if columns.is_empty() {
        return String::new();
    }
    let items: Vec<String> = columns
        .iter()
        .map(|c| {
            let name = escape_identifier(&c.name);
            if c.kind.needs_text_cast() { format!("{name}::text AS {name}") } else { name }
        })
        .collect();
    items.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_never_spliced() {
        let t = TableName::new(None, "kafka_messages".into()).unwrap();
        assert_eq!(t.sql(), "\"kafka_messages\"");
        let t = TableName::new(Some("my schema".into()), "x\"; DROP TABLE y; --".into()).unwrap();
        assert_eq!(t.sql(), "\"my schema\".\"x\"\"; DROP TABLE y; --\"");
        assert!(TableName::new(None, "a\0b".into()).is_err());
        assert!(TableName::new(None, String::new()).is_err());
    }

    #[test]
    fn select_list_casts_what_is_not_decoded() {
        let cols = [Column { name: "id".into(), kind: Kind::Int8 }, Column { name: "Amount".into(), kind: Kind::Numeric }];
        assert_eq!(select_list(&cols), "\"id\", \"Amount\"::text AS \"Amount\"");
    }
}
