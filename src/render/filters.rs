//! askama filters for values placed into Nix strings. They delegate to the escapers in
//! `escape::nix`; a value an escaper refuses fails the render (validation refuses such
//! values first, with their key, so this is a backstop).

use std::fmt::Display;

use crate::escape;

/// A double-quoted Nix string literal, quotes included.
#[askama::filter_fn]
pub fn nix_string(value: impl Display, _: &dyn askama::Values) -> askama::Result<String> {
    escape::nix::string(&value.to_string()).map_err(askama::Error::custom)
}
