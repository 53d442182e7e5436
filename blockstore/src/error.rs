use cid::Cid;
use multihash::Multihash;

/// Everything the blockstore can refuse or fail at. Integrity failures have their own variants so
/// callers can re-fetch or penalise instead of treating them as I/O trouble.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("block {0} not found")]
    NotFound(Cid),
    /// The bytes do not hash to the CID. On `get` the block has been quarantined; it is never
    /// returned.
    #[error("block {cid} failed verification: its bytes hash to {computed_hex}", computed_hex = hex_digest(computed))]
    HashMismatch { cid: Cid, computed: Multihash<64> },
    #[error(
        "block {cid} uses multihash code {code:#x}, which this node cannot verify (sha2-256 and blake3 are supported)"
    )]
    UnsupportedHash { cid: Cid, code: u64 },
    #[error("block {cid} uses codec {codec:#x}; only raw (0x55) and dag-pb (0x70) are stored")]
    UnsupportedCodec { cid: Cid, codec: u64 },
    #[error("block {cid} is {size} bytes, more than the {max}-byte limit (storage.max_block_size)")]
    BlockTooLarge { cid: Cid, size: usize, max: u64 },
    #[error(
        "storage quota reached: storing {needed} more bytes would pass storage.max_bytes ({max}; {used} used)"
    )]
    QuotaExceeded { needed: u64, used: u64, max: u64 },
    #[error("block {cid} is not valid {codec}: {reason}")]
    InvalidBlock {
        cid: Cid,
        codec: &'static str,
        reason: String,
    },
    #[error("cannot pin {root}: block {missing} of its DAG is not stored here")]
    Incomplete { root: Cid, missing: Cid },
    #[error("stored metadata is damaged: {0}")]
    Corrupt(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("storage engine: {0}")]
    Engine(#[from] rocksdb::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn hex_digest(mh: &Multihash<64>) -> String {
    use std::fmt::Write;
    let mut out = format!("{:#x}:", mh.code());
    for b in mh.digest() {
        let _ = write!(out, "{b:02x}");
    }
    out
}
