//! Benchmark: `iac query messages --format jsonl` against psql reading the same table every
//! way it can, on the same throwaway server: `COPY … TO STDOUT` as text, CSV and binary, and
//! `COPY (SELECT row_to_json(t) …)` (the only one that writes JSON, like iac).
//!
//!     cargo run --release --example query_bench            # 1,000,000 rows, 5 rounds
//!     cargo run --release --example query_bench -- --quick # 200,000 rows, 3 rounds
//!     cargo run --release --example query_bench -- 300000  # another row count
//!     IAC_COMPARE=/tmp/iac-old cargo run --release --example query_bench  # A/B of two builds
//!
//! Builds the release `iac` first (when run through cargo), starts PostgreSQL
//! (tests/it/support/pg.rs), loads the rows into a table shaped like the JDBC sink's, then runs
//! every command once per round, alternating, each read through a pipe. Per command it prints
//! the median (min–max) of: wall time; client CPU and peak RSS (wait4); server CPU, the CPU of
//! the backend that served it. That is read as the growth of the postmaster's cutime + cstime
//! (`/proc/PID/stat` fields 16 and 17: the user and system time of its children that have
//! exited and been reaped) once every child the command started (its backend, any parallel
//! worker) is gone; autovacuum is off, so no other child exits meanwhile.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark's report is its output")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark run by hand: a failure ends it with its message")]

#[path = "../tests/it/support/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Measure {
    wall: f64,
    client_cpu: f64,
    server_cpu: f64,
    maxrss_kib: i64,
    lines: usize,
    bytes: usize,
}

/// The postmaster: its children's CPU (seconds) and how many children it has.
struct Postmaster {
    pid: u32,
    tick: f64,
}

impl Postmaster {
    fn of(pg: &pg::PgServer) -> Postmaster {
        let data = pg.psql("postgres", "SHOW data_directory");
        let pidfile = std::fs::read_to_string(std::path::Path::new(data.trim()).join("postmaster.pid")).expect("postmaster.pid");
        let pid = pidfile.lines().next().and_then(|l| l.trim().parse().ok()).expect("postmaster pid");
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Postmaster { pid, tick }
    }

    /// cutime + cstime: the CPU of every child that has exited and been reaped.
    fn children_cpu(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).expect("postmaster stat");
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // rest starts at field 3 (state): cutime is field 16, cstime field 17.
        let ticks: u64 = f[13].parse::<u64>().expect("cutime") + f[14].parse::<u64>().expect("cstime");
        ticks as f64 / self.tick
    }

    fn children(&self) -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid))
            .map_or_else(|_| Vec::new(), |c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect())
    }

    /// Wait until every child that is not in `before` has exited and been reaped (the
    /// backend of the last command, and any parallel workers).
    fn settle(&self, before: &[u32]) {
        let start = Instant::now();
        while self.children().iter().any(|c| !before.contains(c)) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Run a command, reading its output through a pipe; reaped with wait4 for its rusage.
#[allow(clippy::zombie_processes)]
fn measure(mut cmd: Command, server: &Postmaster) -> Measure {
    let idle = server.children();
    let server_before = server.children_cpu();
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
    let wall = start.elapsed().as_secs_f64();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "command failed: {status}");
    server.settle(&idle);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Measure {
        wall,
        client_cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        server_cpu: server.children_cpu() - server_before,
        maxrss_kib: usage.ru_maxrss,
        lines,
        bytes,
    }
}

/// Sorted samples: `median (min–max)`.
fn spread(v: impl Iterator<Item = f64>, scale: f64, unit: &str, digits: usize) -> (f64, String) {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    let text = format!("{:.digits$} {unit} ({:.digits$}–{:.digits$})", median * scale, v[0] * scale, v[n - 1] * scale);
    (median, text)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let rows: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(if quick { 200_000 } else { 1_000_000 });
    let rounds = if quick { 3 } else { 5 };
    let exe = std::env::current_exe().expect("current exe");
    let release_dir = exe.parent().and_then(|p| p.parent()).expect("target/release").to_path_buf();
    if let Some(cargo) = std::env::var_os("CARGO") {
        let ok = Command::new(cargo).args(["build", "--release", "--bin", "iac"]).status().expect("cargo");
        assert!(ok.success(), "cargo build --release failed");
    }
    // IAC_BIN: measure another build (e.g. target/debug/iac) instead.
    let iac: PathBuf = std::env::var_os("IAC_BIN").map_or_else(|| release_dir.join("iac"), PathBuf::from);
    assert!(iac.exists(), "{} missing: cargo build --release", iac.display());

    // No autovacuum worker may exit during a measurement: its CPU would count as the server's.
    let pg = pg::PgServer::builder().conf("autovacuum = off").start();
    let server = Postmaster::of(&pg);
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
    println!("## iac query against psql: {rows} rows of the sink table, {rounds} alternating rounds; median (min–max)");
    println!(
        "loaded in {:.1} s (PostgreSQL {}); load before: {}",
        t.elapsed().as_secs_f64(),
        pg.psql("postgres", "SHOW server_version").trim(),
        load()
    );

    type Build<'a> = Box<dyn Fn() -> Command + 'a>;
    let (pg_ref, db_ref) = (&pg, &db);
    let psql = |sql: &'static str| -> Build<'_> {
        Box::new(move || {
            let mut c = pg_ref.program("psql");
            db_ref.apply_env(&mut c).args(["-X", "-q", "-c", sql]);
            c
        })
    };
    let iac_cmd = |bin: PathBuf| -> Build<'_> {
        Box::new(move || {
            let mut c = Command::new(&bin);
            db_ref.apply_env(&mut c).args(["query", "--table", "kafka_messages", "messages", "--format", "jsonl"]);
            c.env("IAC_INVENTORY", "/nonexistent");
            c
        })
    };
    let mut methods: Vec<(String, Build<'_>, bool)> = vec![
        ("iac query messages --format jsonl".into(), iac_cmd(iac.clone()), true),
        (
            "psql COPY (SELECT row_to_json(t) …) TO STDOUT".into(),
            psql("COPY (SELECT row_to_json(t) FROM kafka_messages t) TO STDOUT"),
            true,
        ),
        ("psql COPY … TO STDOUT (text)".into(), psql("COPY kafka_messages TO STDOUT"), true),
        ("psql COPY … TO STDOUT (csv)".into(), psql("COPY kafka_messages TO STDOUT (FORMAT csv)"), true),
        ("psql COPY … TO STDOUT (binary)".into(), psql("COPY kafka_messages TO STDOUT (FORMAT binary)"), false),
    ];
    // IAC_COMPARE: another build of iac, measured as one more command (an A/B of a change).
    if let Some(other) = std::env::var_os("IAC_COMPARE") {
        methods.push((format!("iac ({})", other.to_string_lossy()), iac_cmd(PathBuf::from(other)), true));
    }
    // Warm the server's cache and the page cache of both programs.
    for (_, build, _) in &methods {
        measure(build(), &server);
    }
    let mut results: Vec<Vec<Measure>> = methods.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for k in 0..methods.len() {
            // Rotate the order each round, so no command always runs first.
            let i = (k + round) % methods.len();
            results[i].push(measure((methods[i].1)(), &server));
        }
    }
    println!("load after: {}", load());
    println!("| command | n | wall | client CPU | server CPU | total CPU | client peak RSS | output |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut medians = Vec::new();
    for ((name, _, lines_per_row), ms) in methods.iter().zip(&results) {
        if *lines_per_row {
            assert!(ms.iter().all(|m| m.lines == rows), "{name}: {} lines for {rows} rows", ms[0].lines);
        }
        let (wall, wall_text) = spread(ms.iter().map(|m| m.wall), 1.0, "s", 2);
        let (_, client) = spread(ms.iter().map(|m| m.client_cpu), 1.0, "s", 2);
        let (_, server_cpu) = spread(ms.iter().map(|m| m.server_cpu), 1.0, "s", 2);
        let (total, total_text) = spread(ms.iter().map(|m| m.client_cpu + m.server_cpu), 1.0, "s", 2);
        let (_, rss) = spread(ms.iter().map(|m| m.maxrss_kib as f64), 1.0 / 1024.0, "MiB", 1);
        println!(
            "| {name} | {} | {wall_text} | {client} | {server_cpu} | {total_text} | {rss} | {:.0} MiB |",
            ms.len(),
            ms[0].bytes as f64 / 1048576.0
        );
        medians.push((wall, total));
    }
    let (iac_wall, iac_cpu) = medians[0];
    for (i, label) in [(1, "row_to_json"), (2, "COPY text"), (3, "COPY csv"), (4, "COPY binary")] {
        println!("iac / psql {label}: wall {:.2}x, total CPU {:.2}x", iac_wall / medians[i].0, iac_cpu / medians[i].1);
    }
    let peak = results[0].iter().map(|m| m.maxrss_kib).max().unwrap_or(0) as f64 / 1024.0;
    let wall_ratio = iac_wall / medians[1].0;
    println!("target: iac within 1.5x of psql's JSON (row_to_json) wall time: {}", if wall_ratio <= 1.5 { "met" } else { "MISSED" });
    println!("target: iac peak RSS under 50 MiB: {peak:.1} MiB, {}", if peak < 50.0 { "met" } else { "MISSED" });
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "unknown".into(), |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}
