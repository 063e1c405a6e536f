//! `iac flows`: every flow the estate admits, as a table for people.

use std::process::ExitCode;

use iac::model::Targets;
use iac::{load_site, policy, render};

use super::Error;
use super::common::InventoryArg;
use super::terminal::out;

#[derive(Debug, clap::Args)]
pub struct FlowsArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Only this host's flows.
    #[arg(long)]
    pub host: Option<String>,
}

pub fn run(args: &FlowsArgs) -> Result<ExitCode, Error> {
    let site = load_site(&args.inventory.inventory)?;
    if let Some(name) = &args.host {
        site.select(&Targets::Named(vec![name.clone()]))?;
    }
    let flows = render::flows(&site);
    out(&policy::table(&flows, args.host.as_deref()));
    Ok(ExitCode::SUCCESS)
}
