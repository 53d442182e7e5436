//! Pins and garbage collection. A recursive pin keeps a root and every block below it; a direct
//! pin keeps one block. GC removes exactly the blocks no pin reaches, and holds the GC lock
//! exclusively, so no pin or import can land between its mark and its sweep.

use std::collections::HashSet;

use cid::Cid;
use multihash::Multihash;

use crate::backend::{Backend, Batch, Cf};
use crate::error::{Error, Result};
use crate::metrics::StoreMetrics;
use crate::store::{PAGE, Store, mh_from_key};
use crate::written::Written;

/// How a pin holds its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PinMode {
    /// The root block alone.
    Direct,
    /// The root and everything it links to, transitively.
    Recursive,
}

impl PinMode {
    pub(crate) fn encode(self) -> u8 {
        match self {
            Self::Direct => 1,
            Self::Recursive => 2,
        }
    }

    fn decode(raw: &[u8]) -> Result<Self> {
        match raw {
            [1] => Ok(Self::Direct),
            [2] => Ok(Self::Recursive),
            other => Err(Error::Corrupt(format!(
                "pin record {other:?} is not a pin mode"
            ))),
        }
    }
}

/// What a GC pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed_blocks: u64,
    pub removed_bytes: u64,
    pub kept_blocks: u64,
}

impl<B: Backend> Store<B> {
    /// Pins `root`. A recursive pin first checks that the whole DAG is stored and verifies every
    /// DAG-PB node on the way; a missing block is [`Error::Incomplete`] and nothing is pinned
    /// (a root pinned recursively already is kept without that walk). A direct pin never weakens
    /// an existing recursive one.
    pub fn pin(&self, root: &Cid, mode: PinMode) -> Result<()> {
        self.pin_knowing(root, mode, None)
    }

    /// Pins `root` recursively, as [`Store::pin`] does, taking what `written` recorded as stored
    /// without reading it back: only blocks the writer did not store are looked at. Evidence from
    /// another store, or from before a removal, is set aside and the whole DAG walked.
    pub fn pin_written(&self, root: &Cid, written: &Written) -> Result<()> {
        self.pin_knowing(root, PinMode::Recursive, Some(written))
    }

    fn pin_knowing(&self, root: &Cid, mode: PinMode, written: Option<&Written>) -> Result<()> {
        let _guard = self.gc_guard();
        // Checked under the guard: no GC can remove a recorded block between this and the walk.
        let known = written.filter(|w| self.honours(w));
        let key = root.to_bytes();
        let existing = match self.backend.get(Cf::Pins, &key)? {
            Some(raw) => Some(PinMode::decode(&raw)?),
            None => None,
        };
        match mode {
            // Pinned recursively already: the DAG was complete when that pin was taken and GC
            // has kept it since, so it is not walked again. A walk reads every leaf back (the
            // engine's presence check loads the value), which the write path's second pin of a
            // fresh add paid for a whole file.
            PinMode::Recursive if existing == Some(PinMode::Recursive) => {}
            PinMode::Recursive => {
                crate::dag::walk_knowing(self, root, known, |_| {})?;
            }
            PinMode::Direct => {
                if !self.has(root)? {
                    return Err(Error::Incomplete {
                        root: *root,
                        missing: *root,
                    });
                }
            }
        }
        let mode = existing.map_or(mode, |existing| existing.max(mode));
        let mut batch = Batch::default();
        if mode == PinMode::Recursive {
            // Pinned again: any unpin grace of the root is over.
            batch.delete(Cf::Replicas, crate::grace::grace_key(root));
        }
        batch.put(Cf::Pins, key, vec![mode.encode()]);
        self.backend.write(batch)
    }

    /// Removes the pin on `root`; returns whether there was one. The blocks stay until GC.
    pub fn unpin(&self, root: &Cid) -> Result<bool> {
        let key = root.to_bytes();
        if !self.backend.contains(Cf::Pins, &key)? {
            return Ok(false);
        }
        let mut batch = Batch::default();
        batch.delete(Cf::Pins, key);
        self.backend.write(batch)?;
        Ok(true)
    }

    pub fn pin_mode(&self, root: &Cid) -> Result<Option<PinMode>> {
        self.backend
            .get(Cf::Pins, &root.to_bytes())?
            .map(|raw| PinMode::decode(&raw))
            .transpose()
    }

    /// Every pin, in key order.
    pub fn pins(&self) -> Result<Vec<(Cid, PinMode)>> {
        let mut out = Vec::new();
        self.for_each_under(Cf::Pins, b"", |key, value| {
            let cid = Cid::try_from(key)
                .map_err(|e| Error::Corrupt(format!("pin key is not a CID: {e}")))?;
            out.push((cid, PinMode::decode(&value)?));
            Ok(())
        })?;
        Ok(out)
    }

    /// Visits `root` and every block below it once (see [`crate::walk`]).
    pub fn walk(&self, root: &Cid, visit: impl FnMut(&Cid)) -> Result<()> {
        crate::dag::walk(self, root, visit)
    }

    /// Whether any pin (or unpin grace) keeps `cid` (directly, as a root, or below a recursive
    /// root).
    pub fn is_reachable(&self, cid: &Cid) -> Result<bool> {
        Ok(self.mark()?.0.contains(cid.hash()))
    }

    /// The multihashes every pin and every running unpin grace keeps, and the roots whose grace
    /// has ended. Fails when a pinned DAG cannot be walked: GC must never guess what lies below a
    /// missing node. A root in its grace keeps whatever of it can still be walked: it is on its
    /// way out, and a damaged one must not stop GC for the rest.
    fn mark(&self) -> Result<(HashSet<Multihash<64>>, Vec<Cid>)> {
        let mut keep = HashSet::new();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut expired = Vec::new();
        for (root, until_ms) in self.graced()? {
            if until_ms <= now_ms {
                expired.push(root);
                continue;
            }
            let walked = self.walk(&root, |c| {
                keep.insert(*c.hash());
            });
            if let Err(e) = walked
                && !matches!(e, Error::Incomplete { .. } | Error::HashMismatch { .. })
            {
                return Err(e);
            }
        }
        for (root, mode) in self.pins()? {
            match mode {
                PinMode::Direct => {
                    keep.insert(*root.hash());
                }
                PinMode::Recursive => self.walk(&root, |c| {
                    keep.insert(*c.hash());
                })?,
            }
        }
        Ok((keep, expired))
    }

    /// Removes every block no pin reaches. Imports and pins wait while it runs.
    pub fn gc(&self) -> Result<GcReport> {
        let report = self.collect()?;
        // Outside the GC lock: giving the space back rewrites live blocks, and imports need not
        // wait for that.
        self.reclaim_after(report.removed_bytes)?;
        Ok(report)
    }

    fn collect(&self) -> Result<GcReport> {
        let _exclusive = self.gc_lock.write();
        let (keep, expired) = self.mark()?;
        self.end_graces(&expired)?;
        let mut report = GcReport::default();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let keys = self
                .backend
                .scan_keys(Cf::Blocks, b"", after.as_deref(), PAGE)?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            after = Some(last);
            let mut doomed = Vec::new();
            for key in keys {
                if keep.contains(&mh_from_key(&key)?) {
                    report.kept_blocks += 1;
                } else {
                    doomed.push(key);
                }
            }
            let (blocks, bytes) = self.remove_keys(&doomed)?;
            report.removed_blocks += blocks;
            report.removed_bytes += bytes;
        }
        StoreMetrics::add(&self.metrics.gc_runs, 1);
        StoreMetrics::add(&self.metrics.gc_removed_blocks, report.removed_blocks);
        Ok(report)
    }
}
