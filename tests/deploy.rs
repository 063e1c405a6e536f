//! `iac deploy` end to end, with fake `nixos-rebuild`, `ssh` and `nix` on PATH.
//!
//! The fakes record their argv (one log per host) and play the hosts: reachable or not, a
//! build that fails, a host already on the built system, a switch after which the
//! confirmation connection fails (the rollback path). Everything else is real: the binary,
//! the render check, and `nft -c` in a private network namespace.
//!
//! The on-target scripts (guard, wait, confirm) run for real under `/bin/sh` in the second
//! half, against a fake store, profile and `nix-env`.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use iac::deploy::plan::quote;
use iac::deploy::remote;

const HOSTS: [(&str, &str); 3] = [("alpha", "10.9.0.1"), ("beta", "10.9.0.2"), ("gamma", "10.9.0.3")];

const INVENTORY: &str = r#"
[site]
name = "deploy-test"

[networks.lan]
cidr = "10.9.0.0/24"

[access]
admin = ["10.9.0.0/24"]

[dns]
upstream = ["10.9.0.53"]

# A non-root user on another port: root-only steps go through `sudo -n`.
[hosts.alpha]
address = "10.9.0.1"
roles = []
ssh_user = "deploy"
ssh_port = 2222

[hosts.beta]
address = "10.9.0.2"
roles = []

[hosts.gamma]
address = "10.9.0.3"
roles = []
"#;

/// Records its argv into `$FAKE_SIM/<host>/log` (\x1f between words, \x1e after each call).
const RECORD: &str = r#"record() { # host, then argv
  h=$1; shift
  mkdir -p "$FAKE_SIM/$h"
  rec=$(printf '%s\037' "$@")
  printf '%s\036' "$rec" >> "$FAKE_SIM/$h/log"
}
"#;

const FAKE_NIXOS_REBUILD: &str = r#"
flake=
prev=
for a in "$@"; do
  if [ "$prev" = --flake ]; then flake=$a; fi
  prev=$a
done
host=${flake##*#}
record "$host" nixos-rebuild "$@"
if [ -e "$FAKE_SIM/$host/build-fails" ]; then
  echo "error: builder for '/nix/store/x-nixos-system-$host.drv' failed with exit code 1" >&2
  exit 1
fi
ln -s "$(cat "$FAKE_SIM/$host/new")" result
"#;

/// The destination follows `--`; the remote words follow the destination.
const FAKE_SSH: &str = r#"
all=("$@")
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do shift; done
dest=$2
host=$(cat "$FAKE_SIM/addr/${dest#*@}")
record "$host" ssh "${all[@]}"
sim=$FAKE_SIM/$host
mode=$(cat "$sim/mode" 2>/dev/null || echo ok)
if [ "$mode" = unreachable ]; then
  echo "ssh: connect to host ${dest#*@} port 22: Connection timed out" >&2
  exit 255
fi
shift 2
remote=" $* "
nth_after() { # name offset words...
  name=$1 off=$2; shift 2; i=-1
  for w in "$@"; do
    if [ "$i" -ge 0 ]; then i=$((i + 1)); fi
    if [ "$w" = "$name" ]; then i=0; fi
    if [ "$i" -eq "$off" ]; then printf '%s\n' "$w"; return; fi
  done
}
case "$remote" in
  *" systemd-run "*)
    nth_after iac-activate 7 "$@" > "$sim/guard"
    nth_after iac-activate 3 "$@" > "$sim/activated" ;;
  *" iac-wait "*)
    if [ "$(nth_after iac-wait 3 "$@")" = 1 ]; then cat "$sim/final"; exit 0; fi
    if [ "$mode" = drop-once ] && [ ! -e "$sim/dropped" ]; then
      touch "$sim/dropped"
      echo "Connection to ${dest#*@} closed by remote host." >&2
      exit 255
    fi
    sleep "${FAKE_SWITCH_SECONDS:-0}"
    if [ "$(cat "$sim/guard")" = 1 ]; then echo switched; else echo done; fi ;;
  *" iac-confirm "*)
    if [ "$mode" = confirm-fails ]; then
      echo "rolled-back: no confirmation within 30s" > "$sim/final"
      echo "ssh: connect to host ${dest#*@} port 22: Connection refused" >&2
      exit 255
    fi
    cp "$sim/activated" "$sim/current"
    echo confirmed ;;
  " readlink -f /run/current-system ") cat "$sim/current" ;;
  " true ") exit 0 ;;
  *) echo "fake ssh: unexpected remote command: $remote" >&2; exit 99 ;;
esac
"#;

const FAKE_NIX: &str = r#"
for a in "$@"; do
  case "$a" in ssh://*) dest=${a#ssh://} ;; esac
done
host=$(cat "$FAKE_SIM/addr/${dest#*@}")
record "$host" nix "NIX_SSHOPTS=$NIX_SSHOPTS" "$@"
"#;

fn store_path(tag: char, host: &str) -> String {
    format!("/nix/store/{}-nixos-system-{host}-25.05", tag.to_string().repeat(32))
}

struct Estate {
    dir: tempfile::TempDir,
}

impl Estate {
    /// An inventory and its rendered tree in a flake directory, fakes in `bin/`, and every
    /// host set to: reachable, builds fine, runs `a…` and gets `b…`.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let flake = dir.path().join("flake");
        fs::create_dir_all(flake.join("hosts")).unwrap();
        fs::write(flake.join("hosts/inventory.toml"), INVENTORY).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_iac"))
            .args(["render", "--inventory"])
            .arg(flake.join("hosts/inventory.toml"))
            .arg("--out")
            .arg(flake.join("generated"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        for (name, body) in [("nixos-rebuild", FAKE_NIXOS_REBUILD), ("ssh", FAKE_SSH), ("nix", FAKE_NIX)] {
            write_exe(&bin.join(name), &format!("#!/bin/bash\nset -u\n{RECORD}{body}"));
        }
        let sim = dir.path().join("sim");
        fs::create_dir_all(sim.join("addr")).unwrap();
        for (host, addr) in HOSTS {
            fs::write(sim.join("addr").join(addr), host).unwrap();
            fs::create_dir_all(sim.join(host)).unwrap();
            fs::write(sim.join(host).join("current"), store_path('a', host) + "\n").unwrap();
            fs::write(sim.join(host).join("new"), store_path('b', host)).unwrap();
        }
        Self { dir }
    }

    fn flake(&self) -> PathBuf {
        self.dir.path().join("flake")
    }

    fn sim(&self, host: &str) -> PathBuf {
        self.dir.path().join("sim").join(host)
    }

    fn set(&self, host: &str, file: &str, content: &str) {
        fs::write(self.sim(host).join(file), content).unwrap();
    }

    fn deploy(&self, args: &[&str], switch_seconds: u32) -> (Output, Duration) {
        let path = format!("{}:{}", self.dir.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_iac"))
            .arg("deploy")
            .args(args)
            .arg("--flake")
            .arg(self.flake())
            .env("PATH", path)
            .env("FAKE_SIM", self.dir.path().join("sim"))
            .env("FAKE_SWITCH_SECONDS", switch_seconds.to_string())
            .env_remove("IAC_INVENTORY")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out, start.elapsed())
    }

    /// Every command the fakes saw for `host`, in order; the run id normalised to RUN.
    fn log(&self, host: &str) -> Vec<Vec<String>> {
        let Ok(text) = fs::read_to_string(self.sim(host).join("log")) else { return Vec::new() };
        text.split_terminator('\x1e').map(|rec| rec.split_terminator('\x1f').map(normalise_run_id).collect()).collect()
    }
}

fn normalise_run_id(word: &str) -> String {
    let prefix = format!("{}/", remote::STATE_ROOT);
    match word.find(&prefix) {
        Some(at) => {
            let rest = &word[at + prefix.len()..];
            let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '-')).unwrap_or(rest.len());
            format!("{}{prefix}RUN{}", &word[..at], &rest[end..])
        }
        None => word.to_string(),
    }
}

fn write_exe(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---- the exact commands -------------------------------------------------------------------

fn ssh(host: &str, remote: &[&str]) -> Vec<String> {
    let (user, addr, port) = match host {
        "alpha" => ("deploy", "10.9.0.1", "2222"),
        "beta" => ("root", "10.9.0.2", "22"),
        _ => ("root", "10.9.0.3", "22"),
    };
    let mut v: Vec<String> = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=3",
        "-p",
        port,
        "--",
    ]
    .map(String::from)
    .to_vec();
    v.push(format!("{user}@{addr}"));
    if user != "root" && ["systemd-run", "/bin/sh"].contains(&remote[0]) {
        v.extend(["sudo", "-n", "--"].map(String::from));
    }
    v.extend(remote.iter().map(|w| quote(w).unwrap().into_owned()));
    v
}

fn reach(host: &str) -> Vec<String> {
    ssh(host, &["true"])
}

fn build(env: &Estate, host: &str) -> Vec<String> {
    let flake = fs::canonicalize(env.flake()).unwrap();
    vec!["nixos-rebuild".into(), "build".into(), "--flake".into(), format!("{}#{host}", flake.display())]
}

fn current(host: &str) -> Vec<String> {
    ssh(host, &["readlink", "-f", "/run/current-system"])
}

fn copy(host: &str) -> Vec<String> {
    let (dest, port) = if host == "alpha" { ("deploy@10.9.0.1", "2222") } else { ("root@10.9.0.2", "22") };
    vec![
        "nix".into(),
        format!(
            "NIX_SSHOPTS=-o BatchMode=yes -o ConnectTimeout=10 -o ControlMaster=no -o ControlPath=none \
             -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -p {port}"
        ),
        "--extra-experimental-features".into(),
        "nix-command".into(),
        "copy".into(),
        "--to".into(),
        format!("ssh://{dest}"),
        store_path('b', host),
    ]
}

fn activate(host: &str, guard: &str) -> Vec<String> {
    let new = store_path('b', host);
    ssh(
        host,
        &[
            "systemd-run",
            "--unit=iac-deploy",
            "--description=iac deploy: switch, then wait for the confirmation",
            "--service-type=exec",
            "--collect",
            "--no-ask-password",
            "--quiet",
            "--",
            "/bin/sh",
            "-c",
            remote::GUARD,
            "iac-activate",
            "/nix/var/nix/profiles/system",
            "/run/current-system",
            &new,
            &store_path('a', host),
            "/run/iac-deploy/RUN",
            "30",
            guard,
        ],
    )
}

fn wait(host: &str, limit: &str, through: &str) -> Vec<String> {
    ssh(host, &["/bin/sh", "-c", remote::WAIT, "iac-wait", "/run/iac-deploy/RUN", limit, through, "iac-deploy"])
}

fn confirm(host: &str) -> Vec<String> {
    ssh(host, &["/bin/sh", "-c", remote::CONFIRM, "iac-confirm", "/run/iac-deploy/RUN"])
}

/// The first wait's limit is the switch limit, unless the clock ticked a second.
fn assert_wait(got: &[String], host: &str, limit_near: u64, through: &str) {
    let limit: u64 = got[got.len() - 3].parse().unwrap();
    assert!(limit.abs_diff(limit_near) <= 2, "wait limit {limit}, expected about {limit_near}");
    assert_eq!(got, wait(host, &limit.to_string(), through));
}

// ---- scenarios ----------------------------------------------------------------------------

#[test]
fn success_switches_and_confirms_over_a_new_connection() {
    let env = Estate::new();
    let (out, _) = env.deploy(&["alpha"], 0);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let log = env.log("alpha");
    assert_eq!(log.len(), 7, "{log:#?}");
    assert_eq!(log[0], reach("alpha"));
    assert_eq!(log[1], build(&env, "alpha"));
    assert_eq!(log[2], current("alpha"));
    assert_eq!(log[3], copy("alpha"));
    assert_eq!(log[4], activate("alpha", "1"));
    assert_wait(&log[5], "alpha", 1800, "0");
    assert_eq!(log[6], confirm("alpha"));
    // Root-only steps were elevated, the others not.
    assert!(log[4].contains(&"sudo".to_string()) && !log[2].contains(&"sudo".to_string()));
    let table = stdout(&out);
    assert!(table.contains("HOST   ACTION  RESULT"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("alpha  switch  ok: switched, confirmed")), "{table}");
    // Untouched hosts saw nothing.
    assert!(env.log("beta").is_empty() && env.log("gamma").is_empty());
}

#[test]
fn build_failure_stops_before_the_host_is_touched() {
    let env = Estate::new();
    env.set("beta", "build-fails", "");
    let (out, _) = env.deploy(&["beta"], 0);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert_eq!(env.log("beta"), [reach("beta"), build(&env, "beta")]);
    let table = stdout(&out);
    assert!(table.contains("beta  build   FAILED: nixos-rebuild build failed"), "{table}");
    assert!(table.contains("builder for '/nix/store/x-nixos-system-beta.drv' failed"), "details shown: {table}");
}

#[test]
fn unreachable_host_fails_the_preflight_and_others_go_on() {
    let env = Estate::new();
    env.set("gamma", "mode", "unreachable");
    let (out, _) = env.deploy(&["--all"], 0);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(env.log("gamma"), [reach("gamma")]);
    assert_eq!(env.log("beta").len(), 7, "beta deployed all the same");
    let table = stdout(&out);
    assert!(
        table.contains("gamma  check   FAILED: unreachable over SSH (ssh: connect to host 10.9.0.3 port 22: Connection timed out)"),
        "{table}"
    );
    assert!(table.contains("beta   switch  ok: switched, confirmed"), "{table}");
}

#[test]
fn host_already_on_the_built_system_is_skipped() {
    let env = Estate::new();
    env.set("beta", "current", &(store_path('b', "beta") + "\n"));
    let (out, _) = env.deploy(&["beta"], 0);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(env.log("beta"), [reach("beta"), build(&env, "beta"), current("beta")]);
    assert!(stdout(&out).contains("beta  skip    ok: up to date"), "{}", stdout(&out));
}

#[test]
fn a_current_system_that_is_not_a_store_path_is_never_taken_for_up_to_date() {
    let env = Estate::new();
    env.set("beta", "current", "/nix/store/not-a-hash\n");
    let (out, _) = env.deploy(&["beta"], 0);
    assert_eq!(code(&out), 1);
    assert_eq!(env.log("beta").len(), 3);
    assert!(stdout(&out).contains("FAILED: /run/current-system is not a store path"), "{}", stdout(&out));
}

#[test]
fn failed_confirmation_reports_the_targets_rollback() {
    let env = Estate::new();
    env.set("beta", "mode", "confirm-fails");
    let (out, _) = env.deploy(&["beta"], 0);
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    let log = env.log("beta");
    assert_eq!(log.len(), 8, "{log:#?}");
    assert_eq!(log[..5], [reach("beta"), build(&env, "beta"), current("beta"), copy("beta"), activate("beta", "1")]);
    assert_wait(&log[5], "beta", 1800, "0");
    assert_eq!(log[6], confirm("beta"));
    // After the failed confirmation: wait (new connection) through the confirmation window.
    assert_wait(&log[7], "beta", 30 + 600, "1");
    let table = stdout(&out);
    assert!(table.contains("beta  switch  ROLLED BACK: no confirmation within 30s"), "{table}");
    assert!(table.contains("the confirmation failed"), "{table}");
    assert!(table.contains("Connection refused"), "{table}");
}

#[test]
fn a_connection_dropped_during_the_switch_is_replaced_by_a_new_one() {
    let env = Estate::new();
    env.set("beta", "mode", "drop-once");
    let (out, took) = env.deploy(&["beta"], 0);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let log = env.log("beta");
    assert_eq!(log.len(), 8, "{log:#?}");
    assert_wait(&log[5], "beta", 1800, "0");
    // The second wait, on a new connection, may wait out the rest of the switch and rollback time.
    assert_wait(&log[6], "beta", 1800 + 30 + 600 - 2, "0");
    assert_eq!(log[7], confirm("beta"));
    assert!(stderr(&out).contains("beta  connection lost; reconnecting"), "{}", stderr(&out));
    assert!(took >= Duration::from_secs(2), "waited before reconnecting");
}

#[test]
fn no_rollback_switches_without_a_confirmation() {
    let env = Estate::new();
    let (out, _) = env.deploy(&["beta", "--no-rollback"], 0);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let log = env.log("beta");
    assert_eq!(log.len(), 6, "no confirm step: {log:#?}");
    assert_eq!(log[4], activate("beta", "0"));
    assert!(stdout(&out).contains("ok: switched (no rollback guard)"));
}

#[test]
fn all_hosts_deploy_in_parallel() {
    let env = Estate::new();
    env.set("gamma", "current", &(store_path('b', "gamma") + "\n"));
    env.set("gamma", "new", &store_path('c', "gamma"));
    let (out, took) = env.deploy(&["--all"], 2);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    println!("deploy --all, 3 hosts, each switch 2 s, --jobs 4: {:.2} s", took.as_secs_f64());
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(4), "hosts did not switch in parallel: {took:?}");
    for host in ["alpha", "beta", "gamma"] {
        assert_eq!(env.log(host).len(), 7, "{host}");
    }
    // Plain progress lines, one per step, when stderr is not a terminal.
    let progress = stderr(&out);
    assert!(progress.contains("beta   building"), "{progress}");
    assert!(progress.contains("gamma  confirming over a new SSH connection"), "{progress}");
    let table = stdout(&out);
    for host in ["alpha", "beta ", "gamma"] {
        assert!(table.contains(&format!("{host}  switch  ok: switched, confirmed")), "{table}");
    }
}

#[test]
fn jobs_bounds_the_parallelism() {
    let env = Estate::new();
    let (out, took) = env.deploy(&["--all", "--jobs", "1"], 1);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    println!("deploy --all, 3 hosts, each switch 1 s, --jobs 1: {:.2} s", took.as_secs_f64());
    assert!(took >= Duration::from_secs(3), "ran more than one host at a time: {took:?}");
}

#[test]
fn dry_run_prints_every_command_and_runs_none() {
    let env = Estate::new();
    let (out, _) = env.deploy(&["alpha", "beta", "--dry-run"], 0);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for host in ["alpha", "beta", "gamma"] {
        assert!(env.log(host).is_empty(), "{host} was touched");
    }
    let text = stdout(&out);
    assert!(text.contains("nft -c -f"), "{text}");
    assert!(text.contains("# alpha (deploy@10.9.0.1:2222)"), "{text}");
    assert!(text.contains("-p 2222 -- deploy@10.9.0.1 true\n"), "{text}");
    assert!(text.contains("build --flake "), "{text}");
    assert!(text.contains("copy --to ssh://root@10.9.0.2 $NEW\n"), "{text}");
    assert!(text.contains(" $NEW $PREV /run/iac-deploy/"), "{text}");
    assert!(text.contains("-p 22 -- root@10.9.0.2 /bin/sh -c <script> iac-confirm /run/iac-deploy/"), "{text}");
    assert!(text.contains("-p 2222 -- deploy@10.9.0.1 sudo -n -- systemd-run --unit=iac-deploy"), "{text}");
    assert!(text.contains(remote::GUARD) && text.contains(remote::WAIT) && text.contains(remote::CONFIRM), "scripts printed");
    assert!(!text.contains("# gamma"), "{text}");
}

#[test]
fn stale_rendered_tree_stops_everything() {
    let env = Estate::new();
    fs::write(env.flake().join("generated/beta/default.nix"), "# edited by hand\n").unwrap();
    let (out, _) = env.deploy(&["--all"], 0);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("is stale: run `iac render`"), "{}", stderr(&out));
    for host in ["alpha", "beta", "gamma"] {
        assert!(env.log(host).is_empty(), "{host} was touched");
    }
}

#[test]
fn unknown_host_and_missing_tool_are_clear_errors() {
    let env = Estate::new();
    let (out, _) = env.deploy(&["delta"], 0);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("unknown host `delta` (the inventory has: alpha, beta, gamma)"), "{}", stderr(&out));

    fs::remove_file(env.dir.path().join("bin/nixos-rebuild")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_iac"))
        .args(["deploy", "--all", "--flake"])
        .arg(env.flake())
        .env("PATH", format!("{}:/usr/bin:/bin:/usr/sbin:/sbin", env.dir.path().join("bin").display()))
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("`nixos-rebuild` not found on PATH"), "{}", stderr(&out));
}

// ---- the on-target scripts, run for real ---------------------------------------------------

/// A fake target: store paths `prev` and `new` with their own `switch-to-configuration`, a
/// system profile and a current-system link, a `nix-env` that moves the profile, and a
/// `systemctl is-active` that answers from a file.
struct Target {
    dir: tempfile::TempDir,
    /// Debian's /bin/sh is dash, NixOS's is bash: the scripts must run under both.
    shell: &'static str,
}

const SHELLS: [&str; 2] = ["/bin/sh", "bash"];

impl Target {
    fn new(new_switch_fails: bool) -> Self {
        Self::with_shell(new_switch_fails, "/bin/sh")
    }

    fn with_shell(new_switch_fails: bool, shell: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        for (name, fails) in [("prev", false), ("new", new_switch_fails)] {
            let sys = root.join("store").join(name);
            fs::create_dir_all(sys.join("bin")).unwrap();
            fs::create_dir_all(sys.join("sw/bin")).unwrap();
            let exit = if fails { 1 } else { 0 };
            write_exe(
                &sys.join("bin/switch-to-configuration"),
                &format!("#!/bin/sh\necho \"switch {name} $1\" >> {}/actions\nexit {exit}\n", root.display()),
            );
        }
        let bin = root.join("bin");
        fs::create_dir_all(&bin).unwrap();
        write_exe(
            &bin.join("nix-env"),
            &format!("#!/bin/sh\n# nix-env -p PROFILE --set PATH\necho \"set $4\" >> {}/actions\nln -sfn \"$4\" \"$2\"\n", root.display()),
        );
        write_exe(&bin.join("systemctl"), &format!("#!/bin/sh\ntest -e {}/active\n", root.display()));
        symlink(root.join("store/prev"), root.join("profile")).unwrap();
        symlink(root.join("store/prev"), root.join("current")).unwrap();
        Self { dir, shell }
    }

    fn root(&self) -> PathBuf {
        fs::canonicalize(self.dir.path()).unwrap()
    }

    fn script(&self, script: &str, name: &str, args: &[&str]) -> Command {
        let mut c = Command::new(self.shell);
        c.arg("-c").arg(script).arg(name).args(args);
        c.env("PATH", format!("{}:/usr/bin:/bin", self.root().join("bin").display()));
        c
    }

    /// Start the guard as the `iac-deploy` unit would.
    fn guard(&self, timeout: &str, guard: &str) -> std::process::Child {
        let r = self.root();
        let p = |s: &str| r.join(s).display().to_string();
        fs::write(r.join("active"), "").unwrap();
        self.script(
            remote::GUARD,
            "iac-activate",
            &[&p("profile"), &p("current"), &p("store/new"), &p("store/prev"), &p("state"), timeout, guard],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    }

    fn finish(&self, child: std::process::Child) -> Output {
        let out = child.wait_with_output().unwrap();
        let _ = fs::remove_file(self.root().join("active"));
        out
    }

    fn wait(&self, limit: &str, through: &str) -> String {
        let state = self.root().join("state").display().to_string();
        let out = self.script(remote::WAIT, "iac-wait", &[&state, limit, through, "iac-deploy"]).output().unwrap();
        assert!(out.status.success());
        stdout(&out).trim().to_string()
    }

    fn confirm(&self) -> String {
        let state = self.root().join("state").display().to_string();
        stdout(&self.script(remote::CONFIRM, "iac-confirm", &[&state]).output().unwrap()).trim().to_string()
    }

    fn actions(&self) -> String {
        fs::read_to_string(self.root().join("actions")).unwrap_or_default()
    }

    fn profile(&self) -> PathBuf {
        fs::read_link(self.root().join("profile")).unwrap()
    }
}

#[test]
fn guard_confirmed_keeps_the_new_system() {
    for shell in SHELLS {
        let t = Target::with_shell(false, shell);
        let child = t.guard("20", "1");
        assert_eq!(t.wait("20", "0"), "switched");
        assert_eq!(t.confirm(), "confirmed");
        let out = t.finish(child);
        assert!(out.status.success(), "{}", stdout(&out));
        assert_eq!(t.actions(), format!("set {}\nswitch new switch\n", t.root().join("store/new").display()));
        assert_eq!(t.profile(), t.root().join("store/new"));
        assert_eq!(t.wait("0", "1"), "confirmed");
    }
}

#[test]
fn guard_without_confirmation_rolls_back_by_itself() {
    for shell in SHELLS {
        let t = Target::with_shell(false, shell);
        let start = Instant::now();
        let child = t.guard("2", "1");
        assert_eq!(t.wait("20", "0"), "switched");
        // iac never confirms (its connection is gone): the guard gives up after 2 s.
        assert_eq!(t.wait("20", "1"), "rolled-back: no confirmation within 2s");
        let out = t.finish(child);
        println!("{shell}: guard rolled back {:.1} s after the start (timeout 2 s)", start.elapsed().as_secs_f64());
        assert_eq!(out.status.code(), Some(1));
        let (new, prev) = (t.root().join("store/new"), t.root().join("store/prev"));
        assert_eq!(t.actions(), format!("set {}\nswitch new switch\nset {}\nswitch prev switch\n", new.display(), prev.display()));
        assert_eq!(t.profile(), prev);
        // A confirmation that comes too late is answered with the rollback.
        assert_eq!(t.confirm(), "rolled-back: no confirmation within 2s");
    }
}

#[test]
fn guard_rolls_back_a_failed_switch_at_once() {
    for shell in SHELLS {
        let t = Target::with_shell(true, shell);
        let out = t.finish(t.guard("30", "1"));
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(t.wait("0", "1"), "rolled-back: switch-to-configuration failed");
        assert!(t.actions().ends_with("switch prev switch\n"), "{}", t.actions());
        assert_eq!(t.profile(), t.root().join("store/prev"));
    }
}

#[test]
fn guard_without_rollback_just_switches() {
    let t = Target::new(false);
    let out = t.finish(t.guard("30", "0"));
    assert!(out.status.success());
    assert_eq!(t.wait("0", "0"), "done");
    assert_eq!(t.profile(), t.root().join("store/new"));
}

#[test]
fn guard_refuses_when_the_host_changed_under_it() {
    let t = Target::new(false);
    fs::remove_file(t.root().join("current")).unwrap();
    symlink(t.root().join("store/new"), t.root().join("current")).unwrap();
    let out = t.finish(t.guard("30", "1"));
    assert_eq!(out.status.code(), Some(1));
    assert!(t.wait("0", "1").starts_with("failed: the host runs"), "{}", t.wait("0", "1"));
    assert_eq!(t.actions(), "", "nothing changed");
    assert_eq!(t.profile(), t.root().join("store/prev"));
}

#[test]
fn wait_notices_a_guard_that_died() {
    let t = Target::new(false);
    fs::create_dir_all(t.root().join("state")).unwrap();
    fs::write(t.root().join("state/status"), "switching\n").unwrap();
    // No `active` file: the unit is gone while the status still says switching.
    let start = Instant::now();
    assert_eq!(t.wait("30", "0"), "abandoned: the unit stopped at 'switching'");
    assert!(start.elapsed() < Duration::from_secs(5));
    fs::remove_dir_all(t.root().join("state")).unwrap();
    assert_eq!(t.wait("30", "0"), "abandoned: the unit stopped at 'no status'");
}

#[test]
fn docs_quote_the_scripts_exactly() {
    let doc = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy.md")).unwrap();
    for (name, script) in [("GUARD", remote::GUARD), ("WAIT", remote::WAIT), ("CONFIRM", remote::CONFIRM)] {
        assert!(doc.contains(&format!("```sh\n{script}```")), "docs/deploy.md does not show {name} as the code has it");
    }
}

/// The preflight evaluates the host modules with Nix and refuses to touch any host when the
/// text NixOS would load differs from the ruleset `nft -c` checked (here: a `nix-instantiate`
/// that answers with another table); the dry run shows the check passing on the real tree.
#[test]
fn preflight_refuses_when_nixos_would_load_another_table() {
    let env = Estate::new();
    let (out, _) = env.deploy(&["beta", "--dry-run"], 0);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("preflight: Nix evaluates 1 host module(s) to exactly the rulesets `nft -c` checked"),
        "{}",
        stderr(&out)
    );

    write_exe(
        &env.dir.path().join("bin/nix-instantiate"),
        "#!/bin/sh\nprintf '%s' '{\"beta\":\"table inet iac {\\n  chain input { type filter hook input priority filter; policy accept; }\\n}\\n\"}'\n",
    );
    let (out, _) = env.deploy(&["beta"], 0);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("host beta: the nftables text NixOS builds from"), "{}", stderr(&out));
    assert!(env.log("beta").is_empty(), "no host is touched: {:?}", env.log("beta"));
}
