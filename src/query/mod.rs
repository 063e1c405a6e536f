//! `iac query`: read the pipeline's table in PostgreSQL with tokio-postgres (replaces the old
//! Python query script).
//!
//! `connect` resolves where to connect (inventory < PG* variables < `--dsn`) and connects with
//! a timeout, `tls` provides rustls for `sslmode`, `relation` quotes the table name and reads
//! its columns and primary key, `messages` streams rows (and counts them), `order` is what
//! `--latest` and `--follow` order by and the SQL for it, `follow` polls for new rows,
//! `format` writes table/JSON/JSON lines, `schema` reads the catalogs. Only `run` touches the
//! process: environment, signals and stdout.

pub mod connect;
mod dsn;
pub mod follow;
pub mod format;
pub mod messages;
pub mod order;
mod pgpass;
pub mod relation;
pub mod schema;
mod tls;

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

pub use format::Format;

use crate::cli::{MessagesArgs, QueryArgs, QueryCommand, SinceArgs};
use crate::error::Error;
use connect::{Defaults, Flags};
use messages::{Filter, Since};
use relation::TableName;

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

pub fn run(args: &QueryArgs) -> Result<ExitCode, Error> {
    // The inventory gives defaults; without one, --dsn and the PG* variables must say it all.
    let defaults = if args.inventory.exists() { Defaults::from_site(&crate::load_site(&args.inventory)?) } else { Defaults::default() };
    let flags = Flags { dsn: args.dsn.clone(), password_file: args.password_file.clone(), connect_timeout: args.connect_timeout };
    let mut settings = settings(&defaults, &flags)?;
    if let QueryCommand::Messages(m) = &args.command
        && m.follow
    {
        settings
            .config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(30));
    }
    let table = match args.table.clone().or(defaults.table) {
        Some(t) => Some(TableName::new(args.schema.clone(), t)?),
        None => None,
    };
    if let QueryCommand::Conninfo = args.command {
        print!("{settings}");
        println!("table     {}", table.map_or_else(|| "(none: give --table)".into(), |t| t.to_string()));
        return Ok(ExitCode::SUCCESS);
    }
    let table = table.ok_or_else(|| QueryError::Config(format!("no table: {} has no pipeline; give --table", args.inventory.display())))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| QueryError::Config(format!("cannot start the async runtime: {e}")))?;
    let database = settings.dbname().to_owned();
    let result = runtime.block_on(async {
        if let QueryCommand::Messages(m) = &args.command
            && m.follow
        {
            return follow_command(&settings, &table, &database, m).await;
        }
        let client = connect::connect(&settings).await?;
        let stdout = io::stdout().lock();
        let mut out = BufWriter::with_capacity(64 * 1024, stdout);
        match &args.command {
            QueryCommand::Messages(m) => {
                let filter = filter(&m.since);
                match m.latest {
                    Some(n) => messages::latest(&client, &table, &database, &filter, n, m.format, &mut out).await?,
                    None => messages::messages(&client, &table, &database, &filter, m.limit, m.format, &mut out).await?,
                };
            }
            QueryCommand::Count(c) => {
                let n = messages::count(&client, &table, &database, &filter(&c.since)).await?;
                writeln!(out, "{n}").map_err(QueryError::Output)?;
            }
            QueryCommand::Schema(s) => {
                let schema = schema::read(&client, &table, &database).await?;
                schema::write(&schema, s.format, &mut out).map_err(QueryError::Output)?;
            }
            QueryCommand::Conninfo => {}
        }
        out.flush().map_err(QueryError::Output)
    });
    match result {
        // `iac query messages | head`: the reader is gone, which is not our failure.
        Err(QueryError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

/// `messages --follow`: signals are caught before connecting, so SIGINT at any point ends
/// with exit 0. A server that vanishes without closing the connection (a cable, a firewall)
/// must not be waited on forever: `run` has set TCP_USER_TIMEOUT to 30 s (a poll whose data
/// stays unacknowledged that long fails; without it Linux retransmits for about 15 minutes)
/// and keepalives (idle 10 s, 3 probes 5 s apart) for long `--interval`s.
async fn follow_command(settings: &connect::Settings, table: &TableName, database: &str, m: &MessagesArgs) -> Result<(), QueryError> {
    follow::check_format(m.format)?;
    let mut shutdown = follow::Shutdown::install()?;
    let connected = tokio::select! {
        r = connect::connect_watched(settings) => r?,
        () = shutdown.wait() => return Ok(()),
    };
    let (client, end) = connected;
    let filter = filter(&m.since);
    let options = follow::Options { filter: &filter, latest: m.latest, interval: m.interval, format: m.format };
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    follow::follow(&client, end, &settings.server(), table, database, &options, &mut shutdown, &mut out).await?;
    out.flush().map_err(QueryError::Output)
}

/// Connection settings from inventory defaults, the PG* variables and the flags, with the
/// password loaded (never from the command line).
fn settings(defaults: &Defaults, flags: &Flags) -> Result<connect::Settings, QueryError> {
    let env = |k: &str| std::env::var(k).ok();
    let mut settings = connect::resolve(defaults, &env, flags)?;
    connect::load_password(&mut settings, &env, flags)?;
    Ok(settings)
}

/// The number of rows in the pipeline's sink table, connecting as `iac query` would with no
/// flags (inventory defaults, PG* variables, ~/.pgpass). For `iac pipeline status`.
pub async fn sink_row_count(site: &crate::model::Site) -> Result<i64, QueryError> {
    let defaults = Defaults::from_site(site);
    let flags = Flags { dsn: None, password_file: None, connect_timeout: None };
    let settings = settings(&defaults, &flags)?;
    let table = defaults.table.clone().ok_or_else(|| QueryError::Config("the inventory has no [pipeline]".into()))?;
    let table = TableName::new(None, table)?;
    let client = connect::connect(&settings).await?;
    messages::count(&client, &table, settings.dbname(), &Filter { since: None, time_column: None }).await
}

fn filter(s: &SinceArgs) -> Filter {
    Filter { since: s.since.as_deref().map(Since::parse), time_column: s.time_column.clone() }
}
