//! The rendered PostgreSQL configuration against a real PostgreSQL server started by the test:
//! the pg_hba lines parse and mean what the flows say, and the setup script the NixOS unit runs
//! sets the owner's password from the credential file so the owner can log in with it.

use std::process::Command;

use crate::support::pg::{HOST, PgServer};
use crate::support::{self, bundled_inventory_path, nix_eval, text};

fn alkaid_hba_lines() -> Vec<String> {
    let site = iac::load_site(&bundled_inventory_path()).unwrap();
    let flows = iac::render::flows(&site);
    let alkaid = site.host("alkaid").unwrap();
    iac::render::postgres::hba_lines(&flows, alkaid)
}

/// PostgreSQL itself parses the rendered lines (`pg_hba_file_rules`) without error, and each
/// one admits exactly the database, user, network and method of its flow.
#[test]
fn rendered_hba_lines_parse_in_postgresql() {
    let lines = alkaid_hba_lines();
    let hba = format!("local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n{}\n", lines.join("\n"));
    let server = PgServer::builder().hba(&hba).start();
    let errors = server.psql("postgres", "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL");
    assert_eq!(errors.trim(), "0", "{}", server.psql("postgres", "SELECT * FROM pg_hba_file_rules"));
    let ours = server.psql(
        "postgres",
        "SELECT database, user_name, address, netmask, auth_method FROM pg_hba_file_rules \
         WHERE database = '{kafka}' ORDER BY line_number",
    );
    assert_eq!(ours.trim(), "{kafka}|{kafka}|172.22.0.0|255.255.255.0|scram-sha-256", "{ours}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("host ")).count(), 1, "{lines:?}");
}

/// A server where the NixOS module's own ensureDatabases/ensureUsers have run (role and
/// database `kafka`), as they do before our setup lines.
fn kafka_server() -> PgServer {
    let server = PgServer::builder().start();
    server.psql("postgres", "CREATE ROLE kafka");
    server.psql("postgres", "CREATE DATABASE kafka OWNER kafka");
    server
}

/// The setup script as the unit runs it: bash -eu, the credential in $CREDENTIALS_DIRECTORY,
/// the server's psql on PATH, connected as the superuser.
fn run_setup_script(server: &PgServer, script: &str, creds: &std::path::Path) {
    let psql = server.program("psql");
    let bindir = std::path::Path::new(psql.get_program()).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bindir.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("bash");
    support::pg::clear_pg_env(&mut cmd)
        .args(["-euc", script])
        .env("PATH", path)
        .env("CREDENTIALS_DIRECTORY", creds)
        .env("PGHOST", HOST)
        .env("PGPORT", server.port.to_string())
        .env("PGUSER", support::pg::SUPERUSER)
        .env("PGPASSWORD", &server.password);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
}

/// `sql` run by psql logged in as `kafka` with password `pw`.
fn login_as_kafka(server: &PgServer, pw: &str, sql: &str) -> std::process::Output {
    let mut c = server.program("psql");
    support::pg::clear_pg_env(&mut c)
        .args(["-h", HOST, "-p", &server.port.to_string(), "-U", "kafka", "-d", "kafka", "-Atc", sql])
        .env("PGPASSWORD", pw)
        .output()
        .unwrap()
}

/// The script `systemd.services.postgresql-setup` runs (taken from the evaluated module): with
/// the password in $CREDENTIALS_DIRECTORY, the owner can log in with it, and only with it.
#[test]
fn setup_script_sets_the_password_from_the_credential() {
    let Some(script) = nix_eval("(module ./generated/alkaid/postgresql.nix).systemd.services.postgresql-setup.script") else {
        return;
    };
    let credential = nix_eval(
        "builtins.toJSON (module ./generated/alkaid/postgresql.nix).systemd.services.postgresql-setup.serviceConfig.LoadCredential",
    )
    .unwrap();
    assert_eq!(credential, r#"["kafka-password:/var/lib/secrets/postgresql-kafka"]"#);

    let server = kafka_server();
    let creds = tempfile::tempdir().unwrap();
    let password = "pw with 'quotes', \"doubles\" and $dollars";
    std::fs::write(creds.path().join("kafka-password"), format!("{password}\n")).unwrap();
    run_setup_script(&server, &script, creds.path());

    let login = |pw: &str| login_as_kafka(&server, pw, "SELECT current_user");
    let ok = login(password);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout).trim(), "kafka");
    let bad = login("not the password");
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("password authentication failed"), "{}", text(&bad.stderr));
}

/// One password file, read by both sides: the setup script sets the owner's password with
/// psql's backquotes, and `iac` (apply's Secret, query's `--password-file`) reads the same file
/// with `iac::password`. For every ending a file may have, the password iac reads logs in; the
/// rules iac had before (drop a `\r` too, or every trailing `\r` and `\n`) would not.
#[test]
fn iac_reads_a_password_file_as_the_setup_script_does() {
    let Some(script) = nix_eval("(module ./generated/alkaid/postgresql.nix).systemd.services.postgresql-setup.script") else {
        return;
    };
    let server = kafka_server();
    let logs_in = |pw: &str| login_as_kafka(&server, pw, "SELECT 1").status.success();
    for content in ["s3cret\n", "s3cret", "s3cret\r\n", "s3cret\n\n", " s3cret \n"] {
        let creds = tempfile::tempdir().unwrap();
        let file = creds.path().join("kafka-password");
        std::fs::write(&file, content).unwrap();
        run_setup_script(&server, &script, creds.path());

        let ours = iac::password::PasswordSource::File(file).read().unwrap();
        assert!(logs_in(&ours), "{content:?}: iac read {ours:?}, which the server does not accept");
        let trimmed_all = content.trim_end_matches(['\n', '\r']);
        assert_eq!(logs_in(trimmed_all), ours == trimmed_all, "{content:?}: trimming every newline");
    }
}
