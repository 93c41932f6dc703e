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
//! status, an adoption) is a statement of its own, in its place. A new run
//! with all its tasks is one statement (`create_run.sql`). The statements
//! are pipelined: all are sent before the answers are read, and PostgreSQL
//! runs them in the order sent, so a change sees the ones before it.
//!
//! The first error fails the batch: the transaction rolls back and nothing
//! of it stays. Concurrent batches run in transactions of their own; a
//! deadlock or serialization failure between them rolls one back whole, and
//! it is tried again.

use std::borrow::Cow;
use std::collections::HashSet;
use std::time::Duration;

use cairn_core::record::Actor;
use cairn_core::{LeaseToken, RunStatus, TaskId, TaskStatus};
use deadpool_postgres::{Object, Pool};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;
use tokio_postgres::{Row, Statement, Transaction};

use super::{Error, Uuid, describe};
use crate::change::{AdoptRun, Change, Heartbeat, NewRun, Outcome, RunChange, TaskChange, TaskUpdate};
use crate::conflict::{self, RunState, TaskState};
use crate::error::StoreError;

const CREATE_RUN: &str = include_str!("sql/create_run.sql");
const TASKS_PLAIN: &str = include_str!("sql/tasks_plain.sql");
const TASKS_START: &str = include_str!("sql/tasks_start.sql");
const TASKS_END: &str = include_str!("sql/tasks_end.sql");
const HEARTBEATS: &str = include_str!("sql/heartbeats.sql");
const RUN_CHANGE: &str = include_str!("sql/run_change.sql");
const ADOPT_RUN: &str = include_str!("sql/adopt_run.sql");
const TASK_STATE: &str = include_str!("sql/task_state.sql");
const RUN_STATE: &str = include_str!("sql/run_state.sql");

/// Every statement of the write side, prepared when the store connects.
pub(super) const STATEMENTS: &[&str] = &[
    CREATE_RUN,
    TASKS_PLAIN,
    TASKS_START,
    TASKS_END,
    HEARTBEATS,
    RUN_CHANGE,
    ADOPT_RUN,
    TASK_STATE,
    RUN_STATE,
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

pub(super) async fn apply(pool: Pool, changes: Vec<Change>) -> Result<Vec<Outcome>, StoreError> {
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

/// Whether the batch certainly rolled back and may simply run again.
fn retryable(e: &Error) -> bool {
    match e {
        Error::Pg(e) => match e.code() {
            Some(code) => {
                *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
            }
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
    let tx = client.transaction().await?;
    let mut said: Vec<Option<Said>> = changes.iter().map(|_| None).collect();
    for window in steps.chunks(PIPELINE) {
        // FuturesOrdered polls each new future once, in order, before any
        // answer arrives: the statements go out in the batch's order.
        let mut inflight: FuturesOrdered<_> = window.iter().map(|step| execute(&tx, &st, step)).collect();
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
            Some(Said::Recheck) => Outcome::Conflict(recheck(&tx, &st, change).await?),
            None => return Err(corrupt("change without an answer from its statement")),
        });
    }
    tx.commit().await.map_err(|e| match e.code() {
        // The server answered the commit with an error: it rolled back.
        Some(_) => Error::Pg(e),
        None => Error::Store(StoreError::CommitUnknown(describe(&e))),
    })?;
    Ok(outcomes)
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
    task_state: Statement,
    run_state: Statement,
}

impl Statements {
    async fn prepare(client: &Object) -> Result<Statements, Error> {
        Ok(Statements {
            create_run: client.prepare_cached(CREATE_RUN).await?,
            tasks_plain: client.prepare_cached(TASKS_PLAIN).await?,
            tasks_start: client.prepare_cached(TASKS_START).await?,
            tasks_end: client.prepare_cached(TASKS_END).await?,
            heartbeats: client.prepare_cached(HEARTBEATS).await?,
            run_change: client.prepare_cached(RUN_CHANGE).await?,
            adopt_run: client.prepare_cached(ADOPT_RUN).await?,
            task_state: client.prepare_cached(TASK_STATE).await?,
            run_state: client.prepare_cached(RUN_STATE).await?,
        })
    }
}

/// One statement of a batch and the changes it carries, each with its
/// position in the batch.
enum Step<'a> {
    /// A new run, a run's status change or an adoption.
    One(usize, &'a Change),
    Plain(Vec<(usize, &'a TaskChange)>),
    Start(Vec<(usize, &'a TaskChange)>),
    End(Vec<(usize, &'a TaskChange)>),
    Beats(Vec<(usize, &'a Heartbeat)>),
}

/// Task changes and heartbeats on distinct tasks, gathered by kind.
#[derive(Default)]
struct Group<'a> {
    tasks: HashSet<TaskId>,
    plain: Vec<(usize, &'a TaskChange)>,
    start: Vec<(usize, &'a TaskChange)>,
    end: Vec<(usize, &'a TaskChange)>,
    beats: Vec<(usize, &'a Heartbeat)>,
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
            Change::CreateRun(_) | Change::Run(_) | Change::AdoptRun(_) => {
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
            Change::CreateRun(_) | Change::Run(_) | Change::AdoptRun(_) => unreachable!("handled above"),
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
) -> Result<Vec<(usize, Said)>, Error> {
    match step {
        Step::One(i, Change::CreateRun(run)) => Ok(vec![(*i, create_run(tx, st, run).await?)]),
        Step::One(i, Change::Run(change)) => Ok(vec![(*i, run_change(tx, st, change).await?)]),
        Step::One(i, Change::AdoptRun(adopt)) => Ok(vec![(*i, adopt_run(tx, st, adopt).await?)]),
        Step::One(_, Change::Task(_) | Change::Heartbeat(_)) => Err(corrupt("a task change planned alone")),
        Step::Plain(group) => tasks_plain(tx, st, group).await,
        Step::Start(group) => tasks_start(tx, st, group).await,
        Step::End(group) => tasks_end(tx, st, group).await,
        Step::Beats(group) => heartbeats(tx, st, group).await,
    }
}

async fn create_run(tx: &Transaction<'_>, st: &Statements, run: &NewRun) -> Result<Said, Error> {
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
            ],
        )
        .await?;
    Ok(Said::Done(match row {
        Some(_) => Outcome::Applied,
        None => Outcome::Conflict(conflict::run_exists(run.id)),
    }))
}

async fn run_change(tx: &Transaction<'_>, st: &Statements, change: &RunChange) -> Result<Said, Error> {
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
    if row.try_get::<_, Option<i64>>(0)?.is_some() {
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
    task_outcomes(group, &rows, 2)
}

async fn tasks_start(
    tx: &Transaction<'_>,
    st: &Statements,
    group: &[(usize, &TaskChange)],
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
    task_outcomes(group, &rows, 2)
}

async fn tasks_end(
    tx: &Transaction<'_>,
    st: &Statements,
    group: &[(usize, &TaskChange)],
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
    task_outcomes(group, &rows, 4)
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
async fn recheck(tx: &Transaction<'_>, st: &Statements, change: &Change) -> Result<String, Error> {
    Ok(match change {
        Change::Run(change) => {
            let row = tx.query_opt(&st.run_state, &[&Uuid(change.run.to_bytes())]).await?;
            let state = row.map(|row| run_state(&row, 0)).transpose()?.flatten();
            let from = change.transition.from.ok_or_else(|| invalid("run change without a from-status"))?;
            conflict::run_change(change, from, state)
                .unwrap_or_else(|| conflict::run_changed_meanwhile(change))
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
        Change::CreateRun(_) | Change::AdoptRun(_) => {
            return Err(invalid("only status changes and heartbeats are read again"));
        }
    })
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
        ];
        assert_eq!(
            shape(&changes),
            vec![("one", vec![0]), ("plain", vec![1]), ("one", vec![2]), ("plain", vec![3])]
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
