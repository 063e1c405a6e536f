//! Pure command builders: every process iac runs for a deploy, as an argument vector.
//!
//! Nothing here runs anything, so `--dry-run` prints exactly what a real run executes and the
//! tests can compare whole commands. The SSH wrapping (options, port, user, `sudo` for
//! non-root users, quoting for the remote shell) is written once, in [`Plan::ssh`].
//!
//! Why this file is long: about 200 of its lines are the tests that compare whole commands
//! with what nixos-rebuild-ng runs; the builders themselves share the SSH wrapping written once
//! here, and splitting them would split that.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::Host;

use super::DeployError;
use super::remote;
use super::store_path::StorePath;

/// One process: program, arguments and extra environment. Never a shell string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    /// For ssh: where the remote words (already quoted for the remote shell) begin.
    pub remote_at: Option<usize>,
}

impl Cmd {
    fn new(program: &Path) -> Self {
        Self { program: program.to_path_buf(), args: Vec::new(), env: Vec::new(), remote_at: None }
    }

    fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Program and arguments, as the process sees them.
    pub fn argv(&self) -> Vec<OsString> {
        std::iter::once(self.program.as_os_str().to_os_string()).chain(self.args.iter().cloned()).collect()
    }

    /// The command quoted for a POSIX shell, for people: `--dry-run` and error messages.
    pub fn display(&self) -> String {
        let env = self.env.iter().map(|(k, v)| format!("{}={}", k.to_string_lossy(), quote_lossy(v)));
        let argv = self.argv();
        env.chain(argv.iter().map(|a| quote_lossy(a))).collect::<Vec<_>>().join(" ")
    }

    /// For people (`--dry-run`, error details): like [`Cmd::display`], except that an ssh
    /// command's remote part is shown as the one command line the remote shell receives, with
    /// each on-target script (a multi-line word) shortened to `<script>`; the script's name
    /// follows it (`sh -c <script> iac-wait ...`) and `iac deploy --dry-run` prints them.
    pub fn show(&self) -> String {
        let Some(at) = self.remote_at else { return self.display() };
        let mut local = self.clone();
        let remote = local.args.split_off(at.min(local.args.len()));
        local.remote_at = None;
        let remote = remote.iter().map(|w| {
            let w = w.to_string_lossy();
            if w.contains('\n') { "<script>".to_string() } else { w.into_owned() }
        });
        std::iter::once(local.display()).chain(remote).collect::<Vec<_>>().join(" ")
    }

    pub fn to_command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.program);
        c.args(&self.args);
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }
}

fn quote_lossy(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    quote(&s).map_or_else(|| format!("{s:?}"), Cow::into_owned)
}

/// Quote one word for a POSIX shell: as is when every character is in the same safe set as
/// Python's `shlex.quote` (ASCII letters, digits and `_@%+=:,./-`), else in single quotes with
/// each `'` written as `'"'"'`. `None` for a NUL byte, which no shell word can hold.
///
/// Hand-written rather than `shlex::try_quote` because that quotes every `=` and `#`, which
/// buries the options of every ssh command in quotes; the round trip through a real `sh` and
/// through `shlex::split` is tested below. `=` is safe except in a command's first word (an
/// assignment there): the first remote word is always one of iac's fixed program names.
pub fn quote(word: &str) -> Option<Cow<'_, str>> {
    if word.contains('\0') {
        return None;
    }
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        return Some(Cow::Borrowed(word));
    }
    Some(Cow::Owned(format!("'{}'", word.replace('\'', r#"'"'"'"#))))
}

/// One word of a remote command line.
#[derive(Debug, Clone, Copy)]
enum Word<'a> {
    /// Quoted: the remote shell passes it on exactly as written.
    Literal(&'a str),
    /// Passed as written, for the remote login shell to expand: only iac's own fixed words
    /// ([`remote::SSH_CONNECTION_WORD`]), never a value.
    Expanded(&'static str),
}

/// One secret file `iac deploy` writes to a host: where, as whom, and how many bytes of the
/// standard input are its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedFile {
    pub path: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    pub len: usize,
}

/// The programs iac runs locally: absolute paths found with `which` (a dry run that runs
/// nothing keeps the bare name of a tool this machine lacks).
///
/// No `nixos-rebuild`: iac builds and activates the way nixos-rebuild-ng does (see
/// [`Plan::build`]), so neither of its executable names (`nixos-rebuild`, or `nixos-rebuild-ng`
/// from `pkgs.nixos-rebuild-ng`, whose package.nix has `withNgSuffix ? true`) is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub ssh: PathBuf,
    pub nix: PathBuf,
    pub unshare: PathBuf,
    pub nft: PathBuf,
}

/// Everything that shapes the commands of one `iac deploy` run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tools: Tools,
    /// Flake reference without `#attr`; iac appends `#<host>`.
    pub flake: String,
    pub build_host: Option<String>,
    pub connect_timeout: Duration,
    pub confirm_timeout: Duration,
    /// The confirmation guard (`--no-rollback` turns it off).
    pub rollback: bool,
    /// Let the receiving store substitute what it can (`nix copy --substitute-on-destination`,
    /// as `nixos-rebuild --use-substitutes`); `--no-substitutes` turns it off.
    pub substitutes: bool,
    /// Names this run's state directory on the targets.
    pub run_id: String,
    /// Whether iac runs as root (then `unshare -n` suffices for `nft -c`).
    pub local_root: bool,
}

/// How long the target may take to switch before iac stops waiting for it.
pub const SWITCH_LIMIT: Duration = Duration::from_secs(1800);
/// How long a rollback may take after the confirmation timeout, on top of it.
pub const ROLLBACK_LIMIT: Duration = Duration::from_secs(600);

/// Nix's flags for the flake commands (as nixos-rebuild-ng's `FLAKE_FLAGS`): they work whether
/// or not the local nix.conf enables these features.
const FLAKE_FEATURES: [&str; 2] = ["--extra-experimental-features", "nix-command flakes"];
const NIX_COMMAND: [&str; 2] = ["--extra-experimental-features", "nix-command"];

impl Plan {
    /// `ssh` to `host`, running `words` there. Each word is quoted for the remote shell (ssh
    /// joins its arguments into one command line), `--` keeps the destination from being read
    /// as an option, `sudo -n` elevates non-root users without ever prompting, and
    /// `ControlMaster=no`/`ControlPath=none` make every call a new connection: a confirmation
    /// must prove that a fresh login still works after the switch.
    pub fn ssh(&self, host: &Host, as_root: bool, words: &[&str]) -> Result<Cmd, DeployError> {
        let words: Vec<Word<'_>> = words.iter().copied().map(Word::Literal).collect();
        self.ssh_words(host, as_root, &words)
    }

    /// As [`Plan::ssh`], with words the remote login shell may expand ([`Word::Expanded`]).
    fn ssh_words(&self, host: &Host, as_root: bool, words: &[Word<'_>]) -> Result<Cmd, DeployError> {
        self.ssh_to(&destination(host), Some(host.ssh_port), as_root && host.ssh_user != "root", words)
    }

    /// `ssh` to any destination (`[USER@]HOST`; the port from ssh's own configuration when
    /// `port` is `None`), with the same options and quoting as [`Plan::ssh`].
    fn ssh_to(&self, dest: &str, port: Option<u16>, sudo: bool, words: &[Word<'_>]) -> Result<Cmd, DeployError> {
        let mut remote = Vec::with_capacity(words.len() + 3);
        if sudo {
            remote.extend(["sudo", "-n", "--"].map(Word::Literal));
        }
        remote.extend_from_slice(words);
        let quoted = remote
            .iter()
            .map(|w| match w {
                Word::Literal(w) => quote(w).map(Cow::into_owned).ok_or_else(|| DeployError::Quote { word: (*w).to_string() }),
                Word::Expanded(w) => Ok((*w).to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut cmd = Cmd::new(&self.tools.ssh).args(self.ssh_options(port)).arg("--").arg(dest);
        cmd.remote_at = Some(cmd.args.len());
        Ok(cmd.args(quoted))
    }

    fn ssh_options(&self, port: Option<u16>) -> Vec<String> {
        let mut opts = Vec::new();
        for o in [
            "BatchMode=yes".to_string(),
            format!("ConnectTimeout={}", self.connect_timeout.as_secs().max(1)),
            "ControlMaster=no".into(),
            "ControlPath=none".into(),
            "ServerAliveInterval=5".into(),
            "ServerAliveCountMax=3".into(),
        ] {
            opts.push("-o".to_string());
            opts.push(o);
        }
        if let Some(port) = port {
            opts.push("-p".into());
            opts.push(port.to_string());
        }
        opts
    }

    /// Preflight, on the host's first connection: can we log in (as root, through `sudo -n`
    /// for other users), is its SSH host key the one the inventory declares (its secrets are
    /// encrypted to it), and is every directory its secrets go to safe? One ssh round trip;
    /// the key and the directories reach the fixed script as arguments.
    pub fn preflight(&self, host: &Host, secret_dirs: &[&str]) -> Result<Cmd, DeployError> {
        let want = host.host_key.as_deref().unwrap_or("");
        let mut words = vec![Word::Literal("/bin/sh"), Word::Literal("-c"), Word::Literal(remote::PREFLIGHT)];
        words.extend([Word::Literal("iac-preflight"), Word::Expanded(remote::SSH_CONNECTION_WORD)]);
        words.extend([remote::HOST_KEY_PUB, want].into_iter().chain(secret_dirs.iter().copied()).map(Word::Literal));
        self.ssh_words(host, true, &words)
    }

    /// Write the host's pushed secrets (a host without a host key), as root: the record of
    /// pushed files, then each file's path, owner, group, mode and length are arguments of the
    /// fixed script, the values its standard input, in that order (`remote::PUSH`).
    pub fn push_secrets(&self, host: &Host, files: &[PushedFile]) -> Result<Cmd, DeployError> {
        let specs: Vec<[String; 5]> = files
            .iter()
            .map(|f| [f.path.clone(), f.owner.clone(), f.group.clone(), format!("{:04o}", f.mode), f.len.to_string()])
            .collect();
        let mut words = vec!["/bin/sh", "-c", remote::PUSH, "iac-push-secrets", remote::PUSHED_RECORD];
        words.extend(specs.iter().flatten().map(String::as_str));
        self.ssh(host, true, &words)
    }

    /// Once the new system is confirmed: remove the files iac pushed earlier that the host no
    /// longer reads (`remote::PRUNE`). `pushed` are the paths this deploy pushed (the new
    /// record), `kept` the host's other secret files, which are never removed.
    pub fn prune_secrets(&self, host: &Host, pushed: &[&str], kept: &[&str]) -> Result<Cmd, DeployError> {
        let mut words = vec!["/bin/sh", "-c", remote::PRUNE, "iac-prune-secrets", remote::PUSHED_RECORD];
        words.extend(pushed);
        words.push("--");
        words.extend(kept);
        self.ssh(host, true, &words)
    }

    /// The flake attribute of the host's system, as nixos-rebuild-ng names it
    /// (`nixosConfigurations."HOST".config.system.build.toplevel`).
    fn toplevel(&self, host: &Host) -> String {
        format!("{}#nixosConfigurations.\"{}\".config.system.build.toplevel", self.flake, host.name)
    }

    /// Build the host's system here; prints its store path (and leaves no `result` link).
    ///
    /// What nixos-rebuild-ng runs for a local flake build (`nix.py` `build_flake`: `nix
    /// --extra-experimental-features 'nix-command flakes' build --print-out-paths
    /// FLAKE#nixosConfigurations."HOST".config.system.build.toplevel`), plus `--no-link`.
    pub fn build(&self, host: &Host) -> Cmd {
        Cmd::new(&self.tools.nix).args(FLAKE_FEATURES).args(["build", "--no-link", "--print-out-paths"]).arg(self.toplevel(host))
    }

    /// `--build-host`, step 1 (here): evaluate the system's derivation; prints its `.drv` path.
    ///
    /// nixos-rebuild-ng's `remote_build_flake` does the same three steps: `nix eval --raw
    /// FLAKE#...toplevel.drvPath` locally, copy the derivation to the build host, `nix build
    /// DRV^* --print-out-paths` there; and its `copy_closure(path, to_host=target,
    /// from_host=build_host)` then copies the result from the build host straight to the
    /// target (`nix-copy-closure --to TARGET` run on the build host). A remote build leaves no
    /// local `result` link: the store path comes from the output.
    pub fn eval_drv(&self, host: &Host) -> Cmd {
        Cmd::new(&self.tools.nix).args(FLAKE_FEATURES).args(["eval", "--raw"]).arg(format!("{}.drvPath", self.toplevel(host)))
    }

    /// `--build-host`, step 2 (here): copy the derivation (and its inputs) to the build host.
    pub fn copy_drv(&self, builder: &str, drv: &StorePath) -> Cmd {
        let mut c = Cmd::new(&self.tools.nix).args(NIX_COMMAND).arg("copy").arg("--derivation");
        if self.substitutes {
            c = c.arg("--substitute-on-destination");
        }
        c = c.arg("--to").arg(format!("ssh://{builder}")).arg(drv.as_str());
        c.env.push(("NIX_SSHOPTS".into(), self.ssh_options(None).join(" ").into()));
        c
    }

    /// `--build-host`, step 3 (on the build host): build it; prints the system's store path.
    pub fn build_remote(&self, builder: &str, drv: &StorePath) -> Result<Cmd, DeployError> {
        let outputs = format!("{drv}^*");
        let mut words = vec!["nix"];
        words.extend(NIX_COMMAND);
        words.extend(["build", "--no-link", "--print-out-paths", &outputs]);
        self.ssh_to(builder, None, false, &words.into_iter().map(Word::Literal).collect::<Vec<_>>())
    }

    /// What the host runs now.
    pub fn current_system(&self, host: &Host) -> Result<Cmd, DeployError> {
        self.ssh(host, false, &["readlink", "-f", remote::CURRENT_SYSTEM])
    }

    /// Copy the built closure from here to the host's store (same SSH options, via
    /// `NIX_SSHOPTS`).
    pub fn copy(&self, host: &Host, system: &StorePath) -> Cmd {
        let mut c = Cmd::new(&self.tools.nix).args(NIX_COMMAND).arg("copy");
        if self.substitutes {
            c = c.arg("--substitute-on-destination");
        }
        c = c.arg("--to").arg(format!("ssh://{}", destination(host))).arg(system.as_str());
        c.env.push(("NIX_SSHOPTS".into(), self.ssh_options(Some(host.ssh_port)).join(" ").into()));
        c
    }

    /// `--build-host`, step 4 (on the build host): copy the built closure from the build host
    /// straight to the target, never through this machine. The build host needs SSH access to
    /// the target (its own key, the target's host key known), with the same options.
    pub fn copy_from_builder(&self, builder: &str, host: &Host, system: &StorePath) -> Result<Cmd, DeployError> {
        let sshopts = format!("NIX_SSHOPTS={}", self.ssh_options(Some(host.ssh_port)).join(" "));
        let to = format!("ssh://{}", destination(host));
        let mut words = vec!["env", &sshopts, "nix"];
        words.extend(NIX_COMMAND);
        words.push("copy");
        if self.substitutes {
            words.push("--substitute-on-destination");
        }
        words.extend(["--to", &to, system.as_str()]);
        self.ssh_to(builder, None, false, &words.into_iter().map(Word::Literal).collect::<Vec<_>>())
    }

    /// The state directory of this run on every target.
    pub fn state_dir(&self) -> String {
        format!("{}/{}", remote::STATE_ROOT, self.run_id)
    }

    /// Start the guard on the target under `systemd-run`: it outlives this SSH connection.
    pub fn activate(&self, host: &Host, new: &StorePath, prev: &StorePath) -> Result<Cmd, DeployError> {
        let unit = format!("--unit={}", remote::UNIT);
        let state = self.state_dir();
        let timeout = self.confirm_timeout.as_secs().max(1).to_string();
        let guard = if self.rollback { "1" } else { "0" };
        self.ssh(
            host,
            true,
            &[
                remote::SYSTEMD_RUN,
                &unit,
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
                remote::SYSTEM_PROFILE,
                remote::CURRENT_SYSTEM,
                new.as_str(),
                prev.as_str(),
                &state,
                &timeout,
                guard,
            ],
        )
    }

    /// Wait (on the target) until the guard's status settles; `through_switched` also waits
    /// out the confirmation window.
    pub fn wait(&self, host: &Host, limit: Duration, through_switched: bool) -> Result<Cmd, DeployError> {
        let state = self.state_dir();
        let limit = limit.as_secs().to_string();
        let through = if through_switched { "1" } else { "0" };
        self.ssh(host, true, &["/bin/sh", "-c", remote::WAIT, "iac-wait", &state, &limit, through, remote::UNIT])
    }

    /// Confirm the switch over a new connection.
    pub fn confirm(&self, host: &Host) -> Result<Cmd, DeployError> {
        let state = self.state_dir();
        self.ssh(host, true, &["/bin/sh", "-c", remote::CONFIRM, "iac-confirm", &state])
    }

    /// Preflight: check a ruleset with the real `nft` in a private network namespace.
    pub fn nft_check(&self, ruleset: &Path) -> Cmd {
        let ns = if self.local_root { "-n" } else { "-rn" };
        Cmd::new(&self.tools.unshare).arg(ns).arg(&self.tools.nft).args(["-c", "-f"]).arg(ruleset)
    }

    /// The configured confirmation window plus the time a rollback may take.
    pub fn settle_limit(&self) -> Duration {
        self.confirm_timeout + ROLLBACK_LIMIT
    }
}

fn destination(host: &Host) -> String {
    format!("{}@{}", host.ssh_user, host.address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            tools: Tools { ssh: "/bin/ssh".into(), nix: "/bin/nix".into(), unshare: "/bin/unshare".into(), nft: "/sbin/nft".into() },
            flake: "/src/estate".into(),
            build_host: None,
            connect_timeout: Duration::from_secs(10),
            confirm_timeout: Duration::from_secs(30),
            rollback: true,
            substitutes: true,
            run_id: "RUN".into(),
            local_root: false,
        }
    }

    fn host(user: &str) -> Host {
        Host {
            name: "alphard".into(),
            address: "172.22.0.134".parse().unwrap(),
            network: "lan".into(),
            roles: vec![],
            ssh_user: user.into(),
            ssh_port: 2222,
            system: "x86_64-linux".into(),
            join: None,
            host_key: None,
            block: vec![],
            allow: vec![],
        }
    }

    const SSH: &str = "/bin/ssh -o BatchMode=yes -o ConnectTimeout=10 -o ControlMaster=no -o ControlPath=none \
                       -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -p 2222 --";

    #[test]
    fn ssh_wrapping_is_written_once() {
        let p = plan();
        assert_eq!(
            p.preflight(&host("root"), &["/s"]).unwrap().show(),
            format!(
                "{SSH} root@172.22.0.134 /bin/sh -c <script> iac-preflight \"$SSH_CONNECTION\" /etc/ssh/ssh_host_ed25519_key.pub '' /s"
            )
        );
        assert_eq!(
            p.preflight(&host("deploy"), &[]).unwrap().show(),
            format!(
                "{SSH} deploy@172.22.0.134 sudo -n -- /bin/sh -c <script> iac-preflight \"$SSH_CONNECTION\" /etc/ssh/ssh_host_ed25519_key.pub ''"
            )
        );
        let file = PushedFile { path: "/s/a".into(), owner: "root".into(), group: "kafka".into(), mode: 0o440, len: 32 };
        assert_eq!(
            p.push_secrets(&host("deploy"), &[file]).unwrap().show(),
            format!(
                "{SSH} deploy@172.22.0.134 sudo -n -- /bin/sh -c <script> iac-push-secrets /var/lib/iac/pushed-secrets /s/a root kafka 0440 32"
            )
        );
        assert_eq!(
            p.current_system(&host("deploy")).unwrap().display(),
            format!("{SSH} deploy@172.22.0.134 readlink -f /run/current-system")
        );
        // Root-only steps get sudo for other users, and only for them.
        let state = "/run/iac-deploy/RUN";
        assert_eq!(
            p.wait(&host("deploy"), Duration::from_secs(60), true).unwrap().show(),
            format!("{SSH} deploy@172.22.0.134 sudo -n -- /bin/sh -c <script> iac-wait {state} 60 1 iac-deploy")
        );
        assert!(p.confirm(&host("deploy")).unwrap().display().starts_with(&format!("{SSH} deploy@172.22.0.134 sudo -n -- /bin/sh -c ")));
        assert_eq!(
            p.prune_secrets(&host("root"), &["/s/a", "/s/b"], &["/run/secrets/c"]).unwrap().show(),
            format!(
                "{SSH} root@172.22.0.134 /bin/sh -c <script> iac-prune-secrets /var/lib/iac/pushed-secrets /s/a /s/b -- /run/secrets/c"
            )
        );
        assert!(p.confirm(&host("root")).unwrap().display().ends_with(&format!(" iac-confirm {state}")));
        assert!(!p.confirm(&host("root")).unwrap().display().contains("sudo"));
    }

    /// Through `sudo -n`, every command is named by its absolute path: sudo looks a bare name up
    /// in its `secure_path` (sudoers(5)), which need not hold the system's tools.
    #[test]
    fn nothing_after_sudo_is_looked_up_in_sudos_path() {
        let p = plan();
        let h = host("deploy");
        let sys = StorePath::parse(SYS).unwrap();
        let file = PushedFile { path: "/s/a".into(), owner: "root".into(), group: "root".into(), mode: 0o400, len: 1 };
        for cmd in [
            p.preflight(&h, &["/s"]).unwrap(),
            p.push_secrets(&h, &[file]).unwrap(),
            p.prune_secrets(&h, &["/s/a"], &[]).unwrap(),
            p.activate(&h, &sys, &sys).unwrap(),
            p.wait(&h, Duration::from_secs(1), false).unwrap(),
            p.confirm(&h).unwrap(),
        ] {
            let remote: Vec<String> = cmd.args[cmd.remote_at.unwrap()..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
            assert_eq!(remote[..3], ["sudo", "-n", "--"], "{}", cmd.show());
            assert!(remote[3].starts_with('/'), "{}", cmd.show());
        }
    }

    #[test]
    fn remote_words_are_quoted_for_the_remote_shell() {
        let p = plan();
        let cmd = p.ssh(&host("root"), false, &["echo", "a b", "$(reboot)", "it's"]).unwrap();
        let tail: Vec<_> = cmd.args.iter().rev().take(4).rev().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(tail, ["echo", "'a b'", "'$(reboot)'", r#"'it'"'"'s'"#]);
        // What the remote shell parses back is exactly the words we meant.
        assert_eq!(shlex::split(&tail.join(" ")).unwrap(), ["echo", "a b", "$(reboot)", "it's"]);
        assert!(p.ssh(&host("root"), false, &["a\0b"]).is_err());
    }

    #[test]
    fn quoting_survives_a_real_shell() {
        let words = ["plain", "", "a b", "it's", "$(id)", "`id`", "a\nb", "--unit=x", "#x", "*", "~", "\\", "\"", "ünï", remote::GUARD];
        let quoted: Vec<String> = words.iter().map(|w| quote(w).unwrap().into_owned()).collect();
        assert_eq!(shlex::split(&quoted.join(" ")).unwrap(), words);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("for w in {}; do printf '%s\\0' \"$w\"; done", quoted.join(" ")))
            .output()
            .unwrap();
        let back: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().split_terminator('\0').collect();
        assert_eq!(back, words);
        assert_eq!(quote("BatchMode=yes").unwrap(), "BatchMode=yes");
        assert!(quote("a\0b").is_none());
    }

    const SYS: &str = "/nix/store/0q43idch209zsdngl8yl79x0y79aajib-nixos-system-alphard";
    const OPTS: &str = "-o BatchMode=yes -o ConnectTimeout=10 -o ControlMaster=no -o ControlPath=none \
                        -o ServerAliveInterval=5 -o ServerAliveCountMax=3";

    #[test]
    fn local_build_prints_the_store_path_and_leaves_no_link() {
        assert_eq!(
            plan().build(&host("root")).argv(),
            [
                "/bin/nix",
                "--extra-experimental-features",
                "nix-command flakes",
                "build",
                "--no-link",
                "--print-out-paths",
                "/src/estate#nixosConfigurations.\"alphard\".config.system.build.toplevel"
            ]
        );
    }

    #[test]
    fn copy_substitutes_on_the_target_unless_told_not_to() {
        let mut p = plan();
        let sys = StorePath::parse(SYS).unwrap();
        assert_eq!(
            p.copy(&host("root"), &sys).display(),
            format!(
                "NIX_SSHOPTS='{OPTS} -p 2222' /bin/nix --extra-experimental-features nix-command copy \
                 --substitute-on-destination --to ssh://root@172.22.0.134 {SYS}"
            )
        );
        p.substitutes = false;
        assert_eq!(
            p.copy(&host("root"), &sys).display(),
            format!(
                "NIX_SSHOPTS='{OPTS} -p 2222' /bin/nix --extra-experimental-features nix-command copy --to ssh://root@172.22.0.134 {SYS}"
            )
        );
    }

    #[test]
    fn build_host_builds_there_and_copies_from_there_to_the_target() {
        let mut p = plan();
        p.build_host = Some("builder@10.0.0.9".into());
        let drv = StorePath::parse("/nix/store/1q43idch209zsdngl8yl79x0y79aajib-nixos-system-alphard.drv").unwrap();
        let sys = StorePath::parse(SYS).unwrap();
        assert_eq!(
            p.eval_drv(&host("root")).argv(),
            [
                "/bin/nix",
                "--extra-experimental-features",
                "nix-command flakes",
                "eval",
                "--raw",
                "/src/estate#nixosConfigurations.\"alphard\".config.system.build.toplevel.drvPath"
            ]
        );
        assert_eq!(
            p.copy_drv("builder@10.0.0.9", &drv).display(),
            format!(
                "NIX_SSHOPTS='{OPTS}' /bin/nix --extra-experimental-features nix-command copy --derivation \
                 --substitute-on-destination --to ssh://builder@10.0.0.9 {drv}"
            )
        );
        // On the build host, as its login user (no sudo), the port from its ssh configuration.
        let ssh = format!("/bin/ssh {OPTS} -- builder@10.0.0.9");
        assert_eq!(
            p.build_remote("builder@10.0.0.9", &drv).unwrap().show(),
            format!("{ssh} nix --extra-experimental-features nix-command build --no-link --print-out-paths '{drv}^*'")
        );
        let copy = p.copy_from_builder("builder@10.0.0.9", &host("root"), &sys).unwrap();
        assert_eq!(
            copy.show(),
            format!(
                "{ssh} env 'NIX_SSHOPTS={OPTS} -p 2222' nix --extra-experimental-features nix-command copy \
                 --substitute-on-destination --to ssh://root@172.22.0.134 {SYS}"
            )
        );
        // The remote shell gets the target's ssh options as one word.
        let remote: Vec<String> = copy.args[copy.remote_at.unwrap()..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(shlex::split(&remote.join(" ")).unwrap()[1], format!("NIX_SSHOPTS={OPTS} -p 2222"));
    }

    #[test]
    fn activation_passes_values_as_arguments_never_in_the_script() {
        let p = plan();
        let new = StorePath::parse("/nix/store/0q43idch209zsdngl8yl79x0y79aajib-nixos-system-alphard").unwrap();
        let prev = StorePath::parse("/nix/store/1q43idch209zsdngl8yl79x0y79aajib-nixos-system-alphard").unwrap();
        let cmd = p.activate(&host("root"), &new, &prev).unwrap();
        let dest = cmd.args.iter().position(|a| a == "root@172.22.0.134").unwrap();
        let words =
            shlex::split(&cmd.args[dest + 1..].iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")).unwrap();
        assert_eq!(words[0], "/run/current-system/sw/bin/systemd-run");
        assert_eq!(words[1], "--unit=iac-deploy");
        let script = words.iter().position(|w| w == "-c").unwrap() + 1;
        assert_eq!(words[script], remote::GUARD);
        assert_eq!(
            words[script + 1..],
            [
                "iac-activate",
                "/nix/var/nix/profiles/system",
                "/run/current-system",
                new.as_str(),
                prev.as_str(),
                "/run/iac-deploy/RUN",
                "30",
                "1"
            ]
        );
    }

    #[test]
    fn nft_check_uses_a_private_namespace() {
        let mut p = plan();
        assert_eq!(p.nft_check(Path::new("g/a/nftables.nft")).display(), "/bin/unshare -rn /sbin/nft -c -f g/a/nftables.nft");
        p.local_root = true;
        assert_eq!(p.nft_check(Path::new("x.nft")).argv(), ["/bin/unshare", "-n", "/sbin/nft", "-c", "-f", "x.nft"]);
    }
}
