//! Every owner's pin on one root, as one value: the DHT keeps it under the root's key and every
//! node that holds the root keeps a copy. Each owner has a slot; in a slot the newest authorised
//! record wins ([`PinRecord::supersedes`]), and slots never touch each other, so no version in
//! one owner's slot can lock or release another's pin. The root is pinned while any slot says
//! pinned, at the largest factor any of them asks for.
//!
//! Merging is a join (union of slots, newest per slot), so copies that met in any order agree.

use std::collections::BTreeMap;

use cairn_proto::wire::PinClaims as WireClaims;
use cid::Cid;
use libp2p_identity::PeerId;
use prost::Message;

use crate::authority::{RecordGate, Refusal};
use crate::records::{MAX_SIGNED_BYTES, PinIntent, PinRecord};

/// Owners one root may have. Full of pinned slots, a new owner is refused; full with unpinned
/// ones, the oldest unpinned slot makes room (forgetting a tombstone can only keep data longer).
/// Bounded so the encoded value stays under Kademlia's 65 KiB record limit.
pub const MAX_OWNERS: usize = 24;
/// The encoded value's bound: every slot at its largest.
pub const MAX_CLAIMS_BYTES: usize = MAX_OWNERS * (MAX_SIGNED_BYTES + 4) + 16;

/// One root's slots; only records the gate admitted are ever in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinClaims {
    root: Cid,
    slots: BTreeMap<Vec<u8>, (PinRecord, Vec<u8>)>,
}

/// What opening a value found: the admitted claims, and every record refused (with its signer,
/// when the record verified far enough to name one).
#[derive(Debug)]
pub struct Opened {
    pub claims: PinClaims,
    pub refused: Vec<(Refusal, Option<PeerId>)>,
}

impl PinClaims {
    pub fn new(root: Cid) -> Self {
        Self {
            root,
            slots: BTreeMap::new(),
        }
    }

    pub fn root(&self) -> Cid {
        self.root
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Opens an encoded value for `root`: every record is verified and judged by `gate` on its
    /// own; refused ones are counted there (blaming `from`) and left out. Fails only when the
    /// value itself is not a claims value.
    pub fn open(
        bytes: &[u8],
        root: Cid,
        gate: &RecordGate,
        from: Option<PeerId>,
    ) -> Result<Opened, Refusal> {
        if bytes.len() > MAX_CLAIMS_BYTES {
            let refusal = Refusal::Malformed(format!("{} bytes of pin claims", bytes.len()));
            gate.refused(&refusal, None, from);
            return Err(refusal);
        }
        let wire = WireClaims::decode(bytes).map_err(|e| {
            let refusal = Refusal::Malformed(format!("not pin claims: {e}"));
            gate.refused(&refusal, None, from);
            refusal
        })?;
        let mut opened = Opened {
            claims: Self::new(root),
            refused: Vec::new(),
        };
        for signed in wire.records.iter().take(MAX_OWNERS * 2) {
            match Self::admit(signed, root, gate) {
                Ok(record) => {
                    if let Err(refusal) = opened.claims.insert(record, signed.to_vec()) {
                        opened.refused.push((refusal, None));
                    }
                }
                Err((refusal, signer)) => opened.refused.push((refusal, signer)),
            }
        }
        for (refusal, signer) in &opened.refused {
            gate.refused(refusal, *signer, from);
        }
        Ok(opened)
    }

    /// One signed record for `root`, verified and judged.
    fn admit(
        signed: &[u8],
        root: Cid,
        gate: &RecordGate,
    ) -> Result<PinRecord, (Refusal, Option<PeerId>)> {
        let record =
            PinRecord::verify(signed).map_err(|e| (Refusal::Malformed(e.to_string()), None))?;
        if record.root != root {
            return Err((
                Refusal::Malformed(format!("a record for {} among {root}'s", record.root)),
                Some(record.signer),
            ));
        }
        gate.authority()
            .check(&record)
            .map_err(|refusal| (refusal, Some(record.signer)))?;
        Ok(record)
    }

    /// Judges one signed record (an operator's from the CLI, a node's own) and adds it; whether
    /// it changed anything.
    pub fn take(&mut self, signed: Vec<u8>, gate: &RecordGate) -> Result<bool, Refusal> {
        let record = Self::admit(&signed, self.root, gate).map_err(|(refusal, signer)| {
            gate.refused(&refusal, signer, None);
            refusal
        })?;
        self.insert(record, signed).inspect_err(|refusal| {
            gate.refused(refusal, None, None);
        })
    }

    /// Adds an admitted record to its slot when it is newer; whether it changed anything.
    fn insert(&mut self, record: PinRecord, signed: Vec<u8>) -> Result<bool, Refusal> {
        let owner = record.owner.to_bytes();
        if let Some((held, _)) = self.slots.get(&owner) {
            if !record.supersedes(held) {
                return Ok(false);
            }
        } else if self.slots.len() >= MAX_OWNERS {
            let oldest_unpinned = self
                .slots
                .iter()
                .filter(|(_, (r, _))| r.intent == PinIntent::Unpinned)
                .min_by_key(|(_, (r, _))| r.version)
                .map(|(key, _)| key.clone());
            match oldest_unpinned {
                Some(key) => {
                    self.slots.remove(&key);
                }
                None => return Err(Refusal::TooManyOwners(self.slots.len())),
            }
        }
        self.slots.insert(owner, (record, signed));
        Ok(true)
    }

    /// The signers named in an encoded value, read without checking signatures: for counting
    /// what a node's own store (which took only admitted records) holds.
    pub fn signers(bytes: &[u8]) -> Vec<PeerId> {
        let Ok(wire) = WireClaims::decode(bytes) else {
            return Vec::new();
        };
        wire.records
            .iter()
            .filter_map(|signed| PinRecord::signer_unchecked(signed))
            .collect()
    }

    /// Keeps only the slots whose record `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&PinRecord) -> bool) {
        self.slots.retain(|_, (record, _)| keep(record));
    }

    /// Takes every slot of `other` that is newer here; whether anything changed.
    pub fn merge(&mut self, other: PinClaims) -> bool {
        if other.root != self.root {
            return false;
        }
        let mut changed = false;
        for (_, (record, signed)) in other.slots {
            changed |= self.insert(record, signed).unwrap_or(false);
        }
        changed
    }

    pub fn encode(&self) -> Vec<u8> {
        WireClaims {
            records: self
                .slots
                .values()
                .map(|(_, signed)| signed.clone().into())
                .collect(),
        }
        .encode_to_vec()
    }

    /// The root's state: pinned (at the largest factor asked) while any slot is; unpinned when
    /// every slot is; None with no slot at all.
    pub fn intent(&self) -> Option<PinIntent> {
        let factor = self
            .records()
            .filter_map(|r| match r.intent {
                PinIntent::Pinned { replication_factor } => Some(replication_factor),
                PinIntent::Unpinned => None,
            })
            .max();
        match factor {
            Some(replication_factor) => Some(PinIntent::Pinned { replication_factor }),
            None if self.is_empty() => None,
            None => Some(PinIntent::Unpinned),
        }
    }

    pub fn is_unpinned(&self) -> bool {
        self.intent() == Some(PinIntent::Unpinned)
    }

    /// `owner`'s record, if it has one.
    pub fn slot(&self, owner: &PeerId) -> Option<&PinRecord> {
        self.slots.get(&owner.to_bytes()).map(|(record, _)| record)
    }

    /// Every slot's record, in owner order.
    pub fn records(&self) -> impl Iterator<Item = &PinRecord> {
        self.slots.values().map(|(record, _)| record)
    }

    /// The newest record of any slot (what `pin status` shows as "the" record).
    pub fn newest(&self) -> Option<&PinRecord> {
        self.records()
            .max_by_key(|r| (r.version, r.signer.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use multihash_codetable::{Code, MultihashDigest};
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::authority::{Authority, now_ms};
    use crate::identity::NodeIdentity;

    fn root() -> Cid {
        Cid::new_v1(0x55, Code::Sha2_256.digest(b"claimed"))
    }

    fn gate(operators: &[PeerId]) -> RecordGate {
        let authority = Authority {
            local: NodeIdentity::generate().peer_id(),
            allowlist: Default::default(),
            operators: operators.iter().copied().collect(),
            max_factor: 5,
        };
        RecordGate::new(authority, &mut Registry::default())
    }

    fn signed(by: &NodeIdentity, owner: &NodeIdentity, intent: PinIntent, version: u64) -> Vec<u8> {
        PinRecord::sign(by, root(), owner.peer_id(), intent, version).unwrap()
    }

    const PINNED: PinIntent = PinIntent::Pinned {
        replication_factor: 3,
    };

    #[test]
    fn each_owner_keeps_its_own_slot_and_the_root_stays_while_one_pins_it() {
        let gate = gate(&[]);
        let (a, b) = (NodeIdentity::generate(), NodeIdentity::generate());
        let now = now_ms();
        let mut claims = PinClaims::new(root());
        assert_eq!(claims.intent(), None);
        assert!(claims.take(signed(&a, &a, PINNED, now), &gate).unwrap());
        assert!(claims.take(signed(&b, &b, PINNED, now), &gate).unwrap());
        // B unpins its own pin; A's stands.
        assert!(
            claims
                .take(signed(&b, &b, PinIntent::Unpinned, now + 1), &gate)
                .unwrap()
        );
        assert_eq!(claims.intent(), Some(PINNED));
        // B cannot touch A's slot.
        let err = claims
            .take(signed(&b, &a, PinIntent::Unpinned, now + 2), &gate)
            .unwrap_err();
        assert_eq!(err.reason(), "not_owner");
        assert_eq!(gate.refused_count("not_owner"), 1);
        // An older record in a slot changes nothing; A's newer unpin ends the pin.
        assert!(!claims.take(signed(&a, &a, PINNED, now - 5), &gate).unwrap());
        assert!(
            claims
                .take(signed(&a, &a, PinIntent::Unpinned, now + 3), &gate)
                .unwrap()
        );
        assert!(claims.is_unpinned());
    }

    #[test]
    fn an_operator_writes_any_slot_and_copies_merge_to_the_same_value_in_any_order() {
        let operator = NodeIdentity::generate();
        let gate = gate(&[operator.peer_id()]);
        let (a, b) = (NodeIdentity::generate(), NodeIdentity::generate());
        let now = now_ms();
        let records = [
            signed(&a, &a, PINNED, now),
            signed(&b, &b, PINNED, now),
            signed(&operator, &a, PinIntent::Unpinned, now + 1),
            signed(&operator, &b, PinIntent::Unpinned, now + 1),
        ];
        let mut forward = PinClaims::new(root());
        for record in &records {
            forward.take(record.clone(), &gate).unwrap();
        }
        let mut backward = PinClaims::new(root());
        for record in records.iter().rev() {
            backward.take(record.clone(), &gate).unwrap();
        }
        assert_eq!(forward, backward);
        assert!(forward.is_unpinned());
        // Encoded and opened again, the value is the same.
        let opened = PinClaims::open(&forward.encode(), root(), &gate, None).unwrap();
        assert!(opened.refused.is_empty());
        assert_eq!(opened.claims, forward);
        let mut half = PinClaims::new(root());
        half.take(records[0].clone(), &gate).unwrap();
        assert!(half.merge(forward.clone()));
        assert_eq!(half, forward);
    }

    #[test]
    fn a_value_with_refused_records_keeps_the_rest_and_counts_the_refusals() {
        let gate = gate(&[]);
        let (a, b) = (NodeIdentity::generate(), NodeIdentity::generate());
        let now = now_ms();
        let value = WireClaims {
            records: vec![
                signed(&a, &a, PINNED, now).into(),
                signed(&b, &a, PinIntent::Unpinned, now + 9).into(),
                signed(
                    &b,
                    &b,
                    PinIntent::Pinned {
                        replication_factor: 1_000_000,
                    },
                    now,
                )
                .into(),
                b"garbage".to_vec().into(),
            ],
        }
        .encode_to_vec();
        let opened = PinClaims::open(&value, root(), &gate, Some(b.peer_id())).unwrap();
        assert_eq!(opened.claims.intent(), Some(PINNED));
        let reasons: Vec<&str> = opened.refused.iter().map(|(r, _)| r.reason()).collect();
        assert_eq!(reasons, ["not_owner", "factor_too_high", "malformed"]);
        assert_eq!(gate.refused_count("factor_too_high"), 1);
        assert!(PinClaims::open(b"\xff\xff", root(), &gate, None).is_err());
    }

    #[test]
    fn a_full_root_makes_room_only_by_forgetting_unpinned_slots() {
        let gate = gate(&[]);
        let now = now_ms();
        let mut claims = PinClaims::new(root());
        let owners: Vec<NodeIdentity> = (0..MAX_OWNERS).map(|_| NodeIdentity::generate()).collect();
        for (i, owner) in owners.iter().enumerate() {
            claims
                .take(signed(owner, owner, PINNED, now + i as u64), &gate)
                .unwrap();
        }
        let late = NodeIdentity::generate();
        let err = claims
            .take(signed(&late, &late, PINNED, now), &gate)
            .unwrap_err();
        assert_eq!(err.reason(), "too_many_owners");
        claims
            .take(
                signed(&owners[3], &owners[3], PinIntent::Unpinned, now + 100),
                &gate,
            )
            .unwrap();
        assert!(
            claims
                .take(signed(&late, &late, PINNED, now), &gate)
                .unwrap()
        );
        assert!(claims.slot(&owners[3].peer_id()).is_none());
        assert!(claims.encode().len() < 65 * 1024);
    }
}
