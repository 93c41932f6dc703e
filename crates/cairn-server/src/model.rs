//! The API's JSON shapes for what it reads — runs, tasks, workflows,
//! diagnostics — built from the store's records and the catalog, each with
//! its OpenAPI schema. Field names follow `cairn status --json` where the two
//! overlap, so a script can read either.
//!
//! Request bodies of the worker protocol and the live events are the shared
//! types of `cairn_core::protocol` and `cairn_core::event`, not here.

use std::collections::BTreeMap;

use cairn_core::durations::Durations;
use cairn_core::progress::predict_finish;
use cairn_core::record::{Actor, RunTransition, Transition};
use cairn_core::spec::{Action, Diagnostic, ParamType, Step, Workflow, WorkflowKind};
use cairn_core::{RunId, RunStatus, TaskId, TaskStatus, Timestamp};
use cairn_store::{AttemptRecord, RunDetail, RunRecord, TaskRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::catalog::Entry;

/// One line of the run list.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunSummary {
    pub run_id: RunId,
    pub workflow: String,
    pub status: RunStatus,
    /// How the run came to be: `manual`, `schedule`, `api`, `retry`.
    pub trigger: String,
    /// The cron time a scheduled run is for (each fires once).
    pub scheduled_for: Option<Timestamp>,
    pub submitted_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Seconds from submission to finish (or to now while unfinished).
    pub duration: f64,
    pub error: Option<String>,
}

impl RunSummary {
    pub fn new(r: &RunRecord, now: Timestamp) -> RunSummary {
        RunSummary {
            run_id: r.id,
            workflow: r.workflow.clone(),
            status: r.status,
            trigger: r.trigger.clone(),
            scheduled_for: r.schedule_tick,
            submitted_at: r.submitted_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration: r.finished_at.unwrap_or(now).since(r.submitted_at).as_secs_f64(),
            error: r.error.clone(),
        }
    }
}

/// A page of runs, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    pub runs: Vec<RunSummary>,
    /// Pass as `cursor`, with the same filters, for the next page; absent
    /// on the last page.
    pub next_cursor: Option<String>,
}

/// A task as task searches list it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskSummary {
    pub id: TaskId,
    pub run_id: RunId,
    pub workflow: String,
    /// The step's name.
    pub name: String,
    pub status: TaskStatus,
    pub queue: Option<String>,
    /// Attempts started so far.
    pub attempts: u32,
    pub submitted_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// The latest progress reported (0.0 to 100.0), its message and time.
    pub progress_percent: Option<f32>,
    pub progress_message: Option<String>,
    pub progress_at: Option<Timestamp>,
    /// While RUNNING: when the attempt will finish at its average rate so far.
    pub predicted_finish_at: Option<Timestamp>,
    /// The predicted finish is past the step's `timeout_sec`.
    pub overrun_predicted: bool,
    /// Who holds the attempt's lease while it runs.
    pub worker: Option<String>,
}

impl TaskSummary {
    /// `timeouts`: those of the run's workflow as submitted, to tell a
    /// running task's predicted overrun (empty: none is flagged).
    pub fn new(row: &cairn_store::TaskRow, timeouts: &Timeouts) -> TaskSummary {
        let t = &row.task;
        let progress = ProgressView::of(t, timeouts);
        TaskSummary {
            progress_percent: progress.as_ref().map(|p| p.percent),
            progress_message: progress.as_ref().and_then(|p| p.message.clone()),
            progress_at: t.progress_at,
            predicted_finish_at: progress.as_ref().and_then(|p| p.predicted_finish_at),
            overrun_predicted: progress.is_some_and(|p| p.overrun_predicted),
            worker: t.lease.as_ref().map(|l| l.worker.clone()),
            id: t.id,
            run_id: t.run,
            workflow: row.workflow.clone(),
            name: t.name.clone(),
            status: t.status,
            queue: t.queue.clone(),
            attempts: t.attempt,
            submitted_at: t.submitted_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            exit_code: t.exit_code,
            error: t.error.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskPage {
    pub tasks: Vec<TaskSummary>,
    /// Pass as `cursor`, with the same filters, for the next page.
    pub next_cursor: Option<String>,
}

/// A page of alerts, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<cairn_core::alert::Alert>,
    /// For the next page: pass as `before`; `None` on the last page.
    pub next_before: Option<cairn_core::AlertId>,
}

/// Runs and tasks submitted in a window, by status name (statuses with
/// none are absent).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusCounts {
    #[schema(value_type = BTreeMap<String, u64>)]
    pub runs: BTreeMap<RunStatus, u64>,
    #[schema(value_type = BTreeMap<String, u64>)]
    pub tasks: BTreeMap<TaskStatus, u64>,
}

/// Runs submitted in one bucket, by status.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TrendPoint {
    /// The bucket's start.
    pub at: Timestamp,
    #[schema(value_type = BTreeMap<String, u64>)]
    pub counts: BTreeMap<RunStatus, u64>,
    /// `FAILED` over the runs of the bucket that finished; absent when none did.
    pub failure_rate: Option<f64>,
}

impl TrendPoint {
    pub fn new(p: cairn_store::TrendPoint<RunStatus>) -> TrendPoint {
        let finished: u64 = p.counts.iter().filter(|(s, _)| s.is_terminal()).map(|(_, n)| n).sum();
        let failed = p.counts.get(&RunStatus::Failed).copied().unwrap_or(0);
        let failure_rate = (finished > 0).then(|| failed as f64 / finished as f64);
        TrendPoint { at: p.at, counts: p.counts, failure_rate }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowTrend {
    pub workflow: String,
    pub points: Vec<TrendPoint>,
}

impl WorkflowTrend {
    pub fn new(workflow: String, points: Vec<cairn_store::TrendPoint<RunStatus>>) -> WorkflowTrend {
        WorkflowTrend { workflow, points: points.into_iter().map(TrendPoint::new).collect() }
    }
}

/// Runs by status per bucket of a window, overall and per workflow.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Trend {
    pub points: Vec<TrendPoint>,
    pub workflows: Vec<WorkflowTrend>,
}

/// A run with its tasks and its own transition log.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    pub run_id: RunId,
    pub workflow: String,
    pub status: RunStatus,
    pub trigger: String,
    /// The cron time a scheduled run is for (each fires once).
    pub scheduled_for: Option<Timestamp>,
    /// Who asked to cancel the run, until its driver has ended it.
    pub cancel_requested_by: Option<String>,
    pub params: BTreeMap<String, String>,
    pub submitted_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
    /// Every captured output variable of the run, later steps winning.
    pub outputs: BTreeMap<String, String>,
    /// By position in the workflow (steps, then handlers).
    pub tasks: Vec<TaskView>,
    pub transitions: Vec<RunTransitionView>,
    /// How long the workflow's completed runs usually take, start to
    /// finish; absent without any.
    #[serde(default)]
    pub expected: Option<crate::analytics::ExpectedView>,
    /// While RUNNING: when it should finish — its start plus its usual
    /// duration (from 5 completed runs or more), or the latest progress
    /// prediction of its running tasks where that is later.
    #[serde(default)]
    pub eta: Option<Timestamp>,
    /// While RUNNING: running longer than the p95 of its usual duration.
    #[serde(default)]
    pub slower_than_usual: bool,
}

/// A task (one step of one run) with everything recorded about it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    pub id: TaskId,
    pub run_id: RunId,
    /// Position in the workflow.
    pub index: u32,
    /// The step's name.
    pub name: String,
    pub status: TaskStatus,
    /// The queue of a remote step; absent for the local executor.
    pub queue: Option<String>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed in all (1 + retry limit).
    pub max_attempts: u32,
    pub retry_count: u32,
    /// The result of the current (or last) attempt.
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub outputs: BTreeMap<String, String>,
    /// The latest progress reported, kept after the task ends.
    pub progress: Option<ProgressView>,
    /// The current lease, present exactly while RUNNING (never the token).
    pub lease: Option<LeaseView>,
    /// A retry waiting in PENDING starts no earlier than this.
    pub not_before: Option<Timestamp>,
    pub durations: DurationsView,
    /// The names of the tasks it waits for, from the run's workflow as
    /// planned (a handler waits for the last steps); empty when the
    /// workflow text cannot be read.
    #[serde(default)]
    pub depends: Vec<String>,
    /// Every status change, in order.
    pub transitions: Vec<TransitionView>,
    /// Every attempt, in order.
    pub attempt_records: Vec<AttemptView>,
    /// The latest checkpoint a worker reported, when the workflow keeps them
    /// (`keep_details`); the next attempt resumes from it.
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    /// How long the step's completed tasks usually run (execution over all
    /// attempts); absent without any.
    #[serde(default)]
    pub expected: Option<crate::analytics::ExpectedView>,
    /// While RUNNING: running longer than the p95 of the step's usual
    /// execution (from 5 completed tasks or more).
    #[serde(default)]
    pub slower_than_usual: bool,
    /// The last attempt's stdout and stderr files, where the reader has the
    /// data directory (`cairn status --json`); the API serves logs instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_file: Option<String>,
}

/// `GET /tasks/{id}`: a task with the run it belongs to.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskDetailView {
    pub run: RunSummary,
    pub task: TaskView,
    /// The task's progress history: sparse samples, attempt by attempt.
    pub progress_samples: Vec<ProgressSampleView>,
}

/// One point of a task's progress history.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProgressSampleView {
    pub attempt: u32,
    pub at: Timestamp,
    pub percent: f32,
    pub message: Option<String>,
}

/// What a step needs to judge an overrun: its timeout, by step name.
pub type Timeouts = BTreeMap<String, std::time::Duration>;

/// The timeouts of a workflow's steps and handlers.
pub fn timeouts(w: &Workflow) -> Timeouts {
    w.steps.iter().chain(w.handlers.iter()).filter_map(|s| Some((s.name.clone(), s.timeout?))).collect()
}

/// Task search rows as the API lists them. A running task's predicted
/// overrun needs its step's timeout, from the workflow its run was
/// submitted with: read once per run, and only for tasks running with
/// progress.
pub async fn task_summaries<S: cairn_store::Store>(
    store: &S,
    rows: &[cairn_store::TaskRow],
) -> Vec<TaskSummary> {
    let mut timeouts: BTreeMap<RunId, Timeouts> = BTreeMap::new();
    for t in rows.iter().map(|r| &r.task) {
        if t.status == TaskStatus::Running && t.progress.is_some() && !timeouts.contains_key(&t.run) {
            let w = submitted_workflow(store, t.run).await;
            timeouts.insert(t.run, w.as_ref().map(self::timeouts).unwrap_or_default());
        }
    }
    let none = Timeouts::new();
    rows.iter().map(|r| TaskSummary::new(r, timeouts.get(&r.task.run).unwrap_or(&none))).collect()
}

/// The workflow a run was submitted with, parsed from the text kept with
/// it: its steps' timeouts and dependencies. `None` when the text cannot be
/// read; the views then show no dependency and flag no overrun.
pub async fn submitted_workflow<S: cairn_store::Store>(store: &S, run: RunId) -> Option<Workflow> {
    match store.spec_source(run).await {
        Ok(Some(source)) => cairn_core::spec::parse(&source, None).ok(),
        _ => None,
    }
}

/// What each task of a run of `w` waits for, by task position (steps, then
/// handlers), as the engine plans it: a step its dependencies (or `onInit`),
/// a handler other than `onInit` the steps no other step waits for.
pub fn depends(w: &Workflow) -> Vec<Vec<String>> {
    let plan = cairn_engine::shell::plan(w, &[], String::new(), "");
    let steps = w.steps.len().min(plan.tasks.len());
    let waited: std::collections::BTreeSet<usize> =
        plan.tasks[..steps].iter().flat_map(|t| t.depends.iter().copied()).collect();
    let last: Vec<String> =
        (0..steps).filter(|i| !waited.contains(i)).map(|i| plan.tasks[i].name.clone()).collect();
    plan.tasks
        .iter()
        .map(|t| match t.role {
            cairn_engine::Role::Handler(h) if h != cairn_engine::Handler::Init => last.clone(),
            _ => t.depends.iter().filter_map(|&d| plan.tasks.get(d)).map(|d| d.name.clone()).collect(),
        })
        .collect()
}

impl RunView {
    /// Fills each task's `depends` from the run's workflow (see [`depends`]).
    pub fn with_depends(mut self, w: &Workflow) -> RunView {
        let all = depends(w);
        for t in &mut self.tasks {
            if let Some(d) = all.get(t.index as usize) {
                t.depends = d.clone();
            }
        }
        self
    }

    /// A run with every task, from its records; `timeouts` judge the overrun
    /// predictions of running tasks.
    pub fn new(d: &RunDetail, timeouts: &Timeouts, now: Timestamp) -> RunView {
        let mut outputs = BTreeMap::new();
        let tasks = d
            .tasks
            .iter()
            .map(|t| {
                outputs.extend(t.outputs.clone());
                let log = d.transitions.get(&t.id).map_or(&[][..], Vec::as_slice);
                let attempts = d.attempts.get(&t.id).map_or(&[][..], Vec::as_slice);
                TaskView::new(t, log, attempts, timeouts, now)
            })
            .collect();
        let r = &d.run;
        RunView {
            run_id: r.id,
            workflow: r.workflow.clone(),
            status: r.status,
            trigger: r.trigger.clone(),
            scheduled_for: r.schedule_tick,
            cancel_requested_by: r
                .cancel_requested_by
                .as_ref()
                .filter(|_| !r.status.is_terminal())
                .map(ToString::to_string),
            params: r.params.clone(),
            submitted_at: r.submitted_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            error: r.error.clone(),
            outputs,
            tasks,
            transitions: d.run_transitions.iter().map(RunTransitionView::from).collect(),
            expected: None,
            eta: None,
            slower_than_usual: false,
        }
    }
}

impl TaskView {
    pub fn new(
        t: &TaskRecord,
        log: &[Transition],
        attempts: &[AttemptRecord],
        timeouts: &Timeouts,
        now: Timestamp,
    ) -> TaskView {
        let progress = ProgressView::of(t, timeouts);
        TaskView {
            id: t.id,
            run_id: t.run,
            index: t.index,
            name: t.name.clone(),
            status: t.status,
            queue: t.queue.clone(),
            attempts: t.attempt,
            max_attempts: t.max_attempts,
            retry_count: t.attempt.saturating_sub(1),
            exit_code: t.exit_code,
            error: t.error.clone(),
            outputs: t.outputs.clone(),
            progress,
            lease: t.lease.as_ref().map(|l| LeaseView {
                worker: l.worker.clone(),
                last_heartbeat_at: l.last_heartbeat_at,
                expires_at: l.expires_at,
            }),
            not_before: t.not_before,
            durations: DurationsView::from(Durations::from_log(log, now)),
            depends: Vec::new(),
            transitions: log.iter().map(TransitionView::from).collect(),
            attempt_records: attempts.iter().map(AttemptView::from).collect(),
            details: t.details.clone(),
            expected: None,
            slower_than_usual: false,
            stdout_file: None,
            stderr_file: None,
        }
    }
}

/// The latest progress of a task.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProgressView {
    /// 0.0 to 100.0.
    pub percent: f32,
    pub message: Option<String>,
    /// When it was reported.
    pub at: Option<Timestamp>,
    /// While RUNNING: when the attempt will finish at its average rate so far.
    pub predicted_finish_at: Option<Timestamp>,
    /// The predicted finish is past the step's `timeout_sec`.
    pub overrun_predicted: bool,
}

impl ProgressView {
    /// The task's latest progress, with the finish it predicts while the
    /// attempt runs and whether that is past the step's timeout.
    pub fn of(t: &TaskRecord, timeouts: &Timeouts) -> Option<ProgressView> {
        let p = t.progress.as_ref()?;
        // A prediction only means something for the attempt still running.
        let predicted = match (t.status, t.started_at, t.progress_at) {
            (TaskStatus::Running, Some(start), Some(at)) => predict_finish(start, at, p.percent),
            _ => None,
        };
        let overrun = match (predicted, t.started_at, timeouts.get(&t.name)) {
            (Some(finish), Some(start), Some(limit)) => finish > start.saturating_add(*limit),
            _ => false,
        };
        Some(ProgressView {
            percent: p.percent,
            message: p.message.clone(),
            at: t.progress_at,
            predicted_finish_at: predicted,
            overrun_predicted: overrun,
        })
    }
}

/// A RUNNING task's lease.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LeaseView {
    /// Who holds it: `local:…` for the local executor, else the worker's id.
    pub worker: String,
    pub last_heartbeat_at: Timestamp,
    /// Without a heartbeat by then, the reaper fails the attempt.
    pub expires_at: Timestamp,
}

/// Figures derived from a task's transition log (durations in seconds,
/// summed over retries, measured up to now while unfinished).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DurationsView {
    pub submitted_at: Option<Timestamp>,
    /// The first time the task went RUNNING.
    pub run_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Seconds in BLOCKED (waiting for upstream).
    pub blocked_duration: f64,
    /// Seconds in PENDING (queue wait, including retry back-off).
    pub pending_duration: f64,
    /// Seconds in RUNNING, over all attempts.
    pub execution_duration: f64,
    /// Seconds from submission to finish, or to now.
    pub total_duration: f64,
}

impl From<Durations> for DurationsView {
    fn from(d: Durations) -> Self {
        DurationsView {
            submitted_at: d.submitted_at,
            run_at: d.run_at,
            finished_at: d.finished_at,
            blocked_duration: d.blocked_duration.as_secs_f64(),
            pending_duration: d.pending_duration.as_secs_f64(),
            execution_duration: d.execution_duration.as_secs_f64(),
            total_duration: d.total_duration.as_secs_f64(),
        }
    }
}

/// One status change of a task.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TransitionView {
    /// 1-based; 0 before the first start.
    pub attempt: u32,
    /// Absent for the creation of the task.
    pub from: Option<TaskStatus>,
    pub to: TaskStatus,
    pub at: Timestamp,
    pub reason: String,
    pub actor: Actor,
}

impl From<&Transition> for TransitionView {
    fn from(t: &Transition) -> Self {
        TransitionView {
            attempt: t.attempt,
            from: t.from,
            to: t.to,
            at: t.at,
            reason: t.reason.clone(),
            actor: t.actor.clone(),
        }
    }
}

/// One status change of a run.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunTransitionView {
    /// Absent for the creation of the run.
    pub from: Option<RunStatus>,
    pub to: RunStatus,
    pub at: Timestamp,
    pub reason: String,
    pub actor: Actor,
}

impl From<&RunTransition> for RunTransitionView {
    fn from(t: &RunTransition) -> Self {
        RunTransitionView {
            from: t.from,
            to: t.to,
            at: t.at,
            reason: t.reason.clone(),
            actor: t.actor.clone(),
        }
    }
}

/// One attempt of a task: who ran it, when, and how it ended.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub attempt: u32,
    pub worker: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// COMPLETED, FAILED (also when the task was then retried) or CANCELED.
    pub outcome: Option<TaskStatus>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

impl From<&AttemptRecord> for AttemptView {
    fn from(a: &AttemptRecord) -> Self {
        AttemptView {
            attempt: a.attempt,
            worker: a.worker.clone(),
            started_at: a.started_at,
            ended_at: a.ended_at,
            outcome: a.outcome,
            exit_code: a.exit_code,
            error: a.error.clone(),
        }
    }
}

// ---------------------------------------------------------------------------
// Workflows

/// One workflow file of the catalog.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowSummary {
    /// The workflow's name; for a file too broken to tell, the file's stem.
    pub name: String,
    pub file: String,
    /// False when the file has errors; it cannot run until they are fixed.
    pub valid: bool,
    pub description: Option<String>,
    pub steps: usize,
    /// Cron expressions that start runs.
    pub schedule: Vec<String>,
    /// When the schedule next starts a run (absent without a schedule).
    #[serde(default)]
    pub next_run_at: Option<Timestamp>,
    pub errors: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowSummary>,
    /// Set when the workflow directory itself cannot be read.
    pub problem: Option<String>,
}

impl WorkflowSummary {
    /// The entry as listed, its next scheduled run reckoned from `now`.
    pub fn new(e: &Entry, now: Timestamp) -> WorkflowSummary {
        let w = e.workflow();
        WorkflowSummary {
            name: e.name.clone(),
            file: e.path.display().to_string(),
            valid: e.is_valid(),
            description: w.and_then(|w| w.description.clone()),
            steps: w.map_or(0, |w| w.steps.len()),
            schedule: w.map(|w| schedule(w)).unwrap_or_default(),
            next_run_at: w.filter(|_| e.is_valid()).and_then(|w| next_run(w, now)),
            errors: e.errors().len(),
        }
    }
}

/// The earliest next fire time of the workflow's schedules, as the
/// scheduler reckons it.
fn next_run(w: &Workflow, now: Timestamp) -> Option<Timestamp> {
    w.schedule.start.iter().filter_map(|s| cairn_engine::scheduler::Cron::new(s).ok()?.after(now).ok()).min()
}

fn schedule(w: &Workflow) -> Vec<String> {
    w.schedule.start.iter().map(|s| s.expr.clone()).collect()
}

/// A workflow: its steps, schedule, params and source, or its errors.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkflowDetail {
    pub name: String,
    pub file: String,
    pub valid: bool,
    pub description: Option<String>,
    /// `chain` (each step after the previous) or `graph` (by `depends`).
    pub kind: Option<String>,
    pub steps: Vec<StepSummary>,
    /// `onSuccess`, `onFailure`, … as declared.
    pub handlers: Vec<StepSummary>,
    pub schedule: Vec<String>,
    pub params: Vec<ParamView>,
    /// The file's text.
    pub source: String,
    pub errors: Vec<DiagnosticView>,
    pub warnings: Vec<DiagnosticView>,
}

impl WorkflowDetail {
    pub fn new(e: &Entry) -> WorkflowDetail {
        let w = e.workflow();
        WorkflowDetail {
            name: e.name.clone(),
            file: e.path.display().to_string(),
            valid: e.is_valid(),
            description: w.and_then(|w| w.description.clone()),
            kind: w.map(|w| match w.kind {
                WorkflowKind::Chain => "chain".to_owned(),
                WorkflowKind::Graph => "graph".to_owned(),
            }),
            steps: w.map(|w| w.steps.iter().map(|s| StepSummary::new(s, w)).collect()).unwrap_or_default(),
            handlers: w
                .map(|w| w.handlers.iter().map(|s| StepSummary::new(s, w)).collect())
                .unwrap_or_default(),
            schedule: w.map(|w| schedule(w)).unwrap_or_default(),
            params: w.map(|w| w.params.iter().map(ParamView::from).collect()).unwrap_or_default(),
            source: e.source.clone(),
            errors: e.errors().iter().map(DiagnosticView::from).collect(),
            warnings: e.warnings().iter().map(DiagnosticView::from).collect(),
        }
    }
}

/// A step as declared.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StepSummary {
    pub name: String,
    pub description: Option<String>,
    /// Names of the steps it waits for.
    pub depends: Vec<String>,
    /// `command`, `script`, `exec`, or `task` (run by an SDK worker's handler).
    pub action: String,
    /// The command lines, the script's interpreter, or the program and its arguments.
    pub command: Option<String>,
    /// The queue of a remote step; absent for the local executor.
    pub queue: Option<String>,
    /// What an SDK worker dispatches on, for a `task` step.
    pub task_type: Option<String>,
    pub timeout_sec: Option<f64>,
    /// Retries after the first attempt.
    pub retry_limit: u32,
}

impl StepSummary {
    fn new(s: &Step, w: &Workflow) -> StepSummary {
        let (action, command) = match &s.action {
            Action::Commands(lines) => ("command", Some(lines.join("\n"))),
            Action::Script { interpreter, .. } => ("script", interpreter.clone()),
            Action::Exec { program, args } => (
                "exec",
                Some(
                    std::iter::once(program.clone())
                        .chain(args.iter().cloned())
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            ),
            Action::Task { .. } => ("task", None),
        };
        StepSummary {
            name: s.name.clone(),
            description: s.description.clone(),
            depends: s.depends.iter().filter_map(|d| w.steps.get(d.0).map(|d| d.name.clone())).collect(),
            action: action.to_owned(),
            command,
            queue: s.queue.clone(),
            task_type: s.task_type().map(str::to_owned),
            timeout_sec: s.timeout.map(|t| t.as_secs_f64()),
            retry_limit: s.retry.limit,
        }
    }
}

/// A declared param.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ParamView {
    /// Absent for a positional param (`$1`, `$2`, …).
    pub name: Option<String>,
    pub default: Option<String>,
    /// `string`, `integer`, `number` or `boolean`.
    #[serde(rename = "type")]
    pub ty: String,
    pub description: Option<String>,
    pub required: bool,
    /// Allowed values; empty means any.
    pub choices: Vec<String>,
}

impl From<&cairn_core::spec::Param> for ParamView {
    fn from(p: &cairn_core::spec::Param) -> Self {
        ParamView {
            name: p.name.clone(),
            default: p.default.clone(),
            ty: match p.ty {
                ParamType::String => "string",
                ParamType::Integer => "integer",
                ParamType::Number => "number",
                ParamType::Boolean => "boolean",
            }
            .to_owned(),
            description: p.description.clone(),
            required: p.required,
            choices: p.choices.clone(),
        }
    }
}

/// One problem in a workflow file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DiagnosticView {
    /// 1-based, when known.
    pub line: Option<u32>,
    /// 1-based, in characters, when known.
    pub column: Option<u32>,
    /// The field concerned, e.g. `steps[2].depends`; empty for the whole file.
    pub path: String,
    pub message: String,
    /// What to do about it, or the name probably meant.
    pub hint: Option<String>,
}

impl From<&Diagnostic> for DiagnosticView {
    fn from(d: &Diagnostic) -> Self {
        DiagnosticView {
            line: d.pos.map(|p| p.line),
            column: d.pos.map(|p| p.column),
            path: d.path.clone(),
            message: d.message.clone(),
            hint: d.hint.clone(),
        }
    }
}

/// The answer of `POST /workflows/validate`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ValidateResponse {
    pub valid: bool,
    /// The workflow's name, when valid.
    pub name: Option<String>,
    /// Number of steps, when valid.
    pub steps: Option<usize>,
    pub errors: Vec<DiagnosticView>,
    pub warnings: Vec<DiagnosticView>,
}

// ---------------------------------------------------------------------------
// Requests and answers of the run routes

/// `POST /workflows/{name}/runs`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// Params as an object (`{"NAME": "Ada", "COUNT": 3}`) or as a list of
    /// `cairn run -p` values (`["NAME=Ada", "positional"]`).
    #[serde(default)]
    #[schema(value_type = Option<ParamsInput>)]
    pub params: serde_json::Value,
}

/// The two ways to pass params (documentation only: the server reads
/// `params` itself to name the exact param at fault).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ParamsInput {
    /// By name; values are strings, numbers or booleans.
    Named(BTreeMap<String, serde_json::Value>),
    /// `KEY=VALUE` or bare positional values, in order.
    Positional(Vec<String>),
}

/// A new run.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunCreated {
    pub run_id: RunId,
}

/// `POST /runs/{id}/retry`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// The step to rerun from; by default the first that did not complete.
    pub from_step: Option<String>,
}

/// The answer to a cancel: it is recorded; the run ends when its running
/// steps have stopped (watch the run or the event stream).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CancelAccepted {
    pub run_id: RunId,
    pub cancel_requested: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready`.
    pub status: String,
    /// Workflows in the catalog, valid or not.
    pub workflows: usize,
    /// Workflow files with errors.
    pub broken_workflows: usize,
}

/// A worker: one that called this server lately, or holds a lease.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    pub worker_id: String,
    /// The queues it leased from lately, or holds leases of.
    pub queues: Vec<String>,
    /// RUNNING tasks it holds the lease of.
    pub leases: u64,
    /// When it last called this server (a lease or a heartbeat); absent for
    /// a lease holder that calls another server, or a local executor.
    pub last_seen_at: Option<Timestamp>,
    /// The latest heartbeat among its leases.
    pub last_heartbeat_at: Option<Timestamp>,
    /// It runs local steps: a server's own executor.
    pub local: bool,
}

impl WorkerView {
    pub fn named(worker: &str) -> WorkerView {
        WorkerView {
            worker_id: worker.to_owned(),
            queues: Vec::new(),
            leases: 0,
            last_seen_at: None,
            last_heartbeat_at: None,
            local: false,
        }
    }

    /// Its latest sign of life.
    pub fn last_activity(&self) -> Option<Timestamp> {
        self.last_seen_at.max(self.last_heartbeat_at)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    pub workers: Vec<WorkerView>,
    /// More than 10,000 tasks run: leases were counted among the first 10,000.
    pub leases_capped: bool,
}

#[cfg(test)]
mod tests {
    use super::depends;

    #[test]
    fn depends_follow_the_plan() {
        let chain = cairn_core::spec::parse(
            "steps:\n  - {name: a, command: 'true'}\n  - {name: b, command: 'true'}\n\
             handler_on:\n  init: {command: 'true'}\n  success: {command: 'true'}\n",
            None,
        )
        .unwrap();
        assert_eq!(depends(&chain), [vec!["onInit"], vec!["a"], vec![], vec!["b"]]);
        let graph = cairn_core::spec::parse(
            "type: graph\nsteps:\n  - {name: a, command: 'true'}\n  - {name: b, command: 'true'}\n\
             \x20 - {name: c, command: 'true', depends: [a, b]}\n  - {name: d, command: 'true', depends: a}\n\
             handler_on:\n  failure: {command: 'true'}\n",
            None,
        )
        .unwrap();
        let names = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            depends(&graph),
            [names(&[]), names(&[]), names(&["a", "b"]), names(&["a"]), names(&["c", "d"])]
        );
    }
}
