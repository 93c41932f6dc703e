//! The run manager and the worker protocol, in process: leases, heartbeats
//! with progress, completion, fencing, reaping and cancel — on a real SQLite
//! store, with a manual clock for every lease expiry.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::lease::LeaseSettings;
use cairn_core::protocol::{
    AckStatus, AttemptEnd, CompleteRequest, HeartbeatItem, HeartbeatRequest, LeaseRequest, LeasedTask,
};
use cairn_core::record::Actor;
use cairn_core::{ManualClock, RunId, RunStatus, TaskStatus};
use cairn_engine::{EngineClock, Manager, ManagerOptions, StaleLease};
use cairn_store::model::RunDetail;
use cairn_store::sqlite::SqliteOptions;
use cairn_store::{SqliteStore, Store};

mod support;
use support::eventually;

struct Fixture {
    _dir: tempfile::TempDir,
    manual: ManualClock,
    manager: Arc<Manager<SqliteStore>>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(SqliteStore::open(&dir.path().join("cairn.db"), SqliteOptions::default()).unwrap());
        let manual = ManualClock::at_test_epoch();
        let opts = ManagerOptions {
            owner: "server:test".into(),
            log_root: dir.path().join("logs"),
            lease: LeaseSettings::with_timeout(Duration::from_secs(30)),
        };
        let manager = Manager::new(store, EngineClock::manual(manual.clone()), opts);
        Fixture { _dir: dir, manual, manager }
    }

    async fn submit(&self, yaml: &str) -> RunId {
        let wf = Arc::new(cairn_core::spec::parse(yaml, None).unwrap());
        self.manager.submit(wf, yaml.to_owned(), &[], "api").await.unwrap()
    }

    async fn lease(&self, worker: &str, max: u32) -> Vec<LeasedTask> {
        let req = LeaseRequest { worker_id: worker.into(), queue: "q".into(), max_tasks: max, wait_ms: 0 };
        self.manager.lease(&req).await.unwrap().tasks
    }

    /// A long-poll lease: returns once a task is offered (real time, up to 10 s).
    async fn lease_when_ready(&self, worker: &str) -> LeasedTask {
        let req = LeaseRequest { worker_id: worker.into(), queue: "q".into(), max_tasks: 1, wait_ms: 10_000 };
        self.manager.lease(&req).await.unwrap().tasks.remove(0)
    }

    async fn detail(&self, run: RunId) -> RunDetail {
        self.manager.store().run_detail(run).await.unwrap().unwrap()
    }

    /// Waits (without the manual clock moving) until the run's driver has finished it.
    async fn finished(&self, run: RunId) -> RunDetail {
        eventually(&format!("run {run} to finish"), || async {
            let d = self.detail(run).await;
            d.run.status.is_terminal().then_some(d)
        })
        .await
    }
}

fn done(task: &LeasedTask, outcome: AttemptEnd) -> CompleteRequest {
    CompleteRequest {
        lease_token: task.lease_token,
        outcome,
        exit_code: Some(if outcome == AttemptEnd::Succeeded { 0 } else { 1 }),
        outputs: BTreeMap::new(),
        error: None,
    }
}

fn beat(task: &LeasedTask, pct: Option<f32>) -> HeartbeatRequest {
    HeartbeatRequest {
        worker_id: "w".into(),
        items: vec![HeartbeatItem {
            task_id: task.task_id,
            lease_token: task.lease_token,
            progress_percent: pct,
            progress_message: pct.map(|p| format!("at {p}")),
            details: None,
        }],
    }
}

const REMOTE_THEN_LOCAL: &str = r#"
type: graph
steps:
  - name: remote
    command: echo from-worker
    queue: q
    output: OUT
  - name: after
    command: "true"
    depends: [remote]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_leases_heartbeats_with_progress_and_completes() {
    let f = Fixture::new();
    let run = f.submit(REMOTE_THEN_LOCAL).await;
    let leased = f.lease("w1", 10).await;
    assert_eq!(leased.len(), 1);
    let task = &leased[0];
    assert_eq!((task.step.as_str(), task.attempt), ("remote", 1));
    let cmd = task.command.as_ref().expect("a shell step carries its command");
    assert_eq!(cmd.output.as_deref(), Some("OUT"));

    // RUNNING, started_at, the first heartbeat and the lease were committed before the answer.
    let d = f.detail(run).await;
    let rec = d.tasks.iter().find(|t| t.name == "remote").unwrap();
    assert_eq!(rec.status, TaskStatus::Running);
    let lease = rec.lease.as_ref().unwrap();
    assert_eq!((lease.token, lease.worker.as_str()), (task.lease_token, "w1"));
    assert_eq!(d.transitions[&rec.id].last().unwrap().actor, Actor::Worker("w1".into()));

    f.manual.advance(Duration::from_secs(10));
    let ack = f.manager.heartbeat(beat(task, Some(40.0))).await;
    assert_eq!(ack.items[0].status, AckStatus::Ok);
    assert!(!ack.items[0].cancel_requested);
    assert_eq!(ack.items[0].lease_expires_at, Some(f.manual_now_plus(30)));
    let d = f.detail(run).await;
    let rec = d.tasks.iter().find(|t| t.name == "remote").unwrap();
    assert_eq!(rec.progress.as_ref().map(|p| p.percent), Some(40.0));

    let mut req = done(task, AttemptEnd::Succeeded);
    req.outputs.insert("OUT".into(), "from-worker".into());
    assert_eq!(f.manager.complete(task.task_id, req.clone()).await, Ok(TaskStatus::Completed));
    // The same completion again gets the same answer: workers may retry it safely.
    assert_eq!(f.manager.complete(task.task_id, req).await, Ok(TaskStatus::Completed));
    let d = f.finished(run).await;
    assert_eq!(d.run.status, RunStatus::Completed);
    let rec = d.tasks.iter().find(|t| t.name == "remote").unwrap();
    assert_eq!(rec.outputs.get("OUT").map(String::as_str), Some("from-worker"));
}

const SDK_TASK: &str = r#"
type: graph
params: "N=1 extra"
env:
  - BASE: /data
steps:
  - name: double
    queue: q
    task_type: doubler
    env: {SRC: "${BASE}/n-${N}"}
  - name: after
    command: test "$DOUBLED" = 42
    depends: [double]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_type_step_leases_without_a_command_and_with_its_variables_as_input() {
    let f = Fixture::new();
    let wf = Arc::new(cairn_core::spec::parse(SDK_TASK, None).unwrap());
    let run = f.manager.submit(wf, SDK_TASK.to_owned(), &["N=21".to_owned()], "api").await.unwrap();
    let leased = f.lease("w1", 10).await;
    assert_eq!(leased.len(), 1);
    let task = &leased[0];
    assert_eq!((task.step.as_str(), task.task_type.as_str()), ("double", "doubler"));
    assert_eq!(task.command, None);
    let input = &task.input;
    // Params (positional ones by number), the workflow's env, the step's env
    // expanded, and the run's variables; not the server's file paths.
    assert_eq!(input.get("N").map(String::as_str), Some("21"));
    assert_eq!(input.get("2").map(String::as_str), Some("extra"));
    assert_eq!(input.get("BASE").map(String::as_str), Some("/data"));
    assert_eq!(input.get("SRC").map(String::as_str), Some("/data/n-21"));
    assert_eq!(input.get("DAG_RUN_ID"), Some(&run.to_string()));
    assert!(!input.contains_key("DAG_RUN_LOG_FILE"), "{input:?}");

    let mut req = done(task, AttemptEnd::Succeeded);
    req.exit_code = None;
    req.outputs.insert("DOUBLED".into(), "42".into());
    assert_eq!(f.manager.complete(task.task_id, req).await, Ok(TaskStatus::Completed));
    // `after` sees the handler's output as a variable, though the step has no `output:`.
    let d = f.finished(run).await;
    assert_eq!(d.run.status, RunStatus::Completed);
}

impl Fixture {
    fn manual_now_plus(&self, secs: u64) -> cairn_core::Timestamp {
        use cairn_core::Clock;
        self.manual.now().saturating_add(Duration::from_secs(secs))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_reaped_retried_and_the_old_worker_is_fenced() {
    let f = Fixture::new();
    let yaml = r#"
steps:
  - name: flaky
    command: "true"
    queue: q
    retry_policy:
      limit: 1
"#;
    let run = f.submit(yaml).await;
    let first = f.lease("doomed", 1).await.remove(0);
    f.manual.advance(Duration::from_secs(1));
    assert_eq!(f.manager.heartbeat(beat(&first, Some(10.0))).await.items[0].status, AckStatus::Ok);
    // The worker dies: no heartbeat for longer than the timeout.
    f.manual.advance(Duration::from_secs(31));
    let second = eventually("the reaped task offered again", || async {
        let mut leased = f.lease("healthy", 1).await;
        (!leased.is_empty()).then(|| leased.remove(0))
    })
    .await;
    assert_eq!(second.attempt, 2);
    let d = f.detail(run).await;
    let t = &d.tasks[0];
    let log = &d.transitions[&t.id];
    let reaped = log.iter().find(|x| x.actor == Actor::Reaper).expect("a reaper transition");
    assert_eq!((reaped.from, reaped.to), (Some(TaskStatus::Running), TaskStatus::Pending));
    assert!(reaped.reason.contains("heartbeat lost (worker doomed, last heartbeat"), "{}", reaped.reason);
    // The dashboard's recent alerts read it back from the log.
    let listed = f.manager.store().reaped_attempts(Default::default()).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].run_id, listed[0].task_id, listed[0].attempt), (run, t.id, 1));
    assert_eq!((listed[0].to, &listed[0].reason), (TaskStatus::Pending, &reaped.reason));

    // The old worker comes back: its heartbeat and completion change nothing.
    let ack = f.manager.heartbeat(beat(&first, Some(99.0))).await;
    assert_eq!(ack.items[0].status, AckStatus::LeaseStale);
    assert_eq!(f.manager.complete(first.task_id, done(&first, AttemptEnd::Succeeded)).await, Err(StaleLease));
    let after = f.detail(run).await;
    assert_eq!(after.tasks[0].status, TaskStatus::Running);
    assert_eq!(after.transitions[&t.id].len(), log.len());

    assert_eq!(
        f.manager.complete(second.task_id, done(&second, AttemptEnd::Succeeded)).await,
        Ok(TaskStatus::Completed)
    );
    assert_eq!(f.finished(run).await.run.status, RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_worker_through_its_heartbeat() {
    let f = Fixture::new();
    let run = f.submit(REMOTE_THEN_LOCAL).await;
    let task = f.lease("w1", 1).await.remove(0);
    f.manager.cancel(run, Actor::User("alice".into())).await.unwrap();
    eventually("a heartbeat answered with cancel", || async {
        f.manager.heartbeat(beat(&task, None)).await.items[0].cancel_requested.then_some(())
    })
    .await;
    assert_eq!(
        f.manager.complete(task.task_id, done(&task, AttemptEnd::Canceled)).await,
        Ok(TaskStatus::Canceled)
    );
    let d = f.finished(run).await;
    assert_eq!(d.run.status, RunStatus::Canceled);
    let after = d.tasks.iter().find(|t| t.name == "after").unwrap();
    assert_eq!(after.status, TaskStatus::Abandoned);
    let err = f.manager.cancel(run, Actor::User("alice".into())).await.unwrap_err();
    assert!(err.to_string().contains("already finished"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_never_get_the_same_task() {
    let f = Arc::new(Fixture::new());
    let n = 1500;
    let mut yaml = String::from("type: graph\nsteps:\n");
    for i in 0..n {
        yaml.push_str(&format!("  - name: t{i}\n    command: \"true\"\n    queue: q\n"));
    }
    let run = f.submit(&yaml).await;
    let mut workers = Vec::new();
    for w in 0..8 {
        let f = f.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut idle = 0;
            while idle < 200 {
                let tasks = f.lease(&format!("w{w}"), 25).await;
                if tasks.is_empty() {
                    idle += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle = 0;
                for t in tasks {
                    let status = f.manager.complete(t.task_id, done(&t, AttemptEnd::Succeeded)).await;
                    assert_eq!(status, Ok(TaskStatus::Completed));
                    mine.push(t.task_id);
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), n, "every task completed once");
    assert_eq!(unique.len(), n, "no task was leased twice");
    let d = f.finished(run).await;
    assert_eq!(d.run.status, RunStatus::Completed);
    assert!(d.attempts.values().all(|a| a.len() == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_server_resumes_the_runs_of_one_that_died() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("cairn.db"), SqliteOptions::default()).unwrap());
    let manual = ManualClock::at_test_epoch();
    let clock = EngineClock::manual(manual.clone());
    let options = |owner: String| ManagerOptions {
        owner,
        log_root: dir.path().join("logs"),
        lease: LeaseSettings::with_timeout(Duration::from_secs(30)),
    };
    // A server on this host whose process no longer exists.
    let me = cairn_engine::owner::LocalOwner::current();
    let dead = cairn_engine::owner::LocalOwner { pid: 999_999_999, ..me.clone() }.server_name();
    let old = Manager::new(store.clone(), clock.clone(), options(dead));
    let wf = Arc::new(cairn_core::spec::parse(REMOTE_THEN_LOCAL, None).unwrap());
    let run = old.submit(wf, REMOTE_THEN_LOCAL.to_owned(), &[], "api").await.unwrap();
    let req = LeaseRequest { worker_id: "w1".into(), queue: "q".into(), max_tasks: 1, wait_ms: 0 };
    let task = old.lease(&req).await.unwrap().tasks.remove(0);
    old.halt();

    let new = Manager::new(store.clone(), clock, options(me.server_name()));
    assert_eq!(new.resume().await.unwrap(), 1);
    assert_eq!(store.run(run).await.unwrap().unwrap().owner, Some(me.server_name()));
    // The worker never noticed: its lease is still good with the new server.
    let ack = new.heartbeat(beat(&task, Some(50.0))).await;
    assert_eq!(ack.items[0].status, AckStatus::Ok);
    let mut req = done(&task, AttemptEnd::Succeeded);
    req.outputs.insert("OUT".into(), "x".into());
    assert_eq!(new.complete(task.task_id, req).await, Ok(TaskStatus::Completed));
    let d = eventually("the resumed run to finish", || async {
        let d = store.run_detail(run).await.unwrap().unwrap();
        d.run.status.is_terminal().then_some(d)
    })
    .await;
    assert_eq!(d.run.status, RunStatus::Completed);
    assert!(d.tasks.iter().all(|t| t.status == TaskStatus::Completed));
    // Nothing to resume twice.
    assert_eq!(new.resume().await.unwrap(), 0);
    let _ = manual;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_leased_and_never_reported_is_a_start_failure() {
    let f = Fixture::new();
    let run = f.submit(REMOTE_THEN_LOCAL).await;
    let _silent = f.lease("silent", 1).await.remove(0);
    f.manual.advance(Duration::from_secs(31));
    let d = f.finished(run).await;
    let t = d.tasks.iter().find(|t| t.name == "remote").unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    let last = d.transitions[&t.id].last().unwrap();
    assert!(last.reason.starts_with("never started (worker silent leased it at"), "{}", last.reason);
    assert_eq!(last.actor, Actor::Reaper);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_interrupts_local_steps_and_the_next_server_runs_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("cairn.db"), SqliteOptions::default()).unwrap());
    let clock = EngineClock::system();
    let options = |owner: String| ManagerOptions {
        owner,
        log_root: dir.path().join("logs"),
        lease: LeaseSettings::with_timeout(Duration::from_secs(30)),
    };
    let marker = dir.path().join("first-attempt");
    let started = dir.path().join("started");
    // The first attempt waits to be stopped; the second finishes at once.
    let yaml = format!(
        "steps:\n  - name: slow\n    command: sh -c 'if [ -f {m} ]; then exit 0; fi; touch {m}; touch {s}; exec sleep 300'\n",
        s = started.display(),
        m = marker.display()
    );
    let me = cairn_engine::owner::LocalOwner::current();
    let gone = cairn_engine::owner::LocalOwner { pid: 999_999_998, ..me.clone() }.server_name();
    let old = Manager::new(store.clone(), clock.clone(), options(gone));
    let wf = Arc::new(cairn_core::spec::parse(&yaml, None).unwrap());
    let run = old.submit(wf, yaml.clone(), &[], "api").await.unwrap();
    for _ in 0..2_000 {
        if started.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    old.shutdown(Duration::ZERO).await;
    let d = store.run_detail(run).await.unwrap().unwrap();
    let t = &d.tasks[0];
    assert_eq!(t.status, TaskStatus::Pending, "interrupted, not failed");
    let last = d.transitions[&t.id].last().unwrap();
    assert!(last.reason.starts_with("interrupted: the server stopped"), "{}", last.reason);
    assert_eq!(d.attempts[&t.id][0].outcome, Some(TaskStatus::Failed));

    let new = Manager::new(store.clone(), clock, options(me.server_name()));
    assert_eq!(new.resume().await.unwrap(), 1);
    let mut status = RunStatus::Running;
    for _ in 0..2_000 {
        status = store.run(run).await.unwrap().unwrap().status;
        if status.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, RunStatus::Completed);
    let d = store.run_detail(run).await.unwrap().unwrap();
    assert_eq!(d.tasks[0].attempt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_reach_the_next_attempt_only_where_the_workflow_keeps_them() {
    for keep in [true, false] {
        let f = Fixture::new();
        let yaml = format!(
            "keep_details: {keep}\nsteps:\n  - name: resumable\n    command: \"true\"\n    queue: q\n    retry_policy:\n      limit: 1\n"
        );
        let run = f.submit(&yaml).await;
        let first = f.lease("w1", 1).await.remove(0);
        assert_eq!(first.details, None);
        let mut req = beat(&first, Some(10.0));
        req.items[0].details = Some(serde_json::json!({"offset": 4096}));
        assert_eq!(f.manager.heartbeat(req).await.items[0].status, AckStatus::Ok);
        f.manual.advance(Duration::from_secs(1));
        f.manager.heartbeat(beat(&first, Some(12.0))).await;
        f.manual.advance(Duration::from_secs(1));
        f.manager.heartbeat(beat(&first, Some(40.0))).await;
        let task = first.task_id;
        let samples = f.manager.store().progress_samples(task).await.unwrap();
        let points: Vec<f32> = samples.iter().map(|s| s.percent).collect();
        assert_eq!(points, vec![10.0, 40.0], "a sample per 10 points, not per report");
        assert_eq!(f.manager.complete(task, done(&first, AttemptEnd::Failed)).await, Ok(TaskStatus::Pending));
        let second = f.lease_when_ready("w2").await;
        let want = keep.then(|| serde_json::json!({"offset": 4096}));
        assert_eq!(second.details, want, "keep_details: {keep}");
        let d = f.detail(run).await;
        assert_eq!(d.tasks[0].details, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_runs_again_only_what_did_not_complete_and_carries_the_rest() {
    let f = Fixture::new();
    let yaml = r#"
type: graph
steps:
  - name: fetch
    command: echo fetched
    output: DATA
  - name: load
    command: "true"
    queue: q
    depends: [fetch]
  - name: report
    command: echo "report on ${DATA}"
    output: REPORT
    depends: [load]
"#;
    let run = f.submit(yaml).await;
    let load = f.lease_when_ready("w1").await;
    assert_eq!(
        f.manager.complete(load.task_id, done(&load, AttemptEnd::Failed)).await,
        Ok(TaskStatus::Failed)
    );
    let first = f.finished(run).await;
    assert_eq!(first.run.status, RunStatus::Failed);

    let retry = f.manager.retry(run, None).await.unwrap();
    let again = f.lease_when_ready("w1").await;
    assert_eq!((again.run_id, again.step.as_str()), (retry, "load"));
    assert_eq!(
        f.manager.complete(again.task_id, done(&again, AttemptEnd::Succeeded)).await,
        Ok(TaskStatus::Completed)
    );
    let d = f.finished(retry).await;
    assert_eq!(d.run.status, RunStatus::Completed);
    assert_eq!(d.run.trigger, "retry");
    let fetch = d.tasks.iter().find(|t| t.name == "fetch").unwrap();
    assert_eq!(fetch.status, TaskStatus::Skipped);
    assert_eq!(fetch.attempt, 0, "carried over, not run again");
    assert_eq!(
        d.transitions[&fetch.id].last().unwrap().reason,
        format!("completed in run {run}; not run again")
    );
    let report = d.tasks.iter().find(|t| t.name == "report").unwrap();
    assert_eq!(
        report.outputs.get("REPORT").map(String::as_str),
        Some("report on fetched"),
        "carried outputs stay visible"
    );

    // Nothing left to retry; and a retry from a chosen step reruns it and what follows.
    assert!(f.manager.retry(retry, None).await.unwrap_err().to_string().contains("nothing to retry"));
    let from = f.manager.retry(retry, Some("report")).await.unwrap();
    let d = f.finished(from).await;
    let states: Vec<(&str, TaskStatus)> = d.tasks.iter().map(|t| (t.name.as_str(), t.status)).collect();
    assert_eq!(
        states,
        [("fetch", TaskStatus::Skipped), ("load", TaskStatus::Skipped), ("report", TaskStatus::Completed)]
    );
    assert!(f.manager.retry(retry, Some("nope")).await.unwrap_err().to_string().contains("no step \"nope\""));
}
