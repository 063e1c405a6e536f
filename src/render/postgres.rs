//! `postgresql.nix` for a database host: services.postgresql with TCP, the databases and their
//! owners, pg_hba lines printed from the same flows as the host's firewall, and passwords set
//! from files on the host at service start.

use askama::Template;

use super::Error;
use crate::model::{Host, Site};
use crate::policy::Flows;

use super::filters;
use super::template_error;
use crate::escape;

#[derive(Template)]
#[template(path = "postgresql.nix")]
struct PostgresTemplate<'a> {
    host: &'a str,
    port: u16,
    databases: Vec<DbView>,
    /// pg_hba lines as an indented Nix string literal.
    hba: String,
    /// The setup script's addition as an indented Nix string literal.
    script: String,
}

struct DbView {
    name: String,
    owner: String,
    owner_is_name: bool,
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
    let refused = |what: &str, e: escape::Refused| Error::Render { file: file.clone(), message: format!("{what}: {e}") };
    let mut databases = Vec::new();
    let mut script = String::new();
    for d in &dbs {
        let credential_name = format!("{}-password", d.name);
        // LoadCredential=ID:PATH: systemd expands specifiers in PATH (see escape::unit).
        let path = escape::unit::path(&d.password_file).map_err(|e| refused(&format!("databases.{}.password_file", d.name), e))?;
        script.push_str(&setup_sql(&d.name, &d.owner, &credential_name));
        databases.push(DbView {
            name: d.name.clone(),
            owner: d.owner.clone(),
            owner_is_name: d.owner == d.name,
            credential: format!("{credential_name}:{path}"),
        });
    }
    let hba: String = hba_lines(flows, host).iter().map(|l| format!("{l}\n")).collect();
    let t = PostgresTemplate {
        host: &host.name,
        port,
        databases,
        hba: escape::nix::indented(&hba, 6).map_err(|e| refused("pg_hba lines", e))?,
        script: escape::nix::indented(&script, 6).map_err(|e| refused("the setup script", e))?,
    };
    let mut out = t.render().map_err(|e| template_error(&file, e))?;
    out.push('\n');
    Ok(out)
}

/// The setup unit's SQL for one database: the password comes from the credential file through
/// psql's backquote `\set`, never from argv or the Nix store. `name` and `owner` are SQL
/// identifiers (validation), so the double quotes hold them.
fn setup_sql(name: &str, owner: &str, credential_name: &str) -> String {
    let mut s = format!(
        "psql -d postgres -v ON_ERROR_STOP=1 <<'SQL'\n\\set password `cat \"$CREDENTIALS_DIRECTORY/{credential_name}\"`\n\
         ALTER ROLE \"{owner}\" WITH LOGIN PASSWORD :'password';\n"
    );
    if owner != name {
        s.push_str(&format!("ALTER DATABASE \"{name}\" OWNER TO \"{owner}\";\n"));
    }
    s.push_str("SQL\n");
    s
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
