//! The background scrub: every block re-verified once per `scrub.interval`, at most at
//! `scrub.bytes_per_second`. The schedule survives restarts (the store records when the last pass
//! completed), so a node that restarts often is still scrubbed. Corrupt blocks are quarantined by
//! the pass; fetching good copies from replicas is the replication worker's job.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_blockstore::{RocksBlockstore, ScrubOptions};
use tokio_util::sync::CancellationToken;

/// Runs until `stop` is cancelled; a pass in progress stops after its current page.
pub async fn run(
    store: Arc<RocksBlockstore>,
    interval: Duration,
    bytes_per_second: u64,
    stop: CancellationToken,
) {
    loop {
        let wait = match time_until_due(&store, interval).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the scrub schedule; retrying in an hour");
                Duration::from_secs(3600)
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let s = Arc::clone(&store);
        let cancel = stop.clone();
        let opts = ScrubOptions { bytes_per_second };
        let pass = tokio::task::spawn_blocking(move || {
            s.scrub(opts, |_| {
                if cancel.is_cancelled() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
        })
        .await;
        match pass {
            Ok(Ok(report)) if report.completed => tracing::info!(
                blocks = report.progress.blocks_checked,
                bytes = report.progress.bytes_checked,
                corrupt = report.corrupt.len(),
                elapsed = ?report.elapsed,
                "scrub pass complete"
            ),
            Ok(Ok(_)) => return,
            Ok(Err(e)) => tracing::error!(error = %e, "scrub pass failed"),
            Err(e) => tracing::error!(error = %e, "scrub task failed"),
        }
        if stop.is_cancelled() {
            return;
        }
    }
}

async fn time_until_due(
    store: &Arc<RocksBlockstore>,
    interval: Duration,
) -> cairn_blockstore::Result<Duration> {
    let s = Arc::clone(store);
    let last = tokio::task::spawn_blocking(move || s.last_scrub_completed())
        .await
        .map_err(|e| cairn_blockstore::Error::Internal(e.to_string()))??;
    let Some(last) = last else {
        return Ok(Duration::ZERO);
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let due = Duration::from_secs(last) + interval;
    Ok(due.saturating_sub(now))
}
