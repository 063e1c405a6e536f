//! `postgresql.nix` for a database host: services.postgresql with TCP, the databases and their
//! owners, pg_hba lines printed from the same flows as the host's firewall, and passwords set
//! from files on the host at service start.

use askama::Template;

use crate::error::Error;
use crate::model::{Host, Site};
use crate::policy::Flows;

use super::filters;
use super::template_error;

#[derive(Template)]
#[template(path = "postgresql.nix")]
struct PostgresTemplate<'a> {
    host: &'a str,
    port: u16,
    databases: Vec<DbView>,
    hba: Vec<String>,
}

struct DbView {
    name: String,
    owner: String,
    owner_is_name: bool,
    credential_name: String,
    /// `NAME:PATH` for systemd's LoadCredential.
    credential: String,
}

pub fn module(site: &Site, flows: &Flows, host: &Host) -> Result<String, Error> {
    let file = format!("{}/postgresql.nix", host.name);
    let dbs: Vec<_> = site.databases.iter().filter(|d| d.host == host.name).collect();
    let port = dbs.first().map_or(5432, |d| d.port);
    if let Some(other) = dbs.iter().find(|d| d.port != port) {
        return Err(Error::Render {
            file,
            message: format!("database `{}` asks for port {} but this server listens on {port}", other.name, other.port),
        });
    }
    let databases = dbs
        .iter()
        .map(|d| {
            let credential_name = format!("{}-password", d.name);
            DbView {
                name: d.name.clone(),
                owner: d.owner.clone(),
                owner_is_name: d.owner == d.name,
                credential: format!("{credential_name}:{}", d.password_file),
                credential_name,
            }
        })
        .collect();
    let t = PostgresTemplate { host: &host.name, port, databases, hba: hba_lines(flows, host) };
    let mut out = t.render().map_err(|e| template_error(&file, e))?;
    out.push('\n');
    Ok(out)
}

/// One `host` line per source of every flow that carries a database grant to this host.
pub fn hba_lines(flows: &Flows, host: &Host) -> Vec<String> {
    let mut lines = vec!["# TYPE  DATABASE  USER  ADDRESS  METHOD".to_string()];
    for flow in flows.for_host(&host.name) {
        let Some(grant) = &flow.grant else { continue };
        for net in &flow.from.members {
            lines.push(format!("host {} {} {} scram-sha-256", grant.database, grant.user, net));
        }
    }
    lines
}
