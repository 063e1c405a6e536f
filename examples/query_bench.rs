//! Benchmark: `iac query messages --format jsonl` against psql's
//! `\copy (select row_to_json(t) from kafka_messages t) to stdout` on the same throwaway server.
//!
//!     cargo run --release --example query_bench            # 1,000,000 rows
//!     cargo run --release --example query_bench -- 200000  # fewer
//!
//! Builds the release `iac` first, starts PostgreSQL (tests/it/support/pg.rs), loads the rows
//! into a table shaped like the JDBC sink's, then runs each command several times, alternating,
//! with its output read through a pipe. Prints wall time, CPU time and peak RSS (wait4) of each,
//! and the ratios. Targets: iac within 1.5x of psql's wall time, under 50 MiB peak.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark's report is its output")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark run by hand: a failure ends it with its message")]

#[path = "../tests/it/support/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 3;

struct Measure {
    wall: Duration,
    cpu: Duration,
    maxrss_kib: i64,
    lines: usize,
    bytes: usize,
}

/// Run a command, reading its output through a pipe; reaped with wait4 for its rusage.
#[allow(clippy::zombie_processes)]
fn measure(mut cmd: Command) -> Measure {
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let (mut bytes, mut lines, mut buf) = (0usize, 0usize, vec![0u8; 1 << 16]);
        loop {
            let n = out.read(&mut buf).expect("read");
            if n == 0 {
                break (bytes, lines);
            }
            bytes += n;
            lines += buf[..n].iter().filter(|b| **b == b'\n').count();
        }
    });
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as i32;
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid, "wait4");
    let (bytes, lines) = reader.join().expect("reader");
    let wall = start.elapsed();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "command failed: {status}");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Measure { wall, cpu: tv(usage.ru_utime) + tv(usage.ru_stime), maxrss_kib: usage.ru_maxrss, lines, bytes }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rows: usize = std::env::args().nth(1).map_or(1_000_000, |a| a.parse().expect("ROWS"));
    let exe = std::env::current_exe().expect("current exe");
    let release_dir = exe.parent().and_then(|p| p.parent()).expect("target/release").to_path_buf();
    if let Some(cargo) = std::env::var_os("CARGO") {
        let ok = Command::new(cargo).args(["build", "--release", "--bin", "iac"]).status().expect("cargo");
        assert!(ok.success(), "cargo build --release failed");
    }
    // IAC_BIN: measure another build (e.g. target/debug/iac) instead.
    let iac: PathBuf = std::env::var_os("IAC_BIN").map_or_else(|| release_dir.join("iac"), PathBuf::from);
    assert!(iac.exists(), "{} missing: cargo build --release", iac.display());

    let pg = pg::PgServer::builder().start();
    let db = pg.fresh_database("bench");
    let t = Instant::now();
    pg.psql(
        &db.name,
        &format!(
            "CREATE TABLE kafka_messages (
                __connect_topic text NOT NULL, __connect_partition int4 NOT NULL,
                __connect_offset int8 NOT NULL, id int8, message text, source text,
                created_at timestamptz, payload jsonb,
                PRIMARY KEY (__connect_topic, __connect_partition, __connect_offset));
             INSERT INTO kafka_messages
               SELECT 'demo-messages', i % 3, i, i, 'Demo message number ' || i || ' from the producer',
                      'demo-producer', timestamptz '2026-11-25 12:00:00+00' + i * interval '1 ms',
                      jsonb_build_object('seq', i, 'ok', i % 2 = 0, 'tags', jsonb_build_array('demo', 'bench'))
               FROM generate_series(1, {rows}) i;
             ALTER TABLE kafka_messages OWNER TO {};",
            db.user
        ),
    );
    pg.psql(&db.name, "VACUUM ANALYZE kafka_messages");
    println!("loaded {rows} rows in {:.1}s (PostgreSQL {})", t.elapsed().as_secs_f64(), pg.psql("postgres", "SHOW server_version").trim());

    let iac_cmd = || {
        let mut c = Command::new(&iac);
        db.apply_env(&mut c).args(["query", "--table", "kafka_messages", "messages", "--format", "jsonl"]);
        c.env("IAC_INVENTORY", "/nonexistent");
        c
    };
    let psql_cmd = || {
        let mut c = pg.program("psql");
        db.apply_env(&mut c).args(["-X", "-q", "-c", "\\copy (select row_to_json(t) from kafka_messages t) to stdout"]);
        c
    };
    // Warm the server's cache and the page cache of both programs.
    measure(iac_cmd());
    measure(psql_cmd());
    let (mut iacs, mut psqls) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        iacs.push(measure(iac_cmd()));
        psqls.push(measure(psql_cmd()));
    }
    for (name, ms) in [("iac query messages --format jsonl", &iacs), ("psql \\copy row_to_json", &psqls)] {
        assert!(ms.iter().all(|m| m.lines == rows), "{name}: wrong line count {}", ms[0].lines);
        let walls: Vec<String> = ms.iter().map(|m| format!("{:.2}", m.wall.as_secs_f64())).collect();
        println!(
            "{name:34} wall median {:.2}s [{}]  cpu median {:.2}s  peak RSS {:.1} MiB  output {} MiB",
            median(ms.iter().map(|m| m.wall).collect()).as_secs_f64(),
            walls.join(" "),
            median(ms.iter().map(|m| m.cpu).collect()).as_secs_f64(),
            ms.iter().map(|m| m.maxrss_kib).max().unwrap_or(0) as f64 / 1024.0,
            ms[0].bytes >> 20,
        );
    }
    let wall_ratio =
        median(iacs.iter().map(|m| m.wall).collect()).as_secs_f64() / median(psqls.iter().map(|m| m.wall).collect()).as_secs_f64();
    let peak = iacs.iter().map(|m| m.maxrss_kib).max().unwrap_or(0) as f64 / 1024.0;
    println!("ratio iac/psql wall {wall_ratio:.2}x (target <= 1.5x: {})", if wall_ratio <= 1.5 { "met" } else { "MISSED" });
    println!("iac peak RSS {peak:.1} MiB (target < 50 MiB: {})", if peak < 50.0 { "met" } else { "MISSED" });
}
