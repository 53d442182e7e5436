//! The handle the rest of the node uses to talk to the swarm task: each call sends a command over
//! a bounded channel and awaits its reply on a oneshot. Cloneable; when the task has stopped every
//! call returns [`Error::Stopped`].

use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use libp2p::Multiaddr;
use libp2p::request_response::InboundRequestId;
use libp2p_identity::PeerId;
use tokio::sync::{mpsc, oneshot, watch};

use crate::authority::RecordGate;
use crate::claims::PinClaims;
use crate::error::Error;
use crate::scores::Offence;

/// A connected peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer_id: PeerId,
    pub addrs: Vec<Multiaddr>,
    /// On the bootstrap list or the allowlist: one of the cluster's own nodes.
    pub member: bool,
    /// When its first open connection was established.
    pub connected_since: std::time::Instant,
}

/// What a peer answered to a block request. The blocks are NOT verified yet: the caller checks
/// each against its CID and reports a mismatch with [`Client::penalise`].
#[derive(Clone, Debug, Default)]
pub struct BlockReply {
    pub blocks: Vec<(Cid, Bytes)>,
    /// CIDs the peer says it does not hold.
    pub missing: Vec<Cid>,
    /// Set when the peer refused (some of) the request under its rate limit.
    pub retry_after: Option<Duration>,
}

/// Identifies an inbound request until it is answered with [`Client::respond_blocks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InboundId(pub(crate) InboundRequestId);

/// Identifies an inbound replicate request until it is answered with [`Client::respond_replicate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplicateId(pub(crate) InboundRequestId);

/// Identifies an inbound audit until it is answered with [`Client::respond_audit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AuditId(pub(crate) InboundRequestId);

/// A holder's answer to an audit. The proof is NOT checked here: the auditor computes the
/// expected one from its own copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditAnswer {
    /// The holder has the root pinned.
    pub holding: bool,
    /// The proof over the asked blocks, when blocks were asked for and are held.
    pub proof: Vec<u8>,
    /// Why there is no proof.
    pub error: String,
    /// Set when the peer refused the audit (rate limit, full queue) and asks us to wait: the
    /// other fields then say nothing about its copy.
    pub retry_after: Option<Duration>,
}

/// Requests from peers that need the node (disk reads); the swarm task answers nothing itself
/// that needs the store.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetworkEvent {
    /// A peer wants these blocks; answer with [`Client::respond_blocks`].
    BlockRequest {
        id: InboundId,
        peer: PeerId,
        cids: Vec<Cid>,
        /// Bytes of blocks the answer may carry: taken from the peer's byte limit already, so
        /// read no more than this.
        allowance: usize,
    },
    /// A peer asks this node to hold `root`; answer with [`Client::respond_replicate`].
    Replicate {
        id: ReplicateId,
        peer: PeerId,
        root: Cid,
        replication_factor: u32,
        nonce: Vec<u8>,
        /// A repair: fetch at the repair bandwidth cap.
        repair: bool,
        /// The requester's pin claims for `root` (encoded, unverified; may be empty).
        claims: Vec<u8>,
    },
    /// A peer audits this node's copy of `root`; answer with [`Client::respond_audit`].
    Audit {
        id: AuditId,
        peer: PeerId,
        root: Cid,
        /// The blocks to prove (empty: a plain "do you hold it").
        blocks: Vec<Cid>,
        nonce: Vec<u8>,
    },
    /// A peer stored pin claims here that changed the ones held (every record in them admitted
    /// by the [`RecordGate`]); the node may need to act on them (an unpin, a restore).
    PinClaims { claims: PinClaims },
}

/// How far bootstrap has come.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootstrapProgress {
    /// Bootstrap peers that answered with the identity their entry names.
    pub answered: usize,
    /// Why the others have not, one line each (for the start-up error).
    pub problems: Vec<String>,
}

#[derive(Debug)]
pub(crate) enum Command {
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    RoutingTable {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, Error>>,
    },
    Ban {
        peer: PeerId,
        duration: Duration,
        reply: oneshot::Sender<()>,
    },
    Penalise {
        peer: PeerId,
        offence: Offence,
    },
    RequestBlocks {
        peer: PeerId,
        cids: Vec<Cid>,
        reply: oneshot::Sender<Result<BlockReply, Error>>,
    },
    RespondBlocks {
        id: InboundId,
        blocks: Vec<(Cid, Bytes)>,
        missing: Vec<Cid>,
    },
    Replicate {
        peer: PeerId,
        root: Cid,
        replication_factor: u32,
        nonce: Vec<u8>,
        repair: bool,
        record: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, Error>>,
    },
    Audit {
        peer: PeerId,
        root: Cid,
        blocks: Vec<Cid>,
        nonce: Vec<u8>,
        reply: oneshot::Sender<Result<AuditAnswer, Error>>,
    },
    RespondAudit {
        id: AuditId,
        answer: AuditAnswer,
    },
    PutPinRecord {
        claims: PinClaims,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    #[cfg(feature = "testing")]
    PutUncheckedPinClaims {
        root: Cid,
        value: Vec<u8>,
    },
    GetPinRecord {
        root: Cid,
        reply: oneshot::Sender<Result<Option<PinClaims>, Error>>,
    },
    StopProviding {
        cid: Cid,
    },
    RespondReplicate {
        id: ReplicateId,
        outcome: Result<Vec<u8>, String>,
    },
    Placement {
        cid: Cid,
        count: usize,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    StartProviding {
        cid: Cid,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    GetProviders {
        cid: Cid,
        /// Answer (and end the lookup) once this many are found.
        enough: usize,
        reply: oneshot::Sender<Result<Vec<PeerId>, Error>>,
    },
}

#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) local_peer_id: PeerId,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) bootstrap: watch::Receiver<BootstrapProgress>,
    pub(crate) listening: watch::Receiver<Vec<Multiaddr>>,
    pub(crate) gate: RecordGate,
    /// Streams for Bitswap, when `p2p.bitswap` is on.
    pub(crate) bitswap: Option<crate::bitswap::BitswapStreams>,
}

impl Client {
    /// The swarm's Bitswap streams, for [`crate::bitswap::serve`]; `None` unless `p2p.bitswap`.
    pub fn bitswap_streams(&self) -> Option<crate::bitswap::BitswapStreams> {
        self.bitswap.clone()
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Whether any peer that passes the swarm key is admitted (no allowlist).
    pub fn open_network(&self) -> bool {
        self.gate.authority().allowlist.is_empty()
    }

    /// The authority rule for pin records, shared with the swarm task, so the node judges
    /// records from its store, its clients and replicate requests exactly as the DHT's.
    pub fn record_gate(&self) -> &RecordGate {
        &self.gate
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    /// The addresses the swarm listens on (empty until the listeners are bound).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listening.borrow().clone()
    }

    /// Waits until at least one listener is bound, then returns them all.
    pub async fn wait_listening(&self, timeout: Duration) -> Result<Vec<Multiaddr>, Error> {
        let mut listening = self.listening.clone();
        match tokio::time::timeout(timeout, listening.wait_for(|addrs| !addrs.is_empty())).await {
            Ok(Ok(addrs)) => Ok(addrs.clone()),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Transport(format!(
                "no listener was bound within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Error> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// The peers in Kademlia's routing table.
    pub async fn routing_table(&self) -> Result<Vec<PeerId>, Error> {
        self.call(|reply| Command::RoutingTable { reply }).await
    }

    /// Connects to `addr`; an address ending in `/p2p/<id>` must prove that identity. Returns the
    /// peer ID that answered.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, Error> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    /// Bans a peer for `duration`: its connections close and new ones are refused.
    pub async fn ban(&self, peer: PeerId, duration: Duration) -> Result<(), Error> {
        self.call(|reply| Command::Ban {
            peer,
            duration,
            reply,
        })
        .await
    }

    /// Reports a peer's misbehaviour; enough of it bans the peer.
    pub async fn penalise(&self, peer: PeerId, offence: Offence) -> Result<(), Error> {
        self.commands
            .send(Command::Penalise { peer, offence })
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Asks `peer` for blocks. A reply with `retry_after` set means the peer is limiting us. A
    /// peer that does not speak Cairn's block protocol is asked over Bitswap when `p2p.bitswap`
    /// is on (a Kubo node), and its answer comes back in the same shape.
    pub async fn request_blocks(&self, peer: PeerId, cids: Vec<Cid>) -> Result<BlockReply, Error> {
        // Only a node that speaks Bitswap keeps the CIDs, to ask again over it.
        let fallback = self.bitswap.as_ref().map(|bitswap| (bitswap, cids.clone()));
        let reply = self
            .call(|reply| Command::RequestBlocks { peer, cids, reply })
            .await?;
        match (reply, fallback) {
            (Err(Error::Unsupported { .. }), Some((bitswap, asked))) => {
                bitswap.ask(peer, asked, crate::bitswap::ASK_TIMEOUT).await
            }
            (reply, _) => reply,
        }
    }

    /// Answers an inbound block request. Blocks that do not fit the peer's byte budget or the
    /// response size are left out, and the peer asks again.
    pub async fn respond_blocks(
        &self,
        id: InboundId,
        blocks: Vec<(Cid, Bytes)>,
        missing: Vec<Cid>,
    ) -> Result<(), Error> {
        self.commands
            .send(Command::RespondBlocks {
                id,
                blocks,
                missing,
            })
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Asks `peer` to hold `root`, offering this node's pin `claims` for it (encoded); returns
    /// its signed receipt (not yet verified: see [`crate::records::Receipt::verify`]).
    pub async fn replicate(
        &self,
        peer: PeerId,
        root: Cid,
        replication_factor: u32,
        nonce: Vec<u8>,
        repair: bool,
        claims: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        self.call(|reply| Command::Replicate {
            peer,
            root,
            replication_factor,
            nonce,
            repair,
            record: claims,
            reply,
        })
        .await?
    }

    /// Audits `peer`'s copy of `root`: with `blocks`, it must answer with a proof over them and
    /// `nonce`, bound to both parties.
    pub async fn audit(
        &self,
        peer: PeerId,
        root: Cid,
        blocks: Vec<Cid>,
        nonce: Vec<u8>,
    ) -> Result<AuditAnswer, Error> {
        self.call(|reply| Command::Audit {
            peer,
            root,
            blocks,
            nonce,
            reply,
        })
        .await?
    }

    /// Answers an inbound audit.
    pub async fn respond_audit(&self, id: AuditId, answer: AuditAnswer) -> Result<(), Error> {
        self.commands
            .send(Command::RespondAudit { id, answer })
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Stores pin claims in the DHT, merged with what this node holds (here at once, at the
    /// closest peers in the background).
    pub async fn put_pin_claims(&self, claims: PinClaims) -> Result<(), Error> {
        self.call(|reply| Command::PutPinRecord { claims, reply })
            .await?
    }

    /// Stores `value` under `root`'s pin-claims key at the closest peers as it is, judged by
    /// nobody here: what a hostile member would send. For tests of the peers' defences only.
    #[cfg(feature = "testing")]
    pub async fn put_unchecked_pin_claims(&self, root: Cid, value: Vec<u8>) -> Result<(), Error> {
        self.commands
            .send(Command::PutUncheckedPinClaims { root, value })
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Every admitted pin record for `root` that this node and the DHT hold, merged.
    pub async fn get_pin_claims(&self, root: Cid) -> Result<Option<PinClaims>, Error> {
        self.call(|reply| Command::GetPinRecord { root, reply })
            .await?
    }

    /// Stops announcing `cid` (records already at peers expire on their own).
    pub async fn stop_providing(&self, cid: Cid) -> Result<(), Error> {
        self.commands
            .send(Command::StopProviding { cid })
            .await
            .map_err(|_| Error::Stopped)
    }

    /// Answers an inbound replicate request with a signed receipt, or the reason it failed.
    pub async fn respond_replicate(
        &self,
        id: ReplicateId,
        outcome: Result<Vec<u8>, String>,
    ) -> Result<(), Error> {
        self.commands
            .send(Command::RespondReplicate { id, outcome })
            .await
            .map_err(|_| Error::Stopped)
    }

    /// The `count` peers closest to `cid` in Kademlia's XOR space among this node and the peers
    /// it is connected to, closest first: where replicas of `cid` belong.
    pub async fn placement(&self, cid: Cid, count: usize) -> Result<Vec<PeerId>, Error> {
        self.call(|reply| Command::Placement { cid, count, reply })
            .await
    }

    /// Announces in the DHT that this node holds `cid` (re-announced before the record expires).
    pub async fn start_providing(&self, cid: Cid) -> Result<(), Error> {
        self.call(|reply| Command::StartProviding { cid, reply })
            .await?
    }

    /// Peers that announced they hold `cid`: every one the whole lookup finds.
    pub async fn providers(&self, cid: Cid) -> Result<Vec<PeerId>, Error> {
        self.some_providers(cid, usize::MAX).await
    }

    /// Like [`Client::providers`], but answers as soon as `enough` are found and ends the
    /// lookup there: a fetch can start at the first holder instead of waiting on every slow or
    /// hostile peer on the lookup's path.
    pub async fn some_providers(&self, cid: Cid, enough: usize) -> Result<Vec<PeerId>, Error> {
        self.call(|reply| Command::GetProviders { cid, enough, reply })
            .await?
    }

    /// Bootstrap progress, live.
    pub fn bootstrap_progress(&self) -> BootstrapProgress {
        self.bootstrap.borrow().clone()
    }

    /// Waits until `wanted` bootstrap peers answered; after `timeout`, an error that says which
    /// did not and why.
    pub async fn wait_bootstrapped(&self, wanted: usize, timeout: Duration) -> Result<(), Error> {
        let mut progress = self.bootstrap.clone();
        let reached = tokio::time::timeout(timeout, progress.wait_for(|p| p.answered >= wanted));
        match reached.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => {
                let now = self.bootstrap_progress();
                let problems = if now.problems.is_empty() {
                    String::new()
                } else {
                    format!(": {}", now.problems.join("; "))
                };
                Err(Error::BootstrapTimeout {
                    wanted,
                    answered: now.answered,
                    timeout,
                    problems,
                })
            }
        }
    }
}
