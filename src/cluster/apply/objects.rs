//! One object at a time: server-side apply (created / configured / unchanged told apart by
//! the GET before it), the Secret, the readiness waits, and the 422 paths (a finished Job is
//! replaced; a StatefulSet's fixed fields only with `--recreate-statefulsets`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::core::Status;
use kube::discovery::{self, ApiCapabilities, Scope};
use kube::{Client, Resource, ResourceExt};

use super::super::Error;
use super::super::names::{PASSWORD_KEY, PASSWORD_SECRET};
use super::super::wait::{self, Progress, Waits};
use super::{Outcome, Summary};
use crate::reporter::Reporter;

/// The state of one `iac apply`: the client, how to patch, what was discovered, what happened.
pub(super) struct Applier<'r> {
    pub(super) client: Client,
    pub(super) namespace: String,
    pub(super) instance: String,
    pub(super) params: PatchParams,
    pub(super) dry_run: bool,
    pub(super) recreate_statefulsets: bool,
    pub(super) waits: Waits,
    pub(super) kinds: HashMap<String, (ApiResource, ApiCapabilities)>,
    pub(super) summary: Summary,
    pub(super) report: &'r dyn Reporter,
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

impl Applier<'_> {
    pub(super) async fn stage(&mut self, stage: &str, objects: &[DynamicObject]) -> Result<(), Error> {
        self.report.result(&format!("== {stage}"));
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
        let refused = format!("the API server refused it: {}", super::super::describe(&kube::Error::Api(Box::new(s.clone()))));
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
            self.report.result(&format!(
                "{label} would be deleted (orphaning its pods and volumes) and re-created: its change touches fixed fields (dry run)"
            ));
            self.summary.applied.push((label, Outcome::Configured));
            return Ok(());
        }
        self.report.result(&format!("{label} re-creating: deleting it with propagationPolicy=Orphan (pods and volumes stay)"));
        api.delete(&name, &DeleteParams::orphan()).await?;
        wait::until(&format!("{label} to be deleted"), self.waits, self.report, || async {
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
            self.report.result(&format!("{label} would be replaced: its template changed and Jobs are immutable (dry run)"));
            self.summary.applied.push((label, Outcome::Configured));
            return Ok(());
        }
        self.report.result(&format!("{label} replacing the finished Job: its template changed and Jobs are immutable"));
        api.delete(name, &DeleteParams::background()).await?;
        wait::until(&format!("{label} to be deleted"), self.waits, self.report, || async {
            Ok(match api.get_opt(name).await? {
                None => Progress::Done(()),
                Some(_) => Progress::Pending("still present".into()),
            })
        })
        .await?;
        self.patch(api, name, obj, label).await
    }

    /// Apply the Secret; its resourceVersion afterwards (stamped on Connect's pod template).
    pub(super) async fn secret(&mut self, password: String) -> Result<String, Error> {
        self.report.result("== secret");
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

    /// One server-side apply. The GET before it tells created / configured / unchanged apart.
    pub(super) async fn patch<K>(
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
                self.report.result(&format!("{label} not checked (dry run): {}", s.message));
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
        self.report.result(&format!("{label} {}{}", outcome.as_str(), if self.dry_run { " (dry run)" } else { "" }));
        self.summary.applied.push((label, outcome));
        Ok(())
    }

    /// Wait for every object of kind `K` in `objects` to satisfy `ready`. Skipped in a dry run:
    /// nothing was created to become ready.
    pub(super) async fn wait_all<K>(
        &self,
        objects: &[DynamicObject],
        goal: &str,
        waits: Waits,
        ready: fn(&K) -> Progress<()>,
    ) -> Result<(), Error>
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
                self.report.result(&format!("(dry run) would wait for {what}"));
                continue;
            }
            let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
            wait::until(&what, waits, self.report, || async {
                Ok(match api.get_opt(&name).await? {
                    None => Progress::Pending("not found".into()),
                    Some(o) => ready(&o),
                })
            })
            .await?;
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
