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

use crate::support::{code, iac, rendered_flake, repo, stderr, stdout, system_path};

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
/// for real (locally, as sshd would run the command line: `sh -c LINE`, without the `sudo`),
/// with `$SSH_CONNECTION` set as sshd sets it: the client 10.9.0.100 (in the admin network)
/// unless the host's `ssh-connection` file says otherwise.
const FAKE_SSH: &str = r#"
all=("$@")
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do shift; done
dest=$2
host=$(cat "$FAKE_SIM/addr/${dest#*@}")
record "$host" ssh "${all[@]}"
sim=$FAKE_SIM/$host
if [ -e "$sim/ssh-connection" ]; then
  SSH_CONNECTION=$(cat "$sim/ssh-connection")
else
  SSH_CONNECTION="10.9.0.100 40000 ${dest#*@} 22"
fi
export SSH_CONNECTION
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
  *" iac-preflight "*|*" iac-push-secrets "*|*" iac-prune-secrets "*)
    # The host's key file and its record of pushed secrets are the simulation's; the values of
    # a push arrive on stdin.
    line="$*"
    line=${line//\/etc\/ssh\/ssh_host_ed25519_key.pub/$sim/host_key.pub}
    line=${line//\/var\/lib\/iac\/pushed-secrets/$sim/iac/pushed-secrets}
    sh -c "${line#sudo -n -- }" | sed -e "s|$sim/host_key.pub|/etc/ssh/ssh_host_ed25519_key.pub|" -e "s|$sim/iac/pushed-secrets|/var/lib/iac/pushed-secrets|"
    exit "${PIPESTATUS[0]}" ;;
  *"/systemd-run "*)
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
        rendered_flake(dir.path(), &inventory(dir.path()));
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
            fs::write(sim.join(host).join("current"), system_path('a', host) + "\n").unwrap();
            fs::write(sim.join(host).join("new"), system_path('b', host)).unwrap();
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
    if user != "root" && [remote::SYSTEMD_RUN, "/bin/sh"].contains(&remote[0]) {
        v.extend(["sudo", "-n", "--"].map(String::from));
    }
    v.extend(remote.iter().map(|w| quote(w).unwrap().into_owned()));
    v
}

/// The first command for every host: reachable (no host key declared, no secrets here).
fn reach(host: &str) -> Vec<String> {
    preflight(host, "", &[])
}

/// The preflight: every word quoted, except `"$SSH_CONNECTION"`, for the login shell to expand.
fn preflight(host: &str, host_key: &str, dirs: &[&str]) -> Vec<String> {
    let mut words = ssh(host, &["/bin/sh", "-c", remote::PREFLIGHT, "iac-preflight"]);
    words.push("\"$SSH_CONNECTION\"".to_string());
    words.extend([remote::HOST_KEY_PUB, host_key].iter().chain(dirs).map(|w| quote(w).unwrap().into_owned()));
    words
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
        system_path('b', host),
    ]
}

fn activate(host: &str, guard: &str) -> Vec<String> {
    let new = system_path('b', host);
    ssh(
        host,
        &[
            remote::SYSTEMD_RUN,
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
            &system_path('a', host),
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

/// The last command of a confirmed (or up-to-date) host: remove the secret files iac pushed
/// earlier that it no longer reads.
fn prune(host: &str, pushed: &[&str], kept: &[&str]) -> Vec<String> {
    let mut words = vec!["/bin/sh", "-c", remote::PRUNE, "iac-prune-secrets", remote::PUSHED_RECORD];
    words.extend(pushed);
    words.push("--");
    words.extend(kept);
    ssh(host, &words)
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
    assert_eq!(log.len(), 8, "{log:#?}");
    assert_eq!(log[0], reach("alpha"));
    assert_eq!(log[1], build(&env, "alpha"));
    assert_eq!(log[2], current("alpha"));
    assert_eq!(log[3], copy("alpha"));
    assert_eq!(log[4], activate("alpha", "1"));
    assert_wait(&log[5], "alpha", 1800, "0");
    assert_eq!(log[6], confirm("alpha"));
    // Once confirmed: the cleanup of stale pushed secrets (none were ever pushed here).
    assert_eq!(log[7], prune("alpha", &[], &[]));
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
    assert_eq!(env.log("beta").len(), 8, "beta deployed all the same");
    let table = stdout(&out);
    assert!(
        table.contains("gamma  check   FAILED: unreachable over SSH (ssh: connect to host 10.9.0.3 port 22: Connection timed out)"),
        "{table}"
    );
    assert!(table.contains("beta   switch  ok: switched, confirmed"), "{table}");
}

/// The host sees this machine at 10.8.0.5, which its new ruleset does not admit SSH from
/// (access.admin is 10.9.0.0/24): it stops in the preflight, before anything is built, with the
/// message that says why and what to do; the others go on.
#[test]
fn a_host_whose_new_firewall_would_cut_this_machine_stops_in_the_preflight() {
    let env = Estate::new();
    env.set("beta", "ssh-connection", "10.8.0.5 51234 10.9.0.2 22");
    let (out, _) = env.deploy(&["--all"], 0);
    let (table, log) = (stdout(&out), stderr(&out));
    assert_eq!(code(&out), 1, "{table}{log}");
    assert_eq!(env.log("beta"), [reach("beta")], "nothing after the preflight: not even a build");
    assert!(
        table.contains(
            "beta   check   FAILED: the new firewall of beta does not admit SSH from 10.8.0.5 (how beta sees this machine); the \
             confirmation would fail and beta roll back"
        ),
        "{table}"
    );
    assert!(
        table.contains(
            "  It admits SSH (tcp/22) from 10.9.0.0/24. Deploy from an admin network (access.admin = 10.9.0.0/24) or add this \
             address with hosts.beta.firewall.allow; --allow-lockout deploys anyway (the rollback guard then undoes the switch)"
        ),
        "{table}"
    );
    for host in ["alpha", "gamma"] {
        assert_eq!(env.log(host).len(), 8, "{host} deployed all the same");
        assert!(table.contains(&format!("{host:<5}  switch  ok: switched, confirmed")), "{table}");
    }
}

/// `--allow-lockout` deploys it anyway, and says so while it runs and in the summary.
#[test]
fn allow_lockout_deploys_with_a_warning() {
    let env = Estate::new();
    env.set("beta", "ssh-connection", "10.8.0.5 51234 10.9.0.2 22");
    let (out, _) = env.deploy(&["beta", "--allow-lockout"], 0);
    let (table, log) = (stdout(&out), stderr(&out));
    assert_eq!(code(&out), 0, "{table}{log}");
    assert_eq!(env.log("beta").len(), 8, "{:#?}", env.log("beta"));
    let warning = "warning: --allow-lockout: the new firewall of beta does not admit SSH from 10.8.0.5 (how it sees this machine); \
                   the confirmation will fail and the host roll back";
    assert!(table.contains(&format!("beta:\n  {warning}\n")), "{table}");
    assert!(log.contains(&format!("beta  {warning}")), "{log}");
}

/// An IPv6 client address: the table admits new connections over IPv4 only, so it is refused.
#[test]
fn an_ipv6_client_address_is_refused_as_the_table_would_drop_it() {
    let env = Estate::new();
    env.set("gamma", "ssh-connection", "2001:db8::5 51234 2001:db8::3 22");
    let (out, _) = env.deploy(&["gamma"], 0);
    let table = stdout(&out);
    assert_eq!(code(&out), 1, "{table}{}", stderr(&out));
    assert_eq!(env.log("gamma"), [reach("gamma")]);
    assert!(table.contains("gamma  check   FAILED: the new firewall of gamma does not admit SSH from 2001:db8::5 "), "{table}");
    assert!(table.contains("  gamma reached it over IPv6, and its table admits new connections over IPv4 only"), "{table}");
}

/// No `$SSH_CONNECTION` on the host: iac cannot tell, warns, and deploys (the guard protects it).
#[test]
fn no_ssh_connection_on_the_host_warns_that_iac_cannot_tell() {
    let env = Estate::new();
    env.set("gamma", "ssh-connection", "");
    let (out, _) = env.deploy(&["gamma"], 0);
    let (table, log) = (stdout(&out), stderr(&out));
    assert_eq!(code(&out), 0, "{table}{log}");
    assert_eq!(env.log("gamma").len(), 8);
    assert!(
        table.contains(
            "gamma:\n  warning: cannot tell whether the new firewall of gamma admits SSH from this machine: the host reported no \
             $SSH_CONNECTION; if it does not, the confirmation fails and gamma rolls back\n"
        ),
        "{table}"
    );
}

#[test]
fn host_already_on_the_built_system_is_skipped() {
    let env = Estate::new();
    env.set("beta", "current", &(system_path('b', "beta") + "\n"));
    let (out, _) = env.deploy(&["beta"], 0);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Up to date: nothing to roll back, so the stale pushed secrets go at once.
    assert_eq!(env.log("beta"), [reach("beta"), build(&env, "beta"), current("beta"), prune("beta", &[], &[])]);
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
    // After the failed confirmation: wait (new connection) through the confirmation window;
    // rolled back, so no cleanup of stale secrets (the 8 calls end with the wait).
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
    assert_eq!(log.len(), 9, "{log:#?}");
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
    assert_eq!(log.len(), 7, "no confirm step: {log:#?}");
    assert_eq!(log[4], activate("beta", "0"));
    assert_eq!(log[6], prune("beta", &[], &[]));
    assert!(stdout(&out).contains("ok: switched (no rollback guard)"));
}

#[test]
fn all_hosts_deploy_in_parallel() {
    let env = Estate::new();
    env.set("gamma", "current", &(system_path('b', "gamma") + "\n"));
    env.set("gamma", "new", &system_path('c', "gamma"));
    let (out, took) = env.deploy(&["--all"], 2);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    println!("deploy --all, 3 hosts, each switch 2 s, --jobs 4: {:.2} s", took.as_secs_f64());
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(4), "hosts did not switch in parallel: {took:?}");
    for host in ["alpha", "beta", "gamma"] {
        assert_eq!(env.log(host).len(), 8, "{host}");
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
    assert!(
        text.contains(
            "-p 2222 -- deploy@10.9.0.1 sudo -n -- /bin/sh -c <script> iac-preflight \"$SSH_CONNECTION\" /etc/ssh/ssh_host_ed25519_key.pub ''    # reachable"
        ),
        "{text}"
    );
    assert!(text.contains(" build --no-link --print-out-paths "), "{text}");
    assert!(text.contains("copy --substitute-on-destination --to ssh://root@10.9.0.2 $NEW\n"), "{text}");
    assert!(text.contains(" $NEW $PREV /run/iac-deploy/"), "{text}");
    assert!(text.contains("-p 22 -- root@10.9.0.2 /bin/sh -c <script> iac-confirm /run/iac-deploy/"), "{text}");
    assert!(text.contains("-p 2222 -- deploy@10.9.0.1 sudo -n -- /run/current-system/sw/bin/systemd-run --unit=iac-deploy"), "{text}");
    assert!(
        text.contains(remote::PREFLIGHT)
            && text.contains(remote::GUARD)
            && text.contains(remote::WAIT)
            && text.contains(remote::CONFIRM)
            && text.contains(remote::PRUNE),
        "scripts printed"
    );
    // The cleanup of stale pushed secrets, last, after the confirmation.
    assert!(
        text.contains(
            "-p 22 -- root@10.9.0.2 /bin/sh -c <script> iac-prune-secrets /var/lib/iac/pushed-secrets --    # once confirmed (or up to date): \
             remove the files /var/lib/iac/pushed-secrets lists that the host no longer reads\n"
        ),
        "{text}"
    );
    assert!(!text.contains("# gamma"), "{text}");
    // The lockout check needs the host's answer: the dry run says it runs at deploy time.
    assert!(
        text.contains(
            "# not run: whether each host's new firewall admits SSH from where the host sees this machine ($SSH_CONNECTION); \
             the preflight on the host reports it at deploy time, and a host it would lock out stops there\n"
        ),
        "{text}"
    );

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
    assert_eq!(code(&out), 2, "an unknown host is invalid input, as for flows and drift");
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
    assert_eq!(log.len(), 8, "{log:#?}");
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
    let new = system_path('b', "beta");
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

// ---- the secrets: preflight and push ----------------------------------------------------------

/// alpha is a k3s server (non-root SSH user), gamma an agent, beta a database host; no host has
/// a host key, so `iac deploy` pushes: the token to both nodes, the password to beta (group
/// `daemon`, mode 0440), each under `<tmp>/on/<host>/` (the fake ssh runs the push here). The
/// admin key is the one `admin_key` writes to `<tmp>/admin.key`.
fn secrets_inventory(dir: &Path) -> String {
    let on = |host: &str, name: &str| dir.join("on").join(host).join(name).display().to_string();
    INVENTORY
        .replace(
            "[hosts.alpha]",
            "[cluster]\npod_cidr = \"10.42.0.0/16\"\nservice_cidr = \"10.43.0.0/16\"\ntoken = \"k3s-token\"\n\n[hosts.alpha]",
        )
        .replace("address = \"10.9.0.1\"\nroles = []", "address = \"10.9.0.1\"\nroles = [\"k3s-server\"]")
        .replace("address = \"10.9.0.2\"\nroles = []", "address = \"10.9.0.2\"\nroles = [\"postgresql\"]")
        .replace("address = \"10.9.0.3\"\nroles = []", "address = \"10.9.0.3\"\nroles = [\"k3s-agent\"]")
        + &format!(
            "\n[databases.app]\nhost = \"beta\"\nowner = \"app\"\npassword = \"app-db\"\nclients = [\"admin\"]\n\n\
             [admins.test]\nkey = \"{}\"\n\n\
             [secrets.k3s-token]\nkind = \"k3s-token\"\nhosts = [{{ host = \"alpha\", path = \"{}\" }}, {{ host = \"gamma\", path = \"{}\" }}]\n\n\
             [secrets.app-db]\nkind = \"password\"\nhosts = [{{ host = \"beta\", path = \"{}\", group = \"daemon\", mode = \"0440\" }}]\n",
            admin_key(dir),
            on("alpha", "k3s-token"),
            on("gamma", "k3s-token"),
            on("beta", "app-password"),
        )
}

/// An age identity in `<dir>/admin.key` (made once per directory); its public key.
fn admin_key(dir: &Path) -> String {
    use age::secrecy::ExposeSecret;
    let file = dir.join("admin.key");
    if !file.exists() {
        fs::write(&file, format!("{}\n", age::x25519::Identity::generate().to_string().expose_secret())).unwrap();
    }
    let text = fs::read_to_string(&file).unwrap();
    text.trim().parse::<age::x25519::Identity>().unwrap().to_public().to_string()
}

/// The estate of `secrets_inventory` with its secrets made by `iac secrets init`.
fn secrets_estate() -> Estate {
    let env = Estate::with_inventory(secrets_inventory);
    let out = iac()
        .args(["secrets", "init", "--inventory"])
        .arg(env.flake().join("hosts/inventory.toml"))
        .arg("--dir")
        .arg(env.flake().join("secrets"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    env
}

impl Estate {
    fn identity(&self) -> String {
        self.dir.path().join("admin.key").display().to_string()
    }

    /// The plaintext of a secret, as `iac secrets show` prints it.
    fn value(&self, name: &str) -> Vec<u8> {
        let out = iac()
            .args(["secrets", "show", name, "--identity", &self.identity(), "--inventory"])
            .arg(self.flake().join("hosts/inventory.toml"))
            .arg("--dir")
            .arg(self.flake().join("secrets"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        out.stdout
    }

    fn on(&self, host: &str) -> PathBuf {
        self.dir.path().join("on").join(host)
    }
}

fn push(host: &str, files: &[(&str, &str, &str, &str, usize)]) -> Vec<String> {
    let mut words: Vec<String> = ["/bin/sh", "-c", remote::PUSH, "iac-push-secrets", remote::PUSHED_RECORD].map(String::from).to_vec();
    for (path, owner, group, mode, len) in files {
        words.extend([path.to_string(), owner.to_string(), group.to_string(), mode.to_string(), len.to_string()]);
    }
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    ssh(host, &refs)
}

#[test]
fn pushed_secrets_are_written_before_the_switch_with_owner_and_mode() {
    let env = secrets_estate();
    let (out, _) = env.deploy(&["--all", "--identity", &env.identity()], 0);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let token = env.value("k3s-token");
    let password = env.value("app-db");
    assert_eq!((token.len(), password.len()), (64, 32));
    for (host, file, value, group, mode) in [
        ("alpha", "k3s-token", &token, "root", 0o400),
        ("gamma", "k3s-token", &token, "root", 0o400),
        ("beta", "app-password", &password, "daemon", 0o440),
    ] {
        let path = env.on(host).join(file);
        let log = env.log(host);
        // Preflight, build, the push, then the switch as before, and the cleanup once confirmed.
        assert_eq!(log.len(), 9, "{host}: {log:#?}");
        assert_eq!(log[0], preflight(host, "", &[&env.on(host).display().to_string()]));
        assert_eq!(log[1], build(&env, host));
        let mode_text = format!("{mode:04o}");
        assert_eq!(log[2], push(host, &[(&path.display().to_string(), "root", group, &mode_text, value.len())]));
        assert_eq!(log[3], current(host));
        assert_eq!(log[8], prune(host, &[&path.display().to_string()], &[]));
        // The record lists exactly the pushed file, root's and 0600.
        let record = env.sim(host).join("iac/pushed-secrets");
        assert_eq!(fs::read_to_string(&record).unwrap(), format!("{}\n", path.display()), "{host}");
        assert_eq!(fs::metadata(&record).unwrap().permissions().mode() & 0o7777, 0o600);
        // The value arrived whole, with its owner, group and mode, in a directory of its own.
        assert_eq!(&fs::read(&path).unwrap(), value, "{host}");
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{host}");
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), if group == "daemon" { 1 } else { 0 }, "{host}");
        assert_eq!(fs::metadata(env.on(host)).unwrap().permissions().mode() & 0o777, 0o751);
        assert_eq!(fs::read_dir(env.on(host)).unwrap().count(), 1, "{host}: no temporary file left");
    }
    // The values went through ssh's stdin only: in no argv any fake recorded, in no output.
    for (host, value) in [("alpha", &token), ("beta", &password), ("gamma", &token)] {
        let log = fs::read(env.sim(host).join("log")).unwrap();
        assert!(!log.windows(value.len()).any(|w| w == value.as_slice()), "{host}: a value on a command line");
    }
    for text in [stdout(&out), stderr(&out)] {
        assert!(!text.contains(std::str::from_utf8(&token).unwrap()) && !text.contains(std::str::from_utf8(&password).unwrap()));
    }
    assert!(stderr(&out).contains("beta   writing 1 secret(s) over SSH"), "{}", stderr(&out));
}

/// A secret a host no longer reads (gamma left the cluster: it reads no pushed secret at all;
/// beta's password moved to another path) stays while a switch is rolled back, since the
/// previous system may still read it, and is removed by the next confirmed deploy, which names
/// it. The new file is written (and recorded) before the switch either way.
#[test]
fn a_secret_the_host_no_longer_reads_is_removed_once_the_new_system_is_confirmed() {
    let env = secrets_estate();
    let (out, _) = env.deploy(&["--all", "--identity", &env.identity()], 0);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let (old_password, token) = (env.on("beta").join("app-password"), env.on("gamma").join("k3s-token"));
    let new_password = env.on("beta").join("app-password-2");
    assert!(old_password.exists() && token.exists());
    assert!(!stdout(&out).contains("removed the stale secret file"), "{}", stdout(&out));

    let inventory = env.flake().join("hosts/inventory.toml");
    let text = fs::read_to_string(&inventory).unwrap();
    let gamma_token = format!(", {{ host = \"gamma\", path = \"{}\" }}", token.display());
    let edited = text
        .replace("address = \"10.9.0.3\"\nroles = [\"k3s-agent\"]", "address = \"10.9.0.3\"\nroles = []")
        .replace(&gamma_token, "")
        .replace(&old_password.display().to_string(), &new_password.display().to_string());
    assert!(edited != text && !edited.contains(&token.display().to_string()) && !edited.contains("app-password\""));
    fs::write(&inventory, edited).unwrap();
    let render = iac().args(["render", "--inventory"]).arg(&inventory).arg("--out").arg(env.flake().join("generated")).output().unwrap();
    assert!(render.status.success(), "{}", stderr(&render));
    for host in ["beta", "gamma"] {
        env.set(host, "new", &system_path('c', host));
        env.set(host, "mode", "confirm-fails");
        fs::remove_file(env.sim(host).join("log")).unwrap();
    }

    // Rolled back: the old files stay, for the system the hosts went back to.
    let (out, _) = env.deploy(&["beta", "gamma", "--identity", &env.identity()], 0);
    assert_eq!(code(&out), 3, "{}{}", stdout(&out), stderr(&out));
    assert!(old_password.exists() && token.exists() && new_password.exists());
    for host in ["beta", "gamma"] {
        assert!(!env.log(host).iter().any(|c| c.iter().any(|w| w.contains("iac-prune-secrets"))), "{host}: {:#?}", env.log(host));
    }
    // beta's record lists the old file and the new one: whichever the next deploy keeps, the
    // other can go.
    let record = fs::read_to_string(env.sim("beta").join("iac/pushed-secrets")).unwrap();
    assert_eq!(record, format!("{}\n{}\n", old_password.display(), new_password.display()));

    // Confirmed: each host's stale file goes, and the summary names it.
    for host in ["beta", "gamma"] {
        env.set(host, "mode", "ok");
        fs::remove_file(env.sim(host).join("log")).unwrap();
    }
    let (out, _) = env.deploy(&["beta", "gamma", "--identity", &env.identity()], 0);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(!old_password.exists() && !token.exists(), "stale files left");
    assert_eq!(fs::read(&new_password).unwrap(), env.value("app-db"));
    let beta = env.log("beta");
    assert_eq!(beta.last().unwrap(), &prune("beta", &[&new_password.display().to_string()], &[]), "{beta:#?}");
    // gamma reads no pushed secret any more: its cleanup runs with the empty set.
    let gamma = env.log("gamma");
    assert!(!gamma.iter().any(|c| c.iter().any(|w| w.contains("iac-push-secrets"))), "{gamma:#?}");
    assert_eq!(gamma.last().unwrap(), &prune("gamma", &[], &[]), "{gamma:#?}");
    assert_eq!(fs::read_to_string(env.sim("gamma").join("iac/pushed-secrets")).unwrap(), "");
    let table = stdout(&out);
    assert!(table.contains(&format!("\nbeta:\n  removed the stale secret file {}\n", old_password.display())), "{table}");
    assert!(table.contains(&format!("\ngamma:\n  removed the stale secret file {}\n", token.display())), "{table}");
    assert!(stderr(&out).contains(&format!("gamma  removed the stale secret file {}", token.display())), "{}", stderr(&out));
    assert!(table.contains("beta   switch  ok: switched, confirmed"), "{table}");
}

#[test]
fn an_unsafe_secrets_directory_stops_the_host_before_anything_is_built() {
    let env = secrets_estate();
    fs::create_dir_all(env.on("beta")).unwrap();
    fs::set_permissions(env.on("beta"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::create_dir_all(env.dir.path().join("on")).unwrap();
    fs::write(env.on("gamma"), "a file where the directory should be").unwrap();
    let (out, _) = env.deploy(&["--all", "--identity", &env.identity()], 0);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let table = stdout(&out);
    let beta = env.on("beta").display().to_string();
    let gamma = env.on("gamma").display().to_string();
    assert!(
        table.contains(&format!("beta   check   FAILED: not ready for its secrets: unsafe-directory: {beta} (where app-db goes)")),
        "{table}"
    );
    assert!(
        table.contains(&format!("gamma  check   FAILED: not ready for its secrets: not-a-directory: {gamma} (where k3s-token goes)")),
        "{table}"
    );
    for host in ["beta", "gamma"] {
        assert_eq!(env.log(host).len(), 1, "{host}: nothing after the preflight: {:#?}", env.log(host));
    }
    assert!(table.contains("alpha  switch  ok: switched, confirmed"), "{table}");
}

/// A host with a declared host key gets its secrets from its own module; the preflight proves
/// the key on the host is the declared one (the fake ssh reads it from the simulation).
#[test]
fn a_host_key_that_differs_from_the_declared_one_stops_the_host() {
    let keys = tempfile::tempdir().unwrap();
    let (declared_key, other) = (crate::support::ssh_keygen(keys.path(), "declared"), crate::support::ssh_keygen(keys.path(), "other"));
    let declared = format!("{declared_key} root@gamma\n");
    let other = format!("{other} root@gamma\n");
    let env = Estate::with_inventory(|dir| {
        secrets_inventory(dir).replace("address = \"10.9.0.3\"\n", &format!("address = \"10.9.0.3\"\nhost_key = \"{declared_key}\"\n"))
    });
    let init = iac()
        .args(["secrets", "init", "--inventory"])
        .arg(env.flake().join("hosts/inventory.toml"))
        .arg("--dir")
        .arg(env.flake().join("secrets"))
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", stderr(&init));
    env.set("gamma", "host_key.pub", &other);
    env.set("alpha", "host_key.pub", &other);
    let (out, _) = env.deploy(&["gamma", "alpha", "--identity", &env.identity()], 0);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains(
            "gamma  check   FAILED: not ready for its secrets: host-key-differs: /etc/ssh/ssh_host_ed25519_key.pub (hosts.gamma.host_key"
        ),
        "{table}"
    );
    assert_eq!(env.log("gamma")[0], preflight("gamma", &declared_key, &[&env.on("gamma").display().to_string()]));
    assert_eq!(env.log("gamma").len(), 1);
    // alpha has no host key: its key is not compared, and its token is pushed.
    assert!(table.contains("alpha  switch  ok: switched, confirmed"), "{table}");
    // With the right key the host goes on, and nothing is pushed to it: its module decrypts.
    env.set("gamma", "host_key.pub", &declared);
    let (out, _) = env.deploy(&["gamma", "--identity", &env.identity()], 0);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let log = env.log("gamma");
    assert!(!log.iter().any(|c| c.iter().any(|w| w.contains("iac-push-secrets"))), "{log:#?}");
    assert!(!env.on("gamma").exists());
}

/// Secrets encrypted to other recipients than the inventory gives them (a host key added,
/// no rekey) stop the deploy before any host is touched; so does a missing identity.
#[test]
fn stale_secrets_or_no_identity_touch_no_host() {
    let env = secrets_estate();
    let inventory = env.flake().join("hosts/inventory.toml");
    let (out, _) = env.deploy(&["--all"], 0);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("no identity to decrypt with: pass --identity FILE"), "{}", stderr(&out));

    let text = fs::read_to_string(&inventory).unwrap();
    let key = crate::support::ssh_keygen(env.dir.path(), "gamma-host-key");
    fs::write(&inventory, text.replace("address = \"10.9.0.3\"\n", &format!("address = \"10.9.0.3\"\nhost_key = \"{key}\"\n"))).unwrap();
    let render = iac().args(["render", "--inventory"]).arg(&inventory).arg("--out").arg(env.flake().join("generated")).output().unwrap();
    assert!(render.status.success(), "{}", stderr(&render));
    let (out, _) = env.deploy(&["--all", "--identity", &env.identity()], 0);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("STALE     k3s-token:"), "{}", stderr(&out));
    assert!(stderr(&out).contains("not encrypted to host gamma"), "{}", stderr(&out));
    for host in ["alpha", "beta", "gamma"] {
        assert!(env.log(host).is_empty(), "{host} was touched");
    }
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
        stdout(&out).contains(
            "alpha  check   FAILED: sudo -n refused deploy on alpha (sudo: a password is required): iac runs its root steps with \
             `sudo -n`, which never asks for a password; give deploy password-less sudo (NOPASSWD)"
        ),
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

/// The preflight script as the host runs it, on real directories and key files.
#[test]
fn preflight_script_judges_real_directories_and_the_host_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str, mode: u32| {
        let p = dir.path().join(name);
        fs::create_dir(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    };
    let ok = d("ok", 0o751);
    let group = d("group", 0o771);
    let world = d("world", 0o757);
    let missing = dir.path().join("missing").display().to_string();
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    let file = file.display().to_string();
    let spaced = d("a b; $(touch pwned)", 0o700);
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3pUxCowG1tMDG+T3wfNcX00W4bt1HSkNmHgRJjqW2y";
    let pubfile = dir.path().join("key.pub");
    fs::write(&pubfile, format!("{key} root@host\n")).unwrap();
    let pubfile = pubfile.display().to_string();
    let conn = "10.9.0.5 51234 10.9.0.1 22";
    for shell in SHELLS {
        let run = |want: &str, args: &[&str]| {
            let out = Command::new(shell)
                .arg("-c")
                .arg(remote::PREFLIGHT)
                .arg("iac-preflight")
                .arg(conn)
                .arg(&pubfile)
                .arg(want)
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            stdout(&out)
        };
        assert_eq!(
            run("", &[&ok, &group, &world, &missing, &file, &spaced]),
            format!(
                "ssh-connection: {conn}\nok: {ok}\nunsafe-directory: {group}\nunsafe-directory: {world}\nok: {missing}\nnot-a-directory: {file}\nok: {spaced}\n"
            ),
            "{shell}"
        );
        assert_eq!(run(key, &[]), format!("ssh-connection: {conn}\nhost-key-ok: {pubfile}\n"), "{shell}");
        assert_eq!(run("ssh-ed25519 AAAAother", &[]), format!("ssh-connection: {conn}\nhost-key-differs: {pubfile}\n"), "{shell}");
        // No $SSH_CONNECTION: the login shell expanded "$SSH_CONNECTION" to an empty word.
        let out =
            Command::new(shell).arg("-c").arg(remote::PREFLIGHT).args(["iac-preflight", "", "/nonexistent/key.pub", key]).output().unwrap();
        assert_eq!(stdout(&out), "ssh-connection: \nhost-key-missing: /nonexistent/key.pub\n", "{shell}");
        assert_eq!(remote::ssh_connection(&stdout(&out)), Some(""));
    }
    assert!(!dir.path().join("pwned").exists() && !Path::new("pwned").exists());
}

/// The push script as the host runs it: values of any bytes, read from stdin by length,
/// written atomically with owner, group and mode; an unsafe directory skips its value only.
/// Every path is added to the record of pushed files first, after what it listed.
#[test]
fn push_script_writes_each_value_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let values: [&[u8]; 4] = [b"first\n", b"skipped", b"bin\x00ary\xff\n\n", b"last"];
    let unsafe_dir = dir.path().join("unsafe");
    fs::create_dir(&unsafe_dir).unwrap();
    fs::set_permissions(&unsafe_dir, fs::Permissions::from_mode(0o777)).unwrap();
    for shell in SHELLS {
        let base = dir.path().join(shell.replace('/', "_"));
        let paths = [base.join("a/one"), unsafe_dir.join("two"), base.join("b/c/three"), base.join("a/four")];
        fs::create_dir_all(base.join("a")).unwrap();
        fs::write(&paths[0], "old value").unwrap();
        let record = base.join("iac/pushed-secrets");
        fs::create_dir_all(base.join("iac")).unwrap();
        fs::write(&record, format!("/earlier/file\n{}\n", paths[3].display())).unwrap();
        let mut args: Vec<String> = vec![record.display().to_string()];
        for (p, v) in paths.iter().zip(values) {
            args.extend([p.display().to_string(), "root".into(), "daemon".into(), "0440".into(), v.len().to_string()]);
        }
        let mut child = Command::new(shell)
            .arg("-c")
            .arg(remote::PUSH)
            .arg("iac-push-secrets")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&values.concat()).unwrap();
        let out = child.wait_with_output().unwrap();
        let lines = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{shell}: the unsafe directory fails the run: {lines}{}", stderr(&out));
        let p = |i: usize| paths[i].display().to_string();
        let r = record.display();
        assert_eq!(lines, format!("ok: {r}\nok: {}\nunsafe-directory: {}\nok: {}\nok: {}\n", p(0), p(1), p(2), p(3)), "{shell}");
        assert_eq!(fs::read_to_string(&record).unwrap(), format!("/earlier/file\n{}\n{}\n{}\n{}\n", p(3), p(0), p(1), p(2)), "{shell}");
        assert_eq!(fs::metadata(&record).unwrap().permissions().mode() & 0o7777, 0o600);
        assert_eq!(fs::read_dir(base.join("iac")).unwrap().count(), 1, "{shell}: no temporary record left");
        for i in [0, 2, 3] {
            assert_eq!(fs::read(&paths[i]).unwrap(), values[i], "{shell}: {}", p(i));
            let meta = fs::metadata(&paths[i]).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, 0o440);
            assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 1);
        }
        assert!(!paths[1].exists());
        // New directories are 0751; no temporary file is left anywhere.
        assert_eq!(fs::metadata(base.join("b/c")).unwrap().permissions().mode() & 0o777, 0o751);
        assert_eq!(fs::read_dir(base.join("a")).unwrap().count(), 2, "{shell}");
    }
}

/// A push whose record is not root's alone writes nothing: the record decides what root
/// deletes later.
#[test]
fn push_script_refuses_an_unsafe_record() {
    let dir = tempfile::tempdir().unwrap();
    for shell in SHELLS {
        let base = dir.path().join(shell.replace('/', "_"));
        fs::create_dir_all(base.join("iac")).unwrap();
        fs::set_permissions(base.join("iac"), fs::Permissions::from_mode(0o777)).unwrap();
        let record = base.join("iac/pushed-secrets").display().to_string();
        let dest = base.join("s/one");
        let out = Command::new(shell)
            .args(["-c", remote::PUSH, "iac-push-secrets", &record, &dest.display().to_string(), "root", "root", "0400", "3"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{shell}");
        assert_eq!(stdout(&out), format!("unsafe-record: {record}\n"), "{shell}");
        assert!(!dest.exists() && !Path::new(&record).exists(), "{shell}");
    }
}

/// The cleanup as the host runs it, under dash and bash, against a temp root: of the paths the
/// old record lists, a stale regular file is removed; a symlink (and the file it points to) and
/// a directory are left alone and forgotten; a file the host still reads (pushed now, or
/// decrypted at activation) stays; a file in a directory others may write to stays and stays
/// listed; lines that are not absolute normalised paths are ignored; a file the record never
/// listed is never touched. The record is rewritten to the pushed set (plus what could not go).
#[test]
fn prune_script_removes_only_stale_regular_files_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    for shell in SHELLS {
        let base = fs::canonicalize(dir.path()).unwrap().join(shell.replace('/', "_"));
        let s = base.join("s");
        let open = base.join("open");
        fs::create_dir_all(&s).unwrap();
        fs::create_dir_all(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let p = |name: &str| s.join(name).display().to_string();
        for name in ["pushed", "stale", "activation", "never-listed"] {
            fs::write(s.join(name), name).unwrap();
        }
        let victim = base.join("victim");
        fs::write(&victim, "not iac's").unwrap();
        symlink(&victim, s.join("link")).unwrap();
        fs::create_dir(s.join("dir")).unwrap();
        fs::write(s.join("dir/inside"), "x").unwrap();
        fs::write(open.join("exposed"), "x").unwrap();
        let exposed = open.join("exposed").display().to_string();
        let record = base.join("iac/pushed-secrets");
        fs::create_dir_all(base.join("iac")).unwrap();
        fs::set_permissions(base.join("iac"), fs::Permissions::from_mode(0o700)).unwrap();
        let listed = [
            p("pushed"),
            p("stale"),
            p("link"),
            p("dir"),
            p("activation"),
            p("gone"),
            exposed.clone(),
            "relative/never-listed".into(),
            format!("{}/../s/never-listed", p("dir")),
            String::new(),
        ];
        fs::write(&record, listed.join("\n") + "\n").unwrap();
        let record_arg = record.display().to_string();
        let out = Command::new(shell)
            .args(["-c", remote::PRUNE, "iac-prune-secrets", &record_arg, &p("pushed"), &p("new"), "--", &p("activation")])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{shell}: the exposed file fails the run: {}{}", stdout(&out), stderr(&out));
        assert_eq!(
            stdout(&out),
            format!("removed: {}\nnot-a-file: {}\nnot-a-file: {}\nunsafe-directory: {exposed}\n", p("stale"), p("link"), p("dir")),
            "{shell}"
        );
        assert!(!s.join("stale").exists(), "{shell}");
        for kept in ["pushed", "activation", "never-listed", "dir/inside"] {
            assert!(s.join(kept).exists(), "{shell}: {kept}");
        }
        assert!(fs::symlink_metadata(s.join("link")).unwrap().file_type().is_symlink(), "{shell}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "not iac's", "{shell}");
        assert!(Path::new(&exposed).exists(), "{shell}");
        assert_eq!(fs::read_to_string(&record).unwrap(), format!("{}\n{}\n{exposed}\n", p("pushed"), p("new")), "{shell}");
        assert_eq!(fs::metadata(&record).unwrap().permissions().mode() & 0o7777, 0o600);
        assert_eq!(fs::read_dir(base.join("iac")).unwrap().count(), 1, "{shell}: no temporary record left");

        // Once the directory is safe again, the next run removes it; nothing pushed now.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new(shell).args(["-c", remote::PRUNE, "iac-prune-secrets", &record_arg, "--"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        assert_eq!(stdout(&out), format!("removed: {}\nremoved: {exposed}\n", p("pushed")), "{shell}");
        assert_eq!(fs::read_to_string(&record).unwrap(), "", "{shell}");

        // A record someone else could have written is not read, and nothing is removed.
        fs::write(&record, format!("{}\n", p("activation"))).unwrap();
        fs::set_permissions(&record, fs::Permissions::from_mode(0o666)).unwrap();
        let out = Command::new(shell).args(["-c", remote::PRUNE, "iac-prune-secrets", &record_arg, "--"]).output().unwrap();
        assert_eq!((out.status.code(), stdout(&out)), (Some(1), format!("unsafe-record: {record_arg}\n")), "{shell}");
        assert!(s.join("activation").exists());

        // No record and nothing pushed (a host iac never pushed to): nothing to do, nothing made.
        let none = base.join("none/pushed-secrets").display().to_string();
        let out = Command::new(shell).args(["-c", remote::PRUNE, "iac-prune-secrets", &none, "--", &p("activation")]).output().unwrap();
        assert_eq!((out.status.code(), stdout(&out)), (Some(0), String::new()), "{shell}");
        assert!(!base.join("none").exists(), "{shell}");
    }
}

#[test]
fn docs_quote_the_scripts_exactly() {
    let doc = fs::read_to_string(repo().join("docs/deploy.md")).unwrap();
    for (name, script) in [
        ("PREFLIGHT", remote::PREFLIGHT),
        ("PUSH", remote::PUSH),
        ("GUARD", remote::GUARD),
        ("WAIT", remote::WAIT),
        ("CONFIRM", remote::CONFIRM),
        ("PRUNE", remote::PRUNE),
    ] {
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
