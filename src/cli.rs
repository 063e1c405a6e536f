//! Command-line definitions only; `main.rs` dispatches.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub const DEFAULT_INVENTORY: &str = "hosts/inventory.toml";
pub const DEFAULT_OUT: &str = "generated";

#[derive(Debug, Parser)]
#[command(name = "iac", version, about = "One host inventory → every configuration a NixOS + k3s estate needs")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the inventory and write every generated file (atomically).
    Render(RenderArgs),
    /// Print every flow the estate admits: host, chain, source, destination, ports and why.
    Flows(FlowsArgs),
    /// Read the pipeline's table in PostgreSQL: messages, count, schema.
    Query(QueryArgs),
}

#[derive(Debug, clap::Args)]
pub struct InventoryArg {
    /// The inventory file.
    #[arg(long, default_value = DEFAULT_INVENTORY, env = "IAC_INVENTORY")]
    pub inventory: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Output directory.
    #[arg(long, default_value = DEFAULT_OUT)]
    pub out: PathBuf,
    /// Render in memory and compare: exit 0 when OUT is up to date, 1 with a diff when not.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, clap::Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Only this host's flows.
    #[arg(long)]
    pub host: Option<String>,
}

/// `iac query`: connection and table options apply to every subcommand. The password is never
/// an option: PGPASSWORD, --password-file or ~/.pgpass.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The inventory file (its `pipeline` gives the default database, host and table).
    #[arg(long, global = true, default_value = DEFAULT_INVENTORY, env = "IAC_INVENTORY")]
    pub inventory: PathBuf,
    /// libpq connection string or URL (overrides the inventory and PG* variables); must not
    /// contain a password.
    #[arg(long, global = true, value_name = "DSN")]
    pub dsn: Option<String>,
    /// A file holding only the password (like the inventory's `password_file`).
    #[arg(long, global = true, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
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

#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// Stream the table's rows.
    Messages(MessagesArgs),
    /// Count the table's rows.
    Count(SinceArgs),
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
    /// The timestamp column --since filters on [default: the first timestamp column].
    #[arg(long, value_name = "COLUMN", requires = "since")]
    pub time_column: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct MessagesArgs {
    /// At most N rows.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub since: SinceArgs,
    #[arg(long, value_enum, default_value_t = crate::query::Format::Table)]
    pub format: crate::query::Format,
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    #[arg(long, value_enum, default_value_t = crate::query::Format::Table)]
    pub format: crate::query::Format,
}
