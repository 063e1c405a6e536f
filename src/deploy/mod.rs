//! `iac deploy`: build NixOS hosts and switch them, in parallel, without locking anyone out.
//!
//! The flow (docs/deploy.md has the details and the exact remote commands):
//! 1. preflight, before any host is touched: the rendered tree is up to date, every selected
//!    host's ruleset passes `nft -c`, Nix evaluates its module to exactly that ruleset, and
//!    the tools are on PATH;
//! 2. per host (up to `--jobs` at once): SSH reachable and the host's secret files in place
//!    (one connection), `nix build` (here or on `--build-host`), compare with
//!    `/run/current-system` and skip when equal, copy the closure, start the guard under
//!    `systemd-run` on the target, wait for it to activate the new system
//!    (`switch-to-configuration test`), confirm over a new SSH connection, after which the
//!    target makes it the boot default; an unconfirmed switch is rolled back by the target
//!    itself, and a reboot before the confirmation boots the previous system;
//! 3. a summary table, and an exit code that says whether every host made it.
//!
//! `plan` builds every command (pure); `host` runs one host's sequence; `progress` shows it.

mod host;
pub mod plan;
mod preflight;
mod progress;
pub mod remote;
pub mod store_path;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::{DEFAULT_INVENTORY, DEFAULT_OUT, DeployArgs};
use crate::error::Error;
use crate::model::{Host, Site};

use plan::{Plan, Tools};
use store_path::StorePath;

/// Exit code when at least one host was (or may have been) rolled back.
pub const EXIT_ROLLED_BACK: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("unknown host `{name}` (the inventory has: {known})")]
    UnknownHost { name: String, known: String },
    #[error("`{tool}` not found on PATH: {hint}")]
    ToolMissing { tool: &'static str, hint: &'static str },
    #[error("--flake takes a flake without `#attr` (iac appends `#<host>`): {0}")]
    FlakeAttr(String),
    #[error("{} is stale: run `iac render` and commit the result before deploying\n{diff}", out.display())]
    Stale { out: PathBuf, diff: String },
    #[error("preflight: the ruleset of {host} fails `nft -c` ({cmd}):\n{stderr}")]
    Ruleset { host: String, cmd: String, stderr: String },
    #[error("cannot run {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("cannot pass {word:?} to a remote shell: it contains a NUL byte")]
    Quote { word: String },
    #[error(transparent)]
    StorePath(#[from] store_path::StorePathError),
}

/// Run `iac deploy`.
pub fn run(args: &DeployArgs) -> Result<ExitCode, Error> {
    let (flake, flake_dir) = resolve_flake(&args.flake)?;
    let base = flake_dir.as_deref().unwrap_or(Path::new(""));
    let inventory = args.inventory.clone().unwrap_or_else(|| base.join(DEFAULT_INVENTORY));
    let out = args.out.clone().unwrap_or_else(|| base.join(DEFAULT_OUT));
    let site = crate::load_site(&inventory)?;
    let hosts = select(&site, args)?;
    let plan = Plan {
        tools: locate(args.dry_run)?,
        flake,
        build_host: args.build_host.clone(),
        connect_timeout: Duration::from_secs(args.connect_timeout),
        confirm_timeout: Duration::from_secs(args.confirm_timeout),
        rollback: !args.no_rollback,
        substitutes: !args.no_substitutes,
        run_id: run_id(),
        local_root: rustix::process::geteuid().is_root(),
    };

    // Preflight: nothing below touches a host unless all of this passes.
    let files = preflight::rendered_tree(&site, &out)?;
    if args.dry_run {
        // A dry run runs no tool it lacks: `nft -c` only where nft and unshare are installed,
        // the Nix evaluation only where nix-instantiate is.
        let checks = if plan.tools.nft.is_absolute() && plan.tools.unshare.is_absolute() {
            Some(preflight::rulesets(&plan, &out, &hosts)?)
        } else {
            None
        };
        let nixos = match crate::nix_eval::locate() {
            Ok(_) => Some(preflight::nixos_tables(&out, &hosts)?),
            Err(_) => None,
        };
        print!("{}", dry_run(&plan, &site, &out, files, checks.as_deref(), nixos, &hosts)?);
        return Ok(ExitCode::SUCCESS);
    }
    let checks = preflight::rulesets(&plan, &out, &hosts)?;
    let nixos = preflight::nixos_tables(&out, &hosts)?;
    eprintln!(
        "preflight: {} is up to date ({files} files); `nft -c` accepts {} ruleset(s); Nix evaluates {nixos} host module(s) to exactly those rulesets",
        out.display(),
        checks.len()
    );

    let outcomes = host::run_all(&plan, &site, &hosts, usize::from(args.jobs));
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    print!("{}", progress::summary(&names, &outcomes));
    Ok(exit_code(&outcomes))
}

fn exit_code(outcomes: &[host::Outcome]) -> ExitCode {
    use host::HostResult::{Failed, Ok, RolledBack, Unconfirmed};
    if outcomes.iter().any(|o| matches!(o.result, RolledBack(_) | Unconfirmed(_))) {
        ExitCode::from(EXIT_ROLLED_BACK)
    } else if outcomes.iter().any(|o| matches!(o.result, Failed(_))) {
        ExitCode::FAILURE
    } else {
        debug_assert!(outcomes.iter().all(|o| matches!(o.result, Ok(_))));
        ExitCode::SUCCESS
    }
}

/// A local directory becomes an absolute path (builds run in scratch directories) and the
/// base of the default inventory and output paths; anything else is a flake URL, passed on.
fn resolve_flake(flake: &str) -> Result<(String, Option<PathBuf>), Error> {
    if flake.contains('#') {
        return Err(DeployError::FlakeAttr(flake.to_string()).into());
    }
    let path = Path::new(flake);
    if path.is_dir() {
        let abs = std::fs::canonicalize(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        return Ok((abs.to_string_lossy().into_owned(), Some(abs)));
    }
    Ok((flake.to_string(), None))
}

/// The hosts to deploy: all of them (inventory order), or the named ones (once each).
fn select<'s>(site: &'s Site, args: &DeployArgs) -> Result<Vec<&'s Host>, DeployError> {
    if args.all {
        return Ok(site.hosts.iter().collect());
    }
    let mut hosts: Vec<&Host> = Vec::new();
    for name in &args.hosts {
        let host = site.host(name).ok_or_else(|| DeployError::UnknownHost {
            name: name.clone(),
            known: site.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", "),
        })?;
        if !hosts.iter().any(|h| h.name == host.name) {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

/// The local tools, by absolute path. A dry run runs none of them and needs none: a tool this
/// machine lacks keeps its bare name there, so the printed commands are still complete.
fn locate(dry_run: bool) -> Result<Tools, DeployError> {
    let find = |tool: &'static str, hint: &'static str| match which::which(tool) {
        Ok(path) => Ok(path),
        Err(_) if dry_run => Ok(PathBuf::from(tool)),
        Err(_) => Err(DeployError::ToolMissing { tool, hint }),
    };
    Ok(Tools {
        ssh: find("ssh", "install an OpenSSH client (Debian: apt-get install openssh-client)")?,
        nix: find("nix", "install Nix with flakes support (Debian: apt-get install nix-bin)")?,
        unshare: find("unshare", "install util-linux")?,
        nft: find("nft", "install nftables (Debian: apt-get install nftables)")?,
    })
}

/// Unique per run: names the state directory on the targets, so a status left by an earlier
/// deploy can never be read as this one's.
fn run_id() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{secs}-{}", std::process::id())
}

/// Every command a real run would execute, in order, per host. The built and the running
/// system are only known while deploying: they appear as `$NEW` and `$PREV` (and a remote
/// build's derivation as `$DRV`).
fn dry_run(
    plan: &Plan,
    site: &Site,
    out: &Path,
    files: usize,
    checks: Option<&[plan::Cmd]>,
    nixos: Option<usize>,
    hosts: &[&Host],
) -> Result<String, DeployError> {
    let new = StorePath::parse(&format!("/nix/store/{}-new-system", "0".repeat(32)))?;
    let prev = StorePath::parse(&format!("/nix/store/{}-running-system", "1".repeat(32)))?;
    let drv = StorePath::parse(&format!("/nix/store/{}-new-system.drv", "2".repeat(32)))?;
    let vars = |s: String| s.replace(drv.as_str(), "$DRV").replace(new.as_str(), "$NEW").replace(prev.as_str(), "$PREV");
    let mut s = String::new();
    s.push_str(&format!("# preflight (ran, changes nothing): {} is up to date ({files} files)\n", out.display()));
    match checks {
        Some(checks) => {
            for c in checks {
                s.push_str(&c.display());
                s.push('\n');
            }
        }
        None => s.push_str("# not run: `nft -c` of each ruleset (nft or unshare is not installed here)\n"),
    }
    match nixos {
        Some(n) => s.push_str(&format!("# Nix evaluates {n} host module(s) to exactly the rulesets above\n")),
        None => s.push_str("# not run: the Nix evaluation of each host module's table (nix-instantiate is not installed here)\n"),
    }
    s.push_str(
        "\n# Commands per host, in order. An ssh command's remote part is shown as the command line the\n\
         # remote shell receives; each <script> is one of the on-target scripts at the end.\n",
    );
    for host in hosts {
        let secrets = site.secret_files(host);
        let paths: Vec<&str> = secrets.iter().map(|f| f.path.as_str()).collect();
        s.push_str(&format!("\n# {} ({}@{}:{})\n", host.name, host.ssh_user, host.address, host.ssh_port));
        s.push_str(&format!("{}    # reachable, and the secret files in place\n", plan.preflight(host, &paths)?.show()));
        match &plan.build_host {
            None => s.push_str(&format!("{}    # NEW=its output\n", plan.build(host).show())),
            Some(b) => {
                s.push_str(&format!("{}    # DRV=its output\n", plan.eval_drv(host).show()));
                s.push_str(&format!("{}\n", vars(plan.copy_drv(b, &drv).show())));
                s.push_str(&format!("{}    # NEW=its output\n", vars(plan.build_remote(b, &drv)?.show())));
            }
        }
        s.push_str(&format!("{}    # PREV=its output; the host is skipped when NEW = PREV\n", plan.current_system(host)?.show()));
        match &plan.build_host {
            None => s.push_str(&format!("{}\n", vars(plan.copy(host, &new).show()))),
            Some(b) => s.push_str(&format!("{}\n", vars(plan.copy_from_builder(b, host, &new)?.show()))),
        }
        s.push_str(&format!("{}\n", vars(plan.activate(host, &new, &prev)?.show())));
        s.push_str(&format!("{}\n", plan.wait(host, plan::SWITCH_LIMIT, false)?.show()));
        if plan.rollback {
            s.push_str(&format!("{}    # a new connection\n", plan.confirm(host)?.show()));
            s.push_str(&format!("# only when the confirmation fails:\n{}\n", plan.wait(host, plan.settle_limit(), true)?.show()));
        }
    }
    for (name, script) in [
        ("iac-preflight", remote::PREFLIGHT),
        ("iac-activate", remote::GUARD),
        ("iac-wait", remote::WAIT),
        ("iac-confirm", remote::CONFIRM),
    ] {
        s.push_str(&format!("\n# <script> of `sh -c <script> {name} ...`:\n{script}"));
    }
    Ok(s)
}
