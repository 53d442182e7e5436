//! The swarm task: the only owner of the libp2p `Swarm`. One `tokio::select!` over swarm events,
//! commands from [`Client`]s, a housekeeping tick and the stop token. It does no disk I/O:
//! requests that need the store leave as [`NetworkEvent`]s, and are answered through the client.
//! Nothing a peer sends may panic it: every message is checked, every map and queue is bounded.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cairn_proto::wire::{AuditResponse, BlockResponse, ReplicateResponse};
use futures::StreamExt;
use libp2p::kad::{self, QueryId};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, Swarm, identify};
use libp2p_identity::PeerId;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::authority::RecordGate;
use crate::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use crate::client::{
    AuditAnswer, AuditId, BlockReply, BootstrapProgress, Command, InboundId, NetworkEvent,
    PeerInfo, ReplicateId,
};
use crate::error::Error;
use crate::metrics::P2pMetrics;
use crate::peer_limits::{Budgets, Limit, PeerLimits};
use crate::scores::{Offence, Scores};
use crate::settings::NetworkSettings;

mod admission;
mod audit;
pub use audit::{AUDIT_BYTES_PER_BLOCK, MAX_AUDIT_BLOCKS};
pub(crate) use providers::MAX_PROVIDED_KEYS_PER_PEER;
pub(crate) use records::{MAX_ROOTS_PER_SIGNER, MAX_STRANGER_ROOTS};
mod blocks;
mod bootstrap;
mod pending;
mod providers;
mod records;
mod replication;

use admission::listen_error_reason;
use bootstrap::BootstrapEntry;
use pending::Pending;

/// Housekeeping: ban expiry, bootstrap retries, pruning idle rate-limit buckets.
const TICK: Duration = Duration::from_millis(500);
/// At most this many outbound requests and lookups of one kind wait for answers at once; beyond
/// it, callers get an error at once instead of growing a table.
const MAX_PENDING_OUTBOUND: usize = 1024;

pub(crate) type Replier<T> = oneshot::Sender<Result<T, Error>>;

/// A provider lookup under way: the providers found so far, how many are enough to answer, and
/// who waits.
struct ProviderLookup {
    found: HashSet<PeerId>,
    enough: usize,
    reply: Replier<Vec<PeerId>>,
}

/// Adds the time spent polling `inner` to `busy`: the share of one core the swarm task takes.
struct Busy<F> {
    inner: std::pin::Pin<Box<F>>,
    busy: prometheus_client::metrics::counter::Counter<f64, std::sync::atomic::AtomicU64>,
}

impl<F: std::future::Future> std::future::Future for Busy<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let started = std::time::Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.busy.inc_by(started.elapsed().as_secs_f64());
        polled
    }
}

/// Runs the swarm until stopped.
pub struct EventLoop {
    pub(crate) swarm: Swarm<Behaviour>,
    /// Judges every pin record the swarm takes in.
    pub(crate) gate: RecordGate,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) events: mpsc::Sender<NetworkEvent>,
    pub(crate) metrics: P2pMetrics,
    pub(crate) libp2p_metrics: libp2p::metrics::Metrics,
    pub(crate) bootstrap_progress: watch::Sender<BootstrapProgress>,
    pub(crate) listening: watch::Sender<Vec<Multiaddr>>,
    pub(crate) limits: PeerLimits,
    /// The cluster's own members (bootstrap list, allowlist): not held to strangers' budgets.
    trusted: HashSet<PeerId>,
    pub(crate) scores: Scores,
    bootstrap: Vec<BootstrapEntry>,
    connected: HashMap<PeerId, Connected>,
    pending_dials: Pending<ConnectionId, (Multiaddr, Replier<PeerId>)>,
    pending_requests: Pending<OutboundRequestId, Replier<BlockReply>>,
    pending_providers: Pending<QueryId, ProviderLookup>,
    /// Block requests the node is reading for, with the bytes each answer may carry.
    inbound: Pending<InboundId, (usize, ResponseChannel<BlockResponse>)>,
    pending_replicates: Pending<OutboundRequestId, Replier<Vec<u8>>>,
    inbound_replicates: Pending<ReplicateId, ResponseChannel<ReplicateResponse>>,
    pending_audits: Pending<OutboundRequestId, Replier<AuditAnswer>>,
    inbound_audits: Pending<AuditId, ResponseChannel<AuditResponse>>,
    pending_records: Pending<QueryId, records::PendingLookup>,
    /// How long pin claims live in the store unless put again.
    record_ttl: Duration,
    /// When expired claims were last drained from the store.
    claims_drained: Option<Instant>,
    /// Roots each signer's records hold a slot of here, for its quota.
    signer_quota: records::SignerQuota,
    /// Provider records remote peers stored here, for their caps.
    remote_providers: providers::RemoteProviders,
    /// Which bootstrap peer (if exactly one was connected) each routing-table entry came through.
    learnt_via: HashMap<PeerId, Option<PeerId>>,
    domination_warned: bool,
    /// When Kademlia's bootstrap runs again while the cluster forms, and the interval after it.
    rediscovery: Option<bootstrap::Rediscovery>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("local_peer_id", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

/// A connected peer: the addresses it is connected on (a few), and since when.
struct Connected {
    addrs: Vec<Multiaddr>,
    since: std::time::Instant,
}

impl EventLoop {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        settings: NetworkSettings,
        gate: RecordGate,
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
            .map(|peer| BootstrapEntry::new(peer.clone(), now))
            .collect();
        let inbound = settings.inbound_queue;
        Self {
            limits: PeerLimits::with_budgets(Budgets {
                requests_per_peer: settings.requests_per_second,
                bytes_per_peer: settings.bytes_per_second,
                requests_per_ip: settings.requests_per_second_per_ip,
                bytes_per_ip: settings.bytes_per_second_per_ip,
                strangers_requests: settings.strangers_requests_per_second,
                strangers_bytes: settings.strangers_bytes_per_second,
            }),
            trusted: settings.trusted(),
            scores: Scores::new(settings.ban_score, settings.ban_duration),
            swarm,
            gate,
            commands,
            events,
            metrics,
            libp2p_metrics,
            bootstrap_progress,
            listening,
            bootstrap,
            connected: HashMap::new(),
            pending_dials: Pending::new(MAX_PENDING_OUTBOUND),
            pending_requests: Pending::new(MAX_PENDING_OUTBOUND),
            pending_providers: Pending::new(MAX_PENDING_OUTBOUND),
            inbound: Pending::new(inbound),
            pending_replicates: Pending::new(MAX_PENDING_OUTBOUND),
            inbound_replicates: Pending::new(inbound),
            pending_audits: Pending::new(MAX_PENDING_OUTBOUND),
            inbound_audits: Pending::new(inbound),
            pending_records: Pending::new(MAX_PENDING_OUTBOUND),
            signer_quota: records::SignerQuota::new(
                settings.max_roots_per_signer,
                settings.max_stranger_roots,
            ),
            record_ttl: settings.record_ttl,
            claims_drained: None,
            remote_providers: providers::RemoteProviders::new(settings.max_provider_keys_per_peer),
            learnt_via: HashMap::new(),
            domination_warned: false,
            rediscovery: None,
        }
    }

    /// Runs until `stop` is cancelled or every client is gone; then closes the swarm.
    pub async fn run(self, stop: CancellationToken) {
        let busy = self.metrics.swarm_busy_seconds.clone();
        Busy {
            inner: Box::pin(self.serve(stop)),
            busy,
        }
        .await;
    }

    async fn serve(mut self, stop: CancellationToken) {
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
        self.swarm.behaviour().kad.prune();
        self.swarm.behaviour().ip_limits.prune();
        if self
            .claims_drained
            .is_none_or(|at| now.duration_since(at) >= CLAIMS_DRAIN_INTERVAL.min(self.record_ttl))
        {
            self.claims_drained = Some(now);
            self.drain_expired_claims();
        }
        self.dial_bootstrap_peers(now);
        self.rediscover(now);
        self.check_routing_domination();
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Peers { reply } => {
                let peers = self
                    .connected
                    .iter()
                    .map(|(peer_id, connected)| PeerInfo {
                        peer_id: *peer_id,
                        addrs: connected.addrs.clone(),
                        member: self.trusted.contains(peer_id),
                        connected_since: connected.since,
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
            Command::RequestBlocks { peer, cids, reply } => self.request_blocks(peer, cids, reply),
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
                let ask = replication::ReplicateAsk {
                    root,
                    replication_factor,
                    nonce,
                    repair,
                    record,
                };
                self.send_replicate(peer, ask, reply)
            }
            Command::RespondReplicate { id, outcome } => self.respond_replicate(id, outcome),
            Command::Audit {
                peer,
                root,
                blocks,
                nonce,
                reply,
            } => self.send_audit(peer, root, blocks, nonce, reply),
            Command::RespondAudit { id, answer } => self.respond_audit(id, answer),
            Command::PutPinRecord { claims, reply } => {
                let _ = reply.send(self.put_pin_claims(claims));
            }
            Command::GetPinRecord { root, reply } => self.get_pin_record(root, reply),
            #[cfg(feature = "testing")]
            Command::PutUncheckedPinClaims { root, value } => {
                let record = kad::Record::new(records::pin_record_key(&root), value);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, kad::Quorum::One);
            }
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
            Command::GetProviders { cid, enough, reply } => {
                let Some(reply) = self
                    .pending_providers
                    .refuse_when_full(reply, || Error::Lookup("too many lookups in flight".into()))
                else {
                    return;
                };
                // Lookups whose caller went away (a fetch that finished from connected peers
                // first) end here rather than running on to their timeout.
                for id in self
                    .pending_providers
                    .remove_where(|lookup| lookup.reply.is_closed())
                {
                    if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        query.finish();
                    }
                }
                let key = kad::RecordKey::new(&cid.hash().to_bytes());
                let id = self.swarm.behaviour_mut().kad.get_providers(key);
                self.pending_providers.insert(
                    id,
                    ProviderLookup {
                        found: HashSet::new(),
                        enough,
                        reply,
                    },
                );
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        while let Some((peer, limit)) = self.swarm.behaviour_mut().kad.take_over_limit() {
            self.metrics.limited(limit);
            self.penalise(peer, Offence::OverLimit);
        }
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
                    .is_some_and(|c| c.addrs.iter().any(is_loopback));
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
                let connected = self.connected.entry(peer_id).or_insert_with(|| Connected {
                    addrs: Vec::new(),
                    since: std::time::Instant::now(),
                });
                if !connected.addrs.contains(&addr) && connected.addrs.len() < 8 {
                    connected.addrs.push(addr);
                }
                self.metrics
                    .connected_peers
                    .set(i64::try_from(self.connected.len()).unwrap_or(i64::MAX));
                if let Some((_, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                self.bootstrap_peer_connected(peer_id);
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
                self.bootstrap_peer_lost(peer_id);
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
                self.bootstrap_dial_failed(connection_id, peer_id, &error);
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
                        let mut enough = false;
                        if let Some(lookup) = self.pending_providers.get_mut(&id) {
                            lookup.found.extend(
                                providers.into_iter().filter(|p| !self.scores.is_banned(p)),
                            );
                            enough = lookup.found.len() >= lookup.enough;
                        }
                        if enough
                            && !step.last
                            && let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id)
                        {
                            query.finish();
                        }
                        step.last || enough
                    }
                    Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => true,
                    Err(e) => {
                        tracing::debug!(error = %e, "provider lookup ended early");
                        true
                    }
                };
                if finished && let Some(lookup) = self.pending_providers.remove(&id) {
                    let _ = lookup.reply.send(Ok(lookup.found.into_iter().collect()));
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
            } => self.on_provider_offered(record),
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer: true,
                ..
            } => self.note_routing_source(peer),
            _ => {}
        }
    }
}

/// Expired pin claims leave the store at least this often (more often with a shorter TTL).
const CLAIMS_DRAIN_INTERVAL: Duration = Duration::from_secs(600);

/// Tells whoever waits for outbound request `id` that it failed.
fn fail_outbound<T>(
    pending: &mut Pending<OutboundRequestId, Replier<T>>,
    id: OutboundRequestId,
    peer: PeerId,
    error: &request_response::OutboundFailure,
) {
    if let Some(reply) = pending.remove(&id) {
        let error = match error {
            // Not a Cairn node (a Kubo peer, say): the caller may ask it another way.
            request_response::OutboundFailure::UnsupportedProtocols => Error::Unsupported { peer },
            other => Error::Request {
                peer,
                reason: other.to_string(),
            },
        };
        let _ = reply.send(Err(error));
    }
}

fn millis(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)
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

impl EventLoop {
    /// The address a stranger connects from; None for the cluster's own members.
    fn stranger_ip(&self, peer: &PeerId) -> Option<std::net::IpAddr> {
        if self.trusted.contains(peer) {
            return None;
        }
        self.connected.get(peer)?.addrs.iter().find_map(|addr| {
            addr.iter().find_map(|p| match p {
                Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(ip)),
                Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(ip)),
                _ => None,
            })
        })
    }

    /// Admits one inbound request from `peer` under every budget it answers to; a refusal is
    /// counted under the limit it hit and returns the wait to ask for.
    pub(crate) fn admit_request(&mut self, peer: &PeerId) -> Result<(), Duration> {
        let ip = self.stranger_ip(peer);
        self.limits
            .admit_request(peer, ip)
            .map_err(|refused| self.count_limited(refused))
    }

    /// Takes bytes for one answer to `peer` under every budget it answers to (see
    /// [`PeerLimits::reserve_bytes`]).
    pub(crate) fn admit_bytes(
        &mut self,
        peer: &PeerId,
        wanted: usize,
        least: usize,
    ) -> Result<usize, Duration> {
        let ip = self.stranger_ip(peer);
        self.limits
            .admit_bytes(peer, wanted, least, ip)
            .map_err(|refused| self.count_limited(refused))
    }

    fn count_limited(&self, (wait, limit): (Duration, Limit)) -> Duration {
        self.metrics.limited(limit);
        wait
    }
}
