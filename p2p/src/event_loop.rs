//! The swarm task: the only owner of the libp2p `Swarm`. One `tokio::select!` over swarm events,
//! commands from [`Client`]s, a housekeeping tick and the stop token. It does no disk I/O:
//! requests that need the store leave as [`NetworkEvent`]s, and are answered through the client.
//! Nothing a peer sends may panic it: every message is checked, every map and queue is bounded.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_config::BootstrapPeer;
use cairn_proto::wire::{
    AuditResponse, BlockRequest, BlockResponse, ReplicateRequest, ReplicateResponse, WireBlock,
};
use cid::Cid;
use futures::StreamExt;
use libp2p::kad::{self, QueryId};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, ListenError, SwarmEvent};
use libp2p::{
    Multiaddr, Swarm, allow_block_list, connection_limits, identify, memory_connection_limits,
};
use libp2p_identity::PeerId;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::behaviour::{
    Behaviour, BehaviourEvent, KAD_PROTOCOL, MAX_BLOCK_RESPONSE_BYTES, MAX_BLOCK_RESPONSE_PAYLOAD,
    MAX_CIDS_PER_REQUEST,
};
use crate::client::{
    AuditAnswer, AuditId, BlockReply, BootstrapProgress, Command, InboundId, NetworkEvent,
    PeerInfo, ReplicateId,
};
use crate::error::Error;
use crate::metrics::P2pMetrics;
use crate::peer_limits::PeerLimits;
use crate::scores::{Offence, Scores};
use crate::settings::NetworkSettings;

mod audit;
mod records;

/// The largest block any node stores: a response allowance never goes below one whole block.
const MAX_BLOCK_SIZE: usize = cairn_config::MAX_BLOCK_SIZE_LIMIT as usize;

/// Housekeeping: ban expiry, bootstrap retries, pruning idle rate-limit buckets.
const TICK: Duration = Duration::from_millis(500);
/// Bootstrap retries back off from 1 s to this.
const MAX_BOOTSTRAP_BACKOFF: Duration = Duration::from_secs(60);
/// At most this many outbound requests and lookups wait for answers at once; beyond it, callers
/// get an error at once instead of growing a map.
const MAX_PENDING_OUTBOUND: usize = 1024;
/// Warn when more than this share of the routing table was learnt through one bootstrap peer.
const DOMINATION_SHARE: f64 = 2.0 / 3.0;
/// ...once the table has at least this many entries (smaller tables are dominated by nature).
const DOMINATION_MIN_TABLE: usize = 4;
/// Routing-table entries whose source is remembered; beyond this, new ones are not attributed.
const MAX_ROUTING_SOURCES: usize = 16_384;
/// Room for a block's CID and framing in a response, beyond its data.
const BLOCK_OVERHEAD: usize = 128;

pub(crate) type Replier<T> = oneshot::Sender<Result<T, Error>>;

struct BootstrapEntry {
    peer: BootstrapPeer,
    answered: bool,
    failures: u32,
    next_attempt: Instant,
    /// The bootstrap dial in flight; only its failure counts against the entry (other dials to
    /// the same peer, by Kademlia or a request, may try stale addresses).
    dialing: Option<ConnectionId>,
    problem: Option<String>,
}

/// Runs the swarm until stopped.
pub struct EventLoop {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) settings: NetworkSettings,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) events: mpsc::Sender<NetworkEvent>,
    pub(crate) metrics: P2pMetrics,
    pub(crate) libp2p_metrics: libp2p::metrics::Metrics,
    pub(crate) bootstrap_progress: watch::Sender<BootstrapProgress>,
    pub(crate) listening: watch::Sender<Vec<Multiaddr>>,
    pub(crate) limits: PeerLimits,
    pub(crate) scores: Scores,
    bootstrap: Vec<BootstrapEntry>,
    connected: HashMap<PeerId, Vec<Multiaddr>>,
    pending_dials: HashMap<ConnectionId, (Multiaddr, Replier<PeerId>)>,
    pending_requests: HashMap<OutboundRequestId, (PeerId, Replier<BlockReply>)>,
    pending_providers: HashMap<QueryId, (HashSet<PeerId>, Replier<Vec<PeerId>>)>,
    /// Block requests the node is reading for, with the bytes each answer may carry.
    inbound: HashMap<InboundId, (usize, ResponseChannel<BlockResponse>)>,
    pending_replicates: HashMap<OutboundRequestId, Replier<Vec<u8>>>,
    inbound_replicates: HashMap<ReplicateId, ResponseChannel<ReplicateResponse>>,
    pending_audits: HashMap<OutboundRequestId, Replier<AuditAnswer>>,
    inbound_audits: HashMap<AuditId, ResponseChannel<AuditResponse>>,
    pending_records: HashMap<QueryId, records::PendingLookup>,
    /// Which bootstrap peer (if exactly one was connected) each routing-table entry came through.
    learnt_via: HashMap<PeerId, Option<PeerId>>,
    domination_warned: bool,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("local_peer_id", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        settings: NetworkSettings,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetworkEvent>,
        metrics: P2pMetrics,
        libp2p_metrics: libp2p::metrics::Metrics,
        bootstrap_progress: watch::Sender<BootstrapProgress>,
        listening: watch::Sender<Vec<Multiaddr>>,
    ) -> Self {
        let now = Instant::now();
        let bootstrap = settings
            .bootstrap
            .iter()
            .map(|peer| BootstrapEntry {
                peer: peer.clone(),
                answered: false,
                failures: 0,
                next_attempt: now,
                dialing: None,
                problem: None,
            })
            .collect();
        Self {
            limits: PeerLimits::new(settings.requests_per_second, settings.bytes_per_second),
            scores: Scores::new(settings.ban_score, settings.ban_duration),
            swarm,
            settings,
            commands,
            events,
            metrics,
            libp2p_metrics,
            bootstrap_progress,
            listening,
            bootstrap,
            connected: HashMap::new(),
            pending_dials: HashMap::new(),
            pending_requests: HashMap::new(),
            pending_providers: HashMap::new(),
            inbound: HashMap::new(),
            pending_replicates: HashMap::new(),
            inbound_replicates: HashMap::new(),
            pending_audits: HashMap::new(),
            inbound_audits: HashMap::new(),
            pending_records: HashMap::new(),
            learnt_via: HashMap::new(),
            domination_warned: false,
        }
    }

    /// Runs until `stop` is cancelled or every client is gone; then closes the swarm.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                _ = tick.tick() => self.housekeeping(),
            }
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        tracing::info!("swarm closed");
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        for peer in self.scores.expire(now) {
            self.swarm.behaviour_mut().bans.unblock_peer(peer);
            tracing::info!(%peer, "ban ended");
        }
        self.limits.prune();
        self.dial_bootstrap_peers(now);
        self.check_routing_domination();
    }

    fn dial_bootstrap_peers(&mut self, now: Instant) {
        for index in 0..self.bootstrap.len() {
            let entry = &self.bootstrap[index];
            if entry.answered || entry.dialing.is_some() || entry.next_attempt > now {
                continue;
            }
            let peer_id = entry.peer.peer_id;
            if self.swarm.is_connected(&peer_id) {
                self.bootstrap[index].answered = true;
                self.publish_bootstrap_progress();
                continue;
            }
            let addr = without_p2p(&entry.peer.addr);
            let opts = DialOpts::peer_id(peer_id)
                .addresses(vec![addr])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let connection = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => self.bootstrap[index].dialing = Some(connection),
                Err(e) => self.bootstrap_failed(peer_id, e.to_string(), now),
            }
        }
    }

    fn bootstrap_failed(&mut self, peer: PeerId, problem: String, now: Instant) {
        let Some(entry) = self.bootstrap.iter_mut().find(|e| e.peer.peer_id == peer) else {
            return;
        };
        entry.dialing = None;
        entry.failures = entry.failures.saturating_add(1);
        let backoff = Duration::from_secs(1u64 << entry.failures.min(6)).min(MAX_BOOTSTRAP_BACKOFF);
        entry.next_attempt = now + backoff;
        tracing::debug!(%peer, addr = %entry.peer.addr, %problem, retry_in_s = backoff.as_secs(), "bootstrap peer did not answer");
        entry.problem = Some(format!("{}: {problem}", entry.peer.addr));
        self.publish_bootstrap_progress();
    }

    fn publish_bootstrap_progress(&mut self) {
        let progress = BootstrapProgress {
            answered: self.bootstrap.iter().filter(|e| e.answered).count(),
            problems: self
                .bootstrap
                .iter()
                .filter(|e| !e.answered)
                .filter_map(|e| e.problem.clone())
                .collect(),
        };
        self.bootstrap_progress.send_if_modified(|old| {
            let changed = *old != progress;
            *old = progress;
            changed
        });
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Peers { reply } => {
                let peers = self
                    .connected
                    .iter()
                    .map(|(peer_id, addrs)| PeerInfo {
                        peer_id: *peer_id,
                        addrs: addrs.clone(),
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::RoutingTable { reply } => {
                let mut peers = Vec::new();
                for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
                    peers.extend(bucket.iter().map(|entry| *entry.node.key.preimage()));
                }
                let _ = reply.send(peers);
            }
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::Ban {
                peer,
                duration,
                reply,
            } => {
                let until = self.scores.ban(peer, duration, Instant::now());
                self.enforce_ban(peer, until, "by the operator");
                let _ = reply.send(());
            }
            Command::Penalise { peer, offence } => self.penalise(peer, offence),
            Command::RequestBlocks { peer, cids, reply } => {
                if self.pending_requests.len() >= MAX_PENDING_OUTBOUND {
                    let _ = reply.send(Err(Error::Request {
                        peer,
                        reason: "too many requests in flight".into(),
                    }));
                    return;
                }
                let request = BlockRequest {
                    cids: cids.iter().map(|c| Bytes::from(c.to_bytes())).collect(),
                };
                let id = self
                    .swarm
                    .behaviour_mut()
                    .blocks
                    .send_request(&peer, request);
                self.pending_requests.insert(id, (peer, reply));
            }
            Command::RespondBlocks {
                id,
                blocks,
                missing,
            } => self.respond_blocks(id, blocks, missing),
            Command::Replicate {
                peer,
                root,
                replication_factor,
                nonce,
                repair,
                record,
                reply,
            } => {
                if self.pending_replicates.len() >= MAX_PENDING_OUTBOUND {
                    let _ = reply.send(Err(Error::Request {
                        peer,
                        reason: "too many replications in flight".into(),
                    }));
                    return;
                }
                let request = ReplicateRequest {
                    root: root.to_bytes().into(),
                    replication_factor,
                    nonce: nonce.into(),
                    repair,
                    record: record.into(),
                };
                let id = self
                    .swarm
                    .behaviour_mut()
                    .replicate
                    .send_request(&peer, request);
                self.pending_replicates.insert(id, reply);
            }
            Command::RespondReplicate { id, outcome } => {
                if let Some(channel) = self.inbound_replicates.remove(&id) {
                    let response = match outcome {
                        Ok(receipt) => ReplicateResponse {
                            receipt: receipt.into(),
                            error: String::new(),
                        },
                        Err(error) => ReplicateResponse {
                            receipt: Bytes::new(),
                            error,
                        },
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .replicate
                        .send_response(channel, response);
                }
            }
            Command::Audit {
                peer,
                root,
                block,
                nonce,
                reply,
            } => self.send_audit(peer, root, block, nonce, reply),
            Command::RespondAudit { id, answer } => self.respond_audit(id, answer),
            Command::PutPinRecord { record, reply } => {
                let _ = reply.send(self.put_pin_record(record));
            }
            Command::GetPinRecord { root, reply } => self.get_pin_record(root, reply),
            Command::StopProviding { cid } => {
                let key = kad::RecordKey::new(&cid.hash().to_bytes());
                self.swarm.behaviour_mut().kad.stop_providing(&key);
            }
            Command::Placement { cid, count, reply } => {
                let mut candidates: Vec<PeerId> = self.connected.keys().copied().collect();
                candidates.push(*self.swarm.local_peer_id());
                let _ = reply.send(crate::closest(&cid, candidates, count));
            }
            Command::StartProviding { cid, reply } => {
                let key = kad::RecordKey::new(&cid.hash().to_bytes());
                let result = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(key)
                    .map(|_| ())
                    .map_err(|e| Error::Lookup(e.to_string()));
                let _ = reply.send(result);
            }
            Command::GetProviders { cid, reply } => {
                if self.pending_providers.len() >= MAX_PENDING_OUTBOUND {
                    let _ = reply.send(Err(Error::Lookup("too many lookups in flight".into())));
                    return;
                }
                let key = kad::RecordKey::new(&cid.hash().to_bytes());
                let id = self.swarm.behaviour_mut().kad.get_providers(key);
                self.pending_providers.insert(id, (HashSet::new(), reply));
            }
        }
    }

    fn dial(&mut self, addr: Multiaddr, reply: Replier<PeerId>) {
        if self.pending_dials.len() >= MAX_PENDING_OUTBOUND {
            let _ = reply.send(Err(Error::Dial {
                addr,
                reason: "too many dials in flight".into(),
            }));
            return;
        }
        let opts = match peer_of(&addr) {
            // An address pinned to a peer ID must prove that identity.
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![without_p2p(&addr)])
                .condition(PeerCondition::Always)
                .build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(connection, (addr, reply));
            }
            Err(e) => {
                let reason = e.to_string();
                self.count_refused_dial(&e, None);
                let _ = reply.send(Err(Error::Dial { addr, reason }));
            }
        }
    }

    fn penalise(&mut self, peer: PeerId, offence: Offence) {
        if offence == Offence::BadBlock {
            self.metrics.bad_blocks_received.inc();
        }
        if let Some(until) = self.scores.offend(peer, offence, Instant::now()) {
            self.enforce_ban(peer, until, "score fell to the ban threshold");
        }
    }

    fn enforce_ban(&mut self, peer: PeerId, until: Instant, why: &str) {
        let behaviour = self.swarm.behaviour_mut();
        behaviour.bans.block_peer(peer);
        behaviour.kad.remove_peer(&peer);
        let _ = self.swarm.disconnect_peer_id(peer);
        self.metrics.bans.inc();
        let minutes = until.saturating_duration_since(Instant::now()).as_secs() / 60;
        tracing::warn!(%peer, minutes, "peer banned: {why}");
    }

    fn respond_blocks(&mut self, id: InboundId, blocks: Vec<(Cid, Bytes)>, missing: Vec<Cid>) {
        let Some((allowance, channel)) = self.inbound.remove(&id) else {
            return; // the peer gave up (timeout, disconnect) before we answered
        };
        // The node reads within the allowance taken from the peer's byte budget at admission;
        // both it and the response size are enforced here regardless.
        let (mut payload, mut size) = (0usize, 0usize);
        let sent = blocks
            .iter()
            .take_while(|(_, data)| {
                payload += data.len();
                size += data.len() + BLOCK_OVERHEAD;
                payload <= allowance && size <= MAX_BLOCK_RESPONSE_BYTES
            })
            .count();
        let response = BlockResponse {
            blocks: blocks
                .into_iter()
                .take(sent)
                .map(|(cid, data)| WireBlock {
                    cid: cid.to_bytes().into(),
                    data,
                })
                .collect(),
            missing: missing.iter().map(|c| Bytes::from(c.to_bytes())).collect(),
            retry_after_ms: 0,
            error: String::new(),
        };
        self.metrics.blocks_sent.inc_by(sent as u64);
        self.metrics.block_requests_served.inc();
        let _ = self
            .swarm
            .behaviour_mut()
            .blocks
            .send_response(channel, response);
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.libp2p_metrics_record(&event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Blocks(event)) => self.on_block_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Replicate(event)) => {
                self.on_replicate_event(event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Audit(event)) => self.on_audit_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if info.protocols.contains(&KAD_PROTOCOL) => {
                // Identify tells Kademlia where a peer listens, so the routing table fills with
                // reachable addresses; only admitted, connected peers get here. A loopback
                // address only means that peer when it is on this host (reached over loopback):
                // otherwise dialling it reaches ourselves, and fails as a wrong identity.
                let same_host = self
                    .connected
                    .get(&peer_id)
                    .is_some_and(|addrs| addrs.iter().any(is_loopback));
                for addr in info.listen_addrs {
                    if same_host || !is_loopback(&addr) {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                connection,
                result: Err(error),
            })) if !matches!(error, libp2p::ping::Failure::Unsupported) => {
                // libp2p's ping only reports; a connection that stopped answering is dead (a
                // partition, a killed host) and would otherwise linger until TCP gives up.
                tracing::debug!(%peer, %error, "ping failed; closing the connection");
                self.swarm.close_connection(connection);
            }
            SwarmEvent::Behaviour(_) => {}
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.listening.send_modify(|addrs| addrs.push(address));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listening
                    .send_modify(|addrs| addrs.retain(|a| a != &address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                let addr = endpoint.get_remote_address().clone();
                let addrs = self.connected.entry(peer_id).or_default();
                if !addrs.contains(&addr) && addrs.len() < 8 {
                    addrs.push(addr);
                }
                self.metrics
                    .connected_peers
                    .set(i64::try_from(self.connected.len()).unwrap_or(i64::MAX));
                if let Some((_, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                if let Some(entry) = self
                    .bootstrap
                    .iter_mut()
                    .find(|e| e.peer.peer_id == peer_id)
                {
                    if !entry.answered {
                        tracing::info!(peer = %peer_id, addr = %entry.peer.addr, "bootstrap peer answered");
                    }
                    entry.answered = true;
                    entry.dialing = None;
                    entry.failures = 0;
                    entry.problem = None;
                    self.publish_bootstrap_progress();
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.connected.remove(&peer_id);
                self.metrics
                    .connected_peers
                    .set(i64::try_from(self.connected.len()).unwrap_or(i64::MAX));
                if let Some(entry) = self
                    .bootstrap
                    .iter_mut()
                    .find(|e| e.peer.peer_id == peer_id)
                {
                    // A lost bootstrap peer is dialled again, with back-off.
                    entry.answered = false;
                    entry.next_attempt = Instant::now() + Duration::from_secs(1);
                    self.publish_bootstrap_progress();
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                self.count_refused_dial(&error, peer_id);
                let reason = error.to_string();
                if let Some((addr, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(Error::Dial {
                        addr,
                        reason: reason.clone(),
                    }));
                }
                let bootstrap_dial = peer_id.filter(|peer| {
                    self.bootstrap
                        .iter()
                        .any(|e| e.peer.peer_id == *peer && e.dialing == Some(connection_id))
                });
                if let Some(peer) = bootstrap_dial {
                    let problem = match &error {
                        DialError::WrongPeerId { obtained, .. } => format!(
                            "answered as {obtained}, not the pinned {peer}: refused as a possible \
                             poisoned bootstrap entry"
                        ),
                        _ => reason,
                    };
                    self.bootstrap_failed(peer, problem, Instant::now());
                }
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                let reason = listen_error_reason(&error);
                self.metrics.refused(reason);
                tracing::debug!(from = %send_back_addr, reason, %error, "inbound connection refused");
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "a listener failed");
            }
            _ => {}
        }
    }

    fn libp2p_metrics_record(&self, event: &SwarmEvent<BehaviourEvent>) {
        use libp2p::metrics::Recorder;
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.libp2p_metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.libp2p_metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.libp2p_metrics.record(e),
            other => self.libp2p_metrics.record(other),
        }
    }

    fn count_refused_dial(&mut self, error: &DialError, peer: Option<PeerId>) {
        let reason = match error {
            DialError::WrongPeerId { obtained, address } => {
                let bootstrap = peer.is_some_and(|p| self.is_bootstrap_peer(&p));
                if bootstrap {
                    tracing::warn!(
                        expected = ?peer, %obtained, %address,
                        "bootstrap peer answered with a different identity: dropped (possible poisoning)"
                    );
                    "wrong_bootstrap_identity"
                } else {
                    tracing::warn!(expected = ?peer, %obtained, %address, "peer answered with a different identity: dropped");
                    "wrong_identity"
                }
            }
            DialError::Denied { cause } => denied_reason(cause),
            DialError::Transport(_) => "handshake",
            _ => return,
        };
        self.metrics.refused(reason);
    }

    fn is_bootstrap_peer(&self, peer: &PeerId) -> bool {
        self.bootstrap.iter().any(|e| e.peer.peer_id == *peer)
    }

    fn on_block_event(&mut self, event: request_response::Event<BlockRequest, BlockResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request_id,
                        request,
                        channel,
                    },
                ..
            } => self.on_block_request(peer, InboundId(request_id), request, channel),
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(self.read_block_response(peer, response));
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(Error::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { request_id, .. } => {
                self.inbound.remove(&InboundId(request_id));
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_block_request(
        &mut self,
        peer: PeerId,
        id: InboundId,
        request: BlockRequest,
        channel: ResponseChannel<BlockResponse>,
    ) {
        if let Err(wait) = self.limits.check_request(&peer) {
            self.metrics.limited("requests");
            self.answer_now(channel, slow_down(wait));
            self.penalise(peer, Offence::OverLimit);
            return;
        }
        if request.cids.len() > MAX_CIDS_PER_REQUEST {
            self.answer_now(
                channel,
                refusal(format!(
                    "{} CIDs in one request; at most {MAX_CIDS_PER_REQUEST}",
                    request.cids.len()
                )),
            );
            self.penalise(peer, Offence::Malformed);
            return;
        }
        let cids: Result<Vec<Cid>, _> = request
            .cids
            .iter()
            .map(|bytes| Cid::try_from(bytes.as_ref()))
            .collect();
        let cids = match cids {
            Ok(cids) => cids,
            Err(e) => {
                self.answer_now(channel, refusal(format!("malformed CID: {e}")));
                self.penalise(peer, Offence::Malformed);
                return;
            }
        };
        if self.inbound.len() >= self.settings.inbound_queue {
            self.metrics.limited("queue");
            self.answer_now(channel, slow_down(Duration::from_millis(50)));
            return;
        }
        // The peer's byte budget is taken before anything is read: a request cannot make the node
        // read more than the peer may receive.
        let wanted = cids
            .len()
            .saturating_mul(MAX_BLOCK_SIZE)
            .min(MAX_BLOCK_RESPONSE_PAYLOAD);
        let allowance = match self.limits.reserve_bytes(&peer, wanted, MAX_BLOCK_SIZE) {
            Ok(allowance) => allowance,
            Err(wait) => {
                self.metrics.limited("bytes");
                self.answer_now(channel, slow_down(wait));
                return;
            }
        };
        match self.events.try_send(NetworkEvent::BlockRequest {
            id,
            peer,
            cids,
            allowance,
        }) {
            Ok(()) => {
                self.inbound.insert(id, (allowance, channel));
            }
            Err(_) => {
                // The node is behind (or stopping): answer now rather than let the peer hang.
                self.metrics.limited("queue");
                self.answer_now(channel, slow_down(Duration::from_millis(50)));
            }
        }
    }

    fn on_replicate_event(
        &mut self,
        event: request_response::Event<ReplicateRequest, ReplicateResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request_id,
                        request,
                        channel,
                    },
                ..
            } => {
                let refuse = |error: String| ReplicateResponse {
                    receipt: Bytes::new(),
                    error,
                };
                if let Err(wait) = self.limits.check_request(&peer) {
                    self.metrics.limited("requests");
                    let response = refuse(format!("slow down; retry in {} ms", millis(wait)));
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .replicate
                        .send_response(channel, response);
                    self.penalise(peer, Offence::OverLimit);
                    return;
                }
                let Ok(root) = Cid::try_from(request.root.as_ref()) else {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .replicate
                        .send_response(channel, refuse("malformed root CID".into()));
                    self.penalise(peer, Offence::Malformed);
                    return;
                };
                let id = ReplicateId(request_id);
                let event = NetworkEvent::Replicate {
                    id,
                    peer,
                    root,
                    replication_factor: request.replication_factor,
                    nonce: request.nonce.to_vec(),
                    repair: request.repair,
                    record: request.record.to_vec(),
                };
                if self.inbound_replicates.len() >= self.settings.inbound_queue
                    || self.events.try_send(event).is_err()
                {
                    self.metrics.limited("queue");
                    let response = refuse("busy; retry later".into());
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .replicate
                        .send_response(channel, response);
                    return;
                }
                self.inbound_replicates.insert(id, channel);
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending_replicates.remove(&request_id) {
                    let outcome = if response.error.is_empty() {
                        Ok(response.receipt.to_vec())
                    } else {
                        Err(Error::Request {
                            peer,
                            reason: response.error.chars().take(200).collect(),
                        })
                    };
                    let _ = reply.send(outcome);
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => fail_outbound(&mut self.pending_replicates, request_id, peer, &error),
            request_response::Event::InboundFailure { request_id, .. } => {
                self.inbound_replicates.remove(&ReplicateId(request_id));
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn answer_now(&mut self, channel: ResponseChannel<BlockResponse>, response: BlockResponse) {
        let _ = self
            .swarm
            .behaviour_mut()
            .blocks
            .send_response(channel, response);
    }

    fn read_block_response(
        &mut self,
        peer: PeerId,
        response: BlockResponse,
    ) -> Result<BlockReply, Error> {
        if !response.error.is_empty() {
            return Err(Error::Request {
                peer,
                reason: format!(
                    "refused: {}",
                    response.error.chars().take(200).collect::<String>()
                ),
            });
        }
        let mut reply = BlockReply {
            retry_after: (response.retry_after_ms > 0)
                .then(|| Duration::from_millis(response.retry_after_ms.min(60_000))),
            ..Default::default()
        };
        let mut malformed = false;
        for block in response.blocks {
            match Cid::try_from(block.cid.as_ref()) {
                Ok(cid) => reply.blocks.push((cid, block.data)),
                Err(_) => malformed = true,
            }
        }
        for cid in response.missing {
            match Cid::try_from(cid.as_ref()) {
                Ok(cid) => reply.missing.push(cid),
                Err(_) => malformed = true,
            }
        }
        if malformed {
            self.penalise(peer, Offence::Malformed);
        }
        Ok(reply)
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                ..
            } => {
                let finished = match result {
                    Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                        if let Some((found, _)) = self.pending_providers.get_mut(&id) {
                            found.extend(
                                providers.into_iter().filter(|p| !self.scores.is_banned(p)),
                            );
                        }
                        step.last
                    }
                    Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => true,
                    Err(e) => {
                        tracing::debug!(error = %e, "provider lookup ended early");
                        true
                    }
                };
                if finished && let Some((found, reply)) = self.pending_providers.remove(&id) {
                    let _ = reply.send(Ok(found.into_iter().collect()));
                }
            }
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetRecord(result),
                step,
                ..
            } => self.on_record_found(id, result, step.last),
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => self.on_record_offered(source, record),
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::AddProvider {
                        record: Some(record),
                    },
            } => {
                // Kademlia checked that the provider is the peer that sent it.
                let store = self.swarm.behaviour_mut().kad.store_mut();
                if let Err(e) = kad::store::RecordStore::add_provider(store, record) {
                    tracing::debug!(error = %e, "provider record not kept");
                }
            }
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer: true,
                ..
            } => self.note_routing_source(peer),
            _ => {}
        }
    }

    /// Notes which bootstrap peer a new routing-table entry came through: the only one connected
    /// when it arrived, if only one was.
    fn note_routing_source(&mut self, peer: PeerId) {
        if self.is_bootstrap_peer(&peer) || self.learnt_via.len() >= MAX_ROUTING_SOURCES {
            return;
        }
        let connected: Vec<PeerId> = self
            .bootstrap
            .iter()
            .filter(|e| self.connected.contains_key(&e.peer.peer_id))
            .map(|e| e.peer.peer_id)
            .collect();
        let source = (connected.len() == 1).then(|| connected[0]);
        self.learnt_via.insert(peer, source);
    }

    /// Warns once when most of the routing table came through one bootstrap peer while the other
    /// bootstrap peers fail to answer: a poisoned bootstrap peer would look exactly like this.
    /// While the others are still being dialled, the order of arrival means nothing.
    fn check_routing_domination(&mut self) {
        if self.domination_warned || self.bootstrap.len() < 2 {
            return;
        }
        let total = self.learnt_via.len();
        if total < DOMINATION_MIN_TABLE {
            return;
        }
        let mut by_source: HashMap<PeerId, usize> = HashMap::new();
        for via in self.learnt_via.values().flatten() {
            *by_source.entry(*via).or_default() += 1;
        }
        let Some((via, count)) = by_source.into_iter().max_by_key(|(_, n)| *n) else {
            return;
        };
        let others_failing = self
            .bootstrap
            .iter()
            .filter(|e| e.peer.peer_id != via)
            .all(|e| !e.answered && e.failures > 0);
        if others_failing && count as f64 > DOMINATION_SHARE * total as f64 {
            self.domination_warned = true;
            self.metrics.routing_dominated.inc();
            tracing::warn!(
                bootstrap_peer = %via, learnt = count, table = total,
                "most of the routing table was learnt through a single bootstrap peer while the \
                 others do not answer; if it is poisoned, so is this node's view of the network"
            );
        }
    }
}

/// Tells whoever waits for outbound request `id` that it failed.
fn fail_outbound<T>(
    pending: &mut HashMap<OutboundRequestId, Replier<T>>,
    id: OutboundRequestId,
    peer: PeerId,
    error: &request_response::OutboundFailure,
) {
    if let Some(reply) = pending.remove(&id) {
        let _ = reply.send(Err(Error::Request {
            peer,
            reason: error.to_string(),
        }));
    }
}

fn slow_down(wait: Duration) -> BlockResponse {
    BlockResponse {
        retry_after_ms: millis(wait),
        ..Default::default()
    }
}

fn refusal(error: String) -> BlockResponse {
    BlockResponse {
        error,
        ..Default::default()
    }
}

fn millis(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

fn denied_reason(cause: &libp2p::swarm::ConnectionDenied) -> &'static str {
    if cause
        .downcast_ref::<allow_block_list::NotAllowed>()
        .is_some()
    {
        "not_allowlisted"
    } else if cause.downcast_ref::<allow_block_list::Blocked>().is_some() {
        "banned"
    } else if cause
        .downcast_ref::<connection_limits::Exceeded>()
        .is_some()
    {
        "connection_limit"
    } else if cause
        .downcast_ref::<memory_connection_limits::MemoryUsageLimitExceeded>()
        .is_some()
    {
        "memory_limit"
    } else {
        "denied"
    }
}

fn listen_error_reason(error: &ListenError) -> &'static str {
    match error {
        ListenError::Denied { cause } => denied_reason(cause),
        ListenError::Transport(_) => "handshake",
        ListenError::WrongPeerId { .. } | ListenError::LocalPeerId { .. } => "wrong_identity",
        _ => "aborted",
    }
}
