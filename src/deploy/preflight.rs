//! Checks that run before any host is touched. Each one stops the whole deploy: a stale tree
//! or a ruleset `nft` rejects is a mistake in the repository, not a problem of one host.

use std::path::{Path, PathBuf};

use crate::model::{Delivery, Host, Site};
use crate::secrets::{self, Identity, Store};
use crate::{output, render};

use super::plan::{Cmd, Plan};
use super::{DeployError, Options, Values};

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

/// The secrets the selected hosts read: each must be encrypted to exactly its recipients
/// (`iac secrets check`), and those pushed to hosts without a host key are decrypted here,
/// once, before any host is touched (a wrong identity stops the deploy, not one host). A dry
/// run decrypts them too when it finds an identity, to prove that it can, and keeps nothing.
pub(super) fn secrets(site: &Site, hosts: &[&Host], opts: &Options) -> Result<(usize, Values, Option<PathBuf>), DeployError> {
    let files: Vec<_> = hosts.iter().flat_map(|h| site.secret_files(h)).collect();
    let mut names: Vec<&str> = files.iter().map(|f| f.secret.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let store = Store::new(site, &opts.secrets_dir);
    let bad: Vec<String> =
        store.check().iter().filter(|s| names.contains(&s.name.as_str()) && !s.ok()).map(secrets::Status::line).collect();
    if !bad.is_empty() {
        return Err(secrets::Error::NotReady(bad.join("\n")).into());
    }
    let mut pushed: Vec<&str> = files.iter().filter(|f| f.delivery == Delivery::Push).map(|f| f.secret.as_str()).collect();
    pushed.sort_unstable();
    pushed.dedup();
    if pushed.is_empty() {
        return Ok((files.len(), Values::new(), None));
    }
    let identity = match Identity::load(opts.identity.as_deref()) {
        Ok(identity) => identity,
        Err(secrets::Error::NoIdentity { .. }) if opts.dry_run => return Ok((files.len(), Values::new(), None)),
        Err(e) => return Err(e.into()),
    };
    let mut values = Values::new();
    for name in pushed {
        values.insert(name.to_string(), store.value(name, &identity)?);
    }
    let path = identity.path.clone();
    if opts.dry_run {
        values.clear();
    }
    Ok((files.len(), values, Some(path)))
}
