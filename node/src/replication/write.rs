//! The write path: after a root is stored and pinned here, publish its pin record and ask the
//! placement targets — the peers closest to the root in Kademlia's XOR space — to hold it,
//! collecting their signed receipts. Each target fetches the DAG from any holder (verifying every
//! block), pins it, announces itself as a provider and signs a receipt over the request's nonce.
//!
//! The caller waits for `write_quorum` receipts; the remaining requests finish in the background
//! and still record their receipts. With fewer peers than the factor, the pin is reported as
//! under-replicated rather than failed, and the reconciliation worker tops it up later.

use cairn_blockstore::PinMode;
use cairn_p2p::records::{PinIntent, PinRecord, Receipt};
use cairn_p2p::{PeerId, ReplicateId};
use cid::Cid;
use tokio::sync::mpsc;

use super::{Replicator, now_ms, random_nonce};
use crate::error::{Error, Result};
use crate::fetch::fetch_dag_paced;
use cairn_blockstore::backend::Backend;

/// How long an add waits for its write quorum before it reports the pin as it stands.
const QUORUM_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// How a replication went by the time the caller stopped waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    pub factor: u32,
    /// This node and every target whose receipt verified.
    pub holders: Vec<PeerId>,
    pub under_replicated: bool,
}

impl<B: Backend> Replicator<B> {
    /// Pins `root` here (again, if a record acted on since the caller pinned it released it)
    /// and publishes its pin record with `factor`, both under the root's lock; then asks the
    /// placement targets to hold it and waits for `quorum` receipts (0: none).
    pub async fn replicate(&self, root: Cid, factor: u32, quorum: u32) -> Result<WriteOutcome> {
        {
            let _root = self.root_locks.lock(root).await;
            self.store
                .run("pinning a replica", move |store| {
                    Ok(store.pin(&root, PinMode::Recursive)?)
                })
                .await?;
            self.publish(
                root,
                PinIntent::Pinned {
                    replication_factor: factor,
                },
            )
            .await?;
        }
        let me = self.network.local_peer_id();
        let placement = self.network.placement(root, factor as usize).await?;
        let targets: Vec<PeerId> = placement.into_iter().filter(|p| *p != me).collect();
        let (done, mut results) = mpsc::channel::<Option<PeerId>>(targets.len().max(1));
        for target in &targets {
            let (replicator, done, target) = (self.clone(), done.clone(), *target);
            self.store.jobs().spawn("asking for a replica", async move {
                let confirmed = match replicator.ask(target, root, factor, false).await {
                    Ok(()) => Some(target),
                    Err(e) => {
                        tracing::warn!(%root, peer = %target, error = %e, "replica not confirmed");
                        None
                    }
                };
                let _ = done.send(confirmed).await;
            });
        }
        drop(done);
        let mut holders = vec![me];
        let wanted = (quorum as usize).min(targets.len());
        let mut answered = 0;
        let deadline = tokio::time::Instant::now() + QUORUM_WAIT;
        while holders.len() - 1 < wanted && answered < targets.len() {
            match tokio::time::timeout_at(deadline, results.recv()).await {
                Ok(Some(confirmed)) => {
                    answered += 1;
                    holders.extend(confirmed);
                }
                Ok(None) => break,
                Err(_) => {
                    // A target that never answers must not hold the caller; its request goes on
                    // in the background and the pin is reported as it stands.
                    tracing::warn!(%root, "write quorum not reached in time");
                    break;
                }
            }
        }
        let under_replicated = holders.len() < factor as usize;
        if under_replicated {
            tracing::warn!(%root, holders = holders.len(), factor, "pin is under-replicated for now");
        }
        Ok(WriteOutcome {
            factor,
            holders,
            under_replicated,
        })
    }

    /// One target: request, verify the receipt (signed by the target, for this root and nonce),
    /// keep it.
    pub(super) async fn ask(
        &self,
        target: PeerId,
        root: Cid,
        factor: u32,
        repair: bool,
    ) -> Result<()> {
        let nonce = random_nonce()?;
        let record = self.local_bytes(root).await?.unwrap_or_default();
        let signed = self
            .network
            .replicate(target, root, factor, nonce.clone(), repair, record)
            .await?;
        let receipt = Receipt::verify(&signed)?;
        if receipt.holder != target || receipt.root != root || receipt.nonce != nonce {
            return Err(cairn_p2p::Error::Request {
                peer: target,
                reason: "answered with a receipt for another request".into(),
            }
            .into());
        }
        self.metrics.receipts.inc();
        self.store
            .run("keeping a receipt", move |store| {
                Ok(store.put_receipt(&root, &target.to_bytes(), &signed)?)
            })
            .await
    }

    /// The newer of this node's view of `root`'s record ([`Replicator::refresh`]) and the one
    /// a requester `offered`; a newer offered record is kept here and stored in the DHT. Without
    /// it, a node that was down when a root was unpinned and pinned again keeps finding its own
    /// tombstone, and refuses every request to hold the root.
    async fn take_newest(&self, root: Cid, offered: Vec<u8>) -> Result<Option<PinRecord>> {
        let current = self.refresh(root).await?;
        let Some(newer) = PinRecord::verify(&offered)
            .ok()
            .filter(|r| r.root == root && current.as_ref().is_none_or(|c| r.supersedes(c)))
        else {
            return Ok(current);
        };
        let kept = offered.clone();
        self.store
            .run("keeping a pin record", move |store| {
                Ok(store.put_pin_record(&root, &kept)?)
            })
            .await?;
        if let Err(e) = self.network.put_pin_record(offered).await {
            tracing::debug!(%root, error = %e, "an offered pin record was not stored in the DHT");
        }
        Ok(Some(newer))
    }

    /// Serves a peer's request to hold `root`: fetch (verified; at the repair rate for a
    /// repair), pin, take the newest pin record (the requester's `offered` one, when this node
    /// and the DHT know only older ones), announce, sign.
    pub async fn hold(
        &self,
        id: ReplicateId,
        root: Cid,
        nonce: Vec<u8>,
        repair: bool,
        offered: Vec<u8>,
    ) {
        let outcome = async {
            let pace = repair.then_some(&*self.repair_rate);
            fetch_dag_paced(&self.store, &self.network, root, pace).await?;
            let _root = self.root_locks.lock(root).await;
            self.store
                .run("pinning a replica", move |store| {
                    Ok(store.pin(&root, PinMode::Recursive)?)
                })
                .await?;
            // The requester published the record first; taking it now (the root is pinned, so
            // it is kept here) tells this node the pin's factor. An unpin newer than the
            // requester's record wins.
            if let Some(record) = self.take_newest(root, offered).await?
                && record.intent == PinIntent::Unpinned
            {
                self.release(root, "unpinned while being replicated")
                    .await?;
                return Err(Error::BadRequest(format!("{root} was unpinned")));
            }
            if let Err(e) = self.network.start_providing(root).await {
                tracing::warn!(%root, error = %e, "could not announce a replica");
            }
            Ok::<_, Error>(Receipt::sign(&self.identity, root, &nonce, now_ms())?)
        }
        .await;
        match &outcome {
            Ok(_) => tracing::info!(%root, repair, "holding a replica"),
            Err(e) => tracing::warn!(%root, error = %e, "could not take a replica"),
        }
        let _ = self
            .network
            .respond_replicate(id, outcome.map_err(|e| e.to_string()))
            .await;
    }
}
