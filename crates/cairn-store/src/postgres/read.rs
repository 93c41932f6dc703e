//! The read side: the queries behind each read of the [`crate::Store`]
//! contract, on pooled connections, and the mapping from rows to records.
//!
//! A read made of several queries runs in one `REPEATABLE READ READ ONLY`
//! transaction, so it sees one snapshot, with its queries pipelined.

use std::collections::{BTreeMap, HashMap};

use cairn_core::progress::Progress;
use cairn_core::record::{Actor, RunTransition, Transition};
use cairn_core::{LeaseToken, RunId, RunStatus, TaskId, TaskStatus, Timestamp};
use deadpool_postgres::{GenericClient, Pool};
use futures_util::future::try_join_all;
use tokio_postgres::IsolationLevel;
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};

use super::{Error, Uuid};
use crate::dispatch::PostedResult;
use crate::error::StoreError;
use crate::model::{
    AttemptRecord, ExpiredLease, ProgressSample, RunDetail, RunQuery, RunRecord, StoredLease, TaskDetail,
    TaskRecord,
};
use crate::query::id_prefix_range;
use crate::search::Runs;

const RUN_BY_ID: &str = include_str!("sql/run_by_id.sql");
const RUN_BY_NO: &str = include_str!("sql/run_by_no.sql");
const RUN_SPEC: &str = include_str!("sql/run_spec.sql");
const RUN_TRANSITIONS: &str = include_str!("sql/run_transitions.sql");
const RUN_TASKS: &str = include_str!("sql/run_tasks.sql");
const RUN_TASK_TRANSITIONS: &str = include_str!("sql/run_task_transitions.sql");
const RUN_ATTEMPTS: &str = include_str!("sql/run_attempts.sql");
const RUNS_ID_RANGE: &str = include_str!("sql/runs_id_range.sql");
const TASK_BY_ID: &str = include_str!("sql/task_by_id.sql");
const TASK_TRANSITIONS: &str = include_str!("sql/task_transitions.sql");
const TASK_ATTEMPTS: &str = include_str!("sql/task_attempts.sql");
const TASK_PROGRESS_SAMPLES: &str = include_str!("sql/task_progress_samples.sql");
const EXPIRED_LEASES: &str = include_str!("sql/expired_leases.sql");
const NEXT_LEASE_EXPIRY: &str = include_str!("sql/next_lease_expiry.sql");
const POSTED_RESULT: &str = include_str!("sql/posted_result.sql");

/// Every statement of the read side, prepared when the store connects.
pub(super) const STATEMENTS: &[&str] = &[
    RUN_BY_ID,
    RUN_BY_NO,
    RUN_SPEC,
    RUN_TRANSITIONS,
    RUN_TASKS,
    RUN_TASK_TRANSITIONS,
    RUN_ATTEMPTS,
    RUNS_ID_RANGE,
    TASK_BY_ID,
    TASK_TRANSITIONS,
    TASK_ATTEMPTS,
    TASK_PROGRESS_SAMPLES,
    EXPIRED_LEASES,
    NEXT_LEASE_EXPIRY,
    POSTED_RESULT,
];

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

async fn query<C: GenericClient>(client: &C, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
    let stmt = client.prepare_cached(sql).await?;
    Ok(client.query(&stmt, params).await?)
}

async fn query_opt<C: GenericClient>(
    client: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, Error> {
    let stmt = client.prepare_cached(sql).await?;
    Ok(client.query_opt(&stmt, params).await?)
}

pub(super) async fn run(pool: &Pool, id: RunId) -> Result<Option<RunRecord>, Error> {
    let client = pool.get().await?;
    query_opt(&client, RUN_BY_ID, &[&Uuid(id.to_bytes())]).await?.map(|row| run_record(&row)).transpose()
}

pub(super) async fn spec_source(pool: &Pool, id: RunId) -> Result<Option<String>, Error> {
    let client = pool.get().await?;
    let row = query_opt(&client, RUN_SPEC, &[&Uuid(id.to_bytes())]).await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

pub(super) async fn progress_samples(pool: &Pool, task: TaskId) -> Result<Vec<ProgressSample>, Error> {
    let client = pool.get().await?;
    query(&client, TASK_PROGRESS_SAMPLES, &[&Uuid(task.to_bytes())])
        .await?
        .iter()
        .map(|row| {
            Ok(ProgressSample {
                attempt: uint(row.try_get(0)?)?,
                at: Timestamp::from_micros(row.try_get(1)?),
                percent: row.try_get(2)?,
                message: row.try_get(3)?,
            })
        })
        .collect()
}

pub(super) async fn run_detail(pool: &Pool, id: RunId) -> Result<Option<RunDetail>, Error> {
    let mut client = pool.get().await?;
    let snapshot = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let Some(row) = query_opt(&snapshot, RUN_BY_ID, &[&Uuid(id.to_bytes())]).await? else {
        return Ok(None);
    };
    let run_no: i64 = row.try_get(0)?;
    let run = run_record(&row)?;
    let [run_log, task_rows, task_logs, attempt_rows]: [Vec<Row>; 4] = try_join_all([
        query(&snapshot, RUN_TRANSITIONS, &[&run_no]),
        query(&snapshot, RUN_TASKS, &[&run_no]),
        query(&snapshot, RUN_TASK_TRANSITIONS, &[&run_no]),
        query(&snapshot, RUN_ATTEMPTS, &[&run_no]),
    ])
    .await?
    .try_into()
    .map_err(|_| corrupt("a read of four queries did not answer four times".to_owned()))?;
    snapshot.commit().await?;

    let run_transitions = run_log
        .iter()
        .map(|row| {
            Ok(RunTransition {
                from: row.try_get::<_, Option<i16>>(0)?.map(run_status).transpose()?,
                to: run_status(row.try_get(1)?)?,
                at: Timestamp::from_micros(row.try_get(2)?),
                reason: row.try_get(3)?,
                actor: actor(row.try_get(4)?)?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;

    let mut tasks = Vec::with_capacity(task_rows.len());
    let mut ids = HashMap::with_capacity(task_rows.len());
    for row in &task_rows {
        let task = task_record(row, id)?;
        ids.insert(row.try_get::<_, i64>(0)?, task.id);
        tasks.push(task);
    }
    let task_id = |task_no: i64| {
        ids.get(&task_no).copied().ok_or_else(|| corrupt(format!("task #{task_no} has no row")))
    };

    let mut transitions: BTreeMap<TaskId, Vec<Transition>> = BTreeMap::new();
    for row in &task_logs {
        transitions.entry(task_id(row.try_get(0)?)?).or_default().push(transition(row, 1)?);
    }
    let mut attempts: BTreeMap<TaskId, Vec<AttemptRecord>> = BTreeMap::new();
    for row in &attempt_rows {
        let task = task_id(row.try_get(0)?)?;
        attempts.entry(task).or_default().push(attempt_record(row, 1, task)?);
    }
    Ok(Some(RunDetail { run, run_transitions, tasks, transitions, attempts }))
}

/// Index lookups only: the task by `tasks_id`, then its run by primary key,
/// its log and its attempts by their primary keys.
pub(super) async fn task_detail(pool: &Pool, id: TaskId) -> Result<Option<TaskDetail>, Error> {
    let mut client = pool.get().await?;
    let snapshot = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let Some(row) = query_opt(&snapshot, TASK_BY_ID, &[&Uuid(id.to_bytes())]).await? else {
        return Ok(None);
    };
    let task_no: i64 = row.try_get(0)?;
    let run_no: i64 = row.try_get(23)?;
    // The run's id is read next; the record is completed with it below.
    let mut task = task_record(&row, RunId::from_bytes([0; 16]))?;
    let [run_rows, log, attempt_rows]: [Vec<Row>; 3] = try_join_all([
        query(&snapshot, RUN_BY_NO, &[&run_no]),
        query(&snapshot, TASK_TRANSITIONS, &[&task_no]),
        query(&snapshot, TASK_ATTEMPTS, &[&task_no]),
    ])
    .await?
    .try_into()
    .map_err(|_| corrupt("a read of three queries did not answer three times".to_owned()))?;
    snapshot.commit().await?;

    let run = match run_rows.first() {
        Some(row) => run_record(row)?,
        None => return Err(corrupt(format!("task {id} belongs to run #{run_no}, which has no row"))),
    };
    task.run = run.id;
    let transitions = log.iter().map(|row| transition(row, 0)).collect::<Result<_, _>>()?;
    let attempts = attempt_rows.iter().map(|row| attempt_record(row, 0, id)).collect::<Result<_, _>>()?;
    Ok(Some(TaskDetail { run, task, transitions, attempts }))
}

/// Newest first, from the same walks as a search (`super::search`).
pub(super) async fn list_runs(pool: &Pool, query: &RunQuery) -> Result<Vec<RunRecord>, Error> {
    let q = Runs::listing(&query.statuses, query.workflow.as_deref(), query.limit, query.before);
    super::search::list_runs(pool, &q).await
}

pub(super) async fn active_runs(pool: &Pool) -> Result<Vec<RunRecord>, Error> {
    list_runs(
        pool,
        &RunQuery {
            statuses: vec![RunStatus::Queued, RunStatus::Running],
            limit: usize::MAX,
            ..Default::default()
        },
    )
    .await
}

pub(super) async fn runs_by_prefix(pool: &Pool, prefix: &str, limit: usize) -> Result<Vec<RunRecord>, Error> {
    let Some((low, high)) = id_prefix_range(prefix) else {
        return Ok(Vec::new());
    };
    let client = pool.get().await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    query(&client, RUNS_ID_RANGE, &[&Uuid(low), &Uuid(high), &limit]).await?.iter().map(run_record).collect()
}

pub(super) async fn expired_leases(
    pool: &Pool,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<ExpiredLease>, Error> {
    let client = pool.get().await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = query(&client, EXPIRED_LEASES, &[&now.as_micros(), &limit]).await?;
    rows.iter()
        .map(|row| {
            let task = TaskId::from_bytes(row.try_get::<_, Uuid>(0)?.0);
            let lease = stored_lease(row, 5)?
                .ok_or_else(|| corrupt(format!("task {task} is RUNNING without a lease")))?;
            Ok(ExpiredLease {
                task,
                run: RunId::from_bytes(row.try_get::<_, Uuid>(1)?.0),
                name: row.try_get(2)?,
                attempt: uint(row.try_get(3)?)?,
                max_attempts: uint(row.try_get(4)?)?,
                lease,
            })
        })
        .collect()
}

pub(super) async fn next_lease_expiry(pool: &Pool) -> Result<Option<Timestamp>, Error> {
    let client = pool.get().await?;
    let row = query_opt(&client, NEXT_LEASE_EXPIRY, &[]).await?;
    Ok(row.map(|row| row.try_get(0).map(Timestamp::from_micros)).transpose()?)
}

/// The result posted for a task's current attempt.
pub(super) async fn posted_result(pool: &Pool, task: TaskId) -> Result<Option<PostedResult>, Error> {
    let client = pool.get().await?;
    let Some(row) = query_opt(&client, POSTED_RESULT, &[&Uuid(task.to_bytes())]).await? else {
        return Ok(None);
    };
    Ok(Some(PostedResult {
        task,
        run: RunId::from_bytes(row.try_get::<_, Uuid>(3)?.0),
        token: LeaseToken::from_bytes(row.try_get::<_, Uuid>(0)?.0),
        at: Timestamp::from_micros(row.try_get(1)?),
        body: row.try_get(2)?,
    }))
}

/// Columns: run_no, id, workflow, status, trigger_kind, params, owner,
/// spec_path, submitted_at, started_at, finished_at, error,
/// cancel_requested_by, schedule_tick.
pub(super) fn run_record(row: &Row) -> Result<RunRecord, Error> {
    Ok(RunRecord {
        id: RunId::from_bytes(row.try_get::<_, Uuid>(1)?.0),
        workflow: row.try_get(2)?,
        status: run_status(row.try_get(3)?)?,
        trigger: row.try_get(4)?,
        params: json_map(row.try_get(5)?),
        owner: row.try_get(6)?,
        spec_path: row.try_get(7)?,
        submitted_at: Timestamp::from_micros(row.try_get(8)?),
        started_at: row.try_get::<_, Option<i64>>(9)?.map(Timestamp::from_micros),
        finished_at: row.try_get::<_, Option<i64>>(10)?.map(Timestamp::from_micros),
        error: row.try_get(11)?,
        cancel_requested_by: row.try_get::<_, Option<&str>>(12)?.map(actor).transpose()?,
        schedule_tick: row.try_get::<_, Option<i64>>(13)?.map(Timestamp::from_micros),
    })
}

/// Columns as in `sql/run_tasks.sql`.
pub(super) fn task_record(row: &Row, run: RunId) -> Result<TaskRecord, Error> {
    let id = TaskId::from_bytes(row.try_get::<_, Uuid>(1)?.0);
    let status = task_status(row.try_get(4)?)?;
    let lease = stored_lease(row, 12)?;
    if (status == TaskStatus::Running) != lease.is_some() {
        return Err(corrupt(format!(
            "task {id} is {status} {} a lease; only RUNNING tasks hold one",
            if lease.is_some() { "with" } else { "without" }
        )));
    }
    let progress = row
        .try_get::<_, Option<f32>>(16)?
        .map(|percent| -> Result<Progress, Error> { Ok(Progress { percent, message: row.try_get(17)? }) })
        .transpose()?;
    Ok(TaskRecord {
        id,
        run,
        index: uint(row.try_get(2)?)?,
        name: row.try_get(3)?,
        status,
        attempt: uint(row.try_get(5)?)?,
        max_attempts: uint(row.try_get(6)?)?,
        queue: row.try_get(7)?,
        submitted_at: Timestamp::from_micros(row.try_get(8)?),
        started_at: row.try_get::<_, Option<i64>>(9)?.map(Timestamp::from_micros),
        finished_at: row.try_get::<_, Option<i64>>(10)?.map(Timestamp::from_micros),
        not_before: row.try_get::<_, Option<i64>>(11)?.map(Timestamp::from_micros),
        lease,
        progress,
        progress_at: row.try_get::<_, Option<i64>>(18)?.map(Timestamp::from_micros),
        exit_code: row.try_get(19)?,
        error: row.try_get(20)?,
        outputs: json_map(row.try_get(21)?),
        details: row.try_get::<_, Option<Json<serde_json::Value>>>(22)?.map(|Json(v)| v),
    })
}

/// Six columns from `first`: attempt, from_status, to_status, at, reason, actor.
fn transition(row: &Row, first: usize) -> Result<Transition, Error> {
    Ok(Transition {
        attempt: uint(row.try_get(first)?)?,
        from: row.try_get::<_, Option<i16>>(first + 1)?.map(task_status).transpose()?,
        to: task_status(row.try_get(first + 2)?)?,
        at: Timestamp::from_micros(row.try_get(first + 3)?),
        reason: row.try_get(first + 4)?,
        actor: actor(row.try_get(first + 5)?)?,
    })
}

/// Seven columns from `first`: attempt, worker, started_at, ended_at,
/// outcome, exit_code, error.
fn attempt_record(row: &Row, first: usize, task: TaskId) -> Result<AttemptRecord, Error> {
    Ok(AttemptRecord {
        task,
        attempt: uint(row.try_get(first)?)?,
        worker: row.try_get(first + 1)?,
        started_at: Timestamp::from_micros(row.try_get(first + 2)?),
        ended_at: row.try_get::<_, Option<i64>>(first + 3)?.map(Timestamp::from_micros),
        outcome: row.try_get::<_, Option<i16>>(first + 4)?.map(task_status).transpose()?,
        exit_code: row.try_get(first + 5)?,
        error: row.try_get(first + 6)?,
    })
}

/// Four columns from `first`: lease_token, worker, last_heartbeat_at, lease_expires_at.
fn stored_lease(row: &Row, first: usize) -> Result<Option<StoredLease>, Error> {
    let Some(token) = row.try_get::<_, Option<Uuid>>(first)? else {
        return Ok(None);
    };
    Ok(Some(StoredLease {
        token: LeaseToken::from_bytes(token.0),
        worker: row.try_get(first + 1)?,
        last_heartbeat_at: Timestamp::from_micros(row.try_get(first + 2)?),
        expires_at: Timestamp::from_micros(row.try_get(first + 3)?),
    }))
}

pub(super) fn task_status(code: i16) -> Result<TaskStatus, Error> {
    u8::try_from(code)
        .ok()
        .and_then(TaskStatus::from_code)
        .ok_or_else(|| corrupt(format!("unknown task status code {code}")))
}

fn run_status(code: i16) -> Result<RunStatus, Error> {
    u8::try_from(code)
        .ok()
        .and_then(RunStatus::from_code)
        .ok_or_else(|| corrupt(format!("unknown run status code {code}")))
}

fn uint(n: i32) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| corrupt(format!("a negative count {n}")))
}

fn actor(text: &str) -> Result<Actor, Error> {
    text.parse().map_err(|e: String| Error::Store(StoreError::Corrupt(e)))
}

fn json_map(map: Option<Json<BTreeMap<String, String>>>) -> BTreeMap<String, String> {
    map.map(|Json(map)| map).unwrap_or_default()
}

fn corrupt(why: String) -> Error {
    Error::Store(StoreError::Corrupt(why))
}
