//! `iac simulate`: prove the rendered firewalls in Linux network namespaces
//! (`iac::simulate`; docs/simulate.md). Exit 0 when every probe behaved as declared, 1 on any
//! mismatch.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use iac::simulate;

use super::Error;
use super::common::InventoryArg;
use super::terminal::TERMINAL;

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

pub fn run(args: &SimulateArgs) -> Result<ExitCode, Error> {
    let opts = simulate::Options {
        inventory: args.inventory.inventory.clone(),
        out: args.out.clone(),
        rulesets: args.ruleset.clone(),
        timeout: Duration::from_millis(args.timeout_ms),
        nix_eval: !args.skip_nix_eval,
    };
    let ok = simulate::run(&opts, &TERMINAL)?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
