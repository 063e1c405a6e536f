//! `iac render`: validate the inventory and write every generated file (atomically), or with
//! `--check` compare and show the diff, and check the encrypted secrets against the inventory
//! (`iac secrets check`): a file encrypted to other recipients than the inventory gives it
//! fails the check; a missing one is a warning (a fresh clone before `iac secrets init`;
//! `iac secrets check` and the deploy preflight refuse it).

use std::path::PathBuf;
use std::process::ExitCode;

use iac::reporter::Reporter;
use iac::secrets::{State, Store};
use iac::{load_site, output, render};

use super::Error;
use super::common::{DEFAULT_OUT, InventoryArg};
use super::terminal::{TERMINAL, err, out};

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
    /// The encrypted secrets that `--check` checks (secrets/NAME.age).
    #[arg(long, default_value = iac::secrets::DEFAULT_DIR)]
    pub secrets_dir: PathBuf,
}

pub fn run(args: &RenderArgs) -> Result<ExitCode, Error> {
    let site = load_site(&args.inventory.inventory)?;
    let tree = render::render(&site)?;
    if args.check {
        let tree_ok = match output::diff_tree(&args.out, &tree)? {
            None => {
                out(&format!("{} is up to date ({} files)\n", args.out.display(), tree.len()));
                true
            }
            Some(diff) => {
                out(&diff);
                err(&format!("{} is stale: run `iac render`\n", args.out.display()));
                false
            }
        };
        let mut secrets_ok = true;
        for status in Store::new(&site, &args.secrets_dir).check() {
            match status.state {
                State::Ok => {}
                State::Missing => TERMINAL.warning(&status.line()),
                _ => {
                    err(&format!("{}\n", status.line()));
                    secrets_ok = false;
                }
            }
        }
        return Ok(if tree_ok && secrets_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let outcome = output::write_tree(&args.out, &tree, args.force)?;
    if outcome.stale_removed > 0 {
        err(&format!("removed {} staging directories left by an interrupted render\n", outcome.stale_removed));
    }
    if outcome.written {
        let kept = outcome.files - outcome.new_files;
        out(&format!(
            "wrote {} of {} files to {} ({kept} unchanged, kept as they were)\n",
            outcome.new_files,
            outcome.files,
            args.out.display()
        ));
    } else {
        out(&format!("{} is up to date ({} files), nothing written\n", args.out.display(), outcome.files));
    }
    Ok(ExitCode::SUCCESS)
}
