//! The text NixOS loads, evaluated by the real Nix evaluator (an edge: it runs
//! `nix-instantiate`).
//!
//! Every check of a firewall (`nft -c`, `iac simulate`, the tests) reads a standalone
//! `nftables.nft`; NixOS builds its ruleset from the module's
//! `networking.nftables.tables.<name>.content`. The two are one source only if Nix's reading of
//! the module equals the standalone text byte for byte, and only Nix can say what it reads
//! (issue 13: an escaping slip made them differ while every check passed). This module
//! evaluates each host module with a stub `lib` (the modules only use `mkDefault`/`mkAfter`)
//! and wraps each table exactly as nixpkgs' nftables module does, so the result is the text of
//! NixOS's rules script.
//!
//! One process evaluates every host at once. `--store dummy://` keeps the evaluation off any
//! store and database, so it also works unprivileged and inside `iac simulate`'s sandbox.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::escape;
use crate::render::nft;

/// The program, looked up on PATH.
pub const PROGRAM: &str = "nix-instantiate";

#[derive(Debug, thiserror::Error)]
pub enum NixEvalError {
    #[error(
        "`{PROGRAM}` is not on PATH: it evaluates the NixOS modules to prove that NixOS loads the checked firewall \
         (Debian: apt-get install nix-bin; or install Nix)"
    )]
    Missing,
    #[error("cannot run {PROGRAM}: {0}")]
    Spawn(std::io::Error),
    #[error("{PROGRAM} failed to evaluate the host modules:\n{0}")]
    Eval(String),
    #[error("{PROGRAM} printed something other than a JSON object of strings: {0}")]
    Output(String),
    #[error("path {0} cannot be written in a Nix expression: {1}")]
    Path(PathBuf, escape::Refused),
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} does not have iac's shape (no `delete table` line before the table)", path.display())]
    Shape { path: PathBuf },
    #[error(
        "host {host}: the nftables text NixOS builds from {module} differs from the table in {standalone}, which is the \
         one every check reads:\n{diff}"
    )]
    Mismatch { host: String, module: String, standalone: String, diff: String },
}

/// `nix-instantiate` on PATH.
pub fn locate() -> Result<PathBuf, NixEvalError> {
    which::which(PROGRAM).map_err(|_| NixEvalError::Missing)
}

/// For each host, the text NixOS's nftables module writes into its rules script from
/// `DIR/HOST/default.nix`: every table of the module, wrapped as nixpkgs wraps it. One
/// evaluation for all hosts.
pub fn loaded_tables(nix: &Path, dir: &Path, hosts: &[&str]) -> Result<BTreeMap<String, String>, NixEvalError> {
    // A home of its own: Nix looks at ~/.nix-defexpr and ~/.cache, and the caller's HOME may
    // be unreadable (simulate runs unprivileged with root's environment).
    let home = tempfile::Builder::new().prefix("iac-nix-home-").tempdir().map_err(NixEvalError::Spawn)?;
    loaded_tables_with_home(nix, dir, hosts, home.path())
}

/// `loaded_tables` with Nix's HOME in `home` (a directory the caller removes).
pub fn loaded_tables_with_home(nix: &Path, dir: &Path, hosts: &[&str], home: &Path) -> Result<BTreeMap<String, String>, NixEvalError> {
    let dir = std::path::absolute(dir).map_err(|source| NixEvalError::Read { path: dir.to_path_buf(), source })?;
    let mut attrs = String::new();
    for host in hosts {
        let module = dir.join(host).join("default.nix");
        let lit = escape::nix::string(&module.to_string_lossy()).map_err(|e| NixEvalError::Path(module.clone(), e))?;
        let name = escape::nix::string(host).map_err(|e| NixEvalError::Path(module.clone(), e))?;
        attrs.push_str(&format!("    {name} = tables (/. + {lit});\n"));
    }
    let expr = format!("{PRELUDE}in {{\n{attrs}}}\n");
    let out = Command::new(nix)
        .args(["--eval", "--strict", "--json", "--store", "dummy://", "-E", &expr])
        .env("NIX_PATH", "")
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(NixEvalError::Spawn)?;
    if !out.status.success() {
        return Err(NixEvalError::Eval(String::from_utf8_lossy(&out.stderr).trim_end().to_string()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| NixEvalError::Output(format!("{e}: {}", String::from_utf8_lossy(&out.stdout))))
}

/// A stub `lib` with the few functions the generated modules call, and nixpkgs' wrapping of
/// `networking.nftables.tables` (nixos/modules/services/networking/nftables.nix, `rulesScript`:
/// `lib.mapAttrsToList (_: table: ''table ${table.family} ${table.name} {` …), kept with the
/// same indentation so that Nix's own indentation stripping gives the same text. A table's
/// `name` defaults to its attribute name there.
const PRELUDE: &str = r#"let
  lib = { mkDefault = x: x; mkForce = x: x; mkAfter = x: x; mkBefore = x: x; mkOverride = p: x: x; };
  module = path: import path { inherit lib; pkgs = { }; config = { }; };
  tables = path:
    let ts = (module path).networking.nftables.tables or { }; in
    builtins.concatStringsSep "\n" (map (name:
      let table = { inherit name; } // ts.${name}; in
      ''
        table ${table.family} ${table.name} {
          ${table.content}
        }
      '') (builtins.attrNames ts));
"#;

/// Evaluate the modules of `hosts` under `dir` and require each to produce exactly the table
/// text of `DIR/HOST/nftables.nft`. Returns the number of hosts compared.
pub fn check_tables(nix: &Path, dir: &Path, hosts: &[&str]) -> Result<usize, NixEvalError> {
    let loaded = loaded_tables(nix, dir, hosts)?;
    for host in hosts {
        let path = dir.join(host).join("nftables.nft");
        let text = std::fs::read_to_string(&path).map_err(|source| NixEvalError::Read { path: path.clone(), source })?;
        let evaluated = loaded.get(*host).map_or("", String::as_str);
        compare(host, dir, &text, evaluated)?;
    }
    Ok(hosts.len())
}

/// `Ok` when `evaluated` (what NixOS loads) equals the table part of `standalone`.
pub fn compare(host: &str, dir: &Path, standalone: &str, evaluated: &str) -> Result<(), NixEvalError> {
    let path = dir.join(host).join("nftables.nft");
    let Some(table) = nft::loaded_part(standalone) else { return Err(NixEvalError::Shape { path }) };
    if table == evaluated {
        return Ok(());
    }
    let diff = similar::TextDiff::from_lines(table, evaluated)
        .unified_diff()
        .context_radius(2)
        .header(&format!("{} (checked)", path.display()), "evaluated by Nix (loaded by NixOS)")
        .to_string();
    Err(NixEvalError::Mismatch {
        host: host.to_string(),
        module: dir.join(host).join("default.nix").display().to_string(),
        standalone: path.display().to_string(),
        diff,
    })
}
