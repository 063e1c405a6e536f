//! `iac drift`: what runs on the estate against what the inventory says (`iac::drift`;
//! docs/drift.md). Here: the arguments, the order of the parts (hosts over SSH in threads, then
//! PostgreSQL and the cluster on the async runtime), the report and the exit code: 0 all
//! compared and equal, 1 drift or a host that could not be compared, 2 an invalid inventory or
//! an unknown host.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use iac::drift::report::Report;
use iac::drift::{self as lib, Options};
use iac::model::{Role, Targets};
use iac::query::credential::SecretsFlags;
use iac::query::settings::Flags;
use iac::{deploy, load_site, render};

use super::Error;
use super::common::{DEFAULT_INVENTORY, DEFAULT_OUT, IdentityArg, KubeArgs, json, kube_client, located, runtime};
use super::terminal::{TERMINAL, out};

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(true).args(["hosts", "all", "local", "k8s"]))]
pub struct DriftArgs {
    /// Hosts to compare (names from the inventory): firewall and NixOS generation over SSH,
    /// PostgreSQL on database hosts.
    pub hosts: Vec<String>,
    /// Compare every host of the inventory.
    #[arg(long, conflicts_with = "hosts")]
    pub all: bool,
    /// Compare the ruleset of the kernel iac runs on with HOST's render, without SSH (run it on
    /// the host itself).
    #[arg(long, value_name = "HOST", conflicts_with_all = ["hosts", "all"])]
    pub local: Option<String>,
    /// Also compare the cluster: a server-side apply dry run of GENERATED/k8s, and what carries
    /// iac's labels but is no longer rendered.
    #[arg(long)]
    pub k8s: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The flake that defines `nixosConfigurations.<host>` (the generation to compare with).
    #[arg(long, default_value = ".")]
    pub flake: String,
    /// The inventory file [default: FLAKE/hosts/inventory.toml when FLAKE is a directory].
    #[arg(long, env = "IAC_INVENTORY")]
    pub inventory: Option<PathBuf>,
    /// The rendered tree; --k8s reads GENERATED/k8s [default: FLAKE/generated].
    #[arg(long)]
    pub generated: Option<PathBuf>,
    /// Do not build the hosts' systems: their generation is reported as "not built".
    #[arg(long)]
    pub no_build: bool,
    /// SSH connect timeout in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,
    /// Hosts read at the same time.
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// PostgreSQL: a libpq connection string or URL, over the inventory and PG* variables (no
    /// password in it).
    #[arg(long, value_name = "DSN")]
    pub dsn: Option<String>,
    /// PostgreSQL: a file holding only the password.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: the encrypted secrets (secrets/NAME.age); each database owner's password is
    /// its declared secret when neither --password-file nor PGPASSWORD gives one [default:
    /// FLAKE/secrets].
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    #[command(flatten)]
    pub identity: IdentityArg,
    /// PostgreSQL: seconds to wait for the connection [default: PGCONNECT_TIMEOUT or 10].
    #[arg(long, value_name = "SECS")]
    pub pg_connect_timeout: Option<u64>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Per host and part, one line per difference.
    Table,
    /// The report as one JSON document (docs/drift.md describes its shape).
    Json,
}

pub fn run(args: &DriftArgs) -> Result<ExitCode, Error> {
    let (flake, flake_dir) = deploy::resolve_flake(&args.flake)?;
    let base = flake_dir.as_deref().unwrap_or(Path::new(""));
    let site = load_site(&args.inventory.clone().unwrap_or_else(|| base.join(DEFAULT_INVENTORY)))?;
    let generated = args.generated.clone().unwrap_or_else(|| base.join(DEFAULT_OUT));
    let targets = if args.all {
        Some(Targets::All)
    } else if args.hosts.is_empty() {
        None
    } else {
        Some(Targets::Named(args.hosts.clone()))
    };
    let mut hosts = Vec::new();
    if let Some(name) = &args.local {
        hosts.push(lib::check_local(&site, name, &TERMINAL)?);
    }
    if let Some(targets) = &targets {
        let opts = Options {
            targets: targets.clone(),
            flake,
            build: !args.no_build,
            connect_timeout: Duration::from_secs(args.connect_timeout),
            jobs: usize::from(args.jobs),
        };
        hosts = lib::check_hosts(&site, &opts, &TERMINAL)?;
    }
    let secrets = SecretsFlags {
        dir: args.secrets_dir.clone().unwrap_or_else(|| base.join(iac::secrets::DEFAULT_DIR)),
        identity: args.identity.identity.clone(),
    };
    let flags = Flags {
        dsn: args.dsn.clone(),
        password_file: args.password_file.clone(),
        connect_timeout: args.pg_connect_timeout,
        secrets: Some(secrets),
    };
    let flows = render::flows(&site);
    // Database hosts among the selected ones (not with --local, which reads this machine only).
    let databases: Vec<usize> = if targets.is_some() {
        (0..hosts.len()).filter(|i| site.host(&hosts[*i].host).is_some_and(|h| h.has(Role::Postgresql))).collect()
    } else {
        Vec::new()
    };
    let cluster = if databases.is_empty() && !args.k8s {
        None
    } else {
        runtime(async {
            let checks = databases
                .iter()
                .filter_map(|i| site.host(&hosts[*i].host))
                .map(|h| lib::postgres::check(&site, &flows, h, &flags, &TERMINAL));
            let results = futures::future::join_all(checks).await;
            for (i, r) in databases.iter().zip(results) {
                hosts[*i].postgres = Some(r);
            }
            if !args.k8s {
                return Ok(None);
            }
            let c = kube_client(&args.kube).await?;
            let dir = generated.join(render::k8s::DIR);
            let report =
                lib::cluster::check(&c.client, &c.server, &site, &dir, &TERMINAL).await.map_err(|e| located(e, &site, &c.server))?;
            Ok(Some(report))
        })?
    };
    let report = Report::new(hosts, cluster);
    match args.format {
        Format::Table => out(&report.text()),
        Format::Json => out(&format!("{}\n", json(&report))),
    }
    Ok(if report.clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
