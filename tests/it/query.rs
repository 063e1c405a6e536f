//! `iac query` against a real PostgreSQL started by the tests (see tests/it/support/pg.rs).

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::pg::{Db, HOST, PgServer, clear_pg_env};
use crate::support::{iac, iac_query, ok_stdout, repo, run_query, stderr};

/// A database whose `kafka_messages` holds one row of every type the JDBC sink creates (and
/// a few it might), plus a row of NULLs.
fn typed_table() -> (&'static PgServer, Db) {
    let pg = PgServer::shared();
    let db = pg.fresh_database("types");
    pg.psql(
        &db.name,
        &format!(
            "CREATE TABLE kafka_messages (
                id int4, big int8, msg text, at timestamp, at_tz timestamptz, doc json, docb jsonb,
                ok bool, small int2, ratio float8, amount numeric(10,2), tag uuid);
             INSERT INTO kafka_messages VALUES
               (1, 9007199254740993, E'hello \"world\"\\n', '2026-11-25 16:47:48.123456',
                '2026-11-25 16:47:48+02', E'{{\"a\": [1, 2],\\n \"b\": null}}',
                '{{\"b\": {{\"c\": true}}, \"a\": 1}}', true, -3, 0.5, 12.50,
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
               (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
             ALTER TABLE kafka_messages OWNER TO {};",
            db.user
        ),
    );
    (pg, db)
}

fn expected_rows() -> Vec<Value> {
    vec![
        json!({
            "id": 1, "big": 9007199254740993_i64, "msg": "hello \"world\"\n",
            "at": "2026-11-25T16:47:48.123456", "at_tz": "2026-11-25T14:47:48Z",
            "doc": {"a": [1, 2], "b": null}, "docb": {"a": 1, "b": {"c": true}},
            "ok": true, "small": -3, "ratio": 0.5, "amount": 12.5,
            "tag": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        }),
        json!({
            "id": null, "big": null, "msg": null, "at": null, "at_tz": null, "doc": null,
            "docb": null, "ok": null, "small": null, "ratio": null, "amount": null, "tag": null
        }),
    ]
}

#[test]
fn jsonl_shows_every_type_faithfully() {
    let (_pg, db) = typed_table();
    let out = ok_stdout(&run_query(&db, &["messages", "--format", "jsonl"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let rows: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    assert_eq!(rows, expected_rows());
    // Exact text: integers beyond 2^53 and numeric scale survive, columns keep table order.
    assert!(lines[0].starts_with("{\"id\":1,\"big\":9007199254740993,\"msg\":"), "{}", lines[0]);
    assert!(lines[0].contains("\"amount\":12.50,"), "{}", lines[0]);
    // The same values the server's own row_to_json gives (it writes UTC as +00:00, we as Z).
    let theirs = _pg.psql(&db.name, "SET TIME ZONE 'UTC'; SELECT json_agg(row_to_json(t)) FROM kafka_messages t");
    let theirs: Value = serde_json::from_str(&theirs.replace("+00:00", "Z")).expect("json");
    assert_eq!(Value::Array(rows), theirs);
}

#[test]
fn json_is_one_array_of_the_same_rows() {
    let (_pg, db) = typed_table();
    let out = ok_stdout(&run_query(&db, &["messages", "--format", "json"]));
    let rows: Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(rows, Value::Array(expected_rows()));
}

#[test]
fn table_is_aligned_and_marks_nulls() {
    let (_pg, db) = typed_table();
    let out = ok_stdout(&run_query(&db, &["messages"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[0].starts_with("id   | big "), "{out}");
    assert!(lines[1].starts_with("-----+-"), "{out}");
    // Every '|' of every row sits under the header's; the rule's '+' too.
    let bars = |l: &str| l.match_indices(['|', '+']).map(|(i, _)| i).collect::<Vec<_>>();
    for l in &lines[1..4] {
        assert_eq!(bars(l), bars(lines[0]), "misaligned:\n{out}");
    }
    assert!(lines[2].contains(r#"hello "world"\n"#), "newline escaped: {out}");
    assert!(lines[2].contains("2026-11-25T14:47:48Z") && lines[2].contains(" true "), "{out}");
    assert!(lines[3].starts_with("NULL | "), "{out}");
    assert_eq!(lines[4], "(2 rows)");
}

#[test]
fn empty_table_in_every_format() {
    let pg = PgServer::shared();
    let db = pg.fresh_database("empty");
    pg.psql(&db.name, &format!("CREATE TABLE kafka_messages (id int8, msg text); ALTER TABLE kafka_messages OWNER TO {}", db.user));
    assert_eq!(ok_stdout(&run_query(&db, &["messages", "--format", "json"])), "[]\n");
    assert_eq!(ok_stdout(&run_query(&db, &["messages", "--format", "jsonl"])), "");
    assert_eq!(ok_stdout(&run_query(&db, &["messages"])), "id | msg\n---+----\n(0 rows)\n");
    assert_eq!(ok_stdout(&run_query(&db, &["count"])), "0\n");
}

#[test]
fn missing_table_is_named_with_exit_5() {
    let pg = PgServer::shared();
    let db = pg.fresh_database("missing");
    for cmd in [&["messages"][..], &["count"], &["schema"], &["messages", "--table", "nope"]] {
        let o = run_query(&db, cmd);
        assert_eq!(o.status.code(), Some(5), "{cmd:?}: {}", stderr(&o));
        let table = if cmd.len() > 1 { "\"nope\"" } else { "\"kafka_messages\"" };
        assert!(stderr(&o).contains(&format!("table {table} does not exist in database \"{}\"", db.name)), "{}", stderr(&o));
    }
}

#[test]
fn missing_database_is_named_with_exit_5() {
    let pg = PgServer::shared();
    let mut db = pg.fresh_database("nodb");
    db.name = "no_such_db".into();
    let o = run_query(&db, &["count"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("database \"no_such_db\" does not exist on {HOST}:{}", db.port)), "{}", stderr(&o));
}

#[test]
fn table_name_that_needs_quoting() {
    let pg = PgServer::shared();
    let db = pg.fresh_database("quoting");
    let name = r#"Odd "Name"; DROP TABLE x; --"#;
    let sql_name = r#""Odd ""Name""; DROP TABLE x; --""#;
    pg.psql(
        &db.name,
        &format!(
            "CREATE SCHEMA \"my schema\" AUTHORIZATION {u};
             CREATE TABLE x (keep int); ALTER TABLE x OWNER TO {u};
             CREATE TABLE \"my schema\".{sql_name} (\"Weird col\" text PRIMARY KEY, \"n\" int);
             INSERT INTO \"my schema\".{sql_name} VALUES ('a', 1), ('b', 2);
             ALTER TABLE \"my schema\".{sql_name} OWNER TO {u};",
            u = db.user
        ),
    );
    let t = ["--schema", "my schema", "--table", name];
    assert_eq!(ok_stdout(&run_query(&db, &[&["count"][..], &t].concat())), "2\n");
    let out = ok_stdout(&run_query(&db, &[&["messages", "--format", "jsonl"][..], &t].concat()));
    assert_eq!(out, "{\"Weird col\":\"a\",\"n\":1}\n{\"Weird col\":\"b\",\"n\":2}\n");
    let schema = ok_stdout(&run_query(&db, &[&["schema"][..], &t].concat()));
    assert!(schema.contains("Weird col | text"), "{schema}");
    // The other table is still there: nothing was spliced into SQL.
    assert_eq!(pg.psql(&db.name, "SELECT count(*) FROM x").trim(), "0");
    // Without the schema the name is looked up on the search path, and is not there.
    let o = run_query(&db, &["count", "--table", name]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
}

#[test]
fn wrong_password_is_an_auth_failure_with_exit_4() {
    let pg = PgServer::shared();
    let mut db = pg.fresh_database("auth");
    db.password = "not-the-password".into();
    let o = run_query(&db, &["count"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("authentication as user \"{}\"", db.user)), "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "the password must not be echoed: {err}");
    // No password at all: the server asks, we say where one could come from.
    let o = iac_query(&db, &["count"]).env_remove("PGPASSWORD").output().expect("run");
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("PGPASSWORD"), "{}", stderr(&o));
}

#[test]
fn password_from_pgpass_and_password_file() {
    let pg = PgServer::shared();
    let db = pg.fresh_database("pgpass");
    pg.psql(&db.name, &format!("CREATE TABLE kafka_messages (x int); ALTER TABLE kafka_messages OWNER TO {}", db.user));
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    std::fs::write(&pgpass, format!("{HOST}:{}:{}:{}:{}\n", db.port, db.name, db.user, db.password)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = iac_query(&db, &["count"]).env_remove("PGPASSWORD").env("HOME", home.path()).output().unwrap();
    assert_eq!(ok_stdout(&o), "0\n");
    // Readable by others: ignored, like libpq does.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = iac_query(&db, &["count"]).env_remove("PGPASSWORD").env("HOME", home.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("ignoring password file"), "{}", stderr(&o));
    let file = home.path().join("pw");
    std::fs::write(&file, format!("{}\n", db.password)).unwrap();
    let o = iac_query(&db, &["count", "--password-file", file.to_str().unwrap()]).env_remove("PGPASSWORD").output().unwrap();
    assert_eq!(ok_stdout(&o), "0\n");
}

#[test]
fn dsn_overrides_and_must_not_hold_a_password() {
    let pg = PgServer::shared();
    let db = pg.fresh_database("dsn");
    pg.psql(&db.name, &format!("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (3); ALTER TABLE t OWNER TO {}", db.user));
    let dsn = format!("host={HOST} port={} dbname={} user={} sslmode=disable", db.port, db.name, db.user);
    let o = iac_query(&db, &["count", "--table", "t", "--dsn", &dsn]).env_remove("PGHOST").env("PGPORT", "1").output().unwrap();
    assert_eq!(ok_stdout(&o), "3\n");
    let url = format!("postgres://{}:{}@{HOST}:{}/{}", db.user, db.password, db.port, db.name);
    let o = run_query(&db, &["count", "--table", "t", "--dsn", &url]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("must not contain a password"), "{}", stderr(&o));
    assert!(!stderr(&o).contains(&db.password));
}

#[test]
fn unreachable_server_names_host_and_port_with_exit_3() {
    let pg = PgServer::shared();
    let mut db = pg.fresh_database("unreach");
    let port = TcpListener::bind((HOST, 0)).unwrap().local_addr().unwrap().port(); // closed again
    db.port = port;
    let o = run_query(&db, &["count"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("cannot reach PostgreSQL at {HOST}:{port}")), "{}", stderr(&o));
    assert!(stderr(&o).to_lowercase().contains("refused"), "{}", stderr(&o));
}

#[test]
fn silent_server_times_out_with_exit_3() {
    let pg = PgServer::shared();
    let mut db = pg.fresh_database("timeout");
    // Accepts the TCP connection, never answers the startup message.
    let listener = TcpListener::bind((HOST, 0)).unwrap();
    db.port = listener.local_addr().unwrap().port();
    let hold = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(Duration::from_secs(3));
        drop(conn);
    });
    let start = Instant::now();
    let o = run_query(&db, &["count", "--connect-timeout", "1"]);
    assert!(start.elapsed() < Duration::from_secs(6), "took {:?}", start.elapsed());
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("no answer from PostgreSQL at {HOST}:{} within 1s", db.port)), "{}", stderr(&o));
    drop(hold);
}

#[test]
fn schema_lists_columns_nullability_defaults_and_indexes() {
    let pg = PgServer::shared();
    let db = pg.fresh_database("schema");
    pg.psql(
        &db.name,
        &format!(
            "CREATE TABLE kafka_messages (
                __connect_topic text NOT NULL, __connect_partition int4 NOT NULL,
                __connect_offset int8 NOT NULL, message text, created_at timestamptz DEFAULT now(),
                PRIMARY KEY (__connect_topic, __connect_partition, __connect_offset));
             CREATE INDEX by_time ON kafka_messages (created_at);
             ALTER TABLE kafka_messages OWNER TO {};",
            db.user
        ),
    );
    let out = ok_stdout(&run_query(&db, &["schema", "--format", "json"]));
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["table"], "\"kafka_messages\"");
    assert_eq!(s["columns"][0], json!({"name": "__connect_topic", "type": "text", "nullable": false, "default": null}));
    assert_eq!(s["columns"][2]["type"], "bigint");
    assert_eq!(s["columns"][4], json!({"name": "created_at", "type": "timestamp with time zone", "nullable": true, "default": "now()"}));
    assert_eq!(s["indexes"][0]["name"], "kafka_messages_pkey");
    assert_eq!(s["indexes"][0]["primary"], true);
    assert_eq!(s["indexes"][1]["name"], "by_time");
    assert_eq!(s["indexes"][1]["unique"], false);
    let table = ok_stdout(&run_query(&db, &["schema"]));
    assert!(table.contains("__connect_offset    | bigint                   | no       |"), "{table}");
    assert!(table.contains("kafka_messages_pkey (primary key): CREATE UNIQUE INDEX"), "{table}");
    assert!(table.contains("by_time: CREATE INDEX by_time ON public.kafka_messages USING btree (created_at)"), "{table}");
}

#[test]
fn since_filters_on_the_timestamp_column() {
    let pg = PgServer::shared();
    let db = pg.fresh_database("since");
    pg.psql(
        &db.name,
        &format!(
            "CREATE TABLE kafka_messages (id int, note text, seen timestamp, created_at timestamptz);
             INSERT INTO kafka_messages VALUES
               (1, 'old', '2020-01-01', '2020-01-01 00:00:00+00'),
               (2, 'new', '2026-06-01', now() - interval '5 minutes'),
               (3, 'edge', '2026-01-01', '2026-01-01 00:00:00+00');
             ALTER TABLE kafka_messages OWNER TO {};",
            db.user
        ),
    );
    let ids = |args: &[&str]| -> Vec<i64> {
        let out = ok_stdout(&run_query(&db, &[&["messages", "--format", "jsonl"][..], args].concat()));
        out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_i64().unwrap()).collect()
    };
    // First timestamp column is `seen` (timestamp without time zone).
    assert_eq!(ids(&["--since", "2026-01-01"]), vec![2, 3]);
    assert_eq!(ids(&["--since", "2026-01-01", "--time-column", "created_at"]), vec![2, 3]);
    assert_eq!(ids(&["--since", "1h", "--time-column", "created_at"]), vec![2]);
    assert_eq!(ids(&["--since", "2026-01-01 01:00:00+02", "--time-column", "created_at"]), vec![2, 3]);
    assert_eq!(ids(&["--since", "2026-01-01", "--limit", "1"]).len(), 1);
    assert_eq!(ok_stdout(&run_query(&db, &["count", "--since", "1h", "--time-column", "created_at"])), "1\n");
    let o = run_query(&db, &["count", "--since", "1h", "--time-column", "nope"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let o = run_query(&db, &["count", "--since", "not a time"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid input syntax for type timestamp with time zone"), "{}", stderr(&o));
}

#[test]
fn conninfo_uses_the_inventory_without_connecting() {
    let mut cmd = iac();
    clear_pg_env(&mut cmd).current_dir(repo()).args(["query", "conninfo"]);
    let out = ok_stdout(&cmd.output().unwrap());
    // hosts/inventory.toml: pipeline.database = kafka on alkaid (172.22.0.133), owner kafka.
    for want in [
        "host      172.22.0.133",
        "port      5432",
        "database  kafka",
        "user      kafka",
        "password  none",
        "sslmode   prefer",
        "table     \"kafka_messages\"",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }
    let mut cmd = iac();
    clear_pg_env(&mut cmd).current_dir(repo()).env("PGHOST", "db.example").env("PGPASSWORD", "s3cret").args(["query", "conninfo"]);
    let out = ok_stdout(&cmd.output().unwrap());
    assert!(out.contains("host      db.example") && out.contains("password  PGPASSWORD"), "{out}");
    assert!(!out.contains("s3cret"));
}

/// Wait for a child and return its exit status and peak resident memory (KiB), sampled from
/// `VmHWM` in /proc while it runs. (wait4's ru_maxrss would be wrong here: Linux carries the
/// parent's high-water mark across fork+exec, and this test process is large when other tests
/// run beside it.) VmHWM only grows, so the last sample is within one interval of the peak.
fn wait_peak_rss(child: &mut std::process::Child) -> (std::process::ExitStatus, u64) {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            let hwm = text.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            peak = peak.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn large_table_streams_in_flat_memory_and_counts_every_row() {
    const ROWS: usize = 300_000;
    let pg = PgServer::shared();
    let db = pg.fresh_database("large");
    pg.psql(
        &db.name,
        &format!(
            "CREATE TABLE kafka_messages (__connect_topic text, __connect_partition int4, __connect_offset int8,
                message text, created_at timestamptz, payload jsonb);
             INSERT INTO kafka_messages
               SELECT 'demo-messages', 0, i, repeat('x', 250) || i, now(), jsonb_build_object('n', i, 'ok', true)
               FROM generate_series(1, {ROWS}) i;
             ALTER TABLE kafka_messages OWNER TO {};",
            db.user
        ),
    );
    assert_eq!(ok_stdout(&run_query(&db, &["count"])), format!("{ROWS}\n"));

    // Read everything (> 100 MB of JSON lines) through a pipe; peak memory must stay small.
    let mut child = iac_query(&db, &["messages", "--format", "jsonl"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut pipe = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut bytes, mut lines, mut buf) = (0usize, 0usize, vec![0u8; 1 << 16]);
        loop {
            let n = pipe.read(&mut buf).unwrap();
            if n == 0 {
                break (bytes, lines);
            }
            bytes += n;
            lines += buf[..n].iter().filter(|b| **b == b'\n').count();
        }
    });
    let (status, maxrss_kib) = wait_peak_rss(&mut child);
    let (bytes, lines) = reader.join().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(lines, ROWS);
    assert!(bytes > 90 << 20, "{bytes} bytes");
    eprintln!("streamed {} MiB of JSON lines with peak RSS {} MiB", bytes >> 20, maxrss_kib >> 10);
    assert!(maxrss_kib < 40 << 10, "peak RSS {maxrss_kib} KiB for {bytes} bytes of output: rows are being collected");

    // The first row arrives and the command stops cleanly when its reader goes away (`| head -1`).
    let start = Instant::now();
    let mut child = iac_query(&db, &["messages", "--format", "jsonl"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"__connect_topic\":\"demo-messages\""), "{first}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(start.elapsed() < Duration::from_secs(20), "{:?}", start.elapsed());

    // --limit reads only what it needs.
    let out = ok_stdout(&run_query(&db, &["messages", "--format", "jsonl", "--limit", "3"]));
    assert_eq!(out.lines().count(), 3);
}

/// Our timestamp text against the server's own ISO 8601 (`to_json`), over edge cases (BC,
/// years past 9999, infinity, microsecond fractions) and a spread of random instants.
#[test]
fn timestamps_match_the_servers_iso_8601() {
    let pg = PgServer::shared();
    let db = pg.fresh_database("ts");
    pg.psql(
        &db.name,
        &format!(
            "CREATE TABLE t (n int, ts timestamp, tstz timestamptz);
             INSERT INTO t SELECT i, v, v FROM unnest(ARRAY[
               '2000-01-01', '1999-12-31 23:59:59.999999', '0001-01-01', '0001-12-31 23:59:59 BC',
               '4713-11-24 00:00:00 BC', '294276-12-31 23:59:59.999999', '10000-01-01 00:00:00.1',
               'infinity', '-infinity', '1970-01-01 00:00:00.5', '2026-02-28 12:34:56.000001']::timestamp[])
               WITH ORDINALITY AS u(v, i);
             INSERT INTO t SELECT 100 + i, v, v FROM (
               SELECT i, timestamp 'epoch' + (random() * 9.15e12 - 1.5e11) * interval '1 second' AS v
               FROM generate_series(1, 500) i) r;
             ALTER TABLE t OWNER TO {};",
            db.user
        ),
    );
    let ours = ok_stdout(&run_query(&db, &["messages", "--table", "t", "--format", "jsonl"]));
    let theirs = pg.psql(&db.name, "SET TIME ZONE 'UTC'; SELECT json_build_object('n', n, 'ts', ts, 'tstz', tstz) FROM t");
    let parse = |l: &str| -> Value { serde_json::from_str(l).expect("json") };
    let theirs: Vec<Value> = theirs
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut v = parse(l);
            if let Some(s) = v["tstz"].as_str() {
                v["tstz"] = Value::String(s.replacen("+00:00", "Z", 1));
            }
            v
        })
        .collect();
    let ours: Vec<Value> = ours.lines().map(parse).collect();
    assert_eq!(ours.len(), 511);
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o, t);
    }
}
