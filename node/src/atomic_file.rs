//! Files replaced whole or not at all: the content goes to a temporary file beside the target
//! (`tempfile`), is synced, renamed over the target, and the folder is synced so the rename itself
//! survives a power loss. A failure at any step leaves the old file (or none) and no temporary
//! file behind.

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A file being written; [`AtomicFile::commit`] puts it in place, dropping it discards it.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl AtomicFile {
    /// Starts replacing `path`; the new file is created with `mode` (less the umask, as any new
    /// file).
    pub fn create(path: &Path, mode: u32) -> io::Result<Self> {
        let folder = folder_of(path);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .permissions(Permissions::from_mode(mode))
            .tempfile_in(folder)?;
        Ok(Self {
            tmp,
            path: path.to_owned(),
        })
    }

    /// The temporary file, to write into.
    pub fn file(&self) -> &File {
        self.tmp.as_file()
    }

    /// Syncs the content, renames it over the target and syncs the folder.
    pub fn commit(self) -> io::Result<()> {
        self.tmp.as_file().sync_all()?;
        self.tmp.persist(&self.path).map_err(|e| e.error)?;
        File::open(folder_of(&self.path))?.sync_all()
    }
}

/// Replaces `path` with `content` atomically, with file mode `mode`.
pub fn write(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let file = AtomicFile::create(path, mode)?;
    file.file().write_all(content)?;
    file.commit()
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_with_its_mode_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, b"old").unwrap();
        write(&path, b"new content", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new content");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // Dropped before commit: the old file stays, and the temporary one is gone.
        let abandoned = AtomicFile::create(&path, 0o644).unwrap();
        abandoned.file().write_all(b"half").unwrap();
        drop(abandoned);
        assert_eq!(std::fs::read(&path).unwrap(), b"new content");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
