//! Answers peers' requests: block requests from the store; requests to hold a replica (see
//! [`Replicator::hold`]), at most `CONCURRENT_REPLICAS` at once; audits; and newer pin records
//! peers stored here (an unpin is acted on at once). Every block is read through the store's
//! verifying `get`, so a block that rotted on disk is quarantined and reported missing — never
//! sent. Reads run on blocking threads, at most `CONCURRENT_READS` requests at once; the swarm
//! task answers "slow down" by itself when this worker falls behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use cairn_blockstore::Store;
use cairn_blockstore::backend::Backend;
use cairn_p2p::{Client as Network, MAX_BLOCK_RESPONSE_PAYLOAD, NetworkEvent, PeerId};
use cid::Cid;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::replication::Replicator;
use crate::store::NodeStore;

/// Requests read from the store at once.
const CONCURRENT_READS: usize = 16;
/// Replicas fetched at once; each runs a whole DAG fetch.
const CONCURRENT_REPLICAS: usize = 4;
/// Of those, the most one requesting peer may hold: one peer cannot take every slot.
const REPLICAS_PER_PEER: usize = 2;
/// Audits answered at once; each reads one block.
const CONCURRENT_AUDITS: usize = 8;
/// Pin records acted on at once.
const CONCURRENT_RECORDS: usize = 4;

/// Runs until `stop` is cancelled, or the swarm is gone (an error: the node cannot serve).
pub async fn run<B: Backend>(
    store: NodeStore<B>,
    network: Network,
    replicator: Replicator<B>,
    mut events: mpsc::Receiver<NetworkEvent>,
    stop: CancellationToken,
) -> Result<()> {
    let reads = Arc::new(Semaphore::new(CONCURRENT_READS));
    let replicas = Arc::new(ReplicaSlots::new(CONCURRENT_REPLICAS, REPLICAS_PER_PEER));
    let audits = Arc::new(Semaphore::new(CONCURRENT_AUDITS));
    let records = Arc::new(Semaphore::new(CONCURRENT_RECORDS));
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            event = events.recv() => match event {
                Some(event) => event,
                None => return Err(crate::Error::P2p(cairn_p2p::Error::Stopped)),
            },
        };
        let (id, cids, allowance) = match event {
            NetworkEvent::BlockRequest {
                id,
                cids,
                allowance,
                ..
            } => (id, cids, allowance),
            NetworkEvent::Replicate {
                id,
                peer,
                root,
                nonce,
                repair,
                claims,
                ..
            } => {
                // Never wait here: block requests queue behind this loop, and a replica being
                // fetched may need this very node to serve blocks.
                let Some(slot) = replicas.try_take(peer) else {
                    replicator.count_refusal("slots");
                    let busy = Err("busy with other replicas; ask again later".to_owned());
                    let _ = network.respond_replicate(id, busy).await;
                    continue;
                };
                let replicator = replicator.clone();
                store.jobs().spawn("holding a replica", async move {
                    replicator.hold(id, peer, root, nonce, repair, claims).await;
                    drop(slot);
                });
                continue;
            }
            NetworkEvent::Audit {
                id,
                peer,
                root,
                blocks,
                nonce,
            } => {
                let Ok(permit) = Arc::clone(&audits).acquire_owned().await else {
                    return Ok(());
                };
                let replicator = replicator.clone();
                store.jobs().spawn("answering an audit", async move {
                    replicator.serve_audit(id, peer, root, blocks, nonce).await;
                    drop(permit);
                });
                continue;
            }
            NetworkEvent::PinClaims { claims } => {
                // Over the cap the claims are skipped here: they are in the DHT store, and the
                // reconciliation worker reads them on its next round.
                let Ok(permit) = Arc::clone(&records).try_acquire_owned() else {
                    continue;
                };
                let replicator = replicator.clone();
                store.jobs().spawn("acting on pin claims", async move {
                    if let Err(e) = replicator.adopt(claims).await {
                        tracing::warn!(error = %e, "could not act on pin claims");
                    }
                    drop(permit);
                });
                continue;
            }
            _ => continue,
        };
        let Ok(permit) = Arc::clone(&reads).acquire_owned().await else {
            return Ok(());
        };
        let reading = store.clone();
        let network = network.clone();
        store.jobs().spawn("serving blocks", async move {
            let read = reading
                .run("reading requested blocks", move |store| {
                    Ok(read_blocks(store, cids, allowance))
                })
                .await;
            drop(permit);
            match read {
                Ok((found, missing)) => {
                    let _ = network.respond_blocks(id, found, missing).await;
                }
                Err(e) => tracing::error!(error = %e, "a block request was not answered"),
            }
        });
    }
}

/// The blocks this node holds (verified) and the CIDs it does not; CIDs past `allowance` bytes
/// (what the peer may receive now) are in neither, and the peer asks again.
fn read_blocks<B: Backend>(
    store: &Store<B>,
    cids: Vec<Cid>,
    allowance: usize,
) -> (Vec<(Cid, Bytes)>, Vec<Cid>) {
    let allowance = allowance.min(MAX_BLOCK_RESPONSE_PAYLOAD);
    let mut found = Vec::new();
    let mut missing = Vec::new();
    let mut size = 0usize;
    for cid in cids {
        if size >= allowance {
            break;
        }
        match store.get(&cid) {
            Ok(data) if size + data.len() <= allowance => {
                size += data.len();
                found.push((cid, data));
            }
            Ok(_) => break,
            Err(cairn_blockstore::Error::NotFound(_)) => missing.push(cid),
            Err(e) => {
                // Corrupt (now quarantined) or unreadable: we cannot vouch for it.
                tracing::warn!(%cid, error = %e, "cannot serve a requested block");
                missing.push(cid);
            }
        }
    }
    (found, missing)
}

/// Replica slots, shared out per requesting peer: at most `total` replicas are fetched at once,
/// and at most `per_peer` of them for any one peer.
#[derive(Debug)]
struct ReplicaSlots {
    total: usize,
    per_peer: usize,
    taken: Mutex<HashMap<PeerId, usize>>,
}

/// One slot, given back when dropped.
struct ReplicaSlot {
    slots: Arc<ReplicaSlots>,
    peer: PeerId,
}

impl ReplicaSlots {
    fn new(total: usize, per_peer: usize) -> Self {
        Self {
            total,
            per_peer,
            taken: Mutex::default(),
        }
    }

    fn try_take(self: &Arc<Self>, peer: PeerId) -> Option<ReplicaSlot> {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        let in_use: usize = taken.values().sum();
        let mine = taken.entry(peer).or_default();
        if in_use >= self.total || *mine >= self.per_peer {
            return None;
        }
        *mine += 1;
        Some(ReplicaSlot {
            slots: Arc::clone(self),
            peer,
        })
    }
}

impl Drop for ReplicaSlot {
    fn drop(&mut self) {
        let mut taken = self
            .slots
            .taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = taken.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                taken.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    #[test]
    fn one_peer_cannot_take_every_replica_slot() {
        let slots = Arc::new(ReplicaSlots::new(4, 2));
        let (greedy, honest) = (PeerId::random(), PeerId::random());
        let first = slots.try_take(greedy).unwrap();
        let _second = slots.try_take(greedy).unwrap();
        assert!(slots.try_take(greedy).is_none(), "over its share");
        let _a = slots.try_take(honest).unwrap();
        let _b = slots.try_take(honest).unwrap();
        assert!(
            slots.try_take(PeerId::random()).is_none(),
            "all slots taken"
        );
        drop(first);
        assert!(
            slots.try_take(greedy).is_some(),
            "a slot given back is free again"
        );
    }
}
