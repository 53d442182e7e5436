//! Who may say what about a pin (DESIGN.md §6, "Authority"). Admission is not authority: a
//! record counts only when its signer is admitted, speaks for the slot it writes (the owner
//! itself, or an operator key the cluster trusts), asks for a factor within
//! `replication.max_factor`, and does not date itself into the future. The same [`RecordGate`]
//! checks every path a record takes — a Kademlia PUT, a lookup's answers, the record in a
//! replicate request, the node's own store at restart, an operator's record from the CLI — and
//! counts each refusal by reason, logs its signer once, and tells the caller whom to blame.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p_identity::PeerId;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::records::{PinIntent, PinRecord};

/// How far ahead of this node's clock a record's version (wall-clock milliseconds) may be: more
/// is a version chosen to lock the slot, not clock skew.
pub const MAX_VERSION_AHEAD: Duration = Duration::from_secs(3600);
/// Signers whose refusals were logged; past this the log stays quiet (the metric still counts).
const MAX_LOGGED_SIGNERS: usize = 1024;

/// Why a record was refused; [`Refusal::reason`] is the metric's label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("signed by {0}, which is neither admitted nor an operator")]
    NotAdmitted(PeerId),
    #[error("signed by {signer}, which may not change {owner}'s pin")]
    NotOwner { signer: PeerId, owner: PeerId },
    #[error("asks for {factor} copies; replication.max_factor is {max}")]
    FactorTooHigh { factor: u32, max: u32 },
    #[error("version {0} is more than an hour ahead of this node's clock")]
    FromTheFuture(u64),
    #[error("the root already has {0} owners")]
    TooManyOwners(usize),
    #[error("{0} already signed records for as many roots as one signer may have kept here")]
    SignerOverQuota(PeerId),
    #[error(
        "{0} is no member of the cluster, and strangers' claims already fill their share of the store"
    )]
    StrangersShareFull(PeerId),
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::NotAdmitted(_) => "not_admitted",
            Self::NotOwner { .. } => "not_owner",
            Self::FactorTooHigh { .. } => "factor_too_high",
            Self::FromTheFuture(_) => "version_from_the_future",
            Self::TooManyOwners(_) => "too_many_owners",
            Self::SignerOverQuota(_) => "signer_over_quota",
            Self::StrangersShareFull(_) => "strangers_share_full",
        }
    }
}

/// The rule itself, from configuration.
#[derive(Clone, Debug)]
pub struct Authority {
    /// This node: its own records are always admitted.
    pub local: PeerId,
    /// Admitted signers; empty means every peer that passed the swarm key.
    pub allowlist: HashSet<PeerId>,
    /// Keys that may change any pin (`replication.operators`).
    pub operators: HashSet<PeerId>,
    pub max_factor: u32,
}

impl Authority {
    pub fn is_operator(&self, peer: &PeerId) -> bool {
        self.operators.contains(peer)
    }

    /// Whether `record` may be taken, judged against this node's clock.
    pub fn check(&self, record: &PinRecord) -> Result<(), Refusal> {
        self.check_at(record, now_ms())
    }

    fn check_at(&self, record: &PinRecord, now_ms: u64) -> Result<(), Refusal> {
        let signer = record.signer;
        let operator = self.is_operator(&signer);
        let admitted = operator
            || signer == self.local
            || self.allowlist.is_empty()
            || self.allowlist.contains(&signer);
        if !admitted {
            return Err(Refusal::NotAdmitted(signer));
        }
        if signer != record.owner && !operator {
            return Err(Refusal::NotOwner {
                signer,
                owner: record.owner,
            });
        }
        if let PinIntent::Pinned { replication_factor } = record.intent
            && replication_factor > self.max_factor
        {
            return Err(Refusal::FactorTooHigh {
                factor: replication_factor,
                max: self.max_factor,
            });
        }
        let ahead = u64::try_from(MAX_VERSION_AHEAD.as_millis()).unwrap_or(u64::MAX);
        if record.version > now_ms.saturating_add(ahead) {
            return Err(Refusal::FromTheFuture(record.version));
        }
        Ok(())
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// [`Authority`] with its bookkeeping: refusals counted by reason
/// (`cairn_p2p_pin_records_refused_total`) and logged once per signer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RecordGate {
    authority: Arc<Authority>,
    refused: Family<Vec<(String, String)>, Counter>,
    logged: Arc<Mutex<HashSet<PeerId>>>,
}

impl RecordGate {
    pub fn new(authority: Authority, registry: &mut Registry) -> Self {
        let refused = Family::default();
        registry.sub_registry_with_prefix("p2p").register(
            "pin_records_refused",
            "Pin records refused, by reason (not_admitted, not_owner, factor_too_high, \
             version_from_the_future, too_many_owners, signer_over_quota, strangers_share_full, \
             malformed)",
            refused.clone(),
        );
        Self {
            authority: Arc::new(authority),
            refused,
            logged: Arc::default(),
        }
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Counts and logs a refusal. `from` is the peer that sent the record (None: this node's own
    /// store or a client).
    pub fn refused(&self, refusal: &Refusal, signer: Option<PeerId>, from: Option<PeerId>) {
        self.refused
            .get_or_create(&vec![("reason".into(), refusal.reason().into())])
            .inc();
        let first = match signer {
            Some(signer) => {
                let mut logged = self
                    .logged
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                logged.len() < MAX_LOGGED_SIGNERS && logged.insert(signer)
            }
            None => true,
        };
        if first {
            tracing::warn!(
                signer = ?signer,
                from = ?from,
                reason = refusal.reason(),
                "refused a pin record: {refusal} (further refusals of this signer are only counted)"
            );
        }
    }

    /// The refusals counted so far for `reason` (for tests and status).
    pub fn refused_count(&self, reason: &str) -> u64 {
        self.refused
            .get_or_create(&vec![("reason".into(), reason.into())])
            .get()
    }
}

#[cfg(test)]
mod tests {
    use cid::Cid;
    use multihash_codetable::{Code, MultihashDigest};

    use super::*;
    use crate::identity::NodeIdentity;

    fn record(signer: &NodeIdentity, owner: PeerId, intent: PinIntent, version: u64) -> PinRecord {
        let root = Cid::new_v1(0x55, Code::Sha2_256.digest(b"root"));
        PinRecord::verify(&PinRecord::sign(signer, root, owner, intent, version).unwrap()).unwrap()
    }

    #[test]
    fn only_the_owner_or_an_operator_writes_a_slot_and_factors_and_versions_are_bounded() {
        let (owner, member, operator, stranger) = (
            NodeIdentity::generate(),
            NodeIdentity::generate(),
            NodeIdentity::generate(),
            NodeIdentity::generate(),
        );
        let authority = Authority {
            local: NodeIdentity::generate().peer_id(),
            allowlist: [owner.peer_id(), member.peer_id()].into(),
            operators: [operator.peer_id()].into(),
            max_factor: 5,
        };
        let now = now_ms();
        let pinned = PinIntent::Pinned {
            replication_factor: 3,
        };
        let own = record(&owner, owner.peer_id(), PinIntent::Unpinned, now);
        assert_eq!(authority.check(&own), Ok(()));
        let by_operator = record(&operator, owner.peer_id(), PinIntent::Unpinned, now);
        assert_eq!(authority.check(&by_operator), Ok(()));

        let by_member = record(&member, owner.peer_id(), PinIntent::Unpinned, now);
        assert_eq!(
            authority.check(&by_member).unwrap_err().reason(),
            "not_owner"
        );
        let by_stranger = record(&stranger, stranger.peer_id(), pinned, now);
        assert_eq!(
            authority.check(&by_stranger).unwrap_err().reason(),
            "not_admitted"
        );
        let huge = record(
            &member,
            member.peer_id(),
            PinIntent::Pinned {
                replication_factor: 1_000_000,
            },
            now,
        );
        assert_eq!(
            authority.check(&huge).unwrap_err().reason(),
            "factor_too_high"
        );
        let locking = record(&owner, owner.peer_id(), PinIntent::Unpinned, u64::MAX);
        assert_eq!(
            authority.check(&locking).unwrap_err().reason(),
            "version_from_the_future"
        );
        // An open network admits every signer, but still only into its own slot.
        let open = Authority {
            allowlist: HashSet::new(),
            ..authority
        };
        assert_eq!(open.check(&by_stranger), Ok(()));
        assert_eq!(open.check(&by_member).unwrap_err().reason(), "not_owner");
    }
}
