//! UnixFS import/export against the IPFS reference importer's CIDs, and round trips.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use cairn_blockstore::testing::corrupt_block;
use cairn_blockstore::{Block, Blockstore, Error as StoreError, MemBlockstore, StoreOptions};
use cairn_node::Error;
use cairn_node::unixfs::{
    CHUNK_SIZE, CidVersion, FileImporter, FileReader, ImportOptions, MAX_LINKS, export_to,
    import_reader,
};
use cid::Cid;
use proptest::prelude::*;

use cairn_tests::pattern;

fn vector_input(name: &str, len: usize) -> Vec<u8> {
    if name == "hello.txt" {
        b"hello world\n".to_vec()
    } else {
        pattern(len)
    }
}

fn store() -> MemBlockstore {
    MemBlockstore::new(StoreOptions::default())
}

fn import(store: &MemBlockstore, data: &[u8], cid_version: CidVersion) -> Cid {
    let opts = ImportOptions {
        cid_version,
        ..ImportOptions::default()
    };
    import_reader(store, data, opts).unwrap().root
}

fn export(store: &MemBlockstore, root: Cid) -> Vec<u8> {
    let mut out = Vec::new();
    export_to(store, root, &mut out).unwrap();
    out
}

fn rows(tsv: &str) -> Vec<Vec<&str>> {
    tsv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').collect())
        .collect()
}

#[test]
fn every_reference_vector_gives_its_cid_in_both_versions() {
    let table = include_str!("vectors/unixfs-cids.tsv");
    let rows = rows(table);
    assert_eq!(rows.len(), 6, "the vector table lost rows");
    for row in rows {
        let [name, len, _sha256, v0, v1] = row[..] else {
            panic!("bad row {row:?}")
        };
        let data = vector_input(name, len.parse().unwrap());
        let s = store();
        assert_eq!(
            import(&s, &data, CidVersion::V1).to_string(),
            v1,
            "{name} (CIDv1, raw leaves)"
        );
        assert_eq!(
            import(&s, &data, CidVersion::V0).to_string(),
            v0,
            "{name} (CIDv0)"
        );
        let v1_root: Cid = v1.parse().unwrap();
        let v0_root: Cid = v0.parse().unwrap();
        assert_eq!(export(&s, v1_root), data, "{name} exports from CIDv1");
        assert_eq!(export(&s, v0_root), data, "{name} exports from CIDv0");
    }
}

#[test]
fn multi_level_trees_match_the_reference_importer() {
    for row in rows(include_str!("vectors/unixfs-cids-multilevel.tsv")) {
        let [name, len, v0] = row[..] else {
            panic!("bad row {row:?}")
        };
        let len: usize = len.parse().unwrap();
        assert!(
            len >= MAX_LINKS * CHUNK_SIZE,
            "{name} is not a multi-level input"
        );
        let data = pattern(len);
        let s = store();
        let root = import(&s, &data, CidVersion::V0);
        assert_eq!(root.to_string(), v0, "{name}");
        assert_eq!(export(&s, root), data, "{name} round trip");
        // The CIDv1 tree of the same input has the same shape and reads back too.
        let root = import(&s, &data, CidVersion::V1);
        assert_eq!(root.version(), cid::Version::V1);
        assert_eq!(export(&s, root), data);
    }
}

#[test]
fn corrupt_block_in_a_file_fails_the_read_and_never_yields_wrong_bytes() {
    let s = store();
    let data = pattern(3 * CHUNK_SIZE + 5);
    let root = import(&s, &data, CidVersion::V1);
    let second_leaf = Block::build(
        cairn_blockstore::RAW,
        cairn_blockstore::HashAlg::Sha2_256,
        Bytes::copy_from_slice(&data[CHUNK_SIZE..2 * CHUNK_SIZE]),
    );
    assert!(corrupt_block(&s, &second_leaf.cid));
    let mut reader = FileReader::new(&s, root);
    assert_eq!(reader.next().unwrap().unwrap(), data[..CHUNK_SIZE]);
    match reader.next() {
        Some(Err(Error::Store(StoreError::HashMismatch { cid, .. }))) => {
            assert_eq!(cid, second_leaf.cid)
        }
        other => panic!("expected a verification error, got {other:?}"),
    }
    assert!(reader.next().is_none(), "a failed read ends the stream");
}

#[test]
fn non_files_and_missing_roots_are_clear_errors() {
    let s = store();
    let missing: Cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        .parse()
        .unwrap();
    let err = export_to(&s, missing, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::NotFound(_))),
        "{err}"
    );
    // A DAG-PB node without UnixFS data.
    let bare = ipld_dagpb::PbNode {
        links: vec![],
        data: Some(Bytes::from_static(b"\xff\xff")),
    }
    .into_bytes();
    let block = Block::build(
        cairn_blockstore::DAG_PB,
        cairn_blockstore::HashAlg::Sha2_256,
        bare,
    );
    s.put(&block).unwrap();
    let err = export_to(&s, block.cid, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, Error::NotAFile { .. }), "{err}");
}

/// A store that verifies nothing and keeps nothing: it only records how large each write was.
#[derive(Default)]
struct WriteSizeRecorder {
    largest_batch: AtomicUsize,
    total: AtomicUsize,
}

impl Blockstore for WriteSizeRecorder {
    fn get(&self, cid: &Cid) -> cairn_blockstore::Result<Bytes> {
        Err(StoreError::NotFound(*cid))
    }
    fn has(&self, _: &Cid) -> cairn_blockstore::Result<bool> {
        Ok(false)
    }
    fn put(&self, block: &Block) -> cairn_blockstore::Result<()> {
        self.put_many(std::slice::from_ref(block))
    }
    fn put_many(&self, blocks: &[Block]) -> cairn_blockstore::Result<()> {
        let bytes: usize = blocks.iter().map(|b| b.data.len()).sum();
        self.largest_batch.fetch_max(bytes, Ordering::Relaxed);
        self.total.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }
    fn delete(&self, _: &Cid) -> cairn_blockstore::Result<bool> {
        Ok(false)
    }
    fn iterate(
        &self,
    ) -> Box<dyn Iterator<Item = cairn_blockstore::Result<cid::multihash::Multihash<64>>> + '_>
    {
        Box::new(std::iter::empty())
    }
}

/// 300 MiB in pieces of odd sizes: the importer hands the store bounded batches, so the file is
/// never held whole.
#[test]
fn import_streams_in_bounded_batches() {
    let recorder = WriteSizeRecorder::default();
    let mut importer = FileImporter::new(&recorder, ImportOptions::default());
    let piece = pattern(1_000_003);
    let mut fed = 0usize;
    while fed < 300 << 20 {
        importer.write(&piece).unwrap();
        fed += piece.len();
    }
    let done = importer.finish().unwrap();
    assert_eq!(done.size, fed as u64);
    assert!(recorder.total.load(Ordering::Relaxed) > fed);
    let largest = recorder.largest_batch.load(Ordering::Relaxed);
    assert!(
        largest <= (4 << 20) + 2 * CHUNK_SIZE,
        "a batch of {largest} bytes"
    );
}

/// Sizes that sit on the edges that matter: empty, one byte, a chunk either side, a full node of
/// links either side, and a second level of links either side.
fn edge_sizes(chunk: usize, links: usize) -> Vec<usize> {
    let mut sizes = vec![0, 1];
    for n in [1, links, links * links, links * links * links] {
        let at = n * chunk;
        sizes.extend([at.saturating_sub(1), at, at + 1]);
    }
    sizes
}

#[test]
fn round_trip_at_every_edge_with_small_chunks() {
    // Small chunks and fan-out build deep trees from little data.
    for (chunk, links) in [(1, 2), (4, 3), (16, 5)] {
        for len in edge_sizes(chunk, links) {
            for version in [CidVersion::V0, CidVersion::V1] {
                let s = store();
                let data = pattern(len);
                let opts = ImportOptions {
                    cid_version: version,
                    chunk_size: chunk,
                    max_links: links,
                };
                let root = import_reader(&s, &data[..], opts).unwrap().root;
                assert_eq!(
                    export(&s, root),
                    data,
                    "chunk {chunk} links {links} len {len} {version:?}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// import → export is the identity, whatever the size, the way the bytes arrive and the shape
    /// of the tree.
    #[test]
    fn import_then_export_is_the_identity(
        len in 0usize..20_000,
        chunk in 1usize..600,
        links in 2usize..8,
        write_size in 1usize..5_000,
        v0 in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let data = cairn_tests::random_bytes(len, seed);
        let s = store();
        let opts = ImportOptions {
            cid_version: if v0 { CidVersion::V0 } else { CidVersion::V1 },
            chunk_size: chunk,
            max_links: links,
        };
        let mut importer = FileImporter::new(&s, opts);
        for piece in data.chunks(write_size) {
            importer.write(piece).unwrap();
        }
        let done = importer.finish().unwrap();
        prop_assert_eq!(done.size, len as u64);
        prop_assert_eq!(export(&s, done.root), data);
    }

    /// Pieces handed over without a copy (whole chunks become leaves as they are), mixed with
    /// copied ones, give the same DAG as the same bytes read from a reader.
    #[test]
    fn shared_and_copied_writes_make_the_same_dag(
        len in 0usize..20_000,
        chunk in 1usize..600,
        pieces in proptest::collection::vec((1usize..3_000, any::<bool>()), 1..40),
        seed in any::<u64>(),
    ) {
        let data = Bytes::from(cairn_tests::random_bytes(len, seed));
        let opts = ImportOptions {
            chunk_size: chunk,
            ..ImportOptions::default()
        };
        let s = store();
        let mut importer = FileImporter::new(&s, opts);
        let (mut at, mut turn) = (0, 0);
        while at < data.len() {
            let (size, shared) = pieces[turn % pieces.len()];
            // Some pieces span whole chunks exactly, as the CLI's messages do.
            let size = if turn % 3 == 0 { chunk * (size % 4 + 1) } else { size };
            let piece = data.slice(at..(at + size).min(data.len()));
            if shared {
                importer.write_shared(piece).unwrap();
            } else {
                importer.write(&piece).unwrap();
            }
            at += size;
            turn += 1;
        }
        let done = importer.finish().unwrap();
        let reference = import_reader(&store(), &data[..], opts).unwrap();
        prop_assert_eq!(done, reference);
        prop_assert_eq!(export(&s, done.root), data.to_vec());
    }

    /// Real chunk size, sizes around the chunk boundary.
    #[test]
    fn round_trip_around_the_chunk_boundary(delta in -3i64..=3, chunks in 1i64..4) {
        let len = (chunks * CHUNK_SIZE as i64 + delta).max(0) as usize;
        let s = store();
        let data = pattern(len);
        let root = import(&s, &data, CidVersion::V1);
        prop_assert_eq!(export(&s, root), data);
    }
}

#[test]
fn a_dag_deeper_than_any_file_the_importer_makes_is_refused() {
    // A chain of one-link file nodes, 20 levels over a 1-byte leaf: the importer's trees stop at
    // 16 (174^16 chunks), so a deeper one is hostile, and reading it fails with the reason.
    let s = store();
    let leaf = Block::build(
        cairn_blockstore::RAW,
        cairn_blockstore::HashAlg::Sha2_256,
        &b"x"[..],
    );
    s.put(&leaf).unwrap();
    // UnixFS Data { Type: File, filesize: 1, blocksizes: [1] }, protobuf-encoded.
    let file_of_one_byte = Bytes::from_static(&[0x08, 0x02, 0x18, 0x01, 0x20, 0x01]);
    let mut below = leaf.cid;
    for _ in 0..20 {
        let node = ipld_dagpb::PbNode {
            links: vec![ipld_dagpb::PbLink {
                cid: below,
                name: Some(String::new()),
                size: Some(1),
            }],
            data: Some(file_of_one_byte.clone()),
        }
        .into_bytes();
        let block = Block::build(
            cairn_blockstore::DAG_PB,
            cairn_blockstore::HashAlg::Sha2_256,
            node,
        );
        s.put(&block).unwrap();
        below = block.cid;
    }
    let err = export_to(&s, below, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, Error::MalformedDag { .. }), "{err}");
    assert!(err.to_string().contains("deeper than 16 levels"), "{err}");
}
