//! `iac secrets check`: for every declared secret, is its file there, and is it encrypted to
//! exactly the recipients the inventory gives it? Needs no identity: it reads headers only.
//!
//! The record stanza names the recipients iac encrypted to (see `keys`); the native stanzas
//! must agree with it: as many X25519 stanzas as the record lists age keys, and one
//! ssh-ed25519 stanza per listed SSH key, with that key's tag. A file without the record was
//! not written by iac (or re-encrypted by hand): it is reported, and `iac secrets rekey`
//! rewrites it.

use std::path::{Path, PathBuf};

use crate::model::{Recipient, Site};

use super::header::{self, StanzaInfo};
use super::keys::{self, RECORD_TAG};

/// What `check` found for one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Ok,
    Missing,
    /// Not an age file, or unreadable.
    Unreadable(String),
    /// No record stanza: whom it is encrypted to cannot be told.
    Unrecorded,
    /// Encrypted to other recipients than the inventory gives it.
    Stale {
        missing: Vec<String>,
        extra: usize,
    },
    /// The record and the native stanzas disagree.
    Mismatch(String),
}

#[derive(Debug, Clone)]
pub struct Status {
    pub name: String,
    pub file: PathBuf,
    pub recipients: Vec<Recipient>,
    pub state: State,
}

impl Status {
    pub fn ok(&self) -> bool {
        self.state == State::Ok
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let who = self.recipients.iter().map(|r| r.owner.to_string()).collect::<Vec<_>>().join(", ");
        let file = self.file.display();
        match &self.state {
            State::Ok => format!("ok        {}: {file}, encrypted to {who}", self.name),
            State::Missing => {
                format!("MISSING   {}: {file} does not exist (iac secrets init, or iac secrets set {})", self.name, self.name)
            }
            State::Unreadable(why) => format!("BROKEN    {}: {file}: {why}", self.name),
            State::Unrecorded => {
                format!("UNKNOWN   {}: {file} has no iac recipient record (not written by iac): iac secrets rekey", self.name)
            }
            State::Stale { missing, extra } => {
                let mut why = Vec::new();
                if !missing.is_empty() {
                    why.push(format!("not encrypted to {}", missing.join(", ")));
                }
                if *extra > 0 {
                    why.push(format!("encrypted to {extra} key(s) the inventory no longer gives it"));
                }
                format!("STALE     {}: {file}: {}: iac secrets rekey", self.name, why.join("; "))
            }
            State::Mismatch(why) => format!("BROKEN    {}: {file}: {why}", self.name),
        }
    }
}

/// The file of secret `name` in `dir`.
pub fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.age"))
}

/// Every declared secret's status, in the order of their names.
pub fn check(site: &Site, dir: &Path) -> Vec<Status> {
    site.secrets
        .iter()
        .map(|s| {
            let file = file(dir, &s.name);
            let recipients = site.recipients(s);
            let state = match std::fs::read(&file) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::Missing,
                Err(e) => State::Unreadable(e.to_string()),
                Ok(bytes) => match header::stanzas(&bytes) {
                    Err(why) => State::Unreadable(why),
                    Ok(stanzas) => judge(&stanzas, &recipients),
                },
            };
            Status { name: s.name.clone(), file, recipients, state }
        })
        .collect()
}

/// Compare a header's stanzas with the recipients it should have.
fn judge(stanzas: &[StanzaInfo], want: &[Recipient]) -> State {
    let Some(record) = stanzas.iter().find(|s| s.tag == RECORD_TAG) else { return State::Unrecorded };
    // The header against its own record.
    let x25519 = stanzas.iter().filter(|s| s.tag == "X25519").count();
    let ssh_tags: Vec<&str> =
        stanzas.iter().filter(|s| s.tag == "ssh-ed25519").filter_map(|s| s.args.first().map(String::as_str)).collect();
    // The record as fingerprints; which of the wanted keys each one is.
    let wanted: Vec<(String, &Recipient)> = want.iter().map(|r| (keys::fingerprint(&r.key), r)).collect();
    let missing: Vec<String> = wanted.iter().filter(|(fp, _)| !record.args.contains(fp)).map(|(_, r)| r.owner.to_string()).collect();
    let extra = record.args.iter().filter(|fp| !wanted.iter().any(|(w, _)| w == *fp)).count();
    if !missing.is_empty() || extra > 0 {
        return State::Stale { missing, extra };
    }
    let want_x25519 = want.iter().filter(|r| r.key.starts_with("age1")).count();
    let mut want_tags: Vec<String> = want.iter().filter_map(|r| keys::ssh_tag(&r.key)).collect();
    let mut have_tags: Vec<String> = ssh_tags.iter().map(|t| t.to_string()).collect();
    want_tags.sort();
    have_tags.sort();
    if x25519 != want_x25519 || want_tags != have_tags || record.args.len() != want.len() {
        return State::Mismatch(format!(
            "its header does not match its recipient record ({x25519} X25519 and {} ssh-ed25519 stanzas for {} recorded keys): \
             re-encrypted by hand? iac secrets rekey",
            have_tags.len(),
            record.args.len()
        ));
    }
    State::Ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RecipientOwner;

    fn r(owner: &str, key: &str) -> Recipient {
        Recipient { owner: RecipientOwner::Admin(owner.into()), key: key.into() }
    }
    fn st(tag: &str, args: &[&str]) -> StanzaInfo {
        StanzaInfo { tag: tag.into(), args: args.iter().map(|a| a.to_string()).collect() }
    }

    const SSH: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3pUxCowG1tMDG+T3wfNcX00W4bt1HSkNmHgRJjqW2y";
    const AGE: &str = "age1sr4730t9hmwqf5nlk0tukp9tuekwpjecjjvqxkup7hve7pq4zc0snpe7c6";

    #[test]
    fn judges_headers_against_the_recipients() {
        let want = [r("a", AGE), r("b", SSH)];
        let fa = keys::fingerprint(AGE);
        let fb = keys::fingerprint(SSH);
        let tag = keys::ssh_tag(SSH).unwrap();
        let good = [st("X25519", &["e"]), st("ssh-ed25519", &[&tag, "e"]), st("x-grease", &[]), st(RECORD_TAG, &[&fa, &fb])];
        assert_eq!(judge(&good, &want), State::Ok);
        assert_eq!(judge(&good[..3], &want), State::Unrecorded);
        let old = [st("X25519", &["e"]), st(RECORD_TAG, &[&fa])];
        assert_eq!(judge(&old, &want), State::Stale { missing: vec!["admin b".into()], extra: 0 });
        assert_eq!(judge(&good, &want[..1]), State::Stale { missing: vec![], extra: 1 });
        // A record that claims what the stanzas do not carry.
        let forged = [st("X25519", &["e"]), st("X25519", &["e"]), st(RECORD_TAG, &[&fa, &fb])];
        assert!(matches!(judge(&forged, &want), State::Mismatch(_)));
    }
}
