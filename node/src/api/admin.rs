//! The admin service: thin handlers over the store and the content model. Store calls are
//! synchronous, so they run on blocking threads; streams cross over through bounded channels.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use cairn_blockstore::{PinMode, RocksBlockstore};
use cairn_proto::admin::{self, admin_server::Admin};
use cid::Cid;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::auth::{Role, Tokens};
use crate::error::Error;
use crate::unixfs::{CidVersion, FileImporter, FileReader, ImportOptions};

/// Chunks in flight between a client stream and the importer.
const ADD_QUEUE: usize = 8;
/// Pieces read ahead of a slow `cat` client.
const CAT_QUEUE: usize = 4;

/// What every handler needs.
#[derive(Debug)]
pub struct AdminService {
    pub store: Arc<RocksBlockstore>,
    pub tokens: Tokens,
    pub peer_id: String,
}

fn parse_cid(text: &str) -> Result<Cid, Status> {
    text.trim()
        .parse()
        .map_err(|e| Status::invalid_argument(format!("{text:?} is not a CID: {e}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
        .map_err(Status::from)
}

/// What the upload side hands the importer: bytes, then an explicit end.
enum Feed {
    Data(Bytes),
    End,
}

type CatStream = Pin<Box<dyn Stream<Item = Result<admin::CatResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        request: Request<admin::StatusRequest>,
    ) -> Result<Response<admin::StatusResponse>, Status> {
        self.tokens.authorize(&request, Role::ReadOnly)?;
        let store = Arc::clone(&self.store);
        let (stats, pins) = blocking(move || Ok((store.stats()?, store.pins()?.len()))).await?;
        Ok(Response::new(admin::StatusResponse {
            peer_id: self.peer_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            blocks: stats.blocks,
            bytes: stats.bytes,
            pins: pins as u64,
            quarantined_blocks: stats.quarantined,
        }))
    }

    async fn add_file(
        &self,
        request: Request<Streaming<admin::AddFileRequest>>,
    ) -> Result<Response<admin::AddFileResponse>, Status> {
        self.tokens.authorize(&request, Role::Admin)?;
        let mut incoming = request.into_inner();
        let first = incoming.message().await?.unwrap_or_default();
        let cid_version = match first.options.and_then(|o| o.cid_version).unwrap_or(1) {
            0 => CidVersion::V0,
            1 => CidVersion::V1,
            other => {
                return Err(Status::invalid_argument(format!(
                    "cid_version {other} is not 0 or 1"
                )));
            }
        };
        let (tx, mut rx) = mpsc::channel::<Feed>(ADD_QUEUE);
        let store = Arc::clone(&self.store);
        let importer = tokio::task::spawn_blocking(move || {
            // GC waits until the root is pinned, so no block of this file is collected meanwhile.
            let _guard = store.gc_guard();
            let opts = ImportOptions {
                cid_version,
                ..ImportOptions::default()
            };
            let mut importer = FileImporter::new(&*store, opts);
            loop {
                match rx.blocking_recv() {
                    Some(Feed::Data(chunk)) => importer.write(&chunk)?,
                    Some(Feed::End) => break,
                    // The client stream broke: never pin a partial file.
                    None => return Err(Error::BadRequest("the upload ended early".into())),
                }
            }
            let done = importer.finish()?;
            store.pin(&done.root, PinMode::Recursive)?;
            Ok::<_, Error>(done)
        });
        let fed = async {
            tx.send(Feed::Data(first.data)).await.ok();
            while let Some(msg) = incoming.message().await? {
                if tx.send(Feed::Data(msg.data)).await.is_err() {
                    // The importer stopped; its error is reported below.
                    return Ok(());
                }
            }
            tx.send(Feed::End).await.ok();
            Ok::<_, Status>(())
        }
        .await;
        drop(tx);
        let imported = importer
            .await
            .map_err(|e| Status::internal(format!("importer failed: {e}")))?;
        fed?;
        let done = imported?;
        tracing::info!(cid = %done.root, size = done.size, "file added");
        Ok(Response::new(admin::AddFileResponse {
            cid: done.root.to_string(),
            size: done.size,
            blocks: done.blocks,
        }))
    }

    type CatStream = CatStream;

    async fn cat(
        &self,
        request: Request<admin::CatRequest>,
    ) -> Result<Response<Self::CatStream>, Status> {
        self.tokens.authorize(&request, Role::ReadOnly)?;
        let root = parse_cid(&request.get_ref().cid)?;
        let (tx, rx) = mpsc::channel::<Result<Bytes, Status>>(CAT_QUEUE);
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            for piece in FileReader::new(&*store, root) {
                let failed = piece.is_err();
                if tx.blocking_send(piece.map_err(Status::from)).is_err() || failed {
                    // The client went away, or the error has been sent: stop reading.
                    break;
                }
            }
        });
        let stream =
            ReceiverStream::new(rx).map(|piece| piece.map(|data| admin::CatResponse { data }));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn pin_ls(
        &self,
        request: Request<admin::PinLsRequest>,
    ) -> Result<Response<admin::PinLsResponse>, Status> {
        self.tokens.authorize(&request, Role::ReadOnly)?;
        let store = Arc::clone(&self.store);
        let pins = blocking(move || Ok(store.pins()?)).await?;
        let pins = pins
            .into_iter()
            .map(|(cid, mode)| admin::Pin {
                cid: cid.to_string(),
                mode: match mode {
                    PinMode::Recursive => "recursive",
                    PinMode::Direct => "direct",
                }
                .to_owned(),
            })
            .collect();
        Ok(Response::new(admin::PinLsResponse { pins }))
    }

    async fn repo_stat(
        &self,
        request: Request<admin::RepoStatRequest>,
    ) -> Result<Response<admin::RepoStatResponse>, Status> {
        self.tokens.authorize(&request, Role::ReadOnly)?;
        let store = Arc::clone(&self.store);
        let stats = blocking(move || Ok(store.stats()?)).await?;
        Ok(Response::new(admin::RepoStatResponse {
            blocks: stats.blocks,
            bytes: stats.bytes,
            quarantined_blocks: stats.quarantined,
            max_bytes: stats.max_bytes,
        }))
    }
}
