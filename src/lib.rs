//! iac: one inventory → validated model → flows → rendered files.
//!
//! Data flows one way. `inventory` parses, `model` validates, `policy` derives the flows,
//! `render` turns model and flows into file contents, and `output` writes them. Everything
//! with side effects (processes, network, files) sits at the edges.

pub mod cli;
pub mod cluster;
pub mod deploy;
pub mod error;
pub mod escape;
pub mod inventory;
pub mod model;
pub mod nix_eval;
pub mod output;
pub mod policy;
pub mod query;
pub mod render;
pub mod simulate;
pub mod table;

use std::path::Path;

pub use error::Error;
use model::Site;

/// Read, parse and validate an inventory file.
pub fn load_site(path: &Path) -> Result<Site, Error> {
    let (source, file) = inventory::load(path)?;
    Ok(model::validate(&source, file)?)
}
