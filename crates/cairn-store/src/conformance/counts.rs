//! The conformance checks of the status counts and trends
//! ([`Store::run_counts`], [`Store::task_counts`], [`Store::run_trend`],
//! [`Store::workflow_trends`]): after random work — runs of several
//! workflows submitted over days, status changes with retries, offers and
//! claims, concurrent batches, conflicts that must count nothing — every
//! count and trend over many windows equals a brute-force count of the
//! records the store reads back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cairn_core::{LeaseToken, RunId, RunStatus, TaskId, TaskStatus, Timestamp};

use super::{Rng, claim_request, end, new_run, offer, plain, run_change, start, t};
use crate::{
    AttemptResult, Bucket, Change, CountQuery, NewRun, Outcome, RunQuery, Store, StoreError, TimeRange,
    TrendPoint,
};

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

fn us(micros: i64) -> Timestamp {
    Timestamp::from_micros(micros)
}

// ---------------------------------------------------------------------------
// The model: what the workload believes is stored, to write legal changes.

#[derive(Clone, Debug)]
struct TaskModel {
    id: TaskId,
    status: TaskStatus,
    attempt: u32,
    token: Option<LeaseToken>,
    remote: bool,
    offered: bool,
}

#[derive(Clone, Debug)]
struct RunModel {
    id: RunId,
    status: RunStatus,
    tasks: Vec<TaskModel>,
}

/// A monotonic clock for the changes: after every submission, 1 ms a tick.
struct Clock(i64);

impl Clock {
    fn tick(&mut self) -> Timestamp {
        self.0 += 1000;
        us(self.0)
    }
}

/// The next legal change of `task` (updating it as if applied), if any.
fn next_change(task: &mut TaskModel, run: RunId, rng: &mut Rng, clock: &mut Clock) -> Option<Change> {
    use TaskStatus::*;
    let at = clock.tick();
    let to_plain = |task: &mut TaskModel, to: TaskStatus| {
        let change = plain(task.id, task.attempt, task.status, to, at);
        task.status = to;
        task.offered = false;
        change
    };
    Some(match task.status {
        Submitted => {
            let to = rng.pick(&[Pending, Pending, Pending, Blocked, Blocked, Canceled]);
            to_plain(task, to)
        }
        Blocked => {
            // Handlers and dependents: most wait, then run or are not needed.
            let to = rng.pick(&[Pending, Pending, Skipped, Abandoned, Canceled]);
            to_plain(task, to)
        }
        Pending if task.remote && !task.offered && rng.chance(60) => {
            task.offered = true;
            offer(task.id, run, "q", at)
        }
        Pending if task.offered && rng.chance(70) => return None, // left for a claim
        Pending => match rng.below(10) {
            0 => to_plain(task, Skipped),
            1 => to_plain(task, Canceled),
            2 => to_plain(task, Abandoned),
            _ => {
                task.attempt += 1;
                let (change, token) = start(task.id, task.attempt, at);
                task.status = Running;
                task.token = Some(token);
                task.offered = false;
                change
            }
        },
        Running => {
            let retry = task.attempt < 3 && rng.chance(35);
            let to =
                if retry { Pending } else { rng.pick(&[Completed, Completed, Completed, Failed, Canceled]) };
            let token = task.token.take()?;
            let result = AttemptResult { exit_code: Some(i32::from(to != Completed)), ..Default::default() };
            task.status = to;
            end(task.id, token, task.attempt, to, at, result)
        }
        Completed | Failed | Canceled | Skipped | Abandoned => return None,
    })
}

/// A change that the store must refuse, for a task or run in the state given.
fn conflicting(run: &RunModel, rng: &mut Rng, clock: &mut Clock) -> Change {
    use TaskStatus::*;
    let at = clock.tick();
    if rng.chance(30) || run.tasks.is_empty() {
        return match run.status {
            RunStatus::Queued => run_change(run.id, RunStatus::Running, RunStatus::Completed, at, None),
            _ => run_change(run.id, RunStatus::Queued, RunStatus::Running, at, None),
        };
    }
    let task = rng.pick(&run.tasks);
    match task.status {
        Running if rng.chance(50) => {
            end(task.id, LeaseToken::random(), task.attempt, Completed, at, AttemptResult::default())
        }
        Submitted => plain(task.id, task.attempt, Blocked, Pending, at),
        _ => plain(task.id, task.attempt, Submitted, Pending, at),
    }
}

/// The next change of a run itself, once its tasks allow it.
fn run_step(run: &mut RunModel, rng: &mut Rng, clock: &mut Clock) -> Option<Change> {
    let at = clock.tick();
    match run.status {
        RunStatus::Queued if rng.chance(5) => {
            run.status = RunStatus::Canceled;
            Some(run_change(run.id, RunStatus::Queued, RunStatus::Canceled, at, None))
        }
        RunStatus::Queued => {
            run.status = RunStatus::Running;
            Some(run_change(run.id, RunStatus::Queued, RunStatus::Running, at, None))
        }
        RunStatus::Running if run.tasks.iter().all(|t| t.status.is_terminal()) => {
            let to = rng.pick(&[
                RunStatus::Completed,
                RunStatus::Completed,
                RunStatus::Failed,
                RunStatus::PartiallySucceeded,
                RunStatus::Canceled,
            ]);
            run.status = to;
            Some(run_change(run.id, RunStatus::Running, to, at, Some("done")))
        }
        _ => None,
    }
}

/// A run of `workflow` submitted at `at`, its tasks a little later (up to
/// two minutes: a task's own submission time is what counts), some remote.
fn submitted_run(workflow: &str, at: Timestamp, rng: &mut Rng) -> NewRun {
    let tasks = 1 + rng.below(5) as u32;
    let mut run = new_run(workflow, tasks, at);
    for task in &mut run.tasks {
        task.transition.at = us(at.as_micros() + rng.below(120) as i64 * 1_000_000);
        if rng.chance(40) {
            task.queue = Some("q".to_owned());
        }
    }
    run
}

fn model_of(run: &NewRun) -> RunModel {
    RunModel {
        id: run.id,
        status: RunStatus::Queued,
        tasks: run
            .tasks
            .iter()
            .map(|task| TaskModel {
                id: task.id,
                status: TaskStatus::Submitted,
                attempt: 0,
                token: None,
                remote: task.queue.is_some(),
                offered: false,
            })
            .collect(),
    }
}

const WORKFLOWS: [&str; 5] = ["etl", "backup", "report", "deploy", "train"];

/// The workload's submission times: over two days and a bit from the
/// suite's time zero (a day boundary inside), some exactly on a minute or
/// an hour, the rest anywhere.
fn submission(rng: &mut Rng) -> Timestamp {
    let base = t(0).as_micros() - 3 * HOUR;
    let micros = match rng.below(4) {
        0 => base + rng.below(55) as i64 * HOUR,
        1 => base + rng.below(55 * 60) as i64 * MINUTE,
        _ => base + rng.below((55 * HOUR) as u64) as i64,
    };
    us(micros)
}

/// The workload and what it believes is stored.
struct Workload {
    rng: Rng,
    clock: Clock,
    models: Vec<RunModel>,
    created: Vec<NewRun>,
    where_is: HashMap<TaskId, (usize, usize)>,
}

impl Workload {
    fn new(seed: u64) -> Workload {
        Workload {
            rng: Rng(seed),
            clock: Clock(t(0).as_micros() + 3 * DAY),
            models: Vec::new(),
            created: Vec::new(),
            where_is: HashMap::new(),
        }
    }

    /// `runs` new runs and random changes in `rounds` rounds: each round
    /// creates some runs and moves the others in a few batches applied
    /// concurrently (SQLite commits them together), with conflicts among
    /// them, then claims offered tasks.
    async fn run<S: Store>(&mut self, store: &S, runs: usize, rounds: usize) {
        let Workload { rng, clock, models, created, where_is } = self;
        let new_runs: Vec<NewRun> = (0..runs)
            .map(|_| {
                let workflow = rng.pick(&WORKFLOWS);
                let at = submission(rng);
                submitted_run(workflow, at, rng)
            })
            .collect();
        let mut next_new = 0;
        for round in 0..rounds {
            // This round's new runs, each with a batch of its own.
            let mut batches: Vec<Vec<(Change, bool)>> = Vec::new();
            let older = models.len();
            let count = runs * (round + 1) / rounds - runs * round / rounds;
            for run in &new_runs[next_new..next_new + count] {
                let mut model = model_of(run);
                let mut batch = vec![(Change::CreateRun(run.clone()), true)];
                if rng.chance(50) {
                    batch.extend(run_step(&mut model, rng, clock).map(|c| (c, true)));
                    for task in &mut model.tasks {
                        for _ in 0..rng.below(4) {
                            match next_change(task, model.id, rng, clock) {
                                Some(change) => batch.push((change, true)),
                                None => break,
                            }
                        }
                    }
                }
                for (j, task) in model.tasks.iter().enumerate() {
                    where_is.insert(task.id, (models.len(), j));
                }
                models.push(model);
                created.push(run.clone());
                batches.push(batch);
            }
            next_new += count;
            // Changes of the older runs, spread over three batches.
            let mut spread: Vec<Vec<(Change, bool)>> = vec![Vec::new(); 3];
            for (i, run) in models.iter_mut().enumerate().take(older) {
                let batch = &mut spread[i % 3];
                if let Some(change) = run_step(run, rng, clock) {
                    batch.push((change, true));
                }
                let id = run.id;
                for task in &mut run.tasks {
                    if !rng.chance(60) {
                        continue;
                    }
                    for _ in 0..1 + rng.below(3) {
                        match next_change(task, id, rng, clock) {
                            Some(change) => batch.push((change, true)),
                            None => break,
                        }
                    }
                }
                if rng.chance(15) {
                    batch.push((conflicting(run, rng, clock), false));
                }
            }
            if older > 0 && rng.chance(50) {
                // A run created again: refused, and counted once.
                let again = created[rng.below(older as u64) as usize].clone();
                spread[0].push((Change::CreateRun(again), false));
            }
            batches.extend(spread.into_iter().filter(|b| !b.is_empty()));

            let applied = futures_util::future::join_all(batches.iter().map(|batch| {
                let changes: Vec<Change> = batch.iter().map(|(c, _)| c.clone()).collect();
                store.apply(changes)
            }))
            .await;
            for (batch, outcomes) in batches.iter().zip(applied) {
                let outcomes = outcomes.expect("a batch of the workload commits");
                for (k, ((change, applies), outcome)) in batch.iter().zip(&outcomes).enumerate() {
                    assert_eq!(
                        outcome.is_applied(),
                        *applies,
                        "round {round}, change #{k} ({change:?}): {outcome:?}"
                    );
                }
            }

            // Workers claim some of the offered tasks.
            let now = clock.tick();
            let claimed = store
                .claim(claim_request(&["q"], 1 + rng.below(4) as usize, now, "s1"))
                .await
                .expect("a claim commits");
            for c in claimed.tasks {
                let (i, j) = where_is[&c.task];
                let task = &mut models[i].tasks[j];
                assert!(task.offered && task.status == TaskStatus::Pending, "claimed {task:?}");
                task.status = TaskStatus::Running;
                task.attempt = c.attempt;
                task.token = Some(c.lease.token);
                task.offered = false;
            }
            // The claims are dated `now` or later: move the clock past them.
            clock.0 += 1000;
        }
    }
}

// ---------------------------------------------------------------------------
// The truth: counted by brute force from the records.

struct Truth {
    /// (workflow, submitted_at µs, status) of every run.
    runs: Vec<(String, i64, RunStatus)>,
    tasks: Vec<(String, i64, TaskStatus)>,
}

async fn truth<S: Store>(store: &S) -> Truth {
    let mut records = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_runs(RunQuery { limit: 200, before, ..Default::default() }).await.unwrap();
        let done = page.len() < 200;
        before = page.last().map(|r| r.id);
        records.extend(page);
        if done {
            break;
        }
    }
    let mut truth = Truth { runs: Vec::new(), tasks: Vec::new() };
    for run in records {
        let detail = store.run_detail(run.id).await.unwrap().expect("a listed run has a detail");
        for task in &detail.tasks {
            truth.tasks.push((run.workflow.clone(), task.submitted_at.as_micros(), task.status));
        }
        truth.runs.push((run.workflow, run.submitted_at.as_micros(), run.status));
    }
    truth
}

/// A window as the store resolves it, in µs: `from` down and `to` up to the
/// minute; an empty window stays empty.
fn resolved(range: &TimeRange) -> (i64, i64) {
    if let (Some(from), Some(to)) = (range.from, range.to)
        && from >= to
    {
        return (0, 0);
    }
    let from = range.from.map_or(i64::MIN, |t| t.as_micros().div_euclid(MINUTE) * MINUTE);
    let to = range.to.map_or(i64::MAX, |t| {
        let m = t.as_micros();
        (m.div_euclid(MINUTE) + i64::from(m.rem_euclid(MINUTE) != 0)) * MINUTE
    });
    (from, to)
}

fn selected<'a, S: Copy + 'a>(
    records: &'a [(String, i64, S)],
    q: &'a CountQuery,
) -> impl Iterator<Item = &'a (String, i64, S)> + 'a {
    let (from, to) = resolved(&q.submitted);
    records.iter().filter(move |(workflow, at, _)| {
        *at >= from && *at < to && (q.workflows.is_empty() || q.workflows.contains(workflow))
    })
}

fn brute_counts<S: Copy + Ord>(records: &[(String, i64, S)], q: &CountQuery) -> BTreeMap<S, u64> {
    let mut counts = BTreeMap::new();
    for (_, _, status) in selected(records, q) {
        *counts.entry(*status).or_insert(0) += 1;
    }
    counts
}

fn width(bucket: Bucket) -> i64 {
    match bucket {
        Bucket::Minute => MINUTE,
        Bucket::Hour => HOUR,
        Bucket::Day => DAY,
    }
}

/// The points of a trend: aligned buckets from the one holding `from` to
/// the one holding the last minute before `to`.
fn brute_trend(
    records: &[(String, i64, RunStatus)],
    q: &CountQuery,
    bucket: Bucket,
    to: i64,
) -> Vec<TrendPoint<RunStatus>> {
    let (from, _) = resolved(&q.submitted);
    if to <= from {
        return Vec::new();
    }
    let w = width(bucket);
    let mut points = Vec::new();
    let mut at = from.div_euclid(w) * w;
    while at < to {
        points.push(TrendPoint { at: us(at), counts: BTreeMap::new() });
        at += w;
    }
    let origin = from.div_euclid(w) * w;
    for (_, sub, status) in selected(records, q).filter(|(_, sub, _)| *sub < to) {
        *points[((sub - origin) / w) as usize].counts.entry(*status).or_insert(0) += 1;
    }
    points
}

/// Compares every count and trend of the store with the truth, over
/// windows with edges anywhere (most not on a minute), empty ones, open
/// ones, and several workflow filters.
async fn compare<S: Store>(store: &S, truth: &Truth, rng: &mut Rng) {
    let zero = t(0).as_micros();
    let newest = truth.runs.iter().map(|(_, at, _)| *at).max();
    let mut windows: Vec<TimeRange> = vec![
        TimeRange::default(),
        TimeRange { from: Some(t(0)), to: None },
        TimeRange { from: None, to: Some(us(zero + 30 * HOUR + 17_000_001)) },
        TimeRange { from: Some(us(zero + 5 * HOUR)), to: Some(us(zero + 5 * HOUR)) },
        TimeRange { from: Some(us(zero + 5 * HOUR + 7)), to: Some(us(zero + 5 * HOUR + 7)) },
        TimeRange { from: Some(us(zero + 9 * HOUR)), to: Some(us(zero + 2 * HOUR)) },
        TimeRange { from: Some(us(zero - 4 * DAY)), to: Some(us(zero - 3 * DAY)) },
        TimeRange { from: Some(us(zero + 25 * HOUR)), to: Some(us(zero + 49 * HOUR)) },
    ];
    // On and next to the submission times themselves: a run submitted at
    // `at` is in [at, …) and not in […, at) unless `at` is past a minute.
    for (_, at, _) in truth.runs.iter().take(12) {
        windows.push(TimeRange { from: Some(us(*at)), to: Some(us(at + 1)) });
        windows.push(TimeRange { from: Some(us(at - 3 * HOUR - 1)), to: Some(us(*at)) });
        windows.push(TimeRange { from: Some(us(at + 1)), to: Some(us(at + 2 * HOUR + 7)) });
    }
    for _ in 0..25 {
        let a = zero - 4 * HOUR + rng.below((60 * HOUR) as u64) as i64;
        let len = match rng.below(4) {
            0 => rng.below(MINUTE as u64) as i64,
            1 => rng.below((3 * HOUR) as u64) as i64,
            _ => rng.below((40 * HOUR) as u64) as i64,
        };
        windows.push(TimeRange { from: Some(us(a)), to: Some(us(a + len)) });
    }
    let filters: Vec<Vec<String>> = vec![
        Vec::new(),
        vec!["etl".to_owned()],
        vec!["report".to_owned(), "train".to_owned(), "deploy".to_owned()],
        vec!["no-such-workflow".to_owned()],
    ];
    for submitted in &windows {
        for workflows in &filters {
            let q = CountQuery { submitted: *submitted, workflows: workflows.clone() };
            assert_eq!(
                store.run_counts(q.clone()).await.unwrap(),
                brute_counts(&truth.runs, &q),
                "runs in {q:?}"
            );
            assert_eq!(
                store.task_counts(q.clone()).await.unwrap(),
                brute_counts(&truth.tasks, &q),
                "tasks in {q:?}"
            );
        }
    }

    // Trends: every window with a start, in each bucket it allows.
    for submitted in windows.iter().filter(|w| w.from.is_some()) {
        for bucket in [Bucket::Minute, Bucket::Hour, Bucket::Day] {
            let (from, to) = resolved(submitted);
            let to = match submitted.to {
                Some(_) => to,
                // Open: up to the newest submission's minute, inclusive.
                None => newest.map_or(i64::MIN, |n| (n.div_euclid(MINUTE) + 1) * MINUTE),
            };
            let w = width(bucket);
            let buckets = if to > from { (to - from.div_euclid(w) * w + w - 1) / w } else { 0 };
            for workflows in &filters[..3] {
                let q = CountQuery { submitted: *submitted, workflows: workflows.clone() };
                let trend = store.run_trend(q.clone(), bucket).await;
                if buckets > 10_000 {
                    assert!(
                        matches!(trend, Err(StoreError::InvalidQuery(_))),
                        "{bucket:?} of {q:?}: {trend:?}"
                    );
                    continue;
                }
                let expected = brute_trend(&truth.runs, &q, bucket, to);
                assert_eq!(trend.unwrap(), expected, "{bucket:?} trend of {q:?}");
                // A trend adds up to the count of its window.
                let mut sum: BTreeMap<RunStatus, u64> = BTreeMap::new();
                for point in &expected {
                    for (status, n) in &point.counts {
                        *sum.entry(*status).or_insert(0) += n;
                    }
                }
                if submitted.to.is_some() {
                    assert_eq!(sum, store.run_counts(q.clone()).await.unwrap(), "{bucket:?} sum of {q:?}");
                }

                let per_workflow = store.workflow_trends(q.clone(), bucket).await.unwrap();
                let mut names: Vec<String> = if workflows.is_empty() {
                    let (from, _) = resolved(submitted);
                    let mut names: Vec<String> = truth
                        .runs
                        .iter()
                        .filter(|(_, at, _)| *at >= from && *at < to)
                        .map(|(workflow, _, _)| workflow.clone())
                        .collect();
                    names.sort();
                    names.dedup();
                    names
                } else {
                    workflows.clone()
                };
                if expected.is_empty() && workflows.is_empty() {
                    names.clear();
                }
                let expected: BTreeMap<String, Vec<TrendPoint<RunStatus>>> = names
                    .into_iter()
                    .map(|name| {
                        let one = CountQuery { submitted: *submitted, workflows: vec![name.clone()] };
                        (name, brute_trend(&truth.runs, &one, bucket, to))
                    })
                    .collect();
                assert_eq!(per_workflow, expected, "{bucket:?} trends per workflow of {q:?}");
            }
        }
    }
}

pub async fn counts_and_trends_equal_a_count_of_the_records<S: Store>(store: Arc<S>) {
    let mut rng = Rng(0x5EED_C0DE);
    let mut work = Workload::new(0xC0FF_EE11);
    work.run(&*store, 60, 4).await;
    compare(&*store, &truth(&*store).await, &mut rng).await;
    // More rounds on the same runs: retries, claims, ends, and new runs.
    work.run(&*store, 50, 8).await;
    let truth = truth(&*store).await;
    assert!(
        truth.tasks.iter().any(|(_, _, s)| *s == TaskStatus::Running),
        "the workload leaves some running"
    );
    assert!(truth.tasks.iter().any(|(_, _, s)| *s == TaskStatus::Abandoned));
    compare(&*store, &truth, &mut rng).await;
}

/// Exact figures for a small story: creation, a retry, a claim, a refused
/// change and a refused run, and windows around the submission minute.
pub async fn counts_follow_each_applied_change_and_skip_refused_ones<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let at = us(t(0).as_micros() + 10 * HOUR + 30 * MINUTE + 5_000_000); // 10:30:05
    let mut run = new_run("etl", 3, at);
    run.tasks[2].queue = Some("q".to_owned());
    let (id, ids) = (run.id, run.tasks.iter().map(|t| t.id).collect::<Vec<_>>());
    let later = |s: i64| us(at.as_micros() + 3 * HOUR + s * 1_000_000);
    let all = CountQuery::default();
    let runs = |q: CountQuery| {
        let store = store.clone();
        async move { store.run_counts(q).await.unwrap() }
    };
    let tasks = |q: CountQuery| {
        let store = store.clone();
        async move { store.task_counts(q).await.unwrap() }
    };
    assert_eq!(runs(all.clone()).await, BTreeMap::new(), "an empty store counts nothing");
    assert_eq!(tasks(all.clone()).await, BTreeMap::new());

    let outcomes =
        store.apply(vec![Change::CreateRun(run.clone()), Change::CreateRun(run.clone())]).await.unwrap();
    assert!(outcomes[0].is_applied() && !outcomes[1].is_applied());
    assert_eq!(
        runs(all.clone()).await,
        BTreeMap::from([(RunStatus::Queued, 1)]),
        "the refused copy counts nothing"
    );
    assert_eq!(tasks(all.clone()).await, BTreeMap::from([(Submitted, 3)]));

    // One batch: the run starts, A runs and fails into a retry, B is
    // blocked, C is offered; then a change from a wrong status and a stale
    // token, both refused.
    let (start_a, token) = start(ids[0], 1, later(2));
    let outcomes = store
        .apply(vec![
            run_change(id, RunStatus::Queued, RunStatus::Running, later(1), None),
            plain(ids[0], 0, Submitted, Pending, later(1)),
            start_a,
            end(ids[0], token, 1, Pending, later(3), AttemptResult::default()),
            plain(ids[1], 0, Submitted, Blocked, later(1)),
            plain(ids[2], 0, Submitted, Pending, later(1)),
            offer(ids[2], id, "q", later(1)),
            plain(ids[1], 0, Submitted, Pending, later(4)),
            end(ids[0], LeaseToken::random(), 1, Completed, later(5), AttemptResult::default()),
            run_change(id, RunStatus::Queued, RunStatus::Running, later(5), None),
        ])
        .await
        .unwrap();
    let applied: Vec<bool> = outcomes.iter().map(Outcome::is_applied).collect();
    assert_eq!(applied, [true, true, true, true, true, true, true, false, false, false]);
    assert_eq!(runs(all.clone()).await, BTreeMap::from([(RunStatus::Running, 1)]));
    assert_eq!(tasks(all.clone()).await, BTreeMap::from([(Blocked, 1), (Pending, 2)]));

    // A claim moves C; a second start of A (the retry) and its end.
    let claimed = store.claim(claim_request(&["q"], 5, later(6), "s1")).await.unwrap();
    assert_eq!(claimed.tasks.len(), 1);
    assert_eq!(tasks(all.clone()).await, BTreeMap::from([(Blocked, 1), (Pending, 1), (Running, 1)]));
    let (start_a, token) = start(ids[0], 2, later(7));
    store
        .apply(vec![start_a, end(ids[0], token, 2, Completed, later(8), AttemptResult::default())])
        .await
        .unwrap();
    assert_eq!(tasks(all.clone()).await, BTreeMap::from([(Blocked, 1), (Running, 1), (Completed, 1)]));

    // Windows: the submission minute is 10:30 (tasks 10:30 too).
    let window = |from: i64, to: i64| CountQuery {
        submitted: TimeRange { from: Some(us(from)), to: Some(us(to)) },
        workflows: Vec::new(),
    };
    let minute = at.as_micros().div_euclid(MINUTE) * MINUTE;
    let one = BTreeMap::from([(RunStatus::Running, 1)]);
    assert_eq!(runs(window(minute, minute + MINUTE)).await, one);
    assert_eq!(runs(window(minute + 59_999_999, minute + MINUTE)).await, one, "from rounds down");
    assert_eq!(runs(window(minute - HOUR, minute + 1)).await, one, "to rounds up");
    assert_eq!(runs(window(minute - HOUR, minute)).await, BTreeMap::new(), "to is exclusive");
    assert_eq!(runs(window(minute + MINUTE, minute + DAY)).await, BTreeMap::new());
    assert_eq!(runs(window(minute, minute)).await, BTreeMap::new(), "an empty window");
    assert_eq!(runs(window(minute - 2 * DAY, minute + 2 * DAY)).await, one, "whole hours and edges");
    let other = CountQuery { workflows: vec!["backup".to_owned()], ..all.clone() };
    assert_eq!(runs(other).await, BTreeMap::new());

    // Its trend: the 10:00 hour holds it, the others are empty.
    let q = window(t(0).as_micros() + 8 * HOUR + 1, t(0).as_micros() + 12 * HOUR);
    let trend = store.run_trend(q.clone(), Bucket::Hour).await.unwrap();
    let hours: Vec<(i64, usize)> =
        trend.iter().map(|p| ((p.at.as_micros() - t(0).as_micros()) / HOUR, p.counts.len())).collect();
    assert_eq!(hours, [(8, 0), (9, 0), (10, 1), (11, 0)]);
    let days = store.run_trend(q.clone(), Bucket::Day).await.unwrap();
    assert_eq!(
        days,
        vec![TrendPoint { at: t(0), counts: one.clone() }],
        "the day bucket starts at midnight UTC"
    );
    let per = store.workflow_trends(q, Bucket::Day).await.unwrap();
    assert_eq!(per, BTreeMap::from([("etl".to_owned(), days)]));
}

/// Trends need a start and at most 10,000 buckets; empty windows have none.
pub async fn trends_refuse_unbounded_windows<S: Store>(store: Arc<S>) {
    let from = t(0).as_micros();
    let q = |from: Option<i64>, to: Option<i64>| CountQuery {
        submitted: TimeRange { from: from.map(us), to: to.map(us) },
        workflows: Vec::new(),
    };
    let minutes = |n: i64| Some(from + n * MINUTE);
    for bucket in [Bucket::Minute, Bucket::Hour, Bucket::Day] {
        assert!(matches!(
            store.run_trend(q(None, minutes(5)), bucket).await,
            Err(StoreError::InvalidQuery(_))
        ));
        assert!(matches!(
            store.workflow_trends(q(None, None), bucket).await,
            Err(StoreError::InvalidQuery(_))
        ));
    }
    let too_long = q(Some(from), minutes(10_001));
    assert!(matches!(
        store.run_trend(too_long.clone(), Bucket::Minute).await,
        Err(StoreError::InvalidQuery(_))
    ));
    assert!(matches!(
        store.workflow_trends(too_long.clone(), Bucket::Minute).await,
        Err(StoreError::InvalidQuery(_))
    ));
    assert_eq!(store.run_trend(too_long, Bucket::Hour).await.unwrap().len(), 167, "10,001 minutes in hours");
    let longest = store.run_trend(q(Some(from + 1), minutes(10_000)), Bucket::Minute).await.unwrap();
    assert_eq!(longest.len(), 10_000);
    assert!(longest.iter().all(|p| p.counts.is_empty()));
    assert_eq!(longest[1].at, us(from + MINUTE));
    let days = 10_000 * DAY;
    assert!(matches!(
        store.run_trend(q(Some(from), Some(from + days + 1)), Bucket::Day).await,
        Err(StoreError::InvalidQuery(_))
    ));

    // Nothing stored: an open end has nothing to reach.
    assert_eq!(store.run_trend(q(Some(from), None), Bucket::Minute).await.unwrap(), Vec::new());
    assert_eq!(store.run_trend(q(Some(from), Some(from)), Bucket::Hour).await.unwrap(), Vec::new());
    let asked = CountQuery { workflows: vec!["etl".to_owned()], ..q(Some(from), Some(from)) };
    assert_eq!(
        store.workflow_trends(asked, Bucket::Hour).await.unwrap(),
        BTreeMap::from([("etl".to_owned(), Vec::new())])
    );
    // A stored run ends an open window at its minute.
    store.apply(vec![Change::CreateRun(new_run("etl", 1, us(from + 90 * MINUTE + 1)))]).await.unwrap();
    let open = store.run_trend(q(Some(from + 60 * MINUTE), None), Bucket::Minute).await.unwrap();
    assert_eq!(open.len(), 31);
    assert_eq!(open[30].counts, BTreeMap::from([(RunStatus::Queued, 1)]));
}

// ---------------------------------------------------------------------------
// Support for the backends' own tests (migrations)

/// Every count and trend of `store` over many windows equals a count of its
/// records (the check of [`counts_and_trends_equal_a_count_of_the_records`],
/// on whatever the store holds).
pub async fn assert_counts_equal_the_records<S: Store>(store: &S) {
    compare(store, &truth(store).await, &mut Rng(0xD1CE)).await;
}

/// Creates and moves `runs` runs at random through `store`.
pub async fn random_runs<S: Store>(store: &S, seed: u64, runs: usize) {
    Workload::new(seed).run(store, runs, 4).await;
}

/// The SQLite file at `path` (created if missing) at schema `version`
/// only, as an older Cairn left it.
pub fn sqlite_at_version(path: &std::path::Path, version: u16) -> Result<(), StoreError> {
    crate::sqlite::migrate_to(path, version)
}

/// The PostgreSQL database at `url` at schema `version` only, as an older
/// Cairn left it.
pub async fn postgres_at_version(url: &str, version: u16) -> Result<(), StoreError> {
    crate::postgres::migrate_to(url, version).await
}
