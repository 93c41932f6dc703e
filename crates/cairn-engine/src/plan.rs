//! What the engine needs to know of a workflow to run it, independent of the
//! YAML it came from: tasks with their dependencies, failure rules and limits.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_core::progress::ProgressLimits;
use cairn_core::retry::RetryPolicy;

#[derive(Clone, Debug)]
pub struct RunPlan {
    pub workflow: String,
    /// Steps first, in workflow order, then handlers.
    pub tasks: Vec<PlannedTask>,
    /// Most steps running at once; `None` = no limit.
    pub max_active: Option<usize>,
    /// The whole run's time limit.
    pub timeout: Option<Duration>,
    /// Wait this long after the run starts before starting any task (Dagu's `delay_sec`).
    pub delay: Option<Duration>,
    pub params: BTreeMap<String, String>,
    pub spec_source: String,
    pub spec_path: Option<String>,
    pub trigger: String,
    /// Who asked for the run: the actor of its creation. The scheduler for
    /// cron ticks and local runs; the API token (or named user) for a
    /// trigger or retry through the API.
    pub requested_by: cairn_core::record::Actor,
    /// The cron tick that started the run (trigger `schedule`); the store
    /// refuses a second run for the same tick.
    pub schedule_tick: Option<cairn_core::Timestamp>,
    /// The workflow's labels, `key` or `key=value`, recorded for searches.
    pub labels: Vec<String>,
    /// Keep the `details` checkpoints of remote attempts (Cairn's `keep_details`).
    pub keep_details: bool,
    /// For a retry: per task, the result it is carried over with from the
    /// run being retried instead of running again. Empty = none carried.
    pub carried: Vec<Option<Carried>>,
    /// The workflow has its own preconditions: the runner's
    /// [`precheck_run`](crate::TaskRunner::precheck_run) decides whether any step runs.
    pub preconditions: bool,
}

#[derive(Clone, Debug)]
pub struct PlannedTask {
    pub name: String,
    /// Indexes of the tasks this one waits for.
    pub depends: Vec<usize>,
    pub role: Role,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub continue_on: ContinueOn,
    pub progress: ProgressLimits,
    pub queue: Option<String>,
    /// Overrides the run's heartbeat timeout for this task's leases.
    pub heartbeat_timeout: Option<Duration>,
    /// What SDK workers dispatch on; `None` = the task's name.
    pub task_type: Option<String>,
}

impl PlannedTask {
    pub fn step(name: impl Into<String>, depends: Vec<usize>) -> Self {
        PlannedTask {
            name: name.into(),
            depends,
            role: Role::Step,
            retry: RetryPolicy::default(),
            timeout: None,
            continue_on: ContinueOn::default(),
            progress: ProgressLimits::default(),
            queue: None,
            heartbeat_timeout: None,
            task_type: None,
        }
    }
}

/// A task that completed in an earlier run and is not run again by a retry.
#[derive(Clone, Debug, PartialEq)]
pub struct Carried {
    pub from_run: cairn_core::RunId,
    pub exit_code: Option<i32>,
    pub outputs: BTreeMap<String, String>,
}

/// A workflow step, or a handler run when the steps are done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Step,
    Handler(Handler),
}

/// Dagu's `handler_on` hooks, in the order they may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Handler {
    /// Before any step; if it fails, no step runs.
    Init,
    Success,
    Failure,
    /// After a cancel (Dagu's `abort`).
    Cancel,
    /// Always, last.
    Exit,
}

impl Handler {
    /// Dagu's node name for the handler, which is also the task's name.
    pub fn task_name(self) -> &'static str {
        match self {
            Handler::Init => "onInit",
            Handler::Success => "onSuccess",
            Handler::Failure => "onFailure",
            Handler::Cancel => "onAbort",
            Handler::Exit => "onExit",
        }
    }
}

/// Dagu's `continue_on`: when a step's failure or skip does not stop its dependents.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContinueOn {
    pub failure: bool,
    pub skipped: bool,
    /// Failures with these exit codes do not stop dependents.
    pub exit_codes: Vec<i32>,
    /// A failure that is let pass counts as success (COMPLETED).
    pub mark_success: bool,
}

impl ContinueOn {
    pub fn lets_failure_pass(&self, exit_code: Option<i32>) -> bool {
        self.failure || exit_code.is_some_and(|c| self.exit_codes.contains(&c))
    }
}
