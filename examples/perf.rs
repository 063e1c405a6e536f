//! Performance figures for docs/PERFORMANCE.md: `scripts/bench` builds in release and runs this
//! (and then examples/query_bench.rs).
//!
//! 1. `iac render` of a fresh tree, process start to exit, on the machine's disk, on a fresh
//!    ext4 with a journal (a loop-mounted file; as root) and on tmpfs, with CPU and peak RSS,
//!    for inventories of 3, 100, 1,000 and 10,000 hosts.
//! 2. Re-renders on the same three: an unchanged inventory, one host changed, two hosts changed.
//! 3. The rules a packet can traverse in a k3s node's input and forward chains (counted by the
//!    real `nft` from its JSON listing, parsed with the `nftables` crate), set sizes, and the
//!    `nft -f` load time.
//! 4. TCP throughput of one bulk stream through a router namespace's forward chain.
//! 5. New TCP connections per second through that forward chain: short connections from
//!    addresses all over the pod CIDR to every database address of the ruleset, each one a new
//!    conntrack entry that the forward chain evaluates rule by rule.
//!
//! Every table prints its median, its spread (min–max) and its run count; settings are
//! measured in alternating rounds. `--quick` runs fewer rounds and skips 10,000 hosts.
//!
//! Hidden modes (`--inside-load`, `--serve`, `--send`, `--accept`, `--connect`) are this
//! program re-executed inside a network namespace.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark's report is its output")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark run by hand: a failure ends it with its message")]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// How much to measure: the full run for the docs, or a quick smoke run.
#[derive(Clone)]
struct Plan {
    quick: bool,
    /// `--only a,b`: the sections to run (render, rerender, rules, throughput, connections).
    only: Option<Vec<String>>,
}

impl Plan {
    fn wants(&self, section: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|s| s == section))
    }

    fn sizes(&self) -> &'static [usize] {
        if self.quick { &[3, 100, 1_000] } else { &[3, 100, 1_000, 10_000] }
    }

    fn render_runs(&self, hosts: usize) -> usize {
        match (self.quick, hosts >= 10_000) {
            (true, _) => 3,
            (false, true) => 3,
            (false, false) => 7,
        }
    }

    fn rerender_runs(&self, hosts: usize) -> usize {
        match (self.quick, hosts >= 10_000) {
            (true, _) => 4,
            (false, true) => 4,
            (false, false) => 10,
        }
    }

    /// Alternating rounds of the network benchmarks: single 2 s runs on a shared VM swing by
    /// ±30 %, so the medians need many.
    fn rounds(&self) -> usize {
        if self.quick { 3 } else { 9 }
    }

    fn round_secs(&self) -> u64 {
        if self.quick { 1 } else { 2 }
    }

    /// The connection rate's rounds: short and many, since its figure is the median of each
    /// round's own ratio (the rate swings by ±10 % from one second to the next here).
    fn connection_rounds(&self) -> usize {
        if self.quick { 3 } else { 15 }
    }
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--inside-load") => return inside_load(Path::new(&args[2])),
        Some("--serve") => return serve(&args[2], args[3].parse()?),
        Some("--send") => return send(&args[2], args[3].parse()?),
        Some("--accept") => return accept(args[2].parse()?, args[3].parse()?),
        Some("--connect") => return connect(args[2].parse()?, args[3].parse()?, args[4].parse()?, &args[5], args[6].parse()?),
        _ => {}
    }
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).map(|s| s.split(',').map(String::from).collect());
    let plan = Plan { quick: args.iter().any(|a| a == "--quick"), only };
    let iac = release_binary()?;
    let work = tempfile::tempdir()?;
    println!("machine: {} cores, {}; kernel {}", cores(), cpu_model(), kernel());
    println!("work directory {} on {}", work.path().display(), filesystem(work.path()));
    println!();

    let fs = if plan.wants("render") || plan.wants("rerender") { Some(Filesystems::new(work.path())?) } else { None };
    let rulesets = if let Some(fs) = fs.as_ref().filter(|_| plan.wants("render")) {
        let r = fresh_renders(&plan, &iac, work.path(), fs)?;
        println!();
        r
    } else {
        // The rulesets the other sections load, rendered once, untimed.
        let mut r = Vec::new();
        for &n in plan.sizes() {
            let dir = work.path().join(format!("n{n}"));
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("inventory.toml"), inventory(n, &[]).0)?;
            render(&iac, &dir.join("inventory.toml"), &dir.join("out"))?;
            r.push((n, dir.join("out/h1/nftables.nft")));
        }
        r
    };
    if let Some(fs) = fs.as_ref().filter(|_| plan.wants("rerender")) {
        rerenders(&plan, &iac, work.path(), fs)?;
        println!();
    }
    drop(fs);
    if plan.wants("rules") {
        rules_and_load(&rulesets)?;
        println!();
    }
    let thousand = rulesets.iter().find(|(n, _)| *n == 1_000).map(|(_, p)| p.clone()).ok_or("no 1,000-host ruleset")?;
    if plan.wants("throughput") {
        if let Err(e) = throughput(&plan, &thousand) {
            println!("throughput: skipped ({e})");
        }
        println!();
    }
    let big: Vec<(usize, PathBuf)> = rulesets.iter().filter(|(n, _)| *n >= 1_000).cloned().collect();
    if plan.wants("connections")
        && let Err(e) = connection_rate(&plan, &big)
    {
        println!("connection rate: skipped ({e})");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Fresh renders

/// Render each inventory size into a directory that does not exist yet, on each filesystem.
/// Returns the k3s agent's ruleset of each size (`h1/nftables.nft`).
fn fresh_renders(plan: &Plan, iac: &Path, work: &Path, fs: &Filesystems) -> Res<Vec<(usize, PathBuf)>> {
    println!("## iac render into a new directory, end to end (median (min–max) of n runs; CPU and peak RSS of the process)");
    println!("load before: {}", load());
    println!(
        "| hosts | k3s nodes | files | output | n | disk | ext4 with journal (loop) | tmpfs | tmpfs: user+sys CPU | per host (tmpfs) | peak RSS |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut rulesets = Vec::new();
    for &n in plan.sizes() {
        let dir = work.join(format!("n{n}"));
        std::fs::create_dir_all(&dir)?;
        let inv = dir.join("inventory.toml");
        let (text, nodes) = inventory(n, &[]);
        std::fs::write(&inv, text)?;
        let runs = plan.render_runs(n);
        let kept = dir.join("out");
        render(iac, &inv, &kept)?;
        // Per filesystem: wall times; on tmpfs also CPU and peak RSS. Filesystems alternate.
        let mut walls: Vec<Vec<f64>> = vec![Vec::new(); 3];
        let (mut cpus, mut rss) = (Vec::new(), 0);
        for run in 0..runs {
            for (f, root) in fs.roots().iter().enumerate() {
                let Some(root) = root else { continue };
                let out = root.join(format!("fresh{n}-{run}"));
                let m = render(iac, &inv, &out)?;
                std::fs::remove_dir_all(&out)?;
                walls[f].push(m.wall);
                if f == 2 {
                    cpus.push(m.cpu);
                    rss = rss.max(m.maxrss_kib);
                }
            }
        }
        let (files, bytes) = tree_size(&kept)?;
        let cell = |f: usize| if walls[f].is_empty() { "–".to_string() } else { Stats::of(&walls[f]).ms() };
        let tmpfs = Stats::of(&walls[2]);
        println!(
            "| {n} | {nodes} | {files} | {:.1} MiB | {runs} | {} | {} | {} | {:.1} ms | {:.1} µs | {:.1} MiB |",
            bytes as f64 / 1048576.0,
            cell(0),
            cell(1),
            tmpfs.ms(),
            Stats::of(&cpus).median() * 1e3,
            tmpfs.median() * 1e6 / n as f64,
            rss as f64 / 1024.0
        );
        rulesets.push((n, kept.join("h1/nftables.nft")));
    }
    Ok(rulesets)
}

// ---------------------------------------------------------------------------------------------
// 2. Re-renders

/// Re-render into an existing tree: the same inventory again (nothing is written), one host
/// changed (its directory is swapped), two hosts changed (the whole tree is swapped, its
/// unchanged files hard-linked). The changes alternate with the original inventory, so every
/// measured render has work to do. On the machine's disk, on a fresh ext4 with a journal
/// (loop-mounted, when root) and on tmpfs: the machine's disk is shared, and the state other
/// processes leave it in (inodes they freed in the last minutes) weighs on every render.
fn rerenders(plan: &Plan, iac: &Path, work: &Path, fs: &Filesystems) -> Res<()> {
    println!("## iac render into an existing tree (median (min–max) of n runs, back to back)");
    println!("load before: {}", load());
    println!("| hosts | change | n | disk | ext4 with journal (loop) | tmpfs | user+sys CPU (disk) | files written (of all) |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for &n in plan.sizes().iter().filter(|n| **n >= 1_000) {
        let dir = work.join(format!("re{n}"));
        std::fs::create_dir_all(&dir)?;
        let write = |name: &str, changed: &[(usize, &str)]| -> Res<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, inventory(n, changed).0)?;
            Ok(path)
        };
        // h7 and h8 are plain hosts: changing their address changes their own files only.
        let base = write("base.toml", &[])?;
        let one = write("one.toml", &[(7, "172.31.255.7")])?;
        let two = write("two.toml", &[(7, "172.31.255.7"), (8, "172.31.255.8")])?;
        let runs = plan.rerender_runs(n);
        let changes = [("none (unchanged)", None), ("one host", Some(&one)), ("two hosts", Some(&two))];
        // Per filesystem, per change: wall times, CPU times, what iac said.
        let mut results: Vec<Vec<Series>> = Vec::new();
        for root in fs.roots() {
            let out = root.map(|r| r.join(format!("re{n}")));
            let mut per_change = Vec::new();
            if let Some(out) = &out {
                render(iac, &base, out)?;
            }
            for (_, changed) in &changes {
                let (mut walls, mut cpus, mut said) = (Vec::new(), Vec::new(), String::new());
                for run in 0..runs {
                    let Some(out) = &out else { break };
                    let inv = match changed {
                        Some(inv) if run % 2 == 0 => inv,
                        _ => &base,
                    };
                    let m = render(iac, inv, out)?;
                    walls.push(m.wall);
                    cpus.push(m.cpu);
                    said = m.stdout;
                }
                per_change.push((walls, cpus, said));
            }
            if let Some(out) = &out {
                std::fs::remove_dir_all(out)?;
            }
            results.push(per_change);
        }
        for (c, (label, _)) in changes.iter().enumerate() {
            let cell = |f: usize| if results[f][c].0.is_empty() { "–".to_string() } else { Stats::of(&results[f][c].0).ms() };
            let said = &results[0][c].2;
            let written = said.strip_prefix("wrote ").and_then(|s| s.split(" files").next()).unwrap_or("0 (up to date)").to_string();
            println!(
                "| {n} | {label} | {runs} | {} | {} | {} | {} | {written} |",
                cell(0),
                cell(1),
                cell(2),
                Stats::of(&results[0][c].1).ms()
            );
        }
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

/// Wall times, CPU times and the first line iac printed, of one series of renders.
type Series = (Vec<f64>, Vec<f64>, String);

/// Where renders are measured: the machine's disk (the work directory), a fresh ext4 with a
/// journal in a loop-mounted file (only as root, with mkfs.ext4), and tmpfs.
struct Filesystems {
    disk: PathBuf,
    ext4: Option<LoopExt4>,
    tmpfs: tempfile::TempDir,
}

impl Filesystems {
    fn new(work: &Path) -> Res<Filesystems> {
        let disk = work.join("disk");
        std::fs::create_dir_all(&disk)?;
        let ext4 = match LoopExt4::new(work) {
            Ok(l) => Some(l),
            Err(e) => {
                println!("ext4 (loop): not measured ({e})");
                None
            }
        };
        // tmpfs separates iac's own cost from the filesystem's.
        let tmpfs = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir())?;
        Ok(Filesystems { disk, ext4, tmpfs })
    }

    fn roots(&self) -> [Option<&Path>; 3] {
        [Some(&self.disk), self.ext4.as_ref().map(|l| l.mnt.as_path()), Some(self.tmpfs.path())]
    }
}

/// A 3 GiB ext4 (with the default journal) in a file, loop-mounted; unmounted and removed on
/// drop.
struct LoopExt4 {
    img: PathBuf,
    mnt: PathBuf,
}

impl LoopExt4 {
    fn new(work: &Path) -> Res<LoopExt4> {
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root to mount".into());
        }
        let img = work.join("ext4.img");
        let mnt = work.join("ext4");
        std::fs::File::create(&img)?.set_len(3 << 30)?;
        std::fs::create_dir_all(&mnt)?;
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img))?;
        run(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&mnt))?;
        Ok(LoopExt4 { img, mnt })
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = std::fs::remove_file(&self.img);
    }
}

struct Measured {
    wall: f64,
    cpu: f64,
    maxrss_kib: i64,
    stdout: String,
}

fn render(iac: &Path, inv: &Path, out: &Path) -> Res<Measured> {
    timed_child(Command::new(iac).args(["render", "--inventory"]).arg(inv).arg("--out").arg(out))
}

/// An estate of `n` hosts: 3 servers (1 when n = 3), every tenth host a k3s agent, every
/// twentieth a PostgreSQL host with its own database, the rest plain hosts. Nodes are spread
/// through the address space so their sets cannot aggregate: the worst case for set sizes.
/// The pod CIDR is a /14: k3s gives each node a /24, and 10,000 hosts have 1,003 nodes.
/// `changed` gives some hosts another address.
fn inventory(n: usize, changed: &[(usize, &str)]) -> (String, usize) {
    let mut s = String::from(
        "[site]\nname = \"bench\"\n[networks.lan]\ncidr = \"172.16.0.0/12\"\n[access]\nadmin = [\"172.16.0.0/24\"]\n\
         [dns]\nupstream = [\"192.168.53.53\"]\n[cluster]\npod_cidr = \"10.40.0.0/14\"\nservice_cidr = \"10.44.0.0/16\"\n\
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
        let address =
            changed.iter().find(|(h, _)| *h == i).map_or_else(|| format!("172.16.{}.{}", 1 + i / 250, 1 + i % 250), |(_, a)| a.to_string());
        s.push_str(&format!("[hosts.h{i}]\naddress = \"{address}\"\nroles = [{role}]\n"));
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

/// Run a child to completion; wall time, user+sys CPU time (s), its peak RSS in KiB (from
/// wait4's rusage) and the first line it printed.
fn timed_child(cmd: &mut Command) -> Res<Measured> {
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child.stdout.take().ok_or("stdout")?.read_to_string(&mut stdout)?;
    child.stderr.take().ok_or("stderr")?.read_to_string(&mut stderr)?;
    let mut status = 0;
    // SAFETY: wait4 on our own child's pid with valid pointers; std's Child is not waited twice.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    std::mem::forget(child);
    if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{cmd:?} failed (status {status}): {stderr}").into());
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let first = stdout.lines().next().unwrap_or("").to_string();
    Ok(Measured { wall, cpu: tv(usage.ru_utime) + tv(usage.ru_stime), maxrss_kib: usage.ru_maxrss, stdout: first })
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

// ---------------------------------------------------------------------------------------------
// 3. Rules, sets, load time

fn rules_and_load(rulesets: &[(usize, PathBuf)]) -> Res<()> {
    println!("## Rules per chain of a k3s agent's ruleset (from `nft -j list table inet iac`); nft -f load in a network namespace");
    println!("| hosts | input rules | forward rules | set elements (all sets) | n | nft -f load |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for (n, file) in rulesets {
        let out = Command::new("unshare").arg("-rn").arg(std::env::current_exe()?).arg("--inside-load").arg(file).output()?;
        if !out.status.success() {
            return Err(format!("load of {} failed: {}", file.display(), String::from_utf8_lossy(&out.stderr)).into());
        }
        println!("| {n} | {} |", String::from_utf8(out.stdout)?.trim());
    }
    Ok(())
}

const LOADS: usize = 7;

/// Inside a fresh network namespace: load the ruleset several times, count rules and set
/// elements.
fn inside_load(file: &Path) -> Res<()> {
    let mut times = Vec::new();
    for _ in 0..LOADS {
        let start = Instant::now();
        let st = Command::new("nft").arg("-f").arg(file).status()?;
        times.push(start.elapsed().as_secs_f64());
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
    println!("{input} | {forward} | {elements} | {LOADS} | {}", Stats::of(&times).ms());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Network namespaces shared by 4. and 5.

struct Netns {
    names: Vec<String>,
}

impl Netns {
    /// Namespaces `a` — `r` — `b` over veth pairs; `r` forwards. Returns the namespace names.
    fn chain(tag: &str) -> Res<Netns> {
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root for ip netns".into());
        }
        let ns = Netns { names: ["a", "r", "b"].iter().map(|n| format!("{tag}{n}")).collect() };
        for n in &ns.names {
            ip(&["netns", "add", n])?;
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        let [a, r, b] = [&ns.names[0], &ns.names[1], &ns.names[2]];
        ip(&["link", "add", "ia", "netns", a, "type", "veth", "peer", "name", "ra", "netns", r])?;
        ip(&["link", "add", "ib", "netns", b, "type", "veth", "peer", "name", "rb", "netns", r])?;
        run(Command::new("ip").args(["netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"]))?;
        Ok(ns)
    }

    fn exec(&self, i: usize) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i]]);
        c
    }

    fn nft_flush(&self, i: usize) -> Res<()> {
        run(self.exec(i).args(["nft", "flush", "ruleset"]))
    }

    fn nft_load(&self, i: usize, file: &Path) -> Res<()> {
        self.nft_flush(i)?;
        run(self.exec(i).args(["nft", "-f"]).arg(file))
    }
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

/// A table that only switches connection tracking on in the forward hook: what every k3s node
/// pays anyway (kube-proxy's DNAT and flannel's masquerade need conntrack), so the cost of
/// iac's rules and sets is the difference to it.
fn conntrack_only_file(tag: &str) -> Res<PathBuf> {
    let path = std::env::temp_dir().join(format!("{tag}-ct.nft"));
    std::fs::write(
        &path,
        "table inet ctonly {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tct state established,related accept\n\t}\n}\n",
    )?;
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// 4. Throughput

/// a (10.42.0.2) — r (forward chain under test) — b (10.42.1.2): one TCP stream per run.
fn throughput(plan: &Plan, ruleset: &Path) -> Res<()> {
    let tag = format!("iacperf{}", std::process::id());
    let ns = Netns::chain(&tag)?;
    let (a, r, b) = (&ns.names[0], &ns.names[1], &ns.names[2]);
    for (n, dev, addr) in [(a, "ia", "10.42.0.2/24"), (r, "ra", "10.42.0.1/24"), (r, "rb", "10.42.1.1/24"), (b, "ib", "10.42.1.2/24")] {
        ip(&["-n", n, "addr", "add", addr, "dev", dev])?;
        ip(&["-n", n, "link", "set", dev, "up"])?;
    }
    ip(&["-n", a, "route", "add", "default", "via", "10.42.0.1"])?;
    ip(&["-n", b, "route", "add", "default", "via", "10.42.1.1"])?;
    let me = std::env::current_exe()?;
    let rounds = plan.rounds();
    let mut server = ns
        .exec(2)
        .arg(&me)
        .args(["--serve", "10.42.1.2:5201", &(3 * rounds).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let secs = plan.round_secs().to_string();
    let measure = || -> Res<f64> {
        let out = ns.exec(0).arg(&me).args(["--send", "10.42.1.2:5201", &secs]).output()?;
        Ok(String::from_utf8(out.stdout)?.trim().parse::<f64>()?)
    };
    let conntrack_only = conntrack_only_file(&tag)?;
    println!("## Forward-chain throughput: one TCP stream a -> r -> b, {rounds} alternating rounds of {secs} s");
    println!("load before: {}", load());
    let mut runs: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        // Rotate the order each round, so no setting always runs first or last.
        for k in 0..3 {
            let setting = (k + round) % 3;
            match setting {
                0 => ns.nft_flush(1)?,
                1 => ns.nft_load(1, &conntrack_only)?,
                _ => ns.nft_load(1, ruleset)?,
            }
            runs[setting].push(measure()?);
        }
    }
    let [bare, ct, with] = runs;
    let _ = std::fs::remove_file(&conntrack_only);
    let _ = server.kill();
    let _ = server.wait();
    let (bm, cm, wm) = (Stats::of(&bare), Stats::of(&ct), Stats::of(&with));
    println!("| ruleset in r | n | median (min–max) | runs (Gbit/s) |");
    println!("| --- | ---: | ---: | --- |");
    for (label, s, v) in [("none", &bm, &bare), ("conntrack only (one `ct state` rule)", &cm, &ct), ("1,000-host node ruleset", &wm, &with)]
    {
        println!("| {label} | {} | {} | {} |", s.n(), s.fmt(1.0, "Gbit/s", 2), list(v));
    }
    let per_round = |a: &[f64], b: &[f64]| Stats::of(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>()).fmt(100.0, "%", 1);
    println!(
        "ruleset/none: {:.1}%  conntrack-only/none: {:.1}%  ruleset/conntrack-only: {:.1}% (of medians); per round, ruleset/conntrack-only: {}",
        wm.median() / bm.median() * 100.0,
        cm.median() / bm.median() * 100.0,
        wm.median() / cm.median() * 100.0,
        per_round(&with, &ct)
    );
    Ok(())
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

// ---------------------------------------------------------------------------------------------
// 5. Connection rate

/// The port of the flow the connections take: the node ruleset's last forward rule, "pods
/// reach the database servers" (`ip saddr @pod_cidr ip daddr @databases tcp dport 5432`), so
/// every new connection is evaluated against every rule of the chain before it is accepted.
const DB_PORT: u16 = 5432;
/// Enough to keep both cores busy (4 left them partly waiting on each connection's round trip).
const CLIENT_THREADS: usize = 16;
/// Seconds of unmeasured connections before each measurement, under the same setting.
const WARMUP: &str = "0.5";

/// a (the pods: every address of 10.42.0.0/16, inside the pod CIDR, is local: `ip route add local`) — r (forward
/// chain under test) — b (every address of 172.16.0.0/12 is local; a server that accepts and
/// closes). Each connection goes from a random pod address to a random database address of the
/// ruleset's `@databases` set; the client reads the server's close and resets, so no side
/// keeps TIME_WAIT state.
fn connection_rate(plan: &Plan, rulesets: &[(usize, PathBuf)]) -> Res<()> {
    let (_, first) = rulesets.first().ok_or("no ruleset")?;
    let databases = set_elements(first, "databases")?;
    if databases.is_empty() {
        return Err("the ruleset has no database addresses".into());
    }
    let tag = format!("iacconn{}", std::process::id());
    let ns = Netns::chain(&tag)?;
    let (a, r, b) = (&ns.names[0], &ns.names[1], &ns.names[2]);
    for (n, dev, addr) in
        [(a, "ia", "192.168.76.2/30"), (r, "ra", "192.168.76.1/30"), (r, "rb", "192.168.77.1/30"), (b, "ib", "192.168.77.2/30")]
    {
        ip(&["-n", n, "addr", "add", addr, "dev", dev])?;
        ip(&["-n", n, "link", "set", dev, "up"])?;
    }
    ip(&["-n", a, "route", "add", "local", "10.42.0.0/16", "dev", "lo"])?;
    ip(&["-n", a, "route", "add", "default", "via", "192.168.76.1"])?;
    ip(&["-n", r, "route", "add", "10.42.0.0/16", "via", "192.168.76.2"])?;
    ip(&["-n", r, "route", "add", "172.16.0.0/12", "via", "192.168.77.2"])?;
    ip(&["-n", b, "route", "add", "local", "172.16.0.0/12", "dev", "lo"])?;
    ip(&["-n", b, "route", "add", "default", "via", "192.168.77.1"])?;
    // Short conntrack timeouts in r: at thousands of connections per second the closed
    // entries would otherwise fill the (host-wide) conntrack table within seconds.
    run(ns.exec(1).args([
        "sysctl",
        "-qw",
        "net.netfilter.nf_conntrack_tcp_timeout_close=1",
        "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1",
        "net.netfilter.nf_conntrack_tcp_timeout_fin_wait=1",
        "net.netfilter.nf_conntrack_tcp_timeout_close_wait=1",
        "net.netfilter.nf_conntrack_tcp_timeout_last_ack=1",
    ]))?;
    let me = std::env::current_exe()?;
    let mut server =
        ns.exec(2).arg(&me).args(["--accept", &DB_PORT.to_string(), "2"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let dsts = databases.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(",");
    let secs = 1;
    let measure = |warmup: &str| -> Res<(f64, u64, u64)> {
        let out = ns
            .exec(0)
            .arg(&me)
            .args(["--connect", warmup, &secs.to_string(), &CLIENT_THREADS.to_string(), &dsts, &DB_PORT.to_string()])
            .output()?;
        if !out.status.success() {
            return Err(format!("client: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        let text = String::from_utf8(out.stdout)?;
        let v: Vec<&str> = text.split_whitespace().collect();
        let (ok, failed, elapsed): (u64, u64, f64) = (v[0].parse()?, v[1].parse()?, v[2].parse()?);
        Ok((ok as f64 / elapsed, ok, failed))
    };
    let conntrack_only = conntrack_only_file(&tag)?;
    let mut settings: Vec<(String, Option<PathBuf>)> =
        vec![("none".into(), None), ("conntrack only (one `ct state` rule)".into(), Some(conntrack_only.clone()))];
    for (n, file) in rulesets {
        settings.push((format!("{}-host node ruleset", thousands(*n)), Some(file.clone())));
    }
    let rounds = plan.connection_rounds();
    println!(
        "## Forward-chain connection rate: new TCP connections per second a -> r -> b, {rounds} alternating rounds of {secs} s, {CLIENT_THREADS} client threads"
    );
    println!(
        "Each connection: a random source in 10.42.0.0/16 (in @pod_cidr) to one of the {} addresses of @databases, port {DB_PORT}: the forward chain's last rule",
        databases.len()
    );
    println!("load before: {}", load());
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
    let (mut total, mut failed) = (0, 0);
    for round in 0..rounds {
        // Rotate the order each round, so no setting always runs first or last.
        for k in 0..settings.len() {
            let i = (k + round) % settings.len();
            match &settings[i].1 {
                None => ns.nft_flush(1)?,
                Some(file) => ns.nft_load(1, file)?,
            }
            let (rate, ok, bad) = measure(WARMUP)?;
            rates[i].push(rate);
            total += ok;
            failed += bad;
        }
    }
    println!("load after: {}", load());
    let ct = Stats::of(&rates[1]).median();
    // Each round's own ratio to conntrack only: the machine's load drifts between rounds, less
    // within one (its settings run back to back).
    println!("| forward chain in r | n | connections/s: median (min–max) | vs conntrack only: of medians | per round: median (min–max) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for ((label, _), v) in settings.iter().zip(&rates) {
        let s = Stats::of(v);
        let ratios: Vec<f64> = v.iter().zip(&rates[1]).map(|(x, c)| x / c).collect();
        println!(
            "| {label} | {} | {} | {:.1} % | {} |",
            s.n(),
            s.fmt(1.0, "", 0),
            s.median() / ct * 100.0,
            Stats::of(&ratios).fmt(100.0, "%", 1)
        );
    }
    println!("{total} connections, {failed} failed (a failure is a connect or read that timed out or was refused)");
    for ((label, _), v) in settings.iter().zip(&rates).skip(2) {
        let ratios: Vec<f64> = v.iter().zip(&rates[1]).map(|(x, c)| x / c).collect();
        let m = Stats::of(&ratios).median();
        println!(
            "goal: {label} at least 95 % of conntrack only (median of the rounds' ratios): {:.1} %, {}",
            m * 100.0,
            if m >= 0.95 { "met" } else { "MISSED" }
        );
    }

    // Proof that each connection was a new one in r's forward chain: count NEW packets in a
    // table that runs just before iac's, during one more round with the first node ruleset.
    let probe = std::env::temp_dir().join(format!("{tag}-probe.nft"));
    std::fs::write(
        &probe,
        "table inet iacprobe {\n\tchain forward {\n\t\ttype filter hook forward priority -1; policy accept;\n\t\tct state new counter\n\t}\n}\n",
    )?;
    ns.nft_load(1, first)?;
    run(ns.exec(1).args(["nft", "-f"]).arg(&probe))?;
    // No warm-up here: every connection the client makes is one it counts.
    let (_, ok, bad) = measure("0")?;
    let listing = Command::new("ip").args(["netns", "exec", r, "nft", "-j", "list", "table", "inet", "iacprobe"]).output()?;
    let new_packets = counter_packets(&listing.stdout)?;
    println!(
        "check: one more round with the {}-host ruleset: {} connections ({bad} failed), {new_packets} packets in ct state new in r's forward hook",
        thousands(rulesets[0].0),
        ok
    );
    let _ = std::fs::remove_file(&probe);
    let _ = std::fs::remove_file(&conntrack_only);
    let _ = server.kill();
    let _ = server.wait();
    Ok(())
}

/// The elements of set `name` in a rendered ruleset (its `elements = { … }` line).
fn set_elements(file: &Path, name: &str) -> Res<Vec<Ipv4Addr>> {
    let text = std::fs::read_to_string(file)?;
    let start = text.find(&format!("set {name} {{")).ok_or_else(|| format!("no set {name} in {}", file.display()))?;
    let line = text[start..].lines().find(|l| l.trim_start().starts_with("elements = {")).ok_or("no elements")?;
    let inner = line.trim().trim_start_matches("elements = {").trim_end_matches('}');
    Ok(inner.split(',').filter_map(|e| e.trim().parse().ok()).collect())
}

/// The packet count of the (one) counter in an `nft -j list table` output.
fn counter_packets(json: &[u8]) -> Res<u64> {
    let v: serde_json::Value = serde_json::from_slice(json)?;
    let items = v["nftables"].as_array().ok_or("no nftables array")?;
    for item in items {
        if let Some(exprs) = item["rule"]["expr"].as_array() {
            for e in exprs {
                if let Some(p) = e["counter"]["packets"].as_u64() {
                    return Ok(p);
                }
            }
        }
    }
    Err("no counter".into())
}

/// Accept connections on every local address and close each at once, in `threads` threads,
/// until killed.
fn accept(port: u16, threads: usize) -> Res<()> {
    // SAFETY: plain socket calls on a descriptor this function owns.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    let addr = sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), size_of::<libc::sockaddr_in>() as u32) })?;
    check(unsafe { libc::listen(fd.as_raw_fd(), 4096) })?;
    let listener = TcpListener::from(fd);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let l = &listener;
            s.spawn(move || {
                loop {
                    // Accepted and dropped: the server closes first.
                    let _ = l.accept();
                }
            });
        }
    });
    Ok(())
}

/// For `warmup` and then `secs` seconds, in `threads` threads: connect from a random address
/// of 10.42.0.0/16 to a random one of `dsts` on `port`, wait for the server's close, reset.
/// Prints the connections begun after the warm-up, those that failed, and the seconds they
/// took. The warm-up brings r's conntrack table to the same steady state whatever setting ran
/// before (after "none" it starts empty, which made the next setting look faster).
fn connect(warmup: f64, secs: f64, threads: usize, dsts: &str, port: u16) -> Res<()> {
    let dsts: Vec<Ipv4Addr> = dsts.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let begin = Instant::now() + Duration::from_secs_f64(warmup);
    let deadline = begin + Duration::from_secs_f64(secs);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (dsts, ok, failed) = (&dsts, &ok, &failed);
            s.spawn(move || {
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((t as u64 + 1) << 32) ^ u64::from(std::process::id());
                loop {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let r = xorshift(&mut rng);
                    // 10.42.0.1 .. 10.42.255.254, never a .0 or .255.
                    let src = Ipv4Addr::new(10, 42, (r >> 8) as u8, 1 + ((r & 0xff) % 254) as u8);
                    let dst = dsts[(r >> 16) as usize % dsts.len()];
                    let result = one_connection(src, SocketAddrV4::new(dst, port));
                    if now >= begin {
                        match result {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }
            });
        }
    });
    println!("{} {} {:.4}", ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed), begin.elapsed().as_secs_f64());
    Ok(())
}

fn one_connection(src: Ipv4Addr, dst: SocketAddrV4) -> std::io::Result<()> {
    // SAFETY: plain socket calls on a descriptor this function owns.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // The port is picked at connect time, for the whole 4-tuple: many sources, no port runs out.
    set_int(&fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
    let timeout = libc::timeval { tv_sec: 1, tv_usec: 0 };
    for opt in [libc::SO_SNDTIMEO, libc::SO_RCVTIMEO] {
        check(unsafe {
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, (&raw const timeout).cast(), size_of::<libc::timeval>() as u32)
        })?;
    }
    let from = sockaddr(SocketAddrV4::new(src, 0));
    check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const from).cast(), size_of::<libc::sockaddr_in>() as u32) })?;
    let to = sockaddr(dst);
    check(unsafe { libc::connect(fd.as_raw_fd(), (&raw const to).cast(), size_of::<libc::sockaddr_in>() as u32) })?;
    let mut stream = TcpStream::from(fd);
    let mut buf = [0u8; 16];
    while stream.read(&mut buf)? > 0 {}
    // Close with a reset: no TIME_WAIT on either side, the next connection can reuse the port.
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    check(unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as u32,
        )
    })?;
    Ok(())
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
        sin_zero: [0; 8],
    }
}

fn set_int(fd: &OwnedFd, level: i32, opt: i32, value: i32) -> std::io::Result<()> {
    check(unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, (&raw const value).cast(), size_of::<i32>() as u32) })
}

fn check(r: i32) -> std::io::Result<()> {
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

// ---------------------------------------------------------------------------------------------
// Statistics and machine facts

/// Sorted samples.
struct Stats(Vec<f64>);

impl Stats {
    fn of(v: &[f64]) -> Stats {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        Stats(v)
    }

    fn n(&self) -> usize {
        self.0.len()
    }

    fn median(&self) -> f64 {
        let n = self.0.len();
        match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => self.0[n / 2],
            _ => (self.0[n / 2 - 1] + self.0[n / 2]) / 2.0,
        }
    }

    /// `median unit (min–max)`, each value times `scale`.
    fn fmt(&self, scale: f64, unit: &str, digits: usize) -> String {
        let (lo, hi) = (self.0.first().copied().unwrap_or(f64::NAN), self.0.last().copied().unwrap_or(f64::NAN));
        let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
        format!("{:.digits$}{unit} ({:.digits$}–{:.digits$})", self.median() * scale, lo * scale, hi * scale)
    }

    /// Seconds shown as milliseconds.
    fn ms(&self) -> String {
        self.fmt(1e3, "ms", 1)
    }
}

fn list(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The 1-, 5- and 15-minute load averages: the machine may be shared.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "unknown".into(), |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
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

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "unknown".into(), |s| s.trim().to_string())
}

/// `findmnt`'s view of the filesystem holding `path`: source, type and options.
fn filesystem(path: &Path) -> String {
    Command::new("findmnt")
        .args(["-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T"])
        .arg(path)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "an unknown filesystem".into())
}
