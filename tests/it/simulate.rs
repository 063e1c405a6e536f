//! `iac simulate` end to end: real namespaces, real nftables, real traffic. It must pass on the
//! bundled inventory, catch each known failure mode as a broken ruleset, leave the host's own
//! network untouched, clean up when interrupted and run without root in a user namespace.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{IAC, bundled_inventory_path as inventory, iac, stderr, stdout, tool};

fn simulate(extra: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    // Generous for a loaded CI machine: passing probes answer in milliseconds, refused ones
    // wait this out (all in parallel).
    let out = iac()
        .arg("simulate")
        .arg("--inventory")
        .arg(inventory())
        .args(["--timeout-ms", "2000"])
        .args(extra)
        .output()
        .expect("run iac simulate");
    let took = start.elapsed();
    eprintln!("iac simulate {extra:?}: {} ms", took.as_millis());
    (out, took)
}

/// Report lines with whitespace collapsed, so tests can match "RESULT FROM TO SERVICE …".
fn lines(o: &Output) -> Vec<String> {
    stdout(o).lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

fn has_line(o: &Output, prefix: &str) -> bool {
    lines(o).iter().any(|l| l.starts_with(prefix))
}

fn mismatches(o: &Output) -> Vec<String> {
    lines(o).into_iter().filter(|l| l.contains("MISMATCH")).collect()
}

/// The rendered rulesets of the bundled inventory, in a temporary directory.
fn rendered() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("rendered_dir");
    let st = iac().args(["render", "--out"]).arg(&out).arg("--inventory").arg(inventory()).status().expect("render");
    assert!(st.success());
    (dir, out)
}

/// Write `host`'s rendered ruleset, changed by `edit`, and return the `--ruleset` argument.
fn broken(dir: &Path, rendered_dir: &Path, host: &str, edit: impl Fn(&str) -> String) -> String {
    let text = std::fs::read_to_string(rendered_dir.join(host).join("nftables.nft")).expect("read ruleset");
    let changed = edit(&text);
    assert_ne!(changed, text, "the edit must change {host}'s ruleset");
    let path = dir.join(format!("{host}-broken.nft"));
    std::fs::write(&path, changed).expect("write");
    format!("{host}={}", path.display())
}

fn without_lines(text: &str, needle: &str) -> String {
    text.lines().filter(|l| !l.contains(needle)).map(|l| format!("{l}\n")).collect()
}

/// The host's links, its nftables ruleset and any namespace named like ours: what a leak or
/// a stray command would change. (Other namespaces are left out: other tests may use them.)
fn host_network_state() -> String {
    let run = |args: &[&str]| Command::new(args[0]).args(&args[1..]).output().map(|o| stdout(&o)).unwrap_or_default();
    let ours: String = run(&["ip", "netns", "list"]).lines().filter(|l| l.starts_with("iacsim-")).collect();
    format!("{}\n{ours}\n{}", run(&["ip", "-o", "link", "show"]), run(&["nft", "list", "ruleset"]))
}

#[test]
fn passes_on_the_bundled_inventory_and_leaves_the_host_alone() {
    let before = host_network_state();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let (o, took) = simulate(&["--out", &out_dir.path().display().to_string()]);
    let text = stdout(&o);
    println!("{text}");
    assert!(o.status.success(), "simulate failed:\n{text}\n{}", stderr(&o));
    assert!(mismatches(&o).is_empty());
    assert!(text.contains("simulate: PASS"));
    // Declared flows, end to end.
    for row in [
        "ok admin alphard tcp/22 pass pass",
        "ok admin alkaid tcp/22 pass pass",
        "ok admin hamal tcp/22 pass pass",
        // The API VIP: DNATed by the kube-proxy stand-in, masqueraded when it leaves hamal.
        "ok pod@hamal svc/kubernetes tcp/443 pass pass 172.22.0.135 hamal:fwd>alphard:in",
        "ok pod@alphard svc/kubernetes tcp/443 pass pass 10.42.0.2 alphard:in",
        // Each direction of the VXLAN overlay on its own; pod addresses kept.
        "ok pod@hamal pod@alphard udp/8080 one-way pass pass 10.42.1.2 hamal:fwd>alphard:in>alphard:fwd",
        "ok pod@alphard pod@hamal udp/8080 one-way pass pass 10.42.0.2 alphard:fwd>hamal:in>hamal:fwd",
        "ok pod@hamal dns udp/53 pass pass 172.22.0.135",
        "ok pod@hamal dns tcp/53 pass pass 172.22.0.135",
        "ok pod@hamal svc/kube-dns udp/53 pass pass 10.42.1.2",
        // PostgreSQL sees the node address (fact 5), which alkaid's ruleset admits.
        "ok pod@hamal alkaid tcp/5432 pass pass 172.22.0.135 hamal:fwd>alkaid:in",
        "ok hamal alphard tcp/10250 pass pass",
        "ok alphard hamal tcp/10250 pass pass",
    ] {
        assert!(has_line(&o, row), "missing row {row:?}");
    }
    // The untrusted host is refused everywhere, although a listener waits behind each port.
    for row in [
        "ok untrusted alphard tcp/22 refused refused",
        "ok untrusted alphard tcp/6443 refused refused",
        "ok untrusted hamal tcp/10250 refused refused",
        "ok untrusted alkaid tcp/5432 refused refused",
        "ok untrusted alkaid udp/8472 refused refused",
        "ok untrusted alphard udp/8472 forged vxlan refused refused",
        "ok untrusted hamal udp/8472 forged vxlan refused refused",
        "ok untrusted pod@alphard tcp/8080 refused refused",
        "ok untrusted svc/kubernetes tcp/443 refused refused",
    ] {
        assert!(has_line(&o, row), "missing row {row:?}");
    }
    for host in ["alkaid", "alphard", "hamal"] {
        assert!(has_line(&o, &format!("{host} ok (loaded, reloaded, identical listing")), "{host}'s reload check");
        assert!(out_dir.path().join(format!("{host}.listing")).exists());
    }
    assert!(out_dir.path().join("report.txt").exists());
    assert_eq!(before, host_network_state(), "the host's own links, namespaces or ruleset changed");
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn catches_a_forward_chain_that_drops_pod_traffic() {
    // The original outage: the nodes' forward chain had `policy drop` and no accepts.
    let (dir, rendered_dir) = rendered();
    let outage = |t: &str| {
        let start = t.find("\tchain forward {").expect("forward chain");
        let end = start + t[start..].find("\n\t}\n").expect("end of chain");
        format!("{}\tchain forward {{\n\t\ttype filter hook forward priority filter; policy drop;{}", &t[..start], &t[end..])
    };
    let a = broken(dir.path(), &rendered_dir, "alphard", outage);
    let h = broken(dir.path(), &rendered_dir, "hamal", outage);
    let (o, _) = simulate(&["--ruleset", &a, "--ruleset", &h]);
    let m = mismatches(&o);
    println!("{}", m.join("\n"));
    assert_eq!(o.status.code(), Some(1));
    for row in [
        "MISMATCH pod@hamal svc/kubernetes tcp/443 pass refused",
        "MISMATCH pod@hamal dns udp/53 pass refused",
        "MISMATCH pod@alphard pod@hamal tcp/8080 pass refused",
        "MISMATCH pod@hamal alkaid tcp/5432 pass refused",
    ] {
        assert!(m.iter().any(|l| l.starts_with(row)), "not caught: {row:?}");
    }
    // Traffic the forward chain does not carry still works.
    assert!(has_line(&o, "ok pod@alphard svc/kubernetes tcp/443 pass pass"));
    assert!(has_line(&o, "ok admin alphard tcp/22 pass pass"));
}

#[test]
fn catches_a_ruleset_that_flushes_other_tables() {
    let (dir, rendered_dir) = rendered();
    let flush = |t: &str| format!("flush ruleset\n{t}");
    let a = broken(dir.path(), &rendered_dir, "alphard", flush);
    let h = broken(dir.path(), &rendered_dir, "hamal", flush);
    let (o, _) = simulate(&["--ruleset", &a, "--ruleset", &h]);
    let m = mismatches(&o);
    println!("{}", m.join("\n"));
    assert_eq!(o.status.code(), Some(1));
    assert!(m.iter().any(|l| l.starts_with("alphard MISMATCH stand-in table(s) gone: ip kube-proxy-standin")), "{m:?}");
    assert!(m.iter().any(|l| l.starts_with("hamal MISMATCH stand-in table(s) gone: ip kube-proxy-standin")), "{m:?}");
    // Without kube-proxy's table the API VIP leads nowhere.
    assert!(m.iter().any(|l| l.starts_with("MISMATCH pod@hamal svc/kubernetes tcp/443 pass refused")), "{m:?}");
}

#[test]
fn catches_blocked_dns() {
    let (dir, rendered_dir) = rendered();
    let no_dns = |t: &str| without_lines(t, "comment \"dns\"");
    let a = broken(dir.path(), &rendered_dir, "alphard", no_dns);
    let h = broken(dir.path(), &rendered_dir, "hamal", no_dns);
    let (o, _) = simulate(&["--ruleset", &a, "--ruleset", &h]);
    let m = mismatches(&o);
    println!("{}", m.join("\n"));
    assert_eq!(o.status.code(), Some(1));
    for row in [
        "MISMATCH pod@alphard dns udp/53 pass refused",
        "MISMATCH pod@alphard dns tcp/53 pass refused",
        "MISMATCH pod@hamal dns udp/53 pass refused",
        "MISMATCH pod@hamal dns tcp/53 pass refused",
    ] {
        assert!(m.iter().any(|l| l.starts_with(row)), "not caught: {row:?}");
    }
    assert_eq!(m.len(), 4, "only DNS should break: {m:?}");
}

#[test]
fn catches_a_missing_vxlan_rule() {
    let (dir, rendered_dir) = rendered();
    let a = broken(dir.path(), &rendered_dir, "alphard", |t| without_lines(t, "comment \"flannel-vxlan\""));
    let (o, _) = simulate(&["--ruleset", &a]);
    let m = mismatches(&o);
    println!("{}", m.join("\n"));
    assert_eq!(o.status.code(), Some(1));
    // Overlay traffic into alphard dies; the other direction, alone, still arrives.
    assert!(m.iter().any(|l| l.starts_with("MISMATCH pod@hamal pod@alphard udp/8080 one-way pass refused")), "{m:?}");
    assert!(m.iter().any(|l| l.starts_with("MISMATCH pod@hamal svc/kube-dns udp/53 pass refused")), "{m:?}");
    assert!(has_line(&o, "ok pod@alphard pod@hamal udp/8080 one-way pass pass"));
}

#[test]
fn catches_vxlan_open_to_everyone() {
    // The forged-frame probe is real: with UDP 8472 open to any source, the untrusted host's
    // VXLAN frame is decapsulated and its datagram reaches the pod.
    let (dir, rendered_dir) = rendered();
    let h = broken(dir.path(), &rendered_dir, "hamal", |t| t.replace("ip saddr @k3s_nodes udp dport 8472 accept", "udp dport 8472 accept"));
    let (o, _) = simulate(&["--ruleset", &h]);
    let m = mismatches(&o);
    println!("{}", m.join("\n"));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].starts_with("MISMATCH untrusted hamal udp/8472 forged vxlan refused pass (received by 10.42.1.2:8080)"), "{m:?}");
}

#[test]
fn an_invalid_ruleset_is_a_failed_load() {
    let (dir, rendered_dir) = rendered();
    let a = broken(dir.path(), &rendered_dir, "alkaid", |t| t.replace("policy drop;", "policy dorp;"));
    let (o, _) = simulate(&["--ruleset", &a]);
    assert_eq!(o.status.code(), Some(1));
    assert!(mismatches(&o).iter().any(|l| l.starts_with("alkaid MISMATCH load failed")), "{}", stdout(&o));
}

#[test]
fn sigterm_cleans_up() {
    interrupted_run_cleans_up(rustix::process::Signal::TERM, 143);
}

#[test]
fn sigint_cleans_up() {
    interrupted_run_cleans_up(rustix::process::Signal::INT, 130);
}

fn interrupted_run_cleans_up(signal: rustix::process::Signal, code: i32) {
    let before = host_network_state();
    let mut child = iac()
        .arg("simulate")
        .arg("--inventory")
        .arg(inventory())
        .args(["--timeout-ms", "20000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).expect("read stderr") > 0 {
        seen.push_str(&line);
        if line.contains("topology up") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("topology up"), "{seen}");
    let built: usize = seen
        .lines()
        .find_map(|l| l.strip_prefix("simulate: topology up: ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no namespace count in {seen:?}"));
    // 3 hosts, 2 pods, router, DNS, admin, untrusted, plus one per egress destination.
    assert!(built >= 10, "{seen}");
    // Probes are now waiting out their 20 s timeouts.
    std::thread::sleep(Duration::from_millis(300));
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, signal).expect("signal");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).expect("read stderr");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(code), "{rest}");
    let deleted: usize = rest
        .lines()
        .find_map(|l| l.strip_prefix("simulate: interrupted; deleted ")?.strip_suffix(" namespaces")?.parse().ok())
        .unwrap_or_else(|| panic!("no cleanup message in {rest:?}"));
    assert_eq!(deleted, built, "every namespace built is deleted");
    assert_eq!(before, host_network_state());
}

#[test]
fn runs_unprivileged_in_a_user_namespace() {
    // As root (CI), drop to nobody and let simulate map itself to root in a user namespace.
    let root = Command::new("id").arg("-u").output().map(|o| stdout(&o).trim() == "0").unwrap_or(false);
    let userns = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "unshare", "--user", "--map-root-user", "--net", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !root || !userns {
        let why = format!("needs root (to drop privileges) and unprivileged user namespaces (root={root}, userns={userns})");
        // CI runs as root where user namespaces are allowed: a skip there would hide a failure.
        assert!(std::env::var_os("IAC_REQUIRE_TOOLS").is_none(), "{why}; IAC_REQUIRE_TOOLS is set");
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("iac");
    let inv = dir.path().join("inventory.toml");
    std::fs::copy(IAC, &bin).expect("copy binary");
    std::fs::copy(inventory(), &inv).expect("copy inventory");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["simulate", "--inventory"])
        .arg(&inv)
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("simulate: PASS"));
}

#[test]
fn a_narrow_admin_network_puts_the_untrusted_host_on_the_lan() {
    // With admin narrowed to one workstation, the untrusted host is a LAN neighbour, and the
    // other hosts' SSH, API and database are refused to it (the database still admits the
    // nodes, since the pods arrive masqueraded).
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = variant(dir.path(), &[("admin = [\"172.22.0.0/24\"]", "admin = [\"172.22.0.10/32\"]")]);
    let o = iac().args(["simulate", "--timeout-ms", "2000", "--inventory"]).arg(&inv).output().expect("run");
    let text = stdout(&o);
    println!("{text}");
    assert!(o.status.success(), "{text}");
    let l = lines(&o);
    let untrusted = l.iter().find(|l| l.starts_with("untrusted ")).expect("untrusted member line");
    assert!(untrusted.ends_with("LAN lan"), "{untrusted}");
    assert!(has_line(&o, "ok admin alphard tcp/22 pass pass 172.22.0.10"));
    assert!(has_line(&o, "ok untrusted alphard tcp/22 refused refused"));
    assert!(has_line(&o, "ok untrusted alkaid tcp/5432 refused refused"));
}

/// The bundled inventory, edited: `(from, to)` replacements, each of which must apply.
fn variant(dir: &Path, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(inventory()).expect("read");
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} not in the inventory");
        text = text.replacen(from, to, 1);
    }
    let p = dir.join("inventory.toml");
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn allow_and_egress_get_namespaces_of_their_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = variant(
        dir.path(),
        &[
            (
                "disable = [\"traefik\", \"servicelb\"]",
                "disable = [\"traefik\", \"servicelb\"]\n\n[[cluster.egress]]\nto = [\"198.51.100.7/32\"]\nproto = \"tcp\"\nports = [443]\nwhy = \"registry mirror\"",
            ),
            (
                "roles = [\"postgresql\"]",
                "roles = [\"postgresql\"]\n\n[[hosts.alkaid.firewall.allow]]\nfrom = [\"10.99.0.0/24\"]\nproto = \"tcp\"\nports = [9187]\nwhy = \"exporter scrape\"",
            ),
        ],
    );
    let o = iac().args(["simulate", "--timeout-ms", "2000", "--inventory"]).arg(&inv).output().expect("run");
    println!("{}", stdout(&o));
    assert!(o.status.success());
    assert!(has_line(&o, "client1 10.99.0.1 own segment behind the router"));
    assert!(has_line(&o, "remote1 198.51.100.7 own segment behind the router"));
    assert!(has_line(&o, "ok client1 alkaid tcp/9187 pass pass 10.99.0.1 alkaid:in exporter scrape"));
    assert!(has_line(&o, "ok pod@hamal remote1 tcp/443 pass pass 172.22.0.135 hamal:fwd registry mirror"));
    assert!(has_line(&o, "ok untrusted alkaid tcp/9187 refused refused"));
}

#[test]
fn without_masquerade_the_database_sees_pod_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = variant(dir.path(), &[("masquerade = true", "masquerade = false")]);
    let o = iac().args(["simulate", "--timeout-ms", "2000", "--inventory"]).arg(&inv).output().expect("run");
    println!("{}", stdout(&o));
    assert!(o.status.success());
    assert!(has_line(&o, "ok pod@hamal alkaid tcp/5432 pass pass 10.42.1.2 hamal:fwd>alkaid:in"));
    assert!(has_line(&o, "ok pod@hamal dns udp/53 pass pass 10.42.1.2"));
}

/// A directory holding only the named tools (symbolic links to the real ones), for PATH.
fn bin_with(tools: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for t in tools {
        let real = tool(t).unwrap_or_else(|| panic!("{t} on PATH"));
        std::os::unix::fs::symlink(real, dir.path().join(t)).expect("symlink");
    }
    dir
}

/// simulate loads what Nix evaluates from the host modules, not the standalone files: a
/// `nix-instantiate` that answers with another table makes it fail, naming the host.
#[test]
fn loads_the_text_nix_evaluates_and_fails_when_it_differs() {
    let bin = bin_with(&["unshare", "ip", "bridge", "nft"]);
    let fake = bin.path().join("nix-instantiate");
    std::fs::write(
        &fake,
        "#!/bin/sh\nprintf '%s' '{\"alkaid\":\"table inet iac {\\n  chain input { type filter hook input priority filter; policy accept; }\\n}\\n\",\"alphard\":\"\",\"hamal\":\"\"}'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = iac().arg("simulate").arg("--inventory").arg(inventory()).env("PATH", bin.path()).output().expect("run");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("host alkaid: the nftables text NixOS builds from") && err.contains("policy accept"), "{err}");

    // Without nix-instantiate: a clear error with the install hint and the opt-out.
    std::fs::remove_file(&fake).unwrap();
    let o = iac().arg("simulate").arg("--inventory").arg(inventory()).env("PATH", bin.path()).output().expect("run");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("`nix-instantiate` is not on PATH") && err.contains("apt-get install nix-bin"), "{err}");
    let o = iac()
        .args(["simulate", "--skip-nix-eval", "--timeout-ms", "2000", "--inventory"])
        .arg(inventory())
        .env("PATH", bin.path())
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("the text NixOS loads is not proven"));
}

/// Issue 13: SIGINT while the topology was being built exited 1 with an `ip` error and left
/// the temporary directory behind. Now: 130, every namespace and the directory removed.
#[test]
fn sigint_during_setup_exits_130_and_removes_everything() {
    let before = host_network_state();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut child = iac()
        .arg("simulate")
        .arg("--inventory")
        .arg(inventory())
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).expect("read stderr") > 0 {
        seen.push_str(&line);
        if line.contains("building the topology") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("building the topology"), "{seen}");
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("signal");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).expect("read stderr");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("simulate: interrupted; deleted"), "{rest}");
    assert!(!rest.contains("error:"), "an error the interruption caused is not the outcome: {rest}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    assert_eq!(before, host_network_state());
}
