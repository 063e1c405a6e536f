//! The aggregate error: every library module's own error, for `main` to print and to turn into
//! the exit code. Only the command layer knows them all; no library error names another
//! feature's.

use iac::deploy::DeployError;
use iac::drift::DriftError;
use iac::inventory::LoadError;
use iac::model::UnknownHost;
use iac::query::QueryError;
use iac::{cluster, output, render, secrets, simulate};

/// Exit code of an invalid inventory (nothing written) and of an unknown host name.
pub const EXIT_INVALID: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    UnknownHost(#[from] UnknownHost),
    #[error(transparent)]
    Render(#[from] render::Error),
    #[error(transparent)]
    Output(#[from] output::Error),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Simulate(#[from] simulate::Error),
    #[error("{0}")]
    Cluster(#[from] cluster::Error),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Secrets(#[from] secrets::Error),
    #[error("cannot read standard input: {0}")]
    Stdin(std::io::Error),
    #[error("cannot write standard output: {0}")]
    Stdout(std::io::Error),
    #[error(transparent)]
    Drift(#[from] DriftError),
    /// tokio's runtime (threads, the I/O driver) could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl Error {
    /// 2: the inventory is invalid or names no such host; `query`'s own codes (3 unreachable,
    /// 4 authentication, 5 missing); 1 for everything else. (3 is also a rolled-back deploy,
    /// which is an outcome, not an error.)
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Load(LoadError::Invalid(_))
            | Error::Simulate(simulate::Error::Load(LoadError::Invalid(_)))
            | Error::UnknownHost(_)
            | Error::Deploy(DeployError::UnknownHost(_))
            | Error::Drift(DriftError::UnknownHost(_)) => EXIT_INVALID,
            Error::Query(q) => q.exit_code(),
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iac::inventory::{InventoryError, InventoryErrors};

    fn invalid() -> LoadError {
        LoadError::Invalid(InventoryErrors(vec![InventoryError {
            file: "hosts/inventory.toml".into(),
            line: 3,
            column: 1,
            key: "name".into(),
            message: "bad".into(),
        }]))
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Load(invalid()).exit_code(), 2);
        assert_eq!(Error::Simulate(simulate::Error::Load(invalid())).exit_code(), 2);
        let unknown = || UnknownHost { name: "x".into(), known: "a".into() };
        assert_eq!(Error::UnknownHost(unknown()).exit_code(), 2);
        assert_eq!(Error::Drift(DriftError::UnknownHost(unknown())).exit_code(), 2);
        assert_eq!(Error::Deploy(DeployError::UnknownHost(unknown())).exit_code(), 2);
        let unreadable = LoadError::Read { path: "x".into(), source: std::io::Error::other("gone") };
        assert_eq!(Error::Load(unreadable).exit_code(), 1);
        let auth = QueryError::Auth { server: "h:5432".into(), user: "u".into(), message: "no".into() };
        assert_eq!(Error::Query(auth).exit_code(), 4);
        assert_eq!(Error::Runtime(std::io::Error::other("no threads")).exit_code(), 1);
    }

    #[test]
    fn a_runtime_failure_says_so_and_nothing_about_kafka_connect() {
        let e = Error::Runtime(std::io::Error::other("Resource temporarily unavailable")).to_string();
        assert_eq!(e, "cannot start the async runtime: Resource temporarily unavailable");
    }

    #[test]
    fn messages_are_the_library_errors_own() {
        assert_eq!(Error::Load(invalid()).to_string(), "invalid inventory:\nhosts/inventory.toml:3:1: name: bad");
    }
}
