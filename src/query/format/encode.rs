//! One value as text: JSON (strings escaped, JSON columns passed through on one line,
//! timestamps in ISO 8601 as `row_to_json` writes them) or a table cell (no quotes, control
//! characters escaped).

use std::io::{self, Write};

use super::decode::Value;

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
#[inline]
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
