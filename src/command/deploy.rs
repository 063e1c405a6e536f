//! `iac deploy`: build NixOS hosts and switch them, in parallel, without locking anyone out
//! (`iac::deploy` does the work; docs/deploy.md). Here: the arguments, the per-host view on
//! the terminal, the summary and the exit code (3 when a host rolled back).

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use iac::deploy::progress::{self, View};
use iac::deploy::{self as lib, Outcome, Verdict};
use iac::load_site;
use iac::model::Targets;
use iac::reporter::Reporter;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Error;
use super::common::{DEFAULT_INVENTORY, DEFAULT_OUT};
use super::terminal::{TERMINAL, out};

/// Exit code when at least one host was (or may have been) rolled back.
pub const EXIT_ROLLED_BACK: u8 = 3;

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("targets").required(true).args(["hosts", "all"]))]
pub struct DeployArgs {
    /// Hosts to deploy (names from the inventory).
    pub hosts: Vec<String>,
    /// Deploy every host of the inventory.
    #[arg(long)]
    pub all: bool,
    /// The flake that defines `nixosConfigurations.<host>`; iac appends `#<host>`.
    #[arg(long, default_value = ".")]
    pub flake: String,
    /// The inventory file [default: FLAKE/hosts/inventory.toml when FLAKE is a directory].
    #[arg(long, env = "IAC_INVENTORY")]
    pub inventory: Option<PathBuf>,
    /// The rendered tree that must be up to date [default: FLAKE/generated].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Build on this host instead of locally (as `nixos-rebuild --build-host`); the result is
    /// copied from there straight to each target.
    #[arg(long, value_name = "[USER@]HOST")]
    pub build_host: Option<String>,
    /// Copy every store path to the targets (and the build host) instead of letting them fetch
    /// what they can from their own substituters (`nix copy --substitute-on-destination`, the
    /// default, as `nixos-rebuild --use-substitutes`).
    #[arg(long)]
    pub no_substitutes: bool,
    /// Hosts deployed at the same time.
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Print every command a deploy would run and change nothing: runs no tool and needs none
    /// (the render check runs, and `nft -c` when nft and unshare are installed).
    #[arg(long)]
    pub dry_run: bool,
    /// Switch without the confirmation guard: no automatic rollback.
    #[arg(long)]
    pub no_rollback: bool,
    /// Seconds the target waits for the confirmation before it rolls back.
    #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub confirm_timeout: u64,
    /// SSH connect timeout in seconds.
    #[arg(long, default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,
    /// The encrypted secrets [default: FLAKE/secrets when FLAKE is a directory].
    #[arg(long)]
    pub secrets_dir: Option<PathBuf>,
    /// The admin identity that decrypts the secrets pushed to hosts without a host key: an age
    /// key file or an unencrypted OpenSSH ed25519 key [default: ~/.config/iac/age.key, else
    /// ~/.ssh/id_ed25519].
    #[arg(long, short = 'i', env = "IAC_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// Deploy a host even when its new firewall would not admit SSH from where the host sees
    /// this machine (its `$SSH_CONNECTION`), with a warning; the rollback guard then undoes the
    /// switch. Without it such a host stops in the preflight, before anything is built.
    #[arg(long)]
    pub allow_lockout: bool,
}

pub fn run(args: &DeployArgs) -> Result<ExitCode, Error> {
    let (flake, flake_dir) = lib::resolve_flake(&args.flake)?;
    let base = flake_dir.as_deref().unwrap_or(Path::new(""));
    let inventory = args.inventory.clone().unwrap_or_else(|| base.join(DEFAULT_INVENTORY));
    let site = load_site(&inventory)?;
    let opts = lib::Options {
        targets: if args.all { Targets::All } else { Targets::Named(args.hosts.clone()) },
        flake,
        out: args.out.clone().unwrap_or_else(|| base.join(DEFAULT_OUT)),
        build_host: args.build_host.clone(),
        substitutes: !args.no_substitutes,
        jobs: usize::from(args.jobs),
        dry_run: args.dry_run,
        rollback: !args.no_rollback,
        confirm_timeout: Duration::from_secs(args.confirm_timeout),
        connect_timeout: Duration::from_secs(args.connect_timeout),
        secrets_dir: args.secrets_dir.clone().unwrap_or_else(|| base.join(iac::secrets::DEFAULT_DIR)),
        identity: args.identity.clone(),
        allow_lockout: args.allow_lockout,
    };
    let prepared = lib::prepare(&site, &opts)?;
    if args.dry_run {
        out(&prepared.dry_run()?);
        return Ok(ExitCode::SUCCESS);
    }
    TERMINAL.progress(&prepared.preflight_line());
    let names = prepared.host_names();
    let outcomes = prepared.run(&HostsView::new(&names));
    out(&progress::summary(&names, &outcomes));
    Ok(match lib::verdict(&outcomes) {
        Verdict::Ok => ExitCode::SUCCESS,
        Verdict::Failed => ExitCode::FAILURE,
        Verdict::RolledBack => ExitCode::from(EXIT_ROLLED_BACK),
    })
}

/// Per-host progress on stderr. On a terminal each host gets a live line (indicatif);
/// otherwise (CI logs, pipes) every step is one plain `host: step` line, so a log reads in
/// order.
enum HostsView {
    /// The bars share their MultiProgress state; the handle itself need not be kept. The
    /// style replaces the spinner and clock once a host is done.
    Live(Vec<ProgressBar>, ProgressStyle, RefCell<Vec<String>>),
    Plain(Vec<String>),
}

impl HostsView {
    fn new(names: &[&str]) -> Self {
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
        if std::io::stderr().is_terminal() {
            let running = ProgressStyle::with_template(&format!("{{spinner}} {{prefix:{width}}}  {{wide_msg}} {{elapsed:>4}}"));
            let finished = ProgressStyle::with_template(&format!("  {{prefix:{width}}}  {{wide_msg}}"));
            if let (Ok(style), Ok(finished)) = (running, finished) {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                let bars = names
                    .iter()
                    .map(|n| {
                        let bar = multi.add(ProgressBar::new_spinner().with_style(style.clone()).with_prefix(n.to_string()));
                        bar.set_message("waiting");
                        bar.enable_steady_tick(Duration::from_millis(120));
                        bar
                    })
                    .collect();
                let steps = RefCell::new(vec![String::new(); names.len()]);
                return Self::Live(bars, finished, steps);
            }
        }
        Self::Plain(names.iter().map(|n| format!("{n:width$}")).collect())
    }
}

impl View for HostsView {
    fn step(&self, i: usize, message: &str) {
        match self {
            Self::Live(bars, _, steps) => {
                if let Some(bar) = bars.get(i) {
                    bar.set_message(message.to_string());
                }
                if let Some(step) = steps.borrow_mut().get_mut(i) {
                    *step = message.to_string();
                }
            }
            Self::Plain(names) => TERMINAL.progress(&format!("{}  {message}", names.get(i).map_or("?", String::as_str))),
        }
    }

    fn note(&self, i: usize, note: &str) {
        if let Self::Live(bars, _, steps) = self
            && let (Some(bar), Some(step)) = (bars.get(i), steps.borrow().get(i))
        {
            bar.set_message(format!("{step}: {note}"));
        }
    }

    fn done(&self, i: usize, outcome: &Outcome) {
        let line = progress::done_line(outcome);
        match self {
            Self::Live(bars, finished, _) => {
                if let Some(bar) = bars.get(i) {
                    bar.set_style(finished.clone());
                    bar.finish_with_message(line);
                }
            }
            Self::Plain(names) => TERMINAL.progress(&format!("{}  {line}", names.get(i).map_or("?", String::as_str))),
        }
    }
}
