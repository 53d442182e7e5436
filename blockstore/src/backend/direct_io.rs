//! Whether a directory's filesystem takes direct I/O (`O_DIRECT`), so RocksDB's flushes and
//! compactions may write around the page cache. Not every filesystem does (tmpfs refuses the
//! open; some accept it and fail the write), and a flush that fails stops the store's writes, so
//! the answer comes from a real aligned write, not from the filesystem's name.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The alignment direct I/O asks of a write's buffer, offset and length on the disks we run on.
const ALIGN: usize = 4096;
const PROBE_FILE: &str = ".direct-io-probe";

/// Whether an aligned direct write into `dir` (created when missing) succeeds. Leaves nothing
/// behind.
pub(super) fn supported(dir: &Path) -> bool {
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let path = dir.join(PROBE_FILE);
    let written = aligned_write(&path);
    let _ = std::fs::remove_file(&path);
    match written {
        Ok(()) => true,
        Err(e) => {
            tracing::info!(dir = %dir.display(), error = %e, "direct I/O not available: flushes and compactions write through the page cache");
            false
        }
    }
}

fn aligned_write(path: &Path) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    // An aligned slice of an ordinary buffer: no allocator tricks.
    let buffer = vec![0u8; 2 * ALIGN];
    let start = buffer.as_ptr().align_offset(ALIGN);
    let block = buffer
        .get(start..start + ALIGN)
        .ok_or_else(|| std::io::Error::other("no aligned block in the probe buffer"))?;
    file.write_all(block)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_answers_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        // Either answer is right for some filesystem; what must hold is that it answers and
        // cleans up after itself.
        let _ = supported(&store);
        assert!(store.is_dir());
        assert_eq!(std::fs::read_dir(&store).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_parent_that_cannot_be_created_is_a_no() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a file");
        std::fs::write(&file, b"x").unwrap();
        assert!(!supported(&file.join("store")));
    }
}
