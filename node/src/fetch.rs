//! Fetching a DAG this node lacks from the peers that hold it (`cat` and `pin add` of remote
//! content). Providers come from Kademlia, with the connected peers as a fallback (in a small
//! private cluster they usually hold it and the provider record may still be on its way).
//!
//! A bounded window of requests is spread over the providers, each carrying a batch of CIDs.
//! Every block is verified against its CID on receipt, before it is stored (and the store checks
//! it again on write). A peer that sends a wrong block is reported, which bans it past a
//! threshold, and dropped from this fetch; its CIDs go to another provider. A peer that says
//! "slow down" is left alone for the time it asked. The queue of wanted CIDs is explored depth
//! first, so it stays near (depth × links per node) whatever the file's size.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use cairn_blockstore::backend::Backend;
use cairn_blockstore::{Block, DAG_PB, Store, links, verify};
use cairn_p2p::{BlockReply, Client as Network, Offence, PeerId};
use cid::Cid;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::pace::ByteRate;
use crate::store::NodeStore;

/// Requests in flight at once, over all providers.
const WINDOW: usize = 16;
/// Requests in flight to one provider: spreads the load, and stays far below the 64 streams a
/// connection carries.
const PER_PROVIDER: usize = 4;
/// CIDs per request: 16 leaves of 256 KiB fill half of a response.
const BATCH: usize = 16;
/// CIDs per request to a provider not yet proven (see [`Provider::proven`]), one at a time.
const PROBE_BATCH: usize = 4;
/// A provider that fails this many requests in a row is dropped from the fetch.
const MAX_FAILURES: u32 = 3;
/// How long the provider lookup may take before the fetch goes on with connected peers.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Providers a fetch's lookup waits for before it starts: the first holder found, beside the
/// connected peers (in a cluster, the other holders are usually among them).
const ENOUGH_PROVIDERS: usize = 1;
/// "Slow down" answers in a row, with no block, after which a provider counts as failing: a peer
/// that only ever asks for patience would otherwise hold a fetch forever.
const MAX_SLOW_DOWNS: u32 = 20;

/// Bounds on one fetch (a replica a peer asked for; a repair).
#[derive(Clone, Copy, Debug, Default)]
pub struct FetchLimits<'a> {
    /// Move at most this many bytes per second on average (repairs).
    pub pace: Option<&'a ByteRate>,
    /// Fail once more than this many bytes would be fetched.
    pub max_bytes: Option<u64>,
    /// Fail when the whole fetch takes longer than this.
    pub timeout: Option<Duration>,
}

/// What a fetch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchReport {
    pub blocks: u64,
    pub bytes: u64,
    /// Wrong blocks received (each reported, none stored).
    pub bad_blocks: u64,
}

#[derive(Debug)]
struct Provider {
    peer: PeerId,
    /// Found by the lookup, or has sent us a block of this DAG. A connected peer that is neither
    /// gets one small request at a time: a peer that holds nothing, or answers slowly on
    /// purpose, can then hold back only a few CIDs, not a share of the window.
    proven: bool,
    in_flight: usize,
    ready_at: Instant,
    failures: u32,
    slow_downs: u32,
    dropped: bool,
}

type Pending = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (usize, Vec<Cid>, Result<BlockReply, cairn_p2p::Error>)>
            + Send,
    >,
>;

/// Makes every block of the DAG under `root` present in the store, fetching what is missing.
pub async fn fetch_dag<B: Backend>(
    store: &NodeStore<B>,
    network: &Network,
    root: Cid,
) -> Result<FetchReport> {
    fetch_dag_paced(store, network, root, None, None).await
}

/// [`fetch_dag`] within `limits`.
pub async fn fetch_dag_limited<B: Backend>(
    store: &NodeStore<B>,
    network: &Network,
    root: Cid,
    limits: FetchLimits<'_>,
) -> Result<FetchReport> {
    let fetch = fetch_dag_paced(store, network, root, limits.pace, limits.max_bytes);
    match limits.timeout {
        None => fetch.await,
        Some(timeout) => {
            tokio::time::timeout(timeout, fetch)
                .await
                .map_err(|_| Error::NotOnNetwork {
                    cid: root,
                    reason: format!("not fetched within {} s", timeout.as_secs()),
                })?
        }
    }
}

/// [`fetch_dag`], moving at most `pace` bytes per second on average when given (repairs), and
/// failing once more than `max_bytes` would be fetched.
async fn fetch_dag_paced<B: Backend>(
    store: &NodeStore<B>,
    network: &Network,
    root: Cid,
    pace: Option<&ByteRate>,
    max_bytes: Option<u64>,
) -> Result<FetchReport> {
    let mut wanted: VecDeque<Cid> = missing_below(store, vec![root]).await?.into();
    let mut report = FetchReport::default();
    if wanted.is_empty() {
        return Ok(report);
    }
    let mut providers = find_providers(network, root).await?;
    if providers.is_empty() {
        return Err(Error::NotOnNetwork {
            cid: root,
            reason: "no connected peer and no provider record".into(),
        });
    }
    // Which providers said they lack a CID, so it goes elsewhere.
    let mut lacking: HashMap<Cid, HashSet<PeerId>> = HashMap::new();
    let mut in_flight: FuturesUnordered<Pending> = FuturesUnordered::new();
    let mut requested: HashSet<Cid> = HashSet::new();

    loop {
        dispatch(
            network,
            &mut providers,
            &mut wanted,
            &mut requested,
            &lacking,
            &mut in_flight,
        );
        if in_flight.is_empty() {
            if wanted.is_empty() {
                // Batches were written without syncing each; one sync makes the DAG durable
                // before anyone pins it or signs a receipt for it.
                store
                    .run("syncing fetched blocks", |s| Ok(s.sync()?))
                    .await?;
                return Ok(report);
            }
            let next = stalled(&providers, &wanted, &lacking, root)?;
            tokio::time::sleep_until(next).await;
            continue;
        }
        let Some((index, asked, reply)) = in_flight.next().await else {
            continue;
        };
        for cid in &asked {
            requested.remove(cid);
        }
        let provider = &mut providers[index];
        provider.in_flight -= 1;
        let peer = provider.peer;
        let reply = match judge(provider, reply) {
            Some(reply) => reply,
            None => {
                if provider.dropped {
                    tracing::debug!(%peer, "provider dropped from the fetch");
                }
                requeue(&mut wanted, asked);
                continue;
            }
        };
        if let Some(wait) = reply.retry_after {
            provider.ready_at = Instant::now() + wait;
        }
        let asked_set: HashSet<Cid> = asked.iter().copied().collect();
        let (good, bad) = check_blocks(store, reply.blocks, &asked_set).await?;
        if !bad.is_empty() {
            report.bad_blocks += bad.len() as u64;
            tracing::warn!(%peer, blocks = bad.len(), "peer sent blocks that do not match their CIDs; dropped");
            providers[index].dropped = true;
            for _ in &bad {
                let _ = network.penalise(peer, Offence::BadBlock).await;
            }
        }
        for cid in &reply.missing {
            lacking.entry(*cid).or_default().insert(peer);
        }
        let got: HashSet<Cid> = good.iter().map(|b| b.cid).collect();
        requeue(
            &mut wanted,
            asked.into_iter().filter(|c| !got.contains(c)).collect(),
        );
        if good.is_empty() {
            continue;
        }
        providers[index].proven = true;
        let bytes = good.iter().map(|b| b.data.len() as u64).sum::<u64>();
        report.blocks += good.len() as u64;
        report.bytes += bytes;
        if let Some(max) = max_bytes
            && report.bytes > max
        {
            // Nothing was pinned: what arrived so far is collectable.
            return Err(Error::TooLarge {
                what: format!("the DAG under {root}"),
                limit: max,
            });
        }
        if let Some(pace) = pace {
            pace.spend(bytes).await;
        }
        for block in &good {
            lacking.remove(&block.cid);
        }
        let children = store_and_expand(store, good).await?;
        // Depth first: the children of what just arrived go to the front.
        for cid in children.into_iter().rev() {
            wanted.push_front(cid);
        }
    }
}

/// Books one answer against its provider: failures (errors, answers that carry nothing at all)
/// and "slow down" answers with no block each count, in a row, and past their bounds drop the
/// provider from this fetch. Returns the reply to use, or None when it brought nothing to use.
fn judge(
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
            Some(reply)
        }
        Err(_) => {
            provider.failures += 1;
            provider.dropped |= provider.failures >= MAX_FAILURES;
            None
        }
    }
}

/// Sends as many requests as the window and the providers allow (see [`plan_batches`]).
fn dispatch(
    network: &Network,
    providers: &mut [Provider],
    wanted: &mut VecDeque<Cid>,
    requested: &mut HashSet<Cid>,
    lacking: &HashMap<Cid, HashSet<PeerId>>,
    in_flight: &mut FuturesUnordered<Pending>,
) {
    let room = WINDOW.saturating_sub(in_flight.len());
    for (index, batch) in plan_batches(providers, wanted, requested, lacking, room, Instant::now())
    {
        let peer = providers[index].peer;
        let network = network.clone();
        in_flight.push(Box::pin(async move {
            let reply = network.request_blocks(peer, batch.clone()).await;
            (index, batch, reply)
        }));
    }
}

/// The scheduling step of a fetch, apart from the network: up to `room` batches, each for a
/// ready provider (least busy first, at most `PER_PROVIDER` in flight each) holding the front
/// CIDs of `wanted` it has not said it lacks. Planned CIDs leave `wanted` for `requested`, and
/// each chosen provider's `in_flight` grows by one.
fn plan_batches(
    providers: &mut [Provider],
    wanted: &mut VecDeque<Cid>,
    requested: &mut HashSet<Cid>,
    lacking: &HashMap<Cid, HashSet<PeerId>>,
    room: usize,
    now: Instant,
) -> Vec<(usize, Vec<Cid>)> {
    let mut planned = Vec::new();
    let mut progress = true;
    while progress && planned.len() < room && !wanted.is_empty() {
        progress = false;
        let mut order: Vec<usize> = (0..providers.len())
            .filter(|i| {
                let p = &providers[*i];
                let most = if p.proven { PER_PROVIDER } else { 1 };
                !p.dropped && p.in_flight < most && p.ready_at <= now
            })
            .collect();
        order.sort_by_key(|i| providers[*i].in_flight);
        for index in order {
            if planned.len() >= room {
                return planned;
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
                if requested.contains(&cid) {
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
            requested.extend(batch.iter().copied());
            providers[index].in_flight += 1;
            planned.push((index, batch));
        }
    }
    planned
}

/// Why nothing could be sent: wait for a provider that asked us to slow down, or give up on a
/// CID every remaining provider lacks.
fn stalled(
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

fn requeue(wanted: &mut VecDeque<Cid>, cids: Vec<Cid>) {
    for cid in cids.into_iter().rev() {
        wanted.push_front(cid);
    }
}

/// Verifies received blocks against their CIDs (off the async threads). Blocks nobody asked for
/// are ignored; those that fail are returned apart.
async fn check_blocks<B: Backend>(
    store: &NodeStore<B>,
    blocks: Vec<(Cid, bytes::Bytes)>,
    asked: &HashSet<Cid>,
) -> Result<(Vec<Block>, Vec<Cid>)> {
    let blocks: Vec<(Cid, bytes::Bytes)> = blocks
        .into_iter()
        .filter(|(c, _)| asked.contains(c))
        .collect();
    store
        .jobs()
        .blocking("verifying received blocks", move || {
            let mut good = Vec::new();
            let mut bad = Vec::new();
            for (cid, data) in blocks {
                match verify(&cid, &data) {
                    Ok(()) => good.push(Block::new(cid, data)),
                    Err(_) => bad.push(cid),
                }
            }
            Ok((good, bad))
        })
        .await
}

/// Stores verified blocks (durable at the fetch's final sync) and returns the children of
/// theirs that are still missing.
async fn store_and_expand<B: Backend>(
    store: &NodeStore<B>,
    blocks: Vec<Block>,
) -> Result<Vec<Cid>> {
    store
        .run("storing fetched blocks", move |store| {
            store.put_many_buffered(&blocks)?;
            let mut children = Vec::new();
            for block in &blocks {
                if block.cid.codec() == DAG_PB {
                    children.extend(links(&block.cid, &block.data)?);
                }
            }
            missing_below_blocking(store, children)
        })
        .await
}

/// The blocks under `roots` that are not stored, found by walking what is stored.
async fn missing_below<B: Backend>(store: &NodeStore<B>, roots: Vec<Cid>) -> Result<Vec<Cid>> {
    store
        .run("finding missing blocks", move |store| {
            missing_below_blocking(store, roots)
        })
        .await
}

fn missing_below_blocking<B: Backend>(store: &Store<B>, roots: Vec<Cid>) -> Result<Vec<Cid>> {
    let mut missing = Vec::new();
    let mut stack = roots;
    let mut seen = HashSet::new();
    while let Some(cid) = stack.pop() {
        if !seen.insert(*cid.hash()) {
            continue;
        }
        if !store.has(&cid)? {
            missing.push(cid);
        } else if cid.codec() == DAG_PB {
            match store.get(&cid) {
                Ok(data) => stack.extend(links(&cid, &data)?),
                // A local copy that fails verification was just quarantined: fetch it again.
                Err(cairn_blockstore::Error::HashMismatch { .. }) => missing.push(cid),
                Err(e) => return Err(e.into()),
            }
        }
    }
    // `stack` pops from the end, so reverse to keep the DAG's left-to-right order.
    missing.reverse();
    Ok(missing)
}

async fn find_providers(network: &Network, root: Cid) -> Result<Vec<Provider>> {
    let me = network.local_peer_id();
    // Enough to start with: connected peers are asked too, and a lookup that waited for every
    // peer on its path would wait on the slowest (a hostile peer can be slow on purpose).
    let lookup = network.some_providers(root, ENOUGH_PROVIDERS);
    let found: Vec<PeerId> = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::debug!(%root, error = %e, "provider lookup failed; trying connected peers");
            Vec::new()
        }
        Err(_) => Vec::new(),
    };
    let mut peers: Vec<(PeerId, bool)> = found.iter().map(|p| (*p, true)).collect();
    for peer in network.peers().await? {
        if !found.contains(&peer.peer_id) {
            peers.push((peer.peer_id, false));
        }
    }
    let now = Instant::now();
    Ok(peers
        .into_iter()
        .filter(|(p, _)| *p != me)
        .map(|(peer, proven)| Provider {
            peer,
            proven,
            in_flight: 0,
            ready_at: now,
            failures: 0,
            slow_downs: 0,
            dropped: false,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cairn_blockstore::{HashAlg, MemBlockstore, RAW, StoreOptions};

    use super::*;
    use crate::unixfs::{CHUNK_SIZE, FileImporter, ImportOptions};

    fn provider(now: Instant) -> Provider {
        Provider {
            peer: PeerId::random(),
            proven: true,
            in_flight: 0,
            ready_at: now,
            failures: 0,
            slow_downs: 0,
            dropped: false,
        }
    }

    fn leaves(n: usize) -> Vec<Cid> {
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
        let mut requested = HashSet::new();
        let planned = plan_batches(
            &mut providers,
            &mut wanted,
            &mut requested,
            &HashMap::new(),
            WINDOW,
            now,
        );
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
        assert_eq!(requested, asked);
        assert_eq!(wanted.len(), 1000 - asked.len());
        // Depth first: the front of the queue went out first.
        assert_eq!(planned[0].1[0], leaves(1)[0]);

        // Nothing more while every provider is at its share.
        let more = plan_batches(
            &mut providers,
            &mut wanted,
            &mut requested,
            &HashMap::new(),
            WINDOW,
            now,
        );
        assert!(more.is_empty());
    }

    #[test]
    fn a_connected_peer_no_lookup_named_gets_one_small_request_until_it_delivers() {
        let now = Instant::now();
        let mut providers = vec![provider(now), provider(now)];
        providers[1].proven = false;
        let mut wanted: VecDeque<Cid> = leaves(200).into();
        let mut requested = HashSet::new();
        let planned = plan_batches(
            &mut providers,
            &mut wanted,
            &mut requested,
            &HashMap::new(),
            WINDOW,
            now,
        );
        let to = |i: usize| planned.iter().filter(|(p, _)| *p == i).collect::<Vec<_>>();
        assert_eq!(to(0).len(), PER_PROVIDER);
        assert!(to(0).iter().all(|(_, batch)| batch.len() == BATCH));
        // The unproven peer holds back one batch of PROBE_BATCH CIDs at most.
        assert_eq!(to(1).len(), 1);
        assert_eq!(to(1)[0].1.len(), PROBE_BATCH);
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
            &mut HashSet::new(),
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
            &mut HashSet::new(),
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

    #[test]
    fn missing_blocks_are_found_by_walking_what_the_memory_store_holds() {
        let store = MemBlockstore::new(StoreOptions::default());
        let mut importer = FileImporter::new(&store, ImportOptions::default());
        let data: Vec<u8> = (0..3 * CHUNK_SIZE).map(|i| (i % 251) as u8).collect();
        importer.write(&data).unwrap();
        let root = importer.finish().unwrap().root;
        assert!(
            missing_below_blocking(&store, vec![root])
                .unwrap()
                .is_empty()
        );

        let children = links(&root, &store.get(&root).unwrap()).unwrap();
        assert_eq!(children.len(), 3);
        store.delete(&children[1]).unwrap();
        assert_eq!(
            missing_below_blocking(&store, vec![root]).unwrap(),
            vec![children[1]]
        );
        store.delete(&root).unwrap();
        assert_eq!(
            missing_below_blocking(&store, vec![root]).unwrap(),
            vec![root]
        );
    }
}
