//! The validated workflow: what a file means once parsed and checked, with
//! dependencies resolved to step indices, times as `Duration`s and every
//! choice as an enum. Nothing here refers to YAML any more.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

use super::error::{Diagnostic, Pos};
use crate::progress::ProgressLimits;
use crate::retry::RetryPolicy;

/// A workflow: its steps in file order, its handlers, and its settings.
#[derive(Clone, Debug)]
pub struct Workflow {
    /// `name:`, else the file name without its extension.
    pub name: String,
    pub description: Option<String>,
    pub group: Option<String>,
    /// The file it was read from; relative working dirs start at its directory.
    pub file: Option<PathBuf>,
    pub kind: WorkflowKind,
    /// Declared params, in order; see [`Workflow::resolve_params`].
    pub params: Vec<Param>,
    /// Workflow env, unexpanded and in order; see [`Workflow::resolve_env`].
    pub env: Vec<EnvVar>,
    /// Dotenv files to load (Dagu default: `.env`), unexpanded.
    pub dotenv: Vec<String>,
    pub schedule: Schedules,
    /// Limit on the whole run.
    pub timeout: Option<Duration>,
    /// Wait before the first step starts.
    pub delay: Option<Duration>,
    /// Wait before a scheduled restart.
    pub restart_wait: Option<Duration>,
    /// How long stopping steps may take before they are killed.
    pub max_clean_up_time: Option<Duration>,
    /// Most steps running at once; `None` = no limit.
    pub max_active_steps: Option<u32>,
    /// Most runs of this workflow at once; `None` = no limit (Dagu's default is 1).
    pub max_active_runs: Option<u32>,
    /// Largest captured output value, in bytes.
    pub max_output_size: Option<u64>,
    /// Skip a scheduled run if one succeeded since the previous schedule time.
    pub skip_if_successful: bool,
    /// Cairn: keep the `details` checkpoints workers send with their
    /// heartbeats (shown while a task runs, handed to its next attempt).
    pub keep_details: bool,
    /// What the scheduler does with a tick while a scheduled run is still active.
    pub overlap: OverlapPolicy,
    /// How late a tick missed while no server ran may still be fired once
    /// when the server starts; `None` = missed ticks are not caught up.
    pub catchup_window: Option<Duration>,
    /// All must hold or the run is canceled before any step starts.
    pub preconditions: Vec<Precondition>,
    /// The shell of every step that does not choose its own.
    pub shell: Option<Shell>,
    /// Working directory of the steps, unexpanded; `None` = the file's directory.
    pub working_dir: Option<String>,
    pub labels: Vec<Label>,
    /// How much run history to keep.
    pub history: Option<Retention>,
    pub log_dir: Option<String>,
    /// Dagu's run queue: the queue a run of this workflow waits in.
    pub queue: Option<String>,
    /// Dagu's workflow-level `retry_policy`: re-running a failed run.
    pub run_retry: Option<RetryPolicy>,
    /// The steps, in file order (the members of a parallel group in their order).
    pub steps: Vec<Step>,
    /// The lifecycle handlers.
    pub handlers: Handlers,
    /// Every step index once, each after all it depends on; ties keep file order.
    pub order: Vec<StepIndex>,
    /// Keys accepted for Dagu compatibility that have no effect.
    pub warnings: Vec<Diagnostic>,
}

/// The position of a step in [`Workflow::steps`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepIndex(pub usize);

impl fmt::Display for StepIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How steps without `depends` are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkflowKind {
    /// Dagu's default: each step runs after the previous one (after all members
    /// of a previous parallel group); `depends` is not allowed.
    Chain,
    /// Steps run as soon as what they `depends` on is done.
    Graph,
}

/// A variable definition (`NAME: value`), its value not yet expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// One declared param.
#[derive(Clone, Debug)]
pub struct Param {
    /// `None` for a positional param (`params: "a b"`), read as `$1`, `$2`, ...
    pub name: Option<String>,
    /// The default, as text (typed defaults are written canonically: `3`, `false`).
    pub default: Option<String>,
    pub ty: ParamType,
    pub description: Option<String>,
    /// A run without a value for it is refused.
    pub required: bool,
    /// Allowed values (canonical text), empty = any.
    pub choices: Vec<String>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub pattern: Option<Regex>,
}

/// The type of a typed param; the value always reaches steps as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
}

/// When runs start (and are stopped or restarted).
#[derive(Clone, Debug, Default)]
pub struct Schedules {
    pub start: Vec<Schedule>,
    pub stop: Vec<Schedule>,
    pub restart: Vec<Schedule>,
}

/// A validated five-field cron expression.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The expression as written, without a `CRON_TZ=`/`TZ=` prefix.
    pub expr: String,
    /// The time zone named by a `CRON_TZ=` or `TZ=` prefix; `None` = local time.
    pub timezone: Option<String>,
    /// The parsed expression, for computing the next times.
    pub cron: croner::Cron,
}

/// What the scheduler does with a tick that comes while a run the schedule
/// started is still active (Dagu's `overlap_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OverlapPolicy {
    /// Drop the tick (the default).
    #[default]
    Skip,
    /// Start a run for every tick, whatever is still running (within
    /// `max_active_runs`: ticks beyond it wait their turn).
    All,
    /// Keep only the newest tick waiting, and start it when the active run ends.
    Latest,
}

impl OverlapPolicy {
    /// The key's values as written in YAML.
    pub const NAMES: [&'static str; 3] = ["skip", "all", "latest"];

    pub fn parse(text: &str) -> Option<OverlapPolicy> {
        match text {
            "skip" => Some(OverlapPolicy::Skip),
            "all" => Some(OverlapPolicy::All),
            "latest" => Some(OverlapPolicy::Latest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OverlapPolicy::Skip => "skip",
            OverlapPolicy::All => "all",
            OverlapPolicy::Latest => "latest",
        }
    }
}

impl fmt::Display for OverlapPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A label (`labels:` or Dagu's older `tags:`), lower-cased as Dagu does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub key: String,
    pub value: Option<String>,
}

/// How much run history to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Keep runs this many days.
    Days(u32),
    /// Keep this many runs.
    Runs(u32),
}

/// The lifecycle handlers (`handler_on`), each a step of its own.
#[derive(Clone, Debug, Default)]
pub struct Handlers {
    pub init: Option<Step>,
    pub success: Option<Step>,
    pub failure: Option<Step>,
    pub abort: Option<Step>,
    pub exit: Option<Step>,
}

impl Handlers {
    /// The handler for `kind`, if defined.
    pub fn get(&self, kind: HandlerKind) -> Option<&Step> {
        match kind {
            HandlerKind::Init => self.init.as_ref(),
            HandlerKind::Success => self.success.as_ref(),
            HandlerKind::Failure => self.failure.as_ref(),
            HandlerKind::Abort => self.abort.as_ref(),
            HandlerKind::Exit => self.exit.as_ref(),
        }
    }

    /// The defined handlers, in [`HandlerKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = &Step> {
        HandlerKind::ALL.into_iter().filter_map(|k| self.get(k))
    }
}

/// Which lifecycle event a handler runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandlerKind {
    /// Before the first step (after the workflow's preconditions hold); if it
    /// fails, no step runs and the run is aborted.
    Init,
    /// After all steps, when the run succeeded.
    Success,
    /// After all steps, when the run failed.
    Failure,
    /// When the run was canceled (Dagu's `abort`, alias `cancel`).
    Abort,
    /// Last, whatever the outcome.
    Exit,
}

impl HandlerKind {
    /// All kinds, in the order they may run.
    pub const ALL: [HandlerKind; 5] = [
        HandlerKind::Init,
        HandlerKind::Success,
        HandlerKind::Failure,
        HandlerKind::Abort,
        HandlerKind::Exit,
    ];

    /// Dagu's name of the handler's node (`onSuccess`), also the handler step's name.
    pub fn node_name(self) -> &'static str {
        match self {
            HandlerKind::Init => "onInit",
            HandlerKind::Success => "onSuccess",
            HandlerKind::Failure => "onFailure",
            HandlerKind::Abort => "onAbort",
            HandlerKind::Exit => "onExit",
        }
    }
}

/// One step (or handler) of a workflow.
#[derive(Clone, Debug)]
pub struct Step {
    /// `name:`, else `id:`, else Dagu's generated `cmd_N` / `script_N`.
    pub name: String,
    /// The key for `${id.output}`-style references.
    pub id: Option<String>,
    pub description: Option<String>,
    pub action: Action,
    /// The step's own `shell:`; `None` = the workflow's shell, else the default.
    pub shell: Option<Shell>,
    /// Working directory, unexpanded; relative to the workflow's.
    pub working_dir: Option<String>,
    /// The step's env (the `defaults:` env first), unexpanded.
    pub env: Vec<EnvVar>,
    /// What must finish first (for a chain, the previous step or group).
    pub depends: Vec<StepIndex>,
    /// The variable its trimmed stdout is published as.
    pub output: Option<String>,
    /// Also write stdout (stderr) to this file, unexpanded.
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    /// All must hold or the step is skipped.
    pub preconditions: Vec<Precondition>,
    pub continue_on: ContinueOn,
    /// `limit: 0` when the step has none.
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub signal_on_stop: Option<Signal>,
    /// Cairn: the queue the step is dispatched to; `None` = run locally.
    pub queue: Option<String>,
    /// Cairn: a running attempt without a heartbeat for this long is lost.
    pub heartbeat_timeout: Option<Duration>,
    /// Cairn: rate limits for `::progress` reports; `None` = the engine's.
    pub progress: Option<ProgressLimits>,
    /// Set for handlers.
    pub handler: Option<HandlerKind>,
    /// Where the step was defined.
    pub pos: Option<Pos>,
}

impl Step {
    /// The key other steps and `${...}` references use: `id`, else `name`.
    pub fn key(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.name)
    }

    /// Cairn's `task_type:`, for a step an SDK worker runs; `None` for a
    /// step with a command (workers see its name as its task type).
    pub fn task_type(&self) -> Option<&str> {
        match &self.action {
            Action::Task { task_type } => Some(task_type),
            Action::Commands(_) | Action::Script { .. } | Action::Exec { .. } => None,
        }
    }
}

/// What a step runs. A step has exactly one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Command lines run one after another by the shell (`command:`, a string
    /// or a list); the step fails at the first that fails.
    Commands(Vec<String>),
    /// A script written to a file and run by the shell, by its `#!` line, or
    /// by `interpreter` (Dagu's `command: python` + `script:`).
    Script {
        /// The script, unexpanded.
        body: String,
        /// The program that runs it, e.g. `python3 -u`.
        interpreter: Option<String>,
    },
    /// A program run directly, without a shell (`exec:`).
    Exec {
        /// The program to run.
        program: String,
        /// Its arguments, unexpanded.
        args: Vec<String>,
    },
    /// Nothing to run here: an SDK worker polling the step's queue runs the
    /// handler for `task_type` (Cairn's `task_type:` without a command). Its
    /// inputs are the run's params and the step's env; such a step always
    /// has a `queue`.
    Task {
        /// What the worker dispatches on.
        task_type: String,
    },
}

/// A shell setting (`shell:`), unexpanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shell {
    /// `shell: direct`: commands are split into words and run without a shell.
    Direct,
    /// A shell program and its arguments, e.g. `bash -e` or `["bash", "-e"]`.
    Program {
        /// The shell program, e.g. `bash`.
        program: String,
        /// Its arguments, e.g. `-e`.
        args: Vec<String>,
    },
}

/// A condition for running a step or a workflow.
#[derive(Clone, Debug)]
pub enum Precondition {
    /// `condition` with `expected`: the expanded value must match.
    Match {
        /// The value to expand and compare.
        value: String,
        /// What it must match.
        expected: Expected,
        /// Holds when it does not match instead.
        negate: bool,
    },
    /// A command (`condition` without `expected`, or a bare string): it must exit 0.
    Command {
        /// The command line, unexpanded.
        command: String,
        /// Holds when the command fails instead.
        negate: bool,
    },
}

/// The value a condition is compared with.
#[derive(Clone, Debug)]
pub enum Expected {
    /// One line of the value must equal this.
    Exact(String),
    /// `re:<regex>`: one line of the value must match.
    Regex(Regex),
}

/// When a step's downstream may run although the step did not succeed.
#[derive(Clone, Debug, Default)]
pub struct ContinueOn {
    /// After the step was skipped.
    pub skipped: bool,
    /// After the step failed.
    pub failure: bool,
    /// After the step exited with one of these codes.
    pub exit_codes: Vec<i32>,
    /// After the step's output contained one of these.
    pub output: Vec<OutputPattern>,
    /// Count the step as succeeded when one of the above applied.
    pub mark_success: bool,
}

/// A `continue_on.output` pattern.
#[derive(Clone, Debug)]
pub enum OutputPattern {
    /// A line contains this text.
    Contains(String),
    /// `re:<regex>`: a line matches.
    Regex(Regex),
}

impl OutputPattern {
    /// Whether some line of `output` matches.
    pub fn matches(&self, output: &str) -> bool {
        let mut lines = output.lines().peekable();
        if lines.peek().is_none() {
            return match self {
                OutputPattern::Contains(s) => s.is_empty(),
                OutputPattern::Regex(r) => r.is_match(""),
            };
        }
        lines.any(|line| match self {
            OutputPattern::Contains(s) => line.contains(s.as_str()),
            OutputPattern::Regex(r) => r.is_match(line),
        })
    }
}

/// The signal sent to a step asked to stop (`signal_on_stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal {
    /// `SIGTERM`, ...
    pub name: &'static str,
    /// Its number on Linux.
    pub number: i32,
}

const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGILL", 4),
    ("SIGTRAP", 5),
    ("SIGABRT", 6),
    ("SIGBUS", 7),
    ("SIGFPE", 8),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGSEGV", 11),
    ("SIGUSR2", 12),
    ("SIGPIPE", 13),
    ("SIGALRM", 14),
    ("SIGTERM", 15),
    ("SIGCHLD", 17),
    ("SIGCONT", 18),
    ("SIGSTOP", 19),
    ("SIGTSTP", 20),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGURG", 23),
    ("SIGXCPU", 24),
    ("SIGXFSZ", 25),
    ("SIGVTALRM", 26),
    ("SIGPROF", 27),
    ("SIGWINCH", 28),
    ("SIGIO", 29),
    ("SIGPWR", 30),
    ("SIGSYS", 31),
];

impl Signal {
    /// `SIGTERM`, `TERM`, `term` or `15`.
    pub fn parse(s: &str) -> Option<Signal> {
        let s = s.trim();
        if let Ok(n) = s.parse::<i32>() {
            return SIGNALS.iter().find(|(_, num)| *num == n).map(|&(name, number)| Signal { name, number });
        }
        let upper = s.to_ascii_uppercase();
        let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
        SIGNALS.iter().find(|(name, _)| *name == full).map(|&(name, number)| Signal { name, number })
    }

    /// The names `parse` accepts, for messages.
    pub(crate) fn names() -> impl Iterator<Item = &'static str> {
        SIGNALS.iter().map(|(n, _)| *n)
    }
}

impl Workflow {
    /// The step at `index`.
    pub fn step(&self, index: StepIndex) -> &Step {
        &self.steps[index.0]
    }

    /// The step whose name or id is `key`.
    pub fn find_step(&self, key: &str) -> Option<StepIndex> {
        self.steps.iter().position(|s| s.name == key || s.id.as_deref() == Some(key)).map(StepIndex)
    }

    /// Indices of the steps that depend on `index` directly.
    pub fn dependents(&self, index: StepIndex) -> impl Iterator<Item = StepIndex> + '_ {
        self.steps
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.depends.contains(&index))
            .map(|(i, _)| StepIndex(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_or_number() {
        assert_eq!(Signal::parse("TERM").map(|s| s.number), Some(15));
        assert_eq!(Signal::parse("sigkill").map(|s| s.name), Some("SIGKILL"));
        assert_eq!(Signal::parse("2").map(|s| s.name), Some("SIGINT"));
        assert_eq!(Signal::parse("SIGNOPE"), None);
    }

    #[test]
    fn output_patterns_match_per_line() {
        let out = "starting\nWARN disk low\ndone";
        assert!(OutputPattern::Contains("disk low".into()).matches(out));
        assert!(OutputPattern::Regex(Regex::new("^WARN").unwrap()).matches(out));
        assert!(!OutputPattern::Regex(Regex::new("^disk").unwrap()).matches(out));
    }
}
