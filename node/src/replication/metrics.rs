//! Replication's metrics: the pins surveyed, their smallest failure budget and the
//! under-replicated ones (as last surveyed by this node, over the pins it holds), audits by result, repairs by outcome, released copies and
//! verified receipts.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

#[derive(Debug, Default)]
pub struct ReplicationMetrics {
    under_replicated: Gauge,
    min_failure_budget: Gauge,
    pins_tracked: Gauge,
    audits: Family<Labels, Counter>,
    repairs: Family<Labels, Counter>,
    pub(super) released: Counter,
    pub(super) receipts: Counter,
    refused: Family<Labels, Counter>,
}

impl ReplicationMetrics {
    /// Registers under `replication_*` in the node's registry.
    pub fn register(registry: &mut Registry) -> std::sync::Arc<Self> {
        let metrics = Self::default();
        let sub = registry.sub_registry_with_prefix("replication");
        sub.register(
            "under_replicated_pins",
            "Pins held here with fewer live copies than their replication factor",
            metrics.under_replicated.clone(),
        );
        sub.register(
            "pins_tracked",
            "Pins held here whose replication was surveyed (0: min_failure_budget means nothing)",
            metrics.pins_tracked.clone(),
        );
        sub.register(
            "min_failure_budget",
            "Smallest failure budget (live copies - 1) among the pins held here",
            metrics.min_failure_budget.clone(),
        );
        sub.register(
            "audits",
            "Audits of other holders by result (pass, holding, released, fail, unreachable)",
            metrics.audits.clone(),
        );
        sub.register(
            "repairs",
            "Copies placed by repair, by outcome (placed, failed)",
            metrics.repairs.clone(),
        );
        sub.register(
            "released",
            "Copies this node released (surplus or unpinned)",
            metrics.released.clone(),
        );
        sub.register(
            "receipts",
            "Verified replication receipts received",
            metrics.receipts.clone(),
        );
        sub.register(
            "refused",
            "Replication obligations refused, by reason (not_pinned, too_large, share_used, \
             slots, fetch_failed, receipt_without_proof: a target's receipt with no proof behind \
             it)",
            metrics.refused.clone(),
        );
        std::sync::Arc::new(metrics)
    }

    pub(crate) fn refused(&self, reason: &str) {
        self.refused
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc();
    }

    pub(super) fn set_health(
        &self,
        tracked: usize,
        under_replicated: usize,
        min_failure_budget: i64,
    ) {
        self.pins_tracked
            .set(i64::try_from(tracked).unwrap_or(i64::MAX));
        self.under_replicated
            .set(i64::try_from(under_replicated).unwrap_or(i64::MAX));
        self.min_failure_budget.set(min_failure_budget);
    }

    pub(super) fn audit(&self, result: &str) {
        self.audits
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
    }

    pub(super) fn repair(&self, placed: bool) {
        let outcome = if placed { "placed" } else { "failed" };
        self.repairs
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc();
    }
}
