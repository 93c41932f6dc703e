//! The seam between the API and the engine: [`Control`], everything the
//! server asks for that changes state, and [`ControlError`], how it fails.
//!
//! The server reads from the [`Store`](cairn_store::Store) directly and
//! writes only through [`Control`], so the engine stays the single writer of
//! statuses (it owns the in-memory state of every run it drives) and the API
//! knows nothing of how runs are driven.
//!
//! Architecture invariant: a call that returns `Err` changed nothing, except
//! [`ControlError::Internal`], whose outcome is unknown (see
//! [`ControlError::is_certainly_not_applied`]): a worker that gets it for a
//! completion repeats the same completion, which is idempotent.

use std::future::Future;

use bytes::Bytes;
use cairn_core::event::Event;
use cairn_core::protocol::{
    CompleteRequest, CompleteResponse, HeartbeatRequest, HeartbeatResponse, LeaseRequest, LeaseResponse,
    LogStream,
};
use cairn_core::record::Actor;
use cairn_core::{LeaseToken, RunId, TaskId};
use cairn_store::StoreError;
use tokio::sync::broadcast;

/// What the server asks of the engine. Implemented by the engine's run
/// manager for `cairn serve`; the conformance suite (feature
/// `conformance`) holds the behaviour every implementation must have.
pub trait Control: Send + Sync + 'static {
    /// Starts a run of the workflow named `workflow` (as the server's
    /// [`Catalog`](crate::catalog::Catalog) knows it), with `params` as
    /// `cairn run -p` takes them: `KEY=VALUE`, or a bare value for the next
    /// positional param. The run is stored before this returns.
    ///
    /// `NotFound` for an unknown workflow; `Invalid { field: "params", .. }`
    /// when the workflow refuses the params; `Conflict` when the workflow
    /// cannot run now (its file is broken, `max_active_runs` is reached).
    fn trigger(
        &self,
        workflow: &str,
        params: Vec<String>,
        actor: Actor,
    ) -> impl Future<Output = Result<RunId, ControlError>> + Send;

    /// Asks for `run` to be canceled: ready and blocked tasks end at once,
    /// running ones when their executor has stopped them. Returns when the
    /// request is recorded, not when the run has ended. Canceling a run that
    /// is already being canceled is fine; one that has finished is `Conflict`.
    fn cancel(&self, run: RunId, actor: Actor) -> impl Future<Output = Result<(), ControlError>> + Send;

    /// Starts a new run of the same workflow text and params as `run` (which
    /// must have finished), that reruns `from_step` — by default the first
    /// step that did not complete — and everything downstream of it; the
    /// steps before it are carried over as they ended. Returns the new run's id.
    ///
    /// `Conflict` when `run` has not finished or nothing failed;
    /// `Invalid { field: "from_step", .. }` for a step the run does not have.
    fn retry(
        &self,
        run: RunId,
        from_step: Option<String>,
        actor: Actor,
    ) -> impl Future<Output = Result<RunId, ControlError>> + Send;

    /// Leases up to `req.max_tasks` PENDING tasks of `req.queue` to
    /// `req.worker_id`, waiting up to `req.wait_ms` for the first. Each task's
    /// RUNNING transition, start, first heartbeat and lease expiry are stored
    /// before this returns. An empty list is a normal answer.
    fn lease(&self, req: LeaseRequest) -> impl Future<Output = Result<LeaseResponse, ControlError>> + Send;

    /// Extends every lease named in `req` and records the progress each item
    /// carries. One answer per item, in order; a stale token is an item with
    /// status `lease_stale` (the batch still succeeds), never an error.
    fn heartbeat(
        &self,
        req: HeartbeatRequest,
    ) -> impl Future<Output = Result<HeartbeatResponse, ControlError>> + Send;

    /// Ends the attempt that `req.lease_token` holds on `task`. Repeating it
    /// with the same token answers the same and changes nothing more;
    /// another token is `LeaseStale`; an unknown task is `NotFound`.
    fn complete(
        &self,
        task: TaskId,
        req: CompleteRequest,
    ) -> impl Future<Output = Result<CompleteResponse, ControlError>> + Send;

    /// Appends `bytes` to the `stream` log of the attempt that `token` holds
    /// on `task` (a remote worker streaming its step's output), in the file
    /// `cairn_engine::attempt_log_paths` names under the server's log root —
    /// where `GET /runs/{id}/logs/{step}` reads and follows it. `LeaseStale`
    /// when `token` is not the current lease.
    fn append_log(
        &self,
        task: TaskId,
        token: LeaseToken,
        stream: LogStream,
        bytes: Bytes,
    ) -> impl Future<Output = Result<(), ControlError>> + Send;

    /// A new subscription to live events, from now on. The engine sends with
    /// `broadcast::Sender::send`, which never waits: a subscriber that falls
    /// behind loses the oldest events (and the API tells it how many).
    fn subscribe(&self) -> broadcast::Receiver<Event>;
}

/// Why a [`Control`] call failed. The server maps each to a stable code and
/// HTTP status (see [`crate::error::ErrorCode`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// `what` names it for people, e.g. `run 01J…` or `workflow "etl"`.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The token is not the task's current lease: the caller lost it.
    #[error("the lease on task {task} is not held by this token any more; stop working on the task")]
    LeaseStale { task: TaskId },
    /// The request clashes with the current state, e.g. the run has finished.
    #[error("{message}")]
    Conflict { message: String },
    /// A value the engine refuses; `field` names it (`params`, `from_step`, …).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The engine cannot serve now (shutting down, store busy) and did
    /// nothing; retrying later is safe.
    #[error("{message}")]
    Unavailable { message: String },
    /// Something failed inside; whether the call took effect is unknown.
    #[error("{message}")]
    Internal { message: String },
}

impl ControlError {
    /// True when the failed call certainly changed nothing, so repeating it
    /// cannot apply it twice.
    pub fn is_certainly_not_applied(&self) -> bool {
        !matches!(self, ControlError::Internal { .. })
    }
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        match e {
            // Busy or unreachable: the batch was refused as a whole.
            StoreError::Database(_) | StoreError::Open { .. } => {
                ControlError::Unavailable { message: format!("the store cannot answer now: {e}") }
            }
            _ => ControlError::Internal { message: e.to_string() },
        }
    }
}
