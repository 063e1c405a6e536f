//! The connection to PostgreSQL: within the timeout, over TLS when the settings ask for it,
//! with errors a person can act on. The settings come from `settings`.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::settings::{Settings, SslMode};
use super::{QueryError, tls};

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
                      --password-file or a ~/.pgpass entry; a database owner's declared secret \
                      needs secrets/NAME.age and an admin identity, --identity)"
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
