//! `iac query` with the database's declared secret (issue 17's follow-up): no password typed by
//! hand. A project made from the bundled inventory (its admin key replaced by a fresh one, its
//! pipeline database renamed to a fresh database of the real test server), `secrets/` made by
//! the real `iac secrets init`, and the owner's role given the secret's value as the database
//! host's setup unit would; then `iac query` with no PGPASSWORD and no pgpass file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::pg::{Db, HOST, PgServer, clear_pg_env};
use crate::support::{EXAMPLE_ADMIN, bundled_inventory, code, iac, new_age_key, replace_once, stderr, stdout};

/// A project whose pipeline database is `db` (owner `db.user`, password secret `kafka-db`), with
/// `admin.key` (an admin of the inventory) and `stranger.key` (nobody's) beside it. `HOME` is
/// the project directory, so no default identity exists until a test puts one there.
struct Project {
    dir: tempfile::TempDir,
    pg: &'static PgServer,
    db: Db,
    /// The declared secret's value, which must never appear in any output.
    value: String,
}

impl Project {
    fn new(prefix: &str) -> Self {
        let pg = PgServer::shared();
        let db = pg.fresh_database(prefix);
        let dir = tempfile::tempdir().unwrap();
        let admin = new_age_key(&dir.path().join("admin.key"));
        new_age_key(&dir.path().join("stranger.key"));
        let inventory = replace_once(&bundled_inventory(), EXAMPLE_ADMIN, &admin);
        let inventory = replace_once(
            &inventory,
            "[databases.kafka]\nhost = \"alkaid\"\nowner = \"kafka\"\n",
            &format!("[databases.{}]\nhost = \"alkaid\"\nowner = \"{}\"\n", db.name, db.user),
        );
        let inventory = replace_once(&inventory, "database = \"kafka\"\n", &format!("database = \"{}\"\n", db.name));
        fs::create_dir_all(dir.path().join("hosts")).unwrap();
        fs::write(dir.path().join("hosts/inventory.toml"), inventory).unwrap();
        let mut p = Self { dir, pg, db, value: String::new() };
        let out = p.iac(&["secrets", "init"]).output().unwrap();
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let out = p.iac(&["secrets", "show", "kafka-db", "--identity", "admin.key"]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        p.value = String::from_utf8(out.stdout).unwrap();
        assert_eq!(p.value.len(), 32, "a generated password");
        // What the host's setup unit does with the delivered file (render::postgres::setup_sql).
        p.pg.psql("postgres", &format!("ALTER ROLE {} PASSWORD '{}'", p.db.user, p.value));
        p.pg.psql(
            &p.db.name,
            &format!(
                "CREATE TABLE kafka_messages (id int8 PRIMARY KEY, msg text, at timestamptz);
                 INSERT INTO kafka_messages VALUES (1, 'one', '2026-11-30 08:00Z'), (2, 'two', '2026-11-30 08:01Z');
                 ALTER TABLE kafka_messages OWNER TO {}",
                p.db.user
            ),
        );
        p
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `iac ARGS` in the project: the test server's address and port only (user and database
    /// come from the inventory), no password, no pgpass file, no identity.
    fn iac(&self, args: &[&str]) -> Command {
        let mut cmd = iac();
        clear_pg_env(&mut cmd)
            .env("HOME", self.dir.path())
            .env("PGHOST", HOST)
            .env("PGPORT", self.db.port.to_string())
            .current_dir(self.dir.path())
            .args(args);
        cmd
    }

    /// Run `cmd`; the secret's value is in neither of its outputs.
    fn run(&self, cmd: &mut Command) -> Output {
        let out = cmd.output().unwrap();
        for (name, text) in [("stdout", stdout(&out)), ("stderr", stderr(&out))] {
            assert!(!text.contains(&self.value), "the secret's value is on {name}: {cmd:?}");
        }
        out
    }

    fn query(&self, args: &[&str]) -> Output {
        self.run(&mut self.iac(&[&["query"], args].concat()))
    }

    fn conninfo(&self, cmd: &mut Command) -> String {
        let out = self.run(cmd);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).lines().find(|l| l.starts_with("password  ")).unwrap().to_owned()
    }

    /// A pgpass file at ~/.pgpass with one line for the owner's connection.
    fn pgpass(&self, password: &str) -> PathBuf {
        let file = self.path(".pgpass");
        fs::write(&file, format!("{HOST}:{}:{}:{}:{password}\n", self.db.port, self.db.name, self.db.user)).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        file
    }
}

const ROWS: &str =
    "{\"id\":1,\"msg\":\"one\",\"at\":\"2026-11-30T08:00:00Z\"}\n{\"id\":2,\"msg\":\"two\",\"at\":\"2026-11-30T08:01:00Z\"}\n";

fn rows(out: &Output) -> String {
    assert!(out.status.success(), "iac failed ({:?}): {}", out.status, stderr(out));
    stdout(out)
}

fn secret_source(identity: &Path) -> String {
    format!("password  declared secret kafka-db (secrets/kafka-db.age) with identity {}", identity.display())
}

#[test]
fn the_declared_secret_is_the_password_with_identity_flag_env_or_default_key() {
    let p = Project::new("qsecret");
    // --identity before or after the subcommand, IAC_IDENTITY, and the default key file.
    assert_eq!(rows(&p.query(&["--identity", "admin.key", "messages", "--format", "jsonl"])), ROWS);
    let out = p.query(&["messages", "-i", "admin.key", "--latest", "1", "--format", "jsonl"]);
    assert_eq!(rows(&out), ROWS.lines().nth(1).unwrap().to_owned() + "\n");
    let out = p.run(p.iac(&["query", "count"]).env("IAC_IDENTITY", "admin.key"));
    assert_eq!(rows(&out), "2\n");
    assert_eq!(p.conninfo(p.iac(&["query", "conninfo"]).env("IAC_IDENTITY", "admin.key")), secret_source(Path::new("admin.key")));
    let default = p.path(".config/iac/age.key");
    fs::create_dir_all(default.parent().unwrap()).unwrap();
    fs::copy(p.path("admin.key"), &default).unwrap();
    assert_eq!(rows(&p.run(&mut p.iac(&["query", "count"]))), "2\n");
    assert_eq!(p.conninfo(&mut p.iac(&["query", "conninfo"])), secret_source(&default));
    // The secret comes before a pgpass line, which after a rotation is a stale copy.
    p.pgpass("stale-password-from-before");
    assert_eq!(rows(&p.run(&mut p.iac(&["query", "count"]))), "2\n");
    // `schema` connects the same way.
    let out = p.run(&mut p.iac(&["query", "schema", "--format", "jsonl"]));
    assert!(rows(&out).contains("\"msg\""), "{}", stdout(&out));
}

#[test]
fn without_an_identity_the_pgpass_file_is_next() {
    let p = Project::new("qsecret_noid");
    // secrets/kafka-db.age is there, but no identity is: no error, no password.
    assert_eq!(p.conninfo(&mut p.iac(&["query", "conninfo"])), "password  none");
    let out = p.query(&["count"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("none was found"), "{}", stderr(&out));
    // The pgpass file, as before.
    let pgpass = p.pgpass(&p.value);
    assert_eq!(rows(&p.query(&["count"])), "2\n");
    assert_eq!(p.conninfo(&mut p.iac(&["query", "conninfo"])), format!("password  pgpass file {}", pgpass.display()));
    // An identity, but no file for the secret (another --secrets-dir): the pgpass file too.
    let out = p.query(&["count", "--identity", "admin.key", "--secrets-dir", "elsewhere"]);
    assert_eq!(rows(&out), "2\n");
}

#[test]
fn a_wrong_identity_names_the_file_and_pgpassword_overrides_it() {
    let p = Project::new("qsecret_wrong");
    let out = p.query(&["count", "--identity", "stranger.key"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "is the declared secret kafka-db: cannot decrypt secrets/kafka-db.age with stranger.key: it is not encrypted to this \
             identity's key"
        ),
        "{}",
        stderr(&out)
    );
    // An identity named but missing is an error too, not a silent fall-through.
    let out = p.query(&["count", "--identity", "no-such.key"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot read no-such.key"), "{}", stderr(&out));
    // PGPASSWORD (and --password-file) come first: the secret is not even read.
    let out = p.run(p.iac(&["query", "count", "-i", "stranger.key"]).env("PGPASSWORD", &p.value));
    assert_eq!(rows(&out), "2\n");
    assert_eq!(p.conninfo(p.iac(&["query", "conninfo", "-i", "stranger.key"]).env("PGPASSWORD", &p.value)), "password  PGPASSWORD");
    fs::write(p.path("pw"), format!("{}\n", p.value)).unwrap();
    assert_eq!(rows(&p.query(&["count", "-i", "stranger.key", "--password-file", "pw"])), "2\n");
}

#[test]
fn another_user_does_not_get_the_owners_secret() {
    let p = Project::new("qsecret_user");
    p.pg.psql("postgres", &format!("CREATE ROLE {}_reader LOGIN PASSWORD 'reader-pw-9q'", p.db.user));
    let reader = format!("{}_reader", p.db.user);
    // With an identity that cannot decrypt, the secret would be an error: it is not consulted.
    for cmd in [
        p.iac(&["query", "count", "-i", "stranger.key"]).env("PGUSER", &reader),
        &mut p.iac(&["query", "count", "-i", "stranger.key", "--dsn", "user=postgres"]),
    ] {
        let out = p.run(cmd);
        assert_eq!(code(&out), 4, "{}", stderr(&out));
        assert!(stderr(&out).contains("none was found"), "{}", stderr(&out));
    }
    // With the admin's identity neither gets it either; the owner does.
    assert_eq!(p.conninfo(p.iac(&["query", "conninfo", "-i", "admin.key"]).env("PGUSER", &reader)), "password  none");
    assert_eq!(p.conninfo(&mut p.iac(&["query", "conninfo", "-i", "admin.key", "--dsn", "user=postgres"])), "password  none");
    let out = p.run(p.iac(&["query", "conninfo", "-i", "admin.key"]).env("PGUSER", &p.db.user));
    assert!(stdout(&out).contains(&secret_source(Path::new("admin.key"))), "{}", stdout(&out));
    // Nor does the owner in another database.
    assert_eq!(p.conninfo(p.iac(&["query", "conninfo", "-i", "admin.key"]).env("PGDATABASE", "postgres")), "password  none");
}
