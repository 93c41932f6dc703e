//! Phase statistics and expected durations on PostgreSQL (see
//! `crate::analytics`): one statement per workflow — a skip along
//! `tasks_done_step` for its steps, then a `LATERAL` range of the index per
//! (step, terminal status), index-only — pipelined in one `REPEATABLE READ
//! READ ONLY` snapshot, so a whole read costs a round trip or two whatever
//! the number of steps.

use std::collections::BTreeMap;

use cairn_core::{RunId, RunStatus, TaskId, TaskStatus};
use deadpool_postgres::{GenericClient, Pool};
use futures_util::future::try_join_all;
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::{Json, ToSql};

use super::{Error, Uuid};
use crate::analytics::{
    self, EXPECTED_SAMPLES, ExpectedDurations, PhaseRead, PhaseRow, PhaseStats, PhaseStatsBuilder,
};
use crate::error::StoreError;
use crate::search::{PlannedStatement, QueryPlan};

const DONE_WORKFLOWS: &str = include_str!("sql/done_workflows.sql");
const STEP_PHASES: &str = include_str!("sql/step_phases.sql");
const STEP_EXPECTED: &str = include_str!("sql/step_expected.sql");
const RUN_EXPECTED: &str = include_str!("sql/run_expected.sql");
const SLOW_TASK_IDS: &str = include_str!("sql/slow_task_ids.sql");

/// Every statement of the analytics reads, prepared when the store connects.
pub(super) const STATEMENTS: &[&str] =
    &[DONE_WORKFLOWS, STEP_PHASES, STEP_EXPECTED, RUN_EXPECTED, SLOW_TASK_IDS];

fn code(status: u8) -> i16 {
    i16::from(status)
}

fn status_code(raw: i16) -> Result<u8, StoreError> {
    u8::try_from(raw).map_err(|_| StoreError::Corrupt(format!("task status code {raw}")))
}

async fn step_rows<C: GenericClient>(
    client: &C,
    workflow: &str,
    q: &PhaseRead,
    statuses: &[i16],
) -> Result<Vec<(String, PhaseRow)>, Error> {
    let stmt = client.prepare_cached(STEP_PHASES).await?;
    let limit = q.per_status_limit();
    let rows = client.query(&stmt, &[&workflow, &q.from, &q.to, &statuses, &limit]).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                PhaseRow {
                    status: status_code(row.try_get(1)?)?,
                    finished_at: row.try_get(2)?,
                    task_no: row.try_get(3)?,
                    blocked_us: row.try_get(4)?,
                    pending_us: row.try_get(5)?,
                    running_us: row.try_get(6)?,
                },
            ))
        })
        .collect()
}

pub(super) async fn phase_stats(pool: &Pool, q: &PhaseRead) -> Result<PhaseStats, Error> {
    let mut client = pool.get().await?;
    let snapshot = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let workflows = match &q.workflows {
        Some(workflows) => workflows.clone(),
        None => {
            let stmt = snapshot.prepare_cached(DONE_WORKFLOWS).await?;
            let rows = snapshot.query(&stmt, &[]).await?;
            rows.iter().map(|row| row.try_get(0)).collect::<Result<Vec<String>, _>>()?
        }
    };
    let statuses: Vec<i16> = analytics::terminal_statuses().map(|s| code(s.code())).collect();
    let read = try_join_all(workflows.iter().map(|w| step_rows(&snapshot, w, q, &statuses))).await?;
    let mut stats = PhaseStatsBuilder::new(q);
    for (workflow, rows) in workflows.iter().zip(read) {
        // Rows come step by step (the skip's order); gather each step's.
        let mut by_step: BTreeMap<String, Vec<PhaseRow>> = BTreeMap::new();
        for (step, row) in rows {
            by_step.entry(step).or_default().push(row);
        }
        for (step, rows) in by_step {
            stats.add_step(workflow, &step, rows)?;
        }
    }
    let mut ids = BTreeMap::new();
    let wanted = stats.slow_task_nos();
    if !wanted.is_empty() {
        let stmt = snapshot.prepare_cached(SLOW_TASK_IDS).await?;
        for row in snapshot.query(&stmt, &[&wanted]).await? {
            let (task, run): (Uuid, Uuid) = (row.try_get(1)?, row.try_get(2)?);
            ids.insert(row.try_get::<_, i64>(0)?, (TaskId::from_bytes(task.0), RunId::from_bytes(run.0)));
        }
    }
    snapshot.commit().await?;
    Ok(stats.finish(&ids)?)
}

pub(super) async fn expected_durations(pool: &Pool, workflow: String) -> Result<ExpectedDurations, Error> {
    let mut client = pool.get().await?;
    let snapshot = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let limit = EXPECTED_SAMPLES as i64;
    let (steps, runs) = {
        let task_status = code(TaskStatus::Completed.code());
        let run_status = i16::from(RunStatus::Completed.code());
        let (steps_stmt, runs_stmt) = futures_util::future::try_join(
            snapshot.prepare_cached(STEP_EXPECTED),
            snapshot.prepare_cached(RUN_EXPECTED),
        )
        .await?;
        futures_util::future::try_join(
            snapshot.query(&steps_stmt, &[&workflow, &task_status, &limit]),
            snapshot.query(&runs_stmt, &[&workflow, &run_status, &limit]),
        )
        .await?
    };
    snapshot.commit().await?;
    let steps = steps
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<Result<Vec<(String, i64, i64)>, Error>>()?;
    let runs = runs.iter().map(|row| row.try_get(0)).collect::<Result<Vec<i64>, _>>()?;
    Ok(analytics::expected_from(workflow, steps, runs))
}

/// The plan PostgreSQL makes of every analytics statement, as `EXPLAIN
/// (FORMAT JSON)`, with `workflow` as their parameter (for tests and diagnosis).
pub(super) async fn explain(pool: &Pool, workflow: &str) -> Result<QueryPlan, Error> {
    let client = pool.get().await?;
    let statuses: Vec<i16> = analytics::terminal_statuses().map(|s| code(s.code())).collect();
    let completed = code(TaskStatus::Completed.code());
    let run_completed = i16::from(RunStatus::Completed.code());
    let (from, to, limit) = (0_i64, i64::MAX, 10_i64);
    let task_nos: Vec<i64> = vec![1, 2];
    let statements: [(&str, Vec<&(dyn ToSql + Sync)>); 5] = [
        (DONE_WORKFLOWS, vec![]),
        (STEP_PHASES, vec![&workflow, &from, &to, &statuses, &limit]),
        (STEP_EXPECTED, vec![&workflow, &completed, &limit]),
        (RUN_EXPECTED, vec![&workflow, &run_completed, &limit]),
        (SLOW_TASK_IDS, vec![&task_nos]),
    ];
    let mut planned = Vec::new();
    for (sql, params) in statements {
        let row = client.query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &params).await?;
        let plan: Json<serde_json::Value> = row.try_get(0)?;
        planned.push(PlannedStatement { sql: sql.to_owned(), plan: plan.0.to_string() });
    }
    Ok(QueryPlan { shape: "phase analytics".to_owned(), statements: planned })
}
