//! Helpers shared by the integration tests: the binary under test and its output, the
//! repository and its bundled inventory, external tools, and (in the submodules) a real
//! PostgreSQL server, the fake Kubernetes API server and a NetworkPolicy evaluator. Every test
//! module uses these instead of a copy of its own.

pub mod fake_apiserver;
pub mod netpol;
pub mod pg;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `iac` binary cargo built for this test run.
pub const IAC: &str = env!("CARGO_BIN_EXE_iac");

/// The repository root (where Cargo.toml lives).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A command running the `iac` binary under test.
pub fn iac() -> Command {
    Command::new(IAC)
}

/// Run `iac` with `args` in `dir`.
pub fn run_iac(dir: &Path, args: &[&str]) -> Output {
    iac().current_dir(dir).args(args).output().expect("iac runs")
}

/// `iac query ARGS` against `db`: its PG* variables set, ambient ones cleared, run from the
/// repository root (so it reads the bundled inventory).
pub fn iac_query(db: &pg::Db, args: &[&str]) -> Command {
    let mut cmd = iac();
    db.apply_env(&mut cmd).current_dir(repo()).arg("query").args(args);
    cmd
}

/// Run `iac query ARGS` against `db` (see `iac_query`).
pub fn run_query(db: &pg::Db, args: &[&str]) -> Output {
    iac_query(db, args).output().expect("iac runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A process's standard output, lossily decoded (for messages and `contains` checks).
pub fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

/// A process's standard error, lossily decoded.
pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// A process's exit code; -1 when a signal ended it.
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// The standard output of a run that must have succeeded, which must be UTF-8: the output
/// itself is under test (its stderr is the failure message otherwise).
pub fn ok_stdout(o: &Output) -> String {
    assert!(o.status.success(), "iac failed ({:?}): {}", o.status, stderr(o));
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

/// Find an external tool on PATH. When it is missing the test is skipped, unless
/// `IAC_REQUIRE_TOOLS` is set (as `.ci/run` does), where a missing tool fails the test: CI must
/// never pass by skipping the real-component tests.
pub fn tool(name: &str) -> Option<PathBuf> {
    which::which(name).ok().or_else(|| missing(name))
}

/// Find an external tool `scripts/test-all` installs off PATH: `$var` first, then `installed`
/// (where the script puts it, e.g. the venv under /opt, so a different copy elsewhere on the
/// machine is never the one tested), then PATH. Missing: as `tool`.
pub fn tool_at(name: &str, var: &str, installed: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(installed)])
        .find(|p| p.is_file())
        .or_else(|| which::which(name).ok())
        .or_else(|| missing(name))
}

fn missing(name: &str) -> Option<PathBuf> {
    if std::env::var_os("IAC_REQUIRE_TOOLS").is_some() {
        panic!("`{name}` is required (IAC_REQUIRE_TOOLS is set) but not found; scripts/test-all installs every tool the tests use")
    }
    eprintln!("skipping: `{name}` not found");
    None
}

/// A new ed25519 key pair made by the real `ssh-keygen` at `DIR/NAME` (private) and
/// `DIR/NAME.pub`; its public key as `ssh-ed25519 BASE64` (no comment). Panics without
/// ssh-keygen: every caller needs a real key (see `tool`).
pub fn ssh_keygen(dir: &Path, name: &str) -> String {
    let keygen = tool("ssh-keygen").expect("ssh-keygen (openssh-client) is needed to make a host key");
    let out = Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(dir.join(name))
        .output()
        .expect("ssh-keygen runs");
    assert!(out.status.success(), "ssh-keygen: {}", text(&out.stderr));
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).expect("public key");
    public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// The admin key of the bundled inventory (`[admins.example]`), whose private half nobody has:
/// tests that decrypt replace it with one of their own ([`new_age_key`]).
pub const EXAMPLE_ADMIN: &str = "age1sr4730t9hmwqf5nlk0tukp9tuekwpjecjjvqxkup7hve7pq4zc0snpe7c6";

/// A new age identity written to `file` (as `age-keygen` writes one); its recipient.
pub fn new_age_key(file: &Path) -> String {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    std::fs::write(file, format!("# test key\n{}\n", id.to_string().expose_secret())).expect("write key");
    id.to_public().to_string()
}

/// The bundled inventory's path.
pub fn bundled_inventory_path() -> PathBuf {
    repo().join("hosts/inventory.toml")
}

/// The bundled inventory's text.
pub fn bundled_inventory() -> String {
    std::fs::read_to_string(bundled_inventory_path()).expect("bundled inventory")
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

/// The store path of `host`'s NixOS system, tagged by a repeated character (`a…`, `b…`), as
/// the fake `nix` of the deploy and drift tests hands them out.
pub fn system_path(tag: char, host: &str) -> String {
    format!("/nix/store/{}-nixos-system-{host}-25.05", tag.to_string().repeat(32))
}

/// `dir/flake/hosts/inventory.toml` holding `inventory`, rendered by the binary into
/// `dir/flake/generated`: the flake directory deploy and drift read. Returns the flake's path.
pub fn rendered_flake(dir: &Path, inventory: &str) -> PathBuf {
    let flake = dir.join("flake");
    std::fs::create_dir_all(flake.join("hosts")).unwrap();
    std::fs::write(flake.join("hosts/inventory.toml"), inventory).unwrap();
    let out = iac()
        .args(["render", "--inventory"])
        .arg(flake.join("hosts/inventory.toml"))
        .arg("--out")
        .arg(flake.join("generated"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    flake
}
