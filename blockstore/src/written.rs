//! Evidence of what a bulk writer put into the store, so that pinning what it wrote need not read
//! it all back.
//!
//! A recursive pin walks its DAG to prove every block is stored, and the engine's presence check
//! loads each block's whole value: pinning a fresh 256 MiB import read 256 MiB back. An importer
//! or a fetch that wrote the DAG itself knows it is there. [`Written`] carries that knowledge from
//! the writes to the pin, filled only by the store that took the writes, and honoured only while
//! that store has removed nothing since it began.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use cid::Cid;
use multihash::Multihash;

use crate::backend::Backend;
use crate::block::{DAG_PB, RAW, VerifiedBlock, links};
use crate::error::Result;
use crate::store::Store;

/// Tells stores apart, so evidence from one is never taken by another.
static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_store_id() -> u64 {
    NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed)
}

/// The blocks one writer has put into (or found already in) one store, with the links of the
/// DAG-PB nodes among them. Built by [`crate::Blockstore::begin_written`], filled by
/// [`crate::Blockstore::put_verified_noting`], spent by [`Store::pin_written`].
#[derive(Debug, Default)]
pub struct Written {
    /// The store that filled it; 0 for none (evidence that never counts).
    store: u64,
    /// That store's removal count when the writer began: any removal since voids the evidence.
    removals: u64,
    /// Each block by multihash: the codec it was written under, and its links when DAG-PB.
    blocks: HashMap<Multihash<64>, (u64, Box<[Cid]>)>,
}

impl Written {
    /// Blocks recorded.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The links below `cid` when this writer stored it as a block `cid` names: `Some` for a raw
    /// CID of any block recorded (raw blocks have no links), and for a DAG-PB CID of a block
    /// recorded as DAG-PB; `None` when the block must be looked at in the store.
    pub(crate) fn links_of(&self, cid: &Cid) -> Option<&[Cid]> {
        let (codec, links) = self.blocks.get(cid.hash())?;
        match cid.codec() {
            RAW => Some(&[]),
            DAG_PB if *codec == DAG_PB => Some(links),
            _ => None,
        }
    }
}

impl<B: Backend> Store<B> {
    /// Evidence for a writer starting now, from this store.
    pub fn begin_written(&self) -> Written {
        Written {
            store: self.id,
            removals: self.removals.load(Ordering::Acquire),
            blocks: HashMap::new(),
        }
    }

    /// [`Store::put_verified_buffered`], recording the blocks in `written` once they are in.
    /// Evidence from another store is left as it is.
    pub fn put_verified_noting(
        &self,
        blocks: &[VerifiedBlock],
        written: &mut Written,
    ) -> Result<()> {
        self.put_verified_buffered(blocks)?;
        if written.store != self.id {
            return Ok(());
        }
        for block in blocks {
            let cid = block.cid();
            // A node whose links do not decode is not recorded: the pin then reads it and
            // reports what is wrong with it.
            let node_links = match cid.codec() {
                DAG_PB => match links(cid, block.data()) {
                    Ok(found) => found.into_boxed_slice(),
                    Err(_) => continue,
                },
                _ => Box::default(),
            };
            written
                .blocks
                .insert(*cid.hash(), (cid.codec(), node_links));
        }
        Ok(())
    }

    /// Whether `written` came from this store and nothing has been removed from it since.
    pub(crate) fn honours(&self, written: &Written) -> bool {
        written.store == self.id && written.removals == self.removals.load(Ordering::Acquire)
    }

    /// Counts a removal (GC, delete or quarantine), voiding the evidence of every writer begun
    /// before it. Called before the removal is written.
    pub(crate) fn note_removal(&self) {
        self.removals.fetch_add(1, Ordering::AcqRel);
    }
}
