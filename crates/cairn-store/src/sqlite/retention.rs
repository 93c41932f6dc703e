//! Retention on SQLite (`crate::retention`): the reads that find expired
//! runs, on the read pool, and the deletion of finished runs, a job of the
//! one writer like every other write.
//!
//! A deletion runs in the writer's group transaction: a run and everything
//! that hangs off it (its tasks and their logs, attempts, progress samples,
//! offers and posted results; its own log, workflow text and label terms)
//! go together, and each run and task deleted is subtracted from the status
//! counts through the transaction's net changes, which the writer adds to
//! the aggregate tables just before it commits. A job of a hundred runs of
//! a few tasks takes a few milliseconds of the writer: dispatch waits that
//! long at most.

use std::collections::{BTreeMap, HashMap};

use cairn_core::retention::Expiry;
use cairn_core::{RunId, TaskId, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use super::Error;
use crate::counts::{Deltas, Kind};
use crate::model::ProgressSample;
use crate::retention::{Deleted, FINISHED_RUNS};

const RETENTION_WORKFLOWS: &str = include_str!("sql/retention_workflows.sql");
const RUN_PROGRESS_SAMPLES: &str = include_str!("sql/run_progress_samples.sql");
const EXPIRED_FINISHED: &str = include_str!("sql/expired_finished.sql");
const EXPIRED_BEYOND: &str = include_str!("sql/expired_beyond.sql");
const DELETE_RUN: &str = include_str!("sql/delete_run.sql");
const DELETE_RUN_TASK_TRANSITIONS: &str = include_str!("sql/delete_run_task_transitions.sql");
const DELETE_RUN_ATTEMPTS: &str = include_str!("sql/delete_run_attempts.sql");
const DELETE_RUN_PROGRESS_SAMPLES: &str = include_str!("sql/delete_run_progress_samples.sql");
const DELETE_RUN_TASK_OFFERS: &str = include_str!("sql/delete_run_task_offers.sql");
const DELETE_RUN_TASK_RESULTS: &str = include_str!("sql/delete_run_task_results.sql");
const DELETE_RUN_TASKS: &str = include_str!("sql/delete_run_tasks.sql");
const DELETE_RUN_TRANSITIONS: &str = include_str!("sql/delete_run_transitions.sql");
const DELETE_RUN_SPEC: &str = include_str!("sql/delete_run_spec.sql");
const DELETE_RUN_LABELS: &str = include_str!("sql/delete_run_labels.sql");

/// Every statement of retention, prepared when the store opens.
pub(super) const STATEMENTS: &[&str] = &[
    RETENTION_WORKFLOWS,
    RUN_PROGRESS_SAMPLES,
    EXPIRED_FINISHED,
    EXPIRED_BEYOND,
    DELETE_RUN,
    DELETE_RUN_TASK_TRANSITIONS,
    DELETE_RUN_ATTEMPTS,
    DELETE_RUN_PROGRESS_SAMPLES,
    DELETE_RUN_TASK_OFFERS,
    DELETE_RUN_TASK_RESULTS,
    DELETE_RUN_TASKS,
    DELETE_RUN_TRANSITIONS,
    DELETE_RUN_SPEC,
    DELETE_RUN_LABELS,
];

/// The rows of a run's tasks, deleted before the tasks themselves (they
/// are found through them).
const BELOW_TASKS: [&str; 5] = [
    DELETE_RUN_TASK_TRANSITIONS,
    DELETE_RUN_ATTEMPTS,
    DELETE_RUN_PROGRESS_SAMPLES,
    DELETE_RUN_TASK_OFFERS,
    DELETE_RUN_TASK_RESULTS,
];

/// The run's own rows besides its task rows.
const BESIDE_RUN: [&str; 3] = [DELETE_RUN_TRANSITIONS, DELETE_RUN_SPEC, DELETE_RUN_LABELS];

pub(super) fn run_workflows(conn: &Connection, after: &str, limit: usize) -> Result<Vec<String>, Error> {
    let mut stmt = conn.prepare_cached(RETENTION_WORKFLOWS)?;
    let names = stmt.query_map(params![after, limit as i64], |row| row.get(0))?;
    Ok(names.collect::<Result<_, _>>()?)
}

pub(super) fn run_progress_samples(
    conn: &Connection,
    run: RunId,
) -> Result<BTreeMap<TaskId, Vec<ProgressSample>>, Error> {
    let mut all: BTreeMap<TaskId, Vec<ProgressSample>> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(RUN_PROGRESS_SAMPLES)?;
    let mut rows = stmt.query([run.to_bytes()])?;
    while let Some(row) = rows.next()? {
        all.entry(TaskId::from_bytes(row.get(0)?)).or_default().push(ProgressSample {
            attempt: row.get(1)?,
            at: Timestamp::from_micros(row.get(2)?),
            percent: row.get::<_, f64>(3)? as f32,
            message: row.get(4)?,
        });
    }
    Ok(all)
}

pub(super) fn expired_runs(
    conn: &Connection,
    workflow: &str,
    expiry: Expiry,
    limit: usize,
) -> Result<Vec<RunId>, Error> {
    let limit = limit as i64;
    match expiry {
        Expiry::FinishedBefore(cutoff) => {
            // One range per finished status, merged by finish time.
            let mut found: Vec<(i64, [u8; 16])> = Vec::new();
            let mut stmt = conn.prepare_cached(EXPIRED_FINISHED)?;
            for status in FINISHED_RUNS {
                let rows = stmt.query_map(params![workflow, status, cutoff.as_micros(), limit], |row| {
                    Ok((row.get(1)?, row.get(0)?))
                })?;
                for row in rows {
                    found.push(row?);
                }
            }
            found.sort_unstable();
            Ok(found.into_iter().take(limit as usize).map(|(_, id)| RunId::from_bytes(id)).collect())
        }
        Expiry::BeyondNewest(keep) => {
            let mut stmt = conn.prepare_cached(EXPIRED_BEYOND)?;
            let rows = stmt.query_map(params![workflow, i64::from(keep), limit], |row| row.get(0))?;
            rows.map(|id| Ok(RunId::from_bytes(id?))).collect()
        }
    }
}

/// Deletes the finished runs of `ids` in the writer's transaction `conn`,
/// adding their removal to the transaction's net count changes `counts`
/// and naming their workflows in `workflows` (the writer names each run's
/// workflow from there, as the run itself is gone by then).
pub(super) fn delete_runs(
    conn: &Connection,
    ids: &[RunId],
    counts: &mut Deltas,
    workflows: &mut HashMap<i64, String>,
) -> Result<Deleted, Error> {
    let mut deleted = Deleted::default();
    for &id in ids {
        let gone: Option<(i64, String, u8, i64)> = conn
            .prepare_cached(DELETE_RUN)?
            .query_row([id.to_bytes()], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            .optional()?;
        let Some((run_no, workflow, status, submitted_at)) = gone else {
            continue;
        };
        counts.removed(Kind::Runs, submitted_at, run_no, status, 1);
        workflows.insert(run_no, workflow);
        for sql in BELOW_TASKS {
            conn.prepare_cached(sql)?.execute([run_no])?;
        }
        let mut stmt = conn.prepare_cached(DELETE_RUN_TASKS)?;
        let mut rows = stmt.query([run_no])?;
        while let Some(row) = rows.next()? {
            let (status, submitted_at): (u8, i64) = (row.get(0)?, row.get(1)?);
            counts.removed(Kind::Tasks, submitted_at, run_no, status, 1);
            deleted.tasks += 1;
        }
        drop(rows);
        for sql in BESIDE_RUN {
            conn.prepare_cached(sql)?.execute([run_no])?;
        }
        deleted.runs.push(id);
    }
    Ok(deleted)
}
