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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::core::Status;
use kube::discovery::{self, ApiCapabilities, Scope};
use kube::{Client, Resource, ResourceExt};

use super::Error;
use super::conditions;
use super::connect::ConnectApi;
use super::manifests::{self, Manifests};
use super::names::{
    ANNOTATION_CONNECTOR, ANNOTATION_SECRET_VERSION, CONNECT_DEPLOYMENT, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_PART_OF,
    PASSWORD_KEY, PASSWORD_SECRET,
};
use super::wait::{self, Progress, Waits};
use crate::model::Site;

/// Where the database password for the `pipeline-postgres` Secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// A file holding the password (one trailing newline is dropped).
    File(PathBuf),
    /// An environment variable (the inventory's `pipeline.password_env`).
    Env(String),
}

impl PasswordSource {
    /// Read the password. Its value never appears in messages or output.
    pub fn read(&self) -> Result<String, Error> {
        let value = match self {
            Self::File(path) => {
                let mut text =
                    std::fs::read_to_string(path).map_err(|e| Error::Password(format!("cannot read {}: {e}", path.display())))?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                text
            }
            Self::Env(var) => std::env::var(var).map_err(|_| {
                Error::Password(format!("set the environment variable {var} (pipeline.password_env) or pass --password-file"))
            })?,
        };
        if value.is_empty() {
            return Err(Error::Password(format!("{} is empty", self.describe())));
        }
        Ok(value)
    }

    fn describe(&self) -> String {
        match self {
            Self::File(p) => p.display().to_string(),
            Self::Env(v) => format!("${v}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub dry_run: bool,
    pub waits: Waits,
    pub password: PasswordSource,
    /// Delete (orphaning pods and volumes) and re-create a StatefulSet whose change the API
    /// server refuses as touching a fixed field.
    pub recreate_statefulsets: bool,
}

/// The kinds the renderer emits (or emitted in an earlier version of the inventory) inside the
/// namespace: what pruning looks at. PersistentVolumeClaims are never pruned (they hold the
/// brokers' data), nor the Secret (iac creates it, it is not rendered).
const PRUNABLE: [(&str, &str); 7] = [
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "Job"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("policy/v1", "PodDisruptionBudget"),
];

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
    fn as_str(self) -> &'static str {
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

struct Applier {
    client: Client,
    namespace: String,
    instance: String,
    params: PatchParams,
    dry_run: bool,
    recreate_statefulsets: bool,
    waits: Waits,
    kinds: HashMap<String, (ApiResource, ApiCapabilities)>,
    summary: Summary,
}

pub async fn apply(client: &Client, site: &Site, dir: &Path, opts: &ApplyOptions) -> Result<Summary, Error> {
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
    let password = opts.password.read()?;
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    if opts.dry_run {
        params = params.dry_run();
        println!("server-side dry run (dryRun=All): nothing is persisted");
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
    println!(
        "{} objects applied, {changed} changed{not_checked}{pruned}{}",
        a.summary.applied_count(),
        if opts.dry_run { " (dry run)" } else { "" }
    );
    Ok(a.summary)
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

/// The StatefulSet fields a 422 says are fixed, or the "field is immutable" of other kinds.
fn immutable_fields(status: &Status) -> Vec<String> {
    let causes = status.details.iter().flat_map(|d| d.causes.iter());
    let mut out: Vec<String> = causes
        .filter(|c| {
            c.message.contains("field is immutable")
                || (c.reason == "FieldValueForbidden" && c.message.contains("updates to statefulset spec"))
        })
        .map(|c| c.field.clone())
        .collect();
    if out.is_empty() && status.message.contains("field is immutable") {
        out.push("(unnamed field)".into());
    }
    out
}

impl Applier {
    async fn stage(&mut self, stage: &str, objects: &[DynamicObject]) -> Result<(), Error> {
        println!("== {stage}");
        for obj in objects {
            self.apply_dynamic(obj).await?;
        }
        Ok(())
    }

    async fn resource(&mut self, obj: &DynamicObject) -> Result<(ApiResource, ApiCapabilities), Error> {
        let types = obj
            .types
            .as_ref()
            .ok_or_else(|| Error::Manifest { path: PathBuf::from(obj.name_any()), message: "no apiVersion/kind".into() })?;
        let key = format!("{}/{}", types.api_version, types.kind);
        if let Some(found) = self.kinds.get(&key) {
            return Ok(found.clone());
        }
        let gvk = GroupVersionKind::try_from(types).map_err(|e| Error::Manifest { path: PathBuf::from(&key), message: e.to_string() })?;
        let found = discovery::pinned_kind(&self.client, &gvk).await?;
        self.kinds.insert(key, found.clone());
        Ok(found)
    }

    async fn apply_dynamic(&mut self, obj: &DynamicObject) -> Result<(), Error> {
        let (ar, caps) = self.resource(obj).await?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                Api::namespaced_with(self.client.clone(), obj.metadata.namespace.as_deref().unwrap_or(&self.namespace), &ar)
            }
            Scope::Cluster => Api::all_with(self.client.clone(), &ar),
        };
        let label = format!("{}/{}", ar.kind.to_lowercase(), obj.name_any());
        match self.patch(&api, &obj.name_any(), obj, label.clone()).await {
            Err(Error::Kube(kube::Error::Api(s))) if s.code == 422 => self.refused(&api, &ar.kind, obj, label, &s).await,
            Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => Err(Error::Failed {
                what: format!("applying {label}"),
                reason: format!("{}: another field manager owns these fields and iac did not force", s.message),
            }),
            other => other,
        }
    }

    /// A 422 Invalid. Only an immutable field has a way through, and only for Jobs (a finished
    /// Job is history) and, when asked, StatefulSets; anything else is a real validation error.
    async fn refused(&mut self, api: &Api<DynamicObject>, kind: &str, obj: &DynamicObject, label: String, s: &Status) -> Result<(), Error> {
        let fields = immutable_fields(s);
        let refused = format!("the API server refused it: {}", super::describe(&kube::Error::Api(Box::new(s.clone()))));
        match kind {
            "Job" if !fields.is_empty() => self.replace_job(api, &obj.name_any(), obj, label, &s.message).await,
            "StatefulSet" if !fields.is_empty() && self.recreate_statefulsets => self.recreate_statefulset(api, obj, label).await,
            "StatefulSet" if !fields.is_empty() => Err(Error::Failed {
                what: format!("applying {label}"),
                reason: format!(
                    "{refused}\n  A StatefulSet's spec may change only in replicas, ordinals, template, updateStrategy, \
                     revisionHistoryLimit, persistentVolumeClaimRetentionPolicy and minReadySeconds; this change touches a field \
                     fixed at creation (volumeClaimTemplates, serviceName, podManagementPolicy, selector).\n  \
                     To apply it, run `iac apply --recreate-statefulsets`: it deletes {label} with propagationPolicy=Orphan \
                     (its pods keep running, its PersistentVolumeClaims and the data on them stay) and creates it anew; the new \
                     StatefulSet adopts the pods and rolls them. Existing claims keep their size and class: a changed \
                     volumeClaimTemplate applies to new claims only."
                ),
            }),
            _ => Err(Error::Failed { what: format!("applying {label}"), reason: refused }),
        }
    }

    /// Delete with orphan propagation (pods and claims stay), wait until gone, apply again.
    async fn recreate_statefulset(&mut self, api: &Api<DynamicObject>, obj: &DynamicObject, label: String) -> Result<(), Error> {
        let name = obj.name_any();
        if self.dry_run {
            println!("{label} would be deleted (orphaning its pods and volumes) and re-created: its change touches fixed fields (dry run)");
            self.summary.applied.push((label, Outcome::Configured));
            return Ok(());
        }
        println!("{label} re-creating: deleting it with propagationPolicy=Orphan (pods and volumes stay)");
        api.delete(&name, &DeleteParams::orphan()).await?;
        wait::until(&format!("{label} to be deleted"), self.waits, || async {
            Ok(match api.get_opt(&name).await? {
                None => Progress::Done(()),
                Some(_) => Progress::Pending("still present".into()),
            })
        })
        .await?;
        self.patch(api, &name, obj, label).await
    }

    /// A Job's pod template is immutable, so a re-rendered producer cannot be applied over the
    /// old one. A finished Job is deleted and applied anew; a running one is left alone.
    async fn replace_job(
        &mut self,
        api: &Api<DynamicObject>,
        name: &str,
        obj: &DynamicObject,
        label: String,
        message: &str,
    ) -> Result<(), Error> {
        let finished = api.get_opt(name).await?.is_some_and(|job| {
            job.data["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| matches!(c["type"].as_str(), Some("Complete" | "Failed")) && c["status"] == "True"))
        });
        if !finished {
            return Err(Error::Failed {
                what: format!("applying {label}"),
                reason: format!("{message}: the Job is still running; wait for it or delete it"),
            });
        }
        if self.dry_run {
            println!("{label} would be replaced: its template changed and Jobs are immutable (dry run)");
            self.summary.applied.push((label, Outcome::Configured));
            return Ok(());
        }
        println!("{label} replacing the finished Job: its template changed and Jobs are immutable");
        api.delete(name, &DeleteParams::background()).await?;
        wait::until(&format!("{label} to be deleted"), self.waits, || async {
            Ok(match api.get_opt(name).await? {
                None => Progress::Done(()),
                Some(_) => Progress::Pending("still present".into()),
            })
        })
        .await?;
        self.patch(api, name, obj, label).await
    }

    /// Apply the Secret; its resourceVersion afterwards (stamped on Connect's pod template).
    async fn secret(&mut self, password: String) -> Result<String, Error> {
        println!("== secret");
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(PASSWORD_SECRET.into()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([
                    ("app.kubernetes.io/part-of".to_owned(), "iac-pipeline".to_owned()),
                    ("app.kubernetes.io/managed-by".to_owned(), "iac".to_owned()),
                ])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(PASSWORD_KEY.to_owned(), ByteString(password.into_bytes()))])),
            ..Secret::default()
        };
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        self.patch(&api, PASSWORD_SECRET, &secret, format!("secret/{PASSWORD_SECRET}")).await?;
        Ok(api.get_opt(PASSWORD_SECRET).await?.and_then(|s| s.metadata.resource_version).unwrap_or_default())
    }

    /// The connector the live Connect Deployment was rendered for (its annotation), if any.
    async fn previous_connector(&self) -> Result<Option<String>, Error> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(api.get_opt(CONNECT_DEPLOYMENT).await?.and_then(|d| d.metadata.annotations).and_then(|a| a.get(ANNOTATION_CONNECTOR).cloned()))
    }

    /// Delete what carries our labels but is no longer rendered (a removed Service, the budget
    /// of a cluster shrunk to one broker, a renamed object), after everything else applied.
    async fn prune(&mut self, m: &Manifests) -> Result<(), Error> {
        let rendered: std::collections::HashSet<(String, String)> =
            m.all().filter_map(|o| o.types.as_ref().map(|t| (t.kind.clone(), o.name_any()))).collect();
        let selector = format!(
            "{}={},{}={},{LABEL_INSTANCE}={}",
            LABEL_MANAGED_BY.0, LABEL_MANAGED_BY.1, LABEL_PART_OF.0, LABEL_PART_OF.1, self.instance
        );
        let mut header = false;
        for (api_version, kind) in PRUNABLE {
            let gvk = GroupVersionKind::try_from(&kube::api::TypeMeta { api_version: api_version.into(), kind: kind.into() })
                .map_err(|e| Error::Manifest { path: PathBuf::from(kind), message: e.to_string() })?;
            let (ar, _) = match discovery::pinned_kind(&self.client, &gvk).await {
                Ok(found) => found,
                // The namespace may not exist yet in a dry run, the kind always does.
                Err(e) => return Err(e.into()),
            };
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.namespace, &ar);
            let list = match api.list(&ListParams::default().labels(&selector)).await {
                Ok(l) => l,
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => return Err(e.into()),
            };
            for obj in list.items.iter().filter(|o| !rendered.contains(&(kind.to_string(), o.name_any()))) {
                if !header {
                    println!("== prune");
                    header = true;
                }
                let label = format!("{}/{}", kind.to_lowercase(), obj.name_any());
                if self.dry_run {
                    println!("{label} would be pruned: no longer rendered (dry run)");
                } else {
                    api.delete(&obj.name_any(), &DeleteParams::background()).await?;
                    println!("{label} pruned: no longer rendered");
                }
                self.summary.applied.push((label, Outcome::Pruned));
            }
        }
        Ok(())
    }

    /// One server-side apply. The GET before it tells created / configured / unchanged apart.
    async fn patch<K>(
        &mut self,
        api: &Api<K>,
        name: &str,
        body: &(impl serde::Serialize + std::fmt::Debug),
        label: String,
    ) -> Result<(), Error>
    where
        K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    {
        let before = api.get_opt(name).await?;
        let after = match api.patch(name, &self.params, &Patch::Apply(body)).await {
            Ok(after) => after,
            // First deployment: a dry-run Namespace is not persisted, so the server cannot
            // dry-run what goes inside it. Say so rather than fail (`kubectl --dry-run=server`
            // fails here).
            Err(kube::Error::Api(s)) if self.dry_run && s.code == 404 => {
                println!("{label} not checked (dry run): {}", s.message);
                self.summary.applied.push((label, Outcome::NotChecked));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let outcome = match &before {
            None => Outcome::Created,
            Some(b) if self.dry_run => {
                if same_content(b, &after) {
                    Outcome::Unchanged
                } else {
                    Outcome::Configured
                }
            }
            Some(b) if b.meta().resource_version == after.meta().resource_version => Outcome::Unchanged,
            Some(_) => Outcome::Configured,
        };
        println!("{label} {}{}", outcome.as_str(), if self.dry_run { " (dry run)" } else { "" });
        self.summary.applied.push((label, outcome));
        Ok(())
    }

    /// Wait for every object of kind `K` in `objects` to satisfy `ready`. Skipped in a dry run:
    /// nothing was created to become ready.
    async fn wait_all<K>(&self, objects: &[DynamicObject], goal: &str, waits: Waits, ready: fn(&K) -> Progress<()>) -> Result<(), Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).to_string();
        for obj in objects.iter().filter(|o| o.types.as_ref().is_some_and(|t| t.kind == kind)) {
            let name = obj.name_any();
            let ns = obj.metadata.namespace.clone().unwrap_or_else(|| self.namespace.clone());
            let what = format!("{}/{name} in {ns} to {goal}", kind.to_lowercase());
            if self.dry_run {
                println!("(dry run) would wait for {what}");
                continue;
            }
            let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
            wait::until(&what, waits, || async {
                Ok(match api.get_opt(&name).await? {
                    None => Progress::Pending("not found".into()),
                    Some(o) => ready(&o),
                })
            })
            .await?;
        }
        Ok(())
    }

    async fn connector(&mut self, m: &Manifests, waits: Waits, previous: Option<&str>) -> Result<(), Error> {
        println!("== connector");
        let api = ConnectApi::new(self.client.clone(), &self.namespace);
        let name = &m.connector.name;
        if self.dry_run {
            if let Some(old) = previous.filter(|old| *old != name.as_str()) {
                println!("connector/{old} would be deleted: renamed to {name} (dry run)");
            }
            // Connect has no dry run for PUT; its validate endpoint is the closest thing. Before
            // the first real apply there is no Connect to ask: say so and go on.
            match api.validate(&m.connector).await {
                Ok(v) if v.error_count == 0 => println!("connector/{name} config valid (dry run: not registered)"),
                Ok(v) => {
                    return Err(Error::Failed { what: format!("validating connector {name}"), reason: v.errors().join("; ") });
                }
                Err(e) => println!("connector/{name} not validated: Kafka Connect is not reachable ({e})"),
            }
            return Ok(());
        }
        let created = api.put_config(&m.connector, waits).await?;
        println!("connector/{name} {}", if created { "created" } else { "configured" });
        let status = api.wait_running(name, waits).await?;
        println!("connector/{name} {}", status.summary());
        // A renamed connector: the old one would keep consuming the topic into the same table.
        if let Some(old) = previous.filter(|old| *old != name.as_str()) {
            if api.delete(old).await? {
                println!("connector/{old} deleted: renamed to {name}");
            } else {
                println!("connector/{old} already gone (renamed to {name})");
            }
        }
        Ok(())
    }
}

/// Equal once the fields the server maintains (resourceVersion, managedFields, generation,
/// status) are ignored: how a dry run tells "would change" from "would not".
fn same_content<K: serde::Serialize>(a: &K, b: &K) -> bool {
    let strip = |k: &K| {
        let mut v = serde_json::to_value(k).unwrap_or_default();
        if let Some(meta) = v.get_mut("metadata").and_then(serde_json::Value::as_object_mut) {
            for f in ["resourceVersion", "managedFields", "generation", "creationTimestamp", "uid"] {
                meta.remove(f);
            }
        }
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        v
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_file_drops_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        assert_eq!(PasswordSource::File(p.clone()).read().unwrap(), "s3cret");
        std::fs::write(&p, "\n").unwrap();
        let e = PasswordSource::File(p).read().unwrap_err().to_string();
        assert!(e.ends_with("is empty"), "{e}");
    }

    #[test]
    fn missing_env_names_the_variable_not_a_value() {
        let e = PasswordSource::Env("IAC_TEST_SURELY_UNSET_VAR".into()).read().unwrap_err().to_string();
        assert!(e.contains("IAC_TEST_SURELY_UNSET_VAR"), "{e}");
    }

    #[test]
    fn same_content_ignores_server_fields() {
        let a: DynamicObject = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "resourceVersion": "1"}, "spec": {"ports": [{"port": 1}]}}))
        .unwrap();
        let mut b = a.clone();
        b.metadata.resource_version = Some("2".into());
        assert!(same_content(&a, &b));
        b.data["spec"]["ports"][0]["port"] = 2.into();
        assert!(!same_content(&a, &b));
    }
}
