//! Renderers: pure functions from the validated site (and its flows) to file contents.
//! `render` assembles the whole output tree in memory; `output` writes it.

pub mod filters;
pub mod k8s;
pub mod marker;
pub mod nft;
pub mod nixos;
pub mod postgres;

use std::collections::BTreeMap;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::model::{Host, Role, Site};
use crate::policy::{self, Flows};

/// Relative path → file content; the complete output of one render.
pub type Tree = BTreeMap<PathBuf, String>;

pub use marker::MARKER;

/// Why a render failed: the validated model still held something a target language cannot
/// carry, or a renderer produced text its consumer would reject. Nothing is written then.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rendering {file} failed: {message}")]
    Render { file: String, message: String },
    #[error(transparent)]
    K8s(#[from] k8s::K8sError),
}

/// Render every file of the estate. Hosts are independent, so they render (and their Nix is
/// parsed) in parallel.
pub fn render(site: &Site) -> Result<Tree, Error> {
    let flows = policy::flows(site);
    let per_host: Vec<Vec<(PathBuf, String)>> =
        site.hosts.par_iter().map(|host| host_files(site, &flows, host)).collect::<Result<_, _>>()?;
    let mut tree: Tree = per_host.into_iter().flatten().collect();
    if let Some(pipeline) = &site.pipeline {
        tree.extend(k8s::render(site, pipeline)?);
    }
    let marker = marker::text(&site.name, tree.keys().map(PathBuf::as_path));
    tree.insert(PathBuf::from(MARKER), marker);
    check_nix_syntax(&tree)?;
    Ok(tree)
}

fn host_files(site: &Site, flows: &Flows, host: &Host) -> Result<Vec<(PathBuf, String)>, Error> {
    let dir = PathBuf::from(&host.name);
    let table = nft::table_content(flows, host)?;
    let mut files = vec![
        (dir.join("nftables.nft"), nft::standalone(host, &table)?),
        (dir.join("default.nix"), nixos::host_module(site, host, &table)?),
    ];
    if host.has(Role::Postgresql) {
        files.push((dir.join("postgresql.nix"), postgres::module(site, flows, host)?));
    }
    Ok(files)
}

/// The flows, for commands that show them (`iac flows`) and for tests.
pub fn flows(site: &Site) -> Flows {
    policy::flows(site)
}

/// Every rendered `.nix` file must parse with a real Nix parser (rnix) before anything is
/// written: a renderer bug must never reach `nixos-rebuild`.
fn check_nix_syntax(tree: &Tree) -> Result<(), Error> {
    let nix: Vec<(&PathBuf, &String)> = tree.iter().filter(|(p, _)| p.extension().is_some_and(|e| e == "nix")).collect();
    nix.par_iter().try_for_each(|(path, text)| {
        let parsed = rnix::Root::parse(text);
        match parsed.errors().first() {
            Some(err) => Err(Error::Render { file: path.display().to_string(), message: format!("generated Nix does not parse: {err}") }),
            None => Ok(()),
        }
    })
}

pub(crate) fn template_error(file: &str, e: askama::Error) -> Error {
    Error::Render { file: file.to_string(), message: e.to_string() }
}

pub(crate) fn role_names(host: &crate::model::Host) -> String {
    let names: Vec<&str> = host
        .roles
        .iter()
        .map(|r| match r {
            Role::K3sServer => "k3s-server",
            Role::K3sAgent => "k3s-agent",
            Role::Postgresql => "postgresql",
        })
        .collect();
    if names.is_empty() { "none".into() } else { names.join(", ") }
}
