//! The admin service: thin handlers over the store and the content model. Store calls are
//! synchronous, so they run on blocking threads; streams cross over through bounded channels.

use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use cairn_blockstore::backend::Backend;
use cairn_blockstore::{
    Block, DAG_PB, HashAlg, PinMode, RAW, RocksBackend, ScrubOptions, ScrubReport, raw_cid,
};
use cairn_proto::admin::{self, admin_server::Admin};
use cid::Cid;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{Role, Tokens};
use crate::car;
use crate::error::Error;
use crate::fetch::fetch_dag;
use crate::replication::{Replicator, WriteOutcome};
use crate::store::NodeStore;
use crate::unixfs::{CidVersion, FileImporter, FileReader, ImportOptions};

mod pins;

/// Chunks in flight between a client stream and the importer.
const ADD_QUEUE: usize = 8;
/// `peers ban` without a duration: one hour.
const DEFAULT_BAN_SECONDS: u64 = 3600;
/// Longer bans are what the allowlist is for.
const MAX_BAN_SECONDS: u64 = 30 * 24 * 3600;
/// Pieces read ahead of a slow `cat` client.
const CAT_QUEUE: usize = 4;

/// What every handler needs.
#[derive(Debug)]
pub struct AdminService<B: Backend = RocksBackend> {
    pub store: NodeStore<B>,
    pub network: cairn_p2p::Client,
    pub tokens: Arc<Tokens>,
    pub peer_id: String,
    /// `scrub.bytes_per_second`, for scrubs run on request.
    pub scrub_bytes_per_second: u64,
    pub replicator: Replicator<B>,
    /// Cancelled when the node stops and its drain deadline has passed: streaming calls still
    /// running end with UNAVAILABLE, acknowledging nothing.
    pub cut_off: CancellationToken,
}

impl<B: Backend> AdminService<B> {
    /// Tells the network this node holds a newly pinned root. A failure here does not undo the
    /// pin: the root is announced again at the next start.
    async fn announce(&self, root: Cid) {
        if let Err(e) = self.network.start_providing(root).await {
            tracing::warn!(%root, error = %e, "could not announce a pinned root");
        }
    }

    /// The replication factor a call asked for, or the configured one.
    fn factor(&self, replication: Option<u32>) -> Result<u32, Status> {
        let max = self.network.record_gate().authority().max_factor;
        match replication {
            None => Ok(self.replicator.policy().factor),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(n) => Err(Status::invalid_argument(format!(
                "replication {n} is not between 1 and {max} (replication.max_factor)"
            ))),
        }
    }

    /// Replicates a root pinned here to `factor` copies, waiting for the write quorum unless
    /// `no_wait`.
    async fn replicate(
        &self,
        root: Cid,
        factor: u32,
        no_wait: bool,
    ) -> Result<WriteOutcome, Status> {
        let quorum = if no_wait {
            0
        } else {
            self.replicator.policy().write_quorum.min(factor)
        };
        Ok(self.replicator.replicate(root, factor, quorum).await?)
    }
}

fn parse_cid(text: &str) -> Result<Cid, Status> {
    text.trim()
        .parse()
        .map_err(|e| Status::invalid_argument(format!("{text:?} is not a CID: {e}")))
}

/// What the upload side hands the importer: bytes, then an explicit end.
enum Feed {
    Data(Bytes),
    End,
}

fn scrub_response(report: ScrubReport) -> admin::RepoScrubResponse {
    admin::RepoScrubResponse {
        blocks_checked: report.progress.blocks_checked,
        bytes_checked: report.progress.bytes_checked,
        corrupt: report
            .corrupt
            .into_iter()
            .map(|mh| raw_cid(mh).to_string())
            .collect(),
    }
}

type CatStream = Pin<Box<dyn Stream<Item = Result<admin::CatResponse, Status>> + Send>>;
type CarStream = Pin<Box<dyn Stream<Item = Result<admin::CarChunk, Status>> + Send>>;

/// `stream`, ended by UNAVAILABLE if the node cuts off its calls before it ends: a download cut
/// short must never look complete.
fn until_cut_off<T: Send + 'static>(
    stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
    cut_off: &CancellationToken,
) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>> {
    let cut = cut_off.clone();
    let data = futures_util::StreamExt::take_until(stream, cut_off.clone().cancelled_owned());
    let ending = futures_util::stream::once(async move {
        cut.is_cancelled()
            .then(|| Err(Status::from(Error::Stopping)))
    })
    .filter_map(|item| item);
    Box::pin(data.chain(ending))
}

/// CAR bytes buffered between the exporter and the response stream.
const CAR_PIPE_BYTES: usize = 1 << 20;

#[tonic::async_trait]
impl<B: Backend> Admin for AdminService<B> {
    async fn status(
        &self,
        _request: Request<admin::StatusRequest>,
    ) -> Result<Response<admin::StatusResponse>, Status> {
        let (stats, pins) = self
            .store
            .run("reading the node's status", |store| {
                Ok((store.stats()?, store.pins()?.len()))
            })
            .await?;
        let peers = self.network.peers().await.map_err(Error::from)?;
        let (under_replicated_pins, min_failure_budget) = self.replicator.health_summary();
        Ok(Response::new(admin::StatusResponse {
            under_replicated_pins,
            min_failure_budget,
            peer_id: self.peer_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            blocks: stats.blocks,
            bytes: stats.bytes,
            pins: pins as u64,
            quarantined_blocks: stats.quarantined,
            connected_peers: peers.len() as u64,
            listen_addrs: self
                .network
                .listen_addrs()
                .iter()
                .map(ToString::to_string)
                .collect(),
            network: if self.network.open_network() {
                "open"
            } else {
                "private"
            }
            .to_owned(),
        }))
    }

    async fn add_file(
        &self,
        request: Request<Streaming<admin::AddFileRequest>>,
    ) -> Result<Response<admin::AddFileResponse>, Status> {
        // An upload still running at the node's cut-off ends there, unacknowledged.
        let mut incoming = Box::pin(futures_util::StreamExt::take_until(
            request.into_inner(),
            self.cut_off.clone().cancelled_owned(),
        ));
        let first = incoming.next().await.transpose()?.unwrap_or_default();
        let options = first.options.unwrap_or_default();
        let factor = self.factor(options.replication)?;
        let cid_version = match options.cid_version.unwrap_or(1) {
            0 => CidVersion::V0,
            1 => CidVersion::V1,
            other => {
                return Err(Status::invalid_argument(format!(
                    "cid_version {other} is not 0 or 1"
                )));
            }
        };
        let (tx, mut rx) = mpsc::channel::<Feed>(ADD_QUEUE);
        let store = Arc::clone(self.store.store());
        // Started now (not when awaited): the upload below feeds it through the channel.
        let importer = self.store.jobs().spawn_blocking(move || {
            // GC waits until the root is pinned, so no block of this file is collected meanwhile.
            let _guard = store.gc_guard();
            let opts = ImportOptions {
                cid_version,
                ..ImportOptions::default()
            };
            let mut importer = FileImporter::new(&*store, opts);
            loop {
                match rx.blocking_recv() {
                    Some(Feed::Data(chunk)) => importer.write_shared(chunk)?,
                    Some(Feed::End) => break,
                    // The client stream broke: never pin a partial file.
                    None => return Err(Error::BadRequest("the upload ended early".into())),
                }
            }
            let (done, written) = importer.finish_written()?;
            // Every block of the file went in through this importer: the pin need not read them.
            store.pin_written(&done.root, &written)?;
            Ok::<_, Error>(done)
        });
        let fed = async {
            tx.send(Feed::Data(first.data)).await.ok();
            while let Some(msg) = incoming.next().await {
                if tx.send(Feed::Data(msg?.data)).await.is_err() {
                    // The importer stopped; its error is reported below.
                    return Ok(());
                }
            }
            if self.cut_off.is_cancelled() {
                // Never `End`: the importer must not pin what was cut short.
                return Err(Status::from(Error::Stopping));
            }
            tx.send(Feed::End).await.ok();
            Ok::<_, Status>(())
        }
        .await;
        drop(tx);
        let imported = importer.await.map_err(|e| Error::Internal {
            what: "importing a file",
            reason: e.to_string(),
        })?;
        fed?;
        let done = imported?;
        tracing::info!(cid = %done.root, size = done.size, "file added");
        self.announce(done.root).await;
        let replicated = self.replicate(done.root, factor, options.no_wait).await?;
        Ok(Response::new(admin::AddFileResponse {
            cid: done.root.to_string(),
            size: done.size,
            blocks: done.blocks,
            replication_factor: replicated.factor,
            holders: replicated.holders.iter().map(ToString::to_string).collect(),
            under_replicated: replicated.under_replicated,
        }))
    }

    type CatStream = CatStream;

    async fn cat(
        &self,
        request: Request<admin::CatRequest>,
    ) -> Result<Response<Self::CatStream>, Status> {
        let root = parse_cid(&request.get_ref().cid)?;
        // Content this node lacks comes from its peers first, verified block by block.
        fetch_dag(&self.store, &self.network, root).await?;
        let (tx, rx) = mpsc::channel::<Result<Bytes, Status>>(CAT_QUEUE);
        let store = Arc::clone(self.store.store());
        self.store.jobs().spawn_blocking(move || {
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
        Ok(Response::new(until_cut_off(stream, &self.cut_off)))
    }

    async fn pin_ls(
        &self,
        request: Request<admin::PinLsRequest>,
    ) -> Result<Response<admin::PinLsResponse>, Status> {
        self.list_pins(request).await
    }

    async fn repo_stat(
        &self,
        _request: Request<admin::RepoStatRequest>,
    ) -> Result<Response<admin::RepoStatResponse>, Status> {
        let stats = self
            .store
            .run("reading store stats", |store| Ok(store.stats()?))
            .await?;
        Ok(Response::new(admin::RepoStatResponse {
            blocks: stats.blocks,
            bytes: stats.bytes,
            quarantined_blocks: stats.quarantined,
            max_bytes: stats.max_bytes,
        }))
    }

    async fn pin_add(
        &self,
        request: Request<admin::PinAddRequest>,
    ) -> Result<Response<admin::PinAddResponse>, Status> {
        self.add_pin(request).await
    }

    async fn pin_rm(
        &self,
        request: Request<admin::PinRmRequest>,
    ) -> Result<Response<admin::PinRmResponse>, Status> {
        self.remove_pin(request).await
    }

    async fn pin_restore(
        &self,
        request: Request<admin::PinRestoreRequest>,
    ) -> Result<Response<admin::PinRestoreResponse>, Status> {
        self.restore_pin(request).await
    }

    async fn pin_status(
        &self,
        request: Request<admin::PinStatusRequest>,
    ) -> Result<Response<admin::PinStatusResponse>, Status> {
        self.pin_health(request).await
    }

    async fn block_put(
        &self,
        request: Request<admin::BlockPutRequest>,
    ) -> Result<Response<admin::BlockPutResponse>, Status> {
        let request = request.into_inner();
        let codec = match request.codec.as_str() {
            "" | "raw" => RAW,
            "dag-pb" => DAG_PB,
            other => {
                return Err(Status::invalid_argument(format!(
                    "codec {other:?} is not raw or dag-pb"
                )));
            }
        };
        let block = Block::build(codec, HashAlg::Sha2_256, request.data);
        let (cid, size) = (block.cid, block.data.len() as u64);
        self.store
            .run("storing a block", move |store| Ok(store.put(&block)?))
            .await?;
        Ok(Response::new(admin::BlockPutResponse {
            cid: cid.to_string(),
            size,
        }))
    }

    async fn block_get(
        &self,
        request: Request<admin::BlockGetRequest>,
    ) -> Result<Response<admin::BlockGetResponse>, Status> {
        let cid = parse_cid(&request.get_ref().cid)?;
        let data = self
            .store
            .run("reading a block", move |store| Ok(store.get(&cid)?))
            .await?;
        Ok(Response::new(admin::BlockGetResponse { data }))
    }

    async fn block_stat(
        &self,
        request: Request<admin::BlockStatRequest>,
    ) -> Result<Response<admin::BlockStatResponse>, Status> {
        let cid = parse_cid(&request.get_ref().cid)?;
        let (size, last_verified) = self
            .store
            .run("reading a block", move |store| {
                Ok((store.get(&cid)?.len(), store.last_verified(&cid)?))
            })
            .await?;
        Ok(Response::new(admin::BlockStatResponse {
            cid: cid.to_string(),
            size: size as u64,
            last_verified: last_verified.unwrap_or(0),
        }))
    }

    async fn block_rm(
        &self,
        request: Request<admin::BlockRmRequest>,
    ) -> Result<Response<admin::BlockRmResponse>, Status> {
        let cid = parse_cid(&request.get_ref().cid)?;
        self.store
            .run("removing a block", move |store| {
                // Hold GC and pins still between the check and the delete.
                let _guard = store.gc_guard();
                if store.is_reachable(&cid)? {
                    return Err(Error::Pinned(cid));
                }
                match store.delete(&cid)? {
                    true => Ok(()),
                    false => Err(cairn_blockstore::Error::NotFound(cid).into()),
                }
            })
            .await?;
        Ok(Response::new(admin::BlockRmResponse {}))
    }

    async fn repo_verify(
        &self,
        _request: Request<admin::RepoVerifyRequest>,
    ) -> Result<Response<admin::RepoScrubResponse>, Status> {
        let opts = ScrubOptions {
            bytes_per_second: 0,
        };
        let report = self
            .store
            .run("verifying the store", move |store| {
                Ok(store.scrub(opts, |_| ControlFlow::Continue(()))?)
            })
            .await?;
        Ok(Response::new(scrub_response(report)))
    }

    async fn repo_scrub(
        &self,
        _request: Request<admin::RepoScrubRequest>,
    ) -> Result<Response<admin::RepoScrubResponse>, Status> {
        let opts = ScrubOptions {
            bytes_per_second: self.scrub_bytes_per_second,
        };
        let report = self
            .store
            .run("scrubbing", move |store| {
                Ok(store.scrub(opts, |_| ControlFlow::Continue(()))?)
            })
            .await?;
        Ok(Response::new(scrub_response(report)))
    }

    async fn repo_gc(
        &self,
        _request: Request<admin::RepoGcRequest>,
    ) -> Result<Response<admin::RepoGcResponse>, Status> {
        let report = self
            .store
            .run("collecting garbage", |store| Ok(store.gc()?))
            .await?;
        tracing::info!(
            removed = report.removed_blocks,
            bytes = report.removed_bytes,
            "gc done"
        );
        Ok(Response::new(admin::RepoGcResponse {
            removed_blocks: report.removed_blocks,
            removed_bytes: report.removed_bytes,
        }))
    }

    type CarExportStream = CarStream;

    async fn car_export(
        &self,
        request: Request<admin::CarExportRequest>,
    ) -> Result<Response<Self::CarExportStream>, Status> {
        let root = parse_cid(&request.get_ref().cid)?;
        let (writer, mut reader) = tokio::io::duplex(CAR_PIPE_BYTES);
        let jobs = self.store.jobs().clone();
        let store = Arc::clone(self.store.store());
        let (tx, rx) = mpsc::channel::<Result<admin::CarChunk, Status>>(CAT_QUEUE);
        self.store.jobs().spawn("exporting a CAR file", async move {
            let export = car::export_car(store, &jobs, root, writer);
            let forward = async {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match reader.read(&mut buf).await {
                        // The pipe ends when the export finishes and when it fails.
                        Ok(0) => return true,
                        Ok(n) => {
                            let chunk = admin::CarChunk {
                                data: Bytes::copy_from_slice(&buf[..n]),
                            };
                            if tx.send(Ok(chunk)).await.is_err() {
                                return false;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                            return false;
                        }
                    }
                }
            };
            let (exported, forwarded) = tokio::join!(export, forward);
            // Say why the stream ended early, unless the client has gone.
            if let (Err(e), true) = (exported, forwarded) {
                let _ = tx.send(Err(Status::from(e))).await;
            }
        });
        Ok(Response::new(until_cut_off(
            ReceiverStream::new(rx),
            &self.cut_off,
        )))
    }

    async fn car_import(
        &self,
        request: Request<Streaming<admin::CarChunk>>,
    ) -> Result<Response<admin::CarImportResponse>, Status> {
        let chunks = request
            .into_inner()
            .map(|chunk| chunk.map(|c| c.data).map_err(std::io::Error::other));
        let chunks = Box::pin(futures_util::StreamExt::take_until(
            chunks,
            self.cut_off.clone().cancelled_owned(),
        ));
        let reader = tokio_util::io::StreamReader::new(chunks);
        let imported =
            car::import_car(Arc::clone(self.store.store()), self.store.jobs(), reader).await?;
        if self.cut_off.is_cancelled() {
            // Cut short at a block boundary the file may still look whole: pin nothing.
            return Err(Status::from(Error::Stopping));
        }
        let roots = imported.roots.clone();
        // Pinning walks each DAG again: anything lost since the import makes it fail, not vanish
        // (a root pinned recursively already is kept, and GC has kept its blocks).
        self.store
            .run("pinning imported roots", move |store| {
                let _guard = store.gc_guard();
                for root in &roots {
                    store.pin(root, PinMode::Recursive)?;
                }
                Ok(())
            })
            .await?;
        for root in &imported.roots {
            self.announce(*root).await;
            // Replicas are placed in the background; the import does not wait for receipts.
            let factor = self.replicator.policy().factor;
            self.replicate(*root, factor, true).await?;
        }
        Ok(Response::new(admin::CarImportResponse {
            roots: imported.roots.iter().map(ToString::to_string).collect(),
            blocks: imported.blocks,
            bytes: imported.bytes,
        }))
    }

    async fn peers_ls(
        &self,
        _request: Request<admin::PeersLsRequest>,
    ) -> Result<Response<admin::PeersLsResponse>, Status> {
        let mut peers: Vec<admin::PeerEntry> = self
            .network
            .peers()
            .await
            .map_err(Error::from)?
            .into_iter()
            .map(|p| admin::PeerEntry {
                peer_id: p.peer_id.to_string(),
                addrs: p.addrs.iter().map(ToString::to_string).collect(),
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        let mut routing_table: Vec<String> = self
            .network
            .routing_table()
            .await
            .map_err(Error::from)?
            .iter()
            .map(ToString::to_string)
            .collect();
        routing_table.sort();
        Ok(Response::new(admin::PeersLsResponse {
            peers,
            routing_table,
        }))
    }

    async fn peers_connect(
        &self,
        request: Request<admin::PeersConnectRequest>,
    ) -> Result<Response<admin::PeersConnectResponse>, Status> {
        let text = request.get_ref().addr.trim();
        let addr: cairn_p2p::Multiaddr = text
            .parse()
            .map_err(|e| Status::invalid_argument(format!("{text:?} is not a multiaddr: {e}")))?;
        let peer = self.network.dial(addr).await.map_err(Error::from)?;
        Ok(Response::new(admin::PeersConnectResponse {
            peer_id: peer.to_string(),
        }))
    }

    async fn peers_ban(
        &self,
        request: Request<admin::PeersBanRequest>,
    ) -> Result<Response<admin::PeersBanResponse>, Status> {
        let text = request.get_ref().peer_id.trim();
        let peer: cairn_p2p::PeerId = text
            .parse()
            .map_err(|e| Status::invalid_argument(format!("{text:?} is not a peer ID: {e}")))?;
        let seconds = match request.get_ref().seconds {
            0 => DEFAULT_BAN_SECONDS,
            n if n > MAX_BAN_SECONDS => {
                return Err(Status::invalid_argument(format!(
                    "a ban of {n} s is longer than {MAX_BAN_SECONDS} s (30 days); keep a peer \
                     out for good with p2p.allowlist"
                )));
            }
            n => n,
        };
        self.network
            .ban(peer, std::time::Duration::from_secs(seconds))
            .await
            .map_err(Error::from)?;
        Ok(Response::new(admin::PeersBanResponse {}))
    }

    async fn rotate_token(
        &self,
        request: Request<admin::RotateTokenRequest>,
    ) -> Result<Response<admin::RotateTokenResponse>, Status> {
        let role = if request.get_ref().readonly {
            Role::ReadOnly
        } else {
            Role::Admin
        };
        let tokens = Arc::clone(&self.tokens);
        let file = self
            .store
            .jobs()
            .blocking("rotating a token", move || tokens.rotate(role))
            .await?;
        tracing::info!(?role, file = %file.display(), "token rotated");
        Ok(Response::new(admin::RotateTokenResponse {
            token_file: file.display().to_string(),
        }))
    }
}

fn bytes_list(list: Vec<Bytes>) -> Vec<Vec<u8>> {
    list.into_iter().map(|b| b.to_vec()).collect()
}
