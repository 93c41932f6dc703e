//! The leader's watch over each workflow's status mix
//! ([`cairn_core::anomaly`]): it reads the maintained counts of a recent
//! window and of the baseline before it, raises an alert when a watched
//! status's share swings up, and resolves it when the mix is back to usual.
//!
//! Each check reads only the count tables (a few rows per workflow and
//! hour), never runs, so it costs the same at any history size. The store
//! keeps at most one open alert per workflow and status, so two servers
//! that both believe they lead for a moment still raise it once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cairn_core::alert::AlertKind;
use cairn_core::anomaly::{AnomalyRule, Mix, Verdict};
use cairn_core::{AlertId, RunStatus, Timestamp};
use cairn_store::{AlertKey, AlertQuery, AlertWrite, NewAlert, Store};

use crate::error::EngineError;
use crate::report::run_counts_by_workflow;
use crate::time::EngineClock;

/// What one check changed, and what is open after it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checked {
    pub raised: Vec<AlertId>,
    pub resolved: Vec<AlertId>,
    /// The anomalies open after the check: (workflow, status).
    pub open: BTreeSet<(String, RunStatus)>,
}

pub struct AnomalyWatch<S: Store> {
    store: Arc<S>,
    clock: EngineClock,
    rule: AnomalyRule,
}

impl<S: Store> AnomalyWatch<S> {
    /// `rule` must be valid ([`AnomalyRule::validate`]).
    pub fn new(store: Arc<S>, clock: EngineClock, rule: AnomalyRule) -> Self {
        AnomalyWatch { store, clock, rule }
    }

    pub fn rule(&self) -> &AnomalyRule {
        &self.rule
    }

    /// Judges every workflow with finished runs in the recent window, and
    /// every workflow with an open anomaly.
    pub async fn check(&self) -> Result<Checked, EngineError> {
        let now = self.clock.now();
        let windows = self.rule.windows(now);
        let recent = self.mixes(windows.recent).await?;
        let baseline = self.mixes(windows.baseline).await?;
        let open: BTreeSet<(String, RunStatus)> = self
            .store
            .alerts(AlertQuery {
                open_only: true,
                kind: Some(AlertKind::Anomaly),
                limit: cairn_store::alerts::MAX_ALERTS,
                ..AlertQuery::default()
            })
            .await?
            .into_iter()
            .filter_map(|a| Some((a.workflow, a.status?)))
            .collect();

        let workflows: BTreeSet<&String> = recent.keys().chain(open.iter().map(|(w, _)| w)).collect();
        let none = Mix::default();
        let mut checked = Checked { open: open.clone(), ..Checked::default() };
        for workflow in workflows {
            for &status in &self.rule.statuses {
                let key = (workflow.clone(), status);
                let is_open = open.contains(&key);
                let verdict = self.rule.judge(
                    status,
                    recent.get(workflow).unwrap_or(&none),
                    baseline.get(workflow).unwrap_or(&none),
                    is_open,
                );
                let alert_key =
                    AlertKey { kind: AlertKind::Anomaly, workflow: workflow.clone(), status: Some(status) };
                match verdict {
                    Verdict::Swung(swing) if !is_open => {
                        let message = format!(
                            "{workflow}: {swing} (last {}, baseline the {} before)",
                            human(self.rule.recent),
                            human(self.rule.baseline)
                        );
                        let details = serde_json::json!({
                            "status": swing.status,
                            "recent_share": swing.recent_share,
                            "baseline_share": swing.baseline_share,
                            "recent_runs": swing.recent_runs,
                            "baseline_runs": swing.baseline_runs,
                            "recent_from": windows.recent.0,
                            "baseline_from": windows.baseline.0,
                            "threshold": self.rule.threshold,
                        });
                        let new = NewAlert {
                            id: AlertId::new(now),
                            key: alert_key,
                            raised_at: now,
                            message,
                            details,
                        };
                        if let Some(id) = self.store.write_alert(AlertWrite::Raise(new)).await? {
                            tracing::warn!(%workflow, %status, %swing, "anomaly in the status mix");
                            checked.raised.push(id);
                        }
                        checked.open.insert(key);
                    }
                    Verdict::Usual if is_open => {
                        if let Some(id) =
                            self.store.write_alert(AlertWrite::Resolve { key: alert_key, at: now }).await?
                        {
                            tracing::info!(%workflow, %status, "the status mix is back to usual");
                            checked.resolved.push(id);
                        }
                        checked.open.remove(&key);
                    }
                    _ => {}
                }
            }
        }
        Ok(checked)
    }

    /// The finished runs of each workflow submitted in `[from, to)`.
    async fn mixes(&self, (from, to): (Timestamp, Timestamp)) -> Result<BTreeMap<String, Mix>, EngineError> {
        let counts = run_counts_by_workflow(&*self.store, from, to, &[]).await?;
        Ok(counts
            .into_iter()
            .map(|(workflow, counts)| (workflow, Mix::new(&counts)))
            .filter(|(_, mix)| mix.finished() > 0)
            .collect())
    }
}

/// `1h`, `7d`, `90m`: the largest unit that divides the duration, as the
/// `--anomaly-*` flags are written.
fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
