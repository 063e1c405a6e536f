//! `secrets.nix` and `iac-secrets.sh` for a host with a declared `host_key` (agenix's model):
//! a oneshot unit that decrypts the host's secrets with its SSH host key into their declared
//! paths before the services that read them start, and requires nothing but `pkgs.age`.
//!
//! The ciphertext travels as store paths (`${../../secrets/NAME.age}` from `generated/HOST/`,
//! the repository's `secrets/` beside `generated/`, which the flake's source holds); the value
//! exists in clear only on the host, at its declared path. The script is a fixed file
//! (`scripts/iac-secrets.sh`, the same for every host) and every value reaches it as an
//! argument, so the text a reviewer reads is the text the unit runs; the tests run it, taken
//! from the module as Nix evaluates it, with Debian's `age` against an `ssh-keygen` host key.
//!
//! Why a unit and not an activation script (agenix uses one): a unit can fail on its own,
//! with its message in its journal, and take down exactly the services that require it;
//! `requiredBy` + `before` are the units that read the files (`Site::secret_readers_units`:
//! `k3s.service`, from nixpkgs' services/cluster/rancher/default.nix `systemd.services.${serviceName}`
//! with serviceName k3s, and `postgresql-setup.service`, whose LoadCredential reads the
//! password: nixos/modules/services/databases/postgresql.nix `systemd.services.postgresql-setup`).
//! Why directly at the declared path and not a symlink into a tmpfs (agenix's
//! /run/agenix): the default path of a decrypted secret is already on a tmpfs
//! (`/run/secrets/NAME`), a service and the deploy preflight then see a regular file with
//! the declared owner and mode, and the script refuses a directory that someone other than
//! root could write to (where the file could be swapped).
//!
//! The script needs only `age` (by its store path) and what every NixOS unit has on its PATH:
//! coreutils, findutils, gnugrep, gnused and systemd (the default `path` of a unit,
//! nixos/lib/systemd-lib.nix), for `mktemp`, `chown`, `chmod`, `mv` and `find`.

use askama::Template;

use super::{Error, filters, template_error};
use crate::escape;
use crate::model::{Delivery, Host, Site};

/// The unit's name.
pub const UNIT: &str = "iac-secrets";
/// The script, beside the module in `generated/HOST/`.
pub const SCRIPT_FILE: &str = "iac-secrets.sh";
pub const SCRIPT: &str = include_str!("scripts/iac-secrets.sh");
/// The host key NixOS's OpenSSH generates (services.openssh.hostKeys' ed25519 entry): the key
/// `ssh-keyscan -t ed25519` reports, and so the one the secrets are encrypted to.
pub const HOST_KEY_PATH: &str = "/etc/ssh/ssh_host_ed25519_key";
/// The repository's directory of encrypted secrets, a sibling of the rendered tree.
pub const SECRETS_DIR: &str = "secrets";

#[derive(Template)]
#[template(path = "secrets.nix")]
struct SecretsTemplate<'a> {
    host: &'a str,
    unit: &'static str,
    units: Vec<&'static str>,
    script: &'static str,
    identity: &'static str,
    secrets_dir: &'static str,
    secrets: Vec<SecretView>,
}

struct SecretView {
    name: String,
    path: String,
    owner: String,
    group: String,
    mode: String,
}

/// The module, or `None` when the host has no host key or reads no secret.
pub fn module(site: &Site, host: &Host) -> Result<Option<String>, Error> {
    if Delivery::of(host) != Delivery::Activation {
        return Ok(None);
    }
    let files = site.secret_files(host);
    if files.is_empty() {
        return Ok(None);
    }
    let file = format!("{}/secrets.nix", host.name);
    let word = |w: &str| -> Result<String, Error> {
        escape::sh::word(w).map(str::to_string).map_err(|e| Error::Render { file: file.clone(), message: format!("`{w}`: {e}") })
    };
    let secrets = files
        .iter()
        .map(|f| {
            Ok(SecretView {
                name: word(&f.secret)?,
                path: word(&f.path)?,
                owner: word(&f.owner)?,
                group: word(&f.group)?,
                mode: format!("{:04o}", f.mode),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let t = SecretsTemplate {
        host: &host.name,
        unit: UNIT,
        units: site.secret_readers_units(host),
        script: SCRIPT_FILE,
        identity: HOST_KEY_PATH,
        secrets_dir: SECRETS_DIR,
        secrets,
    };
    let mut out = t.render().map_err(|e| template_error(&file, e))?;
    out.push('\n');
    Ok(Some(out))
}
