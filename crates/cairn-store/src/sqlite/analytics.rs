//! Phase statistics and expected durations on SQLite (see
//! `crate::analytics`): skips along `tasks_done_step` for the workflows and
//! steps, one range of it per (step, terminal status), all pinned with
//! `INDEXED BY` and read in one read transaction. In-process, a statement
//! per step costs no round trip, so each range is its own statement.

use std::collections::BTreeMap;

use cairn_core::{RunId, RunStatus, TaskId, TaskStatus};
use rusqlite::{Connection, params};

use super::Error;
use crate::analytics::{
    self, EXPECTED_SAMPLES, ExpectedDurations, PhaseRead, PhaseRow, PhaseStats, PhaseStatsBuilder,
};
use crate::search::{PlannedStatement, QueryPlan};

const DONE_WORKFLOWS: &str = include_str!("sql/done_workflows.sql");
const DONE_STEPS: &str = include_str!("sql/done_steps.sql");
const STEP_PHASES: &str = include_str!("sql/step_phases.sql");
const STEP_EXPECTED: &str = include_str!("sql/step_expected.sql");
const RUN_EXPECTED: &str = include_str!("sql/run_expected.sql");
const SLOW_TASK_IDS: &str = include_str!("sql/slow_task_ids.sql");

fn names(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<String>, Error> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn phase_stats(conn: &Connection, q: &PhaseRead) -> Result<PhaseStats, Error> {
    let snapshot = conn.unchecked_transaction()?;
    let workflows = match &q.workflows {
        Some(workflows) => workflows.clone(),
        None => names(&snapshot, DONE_WORKFLOWS, [])?,
    };
    let mut stats = PhaseStatsBuilder::new(q);
    let mut read = snapshot.prepare_cached(STEP_PHASES)?;
    for workflow in &workflows {
        for step in names(&snapshot, DONE_STEPS, [workflow])? {
            let mut rows = Vec::new();
            for status in analytics::terminal_statuses() {
                let found = read.query_map(
                    params![workflow, step, status.code(), q.from, q.to, q.per_status_limit()],
                    |row| {
                        Ok(PhaseRow {
                            status: status.code(),
                            finished_at: row.get(0)?,
                            task_no: row.get(1)?,
                            blocked_us: row.get(2)?,
                            pending_us: row.get(3)?,
                            running_us: row.get(4)?,
                        })
                    },
                )?;
                for row in found {
                    rows.push(row?);
                }
            }
            stats.add_step(workflow, &step, rows)?;
        }
    }
    drop(read);
    let mut ids = BTreeMap::new();
    let mut lookup = snapshot.prepare_cached(SLOW_TASK_IDS)?;
    for task_no in stats.slow_task_nos() {
        let (task, run): ([u8; 16], [u8; 16]) =
            lookup.query_row([task_no], |row| Ok((row.get(0)?, row.get(1)?)))?;
        ids.insert(task_no, (TaskId::from_bytes(task), RunId::from_bytes(run)));
    }
    drop(lookup);
    snapshot.finish()?;
    Ok(stats.finish(&ids)?)
}

pub(super) fn expected_durations(conn: &Connection, workflow: String) -> Result<ExpectedDurations, Error> {
    let snapshot = conn.unchecked_transaction()?;
    let limit = EXPECTED_SAMPLES as i64;
    let mut samples = Vec::new();
    let mut read = snapshot.prepare_cached(STEP_EXPECTED)?;
    for step in names(&snapshot, DONE_STEPS, [&workflow])? {
        let rows = read.query_map(params![workflow, step, TaskStatus::Completed.code(), limit], |row| {
            Ok((step.clone(), row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            samples.push(row?);
        }
    }
    drop(read);
    let runs: Vec<i64> = snapshot
        .prepare_cached(RUN_EXPECTED)?
        .query_map(params![workflow, RunStatus::Completed.code(), limit], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    snapshot.finish()?;
    Ok(analytics::expected_from(workflow, samples, runs))
}

/// The plan SQLite makes of every analytics statement, with `workflow` and
/// a step of it as their parameters (for tests and diagnosis).
pub(super) fn explain(conn: &Connection, workflow: &str, step: &str) -> Result<QueryPlan, Error> {
    use rusqlite::types::Value;
    let status = Value::from(TaskStatus::Completed.code());
    let (workflow, step) = (Value::from(workflow.to_owned()), Value::from(step.to_owned()));
    let n = |v: i64| Value::from(v);
    let statements: [(&str, Vec<Value>); 6] = [
        (DONE_WORKFLOWS, vec![]),
        (DONE_STEPS, vec![workflow.clone()]),
        (STEP_PHASES, vec![workflow.clone(), step.clone(), status.clone(), n(0), n(i64::MAX), n(10)]),
        (STEP_EXPECTED, vec![workflow.clone(), step, status, n(10)]),
        (RUN_EXPECTED, vec![workflow, Value::from(RunStatus::Completed.code()), n(10)]),
        (SLOW_TASK_IDS, vec![n(1)]),
    ];
    let mut planned = Vec::new();
    for (sql, values) in statements {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
        let mut lines = Vec::new();
        while let Some(row) = rows.next()? {
            lines.push(row.get::<_, String>(3)?);
        }
        planned.push(PlannedStatement { sql: sql.to_owned(), plan: lines.join("\n") });
    }
    Ok(QueryPlan { shape: "phase analytics".to_owned(), statements: planned })
}
