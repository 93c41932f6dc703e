//! The leader's anomaly watch: every minute, each workflow's recent status
//! mix against its baseline (`cairn_engine::anomalies`), alerts raised and
//! resolved in the store, and the metrics that follow them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_core::RunStatus;
use cairn_engine::AnomalyWatch;
use cairn_store::Store;
use tokio_util::sync::CancellationToken;

/// How often the leader checks. Counts move by the minute, so more often
/// would read the same rows again.
const EVERY: Duration = Duration::from_secs(60);

pub(super) async fn watch<S: Store>(watch: AnomalyWatch<S>, term: CancellationToken) {
    let mut every = tokio::time::interval(EVERY);
    let mut shown: BTreeSet<(String, RunStatus)> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = every.tick() => match watch.check().await {
                Ok(checked) => {
                    let closed: Vec<_> = shown.difference(&checked.open).map(|(w, s)| (w.as_str(), *s)).collect();
                    cairn_server::metrics::record_anomalies(
                        checked.raised.len(),
                        checked.open.iter().map(|(w, s)| (w.as_str(), *s)),
                        closed,
                    );
                    shown = checked.open;
                }
                Err(e) => tracing::warn!(error = %e, "could not check the status mix of the workflows"),
            },
            () = term.cancelled() => return,
        }
    }
}

/// Starts the watch on a task of its own, until `term`.
pub(super) fn spawn<S: Store>(
    store: Arc<S>,
    clock: cairn_engine::EngineClock,
    rule: cairn_core::anomaly::AnomalyRule,
    term: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(watch(AnomalyWatch::new(store, clock, rule), term))
}
