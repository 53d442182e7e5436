//! Model-based fuzzing of the RocksDB store: the fuzzer's bytes become put, put-many, get, has,
//! delete, corrupt-underneath and reopen operations, applied to the store and to a BTreeMap model
//! (`cairn_blockstore::testing::check_model`). Any disagreement — a corrupt block returned, a lost
//! block, a wrong count — is a crash.
#![no_main]

use cairn_blockstore::testing::{ModelOp, check_model};
use cairn_blockstore::{RocksBlockstore, StoreOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ops = ModelOp::decode(data);
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions { sync_writes: false, ..StoreOptions::default() };
    let open = || RocksBlockstore::open(dir.path(), opts.clone()).expect("open");
    if let Err(disagreement) = check_model(open, &ops) {
        panic!("store and model disagree: {disagreement}");
    }
});
