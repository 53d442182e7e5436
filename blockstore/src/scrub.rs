//! Scrub: re-verify every stored block at a bounded byte rate, quarantine the ones that fail and
//! record when each block was last verified. The caller (the node's scrub worker) decides when to
//! run it and asks replication to repair what it reports.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use multihash::Multihash;

use crate::backend::{Backend, Batch, Cf};
use crate::error::{Error, Result};
use crate::metrics::StoreMetrics;
use crate::store::{Store, mh_from_key, now_secs, verified_key};

/// Meta key: Unix seconds when the last full pass completed.
const LAST_COMPLETED_KEY: &[u8] = b"scrub/last_completed";
/// Blocks read per page; progress is reported after each page.
const SCRUB_PAGE: usize = 64;

#[derive(Clone, Copy, Debug)]
pub struct ScrubOptions {
    /// Read at most this many bytes per second (0 = unthrottled).
    pub bytes_per_second: u64,
}

/// Where a scrub is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrubProgress {
    pub blocks_checked: u64,
    pub bytes_checked: u64,
    pub corrupt: u64,
    /// Blocks and bytes in the store when the scrub started.
    pub total_blocks: u64,
    pub total_bytes: u64,
}

/// What a finished (or stopped) scrub found.
#[derive(Clone, Debug, Default)]
pub struct ScrubReport {
    pub progress: ScrubProgress,
    /// Blocks quarantined by this pass; replication should fetch good copies.
    pub corrupt: Vec<Multihash<64>>,
    /// False when the progress callback stopped the pass early.
    pub completed: bool,
    pub elapsed: Duration,
}

impl<B: Backend> Store<B> {
    /// Walks every block once. `on_progress` is called after each page; returning
    /// `ControlFlow::Break` stops the pass (the report then says `completed: false`).
    pub fn scrub(
        &self,
        opts: ScrubOptions,
        mut on_progress: impl FnMut(&ScrubProgress) -> ControlFlow<()>,
    ) -> Result<ScrubReport> {
        let started = Instant::now();
        let stats = self.stats()?;
        let mut report = ScrubReport {
            progress: ScrubProgress {
                total_blocks: stats.blocks,
                total_bytes: stats.bytes,
                ..ScrubProgress::default()
            },
            ..ScrubReport::default()
        };
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .backend
                .scan(Cf::Blocks, b"", after.as_deref(), SCRUB_PAGE)?;
            let Some((last, _)) = page.last() else {
                report.completed = true;
                break;
            };
            after = Some(last.clone());
            let now = now_secs().to_be_bytes();
            let mut stamps = Batch::default();
            for (key, data) in &page {
                let p = &mut report.progress;
                p.blocks_checked += 1;
                p.bytes_checked += data.len() as u64;
                match self.verify_stored(key, data) {
                    Ok(()) => stamps.put(Cf::Meta, verified_key(key), now),
                    Err(
                        Error::HashMismatch { .. }
                        | Error::UnsupportedHash { .. }
                        | Error::Corrupt(_),
                    ) => {
                        StoreMetrics::add(&self.metrics.verification_failures, 1);
                        self.quarantine(key, data)?;
                        p.corrupt += 1;
                        if let Ok(mh) = mh_from_key(key) {
                            report.corrupt.push(mh);
                        }
                        tracing::warn!(key = %hex(key), "scrub found a corrupt block; quarantined");
                    }
                    Err(other) => return Err(other),
                }
            }
            self.backend.write(stamps)?;
            let page_bytes: u64 = page.iter().map(|(_, v)| v.len() as u64).sum();
            StoreMetrics::add(&self.metrics.scrubbed_blocks, page.len() as u64);
            StoreMetrics::add(&self.metrics.scrubbed_bytes, page_bytes);
            if on_progress(&report.progress).is_break() {
                break;
            }
            pace(
                started,
                report.progress.bytes_checked,
                opts.bytes_per_second,
            );
        }
        if report.completed {
            let now = now_secs();
            let mut done = Batch::default();
            done.put(Cf::Meta, LAST_COMPLETED_KEY, now.to_be_bytes());
            self.backend.write(done)?;
            StoreMetrics::add(&self.metrics.scrub_runs_completed, 1);
            self.metrics
                .last_scrub_completed
                .store(now, std::sync::atomic::Ordering::Relaxed);
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

impl<B: Backend> Store<B> {
    /// When the last complete scrub pass ended (Unix seconds), across restarts.
    pub fn last_scrub_completed(&self) -> Result<Option<u64>> {
        let raw = self.backend.get(Cf::Meta, LAST_COMPLETED_KEY)?;
        Ok(raw.and_then(|r| r.try_into().ok()).map(u64::from_be_bytes))
    }
}

/// Sleeps until `done` bytes are no longer ahead of `rate` bytes per second since `started`.
fn pace(started: Instant, done: u64, rate: u64) {
    if rate == 0 {
        return;
    }
    let due = Duration::from_secs_f64(done as f64 / rate as f64);
    let elapsed = started.elapsed();
    if due > elapsed {
        // The scrub runs on a blocking thread of its own; sleeping is how it yields the disk.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(due - elapsed);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
