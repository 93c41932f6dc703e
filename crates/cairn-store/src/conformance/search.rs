//! The conformance checks of the history searches ([`Store::search_runs`],
//! [`Store::search_tasks`]): every filter alone and together, both sorts
//! and both orders, pages that cover every match exactly once (ties on the
//! finish time included), cursors bound to their search, page-size bounds,
//! and a randomized comparison with a brute-force filter of a history whose
//! every fact the check wrote itself.
//!
//! [`build_history`] and [`plan_cases`] also serve the backends' plan tests
//! (`tests/sqlite.rs`, `tests/postgres.rs`), which check that every search
//! shape walks an index.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_core::lease::Lease;
use cairn_core::record::{Actor, Transition};
use cairn_core::{LeaseToken, RunId, RunStatus, TaskId, TaskStatus, Timestamp};

use super::{Rng, new_run, plain, run_change, t};
use crate::{
    AttemptResult, Change, Cursor, NewRun, Order, Outcome, RunFilter, RunSearch, RunSort, Store, StoreError,
    TaskChange, TaskFilter, TaskSearch, TaskUpdate, TimeRange,
};

// ---------------------------------------------------------------------------
// A history whose facts the check knows

/// What the check wrote about one run.
#[derive(Clone, Debug)]
pub struct RunFacts {
    pub id: RunId,
    pub workflow: String,
    pub trigger: String,
    pub labels: Vec<String>,
    pub status: RunStatus,
    pub finished_at: Option<Timestamp>,
}

/// What the check wrote about one task.
#[derive(Clone, Debug)]
pub struct TaskFacts {
    pub id: TaskId,
    pub run: RunId,
    pub workflow: String,
    pub name: String,
    pub queue: Option<String>,
    pub status: TaskStatus,
    pub finished_at: Option<Timestamp>,
    /// The workers of its attempts, in order.
    pub workers: Vec<String>,
}

/// Runs and tasks written by [`build_history`].
#[derive(Clone, Debug, Default)]
pub struct History {
    pub runs: Vec<RunFacts>,
    pub tasks: Vec<TaskFacts>,
}

const WORKFLOWS: [&str; 4] = ["etl", "report", "backup", "train"];
const TRIGGERS: [&str; 4] = ["manual", "schedule", "api", "retry"];
const LABELS: [&str; 5] = ["team=data", "team=ops", "tier=1", "tier=2", "pii"];
const QUEUES: [&str; 2] = ["gpu", "cpu"];
const WORKERS: [&str; 3] = ["w1", "w2", "w3"];

/// `PENDING -> RUNNING` as `attempt`, by `worker`.
fn start_by(task: TaskId, attempt: u32, worker: &str, at: Timestamp) -> (Change, LeaseToken) {
    let token = LeaseToken::random();
    let lease = Lease { token, started_at: at, last_heartbeat_at: at, expires_at: at.saturating_add(LEASE) };
    let change = Change::Task(TaskChange {
        task,
        transition: Transition {
            attempt,
            from: Some(TaskStatus::Pending),
            to: TaskStatus::Running,
            at,
            reason: "leased".to_owned(),
            actor: Actor::Worker(worker.to_owned()),
        },
        update: TaskUpdate::Start { lease, worker: worker.to_owned() },
    });
    (change, token)
}

const LEASE: Duration = Duration::from_secs(30);

/// `RUNNING -> to` (PENDING: a retry), ending `attempt`.
fn end_as(task: TaskId, token: LeaseToken, attempt: u32, to: TaskStatus, at: Timestamp) -> Change {
    Change::Task(TaskChange {
        task,
        transition: Transition {
            attempt,
            from: Some(TaskStatus::Running),
            to,
            at,
            reason: "ended".to_owned(),
            actor: Actor::Scheduler,
        },
        update: TaskUpdate::EndAttempt {
            token,
            result: AttemptResult::default(),
            retry_at: (to == TaskStatus::Pending).then_some(at),
        },
    })
}

/// Writes `runs` runs (seeded by `seed`) over [`WORKFLOWS`], every run and
/// task status, [`TRIGGERS`], subsets of [`LABELS`], remote tasks on
/// [`QUEUES`] and attempts by [`WORKERS`] (a few retried on another
/// worker). Submissions share milliseconds and finish times are whole
/// seconds, so many rows tie on either.
pub async fn build_history<S: Store>(store: &S, runs: usize, seed: u64) -> History {
    use RunStatus as R;
    use TaskStatus as T;
    let mut rng = Rng(seed | 1);
    let mut history = History::default();
    let mut creates = Vec::new();
    let mut changes = Vec::new();
    let span = (runs as u64 * 2).max(10);
    for _ in 0..runs {
        let at_ms = rng.below(span) as i64 * 10;
        let at = t(at_ms);
        let workflow = rng.pick(&WORKFLOWS).to_owned();
        let mut run: NewRun = new_run(&workflow, rng.below(6) as u32, at);
        run.trigger = rng.pick(&TRIGGERS).to_owned();
        // Most runs carry a team, so `team` alone matches many.
        run.labels = rng.some(&LABELS[2..], 20).into_iter().map(str::to_owned).collect();
        if rng.chance(90) {
            run.labels.push(rng.pick(&LABELS[..2]).to_owned());
        }
        for task in &mut run.tasks {
            if rng.chance(40) {
                task.queue = Some(rng.pick(&QUEUES).to_owned());
            }
        }
        // Finish times are whole seconds after the submission: ties.
        let finish = |rng: &mut Rng| t((at_ms / 1000 + 1 + rng.below(3) as i64) * 1000);
        let status = rng.pick(&R::ALL);
        let (path, finished_at) = match status {
            R::Queued => (vec![], None),
            R::Running => (vec![run_change(run.id, R::Queued, R::Running, at, None)], None),
            R::Canceled if rng.chance(50) => {
                let f = finish(&mut rng);
                (vec![run_change(run.id, R::Queued, R::Canceled, f, None)], Some(f))
            }
            done => {
                let f = finish(&mut rng);
                let path = vec![
                    run_change(run.id, R::Queued, R::Running, at, None),
                    run_change(run.id, R::Running, done, f, None),
                ];
                (path, Some(f))
            }
        };
        changes.extend(path);
        history.runs.push(RunFacts {
            id: run.id,
            workflow: workflow.clone(),
            trigger: run.trigger.clone(),
            labels: run.labels.clone(),
            status,
            finished_at,
        });
        for task in &run.tasks {
            let id = task.id;
            let status = rng.pick(&T::ALL);
            let mut workers = Vec::new();
            let mut finished_at = None;
            let mut path = Vec::new();
            match status {
                T::Submitted => {}
                T::Blocked => path.push(plain(id, 0, T::Submitted, T::Blocked, at)),
                T::Pending => path.push(plain(id, 0, T::Submitted, T::Pending, at)),
                T::Skipped | T::Abandoned => {
                    let f = finish(&mut rng);
                    path.push(plain(id, 0, T::Submitted, T::Blocked, at));
                    path.push(plain(id, 0, T::Blocked, status, f));
                    finished_at = Some(f);
                }
                T::Running | T::Completed | T::Failed | T::Canceled => {
                    path.push(plain(id, 0, T::Submitted, T::Pending, at));
                    let mut attempt = 1;
                    let mut worker = rng.pick(&WORKERS).to_owned();
                    if rng.chance(15) {
                        // A failed attempt, retried on another worker.
                        let (s, token) = start_by(id, 1, &worker, at);
                        path.extend([s, end_as(id, token, 1, T::Pending, at)]);
                        workers.push(worker.clone());
                        attempt = 2;
                        let others: Vec<&str> =
                            WORKERS.into_iter().filter(|w| *w != worker.as_str()).collect();
                        worker = rng.pick(&others).to_owned();
                    }
                    let (s, token) = start_by(id, attempt, &worker, at);
                    path.push(s);
                    workers.push(worker);
                    if status != T::Running {
                        let f = finish(&mut rng);
                        path.push(end_as(id, token, attempt, status, f));
                        finished_at = Some(f);
                    }
                }
            }
            changes.extend(path);
            history.tasks.push(TaskFacts {
                id,
                run: run.id,
                workflow: workflow.clone(),
                name: task.name.clone(),
                queue: task.queue.clone(),
                status,
                finished_at,
                workers,
            });
        }
        creates.push(Change::CreateRun(run));
    }
    for batch in [creates, changes] {
        for chunk in batch.chunks(5_000) {
            let outcomes = store.apply(chunk.to_vec()).await.expect("the history applies");
            assert!(
                outcomes.iter().all(Outcome::is_applied),
                "every change of the history applies: {outcomes:?}"
            );
        }
    }
    history
}

// ---------------------------------------------------------------------------
// The brute-force filter: what each search must return, in order

/// The submission window of `range` on an id, in whole milliseconds.
fn id_in(id: [u8; 16], range: &TimeRange) -> bool {
    let ms = (u128::from_be_bytes(id) >> 80) as i64;
    range.from.is_none_or(|from| ms >= from.as_micros().div_euclid(1000))
        && range.to.is_none_or(|to| ms * 1000 < to.as_micros())
}

fn finished_in(finished: Option<Timestamp>, range: &TimeRange) -> bool {
    if range.from.is_none() && range.to.is_none() {
        return true;
    }
    finished.is_some_and(|f| range.from.is_none_or(|from| f >= from) && range.to.is_none_or(|to| f < to))
}

fn any<T: PartialEq>(wanted: &[T], value: &T) -> bool {
    wanted.is_empty() || wanted.contains(value)
}

fn label_matches(labels: &[String], wanted: &str) -> bool {
    labels.iter().any(|l| l == wanted || l.split_once('=').is_some_and(|(key, _)| key == wanted))
}

fn prefixed(id: &str, prefix: &Option<String>) -> bool {
    prefix.as_ref().is_none_or(|p| id.starts_with(&p.trim().to_ascii_uppercase()))
}

/// Sorted and cut as the search asks (the whole result, every page).
fn ordered<Id: Ord + Copy>(mut rows: Vec<(Option<Timestamp>, Id)>, sort: RunSort, order: Order) -> Vec<Id> {
    if sort == RunSort::Finished {
        rows.retain(|(f, _)| f.is_some());
    } else {
        rows.iter_mut().for_each(|(f, _)| *f = None);
    }
    rows.sort();
    if order == Order::NewestFirst {
        rows.reverse();
    }
    rows.into_iter().map(|(_, id)| id).collect()
}

/// Every run `q` selects, in its order.
pub fn expected_runs(history: &History, q: &RunSearch) -> Vec<RunId> {
    let f = &q.filter;
    let rows = history
        .runs
        .iter()
        .filter(|r| {
            any(&f.statuses, &r.status)
                && any(&f.workflows, &r.workflow)
                && any(&f.triggers, &r.trigger)
                && f.labels.iter().all(|l| label_matches(&r.labels, l))
                && id_in(r.id.to_bytes(), &f.submitted)
                && finished_in(r.finished_at, &f.finished)
                && prefixed(&r.id.to_string(), &f.id_prefix)
        })
        .map(|r| (r.finished_at, r.id))
        .collect();
    ordered(rows, q.sort, q.order)
}

/// Every task `q` selects, in its order.
pub fn expected_tasks(history: &History, q: &TaskSearch) -> Vec<TaskId> {
    let f = &q.filter;
    let rows = history
        .tasks
        .iter()
        .filter(|t| {
            any(&f.statuses, &t.status)
                && any(&f.workflows, &t.workflow)
                && any(&f.steps, &t.name)
                && (f.queues.is_empty() || t.queue.as_ref().is_some_and(|q| f.queues.contains(q)))
                && (f.workers.is_empty() || t.workers.iter().any(|w| f.workers.contains(w)))
                && id_in(t.id.to_bytes(), &f.submitted)
                && finished_in(t.finished_at, &f.finished)
                && prefixed(&t.run.to_string(), &f.run_id_prefix)
        })
        .map(|t| (t.finished_at, t.id))
        .collect();
    ordered(rows, q.sort, q.order)
}

/// Every page of `q`, in order, checking each page's size and cursor.
pub async fn walk_runs<S: Store>(store: &S, mut q: RunSearch) -> Vec<RunId> {
    let limit = if q.limit == 0 { 100 } else { q.limit };
    let mut seen = Vec::new();
    for _ in 0..10_000 {
        let page = store.search_runs(q.clone()).await.expect("search_runs");
        assert!(page.runs.len() <= limit, "a page holds at most `limit` runs");
        seen.extend(page.runs.iter().map(|r| r.id));
        match page.next {
            Some(next) => {
                assert_eq!(page.runs.len(), limit, "only the last page is short");
                q.cursor = Some(next);
            }
            None => return seen,
        }
    }
    panic!("more than 10,000 pages: {q:?}");
}

/// Every page of `q`, as [`walk_runs`].
pub async fn walk_tasks<S: Store>(store: &S, mut q: TaskSearch) -> Vec<TaskId> {
    let limit = if q.limit == 0 { 100 } else { q.limit };
    let mut seen = Vec::new();
    for _ in 0..10_000 {
        let page = store.search_tasks(q.clone()).await.expect("search_tasks");
        assert!(page.tasks.len() <= limit, "a page holds at most `limit` tasks");
        seen.extend(page.tasks.iter().map(|row| row.task.id));
        match page.next {
            Some(next) => {
                assert_eq!(page.tasks.len(), limit, "only the last page is short");
                q.cursor = Some(next);
            }
            None => return seen,
        }
    }
    panic!("more than 10,000 pages: {q:?}");
}

fn runs_q(filter: RunFilter) -> RunSearch {
    RunSearch { filter, limit: 1000, ..RunSearch::default() }
}

fn tasks_q(filter: TaskFilter) -> TaskSearch {
    TaskSearch { filter, limit: 1000, ..TaskSearch::default() }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------
// The checks

/// Each run filter alone, then together, on a small history: what it
/// selects is what a brute-force filter of the written facts selects, newest
/// first; and what the records read back say agrees with the facts.
pub async fn search_runs_by_each_filter_alone_and_together<S: Store>(store: Arc<S>) {
    let h = build_history(&*store, 60, 11).await;
    let some = &h.runs[7];
    let finished = h.runs.iter().find_map(|r| r.finished_at).expect("a finished run");
    let mut filters = vec![
        RunFilter::default(),
        RunFilter { statuses: vec![RunStatus::Failed], ..Default::default() },
        RunFilter {
            statuses: vec![RunStatus::Failed, RunStatus::Queued, RunStatus::Canceled],
            ..Default::default()
        },
        RunFilter { workflows: strings(&["etl"]), ..Default::default() },
        RunFilter { workflows: strings(&["etl", "train", "nope"]), ..Default::default() },
        RunFilter { triggers: strings(&["api"]), ..Default::default() },
        RunFilter { triggers: strings(&["api", "retry"]), ..Default::default() },
        RunFilter { labels: strings(&["team"]), ..Default::default() },
        RunFilter { labels: strings(&["team=ops"]), ..Default::default() },
        RunFilter { labels: strings(&["team", "tier=1"]), ..Default::default() },
        RunFilter { labels: strings(&["team=ops", "team=data"]), ..Default::default() },
        RunFilter { labels: strings(&["nope"]), ..Default::default() },
        RunFilter { submitted: TimeRange { from: Some(t(300)), to: Some(t(700)) }, ..Default::default() },
        RunFilter { submitted: TimeRange { from: Some(t(500)), to: None }, ..Default::default() },
        RunFilter {
            finished: TimeRange { from: None, to: Some(Timestamp::from_micros(finished.as_micros() + 1)) },
            ..Default::default()
        },
        RunFilter { finished: TimeRange { from: Some(finished), to: None }, ..Default::default() },
        RunFilter { id_prefix: Some(some.id.to_string()), ..Default::default() },
        RunFilter { id_prefix: Some(some.id.to_string()[..9].to_ascii_lowercase()), ..Default::default() },
        RunFilter { id_prefix: Some("ZZ".to_owned()), ..Default::default() },
        RunFilter { id_prefix: Some("8".to_owned()), ..Default::default() },
    ];
    filters.push(RunFilter {
        statuses: vec![RunStatus::Completed, RunStatus::Failed, RunStatus::PartiallySucceeded],
        workflows: strings(&["etl", "report"]),
        triggers: strings(&["manual", "schedule", "api"]),
        labels: strings(&["team"]),
        submitted: TimeRange { from: Some(t(100)), to: Some(t(1_000)) },
        finished: TimeRange { from: Some(t(1_000)), to: None },
        id_prefix: Some("0".to_owned()),
    });
    filters.push(RunFilter {
        workflows: strings(&[&some.workflow]),
        statuses: vec![some.status],
        labels: some.labels.clone(),
        ..Default::default()
    });
    for filter in filters {
        for sort in [RunSort::Submitted, RunSort::Finished] {
            let q = RunSearch { sort, ..runs_q(filter.clone()) };
            let page = store.search_runs(q.clone()).await.unwrap();
            let want = expected_runs(&h, &q);
            assert_eq!(page.runs.iter().map(|r| r.id).collect::<Vec<_>>(), want, "{q:?}");
            assert_eq!(page.next, None, "one page holds them all: {q:?}");
            for run in &page.runs {
                let facts = h.runs.iter().find(|r| r.id == run.id).unwrap();
                assert_eq!(
                    (&run.workflow, &run.trigger, run.status),
                    (&facts.workflow, &facts.trigger, facts.status)
                );
                assert_eq!(run.finished_at, facts.finished_at);
                assert_eq!(
                    Some(run),
                    store.run(run.id).await.unwrap().as_ref(),
                    "a search reads runs as run() does"
                );
            }
        }
    }
    // The brute force is not vacuous here.
    let q = runs_q(RunFilter { labels: strings(&["team"]), ..Default::default() });
    assert!(expected_runs(&h, &q).len() > 30);
    let q = runs_q(RunFilter { id_prefix: Some(some.id.to_string()), ..Default::default() });
    assert_eq!(expected_runs(&h, &q), [some.id]);
}

/// Each task filter alone, then together: workers are any attempt's, queues
/// only remote tasks', a run id prefix selects its runs' tasks.
pub async fn search_tasks_by_each_filter_alone_and_together<S: Store>(store: Arc<S>) {
    let h = build_history(&*store, 60, 12).await;
    let retried = h.tasks.iter().find(|t| t.workers.len() == 2).expect("a task retried on another worker");
    let some = &h.tasks[5];
    let finished = h.tasks.iter().find_map(|t| t.finished_at).expect("a finished task");
    let filters = vec![
        TaskFilter::default(),
        TaskFilter { statuses: vec![TaskStatus::Failed], ..Default::default() },
        TaskFilter { statuses: vec![TaskStatus::Pending, TaskStatus::Completed], ..Default::default() },
        TaskFilter {
            statuses: vec![TaskStatus::Running, TaskStatus::Blocked, TaskStatus::Submitted],
            ..Default::default()
        },
        TaskFilter { workflows: strings(&["etl"]), ..Default::default() },
        TaskFilter {
            workflows: strings(&["etl", "report"]),
            statuses: vec![TaskStatus::Skipped, TaskStatus::Pending],
            ..Default::default()
        },
        TaskFilter { steps: strings(&["step-0"]), ..Default::default() },
        TaskFilter {
            steps: strings(&["step-1", "step-2"]),
            workflows: strings(&["train"]),
            ..Default::default()
        },
        TaskFilter { queues: strings(&["gpu"]), ..Default::default() },
        TaskFilter {
            queues: strings(&["gpu", "cpu"]),
            statuses: vec![TaskStatus::Completed, TaskStatus::Running],
            ..Default::default()
        },
        TaskFilter { workers: vec![retried.workers[0].clone()], ..Default::default() },
        TaskFilter {
            workers: strings(&["w1", "w3"]),
            statuses: vec![TaskStatus::Failed],
            ..Default::default()
        },
        TaskFilter { workers: strings(&["nobody"]), ..Default::default() },
        TaskFilter { submitted: TimeRange { from: Some(t(200)), to: Some(t(800)) }, ..Default::default() },
        TaskFilter { finished: TimeRange { from: Some(finished), to: None }, ..Default::default() },
        TaskFilter { run_id_prefix: Some(some.run.to_string()), ..Default::default() },
        TaskFilter {
            run_id_prefix: Some(some.run.to_string()[..8].to_ascii_lowercase()),
            ..Default::default()
        },
        TaskFilter {
            statuses: vec![TaskStatus::Completed, TaskStatus::Failed, TaskStatus::Running],
            workflows: strings(&["etl", "report", "train"]),
            steps: strings(&["step-0", "step-1"]),
            queues: strings(&["gpu", "cpu"]),
            workers: strings(&["w1", "w2"]),
            submitted: TimeRange { from: Some(t(0)), to: Some(t(1_200)) },
            finished: TimeRange::default(),
            run_id_prefix: Some("0".to_owned()),
        },
    ];
    for filter in filters {
        for sort in [RunSort::Submitted, RunSort::Finished] {
            let q = TaskSearch { sort, ..tasks_q(filter.clone()) };
            let page = store.search_tasks(q.clone()).await.unwrap();
            let want = expected_tasks(&h, &q);
            assert_eq!(page.tasks.iter().map(|r| r.task.id).collect::<Vec<_>>(), want, "{q:?}");
            for row in &page.tasks {
                let facts = h.tasks.iter().find(|t| t.id == row.task.id).unwrap();
                assert_eq!(
                    (&row.workflow, row.task.run, row.task.status),
                    (&facts.workflow, facts.run, facts.status)
                );
                let detail = store.task(row.task.id).await.unwrap().unwrap();
                assert_eq!(row.task, detail.task, "a search reads tasks as task() does");
            }
        }
    }
    let q = tasks_q(TaskFilter { workers: vec![retried.workers[0].clone()], ..Default::default() });
    assert!(expected_tasks(&h, &q).contains(&retried.id), "any attempt's worker counts");
}

/// Both sorts in both orders, and pages of every size through them: every
/// match exactly once, in order, ties on the finish time broken by id; the
/// last page (also a full one) says so; an empty search is one empty page.
pub async fn search_pages_cover_every_match_once_in_order<S: Store>(store: Arc<S>) {
    let h = build_history(&*store, 80, 13).await;
    let finished: Vec<_> = h.runs.iter().filter_map(|r| r.finished_at).collect();
    let distinct: BTreeSet<_> = finished.iter().collect();
    assert!(distinct.len() < finished.len(), "runs tie on their finish time");
    for sort in [RunSort::Submitted, RunSort::Finished] {
        for order in [Order::NewestFirst, Order::OldestFirst] {
            for limit in [1, 3, 7, 100] {
                for filter in [
                    RunFilter::default(),
                    RunFilter {
                        statuses: vec![RunStatus::Failed, RunStatus::Completed],
                        ..Default::default()
                    },
                ] {
                    let q = RunSearch { filter, sort, order, limit, cursor: None };
                    assert_eq!(walk_runs(&*store, q.clone()).await, expected_runs(&h, &q), "{q:?}");
                }
                let q = TaskSearch { sort, order, limit, ..TaskSearch::default() };
                assert_eq!(walk_tasks(&*store, q.clone()).await, expected_tasks(&h, &q), "{q:?}");
            }
        }
    }
    // A last page that is full says it is the last.
    let q = RunSearch { sort: RunSort::Finished, ..runs_q(RunFilter::default()) };
    let all = expected_runs(&h, &q);
    let page = store.search_runs(RunSearch { limit: all.len(), ..q.clone() }).await.unwrap();
    assert_eq!((page.runs.len(), page.next), (all.len(), None));
    let half = RunSearch { limit: all.len() / 2, ..q.clone() };
    let first = store.search_runs(half.clone()).await.unwrap();
    let second = store.search_runs(RunSearch { cursor: first.next.clone(), ..half }).await.unwrap();
    assert_eq!(first.runs.len() + second.runs.len(), all.len() - all.len() % 2);
    assert_eq!(second.next.is_some(), all.len() % 2 == 1, "a third page only for an odd count");
    // Nothing matches: one empty page.
    for filter in [
        RunFilter { workflows: strings(&["nope"]), ..Default::default() },
        RunFilter { submitted: TimeRange { from: Some(t(10)), to: Some(t(10)) }, ..Default::default() },
        RunFilter { statuses: vec![RunStatus::Queued], ..Default::default() },
    ] {
        let q = RunSearch { sort: RunSort::Finished, ..runs_q(filter) };
        let page = store.search_runs(q).await.unwrap();
        assert!(page.runs.is_empty() && page.next.is_none());
    }
    let page = store
        .search_tasks(tasks_q(TaskFilter { steps: strings(&["nope"]), ..Default::default() }))
        .await
        .unwrap();
    assert!(page.tasks.is_empty() && page.next.is_none());
}

/// A cursor serves only the search it came from; a malformed one and a page
/// size out of bounds are refused; 0 means a page of 100.
pub async fn search_cursors_and_page_sizes_are_checked<S: Store>(store: Arc<S>) {
    let h = build_history(&*store, 120, 14).await;
    assert!(h.runs.len() > 100 && h.tasks.len() > 100);
    let q = RunSearch { limit: 5, ..RunSearch::default() };
    let first = store.search_runs(q.clone()).await.unwrap();
    let cursor = first.next.clone().expect("more than one page");
    let again = store.search_runs(RunSearch { cursor: Some(cursor.clone()), ..q.clone() }).await.unwrap();
    assert_eq!(again.runs.len(), 5);
    // Another page size is the same search.
    store.search_runs(RunSearch { cursor: Some(cursor.clone()), limit: 50, ..q.clone() }).await.unwrap();
    let refused = |e: StoreError, what: &str| match e {
        StoreError::InvalidQuery(why) => assert!(why.contains(what), "{why}"),
        other => panic!("not InvalidQuery: {other:?}"),
    };
    for other in [
        RunSearch { order: Order::OldestFirst, ..q.clone() },
        RunSearch { sort: RunSort::Finished, ..q.clone() },
        RunSearch { filter: RunFilter { workflows: strings(&["etl"]), ..Default::default() }, ..q.clone() },
        RunSearch { filter: RunFilter { labels: strings(&["pii"]), ..Default::default() }, ..q.clone() },
    ] {
        let e = store.search_runs(RunSearch { cursor: Some(cursor.clone()), ..other }).await.unwrap_err();
        refused(e, "this cursor belongs to another search");
    }
    let e = store
        .search_tasks(TaskSearch { cursor: Some(cursor.clone()), ..TaskSearch::default() })
        .await
        .unwrap_err();
    refused(e, "this cursor belongs to another search");
    let mut tampered = cursor.0.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::new(),
        "not a cursor".to_owned(),
        cursor.0[..cursor.0.len() - 2].to_owned(),
        format!("{}==", cursor.0),
    ] {
        let e = store.search_runs(RunSearch { cursor: Some(Cursor(bad)), ..q.clone() }).await.unwrap_err();
        refused(e, "malformed cursor");
    }
    let e = store
        .search_runs(RunSearch { cursor: Some(Cursor(String::from_utf8(tampered).unwrap())), ..q.clone() });
    assert!(matches!(e.await, Err(StoreError::InvalidQuery(_))), "a cursor changed by hand");

    for limit in [1_001, usize::MAX] {
        refused(store.search_runs(RunSearch { limit, ..q.clone() }).await.unwrap_err(), "at most 1000");
        refused(
            store.search_tasks(TaskSearch { limit, ..TaskSearch::default() }).await.unwrap_err(),
            "at most 1000",
        );
    }
    let page = store.search_runs(RunSearch { limit: 0, ..q.clone() }).await.unwrap();
    assert_eq!(page.runs.len(), 100, "0 means 100");
    assert!(page.next.is_some());
    let page = store.search_tasks(TaskSearch::default()).await.unwrap();
    assert_eq!(page.tasks.len(), 100.min(h.tasks.len()));
    let page = store.search_runs(RunSearch { limit: 1_000, ..q }).await.unwrap();
    assert_eq!(page.runs.len(), h.runs.len());
    assert_eq!(page.next, None);
}

/// A random search over `history`.
fn random_run_search(rng: &mut Rng, h: &History) -> RunSearch {
    let span_ms = h.runs.len() as i64 * 20;
    let time = |rng: &mut Rng, base: i64| Some(t(base + rng.below(span_ms as u64 + 4_000) as i64));
    let mut filter = RunFilter::default();
    if rng.chance(35) {
        filter.statuses = rng.some(&RunStatus::ALL, 40);
    }
    if rng.chance(35) {
        filter.workflows = rng.some(&WORKFLOWS, 40).into_iter().map(str::to_owned).collect();
    }
    if rng.chance(20) {
        filter.triggers = rng.some(&TRIGGERS, 50).into_iter().map(str::to_owned).collect();
    }
    if rng.chance(35) {
        let terms = ["team", "team=data", "team=ops", "tier", "tier=1", "tier=2", "pii", "nope"];
        filter.labels = (0..1 + rng.below(2)).map(|_| rng.pick(&terms).to_owned()).collect();
    }
    if rng.chance(20) {
        filter.submitted = TimeRange {
            from: if rng.chance(70) { time(rng, -100) } else { None },
            to: if rng.chance(70) { time(rng, 0) } else { None },
        };
    }
    if rng.chance(20) {
        filter.finished = TimeRange {
            from: if rng.chance(70) { time(rng, 0) } else { None },
            to: if rng.chance(70) { time(rng, 1_000) } else { None },
        };
    }
    if rng.chance(15) {
        let id = rng.pick(&h.runs).id.to_string();
        let len = [1, 2, 8, 9, 10, 12, 26][rng.below(7) as usize];
        let prefix = &id[..len];
        filter.id_prefix = Some(if rng.chance(50) { prefix.to_ascii_lowercase() } else { prefix.to_owned() });
    }
    RunSearch {
        filter,
        sort: if rng.chance(50) { RunSort::Submitted } else { RunSort::Finished },
        order: if rng.chance(50) { Order::NewestFirst } else { Order::OldestFirst },
        cursor: None,
        limit: rng.pick(&[0, 13, 50, 200, 1000]),
    }
}

fn random_task_search(rng: &mut Rng, h: &History) -> TaskSearch {
    let span_ms = h.runs.len() as i64 * 20;
    let time = |rng: &mut Rng, base: i64| Some(t(base + rng.below(span_ms as u64 + 4_000) as i64));
    let mut filter = TaskFilter::default();
    if rng.chance(35) {
        filter.statuses = rng.some(&TaskStatus::ALL, 35);
    }
    if rng.chance(30) {
        filter.workflows = rng.some(&WORKFLOWS, 40).into_iter().map(str::to_owned).collect();
    }
    if rng.chance(20) {
        filter.steps =
            rng.some(&["step-0", "step-1", "step-2", "nope"], 40).into_iter().map(str::to_owned).collect();
    }
    if rng.chance(25) {
        filter.queues = rng.some(&["gpu", "cpu", "nope"], 50).into_iter().map(str::to_owned).collect();
    }
    if rng.chance(25) {
        filter.workers = rng.some(&["w1", "w2", "w3", "nobody"], 50).into_iter().map(str::to_owned).collect();
    }
    if rng.chance(20) {
        filter.submitted = TimeRange {
            from: if rng.chance(70) { time(rng, -100) } else { None },
            to: if rng.chance(70) { time(rng, 0) } else { None },
        };
    }
    if rng.chance(20) {
        filter.finished = TimeRange {
            from: if rng.chance(70) { time(rng, 0) } else { None },
            to: if rng.chance(70) { time(rng, 1_000) } else { None },
        };
    }
    if rng.chance(15) {
        let id = rng.pick(&h.runs).id.to_string();
        let len = [1, 8, 9, 10, 26][rng.below(5) as usize];
        filter.run_id_prefix = Some(id[..len].to_owned());
    }
    TaskSearch {
        filter,
        sort: if rng.chance(50) { RunSort::Submitted } else { RunSort::Finished },
        order: if rng.chance(50) { Order::NewestFirst } else { Order::OldestFirst },
        cursor: None,
        limit: rng.pick(&[0, 13, 50, 200, 1000]),
    }
}

/// Random searches over a history of 1,200 runs (enough that common
/// filters are no longer "few" and take their other walks), each walked to
/// its last page and compared with a brute-force filter of the facts.
pub async fn searches_match_a_brute_force_filter<S: Store>(store: Arc<S>) {
    let h = build_history(&*store, 1_200, 15).await;
    let mut rng = Rng(0x5eed_cafe);
    let (mut found, mut empty) = (0, 0);
    for i in 0..120 {
        let q = random_run_search(&mut rng, &h);
        let want = expected_runs(&h, &q);
        assert_eq!(walk_runs(&*store, q.clone()).await, want, "run search #{i}: {q:?}");
        let q = random_task_search(&mut rng, &h);
        let want_tasks = expected_tasks(&h, &q);
        assert_eq!(walk_tasks(&*store, q.clone()).await, want_tasks, "task search #{i}: {q:?}");
        found += want.len() + want_tasks.len();
        empty += usize::from(want.is_empty()) + usize::from(want_tasks.is_empty());
    }
    // Not vacuous: most searches find something, and much is compared.
    assert!(empty < 120 && found > 50_000, "{empty} empty searches, {found} rows");
}

/// One search of each shape the planner knows, named by the shape the
/// store should choose for it on [`build_history`]`(store, 3_000, …)`: the
/// backends' plan tests explain each and check its walks.
pub enum PlanCase {
    Runs(&'static str, RunSearch),
    Tasks(&'static str, TaskSearch),
}

pub fn plan_cases(h: &History) -> Vec<PlanCase> {
    use PlanCase::{Runs, Tasks};
    let run = &h.runs[h.runs.len() / 2];
    let task_run = h.tasks[h.tasks.len() / 2].run;
    let r = |filter: RunFilter, sort: RunSort| RunSearch { filter, sort, limit: 50, ..RunSearch::default() };
    let k =
        |filter: TaskFilter, sort: RunSort| TaskSearch { filter, sort, limit: 50, ..TaskSearch::default() };
    let (s, f) = (RunSort::Submitted, RunSort::Finished);
    let window = TimeRange { from: Some(t(1_000)), to: Some(t(1_030)) };
    let failed = vec![RunStatus::Failed, RunStatus::Canceled];
    let tfailed = vec![TaskStatus::Failed, TaskStatus::Pending];
    vec![
        Runs("runs by id", r(RunFilter::default(), s)),
        Runs(
            "runs by id",
            r(RunFilter { finished: TimeRange { from: Some(t(0)), to: None }, ..Default::default() }, s),
        ),
        Runs(
            "runs by id range",
            r(RunFilter { id_prefix: Some(run.id.to_string()[..10].to_owned()), ..Default::default() }, s),
        ),
        Runs(
            "runs by id range",
            r(RunFilter { submitted: window, statuses: failed.clone(), ..Default::default() }, s),
        ),
        Runs(
            "runs by label",
            r(
                RunFilter {
                    labels: strings(&["team=ops", "tier"]),
                    statuses: failed.clone(),
                    ..Default::default()
                },
                s,
            ),
        ),
        Runs(
            "runs by workflow and status",
            r(
                RunFilter {
                    workflows: strings(&["etl", "train"]),
                    statuses: failed.clone(),
                    ..Default::default()
                },
                s,
            ),
        ),
        Runs(
            "runs by workflow",
            r(
                RunFilter {
                    workflows: strings(&["etl", "train"]),
                    triggers: strings(&["api"]),
                    ..Default::default()
                },
                s,
            ),
        ),
        Runs(
            "runs by status",
            r(RunFilter { statuses: failed.clone(), triggers: strings(&["api"]), ..Default::default() }, s),
        ),
        Runs(
            "runs by trigger",
            r(RunFilter { triggers: strings(&["api", "retry"]), ..Default::default() }, s),
        ),
        Runs("finished runs by status", r(RunFilter::default(), f)),
        Runs(
            "finished runs by status",
            r(RunFilter { labels: strings(&["team"]), triggers: strings(&["api"]), ..Default::default() }, f),
        ),
        Runs(
            "finished runs by status",
            r(
                RunFilter {
                    finished: TimeRange { from: Some(t(2_000)), to: Some(t(5_000)) },
                    statuses: failed.clone(),
                    ..Default::default()
                },
                f,
            ),
        ),
        Runs(
            "finished runs by workflow",
            r(RunFilter { workflows: strings(&["report"]), ..Default::default() }, f),
        ),
        Runs(
            "finished runs of an id range, sorted",
            r(RunFilter { id_prefix: Some(run.id.to_string()), ..Default::default() }, f),
        ),
        Runs(
            "finished runs of a label, sorted",
            r(RunFilter { labels: strings(&["tier=2"]), ..Default::default() }, f),
        ),
        Tasks("tasks by id", k(TaskFilter::default(), s)),
        Tasks(
            "tasks by id",
            k(
                TaskFilter {
                    steps: strings(&["step-1"]),
                    workers: strings(&["w1", "w2", "w3"]),
                    ..Default::default()
                },
                s,
            ),
        ),
        Tasks("tasks by status", k(TaskFilter { statuses: tfailed.clone(), ..Default::default() }, s)),
        Tasks("tasks by workflow", k(TaskFilter { workflows: strings(&["etl"]), ..Default::default() }, s)),
        Tasks(
            "tasks by workflow",
            k(
                TaskFilter {
                    workflows: strings(&["etl", "backup"]),
                    statuses: tfailed.clone(),
                    ..Default::default()
                },
                s,
            ),
        ),
        Tasks("tasks by queue", k(TaskFilter { queues: strings(&["gpu"]), ..Default::default() }, s)),
        Tasks(
            "tasks by queue",
            k(
                TaskFilter {
                    queues: strings(&["gpu"]),
                    finished: TimeRange { from: Some(t(0)), to: None },
                    ..Default::default()
                },
                s,
            ),
        ),
        Tasks(
            "tasks of a few workers, sorted",
            k(TaskFilter { workers: strings(&["nobody"]), ..Default::default() }, s),
        ),
        Tasks(
            "tasks of a few runs, sorted",
            k(TaskFilter { run_id_prefix: Some(task_run.to_string()), ..Default::default() }, s),
        ),
        Tasks(
            "tasks of a few runs, sorted",
            k(TaskFilter { run_id_prefix: Some(task_run.to_string()), ..Default::default() }, f),
        ),
        Tasks("finished tasks by status", k(TaskFilter::default(), f)),
        Tasks(
            "finished tasks by status",
            k(TaskFilter { workflows: strings(&["etl"]), statuses: tfailed, ..Default::default() }, f),
        ),
    ]
}
