//! The pinset: every owner's signed pin record per root ([`PinClaims`]), in the DHT and kept
//! locally by every node that holds the root (and by the node that unpinned it, as tombstones).
//! This node signs only its own slot; an operator's records arrive signed from the CLI. Every
//! record taken in — from the DHT, a peer's push, a replicate request, this node's own store at
//! restart, a client — passes the same [`cairn_p2p::authority::RecordGate`].
//!
//! An unpin never drops blocks at once: holders keep the DAG for `replication.unpin_grace`, and a
//! newer pinned record within it (`cairn pin restore`) pins it again everywhere.

use cairn_blockstore::PinMode;
use cairn_p2p::claims::PinClaims;
use cairn_p2p::records::{PinIntent, PinRecord};
use cairn_p2p::{Offence, PeerId};
use cid::Cid;

use super::{Replicator, now_ms};
use crate::error::{Error, Result};
use crate::fetch::{FetchLimits, fetch_dag_limited};
use cairn_blockstore::backend::Backend;

/// Puts every pin claim kept in `store` into the DHT again, tombstones included, each record
/// judged by the authority rule on the way (the operators or the allowlist may have changed);
/// peers merge only what is newer per owner.
pub(crate) async fn republish_claims<B: Backend>(
    store: &crate::store::NodeStore<B>,
    network: &cairn_p2p::Client,
) -> Result<()> {
    let records = store
        .run("reading pin records", |store| Ok(store.pin_records()?))
        .await?;
    for (root, bytes) in records {
        let Ok(opened) = PinClaims::open(&bytes, root, network.record_gate(), None) else {
            continue;
        };
        if opened.claims.is_empty() {
            continue;
        }
        if let Err(e) = network.put_pin_claims(opened.claims).await {
            tracing::debug!(%root, error = %e, "pin claims not republished");
        }
    }
    Ok(())
}

/// What `pin rm` left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnpinOutcome {
    /// No pin stands on the root: its holders keep the blocks for the unpin grace.
    Unpinned,
    /// This node's pin is gone, but other owners still pin the root.
    StillPinnedByOthers,
}

impl UnpinOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unpinned => "unpinned",
            Self::StillPinnedByOthers => "pinned",
        }
    }
}

impl<B: Backend> Replicator<B> {
    /// The claims kept here for `root`, judged again (operators or the allowlist may have changed
    /// since they were kept); a value that no longer opens is ignored: the DHT's copy replaces it.
    pub(crate) async fn local_claims(&self, root: Cid) -> Result<Option<PinClaims>> {
        let bytes = self
            .store
            .run("reading pin claims", move |store| {
                Ok(store.pin_record(&root)?)
            })
            .await?;
        let gate = self.network.record_gate();
        Ok(bytes
            .and_then(|b| PinClaims::open(&b, root, gate, None).ok())
            .map(|opened| opened.claims)
            .filter(|claims| !claims.is_empty()))
    }

    pub(super) async fn keep_claims(&self, claims: &PinClaims) -> Result<()> {
        let (root, bytes) = (claims.root(), claims.encode());
        self.store
            .run("keeping pin claims", move |store| {
                Ok(store.put_pin_record(&root, &bytes)?)
            })
            .await
    }

    /// Keeps `claims` here and stores them in the DHT (a failed DHT store is retried by the
    /// reconciliation worker's refresh).
    async fn spread(&self, claims: &PinClaims) -> Result<()> {
        self.keep_claims(claims).await?;
        if let Err(e) = self.network.put_pin_claims(claims.clone()).await {
            tracing::warn!(root = %claims.root(), error = %e, "pin claims not stored in the DHT yet");
        }
        Ok(())
    }

    /// Signs a new record for this node's own slot of `root`, newer than any it knows, and
    /// spreads the claims. The caller holds `root`'s lock.
    pub(crate) async fn publish(&self, root: Cid, intent: PinIntent) -> Result<PinClaims> {
        let mut claims = self
            .refresh_quietly(root)
            .await
            .unwrap_or_else(|| PinClaims::new(root));
        let me = self.identity.peer_id();
        let version = claims
            .slot(&me)
            .map_or(0, |held| held.version.saturating_add(1))
            .max(now_ms());
        let signed = PinRecord::sign(&self.identity, root, me, intent, version)?;
        claims
            .take(signed, self.network.record_gate())
            .map_err(|refusal| Error::BadRequest(format!("{root}: {refusal}")))?;
        self.spread(&claims).await?;
        Ok(claims)
    }

    /// Takes records signed elsewhere (an operator's, from the CLI) after the same checks as any
    /// other, and spreads the claims. `wanted` says what each must say about the root.
    async fn take_signed(
        &self,
        root: Cid,
        records: Vec<Vec<u8>>,
        wanted: fn(&PinIntent) -> bool,
    ) -> Result<PinClaims> {
        let mut claims = self
            .refresh_quietly(root)
            .await
            .unwrap_or_else(|| PinClaims::new(root));
        for signed in records {
            let record =
                PinRecord::verify(&signed).map_err(|e| Error::BadRequest(e.to_string()))?;
            if record.root != root || !wanted(&record.intent) {
                return Err(Error::BadRequest(format!(
                    "a signed record for {} ({:?}) does not fit this call on {root}",
                    record.root, record.intent
                )));
            }
            claims
                .take(signed, self.network.record_gate())
                .map_err(|refusal| Error::NotAuthorised(format!("{root}: {refusal}")))?;
        }
        self.spread(&claims).await?;
        Ok(claims)
    }

    /// Every admitted record for `root` this node or the DHT holds, merged. What the DHT lacks is
    /// put back (healing claims lost with restarted nodes); what this node lacks is kept here when
    /// it holds the root or kept claims before.
    pub(crate) async fn refresh(&self, root: Cid) -> Result<Option<PinClaims>> {
        let local = self.local_claims(root).await?;
        let remote = self.network.get_pin_claims(root).await?;
        let mut merged = local.clone().unwrap_or_else(|| PinClaims::new(root));
        let news_here = remote.clone().is_some_and(|r| merged.merge(r));
        let dht_behind = match (&local, remote) {
            (Some(local), Some(mut remote)) => remote.merge(local.clone()),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if news_here && (local.is_some() || self.keeps_anything(root).await?) {
            self.keep_claims(&merged).await?;
        }
        if dht_behind {
            let _ = self.network.put_pin_claims(merged.clone()).await;
        }
        Ok((!merged.is_empty()).then_some(merged))
    }

    /// Whether this node pins `root` or keeps it in its unpin grace.
    async fn keeps_anything(&self, root: Cid) -> Result<bool> {
        self.store
            .run("reading a pin", move |store| {
                Ok(store.pin_mode(&root)?.is_some() || store.grace_until(&root)?.is_some())
            })
            .await
    }

    /// [`Replicator::refresh`] for callers that go on without it when the lookup fails.
    pub(super) async fn refresh_quietly(&self, root: Cid) -> Option<PinClaims> {
        match self.refresh(root).await {
            Ok(claims) => claims,
            Err(e) => {
                tracing::debug!(%root, error = %e, "pin claims lookup failed");
                self.local_claims(root).await.ok().flatten()
            }
        }
    }

    /// Merges claims a peer offered (a replicate request's) into this node's view; refused
    /// records cost `from` score. Returns the merged view.
    pub(super) async fn take_offered(
        &self,
        root: Cid,
        offered: &[u8],
        from: PeerId,
    ) -> Result<Option<PinClaims>> {
        let mut current = self
            .refresh(root)
            .await?
            .unwrap_or_else(|| PinClaims::new(root));
        if offered.is_empty() {
            return Ok((!current.is_empty()).then_some(current));
        }
        match PinClaims::open(offered, root, self.network.record_gate(), Some(from)) {
            Ok(opened) => {
                if !opened.refused.is_empty() {
                    let _ = self
                        .network
                        .penalise(from, Offence::UnauthorisedRecord)
                        .await;
                }
                if current.merge(opened.claims) {
                    self.spread(&current).await?;
                }
            }
            Err(_) => {
                let _ = self.network.penalise(from, Offence::Malformed).await;
            }
        }
        Ok((!current.is_empty()).then_some(current))
    }

    /// Claims a peer stored here changed (already admitted by the swarm task): keep them when
    /// this node holds the root, and act on them at once (an unpin, a restore).
    pub(crate) async fn adopt(&self, claims: PinClaims) -> Result<()> {
        let root = claims.root();
        let _root = self.root_locks.lock(root).await;
        let local = self.local_claims(root).await?;
        if local.is_none() && !self.keeps_anything(root).await? {
            return Ok(()); // not ours to keep: the DHT has it
        }
        let mut merged = local.unwrap_or_else(|| PinClaims::new(root));
        if merged.merge(claims) {
            self.keep_claims(&merged).await?;
        }
        self.act_on(&merged).await
    }

    /// Brings this node's copy in line with the claims: an unpinned root goes into its grace, a
    /// root pinned again within its grace is pinned again here.
    pub(crate) async fn act_on(&self, claims: &PinClaims) -> Result<()> {
        let root = claims.root();
        let (mode, grace) = self
            .store
            .run("reading a pin", move |store| {
                Ok((store.pin_mode(&root)?, store.grace_until(&root)?))
            })
            .await?;
        match claims.intent() {
            Some(PinIntent::Unpinned) if mode == Some(PinMode::Recursive) => {
                self.retire(root, "unpinned by the cluster").await
            }
            Some(PinIntent::Pinned { .. }) if grace.is_some() => self.take_back(root).await,
            _ => Ok(()),
        }
    }

    /// An unpinned root: the pin becomes a grace entry (the blocks stay until it ends), the
    /// provider announcement stops, and the reconciliation worker forgets it.
    pub(crate) async fn retire(&self, root: Cid, why: &str) -> Result<()> {
        let until = now_ms()
            .saturating_add(u64::try_from(self.policy.unpin_grace.as_millis()).unwrap_or(u64::MAX));
        let retired = self
            .store
            .run("unpinning", move |store| {
                let retired = store.unpin_with_grace(&root, until)?;
                store.drop_charge(&root)?;
                Ok(retired)
            })
            .await?;
        self.forget(root).await;
        if retired {
            self.metrics.released.inc();
            tracing::info!(%root, why, until_ms = until, "unpinned; blocks kept for the unpin grace");
        }
        Ok(())
    }

    /// A root pinned again within its grace: pinned here again (fetching what went missing,
    /// verified), announced, and reconciled from the next round on.
    async fn take_back(&self, root: Cid) -> Result<()> {
        let restored = self
            .store
            .run("restoring a pin", move |store| Ok(store.restore(&root)))
            .await?;
        match restored {
            Ok(_) => {}
            Err(cairn_blockstore::Error::Incomplete { .. }) => {
                let limits = FetchLimits {
                    pace: Some(&*self.repair_rate),
                    ..Default::default()
                };
                fetch_dag_limited(&self.store, &self.network, root, limits).await?;
                self.store
                    .run("restoring a pin", move |store| Ok(store.restore(&root)?))
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
        if let Err(e) = self.network.start_providing(root).await {
            tracing::warn!(%root, error = %e, "could not announce a restored copy");
        }
        tracing::info!(%root, "pin restored within its unpin grace");
        Ok(())
    }

    /// Drops this node's copy of `root` at once (a surplus copy: the pin stands on R closer
    /// holders): the blocks become collectable, the announcement stops.
    pub(crate) async fn release(&self, root: Cid, why: &str) -> Result<()> {
        let unpinned = self
            .store
            .run("unpinning", move |store| {
                let unpinned = store.unpin(&root)?;
                store.drop_charge(&root)?;
                Ok(unpinned)
            })
            .await?;
        self.forget(root).await;
        if unpinned {
            self.metrics.released.inc();
            tracing::info!(%root, why, "released this node's copy");
        }
        Ok(())
    }

    async fn forget(&self, root: Cid) {
        let _ = self.network.stop_providing(root).await;
        self.record_health(root, None);
        super::lock(&self.proven).retain(|(r, _), _| *r != root);
    }

    /// `pin rm`. A direct pin is local only. A recursive pin: with `operator_records` (unpins
    /// signed by an operator key), those are taken; without, this node unpins its own slot, and
    /// refuses when the pin is another owner's. Once no owner pins the root, every holder keeps
    /// its blocks for the unpin grace.
    pub async fn unpin(&self, root: Cid, operator_records: Vec<Vec<u8>>) -> Result<UnpinOutcome> {
        let _root = self.root_locks.lock(root).await;
        let held = self
            .store
            .run("reading a pin", move |store| Ok(store.pin_mode(&root)?))
            .await?;
        if held == Some(PinMode::Direct) && operator_records.is_empty() {
            self.store
                .run("unpinning", move |store| Ok(store.unpin(&root)?))
                .await?;
            return Ok(UnpinOutcome::Unpinned);
        }
        let claims = if operator_records.is_empty() {
            let claims = self.refresh_quietly(root).await;
            let me = self.identity.peer_id();
            let mine = claims.as_ref().and_then(|c| c.slot(&me));
            let owners: Vec<String> = claims
                .iter()
                .flat_map(PinClaims::records)
                .filter(|r| matches!(r.intent, PinIntent::Pinned { .. }))
                .map(|r| r.owner.to_string())
                .collect();
            match mine.map(|r| r.intent) {
                Some(PinIntent::Pinned { .. }) => {}
                _ if !owners.is_empty() => {
                    return Err(Error::NotAuthorised(format!(
                        "{root} is pinned by {}, not by this node; only an owner or an operator \
                         key may unpin it (cairn pin rm --operator-key FILE)",
                        owners.join(", ")
                    )));
                }
                // Pinned here with no record anywhere (the DHT and this node lost it): this
                // node's own unpin is the first word.
                _ if held == Some(PinMode::Recursive) => {}
                _ => return Err(Error::NotPinned(root)),
            }
            self.publish(root, PinIntent::Unpinned).await?
        } else {
            self.take_signed(root, operator_records, |intent| {
                *intent == PinIntent::Unpinned
            })
            .await?
        };
        self.act_on(&claims).await?;
        Ok(if claims.is_unpinned() {
            UnpinOutcome::Unpinned
        } else {
            UnpinOutcome::StillPinnedByOthers
        })
    }

    /// `pin restore`: pins `root` again within its unpin grace, in this node's own slot (at
    /// `factor`) or with pinned records an operator key signed. Every holder that still keeps
    /// the blocks pins them again when the claims reach it.
    pub async fn restore(
        &self,
        root: Cid,
        factor: u32,
        operator_records: Vec<Vec<u8>>,
    ) -> Result<u32> {
        let _root = self.root_locks.lock(root).await;
        let claims = self.refresh_quietly(root).await;
        let grace = self
            .store
            .run(
                "reading a grace",
                move |store| Ok(store.grace_until(&root)?),
            )
            .await?;
        let unpinned = claims.as_ref().is_some_and(PinClaims::is_unpinned);
        if !unpinned && grace.is_none() {
            return Err(Error::NotInGrace(root));
        }
        let claims = if operator_records.is_empty() {
            let me = self.identity.peer_id();
            if claims.as_ref().and_then(|c| c.slot(&me)).is_none() {
                return Err(Error::NotAuthorised(format!(
                    "{root} was never pinned by this node; only an owner or an operator key may \
                     restore it (cairn pin restore --operator-key FILE)"
                )));
            }
            self.publish(
                root,
                PinIntent::Pinned {
                    replication_factor: factor,
                },
            )
            .await?
        } else {
            self.take_signed(root, operator_records, |intent| {
                matches!(intent, PinIntent::Pinned { .. })
            })
            .await?
        };
        self.act_on(&claims).await?;
        match claims.intent() {
            Some(PinIntent::Pinned { replication_factor }) => Ok(replication_factor),
            _ => Err(Error::NotInGrace(root)),
        }
    }
}
