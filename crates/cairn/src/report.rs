//! The JSON shapes Cairn prints (`cairn run --json`, `cairn status --json`,
//! `cairn history --json`). Field names are stable and documented in
//! docs/cli.md; statuses print in upper case.

use std::collections::BTreeMap;
use std::path::Path;

use cairn_core::durations::Durations;
use cairn_core::progress::Progress;
use cairn_core::record::{RunTransition, Transition};
use cairn_core::{RunId, RunStatus, TaskId, TaskStatus, Timestamp};
use cairn_engine::attempt_log_paths;
use cairn_store::model::{AttemptRecord, RunDetail, RunRecord};
use serde::Serialize;

#[derive(Serialize)]
pub struct RunReport {
    pub run_id: RunId,
    pub workflow: String,
    pub status: RunStatus,
    pub trigger: String,
    pub params: BTreeMap<String, String>,
    pub submitted_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
    /// Every captured output variable of the run, later steps winning.
    pub outputs: BTreeMap<String, String>,
    pub tasks: Vec<TaskReport>,
    pub transitions: Vec<RunTransition>,
}

#[derive(Serialize)]
pub struct TaskReport {
    pub id: TaskId,
    pub name: String,
    pub status: TaskStatus,
    /// Attempts started so far.
    pub attempts: u32,
    pub retry_count: u32,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub outputs: BTreeMap<String, String>,
    pub progress: Option<Progress>,
    pub stdout_file: Option<String>,
    pub stderr_file: Option<String>,
    pub durations: Durations,
    pub transitions: Vec<Transition>,
    pub attempt_records: Vec<AttemptRecord>,
}

impl RunReport {
    pub fn new(detail: &RunDetail, log_root: &Path, now: Timestamp) -> RunReport {
        let run = &detail.run;
        let mut outputs = BTreeMap::new();
        let tasks = detail
            .tasks
            .iter()
            .map(|t| {
                let log = detail.transitions.get(&t.id).cloned().unwrap_or_default();
                outputs.extend(t.outputs.clone());
                let (out, err) = if t.attempt > 0 {
                    let (o, e) = attempt_log_paths(log_root, run.id, t.index as usize, &t.name, t.attempt);
                    (o.exists().then(|| o.display().to_string()), e.exists().then(|| e.display().to_string()))
                } else {
                    (None, None)
                };
                TaskReport {
                    id: t.id,
                    name: t.name.clone(),
                    status: t.status,
                    attempts: t.attempt,
                    retry_count: t.attempt.saturating_sub(1),
                    exit_code: t.exit_code,
                    error: t.error.clone(),
                    outputs: t.outputs.clone(),
                    progress: t.progress.clone(),
                    stdout_file: out,
                    stderr_file: err,
                    durations: Durations::from_log(&log, now),
                    transitions: log,
                    attempt_records: detail.attempts.get(&t.id).cloned().unwrap_or_default(),
                }
            })
            .collect();
        RunReport {
            run_id: run.id,
            workflow: run.workflow.clone(),
            status: run.status,
            trigger: run.trigger.clone(),
            params: run.params.clone(),
            submitted_at: run.submitted_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            error: run.error.clone(),
            outputs,
            tasks,
            transitions: detail.run_transitions.clone(),
        }
    }
}

/// One line of `cairn history --json`.
#[derive(Serialize)]
pub struct RunLine {
    pub run_id: RunId,
    pub workflow: String,
    pub status: RunStatus,
    pub trigger: String,
    pub submitted_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Seconds from submission to finish (or to now while running).
    pub duration: f64,
    pub error: Option<String>,
}

impl RunLine {
    pub fn new(r: &RunRecord, now: Timestamp) -> RunLine {
        RunLine {
            run_id: r.id,
            workflow: r.workflow.clone(),
            status: r.status,
            trigger: r.trigger.clone(),
            submitted_at: r.submitted_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration: r.finished_at.unwrap_or(now).since(r.submitted_at).as_secs_f64(),
            error: r.error.clone(),
        }
    }
}
