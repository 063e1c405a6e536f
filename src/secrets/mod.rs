//! `iac secrets`: every secret the estate needs, encrypted in the repository
//! (`secrets/NAME.age`, age v1 format) to the admins' keys and the host keys of the hosts
//! that consume it. An edge module: it reads and writes those files, and decrypts with an
//! admin's identity for `show`, `rekey`, `iac deploy` (pushed secrets) and `iac apply` (the
//! cluster's Secrets). docs/secrets.md has the model.
//!
//! `keys` (recipients, the record stanza, identities), `header` (what a file's header says),
//! `crypt` (the age crate), `generate` (new values by kind), `check` (files against the
//! inventory). Values never appear in a message.

pub mod check;
mod crypt;
mod generate;
pub mod header;
pub mod keys;

use std::path::{Path, PathBuf};

use crate::model::{SecretKind, Site};
use crate::reporter::Reporter;

pub use check::{State, Status, check, file};

/// The repository's directory of encrypted secrets, beside `generated/` (the generated NixOS
/// modules reference `../../secrets/NAME.age`).
pub const DEFAULT_DIR: &str = crate::render::secrets::SECRETS_DIR;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown secret `{name}` (the inventory declares: {known})")]
    Unknown { name: String, known: String },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{key} is not a key age can encrypt to")]
    Key { key: String },
    #[error("no identity to decrypt with: pass --identity FILE (or set IAC_IDENTITY); looked for {}", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NoIdentity { tried: Vec<PathBuf> },
    #[error("the identity {} {message}", path.display())]
    Identity { path: PathBuf, message: String },
    #[error("cannot encrypt secret `{name}`: {message}")]
    Encrypt { name: String, message: String },
    #[error("cannot decrypt {what}: {message}")]
    Decrypt { what: String, message: String },
    #[error("secret `{name}` would be empty")]
    Empty { name: String },
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error("secrets not ready:\n{0}")]
    NotReady(String),
}

/// An admin's identity, loaded once.
pub struct Identity {
    pub path: PathBuf,
    ids: Vec<Box<dyn age::Identity>>,
}

impl Identity {
    /// The identity in `given`, or in the first default file that exists (see
    /// `keys::default_identities`).
    pub fn load(given: Option<&Path>) -> Result<Self, Error> {
        let path = keys::identity_path(given)?;
        let ids = keys::load_identities(&path)?;
        Ok(Self { path, ids })
    }
}

/// The encrypted secrets of an estate: the inventory's declarations and the directory.
pub struct Store<'s> {
    pub site: &'s Site,
    pub dir: PathBuf,
}

impl<'s> Store<'s> {
    pub fn new(site: &'s Site, dir: impl Into<PathBuf>) -> Self {
        Self { site, dir: dir.into() }
    }

    fn declared(&self, name: &str) -> Result<&'s crate::model::Secret, Error> {
        self.site.secret(name).ok_or_else(|| Error::Unknown {
            name: name.to_string(),
            known: self.site.secrets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        check::file(&self.dir, name)
    }

    /// Every declared secret's status.
    pub fn check(&self) -> Vec<Status> {
        check::check(self.site, &self.dir)
    }

    /// `Err(NotReady)` listing every secret that is not `ok`: for the deploy preflight.
    pub fn require_ready(&self) -> Result<Vec<Status>, Error> {
        let statuses = self.check();
        let bad: Vec<String> = statuses.iter().filter(|s| !s.ok()).map(Status::line).collect();
        if bad.is_empty() { Ok(statuses) } else { Err(Error::NotReady(bad.join("\n"))) }
    }

    /// Encrypt `value` to secret `name`'s recipients and write it (atomically: a temporary
    /// file in the directory, renamed over the old one).
    pub fn write(&self, name: &str, value: &[u8]) -> Result<PathBuf, Error> {
        let secret = self.declared(name)?;
        if value.is_empty() {
            return Err(Error::Empty { name: name.to_string() });
        }
        let bytes = crypt::encrypt(name, value, &self.site.recipients(secret))?;
        let path = self.file(name);
        write_atomic(&self.dir, &path, &bytes)?;
        Ok(path)
    }

    /// The plaintext of secret `name`, decrypted with `identity`.
    pub fn value(&self, name: &str, identity: &Identity) -> Result<Vec<u8>, Error> {
        self.declared(name)?;
        let path = self.file(name);
        let bytes = std::fs::read(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
        decrypt_bytes(&path, &bytes, identity)
    }

    /// Generate every missing secret of a kind iac generates; existing files are left exactly
    /// as they are. Reports each secret; returns the names of those still missing (`opaque`).
    pub fn init(&self, report: &dyn Reporter) -> Result<Vec<String>, Error> {
        let mut pending = Vec::new();
        for secret in &self.site.secrets {
            let path = self.file(&secret.name);
            if path.exists() {
                report.result(&format!("exists    {}: {} (left as it is)", secret.name, path.display()));
                continue;
            }
            match generate::value(secret.kind)? {
                Some(value) => {
                    self.write(&secret.name, &value)?;
                    report.result(&format!("created   {}: {} ({})", secret.name, path.display(), kind_name(secret.kind)));
                }
                None => {
                    report.warning(&format!("{}: kind opaque is never generated: iac secrets set {} < FILE", secret.name, secret.name));
                    pending.push(secret.name.clone());
                }
            }
        }
        Ok(pending)
    }

    /// Re-encrypt every secret whose file is not encrypted to exactly its recipients (every
    /// existing one with `all`), decrypting with `identity`. Missing files are left to `init`.
    /// Returns how many files were rewritten.
    pub fn rekey(&self, identity: &Identity, all: bool, report: &dyn Reporter) -> Result<usize, Error> {
        let mut rewritten = 0;
        for status in self.check() {
            match status.state {
                State::Missing => report.warning(&format!("{}: no file to rekey (iac secrets init)", status.name)),
                State::Ok if !all => report.result(&format!("ok        {}: already encrypted to its recipients", status.name)),
                _ => {
                    let value = self.value(&status.name, identity)?;
                    self.write(&status.name, &value)?;
                    let who = status.recipients.iter().map(|r| r.owner.to_string()).collect::<Vec<_>>().join(", ");
                    report.result(&format!("rekeyed   {}: encrypted to {who}", status.name));
                    rewritten += 1;
                }
            }
        }
        Ok(rewritten)
    }
}

/// Decrypt the bytes of the age file at `path`.
pub fn decrypt_bytes(path: &Path, bytes: &[u8], identity: &Identity) -> Result<Vec<u8>, Error> {
    crypt::decrypt(&format!("{} with {}", path.display(), identity.path.display()), bytes, &identity.ids)
}

/// A kind as the inventory writes it.
pub fn kind_name(kind: SecretKind) -> &'static str {
    match kind {
        SecretKind::Password => "password",
        SecretKind::K3sToken => "k3s-token",
        SecretKind::Opaque => "opaque",
    }
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let err = |source| Error::Write { path: path.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::Builder::new().prefix(".iac-secret").tempfile_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    // Ciphertext, to be committed: as readable as any file of the repository.
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}
