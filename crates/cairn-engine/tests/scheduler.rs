//! The cron scheduler against a real run manager and SQLite store, on a
//! manual clock: every tick is reached by moving the clock, never by sleeping.
//! The scheduler reports what it does; `Idle { now }` says it has handled
//! everything due at `now`.

use std::sync::Arc;
use std::time::Duration;

use cairn_core::lease::LeaseSettings;
use cairn_core::record::Actor;
use cairn_core::{ManualClock, RunId, RunStatus, Timestamp};
use cairn_engine::scheduler::{Report, TRIGGER, Workflows};
use cairn_engine::{EngineClock, Manager, ManagerOptions, ScheduledWorkflow, Scheduler};
use cairn_store::sqlite::SqliteOptions;
use cairn_store::{RunQuery, SqliteStore, Store};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

mod support;
use support::eventually;

struct Fixture {
    dir: tempfile::TempDir,
    manual: ManualClock,
    clock: EngineClock,
    manager: Arc<Manager<SqliteStore>>,
    workflows: watch::Sender<Workflows>,
    reports: mpsc::UnboundedReceiver<Report>,
    stop: CancellationToken,
    scheduler: tokio::task::JoinHandle<()>,
}

fn at(text: &str) -> Timestamp {
    Timestamp::from_jiff(text.parse().unwrap())
}

/// Minutes after the test epoch, 2026-01-01T00:00:00Z.
fn minute(n: u64) -> Timestamp {
    at("2026-01-01T00:00:00Z").saturating_add(Duration::from_secs(60 * n))
}

fn scheduled(yaml: &str) -> ScheduledWorkflow {
    let workflow = cairn_core::spec::parse(yaml, None).unwrap_or_else(|e| panic!("{e}"));
    ScheduledWorkflow { workflow: Arc::new(workflow), source: yaml.to_owned() }
}

fn set(list: Vec<ScheduledWorkflow>) -> Workflows {
    Arc::new(list)
}

impl Fixture {
    async fn new(list: Vec<ScheduledWorkflow>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let manual = ManualClock::at_test_epoch();
        let clock = EngineClock::manual(manual.clone());
        let manager = manager(&dir, &clock);
        let (workflows, rx) = watch::channel(set(list));
        let (reports, stop, scheduler) = spawn(&manager, rx, &clock);
        let mut f = Fixture { dir, manual, clock, manager, workflows, reports, stop, scheduler };
        f.idle_at(minute(0)).await;
        f
    }

    /// Moves the clock to `t` and returns what the scheduler did until it
    /// went idle having seen `t`.
    async fn idle_at(&mut self, t: Timestamp) -> Vec<Report> {
        self.manual.set(t);
        self.until_idle(t).await
    }

    async fn until_idle(&mut self, t: Timestamp) -> Vec<Report> {
        let mut seen = Vec::new();
        loop {
            match self.reports.recv().await.expect("the scheduler stopped") {
                Report::Idle { now, .. } if now >= t => return seen,
                Report::Idle { .. } => {}
                r => seen.push(r),
            }
        }
    }

    /// The next report that is not `Idle`.
    async fn next_action(&mut self) -> Report {
        loop {
            match self.reports.recv().await.expect("the scheduler stopped") {
                Report::Idle { .. } => {}
                r => return r,
            }
        }
    }

    /// Publishes a new workflow set and returns the next wake-up the
    /// scheduler computed from it.
    async fn reload(&mut self, list: Vec<ScheduledWorkflow>) -> Option<Timestamp> {
        self.workflows.send_replace(set(list));
        loop {
            match self.reports.recv().await.expect("the scheduler stopped") {
                Report::Idle { next, .. } => return next,
                Report::Problem { workflow, error } => panic!("problem with {workflow}: {error}"),
                _ => {}
            }
        }
    }

    async fn runs(&self) -> Vec<cairn_store::RunRecord> {
        let mut runs = self.manager.store().list_runs(RunQuery::default()).await.unwrap();
        runs.reverse();
        runs
    }

    /// Cancels `run` and waits (without the manual clock moving) until its driver is gone.
    async fn end(&self, run: RunId) {
        self.manager.cancel(run, Actor::User("test".into())).await.unwrap();
        self.ended(run).await;
    }

    /// Waits (without the manual clock moving) until `run`'s driver is gone.
    async fn ended(&self, run: RunId) {
        eventually(&format!("run {run} to end"), || async { (!self.manager.is_active(run)).then_some(()) })
            .await
    }

    async fn stop(self) -> (tempfile::TempDir, ManualClock, EngineClock, Arc<Manager<SqliteStore>>) {
        self.stop.cancel();
        self.scheduler.await.unwrap();
        (self.dir, self.manual, self.clock, self.manager)
    }
}

fn manager(dir: &tempfile::TempDir, clock: &EngineClock) -> Arc<Manager<SqliteStore>> {
    let store = Arc::new(SqliteStore::open(&dir.path().join("cairn.db"), SqliteOptions::default()).unwrap());
    let opts = ManagerOptions {
        owner: "server:test".into(),
        log_root: dir.path().join("logs"),
        lease: LeaseSettings::with_timeout(Duration::from_secs(30)),
    };
    Manager::new(store, clock.clone(), opts)
}

fn spawn(
    manager: &Arc<Manager<SqliteStore>>,
    workflows: watch::Receiver<Workflows>,
    clock: &EngineClock,
) -> (mpsc::UnboundedReceiver<Report>, CancellationToken, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let scheduler = Scheduler::new(manager.clone(), workflows, clock.clone()).with_reports(tx);
    let handle = tokio::spawn(scheduler.run(stop.clone()));
    (rx, stop, handle)
}

fn started(reports: &[Report]) -> Vec<(String, Timestamp)> {
    reports
        .iter()
        .filter_map(|r| match r {
            Report::Started { workflow, at, .. } => Some((workflow.clone(), *at)),
            _ => None,
        })
        .collect()
}

fn run_of(report: &Report) -> RunId {
    match report {
        Report::Started { run, .. } => *run,
        r => panic!("expected a start, got {r:?}"),
    }
}

/// A workflow whose one step waits in a queue no worker serves: its runs
/// stay active until canceled, without any process.
fn parked(name: &str, extra: &str) -> ScheduledWorkflow {
    scheduled(&format!(
        "name: {name}\nschedule: \"CRON_TZ=UTC * * * * *\"\n{extra}\nsteps:\n  - name: wait\n    command: \"true\"\n    queue: nobody\n"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fires_exactly_once_per_tick() {
    let every = scheduled(
        "name: every\nschedule: [\"CRON_TZ=UTC * * * * *\", \"CRON_TZ=UTC */2 * * * *\"]\noverlap_policy: all\nmax_active_runs: -1\nsteps:\n  - name: wait\n    command: \"true\"\n    queue: nobody\n",
    );
    let mut f = Fixture::new(vec![every]).await;
    assert!(f.runs().await.is_empty(), "nothing fires at start");

    assert_eq!(started(&f.idle_at(minute(1)).await), vec![("every".into(), minute(1))]);
    // Both schedules fire at minute 2: one run.
    assert_eq!(started(&f.idle_at(minute(2)).await), vec![("every".into(), minute(2))]);
    // Held up past two ticks: one run, for the latest.
    assert_eq!(
        started(&f.idle_at(minute(4).saturating_add(Duration::from_secs(30))).await),
        vec![("every".into(), minute(4))]
    );
    assert_eq!(started(&f.idle_at(minute(5)).await), vec![("every".into(), minute(5))]);

    let runs = f.runs().await;
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r.trigger == TRIGGER && r.workflow == "every"));
    f.manager.halt();
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_drops_ticks_while_a_scheduled_run_is_active() {
    let mut f = Fixture::new(vec![parked("nightly", "max_active_runs: -1")]).await;
    let first = f.idle_at(minute(1)).await;
    let run = run_of(&first[0]);

    let second = f.idle_at(minute(2)).await;
    assert!(
        matches!(&second[..], [Report::Skipped { at, reason, .. }] if *at == minute(2) && reason.contains("still active")),
        "{second:?}"
    );
    f.end(run).await;
    assert_eq!(started(&f.idle_at(minute(3)).await), vec![("nightly".into(), minute(3))]);
    assert_eq!(f.runs().await.len(), 2);
    f.manager.halt();
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_starts_a_run_per_tick_within_max_active_runs() {
    let mut f = Fixture::new(vec![parked("every", "overlap_policy: all\nmax_active_runs: 2")]).await;
    f.idle_at(minute(1)).await;
    assert_eq!(started(&f.idle_at(minute(2)).await), vec![("every".into(), minute(2))], "overlapping");

    // A third would pass max_active_runs: it waits, and so does a fourth.
    let third = f.idle_at(minute(3)).await;
    assert!(
        matches!(&third[..], [Report::Waiting { at, reason, .. }] if *at == minute(3) && reason.contains("max_active_runs is 2")),
        "{third:?}"
    );
    f.idle_at(minute(4)).await;
    assert_eq!(f.manager.active_runs_of("every").len(), 2);

    // Each run that ends lets the oldest waiting tick start.
    let runs: Vec<RunId> = f.runs().await.iter().map(|r| r.id).collect();
    f.end(runs[0]).await;
    let next = f.next_action().await;
    assert!(matches!(&next, Report::Started { at, .. } if *at == minute(3)), "{next:?}");
    f.end(runs[1]).await;
    let next = f.next_action().await;
    assert!(matches!(&next, Report::Started { at, .. } if *at == minute(4)), "{next:?}");
    assert_eq!(f.runs().await.len(), 4);
    f.manager.halt();
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_runs_counts_runs_not_started_by_the_schedule() {
    let flow = parked("report", "");
    let mut f = Fixture::new(vec![flow.clone()]).await;
    let manual = f.manager.submit(flow.workflow.clone(), flow.source.clone(), &[], "api").await.unwrap();
    let skipped = f.idle_at(minute(1)).await;
    assert!(
        matches!(&skipped[..], [Report::Skipped { reason, .. }] if reason == "max_active_runs is 1 and 1 run is active"),
        "{skipped:?}"
    );
    f.end(manual).await;
    assert_eq!(started(&f.idle_at(minute(2)).await), vec![("report".into(), minute(2))]);
    f.manager.halt();
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_keeps_only_the_newest_tick_waiting() {
    let mut f = Fixture::new(vec![parked("sync", "overlap_policy: latest")]).await;
    let run = run_of(&f.idle_at(minute(1)).await[0]);

    let second = f.idle_at(minute(2)).await;
    assert!(matches!(&second[..], [Report::Waiting { at, .. }] if *at == minute(2)), "{second:?}");
    let third = f.idle_at(minute(3)).await;
    assert!(
        matches!(&third[..], [Report::Skipped { at: old, reason, .. }, Report::Waiting { at, .. }]
            if *old == minute(2) && reason.contains("replaced") && *at == minute(3)),
        "{third:?}"
    );

    f.end(run).await;
    let next = f.next_action().await;
    assert!(matches!(&next, Report::Started { at, .. } if *at == minute(3)), "{next:?}");
    assert_eq!(f.runs().await.len(), 2, "the 2nd tick coalesced into the 3rd");
    f.manager.halt();
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_schedule_takes_effect() {
    let hourly = "name: job\nschedule: \"CRON_TZ=UTC 0 * * * *\"\nsteps: [\"true\"]\n";
    let mut f = Fixture::new(vec![scheduled(hourly)]).await;
    assert_eq!(f.reload(vec![scheduled(hourly)]).await, Some(minute(60)));

    // An edit that keeps the schedule keeps its time.
    f.manual.set(minute(3));
    let edited = "name: job\nschedule: \"CRON_TZ=UTC 0 * * * *\"\nsteps: [\"echo edited\"]\n";
    assert_eq!(f.reload(vec![scheduled(edited)]).await, Some(minute(60)));

    let every5 = "name: job\nschedule: \"CRON_TZ=UTC */5 * * * *\"\nsteps: [\"true\"]\n";
    assert_eq!(f.reload(vec![scheduled(every5)]).await, Some(minute(5)));
    assert_eq!(started(&f.idle_at(minute(5)).await), vec![("job".into(), minute(5))]);

    // Gone from the catalog: nothing more fires.
    assert_eq!(f.reload(vec![]).await, None);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_time_zone_is_reported() {
    let yaml = "name: tz\nschedule: \"CRON_TZ=Nowhere/Atlantis 0 * * * *\"\nsteps: [\"true\"]\n";
    let refused = cairn_core::spec::parse(yaml, None).unwrap_err().to_string();
    assert!(refused.contains("unknown time zone \"Nowhere/Atlantis\""), "{refused}");

    // A workflow that got past validation (say, a zone the host no longer
    // has) is reported by the scheduler, and the others still run.
    let mut tz = scheduled("name: tz\nschedule: \"CRON_TZ=UTC 0 * * * *\"\nsteps: [\"true\"]\n");
    let mut w = (*tz.workflow).clone();
    w.schedule.start[0].timezone = Some("Nowhere/Atlantis".into());
    tz.workflow = Arc::new(w);
    let good = scheduled("name: good\nschedule: \"CRON_TZ=UTC * * * * *\"\nsteps: [\"true\"]\n");
    let mut f = Fixture::new(vec![good.clone()]).await;
    f.workflows.send_replace(set(vec![tz, good]));
    let report = f.next_action().await;
    assert!(
        matches!(&report, Report::Problem { workflow, error } if workflow == "tz" && error.contains("unknown time zone \"Nowhere/Atlantis\"")),
        "{report:?}"
    );
    assert_eq!(started(&f.idle_at(minute(1)).await), vec![("good".into(), minute(1))]);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_if_successful_skips_a_tick_after_a_successful_manual_run() {
    let flow = scheduled(
        "name: once\nschedule: \"CRON_TZ=UTC * * * * *\"\nskip_if_successful: true\nsteps: [\"true\"]\n",
    );
    let mut f = Fixture::new(vec![flow.clone()]).await;
    f.manual.set(minute(0).saturating_add(Duration::from_secs(10)));
    let manual = f.manager.submit(flow.workflow.clone(), flow.source.clone(), &[], "api").await.unwrap();
    f.ended(manual).await;
    let record = f.manager.store().run(manual).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Completed);

    let first = f.idle_at(minute(1)).await;
    assert!(
        matches!(&first[..], [Report::Skipped { reason, .. }] if reason.contains("skip_if_successful")),
        "{first:?}"
    );
    // The manual run was before the previous tick now: this one runs.
    assert_eq!(started(&f.idle_at(minute(2)).await), vec![("once".into(), minute(2))]);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_missed_while_down_is_caught_up_once_within_the_window() {
    let flow = scheduled(
        "name: hourly\nschedule: \"CRON_TZ=UTC 0 * * * *\"\ncatchup_window: 2h\nsteps: [\"true\"]\n",
    );
    let mut f = Fixture::new(vec![flow.clone()]).await;
    let run = run_of(&f.idle_at(minute(60)).await[0]);
    f.ended(run).await;
    let (dir, manual, clock, manager) = f.stop().await;

    // Down over 02:00 and 03:00; back at 03:30: 03:00 is fired, once.
    manual.set(minute(210));
    let (_tx, rx) = watch::channel(set(vec![flow]));
    let (mut reports, stop, handle) = spawn(&manager, rx, &clock);
    let first = reports.recv().await.unwrap();
    assert!(matches!(&first, Report::Started { at, .. } if *at == minute(180)), "{first:?}");
    let idle = reports.recv().await.unwrap();
    assert_eq!(idle, Report::Idle { now: minute(210), next: Some(minute(240)) });
    stop.cancel();
    handle.await.unwrap();
    drop(dir);
}
