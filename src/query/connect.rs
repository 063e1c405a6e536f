//! Where `iac query` connects, and the connection itself.
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

use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use super::{QueryError, dsn, pgpass, tls};
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

/// Where the password came from; shown by `iac query conninfo` (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    None,
    File(PathBuf),
    Env,
    PgPass(PathBuf),
}

impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::None => f.write_str("none"),
            PasswordSource::File(p) => write!(f, "--password-file {}", p.display()),
            PasswordSource::Env => f.write_str("PGPASSWORD"),
            PasswordSource::PgPass(p) => write!(f, "pgpass file {}", p.display()),
        }
    }
}

/// A resolved connection: tokio-postgres's config plus what it does not model.
pub struct Settings {
    pub config: Config,
    pub ssl: SslMode,
    pub root_cert: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub password_source: PasswordSource,
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
        writeln!(f, "password  {}", self.password_source)?;
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
    Ok(Settings { config, ssl, root_cert, connect_timeout, password_source: PasswordSource::None })
}

/// Find the password: `--password-file`, then `PGPASSWORD`, then the pgpass file.
pub fn load_password(settings: &mut Settings, env: &dyn Fn(&str) -> Option<String>, flags: &Flags) -> Result<(), QueryError> {
    if let Some(path) = &flags.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| QueryError::Config(format!("cannot read --password-file {}: {e}", path.display())))?;
        settings.config.password(text.trim_end_matches(['\n', '\r']));
        settings.password_source = PasswordSource::File(path.clone());
        return Ok(());
    }
    if let Some(pw) = env("PGPASSWORD").filter(|p| !p.is_empty()) {
        settings.config.password(pw);
        settings.password_source = PasswordSource::Env;
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
            settings.password_source = PasswordSource::PgPass(path);
        }
        Ok(pgpass::Lookup::TooOpen(mode)) => {
            eprintln!("warning: ignoring password file {}: mode {mode:o} lets others read it (chmod 600)", path.display())
        }
        Ok(pgpass::Lookup::NoMatch | pgpass::Lookup::Missing) => {}
        Err(e) => eprintln!("warning: cannot read password file {}: {e}", path.display()),
    }
    Ok(())
}

/// Connect within the timeout (socket, TLS and authentication together: a server that accepts
/// the TCP connection and then says nothing must not hang us) and drive the connection on the
/// current runtime.
pub async fn connect(settings: &Settings) -> Result<Client, QueryError> {
    connect_watched(settings).await.map(|(client, _)| client)
}

/// Why a connection ended, once it has. tokio-postgres hands a message the server sends
/// outside any request (e.g. `FATAL: terminating connection due to administrator command`
/// when it shuts down) to the connection future as its error (`Connection::poll_read`), while
/// the client's next request only learns that the connection is closed; this keeps the
/// server's reason for the message `--follow` ends with.
pub struct ConnectionEnd(tokio::sync::oneshot::Receiver<String>);

impl ConnectionEnd {
    /// The reason, if the connection has ended (waiting briefly for the connection task, which
    /// finishes just after the client sees the channel close).
    pub async fn reason(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_millis(500), &mut self.0).await.ok()?.ok()
    }
}

/// Drive the connection on the runtime and report how it ended.
fn watch<C>(conn: C) -> ConnectionEnd
where
    C: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let reason = match conn.await {
            Ok(()) => "the server closed the connection".to_owned(),
            Err(e) => super::describe(&e),
        };
        // Nobody listening (plain `connect`) is fine.
        let _ = tx.send(reason);
    });
    ConnectionEnd(rx)
}

/// [`connect`], keeping how the connection ends (for `--follow`).
pub async fn connect_watched(settings: &Settings) -> Result<(Client, ConnectionEnd), QueryError> {
    let attempt = async {
        match settings.ssl {
            SslMode::Disable => {
                let (client, conn) = settings.config.connect(NoTls).await?;
                Ok((client, watch(conn)))
            }
            mode => {
                let tls = tls::connector(mode, settings.root_cert.as_deref())?;
                let mut config = settings.config.clone();
                config.ssl_mode(match mode {
                    SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                    _ => tokio_postgres::config::SslMode::Require,
                });
                let (client, conn) = config.connect(tls).await?;
                Ok((client, watch(conn)))
            }
        }
    };
    let result: Result<(Client, ConnectionEnd), ConnectFailure> = match tokio::time::timeout(settings.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => {
            return Err(QueryError::Timeout { server: settings.server(), after: settings.connect_timeout });
        }
    };
    result.map_err(|e| match e {
        ConnectFailure::Tls(msg) => QueryError::Tls { server: settings.server(), message: msg },
        ConnectFailure::Pg(e) => classify(e, settings),
    })
}

enum ConnectFailure {
    Pg(tokio_postgres::Error),
    Tls(String),
}

impl From<tokio_postgres::Error> for ConnectFailure {
    fn from(e: tokio_postgres::Error) -> Self {
        ConnectFailure::Pg(e)
    }
}

impl From<tls::TlsSetupError> for ConnectFailure {
    fn from(e: tls::TlsSetupError) -> Self {
        ConnectFailure::Tls(e.to_string())
    }
}

/// Turn a connection error into one a person can act on. tokio-postgres keeps its error kinds
/// private; its server errors carry a SQLSTATE, the rest are told apart by their message.
fn classify(e: tokio_postgres::Error, s: &Settings) -> QueryError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            return QueryError::Auth { server: s.server(), user: s.user().into(), message: db.message().into() };
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return QueryError::DatabaseMissing { server: s.server(), database: s.dbname().into() };
        }
        return QueryError::server(&e);
    }
    let text = e.to_string();
    if source_text(&e) == "password missing" {
        return QueryError::Auth {
            server: s.server(),
            user: s.user().into(),
            message: "the server asks for a password and none was found (set PGPASSWORD, \
                      --password-file or a ~/.pgpass entry)"
                .into(),
        };
    }
    if text.starts_with("error performing TLS handshake") {
        return QueryError::Tls { server: s.server(), message: source_text(&e) };
    }
    if text.starts_with("timeout waiting for server") {
        return QueryError::Timeout { server: s.server(), after: s.connect_timeout };
    }
    if text.starts_with("error connecting to server") || text.starts_with("error communicating") {
        return QueryError::Unreachable { server: s.server(), message: source_text(&e) };
    }
    QueryError::Connection { server: s.server(), message: text }
}

/// The innermost cause's message ("Connection refused (os error 111)").
fn source_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
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
        load_password(&mut s, &e, &flags).unwrap();
        assert_eq!(s.config.get_password(), Some(&b"from-file"[..]));
        let mut s = resolve(&inventory(), &e, &Flags::default()).unwrap();
        load_password(&mut s, &e, &Flags::default()).unwrap();
        assert_eq!((s.config.get_password(), s.password_source), (Some(&b"from-env"[..]), PasswordSource::Env));
    }
}
