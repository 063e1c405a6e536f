//! Values that land in systemd unit lines: paths (`LoadCredential=ID:PATH`, and
//! `--token-file PATH` in the `ExecStart=` NixOS's k3s module joins from its options) and k3s
//! flags (`--disable=NAME` in the same `ExecStart=`).
//!
//! systemd splits `ExecStart=` into words at whitespace, interprets quotes, `\` escapes, `$VAR`
//! and `${VAR}` expansion and a lone `;`, and expands `%` specifiers in both settings
//! (systemd.service(5) "Command lines", systemd.unit(5) "Specifiers"). Escaping for all of that
//! at once, through Nix, is fragile, and none of it belongs in a path: values outside a small
//! alphabet are refused instead.

use super::{Refused, shown};

/// Characters systemd passes through unchanged in a command word and a credential path.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '+' | '@' | ':' | ',' | '=' | '-')
}

/// One word of a unit line that systemd reads back unchanged.
pub fn word(raw: &str) -> Result<&str, Refused> {
    if raw.is_empty() {
        return Err(Refused::new("is empty"));
    }
    if let Some(c) = raw.chars().find(|c| !plain(*c)) {
        return Err(Refused::new(format!(
            "{} is not allowed here: systemd would interpret it (only letters, digits and . _ / + @ : , = - are)",
            shown(c)
        )));
    }
    Ok(raw)
}

/// An absolute path on the target host, as one unit-line word: no empty, `.` or `..` component.
pub fn path(raw: &str) -> Result<&str, Refused> {
    if !raw.starts_with('/') {
        return Err(Refused::new("must be an absolute path"));
    }
    word(raw)?;
    if raw.len() > 1 && raw[1..].split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(Refused::new("must be a normalised path (no `//`, `.` or `..` component, no trailing `/`)"));
    }
    Ok(raw)
}

/// `--NAME=VALUE` for a k3s command line.
pub fn k3s_flag(name: &str, value: &str) -> Result<String, Refused> {
    Ok(format!("--{}={}", word(name)?, word(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(path("/var/lib/secrets/k3s-token").is_ok());
        for bad in ["relative", "/a b", "/a\nb", "/a%b", "/a$b", "/a/../b", "/a//b", "/a/", "/a\"b", "/a;b"] {
            assert!(path(bad).is_err(), "{bad:?}");
        }
    }
}
