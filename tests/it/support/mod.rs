//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod fake_apiserver;
pub mod netpol;
pub mod pg;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (where Cargo.toml lives).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn iac() -> Command {
    Command::new(env!("CARGO_BIN_EXE_iac"))
}

/// Run `iac` with `args` in `dir`.
pub fn run_iac(dir: &Path, args: &[&str]) -> Output {
    iac().current_dir(dir).args(args).output().expect("iac runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Find an external tool. When it is missing the test is skipped, unless `IAC_REQUIRE_TOOLS`
/// is set (as `.ci/run` does), where a missing tool fails the test: CI must never pass by
/// skipping the real-component tests.
pub fn tool(name: &str) -> Option<PathBuf> {
    match which::which(name) {
        Ok(p) => Some(p),
        Err(_) if std::env::var_os("IAC_REQUIRE_TOOLS").is_some() => {
            panic!("`{name}` is required (IAC_REQUIRE_TOOLS is set) but not on PATH")
        }
        Err(_) => {
            eprintln!("skipping: `{name}` not on PATH");
            None
        }
    }
}

/// The bundled inventory's text.
pub fn bundled_inventory() -> String {
    std::fs::read_to_string(repo().join("hosts/inventory.toml")).expect("bundled inventory")
}

/// `text` with the first `from` replaced by `to`; `from` must be there, or the test would
/// silently test the unchanged inventory.
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "inventory has no `{from}`");
    text.replacen(from, to, 1)
}

/// Write `inventory` into a fresh temp dir as hosts/inventory.toml; return the dir.
pub fn project_with(inventory: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("hosts")).expect("mkdir");
    std::fs::write(dir.path().join("hosts/inventory.toml"), inventory).expect("write inventory");
    dir
}

/// Every file under `dir` with its content, for before/after comparisons.
pub fn snapshot_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

fn walk(root: &Path, here: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(here).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push((p.strip_prefix(root).expect("prefix").to_path_buf(), std::fs::read(&p).expect("read")));
        }
    }
}

/// Evaluate a Nix expression with `nix-instantiate --eval --strict --json`, with `lib` stubbed
/// to the identity for the few functions our generated modules use, `pkgs` to the names of the
/// packages they pick (`pkgs.postgresql_17` evaluates to "postgresql_17") and `module PATH`
/// importing one of them. `None` (skipped) when nix-instantiate is missing; see `tool`.
pub fn nix_eval(expr: &str) -> Option<String> {
    let nix = tool("nix-instantiate")?;
    let wrapped = format!(
        "let lib = {{ mkDefault = x: x; mkAfter = x: x; }}; pkgs = {{ postgresql_17 = \"postgresql_17\"; }}; \
              module = path: import path {{ inherit lib pkgs; }}; in {expr}"
    );
    let out = Command::new(nix)
        .args(["--eval", "--strict", "--json", "-E", &wrapped])
        .current_dir(repo())
        .env("NIX_STATE_DIR", std::env::temp_dir().join("iac-nix-state"))
        .output()
        .expect("nix-instantiate runs");
    assert!(out.status.success(), "{expr}: {}", text(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    Some(value.as_str().map_or_else(|| text(&out.stdout), String::from))
}
