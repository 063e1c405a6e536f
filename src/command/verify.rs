//! `iac verify`: the cluster health checklist (`iac::cluster::verify`; docs/cluster.md).
//! Exit 0 when every check passes (skips allowed), 1 otherwise.

use std::process::ExitCode;
use std::time::Duration;

use iac::cluster::verify::{self as lib, VerifyOptions};
use iac::cluster::wait::Waits;
use iac::load_site;

use super::Error;
use super::common::{InventoryArg, KubeArgs, ReportFormat, json, kube_client, located, runtime};
use super::terminal::{TERMINAL, out};

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

pub fn run(args: &VerifyArgs) -> Result<ExitCode, Error> {
    let site = load_site(&args.inventory.inventory)?;
    let report = runtime(async {
        let c = kube_client(&args.kube).await?;
        let opts = VerifyOptions {
            probe_image: args.probe_image.clone(),
            probe_namespace: args.probe_namespace.clone(),
            external_name: args.external_name.clone(),
            waits: Waits { timeout: Duration::from_secs(args.timeout), ..Waits::default() },
            server: c.server.clone(),
        };
        lib::verify(&c.client, &site, &opts, &TERMINAL).await.map_err(|e| located(e, &site, &c.server))
    })?;
    match args.format {
        ReportFormat::Text => out(&report.text()),
        ReportFormat::Json => out(&format!("{}\n", json(&report))),
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
