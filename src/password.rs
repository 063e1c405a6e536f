//! Where a password comes from, and how it is read: one rule for every command that takes one
//! (`iac apply` for the pipeline's Secret, `iac query` for its connection).
//!
//! The rule for a file: its content, less exactly one trailing `\n`. The password a database
//! owner logs in with is set on the host by the setup unit (`render::postgres::setup_sql`)
//! with psql's `\set password `cat FILE``, and psql strips exactly one trailing newline from a
//! backquoted command's output, nothing else (`evaluate_backtick` in
//! src/bin/psql/psqlscanslash.l of postgres/postgres: "strip any trailing newline", one
//! `'\n'`, no `'\r'`). Reading the same file the same way is the only rule under which the
//! password iac sends equals the one the server holds: a file ending in "\r\n" or "\n\n"
//! makes a password ending in "\r" or "\n" on the server too, so iac keeps them. (Before
//! this module, `iac apply` also dropped a `\r` and `iac query` every trailing `\r` and `\n`,
//! so the two commands could send different passwords from one file.)
//!
//! A declared secret (`secrets/NAME.age`, decrypted with an admin's identity: the default of
//! `iac apply`) is read by the same rule, applied to its plaintext: the host's file holds the
//! plaintext as it is, and psql's backquotes read it so.
//!
//! An empty password is refused: it is always a mistake (an empty file, a variable set to
//! nothing), and PostgreSQL's scram-sha-256 never accepts one. Values never appear in
//! messages.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where to read a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// A file holding only the password.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A declared secret's age file, decrypted with an admin's identity (`None`: the default
    /// identity, see `secrets::keys`).
    Secret { file: PathBuf, identity: Option<PathBuf> },
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The variable is not set (or not Unicode).
    #[error("the environment variable {0} is not set")]
    Unset(String),
    #[error("{0} is empty")]
    Empty(PasswordSource),
    #[error(transparent)]
    Secret(#[from] crate::secrets::Error),
    #[error("{0} does not hold UTF-8 text")]
    NotText(PasswordSource),
}

impl PasswordSource {
    /// Read the password from the file or the process environment.
    pub fn read(&self) -> Result<String, PasswordError> {
        self.read_with(&|var| std::env::var(var).ok())
    }

    /// Read the password, looking variables up with `env` (so tests need not touch the
    /// process environment).
    pub fn read_with(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, PasswordError> {
        let value = match self {
            Self::File(path) => read_file(path)?,
            Self::Env(var) => env(var).ok_or_else(|| PasswordError::Unset(var.clone()))?,
            Self::Secret { file, identity } => {
                let bytes = std::fs::read(file).map_err(|source| PasswordError::Read { path: file.clone(), source })?;
                let identity = crate::secrets::Identity::load(identity.as_deref())?;
                let plain = crate::secrets::decrypt_bytes(file, &bytes, &identity)?;
                let mut text = String::from_utf8(plain).map_err(|_| PasswordError::NotText(self.clone()))?;
                if text.ends_with('\n') {
                    text.pop();
                }
                text
            }
        };
        if value.is_empty() {
            return Err(PasswordError::Empty(self.clone()));
        }
        Ok(value)
    }
}

/// The identity file a [`PasswordSource::Secret`] would decrypt with: `given` (`--identity`,
/// `$IAC_IDENTITY`), else the first default that exists (`secrets::keys::default_identities`).
/// `None` when nothing was given and no default exists: a caller for whom the declared secret
/// is one source among several (`iac query`) then moves on instead of failing.
pub fn find_identity(given: Option<&Path>) -> Option<PathBuf> {
    crate::secrets::keys::identity_path(given).ok()
}

/// The file of the declared secret `name` in `dir` (`DIR/NAME.age`).
pub fn secret_file(dir: &Path, name: &str) -> PathBuf {
    crate::secrets::file(dir, name)
}

/// A file as psql's backquotes read it: everything, less one trailing `\n`.
fn read_file(path: &Path) -> Result<String, PasswordError> {
    let mut text = std::fs::read_to_string(path).map_err(|source| PasswordError::Read { path: path.to_path_buf(), source })?;
    if text.ends_with('\n') {
        text.pop();
    }
    Ok(text)
}

/// The file's path, or `$VAR`: never the value.
impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) | Self::Secret { file: p, .. } => write!(f, "{}", p.display()),
            Self::Env(v) => write!(f, "${v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_file(content: &str) -> Result<String, PasswordError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, content).unwrap();
        PasswordSource::File(p).read()
    }

    #[test]
    fn a_file_loses_exactly_one_trailing_newline() {
        assert_eq!(from_file("s3cret\n").unwrap(), "s3cret");
        assert_eq!(from_file("s3cret").unwrap(), "s3cret");
        // What psql's backquotes leave, and so what the server holds.
        assert_eq!(from_file("s3cret\n\n").unwrap(), "s3cret\n");
        assert_eq!(from_file("s3cret\r\n").unwrap(), "s3cret\r");
        assert_eq!(from_file(" s3 cret \n").unwrap(), " s3 cret ");
    }

    #[test]
    fn empty_is_refused_naming_the_source_not_a_value() {
        let e = from_file("\n").unwrap_err().to_string();
        assert!(e.ends_with("pw is empty"), "{e}");
        let env = |_: &str| Some(String::new());
        let e = PasswordSource::Env("PW".into()).read_with(&env).unwrap_err().to_string();
        assert_eq!(e, "$PW is empty");
    }

    #[test]
    fn an_unset_variable_is_named() {
        let e = PasswordSource::Env("IAC_TEST_SURELY_UNSET_VAR".into()).read().unwrap_err();
        assert!(matches!(&e, PasswordError::Unset(v) if v == "IAC_TEST_SURELY_UNSET_VAR"), "{e}");
        let env = |v: &str| (v == "PW").then(|| "from-env".to_owned());
        assert_eq!(PasswordSource::Env("PW".into()).read_with(&env).unwrap(), "from-env");
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let e = PasswordSource::File("/nonexistent/iac-pw".into()).read().unwrap_err().to_string();
        assert!(e.starts_with("cannot read /nonexistent/iac-pw: "), "{e}");
    }
}
