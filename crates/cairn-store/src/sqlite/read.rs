//! The read side: a small pool of query-only connections, lent to closures
//! on tokio's blocking threads, and the queries behind each read of the
//! [`crate::Store`] contract, with the mapping from rows to records.
//!
//! Reads never block the writer (WAL), and a read made of several queries
//! runs in one read transaction so it sees one snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex};

use cairn_core::progress::Progress;
use cairn_core::record::{Actor, RunTransition, Transition};
use cairn_core::{LeaseToken, RunId, RunStatus, TaskId, TaskStatus, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Error;
use crate::dispatch::PostedResult;
use crate::error::StoreError;
use crate::model::{
    AttemptRecord, ExpiredLease, ProgressSample, RunDetail, RunQuery, RunRecord, StoredLease, TaskDetail,
    TaskRecord,
};
use crate::query::id_prefix_range;
use crate::search::Runs;

pub(super) struct ReadPool {
    /// `None` once closed.
    idle: Mutex<Option<Vec<Connection>>>,
    returned: Condvar,
}

impl ReadPool {
    pub(super) fn new(conns: Vec<Connection>) -> ReadPool {
        ReadPool { idle: Mutex::new(Some(conns)), returned: Condvar::new() }
    }

    pub(super) fn close(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.returned.notify_all();
    }

    /// Waits (on a blocking thread) for an idle connection.
    fn take(&self) -> Result<Connection, StoreError> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match idle.as_mut() {
                None => return Err(StoreError::Closed),
                Some(conns) => {
                    if let Some(conn) = conns.pop() {
                        return Ok(conn);
                    }
                }
            }
            idle = self.returned.wait(idle).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn give_back(&self, conn: Connection) {
        if let Some(conns) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            conns.push(conn);
            self.returned.notify_one();
        }
    }
}

/// Returns the connection to the pool even if the read panics.
struct Lent<'p> {
    pool: &'p ReadPool,
    conn: Option<Connection>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}

/// Runs `read` on a pooled connection on a blocking thread.
pub(super) async fn with_reader<T, F>(pool: Arc<ReadPool>, read: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let lent = Lent { pool: &pool, conn: Some(pool.take()?) };
        let conn = lent.conn.as_ref().ok_or(StoreError::Closed)?;
        read(conn).map_err(StoreError::from)
    })
    .await
    .map_err(|e| StoreError::Database(format!("a read failed on its thread: {e}")))?
}

const RUN_BY_ID: &str = include_str!("sql/run_by_id.sql");
const RUN_SPEC: &str = include_str!("sql/run_spec.sql");
const RUN_TRANSITIONS: &str = include_str!("sql/run_transitions.sql");
const RUN_TASKS: &str = include_str!("sql/run_tasks.sql");
const RUN_TASK_TRANSITIONS: &str = include_str!("sql/run_task_transitions.sql");
const RUN_ATTEMPTS: &str = include_str!("sql/run_attempts.sql");
const RUNS_ID_RANGE: &str = include_str!("sql/runs_id_range.sql");
const TASK_BY_ID: &str = include_str!("sql/task_by_id.sql");
const RUN_BY_NO: &str = include_str!("sql/run_by_no.sql");
const TASK_TRANSITIONS: &str = include_str!("sql/task_transitions.sql");
const TASK_ATTEMPTS: &str = include_str!("sql/task_attempts.sql");
const EXPIRED_LEASES: &str = include_str!("sql/expired_leases.sql");
const NEXT_LEASE_EXPIRY: &str = include_str!("sql/next_lease_expiry.sql");
const POSTED_RESULT: &str = include_str!("sql/posted_result.sql");

pub(super) fn run(conn: &Connection, id: RunId) -> Result<Option<RunRecord>, Error> {
    Ok(run_row(conn, id)?.map(|(_, run)| run))
}

fn run_row(conn: &Connection, id: RunId) -> Result<Option<(i64, RunRecord)>, Error> {
    let mut stmt = conn.prepare_cached(RUN_BY_ID)?;
    let mut rows = stmt.query([id.to_bytes()])?;
    match rows.next()? {
        Some(row) => Ok(Some((row.get(0)?, run_record(row)?))),
        None => Ok(None),
    }
}

pub(super) fn spec_source(conn: &Connection, id: RunId) -> Result<Option<String>, Error> {
    Ok(conn.prepare_cached(RUN_SPEC)?.query_row([id.to_bytes()], |row| row.get(0)).optional()?)
}

pub(super) fn run_detail(conn: &Connection, id: RunId) -> Result<Option<RunDetail>, Error> {
    let snapshot = conn.unchecked_transaction()?;
    let detail = read_detail(&snapshot, id)?;
    snapshot.finish()?;
    Ok(detail)
}

fn read_detail(snapshot: &Connection, id: RunId) -> Result<Option<RunDetail>, Error> {
    let Some((run_no, run)) = run_row(snapshot, id)? else {
        return Ok(None);
    };

    let mut run_transitions = Vec::new();
    let mut stmt = snapshot.prepare_cached(RUN_TRANSITIONS)?;
    let mut rows = stmt.query([run_no])?;
    while let Some(row) = rows.next()? {
        run_transitions.push(RunTransition {
            from: row.get::<_, Option<u8>>(0)?.map(run_status).transpose()?,
            to: run_status(row.get(1)?)?,
            at: Timestamp::from_micros(row.get(2)?),
            reason: row.get(3)?,
            actor: actor(&row.get::<_, String>(4)?)?,
        });
    }
    drop(rows);

    let mut tasks = Vec::new();
    let mut ids = HashMap::new();
    let mut stmt = snapshot.prepare_cached(RUN_TASKS)?;
    let mut rows = stmt.query([run_no])?;
    while let Some(row) = rows.next()? {
        let task = task_record(row, id)?;
        ids.insert(row.get::<_, i64>(0)?, task.id);
        tasks.push(task);
    }
    drop(rows);
    let task_id = |task_no: i64| {
        ids.get(&task_no).copied().ok_or_else(|| StoreError::Corrupt(format!("task #{task_no} has no row")))
    };

    let mut transitions: BTreeMap<TaskId, Vec<Transition>> = BTreeMap::new();
    let mut stmt = snapshot.prepare_cached(RUN_TASK_TRANSITIONS)?;
    let mut rows = stmt.query([run_no])?;
    while let Some(row) = rows.next()? {
        let task = task_id(row.get(0)?)?;
        transitions.entry(task).or_default().push(transition(row, 1)?);
    }
    drop(rows);

    let mut attempts: BTreeMap<TaskId, Vec<AttemptRecord>> = BTreeMap::new();
    let mut stmt = snapshot.prepare_cached(RUN_ATTEMPTS)?;
    let mut rows = stmt.query([run_no])?;
    while let Some(row) = rows.next()? {
        let task = task_id(row.get(0)?)?;
        attempts.entry(task).or_default().push(attempt_record(row, 1, task)?);
    }
    Ok(Some(RunDetail { run, run_transitions, tasks, transitions, attempts }))
}

pub(super) fn task_detail(conn: &Connection, id: TaskId) -> Result<Option<TaskDetail>, Error> {
    let snapshot = conn.unchecked_transaction()?;
    let detail = read_task(&snapshot, id)?;
    snapshot.finish()?;
    Ok(detail)
}

/// Index lookups only: the task by `tasks_id`, its run by primary key, its
/// log by `task_transitions_task`, its attempts by their primary key.
fn read_task(snapshot: &Connection, id: TaskId) -> Result<Option<TaskDetail>, Error> {
    let mut stmt = snapshot.prepare_cached(TASK_BY_ID)?;
    let mut rows = stmt.query([id.to_bytes()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let task_no: i64 = row.get(0)?;
    let run_no: i64 = row.get(23)?;
    // The run's id is read next; the record is completed with it below.
    let mut task = task_record(row, RunId::from_bytes([0; 16]))?;
    drop(rows);

    let mut stmt = snapshot.prepare_cached(RUN_BY_NO)?;
    let mut rows = stmt.query([run_no])?;
    let run = match rows.next()? {
        Some(row) => run_record(row)?,
        None => {
            return Err(
                StoreError::Corrupt(format!("task {id} belongs to run #{run_no}, which has no row")).into()
            );
        }
    };
    drop(rows);
    task.run = run.id;

    let mut transitions = Vec::new();
    let mut stmt = snapshot.prepare_cached(TASK_TRANSITIONS)?;
    let mut rows = stmt.query([task_no])?;
    while let Some(row) = rows.next()? {
        transitions.push(transition(row, 0)?);
    }
    drop(rows);

    let mut attempts = Vec::new();
    let mut stmt = snapshot.prepare_cached(TASK_ATTEMPTS)?;
    let mut rows = stmt.query([task_no])?;
    while let Some(row) = rows.next()? {
        attempts.push(attempt_record(row, 0, id)?);
    }
    Ok(Some(TaskDetail { run, task, transitions, attempts }))
}

/// Six columns from `first`: attempt, from_status, to_status, at, reason, actor.
fn transition(row: &Row<'_>, first: usize) -> Result<Transition, Error> {
    Ok(Transition {
        attempt: row.get(first)?,
        from: row.get::<_, Option<u8>>(first + 1)?.map(task_status).transpose()?,
        to: task_status(row.get(first + 2)?)?,
        at: Timestamp::from_micros(row.get(first + 3)?),
        reason: row.get(first + 4)?,
        actor: actor(&row.get::<_, String>(first + 5)?)?,
    })
}

/// Seven columns from `first`: attempt, worker, started_at, ended_at,
/// outcome, exit_code, error.
fn attempt_record(row: &Row<'_>, first: usize, task: TaskId) -> Result<AttemptRecord, Error> {
    Ok(AttemptRecord {
        task,
        attempt: row.get(first)?,
        worker: row.get(first + 1)?,
        started_at: Timestamp::from_micros(row.get(first + 2)?),
        ended_at: row.get::<_, Option<i64>>(first + 3)?.map(Timestamp::from_micros),
        outcome: row.get::<_, Option<u8>>(first + 4)?.map(task_status).transpose()?,
        exit_code: row.get(first + 5)?,
        error: row.get(first + 6)?,
    })
}

/// Newest first, from the same walks as a search (`super::search`).
pub(super) fn list_runs(conn: &Connection, query: &RunQuery) -> Result<Vec<RunRecord>, Error> {
    let q = Runs::listing(&query.statuses, query.workflow.as_deref(), query.limit, query.before);
    super::search::list_runs(conn, &q)
}

pub(super) fn active_runs(conn: &Connection) -> Result<Vec<RunRecord>, Error> {
    list_runs(
        conn,
        &RunQuery {
            statuses: vec![RunStatus::Queued, RunStatus::Running],
            limit: usize::MAX,
            ..Default::default()
        },
    )
}

pub(super) fn runs_by_prefix(conn: &Connection, prefix: &str, limit: usize) -> Result<Vec<RunRecord>, Error> {
    let Some((low, high)) = id_prefix_range(prefix) else {
        return Ok(Vec::new());
    };
    runs(conn, RUNS_ID_RANGE, params![low, high, i64::try_from(limit).unwrap_or(i64::MAX)])
}

fn runs(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<RunRecord>, Error> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(run_record(row)?);
    }
    Ok(out)
}

pub(super) fn expired_leases(
    conn: &Connection,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<ExpiredLease>, Error> {
    let mut stmt = conn.prepare_cached(EXPIRED_LEASES)?;
    let mut rows = stmt.query(params![now.as_micros(), i64::try_from(limit).unwrap_or(i64::MAX)])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let task = TaskId::from_bytes(row.get(0)?);
        let lease = stored_lease(row, 5)?
            .ok_or_else(|| StoreError::Corrupt(format!("task {task} is RUNNING without a lease")))?;
        out.push(ExpiredLease {
            task,
            run: RunId::from_bytes(row.get(1)?),
            name: row.get(2)?,
            attempt: row.get(3)?,
            max_attempts: row.get(4)?,
            lease,
        });
    }
    Ok(out)
}

pub(super) fn next_lease_expiry(conn: &Connection) -> Result<Option<Timestamp>, Error> {
    let next: Option<i64> =
        conn.prepare_cached(NEXT_LEASE_EXPIRY)?.query_row([], |row| row.get(0)).optional()?;
    Ok(next.map(Timestamp::from_micros))
}

/// Columns: run_no, id, workflow, status, trigger_kind, params, owner,
/// spec_path, submitted_at, started_at, finished_at, error,
/// cancel_requested_by, schedule_tick.
pub(super) fn run_record(row: &Row<'_>) -> Result<RunRecord, Error> {
    Ok(RunRecord {
        id: RunId::from_bytes(row.get(1)?),
        workflow: row.get(2)?,
        status: run_status(row.get(3)?)?,
        trigger: row.get(4)?,
        params: json_map(row.get::<_, Option<String>>(5)?.as_deref())?,
        owner: row.get(6)?,
        spec_path: row.get(7)?,
        submitted_at: Timestamp::from_micros(row.get(8)?),
        started_at: row.get::<_, Option<i64>>(9)?.map(Timestamp::from_micros),
        finished_at: row.get::<_, Option<i64>>(10)?.map(Timestamp::from_micros),
        error: row.get(11)?,
        cancel_requested_by: row.get::<_, Option<String>>(12)?.as_deref().map(actor).transpose()?,
        schedule_tick: row.get::<_, Option<i64>>(13)?.map(Timestamp::from_micros),
    })
}

/// Columns as in `sql/run_tasks.sql`.
pub(super) fn task_record(row: &Row<'_>, run: RunId) -> Result<TaskRecord, Error> {
    let id = TaskId::from_bytes(row.get(1)?);
    let status = task_status(row.get(4)?)?;
    let lease = stored_lease(row, 12)?;
    if (status == TaskStatus::Running) != lease.is_some() {
        return Err(StoreError::Corrupt(format!(
            "task {id} is {status} {} a lease; only RUNNING tasks hold one",
            if lease.is_some() { "with" } else { "without" }
        ))
        .into());
    }
    let progress = row
        .get::<_, Option<f64>>(16)?
        .map(|percent| -> Result<Progress, Error> {
            Ok(Progress { percent: percent as f32, message: row.get(17)? })
        })
        .transpose()?;
    Ok(TaskRecord {
        id,
        run,
        index: row.get(2)?,
        name: row.get(3)?,
        status,
        attempt: row.get(5)?,
        max_attempts: row.get(6)?,
        queue: row.get(7)?,
        submitted_at: Timestamp::from_micros(row.get(8)?),
        started_at: row.get::<_, Option<i64>>(9)?.map(Timestamp::from_micros),
        finished_at: row.get::<_, Option<i64>>(10)?.map(Timestamp::from_micros),
        not_before: row.get::<_, Option<i64>>(11)?.map(Timestamp::from_micros),
        lease,
        progress,
        progress_at: row.get::<_, Option<i64>>(18)?.map(Timestamp::from_micros),
        exit_code: row.get(19)?,
        error: row.get(20)?,
        outputs: json_map(row.get::<_, Option<String>>(21)?.as_deref())?,
        details: row
            .get::<_, Option<String>>(22)?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("details of task {id}: {e}")))?,
    })
}

/// A task's progress samples, oldest first.
pub(super) fn progress_samples(conn: &Connection, task: TaskId) -> Result<Vec<ProgressSample>, Error> {
    let mut stmt = conn.prepare_cached(include_str!("sql/task_progress_samples.sql"))?;
    let rows = stmt.query_map([task.to_bytes()], |row| {
        Ok(ProgressSample {
            attempt: row.get(0)?,
            at: Timestamp::from_micros(row.get(1)?),
            percent: row.get::<_, f64>(2)? as f32,
            message: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Four columns from `first`: lease_token, worker, last_heartbeat_at, lease_expires_at.
fn stored_lease(row: &Row<'_>, first: usize) -> Result<Option<StoredLease>, Error> {
    let Some(token) = row.get::<_, Option<[u8; 16]>>(first)? else {
        return Ok(None);
    };
    Ok(Some(StoredLease {
        token: LeaseToken::from_bytes(token),
        worker: row.get(first + 1)?,
        last_heartbeat_at: Timestamp::from_micros(row.get(first + 2)?),
        expires_at: Timestamp::from_micros(row.get(first + 3)?),
    }))
}

pub(super) fn task_status(code: u8) -> Result<TaskStatus, Error> {
    TaskStatus::from_code(code)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown task status code {code}")).into())
}

fn run_status(code: u8) -> Result<RunStatus, Error> {
    RunStatus::from_code(code)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown run status code {code}")).into())
}

fn actor(text: &str) -> Result<Actor, Error> {
    text.parse().map_err(|e: String| StoreError::Corrupt(e).into())
}

fn json_map(text: Option<&str>) -> Result<BTreeMap<String, String>, Error> {
    match text {
        None => Ok(BTreeMap::new()),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| StoreError::Corrupt(format!("bad JSON map {text:?}: {e}")).into()),
    }
}

/// The result posted for a task's current attempt.
pub(super) fn posted_result(conn: &Connection, task: TaskId) -> Result<Option<PostedResult>, Error> {
    let mut stmt = conn.prepare_cached(POSTED_RESULT)?;
    let mut rows = stmt.query([task.to_bytes()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    Ok(Some(PostedResult {
        task,
        run: RunId::from_bytes(row.get(3)?),
        token: LeaseToken::from_bytes(row.get(0)?),
        at: Timestamp::from_micros(row.get(1)?),
        body: row.get(2)?,
    }))
}
