//! Cluster drift (`iac drift --k8s`): what `iac apply` would change, like `kubectl diff`.
//!
//! Every object `iac apply` applies from `generated/k8s` (loaded by its own
//! [`manifests::load`], Connect's template stamped with the Secret's version as apply stamps it)
//! is sent as a server-side apply dry run (`dryRun=All`, field manager `iac`, force): the API
//! server merges it into the live object exactly as a real apply would (defaults, other
//! managers' fields, fields iac stops applying) and persists nothing. The fields that differ
//! between the live object and that result are the drift; what the server maintains
//! (`managedFields`, `resourceVersion`, `generation`, `uid`, `creationTimestamp`, `status`) is
//! left out. A field another manager added and iac does not apply is not drift: an apply would
//! keep it (as `kubectl diff` shows). Then, with apply's prune selector, the objects that carry
//! iac's labels and are no longer rendered.
//!
//! The Secret is checked for existence only, through its metadata: its value is never read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{self, ApiCapabilities, Scope};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::cluster::apply::prune::{self, PRUNABLE};
use crate::cluster::apply::stamp_secret_version;
use crate::cluster::names::{FIELD_MANAGER, PASSWORD_SECRET};
use crate::cluster::{Error, describe, manifests};
use crate::model::Site;
use crate::reporter::Reporter;

use super::report::{ClusterReport, FieldDiff, ObjectReport, ObjectState};

/// What the API server maintains on every object: never drift.
const SERVER_FIELDS: [&str; 6] = ["managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink"];

/// Compare the cluster with `dir` (`generated/k8s`).
pub async fn check(client: &Client, server: &str, site: &Site, dir: &Path, report: &dyn Reporter) -> Result<ClusterReport, Error> {
    let pipeline = site.pipeline.as_ref().ok_or(Error::Missing("pipeline"))?;
    let ns = pipeline.namespace.as_str();
    let m = manifests::load(dir)?;
    report.progress(&format!("cluster: server-side apply dry runs of {} against {server}", dir.display()));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret_version = secrets.get_metadata_opt(PASSWORD_SECRET).await?.map(|s| s.metadata.resource_version.unwrap_or_default());
    let connect = match &secret_version {
        Some(v) => stamp_secret_version(&m.connect, v),
        None => m.connect.clone(),
    };
    let mut d = Differ { client: client.clone(), namespace: ns.to_owned(), kinds: HashMap::new() };
    let mut objects = Vec::new();
    for obj in m.namespace.iter().chain(&m.network_policy) {
        objects.push(d.object(obj).await?);
    }
    objects.push(ObjectReport {
        object: format!("secret/{PASSWORD_SECRET}"),
        namespace: Some(ns.to_owned()),
        state: if secret_version.is_some() { ObjectState::InSync } else { ObjectState::Missing },
        fields: Vec::new(),
        message: None,
    });
    for obj in m.kafka.iter().chain(&connect).chain(&m.producer) {
        objects.push(d.object(obj).await?);
    }
    objects.extend(d.not_rendered(&m, &site.name).await?);
    Ok(ClusterReport { server: server.to_owned(), objects })
}

struct Differ {
    client: Client,
    namespace: String,
    kinds: HashMap<String, (ApiResource, ApiCapabilities)>,
}

impl Differ {
    async fn resource(&mut self, api_version: &str, kind: &str) -> Result<(ApiResource, ApiCapabilities), Error> {
        let key = format!("{api_version}/{kind}");
        if let Some(found) = self.kinds.get(&key) {
            return Ok(found.clone());
        }
        let gvk = GroupVersionKind::try_from(&kube::api::TypeMeta { api_version: api_version.into(), kind: kind.into() })
            .map_err(|e| Error::Manifest { path: PathBuf::from(&key), message: e.to_string() })?;
        let found = discovery::pinned_kind(&self.client, &gvk).await?;
        self.kinds.insert(key, found.clone());
        Ok(found)
    }

    /// One rendered object: its live state against a dry-run apply of it.
    async fn object(&mut self, obj: &DynamicObject) -> Result<ObjectReport, Error> {
        let types = obj
            .types
            .as_ref()
            .ok_or_else(|| Error::Manifest { path: PathBuf::from(obj.name_any()), message: "no apiVersion/kind".into() })?;
        let (ar, caps) = self.resource(&types.api_version, &types.kind).await?;
        let (api, namespace): (Api<DynamicObject>, _) = match caps.scope {
            Scope::Namespaced => {
                let ns = obj.metadata.namespace.clone().unwrap_or_else(|| self.namespace.clone());
                (Api::namespaced_with(self.client.clone(), &ns, &ar), Some(ns))
            }
            Scope::Cluster => (Api::all_with(self.client.clone(), &ar), None),
        };
        let name = obj.name_any();
        let mut out = ObjectReport {
            object: format!("{}/{name}", ar.kind.to_lowercase()),
            namespace,
            state: ObjectState::InSync,
            fields: Vec::new(),
            message: None,
        };
        let live = api.get_opt(&name).await?;
        let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
        match (api.patch(&name, &params, &Patch::Apply(obj)).await, live) {
            (Ok(_), None) => out.state = ObjectState::Missing,
            (Ok(after), Some(live)) => {
                out.fields = fields(&strip(&live), &strip(&after));
                if !out.fields.is_empty() {
                    out.state = ObjectState::Differs;
                }
            }
            // Its namespace does not exist (yet): nothing in it can be dry-run, nor exists.
            (Err(kube::Error::Api(s)), None) if s.code == 404 => out.state = ObjectState::Missing,
            (Err(kube::Error::Api(s)), _) if s.code == 422 => {
                out.state = ObjectState::Refused;
                out.message = Some(format!("{} (`iac apply` explains the way through)", describe(&kube::Error::Api(s))));
            }
            (Err(e), _) => return Err(e.into()),
        }
        Ok(out)
    }

    /// What carries iac's labels for this site and is not rendered: what `iac apply` prunes.
    async fn not_rendered(&mut self, m: &manifests::Manifests, instance: &str) -> Result<Vec<ObjectReport>, Error> {
        let rendered = prune::rendered(m);
        let mut out = Vec::new();
        for (api_version, kind) in PRUNABLE {
            let (ar, _) = self.resource(api_version, kind).await?;
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.namespace, &ar);
            for obj in prune::unrendered(&api, kind, instance, &rendered).await? {
                out.push(ObjectReport {
                    object: format!("{}/{}", kind.to_lowercase(), obj.name_any()),
                    namespace: Some(self.namespace.clone()),
                    state: ObjectState::NotRendered,
                    fields: Vec::new(),
                    message: None,
                });
            }
        }
        Ok(out)
    }
}

/// The object without what the server maintains.
fn strip(o: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in SERVER_FIELDS {
            meta.remove(f);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

/// The leaves that differ, by path (`spec.template.spec.containers[0].image`).
fn fields(live: &Value, after: &Value) -> Vec<FieldDiff> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    leaves(live, String::new(), &mut a);
    leaves(after, String::new(), &mut b);
    let paths: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    paths
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .map(|p| FieldDiff { path: p.clone(), live: a.get(p).cloned(), rendered: b.get(p).cloned() })
        .collect()
}

fn leaves(v: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let plain = k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                let p = match (plain, path.is_empty()) {
                    (true, true) => k.clone(),
                    (true, false) => format!("{path}.{k}"),
                    (false, _) => format!("{path}[{k:?}]"),
                };
                leaves(child, p, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, child) in items.iter().enumerate() {
                leaves(child, format!("{path}[{i}]"), out);
            }
        }
        other => {
            out.insert(path, other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_what_an_apply_changes_is_shown() {
        let live = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "kafka", "resourceVersion": "7", "generation": 3, "labels": {"app.kubernetes.io/name": "kafka"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "kafka", "image": "apache/kafka:4.0.0"}]}}},
            "status": {"readyReplicas": 3}});
        let after = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "kafka", "resourceVersion": "7", "generation": 4, "labels": {"app.kubernetes.io/name": "kafka"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "kafka", "image": "apache/kafka:4.1.0"}]}}}});
        let strip_v = |v: &Value| strip(&serde_json::from_value(v.clone()).unwrap());
        let f = fields(&strip_v(&live), &strip_v(&after));
        let shown: Vec<(String, String, String)> =
            f.iter().map(|d| (d.path.clone(), d.live.clone().unwrap().to_string(), d.rendered.clone().unwrap().to_string())).collect();
        assert_eq!(
            shown,
            [
                ("spec.replicas".into(), "3".into(), "1".into()),
                ("spec.template.spec.containers[0].image".into(), "\"apache/kafka:4.0.0\"".into(), "\"apache/kafka:4.1.0\"".into())
            ]
        );
        let mut labels = BTreeMap::new();
        leaves(&live, String::new(), &mut labels);
        assert!(labels.contains_key("metadata.labels[\"app.kubernetes.io/name\"]"), "{labels:?}");
    }
}
