//! The background scrub: every block re-verified once per `scrub.interval`, at most at
//! `scrub.bytes_per_second`. The schedule survives restarts (the store records when the last pass
//! completed), so a node that restarts often is still scrubbed. Corrupt blocks are quarantined by
//! the pass; fetching good copies from replicas is the replication worker's job.

use std::ops::ControlFlow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_blockstore::ScrubOptions;
use cairn_blockstore::backend::Backend;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::store::NodeStore;

/// Runs until `stop` is cancelled; a pass in progress stops after its current page.
pub async fn run<B: Backend>(
    store: NodeStore<B>,
    interval: Duration,
    bytes_per_second: u64,
    stop: CancellationToken,
) -> Result<()> {
    loop {
        let wait = match time_until_due(&store, interval).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the scrub schedule; retrying in an hour");
                Duration::from_secs(3600)
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
        let cancel = stop.clone();
        let opts = ScrubOptions { bytes_per_second };
        let pass = store
            .run("scrubbing", move |s| {
                Ok(s.scrub(opts, |_| {
                    if cancel.is_cancelled() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })?)
            })
            .await;
        match pass {
            Ok(report) if report.completed => tracing::info!(
                blocks = report.progress.blocks_checked,
                bytes = report.progress.bytes_checked,
                corrupt = report.corrupt.len(),
                elapsed = ?report.elapsed,
                "scrub pass complete"
            ),
            Ok(_) => return Ok(()),
            Err(e) => tracing::error!(error = %e, "scrub pass failed"),
        }
        if stop.is_cancelled() {
            return Ok(());
        }
    }
}

async fn time_until_due<B: Backend>(store: &NodeStore<B>, interval: Duration) -> Result<Duration> {
    let last = store
        .run("reading the scrub schedule", |s| {
            Ok(s.last_scrub_completed()?)
        })
        .await?;
    let Some(last) = last else {
        return Ok(Duration::ZERO);
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let due = Duration::from_secs(last) + interval;
    Ok(due.saturating_sub(now))
}
