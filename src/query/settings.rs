//! Where `iac query` connects: the settings, resolved from layers. Pure: `credential` finds the
//! password, `connect` makes the connection.
//!
//! Settings come in layers, later ones winning, as libpq users expect:
//! built-in defaults (localhost:5432, the OS user) < the inventory (the database named by
//! `pipeline.database`: its host's address, port, owner) < the libpq variables (`PGHOST`,
//! `PGPORT`, `PGUSER`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGCONNECT_TIMEOUT`) <
//! `--dsn` < `--connect-timeout`. The password never comes from the command line: it comes from
//! `--password-file` (a file holding only the password, like a database host's secret file),
//! else `PGPASSWORD`, else the declared secret of the database connected to (when the user is
//! its owner), else the pgpass file (`PGPASSFILE` or `~/.pgpass`); `credential::load_password` says why
//! in that order. A `--dsn` holding a password is refused, since it would be visible in the
//! process list.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::Config;
use tokio_postgres::config::Host;

use super::credential::{DeclaredPassword, PasswordFrom, SecretsFlags};
use super::{QueryError, dsn};
use crate::model::Site;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the inventory says about the pipeline's database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub table: Option<String>,
    /// The databases a connection may reach, with their owners and declared secrets: the one
    /// whose name and owner are the connection's gives the password (see `credential::load_password`).
    pub passwords: Vec<DeclaredPassword>,
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
            // Every database: `PGDATABASE` or `--dsn dbname=` may name another than the
            // pipeline's, and its owner's password is then its own secret. Names are unique in
            // the inventory (`[databases.NAME]`), so the name says which one.
            passwords: DeclaredPassword::of(&site.databases),
        }
    }
}

/// Command-line options that bear on the connection.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub dsn: Option<String>,
    pub password_file: Option<PathBuf>,
    pub connect_timeout: Option<u64>,
    /// Where the declared secrets are and who decrypts them; `None`: they are never read.
    pub secrets: Option<SecretsFlags>,
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A process environment of `vars` only (also for `credential`'s tests).
    pub(in crate::query) fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    /// The bundled inventory's defaults, no declared password (also for `credential`'s tests).
    pub(in crate::query) fn inventory() -> Defaults {
        Defaults {
            host: Some("172.22.0.133".into()),
            port: Some(5432),
            user: Some("kafka".into()),
            database: Some("kafka".into()),
            table: Some("kafka_messages".into()),
            passwords: Vec::new(),
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
}
