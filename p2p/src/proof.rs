//! The proof of possession `/cairn/audit/1` asks for: SHA-256 over a domain tag, the nonce, the
//! auditor's and the prover's peer IDs and each sampled block (CID and bytes), every part length-
//! prefixed. Only a node that can read every sampled block computes it; binding both identities
//! makes an answer worthless to any other auditor or prover, so it cannot be relayed.

use cid::Cid;
use libp2p_identity::PeerId;
use sha2::{Digest, Sha256};

const PROOF_TAG: &[u8] = b"cairn/audit-proof/v1\0";

fn absorb(hasher: &mut Sha256, part: &[u8]) {
    hasher.update((part.len() as u64).to_be_bytes());
    hasher.update(part);
}

/// The proof `prover` owes `auditor` for `blocks` (in the order asked) under `nonce`.
pub fn audit_proof<'a>(
    nonce: &[u8],
    auditor: &PeerId,
    prover: &PeerId,
    blocks: impl IntoIterator<Item = (&'a Cid, &'a [u8])>,
) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(PROOF_TAG);
    absorb(&mut hasher, nonce);
    absorb(&mut hasher, &auditor.to_bytes());
    absorb(&mut hasher, &prover.to_bytes());
    for (cid, data) in blocks {
        absorb(&mut hasher, &cid.to_bytes());
        absorb(&mut hasher, data);
    }
    hasher.finalize().to_vec()
}
