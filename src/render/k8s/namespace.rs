//! The pipeline's namespace, with the Pod Security admission level it enforces.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Component, Ctx, FILE_NAMESPACE, K8sError, Object, yaml};

/// Pod Security admission (built into the API server since 1.25) refuses, in this namespace, any
/// pod that is not `restricted`: non-root by number, no privilege escalation, every capability
/// dropped, the runtime's seccomp profile, only ephemeral/configMap/secret/PVC volumes. Every
/// pod the renderers emit meets it (tests/it/k8s_manifests.rs checks each against the rules).
pub const POD_SECURITY_LEVEL: &str = "restricted";

pub(super) fn render(ctx: &Ctx) -> Result<String, K8sError> {
    let mut labels = ctx.labels(Component::Namespace);
    labels.insert("pod-security.kubernetes.io/enforce".into(), POD_SECURITY_LEVEL.into());
    labels.insert("pod-security.kubernetes.io/enforce-version".into(), "latest".into());
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(ctx.ns().to_string()), labels: Some(labels), ..Default::default() },
        ..Default::default()
    };
    yaml(FILE_NAMESPACE, &[Object::Namespace(ns)])
}
