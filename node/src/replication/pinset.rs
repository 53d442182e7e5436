//! The pinset: one signed pin record per root, in the DHT and kept locally by every node that
//! holds the root (and by the node that unpinned it, as a tombstone). Versions are wall-clock
//! milliseconds, bumped past the held record, so the newest intent wins everywhere and an unpin
//! outlives a holder that was away when it was made.

use cairn_blockstore::PinMode;
use cairn_p2p::records::{PinIntent, PinRecord};
use cid::Cid;

use super::{Replicator, now_ms};
use crate::error::{Error, Result};
use cairn_blockstore::backend::Backend;

impl<B: Backend> Replicator<B> {
    /// The pin record kept here for `root`, verified (a record that no longer verifies is
    /// ignored: the DHT's copy replaces it).
    pub(crate) async fn local_record(&self, root: Cid) -> Result<Option<PinRecord>> {
        let bytes = self
            .store
            .run("reading a pin record", move |store| {
                Ok(store.pin_record(&root)?)
            })
            .await?;
        Ok(bytes.and_then(|b| PinRecord::verify(&b).ok()))
    }

    /// Signs a new record for `root`, newer than any this node knows, keeps it and stores it in
    /// the DHT. The caller holds `root`'s lock.
    pub(crate) async fn publish(&self, root: Cid, intent: PinIntent) -> Result<PinRecord> {
        let held = self.refresh_quietly(root).await;
        let version = held
            .map_or(0, |h| h.version.saturating_add(1))
            .max(now_ms());
        let signed = PinRecord::sign(&self.identity, root, intent, version)?;
        let record = PinRecord::verify(&signed)?;
        let kept = signed.clone();
        self.store
            .run("keeping a pin record", move |store| {
                Ok(store.put_pin_record(&root, &kept)?)
            })
            .await?;
        if let Err(e) = self.network.put_pin_record(signed).await {
            // Kept here; the reconciliation worker stores it in the DHT again.
            tracing::warn!(%root, error = %e, "pin record not stored in the DHT yet");
        }
        Ok(record)
    }

    /// The newest record for `root` that this node or the DHT holds. A newer DHT copy is kept
    /// here (when this node holds the root or kept a record before); a newer local copy is put
    /// back into the DHT, which heals records lost with restarted nodes.
    pub(crate) async fn refresh(&self, root: Cid) -> Result<Option<PinRecord>> {
        let local = self.local_record(root).await?;
        let found = self.network.get_pin_record(root).await?;
        let remote = found
            .as_ref()
            .and_then(|bytes| PinRecord::verify(bytes).ok().map(|r| (r, bytes.clone())));
        match (local, remote) {
            (Some(local), Some((remote, bytes))) if remote.supersedes(&local) => {
                self.store
                    .run("keeping a pin record", move |store| {
                        Ok(store.put_pin_record(&root, &bytes)?)
                    })
                    .await?;
                Ok(Some(remote))
            }
            (Some(local), remote) => {
                let dht_behind = remote.is_none_or(|(r, _)| local.supersedes(&r));
                if dht_behind && let Some(bytes) = self.local_bytes(root).await? {
                    let _ = self.network.put_pin_record(bytes).await;
                }
                Ok(Some(local))
            }
            (None, Some((remote, bytes))) => {
                let held = self
                    .store
                    .run("reading a pin", move |store| Ok(store.pin_mode(&root)?))
                    .await?
                    .is_some();
                if held {
                    self.store
                        .run("keeping a pin record", move |store| {
                            Ok(store.put_pin_record(&root, &bytes)?)
                        })
                        .await?;
                }
                Ok(Some(remote))
            }
            (None, None) => Ok(None),
        }
    }

    /// [`Replicator::refresh`] for callers that go on without it when the lookup fails.
    async fn refresh_quietly(&self, root: Cid) -> Option<PinRecord> {
        match self.refresh(root).await {
            Ok(record) => record,
            Err(e) => {
                tracing::debug!(%root, error = %e, "pin record lookup failed");
                self.local_record(root).await.ok().flatten()
            }
        }
    }

    pub(super) async fn local_bytes(&self, root: Cid) -> Result<Option<Vec<u8>>> {
        self.store
            .run("reading a pin record", move |store| {
                Ok(store.pin_record(&root)?)
            })
            .await
    }

    /// A peer stored a newer record here (already verified by the swarm task): keep it when
    /// this node holds the root, and act on an unpin at once.
    pub(crate) async fn adopt(&self, bytes: Vec<u8>) -> Result<()> {
        let record = PinRecord::verify(&bytes)?;
        let root = record.root;
        let _root = self.root_locks.lock(root).await;
        let held = self
            .store
            .run("reading a pin", move |store| Ok(store.pin_mode(&root)?))
            .await?;
        let local = self.local_record(root).await?;
        if held.is_none() && local.is_none() {
            return Ok(()); // not ours to keep: the DHT has it
        }
        if local.is_some_and(|l| !record.supersedes(&l)) {
            return Ok(());
        }
        self.store
            .run("keeping a pin record", move |store| {
                Ok(store.put_pin_record(&root, &bytes)?)
            })
            .await?;
        if record.intent == PinIntent::Unpinned && held == Some(PinMode::Recursive) {
            self.release(root, "unpinned by the cluster").await?;
        }
        Ok(())
    }

    /// Drops this node's copy of `root`: the pin goes (the blocks become collectable), the
    /// provider announcement stops, and the reconciliation worker forgets it.
    pub(crate) async fn release(&self, root: Cid, why: &str) -> Result<()> {
        let unpinned = self
            .store
            .run("unpinning", move |store| Ok(store.unpin(&root)?))
            .await?;
        let _ = self.network.stop_providing(root).await;
        self.record_health(root, None);
        if unpinned {
            self.metrics.released.inc();
            tracing::info!(%root, why, "released this node's copy");
        }
        Ok(())
    }

    /// `pin rm`: a direct pin is local only; a recursive pin is unpinned cluster-wide by a newer
    /// record, which every holder acts on (now, or when it comes back).
    pub async fn unpin(&self, root: Cid) -> Result<()> {
        let _root = self.root_locks.lock(root).await;
        let held = self
            .store
            .run("reading a pin", move |store| Ok(store.pin_mode(&root)?))
            .await?;
        if held == Some(PinMode::Direct) {
            self.store
                .run("unpinning", move |store| Ok(store.unpin(&root)?))
                .await?;
            return Ok(());
        }
        let record = self.refresh_quietly(root).await;
        let pinned_somewhere =
            held.is_some() || record.is_some_and(|r| r.intent != PinIntent::Unpinned);
        if !pinned_somewhere {
            return Err(Error::NotPinned(root));
        }
        self.publish(root, PinIntent::Unpinned).await?;
        self.release(root, "unpinned here").await
    }
}
