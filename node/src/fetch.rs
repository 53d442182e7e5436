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
use std::sync::Arc;
use std::time::Duration;

use cairn_blockstore::{Block, DAG_PB, RocksBlockstore, links, verify};
use cairn_p2p::{BlockReply, Client as Network, Offence, PeerId};
use cid::Cid;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::pace::ByteRate;

/// Requests in flight at once, over all providers.
const WINDOW: usize = 16;
/// Requests in flight to one provider: spreads the load, and stays far below the 64 streams a
/// connection carries.
const PER_PROVIDER: usize = 4;
/// CIDs per request: 16 leaves of 256 KiB fill half of a response.
const BATCH: usize = 16;
/// A provider that fails this many requests in a row is dropped from the fetch.
const MAX_FAILURES: u32 = 3;
/// How long the provider lookup may take before the fetch goes on with connected peers.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

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
    in_flight: usize,
    ready_at: Instant,
    failures: u32,
    dropped: bool,
}

type Pending = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (usize, Vec<Cid>, Result<BlockReply, cairn_p2p::Error>)>
            + Send,
    >,
>;

/// Makes every block of the DAG under `root` present in the store, fetching what is missing.
pub async fn fetch_dag(
    store: &Arc<RocksBlockstore>,
    network: &Network,
    root: Cid,
) -> Result<FetchReport> {
    fetch_dag_paced(store, network, root, None).await
}

/// [`fetch_dag`], moving at most `pace` bytes per second on average when given (repairs).
pub async fn fetch_dag_paced(
    store: &Arc<RocksBlockstore>,
    network: &Network,
    root: Cid,
    pace: Option<&ByteRate>,
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
                let syncing = Arc::clone(store);
                tokio::task::spawn_blocking(move || syncing.sync())
                    .await
                    .map_err(|e| Error::BadRequest(format!("store worker failed: {e}")))??;
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
        let reply = match reply {
            // An answer that sends nothing, names nothing missing and asks for no pause is no
            // answer: a peer doing that on purpose would otherwise keep the fetch spinning.
            Ok(reply)
                if reply.blocks.is_empty()
                    && reply.missing.is_empty()
                    && reply.retry_after.is_none() =>
            {
                provider.failures += 1;
                if provider.failures >= MAX_FAILURES {
                    tracing::debug!(%peer, "provider dropped from the fetch: empty answers");
                    provider.dropped = true;
                }
                requeue(&mut wanted, asked);
                continue;
            }
            Ok(reply) => {
                provider.failures = 0;
                reply
            }
            Err(e) => {
                provider.failures += 1;
                if provider.failures >= MAX_FAILURES {
                    tracing::debug!(%peer, error = %e, "provider dropped from the fetch");
                    provider.dropped = true;
                }
                requeue(&mut wanted, asked);
                continue;
            }
        };
        if let Some(wait) = reply.retry_after {
            provider.ready_at = Instant::now() + wait;
        }
        let asked_set: HashSet<Cid> = asked.iter().copied().collect();
        let (good, bad) = check_blocks(reply.blocks, &asked_set).await?;
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
        let bytes = good.iter().map(|b| b.data.len() as u64).sum::<u64>();
        report.blocks += good.len() as u64;
        report.bytes += bytes;
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

/// Sends as many requests as the window and the providers allow: each ready provider, least
/// busy first, gets a batch of the front CIDs it has not said it lacks.
fn dispatch(
    network: &Network,
    providers: &mut [Provider],
    wanted: &mut VecDeque<Cid>,
    requested: &mut HashSet<Cid>,
    lacking: &HashMap<Cid, HashSet<PeerId>>,
    in_flight: &mut FuturesUnordered<Pending>,
) {
    let now = Instant::now();
    let mut progress = true;
    while progress && in_flight.len() < WINDOW && !wanted.is_empty() {
        progress = false;
        let mut order: Vec<usize> = (0..providers.len())
            .filter(|i| {
                let p = &providers[*i];
                !p.dropped && p.in_flight < PER_PROVIDER && p.ready_at <= now
            })
            .collect();
        order.sort_by_key(|i| providers[*i].in_flight);
        for index in order {
            if in_flight.len() >= WINDOW {
                return;
            }
            let peer = providers[index].peer;
            let lacks = |cid: &Cid| lacking.get(cid).is_some_and(|peers| peers.contains(&peer));
            // Look a few batches deep, so one CID this peer lacks does not stall it.
            let mut batch = Vec::with_capacity(BATCH);
            let mut kept = VecDeque::new();
            while batch.len() < BATCH && kept.len() < 4 * BATCH {
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
            let network = network.clone();
            in_flight.push(Box::pin(async move {
                let reply = network.request_blocks(peer, batch.clone()).await;
                (index, batch, reply)
            }));
        }
    }
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
async fn check_blocks(
    blocks: Vec<(Cid, bytes::Bytes)>,
    asked: &HashSet<Cid>,
) -> Result<(Vec<Block>, Vec<Cid>)> {
    let blocks: Vec<(Cid, bytes::Bytes)> = blocks
        .into_iter()
        .filter(|(c, _)| asked.contains(c))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (cid, data) in blocks {
            match verify(&cid, &data) {
                Ok(()) => good.push(Block::new(cid, data)),
                Err(_) => bad.push(cid),
            }
        }
        (good, bad)
    })
    .await
    .map_err(|e| Error::BadRequest(format!("verification worker failed: {e}")))
    .map(Ok)?
}

/// Stores verified blocks (durable at the fetch's final sync) and returns the children of
/// theirs that are still missing.
async fn store_and_expand(store: &Arc<RocksBlockstore>, blocks: Vec<Block>) -> Result<Vec<Cid>> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        store.put_many_buffered(&blocks)?;
        let mut children = Vec::new();
        for block in &blocks {
            if block.cid.codec() == DAG_PB {
                children.extend(links(&block.cid, &block.data)?);
            }
        }
        missing_below_blocking(&store, children)
    })
    .await
    .map_err(|e| Error::BadRequest(format!("store worker failed: {e}")))?
}

/// The blocks under `roots` that are not stored, found by walking what is stored.
async fn missing_below(store: &Arc<RocksBlockstore>, roots: Vec<Cid>) -> Result<Vec<Cid>> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || missing_below_blocking(&store, roots))
        .await
        .map_err(|e| Error::BadRequest(format!("store worker failed: {e}")))?
}

fn missing_below_blocking(store: &RocksBlockstore, roots: Vec<Cid>) -> Result<Vec<Cid>> {
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
    let mut peers: Vec<PeerId> = match tokio::time::timeout(LOOKUP_TIMEOUT, network.providers(root))
        .await
    {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::debug!(%root, error = %e, "provider lookup failed; trying connected peers");
            Vec::new()
        }
        Err(_) => Vec::new(),
    };
    for peer in network.peers().await? {
        if !peers.contains(&peer.peer_id) {
            peers.push(peer.peer_id);
        }
    }
    let now = Instant::now();
    Ok(peers
        .into_iter()
        .filter(|p| *p != me)
        .map(|peer| Provider {
            peer,
            in_flight: 0,
            ready_at: now,
            failures: 0,
            dropped: false,
        })
        .collect())
}
