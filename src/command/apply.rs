//! `iac apply`: server-side apply of `generated/k8s` in dependency order, the connector, the
//! producer, pruning (`iac::cluster::apply`; docs/cluster.md). Each object's line goes to
//! stdout as it happens, waits to stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use iac::cluster::apply::{self as lib, ApplyOptions};
use iac::cluster::wait::Waits;
use iac::password::PasswordSource;
use iac::{cluster, load_site, render};

use super::Error;
use super::common::{DEFAULT_OUT, IdentityArg, InventoryArg, KubeArgs, kube_client, located, runtime};
use super::terminal::TERMINAL;

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
    /// Read the database password from this file instead of its declared secret (or the
    /// variable pipeline.password_env names, when it is set).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// The encrypted secrets (secrets/NAME.age).
    #[arg(long, default_value = iac::secrets::DEFAULT_DIR)]
    pub secrets_dir: PathBuf,
    #[command(flatten)]
    pub identity: IdentityArg,
    /// Seconds each wait (Kafka, Connect, connector, producer) may take.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// When a StatefulSet change touches a field the API server keeps fixed (volumeClaimTemplates,
    /// serviceName, ...): delete the StatefulSet with propagationPolicy=Orphan, so its pods keep
    /// running and its volumes stay, and create it anew.
    #[arg(long)]
    pub recreate_statefulsets: bool,
}

pub fn run(args: &ApplyArgs) -> Result<ExitCode, Error> {
    let site = load_site(&args.inventory.inventory)?;
    let pipeline = site.pipeline.as_ref().ok_or(cluster::Error::Missing("pipeline"))?;
    // The database's declared secret, unless overridden: --password-file, else the variable
    // pipeline.password_env names when it is set.
    let database = site.database(&pipeline.database).ok_or(cluster::Error::Missing("pipeline database"))?;
    let password = match &args.password_file {
        Some(path) => PasswordSource::File(path.clone()),
        None if std::env::var_os(&pipeline.password_env).is_some() => PasswordSource::Env(pipeline.password_env.clone()),
        None => PasswordSource::Secret {
            file: iac::secrets::file(&args.secrets_dir, &database.password),
            identity: args.identity.identity.clone(),
        },
    };
    let declared = lib::declared_secrets(&site, &args.secrets_dir, args.identity.identity.as_deref())?;
    let opts = ApplyOptions {
        dry_run: args.dry_run,
        waits: Waits { timeout: Duration::from_secs(args.timeout), ..Waits::default() },
        password,
        declared,
        recreate_statefulsets: args.recreate_statefulsets,
    };
    let dir = args.generated.join(render::k8s::DIR);
    runtime(async {
        let c = kube_client(&args.kube).await?;
        lib::apply(&c.client, &site, &dir, &opts, &TERMINAL).await.map_err(|e| located(e, &site, &c.server))
    })?;
    Ok(ExitCode::SUCCESS)
}
