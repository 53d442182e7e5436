//! Secret files (identity key, admin tokens): written with mode 0600, and refused when group or
//! others can read them — a node whose key is readable by other users has no identity worth
//! pinning.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Permission bits a secret file must not have: anything for group or others.
const GROUP_OTHER: u32 = 0o077;

/// Reads a secret file after checking that only its owner can read it.
pub fn read_secret(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        what: "reading a secret file",
        source,
    };
    let meta = fs::metadata(path).map_err(|e| Error::Secret {
        path: path.to_owned(),
        problem: format!("cannot be read ({e})"),
        fix: "run `cairn init` for this data directory, or point the config at the right file"
            .into(),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & GROUP_OTHER != 0 {
        return Err(Error::Secret {
            path: path.to_owned(),
            problem: format!("is readable by group or others (mode {mode:04o})"),
            fix: format!("chmod 600 {}", path.display()),
        });
    }
    fs::read(path).map_err(io)
}

/// Writes a secret file with mode 0600. Without `overwrite`, an existing file is an error; with
/// it, the new content replaces the old atomically (temporary file, fsync, rename).
pub fn write_secret(path: &Path, content: &[u8], overwrite: bool) -> Result<()> {
    if !overwrite && path.exists() {
        return Err(Error::Exists(path.to_owned()));
    }
    crate::atomic_file::write(path, content, 0o600).map_err(|source| Error::Io {
        what: "writing a secret file",
        source,
    })
}

/// A fresh bearer token: 32 random bytes, hex-encoded.
pub fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Io {
        what: "reading the system's randomness",
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_written_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        write_secret(&path, b"s3cret", false).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_secret(&path).unwrap(), b"s3cret");
    }

    #[test]
    fn existing_secrets_are_kept_unless_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        write_secret(&path, b"first", false).unwrap();
        assert!(matches!(
            write_secret(&path, b"second", false),
            Err(Error::Exists(_))
        ));
        assert_eq!(read_secret(&path).unwrap(), b"first");
        write_secret(&path, b"second", true).unwrap();
        assert_eq!(read_secret(&path).unwrap(), b"second");
    }

    #[test]
    fn readable_by_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        write_secret(&path, b"key", false).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = read_secret(&path).unwrap_err().to_string();
            assert!(err.contains(&format!("{mode:04o}")), "{err}");
            assert!(
                err.contains(&format!("chmod 600 {}", path.display())),
                "{err}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_secret(&path).unwrap(), b"key");
    }

    #[test]
    fn tokens_are_long_random_and_distinct() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
