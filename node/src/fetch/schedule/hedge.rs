//! A fetch's endgame: CIDs a slow or silent provider holds are asked once more of another, so a
//! peer that stalls on purpose costs a fetch seconds, not the request timeout.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cairn_p2p::PeerId;
use cid::Cid;
use tokio::time::Instant;

use super::{BATCH, MAX_PROBES, PER_PROVIDER, PROBE_BATCH, Provider, Requested, probes_in_flight};

/// In a fetch's endgame, how long a proven provider may hold CIDs before they are asked of
/// another too (see [`plan_hedges`]).
pub(in crate::fetch) const HEDGE_AFTER: Duration = Duration::from_secs(2);

/// The endgame of a fetch, when nothing is left to ask for but answers are still out: CIDs held
/// by a provider not yet proven, or by any provider for [`HEDGE_AFTER`], are asked once more of
/// another provider with room (proven and least busy first, within the shares of
/// [`plan_batches`], never one that said it lacks them). A peer that stalls on purpose then
/// costs a fetch [`HEDGE_AFTER`] at most, not the request timeout; the first answer with a block
/// wins and the other is ignored.
pub(in crate::fetch) fn plan_hedges(
    providers: &mut [Provider],
    requested: &mut Requested,
    lacking: &HashMap<Cid, HashSet<PeerId>>,
    room: usize,
    now: Instant,
) -> Vec<(usize, Vec<Cid>)> {
    let mut due: Vec<(Instant, Cid)> = requested
        .iter()
        .filter(|(_, f)| !f.hedged && (!providers[f.at].proven || f.since + HEDGE_AFTER <= now))
        .map(|(cid, f)| (f.since, *cid))
        .collect();
    due.sort();
    let mut due: Vec<Cid> = due.into_iter().map(|(_, cid)| cid).collect();
    // The same shares as plan_batches: a peer not yet proven takes one small request.
    let share = |p: &Provider| {
        if p.proven {
            (PER_PROVIDER, BATCH)
        } else {
            (1, PROBE_BATCH)
        }
    };
    let mut order: Vec<usize> = (0..providers.len())
        .filter(|i| {
            let p = &providers[*i];
            p.askable(now) && p.in_flight < share(p).0
        })
        .collect();
    // Proven providers first, then the least busy.
    order.sort_by_key(|i| (!providers[*i].proven, providers[*i].in_flight));
    let mut planned = Vec::new();
    let mut probing = probes_in_flight(providers);
    for index in order {
        let (most, size) = share(&providers[index]);
        let proven = providers[index].proven;
        while planned.len() < room
            && providers[index].in_flight < most
            && (proven || probing < MAX_PROBES)
        {
            let peer = providers[index].peer;
            let fits = |cid: &Cid| {
                requested.get(cid).is_some_and(|f| f.at != index)
                    && !lacking.get(cid).is_some_and(|peers| peers.contains(&peer))
            };
            let mut batch = Vec::with_capacity(size);
            due.retain(|cid| {
                let take = batch.len() < size && fits(cid);
                if take {
                    batch.push(*cid);
                }
                !take
            });
            if batch.is_empty() {
                break;
            }
            for cid in &batch {
                if let Some(flight) = requested.get_mut(cid) {
                    flight.hedged = true;
                    flight.outstanding += 1;
                }
            }
            if !proven {
                probing += 1;
            }
            providers[index].in_flight += 1;
            planned.push((index, batch));
        }
    }
    planned
}

/// When the next CID in flight becomes due for a hedge by time alone (see [`plan_hedges`]),
/// after `now`: one already due but with nowhere to go waits for the next answer instead.
pub(in crate::fetch) fn next_hedge(requested: &Requested, now: Instant) -> Option<Instant> {
    requested
        .values()
        .filter(|f| !f.hedged)
        .map(|f| f.since + HEDGE_AFTER)
        .filter(|at| *at > now)
        .min()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::super::tests::{leaves, provider};
    use super::super::{WINDOW, plan_batches, release};
    use super::*;

    #[test]
    fn the_endgame_hedges_what_an_unproven_peer_holds_at_once_and_a_proven_one_after_a_while() {
        let now = Instant::now();
        let mut providers = vec![provider(now), provider(now), provider(now)];
        providers[1].proven = false;
        let mut wanted: VecDeque<Cid> = leaves(PROBE_BATCH + BATCH).into();
        let mut requested = Requested::new();
        // The unproven 1 was probed before provider 0 was known to hold the DAG (its probe carries
        // CIDs of its own); then provider 0 gets a full batch; 2 stays idle.
        providers[0].dropped = true;
        let mut first = plan_batches(
            &mut providers[..2],
            &mut wanted,
            &mut requested,
            &HashMap::new(),
            2,
            now,
        );
        providers[0].dropped = false;
        first.extend(plan_batches(
            &mut providers[..2],
            &mut wanted,
            &mut requested,
            &HashMap::new(),
            2,
            now,
        ));
        first.sort();
        assert_eq!(first.len(), 2);
        assert!(wanted.is_empty());
        let probed = first[1].1.clone();
        assert_eq!(probed.len(), PROBE_BATCH);

        // At once: only the probe is due, and it goes to a proven provider other than its holder.
        let hedges = plan_hedges(&mut providers, &mut requested, &HashMap::new(), WINDOW, now);
        assert_eq!(hedges.len(), 1);
        let (to, batch) = &hedges[0];
        assert_ne!(*to, 1);
        assert_eq!(
            batch.iter().collect::<HashSet<_>>(),
            probed.iter().collect()
        );
        assert!(probed.iter().all(|c| requested[c].outstanding == 2));
        // Each CID is hedged once.
        assert!(
            plan_hedges(&mut providers, &mut requested, &HashMap::new(), WINDOW, now).is_empty()
        );

        // The proven provider's batch becomes due after HEDGE_AFTER, never to itself, and never
        // to a provider that said it lacks a CID.
        assert_eq!(next_hedge(&requested, now), Some(now + HEDGE_AFTER));
        let later = now + HEDGE_AFTER;
        let held = first[0].1.clone();
        let mut lacking: HashMap<Cid, HashSet<PeerId>> = HashMap::new();
        lacking
            .entry(held[0])
            .or_default()
            .insert(providers[2].peer);
        let hedges = plan_hedges(&mut providers, &mut requested, &lacking, WINDOW, later);
        let hedged: Vec<Cid> = hedges.iter().flat_map(|(_, b)| b.clone()).collect();
        assert!(hedges.iter().all(|(to, _)| *to != first[0].0));
        assert_eq!(hedged.len(), held.len() - 1);
        assert!(!hedged.contains(&held[0]));
        assert_eq!(next_hedge(&requested, later), None);
    }

    #[test]
    fn a_cid_stays_on_its_way_while_its_hedge_is_out_and_returns_when_both_failed() {
        let now = Instant::now();
        let mut providers = vec![provider(now), provider(now)];
        providers[1].proven = false;
        let mut wanted: VecDeque<Cid> = leaves(PROBE_BATCH).into();
        let mut requested = Requested::new();
        let probe = plan_batches(
            &mut providers[1..],
            &mut wanted,
            &mut requested,
            &HashMap::new(),
            1,
            now,
        );
        // plan_batches saw providers[1..], so index 0 there is providers[1]: shift it back.
        for flight in requested.values_mut() {
            flight.at = 1;
        }
        let cids = probe[0].1.clone();
        let hedges = plan_hedges(&mut providers, &mut requested, &HashMap::new(), WINDOW, now);
        assert_eq!(hedges[0].0, 0);

        // The probe fails: its CIDs wait for the hedge.
        for cid in &cids {
            requested.get_mut(cid).unwrap().outstanding -= 1;
        }
        release(&mut wanted, &mut requested, cids.clone());
        assert!(wanted.is_empty());
        assert_eq!(requested.len(), cids.len());

        // The hedge fails too: back to the front of the queue, in order.
        for cid in &cids {
            requested.get_mut(cid).unwrap().outstanding -= 1;
        }
        release(&mut wanted, &mut requested, cids.clone());
        assert_eq!(Vec::from(wanted), cids);
        assert!(requested.is_empty());
    }
}
