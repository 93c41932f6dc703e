//! Webhook notifications end to end inside the engine: events routed by the
//! alert rules into the store's outbox, posted by the deliverer to a real
//! HTTP receiver on 127.0.0.1 that checks the HMAC signature with the
//! secret, retried after the back-off on a manual clock, given up when the
//! receiver refuses, and kept across a restart of everything. On SQLite,
//! and on PostgreSQL (`CAIRN_TEST_POSTGRES`) where the outbox is shared.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use cairn_core::event::{Event, ProgressEvent, RunEvent};
use cairn_core::notify::{Notification, NotifyConfig, NotifyKind};
use cairn_core::record::Actor;
use cairn_core::{Clock, ManualClock, RunId, RunStatus, TaskId, Timestamp};
use cairn_engine::EngineClock;
use cairn_engine::webhooks::{Deliverer, Notifier, Pass};
use cairn_store::conformance::{TestDatabase, new_run, run_change};
use cairn_store::sqlite::SqliteOptions;
use cairn_store::{Change, DeliveryQuery, DeliveryState, SqliteStore, Store};
use hmac::{KeyInit, Mac};
use tokio::sync::Notify;

const SECRET: &str = "test-secret";

/// What the receiver got: one post.
#[derive(Clone, Debug)]
struct Received {
    event: String,
    delivery: String,
    body: serde_json::Value,
    signed: bool,
}

/// A local HTTP receiver: answers the queued statuses, then 200; checks
/// each post's signature with [`SECRET`].
#[derive(Clone, Default)]
struct Receiver {
    answers: Arc<Mutex<VecDeque<u16>>>,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn answering(statuses: &[u16]) -> Self {
        let r = Receiver::default();
        r.answers.lock().unwrap().extend(statuses);
        r
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Serves on `listener` until the test ends; answers its URL.
    fn serve(&self, listener: tokio::net::TcpListener) -> String {
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    async fn start(&self) -> String {
        self.serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let timestamp = header("x-cairn-timestamp");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let signed = header("x-cairn-signature") == format!("sha256={expected}")
        && header("content-type") == "application/json";
    r.got.lock().unwrap().push(Received {
        event: header("x-cairn-event"),
        delivery: header("x-cairn-delivery"),
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        signed,
    });
    let status = r.answers.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

fn config(url: &str, max_attempts: u32) -> Arc<NotifyConfig> {
    let yaml = format!(
        "webhooks:\n  - name: ops\n    url: {url}\n    secret: {SECRET}\n    max_attempts: {max_attempts}\n\
         alerts:\n  - name: all\n    on: [run_failed, run_recovered, overrun_predicted]\n    to: [ops, log]\n"
    );
    Arc::new(NotifyConfig::parse(&yaml, "cairn.yaml", |_| None).unwrap())
}

fn failed_run(at: Timestamp) -> Event {
    Event::Run(RunEvent {
        run_id: RunId::new(at),
        workflow: "etl".into(),
        from: Some(RunStatus::Running),
        to: RunStatus::Failed,
        at,
        reason: "step load failed".into(),
        actor: Actor::Scheduler,
    })
}

async fn sqlite(dir: &std::path::Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(&dir.join("cairn.db"), SqliteOptions::default()).unwrap())
}

/// Routes every notification of `event`.
async fn announce<S: Store>(notifier: &mut Notifier<S>, event: &Event) {
    for n in notifier.notifications(event).await.unwrap() {
        notifier.route(&n).await.unwrap();
    }
}

async fn deliveries<S: Store>(store: &S) -> Vec<cairn_store::Delivery> {
    store.webhook_deliveries(DeliveryQuery::default()).await.unwrap()
}

async fn delivered_once_and_signed<S: Store>(store: Arc<S>) {
    let receiver = Receiver::default();
    let config = config(&receiver.start().await, 8);
    let manual = ManualClock::at_test_epoch();
    let now = manual.now();
    let mut notifier = Notifier::new(store.clone(), config.clone(), Arc::new(Notify::new()));
    let event = failed_run(now);
    // Announced twice (as servers sharing a store each would): one row.
    announce(&mut notifier, &event).await;
    announce(&mut notifier, &event).await;
    let rows = deliveries(&*store).await;
    assert_eq!(rows.len(), 1, "{rows:?}");

    let deliverer = Deliverer::new(store.clone(), EngineClock::manual(manual.clone()), config);
    assert_eq!(deliverer.deliver_due(now).await.unwrap(), Pass { delivered: 1, retrying: 0, failed: 0 });
    assert_eq!(
        deliverer.deliver_due(now.saturating_add(Duration::from_secs(3600))).await.unwrap(),
        Pass::default()
    );

    let got = receiver.got();
    assert_eq!(got.len(), 1, "delivered once");
    let Event::Run(run) = &event else { unreachable!() };
    assert!(got[0].signed, "the signature verifies with the secret: {got:?}");
    assert_eq!((got[0].event.as_str(), got[0].delivery.clone()), ("run_failed", rows[0].id.to_string()));
    assert_eq!(got[0].body["kind"], "run_failed");
    assert_eq!(got[0].body["key"], format!("run_failed:{}", run.run_id));
    assert_eq!(got[0].body["workflow"], "etl");
    assert_eq!(got[0].body["data"]["reason"], "step load failed");
    let row = &deliveries(&*store).await[0];
    assert_eq!(
        (row.state, row.attempts, row.last_status, row.delivered_at),
        (DeliveryState::Delivered, 1, Some(200), Some(now))
    );
}

async fn retried_after_the_backoff_then_given_up<S: Store>(store: Arc<S>) {
    let receiver = Receiver::answering(&[500, 503]);
    let url = receiver.start().await;
    let manual = ManualClock::at_test_epoch();
    let t0 = manual.now();
    let at = |secs: u64| t0.saturating_add(Duration::from_secs(secs));
    let config = config(&url, 3);
    let notifier = Notifier::new(store.clone(), config.clone(), Arc::new(Notify::new()));
    let deliverer = Deliverer::new(store.clone(), EngineClock::manual(manual.clone()), config);

    let failed = |n| Notification::from_event(&failed_run(at(n))).unwrap();
    notifier.route(&failed(0)).await.unwrap();
    assert_eq!(deliverer.deliver_due(at(0)).await.unwrap().retrying, 1, "500: retried");
    assert_eq!(deliverer.deliver_due(at(9)).await.unwrap(), Pass::default(), "not before 10 s");
    assert_eq!(deliverer.deliver_due(at(10)).await.unwrap().retrying, 1, "503: retried");
    assert_eq!(deliverer.deliver_due(at(39)).await.unwrap(), Pass::default(), "not before 30 s more");
    assert_eq!(deliverer.deliver_due(at(40)).await.unwrap().delivered, 1);
    let row = &deliveries(&*store).await[0];
    assert_eq!(
        (row.state, row.attempts, row.last_status, row.last_error.as_deref()),
        (DeliveryState::Delivered, 3, Some(200), None)
    );
    assert_eq!(receiver.got().len(), 3);
    assert!(receiver.got().iter().all(|r| r.signed));

    // Attempts run out: given up after the third.
    receiver.answers.lock().unwrap().extend([500, 500, 500]);
    notifier.route(&failed(100)).await.unwrap();
    assert_eq!(deliverer.deliver_due(at(100)).await.unwrap().retrying, 1);
    assert_eq!(deliverer.deliver_due(at(110)).await.unwrap().retrying, 1);
    assert_eq!(deliverer.deliver_due(at(140)).await.unwrap().failed, 1);
    assert_eq!(deliverer.deliver_due(at(10_000)).await.unwrap(), Pass::default(), "given up for good");
    let row = &deliveries(&*store).await[0];
    assert_eq!((row.state, row.attempts, row.last_status), (DeliveryState::Failed, 3, Some(500)));
    assert!(row.last_error.as_deref().unwrap().contains("gave up after 3 attempts"), "{row:?}");

    // A refusal other than 408/429 is not retried.
    receiver.answers.lock().unwrap().push_back(410);
    notifier.route(&failed(200)).await.unwrap();
    assert_eq!(deliverer.deliver_due(at(200)).await.unwrap().failed, 1);
    let row = &deliveries(&*store).await[0];
    assert_eq!((row.state, row.attempts, row.last_status), (DeliveryState::Failed, 1, Some(410)));

    // 429 is retried like a 5xx.
    receiver.answers.lock().unwrap().push_back(429);
    notifier.route(&failed(300)).await.unwrap();
    assert_eq!(deliverer.deliver_due(at(300)).await.unwrap().retrying, 1);
}

#[tokio::test]
async fn sqlite_notifications_are_delivered_once_and_signed() {
    let dir = tempfile::tempdir().unwrap();
    delivered_once_and_signed(sqlite(dir.path()).await).await;
}

#[tokio::test]
async fn sqlite_failed_deliveries_are_retried_after_the_backoff_then_given_up() {
    let dir = tempfile::tempdir().unwrap();
    retried_after_the_backoff_then_given_up(sqlite(dir.path()).await).await;
}

#[tokio::test]
async fn postgres_notifications_are_delivered_once_and_signed() {
    let db = TestDatabase::create().await;
    delivered_once_and_signed(Arc::new(db.store().await)).await;
}

#[tokio::test]
async fn postgres_failed_deliveries_are_retried_after_the_backoff_then_given_up() {
    let db = TestDatabase::create().await;
    retried_after_the_backoff_then_given_up(Arc::new(db.store().await)).await;
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart_and_are_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on yet: the receiver is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let manual = ManualClock::at_test_epoch();
    let t0 = manual.now();
    {
        let store = sqlite(dir.path()).await;
        let config = config(&url, 8);
        let mut notifier = Notifier::new(store.clone(), config.clone(), Arc::new(Notify::new()));
        announce(&mut notifier, &failed_run(t0)).await;
        let deliverer = Deliverer::new(store.clone(), EngineClock::manual(manual.clone()), config);
        assert_eq!(deliverer.deliver_due(t0).await.unwrap().retrying, 1, "connection refused: retried");
        let row = &deliveries(&*store).await[0];
        assert_eq!((row.state, row.attempts, row.last_status), (DeliveryState::Pending, 1, None));
        assert!(row.last_error.is_some());
        store.close().await.unwrap();
    }

    // Everything dropped; the same file reopened, the receiver up.
    let receiver = Receiver::default();
    receiver.serve(tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap());
    let store = sqlite(dir.path()).await;
    let deliverer = Deliverer::new(store.clone(), EngineClock::manual(manual.clone()), config(&url, 8));
    assert_eq!(
        deliverer.deliver_due(t0.saturating_add(Duration::from_secs(5))).await.unwrap(),
        Pass::default()
    );
    let later = t0.saturating_add(Duration::from_secs(10));
    assert_eq!(deliverer.deliver_due(later).await.unwrap().delivered, 1);
    assert_eq!(
        deliverer.deliver_due(later.saturating_add(Duration::from_secs(86_400))).await.unwrap(),
        Pass::default()
    );
    let got = receiver.got();
    assert_eq!(got.len(), 1, "delivered exactly once");
    assert!(got[0].signed);
    let row = &deliveries(&*store).await[0];
    assert_eq!((row.state, row.attempts), (DeliveryState::Delivered, 2));
}

#[tokio::test]
async fn a_completion_after_a_failure_is_a_recovery_and_overruns_are_announced_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path()).await;
    let manual = ManualClock::at_test_epoch();
    let t0 = manual.now();
    let at = |secs: u64| t0.saturating_add(Duration::from_secs(secs));
    let mut notifier =
        Notifier::new(store.clone(), config("http://127.0.0.1:9/hook", 8), Arc::new(Notify::new()));

    // etl: completed, then failed, then completed (this one recovers), then completed.
    let mut runs = Vec::new();
    for (i, status) in [RunStatus::Completed, RunStatus::Failed, RunStatus::Completed, RunStatus::Completed]
        .into_iter()
        .enumerate()
    {
        let start = at(100 * i as u64);
        let run = new_run("etl", 0, start);
        let id = run.id;
        let end = start.saturating_add(Duration::from_secs(10));
        let changes = vec![
            Change::CreateRun(run),
            run_change(id, RunStatus::Queued, RunStatus::Running, start, None),
            run_change(id, RunStatus::Running, status, end, None),
        ];
        store.apply(changes).await.unwrap();
        runs.push((id, status, end));
    }
    let completed = |(id, _, end): (RunId, RunStatus, Timestamp)| {
        Event::Run(RunEvent {
            run_id: id,
            workflow: "etl".into(),
            from: Some(RunStatus::Running),
            to: RunStatus::Completed,
            at: end,
            reason: "every step completed".into(),
            actor: Actor::Scheduler,
        })
    };
    let recovered = notifier.notifications(&completed(runs[2])).await.unwrap();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(
        (recovered[0].kind, recovered[0].key.clone()),
        (NotifyKind::RunRecovered, format!("run_recovered:{}", runs[2].0))
    );
    assert_eq!(recovered[0].data["previous_failed_run_id"], runs[1].0.to_string());
    assert_eq!(
        notifier.notifications(&completed(runs[3])).await.unwrap(),
        vec![],
        "the previous one completed"
    );
    assert_eq!(notifier.notifications(&completed(runs[0])).await.unwrap(), vec![], "no failure before");

    let task = TaskId::new(t0);
    let progress = |percent: f32| {
        Event::Progress(ProgressEvent {
            run_id: runs[0].0,
            workflow: "etl".into(),
            task_id: task,
            step: "load".into(),
            attempt: 1,
            percent,
            message: None,
            at: t0,
            predicted_finish_at: Some(at(3600)),
            overrun_predicted: true,
        })
    };
    assert_eq!(notifier.notifications(&progress(10.0)).await.unwrap().len(), 1);
    assert_eq!(notifier.notifications(&progress(20.0)).await.unwrap(), vec![], "once per attempt");
}
#[tokio::test]
async fn the_scheduled_report_is_enqueued_once_per_period_and_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path()).await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let yaml = format!(
        "webhooks:\n  - name: ops\n    url: {url}\n    secret: {SECRET}\n\
         report:\n  every: daily\n  at: \"07:00\"\n  to: [ops, log]\n"
    );
    let config = Arc::new(NotifyConfig::parse(&yaml, "cairn.yaml", |_| None).unwrap());
    let schedule = config.report.clone().unwrap();
    let manual = ManualClock::at_test_epoch();
    let due = schedule.next_after(manual.now());
    let notifier = Notifier::new(store.clone(), config.clone(), Arc::new(Notify::new()));
    let sent = notifier.send_report(&schedule, due).await.unwrap();
    assert_eq!((sent.kind, sent.key.clone()), (NotifyKind::Report, format!("report:day:{due}")));
    // Sent again (a second leader, a restart): still one delivery.
    notifier.send_report(&schedule, due).await.unwrap();
    assert_eq!(deliveries(&*store).await.len(), 1);

    let deliverer = Deliverer::new(store.clone(), EngineClock::manual(manual.clone()), config);
    assert_eq!(deliverer.deliver_due(due).await.unwrap().delivered, 1);
    let got = receiver.got();
    assert_eq!(got.len(), 1);
    assert!(got[0].signed);
    assert_eq!(got[0].event, "report");
    assert_eq!(got[0].body["data"]["period"], "day");
    assert_eq!(got[0].body["data"]["to"], due.to_string());
}
