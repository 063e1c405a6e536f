//! Reading `hosts/inventory.toml`: the schema and the loader that keeps positions for errors.

pub mod load;
pub mod schema;

pub use load::{Source, load, parse};
