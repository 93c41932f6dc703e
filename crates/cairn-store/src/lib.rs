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
pub mod dispatch;
pub mod error;
pub mod history;
pub mod model;
pub mod postgres;
pub mod sqlite;

mod conflict;
mod counts;
mod query;
mod search;
mod validate;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::future::Future;

pub use change::{
    AdoptRun, AttemptResult, Change, Heartbeat, NewRun, NewTask, Outcome, RunChange, TaskChange, TaskUpdate,
};
pub use dispatch::{
    ClaimOutcome, ClaimRequest, Claimed, LeaseState, Membership, Notice, Offer, PostedResult, Renewal,
};
pub use error::StoreError;
pub use history::{
    Bucket, CountQuery, Cursor, Order, RunFilter, RunPage, RunSearch, RunSort, TaskFilter, TaskPage, TaskRow,
    TaskSearch, TimeRange, TrendPoint, WorkflowTrends,
};
pub use model::{
    AttemptRecord, ExpiredLease, ProgressSample, RunDetail, RunQuery, RunRecord, StoredLease, TaskDetail,
    TaskRecord,
};
pub use postgres::{PostgresOptions, PostgresStore};
pub use search::{PlannedStatement, QueryPlan};
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
    fn apply(&self, changes: Vec<Change>) -> impl Future<Output = Result<Vec<Outcome>, StoreError>> + Send {
        self.apply_shared(std::sync::Arc::new(changes))
    }

    /// [`Store::apply`] of a batch the caller keeps a handle on, to apply it
    /// again without a copy after an error that applied nothing.
    fn apply_shared(
        &self,
        changes: std::sync::Arc<Vec<Change>>,
    ) -> impl Future<Output = Result<Vec<Outcome>, StoreError>> + Send;

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

    // ---- dispatch across servers (see `dispatch`) ----------------------

    /// Leases up to `req.max` offered tasks of `req.queues` whose `ready_at`
    /// has come, oldest offer first, in one transaction: each offer is taken
    /// and its task moves `PENDING -> RUNNING` (attempt + 1, a fresh random
    /// token, `started_at` = heartbeat = `req.now`, expiry `now + lease_ms`,
    /// the attempt row, the transition `attempt N started` by `worker:W`).
    /// Dated no earlier than the task's last transition, whatever the
    /// claimer's clock says. Concurrent claims never take the same offer
    /// and never wait for each other's rows. An offer whose task is no
    /// longer `PENDING` is deleted and skipped. Publishes
    /// [`Notice::Claimed`] for the tasks of runs `req.server` does not own.
    fn claim(&self, req: ClaimRequest) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;

    /// Extends the leases of `renewals` (by each task's `lease_ms`) and
    /// stores their progress and details (as [`Change::Heartbeat`] does,
    /// without progress samples), in one transaction; answers in order. A
    /// renewal whose lease is not current or already expired is
    /// [`LeaseState::Stale`] and writes nothing; the others still commit.
    fn renew(
        &self,
        renewals: Vec<Renewal>,
    ) -> impl Future<Output = Result<Vec<LeaseState>, StoreError>> + Send;

    /// The result posted for `task`'s current attempt, if any.
    fn posted_result(
        &self,
        task: TaskId,
    ) -> impl Future<Output = Result<Option<PostedResult>, StoreError>> + Send;

    /// What writers commit that concerns dispatch, as it commits: every
    /// notice committed after this returns reaches the receiver, or a
    /// [`Notice::Resync`] says some may have been missed (PostgreSQL: the
    /// listening connection was lost and is back). A receiver that falls
    /// behind gets `RecvError::Lagged` from the broadcast channel: that too
    /// means notices were lost, and its owner must resync (read the state
    /// again) exactly as for [`Notice::Resync`].
    fn notices(&self) -> tokio::sync::broadcast::Receiver<Notice>;

    /// Joins the servers of this store as `server` (the owner id recorded on
    /// the runs it drives) and takes part in electing the one leader.
    /// Returns once the server counts as alive for [`Store::server_alive`].
    fn join(&self, server: &str) -> impl Future<Output = Result<Membership, StoreError>> + Send;

    /// Whether the server that recorded itself as `owner` is still a live
    /// member; `None` when this store cannot tell (SQLite: the engine
    /// checks the owner's process instead).
    fn server_alive(&self, owner: &str) -> impl Future<Output = Result<Option<bool>, StoreError>> + Send;

    // ---- history (see `history`) ----------------------------------------

    /// One page of the runs `q` selects, from an index (see [`history`]).
    fn search_runs(&self, q: RunSearch) -> impl Future<Output = Result<RunPage, StoreError>> + Send;

    /// One page of the tasks `q` selects, from an index.
    fn search_tasks(&self, q: TaskSearch) -> impl Future<Output = Result<TaskPage, StoreError>> + Send;

    /// Runs submitted in the window, by status (statuses with none are absent).
    /// The window is `[from, to)` in whole minutes: `from` rounded down, `to`
    /// up (a window empty before rounding stays empty); an open end takes
    /// everything on that side. Reads only the aggregate rows of the window
    /// (whole hours from the hour table, the edges from the minute table),
    /// never runs or tasks (see `counts`).
    fn run_counts(
        &self,
        q: CountQuery,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<cairn_core::RunStatus, u64>, StoreError>> + Send;

    /// Tasks submitted in the window (each at its own submission time, of
    /// its run's workflow), by status, as [`Store::run_counts`].
    fn task_counts(
        &self,
        q: CountQuery,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<cairn_core::TaskStatus, u64>, StoreError>> + Send;

    /// Runs submitted in each bucket of the window, by status, oldest
    /// bucket first; every bucket of the window is present (empty ones too).
    /// Buckets are aligned in UTC (a day starts at midnight UTC) and each
    /// counts only the part of the window it covers, so the points add up to
    /// [`Store::run_counts`] of the same query. The window needs its `from`
    /// and at most 10,000 buckets, else [`StoreError::InvalidQuery`]; an open
    /// `to` ends with the newest minute any run was submitted in (the store
    /// reads no clock); an empty window, or an open one with no run
    /// submitted since `from`, has no points.
    fn run_trend(
        &self,
        q: CountQuery,
        bucket: Bucket,
    ) -> impl Future<Output = Result<Vec<TrendPoint<cairn_core::RunStatus>>, StoreError>> + Send;

    /// [`Store::run_trend`] for each workflow apart: every workflow of
    /// `q.workflows`, or when it is empty every workflow with a run in the
    /// window.
    fn workflow_trends(
        &self,
        q: CountQuery,
        bucket: Bucket,
    ) -> impl Future<Output = Result<WorkflowTrends, StoreError>> + Send;
}
