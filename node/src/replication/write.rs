//! The write path: after a root is stored and pinned here, publish this node's pin record and
//! ask the placement targets — the peers closest to the root in Kademlia's XOR space — to hold
//! it, collecting their signed receipts. Each target checks that an authorised pin stands on the
//! root and that the obligation fits its limits (`max_pin_bytes`, the owner's share, the fetch
//! deadline), fetches the DAG from any holder (verifying every block), pins it, announces itself
//! as a provider and signs a receipt over the request's nonce. A receipt is a claim: the target
//! counts as a holder only once it passed a first proof round right after.
//!
//! The caller waits for `write_quorum` receipts; the remaining requests finish in the background
//! and still record their receipts. With fewer peers than the factor, the pin is reported as
//! under-replicated rather than failed, and the reconciliation worker tops it up later.

use cairn_blockstore::PinMode;
use cairn_p2p::claims::PinClaims;
use cairn_p2p::records::{PinIntent, Receipt};
use cairn_p2p::{PeerId, ReplicateId};
use cid::Cid;
use tokio::sync::mpsc;

use super::audit::{SAMPLED_BLOCKS, Verdict, sample_blocks};
use super::{Replicator, now_ms, random_nonce};
use crate::error::{Error, Result};
use crate::fetch::{FetchLimits, fetch_dag_limited};
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
        let max = self.network.record_gate().authority().max_factor;
        if factor == 0 || factor > max {
            return Err(Error::BadRequest(format!(
                "a replication factor of {factor}: replication.max_factor allows 1 to {max}"
            )));
        }
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
    /// then make the target prove blocks of its new copy; only then keep the receipt.
    pub(super) async fn ask(
        &self,
        target: PeerId,
        root: Cid,
        factor: u32,
        repair: bool,
    ) -> Result<()> {
        let nonce = random_nonce()?;
        let claims = self
            .local_claims(root)
            .await?
            .map(|c| c.encode())
            .unwrap_or_default();
        let signed = self
            .network
            .replicate(target, root, factor, nonce.clone(), repair, claims)
            .await?;
        let refused = |reason: String| -> Error {
            cairn_p2p::Error::Request {
                peer: target,
                reason,
            }
            .into()
        };
        let receipt = Receipt::verify(&signed)?;
        if receipt.holder != target || receipt.root != root || receipt.nonce != nonce {
            return Err(refused(
                "answered with a receipt for another request".into(),
            ));
        }
        let sample = self
            .store
            .run("sampling blocks to audit", move |store| {
                sample_blocks(store, &root, SAMPLED_BLOCKS)
            })
            .await?;
        match self.challenge(target, root, Some(&sample)).await {
            Verdict::Holds => {}
            verdict => {
                self.metrics.refused("receipt_without_proof");
                return Err(refused(format!(
                    "signed a receipt but failed its first proof round: {verdict:?}"
                )));
            }
        }
        self.metrics.receipts.inc();
        self.store
            .run("keeping a receipt", move |store| {
                Ok(store.put_receipt(&root, &target.to_bytes(), &signed)?)
            })
            .await
    }

    /// Serves a peer's request to hold `root`: an authorised pin must stand on it (the claims
    /// this node and the DHT know, merged with the requester's), the DAG must fit
    /// `max_pin_bytes` and what is left of its owner's share here, and the fetch (verified; at
    /// the repair rate for a repair) must finish within `replica_fetch_timeout`. Then pin,
    /// announce, sign.
    pub async fn hold(
        &self,
        id: ReplicateId,
        requester: PeerId,
        root: Cid,
        nonce: Vec<u8>,
        repair: bool,
        offered: Vec<u8>,
    ) {
        let outcome = self
            .take_replica(requester, root, &nonce, repair, offered)
            .await;
        match &outcome {
            Ok(_) => tracing::info!(%root, %requester, repair, "holding a replica"),
            Err(e) => tracing::warn!(%root, %requester, error = %e, "could not take a replica"),
        }
        let _ = self
            .network
            .respond_replicate(id, outcome.map_err(|e| e.to_string()))
            .await;
    }

    async fn take_replica(
        &self,
        requester: PeerId,
        root: Cid,
        nonce: &[u8],
        repair: bool,
        offered: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let claims = self.take_offered(root, &offered, requester).await?;
        let Some(owner) = claims
            .as_ref()
            .and_then(|c| self.charged_owner(c, requester))
        else {
            self.metrics.refused("not_pinned");
            if let Some(claims) = &claims {
                let _root = self.root_locks.lock(root).await;
                self.act_on(claims).await?;
            }
            return Err(Error::BadRequest(format!(
                "no authorised pin stands on {root}; nothing to hold"
            )));
        };
        let used = self
            .store
            .run("reading an owner's share", move |store| {
                Ok(store.charged_to(&owner.to_bytes())?)
            })
            .await?;
        let left = self.policy.max_share_per_peer.saturating_sub(used);
        if left == 0 {
            self.metrics.refused("share_used");
            return Err(Error::TooLarge {
                what: format!("{owner}'s share of this node's storage"),
                limit: self.policy.max_share_per_peer,
            });
        }
        let limit = self.policy.max_pin_bytes.min(left);
        let limits = FetchLimits {
            pace: repair.then_some(&*self.repair_rate),
            max_bytes: Some(limit),
            timeout: Some(self.policy.replica_fetch_timeout),
        };
        let fetched = match fetch_dag_limited(&self.store, &self.network, root, limits).await {
            Ok(report) => report,
            Err(e) => {
                let reason = match &e {
                    Error::TooLarge { .. } if limit < self.policy.max_pin_bytes => "share_used",
                    Error::TooLarge { .. } => "too_large",
                    _ => "fetch_failed",
                };
                self.metrics.refused(reason);
                return Err(e);
            }
        };
        let _root = self.root_locks.lock(root).await;
        // An unpin may have landed while the DAG was on its way.
        let local = self.local_claims(root).await?;
        if local.as_ref().is_some_and(PinClaims::is_unpinned) {
            return Err(Error::BadRequest(format!("{root} was unpinned")));
        }
        let bytes = fetched.bytes;
        self.store
            .run("pinning a replica", move |store| {
                store.pin_written(&root, &fetched.written)?;
                store.add_charge(&root, &owner.to_bytes(), bytes)?;
                Ok(())
            })
            .await?;
        // Merged with what arrived meanwhile, never in place of it.
        if let Some(claims) = claims {
            let mut kept = local.unwrap_or_else(|| PinClaims::new(root));
            kept.merge(claims);
            self.keep_claims(&kept).await?;
        }
        if let Err(e) = self.network.start_providing(root).await {
            tracing::warn!(%root, error = %e, "could not announce a replica");
        }
        Ok(Receipt::sign(&self.identity, root, nonce, now_ms())?)
    }

    /// Whom a replica of a pin counts against: the requester when it owns a pinned slot, else the
    /// pinned owner with the newest record (a coordinator repairing another owner's pin). None
    /// when no slot pins the root.
    fn charged_owner(&self, claims: &PinClaims, requester: PeerId) -> Option<PeerId> {
        let pinned = || {
            claims
                .records()
                .filter(|r| matches!(r.intent, PinIntent::Pinned { .. }))
        };
        if pinned().any(|r| r.owner == requester) {
            return Some(requester);
        }
        pinned().max_by_key(|r| r.version).map(|r| r.owner)
    }
}
