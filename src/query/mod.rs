//! `iac query`: read the pipeline's table in PostgreSQL with tokio-postgres (replaces the old
//! Python query script).
//!
//! `settings` resolves where to connect (inventory < PG* variables < `--dsn`), `credential`
//! finds the password (never on the command line), `connect`
//! connects with a timeout, `tls` provides rustls for `sslmode`, `relation` quotes the table name and reads
//! its columns and primary key, `messages` streams rows (and counts them), `order` is what
//! `--latest` and `--follow` order by and the SQL for it, `follow` polls for new rows,
//! `format` writes table/JSON/JSON lines, `schema` reads the catalogs. The command layer
//! (`iac query`) owns the process: the runtime, signals and stdout.

pub mod connect;
pub mod credential;
mod dsn;
pub mod follow;
pub mod format;
pub mod messages;
pub mod order;
mod pgpass;
pub mod relation;
pub mod schema;
pub mod settings;
mod tls;

use std::io;
use std::time::Duration;

pub use format::Format;

use crate::reporter::Reporter;
use messages::Filter;
use relation::TableName;
use settings::{Defaults, Flags};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Config(String),
    #[error("cannot reach PostgreSQL at {server}: {message}")]
    Unreachable { server: String, message: String },
    #[error("no answer from PostgreSQL at {server} within {}s (set --connect-timeout or PGCONNECT_TIMEOUT to wait longer)", after.as_secs())]
    Timeout { server: String, after: Duration },
    #[error("TLS with PostgreSQL at {server} failed: {message}")]
    Tls { server: String, message: String },
    #[error("connection to PostgreSQL at {server} failed: {message}")]
    Connection { server: String, message: String },
    #[error("authentication as user \"{user}\" at {server} failed: {message}")]
    Auth { server: String, user: String, message: String },
    #[error("database \"{database}\" does not exist on {server}")]
    DatabaseMissing { server: String, database: String },
    #[error("table {table} does not exist in database \"{database}\"")]
    TableMissing { table: String, database: String },
    #[error("table {table} has no column \"{column}\"")]
    ColumnMissing { table: String, column: String },
    #[error("table {table} has no timestamp column for {flag} (name one with --time-column)")]
    NoTimeColumn { table: String, flag: &'static str },
    #[error("table {table} has no primary key: --follow needs one to tell rows with the same time apart (or the sink's Kafka coordinates)")]
    NoKey { table: String },
    #[error("lost the connection to PostgreSQL at {server}: {message}")]
    ConnectionLost { server: String, message: String },
    #[error("PostgreSQL: {0}")]
    Server(String),
    #[error("writing output: {0}")]
    Output(io::Error),
}

impl QueryError {
    /// 3: cannot talk to the server; 4: it refused us; 5: what we asked for is not there;
    /// 1: anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            QueryError::Unreachable { .. }
            | QueryError::Timeout { .. }
            | QueryError::Tls { .. }
            | QueryError::Connection { .. }
            | QueryError::ConnectionLost { .. } => 3,
            QueryError::Auth { .. } => 4,
            QueryError::DatabaseMissing { .. } | QueryError::TableMissing { .. } | QueryError::ColumnMissing { .. } => 5,
            _ => 1,
        }
    }

    /// A server error with its message, detail and hint, or the client's error chain.
    pub fn server(e: &tokio_postgres::Error) -> QueryError {
        QueryError::Server(describe(e))
    }
}

/// An error's text for people: the server's message, detail and hint, or the client's chain.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut msg = db.message().to_owned();
            if let Some(d) = db.detail() {
                msg.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                msg.push_str(&format!(" hint: {h}"));
            }
            msg
        }
        None => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg
        }
    }
}

/// Connection settings from inventory defaults, the process's PG* variables and the flags,
/// with the password loaded (never from the command line).
pub fn settings(defaults: &Defaults, flags: &Flags, report: &dyn Reporter) -> Result<settings::Settings, QueryError> {
    let env = |k: &str| std::env::var(k).ok();
    let mut settings = settings::resolve(defaults, &env, flags)?;
    credential::load_password(&mut settings, &env, defaults, flags, report)?;
    Ok(settings)
}

/// The number of rows in the pipeline's sink table, connecting as `iac query` would with no
/// flags (inventory defaults, PG* variables, ~/.pgpass). For `iac pipeline status`.
///
/// The password as for `iac query`: `PGPASSWORD`, then the database owner's declared secret
/// (when `secrets` names where they are and with which identity), then the pgpass file.
pub async fn sink_row_count(
    site: &crate::model::Site,
    secrets: Option<credential::SecretsFlags>,
    report: &dyn Reporter,
) -> Result<i64, QueryError> {
    let defaults = Defaults::from_site(site);
    let flags = Flags { dsn: None, password_file: None, connect_timeout: None, secrets };
    let settings = settings(&defaults, &flags, report)?;
    let table = defaults.table.clone().ok_or_else(|| QueryError::Config("the inventory has no [pipeline]".into()))?;
    let table = TableName::new(None, table)?;
    let client = connect::connect(&settings).await?;
    messages::count(&client, &table, settings.dbname(), &Filter { since: None, time_column: None }).await
}
