//! New values for `iac secrets init`, by kind, from the operating system's CSPRNG (rand's
//! `OsRng`, i.e. getrandom).
//!
//! - `password`: 32 characters of A-Z, a-z, 0-9 (about 190 bits): nothing in it needs quoting
//!   in a URL, a shell, SQL or YAML, and no trailing newline.
//! - `k3s-token`: 64 lowercase hex characters (256 bits), k3s's "short" token format: the
//!   "secure" format (`K10<CA hash>::server:<password>`) needs the cluster CA's hash, which does
//!   not exist before the first server starts, and k3s starts its first server only from a
//!   short token unless a custom CA is used (docs.k3s.io/cli/token, "Token Format"). k3s uses
//!   the token as the passphrase of the datastore's encryption too: it cannot be changed later
//!   without `k3s token rotate`.
//! - `opaque`: never generated; `iac secrets set NAME`.

use rand::TryRngCore;
use rand::distr::{Alphanumeric, Distribution};
use rand::rngs::OsRng;

use crate::model::SecretKind;

use super::Error;

/// A new random value of `kind`, or `None` for a kind iac does not generate.
pub fn value(kind: SecretKind) -> Result<Option<Vec<u8>>, Error> {
    let mut rng = OsRng.unwrap_err();
    Ok(match kind {
        SecretKind::Password => Some(Alphanumeric.sample_iter(&mut rng).take(32).collect()),
        SecretKind::K3sToken => {
            let mut bytes = [0u8; 32];
            OsRng.try_fill_bytes(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
            Some(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes())
        }
        SecretKind::Opaque => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_their_kinds_shape_and_differ() {
        let p = value(SecretKind::Password).unwrap().unwrap();
        assert_eq!(p.len(), 32);
        assert!(p.iter().all(u8::is_ascii_alphanumeric));
        let t = value(SecretKind::K3sToken).unwrap().unwrap();
        assert_eq!(t.len(), 64);
        assert!(t.iter().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(value(SecretKind::Password).unwrap(), Some(p));
        assert_eq!(value(SecretKind::Opaque).unwrap(), None);
    }
}
