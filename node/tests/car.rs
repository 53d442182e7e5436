//! CAR v1 import and export: round trips between stores, and hostile or broken files refused.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use cairn_blockstore::{Block, HashAlg, MemBlockstore, RAW, StoreOptions};
use cairn_node::Error;
use cairn_node::car::{CarImport, export_car, import_car};
use cairn_node::tasks::Jobs;
use cairn_node::unixfs::{CHUNK_SIZE, ImportOptions, export_to, import_reader};
use iroh_car::{CarHeader, CarWriter};

fn store() -> Arc<MemBlockstore> {
    Arc::new(MemBlockstore::new(StoreOptions::default()))
}

/// Writes `root`'s DAG in `source` as a CAR file into `out`.
async fn export(
    source: &Arc<MemBlockstore>,
    root: cid::Cid,
    out: &mut Vec<u8>,
) -> Result<u64, Error> {
    export_car(Arc::clone(source), &Jobs::standalone(), root, out).await
}

/// Reads CAR bytes into `target`.
async fn import(target: &Arc<MemBlockstore>, car: &[u8]) -> Result<CarImport, Error> {
    import_car(Arc::clone(target), &Jobs::standalone(), car).await
}

/// A file in one store, exported as CAR bytes.
async fn file_as_car(len: usize) -> (Vec<u8>, cid::Cid, Vec<u8>) {
    let source = store();
    let data = cairn_tests::random_bytes(len, len as u64);
    let root = import_reader(&*source, &data[..], ImportOptions::default())
        .unwrap()
        .root;
    let mut car = Vec::new();
    export(&source, root, &mut car).await.unwrap();
    (data, root, car)
}

#[tokio::test]
async fn a_file_moves_between_stores_through_car() {
    let (data, root, car) = file_as_car(5 * CHUNK_SIZE + 99).await;
    let target = store();
    let imported = import(&target, &car[..]).await.unwrap();
    assert_eq!(imported.roots, vec![root]);
    assert_eq!(imported.blocks, 7, "six leaves and a root");
    let mut out = Vec::new();
    export_to(&*target, root, &mut out).unwrap();
    assert_eq!(out, data);
    // Exporting again gives the same bytes: the order is deterministic.
    let mut again = Vec::new();
    export(&target, root, &mut again).await.unwrap();
    assert_eq!(again, car);
}

#[tokio::test]
async fn a_truncated_car_is_refused() {
    let (_, _, car) = file_as_car(3 * CHUNK_SIZE).await;
    for cut in [car.len() - 1, car.len() / 2, 40, 3] {
        let target = store();
        let err = import(&target, &car[..cut]).await.unwrap_err();
        assert!(
            matches!(err, Error::Car(_) | Error::CarIncomplete { .. }),
            "cut at {cut}: {err}"
        );
    }
}

#[tokio::test]
async fn a_car_with_a_forged_block_is_refused() {
    let good = Block::build(RAW, HashAlg::Sha2_256, &b"the real block"[..]);
    let mut car = Vec::new();
    let mut writer = CarWriter::new(CarHeader::new_v1(vec![good.cid]), &mut car);
    writer.write(good.cid, b"a different block").await.unwrap();
    writer.finish().await.unwrap();
    let target = store();
    let err = import(&target, &car[..]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store(cairn_blockstore::Error::HashMismatch { .. })
        ),
        "{err}"
    );
    assert!(!target.has(&good.cid).unwrap());
}

#[tokio::test]
async fn garbage_and_rootless_cars_are_refused() {
    let target = store();
    let err = import(&target, &b"definitely not a car file"[..])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Car(_)), "{err}");
    let mut car = Vec::new();
    let mut writer = CarWriter::new(CarHeader::new_v1(vec![]), &mut car);
    writer.write_header().await.unwrap();
    writer.finish().await.unwrap();
    assert!(!car.is_empty());
    let err = import(&target, &car[..]).await.unwrap_err();
    assert!(matches!(err, Error::Car(_)), "a CAR without roots: {err}");
}

#[tokio::test]
async fn exporting_a_missing_dag_fails() {
    let source = store();
    let missing = Block::build(RAW, HashAlg::Sha2_256, &b"absent"[..]).cid;
    let err = export(&source, missing, &mut Vec::new()).await.unwrap_err();
    assert!(
        matches!(err, Error::Store(cairn_blockstore::Error::NotFound(_))),
        "{err}"
    );
}

#[tokio::test]
async fn a_car_block_over_the_block_size_limit_is_refused_and_nothing_is_stored() {
    // Within the store's 2 MiB limit, then one byte over it, in one CAR.
    let fits = Block::build(RAW, HashAlg::Sha2_256, vec![1u8; 1024]);
    let over = Block::build(
        RAW,
        HashAlg::Sha2_256,
        vec![2u8; cairn_config::MAX_BLOCK_SIZE_LIMIT as usize + 1],
    );
    let mut car = Vec::new();
    let mut writer = CarWriter::new(CarHeader::new_v1(vec![fits.cid]), &mut car);
    writer.write(fits.cid, &fits.data).await.unwrap();
    writer.write(over.cid, &over.data).await.unwrap();
    writer.finish().await.unwrap();
    let target = store();
    let err = import(&target, &car[..]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store(cairn_blockstore::Error::BlockTooLarge { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("storage.max_block_size"), "{err}");
    assert!(!target.has(&over.cid).unwrap());
}

#[tokio::test]
async fn a_car_section_beyond_what_any_block_may_be_is_refused_before_it_is_read() {
    // A section header claiming 1 GiB: iroh-car refuses to allocate it.
    let root = Block::build(RAW, HashAlg::Sha2_256, &b"root"[..]);
    let mut car = Vec::new();
    let mut writer = CarWriter::new(CarHeader::new_v1(vec![root.cid]), &mut car);
    writer.write_header().await.unwrap();
    writer.finish().await.unwrap();
    let mut length = unsigned_varint::encode::u64_buffer();
    car.extend_from_slice(unsigned_varint::encode::u64(1 << 30, &mut length));
    car.extend_from_slice(&root.cid.to_bytes());
    car.extend_from_slice(b"and far fewer bytes than promised");
    let target = store();
    let err = import(&target, &car[..]).await.unwrap_err();
    assert!(matches!(err, Error::Car(_)), "{err}");
    assert!(!target.has(&root.cid).unwrap());
}
