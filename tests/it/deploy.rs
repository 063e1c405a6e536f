//! `iac deploy` end to end, with fake `ssh` and `nix` on PATH.
//!
//! The fakes record their argv (one log per host, one for the build host) and play the hosts:
//! reachable or not, a build that fails, a host already on the built system, a switch after
//! which the confirmation connection fails (the rollback path), a build host. The preflight
//! script runs for real: the fake ssh runs it locally, against secret files in a temp dir.
//! Everything else is real too: the binary, the render check, and `nft -c` in a private
//! network namespace.
//!
//! The on-target scripts (guard, wait, confirm) run for real under `/bin/sh` in the second
//! half, against a fake store, profile, `nix-env` and `switch-to-configuration`.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use iac::deploy::plan::quote;
use iac::deploy::remote;

use crate::support::{code, iac, repo, stderr, stdout};

const HOSTS: [(&str, &str); 3] = [("alpha", "10.9.0.1"), ("beta", "10.9.0.2"), ("gamma", "10.9.0.3")];
/// `--build-host builder@10.9.0.9`: its commands are logged as the host "builder".
const BUILDER: (&str, &str) = ("builder", "10.9.0.9");

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

/// The destination follows `--`; the remote words follow the destination. The preflight runs
/// for real (locally, as sshd would run the command line: `sh -c LINE`, without the `sudo`).
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
  *" iac-preflight "*)
    line="$*"
    exec sh -c "${line#sudo -n -- }" ;;
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
  # On the build host: build a derivation of `nix eval` below, copy a system to a target.
  *" build --no-link --print-out-paths "*)
    drv=${*: -1}
    target=${drv%.drv^\*\'}
    target=${target#*nixos-system-}
    cat "$FAKE_SIM/$target/new" ;;
  " env "*" copy "*)
    for w in "$@"; do case "$w" in ssh://*) to=${w#ssh://} ;; esac; done
    record "$(cat "$FAKE_SIM/addr/${to#*@}")" copied-from "$host" ;;
  *) echo "fake ssh: unexpected remote command: $remote" >&2; exit 99 ;;
esac
"#;

/// `nix build|eval` name the host in the flake attribute, `nix copy` in its `ssh://` store.
const FAKE_NIX: &str = r#"
for a in "$@"; do
  case "$a" in
    ssh://*) dest=${a#ssh://}; host=$(cat "$FAKE_SIM/addr/${dest#*@}") ;;
    *'#nixosConfigurations."'*) host=${a#*#nixosConfigurations.\"}; host=${host%%\"*} ;;
  esac
done
record "$host" nix "NIX_SSHOPTS=${NIX_SSHOPTS:-}" "$@"
case " $* " in
  *" build "*)
    if [ -e "$FAKE_SIM/$host/build-fails" ]; then
      echo "error: builder for '/nix/store/x-nixos-system-$host.drv' failed with exit code 1" >&2
      exit 1
    fi
    echo "building '/nix/store/x-nixos-system-$host.drv'..." >&2
    cat "$FAKE_SIM/$host/new" ;;
  *" eval "*) echo "/nix/store/dddddddddddddddddddddddddddddddd-nixos-system-$host.drv" ;;
esac
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
        Self::with_inventory(|_| INVENTORY.to_string())
    }

    /// As `new`, with the inventory `inventory(temp dir)` gives.
    fn with_inventory(inventory: impl Fn(&Path) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let flake = dir.path().join("flake");
        fs::create_dir_all(flake.join("hosts")).unwrap();
        fs::write(flake.join("hosts/inventory.toml"), inventory(dir.path())).unwrap();
        let out = iac()
            .args(["render", "--inventory"])
            .arg(flake.join("hosts/inventory.toml"))
            .arg("--out")
            .arg(flake.join("generated"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        for (name, body) in [("ssh", FAKE_SSH), ("nix", FAKE_NIX)] {
            write_exe(&bin.join(name), &format!("#!/bin/bash\nset -u\n{RECORD}{body}"));
        }
        let sim = dir.path().join("sim");
        fs::create_dir_all(sim.join("addr")).unwrap();
        fs::write(sim.join("addr").join(BUILDER.1), BUILDER.0).unwrap();
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
        let out = iac()
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

/// The first command for every host: reachable, and its secret files (none here) in place.
fn reach(host: &str) -> Vec<String> {
    preflight(host, &[])
}

fn preflight(host: &str, files: &[&str]) -> Vec<String> {
    let mut words = vec!["/bin/sh", "-c", remote::PREFLIGHT, "iac-preflight"];
    words.extend_from_slice(files);
    ssh(host, &words)
}

fn attr(env: &Estate, host: &str) -> String {
    let flake = fs::canonicalize(env.flake()).unwrap();
    format!("{}#nixosConfigurations.\"{host}\".config.system.build.toplevel", flake.display())
}

fn build(env: &Estate, host: &str) -> Vec<String> {
    ["nix", "NIX_SSHOPTS=", "--extra-experimental-features", "nix-command flakes", "build", "--no-link", "--print-out-paths"]
        .map(String::from)
        .into_iter()
        .chain([attr(env, host)])
        .collect()
}

fn current(host: &str) -> Vec<String> {
    ssh(host, &["readlink", "-f", "/run/current-system"])
}

fn dest(host: &str) -> (&'static str, &'static str) {
    match host {
        "alpha" => ("deploy@10.9.0.1", "2222"),
        "beta" => ("root@10.9.0.2", "22"),
        _ => ("root@10.9.0.3", "22"),
    }
}

const SSH_OPTS: &str = "-o BatchMode=yes -o ConnectTimeout=10 -o ControlMaster=no -o ControlPath=none \
                        -o ServerAliveInterval=5 -o ServerAliveCountMax=3";

fn copy(host: &str) -> Vec<String> {
    let (dest, port) = dest(host);
    vec![
        "nix".into(),
        format!("NIX_SSHOPTS={SSH_OPTS} -p {port}"),
        "--extra-experimental-features".into(),
        "nix-command".into(),
        "copy".into(),
        "--substitute-on-destination".into(),
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
    assert!(table.contains("beta  build   FAILED: nix build failed"), "{table}");
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
    assert!(text.contains("-p 2222 -- deploy@10.9.0.1 sudo -n -- /bin/sh -c <script> iac-preflight    # reachable"), "{text}");
    assert!(text.contains(" build --no-link --print-out-paths "), "{text}");
    assert!(text.contains("copy --substitute-on-destination --to ssh://root@10.9.0.2 $NEW\n"), "{text}");
    assert!(text.contains(" $NEW $PREV /run/iac-deploy/"), "{text}");
    assert!(text.contains("-p 22 -- root@10.9.0.2 /bin/sh -c <script> iac-confirm /run/iac-deploy/"), "{text}");
    assert!(text.contains("-p 2222 -- deploy@10.9.0.1 sudo -n -- systemd-run --unit=iac-deploy"), "{text}");
    assert!(
        text.contains(remote::PREFLIGHT) && text.contains(remote::GUARD) && text.contains(remote::WAIT) && text.contains(remote::CONFIRM),
        "scripts printed"
    );
    assert!(!text.contains("# gamma"), "{text}");

    // With a build host: evaluate here, build and copy there.
    let (out, _) = env.deploy(&["beta", "--dry-run", "--build-host", "builder@10.9.0.9"], 0);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(env.log("builder").is_empty(), "the build host was touched");
    let text = stdout(&out);
    assert!(text.contains(" eval --raw "), "{text}");
    assert!(text.contains("copy --derivation --substitute-on-destination --to ssh://builder@10.9.0.9 $DRV\n"), "{text}");
    assert!(
        text.contains("-- builder@10.9.0.9 nix --extra-experimental-features nix-command build --no-link --print-out-paths '$DRV^*'"),
        "{text}"
    );
    assert!(text.contains("-- builder@10.9.0.9 env 'NIX_SSHOPTS="), "{text}");
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

    // Only the fakes (ssh, nix) on PATH: util-linux's unshare is missing.
    let out = iac().args(["deploy", "--all", "--flake"]).arg(env.flake()).env("PATH", env.dir.path().join("bin")).output().unwrap();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("`unshare` not found on PATH: install util-linux"), "{}", stderr(&out));
}

/// A dry run runs nothing, so it needs nothing but the repository: with an empty PATH it still
/// prints every command (tools by their bare names) and says which local check it skipped.
#[test]
fn dry_run_works_with_an_empty_path() {
    let env = Estate::new();
    let out = iac()
        .args(["deploy", "--all", "--dry-run", "--flake"])
        .arg(env.flake())
        .env("PATH", "")
        .env_remove("IAC_INVENTORY")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("# not run: `nft -c` of each ruleset (nft or unshare is not installed here)"), "{text}");
    assert!(text.contains("\nssh -o BatchMode=yes"), "{text}");
    assert!(text.contains("\nnix --extra-experimental-features 'nix-command flakes' build --no-link --print-out-paths "), "{text}");
    assert!(text.contains("# gamma (root@10.9.0.3:22)"), "{text}");
}

/// `--build-host`: evaluate here, build there, copy from there straight to the target; the
/// store path comes from the remote build's output (no `result` link anywhere).
#[test]
fn build_host_builds_remotely_and_copies_from_the_builder_to_the_target() {
    let env = Estate::new();
    let (out, _) = env.deploy(&["beta", "--build-host", "builder@10.9.0.9"], 0);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let drv = "/nix/store/dddddddddddddddddddddddddddddddd-nixos-system-beta.drv";
    let eval: Vec<String> = ["nix", "NIX_SSHOPTS=", "--extra-experimental-features", "nix-command flakes", "eval", "--raw"]
        .map(String::from)
        .into_iter()
        .chain([format!("{}.drvPath", attr(&env, "beta"))])
        .collect();
    let log = env.log("beta");
    assert_eq!(log.len(), 7, "{log:#?}");
    assert_eq!(log[..3], [reach("beta"), eval, current("beta")]);
    // The target's copy came from the builder (recorded by the fake as `copied-from builder`).
    assert_eq!(log[3], ["copied-from", "builder"]);
    assert_eq!(log[4], activate("beta", "1"));
    assert_eq!(log[6], confirm("beta"));
    let builder_ssh: Vec<String> =
        ["ssh"].into_iter().chain(SSH_OPTS.split(' ')).chain(["--", "builder@10.9.0.9"]).map(String::from).collect();
    let with = |words: &[&str]| builder_ssh.iter().cloned().chain(words.iter().map(|w| quote(w).unwrap().into_owned())).collect::<Vec<_>>();
    let outputs = format!("{drv}^*");
    let (dest, port) = dest("beta");
    let sshopts = format!("NIX_SSHOPTS={SSH_OPTS} -p {port}");
    let to = format!("ssh://{dest}");
    let new = store_path('b', "beta");
    assert_eq!(
        env.log("builder"),
        [
            [
                "nix",
                &format!("NIX_SSHOPTS={SSH_OPTS}"),
                "--extra-experimental-features",
                "nix-command",
                "copy",
                "--derivation",
                "--substitute-on-destination",
                "--to",
                "ssh://builder@10.9.0.9",
                drv
            ]
            .map(String::from)
            .to_vec(),
            with(&["nix", "--extra-experimental-features", "nix-command", "build", "--no-link", "--print-out-paths", &outputs]),
            with(&[
                "env",
                &sshopts,
                "nix",
                "--extra-experimental-features",
                "nix-command",
                "copy",
                "--substitute-on-destination",
                "--to",
                &to,
                &new
            ]),
        ]
    );
    assert!(stdout(&out).contains("beta  switch  ok: switched, confirmed"), "{}", stdout(&out));
}

#[test]
fn no_substitutes_copies_everything() {
    let env = Estate::new();
    let (out, _) = env.deploy(&["beta", "--no-substitutes"], 0);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut want = copy("beta");
    want.retain(|w| w != "--substitute-on-destination");
    assert_eq!(env.log("beta")[3], want);
}

// ---- the secrets preflight --------------------------------------------------------------------

/// alpha is a k3s server (non-root SSH user), gamma an agent, beta a database host: the token
/// file on both nodes, the password file on beta, all under `<tmp>/secrets`.
fn secrets_inventory(dir: &Path) -> String {
    let secrets = dir.join("secrets");
    INVENTORY
        .replace(
            "[hosts.alpha]",
            &format!(
                "[cluster]\npod_cidr = \"10.42.0.0/16\"\nservice_cidr = \"10.43.0.0/16\"\ntoken_file = \"{}/k3s-token\"\n\n[hosts.alpha]",
                secrets.display()
            ),
        )
        .replace("address = \"10.9.0.1\"\nroles = []", "address = \"10.9.0.1\"\nroles = [\"k3s-server\"]")
        .replace("address = \"10.9.0.2\"\nroles = []", "address = \"10.9.0.2\"\nroles = [\"postgresql\"]")
        .replace("address = \"10.9.0.3\"\nroles = []", "address = \"10.9.0.3\"\nroles = [\"k3s-agent\"]")
        + &format!(
            "\n[databases.app]\nhost = \"beta\"\nowner = \"app\"\npassword_file = \"{}/app-password\"\nclients = [\"admin\"]\n",
            secrets.display()
        )
}

fn write_secret(env: &Estate, name: &str, mode: u32, content: &str) -> String {
    let dir = env.dir.path().join("secrets");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

#[test]
fn secrets_in_place_pass_the_preflight_in_the_first_connection() {
    let env = Estate::with_inventory(secrets_inventory);
    let token = write_secret(&env, "k3s-token", 0o600, "K10secret\n");
    let password = write_secret(&env, "app-password", 0o400, "hunter2\n");
    let (out, _) = env.deploy(&["--all"], 0);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_eq!(env.log("alpha")[0], preflight("alpha", &[&token]));
    assert_eq!(env.log("beta")[0], preflight("beta", &[&password]));
    assert_eq!(env.log("gamma")[0], preflight("gamma", &[&token]));
    // One connection for reachability and secrets: the build comes right after.
    assert_eq!(env.log("beta")[1], build(&env, "beta"));
}

#[test]
fn a_missing_or_exposed_secret_stops_the_host_before_anything_is_built() {
    let env = Estate::with_inventory(secrets_inventory);
    let token = env.dir.path().join("secrets/k3s-token").display().to_string();
    let password = write_secret(&env, "app-password", 0o644, "hunter2\n");
    let (out, _) = env.deploy(&["--all"], 0);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains(&format!(
            "alpha  check   FAILED: secret file not ready: missing: {token} (the cluster token (k3s server: services.k3s.tokenFile))"
        )),
        "{table}"
    );
    assert!(
        table.contains(&format!("gamma  check   FAILED: secret file not ready: missing: {token} (the cluster token (k3s agent")),
        "{table}"
    );
    assert!(
        table
            .contains(&format!("beta   check   FAILED: secret file not ready: world-readable: {password} (the password of database `app`")),
        "{table}"
    );
    for host in ["alpha", "beta", "gamma"] {
        assert_eq!(env.log(host).len(), 1, "{host}: nothing after the preflight: {:#?}", env.log(host));
    }

    // An empty file is not a secret either; a directory is not a file.
    write_secret(&env, "app-password", 0o600, "");
    fs::create_dir_all(&token).unwrap();
    let (out, _) = env.deploy(&["beta", "gamma"], 0);
    let table = stdout(&out);
    assert!(table.contains(&format!("beta   check   FAILED: secret file not ready: empty: {password}")), "{table}");
    assert!(table.contains(&format!("gamma  check   FAILED: secret file not ready: not-a-file: {token}")), "{table}");
}

#[test]
fn a_failing_sudo_fails_the_preflight_with_its_message() {
    let env = Estate::new();
    // A fake ssh whose remote sudo refuses (the host answers, the preflight cannot run as root).
    let bin = env.dir.path().join("bin");
    write_exe(&bin.join("ssh"), "#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n");
    let (out, _) = env.deploy(&["alpha"], 0);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("alpha  check   FAILED: the preflight on the host failed (sudo: a password is required)"),
        "{}",
        stdout(&out)
    );
}

// ---- the on-target scripts, run for real ---------------------------------------------------

/// A fake target: store paths `prev` and `new` with their own `switch-to-configuration` (it
/// logs `NAME ACTION` and fails an action when `store/NAME/fail-ACTION` exists), a system
/// profile and a current-system link, a `nix-env` that moves the profile, and a `systemctl
/// is-active` that answers from a file. The profile is what the boot loader's default entry
/// follows: whatever it names is what a reboot brings up.
struct Target {
    dir: tempfile::TempDir,
    /// Debian's /bin/sh is dash, NixOS's is bash: the scripts must run under both.
    shell: &'static str,
}

const SHELLS: [&str; 2] = ["/bin/sh", "bash"];

impl Target {
    fn new() -> Self {
        Self::with_shell("/bin/sh")
    }

    fn with_shell(shell: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        for name in ["prev", "new"] {
            let sys = root.join("store").join(name);
            fs::create_dir_all(sys.join("bin")).unwrap();
            fs::create_dir_all(sys.join("sw/bin")).unwrap();
            write_exe(
                &sys.join("bin/switch-to-configuration"),
                &format!(
                    "#!/bin/sh\necho \"{name} $1\" >> {root}/actions\nif [ -e {sys}/fail-$1 ]; then exit 1; fi\n",
                    root = root.display(),
                    sys = sys.display()
                ),
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

    /// Make `system`'s `switch-to-configuration ACTION` fail.
    fn fail(&self, system: &str, action: &str) {
        fs::write(self.root().join("store").join(system).join(format!("fail-{action}")), "").unwrap();
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

    /// What happened, one `SYSTEM ACTION` or `set PATH` per line, store paths shortened to
    /// `new`/`prev`.
    fn actions(&self) -> String {
        let store = format!("{}/", self.root().join("store").display());
        fs::read_to_string(self.root().join("actions")).unwrap_or_default().replace(&store, "")
    }

    /// What the next boot brings up: the profile's system.
    fn boots(&self) -> String {
        fs::read_link(self.root().join("profile")).unwrap().file_name().unwrap().to_string_lossy().into_owned()
    }
}

#[test]
fn guard_activates_with_test_and_makes_it_the_boot_default_only_once_confirmed() {
    for shell in SHELLS {
        let t = Target::with_shell(shell);
        let child = t.guard("20", "1");
        assert_eq!(t.wait("20", "0"), "switched");
        // Running the new system, but the profile (and the boot entry) still name the old one:
        // a reboot now would come back on it.
        assert_eq!(t.actions(), "new test\n", "{shell}");
        assert_eq!(t.boots(), "prev", "{shell}");
        assert_eq!(t.confirm(), "confirmed");
        let out = t.finish(child);
        assert!(out.status.success(), "{}", stdout(&out));
        assert_eq!(t.actions(), "new test\nset new\nnew boot\n", "{shell}");
        assert_eq!(t.boots(), "new");
        assert_eq!(t.wait("0", "1"), "confirmed");
    }
}

/// A crash or a reboot while the guard waits for the confirmation: nothing was made the boot
/// default, so the host comes back on the previous system with no rollback needed.
#[test]
fn a_crash_during_the_confirmation_window_leaves_the_previous_system_as_the_boot_default() {
    for shell in SHELLS {
        let t = Target::with_shell(shell);
        let mut child = t.guard("30", "1");
        assert_eq!(t.wait("20", "0"), "switched");
        child.kill().unwrap(); // the guard dies with the machine
        t.finish(child);
        assert_eq!(t.boots(), "prev", "{shell}");
        assert_eq!(t.actions(), "new test\n", "{shell}: no profile change, no boot entry");
        assert_eq!(t.wait("5", "1"), "abandoned: the unit stopped at 'switched'");
    }
}

#[test]
fn guard_without_confirmation_rolls_back_by_itself() {
    for shell in SHELLS {
        let t = Target::with_shell(shell);
        let start = Instant::now();
        let child = t.guard("2", "1");
        assert_eq!(t.wait("20", "0"), "switched");
        // iac never confirms (its connection is gone): the guard gives up after 2 s.
        assert_eq!(t.wait("20", "1"), "rolled-back: no confirmation within 2s");
        let out = t.finish(child);
        println!("{shell}: guard rolled back {:.1} s after the start (timeout 2 s)", start.elapsed().as_secs_f64());
        assert_eq!(out.status.code(), Some(1));
        // The old system is activated again with `test`; the profile never moved.
        assert_eq!(t.actions(), "new test\nprev test\n");
        assert_eq!(t.boots(), "prev");
        // A confirmation that comes too late is answered with the rollback.
        assert_eq!(t.confirm(), "rolled-back: no confirmation within 2s");
    }
}

#[test]
fn guard_rolls_back_a_failed_activation_at_once() {
    for shell in SHELLS {
        let t = Target::with_shell(shell);
        t.fail("new", "test");
        let out = t.finish(t.guard("30", "1"));
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(t.wait("0", "1"), "rolled-back: switch-to-configuration test failed");
        assert_eq!(t.actions(), "new test\nprev test\n");
        assert_eq!(t.boots(), "prev");
    }
}

/// Confirmed, but the new boot entry cannot be written: back to the old system entirely
/// (profile, boot entry and running system), rather than running one system and booting another.
#[test]
fn guard_rolls_back_when_the_new_system_cannot_become_the_boot_default() {
    for shell in SHELLS {
        let t = Target::with_shell(shell);
        t.fail("new", "boot");
        let child = t.guard("20", "1");
        assert_eq!(t.wait("20", "0"), "switched");
        assert_eq!(t.confirm(), "rolled-back: confirmed, but making it the boot default failed");
        let out = t.finish(child);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(t.actions(), "new test\nset new\nnew boot\nset prev\nprev boot\nprev test\n", "{shell}");
        assert_eq!(t.boots(), "prev");
    }
}

#[test]
fn guard_reports_a_failed_rollback() {
    let t = Target::new();
    t.fail("new", "test");
    t.fail("prev", "test");
    t.finish(t.guard("30", "1"));
    assert_eq!(t.wait("0", "1"), "rollback-failed: switch-to-configuration test failed");
    assert_eq!(t.boots(), "prev");
}

#[test]
fn guard_without_rollback_activates_and_sets_the_boot_default_at_once() {
    let t = Target::new();
    let out = t.finish(t.guard("30", "0"));
    assert!(out.status.success());
    assert_eq!(t.wait("0", "0"), "done");
    assert_eq!(t.actions(), "new test\nset new\nnew boot\n");
    assert_eq!(t.boots(), "new");
}

#[test]
fn guard_refuses_when_the_host_changed_under_it() {
    let t = Target::new();
    fs::remove_file(t.root().join("current")).unwrap();
    symlink(t.root().join("store/new"), t.root().join("current")).unwrap();
    let out = t.finish(t.guard("30", "1"));
    assert_eq!(out.status.code(), Some(1));
    assert!(t.wait("0", "1").starts_with("failed: the host runs"), "{}", t.wait("0", "1"));
    assert_eq!(t.actions(), "", "nothing changed");
    assert_eq!(t.boots(), "prev");
}

#[test]
fn wait_notices_a_guard_that_died() {
    let t = Target::new();
    fs::create_dir_all(t.root().join("state")).unwrap();
    fs::write(t.root().join("state/status"), "switching\n").unwrap();
    // No `active` file: the unit is gone while the status still says switching.
    let start = Instant::now();
    assert_eq!(t.wait("30", "0"), "abandoned: the unit stopped at 'switching'");
    assert!(start.elapsed() < Duration::from_secs(5));
    fs::remove_dir_all(t.root().join("state")).unwrap();
    assert_eq!(t.wait("30", "0"), "abandoned: the unit stopped at 'no status'");
}

/// The preflight script as the host runs it, on real files.
#[test]
fn preflight_script_judges_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = |name: &str, mode: u32, content: &str| {
        let p = dir.path().join(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    };
    let ok = f("ok", 0o600, "s");
    let group = f("group", 0o640, "s");
    let world = f("world", 0o604, "s");
    let empty = f("empty", 0o600, "");
    let missing = dir.path().join("missing").display().to_string();
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    let sub = sub.display().to_string();
    let spaced = f("a b; $(touch pwned)", 0o600, "s");
    for shell in SHELLS {
        let out = Command::new(shell)
            .arg("-c")
            .arg(remote::PREFLIGHT)
            .arg("iac-preflight")
            .args([&ok, &group, &world, &empty, &missing, &sub, &spaced])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out),
            format!(
                "ok: {ok}\nok: {group}\nworld-readable: {world}\nempty: {empty}\nmissing: {missing}\nnot-a-file: {sub}\nok: {spaced}\n"
            ),
            "{shell}"
        );
    }
    assert!(!dir.path().join("pwned").exists() && !Path::new("pwned").exists());
}

#[test]
fn docs_quote_the_scripts_exactly() {
    let doc = fs::read_to_string(repo().join("docs/deploy.md")).unwrap();
    for (name, script) in [("PREFLIGHT", remote::PREFLIGHT), ("GUARD", remote::GUARD), ("WAIT", remote::WAIT), ("CONFIRM", remote::CONFIRM)]
    {
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
    assert!(stdout(&out).contains("# Nix evaluates 1 host module(s) to exactly the rulesets above"), "{}", stdout(&out));

    write_exe(
        &env.dir.path().join("bin/nix-instantiate"),
        "#!/bin/sh\nprintf '%s' '{\"beta\":\"table inet iac {\\n  chain input { type filter hook input priority filter; policy accept; }\\n}\\n\"}'\n",
    );
    let (out, _) = env.deploy(&["beta"], 0);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("host beta: the nftables text NixOS builds from"), "{}", stderr(&out));
    assert!(env.log("beta").is_empty(), "no host is touched: {:?}", env.log("beta"));
}
