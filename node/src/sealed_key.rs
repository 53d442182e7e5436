//! The identity key at rest, optionally sealed with a passphrase. Argon2id (64 MiB, 3 passes)
//! stretches the passphrase with a random salt into a key; XChaCha20-Poly1305 seals the key pair's
//! bytes, so a wrong passphrase and a tampered file both fail to open, and say so.
//!
//! Layout: `CAIRNK01` | salt (16) | nonce (24) | ciphertext and tag.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, rand_core::RngCore};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"CAIRNK01";
const SALT: usize = 16;
const NONCE: usize = 24;
/// A passphrase shorter than this is refused: the file may be copied, and Argon2 only slows a
/// guesser down.
pub const MIN_PASSPHRASE: usize = 12;

/// Whether `bytes` is a sealed key (rather than a plain one).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

fn stretch(passphrase: &[u8], salt: &[u8]) -> Result<[u8; 32]> {
    let params = Params::new(64 * 1024, 3, 1, Some(32))
        .map_err(|e| Error::Decrypt(format!("key derivation parameters: {e}")))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, &mut key)
        .map_err(|e| Error::Decrypt(format!("key derivation failed: {e}")))?;
    Ok(key)
}

/// The passphrase as read from a file or credential: one line; trailing line breaks are not
/// part of it.
pub fn passphrase(raw: &[u8]) -> Result<Vec<u8>> {
    let mut end = raw.len();
    while end > 0 && matches!(raw[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    if end < MIN_PASSPHRASE {
        return Err(Error::BadRequest(format!(
            "the passphrase has {end} bytes; use at least {MIN_PASSPHRASE}"
        )));
    }
    Ok(raw[..end].to_vec())
}

/// Seals `key` (a key pair's bytes) with `passphrase`.
pub fn seal(key: &[u8], passphrase: &[u8]) -> Result<Vec<u8>> {
    let mut salt = [0u8; SALT];
    let mut nonce = [0u8; NONCE];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(&stretch(passphrase, &salt)?.into());
    let sealed = cipher
        .encrypt(XNonce::from_slice(&nonce), key)
        .map_err(|_| Error::Decrypt("sealing the identity key failed".into()))?;
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a sealed key with `passphrase`.
pub fn open(sealed: &[u8], passphrase: &[u8]) -> Result<Vec<u8>> {
    let body = sealed
        .strip_prefix(MAGIC)
        .filter(|b| b.len() > SALT + NONCE)
        .ok_or_else(|| Error::Decrypt("not a sealed identity key (or a truncated one)".into()))?;
    let (salt, rest) = body.split_at(SALT);
    let (nonce, ciphertext) = rest.split_at(NONCE);
    let cipher = XChaCha20Poly1305::new(&stretch(passphrase, salt)?.into());
    cipher
        .decrypt(XNonce::from_slice(nonce), ciphertext)
        .map_err(|_| {
            Error::Decrypt(
                "the identity key does not open: wrong passphrase, or the file was changed".into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_with_its_passphrase_only() {
        let key = b"key pair bytes".to_vec();
        let sealed = seal(&key, b"correct horse battery").unwrap();
        assert!(is_sealed(&sealed) && !is_sealed(&key));
        assert!(
            !sealed.windows(key.len()).any(|w| w == key),
            "plaintext in the file"
        );
        assert_eq!(open(&sealed, b"correct horse battery").unwrap(), key);
        let wrong = open(&sealed, b"correct horse batterz")
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("wrong passphrase"), "{wrong}");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(open(&tampered, b"correct horse battery").is_err());
        assert!(open(&sealed[..40], b"correct horse battery").is_err());
        // Sealing twice gives different files (fresh salt and nonce).
        assert_ne!(seal(&key, b"correct horse battery").unwrap(), sealed);
    }

    #[test]
    fn passphrases_lose_their_line_break_and_short_ones_are_refused() {
        assert_eq!(passphrase(b"twelve bytes\n").unwrap(), b"twelve bytes");
        assert_eq!(passphrase(b"twelve bytes\r\n").unwrap(), b"twelve bytes");
        assert!(passphrase(b"short\n").is_err());
    }
}
