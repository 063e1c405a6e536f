//! Take apart a `--dsn` (URL or `key=value` form) just enough to pull out the TLS options that
//! tokio-postgres does not know (`sslmode=verify-ca|verify-full`, `sslrootcert`), and reject a
//! password in it. Everything else is parsed by `tokio_postgres::Config`.

/// Options handled by `iac` itself, removed from the string tokio-postgres parses.
const OURS: [&str; 2] = ["sslmode", "sslrootcert"];

/// The DSN without our options, and our options as (key, value).
pub fn split(dsn: &str) -> (String, Vec<(String, String)>) {
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") { split_url(dsn) } else { split_key_value(dsn) }
}

fn split_url(dsn: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = dsn.split_once('?') else {
        return (dsn.to_owned(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut ours = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k);
        if OURS.contains(&key.as_str()) {
            ours.push((key, percent_decode(v)));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (rest, ours)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libpq's `key = value` form: values may be single-quoted, `\` escapes the next character.
fn split_key_value(dsn: &str) -> (String, Vec<(String, String)>) {
    let mut kept = String::new();
    let mut ours = Vec::new();
    let mut rest = dsn;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let start = rest;
        let key_end = rest.find(|c: char| c == '=' || c.is_whitespace()).unwrap_or(rest.len());
        let key = &rest[..key_end];
        rest = rest[key_end..].trim_start();
        rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
        let (value, after) = read_value(rest);
        rest = after;
        let pair = &start[..start.len() - rest.len()];
        if OURS.contains(&key) {
            ours.push((key.to_owned(), value));
        } else {
            kept.push_str(pair);
            kept.push(' ');
        }
    }
    (kept.trim_end().to_owned(), ours)
}

fn read_value(s: &str) -> (String, &str) {
    let mut value = String::new();
    let quoted = s.starts_with('\'');
    let mut chars = s.char_indices().skip(usize::from(quoted));
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    value.push(n);
                }
            }
            '\'' if quoted => return (value, &s[i + 1..]),
            c if c.is_whitespace() && !quoted => return (value, &s[i..]),
            c => value.push(c),
        }
    }
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_options_are_pulled_out() {
        let (rest, ours) = split("postgres://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fca.pem");
        assert_eq!(rest, "postgres://u@h:5/db?application_name=x");
        assert_eq!(ours, vec![("sslmode".into(), "verify-full".into()), ("sslrootcert".into(), "/ca.pem".into())]);
        assert_eq!(split("postgresql://h/db").0, "postgresql://h/db");
        assert_eq!(split("postgresql://h/db?sslmode=require").0, "postgresql://h/db");
    }

    #[test]
    fn key_value_options_are_pulled_out() {
        let (rest, ours) = split("host=h  sslmode = verify-ca dbname='my db' sslrootcert='/a b\\'c'");
        assert_eq!(rest, "host=h dbname='my db'");
        assert_eq!(ours, vec![("sslmode".into(), "verify-ca".into()), ("sslrootcert".into(), "/a b'c".into())]);
        assert!(rest.parse::<tokio_postgres::Config>().is_ok());
    }
}
