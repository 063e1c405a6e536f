//! Checks that run before any host is touched. Each one stops the whole deploy: a stale tree
//! or a ruleset `nft` rejects is a mistake in the repository, not a problem of one host.

use std::path::Path;

use crate::model::{Host, Site};
use crate::{output, render};

use super::DeployError;
use super::plan::{Cmd, Plan};

/// The committed tree must be exactly what the inventory renders to: a deploy ships the
/// flake, and the flake ships `generated/`. Returns the number of files.
pub(super) fn rendered_tree(site: &Site, out: &Path) -> Result<usize, DeployError> {
    let tree = render::render(site)?;
    match output::diff_tree(out, &tree)? {
        None => Ok(tree.len()),
        Some(diff) => Err(DeployError::Stale { out: out.to_path_buf(), diff }),
    }
}

/// Every selected host's ruleset must pass the real `nft -c`, in a private network namespace
/// (so the check needs no privilege and cannot touch this machine's firewall). Returns the
/// commands it ran.
pub(super) fn rulesets(plan: &Plan, out: &Path, hosts: &[&Host]) -> Result<Vec<Cmd>, DeployError> {
    let mut ran = Vec::with_capacity(hosts.len());
    for host in hosts {
        let cmd = plan.nft_check(&out.join(&host.name).join("nftables.nft"));
        let output = cmd
            .to_command()
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| DeployError::Spawn { cmd: cmd.display(), source })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).trim_end().to_string();
            return Err(DeployError::Ruleset { host: host.name.clone(), cmd: cmd.display(), stderr });
        }
        ran.push(cmd);
    }
    Ok(ran)
}

/// The text NixOS will load from each selected host's module must be exactly the table that
/// `nft -c` just accepted: Nix evaluates the modules of `out` (`nix_eval`, the same function
/// `iac simulate` and the tests use). `nix-instantiate` comes with Nix, which a deploy needs
/// anyway, so a missing one is an error with the install hint, never a skipped check. Returns
/// the number of hosts compared.
pub(super) fn nixos_tables(out: &Path, hosts: &[&Host]) -> Result<usize, DeployError> {
    let nix = crate::nix_eval::locate()?;
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    Ok(crate::nix_eval::check_tables(&nix, out, &names)?)
}
