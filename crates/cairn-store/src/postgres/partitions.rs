//! The partitions of the logs (`task_transitions`, `attempts`,
//! `progress_samples`), kept by the leader (V8, `crate::retention`).
//!
//! The three tables are partitioned alike by ranges of `task_no`, listed in
//! `log_partitions`. [`maintain`] keeps one whole range ahead of the next
//! task number (a *spare*), sized to hold about [`PartitionPolicy::span`]
//! of tasks at the rate of the last span; if rows went to the DEFAULT
//! partitions meanwhile (the leader was away while the spare filled up),
//! the range it makes starts where the last one ended and reaches past the
//! newest task, taking those rows in. It then drops the partitions of every
//! range whose task numbers have all been handed out and none of whose
//! tasks is left: retention deleted them, so nothing can read those log
//! rows any more.
//!
//! Locks: making a range locks only the DEFAULT partitions (which no insert
//! uses while a spare exists) and attaches the new tables, which lets
//! writers go on. Dropping needs every writer of the logs out of the way
//! for a moment (PostgreSQL locks a partitioned table whole to drop one of
//! its partitions): the drop takes the three tables' locks before it looks
//! again at the range — so a transaction still writing the tasks of the
//! range is waited for, never cut off — with a short `lock_timeout`, and
//! when they stay busy the drop is put off to the next call. Writers wait
//! at most that long, once per range dropped. An advisory lock keeps two
//! servers that both believe they lead from making the same range.

use std::fmt::Write as _;

use cairn_core::Timestamp;
use deadpool_postgres::{GenericClient, Object, Pool, Transaction};
use tokio_postgres::error::SqlState;

use super::{Error, Uuid};
use crate::retention::{LogPartition, PartitionChanges, PartitionPolicy};

const LOG_PARTITIONS: &str = include_str!("sql/log_partitions.sql");
const NEXT_TASK_NO: &str = include_str!("sql/next_task_no.sql");
const FIRST_TASK_SINCE: &str = include_str!("sql/first_task_since.sql");
const RANGE_SPAN: &str = include_str!("sql/range_span.sql");

/// Every statement of partition upkeep, prepared when the store connects.
pub(super) const STATEMENTS: &[&str] = &[LOG_PARTITIONS, NEXT_TASK_NO, FIRST_TASK_SINCE, RANGE_SPAN];

/// The partitioned logs, in the order their locks are taken.
const LOGS: [&str; 3] = ["task_transitions", "attempts", "progress_samples"];

/// The advisory lock key of partition upkeep ("cairn_pt" in ASCII).
const UPKEEP_LOCK: i64 = 0x6361_6972_6e5f_7074;

/// How long a drop waits for the writers of the logs before it is put off.
const DROP_LOCK_TIMEOUT: &str = "200ms";

/// How long making a range waits for the DEFAULT partitions (only busy when
/// rows go there, which making the range ends).
const CREATE_LOCK_TIMEOUT: &str = "5s";

/// A range as `log_partitions` keeps it.
#[derive(Clone, Copy, Debug)]
struct Range {
    lo: i64,
    hi: i64,
    created_at: i64,
}

pub(super) async fn maintain(
    pool: &Pool,
    policy: &PartitionPolicy,
    now: Timestamp,
) -> Result<PartitionChanges, Error> {
    let mut client = pool.get().await?;
    let mut changes = PartitionChanges::default();
    // One range per transaction: a spare, or first the range that takes in
    // what went to the DEFAULT partitions.
    while let Some(made) = make_range(&mut client, policy, now).await? {
        changes.created.push(made);
    }
    match drop_ranges(&mut client).await {
        Ok(dropped) => changes.dropped = dropped,
        Err(Error::Pg(e)) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            tracing::debug!("the logs stayed busy; dropping their empty partitions is put off");
            changes.deferred = true;
        }
        Err(e) => return Err(e),
    }
    Ok(changes)
}

/// Every range, with the span of time of the tasks left in it.
pub(super) async fn list(pool: &Pool) -> Result<Vec<LogPartition>, Error> {
    let client = pool.get().await?;
    let ranges = ranges(&client).await?;
    let span = client.prepare_cached(RANGE_SPAN).await?;
    let mut all = Vec::with_capacity(ranges.len());
    for r in ranges {
        let row = client.query_one(&span, &[&r.lo, &r.hi]).await?;
        let at = |i| row.try_get::<_, Option<i64>>(i).map(|t| t.map(Timestamp::from_micros));
        all.push(LogPartition {
            lo: r.lo,
            hi: r.hi,
            created_at: Timestamp::from_micros(r.created_at),
            first_submitted: at(0)?,
            last_submitted: at(1)?,
        });
    }
    Ok(all)
}

async fn ranges<C: GenericClient>(client: &C) -> Result<Vec<Range>, Error> {
    let stmt = client.prepare_cached(LOG_PARTITIONS).await?;
    let rows = client.query(&stmt, &[]).await?;
    rows.iter()
        .map(|row| Ok(Range { lo: row.try_get(0)?, hi: row.try_get(1)?, created_at: row.try_get(2)? }))
        .collect()
}

async fn next_task_no(tx: &Transaction<'_>) -> Result<i64, Error> {
    let stmt = tx.prepare_cached(NEXT_TASK_NO).await?;
    Ok(tx.query_one(&stmt, &[]).await?.try_get(0)?)
}

/// The smallest id a task submitted at `at` can have.
fn first_id_at(at: Timestamp) -> Uuid {
    let ms = u128::try_from(at.as_micros().div_euclid(1000)).unwrap_or(0).min((1 << 48) - 1);
    Uuid((ms << 80).to_be_bytes())
}

/// Makes the next range if no spare is left; `None` when one is.
async fn make_range(
    client: &mut Object,
    policy: &PartitionPolicy,
    now: Timestamp,
) -> Result<Option<LogPartition>, Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&UPKEEP_LOCK]).await?;
    let ranges = ranges(&tx).await?;
    let next = next_task_no(&tx).await?;
    // A spare: a range none of whose numbers is handed out yet.
    if ranges.iter().any(|r| r.lo >= next) {
        tx.commit().await?;
        return Ok(None);
    }
    let since = Timestamp::from_micros(
        now.as_micros().saturating_sub(i64::try_from(policy.span.as_micros()).unwrap_or(i64::MAX)),
    );
    let stmt = tx.prepare_cached(FIRST_TASK_SINCE).await?;
    let first: Option<i64> =
        tx.query_opt(&stmt, &[&first_id_at(since)]).await?.map(|row| row.try_get(0)).transpose()?;
    let recent = first.map_or(0, |first| next - first);
    let lo = ranges.last().map_or(0, |r| r.hi);
    // Past the newest task, so it takes in every row the DEFAULT partitions
    // may hold.
    let hi = (lo + policy.width(recent)).max(next + 1);

    let mut ddl = format!("SET LOCAL lock_timeout = '{CREATE_LOCK_TIMEOUT}';\n");
    let defaults: Vec<String> = LOGS.iter().map(|t| format!("{t}_default")).collect();
    writeln!(ddl, "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE;", defaults.join(", ")).ok();
    for table in LOGS {
        let part = format!("{table}_{lo}");
        writeln!(
            ddl,
            "CREATE TABLE {part} (LIKE {table} INCLUDING DEFAULTS);\n\
             WITH moved AS (DELETE FROM {table}_default WHERE task_no >= {lo} AND task_no < {hi} RETURNING *)\n\
             INSERT INTO {part} SELECT * FROM moved;\n\
             ALTER TABLE {table} ATTACH PARTITION {part} FOR VALUES FROM ({lo}) TO ({hi});"
        )
        .ok();
    }
    tx.batch_execute(&ddl).await?;
    tx.execute(
        "INSERT INTO log_partitions (lo, hi, created_at) VALUES ($1, $2, $3)",
        &[&lo, &hi, &now.as_micros()],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(lo, hi, next, "made a partition of the logs");
    Ok(Some(LogPartition { lo, hi, created_at: now, first_submitted: None, last_submitted: None }))
}

/// Drops the ranges with every number handed out and no task left.
async fn drop_ranges(client: &mut Object) -> Result<Vec<LogPartition>, Error> {
    let span = client.prepare_cached(RANGE_SPAN).await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&UPKEEP_LOCK]).await?;
    let next = next_task_no(&tx).await?;
    let mut empty = Vec::new();
    for r in ranges(&tx).await?.into_iter().filter(|r| r.hi <= next) {
        let row = tx.query_one(&span, &[&r.lo, &r.hi]).await?;
        if row.try_get::<_, Option<i64>>(0)?.is_none() {
            empty.push(r);
        }
    }
    if empty.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    // Every writer of the logs out of the way (or the drop put off), then
    // a second look: a task of the range committed meanwhile keeps it.
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}';\nLOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE;",
        LOGS.join(", ")
    ))
    .await?;
    let mut dropped = Vec::new();
    for r in empty {
        let row = tx.query_one(&span, &[&r.lo, &r.hi]).await?;
        if row.try_get::<_, Option<i64>>(0)?.is_some() {
            continue;
        }
        let tables: Vec<String> = LOGS.iter().map(|t| format!("{t}_{}", r.lo)).collect();
        tx.batch_execute(&format!("DROP TABLE {};", tables.join(", "))).await?;
        tx.execute("DELETE FROM log_partitions WHERE lo = $1", &[&r.lo]).await?;
        dropped.push(LogPartition {
            lo: r.lo,
            hi: r.hi,
            created_at: Timestamp::from_micros(r.created_at),
            first_submitted: None,
            last_submitted: None,
        });
    }
    tx.commit().await?;
    for r in &dropped {
        tracing::info!(
            lo = r.lo,
            hi = r.hi,
            "dropped the partitions of a range of the logs with no task left"
        );
    }
    Ok(dropped)
}
