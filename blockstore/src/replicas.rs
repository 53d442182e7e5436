//! Replication state this node keeps for its pins, as opaque bytes (the P2P layer signs and
//! verifies them; the store only keeps them):
//!
//! - `receipt/<root multihash><holder peer-ID bytes>` → a holder's signed receipt, so one prefix
//!   scan lists a root's holders;
//! - `record/<root CID>` → the newest signed pin record this node knows for the root (pinned with
//!   its replication factor, or an unpin's tombstone, kept so a stale record never wins again);
//! - `charge/<root CID>` → the bytes this node holds for a replica a peer asked for, and the
//!   owner they count against (`replication.max_share_per_peer`).

use cid::Cid;

use crate::backend::{Backend, Batch, Cf};
use crate::error::{Error, Result};
use crate::store::Store;

/// More holders than this for one root is not a replication factor anyone configures.
const MAX_HOLDERS: usize = 1024;
const RECEIPT: &[u8] = b"receipt/";
const RECORD: &[u8] = b"record/";
const CHARGE: &[u8] = b"charge/";

fn charge_key(root: &Cid) -> Vec<u8> {
    let mut key = CHARGE.to_vec();
    key.extend_from_slice(&root.to_bytes());
    key
}

fn receipt_prefix(root: &Cid) -> Vec<u8> {
    let mut key = RECEIPT.to_vec();
    key.extend_from_slice(&root.hash().to_bytes());
    key
}

fn record_key(root: &Cid) -> Vec<u8> {
    let mut key = RECORD.to_vec();
    key.extend_from_slice(&root.to_bytes());
    key
}

impl<B: Backend> Store<B> {
    /// Keeps `receipt` from `holder` (peer-ID bytes) for `root`, replacing an older one.
    pub fn put_receipt(&self, root: &Cid, holder: &[u8], receipt: &[u8]) -> Result<()> {
        let mut key = receipt_prefix(root);
        key.extend_from_slice(holder);
        let mut batch = Batch::default();
        batch.put(Cf::Replicas, key, receipt.to_vec());
        self.backend().write(batch)
    }

    /// Every receipt kept for `root`: (holder peer-ID bytes, receipt bytes).
    pub fn receipts(&self, root: &Cid) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = receipt_prefix(root);
        Ok(self
            .backend()
            .scan(Cf::Replicas, &prefix, None, MAX_HOLDERS)?
            .into_iter()
            .map(|(key, value)| (key[prefix.len()..].to_vec(), value))
            .collect())
    }

    /// Forgets `holder`'s receipt for `root` (it let the copy go, or lost it).
    pub fn drop_receipt(&self, root: &Cid, holder: &[u8]) -> Result<()> {
        let mut key = receipt_prefix(root);
        key.extend_from_slice(holder);
        let mut batch = Batch::default();
        batch.delete(Cf::Replicas, key);
        self.backend().write(batch)
    }

    /// Keeps `record` as the pin record of `root` (the caller checked it is the newest).
    pub fn put_pin_record(&self, root: &Cid, record: &[u8]) -> Result<()> {
        let mut batch = Batch::default();
        batch.put(Cf::Replicas, record_key(root), record.to_vec());
        self.backend().write(batch)
    }

    /// The pin record kept for `root`.
    pub fn pin_record(&self, root: &Cid) -> Result<Option<Vec<u8>>> {
        self.backend().get(Cf::Replicas, &record_key(root))
    }

    /// Counts `bytes` more of `root`'s replica against its owner: the one already charged for
    /// the root, or `owner` (peer-ID bytes) for a root not charged yet. The caller serialises
    /// calls for one root.
    pub fn add_charge(&self, root: &Cid, owner: &[u8], bytes: u64) -> Result<()> {
        let key = charge_key(root);
        let (held, owner) = match self.backend().get(Cf::Replicas, &key)? {
            Some(value) => match value.split_first_chunk::<8>() {
                Some((size, charged)) => (u64::from_be_bytes(*size), charged.to_vec()),
                None => return Err(Error::Corrupt(format!("charge {value:?} has no size"))),
            },
            None => (0, owner.to_vec()),
        };
        let mut value = held.saturating_add(bytes).to_be_bytes().to_vec();
        value.extend_from_slice(&owner);
        let mut batch = Batch::default();
        batch.put(Cf::Replicas, key, value);
        self.backend().write(batch)
    }

    /// Forgets `root`'s charge (its replica was released or unpinned).
    pub fn drop_charge(&self, root: &Cid) -> Result<()> {
        let mut batch = Batch::default();
        batch.delete(Cf::Replicas, charge_key(root));
        self.backend().write(batch)
    }

    /// The bytes of replicas held here that count against `owner`.
    pub fn charged_to(&self, owner: &[u8]) -> Result<u64> {
        let mut total = 0u64;
        self.for_each_under(Cf::Replicas, CHARGE, |_, value| {
            let Some((size, charged)) = value.split_first_chunk::<8>() else {
                return Err(Error::Corrupt(format!("charge {value:?} has no size")));
            };
            if charged == owner {
                total = total.saturating_add(u64::from_be_bytes(*size));
            }
            Ok(())
        })?;
        Ok(total)
    }

    /// Every pin record kept, in key order.
    pub fn pin_records(&self) -> Result<Vec<(Cid, Vec<u8>)>> {
        let mut out = Vec::new();
        self.for_each_under(Cf::Replicas, RECORD, |key, value| {
            let root = Cid::try_from(key)
                .map_err(|e| Error::Corrupt(format!("pin record key is not a CID: {e}")))?;
            out.push((root, value));
            Ok(())
        })?;
        Ok(out)
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
        store.put_pin_record(&root, b"a record").unwrap();
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

    #[test]
    fn charges_add_up_per_owner_and_go_with_the_replica() {
        let store = MemBlockstore::new(StoreOptions::default());
        let roots: Vec<_> = (0..3u8)
            .map(|i| Block::build(RAW, HashAlg::Sha2_256, vec![i]).cid)
            .collect();
        store.add_charge(&roots[0], b"owner-a", 60).unwrap();
        store.add_charge(&roots[0], b"owner-b", 40).unwrap();
        store.add_charge(&roots[1], b"owner-a", 50).unwrap();
        store.add_charge(&roots[2], b"owner-b", 7).unwrap();
        store.put_pin_record(&roots[0], b"a record").unwrap();
        assert_eq!(
            store.charged_to(b"owner-a").unwrap(),
            150,
            "more bytes of a root go to the owner it was first charged to"
        );
        assert_eq!(store.charged_to(b"owner-b").unwrap(), 7);
        store.drop_charge(&roots[1]).unwrap();
        assert_eq!(store.charged_to(b"owner-a").unwrap(), 100);
        assert_eq!(store.charged_to(b"nobody").unwrap(), 0);
    }

    #[test]
    fn pin_records_are_kept_per_root_and_listed_apart_from_receipts() {
        let store = MemBlockstore::new(StoreOptions::default());
        let roots: Vec<_> = (0..3u8)
            .map(|i| Block::build(RAW, HashAlg::Sha2_256, vec![i]).cid)
            .collect();
        store.put_receipt(&roots[0], b"holder", b"receipt").unwrap();
        assert_eq!(store.pin_record(&roots[0]).unwrap(), None);
        for (i, root) in roots.iter().enumerate() {
            store.put_pin_record(root, &[i as u8]).unwrap();
        }
        store.put_pin_record(&roots[1], b"newer").unwrap();
        assert_eq!(
            store.pin_record(&roots[1]).unwrap().as_deref(),
            Some(&b"newer"[..])
        );
        let mut listed = store.pin_records().unwrap();
        listed.sort();
        let mut expected = vec![
            (roots[0], vec![0]),
            (roots[1], b"newer".to_vec()),
            (roots[2], vec![2]),
        ];
        expected.sort();
        assert_eq!(listed, expected);
    }
}
