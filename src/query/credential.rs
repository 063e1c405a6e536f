//! The password of `iac query`'s connection (and so of `iac drift`'s PostgreSQL part): where
//! it comes from, in which order, and the name of its source that `iac query conninfo` shows
//! (never the value). The settings themselves are `settings`'s.

use std::fmt;
use std::path::PathBuf;

use super::QueryError;
use super::pgpass;
use super::settings::{Defaults, Flags, Settings};
use crate::password::{PasswordError, PasswordSource};
use crate::reporter::Reporter;

/// A database of the inventory, its owner, and the declared secret that is the owner's
/// password (`databases.NAME.password`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredPassword {
    pub database: String,
    pub owner: String,
    pub secret: String,
}

impl DeclaredPassword {
    /// The declared passwords of `databases`.
    pub fn of<'d>(databases: impl IntoIterator<Item = &'d crate::model::Database>) -> Vec<DeclaredPassword> {
        databases
            .into_iter()
            .map(|d| DeclaredPassword { database: d.name.clone(), owner: d.owner.clone(), secret: d.password.clone() })
            .collect()
    }
}

/// `--secrets-dir` and `--identity` (or `$IAC_IDENTITY`).
#[derive(Debug, Clone, Default)]
pub struct SecretsFlags {
    /// The directory of `NAME.age` files.
    pub dir: PathBuf,
    /// The admin identity; `None`: the default files (`~/.config/iac/age.key`, `~/.ssh/id_ed25519`).
    pub identity: Option<PathBuf>,
}

/// Which source gave the password; shown by `iac query conninfo` (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordFrom {
    None,
    /// `--password-file` or `PGPASSWORD`, read by the crate's one rule (`crate::password`).
    Source(PasswordSource),
    /// The declared secret `secret` (its age file), decrypted with the admin identity `identity`.
    Declared {
        secret: String,
        file: PathBuf,
        identity: PathBuf,
    },
    /// A line of the pgpass file (`~/.pgpass` or `$PGPASSFILE`), as libpq reads it.
    PgPass(PathBuf),
}

impl fmt::Display for PasswordFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordFrom::None => f.write_str("none"),
            PasswordFrom::Source(PasswordSource::File(p)) => write!(f, "--password-file {}", p.display()),
            PasswordFrom::Source(PasswordSource::Env(var)) => f.write_str(var),
            PasswordFrom::Source(PasswordSource::Secret { file, .. }) => write!(f, "secret {}", file.display()),
            PasswordFrom::Declared { secret, file, identity } => {
                write!(f, "declared secret {secret} ({}) with identity {}", file.display(), identity.display())
            }
            PasswordFrom::PgPass(p) => write!(f, "pgpass file {}", p.display()),
        }
    }
}

/// Find the password: `--password-file`, then `PGPASSWORD` (when set and not empty, as libpq
/// reads it), then the declared secret of the database connected to, then the pgpass file. A
/// pgpass file that cannot be used is a warning to `report`, not an error: the server may not
/// ask for a password at all.
///
/// Why this order. The two given for this run, `--password-file` and `PGPASSWORD`, win, as
/// `PGPASSWORD` beats `~/.pgpass` for every libpq program: they are how an admin says "this
/// password, now" (another role's, a rotation not deployed yet, a secret they cannot decrypt).
/// The declared secret comes before the pgpass file because it is the source of truth: the
/// database host's setup unit sets the owner's password from exactly this secret, so after
/// `iac secrets set` and a deploy a pgpass line is a stale copy, and one that would win would
/// fail with the right password in the repository. The secret is the owner's password only:
/// it is used when the connection's user is the owner of the inventory database of the
/// connection's name (`defaults.passwords`), never for `--dsn user=postgres` or another
/// `PGUSER`, whose passwords stay with the pgpass file. The server's address is not compared:
/// an SSH tunnel or a port forward (`PGHOST=localhost`) reaches the same database.
///
/// The secret is read only when its file exists and an identity is found (`--identity`,
/// `$IAC_IDENTITY`, else a default file); without either, on to the pgpass file, silently (a
/// clone without `secrets/`, a machine without an admin key). An identity that is there but
/// does not decrypt the file is an error naming the file and the identity, not a fall-through:
/// a wrong key would otherwise surface as a puzzling authentication failure.
pub fn load_password(
    settings: &mut Settings,
    env: &dyn Fn(&str) -> Option<String>,
    defaults: &Defaults,
    flags: &Flags,
    report: &dyn Reporter,
) -> Result<(), QueryError> {
    if let Some(path) = &flags.password_file {
        let source = PasswordSource::File(path.clone());
        let password = source.read_with(env).map_err(|e| match e {
            PasswordError::Read { source, .. } => QueryError::Config(format!("cannot read --password-file {}: {source}", path.display())),
            other => QueryError::Config(format!("--password-file: {other}")),
        })?;
        settings.config.password(password);
        settings.password_from = PasswordFrom::Source(source);
        return Ok(());
    }
    let source = PasswordSource::Env("PGPASSWORD".into());
    if let Ok(password) = source.read_with(env) {
        settings.config.password(password);
        settings.password_from = PasswordFrom::Source(source);
        return Ok(());
    }
    if let Some((password, from)) = declared_secret(settings, defaults, flags)? {
        settings.config.password(password);
        settings.password_from = from;
        return Ok(());
    }
    let path = match env("PGPASSFILE").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => match env("HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home).join(".pgpass"),
            None => return Ok(()),
        },
    };
    let host = settings.host();
    let key = pgpass::Key { host: &host, port: settings.port(), database: settings.dbname(), user: settings.user() };
    match pgpass::lookup(&path, key) {
        Ok(pgpass::Lookup::Found(pw)) => {
            settings.config.password(pw);
            settings.password_from = PasswordFrom::PgPass(path);
        }
        Ok(pgpass::Lookup::TooOpen(mode)) => {
            report.warning(&format!("ignoring password file {}: mode {mode:o} lets others read it (chmod 600)", path.display()))
        }
        Ok(pgpass::Lookup::NoMatch | pgpass::Lookup::Missing) => {}
        Err(e) => report.warning(&format!("cannot read password file {}: {e}", path.display())),
    }
    Ok(())
}

/// The owner's password from the declared secret of the database the settings connect to, with
/// where it came from; `None` when it does not apply or cannot be tried (see [`load_password`]).
fn declared_secret(settings: &Settings, defaults: &Defaults, flags: &Flags) -> Result<Option<(String, PasswordFrom)>, QueryError> {
    let Some(secrets) = &flags.secrets else { return Ok(None) };
    let Some(declared) = defaults.passwords.iter().find(|d| d.database == settings.dbname() && d.owner == settings.user()) else {
        return Ok(None);
    };
    let file = crate::password::secret_file(&secrets.dir, &declared.secret);
    if !file.is_file() {
        return Ok(None);
    }
    let Some(identity) = crate::password::find_identity(secrets.identity.as_deref()) else { return Ok(None) };
    let source = PasswordSource::Secret { file: file.clone(), identity: Some(identity.clone()) };
    let password = source.read().map_err(|e| {
        QueryError::Config(format!(
            "the password of {owner} (owner of database {db}) is the declared secret {secret}: {e}; --identity names an admin key \
             of the inventory, or PGPASSWORD or --password-file give the password",
            owner = declared.owner,
            db = declared.database,
            secret = declared.secret,
        ))
    })?;
    Ok(Some((password, PasswordFrom::Declared { secret: declared.secret.clone(), file, identity })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::settings::resolve;
    use crate::query::settings::tests::{self as settings_tests, env};
    use crate::reporter::Silent;
    use std::path::Path;

    fn inventory() -> Defaults {
        Defaults {
            passwords: vec![
                DeclaredPassword { database: "kafka".into(), owner: "kafka".into(), secret: "kafka-db".into() },
                DeclaredPassword { database: "metrics".into(), owner: "grafana".into(), secret: "metrics-db".into() },
            ],
            ..settings_tests::inventory()
        }
    }

    /// A new age identity in `DIR/NAME.key`; `value` encrypted to it as `DIR/secrets/SECRET.age`.
    fn encrypted(dir: &Path, name: &str, secret: &str, value: &str) -> PathBuf {
        use age::secrecy::ExposeSecret;
        use std::io::Write;
        let id = age::x25519::Identity::generate();
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&key, format!("{}\n", id.to_string().expose_secret())).unwrap();
        let recipient = id.to_public();
        let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient)).unwrap();
        let mut out = Vec::new();
        let mut w = encryptor.wrap_output(&mut out).unwrap();
        w.write_all(value.as_bytes()).unwrap();
        w.finish().unwrap();
        std::fs::create_dir_all(dir.join("secrets")).unwrap();
        std::fs::write(crate::password::secret_file(&dir.join("secrets"), secret), out).unwrap();
        key
    }

    fn with_secrets(dir: &Path, identity: &Path) -> Flags {
        Flags { secrets: Some(SecretsFlags { dir: dir.join("secrets"), identity: Some(identity.to_owned()) }), ..Flags::default() }
    }

    /// The password `load_password` finds under `e` and `flags`, and its source's name.
    fn found(e: &dyn Fn(&str) -> Option<String>, flags: &Flags) -> Result<(Option<String>, String), QueryError> {
        let mut s = resolve(&inventory(), e, flags)?;
        load_password(&mut s, e, &inventory(), flags, &Silent)?;
        Ok((s.config.get_password().map(|p| String::from_utf8(p.to_vec()).unwrap()), s.password_from.to_string()))
    }

    #[test]
    fn the_declared_secret_after_pgpassword_and_before_pgpass() {
        let dir = tempfile::tempdir().unwrap();
        let admin = encrypted(dir.path(), "admin", "kafka-db", "from-secret\n");
        let file = dir.path().join("secrets/kafka-db.age");
        let flags = with_secrets(dir.path(), &admin);
        // A pgpass line for the same connection: the secret wins over it.
        let pgpass = dir.path().join("pgpass");
        std::fs::write(&pgpass, "*:*:*:*:from-pgpass\n").unwrap();
        std::fs::set_permissions(&pgpass, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600)).unwrap();
        let pgpassfile = pgpass.display().to_string();
        let e = env(&[("PGPASSFILE", &pgpassfile)]);
        let want = format!("declared secret kafka-db ({}) with identity {}", file.display(), admin.display());
        assert_eq!(found(&e, &flags).unwrap(), (Some("from-secret".into()), want));
        // PGPASSWORD beats it.
        let e2 = env(&[("PGPASSFILE", &pgpassfile), ("PGPASSWORD", "from-env")]);
        assert_eq!(found(&e2, &flags).unwrap(), (Some("from-env".into()), "PGPASSWORD".into()));
        // Without the secrets (no --secrets-dir given, a file that is not there): the pgpass line.
        let from_pgpass = (Some("from-pgpass".into()), format!("pgpass file {pgpassfile}"));
        assert_eq!(found(&e, &Flags::default()).unwrap(), from_pgpass);
        std::fs::rename(&file, dir.path().join("moved.age")).unwrap();
        assert_eq!(found(&e, &flags).unwrap(), from_pgpass);
    }

    #[test]
    fn the_secret_is_the_owners_of_the_database_connected_to() {
        let dir = tempfile::tempdir().unwrap();
        let admin = encrypted(dir.path(), "admin", "kafka-db", "kafka-pw");
        encrypted(dir.path(), "other", "metrics-db", "metrics-pw");
        // Another user of the same database, or the owner in another database: not theirs.
        for vars in [&[("PGUSER", "postgres")][..], &[("PGDATABASE", "postgres")], &[("PGUSER", "grafana")]] {
            assert_eq!(found(&env(vars), &with_secrets(dir.path(), &admin)).unwrap(), (None, "none".into()), "{vars:?}");
        }
        let flags = Flags { dsn: Some("user=postgres".into()), ..with_secrets(dir.path(), &admin) };
        assert_eq!(found(&env(&[]), &flags).unwrap(), (None, "none".into()));
        // The other database's owner gets that database's own secret.
        let other = dir.path().join("other.key");
        let e = env(&[("PGUSER", "grafana"), ("PGDATABASE", "metrics")]);
        assert_eq!(found(&e, &with_secrets(dir.path(), &other)).unwrap().0.as_deref(), Some("metrics-pw"));
    }

    #[test]
    fn an_identity_that_cannot_decrypt_is_an_error_naming_file_and_identity() {
        let dir = tempfile::tempdir().unwrap();
        encrypted(dir.path(), "admin", "kafka-db", "s3cret-value");
        let stranger = dir.path().join("stranger.key");
        std::fs::write(
            &stranger,
            format!("{}\n", age::secrecy::ExposeSecret::expose_secret(&age::x25519::Identity::generate().to_string())),
        )
        .unwrap();
        let err = found(&env(&[]), &with_secrets(dir.path(), &stranger)).unwrap_err();
        let text = err.to_string();
        let file = dir.path().join("secrets/kafka-db.age");
        assert!(
            text.starts_with(&format!(
                "the password of kafka (owner of database kafka) is the declared secret kafka-db: cannot decrypt {} with {}: it is not \
                 encrypted to this identity's key;",
                file.display(),
                stranger.display()
            )),
            "{text}"
        );
        assert!(!text.contains("s3cret-value"));
        assert_eq!(err.exit_code(), 1);
        // PGPASSWORD is never in its way.
        assert_eq!(found(&env(&[("PGPASSWORD", "pw")]), &with_secrets(dir.path(), &stranger)).unwrap().0.as_deref(), Some("pw"));
    }

    #[test]
    fn password_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let e = env(&[("PGPASSWORD", "from-env")]);
        let mut s = resolve(&inventory(), &e, &Flags::default()).unwrap();
        let flags = Flags { password_file: Some(file.clone()), ..Flags::default() };
        load_password(&mut s, &e, &inventory(), &flags, &Silent).unwrap();
        assert_eq!(s.config.get_password(), Some(&b"from-file"[..]));
        assert_eq!(s.password_from.to_string(), format!("--password-file {}", file.display()));
        let mut s = resolve(&inventory(), &e, &Flags::default()).unwrap();
        load_password(&mut s, &e, &inventory(), &Flags::default(), &Silent).unwrap();
        assert_eq!(s.config.get_password(), Some(&b"from-env"[..]));
        assert_eq!(s.password_from.to_string(), "PGPASSWORD");
        // An empty PGPASSWORD counts as unset (libpq): on to the pgpass file, here none.
        let e = env(&[("PGPASSWORD", "")]);
        let mut s = resolve(&inventory(), &e, &Flags::default()).unwrap();
        load_password(&mut s, &e, &inventory(), &Flags::default(), &Silent).unwrap();
        assert_eq!((s.config.get_password(), s.password_from), (None, PasswordFrom::None));
    }

    #[test]
    fn a_password_file_is_read_by_the_one_rule() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        let flags = Flags { password_file: Some(file.clone()), ..Flags::default() };
        // One newline goes, as psql's backquotes drop it on the server's side; a \r stays.
        std::fs::write(&file, "pw\r\n").unwrap();
        let mut s = resolve(&inventory(), &env(&[]), &Flags::default()).unwrap();
        load_password(&mut s, &env(&[]), &inventory(), &flags, &Silent).unwrap();
        assert_eq!(s.config.get_password(), Some(&b"pw\r"[..]));
        std::fs::write(&file, "\n").unwrap();
        let err = load_password(&mut s, &env(&[]), &inventory(), &flags, &Silent).unwrap_err().to_string();
        assert_eq!(err, format!("--password-file: {} is empty", file.display()));
    }
}
