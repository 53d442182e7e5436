//! The node's side of Bitswap: its verified store as the block source the p2p crate's server
//! reads from. A block found corrupt is quarantined by the store and withheld, like a missing one.

use std::sync::Arc;

use bytes::Bytes;
use cairn_blockstore::{Error as StoreError, RocksBlockstore};
use cairn_p2p::bitswap::BlockSource;
use cid::Cid;

#[derive(Debug)]
pub struct StoreSource(pub Arc<RocksBlockstore>);

impl BlockSource for StoreSource {
    fn block(&self, cid: &Cid) -> Option<Bytes> {
        match self.0.get(cid) {
            Ok(data) => Some(data),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => {
                tracing::warn!(%cid, error = %e, "bitswap: a wanted block was not sent");
                None
            }
        }
    }

    fn has(&self, cid: &Cid) -> bool {
        self.0.has(cid).unwrap_or(false)
    }
}
