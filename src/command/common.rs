//! Arguments and helpers several subcommands share: the inventory, the cluster to talk to,
//! the report format, the async runtime.

use std::future::Future;
use std::path::PathBuf;

use iac::cluster::{self, Connected};
use iac::model::Site;

use super::Error;

pub const DEFAULT_INVENTORY: &str = "hosts/inventory.toml";
pub const DEFAULT_OUT: &str = "generated";

#[derive(Debug, clap::Args)]
pub struct InventoryArg {
    /// The inventory file.
    #[arg(long, default_value = DEFAULT_INVENTORY, env = "IAC_INVENTORY")]
    pub inventory: PathBuf,
}

/// The admin identity that decrypts the declared secrets (`iac secrets show`/`rekey`, `iac
/// apply`, `iac query`, `iac drift`): one option, one help text. Global, so that `iac query`
/// takes it before or after its subcommand like its other options.
#[derive(Debug, clap::Args)]
pub struct IdentityArg {
    /// The admin identity that decrypts the secrets: an age key file (AGE-SECRET-KEY-1…) or an
    /// unencrypted OpenSSH ed25519 private key [default: ~/.config/iac/age.key, else
    /// ~/.ssh/id_ed25519].
    #[arg(long, short = 'i', env = "IAC_IDENTITY", global = true)]
    pub identity: Option<PathBuf>,
}

/// Which cluster to talk to (kube-rs's usual lookup when neither is given).
#[derive(Debug, clap::Args)]
pub struct KubeArgs {
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

/// A multi-threaded tokio runtime for one command (`main` stays synchronous), running `f`.
pub fn runtime<T>(f: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(Error::Runtime)?;
    rt.block_on(f)
}

pub async fn kube_client(k: &KubeArgs) -> Result<Connected, Error> {
    Ok(cluster::connect_client(k.kubeconfig.as_deref(), k.context.as_deref()).await?)
}

/// An API server that did not answer at all becomes an error naming its address, with what to
/// check; kube's own text ("client error (Connect)") says neither.
pub fn located(e: cluster::Error, site: &Site, server: &str) -> Error {
    match e {
        cluster::Error::Kube(k) if cluster::is_transport(&k) => Error::Cluster(cluster::Error::Unreachable {
            server: server.to_owned(),
            cause: cluster::describe(&k),
            hint: cluster::reach_hint(site, server),
        }),
        other => Error::Cluster(other),
    }
}

/// A report as pretty JSON.
pub fn json<T: serde::Serialize>(value: &T) -> String {
    // Serializing our own plain structs cannot fail; fall back to an empty object regardless.
    serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into())
}
