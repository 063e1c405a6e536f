//! `iac drift`: what runs on the estate against what the inventory says. Read-only.
//!
//! Per host, over one SSH connection (`host`): the nftables ruleset (`firewall`, compared with
//! the table `iac render` produces for the host) and the running NixOS system (`generation`,
//! compared with the flake's build of it); for a database host, through `iac query`'s
//! connection, its pg_hba rules, roles and databases (`postgres`); for the cluster (`--k8s`),
//! a server-side apply dry run of `generated/k8s` (`cluster`). `report` holds what was found,
//! as data and as text.
//!
//! A host that cannot be reached is an error of that host, with the reason; the others still
//! report. The command layer (`iac drift`) runs [`check_hosts`] (threads: SSH and processes),
//! then the PostgreSQL and cluster parts on its async runtime, and turns the [`report::Report`]
//! into the exit code: 0 everything compared and equal, 1 drift or any error, 2 an invalid
//! inventory or an unknown host.

pub mod cluster;
pub mod firewall;
pub mod generation;
pub mod host;
pub mod postgres;
pub mod report;

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::deploy::plan::{Plan, Tools};
use crate::model::{Host, Site, Targets, UnknownHost};
use crate::policy::Flows;
use crate::render;
use crate::reporter::Reporter;

use generation::Built;
use report::{HostReport, PartReport, Source};

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error(transparent)]
    UnknownHost(#[from] UnknownHost),
    #[error("`{tool}` not found on PATH: {hint}")]
    ToolMissing { tool: &'static str, hint: &'static str },
    #[error(transparent)]
    Render(#[from] render::Error),
    #[error("--local {host}: {message}")]
    Local { host: String, message: String },
}

/// What `iac drift` was asked to compare on the hosts.
#[derive(Debug, Clone)]
pub struct Options {
    pub targets: Targets,
    /// The flake whose `nixosConfigurations.<host>` is built to compare generations.
    pub flake: String,
    /// Build each host's system (`false`: `--no-build`, the generation is "not built").
    pub build: bool,
    pub connect_timeout: Duration,
    /// Hosts read at the same time.
    pub jobs: usize,
}

/// The rendered `nftables.nft` of `host`, as `iac render` writes it.
pub fn rendered_ruleset(flows: &Flows, host: &Host) -> Result<String, render::Error> {
    render::nft::standalone(host, &render::nft::table_content(flows, host)?)
}

/// Firewall and generation of every selected host, `jobs` at a time, in the order selected.
/// The PostgreSQL part is the caller's (async; [`postgres::check`]).
pub fn check_hosts(site: &Site, opts: &Options, report: &dyn Reporter) -> Result<Vec<HostReport>, DriftError> {
    let hosts = site.select(&opts.targets)?;
    let local = firewall::Tools::locate()?;
    let ssh = which::which("ssh")
        .map_err(|_| DriftError::ToolMissing { tool: "ssh", hint: "install an OpenSSH client (Debian: apt-get install openssh-client)" })?;
    // Without nix the generation is "not built", with the reason; nothing else needs it.
    let nix = which::which("nix").ok();
    let plan = Plan {
        tools: Tools {
            ssh,
            nix: nix.clone().unwrap_or_else(|| PathBuf::from("nix")),
            unshare: local.unshare.clone(),
            nft: local.nft.clone(),
        },
        flake: opts.flake.clone(),
        build_host: None,
        connect_timeout: opts.connect_timeout,
        confirm_timeout: Duration::ZERO,
        rollback: false,
        substitutes: false,
        run_id: String::new(),
        local_root: local.local_root,
    };
    let build = match (opts.build, &nix) {
        (false, _) => Some("--no-build"),
        (true, None) => Some("`nix` is not installed here"),
        (true, Some(_)) => None,
    };
    let flows = render::flows(site);
    let rulesets = hosts.iter().map(|h| rendered_ruleset(&flows, h)).collect::<Result<Vec<_>, _>>()?;
    let results: Mutex<Vec<Option<HostReport>>> = Mutex::new(vec![None; hosts.len()]);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.clamp(1, hosts.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (Some(host), Some(ruleset)) = (hosts.get(i), rulesets.get(i)) else { break };
                    let r = one_host(&plan, &local, host, ruleset, build, report);
                    if let Ok(mut all) = results.lock()
                        && let Some(slot) = all.get_mut(i)
                    {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_default();
    Ok(hosts.iter().zip(results).map(|(h, r)| r.unwrap_or_else(|| failed_host(h, "the worker stopped without a result".into()))).collect())
}

/// `--local HOST`: the ruleset of the kernel iac runs on against HOST's render, without SSH.
pub fn check_local(site: &Site, name: &str, report: &dyn Reporter) -> Result<HostReport, DriftError> {
    let host = site.select(&Targets::Named(vec![name.to_owned()]))?[0];
    let tools = firewall::Tools::locate()?;
    let expected_nft = rendered_ruleset(&render::flows(site), host)?;
    report.progress(&format!("{}: comparing the ruleset of this machine with the render of {}", host.name, host.name));
    let live = firewall::local_listing(&tools).map_err(|message| DriftError::Local { host: host.name.clone(), message })?;
    let firewall = match firewall::expected_listing(&tools, &expected_nft) {
        Ok(expected) => firewall::check(&expected, &live),
        Err(e) => PartReport::failed(e),
    };
    Ok(HostReport {
        host: host.name.clone(),
        address: host.address.to_string(),
        source: Source::Local,
        error: None,
        firewall: Some(firewall),
        postgres: None,
        generation: None,
    })
}

fn one_host(plan: &Plan, local: &firewall::Tools, host: &Host, ruleset: &str, no_build: Option<&str>, report: &dyn Reporter) -> HostReport {
    report.progress(&format!("{}: reading the ruleset and the running system over SSH", host.name));
    let state = match host::read(plan, host) {
        Ok(s) => s,
        Err(e) => return failed_host(host, e),
    };
    let firewall = match (&state.ruleset, firewall::expected_listing(local, ruleset)) {
        (Ok(live), Ok(expected)) => firewall::check(&expected, live),
        (Err(e), _) => PartReport::failed(e.clone()),
        (_, Err(e)) => PartReport::failed(e),
    };
    let built = match no_build {
        Some(why) => Built::Not(why.into()),
        None => {
            report.progress(&format!("{}: building its system to compare (nix build)", host.name));
            generation::build(plan, host)
        }
    };
    HostReport {
        host: host.name.clone(),
        address: host.address.to_string(),
        source: Source::Ssh,
        error: None,
        firewall: Some(firewall),
        postgres: None,
        generation: Some(generation::compare(state.system.as_deref(), built)),
    }
}

/// A host that could not be read: the reason, and no firewall or generation to show.
fn failed_host(host: &Host, reason: String) -> HostReport {
    HostReport {
        host: host.name.clone(),
        address: host.address.to_string(),
        source: Source::Ssh,
        error: Some(reason),
        firewall: None,
        postgres: None,
        generation: None,
    }
}
