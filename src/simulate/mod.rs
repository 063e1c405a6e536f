//! `iac simulate`: prove the rendered rulesets in Linux network namespaces before they ship.
//!
//! The estate is rebuilt from the inventory (`topology`): a namespace per host on a LAN
//! bridge, a pod behind each k3s node, a real VXLAN overlay, stand-ins for kube-proxy and
//! flannel, the upstream resolver behind a router, an admin workstation and an untrusted host.
//! Each host gets its rendered ruleset with `nft -f`; then every declared flow is probed with
//! real traffic and must pass, the untrusted host's probes must be refused (`probes`), every
//! ruleset is reloaded and must leave the same listing and the stand-in tables in place, and a
//! table says what happened (`report`). All of it runs inside a private sandbox (`netns`).
//! Which probes to send and what each must do is `probes` (asking `policy::verdict`); `traffic`
//! sends them and `packet` crafts the forged VXLAN frame. Progress and the report go to a
//! [`Reporter`].

pub mod netns;
pub mod packet;
pub mod probes;
pub mod report;
pub mod topology;
pub mod traffic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::inventory::LoadError;
use crate::nix_eval::NixEvalError;
use crate::render::nft::TABLE;
use crate::reporter::{self, Reporter};

use netns::{Guard, Netns};
use report::{Report, RulesetCheck, Timings};

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("cannot set up the sandbox: {0}")]
    Sandbox(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("`{what}` failed: {stderr}")]
    Command { what: String, stderr: String },
    #[error("this inventory cannot be simulated: {0}")]
    Unsupported(String),
    #[error("--ruleset {0}: expected HOST=FILE with a host of the inventory")]
    BadOverride(String),
}

/// Why `iac simulate` could not run (a mismatch of the firewalls is not an error: it is the
/// outcome, exit 1).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Render(#[from] crate::render::Error),
    #[error(transparent)]
    NixEval(#[from] NixEvalError),
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("simulate: {0}")]
    Simulate(#[from] SimulateError),
}

/// What `iac simulate` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub inventory: PathBuf,
    /// Where to write the report, the loaded rulesets and their listings.
    pub out: Option<PathBuf>,
    /// `HOST=FILE`: load FILE on HOST instead of its rendered ruleset.
    pub rulesets: Vec<String>,
    pub timeout: Duration,
    /// Load the text NixOS builds from each host module, evaluated by `nix-instantiate`
    /// (`nix_eval`), after checking that it equals the standalone script. Off: load the
    /// standalone scripts as they are (`--skip-nix-eval`).
    pub nix_eval: bool,
}

/// Run the simulation: true when everything behaved as declared (exit 0), false on any
/// mismatch (exit 1). The first call re-executes the process inside the sandbox and returns
/// only on failure. `report` must outlive the process: the signal watcher reports from its own
/// thread before it ends the process.
pub fn run(opts: &Options, report: &'static dyn Reporter) -> Result<bool, Error> {
    if !netns::inside_sandbox() {
        // Replaces this process on success.
        return Err(netns::enter_sandbox().into());
    }
    netns::verify_sandbox()?;
    if let Some(out) = &opts.out {
        // /run is replaced by a private tmpfs below: a report written there would vanish.
        let abs = std::path::absolute(out).map_err(|source| SimulateError::Io { what: format!("resolving {}", out.display()), source })?;
        if abs.starts_with("/run") {
            return Err(SimulateError::Sandbox(format!("--out {} is under /run, which the sandbox replaces", abs.display())).into());
        }
    }
    netns::private_run()?;
    let guard = Guard::default();
    guard.watch_signals(report)?;
    let result = simulate(opts, &guard, report);
    if result.is_err() && !guard.interrupted() {
        // A terminal's Ctrl-C reaches our children too: give the watcher the moment it needs
        // to record the signal before an error it caused is taken for the outcome.
        std::thread::sleep(Duration::from_millis(200));
    }
    if guard.interrupted() {
        // The signal watcher is cleaning up and ends the process with 130/143; an error the
        // interruption caused here (a killed `ip`) is not the outcome.
        loop {
            std::thread::park();
        }
    }
    let deleted = guard.cleanup();
    report.progress(&format!("simulate: deleted {deleted} namespaces"));
    result
}

fn simulate(opts: &Options, guard: &Guard, say: &dyn Reporter) -> Result<bool, Error> {
    let start = Instant::now();
    let site = crate::load_site(&opts.inventory)?;
    let tree = crate::render::render(&site)?;
    let flows = crate::render::flows(&site);
    let dir = tempfile::Builder::new()
        .prefix("iac-simulate-")
        .tempdir()
        .map_err(|source| SimulateError::Io { what: "creating a temporary directory".into(), source })?;
    guard.remove_on_exit(dir.path());
    let mut rulesets = rulesets(&site, &tree, &opts.rulesets)?;
    if opts.nix_eval {
        let t0 = Instant::now();
        let evaluated = nixos_rulesets(&site, &tree, &opts.rulesets, dir.path())?;
        say.progress(&format!(
            "simulate: loading the text NixOS builds from {} host modules (evaluated by nix-instantiate in {} ms, equal to nftables.nft)",
            evaluated.len(),
            t0.elapsed().as_millis()
        ));
        rulesets.extend(evaluated);
    } else {
        say.progress("simulate: --skip-nix-eval: loading the standalone nftables.nft files; the text NixOS loads is not proven");
    }

    let prefix = format!("iacsim-{}", std::process::id());
    let topo = topology::plan(&site, &flows, &prefix)?;
    say.progress(&format!("simulate: building the topology: {} namespaces", topo.namespace_count()));
    let t0 = Instant::now();
    topology::build(&topo, guard)?;
    let build = t0.elapsed();
    say.progress(&format!("simulate: topology up: {} namespaces in {} ms", topo.namespace_count(), build.as_millis()));

    let t0 = Instant::now();
    let mut checks = Vec::new();
    let mut listings = BTreeMap::new();
    for (host, text) in &rulesets {
        let ns = host_ns(&topo, host)?;
        let file = dir.path().join(format!("{host}.nft"));
        std::fs::write(&file, text).map_err(|source| SimulateError::Io { what: format!("writing {}", file.display()), source })?;
        let load_error = nft_load(&ns, &file).err();
        if load_error.is_none() {
            listings.insert(host.clone(), list_table(&ns).unwrap_or_default());
        }
        checks.push((host.clone(), ns, file, load_error));
    }
    let load = t0.elapsed();

    let t0 = Instant::now();
    let eps = probes::endpoints(&topo, &flows);
    let receipts = traffic::start_listeners(&topo, &eps)?;
    let plan = probes::plan(&site, &flows, &topo);
    let outcomes = traffic::run(&topo, &plan, &receipts, opts.timeout);
    let probe_time = t0.elapsed();

    let t0 = Instant::now();
    let mut results = Vec::new();
    for (host, ns, file, load_error) in checks {
        let reload_error = nft_load(&ns, &file).err();
        let after = list_table(&ns).unwrap_or_default();
        let listing_identical = load_error.is_none() && reload_error.is_none() && listings.get(&host) == Some(&after);
        let is_node = topo.nodes.iter().any(|n| n.host == host);
        let standins_missing = if is_node && topo.cluster.is_some() {
            topology::STANDIN_TABLES.iter().filter(|tb| !table_exists(&ns, tb)).map(|tb| tb.to_string()).collect()
        } else {
            Vec::new()
        };
        results.push(RulesetCheck {
            host: host.clone(),
            load_error: load_error.map(|e| e.to_string()),
            reload_error: reload_error.map(|e| e.to_string()),
            listing_identical,
            standins_missing,
        });
        listings.insert(format!("{host}.after"), after);
    }
    let reload = t0.elapsed();

    let unprobed = probes::unprobed(&flows, &plan)
        .into_iter()
        .map(|f| format!("{} {:?} {} from @{}: {}", f.host, f.chain, f.name, f.from.name, f.why))
        .collect();
    let report = Report {
        topology: &topo,
        probes: &plan,
        outcomes: &outcomes,
        rulesets: &results,
        unprobed,
        timings: Timings { build, load, probes: probe_time, reload, total: start.elapsed() },
    };
    let text = report.render();
    reporter::result_text(say, &text);
    if let Some(out) = &opts.out {
        write_out(out, &text, &rulesets, &listings)?;
    }
    Ok(report.ok())
}

/// What NixOS loads on each host without a `--ruleset` override: the host modules of `tree` are
/// written to `dir` and evaluated by Nix (`nix_eval`); each result must equal the table of the
/// standalone script, and is loaded after the script's own prelude (declare, delete), as
/// NixOS runs its deletions script before the rules.
fn nixos_rulesets(
    site: &crate::model::Site,
    tree: &crate::render::Tree,
    overrides: &[String],
    dir: &Path,
) -> Result<BTreeMap<String, String>, Error> {
    let overridden: Vec<&str> = overrides.iter().filter_map(|o| o.split_once('=').map(|(h, _)| h)).collect();
    let hosts: Vec<&str> = site.hosts.iter().map(|h| h.name.as_str()).filter(|h| !overridden.contains(h)).collect();
    for host in &hosts {
        let rel = PathBuf::from(host).join("default.nix");
        let text = tree.get(&rel).map_or("", String::as_str);
        let path = dir.join(&rel);
        std::fs::create_dir_all(dir.join(host)).map_err(|source| Error::Write { path: dir.join(host), source })?;
        std::fs::write(&path, text).map_err(|source| Error::Write { path: path.clone(), source })?;
    }
    let nix = crate::nix_eval::locate()?;
    // Nix's home inside the run's directory, which an interrupt removes too.
    let home = dir.join("nix-home");
    std::fs::create_dir_all(&home).map_err(|source| Error::Write { path: home.clone(), source })?;
    let loaded = crate::nix_eval::loaded_tables_with_home(&nix, dir, &hosts, &home)?;
    let mut out = BTreeMap::new();
    for host in hosts {
        let standalone = tree.get(&PathBuf::from(host).join("nftables.nft")).map_or("", String::as_str);
        let evaluated = loaded.get(host).map_or("", String::as_str);
        crate::nix_eval::compare(host, Path::new("generated"), standalone, evaluated)?;
        let prelude = &standalone[..standalone.len() - evaluated.len()];
        out.insert(host.to_string(), format!("{prelude}{evaluated}"));
    }
    Ok(out)
}

/// Each host's ruleset: the rendered `<host>/nftables.nft`, unless `--ruleset HOST=FILE`.
fn rulesets(site: &crate::model::Site, tree: &crate::render::Tree, overrides: &[String]) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for h in &site.hosts {
        let path = PathBuf::from(&h.name).join("nftables.nft");
        if let Some(text) = tree.get(&path) {
            out.insert(h.name.clone(), text.clone());
        }
    }
    for o in overrides {
        let Some((host, file)) = o.split_once('=') else { return Err(SimulateError::BadOverride(o.clone()).into()) };
        if !out.contains_key(host) {
            return Err(SimulateError::BadOverride(o.clone()).into());
        }
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read { path: PathBuf::from(file), source })?;
        out.insert(host.to_string(), text);
    }
    Ok(out)
}

fn host_ns(t: &topology::Topology, host: &str) -> Result<Netns, SimulateError> {
    t.host_member(host).map(|m| m.ns.clone()).ok_or_else(|| SimulateError::Unsupported(format!("no namespace for host {host}")))
}

fn nft_load(ns: &Netns, file: &Path) -> Result<String, SimulateError> {
    let f = file.display().to_string();
    ns.exec("nft", &["-f", &f], None)
}

fn list_table(ns: &Netns) -> Result<String, SimulateError> {
    ns.exec("nft", &["list", "table", "inet", TABLE], None)
}

fn table_exists(ns: &Netns, table: &str) -> bool {
    let mut args = vec!["list", "table"];
    args.extend(table.split(' '));
    ns.exec("nft", &args, None).is_ok()
}

fn write_out(out: &Path, report: &str, rulesets: &BTreeMap<String, String>, listings: &BTreeMap<String, String>) -> Result<(), Error> {
    let w = |p: PathBuf, text: &str| std::fs::write(&p, text).map_err(|source| Error::Write { path: p.clone(), source });
    std::fs::create_dir_all(out).map_err(|source| Error::Write { path: out.to_path_buf(), source })?;
    w(out.join("report.txt"), report)?;
    for (host, text) in rulesets {
        w(out.join(format!("{host}.nft")), text)?;
    }
    for (name, text) in listings {
        w(out.join(format!("{name}.listing")), text)?;
    }
    Ok(())
}
