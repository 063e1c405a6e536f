//! `iac pipeline status`: Kafka ready, connector and task state, consumer lag, dead letters,
//! rows in the sink table (`iac::cluster::status`; docs/cluster.md).

use std::process::ExitCode;
use std::time::Duration;

use iac::cluster::status::{self, StatusOptions};
use iac::model::Site;
use iac::{load_site, query};

use super::Error;
use super::common::{InventoryArg, KubeArgs, ReportFormat, json, kube_client, located, runtime};
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
}

pub fn run(command: &PipelineCommand) -> Result<ExitCode, Error> {
    match command {
        PipelineCommand::Status(args) => pipeline_status(args),
    }
}

/// The sink table's row count, read the way `iac query count` reads it.
async fn row_count(site: &Site) -> Result<i64, String> {
    query::sink_row_count(site, &TERMINAL).await.map_err(|e| e.to_string())
}

/// Exit 0 when Kafka is ready, the connector and its tasks run and keep up, no record went to
/// the dead-letter topic, and the row count is known.
fn pipeline_status(args: &PipelineStatusArgs) -> Result<ExitCode, Error> {
    let site = load_site(&args.inventory.inventory)?;
    let opts = StatusOptions { lag_interval: Duration::from_millis(args.lag_interval_ms) };
    let st = runtime(async {
        let c = kube_client(&args.kube).await?;
        status::status(&c.client, &site, &opts, row_count(&site)).await.map_err(|e| located(e, &site, &c.server))
    })?;
    match args.format {
        ReportFormat::Text => out(&st.text()),
        ReportFormat::Json => out(&format!("{}\n", json(&st))),
    }
    Ok(if st.healthy() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
