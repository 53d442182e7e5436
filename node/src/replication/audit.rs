//! Proof of possession over `/cairn/audit/1`. The auditor samples a few random blocks of the
//! pin from its own copy and draws a fresh nonce; the holder answers with
//! SHA-256(tag ‖ nonce ‖ auditor ‖ prover ‖ each block), which it can only compute while it holds
//! every sampled block. Binding both identities makes the answer worthless to anyone else: a
//! holder that keeps nothing cannot pass its challenge on to an honest holder and replay the
//! answer (that holder would bind it to the wrong auditor and prover). A proof must arrive within
//! `replication.audit_deadline`, so fetching the blocks on demand has to beat it. What an audit
//! cannot catch — a holder that fetches from another holder faster than the deadline — is in the
//! README. A holder that finds its own copy damaged while answering fetches it again.

use std::num::NonZeroU32;

use bytes::Bytes;
use cairn_blockstore::backend::Backend;
use cairn_blockstore::{PinMode, Store};
use cairn_p2p::{AUDIT_BYTES_PER_BLOCK, AuditAnswer, AuditId, Offence, PeerId};
use cid::Cid;

use super::{Replicator, lock, random_nonce};
use crate::error::Result;
use crate::pace::kib_per_second;

/// Audits a peer refuses in a row ("slow down") before it counts as unreachable this round.
const REFUSED_AUDIT_TRIES: usize = 3;
/// The longest a peer's "slow down" holds up one audit.
const MAX_REFUSED_AUDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Blocks sampled per proof round.
pub(crate) const SAMPLED_BLOCKS: usize = 4;

/// What an audit found out about one holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It holds the root (and proved the blocks, when some were asked for).
    Holds,
    /// It says it does not hold the root (released, unpinned, or never had it).
    Released,
    /// It claims the root but could not prove the blocks in time: lost, lying, or relaying.
    Failed(String),
    /// No answer, or only refusals.
    Unreachable(String),
}

/// The blocks of one proof round, with their bytes (from the auditor's verified copy).
pub(crate) type Sample = Vec<(Cid, Bytes)>;

/// The proof `prover` owes `auditor` (see [`cairn_p2p::audit_proof`]).
pub(crate) use cairn_p2p::audit_proof as proof;

/// This node's (`prover`'s) answer to `auditor`'s audit of `root` (runs on a blocking thread:
/// it reads blocks), and whether a block turned out rotten. Only a recursive pin counts as
/// holding: a root in its unpin grace is not.
pub(crate) fn answer<B: Backend>(
    store: &Store<B>,
    root: &Cid,
    blocks: &[Cid],
    nonce: &[u8],
    auditor: &PeerId,
    prover: &PeerId,
) -> (AuditAnswer, bool) {
    let holding = matches!(store.pin_mode(root), Ok(Some(PinMode::Recursive)));
    let mut answer = AuditAnswer {
        holding,
        ..Default::default()
    };
    if !holding || blocks.is_empty() {
        return (answer, false);
    }
    let mut read = Vec::with_capacity(blocks.len());
    for block in blocks {
        // The verifying read: a rotten block is quarantined, not proved.
        match store.get(block) {
            Ok(data) => read.push((*block, data)),
            Err(e) => {
                answer.error = format!("cannot prove {block}: {e}");
                // Only rot is this node's damage to heal here: a block it lacks may be one the
                // asker made up (a lost one shows in this node's own proof round).
                let rotten = matches!(e, cairn_blockstore::Error::HashMismatch { .. });
                return (answer, rotten);
            }
        }
    }
    answer.proof = proof(
        nonce,
        auditor,
        prover,
        read.iter().map(|(cid, data)| (cid, data.as_ref())),
    );
    (answer, false)
}

/// Up to `count` distinct random blocks of the DAG under `root`, with their bytes (verified),
/// from this node's copy: one pass over the DAG's names (only its DAG-PB nodes are read, not the
/// whole file for each target), reservoir sampling, then the verified reads of those chosen.
pub(crate) fn sample_blocks<B: Backend>(
    store: &Store<B>,
    root: &Cid,
    count: usize,
) -> Result<Sample> {
    let mut chosen: Vec<Cid> = Vec::with_capacity(count);
    let mut seen: u64 = 0;
    let mut random = [0u8; 8];
    cairn_blockstore::walk_names(store, root, |cid| {
        seen += 1;
        if chosen.len() < count {
            chosen.push(*cid);
            return;
        }
        if getrandom::fill(&mut random).is_ok() {
            let slot = u64::from_le_bytes(random) % seen;
            if let Some(entry) = usize::try_from(slot).ok().and_then(|i| chosen.get_mut(i)) {
                *entry = *cid;
            }
        }
    })?;
    chosen
        .into_iter()
        .map(|cid| Ok((cid, store.get(&cid)?)))
        .collect()
}

impl<B: Backend> Replicator<B> {
    /// Answers a peer's audit; when this node's own copy turns out damaged, fetches it again.
    pub(crate) async fn serve_audit(
        &self,
        id: AuditId,
        auditor: PeerId,
        root: Cid,
        blocks: Vec<Cid>,
        nonce: Vec<u8>,
    ) {
        let prover = self.identity.peer_id();
        let answered = self
            .store
            .run("answering an audit", move |store| {
                Ok(answer(store, &root, &blocks, &nonce, &auditor, &prover))
            })
            .await;
        let (answer, rotten) = answered.unwrap_or_else(|e| {
            let failed = AuditAnswer {
                error: e.to_string(),
                ..Default::default()
            };
            (failed, false)
        });
        if rotten {
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
            let limits = crate::fetch::FetchLimits {
                pace: Some(&*replicator.repair_rate),
                ..Default::default()
            };
            match crate::fetch::fetch_dag_limited(
                &replicator.store,
                &replicator.network,
                root,
                limits,
            )
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
    /// Returns the answer and how long the answering attempt took.
    async fn ask_audit(
        &self,
        peer: PeerId,
        root: Cid,
        blocks: &[Cid],
        nonce: &[u8],
    ) -> std::result::Result<(AuditAnswer, std::time::Duration), String> {
        // What the peer charges this audit (see `AUDIT_BYTES_PER_BLOCK`), capped at one burst.
        let kib = (blocks.len() * AUDIT_BYTES_PER_BLOCK).div_ceil(1024);
        let kib = NonZeroU32::new(u32::try_from(kib).unwrap_or(u32::MAX))
            .map(|kib| kib.min(kib_per_second(self.policy.audit_bytes_per_peer_per_second)));
        for _ in 0..REFUSED_AUDIT_TRIES {
            self.audit_pace.until_key_ready(&peer).await;
            if let Some(kib) = kib {
                // Within the burst by construction, so never refused.
                let _ = self.audit_bytes.until_key_n_ready(&peer, kib).await;
            }
            let sent = tokio::time::Instant::now();
            let answer = self
                .network
                .audit(peer, root, blocks.to_vec(), nonce.to_vec())
                .await
                .map_err(|e| e.to_string())?;
            match answer.retry_after {
                None => return Ok((answer, sent.elapsed())),
                Some(wait) => tokio::time::sleep(wait.min(MAX_REFUSED_AUDIT_WAIT)).await,
            }
        }
        Err(format!(
            "refused {REFUSED_AUDIT_TRIES} audits in a row (its rate limit or queue)"
        ))
    }

    /// Audits `peer`'s copy of `root`: with `sample` (blocks of this node's copy), a proof of
    /// possession within the deadline; without, a plain "do you hold it". A wrong proof costs the
    /// peer score; a passed one is remembered (see [`Replicator::proven_recently`]).
    pub(crate) async fn challenge(
        &self,
        peer: PeerId,
        root: Cid,
        sample: Option<&Sample>,
    ) -> Verdict {
        let nonce = match random_nonce() {
            Ok(nonce) => nonce,
            Err(e) => return Verdict::Unreachable(e.to_string()),
        };
        let blocks: Vec<Cid> = sample
            .map(|s| s.iter().map(|(cid, _)| *cid).collect())
            .unwrap_or_default();
        let me = self.identity.peer_id();
        let verdict = match self.ask_audit(peer, root, &blocks, &nonce).await {
            Err(why) => Verdict::Unreachable(why),
            Ok((answer, _)) if !answer.holding => Verdict::Released,
            Ok((answer, took)) => match sample {
                None => Verdict::Holds,
                Some(_) if !answer.error.is_empty() => Verdict::Failed(answer.error),
                Some(sample) => {
                    let expected = proof(
                        &nonce,
                        &me,
                        &peer,
                        sample.iter().map(|(cid, data)| (cid, data.as_ref())),
                    );
                    if answer.proof != expected {
                        Verdict::Failed(format!("wrong proof for {} blocks", sample.len()))
                    } else if took > self.policy.audit_deadline {
                        Verdict::Failed(format!(
                            "proof came after {} ms; the deadline is {} ms",
                            took.as_millis(),
                            self.policy.audit_deadline.as_millis()
                        ))
                    } else {
                        lock(&self.proven).insert((root, peer), tokio::time::Instant::now());
                        Verdict::Holds
                    }
                }
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
            lock(&self.proven).remove(&(root, peer));
            let _ = self.network.penalise(peer, Offence::FailedAudit).await;
        }
        verdict
    }

    /// Whether `peer` passed a proof round for `root` recently enough to count as live between
    /// rounds: within the last `audit_interval`, plus one more for the round under way (a survey
    /// that waits on unreachable holders can take a while, and a proof round comes at least every
    /// `audit_interval`).
    pub(crate) fn proven_recently(&self, root: Cid, peer: PeerId) -> bool {
        lock(&self.proven)
            .get(&(root, peer))
            .is_some_and(|at| at.elapsed() < 2 * self.policy.audit_interval)
    }
}

#[cfg(test)]
mod tests {
    use cairn_blockstore::{Block, HashAlg, MemBlockstore, RAW, StoreOptions};

    use super::*;

    #[test]
    fn a_proof_needs_every_block_the_nonce_and_both_parties() {
        let store = MemBlockstore::new(StoreOptions::default());
        let block = Block::build(RAW, HashAlg::Sha2_256, b"held".to_vec());
        store.put(&block).unwrap();
        store.pin(&block.cid, PinMode::Recursive).unwrap();
        let (auditor, prover, relay) = (PeerId::random(), PeerId::random(), PeerId::random());

        let sample = sample_blocks(&store, &block.cid, SAMPLED_BLOCKS).unwrap();
        assert_eq!(sample.len(), 1, "a one-block DAG samples its one block");
        let cids: Vec<Cid> = sample.iter().map(|(c, _)| *c).collect();
        let expected = |nonce: &[u8], auditor: &PeerId, prover: &PeerId| {
            proof(
                nonce,
                auditor,
                prover,
                sample.iter().map(|(c, d)| (c, d.as_ref())),
            )
        };
        let (answered, _) = answer(&store, &block.cid, &cids, b"nonce-1", &auditor, &prover);
        assert!(answered.holding);
        assert_eq!(answered.proof, expected(b"nonce-1", &auditor, &prover));
        assert_ne!(answered.proof, expected(b"nonce-2", &auditor, &prover));
        // What an honest holder answers a relaying peer is bound to that peer, not to us.
        let (relayed, _) = answer(&store, &block.cid, &cids, b"nonce-1", &relay, &prover);
        assert_ne!(relayed.proof, expected(b"nonce-1", &auditor, &prover));
        assert_ne!(relayed.proof, expected(b"nonce-1", &auditor, &relay));

        // Lost behind the node's back: still pinned, but nothing to prove with.
        store.delete(&block.cid).unwrap();
        let (lost, rotten) = answer(&store, &block.cid, &cids, b"nonce-3", &auditor, &prover);
        assert!(lost.holding && lost.proof.is_empty() && !lost.error.is_empty());
        assert!(
            !rotten,
            "a missing block is no reason to heal on an asker's word"
        );

        // Unpinned: not holding, whatever the blocks.
        store.unpin(&block.cid).unwrap();
        assert!(
            !answer(&store, &block.cid, &[], b"n", &auditor, &prover)
                .0
                .holding
        );
    }
}
