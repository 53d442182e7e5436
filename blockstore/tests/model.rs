//! The in-memory store against the BTreeMap model, with many more cases than RocksDB can afford.

mod common;

use cairn_blockstore::testing::{ModelOp, check_model};
use cairn_blockstore::{MemBlockstore, StoreOptions};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mem_store_agrees_with_the_model(ops in proptest::collection::vec(common::model_op(false), 1..120)) {
        // Memory cannot reopen: one store for the whole run.
        let store = std::cell::RefCell::new(Some(MemBlockstore::new(StoreOptions::default())));
        let open = || store.borrow_mut().take().unwrap_or_else(|| MemBlockstore::new(StoreOptions::default()));
        check_model(open, &ops).map_err(TestCaseError::fail)?;
    }

    /// The fuzz target's decoder accepts any bytes.
    #[test]
    fn fuzz_decoder_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let ops = ModelOp::decode(&bytes);
        prop_assert_eq!(ops.len(), bytes.len() / 2);
    }
}
