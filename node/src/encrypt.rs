//! Client-side encryption for `cairn add --encrypt`: the client encrypts before anything leaves
//! it, the node stores ciphertext only, and the key travels in a capability string that only the
//! client sees. XChaCha20-Poly1305 in the STREAM construction (64 KiB segments, each with its
//! tag; the last one marked), so a tampered, reordered or truncated ciphertext fails to decrypt.
//!
//! Layout: `CAIRNE01` | 19-byte nonce prefix | STREAM segments. The plaintext is
//! `u16 name length | name | u64 size | content`: the file's name and size are encrypted too.
//!
//! Both directions are sans-I/O: feed bytes in, take bytes out.

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, OsRng, rand_core::RngCore};
use chacha20poly1305::{Key, XChaCha20Poly1305};
use cid::Cid;

use crate::error::{Error, Result};

/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;
const MAGIC: &[u8; 8] = b"CAIRNE01";
const NONCE_PREFIX: usize = 19;
/// Longest file name carried inside the ciphertext.
const MAX_NAME: usize = 4096;
const CAPABILITY_PREFIX: &str = "cairn-cap1:";

/// What `add --encrypt` prints: the root CID of the ciphertext and the key that opens it.
#[derive(Clone, PartialEq, Eq)]
pub struct Capability {
    pub root: Cid,
    key: [u8; 32],
}

impl std::fmt::Debug for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never reaches a log.
        f.debug_struct("Capability")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{CAPABILITY_PREFIX}{}:", self.root)?;
        self.key.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::str::FromStr for Capability {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::BadRequest(format!("not a capability: {why}"));
        let rest = text
            .trim()
            .strip_prefix(CAPABILITY_PREFIX)
            .ok_or_else(|| bad("it does not start with cairn-cap1:"))?;
        let (cid, key_hex) = rest.split_once(':').ok_or_else(|| bad("no key"))?;
        let root: Cid = cid.parse().map_err(|_| bad("the CID does not parse"))?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(key_hex, &mut key).map_err(|_| bad("the key is not 64 hex digits"))?;
        Ok(Self { root, key })
    }
}

impl Capability {
    pub fn new(root: Cid, key: [u8; 32]) -> Self {
        Self { root, key }
    }

    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }
}

fn crypto_error(what: &str) -> Error {
    Error::Decrypt(what.to_owned())
}

/// Encrypts one file. `push` the content, then `finish`; concatenate every output.
pub struct Encryptor {
    stream: EncryptorBE32<XChaCha20Poly1305>,
    pending: Vec<u8>,
    declared: u64,
    seen: u64,
    key: [u8; 32],
}

impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl Encryptor {
    /// A fresh random key and nonce; returns the encryptor and the clear header to send first.
    pub fn new(name: &str, size: u64) -> Result<(Self, Vec<u8>)> {
        if name.len() > MAX_NAME {
            return Err(Error::BadRequest(format!(
                "file name longer than {MAX_NAME} bytes"
            )));
        }
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        let mut nonce = [0u8; NONCE_PREFIX];
        OsRng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&key));
        let stream = EncryptorBE32::from_aead(cipher, (&nonce).into());
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&nonce);
        let mut pending = Vec::with_capacity(2 * SEGMENT);
        pending.extend_from_slice(&(name.len() as u16).to_be_bytes());
        pending.extend_from_slice(name.as_bytes());
        pending.extend_from_slice(&size.to_be_bytes());
        let encryptor = Self {
            stream,
            pending,
            declared: size,
            seen: 0,
            key,
        };
        Ok((encryptor, header))
    }

    /// The key, for the capability printed once the ciphertext is stored.
    pub fn key(&self) -> [u8; 32] {
        self.key
    }

    /// Ciphertext for every full segment that more content follows.
    pub fn push(&mut self, content: &[u8]) -> Result<Vec<u8>> {
        self.seen += content.len() as u64;
        self.pending.extend_from_slice(content);
        let mut out = Vec::new();
        // A segment is sealed only once more bytes follow it: the last one is sealed differently.
        while self.pending.len() > SEGMENT {
            let rest = self.pending.split_off(SEGMENT);
            let segment = std::mem::replace(&mut self.pending, rest);
            let sealed = self
                .stream
                .encrypt_next(segment.as_slice())
                .map_err(|_| crypto_error("encryption failed"))?;
            out.extend_from_slice(&sealed);
        }
        Ok(out)
    }

    /// The last segment. Fails when the content was not the size announced (the file changed).
    pub fn finish(self) -> Result<Vec<u8>> {
        if self.seen != self.declared {
            return Err(Error::BadRequest(format!(
                "the file changed while it was read ({} bytes announced, {} read)",
                self.declared, self.seen
            )));
        }
        self.stream
            .encrypt_last(self.pending.as_slice())
            .map_err(|_| crypto_error("encryption failed"))
    }
}

/// Decrypts what an [`Encryptor`] made. `push` ciphertext, then `finish`; every returned piece is
/// authenticated content (the name and size are taken off the front).
pub struct Decryptor {
    key: [u8; 32],
    stream: Option<DecryptorBE32<XChaCha20Poly1305>>,
    pending: Vec<u8>,
    /// Authenticated plaintext not yet past the name and size.
    head: Vec<u8>,
    meta: Option<(String, u64)>,
    produced: u64,
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    pub fn new(capability: &Capability) -> Self {
        Self {
            key: capability.key,
            stream: None,
            pending: Vec::new(),
            head: Vec::new(),
            meta: None,
            produced: 0,
        }
    }

    /// The file name and size, once the first segment is authenticated.
    pub fn meta(&self) -> Option<(&str, u64)> {
        self.meta.as_ref().map(|(n, s)| (n.as_str(), *s))
    }

    pub fn push(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>> {
        self.pending.extend_from_slice(ciphertext);
        if self.stream.is_none() {
            if self.pending.len() < MAGIC.len() + NONCE_PREFIX {
                return Ok(Vec::new());
            }
            if &self.pending[..MAGIC.len()] != MAGIC {
                return Err(crypto_error("this is not Cairn ciphertext"));
            }
            let nonce: [u8; NONCE_PREFIX] = self.pending[MAGIC.len()..MAGIC.len() + NONCE_PREFIX]
                .try_into()
                .map_err(|_| crypto_error("short header"))?;
            let cipher = XChaCha20Poly1305::new(Key::from_slice(&self.key));
            self.stream = Some(DecryptorBE32::from_aead(cipher, (&nonce).into()));
            self.pending.drain(..MAGIC.len() + NONCE_PREFIX);
        }
        let mut plain = Vec::new();
        while self.pending.len() > SEGMENT + TAG {
            let rest = self.pending.split_off(SEGMENT + TAG);
            let sealed = std::mem::replace(&mut self.pending, rest);
            let stream = self
                .stream
                .as_mut()
                .ok_or_else(|| crypto_error("no header"))?;
            let opened = stream.decrypt_next(sealed.as_slice()).map_err(|_| {
                crypto_error("the ciphertext was tampered with or the key is wrong")
            })?;
            plain.extend_from_slice(&opened);
        }
        self.take_content(plain)
    }

    /// The last segment; fails when the ciphertext is cut short or was changed.
    pub fn finish(&mut self) -> Result<Vec<u8>> {
        let stream = self
            .stream
            .take()
            .ok_or_else(|| crypto_error("the ciphertext ends before its header"))?;
        let last = std::mem::take(&mut self.pending);
        let opened = stream.decrypt_last(last.as_slice()).map_err(|_| {
            crypto_error("the ciphertext was truncated or tampered with, or the key is wrong")
        })?;
        let content = self.take_content(opened)?;
        match &self.meta {
            Some((_, size)) if *size == self.produced => Ok(content),
            Some((_, size)) => Err(crypto_error(&format!(
                "the file should hold {size} bytes but holds {}",
                self.produced
            ))),
            None => Err(crypto_error("the ciphertext holds no file header")),
        }
    }

    /// Strips the name and size off the front of the authenticated plaintext.
    fn take_content(&mut self, plain: Vec<u8>) -> Result<Vec<u8>> {
        let content = if self.meta.is_some() {
            plain
        } else {
            self.head.extend_from_slice(&plain);
            let Some(len) = self
                .head
                .get(..2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            else {
                return Ok(Vec::new());
            };
            if self.head.len() < 2 + len + 8 {
                return Ok(Vec::new());
            }
            let name = String::from_utf8_lossy(&self.head[2..2 + len]).into_owned();
            let mut size = [0u8; 8];
            size.copy_from_slice(&self.head[2 + len..2 + len + 8]);
            self.meta = Some((name, u64::from_be_bytes(size)));
            self.head.split_off(2 + len + 8)
        };
        self.produced += content.len() as u64;
        Ok(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypt(name: &str, data: &[u8], piece: usize) -> (Vec<u8>, [u8; 32]) {
        let (mut enc, mut out) = Encryptor::new(name, data.len() as u64).unwrap();
        for part in data.chunks(piece.max(1)) {
            out.extend(enc.push(part).unwrap());
        }
        let key = enc.key();
        out.extend(enc.finish().unwrap());
        (out, key)
    }

    fn decrypt(cipher: &[u8], key: [u8; 32], piece: usize) -> Result<(Vec<u8>, String)> {
        let cap = Capability::new(Cid::default(), key);
        let mut dec = Decryptor::new(&cap);
        let mut out = Vec::new();
        for part in cipher.chunks(piece.max(1)) {
            out.extend(dec.push(part)?);
        }
        out.extend(dec.finish()?);
        let name = dec.meta().map(|(n, _)| n.to_owned());
        Ok((out, name.unwrap_or_default()))
    }

    fn sizes() -> Vec<usize> {
        vec![
            0,
            1,
            SEGMENT - 20,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT + 5,
        ]
    }

    #[test]
    fn round_trips_any_size_in_any_pieces() {
        for len in sizes() {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            for piece in [1000, 65_536, 100_003] {
                let (cipher, key) = encrypt("notes.txt", &data, piece);
                let (plain, name) = decrypt(&cipher, key, piece / 3).unwrap();
                assert_eq!(plain, data, "len {len} piece {piece}");
                assert_eq!(name, "notes.txt");
            }
        }
    }

    #[test]
    fn tampering_truncation_and_wrong_keys_fail() {
        let data: Vec<u8> = (0..3 * SEGMENT + 77).map(|i| (i % 256) as u8).collect();
        let (cipher, key) = encrypt("f", &data, 4096);
        for at in [0, 10, 30, 40, SEGMENT, 2 * SEGMENT + 100, cipher.len() - 1] {
            let mut bad = cipher.clone();
            bad[at] ^= 1;
            assert!(decrypt(&bad, key, 5000).is_err(), "flip at {at}");
        }
        for cut in [1, TAG, SEGMENT + TAG, cipher.len() - 27] {
            assert!(
                decrypt(&cipher[..cipher.len() - cut], key, 5000).is_err(),
                "cut {cut}"
            );
        }
        // Segments swapped.
        let seg = SEGMENT + TAG;
        let mut swapped = cipher[..27].to_vec();
        swapped.extend_from_slice(&cipher[27 + seg..27 + 2 * seg]);
        swapped.extend_from_slice(&cipher[27..27 + seg]);
        swapped.extend_from_slice(&cipher[27 + 2 * seg..]);
        assert!(decrypt(&swapped, key, 5000).is_err());
        let mut other = key;
        other[0] ^= 1;
        assert!(decrypt(&cipher, other, 5000).is_err());
    }

    #[test]
    fn a_changed_file_is_refused_on_encryption() {
        let (mut enc, _) = Encryptor::new("f", 10).unwrap();
        enc.push(b"only five").unwrap();
        assert!(enc.finish().is_err());
    }

    #[test]
    fn capabilities_round_trip_and_garbage_is_refused() {
        let root: Cid = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
            .parse()
            .unwrap();
        let cap = Capability::new(root, [0xab; 32]);
        let text = cap.to_string();
        assert_eq!(text.parse::<Capability>().unwrap(), cap);
        assert!(!format!("{cap:?}").contains("abababab"));
        for bad in [
            "",
            "bafy",
            "cairn-cap1:",
            "cairn-cap1:bafy:00",
            &text[..text.len() - 1],
            &text.replace("cairn-cap1", "cap"),
        ] {
            assert!(bad.parse::<Capability>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_file_name_over_the_limit_is_refused_by_length() {
        assert!(Encryptor::new(&"n".repeat(MAX_NAME), 1).is_ok());
        let err = Encryptor::new(&"n".repeat(MAX_NAME + 1), 1)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("longer than 4096 bytes"), "{err}");
    }

    #[test]
    fn a_key_with_multibyte_characters_is_an_error_not_a_panic() {
        // What `make fuzz` found (capability target): 64 bytes of key text whose 12th byte falls
        // inside a two-byte character; slicing it by byte offsets panicked.
        let found = "cairn-cap1:\u{0}\u{1}\u{0}\u{0}\u{1}\u{0}:ca3BBBBBBBB\u{23d}BBBBBBB3BBBBBBBBBBBBBBBBBBBgg\u{0}\u{0}gggggcgggg\u{0}!gggggggG";
        assert!(found.parse::<Capability>().is_err());
        let root = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
        let multibyte = format!("cairn-cap1:{root}:{}é{}", "a".repeat(30), "b".repeat(32));
        assert_eq!(multibyte.len() - multibyte.rfind(':').unwrap() - 1, 64);
        let err = multibyte.parse::<Capability>().err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("64 hex digits")));
    }
}
