//! Fetching a DAG this node lacks from the peers that hold it (`cat` and `pin add` of remote
//! content). Providers are the connected peers, asked at once, and the holders a Kademlia lookup
//! names while the transfer runs (in a private cluster the connected peers usually hold it, and
//! the provider record may still be on its way).
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
use cairn_blockstore::{Block, DAG_PB, Store, VerifiedBlock, Written, links, on_every_core};
use cairn_p2p::{BlockReply, Client as Network, Offence, PeerId, PeerInfo};
use cid::Cid;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::pace::ByteRate;
use crate::store::NodeStore;

mod schedule;

use schedule::{
    Provider, Requested, WINDOW, judge, next_hedge, plan_batches, plan_hedges, plan_probes_beside,
    release, stalled,
};

/// How long the provider lookup may run beside the transfer; after it the fetch goes on with
/// the providers it has.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Holders after which a fetch's lookup ends: the first one found, beside the connected peers
/// (in a cluster, the other holders are usually among them).
const ENOUGH_PROVIDERS: usize = 1;

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
#[derive(Debug, Default)]
pub struct FetchReport {
    pub blocks: u64,
    pub bytes: u64,
    /// Wrong blocks received (each reported, none stored).
    pub bad_blocks: u64,
    /// The store's record of the blocks the fetch wrote, so that pinning the root reads back
    /// only what was stored before it (`Store::pin_written`).
    pub written: Written,
}

/// One request's answer: the provider's index, the CIDs asked, the reply.
type Answer = (usize, Vec<Cid>, Result<BlockReply, cairn_p2p::Error>);
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>;

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
    let mut report = FetchReport {
        written: store.store().begin_written(),
        ..FetchReport::default()
    };
    if wanted.is_empty() {
        return Ok(report);
    }
    let me = network.local_peer_id();
    let now = Instant::now();
    // Connected peers are asked at once (unproven, see [`Provider::proven`]); the lookup runs
    // beside the transfer and its holders join when it answers. A fetch from a connected holder,
    // the usual case in a cluster, then never waits on the lookup or on the slowest peer on its
    // path.
    let mut providers = rank_connected(network.peers().await?, me, now);
    let mut lookup = Some(Box::pin(lookup_providers(network, root)));
    // Which providers said they lack a CID, so it goes elsewhere.
    let mut lacking: HashMap<Cid, HashSet<PeerId>> = HashMap::new();
    let mut in_flight: FuturesUnordered<Pending> = FuturesUnordered::new();
    let mut requested = Requested::new();

    loop {
        dispatch(
            network,
            &mut providers,
            &mut wanted,
            &mut requested,
            &lacking,
            &mut in_flight,
        );
        if wanted.is_empty() && requested.is_empty() {
            // Requests still out carry only CIDs a hedge brought first; dropping them here
            // cancels them. Batches were written without syncing each; one sync makes the DAG
            // durable before anyone pins it or signs a receipt for it.
            store
                .run("syncing fetched blocks", |s| Ok(s.sync()?))
                .await?;
            return Ok(report);
        }
        let step = match (lookup.as_mut(), in_flight.is_empty()) {
            // Nothing to send until the lookup names a holder or a slowed provider is ready.
            (Some(pending), true) => {
                let wake = stalled(&providers, &wanted, &lacking, root).ok();
                tokio::select! {
                    found = pending => Step::Found(found),
                    () = sleep_until_or_forever(wake) => Step::Woke,
                }
            }
            (Some(pending), false) => tokio::select! {
                found = pending => Step::Found(found),
                next = in_flight.next() => Step::Answer(next),
                () = sleep_until_or_forever(hedge_at(&wanted, &requested)) => Step::Woke,
            },
            (None, true) if providers.is_empty() => {
                return Err(Error::NotOnNetwork {
                    cid: root,
                    reason: "no connected peer and no provider record".into(),
                });
            }
            (None, true) => {
                tokio::time::sleep_until(stalled(&providers, &wanted, &lacking, root)?).await;
                Step::Woke
            }
            (None, false) => tokio::select! {
                next = in_flight.next() => Step::Answer(next),
                () = sleep_until_or_forever(hedge_at(&wanted, &requested)) => Step::Woke,
            },
        };
        let (index, asked, reply) = match step {
            Step::Found(found) => {
                lookup = None;
                join_found(&mut providers, found, me);
                continue;
            }
            Step::Woke | Step::Answer(None) => continue,
            Step::Answer(Some(answer)) => answer,
        };
        // What this answer may still bring: a hedge's answer may have brought some first.
        let still_wanted: HashSet<Cid> = asked
            .iter()
            .filter(|cid| requested.contains_key(cid))
            .copied()
            .collect();
        for cid in &asked {
            if let Some(flight) = requested.get_mut(cid) {
                flight.outstanding = flight.outstanding.saturating_sub(1);
            }
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
                release(&mut wanted, &mut requested, asked);
                continue;
            }
        };
        if let Some(wait) = reply.retry_after {
            provider.ready_at = Instant::now() + wait;
        }
        // Every block is checked, even one a hedge already brought: a wrong block is reported
        // whenever it arrives. Only the ones still wanted are stored.
        let asked_set: HashSet<Cid> = asked.iter().copied().collect();
        let (mut good, bad) = check_blocks(store, reply.blocks, &asked_set).await?;
        good.retain(|block| still_wanted.contains(block.cid()));
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
        for block in &good {
            requested.remove(block.cid());
        }
        release(&mut wanted, &mut requested, asked);
        if good.is_empty() {
            continue;
        }
        providers[index].proven = true;
        let bytes = good.iter().map(|b| b.data().len() as u64).sum::<u64>();
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
            lacking.remove(block.cid());
        }
        let written = std::mem::take(&mut report.written);
        let (children, written) = store_and_expand(store, good, written).await?;
        report.written = written;
        // Depth first: the children of what just arrived go to the front.
        for cid in children.into_iter().rev() {
            wanted.push_front(cid);
        }
    }
}

/// Sends as many requests as the window and the providers allow (see [`plan_batches`]); in the
/// endgame, when nothing is left to ask for, hedges what slow providers hold (see
/// [`plan_hedges`]).
fn dispatch(
    network: &Network,
    providers: &mut [Provider],
    wanted: &mut VecDeque<Cid>,
    requested: &mut Requested,
    lacking: &HashMap<Cid, HashSet<PeerId>>,
    in_flight: &mut FuturesUnordered<Pending>,
) {
    let now = Instant::now();
    // The window is the holders'; probes to unproven peers have their own few slots.
    let to_proven: usize = providers
        .iter()
        .filter(|p| p.proven)
        .map(|p| p.in_flight)
        .sum();
    let room = WINDOW.saturating_sub(to_proven);
    let mut planned = plan_batches(providers, wanted, requested, lacking, room, now);
    planned.extend(plan_probes_beside(providers, requested, lacking, now));
    if wanted.is_empty() && !requested.is_empty() {
        // Hedges get a window of their own: the one the stalled requests fill.
        planned.extend(plan_hedges(providers, requested, lacking, WINDOW, now));
    }
    for (index, batch) in planned {
        let peer = providers[index].peer;
        let network = network.clone();
        in_flight.push(Box::pin(async move {
            let reply = network.request_blocks(peer, batch.clone()).await;
            (index, batch, reply)
        }));
    }
}

/// When the fetch should look again for CIDs to hedge: only in the endgame.
fn hedge_at(wanted: &VecDeque<Cid>, requested: &Requested) -> Option<Instant> {
    if wanted.is_empty() {
        next_hedge(requested, Instant::now())
    } else {
        None
    }
}

/// Verifies received blocks against their CIDs (off the async threads). Blocks nobody asked for
/// are ignored; those that fail are returned apart.
async fn check_blocks<B: Backend>(
    store: &NodeStore<B>,
    blocks: Vec<(Cid, bytes::Bytes)>,
    asked: &HashSet<Cid>,
) -> Result<(Vec<VerifiedBlock>, Vec<Cid>)> {
    let blocks: Vec<Block> = blocks
        .into_iter()
        .filter(|(c, _)| asked.contains(c))
        .map(|(cid, data)| Block::new(cid, data))
        .collect();
    store
        .jobs()
        .blocking("verifying received blocks", move || {
            // This hash is the store's check on write too: the verified blocks go in as they are.
            let checked = on_every_core(&blocks, |block| VerifiedBlock::check(block.clone()))?;
            let mut good = Vec::new();
            let mut bad = Vec::new();
            for (block, checked) in blocks.iter().zip(checked) {
                match checked {
                    Ok(block) => good.push(block),
                    Err(_) => bad.push(block.cid),
                }
            }
            Ok((good, bad))
        })
        .await
}

/// Stores verified blocks (durable at the fetch's final sync), noting them in `written`, and
/// returns the children of theirs that are still missing, with `written`.
async fn store_and_expand<B: Backend>(
    store: &NodeStore<B>,
    blocks: Vec<VerifiedBlock>,
    mut written: Written,
) -> Result<(Vec<Cid>, Written)> {
    store
        .run("storing fetched blocks", move |store| {
            store.put_verified_noting(&blocks, &mut written)?;
            let mut children = Vec::new();
            for block in &blocks {
                if block.cid().codec() == DAG_PB {
                    children.extend(links(block.cid(), block.data())?);
                }
            }
            Ok((missing_below_blocking(store, children)?, written))
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

/// The connected peers as the fetch's first providers, unproven, in the order they are probed:
/// the cluster's members first, then the longest connected. A crowd of fresh strangers then
/// cannot stand between a fetch and the holder it has known all along.
fn rank_connected(mut connected: Vec<PeerInfo>, me: PeerId, now: Instant) -> Vec<Provider> {
    connected.sort_by_key(|p| (!p.member, p.connected_since));
    connected
        .into_iter()
        .filter(|p| p.peer_id != me)
        .map(|p| Provider::new(p.peer_id, false, now))
        .collect()
}

/// The holders the provider lookup names within [`LOOKUP_TIMEOUT`]; none when it fails.
async fn lookup_providers(network: &Network, root: Cid) -> Vec<PeerId> {
    // The first holder found is enough: a lookup that waited for every peer on its path would
    // wait on the slowest (a hostile peer can be slow on purpose).
    let lookup = network.some_providers(root, ENOUGH_PROVIDERS);
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::debug!(%root, error = %e, "provider lookup failed; going on with connected peers");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

/// Adds the lookup's holders to the fetch, proven: a peer already asked gets its full share.
fn join_found(providers: &mut Vec<Provider>, found: Vec<PeerId>, me: PeerId) {
    let now = Instant::now();
    for peer in found.into_iter().filter(|p| *p != me) {
        match providers.iter_mut().find(|p| p.peer == peer) {
            Some(known) => known.proven = true,
            None => providers.push(Provider::new(peer, true, now)),
        }
    }
}

/// What woke a fetch waiting for work.
enum Step {
    Found(Vec<PeerId>),
    Answer(Option<Answer>),
    Woke,
}

async fn sleep_until_or_forever(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use cairn_blockstore::{MemBlockstore, StoreOptions};

    use super::*;
    use crate::unixfs::{CHUNK_SIZE, FileImporter, ImportOptions};

    #[test]
    fn members_are_probed_first_then_the_longest_connected_peers() {
        let now = Instant::now();
        // Connected `secs` after the first of them (counting forward: a machine's monotonic
        // clock may not reach far back).
        let peer = |member: bool, secs: u64| PeerInfo {
            peer_id: PeerId::random(),
            addrs: Vec::new(),
            member,
            connected_since: now.into_std() + Duration::from_secs(secs),
        };
        let me = peer(true, 500);
        let connected = vec![
            peer(false, 599), // a fresh stranger
            peer(false, 0),   // a stranger connected for long
            peer(true, 595),  // a member, recently reconnected
            me.clone(),
            peer(false, 598),
        ];
        let ids: Vec<PeerId> = connected.iter().map(|p| p.peer_id).collect();
        let ranked: Vec<PeerId> = rank_connected(connected, me.peer_id, now)
            .iter()
            .map(|p| p.peer)
            .collect();
        assert_eq!(ranked, vec![ids[2], ids[1], ids[4], ids[0]]);
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
