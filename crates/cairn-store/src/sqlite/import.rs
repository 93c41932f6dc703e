//! [`Store::import_runs`](crate::Store::import_runs) on SQLite: the rows of
//! finished runs (checked by `crate::import`), written by the one writer in
//! its transaction with prepared statements, one row per statement.
//!
//! The imported runs and tasks add to the net count changes of the
//! transaction (`crate::counts`) as created at their final status, and the
//! writer adds them to the aggregate tables before its commit, as for any
//! batch. Rows go in the order of the import: runs submitted in time order
//! (as a history is) append to the end of every index keyed by id or time.

use std::collections::HashMap;

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use super::Error;
use crate::counts::{Deltas, Kind};
use crate::import::{self, FinishedRun, Phases};

const IMPORT_RUN: &str = include_str!("sql/import_run.sql");
const IMPORT_TASK: &str = include_str!("sql/import_task.sql");
const IMPORT_ATTEMPT: &str = include_str!("sql/import_attempt.sql");
const INSERT_RUN_SPEC: &str = include_str!("sql/insert_run_spec.sql");
const INSERT_RUN_LABEL: &str = include_str!("sql/insert_run_label.sql");
const INSERT_RUN_TRANSITION: &str = include_str!("sql/insert_run_transition.sql");
const INSERT_TASK_TRANSITION: &str = include_str!("sql/insert_task_transition.sql");
const INSERT_PROGRESS_SAMPLE: &str = include_str!("sql/insert_progress_sample.sql");
const RUN_EXISTS: &str = include_str!("sql/run_exists.sql");

const STATEMENTS: [&str; 9] = [
    IMPORT_RUN,
    IMPORT_TASK,
    IMPORT_ATTEMPT,
    INSERT_RUN_SPEC,
    INSERT_RUN_LABEL,
    INSERT_RUN_TRANSITION,
    INSERT_TASK_TRANSITION,
    INSERT_PROGRESS_SAMPLE,
    RUN_EXISTS,
];

/// Prepares every statement of an import once, so a schema mismatch fails
/// when the store opens.
pub(super) fn prepare_all(conn: &Connection) -> rusqlite::Result<()> {
    for sql in STATEMENTS {
        conn.prepare_cached(sql)?;
    }
    Ok(())
}

/// Writes `runs` (already checked) in the writer's transaction `conn`,
/// adding them to the transaction's count changes and naming each run's
/// workflow in `workflows` for them. An id already stored fails the import
/// with [`StoreError::InvalidImport`](crate::StoreError::InvalidImport); the
/// writer then rolls it back.
pub(super) fn import(
    conn: &Connection,
    runs: &[FinishedRun],
    counts: &mut Deltas,
    workflows: &mut HashMap<i64, String>,
) -> Result<(), Error> {
    let mut insert_run = conn.prepare_cached(IMPORT_RUN)?;
    let mut insert_task = conn.prepare_cached(IMPORT_TASK)?;
    let mut insert_attempt = conn.prepare_cached(IMPORT_ATTEMPT)?;
    let mut insert_spec = conn.prepare_cached(INSERT_RUN_SPEC)?;
    let mut insert_label = conn.prepare_cached(INSERT_RUN_LABEL)?;
    let mut insert_run_transition = conn.prepare_cached(INSERT_RUN_TRANSITION)?;
    let mut insert_task_transition = conn.prepare_cached(INSERT_TASK_TRANSITION)?;
    let mut insert_sample = conn.prepare_cached(INSERT_PROGRESS_SAMPLE)?;
    for run in runs {
        let detail = &run.detail;
        let r = &detail.run;
        let id = r.id.to_bytes();
        let run_no: Option<i64> = insert_run
            .query_row(
                params![
                    id,
                    r.workflow,
                    r.status.code(),
                    r.trigger,
                    json_map(&r.params, r.id, "run.params")?,
                    r.owner,
                    r.spec_path,
                    r.submitted_at.as_micros(),
                    r.started_at.map(|t| t.as_micros()),
                    r.finished_at.map(|t| t.as_micros()),
                    r.error,
                    r.cancel_requested_by.as_ref().map(ToString::to_string),
                    r.schedule_tick.map(|t| t.as_micros()),
                ],
                |row| row.get(0),
            )
            .optional()?;
        let Some(run_no) = run_no else {
            let taken = conn.prepare_cached(RUN_EXISTS)?.exists([id])?;
            return Err(match r.schedule_tick {
                Some(tick) if !taken => import::refused(
                    r.id,
                    "run.schedule_tick",
                    format!("workflow {:?} already has a run for the tick at {tick}", r.workflow),
                ),
                _ => import::refused(r.id, "id", "a run with this id is already stored"),
            }
            .into());
        };
        counts.created(Kind::Runs, r.submitted_at.as_micros(), run_no, r.status.code());
        workflows.insert(run_no, r.workflow.clone());
        if let Some(source) = &run.spec_source {
            insert_spec.execute(params![run_no, source])?;
        }
        for term in crate::search::label_terms(&run.labels) {
            insert_label.execute(params![term, id, run_no])?;
        }
        for t in &detail.run_transitions {
            insert_run_transition.execute(params![
                run_no,
                t.from.map(|s| s.code()),
                t.to.code(),
                t.at.as_micros(),
                t.reason,
                t.actor.to_string(),
            ])?;
        }
        for (i, task) in detail.tasks.iter().enumerate() {
            let log = import::log(detail, task);
            let phases = Phases::of(log);
            let details = task
                .details
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| import::refused(r.id, format!("tasks[{i}].details"), e.to_string()))?;
            let task_no = insert_task
                .insert(params![
                    task.id.to_bytes(),
                    task.status.code(),
                    task.attempt,
                    task.finished_at.map(|t| t.as_micros()),
                    run_no,
                    task.index,
                    task.max_attempts,
                    task.submitted_at.as_micros(),
                    task.started_at.map(|t| t.as_micros()),
                    task.not_before.map(|t| t.as_micros()),
                    task.progress.as_ref().map(|p| f64::from(p.percent)),
                    task.progress_at.map(|t| t.as_micros()),
                    task.name,
                    task.queue,
                    task.progress.as_ref().and_then(|p| p.message.as_deref()),
                    details,
                    r.workflow,
                    phases.blocked_us,
                    phases.pending_us,
                    phases.running_us,
                ])
                .map_err(|e| match e.sqlite_error_code() {
                    Some(ErrorCode::ConstraintViolation) => import::refused(
                        r.id,
                        format!("tasks[{i}].id"),
                        format!("a task with the id {} is already stored", task.id),
                    )
                    .into(),
                    _ => Error::from(e),
                })?;
            counts.created(Kind::Tasks, task.submitted_at.as_micros(), run_no, task.status.code());
            for t in log {
                insert_task_transition.execute(params![
                    task_no,
                    t.attempt,
                    t.from.map(|s| s.code()),
                    t.to.code(),
                    t.at.as_micros(),
                    t.reason,
                    t.actor.to_string(),
                ])?;
            }
            for a in import::attempts(detail, task) {
                let outputs = import::attempt_outputs(task, a)
                    .map(|o| json_map(o, r.id, &format!("tasks[{i}].outputs")))
                    .transpose()?
                    .flatten();
                insert_attempt.execute(params![
                    task_no,
                    a.attempt,
                    a.worker,
                    a.started_at.as_micros(),
                    a.ended_at.map(|t| t.as_micros()),
                    a.outcome.map(|s| s.code()),
                    a.exit_code,
                    a.error,
                    outputs,
                ])?;
            }
            for s in import::samples(run, task) {
                insert_sample.execute(params![
                    task_no,
                    s.attempt,
                    s.at.as_micros(),
                    f64::from(s.percent),
                    s.message,
                ])?;
            }
        }
    }
    Ok(())
}

/// A map as JSON, or NULL when empty.
fn json_map(
    map: &std::collections::BTreeMap<String, String>,
    run: cairn_core::RunId,
    field: &str,
) -> Result<Option<String>, Error> {
    if map.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(map).map(Some).map_err(|e| import::refused(run, field, e.to_string()).into())
}
