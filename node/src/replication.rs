//! The write path of replication (DESIGN.md §6): after a root is stored and pinned here, ask the
//! placement targets — the peers closest to the root in Kademlia's XOR space — to hold it, and
//! collect their signed receipts. Each target fetches the DAG from any holder (verifying every
//! block), pins it, announces itself as a provider and signs a receipt over the request's nonce.
//!
//! The caller waits for `write_quorum` receipts; the remaining requests finish in the background
//! and still record their receipts. With fewer peers than the factor, the pin is reported as
//! under-replicated rather than failed.

use std::sync::Arc;

use cairn_blockstore::{PinMode, RocksBlockstore};
use cairn_p2p::records::Receipt;
use cairn_p2p::{Client as Network, NodeIdentity, PeerId, ReplicateId};
use cid::Cid;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::fetch::fetch_dag;

/// How long an add waits for its write quorum before it reports the pin as it stands.
const QUORUM_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// How a replication went by the time the caller stopped waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replication {
    pub factor: u32,
    /// This node and every target whose receipt verified.
    pub holders: Vec<PeerId>,
    pub under_replicated: bool,
}

/// Asks the placement targets of `root` to hold it; waits for `quorum` receipts (0: none).
pub async fn replicate(
    store: &Arc<RocksBlockstore>,
    network: &Network,
    root: Cid,
    factor: u32,
    quorum: u32,
) -> Result<Replication> {
    let me = network.local_peer_id();
    let placement = network.placement(root, factor as usize).await?;
    let targets: Vec<PeerId> = placement.into_iter().filter(|p| *p != me).collect();
    let (done, mut results) = mpsc::channel::<Option<PeerId>>(targets.len().max(1));
    for target in &targets {
        let (store, network, done, target) =
            (Arc::clone(store), network.clone(), done.clone(), *target);
        tokio::spawn(async move {
            let confirmed = match ask(&store, &network, target, root, factor).await {
                Ok(()) => Some(target),
                Err(e) => {
                    tracing::warn!(%root, peer = %target, error = %e, "replica not confirmed");
                    None
                }
            };
            let _ = done.send(confirmed).await;
        });
    }
    drop(done);
    let mut holders = vec![me];
    let wanted = (quorum as usize).min(targets.len());
    let mut answered = 0;
    let deadline = tokio::time::Instant::now() + QUORUM_WAIT;
    while holders.len() - 1 < wanted && answered < targets.len() {
        match tokio::time::timeout_at(deadline, results.recv()).await {
            Ok(Some(confirmed)) => {
                answered += 1;
                holders.extend(confirmed);
            }
            Ok(None) => break,
            Err(_) => {
                // A target that never answers must not hold the caller; its request goes on in
                // the background and the pin is reported as it stands.
                tracing::warn!(%root, "write quorum not reached in time");
                break;
            }
        }
    }
    let under_replicated = holders.len() < factor as usize;
    if under_replicated {
        tracing::warn!(%root, holders = holders.len(), factor, "pin is under-replicated for now");
    }
    Ok(Replication {
        factor,
        holders,
        under_replicated,
    })
}

/// One target: request, verify the receipt (signed by the target, for this root and nonce), keep
/// it.
async fn ask(
    store: &Arc<RocksBlockstore>,
    network: &Network,
    target: PeerId,
    root: Cid,
    factor: u32,
) -> Result<()> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| Error::BadRequest(format!("no randomness: {e}")))?;
    let signed = network
        .replicate(target, root, factor, nonce.to_vec())
        .await?;
    let receipt = Receipt::verify(&signed)?;
    if receipt.holder != target || receipt.root != root || receipt.nonce != nonce {
        return Err(Error::BadRequest(format!(
            "{target} answered with a receipt for another request"
        )));
    }
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || store.put_receipt(&root, &target.to_bytes(), &signed))
        .await
        .map_err(|e| Error::BadRequest(format!("store worker failed: {e}")))??;
    Ok(())
}

/// Serves a peer's request to hold `root`: fetch (verified), pin, announce, sign.
pub async fn hold(
    store: &Arc<RocksBlockstore>,
    network: &Network,
    identity: &NodeIdentity,
    id: ReplicateId,
    root: Cid,
    nonce: Vec<u8>,
) {
    let outcome = async {
        fetch_dag(store, network, root).await?;
        let pinning = Arc::clone(store);
        tokio::task::spawn_blocking(move || pinning.pin(&root, PinMode::Recursive))
            .await
            .map_err(|e| Error::BadRequest(format!("store worker failed: {e}")))??;
        if let Err(e) = network.start_providing(root).await {
            tracing::warn!(%root, error = %e, "could not announce a replica");
        }
        let issued_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok::<_, Error>(Receipt::sign(identity, root, &nonce, issued_at_ms)?)
    }
    .await;
    match &outcome {
        Ok(_) => tracing::info!(%root, "holding a replica"),
        Err(e) => tracing::warn!(%root, error = %e, "could not take a replica"),
    }
    let _ = network
        .respond_replicate(id, outcome.map_err(|e| e.to_string()))
        .await;
}
