//! The read side of the contract: records as stored.

use std::collections::BTreeMap;

use cairn_core::progress::Progress;
use cairn_core::record::{Actor, RunTransition, Transition};
use cairn_core::{LeaseToken, RunId, RunStatus, TaskId, TaskStatus, Timestamp};

#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub id: RunId,
    pub workflow: String,
    pub status: RunStatus,
    pub trigger: String,
    pub params: BTreeMap<String, String>,
    pub owner: Option<String>,
    pub spec_path: Option<String>,
    pub submitted_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
    /// Who first asked that the run be canceled
    /// ([`Change::RequestRunCancel`](crate::Change::RequestRunCancel)), if
    /// anyone did. Kept once the run is finished, whatever it ended as.
    pub cancel_requested_by: Option<Actor>,
    /// The cron tick that started the run ([`NewRun::schedule_tick`](crate::NewRun::schedule_tick)).
    pub schedule_tick: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaskRecord {
    pub id: TaskId,
    pub run: RunId,
    pub index: u32,
    pub name: String,
    pub status: TaskStatus,
    /// The current (or last) attempt, 0 before the first start.
    pub attempt: u32,
    pub max_attempts: u32,
    pub queue: Option<String>,
    pub submitted_at: Timestamp,
    /// The current attempt's start (set in the same transaction as RUNNING).
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// For a retry waiting in PENDING.
    pub not_before: Option<Timestamp>,
    /// Present exactly while RUNNING.
    pub lease: Option<StoredLease>,
    pub progress: Option<Progress>,
    pub progress_at: Option<Timestamp>,
    /// The result of the current (or last) attempt: empty while it runs and
    /// before the first; after a retry, the failed attempt's until the next start.
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub outputs: BTreeMap<String, String>,
    /// The latest checkpoint a worker reported, when its workflow keeps them.
    pub details: Option<serde_json::Value>,
}

/// One point of a task's progress history.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProgressSample {
    pub attempt: u32,
    pub at: Timestamp,
    pub percent: f32,
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLease {
    pub token: LeaseToken,
    pub worker: String,
    pub last_heartbeat_at: Timestamp,
    pub expires_at: Timestamp,
}

/// One attempt of a task: who ran it, when, and how it ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AttemptRecord {
    #[serde(skip)]
    pub task: TaskId,
    pub attempt: u32,
    pub worker: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// How the attempt ended: COMPLETED, FAILED (also when the task was then
    /// retried) or CANCELED.
    pub outcome: Option<TaskStatus>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunDetail {
    pub run: RunRecord,
    pub run_transitions: Vec<RunTransition>,
    /// Ordered by index.
    pub tasks: Vec<TaskRecord>,
    /// Each task's transitions in order, keyed by task id.
    pub transitions: BTreeMap<TaskId, Vec<Transition>>,
    pub attempts: BTreeMap<TaskId, Vec<AttemptRecord>>,
}

/// One task as [`crate::Store::task`] reads it: the task, its run, its log
/// in order and its attempts in order.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskDetail {
    pub run: RunRecord,
    pub task: TaskRecord,
    pub transitions: Vec<Transition>,
    pub attempts: Vec<AttemptRecord>,
}

/// A filter over runs, newest first.
#[derive(Clone, Debug, Default)]
pub struct RunQuery {
    /// Any of these statuses; empty = all.
    pub statuses: Vec<RunStatus>,
    pub workflow: Option<String>,
    /// At most this many runs; 0 means a default page of 100.
    pub limit: usize,
    /// Keyset cursor: only runs strictly older than this id.
    pub before: Option<RunId>,
}

/// A RUNNING task whose lease ran out.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpiredLease {
    pub task: TaskId,
    pub run: RunId,
    pub name: String,
    pub attempt: u32,
    pub max_attempts: u32,
    pub lease: StoredLease,
}
