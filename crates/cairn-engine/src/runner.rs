//! The seam between scheduling and execution: a [`TaskRunner`] runs one
//! attempt of one task and says how it ended. The shell executor is one; the
//! in-process no-op runner of the benchmarks is another.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

use cairn_core::progress::Progress;
use cairn_core::protocol::RemoteCommand;
use cairn_core::retry::FailureKind;
use cairn_core::{RunId, TaskId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Everything a runner gets for one attempt.
#[derive(Clone, Debug)]
pub struct AttemptContext {
    pub run: RunId,
    pub task: TaskId,
    pub index: usize,
    pub name: String,
    /// 1-based.
    pub attempt: u32,
    /// Where this attempt's stdout and stderr go.
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    /// Canceled when the attempt must stop (cancel, timeout); the runner kills
    /// its work and returns [`AttemptOutcome::Killed`].
    pub cancel: CancellationToken,
    /// Progress reports; the engine rate-limits and stores them.
    pub progress: ProgressSink,
    /// Variables the engine adds to the step's environment (run id, status for handlers, …).
    pub env: Vec<(String, String)>,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    Succeeded {
        exit_code: Option<i32>,
        outputs: BTreeMap<String, String>,
    },
    Failed {
        kind: FailureKind,
        exit_code: Option<i32>,
        error: String,
        outputs: BTreeMap<String, String>,
        /// The step's own `continue_on` output rule matched, so the failure
        /// does not stop its dependents.
        continue_matched: bool,
    },
    /// Stopped because its cancellation token fired.
    Killed {
        exit_code: Option<i32>,
        outputs: BTreeMap<String, String>,
    },
}

/// Whether a task runs at all, decided when it is dispatched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precheck {
    Run,
    /// A precondition was false; the reason names it.
    Skip(String),
    /// Evaluating the preconditions failed (e.g. the check command could not start).
    Fail(String),
}

/// Runs attempts. Implementations must be cheap to call concurrently.
pub trait TaskRunner: Send + Sync + 'static {
    /// Evaluate the task's preconditions.
    fn precheck(&self, ctx: &AttemptContext) -> impl Future<Output = Precheck> + Send;

    /// Evaluate the workflow's own preconditions, once, before any step.
    fn precheck_run(&self) -> impl Future<Output = Precheck> + Send {
        std::future::ready(Precheck::Run)
    }

    /// What a remote worker should run for this attempt; `None` for tasks
    /// that are not shell steps (SDK handlers work from the task's type and input).
    fn remote_command(&self, _ctx: &AttemptContext) -> Option<RemoteCommand> {
        None
    }

    /// The input of a remote attempt that has no [`RemoteCommand`] (an SDK
    /// task): the variables its handler reads. By default the engine's own
    /// variables ([`AttemptContext::env`]).
    fn remote_input(&self, ctx: &AttemptContext) -> BTreeMap<String, String> {
        ctx.env.iter().cloned().collect()
    }

    /// An attempt that this runner did not run ended (a remote worker ran
    /// it, or a previous server did before a restart): its outputs become
    /// visible to later steps as if this runner had produced them.
    fn outputs_known(
        &self,
        _ctx: &AttemptContext,
        _exit_code: Option<i32>,
        _outputs: &BTreeMap<String, String>,
    ) {
    }

    /// Run one attempt to its end.
    fn run(&self, ctx: AttemptContext) -> impl Future<Output = AttemptOutcome> + Send;
}

/// Where a runner sends progress; cheap to clone.
#[derive(Clone, Debug)]
pub struct ProgressSink {
    index: usize,
    tx: mpsc::UnboundedSender<(usize, Progress)>,
}

impl ProgressSink {
    pub fn new(index: usize, tx: mpsc::UnboundedSender<(usize, Progress)>) -> Self {
        ProgressSink { index, tx }
    }

    pub fn report(&self, p: Progress) {
        // The run may have ended already; a late report is simply dropped.
        let _ = self.tx.send((self.index, p));
    }
}

/// Does nothing and succeeds at once: the in-process task of the benchmarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopRunner;

impl TaskRunner for NoopRunner {
    async fn precheck(&self, _ctx: &AttemptContext) -> Precheck {
        Precheck::Run
    }

    async fn run(&self, _ctx: AttemptContext) -> AttemptOutcome {
        AttemptOutcome::Succeeded { exit_code: None, outputs: BTreeMap::new() }
    }
}
