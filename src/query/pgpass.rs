//! The password file libpq reads (`~/.pgpass` or `$PGPASSFILE`), so `iac query` finds the
//! same password `psql` would. No crate on crates.io covers this small, stable format.
//!
//! Each line is `host:port:database:user:password`; `*` matches anything, `\:` and `\\` are a
//! literal colon and backslash, `#` starts a comment line. The first matching line wins. Like
//! libpq, a file that group or others can read is ignored (with a warning), and a connection
//! over a Unix socket matches the host `localhost`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What is looked up: the connection's final host, port, database and user.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// Why the file gave no password, for `iac query conninfo` and warnings.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(String),
    NoMatch,
    Missing,
    /// Readable by group or others: ignored, as libpq does.
    TooOpen(u32),
}

pub fn lookup(path: &Path, key: Key<'_>) -> std::io::Result<Lookup> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::Missing),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Ok(Lookup::TooOpen(mode));
    }
    let text = std::fs::read_to_string(path)?;
    Ok(find(&text, key).map_or(Lookup::NoMatch, Lookup::Found))
}

/// The password of the first line that matches `key`.
pub fn find(text: &str, key: Key<'_>) -> Option<String> {
    let host = if key.host.starts_with('/') { "localhost" } else { key.host };
    let port = key.port.to_string();
    let wanted = [host, port.as_str(), key.database, key.user];
    text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).find_map(|line| {
        let fields = split(line);
        if fields.len() < 5 {
            return None;
        }
        let matches = fields.iter().zip(wanted).all(|(f, w)| f == "*" || f == w);
        // A password may itself contain unescaped colons after the fourth field.
        matches.then(|| fields[4..].join(":"))
    })
}

/// Split on unescaped colons, resolving `\:` and `\\`.
fn split(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(host: &'a str, port: u16, database: &'a str, user: &'a str) -> Key<'a> {
        Key { host, port, database, user }
    }

    #[test]
    fn first_matching_line_wins_and_wildcards_match() {
        let text = "# comment\nother:5432:kafka:kafka:no\n*:5432:kafka:kafka:yes\n*:*:*:*:last\n";
        assert_eq!(find(text, key("db", 5432, "kafka", "kafka")).as_deref(), Some("yes"));
        assert_eq!(find(text, key("db", 5433, "kafka", "kafka")).as_deref(), Some("last"));
        assert_eq!(find("h:1:d:u:p\n", key("h", 2, "d", "u")), None);
    }

    #[test]
    fn escapes_and_unix_sockets() {
        let text = "localhost:5432:d\\:b:u:pa\\:ss\\\\w\n";
        assert_eq!(find(text, key("/run/postgresql", 5432, "d:b", "u")).as_deref(), Some("pa:ss\\w"));
    }

    #[test]
    fn group_readable_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(lookup(&path, key("h", 1, "d", "u")).unwrap(), Lookup::TooOpen(0o644));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(lookup(&path, key("h", 1, "d", "u")).unwrap(), Lookup::Found("secret".into()));
        assert_eq!(lookup(&dir.path().join("none"), key("h", 1, "d", "u")).unwrap(), Lookup::Missing);
    }
}
