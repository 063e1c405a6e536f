//! NixOS generation drift: the store path `/run/current-system` points at on the host against
//! the one the flake builds for it, with `iac deploy`'s build command ([`Plan::build`]: `nix
//! build --no-link --print-out-paths FLAKE#nixosConfigurations."HOST"...toplevel`). A system
//! path is input-addressed: equal paths mean the same closure, to the byte.

use std::process::Stdio;

use crate::deploy::plan::Plan;
use crate::deploy::store_path::StorePath;
use crate::model::Host;

use super::report::{GenerationReport, GenerationState};

/// What to compare the running system with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Built {
    Path(StorePath),
    /// Why there is no build: `--no-build`, no `nix` here, or the build failed.
    Not(String),
}

/// Build the host's system (or find the build in the store: Nix builds nothing twice).
pub fn build(plan: &Plan, host: &Host) -> Built {
    let cmd = plan.build(host);
    let out = match cmd.to_command().stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) => return Built::Not(format!("cannot run {}: {e}", plan.tools.nix.display())),
    };
    let last = |bytes: &[u8]| String::from_utf8_lossy(bytes).lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("").to_string();
    if !out.status.success() {
        return Built::Not(format!("nix build failed: {}", last(&out.stderr)));
    }
    match StorePath::parse(&last(&out.stdout)) {
        Ok(p) => Built::Path(p),
        Err(e) => Built::Not(format!("nix build printed no store path: {e}")),
    }
}

/// The verdict, from what the host runs (`/run/current-system` resolved, if it exists) and
/// what was built.
pub fn compare(running: Option<&str>, built: Built) -> GenerationReport {
    let running = match running.map(StorePath::parse) {
        None => {
            return GenerationReport {
                state: GenerationState::Error,
                running: None,
                built: match built {
                    Built::Path(p) => Some(p.to_string()),
                    Built::Not(_) => None,
                },
                reason: Some("/run/current-system does not exist on the host: is it NixOS?".into()),
            };
        }
        Some(Err(e)) => {
            return GenerationReport {
                state: GenerationState::Error,
                running: None,
                built: None,
                reason: Some(format!("/run/current-system: {e}")),
            };
        }
        Some(Ok(p)) => p,
    };
    match built {
        Built::Path(p) => GenerationReport {
            state: if p == running { GenerationState::InSync } else { GenerationState::Differs },
            running: Some(running.to_string()),
            built: Some(p.to_string()),
            reason: None,
        },
        Built::Not(why) => {
            GenerationReport { state: GenerationState::NotBuilt, running: Some(running.to_string()), built: None, reason: Some(why) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-alphard-25.05";
    const B: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-alphard-25.05";

    #[test]
    fn in_sync_differs_not_built() {
        let p = |s: &str| Built::Path(StorePath::parse(s).unwrap());
        assert_eq!(compare(Some(A), p(A)).state, GenerationState::InSync);
        let d = compare(Some(A), p(B));
        assert_eq!((d.state, d.running.as_deref(), d.built.as_deref()), (GenerationState::Differs, Some(A), Some(B)));
        let n = compare(Some(A), Built::Not("--no-build".into()));
        assert_eq!((n.state, n.reason.as_deref()), (GenerationState::NotBuilt, Some("--no-build")));
        assert_eq!(compare(None, p(A)).state, GenerationState::Error);
        assert_eq!(compare(Some("/tmp/x"), p(A)).state, GenerationState::Error);
    }
}
