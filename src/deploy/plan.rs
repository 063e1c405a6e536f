//! Pure command builders: every process iac runs for a deploy, as an argument vector.
//!
//! Nothing here runs anything, so `--dry-run` prints exactly what a real run executes and the
//! tests can compare whole commands. The SSH wrapping (options, port, user, `sudo` for
//! non-root users, quoting for the remote shell) is written once, in [`Plan::ssh`].

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

/// Absolute paths of the programs iac runs locally (found with `which`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub ssh: PathBuf,
    pub nixos_rebuild: PathBuf,
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
    /// Names this run's state directory on the targets.
    pub run_id: String,
    /// Whether iac runs as root (then `unshare -n` suffices for `nft -c`).
    pub local_root: bool,
}

/// How long the target may take to switch before iac stops waiting for it.
pub const SWITCH_LIMIT: Duration = Duration::from_secs(1800);
/// How long a rollback may take after the confirmation timeout, on top of it.
pub const ROLLBACK_LIMIT: Duration = Duration::from_secs(600);

impl Plan {
    /// `ssh` to `host`, running `words` there. Each word is quoted for the remote shell (ssh
    /// joins its arguments into one command line), `--` keeps the destination from being read
    /// as an option, `sudo -n` elevates non-root users without ever prompting, and
    /// `ControlMaster=no`/`ControlPath=none` make every call a new connection: a confirmation
    /// must prove that a fresh login still works after the switch.
    pub fn ssh(&self, host: &Host, as_root: bool, words: &[&str]) -> Result<Cmd, DeployError> {
        let mut remote = Vec::with_capacity(words.len() + 3);
        if as_root && host.ssh_user != "root" {
            remote.extend(["sudo", "-n", "--"]);
        }
        remote.extend_from_slice(words);
        let quoted = remote
            .iter()
            .map(|w| quote(w).map(Cow::into_owned).ok_or_else(|| DeployError::Quote { word: (*w).to_string() }))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cmd = Cmd::new(&self.tools.ssh).args(self.ssh_options(host)).arg("--").arg(destination(host));
        cmd.remote_at = Some(cmd.args.len());
        Ok(cmd.args(quoted))
    }

    fn ssh_options(&self, host: &Host) -> Vec<String> {
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
        opts.push("-p".into());
        opts.push(host.ssh_port.to_string());
        opts
    }

    /// Preflight: can we log in at all (within the connect timeout)?
    pub fn reach(&self, host: &Host) -> Result<Cmd, DeployError> {
        self.ssh(host, false, &["true"])
    }

    /// Build the host's system locally (or on `--build-host`). Run in a scratch directory:
    /// the `result` link it leaves there names the built system.
    pub fn build(&self, host: &Host) -> Cmd {
        let mut c = Cmd::new(&self.tools.nixos_rebuild).args(["build", "--flake"]).arg(format!("{}#{}", self.flake, host.name));
        if let Some(b) = &self.build_host {
            c = c.arg("--build-host").arg(b);
        }
        c
    }

    /// What the host runs now.
    pub fn current_system(&self, host: &Host) -> Result<Cmd, DeployError> {
        self.ssh(host, false, &["readlink", "-f", remote::CURRENT_SYSTEM])
    }

    /// Copy the built closure to the host's store (same SSH options, via `NIX_SSHOPTS`).
    pub fn copy(&self, host: &Host, system: &StorePath) -> Cmd {
        let mut c = Cmd::new(&self.tools.nix)
            .args(["--extra-experimental-features", "nix-command", "copy", "--to"])
            .arg(format!("ssh://{}", destination(host)))
            .arg(system.as_str());
        c.env.push(("NIX_SSHOPTS".into(), self.ssh_options(host).join(" ").into()));
        c
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
                "systemd-run",
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
            tools: Tools {
                ssh: "/bin/ssh".into(),
                nixos_rebuild: "/bin/nixos-rebuild".into(),
                nix: "/bin/nix".into(),
                unshare: "/bin/unshare".into(),
                nft: "/sbin/nft".into(),
            },
            flake: "/src/estate".into(),
            build_host: None,
            connect_timeout: Duration::from_secs(10),
            confirm_timeout: Duration::from_secs(30),
            rollback: true,
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
            block: vec![],
            allow: vec![],
        }
    }

    const SSH: &str = "/bin/ssh -o BatchMode=yes -o ConnectTimeout=10 -o ControlMaster=no -o ControlPath=none \
                       -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -p 2222 --";

    #[test]
    fn ssh_wrapping_is_written_once() {
        let p = plan();
        assert_eq!(p.reach(&host("root")).unwrap().display(), format!("{SSH} root@172.22.0.134 true"));
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
        assert!(p.confirm(&host("root")).unwrap().display().ends_with(&format!(" iac-confirm {state}")));
        assert!(!p.confirm(&host("root")).unwrap().display().contains("sudo"));
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

    #[test]
    fn build_and_copy() {
        let mut p = plan();
        assert_eq!(p.build(&host("root")).display(), "/bin/nixos-rebuild build --flake '/src/estate#alphard'");
        p.build_host = Some("builder@10.0.0.9".into());
        assert_eq!(
            p.build(&host("root")).argv(),
            ["/bin/nixos-rebuild", "build", "--flake", "/src/estate#alphard", "--build-host", "builder@10.0.0.9"]
        );
        let sys = StorePath::parse("/nix/store/0q43idch209zsdngl8yl79x0y79aajib-nixos-system-alphard").unwrap();
        assert_eq!(
            p.copy(&host("root"), &sys).display(),
            "NIX_SSHOPTS='-o BatchMode=yes -o ConnectTimeout=10 -o ControlMaster=no -o ControlPath=none \
             -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -p 2222' /bin/nix --extra-experimental-features \
             nix-command copy --to ssh://root@172.22.0.134 /nix/store/0q43idch209zsdngl8yl79x0y79aajib-nixos-system-alphard"
        );
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
        assert_eq!(words[0], "systemd-run");
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
