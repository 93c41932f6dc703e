//! The conformance checks of retention ([`Store::run_workflows`],
//! [`Store::expired_runs`], [`Store::delete_runs`]): which runs a days or a
//! runs rule expires, that deleting a run takes everything that hangs off
//! it and nothing else, that live work is never deleted even when asked,
//! and that status counts and trends still equal a count of the records
//! after random work with deletions interleaved (and running at the same
//! time).

use std::collections::BTreeSet;
use std::sync::Arc;

use cairn_core::progress::Progress;
use cairn_core::retention::Expiry;
use cairn_core::{RunId, RunStatus, TaskId, TaskStatus, Timestamp};

use super::counts::{assert_counts_equal_the_records, random_runs};
use super::{claim_request, end, heartbeat, new_run, plain, run_change, start, t};
use crate::{
    AttemptResult, Change, Deleted, Outcome, RunFilter, RunQuery, RunSearch, Store, TaskFilter, TaskSearch,
};

/// `n` days after the suite's time zero.
fn day(n: i64) -> Timestamp {
    t(n * 86_400_000)
}

async fn apply_all<S: Store>(store: &S, changes: Vec<Change>) {
    let outcomes = store.apply(changes).await.expect("the batch commits");
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(o, &Outcome::Applied, "change #{i}");
    }
}

/// A run of `workflow` submitted at `at`, labelled `team=data`, whose
/// `tasks` tasks each ran (the first twice: a failed attempt retried, with
/// a progress sample) and completed, then the run ended `status` at `done`.
async fn finished_run<S: Store>(
    store: &S,
    workflow: &str,
    tasks: u32,
    at: Timestamp,
    done: Timestamp,
    status: RunStatus,
) -> RunId {
    let mut run = new_run(workflow, tasks, at);
    run.labels = vec!["team=data".to_owned()];
    let (id, ids): (RunId, Vec<TaskId>) = (run.id, run.tasks.iter().map(|t| t.id).collect());
    let ms = |n: i64| Timestamp::from_micros(at.as_micros() + n * 1000);
    let mut changes =
        vec![Change::CreateRun(run), run_change(id, RunStatus::Queued, RunStatus::Running, ms(1), None)];
    for (i, &task) in ids.iter().enumerate() {
        changes.push(plain(task, 0, TaskStatus::Submitted, TaskStatus::Pending, ms(2)));
        let (s, token) = start(task, 1, ms(3));
        changes.push(s);
        if i == 0 {
            let mut beat =
                heartbeat(task, token, ms(4), ms(60_000), Some(Progress::new(50.0, None).unwrap()));
            if let Change::Heartbeat(hb) = &mut beat {
                hb.sample = true;
            }
            changes.push(beat);
            let failed =
                AttemptResult { exit_code: Some(1), error: Some("boom".into()), ..Default::default() };
            changes.push(end(task, token, 1, TaskStatus::Pending, ms(5), failed));
            let (s, token) = start(task, 2, ms(6));
            changes.push(s);
            changes.push(end(task, token, 2, TaskStatus::Completed, ms(7), AttemptResult::default()));
        } else {
            changes.push(end(task, token, 1, TaskStatus::Completed, ms(7), AttemptResult::default()));
        }
    }
    changes.push(run_change(id, RunStatus::Running, status, done, None));
    apply_all(store, changes).await;
    id
}

/// A run of `workflow` submitted at `at` and left QUEUED.
async fn queued_run<S: Store>(store: &S, workflow: &str, at: Timestamp) -> RunId {
    let run = new_run(workflow, 2, at);
    let id = run.id;
    apply_all(store, vec![Change::CreateRun(run)]).await;
    id
}

/// A run of `workflow` submitted at `at`, RUNNING, its first task RUNNING.
async fn running_run<S: Store>(store: &S, workflow: &str, at: Timestamp) -> RunId {
    let run = new_run(workflow, 2, at);
    let (id, task) = (run.id, run.tasks[0].id);
    let ms = |n: i64| Timestamp::from_micros(at.as_micros() + n * 1000);
    let (s, _) = start(task, 1, ms(3));
    apply_all(
        store,
        vec![
            Change::CreateRun(run),
            run_change(id, RunStatus::Queued, RunStatus::Running, ms(1), None),
            plain(task, 0, TaskStatus::Submitted, TaskStatus::Pending, ms(2)),
            s,
        ],
    )
    .await;
    id
}

pub async fn expired_runs_follow_the_days_and_the_runs_rules<S: Store>(store: Arc<S>) {
    let s = &*store;
    // etl: finished on days 1, 3, 2 (ids in submission order), one running
    // and one queued; backup: one finished on day 1.
    let a = finished_run(s, "etl", 1, day(0), day(1), RunStatus::Completed).await;
    let b = finished_run(s, "etl", 2, t(10), day(3), RunStatus::Failed).await;
    let running = running_run(s, "etl", t(20)).await;
    let c = finished_run(s, "etl", 1, t(30), day(2), RunStatus::Canceled).await;
    let d = finished_run(s, "etl", 1, t(40), day(2), RunStatus::PartiallySucceeded).await;
    let queued = queued_run(s, "etl", t(50)).await;
    let other = finished_run(s, "backup", 1, t(60), day(1), RunStatus::Completed).await;

    let expired = |workflow: &'static str, expiry, limit| async move {
        s.expired_runs(workflow, expiry, limit).await.expect("expired_runs")
    };
    // Days: finished strictly before the cutoff, the earliest finished
    // first (ties by id), every finished status, never live runs.
    let mut day2 = vec![c, d];
    day2.sort();
    assert_eq!(expired("etl", Expiry::FinishedBefore(day(1)), 10).await, Vec::<RunId>::new());
    assert_eq!(expired("etl", Expiry::FinishedBefore(t(86_400_001)), 10).await, vec![a]);
    let mut upto3 = vec![a];
    upto3.extend(&day2);
    assert_eq!(expired("etl", Expiry::FinishedBefore(day(3)), 10).await, upto3);
    upto3.push(b);
    assert_eq!(expired("etl", Expiry::FinishedBefore(day(30)), 10).await, upto3);
    assert_eq!(expired("etl", Expiry::FinishedBefore(day(30)), 2).await, upto3[..2].to_vec(), "a limit");
    assert_eq!(expired("backup", Expiry::FinishedBefore(day(30)), 10).await, vec![other]);
    assert_eq!(expired("none", Expiry::FinishedBefore(day(30)), 10).await, Vec::<RunId>::new());

    // Runs: the newest N by submission stay whatever their status; the
    // finished ones before them go, oldest first.
    assert_eq!(expired("etl", Expiry::BeyondNewest(6), 10).await, Vec::<RunId>::new(), "six runs in all");
    assert_eq!(expired("etl", Expiry::BeyondNewest(5), 10).await, vec![a]);
    assert_eq!(
        expired("etl", Expiry::BeyondNewest(3), 10).await,
        vec![a, b],
        "the running run is older than the newest three but not finished"
    );
    assert_eq!(expired("etl", Expiry::BeyondNewest(2), 10).await, vec![a, b, c]);
    assert_eq!(
        expired("etl", Expiry::BeyondNewest(1), 10).await,
        vec![a, b, c, d],
        "the queued one is newest"
    );
    assert_eq!(expired("etl", Expiry::BeyondNewest(0), 10).await, vec![a, b, c, d]);
    assert_eq!(expired("etl", Expiry::BeyondNewest(0), 3).await, vec![a, b, c], "a limit");
    assert_eq!(expired("backup", Expiry::BeyondNewest(1), 10).await, Vec::<RunId>::new());
    assert_eq!(expired("backup", Expiry::BeyondNewest(0), 10).await, vec![other]);
    let _ = (running, queued);

    // Every workflow once, in name order, a page at a time.
    let _ = queued_run(s, "zeta", t(70)).await;
    let _ = queued_run(s, "zeta", t(71)).await;
    assert_eq!(s.run_workflows("", 10).await.unwrap(), ["backup", "etl", "zeta"]);
    assert_eq!(s.run_workflows("", 2).await.unwrap(), ["backup", "etl"]);
    assert_eq!(s.run_workflows("etl", 2).await.unwrap(), ["zeta"]);
    assert_eq!(s.run_workflows("zeta", 2).await.unwrap(), Vec::<String>::new());
}

pub async fn deleting_a_run_takes_everything_that_hangs_off_it<S: Store>(store: Arc<S>) {
    let s = &*store;
    let gone = finished_run(s, "etl", 3, t(0), t(1_000), RunStatus::Completed).await;
    let kept = finished_run(s, "etl", 2, t(10), t(2_000), RunStatus::Failed).await;
    let before = s.run_detail(gone).await.unwrap().expect("the run");
    let kept_before = s.run_detail(kept).await.unwrap().expect("the other run");
    let tasks: Vec<TaskId> = before.tasks.iter().map(|t| t.id).collect();
    assert_eq!(s.progress_samples(tasks[0]).await.unwrap().len(), 1, "the workload keeps a sample");
    let samples = s.run_progress_samples(gone).await.unwrap();
    assert_eq!(samples.keys().copied().collect::<Vec<_>>(), [tasks[0]], "only the first task has samples");
    assert_eq!(samples[&tasks[0]], s.progress_samples(tasks[0]).await.unwrap());
    assert_eq!(before.attempts[&tasks[0]].len(), 2);

    let deleted = s.delete_runs(vec![gone]).await.unwrap();
    assert_eq!(deleted, Deleted { runs: vec![gone], tasks: 3 });

    assert_eq!(s.run(gone).await.unwrap(), None);
    assert_eq!(s.run_detail(gone).await.unwrap(), None);
    assert_eq!(s.spec_source(gone).await.unwrap(), None);
    assert!(s.run_progress_samples(gone).await.unwrap().is_empty());
    assert!(s.runs_by_prefix(&gone.to_string(), 5).await.unwrap().is_empty());
    for &task in &tasks {
        assert_eq!(s.task(task).await.unwrap(), None, "task {task}");
        assert!(s.progress_samples(task).await.unwrap().is_empty(), "samples of {task}");
    }
    let by_label = RunSearch {
        filter: RunFilter { labels: vec!["team=data".into()], ..Default::default() },
        ..Default::default()
    };
    let found: Vec<RunId> = s.search_runs(by_label).await.unwrap().runs.iter().map(|r| r.id).collect();
    assert_eq!(found, vec![kept], "the label terms of the deleted run are gone");
    let of_run = |id: RunId| TaskSearch {
        filter: TaskFilter { run_id_prefix: Some(id.to_string()), ..Default::default() },
        ..Default::default()
    };
    assert!(s.search_tasks(of_run(gone)).await.unwrap().tasks.is_empty());
    let by_worker = TaskSearch {
        filter: TaskFilter { workers: vec!["w1".into()], ..Default::default() },
        ..Default::default()
    };
    let workers: BTreeSet<RunId> =
        s.search_tasks(by_worker).await.unwrap().tasks.iter().map(|row| row.task.run).collect();
    assert_eq!(workers, BTreeSet::from([kept]), "no attempt of a deleted task is found");

    // The other run is whole; the counts lost exactly the deleted records.
    assert_eq!(s.run_detail(kept).await.unwrap().as_ref(), Some(&kept_before));
    assert_eq!(s.search_tasks(of_run(kept)).await.unwrap().tasks.len(), 2);
    assert_counts_equal_the_records(s).await;
    let all = crate::CountQuery::default();
    assert_eq!(s.run_counts(all.clone()).await.unwrap(), [(RunStatus::Failed, 1)].into());
    assert_eq!(s.task_counts(all).await.unwrap(), [(TaskStatus::Completed, 2)].into());

    // Asked again, or with ids repeated and unknown: nothing more goes.
    assert_eq!(s.delete_runs(vec![gone]).await.unwrap(), Deleted::default());
    let unknown = RunId::new(t(5));
    let deleted = s.delete_runs(vec![unknown, kept, kept]).await.unwrap();
    assert_eq!(deleted, Deleted { runs: vec![kept], tasks: 2 }, "each run once, in the order asked");
    assert!(s.list_runs(RunQuery::default()).await.unwrap().is_empty());
    assert_eq!(s.run_counts(crate::CountQuery::default()).await.unwrap(), Default::default());
    assert_eq!(s.run_workflows("", 10).await.unwrap(), Vec::<String>::new());
    // Nothing left: an open window's trend ends with no minute, though the
    // count rows of the runs' minute may stay behind at zero.
    assert_counts_equal_the_records(s).await;
}

pub async fn live_work_is_never_deleted_even_when_asked<S: Store>(store: Arc<S>) {
    let s = &*store;
    let queued = queued_run(s, "etl", t(0)).await;
    let running = running_run(s, "etl", t(10)).await;
    // Ended COMPLETED by its run's status while a task still waits: the
    // store keeps it, as it keeps any run with live work.
    let odd = new_run("etl", 2, t(20));
    let (odd_id, odd_task) = (odd.id, odd.tasks[0].id);
    apply_all(
        s,
        vec![
            Change::CreateRun(odd),
            run_change(odd_id, RunStatus::Queued, RunStatus::Running, t(21), None),
            plain(odd_task, 0, TaskStatus::Submitted, TaskStatus::Pending, t(22)),
            run_change(odd_id, RunStatus::Running, RunStatus::Completed, t(23), None),
        ],
    )
    .await;
    let done = finished_run(s, "etl", 1, t(30), t(40), RunStatus::Completed).await;
    let live = [queued, running, odd_id];
    let mut before = Vec::new();
    for id in live {
        before.push(s.run_detail(id).await.unwrap().expect("the run"));
    }

    let deleted = s.delete_runs(vec![queued, running, odd_id, done, RunId::new(t(50))]).await.unwrap();
    assert_eq!(deleted, Deleted { runs: vec![done], tasks: 1 });
    for (id, before) in live.into_iter().zip(before) {
        assert_eq!(s.run_detail(id).await.unwrap(), Some(before), "run {id} is untouched");
    }
    // Even a rule that expires everything names no live run.
    assert!(s.expired_runs("etl", Expiry::BeyondNewest(0), 10).await.unwrap().contains(&odd_id));
    assert_eq!(s.delete_runs(vec![odd_id]).await.unwrap(), Deleted::default());
    assert_counts_equal_the_records(s).await;
}

/// xorshift64*: a fixed seed makes a failing workload replay exactly.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Claims every task still offered, so the next random workload claims
/// only its own offers (each workload knows only its own tasks).
async fn take_leftover_offers<S: Store>(store: &S) {
    loop {
        let claimed = store.claim(claim_request(&["q"], 1000, day(10), "drain")).await.expect("a claim");
        if claimed.tasks.is_empty() {
            return;
        }
    }
}

pub async fn counts_stay_exact_with_retention_interleaved<S: Store>(store: Arc<S>) {
    let mut rng = Rng(0x0DE1_E7ED);
    random_runs(&*store, 0xA11CE, 60).await;
    for round in 0..4u64 {
        take_leftover_offers(&*store).await;
        // What a rule would let go, some of it, and ids of any status: the
        // live ones must stay.
        let mut ids = Vec::new();
        for workflow in store.run_workflows("", 100).await.unwrap() {
            let expiry = if rng.below(2) == 0 {
                Expiry::BeyondNewest(rng.below(8) as u32)
            } else {
                Expiry::FinishedBefore(t(rng.below(4 * 86_400_000) as i64))
            };
            ids.extend(store.expired_runs(&workflow, expiry, 1 + rng.below(6) as usize).await.unwrap());
        }
        let all = store.list_runs(RunQuery { limit: 1000, ..Default::default() }).await.unwrap();
        for _ in 0..5 {
            ids.push(all[rng.below(all.len() as u64) as usize].id);
        }
        let asked: BTreeSet<RunId> = ids.iter().copied().collect();
        let before: Vec<_> = all.iter().filter(|r| asked.contains(&r.id)).cloned().collect();

        // New work runs meanwhile: deleting and writing share transactions
        // (SQLite's group commit) or race (PostgreSQL).
        let (_, deleted) =
            futures_util::future::join(random_runs(&*store, 0xB0B + round, 20), store.delete_runs(ids)).await;
        let deleted = deleted.expect("a deletion commits");
        let gone: BTreeSet<RunId> = deleted.runs.iter().copied().collect();
        assert!(!gone.is_empty(), "round {round} deletes something");
        for run in &before {
            let now = store.run(run.id).await.unwrap();
            if gone.contains(&run.id) {
                assert!(run.status.is_terminal(), "round {round}: deleted a live run {run:?}");
                assert_eq!(now, None);
            } else {
                assert!(now.is_some(), "round {round}: {} not deleted yet missing", run.id);
            }
        }
        assert_counts_equal_the_records(&*store).await;
    }
}
