//! Output formats for rows: an aligned table for people, a JSON array and JSON lines for
//! scripts. `decode` reads cells in PostgreSQL's binary wire format, `encode` writes one
//! value as JSON or table text, `rows` writes whole rows one at a time (only the table
//! buffers, and only a bounded window).
//!
//! Values are decoded from the binary format for the types the JDBC sink creates: text types,
//! int2/int4/int8, float4/float8, bool, json/jsonb, timestamp, timestamptz. Every other type
//! is selected as `::text` (see [`Kind::needs_text_cast`]) and shown as the server prints it;
//! `numeric` stays a JSON number.

mod decode;
mod encode;
mod rows;

pub use decode::{Column, DecodeError, Kind, Value, cell, decode, raw};
pub use encode::{table_text, write_json, write_timestamp};
pub use rows::{Json, RowWriter, Table, writer};

/// How `iac query` writes rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON array of row objects (streamed, never held in memory).
    Json,
    /// One JSON object per line.
    Jsonl,
}
