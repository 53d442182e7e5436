//! CAR v1 import and export, so DAGs move between Cairn and other IPFS tools. The format itself
//! is iroh-car's; this module feeds it from and into the verified blockstore, with the store's
//! synchronous calls on blocking threads and a bounded queue between them.

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use cairn_blockstore::{Block, Blockstore};
use cid::Cid;
use iroh_car::{CarHeader, CarReader, CarWriter};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::dag_export::{DagExport, DagScope};
use crate::error::{Error, Result};
use crate::tasks::Jobs;

/// Blocks read ahead of the writer during export.
const EXPORT_QUEUE: usize = 16;
/// Bytes stored per batch during import.
const IMPORT_BATCH_BYTES: usize = 4 << 20;

/// What a CAR import stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarImport {
    pub roots: Vec<Cid>,
    pub blocks: u64,
    pub bytes: u64,
}

/// Writes `root` and every block below it (each verified as it is read) as a CAR v1 file.
/// Returns the number of blocks written. Store reads run as `jobs`' blocking calls.
pub async fn export_car<S, W>(store: Arc<S>, jobs: &Jobs, root: Cid, writer: W) -> Result<u64>
where
    S: Blockstore + ?Sized,
    W: AsyncWrite + Unpin + Send,
{
    let (tx, mut rx) = mpsc::channel::<Result<Block>>(EXPORT_QUEUE);
    let reader = jobs.spawn_blocking(move || {
        let mut send = |block: Block| match tx.blocking_send(Ok(block)) {
            Ok(()) => ControlFlow::Continue(()),
            // The writer failed and went away: stop reading.
            Err(_) => ControlFlow::Break(()),
        };
        let walked = DagExport::new(&*store).walk(root, DagScope::All, &mut send);
        if let Err(e) = walked {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let mut car = CarWriter::new(CarHeader::new_v1(vec![root]), writer);
    let mut written = 0u64;
    while let Some(block) = rx.recv().await {
        let block = block?;
        car.write(block.cid, &block.data)
            .await
            .map_err(|e| Error::Car(e.to_string()))?;
        written += 1;
    }
    car.finish().await.map_err(|e| Error::Car(e.to_string()))?;
    reader.await.map_err(|e| Error::Internal {
        what: "reading blocks for a CAR export",
        reason: e.to_string(),
    })?;
    Ok(written)
}

/// A CAR v1 header as the start of a stream its sender frames itself (the gateway's responses):
/// its length as a varint, then the DAG-CBOR header naming `roots`.
pub fn header_frame(roots: Vec<Cid>) -> Result<Bytes> {
    let header = CarHeader::new_v1(roots)
        .encode()
        .map_err(|e| Error::Car(e.to_string()))?;
    let mut length = unsigned_varint::encode::usize_buffer();
    let length = unsigned_varint::encode::usize(header.len(), &mut length);
    Ok([length, &header[..]].concat().into())
}

/// One block of a CAR v1 stream: the section's length and CID, then the block's bytes as they
/// are (two pieces, so the data is not copied).
pub fn block_frames(block: Block) -> [Bytes; 2] {
    let cid = block.cid.to_bytes();
    let mut length = unsigned_varint::encode::usize_buffer();
    let length = unsigned_varint::encode::usize(cid.len() + block.data.len(), &mut length);
    [[length, &cid[..]].concat().into(), block.data]
}

/// Reads a CAR v1 file into the store. Every block is verified before it is stored, and the import
/// fails unless every root's DAG is complete afterwards (a truncated file is refused, not half
/// taken). Pinning the roots is the caller's job. Store writes run as `jobs`' blocking calls.
pub async fn import_car<S, R>(store: Arc<S>, jobs: &Jobs, reader: R) -> Result<CarImport>
where
    S: Blockstore + ?Sized,
    R: AsyncRead + Unpin + Send,
{
    let mut car = CarReader::new(tokio::io::BufReader::new(reader))
        .await
        .map_err(|e| Error::Car(format!("bad header: {e}")))?;
    let roots = car.header().roots().to_vec();
    if roots.is_empty() {
        return Err(Error::Car("the header names no root".into()));
    }
    let mut stats = CarImport {
        roots: roots.clone(),
        blocks: 0,
        bytes: 0,
    };
    let mut batch: Vec<Block> = Vec::new();
    let mut batch_bytes = 0;
    loop {
        let next = car
            .next_block()
            .await
            .map_err(|e| Error::Car(format!("after {} blocks: {e}", stats.blocks)))?;
        let Some((cid, data)) = next else { break };
        batch_bytes += data.len();
        stats.blocks += 1;
        stats.bytes += data.len() as u64;
        batch.push(Block::new(cid, data));
        if batch_bytes >= IMPORT_BATCH_BYTES {
            let full = std::mem::take(&mut batch);
            let s = Arc::clone(&store);
            jobs.blocking(
                "storing CAR blocks",
                move || Ok(s.put_many_buffered(&full)?),
            )
            .await?;
            batch_bytes = 0;
        }
    }
    let s = Arc::clone(&store);
    jobs.blocking("storing CAR blocks", move || {
        s.put_many_buffered(&batch)?;
        s.sync()?;
        for root in &roots {
            cairn_blockstore::walk(&*s, root, |_| {}).map_err(|e| match e {
                cairn_blockstore::Error::Incomplete { root, missing } => {
                    Error::CarIncomplete { root, missing }
                }
                other => other.into(),
            })?;
        }
        Ok(())
    })
    .await?;
    Ok(stats)
}
