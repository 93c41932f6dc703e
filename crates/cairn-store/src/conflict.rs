//! Why a change was refused: the texts of [`crate::Outcome::Conflict`],
//! shared by every backend so that callers (and the conformance suite, which
//! asserts them) see the same words whatever stores the records.
//!
//! Each function gets the stored state the compare-and-set met and names the
//! first precondition it breaks. `None` means the state would have let the
//! change apply: it moved on while the change was being applied (possible
//! only where writers run concurrently, as on PostgreSQL), and the backend
//! reads the state again or falls back to [`task_changed_meanwhile`].

use cairn_core::{LeaseToken, RunId, RunStatus, TaskId, TaskStatus, Timestamp};

use crate::change::{AdoptRun, Heartbeat, RunChange, TaskChange, TaskUpdate};

/// What a task change is checked against.
#[derive(Clone, Debug)]
pub(crate) struct TaskState {
    pub(crate) status: u8,
    pub(crate) attempt: u32,
    pub(crate) last_at: i64,
    pub(crate) token: Option<LeaseToken>,
}

/// What a run change is checked against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunState {
    pub(crate) status: u8,
    pub(crate) last_at: i64,
}

pub(crate) fn status_name(code: u8) -> &'static str {
    TaskStatus::from_code(code).map_or("(unknown status)", |s| s.as_str())
}

/// Why `change`, expecting `from`, does not fit the task's stored `state`
/// (`None`: no such task).
pub(crate) fn task_change(
    change: &TaskChange,
    from: TaskStatus,
    state: Option<&TaskState>,
) -> Option<String> {
    let t = &change.transition;
    let token = match &change.update {
        TaskUpdate::EndAttempt { token, .. } => Some(*token),
        _ => None,
    };
    let task = change.task;
    match state {
        None => Some(format!("task {task} does not exist")),
        Some(state) if state.status != from.code() => {
            Some(format!("task {task} is {}, not {from}", status_name(state.status)))
        }
        Some(state) if token.is_some() && state.token != token => Some(stale_token(task)),
        Some(state) if state.last_at > t.at.as_micros() => Some(format!(
            "task {task}: the change to {} at {} is before its last change at {}; \
             a task's timestamps never go backwards",
            t.to,
            t.at,
            Timestamp::from_micros(state.last_at)
        )),
        Some(state) if t.to == TaskStatus::Running && state.attempt >= t.attempt => Some(format!(
            "task {task}: attempt {} does not follow its current attempt {}; \
             each start must number a new attempt",
            t.attempt, state.attempt
        )),
        Some(_) => None,
    }
}

/// The last word on a task change whose refusal no stored state explains.
pub(crate) fn task_changed_meanwhile(task: TaskId) -> String {
    format!("task {task} changed while this change was applied")
}

pub(crate) fn stale_token(task: TaskId) -> String {
    format!("stale lease token for task {task}")
}

/// Why a heartbeat does not fit the task's stored `state`.
pub(crate) fn heartbeat(hb: &Heartbeat, state: Option<&TaskState>) -> Option<String> {
    lease(hb.task, hb.token, state)
}

/// Why a change that needs `token` to be the current lease of a RUNNING
/// `task` (a heartbeat, a cancel request, a posted result) does not fit its
/// stored `state`.
pub(crate) fn lease(task: TaskId, token: LeaseToken, state: Option<&TaskState>) -> Option<String> {
    match state {
        None => Some(format!("task {task} does not exist")),
        Some(state) if state.status != TaskStatus::Running.code() => {
            Some(format!("task {task} is {}, not RUNNING", status_name(state.status)))
        }
        Some(state) if state.token != Some(token) => Some(stale_token(task)),
        Some(_) => None,
    }
}

/// Why an offer of `task` does not fit its stored `state`: only a PENDING
/// task waits in a queue.
pub(crate) fn offer(task: TaskId, state: Option<&TaskState>) -> Option<String> {
    let pending = TaskStatus::Pending;
    match state {
        None => Some(format!("task {task} does not exist")),
        Some(state) if state.status != pending.code() => {
            Some(format!("task {task} is {}, not {pending}", status_name(state.status)))
        }
        Some(_) => None,
    }
}

/// An offer of, or a result for, a task without a queue: such a task runs
/// where its run is driven, and never meets a worker.
pub(crate) fn no_queue(task: TaskId) -> String {
    format!(
        "task {task} has no queue: it runs where its run is driven, is never offered and gets no posted result"
    )
}

/// A withdrawal that found no offer: a claim took it first (or there never was one).
pub(crate) fn no_offer(task: TaskId) -> String {
    format!("task {task} has no waiting offer: it was claimed, withdrawn or never offered")
}

/// Why `change`, expecting `from`, does not fit the run's stored `state`
/// (`None`: no such run).
pub(crate) fn run_change(change: &RunChange, from: RunStatus, state: Option<RunState>) -> Option<String> {
    let t = &change.transition;
    let run = change.run;
    match state {
        None => Some(format!("run {run} does not exist")),
        Some(state) if state.status != from.code() => {
            let status = RunStatus::from_code(state.status).map_or("(unknown)", |s| s.as_str());
            Some(format!("run {run} is {status}, not {from}"))
        }
        Some(state) if state.last_at > t.at.as_micros() => Some(format!(
            "run {run}: the change to {} at {} is before its last change at {}; \
             a run's timestamps never go backwards",
            t.to,
            t.at,
            Timestamp::from_micros(state.last_at)
        )),
        Some(_) => None,
    }
}

/// The last word on a run change whose refusal no stored state explains.
pub(crate) fn run_changed_meanwhile(run: RunId) -> String {
    format!("run {run} changed while this change was applied")
}

/// Why a cancel request of `run` does not fit the run's stored `state`
/// (`None`: no such run): only a run not yet finished can be canceled.
pub(crate) fn run_cancel(run: RunId, state: Option<RunState>) -> Option<String> {
    let Some(state) = state else {
        return Some(format!("run {run} does not exist"));
    };
    match RunStatus::from_code(state.status) {
        Some(status) if !status.is_terminal() => None,
        status => Some(format!(
            "run {run} is {}: a finished run is never canceled",
            status.map_or("(unknown)", |s| s.as_str())
        )),
    }
}

pub(crate) fn run_exists(run: RunId) -> String {
    format!("run {run} already exists")
}

/// A second run of `workflow` for the same cron tick.
pub(crate) fn tick_taken(workflow: &str, tick: Timestamp) -> String {
    format!("run of {workflow} for tick {tick} already exists")
}

pub(crate) fn adopt_run(adopt: &AdoptRun) -> String {
    format!(
        "run {} is finished, missing, or no longer owned by {}",
        adopt.run,
        adopt.from.as_deref().unwrap_or("nobody")
    )
}
