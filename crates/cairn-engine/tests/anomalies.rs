//! The leader's anomaly watch against a real SQLite store on a manual
//! clock: a workflow whose failure rate jumps gets one alert, announced to
//! the manager's subscribers; it stays open while the window has too few
//! runs to tell and is resolved once the mix is back to usual.

use std::sync::Arc;
use std::time::Duration;

use cairn_core::alert::AlertKind;
use cairn_core::anomaly::AnomalyRule;
use cairn_core::event::Event;
use cairn_core::lease::LeaseSettings;
use cairn_core::{Clock, ManualClock, RunStatus, Timestamp};
use cairn_engine::{AnomalyWatch, EngineClock, Manager, ManagerOptions};
use cairn_store::conformance::{new_run, run_change};
use cairn_store::sqlite::SqliteOptions;
use cairn_store::{AlertQuery, Change, SqliteStore, Store};

const HOUR: Duration = Duration::from_secs(3600);

/// `n` runs of `workflow` ending in `status`, submitted from `from` a minute apart.
async fn finished_runs(store: &SqliteStore, workflow: &str, status: RunStatus, n: u32, from: Timestamp) {
    let mut changes = Vec::new();
    for i in 0..n {
        let at = from.saturating_add(Duration::from_secs(60 * u64::from(i)));
        let run = new_run(workflow, 0, at);
        let id = run.id;
        changes.push(Change::CreateRun(run));
        changes.push(run_change(id, RunStatus::Queued, RunStatus::Running, at, None));
        changes.push(run_change(
            id,
            RunStatus::Running,
            status,
            at.saturating_add(Duration::from_secs(1)),
            None,
        ));
    }
    for outcome in store.apply(changes).await.unwrap() {
        assert!(matches!(outcome, cairn_store::Outcome::Applied), "{outcome:?}");
    }
}

#[tokio::test]
async fn a_jump_in_the_failure_rate_raises_one_alert_until_the_mix_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("cairn.db"), SqliteOptions::default()).unwrap());
    let manual = ManualClock::at_test_epoch();
    let clock = EngineClock::manual(manual.clone());
    let opts = ManagerOptions {
        owner: "server:test".into(),
        log_root: dir.path().join("logs"),
        lease: LeaseSettings::with_timeout(Duration::from_secs(30)),
    };
    let manager = Manager::new(store.clone(), clock.clone(), opts);
    let mut events = manager.subscribe();
    let watch = AnomalyWatch::new(store.clone(), clock.clone(), AnomalyRule::default());

    // A week of usual runs, then a last hour where etl fails 4 times in 10.
    let start = manual.now();
    finished_runs(&store, "etl", RunStatus::Completed, 95, start).await;
    finished_runs(&store, "etl", RunStatus::Failed, 5, start.saturating_add(HOUR * 2)).await;
    finished_runs(&store, "report", RunStatus::Completed, 50, start).await;
    manual.set(start.saturating_add(HOUR * 24 * 7));
    let recent = manual.now().saturating_sub(HOUR / 2);
    finished_runs(&store, "etl", RunStatus::Completed, 6, recent).await;
    finished_runs(&store, "etl", RunStatus::Failed, 4, recent.saturating_add(HOUR / 4)).await;
    finished_runs(&store, "report", RunStatus::Completed, 10, recent).await;

    let checked = watch.check().await.unwrap();
    assert_eq!(checked.raised.len(), 1, "{checked:?}");
    assert!(checked.resolved.is_empty());
    assert_eq!(checked.open.iter().collect::<Vec<_>>(), [&("etl".to_owned(), RunStatus::Failed)]);
    let alert = store.alert(checked.raised[0]).await.unwrap().expect("stored");
    assert_eq!(
        (alert.kind, alert.workflow.as_str(), alert.status),
        (AlertKind::Anomaly, "etl", Some(RunStatus::Failed))
    );
    assert_eq!(alert.raised_at, manual.now());
    assert_eq!(alert.resolved_at, None);
    assert_eq!(
        alert.message,
        "etl: FAILED rose to 40% of 10 finished runs, from 5% of 100 in the baseline (last 1h, baseline the 7d before)"
    );
    assert_eq!(alert.details["recent_runs"], 10);
    assert_eq!(alert.details["baseline_share"], 0.05);

    // Every subscriber of the server hears of it.
    let heard = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("an event").unwrap() {
            Event::Alert { alert } => break alert,
            _ => continue,
        }
    };
    assert_eq!(heard, alert);

    // Checked again: still open, not raised twice.
    let again = watch.check().await.unwrap();
    assert!(again.raised.is_empty() && again.resolved.is_empty(), "{again:?}");
    assert_eq!(again.open, checked.open);

    // An hour with no runs tells nothing: the alert stays open.
    manual.advance(HOUR);
    let quiet = watch.check().await.unwrap();
    assert!(quiet.raised.is_empty() && quiet.resolved.is_empty(), "{quiet:?}");
    assert_eq!(quiet.open, checked.open);

    // Runs succeed again: resolved, at the time of the check.
    finished_runs(&store, "etl", RunStatus::Completed, 12, manual.now().saturating_sub(HOUR / 2)).await;
    let back = watch.check().await.unwrap();
    assert_eq!(back.resolved, checked.raised);
    assert!(back.open.is_empty());
    let resolved = store.alert(checked.raised[0]).await.unwrap().unwrap();
    assert_eq!(resolved.resolved_at, Some(manual.now()));
    let open = store.alerts(AlertQuery { open_only: true, ..AlertQuery::default() }).await.unwrap();
    assert!(open.is_empty(), "{open:?}");
}

#[tokio::test]
async fn other_watched_statuses_and_thresholds_follow_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("cairn.db"), SqliteOptions::default()).unwrap());
    let manual = ManualClock::at_test_epoch();
    let start = manual.now();
    finished_runs(&store, "sync", RunStatus::Completed, 40, start).await;
    manual.set(start.saturating_add(HOUR * 24));
    let recent = manual.now().saturating_sub(HOUR / 2);
    finished_runs(&store, "sync", RunStatus::Completed, 8, recent).await;
    finished_runs(&store, "sync", RunStatus::Canceled, 2, recent).await;

    // 20 points of CANCELED: under the default threshold, and FAILED is the only status watched.
    let default =
        AnomalyWatch::new(store.clone(), EngineClock::manual(manual.clone()), AnomalyRule::default());
    assert!(default.check().await.unwrap().raised.is_empty());

    let rule = AnomalyRule {
        baseline: HOUR * 23,
        threshold: 0.15,
        min_runs: 10,
        statuses: vec![RunStatus::Failed, RunStatus::Canceled],
        ..AnomalyRule::default()
    };
    let watch = AnomalyWatch::new(store.clone(), EngineClock::manual(manual.clone()), rule);
    let checked = watch.check().await.unwrap();
    assert_eq!(checked.open.iter().collect::<Vec<_>>(), [&("sync".to_owned(), RunStatus::Canceled)]);

    // With fewer finished runs than the rule asks for, nothing is judged.
    let strict = AnomalyRule {
        min_runs: 11,
        threshold: 0.15,
        statuses: vec![RunStatus::Canceled],
        ..AnomalyRule::default()
    };
    let store2 = Arc::new(SqliteStore::open(&dir.path().join("other.db"), SqliteOptions::default()).unwrap());
    finished_runs(&store2, "sync", RunStatus::Completed, 40, start).await;
    finished_runs(&store2, "sync", RunStatus::Canceled, 10, recent).await;
    let watch = AnomalyWatch::new(store2, EngineClock::manual(manual.clone()), strict);
    assert!(watch.check().await.unwrap().open.is_empty());
}
