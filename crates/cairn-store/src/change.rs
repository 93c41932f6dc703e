//! The write side of the contract: the changes a batch is made of, and what
//! became of each.

use std::collections::BTreeMap;

use cairn_core::lease::Lease;
use cairn_core::progress::Progress;
use cairn_core::record::{Actor, RunTransition, Transition};
use cairn_core::{LeaseToken, RunId, TaskId, Timestamp};

/// One write. A batch applies many in order in one transaction.
#[derive(Clone, Debug)]
pub enum Change {
    /// A new run (QUEUED) with all its tasks (SUBMITTED), and their creation transitions.
    CreateRun(NewRun),
    /// A status change of a run.
    Run(RunChange),
    /// A status change of a task.
    Task(TaskChange),
    /// A lease extension, with the latest progress if any. Not a status change.
    Heartbeat(Heartbeat),
    /// A new owner takes over an unfinished run (a server resuming the runs
    /// of one that died). Refused unless the current owner is `from`.
    AdoptRun(AdoptRun),
    /// A `PENDING` remote task waits in its queue for a claim (see
    /// [`crate::dispatch`]). Refused unless the task is `PENDING`; replaces
    /// an offer of the same task still waiting. Publishes
    /// [`Notice::Offered`](crate::Notice::Offered). Any change that moves the
    /// task out of `PENDING` deletes its offer in the same transaction.
    Offer(crate::dispatch::Offer),
    /// The driver takes a waiting offer back (to cancel the task). Refused
    /// when there is none: a claim took it first.
    Withdraw { task: TaskId },
    /// Asks the worker holding `token` to stop: renewals answer
    /// `cancel_requested` from now on (until the attempt ends). Refused
    /// unless that lease is current.
    RequestCancel { task: TaskId, token: LeaseToken },
    /// A worker's result, for the run's driver to apply. Refused unless
    /// `token` is the current lease of a `RUNNING` task (the same result
    /// posted again is applied and changes nothing). Ending the attempt
    /// (`TaskUpdate::EndAttempt`) deletes it. Publishes
    /// [`Notice::Posted`](crate::Notice::Posted) when written.
    PostResult(crate::dispatch::PostedResult),
    /// `actor` asks that the whole run be canceled, on whichever server the
    /// request reached: the run records it
    /// ([`RunRecord::cancel_requested_by`](crate::RunRecord::cancel_requested_by))
    /// and its driver, wherever it runs, hears of it by
    /// [`Notice::CancelRequested`](crate::Notice::CancelRequested) and
    /// cancels the run as any other cancel. Not a status change: the driver
    /// makes those. Refused when the run does not exist or is finished.
    /// Asking again is applied and keeps the first actor (the request the
    /// driver may already be acting on); every applied request publishes the
    /// notice again.
    RequestRunCancel { run: RunId, actor: Actor },
}

#[derive(Clone, Debug)]
pub struct AdoptRun {
    pub run: RunId,
    pub from: Option<String>,
    pub to: String,
}

#[derive(Clone, Debug)]
pub struct NewRun {
    pub id: RunId,
    pub workflow: String,
    /// How the run came to be: `manual`, `schedule`, `api`, `retry`.
    pub trigger: String,
    /// The workflow file's text, kept so the run can be inspected and retried
    /// as it was, even after the file changes.
    pub spec_source: String,
    pub spec_path: Option<String>,
    pub params: BTreeMap<String, String>,
    /// Who owns the run's execution, e.g. `local:HOST:PID`; recovery checks it.
    pub owner: Option<String>,
    /// The creation transition (`None -> QUEUED`).
    pub transition: RunTransition,
    pub tasks: Vec<NewTask>,
    /// The cron tick that started this run (trigger `schedule`). A second
    /// run of the same workflow for the same tick is refused as a conflict,
    /// so a tick fires once even when two servers both think they lead.
    pub schedule_tick: Option<Timestamp>,
    /// The workflow's `labels`, each `key` or `key=value`, for searches.
    pub labels: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct NewTask {
    pub id: TaskId,
    /// Position in the workflow (steps first, then handlers).
    pub index: u32,
    pub name: String,
    /// The queue for remote steps; `None` runs on the local executor.
    pub queue: Option<String>,
    /// Attempts allowed in all (1 + retry limit).
    pub max_attempts: u32,
    /// The creation transition (`None -> SUBMITTED`).
    pub transition: Transition,
}

#[derive(Clone, Debug)]
pub struct RunChange {
    pub run: RunId,
    pub transition: RunTransition,
    /// Why the run failed, for the run record (also in the transition's reason).
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct TaskChange {
    pub task: TaskId,
    /// The transition to record; its `from` is checked against the stored status.
    pub transition: Transition,
    pub update: TaskUpdate,
}

/// What else a status change writes, by the kind of change. The store
/// refuses (`StoreError::InvalidChange`) a pairing that does not fit the transition.
#[derive(Clone, Debug)]
pub enum TaskUpdate {
    /// A change outside RUNNING (promotion, skip, abandonment, cancel before start).
    Plain,
    /// `PENDING -> RUNNING`: the lease is written with the transition, and the attempt begins.
    Start { lease: Lease, worker: String },
    /// `RUNNING -> …`: the attempt ends. Refused as a conflict unless `token`
    /// is the task's current lease token.
    EndAttempt {
        token: LeaseToken,
        result: AttemptResult,
        /// For `RUNNING -> PENDING` (a retry): not to be started before this time.
        retry_at: Option<Timestamp>,
    },
}

/// What an attempt produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttemptResult {
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// Captured output variables (`output:`).
    pub outputs: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct Heartbeat {
    pub task: TaskId,
    pub token: LeaseToken,
    pub at: Timestamp,
    pub lease_expires_at: Timestamp,
    /// The latest progress, when it changed since the last heartbeat.
    pub progress: Option<Progress>,
    /// Also keep `progress` as a sample of the task's progress history.
    pub sample: bool,
    /// The worker's latest checkpoint, when it is to be kept.
    pub details: Option<serde_json::Value>,
}

/// What became of one change of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Not applied because the stored state did not match; nothing was written.
    Conflict(String),
}

impl Outcome {
    pub fn is_applied(&self) -> bool {
        matches!(self, Outcome::Applied)
    }
}
