//! The reconciliation worker, on every node, for every recursive pin it holds. Each round it
//! surveys the pin (proofs of possession every `audit_interval`, plain liveness checks between)
//! and then:
//!
//! - acts on an unpin (no owner pins the root any more) by moving its copy into the unpin grace;
//! - when it is the live holder closest to the root (the coordinator) and fewer than R live
//!   copies exist — for longer than `repair_grace`, or at once after a failed audit — asks the
//!   next placement targets to hold a copy, fetched at `repair_bytes_per_second`;
//! - when more than R live copies exist and it is not among the R closest live holders, releases
//!   its own copy once that has lasted `repair_grace`.
//!
//! Both decisions follow one deterministic order (XOR distance to the root), so holders acting at
//! once ask the same targets (a target that already holds answers at once) and the R closest
//! live holders never release: the count never drops below R through release. Live means proved
//! within `audit_interval`, so a surplus copy goes only when R other holders each passed a proof
//! round: holders that merely claim the placement cannot talk a real copy away.
//!
//! Once per `audit_interval` it also looks up the claims of every root in its unpin grace here:
//! a root pinned again (`pin restore`) is pinned again on this node too. Every quarter of the
//! DHT's record TTL it puts every claim it keeps into the DHT again, so the cluster's claims
//! never expire there while what a flood put in drains.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_blockstore::PinMode;
use cairn_p2p::PeerId;
use cid::Cid;
use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Replicator;
use super::survey::HolderState;
use crate::error::Result;
use cairn_blockstore::backend::Backend;

/// Pins reconciled at once.
const CONCURRENT_PINS: usize = 8;
/// Rounds never come faster than this, whatever the configured intervals.
const MIN_ROUND: Duration = Duration::from_millis(200);
/// ...nor slower than this, so a lost holder is noticed well within the grace.
const MAX_ROUND: Duration = Duration::from_secs(60);

/// What the worker remembers about one pin between rounds.
#[derive(Debug, Default)]
struct Tracked {
    last_proof: Option<Instant>,
    /// Since when fewer than R live copies were seen.
    short_since: Option<Instant>,
    /// Since when this node was a surplus holder.
    surplus_since: Option<Instant>,
    repairing: Arc<AtomicBool>,
}

pub(crate) async fn run<B: Backend>(replicator: Replicator<B>, stop: CancellationToken) {
    let policy = *replicator.policy();
    let round = policy
        .audit_interval
        .min(policy.repair_grace / 2)
        .clamp(MIN_ROUND, MAX_ROUND);
    let mut tracked: HashMap<Cid, Tracked> = HashMap::new();
    let mut graces_checked: Option<Instant> = None;
    // The node republished everything as it started.
    let mut republished = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(round) => {}
        }
        if republished.elapsed() >= policy.republish_interval {
            republished = Instant::now();
            let republishing = super::republish_claims(&replicator.store, &replicator.network);
            tokio::select! {
                () = stop.cancelled() => break,
                done = republishing => {
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "pin claims not republished");
                    }
                }
            }
        }
        if graces_checked.is_none_or(|at| at.elapsed() >= policy.audit_interval) {
            graces_checked = Some(Instant::now());
            tokio::select! {
                () = stop.cancelled() => break,
                () = replicator.check_graces() => {}
            }
        }
        let pins = match replicator
            .store
            .run("listing pins", |store| Ok(store.pins()?))
            .await
        {
            Ok(pins) => pins,
            Err(e) => {
                tracing::warn!(error = %e, "reconciliation cannot list pins");
                continue;
            }
        };
        let roots: HashSet<Cid> = pins
            .into_iter()
            .filter(|(_, mode)| *mode == PinMode::Recursive)
            .map(|(root, _)| root)
            .collect();
        tracked.retain(|root, _| roots.contains(root));
        let work: Vec<(Cid, Tracked)> = roots
            .into_iter()
            .map(|root| (root, tracked.remove(&root).unwrap_or_default()))
            .collect();
        let rounds = futures_util::stream::iter(work)
            .map(|(root, mut state)| {
                let replicator = replicator.clone();
                async move {
                    if let Err(e) = replicator.reconcile(root, &mut state).await {
                        tracing::debug!(%root, error = %e, "reconciliation round failed");
                    }
                    (root, state)
                }
            })
            .buffer_unordered(CONCURRENT_PINS);
        let done: Vec<(Cid, Tracked)> = tokio::select! {
            () = stop.cancelled() => break,
            done = rounds.collect() => done,
        };
        tracked.extend(done);
    }
}

impl<B: Backend> Replicator<B> {
    async fn reconcile(&self, root: Cid, state: &mut Tracked) -> Result<()> {
        let now = Instant::now();
        let prove = state
            .last_proof
            .is_none_or(|at| now.duration_since(at) >= self.policy.audit_interval);
        let survey = self.survey(root, prove).await?;
        if prove {
            state.last_proof = Some(now);
        }
        if survey.unpinned() {
            return self.retire(root, "unpinned by the cluster").await;
        }
        let me = self.network.local_peer_id();
        let live = survey.live();
        self.record_health(root, Some(survey.health()));
        let failed: Vec<PeerId> = survey
            .holders
            .iter()
            .filter(|h| matches!(h.state, HolderState::FailedAudit(_)))
            .map(|h| h.peer)
            .collect();
        let factor = survey.factor as usize;
        if live.len() >= factor {
            state.short_since = None;
        } else {
            state.short_since.get_or_insert(now);
        }
        let grace_over = state
            .short_since
            .is_some_and(|since| now.duration_since(since) >= self.policy.repair_grace);
        let plan = plan(&me, &root, factor, &live, &failed, grace_over);
        if plan.repair > 0 {
            self.start_repair(root, survey.factor, live, failed, plan.repair, state);
        }
        if !plan.surplus {
            state.surplus_since = None;
        } else if now.duration_since(*state.surplus_since.get_or_insert(now))
            >= self.policy.repair_grace
        {
            self.release(root, "surplus copy: R closer holders are live")
                .await?;
        }
        Ok(())
    }

    /// Roots in their unpin grace here whose claims say pinned again are pinned again.
    async fn check_graces(&self) {
        let graced = match self.store.run("listing graces", |s| Ok(s.graced()?)).await {
            Ok(graced) => graced,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list roots in their unpin grace");
                return;
            }
        };
        let now = super::now_ms();
        for (root, until) in graced.into_iter().filter(|(_, until)| *until > now) {
            let Some(claims) = self.refresh_quietly(root).await else {
                continue;
            };
            if claims.is_unpinned() {
                continue;
            }
            let _root = self.root_locks.lock(root).await;
            if let Err(e) = self.act_on(&claims).await {
                tracing::warn!(%root, until_ms = until, error = %e, "could not restore a pin");
            }
        }
    }

    /// Places `missing` copies on the closest connected peers that hold none, in the
    /// background; one repair per pin at a time.
    fn start_repair(
        &self,
        root: Cid,
        factor: u32,
        live: Vec<PeerId>,
        failed: Vec<PeerId>,
        missing: usize,
        state: &Tracked,
    ) {
        if state.repairing.swap(true, Ordering::SeqCst) {
            return;
        }
        let flag = Arc::clone(&state.repairing);
        let replicator = self.clone();
        self.store.jobs().spawn("repairing a pin", async move {
            let everyone = replicator
                .network
                .placement(root, usize::MAX)
                .await
                .unwrap_or_default();
            let targets = repair_targets(&everyone, &live, &failed, missing);
            if targets.is_empty() {
                tracing::debug!(%root, live = live.len(), factor, "under-replicated; no peer to place a copy on");
            }
            let asks = targets.iter().map(|target| {
                let replicator = replicator.clone();
                async move {
                    tracing::info!(%root, peer = %target, "repair: placing a copy");
                    let placed = replicator.ask(*target, root, factor, true).await;
                    replicator.metrics.repair(placed.is_ok());
                    if let Err(e) = placed {
                        tracing::warn!(%root, peer = %target, error = %e, "repair: copy not placed");
                    }
                }
            });
            futures_util::future::join_all(asks).await;
            flag.store(false, Ordering::SeqCst);
        });
    }
}

/// What one holder does about one pin this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Copies to place (this holder coordinates and the pin is short).
    pub repair: usize,
    /// This holder's copy is beyond the R closest live ones.
    pub surplus: bool,
}

/// The decision rule, apart from timing. `live` are the live holders (this one included when it
/// holds a live copy); `failed` failed their audit this round; `repair_due` says the pin has been
/// short for the grace period. The coordinator is the live holder closest to the root; only it
/// repairs, and at once when an audit failed. A holder is surplus only while R live holders are
/// closer to the root than it is, so the R closest never release.
pub(crate) fn plan(
    me: &PeerId,
    root: &Cid,
    factor: usize,
    live: &[PeerId],
    failed: &[PeerId],
    repair_due: bool,
) -> Plan {
    let coordinator = cairn_p2p::closest(root, live.iter().copied(), 1).first() == Some(me);
    let short = factor.saturating_sub(live.len());
    let repair = if coordinator && short > 0 && (repair_due || !failed.is_empty()) {
        short
    } else {
        0
    };
    let keeps = cairn_p2p::closest(root, live.iter().copied(), factor);
    let surplus = live.len() > factor && live.contains(me) && !keeps.contains(me);
    Plan { repair, surplus }
}

/// The first `missing` peers of `by_distance` (closest first) that hold no live copy and did not
/// just fail an audit.
pub(crate) fn repair_targets(
    by_distance: &[PeerId],
    live: &[PeerId],
    failed: &[PeerId],
    missing: usize,
) -> Vec<PeerId> {
    by_distance
        .iter()
        .filter(|p| !live.contains(p) && !failed.contains(p))
        .take(missing)
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::LazyLock;

    use cairn_blockstore::{Block, HashAlg, RAW};
    use cairn_p2p::NodeIdentity;
    use proptest::prelude::*;

    use super::*;

    static POOL: LazyLock<Vec<PeerId>> = LazyLock::new(|| {
        (0..12)
            .map(|_| NodeIdentity::generate().peer_id())
            .collect()
    });

    /// One round in which every live holder plans on the same snapshot and all act at once (the
    /// hardest case: several coordinators or several surplus holders deciding together), with
    /// no grace (timing is the caller's; the rule must be safe without it).
    fn round(root: &Cid, factor: usize, alive: &[PeerId], holders: &mut BTreeSet<PeerId>) {
        let live: Vec<PeerId> = holders
            .iter()
            .filter(|p| alive.contains(p))
            .copied()
            .collect();
        let by_distance = cairn_p2p::closest(root, alive.iter().copied(), usize::MAX);
        let mut placed = Vec::new();
        let mut released = Vec::new();
        for me in &live {
            let plan = plan(me, root, factor, &live, &[], true);
            placed.extend(repair_targets(&by_distance, &live, &[], plan.repair));
            if plan.surplus {
                released.push(*me);
            }
        }
        holders.extend(placed);
        for me in released {
            holders.remove(&me);
        }
    }

    fn live_count(holders: &BTreeSet<PeerId>, alive: &[PeerId]) -> usize {
        holders.iter().filter(|p| alive.contains(p)).count()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn no_pin_with_a_live_holder_is_lost_and_r_is_restored_when_r_nodes_live(
            root_seed in any::<u64>(),
            size in 1usize..=12,
            factor in 1usize..=6,
            adder in 0usize..12,
            killed in proptest::collection::btree_set(0usize..12, 0..8),
            revive in any::<bool>(),
        ) {
            let root = Block::build(RAW, HashAlg::Sha2_256, root_seed.to_le_bytes().to_vec()).cid;
            let nodes: Vec<PeerId> = POOL[..size].to_vec();
            let adder = nodes[adder % size];
            // The write path: the R closest (the adder among them or not) plus the adder.
            let mut holders: BTreeSet<PeerId> =
                cairn_p2p::closest(&root, nodes.iter().copied(), factor).into_iter().collect();
            holders.insert(adder);
            let mut alive: Vec<PeerId> = nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| !killed.contains(i))
                .map(|(_, p)| *p)
                .collect();
            for _ in 0..2 * size + 2 {
                let before = live_count(&holders, &alive);
                round(&root, factor, &alive, &mut holders);
                let after = live_count(&holders, &alive);
                prop_assert!(before == 0 || after > 0, "a live pin was lost");
                prop_assert!(after >= before.min(factor), "released below R: {before} -> {after}");
                prop_assert!(after <= before.max(factor), "repair overshot R: {before} -> {after}");
            }
            let live = live_count(&holders, &alive);
            if live > 0 {
                prop_assert_eq!(live, factor.min(alive.len()), "R not restored");
            }
            if revive {
                // The killed nodes return with their copies: surplus, released down to R.
                alive = nodes.clone();
                for _ in 0..2 * size + 2 {
                    let before = live_count(&holders, &alive);
                    round(&root, factor, &alive, &mut holders);
                    prop_assert!(live_count(&holders, &alive) >= before.min(factor));
                }
                prop_assert_eq!(live_count(&holders, &alive), factor.min(size));
            }
        }
    }
}

#[cfg(test)]
mod store_tests {
    use cairn_p2p::claims::PinClaims;
    use cairn_p2p::records::{PinIntent, PinRecord};

    use super::*;
    use crate::replication::now_ms;
    use crate::replication::testing::lone_node;

    #[tokio::test]
    async fn a_short_pin_is_remembered_as_short_and_reported_in_the_health_summary() {
        let node = lone_node();
        let root = node.hold(b"one copy");
        let mut state = Tracked::default();
        node.replicator.reconcile(root, &mut state).await.unwrap();
        assert!(state.short_since.is_some(), "1 of 3 copies is short");
        assert!(state.last_proof.is_some(), "the first round proves");
        assert!(state.surplus_since.is_none());
        // Within the grace nothing is repaired, and no peer exists to repair onto anyway.
        assert!(!state.repairing.load(Ordering::SeqCst));
        assert_eq!(node.replicator.health_summary(), (1, Some(0)));
    }

    #[tokio::test]
    async fn a_newer_unpin_kept_here_moves_the_copy_into_its_grace() {
        let node = lone_node();
        let root = node.hold(b"to release");
        let me = node.identity.peer_id();
        let unpin =
            PinRecord::sign(&node.identity, root, me, PinIntent::Unpinned, now_ms()).unwrap();
        let mut claims = PinClaims::new(root);
        claims
            .take(unpin, node.replicator.network.record_gate())
            .unwrap();
        node.store
            .store()
            .put_pin_record(&root, &claims.encode())
            .unwrap();

        node.replicator
            .reconcile(root, &mut Tracked::default())
            .await
            .unwrap();
        assert_eq!(node.store.store().pin_mode(&root).unwrap(), None);
        assert!(
            node.store.store().grace_until(&root).unwrap().is_some(),
            "the blocks stay for the unpin grace"
        );
        assert!(node.store.store().has(&root).unwrap());
        assert_eq!(node.replicator.health_summary(), (0, None));
    }
}
