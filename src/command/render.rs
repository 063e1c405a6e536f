//! `iac render`: validate the inventory and write every generated file (atomically), or with
//! `--check` compare and show the diff.

use std::path::PathBuf;
use std::process::ExitCode;

use iac::{load_site, output, render};

use super::Error;
use super::common::{DEFAULT_OUT, InventoryArg};
use super::terminal::{err, out};

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

pub fn run(args: &RenderArgs) -> Result<ExitCode, Error> {
    let site = load_site(&args.inventory.inventory)?;
    let tree = render::render(&site)?;
    if args.check {
        return Ok(match output::diff_tree(&args.out, &tree)? {
            None => {
                out(&format!("{} is up to date ({} files)\n", args.out.display(), tree.len()));
                ExitCode::SUCCESS
            }
            Some(diff) => {
                out(&diff);
                err(&format!("{} is stale: run `iac render`\n", args.out.display()));
                ExitCode::FAILURE
            }
        });
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
