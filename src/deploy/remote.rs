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
pub const WAIT: &str = r#"set -u
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
pub const CONFIRM: &str = r#"set -u
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

/// `iac-preflight FILE...`: one verdict line per secret file, `ok: FILE` or `PROBLEM: FILE`
/// with PROBLEM one of `missing`, `not-a-file`, `empty`, `world-readable` (POSIX `find -perm
/// -o+r`: the other-read bit is set). Runs as root (the files are root-only) over the same SSH
/// connection that proves the host is reachable. Exits 0 whatever it found: a non-zero exit is
/// the shell's or sudo's own failure.
pub const PREFLIGHT: &str = r#"set -u
for f in "$@"; do
  if [ ! -e "$f" ]; then
    echo "missing: $f"
  elif [ ! -f "$f" ]; then
    echo "not-a-file: $f"
  elif [ ! -s "$f" ]; then
    echo "empty: $f"
  elif [ -n "$(find "$f" -prune -perm -o+r)" ]; then
    echo "world-readable: $f"
  else
    echo "ok: $f"
  fi
done
"#;

/// The secret files the preflight found wrong, `(problem, file)`, in the order asked; a file
/// without a verdict line is reported as `no verdict`.
pub fn preflight_problems<'a>(output: &str, files: &[&'a str]) -> Vec<(String, &'a str)> {
    let mut problems = Vec::new();
    for file in files {
        let verdict = output.lines().find_map(|l| l.split_once(": ").filter(|(_, f)| f == file).map(|(v, _)| v));
        match verdict {
            Some("ok") => {}
            Some(v) => problems.push((v.to_string(), *file)),
            None => problems.push(("no verdict".to_string(), *file)),
        }
    }
    problems
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
    fn preflight_verdicts() {
        let out = "ok: /s/a\nmissing: /s/b\nworld-readable: /s/c: x\n";
        assert_eq!(
            preflight_problems(out, &["/s/a", "/s/b", "/s/c: x", "/s/d"]),
            [("missing".to_string(), "/s/b"), ("world-readable".to_string(), "/s/c: x"), ("no verdict".to_string(), "/s/d")]
        );
        assert!(preflight_problems("", &[]).is_empty());
    }
}
