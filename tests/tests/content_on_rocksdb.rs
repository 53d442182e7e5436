//! The foundation end to end on the real engine: a file imported into RocksDB, pinned, kept by GC,
//! read back after a reopen with the reference CID, and damage underneath found by scrub and
//! refused by reads.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::ops::ControlFlow;
use std::sync::Arc;

use cairn_blockstore::testing::corrupt_block;
use cairn_blockstore::{
    Block, Error as StoreError, HashAlg, PinMode, RAW, RocksBlockstore, ScrubOptions, StoreOptions,
};
use cairn_node::unixfs::{CHUNK_SIZE, ImportOptions, export_to, import_reader};
use cairn_tests::pattern;

/// `pat_10MiB.bin` of the shared vectors, with raw leaves and CIDv1.
const TEN_MIB_CID: &str = "bafybeih4kagh7adu5njlrodpibagiyttjpsfgsxw5buthmrw5edmkavvqi";

#[test]
fn imported_file_survives_gc_and_reopen_and_damage_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(10 << 20);
    {
        let store = RocksBlockstore::open(dir.path(), StoreOptions::default()).unwrap();
        let guard = store.gc_guard();
        let root = import_reader(&store, &data[..], ImportOptions::default())
            .unwrap()
            .root;
        store.pin(&root, PinMode::Recursive).unwrap();
        drop(guard);
        assert_eq!(root.to_string(), TEN_MIB_CID);
        // Unpinned garbage beside it.
        let loose = Block::build(RAW, HashAlg::Sha2_256, vec![9u8; 1000]);
        store.put(&loose).unwrap();
        let gc = store.gc().unwrap();
        assert_eq!(gc.removed_blocks, 1);
        assert_eq!(gc.kept_blocks, 41, "40 leaves and their root");
    }
    let store = RocksBlockstore::open(dir.path(), StoreOptions::default()).unwrap();
    let root = TEN_MIB_CID.parse().unwrap();
    let mut out = Vec::new();
    export_to(&store, root, &mut out).unwrap();
    assert_eq!(out, data);

    // Damage the 7th leaf underneath: scrub finds it, reads refuse it.
    let leaf = Block::build(
        RAW,
        HashAlg::Sha2_256,
        data[6 * CHUNK_SIZE..7 * CHUNK_SIZE].to_vec(),
    );
    assert!(corrupt_block(&store, &leaf.cid));
    let report = store
        .scrub(
            ScrubOptions {
                bytes_per_second: 0,
            },
            |_| ControlFlow::Continue(()),
        )
        .unwrap();
    assert_eq!(report.corrupt, vec![*leaf.cid.hash()]);
    let err = export_to(&store, root, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, cairn_node::Error::Store(StoreError::NotFound(c)) if c == leaf.cid),
        "quarantined leaf must not be served: {err}"
    );
    // GC refuses to guess below a pinned DAG with a hole, and removes nothing.
    let before = store.stats().unwrap().blocks;
    assert!(store.gc().is_err());
    assert_eq!(store.stats().unwrap().blocks, before);
    // A good copy (from a replica, later) repairs it.
    store.put(&leaf).unwrap();
    let mut out = Vec::new();
    export_to(&store, root, &mut out).unwrap();
    assert_eq!(out, data);
}

#[tokio::test]
async fn car_export_from_rocksdb_imports_into_a_fresh_store() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = Arc::new(RocksBlockstore::open(dirs.0.path(), StoreOptions::default()).unwrap());
    let data = pattern(3 * CHUNK_SIZE + 17);
    let root = import_reader(&*source, &data[..], ImportOptions::default())
        .unwrap()
        .root;
    let mut car = Vec::new();
    cairn_node::car::export_car(
        Arc::clone(&source),
        &cairn_node::tasks::Jobs::standalone(),
        root,
        &mut car,
    )
    .await
    .unwrap();
    let target = Arc::new(RocksBlockstore::open(dirs.1.path(), StoreOptions::default()).unwrap());
    let imported = cairn_node::car::import_car(
        Arc::clone(&target),
        &cairn_node::tasks::Jobs::standalone(),
        &car[..],
    )
    .await
    .unwrap();
    assert_eq!(imported.roots, vec![root]);
    let mut out = Vec::new();
    export_to(&*target, root, &mut out).unwrap();
    assert_eq!(out, data);
}
