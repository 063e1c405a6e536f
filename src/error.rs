//! Typed errors of the library. `main.rs` is the one place that turns them into messages and
//! exit codes for people.

use std::fmt;
use std::path::PathBuf;

/// One problem in the inventory, located by file, line, column and dotted key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {key}: {message}", file.display())]
pub struct InventoryError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

/// Every problem validation found, so a user fixes them in one pass rather than one per run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InventoryErrors(pub Vec<InventoryError>);

impl fmt::Display for InventoryErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid inventory:\n{0}")]
    Inventory(#[from] InventoryErrors),
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("unknown host `{name}` (the inventory has: {known})")]
    UnknownHost { name: String, known: String },
    #[error("rendering {file} failed: {message}")]
    Render { file: String, message: String },
    #[error(transparent)]
    K8s(#[from] crate::render::k8s::K8sError),
    #[error("refusing to replace {}: {reason}; pass --force if iac may replace it", path.display())]
    ForeignOutput { path: PathBuf, reason: String },
    #[error("refusing to write {}: {reason}", path.display())]
    OutputRefused { path: PathBuf, reason: String },
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
    #[error("simulate: {0}")]
    Simulate(#[from] crate::simulate::SimulateError),
    #[error("{0}")]
    Cluster(#[from] crate::cluster::Error),
    #[error(transparent)]
    Query(#[from] crate::query::QueryError),
    #[error(transparent)]
    NixEval(#[from] crate::nix_eval::NixEvalError),
}
