//! Unpinned roots kept for a grace period (DESIGN.md §6, "Nothing vanishes at once"). A
//! cluster-wide unpin turns a holder's recursive pin into `grace/<root CID>` → the moment (Unix
//! milliseconds, big-endian) until which GC still keeps the DAG. Within it the unpin can be undone
//! ([`Store::restore`]); once it has passed, the next GC frees the blocks and drops the entry.
//! Both steps are one batch with the pin's removal or return, so there is no moment at which the
//! blocks are kept by neither.

use cid::Cid;

use crate::backend::{Backend, Batch, Cf};
use crate::error::{Error, Result};
use crate::pins::PinMode;
use crate::store::Store;

const GRACE: &[u8] = b"grace/";

pub(crate) fn grace_key(root: &Cid) -> Vec<u8> {
    let mut key = GRACE.to_vec();
    key.extend_from_slice(&root.to_bytes());
    key
}

fn decode_until(raw: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = raw
        .try_into()
        .map_err(|_| Error::Corrupt(format!("grace entry {raw:?} is not a time")))?;
    Ok(u64::from_be_bytes(bytes))
}

impl<B: Backend> Store<B> {
    /// Replaces the pin on `root` by a grace entry that keeps its DAG until `until_ms`; returns
    /// whether there was a recursive pin to replace (a direct pin or none is left as it is).
    pub fn unpin_with_grace(&self, root: &Cid, until_ms: u64) -> Result<bool> {
        let _guard = self.gc_guard();
        if self.pin_mode(root)? != Some(PinMode::Recursive) {
            return Ok(false);
        }
        let mut batch = Batch::default();
        batch.delete(Cf::Pins, root.to_bytes());
        batch.put(
            Cf::Replicas,
            grace_key(root),
            until_ms.to_be_bytes().to_vec(),
        );
        self.backend().write(batch)?;
        Ok(true)
    }

    /// Pins `root` recursively again and ends its grace; fails with [`Error::Incomplete`] when
    /// a block is gone (the grace ran out and GC ran, or the copy was damaged). Returns whether
    /// the root was in its grace.
    pub fn restore(&self, root: &Cid) -> Result<bool> {
        let _guard = self.gc_guard();
        if self.grace_until(root)?.is_none() {
            return Ok(false);
        }
        self.walk(root, |_| {})?;
        let mut batch = Batch::default();
        batch.put(Cf::Pins, root.to_bytes(), vec![PinMode::Recursive.encode()]);
        batch.delete(Cf::Replicas, grace_key(root));
        self.backend().write(batch)?;
        Ok(true)
    }

    /// Until when `root`'s unpinned DAG is kept, if it is in its grace.
    pub fn grace_until(&self, root: &Cid) -> Result<Option<u64>> {
        self.backend()
            .get(Cf::Replicas, &grace_key(root))?
            .map(|raw| decode_until(&raw))
            .transpose()
    }

    /// Every root in its grace (or past it and not yet collected), with its end, in key order.
    pub fn graced(&self) -> Result<Vec<(Cid, u64)>> {
        let mut out = Vec::new();
        self.for_each_under(Cf::Replicas, GRACE, |key, value| {
            let root = Cid::try_from(key)
                .map_err(|e| Error::Corrupt(format!("grace key is not a CID: {e}")))?;
            out.push((root, decode_until(&value)?));
            Ok(())
        })?;
        Ok(out)
    }

    /// Drops the grace entries that ended before `now_ms` (GC, under its exclusive lock, after
    /// its mark left their blocks out).
    pub(crate) fn end_graces(&self, expired: &[Cid]) -> Result<()> {
        if expired.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        for root in expired {
            batch.delete(Cf::Replicas, grace_key(root));
        }
        self.backend().write(batch)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Block, HashAlg, MemBlockstore, PinMode, RAW, StoreOptions};

    #[test]
    fn an_unpin_keeps_the_blocks_until_the_grace_ends_and_can_be_undone_until_then() {
        let store = MemBlockstore::new(StoreOptions::default());
        let kept = Block::build(RAW, HashAlg::Sha2_256, b"kept".to_vec());
        let gone = Block::build(RAW, HashAlg::Sha2_256, b"gone".to_vec());
        for block in [&kept, &gone] {
            store.put(block).unwrap();
            store.pin(&block.cid, PinMode::Recursive).unwrap();
        }
        let far = u64::MAX;
        assert!(store.unpin_with_grace(&kept.cid, far).unwrap());
        assert!(
            store.unpin_with_grace(&gone.cid, 1).unwrap(),
            "ended in 1970"
        );
        assert!(
            !store.unpin_with_grace(&gone.cid, far).unwrap(),
            "no pin left"
        );
        assert_eq!(store.pin_mode(&kept.cid).unwrap(), None);
        assert_eq!(store.grace_until(&kept.cid).unwrap(), Some(far));
        assert_eq!(store.graced().unwrap().len(), 2);

        let report = store.gc().unwrap();
        assert_eq!(report.removed_blocks, 1, "only the block past its grace");
        assert!(store.has(&kept.cid).unwrap());
        assert!(!store.has(&gone.cid).unwrap());
        assert_eq!(store.graced().unwrap(), vec![(kept.cid, far)]);

        assert!(store.restore(&kept.cid).unwrap());
        assert_eq!(store.pin_mode(&kept.cid).unwrap(), Some(PinMode::Recursive));
        assert_eq!(store.grace_until(&kept.cid).unwrap(), None);
        assert!(!store.restore(&gone.cid).unwrap(), "nothing to restore");
    }
}
