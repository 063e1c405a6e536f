//! The running cluster: verify its health, apply the generated pipeline manifests in dependency
//! order, register the Kafka Connect connector and report the pipeline's state.
//!
//! This is an edge of the program: it talks to the Kubernetes API (kube-rs) and, through the API
//! server's service proxy, to Kafka Connect's REST API. It reads the validated `Site` and the
//! files under `generated/k8s`; nothing here feeds back into rendering.

pub mod apply;
pub mod client;
pub mod conditions;
pub mod connect;
pub mod manifests;
pub mod status;
pub mod verify;
pub mod wait;

use std::path::PathBuf;
use std::time::Duration;

pub use client::{Connected, connect as connect_client, install_crypto_provider};

/// The object names `iac` relies on: the manifest renderer's own constants, so the two cannot
/// drift apart.
pub mod names {
    pub use crate::render::k8s::{ANNOTATION_CONNECTOR, ANNOTATION_SECRET_VERSION, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_PART_OF};
    pub use crate::render::k8s::{CONNECT as CONNECT_SERVICE, CONNECT as CONNECT_DEPLOYMENT, CONNECT_PORT, KAFKA as KAFKA_STATEFULSET};
    pub use crate::render::k8s::{KAFKA as KAFKA_CONTAINER, KAFKA_BIN, dlq_topic_of};
    pub use crate::render::k8s::{SECRET as PASSWORD_SECRET, SECRET_KEY as PASSWORD_KEY};
    /// The field manager of every server-side apply `iac` sends.
    pub const FIELD_MANAGER: &str = "iac";
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("cannot read the kubeconfig {}: {source}", path.display())]
    KubeconfigRead { path: PathBuf, source: std::io::Error },
    #[error("no cluster configuration (no kubeconfig and not inside a pod): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("Kubernetes API: {}", describe(.0))]
    Kube(#[from] kube::Error),
    /// The API server could not be reached at all: names where we looked and what to check.
    #[error("cannot reach the Kubernetes API server at {server}: {cause}\n  hint: {hint}")]
    Unreachable { server: String, cause: String, hint: String },
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

/// A kube error for people: an API answer as `CODE Reason: message` with its causes (not the
/// Debug dump of the Status), a transport error with its whole chain of causes (kube's own
/// text stops at "client error (Connect)").
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let mut out = format!("{} {}: {}", s.code, s.reason, s.message);
            let causes: Vec<String> = s
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .filter(|c| !s.message.contains(&c.message))
                .map(|c| if c.field.is_empty() { c.message.clone() } else { format!("{}: {}", c.field, c.message) })
                .collect();
            if !causes.is_empty() {
                out.push_str(&format!(" ({})", causes.join("; ")));
            }
            out
        }
        // kube's own prefix ("ServiceError: ") names its enum, not the problem.
        kube::Error::Service(inner) => chain(inner.as_ref()),
        kube::Error::HyperError(inner) => chain(inner),
        other => chain(other),
    }
}

/// An error and its sources, each once: "client error (Connect): tcp connect error: Connection
/// refused (os error 111)".
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// What to check when the API server does not answer, from the inventory.
pub fn reach_hint(site: &crate::model::Site, server: &str) -> String {
    let (name, address) = site
        .first_server()
        .map_or(("the k3s server".to_string(), "the server's address".to_string()), |h| (h.name.clone(), h.address.to_string()));
    format!(
        "is k3s running on {name} (systemctl status k3s)? The kubeconfig must name {address}:6443, not {server} if that \
         differs (k3s writes https://127.0.0.1:6443 into /etc/rancher/k3s/k3s.yaml), and this machine must be in \
         [access] admin, which {name}'s firewall admits on TCP 6443"
    )
}

/// Whether a kube error means the API server was not reached (no HTTP answer at all).
pub fn is_transport(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Service(_) | kube::Error::HyperError(_))
}

fn last_seen(last: &str) -> String {
    if last.is_empty() { String::new() } else { format!(" (last seen: {last})") }
}
