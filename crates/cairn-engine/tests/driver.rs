//! The run driver against a real SQLite store, with a scripted runner that
//! plays each task's attempts, and a manual clock for every timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_core::lease::LeaseSettings;
use cairn_core::record::Actor;
use cairn_core::retry::{FailureKind, RetryPolicy};
use cairn_core::{ManualClock, RunId, RunStatus, TaskStatus};
use cairn_engine::{
    AttemptContext, AttemptOutcome, ContinueOn, Driver, EngineClock, Handler, PlannedTask, Precheck, Role,
    RunEvent, RunOptions, RunPlan, TaskRunner, recover,
};
use cairn_store::model::RunDetail;
use cairn_store::sqlite::SqliteOptions;
use cairn_store::{SqliteStore, Store};
use tokio_util::sync::CancellationToken;

mod support;
use support::eventually;

/// What a scripted attempt does.
#[derive(Clone, Debug)]
enum Play {
    Ok,
    Exit(i32),
    /// Runs until canceled.
    Hang,
    /// Reports this progress, then succeeds at once.
    Report(f32),
}

#[derive(Default)]
struct Script {
    plays: Mutex<HashMap<String, Vec<Play>>>,
    skip: Mutex<Vec<String>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    started: Mutex<Vec<String>>,
}

#[derive(Clone, Default)]
struct Scripted(Arc<Script>);

impl Scripted {
    fn play(self, name: &str, plays: Vec<Play>) -> Self {
        self.0.plays.lock().unwrap().insert(name.to_owned(), plays);
        self
    }

    fn skip(self, name: &str) -> Self {
        self.0.skip.lock().unwrap().push(name.to_owned());
        self
    }

    fn started(&self) -> Vec<String> {
        self.0.started.lock().unwrap().clone()
    }
}

impl TaskRunner for Scripted {
    async fn precheck(&self, ctx: &AttemptContext) -> Precheck {
        if self.0.skip.lock().unwrap().contains(&ctx.name) {
            Precheck::Skip(format!("precondition of {} not met", ctx.name))
        } else {
            Precheck::Run
        }
    }

    async fn run(&self, ctx: AttemptContext) -> AttemptOutcome {
        self.0.started.lock().unwrap().push(ctx.name.clone());
        let now = self.0.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.max_running.fetch_max(now, Ordering::SeqCst);
        let play = {
            let mut plays = self.0.plays.lock().unwrap();
            match plays.get_mut(&ctx.name) {
                Some(list) if !list.is_empty() => list.remove(0),
                _ => Play::Ok,
            }
        };
        // Let other tasks interleave, as real work would.
        tokio::task::yield_now().await;
        let outcome = match play {
            Play::Ok => AttemptOutcome::Succeeded { exit_code: Some(0), outputs: BTreeMap::new() },
            Play::Report(pct) => {
                ctx.progress
                    .report(cairn_core::progress::Progress::new(pct, Some("last words".into())).unwrap());
                AttemptOutcome::Succeeded { exit_code: Some(0), outputs: BTreeMap::new() }
            }
            Play::Exit(code) => AttemptOutcome::Failed {
                kind: FailureKind::Exit(code),
                exit_code: Some(code),
                error: format!("exit code {code}"),
                outputs: BTreeMap::new(),
                continue_matched: false,
            },
            Play::Hang => {
                ctx.cancel.cancelled().await;
                AttemptOutcome::Killed { exit_code: None, outputs: BTreeMap::new() }
            }
        };
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    manual: ManualClock,
    clock: EngineClock,
    log_root: std::path::PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(SqliteStore::open(&dir.path().join("cairn.db"), SqliteOptions::default()).unwrap());
        let manual = ManualClock::at_test_epoch();
        let clock = EngineClock::manual(manual.clone());
        let log_root = dir.path().join("logs");
        Fixture { _dir: dir, store, manual, clock, log_root }
    }

    fn driver(&self, plan: RunPlan, runner: Scripted) -> Driver<SqliteStore, Scripted> {
        let opts = RunOptions {
            run_id: RunId::new(self.clock.now()),
            owner: cairn_engine::owner::LocalOwner::current().to_string(),
            lease: LeaseSettings::with_timeout(Duration::from_secs(30)),
            log_root: self.log_root.clone(),
            prechecks: true,
            remote: false,
        };
        Driver::new(self.store.clone(), Arc::new(runner), self.clock.clone(), plan, opts).unwrap()
    }

    /// Starts driving in the background; the returned watch sees committed changes.
    fn start(
        &self,
        plan: RunPlan,
        runner: Scripted,
        cancel: CancellationToken,
    ) -> (RunId, tokio::task::JoinHandle<Result<RunStatus, cairn_engine::EngineError>>, Watch) {
        let names = plan.tasks.iter().map(|t| t.name.clone()).collect();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = self.driver(plan, runner).with_events(tx);
        let id = driver.run_id();
        let handle = tokio::spawn(driver.drive(cancel, Actor::User("alice".into())));
        (id, handle, Watch { rx, names })
    }

    async fn run(&self, plan: RunPlan, runner: Scripted) -> (RunStatus, RunDetail) {
        let driver = self.driver(plan, runner);
        let id = driver.run_id();
        let status = driver.drive(CancellationToken::new(), Actor::User("tester".into())).await.unwrap();
        (status, self.store.run_detail(id).await.unwrap().unwrap())
    }
}

fn plan(tasks: Vec<PlannedTask>) -> RunPlan {
    RunPlan {
        workflow: "test".into(),
        tasks,
        max_active: None,
        timeout: None,
        delay: None,
        params: BTreeMap::new(),
        spec_source: "steps: []".into(),
        spec_path: None,
        trigger: "manual".into(),
        requested_by: cairn_core::record::Actor::Scheduler,
        schedule_tick: None,
        labels: Vec::new(),
        preconditions: false,
        keep_details: false,
        carried: Vec::new(),
    }
}

fn step(name: &str, deps: &[usize]) -> PlannedTask {
    PlannedTask::step(name, deps.to_vec())
}

fn handler(h: Handler) -> PlannedTask {
    PlannedTask { role: Role::Handler(h), ..PlannedTask::step(h.task_name(), vec![]) }
}

fn status_of(d: &RunDetail, name: &str) -> TaskStatus {
    d.tasks.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no task {name}")).status
}

/// `FROM->TO` of each transition of one task, in order.
fn path(d: &RunDetail, name: &str) -> Vec<String> {
    let t = d.tasks.iter().find(|t| t.name == name).unwrap();
    d.transitions[&t.id].iter().map(|t| t.to.as_str().to_owned()).collect()
}

fn reasons(d: &RunDetail, name: &str) -> Vec<String> {
    let t = d.tasks.iter().find(|t| t.name == name).unwrap();
    d.transitions[&t.id].iter().map(|t| t.reason.clone()).collect()
}

/// Checks the invariants every finished run must satisfy.
fn assert_invariants(d: &RunDetail) {
    for t in &d.tasks {
        assert!(t.status.is_terminal(), "{} left {}", t.name, t.status);
        assert!(t.lease.is_none(), "{} still holds a lease", t.name);
        let log = &d.transitions[&t.id];
        assert_eq!(log.first().unwrap().to, TaskStatus::Submitted);
        for w in log.windows(2) {
            assert_eq!(Some(w[0].to), w[1].from, "{}: broken chain", t.name);
            assert!(w[0].at <= w[1].at, "{}: time went back", t.name);
            TaskStatus::check(w[1].from, w[1].to).unwrap();
        }
        let starts = log.iter().filter(|x| x.to == TaskStatus::Running).count();
        assert_eq!(starts as u32, t.attempt, "{}: one attempt per start", t.name);
        assert_eq!(
            d.attempts.get(&t.id).map_or(0, Vec::len),
            starts,
            "{}: an attempt record per start",
            t.name
        );
    }
    assert!(d.run.status.is_terminal());
}

#[tokio::test]
async fn diamond_runs_in_dependency_order_and_records_everything() {
    let f = Fixture::new();
    let runner = Scripted::default();
    let (status, d) = f
        .run(plan(vec![step("a", &[]), step("b", &[0]), step("c", &[0]), step("d", &[1, 2])]), runner.clone())
        .await;
    assert_eq!(status, RunStatus::Completed);
    assert_invariants(&d);
    assert_eq!(path(&d, "a"), ["SUBMITTED", "PENDING", "RUNNING", "COMPLETED"]);
    assert_eq!(path(&d, "d"), ["SUBMITTED", "BLOCKED", "PENDING", "RUNNING", "COMPLETED"]);
    assert_eq!(reasons(&d, "d")[1], "waiting for b, c");
    let started = runner.started();
    assert_eq!(started.first().map(String::as_str), Some("a"));
    assert_eq!(started.last().map(String::as_str), Some("d"));
    assert_eq!(d.run.status, RunStatus::Completed);
}

#[tokio::test]
async fn a_final_failure_abandons_downstream_but_not_other_branches() {
    let f = Fixture::new();
    let runner = Scripted::default().play("a", vec![Play::Exit(3)]);
    let (status, d) =
        f.run(plan(vec![step("a", &[]), step("b", &[0]), step("c", &[1]), step("x", &[])]), runner).await;
    assert_eq!(status, RunStatus::Failed);
    assert_invariants(&d);
    assert_eq!(status_of(&d, "a"), TaskStatus::Failed);
    assert_eq!(status_of(&d, "b"), TaskStatus::Abandoned);
    assert_eq!(status_of(&d, "c"), TaskStatus::Abandoned);
    assert_eq!(status_of(&d, "x"), TaskStatus::Completed);
    assert_eq!(reasons(&d, "b").last().unwrap(), "upstream \"a\" failed");
    assert_eq!(reasons(&d, "c").last().unwrap(), "upstream \"b\" was abandoned");
    let a = d.tasks.iter().find(|t| t.name == "a").unwrap();
    assert_eq!(a.exit_code, Some(3));
    assert_eq!(d.run.error.as_deref(), Some("failed: a"));
}

#[tokio::test]
async fn retries_wait_their_backoff_on_the_clock_and_keep_each_attempt() {
    let f = Fixture::new();
    let runner = Scripted::default().play("flaky", vec![Play::Exit(1), Play::Exit(1), Play::Ok]);
    let mut flaky = step("flaky", &[]);
    flaky.retry =
        RetryPolicy { limit: 2, interval: Duration::from_secs(10), backoff: 2.0, ..Default::default() };
    let (id, handle, mut watch) = f.start(plan(vec![flaky]), runner.clone(), CancellationToken::new());
    // The first retry waits 10 s, the second 20 s: nothing runs until the clock says so.
    watch.until("flaky", TaskStatus::Running).await;
    watch.until("flaky", TaskStatus::Pending).await;
    f.manual.advance(Duration::from_secs(9));
    settle().await;
    assert_eq!(runner.started().len(), 1, "retried before its back-off");
    f.manual.advance(Duration::from_secs(1));
    watch.until("flaky", TaskStatus::Running).await;
    watch.until("flaky", TaskStatus::Pending).await;
    f.manual.advance(Duration::from_secs(20));
    let status = handle.await.unwrap().unwrap();
    assert_eq!(status, RunStatus::Completed);
    let d = f.store.run_detail(id).await.unwrap().unwrap();
    assert_invariants(&d);
    assert_eq!(
        path(&d, "flaky"),
        ["SUBMITTED", "PENDING", "RUNNING", "PENDING", "RUNNING", "PENDING", "RUNNING", "COMPLETED"]
    );
    assert_eq!(reasons(&d, "flaky")[3], "attempt 1 failed: exit code 1; retry 1 of 2 in 10s");
    assert_eq!(reasons(&d, "flaky")[5], "attempt 2 failed: exit code 1; retry 2 of 2 in 20s");
    let attempts = &d.attempts[&d.tasks[0].id];
    assert_eq!(
        attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [Some(TaskStatus::Failed), Some(TaskStatus::Failed), Some(TaskStatus::Completed)]
    );
    assert_eq!(attempts[0].exit_code, Some(1));
}

#[tokio::test]
async fn a_step_timeout_kills_the_attempt_and_fails_it() {
    let f = Fixture::new();
    let runner = Scripted::default().play("slow", vec![Play::Hang]);
    let mut slow = step("slow", &[]);
    slow.timeout = Some(Duration::from_secs(5));
    let (id, handle, mut watch) =
        f.start(plan(vec![slow, step("after", &[0])]), runner, CancellationToken::new());
    watch.until("slow", TaskStatus::Running).await;
    f.manual.advance(Duration::from_secs(4));
    settle().await;
    f.manual.advance(Duration::from_secs(1));
    let status = handle.await.unwrap().unwrap();
    assert_eq!(status, RunStatus::Failed);
    let d = f.store.run_detail(id).await.unwrap().unwrap();
    assert_invariants(&d);
    assert_eq!(status_of(&d, "slow"), TaskStatus::Failed);
    assert_eq!(reasons(&d, "slow").last().unwrap(), "timed out after 5s");
    assert_eq!(status_of(&d, "after"), TaskStatus::Abandoned);
}

#[tokio::test]
async fn the_workflow_timeout_stops_running_steps() {
    let f = Fixture::new();
    let runner = Scripted::default().play("long", vec![Play::Hang]);
    let mut p = plan(vec![step("long", &[]), step("next", &[0])]);
    p.timeout = Some(Duration::from_secs(60));
    let (id, handle, mut watch) = f.start(p, runner, CancellationToken::new());
    watch.until("long", TaskStatus::Running).await;
    f.manual.advance(Duration::from_secs(61));
    assert_eq!(handle.await.unwrap().unwrap(), RunStatus::Failed);
    let d = f.store.run_detail(id).await.unwrap().unwrap();
    assert_invariants(&d);
    assert_eq!(status_of(&d, "long"), TaskStatus::Canceled);
    assert_eq!(status_of(&d, "next"), TaskStatus::Abandoned);
    assert_eq!(d.run.error.as_deref(), Some("the workflow timed out after 1m0s"));
}

#[tokio::test]
async fn cancel_kills_running_cancels_pending_abandons_downstream_and_runs_the_abort_handler() {
    let f = Fixture::new();
    let runner = Scripted::default().play("a", vec![Play::Hang]).play("b", vec![Play::Hang]);
    let mut p = plan(vec![
        step("a", &[]),
        step("b", &[]),
        step("c", &[]),
        step("d", &[0]),
        handler(Handler::Cancel),
        handler(Handler::Success),
        handler(Handler::Exit),
    ]);
    p.max_active = Some(2);
    let cancel = CancellationToken::new();
    let (id, handle, mut watch) = f.start(p, runner.clone(), cancel.clone());
    watch.until("a", TaskStatus::Running).await;
    watch.until("b", TaskStatus::Running).await;
    wait_until(|| runner.started().len() == 2).await;
    cancel.cancel();
    assert_eq!(handle.await.unwrap().unwrap(), RunStatus::Canceled);
    let d = f.store.run_detail(id).await.unwrap().unwrap();
    assert_invariants(&d);
    assert_eq!(status_of(&d, "a"), TaskStatus::Canceled);
    assert_eq!(status_of(&d, "b"), TaskStatus::Canceled);
    assert_eq!(path(&d, "c"), ["SUBMITTED", "PENDING", "CANCELED"]);
    assert_eq!(status_of(&d, "d"), TaskStatus::Abandoned);
    assert_eq!(reasons(&d, "a").last().unwrap(), "canceled by user:alice");
    assert_eq!(status_of(&d, "onAbort"), TaskStatus::Completed);
    assert_eq!(status_of(&d, "onSuccess"), TaskStatus::Abandoned);
    assert_eq!(status_of(&d, "onExit"), TaskStatus::Completed);
    let last = d.run_transitions.last().unwrap();
    assert_eq!((last.to, last.actor.to_string()), (RunStatus::Canceled, "user:alice".to_owned()));
}

#[tokio::test]
async fn false_preconditions_skip_and_skips_propagate_unless_continue_on_skipped() {
    let f = Fixture::new();
    let runner = Scripted::default().skip("gate").skip("gate2");
    let mut gate2 = step("gate2", &[]);
    gate2.continue_on = ContinueOn { skipped: true, ..Default::default() };
    let (status, d) =
        f.run(plan(vec![step("gate", &[]), step("after", &[0]), gate2, step("after2", &[2])]), runner).await;
    assert_eq!(status, RunStatus::Completed);
    assert_invariants(&d);
    assert_eq!(path(&d, "gate"), ["SUBMITTED", "PENDING", "SKIPPED"]);
    assert_eq!(reasons(&d, "gate").last().unwrap(), "precondition of gate not met");
    assert_eq!(status_of(&d, "after"), TaskStatus::Skipped);
    assert_eq!(reasons(&d, "after").last().unwrap(), "upstream \"gate\" was skipped");
    assert_eq!(status_of(&d, "after2"), TaskStatus::Completed);
}

#[tokio::test]
async fn continue_on_failure_gives_a_partial_success_and_mark_success_a_success() {
    let f = Fixture::new();
    let runner = Scripted::default().play("soft", vec![Play::Exit(1)]).play("marked", vec![Play::Exit(7)]);
    let mut soft = step("soft", &[]);
    soft.continue_on = ContinueOn { failure: true, ..Default::default() };
    let mut marked = step("marked", &[]);
    marked.continue_on = ContinueOn { exit_codes: vec![7], mark_success: true, ..Default::default() };
    let (status, d) = f
        .run(
            plan(vec![soft, step("after", &[0]), marked, step("after2", &[2]), handler(Handler::Failure)]),
            runner,
        )
        .await;
    assert_invariants(&d);
    assert_eq!(status, RunStatus::PartiallySucceeded);
    assert_eq!(status_of(&d, "soft"), TaskStatus::Failed);
    assert_eq!(status_of(&d, "after"), TaskStatus::Completed);
    assert_eq!(status_of(&d, "marked"), TaskStatus::Completed);
    assert!(reasons(&d, "marked").last().unwrap().contains("mark_success"));
    assert_eq!(status_of(&d, "after2"), TaskStatus::Completed);
    assert_eq!(status_of(&d, "onFailure"), TaskStatus::Abandoned);
}

#[tokio::test]
async fn max_active_bounds_parallelism() {
    let f = Fixture::new();
    let runner = Scripted::default();
    let mut p = plan((0..30).map(|i| step(&format!("t{i}"), &[])).collect());
    p.max_active = Some(3);
    let (status, d) = f.run(p, runner.clone()).await;
    assert_eq!(status, RunStatus::Completed);
    assert_invariants(&d);
    assert!(runner.0.max_running.load(Ordering::SeqCst) <= 3);
}

#[tokio::test]
async fn the_failure_handler_runs_and_its_failure_fails_the_run() {
    let f = Fixture::new();
    let runner = Scripted::default().play("a", vec![Play::Exit(1)]);
    let (status, d) =
        f.run(plan(vec![step("a", &[]), handler(Handler::Success), handler(Handler::Failure)]), runner).await;
    assert_eq!(status, RunStatus::Failed);
    assert_invariants(&d);
    assert_eq!(status_of(&d, "onFailure"), TaskStatus::Completed);
    assert_eq!(status_of(&d, "onSuccess"), TaskStatus::Abandoned);
}

#[tokio::test]
async fn recovery_fails_the_runs_of_a_dead_executor() {
    let f = Fixture::new();
    let runner = Scripted::default().play("a", vec![Play::Hang]);
    // Drive until `a` runs, then drop the driver mid-run, as if its process died.
    let (id, handle, mut watch) =
        f.start(plan(vec![step("a", &[]), step("b", &[0])]), runner, CancellationToken::new());
    watch.until("a", TaskStatus::Running).await;
    handle.abort();
    let _ = handle.await;
    let d = f.store.run_detail(id).await.unwrap().unwrap();
    assert_eq!(status_of(&d, "a"), TaskStatus::Running);
    // The owner (this process) is alive, so only an expired lease lets the reaper in.
    assert_eq!(recover(f.store.as_ref(), &f.clock).await.unwrap().attempts_reaped, 0);
    f.manual.advance(Duration::from_secs(31));
    let done = recover(f.store.as_ref(), &f.clock).await.unwrap();
    assert_eq!(done.attempts_reaped, 1);
    let d = f.store.run_detail(id).await.unwrap().unwrap();
    assert_eq!(status_of(&d, "a"), TaskStatus::Failed);
    let reason = reasons(&d, "a").last().unwrap().clone();
    assert!(reason.starts_with("heartbeat lost (worker local:"), "{reason}");
    let t = d.tasks.iter().find(|t| t.name == "a").unwrap();
    assert_eq!(d.transitions[&t.id].last().unwrap().actor, Actor::Reaper);
}

/// The driver's committed events, to wait for a state without sleeping.
struct Watch {
    rx: tokio::sync::mpsc::UnboundedReceiver<RunEvent>,
    names: Vec<String>,
}

impl Watch {
    /// Waits until task `name` has been recorded in `status`.
    async fn until(&mut self, name: &str, status: TaskStatus) {
        while let Some(e) = self.rx.recv().await {
            if let RunEvent::Task { index, status: s, .. } = e
                && self.names[index] == name
                && s == status
            {
                return;
            }
        }
        panic!("run ended before {name} became {status}");
    }
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

async fn wait_until(cond: impl Fn() -> bool) {
    eventually("the condition", || async { cond().then_some(()) }).await
}

#[tokio::test]
async fn a_task_heartbeats_often_enough_for_its_own_timeout() {
    let f = Fixture::new();
    let runner = Scripted::default().play("hb", vec![Play::Hang]);
    let mut hb = step("hb", &[]);
    hb.heartbeat_timeout = Some(Duration::from_secs(3));
    let cancel = CancellationToken::new();
    let (id, handle, mut watch) = f.start(plan(vec![hb]), runner, cancel.clone());
    watch.until("hb", TaskStatus::Running).await;
    let t0 = f.clock.now();
    let expiry = |d: &RunDetail| d.tasks[0].lease.as_ref().unwrap().expires_at;
    let d = f.store.run_detail(id).await.unwrap().unwrap();
    assert_eq!(expiry(&d), t0.saturating_add(Duration::from_secs(3)));
    // The run's default interval is 10 s; this task's 3 s timeout needs a beat every second.
    f.manual.advance(Duration::from_secs(1));
    let want = t0.saturating_add(Duration::from_secs(4));
    eventually("the lease extended after one heartbeat interval", || async {
        (expiry(&f.store.run_detail(id).await.unwrap().unwrap()) == want).then_some(())
    })
    .await;
    assert_eq!(recover(f.store.as_ref(), &f.clock).await.unwrap().attempts_reaped, 0);
    cancel.cancel();
    assert_eq!(handle.await.unwrap().unwrap(), RunStatus::Canceled);
}

#[tokio::test]
async fn a_workflow_delay_holds_every_step_until_it_passes() {
    let f = Fixture::new();
    let runner = Scripted::default();
    let mut p = plan(vec![step("first", &[])]);
    p.delay = Some(Duration::from_secs(30));
    let (_, handle, mut watch) = f.start(p, runner.clone(), CancellationToken::new());
    watch.until("first", TaskStatus::Pending).await;
    f.manual.advance(Duration::from_secs(29));
    settle().await;
    assert!(runner.started().is_empty(), "started before the delay passed");
    f.manual.advance(Duration::from_secs(1));
    assert_eq!(handle.await.unwrap().unwrap(), RunStatus::Completed);
    assert_eq!(runner.started(), ["first"]);
}

#[tokio::test]
async fn progress_reported_just_before_the_end_is_kept() {
    let f = Fixture::new();
    let tasks: Vec<PlannedTask> = (0..20).map(|i| step(&format!("t{i}"), &[])).collect();
    let mut runner = Scripted::default();
    for i in 0..20 {
        runner = runner.play(&format!("t{i}"), vec![Play::Report(42.0)]);
    }
    let (status, d) = f.run(plan(tasks), runner).await;
    assert_eq!(status, RunStatus::Completed);
    for t in &d.tasks {
        let p = t.progress.as_ref().unwrap_or_else(|| panic!("{} lost its progress", t.name));
        assert_eq!((p.percent, p.message.as_deref()), (42.0, Some("last words")));
    }
}
