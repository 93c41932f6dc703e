//! Expected durations in the run and task views: a small cache of each
//! workflow's [`ExpectedDurations`], and what a view gains from them — the
//! usual duration of the run and of each step, the run's ETA, and
//! "slower than usual" for what is running past its usual p95.
//!
//! Expected durations move slowly (they are drawn from the latest hundred
//! completed runs), so a view reads them from the cache: one store read per
//! workflow per [`ExpectedCache::TTL`], never one per task or per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_core::expected::{run_eta, slower_than_usual};
use cairn_core::{RunStatus, TaskStatus, Timestamp};
use cairn_store::{ExpectedDurations, Store};

use crate::analytics::ExpectedView;
use crate::model::{RunView, TaskView};

/// Each workflow's expected durations, with when they were read.
type Entries = HashMap<String, (Timestamp, Arc<ExpectedDurations>)>;

/// The expected durations of recently viewed workflows.
#[derive(Clone, Default)]
pub struct ExpectedCache {
    entries: Arc<Mutex<Entries>>,
}

impl ExpectedCache {
    /// How long a workflow's figures are served before they are read again.
    pub const TTL: Duration = Duration::from_secs(30);

    /// Entries beyond which the stale ones are dropped, so a server that
    /// views many workflows keeps only the recent.
    const MAX_ENTRIES: usize = 1024;

    /// `workflow`'s expected durations as of at most [`Self::TTL`] before
    /// `now`, read from `store` when older. `None` when the store cannot
    /// answer: a view then goes without them rather than fail.
    pub async fn get<S: Store>(
        &self,
        store: &S,
        workflow: &str,
        now: Timestamp,
    ) -> Option<Arc<ExpectedDurations>> {
        let fresh = |read_at: Timestamp| now.since(read_at) < Self::TTL && read_at <= now;
        if let Some((read_at, e)) = self.lock().get(workflow)
            && fresh(*read_at)
        {
            return Some(e.clone());
        }
        let e = match store.expected_durations(workflow).await {
            Ok(e) => Arc::new(e),
            Err(error) => {
                tracing::warn!(%error, workflow, "cannot read expected durations; views go without them");
                return None;
            }
        };
        let mut entries = self.lock();
        if entries.len() >= Self::MAX_ENTRIES {
            entries.retain(|_, (read_at, _)| fresh(*read_at));
        }
        entries.insert(workflow.to_owned(), (now, e.clone()));
        Some(e)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TaskView {
    /// Adds the usual execution time of the task's step and, while it runs,
    /// whether it has been running longer than usual.
    pub fn with_expected(mut self, e: &ExpectedDurations) -> TaskView {
        let Some(step) = e.steps.get(&self.name) else { return self };
        self.expected = Some(ExpectedView::from(&step.execution));
        let ran = Duration::try_from_secs_f64(self.durations.execution_duration).unwrap_or_default();
        self.slower_than_usual =
            self.status == TaskStatus::Running && slower_than_usual(ran, Some(&step.execution));
        self
    }
}

impl RunView {
    /// Adds the usual duration of the run and of each step; for a running
    /// run its ETA — its start plus the usual duration, or the latest
    /// progress-based prediction of its running tasks where that is later —
    /// and whether it and each running task run longer than usual.
    pub fn with_expected(mut self, e: &ExpectedDurations, now: Timestamp) -> RunView {
        self.tasks = std::mem::take(&mut self.tasks).into_iter().map(|t| t.with_expected(e)).collect();
        self.expected = e.run.as_ref().map(ExpectedView::from);
        if let (RunStatus::Running, Some(started)) = (self.status, self.started_at) {
            let predicted = self.tasks.iter().filter_map(|t| t.progress.as_ref()?.predicted_finish_at);
            self.eta = run_eta(started, e.run.as_ref(), predicted);
            self.slower_than_usual = slower_than_usual(now.since(started), e.run.as_ref());
        }
        self
    }
}
