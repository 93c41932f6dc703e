//! The conformance checks of phase analytics and expected durations
//! ([`Store::phase_stats`], [`Store::expected_durations`]): the phase times
//! each task keeps equal what its log says (through retries, cancels and
//! claims dated by a lagging clock), and every figure — per-step counts,
//! percentiles and maxima, the slowest tasks, the most failing step, the
//! sample cap and where it cut — equals a brute-force computation over the
//! records the store reads back, for many windows of a random workload.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_core::durations::Durations;
use cairn_core::expected::Spread;
use cairn_core::{RunId, RunStatus, TaskId, TaskStatus, Timestamp};

use super::{
    Rng, apply_ok, claim, claim_request, end, new_run, offer, plain, random_runs, run_change, start, t,
};
use crate::analytics::{EXPECTED_SAMPLES, MAX_SAMPLE_CAP, MAX_SLOWEST};
use crate::{
    AttemptResult, Change, FailingStep, NewRun, PhaseQuery, PhaseStats, RunQuery, SlowTask, StepPhases,
    Store, StoreError, TimeRange,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ok() -> AttemptResult {
    AttemptResult::default()
}

// ---------------------------------------------------------------------------
// The truth: every finished task as its log describes it.

/// A finished task as the records say, its phases from its log.
#[derive(Clone, Debug)]
pub struct FinishedTask {
    pub workflow: String,
    pub step: String,
    pub task: TaskId,
    pub run: RunId,
    pub status: TaskStatus,
    pub finished_at: Timestamp,
    pub phases: Durations,
}

/// Every finished task of `store`, read back run by run.
pub async fn finished_tasks<S: Store>(store: &S) -> Vec<FinishedTask> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_runs(RunQuery { limit: 200, before, ..Default::default() }).await.unwrap();
        let done = page.len() < 200;
        before = page.last().map(|r| r.id);
        for run in page {
            let detail = store.run_detail(run.id).await.unwrap().expect("a listed run has a detail");
            for task in detail.tasks.iter().filter(|t| t.status.is_terminal()) {
                let log = detail.transitions.get(&task.id).map_or(&[][..], Vec::as_slice);
                let finished_at = task.finished_at.expect("a terminal task has finished");
                out.push(FinishedTask {
                    workflow: run.workflow.clone(),
                    step: task.name.clone(),
                    task: task.id,
                    run: run.id,
                    status: task.status,
                    finished_at,
                    phases: Durations::from_log(log, finished_at),
                });
            }
        }
        if done {
            break;
        }
    }
    out
}

/// The nearest-rank percentile, written out apart from `cairn_core`'s.
fn rank(sorted: &[Duration], p: usize) -> Duration {
    let n = sorted.len();
    sorted[(p * n).div_ceil(100).max(1) - 1]
}

fn spread(mut values: Vec<Duration>) -> Option<Spread> {
    values.sort();
    let max = *values.last()?;
    Some(Spread { p50: rank(&values, 50), p95: rank(&values, 95), max })
}

/// What [`Store::phase_stats`] must answer for `q`, computed from `all`.
pub fn brute_phase_stats(all: &[FinishedTask], q: &PhaseQuery) -> PhaseStats {
    let cap = if q.sample_cap == 0 { crate::analytics::DEFAULT_SAMPLE_CAP } else { q.sample_cap };
    let slowest = if q.slowest == 0 { crate::analytics::DEFAULT_SLOWEST } else { q.slowest };
    let mut groups: BTreeMap<(String, String), Vec<&FinishedTask>> = BTreeMap::new();
    for task in all {
        let in_window = q.finished.from.is_none_or(|from| task.finished_at >= from)
            && q.finished.to.is_none_or(|to| task.finished_at < to);
        if in_window && (q.workflows.is_empty() || q.workflows.contains(&task.workflow)) {
            groups.entry((task.workflow.clone(), task.step.clone())).or_default().push(task);
        }
    }
    let mut steps = Vec::new();
    let mut sampled = Vec::new();
    for ((workflow, step), mut tasks) in groups {
        tasks.sort_by_key(|t| std::cmp::Reverse(t.finished_at));
        let sampled_from = (tasks.len() > cap).then(|| tasks[cap - 1].finished_at);
        tasks.truncate(cap);
        let mut counts = BTreeMap::new();
        for task in &tasks {
            *counts.entry(task.status).or_insert(0) += 1;
        }
        let ran: Vec<&&FinishedTask> =
            tasks.iter().filter(|t| matches!(t.status, TaskStatus::Completed | TaskStatus::Failed)).collect();
        steps.push(StepPhases {
            workflow,
            step,
            counts,
            blocked: spread(ran.iter().map(|t| t.phases.blocked_duration).collect()),
            pending: spread(ran.iter().map(|t| t.phases.pending_duration).collect()),
            execution: spread(ran.iter().map(|t| t.phases.execution_duration).collect()),
            sampled_from,
        });
        sampled.extend(tasks);
    }
    sampled.sort_by(|a, b| {
        (b.phases.execution_duration, b.finished_at).cmp(&(a.phases.execution_duration, a.finished_at))
    });
    let slowest = sampled
        .iter()
        .take(slowest)
        .map(|t| SlowTask {
            task: t.task,
            run: t.run,
            workflow: t.workflow.clone(),
            step: t.step.clone(),
            status: t.status,
            finished_at: t.finished_at,
            blocked: t.phases.blocked_duration,
            pending: t.phases.pending_duration,
            execution: t.phases.execution_duration,
        })
        .collect();
    let mut most_failing = Vec::new();
    let mut workflows: Vec<&str> = steps.iter().map(|s| s.workflow.as_str()).collect();
    workflows.dedup();
    for workflow in workflows {
        let of: Vec<&StepPhases> = steps.iter().filter(|s| s.workflow == workflow).collect();
        let total: u64 = of.iter().map(|s| s.failed()).sum();
        let most = of.iter().map(|s| s.failed()).max().unwrap_or(0);
        if total == 0 {
            continue;
        }
        let worst = of.iter().find(|s| s.failed() == most).expect("a step has the most");
        most_failing.push(FailingStep {
            workflow: workflow.to_owned(),
            step: worst.step.clone(),
            failed: most,
            share: most as f64 / total as f64,
            rate: most as f64 / worst.tasks() as f64,
        });
    }
    PhaseStats { steps, slowest, most_failing }
}

/// Asserts that [`Store::phase_stats`] of `q` equals the brute-force answer.
pub async fn assert_phase_stats<S: Store>(store: &S, all: &[FinishedTask], q: PhaseQuery) {
    let stats = store.phase_stats(q.clone()).await.expect("phase_stats");
    let expected = brute_phase_stats(all, &q);
    assert_eq!(stats.steps, expected.steps, "steps of {q:?}");
    assert_eq!(stats.slowest, expected.slowest, "slowest of {q:?}");
    assert_eq!(stats.most_failing, expected.most_failing, "most failing of {q:?}");
}

/// Asserts that every finished task's stored phases equal its log's, over
/// all of history: per step (percentiles and maxima of each phase) and for
/// the slowest [`MAX_SLOWEST`] tasks one by one.
pub async fn assert_phases_equal_the_logs<S: Store>(store: &S) {
    let all = finished_tasks(store).await;
    assert!(!all.is_empty(), "a history to check");
    assert_phase_stats(store, &all, PhaseQuery { slowest: MAX_SLOWEST, ..Default::default() }).await;
}

// ---------------------------------------------------------------------------
// A workload of named steps with every way a task can end.

const WORKFLOWS: [(&str, &[&str]); 3] = [
    ("etl", &["extract", "transform", "load"]),
    ("report", &["query", "render"]),
    ("backup", &["dump", "upload", "verify", "prune"]),
];

/// Moves time forward by a random gap (1 ms to 20 s), so every change has
/// its own time and phases vary widely.
struct Clock(i64);

impl Clock {
    fn tick(&mut self, rng: &mut Rng) -> Timestamp {
        self.0 += 1_000 + rng.below(20_000_000) as i64;
        Timestamp::from_micros(self.0)
    }
}

/// Runs each task of a run to an end at random: blocked or not, retried
/// up to twice, claimed from a queue or started by its driver, and ending
/// COMPLETED, FAILED, CANCELED (running or pending), SKIPPED or ABANDONED.
async fn phased_runs<S: Store>(store: &S, seed: u64, runs: usize) {
    use TaskStatus::*;
    let mut rng = Rng(seed);
    let mut clock = Clock(t(0).as_micros());
    for i in 0..runs {
        let (workflow, steps) = WORKFLOWS[i % WORKFLOWS.len()];
        let mut run: NewRun = new_run(workflow, steps.len() as u32, clock.tick(&mut rng));
        for (task, step) in run.tasks.iter_mut().zip(steps.iter()) {
            task.name = (*step).to_owned();
            task.queue = rng.chance(30).then(|| "q".to_owned());
        }
        let tasks: Vec<(TaskId, bool)> = run.tasks.iter().map(|t| (t.id, t.queue.is_some())).collect();
        let id = run.id;
        apply_ok(
            store,
            vec![
                Change::CreateRun(run),
                run_change(id, RunStatus::Queued, RunStatus::Running, clock.tick(&mut rng), None),
            ],
        )
        .await;
        for (task, remote) in tasks {
            let mut changes = Vec::new();
            if rng.chance(50) {
                changes.push(plain(task, 0, Submitted, Blocked, clock.tick(&mut rng)));
                match rng.below(10) {
                    0 => {
                        changes.push(plain(task, 0, Blocked, Skipped, clock.tick(&mut rng)));
                        apply_ok(store, changes).await;
                        continue;
                    }
                    1 => {
                        changes.push(plain(task, 0, Blocked, Abandoned, clock.tick(&mut rng)));
                        apply_ok(store, changes).await;
                        continue;
                    }
                    _ => changes.push(plain(task, 0, Blocked, Pending, clock.tick(&mut rng))),
                }
            } else {
                changes.push(plain(task, 0, Submitted, Pending, clock.tick(&mut rng)));
            }
            apply_ok(store, std::mem::take(&mut changes)).await;
            if rng.chance(5) {
                apply_ok(store, vec![plain(task, 0, Pending, Canceled, clock.tick(&mut rng))]).await;
                continue;
            }
            let mut attempt = 0;
            loop {
                attempt += 1;
                let token = if remote {
                    // Offered as ready a while ago, claimed by a server whose
                    // clock may lag the task's last change.
                    let now = clock.tick(&mut rng);
                    let ready = Timestamp::from_micros(now.as_micros() - 5_000_000);
                    let asked = if rng.chance(30) {
                        Timestamp::from_micros(now.as_micros() - 3_000_000)
                    } else {
                        now
                    };
                    apply_ok(store, vec![offer(task, id, "q", ready)]).await;
                    let claimed = claim(store, claim_request(&["q"], 1, asked, "elsewhere")).await;
                    assert_eq!(claimed.tasks.len(), 1, "the one offer is claimed");
                    assert_eq!(claimed.tasks[0].attempt, attempt);
                    clock.0 = clock.0.max(claimed.tasks[0].lease.started_at.as_micros());
                    claimed.tasks[0].lease.token
                } else {
                    let (s, token) = start(task, attempt, clock.tick(&mut rng));
                    apply_ok(store, vec![s]).await;
                    token
                };
                let to = match rng.below(10) {
                    0..=1 if attempt < 3 => Pending,
                    0..=5 => Completed,
                    6..=8 => Failed,
                    _ => Canceled,
                };
                apply_ok(store, vec![end(task, token, attempt, to, clock.tick(&mut rng), ok())]).await;
                if to != Pending {
                    break;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The checks

/// Each task's phases follow its every transition: through a retry, a
/// cancel while running and while pending, abandonment from BLOCKED, and
/// claims — one dated by a lagging claimer's clock at the task's last change.
pub async fn phase_times_follow_every_transition<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let s = |secs: i64| t(secs * 1000);
    let mut run = new_run("etl", 7, s(0));
    for remote in &mut run.tasks[4..6] {
        remote.queue = Some("q".to_owned());
    }
    let id = run.id;
    let tasks: Vec<TaskId> = run.tasks.iter().map(|t| t.id).collect();
    apply_ok(
        &*store,
        vec![Change::CreateRun(run), run_change(id, RunStatus::Queued, RunStatus::Running, s(0), None)],
    )
    .await;

    // step-0: blocked 10 s, pending 20 s, runs 10 s, retried after 20 s, runs 30 s.
    let (a, first) = start(tasks[0], 1, s(31));
    apply_ok(
        &*store,
        vec![plain(tasks[0], 0, Submitted, Blocked, s(1)), plain(tasks[0], 0, Blocked, Pending, s(11)), a],
    )
    .await;
    apply_ok(&*store, vec![end(tasks[0], first, 1, Pending, s(41), ok())]).await;
    let (b, second) = start(tasks[0], 2, s(61));
    apply_ok(&*store, vec![b, end(tasks[0], second, 2, Completed, s(91), ok())]).await;
    // step-1: canceled while running.
    let (a, token) = start(tasks[1], 1, s(5));
    apply_ok(&*store, vec![plain(tasks[1], 0, Submitted, Pending, s(2)), a]).await;
    apply_ok(&*store, vec![end(tasks[1], token, 1, Canceled, s(12), ok())]).await;
    // step-2: canceled while pending; step-3: abandoned while blocked.
    apply_ok(
        &*store,
        vec![plain(tasks[2], 0, Submitted, Pending, s(3)), plain(tasks[2], 0, Pending, Canceled, s(9))],
    )
    .await;
    apply_ok(
        &*store,
        vec![plain(tasks[3], 0, Submitted, Blocked, s(0)), plain(tasks[3], 0, Blocked, Abandoned, s(20))],
    )
    .await;
    // step-4: claimed 3 s after it became ready, fails after 6 s.
    apply_ok(&*store, vec![plain(tasks[4], 0, Submitted, Pending, s(1)), offer(tasks[4], id, "q", s(1))])
        .await;
    let claimed = claim(&*store, claim_request(&["q"], 10, s(4), "other")).await;
    assert_eq!(claimed.tasks.len(), 1);
    apply_ok(&*store, vec![end(tasks[4], claimed.tasks[0].lease.token, 1, Failed, s(10), ok())]).await;
    // step-5: offered as ready before it was pending, claimed by a clock
    // that lags: the claim is dated at the task's last change, no wait.
    apply_ok(&*store, vec![plain(tasks[5], 0, Submitted, Pending, s(50)), offer(tasks[5], id, "q", s(30))])
        .await;
    let claimed = claim(&*store, claim_request(&["q"], 10, s(40), "other")).await;
    assert_eq!(claimed.tasks.len(), 1);
    assert_eq!(claimed.tasks[0].lease.started_at, s(50));
    apply_ok(&*store, vec![end(tasks[5], claimed.tasks[0].lease.token, 1, Completed, s(52), ok())]).await;
    // step-6: still running, so in no statistics.
    let (a, _) = start(tasks[6], 1, s(3));
    apply_ok(&*store, vec![plain(tasks[6], 0, Submitted, Pending, s(1)), a]).await;

    let stats = store.phase_stats(PhaseQuery { slowest: MAX_SLOWEST, ..Default::default() }).await.unwrap();
    let phases: BTreeMap<&str, (Duration, Duration, Duration)> =
        stats.slowest.iter().map(|t| (t.step.as_str(), (t.blocked, t.pending, t.execution))).collect();
    let expected = BTreeMap::from([
        ("step-0", (secs(10), secs(40), secs(40))),
        ("step-1", (secs(0), secs(3), secs(7))),
        ("step-2", (secs(0), secs(6), secs(0))),
        ("step-3", (secs(20), secs(0), secs(0))),
        ("step-4", (secs(0), secs(3), secs(6))),
        ("step-5", (secs(0), secs(0), secs(2))),
    ]);
    assert_eq!(phases, expected);
    assert_eq!(stats.steps.len(), 6, "the running task is in no step's figures");
    let step = |name: &str| stats.steps.iter().find(|s| s.step == name).unwrap();
    assert_eq!(step("step-0").execution, Some(Spread { p50: secs(40), p95: secs(40), max: secs(40) }));
    assert_eq!(step("step-1").counts, BTreeMap::from([(Canceled, 1)]));
    assert_eq!(step("step-1").execution, None, "a canceled task says little of how long the step takes");
    assert_eq!(step("step-3").blocked, None);
    assert_eq!(
        stats.most_failing,
        vec![FailingStep { workflow: "etl".into(), step: "step-4".into(), failed: 1, share: 1.0, rate: 1.0 }]
    );
    assert_phases_equal_the_logs(&*store).await;
}

/// Over a random workload (every way to end, retries, claims, and the
/// concurrent batches of the counts' workload), the statistics of many
/// windows, workflow filters, caps and slowest lists equal a brute-force
/// computation from the records.
pub async fn phase_stats_match_a_brute_force_computation<S: Store>(store: Arc<S>) {
    phased_runs(&*store, 0x5EED, 90).await;
    random_runs(&*store, 11, 40).await;
    let all = finished_tasks(&*store).await;
    let mut times: Vec<Timestamp> = all.iter().map(|t| t.finished_at).collect();
    times.sort();
    let mut rng = Rng(0xFACE);
    let at = |rng: &mut Rng| times[rng.below(times.len() as u64) as usize];
    let mut queries = vec![
        PhaseQuery::default(),
        PhaseQuery { slowest: MAX_SLOWEST, ..Default::default() },
        PhaseQuery { sample_cap: 7, slowest: 25, ..Default::default() },
        PhaseQuery { sample_cap: 1, ..Default::default() },
        PhaseQuery { workflows: vec!["etl".into(), "nope".into()], ..Default::default() },
        PhaseQuery { workflows: vec!["backup".into()], sample_cap: 4, slowest: 3, ..Default::default() },
    ];
    for _ in 0..30 {
        let (a, b) = (at(&mut rng), at(&mut rng));
        let finished = match rng.below(3) {
            0 => TimeRange { from: Some(a.min(b)), to: Some(a.max(b)) },
            1 => TimeRange { from: Some(a), to: None },
            _ => TimeRange { from: None, to: Some(a) },
        };
        let workflows = match rng.below(3) {
            0 => vec![WORKFLOWS[rng.below(3) as usize].0.to_owned()],
            1 => vec!["etl".to_owned(), "train".to_owned()],
            _ => Vec::new(),
        };
        let sample_cap = [0, 1, 3, 10, 50][rng.below(5) as usize];
        let slowest = [0, 1, 5, 40][rng.below(4) as usize];
        queries.push(PhaseQuery { finished, workflows, slowest, sample_cap });
    }
    for q in queries {
        assert_phase_stats(&*store, &all, q).await;
    }
}

/// A window is `[from, to)` on finish times; the sample cap keeps the
/// newest of a step whatever their statuses, and says from when.
pub async fn phase_windows_and_caps_cut_at_their_edges<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let s = |secs: i64| t(secs * 1000);
    // Five completed tasks finishing at 10..=50 s after running 1..=5 s,
    // two failed at 45 s and 55 s after running 9 s.
    let mut run = new_run("etl", 7, s(0));
    for task in &mut run.tasks {
        task.name = "load".to_owned();
    }
    let tasks: Vec<TaskId> = run.tasks.iter().map(|t| t.id).collect();
    apply_ok(&*store, vec![Change::CreateRun(run)]).await;
    let ends = [
        (10, 1, Completed),
        (20, 2, Completed),
        (30, 3, Completed),
        (40, 4, Completed),
        (50, 5, Completed),
        (45, 9, Failed),
        (55, 9, Failed),
    ];
    for (task, (finish, took, to)) in tasks.iter().zip(ends) {
        let (a, token) = start(*task, 1, s(finish - took));
        apply_ok(
            &*store,
            vec![plain(*task, 0, Submitted, Pending, s(0)), a, end(*task, token, 1, to, s(finish), ok())],
        )
        .await;
    }
    let stats = |finished: TimeRange, sample_cap: usize, slowest: usize| {
        let store = store.clone();
        async move {
            store
                .phase_stats(PhaseQuery { finished, sample_cap, slowest, ..Default::default() })
                .await
                .unwrap()
        }
    };
    let window = |from: Option<i64>, to: Option<i64>| TimeRange { from: from.map(s), to: to.map(s) };

    let inside = stats(window(Some(20), Some(40)), 0, 0).await;
    assert_eq!(inside.steps[0].counts, BTreeMap::from([(Completed, 2)]), "from is in, to is out");
    assert_eq!(inside.steps[0].execution.unwrap().max, secs(3));
    assert!(stats(window(Some(50), Some(50)), 0, 0).await.steps.is_empty(), "an empty window");

    let cut = stats(window(None, None), 3, 2).await;
    let step = &cut.steps[0];
    assert_eq!(step.counts, BTreeMap::from([(Completed, 1), (Failed, 2)]), "the newest three, of any status");
    assert_eq!(step.sampled_from, Some(s(45)));
    assert_eq!(step.execution, Some(Spread { p50: secs(9), p95: secs(9), max: secs(9) }));
    assert_eq!(
        cut.slowest.iter().map(|t| t.finished_at).collect::<Vec<_>>(),
        [s(55), s(45)],
        "ties: newest first"
    );
    assert_eq!(cut.most_failing[0].rate, 2.0 / 3.0);

    assert_eq!(stats(window(None, None), 7, 0).await.steps[0].sampled_from, None, "a cap just big enough");
    assert_eq!(stats(window(Some(20), None), 6, 0).await.steps[0].sampled_from, None);
    assert_eq!(stats(window(Some(20), None), 5, 0).await.steps[0].sampled_from, Some(s(30)));
    let all = stats(window(None, None), 0, 0).await;
    assert_eq!(all.steps[0].tasks(), 7);
    assert_eq!(all.steps[0].execution, Some(Spread { p50: secs(4), p95: secs(9), max: secs(9) }));
}

/// A step's expected durations come from its latest completed tasks only
/// (at most [`EXPECTED_SAMPLES`]), a run's from the latest completed runs'
/// start to finish; each says how many samples it rests on.
pub async fn expected_durations_come_from_the_latest_completed<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let s = |secs: i64| t(secs * 1000);
    let n = EXPECTED_SAMPLES as i64 + 30;
    let mut batch = Vec::new();
    // Run i (1..=n) of "nightly": its step "build" waits 1 s, runs i s;
    // the run takes i + 2 s. Its step "lint" completes in the first three.
    for i in 1..=n {
        let base = i * 1_000;
        let mut run = new_run("nightly", if i <= 3 { 2 } else { 1 }, s(base));
        run.tasks[0].name = "build".to_owned();
        if let Some(lint) = run.tasks.get_mut(1) {
            lint.name = "lint".to_owned();
        }
        let (id, build) = (run.id, run.tasks[0].id);
        let lint = run.tasks.get(1).map(|t| t.id);
        batch.push(Change::CreateRun(run));
        batch.push(run_change(id, RunStatus::Queued, RunStatus::Running, s(base), None));
        let (a, token) = start(build, 1, s(base + 1));
        batch.extend([
            plain(build, 0, Submitted, Pending, s(base)),
            a,
            end(build, token, 1, Completed, s(base + 1 + i), ok()),
        ]);
        if let Some(lint) = lint {
            let (a, token) = start(lint, 1, s(base));
            batch.extend([
                plain(lint, 0, Submitted, Pending, s(base)),
                a,
                end(lint, token, 1, Completed, s(base + 7), ok()),
            ]);
        }
        batch.push(run_change(id, RunStatus::Running, RunStatus::Completed, s(base + i + 2), None));
    }
    // Later, slower failures: neither the step's nor the run's expectation.
    for i in 0..5 {
        let base = (n + 10 + i) * 1_000;
        let mut run = new_run("nightly", 1, s(base));
        run.tasks[0].name = "build".to_owned();
        let (id, build) = (run.id, run.tasks[0].id);
        let (a, token) = start(build, 1, s(base));
        batch.extend([
            Change::CreateRun(run),
            run_change(id, RunStatus::Queued, RunStatus::Running, s(base), None),
            plain(build, 0, Submitted, Pending, s(base)),
            a,
            end(build, token, 1, Failed, s(base + 900), ok()),
            run_change(id, RunStatus::Running, RunStatus::Failed, s(base + 901), None),
        ]);
    }
    for chunk in batch.chunks(200) {
        apply_ok(&*store, chunk.to_vec()).await;
    }

    let e = store.expected_durations("nightly").await.unwrap();
    assert_eq!(e.workflow, "nightly");
    let build = e.steps["build"];
    // The latest hundred ran 31..=130 s: ranks 50 and 95 of them.
    assert_eq!(build.execution.samples as usize, EXPECTED_SAMPLES);
    assert_eq!((build.execution.p50, build.execution.p95), (secs(80), secs(125)));
    assert_eq!((build.total.p50, build.total.p95), (secs(81), secs(126)));
    let run = e.run.expect("completed runs");
    assert_eq!((run.samples as usize, run.p50, run.p95), (EXPECTED_SAMPLES, secs(82), secs(127)));
    let lint = e.steps["lint"];
    assert_eq!((lint.execution.samples, lint.execution.p50), (3, secs(7)));
    assert!(!lint.execution.is_reliable(), "three samples predict nothing");

    let none = store.expected_durations("never-ran").await.unwrap();
    assert_eq!((none.run, none.steps.len()), (None, 0));
    let err = store.expected_durations(" ").await.unwrap_err();
    assert!(matches!(&err, StoreError::InvalidQuery(m) if m.contains("workflow")), "{err}");
}

/// Queries out of bounds are refused, naming the field, and read nothing.
pub async fn phase_queries_out_of_bounds_are_refused<S: Store>(store: Arc<S>) {
    let refused = |q: PhaseQuery| {
        let store = store.clone();
        async move {
            match store.phase_stats(q).await {
                Err(StoreError::InvalidQuery(message)) => message,
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    };
    assert!(refused(PhaseQuery { slowest: MAX_SLOWEST + 1, ..Default::default() }).await.contains("slowest"));
    assert!(
        refused(PhaseQuery { sample_cap: MAX_SAMPLE_CAP + 1, ..Default::default() })
            .await
            .contains("sample_cap")
    );
    let backwards = TimeRange { from: Some(t(10)), to: Some(t(5)) };
    assert!(refused(PhaseQuery { finished: backwards, ..Default::default() }).await.contains("finished"));
    assert!(
        refused(PhaseQuery { workflows: vec![String::new()], ..Default::default() })
            .await
            .contains("workflows")
    );
    let empty = store.phase_stats(PhaseQuery::default()).await.unwrap();
    assert_eq!(empty, PhaseStats::default(), "an empty history has no figures");
}

// ---------------------------------------------------------------------------
// History as a Cairn before schema version 7 wrote it, without phases.

/// A task's log as an older Cairn stored it, to insert by hand below the
/// migration that fills in the phases from the logs.
#[derive(Clone, Debug)]
pub struct LegacyTask {
    pub id: TaskId,
    pub name: String,
    /// From its creation (`SUBMITTED`) on, in order.
    pub log: Vec<cairn_core::record::Transition>,
}

impl LegacyTask {
    pub fn status(&self) -> TaskStatus {
        self.log.last().expect("a task has a log").to
    }

    pub fn attempt(&self) -> u32 {
        self.log.last().expect("a task has a log").attempt
    }

    pub fn last_at(&self) -> Timestamp {
        self.log.last().expect("a task has a log").at
    }

    pub fn submitted_at(&self) -> Timestamp {
        self.log[0].at
    }

    pub fn finished_at(&self) -> Option<Timestamp> {
        self.status().is_terminal().then(|| self.last_at())
    }
}

/// A run as an older Cairn stored it (RUNNING, with its tasks).
#[derive(Clone, Debug)]
pub struct LegacyRun {
    pub id: RunId,
    pub workflow: String,
    pub submitted_at: Timestamp,
    pub tasks: Vec<LegacyTask>,
}

/// `runs` runs whose tasks went every way a task goes — blocked, retried,
/// canceled running or pending, abandoned, skipped, or still waiting — at
/// irregular times, never RUNNING now (that would need a lease).
pub fn legacy_runs(runs: usize) -> Vec<LegacyRun> {
    use TaskStatus::*;
    const PATHS: [&[TaskStatus]; 7] = [
        &[Submitted, Blocked, Pending, Running, Completed],
        &[Submitted, Pending, Running, Pending, Running, Failed],
        &[Submitted, Pending, Running, Pending, Running, Pending, Running, Completed],
        &[Submitted, Blocked, Abandoned],
        &[Submitted, Pending, Canceled],
        &[Submitted, Pending, Running, Canceled],
        &[Submitted, Blocked, Pending],
    ];
    let mut rng = Rng(0x01D);
    (0..runs)
        .map(|i| {
            let submitted_at = Timestamp::from_micros(t(0).as_micros() + i as i64 * 3_600_000_000);
            let tasks = (0..1 + rng.below(4) as usize)
                .map(|j| {
                    let path = PATHS[rng.below(PATHS.len() as u64) as usize];
                    let mut at = submitted_at.as_micros();
                    let (mut attempt, mut from) = (0, None);
                    let log = path
                        .iter()
                        .map(|&to| {
                            if from.is_some() {
                                at += rng.below(90_000_000) as i64;
                            }
                            if to == Running {
                                attempt += 1;
                            }
                            let transition = cairn_core::record::Transition {
                                attempt,
                                from,
                                to,
                                at: Timestamp::from_micros(at),
                                reason: "legacy".to_owned(),
                                actor: cairn_core::record::Actor::Scheduler,
                            };
                            from = Some(to);
                            transition
                        })
                        .collect();
                    LegacyTask { id: TaskId::new(submitted_at), name: format!("step-{j}"), log }
                })
                .collect();
            LegacyRun {
                id: RunId::new(submitted_at),
                workflow: ["etl", "report"][i % 2].to_owned(),
                submitted_at,
                tasks,
            }
        })
        .collect()
}
