//! The conformance suite of the [`Control`] seam, through the HTTP API: what
//! any engine behind the server must do — trigger, cancel, retry, the worker
//! protocol with its fencing, live events — checked end to end on a real
//! store, with real workflow files.
//!
//! Each check is an async function generic over the store and the control,
//! given a [`Harness`];
//! [`control_conformance_suite!`](crate::control_conformance_suite) stamps out
//! one `#[tokio::test]` per check from two factories: one of a fresh store
//! ([`sqlite`], [`postgres`]) and one that builds the control from a
//! [`Setup`] (the store, the catalog, the log root). Stamp it out once per
//! store, each in a module of its own:
//!
//! ```ignore
//! async fn engine<S: cairn_store::Store>(setup: cairn_server::conformance::Setup<S>) -> MyControl<S> { /* … */ }
//! mod sqlite {
//!     cairn_server::control_conformance_suite!(cairn_server::conformance::sqlite, super::engine);
//! }
//! mod postgres {
//!     cairn_server::control_conformance_suite!(cairn_server::conformance::postgres, super::engine);
//! }
//! ```
//!
//! The [`Harness`] (and its [`Answer`]) also serve the server's own tests.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use bytes::Bytes;
use cairn_core::{LeaseToken, RunId, TaskId};
use cairn_store::{PostgresOptions, PostgresStore, SqliteOptions, SqliteStore, Store};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

use crate::app::{AppState, ServerConfig, router};
use crate::catalog::Catalog;
use crate::control::Control;

pub use cairn_store::conformance::TestDatabase;

/// Stamps out the conformance suite as `#[tokio::test]`s for one [`Control`]
/// on one store.
///
/// `$store` is an async function `(data_dir: PathBuf) -> (S, guard)` making
/// a fresh store and whatever must outlive it ([`sqlite`], [`postgres`]);
/// `$factory` is an async function `(Setup<S>) -> C`. The calling crate needs
/// `tokio` as a dependency.
#[macro_export]
macro_rules! control_conformance_suite {
    ($store:expr, $factory:expr) => {
        $crate::control_conformance_suite!(@each $store, $factory;
            trigger_stores_and_runs_a_run,
            trigger_refuses_what_cannot_run,
            cancel_stops_a_run_and_a_finished_run_is_a_conflict,
            retry_starts_a_new_run_of_a_failed_one,
            worker_protocol_leases_heartbeats_and_completes_once,
            batch_completion_completes_many_and_reports_stale_items,
            stale_tokens_change_nothing,
            events_follow_a_triggered_run,
            alerts_are_listed_and_announced_live,
            every_route_asks_for_its_role,
            tokens_are_refused_once_expired_or_revoked_and_limited_to_their_queues_and_workflows,
            an_admin_manages_tokens_over_the_api_and_the_audit_log_records_it,
            a_browser_signs_in_and_its_changes_need_the_csrf_token,
        );
    };
    (@each $store:expr, $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let harness = $crate::conformance::Harness::start($store, $factory).await;
                $crate::conformance::$check(harness).await;
            }
        )*
    };
}

/// A fresh SQLite store in the harness's data directory (which holds it).
pub async fn sqlite(data_dir: PathBuf) -> (SqliteStore, ()) {
    let store = SqliteStore::open(&data_dir.join("cairn.db"), SqliteOptions::default()).expect("the store");
    (store, ())
}

/// A fresh PostgreSQL store on a database of its own, created on the server
/// at `CAIRN_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`)
/// and dropped with the [`TestDatabase`]. Fails, saying so, when that server
/// cannot be reached: it never skips.
pub async fn postgres(_data_dir: PathBuf) -> (PostgresStore, TestDatabase) {
    let db = TestDatabase::create().await;
    let store = PostgresStore::connect(&db.url(), PostgresOptions::default())
        .await
        .expect("connect to the test database");
    (store, db)
}

/// The queue of the remote fixture's step.
pub const QUEUE: &str = "conformance";

/// Workflow files every harness starts with.
pub const FIXTURES: &[(&str, &str)] = &[
    (
        "hello.yaml",
        "name: hello\ndescription: two local steps\nparams:\n  - NAME: world\nsteps:\n  - name: greet\n    command: echo \"Hello, ${NAME}!\"\n  - name: done\n    command: echo done\n",
    ),
    (
        "strict.yaml",
        "name: strict\nparams:\n  - name: ENVIRONMENT\n    enum: [dev, prod]\n    required: true\nsteps:\n  - name: deploy\n    command: echo \"$ENVIRONMENT\"\n",
    ),
    (
        "slow.yaml",
        "name: slow\nsteps:\n  - name: wait\n    command: sleep 30\n  - name: after\n    command: echo after\n",
    ),
    (
        "fails.yaml",
        "name: fails\nsteps:\n  - name: ok\n    command: echo ok\n  - name: boom\n    command: exit 3\n  - name: later\n    command: echo later\n",
    ),
    (
        "remote.yaml",
        "name: remote\nsteps:\n  - name: far\n    queue: conformance\n    command: echo far away\n    heartbeat_timeout_sec: 30\n",
    ),
    ("broken.yaml", "name: broken\nsteps:\n  - name: a\n    comand: echo typo\n"),
];

/// What a control is built from: the store the server reads, the catalog
/// it serves, where logs live.
pub struct Setup<S> {
    pub store: Arc<S>,
    pub catalog: Catalog,
    pub log_root: PathBuf,
    /// The data directory (the store file, workflows, logs are under it).
    pub data_dir: PathBuf,
}

/// A server on a fresh data directory: a fresh store, the [`FIXTURES`] in
/// its catalog, and the control under test.
pub struct Harness<S, C> {
    pub store: Arc<S>,
    pub catalog: Catalog,
    pub control: Arc<C>,
    pub log_root: PathBuf,
    pub workflows: PathBuf,
    app: Router,
    _dir: TempDir,
    /// What the store needs kept until the end (its database); dropped last.
    _guard: Box<dyn Send + Sync>,
}

impl<S: Store, C: Control> Harness<S, C> {
    /// Writes the fixtures, makes the store with `store` (given the data
    /// directory), builds the control with `make` and the router around them.
    pub async fn start<SF, SFut, G, F, Fut>(store: SF, make: F) -> Harness<S, C>
    where
        SF: FnOnce(PathBuf) -> SFut,
        SFut: Future<Output = (S, G)>,
        G: Send + Sync + 'static,
        F: FnOnce(Setup<S>) -> Fut,
        Fut: Future<Output = C>,
    {
        let dir = tempfile::tempdir().expect("a temp dir");
        let workflows = dir.path().join("workflows");
        let log_root = dir.path().join("logs");
        std::fs::create_dir_all(&workflows).expect("the workflow dir");
        std::fs::create_dir_all(&log_root).expect("the log dir");
        for (name, text) in FIXTURES {
            std::fs::write(workflows.join(name), text).expect("a fixture");
        }
        let (store, guard) = store(dir.path().to_owned()).await;
        let store = Arc::new(store);
        let catalog = Catalog::load(&workflows);
        let control = Arc::new(
            make(Setup {
                store: store.clone(),
                catalog: catalog.clone(),
                log_root: log_root.clone(),
                data_dir: dir.path().to_owned(),
            })
            .await,
        );
        let state =
            AppState::new(store.clone(), control.clone(), catalog.clone(), ServerConfig::new(&log_root));
        Harness {
            store,
            catalog,
            control,
            log_root,
            workflows,
            app: router(state),
            _dir: dir,
            _guard: Box::new(guard),
        }
    }

    /// The same harness with the router built by `f` from a fresh state (to
    /// change the config or the clock).
    pub fn rebuild(mut self, f: impl FnOnce(AppState<S, C>) -> Router) -> Self {
        let state = AppState::new(
            self.store.clone(),
            self.control.clone(),
            self.catalog.clone(),
            ServerConfig::new(&self.log_root),
        );
        self.app = f(state);
        self
    }

    pub fn app(&self) -> Router {
        self.app.clone()
    }

    /// Sends one request through the router, in process.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = match self.app.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.expect("the body").to_bytes();
        Answer { status, headers, body }
    }

    pub async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).expect("a request")).await
    }

    /// POST with a JSON body.
    pub async fn post(&self, uri: &str, body: Value) -> Answer {
        self.post_raw(uri, "application/json", body.to_string()).await
    }

    /// POST with any body and content type.
    pub async fn post_raw(&self, uri: &str, content_type: &str, body: impl Into<Body>) -> Answer {
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(body.into())
            .expect("a request");
        self.send(request).await
    }

    /// Serves the router on 127.0.0.1 (for WebSocket clients) until the
    /// runtime ends; returns the address.
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("the address");
        let app = self.app.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "test server failed");
            }
        });
        addr
    }

    /// Triggers `workflow` with `params`, expecting 201; returns the run id.
    pub async fn trigger(&self, workflow: &str, params: Value) -> RunId {
        let a = self.post(&format!("/api/v1/workflows/{workflow}/runs"), json!({ "params": params })).await;
        assert_eq!(a.status, StatusCode::CREATED, "trigger {workflow}: {}", a.text());
        a.json()["run_id"].as_str().expect("run_id").parse().expect("a run id")
    }

    /// The run as the API shows it.
    pub async fn run(&self, run: RunId) -> Value {
        let a = self.get(&format!("/api/v1/runs/{run}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        a.json()
    }

    /// Polls the run until its status is terminal (real time, up to `limit`).
    pub async fn wait_terminal(&self, run: RunId, limit: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let r = self.run(run).await;
            let status = r["status"].as_str().unwrap_or_default().to_owned();
            if !matches!(status.as_str(), "QUEUED" | "RUNNING") {
                return r;
            }
            assert!(tokio::time::Instant::now() < deadline, "run {run} still {status} after {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The error `code` of an error answer.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    /// Asserts an error answer: its status, its code, and its field.
    pub fn assert_error(&self, status: StatusCode, code: &str, field: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.text());
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["field"].as_str(), field, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
}

const RUN_LIMIT: Duration = Duration::from_secs(30);

fn task_of<'a>(run: &'a Value, step: &str) -> &'a Value {
    run["tasks"].as_array().and_then(|t| t.iter().find(|t| t["name"] == step)).expect("the step's task")
}

// ---------------------------------------------------------------------------
// The checks

/// A triggered run is stored before the answer, with the params given, and
/// runs to COMPLETED; its steps' logs can be read.
pub async fn trigger_stores_and_runs_a_run<S: Store, C: Control>(h: Harness<S, C>) {
    let run = h.trigger("hello", json!({"NAME": "Ada"})).await;
    let stored = h.run(run).await;
    assert_eq!(stored["workflow"], "hello");
    assert_eq!(stored["params"]["NAME"], "Ada");
    let done = h.wait_terminal(run, RUN_LIMIT).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let log = h.get(&format!("/api/v1/runs/{run}/logs/greet")).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text());
    assert!(log.text().contains("Hello, Ada!"), "{}", log.text());
}

/// Unknown workflows, broken files and refused params never reach a run.
pub async fn trigger_refuses_what_cannot_run<S: Store, C: Control>(h: Harness<S, C>) {
    h.post("/api/v1/workflows/nope/runs", json!({})).await.assert_error(
        StatusCode::NOT_FOUND,
        "workflow_not_found",
        Some("name"),
    );
    h.post("/api/v1/workflows/broken/runs", json!({})).await.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "workflow_invalid",
        None,
    );
    h.post("/api/v1/workflows/strict/runs", json!({})).await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_input",
        Some("params"),
    );
    h.post("/api/v1/workflows/strict/runs", json!({"params": {"ENVIRONMENT": "moon"}})).await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_input",
        Some("params"),
    );
    let page = h.get("/api/v1/runs").await.json();
    assert_eq!(page["runs"], json!([]), "nothing was stored");
    let run = h.trigger("strict", json!(["ENVIRONMENT=dev"])).await;
    assert_eq!(h.run(run).await["params"]["ENVIRONMENT"], "dev");
}

/// Cancel is accepted (202), the run ends CANCELED with the actor recorded;
/// canceling it again is a conflict; an unknown run is 404.
pub async fn cancel_stops_a_run_and_a_finished_run_is_a_conflict<S: Store, C: Control>(h: Harness<S, C>) {
    let run = h.trigger("slow", json!({})).await;
    let request = Request::post(format!("/api/v1/runs/{run}/cancel"))
        .header("X-Cairn-User", "alice")
        .body(Body::empty())
        .expect("a request");
    let a = h.send(request).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    let done = h.wait_terminal(run, RUN_LIMIT).await;
    assert_eq!(done["status"], "CANCELED", "{done}");
    let wait = task_of(&done, "wait");
    assert!(matches!(wait["status"].as_str(), Some("CANCELED" | "ABANDONED")), "{wait}");
    let by_alice = done["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["transitions"].as_array().into_iter().flatten())
        .any(|t| t["actor"] == "user:alice" || t["reason"].as_str().is_some_and(|r| r.contains("alice")));
    assert!(by_alice, "the cancel names who asked: {done}");

    h.post(&format!("/api/v1/runs/{run}/cancel"), json!({})).await.assert_error(
        StatusCode::CONFLICT,
        "conflict",
        None,
    );
    let unknown = RunId::new(cairn_core::Timestamp::from_micros(1));
    h.post(&format!("/api/v1/runs/{unknown}/cancel"), json!({})).await.assert_error(
        StatusCode::NOT_FOUND,
        "run_not_found",
        Some("run_id"),
    );
}

/// Retrying a failed run makes a new run that reruns the failed step; a
/// step the run does not have is refused.
pub async fn retry_starts_a_new_run_of_a_failed_one<S: Store, C: Control>(h: Harness<S, C>) {
    let run = h.trigger("fails", json!({})).await;
    let failed = h.wait_terminal(run, RUN_LIMIT).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    h.post(&format!("/api/v1/runs/{run}/retry"), json!({"from_step": "nope"})).await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_input",
        Some("from_step"),
    );
    let a = h.post(&format!("/api/v1/runs/{run}/retry"), json!({})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let again: RunId = a.json()["run_id"].as_str().expect("run_id").parse().expect("a run id");
    assert_ne!(again, run);
    let second = h.wait_terminal(again, RUN_LIMIT).await;
    assert_eq!(second["workflow"], "fails");
    assert_eq!(task_of(&second, "boom")["status"], "FAILED", "the failed step ran again and failed again");
    assert!(task_of(&second, "boom")["attempts"].as_u64() >= Some(1));
}

/// Lease → heartbeat with progress → logs → complete, as a remote worker
/// does it; the second completion with the same token answers the same.
pub async fn worker_protocol_leases_heartbeats_and_completes_once<S: Store, C: Control>(h: Harness<S, C>) {
    let run = h.trigger("remote", json!({})).await;
    let a = h
        .post(
            "/api/v1/workers/lease",
            json!({"worker_id": "w1", "queue": QUEUE, "max_tasks": 5, "wait_ms": 10_000}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let leased = a.json();
    let tasks = leased["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 1, "{leased}");
    let t = &tasks[0];
    assert_eq!(
        (t["run_id"].as_str(), t["step"].as_str(), t["attempt"].as_u64()),
        (Some(&*run.to_string()), Some("far"), Some(1))
    );
    let task: TaskId = t["task_id"].as_str().expect("task_id").parse().expect("a task id");
    let token = t["lease_token"].as_str().expect("lease_token").to_owned();

    let shown = h.get(&format!("/api/v1/tasks/{task}")).await.json();
    assert_eq!(shown["task"]["status"], "RUNNING", "{shown}");
    assert_eq!(shown["task"]["lease"]["worker"], "w1", "{shown}");

    // The workers page lists it, with its queue, its lease and its last call;
    // and a worker that waits for work without a lease.
    let idle =
        h.post("/api/v1/workers/lease", json!({"worker_id": "w2", "queue": "idle", "wait_ms": 0})).await;
    assert_eq!(idle.status, StatusCode::OK, "{}", idle.text());
    let workers = h.get("/api/v1/workers").await.json();
    let listed = workers["workers"].as_array().expect("workers");
    let w1 = listed.iter().find(|w| w["worker_id"] == "w1").unwrap_or_else(|| panic!("{workers}"));
    assert_eq!((w1["leases"].as_u64(), &w1["queues"]), (Some(1), &json!([QUEUE])), "{workers}");
    assert!(w1["last_seen_at"].is_string() && w1["last_heartbeat_at"].is_string(), "{workers}");
    let w2 = listed.iter().find(|w| w["worker_id"] == "w2").unwrap_or_else(|| panic!("{workers}"));
    assert_eq!((w2["leases"].as_u64(), &w2["queues"]), (Some(0), &json!(["idle"])), "{workers}");

    let hb = h
        .post(
            "/api/v1/workers/heartbeat",
            json!({"worker_id": "w1", "items": [{"task_id": task, "lease_token": token, "progress_percent": 50.0, "progress_message": "half"}]}),
        )
        .await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.text());
    let ack = &hb.json()["items"][0];
    assert_eq!(
        (ack["status"].as_str(), ack["cancel_requested"].as_bool()),
        (Some("ok"), Some(false)),
        "{ack}"
    );
    assert!(ack["lease_expires_at"].is_string(), "{ack}");
    let single = h
        .post(
            &format!("/api/v1/tasks/{task}/heartbeat"),
            json!({"worker_id": "w1", "lease_token": token, "progress_percent": 75.0}),
        )
        .await;
    assert_eq!(single.status, StatusCode::OK, "{}", single.text());
    let shown = h.get(&format!("/api/v1/tasks/{task}")).await.json();
    assert_eq!(shown["task"]["progress"]["percent"], 75.0, "{shown}");

    let log = Request::post(format!("/api/v1/tasks/{task}/logs?stream=stdout"))
        .header("X-Cairn-Lease-Token", &token)
        .body(Body::from("far away\n"))
        .expect("a request");
    assert_eq!(h.send(log).await.status, StatusCode::NO_CONTENT);
    let read = h.get(&format!("/api/v1/runs/{run}/logs/far?attempt=1")).await;
    assert!(read.text().contains("far away"), "{}", read.text());

    let done = json!({"lease_token": token, "outcome": "succeeded", "exit_code": 0});
    let first = h.post(&format!("/api/v1/tasks/{task}/complete"), done.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.json()["status"], "COMPLETED");
    let again = h.post(&format!("/api/v1/tasks/{task}/complete"), done).await;
    assert_eq!((again.status, again.json()), (first.status, first.json()), "idempotent for the same token");

    let finished = h.wait_terminal(run, RUN_LIMIT).await;
    assert_eq!(finished["status"], "COMPLETED", "{finished}");
    let far = task_of(&finished, "far");
    let completions =
        far["transitions"].as_array().into_iter().flatten().filter(|t| t["to"] == "COMPLETED").count();
    assert_eq!(completions, 1, "completed exactly once: {far}");
}

/// `POST /workers/complete` ends several attempts in one call and answers
/// per item, in order: a repeated item is answered the same (within the call
/// and when the whole call is repeated), and a stale token is an item error
/// `lease_stale` that neither changes its task nor fails the other items.
pub async fn batch_completion_completes_many_and_reports_stale_items<S: Store, C: Control>(h: Harness<S, C>) {
    let runs = [
        h.trigger("remote", json!({})).await,
        h.trigger("remote", json!({})).await,
        h.trigger("remote", json!({})).await,
    ];
    let mut leased: Vec<(TaskId, String)> = Vec::new();
    let deadline = tokio::time::Instant::now() + RUN_LIMIT;
    while leased.len() < runs.len() {
        assert!(tokio::time::Instant::now() < deadline, "leased only {leased:?}");
        let a = h
            .post(
                "/api/v1/workers/lease",
                json!({"worker_id": "w1", "queue": QUEUE, "max_tasks": 10, "wait_ms": 10_000}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        for t in a.json()["tasks"].as_array().expect("tasks") {
            let task: TaskId = t["task_id"].as_str().expect("task_id").parse().expect("a task id");
            leased.push((task, t["lease_token"].as_str().expect("lease_token").to_owned()));
        }
    }
    let stale = LeaseToken::random().to_string();
    let item = |(task, token): &(TaskId, String), outcome: &str| json!({"task_id": task, "lease_token": token, "outcome": outcome, "exit_code": 0, "outputs": {"N": "1"}});
    let batch = json!({"worker_id": "w1", "items": [
        item(&leased[0], "succeeded"),
        item(&leased[1], "failed"),
        item(&(leased[2].0, stale.clone()), "succeeded"),
        item(&leased[0], "succeeded"),
        item(&leased[2], "succeeded"),
    ]});
    let a = h.post("/api/v1/workers/complete", batch.clone()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let answer = a.json();
    let items = answer["items"].as_array().expect("items");
    let got: Vec<(String, Value, Value)> = items
        .iter()
        .map(|i| {
            (
                i["task_id"].as_str().unwrap_or_default().to_owned(),
                i["status"].clone(),
                i["error"]["code"].clone(),
            )
        })
        .collect();
    let want: Vec<(String, Value, Value)> = [
        (leased[0].0, json!("COMPLETED"), Value::Null),
        (leased[1].0, json!("FAILED"), Value::Null),
        (leased[2].0, Value::Null, json!("lease_stale")),
        (leased[0].0, json!("COMPLETED"), Value::Null),
        (leased[2].0, json!("COMPLETED"), Value::Null),
    ]
    .into_iter()
    .map(|(t, s, c)| (t.to_string(), s, c))
    .collect();
    assert_eq!(got, want, "one answer per item, in order: {answer}");
    assert!(items[2]["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");

    let again = h.post("/api/v1/workers/complete", batch).await;
    assert_eq!(
        (again.status, again.json()),
        (a.status, answer.clone()),
        "repeating the call answers the same"
    );

    for run in runs {
        let done = h.wait_terminal(run, RUN_LIMIT).await;
        let far = task_of(&done, "far");
        let ends = far["transitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| matches!(t["to"].as_str(), Some("COMPLETED" | "FAILED")))
            .count();
        assert_eq!(ends, 1, "ended exactly once: {far}");
    }
    let statuses: Vec<String> = {
        let mut out = Vec::new();
        for (task, _) in &leased {
            let shown = h.get(&format!("/api/v1/tasks/{task}")).await.json();
            out.push(shown["task"]["status"].as_str().unwrap_or_default().to_owned());
        }
        out
    };
    assert_eq!(statuses, ["COMPLETED", "FAILED", "COMPLETED"], "the stale item changed nothing");
}

/// After the lease is gone, its token changes nothing: heartbeats are
/// `lease_stale`, completions and log appends are 409 `lease_stale`.
pub async fn stale_tokens_change_nothing<S: Store, C: Control>(h: Harness<S, C>) {
    let run = h.trigger("remote", json!({})).await;
    let leased = h
        .post(
            "/api/v1/workers/lease",
            json!({"worker_id": "w1", "queue": QUEUE, "max_tasks": 1, "wait_ms": 10_000}),
        )
        .await
        .json();
    let task: TaskId = leased["tasks"][0]["task_id"].as_str().expect("a task").parse().expect("a task id");
    let token = leased["tasks"][0]["lease_token"].as_str().expect("a token").to_owned();
    let stale = LeaseToken::random().to_string();

    let hb = h
        .post(
            "/api/v1/workers/heartbeat",
            json!({"worker_id": "w2", "items": [{"task_id": task, "lease_token": stale}]}),
        )
        .await;
    assert_eq!(hb.status, StatusCode::OK);
    assert_eq!(hb.json()["items"][0]["status"], "lease_stale");
    h.post(&format!("/api/v1/tasks/{task}/heartbeat"), json!({"worker_id": "w2", "lease_token": stale}))
        .await
        .assert_error(StatusCode::CONFLICT, "lease_stale", None);
    h.post(&format!("/api/v1/tasks/{task}/complete"), json!({"lease_token": stale, "outcome": "succeeded"}))
        .await
        .assert_error(StatusCode::CONFLICT, "lease_stale", None);
    let log = Request::post(format!("/api/v1/tasks/{task}/logs"))
        .header("X-Cairn-Lease-Token", &stale)
        .body(Body::from("intruder\n"))
        .expect("a request");
    h.send(log).await.assert_error(StatusCode::CONFLICT, "lease_stale", None);

    let shown = h.get(&format!("/api/v1/tasks/{task}")).await.json();
    assert_eq!(shown["task"]["status"], "RUNNING", "nothing changed: {shown}");
    assert_eq!(shown["task"]["lease"]["worker"], "w1");

    // The real holder finishes; afterwards its own token is stale too.
    let done = h
        .post(
            &format!("/api/v1/tasks/{task}/complete"),
            json!({"lease_token": token, "outcome": "failed", "exit_code": 1, "error": "boom"}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    let hb = h
        .post(
            "/api/v1/workers/heartbeat",
            json!({"worker_id": "w1", "items": [{"task_id": task, "lease_token": token}]}),
        )
        .await;
    assert_eq!(hb.json()["items"][0]["status"], "lease_stale", "a heartbeat never revives an ended attempt");
    h.wait_terminal(run, RUN_LIMIT).await;
}

/// A WebSocket filtered by workflow sees the run's transitions as they
/// happen, and the run's end.
pub async fn events_follow_a_triggered_run<S: Store, C: Control>(h: Harness<S, C>) {
    use futures_util::StreamExt;
    let addr = h.serve().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/events?workflow=hello"))
        .await
        .expect("the WebSocket");
    let run = h.trigger("hello", json!({})).await;
    let mut saw_task_transition = false;
    let deadline = tokio::time::Instant::now() + RUN_LIMIT;
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next()).await.expect("events before the deadline");
        let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = message else { continue };
        let event: Value = serde_json::from_str(&text).expect("JSON events");
        if event["kind"] == "lagged" {
            continue;
        }
        assert_eq!(event["workflow"], "hello", "filtered by workflow: {event}");
        assert_eq!(event["run_id"], run.to_string());
        if event["kind"] == "transition" {
            saw_task_transition = true;
        }
        if event["kind"] == "run" && event["to"] == "COMPLETED" {
            break;
        }
    }
    assert!(saw_task_transition);
}

/// An alert raised in the store (as the leader's anomaly watch does) is
/// announced on the events WebSocket of the server and listed by the API;
/// bad filters are refused with the field named.
pub async fn alerts_are_listed_and_announced_live<S: Store, C: Control>(h: Harness<S, C>) {
    use cairn_core::alert::AlertKind;
    use cairn_core::{AlertId, RunStatus, Timestamp};
    use cairn_store::{AlertKey, AlertWrite, NewAlert};
    use futures_util::StreamExt;

    let addr = h.serve().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/events?workflow=etl"))
        .await
        .expect("the WebSocket");
    let key = AlertKey { kind: AlertKind::Anomaly, workflow: "etl".into(), status: Some(RunStatus::Failed) };
    let at = Timestamp::from_micros(1_800_000_000_000_000);
    let new = NewAlert {
        id: AlertId::new(at),
        key: key.clone(),
        raised_at: at,
        message: "etl: FAILED rose to 40%".into(),
        details: json!({ "recent_share": 0.4 }),
    };
    let id = h.store.write_alert(AlertWrite::Raise(new)).await.expect("raised").expect("new");

    let deadline = tokio::time::Instant::now() + RUN_LIMIT;
    let event = loop {
        let message =
            tokio::time::timeout_at(deadline, ws.next()).await.expect("the alert before the deadline");
        let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = message else { continue };
        let event: Value = serde_json::from_str(&text).expect("JSON events");
        if event["kind"] == "alert" {
            break event;
        }
    };
    assert_eq!(event["alert"]["id"], id.to_string());
    assert_eq!(event["alert"]["kind"], "anomaly");
    assert_eq!(event["alert"]["status"], "FAILED");
    assert_eq!(event["alert"]["resolved_at"], Value::Null);

    let listed = h.get("/api/v1/alerts?open=true&workflow=etl&kind=anomaly").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    let body = listed.json();
    assert_eq!(body["alerts"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["alerts"][0]["message"], "etl: FAILED rose to 40%");
    assert_eq!(body["alerts"][0]["details"]["recent_share"], 0.4);
    assert_eq!(body["next_before"], Value::Null);
    assert_eq!(h.get("/api/v1/alerts?workflow=other").await.json()["alerts"], json!([]));

    h.store.write_alert(AlertWrite::Resolve { key, at }).await.expect("resolved");
    assert_eq!(h.get("/api/v1/alerts?open=true").await.json()["alerts"], json!([]));
    let all = h.get("/api/v1/alerts?limit=1").await.json();
    assert_eq!(all["alerts"][0]["resolved_at"], at.to_rfc3339());
    assert_eq!(all["next_before"], id.to_string(), "a full page points to the next");
    assert_eq!(h.get(&format!("/api/v1/alerts?before={id}")).await.json()["alerts"], json!([]));

    for (query, field) in
        [("open=maybe", "open"), ("kind=nope", "kind"), ("before=x", "before"), ("limit=0", "limit")]
    {
        let refused = h.get(&format!("/api/v1/alerts?{query}")).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(refused.json()["field"], field, "{query}");
    }
}

// ---------------------------------------------------------------------------
// Access control

/// A live token of `role` named `name`, stored; returns its secret.
pub async fn token<S: Store>(
    store: &S,
    name: &str,
    role: cairn_core::auth::Role,
    queues: &[&str],
    workflows: Option<&str>,
    expires_at: Option<cairn_core::Timestamp>,
) -> String {
    let secret = cairn_core::auth::Secret::generate();
    let now = cairn_core::Timestamp::from_micros(1_800_000_000_000_000);
    let new = cairn_store::NewToken {
        id: cairn_core::TokenId::new(now),
        name: name.to_owned(),
        role,
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        workflows: workflows.map(str::to_owned),
        prefix: secret.prefix(),
        hash: secret.hash(),
        created_at: now,
        expires_at,
    };
    store.create_token(new).await.expect("a token");
    secret.expose().to_owned()
}

impl<S: Store, C: Control> Harness<S, C> {
    /// The same harness asking every request for a token.
    pub fn requiring_tokens(self) -> Self {
        self.rebuild(|mut state| {
            let config = crate::ServerConfig { auth: crate::AuthMode::Tokens, ..(*state.config).clone() };
            state.config = Arc::new(config);
            router(state)
        })
    }

    /// `method` on `uri` with `token` (if any), and a JSON body `{}` for writes.
    pub async fn call(&self, method: &str, uri: &str, token: Option<&str>) -> Answer {
        let mut request = Request::builder().method(method.to_uppercase().as_str()).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = if method == "get" {
            Body::empty()
        } else {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from("{}")
        };
        self.send(request.body(body).expect("a request")).await
    }

    /// `method` on `uri` with `token` and a JSON `body`.
    pub async fn call_json(&self, method: &str, uri: &str, token: &str, body: Value) -> Answer {
        let request = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("a request");
        self.send(request).await
    }
}

/// Every route of the OpenAPI document is in the access table, and with
/// tokens required each one refuses a request without a token (401) and
/// one whose role is too weak (403), and lets the right role through.
pub async fn every_route_asks_for_its_role<S: Store, C: Control>(h: Harness<S, C>) {
    use cairn_core::auth::Role;

    let table = crate::access_table::<S, C>();
    let doc = h.get("/api/v1/openapi.json").await.json();
    let mut documented = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("operations").keys() {
            documented += 1;
            assert!(
                table.iter().any(|r| &r.path == path && &r.method == method),
                "{method} {path} is documented but declares no access"
            );
        }
    }
    assert_eq!(documented, table.len(), "every route of the table is documented");

    let h = h.requiring_tokens();
    let mut tokens = std::collections::HashMap::new();
    for role in [Role::Viewer, Role::Operator, Role::Admin, Role::Worker] {
        let queues: &[&str] = if role == Role::Worker { &["q"] } else { &[] };
        tokens.insert(role, token(&*h.store, role.as_str(), role, queues, None, None).await);
    }
    let run = RunId::new(cairn_core::Timestamp::from_micros(1_800_000_000_000_000));
    let task = TaskId::new(cairn_core::Timestamp::from_micros(1_800_000_000_000_000));
    for route in &table {
        let uri = route
            .path
            .replace("{name}", "hello")
            .replace("{run_id}", &run.to_string())
            .replace("{task_id}", &task.to_string())
            .replace("{step}", "greet");
        let what = format!("{} {}", route.method, route.path);
        let anonymous = h.call(&route.method, &uri, None).await.status;
        let crate::Access::Role(needed) = route.access else {
            assert!(!matches!(anonymous.as_u16(), 401 | 403), "{what} is public: {anonymous}");
            continue;
        };
        assert_eq!(anonymous, StatusCode::UNAUTHORIZED, "{what} without a token");
        let weaker = match needed {
            Role::Viewer | Role::Admin => Role::Worker,
            Role::Operator => Role::Viewer,
            Role::Worker => Role::Admin,
        };
        let refused = h.call(&route.method, &uri, Some(&tokens[&weaker])).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{what} with a {weaker} token: {}", refused.text());
        assert_eq!(refused.json()["code"], "forbidden");
        let allowed = h.call(&route.method, &uri, Some(&tokens[&needed])).await;
        assert!(
            !matches!(allowed.status.as_u16(), 401 | 403),
            "{what} with a {needed} token: {} {}",
            allowed.status,
            allowed.text()
        );
    }
}

/// Expired, revoked, unknown and malformed tokens get 401 and change
/// nothing; a worker token leases only from its queues; a token scoped to
/// workflows reaches only theirs.
pub async fn tokens_are_refused_once_expired_or_revoked_and_limited_to_their_queues_and_workflows<
    S: Store,
    C: Control,
>(
    h: Harness<S, C>,
) {
    use cairn_core::auth::Role;
    let h = h.requiring_tokens();
    let past = cairn_core::Timestamp::from_micros(1_000_000_000_000_000);
    let expired = token(&*h.store, "old", Role::Admin, &[], None, Some(past)).await;
    let answer = h.call("get", "/api/v1/runs", Some(&expired)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.json()["message"].as_str().unwrap().contains("old has expired"), "{}", answer.text());
    for bad in ["cairn_nope", "not-a-token", &format!("{}x", &expired[..expired.len() - 1])] {
        assert_eq!(h.call("get", "/api/v1/runs", Some(bad)).await.status, StatusCode::UNAUTHORIZED, "{bad}");
    }

    // Revocation is immediate: the next request is refused.
    let viewer = token(&*h.store, "eyes", Role::Viewer, &[], None, None).await;
    assert_eq!(h.call("get", "/api/v1/runs", Some(&viewer)).await.status, StatusCode::OK);
    let now = cairn_core::Timestamp::from_micros(1_800_000_000_000_000);
    assert!(h.store.revoke_token("eyes".into(), now).await.expect("revoke").is_some());
    let answer = h.call("get", "/api/v1/runs", Some(&viewer)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.json()["message"].as_str().unwrap().contains("eyes was revoked"), "{}", answer.text());

    // A worker token leases from its queues only.
    let worker = token(&*h.store, "gpu-box", Role::Worker, &["gpu"], None, None).await;
    let lease = |queue: &str| {
        let mut request = Request::builder().method("POST").uri("/api/v1/workers/lease");
        request = request
            .header(header::AUTHORIZATION, format!("Bearer {worker}"))
            .header(header::CONTENT_TYPE, "application/json");
        request.body(Body::from(json!({ "worker_id": "w1", "queue": queue }).to_string())).unwrap()
    };
    assert_eq!(h.send(lease("gpu")).await.status, StatusCode::OK);
    let refused = h.send(lease("cpu")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["field"], "queue");
    let audit = h.store.audit_events(cairn_store::AuditQuery::default()).await.unwrap();
    assert!(
        audit.iter().any(|e| e.kind.as_str() == "access_denied"
            && e.actor == "gpu-box"
            && e.target.as_deref() == Some("POST /api/v1/workers/lease")),
        "a refused queue is audited: {audit:#?}"
    );

    // A token scoped to `hel*`: its workflow and runs, nothing across workflows.
    let scoped = token(&*h.store, "team-hello", Role::Operator, &[], Some("hel*"), None).await;
    // The token's name is the actor of what it changes; a header cannot say otherwise.
    let trigger = Request::builder()
        .method("POST")
        .uri("/api/v1/workflows/hello/runs")
        .header(header::AUTHORIZATION, format!("Bearer {scoped}"))
        .header("X-Cairn-User", "mallory")
        .body(Body::empty())
        .unwrap();
    let triggered = h.send(trigger).await;
    assert_eq!(triggered.status, StatusCode::CREATED, "{}", triggered.text());
    let run = triggered.json()["run_id"].as_str().unwrap().to_owned();
    let stored = h.store.run_detail(run.parse().unwrap()).await.unwrap().expect("the run");
    let said: Vec<String> =
        stored.run_transitions.iter().map(|t| format!("{} {}", t.actor, t.reason)).collect();
    assert!(said.iter().any(|t| t.contains("team-hello")), "{said:?}");
    assert!(!said.iter().any(|t| t.contains("mallory")), "{said:?}");
    assert_eq!(h.call("get", &format!("/api/v1/runs/{run}"), Some(&scoped)).await.status, StatusCode::OK);
    let other = h.call("post", "/api/v1/workflows/strict/runs", Some(&scoped)).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "{}", other.text());

    // Lists across workflows show it only its workflows' runs and tasks.
    let admin = token(&*h.store, "root", Role::Admin, &[], None, None).await;
    let theirs = h.call("post", "/api/v1/workflows/fails/runs", Some(&admin)).await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.text());
    let workflows_of = |page: &Value, key: &str| -> Vec<String> {
        let mut w: Vec<String> = page[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["workflow"].as_str().unwrap().to_owned())
            .collect();
        w.dedup();
        w
    };
    let all = h.call("get", "/api/v1/runs", Some(&admin)).await.json();
    assert_eq!(workflows_of(&all, "runs"), ["fails", "hello"], "{all}");
    let mine = h.call("get", "/api/v1/runs", Some(&scoped)).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text());
    assert_eq!(workflows_of(&mine.json(), "runs"), ["hello"]);
    let tasks = h.call("get", "/api/v1/tasks", Some(&scoped)).await.json();
    assert_eq!(workflows_of(&tasks, "tasks"), ["hello"], "{tasks}");
    let counted = h.call("get", "/api/v1/stats/status", Some(&scoped)).await.json();
    assert_eq!(counted["runs"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum::<u64>(), 1);
    let outside = h.call("get", "/api/v1/runs?workflow=fails", Some(&scoped)).await;
    outside.assert_error(StatusCode::FORBIDDEN, "forbidden", Some("workflow"));
    // A scope that holds no workflow sees empty lists.
    let none = token(&*h.store, "team-x", Role::Viewer, &[], Some("x-*"), None).await;
    let empty = h.call("get", "/api/v1/runs", Some(&none)).await.json();
    assert_eq!(empty["runs"].as_array().unwrap().len(), 0, "{empty}");
    let trend = h.call("get", "/api/v1/stats/trend?from=2020-01-01T00:00:00Z", Some(&none)).await;
    assert_eq!(trend.status, StatusCode::OK, "{}", trend.text());
    // Its live events are narrowed the same way.
    let events = h.call("get", "/api/v1/events?workflow=fails", Some(&scoped)).await;
    events.assert_error(StatusCode::FORBIDDEN, "forbidden", Some("workflow"));
    let events = h.call("get", "/api/v1/events", Some(&scoped)).await;
    assert_eq!(events.status, StatusCode::BAD_REQUEST, "let through, but not a WebSocket: {}", events.text());
    // Alerts, phase statistics and the status report narrow themselves too.
    use cairn_core::alert::AlertKind;
    use cairn_store::{AlertKey, AlertWrite, NewAlert};
    for workflow in ["hello", "fails"] {
        let at = cairn_core::Timestamp::from_micros(1_800_000_000_000_000);
        let key = AlertKey { kind: AlertKind::Anomaly, workflow: workflow.into(), status: None };
        let alert = NewAlert {
            id: cairn_core::AlertId::new(at),
            key,
            raised_at: at,
            message: "swung".into(),
            details: json!({}),
        };
        h.store.write_alert(AlertWrite::Raise(alert)).await.expect("an alert");
    }
    let alerts = h.call("get", "/api/v1/alerts", Some(&scoped)).await;
    assert_eq!(alerts.status, StatusCode::OK, "{}", alerts.text());
    assert_eq!(workflows_of(&alerts.json(), "alerts"), ["hello"]);
    let all = h.call("get", "/api/v1/alerts", Some(&admin)).await.json();
    assert_eq!(all["alerts"].as_array().unwrap().len(), 2, "{all}");
    h.call("get", "/api/v1/alerts?workflow=fails", Some(&scoped)).await.assert_error(
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("workflow"),
    );
    for route in ["/api/v1/stats/phases", "/api/v1/reports/status", "/api/v1/reaped"] {
        let answer = h.call("get", route, Some(&scoped)).await;
        assert_eq!(answer.status, StatusCode::OK, "{route}: {}", answer.text());
        let outside = h.call("get", &format!("{route}?workflow=fails"), Some(&scoped)).await;
        outside.assert_error(StatusCode::FORBIDDEN, "forbidden", Some("workflow"));
        let empty = h.call("get", route, Some(&none)).await;
        assert_eq!(empty.status, StatusCode::OK, "{route}: {}", empty.text());
    }
    // Routes across workflows that cannot narrow themselves stay closed to it.
    assert_eq!(h.call("get", "/api/v1/workers", Some(&scoped)).await.status, StatusCode::FORBIDDEN);
}

/// An admin token makes, lists and revokes a token over the API; the new
/// secret works at once and stops at once when revoked; a viewer is refused
/// the admin routes, and the audit log records that refusal and the admin's
/// token management and use under the admin's name.
pub async fn an_admin_manages_tokens_over_the_api_and_the_audit_log_records_it<S: Store, C: Control>(
    h: Harness<S, C>,
) {
    use cairn_core::auth::Role;

    let h = h.requiring_tokens();
    let admin = token(&*h.store, "root", Role::Admin, &[], None, None).await;
    let viewer = token(&*h.store, "reader", Role::Viewer, &[], None, None).await;

    // Refused like the CLI refuses, naming the field.
    for (body, field) in [
        (json!({"name": "w", "role": "worker"}), "queues"),
        (json!({"name": "v", "role": "viewer", "queues": ["gpu"]}), "queues"),
        (json!({"name": " v", "role": "viewer"}), "name"),
        (json!({"name": "v", "role": "root"}), "role"),
    ] {
        let a = h.call_json("post", "/api/v1/tokens", &admin, body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.text());
        assert_eq!(a.json()["field"], field, "{body}");
    }

    let made = h
        .call_json(
            "post",
            "/api/v1/tokens",
            &admin,
            json!({"name": "ci", "role": "operator", "expires_in_s": 3600}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let made = made.json();
    let secret = made["secret"].as_str().expect("the secret").to_owned();
    assert!(secret.starts_with("cairn_"));
    assert_eq!((made["token"]["name"].as_str(), made["token"]["state"].as_str()), (Some("ci"), Some("live")));
    assert_eq!(made["token"]["role"], "operator");
    assert!(made["token"].get("hash").is_none());

    let again = h.call_json("post", "/api/v1/tokens", &admin, json!({"name": "ci", "role": "viewer"})).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    assert_eq!(again.json()["code"], "conflict");

    // The new secret works at once.
    assert_eq!(h.call("get", "/api/v1/workflows", Some(&secret)).await.status, StatusCode::OK);

    let list = h.call("get", "/api/v1/tokens", Some(&admin)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let list = list.json();
    let names: Vec<&str> =
        list["tokens"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ci", "reader", "root"]);
    assert!(!list.to_string().contains(&secret[6..]), "no secrets in the list");
    assert!(
        list["tokens"].as_array().unwrap().iter().all(|t| t.get("hash").is_none() && t["state"] == "live")
    );

    // A viewer is refused the admin routes, and the refusal is audited.
    let refused = h.call("get", "/api/v1/tokens", Some(&viewer)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());

    let revoked = h.call("delete", "/api/v1/tokens/ci", Some(&admin)).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    assert_eq!(revoked.json()["state"], "revoked");
    // Stops at once.
    assert_eq!(h.call("get", "/api/v1/workflows", Some(&secret)).await.status, StatusCode::UNAUTHORIZED);
    let gone = h.call("delete", "/api/v1/tokens/ci", Some(&admin)).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.text());
    assert_eq!(gone.json()["code"], "token_not_found");

    let audit = h.call("get", "/api/v1/audit", Some(&admin)).await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.text());
    let events = audit.json()["events"].as_array().unwrap().clone();
    let has = |kind: &str, actor: &str, target: &str| {
        events.iter().any(|e| e["kind"] == kind && e["actor"] == actor && e["target"] == target)
    };
    assert!(has("token_created", "root", "ci"), "{events:#?}");
    assert!(has("token_revoked", "root", "ci"), "{events:#?}");
    assert!(has("token_used", "root", "root"), "{events:#?}");
    assert!(has("access_denied", "reader", "GET /api/v1/tokens"), "{events:#?}");
    assert_eq!(events[0]["kind"], "token_revoked", "newest first: {events:#?}");

    let denied = h.call("get", "/api/v1/audit?kind=access_denied&actor=reader", Some(&admin)).await.json();
    assert_eq!(denied["events"].as_array().unwrap().len(), 1, "{denied}");
    let bad = h.call("get", "/api/v1/audit?limit=0", Some(&admin)).await;
    assert_eq!((bad.status, bad.json()["field"].as_str()), (StatusCode::BAD_REQUEST, Some("limit")));
    assert_eq!(h.call("get", "/api/v1/audit", Some(&viewer)).await.status, StatusCode::FORBIDDEN);
}

/// A browser signs in with a token and gets an `HttpOnly`, `SameSite=Strict`
/// (and under TLS `Secure`) session cookie that acts as the token. Reads
/// need nothing more; a change needs the session's anti-CSRF token and is
/// refused from a page of another site. The session ends at sign-out, when
/// its token is revoked, and at its expiry; worker tokens cannot sign in.
/// An open API refuses changes from pages of other sites, and asks for
/// tokens once one is made over it.
pub async fn a_browser_signs_in_and_its_changes_need_the_csrf_token<S: Store, C: Control>(h: Harness<S, C>) {
    use cairn_core::auth::Role;
    use cairn_core::{Clock, ManualClock, Timestamp};

    // After the tokens' creation time (`token` makes them at 1.8e15 µs).
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_800_000_001_000_000)));
    let at = clock.clone();
    let h = h.rebuild(move |mut state| {
        let config =
            crate::ServerConfig { auth: crate::AuthMode::Tokens, tls: true, ..(*state.config).clone() };
        state.config = Arc::new(config);
        router(state.with_clock(at))
    });
    let alice = token(&*h.store, "alice", Role::Operator, &[], None, None).await;
    let worker = token(&*h.store, "box", Role::Worker, &["q"], None, None).await;
    let session = |cookie: Option<&str>| {
        let mut r = Request::get("/api/v1/session").header(header::HOST, "cairn.test");
        if let Some(c) = cookie {
            r = r.header(header::COOKIE, format!("theme=dark; {c}"));
        }
        r.body(Body::empty()).expect("a request")
    };
    let sign_in = |token: &str| {
        Request::post("/api/v1/session")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "token": token }).to_string()))
            .expect("a request")
    };
    // A change from a page: `cookie`, and what else it sends.
    let change = |method: &str, uri: &str, cookie: &str, csrf: Option<&str>, origin: Option<&str>| {
        let mut r = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "cairn.test")
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(csrf) = csrf {
            r = r.header("X-CSRF-Token", csrf);
        }
        if let Some(origin) = origin {
            r = r.header(header::ORIGIN, origin);
        }
        r.body(Body::from("{}")).expect("a request")
    };

    let nobody = h.send(session(None)).await.json();
    assert_eq!((nobody["auth"].as_str(), nobody["signed_in"].as_bool()), (Some("tokens"), Some(false)));
    h.send(sign_in("cairn_nope")).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized", Some("token"));
    h.send(sign_in(&worker)).await.assert_error(StatusCode::FORBIDDEN, "forbidden", Some("token"));

    let signed = h.send(sign_in(&alice)).await;
    assert_eq!(signed.status, StatusCode::CREATED, "{}", signed.text());
    let set = signed.headers[header::SET_COOKIE].to_str().expect("text").to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/", "Max-Age=43200"] {
        assert!(set.split("; ").any(|p| p == part), "{part} in {set}");
    }
    let cookie = set.split(';').next().expect("name=value").to_owned();
    assert!(cookie.starts_with("cairn_session=cairn_session_"), "{cookie}");
    assert!(!cookie.contains(&alice), "the cookie is not the token");
    let me = h.send(session(Some(&cookie))).await.json();
    assert_eq!(
        (me["signed_in"].as_bool(), me["name"].as_str(), me["role"].as_str()),
        (Some(true), Some("alice"), Some("operator"))
    );
    let csrf = me["csrf_token"].as_str().expect("a CSRF token").to_owned();
    assert_eq!(signed.json()["csrf_token"], me["csrf_token"]);

    // Reads need only the cookie.
    let read = Request::get("/api/v1/runs").header(header::COOKIE, &cookie).body(Body::empty()).unwrap();
    assert_eq!(h.send(read).await.status, StatusCode::OK);

    // A change needs the CSRF token, and a page of this server.
    let trigger = "/api/v1/workflows/hello/runs";
    h.send(change("POST", trigger, &cookie, None, None)).await.assert_error(
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("X-CSRF-Token"),
    );
    h.send(change("POST", trigger, &cookie, Some("x"), None)).await.assert_error(
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("X-CSRF-Token"),
    );
    let forged = change("POST", trigger, &cookie, Some(&csrf), Some("https://evil.example"));
    h.send(forged).await.assert_error(StatusCode::FORBIDDEN, "forbidden", Some("Origin"));
    let made = h.send(change("POST", trigger, &cookie, Some(&csrf), Some("https://cairn.test"))).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let run: RunId = made.json()["run_id"].as_str().unwrap().parse().unwrap();
    let stored = h.store.run_detail(run).await.unwrap().expect("the run");
    assert!(
        stored.run_transitions.iter().any(|t| t.actor.to_string() == "user:alice"),
        "{:?}",
        stored.run_transitions
    );
    // A bearer token needs no CSRF token: browsers never send one by themselves.
    assert_eq!(h.call("post", trigger, Some(&alice)).await.status, StatusCode::CREATED);

    // Sign-out needs the CSRF token too; then the cookie is worth nothing.
    let out = |csrf: Option<&str>| change("DELETE", "/api/v1/session", &cookie, csrf, None);
    h.send(out(None)).await.assert_error(StatusCode::FORBIDDEN, "forbidden", Some("X-CSRF-Token"));
    let gone = h.send(out(Some(&csrf))).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.text());
    assert!(gone.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let read = Request::get("/api/v1/runs").header(header::COOKIE, &cookie).body(Body::empty()).unwrap();
    h.send(read).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized", Some("cairn_session"));
    assert_eq!(h.send(session(Some(&cookie))).await.json()["signed_in"], false);

    // Revoking the token ends its sessions at once.
    let again = h.send(sign_in(&alice)).await;
    let cookie2 = again.headers[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let read =
        |c: &str| Request::get("/api/v1/workflows").header(header::COOKIE, c).body(Body::empty()).unwrap();
    assert_eq!(h.send(read(&cookie2)).await.status, StatusCode::OK);
    h.store.revoke_token("alice".into(), clock.now()).await.unwrap().expect("revoked");
    assert_eq!(h.send(read(&cookie2)).await.status, StatusCode::UNAUTHORIZED);

    // A session ends at its expiry, never past its token's.
    let soon = Timestamp::from_micros(clock.now().as_micros() + 3_600_000_000);
    let bob = token(&*h.store, "bob", Role::Viewer, &[], None, Some(soon)).await;
    let signed = h.send(sign_in(&bob)).await;
    assert_eq!(signed.json()["expires_at"], json!(soon), "capped by the token's expiry");
    assert!(signed.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=3600"));
    let cookie3 = signed.headers[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    clock.advance(Duration::from_secs(3599));
    assert_eq!(h.send(read(&cookie3)).await.status, StatusCode::OK);
    clock.advance(Duration::from_secs(1));
    assert_eq!(h.send(read(&cookie3)).await.status, StatusCode::UNAUTHORIZED);

    let audit = h.store.audit_events(cairn_store::AuditQuery::default()).await.unwrap();
    let has = |kind: &str, actor: &str| audit.iter().any(|e| e.kind.as_str() == kind && e.actor == actor);
    assert!(has("signed_in", "alice") && has("signed_out", "alice") && has("signed_in", "bob"), "{audit:#?}");
    assert!(has("access_denied", "alice"), "a refused change is audited: {audit:#?}");

    // Without TLS the cookie is not `Secure`; a server without tokens has no
    // sign-in, and refuses a change sent by a page of another site all the same.
    let h = h.rebuild(|mut state| {
        let config = crate::ServerConfig { auth: crate::AuthMode::Tokens, ..(*state.config).clone() };
        state.config = Arc::new(config);
        router(state)
    });
    let carol = token(&*h.store, "carol", Role::Viewer, &[], None, None).await;
    let signed = h.send(sign_in(&carol)).await;
    assert_eq!(signed.status, StatusCode::CREATED, "{}", signed.text());
    assert!(!signed.headers[header::SET_COOKIE].to_str().unwrap().contains("Secure"));
    let h = h.rebuild(router);
    assert_eq!(h.send(session(None)).await.json()["auth"], "open");
    h.send(sign_in(&carol)).await.assert_error(StatusCode::CONFLICT, "conflict", None);
    let forged = Request::post(trigger)
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "http://evil.example")
        .body(Body::empty())
        .unwrap();
    h.send(forged).await.assert_error(StatusCode::FORBIDDEN, "forbidden", Some("Origin"));
    let local = Request::post(trigger)
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "http://127.0.0.1:8080")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(local).await.status, StatusCode::CREATED);

    // A token made over an open API locks it at once.
    let made = h.call_json("post", "/api/v1/tokens", "", json!({"name": "first", "role": "admin"})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    h.call("get", "/api/v1/runs", None).await.assert_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        Some("Authorization"),
    );
    let first = made.json()["secret"].as_str().unwrap().to_owned();
    assert_eq!(h.call("get", "/api/v1/runs", Some(&first)).await.status, StatusCode::OK);
}
