//! The checks validation applies to single values: names that become Kubernetes, Kafka, SQL,
//! POSIX or environment names, free text, and the fixed vocabularies of k3s and Nix. Each
//! returns why a value is refused; `validate` adds the file position and the key.

use crate::escape;

/// What k3s deploys and `--disable` can switch off: `DisableItems` in k3s's
/// pkg/cli/cmds/stage.go (coredns, servicelb, traefik, local-storage, metrics-server; newer
/// releases add runtimes and snapshot-controller). k3s silently ignores any other word.
pub const K3S_PACKAGED: &[&str] =
    &["coredns", "servicelb", "traefik", "local-storage", "metrics-server", "runtimes", "snapshot-controller"];

/// The Linux systems nixpkgs bootstraps (lib/systems/flake-systems.nix); NixOS runs on Linux.
pub const NIXOS_SYSTEMS: &[&str] =
    &["x86_64-linux", "aarch64-linux", "armv6l-linux", "armv7l-linux", "i686-linux", "powerpc64le-linux", "riscv64-linux"];

/// Free text (`why`) is printed in nftables comment lines, inside Nix strings and in tables on
/// a terminal: one line, no control or bidirectional-override characters, at most this long.
pub const FREE_TEXT_MAX: usize = 200;

/// Kubernetes' `IsDNS1123Label`: what a namespace and object names must be.
pub fn dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("`{}` must be a DNS-1123 label: 1-63 of a-z, 0-9 and '-', starting and ending alphanumeric", printable(s)))
    }
}

/// Kubernetes' `IsDNS1123Subdomain` (a StorageClass name): dot-separated labels, ≤ 253.
pub fn dns_subdomain(s: &str) -> Result<(), String> {
    if s.len() <= 253 && !s.is_empty() && s.split('.').all(|l| dns_label(l).is_ok()) {
        Ok(())
    } else {
        Err(format!("`{}` must be a DNS-1123 subdomain: dot-separated labels of a-z, 0-9 and '-', at most 253 characters", printable(s)))
    }
}

/// A POSIX user name as useradd accepts it by default (`NAME_REGEX` `^[a-z_][a-z0-9_-]*$`,
/// at most 32 characters). It becomes `USER@HOST` in ssh and `nix copy` URLs, where `@`, `?`
/// and the like would name another host or add options.
pub fn posix_user(s: &str) -> Result<(), String> {
    let ok = s.len() <= 32
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok { Ok(()) } else { Err(format!("`{}` is not a user name: 1-32 of a-z, 0-9, _ and -, starting with a letter or _", printable(s))) }
}

/// An environment variable name (POSIX: letters, digits, `_`, not starting with a digit).
pub fn env_name(s: &str) -> Result<(), String> {
    let ok =
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok { Ok(()) } else { Err(format!("`{}` is not an environment variable name (A-Z, a-z, 0-9, _)", printable(s))) }
}

/// Database, role and table names go into pg_hba lines and SQL: plain lower-case identifiers.
pub fn sql_identifier(s: &str) -> Result<(), String> {
    let ok = s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63;
    if ok { Ok(()) } else { Err(format!("`{}` must be a lower-case SQL identifier (a-z, 0-9, _; at most 63)", printable(s))) }
}

/// Kafka's topic rule: 1-249 of letters, digits, '.', '_' and '-', not `.` or `..`; the
/// dead-letter topic `TOPIC-dlq` must fit too.
pub fn topic(s: &str) -> Result<(), String> {
    let ok = !s.is_empty() && s.len() <= 245 && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("`{}` is not a Kafka topic name (1-245 of a-z, A-Z, 0-9, . _ -; TOPIC-dlq must fit in 249)", printable(s)))
    }
}

/// Free text: what every renderer it reaches can hold (the nft comment-line and Nix escapers
/// are asked too), and nothing that could disguise itself on a terminal or in a review.
pub fn free_text(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("is empty: say why".into());
    }
    if s.chars().count() > FREE_TEXT_MAX {
        return Err(format!("is longer than {FREE_TEXT_MAX} characters"));
    }
    let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}');
    if let Some(c) = s.chars().find(|c| c.is_control() || bidi(*c) || matches!(c, '\u{2028}' | '\u{2029}')) {
        return Err(format!("holds the character U+{:04X}: one line of visible text only", u32::from(c)));
    }
    escape::nft::comment_line(s).map_err(|e| e.to_string())?;
    escape::nix::indented(s, 0).map_err(|e| e.to_string())?;
    Ok(())
}

/// A Kubernetes quantity for a volume size: a plain or decimal number with an optional binary
/// or decimal suffix (`5Gi`, `1.5Gi`, `500M`).
pub fn quantity(q: &str) -> Result<(), String> {
    let number = q.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &q[number.len()..];
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    let ok = !whole.is_empty()
        && whole.chars().all(|c| c.is_ascii_digit())
        && fraction.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
        && ["", "Ki", "Mi", "Gi", "Ti", "Pi", "k", "M", "G", "T", "P"].contains(&suffix);
    if ok { Ok(()) } else { Err(format!("`{}` is not a storage size like 5Gi", printable(q))) }
}

/// A KRaft cluster id is a UUID in URL-safe base64 without padding: 22 characters that decode
/// to 16 bytes (Kafka's `Uuid.fromString`). The all-zero and all-but-one ids are reserved.
pub fn cluster_id(id: &str) -> Result<(), String> {
    if id.len() != 22 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!(
            "`{}` is not a KRaft cluster id: 22 characters of URL-safe base64 (`kafka-storage.sh random-uuid` prints one)",
            printable(id)
        ));
    }
    if id == "AAAAAAAAAAAAAAAAAAAAAA" || id == "AAAAAAAAAAAAAAAAAAAAAQ" {
        return Err(format!("`{id}` is a reserved id"));
    }
    Ok(())
}

/// A value as it may be shown in a message: control characters as escapes, so an error line
/// never carries one to the terminal.
pub fn printable(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids() {
        assert!(cluster_id("iacKRaftCluster0000001").is_ok());
        assert!(cluster_id("5L6g3nShT-eMCtK--X86sw").is_ok());
        assert!(cluster_id("short").is_err());
        assert!(cluster_id("iacKRaftCluster000000+").is_err(), "standard base64, not URL-safe");
        assert!(cluster_id("AAAAAAAAAAAAAAAAAAAAAA").is_err(), "reserved");
    }

    #[test]
    fn quantities() {
        for ok in ["5Gi", "500Mi", "10G", "1073741824", "1.5Gi"] {
            assert!(quantity(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Gi", "5 Gi", "5GB", "-5Gi", "1.Gi", ".5Gi"] {
            assert!(quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_names() {
        assert!(topic("demo-messages").is_ok());
        assert!(topic("a.b_c").is_ok());
        for bad in ["", ".", "..", "a b", "a/b", &"x".repeat(246)] {
            assert!(topic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_text() {
        assert!(posix_user("root").is_ok() && posix_user("deploy_1").is_ok());
        for bad in ["", "Root", "root@127.0.0.9?remote-program=x", "a b", "1abc", &"a".repeat(33)] {
            assert!(posix_user(bad).is_err(), "{bad}");
        }
        assert!(env_name("IAC_PG_PASSWORD").is_ok() && env_name("1X").is_err() && env_name("A-B").is_err());
        assert!(dns_subdomain("local-path").is_ok() && dns_subdomain("a.b").is_ok() && dns_subdomain("a\nb").is_err());
        assert!(free_text("admin web UI '${x}\" ok").is_ok());
        for bad in ["", "  ", "a\nb", "a\u{202e}b", "a\u{7}b", &"x".repeat(201)] {
            assert!(free_text(bad).is_err(), "{bad:?}");
        }
    }
}
