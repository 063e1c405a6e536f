//! The `verify`, `apply` and `pipeline status` commands: load the inventory, connect, run, print.
//! Each builds its own tokio runtime, so `main.rs` stays synchronous.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use super::apply::{ApplyOptions, PasswordSource};
use super::status::StatusOptions;
use super::verify::VerifyOptions;
use super::wait::Waits;
use super::{Connected, apply as apply_mod, client, status, verify as verify_mod};
use crate::cli::{ApplyArgs, KubeArgs, PipelineStatusArgs, ReportFormat, VerifyArgs};
use crate::model::Site;
use crate::{Error, load_site};

fn runtime<T>(f: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Cluster(super::Error::Connect(format!("cannot start the async runtime: {e}"))))?;
    rt.block_on(f)
}

async fn kube_client(k: &KubeArgs) -> Result<Connected, Error> {
    Ok(client::connect(k.kubeconfig.as_deref(), k.context.as_deref()).await?)
}

/// An API server that did not answer at all becomes an error naming its address, with what to
/// check; kube's own text ("client error (Connect)") says neither.
fn located(e: super::Error, site: &Site, server: &str) -> Error {
    match e {
        super::Error::Kube(k) if super::is_transport(&k) => Error::Cluster(super::Error::Unreachable {
            server: server.to_owned(),
            cause: super::describe(&k),
            hint: super::reach_hint(site, server),
        }),
        other => Error::Cluster(other),
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    // Serializing our own plain structs cannot fail; fall back to an empty object regardless.
    serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into())
}

/// Exit 0 when every check passes (skips allowed), 1 otherwise.
pub fn verify(args: &VerifyArgs) -> Result<ExitCode, Error> {
    let site = load_site(&args.inventory.inventory)?;
    let report = runtime(async {
        let c = kube_client(&args.kube).await?;
        let opts = VerifyOptions {
            probe_image: args.probe_image.clone(),
            probe_namespace: args.probe_namespace.clone(),
            external_name: args.external_name.clone(),
            waits: Waits { timeout: Duration::from_secs(args.timeout), ..Waits::default() },
            server: c.server.clone(),
        };
        verify_mod::verify(&c.client, &site, &opts).await.map_err(|e| located(e, &site, &c.server))
    })?;
    match args.format {
        ReportFormat::Text => print!("{}", report.text()),
        ReportFormat::Json => println!("{}", json(&report)),
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub fn apply(args: &ApplyArgs) -> Result<ExitCode, Error> {
    let site = load_site(&args.inventory.inventory)?;
    let pipeline = site.pipeline.as_ref().ok_or(super::Error::Missing("pipeline"))?;
    let password = match &args.password_file {
        Some(path) => PasswordSource::File(path.clone()),
        None => PasswordSource::Env(pipeline.password_env.clone()),
    };
    let opts = ApplyOptions {
        dry_run: args.dry_run,
        waits: Waits { timeout: Duration::from_secs(args.timeout), ..Waits::default() },
        password,
        recreate_statefulsets: args.recreate_statefulsets,
    };
    let dir = args.generated.join(crate::render::k8s::DIR);
    runtime(async {
        let c = kube_client(&args.kube).await?;
        apply_mod::apply(&c.client, &site, &dir, &opts).await.map_err(|e| located(e, &site, &c.server))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The sink table's row count, read the way `iac query count` reads it.
async fn row_count(site: &crate::model::Site) -> Result<i64, String> {
    crate::query::sink_row_count(site).await.map_err(|e| e.to_string())
}

/// Exit 0 when Kafka is ready, the connector and its tasks run and keep up, no record went to
/// the dead-letter topic, and the row count is known.
pub fn pipeline_status(args: &PipelineStatusArgs) -> Result<ExitCode, Error> {
    let site = load_site(&args.inventory.inventory)?;
    let opts = StatusOptions { lag_interval: Duration::from_millis(args.lag_interval_ms) };
    let st = runtime(async {
        let c = kube_client(&args.kube).await?;
        status::status(&c.client, &site, &opts, row_count(&site)).await.map_err(|e| located(e, &site, &c.server))
    })?;
    match args.format {
        ReportFormat::Text => print!("{}", st.text()),
        ReportFormat::Json => println!("{}", json(&st)),
    }
    Ok(if st.healthy() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
