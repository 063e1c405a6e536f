//! How long the firewall part of `iac drift` takes for one host of a 1,000-host estate (the host
//! with the largest ruleset), excluding SSH: `cargo run --release --example drift_bench` (docs/drift.md).
//!
//! 1. The expected side: the host's rendered ruleset loaded into a scratch network namespace by
//!    the real `nft` and listed as JSON (`drift::firewall::expected_listing`, a process per host).
//! 2. Parse both listings with the `nftables` crate and compare (`drift::firewall::check`): for
//!    a live ruleset equal to the render, and for one with drift (a rule added, a set element
//!    removed, a policy changed, a foreign table that drops).
//!
//! Each figure is the median of its runs, with the fastest, the 90th percentile and the
//! slowest. The estate is the one `examples/perf.rs` measures renders with: 3 servers, every
//! tenth host a k3s agent, every twentieth a PostgreSQL host, nodes spread through the address
//! space so their sets cannot aggregate (the largest sets).
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark's report is its output")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark run by hand: a failure ends it with its message")]

use std::process::Command;
use std::time::{Duration, Instant};

use iac::drift::firewall::{self, Tools};

const HOSTS: usize = 1_000;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(&inventory, estate(HOSTS)).unwrap();
    let site = iac::load_site(&inventory).unwrap();
    let flows = iac::render::flows(&site);
    // The host with the largest rendered ruleset: the worst case.
    let (host, rendered) =
        site.hosts.iter().map(|h| (h, iac::drift::rendered_ruleset(&flows, h).unwrap())).max_by_key(|(_, text)| text.len()).unwrap();
    let tools = Tools::locate().unwrap();

    let (expected, load) = timed(11, || firewall::expected_listing(&tools, &rendered).unwrap());
    let drifted = live_with_drift(&rendered);
    let parsed = firewall::ruleset::parse(&expected).unwrap();
    let table = parsed.tables.values().next().unwrap();
    let elements: usize = table.sets.values().map(|s| s.elements.len()).sum();
    let rules: usize = table.chains.values().map(|c| c.rules.len()).sum();
    println!(
        "host {} of {HOSTS} hosts (the largest ruleset): {} sets, {elements} set elements (as ranges), {rules} rules; listing {:.1} KiB",
        host.name,
        table.sets.len(),
        expected.len() as f64 / 1024.0
    );
    println!("| step | runs | median | fastest | p90 | slowest |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    row("expected side: load + list in a scratch namespace (nft, a process)", &load);
    let (report, same) = timed(101, || firewall::check(&expected, &expected));
    assert!(report.findings.is_empty(), "{report:?}");
    row("parse both + compare, no drift", &same);
    let (report, drift) = timed(101, || firewall::check(&expected, &drifted));
    assert_eq!(report.findings.len(), 4, "{report:#?}");
    row("parse both + compare, 4 differences", &drift);
    let (_, parse) = timed(101, || firewall::ruleset::parse(&expected).unwrap());
    row("of which: parse one listing", &parse);
}

/// The rendered ruleset loaded, then changed as a hand edit would (a second transaction), and
/// the whole ruleset listed: what `nft -j list ruleset` on the host would print.
fn live_with_drift(rendered: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (base, change) = (dir.path().join("base.nft"), dir.path().join("change.nft"));
    std::fs::write(&base, rendered).unwrap();
    std::fs::write(
        &change,
        "add rule inet iac input ip saddr 10.9.9.9 tcp dport 8080 accept\n\
         delete element inet iac admin { 172.16.0.0/24 }\n\
         chain inet iac forward { policy accept; }\n\
         table ip filter {\n chain FORWARD { type filter hook forward priority 0; policy drop; }\n}\n",
    )
    .unwrap();
    let out = Command::new("unshare")
        .args(["-rn", "/bin/sh", "-c", r#"nft -f "$1" && nft -f "$2" && nft -j list ruleset"#, "sh"])
        .arg(&base)
        .arg(&change)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn timed<T>(runs: usize, mut f: impl FnMut() -> T) -> (T, Vec<Duration>) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        last = Some(f());
        times.push(start.elapsed());
    }
    times.sort();
    (last.unwrap(), times)
}

fn row(what: &str, sorted: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p90 = sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)];
    println!(
        "| {what} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
        sorted.len(),
        ms(sorted[sorted.len() / 2]),
        ms(sorted[0]),
        ms(p90),
        ms(sorted[sorted.len() - 1])
    );
}

/// The 1,000-host estate of `examples/perf.rs` (same shape, written out here: examples cannot
/// share code).
fn estate(n: usize) -> String {
    let mut s = String::from(
        "[site]\nname = \"bench\"\n[networks.lan]\ncidr = \"172.16.0.0/12\"\n[access]\nadmin = [\"172.16.0.0/24\"]\n\
         [dns]\nupstream = [\"192.168.53.53\"]\n[cluster]\npod_cidr = \"10.42.0.0/16\"\nservice_cidr = \"10.43.0.0/16\"\n\
         token = \"k3s-token\"\n[admins.a]\nkey = \"age1sr4730t9hmwqf5nlk0tukp9tuekwpjecjjvqxkup7hve7pq4zc0snpe7c6\"\n\
         [secrets.k3s-token]\nkind = \"k3s-token\"\n",
    );
    let mut dbs = String::new();
    for i in 0..n {
        let role = match i {
            0 | 2 | 3 => "\"k3s-server\"",
            1 => "\"k3s-agent\"",
            i if i % 10 == 1 => "\"k3s-agent\"",
            i if i % 20 == 5 => "\"postgresql\"",
            _ => "",
        };
        if role.contains("postgresql") {
            dbs.push_str(&format!(
                "[databases.db{i}]\nhost = \"h{i}\"\nowner = \"app{i}\"\npassword = \"db{i}\"\nclients = [\"cluster\", \"admin\"]\n[secrets.db{i}]\nkind = \"password\"\n"
            ));
        }
        s.push_str(&format!("[hosts.h{i}]\naddress = \"172.16.{}.{}\"\nroles = [{role}]\n", 1 + i / 250, 1 + i % 250));
    }
    s.push_str(&dbs);
    s
}
