//! The connector: registered with `PUT /connectors/NAME/config` through the API server's
//! service proxy once Connect runs, then waited for until it and its tasks are RUNNING; a
//! renamed connector's predecessor is deleted. A dry run asks Connect's validate endpoint.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use super::super::Error;
use super::super::connect::ConnectApi;
use super::super::manifests::Manifests;
use super::super::names::{ANNOTATION_CONNECTOR, CONNECT_DEPLOYMENT};
use super::super::wait::Waits;
use super::objects::Applier;

impl Applier<'_> {
    /// The connector the live Connect Deployment was rendered for (its annotation), if any.
    pub(super) async fn previous_connector(&self) -> Result<Option<String>, Error> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        Ok(api.get_opt(CONNECT_DEPLOYMENT).await?.and_then(|d| d.metadata.annotations).and_then(|a| a.get(ANNOTATION_CONNECTOR).cloned()))
    }

    pub(super) async fn connector(&mut self, m: &Manifests, waits: Waits, previous: Option<&str>) -> Result<(), Error> {
        self.report.result("== connector");
        let api = ConnectApi::new(self.client.clone(), &self.namespace);
        let name = &m.connector.name;
        if self.dry_run {
            if let Some(old) = previous.filter(|old| *old != name.as_str()) {
                self.report.result(&format!("connector/{old} would be deleted: renamed to {name} (dry run)"));
            }
            // Connect has no dry run for PUT; its validate endpoint is the closest thing. Before
            // the first real apply there is no Connect to ask: say so and go on.
            match api.validate(&m.connector).await {
                Ok(v) if v.error_count == 0 => self.report.result(&format!("connector/{name} config valid (dry run: not registered)")),
                Ok(v) => {
                    return Err(Error::Failed { what: format!("validating connector {name}"), reason: v.errors().join("; ") });
                }
                Err(e) => self.report.result(&format!("connector/{name} not validated: Kafka Connect is not reachable ({e})")),
            }
            return Ok(());
        }
        let created = api.put_config(&m.connector, waits, self.report).await?;
        self.report.result(&format!("connector/{name} {}", if created { "created" } else { "configured" }));
        let status = api.wait_running(name, waits, self.report).await?;
        self.report.result(&format!("connector/{name} {}", status.summary()));
        // A renamed connector: the old one would keep consuming the topic into the same table.
        if let Some(old) = previous.filter(|old| *old != name.as_str()) {
            if api.delete(old).await? {
                self.report.result(&format!("connector/{old} deleted: renamed to {name}"));
            } else {
                self.report.result(&format!("connector/{old} already gone (renamed to {name})"));
            }
        }
        Ok(())
    }
}
