//! What only the RocksDB store can show: state survives a reopen, damage made with RocksDB itself
//! while the store is closed is caught, and the model test with reopen as an operation.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use bytes::Bytes;
use cairn_blockstore::testing::check_model;
use cairn_blockstore::{
    Block, DAG_PB, Error, HashAlg, PinMode, RAW, RocksBlockstore, StoreOptions,
};
use ipld_dagpb::{PbLink, PbNode};
use proptest::prelude::*;

fn opts() -> StoreOptions {
    StoreOptions {
        sync_writes: false,
        ..StoreOptions::default()
    }
}

/// The store's database opened with RocksDB itself, as another process could.
fn open_raw(path: &std::path::Path) -> rocksdb::DB {
    let names = [
        "default",
        "blocks_v1",
        "pins_v1",
        "replicas_v1",
        "quarantine_v1",
        "meta_v1",
    ];
    rocksdb::DB::open_cf(&rocksdb::Options::default(), path, names).unwrap()
}

#[test]
fn blocks_pins_and_usage_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let leaf = Block::build(RAW, HashAlg::Sha2_256, vec![7u8; 100_000]);
    let root_bytes = PbNode {
        links: vec![PbLink {
            cid: leaf.cid,
            name: Some(String::new()),
            size: Some(100_000),
        }],
        data: None,
    }
    .into_bytes();
    let root = Block::build(DAG_PB, HashAlg::Sha2_256, root_bytes);
    {
        let store = RocksBlockstore::open(dir.path(), opts()).unwrap();
        store.put_many(&[leaf.clone(), root.clone()]).unwrap();
        store.pin(&root.cid, PinMode::Recursive).unwrap();
        store.flush().unwrap();
    }
    let store = RocksBlockstore::open(dir.path(), opts()).unwrap();
    assert_eq!(store.get(&leaf.cid).unwrap(), leaf.data);
    assert_eq!(store.pin_mode(&root.cid).unwrap(), Some(PinMode::Recursive));
    let stats = store.stats().unwrap();
    assert_eq!(
        (stats.blocks, stats.bytes),
        (2, 100_000 + root.data.len() as u64)
    );
    assert_eq!(store.gc().unwrap().removed_blocks, 0);
}

#[test]
fn damage_made_while_closed_is_caught_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let block = Block::build(RAW, HashAlg::Sha2_256, Bytes::from(vec![42u8; 300_000]));
    {
        let store = RocksBlockstore::open(dir.path(), opts()).unwrap();
        store.put(&block).unwrap();
    }
    {
        // Another process (or a bad disk) rewrites the value behind the store's back.
        let db = open_raw(dir.path());
        let cf = db.cf_handle("blocks_v1").unwrap();
        db.put_cf(cf, block.cid.hash().to_bytes(), vec![43u8; 300_000])
            .unwrap();
    }
    let store = RocksBlockstore::open(dir.path(), opts()).unwrap();
    assert!(matches!(
        store.get(&block.cid),
        Err(Error::HashMismatch { .. })
    ));
    assert_eq!(store.quarantined().unwrap(), vec![*block.cid.hash()]);
}

#[test]
fn usage_is_recounted_when_its_record_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RocksBlockstore::open(dir.path(), opts()).unwrap();
        store
            .put(&Block::build(RAW, HashAlg::Sha2_256, vec![1u8; 5000]))
            .unwrap();
    }
    {
        let db = open_raw(dir.path());
        db.delete_cf(db.cf_handle("meta_v1").unwrap(), b"usage")
            .unwrap();
    }
    let store = RocksBlockstore::open(dir.path(), opts()).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!((stats.blocks, stats.bytes), (1, 5000));
}

/// Bytes in the store's blob files (where blocks live).
fn blob_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().extension().is_some_and(|x| x == "blob"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn gc_gives_the_space_of_removed_blocks_back_to_the_disk() {
    const MIB: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let store = RocksBlockstore::open(dir.path(), opts()).unwrap();
    let blocks: Vec<Block> = (0..32u64)
        .map(|i| {
            Block::build(
                RAW,
                HashAlg::Sha2_256,
                cairn_tests::random_bytes(MIB / 4, i),
            )
        })
        .collect();
    store.put_many(&blocks).unwrap();
    let kept = &blocks[..8];
    for block in kept {
        store.pin(&block.cid, PinMode::Direct).unwrap();
    }
    store.flush().unwrap();
    let before = blob_bytes(dir.path());
    assert!(
        before >= 8 * MIB as u64,
        "blocks are in blob files: {before}"
    );

    let report = store.gc().unwrap();
    assert_eq!(report.removed_blocks, 24);
    let after = blob_bytes(dir.path());
    // What is left on disk is about the 2 MiB still pinned, not the 8 MiB written.
    assert!(
        after <= 3 * MIB as u64,
        "blob files hold {after} bytes after GC removed 6 MiB of 8"
    );
    for block in kept {
        assert_eq!(store.get(&block.cid).unwrap(), block.data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random operations, reopen included, agree with a BTreeMap model at every step.
    #[test]
    fn rocks_store_agrees_with_the_model(ops in proptest::collection::vec(common::model_op(true), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let open = || RocksBlockstore::open(dir.path(), opts()).unwrap();
        check_model(open, &ops).map_err(TestCaseError::fail)?;
    }
}
