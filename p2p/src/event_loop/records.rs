//! Pin claims in the DHT. Kademlia hands every record a peer offers to us first
//! (`StoreInserts::FilterBoth`); it is opened under its own root's key, every pin record in it is
//! judged by the [`crate::authority::RecordGate`] (refusals cost the sender score), and what is
//! admitted is merged into the claims held here. Lookups merge every copy the DHT returns the same
//! way, so a stale, forged or unauthorised copy at one peer changes nothing.

use cid::Cid;
use libp2p::kad::{self, QueryId, store::RecordStore};
use libp2p_identity::PeerId;

use super::{EventLoop, Replier};
use crate::authority::Refusal;
use crate::claims::PinClaims;
use crate::client::NetworkEvent;
use crate::error::Error;
use crate::scores::Offence;

/// A lookup under way: the claims merged so far, and who waits for them.
pub(super) struct PendingLookup {
    root: Cid,
    merged: PinClaims,
    reply: Replier<Option<PinClaims>>,
}

const KEY_PREFIX: &[u8] = b"/cairn/pin/";

/// Roots one signer's records may occupy a slot of in this node's DHT store (by default; see
/// `NetworkSettings::max_roots_per_signer`): self-signed records cannot fill the store.
pub const MAX_ROOTS_PER_SIGNER: usize = 10_000;

/// Roots claimed only by strangers (signers that are neither this node, nor on the bootstrap
/// list or allowlist, nor operators) that the DHT store keeps, by default (see
/// `NetworkSettings::max_stranger_roots`): half of it. Fresh keys evade the per-signer quota, so
/// the other half stays for the cluster's own claims.
pub const MAX_STRANGER_ROOTS: usize = crate::behaviour::MAX_PIN_RECORDS / 2;

/// The shortest gap between two recounts a signer at its quota can cause.
const QUOTA_RECOUNT_GAP: std::time::Duration = std::time::Duration::from_secs(1);

/// How many roots each signer's records hold a slot of in this node's DHT store, and how many
/// roots strangers alone hold claims of.
#[derive(Debug)]
pub(super) struct SignerQuota {
    cap: usize,
    roots: std::collections::HashMap<PeerId, usize>,
    stranger_cap: usize,
    stranger_roots: usize,
}

impl SignerQuota {
    pub(super) fn new(cap: usize, stranger_cap: usize) -> Self {
        Self {
            cap,
            roots: Default::default(),
            stranger_cap,
            stranger_roots: 0,
        }
    }
}

/// The DHT key of `root`'s pin claims.
pub(crate) fn pin_record_key(root: &Cid) -> kad::RecordKey {
    let mut key = KEY_PREFIX.to_vec();
    key.extend_from_slice(&root.to_bytes());
    kad::RecordKey::new(&key)
}

fn root_of(key: &kad::RecordKey) -> Option<Cid> {
    let bytes = key.as_ref().strip_prefix(KEY_PREFIX)?;
    let root = Cid::try_from(bytes).ok()?;
    (pin_record_key(&root) == *key).then_some(root)
}

impl EventLoop {
    /// Opens a record a peer offers or a lookup returns. Refused records cost `from` score; a
    /// value that is not claims at all, or under a key that is no root's, costs it more.
    fn open_claims(&mut self, record: &kad::Record, from: Option<PeerId>) -> Option<PinClaims> {
        let Some(root) = root_of(&record.key) else {
            if let Some(peer) = from {
                self.penalise(peer, Offence::Malformed);
            }
            return None;
        };
        match PinClaims::open(&record.value, root, &self.gate, from) {
            Ok(opened) => {
                if !opened.refused.is_empty()
                    && let Some(peer) = from
                {
                    self.penalise(peer, Offence::UnauthorisedRecord);
                }
                Some(opened.claims)
            }
            Err(_) => {
                if let Some(peer) = from {
                    self.penalise(peer, Offence::Malformed);
                }
                None
            }
        }
    }

    /// The claims this node holds for `root` (admitted on the way in; judged again, since the
    /// operators or the allowlist may have changed since).
    fn held_claims(&mut self, root: Cid) -> PinClaims {
        let key = pin_record_key(&root);
        let held = self.swarm.behaviour_mut().kad.store_mut().get(&key);
        held.and_then(|record| PinClaims::open(&record.value, root, &self.gate, None).ok())
            .map_or_else(|| PinClaims::new(root), |opened| opened.claims)
    }

    fn keep_claims(&mut self, claims: &PinClaims) {
        let mut record = kad::Record::new(pin_record_key(&claims.root()), claims.encode());
        record.expires = Some(std::time::Instant::now() + self.record_ttl);
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let new = store.get(&record.key).is_none();
        match store.put(record) {
            Ok(()) if new => {
                self.metrics.pin_claims_stored.inc();
            }
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "pin claims not kept (record store full?)"),
        }
    }

    /// Drops the records of `offered` that would open a slot in `held` for a signer already at
    /// its quota of roots here, and counts the slots the rest open.
    fn within_quota(&mut self, held: &PinClaims, offered: &mut PinClaims, from: Option<PeerId>) {
        // A signer at its quota may only seem so: its claims may have expired since the last
        // drain. Drain first (a scan of the store, so at most once a second).
        let at_quota = offered.records().any(|record| {
            held.slot(&record.owner).is_none()
                && self
                    .signer_quota
                    .roots
                    .get(&record.signer)
                    .is_some_and(|roots| *roots >= self.signer_quota.cap)
        });
        let now = std::time::Instant::now();
        if at_quota
            && self
                .claims_drained
                .is_none_or(|at| now.duration_since(at) >= QUOTA_RECOUNT_GAP)
        {
            self.claims_drained = Some(now);
            self.drain_expired_claims();
        }
        // A root new to the store, claimed by strangers alone, past their share: not kept.
        if held.is_empty() && !offered.records().any(|r| self.member_signed(&r.signer)) {
            if self.signer_quota.stranger_roots >= self.signer_quota.stranger_cap {
                for record in offered.records() {
                    let refusal = Refusal::StrangersShareFull(record.signer);
                    self.gate.refused(&refusal, Some(record.signer), from);
                }
                offered.retain(|_| false);
                return;
            }
            if !offered.is_empty() {
                self.signer_quota.stranger_roots += 1;
            }
        }
        let mut refused = Vec::new();
        let quota = &mut self.signer_quota;
        offered.retain(|record| {
            if held.slot(&record.owner).is_some() {
                return true;
            }
            let roots = quota.roots.entry(record.signer).or_default();
            if *roots >= quota.cap {
                refused.push(record.signer);
                return false;
            }
            *roots += 1;
            true
        });
        for signer in refused {
            self.gate
                .refused(&Refusal::SignerOverQuota(signer), Some(signer), from);
        }
    }

    /// Drops expired claims from the store and counts the signers' roots again from what is
    /// left (the quota follows the store as it drains).
    pub(super) fn drain_expired_claims(&mut self) {
        let now = std::time::Instant::now();
        let store = self.swarm.behaviour_mut().kad.store_mut();
        store.retain(|_, record| !record.is_expired(now));
        let mut roots: std::collections::HashMap<PeerId, usize> = Default::default();
        let (mut stored, mut stranger_roots) = (0i64, 0usize);
        let signers: Vec<Vec<PeerId>> = store
            .records()
            .map(|record| PinClaims::signers(&record.value))
            .collect();
        for signers in signers {
            stored += 1;
            if !signers.iter().any(|s| self.member_signed(s)) {
                stranger_roots += 1;
            }
            for signer in signers {
                *roots.entry(signer).or_default() += 1;
            }
        }
        self.signer_quota.roots = roots;
        self.signer_quota.stranger_roots = stranger_roots;
        self.metrics.pin_claims_stored.set(stored);
    }

    /// Whether `signer` is this node, a member (bootstrap list, allowlist) or an operator.
    fn member_signed(&self, signer: &PeerId) -> bool {
        signer == self.swarm.local_peer_id()
            || self.trusted.contains(signer)
            || self.gate.authority().is_operator(signer)
    }

    /// A peer offers a record (a PUT, or Kademlia's own re-replication).
    pub(super) fn on_record_offered(&mut self, source: PeerId, record: kad::Record) {
        let Some(mut offered) = self.open_claims(&record, Some(source)) else {
            return;
        };
        let mut held = self.held_claims(offered.root());
        self.within_quota(&held, &mut offered, Some(source));
        if !held.merge(offered) {
            return; // nothing new
        }
        self.keep_claims(&held);
        // The node acts on it (an unpin, a restore); when it is behind, its periodic
        // reconciliation reads the claims from the DHT instead.
        let _ = self
            .events
            .try_send(NetworkEvent::PinClaims { claims: held });
    }

    /// Merges `claims` into those held here and stores the result at the peers closest to its
    /// key.
    pub(super) fn put_pin_claims(&mut self, claims: PinClaims) -> Result<(), Error> {
        let mut held = self.held_claims(claims.root());
        held.merge(claims);
        self.keep_claims(&held);
        let record = kad::Record::new(pin_record_key(&held.root()), held.encode());
        self.swarm
            .behaviour_mut()
            .kad
            .put_record(record, kad::Quorum::One)
            .map(|_| ())
            .map_err(|e| Error::Lookup(format!("storing the pin claims failed: {e}")))
    }

    pub(super) fn get_pin_record(&mut self, root: Cid, reply: Replier<Option<PinClaims>>) {
        let Some(reply) = self
            .pending_records
            .refuse_when_full(reply, || Error::Lookup("too many lookups in flight".into()))
        else {
            return;
        };
        let id = self
            .swarm
            .behaviour_mut()
            .kad
            .get_record(pin_record_key(&root));
        self.pending_records.insert(
            id,
            PendingLookup {
                root,
                merged: PinClaims::new(root),
                reply,
            },
        );
    }

    pub(super) fn on_record_found(
        &mut self,
        id: QueryId,
        result: Result<kad::GetRecordOk, kad::GetRecordError>,
        last: bool,
    ) {
        let finished = match result {
            Ok(kad::GetRecordOk::FoundRecord(found)) => {
                if let Some(claims) = self.open_claims(&found.record, found.peer)
                    && let Some(pending) = self.pending_records.get_mut(&id)
                    && claims.root() == pending.root
                {
                    pending.merged.merge(claims);
                }
                last
            }
            Ok(kad::GetRecordOk::FinishedWithNoAdditionalRecord { .. }) => true,
            Err(e) => {
                tracing::debug!(error = %e, "pin claims lookup ended");
                true
            }
        };
        if !finished {
            return;
        }
        let Some(mut pending) = self.pending_records.remove(&id) else {
            return;
        };
        // Merge what this node holds too, and keep the result, so it answers with it from now on.
        let mut held = self.held_claims(pending.root);
        let mut found = pending.merged.clone();
        self.within_quota(&held, &mut found, None);
        let changed = held.merge(found);
        if changed {
            self.keep_claims(&held);
        }
        pending.merged.merge(held);
        let found = (!pending.merged.is_empty()).then_some(pending.merged);
        let _ = pending.reply.send(Ok(found));
    }
}
