//! The leader's retention job on a real SQLite store and a real archive
//! directory, on a manual clock: a pass at once, then one each time the
//! clock reaches the next minute — never a sleep. The job reports each pass.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::progress::Progress;
use cairn_core::retention::Policy;
use cairn_core::spec::Retention;
use cairn_core::{ManualClock, RunId, RunStatus, TaskStatus, Timestamp};
use cairn_engine::EngineClock;
use cairn_engine::archive::{Archive, ArchivedRun, day_of};
use cairn_engine::retention::{Options, Pass, Report, RetentionJob};
use cairn_store::conformance::{
    assert_counts_equal_the_records, end, heartbeat, new_run, plain, run_change, start, t,
};
use cairn_store::{AttemptResult, Change, RunDetail, RunQuery, SqliteOptions, SqliteStore, Store};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const DAY: i64 = 86_400_000;
const MINUTE: Duration = Duration::from_secs(60);

/// `n` days after the test epoch, 2026-01-01T00:00:00Z.
fn day(n: i64) -> Timestamp {
    t(n * DAY)
}

/// A run of `workflow` with two tasks, submitted at `at`, each task run
/// (the first reporting progress, kept as a sample) and COMPLETED, and the
/// run COMPLETED at `done`.
async fn finished(store: &SqliteStore, workflow: &str, at: Timestamp, done: Timestamp) -> RunId {
    let run = new_run(workflow, 2, at);
    let id = run.id;
    let tasks: Vec<_> = run.tasks.iter().map(|task| task.id).collect();
    let ms = |n: i64| Timestamp::from_micros(at.as_micros() + n * 1000);
    let mut changes =
        vec![Change::CreateRun(run), run_change(id, RunStatus::Queued, RunStatus::Running, ms(1), None)];
    for (i, task) in tasks.into_iter().enumerate() {
        let (s, token) = start(task, 1, ms(3));
        changes.extend([plain(task, 0, TaskStatus::Submitted, TaskStatus::Pending, ms(2)), s]);
        if i == 0 {
            let progress = Progress::new(40.0, Some("loading".into())).unwrap();
            let mut beat = heartbeat(task, token, ms(3), ms(60_000), Some(progress));
            if let Change::Heartbeat(hb) = &mut beat {
                hb.sample = true;
            }
            changes.push(beat);
        }
        changes.push(end(task, token, 1, TaskStatus::Completed, ms(4), AttemptResult::default()));
    }
    changes.push(run_change(id, RunStatus::Running, RunStatus::Completed, done, None));
    let outcomes = store.apply(changes).await.unwrap();
    assert!(outcomes.iter().all(|o| o.is_applied()), "{outcomes:?}");
    id
}

/// A run of `workflow` submitted at `at` and still RUNNING.
async fn running(store: &SqliteStore, workflow: &str, at: Timestamp) -> RunId {
    let run = new_run(workflow, 1, at);
    let id = run.id;
    let changes =
        vec![Change::CreateRun(run), run_change(id, RunStatus::Queued, RunStatus::Running, at, None)];
    assert!(store.apply(changes).await.unwrap().iter().all(|o| o.is_applied()));
    id
}

struct Fixture {
    _dir: tempfile::TempDir,
    manual: ManualClock,
    store: Arc<SqliteStore>,
    archive: Archive,
    policy: watch::Sender<Arc<Policy>>,
    reports: mpsc::UnboundedReceiver<Report>,
    stop: CancellationToken,
    job: tokio::task::JoinHandle<()>,
}

impl Fixture {
    /// The next report, which must come without the clock moving.
    async fn pass(&mut self) -> Pass {
        let report = tokio::time::timeout(Duration::from_secs(30), self.reports.recv())
            .await
            .expect("a pass reports within 30 s of real time")
            .expect("the job runs");
        match report {
            Report::Pass(pass) => pass,
            Report::Failed { error, .. } => panic!("the pass failed: {error}"),
        }
    }

    /// No pass while the clock stays short of the next one.
    async fn no_pass(&mut self) {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(self.reports.try_recv().is_err(), "a pass ran before its time");
    }

    async fn runs(&self) -> BTreeSet<RunId> {
        let all = self.store.list_runs(RunQuery { limit: 1000, ..Default::default() }).await.unwrap();
        all.iter().map(|r| r.id).collect()
    }

    /// Every run in the archive, by id.
    fn archived(&self) -> BTreeMap<RunId, ArchivedRun> {
        let mut all = BTreeMap::new();
        for day in self.archive.days().unwrap() {
            assert_eq!(day.damaged_bytes, 0);
            for run in self.archive.read(&day.day).unwrap().runs {
                assert_eq!(day_of(run.submitted_at), day.day, "run {} in its submission day", run.id);
                assert!(all.insert(run.id, run).is_none(), "one copy per run");
            }
        }
        all
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_archives_then_deletes_what_the_rules_let_go_pass_after_pass() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("cairn.db"), SqliteOptions::default()).unwrap());
    let s = &*store;
    // etl keeps its newest two runs; every other workflow a week, but
    // `broken`, whose file does not load, keeps everything.
    let etl: Vec<RunId> = in_order(
        (0..4).map(|i| finished(s, "etl", day(i), day(i).saturating_add(Duration::from_secs(3600)))),
    )
    .await;
    let backup_old = finished(s, "backup", day(1), day(1).saturating_add(MINUTE)).await;
    let backup_recent = finished(s, "backup", day(2), day(8)).await;
    let backup_running = running(s, "backup", day(0)).await;
    let broken = finished(s, "broken", day(1), day(1).saturating_add(MINUTE)).await;
    let retired = finished(s, "retired", day(2), day(2).saturating_add(MINUTE)).await;
    let mut before: BTreeMap<RunId, (RunDetail, Option<String>)> = BTreeMap::new();
    for id in [etl[0], etl[1], etl[2], backup_old, backup_recent, retired] {
        before.insert(id, (s.run_detail(id).await.unwrap().unwrap(), s.spec_source(id).await.unwrap()));
    }

    let manual = ManualClock::new(day(10));
    let clock = EngineClock::manual(manual.clone());
    let policy = Policy {
        global: Some(Retention::Days(7)),
        own: BTreeMap::from([("etl".to_owned(), Retention::Runs(2))]),
        unknown: BTreeSet::from(["broken".to_owned()]),
    };
    let (policy_tx, policy_rx) = watch::channel(Arc::new(policy));
    let archive = Archive::new(dir.path().join("archive"));
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    // Tiny batches, so a pass takes several: three runs a query, and a
    // batch ends at three tasks (two runs of two).
    let options = Options { batch_runs: 3, batch_tasks: 3, ..Options::default() };
    let job = RetentionJob::new(store.clone(), clock.clone(), policy_rx, archive.clone())
        .with_options(options)
        .with_reports(reports_tx);
    let job = tokio::spawn(job.run(stop.clone()));
    let mut f =
        Fixture { _dir: dir, manual, store: store.clone(), archive, policy: policy_tx, reports, stop, job };

    // At once: etl beyond its newest two, backup and the retired workflow
    // finished over a week ago. Running work, and the workflow whose rule
    // is unknown, stay.
    let first = f.pass().await;
    assert_eq!(
        (first.at, first.archived, first.deleted, first.deleted_tasks),
        (day(10), 4, 4, 8),
        "{first:?}"
    );
    let left = f.runs().await;
    assert_eq!(left, BTreeSet::from([etl[2], etl[3], backup_recent, backup_running, broken]));
    let archived = f.archived();
    assert_eq!(
        archived.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([etl[0], etl[1], backup_old, retired])
    );
    for (id, run) in &archived {
        let (detail, source) = &before[id];
        assert_eq!(&run.to_detail(), detail, "run {id} reads back as it was stored");
        assert_eq!(&run.spec_source, source);
        assert_eq!(run.archived_at, day(10));
        let samples: Vec<_> = run.tasks.iter().map(|t| t.progress_samples.len()).collect();
        assert_eq!(samples, [1, 0], "run {id}: the first task's progress sample is archived");
        assert_eq!(run.tasks[0].progress_samples[0].message.as_deref(), Some("loading"));
    }
    assert_counts_equal_the_records(s).await;

    // The next pass a minute later, not before.
    f.manual.advance(MINUTE - Duration::from_secs(1));
    f.no_pass().await;
    f.manual.advance(Duration::from_secs(1));
    let quiet = f.pass().await;
    assert_eq!((quiet.at, quiet.archived, quiet.deleted), (day(10).saturating_add(MINUTE), 0, 0));

    // A rule changed: applied at the next pass.
    f.policy.send_modify(|p| {
        Arc::make_mut(p).own.insert("etl".to_owned(), Retention::Runs(1));
    });
    f.manual.advance(MINUTE);
    let tighter = f.pass().await;
    assert_eq!((tighter.archived, tighter.deleted), (1, 1));
    assert!(!f.runs().await.contains(&etl[2]));

    // A leader that died after archiving a batch and before deleting it:
    // the run is archived again and deleted, and the archive keeps one copy.
    let (detail, source) = &before[&backup_recent];
    f.archive.append(&[ArchivedRun::new(detail, source.clone(), day(14))]).unwrap();
    f.manual.set(day(15).saturating_add(Duration::from_secs(3600)));
    let later = f.pass().await;
    assert_eq!((later.archived, later.deleted), (1, 1), "backup's run of day 8 is a week old");
    let archived = f.archived();
    assert_eq!(archived[&backup_recent].archived_at, day(15).saturating_add(Duration::from_secs(3600)));
    assert_eq!(archived.len(), 6);
    assert_eq!(f.runs().await, BTreeSet::from([etl[3], backup_running, broken]));
    assert_counts_equal_the_records(s).await;

    f.stop.cancel();
    f.job.await.unwrap();
}

/// Runs the futures one after the other (the runs' ids must follow their
/// submission order), collecting their results.
async fn in_order<F: std::future::Future<Output = RunId>>(futures: impl Iterator<Item = F>) -> Vec<RunId> {
    let mut all = Vec::new();
    for f in futures {
        all.push(f.await);
    }
    all
}
