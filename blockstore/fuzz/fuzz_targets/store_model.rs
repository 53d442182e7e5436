//! Model-based fuzzing of the block stores: the fuzzer's bytes become put, put-many, get, has,
//! delete, corrupt-underneath and reopen operations, applied to a store and to a BTreeMap model
//! (`cairn_blockstore::testing::check_model`). Any disagreement — a corrupt block returned, a lost
//! block, a wrong count — is a crash.
//!
//! The first byte picks the engine: RocksDB (with reopen) for one input in four, memory for the
//! rest, because opening RocksDB costs far more than running the operations.
#![no_main]

use cairn_blockstore::testing::{ModelOp, check_model};
use cairn_blockstore::{MemBlockstore, RocksBlockstore, StoreOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((engine, ops)) = data.split_first() else {
        return;
    };
    let mut ops = ModelOp::decode(ops);
    let opts = StoreOptions { sync_writes: false, ..StoreOptions::default() };
    let outcome = if engine % 4 == 0 {
        let dir = tempfile::tempdir().expect("tempdir");
        check_model(|| RocksBlockstore::open(dir.path(), opts.clone()).expect("open"), &ops)
    } else {
        // Memory forgets everything when closed: no reopen there.
        ops.retain(|op| *op != ModelOp::Reopen);
        check_model(|| MemBlockstore::new(opts.clone()), &ops)
    };
    if let Err(disagreement) = outcome {
        panic!("store and model disagree: {disagreement}");
    }
});
