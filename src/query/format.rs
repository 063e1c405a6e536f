//! Output formats for rows: an aligned table for people, a JSON array and JSON lines for
//! scripts. Every writer takes one row at a time; only `table` buffers, and only a bounded
//! window (see [`Table`]).
//!
//! Values are decoded from PostgreSQL's binary wire format here (the types the JDBC sink
//! creates): text types, int2/int4/int8, float4/float8, bool, json/jsonb, timestamp,
//! timestamptz. Every other type is selected as `::text` (see [`Kind::needs_text_cast`]) and
//! shown as the server prints it; `numeric` stays a JSON number.

use std::io::{self, Write};

use postgres_protocol::types as wire;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Type};
use unicode_width::UnicodeWidthStr;

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

    fn right_aligned(self) -> bool {
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

/// Cell `i` decoded as `kind`.
pub fn cell<'r>(row: &'r Row, i: usize, kind: Kind) -> io::Result<Value<'r>> {
    decode(kind, raw(row, i)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Cell `i` as the server sent it (binary format), None for NULL.
pub fn raw(row: &Row, i: usize) -> io::Result<Option<&[u8]>> {
    let raw: Raw<'_> = row.try_get(i).map_err(io::Error::other)?;
    Ok(raw.0)
}

/// Seconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
/// 400 Gregorian years repeat exactly: 146097 days.
const CYCLE_MICROS: i64 = 146_097 * 86_400 * 1_000_000;

/// ISO 8601, as `row_to_json` writes it: `2026-11-25T16:47:48.123456` (fraction trimmed,
/// omitted when zero); timestamptz in UTC with `Z`. PostgreSQL's `infinity` stays a word.
/// Years BC carry PostgreSQL's ` BC` suffix, as its own `to_json` does. Years outside ±9999
/// (PostgreSQL allows up to 294276) are shifted by whole 400-year cycles into jiff's range and
/// the year put back, which is exact.
pub fn write_timestamp(out: &mut impl Write, micros: i64, tz: bool) -> io::Result<()> {
    match micros {
        i64::MAX => return out.write_all(b"infinity"),
        i64::MIN => return out.write_all(b"-infinity"),
        _ => {}
    }
    let mut buf = [0u8; 32];
    match common_era(micros, tz, &mut buf) {
        Some(len) => out.write_all(&buf[..len]),
        None => write_timestamp_general(out, micros, tz),
    }
}

/// Any year PostgreSQL has, through jiff.
fn write_timestamp_general(out: &mut impl Write, micros: i64, tz: bool) -> io::Result<()> {
    let unix = i128::from(micros) + i128::from(PG_EPOCH_UNIX_MICROS);
    let cycles = unix.div_euclid(i128::from(CYCLE_MICROS));
    let (unix, extra_years) = match jiff::Timestamp::from_microsecond(unix as i64) {
        Ok(_) if (i64::MIN as i128..=i64::MAX as i128).contains(&unix) => (unix as i64, 0),
        _ => (unix.rem_euclid(i128::from(CYCLE_MICROS)) as i64, cycles * 400),
    };
    let ts = jiff::Timestamp::from_microsecond(unix).map_err(io::Error::other)?;
    let dt = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    // Astronomical year 0 is 1 BC: written the server's way, `0001-12-31T23:59:59 BC`.
    let year = i128::from(dt.year()) + extra_years;
    let bc = year <= 0;
    write!(out, "{:04}", if bc { 1 - year } else { year })?;
    write!(out, "-{:02}-{:02}T{:02}:{:02}:{:02}", dt.month(), dt.day(), dt.hour(), dt.minute(), dt.second())?;
    let mut frac = dt.subsec_nanosecond() / 1000;
    if frac != 0 {
        let mut digits = 6;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        write!(out, ".{frac:0digits$}")?;
    }
    if tz {
        out.write_all(b"Z")?;
    }
    if bc {
        out.write_all(b" BC")?;
    }
    Ok(())
}

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// Years 1 to 9999 (every timestamp the pipeline writes) written into `buf` without `fmt` or
/// a calendar library; `None` for other years, which take the general path. This runs once
/// per timestamp cell: converting through jiff and `write!` (an i128 year, padded fields) was
/// about 15 % of `iac query messages`' CPU on 1,000,000 rows (perf, issue 16). The unit test
/// below checks it against the general path; tests/query.rs checks both against the server.
fn common_era(micros: i64, tz: bool, buf: &mut [u8; 32]) -> Option<usize> {
    let days = micros.div_euclid(MICROS_PER_DAY) + PG_EPOCH_DAYS;
    let in_day = micros.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(1..=9999).contains(&year) {
        return None;
    }
    let (secs, mut frac) = (in_day / 1_000_000, in_day % 1_000_000);
    let put = |buf: &mut [u8; 32], at: usize, v: i64, digits: usize| {
        let mut v = v;
        for i in (0..digits).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(buf, 0, year, 4);
    buf[4] = b'-';
    put(buf, 5, month, 2);
    buf[7] = b'-';
    put(buf, 8, day, 2);
    buf[10] = b'T';
    put(buf, 11, secs / 3600, 2);
    buf[13] = b':';
    put(buf, 14, secs / 60 % 60, 2);
    buf[16] = b':';
    put(buf, 17, secs % 60, 2);
    let mut len = 19;
    if frac != 0 {
        let mut digits = 6;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        buf[len] = b'.';
        put(buf, len + 1, frac, digits);
        len += 1 + digits;
    }
    if tz {
        buf[len] = b'Z';
        len += 1;
    }
    Some(len)
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`, public domain: http://howardhinnant.github.io/date_algorithms.html).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn write_float(out: &mut impl Write, v: f64, json: bool) -> io::Result<()> {
    let word = if v.is_nan() {
        "NaN"
    } else if v == f64::INFINITY {
        "Infinity"
    } else if v == f64::NEG_INFINITY {
        "-Infinity"
    } else {
        return serde_json::to_writer(out, &v).map_err(io::Error::from);
    };
    if json { write!(out, "\"{word}\"") } else { out.write_all(word.as_bytes()) }
}

fn write_float4(out: &mut impl Write, v: f32, json: bool) -> io::Result<()> {
    if v.is_finite() { serde_json::to_writer(out, &v).map_err(io::Error::from) } else { write_float(out, f64::from(v), json) }
}

/// A value as JSON. `json` text is passed through; newlines in it (only ever whitespace
/// between tokens, since strings cannot hold raw newlines) become spaces so JSON lines stay
/// one line.
pub fn write_json(out: &mut impl Write, v: &Value<'_>) -> io::Result<()> {
    match *v {
        Value::Null => out.write_all(b"null"),
        Value::Text(s) => serde_json::to_writer(out, s).map_err(io::Error::from),
        Value::Int(i) => out.write_all(itoa::Buffer::new().format(i).as_bytes()),
        Value::Float(f) => write_float(out, f, true),
        Value::Float4(f) => write_float4(out, f, true),
        Value::Bool(b) => out.write_all(if b { b"true" } else { b"false" }),
        Value::Json(s) if s.contains(['\n', '\r']) => out.write_all(s.replace(['\n', '\r'], " ").as_bytes()),
        Value::Json(s) => out.write_all(s.as_bytes()),
        Value::Numeric(s) if s.contains(['N', 'I']) => serde_json::to_writer(out, s).map_err(io::Error::from),
        Value::Numeric(s) => out.write_all(s.as_bytes()),
        Value::Timestamp { micros, tz } => {
            out.write_all(b"\"")?;
            write_timestamp(out, micros, tz)?;
            out.write_all(b"\"")
        }
    }
}

/// A value as table text: no quotes; control characters escaped so a row stays one line.
pub fn table_text(v: &Value<'_>) -> String {
    let mut buf = Vec::new();
    let plain = |s: &str| {
        if s.chars().any(char::is_control) {
            s.chars()
                .map(|c| match c {
                    '\n' => "\\n".to_owned(),
                    '\r' => "\\r".to_owned(),
                    '\t' => "\\t".to_owned(),
                    c if c.is_control() => c.escape_unicode().to_string(),
                    c => c.to_string(),
                })
                .collect()
        } else {
            s.to_owned()
        }
    };
    match *v {
        Value::Null => return "NULL".into(),
        Value::Text(s) | Value::Json(s) | Value::Numeric(s) => return plain(s),
        Value::Bool(b) => return if b { "true".into() } else { "false".into() },
        Value::Int(_) => drop(write_json(&mut buf, v)),
        Value::Float(f) => drop(write_float(&mut buf, f, false)),
        Value::Float4(f) => drop(write_float4(&mut buf, f, false)),
        Value::Timestamp { micros, tz } => drop(write_timestamp(&mut buf, micros, tz)),
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON array of row objects (streamed, never held in memory).
    Json,
    /// One JSON object per line.
    Jsonl,
}

/// Where rows go, one at a time.
pub trait RowWriter {
    fn row(&mut self, row: &Row) -> io::Result<()>;
    /// Show everything written so far (`--follow` between polls). A table fixes its column
    /// widths here if it has not yet.
    fn flush(&mut self) -> io::Result<()>;
    /// After the last row; `rows` is how many there were.
    fn finish(&mut self, rows: u64) -> io::Result<()>;
}

pub fn writer<'w, W: Write + 'w>(format: Format, columns: &[Column], out: W) -> Box<dyn RowWriter + 'w> {
    match format {
        Format::Table => Box::new(Table::new(columns, out)),
        Format::Json => Box::new(Json::new(columns, out, false)),
        Format::Jsonl => Box::new(Json::new(columns, out, true)),
    }
}

/// JSON array or JSON lines. Keys are escaped once, up front.
pub struct Json<W> {
    out: W,
    kinds: Vec<Kind>,
    keys: Vec<Vec<u8>>,
    lines: bool,
    first: bool,
}

impl<W: Write> Json<W> {
    pub fn new(columns: &[Column], out: W, lines: bool) -> Self {
        let keys = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut k = if i == 0 { b"{".to_vec() } else { b",".to_vec() };
                serde_json::to_writer(&mut k, &c.name).unwrap_or_default();
                k.push(b':');
                k
            })
            .collect();
        Json { out, kinds: columns.iter().map(|c| c.kind).collect(), keys, lines, first: true }
    }
}

impl<W: Write> RowWriter for Json<W> {
    fn row(&mut self, row: &Row) -> io::Result<()> {
        if !self.lines {
            self.out.write_all(if self.first { b"[\n" } else { b",\n" })?;
        }
        self.first = false;
        for (i, kind) in self.kinds.iter().enumerate() {
            self.out.write_all(&self.keys[i])?;
            write_json(&mut self.out, &cell(row, i, *kind)?)?;
        }
        self.out.write_all(if self.kinds.is_empty() { b"{}" } else { b"}" })?;
        if self.lines {
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, _rows: u64) -> io::Result<()> {
        if !self.lines {
            self.out.write_all(if self.first { b"[]\n" } else { b"\n]\n" })?;
        }
        self.out.flush()
    }
}

/// An aligned table. Column widths need the cells, so the first [`Table::WINDOW_ROWS`] rows
/// (or [`Table::WINDOW_BYTES`] of cell text, whichever comes first) are held back to measure
/// them; later rows stream with those widths, and a longer cell just pushes its row out of
/// line. Memory stays bounded however many rows follow.
pub struct Table<W> {
    out: W,
    names: Vec<String>,
    kinds: Vec<Kind>,
    held: Vec<Vec<String>>,
    held_bytes: usize,
    widths: Option<Vec<usize>>,
}

impl<W: Write> Table<W> {
    pub const WINDOW_ROWS: usize = 1000;
    pub const WINDOW_BYTES: usize = 1 << 20;

    pub fn new(columns: &[Column], out: W) -> Self {
        Table {
            out,
            names: columns.iter().map(|c| c.name.clone()).collect(),
            kinds: columns.iter().map(|c| c.kind).collect(),
            held: Vec::new(),
            held_bytes: 0,
            widths: None,
        }
    }

    /// Text cells for tables that are not query rows (`iac query schema`); every column left
    /// aligned.
    pub fn push(&mut self, cells: Vec<String>) -> io::Result<()> {
        match &self.widths {
            None => {
                self.held_bytes += cells.iter().map(String::len).sum::<usize>();
                self.held.push(cells);
                if self.held.len() >= Self::WINDOW_ROWS || self.held_bytes >= Self::WINDOW_BYTES {
                    self.release()?;
                }
                Ok(())
            }
            Some(_) => self.line(&cells),
        }
    }

    /// Fix the widths from the held rows, print the header and the held rows.
    fn release(&mut self) -> io::Result<()> {
        let mut widths: Vec<usize> = self.names.iter().map(|n| n.width()).collect();
        for row in &self.held {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.width());
            }
        }
        self.widths = Some(widths.clone());
        let names = self.names.clone();
        self.line_with(&names, &widths, false)?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        writeln!(self.out, "{}", rule.join("-+-"))?;
        for row in std::mem::take(&mut self.held) {
            self.line(&row)?;
        }
        self.held_bytes = 0;
        Ok(())
    }

    fn line(&mut self, cells: &[String]) -> io::Result<()> {
        let widths = self.widths.clone().unwrap_or_default();
        self.line_with(cells, &widths, true)
    }

    fn line_with(&mut self, cells: &[String], widths: &[usize], align_numbers: bool) -> io::Result<()> {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str(" | ");
            }
            let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(c.width());
            let last = i + 1 == cells.len();
            if align_numbers && self.kinds.get(i).is_some_and(|k| k.right_aligned()) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(c);
            } else {
                line.push_str(c);
                if !last {
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        writeln!(self.out, "{line}")
    }
}

impl<W: Write> RowWriter for Table<W> {
    fn row(&mut self, row: &Row) -> io::Result<()> {
        let mut cells = Vec::with_capacity(self.kinds.len());
        for i in 0..self.kinds.len() {
            cells.push(table_text(&cell(row, i, self.kinds[i])?));
        }
        self.push(cells)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.widths.is_none() {
            self.release()?;
        }
        self.out.flush()
    }

    fn finish(&mut self, rows: u64) -> io::Result<()> {
        if self.widths.is_none() {
            self.release()?;
        }
        writeln!(self.out, "({rows} row{})", if rows == 1 { "" } else { "s" })?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(micros: i64, tz: bool) -> String {
        let mut b = Vec::new();
        write_timestamp(&mut b, micros, tz).unwrap();
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn timestamps_are_iso_8601() {
        assert_eq!(ts(0, false), "2000-01-01T00:00:00");
        assert_eq!(ts(1_500_000, true), "2000-01-01T00:00:01.5Z");
        assert_eq!(ts(-1, false), "1999-12-31T23:59:59.999999");
        assert_eq!(ts(i64::MAX, true), "infinity");
        assert_eq!(ts(i64::MIN, false), "-infinity");
        // PostgreSQL's largest timestamp, 294276-12-31 23:59:59.999999.
        assert_eq!(ts(9_223_371_331_199_999_999, false), "294276-12-31T23:59:59.999999");
        // 4714-11-24 BC, PostgreSQL's smallest timestamp.
        assert_eq!(ts(-211_813_488_000_000_000, true), "4714-11-24T00:00:00Z BC");
    }

    /// The fast path for years 1 to 9999 writes what the general (jiff) path writes: at day
    /// boundaries all over the range, and at pseudo-random instants in it.
    #[test]
    fn common_era_timestamps_match_the_general_path() {
        let general = |micros: i64, tz: bool| {
            let mut b = Vec::new();
            write_timestamp_general(&mut b, micros, tz).unwrap();
            let mut buf = [0u8; 32];
            let len = common_era(micros, tz, &mut buf).expect("years 1 to 9999");
            (String::from_utf8(b).unwrap(), String::from_utf8(buf[..len].to_vec()).unwrap())
        };
        // 0001-01-01 and 9999-12-31 23:59:59.999999 in PostgreSQL microseconds.
        let (first, last) = (-63_082_281_600_000_000i64, 252_455_615_999_999_999i64);
        let mut cases = vec![first, last, 0, -1, 1];
        // Every 13th day boundary of the range (13 is prime to 7, 365, 1461, 146097) and
        // every one of 1968 to 2031, then random instants.
        let day = 86_400_000_000i64;
        cases.extend((first..last).step_by(13 * day as usize).flat_map(|d| [d, d - 1 + day]));
        cases.extend((-32 * 365 * day..32 * 365 * day).step_by(day as usize).flat_map(|d| [d, d - 1]));
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push(first + (x % (last - first) as u64) as i64);
        }
        for micros in cases.into_iter().filter(|m| (first..=last).contains(m)) {
            for tz in [false, true] {
                let (want, have) = general(micros, tz);
                assert_eq!(have, want, "{micros}");
            }
        }
        assert_eq!(common_era(first - 1, false, &mut [0; 32]), None, "year 0 (1 BC) takes the general path");
        assert_eq!(common_era(last + 1, false, &mut [0; 32]), None, "year 10000 takes the general path");
    }

    #[test]
    fn json_values() {
        let j = |v: Value<'_>| {
            let mut b = Vec::new();
            write_json(&mut b, &v).unwrap();
            String::from_utf8(b).unwrap()
        };
        assert_eq!(j(Value::Text("a\"b\n")), r#""a\"b\n""#);
        assert_eq!(j(Value::Json("{\"a\":\n 1}")), "{\"a\":  1}");
        assert_eq!(j(Value::Numeric("12.50")), "12.50");
        assert_eq!(j(Value::Numeric("NaN")), "\"NaN\"");
        assert_eq!(j(Value::Float(f64::NEG_INFINITY)), "\"-Infinity\"");
        assert_eq!(j(Value::Float(1e300)), "1e+300");
        assert_eq!(j(Value::Float4(0.1)), "0.1");
        assert_eq!(j(Value::Int(i64::MIN)), "-9223372036854775808");
    }
}
