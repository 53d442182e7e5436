//! Replication receipts this node holds for its pins: per root, one signed receipt per holder,
//! kept as opaque bytes (the P2P layer signs and verifies them; the store only keeps them). Keys
//! are the root's multihash followed by the holder's peer-ID bytes, so one prefix scan lists a
//! root's holders.

use cid::Cid;

use crate::backend::{Backend, Batch, Cf};
use crate::error::Result;
use crate::store::Store;

/// More holders than this for one root is not a replication factor anyone configures.
const MAX_HOLDERS: usize = 1024;

impl<B: Backend> Store<B> {
    /// Keeps `receipt` from `holder` (peer-ID bytes) for `root`, replacing an older one.
    pub fn put_receipt(&self, root: &Cid, holder: &[u8], receipt: &[u8]) -> Result<()> {
        let mut key = root.hash().to_bytes();
        key.extend_from_slice(holder);
        let mut batch = Batch::default();
        batch.put(Cf::Replicas, key, receipt.to_vec());
        self.backend().write(batch)
    }

    /// Every receipt kept for `root`: (holder peer-ID bytes, receipt bytes).
    pub fn receipts(&self, root: &Cid) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = root.hash().to_bytes();
        Ok(self
            .backend()
            .scan(Cf::Replicas, &prefix, None, MAX_HOLDERS)?
            .into_iter()
            .map(|(key, value)| (key[prefix.len()..].to_vec(), value))
            .collect())
    }

    /// Forgets `holder`'s receipt for `root` (it let the copy go, or lost it).
    pub fn drop_receipt(&self, root: &Cid, holder: &[u8]) -> Result<()> {
        let mut key = root.hash().to_bytes();
        key.extend_from_slice(holder);
        let mut batch = Batch::default();
        batch.delete(Cf::Replicas, key);
        self.backend().write(batch)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Block, HashAlg, MemBlockstore, RAW, StoreOptions};

    #[test]
    fn receipts_are_kept_per_root_and_holder() {
        let store = MemBlockstore::new(StoreOptions::default());
        let root = Block::build(RAW, HashAlg::Sha2_256, b"root".to_vec()).cid;
        let other = Block::build(RAW, HashAlg::Sha2_256, b"other".to_vec()).cid;
        store.put_receipt(&root, b"holder-a", b"receipt 1").unwrap();
        store.put_receipt(&root, b"holder-b", b"receipt 2").unwrap();
        store.put_receipt(&root, b"holder-a", b"receipt 3").unwrap();
        store
            .put_receipt(&other, b"holder-a", b"elsewhere")
            .unwrap();
        let mut kept = store.receipts(&root).unwrap();
        kept.sort();
        assert_eq!(
            kept,
            vec![
                (b"holder-a".to_vec(), b"receipt 3".to_vec()),
                (b"holder-b".to_vec(), b"receipt 2".to_vec()),
            ]
        );
        store.drop_receipt(&root, b"holder-a").unwrap();
        assert_eq!(store.receipts(&root).unwrap().len(), 1);
        assert_eq!(store.receipts(&other).unwrap().len(), 1);
    }
}
