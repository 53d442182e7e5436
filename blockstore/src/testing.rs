//! Test support shared by the conformance suite, the property tests and the fuzz target: damage
//! blocks underneath a store, and a model-based checker that runs operations against a store and a
//! `BTreeMap` side by side. Compiled only with the `testing` feature.

use std::collections::BTreeMap;

use cid::Cid;

use crate::backend::{Backend, Batch, Cf};
use crate::{Block, Error, HashAlg, RAW, Store};

/// Overwrites a stored block's bytes underneath the store, keeping the length (so the usage
/// counter stays meaningful), as a failing disk or a tampering process would. Returns false when
/// the block is not stored or is empty.
pub fn corrupt_block<B: Backend>(store: &Store<B>, cid: &Cid) -> bool {
    let key = cid.hash().to_bytes();
    let Ok(Some(mut data)) = store.backend().get(Cf::Blocks, &key) else {
        return false;
    };
    let Some(first) = data.first_mut() else {
        return false;
    };
    *first ^= 0xff;
    let mut batch = Batch::default();
    batch.put(Cf::Blocks, key, data);
    store.backend().write(batch).is_ok()
}

/// Deletes a stored block underneath the store, as a lost file or a tampering process would: the
/// store is not told (no usage change, no removal counted). Returns whether the delete was written.
pub fn lose_block<B: Backend>(store: &Store<B>, cid: &Cid) -> bool {
    let mut batch = Batch::default();
    batch.delete(Cf::Blocks, cid.hash().to_bytes());
    store.backend().write(batch).is_ok()
}

/// The blocks the model plays with: `BLOCKS` fixed, non-empty blocks of varied sizes and hashes.
pub const BLOCKS: u8 = 16;

pub fn model_block(i: u8) -> Block {
    let len = 1 + (usize::from(i) * 977) % 3000;
    let data: Vec<u8> = (0..len)
        .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i))
        .collect();
    let hash = if i.is_multiple_of(3) {
        HashAlg::Blake3
    } else {
        HashAlg::Sha2_256
    };
    Block::build(RAW, hash, data)
}

/// One step of the model test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelOp {
    Put(u8),
    PutMany(u8, u8),
    Get(u8),
    Has(u8),
    Delete(u8),
    /// Damage the stored bytes underneath the store.
    Corrupt(u8),
    /// Close and reopen the store (a no-op for stores that cannot reopen).
    Reopen,
}

impl ModelOp {
    /// Decodes operations from arbitrary bytes, two bytes an operation (for the fuzzer).
    pub fn decode(bytes: &[u8]) -> Vec<ModelOp> {
        bytes
            .chunks_exact(2)
            .map(|pair| {
                let (kind, arg) = (pair[0], pair[1] % BLOCKS);
                match kind % 7 {
                    0 => ModelOp::Put(arg),
                    1 => ModelOp::PutMany(arg, pair[0] / 7 % BLOCKS),
                    2 => ModelOp::Get(arg),
                    3 => ModelOp::Has(arg),
                    4 => ModelOp::Delete(arg),
                    5 => ModelOp::Corrupt(arg),
                    _ => ModelOp::Reopen,
                }
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    Good,
    /// Damaged underneath; the store does not know yet.
    Damaged,
}

/// Runs `ops` against a store from `open` and against a model; returns the first disagreement.
/// `open` is called again for every `Reopen` (after the old store is dropped).
pub fn check_model<B: Backend>(
    mut open: impl FnMut() -> Store<B>,
    ops: &[ModelOp],
) -> Result<(), String> {
    let mut store = Some(open());
    let mut model: BTreeMap<u8, Held> = BTreeMap::new();
    for (step, op) in ops.iter().enumerate() {
        let s = store.as_ref().ok_or("no store")?;
        let fail = |what: String| format!("step {step} {op:?}: {what}");
        match *op {
            ModelOp::Put(i) => {
                s.put(&model_block(i)).map_err(|e| fail(e.to_string()))?;
                model.entry(i).or_insert(Held::Good);
            }
            ModelOp::PutMany(a, b) => {
                s.put_many(&[model_block(a), model_block(b)])
                    .map_err(|e| fail(e.to_string()))?;
                model.entry(a).or_insert(Held::Good);
                model.entry(b).or_insert(Held::Good);
            }
            ModelOp::Get(i) => {
                let block = model_block(i);
                match (s.get(&block.cid), model.get(&i)) {
                    (Ok(bytes), Some(Held::Good)) if bytes == block.data => {}
                    (Err(Error::HashMismatch { .. }), Some(Held::Damaged)) => {
                        // Quarantined: gone from the blocks table.
                        model.remove(&i);
                    }
                    (Err(Error::NotFound(_)), None) => {}
                    (got, want) => return Err(fail(format!("got {got:?}, model has {want:?}"))),
                }
            }
            ModelOp::Has(i) => {
                let has = s
                    .has(&model_block(i).cid)
                    .map_err(|e| fail(e.to_string()))?;
                if has != model.contains_key(&i) {
                    return Err(fail(format!("has = {has}, model disagrees")));
                }
            }
            ModelOp::Delete(i) => {
                let removed = s
                    .delete(&model_block(i).cid)
                    .map_err(|e| fail(e.to_string()))?;
                if removed != model.remove(&i).is_some() {
                    return Err(fail(format!("delete = {removed}, model disagrees")));
                }
            }
            ModelOp::Corrupt(i) => {
                if let Some(held) = model.get_mut(&i) {
                    if !corrupt_block(s, &model_block(i).cid) {
                        return Err(fail("could not corrupt a stored block".into()));
                    }
                    // Flipping twice restores the bytes.
                    *held = match held {
                        Held::Good => Held::Damaged,
                        Held::Damaged => Held::Good,
                    };
                }
            }
            ModelOp::Reopen => {
                drop(store.take());
                store = Some(open());
            }
        }
        let s = store.as_ref().ok_or("no store")?;
        let stats = s.stats().map_err(|e| fail(e.to_string()))?;
        let want_bytes: u64 = model
            .keys()
            .map(|i| model_block(*i).data.len() as u64)
            .sum();
        if stats.blocks != model.len() as u64 || stats.bytes != want_bytes {
            return Err(fail(format!(
                "stats {}/{} bytes, model {}/{}",
                stats.blocks,
                stats.bytes,
                model.len(),
                want_bytes
            )));
        }
    }
    Ok(())
}
