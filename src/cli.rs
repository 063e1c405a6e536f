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
    /// Build and switch NixOS hosts, in parallel, with a rollback guard against lock-out.
    Deploy(DeployArgs),
    /// Prove the rendered firewalls in Linux network namespaces: real traffic for every
    /// declared flow (must pass) and from an untrusted host (must be refused), then a reload.
    Simulate(SimulateArgs),
    /// Check the cluster's health: nodes, system pods, DNS and API from pods, pod-to-pod.
    Verify(VerifyArgs),
    /// Server-side apply generated/k8s in dependency order, register the connector, run the producer.
    Apply(ApplyArgs),
    /// The data pipeline on the cluster.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
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
    /// Replace OUT even when it holds files iac did not write (never a directory holding .git).
    #[arg(long, conflicts_with = "check")]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Only this host's flows.
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("targets").required(true).args(["hosts", "all"]))]
pub struct DeployArgs {
    /// Hosts to deploy (names from the inventory).
    pub hosts: Vec<String>,
    /// Deploy every host of the inventory.
    #[arg(long)]
    pub all: bool,
    /// The flake that defines `nixosConfigurations.<host>`; iac appends `#<host>`.
    #[arg(long, default_value = ".")]
    pub flake: String,
    /// The inventory file [default: FLAKE/hosts/inventory.toml when FLAKE is a directory].
    #[arg(long, env = "IAC_INVENTORY")]
    pub inventory: Option<PathBuf>,
    /// The rendered tree that must be up to date [default: FLAKE/generated].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Build on this host instead of locally (as `nixos-rebuild --build-host`); the result is
    /// copied from there straight to each target.
    #[arg(long, value_name = "[USER@]HOST")]
    pub build_host: Option<String>,
    /// Copy every store path to the targets (and the build host) instead of letting them fetch
    /// what they can from their own substituters (`nix copy --substitute-on-destination`, the
    /// default, as `nixos-rebuild --use-substitutes`).
    #[arg(long)]
    pub no_substitutes: bool,
    /// Hosts deployed at the same time.
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Print every command a deploy would run and change nothing: runs no tool and needs none
    /// (the render check runs, and `nft -c` when nft and unshare are installed).
    #[arg(long)]
    pub dry_run: bool,
    /// Switch without the confirmation guard: no automatic rollback.
    #[arg(long)]
    pub no_rollback: bool,
    /// Seconds the target waits for the confirmation before it rolls back.
    #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub confirm_timeout: u64,
    /// SSH connect timeout in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Also write the report, the loaded rulesets and their `nft list` output here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Load FILE on HOST instead of its rendered ruleset (repeatable), e.g. to prove that a
    /// broken ruleset is caught.
    #[arg(long, value_name = "HOST=FILE")]
    pub ruleset: Vec<String>,
    /// How long a probe waits for a handshake or reply before calling it refused.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Load the standalone nftables.nft files without evaluating the NixOS modules with
    /// nix-instantiate: then the run does not prove the text NixOS loads.
    #[arg(long)]
    pub skip_nix_eval: bool,
}

/// Which cluster to talk to (kube-rs's usual lookup when neither is given).
#[derive(Debug, clap::Args)]
pub struct KubeArgs {
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Image of the short-lived probe pods (needs busybox's sh, nslookup, nc, httpd).
    #[arg(long, default_value = "busybox:1.37")]
    pub probe_image: String,
    /// Namespace the probe pods run in.
    #[arg(long, default_value = "default")]
    pub probe_namespace: String,
    /// A name outside the cluster that pods must resolve through CoreDNS and the upstream resolver.
    #[arg(long, default_value = "example.com")]
    pub external_name: String,
    /// Seconds to wait for each probe pod.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// The rendered tree; manifests are read from GENERATED/k8s.
    #[arg(long, default_value = DEFAULT_OUT)]
    pub generated: PathBuf,
    /// Send everything with the API's server-side dry run (dryRun=All); wait for nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Read the database password from this file instead of the variable named by pipeline.password_env.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Seconds each wait (Kafka, Connect, connector, producer) may take.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// When a StatefulSet change touches a field the API server keeps fixed (volumeClaimTemplates,
    /// serviceName, ...): delete the StatefulSet with propagationPolicy=Orphan, so its pods keep
    /// running and its volumes stay, and create it anew.
    #[arg(long)]
    pub recreate_statefulsets: bool,
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Kafka ready, connector and task state, consumer lag, dead letters, rows in the sink table.
    Status(PipelineStatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct PipelineStatusArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// When the sink lags: milliseconds between the two samples of its lag. Longer than the
    /// worker's offset commit interval (5 s), or a healthy sink looks stuck.
    #[arg(long, default_value_t = 6000)]
    pub lag_interval_ms: u64,
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
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::query::follow::parse_interval, requires = "follow")]
    pub interval: std::time::Duration,
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
