//! The integration tests, as one test binary: each module is what used to be a binary of its
//! own (tests/NAME.rs), `support` holds the helpers they share. One binary links the library
//! and the dev-dependencies once instead of seventeen times, and libtest runs every test of
//! the suite on one thread pool. Select a part with a module filter:
//! `cargo test --test it -- render::`.

mod support;

mod cluster;
mod deploy;
mod escape;
mod fuzz_render;
mod inventory_props;
mod k8s_manifests;
mod k8s_snapshots;
mod network_policy;
mod nftables;
mod nix;
mod postgres;
mod query;
mod query_follow;
mod query_tls;
mod render;
mod simulate;
mod validation;
