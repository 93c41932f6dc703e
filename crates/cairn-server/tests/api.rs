//! The API on a real SQLite store, through the real router: what it reads
//! (runs, tasks, logs, workflows, the OpenAPI document, metrics), how it
//! refuses bad input, and the event stream.
//!
//! The data is written with the store's own conformance helpers, so these
//! tests need no engine. Behind the router sits [`Stub`], a `Control` that
//! changes nothing: its write calls fail with an error the test chooses (to
//! check each error's code and status), and its events come from a
//! broadcast sender the test holds. The write side — trigger, cancel, retry,
//! the worker protocol — is covered by `cairn_server::conformance`, run
//! against the real engine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use cairn_core::event::{Event, ProgressEvent, RunEvent, TransitionEvent};
use cairn_core::progress::Progress;
use cairn_core::protocol::{
    CompleteRequest, CompleteResponse, HeartbeatRequest, HeartbeatResponse, LeaseRequest, LeaseResponse,
    LogStream,
};
use cairn_core::record::Actor;
use cairn_core::{LeaseToken, ManualClock, RunId, RunStatus, TaskId, TaskStatus, Timestamp};
use cairn_server::conformance::{Harness, sqlite};
use cairn_server::{Control, ControlError, ErrorCode, router};
use cairn_store::conformance::{end, heartbeat, new_run, plain, run_change, start, t};
use cairn_store::{AttemptResult, Change, SqliteStore, Store};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

/// A `Control` that changes nothing (see the module doc).
struct Stub {
    error: Mutex<ControlError>,
    events: broadcast::Sender<Event>,
}

impl Stub {
    fn new(capacity: usize) -> Stub {
        Stub {
            error: Mutex::new(ControlError::Unavailable { message: "no engine in these tests".into() }),
            events: broadcast::channel(capacity).0,
        }
    }

    fn fail_with(&self, e: ControlError) {
        *self.error.lock().unwrap() = e;
    }

    fn err<T>(&self) -> Result<T, ControlError> {
        Err(self.error.lock().unwrap().clone())
    }
}

impl Control for Stub {
    async fn trigger(&self, _: &str, _: Vec<String>, _: Actor) -> Result<RunId, ControlError> {
        self.err()
    }
    async fn cancel(&self, _: RunId, _: Actor) -> Result<(), ControlError> {
        self.err()
    }
    async fn retry(&self, _: RunId, _: Option<String>, _: Actor) -> Result<RunId, ControlError> {
        self.err()
    }
    async fn lease(&self, _: LeaseRequest) -> Result<LeaseResponse, ControlError> {
        self.err()
    }
    async fn heartbeat(&self, _: HeartbeatRequest) -> Result<HeartbeatResponse, ControlError> {
        self.err()
    }
    async fn complete(&self, _: TaskId, _: CompleteRequest) -> Result<CompleteResponse, ControlError> {
        self.err()
    }
    async fn append_log(&self, _: TaskId, _: LeaseToken, _: LogStream, _: Bytes) -> Result<(), ControlError> {
        self.err()
    }
    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

async fn harness() -> Harness<SqliteStore, Stub> {
    Harness::start(sqlite, |_| async { Stub::new(64) }).await
}

/// The harness on a manual clock at `now`, for exact durations.
async fn harness_at(now: Timestamp) -> Harness<SqliteStore, Stub> {
    harness().await.rebuild(move |state| router(state.with_clock(Arc::new(ManualClock::new(now)))))
}

async fn apply(h: &Harness<SqliteStore, Stub>, changes: Vec<Change>) {
    let outcomes = h.store.apply(changes).await.unwrap();
    assert!(outcomes.iter().all(|o| o.is_applied()), "{outcomes:?}");
}

/// A run of `workflow` with `steps` tasks, stored; returns its id and task ids.
async fn stored_run(
    h: &Harness<SqliteStore, Stub>,
    workflow: &str,
    steps: u32,
    at: Timestamp,
) -> (RunId, Vec<TaskId>) {
    let run = new_run(workflow, steps, at);
    let (id, tasks) = (run.id, run.tasks.iter().map(|t| t.id).collect());
    apply(h, vec![Change::CreateRun(run)]).await;
    (id, tasks)
}

fn request(method: Method, uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    r.body(body.into()).unwrap()
}

// ---------------------------------------------------------------------------
// Errors

/// The error table in docs/api.md is the one in the code: every code, with
/// its status, and nothing else.
#[test]
fn docs_list_every_error_code_with_its_status() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
    let mut documented = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 4
            && let (Some(code), Ok(status)) =
                (cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')), cells[2].parse::<u16>())
            && code.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            documented.push((code.to_owned(), status));
        }
    }
    let expected: Vec<(String, u16)> =
        ErrorCode::ALL.iter().map(|c| (c.as_str().to_owned(), c.status().as_u16())).collect();
    assert_eq!(documented, expected, "docs/api.md's error table, in the order of ErrorCode::ALL");
}

/// Each kind of error, produced through the API, answers its code, status and field.
#[tokio::test]
async fn every_error_answers_its_code_and_status() {
    let h = harness().await;
    let unknown_run = RunId::new(t(0));
    let unknown_task = TaskId::new(t(0));
    let (run, _) = stored_run(&h, "etl", 1, t(0)).await;

    h.get("/api/v1/runs/not-a-run").await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("run_id"),
    );
    h.post("/api/v1/workers/lease", json!({"worker_id": " ", "queue": "q"})).await.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_input",
        Some("worker_id"),
    );
    h.post_raw("/api/v1/workers/lease", "text/plain", r#"{"worker_id":"w","queue":"q"}"#).await.assert_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        Some("Content-Type"),
    );
    h.post_raw("/api/v1/workers/lease", "application/json", vec![b' '; 2 * 1024 * 1024]).await.assert_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
    );
    h.get("/api/v1/nope").await.assert_error(StatusCode::NOT_FOUND, "not_found", None);
    h.get(&format!("/api/v1/runs/{unknown_run}")).await.assert_error(
        StatusCode::NOT_FOUND,
        "run_not_found",
        Some("run_id"),
    );
    h.get(&format!("/api/v1/tasks/{unknown_task}")).await.assert_error(
        StatusCode::NOT_FOUND,
        "task_not_found",
        Some("task_id"),
    );
    h.get(&format!("/api/v1/runs/{run}/logs/nope")).await.assert_error(
        StatusCode::NOT_FOUND,
        "step_not_found",
        Some("step"),
    );
    h.get("/api/v1/workflows/nope").await.assert_error(
        StatusCode::NOT_FOUND,
        "workflow_not_found",
        Some("name"),
    );
    h.get(&format!("/api/v1/runs/{run}/logs/step-0")).await.assert_error(
        StatusCode::NOT_FOUND,
        "log_not_found",
        None,
    );
    h.send(request(Method::DELETE, "/api/v1/runs", None, Body::empty())).await.assert_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    );
    h.post("/api/v1/workflows/broken/runs", json!({})).await.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "workflow_invalid",
        None,
    );
    apply(&h, vec![run_change(run, RunStatus::Queued, RunStatus::Canceled, t(1), None)]).await;
    h.post(&format!("/api/v1/runs/{run}/cancel"), json!({})).await.assert_error(
        StatusCode::CONFLICT,
        "conflict",
        None,
    );

    // What only the engine can say, as each ControlError reaches the client.
    let task = TaskId::new(t(0));
    let lease = json!({"worker_id": "w", "queue": "q"});
    let complete = json!({"lease_token": LeaseToken::random(), "outcome": "succeeded"});
    for (error, status, code, field) in [
        (ControlError::NotFound { what: "task x".into() }, StatusCode::NOT_FOUND, "not_found", None),
        (ControlError::LeaseStale { task }, StatusCode::CONFLICT, "lease_stale", None),
        (ControlError::Conflict { message: "run finished".into() }, StatusCode::CONFLICT, "conflict", None),
        (
            ControlError::Invalid { field: "from_step".into(), message: "no such step".into() },
            StatusCode::BAD_REQUEST,
            "invalid_input",
            Some("from_step"),
        ),
        (
            ControlError::Unavailable { message: "shutting down".into() },
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            None,
        ),
        (
            ControlError::Internal { message: "bug".into() },
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
        ),
    ] {
        h.control.fail_with(error);
        h.post("/api/v1/workers/lease", lease.clone()).await.assert_error(status, code, field);
        h.post(&format!("/api/v1/tasks/{task}/complete"), complete.clone())
            .await
            .assert_error(status, code, field);
        // In a batch, the same error is the item's answer; the call succeeds.
        let mut item = complete.clone();
        item["task_id"] = json!(task);
        let a = h.post("/api/v1/workers/complete", json!({"worker_id": "w", "items": [item]})).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let ack = &a.json()["items"][0];
        assert_eq!(
            (&ack["task_id"], &ack["status"], &ack["error"]["code"]),
            (&json!(task), &Value::Null, &json!(code))
        );
        assert!(ack["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{ack}");
    }
}

/// Bad JSON and bad queries are 400 naming the field; never a 500.
#[tokio::test]
async fn bad_input_is_400_naming_the_field() {
    let h = harness().await;
    let (run, _) = stored_run(&h, "etl", 1, t(0)).await;
    let task = TaskId::new(t(0));
    let token = LeaseToken::random();
    let (heartbeat_uri, complete_uri, retry_uri) = (
        format!("/api/v1/tasks/{task}/heartbeat"),
        format!("/api/v1/tasks/{task}/complete"),
        format!("/api/v1/runs/{run}/retry"),
    );
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("/api/v1/workers/lease", r#"{"worker_id": 1, "queue": "q"}"#.into(), Some("worker_id")),
        ("/api/v1/workers/lease", r#"{"queue": "q"}"#.into(), Some("worker_id")),
        ("/api/v1/workers/lease", r#"{"worker_id": "w", "queue": "q", "max_tasks": -1}"#.into(), Some("max_tasks")),
        ("/api/v1/workers/lease", r#"{"worker_id": "w", "queue": "q", "max_tasks": 0}"#.into(), Some("max_tasks")),
        ("/api/v1/workers/lease", r#"{"worker_id": "w", "queue": "q", "wait_ms": 3600000}"#.into(), Some("wait_ms")),
        ("/api/v1/workers/lease", r#"{"worker_id": "w", "#.into(), None),
        ("/api/v1/workers/lease", "[]".into(), None),
        (
            "/api/v1/workers/heartbeat",
            json!({"worker_id": "w", "items": [{"task_id": task, "lease_token": "short"}]}).to_string(),
            Some("items[0].lease_token"),
        ),
        (
            "/api/v1/workers/heartbeat",
            json!({"worker_id": "w", "items": [
                {"task_id": task, "lease_token": token},
                {"task_id": task, "lease_token": token, "progress_percent": 101.0},
            ]})
            .to_string(),
            Some("items[1].progress_percent"),
        ),
        (
            "/api/v1/workers/heartbeat",
            json!({"worker_id": "w", "items": [{"task_id": task, "lease_token": token, "details": {"blob": "x".repeat(20_000)}}]})
                .to_string(),
            Some("items[0].details"),
        ),
        (
            "/api/v1/workers/heartbeat",
            json!({"worker_id": "w", "items": [{"task_id": task, "lease_token": token, "details": [1]}]}).to_string(),
            Some("items[0].details"),
        ),
        (
            "/api/v1/workers/complete",
            json!({"worker_id": "w", "items": [{"task_id": task, "lease_token": token}]}).to_string(),
            Some("items[0].outcome"),
        ),
        (
            "/api/v1/workers/complete",
            json!({"worker_id": "w", "items": [
                {"task_id": task, "lease_token": token, "outcome": "succeeded"},
                {"task_id": "nope", "lease_token": token, "outcome": "succeeded"},
            ]})
            .to_string(),
            Some("items[1].task_id"),
        ),
        (
            "/api/v1/workers/complete",
            json!({"worker_id": "", "items": []}).to_string(),
            Some("worker_id"),
        ),
        (
            "/api/v1/workers/complete",
            json!({"worker_id": "w", "items": vec![json!({"task_id": task, "lease_token": token, "outcome": "failed"}); 1001]})
                .to_string(),
            Some("items"),
        ),
        (&heartbeat_uri, json!({"worker_id": "w"}).to_string(), Some("lease_token")),
        (&complete_uri, json!({"lease_token": token}).to_string(), Some("outcome")),
        (
            &complete_uri,
            json!({"lease_token": token, "outcome": "maybe"}).to_string(),
            Some("outcome"),
        ),
        (
            &complete_uri,
            json!({"lease_token": token, "outcome": "failed", "exit_code": "x"}).to_string(),
            Some("exit_code"),
        ),
        ("/api/v1/tasks/nope/complete", json!({"lease_token": token, "outcome": "failed"}).to_string(), Some("task_id")),
        ("/api/v1/workflows/hello/runs", json!({"params": 5}).to_string(), Some("params")),
        ("/api/v1/workflows/hello/runs", json!({"params": {"NAME": {"nested": 1}}}).to_string(), Some("params.NAME")),
        ("/api/v1/workflows/hello/runs", json!({"parms": {}}).to_string(), Some("parms")),
        (&retry_uri, json!({"from_step": 3}).to_string(), Some("from_step")),
    ];
    for (uri, body, field) in cases {
        let a = h.post_raw(uri, "application/json", body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri} {body}: {}", a.text());
        assert!(matches!(a.code().as_str(), "bad_request" | "invalid_input"), "{uri} {body}: {}", a.text());
        assert_eq!(a.json()["field"].as_str(), field, "{uri} {body}: {}", a.text());
    }

    for (query, field) in [
        ("status=FAILED,NOPE", "status"),
        ("limit=0", "limit"),
        ("limit=lots", "limit"),
        ("cursor=yesterday", "cursor"),
        ("submitted_after=yesterday", "submitted_after"),
        ("sort=size", "sort"),
        ("order=up", "order"),
        ("stauts=FAILED", "stauts"),
    ] {
        h.get(&format!("/api/v1/runs?{query}")).await.assert_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some(field),
        );
    }
    h.get(&format!("/api/v1/runs/{run}/logs/step-0?stream=stdin")).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("stream"),
    );
    h.get(&format!("/api/v1/runs/{run}/logs/step-0?attempt=0")).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("attempt"),
    );
    h.get("/api/v1/events?run=nope").await.assert_error(StatusCode::BAD_REQUEST, "bad_request", Some("run"));
    h.get("/api/v1/events").await.assert_error(StatusCode::BAD_REQUEST, "bad_request", None);

    let log = |token: Option<&str>| {
        let mut r = Request::post(format!("/api/v1/tasks/{task}/logs"));
        if let Some(token) = token {
            r = r.header("X-Cairn-Lease-Token", token);
        }
        r.body(Body::from("bytes")).unwrap()
    };
    h.send(log(None)).await.assert_error(StatusCode::BAD_REQUEST, "bad_request", Some("X-Cairn-Lease-Token"));
    h.send(log(Some("123"))).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("X-Cairn-Lease-Token"),
    );
    let who = Request::post(format!("/api/v1/runs/{run}/cancel"))
        .header("X-Cairn-User", "not ok!")
        .body(Body::empty());
    h.send(who.unwrap()).await.assert_error(StatusCode::BAD_REQUEST, "bad_request", Some("X-Cairn-User"));
}

// ---------------------------------------------------------------------------
// Runs and tasks

/// Newest first, filtered by several statuses and a workflow, paged by a
/// cursor until the last page, which has none.
#[tokio::test]
async fn runs_page_newest_first_with_a_cursor() {
    let h = harness().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let workflow = if i % 2 == 0 { "even" } else { "odd" };
        let (id, _) = stored_run(&h, workflow, 1, t(i * 1000)).await;
        ids.push(id);
    }
    apply(&h, vec![run_change(ids[1], RunStatus::Queued, RunStatus::Running, t(10_000), None)]).await;
    apply(&h, vec![run_change(ids[1], RunStatus::Running, RunStatus::Failed, t(11_000), Some("boom"))]).await;
    apply(&h, vec![run_change(ids[2], RunStatus::Queued, RunStatus::Canceled, t(12_000), None)]).await;
    apply(&h, vec![run_change(ids[3], RunStatus::Queued, RunStatus::Running, t(13_000), None)]).await;

    let ids_of = |page: &Value| -> Vec<String> {
        page["runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap().to_owned()).collect()
    };
    let newest_first: Vec<String> = ids.iter().rev().map(ToString::to_string).collect();

    let mut seen = Vec::new();
    let mut uri = "/api/v1/runs?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = h.get(&uri).await.json();
        pages += 1;
        seen.extend(ids_of(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/runs?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!((seen, pages), (newest_first, 3));

    let page = h.get("/api/v1/runs?status=FAILED,canceled").await.json();
    assert_eq!(ids_of(&page), [ids[2].to_string(), ids[1].to_string()]);
    assert_eq!(page["next_cursor"], Value::Null);
    let failed = &page["runs"][1];
    assert_eq!((failed["status"].as_str(), failed["error"].as_str()), (Some("FAILED"), Some("boom")));
    assert_eq!(failed["duration"], 10.0, "submitted at 1 s, failed at 11 s");

    let page = h.get("/api/v1/runs?workflow=odd&status=RUNNING").await.json();
    assert_eq!(ids_of(&page), [ids[3].to_string()]);
    let page = h.get("/api/v1/runs?workflow=even&limit=1").await.json();
    assert_eq!(ids_of(&page), vec![ids[4].to_string()]);
    // A cursor belongs to its query: with other filters it is refused.
    let cursor = page["next_cursor"].as_str().unwrap();
    h.get(&format!("/api/v1/runs?workflow=odd&limit=1&cursor={cursor}")).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("cursor"),
    );
    let page = h.get(&format!("/api/v1/runs?workflow=even&limit=1&cursor={cursor}")).await.json();
    assert_eq!(ids_of(&page), vec![ids[2].to_string()]);
    let page = h.get("/api/v1/runs?order=asc&limit=2").await.json();
    assert_eq!(ids_of(&page), [ids[0].to_string(), ids[1].to_string()]);
    let window = format!("submitted_after={}&submitted_before={}", t(1000), t(3000));
    let page = h.get(&format!("/api/v1/runs?{window}")).await.json();
    assert_eq!(ids_of(&page), [ids[2].to_string(), ids[1].to_string()]);
    let page = h.get("/api/v1/runs?sort=finished").await.json();
    assert_eq!(ids_of(&page), [ids[2].to_string(), ids[1].to_string()], "finished runs, latest first");
}

/// The status mix of a window and its trend come from the maintained
/// counts; tasks are listed with their own filters.
#[tokio::test]
async fn counts_trends_and_tasks_of_a_window() {
    let h = harness().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let (id, _) = stored_run(&h, if i < 3 { "etl" } else { "report" }, 2, t(i * 60_000)).await;
        ids.push(id);
    }
    apply(&h, vec![run_change(ids[0], RunStatus::Queued, RunStatus::Running, t(300_000), None)]).await;
    apply(&h, vec![run_change(ids[0], RunStatus::Running, RunStatus::Failed, t(301_000), Some("x"))]).await;
    apply(&h, vec![run_change(ids[1], RunStatus::Queued, RunStatus::Canceled, t(302_000), None)]).await;

    let all = h.get(&format!("/api/v1/stats/status?from={}", t(0))).await.json();
    assert_eq!(all["runs"], json!({ "QUEUED": 2, "FAILED": 1, "CANCELED": 1 }), "{all}");
    assert_eq!(all["tasks"], json!({ "SUBMITTED": 8 }), "{all}");
    let etl = h.get(&format!("/api/v1/stats/status?from={}&workflow=etl", t(0))).await.json();
    assert_eq!(etl["runs"], json!({ "QUEUED": 1, "FAILED": 1, "CANCELED": 1 }));
    let late = h.get(&format!("/api/v1/stats/status?from={}", t(120_000))).await.json();
    assert_eq!(late["runs"], json!({ "QUEUED": 2 }), "only what was submitted from minute 2");

    let trend =
        h.get(&format!("/api/v1/stats/trend?from={}&to={}&bucket=minute", t(0), t(240_000))).await.json();
    let points = trend["points"].as_array().unwrap();
    assert_eq!(points.len(), 4, "{trend}");
    assert_eq!(points[0]["counts"], json!({ "FAILED": 1 }));
    assert_eq!(points[0]["failure_rate"], 1.0);
    assert_eq!(points[1]["counts"], json!({ "CANCELED": 1 }));
    assert_eq!(points[1]["failure_rate"], 0.0);
    assert_eq!(points[2]["failure_rate"], Value::Null, "nothing finished");
    let workflows: Vec<&str> =
        trend["workflows"].as_array().unwrap().iter().map(|w| w["workflow"].as_str().unwrap()).collect();
    assert_eq!(workflows, ["etl", "report"]);
    h.get("/api/v1/stats/trend?bucket=minute").await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("from"),
    );
    h.get(&format!("/api/v1/stats/trend?from={}&bucket=week", t(0))).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("bucket"),
    );

    let tasks = h.get("/api/v1/tasks?workflow=report").await.json();
    let tasks = tasks["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert!(tasks.iter().all(|t| t["workflow"] == "report" && t["run_id"] == ids[3].to_string()));
    let page = h.get("/api/v1/tasks?status=SUBMITTED&limit=3").await.json();
    assert_eq!(page["tasks"].as_array().unwrap().len(), 3);
    assert!(page["next_cursor"].is_string());
}

/// A run shows every task with its log, attempts, progress (with an overrun
/// prediction against the step's timeout), lease and durations; a task read
/// alone shows the same with its run.
#[tokio::test]
async fn a_run_and_a_task_show_everything_recorded() {
    use TaskStatus::*;
    let now = t(20_000);
    let h = harness_at(now).await;
    let mut run = new_run("etl", 3, t(0));
    run.spec_source = "name: etl\ntype: graph\nsteps:\n  - name: step-0\n    command: 'true'\n  - name: step-1\n    command: 'true'\n    timeout_sec: 30\n  - name: step-2\n    command: 'true'\n    depends: [step-1]\n".into();
    let (id, tasks) = (run.id, run.tasks.iter().map(|t| t.id).collect::<Vec<_>>());
    apply(&h, vec![Change::CreateRun(run)]).await;
    apply(&h, vec![run_change(id, RunStatus::Queued, RunStatus::Running, t(0), None)]).await;

    // step-0: fails once, is retried, completes with an output.
    let (s, first) = start(tasks[0], 1, t(1_000));
    apply(&h, vec![plain(tasks[0], 0, Submitted, Pending, t(0)), s]).await;
    let failed =
        AttemptResult { exit_code: Some(1), error: Some("exit code 1".into()), ..Default::default() };
    apply(&h, vec![end(tasks[0], first, 1, Pending, t(2_000), failed)]).await;
    let (s, second) = start(tasks[0], 2, t(8_000));
    let ok = AttemptResult {
        exit_code: Some(0),
        outputs: [("ROWS".to_owned(), "42".to_owned())].into(),
        ..Default::default()
    };
    apply(&h, vec![s, end(tasks[0], second, 2, Completed, t(9_000), ok)]).await;
    // step-1: running for 10 s at 10%: it will need 100 s, and its timeout is 30 s.
    let (s, token) = start(tasks[1], 1, t(10_000));
    let progress = Progress::new(10.0, Some("one tenth".into())).unwrap();
    apply(&h, vec![plain(tasks[1], 0, Submitted, Pending, t(9_000)), s]).await;
    apply(&h, vec![heartbeat(tasks[1], token, t(20_000), t(50_000), Some(progress))]).await;
    // step-2: blocked on step-1.
    apply(&h, vec![plain(tasks[2], 0, Submitted, Blocked, t(0))]).await;

    let r = h.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = r.json();
    assert_eq!((r["workflow"].as_str(), r["status"].as_str()), (Some("etl"), Some("RUNNING")));
    assert_eq!(r["outputs"], json!({"ROWS": "42"}));
    assert_eq!(r["transitions"].as_array().unwrap().len(), 2);

    let t0 = &r["tasks"][0];
    assert_eq!(
        (t0["name"].as_str(), t0["status"].as_str(), t0["attempts"].as_u64()),
        (Some("step-0"), Some("COMPLETED"), Some(2))
    );
    assert_eq!(t0["retry_count"], 1);
    assert_eq!(t0["outputs"]["ROWS"], "42");
    assert_eq!(t0["lease"], Value::Null);
    let log: Vec<(&str, &str)> = t0["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["from"].as_str().unwrap_or("-"), t["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        log,
        [
            ("-", "SUBMITTED"),
            ("SUBMITTED", "PENDING"),
            ("PENDING", "RUNNING"),
            ("RUNNING", "PENDING"),
            ("PENDING", "RUNNING"),
            ("RUNNING", "COMPLETED")
        ]
    );
    let attempts = t0["attempt_records"].as_array().unwrap();
    assert_eq!(
        (attempts[0]["outcome"].as_str(), attempts[0]["exit_code"].as_i64()),
        (Some("FAILED"), Some(1))
    );
    assert_eq!(
        (attempts[1]["outcome"].as_str(), attempts[1]["worker"].as_str()),
        (Some("COMPLETED"), Some("w1"))
    );
    assert_eq!(
        t0["durations"],
        json!({
            "submitted_at": "2026-01-01T00:00:00.000000Z", "run_at": "2026-01-01T00:00:01.000000Z",
            "finished_at": "2026-01-01T00:00:09.000000Z", "blocked_duration": 0.0, "pending_duration": 7.0,
            "execution_duration": 2.0, "total_duration": 9.0,
        })
    );

    let t1 = &r["tasks"][1];
    assert_eq!(t1["status"], "RUNNING");
    assert_eq!(t1["lease"]["worker"], "w1");
    assert_eq!(t1["lease"]["expires_at"], "2026-01-01T00:00:50.000000Z");
    assert_eq!(
        t1["progress"],
        json!({
            "percent": 10.0, "message": "one tenth", "at": "2026-01-01T00:00:20.000000Z",
            "predicted_finish_at": "2026-01-01T00:01:50.000000Z", "overrun_predicted": true,
        })
    );
    assert_eq!(t1["durations"]["execution_duration"], 10.0, "measured up to now");
    assert_eq!(r["tasks"][2]["status"], "BLOCKED");
    assert_eq!(r["tasks"][2]["durations"]["blocked_duration"], 20.0);

    // The task list says the same of it: the dashboard flags the overrun on load.
    let running = h.get("/api/v1/tasks?status=RUNNING").await.json();
    let listed = &running["tasks"][0];
    assert_eq!(
        (&listed["predicted_finish_at"], &listed["overrun_predicted"], &listed["progress_percent"]),
        (&json!("2026-01-01T00:01:50.000000Z"), &json!(true), &json!(10.0)),
        "{running}"
    );
    let done = h.get("/api/v1/tasks?status=COMPLETED").await.json();
    assert_eq!(
        (&done["tasks"][0]["predicted_finish_at"], &done["tasks"][0]["overrun_predicted"]),
        (&Value::Null, &json!(false))
    );

    let one = h.get(&format!("/api/v1/tasks/{}", tasks[1])).await.json();
    assert_eq!(one["task"], *t1, "a task alone reads as in its run");
    assert_eq!(
        (one["run"]["run_id"].as_str(), one["run"]["workflow"].as_str()),
        (Some(&*id.to_string()), Some("etl"))
    );
    assert!(!r.to_string().contains(&token.to_string()), "lease tokens never leave the server");
}

/// An attempt's logs read whole; followed, new bytes arrive until the
/// attempt ends.
#[tokio::test]
async fn logs_read_and_follow_until_the_attempt_ends() {
    use TaskStatus::*;
    let h = harness().await.rebuild(|mut state| {
        let mut config = (*state.config).clone();
        config.log_poll_interval = Duration::from_millis(5);
        state.config = Arc::new(config);
        router(state)
    });
    let (run, tasks) = stored_run(&h, "etl", 1, t(0)).await;
    let (s, token) = start(tasks[0], 1, t(1));
    apply(&h, vec![plain(tasks[0], 0, Submitted, Pending, t(0)), s]).await;
    let (out, err) = cairn_engine::attempt_log_paths(&h.log_root, run, 0, "step-0", 1);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, "first line\n").unwrap();
    std::fs::write(&err, "a warning\n").unwrap();

    let a = h.get(&format!("/api/v1/runs/{run}/logs/step-0")).await;
    assert_eq!((a.status, a.text().as_str()), (StatusCode::OK, "first line\n"));
    assert_eq!(a.headers["x-cairn-attempt"], "1");
    assert!(a.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let a = h.get(&format!("/api/v1/runs/{run}/logs/step-0?stream=stderr&attempt=1")).await;
    assert_eq!(a.text(), "a warning\n");
    h.get(&format!("/api/v1/runs/{run}/logs/step-0?attempt=2")).await.assert_error(
        StatusCode::NOT_FOUND,
        "log_not_found",
        Some("attempt"),
    );

    let app = h.app();
    let uri = format!("/api/v1/runs/{run}/logs/step-0?follow=true");
    let follow = tokio::spawn(async move {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let response = app.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.unwrap().to_bytes()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
        f.write_all(b"second line\n").unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!follow.is_finished(), "the attempt is still running");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
        f.write_all(b"last words\n").unwrap();
    }
    apply(&h, vec![end(tasks[0], token, 1, Completed, t(2), AttemptResult::default())]).await;
    let body = tokio::time::timeout(Duration::from_secs(10), follow).await.expect("the follow ends").unwrap();
    assert_eq!(body, "first line\nsecond line\nlast words\n");
}

// ---------------------------------------------------------------------------
// Workflows

/// One broken file is listed with its diagnostics; the good ones load and
/// stay; a reload picks up new and changed files.
#[tokio::test]
async fn the_catalog_keeps_good_files_beside_a_broken_one() {
    let h = harness().await;
    let list = h.get("/api/v1/workflows").await.json();
    let by_name = |list: &Value, name: &str| -> Value {
        list["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_name(&list, "hello")["valid"], true);
    assert_eq!(by_name(&list, "hello")["steps"], 2);
    assert_eq!(by_name(&list, "broken")["valid"], false);
    assert_eq!(by_name(&list, "broken")["errors"], 1);

    let broken = h.get("/api/v1/workflows/broken").await.json();
    assert_eq!(broken["valid"], false);
    let e = &broken["errors"][0];
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64(), e["path"].as_str()),
        (Some(4), Some(5), Some("steps[0].comand"))
    );
    assert!(e["hint"].as_str().unwrap().contains("command"), "{e}");
    assert!(broken["source"].as_str().unwrap().contains("comand: echo typo"));

    let hello = h.get("/api/v1/workflows/hello").await.json();
    assert_eq!(hello["kind"], "chain");
    assert_eq!(hello["steps"][0]["name"], "greet");
    assert_eq!(hello["steps"][0]["action"], "command");
    assert_eq!(hello["steps"][1]["depends"], json!(["greet"]));
    assert_eq!(
        hello["params"][0],
        json!({"name": "NAME", "default": "world", "type": "string", "description": null, "required": false, "choices": []})
    );
    let remote = h.get("/api/v1/workflows/remote").await.json();
    assert_eq!(remote["steps"][0]["queue"], "conformance");

    std::fs::write(
        h.workflows.join("broken.yaml"),
        "name: broken\nsteps:\n  - name: a\n    command: echo fixed\n",
    )
    .unwrap();
    std::fs::write(
        h.workflows.join("nightly.yml"),
        "name: nightly\nschedule: \"0 2 * * *\"\nsteps:\n  - echo hi\n",
    )
    .unwrap();
    assert!(h.catalog.reload());
    let list = h.get("/api/v1/workflows").await.json();
    assert_eq!(by_name(&list, "broken")["valid"], true);
    assert_eq!(by_name(&list, "nightly")["schedule"], json!(["0 2 * * *"]));
    let ready = h.get("/api/v1/ready").await.json();
    assert_eq!((ready["workflows"].as_u64(), ready["broken_workflows"].as_u64()), (Some(7), Some(0)));
}

/// Validation answers 200 either way, with every problem at its line and column.
#[tokio::test]
async fn validate_reports_each_problem_at_its_position() {
    let h = harness().await;
    let yaml = "name: typo\ntype: graph\nsteps:\n  - name: build\n    command: make\n  - name: test\n    comand: make test\n  - name: ship\n    command: make ship\n    depends: [biuld]\n";
    let a = h.post_raw("/api/v1/workflows/validate", "application/yaml", yaml).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    assert_eq!(v["valid"], false);
    let at: Vec<(u64, u64, &str)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["column"].as_u64().unwrap(), e["path"].as_str().unwrap()))
        .collect();
    assert!(at.contains(&(7, 5, "steps[1].comand")), "{v}");
    assert!(at.iter().any(|(line, _, path)| *line == 10 && *path == "steps[2].depends"), "{v}");

    let v = h
        .post_raw("/api/v1/workflows/validate", "text/plain", "name: ok\nsteps:\n  - echo hi\n")
        .await
        .json();
    assert_eq!(
        (v["valid"].as_bool(), v["name"].as_str(), v["steps"].as_u64()),
        (Some(true), Some("ok"), Some(1))
    );
    assert_eq!(v["errors"], json!([]));

    let v = h.post_raw("/api/v1/workflows/validate", "application/yaml", "steps: [").await.json();
    assert_eq!(v["valid"], false);
    assert!(v["errors"][0]["line"].is_u64(), "{v}");
    h.post_raw("/api/v1/workflows/validate", "application/yaml", vec![0xff, 0xfe]).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("body"),
    );
}

// ---------------------------------------------------------------------------
// The document, health, metrics

/// Every route is in the OpenAPI document with its responses, and every
/// schema it refers to is defined.
#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let h = harness().await;
    let doc = h.get("/api/v1/openapi.json").await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let expected = [
        ("get", "/api/v1/health"),
        ("get", "/api/v1/ready"),
        ("get", "/metrics"),
        ("get", "/api/v1/openapi.json"),
        ("get", "/api/v1/workflows"),
        ("get", "/api/v1/workflows/{name}"),
        ("post", "/api/v1/workflows/validate"),
        ("post", "/api/v1/workflows/{name}/runs"),
        ("get", "/api/v1/runs"),
        ("get", "/api/v1/tasks"),
        ("get", "/api/v1/stats/status"),
        ("get", "/api/v1/stats/trend"),
        ("get", "/api/v1/stats/phases"),
        ("get", "/api/v1/workflows/{name}/expected-durations"),
        ("get", "/api/v1/alerts"),
        ("get", "/api/v1/reaped"),
        ("get", "/api/v1/reports/status"),
        ("get", "/api/v1/runs/{run_id}"),
        ("post", "/api/v1/runs/{run_id}/cancel"),
        ("post", "/api/v1/runs/{run_id}/retry"),
        ("get", "/api/v1/tasks/{task_id}"),
        ("get", "/api/v1/runs/{run_id}/logs/{step}"),
        ("post", "/api/v1/workers/lease"),
        ("post", "/api/v1/workers/heartbeat"),
        ("post", "/api/v1/tasks/{task_id}/heartbeat"),
        ("post", "/api/v1/tasks/{task_id}/complete"),
        ("post", "/api/v1/workers/complete"),
        ("post", "/api/v1/tasks/{task_id}/logs"),
        ("get", "/api/v1/workers"),
        ("get", "/api/v1/events"),
        ("post", "/api/v1/tokens"),
        ("get", "/api/v1/tokens"),
        ("delete", "/api/v1/tokens/{name}"),
        ("get", "/api/v1/audit"),
        ("post", "/api/v1/session"),
        ("get", "/api/v1/session"),
        ("delete", "/api/v1/session"),
        ("get", "/api/v1/webhooks/deliveries"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            assert!(
                expected.contains(&(method.as_str(), path.as_str())),
                "undocumented here: {method} {path}"
            );
            let responses =
                op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path} has no responses"));
            assert!(!responses.is_empty(), "{method} {path}");
            for (status, r) in responses {
                assert!(r["description"].is_string(), "{method} {path} {status}");
            }
        }
    }
    for (method, path) in expected {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "missing {method} {path}");
    }
    assert_eq!(operations, expected.len());

    // Every `$ref` resolves to a schema of the document.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20, "{all:?}");
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected ref {r}"));
        assert!(doc["components"]["schemas"].get(name).is_some(), "dangling {r}");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"]["properties"]["code"].is_object());
}

/// Every documented route answers at its method (none falls to the 404 or 405 fallback).
#[tokio::test]
async fn every_documented_route_is_served() {
    let h = harness().await;
    let doc = h.get("/api/v1/openapi.json").await.json();
    let id = RunId::new(t(0)).to_string();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri = path
            .replace("{run_id}", &id)
            .replace("{task_id}", &id)
            .replace("{name}", "hello")
            .replace("{step}", "s");
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let a = h.send(request(method.clone(), &uri, Some("application/json"), "{}")).await;
            assert_ne!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            if a.status == StatusCode::NOT_FOUND {
                assert_ne!(a.code(), "not_found", "{method} {uri} fell to the fallback");
            }
        }
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let h = harness().await;
    assert_eq!(h.get("/api/v1/health").await.json(), json!({"status": "ok"}));
    let ready = h.get("/api/v1/ready").await;
    assert_eq!((ready.status, ready.json()["status"].as_str()), (StatusCode::OK, Some("ready")));
    h.store.close().await.unwrap();
    h.get("/api/v1/ready").await.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    assert_eq!(h.get("/api/v1/health").await.status, StatusCode::OK, "alive even when not ready");
}

/// `/metrics` renders the documented names; histograms have buckets.
#[tokio::test]
async fn metrics_are_exported_under_their_names() {
    use cairn_server::metrics;
    let h = harness().await;
    let run = RunId::new(t(0));
    let event = |from: TaskStatus, to: TaskStatus, actor: Actor| {
        Event::Transition(TransitionEvent {
            run_id: run,
            workflow: "etl".into(),
            task_id: TaskId::new(t(0)),
            step: "a".into(),
            queue: None,
            attempt: 1,
            from: Some(from),
            to,
            from_at: Some(t(0)),
            at: t(1500),
            reason: "x".into(),
            actor,
        })
    };
    metrics::observe(&event(TaskStatus::Blocked, TaskStatus::Pending, Actor::Scheduler));
    metrics::observe(&event(TaskStatus::Pending, TaskStatus::Running, Actor::Executor));
    metrics::observe(&event(TaskStatus::Running, TaskStatus::Pending, Actor::Reaper));
    metrics::set_tasks_running(Some("gpu"), 3);
    metrics::set_tasks_pending(None, 2);
    metrics::record_heartbeats(metrics::HeartbeatResult::Coalesced, 4);
    metrics::record_overrun_predicted();
    metrics::record_start_failure(metrics::StartFailure::Spawn);
    let token = LeaseToken::random();
    h.control.fail_with(ControlError::Unavailable { message: "x".into() });
    let _ = h
        .post(
            "/api/v1/workers/heartbeat",
            json!({"worker_id": "w", "items": [{"task_id": TaskId::new(t(0)), "lease_token": token}]}),
        )
        .await;

    let a = h.get("/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = a.text();
    for name in [
        metrics::TRANSITIONS_TOTAL,
        metrics::TASK_PENDING_SECONDS,
        metrics::TASK_BLOCKED_SECONDS,
        metrics::TASK_EXECUTION_SECONDS,
        metrics::TASKS_RUNNING,
        metrics::TASKS_PENDING,
        metrics::LEASES_REAPED_TOTAL,
        metrics::HEARTBEATS_TOTAL,
        metrics::OVERRUNS_PREDICTED_TOTAL,
        metrics::START_FAILURES_TOTAL,
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains(r#"cairn_transitions_total{from="BLOCKED",to="PENDING"}"#), "{text}");
    assert!(text.contains(r#"cairn_task_pending_seconds_bucket{le="2.5"} 1"#), "{text}");
    assert!(text.contains(r#"cairn_tasks_running{queue="gpu"} 3"#), "{text}");
    assert!(text.contains(r#"cairn_tasks_pending{queue="local"} 2"#), "{text}");
    assert!(text.contains(r#"cairn_heartbeats_total{result="coalesced"} 4"#), "{text}");
    assert!(text.contains(r#"cairn_start_failures_total{reason="spawn"} 1"#), "{text}");
    assert!(text.contains("cairn_leases_reaped_total 1"), "{text}");
    assert!(!text.contains(&run.to_string()), "no ids in labels");
}

// ---------------------------------------------------------------------------
// Live events

fn run_event(run: RunId, workflow: &str, to: RunStatus) -> Event {
    Event::Run(RunEvent {
        run_id: run,
        workflow: workflow.into(),
        from: None,
        to,
        at: t(0),
        reason: "x".into(),
        actor: Actor::Scheduler,
    })
}

fn progress_event(run: RunId, workflow: &str, percent: f32) -> Event {
    Event::Progress(ProgressEvent {
        run_id: run,
        workflow: workflow.into(),
        task_id: TaskId::new(t(0)),
        step: "a".into(),
        attempt: 1,
        percent,
        message: None,
        at: t(0),
        predicted_finish_at: None,
        overrun_predicted: false,
    })
}

async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> Value {
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message in time");
        match message.expect("the stream is open").expect("a frame") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// A subscriber filtered by run (or by workflow) gets only the matching events, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_delivers_only_matching_events() {
    let h = harness().await;
    let addr = h.serve().await;
    let (a, b) = (RunId::new(t(0)), RunId::new(t(1)));
    let (mut by_run, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/events?run={a}")).await.unwrap();
    let (mut by_workflow, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/events?workflow=etl")).await.unwrap();
    let (mut all, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/events")).await.unwrap();

    let events = [
        run_event(b, "etl", RunStatus::Queued),
        progress_event(b, "other", 5.0),
        run_event(a, "other", RunStatus::Queued),
        progress_event(a, "other", 50.0),
        run_event(b, "etl", RunStatus::Completed),
    ];
    for e in &events {
        h.control.events.send(e.clone()).unwrap();
    }
    let json = |e: &Event| serde_json::to_value(e).unwrap();
    assert_eq!(next_json(&mut by_run).await, json(&events[2]));
    assert_eq!(next_json(&mut by_run).await, json(&events[3]));
    assert_eq!(next_json(&mut by_workflow).await, json(&events[0]));
    assert_eq!(next_json(&mut by_workflow).await, json(&events[4]));
    for e in &events {
        assert_eq!(next_json(&mut all).await, json(e));
    }
    // Nothing else was queued for the filtered subscribers: the next thing
    // they see is the next matching event.
    h.control.events.send(progress_event(a, "etl", 99.0)).unwrap();
    assert_eq!(next_json(&mut by_run).await["percent"], 99.0);
    assert_eq!(next_json(&mut by_workflow).await["percent"], 99.0);
    by_run.close(None).await.unwrap();
}

/// A subscriber that falls behind is told how many events it missed, then
/// carries on with the newest; the sender never waits.
#[tokio::test(flavor = "current_thread")]
async fn a_lagging_subscriber_is_told_what_it_missed() {
    let h = Harness::start(sqlite, |_| async { Stub::new(4) }).await;
    let addr = h.serve().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/v1/events")).await.unwrap();
    let run = RunId::new(t(0));
    // No await between the sends: on this one-thread runtime the subscriber
    // cannot read in between, so 20 events overflow its 4 places.
    for i in 0..20 {
        h.control.events.send(progress_event(run, "etl", i as f32)).unwrap();
    }
    let first = next_json(&mut ws).await;
    assert_eq!(first, json!({"kind": "lagged", "missed": 16}));
    for i in 16..20 {
        assert_eq!(next_json(&mut ws).await["percent"], i as f64);
    }
    ws.send(Message::Close(None)).await.unwrap();
}

// ---------------------------------------------------------------------------
// Phase analytics and expected durations

/// A run of `workflow` whose one task `step-0` ran `runs_for` s, the run
/// itself taking `took` s, finished at `at` + `took`.
async fn completed_run(
    h: &Harness<SqliteStore, Stub>,
    workflow: &str,
    at: Timestamp,
    runs_for: i64,
    took: i64,
) {
    use TaskStatus::*;
    let (id, tasks) = stored_run(h, workflow, 1, at).await;
    let ms = |s: i64| Timestamp::from_micros(at.as_micros() + s * 1_000_000);
    let (s, token) = start(tasks[0], 1, ms(1));
    apply(
        h,
        vec![
            run_change(id, RunStatus::Queued, RunStatus::Running, at, None),
            plain(tasks[0], 0, Submitted, Pending, at),
            s,
            end(tasks[0], token, 1, Completed, ms(1 + runs_for), AttemptResult::default()),
            run_change(id, RunStatus::Running, RunStatus::Completed, ms(took), None),
        ],
    )
    .await;
}

/// A running task past the p95 of its step's usual execution is "slower
/// than usual" in its run and on its own, and the run's ETA is its start
/// plus its usual duration, or a later progress prediction. The figures come
/// from a cache read again once its TTL has passed on the manual clock.
#[tokio::test]
async fn a_task_running_past_its_usual_p95_is_slower_than_usual() {
    use TaskStatus::*;
    let clock = ManualClock::new(t(1_000_000));
    let c = clock.clone();
    let h = harness().await.rebuild(move |state| router(state.with_clock(Arc::new(c))));
    // Six runs: step-0 ran 10..=15 s (p95 15 s), the runs took 20..=25 s (p50 22 s).
    for i in 0..6 {
        completed_run(&h, "etl", t(i * 100_000), 10 + i, 20 + i).await;
    }
    let start_at = t(1_000_000);
    let (id, tasks) = stored_run(&h, "etl", 2, start_at).await;
    let (a, token) = start(tasks[0], 1, start_at);
    let (b, other) = start(tasks[1], 1, start_at);
    apply(
        &h,
        vec![
            run_change(id, RunStatus::Queued, RunStatus::Running, start_at, None),
            plain(tasks[0], 0, Submitted, Pending, start_at),
            a,
            plain(tasks[1], 0, Submitted, Pending, start_at),
            b,
        ],
    )
    .await;
    let after = |s: u64| clock.set(start_at.saturating_add(Duration::from_secs(s)));
    let view = || async { h.get(&format!("/api/v1/runs/{id}")).await.json() };

    after(15);
    let run = view().await;
    let step0 = &run["tasks"][0];
    assert_eq!(step0["expected"], json!({"samples": 6, "p50": 12.0, "p95": 15.0, "reliable": true}), "{run}");
    assert_eq!(step0["slower_than_usual"], false, "at its p95 is usual");
    assert_eq!(run["tasks"][1]["expected"], Value::Null, "step-1 has no history");
    assert_eq!(run["expected"], json!({"samples": 6, "p50": 22.0, "p95": 25.0, "reliable": true}));
    assert_eq!(run["eta"], json!(t(1_022_000)), "start + the usual 22 s");
    assert_eq!(run["slower_than_usual"], false);

    after(16);
    let run = view().await;
    assert_eq!(run["tasks"][0]["slower_than_usual"], true, "{run}");
    assert_eq!(run["tasks"][1]["slower_than_usual"], false, "nothing to compare with");
    let task = h.get(&format!("/api/v1/tasks/{}", tasks[0])).await.json();
    assert_eq!(task["task"]["slower_than_usual"], true, "{task}");
    assert_eq!(task["task"]["expected"]["p95"], 15.0);

    // step-1 reports 10% after 10 s: it will need 100 s, later than usual.
    let progress = cairn_core::progress::Progress::new(10.0, None).unwrap();
    apply(&h, vec![heartbeat(tasks[1], other, t(1_010_000), t(1_100_000), Some(progress))]).await;
    after(26);
    let run = view().await;
    assert_eq!(run["eta"], json!(t(1_100_000)), "{run}");
    assert_eq!(run["slower_than_usual"], true, "past the runs' p95 of 25 s");

    // Slower runs of step-0 complete; the cached figures hold until the TTL.
    for i in 0..20 {
        completed_run(&h, "etl", t(2_000_000 + i * 100_000), 100, 120).await;
    }
    assert_eq!(view().await["tasks"][0]["expected"]["samples"], 6, "cached");
    after(26 + cairn_server::expected::ExpectedCache::TTL.as_secs() + 1);
    let run = view().await;
    assert_eq!(run["tasks"][0]["expected"]["samples"], 26, "{run}");
    assert_eq!(run["tasks"][0]["slower_than_usual"], false, "57 s is quick for it now");

    // Once the task ends it is no longer slower than usual, whatever it took.
    apply(&h, vec![end(tasks[0], token, 1, Completed, t(1_300_000), AttemptResult::default())]).await;
    after(400);
    let run = view().await;
    assert_eq!(run["tasks"][0]["slower_than_usual"], false);
    assert!(run["tasks"][0]["expected"].is_object());
}

/// Phase statistics and expected durations through the API, with their
/// defaults, filters and refusals.
#[tokio::test]
async fn phase_statistics_and_expected_durations_of_a_workflow() {
    let h = harness_at(t(2 * 86_400_000)).await;
    for i in 0..3 {
        completed_run(&h, "etl", t(i * 100_000), 10 + i, 20 + i).await;
    }
    completed_run(&h, "report", t(500_000), 5, 6).await;
    let (id, tasks) = stored_run(&h, "report", 1, t(600_000)).await;
    let (s, token) = start(tasks[0], 1, t(601_000));
    apply(
        &h,
        vec![
            plain(tasks[0], 0, TaskStatus::Submitted, TaskStatus::Pending, t(600_000)),
            s,
            end(tasks[0], token, 1, TaskStatus::Failed, t(700_000), AttemptResult::default()),
        ],
    )
    .await;

    let stats = h.get(&format!("/api/v1/stats/phases?from={}&slowest=2", t(0))).await.json();
    let steps = stats["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{stats}");
    assert_eq!((steps[0]["workflow"].as_str(), steps[0]["step"].as_str()), (Some("etl"), Some("step-0")));
    assert_eq!(steps[0]["tasks"], 3);
    assert_eq!(steps[0]["execution"], json!({"p50": 11.0, "p95": 12.0, "max": 12.0}));
    assert_eq!(steps[0]["pending"], json!({"p50": 1.0, "p95": 1.0, "max": 1.0}));
    assert_eq!(steps[1]["counts"], json!({"COMPLETED": 1, "FAILED": 1}));
    assert_eq!(stats["slowest"].as_array().unwrap().len(), 2);
    assert_eq!(stats["slowest"][0]["run_id"], id.to_string(), "99 s of running");
    assert_eq!(stats["slowest"][0]["execution_duration"], 99.0);
    assert_eq!(
        stats["most_failing"],
        json!([{"workflow": "report", "step": "step-0", "failed": 1, "share": 1.0, "rate": 0.5}])
    );
    assert_eq!(stats["sample_cap"], 10_000);

    let etl = h.get(&format!("/api/v1/stats/phases?from={}&workflow=etl&sample_cap=1", t(0))).await.json();
    assert_eq!(etl["steps"].as_array().unwrap().len(), 1);
    assert_eq!(etl["steps"][0]["tasks"], 1);
    assert_eq!(etl["steps"][0]["sampled_from"], json!(t(200_000 + 13_000)), "{etl}");
    let recent = h.get("/api/v1/stats/phases").await.json();
    assert_eq!(recent["from"], json!(t(86_400_000)), "a day before now by default");
    assert!(recent["steps"].as_array().unwrap().is_empty(), "{recent}");

    for (query, field) in [
        ("slowest=0", "slowest"),
        ("slowest=101", "slowest"),
        ("sample_cap=100001", "sample_cap"),
        ("from=yesterday", "from"),
        ("color=blue", "color"),
    ] {
        h.get(&format!("/api/v1/stats/phases?{query}")).await.assert_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some(field),
        );
    }

    let e = h.get("/api/v1/workflows/etl/expected-durations").await.json();
    assert_eq!(e["workflow"], "etl");
    assert_eq!(e["run"], json!({"samples": 3, "p50": 21.0, "p95": 22.0, "reliable": false}), "{e}");
    assert_eq!(e["steps"][0]["step"], "step-0");
    assert_eq!(e["steps"][0]["execution"]["p50"], 11.0);
    assert_eq!(e["steps"][0]["total"]["p95"], 13.0);
    assert_eq!(e["min_samples"], 5);
    let none = h.get("/api/v1/workflows/nothing-yet/expected-durations").await.json();
    assert_eq!((none["run"].clone(), none["steps"].clone()), (Value::Null, json!([])));
}

#[tokio::test]
async fn the_webhook_delivery_log_pages_newest_first_by_state_and_webhook() {
    let h = harness().await;
    let mut ids = Vec::new();
    for (i, webhook) in ["ops", "pager", "ops"].into_iter().enumerate() {
        let d = cairn_store::NewDelivery {
            webhook: webhook.into(),
            kind: "run_failed".into(),
            key: format!("run_failed:{i}"),
            workflow: Some("etl".into()),
            body: json!({"kind": "run_failed", "key": format!("run_failed:{i}")}).to_string(),
            created_at: t(1_000 * i as i64),
            max_attempts: 8,
        };
        ids.push(h.store.enqueue_delivery(d).await.unwrap().unwrap());
    }
    let delivered = cairn_store::DeliveryAttempt {
        id: ids[0],
        at: t(5_000),
        status: Some(204),
        error: None,
        next: cairn_store::AttemptNext::Delivered,
    };
    h.store.record_delivery_attempt(delivered).await.unwrap();

    let all = h.get("/api/v1/webhooks/deliveries").await.json();
    let got: Vec<i64> =
        all["deliveries"].as_array().unwrap().iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(got, [ids[2], ids[1], ids[0]], "{all}");
    assert_eq!(all["deliveries"][2]["state"], "delivered");
    assert_eq!(all["deliveries"][2]["last_status"], 204);
    assert_eq!(all["deliveries"][2]["body"]["key"], "run_failed:0", "the body as JSON");
    assert_eq!(all["next_before"], Value::Null);

    let pending = h.get("/api/v1/webhooks/deliveries?state=pending&webhook=ops").await.json();
    assert_eq!(pending["deliveries"].as_array().unwrap().len(), 1, "{pending}");
    assert_eq!(pending["deliveries"][0]["id"], ids[2]);
    let page = h.get("/api/v1/webhooks/deliveries?limit=2").await.json();
    assert_eq!(page["next_before"], ids[1]);
    let next = h.get(&format!("/api/v1/webhooks/deliveries?before={}", ids[1])).await.json();
    assert_eq!(next["deliveries"][0]["id"], ids[0]);

    h.get("/api/v1/webhooks/deliveries?state=sent").await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("state"),
    );
    h.get("/api/v1/webhooks/deliveries?limit=0").await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("limit"),
    );
}

/// The attempts the reaper ended, newest first, by workflow and page, as
/// the transition log recorded them; a worker's own failure is not one.
#[tokio::test]
async fn reaped_attempts_page_newest_first_by_workflow() {
    let h = harness().await;
    let mut reaped = Vec::new();
    for (i, workflow) in ["etl", "report", "etl"].into_iter().enumerate() {
        let at = t(10_000 * i as i64);
        let (run, tasks) = stored_run(&h, workflow, 2, at).await;
        let (started, token) = start(tasks[0], 1, at);
        let (other, other_token) = start(tasks[1], 1, at);
        let mut lost =
            end(tasks[0], token, 1, TaskStatus::Failed, t(10_000 * i as i64 + 5_000), Default::default());
        if let Change::Task(c) = &mut lost {
            c.transition.actor = Actor::Reaper;
            c.transition.reason = format!("heartbeat lost (worker w{i}, last heartbeat {at})");
        }
        let failed = end(tasks[1], other_token, 1, TaskStatus::Failed, at, Default::default());
        apply(
            &h,
            vec![
                plain(tasks[0], 0, TaskStatus::Submitted, TaskStatus::Pending, at),
                plain(tasks[1], 0, TaskStatus::Submitted, TaskStatus::Pending, at),
                started,
                other,
                lost,
                failed,
            ],
        )
        .await;
        reaped.push((run, tasks[0]));
    }

    let all = h.get("/api/v1/reaped").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text());
    let all = all.json();
    let got: Vec<(&str, &str)> = all["reaped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["run_id"].as_str().unwrap(), r["task_id"].as_str().unwrap()))
        .collect();
    let want: Vec<(String, String)> =
        reaped.iter().rev().map(|(r, t)| (r.to_string(), t.to_string())).collect();
    let want: Vec<(&str, &str)> = want.iter().map(|(r, t)| (r.as_str(), t.as_str())).collect();
    assert_eq!(got, want, "{all}");
    let newest = &all["reaped"][0];
    assert_eq!(
        (&newest["workflow"], &newest["step"], &newest["attempt"]),
        (&json!("etl"), &json!("step-0"), &json!(1))
    );
    assert_eq!((&newest["to"], &newest["at"]), (&json!("FAILED"), &json!(t(25_000).to_string())), "{newest}");
    assert!(newest["reason"].as_str().unwrap().starts_with("heartbeat lost (worker w2"), "{newest}");
    assert_eq!(all["next_before"], Value::Null);

    let etl = h.get("/api/v1/reaped?workflow=etl").await.json();
    assert_eq!(etl["reaped"].as_array().unwrap().len(), 2, "{etl}");
    let page = h.get("/api/v1/reaped?limit=2").await.json();
    let before = page["next_before"].as_str().expect("a next page").to_owned();
    let next = h.get(&format!("/api/v1/reaped?before={before}")).await.json();
    assert_eq!(next["reaped"][0]["run_id"], json!(reaped[0].0.to_string()), "{next}");
    assert_eq!(next["reaped"].as_array().unwrap().len(), 1);

    h.get("/api/v1/reaped?before=yesterday").await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("before"),
    );
    h.get("/api/v1/reaped?limit=0").await.assert_error(StatusCode::BAD_REQUEST, "bad_request", Some("limit"));
}

// ---------------------------------------------------------------------------
// Limits: rates, subscriptions, oversize and malformed input

#[path = "api/limits.rs"]
mod limits;

// ---------------------------------------------------------------------------
// The status report

/// The status report of the last whole day (and of a week) through the API,
/// against counts worked out by hand, with its refusals.
#[tokio::test]
async fn the_status_report_of_the_last_day_and_a_week() {
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;
    // Friday 2026-01-02 at 06:00: the last whole day is Thursday 2026-01-01.
    let h = harness_at(t(DAY + 6 * HOUR)).await;
    for (i, runs_for) in [(1, 10), (2, 20), (3, 30)] {
        completed_run(&h, "etl", t(i * HOUR), runs_for, runs_for + 2).await;
    }
    let (id, tasks) = stored_run(&h, "etl", 1, t(4 * HOUR)).await;
    let (s, token) = start(tasks[0], 1, t(4 * HOUR + 1000));
    apply(
        &h,
        vec![
            run_change(id, RunStatus::Queued, RunStatus::Running, t(4 * HOUR), None),
            plain(tasks[0], 0, TaskStatus::Submitted, TaskStatus::Pending, t(4 * HOUR)),
            s,
            end(tasks[0], token, 1, TaskStatus::Failed, t(4 * HOUR + 100_000), AttemptResult::default()),
            run_change(id, RunStatus::Running, RunStatus::Failed, t(4 * HOUR + 101_000), None),
        ],
    )
    .await;
    // The day before: one run, its step 5 s.
    completed_run(&h, "etl", t(-HOUR), 5, 6).await;

    let report = h.get("/api/v1/reports/status").await.json();
    assert_eq!(report["period"], "day", "{report}");
    assert_eq!((report["from"].clone(), report["to"].clone()), (json!(t(0)), json!(t(DAY))));
    assert_eq!(report["previous_from"], json!(t(-DAY)));
    let etl = &report["workflows"][0];
    assert_eq!(etl["workflow"], "etl");
    assert_eq!(etl["current"]["counts"], json!({"COMPLETED": 3, "FAILED": 1}));
    assert_eq!((etl["current"]["finished"].clone(), etl["current"]["failed"].clone()), (json!(4), json!(1)));
    assert_eq!(etl["current"]["failure_rate"], 0.25);
    assert_eq!(etl["previous"]["failure_rate"], 0.0);
    assert_eq!(etl["failure_rate_change"], 0.25);
    // step-0 ran 10, 20, 30 and 99 s (failed): p50 the 2nd, p95 the 4th.
    assert_eq!(
        etl["slowest_steps"],
        json!([{"step": "step-0", "count": 4, "p50": 20.0, "p95": 99.0, "failures": 1,
                "previous_p95": 5.0, "sampled_from": null}])
    );
    assert_eq!(report["totals"]["current"]["failure_rate"], 0.25);

    let none = h.get(&format!("/api/v1/reports/status?workflow=other&end={}", t(DAY))).await.json();
    assert_eq!(none["workflows"], json!([]), "{none}");
    assert_eq!(none["totals"]["current"]["failure_rate"], Value::Null);

    // A week ending on Monday 2026-01-05 holds every run; the default week
    // ends on the last Monday, 2025-12-29.
    let week = h.get("/api/v1/reports/status?period=weekly&end=2026-01-05T00:00:00Z").await.json();
    assert_eq!(week["period"], "week");
    assert_eq!(week["workflows"][0]["current"]["counts"], json!({"COMPLETED": 4, "FAILED": 1}), "{week}");
    assert_eq!(week["workflows"][0]["previous"]["counts"], json!({}));
    let monday = |text: &str| json!(Timestamp::from_jiff(text.parse::<jiff::Timestamp>().unwrap()));
    let default_week = h.get("/api/v1/reports/status?period=week").await.json();
    assert_eq!(default_week["to"], monday("2025-12-29T00:00:00Z"), "{default_week}");
    assert_eq!(default_week["from"], monday("2025-12-22T00:00:00Z"));

    for (query, field) in [("period=month", "period"), ("end=yesterday", "end"), ("color=blue", "color")] {
        h.get(&format!("/api/v1/reports/status?{query}")).await.assert_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some(field),
        );
    }
}
