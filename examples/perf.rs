//! Performance figures for docs/PERFORMANCE.md: `scripts/bench` builds in release and runs this.
//!
//! 1. `iac render` end to end (process start to exit) and its peak RSS, for inventories of
//!    3, 100, 1,000 and 10,000 hosts.
//! 2. The rules a packet can traverse in a k3s node's input and forward chains (counted by the
//!    real `nft` from its JSON listing, parsed with the `nftables` crate) and the set sizes.
//! 3. `nft -f` load time of the 1,000- and 10,000-host node rulesets in a network namespace.
//! 4. TCP throughput between two namespaces through a router namespace's forward chain, with
//!    the 1,000-host node ruleset loaded and with no ruleset (needs root for `ip netns`).
//!
//! Hidden modes (`--inside-load`, `--serve`, `--send`) are this program re-executed inside a
//! network namespace.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark's report is its output")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark run by hand: a failure ends it with its message")]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--inside-load") => return inside_load(Path::new(&args[2])),
        Some("--serve") => return serve(&args[2], args[3].parse()?),
        Some("--send") => return send(&args[2], args[3].parse()?),
        _ => {}
    }
    let iac = release_binary()?;
    let work = tempfile::tempdir()?;
    println!("machine: {} cores, {}", cores(), cpu_model());
    println!();
    // The same render into the machine's disk (where users render) and into tmpfs (which
    // separates iac's own cost from the filesystem's metadata latency).
    let shm = tempfile::tempdir_in("/dev/shm").unwrap_or(tempfile::tempdir()?);
    println!("## iac render, end to end (median of runs; CPU and peak RSS of the process)");
    println!(
        "| hosts | k3s nodes | files | output | runs | disk: median | tmpfs: median | tmpfs: user+sys CPU | per host (tmpfs) | peak RSS |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut node_rulesets = Vec::new();
    for &n in &[3usize, 100, 1_000, 10_000] {
        let dir = work.path().join(format!("n{n}"));
        std::fs::create_dir_all(&dir)?;
        let inv = dir.join("inventory.toml");
        let (text, nodes) = inventory(n);
        std::fs::write(&inv, text)?;
        let runs = if n >= 10_000 { 3 } else { 7 };
        let measure = |out: &Path| -> Res<(Duration, Duration, i64)> {
            let (mut times, mut cpus, mut rss) = (Vec::new(), Vec::new(), 0);
            for _ in 0..runs {
                let (t, cpu, r) = timed_child(Command::new(&iac).args(["render", "--inventory"]).arg(&inv).arg("--out").arg(out))?;
                times.push(t);
                cpus.push(cpu);
                rss = rss.max(r);
            }
            Ok((median(&mut times), median(&mut cpus), rss))
        };
        let (disk, _, _) = measure(&dir.join("out"))?;
        let (tmpfs, cpu, rss) = measure(&shm.path().join(format!("n{n}")))?;
        std::fs::remove_dir_all(shm.path().join(format!("n{n}")))?;
        let (files, bytes) = tree_size(&dir.join("out"))?;
        println!(
            "| {n} | {nodes} | {files} | {:.1} MiB | {runs} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} µs | {:.1} MiB |",
            bytes as f64 / 1048576.0,
            ms(disk),
            ms(tmpfs),
            ms(cpu),
            tmpfs.as_secs_f64() * 1e6 / n as f64,
            rss as f64 / 1024.0
        );
        node_rulesets.push((n, dir.join("out/h1/nftables.nft")));
    }

    println!();
    println!("## Rules per chain of a k3s agent's ruleset (from `nft -j list table inet iac`)");
    println!("| hosts | input rules | forward rules | set elements (all sets) | nft -f load (median of 5) |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for (n, file) in &node_rulesets {
        let out = Command::new("unshare").arg("-rn").arg(std::env::current_exe()?).arg("--inside-load").arg(file).output()?;
        if !out.status.success() {
            return Err(format!("load of {} failed: {}", file.display(), String::from_utf8_lossy(&out.stderr)).into());
        }
        let report = String::from_utf8(out.stdout)?;
        println!("| {n} | {} |", report.trim());
    }

    println!();
    match throughput(&node_rulesets[2].1) {
        Ok(()) => {}
        Err(e) => println!("throughput: skipped ({e})"),
    }
    Ok(())
}

/// An estate of `n` hosts: 3 servers (1 when n = 3), every tenth host a k3s agent, every
/// twentieth a PostgreSQL host with its own database, the rest plain hosts. Nodes are spread
/// through the address space so their sets cannot aggregate: the worst case for set sizes.
fn inventory(n: usize) -> (String, usize) {
    let mut s = String::from(
        "[site]\nname = \"bench\"\n[networks.lan]\ncidr = \"172.16.0.0/12\"\n[access]\nadmin = [\"172.16.0.0/24\"]\n\
         [dns]\nupstream = [\"192.168.53.53\"]\n[cluster]\npod_cidr = \"10.42.0.0/16\"\nservice_cidr = \"10.43.0.0/16\"\n\
         token = \"k3s-token\"\n[admins.a]\nkey = \"age1sr4730t9hmwqf5nlk0tukp9tuekwpjecjjvqxkup7hve7pq4zc0snpe7c6\"\n\
         [secrets.k3s-token]\nkind = \"k3s-token\"\n",
    );
    let mut nodes = 0;
    let mut dbs = String::new();
    for i in 0..n {
        let role = match i {
            0 => "\"k3s-server\"",
            1 => "\"k3s-agent\"",
            2 if n == 3 => "\"postgresql\"",
            2 => "\"k3s-server\"",
            3 => "\"k3s-server\"",
            i if i % 10 == 1 => "\"k3s-agent\"",
            i if i % 20 == 5 => "\"postgresql\"",
            _ => "",
        };
        if role.contains("k3s") {
            nodes += 1;
        }
        if role.contains("postgresql") {
            dbs.push_str(&format!(
                "[databases.db{i}]\nhost = \"h{i}\"\nowner = \"app{i}\"\npassword = \"db{i}\"\nclients = [\"cluster\", \"admin\"]\n[secrets.db{i}]\nkind = \"password\"\n"
            ));
        }
        s.push_str(&format!("[hosts.h{i}]\naddress = \"172.16.{}.{}\"\nroles = [{role}]\n", 1 + i / 250, 1 + i % 250));
    }
    s.push_str(&dbs);
    (s, nodes)
}

fn release_binary() -> Res<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("iac")).ok_or("no target dir")?;
    if !bin.exists() {
        return Err(format!("{} is missing: run scripts/bench (cargo build --release first)", bin.display()).into());
    }
    Ok(bin)
}

/// Run a child to completion; wall time, user+sys CPU time and its peak RSS in KiB (from
/// wait4's rusage).
fn timed_child(cmd: &mut Command) -> Res<(Duration, Duration, i64)> {
    let start = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 on our own child's pid with valid pointers; std's Child is not waited twice.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("render failed (status {status})").into());
    }
    std::mem::forget(child);
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Ok((elapsed, tv(usage.ru_utime) + tv(usage.ru_stime), usage.ru_maxrss))
}

fn tree_size(dir: &Path) -> Res<(usize, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            let (f, b) = tree_size(&e.path())?;
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += e.metadata()?.len();
        }
    }
    Ok((files, bytes))
}

/// Inside a fresh network namespace: load the ruleset 5 times, count rules and set elements.
fn inside_load(file: &Path) -> Res<()> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let st = Command::new("nft").arg("-f").arg(file).status()?;
        times.push(start.elapsed());
        if !st.success() {
            return Err("nft -f failed".into());
        }
    }
    let json = Command::new("nft").args(["-j", "list", "table", "inet", "iac"]).output()?.stdout;
    let parsed: nftables::schema::Nftables = serde_json::from_slice(&json)?;
    let (mut input, mut forward, mut elements) = (0, 0, 0);
    for obj in parsed.objects.iter() {
        match obj {
            nftables::schema::NfObject::ListObject(nftables::schema::NfListObject::Rule(r)) if r.chain == "input" => input += 1,
            nftables::schema::NfObject::ListObject(nftables::schema::NfListObject::Rule(r)) if r.chain == "forward" => forward += 1,
            nftables::schema::NfObject::ListObject(nftables::schema::NfListObject::Set(s)) => {
                elements += s.elem.as_ref().map_or(0, |e| e.len());
            }
            _ => {}
        }
    }
    println!("{input} | {forward} | {elements} | {:.1} ms", ms(median(&mut times)));
    Ok(())
}

/// Alternating rounds per throughput setting; a shared VM's throughput swings by ±30 % from
/// one 2 s run to the next, so the medians need many.
const ROUNDS: usize = 11;

/// Namespaces a (10.42.0.2) — r (router, forward chain under test) — b (10.42.1.2).
fn throughput(ruleset: &Path) -> Res<()> {
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root for ip netns".into());
    }
    let tag = format!("iacperf{}", std::process::id());
    let ns = Netns { names: ["a", "r", "b"].iter().map(|n| format!("{tag}{n}")).collect() };
    let [a, r, b] = [&ns.names[0], &ns.names[1], &ns.names[2]];
    for n in &ns.names {
        ip(&["netns", "add", n])?;
        ip(&["-n", n, "link", "set", "lo", "up"])?;
    }
    ip(&["link", "add", "ia", "netns", a, "type", "veth", "peer", "name", "ra", "netns", r])?;
    ip(&["link", "add", "ib", "netns", b, "type", "veth", "peer", "name", "rb", "netns", r])?;
    for (n, dev, addr) in [(a, "ia", "10.42.0.2/24"), (r, "ra", "10.42.0.1/24"), (r, "rb", "10.42.1.1/24"), (b, "ib", "10.42.1.2/24")] {
        ip(&["-n", n, "addr", "add", addr, "dev", dev])?;
        ip(&["-n", n, "link", "set", dev, "up"])?;
    }
    ip(&["-n", a, "route", "add", "default", "via", "10.42.0.1"])?;
    ip(&["-n", b, "route", "add", "default", "via", "10.42.1.1"])?;
    run(Command::new("ip").args(["netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"]))?;
    let me = std::env::current_exe()?;
    let connections = (3 * ROUNDS).to_string();
    let mut server = Command::new("ip")
        .args(["netns", "exec", b])
        .arg(&me)
        .args(["--serve", "10.42.1.2:5201", &connections])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let measure = || -> Res<f64> {
        let out = Command::new("ip").args(["netns", "exec", a]).arg(&me).args(["--send", "10.42.1.2:5201", "2"]).output()?;
        Ok(String::from_utf8(out.stdout)?.trim().parse::<f64>()?)
    };
    // A third setting separates conntrack's cost (which every k3s node pays anyway: kube-proxy
    // and flannel NAT through it) from the cost of our rules and sets.
    let conntrack_only = std::env::temp_dir().join(format!("{tag}-ct.nft"));
    std::fs::write(
        &conntrack_only,
        "table inet ctonly {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tct state established,related accept\n\t}\n}\n",
    )?;
    let (mut bare, mut ct, mut with) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        run(Command::new("ip").args(["netns", "exec", r, "nft", "flush", "ruleset"]))?;
        bare.push(measure()?);
        run(Command::new("ip").args(["netns", "exec", r, "nft", "-f"]).arg(&conntrack_only))?;
        ct.push(measure()?);
        run(Command::new("ip").args(["netns", "exec", r, "nft", "flush", "ruleset"]))?;
        run(Command::new("ip").args(["netns", "exec", r, "nft", "-f"]).arg(ruleset))?;
        with.push(measure()?);
    }
    let _ = std::fs::remove_file(&conntrack_only);
    let _ = server.kill();
    let _ = server.wait();
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (bm, cm, wm) = (med(&mut bare), med(&mut ct), med(&mut with));
    println!("## Forward-chain throughput, TCP a -> r -> b, {ROUNDS} alternating rounds of 2 s each");
    println!("| ruleset in r | median | runs (Gbit/s) |");
    println!("| --- | ---: | --- |");
    println!("| none | {bm:.2} Gbit/s | {} |", list(&bare));
    println!("| conntrack only (one `ct state` rule) | {cm:.2} Gbit/s | {} |", list(&ct));
    println!("| 1,000-host node ruleset | {wm:.2} Gbit/s | {} |", list(&with));
    println!(
        "ruleset/none: {:.1}%  conntrack-only/none: {:.1}%  ruleset/conntrack-only: {:.1}%",
        wm / bm * 100.0,
        cm / bm * 100.0,
        wm / cm * 100.0
    );
    Ok(())
}

struct Netns {
    names: Vec<String>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(args: &[&str]) -> Res<()> {
    run(Command::new("ip").args(args))
}

fn run(cmd: &mut Command) -> Res<()> {
    let out = cmd.output()?;
    if out.status.success() { Ok(()) } else { Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)).into()) }
}

/// Sink `connections` TCP connections, then exit (so nothing outlives the benchmark).
fn serve(addr: &str, connections: usize) -> Res<()> {
    let listener = TcpListener::bind(addr)?;
    let mut buf = vec![0u8; 1 << 20];
    for stream in listener.incoming().take(connections) {
        let mut s = stream?;
        while s.read(&mut buf)? > 0 {}
    }
    Ok(())
}

/// Send for `secs` seconds; print Gbit/s.
fn send(addr: &str, secs: u64) -> Res<()> {
    let mut s = TcpStream::connect(addr)?;
    let buf = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        s.write_all(&buf)?;
        sent += buf.len() as u64;
    }
    println!("{:.3}", sent as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9);
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn list(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into())
}
