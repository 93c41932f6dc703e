//! The status report built from a real store (SQLite, and PostgreSQL at
//! `CAIRN_TEST_POSTGRES`) filled with runs whose every time
//! is known, against figures worked out by hand: the status mix and failure
//! rate of each workflow in the period and the one before, the slowest
//! steps with their percentiles, the totals, and which workflows and runs
//! the periods' edges leave out.

use std::time::Duration;

use cairn_core::report::{ReportPeriod, RunTally, StatusReport, StepReport};
use cairn_core::{RunId, RunStatus, TaskStatus, Timestamp};
use cairn_engine::report::{build, build_for};
use cairn_store::conformance::{TestDatabase, end, new_run, plain, run_change, start};
use cairn_store::sqlite::SqliteOptions;
use cairn_store::{AttemptResult, Change, Outcome, SqliteStore, Store};

fn at(text: &str) -> Timestamp {
    Timestamp::from_jiff(text.parse::<jiff::Timestamp>().expect("a test timestamp"))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A step of a test run: its name, how it ends, and for how long it runs
/// (a CANCELED one never runs: it is canceled that long after submission;
/// a RUNNING one is still going).
struct Step(&'static str, TaskStatus, u64);

/// A run of `workflow` submitted at `submitted`, its steps all starting
/// then, ending in `status` a second after its last step (or still RUNNING).
async fn add_run<S: Store>(
    store: &S,
    workflow: &str,
    submitted: Timestamp,
    steps: &[Step],
    status: RunStatus,
) -> RunId {
    let mut run = new_run(workflow, steps.len() as u32, submitted);
    for (task, step) in run.tasks.iter_mut().zip(steps) {
        task.name = step.0.to_owned();
    }
    let id = run.id;
    let tasks: Vec<_> = run.tasks.iter().map(|t| t.id).collect();
    let mut changes =
        vec![Change::CreateRun(run), run_change(id, RunStatus::Queued, RunStatus::Running, submitted, None)];
    let mut last = submitted;
    for (&task, &Step(_, to, running)) in tasks.iter().zip(steps) {
        let done = submitted.saturating_add(secs(running));
        last = last.max(done);
        if to == TaskStatus::Canceled {
            changes.push(plain(task, 0, TaskStatus::Submitted, TaskStatus::Canceled, done));
            continue;
        }
        changes.push(plain(task, 0, TaskStatus::Submitted, TaskStatus::Pending, submitted));
        let (started, token) = start(task, 1, submitted);
        changes.push(started);
        if to != TaskStatus::Running {
            let result = AttemptResult {
                exit_code: Some(if to == TaskStatus::Failed { 1 } else { 0 }),
                ..AttemptResult::default()
            };
            changes.push(end(task, token, 1, to, done, result));
        }
    }
    if status != RunStatus::Running {
        changes.push(run_change(id, RunStatus::Running, status, last.saturating_add(secs(1)), None));
    }
    for (i, outcome) in store.apply(changes).await.unwrap().into_iter().enumerate() {
        assert_eq!(outcome, Outcome::Applied, "change #{i} of a {workflow} run");
    }
    id
}

/// The day reported on is Sunday 2026-11-22 (UTC); the day before is the
/// previous period. The week is the one ending on Monday 2026-11-23.
const END: &str = "2026-11-23T00:00:00Z";
const DAY: &str = "2026-11-22T00:00:00Z";
const DAY_BEFORE: &str = "2026-11-21T00:00:00Z";

async fn fill<S: Store>(store: &S) {
    use RunStatus as R;
    use TaskStatus as T;
    let h = |hours: u64| at(DAY).saturating_add(secs(3600 * hours));
    let p = |hours: u64| at(DAY_BEFORE).saturating_add(secs(3600 * hours));

    // etl in the day: 2 completed, 1 failed, 1 canceled, 1 still running.
    add_run(
        store,
        "etl",
        h(0),
        &[Step("extract", T::Completed, 10), Step("load", T::Completed, 100)],
        R::Completed,
    )
    .await;
    add_run(
        store,
        "etl",
        h(1),
        &[Step("extract", T::Completed, 20), Step("load", T::Completed, 200)],
        R::Completed,
    )
    .await;
    add_run(store, "etl", h(2), &[Step("extract", T::Completed, 30), Step("load", T::Failed, 50)], R::Failed)
        .await;
    add_run(
        store,
        "etl",
        h(3),
        &[Step("extract", T::Completed, 40), Step("load", T::Canceled, 5)],
        R::Canceled,
    )
    .await;
    add_run(store, "etl", at(END).saturating_sub(secs(600)), &[Step("extract", T::Running, 0)], R::Running)
        .await;
    // etl the day before: 2 completed (the last one submitted ten minutes
    // before midnight, its extract finishing ten minutes after), 1 failed.
    add_run(
        store,
        "etl",
        p(1),
        &[Step("extract", T::Completed, 60), Step("load", T::Completed, 300)],
        R::Completed,
    )
    .await;
    add_run(store, "etl", p(2), &[Step("extract", T::Failed, 5), Step("load", T::Canceled, 5)], R::Failed)
        .await;
    add_run(
        store,
        "etl",
        at(DAY).saturating_sub(secs(600)),
        &[Step("extract", T::Completed, 1200), Step("load", T::Completed, 60)],
        R::Completed,
    )
    .await;
    // etl outside both days: an hour before the day before (in the week),
    // and at the very end of the period (in neither: the end is excluded).
    add_run(store, "etl", p(0).saturating_sub(secs(3600)), &[Step("extract", T::Completed, 1)], R::Completed)
        .await;
    add_run(store, "etl", at(END), &[Step("extract", T::Completed, 1)], R::Completed).await;
    // The week before: one failed etl run.
    add_run(store, "etl", at("2026-11-10T12:00:00Z"), &[Step("extract", T::Failed, 3)], R::Failed).await;

    // report: only the day before.
    add_run(store, "report", p(5), &[Step("build", T::Completed, 7)], R::Completed).await;
    // idle: nothing finished in either period, so it is left out.
    add_run(store, "idle", h(4), &[Step("wait", T::Running, 0)], R::Running).await;
    // wide: six steps, one second apart.
    let wide: Vec<Step> = ["s0", "s1", "s2", "s3", "s4", "s5"]
        .into_iter()
        .zip(1..)
        .map(|(name, running)| Step(name, T::Completed, running))
        .collect();
    add_run(store, "wide", h(5), &wide, R::Completed).await;
}

fn counts(pairs: &[(RunStatus, u64)]) -> RunTally {
    RunTally::new(pairs.iter().copied().collect())
}

fn step(name: &str, count: u64, p50: f64, p95: f64, failures: u64, previous_p95: Option<f64>) -> StepReport {
    StepReport { step: name.to_owned(), count, p50, p95, failures, previous_p95, sampled_from: None }
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

async fn day_report_matches_the_hand_count<S: Store>(store: &S) {
    use RunStatus::*;
    let report: StatusReport = build(store, ReportPeriod::Day, at(END)).await.unwrap();
    assert_eq!(report.period, ReportPeriod::Day);
    assert_eq!((report.from, report.to, report.previous_from), (at(DAY), at(END), at(DAY_BEFORE)));
    let names: Vec<&str> = report.workflows.iter().map(|w| w.workflow.as_str()).collect();
    assert_eq!(names, ["etl", "report", "wide"], "idle finished nothing");

    let etl = &report.workflows[0];
    assert_eq!(etl.current, counts(&[(Completed, 2), (Failed, 1), (Canceled, 1), (Running, 1)]));
    assert_eq!((etl.current.finished, etl.current.failed, etl.current.failure_rate), (4, 1, Some(0.25)));
    // The run submitted before midnight belongs to the day before, though it finished in the day.
    assert_eq!(etl.previous, counts(&[(Completed, 2), (Failed, 1)]));
    assert!(close(etl.previous.failure_rate, 1.0 / 3.0), "{:?}", etl.previous);
    assert!(close(etl.failure_rate_change, 0.25 - 1.0 / 3.0), "{:?}", etl.failure_rate_change);
    // Steps by the tasks that finished in the day: extract 10, 20, 30, 40
    // and 1200 s (the late run's) — p50 the 3rd, p95 the 5th; load 50
    // (failed), 100, 200 s and a canceled one that ran no time. The day
    // before: extract 60 and 5 s (failed); load 300 and 60 s.
    assert_eq!(
        etl.slowest_steps,
        [step("extract", 5, 30.0, 1200.0, 0, Some(60.0)), step("load", 4, 100.0, 200.0, 1, Some(300.0))]
    );

    let rep = &report.workflows[1];
    assert_eq!(rep.current, RunTally::default());
    assert_eq!(rep.current.failure_rate, None, "nothing finished: no rate");
    assert_eq!(rep.previous, counts(&[(Completed, 1)]));
    assert_eq!(rep.previous.failure_rate, Some(0.0));
    assert_eq!(rep.failure_rate_change, None);
    assert!(rep.slowest_steps.is_empty());

    let wide = &report.workflows[2];
    assert_eq!(wide.current, counts(&[(Completed, 1)]));
    assert_eq!(
        wide.slowest_steps,
        [
            step("s5", 1, 6.0, 6.0, 0, None),
            step("s4", 1, 5.0, 5.0, 0, None),
            step("s3", 1, 4.0, 4.0, 0, None),
            step("s2", 1, 3.0, 3.0, 0, None),
            step("s1", 1, 2.0, 2.0, 0, None),
        ],
        "the five highest p95s"
    );

    // Totals of the workflows listed (idle's running run is not among them).
    assert_eq!(report.totals.current, counts(&[(Completed, 3), (Failed, 1), (Canceled, 1), (Running, 1)]));
    assert_eq!(report.totals.current.failure_rate, Some(0.2));
    assert_eq!(report.totals.previous, counts(&[(Completed, 3), (Failed, 1)]));
    assert_eq!(report.totals.previous.failure_rate, Some(0.25));
    assert!(close(report.totals.failure_rate_change, -0.05), "{:?}", report.totals);
}

async fn week_report_matches_the_hand_count<S: Store>(store: &S) {
    use RunStatus::*;
    let report = build(store, ReportPeriod::Week, at(END)).await.unwrap();
    assert_eq!(
        (report.from, report.to, report.previous_from),
        (at("2026-11-16T00:00:00Z"), at(END), at("2026-11-09T00:00:00Z"))
    );
    let names: Vec<&str> = report.workflows.iter().map(|w| w.workflow.as_str()).collect();
    assert_eq!(names, ["etl", "report", "wide"]);
    let etl = &report.workflows[0];
    assert_eq!(etl.current, counts(&[(Completed, 5), (Failed, 2), (Canceled, 1), (Running, 1)]));
    assert_eq!(etl.current.failure_rate, Some(0.25));
    assert_eq!(etl.previous, counts(&[(Failed, 1)]));
    assert_eq!(etl.previous.failure_rate, Some(1.0));
    assert_eq!(etl.failure_rate_change, Some(-0.75));
    // extract in the week: 1, 5 (failed), 10, 20, 30, 40, 60, 1200 s.
    assert_eq!(etl.slowest_steps[0], step("extract", 8, 20.0, 1200.0, 1, Some(3.0)));
}

async fn one_workflow_and_empty_periods<S: Store>(store: &S) {
    let only = build_for(store, ReportPeriod::Day, at(END), &["etl".to_owned()]).await.unwrap();
    assert_eq!(only.workflows.len(), 1);
    assert_eq!(only.totals.current, only.workflows[0].current);
    assert_eq!(only.totals.previous, only.workflows[0].previous);

    let idle = build_for(store, ReportPeriod::Day, at(END), &["idle".to_owned()]).await.unwrap();
    assert!(idle.workflows.is_empty(), "{idle:?}");

    let quiet = build(store, ReportPeriod::Day, at("2026-01-05T00:00:00Z")).await.unwrap();
    assert!(quiet.workflows.is_empty());
    assert_eq!(quiet.totals.current.failure_rate, None);
    assert_eq!(quiet.totals.failure_rate_change, None);
}

async fn all<S: Store>(store: &S) {
    fill(store).await;
    day_report_matches_the_hand_count(store).await;
    week_report_matches_the_hand_count(store).await;
    one_workflow_and_empty_periods(store).await;
}

#[tokio::test]
async fn the_report_of_a_sqlite_store_matches_the_hand_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cairn.db"), SqliteOptions::default()).unwrap();
    all(&store).await;
}

#[tokio::test]
async fn the_report_of_a_postgres_store_matches_the_hand_count() {
    let db = TestDatabase::create().await;
    let store = db.store().await;
    all(&store).await;
    store.close().await.unwrap();
}
