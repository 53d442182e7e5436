//! Blocks, the hashes we verify them with, and the links a block names.

use bytes::Bytes;
use cid::Cid;
use multihash::Multihash;
use multihash_codetable::{Code, MultihashDigest};

use crate::error::{Error, Result};

/// Codec of a block holding bytes as they are (UnixFS leaves with raw leaves).
pub const RAW: u64 = 0x55;
/// Codec of a DAG-PB node (UnixFS files and directories).
pub const DAG_PB: u64 = 0x70;

const SHA2_256: u64 = 0x12;
const BLAKE3: u64 = 0x1e;

/// A block: bytes and the CID they claim to hash to. Constructing one checks nothing; every store
/// checks on `put`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub cid: Cid,
    pub data: Bytes,
}

impl Block {
    pub fn new(cid: Cid, data: impl Into<Bytes>) -> Self {
        Self {
            cid,
            data: data.into(),
        }
    }

    /// A CIDv1 block of `codec` whose CID is computed from `data` with `hash`.
    pub fn build(codec: u64, hash: HashAlg, data: impl Into<Bytes>) -> Self {
        let data = data.into();
        let cid = Cid::new_v1(codec, hash.digest(&data));
        Self { cid, data }
    }
}

/// A block whose bytes were hashed to its CID in this process: built from its bytes, or checked
/// against the CID it claims. Only those two ways make one, so holding one is proof that the hash
/// was paid; the store takes it as its own check on write
/// ([`crate::Store::put_verified_buffered`]) instead of hashing the bytes a second time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedBlock(Block);

impl VerifiedBlock {
    /// A CIDv1 block of `codec`, its CID computed from `data` with `hash`.
    pub fn build(codec: u64, hash: HashAlg, data: impl Into<Bytes>) -> Self {
        Self(Block::build(codec, hash, data))
    }

    /// `data` under the CID computed from it with `hash`, as CIDv0 (DAG-PB and SHA-256 only: the
    /// one case CIDv0 can name).
    pub fn build_v0(data: impl Into<Bytes>) -> Result<Self> {
        let data = data.into();
        let cid = Cid::new_v0(HashAlg::Sha2_256.digest(&data))
            .map_err(|e| Error::Internal(format!("a SHA-256 digest made no CIDv0: {e}")))?;
        Ok(Self(Block { cid, data }))
    }

    /// `block` once its bytes hash to the CID it claims; [`Error::HashMismatch`] (or
    /// [`Error::UnsupportedHash`]) otherwise.
    pub fn check(block: Block) -> Result<Self> {
        verify(&block.cid, &block.data)?;
        Ok(Self(block))
    }

    pub fn cid(&self) -> &Cid {
        &self.0.cid
    }

    pub fn data(&self) -> &Bytes {
        &self.0.data
    }

    pub fn as_block(&self) -> &Block {
        &self.0
    }

    pub fn into_block(self) -> Block {
        self.0
    }
}

/// The hash functions Cairn computes and verifies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HashAlg {
    #[default]
    Sha2_256,
    Blake3,
}

impl HashAlg {
    pub fn digest(self, data: &[u8]) -> Multihash<64> {
        match self {
            Self::Sha2_256 => Code::Sha2_256.digest(data),
            Self::Blake3 => Code::Blake3_256.digest(data),
        }
    }

    pub fn code(self) -> u64 {
        match self {
            Self::Sha2_256 => SHA2_256,
            Self::Blake3 => BLAKE3,
        }
    }

    /// The algorithm for a multihash, if we can verify it. Only full-length digests count: a
    /// truncated digest proves less than the CID promises.
    pub fn of(mh: &Multihash<64>) -> Option<Self> {
        match (mh.code(), mh.size()) {
            (SHA2_256, 32) => Some(Self::Sha2_256),
            (BLAKE3, 32) => Some(Self::Blake3),
            _ => None,
        }
    }
}

/// Recomputes the multihash of `data` and compares it with the one `cid` claims. Fails closed: a
/// hash we cannot compute is an error, never a pass.
pub fn verify(cid: &Cid, data: &[u8]) -> Result<()> {
    verify_multihash(cid, cid.hash(), data)
}

/// [`verify`] for a bare multihash; `cid` only names the block in errors.
pub(crate) fn verify_multihash(cid: &Cid, mh: &Multihash<64>, data: &[u8]) -> Result<()> {
    let alg = HashAlg::of(mh).ok_or(Error::UnsupportedHash {
        cid: *cid,
        code: mh.code(),
    })?;
    let computed = alg.digest(data);
    if &computed == mh {
        Ok(())
    } else {
        Err(Error::HashMismatch {
            cid: *cid,
            computed,
        })
    }
}

/// Checks that a block is of a codec we store and, for DAG-PB, that it decodes: a node we cannot
/// decode would later break pin walks and GC.
pub(crate) fn check_codec(cid: &Cid, data: &[u8]) -> Result<()> {
    match cid.codec() {
        RAW => Ok(()),
        DAG_PB => links(cid, data).map(drop),
        codec => Err(Error::UnsupportedCodec { cid: *cid, codec }),
    }
}

/// The CIDs a block links to (none for raw blocks).
pub fn links(cid: &Cid, data: &[u8]) -> Result<Vec<Cid>> {
    match cid.codec() {
        RAW => Ok(Vec::new()),
        DAG_PB => {
            let mut out = Vec::new();
            ipld_dagpb::links(data, &mut out).map_err(|e| Error::InvalidBlock {
                cid: *cid,
                codec: "dag-pb",
                reason: e.to_string(),
            })?;
            Ok(out)
        }
        codec => Err(Error::UnsupportedCodec { cid: *cid, codec }),
    }
}

/// The CID under which a bare multihash (a blocks-table key) is reported: raw CIDv1. The store keys
/// by multihash, so the codec a block was put under is not recorded.
pub fn raw_cid(mh: Multihash<64>) -> Cid {
    Cid::new_v1(RAW, mh)
}
