//! PostgreSQL drift: the pg_hba rules, roles and databases a database host serves against
//! what the inventory renders for it.
//!
//! The connection is `iac query`'s ([`crate::query::settings`] and
//! [`crate::query::connect::connect`]): the host's address and the port, owner and name of its
//! first database from the inventory, overridden as libpq users expect by `PGHOST`, `PGPORT`,
//! `PGUSER`, `PGDATABASE`, `PGSSLMODE` and `--dsn`; the password from `--password-file`,
//! `PGPASSWORD`, the declared secret of that database (its owner's password, decrypted with the
//! admin's identity: no value typed by hand) or `~/.pgpass` (`query::credential`). The
//! rendered pg_hba admits exactly that connection (a database's owner from its clients), so it
//! works without a rule of its own.
//!
//! Privileges: `pg_roles` and `pg_database` are readable by every role, but `pg_hba_file_rules`
//! is not: PostgreSQL revokes the view and its function from PUBLIC (superusers only, in every
//! version from 10 to 17). A superuser grants a reading role both, once, in the database drift
//! connects to (grants on a catalog view live in each database's own catalog):
//! `GRANT SELECT ON pg_hba_file_rules TO kafka; GRANT EXECUTE ON FUNCTION pg_hba_file_rules()
//! TO kafka;` (tests/it/drift.rs proves that this is enough). Without them the roles and
//! databases are still compared and the pg_hba part is an error that says so.
//!
//! `pg_hba_file_rules` shows the file on disk as the server parses it now, not the rules it has
//! loaded: a hand edit shows before a reload, and a line it cannot parse has its `error`.

pub mod hba;

use std::collections::BTreeMap;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::model::{Host, Site};
use crate::policy::Flows;
use crate::query::credential::DeclaredPassword;
use crate::query::settings::{Defaults, Flags};
use crate::query::{self, QueryError};
use crate::render;
use crate::reporter::Reporter;

use super::report::{Finding, PartReport};

const HBA_SQL: &str = "SELECT line_number, type, database, user_name, address, netmask, auth_method, options, error \
                       FROM pg_catalog.pg_hba_file_rules ORDER BY line_number";
const ROLES_SQL: &str = "SELECT rolname::text, rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])";
const DATABASES_SQL: &str =
    "SELECT datname::text, pg_catalog.pg_get_userbyid(datdba)::text FROM pg_catalog.pg_database WHERE datname = ANY($1::text[])";

/// The rules the host's pg_hba file holds once NixOS wrote it: ours, then the module's own.
pub fn expected_rules(flows: &Flows, host: &Host) -> Vec<hba::Rule> {
    let ours = render::postgres::hba_lines(flows, host);
    ours.iter().map(String::as_str).chain(hba::NIXOS_APPENDED).filter_map(hba::parse_line).collect()
}

/// The whole pg_hba file as the NixOS module writes it for `host` (for tests and the docs): the
/// module's header comment, our lines, its own.
pub fn expected_file(flows: &Flows, host: &Host) -> String {
    let mut s = String::from("# Generated file; do not edit!\n");
    for l in render::postgres::hba_lines(flows, host) {
        s.push_str(&l);
        s.push('\n');
    }
    s.push_str("\n# default value of services.postgresql.authentication\n");
    for l in hba::NIXOS_APPENDED {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// Where the connection for `host` goes by default: its address, and the port, owner and name
/// of its first database; the password may be the declared secret of any of its databases
/// (the one the connection's name and user are), so with several database hosts each is read
/// with its own database's secret.
pub fn connection_defaults(site: &Site, host: &Host) -> Defaults {
    let databases: Vec<_> = site.databases.iter().filter(|d| d.host == host.name).collect();
    let first = databases.first();
    Defaults {
        host: Some(host.address.to_string()),
        port: first.map(|d| d.port),
        user: first.map(|d| d.owner.clone()),
        database: first.map(|d| d.name.clone()),
        table: None,
        passwords: DeclaredPassword::of(databases.iter().copied()),
    }
}

/// Compare the database server on `host` with the inventory. A failure to connect is the
/// part's error; a refused read of `pg_hba_file_rules` leaves the roles and databases compared.
pub async fn check(site: &Site, flows: &Flows, host: &Host, flags: &Flags, report: &dyn Reporter) -> PartReport {
    let databases: Vec<_> = site.databases.iter().filter(|d| d.host == host.name).collect();
    let defaults = connection_defaults(site, host);
    let mut settings = match query::settings(&defaults, flags, report) {
        Ok(s) => s,
        Err(e) => return PartReport::failed(e.to_string()),
    };
    settings.config.application_name("iac drift");
    report.progress(&format!(
        "{}: reading PostgreSQL at {} as {} (password: {})",
        host.name,
        settings.server(),
        settings.user(),
        settings.password_from
    ));
    let client = match query::connect::connect(&settings).await {
        Ok(c) => c,
        Err(e) => return PartReport::failed(e.to_string()),
    };
    let mut findings = Vec::new();
    let hba_error = match live_hba(&client).await {
        Ok(live) => {
            findings.extend(hba::compare(&expected_rules(flows, host), &live));
            None
        }
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Some(format!(
            "cannot read pg_hba_file_rules as {user}: permission denied (superusers only by default); as a superuser run \
             in database {db} `GRANT SELECT ON pg_hba_file_rules TO {user}; GRANT EXECUTE ON FUNCTION pg_hba_file_rules() TO \
             {user};` (docs/drift.md)",
            user = settings.user(),
            db = settings.dbname()
        )),
        Err(e) => Some(format!("reading pg_hba_file_rules: {}", QueryError::server(&e))),
    };
    let owners: Vec<String> = databases.iter().map(|d| d.owner.clone()).collect();
    let names: Vec<String> = databases.iter().map(|d| d.name.clone()).collect();
    match live_objects(&client, &owners, &names).await {
        Ok((roles, dbs)) => {
            for d in &databases {
                match roles.get(&d.owner) {
                    None => {
                        findings.push(Finding::missing(format!("role {}", d.owner), format!("the owner of database {} (LOGIN)", d.name)))
                    }
                    Some(false) => findings.push(Finding::changed(format!("role {}", d.owner), "LOGIN", "NOLOGIN: it cannot log in")),
                    Some(true) => {}
                }
                match dbs.get(&d.name) {
                    None => findings.push(Finding::missing(format!("database {}", d.name), format!("the database, owned by {}", d.owner))),
                    Some(owner) if *owner != d.owner => findings.push(Finding::changed(
                        format!("database {}", d.name),
                        format!("owner {}", d.owner),
                        format!("owner {owner}"),
                    )),
                    Some(_) => {}
                }
            }
        }
        Err(e) => return PartReport::partly(findings, format!("reading roles and databases: {}", QueryError::server(&e))),
    }
    match hba_error {
        None => PartReport::compared(findings),
        Some(e) => PartReport::partly(findings, e),
    }
}

/// `Row::try_get` throughout: a column of an unexpected type is an error, never a panic.
async fn live_hba(client: &Client) -> Result<Vec<hba::LiveLine>, tokio_postgres::Error> {
    let rows = client.query(HBA_SQL, &[]).await?;
    rows.iter()
        .map(|r| {
            let error: Option<String> = r.try_get("error")?;
            let kind: Option<String> = r.try_get("type")?;
            let method: Option<String> = r.try_get("auth_method")?;
            let rule = match (error.is_none(), kind, method) {
                (true, Some(kind), Some(method)) => {
                    let address: Option<String> = r.try_get("address")?;
                    let netmask: Option<String> = r.try_get("netmask")?;
                    Some(hba::Rule {
                        kind,
                        databases: r.try_get::<_, Option<Vec<String>>>("database")?.unwrap_or_default(),
                        users: r.try_get::<_, Option<Vec<String>>>("user_name")?.unwrap_or_default(),
                        address: address.map(|a| hba::network(&a, netmask.as_deref())),
                        method,
                        options: r.try_get::<_, Option<Vec<String>>>("options")?.unwrap_or_default(),
                    })
                }
                _ => None,
            };
            Ok(hba::LiveLine { line: r.try_get("line_number")?, rule, error })
        })
        .collect()
}

/// The roles among `names` (whether each may log in) and the databases among `databases`
/// (with their owners).
async fn live_objects(
    client: &Client,
    names: &[String],
    databases: &[String],
) -> Result<(BTreeMap<String, bool>, BTreeMap<String, String>), tokio_postgres::Error> {
    let roles = client
        .query(ROLES_SQL, &[&names])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let dbs = client
        .query(DATABASES_SQL, &[&databases])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok((roles, dbs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bundled estate with a second database host: hamal serves `metrics`, owned by
    /// `grafana`, whose password is the secret `metrics-db`.
    #[test]
    fn each_database_host_is_read_with_its_own_databases_secret() {
        let mut site = crate::load_site(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/hosts/inventory.toml"))).unwrap();
        let mut metrics = site.database("kafka").unwrap().clone();
        (metrics.name, metrics.host, metrics.owner, metrics.password) =
            ("metrics".into(), "hamal".into(), "grafana".into(), "metrics-db".into());
        site.databases.push(metrics);
        let for_host = |name: &str| connection_defaults(&site, site.host(name).unwrap());
        let (alkaid, hamal) = (for_host("alkaid"), for_host("hamal"));
        assert_eq!((alkaid.user.as_deref(), alkaid.database.as_deref()), (Some("kafka"), Some("kafka")));
        assert_eq!(alkaid.passwords, [DeclaredPassword { database: "kafka".into(), owner: "kafka".into(), secret: "kafka-db".into() }]);
        assert_eq!((hamal.user.as_deref(), hamal.database.as_deref()), (Some("grafana"), Some("metrics")));
        assert_eq!(
            hamal.passwords,
            [DeclaredPassword { database: "metrics".into(), owner: "grafana".into(), secret: "metrics-db".into() }]
        );
        assert_eq!(hamal.host.as_deref(), Some(site.host("hamal").unwrap().address.to_string().as_str()));
    }
}
