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
        let identity = NodeIdentity::generate();
        let mut settings = NetworkSettings::new(vec!["/ip4/127.0.0.1/tcp/0".parse()?]);
        // A hostile peer takes whatever it is sent and never bans anyone.
        settings.max_memory_fraction = 0.99;
        settings.requests_per_second = 10_000;
        settings.bytes_per_second = 1 << 30;
        settings.ban_score = i64::MIN;
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
                            Behaviour::Empty | Behaviour::Mute => {
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
