//! The reads of the status counts (`crate::counts`): sums over ranges of
//! the aggregate tables, pipelined in one `REPEATABLE READ READ ONLY`
//! snapshot so the minute and hour tables are seen at one moment. Never a
//! read of `runs` or `tasks`.

use std::collections::BTreeMap;

use cairn_core::{RunStatus, TaskStatus};
use deadpool_postgres::{GenericClient, Pool};
use futures_util::future::try_join_all;
use tokio_postgres::IsolationLevel;

use super::Error;
use crate::counts::{self, Grain, Kind, Read, Summed};
use crate::error::StoreError;
use crate::history::{Bucket, CountQuery, TrendPoint, WorkflowTrends};

const SUM_RUN_COUNTS_MINUTE: &str = include_str!("sql/sum_run_counts_minute.sql");
const SUM_RUN_COUNTS_HOUR: &str = include_str!("sql/sum_run_counts_hour.sql");
const SUM_TASK_COUNTS_MINUTE: &str = include_str!("sql/sum_task_counts_minute.sql");
const SUM_TASK_COUNTS_HOUR: &str = include_str!("sql/sum_task_counts_hour.sql");
const SUM_RUN_COUNTS_DAY: &str = include_str!("sql/sum_run_counts_day.sql");
const SUM_TASK_COUNTS_DAY: &str = include_str!("sql/sum_task_counts_day.sql");
const LAST_RUN_COUNT_MINUTE: &str = include_str!("sql/last_run_count_minute.sql");
const LAST_TASK_COUNT_MINUTE: &str = include_str!("sql/last_task_count_minute.sql");

/// Every statement of the count reads, prepared when the store connects.
pub(super) const STATEMENTS: &[&str] = &[
    SUM_RUN_COUNTS_MINUTE,
    SUM_RUN_COUNTS_HOUR,
    SUM_TASK_COUNTS_MINUTE,
    SUM_TASK_COUNTS_HOUR,
    SUM_RUN_COUNTS_DAY,
    SUM_TASK_COUNTS_DAY,
    LAST_RUN_COUNT_MINUTE,
    LAST_TASK_COUNT_MINUTE,
];

/// The rows of `reads`, summed per slot, workflow and status; the reads go
/// out together.
async fn sums<C: GenericClient>(
    client: &C,
    kind: Kind,
    reads: &[Read],
    workflows: &[String],
) -> Result<Vec<Summed>, Error> {
    let all = try_join_all(reads.iter().map(|read| async move {
        let sql = match (kind, read.grain) {
            (Kind::Runs, Grain::Minute) => SUM_RUN_COUNTS_MINUTE,
            (Kind::Runs, Grain::Hour) => SUM_RUN_COUNTS_HOUR,
            (Kind::Tasks, Grain::Minute) => SUM_TASK_COUNTS_MINUTE,
            (Kind::Tasks, Grain::Hour) => SUM_TASK_COUNTS_HOUR,
            (Kind::Runs, Grain::Day) => SUM_RUN_COUNTS_DAY,
            (Kind::Tasks, Grain::Day) => SUM_TASK_COUNTS_DAY,
        };
        let stmt = client.prepare_cached(sql).await?;
        let rows = client.query(&stmt, &[&read.lo, &read.hi, &read.origin, &read.width, &workflows]).await?;
        rows.iter()
            .map(|row| {
                let code: i16 = row.try_get(2)?;
                Ok(Summed {
                    slot: row.try_get(0)?,
                    workflow: row.try_get(1)?,
                    status: u8::try_from(code).map_err(|_| {
                        StoreError::Corrupt(format!("status code {code} in the status counts"))
                    })?,
                    n: row.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()
    }))
    .await?;
    Ok(all.into_iter().flatten().collect())
}

async fn last_minute<C: GenericClient>(client: &C, kind: Kind) -> Result<Option<i64>, Error> {
    let sql = match kind {
        Kind::Runs => LAST_RUN_COUNT_MINUTE,
        Kind::Tasks => LAST_TASK_COUNT_MINUTE,
    };
    let stmt = client.prepare_cached(sql).await?;
    Ok(client.query_one(&stmt, &[]).await?.try_get(0)?)
}

async fn total(pool: &Pool, kind: Kind, q: &CountQuery) -> Result<Vec<Summed>, Error> {
    let reads = counts::total_reads(&q.submitted);
    let mut client = pool.get().await?;
    if reads.len() <= 1 {
        return sums(&client, kind, &reads, &q.workflows).await;
    }
    let snapshot = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let rows = sums(&snapshot, kind, &reads, &q.workflows).await?;
    snapshot.commit().await?;
    Ok(rows)
}

pub(super) async fn run_counts(pool: &Pool, q: &CountQuery) -> Result<BTreeMap<RunStatus, u64>, Error> {
    Ok(counts::totals(&total(pool, Kind::Runs, q).await?)?)
}

pub(super) async fn task_counts(pool: &Pool, q: &CountQuery) -> Result<BTreeMap<TaskStatus, u64>, Error> {
    Ok(counts::totals(&total(pool, Kind::Tasks, q).await?)?)
}

/// The plan of a run trend and its summed rows; `None` for an empty window.
async fn trend_rows(
    pool: &Pool,
    q: &CountQuery,
    bucket: Bucket,
) -> Result<Option<(counts::TrendPlan, Vec<Summed>)>, Error> {
    counts::check_trend(&q.submitted)?;
    let mut client = pool.get().await?;
    let snapshot = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let last = if q.submitted.to.is_none() { last_minute(&snapshot, Kind::Runs).await? } else { None };
    let Some(plan) = counts::trend_plan(&q.submitted, bucket, last)? else {
        return Ok(None);
    };
    let rows = sums(&snapshot, Kind::Runs, &plan.reads, &q.workflows).await?;
    snapshot.commit().await?;
    Ok(Some((plan, rows)))
}

pub(super) async fn run_trend(
    pool: &Pool,
    q: &CountQuery,
    bucket: Bucket,
) -> Result<Vec<TrendPoint<RunStatus>>, Error> {
    match trend_rows(pool, q, bucket).await? {
        None => Ok(Vec::new()),
        Some((plan, rows)) => Ok(counts::trend(rows.iter(), plan.slots)?),
    }
}

pub(super) async fn workflow_trends(
    pool: &Pool,
    q: &CountQuery,
    bucket: Bucket,
) -> Result<WorkflowTrends, Error> {
    match trend_rows(pool, q, bucket).await? {
        None => Ok(q.workflows.iter().map(|w| (w.clone(), Vec::new())).collect()),
        Some((plan, rows)) => Ok(counts::workflow_trends(&rows, plan.slots, &q.workflows)?),
    }
}
