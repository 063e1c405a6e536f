//! Reading `generated/k8s`: multi-document YAML parsed generically into `DynamicObject`s, so
//! applying does not depend on how the renderer builds them, and `connector.json`.

use std::path::{Path, PathBuf};

use kube::api::DynamicObject;
use serde::Deserialize;

use super::Error;

/// The files `iac apply` reads, in the order it applies them. `register-connector.yaml` (a Job
/// for kubectl users) is read but not applied: `iac apply` registers the connector itself, and
/// its objects only count as rendered when pruning. `kustomization.yaml` is not read.
pub use crate::render::k8s::{
    FILE_CONNECT as CONNECT, FILE_CONNECTOR as CONNECTOR, FILE_KAFKA as KAFKA, FILE_NAMESPACE as NAMESPACE,
    FILE_NETWORK_POLICY as NETWORK_POLICY, FILE_PRODUCER as PRODUCER, FILE_REGISTER as REGISTER,
};

#[derive(Debug, Clone)]
pub struct Manifests {
    pub dir: PathBuf,
    pub namespace: Vec<DynamicObject>,
    pub network_policy: Vec<DynamicObject>,
    pub kafka: Vec<DynamicObject>,
    pub connect: Vec<DynamicObject>,
    pub connector: Connector,
    pub register: Vec<DynamicObject>,
    pub producer: Vec<DynamicObject>,
}

impl Manifests {
    /// Every rendered object, applied by `iac apply` or not.
    pub fn all(&self) -> impl Iterator<Item = &DynamicObject> {
        [&self.namespace, &self.network_policy, &self.kafka, &self.connect, &self.register, &self.producer].into_iter().flatten()
    }
}

/// Kafka Connect's create-connector body: `{"name": ..., "config": {...}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connector {
    pub name: String,
    pub config: serde_json::Map<String, serde_json::Value>,
}

pub fn load(dir: &Path) -> Result<Manifests, Error> {
    let connector_path = dir.join(CONNECTOR);
    let text = read(&connector_path)?;
    let connector: Connector = serde_json::from_str(&text).map_err(|e| bad(&connector_path, e.to_string()))?;
    Ok(Manifests {
        dir: dir.to_owned(),
        namespace: load_yaml(&dir.join(NAMESPACE))?,
        network_policy: load_yaml(&dir.join(NETWORK_POLICY))?,
        kafka: load_yaml(&dir.join(KAFKA))?,
        connect: load_yaml(&dir.join(CONNECT))?,
        connector,
        register: load_yaml(&dir.join(REGISTER))?,
        producer: load_yaml(&dir.join(PRODUCER))?,
    })
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| bad(path, format!("{e} (run `iac render` first?)")))
}

fn bad(path: &Path, message: String) -> Error {
    Error::Manifest { path: path.to_owned(), message }
}

/// Every non-empty document of a YAML stream, each with apiVersion, kind and metadata.name.
pub fn load_yaml(path: &Path) -> Result<Vec<DynamicObject>, Error> {
    parse_yaml(&read(path)?).map_err(|message| bad(path, message))
}

pub fn parse_yaml(text: &str) -> Result<Vec<DynamicObject>, String> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
        let at = format!("document {}", i + 1);
        for field in ["apiVersion", "kind"] {
            if !doc.get(field).is_some_and(serde_json::Value::is_string) {
                return Err(format!("{at}: no {field}"));
            }
        }
        if !doc.pointer("/metadata/name").is_some_and(serde_json::Value::is_string) {
            return Err(format!("{at}: no metadata.name"));
        }
        out.push(serde_json::from_value(doc).map_err(|e| format!("{at}: {e}"))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml() {
        let objs = parse_yaml(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: kafka-headless\n  namespace: p\nspec:\n  clusterIP: None\n---\n# comment only\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: kafka\nspec:\n  replicas: 1\n",
        )
        .unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].types.as_ref().unwrap().kind, "Service");
        assert_eq!(objs[0].metadata.namespace.as_deref(), Some("p"));
        assert_eq!(objs[1].data["spec"]["replicas"], 1);
    }

    #[test]
    fn rejects_documents_without_identity() {
        assert_eq!(parse_yaml("apiVersion: v1\nmetadata:\n  name: x\n").unwrap_err(), "document 1: no kind");
        assert_eq!(parse_yaml("apiVersion: v1\nkind: Service\nmetadata: {}\n").unwrap_err(), "document 1: no metadata.name");
    }
}
