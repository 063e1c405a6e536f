//! Nix store paths, validated before iac compares them or hands them to a remote command.
//!
//! Both the path a build produced and the one a host reports for `/run/current-system` cross
//! a trust boundary (a symlink on disk, the output of a remote shell). Only a strict
//! `/nix/store/<32 nix-base32 chars>-<name>` is accepted, so a surprise (an error message, an
//! empty line, a path outside the store) can never be mistaken for "already up to date" or
//! passed on to the target as the system to roll back to.

use std::fmt;

const STORE_DIR: &str = "/nix/store/";
const HASH_LEN: usize = 32;
/// Nix's own limit on the name part of a store path.
const MAX_NAME_LEN: usize = 211;

/// A syntactically valid Nix store path (top-level: no trailing components).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StorePath(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a Nix store path: {reason}")]
pub struct StorePathError {
    pub value: String,
    pub reason: &'static str,
}

impl StorePath {
    pub fn parse(value: &str) -> Result<Self, StorePathError> {
        let err = |reason| StorePathError { value: value.to_string(), reason };
        let rest = value.strip_prefix(STORE_DIR).ok_or_else(|| err("it does not start with /nix/store/"))?;
        let (hash, name) = rest.split_at_checked(HASH_LEN).ok_or_else(|| err("it is too short"))?;
        // `from_nix_base32` also rejects the letters Nix leaves out (e, o, u, t) and any
        // encoding that does not fit 160 bits.
        if hash.len() != HASH_LEN || nix_base32::from_nix_base32(hash).is_none_or(|b| b.len() != 20) {
            return Err(err("its hash part is not 32 nix-base32 characters"));
        }
        let name = name.strip_prefix('-').ok_or_else(|| err("no '-' after the hash part"))?;
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(err("its name part is empty or too long"));
        }
        if name.starts_with('.') {
            return Err(err("its name part starts with '.'"));
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b)) {
            return Err(err("its name part has a character Nix does not allow"));
        }
        Ok(Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32-character hash part, a short unique name for this path.
    pub fn hash(&self) -> &str {
        &self.0[STORE_DIR.len()..STORE_DIR.len() + HASH_LEN]
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "/nix/store/0q43idch209zsdngl8yl79x0y79aajib-nixos-system-alphard-25.05";

    #[test]
    fn accepts_a_system_path() {
        let p = StorePath::parse(GOOD).unwrap();
        assert_eq!(p.hash(), "0q43idch209zsdngl8yl79x0y79aajib");
        assert_eq!(p.to_string(), GOOD);
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "\n",
            "/run/current-system",
            "/nix/store/",
            "/nix/store/0q43idch209zsdngl8yl79x0y79aajib",
            "/nix/store/0q43idch209zsdngl8yl79x0y79aajib-",
            // 'e', 'o', 'u' and 't' are not nix-base32 digits.
            "/nix/store/eq43idch209zsdngl8yl79x0y79aajib-x",
            "/nix/store/0Q43idch209zsdngl8yl79x0y79aajib-x",
            "/nix/store/0q43idch209zsdngl8yl79x0y79aaji-x",
            "/nix/store/0q43idch209zsdngl8yl79x0y79aajib-x/bin/sh",
            "/nix/store/0q43idch209zsdngl8yl79x0y79aajib-.hidden",
            "/nix/store/0q43idch209zsdngl8yl79x0y79aajib-a b",
            "/nix/store/0q43idch209zsdngl8yl79x0y79aajib-x\n",
            "ssh: connect to host 172.22.0.134 port 22: Connection refused",
        ] {
            assert!(StorePath::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
