//! The API's JSON shapes of phase analytics and expected durations, built
//! from `cairn_store::analytics`; durations in seconds (floats, µs
//! precision), as everywhere in the API. `cairn history --stats --json`
//! prints the same shapes.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_core::expected::{Expected, MIN_SAMPLES, Spread};
use cairn_core::{RunId, TaskId, TaskStatus, Timestamp};
use cairn_store::{ExpectedDurations, FailingStep, PhaseStats, SlowTask, StepPhases};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Per workflow and step, how the tasks that finished in a window spent
/// their time; the slowest of them; each workflow's most failing step.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PhaseStatsView {
    /// The window of finish times, `[from, to)`.
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// The most tasks read per step (the newest first).
    pub sample_cap: usize,
    /// By workflow, then step.
    pub steps: Vec<StepPhasesView>,
    /// Longest execution first.
    pub slowest: Vec<SlowTaskView>,
    /// One per workflow with a failed task in the window.
    pub most_failing: Vec<FailingStepView>,
}

impl PhaseStatsView {
    pub fn new(s: &PhaseStats, from: Option<Timestamp>, to: Option<Timestamp>, sample_cap: usize) -> Self {
        PhaseStatsView {
            from,
            to,
            sample_cap,
            steps: s.steps.iter().map(StepPhasesView::from).collect(),
            slowest: s.slowest.iter().map(SlowTaskView::from).collect(),
            most_failing: s.most_failing.iter().map(FailingStepView::from).collect(),
        }
    }
}

/// Median, 95th percentile (nearest rank) and maximum, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpreadView {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl From<Spread> for SpreadView {
    fn from(s: Spread) -> Self {
        SpreadView { p50: seconds(s.p50), p95: seconds(s.p95), max: seconds(s.max) }
    }
}

/// The tasks of one step that finished in the window.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StepPhasesView {
    pub workflow: String,
    pub step: String,
    /// Tasks read.
    pub tasks: u64,
    /// Of them, failed for good.
    pub failed: u64,
    /// Tasks read, by how they ended.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub counts: BTreeMap<TaskStatus, u64>,
    /// Time BLOCKED (waiting for upstream), over the tasks that completed or
    /// failed; absent when none did.
    pub blocked: Option<SpreadView>,
    /// Time PENDING (queue wait, retry back-off included), likewise.
    pub pending: Option<SpreadView>,
    /// Time RUNNING over all attempts, likewise.
    pub execution: Option<SpreadView>,
    /// Present when the sample cap cut the window: only the tasks finished
    /// at or after this time were read.
    pub sampled_from: Option<Timestamp>,
}

impl From<&StepPhases> for StepPhasesView {
    fn from(s: &StepPhases) -> Self {
        StepPhasesView {
            workflow: s.workflow.clone(),
            step: s.step.clone(),
            tasks: s.tasks(),
            failed: s.failed(),
            counts: s.counts.clone(),
            blocked: s.blocked.map(SpreadView::from),
            pending: s.pending.map(SpreadView::from),
            execution: s.execution.map(SpreadView::from),
            sampled_from: s.sampled_from,
        }
    }
}

/// One of the slowest tasks of the window.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SlowTaskView {
    pub task_id: TaskId,
    pub run_id: RunId,
    pub workflow: String,
    pub step: String,
    pub status: TaskStatus,
    pub finished_at: Timestamp,
    /// Seconds BLOCKED, PENDING and RUNNING (over all attempts).
    pub blocked_duration: f64,
    pub pending_duration: f64,
    pub execution_duration: f64,
}

impl From<&SlowTask> for SlowTaskView {
    fn from(t: &SlowTask) -> Self {
        SlowTaskView {
            task_id: t.task,
            run_id: t.run,
            workflow: t.workflow.clone(),
            step: t.step.clone(),
            status: t.status,
            finished_at: t.finished_at,
            blocked_duration: seconds(t.blocked),
            pending_duration: seconds(t.pending),
            execution_duration: seconds(t.execution),
        }
    }
}

/// The step of a workflow that failed most often in the window.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FailingStepView {
    pub workflow: String,
    pub step: String,
    /// Its tasks that failed for good.
    pub failed: u64,
    /// Its part of the workflow's failed tasks (0 to 1).
    pub share: f64,
    /// The part of its own finished tasks that failed (0 to 1).
    pub rate: f64,
}

impl From<&FailingStep> for FailingStepView {
    fn from(f: &FailingStep) -> Self {
        FailingStepView {
            workflow: f.workflow.clone(),
            step: f.step.clone(),
            failed: f.failed,
            share: f.share,
            rate: f.rate,
        }
    }
}

/// How long something usually takes, from its latest completed occurrences.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExpectedView {
    /// How many completed occurrences the figures rest on (at most 100).
    pub samples: u32,
    /// Seconds, median and 95th percentile (nearest rank).
    pub p50: f64,
    pub p95: f64,
    /// At least 5 samples: enough for Cairn to predict from (ETA, "slower
    /// than usual"); fewer predict nothing.
    pub reliable: bool,
}

impl From<&Expected> for ExpectedView {
    fn from(e: &Expected) -> Self {
        ExpectedView {
            samples: e.samples,
            p50: seconds(e.p50),
            p95: seconds(e.p95),
            reliable: e.is_reliable(),
        }
    }
}

/// How long one step usually takes.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StepExpectedView {
    pub step: String,
    /// Time RUNNING, over all attempts.
    pub execution: ExpectedView,
    /// Submission to finish.
    pub total: ExpectedView,
}

/// How long a workflow's runs and steps usually take, from their latest
/// completed runs and tasks.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ExpectedDurationsView {
    pub workflow: String,
    /// Start to finish of its completed runs; absent when none completed.
    pub run: Option<ExpectedView>,
    /// Every step with a completed task, by name.
    pub steps: Vec<StepExpectedView>,
    /// The fewest samples a prediction is made from.
    pub min_samples: u32,
}

impl From<&ExpectedDurations> for ExpectedDurationsView {
    fn from(e: &ExpectedDurations) -> Self {
        ExpectedDurationsView {
            workflow: e.workflow.clone(),
            run: e.run.as_ref().map(ExpectedView::from),
            steps: e
                .steps
                .iter()
                .map(|(step, s)| StepExpectedView {
                    step: step.clone(),
                    execution: ExpectedView::from(&s.execution),
                    total: ExpectedView::from(&s.total),
                })
                .collect(),
            min_samples: MIN_SAMPLES,
        }
    }
}
