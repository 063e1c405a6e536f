//! The running cluster: verify its health, apply the generated pipeline manifests in dependency
//! order, register the Kafka Connect connector and report the pipeline's state.
//!
//! This is an edge of the program: it talks to the Kubernetes API (kube-rs) and, through the API
//! server's service proxy, to Kafka Connect's REST API. It reads the validated `Site` and the
//! files under `generated/k8s`; nothing here feeds back into rendering.

pub mod apply;
pub mod client;
pub mod command;
pub mod conditions;
pub mod connect;
pub mod manifests;
pub mod status;
pub mod verify;
pub mod wait;

use std::path::PathBuf;
use std::time::Duration;

pub use client::{connect as connect_client, install_crypto_provider};

/// The object names `iac` relies on: the manifest renderer's own constants, so the two cannot
/// drift apart.
pub mod names {
    pub use crate::render::k8s::{CONNECT as CONNECT_SERVICE, CONNECT_PORT, KAFKA as KAFKA_STATEFULSET};
    pub use crate::render::k8s::{SECRET as PASSWORD_SECRET, SECRET_KEY as PASSWORD_KEY};
    /// The field manager of every server-side apply `iac` sends.
    pub const FIELD_MANAGER: &str = "iac";
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("no cluster configuration (no kubeconfig and not inside a pod): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{}: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("timed out after {}s waiting for {what}{}", after.as_secs(), last_seen(last))]
    Timeout { what: String, after: Duration, last: String },
    #[error("{what} failed: {reason}")]
    Failed { what: String, reason: String },
    #[error("Kafka Connect REST API: {0}")]
    Connect(String),
    #[error("database password for the `pipeline-postgres` Secret: {0}")]
    Password(String),
    #[error("the inventory has no [{0}] section")]
    Missing(&'static str),
}

fn last_seen(last: &str) -> String {
    if last.is_empty() { String::new() } else { format!(" (last seen: {last})") }
}
