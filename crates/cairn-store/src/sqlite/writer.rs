//! The one writer: a dedicated OS thread that owns the write connection and
//! applies every [`Change`], with group commit.
//!
//! Callers queue `(batch, reply)` jobs on a channel. The thread takes one job,
//! then every job already queued behind it (up to `max_group_changes`), and
//! applies them all in one `BEGIN IMMEDIATE` transaction with cached prepared
//! statements: one commit, one fsync, for all of them. Each caller gets its own
//! outcomes. If that transaction fails, nothing of it is committed: when one
//! batch's change caused it, that caller gets the error and the others are
//! committed again without it; when the transaction itself failed (at begin
//! or commit), every caller in it gets the error.
//!
//! Every task change is a compare-and-set: the `UPDATE` names the expected
//! status (and lease token, and that time does not go back) and returns the
//! row only when they all hold; otherwise the change is a
//! [`Outcome::Conflict`] and writes nothing. The transition row is inserted
//! in the same transaction as the update it records.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use cairn_core::record::Actor;
use cairn_core::{LeaseToken, RunStatus, TaskStatus};
use rusqlite::{CachedStatement, Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::Error;
use crate::change::{AdoptRun, Change, Heartbeat, NewRun, Outcome, RunChange, TaskChange, TaskUpdate};
use crate::conflict::{self, RunState, TaskState};
use crate::error::StoreError;

type Reply = oneshot::Sender<Result<Vec<Outcome>, StoreError>>;

struct Job {
    changes: Vec<Change>,
    reply: Reply,
}

/// Counters of what the writer committed, e.g. to see how well group commit
/// groups (`changes / transactions`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed.
    pub transactions: u64,
    /// Caller batches committed (several share a transaction).
    pub batches: u64,
    /// Changes in those batches, applied or conflicting.
    pub changes: u64,
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    batches: AtomicU64,
    changes: AtomicU64,
}

/// The store's side of the writer thread.
pub(super) struct WriterHandle {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<Result<(), StoreError>>>>,
    counters: Arc<Counters>,
}

pub(super) fn spawn(conn: Connection, max_group_changes: usize) -> std::io::Result<WriterHandle> {
    let (tx, rx) = mpsc::channel();
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    let thread = std::thread::Builder::new()
        .name("cairn-sqlite-writer".into())
        .spawn(move || run(conn, rx, &c, max_group_changes.max(1)))?;
    Ok(WriterHandle { queue: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)), counters })
}

impl WriterHandle {
    /// Queues a batch; the receiver gets its outcomes once committed.
    pub(super) fn submit(
        &self,
        changes: Vec<Change>,
    ) -> Result<oneshot::Receiver<Result<Vec<Outcome>, StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let sender = queue.as_ref().ok_or(StoreError::Closed)?;
        sender.send(Job { changes, reply }).map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Closes the queue; the thread finishes what is queued and exits.
    /// Returns the thread to join, the first time only.
    pub(super) fn stop(&self) -> Option<JoinHandle<Result<(), StoreError>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.thread.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub(super) fn stats(&self) -> WriteStats {
        WriteStats {
            transactions: self.counters.transactions.load(Ordering::Relaxed),
            batches: self.counters.batches.load(Ordering::Relaxed),
            changes: self.counters.changes.load(Ordering::Relaxed),
        }
    }
}

pub(super) fn join(thread: JoinHandle<Result<(), StoreError>>) -> Result<(), StoreError> {
    thread
        .join()
        .map_err(|_| StoreError::Database("the SQLite writer thread panicked; see the log".into()))?
}

fn run(
    mut conn: Connection,
    queue: mpsc::Receiver<Job>,
    counters: &Counters,
    max_group: usize,
) -> Result<(), StoreError> {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        let mut size = group[0].changes.len();
        while size < max_group {
            match queue.try_recv() {
                Ok(job) => {
                    size += job.changes.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        // Retried without each batch that fails on its own, so one caller's
        // bad batch does not fail the others that shared its transaction.
        while !group.is_empty() {
            match commit(&mut conn, &group) {
                Ok(outcomes) => {
                    counters.transactions.fetch_add(1, Ordering::Relaxed);
                    counters.batches.fetch_add(group.len() as u64, Ordering::Relaxed);
                    let changes: usize = group.iter().map(|job| job.changes.len()).sum();
                    counters.changes.fetch_add(changes as u64, Ordering::Relaxed);
                    for (job, outcomes) in group.drain(..).zip(outcomes) {
                        // The caller may have stopped waiting; its batch stands.
                        let _ = job.reply.send(Ok(outcomes));
                    }
                }
                Err(Failure { job: Some(i), error }) => {
                    let error = StoreError::from(error);
                    tracing::warn!(%error, others = group.len() - 1, "a batch failed; committing the rest without it");
                    let _ = group.remove(i).reply.send(Err(error));
                }
                Err(Failure { job: None, error }) => {
                    let error = StoreError::from(error);
                    tracing::error!(%error, batches = group.len(), "a write transaction failed");
                    for job in group.drain(..) {
                        let _ = job.reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }
    // Fold the WAL into the main file so a closed store is one self-contained file.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(Error::from)?;
    conn.close().map_err(|(_, e)| Error::from(e))?;
    Ok(())
}

/// Why a group transaction failed, and whose batch it was if one batch's
/// change failed (`None`: the transaction itself failed, e.g. at commit).
struct Failure {
    job: Option<usize>,
    error: Error,
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure { job: None, error: e.into() }
    }
}

/// Applies `jobs` in one transaction; all or nothing.
fn commit(conn: &mut Connection, jobs: &[Job]) -> Result<Vec<Vec<Outcome>>, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcomes = {
        let mut w = Statements::new(&tx)?;
        let mut all = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            let mut outcomes = Vec::with_capacity(job.changes.len());
            for change in &job.changes {
                // Dropping `tx` on the way out rolls everything back.
                outcomes.push(w.apply(change).map_err(|error| Failure { job: Some(i), error })?);
            }
            all.push(outcomes);
        }
        all
    };
    tx.commit()?;
    Ok(outcomes)
}

macro_rules! statements {
    ($($name:ident),* $(,)?) => {
        /// The writer's prepared statements, one per file in `sql/`.
        struct Statements<'c> {
            conn: &'c Connection,
            $($name: CachedStatement<'c>,)*
        }

        impl<'c> Statements<'c> {
            fn new(conn: &'c Connection) -> rusqlite::Result<Self> {
                Ok(Statements {
                    conn,
                    $($name: conn.prepare_cached(include_str!(concat!("sql/", stringify!($name), ".sql")))?,)*
                })
            }
        }

        /// Prepares every write statement once, so a schema mismatch fails at open.
        pub(super) fn prepare_all(conn: &Connection) -> rusqlite::Result<()> {
            $(conn.prepare_cached(include_str!(concat!("sql/", stringify!($name), ".sql")))?;)*
            conn.prepare_cached(TASK_STATE)?;
            conn.prepare_cached(RUN_STATE)?;
            Ok(())
        }
    };
}

statements!(
    insert_run,
    insert_run_spec,
    insert_run_transition,
    insert_task,
    insert_task_transition,
    update_task_plain,
    update_task_start,
    insert_attempt,
    update_task_end,
    close_attempt,
    heartbeat,
    update_run,
    adopt_run,
    insert_progress_sample,
);

const TASK_STATE: &str = include_str!("sql/task_state.sql");
const RUN_STATE: &str = include_str!("sql/run_state.sql");

impl Statements<'_> {
    fn apply(&mut self, change: &Change) -> Result<Outcome, Error> {
        match change {
            Change::CreateRun(run) => self.create_run(run),
            Change::Run(change) => self.run_change(change),
            Change::Task(change) => self.task_change(change),
            Change::Heartbeat(hb) => self.heartbeat(hb),
            Change::AdoptRun(adopt) => self.adopt_run(adopt),
        }
    }

    fn adopt_run(&mut self, adopt: &AdoptRun) -> Result<Outcome, Error> {
        let adopted: Option<i64> = self
            .adopt_run
            .query_row(params![adopt.run.to_bytes(), adopt.from, adopt.to], |row| row.get(0))
            .optional()?;
        Ok(match adopted {
            Some(_) => Outcome::Applied,
            None => Outcome::Conflict(conflict::adopt_run(adopt)),
        })
    }

    fn create_run(&mut self, run: &NewRun) -> Result<Outcome, Error> {
        let params_json = json_map(&run.params)?;
        let t = &run.transition;
        let run_no: Option<i64> = self
            .insert_run
            .query_row(
                params![
                    run.id.to_bytes(),
                    run.workflow,
                    t.to.code(),
                    run.trigger,
                    params_json,
                    run.owner,
                    run.spec_path,
                    t.at.as_micros(),
                ],
                |row| row.get(0),
            )
            .optional()?;
        let Some(run_no) = run_no else {
            return Ok(Outcome::Conflict(conflict::run_exists(run.id)));
        };
        self.insert_run_spec.execute(params![run_no, run.spec_source])?;
        self.insert_run_transition.execute(params![
            run_no,
            None::<u8>,
            t.to.code(),
            t.at.as_micros(),
            t.reason,
            actor_text(&t.actor),
        ])?;
        for task in &run.tasks {
            let t = &task.transition;
            let at = t.at.as_micros();
            let task_no = self.insert_task.insert(params![
                task.id.to_bytes(),
                t.to.code(),
                at,
                run_no,
                task.index,
                task.max_attempts,
                task.name,
                task.queue,
            ])?;
            self.insert_task_transition.execute(params![
                task_no,
                t.attempt,
                None::<u8>,
                t.to.code(),
                at,
                t.reason,
                actor_text(&t.actor),
            ])?;
        }
        Ok(Outcome::Applied)
    }

    fn run_change(&mut self, change: &RunChange) -> Result<Outcome, Error> {
        let t = &change.transition;
        let from = t.from.ok_or_else(|| invalid("run change without a from-status"))?;
        let at = t.at.as_micros();
        let started = (t.to == RunStatus::Running).then_some(at);
        let finished = t.to.is_terminal().then_some(at);
        let run_no: Option<i64> = self
            .update_run
            .query_row(
                params![change.run.to_bytes(), from.code(), t.to.code(), at, started, finished, change.error],
                |row| row.get(0),
            )
            .optional()?;
        let Some(run_no) = run_no else {
            return self.run_conflict(change, from);
        };
        self.insert_run_transition.execute(params![
            run_no,
            from.code(),
            t.to.code(),
            at,
            t.reason,
            actor_text(&t.actor),
        ])?;
        Ok(Outcome::Applied)
    }

    fn run_conflict(&self, change: &RunChange, from: RunStatus) -> Result<Outcome, Error> {
        let state = self
            .conn
            .prepare_cached(RUN_STATE)?
            .query_row([change.run.to_bytes()], |row| {
                Ok(RunState { status: row.get(0)?, last_at: row.get(1)? })
            })
            .optional()?;
        let why = conflict::run_change(change, from, state)
            .unwrap_or_else(|| conflict::run_changed_meanwhile(change));
        Ok(Outcome::Conflict(why))
    }

    fn task_change(&mut self, change: &TaskChange) -> Result<Outcome, Error> {
        let t = &change.transition;
        let from = t.from.ok_or_else(|| invalid("task change without a from-status"))?;
        let id = change.task.to_bytes();
        let at = t.at.as_micros();
        let task_no: Option<i64> = match &change.update {
            TaskUpdate::Plain => {
                let finished = t.to.is_terminal().then_some(at);
                self.update_task_plain
                    .query_row(params![id, from.code(), t.to.code(), at, finished], |row| row.get(0))
                    .optional()?
            }
            TaskUpdate::Start { lease, worker } => {
                let task_no: Option<i64> = self
                    .update_task_start
                    .query_row(
                        params![
                            id,
                            from.code(),
                            t.attempt,
                            at,
                            lease.started_at.as_micros(),
                            lease.token.to_bytes(),
                            worker,
                            lease.last_heartbeat_at.as_micros(),
                            lease.expires_at.as_micros(),
                        ],
                        |row| row.get(0),
                    )
                    .optional()?;
                if let Some(task_no) = task_no {
                    self.insert_attempt.execute(params![
                        task_no,
                        t.attempt,
                        worker,
                        lease.started_at.as_micros()
                    ])?;
                }
                task_no
            }
            TaskUpdate::EndAttempt { token, result, retry_at } => {
                let finished = t.to.is_terminal().then_some(at);
                let not_before = retry_at.filter(|_| t.to == TaskStatus::Pending).map(|r| r.as_micros());
                let row: Option<(i64, u32)> = self
                    .update_task_end
                    .query_row(params![id, t.to.code(), token.to_bytes(), at, finished, not_before], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()?;
                if let Some((task_no, attempt)) = row {
                    let closed = self.close_attempt.execute(params![
                        task_no,
                        attempt,
                        at,
                        attempt_outcome(t.to).code(),
                        result.exit_code,
                        result.error,
                        json_map(&result.outputs)?,
                    ])?;
                    if closed != 1 {
                        return Err(StoreError::Corrupt(format!(
                            "task {} is RUNNING attempt {attempt} but has no record of that attempt",
                            change.task
                        ))
                        .into());
                    }
                }
                row.map(|(task_no, _)| task_no)
            }
        };
        let Some(task_no) = task_no else {
            return self.task_conflict(change, from);
        };
        self.insert_task_transition.execute(params![
            task_no,
            t.attempt,
            from.code(),
            t.to.code(),
            at,
            t.reason,
            actor_text(&t.actor),
        ])?;
        Ok(Outcome::Applied)
    }

    /// Says which precondition of a refused task change failed. Only runs on
    /// the slow path, after the compare-and-set matched no row.
    fn task_conflict(&self, change: &TaskChange, from: TaskStatus) -> Result<Outcome, Error> {
        let state = self.task_state_of(change.task.to_bytes())?;
        let why = conflict::task_change(change, from, state.as_ref())
            .unwrap_or_else(|| conflict::task_changed_meanwhile(change.task));
        Ok(Outcome::Conflict(why))
    }

    fn heartbeat(&mut self, hb: &Heartbeat) -> Result<Outcome, Error> {
        let (percent, message) = match &hb.progress {
            Some(p) => (Some(f64::from(p.percent)), p.message.as_deref()),
            None => (None, None),
        };
        let details =
            hb.details.as_ref().map(serde_json::to_string).transpose().map_err(|e| {
                StoreError::InvalidChange(format!("heartbeat details of task {}: {e}", hb.task))
            })?;
        let updated: Option<(i64, u32)> = self
            .heartbeat
            .query_row(
                params![
                    hb.task.to_bytes(),
                    hb.token.to_bytes(),
                    hb.at.as_micros(),
                    hb.lease_expires_at.as_micros(),
                    hb.progress.is_some(),
                    percent,
                    message,
                    details,
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        if let Some((task_no, attempt)) = updated {
            if hb.sample
                && let Some(p) = &hb.progress
            {
                self.insert_progress_sample.execute(params![
                    task_no,
                    attempt,
                    hb.at.as_micros(),
                    f64::from(p.percent),
                    p.message.as_deref(),
                ])?;
            }
            return Ok(Outcome::Applied);
        }
        let state: Option<TaskState> = self.task_state_of(hb.task.to_bytes())?;
        // The one writer saw the task RUNNING: the token was someone else's.
        let why = conflict::heartbeat(hb, state.as_ref()).unwrap_or_else(|| conflict::stale_token(hb.task));
        Ok(Outcome::Conflict(why))
    }

    fn task_state_of(&self, id: [u8; 16]) -> Result<Option<TaskState>, Error> {
        Ok(self
            .conn
            .prepare_cached(TASK_STATE)?
            .query_row([id], |row| {
                Ok(TaskState {
                    status: row.get(0)?,
                    attempt: row.get(1)?,
                    last_at: row.get(2)?,
                    token: row.get::<_, Option<[u8; 16]>>(3)?.map(LeaseToken::from_bytes),
                })
            })
            .optional()?)
    }
}

fn invalid(why: &str) -> Error {
    Error::Store(StoreError::InvalidChange(why.to_owned()))
}

/// The actor as stored; the common ones without allocating.
fn actor_text(actor: &Actor) -> Cow<'static, str> {
    match actor {
        Actor::Scheduler => Cow::Borrowed("scheduler"),
        Actor::Executor => Cow::Borrowed("executor"),
        Actor::Reaper => Cow::Borrowed("reaper"),
        other => Cow::Owned(other.to_string()),
    }
}

/// A map as JSON, or NULL when empty (most tasks have no outputs).
fn json_map(map: &std::collections::BTreeMap<String, String>) -> Result<Option<String>, Error> {
    if map.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(map)
        .map(Some)
        .map_err(|e| Error::Store(StoreError::InvalidChange(format!("cannot encode a map as JSON: {e}"))))
}

/// How an attempt ended: one that is retried (`RUNNING -> PENDING`) failed.
fn attempt_outcome(to: TaskStatus) -> TaskStatus {
    if to == TaskStatus::Pending { TaskStatus::Failed } else { to }
}
