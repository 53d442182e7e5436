//! Counters the store keeps about itself. The node exports them to Prometheus; the store only
//! counts, so it stays free of any metrics library.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared with whoever exports them.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    pub gets: AtomicU64,
    pub get_bytes: AtomicU64,
    pub puts: AtomicU64,
    pub put_bytes: AtomicU64,
    /// Blocks whose bytes did not match their hash, on put, get or scrub.
    pub verification_failures: AtomicU64,
    /// Blocks moved to quarantine (get or scrub found them corrupt).
    pub quarantined: AtomicU64,
    pub quota_rejections: AtomicU64,
    pub scrubbed_blocks: AtomicU64,
    pub scrubbed_bytes: AtomicU64,
    pub scrub_runs_completed: AtomicU64,
    /// Unix seconds of the last completed scrub pass; 0 when none has completed.
    pub last_scrub_completed: AtomicU64,
    pub gc_runs: AtomicU64,
    pub gc_removed_blocks: AtomicU64,
}

impl StoreMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
