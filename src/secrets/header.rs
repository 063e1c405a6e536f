//! What an age file's header says: its stanzas, read with age-core's own stanza parser
//! (`age_core::format::read::age_stanza`), without decrypting anything.

use age_core::format::read::age_stanza;

/// One stanza: its type and arguments (the body is not needed to tell recipients apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaInfo {
    pub tag: String,
    pub args: Vec<String>,
}

const V1: &[u8] = b"age-encryption.org/v1\n";

/// The stanzas of an age v1 file, or why it is not one.
pub fn stanzas(file: &[u8]) -> Result<Vec<StanzaInfo>, String> {
    let mut rest = file.strip_prefix(V1).ok_or("not an age file (no `age-encryption.org/v1` line)")?;
    let mut out = Vec::new();
    loop {
        if rest.starts_with(b"---") {
            return if out.is_empty() { Err("an age header without stanzas".into()) } else { Ok(out) };
        }
        match age_stanza(rest) {
            Ok((after, s)) => {
                out.push(StanzaInfo { tag: s.tag.to_string(), args: s.args.iter().map(|a| a.to_string()).collect() });
                rest = after;
            }
            Err(_) => return Err("a malformed age header".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stanzas_and_refuses_other_files() {
        let file = b"age-encryption.org/v1\n-> X25519 abc\nYWJj\n-> ssh-ed25519 tag0 efg\n\n-> iac/recipients a b\n\n--- mac\n\x00\x01";
        let s = stanzas(file).unwrap();
        assert_eq!(s.iter().map(|s| s.tag.as_str()).collect::<Vec<_>>(), ["X25519", "ssh-ed25519", "iac/recipients"]);
        assert_eq!(s[2].args, ["a", "b"]);
        assert!(stanzas(b"hello").is_err());
        assert!(stanzas(b"age-encryption.org/v1\n--- mac\n").is_err());
        assert!(stanzas(b"age-encryption.org/v1\n-> \n").is_err());
    }
}
