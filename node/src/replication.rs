//! Replication (DESIGN.md §6): every recursive pin lives on R nodes, and the cluster notices and
//! heals losses and lies by itself.
//!
//! - [`write`]: `add` asks the placement targets (the R peers closest to the root in Kademlia's
//!   XOR space) to hold the root and collects their signed receipts.
//! - [`pinset`]: every owner's signed pin record of each root in the DHT; an unpin is a newer
//!   record in the owner's slot, and the blocks stay for the unpin grace.
//! - [`audit`]: `/cairn/audit/1`, proof of possession of random blocks, bound to both parties.
//! - [`survey`]: who holds a root right now, each holder audited; `pin status` shows it.
//! - [`reconcile`]: the worker on every holder. The live holder closest to the root repairs
//!   (after `repair_grace`, or at once after a failed audit); a holder beyond the R closest live
//!   ones releases its own copy after the grace. Both steps follow from the same deterministic
//!   order, so several holders acting at once pick the same targets and never go below R.

mod audit;
mod metrics;
mod pinset;
mod reconcile;
mod survey;
mod write;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cairn_blockstore::RocksBackend;
use cairn_blockstore::backend::Backend;
use cairn_p2p::{Client as Network, NodeIdentity, PeerId};
use cid::Cid;
use governor::{DefaultKeyedRateLimiter, Quota};

pub use metrics::ReplicationMetrics;
pub use pinset::UnpinOutcome;
pub(crate) use pinset::republish_claims;
pub(crate) use reconcile::run as run_reconciler;
pub use survey::{HolderState, HolderView, PinHealth, Survey};
pub use write::WriteOutcome;

use crate::error::{Error, Result};
use crate::pace::{ByteRate, kib_per_second};
use crate::store::NodeStore;

/// The `replication` section, as the workers use it.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub factor: u32,
    pub write_quorum: u32,
    pub audit_interval: Duration,
    pub repair_grace: Duration,
    pub repair_bytes_per_second: u64,
    /// Audits this node sends one peer per second at most: they share that peer's request limit
    /// with block fetches, and one over it costs this node score there.
    pub audits_per_peer_per_second: u32,
    /// Bytes of a peer's byte budget this node's audits may spend there per second (each
    /// sampled block is charged as a whole chunk): the rest is left for transfers, so a node
    /// auditing many pins never starves its own fetches from that peer.
    pub audit_bytes_per_peer_per_second: u64,
    /// A proof that arrives later than this fails (it could have been fetched elsewhere).
    pub audit_deadline: Duration,
    /// How long an unpinned root's blocks stay.
    pub unpin_grace: Duration,
    /// The largest DAG a peer may ask this node to hold.
    pub max_pin_bytes: u64,
    /// Bytes held for any one owner's pins.
    pub max_share_per_peer: u64,
    /// How long fetching one replica may take.
    pub replica_fetch_timeout: Duration,
    /// How often every pin claim kept here is put into the DHT again (well within its TTL).
    pub republish_interval: Duration,
}

/// Everything replication needs; cheap to clone.
pub struct Replicator<B: Backend = RocksBackend> {
    store: NodeStore<B>,
    network: Network,
    identity: NodeIdentity,
    policy: Policy,
    repair_rate: Arc<ByteRate>,
    audit_pace: Arc<DefaultKeyedRateLimiter<PeerId>>,
    /// `audit_bytes_per_peer_per_second`, in KiB.
    audit_bytes: Arc<DefaultKeyedRateLimiter<PeerId>>,
    metrics: Arc<ReplicationMetrics>,
    /// The last survey's outcome per pin held here, for `status` and the gauges.
    health: Arc<Mutex<HashMap<Cid, PinHealth>>>,
    /// Roots this node is re-fetching because its own copy failed a check.
    healing: Arc<Mutex<HashSet<Cid>>>,
    /// When each holder of each pin held here last passed a proof round this node sent: only a
    /// holder proved within `audit_interval` counts as live.
    proven: Arc<Mutex<HashMap<(Cid, PeerId), tokio::time::Instant>>>,
    root_locks: Arc<RootLocks>,
}

impl<B: Backend> Clone for Replicator<B> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            network: self.network.clone(),
            identity: self.identity.clone(),
            policy: self.policy,
            repair_rate: Arc::clone(&self.repair_rate),
            audit_pace: Arc::clone(&self.audit_pace),
            audit_bytes: Arc::clone(&self.audit_bytes),
            metrics: Arc::clone(&self.metrics),
            health: Arc::clone(&self.health),
            healing: Arc::clone(&self.healing),
            proven: Arc::clone(&self.proven),
            root_locks: Arc::clone(&self.root_locks),
        }
    }
}

impl<B: Backend> std::fmt::Debug for Replicator<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Replicator<B> {
    pub fn new(
        store: NodeStore<B>,
        network: Network,
        identity: NodeIdentity,
        policy: Policy,
        metrics: Arc<ReplicationMetrics>,
    ) -> Self {
        Self {
            store,
            network,
            identity,
            repair_rate: Arc::new(ByteRate::new(policy.repair_bytes_per_second)),
            audit_pace: Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_second(
                NonZeroU32::new(policy.audits_per_peer_per_second).unwrap_or(NonZeroU32::MIN),
            ))),
            audit_bytes: Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_second(
                kib_per_second(policy.audit_bytes_per_peer_per_second),
            ))),
            policy,
            metrics,
            health: Arc::default(),
            healing: Arc::default(),
            proven: Arc::default(),
            root_locks: Arc::default(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Counts a refused replication obligation (see [`ReplicationMetrics`]).
    pub(crate) fn count_refusal(&self, reason: &str) {
        self.metrics.refused(reason);
    }

    /// Under-replicated pins among those held here, and the smallest failure budget among them
    /// (`None` when this node holds no replicated pin yet).
    pub fn health_summary(&self) -> (u64, Option<i64>) {
        let health = lock(&self.health);
        let under = health.values().filter(|h| h.under_replicated()).count();
        let min = health.values().map(PinHealth::failure_budget).min();
        (under as u64, min)
    }

    fn record_health(&self, root: Cid, health: Option<PinHealth>) {
        let mut all = lock(&self.health);
        match health {
            Some(health) => {
                all.insert(root, health);
            }
            None => {
                all.remove(&root);
            }
        }
        let under = all.values().filter(|h| h.under_replicated()).count();
        let min = all
            .values()
            .map(PinHealth::failure_budget)
            .min()
            .unwrap_or(0);
        self.metrics.set_health(all.len(), under, min);
    }
}

/// A poisoned lock only means another task panicked mid-update of plain data; go on with it.
/// One lock per root for the steps that read and then change that root's pin and record here (a
/// client's pin or unpin, a peer's record arriving, a replica being taken): without it, an older
/// record acted on a moment late overwrote a newer one and released a pin just acknowledged.
#[derive(Debug, Default)]
struct RootLocks(Mutex<HashMap<Cid, Arc<tokio::sync::Mutex<()>>>>);

/// Past this many roots, locks nobody holds are dropped from the table.
const ROOT_LOCKS_PRUNE_AT: usize = 1024;

impl RootLocks {
    async fn lock(&self, root: Cid) -> tokio::sync::OwnedMutexGuard<()> {
        let entry = {
            let mut table = lock(&self.0);
            if table.len() >= ROOT_LOCKS_PRUNE_AT {
                table.retain(|_, entry| Arc::strong_count(entry) > 1);
            }
            Arc::clone(table.entry(root).or_default())
        };
        entry.lock_owned().await
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn random_nonce() -> Result<Vec<u8>> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| Error::Internal {
        what: "drawing a nonce",
        reason: e.to_string(),
    })?;
    Ok(nonce.to_vec())
}

/// A replicator on the memory store, with a swarm of its own on loopback and no peers: the
/// single-node case of every replication step, for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::time::Duration;

    use cairn_blockstore::{MemBackend, MemBlockstore, StoreOptions};
    use cairn_p2p::{NetworkEvent, NetworkSettings, NodeIdentity};
    use prometheus_client::registry::Registry;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::{Policy, ReplicationMetrics, Replicator};
    use crate::store::NodeStore;
    use crate::tasks::Jobs;

    pub(crate) struct LoneNode {
        pub replicator: Replicator<MemBackend>,
        pub store: NodeStore<MemBackend>,
        pub identity: NodeIdentity,
        _events: mpsc::Receiver<NetworkEvent>,
        stop: CancellationToken,
    }

    impl Drop for LoneNode {
        fn drop(&mut self) {
            self.stop.cancel();
        }
    }

    impl LoneNode {
        /// Stores `data` as one raw block and pins it here (recursively), as an add would.
        pub(crate) fn hold(&self, data: &[u8]) -> cid::Cid {
            use cairn_blockstore::{Block, HashAlg, PinMode, RAW};
            let block = Block::build(RAW, HashAlg::Sha2_256, data.to_vec());
            self.store.store().put(&block).unwrap();
            self.store
                .store()
                .pin(&block.cid, PinMode::Recursive)
                .unwrap();
            block.cid
        }
    }

    pub(crate) fn policy() -> Policy {
        Policy {
            factor: 3,
            write_quorum: 2,
            audit_interval: Duration::from_secs(600),
            repair_grace: Duration::from_secs(300),
            repair_bytes_per_second: 64 << 20,
            audits_per_peer_per_second: 50,
            audit_bytes_per_peer_per_second: 128 << 20,
            audit_deadline: Duration::from_secs(5),
            unpin_grace: Duration::from_secs(3600),
            max_pin_bytes: 1 << 30,
            max_share_per_peer: 4 << 30,
            replica_fetch_timeout: Duration::from_secs(60),
            republish_interval: Duration::from_secs(3600),
        }
    }

    pub(crate) fn lone_node() -> LoneNode {
        let identity = NodeIdentity::generate();
        let mut registry = Registry::default();
        let settings = NetworkSettings::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
        let (network, events, event_loop) =
            cairn_p2p::new(&identity, settings, &mut registry).unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(event_loop.run(stop.clone()));
        let store = NodeStore::new(
            Arc::new(MemBlockstore::new(StoreOptions::default())),
            Jobs::standalone(),
        );
        let replicator = Replicator::new(
            store.clone(),
            network,
            identity.clone(),
            policy(),
            ReplicationMetrics::register(&mut registry),
        );
        LoneNode {
            replicator,
            store,
            identity,
            _events: events,
            stop,
        }
    }
}
