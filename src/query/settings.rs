//! Where `iac query` connects: the settings, resolved from layers. Pure but for the password
//! files it reads; `connect` makes the connection.
//!
//! Settings come in layers, later ones winning, as libpq users expect:
//! built-in defaults (localhost:5432, the OS user) < the inventory (the database named by
//! `pipeline.database`: its host's address, port, owner) < the libpq variables (`PGHOST`,
//! `PGPORT`, `PGUSER`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGCONNECT_TIMEOUT`) <
//! `--dsn` < `--connect-timeout`. The password never comes from the command line: it comes from
//! `--password-file` (a file holding only the password, like the inventory's `password_file`),
//! else `PGPASSWORD`, else the pgpass file (`PGPASSFILE` or `~/.pgpass`). A `--dsn` holding a
//! password is refused, since it would be visible in the process list.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::Config;
use tokio_postgres::config::Host;

use super::{QueryError, dsn, pgpass};
use crate::model::Site;
use crate::password::{PasswordError, PasswordSource};
use crate::reporter::Reporter;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the inventory says about the pipeline's database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub table: Option<String>,
}

impl Defaults {
    pub fn from_site(site: &Site) -> Defaults {
        let Some(pipeline) = &site.pipeline else { return Defaults::default() };
        let db = site.database(&pipeline.database);
        Defaults {
            host: db.and_then(|d| site.host(&d.host)).map(|h| h.address.to_string()),
            port: db.map(|d| d.port),
            user: db.map(|d| d.owner.clone()),
            database: Some(pipeline.database.clone()),
            table: Some(pipeline.table.clone()),
        }
    }
}

/// Command-line options that bear on the connection.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub dsn: Option<String>,
    pub password_file: Option<PathBuf>,
    pub connect_timeout: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, QueryError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            // libpq's `allow` tries plaintext first; we try TLS first, which is never weaker.
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(QueryError::Config(format!(
                    "invalid sslmode {other:?} (disable, allow, prefer, require, verify-ca, verify-full)"
                )));
            }
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// Which source gave the password; shown by `iac query conninfo` (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordFrom {
    None,
    /// `--password-file` or `PGPASSWORD`, read by the crate's one rule (`crate::password`).
    Source(PasswordSource),
    /// A line of the pgpass file (`~/.pgpass` or `$PGPASSFILE`), as libpq reads it.
    PgPass(PathBuf),
}

impl fmt::Display for PasswordFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordFrom::None => f.write_str("none"),
            PasswordFrom::Source(PasswordSource::File(p)) => write!(f, "--password-file {}", p.display()),
            PasswordFrom::Source(PasswordSource::Env(var)) => f.write_str(var),
            PasswordFrom::PgPass(p) => write!(f, "pgpass file {}", p.display()),
        }
    }
}

/// A resolved connection: tokio-postgres's config plus what it does not model.
pub struct Settings {
    pub config: Config,
    pub ssl: SslMode,
    pub root_cert: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub password_from: PasswordFrom,
}

impl Settings {
    pub fn host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        }
    }

    pub fn port(&self) -> u16 {
        self.config.get_ports().first().copied().unwrap_or(5432)
    }

    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or_default()
    }

    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or_default()
    }

    /// `host:port`, as error messages name the server.
    pub fn server(&self) -> String {
        match self.config.get_hosts().first() {
            Some(Host::Unix(p)) => format!("{}/.s.PGSQL.{}", p.display(), self.port()),
            _ => format!("{}:{}", self.host(), self.port()),
        }
    }
}

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "host      {}", self.host())?;
        writeln!(f, "port      {}", self.port())?;
        writeln!(f, "database  {}", self.dbname())?;
        writeln!(f, "user      {}", self.user())?;
        writeln!(f, "password  {}", self.password_from)?;
        let root = self.root_cert.as_ref().map(|p| format!(" (root {})", p.display()));
        writeln!(f, "sslmode   {}{}", self.ssl, root.unwrap_or_default())?;
        writeln!(f, "timeout   {}s", self.connect_timeout.as_secs())
    }
}

/// Layer the settings (see the module comment). `env` reads one variable; passing it in keeps
/// this testable without touching the process environment. Reads no files.
pub fn resolve(defaults: &Defaults, env: &dyn Fn(&str) -> Option<String>, flags: &Flags) -> Result<Settings, QueryError> {
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    let (config_text, ours) = flags.dsn.as_deref().map(dsn::split).unwrap_or_default();
    let mut config: Config = if config_text.trim().is_empty() {
        Config::new()
    } else {
        config_text.parse().map_err(|e| QueryError::Config(format!("invalid --dsn: {e}")))?
    };
    if config.get_password().is_some() {
        return Err(QueryError::Config(
            "--dsn must not contain a password: anyone can read the process list; use \
             PGPASSWORD, --password-file or ~/.pgpass"
                .into(),
        ));
    }
    if config.get_hosts().len() > 1 {
        return Err(QueryError::Config("--dsn: give one host".into()));
    }
    if config.get_hosts().is_empty() {
        let host = env("PGHOST").or_else(|| defaults.host.clone()).unwrap_or_else(|| "localhost".into());
        config.host(&host);
    }
    if config.get_ports().is_empty() {
        let port = match env("PGPORT") {
            Some(p) => p.parse().map_err(|_| QueryError::Config(format!("invalid PGPORT {p:?}")))?,
            None => defaults.port.unwrap_or(5432),
        };
        config.port(port);
    }
    if config.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| defaults.user.clone())
            .or_else(|| env("USER"))
            .ok_or_else(|| QueryError::Config("no user: set PGUSER or --dsn user=...".into()))?;
        config.user(&user);
    }
    if config.get_dbname().is_none() {
        let db = env("PGDATABASE").or_else(|| defaults.database.clone());
        let db = db.unwrap_or_else(|| config.get_user().unwrap_or_default().to_owned());
        config.dbname(&db);
    }
    if config.get_application_name().is_none() {
        config.application_name("iac query");
    }
    let find = |key: &str| ours.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let ssl = match find("sslmode").or_else(|| env("PGSSLMODE")) {
        Some(mode) => SslMode::parse(&mode)?,
        None => SslMode::Prefer,
    };
    let root_cert = find("sslrootcert").or_else(|| env("PGSSLROOTCERT")).map(PathBuf::from);
    let connect_timeout = match flags.connect_timeout {
        Some(secs) => Duration::from_secs(secs),
        None => match (config.get_connect_timeout(), env("PGCONNECT_TIMEOUT")) {
            (Some(t), _) => *t,
            (None, Some(t)) => Duration::from_secs(t.parse().map_err(|_| QueryError::Config(format!("invalid PGCONNECT_TIMEOUT {t:?}")))?),
            (None, None) => DEFAULT_CONNECT_TIMEOUT,
        },
    };
    if connect_timeout.is_zero() {
        return Err(QueryError::Config("connect timeout must be at least 1 second".into()));
    }
    config.connect_timeout(connect_timeout);
    Ok(Settings { config, ssl, root_cert, connect_timeout, password_from: PasswordFrom::None })
}

/// Find the password: `--password-file`, then `PGPASSWORD` (when set and not empty, as libpq
/// reads it), then the pgpass file. A pgpass file that cannot be used is a warning to
/// `report`, not an error: the server may not ask for a password at all.
pub fn load_password(
    settings: &mut Settings,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &Flags,
    report: &dyn Reporter,
) -> Result<(), QueryError> {
    if let Some(path) = &flags.password_file {
        let source = PasswordSource::File(path.clone());
        let password = source.read_with(env).map_err(|e| match e {
            PasswordError::Read { source, .. } => QueryError::Config(format!("cannot read --password-file {}: {source}", path.display())),
            other => QueryError::Config(format!("--password-file: {other}")),
        })?;
        settings.config.password(password);
        settings.password_from = PasswordFrom::Source(source);
        return Ok(());
    }
    let source = PasswordSource::Env("PGPASSWORD".into());
    if let Ok(password) = source.read_with(env) {
        settings.config.password(password);
        settings.password_from = PasswordFrom::Source(source);
        return Ok(());
    }
    let path = match env("PGPASSFILE").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => match env("HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home).join(".pgpass"),
            None => return Ok(()),
        },
    };
    let host = settings.host();
    let key = pgpass::Key { host: &host, port: settings.port(), database: settings.dbname(), user: settings.user() };
    match pgpass::lookup(&path, key) {
        Ok(pgpass::Lookup::Found(pw)) => {
            settings.config.password(pw);
            settings.password_from = PasswordFrom::PgPass(path);
        }
        Ok(pgpass::Lookup::TooOpen(mode)) => {
            report.warning(&format!("ignoring password file {}: mode {mode:o} lets others read it (chmod 600)", path.display()))
        }
        Ok(pgpass::Lookup::NoMatch | pgpass::Lookup::Missing) => {}
        Err(e) => report.warning(&format!("cannot read password file {}: {e}", path.display())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reporter::Silent;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    fn inventory() -> Defaults {
        Defaults {
            host: Some("172.22.0.133".into()),
            port: Some(5432),
            user: Some("kafka".into()),
            database: Some("kafka".into()),
            table: Some("kafka_messages".into()),
        }
    }

    #[test]
    fn inventory_gives_the_defaults() {
        let s = resolve(&inventory(), &env(&[]), &Flags::default()).unwrap();
        assert_eq!(s.server(), "172.22.0.133:5432");
        assert_eq!((s.user(), s.dbname(), s.ssl), ("kafka", "kafka", SslMode::Prefer));
        assert_eq!(s.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    }

    #[test]
    fn environment_beats_inventory_and_dsn_beats_environment() {
        let e = env(&[("PGHOST", "envhost"), ("PGPORT", "6000"), ("PGUSER", "eu"), ("PGSSLMODE", "require")]);
        let s = resolve(&inventory(), &e, &Flags::default()).unwrap();
        assert_eq!((s.server().as_str(), s.user(), s.dbname()), ("envhost:6000", "eu", "kafka"));
        assert_eq!(s.ssl, SslMode::Require);
        let flags = Flags { dsn: Some("host=dsnhost dbname=other sslmode=verify-full connect_timeout=3".into()), ..Flags::default() };
        let s = resolve(&inventory(), &e, &flags).unwrap();
        assert_eq!((s.server().as_str(), s.user(), s.dbname()), ("dsnhost:6000", "eu", "other"));
        assert_eq!((s.ssl, s.connect_timeout), (SslMode::VerifyFull, Duration::from_secs(3)));
        let flags = Flags { connect_timeout: Some(1), ..flags };
        assert_eq!(resolve(&inventory(), &e, &flags).unwrap().connect_timeout, Duration::from_secs(1));
    }

    #[test]
    fn password_in_dsn_is_refused() {
        for dsn in ["postgres://u:secret@h/db", "host=h password=secret"] {
            let flags = Flags { dsn: Some(dsn.into()), ..Flags::default() };
            let err = resolve(&inventory(), &env(&[]), &flags).err().unwrap().to_string();
            assert!(err.contains("must not contain a password"), "{err}");
            assert!(!err.contains("secret"));
        }
    }

    #[test]
    fn password_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let e = env(&[("PGPASSWORD", "from-env")]);
        let mut s = resolve(&inventory(), &e, &Flags::default()).unwrap();
        let flags = Flags { password_file: Some(file.clone()), ..Flags::default() };
        load_password(&mut s, &e, &flags, &Silent).unwrap();
        assert_eq!(s.config.get_password(), Some(&b"from-file"[..]));
        assert_eq!(s.password_from.to_string(), format!("--password-file {}", file.display()));
        let mut s = resolve(&inventory(), &e, &Flags::default()).unwrap();
        load_password(&mut s, &e, &Flags::default(), &Silent).unwrap();
        assert_eq!(s.config.get_password(), Some(&b"from-env"[..]));
        assert_eq!(s.password_from.to_string(), "PGPASSWORD");
        // An empty PGPASSWORD counts as unset (libpq): on to the pgpass file, here none.
        let e = env(&[("PGPASSWORD", "")]);
        let mut s = resolve(&inventory(), &e, &Flags::default()).unwrap();
        load_password(&mut s, &e, &Flags::default(), &Silent).unwrap();
        assert_eq!((s.config.get_password(), s.password_from), (None, PasswordFrom::None));
    }

    #[test]
    fn a_password_file_is_read_by_the_one_rule() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        let flags = Flags { password_file: Some(file.clone()), ..Flags::default() };
        // One newline goes, as psql's backquotes drop it on the server's side; a \r stays.
        std::fs::write(&file, "pw\r\n").unwrap();
        let mut s = resolve(&inventory(), &env(&[]), &Flags::default()).unwrap();
        load_password(&mut s, &env(&[]), &flags, &Silent).unwrap();
        assert_eq!(s.config.get_password(), Some(&b"pw\r"[..]));
        std::fs::write(&file, "\n").unwrap();
        let err = load_password(&mut s, &env(&[]), &flags, &Silent).unwrap_err().to_string();
        assert_eq!(err, format!("--password-file: {} is empty", file.display()));
    }
}
