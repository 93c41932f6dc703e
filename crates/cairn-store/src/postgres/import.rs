//! [`Store::import_runs`](crate::Store::import_runs) on PostgreSQL: the rows
//! of finished runs (checked by `crate::import`) in one transaction, each
//! table's rows as parallel arrays through `UNNEST`, a few thousand rows a
//! statement, pipelined.
//!
//! The run and task numbers are drawn from their sequences first, one round
//! trip each, so every row of a log, an attempt or a label names its run or
//! task without reading back what was inserted. The runs go first and alone:
//! a run whose id (or schedule tick) is taken is found there and refuses the
//! import before anything else is sent. The rest go out together. The
//! imported runs and tasks count as created at their final status
//! (`crate::counts`), added by the upsert every batch ends with
//! (`counts_upsert.sql`), just before the commit.

use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Statement, Transaction};

use super::{Error, Uuid, describe};
use crate::counts::{self, Deltas, Kind};
use crate::error::StoreError;
use crate::import::{self, FinishedRun, Phases};

const RUN_NUMBERS: &str = include_str!("sql/import_run_numbers.sql");
const TASK_NUMBERS: &str = include_str!("sql/import_task_numbers.sql");
const RUNS: &str = include_str!("sql/import_runs.sql");
const RUN_SPECS: &str = include_str!("sql/import_run_specs.sql");
const RUN_LABELS: &str = include_str!("sql/import_run_labels.sql");
const RUN_TRANSITIONS: &str = include_str!("sql/import_run_transitions.sql");
const TASKS: &str = include_str!("sql/import_tasks.sql");
const TASK_TRANSITIONS: &str = include_str!("sql/import_task_transitions.sql");
const ATTEMPTS: &str = include_str!("sql/import_attempts.sql");
const PROGRESS_SAMPLES: &str = include_str!("sql/import_progress_samples.sql");
const RUN_EXISTS: &str = include_str!("sql/run_exists.sql");
const COUNTS_UPSERT: &str = include_str!("sql/counts_upsert.sql");

/// Every statement of an import, prepared when the store connects.
pub(super) const STATEMENTS: &[&str] = &[
    RUN_NUMBERS,
    TASK_NUMBERS,
    RUNS,
    RUN_SPECS,
    RUN_LABELS,
    RUN_TRANSITIONS,
    TASKS,
    TASK_TRANSITIONS,
    ATTEMPTS,
    PROGRESS_SAMPLES,
];

/// Rows in one statement at most: big enough that a round trip carries a
/// lot, small enough that no statement holds a huge array in memory.
const CHUNK: usize = 10_000;

impl super::PostgresStore {
    /// Refreshes PostgreSQL's statistics of the history tables (`ANALYZE`),
    /// as autovacuum does in time. Until then, after a large import into a
    /// young database, the planner estimates from the counts of an empty
    /// one and may walk a page's matches by sorting them all instead of
    /// along the index that gives their order. Takes a second or so per
    /// million tasks and blocks no writer.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(Error::from)?;
        client
            .batch_execute(
                "ANALYZE runs, run_labels, tasks, task_transitions, attempts, run_counts_minute, \
                 run_counts_hour, run_counts_day, task_counts_minute, task_counts_hour, task_counts_day",
            )
            .await
            .map_err(|e| StoreError::from(Error::from(e)))
    }
}

/// Writes `runs` (already checked) in one transaction.
pub(super) async fn import(pool: &Pool, runs: &[FinishedRun]) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(Error::from)?;
    let st = Statements::prepare(&client).await?;
    let connection: &mut tokio_postgres::Client = &mut client;
    let tx = connection.transaction().await.map_err(Error::from)?;
    let deltas = write(&tx, &st, runs).await?;
    commit_with_counts(tx, &st, deltas).await
}

struct Statements {
    run_numbers: Statement,
    task_numbers: Statement,
    runs: Statement,
    run_specs: Statement,
    run_labels: Statement,
    run_transitions: Statement,
    tasks: Statement,
    task_transitions: Statement,
    attempts: Statement,
    progress_samples: Statement,
    run_exists: Statement,
    counts_upsert: Statement,
}

impl Statements {
    async fn prepare(client: &deadpool_postgres::Object) -> Result<Statements, Error> {
        Ok(Statements {
            run_numbers: client.prepare_cached(RUN_NUMBERS).await?,
            task_numbers: client.prepare_cached(TASK_NUMBERS).await?,
            runs: client.prepare_cached(RUNS).await?,
            run_specs: client.prepare_cached(RUN_SPECS).await?,
            run_labels: client.prepare_cached(RUN_LABELS).await?,
            run_transitions: client.prepare_cached(RUN_TRANSITIONS).await?,
            tasks: client.prepare_cached(TASKS).await?,
            task_transitions: client.prepare_cached(TASK_TRANSITIONS).await?,
            attempts: client.prepare_cached(ATTEMPTS).await?,
            progress_samples: client.prepare_cached(PROGRESS_SAMPLES).await?,
            run_exists: client.prepare_cached(RUN_EXISTS).await?,
            counts_upsert: client.prepare_cached(COUNTS_UPSERT).await?,
        })
    }
}

/// `n` numbers of a sequence, by one of the `*_numbers` statements.
async fn numbers(tx: &Transaction<'_>, statement: &Statement, n: usize) -> Result<Vec<i64>, Error> {
    let n = i64::try_from(n).map_err(|_| Error::Store(StoreError::InvalidQuery("too many rows".into())))?;
    let rows = tx.query(statement, &[&n]).await?;
    let mut all = rows.iter().map(|row| row.try_get::<_, i64>(0)).collect::<Result<Vec<_>, _>>()?;
    all.sort_unstable();
    Ok(all)
}

fn micros(t: Option<cairn_core::Timestamp>) -> Option<i64> {
    t.map(cairn_core::Timestamp::as_micros)
}

fn code(status: u8) -> i16 {
    i16::from(status)
}

fn int(n: u32) -> Result<i32, Error> {
    i32::try_from(n).map_err(|_| {
        Error::Store(StoreError::InvalidQuery(format!("{n} does not fit a 32-bit integer column")))
    })
}

fn json<T: serde::Serialize>(value: &T, run: cairn_core::RunId, field: &str) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Store(import::refused(run, field, e.to_string())))
}

/// The rows of one table as parallel columns, one element per row.
trait Rows: Default {
    fn len(&self) -> usize;
    fn params(&self) -> Vec<&(dyn ToSql + Sync)>;
}

/// A table's rows, cut into statements of at most [`CHUNK`] rows.
struct Chunks<R> {
    all: Vec<R>,
}

impl<R> Default for Chunks<R> {
    fn default() -> Self {
        Chunks { all: Vec::new() }
    }
}

impl<R: Rows> Chunks<R> {
    /// The chunk the next row goes to.
    fn next(&mut self) -> &mut R {
        if self.all.last().is_none_or(|r| r.len() >= CHUNK) {
            self.all.push(R::default());
        }
        let last = self.all.len() - 1;
        &mut self.all[last]
    }
}

/// Writes every row and returns the count changes; nothing is committed.
async fn write(tx: &Transaction<'_>, st: &Statements, runs: &[FinishedRun]) -> Result<Deltas, StoreError> {
    let run_nos = numbers(tx, &st.run_numbers, runs.len()).await?;
    let n_tasks: usize = runs.iter().map(|r| r.detail.tasks.len()).sum();
    let task_nos = numbers(tx, &st.task_numbers, n_tasks).await?;
    let mut deltas = Deltas::default();

    // The runs, first and alone.
    let n = runs.len();
    let mut r_id = Vec::with_capacity(n);
    let mut r_workflow = Vec::with_capacity(n);
    let mut r_status = Vec::with_capacity(n);
    let mut r_trigger = Vec::with_capacity(n);
    let mut r_params = Vec::with_capacity(n);
    let mut r_owner = Vec::with_capacity(n);
    let mut r_spec_path = Vec::with_capacity(n);
    let mut r_submitted = Vec::with_capacity(n);
    let mut r_started = Vec::with_capacity(n);
    let mut r_finished = Vec::with_capacity(n);
    let mut r_error = Vec::with_capacity(n);
    let mut r_cancel = Vec::with_capacity(n);
    let mut r_tick = Vec::with_capacity(n);
    for run in runs {
        let r = &run.detail.run;
        r_id.push(Uuid(r.id.to_bytes()));
        r_workflow.push(r.workflow.as_str());
        r_status.push(code(r.status.code()));
        r_trigger.push(r.trigger.as_str());
        r_params.push(if r.params.is_empty() { None } else { Some(json(&r.params, r.id, "run.params")?) });
        r_owner.push(r.owner.as_deref());
        r_spec_path.push(r.spec_path.as_deref());
        r_submitted.push(r.submitted_at.as_micros());
        r_started.push(micros(r.started_at));
        r_finished.push(micros(r.finished_at));
        r_error.push(r.error.as_deref());
        r_cancel.push(r.cancel_requested_by.as_ref().map(ToString::to_string));
        r_tick.push(micros(r.schedule_tick));
    }
    let inserted = tx
        .query(
            &st.runs,
            &[
                &run_nos,
                &r_id,
                &r_workflow,
                &r_status,
                &r_trigger,
                &r_params,
                &r_owner,
                &r_spec_path,
                &r_submitted,
                &r_started,
                &r_finished,
                &r_error,
                &r_cancel,
                &r_tick,
            ],
        )
        .await
        .map_err(Error::from)?;
    if inserted.len() != n {
        let stored = inserted
            .iter()
            .map(|row| row.try_get::<_, i64>(0))
            .collect::<Result<std::collections::HashSet<_>, _>>()
            .map_err(Error::from)?;
        let (run, _) = runs
            .iter()
            .zip(&run_nos)
            .find(|(_, run_no)| !stored.contains(run_no))
            .ok_or_else(|| StoreError::Corrupt("more runs inserted than imported".into()))?;
        let r = &run.detail.run;
        let taken: bool =
            tx.query_one(&st.run_exists, &[&Uuid(r.id.to_bytes())]).await.map_err(Error::from)?.get(0);
        return Err(match r.schedule_tick {
            Some(tick) if !taken => import::refused(
                r.id,
                "run.schedule_tick",
                format!("workflow {:?} already has a run for the tick at {tick}", r.workflow),
            ),
            _ => import::refused(r.id, "id", "a run with this id is already stored"),
        });
    }

    // Everything else, gathered per table in chunks of at most CHUNK rows.
    let mut specs: Chunks<SpecRows> = Chunks::default();
    let mut labels: Chunks<LabelRows> = Chunks::default();
    let mut run_log: Chunks<RunLog> = Chunks::default();
    let mut tasks: Chunks<TaskRows> = Chunks::default();
    let mut task_log: Chunks<TaskLog> = Chunks::default();
    let mut attempts: Chunks<AttemptRows> = Chunks::default();
    let mut samples: Chunks<SampleRows> = Chunks::default();
    let mut next_task = task_nos.iter();
    for (run, &run_no) in runs.iter().zip(&run_nos) {
        let detail = &run.detail;
        let r = &detail.run;
        deltas.created(Kind::Runs, r.submitted_at.as_micros(), run_no, r.status.code());
        if let Some(source) = &run.spec_source {
            let s = specs.next();
            s.run_no.push(run_no);
            s.source.push(source.as_str());
        }
        for term in crate::search::label_terms(&run.labels) {
            let l = labels.next();
            l.term.push(term);
            l.run_id.push(Uuid(r.id.to_bytes()));
            l.run_no.push(run_no);
        }
        for x in &detail.run_transitions {
            let rt = run_log.next();
            rt.run_no.push(run_no);
            rt.from.push(x.from.map(|s| code(s.code())));
            rt.to.push(code(x.to.code()));
            rt.at.push(x.at.as_micros());
            rt.reason.push(x.reason.as_str());
            rt.actor.push(x.actor.to_string());
        }
        for (i, task) in detail.tasks.iter().enumerate() {
            let task_no = *next_task
                .next()
                .ok_or_else(|| StoreError::Corrupt("fewer task numbers than tasks".into()))?;
            deltas.created(Kind::Tasks, task.submitted_at.as_micros(), run_no, task.status.code());
            let details =
                task.details.as_ref().map(|d| json(d, r.id, &format!("tasks[{i}].details"))).transpose()?;
            let t = tasks.next();
            t.task_no.push(task_no);
            t.run_no.push(run_no);
            t.id.push(Uuid(task.id.to_bytes()));
            t.status.push(code(task.status.code()));
            t.attempt.push(int(task.attempt)?);
            t.finished.push(micros(task.finished_at));
            t.submitted.push(task.submitted_at.as_micros());
            t.started.push(micros(task.started_at));
            t.not_before.push(micros(task.not_before));
            t.idx.push(int(task.index)?);
            t.max_attempts.push(int(task.max_attempts)?);
            t.percent.push(task.progress.as_ref().map(|p| p.percent));
            t.progress_at.push(micros(task.progress_at));
            t.name.push(task.name.as_str());
            t.queue.push(task.queue.as_deref());
            t.message.push(task.progress.as_ref().and_then(|p| p.message.as_deref()));
            t.details.push(details);
            t.workflow.push(r.workflow.as_str());
            let phases = Phases::of(import::log(detail, task));
            t.blocked_us.push(phases.blocked_us);
            t.pending_us.push(phases.pending_us);
            t.running_us.push(phases.running_us);
            for x in import::log(detail, task) {
                let tt = task_log.next();
                tt.task_no.push(task_no);
                tt.attempt.push(int(x.attempt)?);
                tt.from.push(x.from.map(|s| code(s.code())));
                tt.to.push(code(x.to.code()));
                tt.at.push(x.at.as_micros());
                tt.reason.push(x.reason.as_str());
                tt.actor.push(x.actor.to_string());
            }
            for x in import::attempts(detail, task) {
                let outputs = import::attempt_outputs(task, x)
                    .map(|o| json(o, r.id, &format!("tasks[{i}].outputs")))
                    .transpose()?;
                let a = attempts.next();
                a.task_no.push(task_no);
                a.attempt.push(int(x.attempt)?);
                a.worker.push(x.worker.as_str());
                a.started.push(x.started_at.as_micros());
                a.ended.push(micros(x.ended_at));
                a.outcome.push(x.outcome.map(|s| code(s.code())));
                a.exit_code.push(x.exit_code);
                a.error.push(x.error.as_deref());
                a.outputs.push(outputs);
            }
            for x in import::samples(run, task) {
                let p = samples.next();
                p.task_no.push(task_no);
                p.attempt.push(int(x.attempt)?);
                p.at.push(x.at.as_micros());
                p.percent.push(x.percent);
                p.message.push(x.message.as_deref());
            }
        }
    }

    // Every statement with its parameters, then all sent together and
    // answered in order; PostgreSQL runs them as sent.
    let mut statements: Vec<(&Statement, Vec<&(dyn ToSql + Sync)>)> = Vec::new();
    statements.extend(specs.all.iter().map(|c| (&st.run_specs, c.params())));
    statements.extend(labels.all.iter().map(|c| (&st.run_labels, c.params())));
    statements.extend(run_log.all.iter().map(|c| (&st.run_transitions, c.params())));
    let first_tasks = statements.len();
    statements.extend(tasks.all.iter().map(|c| (&st.tasks, c.params())));
    let tasks_end = statements.len();
    statements.extend(task_log.all.iter().map(|c| (&st.task_transitions, c.params())));
    statements.extend(attempts.all.iter().map(|c| (&st.attempts, c.params())));
    statements.extend(samples.all.iter().map(|c| (&st.progress_samples, c.params())));
    // Each statement's own answer, so a refused task id is told apart
    // from the errors the statements after it get in an aborted transaction.
    let answers = futures_util::future::join_all(
        statements.iter().map(|(statement, params)| tx.execute(*statement, params)),
    )
    .await;
    for (k, answer) in answers.into_iter().enumerate() {
        if let Err(e) = answer {
            if (first_tasks..tasks_end).contains(&k)
                && let Some(refused) = task_taken(&e, runs)
            {
                return Err(refused);
            }
            return Err(Error::from(e).into());
        }
    }
    Ok(deltas)
}

/// Adds the import's counts (`counts_upsert.sql`, as every batch does) and
/// commits. A commit whose answer was lost may or may not have applied.
async fn commit_with_counts(tx: Transaction<'_>, st: &Statements, deltas: Deltas) -> Result<(), StoreError> {
    let all = deltas.into_nonzero();
    let kinds: Vec<i16> = all.iter().map(|d| d.kind.code()).collect();
    let minutes: Vec<i64> = all.iter().map(|d| d.minute).collect();
    let hours: Vec<i64> = all.iter().map(|d| counts::hour_of(d.minute)).collect();
    let runs: Vec<i64> = all.iter().map(|d| d.run_no).collect();
    let statuses: Vec<i16> = all.iter().map(|d| code(d.status)).collect();
    let ns: Vec<i64> = all.iter().map(|d| d.n).collect();
    // As for every batch: the upsert's generic plan is the fast one.
    tx.batch_execute("SET LOCAL plan_cache_mode = force_generic_plan").await.map_err(Error::from)?;
    tx.query_one(&st.counts_upsert, &[&kinds, &minutes, &hours, &runs, &statuses, &ns])
        .await
        .map_err(Error::from)?;
    tx.commit().await.map_err(|e| match e.code() {
        Some(_) => StoreError::from(Error::from(e)),
        None => StoreError::CommitUnknown(describe(&e)),
    })
}

/// The refusal of an import whose task id is already stored, from the
/// unique violation of `tasks_id` (its detail names the id).
fn task_taken(e: &tokio_postgres::Error, runs: &[FinishedRun]) -> Option<StoreError> {
    let db = e.as_db_error()?;
    if *db.code() != SqlState::UNIQUE_VIOLATION || db.constraint() != Some("tasks_id") {
        return None;
    }
    // "Key (id)=(0190c1a2-…) already exists."
    let detail = db.detail()?;
    let hex: String = detail.split_once("=(")?.1.chars().take(36).filter(|c| *c != '-').collect();
    let bytes = u128::from_str_radix(&hex, 16).ok()?.to_be_bytes();
    let id = cairn_core::TaskId::from_bytes(bytes);
    runs.iter().find_map(|run| {
        let i = run.detail.tasks.iter().position(|t| t.id == id)?;
        Some(import::refused(
            run.detail.run.id,
            format!("tasks[{i}].id"),
            format!("a task with the id {id} is already stored"),
        ))
    })
}

#[derive(Default)]
struct SpecRows<'a> {
    run_no: Vec<i64>,
    source: Vec<&'a str>,
}

impl Rows for SpecRows<'_> {
    fn len(&self) -> usize {
        self.run_no.len()
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![&self.run_no, &self.source]
    }
}

#[derive(Default)]
struct LabelRows {
    term: Vec<String>,
    run_id: Vec<Uuid>,
    run_no: Vec<i64>,
}

impl Rows for LabelRows {
    fn len(&self) -> usize {
        self.term.len()
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![&self.term, &self.run_id, &self.run_no]
    }
}

#[derive(Default)]
struct RunLog<'a> {
    run_no: Vec<i64>,
    from: Vec<Option<i16>>,
    to: Vec<i16>,
    at: Vec<i64>,
    reason: Vec<&'a str>,
    actor: Vec<String>,
}

impl Rows for RunLog<'_> {
    fn len(&self) -> usize {
        self.run_no.len()
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![&self.run_no, &self.from, &self.to, &self.at, &self.reason, &self.actor]
    }
}

#[derive(Default)]
struct TaskRows<'a> {
    task_no: Vec<i64>,
    run_no: Vec<i64>,
    id: Vec<Uuid>,
    status: Vec<i16>,
    attempt: Vec<i32>,
    finished: Vec<Option<i64>>,
    submitted: Vec<i64>,
    started: Vec<Option<i64>>,
    not_before: Vec<Option<i64>>,
    idx: Vec<i32>,
    max_attempts: Vec<i32>,
    percent: Vec<Option<f32>>,
    progress_at: Vec<Option<i64>>,
    name: Vec<&'a str>,
    queue: Vec<Option<&'a str>>,
    message: Vec<Option<&'a str>>,
    details: Vec<Option<String>>,
    workflow: Vec<&'a str>,
    blocked_us: Vec<i64>,
    pending_us: Vec<i64>,
    running_us: Vec<i64>,
}

impl Rows for TaskRows<'_> {
    fn len(&self) -> usize {
        self.task_no.len()
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.task_no,
            &self.run_no,
            &self.id,
            &self.status,
            &self.attempt,
            &self.finished,
            &self.submitted,
            &self.started,
            &self.not_before,
            &self.idx,
            &self.max_attempts,
            &self.percent,
            &self.progress_at,
            &self.name,
            &self.queue,
            &self.message,
            &self.details,
            &self.workflow,
            &self.blocked_us,
            &self.pending_us,
            &self.running_us,
        ]
    }
}

#[derive(Default)]
struct TaskLog<'a> {
    task_no: Vec<i64>,
    attempt: Vec<i32>,
    from: Vec<Option<i16>>,
    to: Vec<i16>,
    at: Vec<i64>,
    reason: Vec<&'a str>,
    actor: Vec<String>,
}

impl Rows for TaskLog<'_> {
    fn len(&self) -> usize {
        self.task_no.len()
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![&self.task_no, &self.attempt, &self.from, &self.to, &self.at, &self.reason, &self.actor]
    }
}

#[derive(Default)]
struct AttemptRows<'a> {
    task_no: Vec<i64>,
    attempt: Vec<i32>,
    worker: Vec<&'a str>,
    started: Vec<i64>,
    ended: Vec<Option<i64>>,
    outcome: Vec<Option<i16>>,
    exit_code: Vec<Option<i32>>,
    error: Vec<Option<&'a str>>,
    outputs: Vec<Option<String>>,
}

impl Rows for AttemptRows<'_> {
    fn len(&self) -> usize {
        self.task_no.len()
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.task_no,
            &self.attempt,
            &self.worker,
            &self.started,
            &self.ended,
            &self.outcome,
            &self.exit_code,
            &self.error,
            &self.outputs,
        ]
    }
}

#[derive(Default)]
struct SampleRows<'a> {
    task_no: Vec<i64>,
    attempt: Vec<i32>,
    at: Vec<i64>,
    percent: Vec<f32>,
    message: Vec<Option<&'a str>>,
}

impl Rows for SampleRows<'_> {
    fn len(&self) -> usize {
        self.task_no.len()
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![&self.task_no, &self.attempt, &self.at, &self.percent, &self.message]
    }
}
