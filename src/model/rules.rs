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

/// A public key a secret can be encrypted to, as the age tools write it: an X25519 recipient
/// (`age1…`, `age-keygen -y`) or an OpenSSH `ssh-ed25519 BASE64 [comment]` line. Returns the
/// canonical form (the comment dropped) the secrets record and compare. Parsed with the `age`
/// crate's own parsers, so a key accepted here is one age encrypts to.
pub fn public_key(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.starts_with("age1") {
        return s.parse::<age::x25519::Recipient>().map(|r| r.to_string()).map_err(|_| {
            format!("`{}` is not an age recipient (age1 followed by 58 Bech32 characters, as `age-keygen -y` prints)", printable(s))
        });
    }
    ssh_ed25519(s)
}

/// An OpenSSH ed25519 public key (`ssh-ed25519 BASE64 [comment]`, as `ssh-keyscan -t ed25519`
/// and `~/.ssh/id_ed25519.pub` give it), canonical without the comment. age encrypts to
/// ssh-rsa keys too, but a host's RSA key is not what NixOS decrypts with here, and one key
/// type for hosts and admins keeps `iac secrets check` exact.
pub fn ssh_ed25519(s: &str) -> Result<String, String> {
    let mut words = s.split_whitespace();
    let (kind, blob) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if kind != "ssh-ed25519" {
        return Err(format!(
            "`{}` is not an ssh-ed25519 public key or an age recipient (`ssh-keyscan -t ed25519 HOST`, `age-keygen -y KEYFILE`)",
            printable(&s.chars().take(40).collect::<String>())
        ));
    }
    let canonical = format!("{kind} {blob}");
    canonical
        .parse::<age::ssh::Recipient>()
        .map(|_| canonical.clone())
        .map_err(|_| format!("`{}` is not a valid ssh-ed25519 public key", printable(&canonical)))
}

/// A file mode for a secret: octal, as chmod takes it (`0400`, `440`), readable by its owner
/// and granting nothing to others (a secret everyone can read is none).
pub fn secret_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix('0').filter(|d| d.len() == 3).unwrap_or(s);
    let mode = (digits.len() == 3 && digits.chars().all(|c| ('0'..='7').contains(&c)))
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .ok_or_else(|| format!("`{}` is not a file mode: three octal digits, optionally after a 0 (like 0400)", printable(s)))?;
    if mode & 0o007 != 0 {
        return Err(format!("{s} gives others access: a secret's mode must end in 0 (like 0400 or 0440)"));
    }
    if mode & 0o400 == 0 {
        return Err(format!("{s} does not let the owner read it"));
    }
    Ok(mode)
}

/// A key of a Kubernetes Secret's data (`IsConfigMapKey`: letters, digits, `-`, `_`, `.`).
pub fn config_key(s: &str) -> Result<(), String> {
    let ok = !s.is_empty() && s.len() <= 253 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(format!("`{}` is not a Kubernetes Secret key (a-z, A-Z, 0-9, -, _ and .)", printable(s))) }
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

/// A KRaft cluster id is a UUID in URL-safe base64 without padding: 22 characters that decode to
/// 16 bytes (Kafka's `Uuid.fromString`) and encode back to the same text. The last character
/// carries only 2 of the 128 bits, so most 22-character strings decode (Java's decoder ignores
/// the 4 spare bits) but do not round-trip: the broker would record a different id than the one
/// the manifest names. The all-zero and metadata-topic ids are reserved, and an id starting with
/// '-' reads as an option to `kafka-storage.sh format -t` (Kafka's own generator avoids them).
pub fn cluster_id(id: &str) -> Result<(), String> {
    use base64::Engine as _;
    use base64::alphabet::URL_SAFE;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const HOW: &str = "`kafka-storage.sh random-uuid` prints one";
    // Decodes as leniently as java.util.Base64's URL decoder (spare bits ignored), encodes
    // canonically, as Kafka's Uuid.toString does.
    let lenient = GeneralPurpose::new(
        &URL_SAFE,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    if id.len() != 22 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("`{}` is not a KRaft cluster id: 22 characters of URL-safe base64 ({HOW})", printable(id)));
    }
    let bytes = lenient.decode(id).map_err(|e| format!("`{id}` is not URL-safe base64: {e} ({HOW})"))?;
    let canonical = lenient.encode(&bytes);
    if bytes.len() != 16 || canonical != id {
        return Err(format!("`{id}` does not round-trip: its 16 bytes encode as `{canonical}`; use that, or a fresh id ({HOW})"));
    }
    if id == "AAAAAAAAAAAAAAAAAAAAAA" || id == "AAAAAAAAAAAAAAAAAAAAAQ" {
        return Err(format!("`{id}` is a reserved id"));
    }
    if id.starts_with('-') {
        return Err(format!("`{id}` starts with '-', which kafka-storage.sh would read as an option ({HOW})"));
    }
    Ok(())
}

/// Every broker is also a KRaft controller, and a quorum of n voters survives the loss of
/// (n - 1) / 2 of them. One broker is the bundled development estate and makes no claim to
/// survive anything; two brokers cost twice as much and still stop at the first loss, because a
/// quorum of two needs both voters.
pub fn brokers(n: u16) -> Result<(), String> {
    match n {
        0 => Err("needs at least one broker".into()),
        2 => Err("2 brokers cannot keep a KRaft quorum through the loss of one (a quorum of 2 voters needs both): \
                  use 1 (a development estate without redundancy) or 3 or more"
            .into()),
        _ => Ok(()),
    }
}

/// A container image reference (`image_ref::check`, distribution/reference's grammar) pinned
/// by tag, optionally by a sha256 digest too: no tag, or `latest`, lets the image change under
/// the same manifest.
pub fn pinned_image(image: &str) -> Result<(), String> {
    let shown = printable(image);
    super::image_ref::check(image).map_err(|why| format!("`{shown}` is not a container image reference: it {why}"))?;
    let (name_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let hex = d.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
            return Err(format!("`{shown}` has a digest that is not sha256:<64 lowercase hex digits>"));
        }
    }
    // The tag follows the last ':' after the last '/' (a registry may carry a :port).
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    match name_tag[last_slash..].rfind(':').map(|i| &name_tag[last_slash + i + 1..]) {
        None => Err(format!("`{shown}` names no tag: pin the image by tag (NAME:TAG, optionally @sha256:DIGEST)")),
        Some("latest") => Err(format!("`{shown}` is pinned to `latest`, which changes under the same manifest: name a released tag")),
        Some(_) => Ok(()),
    }
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
        assert!(cluster_id("euNKiNAFMRq_9pSVJThoTA").is_ok());
        assert!(cluster_id("5L6g3nShT-eMCtK--X86sw").is_ok());
        assert!(cluster_id("short").is_err());
        assert!(cluster_id("iacKRaftCluster000000+").is_err(), "standard base64, not URL-safe");
        assert!(cluster_id("AAAAAAAAAAAAAAAAAAAAAA").is_err(), "reserved");
        // The id this project shipped before: it decodes, but to bytes that encode differently.
        let e = cluster_id("iacKRaftCluster0000001").unwrap_err();
        assert!(e.contains("does not round-trip") && e.contains("iacKRaftCluster000000w"), "{e}");
        assert!(cluster_id("iacKRaftCluster000000w").is_ok());
        assert!(cluster_id("-acKRaftCluster000000w").unwrap_err().contains("starts with '-'"));
    }

    /// The last character of a canonical id carries 2 bits: only A, Q, g and w round-trip.
    #[test]
    fn cluster_id_round_trip_is_exactly_the_canonical_encoding() {
        use base64::Engine as _;
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let ok: String = alphabet.chars().filter(|c| cluster_id(&format!("euNKiNAFMRq_9pSVJThoT{c}")).is_ok()).collect();
        assert_eq!(ok, "AQgw");
        for seed in 0u8..=255 {
            let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([seed.wrapping_mul(37) | 1; 16]);
            assert!(cluster_id(&id).is_ok() || id.starts_with('-'), "{id}");
        }
    }

    #[test]
    fn broker_counts() {
        assert!(brokers(1).is_ok());
        assert!(brokers(0).is_err());
        assert!(brokers(2).unwrap_err().contains("cannot keep a KRaft quorum"));
        for n in 3..=9 {
            assert!(brokers(n).is_ok());
        }
    }

    #[test]
    fn pinned_images() {
        for ok in [
            "apache/kafka:4.1.1",
            "quay.io/debezium/connect:3.4.3.Final",
            "registry.example:5000/team/connect:1.0",
            "localhost/connect:dev",
            "curlimages/curl:8.11.1",
            &format!("quay.io/debezium/connect:3.4.3.Final@sha256:{}", "ab".repeat(32)),
        ] {
            assert!(pinned_image(ok).is_ok(), "{ok}: {:?}", pinned_image(ok));
        }
        for (bad, why) in [
            ("apache/kafka", "names no tag"),
            ("registry.example:5000/connect", "names no tag"),
            ("apache/kafka:latest", "latest"),
            ("apache/Kafka:4.1.1", "not a container image reference"),
            ("apache/kafka:4.1.1@sha256:abc", "digest"),
            (&format!("apache/kafka:4.1.1@sha512:{}", "ab".repeat(64)), "not sha256"),
            ("apache//kafka:4", "not a container image reference"),
            ("apache/kafka:-x", "not a container image reference"),
            ("apache/kafka :4", "not a container image reference"),
        ] {
            let e = pinned_image(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
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
