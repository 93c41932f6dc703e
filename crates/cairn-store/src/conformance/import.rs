//! The conformance checks of [`Store::import_runs`]: an imported run reads
//! back exactly as the same run written change by change through
//! [`Store::apply`] does; every search finds imported runs and tasks as a
//! brute-force filter of what was imported; counts and trends equal a count
//! of the records after imports mixed with live work; and a call holding a
//! run that is not finished, whose record the store could not have written,
//! or whose id is taken, is refused whole, naming the field, with nothing
//! written.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_core::progress::Progress;
use cairn_core::record::{Actor, RunTransition, TaskState, Transition};
use cairn_core::{LeaseToken, RunId, RunStatus, TaskId, TaskStatus, Timestamp};

use super::counts::{assert_counts_equal_the_records, random_runs};
use super::search::{History, RunFacts, TaskFacts, expected_runs, expected_tasks, walk_runs, walk_tasks};
use super::{Rng, end, new_run, plain, run_change, start, t};
use crate::{
    AttemptRecord, AttemptResult, Change, CountQuery, FinishedRun, Heartbeat, Order, PhaseQuery,
    ProgressSample, RunDetail, RunFilter, RunRecord, RunSearch, RunSort, Store, StoreError, StoredLease,
    TaskFilter, TaskRecord, TaskSearch, TimeRange,
};

const WORKFLOWS: [&str; 4] = ["etl", "report", "backup", "train"];
const TRIGGERS: [&str; 4] = ["manual", "schedule", "api", "retry"];
const LABELS: [&str; 5] = ["team=data", "team=ops", "tier=1", "tier=2", "pii"];
const WORKERS: [&str; 3] = ["w1", "w2", "w3"];

/// How one task of a generated run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Runs, after `retries` failed attempts, and completes.
    Completed { retries: u32 },
    /// Every attempt fails (the last one for good).
    Failed { attempts: u32 },
    /// Canceled while running.
    CanceledRunning,
    /// Canceled while waiting to run.
    CanceledPending,
    /// A false precondition when it was due.
    Skipped,
    /// An upstream failed.
    Abandoned,
}

const FATES: [Fate; 10] = [
    Fate::Completed { retries: 0 },
    Fate::Completed { retries: 0 },
    Fate::Completed { retries: 0 },
    Fate::Completed { retries: 1 },
    Fate::Completed { retries: 2 },
    Fate::Failed { attempts: 1 },
    Fate::Failed { attempts: 3 },
    Fate::CanceledRunning,
    Fate::Skipped,
    Fate::Abandoned,
];

/// A task's log as it is written, through the one transition function.
struct Log {
    state: TaskState,
    log: Vec<Transition>,
}

impl Log {
    fn new(at: Timestamp) -> Log {
        let (state, first) = TaskState::submit(at, "created", Actor::Scheduler);
        Log { state, log: vec![first] }
    }

    fn to(&mut self, to: TaskStatus, at: Timestamp, reason: &str, actor: Actor) {
        let t = self.state.transition(to, at, reason, actor).expect("the generator writes legal logs");
        self.log.push(t);
    }
}

/// A finished run of `workflow` submitted at `at`, one task per fate, with
/// a realistic record: retries on other workers, progress samples, outputs
/// and a checkpoint; `seed` varies the times and names. Its status follows
/// its tasks (a cancel wins, then a failure; `partial` lets failures
/// through as PARTIALLY_SUCCEEDED).
pub fn importable_run(
    workflow: &str,
    at: Timestamp,
    fates: &[Fate],
    partial: bool,
    seed: u64,
) -> FinishedRun {
    use TaskStatus::*;
    let mut rng = Rng(seed | 1);
    let id = RunId::new(at);
    let micros = |ms: i64| Timestamp::from_micros(at.as_micros() + ms * 1000 + (seed % 997) as i64);
    let mut run_log = vec![RunTransition {
        from: None,
        to: RunStatus::Queued,
        at,
        reason: "manual run".to_owned(),
        actor: Actor::User("alice".to_owned()),
    }];
    let started = micros(1);
    run_log.push(RunTransition {
        from: Some(RunStatus::Queued),
        to: RunStatus::Running,
        at: started,
        reason: "started".to_owned(),
        actor: Actor::Scheduler,
    });
    let mut detail = RunDetail {
        run: RunRecord {
            id,
            workflow: workflow.to_owned(),
            status: RunStatus::Running,
            trigger: "manual".to_owned(),
            params: BTreeMap::from([("day".to_owned(), format!("d{}", seed % 30))]),
            owner: Some("server:s1".to_owned()),
            spec_path: Some(format!("{workflow}.yaml")),
            submitted_at: at,
            started_at: Some(started),
            finished_at: None,
            error: None,
            cancel_requested_by: None,
            schedule_tick: None,
        },
        run_transitions: Vec::new(),
        tasks: Vec::new(),
        transitions: BTreeMap::new(),
        attempts: BTreeMap::new(),
    };
    let mut progress = BTreeMap::new();
    let mut last = started;
    for (index, fate) in fates.iter().enumerate() {
        let task_id = TaskId::new(at);
        let mut log = Log::new(at);
        let mut clock = 2 + rng.below(50) as i64;
        let mut tick = |rng: &mut Rng| {
            clock += 1 + rng.below(4_000) as i64;
            micros(clock)
        };
        let mut attempts: Vec<AttemptRecord> = Vec::new();
        let mut samples = Vec::new();
        let mut task = TaskRecord {
            id: task_id,
            run: id,
            index: index as u32,
            name: format!("step-{index}"),
            status: Submitted,
            attempt: 0,
            max_attempts: 3,
            queue: rng.chance(30).then(|| "gpu".to_owned()),
            submitted_at: at,
            started_at: None,
            finished_at: None,
            not_before: None,
            lease: None,
            progress: None,
            progress_at: None,
            exit_code: None,
            error: None,
            outputs: BTreeMap::new(),
            details: None,
        };
        let blocked = matches!(fate, Fate::Abandoned) || (index > 0 && rng.chance(50));
        if blocked {
            log.to(Blocked, micros(1), "waiting for step-0", Actor::Scheduler);
        }
        match fate {
            Fate::Abandoned => {
                log.to(Abandoned, tick(&mut rng), "upstream \"step-0\" failed", Actor::Scheduler)
            }
            Fate::Skipped if blocked => {
                log.to(Skipped, tick(&mut rng), "upstream \"step-0\" was skipped", Actor::Scheduler)
            }
            _ => {
                let reason = if blocked { "dependencies finished" } else { "no dependencies" };
                log.to(Pending, if blocked { tick(&mut rng) } else { micros(1) }, reason, Actor::Scheduler);
                let (runs, end_as) = match *fate {
                    Fate::Completed { retries } => (retries + 1, Completed),
                    Fate::Failed { attempts } => (attempts, Failed),
                    Fate::CanceledRunning => (1, Canceled),
                    Fate::CanceledPending | Fate::Skipped | Fate::Abandoned => (0, Pending),
                };
                for k in 1..=runs {
                    let worker = rng.pick(&WORKERS).to_owned();
                    let began = tick(&mut rng);
                    log.to(Running, began, &format!("attempt {k} started"), Actor::Worker(worker.clone()));
                    if rng.chance(60) {
                        let percent = (10 * (1 + rng.below(9))) as f32;
                        let sampled = tick(&mut rng);
                        samples.push(ProgressSample {
                            attempt: k,
                            at: sampled,
                            percent,
                            message: Some(format!("{percent}% done")),
                        });
                        task.progress = Some(Progress { percent, message: Some(format!("{percent}% done")) });
                        task.progress_at = Some(sampled);
                    } else {
                        task.progress = None;
                        task.progress_at = None;
                    }
                    let ended = tick(&mut rng);
                    let last_one = k == runs;
                    let (to, exit_code, error, reason) = if !last_one {
                        let error = "exit code 1".to_owned();
                        (
                            Pending,
                            Some(1),
                            Some(error.clone()),
                            format!("attempt {k} failed: {error}; retry {k} of 2 in 2s"),
                        )
                    } else {
                        match end_as {
                            Completed => (Completed, Some(0), None, "exit code 0".to_owned()),
                            Failed => {
                                (Failed, Some(2), Some("exit code 2".to_owned()), "exit code 2".to_owned())
                            }
                            _ => (
                                Canceled,
                                None,
                                Some("canceled by user:bob".to_owned()),
                                "canceled by user:bob".to_owned(),
                            ),
                        }
                    };
                    log.to(to, ended, &reason, Actor::Worker(worker.clone()));
                    attempts.push(AttemptRecord {
                        task: task_id,
                        attempt: k,
                        worker,
                        started_at: began,
                        ended_at: Some(ended),
                        outcome: Some(if to == Pending { Failed } else { to }),
                        exit_code,
                        error,
                    });
                    task.started_at = Some(began);
                    if last_one && to == Completed && rng.chance(50) {
                        task.outputs = BTreeMap::from([("rows".to_owned(), format!("{}", rng.below(1000)))]);
                    }
                    if rng.chance(20) {
                        task.details = Some(serde_json::json!({ "offset": k * 100 }));
                    }
                }
                match fate {
                    Fate::CanceledPending => {
                        log.to(Canceled, tick(&mut rng), "canceled by user:bob", Actor::User("bob".into()))
                    }
                    Fate::Skipped => log.to(Skipped, tick(&mut rng), "precondition false", Actor::Scheduler),
                    _ => {}
                }
            }
        }
        let log = log.log;
        let end_at = log.last().map_or(at, |t| t.at);
        last = last.max(end_at);
        task.status = log.last().map_or(Submitted, |t| t.to);
        task.attempt = attempts.last().map_or(0, |a| a.attempt);
        task.finished_at = Some(end_at);
        task.exit_code = attempts.last().and_then(|a| a.exit_code);
        task.error = attempts.last().and_then(|a| a.error.clone());
        detail.transitions.insert(task_id, log);
        if !attempts.is_empty() {
            detail.attempts.insert(task_id, attempts);
        }
        if !samples.is_empty() {
            progress.insert(task_id, samples);
        }
        detail.tasks.push(task);
    }
    let statuses: Vec<TaskStatus> = detail.tasks.iter().map(|t| t.status).collect();
    let (status, error) = if statuses.contains(&Canceled) {
        detail.run.cancel_requested_by = Some(Actor::User("bob".to_owned()));
        (RunStatus::Canceled, None)
    } else if statuses.contains(&Failed) && partial && statuses.contains(&Completed) {
        (RunStatus::PartiallySucceeded, None)
    } else if statuses.contains(&Failed) {
        (RunStatus::Failed, Some("step failed".to_owned()))
    } else {
        (RunStatus::Completed, None)
    };
    let finished = Timestamp::from_micros(last.as_micros() + 1000);
    run_log.push(RunTransition {
        from: Some(RunStatus::Running),
        to: status,
        at: finished,
        reason: format!("run {}", status.as_str().to_lowercase()),
        actor: Actor::Scheduler,
    });
    detail.run.status = status;
    detail.run.finished_at = Some(finished);
    detail.run.error = error;
    detail.run_transitions = run_log;
    FinishedRun {
        detail,
        spec_source: Some(format!("name: {workflow}\nsteps: []\n")),
        labels: vec!["team=data".to_owned()],
        progress,
    }
}

/// A run canceled before it started: QUEUED -> CANCELED, every task
/// SUBMITTED -> CANCELED.
fn canceled_while_queued(workflow: &str, at: Timestamp, tasks: u32) -> FinishedRun {
    let mut run = importable_run(workflow, at, &[], false, 7);
    let d = &mut run.detail;
    let canceled = Timestamp::from_micros(at.as_micros() + 5_000);
    d.run_transitions.truncate(1);
    d.run_transitions.push(RunTransition {
        from: Some(RunStatus::Queued),
        to: RunStatus::Canceled,
        at: canceled,
        reason: "canceled by user:bob".to_owned(),
        actor: Actor::User("bob".to_owned()),
    });
    d.run.status = RunStatus::Canceled;
    d.run.started_at = None;
    d.run.finished_at = Some(canceled);
    d.run.error = None;
    for index in 0..tasks {
        let id = TaskId::new(at);
        let mut log = Log::new(at);
        log.to(TaskStatus::Canceled, canceled, "canceled by user:bob", Actor::User("bob".to_owned()));
        d.tasks.push(TaskRecord {
            id,
            run: d.run.id,
            index,
            name: format!("step-{index}"),
            status: TaskStatus::Canceled,
            attempt: 0,
            max_attempts: 1,
            queue: None,
            submitted_at: at,
            started_at: None,
            finished_at: Some(canceled),
            not_before: None,
            lease: None,
            progress: None,
            progress_at: None,
            exit_code: None,
            error: None,
            outputs: BTreeMap::new(),
            details: None,
        });
        d.transitions.insert(id, log.log);
    }
    run
}

/// `n` finished runs of random shapes, submitted in order from `from`, a
/// few seconds to minutes apart, with random workflows, triggers (a
/// scheduled run carries its tick), labels and fates.
pub fn importable_runs(seed: u64, n: usize, from: Timestamp) -> Vec<FinishedRun> {
    let mut rng = Rng(seed | 1);
    let mut at = from.as_micros();
    (0..n)
        .map(|i| {
            at += 1_000 + rng.below(240_000_000) as i64;
            let at = Timestamp::from_micros(at);
            let workflow = rng.pick(&WORKFLOWS);
            let mut run = if rng.chance(5) {
                canceled_while_queued(workflow, at, rng.below(4) as u32)
            } else {
                let fates: Vec<Fate> = (0..rng.below(6)).map(|_| rng.pick(&FATES)).collect();
                importable_run(workflow, at, &fates, rng.chance(30), seed.wrapping_add(i as u64))
            };
            let trigger = rng.pick(&TRIGGERS);
            run.detail.run.trigger = trigger.to_owned();
            if trigger == "schedule" {
                run.detail.run.schedule_tick = Some(at);
            }
            run.labels = LABELS.iter().filter(|_| rng.chance(40)).map(|l| (*l).to_owned()).collect();
            if rng.chance(10) {
                run.spec_source = None;
            }
            run
        })
        .collect()
}

/// What a search may know of `runs`, as the search checks keep it.
fn facts(runs: &[FinishedRun]) -> History {
    let mut h = History::default();
    for run in runs {
        let d = &run.detail;
        h.runs.push(RunFacts {
            id: d.run.id,
            workflow: d.run.workflow.clone(),
            trigger: d.run.trigger.clone(),
            labels: run.labels.clone(),
            status: d.run.status,
            finished_at: d.run.finished_at,
        });
        for task in &d.tasks {
            h.tasks.push(TaskFacts {
                id: task.id,
                run: d.run.id,
                workflow: d.run.workflow.clone(),
                name: task.name.clone(),
                queue: task.queue.clone(),
                status: task.status,
                finished_at: task.finished_at,
                workers: d
                    .attempts
                    .get(&task.id)
                    .map_or_else(Vec::new, |a| a.iter().map(|a| a.worker.clone()).collect()),
            });
        }
    }
    h
}

/// The same record under new ids: a run that was never stored.
fn renamed(run: &FinishedRun) -> FinishedRun {
    let mut run = run.clone();
    let d = &mut run.detail;
    let id = RunId::new(d.run.submitted_at);
    d.run.id = id;
    let mut names = BTreeMap::new();
    for task in &mut d.tasks {
        let new = TaskId::new(task.submitted_at);
        names.insert(task.id, new);
        task.id = new;
        task.run = id;
    }
    d.transitions = std::mem::take(&mut d.transitions).into_iter().map(|(k, v)| (names[&k], v)).collect();
    d.attempts = std::mem::take(&mut d.attempts)
        .into_iter()
        .map(|(k, mut v)| {
            v.iter_mut().for_each(|a| a.task = names[&k]);
            (names[&k], v)
        })
        .collect();
    run.progress = std::mem::take(&mut run.progress).into_iter().map(|(k, v)| (names[&k], v)).collect();
    if let Some(tick) = d.run.schedule_tick {
        d.run.schedule_tick = Some(Timestamp::from_micros(tick.as_micros() + 1));
    }
    run
}

/// Everything a store shows of a run: detail, workflow text, samples.
async fn read_back<S: Store>(store: &S, run: &FinishedRun) -> FinishedRun {
    read(store, run.detail.run.id, &run.labels).await
}

async fn read<S: Store>(store: &S, id: RunId, labels: &[String]) -> FinishedRun {
    let detail = store.run_detail(id).await.unwrap().unwrap_or_else(|| panic!("run {id} was imported"));
    let mut progress = BTreeMap::new();
    for task in &detail.tasks {
        let samples = store.progress_samples(task.id).await.unwrap();
        if !samples.is_empty() {
            progress.insert(task.id, samples);
        }
    }
    FinishedRun {
        spec_source: store.spec_source(id).await.unwrap(),
        labels: labels.to_vec(),
        detail,
        progress,
    }
}

async fn import<S: Store>(store: &S, runs: Vec<FinishedRun>) -> Result<(), StoreError> {
    store.import_runs(Arc::new(runs)).await
}

/// A run driven through `apply` to its end, every kind of record in it: a
/// retry with samples and a checkpoint, outputs, a failure, an abandoned
/// and a skipped task, labels. Returns it as the store reads it.
async fn applied_run<S: Store>(store: &S) -> FinishedRun {
    use TaskStatus::*;
    let mut run = new_run("etl", 4, t(0));
    run.labels = vec!["team=data".to_owned(), "pii".to_owned()];
    run.tasks[1].queue = Some("gpu".to_owned());
    let (id, ids) = (run.id, run.tasks.iter().map(|t| t.id).collect::<Vec<_>>());
    let labels = run.labels.clone();
    let beat = |task: TaskId, token: LeaseToken, at: Timestamp, percent: f32, details: bool| {
        Change::Heartbeat(Heartbeat {
            task,
            token,
            at,
            lease_expires_at: at.saturating_add(super::LEASE),
            progress: Some(Progress { percent, message: Some(format!("{percent}%")) }),
            sample: true,
            details: details.then(|| serde_json::json!({"offset": 7})),
        })
    };
    let ok = |changes: Vec<Change>| async move {
        let outcomes = store.apply(changes).await.unwrap();
        assert!(outcomes.iter().all(|o| o.is_applied()), "{outcomes:?}");
    };
    ok(vec![Change::CreateRun(run)]).await;
    ok(vec![
        run_change(id, RunStatus::Queued, RunStatus::Running, t(1), None),
        plain(ids[0], 0, Submitted, Pending, t(1)),
        plain(ids[1], 0, Submitted, Blocked, t(1)),
        plain(ids[2], 0, Submitted, Blocked, t(1)),
        plain(ids[3], 0, Submitted, Pending, t(1)),
    ])
    .await;
    let (s, first) = start(ids[0], 1, t(2));
    ok(vec![s, plain(ids[3], 0, Pending, Skipped, t(2))]).await;
    ok(vec![beat(ids[0], first, t(3), 20.0, false)]).await;
    let failed =
        AttemptResult { exit_code: Some(1), error: Some("exit code 1".into()), outputs: BTreeMap::new() };
    ok(vec![end(ids[0], first, 1, Pending, t(4), failed)]).await;
    let (s, second) = start(ids[0], 2, t(6));
    ok(vec![s]).await;
    ok(vec![beat(ids[0], second, t(7), 50.0, true)]).await;
    let outputs = BTreeMap::from([("rows".to_owned(), "12".to_owned())]);
    let done = AttemptResult { exit_code: Some(0), error: None, outputs };
    ok(vec![end(ids[0], second, 2, Completed, t(8), done), plain(ids[1], 0, Blocked, Pending, t(8))]).await;
    let (s, third) = start(ids[1], 1, t(9));
    ok(vec![s]).await;
    let boom =
        AttemptResult { exit_code: Some(2), error: Some("exit code 2".into()), outputs: BTreeMap::new() };
    ok(vec![
        end(ids[1], third, 1, Failed, t(10), boom),
        plain(ids[2], 0, Blocked, Abandoned, t(10)),
        run_change(id, RunStatus::Running, RunStatus::Failed, t(11), Some("step-1 failed")),
    ])
    .await;
    read(store, id, &labels).await
}

/// A run written change by change, read back and imported under new ids,
/// reads back the same: record, tasks, logs, attempts, workflow text,
/// samples; `task` shows each task as the run does; and the imported
/// runs of a random history read back exactly as given.
pub async fn imported_runs_read_back_as_applied_ones<S: Store>(store: Arc<S>) {
    let applied = applied_run(&*store).await;
    assert_eq!(applied.detail.run.status, RunStatus::Failed);
    assert!(!applied.progress.is_empty() && applied.spec_source.is_some(), "{applied:?}");
    let mut copy = renamed(&applied);
    copy.detail.run.workflow = "etl-copy".to_owned();
    import(&*store, vec![copy.clone()]).await.expect("a run read from a store imports");
    assert_eq!(read_back(&*store, &copy).await, copy);
    // The time in each phase, kept on each task, is what `apply` summed.
    let steps = |workflow: &str| {
        let q = PhaseQuery { workflows: vec![workflow.to_owned()], ..PhaseQuery::default() };
        let store = store.clone();
        async move { store.phase_stats(q).await.expect("phase stats").steps }
    };
    let mut applied_steps = steps("etl").await;
    applied_steps.iter_mut().for_each(|s| s.workflow = "etl-copy".to_owned());
    assert!(
        applied_steps
            .iter()
            .any(|s| s.pending.is_some_and(|p| !p.max.is_zero())
                && s.execution.is_some_and(|e| !e.max.is_zero())),
        "{applied_steps:?}"
    );
    assert_eq!(steps("etl-copy").await, applied_steps);
    for task in &copy.detail.tasks {
        let got = store.task(task.id).await.unwrap().expect("an imported task reads by id");
        assert_eq!(got.run, copy.detail.run);
        assert_eq!(&got.task, task);
        assert_eq!(got.transitions, copy.detail.transitions[&task.id]);
        assert_eq!(got.attempts, copy.detail.attempts.get(&task.id).cloned().unwrap_or_default());
    }

    let runs = importable_runs(11, 40, t(60_000));
    import(&*store, runs.clone()).await.expect("generated runs import");
    for run in &runs {
        assert_eq!(read_back(&*store, run).await, *run);
    }
    // Each status and fate is there to be read back.
    let statuses: std::collections::BTreeSet<RunStatus> = runs.iter().map(|r| r.detail.run.status).collect();
    assert!(statuses.len() >= 4, "{statuses:?}");
    assert!(runs.iter().any(|r| r.detail.attempts.values().any(|a| a.len() > 1)), "retries are imported");
    assert_counts_equal_the_records(&*store).await;
}

/// Every search finds imported runs and tasks as a brute-force filter of
/// what was imported does, newest first and by finish time, through
/// every page; the runs of one import call sit among others.
pub async fn imported_runs_are_found_by_every_search<S: Store>(store: Arc<S>) {
    let runs = importable_runs(23, 300, t(0));
    for chunk in runs.chunks(70) {
        import(&*store, chunk.to_vec()).await.unwrap();
    }
    let h = facts(&runs);
    let window = TimeRange { from: runs[100].detail.run.finished_at, to: runs[200].detail.run.finished_at };
    let run_searches = [
        RunFilter { statuses: vec![RunStatus::Failed, RunStatus::Canceled], ..Default::default() },
        RunFilter { workflows: vec!["etl".to_owned()], ..Default::default() },
        RunFilter { labels: vec!["team".to_owned()], ..Default::default() },
        RunFilter { labels: vec!["tier=1".to_owned(), "pii".to_owned()], ..Default::default() },
        RunFilter { triggers: vec!["schedule".to_owned()], ..Default::default() },
        RunFilter { finished: window, ..Default::default() },
        RunFilter::default(),
    ];
    let mut found = 0;
    for filter in run_searches {
        for (sort, order) in
            [(RunSort::Submitted, Order::NewestFirst), (RunSort::Finished, Order::NewestFirst)]
        {
            let q = RunSearch { filter: filter.clone(), sort, order, limit: 37, ..Default::default() };
            let want = expected_runs(&h, &q);
            found += want.len();
            assert_eq!(walk_runs(&*store, q.clone()).await, want, "{q:?}");
        }
    }
    let task_searches = [
        TaskFilter { statuses: vec![TaskStatus::Failed, TaskStatus::Canceled], ..Default::default() },
        TaskFilter { workflows: vec!["report".to_owned()], ..Default::default() },
        TaskFilter { workers: vec!["w2".to_owned()], ..Default::default() },
        TaskFilter { queues: vec!["gpu".to_owned()], ..Default::default() },
        TaskFilter { steps: vec!["step-1".to_owned()], finished: window, ..Default::default() },
    ];
    for filter in task_searches {
        for sort in [RunSort::Submitted, RunSort::Finished] {
            let q = TaskSearch { filter: filter.clone(), sort, limit: 53, ..Default::default() };
            let want = expected_tasks(&h, &q);
            found += want.len();
            assert_eq!(walk_tasks(&*store, q.clone()).await, want, "{q:?}");
        }
    }
    assert!(found > 2_000, "the searches compare many rows: {found}");
}

/// Imports between rounds of live work (runs created and moved through
/// `apply`, some still running) count as their changes would have: every
/// count and trend equals a count of the records.
pub async fn imports_count_as_their_changes_would<S: Store>(store: Arc<S>) {
    let day = 24 * 3_600_000;
    random_runs(&*store, 0xA11CE, 30).await;
    import(&*store, importable_runs(31, 60, t(-2 * 3_600_000))).await.unwrap();
    random_runs(&*store, 0xB0B, 30).await;
    import(&*store, importable_runs(37, 60, t(day))).await.unwrap();
    let all = store.task_counts(CountQuery::default()).await.unwrap();
    assert!(all.get(&TaskStatus::Running).is_some_and(|n| *n > 0), "live work is mixed in: {all:?}");
    assert!(all.get(&TaskStatus::Abandoned).is_some_and(|n| *n > 0), "{all:?}");
    assert_counts_equal_the_records(&*store).await;
}

/// What `import` refused: the run and field named, and nothing written —
/// not even the good runs of the call.
async fn refused<S: Store>(store: &S, runs: Vec<FinishedRun>, run: RunId, field: &str) -> String {
    let before = (
        store.run_counts(CountQuery::default()).await.unwrap(),
        store.task_counts(CountQuery::default()).await.unwrap(),
    );
    let ids: Vec<RunId> = runs.iter().map(|r| r.detail.run.id).collect();
    let stored: Vec<bool> = futures_util::future::join_all(ids.iter().map(|id| store.run(*id)))
        .await
        .into_iter()
        .map(|r| r.unwrap().is_some())
        .collect();
    match import(store, runs).await {
        Err(StoreError::InvalidImport { run: r, field: f, reason }) => {
            assert_eq!((r, f.as_str()), (run, field), "{reason}");
            let after: Vec<bool> = futures_util::future::join_all(ids.iter().map(|id| store.run(*id)))
                .await
                .into_iter()
                .map(|r| r.unwrap().is_some())
                .collect();
            assert_eq!(after, stored, "a refused import writes no run");
            let counts = (
                store.run_counts(CountQuery::default()).await.unwrap(),
                store.task_counts(CountQuery::default()).await.unwrap(),
            );
            assert_eq!(counts, before, "a refused import counts nothing");
            let message = StoreError::InvalidImport { run: r, field: f, reason: reason.clone() }.to_string();
            assert!(message.contains(&run.to_string()) && message.contains(field), "{message}");
            reason
        }
        other => panic!("expected a refusal of {run} at {field}, got {other:?}"),
    }
}

/// A call with a run that is not finished, a run or task id already
/// stored or given twice, or a schedule tick taken is refused whole.
pub async fn imports_refuse_unfinished_runs_and_taken_ids<S: Store>(store: Arc<S>) {
    use Fate::*;
    let done = |at: i64, seed: u64| {
        importable_run("etl", t(at), &[Completed { retries: 1 }, Failed { attempts: 1 }], false, seed)
    };
    let good = done(0, 1);

    let mut live = done(10, 2);
    live.detail.run.status = RunStatus::Running;
    let why = refused(&*store, vec![good.clone(), live.clone()], live.detail.run.id, "run.status").await;
    assert!(why.contains("only finished runs"), "{why}");
    let mut live = done(20, 3);
    live.detail.tasks[0].status = TaskStatus::Running;
    refused(&*store, vec![good.clone(), live.clone()], live.detail.run.id, "tasks[0].status").await;

    import(&*store, vec![good.clone()]).await.unwrap();
    let other = done(30, 4);
    let why = refused(&*store, vec![other.clone(), good.clone()], good.detail.run.id, "id").await;
    assert!(why.contains("already stored"), "{why}");
    let why = refused(&*store, vec![other.clone(), other.clone()], other.detail.run.id, "id").await;
    assert!(why.contains("twice"), "{why}");

    // A task id of a stored run, in a new run.
    let mut thief = done(40, 5);
    let (old, new) = (thief.detail.tasks[1].id, good.detail.tasks[0].id);
    thief.detail.tasks[1].id = new;
    let log = thief.detail.transitions.remove(&old).unwrap();
    thief.detail.transitions.insert(new, log);
    if let Some(mut tries) = thief.detail.attempts.remove(&old) {
        tries.iter_mut().for_each(|a| a.task = new);
        thief.detail.attempts.insert(new, tries);
    }
    if let Some(samples) = thief.progress.remove(&old) {
        thief.progress.insert(new, samples);
    }
    let why = refused(&*store, vec![other.clone(), thief.clone()], thief.detail.run.id, "tasks[1].id").await;
    assert!(why.contains(&new.to_string()), "{why}");

    // A tick of the same workflow already has its run.
    let mut ticked = done(50, 6);
    ticked.detail.run.schedule_tick = Some(t(50));
    import(&*store, vec![ticked.clone()]).await.unwrap();
    let mut again = done(60, 7);
    again.detail.run.schedule_tick = Some(t(50));
    refused(&*store, vec![other.clone(), again.clone()], again.detail.run.id, "run.schedule_tick").await;
    again.detail.run.workflow = "report".to_owned();
    import(&*store, vec![other.clone(), again]).await.expect("another workflow may have the same tick");
    assert!(store.run(other.detail.run.id).await.unwrap().is_some());
    import(&*store, Vec::new()).await.expect("an empty import is fine");
}

/// A run whose record the store could not have written is refused, the
/// field at fault named: logs outside the table or going back in time,
/// attempts that disagree with the log, derived times or results that
/// disagree with it, leases, strays, bad samples.
pub async fn imports_refuse_records_the_store_could_not_have_written<S: Store>(store: Arc<S>) {
    use Fate::*;
    let base =
        importable_run("etl", t(0), &[Completed { retries: 1 }, Abandoned, Failed { attempts: 2 }], false, 9);
    let id = base.detail.run.id;
    let tasks: Vec<TaskId> = base.detail.tasks.iter().map(|t| t.id).collect();
    let (t0, t2) = (tasks[0], tasks[2]);
    type Edit = Box<dyn Fn(&mut FinishedRun)>;
    let cases: Vec<(String, Edit)> = vec![
        ("run_transitions".into(), Box::new(|r| r.detail.run_transitions.clear())),
        ("run_transitions[2].at".into(), Box::new(|r| r.detail.run_transitions[2].at = t(-1))),
        (
            "run_transitions[1].from".into(),
            Box::new(|r| r.detail.run_transitions[1].from = Some(RunStatus::Running)),
        ),
        ("run.status".into(), Box::new(|r| r.detail.run.status = RunStatus::Completed)),
        ("run.started_at".into(), Box::new(|r| r.detail.run.started_at = None)),
        ("run.finished_at".into(), Box::new(|r| r.detail.run.finished_at = Some(t(1)))),
        ("run.submitted_at".into(), Box::new(|r| r.detail.run.submitted_at = t(5))),
        (
            format!("transitions[{t0}][1]"),
            Box::new(move |r| {
                let log = r.detail.transitions.get_mut(&t0).unwrap();
                log[1].to = TaskStatus::Completed;
            }),
        ),
        (
            format!("transitions[{t0}][3].at"),
            Box::new(move |r| r.detail.transitions.get_mut(&t0).unwrap()[3].at = t(0)),
        ),
        (
            format!("transitions[{t0}][4].attempt"),
            Box::new(move |r| r.detail.transitions.get_mut(&t0).unwrap()[4].attempt = 1),
        ),
        (
            format!("transitions[{t0}][0]"),
            Box::new(move |r| r.detail.transitions.get_mut(&t0).unwrap().clear()),
        ),
        (
            format!("attempts[{t0}]"),
            Box::new(move |r| {
                r.detail.attempts.get_mut(&t0).unwrap().pop();
            }),
        ),
        (
            format!("attempts[{t2}][0].outcome"),
            Box::new(move |r| {
                r.detail.attempts.get_mut(&t2).unwrap()[0].outcome = Some(TaskStatus::Completed)
            }),
        ),
        (
            format!("attempts[{t2}][1].ended_at"),
            Box::new(move |r| r.detail.attempts.get_mut(&t2).unwrap()[1].ended_at = None),
        ),
        (
            format!("attempts[{t2}][1].task"),
            Box::new(move |r| r.detail.attempts.get_mut(&t2).unwrap()[1].task = t0),
        ),
        ("tasks[0].finished_at".into(), Box::new(|r| r.detail.tasks[0].finished_at = None)),
        ("tasks[0].submitted_at".into(), Box::new(|r| r.detail.tasks[0].submitted_at = t(1))),
        ("tasks[0].attempt".into(), Box::new(|r| r.detail.tasks[0].attempt = 1)),
        ("tasks[2].exit_code".into(), Box::new(|r| r.detail.tasks[2].exit_code = Some(0))),
        ("tasks[2].error".into(), Box::new(|r| r.detail.tasks[2].error = None)),
        ("tasks[2].started_at".into(), Box::new(|r| r.detail.tasks[2].started_at = None)),
        (
            "tasks[1].outputs".into(),
            Box::new(|r| {
                r.detail.tasks[1].outputs.insert("x".into(), "1".into());
            }),
        ),
        ("tasks[1].max_attempts".into(), Box::new(|r| r.detail.tasks[1].max_attempts = 0)),
        ("tasks[2].index".into(), Box::new(|r| r.detail.tasks[2].index = 1)),
        ("tasks[1].run".into(), Box::new(|r| r.detail.tasks[1].run = RunId::new(t(0)))),
        (
            "tasks[1].lease".into(),
            Box::new(|r| {
                r.detail.tasks[1].lease = Some(StoredLease {
                    token: LeaseToken::random(),
                    worker: "w1".into(),
                    last_heartbeat_at: t(0),
                    expires_at: t(1),
                });
            }),
        ),
        (
            "transitions".into(),
            Box::new(|r| {
                r.detail.transitions.insert(TaskId::new(t(0)), Vec::new());
            }),
        ),
        (
            "progress".into(),
            Box::new(|r| {
                r.progress.insert(TaskId::new(t(0)), Vec::new());
            }),
        ),
        (
            format!("progress[{t0}][0].attempt"),
            Box::new(move |r| {
                r.progress
                    .insert(t0, vec![ProgressSample { attempt: 9, at: t(1), percent: 5.0, message: None }]);
            }),
        ),
        (
            format!("progress[{t0}][1].at"),
            Box::new(move |r| {
                let s = ProgressSample { attempt: 1, at: t(1), percent: 5.0, message: None };
                r.progress.insert(t0, vec![s.clone(), s]);
            }),
        ),
        (
            format!("progress[{t0}][0].percent"),
            Box::new(move |r| {
                r.progress
                    .insert(t0, vec![ProgressSample { attempt: 1, at: t(1), percent: 101.0, message: None }]);
            }),
        ),
    ];
    for (field, edit) in cases {
        let mut bad = base.clone();
        edit(&mut bad);
        let why = refused(&*store, vec![bad], id, &field).await;
        assert!(!why.is_empty());
    }
    import(&*store, vec![base.clone()]).await.expect("the record before any edit imports");
    assert_eq!(read_back(&*store, &base).await, base);
}
