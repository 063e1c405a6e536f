//! `iac deploy` end to end over real SSH (issue 18): the guard that makes "a firewall change
//! that cuts SSH undoes itself" true, proven with a real `sshd`, a real `ssh` and a real
//! firewall cut.
//!
//! Each target is a network namespace and a mount namespace of its own, running Debian's
//! `sshd` (a host key and a user key the test makes, listening on the target's address only)
//! and the real `nft` as its firewall. iac runs in another network namespace, the deployer,
//! with the real `ssh` client; the two are joined by a bridge (deployer 10.77.0.1, targets
//! 10.77.0.11 and up). The user's `~/.ssh/config` (keys, known_hosts, and in one case a
//! `ControlMaster`) is what a user would have: the deployer's mount namespace has the test's
//! home on `/root`, where OpenSSH looks (it takes `~` from the password database, not `$HOME`).
//!
//! What cannot run here is a small stand-in, listed in docs/deploy.md with what each replaces
//! (tests/deploy_standins/): `nix build`/`nix copy` on the deployer; `switch-to-configuration`,
//! `nix-env`, `nix-store`, `systemd-run`, `systemctl` and (for a login user other than root,
//! cases 8 to 10) `nix-daemon` on the targets. Everything else is
//! real: the binary, its preflight (render check, `nft -c`, the Nix evaluation), the on-target
//! scripts exactly as the unit runs them, the rulesets `iac render` wrote, loaded by the real
//! `nft` in the target's namespace. Each target runs in a root of its own (a tmpfs with the
//! machine's directories bound in, and its own `/nix`, `/run`, `/var`, `/boot`, `/root`), so
//! the fixed paths iac uses (`/run/current-system`, `/nix/var/nix/profiles/system`,
//! `/run/iac-deploy`) are the target's own, and this machine's are never touched.
//!
//! Cleanup: every process the namespaces hold is started with a parent-death signal (the
//! kernel kills it when the test's thread ends, however it ends), and each lab kills every
//! process left in its namespaces when it is dropped; no namespace is ever named in
//! `/run/netns`.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use iac::deploy::plan::quote;
use iac::deploy::remote;

use crate::support::{self, IAC, repo, text};

/// The deployer's address on the lab's bridge.
const DEPLOYER: &str = "10.77.0.1";
/// An admin network that holds the deployer, and one that does not (the cut).
const ADMIN: &str = "10.77.0.0/28";
const ADMIN_ELSEWHERE: &str = "10.77.0.128/28";
/// `--confirm-timeout`: short, so a rollback comes quickly.
const CONFIRM_TIMEOUT: u64 = 4;
/// `--connect-timeout`: how long a connection into a cut host hangs.
const CONNECT_TIMEOUT: u64 = 2;

/// The stand-ins for what cannot run here (tests/deploy_standins/README.md).
fn standins() -> PathBuf {
    repo().join("tests/deploy_standins")
}

/// The tools a lab needs, besides root.
const TOOLS: [&str; 11] = ["sshd", "ssh", "ssh-keygen", "nft", "ip", "nsenter", "unshare", "setsid", "chroot", "tar", "sha256sum"];

/// Whether a lab can run here. Needs root (network namespaces with an sshd in them: sshd's
/// privilege separation needs real user ids). A missing tool or no root fails the test when
/// IAC_REQUIRE_TOOLS is set, as in CI, and skips it otherwise.
fn lab_possible() -> bool {
    for tool in TOOLS {
        if support::tool(tool).is_none() {
            return false;
        }
    }
    if !is_root() {
        assert!(std::env::var_os("IAC_REQUIRE_TOOLS").is_none(), "the deploy end-to-end tests need root; IAC_REQUIRE_TOOLS is set");
        eprintln!("skipping: the deploy end-to-end tests need root");
        return false;
    }
    true
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The inventory of a lab: `hosts` at 10.77.0.11 and up, `admin` the admin network. From
/// generation 2 on, every host offers a new service (a real change of its ruleset).
fn inventory(hosts: &[&str], admin: &str, generation: u32) -> String {
    let mut s = format!(
        "[site]\nname = \"deploy-e2e\"\n\n[networks.lab]\ncidr = \"10.77.0.0/24\"\n\n[access]\nadmin = [\"{admin}\"]\n\n\
         [dns]\nupstream = [\"10.77.0.53\"]\n"
    );
    for (i, host) in hosts.iter().enumerate() {
        s.push_str(&format!("\n[hosts.{host}]\naddress = \"{}\"\nroles = []\n", address(i)));
        if generation >= 2 {
            s.push_str(&format!(
                "\n[[hosts.{host}.firewall.allow]]\nfrom = [\"admin\"]\nproto = \"tcp\"\nports = [8080]\nwhy = \"generation {generation}: a new service\"\n"
            ));
        }
    }
    s
}

fn address(i: usize) -> String {
    format!("10.77.0.{}", 11 + i)
}

/// Every process the lab starts gets SIGKILL when the thread that started it ends: a test that
/// panics or is killed leaves no sshd, no namespace holder and no iac behind. (What those
/// start in turn ends by itself: a guard within its confirmation timeout, an SSH master after
/// its ControlPersist.)
fn dies_with_test(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
    cmd
}

/// Start a process that holds a namespace (or serves in one).
fn held(mut cmd: Command) -> Child {
    dies_with_test(&mut cmd).spawn().expect("spawn a namespace holder")
}

/// Run to completion; panics with its output unless it succeeds.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}\n{}{}", out.status, text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// A command in the namespaces of `pid` (nsenter execs it: it keeps the parent-death signal).
fn nsenter(pid: u32, namespaces: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--target={pid}")).args(namespaces).arg("--");
    dies_with_test(&mut c);
    c
}

/// Poll `done` every 10 ms until it holds; panic with `what` after `limit`.
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The network namespace of a process, as the kernel names it (`net:[4026532...]`).
fn netns_of(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/net")).ok()
}

/// Every process in the network namespace of `holder` but `holder` itself.
fn processes_in_netns_of(holder: u32) -> Vec<u32> {
    let Some(ns) = netns_of(holder) else { return Vec::new() };
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid != holder && netns_of(pid).as_ref() == Some(&ns) {
            pids.push(pid);
        }
    }
    pids
}

fn kill(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions; the pid is one of this lab's processes.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// The argv of a process (empty when it is gone).
fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline")).map(|b| b.split(|&c| c == 0).map(text).collect()).unwrap_or_default()
}

/// Builds a target's root: a tmpfs with every top-level directory of this machine bound in,
/// except the target's own `/nix`, `/run`, `/var`, `/boot`, `/root` and those named after the
/// first argument (`etc home` for a target with a login user of its own); then waits there.
const TARGET_ROOT: &str = r#"set -eu
t=$1
shift
own="nix run var boot root $*"
r=$t/mnt
mount -t tmpfs iac-e2e-target "$r"
for d in /*; do
  n=${d#/}
  case " $own " in *" $n "*) continue ;; esac
  if [ -L "$d" ]; then
    ln -s "$(readlink "$d")" "$r/$n"
  elif [ -d "$d" ]; then
    mkdir "$r/$n"
    mount --rbind "$d" "$r/$n"
  fi
done
for n in $own; do
  mkdir "$r/$n"
  mount --bind "$t/$n" "$r/$n"
done
ip link set lo up
exec chroot "$r" sleep infinity
"#;

/// The deployer: the test's home on /root (OpenSSH reads `~/.ssh` from there), and the bridge.
const DEPLOYER_NS: &str = r#"set -eu
mount --bind "$1" /root
ip link set lo up
ip link add br0 type bridge
ip addr add 10.77.0.1/24 dev br0
ip link set br0 up
: > "$2"
exec sleep infinity
"#;

/// Who iac logs in as on the lab's targets (`hosts.X.ssh_user`).
#[derive(Debug, Clone, Copy)]
struct Login {
    user: &'static str,
    /// For a user other than root, the target's sudoers grants it `ALL` with `NOPASSWD:`, or
    /// without (sudo then wants a password, which `sudo -n` never asks for).
    nopasswd: bool,
}

/// As root, with root's key (the cases 1 to 7).
const ROOT: Login = Login { user: "root", nopasswd: true };
/// As the wheel user `deploy` with password-less sudo, as many NixOS estates deploy.
const DEPLOY: Login = Login { user: "deploy", nopasswd: true };
/// Its uid and gid in the target's own /etc.
const DEPLOY_ID: u32 = 4242;

/// The target's /etc/sudoers: Debian 12's defaults (`env_reset`, `secure_path` without
/// NixOS's /run/current-system/sw/bin, `use_pty`), a log file the test reads (one line per
/// command, unwrapped), and the drop-in directory. NixOS's own sudoers sets no secure_path;
/// this stricter one proves that nothing iac runs through sudo depends on sudo's PATH.
const SUDOERS: &str = "Defaults env_reset\nDefaults mail_badpass\n\
Defaults secure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\nDefaults use_pty\n\
Defaults logfile=/var/log/sudo.log\nDefaults loglinelen=0\nroot ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n";

struct Target {
    name: String,
    /// The SSH user iac logs in as.
    user: &'static str,
    address: String,
    /// The target's own `/nix`, `/run`, `/var`, `/boot`, `/root`, its sshd's files.
    dir: PathBuf,
    holder: Child,
    sshd: Child,
    /// The nix-daemon stand-in of a target whose login user is not root.
    daemon: Option<Child>,
}

impl Target {
    fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// What the target runs: `/run/current-system`.
    fn current(&self) -> String {
        fs::read_link(self.dir.join("run/current-system")).expect("/run/current-system").display().to_string()
    }

    /// What the system profile names (what the next boot's generation list starts from).
    fn profile(&self) -> String {
        let profiles = self.dir.join("nix/var/nix/profiles");
        let generation = fs::read_link(profiles.join("system")).expect("the system profile");
        fs::read_link(profiles.join(generation)).expect("the generation link").display().to_string()
    }

    /// The boot loader's default entry.
    fn boots(&self) -> String {
        fs::read_to_string(self.dir.join("boot/default-system")).expect("the boot entry").trim().to_string()
    }

    /// `nft list ruleset` in the target's network namespace.
    fn ruleset(&self) -> String {
        ok(nsenter(self.pid(), &["--net"]).args(["nft", "list", "ruleset"]))
    }

    /// What the stand-ins on the target recorded, one call (or activation step) per line,
    /// without the time stamps.
    fn calls(&self) -> Vec<String> {
        self.stamped().into_iter().map(|(_, line)| line).collect()
    }

    /// The same, with each line's time (seconds since the epoch).
    fn stamped(&self) -> Vec<(f64, String)> {
        let log = fs::read_to_string(self.dir.join("var/log/standins.log")).unwrap_or_default();
        log.lines().filter_map(|l| l.split_once(' ')).map(|(t, rest)| (t.parse().expect("a time stamp"), rest.to_string())).collect()
    }

    /// When `system` logged `step` (`test begin`, `test end`, `boot`), the last time.
    fn when(&self, system: &str, step: &str) -> Option<f64> {
        let line = format!("switch-to-configuration {system} {step}");
        self.stamped().into_iter().rev().find(|(_, l)| *l == line).map(|(t, _)| t)
    }

    fn sshd_log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// SSH logins sshd accepted from the deployer, one per connection.
    fn logins(&self) -> Vec<String> {
        let accepted = format!("Accepted publickey for {} from {DEPLOYER} port ", self.user);
        self.sshd_log().lines().filter_map(|l| l.strip_prefix(&accepted)?.split_whitespace().next().map(String::from)).collect()
    }

    /// What sudo logged on the target: one line per command it ran (or refused).
    fn sudo_log(&self) -> String {
        fs::read_to_string(self.dir.join("var/log/sudo.log")).unwrap_or_default()
    }

    /// The guard's output, as the journal would hold it.
    fn journal(&self) -> String {
        fs::read_to_string(self.dir.join("run/iac-e2e/units/iac-deploy.journal")).unwrap_or_default()
    }

    /// A target-side knob: the next activations take this long (services restarting).
    fn slow_activation(&self, seconds: u32) {
        fs::create_dir_all(self.dir.join("run/iac-e2e")).unwrap();
        fs::write(self.dir.join("run/iac-e2e/activation-seconds"), seconds.to_string()).unwrap();
    }

    /// Everything the lab knows about this target, for failure messages.
    fn state(&self) -> String {
        format!(
            "--- {} standins.log:\n{}\n--- journal:\n{}\n--- sshd.log:\n{}\n--- sudo.log:\n{}",
            self.name,
            self.calls().join("\n"),
            self.journal(),
            self.sshd_log(),
            self.sudo_log()
        )
    }
}

struct Run {
    out: Output,
    took: Duration,
}

impl Run {
    fn code(&self) -> i32 {
        support::code(&self.out)
    }

    fn stdout(&self) -> String {
        support::stdout(&self.out)
    }

    fn stderr(&self) -> String {
        support::stderr(&self.out)
    }

    /// The summary row of `host`, whitespace collapsed: `HOST ACTION RESULT... TIME`.
    fn row(&self, host: &str) -> String {
        self.stdout()
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .find(|l| l.split(' ').next() == Some(host))
            .unwrap_or_else(|| panic!("no summary row for {host}:\n{}", self.stdout()))
    }

    /// The TIME column of `host`'s row, in seconds.
    fn host_seconds(&self, host: &str) -> f64 {
        let row = self.row(host);
        row.rsplit(' ').next().and_then(|t| t.strip_suffix('s')).and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("{row}"))
    }
}

struct Lab {
    dir: tempfile::TempDir,
    deployer: Child,
    targets: Vec<Target>,
    login: Login,
}

impl Lab {
    /// `hosts` up and running generation 1 of their inventory, reachable over SSH from the
    /// deployer; `ssh_config` goes first in the user's `~/.ssh/config`. `None` when a lab cannot
    /// run here (see `lab_possible`).
    fn new(hosts: &[&str], ssh_config: &str) -> Option<Self> {
        Self::with_login(hosts, ssh_config, ROOT)
    }

    /// As [`Lab::new`], logging in as `login.user`: for a user other than root each target has
    /// an /etc of its own (a copy of this machine's) with that user in its password database,
    /// its key in `~USER/.ssh/authorized_keys` and nowhere else (sshd refuses root), the real
    /// `sudo` with [`SUDOERS`] and a drop-in for the user, `trusted-users = root USER` in
    /// `/etc/nix/nix.conf`, and the nix-daemon stand-in.
    fn with_login(hosts: &[&str], ssh_config: &str, login: Login) -> Option<Self> {
        if !lab_possible() {
            return None;
        }
        if login.user != "root" && support::tool("sudo").is_none() {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("iac-e2e-").tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        for d in ["home/.ssh", "store", "flake/hosts"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        ok(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "iac-e2e-user", "-f"])
            .arg(root.join("home/.ssh/id_ed25519")));
        fs::write(
            root.join("home/.ssh/config"),
            format!(
                "{ssh_config}\nHost *\n    User {}\n    IdentityFile ~/.ssh/id_ed25519\n    IdentitiesOnly yes\n    \
                 UserKnownHostsFile ~/.ssh/known_hosts\n    GlobalKnownHostsFile /dev/null\n    StrictHostKeyChecking yes\n    \
                 GSSAPIAuthentication no\n",
                login.user
            ),
        )
        .unwrap();

        let ready = root.join("deployer-ready");
        let mut deployer = Command::new("unshare");
        deployer.args(["--net", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", DEPLOYER_NS, "deployer"]);
        deployer.arg(root.join("home")).arg(&ready);
        let deployer = held(deployer);
        let mut lab = Lab { dir, deployer, targets: Vec::new(), login };
        wait_for("the deployer namespace", Duration::from_secs(10), || ready.exists());

        lab.render(&lab.inventory(hosts, ADMIN, 1));
        let mut known = String::new();
        for (i, name) in hosts.iter().enumerate() {
            let target = lab.start_target(name, &address(i));
            let key = fs::read_to_string(target.dir.join("ssh_host_ed25519_key.pub")).unwrap();
            known.push_str(&format!("{} {}\n", target.address, key.split_whitespace().take(2).collect::<Vec<_>>().join(" ")));
            lab.targets.push(target);
        }
        fs::write(lab.path("home/.ssh/known_hosts"), known).unwrap();
        Some(lab)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// [`inventory`], with `ssh_user` set for every host when the lab logs in as another user.
    fn inventory(&self, hosts: &[&str], admin: &str, generation: u32) -> String {
        let s = inventory(hosts, admin, generation);
        if self.login.user == "root" { s } else { s.replace("roles = []\n", &format!("roles = []\nssh_user = \"{}\"\n", self.login.user)) }
    }

    fn target(&self, name: &str) -> &Target {
        self.targets.iter().find(|t| t.name == name).expect("a target of this lab")
    }

    /// A target namespace joined to the bridge, installed with its generation-1 system,
    /// running sshd.
    fn start_target(&self, name: &str, address: &str) -> Target {
        let dir = self.path(&format!("targets/{name}"));
        for d in ["mnt", "nix/store", "nix/var/nix/profiles", "run/sshd", "var/log", "var/lib", "boot", "root"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let user = self.login.user;
        if user != "root" {
            ok(Command::new("cp").arg("-a").arg("/etc").arg(&dir));
            fs::create_dir_all(dir.join("home")).unwrap();
        }
        let mut holder = Command::new("unshare");
        holder.args(["--net", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", TARGET_ROOT, "target"]).arg(&dir);
        if user != "root" {
            holder.args(["etc", "home"]);
        }
        let holder = held(holder);
        let pid = holder.id();
        let mnt = dir.join("mnt");
        wait_for("the target's root", Duration::from_secs(10), || fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == mnt));

        let veth = format!("v{name}");
        ok(nsenter(self.deployer.id(), &["--net"])
            .args(["ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns"])
            .arg(pid.to_string()));
        ok(nsenter(self.deployer.id(), &["--net"]).args(["ip", "link", "set", &veth, "master", "br0", "up"]));
        ok(nsenter(pid, &["--net"]).args(["sh", "-c", "ip addr add \"$1\"/24 dev eth0 && ip link set eth0 up", "sh", address]));

        // Installed earlier: generation 1 is the profile's, the boot entry's and the running one.
        let system = self.build(name);
        ok(Command::new("cp").arg("-a").arg(self.store_dir(&system)).arg(dir.join("nix/store")));
        ok(nsenter(pid, &["--net", "--mount", "--root", "--wd"]).args([
            "/bin/sh",
            "-c",
            "PATH=$1/sw/bin:$PATH; nix-env -p /nix/var/nix/profiles/system --set \"$1\" && \"$1/bin/switch-to-configuration\" boot \
             && \"$1/bin/switch-to-configuration\" test",
            "install",
            &system,
        ]));
        fs::remove_file(dir.join("var/log/standins.log")).unwrap();

        ok(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"]).arg(dir.join("ssh_host_ed25519_key")));
        // Root logs in with the key in a file of the test's; another user with the key in its
        // own home, and root not at all.
        let (keys, root_login, daemon) = if user == "root" {
            fs::copy(self.path("home/.ssh/id_ed25519.pub"), dir.join("authorized_keys")).unwrap();
            (dir.join("authorized_keys").display().to_string(), "prohibit-password", None)
        } else {
            (".ssh/authorized_keys".to_string(), "no", Some(self.add_user(&dir, pid)))
        };
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "ListenAddress {address}:22\nHostKey {d}/ssh_host_ed25519_key\nAuthorizedKeysFile {keys}\nPidFile none\n\
                 UsePAM no\nPermitRootLogin {root_login}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 # The test's directories are under /tmp, which StrictModes would refuse.\nStrictModes no\n\
                 LogLevel VERBOSE\nPrintMotd no\nPrintLastLog no\nUseDNS no\n\
                 # As on NixOS, the system's software is found through /run/current-system.\n\
                 SetEnv PATH=/run/current-system/sw/bin:/usr/bin:/bin\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join("sshd.log")).unwrap();
        let sshd_bin = support::tool("sshd").expect("sshd");
        let mut sshd = nsenter(pid, &["--net", "--mount", "--root", "--wd"]);
        sshd.arg(sshd_bin).arg("-D").arg("-e").arg("-f").arg(&config).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let sshd = held(sshd);
        let target = Target { name: name.to_string(), user, address: address.to_string(), dir, holder, sshd, daemon };
        let listening = format!("Server listening on {address} port 22.");
        wait_for("sshd to listen", Duration::from_secs(10), || target.sshd_log().contains(&listening));
        target
    }

    /// The login user of [`Lab::with_login`] in the target's own /etc (`dir/etc`, a copy of
    /// this machine's), with its key, its sudo rule and Nix's trust; then the nix-daemon
    /// stand-in, as root in the target's namespaces (`pid`).
    fn add_user(&self, dir: &std::path::Path, pid: u32) -> Child {
        let (user, id) = (self.login.user, DEPLOY_ID);
        let etc = dir.join("etc");
        let append = |file: &str, line: String| {
            let mut text = fs::read_to_string(etc.join(file)).unwrap_or_default();
            text.push_str(&line);
            fs::write(etc.join(file), text).unwrap();
        };
        let shell = if std::path::Path::new("/bin/bash").exists() { "/bin/bash" } else { "/bin/sh" };
        append("passwd", format!("{user}:x:{id}:{id}:iac deploy user:/home/{user}:{shell}\n"));
        append("group", format!("{user}:x:{id}:\nwheel:x:{}:{user}\n", id + 1));
        // `*`: no password to log in with, and not locked (sshd refuses a `!` account).
        append("shadow", format!("{user}:*:19000:0:99999:7:::\n"));
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::remove_dir_all(etc.join("sudoers.d"));
        fs::create_dir_all(etc.join("sudoers.d")).unwrap();
        fs::write(etc.join("sudoers"), SUDOERS).unwrap();
        let rule = if self.login.nopasswd { format!("{user} ALL=(ALL) NOPASSWD: ALL\n") } else { format!("{user} ALL=(ALL) ALL\n") };
        fs::write(etc.join("sudoers.d/iac-deploy"), rule).unwrap();
        for f in ["sudoers", "sudoers.d/iac-deploy"] {
            fs::set_permissions(etc.join(f), fs::Permissions::from_mode(0o440)).unwrap();
        }
        fs::create_dir_all(etc.join("nix")).unwrap();
        fs::write(etc.join("nix/nix.conf"), format!("trusted-users = root {user}\n")).unwrap();
        let ssh = dir.join(format!("home/{user}/.ssh"));
        fs::create_dir_all(&ssh).unwrap();
        fs::copy(self.path("home/.ssh/id_ed25519.pub"), ssh.join("authorized_keys")).unwrap();
        ok(Command::new("chown").arg("-R").arg(format!("{id}:{id}")).arg(dir.join(format!("home/{user}"))));
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).unwrap();
        // The stand-ins log from whichever user runs them.
        fs::write(dir.join("var/log/standins.log"), "").unwrap();
        fs::set_permissions(dir.join("var/log/standins.log"), fs::Permissions::from_mode(0o666)).unwrap();
        let mut daemon = nsenter(pid, &["--net", "--mount", "--root", "--wd"]);
        daemon.arg(standins().join("target/nix-daemon")).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        held(daemon)
    }

    /// Write the flake's inventory and render it with the real `iac render`.
    fn render(&self, inventory: &str) {
        let flake = self.path("flake");
        fs::write(flake.join("hosts/inventory.toml"), inventory).unwrap();
        ok(Command::new(IAC)
            .args(["render", "--inventory"])
            .arg(flake.join("hosts/inventory.toml"))
            .arg("--out")
            .arg(flake.join("generated")));
    }

    /// Add a table of the host's own configuration (outside iac's inventory) to the flake.
    fn host_config_table(&self, host: &str, nft: &str) {
        let dir = self.path(&format!("flake/hosts/{host}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("nftables-extra.nft"), nft).unwrap();
    }

    /// The system the flake builds for `host` now (the deployer's stand-in, as iac runs it;
    /// its calls are logged apart from iac's).
    fn build(&self, host: &str) -> String {
        let attr = format!("{}#nixosConfigurations.\"{host}\".config.system.build.toplevel", self.path("flake").display());
        let mut c = Command::new(standins().join("deployer/nix"));
        c.args(["build", "--no-link", "--print-out-paths", &attr]);
        c.env("IAC_E2E_STORE", self.path("store")).env("IAC_E2E_NIX_LOG", self.path("test-nix.log"));
        ok(&mut c).trim().to_string()
    }

    fn store_dir(&self, system: &str) -> PathBuf {
        self.path("store").join(system.strip_prefix("/nix/store/").expect("a store path"))
    }

    /// What the target's `nft list ruleset` shows once `host`'s system as the flake builds it
    /// now is active: iac's rendered ruleset (and the host configuration's own tables) loaded
    /// into an empty namespace. Independent of the stand-ins.
    fn expected_ruleset(&self, host: &str) -> String {
        let mut files = vec![self.path(&format!("flake/generated/{host}/nftables.nft"))];
        let extra = self.path(&format!("flake/hosts/{host}/nftables-extra.nft"));
        if extra.exists() {
            files.push(extra);
        }
        ok(Command::new("unshare")
            .args(["--net", "--", "/bin/sh", "-c", "cat \"$@\" | nft -f - && nft list ruleset", "expected"])
            .args(files))
    }

    /// A command in the deployer's namespaces, with the user's environment: the stand-in `nix`
    /// first on PATH, then the system's tools (the real `ssh`).
    fn deployer(&self, program: &str) -> Command {
        let mut c = nsenter(self.deployer.id(), &["--net", "--mount"]);
        c.arg(program);
        c.current_dir(self.path("flake"))
            .env("PATH", format!("{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", standins().join("deployer").display()))
            .env("HOME", "/root")
            .env("IAC_E2E_STORE", self.path("store"))
            .env("IAC_E2E_NIX_LOG", self.path("nix.log"))
            .env_remove("IAC_INVENTORY")
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null());
        c
    }

    /// `iac deploy ARGS` from the deployer, with a short confirmation window.
    fn iac_deploy(&self, args: &[&str]) -> Command {
        let mut c = self.deployer(IAC);
        c.arg("deploy").args(args).arg("--flake").arg(self.path("flake"));
        c.args(["--confirm-timeout", &CONFIRM_TIMEOUT.to_string(), "--connect-timeout", &CONNECT_TIMEOUT.to_string()]);
        c
    }

    fn deploy(&self, args: &[&str]) -> Run {
        let start = Instant::now();
        let out = self.iac_deploy(args).output().expect("run iac deploy");
        Run { out, took: start.elapsed() }
    }

    /// `iac deploy ARGS` in the background, its output into files.
    fn spawn_deploy(&self, args: &[&str]) -> (Child, Instant) {
        let mut c = self.iac_deploy(args);
        c.stdout(fs::File::create(self.path("iac.stdout")).unwrap()).stderr(fs::File::create(self.path("iac.stderr")).unwrap());
        (c.spawn().expect("spawn iac deploy"), Instant::now())
    }

    fn finish(&self, mut child: Child, start: Instant) -> Run {
        let status = child.wait().expect("iac deploy ends");
        let took = start.elapsed();
        let out = Output { status, stdout: fs::read(self.path("iac.stdout")).unwrap(), stderr: fs::read(self.path("iac.stderr")).unwrap() };
        Run { out, took }
    }

    /// `ssh [OPTIONS] root@TARGET COMMAND` from the deployer with the user's configuration.
    fn ssh(&self, options: &[&str], target: &str, command: &str) -> Output {
        let mut c = self.deployer("ssh");
        c.args(["-o", "BatchMode=yes"]).args(options).arg(self.target(target).address.as_str()).arg(command);
        c.output().expect("run ssh")
    }

    /// What the deployer's `nix` stand-in was asked, one call per line.
    fn nix_calls(&self) -> Vec<String> {
        fs::read_to_string(self.path("nix.log")).unwrap_or_default().lines().map(String::from).collect()
    }

    /// Everything, for failure messages.
    fn state(&self, run: &Run) -> String {
        let targets: Vec<String> = self.targets.iter().map(Target::state).collect();
        format!("exit {}\n--- stdout:\n{}\n--- stderr:\n{}\n{}", run.code(), run.stdout(), run.stderr(), targets.join("\n"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Every process in the lab's namespaces: sessions, guards, an SSH master.
        for target in &mut self.targets {
            for pid in processes_in_netns_of(target.pid()) {
                kill(pid);
            }
            let _ = target.sshd.kill();
            let _ = target.sshd.wait();
            if let Some(daemon) = &mut target.daemon {
                let _ = daemon.kill();
                let _ = daemon.wait();
            }
            let _ = target.holder.kill();
            let _ = target.holder.wait();
        }
        for pid in processes_in_netns_of(self.deployer.id()) {
            kill(pid);
        }
        let _ = self.deployer.kill();
        let _ = self.deployer.wait();
    }
}

/// The lines of the target's stand-in log a guarded switch to `new` writes, in order, after
/// the closure arrived: the unit starts, `new` is activated with `test`, and only after the
/// confirmation made the profile's new generation and the boot entry.
fn confirmed_switch(new: &str, prev: &str) -> Vec<String> {
    vec![
        "nix-store --serve --write".to_string(),
        format!(
            "systemd-run --unit=iac-deploy --description=iac deploy: switch, then wait for the confirmation --service-type=exec \
             --collect --no-ask-password --quiet -- /bin/sh -c <script> iac-activate /nix/var/nix/profiles/system \
             /run/current-system {new} {prev} /run/iac-deploy/RUN {CONFIRM_TIMEOUT} 1"
        ),
        format!("switch-to-configuration {new} test begin"),
        format!("switch-to-configuration {new} test end"),
        format!("nix-env -p /nix/var/nix/profiles/system --set {new}"),
        format!("switch-to-configuration {new} boot"),
    ]
}

/// The run id in `/run/iac-deploy/<unix time>-<pid>` as RUN.
fn normalise_run(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| {
            let Some(at) = l.find("/run/iac-deploy/") else { return l };
            let rest = &l[at + "/run/iac-deploy/".len()..];
            let end = rest.find(' ').unwrap_or(rest.len());
            format!("{}/run/iac-deploy/RUN{}", &l[..at], &rest[end..])
        })
        .collect()
}

// ---- 1. a good generation -----------------------------------------------------------------

#[test]
fn a_good_generation_is_switched_and_confirmed_over_a_new_connection() {
    let Some(lab) = Lab::new(&["alpha"], "") else { return };
    let t = lab.target("alpha");
    let gen1 = t.current();
    lab.render(&inventory(&["alpha"], ADMIN, 2));
    let gen2 = lab.build("alpha");
    assert_ne!(gen1, gen2, "generation 2 is a new system");

    let run = lab.deploy(&["alpha"]);
    let state = lab.state(&run);
    assert_eq!(run.code(), 0, "{state}");
    assert!(run.stdout().contains("HOST   ACTION  RESULT"), "{state}");
    assert!(run.row("alpha").starts_with("alpha switch ok: switched, confirmed "), "{state}");

    // The target runs generation 2, boots it, and its firewall is generation 2's ruleset.
    assert_eq!(t.current(), gen2, "{state}");
    assert_eq!(t.profile(), gen2);
    assert_eq!(t.boots(), gen2);
    assert_eq!(t.ruleset(), lab.expected_ruleset("alpha"));
    assert!(t.ruleset().contains("tcp dport 8080 accept"), "the new service is open: {}", t.ruleset());
    // The guard ran as a unit; the boot default changed only after the confirmation.
    assert_eq!(normalise_run(t.calls()), confirmed_switch(&gen2, &gen1), "{state}");
    assert!(t.journal().contains("iac-activate: confirmed"), "{state}");

    // One SSH connection per command, none shared: preflight, readlink, nix copy, systemd-run,
    // wait, confirm, and the cleanup of stale pushed secrets; each a login of its own, from a
    // port of its own.
    let logins = t.logins();
    assert_eq!(logins.len(), 7, "{state}");
    let mut ports = logins.clone();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 7, "{state}");
    // Built once, copied once, over the same SSH options.
    let nix = lab.nix_calls();
    assert_eq!(nix.len(), 2, "{nix:?}");
    assert!(nix[0].contains(" build --no-link --print-out-paths "), "{nix:?}");
    assert!(nix[1].ends_with(&format!("copy --substitute-on-destination --to ssh://root@10.77.0.11 {gen2}")), "{nix:?}");
    println!("case 1: a good generation switched and confirmed in {:.2} s", run.took.as_secs_f64());
}

// ---- 2. a generation that cuts SSH --------------------------------------------------------

#[test]
fn a_generation_that_cuts_ssh_is_refused_in_the_preflight_and_rolls_back_by_itself_when_forced() {
    let Some(lab) = Lab::new(&["alpha"], "") else { return };
    let t = lab.target("alpha");
    let gen1 = t.current();
    let ruleset1 = t.ruleset();
    assert_eq!(ruleset1, lab.expected_ruleset("alpha"));
    // The admin network moves, and the deployer is not in it. iac renders it, `nft -c` accepts
    // it, Nix evaluates it: the ruleset drops port 22 from 10.77.0.1.
    lab.render(&inventory(&["alpha"], ADMIN_ELSEWHERE, 1));

    // The preflight's login reports the real sshd's $SSH_CONNECTION: alpha sees the deployer
    // as 10.77.0.1, which the new ruleset does not admit SSH from. Refused before anything is
    // built, nothing switched.
    let refused = lab.deploy(&["alpha"]);
    let state = lab.state(&refused);
    assert_eq!(refused.code(), 1, "{state}");
    assert!(
        refused.row("alpha").starts_with(&format!(
            "alpha check FAILED: the new firewall of alpha does not admit SSH from {DEPLOYER} (how alpha sees this machine); the \
             confirmation would fail and alpha roll back "
        )),
        "{state}"
    );
    assert!(
        refused.stdout().contains(&format!(
            "It admits SSH (tcp/22) from {ADMIN_ELSEWHERE}. Deploy from an admin network (access.admin = {ADMIN_ELSEWHERE}) or add \
             this address with hosts.alpha.firewall.allow; --allow-lockout deploys anyway"
        )),
        "{state}"
    );
    assert!(lab.nix_calls().is_empty(), "nothing was built: {:?}", lab.nix_calls());
    assert!(t.calls().is_empty(), "nothing ran on the host: {state}");
    assert_eq!(t.logins().len(), 1, "one login, the preflight's: {state}");
    assert_eq!((t.current(), t.profile(), t.boots(), t.ruleset()), (gen1.clone(), gen1.clone(), gen1.clone(), ruleset1.clone()));

    // --allow-lockout: deployed anyway with a warning; the guard is what protects the host.
    let gen2 = lab.build("alpha");
    let run = lab.deploy(&["alpha", "--allow-lockout"]);
    let state = lab.state(&run);
    println!("{}{}", run.stdout(), run.stderr());
    assert!(
        run.stdout().contains(&format!(
            "alpha:\n  warning: --allow-lockout: the new firewall of alpha does not admit SSH from {DEPLOYER} (how it sees this \
             machine); the confirmation will fail and the host roll back\n"
        )),
        "{state}"
    );
    // Back on generation 1, with its ruleset; the profile and the boot entry never moved.
    assert_rolled_back(&run, t, &gen1, &ruleset1, &state);
    let calls = normalise_run(t.calls());
    assert_eq!(
        calls[2..],
        [
            format!("switch-to-configuration {gen2} test begin"),
            format!("switch-to-configuration {gen2} test end"),
            format!("switch-to-configuration {gen1} test begin"),
            format!("switch-to-configuration {gen1} test end"),
        ],
        "{state}"
    );
    assert!(t.journal().contains(&format!("iac-activate: rolled-back: no confirmation within {CONFIRM_TIMEOUT}s")), "{state}");
    // SSH answers again, on the old system.
    let again = lab.ssh(&[], "alpha", "readlink -f /run/current-system");
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).trim(), gen1);

    let switched = t.when(&gen2, "test end").expect("switched");
    let rolling_back = t.when(&gen1, "test begin").expect("rolled back");
    let rolled_back = t.when(&gen1, "test end").expect("rolled back");
    let window = rolling_back - switched;
    println!(
        "case 2: refused in the preflight after {:.2} s (exit 1); with --allow-lockout: switch -> rollback {window:.2} s \
         (confirmation timeout {CONFIRM_TIMEOUT} s), rollback done {:.2} s after the switch; iac exited 3 after {:.2} s",
        refused.took.as_secs_f64(),
        rolled_back - switched,
        run.took.as_secs_f64()
    );
    // The guard counts whole seconds of sleep: never before the timeout, and on a loaded
    // 2-core machine not much after.
    assert!(window >= CONFIRM_TIMEOUT as f64 - 0.05, "rolled back after {window:.2} s, before the timeout");
    assert!(window < CONFIRM_TIMEOUT as f64 + 3.0, "rolled back only after {window:.2} s");
}

// ---- 3. the connection dies mid-switch -----------------------------------------------------

#[test]
fn a_connection_killed_mid_switch_never_stops_the_activation_half_way() {
    let Some(lab) = Lab::new(&["alpha"], "") else { return };
    let t = lab.target("alpha");
    let gen1 = t.current();
    t.slow_activation(2);
    lab.render(&inventory(&["alpha"], ADMIN, 2));
    let gen2 = lab.build("alpha");

    let (iac, start) = lab.spawn_deploy(&["alpha"]);
    // Mid-switch: the new firewall is loaded, /run/current-system not yet moved.
    wait_for("the activation to start", Duration::from_secs(20), || t.when(&gen2, "test begin").is_some());
    // Kill the ssh client that waits for the switch: its connection dies with it.
    let mut killed = Vec::new();
    wait_for("iac's ssh waiting for the switch", Duration::from_secs(5), || {
        for pid in processes_in_netns_of(lab.deployer.id()) {
            let argv = cmdline(pid);
            if argv.first().is_some_and(|p| p.ends_with("ssh")) && argv.iter().any(|w| w == "iac-wait") {
                kill(pid);
                killed.push(pid);
            }
        }
        !killed.is_empty()
    });
    let killed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let mid_switch = t.when(&gen2, "test end").is_none();
    let run = lab.finish(iac, start);
    let state = lab.state(&run);
    assert!(mid_switch, "the connection was killed after the activation ended: {state}");

    // The activation went on without the connection and ended; iac reconnected, found it
    // switched and confirmed it: the target is entirely on generation 2.
    let ended = t.when(&gen2, "test end").unwrap_or_else(|| panic!("the activation has not ended: {state}"));
    assert!(ended > killed_at, "{state}");
    assert_eq!(run.code(), 0, "{state}");
    assert!(run.row("alpha").starts_with("alpha switch ok: switched, confirmed "), "{state}");
    assert!(run.stderr().contains("alpha  connection lost; reconnecting"), "{state}");
    assert_eq!(t.current(), gen2, "{state}");
    assert_eq!(t.profile(), gen2);
    assert_eq!(t.boots(), gen2);
    assert_eq!(t.ruleset(), lab.expected_ruleset("alpha"));
    assert_ne!(gen1, gen2);
    println!(
        "case 3: killed ssh {killed:?} mid-switch; the activation ended {:.2} s later; iac reconnected and confirmed, {:.2} s in all",
        ended - killed_at,
        run.took.as_secs_f64()
    );
}

// ---- 4. unreachable from the start ---------------------------------------------------------

#[test]
fn a_host_unreachable_from_the_start_fails_before_anything_is_built() {
    let Some(lab) = Lab::new(&["alpha"], "") else { return };
    let t = lab.target("alpha");
    let gen1 = t.current();
    // The host is gone from the network: everything it receives is dropped.
    ok(nsenter(t.pid(), &["--net"])
        .args(["nft", "add table inet down; add chain inet down input { type filter hook input priority -10; policy drop; }"]));
    lab.render(&inventory(&["alpha"], ADMIN, 2));

    let run = lab.deploy(&["alpha"]);
    let state = lab.state(&run);
    assert_eq!(run.code(), 1, "{state}");
    assert_eq!(
        run.row("alpha"),
        format!(
            "alpha check FAILED: unreachable over SSH (ssh: connect to host 10.77.0.11 port 22: Connection timed out) {:.1}s",
            run.host_seconds("alpha")
        ),
        "{state}"
    );
    assert!(lab.nix_calls().is_empty(), "nothing was built: {:?}", lab.nix_calls());
    assert!(t.calls().is_empty(), "nothing ran on the host: {state}");
    assert!(t.logins().is_empty(), "{state}");
    assert_eq!(t.current(), gen1);
    println!("case 4: an unreachable host failed the preflight in {:.2} s (--connect-timeout {CONNECT_TIMEOUT})", run.took.as_secs_f64());
}

// ---- 5. --all, one bad generation ----------------------------------------------------------

#[test]
fn all_over_three_hosts_switches_the_good_ones_and_rolls_back_the_bad_one() {
    let Some(lab) = Lab::new(&["alpha", "beta", "gamma"], "") else { return };
    let gen1: Vec<String> = lab.targets.iter().map(Target::current).collect();
    let ruleset1_beta = lab.target("beta").ruleset();
    lab.render(&inventory(&["alpha", "beta", "gamma"], ADMIN, 2));
    // beta's own configuration adds a table that drops new SSH connections from the deployer.
    lab.host_config_table(
        "beta",
        "table inet local {\n\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n\t\t\
         ip saddr 10.77.0.1 tcp dport 22 ct state new drop comment \"a hand-written rule that cuts the deployer\"\n\t}\n}\n",
    );
    let gen2: Vec<String> = ["alpha", "beta", "gamma"].iter().map(|h| lab.build(h)).collect();

    let run = lab.deploy(&["--all"]);
    let state = lab.state(&run);
    assert_eq!(run.code(), 3, "{state}");
    assert!(run.row("alpha").starts_with("alpha switch ok: switched, confirmed "), "{state}");
    assert!(run.row("beta").starts_with(&format!("beta switch ROLLED BACK: no confirmation within {CONFIRM_TIMEOUT}s ")), "{state}");
    assert!(run.row("gamma").starts_with("gamma switch ok: switched, confirmed "), "{state}");

    for (i, name) in ["alpha", "gamma"].iter().enumerate() {
        let t = lab.target(name);
        let new = &gen2[i * 2];
        assert_eq!(&t.current(), new, "{state}");
        assert_eq!(&t.boots(), new);
        assert_eq!(t.ruleset(), lab.expected_ruleset(name));
    }
    let beta = lab.target("beta");
    assert_eq!(beta.current(), gen1[1], "{state}");
    assert_eq!(beta.boots(), gen1[1]);
    assert_eq!(beta.profile(), gen1[1]);
    // The rollback removed the table of the bad generation, as NixOS's nftables reload does.
    assert_eq!(beta.ruleset(), ruleset1_beta, "{state}");
    assert!(beta.when(&gen2[1], "test end").is_some(), "beta did switch before rolling back: {state}");

    let hosts: f64 = ["alpha", "beta", "gamma"].iter().map(|h| run.host_seconds(h)).sum();
    println!(
        "case 5: --all over 3 hosts, one rolled back: {:.2} s in all (the hosts' own times add up to {hosts:.1} s)",
        run.took.as_secs_f64()
    );
    assert!(run.took.as_secs_f64() < hosts, "the hosts were not deployed in parallel: {state}");
}

// ---- 6. the user's ControlMaster -------------------------------------------------------------

#[test]
fn a_control_master_in_the_users_ssh_config_is_not_reused_for_the_confirmation() {
    // deploy-rs issue 106: with a ControlMaster, the confirmation rode on the connection opened
    // before the switch, which the new firewall lets through (established), so a host that
    // refuses new logins was confirmed.
    let master = "Host 10.77.0.11\n    ControlMaster auto\n    ControlPath ~/.ssh/master-%C\n    ControlPersist 30\n";
    let Some(lab) = Lab::new(&["alpha"], master) else { return };
    let t = lab.target("alpha");
    let gen1 = t.current();
    // The user's master connection, live before the deploy.
    let first = lab.ssh(&[], "alpha", "true");
    assert!(first.status.success(), "{}", text(&first.stderr));
    let check = lab.ssh(&["-O", "check"], "alpha", "");
    assert!(text(&check.stderr).contains("Master running"), "{}", text(&check.stderr));
    assert_eq!(t.logins().len(), 1);

    lab.render(&inventory(&["alpha"], ADMIN_ELSEWHERE, 1));
    let gen2 = lab.build("alpha");
    // The preflight would refuse this generation (case 2): deploy it anyway to prove the guard.
    let (iac, start) = lab.spawn_deploy(&["alpha", "--allow-lockout"]);
    wait_for("the switch", Duration::from_secs(20), || t.when(&gen2, "test end").is_some());
    // Within the window: the old connection still reaches the switched host...
    let through_master = lab.ssh(&[], "alpha", "readlink -f /run/current-system");
    // ...while a new one is cut.
    let fresh = lab.ssh(&["-o", "ControlPath=none", "-o", "ConnectTimeout=1"], "alpha", "true");
    // (The log starts after the installation: generation 1 is activated again only by a rollback.)
    let still_switched = t.when(&gen1, "test begin").is_none();
    let run = lab.finish(iac, start);
    let state = lab.state(&run);
    assert!(still_switched, "the probes ran after the rollback: {state}");
    assert!(through_master.status.success(), "{}", text(&through_master.stderr));
    assert_eq!(text(&through_master.stdout).trim(), gen2, "the master reached the new system");
    assert_eq!(fresh.status.code(), Some(255), "a new connection is cut: {}", text(&fresh.stderr));
    assert!(text(&fresh.stderr).contains("Connection timed out"), "{}", text(&fresh.stderr));

    // iac did not ride on the master: its confirmation failed, the host rolled back.
    assert_eq!(run.code(), 3, "{state}");
    assert!(run.row("alpha").starts_with(&format!("alpha switch ROLLED BACK: no confirmation within {CONFIRM_TIMEOUT}s ")), "{state}");
    assert_eq!(t.current(), gen1, "{state}");
    assert_eq!(t.boots(), gen1);
    // The master lived through it all, and every login of iac was a connection of its own:
    // the master's one, the preflight, readlink, nix copy, systemd-run (before the cut), and
    // after the rollback the wait that learnt the verdict.
    let check = lab.ssh(&["-O", "check"], "alpha", "");
    assert!(text(&check.stderr).contains("Master running"), "{}", text(&check.stderr));
    let logins = t.logins();
    assert!(logins.len() >= 6, "{logins:?}\n{state}");
    println!(
        "case 6: with a live ControlMaster, the confirmation used a new connection and the host rolled back; {} logins, {:.2} s",
        logins.len(),
        run.took.as_secs_f64()
    );
}

// ---- 7. a pushed secret, over the real SSH -----------------------------------------------

/// A host without a host key gets its secret from `iac deploy` over the deploy connection
/// (issue 17): the value on the real ssh's stdin, written by the push script into the target's
/// own `/var/lib/secrets` with its mode, before the switch; no value in iac's output, in sshd's
/// log or in the target's journal. Then the secret moves to another path: the next deploy
/// writes it there and, confirmed, removes the old file from the target (and says so).
#[test]
fn a_pushed_secret_reaches_the_target_over_real_ssh() {
    let Some(lab) = Lab::new(&["alpha"], "") else { return };
    let t = lab.target("alpha");
    let admin = {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        fs::write(lab.path("admin.key"), id.to_string().expose_secret()).unwrap();
        id.to_public().to_string()
    };
    let secrets = format!(
        "\n[admins.lab]\nkey = \"{admin}\"\n\n[secrets.app-token]\nkind = \"password\"\nhosts = [{{ host = \"alpha\", mode = \"0440\" }}]\n"
    );
    lab.render(&(inventory(&["alpha"], ADMIN, 2) + &secrets));
    let flake = lab.path("flake");
    ok(Command::new(IAC)
        .args(["secrets", "init", "--inventory"])
        .arg(flake.join("hosts/inventory.toml"))
        .arg("--dir")
        .arg(flake.join("secrets")));
    let value = ok(Command::new(IAC)
        .args(["secrets", "show", "app-token", "--inventory"])
        .arg(flake.join("hosts/inventory.toml"))
        .arg("--dir")
        .arg(flake.join("secrets"))
        .arg("--identity")
        .arg(lab.path("admin.key")));
    assert_eq!(value.len(), 32);

    let identity = lab.path("admin.key").display().to_string();
    let run = lab.deploy(&["alpha", "--identity", &identity]);
    let state = lab.state(&run);
    assert_eq!(run.code(), 0, "{state}");
    assert!(run.row("alpha").starts_with("alpha switch ok: switched, confirmed "), "{state}");
    let file = t.dir.join("var/lib/secrets/app-token");
    assert_eq!(fs::read_to_string(&file).unwrap(), value, "{state}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o7777, 0o440);
    assert_eq!(fs::metadata(t.dir.join("var/lib/secrets")).unwrap().permissions().mode() & 0o777, 0o751);
    // One more login than case 1: the push has its own connection, after the build and before
    // the switch.
    assert_eq!(t.logins().len(), 8, "{state}");
    for text in [run.stdout(), run.stderr(), t.sshd_log(), t.journal()] {
        assert!(!text.contains(&value), "the value in an output or log:\n{text}");
    }
    // The target's record of pushed files: root's alone.
    let record = t.dir.join("var/lib/iac/pushed-secrets");
    assert_eq!(fs::read_to_string(&record).unwrap(), "/var/lib/secrets/app-token\n", "{state}");
    assert_eq!(fs::metadata(&record).unwrap().permissions().mode() & 0o7777, 0o600);
    assert_eq!(fs::metadata(t.dir.join("var/lib/iac")).unwrap().permissions().mode() & 0o7777, 0o700);
    println!("case 7: a pushed secret reached the target in {:.2} s", run.took.as_secs_f64());

    // The secret moves: the old file goes once the deploy is confirmed (or up to date).
    let moved = secrets.replace("mode = \"0440\"", "mode = \"0440\", path = \"/var/lib/secrets/app-token-2\"");
    assert_ne!(moved, secrets);
    lab.render(&(inventory(&["alpha"], ADMIN, 3) + &moved));
    let run = lab.deploy(&["alpha", "--identity", &identity]);
    let state = lab.state(&run);
    assert_eq!(run.code(), 0, "{state}");
    assert!(run.row("alpha").starts_with("alpha switch ok: switched, confirmed "), "{state}");
    assert!(!file.exists(), "{state}");
    assert_eq!(fs::read_to_string(t.dir.join("var/lib/secrets/app-token-2")).unwrap(), value, "{state}");
    assert_eq!(fs::read_to_string(&record).unwrap(), "/var/lib/secrets/app-token-2\n", "{state}");
    assert!(run.stdout().contains("\nalpha:\n  removed the stale secret file /var/lib/secrets/app-token\n"), "{state}");
    assert!(run.stderr().contains("alpha  removed the stale secret file /var/lib/secrets/app-token\n"), "{state}");
    // What the cleanup adds to a deploy: one login running the script (nothing left to remove).
    let prune = [remote::PRUNE, "iac-prune-secrets", remote::PUSHED_RECORD, "/var/lib/secrets/app-token-2", "--"];
    let line = format!("/bin/sh -c {}", prune.iter().map(|w| quote(w).unwrap().into_owned()).collect::<Vec<_>>().join(" "));
    let start = Instant::now();
    let out = lab.ssh(&[], "alpha", &line);
    let took = start.elapsed();
    assert!(out.status.success() && out.stdout.is_empty(), "{}{}", text(&out.stdout), text(&out.stderr));
    println!(
        "case 7: the secret moved, the old file removed after the confirmation, in {:.2} s; the cleanup step alone (one ssh login) {:.3} s",
        run.took.as_secs_f64(),
        took.as_secs_f64()
    );
}

// ---- 8-10. a non-root ssh_user with sudo ----------------------------------------------------

/// An admin age key in the lab (written to `admin.key`) and a secret `app-token` for `alpha`,
/// owned by `owner:group` with mode 0440; returns the inventory's extra text.
fn pushed_secret(lab: &Lab, owner: &str, group: &str) -> String {
    let admin = {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        fs::write(lab.path("admin.key"), id.to_string().expose_secret()).unwrap();
        id.to_public().to_string()
    };
    format!(
        "\n[admins.lab]\nkey = \"{admin}\"\n\n[secrets.app-token]\nkind = \"password\"\n\
         hosts = [{{ host = \"alpha\", owner = \"{owner}\", group = \"{group}\", mode = \"0440\" }}]\n"
    )
}

/// The commands sudo ran on the target, as its log names them (`COMMAND=...`).
fn sudo_commands(log: &str) -> Vec<String> {
    log.lines().filter_map(|l| l.split_once(" ; COMMAND=").map(|(_, c)| c.to_string())).collect()
}

/// `hosts.alpha.ssh_user = "deploy"`, password-less sudo, root login refused by sshd: a good
/// generation with a pushed secret is switched and confirmed over a new connection, every root
/// step through the real sudo (Debian's `env_reset` and `secure_path`); the closure reaches the
/// store through the daemon because `deploy` is a trusted user; then `iac drift` over the same
/// login finds the firewall and the generation in sync.
#[test]
fn as_a_sudo_user_a_good_generation_and_a_pushed_secret_are_confirmed_and_drift_is_in_sync() {
    let Some(lab) = Lab::with_login(&["alpha"], "", DEPLOY) else { return };
    let t = lab.target("alpha");
    let gen1 = t.current();
    let secrets = pushed_secret(&lab, "deploy", "wheel");
    lab.render(&(lab.inventory(&["alpha"], ADMIN, 2) + &secrets));
    let flake = lab.path("flake");
    let inventory = flake.join("hosts/inventory.toml");
    ok(Command::new(IAC).args(["secrets", "init", "--inventory"]).arg(&inventory).arg("--dir").arg(flake.join("secrets")));
    let value = ok(Command::new(IAC)
        .args(["secrets", "show", "app-token", "--inventory"])
        .arg(&inventory)
        .arg("--dir")
        .arg(flake.join("secrets"))
        .arg("--identity")
        .arg(lab.path("admin.key")));
    assert_eq!(value.len(), 32);
    let gen2 = lab.build("alpha");
    assert_ne!(gen1, gen2);
    // The activation takes a second: iac's wait, run through sudo, asks `systemctl is-active`
    // while it runs (the system's stand-in, not this machine's systemctl on sudo's PATH).
    t.slow_activation(1);

    let identity = lab.path("admin.key").display().to_string();
    let run = lab.deploy(&["alpha", "--identity", &identity]);
    let state = lab.state(&run);
    assert_eq!(run.code(), 0, "{state}");
    assert!(run.row("alpha").starts_with("alpha switch ok: switched, confirmed "), "{state}");
    assert_eq!(t.current(), gen2, "{state}");
    assert_eq!(t.profile(), gen2);
    assert_eq!(t.boots(), gen2);
    assert_eq!(t.ruleset(), lab.expected_ruleset("alpha"));
    // As case 1, with the daemon between `nix-store --serve --write` (run as deploy) and the
    // store: it admitted the unsigned closure because deploy is a trusted user.
    let mut expected = confirmed_switch(&gen2, &gen1);
    let name = gen2.strip_prefix("/nix/store/").unwrap();
    expected.insert(1, format!("nix-daemon added {name} for deploy (a trusted user)"));
    assert_eq!(normalise_run(t.calls()), expected, "{state}");
    assert!(t.journal().contains("iac-activate: confirmed"), "{state}");

    // The secret, written through sudo: its value, its owner and group (only root may chown),
    // its mode.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let file = t.dir.join("var/lib/secrets/app-token");
    assert_eq!(fs::read_to_string(&file).unwrap(), value, "{state}");
    let meta = fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777), (DEPLOY_ID, DEPLOY_ID + 1, 0o440));

    // Eight logins, all as deploy (sshd refuses root); every root step went through sudo, as
    // root, each its own command line: preflight, push, systemd-run, wait, confirm, cleanup.
    assert_eq!(t.logins().len(), 8, "{state}");
    assert!(!t.sshd_log().contains("Accepted publickey for root"), "{state}");
    let commands = sudo_commands(&t.sudo_log());
    let steps = ["iac-preflight", "iac-push-secrets", "--unit=iac-deploy", "iac-wait", "iac-confirm", "iac-prune-secrets"];
    assert_eq!(commands.len(), steps.len(), "{state}");
    for (command, step) in commands.iter().zip(steps) {
        assert!(command.contains(step), "{command} is not the {step} step: {state}");
    }
    assert!(t.sudo_log().lines().all(|l| l.contains(" : deploy : ") && l.contains(" ; USER=root ; ")), "{state}");
    for text in [run.stdout(), run.stderr(), t.sshd_log(), t.journal(), t.sudo_log(), t.calls().join("\n")] {
        assert!(!text.contains(&value), "the value in an output or log:\n{text}");
    }

    // iac drift over the same login: `nft -j list ruleset` needs CAP_NET_ADMIN, so through sudo.
    let start = Instant::now();
    let drift = lab
        .deployer(IAC)
        .args(["drift", "alpha", "--connect-timeout", &CONNECT_TIMEOUT.to_string(), "--flake"])
        .arg(&flake)
        .output()
        .expect("run iac drift");
    let drift_took = start.elapsed();
    let report = text(&drift.stdout);
    assert_eq!(support::code(&drift), 0, "{report}{}\n{state}", text(&drift.stderr));
    assert!(report.contains("firewall: in sync\n"), "{report}");
    assert!(report.contains(&format!("generation: in sync ({gen2})")), "{report}");
    let commands = sudo_commands(&t.sudo_log());
    assert_eq!(commands.len(), steps.len() + 1, "{}", t.sudo_log());
    assert!(commands[steps.len()].contains("iac-drift /run/current-system"), "{}", t.sudo_log());
    println!(
        "case 8: as deploy with sudo, a good generation and a pushed secret switched and confirmed in {:.2} s; iac drift in sync in {:.2} s",
        run.took.as_secs_f64(),
        drift_took.as_secs_f64()
    );
}

/// `alpha` was not confirmed and rolled itself back: exit 3, its row says why, and it runs
/// `generation` with `ruleset` again, its profile and boot entry never moved.
fn assert_rolled_back(run: &Run, t: &Target, generation: &str, ruleset: &str, state: &str) {
    assert_eq!(run.code(), 3, "{state}");
    assert!(run.row("alpha").starts_with(&format!("alpha switch ROLLED BACK: no confirmation within {CONFIRM_TIMEOUT}s ")), "{state}");
    assert_eq!(t.current(), generation, "{state}");
    assert_eq!(t.profile(), generation);
    assert_eq!(t.boots(), generation);
    assert_eq!(t.ruleset(), ruleset);
}

/// The same login, a generation that cuts SSH from the deployer: the preflight read
/// `$SSH_CONNECTION` through the non-root login (expanded by deploy's shell, before sudo),
/// `--allow-lockout` deploys it anyway, the guard started through sudo rolls it back by itself.
#[test]
fn as_a_sudo_user_a_generation_that_cuts_ssh_rolls_back_by_itself() {
    let Some(lab) = Lab::with_login(&["alpha"], "", DEPLOY) else { return };
    let t = lab.target("alpha");
    let gen1 = t.current();
    let ruleset1 = t.ruleset();
    lab.render(&lab.inventory(&["alpha"], ADMIN_ELSEWHERE, 1));
    let gen2 = lab.build("alpha");
    assert_ne!(gen1, gen2);

    let run = lab.deploy(&["alpha", "--allow-lockout"]);
    let state = lab.state(&run);
    assert!(
        run.stdout().contains(&format!("warning: --allow-lockout: the new firewall of alpha does not admit SSH from {DEPLOYER} ")),
        "{state}"
    );
    assert_rolled_back(&run, t, &gen1, &ruleset1, &state);
    assert!(t.when(&gen2, "test end").is_some(), "it did switch: {state}");
    assert!(t.journal().contains(&format!("iac-activate: rolled-back: no confirmation within {CONFIRM_TIMEOUT}s")), "{state}");
    // The guard was started through sudo, as root.
    assert!(sudo_commands(&t.sudo_log()).iter().any(|c| c.contains("systemd-run --unit=iac-deploy")), "{state}");
    // SSH answers again, as deploy, on the old system.
    let again = lab.ssh(&[], "alpha", "readlink -f /run/current-system");
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).trim(), gen1);
    let switched = t.when(&gen2, "test end").unwrap();
    let rolled_back = t.when(&gen1, "test end").expect("rolled back");
    println!(
        "case 9: as deploy with sudo, a generation that cuts SSH rolled back {:.2} s after its switch (timeout {CONFIRM_TIMEOUT} s); \
         iac exited 3 after {:.2} s",
        rolled_back - switched,
        run.took.as_secs_f64()
    );
}

/// sudo wants a password (no NOPASSWD): `sudo -n` refuses at once instead of prompting, and
/// the host fails in its preflight, naming sudo, before anything is built; `iac drift` says
/// the same.
#[test]
fn as_a_user_whose_sudo_wants_a_password_the_preflight_fails_at_once_naming_sudo() {
    let Some(lab) = Lab::with_login(&["alpha"], "", Login { user: "deploy", nopasswd: false }) else { return };
    let t = lab.target("alpha");
    let gen1 = t.current();
    lab.render(&lab.inventory(&["alpha"], ADMIN, 2));

    let run = lab.deploy(&["alpha"]);
    let state = lab.state(&run);
    assert_eq!(run.code(), 1, "{state}");
    let seconds = run.host_seconds("alpha");
    assert_eq!(
        run.row("alpha"),
        format!(
            "alpha check FAILED: sudo -n refused deploy on alpha (sudo: a password is required): iac runs its root steps with \
             `sudo -n`, which never asks for a password; give deploy password-less sudo (NOPASSWD) {seconds:.1}s"
        ),
        "{state}"
    );
    assert!(lab.nix_calls().is_empty(), "nothing was built: {:?}", lab.nix_calls());
    assert!(t.calls().is_empty(), "nothing ran on the host: {state}");
    assert_eq!(t.logins().len(), 1, "{state}");
    assert_eq!(t.current(), gen1);
    // Fails as fast as a login: no prompt waited for (sudo's own prompt timeout is minutes).
    assert!(run.took < Duration::from_secs(5), "took {:?}: {state}", run.took);

    let drift = lab.deployer(IAC).args(["drift", "alpha", "--no-build", "--flake"]).arg(lab.path("flake")).output().expect("run iac drift");
    let report = text(&drift.stdout);
    assert_eq!(support::code(&drift), 1, "{report}");
    assert!(report.contains("ERROR: sudo -n refused deploy on alpha (sudo: a password is required)"), "{report}{}", text(&drift.stderr));
    println!(
        "case 10: sudo wanting a password failed the preflight in {:.2} s (the host's own time {seconds:.1} s), iac exit 1",
        run.took.as_secs_f64()
    );
}

#[test]
fn the_stand_ins_are_listed_in_docs_deploy_md() {
    let doc = fs::read_to_string(repo().join("docs/deploy.md")).unwrap();
    let mut listed = 0;
    for dir in ["deployer", "target"] {
        for entry in fs::read_dir(standins().join(dir)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(doc.contains(&format!("tests/deploy_standins/{dir}/{name}")), "docs/deploy.md does not list the stand-in {dir}/{name}");
            listed += 1;
        }
    }
    assert_eq!(listed, 7);
}
