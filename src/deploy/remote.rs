//! The programs iac runs on a target host, and the status they report.
//!
//! Each is a fixed POSIX `sh` script: no value is ever spliced into its text. Store paths,
//! directories and timeouts reach it as positional arguments (`sh -c SCRIPT NAME ARG...`), so
//! the script a reviewer reads here is byte for byte the script the host runs.
//!
//! The protocol is a status file in a per-run state directory under `/run` (root only,
//! cleared at boot). The guard writes one line, `STATE` or `STATE: detail`; iac reads it
//! over fresh SSH connections. See docs/deploy.md for the whole flow.

/// Systemd unit the guard runs in. A fixed name doubles as a per-host lock: a second deploy
/// cannot start while one is still waiting for its confirmation.
pub const UNIT: &str = "iac-deploy";
/// Parent of the per-run state directories.
pub const STATE_ROOT: &str = "/run/iac-deploy";
/// The NixOS system profile and the link to the running system.
pub const SYSTEM_PROFILE: &str = "/nix/var/nix/profiles/system";
pub const CURRENT_SYSTEM: &str = "/run/current-system";

/// `systemd-run`, by its absolute path on NixOS (systemd is in every system's `sw/bin`). Every
/// command iac runs as root names its program absolutely (`/bin/sh`, this), and each script
/// puts the system's `sw/bin` first on its own PATH ([`SYSTEM_PATH`]): for a non-root
/// `ssh_user` they run through `sudo -n`, whose `env_reset` replaces the login's environment
/// and whose `secure_path`, when the sudoers sets one, is the PATH sudo looks the command up in
/// and passes on (sudoers(5), "secure_path"; Debian's default sudoers sets it to
/// `/usr/local/sbin:...:/bin`, without `/run/current-system/sw/bin`). Found by
/// tests/it/deploy_e2e.rs, case 8: with such a sudoers, `sudo -n -- systemd-run` ran another
/// systemd-run than the system's, and the switch never started.
pub const SYSTEMD_RUN: &str = "/run/current-system/sw/bin/systemd-run";

/// The first line of every script iac runs as root over SSH: the running system's tools first,
/// whatever PATH sudo or the login left (see [`SYSTEMD_RUN`]).
pub const SYSTEM_PATH: &str = "PATH=\"/run/current-system/sw/bin:${PATH:-/usr/bin:/bin}\"; export PATH\n";

/// Runs in the `iac-deploy` unit, detached from any SSH session.
///
/// `iac-activate PROFILE CURRENT NEW PREV STATE TIMEOUT GUARD`: refuse unless the host still
/// runs PREV; activate NEW with `switch-to-configuration test`, which changes the running
/// system only; when GUARD is 1, wait up to TIMEOUT seconds for STATE/confirm. Only then is NEW
/// made what the host boots: PROFILE gets its generation (`nix-env --set`, as nixos-rebuild
/// does) and `switch-to-configuration boot` writes the boot entry. Until that moment PROFILE and
/// the boot loader still name PREV, so a crash or a reboot during the confirmation window comes
/// back on PREV by itself. Without a confirmation (or when NEW fails to activate, or to become
/// the boot default) PREV is activated again with `switch-to-configuration test`, after PROFILE
/// and the boot entry are set back to PREV if they had been moved.
pub const GUARD: &str = r#"set -u
umask 077
profile=$1 current=$2 new=$3 prev=$4 state=$5 timeout=$6 guard=$7
PATH="$new/sw/bin:/run/current-system/sw/bin:${PATH:-/usr/bin:/bin}"
export PATH
mkdir -p "$state" || exit 1
say() {
  printf '%s\n' "$1" > "$state/status.new" && mv -f "$state/status.new" "$state/status"
  echo "iac-activate: $1"
}
roll_back() {
  say "rolling-back: $1"
  ok=1
  if [ "$(readlink -f "$profile")" != "$prev" ]; then
    if ! nix-env -p "$profile" --set "$prev" || ! "$prev/bin/switch-to-configuration" boot; then ok=0; fi
  fi
  if ! "$prev/bin/switch-to-configuration" test; then ok=0; fi
  if [ "$ok" = 1 ]; then say "rolled-back: $1"; else say "rollback-failed: $1"; fi
  exit 1
}
running=$(readlink -f "$current")
if [ "$running" != "$prev" ]; then
  say "failed: the host runs $running, not $prev; nothing changed"
  exit 1
fi
say switching
if ! "$new/bin/switch-to-configuration" test; then
  if [ "$guard" = 1 ]; then roll_back "switch-to-configuration test failed"; fi
  say "failed: switch-to-configuration test failed; the host boots $prev"
  exit 1
fi
if [ "$guard" = 1 ]; then
  say switched
  i=0
  while [ ! -e "$state/confirm" ]; do
    if [ "$i" -ge "$timeout" ]; then roll_back "no confirmation within ${timeout}s"; fi
    sleep 1
    i=$((i + 1))
  done
  say committing
fi
if ! nix-env -p "$profile" --set "$new" || ! "$new/bin/switch-to-configuration" boot; then
  if [ "$guard" = 1 ]; then roll_back "confirmed, but making it the boot default failed"; fi
  say "failed: $new runs, but making it the boot default failed"
  exit 1
fi
if [ "$guard" = 1 ]; then say confirmed; else say done; fi
"#;

/// `iac-wait STATE LIMIT THROUGH UNIT`: print the status once it is settled. Waits while the
/// switch or a rollback runs, and also through `switched` when THROUGH is 1. Gives up after
/// LIMIT seconds, or when the unit is gone without a settled status (`abandoned`).
pub const WAIT: &str = r#"PATH="/run/current-system/sw/bin:${PATH:-/usr/bin:/bin}"; export PATH
set -u
state=$1 limit=$2 through=$3 unit=$4
settled() {
  case "$1" in
    ""|switching*|committing*|rolling-back*) return 1 ;;
    switched*) [ "$through" != 1 ] ;;
    *) return 0 ;;
  esac
}
i=0
while :; do
  s=$(cat "$state/status" 2>/dev/null || true)
  if settled "$s"; then break; fi
  if ! systemctl is-active --quiet "$unit"; then
    s=$(cat "$state/status" 2>/dev/null || true)
    if ! settled "$s"; then s="abandoned: the unit stopped at '${s:-no status}'"; fi
    break
  fi
  if [ "$i" -ge "$limit" ]; then break; fi
  sleep 1
  i=$((i + 1))
done
printf '%s\n' "${s:-missing}"
"#;

/// `iac-confirm STATE`: create the confirmation file, then print the status the guard
/// answers with (`confirmed`, or `rolled-back` when it came too late or the new system could
/// not become the boot default), waiting up to 120 s while the guard is still at work
/// (installing a boot loader, or rolling back, takes a while).
pub const CONFIRM: &str = r#"PATH="/run/current-system/sw/bin:${PATH:-/usr/bin:/bin}"; export PATH
set -u
state=$1
if [ ! -d "$state" ]; then
  echo missing
  exit 1
fi
: > "$state/confirm"
i=0
while [ "$i" -lt 120 ]; do
  s=$(cat "$state/status" 2>/dev/null || true)
  case "$s" in
    switched*|committing*|rolling-back*) ;;
    *) break ;;
  esac
  sleep 1
  i=$((i + 1))
done
printf '%s\n' "${s:-missing}"
"#;

/// The host's SSH host key, as NixOS's OpenSSH writes it: what `ssh-keyscan -t ed25519`
/// reports, and the key its decryption unit decrypts with (`render::secrets::HOST_KEY_PATH`).
pub const HOST_KEY_PUB: &str = "/etc/ssh/ssh_host_ed25519_key.pub";

/// The one word of a remote command line that the login shell on the host expands rather than
/// receives as is: `$SSH_CONNECTION`, which sshd sets for every session to "client-ip
/// client-port server-ip server-port" (OpenSSH's `session.c`, `do_setup_env`, unconditionally;
/// a v4-mapped IPv6 client is reported as IPv4, `canohost.c` `ipv64_normalise_mapped`). It must
/// be expanded by the login shell, before `sudo -n`: sudo's `env_reset` drops it. Double quotes
/// keep it one word, empty when it is not set (a POSIX shell, bash, zsh and fish all agree).
pub const SSH_CONNECTION_WORD: &str = "\"$SSH_CONNECTION\"";

/// `iac-preflight CONNECTION PUBFILE WANT DIR...`: runs as root over the same SSH connection that
/// proves the host is reachable. Its first line is `ssh-connection: CONNECTION` (the
/// [`SSH_CONNECTION_WORD`] the login shell expanded: how the host sees this machine, judged by
/// `super::lockout`), then one verdict line per subject. When WANT (the host key the inventory
/// declares, `ssh-ed25519 BASE64`) is not empty, PUBFILE must hold it: `host-key-ok`,
/// `host-key-missing` or `host-key-differs` (the host's secrets would not decrypt at
/// activation). Each DIR is where a secret of the host goes (the one list of
/// `Site::secret_files`): `ok` when it is a directory owned by root and writable by root only
/// (POSIX `find -user 0 ! -perm -g+w ! -perm -o+w`), or does not exist yet (it is created
/// 0751 when the secret is written); `not-a-directory` or `unsafe-directory` otherwise, since
/// whoever can write there could swap a secret's file. Exits 0 whatever it found: a non-zero
/// exit is the shell's or sudo's own failure.
pub const PREFLIGHT: &str = r#"PATH="/run/current-system/sw/bin:${PATH:-/usr/bin:/bin}"; export PATH
set -u
conn=$1 pubfile=$2 want=$3
shift 3
printf 'ssh-connection: %s\n' "$conn"
if [ -n "$want" ]; then
  have=$(cut -d' ' -f1,2 "$pubfile" 2>/dev/null || true)
  if [ -z "$have" ]; then
    echo "host-key-missing: $pubfile"
  elif [ "$have" = "$want" ]; then
    echo "host-key-ok: $pubfile"
  else
    echo "host-key-differs: $pubfile"
  fi
fi
for d in "$@"; do
  if [ ! -e "$d" ]; then
    echo "ok: $d"
  elif [ ! -d "$d" ]; then
    echo "not-a-directory: $d"
  elif [ -z "$(find "$d" -prune -user 0 ! -perm -g+w ! -perm -o+w)" ]; then
    echo "unsafe-directory: $d"
  else
    echo "ok: $d"
  fi
done
"#;

/// The verdicts the preflight found wrong, `(verdict, subject)`, in the order asked; a
/// subject without a verdict line is reported as `no verdict`.
pub fn preflight_problems<'a>(output: &str, subjects: &[&'a str]) -> Vec<(String, &'a str)> {
    let mut problems = Vec::new();
    for subject in subjects {
        let verdict = output.lines().find_map(|l| l.split_once(": ").filter(|(_, f)| f == subject).map(|(v, _)| v));
        match verdict {
            Some("ok" | "host-key-ok") => {}
            Some(v) => problems.push((v.to_string(), *subject)),
            None => problems.push(("no verdict".to_string(), *subject)),
        }
    }
    problems
}

/// The value the preflight reported for `$SSH_CONNECTION` (empty when the host's shell had
/// none); None when its output has no `ssh-connection:` line at all.
pub fn ssh_connection(output: &str) -> Option<&str> {
    output.lines().find_map(|l| l.strip_prefix("ssh-connection:")).map(str::trim)
}

// The scripts that write a host's pushed secrets and remove the stale ones live in `push.rs`;
// they are on-target scripts like the others, so they are named here too.
pub use super::push::{PRUNE, PUSH, PUSHED_RECORD, pruned};

/// sudo's own refusal in the standard error of a command run through `sudo -n`: the first line
/// sudo wrote, which it prefixes with its name (`sudo: a password is required`, `sudo: deploy
/// is not in the sudoers file`). `-n` makes sudo fail at once where it would prompt (sudo(8),
/// "-n, --non-interactive: ... If a password is required for the command to run, sudo will
/// display an error message and exit"), so a policy that wants a password fails the first root
/// step, the preflight, instead of hanging (tests/it/deploy_e2e.rs, case 10).
pub fn sudo_refusal(stderr: &str) -> Option<&str> {
    stderr.lines().map(str::trim).find(|l| l.starts_with("sudo: ") || l.starts_with("sudo-rs: "))
}

/// What to tell about a [`sudo_refusal`] of `user` on `host`.
pub fn sudo_refused(user: &str, host: &str, refusal: &str) -> String {
    format!(
        "sudo -n refused {user} on {host} ({refusal}): iac runs its root steps with `sudo -n`, which never asks for a password; \
         give {user} password-less sudo (NOPASSWD)"
    )
}

/// What a target's status line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No status written (yet).
    Missing,
    Switching,
    /// Switched (`test`); the guard waits for the confirmation.
    Switched,
    /// Confirmed; the guard makes the new system the boot default.
    Committing,
    Confirmed,
    /// Switched without a guard (`--no-rollback`).
    Done,
    RollingBack(String),
    RolledBack(String),
    RollbackFailed(String),
    Failed(String),
    Abandoned(String),
    /// Anything else (a broken wrapper, a message from sudo...): never taken for success.
    Unknown(String),
}

impl Status {
    /// Parse the last non-empty line of a script's output.
    pub fn parse(output: &str) -> Self {
        let line = output.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        let (state, detail) = match line.split_once(':') {
            Some((s, d)) => (s, d.trim().to_string()),
            None => (line, String::new()),
        };
        match state {
            "" | "missing" => Self::Missing,
            "switching" => Self::Switching,
            "switched" => Self::Switched,
            "committing" => Self::Committing,
            "confirmed" => Self::Confirmed,
            "done" => Self::Done,
            "rolling-back" => Self::RollingBack(detail),
            "rolled-back" => Self::RolledBack(detail),
            "rollback-failed" => Self::RollbackFailed(detail),
            "failed" => Self::Failed(detail),
            "abandoned" => Self::Abandoned(detail),
            _ => Self::Unknown(line.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        assert_eq!(Status::parse("switched\n"), Status::Switched);
        assert_eq!(Status::parse("noise\nconfirmed\n\n"), Status::Confirmed);
        assert_eq!(Status::parse("missing"), Status::Missing);
        assert_eq!(Status::parse(""), Status::Missing);
        assert_eq!(Status::parse("rolled-back: no confirmation within 30s"), Status::RolledBack("no confirmation within 30s".into()));
        assert_eq!(Status::parse("sudo: a password is required"), Status::Unknown("sudo: a password is required".into()));
        assert_eq!(Status::parse("committing"), Status::Committing);
    }

    #[test]
    fn sudo_refusals_are_told_apart_from_the_commands_own_failures() {
        assert_eq!(sudo_refusal("sudo: a password is required\n"), Some("sudo: a password is required"));
        assert_eq!(
            sudo_refusal("warning: x\nsudo: deploy is not in the sudoers file.\n"),
            Some("sudo: deploy is not in the sudoers file.")
        );
        assert_eq!(sudo_refusal("find: '/x': Permission denied\n"), None);
        assert_eq!(sudo_refusal(""), None);
        assert!(sudo_refused("deploy", "alpha", "sudo: a password is required").starts_with("sudo -n refused deploy on alpha ("));
    }

    /// Nothing iac runs as root depends on the PATH sudo leaves: each script puts the system's
    /// tools first itself.
    #[test]
    fn every_root_script_sets_its_own_path() {
        for script in [PREFLIGHT, PUSH, PRUNE, WAIT, CONFIRM] {
            assert!(script.starts_with(SYSTEM_PATH), "{script}");
        }
        assert!(GUARD.contains("PATH=\"$new/sw/bin:/run/current-system/sw/bin:"));
        assert!(SYSTEMD_RUN.starts_with('/'));
    }

    #[test]
    fn preflight_verdicts() {
        let out = "host-key-ok: /k.pub\nok: /s/a\nunsafe-directory: /s/b\nnot-a-directory: /s/c: x\n";
        assert_eq!(
            preflight_problems(out, &["/k.pub", "/s/a", "/s/b", "/s/c: x", "/s/d"]),
            [("unsafe-directory".to_string(), "/s/b"), ("not-a-directory".to_string(), "/s/c: x"), ("no verdict".to_string(), "/s/d")]
        );
        assert!(preflight_problems("", &[]).is_empty());
    }

    #[test]
    fn the_ssh_connection_line() {
        assert_eq!(ssh_connection("ssh-connection: 10.9.0.5 4000 10.9.0.1 22\nok: /s\n"), Some("10.9.0.5 4000 10.9.0.1 22"));
        assert_eq!(ssh_connection("ssh-connection: \nok: /s\n"), Some(""));
        assert_eq!(ssh_connection("ok: /s\n"), None);
    }
}
