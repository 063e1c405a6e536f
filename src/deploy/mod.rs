//! `iac deploy`: build NixOS hosts and switch them, in parallel, without locking anyone out.
//!
//! The flow (docs/deploy.md has the details and the exact remote commands):
//! 1. preflight, before any host is touched: the rendered tree is up to date, every selected
//!    host's ruleset passes `nft -c`, Nix evaluates its module to exactly that ruleset, and
//!    the tools are on PATH;
//!    and every secret the selected hosts read is encrypted to its recipients (`iac secrets
//!    check`); the secrets pushed to hosts without a host key are decrypted, here, once;
//! 2. per host (up to `--jobs` at once): SSH reachable, its host key the declared one, the
//!    directories of its secrets safe, and its new flows admitting SSH from where it sees this
//!    machine (`lockout`; one connection), `nix build` (here or on
//!    `--build-host`), its pushed secrets written over SSH, compare with
//!    `/run/current-system` and skip when equal, copy the closure, start the guard under
//!    `systemd-run` on the target, wait for it to activate the new system
//!    (`switch-to-configuration test`), confirm over a new SSH connection, after which the
//!    target makes it the boot default; an unconfirmed switch is rolled back by the target
//!    itself, and a reboot before the confirmation boots the previous system; once confirmed
//!    (or up to date), remove the secret files iac pushed earlier that the host no longer reads;
//! 3. a summary table, and an exit code that says whether every host made it.
//!
//! `plan` builds every command (pure); `remote` and `push` are the scripts that run on a host;
//! `host` runs one host's sequence; `progress` is what a
//! run shows (a [`progress::View`] the command layer implements) and the summary table. The
//! command layer (`iac deploy`) loads the inventory, calls [`prepare`], then prints
//! [`Prepared::dry_run`] or calls [`Prepared::run`], and turns the [`Verdict`] into the exit
//! code.

mod host;
pub mod lockout;
pub mod plan;
mod preflight;
pub mod progress;
mod push;
pub mod remote;
pub mod store_path;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::{Delivery, Host, Site, Targets, UnknownHost};
use crate::nix_eval::NixEvalError;
use crate::secrets;

pub use host::{Action, HostResult, Outcome, Values};
use plan::{Plan, Tools};
use store_path::StorePath;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    UnknownHost(#[from] UnknownHost),
    #[error("`{tool}` not found on PATH: {hint}")]
    ToolMissing { tool: &'static str, hint: &'static str },
    #[error("--flake takes a flake without `#attr` (iac appends `#<host>`): {0}")]
    FlakeAttr(String),
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
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
    #[error(transparent)]
    Render(#[from] crate::render::Error),
    #[error(transparent)]
    Output(#[from] crate::output::Error),
    #[error(transparent)]
    NixEval(#[from] NixEvalError),
    #[error(transparent)]
    Secrets(#[from] secrets::Error),
}

/// What `iac deploy` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub targets: Targets,
    /// The flake, as [`resolve_flake`] returned it; iac appends `#<host>`.
    pub flake: String,
    /// The rendered tree that must be up to date.
    pub out: PathBuf,
    /// Build there instead of here (as `nixos-rebuild --build-host`).
    pub build_host: Option<String>,
    /// Let targets fetch what they can from their own substituters.
    pub substitutes: bool,
    /// Hosts deployed at the same time.
    pub jobs: usize,
    /// Check and print the commands; touch nothing and need no tool.
    pub dry_run: bool,
    /// The confirmation guard: an unconfirmed switch rolls back.
    pub rollback: bool,
    pub confirm_timeout: Duration,
    pub connect_timeout: Duration,
    /// The repository's encrypted secrets (`secrets/`).
    pub secrets_dir: PathBuf,
    /// The admin identity that decrypts the pushed secrets (default: see `secrets::keys`).
    pub identity: Option<PathBuf>,
    /// Deploy a host whose new firewall would not admit this machine's SSH (`lockout`), with a
    /// warning, instead of stopping it in the preflight.
    pub allow_lockout: bool,
}

/// How a whole deploy ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every host runs its new system (or already did).
    Ok,
    /// At least one host failed before or during its switch, and none rolled back.
    Failed,
    /// At least one host was (or may have been) rolled back.
    RolledBack,
}

/// What the preflight proved, before any host was touched.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// Files of the rendered tree, which is up to date.
    pub files: usize,
    /// The `nft -c` commands that accepted each ruleset; None when a dry run could not run them.
    pub rulesets: Option<Vec<plan::Cmd>>,
    /// Host modules Nix evaluated to exactly those rulesets; None when a dry run could not.
    pub nixos: Option<usize>,
    /// The secret files the selected hosts read (all encrypted to their recipients).
    pub secrets: usize,
    /// The identity that decrypted the pushed secrets; None when none are pushed, or a dry run
    /// found no identity.
    pub decrypted_with: Option<PathBuf>,
}

/// A deploy that passed its preflight: nothing has touched a host yet.
pub struct Prepared<'s> {
    plan: Plan,
    site: &'s Site,
    hosts: Vec<&'s Host>,
    out: PathBuf,
    jobs: usize,
    values: Values,
    lockout: lockout::Check,
    pub preflight: Preflight,
}

/// Select the hosts, find the tools, and run the preflight (docs/deploy.md): the rendered
/// tree is up to date, `nft -c` accepts every selected ruleset and Nix evaluates each host
/// module to exactly it. A dry run runs no tool it lacks: `nft -c` only where nft and unshare
/// are installed, the Nix evaluation only where nix-instantiate is.
pub fn prepare<'s>(site: &'s Site, opts: &Options) -> Result<Prepared<'s>, DeployError> {
    let hosts = site.select(&opts.targets)?;
    let plan = Plan {
        tools: locate(opts.dry_run)?,
        flake: opts.flake.clone(),
        build_host: opts.build_host.clone(),
        connect_timeout: opts.connect_timeout,
        confirm_timeout: opts.confirm_timeout,
        rollback: opts.rollback,
        substitutes: opts.substitutes,
        run_id: run_id(),
        local_root: rustix::process::geteuid().is_root(),
    };
    // Preflight: nothing below touches a host unless all of this passes.
    let files = preflight::rendered_tree(site, &opts.out)?;
    let (secret_count, values, decrypted_with) = preflight::secrets(site, &hosts, opts)?;
    let preflight = if opts.dry_run {
        let rulesets = if plan.tools.nft.is_absolute() && plan.tools.unshare.is_absolute() {
            Some(preflight::rulesets(&plan, &opts.out, &hosts)?)
        } else {
            None
        };
        let nixos = match crate::nix_eval::locate() {
            Ok(_) => Some(preflight::nixos_tables(&opts.out, &hosts)?),
            Err(_) => None,
        };
        Preflight { files, rulesets, nixos, secrets: secret_count, decrypted_with }
    } else {
        let rulesets = preflight::rulesets(&plan, &opts.out, &hosts)?;
        let nixos = preflight::nixos_tables(&opts.out, &hosts)?;
        Preflight { files, rulesets: Some(rulesets), nixos: Some(nixos), secrets: secret_count, decrypted_with }
    };
    let lockout = lockout::Check { flows: crate::policy::flows(site), allow: opts.allow_lockout };
    Ok(Prepared { plan, site, hosts, out: opts.out.clone(), jobs: opts.jobs, values, lockout, preflight })
}

impl Prepared<'_> {
    /// The selected hosts' names, in deploy order.
    pub fn host_names(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    /// One line for people: what the preflight proved.
    pub fn preflight_line(&self) -> String {
        format!(
            "preflight: {} is up to date ({} files); `nft -c` accepts {} ruleset(s); Nix evaluates {} host module(s) to exactly those rulesets; {} secret file(s) encrypted to their recipients",
            self.out.display(),
            self.preflight.files,
            self.preflight.rulesets.as_ref().map_or(0, Vec::len),
            self.preflight.nixos.unwrap_or(0),
            self.preflight.secrets,
        )
    }

    /// Deploy every selected host, `jobs` at a time, showing each step on `view`; the
    /// outcomes in the order of [`Prepared::host_names`]. A host's failure is its outcome.
    pub fn run(&self, view: &dyn progress::View) -> Vec<Outcome> {
        host::run_all(&self.plan, self.site, &self.hosts, self.jobs, &self.values, &self.lockout, view)
    }

    /// Every command a real run would execute, in order, per host, after what the preflight
    /// ran; the built and the running system appear as `$NEW` and `$PREV`.
    pub fn dry_run(&self) -> Result<String, DeployError> {
        dry_run(&self.plan, self.site, &self.out, &self.preflight, &self.hosts, self.lockout.allow)
    }
}

/// How the deploy ended: rolled back wins over failed, which wins over ok.
pub fn verdict(outcomes: &[Outcome]) -> Verdict {
    use host::HostResult::{Failed, Ok, RolledBack, Unconfirmed};
    if outcomes.iter().any(|o| matches!(o.result, RolledBack(_) | Unconfirmed(_))) {
        Verdict::RolledBack
    } else if outcomes.iter().any(|o| matches!(o.result, Failed(_))) {
        Verdict::Failed
    } else {
        debug_assert!(outcomes.iter().all(|o| matches!(o.result, Ok(_))));
        Verdict::Ok
    }
}

/// A local directory becomes an absolute path (builds run in scratch directories) and the
/// base of the default inventory and output paths; anything else is a flake URL, passed on.
pub fn resolve_flake(flake: &str) -> Result<(String, Option<PathBuf>), DeployError> {
    if flake.contains('#') {
        return Err(DeployError::FlakeAttr(flake.to_string()));
    }
    let path = Path::new(flake);
    if path.is_dir() {
        let abs = std::fs::canonicalize(path).map_err(|source| DeployError::Read { path: path.to_path_buf(), source })?;
        return Ok((abs.to_string_lossy().into_owned(), Some(abs)));
    }
    Ok((flake.to_string(), None))
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
    preflight: &Preflight,
    hosts: &[&Host],
    allow_lockout: bool,
) -> Result<String, DeployError> {
    let Preflight { files, rulesets: checks, nixos, secrets, decrypted_with } = preflight;
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
    s.push_str(&format!("# {secrets} secret file(s) of these hosts are encrypted to their recipients (iac secrets check)\n"));
    let pushes = hosts.iter().any(|h| site.secret_files(h).iter().any(|f| f.delivery == Delivery::Push));
    match decrypted_with {
        Some(id) => s.push_str(&format!("# the pushed secrets decrypt with {} (decrypted, then discarded)\n", id.display())),
        None if pushes => s.push_str("# not run: decrypting the pushed secrets (no identity found: --identity FILE)\n"),
        None => {}
    }
    s.push_str(if allow_lockout {
        "# not run: whether each host's new firewall admits SSH from where the host sees this machine ($SSH_CONNECTION); \
         the preflight on the host reports it at deploy time, and with --allow-lockout a host it would lock out gets a warning\n"
    } else {
        "# not run: whether each host's new firewall admits SSH from where the host sees this machine ($SSH_CONNECTION); \
         the preflight on the host reports it at deploy time, and a host it would lock out stops there\n"
    });
    s.push_str(
        "\n# Commands per host, in order. An ssh command's remote part is shown as the command line the\n\
         # remote shell receives; each <script> is one of the on-target scripts at the end.\n",
    );
    for host in hosts {
        let files = site.secret_files(host);
        let mut dirs: Vec<&str> = Vec::new();
        for f in &files {
            let d = f.path.rsplit_once('/').map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        s.push_str(&format!("\n# {} ({}@{}:{})\n", host.name, host.ssh_user, host.address, host.ssh_port));
        for f in &files {
            let how = match f.delivery {
                Delivery::Activation => format!("decrypted at activation by {}.service with the host key", crate::render::secrets::UNIT),
                Delivery::Push => "written over SSH below, before the switch".to_string(),
            };
            s.push_str(&format!(
                "# secret {} -> {} ({}:{} {:04o}), read by {}: {how}\n",
                f.secret, f.path, f.owner, f.group, f.mode, f.why
            ));
        }
        s.push_str(&format!(
            "{}    # reachable, its host key, the secrets' directories, and $SSH_CONNECTION for the firewall check\n",
            plan.preflight(host, &dirs)?.show()
        ));
        match &plan.build_host {
            None => s.push_str(&format!("{}    # NEW=its output\n", plan.build(host).show())),
            Some(b) => {
                s.push_str(&format!("{}    # DRV=its output\n", plan.eval_drv(host).show()));
                s.push_str(&format!("{}\n", vars(plan.copy_drv(b, &drv).show())));
                s.push_str(&format!("{}    # NEW=its output\n", vars(plan.build_remote(b, &drv)?.show())));
            }
        }
        let pushed: Vec<plan::PushedFile> = files
            .iter()
            .filter(|f| f.delivery == Delivery::Push)
            .map(|f| plan::PushedFile { path: f.path.clone(), owner: f.owner.clone(), group: f.group.clone(), mode: f.mode, len: 0 })
            .collect();
        if !pushed.is_empty() {
            let shown = plan.push_secrets(host, &pushed)?.show();
            let names: Vec<&str> = files.iter().filter(|f| f.delivery == Delivery::Push).map(|f| f.secret.as_str()).collect();
            s.push_str(&format!(
                "{shown}    # the values of {} on stdin (their lengths, shown as 0, are known once decrypted)\n",
                names.join(", ")
            ));
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
        let pushed_paths: Vec<&str> = pushed.iter().map(|f| f.path.as_str()).collect();
        let kept: Vec<&str> = files.iter().filter(|f| f.delivery != Delivery::Push).map(|f| f.path.as_str()).collect();
        s.push_str(&format!(
            "{}    # once confirmed (or up to date): remove the files {} lists that the host no longer reads\n",
            plan.prune_secrets(host, &pushed_paths, &kept)?.show(),
            remote::PUSHED_RECORD
        ));
    }
    for (name, script) in [
        ("iac-preflight", remote::PREFLIGHT),
        ("iac-push-secrets", remote::PUSH),
        ("iac-activate", remote::GUARD),
        ("iac-wait", remote::WAIT),
        ("iac-confirm", remote::CONFIRM),
        ("iac-prune-secrets", remote::PRUNE),
    ] {
        s.push_str(&format!("\n# <script> of `sh -c <script> {name} ...`:\n{script}"));
    }
    Ok(s)
}
