//! iac: one inventory → validated model → flows → rendered files.
//!
//! Data flows one way. `inventory` parses, `model` validates, `policy` derives the flows,
//! `render` turns model and flows into file contents, and `output` writes them. Everything
//! with side effects (processes, network, files) sits at the edges: `nix_eval`, `deploy`,
//! `simulate`, `cluster`, `query`. Each module has its own typed error; the command layer
//! (`src/command`, in the `iac` binary, not in this library) parses the command line, calls
//! these modules, prints, and turns errors into messages and exit codes. Nothing here knows
//! the command line, and nothing here prints: progress goes through a [`reporter::Reporter`].
//! `docs/ARCHITECTURE.md` draws the layers and the import graph.

pub mod cluster;
pub mod deploy;
pub mod escape;
pub mod inventory;
pub mod model;
pub mod nix_eval;
pub mod output;
pub mod password;
pub mod policy;
pub mod query;
pub mod render;
pub mod reporter;
pub mod simulate;
pub mod table;

#[cfg(test)]
mod architecture;

use std::path::Path;

use inventory::LoadError;
use model::Site;

/// Read, parse and validate an inventory file.
pub fn load_site(path: &Path) -> Result<Site, LoadError> {
    let (source, file) = inventory::load(path)?;
    Ok(model::validate(&source, file)?)
}
