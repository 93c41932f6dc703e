//! The write side: one [`Store::apply`](crate::Store::apply) call is one
//! transaction on one pooled connection.
//!
//! Every change is a compare-and-set: an `UPDATE … WHERE id = … AND status =
//! … [AND lease_token = …] AND last_at <= …` whose data-modifying CTEs append
//! the transition row (and open or close the attempt, keep a progress
//! sample) only for the rows it updated, so a change and its log row commit
//! or vanish together. The statement also returns the state a refused change
//! met, so it says why without another round trip.
//!
//! A batch is cut into statements set-wise (`plan`): consecutive task
//! changes and heartbeats on distinct tasks commute (each reads and writes
//! only its own task's rows), so they go as one statement per kind, over
//! arrays, up to [`GROUP`] elements each; a change to a task already in the
//! group starts the next one, and any other change (a new run, a run's
//! status, an adoption, a run's cancel request) is a statement of its own,
//! in its place. A new run with all its tasks is one statement
//! (`create_run.sql`). The statements are pipelined: all are sent before the
//! answers are read, and PostgreSQL runs them in the order sent, so a change
//! sees the ones before it.
//!
//! The dispatch changes (offers, withdrawals, cancel requests, posted
//! results) are task changes too and group the same way. A claim and a
//! batch of lease renewals are one statement each, in a transaction of
//! their own (`claim`, `renew`).
//!
//! Each applied status change (and each new run and task) adds to the net
//! changes of the status counts (`crate::counts`), from what its statement
//! returned; after the last answer, one more statement (`counts_upsert.sql`)
//! adds them to the aggregate tables, and the commit follows at once.
//!
//! The first error fails the batch: the transaction rolls back and nothing
//! of it stays. Concurrent batches run in transactions of their own; a
//! deadlock or serialization failure between them rolls one back whole, and
//! it is tried again.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use cairn_core::lease::Lease;
use cairn_core::record::Actor;
use cairn_core::{LeaseToken, RunId, RunStatus, TaskId, TaskStatus, Timestamp};
use deadpool_postgres::{Object, Pool};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;
use tokio_postgres::{Row, Statement, Transaction};

use super::{Error, Uuid, describe};
use crate::change::{AdoptRun, Change, Heartbeat, NewRun, Outcome, RunChange, TaskChange, TaskUpdate};
use crate::conflict::{self, RunState, TaskState};
use crate::counts::{self, Deltas, Kind};
use crate::dispatch::{ClaimOutcome, ClaimRequest, Claimed, LeaseState, Offer, PostedResult, Renewal};
use crate::error::StoreError;

const CREATE_RUN: &str = include_str!("sql/create_run.sql");
const TASKS_PLAIN: &str = include_str!("sql/tasks_plain.sql");
const TASKS_START: &str = include_str!("sql/tasks_start.sql");
const TASKS_END: &str = include_str!("sql/tasks_end.sql");
const HEARTBEATS: &str = include_str!("sql/heartbeats.sql");
const RUN_CHANGE: &str = include_str!("sql/run_change.sql");
const ADOPT_RUN: &str = include_str!("sql/adopt_run.sql");
const REQUEST_RUN_CANCEL: &str = include_str!("sql/request_run_cancel.sql");
const TASK_STATE: &str = include_str!("sql/task_state.sql");
const RUN_STATE: &str = include_str!("sql/run_state.sql");
const RUN_EXISTS: &str = include_str!("sql/run_exists.sql");
const OFFERS: &str = include_str!("sql/offers.sql");
const WITHDRAWS: &str = include_str!("sql/withdraws.sql");
const CANCEL_REQUESTS: &str = include_str!("sql/cancel_requests.sql");
const POST_RESULTS: &str = include_str!("sql/post_results.sql");
const RESULT_TOKEN: &str = include_str!("sql/result_token.sql");
const TASK_REMOTE: &str = include_str!("sql/task_remote.sql");
const CLAIM: &str = include_str!("sql/claim.sql");
const RENEWALS: &str = include_str!("sql/renewals.sql");
const COUNTS_UPSERT: &str = include_str!("sql/counts_upsert.sql");

/// Every statement of the write side, prepared when the store connects.
pub(super) const STATEMENTS: &[&str] = &[
    CREATE_RUN,
    TASKS_PLAIN,
    TASKS_START,
    TASKS_END,
    HEARTBEATS,
    RUN_CHANGE,
    ADOPT_RUN,
    REQUEST_RUN_CANCEL,
    TASK_STATE,
    RUN_STATE,
    RUN_EXISTS,
    OFFERS,
    WITHDRAWS,
    CANCEL_REQUESTS,
    POST_RESULTS,
    RESULT_TOKEN,
    TASK_REMOTE,
    CLAIM,
    RENEWALS,
    COUNTS_UPSERT,
];

/// Changes in one set-wise statement at most: a few round trips' worth of
/// work, and few enough that the planner keeps to index lookups however
/// small the tables.
const GROUP: usize = 1000;

/// Statements in flight at once on the connection: enough to keep it busy,
/// few enough that a huge batch does not hold all its requests in memory.
const PIPELINE: usize = 64;

/// Tries of a batch rolled back by a deadlock, a serialization failure or a
/// connection lost before its commit.
const TRIES: u32 = 5;

pub(super) async fn apply(
    pool: Pool,
    changes: std::sync::Arc<Vec<Change>>,
) -> Result<Vec<Outcome>, StoreError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut client = pool.get().await.map_err(Error::from)?;
        match apply_once(&mut client, &changes).await {
            Ok(outcomes) => return Ok(outcomes),
            Err(e) if tries < TRIES && retryable(&e) => {
                tracing::debug!(error = %e.describe(), tries, "a batch was rolled back; trying it again");
                if e.code().is_none() {
                    // The connection broke: never hand it out again.
                    let _ = Object::take(client);
                }
                tokio::time::sleep(Duration::from_millis(5 * u64::from(tries))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether a statement was rolled back by a deadlock or a serialization
/// failure, so it certainly changed nothing.
fn rolled_back(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|code| {
        *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// Whether the batch certainly rolled back and may simply run again.
fn retryable(e: &Error) -> bool {
    match e {
        Error::Pg(e) => match e.code() {
            Some(_) => rolled_back(e),
            // Lost before the commit was sent (a commit lost is CommitUnknown).
            None => e.is_closed(),
        },
        _ => false,
    }
}

/// What one statement said about its change.
enum Said {
    Done(Outcome),
    /// Refused, but the state the statement met would have let it apply:
    /// a concurrent writer moved it on. Read again after the pipeline.
    Recheck,
}

async fn apply_once(client: &mut Object, changes: &[Change]) -> Result<Vec<Outcome>, Error> {
    let st = Statements::prepare(client).await?;
    let steps = plan(changes);
    // The driver's own transaction (not the pool's wrapper), which holds
    // nothing but the connection: see `commit_with_counts`.
    let connection: &mut tokio_postgres::Client = client;
    let tx = connection.transaction().await?;
    let mut said: Vec<Option<Said>> = changes.iter().map(|_| None).collect();
    // Filled by the statements as their answers arrive, one at a time.
    let deltas = Mutex::new(Deltas::default());
    for window in steps.chunks(PIPELINE) {
        // FuturesOrdered polls each new future once, in order, before any
        // answer arrives: the statements go out in the batch's order.
        let mut inflight: FuturesOrdered<_> =
            window.iter().map(|step| execute(&tx, &st, step, &deltas)).collect();
        while let Some(result) = inflight.next().await {
            for (i, one) in result? {
                said[i] = Some(one);
            }
        }
    }
    let mut outcomes = Vec::with_capacity(said.len());
    for (said, change) in said.into_iter().zip(changes) {
        outcomes.push(match said {
            Some(Said::Done(outcome)) => outcome,
            Some(Said::Recheck) => recheck(&tx, &st, change).await?,
            None => return Err(corrupt("change without an answer from its statement")),
        });
    }
    // A second look (`recheck`) never applies a status change: the counts are complete.
    let deltas = deltas.into_inner().unwrap_or_else(|e| e.into_inner());
    if deltas.is_empty() {
        tx.commit().await.map_err(commit_failed)?;
    } else {
        commit_with_counts(tx, &st, deltas).await?;
    }
    Ok(outcomes)
}

/// A commit that failed: certainly rolled back when the server answered it
/// with an error, unknown when the answer was lost.
fn commit_failed(e: tokio_postgres::Error) -> Error {
    match e.code() {
        Some(_) => Error::Pg(e),
        None => Error::Store(StoreError::CommitUnknown(describe(&e))),
    }
}

/// The write statements of one connection, from its statement cache.
struct Statements {
    create_run: Statement,
    tasks_plain: Statement,
    tasks_start: Statement,
    tasks_end: Statement,
    heartbeats: Statement,
    run_change: Statement,
    adopt_run: Statement,
    request_run_cancel: Statement,
    task_state: Statement,
    run_state: Statement,
    run_exists: Statement,
    offers: Statement,
    withdraws: Statement,
    cancel_requests: Statement,
    post_results: Statement,
    result_token: Statement,
    task_remote: Statement,
    counts_upsert: Statement,
}

impl Statements {
    async fn prepare(client: &Object) -> Result<Statements, Error> {
        Ok(Statements {
            run_exists: client.prepare_cached(RUN_EXISTS).await?,
            offers: client.prepare_cached(OFFERS).await?,
            withdraws: client.prepare_cached(WITHDRAWS).await?,
            cancel_requests: client.prepare_cached(CANCEL_REQUESTS).await?,
            post_results: client.prepare_cached(POST_RESULTS).await?,
            result_token: client.prepare_cached(RESULT_TOKEN).await?,
            task_remote: client.prepare_cached(TASK_REMOTE).await?,
            counts_upsert: client.prepare_cached(COUNTS_UPSERT).await?,
            create_run: client.prepare_cached(CREATE_RUN).await?,
            tasks_plain: client.prepare_cached(TASKS_PLAIN).await?,
            tasks_start: client.prepare_cached(TASKS_START).await?,
            tasks_end: client.prepare_cached(TASKS_END).await?,
            heartbeats: client.prepare_cached(HEARTBEATS).await?,
            run_change: client.prepare_cached(RUN_CHANGE).await?,
            adopt_run: client.prepare_cached(ADOPT_RUN).await?,
            request_run_cancel: client.prepare_cached(REQUEST_RUN_CANCEL).await?,
            task_state: client.prepare_cached(TASK_STATE).await?,
            run_state: client.prepare_cached(RUN_STATE).await?,
        })
    }
}

/// One statement of a batch and the changes it carries, each with its
/// position in the batch.
enum Step<'a> {
    /// A new run, a run's status change, an adoption or a run's cancel request.
    One(usize, &'a Change),
    Plain(Vec<(usize, &'a TaskChange)>),
    Start(Vec<(usize, &'a TaskChange)>),
    End(Vec<(usize, &'a TaskChange)>),
    Beats(Vec<(usize, &'a Heartbeat)>),
    Offers(Vec<(usize, &'a Offer)>),
    Withdraws(Vec<(usize, TaskId)>),
    Cancels(Vec<(usize, TaskId, LeaseToken)>),
    Posts(Vec<(usize, &'a PostedResult)>),
}

/// Changes on distinct tasks, gathered by kind.
#[derive(Default)]
struct Group<'a> {
    tasks: HashSet<TaskId>,
    plain: Vec<(usize, &'a TaskChange)>,
    start: Vec<(usize, &'a TaskChange)>,
    end: Vec<(usize, &'a TaskChange)>,
    beats: Vec<(usize, &'a Heartbeat)>,
    offers: Vec<(usize, &'a Offer)>,
    withdraws: Vec<(usize, TaskId)>,
    cancels: Vec<(usize, TaskId, LeaseToken)>,
    posts: Vec<(usize, &'a PostedResult)>,
}

impl<'a> Group<'a> {
    /// Takes a change on `task` unless the group already touches it.
    fn admits(&mut self, task: TaskId) -> bool {
        self.tasks.insert(task)
    }

    fn close(&mut self, steps: &mut Vec<Step<'a>>) {
        let group = std::mem::take(self);
        if !group.plain.is_empty() {
            steps.push(Step::Plain(group.plain));
        }
        if !group.start.is_empty() {
            steps.push(Step::Start(group.start));
        }
        if !group.end.is_empty() {
            steps.push(Step::End(group.end));
        }
        if !group.beats.is_empty() {
            steps.push(Step::Beats(group.beats));
        }
        if !group.offers.is_empty() {
            steps.push(Step::Offers(group.offers));
        }
        if !group.withdraws.is_empty() {
            steps.push(Step::Withdraws(group.withdraws));
        }
        if !group.cancels.is_empty() {
            steps.push(Step::Cancels(group.cancels));
        }
        if !group.posts.is_empty() {
            steps.push(Step::Posts(group.posts));
        }
    }

    /// A kind that reached [`GROUP`] changes becomes a statement now; the
    /// rest of the group follows it, which is fine as they all commute.
    fn spill(&mut self, steps: &mut Vec<Step<'a>>) {
        if self.plain.len() >= GROUP {
            steps.push(Step::Plain(std::mem::take(&mut self.plain)));
        }
        if self.start.len() >= GROUP {
            steps.push(Step::Start(std::mem::take(&mut self.start)));
        }
        if self.end.len() >= GROUP {
            steps.push(Step::End(std::mem::take(&mut self.end)));
        }
        if self.beats.len() >= GROUP {
            steps.push(Step::Beats(std::mem::take(&mut self.beats)));
        }
        if self.offers.len() >= GROUP {
            steps.push(Step::Offers(std::mem::take(&mut self.offers)));
        }
        if self.withdraws.len() >= GROUP {
            steps.push(Step::Withdraws(std::mem::take(&mut self.withdraws)));
        }
        if self.cancels.len() >= GROUP {
            steps.push(Step::Cancels(std::mem::take(&mut self.cancels)));
        }
        if self.posts.len() >= GROUP {
            steps.push(Step::Posts(std::mem::take(&mut self.posts)));
        }
    }
}

/// Cuts a batch into statements that, run in order, do what its changes do
/// one by one: a group never holds two changes of one task, and a change
/// that is not a task's ends the group before it.
fn plan(changes: &[Change]) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    let mut group = Group::default();
    for (i, change) in changes.iter().enumerate() {
        let task = match change {
            Change::Task(tc) => tc.task,
            Change::Heartbeat(hb) => hb.task,
            Change::Offer(offer) => offer.task,
            Change::Withdraw { task } | Change::RequestCancel { task, .. } => *task,
            Change::PostResult(result) => result.task,
            Change::CreateRun(_) | Change::Run(_) | Change::AdoptRun(_) | Change::RequestRunCancel { .. } => {
                group.close(&mut steps);
                steps.push(Step::One(i, change));
                continue;
            }
        };
        if !group.admits(task) {
            group.close(&mut steps);
            group.admits(task);
        }
        match change {
            Change::Task(tc) => match tc.update {
                TaskUpdate::Plain => group.plain.push((i, tc)),
                TaskUpdate::Start { .. } => group.start.push((i, tc)),
                TaskUpdate::EndAttempt { .. } => group.end.push((i, tc)),
            },
            Change::Heartbeat(hb) => group.beats.push((i, hb)),
            Change::Offer(offer) => group.offers.push((i, offer)),
            Change::Withdraw { task } => group.withdraws.push((i, *task)),
            Change::RequestCancel { task, token } => group.cancels.push((i, *task, *token)),
            Change::PostResult(result) => group.posts.push((i, result)),
            Change::CreateRun(_) | Change::Run(_) | Change::AdoptRun(_) | Change::RequestRunCancel { .. } => {
                unreachable!("handled above")
            }
        }
        group.spill(&mut steps);
    }
    group.close(&mut steps);
    steps
}

async fn execute(
    tx: &Transaction<'_>,
    st: &Statements,
    step: &Step<'_>,
    deltas: &Mutex<Deltas>,
) -> Result<Vec<(usize, Said)>, Error> {
    match step {
        Step::One(i, Change::CreateRun(run)) => Ok(vec![(*i, create_run(tx, st, run, deltas).await?)]),
        Step::One(i, Change::Run(change)) => Ok(vec![(*i, run_change(tx, st, change, deltas).await?)]),
        Step::One(i, Change::AdoptRun(adopt)) => Ok(vec![(*i, adopt_run(tx, st, adopt).await?)]),
        Step::One(i, Change::RequestRunCancel { run, actor }) => {
            Ok(vec![(*i, request_run_cancel(tx, st, *run, actor).await?)])
        }
        Step::One(_, _) => Err(corrupt("a task change planned alone")),
        Step::Plain(group) => tasks_plain(tx, st, group, deltas).await,
        Step::Start(group) => tasks_start(tx, st, group, deltas).await,
        Step::End(group) => tasks_end(tx, st, group, deltas).await,
        Step::Beats(group) => heartbeats(tx, st, group).await,
        Step::Offers(group) => offers(tx, st, group).await,
        Step::Withdraws(group) => withdraws(tx, st, group).await,
        Step::Cancels(group) => cancel_requests(tx, st, group).await,
        Step::Posts(group) => post_results(tx, st, group).await,
    }
}

async fn create_run(
    tx: &Transaction<'_>,
    st: &Statements,
    run: &NewRun,
    deltas: &Mutex<Deltas>,
) -> Result<Said, Error> {
    let t = &run.transition;
    let n = run.tasks.len();
    let (mut ids, mut idx, mut max_attempts, mut at) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut names, mut queues, mut reasons, mut actors) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for task in &run.tasks {
        ids.push(Uuid(task.id.to_bytes()));
        idx.push(int(task.index)?);
        max_attempts.push(int(task.max_attempts)?);
        at.push(task.transition.at.as_micros());
        names.push(task.name.as_str());
        queues.push(task.queue.as_deref());
        reasons.push(task.transition.reason.as_str());
        actors.push(actor_text(&task.transition.actor));
    }
    let params = json_map(&run.params);
    let row = tx
        .query_opt(
            &st.create_run,
            &[
                &Uuid(run.id.to_bytes()),
                &run.workflow,
                &status(t.to.code()),
                &run.trigger,
                &params,
                &run.owner,
                &run.spec_path,
                &t.at.as_micros(),
                &run.spec_source,
                &t.reason,
                &actor_text(&t.actor),
                // Validated: every task is created SUBMITTED.
                &status(TaskStatus::Submitted.code()),
                &ids,
                &idx,
                &max_attempts,
                &at,
                &names,
                &queues,
                &reasons,
                &actors,
                &run.schedule_tick.map(Timestamp::as_micros),
                &crate::search::label_terms(&run.labels),
            ],
        )
        .await?;
    if let Some(row) = &row {
        let run_no: i64 = row.try_get(0)?;
        let mut deltas = lock(deltas);
        deltas.created(Kind::Runs, t.at.as_micros(), run_no, t.to.code());
        for task in &run.tasks {
            let t = &task.transition;
            deltas.created(Kind::Tasks, t.at.as_micros(), run_no, t.to.code());
        }
    }
    Ok(match (row, run.schedule_tick) {
        (Some(_), _) => Said::Done(Outcome::Applied),
        (None, None) => Said::Done(Outcome::Conflict(conflict::run_exists(run.id))),
        // The id or the tick was taken: which one is read after the pipeline.
        (None, Some(_)) => Said::Recheck,
    })
}

async fn run_change(
    tx: &Transaction<'_>,
    st: &Statements,
    change: &RunChange,
    deltas: &Mutex<Deltas>,
) -> Result<Said, Error> {
    let t = &change.transition;
    let from = t.from.ok_or_else(|| invalid("run change without a from-status"))?;
    let at = t.at.as_micros();
    let started = (t.to == RunStatus::Running).then_some(at);
    let finished = t.to.is_terminal().then_some(at);
    let row = tx
        .query_one(
            &st.run_change,
            &[
                &Uuid(change.run.to_bytes()),
                &status(from.code()),
                &status(t.to.code()),
                &at,
                &started,
                &finished,
                &change.error,
                &t.reason,
                &actor_text(&t.actor),
            ],
        )
        .await?;
    if let Some(run_no) = row.try_get::<_, Option<i64>>(0)? {
        let submitted_at: i64 = row.try_get(3)?;
        lock(deltas).moved(Kind::Runs, submitted_at, run_no, from.code(), t.to.code());
        return Ok(Said::Done(Outcome::Applied));
    }
    let state = run_state(&row, 1)?;
    Ok(match conflict::run_change(change, from, state) {
        Some(why) => Said::Done(Outcome::Conflict(why)),
        None => Said::Recheck,
    })
}

async fn adopt_run(tx: &Transaction<'_>, st: &Statements, adopt: &AdoptRun) -> Result<Said, Error> {
    let row = tx.query_opt(&st.adopt_run, &[&Uuid(adopt.run.to_bytes()), &adopt.from, &adopt.to]).await?;
    Ok(Said::Done(match row {
        Some(_) => Outcome::Applied,
        None => Outcome::Conflict(conflict::adopt_run(adopt)),
    }))
}

async fn request_run_cancel(
    tx: &Transaction<'_>,
    st: &Statements,
    run: RunId,
    actor: &Actor,
) -> Result<Said, Error> {
    let row = tx.query_one(&st.request_run_cancel, &[&Uuid(run.to_bytes()), &actor_text(actor)]).await?;
    if row.try_get::<_, Option<i64>>(0)?.is_some() {
        return Ok(Said::Done(Outcome::Applied));
    }
    Ok(match conflict::run_cancel(run, run_state(&row, 1)?) {
        Some(why) => Said::Done(Outcome::Conflict(why)),
        None => Said::Recheck,
    })
}

/// The columns every task change's transition row takes from its change.
struct Logged<'a> {
    ids: Vec<Uuid>,
    at: Vec<i64>,
    attempt: Vec<i32>,
    reason: Vec<&'a str>,
    actor: Vec<Cow<'static, str>>,
}

impl<'a> Logged<'a> {
    fn of(group: &[(usize, &'a TaskChange)]) -> Result<Logged<'a>, Error> {
        let n = group.len();
        let mut logged = Logged {
            ids: Vec::with_capacity(n),
            at: Vec::with_capacity(n),
            attempt: Vec::with_capacity(n),
            reason: Vec::with_capacity(n),
            actor: Vec::with_capacity(n),
        };
        for (_, change) in group {
            let t = &change.transition;
            logged.ids.push(Uuid(change.task.to_bytes()));
            logged.at.push(t.at.as_micros());
            logged.attempt.push(int(t.attempt)?);
            logged.reason.push(&t.reason);
            logged.actor.push(actor_text(&t.actor));
        }
        Ok(logged)
    }
}

fn from_status(change: &TaskChange) -> Result<TaskStatus, Error> {
    change.transition.from.ok_or_else(|| invalid("task change without a from-status"))
}

async fn tasks_plain(
    tx: &Transaction<'_>,
    st: &Statements,
    group: &[(usize, &TaskChange)],
    deltas: &Mutex<Deltas>,
) -> Result<Vec<(usize, Said)>, Error> {
    let logged = Logged::of(group)?;
    let mut from = Vec::with_capacity(group.len());
    let mut to = Vec::with_capacity(group.len());
    let mut finished = Vec::with_capacity(group.len());
    for (_, change) in group {
        let t = &change.transition;
        from.push(status(from_status(change)?.code()));
        to.push(status(t.to.code()));
        finished.push(t.to.is_terminal().then_some(t.at.as_micros()));
    }
    let rows = tx
        .query(
            &st.tasks_plain,
            &[&logged.ids, &from, &to, &logged.at, &finished, &logged.attempt, &logged.reason, &logged.actor],
        )
        .await?;
    let said = task_outcomes(group, &rows, 2)?;
    count_moves(deltas, group, &rows, 6, from_status)?;
    Ok(said)
}

async fn tasks_start(
    tx: &Transaction<'_>,
    st: &Statements,
    group: &[(usize, &TaskChange)],
    deltas: &Mutex<Deltas>,
) -> Result<Vec<(usize, Said)>, Error> {
    let logged = Logged::of(group)?;
    let n = group.len();
    let (mut from, mut started, mut tokens, mut workers, mut beats, mut expires) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (_, change) in group {
        let TaskUpdate::Start { lease, worker } = &change.update else {
            return Err(corrupt("a start planned without its lease"));
        };
        from.push(status(from_status(change)?.code()));
        started.push(lease.started_at.as_micros());
        tokens.push(Uuid(lease.token.to_bytes()));
        workers.push(worker.as_str());
        beats.push(lease.last_heartbeat_at.as_micros());
        expires.push(lease.expires_at.as_micros());
    }
    let rows = tx
        .query(
            &st.tasks_start,
            &[
                &logged.ids,
                &from,
                &logged.attempt,
                &logged.at,
                &started,
                &tokens,
                &workers,
                &beats,
                &expires,
                &logged.reason,
                &logged.actor,
            ],
        )
        .await?;
    let said = task_outcomes(group, &rows, 2)?;
    count_moves(deltas, group, &rows, 6, from_status)?;
    Ok(said)
}

async fn tasks_end(
    tx: &Transaction<'_>,
    st: &Statements,
    group: &[(usize, &TaskChange)],
    deltas: &Mutex<Deltas>,
) -> Result<Vec<(usize, Said)>, Error> {
    let logged = Logged::of(group)?;
    let n = group.len();
    let (mut to, mut tokens, mut finished, mut not_before, mut outcome) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut exit_codes, mut errors, mut outputs) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for (_, change) in group {
        let TaskUpdate::EndAttempt { token, result, retry_at } = &change.update else {
            return Err(corrupt("an end planned without its token"));
        };
        let t = &change.transition;
        to.push(status(t.to.code()));
        tokens.push(Uuid(token.to_bytes()));
        finished.push(t.to.is_terminal().then_some(t.at.as_micros()));
        not_before.push(retry_at.filter(|_| t.to == TaskStatus::Pending).map(|r| r.as_micros()));
        outcome.push(status(attempt_outcome(t.to).code()));
        exit_codes.push(result.exit_code);
        errors.push(result.error.as_deref());
        outputs.push(json_map(&result.outputs));
    }
    let rows = tx
        .query(
            &st.tasks_end,
            &[
                &logged.ids,
                &to,
                &tokens,
                &logged.at,
                &finished,
                &not_before,
                &outcome,
                &exit_codes,
                &errors,
                &outputs,
                &logged.attempt,
                &logged.reason,
                &logged.actor,
            ],
        )
        .await?;
    check_rows(group.len(), &rows)?;
    for ((_, change), row) in group.iter().zip(&rows) {
        if row.try_get::<_, Option<i64>>(1)?.is_some() && !row.try_get::<_, bool>(3)? {
            let ended: Option<i32> = row.try_get(2)?;
            return Err(StoreError::Corrupt(format!(
                "task {} is RUNNING attempt {} but has no record of that attempt",
                change.task,
                ended.unwrap_or_default()
            ))
            .into());
        }
    }
    let said = task_outcomes(group, &rows, 4)?;
    // An attempt ends from RUNNING, whatever the change says it was.
    count_moves(deltas, group, &rows, 8, |_| Ok(TaskStatus::Running))?;
    Ok(said)
}

async fn heartbeats(
    tx: &Transaction<'_>,
    st: &Statements,
    group: &[(usize, &Heartbeat)],
) -> Result<Vec<(usize, Said)>, Error> {
    let n = group.len();
    let (mut ids, mut tokens, mut at, mut expires, mut has_progress) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut percent, mut message, mut details, mut sample) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for (_, hb) in group {
        ids.push(Uuid(hb.task.to_bytes()));
        tokens.push(Uuid(hb.token.to_bytes()));
        at.push(hb.at.as_micros());
        expires.push(hb.lease_expires_at.as_micros());
        has_progress.push(hb.progress.is_some());
        percent.push(hb.progress.as_ref().map(|p| p.percent));
        message.push(hb.progress.as_ref().and_then(|p| p.message.as_deref()));
        details.push(hb.details.as_ref().map(Json));
        sample.push(hb.sample);
    }
    let rows = tx
        .query(
            &st.heartbeats,
            &[&ids, &tokens, &at, &expires, &has_progress, &percent, &message, &details, &sample],
        )
        .await?;
    check_rows(group.len(), &rows)?;
    group
        .iter()
        .zip(&rows)
        .map(|((i, hb), row)| {
            if row.try_get::<_, Option<i64>>(1)?.is_some() {
                return Ok((*i, Said::Done(Outcome::Applied)));
            }
            let state = task_state(row, 2)?;
            Ok((
                *i,
                match conflict::heartbeat(hb, state.as_ref()) {
                    Some(why) => Said::Done(Outcome::Conflict(why)),
                    None => Said::Recheck,
                },
            ))
        })
        .collect()
}

async fn offers(
    tx: &Transaction<'_>,
    st: &Statements,
    group: &[(usize, &Offer)],
) -> Result<Vec<(usize, Said)>, Error> {
    let n = group.len();
    let (mut ids, mut queues, mut ready_at, mut lease_ms, mut payloads) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (_, offer) in group {
        ids.push(Uuid(offer.task.to_bytes()));
        queues.push(offer.queue.as_str());
        ready_at.push(offer.ready_at.as_micros());
        lease_ms.push(
            i64::try_from(offer.lease_ms)
                .map_err(|_| invalid(&format!("a lease of {} ms does not fit", offer.lease_ms)))?,
        );
        payloads.push(offer.payload.as_str());
    }
    let rows = tx.query(&st.offers, &[&ids, &queues, &ready_at, &lease_ms, &payloads]).await?;
    check_rows(n, &rows)?;
    group
        .iter()
        .zip(&rows)
        .map(|((i, offer), row)| {
            if row.try_get::<_, Option<i64>>(1)?.is_some() {
                return Ok((*i, Said::Done(Outcome::Applied)));
            }
            let state = task_state(row, 2)?;
            Ok((
                *i,
                match conflict::offer(offer.task, state.as_ref()) {
                    Some(why) => Said::Done(Outcome::Conflict(why)),
                    None => Said::Recheck,
                },
            ))
        })
        .collect()
}

async fn withdraws(
    tx: &Transaction<'_>,
    st: &Statements,
    group: &[(usize, TaskId)],
) -> Result<Vec<(usize, Said)>, Error> {
    let ids: Vec<Uuid> = group.iter().map(|(_, task)| Uuid(task.to_bytes())).collect();
    let rows = tx.query(&st.withdraws, &[&ids]).await?;
    check_rows(group.len(), &rows)?;
    group
        .iter()
        .zip(&rows)
        .map(|((i, task), row)| {
            let outcome =
                if row.try_get(1)? { Outcome::Applied } else { Outcome::Conflict(conflict::no_offer(*task)) };
            Ok((*i, Said::Done(outcome)))
        })
        .collect()
}

async fn cancel_requests(
    tx: &Transaction<'_>,
    st: &Statements,
    group: &[(usize, TaskId, LeaseToken)],
) -> Result<Vec<(usize, Said)>, Error> {
    let ids: Vec<Uuid> = group.iter().map(|(_, task, _)| Uuid(task.to_bytes())).collect();
    let tokens: Vec<Uuid> = group.iter().map(|(_, _, token)| Uuid(token.to_bytes())).collect();
    let rows = tx.query(&st.cancel_requests, &[&ids, &tokens]).await?;
    check_rows(group.len(), &rows)?;
    group
        .iter()
        .zip(&rows)
        .map(|((i, task, token), row)| {
            if row.try_get::<_, Option<i64>>(1)?.is_some() {
                return Ok((*i, Said::Done(Outcome::Applied)));
            }
            let state = task_state(row, 2)?;
            Ok((
                *i,
                match conflict::lease(*task, *token, state.as_ref()) {
                    Some(why) => Said::Done(Outcome::Conflict(why)),
                    None => Said::Recheck,
                },
            ))
        })
        .collect()
}

async fn post_results(
    tx: &Transaction<'_>,
    st: &Statements,
    group: &[(usize, &PostedResult)],
) -> Result<Vec<(usize, Said)>, Error> {
    let n = group.len();
    let (mut ids, mut runs, mut tokens, mut at, mut bodies) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (_, result) in group {
        ids.push(Uuid(result.task.to_bytes()));
        runs.push(Uuid(result.run.to_bytes()));
        tokens.push(Uuid(result.token.to_bytes()));
        at.push(result.at.as_micros());
        bodies.push(result.body.as_str());
    }
    let rows = tx.query(&st.post_results, &[&ids, &runs, &tokens, &at, &bodies]).await?;
    check_rows(n, &rows)?;
    group
        .iter()
        .zip(&rows)
        .map(|((i, result), row)| {
            // The lease was current with the task locked: the result is
            // there now, written by this post or by the same post before.
            if row.try_get::<_, Option<i64>>(1)?.is_some() {
                return Ok((*i, Said::Done(Outcome::Applied)));
            }
            let state = task_state(row, 3)?;
            Ok((
                *i,
                match conflict::lease(result.task, result.token, state.as_ref()) {
                    Some(why) => Said::Done(Outcome::Conflict(why)),
                    None => Said::Recheck,
                },
            ))
        })
        .collect()
}

/// Leases up to `req.max` ready offers in one statement (`sql/claim.sql`),
/// on a pooled connection, as a transaction of its own.
pub(super) async fn claim(pool: &Pool, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
    let max = i64::try_from(req.max).unwrap_or(i64::MAX);
    let actor = actor_text(&Actor::Worker(req.worker.clone()));
    let now = req.now.as_micros();
    let mut tries = 0;
    let rows = loop {
        tries += 1;
        let client = pool.get().await.map_err(Error::from)?;
        let stmt = client.prepare_cached(CLAIM).await.map_err(Error::from)?;
        match client.query(&stmt, &[&req.queues, &now, &max, &req.worker, &actor, &req.server]).await {
            Ok(rows) => break rows,
            // Rolled back for certain: nothing was taken, try again. Any other
            // failure is the caller's (a lost connection may have committed).
            Err(e) if tries < TRIES && rolled_back(&e) => {
                tokio::time::sleep(Duration::from_millis(5 * u64::from(tries))).await;
            }
            Err(e) => return Err(Error::Pg(e).into()),
        }
    };
    let mut outcome = ClaimOutcome::default();
    for row in &rows {
        outcome.next_ready_at =
            row.try_get::<_, Option<i64>>(0).map_err(Error::from)?.map(Timestamp::from_micros);
        let Some(task) = row.try_get::<_, Option<Uuid>>(1).map_err(Error::from)? else {
            continue;
        };
        let claimed = (|| -> Result<Claimed, Error> {
            let at = Timestamp::from_micros(row.try_get(4)?);
            Ok(Claimed {
                task: TaskId::from_bytes(task.0),
                run: RunId::from_bytes(row.try_get::<_, Uuid>(2)?.0),
                attempt: u32::try_from(row.try_get::<_, i32>(3)?)
                    .map_err(|_| corrupt("a negative attempt"))?,
                lease: Lease {
                    token: LeaseToken::from_bytes(row.try_get::<_, Uuid>(6)?.0),
                    started_at: at,
                    last_heartbeat_at: at,
                    expires_at: Timestamp::from_micros(row.try_get(5)?),
                },
                payload: row.try_get(7)?,
            })
        })()?;
        outcome.tasks.push(claimed);
    }
    Ok(outcome)
}

/// Renews leases set-wise (`sql/renewals.sql`): one statement, its own
/// transaction, unless a task comes twice; then one statement per run of
/// distinct tasks, in order, in one transaction.
pub(super) async fn renew(pool: &Pool, renewals: &[Renewal]) -> Result<Vec<LeaseState>, StoreError> {
    let mut groups: Vec<&[Renewal]> = Vec::new();
    let (mut start, mut seen) = (0, HashSet::new());
    for (i, renewal) in renewals.iter().enumerate() {
        if !seen.insert(renewal.task) {
            groups.push(&renewals[start..i]);
            start = i;
            seen.clear();
            seen.insert(renewal.task);
        }
    }
    groups.push(&renewals[start..]);

    let mut client = pool.get().await.map_err(Error::from)?;
    let stmt = client.prepare_cached(RENEWALS).await.map_err(Error::from)?;
    let mut states = Vec::with_capacity(renewals.len());
    if let [group] = groups.as_slice() {
        renew_group(&**client, &stmt, group, &mut states).await?;
        return Ok(states);
    }
    let tx = client.transaction().await.map_err(Error::from)?;
    for group in groups {
        renew_group(&*tx, &stmt, group, &mut states).await?;
    }
    tx.commit().await.map_err(|e| match e.code() {
        Some(_) => Error::Pg(e),
        None => Error::Store(StoreError::CommitUnknown(describe(&e))),
    })?;
    Ok(states)
}

async fn renew_group(
    client: &impl tokio_postgres::GenericClient,
    stmt: &Statement,
    group: &[Renewal],
    states: &mut Vec<LeaseState>,
) -> Result<(), Error> {
    let n = group.len();
    let (mut ids, mut tokens, mut at, mut has_progress, mut percent, mut message, mut details) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for renewal in group {
        ids.push(Uuid(renewal.task.to_bytes()));
        tokens.push(Uuid(renewal.token.to_bytes()));
        at.push(renewal.at.as_micros());
        has_progress.push(renewal.progress.is_some());
        percent.push(renewal.progress.as_ref().map(|p| p.percent));
        message.push(renewal.progress.as_ref().and_then(|p| p.message.as_deref()));
        details.push(renewal.details.as_ref().map(Json));
    }
    let rows = client.query(stmt, &[&ids, &tokens, &at, &has_progress, &percent, &message, &details]).await?;
    check_rows(n, &rows)?;
    for row in &rows {
        states.push(match row.try_get::<_, Option<i64>>(1)? {
            Some(expires_at) => LeaseState::Held {
                expires_at: Timestamp::from_micros(expires_at),
                cancel_requested: row.try_get(2)?,
            },
            None => LeaseState::Stale,
        });
    }
    Ok(())
}

/// Each task change's outcome from its row: applied when column 1 (the
/// task_no) is there, else refused for the state from column `state_at`.
fn task_outcomes(
    group: &[(usize, &TaskChange)],
    rows: &[Row],
    state_at: usize,
) -> Result<Vec<(usize, Said)>, Error> {
    check_rows(group.len(), rows)?;
    group
        .iter()
        .zip(rows)
        .map(|((i, change), row)| {
            if row.try_get::<_, Option<i64>>(1)?.is_some() {
                return Ok((*i, Said::Done(Outcome::Applied)));
            }
            let state = task_state(row, state_at)?;
            Ok((
                *i,
                match conflict::task_change(change, from_status(change)?, state.as_ref()) {
                    Some(why) => Said::Done(Outcome::Conflict(why)),
                    None => Said::Recheck,
                },
            ))
        })
        .collect()
}

/// Adds the applied changes of a task statement (checked by
/// [`task_outcomes`]: column 1 is the task_no when applied) to `deltas`, each
/// from `from(change)` to its new status, with the run and submission time
/// in columns `at` and `at + 1`.
fn count_moves(
    deltas: &Mutex<Deltas>,
    group: &[(usize, &TaskChange)],
    rows: &[Row],
    at: usize,
    from: impl Fn(&TaskChange) -> Result<TaskStatus, Error>,
) -> Result<(), Error> {
    let mut deltas = lock(deltas);
    for ((_, change), row) in group.iter().zip(rows) {
        if row.try_get::<_, Option<i64>>(1)?.is_some() {
            let (run_no, submitted_at): (i64, i64) = (row.try_get(at)?, row.try_get(at + 1)?);
            deltas.moved(
                Kind::Tasks,
                submitted_at,
                run_no,
                from(change)?.code(),
                change.transition.to.code(),
            );
        }
    }
    Ok(())
}

fn lock(deltas: &Mutex<Deltas>) -> std::sync::MutexGuard<'_, Deltas> {
    deltas.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds a batch's net count changes to the aggregate tables in one
/// statement (`counts_upsert.sql`) and commits, both sent at once: no round
/// trip more than a plain commit, and the locks of the count rows (which
/// every server's batches update) are held only while the server runs the
/// two. Should the upsert fail, the transaction is aborted and the `COMMIT`
/// behind it rolls it back.
async fn commit_with_counts(tx: Transaction<'_>, st: &Statements, deltas: Deltas) -> Result<(), Error> {
    let all = deltas.into_nonzero();
    let n = all.len();
    let (mut kinds, mut minutes, mut hours, mut runs, mut statuses, mut ns) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for d in &all {
        kinds.push(d.kind.code());
        minutes.push(d.minute);
        hours.push(counts::hour_of(d.minute));
        runs.push(d.run_no);
        statuses.push(status(d.status));
        ns.push(d.n);
    }
    let client = tx.client();
    // `join3` polls each once, in order, before any answer: all go out
    // together. The upsert's plan is the cached generic one: planned anew
    // for each batch's arrays (PostgreSQL's choice for it), it takes longer
    // to plan than to run.
    let (generic, counted, committed) = futures_util::future::join3(
        client.batch_execute("SET LOCAL plan_cache_mode = force_generic_plan"),
        client.query_one(&st.counts_upsert, &[&kinds, &minutes, &hours, &runs, &statuses, &ns]),
        client.batch_execute("COMMIT"),
    )
    .await;
    let counted = generic.and(counted);
    // The `COMMIT` was sent, so the transaction is over whatever the answers:
    // the rollback its guard sends when dropped would only draw a warning.
    // Forgetting it frees nothing: it holds a borrow of the connection.
    std::mem::forget(tx);
    match (counted, committed) {
        (Ok(_), Ok(())) => Ok(()),
        // Refused by the server: the COMMIT behind it rolled back.
        (Err(e), _) if e.code().is_some() => Err(Error::Pg(e)),
        (Err(e), _) => Err(Error::Store(StoreError::CommitUnknown(describe(&e)))),
        (Ok(_), Err(e)) => Err(commit_failed(e)),
    }
}

/// A set-wise statement answers one row per element, numbered from 1 in order.
fn check_rows(n: usize, rows: &[Row]) -> Result<(), Error> {
    if rows.len() != n {
        return Err(corrupt(&format!("{} answers to a statement of {n} changes", rows.len())));
    }
    for (k, row) in rows.iter().enumerate() {
        let ord: i64 = row.try_get(0)?;
        if usize::try_from(ord).ok() != Some(k + 1) {
            return Err(corrupt(&format!("answer #{ord} in place {}", k + 1)));
        }
    }
    Ok(())
}

/// Why a change was refused after all, from the state as it is now (the slow
/// path, after a concurrent writer moved the row on).
async fn recheck(tx: &Transaction<'_>, st: &Statements, change: &Change) -> Result<Outcome, Error> {
    let state_of = |task: TaskId| async move {
        let row = tx.query_opt(&st.task_state, &[&Uuid(task.to_bytes())]).await?;
        Ok::<_, Error>(row.map(|row| task_state(&row, 0)).transpose()?.flatten())
    };
    // Whether a task whose status and lease fit has a queue, the last thing
    // an offer or a posted result needs.
    let remote = |task: TaskId| async move {
        let row = tx.query_opt(&st.task_remote, &[&Uuid(task.to_bytes())]).await?;
        Ok::<_, Error>(row.map(|row| row.try_get::<_, bool>(0)).transpose()?.unwrap_or(true))
    };
    Ok(Outcome::Conflict(match change {
        Change::CreateRun(run) => {
            let taken: bool = tx.query_one(&st.run_exists, &[&Uuid(run.id.to_bytes())]).await?.try_get(0)?;
            match run.schedule_tick {
                Some(tick) if !taken => conflict::tick_taken(&run.workflow, tick),
                _ => conflict::run_exists(run.id),
            }
        }
        Change::Offer(offer) => match conflict::offer(offer.task, state_of(offer.task).await?.as_ref()) {
            Some(why) => why,
            None if !remote(offer.task).await? => conflict::no_queue(offer.task),
            None => conflict::task_changed_meanwhile(offer.task),
        },
        Change::RequestCancel { task, token } => {
            conflict::lease(*task, *token, state_of(*task).await?.as_ref())
                .unwrap_or_else(|| conflict::task_changed_meanwhile(*task))
        }
        Change::PostResult(result) => {
            let row = tx.query_opt(&st.result_token, &[&Uuid(result.task.to_bytes())]).await?;
            let state = row.as_ref().map(|row| task_state(row, 0)).transpose()?.flatten();
            if let Some(why) = conflict::lease(result.task, result.token, state.as_ref()) {
                why
            } else {
                // Posted by a concurrent call under the same lease: the same
                // post, applied once.
                let stored = row.map(|row| row.try_get::<_, Option<Uuid>>(4)).transpose()?.flatten();
                if stored == Some(Uuid(result.token.to_bytes())) {
                    return Ok(Outcome::Applied);
                }
                if !remote(result.task).await? {
                    conflict::no_queue(result.task)
                } else {
                    conflict::task_changed_meanwhile(result.task)
                }
            }
        }
        Change::Run(change) => {
            let row = tx.query_opt(&st.run_state, &[&Uuid(change.run.to_bytes())]).await?;
            let state = row.map(|row| run_state(&row, 0)).transpose()?.flatten();
            let from = change.transition.from.ok_or_else(|| invalid("run change without a from-status"))?;
            conflict::run_change(change, from, state)
                .unwrap_or_else(|| conflict::run_changed_meanwhile(change.run))
        }
        Change::RequestRunCancel { run, .. } => {
            let row = tx.query_opt(&st.run_state, &[&Uuid(run.to_bytes())]).await?;
            let state = row.map(|row| run_state(&row, 0)).transpose()?.flatten();
            conflict::run_cancel(*run, state).unwrap_or_else(|| conflict::run_changed_meanwhile(*run))
        }
        Change::Task(change) => {
            let row = tx.query_opt(&st.task_state, &[&Uuid(change.task.to_bytes())]).await?;
            let state = row.map(|row| task_state(&row, 0)).transpose()?.flatten();
            let from = change.transition.from.ok_or_else(|| invalid("task change without a from-status"))?;
            conflict::task_change(change, from, state.as_ref())
                .unwrap_or_else(|| conflict::task_changed_meanwhile(change.task))
        }
        Change::Heartbeat(hb) => {
            let row = tx.query_opt(&st.task_state, &[&Uuid(hb.task.to_bytes())]).await?;
            let state = row.map(|row| task_state(&row, 0)).transpose()?.flatten();
            conflict::heartbeat(hb, state.as_ref())
                .unwrap_or_else(|| conflict::task_changed_meanwhile(hb.task))
        }
        Change::AdoptRun(_) | Change::Withdraw { .. } => {
            return Err(invalid("adoptions and withdrawals are never read again"));
        }
    }))
}

/// Four columns from `first`: status, attempt, last_at, lease_token; a NULL
/// status means there was no such task.
fn task_state(row: &Row, first: usize) -> Result<Option<TaskState>, Error> {
    let Some(code) = row.try_get::<_, Option<i16>>(first)? else {
        return Ok(None);
    };
    Ok(Some(TaskState {
        status: code_u8(code)?,
        attempt: row.try_get::<_, i32>(first + 1)?.try_into().map_err(|_| corrupt("a negative attempt"))?,
        last_at: row.try_get(first + 2)?,
        token: row.try_get::<_, Option<Uuid>>(first + 3)?.map(|u| LeaseToken::from_bytes(u.0)),
    }))
}

/// Two columns from `first`: status, last_at; a NULL status means no such run.
fn run_state(row: &Row, first: usize) -> Result<Option<RunState>, Error> {
    let Some(code) = row.try_get::<_, Option<i16>>(first)? else {
        return Ok(None);
    };
    Ok(Some(RunState { status: code_u8(code)?, last_at: row.try_get(first + 1)? }))
}

fn code_u8(code: i16) -> Result<u8, Error> {
    u8::try_from(code).map_err(|_| corrupt(&format!("status code {code}")))
}

fn status(code: u8) -> i16 {
    i16::from(code)
}

/// A count or position as PostgreSQL's `integer`.
fn int(n: u32) -> Result<i32, Error> {
    i32::try_from(n).map_err(|_| invalid(&format!("{n} does not fit a 32-bit integer column")))
}

fn invalid(why: &str) -> Error {
    Error::Store(StoreError::InvalidChange(why.to_owned()))
}

fn corrupt(what: &str) -> Error {
    Error::Store(StoreError::Corrupt(format!("unexpected {what} in the database")))
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

/// A map as JSON, or NULL when empty (most attempts have no outputs).
fn json_map(
    map: &std::collections::BTreeMap<String, String>,
) -> Option<Json<&std::collections::BTreeMap<String, String>>> {
    (!map.is_empty()).then_some(Json(map))
}

/// How an attempt ended: one that is retried (`RUNNING -> PENDING`) failed.
fn attempt_outcome(to: TaskStatus) -> TaskStatus {
    if to == TaskStatus::Pending { TaskStatus::Failed } else { to }
}

#[cfg(test)]
mod tests {
    use cairn_core::TaskStatus::*;

    use super::*;
    use crate::conformance::{new_run, plain, run_change, start, t};

    /// The steps as (kind, positions), to compare whole.
    fn shape(changes: &[Change]) -> Vec<(&'static str, Vec<usize>)> {
        let at = |group: &[(usize, &TaskChange)]| group.iter().map(|(i, _)| *i).collect();
        plan(changes)
            .iter()
            .map(|step| match step {
                Step::One(i, _) => ("one", vec![*i]),
                Step::Plain(g) => ("plain", at(g)),
                Step::Start(g) => ("start", at(g)),
                Step::End(g) => ("end", at(g)),
                Step::Beats(g) => ("beats", g.iter().map(|(i, _)| *i).collect()),
                Step::Offers(g) => ("offers", g.iter().map(|(i, _)| *i).collect()),
                Step::Withdraws(g) => ("withdraws", g.iter().map(|(i, _)| *i).collect()),
                Step::Cancels(g) => ("cancels", g.iter().map(|(i, _, _)| *i).collect()),
                Step::Posts(g) => ("posts", g.iter().map(|(i, _)| *i).collect()),
            })
            .collect()
    }

    #[test]
    fn changes_on_distinct_tasks_share_a_statement_per_kind() {
        let run = new_run("plan", 4, t(0));
        let ids: Vec<TaskId> = run.tasks.iter().map(|t| t.id).collect();
        let changes = vec![
            plain(ids[0], 0, Submitted, Pending, t(1)),
            start(ids[1], 1, t(1)).0,
            plain(ids[2], 0, Submitted, Pending, t(1)),
            start(ids[3], 1, t(1)).0,
        ];
        assert_eq!(shape(&changes), vec![("plain", vec![0, 2]), ("start", vec![1, 3])]);
    }

    #[test]
    fn a_second_change_of_a_task_waits_for_the_first() {
        let run = new_run("plan", 2, t(0));
        let (a, b) = (run.tasks[0].id, run.tasks[1].id);
        let changes = vec![
            plain(a, 0, Submitted, Pending, t(1)),
            plain(b, 0, Submitted, Pending, t(1)),
            start(a, 1, t(2)).0,
            start(b, 1, t(2)).0,
        ];
        assert_eq!(shape(&changes), vec![("plain", vec![0, 1]), ("start", vec![2, 3])]);
        let changes = vec![
            plain(a, 0, Submitted, Pending, t(1)),
            start(a, 1, t(2)).0,
            plain(b, 0, Submitted, Pending, t(1)),
        ];
        // B's promotion commutes with A's start: it joins A's second group.
        assert_eq!(shape(&changes), vec![("plain", vec![0]), ("plain", vec![2]), ("start", vec![1])]);
    }

    #[test]
    fn other_changes_stand_alone_in_their_place() {
        let run = new_run("plan", 2, t(0));
        let (a, b) = (run.tasks[0].id, run.tasks[1].id);
        let id = run.id;
        let changes = vec![
            Change::CreateRun(run),
            plain(a, 0, Submitted, Pending, t(1)),
            run_change(id, cairn_core::RunStatus::Queued, cairn_core::RunStatus::Running, t(1), None),
            plain(b, 0, Submitted, Pending, t(1)),
            Change::RequestRunCancel { run: id, actor: Actor::User("alice".into()) },
            plain(a, 0, Pending, Canceled, t(2)),
        ];
        assert_eq!(
            shape(&changes),
            vec![
                ("one", vec![0]),
                ("plain", vec![1]),
                ("one", vec![2]),
                ("plain", vec![3]),
                ("one", vec![4]),
                ("plain", vec![5])
            ]
        );
    }

    #[test]
    fn dispatch_changes_group_by_task_like_the_others() {
        use crate::conformance::offer;
        let run = new_run("plan", 3, t(0));
        let (a, b, c) = (run.tasks[0].id, run.tasks[1].id, run.tasks[2].id);
        let token = LeaseToken::random();
        let result = PostedResult { task: c, run: run.id, token, at: t(1), body: "{}".into() };
        let changes = vec![
            plain(a, 0, Submitted, Pending, t(1)),
            offer(b, run.id, "q", t(1)),
            Change::PostResult(result),
            // A's offer follows A's promotion: the next group.
            offer(a, run.id, "q", t(1)),
            Change::RequestCancel { task: c, token },
            Change::Withdraw { task: b },
        ];
        assert_eq!(
            shape(&changes),
            vec![
                ("plain", vec![0]),
                ("offers", vec![1]),
                ("posts", vec![2]),
                ("offers", vec![3]),
                ("withdraws", vec![5]),
                ("cancels", vec![4]),
            ]
        );
    }

    #[test]
    fn groups_stop_at_their_size() {
        let run = new_run("plan", (GROUP + 5) as u32, t(0));
        let changes: Vec<_> =
            run.tasks.iter().map(|task| plain(task.id, 0, Submitted, Pending, t(1))).collect();
        let shape = shape(&changes);
        assert_eq!(shape.len(), 2);
        assert_eq!(shape[0].1, (0..GROUP).collect::<Vec<_>>());
        assert_eq!(shape[1].1, (GROUP..GROUP + 5).collect::<Vec<_>>());
    }
}
