//! Everything drift reads on a host, in one SSH connection: the store path of the running
//! system and the whole nftables ruleset as JSON. The connection is `iac deploy`'s
//! ([`Plan::ssh`]: BatchMode, the connect timeout, no ControlMaster, `sudo -n` for a non-root
//! user, since listing the ruleset needs CAP_NET_ADMIN); the script is fixed text, the path it
//! reads arrives as an argument.

use std::process::Stdio;

use crate::deploy::plan::{Cmd, Plan};
use crate::deploy::remote::CURRENT_SYSTEM;
use crate::model::Host;

/// `iac-drift CURRENT`: prints `iac-drift system PATH` (empty when CURRENT does not exist),
/// then `iac-drift nft ok` and the listing, or `iac-drift nft failed STATUS` and nft's message.
/// NixOS puts `nft` in the system profile, which a non-interactive login's PATH may lack.
pub const READ: &str = r#"PATH="/run/current-system/sw/bin:${PATH:-/usr/bin:/bin}:/usr/sbin:/sbin"
export PATH
if [ -L "$1" ] || [ -e "$1" ]; then system=$(readlink -f "$1" 2>/dev/null); else system=; fi
printf 'iac-drift system %s\n' "$system"
if listing=$(nft -j list ruleset 2>&1); then
  printf 'iac-drift nft ok\n%s\n' "$listing"
else
  printf 'iac-drift nft failed %s\n%s\n' "$?" "$listing"
fi
"#;

/// What the host said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    /// `/run/current-system` resolved; None when it does not exist.
    pub system: Option<String>,
    /// nft's JSON listing, or why there is none.
    pub ruleset: Result<String, String>,
}

/// The ssh command that reads the host.
pub fn command(plan: &Plan, host: &Host) -> Result<Cmd, crate::deploy::DeployError> {
    plan.ssh(host, true, &["/bin/sh", "-c", READ, "iac-drift", CURRENT_SYSTEM])
}

/// Read the host; `Err` says why it could not be read at all (unreachable, refused).
pub fn read(plan: &Plan, host: &Host) -> Result<HostState, String> {
    let cmd = command(plan, host).map_err(|e| e.to_string())?;
    let out = cmd.to_command().stdin(Stdio::null()).output().map_err(|e| format!("cannot run {}: {e}", plan.tools.ssh.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no message");
    match out.status.code() {
        Some(0) => parse(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| format!("unexpected answer from the host ({last})")),
        // ssh's own status: it could not connect or lost the connection.
        Some(255) => Err(format!("unreachable over SSH ({last})")),
        Some(code) => match crate::deploy::remote::sudo_refusal(&stderr).filter(|_| host.ssh_user != "root") {
            Some(refusal) => Err(crate::deploy::remote::sudo_refused(&host.ssh_user, &host.name, refusal)),
            None => Err(format!("the read on the host failed with exit {code} ({last})")),
        },
        None => Err("ssh was killed by a signal".into()),
    }
}

fn parse(stdout: &str) -> Option<HostState> {
    let mut lines = stdout.splitn(3, '\n');
    let system = lines.next()?.strip_prefix("iac-drift system")?.trim();
    let status = lines.next()?.strip_prefix("iac-drift nft ")?;
    let rest = lines.next().unwrap_or("").trim_end().to_string();
    let ruleset = if status == "ok" {
        Ok(rest)
    } else {
        let code = status.strip_prefix("failed").map_or("", str::trim);
        Err(format!("`nft -j list ruleset` on the host failed (exit {code}): {}", rest.lines().last().unwrap_or("no message")))
    };
    Some(HostState { system: (!system.is_empty()).then(|| system.to_string()), ruleset })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script as the host runs it, here under the real `sh`, with stand-ins for `nft` and
    /// the system link.
    #[test]
    fn the_script_reports_the_system_and_the_listing() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let nft = bin.join("nft");
        std::fs::write(&nft, "#!/bin/sh\necho '{\"nftables\": []}'\n").unwrap();
        std::fs::set_permissions(&nft, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let target = dir.path().join("system-1");
        std::fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("current")).unwrap();
        let run = |link: &std::path::Path, path: String| {
            let out = std::process::Command::new("/bin/sh").args(["-c", READ, "iac-drift"]).arg(link).env("PATH", path).output().unwrap();
            assert!(out.status.success());
            parse(&String::from_utf8(out.stdout).unwrap()).unwrap()
        };
        let path = format!("{}:/usr/bin:/bin", bin.display());
        let state = run(&dir.path().join("current"), path.clone());
        assert_eq!(state.system.as_deref(), Some(target.to_str().unwrap()));
        assert_eq!(state.ruleset, Ok("{\"nftables\": []}".into()));

        std::fs::write(&nft, "#!/bin/sh\necho 'Operation not permitted' >&2\nexit 1\n").unwrap();
        let state = run(&dir.path().join("missing"), path);
        assert_eq!(state.system, None);
        assert_eq!(state.ruleset, Err("`nft -j list ruleset` on the host failed (exit 1): Operation not permitted".into()));
    }

    #[test]
    fn anything_else_is_not_an_answer() {
        assert_eq!(parse("ssh: banner\n"), None);
        assert_eq!(parse(""), None);
    }
}
