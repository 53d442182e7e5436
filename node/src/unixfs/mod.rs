//! UnixFS files, exactly as the IPFS reference importer lays them out, so Cairn's CIDs can be
//! checked with any IPFS tool: fixed 256 KiB chunks, a balanced tree of at most 174 links per
//! node, raw leaves for CIDv1 and DAG-PB leaves for CIDv0. Import and export both stream: neither
//! holds more than one chunk and one path of the tree in memory.

mod export;
mod import;

pub use export::{FileReader, export_to};
pub use import::{FileImporter, ImportOptions, Imported, import_reader};

/// Bytes per leaf (the reference importer's `size-262144` chunker).
pub const CHUNK_SIZE: usize = 256 * 1024;
/// Links per internal node (the reference importer's balanced layout).
pub const MAX_LINKS: usize = 174;

/// Which CID version (and so which leaf format) a file gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CidVersion {
    /// `Qm…` CIDs, DAG-PB leaves (`ipfs add` defaults).
    V0,
    /// `bafy…`/`bafk…` CIDs, raw leaves (`ipfs add --cid-version=1`).
    #[default]
    V1,
}
