//! Peers that misbehave, built from the same crates as a node: a liar that answers every block
//! request with the right CIDs and wrong bytes, and a bare swarm for flooding a node with
//! requests. They speak the real protocols, so what they test is what a hostile node could do.

use std::time::Duration;

use bytes::Bytes;
use cairn_p2p::{Client, Multiaddr, NetworkEvent, NetworkSettings, NodeIdentity, PeerId};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// What a hostile peer does with the block requests it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Claims to hold every block and sends garbage under the asked CIDs.
    Lie,
    /// Answers that it holds nothing.
    Empty,
    /// Answers every block request with nothing at all: no blocks, nothing missing, no pause.
    Mute,
    /// Never answers a block request: each waits for the asker's request timeout.
    Stall,
}

/// A hostile peer running in this process; stops when dropped.
#[derive(Debug)]
pub struct HostilePeer {
    pub client: Client,
    pub addr: Multiaddr,
    stop: CancellationToken,
}

impl HostilePeer {
    pub async fn start(behaviour: Behaviour) -> anyhow::Result<Self> {
        Self::start_with(behaviour, |_| {}).await
    }

    /// An empty peer that asks the DHT and answers no one's Kademlia queries: an attacker's
    /// identities spend nothing on each other, all their lookups land on the nodes.
    pub async fn dht_client() -> anyhow::Result<Self> {
        Self::start_with(Behaviour::Empty, |s| s.dht_server = false).await
    }

    async fn start_with(
        behaviour: Behaviour,
        edit: impl FnOnce(&mut NetworkSettings),
    ) -> anyhow::Result<Self> {
        let identity = NodeIdentity::generate();
        let mut settings = NetworkSettings::new(vec!["/ip4/127.0.0.1/tcp/0".parse()?]);
        // A hostile peer takes whatever it is sent and never bans anyone.
        settings.max_memory_fraction = 0.99;
        settings.requests_per_second = 10_000;
        settings.bytes_per_second = 1 << 30;
        settings.ban_score = i64::MIN;
        edit(&mut settings);
        let (client, mut events, event_loop) =
            cairn_p2p::new(&identity, settings, &mut Registry::default())?;
        let stop = CancellationToken::new();
        tokio::spawn(event_loop.run(stop.clone()));
        let responder = client.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let (id, cids) = match event {
                    NetworkEvent::BlockRequest { id, cids, .. } => (id, cids),
                    NetworkEvent::Replicate { id, root, .. } => {
                        // The liar claims the replica with a receipt for some other request; the
                        // empty peer declines.
                        let outcome = match behaviour {
                            Behaviour::Lie => cairn_p2p::records::Receipt::sign(
                                &identity,
                                root,
                                b"not your nonce",
                                0,
                            )
                            .map_err(|e| e.to_string()),
                            Behaviour::Empty | Behaviour::Mute | Behaviour::Stall => {
                                Err("not holding anything".to_owned())
                            }
                        };
                        let _ = responder.respond_replicate(id, outcome).await;
                        continue;
                    }
                    _ => continue,
                };
                let (blocks, missing) = match behaviour {
                    Behaviour::Lie => (
                        cids.into_iter()
                            .map(|cid| (cid, Bytes::from_static(b"not what you asked for")))
                            .collect(),
                        Vec::new(),
                    ),
                    Behaviour::Empty => (Vec::new(), cids),
                    Behaviour::Mute => (Vec::new(), Vec::new()),
                    Behaviour::Stall => continue,
                };
                let _ = responder.respond_blocks(id, blocks, missing).await;
            }
        });
        let addr = client
            .wait_listening(Duration::from_secs(10))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no listen address"))?;
        Ok(Self { client, addr, stop })
    }

    pub fn peer_id(&self) -> PeerId {
        self.client.local_peer_id()
    }

    /// The address with its peer ID, as `peers connect` takes it.
    pub fn p2p_addr(&self) -> String {
        format!("{}/p2p/{}", self.addr, self.peer_id())
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What a hostile member does when asked to hold a replica and then audited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberBehaviour {
    /// Signs a correct receipt at once without fetching anything, then answers every audit
    /// "holding" with a made-up proof.
    ReceiptOnly,
    /// Signs a correct receipt without fetching, and passes every audit on to `relay_to` (an
    /// honest holder), answering with whatever proof comes back.
    RelayAudits { relay_to: PeerId },
    /// Signs a correct receipt without fetching, and answers each audit by fetching the sampled
    /// blocks from `from` there and then and computing the proof itself, `delay` later (a holder
    /// that keeps nothing and borrows from an honest one across a slow link).
    FetchOnDemand { from: PeerId, delay: Duration },
}

/// An admitted member gone bad: a full swarm with its own key, in this process; stops when
/// dropped. Its key signs whatever the test asks (see [`HostileMember::sign`]). Started with no
/// behaviour it holds nothing and answers nothing but "missing": a plain requester, honest or
/// not depending on what the test has it ask.
#[derive(Debug)]
pub struct HostileMember {
    pub client: Client,
    pub identity: NodeIdentity,
    pub addr: Multiaddr,
    stop: CancellationToken,
}

impl HostileMember {
    pub async fn start(behaviour: Option<MemberBehaviour>) -> anyhow::Result<Self> {
        Self::start_stalling(behaviour, Default::default()).await
    }

    /// [`HostileMember::start`], never answering a block request that names one of `stall`: a
    /// fetch of those waits on this peer until its request times out.
    pub async fn start_stalling(
        behaviour: Option<MemberBehaviour>,
        stall: std::collections::HashSet<cid::Cid>,
    ) -> anyhow::Result<Self> {
        let identity = NodeIdentity::generate();
        let mut settings = NetworkSettings::new(vec!["/ip4/127.0.0.1/tcp/0".parse()?]);
        settings.max_memory_fraction = 0.99;
        settings.ban_score = i64::MIN;
        let (client, mut events, event_loop) =
            cairn_p2p::new(&identity, settings, &mut Registry::default())?;
        let stop = CancellationToken::new();
        tokio::spawn(event_loop.run(stop.clone()));
        let (responder, signer) = (client.clone(), identity.clone());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match (event, behaviour) {
                    (
                        NetworkEvent::Replicate {
                            id, root, nonce, ..
                        },
                        Some(_),
                    ) => {
                        let receipt =
                            cairn_p2p::records::Receipt::sign(&signer, root, &nonce, now_ms())
                                .map_err(|e| e.to_string());
                        let _ = responder.respond_replicate(id, receipt).await;
                    }
                    (NetworkEvent::Audit { id, .. }, Some(MemberBehaviour::ReceiptOnly)) => {
                        let answer = cairn_p2p::AuditAnswer {
                            holding: true,
                            proof: vec![0x5a; 32],
                            ..Default::default()
                        };
                        let _ = responder.respond_audit(id, answer).await;
                    }
                    (
                        NetworkEvent::Audit {
                            id,
                            root,
                            blocks,
                            nonce,
                            ..
                        },
                        Some(MemberBehaviour::RelayAudits { relay_to }),
                    ) => {
                        let relayer = responder.clone();
                        tokio::spawn(async move {
                            let answer = relayer
                                .audit(relay_to, root, blocks, nonce)
                                .await
                                .unwrap_or_default();
                            let _ = relayer.respond_audit(id, answer).await;
                        });
                    }
                    (
                        NetworkEvent::Audit {
                            id,
                            peer: auditor,
                            blocks,
                            nonce,
                            ..
                        },
                        Some(MemberBehaviour::FetchOnDemand { from, delay }),
                    ) => {
                        let (fetcher, me) = (responder.clone(), signer.peer_id());
                        tokio::spawn(async move {
                            let fetched = fetcher
                                .request_blocks(from, blocks.clone())
                                .await
                                .map(|reply| reply.blocks)
                                .unwrap_or_default();
                            // The proof covers the blocks in the order asked.
                            let ordered: Vec<(cid::Cid, Bytes)> = blocks
                                .iter()
                                .filter_map(|c| fetched.iter().find(|(f, _)| f == c).cloned())
                                .collect();
                            tokio::time::sleep(delay).await;
                            let answer = cairn_p2p::AuditAnswer {
                                holding: true,
                                proof: cairn_p2p::audit_proof(
                                    &nonce,
                                    &auditor,
                                    &me,
                                    ordered.iter().map(|(c, d)| (c, d.as_ref())),
                                ),
                                ..Default::default()
                            };
                            let _ = fetcher.respond_audit(id, answer).await;
                        });
                    }
                    (NetworkEvent::BlockRequest { id, cids, .. }, _)
                        if !cids.iter().any(|c| stall.contains(c)) =>
                    {
                        let _ = responder.respond_blocks(id, Vec::new(), cids).await;
                    }
                    _ => {}
                }
            }
        });
        let addr = client
            .wait_listening(Duration::from_secs(10))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no listen address"))?;
        Ok(Self {
            client,
            identity,
            addr,
            stop,
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.identity.peer_id()
    }

    /// A pin record for `owner`'s slot of `root`, signed with this member's key: its own slot,
    /// or someone else's it has no say in.
    pub fn sign(
        &self,
        root: cid::Cid,
        owner: PeerId,
        intent: cairn_p2p::records::PinIntent,
        version: u64,
    ) -> anyhow::Result<Vec<u8>> {
        Ok(cairn_p2p::records::PinRecord::sign(
            &self.identity,
            root,
            owner,
            intent,
            version,
        )?)
    }

    /// Records as one pin-claims value, unjudged, as a hostile member would send them.
    pub fn claims_value(records: Vec<Vec<u8>>) -> Vec<u8> {
        use prost::Message;
        cairn_proto::wire::PinClaims {
            records: records.into_iter().map(Into::into).collect(),
        }
        .encode_to_vec()
    }
}

impl Drop for HostileMember {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Wall-clock milliseconds, as pin-record versions and receipts use them.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
