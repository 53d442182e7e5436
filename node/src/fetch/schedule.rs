//! The scheduling of one fetch, apart from the network: which provider gets which CIDs, how
//! each answer is booked against its provider, and when a fetch has to wait or give up.

use std::collections::{HashMap, HashSet, VecDeque};

use cairn_p2p::{BlockReply, PeerId};
use cid::Cid;
use tokio::time::Instant;

use crate::error::{Error, Result};

mod hedge;

pub(super) use hedge::{next_hedge, plan_hedges};

/// Requests in flight at once, over all providers.
pub(super) const WINDOW: usize = 16;
/// Requests in flight to one provider: spreads the load, and stays far below the 64 streams a
/// connection carries.
const PER_PROVIDER: usize = 4;
/// CIDs per request: 16 leaves of 256 KiB fill half of a response.
const BATCH: usize = 16;
/// CIDs per request to a provider not yet proven (see [`Provider::proven`]), one at a time.
const PROBE_BATCH: usize = 4;
/// Requests in flight at once to all providers not yet proven together, beside the window: in an
/// open network many connected peers may hold nothing, or answer slowly on purpose, and they
/// must not take the window from the holders.
const MAX_PROBES: usize = 2;
/// A provider that fails this many requests in a row is dropped from the fetch.
const MAX_FAILURES: u32 = 3;
/// "Slow down" answers in a row, with no block, after which a provider counts as failing: a peer
/// that only ever asks for patience would otherwise hold a fetch forever.
const MAX_SLOW_DOWNS: u32 = 20;

/// A CID on its way: which provider was asked first and when, how many requests carry it now,
/// and whether a second provider was asked too.
#[derive(Debug)]
pub(super) struct Flight {
    at: usize,
    since: Instant,
    pub(super) outstanding: u8,
    hedged: bool,
}

/// The CIDs on their way in one fetch.
pub(super) type Requested = HashMap<Cid, Flight>;

#[derive(Debug)]
pub(super) struct Provider {
    pub(super) peer: PeerId,
    /// Found by the lookup, or has sent us a block of this DAG. A connected peer that is neither
    /// gets one small request at a time: a peer that holds nothing, or answers slowly on
    /// purpose, can then hold back only a few CIDs, not a share of the window.
    pub(super) proven: bool,
    pub(super) in_flight: usize,
    pub(super) ready_at: Instant,
    pub(super) failures: u32,
    pub(super) slow_downs: u32,
    pub(super) dropped: bool,
    /// Not proven, and its probe brought nothing: not probed again (see [`judge`]).
    pub(super) lacks_dag: bool,
    /// Requests sent to it in this fetch: probes rotate over the unproven peers.
    asked: u32,
}

impl Provider {
    pub(super) fn new(peer: PeerId, proven: bool, now: Instant) -> Self {
        Self {
            peer,
            proven,
            in_flight: 0,
            ready_at: now,
            failures: 0,
            slow_downs: 0,
            dropped: false,
            lacks_dag: false,
            asked: 0,
        }
    }

    /// Whether the fetch may send it a request now (within its share).
    fn askable(&self, now: Instant) -> bool {
        !self.dropped && (self.proven || !self.lacks_dag) && self.ready_at <= now
    }
}

/// Requests in flight to providers not yet proven.
fn probes_in_flight(providers: &[Provider]) -> usize {
    providers
        .iter()
        .filter(|p| !p.proven)
        .map(|p| p.in_flight)
        .sum()
}

/// Books one answer against its provider: failures (errors, answers that carry nothing at all)
/// and "slow down" answers with no block each count, in a row, and past their bounds drop the
/// provider from this fetch. Returns the reply to use, or None when it brought nothing to use.
pub(super) fn judge(
    provider: &mut Provider,
    reply: std::result::Result<BlockReply, cairn_p2p::Error>,
) -> Option<BlockReply> {
    match reply {
        // An answer that sends nothing, names nothing missing and asks for no pause is no
        // answer: a peer doing that on purpose would otherwise keep the fetch spinning.
        Ok(reply)
            if reply.blocks.is_empty()
                && reply.missing.is_empty()
                && reply.retry_after.is_none() =>
        {
            provider.failures += 1;
            provider.dropped |= provider.failures >= MAX_FAILURES;
            None
        }
        // Patience asked for and nothing sent: fine a few times, not forever.
        Ok(reply) if reply.blocks.is_empty() && reply.retry_after.is_some() => {
            provider.slow_downs += 1;
            provider.dropped |= provider.slow_downs >= MAX_SLOW_DOWNS;
            Some(reply)
        }
        Ok(reply) => {
            provider.failures = 0;
            provider.slow_downs = 0;
            // A probe answered with "missing" alone: this peer lacks what the fetch needs first,
            // so it is not probed again in this fetch. In an open network every connected
            // stranger would otherwise be probed over and over, each probe holding CIDs back
            // from the holders for a round trip. Should the lookup name it, it is asked again.
            provider.lacks_dag |= !provider.proven && reply.blocks.is_empty();
            Some(reply)
        }
        Err(_) => {
            provider.failures += 1;
            provider.dropped |= provider.failures >= MAX_FAILURES;
            None
        }
    }
}

/// The scheduling step of a fetch, apart from the network: up to `room` batches for proven
/// providers (least busy first, at most `PER_PROVIDER` in flight each), and, while no holder is
/// known, probes for unproven ones while fewer than `MAX_PROBES` are in flight, each holding the
/// front CIDs of `wanted` its provider has not said it lacks. Planned CIDs leave `wanted` for `requested`, and each chosen
/// provider's `in_flight` grows by one.
pub(super) fn plan_batches(
    providers: &mut [Provider],
    wanted: &mut VecDeque<Cid>,
    requested: &mut Requested,
    lacking: &HashMap<Cid, HashSet<PeerId>>,
    room: usize,
    now: Instant,
) -> Vec<(usize, Vec<Cid>)> {
    let mut planned = Vec::new();
    let (mut to_proven, mut probing) = (0, probes_in_flight(providers));
    // Once a holder is known, unproven peers get copies of its requests instead (see
    // [`plan_probes_beside`]), never CIDs of their own.
    let holder_known = holder_known(providers);
    let mut progress = true;
    while progress && !wanted.is_empty() {
        progress = false;
        let mut order: Vec<usize> = (0..providers.len())
            .filter(|i| {
                let p = &providers[*i];
                let most = if p.proven { PER_PROVIDER } else { 1 };
                p.askable(now) && p.in_flight < most && (p.proven || !holder_known)
            })
            .collect();
        // Holders first, the least busy first; probes rotate over the unproven peers, in the
        // order the fetch ranked them (a stable sort keeps it among equals).
        order.sort_by_key(|i| {
            let p = &providers[*i];
            (!p.proven, p.in_flight, p.asked)
        });
        for index in order {
            let proven = providers[index].proven;
            if (proven && to_proven >= room) || (!proven && probing >= MAX_PROBES) {
                continue;
            }
            let peer = providers[index].peer;
            let size = if providers[index].proven {
                BATCH
            } else {
                PROBE_BATCH
            };
            let lacks = |cid: &Cid| lacking.get(cid).is_some_and(|peers| peers.contains(&peer));
            // Look a few batches deep, so one CID this peer lacks does not stall it.
            let mut batch = Vec::with_capacity(size);
            let mut kept = VecDeque::new();
            while batch.len() < size && kept.len() < 4 * BATCH {
                let Some(cid) = wanted.pop_front() else { break };
                if requested.contains_key(&cid) {
                    continue; // already on its way
                }
                if lacks(&cid) {
                    kept.push_back(cid);
                } else {
                    batch.push(cid);
                }
            }
            while let Some(cid) = kept.pop_back() {
                wanted.push_front(cid);
            }
            if batch.is_empty() {
                continue;
            }
            progress = true;
            if proven {
                to_proven += 1;
            } else {
                probing += 1;
            }
            providers[index].asked += 1;
            for cid in &batch {
                let flight = Flight {
                    at: index,
                    since: now,
                    outstanding: 1,
                    hedged: false,
                };
                requested.insert(*cid, flight);
            }
            providers[index].in_flight += 1;
            planned.push((index, batch));
        }
    }
    planned
}

/// Whether a proven provider is still in the fetch.
fn holder_known(providers: &[Provider]) -> bool {
    providers.iter().any(|p| p.proven && !p.dropped)
}

/// Probes once a holder is known: an unproven peer is asked for a few CIDs already on their way
/// from a holder (a copy of that request), within the `MAX_PROBES` slots. A peer that holds the
/// DAG answers too, perhaps first, and is proven; a stranger that holds nothing, or answers
/// slowly on purpose, delays nothing: the holder's answer does not wait for it.
pub(super) fn plan_probes_beside(
    providers: &mut [Provider],
    requested: &mut Requested,
    lacking: &HashMap<Cid, HashSet<PeerId>>,
    now: Instant,
) -> Vec<(usize, Vec<Cid>)> {
    let mut planned = Vec::new();
    if !holder_known(providers) {
        return planned;
    }
    let free = MAX_PROBES.saturating_sub(probes_in_flight(providers));
    let mut order: Vec<usize> = (0..providers.len())
        .filter(|i| {
            let p = &providers[*i];
            !p.proven && p.askable(now) && p.in_flight == 0
        })
        .collect();
    order.sort_by_key(|i| providers[*i].asked);
    for index in order.into_iter().take(free) {
        let peer = providers[index].peer;
        // Only CIDs one proven holder alone carries: not hedges, not other probes' copies.
        let batch: Vec<Cid> = requested
            .iter()
            .filter(|(cid, f)| {
                providers[f.at].proven
                    && f.outstanding == 1
                    && !lacking.get(*cid).is_some_and(|peers| peers.contains(&peer))
            })
            .map(|(cid, _)| *cid)
            .take(PROBE_BATCH)
            .collect();
        if batch.is_empty() {
            break;
        }
        for cid in &batch {
            if let Some(flight) = requested.get_mut(cid) {
                flight.outstanding += 1;
            }
        }
        providers[index].asked += 1;
        providers[index].in_flight += 1;
        planned.push((index, batch));
    }
    planned
}

/// Books an answer's CIDs that did not arrive with it: each stays on its way while the other
/// request carrying it is out, and otherwise goes back to the front of `wanted`.
pub(super) fn release(wanted: &mut VecDeque<Cid>, requested: &mut Requested, cids: Vec<Cid>) {
    let back: Vec<Cid> = cids
        .into_iter()
        .filter(|cid| match requested.get(cid) {
            Some(flight) if flight.outstanding == 0 => {
                requested.remove(cid);
                true
            }
            _ => false,
        })
        .collect();
    requeue(wanted, back);
}

/// Why nothing could be sent: wait for a provider that asked us to slow down, or give up on a
/// CID every remaining provider lacks.
pub(super) fn stalled(
    providers: &[Provider],
    wanted: &VecDeque<Cid>,
    lacking: &HashMap<Cid, HashSet<PeerId>>,
    root: Cid,
) -> Result<Instant> {
    let live: Vec<&Provider> = providers.iter().filter(|p| !p.dropped).collect();
    let front = wanted.front().copied().unwrap_or(root);
    if live.is_empty() {
        return Err(Error::NotOnNetwork {
            cid: front,
            reason: "every provider failed or sent wrong blocks".into(),
        });
    }
    let lacked_by_all = live.iter().all(|p| {
        lacking
            .get(&front)
            .is_some_and(|peers| peers.contains(&p.peer))
    });
    let now = Instant::now();
    match live.iter().map(|p| p.ready_at).filter(|t| *t > now).min() {
        Some(next) if !lacked_by_all => Ok(next),
        _ => Err(Error::NotOnNetwork {
            cid: front,
            reason: format!("none of the {} providers holds it", live.len()),
        }),
    }
}

pub(super) fn requeue(wanted: &mut VecDeque<Cid>, cids: Vec<Cid>) {
    for cid in cids.into_iter().rev() {
        wanted.push_front(cid);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cairn_blockstore::{Block, HashAlg, RAW};

    use super::*;

    pub(super) fn provider(now: Instant) -> Provider {
        Provider::new(PeerId::random(), true, now)
    }

    /// Plans a whole window with nothing lacking, as the fetch does: batches, then probes.
    fn plan(
        providers: &mut [Provider],
        wanted: &mut VecDeque<Cid>,
        requested: &mut Requested,
        now: Instant,
    ) -> Vec<(usize, Vec<Cid>)> {
        let lacking = HashMap::new();
        let mut planned = plan_batches(providers, wanted, requested, &lacking, WINDOW, now);
        planned.extend(plan_probes_beside(providers, requested, &lacking, now));
        planned
    }

    pub(super) fn leaves(n: usize) -> Vec<Cid> {
        (0..n)
            .map(|i| Block::build(RAW, HashAlg::Sha2_256, i.to_le_bytes().to_vec()).cid)
            .collect()
    }

    #[test]
    fn a_provider_that_only_asks_for_patience_is_dropped_after_a_bounded_number_of_answers() {
        let now = Instant::now();
        let mut patient = provider(now);
        let slow_down = || {
            Ok(BlockReply {
                retry_after: Some(Duration::from_millis(10)),
                ..Default::default()
            })
        };
        for _ in 1..MAX_SLOW_DOWNS {
            assert!(judge(&mut patient, slow_down()).is_some());
            assert!(!patient.dropped);
        }
        assert!(judge(&mut patient, slow_down()).is_some());
        assert!(patient.dropped, "dropped at the bound");

        // A block in between starts the count again.
        let mut honest = provider(now);
        for _ in 0..3 * MAX_SLOW_DOWNS {
            judge(&mut honest, slow_down());
            let block = Block::build(RAW, HashAlg::Sha2_256, b"x".to_vec());
            let served = BlockReply {
                blocks: vec![(block.cid, block.data)],
                ..Default::default()
            };
            judge(&mut honest, Ok(served));
        }
        assert!(!honest.dropped);

        // Empty answers and errors drop a provider sooner.
        let mut mute = provider(now);
        for _ in 0..MAX_FAILURES {
            assert!(judge(&mut mute, Ok(BlockReply::default())).is_none());
        }
        assert!(mute.dropped);
    }

    #[test]
    fn batches_fill_every_provider_up_to_its_share_and_never_ask_twice() {
        let now = Instant::now();
        let mut providers: Vec<Provider> = (0..3).map(|_| provider(now)).collect();
        let mut wanted: VecDeque<Cid> = leaves(1000).into();
        let mut requested = Requested::new();
        let planned = plan(&mut providers, &mut wanted, &mut requested, now);
        // Three providers of PER_PROVIDER requests each fit in the window of 16.
        assert_eq!(planned.len(), 3 * PER_PROVIDER);
        assert!(providers.iter().all(|p| p.in_flight == PER_PROVIDER));
        assert!(planned.iter().all(|(_, batch)| batch.len() == BATCH));
        let asked: HashSet<Cid> = planned.iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(
            asked.len(),
            3 * PER_PROVIDER * BATCH,
            "a CID was planned twice"
        );
        assert_eq!(requested.keys().copied().collect::<HashSet<_>>(), asked);
        assert_eq!(wanted.len(), 1000 - asked.len());
        // Depth first: the front of the queue went out first.
        assert_eq!(planned[0].1[0], leaves(1)[0]);

        // Nothing more while every provider is at its share.
        let more = plan(&mut providers, &mut wanted, &mut requested, now);
        assert!(more.is_empty());
    }

    #[test]
    fn a_connected_peer_no_lookup_named_gets_one_small_request_until_it_delivers() {
        let now = Instant::now();
        let mut providers = vec![provider(now), provider(now)];
        providers[1].proven = false;
        let mut wanted: VecDeque<Cid> = leaves(200).into();
        let mut requested = Requested::new();
        let planned = plan(&mut providers, &mut wanted, &mut requested, now);
        let to = |i: usize| planned.iter().filter(|(p, _)| *p == i).collect::<Vec<_>>();
        assert_eq!(to(0).len(), PER_PROVIDER);
        assert!(to(0).iter().all(|(_, batch)| batch.len() == BATCH));
        // The unproven peer gets one probe of PROBE_BATCH CIDs, copies of what the holder was
        // asked: it holds nothing back, however slowly it answers.
        assert_eq!(to(1).len(), 1);
        assert_eq!(to(1)[0].1.len(), PROBE_BATCH);
        let to_holder: HashSet<Cid> = to(0).iter().flat_map(|(_, b)| b.clone()).collect();
        assert!(to(1)[0].1.iter().all(|cid| to_holder.contains(cid)));
        assert!(to(1)[0].1.iter().all(|cid| requested[cid].outstanding == 2));

        // Before any holder is known, a probe does carry CIDs of its own, from the front.
        let mut unknown = vec![Provider::new(PeerId::random(), false, now)];
        let mut wanted: VecDeque<Cid> = leaves(200).into();
        let planned = plan(&mut unknown, &mut wanted, &mut Requested::new(), now);
        assert_eq!(planned, vec![(0, leaves(PROBE_BATCH))]);
        assert_eq!(to(0)[0].1[0], leaves(1)[0]);
    }

    #[test]
    fn many_unproven_peers_share_a_few_probes_and_never_take_the_window_from_a_holder() {
        let now = Instant::now();
        let mut providers = vec![provider(now)];
        for _ in 0..20 {
            providers.push(Provider::new(PeerId::random(), false, now));
        }
        let mut wanted: VecDeque<Cid> = leaves(1000).into();
        let mut requested = Requested::new();
        let planned = plan(&mut providers, &mut wanted, &mut requested, now);
        let to_holder = planned.iter().filter(|(i, _)| *i == 0).count();
        assert_eq!(
            to_holder, PER_PROVIDER,
            "the holder got less than its share"
        );
        assert_eq!(planned.len() - to_holder, MAX_PROBES);
        assert_eq!(probes_in_flight(&providers), MAX_PROBES);

        // The next probes go to peers not asked yet.
        let probed: HashSet<usize> = planned
            .iter()
            .map(|(i, _)| *i)
            .filter(|i| *i != 0)
            .collect();
        for index in &probed {
            providers[*index].in_flight = 0;
        }
        let next = plan(&mut providers, &mut wanted, &mut requested, now);
        assert_eq!(next.len(), MAX_PROBES);
        assert!(next.iter().all(|(i, _)| *i != 0 && !probed.contains(i)));
    }

    #[test]
    fn a_probed_peer_that_lacks_the_dag_is_not_probed_again_unless_the_lookup_names_it() {
        let now = Instant::now();
        let mut providers = vec![provider(now), Provider::new(PeerId::random(), false, now)];
        let mut wanted: VecDeque<Cid> = leaves(200).into();
        let mut requested = Requested::new();
        let planned = plan(&mut providers, &mut wanted, &mut requested, now);
        let probe = planned.iter().find(|(i, _)| *i == 1).unwrap().1.clone();
        // It answers its probe with "missing" alone.
        let missing = BlockReply {
            missing: probe.clone(),
            ..Default::default()
        };
        assert!(judge(&mut providers[1], Ok(missing)).is_some());
        providers[1].in_flight = 0;
        release(&mut wanted, &mut requested, probe);
        let next = plan(&mut providers, &mut wanted, &mut requested, now);
        assert!(
            next.iter().all(|(i, _)| *i != 1),
            "probed again after saying it lacks the DAG"
        );
        assert!(!providers[1].dropped, "lacking is not misbehaving");

        // A holder that answers a probe with a block is proven, not set aside.
        let mut holder = Provider::new(PeerId::random(), false, now);
        let block = Block::build(RAW, HashAlg::Sha2_256, b"x".to_vec());
        let served = BlockReply {
            blocks: vec![(block.cid, block.data)],
            ..Default::default()
        };
        judge(&mut holder, Ok(served));
        assert!(holder.askable(now));

        // Named by the lookup (proven), the peer that lacked the front is asked again.
        providers[1].proven = true;
        providers[0].in_flight = PER_PROVIDER;
        let named = plan(&mut providers, &mut wanted, &mut requested, now);
        assert!(named.iter().any(|(i, _)| *i == 1));
    }

    #[test]
    fn a_cid_one_provider_lacks_waits_at_the_front_for_another() {
        let now = Instant::now();
        let mut providers = vec![provider(now)];
        let cids = leaves(20);
        let mut lacking: HashMap<Cid, HashSet<PeerId>> = HashMap::new();
        lacking
            .entry(cids[0])
            .or_default()
            .insert(providers[0].peer);
        let mut wanted: VecDeque<Cid> = cids.clone().into();
        let planned = plan_batches(
            &mut providers,
            &mut wanted,
            &mut Requested::new(),
            &lacking,
            1,
            now,
        );
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].1, cids[1..=BATCH].to_vec());
        assert_eq!(
            wanted.front(),
            Some(&cids[0]),
            "the lacked CID left the queue"
        );
    }

    #[test]
    fn slowed_and_dropped_providers_get_nothing_and_stalled_says_how_long_to_wait() {
        let now = Instant::now();
        let later = now + Duration::from_millis(300);
        let mut slowed = provider(now);
        slowed.ready_at = later;
        let mut dropped = provider(now);
        dropped.dropped = true;
        let mut providers = vec![slowed, dropped];
        let mut wanted: VecDeque<Cid> = leaves(4).into();
        let planned = plan_batches(
            &mut providers,
            &mut wanted,
            &mut Requested::new(),
            &HashMap::new(),
            WINDOW,
            now,
        );
        assert!(planned.is_empty());
        let root = leaves(1)[0];
        assert_eq!(
            stalled(&providers, &wanted, &HashMap::new(), root).ok(),
            Some(later)
        );

        // Once the only live provider says it lacks the front CID, the fetch gives up on it.
        let mut lacking: HashMap<Cid, HashSet<PeerId>> = HashMap::new();
        lacking
            .entry(wanted[0])
            .or_default()
            .insert(providers[0].peer);
        match stalled(&providers, &wanted, &lacking, root) {
            Err(Error::NotOnNetwork { cid, .. }) => assert_eq!(cid, wanted[0]),
            other => panic!("expected NotOnNetwork, got {other:?}"),
        }
        providers[0].dropped = true;
        assert!(matches!(
            stalled(&providers, &wanted, &HashMap::new(), root),
            Err(Error::NotOnNetwork { .. })
        ));
    }
}
