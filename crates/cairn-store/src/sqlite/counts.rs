//! The reads of the status counts (`crate::counts`): sums over ranges of
//! the aggregate tables, in one read transaction so the minute, hour and
//! day tables are seen at one moment. Never a read of `runs` or `tasks`.

use std::collections::BTreeMap;

use cairn_core::{RunStatus, TaskStatus};
use rusqlite::{Connection, params};

use super::Error;
use crate::counts::{self, Grain, Kind, Read, Summed};
use crate::history::{Bucket, CountQuery, TrendPoint, WorkflowTrends};

const SUM_RUN_COUNTS_MINUTE: &str = include_str!("sql/sum_run_counts_minute.sql");
const SUM_RUN_COUNTS_HOUR: &str = include_str!("sql/sum_run_counts_hour.sql");
const SUM_TASK_COUNTS_MINUTE: &str = include_str!("sql/sum_task_counts_minute.sql");
const SUM_TASK_COUNTS_HOUR: &str = include_str!("sql/sum_task_counts_hour.sql");
const SUM_RUN_COUNTS_DAY: &str = include_str!("sql/sum_run_counts_day.sql");
const SUM_TASK_COUNTS_DAY: &str = include_str!("sql/sum_task_counts_day.sql");
const LAST_RUN_COUNT_MINUTE: &str = include_str!("sql/last_run_count_minute.sql");
const LAST_TASK_COUNT_MINUTE: &str = include_str!("sql/last_task_count_minute.sql");

/// The rows of `reads`, summed per slot, workflow and status.
fn sums(conn: &Connection, kind: Kind, reads: &[Read], workflows: &[String]) -> Result<Vec<Summed>, Error> {
    let workflows = counts::workflow_filter(workflows)
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| crate::StoreError::InvalidQuery(format!("the workflows cannot be encoded: {e}")))?;
    let mut all = Vec::new();
    for read in reads {
        let sql = match (kind, read.grain) {
            (Kind::Runs, Grain::Minute) => SUM_RUN_COUNTS_MINUTE,
            (Kind::Runs, Grain::Hour) => SUM_RUN_COUNTS_HOUR,
            (Kind::Tasks, Grain::Minute) => SUM_TASK_COUNTS_MINUTE,
            (Kind::Tasks, Grain::Hour) => SUM_TASK_COUNTS_HOUR,
            (Kind::Runs, Grain::Day) => SUM_RUN_COUNTS_DAY,
            (Kind::Tasks, Grain::Day) => SUM_TASK_COUNTS_DAY,
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![read.lo, read.hi, read.origin, read.width, workflows])?;
        while let Some(row) = rows.next()? {
            all.push(Summed {
                slot: row.get(0)?,
                workflow: row.get(1)?,
                status: row.get(2)?,
                n: row.get(3)?,
            });
        }
    }
    Ok(all)
}

fn last_minute(conn: &Connection, kind: Kind) -> Result<Option<i64>, Error> {
    let sql = match kind {
        Kind::Runs => LAST_RUN_COUNT_MINUTE,
        Kind::Tasks => LAST_TASK_COUNT_MINUTE,
    };
    Ok(conn.prepare_cached(sql)?.query_row([], |row| row.get(0))?)
}

fn total(conn: &Connection, kind: Kind, q: &CountQuery) -> Result<Vec<Summed>, Error> {
    let snapshot = conn.unchecked_transaction()?;
    let rows = sums(&snapshot, kind, &counts::total_reads(&q.submitted), &q.workflows)?;
    snapshot.finish()?;
    Ok(rows)
}

pub(super) fn run_counts(conn: &Connection, q: &CountQuery) -> Result<BTreeMap<RunStatus, u64>, Error> {
    Ok(counts::totals(&total(conn, Kind::Runs, q)?)?)
}

pub(super) fn task_counts(conn: &Connection, q: &CountQuery) -> Result<BTreeMap<TaskStatus, u64>, Error> {
    Ok(counts::totals(&total(conn, Kind::Tasks, q)?)?)
}

/// The plan of a run trend and its summed rows; `None` for an empty window.
fn trend_rows(
    conn: &Connection,
    q: &CountQuery,
    bucket: Bucket,
) -> Result<Option<(counts::TrendPlan, Vec<Summed>)>, Error> {
    counts::check_trend(&q.submitted)?;
    let snapshot = conn.unchecked_transaction()?;
    let last = if q.submitted.to.is_none() { last_minute(&snapshot, Kind::Runs)? } else { None };
    let Some(plan) = counts::trend_plan(&q.submitted, bucket, last)? else {
        return Ok(None);
    };
    let rows = sums(&snapshot, Kind::Runs, &plan.reads, &q.workflows)?;
    snapshot.finish()?;
    Ok(Some((plan, rows)))
}

pub(super) fn run_trend(
    conn: &Connection,
    q: &CountQuery,
    bucket: Bucket,
) -> Result<Vec<TrendPoint<RunStatus>>, Error> {
    match trend_rows(conn, q, bucket)? {
        None => Ok(Vec::new()),
        Some((plan, rows)) => Ok(counts::trend(rows.iter(), plan.slots)?),
    }
}

pub(super) fn workflow_trends(
    conn: &Connection,
    q: &CountQuery,
    bucket: Bucket,
) -> Result<WorkflowTrends, Error> {
    match trend_rows(conn, q, bucket)? {
        None => Ok(q.workflows.iter().map(|w| (w.clone(), Vec::new())).collect()),
        Some((plan, rows)) => Ok(counts::workflow_trends(&rows, plan.slots, &q.workflows)?),
    }
}
