//! Proof of possession over `/cairn/audit/1`. The auditor picks a random block of the pin from
//! its own copy and a fresh nonce; the holder answers with SHA-256(nonce || block), which it can
//! only compute while it holds the block, and which an old answer cannot replay. A holder that
//! finds its own copy damaged while answering fetches it again.

use bytes::Bytes;
use cairn_blockstore::backend::Backend;
use cairn_blockstore::{PinMode, Store};
use cairn_p2p::{AuditAnswer, AuditId, Offence, PeerId};
use cid::Cid;
use sha2::{Digest, Sha256};

use super::{Replicator, lock, random_nonce};
use crate::error::Result;

/// Audits a peer refuses in a row ("slow down") before it counts as unreachable this round.
const REFUSED_AUDIT_TRIES: usize = 3;
/// The longest a peer's "slow down" holds up one audit.
const MAX_REFUSED_AUDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What an audit found out about one holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It holds the root (and proved the block, when one was asked for).
    Holds,
    /// It says it does not hold the root (released, unpinned, or never had it).
    Released,
    /// It claims the root but could not prove the block: lost or lying.
    Failed(String),
    /// No answer, or only refusals.
    Unreachable(String),
}

/// SHA-256(nonce || data).
pub(crate) fn proof(nonce: &[u8], data: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(nonce);
    hasher.update(data);
    hasher.finalize().to_vec()
}

/// This node's answer to an audit of `root` (runs on a blocking thread: it reads a block).
pub(crate) fn answer<B: Backend>(
    store: &Store<B>,
    root: &Cid,
    block: Option<&Cid>,
    nonce: &[u8],
) -> AuditAnswer {
    let holding = matches!(store.pin_mode(root), Ok(Some(PinMode::Recursive)));
    let mut answer = AuditAnswer {
        holding,
        ..Default::default()
    };
    if let (true, Some(block)) = (holding, block) {
        // The verifying read: a rotten block is quarantined, not proved.
        match store.get(block) {
            Ok(data) => answer.proof = proof(nonce, &data),
            Err(e) => answer.error = format!("cannot prove {block}: {e}"),
        }
    }
    answer
}

/// A uniformly random block of the DAG under `root`, with its bytes (verified), from this node's
/// copy: one pass over the DAG, reservoir sampling.
pub(crate) fn sample_block<B: Backend>(store: &Store<B>, root: &Cid) -> Result<(Cid, Bytes)> {
    let mut chosen = *root;
    let mut seen: u64 = 0;
    let mut random = [0u8; 8];
    store.walk(root, |cid| {
        seen += 1;
        let draw = getrandom::fill(&mut random).map(|()| u64::from_le_bytes(random) % seen);
        if draw == Ok(0) {
            chosen = *cid;
        }
    })?;
    let data = store.get(&chosen)?;
    Ok((chosen, data))
}

impl<B: Backend> Replicator<B> {
    /// Answers a peer's audit; when this node's own copy turns out damaged, fetches it again.
    pub(crate) async fn serve_audit(
        &self,
        id: AuditId,
        root: Cid,
        block: Option<Cid>,
        nonce: Vec<u8>,
    ) {
        let answered = self
            .store
            .run("answering an audit", move |store| {
                Ok(answer(store, &root, block.as_ref(), &nonce))
            })
            .await;
        let answer = answered.unwrap_or_else(|e| AuditAnswer {
            error: e.to_string(),
            ..Default::default()
        });
        if answer.holding && !answer.error.is_empty() {
            tracing::warn!(%root, error = %answer.error, "an audit found this node's copy damaged");
            self.heal(root);
        }
        let _ = self.network.respond_audit(id, answer).await;
    }

    /// Re-fetches `root` in the background (verified, at the repair rate), once at a time.
    pub(crate) fn heal(&self, root: Cid) {
        if !lock(&self.healing).insert(root) {
            return;
        }
        let replicator = self.clone();
        self.store.jobs().spawn("healing a copy", async move {
            let pace = Some(&*replicator.repair_rate);
            match crate::fetch::fetch_dag_paced(&replicator.store, &replicator.network, root, pace)
                .await
            {
                Ok(report) => {
                    tracing::info!(%root, blocks = report.blocks, "own copy repaired from peers")
                }
                Err(e) => tracing::warn!(%root, error = %e, "own copy could not be repaired yet"),
            }
            lock(&replicator.healing).remove(&root);
        });
    }

    /// Sends an audit, waiting out the peer's "slow down" (its wait, capped) a few times: a
    /// refused audit says nothing about the peer's copy, so it must never read as "released".
    async fn ask_audit(
        &self,
        peer: PeerId,
        root: Cid,
        block: Option<Cid>,
        nonce: &[u8],
    ) -> std::result::Result<AuditAnswer, String> {
        for _ in 0..REFUSED_AUDIT_TRIES {
            self.audit_pace.until_key_ready(&peer).await;
            let answer = self
                .network
                .audit(peer, root, block, nonce.to_vec())
                .await
                .map_err(|e| e.to_string())?;
            match answer.retry_after {
                None => return Ok(answer),
                Some(wait) => tokio::time::sleep(wait.min(MAX_REFUSED_AUDIT_WAIT)).await,
            }
        }
        Err(format!(
            "refused {REFUSED_AUDIT_TRIES} audits in a row (its rate limit or queue)"
        ))
    }

    /// Audits `peer`'s copy of `root`: with `sample` (a block of this node's copy), a proof of
    /// possession; without, a plain "do you hold it". A failed proof costs the peer score.
    pub(crate) async fn challenge(
        &self,
        peer: PeerId,
        root: Cid,
        sample: Option<&(Cid, Bytes)>,
    ) -> Verdict {
        let nonce = match random_nonce() {
            Ok(nonce) => nonce,
            Err(e) => return Verdict::Unreachable(e.to_string()),
        };
        let block = sample.map(|(cid, _)| *cid);
        let verdict = match self.ask_audit(peer, root, block, &nonce).await {
            Err(why) => Verdict::Unreachable(why),
            Ok(answer) if !answer.holding => Verdict::Released,
            Ok(answer) => match sample {
                None => Verdict::Holds,
                Some((_, data)) if answer.proof == proof(&nonce, data) => Verdict::Holds,
                Some((cid, _)) if answer.error.is_empty() => {
                    Verdict::Failed(format!("wrong proof for block {cid}"))
                }
                Some(_) => Verdict::Failed(answer.error),
            },
        };
        let result = match &verdict {
            Verdict::Holds if sample.is_some() => "pass",
            Verdict::Holds => "holding",
            Verdict::Released => "released",
            Verdict::Failed(_) => "fail",
            Verdict::Unreachable(_) => "unreachable",
        };
        self.metrics.audit(result);
        if let Verdict::Failed(why) = &verdict {
            tracing::warn!(%root, %peer, why, "a holder failed its audit");
            let _ = self.network.penalise(peer, Offence::FailedAudit).await;
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use cairn_blockstore::{Block, HashAlg, MemBlockstore, RAW, StoreOptions};

    use super::*;

    #[test]
    fn a_proof_needs_the_block_and_the_nonce() {
        let store = MemBlockstore::new(StoreOptions::default());
        let block = Block::build(RAW, HashAlg::Sha2_256, b"held".to_vec());
        store.put(&block).unwrap();
        store.pin(&block.cid, PinMode::Recursive).unwrap();

        let (sampled, data) = sample_block(&store, &block.cid).unwrap();
        assert_eq!(sampled, block.cid);
        let answered = answer(&store, &block.cid, Some(&sampled), b"nonce-1");
        assert!(answered.holding);
        assert_eq!(answered.proof, proof(b"nonce-1", &data));
        assert_ne!(
            answered.proof,
            proof(b"nonce-2", &data),
            "a new nonce, a new proof"
        );

        // Lost behind the node's back: still pinned, but nothing to prove with.
        store.delete(&block.cid).unwrap();
        let lost = answer(&store, &block.cid, Some(&sampled), b"nonce-3");
        assert!(lost.holding && lost.proof.is_empty() && !lost.error.is_empty());

        // Unpinned: not holding, whatever the blocks.
        store.unpin(&block.cid).unwrap();
        assert!(!answer(&store, &block.cid, None, b"n").holding);
    }
}
