//! Who holds a root right now. Candidates are the provider records, the receipts this node kept
//! and this node itself; each is asked over `/cairn/audit/1` — with a proof of possession when
//! this node holds a copy to check the proof against, a plain "do you hold it" otherwise. Stale
//! provider records (a released copy) answer "not holding" and drop out. Where this node can
//! check proofs, a holder counts as live only while its last passed proof round is younger than
//! `audit_interval`: a receipt, or a "yes" between rounds, is a claim, not a copy.

use cairn_blockstore::PinMode;
use cairn_p2p::PeerId;
use cairn_p2p::claims::PinClaims;
use cairn_p2p::records::PinIntent;
use cid::Cid;
use futures_util::future::join_all;

use super::Replicator;
use super::audit::{SAMPLED_BLOCKS, Sample, Verdict, sample_blocks};
use crate::error::Result;
use cairn_blockstore::backend::Backend;

/// Candidates asked per survey at most: far above any replication factor, far below a flood.
const MAX_CANDIDATES: usize = 128;

/// One holder's state in a survey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HolderState {
    Live,
    /// Says it holds the root, but has not passed a proof round within `audit_interval` (a
    /// new replica before its first round, or one whose proofs lapsed).
    Unproven,
    Unreachable(String),
    Released,
    FailedAudit(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderView {
    pub peer: PeerId,
    pub state: HolderState,
    /// Proved possession of a random block in this survey.
    pub audited: bool,
}

/// A root's replication as one node sees it.
#[derive(Clone, Debug)]
pub struct Survey {
    pub root: Cid,
    pub claims: Option<PinClaims>,
    pub factor: u32,
    pub holders: Vec<HolderView>,
}

/// What `status` and the gauges keep of a survey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinHealth {
    pub factor: u32,
    pub live: u32,
}

impl PinHealth {
    pub fn under_replicated(&self) -> bool {
        self.live < self.factor
    }

    /// Node losses the pin survives: live replicas − 1 (−1: no live copy).
    pub fn failure_budget(&self) -> i64 {
        i64::from(self.live) - 1
    }
}

impl Survey {
    pub fn unpinned(&self) -> bool {
        self.claims.as_ref().is_some_and(PinClaims::is_unpinned)
    }

    pub fn live(&self) -> Vec<PeerId> {
        self.holders
            .iter()
            .filter(|h| h.state == HolderState::Live)
            .map(|h| h.peer)
            .collect()
    }

    pub fn health(&self) -> PinHealth {
        PinHealth {
            factor: self.factor,
            live: u32::try_from(self.live().len()).unwrap_or(u32::MAX),
        }
    }

    /// "ok", "under_replicated", "lost" (no live copy) or "unpinned".
    pub fn state(&self) -> &'static str {
        let health = self.health();
        if self.unpinned() {
            "unpinned"
        } else if health.live == 0 {
            "lost"
        } else if health.under_replicated() {
            "under_replicated"
        } else {
            "ok"
        }
    }
}

impl<B: Backend> Replicator<B> {
    /// Surveys `root`'s holders; with `prove`, every holder must prove a random block (when this
    /// node holds a copy to check against).
    pub async fn survey(&self, root: Cid, prove: bool) -> Result<Survey> {
        // The DHT is asked on proof rounds (and when nothing is kept here); between them the
        // local claims serve, and unpins arrive pushed by the peer that made them.
        let local = if prove {
            None
        } else {
            self.local_claims(root).await?
        };
        let claims = match local {
            Some(claims) => Some(claims),
            None => self.refresh_quietly(root).await,
        };
        let factor = match claims.as_ref().and_then(PinClaims::intent) {
            Some(PinIntent::Pinned { replication_factor }) => replication_factor,
            _ => self.policy.factor,
        };
        let me = self.network.local_peer_id();
        let held_here = self
            .store
            .run("reading a pin", move |store| Ok(store.pin_mode(&root)?))
            .await?
            == Some(PinMode::Recursive);
        let sample: Option<Sample> = if held_here && prove {
            match self
                .store
                .run("sampling blocks to audit", move |store| {
                    sample_blocks(store, &root, SAMPLED_BLOCKS)
                })
                .await
            {
                Ok(sample) => Some(sample),
                Err(e) => {
                    // This node audits its own copy too: a failed one counts like any other.
                    tracing::warn!(%root, error = %e, "this node's own copy failed its audit");
                    self.metrics.audit("fail");
                    self.heal(root);
                    None
                }
            }
        } else {
            None
        };
        let mut candidates = self.candidates(root).await;
        candidates.retain(|p| *p != me);
        candidates.truncate(MAX_CANDIDATES);
        let verdicts = join_all(
            candidates
                .iter()
                .map(|peer| self.challenge(*peer, root, sample.as_ref())),
        )
        .await;
        let mut holders: Vec<HolderView> = candidates
            .into_iter()
            .zip(verdicts)
            .map(|(peer, verdict)| HolderView {
                peer,
                audited: verdict == Verdict::Holds && sample.is_some(),
                state: match verdict {
                    // Without a copy here nothing can be proved: a plain "yes" is all there is.
                    Verdict::Holds if !held_here => HolderState::Live,
                    // Proved in this very survey, however long the rest of it took.
                    Verdict::Holds if sample.is_some() => HolderState::Live,
                    Verdict::Holds if self.proven_recently(root, peer) => HolderState::Live,
                    Verdict::Holds => HolderState::Unproven,
                    Verdict::Released => HolderState::Released,
                    Verdict::Failed(why) => HolderState::FailedAudit(why),
                    Verdict::Unreachable(why) => HolderState::Unreachable(why),
                },
            })
            .collect();
        if held_here {
            let proved = sample.is_some();
            holders.push(HolderView {
                peer: me,
                state: if proved || !prove {
                    HolderState::Live
                } else {
                    HolderState::FailedAudit("own copy damaged; re-fetching".into())
                },
                audited: proved,
            });
        }
        // Released candidates (stale provider records, old receipts) are not holders.
        let released: Vec<Vec<u8>> = holders
            .iter()
            .filter(|h| h.state == HolderState::Released)
            .map(|h| h.peer.to_bytes())
            .collect();
        if !released.is_empty() {
            self.store
                .run("dropping a released holder's receipt", move |store| {
                    for holder in &released {
                        store.drop_receipt(&root, holder)?;
                    }
                    Ok(())
                })
                .await?;
        }
        holders.retain(|h| h.state != HolderState::Released);
        holders.sort_by_key(|h| h.peer.to_bytes());
        Ok(Survey {
            root,
            claims,
            factor,
            holders,
        })
    }

    /// Provider records and kept receipts: everyone who may hold `root`.
    async fn candidates(&self, root: Cid) -> Vec<PeerId> {
        let mut peers = match self.network.providers(root).await {
            Ok(peers) => peers,
            Err(e) => {
                tracing::debug!(%root, error = %e, "provider lookup failed");
                Vec::new()
            }
        };
        let receipts = self
            .store
            .run("reading receipts", move |store| Ok(store.receipts(&root)?))
            .await
            .unwrap_or_default();
        peers.extend(
            receipts
                .into_iter()
                .filter_map(|(holder, _)| PeerId::from_bytes(&holder).ok()),
        );
        peers.sort_by_key(|p| p.to_bytes());
        peers.dedup();
        peers
    }
}

#[cfg(test)]
mod tests {
    use cairn_blockstore::{Block, HashAlg, RAW};

    use super::*;
    use crate::replication::testing::lone_node;

    fn view(state: HolderState) -> HolderView {
        HolderView {
            peer: PeerId::random(),
            state,
            audited: false,
        }
    }

    #[test]
    fn the_state_follows_live_copies_and_the_record() {
        let survey = |holders: Vec<HolderView>| Survey {
            root: Block::build(RAW, HashAlg::Sha2_256, b"s".to_vec()).cid,
            claims: None,
            factor: 2,
            holders,
        };
        let ok = survey(vec![view(HolderState::Live), view(HolderState::Live)]);
        assert_eq!((ok.state(), ok.health().failure_budget()), ("ok", 1));
        let short = survey(vec![
            view(HolderState::Live),
            view(HolderState::Unreachable("gone".into())),
        ]);
        assert_eq!(short.state(), "under_replicated");
        assert_eq!(short.live().len(), 1);
        assert_eq!(short.health().failure_budget(), 0);
        let lost = survey(vec![view(HolderState::FailedAudit("liar".into()))]);
        assert_eq!((lost.state(), lost.health().failure_budget()), ("lost", -1));
    }

    #[tokio::test]
    async fn a_lone_holder_proves_its_own_copy_on_the_memory_store() {
        let node = lone_node();
        let root = node.hold(b"held here");

        let survey = node.replicator.survey(root, true).await.unwrap();
        let me = node.identity.peer_id();
        assert_eq!(survey.factor, 3, "no record: the configured factor");
        assert_eq!(
            survey.holders,
            vec![HolderView {
                peer: me,
                state: HolderState::Live,
                audited: true
            }]
        );
        assert_eq!(survey.state(), "under_replicated");

        // Lost behind the node's back: its own audit fails, and the pin counts as lost.
        node.store.store().delete(&root).unwrap();
        let survey = node.replicator.survey(root, true).await.unwrap();
        assert!(matches!(
            survey.holders.as_slice(),
            [HolderView {
                state: HolderState::FailedAudit(_),
                audited: false,
                ..
            }]
        ));
        assert_eq!(survey.state(), "lost");
    }
}
