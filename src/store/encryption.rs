//! Client-side encryption of a location's objects in the age format
//! (<https://age-encryption.org/v1>, the `age` crate), so that a leaked bucket leaks no Secret
//! and the plain `age` command decrypts every file without tidemark.
//!
//! What is encrypted: every object tidemark writes under `backups/` and `restores/` except
//! `velero-backup.json`, which stays plain so that listings, sync and Velero's own tooling still
//! see that a backup exists (it holds names, counts and options, no object content). Pod volume
//! data (`restic/`, `kopia/`) is left alone: restic encrypts its repositories itself.
//!
//! What is decrypted: any object that starts with age's header line, whatever the location's
//! configuration says, so a bucket mixing plain backups (older ones, Velero's) and encrypted
//! ones reads fine; an encrypted object met without a key is a clear error
//! ([`EncryptionError::NoKey`]).
//!
//! Keys: X25519 identities (`AGE-SECRET-KEY-1...`, as `age-keygen` writes them), whose public
//! keys (`age1...`) are the recipients, plus extra recipients (another team's or an escrow key;
//! key rotation: add the new key's recipient, later drop the old identity); or a passphrase
//! (age's scrypt recipient). age cannot mix a passphrase with other recipients in one file.

use std::io::{Read, Write};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use age::secrecy::SecretString;
use bytes::Bytes;

/// The first line of every age file.
pub const AGE_HEADER: &[u8] = b"age-encryption.org/v1\n";

/// Errors of encryption and decryption. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The key configuration is unusable (names the part at fault).
    #[error("encryption keys: {0}")]
    InvalidKeys(String),
    /// An encrypted object was met and no identity or passphrase was given.
    #[error(
        "{0} is encrypted (age): give the location's key (--encryption-key-file, or the Location's spec.encryption Secret)"
    )]
    NoKey(String),
    /// None of the identities opens the object, or it is corrupt.
    #[error("{path}: cannot decrypt with the given key: {reason}")]
    Decrypt {
        /// The object.
        path: String,
        /// age's reason (wrong key, corrupt or truncated file).
        reason: String,
    },
    /// Encrypting failed (only on I/O errors of the buffer).
    #[error("encrypting {path}: {reason}")]
    Encrypt {
        /// The object.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A location's keys.
pub struct Encryption {
    recipients: Vec<Box<dyn age::Recipient + Send + Sync>>,
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// The recipients as written in records: `age1...` public keys, or `passphrase (scrypt)`.
    described: Vec<String>,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("recipients", &self.described)
            .field("identities", &self.identities.len())
            .finish()
    }
}

impl Encryption {
    /// Keys from an identity file's text (one `AGE-SECRET-KEY-1...` per line; `#` comments and
    /// blank lines ignored, as in `age-keygen`'s output) and extra recipients (`age1...`).
    ///
    /// # Errors
    /// [`EncryptionError::InvalidKeys`] for a line that is not an identity, a recipient that is
    /// not a public key, or no key at all.
    pub fn from_identities(
        text: &str,
        extra_recipients: &[String],
    ) -> Result<Self, EncryptionError> {
        let mut identities: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        let mut recipients: Vec<Box<dyn age::Recipient + Send + Sync>> = Vec::new();
        let mut described = Vec::new();
        for (i, line) in text.lines().map(str::trim).enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = age::x25519::Identity::from_str(line).map_err(|_| {
                EncryptionError::InvalidKeys(format!(
                    "line {} of the identity file is not an age X25519 identity (AGE-SECRET-KEY-1...)",
                    i + 1
                ))
            })?;
            let public = id.to_public();
            described.push(public.to_string());
            recipients.push(Box::new(public));
            identities.push(Box::new(id));
        }
        for r in extra_recipients
            .iter()
            .map(|r| r.trim())
            .filter(|r| !r.is_empty())
        {
            let public = age::x25519::Recipient::from_str(r).map_err(|_| {
                EncryptionError::InvalidKeys(format!(
                    "recipient {r:?} is not an age X25519 public key (age1...)"
                ))
            })?;
            if !described.contains(&public.to_string()) {
                described.push(public.to_string());
                recipients.push(Box::new(public));
            }
        }
        if recipients.is_empty() {
            return Err(EncryptionError::InvalidKeys(
                "no identity and no recipient given".into(),
            ));
        }
        Ok(Self {
            recipients,
            identities,
            described,
        })
    }

    /// Keys from a passphrase (age's scrypt recipient and identity).
    ///
    /// # Errors
    /// [`EncryptionError::InvalidKeys`] for an empty passphrase.
    pub fn from_passphrase(passphrase: &str) -> Result<Self, EncryptionError> {
        let p = passphrase.trim_end_matches(['\n', '\r']);
        if p.is_empty() {
            return Err(EncryptionError::InvalidKeys(
                "the passphrase is empty".into(),
            ));
        }
        let secret = SecretString::from(p.to_string());
        Ok(Self {
            recipients: vec![Box::new(age::scrypt::Recipient::new(secret.clone()))],
            identities: vec![Box::new(age::scrypt::Identity::new(secret))],
            described: vec!["passphrase (scrypt)".into()],
        })
    }

    /// The recipients, as records name them (public keys only).
    pub fn recipients(&self) -> &[String] {
        &self.described
    }

    /// Whether an object at `relative` (its path below the location's prefix) is written
    /// encrypted: everything under `backups/` and `restores/` but `velero-backup.json`.
    pub fn applies_to(relative: &str) -> bool {
        let under = relative.starts_with("backups/") || relative.starts_with("restores/");
        under && !relative.ends_with("/velero-backup.json")
    }

    fn encryptor(&self) -> age::Encryptor {
        age::Encryptor::with_recipients(self.recipients.iter().map(|r| r.as_ref() as _))
            .expect("recipients were checked when the keys were read")
    }

    /// Encrypts a whole object.
    ///
    /// # Errors
    /// [`EncryptionError::Encrypt`] (does not happen with an in-memory buffer).
    pub fn encrypt(&self, path: &str, data: &[u8]) -> Result<Bytes, EncryptionError> {
        let err = |e: std::io::Error| EncryptionError::Encrypt {
            path: path.into(),
            reason: e.to_string(),
        };
        let mut out = Vec::with_capacity(data.len() + 256);
        let mut w = self.encryptor().wrap_output(&mut out).map_err(err)?;
        w.write_all(data).map_err(err)?;
        w.finish().map_err(err)?;
        Ok(Bytes::from(out))
    }

    /// A streaming encryptor: feed it plaintext, take ciphertext as it is produced.
    ///
    /// # Errors
    /// [`EncryptionError::Encrypt`].
    pub fn stream(&self, path: &str) -> Result<EncryptingStream, EncryptionError> {
        let buf = SharedBuf::default();
        let writer =
            self.encryptor()
                .wrap_output(buf.clone())
                .map_err(|e| EncryptionError::Encrypt {
                    path: path.into(),
                    reason: e.to_string(),
                })?;
        Ok(EncryptingStream {
            writer: Some(writer),
            buf,
            path: path.into(),
        })
    }

    /// Decrypts `data` if it is an age file, else returns it as is.
    ///
    /// # Errors
    /// [`EncryptionError::NoKey`] when `data` is encrypted and `keys` is `None`;
    /// [`EncryptionError::Decrypt`] when no identity opens it.
    pub fn open(keys: Option<&Self>, path: &str, data: Bytes) -> Result<Bytes, EncryptionError> {
        if !data.starts_with(AGE_HEADER) {
            return Ok(data);
        }
        let keys = keys.ok_or_else(|| EncryptionError::NoKey(path.into()))?;
        let mut out = Vec::with_capacity(data.len());
        keys.decrypting_reader(path, &data[..])?
            .read_to_end(&mut out)
            .map_err(|e| EncryptionError::Decrypt {
                path: path.into(),
                reason: e.to_string(),
            })?;
        Ok(Bytes::from(out))
    }

    /// A reader of the plaintext of the age file `input`.
    ///
    /// # Errors
    /// [`EncryptionError::Decrypt`] when the header is invalid or no identity opens it.
    pub fn decrypting_reader<'a, R: Read + 'a>(
        &'a self,
        path: &str,
        input: R,
    ) -> Result<impl Read + 'a, EncryptionError> {
        let err = |e: age::DecryptError| EncryptionError::Decrypt {
            path: path.into(),
            reason: e.to_string(),
        };
        let d = age::Decryptor::new(input).map_err(err)?;
        d.decrypt(self.identities.iter().map(|i| i.as_ref() as _))
            .map_err(err)
    }
}

/// A `Write` whose bytes are taken out by its other handle.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("buffer lock poisoned"))?
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn take(&self) -> Bytes {
        self.0
            .lock()
            .map(|mut b| Bytes::from(std::mem::take(&mut *b)))
            .unwrap_or_default()
    }
}

/// Encrypts a stream of chunks ([`Encryption::stream`]).
pub struct EncryptingStream {
    writer: Option<age::stream::StreamWriter<SharedBuf>>,
    buf: SharedBuf,
    path: String,
}

impl EncryptingStream {
    /// Encrypts `chunk`; returns the ciphertext produced so far (may be empty: age seals 64 KiB
    /// at a time).
    ///
    /// # Errors
    /// [`EncryptionError::Encrypt`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<Bytes, EncryptionError> {
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| EncryptionError::Encrypt {
                path: self.path.clone(),
                reason: "already finished".into(),
            })?;
        w.write_all(chunk).map_err(|e| EncryptionError::Encrypt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        Ok(self.buf.take())
    }

    /// Seals the last chunk; returns the rest of the ciphertext.
    ///
    /// # Errors
    /// [`EncryptionError::Encrypt`].
    pub fn finish(&mut self) -> Result<Bytes, EncryptionError> {
        if let Some(w) = self.writer.take() {
            w.finish().map_err(|e| EncryptionError::Encrypt {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(self.buf.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn identity() -> (String, String) {
        let id = age::x25519::Identity::generate();
        (
            id.to_string().expose_secret().to_string(),
            id.to_public().to_string(),
        )
    }

    #[test]
    fn round_trip_whole_and_streamed() {
        let (secret, public) = identity();
        let keys =
            Encryption::from_identities(&format!("# created: now\n{secret}\n"), &[]).unwrap();
        assert_eq!(keys.recipients(), [public]);
        let data = vec![7u8; 200_000];
        let sealed = keys.encrypt("backups/b/b.tar.gz", &data).unwrap();
        assert!(sealed.starts_with(AGE_HEADER));
        assert_eq!(Encryption::open(Some(&keys), "x", sealed).unwrap(), data);
        let mut s = keys.stream("backups/b/b.tar.gz").unwrap();
        let mut out = Vec::new();
        for c in data.chunks(10_000) {
            out.extend_from_slice(&s.push(c).unwrap());
        }
        out.extend_from_slice(&s.finish().unwrap());
        assert_eq!(
            Encryption::open(Some(&keys), "x", Bytes::from(out)).unwrap(),
            data
        );
    }

    #[test]
    fn plain_objects_pass_and_wrong_or_missing_keys_are_errors() {
        let (a, _) = identity();
        let (b, _) = identity();
        let ka = Encryption::from_identities(&a, &[]).unwrap();
        let kb = Encryption::from_identities(&b, &[]).unwrap();
        let plain = Bytes::from_static(b"{\"kind\":\"Backup\"}");
        assert_eq!(Encryption::open(None, "x", plain.clone()).unwrap(), plain);
        let sealed = ka.encrypt("p", b"secret").unwrap();
        assert!(matches!(
            Encryption::open(None, "p", sealed.clone()),
            Err(EncryptionError::NoKey(_))
        ));
        let e = Encryption::open(Some(&kb), "p", sealed).unwrap_err();
        assert!(matches!(e, EncryptionError::Decrypt { .. }), "{e}");
    }

    #[test]
    fn extra_recipients_can_decrypt_too_and_passphrases_work() {
        let (a, _) = identity();
        let (b, b_public) = identity();
        let ka = Encryption::from_identities(&a, std::slice::from_ref(&b_public)).unwrap();
        assert_eq!(ka.recipients().len(), 2);
        let sealed = ka.encrypt("p", b"rotated").unwrap();
        let kb = Encryption::from_identities(&b, &[]).unwrap();
        assert_eq!(
            &Encryption::open(Some(&kb), "p", sealed).unwrap()[..],
            b"rotated"
        );
        let kp = Encryption::from_passphrase("correct horse battery staple\n").unwrap();
        let sealed = kp.encrypt("p", b"by passphrase").unwrap();
        assert_eq!(
            &Encryption::open(Some(&kp), "p", sealed).unwrap()[..],
            b"by passphrase"
        );
        assert!(Encryption::from_passphrase("").is_err());
        assert!(Encryption::from_identities("not a key", &[]).is_err());
        assert!(Encryption::from_identities(&a, &["age1nope".into()]).is_err());
    }

    #[test]
    fn what_is_encrypted() {
        assert!(Encryption::applies_to("backups/b/b.tar.gz"));
        assert!(Encryption::applies_to("backups/b/b-logs.gz"));
        assert!(Encryption::applies_to("backups/b/tidemark-backup.json"));
        assert!(Encryption::applies_to("restores/r/restore-r-results.gz"));
        assert!(!Encryption::applies_to("backups/b/velero-backup.json"));
        assert!(!Encryption::applies_to("restic/ns/data/00/abc"));
    }
}
