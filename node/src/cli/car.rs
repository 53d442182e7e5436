//! CAR v1 archives: `car export`, `car import`.

use anyhow::Context;
use cairn_node::progress;
use cairn_node::unixfs::CHUNK_SIZE;
use cairn_proto::admin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::args::CarAction;
use super::output::{self, emit};
use super::transfer::write_atomically;

/// Chunks of the file in flight to the daemon.
const IMPORT_QUEUE: usize = 4;

pub(crate) async fn run(json: bool, action: CarAction) -> anyhow::Result<()> {
    match action {
        CarAction::Export { cid, file, api } => {
            let mut client = api.connect().await?;
            let mut stream = client
                .car_export(admin::CarExportRequest { cid: cid.clone() })
                .await?
                .into_inner();
            let bar = progress::bar(&cid, None, false);
            let bytes = write_atomically(&file, async |out| {
                while let Some(chunk) = stream.message().await? {
                    out.write_all(&chunk.data).await?;
                    bar.inc(chunk.data.len() as u64);
                }
                Ok(())
            })
            .await?;
            bar.finish_and_clear();
            emit(json, &output::CarExported { cid, file, bytes })?;
        }
        CarAction::Import { file, api } => {
            let mut reader = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("cannot open {}", file.display()))?;
            let (tx, rx) = tokio::sync::mpsc::channel::<admin::CarChunk>(IMPORT_QUEUE);
            let mut client = api.connect().await?;
            let size = reader.metadata().await.ok().map(|m| m.len());
            let bar = progress::bar(&file.display().to_string(), size, false);
            let feeder = tokio::spawn(async move {
                loop {
                    let mut buf = vec![0u8; CHUNK_SIZE];
                    let n = reader.read(&mut buf).await?;
                    bar.inc(n as u64);
                    if n == 0 {
                        bar.finish_and_clear();
                        return Ok::<_, std::io::Error>(());
                    }
                    buf.truncate(n);
                    if tx.send(admin::CarChunk { data: buf.into() }).await.is_err() {
                        return Ok(());
                    }
                }
            });
            let imported = client
                .car_import(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await;
            feeder.await.context("file reader failed")??;
            let imported = imported?.into_inner();
            let roots: Vec<output::CarImported> = imported
                .roots
                .into_iter()
                .map(|root| output::CarImported {
                    root,
                    blocks: imported.blocks,
                    bytes: imported.bytes,
                })
                .collect();
            output::emit_all(json, &roots)?;
        }
    }
    Ok(())
}
