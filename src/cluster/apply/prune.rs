//! Pruning: what carries our labels in the pipeline's namespace but is no longer rendered is
//! deleted, after everything else applied.

use std::collections::HashSet;
use std::path::PathBuf;

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use kube::discovery;

use super::super::Error;
use super::super::manifests::Manifests;
use super::super::names::{LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_PART_OF};
use super::Outcome;
use super::objects::Applier;

/// The kinds the renderer emits (or emitted in an earlier version of the inventory) inside the
/// namespace: what pruning looks at. PersistentVolumeClaims are never pruned (they hold the
/// brokers' data), nor the Secret (iac creates it, it is not rendered).
pub const PRUNABLE: [(&str, &str); 7] = [
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "Job"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("policy/v1", "PodDisruptionBudget"),
];

/// The label selector of what iac applied for site `instance`: pruning (and `iac drift`) look
/// only at objects that carry it.
pub fn selector(instance: &str) -> String {
    format!("{}={},{}={},{LABEL_INSTANCE}={instance}", LABEL_MANAGED_BY.0, LABEL_MANAGED_BY.1, LABEL_PART_OF.0, LABEL_PART_OF.1)
}

/// The kind and name of every rendered object.
pub fn rendered(m: &Manifests) -> HashSet<(String, String)> {
    m.all().filter_map(|o| o.types.as_ref().map(|t| (t.kind.clone(), o.name_any()))).collect()
}

/// The objects of `kind` that `api` lists with iac's labels for site `instance` and that are not
/// `rendered`: what an apply prunes, and what `iac drift` reports as no longer rendered. A kind
/// the server does not serve (404) has none.
pub async fn unrendered(
    api: &Api<DynamicObject>,
    kind: &str,
    instance: &str,
    rendered: &HashSet<(String, String)>,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let list = match api.list(&ListParams::default().labels(&selector(instance))).await {
        Ok(l) => l,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(list.items.into_iter().filter(|o| !rendered.contains(&(kind.to_string(), o.name_any()))).collect())
}

impl Applier<'_> {
    /// Delete what carries our labels but is no longer rendered (a removed Service, the budget
    /// of a cluster shrunk to one broker, a renamed object), after everything else applied.
    pub(super) async fn prune(&mut self, m: &Manifests) -> Result<(), Error> {
        let rendered = rendered(m);
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
            for obj in unrendered(&api, kind, &self.instance, &rendered).await? {
                if !header {
                    self.report.result("== prune");
                    header = true;
                }
                let label = format!("{}/{}", kind.to_lowercase(), obj.name_any());
                if self.dry_run {
                    self.report.result(&format!("{label} would be pruned: no longer rendered (dry run)"));
                } else {
                    api.delete(&obj.name_any(), &DeleteParams::background()).await?;
                    self.report.result(&format!("{label} pruned: no longer rendered"));
                }
                self.summary.applied.push((label, Outcome::Pruned));
            }
        }
        Ok(())
    }
}
