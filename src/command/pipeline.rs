//! `iac pipeline status`: Kafka ready, connector and task state, consumer lag, dead letters,
//! rows in the sink table (`iac::cluster::status`; docs/cluster.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use iac::cluster::status::{self, StatusOptions};
use iac::model::Site;
use iac::query::credential::SecretsFlags;
use iac::{load_site, query};

use super::Error;
use super::common::{IdentityArg, InventoryArg, KubeArgs, ReportFormat, json, kube_client, located, runtime};
use super::terminal::{TERMINAL, out};

#[derive(Debug, clap::Subcommand)]
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
    /// The encrypted secrets (secrets/NAME.age): the row count logs in as the database owner
    /// with its declared secret when PGPASSWORD gives no password.
    #[arg(long, value_name = "DIR", default_value = iac::secrets::DEFAULT_DIR)]
    pub secrets_dir: PathBuf,
    #[command(flatten)]
    pub identity: IdentityArg,
}

pub fn run(command: &PipelineCommand) -> Result<ExitCode, Error> {
    match command {
        PipelineCommand::Status(args) => pipeline_status(args),
    }
}

/// The sink table's row count, read the way `iac query count` reads it (the same password order).
async fn row_count(site: &Site, args: &PipelineStatusArgs) -> Result<i64, String> {
    let secrets = SecretsFlags { dir: args.secrets_dir.clone(), identity: args.identity.identity.clone() };
    query::sink_row_count(site, Some(secrets), &TERMINAL).await.map_err(|e| e.to_string())
}

/// Exit 0 when Kafka is ready, the connector and its tasks run and keep up, no record went to
/// the dead-letter topic, and the row count is known.
fn pipeline_status(args: &PipelineStatusArgs) -> Result<ExitCode, Error> {
    let site = load_site(&args.inventory.inventory)?;
    let opts = StatusOptions { lag_interval: Duration::from_millis(args.lag_interval_ms) };
    let st = runtime(async {
        let c = kube_client(&args.kube).await?;
        status::status(&c.client, &site, &opts, row_count(&site, args)).await.map_err(|e| located(e, &site, &c.server))
    })?;
    match args.format {
        ReportFormat::Text => out(&st.text()),
        ReportFormat::Json => out(&format!("{}\n", json(&st))),
    }
    Ok(if st.healthy() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
