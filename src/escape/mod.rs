//! One escaper per target language, in one place. Inventory text reaches nftables scripts,
//! Nix strings and systemd unit lines; each escaper either produces text whose reading by the
//! target's own parser equals the input, or refuses the value. Validation asks the same
//! functions (`model::validate`), so a value an escaper would refuse is reported with exit 2
//! and its key before anything renders; a refusal at render time is a bug backstop.
//!
//! Each escaper is proven by a property test against the real consumer (`tests/it/escape.rs`):
//! `nix-instantiate --eval` for Nix, `nft` in a private network namespace for nftables.

pub mod nft;
pub mod nix;
pub mod unit;

/// A value the target language cannot hold (or that we refuse to let it interpret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Refused {
    pub(crate) fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }
}

/// How a character is shown in a refusal: printable characters as themselves, others as
/// their code point, so a message never carries a control character to the terminal.
pub(crate) fn shown(c: char) -> String {
    if c.is_control() { format!("U+{:04X}", u32::from(c)) } else { format!("`{c}`") }
}
