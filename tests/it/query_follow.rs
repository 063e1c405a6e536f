//! `iac query messages --latest N` and `--follow` against a real PostgreSQL started by the
//! tests (tests/it/support/pg.rs): the sink table exactly as the JDBC sink creates it
//! (`pk.mode=kafka`), and a table with an ordinary primary key. The follow tests run the
//! binary, change the table while it runs and read its output line by line with a timeout.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::pg::{Db, HOST, PgServer};
use crate::support::{iac_query, ok_stdout, run_query, stderr};

/// How long a row may take to show up (polls run every 100 ms; CI machines are slow).
const WAIT: Duration = Duration::from_secs(15);

/// The sink table as the Aiven JDBC sink creates it with `pk.mode=kafka` for the demo
/// producer's schema (id int32, message string, created_at Timestamp): its PostgreSQL dialect
/// maps STRING to TEXT, INT32 to INT, INT64 to BIGINT and Timestamp to TIMESTAMP
/// (`PostgreSqlDatabaseDialect.getSqlType`), and the key is the Kafka coordinates. The Debezium
/// JDBC sink the pipeline now runs (`primary.key.mode=kafka`) keys its table by the same three
/// columns in the same order (`render::k8s::connector::KAFKA_PK_COLUMNS`), which is what
/// `--follow` depends on.
const SINK_TABLE: &str = "CREATE TABLE kafka_messages (
    __connect_topic TEXT NOT NULL, __connect_partition INT NOT NULL, __connect_offset BIGINT NOT NULL,
    id INT NOT NULL, message TEXT NOT NULL, created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (__connect_topic, __connect_partition, __connect_offset))";

/// The connector iac renders keys its table by exactly the columns `--follow` recognises as the
/// Kafka coordinates, in that order, and this file's table is keyed the same way: a change to
/// the rendered key cannot leave `--follow` on its slow path unnoticed.
#[test]
fn the_rendered_sink_key_is_what_follow_recognises() {
    assert_eq!(iac::render::k8s::KAFKA_PK_COLUMNS, iac::query::order::KAFKA_COORDINATES);
    assert!(SINK_TABLE.contains(&format!("PRIMARY KEY ({})", iac::render::k8s::KAFKA_PK_COLUMNS.join(", "))), "{SINK_TABLE}");
}

/// Rows written the way the sink writes them with `insert.mode=upsert`
/// (`INSERT ... ON CONFLICT (key) DO UPDATE SET` every other column): (partition, offset, id,
/// time of day on 2026-01-01).
fn sink_rows(rows: &[(i32, i64, i32, &str)]) -> String {
    let values: Vec<String> =
        rows.iter().map(|(p, o, id, at)| format!("('demo-messages', {p}, {o}, {id}, 'message {id}', '2026-01-01 {at}')")).collect();
    format!(
        "INSERT INTO kafka_messages VALUES {} ON CONFLICT (__connect_topic, __connect_partition, __connect_offset)
         DO UPDATE SET id = EXCLUDED.id, message = EXCLUDED.message, created_at = EXCLUDED.created_at",
        values.join(", ")
    )
}

fn sink_db(pg: &PgServer, prefix: &str, rows: &[(i32, i64, i32, &str)]) -> Db {
    let db = pg.fresh_database(prefix);
    pg.psql(&db.name, &format!("{SINK_TABLE}; ALTER TABLE kafka_messages OWNER TO {};", db.user));
    if !rows.is_empty() {
        pg.psql(&db.name, &sink_rows(rows));
    }
    db
}

fn id(line: &str) -> i64 {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    v["id"].as_i64().unwrap_or_else(|| panic!("no id: {line}"))
}

fn ids(out: &str) -> Vec<i64> {
    out.lines().map(id).collect()
}

/// A running `iac query messages --follow`, its stdout read line by line on a thread.
struct Follower {
    child: Child,
    lines: Receiver<String>,
    stderr: Receiver<String>,
}

impl Follower {
    fn spawn(mut cmd: Command) -> Follower {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn iac");
        let out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (etx, stderr) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            let _ = etx.send(text);
        });
        Follower { child, lines, stderr }
    }

    fn line(&self) -> String {
        match self.lines.recv_timeout(WAIT) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => panic!("no line within {WAIT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("iac ended: {}", self.stderr.recv_timeout(WAIT).unwrap_or_default()),
        }
    }

    fn ids(&self, n: usize) -> Vec<i64> {
        (0..n).map(|_| id(&self.line())).collect()
    }

    fn signal(&self, sig: i32) {
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill");
    }

    /// Wait for the exit; the status, the lines printed after those already read, stderr.
    fn wait(&mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "iac did not exit within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest = std::iter::from_fn(|| self.lines.recv_timeout(WAIT).ok()).collect();
        (status, rest, self.stderr.recv_timeout(WAIT).unwrap_or_default())
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn latest_is_the_newest_n_printed_oldest_first_in_every_format() {
    let pg = PgServer::shared();
    // Two partitions whose times interleave; inserted in offset order, not time order.
    let db = sink_db(
        pg,
        "latest",
        &[(0, 0, 1, "00:00:01"), (0, 1, 2, "00:00:03"), (1, 0, 3, "00:00:02"), (1, 1, 4, "00:00:05"), (0, 2, 5, "00:00:04")],
    );
    let jsonl = |args: &[&str]| ids(&ok_stdout(&run_query(&db, &[&["messages", "--format", "jsonl"][..], args].concat())));
    assert_eq!(jsonl(&["--latest", "3"]), vec![2, 5, 4]);
    assert_eq!(jsonl(&["--latest", "1"]), vec![4]);
    // N beyond the table: every row, in time order.
    assert_eq!(jsonl(&["--latest", "100"]), vec![1, 3, 2, 5, 4]);
    // --limit keeps the server's order (here: insertion order), as before.
    assert_eq!(jsonl(&["--limit", "3"]), vec![1, 2, 3]);
    // --since first, then the newest of those.
    assert_eq!(jsonl(&["--latest", "10", "--since", "2026-01-01 00:00:03"]), vec![2, 5, 4]);
    assert_eq!(jsonl(&["--latest", "2", "--since", "2026-01-01 00:00:03"]), vec![5, 4]);

    let json: Value = serde_json::from_str(&ok_stdout(&run_query(&db, &["messages", "--format", "json", "--latest", "2"]))).unwrap();
    let json_ids: Vec<i64> = json.as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(json_ids, vec![5, 4]);
    // Only the table's columns are printed (the ordering columns ride along unseen).
    assert_eq!(json[1].as_object().unwrap().keys().collect::<Vec<_>>().len(), 6, "{json}");

    let table = ok_stdout(&run_query(&db, &["messages", "--latest", "2"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("__connect_topic | __connect_partition | __connect_offset | id | message"), "{table}");
    assert!(lines[2].contains("message 5") && lines[3].contains("message 4"), "{table}");
    assert_eq!(lines[4], "(2 rows)");

    // N = 0: nothing, in each format's way of saying so.
    assert_eq!(jsonl(&["--latest", "0"]), Vec::<i64>::new());
    assert_eq!(ok_stdout(&run_query(&db, &["messages", "--format", "json", "--latest", "0"])), "[]\n");
    let empty = ok_stdout(&run_query(&db, &["messages", "--latest", "0"]));
    assert!(empty.ends_with("(0 rows)\n") && empty.lines().count() == 3, "{empty}");

    // Ties in time are broken by the key (topic, partition, offset): the same rows every time.
    pg.psql(&db.name, &sink_rows(&[(1, 2, 6, "00:00:09"), (0, 3, 7, "00:00:09"), (0, 4, 8, "00:00:09")]));
    assert_eq!(jsonl(&["--latest", "3"]), vec![7, 8, 6]);
    assert_eq!(jsonl(&["--latest", "2"]), vec![8, 6]);

    // --latest and --limit contradict each other: a usage error.
    let o = run_query(&db, &["messages", "--latest", "2", "--limit", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("'--latest <N>' cannot be used with '--limit <N>'"), "{}", stderr(&o));
}

#[test]
fn latest_with_a_plain_primary_key_nulls_and_no_time_column() {
    let pg = PgServer::shared();
    let db = pg.fresh_database("latestpk");
    pg.psql(
        &db.name,
        &format!(
            "CREATE TABLE events (id int PRIMARY KEY, at timestamptz, note text);
             INSERT INTO events VALUES (1, NULL, 'a'), (2, '2026-01-02', 'b'), (3, '2026-01-01', 'c'),
                                       (4, '2026-01-02', 'd'), (5, NULL, 'e');
             CREATE TABLE plain (id int, note text); INSERT INTO plain VALUES (1, 'x'), (3, 'y'), (2, 'z');
             ALTER TABLE events OWNER TO {u}; ALTER TABLE plain OWNER TO {u};",
            u = db.user
        ),
    );
    let jsonl = |args: &[&str]| ids(&ok_stdout(&run_query(&db, &[&["messages", "--format", "jsonl", "--table"][..], args].concat())));
    // Ties by primary key; NULL times count as the oldest.
    assert_eq!(jsonl(&["events", "--latest", "2"]), vec![2, 4]);
    assert_eq!(jsonl(&["events", "--latest", "4"]), vec![5, 3, 2, 4]);
    assert_eq!(jsonl(&["events", "--latest", "9"]), vec![1, 5, 3, 2, 4]);
    // No timestamp column: say so, unless one is named (any column that orders rows will do).
    let o = run_query(&db, &["messages", "--table", "plain", "--latest", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("table \"plain\" has no timestamp column for --latest (name one with --time-column)"), "{}", stderr(&o));
    assert_eq!(jsonl(&["plain", "--latest", "2", "--time-column", "id"]), vec![2, 3]);
    let o = run_query(&db, &["messages", "--table", "plain", "--latest", "1", "--time-column", "nope"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    // A table with a time but no primary key can give its latest rows, but cannot be followed.
    let o = run_query(&db, &["messages", "--table", "plain", "--follow", "--time-column", "id", "--format", "jsonl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("table \"plain\" has no primary key: --follow needs one"), "{}", stderr(&o));
    // --time-column is only for flags that use a time.
    let o = run_query(&db, &["messages", "--table", "plain", "--time-column", "id"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn follow_prints_new_rows_once_late_rows_too_but_not_upsert_replays() {
    let pg = PgServer::shared();
    let db = sink_db(pg, "follow", &[(0, 0, 1, "00:00:01"), (0, 1, 2, "00:00:02"), (0, 2, 3, "00:00:03")]);
    let mut f = Follower::spawn(iac_query(&db, &["messages", "--follow", "--latest", "2", "--format", "jsonl", "--interval", "100ms"]));
    assert_eq!(f.ids(2), vec![2, 3]);

    // New rows, one of them in a partition that did not exist when the follow began.
    pg.psql(&db.name, &sink_rows(&[(0, 3, 4, "00:00:04"), (1, 0, 5, "00:00:05")]));
    assert_eq!(f.ids(2), vec![4, 5]);

    // In one transaction: the sink replays offset 1 of partition 0 (an upsert of a row already
    // printed) and partition 1 delivers a row stamped before everything printed so far.
    pg.psql(&db.name, &format!("BEGIN; {}; {}; COMMIT", sink_rows(&[(0, 1, 2, "00:00:02")]), sink_rows(&[(1, 1, 6, "00:00:00.5")])));
    assert_eq!(f.ids(1), vec![6], "the late row is printed when it arrives");
    pg.psql(&db.name, &sink_rows(&[(0, 4, 7, "00:00:07")]));
    assert_eq!(f.ids(1), vec![7], "the replayed row 2 must not be printed again");

    f.signal(libc::SIGINT);
    let (status, rest, err) = f.wait();
    assert_eq!(status.code(), Some(0), "exit on SIGINT: {err}");
    assert!(rest.is_empty(), "nothing after the last row: {rest:?}");
    assert_eq!(err, "");
}

#[test]
fn follow_by_time_and_primary_key_skips_rows_older_than_the_cursor() {
    let pg = PgServer::shared();
    let db = pg.fresh_database("followpk");
    pg.psql(
        &db.name,
        &format!(
            "CREATE TABLE events (id int8 PRIMARY KEY, at timestamptz NOT NULL, note text);
             INSERT INTO events VALUES (1, '2026-01-01 00:00:01+00', 'a'), (3, '2026-01-01 00:00:03+00', 'c'),
                                       (2, '2026-01-01 00:00:02+00', 'b');
             ALTER TABLE events OWNER TO {};",
            db.user
        ),
    );
    let mut f = Follower::spawn(iac_query(&db, &["messages", "--table", "events", "--follow", "--format", "jsonl", "--interval", "100ms"]));
    // Without --latest: every row, in time order.
    assert_eq!(f.ids(3), vec![1, 2, 3]);
    pg.psql(&db.name, "INSERT INTO events VALUES (5, '2026-01-01 00:00:04+00', 'e'), (4, '2026-01-01 00:00:04+00', 'd')");
    assert_eq!(f.ids(2), vec![4, 5], "a tie in time, ordered by the key");
    // A row older than the cursor is not printed (documented), and an upsert of a printed row
    // keeps its time and key, so it is not printed again.
    pg.psql(
        &db.name,
        "BEGIN; INSERT INTO events VALUES (6, '2026-01-01 00:00:00+00', 'late');
         INSERT INTO events VALUES (3, '2026-01-01 00:00:03+00', 'again') ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note;
         COMMIT",
    );
    pg.psql(&db.name, "INSERT INTO events VALUES (7, '2026-01-01 00:00:05+00', 'g')");
    assert_eq!(f.ids(1), vec![7]);

    f.signal(libc::SIGTERM);
    let (status, rest, err) = f.wait();
    assert_eq!(status.code(), Some(0), "exit on SIGTERM: {err}");
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn follow_as_a_table_applies_since_to_new_rows_and_ends_with_the_count() {
    let pg = PgServer::shared();
    let db = sink_db(pg, "followtable", &[(0, 0, 1, "00:00:01"), (0, 1, 2, "00:00:02")]);
    let mut f = Follower::spawn(iac_query(&db, &["messages", "--follow", "--since", "2026-01-01 00:00:02", "--interval", "100ms"]));
    let header = f.line();
    assert!(header.starts_with("__connect_topic | __connect_partition |"), "{header}");
    assert!(f.line().starts_with("----------------+-"));
    assert!(f.line().contains("message 2"));
    // A row before --since is read (the cursor moves past it) but not printed.
    pg.psql(&db.name, &sink_rows(&[(0, 2, 3, "00:00:01.5"), (0, 3, 4, "00:00:03")]));
    let row = f.line();
    assert!(row.contains("message 4"), "{row}");
    // Same column widths as the header.
    assert_eq!(row.find(" | "), header.find(" | "), "{header}\n{row}");
    f.signal(libc::SIGTERM);
    let (status, rest, err) = f.wait();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(rest, vec!["(2 rows)".to_string()]);
}

/// `--follow` started before the sink has created its table (it does with its first record)
/// waits for it instead of failing with "does not exist", says so once on stderr, then prints
/// the rows as they land; SIGINT while it waits ends it with exit 0 and no output.
#[test]
fn follow_waits_for_a_table_the_sink_has_not_created_yet() {
    let pg = PgServer::shared();
    let db = pg.fresh_database("follow_wait");
    let mut f = Follower::spawn(iac_query(&db, &["messages", "--follow", "--format", "jsonl", "--interval", "100ms"]));
    // Several polls find no table.
    std::thread::sleep(Duration::from_millis(600));
    assert!(f.child.try_wait().expect("try_wait").is_none(), "iac ended instead of waiting");
    pg.psql(
        &db.name,
        &format!(
            "{SINK_TABLE}; ALTER TABLE kafka_messages OWNER TO {}; {}",
            db.user,
            sink_rows(&[(0, 0, 1, "00:00:01"), (0, 1, 2, "00:00:02")])
        ),
    );
    assert_eq!(f.ids(2), vec![1, 2]);
    pg.psql(&db.name, &sink_rows(&[(0, 2, 3, "00:00:03")]));
    assert_eq!(f.ids(1), vec![3]);
    f.signal(libc::SIGINT);
    let (status, rest, err) = f.wait();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(err.matches("waiting for table").count(), 1, "said once: {err}");

    let empty = pg.fresh_database("follow_wait_stop");
    let mut f = Follower::spawn(iac_query(&empty, &["messages", "--follow", "--format", "jsonl", "--interval", "100ms"]));
    std::thread::sleep(Duration::from_millis(400));
    f.signal(libc::SIGINT);
    let (status, rest, err) = f.wait();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn follow_refuses_a_json_array() {
    let pg = PgServer::shared();
    let db = sink_db(pg, "followjson", &[]);
    let o = run_query(&db, &["messages", "--follow", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("use --format jsonl"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}

#[test]
fn follow_exits_3_when_the_server_stops() {
    let own = PgServer::builder().start();
    let db = sink_db(&own, "gone", &[(0, 0, 1, "00:00:01")]);
    let mut f = Follower::spawn(iac_query(&db, &["messages", "--follow", "--format", "jsonl", "--interval", "100ms"]));
    assert_eq!(f.ids(1), vec![1]);
    let stopped = Instant::now();
    own.stop();
    let (status, rest, err) = f.wait();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(rest.is_empty(), "{rest:?}");
    // The server's reason arrives when the follow is idle as the server shuts down. When a poll
    // is on the wire at that moment, the backend closes a socket holding unread data, the
    // kernel answers with a reset, and the client's kernel may discard the reason before the
    // client reads it: then the connection is only seen closed. Both are the same event.
    let lost = format!("lost the connection to PostgreSQL at {HOST}:{}: ", db.port);
    let reason = err.split_once(&lost).map(|(_, r)| r.lines().next().unwrap_or_default()).unwrap_or_else(|| panic!("{err}"));
    assert!(
        ["terminating connection due to administrator command", "connection closed"].contains(&reason)
            || reason.contains("Connection reset by peer"),
        "{err}"
    );
    assert!(stopped.elapsed() < Duration::from_secs(10), "noticed after {:?}", stopped.elapsed());
}

/// The poll reads the primary-key index only: on a table of 120,000 rows, a follow that polls
/// every 20 ms for a second adds exactly one sequential scan (the `--latest` top-N at the
/// start) and at least one index scan per poll, read from the server's own statistics.
#[test]
fn follow_polls_through_the_primary_key_index() {
    let pg = PgServer::shared();
    let db = sink_db(pg, "cheap", &[]);
    pg.psql(
        &db.name,
        "INSERT INTO kafka_messages
           SELECT 'demo-messages', i % 3, i / 3, i, 'message ' || i, timestamp '2026-01-01' + i * interval '1 ms'
           FROM generate_series(0, 119999) i;
         ANALYZE kafka_messages",
    );
    let scans = || -> (i64, i64) {
        let out = pg.psql(&db.name, "SELECT seq_scan, idx_scan FROM pg_stat_user_tables WHERE relname = 'kafka_messages'");
        let mut it = out.trim().split('|').map(|n| n.parse::<i64>().expect("a count"));
        (it.next().unwrap(), it.next().unwrap())
    };
    let before = scans();
    let mut f = Follower::spawn(iac_query(&db, &["messages", "--follow", "--latest", "1", "--format", "jsonl", "--interval", "20ms"]));
    assert_eq!(f.ids(1), vec![119_999]);
    for (i, p) in [(120_000, 0), (120_001, 1), (120_002, 2)] {
        pg.psql(&db.name, &format!("INSERT INTO kafka_messages VALUES ('demo-messages', {p}, 40000, {i}, 'new', '2026-01-02')"));
        assert_eq!(f.ids(1), vec![i]);
    }
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    f.signal(libc::SIGINT);
    let (status, _, err) = f.wait();
    assert_eq!(status.code(), Some(0), "{err}");
    let polls_at_least = (started.elapsed().as_millis() / 200) as i64; // generous: 1 in 10
    // The backend reports its counters when it exits; wait for it to be gone.
    let deadline = Instant::now() + WAIT;
    while pg.psql(&db.name, &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{}'", db.user)).trim() != "0" {
        assert!(Instant::now() < deadline, "the backend did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = scans();
    let (seq, idx) = (after.0 - before.0, after.1 - before.1);
    eprintln!("sequential scans {seq}, index scans {idx}");
    assert_eq!(seq, 1, "only the --latest read may scan the table");
    assert!(idx >= polls_at_least, "{idx} index scans, expected at least {polls_at_least}");
}
