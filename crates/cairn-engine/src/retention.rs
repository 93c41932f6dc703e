//! The retention job of `cairn serve`'s leader: now and then, the runs the
//! [`Policy`] lets go are archived ([`crate::archive`]) and then deleted,
//! a small batch at a time, and on PostgreSQL the partitions of the logs
//! are kept (see `cairn_store::retention`).
//!
//! A pass walks every workflow that has runs (an index seek per name), asks
//! the store for the finished runs its rule expires, reads each one whole,
//! appends the batch to the archive — fsync'd — and only then deletes it.
//! A crash between the two archives those runs again next time, and the
//! archive's readers keep one copy. Batches stop at [`Options::batch_runs`]
//! runs or [`Options::batch_tasks`] tasks, and the job yields between them,
//! so the writes of dispatch are held up for one small transaction at most.
//!
//! The rules are read at the start of each pass, and the time of a pass is
//! the engine clock's, so tests drive the job with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use cairn_core::retention::{Expiry, Policy};
use cairn_core::{RunId, Timestamp};
use cairn_store::{PartitionPolicy, Store};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::archive::{Archive, ArchivedRun};
use crate::error::EngineError;
use crate::time::EngineClock;

/// How the job runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Time between the starts of two passes.
    pub every: Duration,
    /// The most runs in one archive write and one delete.
    pub batch_runs: usize,
    /// A batch ends once its runs hold this many tasks (a run is never split).
    pub batch_tasks: usize,
    pub partitions: PartitionPolicy,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            every: Duration::from_secs(60),
            batch_runs: 100,
            batch_tasks: 1_000,
            partitions: PartitionPolicy::default(),
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pass {
    /// The time the rules were applied at.
    pub at: Timestamp,
    /// Runs written to the archive (a run the store then refused to delete
    /// counts here too).
    pub archived: u64,
    /// Runs deleted, and their tasks.
    pub deleted: u64,
    pub deleted_tasks: u64,
    /// Log partitions made and dropped (PostgreSQL).
    pub partitions_created: usize,
    pub partitions_dropped: usize,
}

/// What the job reports, for metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A pass finished.
    Pass(Pass),
    /// A pass failed; the next one is at the usual time.
    Failed { at: Timestamp, error: String },
}

/// The job: a store, the archive, and the rules as they change.
pub struct RetentionJob<S: Store> {
    store: Arc<S>,
    clock: EngineClock,
    policy: watch::Receiver<Arc<Policy>>,
    archive: Archive,
    options: Options,
    reports: Option<mpsc::UnboundedSender<Report>>,
}

/// Workflow names read per call while a pass walks them.
const NAMES_PER_READ: usize = 100;

impl<S: Store> RetentionJob<S> {
    pub fn new(
        store: Arc<S>,
        clock: EngineClock,
        policy: watch::Receiver<Arc<Policy>>,
        archive: Archive,
    ) -> Self {
        RetentionJob { store, clock, policy, archive, options: Options::default(), reports: None }
    }

    pub fn with_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Also sends every [`Report`] to `reports`.
    pub fn with_reports(mut self, reports: mpsc::UnboundedSender<Report>) -> Self {
        self.reports = Some(reports);
        self
    }

    /// A pass at once, then one every [`Options::every`] on the engine
    /// clock, until `stop`; a pass under way stops between two batches.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let started = self.clock.now();
            let report = match self.pass(&stop).await {
                Ok(pass) => {
                    if pass.archived > 0 || pass.deleted > 0 {
                        tracing::info!(
                            archived = pass.archived,
                            deleted = pass.deleted,
                            tasks = pass.deleted_tasks,
                            archive = %self.archive.dir().display(),
                            "retention archived and deleted finished runs"
                        );
                    }
                    Report::Pass(pass)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention failed; trying again at the next pass");
                    Report::Failed { at: started, error: e.to_string() }
                }
            };
            if let Some(reports) = &self.reports {
                let _ = reports.send(report);
            }
            let next = started.saturating_add(self.options.every);
            tokio::select! {
                () = self.clock.sleep_until(next) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// One pass: every workflow's expired runs archived and deleted, then
    /// the log partitions kept. Stops early (between batches) once `stop`
    /// is cancelled.
    pub async fn pass(&self, stop: &CancellationToken) -> Result<Pass, EngineError> {
        let now = self.clock.now();
        let policy = self.policy.borrow().clone();
        let mut pass = Pass {
            at: now,
            archived: 0,
            deleted: 0,
            deleted_tasks: 0,
            partitions_created: 0,
            partitions_dropped: 0,
        };
        if !policy.keeps_everything() {
            let mut after = String::new();
            'walk: loop {
                let names = self.store.run_workflows(&after, NAMES_PER_READ).await?;
                for workflow in &names {
                    if stop.is_cancelled() {
                        break 'walk;
                    }
                    if let Some(expiry) = policy.expiry(workflow, now) {
                        self.expire(workflow, expiry, &mut pass, stop).await?;
                    }
                }
                match names.last() {
                    Some(last) if names.len() == NAMES_PER_READ => after.clone_from(last),
                    _ => break,
                }
            }
        }
        let partitions = self.store.maintain_partitions(self.options.partitions, now).await?;
        pass.partitions_created = partitions.created.len();
        pass.partitions_dropped = partitions.dropped.len();
        Ok(pass)
    }

    /// Archives and deletes the runs of `workflow` that `expiry` lets go.
    async fn expire(
        &self,
        workflow: &str,
        expiry: Expiry,
        pass: &mut Pass,
        stop: &CancellationToken,
    ) -> Result<(), EngineError> {
        loop {
            let ids = self.store.expired_runs(workflow, expiry, self.options.batch_runs).await?;
            if ids.is_empty() {
                return Ok(());
            }
            let mut deleted = 0;
            let mut batch: Vec<ArchivedRun> = Vec::new();
            let mut tasks = 0;
            for id in ids {
                let Some(detail) = self.store.run_detail(id).await? else {
                    continue; // deleted meanwhile
                };
                let source = self.store.spec_source(id).await?;
                let samples = self.store.run_progress_samples(id).await?;
                tasks += detail.tasks.len();
                batch.push(ArchivedRun::new(&detail, source, self.clock.now()).with_samples(samples));
                if tasks >= self.options.batch_tasks {
                    deleted += self.archive_and_delete(std::mem::take(&mut batch), pass).await?;
                    tasks = 0;
                    tokio::task::yield_now().await;
                }
            }
            deleted += self.archive_and_delete(batch, pass).await?;
            if deleted == 0 {
                // Finished runs whose tasks are not all finished: the store
                // keeps them, and they would come first again.
                tracing::warn!(workflow, "retention found finished runs with live tasks; keeping them");
                return Ok(());
            }
            if stop.is_cancelled() {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
    }

    /// Writes `batch` to the archive, fsync'd, then deletes it; the number
    /// of runs deleted.
    async fn archive_and_delete(&self, batch: Vec<ArchivedRun>, pass: &mut Pass) -> Result<u64, EngineError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let ids: Vec<RunId> = batch.iter().map(|run| run.id).collect();
        let archive = self.archive.clone();
        let archived = batch.len() as u64;
        tokio::task::spawn_blocking(move || archive.append(&batch)).await.map_err(|e| {
            EngineError::Archive { path: String::new(), reason: format!("the writer failed: {e}") }
        })??;
        pass.archived += archived;
        let deleted = self.store.delete_runs(ids).await?;
        pass.deleted += deleted.runs.len() as u64;
        pass.deleted_tasks += deleted.tasks;
        Ok(deleted.runs.len() as u64)
    }
}
