//! `iac query`: read the pipeline's table in PostgreSQL (`iac::query`; docs/query.md). This
//! file owns the process side: the arguments, the runtime, the signals of `--follow`, and
//! stdout (a broken pipe, `iac query messages | head`, is not a failure).

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use iac::load_site;
use iac::query::credential::SecretsFlags;
use iac::query::messages::{self, Filter, Since};
use iac::query::relation::TableName;
use iac::query::settings::{Defaults, Flags, Settings};
use iac::query::{self as lib, QueryError, connect, follow, schema};

use super::Error;
use super::common::{DEFAULT_INVENTORY, IdentityArg};
use super::terminal::{TERMINAL, out};

/// `iac query`: connection and table options apply to every subcommand. The password is never
/// an option: --password-file, PGPASSWORD, the database's declared secret (decrypted with
/// --identity) or ~/.pgpass (`iac::query::credential`).
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The inventory file (its `pipeline` gives the default database, host and table).
    #[arg(long, global = true, default_value = DEFAULT_INVENTORY, env = "IAC_INVENTORY")]
    pub inventory: PathBuf,
    /// libpq connection string or URL (overrides the inventory and PG* variables); must not
    /// contain a password.
    #[arg(long, global = true, value_name = "DSN")]
    pub dsn: Option<String>,
    /// A file holding only the password (like a database host's secret file).
    #[arg(long, global = true, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// The encrypted secrets (secrets/NAME.age): the database owner's password is its declared
    /// secret when neither --password-file nor PGPASSWORD gives one.
    #[arg(long, global = true, value_name = "DIR", default_value = iac::secrets::DEFAULT_DIR)]
    pub secrets_dir: PathBuf,
    #[command(flatten)]
    pub identity: IdentityArg,
    /// Seconds to wait for the connection, TLS and authentication [default: PGCONNECT_TIMEOUT or 10].
    #[arg(long, global = true, value_name = "SECS")]
    pub connect_timeout: Option<u64>,
    /// The table [default: the inventory's `pipeline.table`]; any name, quoted as an identifier.
    #[arg(long, global = true)]
    pub table: Option<String>,
    /// The table's schema [default: the search path].
    #[arg(long, global = true)]
    pub schema: Option<String>,
    #[command(subcommand)]
    pub command: QueryCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum QueryCommand {
    /// Stream the table's rows (all, the newest N, or following new ones).
    Messages(MessagesArgs),
    /// Count the table's rows.
    Count(CountArgs),
    /// Columns, types, nullability, defaults and indexes of the table.
    Schema(SchemaArgs),
    /// Print where `iac query` would connect (never the password), without connecting.
    Conninfo,
}

#[derive(Debug, clap::Args)]
pub struct SinceArgs {
    /// Only rows at or after TIME: an age (15m, 2h, 7d) or a timestamp (UTC unless it has a zone).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// The column that orders rows in time, for --since, --latest and --follow [default: the
    /// first timestamp column].
    #[arg(long, value_name = "COLUMN", requires = "time_users")]
    pub time_column: Option<String>,
}

/// `count`: only --since uses the time column.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("time_users").args(["since"]).multiple(true))]
pub struct CountArgs {
    #[command(flatten)]
    pub since: SinceArgs,
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("time_users").args(["since", "latest", "follow"]).multiple(true))]
pub struct MessagesArgs {
    /// At most N rows, in the order the server returns them.
    #[arg(long, value_name = "N", conflicts_with_all = ["latest", "follow"])]
    pub limit: Option<u64>,
    /// The newest N rows by the time column, printed oldest first (like `tail -n N`).
    #[arg(long, value_name = "N")]
    pub latest: Option<u64>,
    /// After the rows, keep polling for new ones and print each once, until SIGINT or SIGTERM.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// How often --follow polls: 1s, 500ms, 2m, or seconds (0.5).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = follow::parse_interval, requires = "follow")]
    pub interval: Duration,
    #[command(flatten)]
    pub since: SinceArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `--format`: the library's [`lib::Format`], named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON array of row objects (streamed, never held in memory).
    Json,
    /// One JSON object per line.
    Jsonl,
}

impl From<Format> for lib::Format {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => lib::Format::Table,
            Format::Json => lib::Format::Json,
            Format::Jsonl => lib::Format::Jsonl,
        }
    }
}

pub fn run(args: &QueryArgs) -> Result<ExitCode, Error> {
    // The inventory gives defaults; without one, --dsn and the PG* variables must say it all.
    let defaults = if args.inventory.exists() { Defaults::from_site(&load_site(&args.inventory)?) } else { Defaults::default() };
    let flags = Flags {
        dsn: args.dsn.clone(),
        password_file: args.password_file.clone(),
        connect_timeout: args.connect_timeout,
        secrets: Some(SecretsFlags { dir: args.secrets_dir.clone(), identity: args.identity.identity.clone() }),
    };
    let mut settings = lib::settings(&defaults, &flags, &TERMINAL)?;
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
        out(&settings.to_string());
        out(&format!("table     {}\n", table.map_or_else(|| "(none: give --table)".into(), |t| t.to_string())));
        return Ok(ExitCode::SUCCESS);
    }
    let table = table.ok_or_else(|| QueryError::Config(format!("no table: {} has no pipeline; give --table", args.inventory.display())))?;
    // One thread is enough: one connection, rows streamed to stdout.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::Runtime)?;
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
                    Some(n) => messages::latest(&client, &table, &database, &filter, n, m.format.into(), &mut out).await?,
                    None => messages::messages(&client, &table, &database, &filter, m.limit, m.format.into(), &mut out).await?,
                };
            }
            QueryCommand::Count(c) => {
                let n = messages::count(&client, &table, &database, &filter(&c.since)).await?;
                writeln!(out, "{n}").map_err(QueryError::Output)?;
            }
            QueryCommand::Schema(s) => {
                let schema = schema::read(&client, &table, &database).await?;
                schema::write(&schema, s.format.into(), &mut out).map_err(QueryError::Output)?;
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
async fn follow_command(settings: &Settings, table: &TableName, database: &str, m: &MessagesArgs) -> Result<(), QueryError> {
    let format = m.format.into();
    follow::check_format(format)?;
    let mut shutdown = follow::Shutdown::install()?;
    let connected = tokio::select! {
        r = connect::connect_watched(settings) => r?,
        () = shutdown.wait() => return Ok(()),
    };
    let (client, end) = connected;
    let filter = filter(&m.since);
    let options = follow::Options { filter: &filter, report: &TERMINAL, latest: m.latest, interval: m.interval, format };
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    follow::follow(&client, end, &settings.server(), table, database, &options, &mut shutdown, &mut out).await?;
    out.flush().map_err(QueryError::Output)
}

fn filter(s: &SinceArgs) -> Filter {
    Filter { since: s.since.as_deref().map(Since::parse), time_column: s.time_column.clone() }
}
