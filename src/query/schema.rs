//! `iac query schema`: the table's columns (type, nullability, default) and indexes, from the
//! system catalogs (`pg_attribute`, `pg_attrdef`, `pg_index`), so it works for any table the
//! user may read, without information_schema's privilege filtering.

use std::io::Write;

use serde::Serialize;
use tokio_postgres::Client;

use super::QueryError;
use super::format::{Column, Format, Kind, Table};
use super::relation::{self, TableName};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Schema {
    pub table: String,
    pub columns: Vec<ColumnInfo>,
    pub indexes: Vec<IndexInfo>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub nullable: bool,
    pub default: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct IndexInfo {
    pub name: String,
    pub primary: bool,
    pub unique: bool,
    pub definition: String,
}

pub async fn read(client: &Client, table: &TableName, database: &str) -> Result<Schema, QueryError> {
    let oid = relation::oid(client, table, database).await?;
    let err = |e: tokio_postgres::Error| QueryError::server(&e);
    let columns = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
                    pg_get_expr(d.adbin, d.adrelid)
               FROM pg_attribute a
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| Ok(ColumnInfo { name: r.try_get(0)?, type_name: r.try_get(1)?, nullable: r.try_get(2)?, default: r.try_get(3)? }))
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(err)?;
    let indexes = client
        .query(
            "SELECT c.relname::text, i.indisprimary, i.indisunique, pg_get_indexdef(i.indexrelid)
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = $1
              ORDER BY NOT i.indisprimary, c.relname",
            &[&oid],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| Ok(IndexInfo { name: r.try_get(0)?, primary: r.try_get(1)?, unique: r.try_get(2)?, definition: r.try_get(3)? }))
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(err)?;
    Ok(Schema { table: table.to_string(), columns, indexes })
}

pub fn write(schema: &Schema, format: Format, mut out: impl Write) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, schema)?;
            writeln!(out)
        }
        Format::Jsonl => {
            serde_json::to_writer(&mut out, schema)?;
            writeln!(out)
        }
        Format::Table => {
            writeln!(out, "Table {}", schema.table)?;
            let header = |names: &[&str]| -> Vec<Column> { names.iter().map(|n| Column { name: (*n).into(), kind: Kind::Text }).collect() };
            let mut t = Table::new(&header(&["column", "type", "nullable", "default"]), &mut out);
            for c in &schema.columns {
                let nullable = if c.nullable { "yes" } else { "no" };
                t.push(vec![c.name.clone(), c.type_name.clone(), nullable.into(), c.default.clone().unwrap_or_default()])?;
            }
            super::format::RowWriter::finish(&mut t, schema.columns.len() as u64)?;
            drop(t);
            writeln!(out)?;
            if schema.indexes.is_empty() {
                return writeln!(out, "No indexes.");
            }
            writeln!(out, "Indexes:")?;
            for i in &schema.indexes {
                let kind = if i.primary {
                    " (primary key)"
                } else if i.unique {
                    " (unique)"
                } else {
                    ""
                };
                writeln!(out, "    {}{kind}: {}", i.name, i.definition)?;
            }
            Ok(())
        }
    }
}
