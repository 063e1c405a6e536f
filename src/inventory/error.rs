//! What can be wrong with an inventory: located problems (file, line, column, dotted key),
//! all of them at once, and the file that cannot be read at all.

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

/// Why an inventory could not be loaded: unreadable, or invalid (exit 2, nothing written).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid inventory:\n{0}")]
    Invalid(#[from] InventoryErrors),
}
