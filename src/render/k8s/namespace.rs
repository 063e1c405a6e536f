//! The pipeline's namespace.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Component, Ctx, FILE_NAMESPACE, K8sError, Object, yaml};

pub(super) fn render(ctx: &Ctx) -> Result<String, K8sError> {
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(ctx.ns().to_string()), labels: Some(ctx.labels(Component::Namespace)), ..Default::default() },
        ..Default::default()
    };
    yaml(FILE_NAMESPACE, &[Object::Namespace(ns)])
}
