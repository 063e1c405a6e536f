//! kubeconfig / context -> `kube::Client`.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use super::Error;

/// Pick rustls's ring provider for the whole process. Two rustls users in one binary (kube and
/// a TLS PostgreSQL client) each enabling a different provider make rustls panic at the first
/// handshake unless the process installs one explicitly. Safe to call more than once.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client and the API server address it talks to (for messages that say where we looked).
#[derive(Clone)]
pub struct Connected {
    pub client: Client,
    pub server: String,
}

/// kube's read error quotes the path twice (`'"/x"'`); say it once.
fn read_kubeconfig(path: &Path) -> Result<Kubeconfig, Error> {
    Kubeconfig::read_from(path).map_err(|e| match e {
        KubeconfigError::ReadConfig(source, path) => Error::KubeconfigRead { path, source },
        other => Error::Kubeconfig(other),
    })
}

/// A client for the cluster named by `kubeconfig` (or `$KUBECONFIG`, `~/.kube/config`, or the
/// in-cluster service account) and `context` (or the kubeconfig's current context).
pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Connected, Error> {
    install_crypto_provider();
    let options = KubeConfigOptions { context: context.map(str::to_owned), ..KubeConfigOptions::default() };
    // $KUBECONFIG naming one file is read here too, so an unreadable one is reported plainly.
    let from_env =
        std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty() && !v.to_string_lossy().contains(':')).map(std::path::PathBuf::from);
    let mut config = match kubeconfig.map(Path::to_path_buf).or(from_env) {
        Some(path) => Config::from_custom_kubeconfig(read_kubeconfig(&path)?, &options).await?,
        None if context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer().await?,
    };
    // kube 5 retries 429/503/504 by default, up to 15 times with backoff growing to 1000s. The
    // service proxy answers 503 while Kafka Connect has no ready endpoint, so one status call
    // could sit silent for many minutes. Our waits retry themselves, bounded and saying so.
    config.default_retry = false;
    let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
    Ok(Connected { client: Client::try_from(config)?, server })
}
