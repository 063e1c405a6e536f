//! Which hosts a command acts on. `iac deploy`, `iac drift` and `iac flows --host` take host
//! names from the command line and resolve them here, so an unknown name reads the same (and
//! exits the same) in each.

use super::{Host, Site};

/// The hosts named on a command line, or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every host of the inventory, in its order.
    All,
    /// These, by name, each once, in the order given.
    Named(Vec<String>),
}

/// A host name the inventory does not declare.
#[derive(Debug, thiserror::Error)]
#[error("unknown host `{name}` (the inventory has: {known})")]
pub struct UnknownHost {
    pub name: String,
    /// The declared names, for the message.
    pub known: String,
}

impl Site {
    /// The hosts `targets` names (each once, in the order given) or all of them (inventory
    /// order); the first unknown name is an error.
    pub fn select(&self, targets: &Targets) -> Result<Vec<&Host>, UnknownHost> {
        let names = match targets {
            Targets::All => return Ok(self.hosts.iter().collect()),
            Targets::Named(names) => names,
        };
        let mut hosts: Vec<&Host> = Vec::new();
        for name in names {
            let host = self.host(name).ok_or_else(|| UnknownHost {
                name: name.clone(),
                known: self.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", "),
            })?;
            if !hosts.iter().any(|h| h.name == host.name) {
                hosts.push(host);
            }
        }
        Ok(hosts)
    }
}
