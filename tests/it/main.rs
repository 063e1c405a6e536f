//! The integration tests, as one test binary: each module is what used to be a binary of its
//! own (tests/NAME.rs), `support` holds the helpers they share. One binary links the library
//! and the dev-dependencies once instead of eighteen times, and libtest runs every test of
//! the suite on one thread pool. Select a part with a module filter:
//! `cargo test --test it -- render::`.
//!
//! `#![cfg(test)]`: clippy treats all of it as test code (clippy.toml lets tests unwrap, expect
//! and print; Cargo.toml's [lints] deny that elsewhere).
#![cfg(test)]

mod support;

mod cluster;
mod deploy;
mod deploy_e2e;
mod drift;
mod escape;
mod fuzz_render;
mod inventory_props;
mod k8s_manifests;
mod k8s_snapshots;
mod network_policy;
mod nftables;
mod nix;
mod output_churn;
mod postgres;
mod query;
mod query_follow;
mod query_secret;
mod query_tls;
mod render;
mod secrets;
mod simulate;
mod validation;

/// Every Rust file under tests/ is compiled into this binary: a file of tests/it that is not
/// declared here (or in support/mod.rs) is never compiled, and with `autotests = false` a new
/// tests/NAME.rs is not a test target either. Both would pass by never running.
#[test]
fn every_test_file_is_a_module_of_this_binary() {
    let declared = |file: &str, prefix: &str| -> std::collections::BTreeSet<String> {
        let text = std::fs::read_to_string(support::repo().join(file)).unwrap();
        text.lines().filter_map(|l| Some(l.strip_prefix(prefix)?.strip_suffix(';')?.to_owned())).collect()
    };
    let (modules, support_modules) = (declared("tests/it/main.rs", "mod "), declared("tests/it/support/mod.rs", "pub mod "));
    let mut files = Vec::new();
    let mut dirs = vec![support::repo().join("tests")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p.strip_prefix(support::repo().join("tests")).unwrap().to_owned());
            }
        }
    }
    assert!(files.len() > 20, "{files:?}");
    for f in &files {
        let name = f.file_stem().unwrap().to_str().unwrap().to_owned();
        let ok = match f.parent().and_then(|d| d.to_str()) {
            Some("it") => name == "main" || modules.contains(&name),
            Some("it/support") => modules.contains("support") && (name == "mod" || support_modules.contains(&name)),
            _ => false,
        };
        assert!(ok, "tests/{} is not a module of tests/it/main.rs", f.display());
    }
}
