//! Reading `hosts/inventory.toml`: the schema and the loader that keeps positions for errors.

mod error;
pub mod load;
pub mod schema;

pub use error::{InventoryError, InventoryErrors, LoadError};
pub use load::{Source, load, parse};
