//! Encrypting a value to a secret's recipients and decrypting it with an identity, with the
//! `age` crate (the rage project), in the age v1 format that `age` and `rage` read.

use std::io::{Read, Write};

use crate::model::Recipient;

use super::Error;
use super::keys::{self, Record};

/// `value` encrypted to `recipients`, with iac's record stanza listing them.
pub fn encrypt(name: &str, value: &[u8], recipients: &[Recipient]) -> Result<Vec<u8>, Error> {
    let fail = |message: String| Error::Encrypt { name: name.to_string(), message };
    let mut boxed = recipients.iter().map(|r| keys::recipient(&r.key)).collect::<Result<Vec<_>, _>>()?;
    boxed.push(Box::new(Record(recipients.iter().map(|r| keys::fingerprint(&r.key)).collect())));
    let encryptor =
        age::Encryptor::with_recipients(boxed.iter().map(|r| r.as_ref() as &dyn age::Recipient)).map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::new();
    let mut writer = encryptor.wrap_output(&mut out).map_err(|e| fail(e.to_string()))?;
    writer.write_all(value).map_err(|e| fail(e.to_string()))?;
    writer.finish().map_err(|e| fail(e.to_string()))?;
    Ok(out)
}

/// The plaintext of `file` (the bytes of an age file), decrypted with `identities`; `what`
/// names the file in errors.
pub fn decrypt(what: &str, file: &[u8], identities: &[Box<dyn age::Identity>]) -> Result<Vec<u8>, Error> {
    let fail = |message: String| Error::Decrypt { what: what.to_string(), message };
    let decryptor = age::Decryptor::new_buffered(file).map_err(|e| fail(e.to_string()))?;
    let mut reader = decryptor.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity)).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => fail("it is not encrypted to this identity's key".into()),
        other => fail(other.to_string()),
    })?;
    let mut value = Vec::new();
    reader.read_to_end(&mut value).map_err(|e| fail(e.to_string()))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RecipientOwner;
    use crate::secrets::{header, keys};

    #[test]
    fn round_trip_to_every_recipient_with_the_record() {
        let (a, b) = (age::x25519::Identity::generate(), age::x25519::Identity::generate());
        let recipients: Vec<Recipient> = [&a, &b]
            .iter()
            .enumerate()
            .map(|(i, id)| Recipient { owner: RecipientOwner::Admin(i.to_string()), key: id.to_public().to_string() })
            .collect();
        let file = encrypt("s", b"value\n", &recipients).unwrap();
        let stanzas = header::stanzas(&file).unwrap();
        assert_eq!(stanzas.iter().filter(|s| s.tag == "X25519").count(), 2);
        let record = stanzas.iter().find(|s| s.tag == keys::RECORD_TAG).unwrap();
        assert_eq!(record.args, recipients.iter().map(|r| keys::fingerprint(&r.key)).collect::<Vec<_>>());
        for id in [a, b] {
            let ids: Vec<Box<dyn age::Identity>> = vec![Box::new(id)];
            assert_eq!(decrypt("s", &file, &ids).unwrap(), b"value\n");
        }
        let stranger: Vec<Box<dyn age::Identity>> = vec![Box::new(age::x25519::Identity::generate())];
        let e = decrypt("secrets/s.age", &file, &stranger).unwrap_err().to_string();
        assert_eq!(e, "cannot decrypt secrets/s.age: it is not encrypted to this identity's key");
    }
}
