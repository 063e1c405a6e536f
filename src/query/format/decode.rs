//! Cells in PostgreSQL's binary wire format, decoded by us (tokio-postgres hands over the
//! raw bytes): the column kinds we know, and one value borrowing from its row.

use std::io;

use postgres_protocol::types as wire;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Type};

/// How a column is decoded and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Json,
    Jsonb,
    Timestamp,
    TimestampTz,
    /// Selected as text; printed as a JSON number when finite.
    Numeric,
    /// Any other type, selected as text.
    Other,
}

impl Kind {
    pub fn of(ty: &Type) -> Kind {
        match *ty {
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => Kind::Text,
            Type::INT2 => Kind::Int2,
            Type::INT4 => Kind::Int4,
            Type::INT8 => Kind::Int8,
            Type::FLOAT4 => Kind::Float4,
            Type::FLOAT8 => Kind::Float8,
            Type::BOOL => Kind::Bool,
            Type::JSON => Kind::Json,
            Type::JSONB => Kind::Jsonb,
            Type::TIMESTAMP => Kind::Timestamp,
            Type::TIMESTAMPTZ => Kind::TimestampTz,
            Type::NUMERIC => Kind::Numeric,
            _ => Kind::Other,
        }
    }

    pub fn needs_text_cast(self) -> bool {
        matches!(self, Kind::Numeric | Kind::Other)
    }

    pub fn is_time(self) -> bool {
        matches!(self, Kind::Timestamp | Kind::TimestampTz)
    }

    pub(super) fn right_aligned(self) -> bool {
        matches!(self, Kind::Int2 | Kind::Int4 | Kind::Int8 | Kind::Float4 | Kind::Float8 | Kind::Numeric)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

/// One decoded cell, borrowing from the row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    Float(f64),
    Float4(f32),
    Bool(bool),
    /// JSON text as the server sent it.
    Json(&'a str),
    Numeric(&'a str),
    /// Microseconds since 2000-01-01 00:00:00, with or without time zone (then UTC).
    Timestamp {
        micros: i64,
        tz: bool,
    },
}

/// The cell's raw bytes, whatever the type: decoding is ours.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

pub type DecodeError = Box<dyn std::error::Error + Sync + Send>;

#[inline]
pub fn decode(kind: Kind, raw: Option<&[u8]>) -> Result<Value<'_>, DecodeError> {
    let Some(raw) = raw else { return Ok(Value::Null) };
    Ok(match kind {
        Kind::Text | Kind::Other => Value::Text(wire::text_from_sql(raw)?),
        Kind::Numeric => Value::Numeric(wire::text_from_sql(raw)?),
        Kind::Int2 => Value::Int(wire::int2_from_sql(raw)?.into()),
        Kind::Int4 => Value::Int(wire::int4_from_sql(raw)?.into()),
        Kind::Int8 => Value::Int(wire::int8_from_sql(raw)?),
        Kind::Float4 => Value::Float4(wire::float4_from_sql(raw)?),
        Kind::Float8 => Value::Float(wire::float8_from_sql(raw)?),
        Kind::Bool => Value::Bool(wire::bool_from_sql(raw)?),
        Kind::Json => Value::Json(wire::text_from_sql(raw)?),
        Kind::Jsonb => match raw.split_first() {
            Some((1, text)) => Value::Json(wire::text_from_sql(text)?),
            _ => return Err("unsupported jsonb version".into()),
        },
        Kind::Timestamp => Value::Timestamp { micros: wire::timestamp_from_sql(raw)?, tz: false },
        Kind::TimestampTz => Value::Timestamp { micros: wire::timestamp_from_sql(raw)?, tz: true },
    })
}

/// Cell `i` decoded as `kind`. This, `decode`, `raw` and `encode::write_json` run once per
/// cell and are `#[inline]`: in their own modules they landed in other codegen units than the
/// row writers, uninlined, and `iac query` spent about 10 % more client CPU (1,000,000 rows).
#[inline]
pub fn cell<'r>(row: &'r Row, i: usize, kind: Kind) -> io::Result<Value<'r>> {
    decode(kind, raw(row, i)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Cell `i` as the server sent it (binary format), None for NULL.
#[inline]
pub fn raw(row: &Row, i: usize) -> io::Result<Option<&[u8]>> {
    let raw: Raw<'_> = row.try_get(i).map_err(io::Error::other)?;
    Ok(raw.0)
}
