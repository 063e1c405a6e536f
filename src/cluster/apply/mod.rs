//! `iac apply`: server-side apply of `generated/k8s` in dependency order, with a readiness wait
//! after each stage, then the connector registration, the producer Job, and the pruning of what
//! is no longer rendered.
//!
//! Order: Namespace -> NetworkPolicies (before any pod exists) -> Secret -> Kafka (wait for its
//! StatefulSets) -> Connect (wait for its Deployments) -> connector (PUT, wait RUNNING; delete a
//! renamed one) -> producer (wait for its Jobs) -> prune. Every apply is a server-side apply with
//! field manager `iac` and `force`: `iac` is the owner of every field it sets, so a conflicting
//! hand edit (kubectl edit) is taken back rather than reported as a 409. Applying twice sends the
//! same patches and the API server changes nothing (same resourceVersion).
//!
//! A 422 is read from kube-rs's `Error::Api` (the API server's Status: `reason: Invalid` and
//! `details.causes[]` with the field). Only a Job's "field is immutable" leads to delete and
//! re-create; a StatefulSet's fixed fields do only with `--recreate-statefulsets`; anything else
//! is explained and stops the apply.
//!
//! `objects` applies one object (and takes the 422 paths), `connector` registers the
//! connector through Kafka Connect's REST API, `prune` deletes what is no longer rendered;
//! every line of what happened goes to a [`Reporter`] as a result line.

mod connector;
mod objects;
mod prune;

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DynamicObject, PatchParams};
use kube::{Client, ResourceExt};

use super::Error;
use super::conditions;
use super::manifests;
use super::names::{ANNOTATION_SECRET_VERSION, CONNECT_DEPLOYMENT, FIELD_MANAGER};
use super::wait::Waits;
use crate::model::Site;
use crate::password::{PasswordError, PasswordSource};
use crate::reporter::Reporter;

use objects::Applier;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub dry_run: bool,
    pub waits: Waits,
    pub password: PasswordSource,
    /// Delete (orphaning pods and volumes) and re-create a StatefulSet whose change the API
    /// server refuses as touching a fixed field.
    pub recreate_statefulsets: bool,
}

/// What server-side apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    /// Dry run only: the object's namespace does not exist yet, so the API server cannot
    /// dry-run it (it answers 404 for the namespace).
    NotChecked,
    /// Deleted because it is no longer rendered.
    Pruned,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Configured => "configured",
            Self::Unchanged => "unchanged",
            Self::NotChecked => "not checked",
            Self::Pruned => "pruned",
        }
    }
}

/// One line per applied object, in order: `kind/name outcome`.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub applied: Vec<(String, Outcome)>,
}

impl Summary {
    pub fn changed(&self) -> usize {
        self.applied.iter().filter(|(_, o)| matches!(o, Outcome::Created | Outcome::Configured)).count()
    }

    pub fn pruned(&self) -> usize {
        self.applied.iter().filter(|(_, o)| *o == Outcome::Pruned).count()
    }

    /// Objects sent to the API server (pruned ones are not applied).
    pub fn applied_count(&self) -> usize {
        self.applied.iter().filter(|(_, o)| *o != Outcome::Pruned).count()
    }

    pub fn not_checked(&self) -> usize {
        self.applied.iter().filter(|(_, o)| *o == Outcome::NotChecked).count()
    }
}

/// Apply `dir` (the rendered `generated/k8s`) to the cluster; see the module comment.
pub async fn apply(client: &Client, site: &Site, dir: &Path, opts: &ApplyOptions, report: &dyn Reporter) -> Result<Summary, Error> {
    let pipeline = site.pipeline.as_ref().ok_or(Error::Missing("pipeline"))?;
    let m = manifests::load(dir)?;
    if m.connector.name != pipeline.connect.connector {
        return Err(Error::Manifest {
            path: dir.join(manifests::CONNECTOR),
            message: format!(
                "names connector `{}` but the inventory says `{}`: run `iac render`",
                m.connector.name, pipeline.connect.connector
            ),
        });
    }
    // Before touching the cluster: a missing password must not leave a half-applied pipeline.
    let password = read_password(&opts.password)?;
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    if opts.dry_run {
        params = params.dry_run();
        report.result("server-side dry run (dryRun=All): nothing is persisted");
    }
    let mut a = Applier {
        client: client.clone(),
        namespace: pipeline.namespace.clone(),
        instance: site.name.clone(),
        params,
        dry_run: opts.dry_run,
        recreate_statefulsets: opts.recreate_statefulsets,
        waits: opts.waits,
        kinds: HashMap::new(),
        summary: Summary::default(),
        report,
    };
    a.stage("namespace", &m.namespace).await?;
    // Before any pod: the pipeline's pods never run unprotected.
    a.stage("network policies", &m.network_policy).await?;
    let secret_version = a.secret(password).await?;
    a.stage("kafka", &m.kafka).await?;
    a.wait_all::<StatefulSet>(&m.kafka, "be ready", opts.waits, conditions::statefulset).await?;
    let previous_connector = a.previous_connector().await?;
    let connect = stamp_secret_version(&m.connect, &secret_version);
    a.stage("connect", &connect).await?;
    a.wait_all::<Deployment>(&m.connect, "be ready", opts.waits, conditions::deployment).await?;
    a.connector(&m, opts.waits, previous_connector.as_deref()).await?;
    a.stage("producer", &m.producer).await?;
    a.wait_all::<Job>(&m.producer, "complete", opts.waits, conditions::job).await?;
    a.prune(&m).await?;
    let changed = a.summary.changed();
    let not_checked = match a.summary.not_checked() {
        0 => String::new(),
        n => format!(", {n} not checked (their namespace does not exist yet)"),
    };
    let pruned = match a.summary.pruned() {
        0 => String::new(),
        n => format!(", {n} pruned"),
    };
    report.result(&format!(
        "{} objects applied, {changed} changed{not_checked}{pruned}{}",
        a.summary.applied_count(),
        if opts.dry_run { " (dry run)" } else { "" }
    ));
    Ok(a.summary)
}

/// The password for the Secret, read before anything is sent; its value never appears in a
/// message.
fn read_password(source: &PasswordSource) -> Result<String, Error> {
    source.read().map_err(|e| match e {
        PasswordError::Unset(var) => {
            Error::Password(format!("set the environment variable {var} (pipeline.password_env) or pass --password-file"))
        }
        other => Error::Password(other.to_string()),
    })
}

/// Connect reads the password at start, so a rotated password must restart it: the Secret's
/// resourceVersion (which changes whenever the Secret does, and says nothing about the value,
/// unlike a hash of a short password would) goes on Connect's pod template.
fn stamp_secret_version(objects: &[DynamicObject], version: &str) -> Vec<DynamicObject> {
    objects
        .iter()
        .cloned()
        .map(|mut o| {
            let is_connect = o.types.as_ref().is_some_and(|t| t.kind == "Deployment") && o.name_any() == CONNECT_DEPLOYMENT;
            if is_connect && let Some(template) = o.data.pointer_mut("/spec/template") {
                let meta = &mut template["metadata"];
                if !meta.is_object() {
                    *meta = serde_json::json!({});
                }
                if !meta["annotations"].is_object() {
                    meta["annotations"] = serde_json::json!({});
                }
                meta["annotations"][ANNOTATION_SECRET_VERSION] = serde_json::Value::String(version.to_owned());
            }
            o
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_errors_say_where_to_put_it() {
        let e = read_password(&PasswordSource::Env("IAC_TEST_SURELY_UNSET_VAR".into())).unwrap_err().to_string();
        assert_eq!(
            e,
            "database password for the `pipeline-postgres` Secret: set the environment variable IAC_TEST_SURELY_UNSET_VAR \
             (pipeline.password_env) or pass --password-file"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "\n").unwrap();
        let e = read_password(&PasswordSource::File(p.clone())).unwrap_err().to_string();
        assert_eq!(e, format!("database password for the `pipeline-postgres` Secret: {} is empty", p.display()));
    }

    #[test]
    fn only_connects_pod_template_gets_the_secret_version() {
        let objects: Vec<DynamicObject> = serde_json::from_value(serde_json::json!([
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": CONNECT_DEPLOYMENT}, "spec": {"template": {"spec": {}}}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "other"}, "spec": {"template": {"spec": {}}}}
        ]))
        .unwrap();
        let stamped = stamp_secret_version(&objects, "42");
        assert_eq!(stamped[0].data["spec"]["template"]["metadata"]["annotations"][ANNOTATION_SECRET_VERSION], "42");
        assert_eq!(stamped[1].data, objects[1].data);
    }
}
