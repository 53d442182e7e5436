//! Signed records: pin records (the cluster's intent for a root) and replication receipts (a
//! holder's statement that it stores a root). Both are prost messages signed by a node's identity
//! key under a domain tag. Verifying checks, in order: the message decodes, the public key
//! decodes, its peer ID is the signer the body names, and the signature is valid. Anything else is
//! refused with a reason; nothing here trusts a field before the signature over it is checked.

use cairn_proto::wire::{PinRecord as WirePinRecord, PinState, Receipt as WireReceipt, Signed};
use cid::Cid;
use libp2p_identity::{PeerId, PublicKey};
use prost::Message;

use crate::error::Error;
use crate::identity::NodeIdentity;

const PIN_RECORD_TAG: &[u8] = b"cairn/pin-record/v1\0";
const RECEIPT_TAG: &[u8] = b"cairn/receipt/v1\0";
/// Largest signed record accepted: a CID, two peer IDs, a key and a signature fit in far less.
pub const MAX_SIGNED_BYTES: usize = 2048;

/// Whether a root should be kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinIntent {
    Pinned { replication_factor: u32 },
    Unpinned,
}

/// A verified pin record: one owner's intent for a root. Verified means well-formed and signed
/// by the key it names; whether that signer may speak for the owner is
/// [`crate::authority::Authority`]'s question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinRecord {
    pub root: Cid,
    /// Whose pin this is: the slot this record writes.
    pub owner: PeerId,
    pub intent: PinIntent,
    pub version: u64,
    pub signer: PeerId,
}

/// A verified receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub root: Cid,
    pub holder: PeerId,
    pub nonce: Vec<u8>,
    pub issued_at_ms: u64,
}

fn sign(identity: &NodeIdentity, tag: &[u8], body: Vec<u8>) -> Result<Vec<u8>, Error> {
    let mut message = tag.to_vec();
    message.extend_from_slice(&body);
    let signature = identity
        .keypair()
        .sign(&message)
        .map_err(|e| Error::BadRecord(format!("signing failed: {e}")))?;
    Ok(Signed {
        body: body.into(),
        signature: signature.into(),
        public_key: identity.keypair().public().encode_protobuf().into(),
    }
    .encode_to_vec())
}

/// Checks the envelope and returns the body and the peer ID of the key that signed it.
fn open(bytes: &[u8], tag: &[u8]) -> Result<(Vec<u8>, PeerId), Error> {
    if bytes.len() > MAX_SIGNED_BYTES {
        return Err(Error::BadRecord(format!(
            "{} bytes is over the {MAX_SIGNED_BYTES}-byte limit",
            bytes.len()
        )));
    }
    let signed = Signed::decode(bytes).map_err(|e| Error::BadRecord(e.to_string()))?;
    let key = PublicKey::try_decode_protobuf(&signed.public_key)
        .map_err(|e| Error::BadRecord(format!("bad public key: {e}")))?;
    let mut message = tag.to_vec();
    message.extend_from_slice(&signed.body);
    if !key.verify(&message, &signed.signature) {
        return Err(Error::BadRecord("the signature does not verify".into()));
    }
    Ok((signed.body.to_vec(), key.to_peer_id()))
}

fn peer(bytes: &[u8], what: &str) -> Result<PeerId, Error> {
    PeerId::from_bytes(bytes).map_err(|e| Error::BadRecord(format!("{what} is not a peer ID: {e}")))
}

fn root(bytes: &[u8]) -> Result<Cid, Error> {
    Cid::try_from(bytes).map_err(|e| Error::BadRecord(format!("root is not a CID: {e}")))
}

impl PinRecord {
    /// Signs `owner`'s record for `root` as `identity` (the owner itself, or an operator).
    pub fn sign(
        identity: &NodeIdentity,
        root: Cid,
        owner: PeerId,
        intent: PinIntent,
        version: u64,
    ) -> Result<Vec<u8>, Error> {
        let (state, replication_factor) = match intent {
            PinIntent::Pinned { replication_factor } => (PinState::Pinned, replication_factor),
            PinIntent::Unpinned => (PinState::Unpinned, 0),
        };
        let body = WirePinRecord {
            root: root.to_bytes().into(),
            replication_factor,
            state: state.into(),
            version,
            signer: identity.peer_id().to_bytes().into(),
            owner: owner.to_bytes().into(),
        };
        sign(identity, PIN_RECORD_TAG, body.encode_to_vec())
    }

    /// Verifies a signed record: well-formed, signed by the signer it names.
    pub fn verify(bytes: &[u8]) -> Result<Self, Error> {
        let (body, key_owner) = open(bytes, PIN_RECORD_TAG)?;
        let record =
            WirePinRecord::decode(body.as_slice()).map_err(|e| Error::BadRecord(e.to_string()))?;
        let signer = peer(&record.signer, "signer")?;
        if signer != key_owner {
            return Err(Error::BadRecord(format!(
                "names {signer} as signer but was signed by {key_owner}"
            )));
        }
        let intent = match PinState::try_from(record.state) {
            Ok(PinState::Pinned) if record.replication_factor > 0 => PinIntent::Pinned {
                replication_factor: record.replication_factor,
            },
            Ok(PinState::Pinned) => {
                return Err(Error::BadRecord("a pin with replication factor 0".into()));
            }
            Ok(PinState::Unpinned) => PinIntent::Unpinned,
            _ => return Err(Error::BadRecord(format!("unknown state {}", record.state))),
        };
        let owner = match record.owner.is_empty() {
            true => signer,
            false => peer(&record.owner, "owner")?,
        };
        Ok(Self {
            root: root(&record.root)?,
            owner,
            intent,
            version: record.version,
            signer,
        })
    }

    /// The signer a signed record names, read without checking anything: only for counting
    /// what a store that took admitted records alone holds.
    pub fn signer_unchecked(bytes: &[u8]) -> Option<PeerId> {
        let signed = Signed::decode(bytes).ok()?;
        let record = WirePinRecord::decode(signed.body.as_ref()).ok()?;
        PeerId::from_bytes(&record.signer).ok()
    }

    /// Whether `self` should replace `held`: the same root and owner's slot, and a newer version
    /// (ties broken by signer, so every node picks the same winner).
    pub fn supersedes(&self, held: &PinRecord) -> bool {
        self.root == held.root
            && self.owner == held.owner
            && (self.version, self.signer.to_bytes()) > (held.version, held.signer.to_bytes())
    }
}

impl Receipt {
    pub fn sign(
        identity: &NodeIdentity,
        root: Cid,
        nonce: &[u8],
        issued_at_ms: u64,
    ) -> Result<Vec<u8>, Error> {
        let body = WireReceipt {
            root: root.to_bytes().into(),
            holder: identity.peer_id().to_bytes().into(),
            nonce: nonce.to_vec().into(),
            issued_at_ms,
        };
        sign(identity, RECEIPT_TAG, body.encode_to_vec())
    }

    /// Verifies a receipt signed by the holder it names.
    pub fn verify(bytes: &[u8]) -> Result<Self, Error> {
        let (body, key_owner) = open(bytes, RECEIPT_TAG)?;
        let receipt =
            WireReceipt::decode(body.as_slice()).map_err(|e| Error::BadRecord(e.to_string()))?;
        let holder = peer(&receipt.holder, "holder")?;
        if holder != key_owner {
            return Err(Error::BadRecord(format!(
                "names {holder} as holder but was signed by {key_owner}"
            )));
        }
        Ok(Self {
            root: root(&receipt.root)?,
            holder,
            nonce: receipt.nonce.to_vec(),
            issued_at_ms: receipt.issued_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use multihash_codetable::{Code, MultihashDigest};

    use super::*;

    fn cid(data: &[u8]) -> Cid {
        Cid::new_v1(0x55, Code::Sha2_256.digest(data))
    }

    #[test]
    fn a_pin_record_round_trips_and_names_its_signer() {
        let node = NodeIdentity::generate();
        let root = cid(b"root");
        let signed = PinRecord::sign(
            &node,
            root,
            node.peer_id(),
            PinIntent::Pinned {
                replication_factor: 3,
            },
            7,
        )
        .unwrap();
        let record = PinRecord::verify(&signed).unwrap();
        assert_eq!(record.root, root);
        assert_eq!(
            record.intent,
            PinIntent::Pinned {
                replication_factor: 3
            }
        );
        assert_eq!(record.version, 7);
        assert_eq!(record.signer, node.peer_id());
        assert_eq!(record.owner, node.peer_id());
    }

    #[test]
    fn tampered_forged_or_cross_kind_records_are_refused() {
        let node = NodeIdentity::generate();
        let root = cid(b"root");
        let signed = PinRecord::sign(&node, root, node.peer_id(), PinIntent::Unpinned, 1).unwrap();
        // Any flipped byte breaks it (or its encoding).
        for at in [4, signed.len() / 2, signed.len() - 1] {
            let mut bad = signed.clone();
            bad[at] ^= 1;
            assert!(PinRecord::verify(&bad).is_err(), "flip at {at} accepted");
        }
        // A body that names another signer than the key that signed it.
        let other = NodeIdentity::generate();
        let forged_body = WirePinRecord {
            root: root.to_bytes().into(),
            replication_factor: 5,
            state: PinState::Pinned.into(),
            version: 99,
            signer: other.peer_id().to_bytes().into(),
            owner: Default::default(),
        };
        let forged = sign(&node, PIN_RECORD_TAG, forged_body.encode_to_vec()).unwrap();
        let err = PinRecord::verify(&forged).unwrap_err().to_string();
        assert!(err.contains("was signed by"), "{err}");
        // A receipt is not a pin record, and the other way round.
        let receipt = Receipt::sign(&node, root, b"n", 1).unwrap();
        assert!(PinRecord::verify(&receipt).is_err());
        assert!(Receipt::verify(&signed).is_err());
        // Garbage and oversize input.
        assert!(PinRecord::verify(b"garbage").is_err());
        assert!(PinRecord::verify(&vec![0; MAX_SIGNED_BYTES + 1]).is_err());
    }

    #[test]
    fn newer_versions_supersede_and_ties_break_the_same_way_everywhere() {
        let (a, b) = (NodeIdentity::generate(), NodeIdentity::generate());
        let root = cid(b"root");
        let record = |who: &NodeIdentity, intent, version| {
            PinRecord::verify(&PinRecord::sign(who, root, a.peer_id(), intent, version).unwrap())
                .unwrap()
        };
        let pinned = record(
            &a,
            PinIntent::Pinned {
                replication_factor: 3,
            },
            1,
        );
        let unpinned = record(&a, PinIntent::Unpinned, 2);
        assert!(unpinned.supersedes(&pinned));
        assert!(!pinned.supersedes(&unpinned), "an old pin never resurrects");
        let tie_a = record(&a, PinIntent::Unpinned, 5);
        let tie_b = record(&b, PinIntent::Unpinned, 5);
        assert!(tie_a.supersedes(&tie_b) != tie_b.supersedes(&tie_a));
        let elsewhere = PinRecord::verify(
            &PinRecord::sign(&a, cid(b"other"), a.peer_id(), PinIntent::Unpinned, 9).unwrap(),
        )
        .unwrap();
        assert!(!elsewhere.supersedes(&pinned));
        let own_slot = PinRecord::verify(
            &PinRecord::sign(&b, root, b.peer_id(), PinIntent::Unpinned, u64::MAX).unwrap(),
        )
        .unwrap();
        assert!(
            !own_slot.supersedes(&pinned),
            "another owner's slot never replaces this one, whatever its version"
        );
    }

    #[test]
    fn a_receipt_names_its_holder_and_nonce() {
        let holder = NodeIdentity::generate();
        let root = cid(b"root");
        let receipt =
            Receipt::verify(&Receipt::sign(&holder, root, b"nonce-1", 42).unwrap()).unwrap();
        assert_eq!(receipt.holder, holder.peer_id());
        assert_eq!(receipt.nonce, b"nonce-1");
        assert_eq!(receipt.issued_at_ms, 42);
        assert_eq!(receipt.root, root);
    }
}
