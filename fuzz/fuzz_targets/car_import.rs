//! CAR import of hostile files: headers, varints, CIDs and block lengths that lie, truncation. An
//! import either stores verified blocks and complete roots or fails with an error; it never
//! panics and never stores a block whose bytes do not match its CID.
#![no_main]

use std::sync::Arc;

use cairn_blockstore::{MemBlockstore, StoreOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let store = Arc::new(MemBlockstore::new(StoreOptions::default()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let imported = runtime.block_on(cairn_node::car::import_car(Arc::clone(&store), &cairn_node::tasks::Jobs::standalone(), data));
    if imported.is_ok() {
        // Every stored block reads back verified.
        for key in store.iterate() {
            let mh = key.expect("listing");
            let cid = cairn_blockstore::raw_cid(mh);
            assert!(store.get(&cid).is_ok(), "a stored block does not verify");
        }
    }
});
