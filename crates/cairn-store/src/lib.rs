//! Cairn's storage: the [`Store`] contract every backend satisfies, the
//! records it reads and writes, the embedded SQLite backend and the
//! PostgreSQL backend that several servers can share.
//!
//! Architecture invariant: every status change is written together with its
//! transition row in one transaction, and a change whose expected current
//! state (status, lease token) does not match is refused without writing
//! anything — the store, not its callers, is the last line that keeps the
//! transition table and lease fencing true.

pub mod change;
pub mod error;
pub mod model;
pub mod postgres;
pub mod sqlite;

mod conflict;
mod query;
mod validate;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::future::Future;

pub use change::{
    AdoptRun, AttemptResult, Change, Heartbeat, NewRun, NewTask, Outcome, RunChange, TaskChange, TaskUpdate,
};
pub use error::StoreError;
pub use model::{
    AttemptRecord, ExpiredLease, ProgressSample, RunDetail, RunQuery, RunRecord, StoredLease, TaskDetail,
    TaskRecord,
};
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};

use cairn_core::{RunId, TaskId, Timestamp};

/// What the engine needs from storage. Implemented by [`SqliteStore`] (the
/// embedded default) and [`PostgresStore`]; `conformance` (feature
/// `conformance`) holds the one test suite every implementation must pass.
///
/// Writes go through [`Store::apply`] in batches, so a backend can commit many
/// changes arriving together in one transaction (group commit).
pub trait Store: Send + Sync + 'static {
    /// Applies `changes` in order, in one transaction, and reports each one's
    /// outcome in the same order. A change whose precondition fails (the task
    /// is not in the expected status, or the lease token is stale) is
    /// [`Outcome::Conflict`] and writes nothing; the others still commit.
    /// A change dated before its task's (or run's) last transition is a
    /// conflict too: one task's timestamps never go backwards.
    /// `Err` means nothing in the batch was committed: a change outside the
    /// transition table or paired with the wrong [`TaskUpdate`] fails the
    /// whole batch with [`StoreError::InvalidChange`].
    fn apply(&self, changes: Vec<Change>) -> impl Future<Output = Result<Vec<Outcome>, StoreError>> + Send;

    fn run(&self, id: RunId) -> impl Future<Output = Result<Option<RunRecord>, StoreError>> + Send;

    /// The workflow text a run was submitted with ([`NewRun::spec_source`]),
    /// to show or retry the run as it was.
    fn spec_source(&self, run: RunId) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// A task's progress history (sparse samples), oldest first.
    fn progress_samples(
        &self,
        task: TaskId,
    ) -> impl Future<Output = Result<Vec<ProgressSample>, StoreError>> + Send;

    /// A run with its tasks, every transition (task and run) and every attempt.
    fn run_detail(&self, id: RunId) -> impl Future<Output = Result<Option<RunDetail>, StoreError>> + Send;

    /// One task with its run, its whole transition log and every attempt, as
    /// [`Store::run_detail`] would show it; `None` for an unknown id. Reads by
    /// index only, however many tasks the run has.
    fn task(&self, id: TaskId) -> impl Future<Output = Result<Option<TaskDetail>, StoreError>> + Send;

    /// Runs whose id starts with `prefix` (case-insensitive), newest first, at most `limit`.
    fn runs_by_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send;

    /// Runs matching `query`, newest first.
    fn list_runs(&self, query: RunQuery) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send;

    /// Runs not yet terminal (QUEUED or RUNNING), for recovery.
    fn active_runs(&self) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send;

    /// RUNNING tasks whose lease expired before `now`, oldest expiry first.
    fn expired_leases(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ExpiredLease>, StoreError>> + Send;

    /// The earliest lease expiry of any RUNNING task, to wake the reaper then.
    fn next_lease_expiry(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;
}
