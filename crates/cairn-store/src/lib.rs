//! Cairn's storage: the [`Store`] contract every backend satisfies, the
//! records it reads and writes, the embedded SQLite backend and the
//! PostgreSQL backend that several servers can share.
//!
//! Architecture invariant: every status change is written together with its
//! transition row in one transaction, and a change whose expected current
//! state (status, lease token) does not match is refused without writing
//! anything — the store, not its callers, is the last line that keeps the
//! transition table and lease fencing true.

pub mod alerts;
pub mod analytics;
pub mod audit;
pub mod change;
pub mod dispatch;
pub mod error;
pub mod history;
pub mod model;
pub mod postgres;
pub mod reaped;
pub mod retention;
pub mod sqlite;
pub mod tokens;
pub mod webhooks;

mod conflict;
mod counts;
mod import;
mod query;
mod search;
mod validate;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::future::Future;

pub use alerts::{AlertKey, AlertQuery, AlertWrite, NewAlert};
pub use analytics::{
    ExpectedDurations, FailingStep, PhaseQuery, PhaseStats, SlowTask, StepExpected, StepPhases,
};
pub use audit::{AuditEvent, AuditKind, AuditQuery, NewAuditEvent};
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
pub use import::FinishedRun;
pub use model::{
    AttemptRecord, ExpiredLease, ProgressSample, RunDetail, RunQuery, RunRecord, StoredLease, TaskDetail,
    TaskRecord,
};
pub use postgres::{PostgresOptions, PostgresStore};
pub use reaped::{ReapedAttempt, ReapedCursor, ReapedQuery};
pub use retention::{Deleted, LogPartition, PartitionChanges, PartitionPolicy};
pub use search::{PlannedStatement, QueryPlan};
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};
pub use tokens::{NewSession, NewToken, SessionRecord, TokenRecord};
pub use webhooks::{AttemptNext, Delivery, DeliveryAttempt, DeliveryQuery, DeliveryState, NewDelivery};

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

    // ---- alerts (see `alerts`) ------------------------------------------

    /// Raises or resolves an alert, in one transaction that publishes
    /// [`Notice::Alert`] when it commits. Answers the id of the alert it
    /// raised or resolved; `None` when there was nothing to do (the key
    /// already has an open alert, or has none to resolve). A resolution is
    /// never dated before its alert was raised.
    fn write_alert(
        &self,
        write: AlertWrite,
    ) -> impl Future<Output = Result<Option<cairn_core::AlertId>, StoreError>> + Send;

    /// Alerts `q` selects, newest first.
    fn alerts(
        &self,
        q: AlertQuery,
    ) -> impl Future<Output = Result<Vec<cairn_core::alert::Alert>, StoreError>> + Send;

    fn alert(
        &self,
        id: cairn_core::AlertId,
    ) -> impl Future<Output = Result<Option<cairn_core::alert::Alert>, StoreError>> + Send;

    // ---- API tokens (see `tokens`) ---------------------------------------

    /// Records a token. Refused with [`StoreError::InvalidChange`] while a
    /// token of that name is not revoked (one past its expiry gives the name
    /// up, recorded revoked at its expiry).
    fn create_token(&self, token: NewToken) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every token, revoked and expired ones too, newest first.
    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRecord>, StoreError>> + Send;

    /// Revokes the token not yet revoked whose id, or else name, is
    /// `name_or_id`, as of `at` (never before it was made); answers it, or
    /// `None` when there is none. Lookups after it see the revocation.
    fn revoke_token(
        &self,
        name_or_id: String,
        at: Timestamp,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// The token whose secret has this SHA-256, revoked or expired too (the
    /// caller checks [`TokenRecord::is_live`]). Records the use at `now`
    /// when the last one recorded is a minute old or more, together with a
    /// `token_used` audit event (actor and target: the token's name), and
    /// answers the record with it.
    fn token_by_hash(
        &self,
        hash: [u8; 32],
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// Whether any token is live at `now`.
    fn any_live_token(&self, now: Timestamp) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records a web session, and deletes the sessions that ended before
    /// its start.
    fn start_session(&self, session: NewSession) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The session whose key has this SHA-256, with its token, ended ones
    /// too (the caller checks [`SessionRecord::is_live`]). Records the
    /// token's use as [`Store::token_by_hash`] does.
    fn session_by_hash(
        &self,
        hash: [u8; 32],
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send;

    /// Ends the session whose key has this SHA-256 at `at`, if it is live
    /// then; answers the token it acted as, or `None` when there was no
    /// such session.
    fn end_session(
        &self,
        hash: [u8; 32],
        at: Timestamp,
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    // ---- the audit log (see `audit`) --------------------------------------

    /// Adds an event to the audit log. ([`Store::token_by_hash`] adds its
    /// own `token_used` events, with the use it records.)
    fn record_audit(&self, event: NewAuditEvent) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The events `q` selects, newest first.
    fn audit_events(&self, q: AuditQuery)
    -> impl Future<Output = Result<Vec<AuditEvent>, StoreError>> + Send;

    // ---- the webhook outbox (see `webhooks`) -------------------------------

    /// Enqueues a delivery, due at its `created_at`, unless one of the same
    /// webhook and key is there already (whatever its state): answers the
    /// new id, or `None` for a delivery enqueued before.
    fn enqueue_delivery(
        &self,
        d: NewDelivery,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// Up to `limit` pending deliveries due at `now`, the longest due first.
    fn due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Delivery>, StoreError>> + Send;

    /// Records an attempt at a pending delivery and what follows it
    /// (delivered, retry at a time, given up). Answers whether it was
    /// recorded: `false` when the delivery is unknown or no longer pending.
    fn record_delivery_attempt(
        &self,
        a: DeliveryAttempt,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The deliveries `q` selects, newest first.
    fn webhook_deliveries(
        &self,
        q: DeliveryQuery,
    ) -> impl Future<Output = Result<Vec<Delivery>, StoreError>> + Send;

    // ---- reaped attempts (see `reaped`) -----------------------------------

    /// The attempts the reaper ended that `q` selects, newest first, read
    /// from the transition log through an index of the reaper's
    /// transitions alone.
    fn reaped_attempts(
        &self,
        q: ReapedQuery,
    ) -> impl Future<Output = Result<Vec<ReapedAttempt>, StoreError>> + Send;

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

    // ---- phase analytics (see `analytics`) -------------------------------

    /// For the tasks that finished in `q.finished`, per workflow and step:
    /// how they ended, the p50/p95/max of their blocked, pending and
    /// execution times, the slowest tasks, and each workflow's most failing
    /// step. Reads at most `q.sample_cap` of the newest tasks per step (and
    /// says where that cut the window), from one index and by skips along
    /// it: bounded by the number of steps, never by history's size. A bad
    /// query is [`StoreError::InvalidQuery`] naming the field.
    fn phase_stats(&self, q: PhaseQuery) -> impl Future<Output = Result<PhaseStats, StoreError>> + Send;

    /// How long `workflow`'s runs (start to finish) and each of its steps
    /// (execution; submission to finish) usually take: p50 and p95 of the
    /// latest [`analytics::EXPECTED_SAMPLES`] completed ones, with the
    /// number of samples, so callers can refuse to predict from too few.
    fn expected_durations(
        &self,
        workflow: &str,
    ) -> impl Future<Output = Result<ExpectedDurations, StoreError>> + Send;

    // ---- retention (see `retention`) -------------------------------------

    /// The workflows that have runs, in name order, after `after` (`""`:
    /// from the first), at most `limit`: one index seek per name, however
    /// many runs each has.
    fn run_workflows(
        &self,
        after: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Up to `limit` finished runs of `workflow` that `expiry` lets go, from
    /// indexes only: for [`Expiry::FinishedBefore`] the earliest finished
    /// first, for [`Expiry::BeyondNewest`] the oldest first. A run listed
    /// is deleted by [`Store::delete_runs`] only if its tasks are all
    /// finished too.
    ///
    /// [`Expiry::FinishedBefore`]: cairn_core::retention::Expiry::FinishedBefore
    /// [`Expiry::BeyondNewest`]: cairn_core::retention::Expiry::BeyondNewest
    fn expired_runs(
        &self,
        workflow: &str,
        expiry: cairn_core::retention::Expiry,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RunId>, StoreError>> + Send;

    /// Deletes the runs of `ids` that are finished and whose tasks all are,
    /// with everything that hangs off them, in one transaction that also
    /// subtracts them from the status counts. Other ids — unknown runs,
    /// live work — are left alone: running work is never deleted, whoever
    /// asks. On PostgreSQL the log rows of the deleted tasks go later, with
    /// their partition ([`Store::maintain_partitions`]). Keep batches small
    /// (a hundred runs or so): SQLite's one writer does nothing else
    /// meanwhile.
    fn delete_runs(&self, ids: Vec<RunId>) -> impl Future<Output = Result<Deleted, StoreError>> + Send;

    /// PostgreSQL: keeps a partition of the logs ready ahead of the newest
    /// task and drops those of the ranges with no task left (see
    /// [`retention`]); the leader's job, now and then. SQLite: nothing to do.
    fn maintain_partitions(
        &self,
        policy: PartitionPolicy,
        now: Timestamp,
    ) -> impl Future<Output = Result<PartitionChanges, StoreError>> + Send;

    /// The ranges of the logs' partitions, with the span of time each holds
    /// (PostgreSQL); none on SQLite.
    fn log_partitions(&self) -> impl Future<Output = Result<Vec<LogPartition>, StoreError>> + Send;

    /// The progress samples of every task of a run, by task, each oldest
    /// first (what [`Store::progress_samples`] reads of one task), in one
    /// read: for the archive.
    fn run_progress_samples(
        &self,
        run: RunId,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<TaskId, Vec<ProgressSample>>, StoreError>> + Send;

    // ---- bulk import (see `import`) --------------------------------------

    /// Stores finished runs with their whole records (run, workflow text,
    /// labels, tasks, every transition, attempts, progress samples) in one
    /// transaction, as if their changes had gone through [`Store::apply`]:
    /// they read back, search and count alike. Refuses the whole call with
    /// [`StoreError::InvalidImport`], writing nothing, when a run is not
    /// finished, its record could not have been written by the store (a
    /// log outside the transition table or going back in time, attempts or
    /// times that disagree with the log), or its id, a task's id or its
    /// schedule tick is taken. For restoring archived history and loading
    /// large histories quickly; runs in submission order load fastest.
    fn import_runs(
        &self,
        runs: std::sync::Arc<Vec<FinishedRun>>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
