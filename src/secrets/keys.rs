//! Keys: the recipients a secret is encrypted to, how iac names them in a file's header, and
//! the identity an admin decrypts with.
//!
//! An age X25519 stanza does not name its recipient (age's recipient privacy: c2sp.org/age,
//! "X25519 recipient stanza"), so the header alone cannot say whom a file is encrypted to.
//! iac therefore adds one stanza of its own, `-> iac/recipients FP...`, listing a fingerprint of
//! every recipient it encrypted to. Identity implementations must ignore a stanza they do not
//! recognise (the spec's "Recipient stanza": "Identity implementations MUST ignore
//! unrecognized stanzas", and non-native types are to use a qualified name such as
//! `example.com/enigma`), so `age` and `rage` still decrypt the file, and rage itself adds a
//! random `…-grease` stanza to every header for that reason. The stanza is inside the header,
//! so the header MAC covers it, and a rekey rewrites it with the file. ssh-ed25519 stanzas do
//! name theirs (the first 4 bytes of SHA-256 of the SSH public key, as the spec's
//! ssh-ed25519 type and age's `ssh_tag` define it), so `check` also matches those against the
//! record.

use std::collections::HashSet;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use age_core::format::{FileKey, Stanza};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use sha2::{Digest, Sha256};

use super::Error;

/// The tag of iac's record stanza.
pub const RECORD_TAG: &str = "iac/recipients";

/// A fingerprint of a public key in its canonical form (`age1…` or `ssh-ed25519 BASE64`): the
/// first 8 bytes of its SHA-256, unpadded base64 (11 characters). Public, as the keys are.
pub fn fingerprint(key: &str) -> String {
    STANDARD_NO_PAD.encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The tag age writes into an ssh-ed25519 stanza for `key` (`ssh-ed25519 BASE64`): the first 4
/// bytes of SHA-256 of the SSH wire-format public key, which is the base64 part decoded.
pub fn ssh_tag(key: &str) -> Option<String> {
    let blob = STANDARD_NO_PAD.decode(key.strip_prefix("ssh-ed25519 ")?.trim_end_matches('=')).ok()?;
    Some(STANDARD_NO_PAD.encode(&Sha256::digest(&blob)[..4]))
}

/// An age recipient for a canonical key (validation accepted it).
pub fn recipient(key: &str) -> Result<Box<dyn age::Recipient>, Error> {
    let bad = || Error::Key { key: key.to_string() };
    if key.starts_with("age1") {
        Ok(Box::new(key.parse::<age::x25519::Recipient>().map_err(|_| bad())?))
    } else {
        Ok(Box::new(key.parse::<age::ssh::Recipient>().map_err(|_| bad())?))
    }
}

/// The record stanza as a recipient: it wraps nothing, it lists the fingerprints.
pub struct Record(pub Vec<String>);

impl age::Recipient for Record {
    fn wrap_file_key(&self, _: &FileKey) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        Ok((vec![Stanza { tag: RECORD_TAG.to_string(), args: self.0.clone(), body: Vec::new() }], HashSet::new()))
    }
}

/// Where an admin's identity is looked for when `--identity` (or `$IAC_IDENTITY`) names none:
/// an age key file iac's docs suggest (`age-keygen -o ~/.config/iac/age.key`), then the usual
/// OpenSSH key, which many admins already have and may have declared as their `key`.
pub fn default_identities() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else { return Vec::new() };
    vec![home.join(".config/iac/age.key"), home.join(".ssh/id_ed25519")]
}

/// The identity file to use: the one given, else the first default that exists.
pub fn identity_path(given: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let tried = default_identities();
    tried.iter().find(|p| p.is_file()).cloned().ok_or(Error::NoIdentity { tried })
}

/// The identities in `path`: age keys (`AGE-SECRET-KEY-1…` lines, as age-keygen writes them)
/// or one unencrypted OpenSSH ed25519 private key. A passphrase-protected SSH key is refused:
/// iac never prompts.
pub fn load_identities(path: &Path) -> Result<Vec<Box<dyn age::Identity>>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    let bad = |message: String| Error::Identity { path: path.to_path_buf(), message };
    if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
        let id = age::ssh::Identity::from_buffer(BufReader::new(text.as_bytes()), Some(path.display().to_string()))
            .map_err(|e| bad(e.to_string()))?;
        return match id {
            age::ssh::Identity::Unencrypted(_) => Ok(vec![Box::new(id)]),
            age::ssh::Identity::Encrypted(_) => {
                Err(bad("is a passphrase-protected SSH key: iac does not prompt; use an age key (age-keygen) or an unencrypted key".into()))
            }
            age::ssh::Identity::Unsupported(_) => Err(bad("is an SSH key type age cannot decrypt with (use ssh-ed25519)".into())),
        };
    }
    let ids = age::IdentityFile::from_buffer(BufReader::new(text.as_bytes()))
        .map_err(|e| bad(e.to_string()))?
        .into_identities()
        .map_err(|e| bad(e.to_string()))?;
    if ids.is_empty() {
        return Err(bad("holds no age identity (AGE-SECRET-KEY-1…) and no OpenSSH private key".into()));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_tag_is_what_age_writes() {
        // age's own test vector shape: the tag of a key is 4 bytes, 6 base64 characters.
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3pUxCowG1tMDG+T3wfNcX00W4bt1HSkNmHgRJjqW2y";
        assert_eq!(ssh_tag(key).unwrap().len(), 6);
        assert!(ssh_tag("age1xyz").is_none());
        assert_eq!(fingerprint(key).len(), 11);
        assert_ne!(fingerprint(key), fingerprint("age1sr4730t9hmwqf5nlk0tukp9tuekwpjecjjvqxkup7hve7pq4zc0snpe7c6"));
    }
}
