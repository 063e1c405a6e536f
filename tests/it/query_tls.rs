//! `iac query` over TLS (rustls, ring) against a real PostgreSQL that only admits TLS
//! (`hostssl` in pg_hba.conf), with certificates made by the openssl CLI for this test.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::pg::{Db, PgServer};
use crate::support::{iac_query, stderr, stdout, tool};

fn run_openssl(openssl: &Path, dir: &Path, args: &[&str]) {
    let out = Command::new(openssl).args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

/// A CA, a server certificate for `localhost` signed by it, and an unrelated CA.
fn certificates(openssl: &Path, dir: &Path) {
    let openssl = |dir: &Path, args: &[&str]| run_openssl(openssl, dir, args);
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for ca in ["ca", "other"] {
        let (key, crt, subj) = (format!("{ca}.key"), format!("{ca}.crt"), format!("/CN=iac test {ca}"));
        openssl(dir, &[&["req", "-x509"][..], &ec, &["-keyout", &key, "-out", &crt, "-subj", &subj, "-days", "2"]].concat());
    }
    openssl(dir, &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
    std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
}

fn run(db: &Db, env: &[(&str, &str)]) -> Output {
    let mut cmd = iac_query(db, &["count", "--table", "t"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run iac")
}

#[test]
fn sslmodes_against_a_tls_only_server() {
    let Some(openssl) = tool("openssl") else { return };
    let certs = tempfile::tempdir().unwrap();
    certificates(&openssl, certs.path());
    let read = |f: &str| std::fs::read(certs.path().join(f)).unwrap();
    let pg = PgServer::builder()
        .hba("local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n")
        .conf("ssl = on")
        .conf("ssl_cert_file = 'server.crt'")
        .conf("ssl_key_file = 'server.key'")
        .file("server.crt", &read("server.crt"), 0o644)
        .file("server.key", &read("server.key"), 0o600)
        .start();
    // psql (libpq) also needs TLS now: it defaults to sslmode=prefer.
    let db = pg.fresh_database("tls");
    pg.psql(&db.name, &format!("CREATE TABLE t (x int); INSERT INTO t VALUES (1); ALTER TABLE t OWNER TO {}", db.user));
    let ca = certs.path().join("ca.crt");
    let other = certs.path().join("other.crt");
    let (ca, other) = (ca.to_str().unwrap(), other.to_str().unwrap());
    let ok = |o: &Output, what: &str| {
        assert!(o.status.success(), "{what}: {}", stderr(o));
        assert_eq!(stdout(o), "1\n", "{what}");
    };
    let fails = |o: &Output, code: i32, text: &str, what: &str| {
        let err = stderr(o);
        assert_eq!(o.status.code(), Some(code), "{what}: {err}");
        assert!(err.contains(text), "{what}: {text:?} not in {err}");
        eprintln!("{what}: {}", err.trim());
    };

    ok(&run(&db, &[]), "default sslmode=prefer negotiates TLS");
    ok(&run(&db, &[("PGSSLMODE", "require")]), "require, certificate unchecked");
    ok(&run(&db, &[("PGSSLMODE", "verify-ca"), ("PGSSLROOTCERT", ca)]), "verify-ca by IP address");
    ok(&run(&db, &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca), ("PGHOST", "localhost")]), "verify-full by name");
    let dsn = format!("host=localhost sslmode=verify-full sslrootcert={ca}");
    let o = iac_query(&db, &["count", "--table", "t", "--dsn", &dsn]).env("PGSSLMODE", "disable").output().unwrap();
    ok(&o, "sslmode and sslrootcert in --dsn beat PGSSLMODE");

    fails(&run(&db, &[("PGSSLMODE", "disable")]), 4, "no pg_hba.conf entry", "plaintext is refused by the server");
    fails(
        &run(&db, &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca)]),
        3,
        "TLS with PostgreSQL at 127.0.0.1",
        "verify-full: the certificate names localhost, not 127.0.0.1",
    );
    fails(
        &run(&db, &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", other), ("PGHOST", "localhost")]),
        3,
        "UnknownIssuer",
        "verify-full with the wrong CA",
    );
    fails(
        &run(&db, &[("PGSSLMODE", "verify-ca"), ("PGSSLROOTCERT", "/nonexistent/root.crt")]),
        3,
        "root certificate file /nonexistent/root.crt does not exist",
        "verify-ca without a root certificate",
    );
}
