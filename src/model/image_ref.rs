//! Container image references, checked against the grammar of distribution/reference
//! (github.com/distribution/reference, `reference.go`), which containerd and the kubelet use:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] remote-name          (at most 255 characters)
//! domain           := host [':' port-number]
//! host             := domain-name | IPv4address | '[' IPv6address ']'
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! remote-name      := path-component ['/' path-component]*
//! path-component   := alpha-numeric [separator alpha-numeric]*
//! alpha-numeric    := /[a-z0-9]+/
//! separator        := /[_.]|__|[-]*/
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := algorithm ":" /[0-9a-fA-F]{32,}/
//! algorithm        := /[A-Za-z][A-Za-z0-9]*/ ( /[+.-_]/ /[A-Za-z][A-Za-z0-9]*/ )*
//! ```
//!
//! As in `splitDomain`, the first component is a domain only when it contains `.` or `:`, is
//! `localhost`, or has upper-case letters. Hand-written: no small, well-kept crate parses
//! references without pulling in a registry client.

/// `Ok` when `s` is a valid image reference; otherwise why not.
pub fn check(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        check_digest(d)?;
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        check_tag(t)?;
    }
    if name.len() > 255 {
        return Err("has a name longer than 255 characters".into());
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && is_domain_like(parts[0]) {
        check_domain(parts.remove(0))?;
    }
    for p in parts {
        if !is_path_component(p) {
            return Err(format!("has `{p}` where a lower-case name component (a-z, 0-9, separated by . _ __ or -) must be"));
        }
    }
    Ok(())
}

fn is_domain_like(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase())
}

fn check_domain(d: &str) -> Result<(), String> {
    let bad = || Err(format!("has `{d}` where a registry host[:port] must be"));
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else { return bad() };
        if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return bad();
        }
        match after {
            "" => (v6, None),
            p => match p.strip_prefix(':') {
                Some(p) => (v6, Some(p)),
                None => return bad(),
            },
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit())) {
        return bad();
    }
    if !d.starts_with('[') {
        let component =
            |c: &str| !c.is_empty() && c.chars().all(|x| x.is_ascii_alphanumeric() || x == '-') && !c.starts_with('-') && !c.ends_with('-');
        if !host.split('.').all(component) {
            return bad();
        }
    }
    Ok(())
}

fn is_path_component(p: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = p.as_bytes();
    if b.is_empty() || !alnum(b[0] as char) || !alnum(b[b.len() - 1] as char) {
        return false;
    }
    // Between alpha-numeric runs: `.`, `_`, `__`, or any number of `-`.
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if alnum(c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i] as char) {
            i += 1;
        }
        let sep = &p[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-')) {
            return false;
        }
    }
    true
}

fn check_tag(t: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = t.chars().next().is_some_and(word) && t.len() <= 128 && t.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok { Ok(()) } else { Err(format!("has the tag `{t}`: a tag is 1-128 letters, digits, _ . - (not starting with . or -)")) }
}

fn check_digest(d: &str) -> Result<(), String> {
    let bad = || Err(format!("has the digest `{d}`: expected ALGORITHM:HEX, like sha256: and 64 hex digits"));
    let Some((algo, hex)) = d.split_once(':') else { return bad() };
    let algo_ok = algo
        .split(['+', '.', '-', '_'])
        .all(|c| c.chars().next().is_some_and(|f| f.is_ascii_alphabetic()) && c.chars().all(|x| x.is_ascii_alphanumeric()));
    if !algo_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return bad();
    }
    if algo == "sha256" && hex.len() != 64 {
        return bad();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn valid_references() {
        for ok in [
            "apache/kafka:4.1.1",
            "curlimages/curl:8.11.1",
            "busybox",
            "quay.io/debezium/connect:3.0",
            "localhost:5000/team/app_x__y.z-w:v1",
            "registry.example.com:443/a/b",
            "[::1]:5000/app",
            "Registry.Example.com/app",
            &format!("apache/kafka@sha256:{}", "a".repeat(64)),
            &format!("apache/kafka:4.1.1@sha256:{}", "0".repeat(64)),
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn invalid_references() {
        for bad in [
            "",
            "Apache/Kafka",
            "apache/kafka:",
            "apache/kafka:.x",
            "apache//kafka",
            "apache/kafka latest",
            "apache/kafka:4.1\n",
            "-apache/kafka",
            "apache/kafka@sha256:abc",
            "apache/kafka@sha256",
            "registry:port/app",
            "apache/kafka:4.1.1:extra",
            "a/b--",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }
}
