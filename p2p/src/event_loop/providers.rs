//! Provider records peers announce here (`ADD_PROVIDER`, handed to us first by
//! `StoreInserts::FilterBoth`). Kademlia checked that the provider is the peer that sent it; this
//! bounds what any one peer, and all of them together, may make the node keep, and keeps room for
//! the node's own records: a flood of announcements never stops `start_providing`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::kad::{self, store::RecordStore};
use libp2p_identity::PeerId;

use super::EventLoop;
use crate::behaviour::MAX_PROVIDED_KEYS;
use crate::scores::Offence;

/// Keys one remote peer may have its provider records kept for here (by default; see
/// `NetworkSettings::max_provider_keys_per_peer`).
pub const MAX_PROVIDED_KEYS_PER_PEER: usize = 1024;
/// Provider records of remote peers kept in all: half the store, the other half is this node's.
pub const MAX_REMOTE_PROVIDER_RECORDS: usize = MAX_PROVIDED_KEYS / 2;
/// Remote providers kept per key: one fewer than the store holds, so this node's own record
/// always has its place.
pub const MAX_REMOTE_PROVIDERS_PER_KEY: usize = kad::K_VALUE.get() - 1;
/// How long a provider record lives when its announcement names no expiry (Kademlia's default).
const PROVIDER_TTL: Duration = Duration::from_secs(48 * 3600);

/// The provider records remote peers stored here, per provider: each key and its expiry.
#[derive(Debug)]
pub(super) struct RemoteProviders {
    per_peer: usize,
    by_peer: HashMap<PeerId, HashMap<kad::RecordKey, Instant>>,
    total: usize,
}

impl RemoteProviders {
    pub(super) fn new(per_peer: usize) -> Self {
        Self {
            per_peer,
            by_peer: HashMap::new(),
            total: 0,
        }
    }

    /// Drops `peer`'s expired entries; returns how many it has left.
    fn live(&mut self, peer: &PeerId, now: Instant) -> usize {
        let Some(keys) = self.by_peer.get_mut(peer) else {
            return 0;
        };
        let before = keys.len();
        keys.retain(|_, expires| *expires > now);
        self.total -= before - keys.len();
        let left = keys.len();
        if left == 0 {
            self.by_peer.remove(peer);
        }
        left
    }
}

impl EventLoop {
    pub(super) fn on_provider_offered(&mut self, record: kad::ProviderRecord) {
        let provider = record.provider;
        let now = Instant::now();
        let held = self.remote_providers.live(&provider, now);
        let known = self
            .remote_providers
            .by_peer
            .get(&provider)
            .is_some_and(|keys| keys.contains_key(&record.key));
        if !known {
            let local = *self.swarm.local_peer_id();
            let others_for_key = self
                .swarm
                .behaviour_mut()
                .kad
                .store_mut()
                .providers(&record.key)
                .iter()
                .filter(|p| p.provider != local)
                .count();
            let refusal = if held >= self.remote_providers.per_peer {
                Some("per_peer")
            } else if self.remote_providers.total >= MAX_REMOTE_PROVIDER_RECORDS {
                Some("total")
            } else if others_for_key >= MAX_REMOTE_PROVIDERS_PER_KEY {
                Some("per_key")
            } else {
                None
            };
            if let Some(reason) = refusal {
                self.metrics.provider_refused(reason);
                if reason == "per_peer" {
                    self.penalise(provider, Offence::OverLimit);
                }
                return;
            }
        }
        let key = record.key.clone();
        let expires = record.expires.unwrap_or(now + PROVIDER_TTL);
        let store = self.swarm.behaviour_mut().kad.store_mut();
        if let Err(e) = store.add_provider(record) {
            tracing::debug!(error = %e, "provider record not kept");
            return;
        }
        let keys = self.remote_providers.by_peer.entry(provider).or_default();
        if keys.insert(key, expires).is_none() {
            self.remote_providers.total += 1;
        }
    }
}
