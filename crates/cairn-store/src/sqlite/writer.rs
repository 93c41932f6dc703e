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
//!
//! Each applied status change (and each new run and task) also adds to the
//! net changes of the status counts (`crate::counts`), from what its
//! statement returned; just before the commit they are added to the
//! aggregate tables, one upsert per row, in the same transaction.
//!
//! Claims and lease renewals (`crate::dispatch`) are jobs on the same queue,
//! so they share the group's transaction and are serialized with every other
//! write: a claim takes offers no other writer can touch meanwhile. The
//! notices of a transaction are published once it committed, repeats merged.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use cairn_core::lease::Lease;
use cairn_core::record::Actor;
use cairn_core::{LeaseToken, RunId, RunStatus, TaskId, TaskStatus, Timestamp};
use rusqlite::{CachedStatement, Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{broadcast, oneshot};

use super::Error;
use crate::change::{AdoptRun, Change, Heartbeat, NewRun, Outcome, RunChange, TaskChange, TaskUpdate};
use crate::conflict::{self, RunState, TaskState};
use crate::counts::{self, Deltas, Grain, Kind};
use crate::dispatch::{
    ClaimOutcome, ClaimRequest, Claimed, LeaseState, Notice, Offer, PostedResult, Renewal,
};
use crate::error::StoreError;

/// What a caller asks of the writer.
pub(super) enum Work {
    Apply(std::sync::Arc<Vec<Change>>),
    Claim(ClaimRequest),
    Renew(Vec<Renewal>),
    /// Finished runs to import whole (`super::import`), checked already.
    Import(std::sync::Arc<Vec<crate::FinishedRun>>),
    /// Runs to delete if finished (`super::retention`).
    DeleteRuns(Vec<RunId>),
    Alert(crate::alerts::AlertWrite),
    Token(crate::tokens::TokenWrite),
    /// An event for the audit log (`super::audit`).
    Audit(crate::NewAuditEvent),
    /// An enqueue or attempt of a webhook delivery (`super::webhooks`).
    Webhook(super::webhooks::WebhookWrite),
}

/// What the writer answers, by the kind of [`Work`].
pub(super) enum Done {
    Applied(Vec<Outcome>),
    Claimed(ClaimOutcome),
    Renewed(Vec<LeaseState>),
    Imported,
    Deleted(crate::retention::Deleted),
    Alert(Option<cairn_core::AlertId>),
    /// The token a revocation revoked (nothing for the other token writes).
    Token(Option<crate::tokens::TokenRecord>),
    Audit,
    /// The delivery enqueued or attempted, if any.
    Webhook(Option<i64>),
}

pub(super) type Answer = oneshot::Receiver<Result<Done, StoreError>>;

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Done, StoreError>>,
}

impl Job {
    /// How much of a group this job takes up.
    fn size(&self) -> usize {
        match &self.work {
            Work::Apply(changes) => changes.len(),
            Work::Claim(req) => req.max.max(1),
            Work::Renew(renewals) => renewals.len(),
            Work::Import(runs) => runs.iter().map(|r| 1 + r.detail.tasks.len()).sum(),
            Work::DeleteRuns(ids) => ids.len(),
            Work::Alert(_) | Work::Token(_) | Work::Audit(_) | Work::Webhook(_) => 1,
        }
    }
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

/// Starts the writer thread on `conn`; it publishes the notices of each
/// commit on `notices`.
pub(super) fn spawn(
    conn: Connection,
    max_group_changes: usize,
    notices: broadcast::Sender<Notice>,
) -> std::io::Result<WriterHandle> {
    let (tx, rx) = mpsc::channel();
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    let thread = std::thread::Builder::new()
        .name("cairn-sqlite-writer".into())
        .spawn(move || run(conn, rx, &c, max_group_changes.max(1), &notices))?;
    Ok(WriterHandle { queue: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)), counters })
}

impl WriterHandle {
    /// Queues work; the receiver gets its answer once committed.
    pub(super) fn submit(&self, work: Work) -> Result<Answer, StoreError> {
        let (reply, rx) = oneshot::channel();
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let sender = queue.as_ref().ok_or(StoreError::Closed)?;
        sender.send(Job { work, reply }).map_err(|_| StoreError::Closed)?;
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
    notices: &broadcast::Sender<Notice>,
) -> Result<(), StoreError> {
    while let Ok(first) = queue.recv() {
        let mut size = first.size();
        let mut group = vec![first];
        while size < max_group {
            match queue.try_recv() {
                Ok(job) => {
                    size += job.size();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        // Retried without each batch that fails on its own, so one caller's
        // bad batch does not fail the others that shared its transaction.
        while !group.is_empty() {
            match commit(&mut conn, &group) {
                Ok((answers, published)) => {
                    counters.transactions.fetch_add(1, Ordering::Relaxed);
                    let (mut batches, mut changes) = (0, 0);
                    for job in &group {
                        if let Work::Apply(batch) = &job.work {
                            batches += 1;
                            changes += batch.len() as u64;
                        }
                    }
                    counters.batches.fetch_add(batches, Ordering::Relaxed);
                    counters.changes.fetch_add(changes, Ordering::Relaxed);
                    for notice in published {
                        // No receiver is fine: nobody is waiting.
                        let _ = notices.send(notice);
                    }
                    for (job, answer) in group.drain(..).zip(answers) {
                        // The caller may have stopped waiting; its work stands.
                        let _ = job.reply.send(Ok(answer));
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

/// Does `jobs` in one transaction, all or nothing; returns each job's answer
/// and the notices to publish once committed.
fn commit(conn: &mut Connection, jobs: &[Job]) -> Result<(Vec<Done>, Vec<Notice>), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (answers, notices) = {
        let mut w = Statements::new(&tx)?;
        let mut all = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            // Dropping `tx` on the way out rolls everything back.
            let failed = |error| Failure { job: Some(i), error };
            all.push(match &job.work {
                Work::Apply(changes) => {
                    let mut outcomes = Vec::with_capacity(changes.len());
                    for change in changes.iter() {
                        outcomes.push(w.apply(change).map_err(failed)?);
                    }
                    Done::Applied(outcomes)
                }
                Work::Claim(req) => Done::Claimed(w.claim(req).map_err(failed)?),
                Work::Renew(renewals) => {
                    let mut states = Vec::with_capacity(renewals.len());
                    for renewal in renewals {
                        states.push(w.renew(renewal).map_err(failed)?);
                    }
                    Done::Renewed(states)
                }
                Work::Import(runs) => {
                    super::import::import(w.conn, runs, &mut w.counts, &mut w.workflows).map_err(failed)?;
                    Done::Imported
                }
                Work::Alert(write) => {
                    let id = super::alerts::write(w.conn, write).map_err(failed)?;
                    if let Some(id) = id {
                        w.publish(Notice::Alert { id });
                    }
                    Done::Alert(id)
                }
                Work::Token(write) => Done::Token(super::tokens::write(w.conn, write).map_err(failed)?),
                Work::Audit(event) => {
                    super::audit::record(w.conn, event).map_err(failed)?;
                    Done::Audit
                }
                Work::Webhook(write) => Done::Webhook(super::webhooks::write(w.conn, write).map_err(failed)?),
                Work::DeleteRuns(ids) => Done::Deleted(
                    super::retention::delete_runs(w.conn, ids, &mut w.counts, &mut w.workflows)
                        .map_err(failed)?,
                ),
            });
        }
        w.add_counts().map_err(|error| Failure { job: None, error })?;
        (all, w.notices)
    };
    tx.commit()?;
    Ok((answers, notices))
}

macro_rules! statements {
    ($($name:ident),* $(,)?) => {
        /// The writer's prepared statements, one per file in `sql/`, and
        /// the notices and net count changes of the transaction they write in.
        struct Statements<'c> {
            conn: &'c Connection,
            $($name: CachedStatement<'c>,)*
            notices: Vec<Notice>,
            published: HashSet<Notice>,
            counts: Deltas,
            /// The workflows of the runs this transaction created or changed.
            workflows: HashMap<i64, String>,
        }

        impl<'c> Statements<'c> {
            fn new(conn: &'c Connection) -> rusqlite::Result<Self> {
                Ok(Statements {
                    conn,
                    $($name: conn.prepare_cached(include_str!(concat!("sql/", stringify!($name), ".sql")))?,)*
                    notices: Vec::new(),
                    published: HashSet::new(),
                    counts: Deltas::default(),
                    workflows: HashMap::new(),
                })
            }
        }

        /// Prepares every write statement once, so a schema mismatch fails at open.
        pub(super) fn prepare_all(conn: &Connection) -> rusqlite::Result<()> {
            $(conn.prepare_cached(include_str!(concat!("sql/", stringify!($name), ".sql")))?;)*
            for slow_path in SLOW_PATH {
                conn.prepare_cached(slow_path)?;
            }
            super::import::prepare_all(conn)?;
            for retention in super::retention::STATEMENTS {
                conn.prepare_cached(retention)?;
            }
            Ok(())
        }
    };
}

statements!(
    insert_run,
    insert_run_spec,
    insert_run_label,
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
    delete_offer,
    delete_result,
    upsert_offer,
    withdraw_offer,
    request_cancel,
    request_run_cancel,
    insert_result,
    claim_offers,
    take_offer,
    claim_task,
    next_ready,
    renew,
    run_workflow,
    upsert_run_counts_minute,
    upsert_run_counts_hour,
    upsert_run_counts_day,
    upsert_task_counts_minute,
    upsert_task_counts_hour,
    upsert_task_counts_day,
);

const TASK_STATE: &str = include_str!("sql/task_state.sql");
const RUN_STATE: &str = include_str!("sql/run_state.sql");
const RUN_EXISTS: &str = include_str!("sql/run_exists.sql");
const RESULT_TOKEN: &str = include_str!("sql/result_token.sql");
const TASK_REMOTE: &str = include_str!("sql/task_remote.sql");

/// Statements only a refused change runs, to say why: prepared at open with
/// the others, taken from the cache when needed.
const SLOW_PATH: [&str; 5] = [TASK_STATE, RUN_STATE, RUN_EXISTS, RESULT_TOKEN, TASK_REMOTE];

/// One offer a claim may take, with what the claim needs of its run.
struct Candidate {
    seq: i64,
    task_no: i64,
    ready_at: i64,
    lease_ms: i64,
    payload: String,
    run: RunId,
    owner: Option<String>,
}

impl Statements<'_> {
    fn apply(&mut self, change: &Change) -> Result<Outcome, Error> {
        match change {
            Change::CreateRun(run) => self.create_run(run),
            Change::Run(change) => self.run_change(change),
            Change::Task(change) => self.task_change(change),
            Change::Heartbeat(hb) => self.heartbeat(hb),
            Change::AdoptRun(adopt) => self.adopt_run(adopt),
            Change::Offer(offer) => self.offer(offer),
            Change::Withdraw { task } => self.withdraw(*task),
            Change::RequestCancel { task, token } => self.request_cancel(*task, *token),
            Change::PostResult(result) => self.post_result(result),
            Change::RequestRunCancel { run, actor } => self.request_run_cancel(*run, actor),
        }
    }

    /// Publishes `notice` once this transaction commits; a repeat is merged.
    fn publish(&mut self, notice: Notice) {
        if self.published.insert(notice.clone()) {
            self.notices.push(notice);
        }
    }

    fn offer(&mut self, offer: &Offer) -> Result<Outcome, Error> {
        let offered: Option<i64> = self
            .upsert_offer
            .query_row(
                params![
                    offer.task.to_bytes(),
                    offer.queue,
                    offer.ready_at.as_micros(),
                    lease_ms(offer.lease_ms)?,
                    offer.payload
                ],
                |row| row.get(0),
            )
            .optional()?;
        if offered.is_none() {
            let state = self.task_state_of(offer.task.to_bytes())?;
            // The one writer saw it PENDING: it has no queue.
            let why =
                conflict::offer(offer.task, state.as_ref()).unwrap_or_else(|| conflict::no_queue(offer.task));
            return Ok(Outcome::Conflict(why));
        }
        self.publish(Notice::Offered { queue: offer.queue.clone() });
        Ok(Outcome::Applied)
    }

    fn withdraw(&mut self, task: TaskId) -> Result<Outcome, Error> {
        let taken: Option<i64> =
            self.withdraw_offer.query_row([task.to_bytes()], |row| row.get(0)).optional()?;
        Ok(match taken {
            Some(_) => Outcome::Applied,
            None => Outcome::Conflict(conflict::no_offer(task)),
        })
    }

    fn request_cancel(&mut self, task: TaskId, token: LeaseToken) -> Result<Outcome, Error> {
        let asked: Option<i64> = self
            .request_cancel
            .query_row(params![task.to_bytes(), token.to_bytes()], |row| row.get(0))
            .optional()?;
        if asked.is_some() {
            return Ok(Outcome::Applied);
        }
        let state = self.task_state_of(task.to_bytes())?;
        let why = conflict::lease(task, token, state.as_ref()).unwrap_or_else(|| conflict::stale_token(task));
        Ok(Outcome::Conflict(why))
    }

    fn post_result(&mut self, result: &PostedResult) -> Result<Outcome, Error> {
        let id = result.task.to_bytes();
        let token = result.token.to_bytes();
        let posted: Option<i64> = self
            .insert_result
            .query_row(params![id, token, result.at.as_micros(), result.body], |row| row.get(0))
            .optional()?;
        if posted.is_some() {
            self.publish(Notice::Posted { run: result.run, task: result.task });
            return Ok(Outcome::Applied);
        }
        let state = self.task_state_of(id)?;
        if let Some(why) = conflict::lease(result.task, result.token, state.as_ref()) {
            return Ok(Outcome::Conflict(why));
        }
        // The lease is current: the task has no queue, or the result was
        // there already, posted under this very token (ending an attempt
        // deletes its result, so no other token's can be there). The same
        // post again changes nothing.
        let stored: Option<[u8; 16]> =
            self.conn.prepare_cached(RESULT_TOKEN)?.query_row([id], |row| row.get(0)).optional()?;
        Ok(match stored {
            Some(stored) if stored == token => Outcome::Applied,
            Some(_) => Outcome::Conflict(conflict::task_changed_meanwhile(result.task)),
            None => Outcome::Conflict(conflict::no_queue(result.task)),
        })
    }

    /// Leases up to `req.max` ready offers of `req.queues`, oldest first:
    /// each queue's first candidates along its index, merged.
    fn claim(&mut self, req: &ClaimRequest) -> Result<ClaimOutcome, Error> {
        let now = req.now.as_micros();
        let mut queues: Vec<&str> = req.queues.iter().map(String::as_str).collect();
        queues.sort_unstable();
        queues.dedup();
        let mut candidates = Vec::new();
        if req.max > 0 {
            let limit = i64::try_from(req.max).unwrap_or(i64::MAX);
            for queue in &queues {
                let mut rows = self.claim_offers.query(params![queue, now, limit])?;
                while let Some(row) = rows.next()? {
                    candidates.push(Candidate {
                        seq: row.get(0)?,
                        task_no: row.get(1)?,
                        ready_at: row.get(2)?,
                        lease_ms: row.get(3)?,
                        payload: row.get(4)?,
                        run: RunId::from_bytes(row.get(5)?),
                        owner: row.get(6)?,
                    });
                }
            }
        }
        candidates.sort_unstable_by_key(|c| (c.ready_at, c.seq));
        candidates.truncate(req.max);

        let actor = actor_text(&Actor::Worker(req.worker.clone()));
        let mut tasks = Vec::with_capacity(candidates.len());
        for offer in candidates {
            // Taken whatever happens next: an offer of a task that left
            // PENDING is stale and goes too.
            self.take_offer.execute([offer.seq])?;
            let token = LeaseToken::random();
            let leased: Option<([u8; 16], u32, i64, i64, i64, i64)> = self
                .claim_task
                .query_row(params![offer.task_no, now, token.to_bytes(), req.worker, offer.lease_ms], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
                })
                .optional()?;
            let Some((id, attempt, at, expires_at, run_no, submitted_at)) = leased else {
                continue;
            };
            self.counts.moved(
                Kind::Tasks,
                submitted_at,
                run_no,
                TaskStatus::Pending.code(),
                TaskStatus::Running.code(),
            );
            self.insert_attempt.execute(params![offer.task_no, attempt, req.worker, at])?;
            self.insert_task_transition.execute(params![
                offer.task_no,
                attempt,
                TaskStatus::Pending.code(),
                TaskStatus::Running.code(),
                at,
                format!("attempt {attempt} started"),
                actor,
            ])?;
            let task = TaskId::from_bytes(id);
            if offer.owner.as_deref() != Some(req.server.as_str()) {
                self.publish(Notice::Claimed { run: offer.run, task });
            }
            let at = Timestamp::from_micros(at);
            tasks.push(Claimed {
                task,
                run: offer.run,
                attempt,
                lease: Lease {
                    token,
                    started_at: at,
                    last_heartbeat_at: at,
                    expires_at: Timestamp::from_micros(expires_at),
                },
                payload: offer.payload,
            });
        }

        let mut next_ready_at: Option<i64> = None;
        for queue in &queues {
            let next: Option<i64> =
                self.next_ready.query_row(params![queue, now], |row| row.get(0)).optional()?;
            next_ready_at = match (next_ready_at, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(ClaimOutcome { tasks, next_ready_at: next_ready_at.map(Timestamp::from_micros) })
    }

    fn renew(&mut self, renewal: &Renewal) -> Result<LeaseState, Error> {
        let (percent, message) = match &renewal.progress {
            Some(p) => (Some(f64::from(p.percent)), p.message.as_deref()),
            None => (None, None),
        };
        let details = renewal.details.as_ref().map(serde_json::to_string).transpose().map_err(|e| {
            StoreError::InvalidChange(format!("renewal details of task {}: {e}", renewal.task))
        })?;
        let held: Option<(i64, bool)> = self
            .renew
            .query_row(
                params![
                    renewal.task.to_bytes(),
                    renewal.token.to_bytes(),
                    renewal.at.as_micros(),
                    renewal.progress.is_some(),
                    percent,
                    message,
                    details,
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        Ok(match held {
            Some((expires_at, cancel_requested)) => {
                LeaseState::Held { expires_at: Timestamp::from_micros(expires_at), cancel_requested }
            }
            None => LeaseState::Stale,
        })
    }

    fn request_run_cancel(&mut self, run: RunId, actor: &Actor) -> Result<Outcome, Error> {
        let asked: Option<i64> = self
            .request_run_cancel
            .query_row(params![run.to_bytes(), actor_text(actor)], |row| row.get(0))
            .optional()?;
        if asked.is_none() {
            let why = conflict::run_cancel(run, self.run_state_of(run)?)
                .unwrap_or_else(|| conflict::run_changed_meanwhile(run));
            return Ok(Outcome::Conflict(why));
        }
        self.publish(Notice::CancelRequested { run });
        Ok(Outcome::Applied)
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
                    run.schedule_tick.map(Timestamp::as_micros),
                ],
                |row| row.get(0),
            )
            .optional()?;
        let Some(run_no) = run_no else {
            // The id taken, or else the tick.
            let id_taken = run.schedule_tick.is_none()
                || self.conn.prepare_cached(RUN_EXISTS)?.exists([run.id.to_bytes()])?;
            return Ok(Outcome::Conflict(match run.schedule_tick {
                Some(tick) if !id_taken => conflict::tick_taken(&run.workflow, tick),
                _ => conflict::run_exists(run.id),
            }));
        };
        self.counts.created(Kind::Runs, t.at.as_micros(), run_no, t.to.code());
        self.workflows.insert(run_no, run.workflow.clone());
        self.insert_run_spec.execute(params![run_no, run.spec_source])?;
        for term in crate::search::label_terms(&run.labels) {
            self.insert_run_label.execute(params![term, run.id.to_bytes(), run_no])?;
        }
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
                run.workflow,
            ])?;
            self.counts.created(Kind::Tasks, at, run_no, t.to.code());
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
        let updated: Option<(i64, i64, String)> = self
            .update_run
            .query_row(
                params![change.run.to_bytes(), from.code(), t.to.code(), at, started, finished, change.error],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        let Some((run_no, submitted_at, workflow)) = updated else {
            return self.run_conflict(change, from);
        };
        self.counts.moved(Kind::Runs, submitted_at, run_no, from.code(), t.to.code());
        self.workflows.entry(run_no).or_insert(workflow);
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
        let why = conflict::run_change(change, from, self.run_state_of(change.run)?)
            .unwrap_or_else(|| conflict::run_changed_meanwhile(change.run));
        Ok(Outcome::Conflict(why))
    }

    fn run_state_of(&self, run: RunId) -> Result<Option<RunState>, Error> {
        Ok(self
            .conn
            .prepare_cached(RUN_STATE)?
            .query_row([run.to_bytes()], |row| Ok(RunState { status: row.get(0)?, last_at: row.get(1)? }))
            .optional()?)
    }

    fn task_change(&mut self, change: &TaskChange) -> Result<Outcome, Error> {
        let t = &change.transition;
        let from = t.from.ok_or_else(|| invalid("task change without a from-status"))?;
        let id = change.task.to_bytes();
        let at = t.at.as_micros();
        // The task's number, and its run and submission time for the counts.
        let updated: Option<(i64, i64, i64)> = match &change.update {
            TaskUpdate::Plain => {
                let finished = t.to.is_terminal().then_some(at);
                let row: Option<(i64, bool, i64, i64)> = self
                    .update_task_plain
                    .query_row(params![id, from.code(), t.to.code(), at, finished], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })
                    .optional()?;
                if let Some((task_no, true, _, _)) = row
                    && from == TaskStatus::Pending
                {
                    // No offer outlives its task's PENDING status (and only
                    // a task with a queue has one).
                    self.delete_offer.execute([task_no])?;
                }
                row.map(|(task_no, _, run_no, submitted_at)| (task_no, run_no, submitted_at))
            }
            TaskUpdate::Start { lease, worker } => {
                let row: Option<(i64, bool, i64, i64)> = self
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
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                    )
                    .optional()?;
                if let Some((task_no, remote, _, _)) = row {
                    if remote {
                        self.delete_offer.execute([task_no])?;
                    }
                    self.insert_attempt.execute(params![
                        task_no,
                        t.attempt,
                        worker,
                        lease.started_at.as_micros()
                    ])?;
                }
                row.map(|(task_no, _, run_no, submitted_at)| (task_no, run_no, submitted_at))
            }
            TaskUpdate::EndAttempt { token, result, retry_at } => {
                let finished = t.to.is_terminal().then_some(at);
                let not_before = retry_at.filter(|_| t.to == TaskStatus::Pending).map(|r| r.as_micros());
                let row: Option<(i64, u32, bool, i64, i64)> = self
                    .update_task_end
                    .query_row(params![id, t.to.code(), token.to_bytes(), at, finished, not_before], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
                    })
                    .optional()?;
                if let Some((task_no, attempt, remote, _, _)) = row {
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
                    if remote {
                        // The result posted for the attempt (if any) is applied now.
                        self.delete_result.execute([task_no])?;
                    }
                }
                row.map(|(task_no, _, _, run_no, submitted_at)| (task_no, run_no, submitted_at))
            }
        };
        let Some((task_no, run_no, submitted_at)) = updated else {
            return self.task_conflict(change, from);
        };
        // An attempt ends from RUNNING, whatever the change says it was.
        let was =
            if matches!(change.update, TaskUpdate::EndAttempt { .. }) { TaskStatus::Running } else { from };
        self.counts.moved(Kind::Tasks, submitted_at, run_no, was.code(), t.to.code());
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

    /// Adds the transaction's net count changes to the aggregate tables:
    /// one upsert per row that changed, each run's workflow read at most
    /// once (and not at all for the runs this transaction created or changed).
    fn add_counts(&mut self) -> Result<(), Error> {
        if self.counts.is_empty() {
            return Ok(());
        }
        let deltas = std::mem::take(&mut self.counts).into_nonzero();
        let mut known = std::mem::take(&mut self.workflows);
        let lookup = &mut self.run_workflow;
        let rows = counts::rows(deltas, |run_no| match known.remove(&run_no) {
            Some(workflow) => Ok(workflow),
            None => lookup.query_row([run_no], |row| row.get(0)).map_err(Error::from),
        })?;
        for (key, n) in rows {
            let upsert = match (key.kind, key.grain) {
                (Kind::Runs, Grain::Minute) => &mut self.upsert_run_counts_minute,
                (Kind::Runs, Grain::Hour) => &mut self.upsert_run_counts_hour,
                (Kind::Tasks, Grain::Minute) => &mut self.upsert_task_counts_minute,
                (Kind::Tasks, Grain::Hour) => &mut self.upsert_task_counts_hour,
                (Kind::Runs, Grain::Day) => &mut self.upsert_run_counts_day,
                (Kind::Tasks, Grain::Day) => &mut self.upsert_task_counts_day,
            };
            upsert.execute(params![key.bucket, key.workflow, key.status, n])?;
        }
        Ok(())
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

/// An offer's lease as stored (validated to fit).
fn lease_ms(ms: u64) -> Result<i64, Error> {
    i64::try_from(ms).map_err(|_| invalid(&format!("a lease of {ms} ms does not fit")))
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
