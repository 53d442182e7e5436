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
