//! One conformance suite, run against both engines: every scenario below is instantiated for the
//! in-memory store and for RocksDB.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_blockstore::backend::Backend;
use cairn_blockstore::testing::{corrupt_block, lose_block};
use cairn_blockstore::{
    Block, Blockstore, DAG_PB, Error, HashAlg, MemBlockstore, PinMode, RAW, RocksBlockstore,
    ScrubOptions, Store, StoreMetrics, StoreOptions, VerifiedBlock,
};
use cid::Cid;
use ipld_dagpb::{PbLink, PbNode};
use multihash_codetable::{Code, MultihashDigest};

/// A store and whatever keeps it alive (its temporary folder).
struct Fixture<B: Backend> {
    store: Arc<Store<B>>,
    _dir: Option<tempfile::TempDir>,
}

fn open_mem(opts: StoreOptions) -> Fixture<cairn_blockstore::MemBackend> {
    Fixture {
        store: Arc::new(MemBlockstore::new(opts)),
        _dir: None,
    }
}

fn open_rocks(opts: StoreOptions) -> Fixture<cairn_blockstore::RocksBackend> {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksBlockstore::open(dir.path(), opts).unwrap();
    Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

fn opts() -> StoreOptions {
    // Tests do not need fsync per batch; durability has its own kill -9 test.
    StoreOptions {
        sync_writes: false,
        ..StoreOptions::default()
    }
}

fn raw(data: &[u8]) -> Block {
    Block::build(RAW, HashAlg::Sha2_256, Bytes::copy_from_slice(data))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    cairn_tests::random_bytes(len, u64::from(seed))
}

/// A DAG-PB node linking to `children`.
fn node(children: &[&Block]) -> Block {
    let links = children
        .iter()
        .map(|c| PbLink {
            cid: c.cid,
            name: Some(String::new()),
            size: Some(c.data.len() as u64),
        })
        .collect();
    let bytes = PbNode {
        links,
        data: Some(Bytes::from_static(b"\x08\x02")),
    }
    .into_bytes();
    Block::build(DAG_PB, HashAlg::Sha2_256, bytes)
}

macro_rules! conformance {
    ($kind:ident, $open:ident: $($scenario:ident),* $(,)?) => {
        mod $kind {
            $(
                #[test]
                fn $scenario() {
                    super::$scenario(super::$open);
                }
            )*
        }
    };
}

macro_rules! suite {
    ($($scenario:ident),* $(,)?) => {
        conformance!(mem, open_mem: $($scenario),*);
        conformance!(rocks, open_rocks: $($scenario),*);
    };
}

suite!(
    put_then_get_returns_the_same_bytes,
    wrong_bytes_are_refused_on_put,
    unknown_hash_and_codec_are_errors_not_passes,
    invalid_dag_pb_is_refused,
    oversize_blocks_are_refused,
    missing_block_is_not_found,
    one_block_under_two_codecs_is_stored_once,
    put_many_is_all_or_nothing,
    buffered_puts_are_checked_and_counted_like_puts,
    quota_refuses_cleanly_and_frees_on_delete,
    corruption_underneath_is_never_returned,
    get_many_answers_each_block_in_order,
    good_copy_repairs_a_quarantined_block,
    scrub_finds_every_corrupt_block,
    scrub_respects_its_byte_rate,
    scrub_can_be_stopped,
    iterate_lists_every_block,
    recursive_pin_needs_the_whole_dag,
    pinning_a_pinned_root_again_does_not_walk_it,
    a_written_dag_is_pinned_without_reading_it_back,
    a_walk_of_names_reads_only_the_nodes,
    evidence_of_writes_is_void_after_a_removal_or_from_another_store,
    gc_removes_exactly_what_no_pin_reaches,
    gc_refuses_when_a_pinned_dag_is_broken,
    gc_never_removes_a_block_pinned_during_gc,
);

fn put_then_get_returns_the_same_bytes<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let s: &dyn Blockstore = &*f.store;
    let sha = raw(b"hello world\n");
    let blake = Block::build(RAW, HashAlg::Blake3, pattern(5000, 1));
    let empty = raw(b"");
    for b in [&sha, &blake, &empty] {
        s.put(b).unwrap();
        assert!(s.has(&b.cid).unwrap());
        assert_eq!(s.get(&b.cid).unwrap(), b.data);
    }
    let stats = f.store.stats().unwrap();
    assert_eq!((stats.blocks, stats.bytes), (3, 12 + 5000));
    // Putting again changes nothing.
    s.put(&sha).unwrap();
    assert_eq!(f.store.stats().unwrap().blocks, 3);
}

fn wrong_bytes_are_refused_on_put<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let good = raw(b"the real bytes");
    let forged = Block::new(good.cid, Bytes::from_static(b"other bytes"));
    match f.store.put(&forged) {
        Err(Error::HashMismatch { cid, computed }) => {
            assert_eq!(cid, good.cid);
            assert_eq!(computed, Code::Sha2_256.digest(b"other bytes"));
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
    assert!(!f.store.has(&good.cid).unwrap());
    assert_eq!(
        StoreMetrics::get(&f.store.metrics().verification_failures),
        1
    );
}

fn unknown_hash_and_codec_are_errors_not_passes<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let data = b"some bytes";
    let sha512 = Cid::new_v1(RAW, Code::Sha2_512.digest(data));
    assert!(matches!(
        f.store.put(&Block::new(sha512, &data[..])),
        Err(Error::UnsupportedHash { code: 0x13, .. })
    ));
    let identity = Cid::new_v1(RAW, cid::multihash::Multihash::wrap(0, data).unwrap());
    assert!(matches!(
        f.store.put(&Block::new(identity, &data[..])),
        Err(Error::UnsupportedHash { code: 0, .. })
    ));
    let cbor = Cid::new_v1(0x71, Code::Sha2_256.digest(data));
    assert!(matches!(
        f.store.put(&Block::new(cbor, &data[..])),
        Err(Error::UnsupportedCodec { codec: 0x71, .. })
    ));
    assert_eq!(f.store.stats().unwrap().blocks, 0);
}

fn invalid_dag_pb_is_refused<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let junk = Block::build(DAG_PB, HashAlg::Sha2_256, vec![0xff, 0xff, 0xff, 0x01]);
    let err = f.store.put(&junk).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidBlock {
                codec: "dag-pb",
                ..
            }
        ),
        "{err}"
    );
}

fn oversize_blocks_are_refused<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(StoreOptions {
        max_block_size: 1024,
        ..opts()
    });
    f.store.put(&raw(&pattern(1024, 0))).unwrap();
    let big = raw(&pattern(1025, 0));
    let err = f.store.put(&big).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BlockTooLarge {
                size: 1025,
                max: 1024,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("storage.max_block_size"));
    assert!(!f.store.has(&big.cid).unwrap());
}

fn missing_block_is_not_found<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let absent = raw(b"never stored");
    assert!(matches!(f.store.get(&absent.cid), Err(Error::NotFound(c)) if c == absent.cid));
    assert!(!f.store.delete(&absent.cid).unwrap());
}

fn one_block_under_two_codecs_is_stored_once<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let leaf = raw(b"leaf");
    let as_pb = node(&[&leaf]);
    let as_raw = Block::new(Cid::new_v1(RAW, *as_pb.cid.hash()), as_pb.data.clone());
    f.store.put(&as_pb).unwrap();
    f.store.put(&as_raw).unwrap();
    assert_eq!(f.store.stats().unwrap().blocks, 1);
    assert_eq!(f.store.get(&as_raw.cid).unwrap(), as_pb.data);
    assert_eq!(f.store.get(&as_pb.cid).unwrap(), as_pb.data);
}

fn put_many_is_all_or_nothing<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let a = raw(b"a");
    let b = raw(b"b");
    let forged = Block::new(raw(b"c").cid, Bytes::from_static(b"not c"));
    assert!(f.store.put_many(&[a.clone(), b.clone(), forged]).is_err());
    assert!(!f.store.has(&a.cid).unwrap() && !f.store.has(&b.cid).unwrap());
    f.store
        .put_many(&[a.clone(), b.clone(), a.clone()])
        .unwrap();
    assert_eq!(f.store.stats().unwrap().blocks, 2);
}

fn buffered_puts_are_checked_and_counted_like_puts<B: Backend>(
    open: fn(StoreOptions) -> Fixture<B>,
) {
    let f = open(StoreOptions {
        max_bytes: 3000,
        ..opts()
    });
    let s: &dyn Blockstore = &*f.store;
    let a = raw(&pattern(1000, 1));
    s.put_many_buffered(std::slice::from_ref(&a)).unwrap();
    assert_eq!(s.get(&a.cid).unwrap(), a.data);
    let forged = Block::new(raw(b"x").cid, Bytes::from_static(b"y"));
    assert!(matches!(
        s.put_many_buffered(&[forged]),
        Err(Error::HashMismatch { .. })
    ));
    let over = raw(&pattern(2500, 2));
    assert!(matches!(
        s.put_many_buffered(&[over]),
        Err(Error::QuotaExceeded { .. })
    ));
    s.sync().unwrap();
    assert_eq!(f.store.stats().unwrap().bytes, 1000);
}

fn quota_refuses_cleanly_and_frees_on_delete<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(StoreOptions {
        max_bytes: 10_000,
        max_block_size: 4096,
        ..opts()
    });
    let blocks: Vec<Block> = (0..3).map(|i| raw(&pattern(4000, i))).collect();
    f.store.put_many(&blocks[..2]).unwrap();
    // A batch that would pass the quota writes none of its blocks.
    let over = [raw(&pattern(1000, 9)), blocks[2].clone()];
    let err = f.store.put_many(&over).unwrap_err();
    assert!(
        matches!(
            err,
            Error::QuotaExceeded {
                needed: 5000,
                used: 8000,
                max: 10_000
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("storage.max_bytes"));
    assert!(!f.store.has(&over[0].cid).unwrap());
    assert_eq!(f.store.stats().unwrap().bytes, 8000);
    // Re-putting what is stored costs nothing, even at the limit.
    f.store.put(&blocks[0]).unwrap();
    assert!(f.store.delete(&blocks[0].cid).unwrap());
    f.store.put_many(&over).unwrap();
    assert_eq!(f.store.stats().unwrap().bytes, 9000);
    assert_eq!(StoreMetrics::get(&f.store.metrics().quota_rejections), 1);
}

fn corruption_underneath_is_never_returned<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let block = raw(&pattern(300_000, 3));
    f.store.put(&block).unwrap();
    assert!(corrupt_block(&f.store, &block.cid));
    match f.store.get(&block.cid) {
        Err(Error::HashMismatch { cid, .. }) => assert_eq!(cid, block.cid),
        other => panic!("corrupt block must not be returned: {other:?}"),
    }
    // Quarantined: not served again, counted, accounted.
    assert!(!f.store.has(&block.cid).unwrap());
    assert!(matches!(f.store.get(&block.cid), Err(Error::NotFound(_))));
    assert_eq!(f.store.quarantined().unwrap(), vec![*block.cid.hash()]);
    let stats = f.store.stats().unwrap();
    assert_eq!((stats.blocks, stats.bytes, stats.quarantined), (0, 0, 1));
    let m = f.store.metrics();
    assert_eq!(StoreMetrics::get(&m.verification_failures), 1);
    assert_eq!(StoreMetrics::get(&m.quarantined), 1);
}

fn get_many_answers_each_block_in_order<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    // Large enough to be verified on several threads.
    let blocks: Vec<Block> = (0..12u8).map(|i| raw(&pattern(200_000, i))).collect();
    f.store.put_many(&blocks[..10]).unwrap();
    assert!(corrupt_block(&f.store, &blocks[3].cid));
    let cids: Vec<Cid> = blocks.iter().map(|b| b.cid).collect();
    let got = f.store.get_many(&cids).unwrap();
    assert_eq!(got.len(), 12);
    for (i, (result, block)) in got.into_iter().zip(&blocks).enumerate() {
        match (i, result) {
            (3, Err(Error::HashMismatch { cid, .. })) => assert_eq!(cid, block.cid),
            (10 | 11, Err(Error::NotFound(cid))) => assert_eq!(cid, block.cid),
            (_, Ok(bytes)) if i < 10 && i != 3 => assert_eq!(bytes, block.data),
            (i, other) => panic!("block {i}: {other:?}"),
        }
    }
    assert_eq!(f.store.quarantined().unwrap(), vec![*blocks[3].cid.hash()]);
}

fn good_copy_repairs_a_quarantined_block<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let block = raw(&pattern(1000, 4));
    f.store.put(&block).unwrap();
    corrupt_block(&f.store, &block.cid);
    assert!(f.store.get(&block.cid).is_err());
    f.store.put(&block).unwrap();
    assert_eq!(f.store.get(&block.cid).unwrap(), block.data);
    assert!(f.store.quarantined().unwrap().is_empty());
}

fn scrub_finds_every_corrupt_block<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let blocks: Vec<Block> = (0..200u32)
        .map(|i| {
            raw(&pattern(100 + (i as usize * 37) % 5000, i as u8)
                .iter()
                .chain(&i.to_be_bytes())
                .copied()
                .collect::<Vec<_>>())
        })
        .collect();
    f.store.put_many(&blocks).unwrap();
    let damaged: HashSet<_> = blocks.iter().step_by(7).map(|b| *b.cid.hash()).collect();
    for b in blocks.iter().step_by(7) {
        assert!(corrupt_block(&f.store, &b.cid));
    }
    let mut calls = 0;
    let report = f
        .store
        .scrub(
            ScrubOptions {
                bytes_per_second: 0,
            },
            |_| {
                calls += 1;
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    assert!(report.completed);
    assert!(calls >= 200 / 64);
    assert_eq!(report.progress.blocks_checked, 200);
    assert_eq!(report.progress.corrupt, damaged.len() as u64);
    assert_eq!(
        report.corrupt.iter().copied().collect::<HashSet<_>>(),
        damaged
    );
    for b in &blocks {
        if damaged.contains(b.cid.hash()) {
            assert!(!f.store.has(&b.cid).unwrap());
            assert_eq!(f.store.last_verified(&b.cid).unwrap(), None);
        } else {
            assert_eq!(f.store.get(&b.cid).unwrap(), b.data);
            assert!(f.store.last_verified(&b.cid).unwrap().is_some());
        }
    }
    let m = f.store.metrics();
    assert_eq!(StoreMetrics::get(&m.scrub_runs_completed), 1);
    assert!(f.store.last_scrub_completed().unwrap().is_some());
    assert!(StoreMetrics::get(&m.last_scrub_completed) > 0);
    // A second pass finds nothing new.
    let again = f
        .store
        .scrub(
            ScrubOptions {
                bytes_per_second: 0,
            },
            |_| ControlFlow::Continue(()),
        )
        .unwrap();
    assert_eq!(again.progress.corrupt, 0);
    assert_eq!(again.progress.blocks_checked, 200 - damaged.len() as u64);
}

fn scrub_respects_its_byte_rate<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    // 128 blocks of 32 KiB = 4 MiB at 8 MiB/s: at least half a second, however fast the machine.
    let blocks: Vec<Block> = (0..128u8).map(|i| raw(&pattern(32 * 1024, i))).collect();
    f.store.put_many(&blocks).unwrap();
    let started = Instant::now();
    let report = f
        .store
        .scrub(
            ScrubOptions {
                bytes_per_second: 8 << 20,
            },
            |_| ControlFlow::Continue(()),
        )
        .unwrap();
    assert!(report.completed);
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
}

fn scrub_can_be_stopped<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let blocks: Vec<Block> = (0..200u8).map(|i| raw(&pattern(100, i))).collect();
    f.store.put_many(&blocks).unwrap();
    let report = f
        .store
        .scrub(
            ScrubOptions {
                bytes_per_second: 0,
            },
            |_| ControlFlow::Break(()),
        )
        .unwrap();
    assert!(!report.completed);
    assert!(report.progress.blocks_checked < 200);
    assert_eq!(f.store.last_scrub_completed().unwrap(), None);
    assert_eq!(
        StoreMetrics::get(&f.store.metrics().scrub_runs_completed),
        0
    );
}

fn iterate_lists_every_block<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let blocks: Vec<Block> = (0..600u16).map(|i| raw(&i.to_be_bytes())).collect();
    f.store.put_many(&blocks).unwrap();
    let s: &dyn Blockstore = &*f.store;
    let listed: HashSet<_> = s.iterate().map(|r| r.unwrap()).collect();
    let want: HashSet<_> = blocks.iter().map(|b| *b.cid.hash()).collect();
    assert_eq!(listed, want);
}

/// root → [mid → [a, b], c]
fn small_dag() -> (Block, Block, [Block; 3]) {
    let leaves = [raw(b"leaf a"), raw(b"leaf b"), raw(b"leaf c")];
    let mid = node(&[&leaves[0], &leaves[1]]);
    let root = node(&[&mid, &leaves[2]]);
    (root, mid, leaves)
}

fn recursive_pin_needs_the_whole_dag<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let (root, mid, leaves) = small_dag();
    f.store
        .put_many(&[
            root.clone(),
            mid.clone(),
            leaves[0].clone(),
            leaves[2].clone(),
        ])
        .unwrap();
    match f.store.pin(&root.cid, PinMode::Recursive) {
        Err(Error::Incomplete { root: r, missing }) => {
            assert_eq!(r, root.cid);
            assert_eq!(missing, leaves[1].cid);
        }
        other => panic!("expected Incomplete, got {other:?}"),
    }
    assert_eq!(f.store.pin_mode(&root.cid).unwrap(), None);
    f.store.put(&leaves[1]).unwrap();
    f.store.pin(&root.cid, PinMode::Recursive).unwrap();
    // A direct pin never weakens a recursive one.
    f.store.pin(&root.cid, PinMode::Direct).unwrap();
    assert_eq!(
        f.store.pin_mode(&root.cid).unwrap(),
        Some(PinMode::Recursive)
    );
    assert_eq!(
        f.store.pins().unwrap(),
        vec![(root.cid, PinMode::Recursive)]
    );
    assert!(f.store.is_reachable(&leaves[1].cid).unwrap());
    assert!(f.store.unpin(&root.cid).unwrap());
    assert!(!f.store.unpin(&root.cid).unwrap());
    assert!(!f.store.is_reachable(&leaves[1].cid).unwrap());
}

/// The write path pins a fresh add twice (the import, then the replication's pin under the root's
/// lock): the second must not read the whole file back.
fn pinning_a_pinned_root_again_does_not_walk_it<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let (root, mid, leaves) = small_dag();
    let mut all = vec![root.clone(), mid.clone()];
    all.extend(leaves.iter().cloned());
    f.store.put_many(&all).unwrap();
    f.store.pin(&root.cid, PinMode::Direct).unwrap();
    // A leaf gone behind the pins' back: any walk of the DAG now stops at it.
    assert!(f.store.delete(&leaves[1].cid).unwrap());
    assert!(matches!(
        f.store.walk(&root.cid, |_| {}),
        Err(Error::Incomplete { .. })
    ));
    // Direct to recursive is a new promise about the whole DAG: walked, and refused.
    assert!(matches!(
        f.store.pin(&root.cid, PinMode::Recursive),
        Err(Error::Incomplete { .. })
    ));
    assert_eq!(f.store.pin_mode(&root.cid).unwrap(), Some(PinMode::Direct));
    f.store.put(&leaves[1]).unwrap();
    f.store.pin(&root.cid, PinMode::Recursive).unwrap();
    assert!(f.store.delete(&leaves[1].cid).unwrap());
    // Recursive again: kept as it is, without the walk that would have found the gap.
    f.store.pin(&root.cid, PinMode::Recursive).unwrap();
    assert_eq!(
        f.store.pin_mode(&root.cid).unwrap(),
        Some(PinMode::Recursive)
    );
}

fn verified(blocks: &[&Block]) -> Vec<VerifiedBlock> {
    blocks
        .iter()
        .map(|b| VerifiedBlock::check((*b).clone()).unwrap())
        .collect()
}

/// An import or fetch pins what it just wrote: the pin takes the store's record of those writes
/// instead of reading every block back, and still checks what it did not write.
fn a_written_dag_is_pinned_without_reading_it_back<B: Backend>(
    open: fn(StoreOptions) -> Fixture<B>,
) {
    let f = open(opts());
    let (root, mid, leaves) = small_dag();
    // Stored before the writer began: not the writer's to vouch for.
    f.store.put(&leaves[2]).unwrap();
    let mut written = f.store.begin_written();
    f.store
        .put_verified_noting(
            &verified(&[&root, &mid, &leaves[0], &leaves[1]]),
            &mut written,
        )
        .unwrap();
    assert_eq!(written.len(), 4);
    // Gone from under the store, untold: a walk that looked would stop at it.
    assert!(lose_block(&f.store, &leaves[2].cid));
    match f.store.pin_written(&root.cid, &written) {
        Err(Error::Incomplete { missing, .. }) => assert_eq!(missing, leaves[2].cid),
        other => panic!("a block the writer did not store must be looked at: {other:?}"),
    }
    assert_eq!(f.store.pin_mode(&root.cid).unwrap(), None);
    f.store.put(&leaves[2]).unwrap();
    // Now one the writer stored goes missing the same way: the pin does not read it back.
    assert!(lose_block(&f.store, &leaves[1].cid));
    f.store.pin_written(&root.cid, &written).unwrap();
    assert_eq!(
        f.store.pin_mode(&root.cid).unwrap(),
        Some(PinMode::Recursive)
    );
    // The plain pin's walk is what would have seen it.
    assert!(matches!(
        f.store.walk(&root.cid, |_| {}),
        Err(Error::Incomplete { .. })
    ));
}

/// `walk_names` reads the DAG-PB nodes it needs for links and only names the leaves: a leaf gone
/// from under the store is still named, where `walk` stops at it. A lost node still stops it.
fn a_walk_of_names_reads_only_the_nodes<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let (root, mid, leaves) = small_dag();
    let all = [&root, &mid, &leaves[0], &leaves[1], &leaves[2]];
    for block in all {
        f.store.put(block).unwrap();
    }
    assert!(lose_block(&f.store, &leaves[1].cid));
    assert!(matches!(
        f.store.walk(&root.cid, |_| {}),
        Err(Error::Incomplete { missing, .. }) if missing == leaves[1].cid
    ));
    let mut named = Vec::new();
    cairn_blockstore::walk_names(&*f.store, &root.cid, |cid| named.push(*cid)).unwrap();
    let mut expected: Vec<Cid> = all.iter().map(|b| b.cid).collect();
    expected.sort();
    named.sort();
    assert_eq!(named, expected);
    assert!(lose_block(&f.store, &mid.cid));
    assert!(matches!(
        cairn_blockstore::walk_names(&*f.store, &root.cid, |_| {}),
        Err(Error::Incomplete { missing, .. }) if missing == mid.cid
    ));
}

/// The record stands only for the store that took the writes, and only while that store has
/// removed nothing since the writer began: after a removal, the pin walks the whole DAG.
fn evidence_of_writes_is_void_after_a_removal_or_from_another_store<B: Backend>(
    open: fn(StoreOptions) -> Fixture<B>,
) {
    let f = open(opts());
    let other = open(opts());
    let (root, mid, leaves) = small_dag();
    let all = [&root, &mid, &leaves[0], &leaves[1], &leaves[2]];
    let mut foreign = other.store.begin_written();
    other
        .store
        .put_verified_noting(&verified(&all), &mut foreign)
        .unwrap();
    let mut written = f.store.begin_written();
    f.store
        .put_verified_noting(&verified(&all), &mut written)
        .unwrap();
    // Evidence handed to the wrong store records nothing there.
    let mut crossed = other.store.begin_written();
    f.store
        .put_verified_noting(&verified(&all), &mut crossed)
        .unwrap();
    assert!(crossed.is_empty());
    assert!(lose_block(&f.store, &leaves[0].cid));
    for evidence in [&foreign, &crossed] {
        assert!(matches!(
            f.store.pin_written(&root.cid, evidence),
            Err(Error::Incomplete { .. })
        ));
    }
    // Any removal through the store (GC, delete, quarantine) voids this store's record too.
    let loose = raw(b"removed after the writer began");
    f.store.put(&loose).unwrap();
    assert!(f.store.delete(&loose.cid).unwrap());
    assert!(matches!(
        f.store.pin_written(&root.cid, &written),
        Err(Error::Incomplete { .. })
    ));
    assert_eq!(f.store.pin_mode(&root.cid).unwrap(), None);
}

fn gc_removes_exactly_what_no_pin_reaches<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let (root, mid, leaves) = small_dag();
    let loose = raw(b"nobody pins me");
    let direct_child = raw(b"child of a directly pinned node");
    let direct = node(&[&direct_child]);
    let all = [
        &root,
        &mid,
        &leaves[0],
        &leaves[1],
        &leaves[2],
        &loose,
        &direct,
        &direct_child,
    ];
    f.store.put_many(&all.map(|b| b.clone())).unwrap();
    f.store.pin(&root.cid, PinMode::Recursive).unwrap();
    f.store.pin(&direct.cid, PinMode::Direct).unwrap();
    let report = f.store.gc().unwrap();
    assert_eq!(report.removed_blocks, 2);
    assert_eq!(
        report.removed_bytes,
        (loose.data.len() + direct_child.data.len()) as u64
    );
    assert_eq!(report.kept_blocks, 6);
    for b in &all[..5] {
        assert!(f.store.has(&b.cid).unwrap());
    }
    assert!(f.store.has(&direct.cid).unwrap());
    assert!(!f.store.has(&loose.cid).unwrap() && !f.store.has(&direct_child.cid).unwrap());
    assert_eq!(f.store.stats().unwrap().blocks, 6);
    f.store.unpin(&root.cid).unwrap();
    assert_eq!(f.store.gc().unwrap().removed_blocks, 5);
    assert_eq!(f.store.stats().unwrap().blocks, 1);
}

fn gc_refuses_when_a_pinned_dag_is_broken<B: Backend>(open: fn(StoreOptions) -> Fixture<B>) {
    let f = open(opts());
    let (root, mid, leaves) = small_dag();
    let loose = raw(b"loose");
    f.store
        .put_many(&[
            root.clone(),
            mid.clone(),
            leaves[0].clone(),
            leaves[1].clone(),
            leaves[2].clone(),
            loose.clone(),
        ])
        .unwrap();
    f.store.pin(&root.cid, PinMode::Recursive).unwrap();
    corrupt_block(&f.store, &mid.cid);
    // Below a corrupt node GC cannot know what is pinned, so it removes nothing.
    assert!(f.store.gc().is_err());
    assert!(f.store.has(&leaves[0].cid).unwrap() && f.store.has(&loose.cid).unwrap());
    // Once the node is repaired, GC proceeds.
    f.store.put(&mid).unwrap();
    assert_eq!(f.store.gc().unwrap().removed_blocks, 1);
}

fn gc_never_removes_a_block_pinned_during_gc<B: Backend>(open: fn(StoreOptions) -> Fixture<B>)
where
    Store<B>: Send + Sync,
{
    let f = open(opts());
    // Garbage so each GC pass has work to do while imports race it.
    let garbage: Vec<Block> = (0..300u16)
        .map(|i| raw(&[&i.to_be_bytes()[..], b"garbage"].concat()))
        .collect();
    f.store.put_many(&garbage).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let gc_store = Arc::clone(&f.store);
    let gc_stop = Arc::clone(&stop);
    let collector = std::thread::spawn(move || {
        let mut passes = 0u32;
        while !gc_stop.load(Ordering::Relaxed) || passes < 3 {
            gc_store.gc().unwrap();
            passes += 1;
        }
        passes
    });
    let mut roots = Vec::new();
    for i in 0..150u16 {
        let leaves: Vec<Block> = (0..4u16)
            .map(|j| raw(&[&i.to_be_bytes()[..], &j.to_be_bytes()[..], b"leaf"].concat()))
            .collect();
        let root = node(&leaves.iter().collect::<Vec<_>>());
        // An import holds the GC guard across its puts and its pin, as the importer does.
        let guard = f.store.gc_guard();
        f.store.put_many(&leaves).unwrap();
        f.store.put(&root).unwrap();
        f.store.pin(&root.cid, PinMode::Recursive).unwrap();
        drop(guard);
        roots.push((root, leaves));
    }
    stop.store(true, Ordering::Relaxed);
    assert!(collector.join().unwrap() >= 3);
    for (root, leaves) in &roots {
        assert_eq!(f.store.get(&root.cid).unwrap(), root.data);
        for leaf in leaves {
            assert_eq!(
                f.store.get(&leaf.cid).unwrap(),
                leaf.data,
                "pinned leaf collected"
            );
        }
    }
    assert!(garbage.iter().all(|g| !f.store.has(&g.cid).unwrap()));
}
