//! Bitswap (`/ipfs/bitswap/1.2.0`, with 1.1.0 and 1.0.0 accepted inbound), so IPFS nodes such as
//! Kubo can fetch the blocks a Cairn node holds. It runs on the node's own swarm, so only peers
//! that passed admission (swarm key, allowlist, bans, connection limits) ever open a stream.
//!
//! Every want is a claim on our disk and bandwidth, so each is bounded: a message may name at most
//! [`MAX_WANTS_PER_MESSAGE`] CIDs (past it the stream is closed: a wantlist is never kept, so no
//! peer can grow one here, cf. Kubo's CVE-2023-25568); a peer keeps at most
//! [`MAX_STREAMS_PER_PEER`] streams in service and the node [`MAX_STREAMS`]; wants and block bytes
//! are paced per peer at the node's per-peer request and byte rates (`p2p.limits`), so a greedy
//! peer is slowed, not served faster. Blocks are read through the store, which verifies them.

mod exchange;
mod message;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use bytes::Bytes;
use cairn_proto::bitswap::Message;
use cairn_proto::bitswap::message::{Block, BlockPresence, BlockPresenceType, wantlist::WantType};
use cid::Cid;
use futures::StreamExt;
use governor::{DefaultKeyedRateLimiter, Quota};
use libp2p::{PeerId, Stream, StreamProtocol};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use message::{
    BITSWAP_1_0_0, BITSWAP_1_1_0, BITSWAP_1_2_0, MAX_MESSAGE_BYTES, PROTOCOLS, WireError, prefix,
    read_message, write_message,
};

/// CIDs one message may name; more closes the stream.
pub const MAX_WANTS_PER_MESSAGE: usize = 1024;
/// Streams one peer may have in service at once; more are closed unread.
pub const MAX_STREAMS_PER_PEER: usize = 4;
/// Streams in service from all peers together.
pub const MAX_STREAMS: usize = 256;
/// How long an ask waits for a Bitswap peer's answers; a silent peer is asked again by the
/// fetch (Kubo answers in milliseconds when it holds a block).
pub const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A stream that brings no message for this long is closed, so idle streams cannot hold the
/// slots (Kubo keeps one open between wants and reopens it when needed).
pub const IDLE_STREAM: std::time::Duration = std::time::Duration::from_secs(30);
/// Block bytes gathered into one answer before it is sent (under [`MAX_MESSAGE_BYTES`] with any
/// block up to 2 MiB added).
const ANSWER_BYTES: usize = 1 << 20;

/// Where blocks come from: the node's verified store. Calls block, so they run on blocking
/// threads.
pub trait BlockSource: Send + Sync + 'static {
    /// The verified bytes of `cid`; `None` when not held (or found corrupt, and so withheld).
    fn block(&self, cid: &Cid) -> Option<Bytes>;
    fn has(&self, cid: &Cid) -> bool;
}

/// The swarm's raw streams, opened and accepted for Bitswap.
#[derive(Clone)]
pub struct BitswapStreams(
    pub(crate) libp2p_stream::Control,
    pub(crate) Arc<exchange::Exchange>,
);

impl std::fmt::Debug for BitswapStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BitswapStreams")
    }
}

impl BitswapStreams {
    /// A stream of our own to `peer`, to send it messages (the asking side of the exchange).
    pub async fn open(&self, peer: PeerId) -> Result<BitswapStream, WireError> {
        let mut control = self.0.clone();
        control
            .open_stream(peer, BITSWAP_1_2_0)
            .await
            .map(BitswapStream)
            .map_err(|e| WireError::Io(std::io::Error::other(e.to_string())))
    }

    /// Every message peers send this node, in all three versions, for a node that asks and
    /// waits for the answers instead of serving (the two cannot both accept). Bounded: a reader
    /// that falls behind slows the senders.
    pub fn messages(&self) -> Result<tokio::sync::mpsc::Receiver<(PeerId, Message)>, WireError> {
        let (tx, rx) = tokio::sync::mpsc::channel(MESSAGE_QUEUE);
        let mut control = self.0.clone();
        for protocol in PROTOCOLS {
            let mut incoming = control
                .accept(protocol)
                .map_err(|e| WireError::Io(std::io::Error::other(e.to_string())))?;
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some((peer, mut stream)) = incoming.next().await {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        while let Ok(Some(message)) = read_message(&mut stream).await {
                            if tx.send((peer, message)).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
        }
        Ok(rx)
    }
}

/// Messages received and not yet taken by [`BitswapStreams::messages`]' reader.
const MESSAGE_QUEUE: usize = 64;

/// One outbound Bitswap stream.
pub struct BitswapStream(Stream);

impl std::fmt::Debug for BitswapStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BitswapStream")
    }
}

impl BitswapStream {
    pub async fn send(&mut self, message: &Message) -> Result<(), WireError> {
        write_message(&mut self.0, message).await
    }

    /// Ends the stream cleanly, so the peer reads everything sent before it.
    pub async fn close(mut self) -> Result<(), WireError> {
        futures::AsyncWriteExt::close(&mut self.0).await?;
        Ok(())
    }
}

/// Per-peer rates, from `p2p.limits`.
#[derive(Clone, Copy, Debug)]
pub struct BitswapLimits {
    pub wants_per_second: u32,
    pub bytes_per_second: u64,
}

/// Counters under `bitswap_*`.
#[derive(Debug, Default)]
pub struct BitswapMetrics {
    blocks_sent: Counter,
    bytes_sent: Counter,
    refused: Family<Vec<(String, String)>, Counter>,
}

impl BitswapMetrics {
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = Arc::new(Self::default());
        let sub = registry.sub_registry_with_prefix("bitswap");
        sub.register(
            "blocks_sent",
            "Blocks sent to Bitswap peers",
            metrics.blocks_sent.clone(),
        );
        sub.register(
            "bytes_sent",
            "Block bytes sent to Bitswap peers",
            metrics.bytes_sent.clone(),
        );
        sub.register(
            "refused",
            "Bitswap streams, wants or blocks refused, by reason (too_many_wants, peer_streams, streams, bad_message, bad_cid, unasked)",
            metrics.refused.clone(),
        );
        metrics
    }

    fn refused(&self, reason: &str) {
        self.refused
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }
}

/// Serves Bitswap wants until `stop`.
pub async fn serve(
    streams: BitswapStreams,
    source: Arc<dyn BlockSource>,
    limits: BitswapLimits,
    metrics: Arc<BitswapMetrics>,
    stop: CancellationToken,
) {
    let exchange = Arc::clone(&streams.1);
    let mut control = streams.0;
    let mut incoming = Vec::new();
    for protocol in PROTOCOLS {
        match control.accept(protocol.clone()) {
            Ok(streams) => incoming.push(streams.map(move |(peer, s)| (peer, protocol.clone(), s))),
            Err(e) => tracing::error!(%protocol, error = %e, "bitswap: cannot accept streams"),
        }
    }
    let mut incoming = futures::stream::select_all(incoming);
    let server = Arc::new(Server {
        exchange,
        control,
        source,
        wants: PeerRate::new(limits.wants_per_second),
        bytes: PeerRate::new(kib(limits.bytes_per_second)),
        streams: Mutex::new(HashMap::new()),
        metrics,
    });
    tracing::info!("bitswap: serving /ipfs/bitswap/1.2.0, 1.1.0 and 1.0.0");
    loop {
        let (peer, protocol, stream) = tokio::select! {
            _ = stop.cancelled() => return,
            next = incoming.next() => match next {
                Some(next) => next,
                None => return,
            },
        };
        let Some(slot) = server.take_slot(peer) else {
            continue;
        };
        let server = Arc::clone(&server);
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                result = server.serve_stream(peer, protocol, stream) => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "bitswap stream ended");
                    }
                }
            }
            drop(slot);
        });
    }
}

struct Server {
    /// Where answers to this node's own wants go.
    exchange: Arc<exchange::Exchange>,
    control: libp2p_stream::Control,
    source: Arc<dyn BlockSource>,
    wants: PeerRate,
    bytes: PeerRate,
    streams: Mutex<HashMap<PeerId, usize>>,
    metrics: Arc<BitswapMetrics>,
}

/// One stream's place in the per-peer and node-wide counts.
struct Slot {
    server: Arc<Server>,
    peer: PeerId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut streams = self.server.streams.lock();
        if let Some(count) = streams.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                streams.remove(&self.peer);
            }
        }
    }
}

impl Server {
    fn take_slot(self: &Arc<Self>, peer: PeerId) -> Option<Slot> {
        let mut streams = self.streams.lock();
        if streams.is_empty() {
            // Nobody is being served: forget the rates of peers whose allowance is full again.
            self.wants.limiter.retain_recent();
            self.bytes.limiter.retain_recent();
        }
        if streams.values().sum::<usize>() >= MAX_STREAMS {
            self.metrics.refused("streams");
            return None;
        }
        let count = streams.entry(peer).or_default();
        if *count >= MAX_STREAMS_PER_PEER {
            self.metrics.refused("peer_streams");
            return None;
        }
        *count += 1;
        Some(Slot {
            server: Arc::clone(self),
            peer,
        })
    }

    /// Reads messages until the peer closes the stream, answering each want.
    async fn serve_stream(
        &self,
        peer: PeerId,
        protocol: StreamProtocol,
        mut stream: Stream,
    ) -> Result<(), WireError> {
        loop {
            let message = match tokio::time::timeout(IDLE_STREAM, read_message(&mut stream)).await {
                Ok(Ok(Some(message))) => message,
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(e)) => {
                    self.metrics.refused("bad_message");
                    return Err(e);
                }
                // An idle stream gives its slot back; a peer that has more to ask opens another.
                Err(_) => return Ok(()),
            };
            if !message.payload.is_empty() || !message.block_presences.is_empty() {
                let unasked = self.exchange.deliver(peer, &message);
                if unasked > 0 {
                    self.metrics
                        .refused
                        .get_or_create(&vec![("reason".to_owned(), "unasked".to_owned())])
                        .inc_by(unasked as u64);
                }
            }
            let entries = message.wantlist.map(|w| w.entries).unwrap_or_default();
            if entries.len() > MAX_WANTS_PER_MESSAGE {
                self.metrics.refused("too_many_wants");
                return Ok(());
            }
            let mut answer = Answer::new(&protocol);
            for entry in entries.into_iter().filter(|e| !e.cancel) {
                let Ok(cid) = Cid::try_from(&entry.block[..]) else {
                    self.metrics.refused("bad_cid");
                    continue;
                };
                self.wants.spend(&peer, 1).await;
                let want_block = entry.want_type != WantType::Have as i32;
                let source = Arc::clone(&self.source);
                let found = tokio::task::spawn_blocking(move || {
                    if want_block {
                        source.block(&cid).map(Found::Block)
                    } else {
                        source.has(&cid).then_some(Found::Have)
                    }
                })
                .await
                .unwrap_or(None);
                match found {
                    Some(Found::Block(data)) => {
                        self.bytes.spend(&peer, kib(data.len() as u64)).await;
                        self.metrics.blocks_sent.inc();
                        self.metrics.bytes_sent.inc_by(data.len() as u64);
                        answer.block(cid, data);
                    }
                    Some(Found::Have) => answer.presence(cid, BlockPresenceType::Have),
                    None if entry.send_dont_have => {
                        answer.presence(cid, BlockPresenceType::DontHave)
                    }
                    None => {}
                }
                if answer.bytes >= ANSWER_BYTES {
                    self.send(peer, &protocol, answer.take()).await?;
                }
            }
            if !answer.is_empty() {
                self.send(peer, &protocol, answer.take()).await?;
            }
        }
    }

    /// Answers go on a stream of their own, in the version the peer asked in.
    async fn send(
        &self,
        peer: PeerId,
        protocol: &StreamProtocol,
        message: Message,
    ) -> Result<(), WireError> {
        let mut control = self.control.clone();
        let mut stream = control
            .open_stream(peer, protocol.clone())
            .await
            .map_err(|e| WireError::Io(std::io::Error::other(e.to_string())))?;
        write_message(&mut stream, &message).await?;
        futures::AsyncWriteExt::close(&mut stream).await?;
        Ok(())
    }
}

enum Found {
    Block(Bytes),
    Have,
}

/// An answer being gathered, shaped for the protocol version the peer spoke.
struct Answer {
    version: StreamProtocol,
    message: Message,
    bytes: usize,
}

impl Answer {
    fn new(version: &StreamProtocol) -> Self {
        Self {
            version: version.clone(),
            message: Message::default(),
            bytes: 0,
        }
    }

    fn block(&mut self, cid: Cid, data: Bytes) {
        self.bytes += data.len();
        if self.version == BITSWAP_1_0_0 {
            self.message.blocks.push(data);
        } else {
            self.message.payload.push(Block {
                prefix: prefix(&cid).into(),
                data,
            });
        }
    }

    fn presence(&mut self, cid: Cid, kind: BlockPresenceType) {
        // Presences came with 1.2.0; older peers only ever get blocks.
        if self.version == BITSWAP_1_2_0 {
            self.message.block_presences.push(BlockPresence {
                cid: cid.to_bytes().into(),
                r#type: kind as i32,
            });
        }
    }

    fn is_empty(&self) -> bool {
        self.message.blocks.is_empty()
            && self.message.payload.is_empty()
            && self.message.block_presences.is_empty()
    }

    fn take(&mut self) -> Message {
        self.bytes = 0;
        std::mem::take(&mut self.message)
    }
}

/// A rate per peer that makes callers wait while they are ahead of it.
struct PeerRate {
    limiter: DefaultKeyedRateLimiter<PeerId>,
    burst: NonZeroU32,
}

impl PeerRate {
    fn new(per_second: u32) -> Self {
        let burst = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(burst)),
            burst,
        }
    }

    async fn spend(&self, peer: &PeerId, units: u32) {
        let mut left = units;
        while left > 0 {
            let step = left.min(self.burst.get());
            if let Some(n) = NonZeroU32::new(step) {
                // `step` never exceeds the burst, so this cannot be refused.
                let _ = self.limiter.until_key_n_ready(peer, n).await;
            }
            left -= step;
        }
    }
}

/// Bytes in KiB (at least 1), so any byte rate fits governor's 32-bit quotas.
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .max(1)
}
