//! Words of a shell command line that iac writes unquoted (the decryption unit's arguments in
//! the generated NixOS module, where they also sit inside a Nix indented string). Refused
//! rather than quoted: the values that land there (secret names, paths, user names, modes) are
//! validated to a plain alphabet, and no character of it means anything to `sh` or to Nix's
//! `''…''` strings (`$`, `'`, quotes, `\`, whitespace and globs are all outside it).

use super::{Refused, shown};

/// One shell word that reads back unchanged without quotes.
pub fn word(raw: &str) -> Result<&str, Refused> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '+' | '@' | ':' | ',' | '=' | '-');
    if raw.is_empty() {
        return Err(Refused::new("is empty"));
    }
    match raw.chars().find(|c| !plain(*c)) {
        Some(c) => Err(Refused::new(format!("{} cannot stand unquoted in a shell command line", shown(c)))),
        None => Ok(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_only() {
        assert!(word("/run/secrets/kafka-db").is_ok());
        assert!(word("0400").is_ok());
        for bad in ["", "a b", "$x", "a'b", "a\"b", "*", "a;b", "a\\b", "${x}", "a\nb"] {
            assert!(word(bad).is_err(), "{bad:?}");
        }
    }
}
