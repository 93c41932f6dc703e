//! The client and the worker against a tiny real HTTP listener that records
//! each request and answers from a script: it checks the shapes of the
//! requests the client sends and how it reads the answers. It is not a
//! Cairn server; end-to-end tests against `cairn serve` live with the binary.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_client::protocol::{
    AckStatus, AttemptEnd, CompleteAck, CompleteBatchRequest, CompleteBatchResponse, CompleteItem,
    CompleteRequest, HeartbeatAck, HeartbeatItem, HeartbeatRequest, HeartbeatResponse, ItemError,
    LeaseRequest, LeaseResponse, LeasedTask,
};
use cairn_client::{
    Backoff, CancellationToken, Client, ClientError, LeaseToken, LogStream, Outputs, RunId, RunQuery,
    TaskContext, TaskId, TaskStatus, Timestamp, TransientKind, Worker,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------- the listener ----------

#[derive(Clone, Debug)]
struct Req {
    method: String,
    /// Path and query.
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap()
    }
}

struct Answer {
    status: u16,
    body: String,
    headers: Vec<(&'static str, String)>,
    delay: Duration,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer { status, body: body.to_string(), headers: vec![], delay: Duration::ZERO }
}

type Script = dyn Fn(&Req) -> Answer + Send + Sync;

/// Serves HTTP/1.1 on a loopback port, answering each request with `script`.
async fn serve(script: impl Fn(&Req) -> Answer + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<Req>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let script: Arc<Script> = Arc::new(script);
    let log2 = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            tokio::spawn(connection(sock, script.clone(), log2.clone()));
        }
    });
    (base, log)
}

async fn connection(mut sock: TcpStream, script: Arc<Script>, log: Arc<Mutex<Vec<Req>>>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap().split(' ');
        let (method, target) = (first.next().unwrap().to_owned(), first.next().unwrap().to_owned());
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        assert!(
            !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding")),
            "the test listener reads content-length bodies only"
        );
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let req = Req { method, target, headers, body };
        let a = script(&req);
        log.lock().unwrap().push(req);
        tokio::time::sleep(a.delay).await;
        let mut out = format!("HTTP/1.1 {} X\r\ncontent-length: {}\r\n", a.status, a.body.len());
        if !a.body.is_empty() {
            out.push_str("content-type: application/json\r\n");
        }
        for (k, v) in &a.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&a.body);
        if sock.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

// ---------- fixtures ----------

fn task_id(n: u8) -> TaskId {
    TaskId::from_bytes([n; 16])
}

fn token(n: u8) -> LeaseToken {
    LeaseToken::from_bytes([n; 16])
}

fn leased(n: u8, task_type: &str, input: &[(&str, &str)]) -> LeasedTask {
    LeasedTask {
        task_id: task_id(n),
        run_id: RunId::from_bytes([0; 16]),
        workflow: "wf".into(),
        step: format!("step{n}"),
        task_type: task_type.into(),
        attempt: 1,
        lease_token: token(n),
        lease_expires_at: Timestamp::from_micros(0),
        heartbeat_interval_ms: 100,
        timeout_ms: None,
        command: None,
        input: input.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        details: None,
    }
}

fn acks(req: &Req, f: impl Fn(TaskId) -> (AckStatus, bool)) -> Answer {
    let hb: HeartbeatRequest = serde_json::from_slice(&req.body).unwrap();
    let items = hb
        .items
        .iter()
        .map(|i| {
            let (status, cancel_requested) = f(i.task_id);
            HeartbeatAck { task_id: i.task_id, status, lease_expires_at: None, cancel_requested }
        })
        .collect();
    answer(200, serde_json::to_value(HeartbeatResponse { items }).unwrap())
}

const BATCH: &str = "/api/v1/workers/complete";

/// Every completion sent, batched or single, in order, as (task, request).
fn completes(log: &Mutex<Vec<Req>>) -> Vec<(TaskId, CompleteRequest)> {
    log.lock().unwrap().iter().flat_map(completions_in).collect()
}

fn completions_in(r: &Req) -> Vec<(TaskId, CompleteRequest)> {
    if r.path() == BATCH {
        let batch: CompleteBatchRequest = serde_json::from_slice(&r.body).unwrap();
        batch.items.into_iter().map(CompleteItem::into_request).collect()
    } else if let Some(task) =
        r.path().strip_prefix("/api/v1/tasks/").and_then(|p| p.strip_suffix("/complete"))
    {
        vec![(task.parse().unwrap(), serde_json::from_slice(&r.body).unwrap())]
    } else {
        vec![]
    }
}

/// Answers a batch completion item by item with `f`: a status, or an error code.
fn complete_acks(req: &Req, f: impl Fn(TaskId) -> Result<TaskStatus, &'static str>) -> Answer {
    let batch: CompleteBatchRequest = serde_json::from_slice(&req.body).unwrap();
    let items = batch
        .items
        .iter()
        .map(|i| match f(i.task_id) {
            Ok(status) => CompleteAck { task_id: i.task_id, status: Some(status), error: None },
            Err(code) => CompleteAck {
                task_id: i.task_id,
                status: None,
                error: Some(ItemError { code: code.into(), message: format!("{code} says the script") }),
            },
        })
        .collect();
    answer(200, serde_json::to_value(CompleteBatchResponse { items }).unwrap())
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------- the client ----------

#[tokio::test]
async fn worker_protocol_requests_have_the_documented_shapes() {
    let (base, log) = serve(|r| match r.path() {
        "/api/v1/workers/lease" => answer(200, json!({ "tasks": [leased(1, "resize", &[("W", "640")])] })),
        "/api/v1/workers/heartbeat" => acks(r, |_| (AckStatus::Ok, true)),
        BATCH => {
            complete_acks(r, |t| if t == task_id(2) { Err("lease_stale") } else { Ok(TaskStatus::Failed) })
        }
        p if p.ends_with("/complete") => answer(200, json!({ "status": "COMPLETED" })),
        p if p.ends_with("/logs") => {
            Answer { status: 204, body: String::new(), headers: vec![], delay: Duration::ZERO }
        }
        _ => answer(404, json!({ "code": "not_found", "message": "no route" })),
    })
    .await;
    let client = Client::builder(&base).bearer_token("api-secret").build().unwrap();

    let req = LeaseRequest { worker_id: "w1".into(), queue: "images".into(), max_tasks: 4, wait_ms: 250 };
    let resp: LeaseResponse = client.lease(&req).await.unwrap();
    assert_eq!(resp.tasks.len(), 1);
    assert_eq!(resp.tasks[0].input.get("W").map(String::as_str), Some("640"));

    let hb = HeartbeatRequest {
        worker_id: "w1".into(),
        items: vec![HeartbeatItem {
            task_id: task_id(1),
            lease_token: token(1),
            progress_percent: Some(42.0),
            progress_message: Some("resizing".into()),
            details: Some(json!({ "done": 3 })),
        }],
    };
    let acked = client.heartbeat(&hb).await.unwrap();
    assert!(acked.items[0].cancel_requested);

    let done = CompleteRequest {
        lease_token: token(1),
        outcome: AttemptEnd::Succeeded,
        exit_code: None,
        outputs: BTreeMap::from([("OUT".into(), "x.png".into())]),
        error: None,
    };
    assert_eq!(client.complete(task_id(1), &done).await.unwrap().status, TaskStatus::Completed);
    client.append_log(task_id(1), token(1), LogStream::Stderr, b"line 1\nline 2\n".to_vec()).await.unwrap();
    let batch = CompleteBatchRequest {
        worker_id: "w1".into(),
        items: vec![
            CompleteItem::new(task_id(1), done.clone()),
            CompleteItem {
                task_id: task_id(2),
                lease_token: token(2),
                outcome: AttemptEnd::Failed,
                exit_code: Some(3),
                outputs: BTreeMap::new(),
                error: Some("boom".into()),
            },
        ],
    };
    let acked = client.complete_batch(&batch).await.unwrap();
    assert_eq!(acked.items[0].status, Some(TaskStatus::Failed));
    assert_eq!(acked.items[1].status, None);
    let stale = cairn_client::classify_item_error(acked.items[1].error.as_ref().unwrap());
    assert!(matches!(stale, ClientError::LeaseStale { .. }), "{stale:?}");

    let log = log.lock().unwrap();
    assert!(log.iter().all(|r| r.header("authorization") == Some("Bearer api-secret")));
    let (lease, beat, complete, logs, batched) = (&log[0], &log[1], &log[2], &log[3], &log[4]);
    assert_eq!((lease.method.as_str(), lease.path()), ("POST", "/api/v1/workers/lease"));
    assert_eq!(lease.json(), json!({ "worker_id": "w1", "queue": "images", "max_tasks": 4, "wait_ms": 250 }));
    assert_eq!(beat.path(), "/api/v1/workers/heartbeat");
    assert_eq!(
        beat.json(),
        json!({ "worker_id": "w1", "items": [{
            "task_id": task_id(1).to_string(), "lease_token": token(1).to_string(),
            "progress_percent": 42.0, "progress_message": "resizing", "details": { "done": 3 }
        }]})
    );
    assert_eq!(complete.path(), format!("/api/v1/tasks/{}/complete", task_id(1)));
    assert_eq!(
        complete.json(),
        json!({ "lease_token": token(1).to_string(), "outcome": "succeeded", "exit_code": null,
                "outputs": { "OUT": "x.png" }, "error": null })
    );
    assert_eq!(
        (logs.method.as_str(), logs.target.as_str()),
        ("POST", &*format!("/api/v1/tasks/{}/logs?stream=stderr", task_id(1)))
    );
    assert_eq!(logs.header("x-cairn-lease-token"), Some(&*token(1).to_string()));
    assert_eq!(logs.body, b"line 1\nline 2\n");
    assert_eq!((batched.method.as_str(), batched.path()), ("POST", BATCH));
    assert_eq!(batched.header("content-type"), Some("application/json"));
    assert_eq!(
        batched.json(),
        json!({ "worker_id": "w1", "items": [
            { "task_id": task_id(1).to_string(), "lease_token": token(1).to_string(), "outcome": "succeeded",
              "exit_code": null, "outputs": { "OUT": "x.png" }, "error": null },
            { "task_id": task_id(2).to_string(), "lease_token": token(2).to_string(), "outcome": "failed",
              "exit_code": 3, "outputs": {}, "error": "boom" },
        ]})
    );
}

#[tokio::test]
async fn run_and_task_routes() {
    let run = RunId::from_bytes([7; 16]);
    let (base, log) = serve(move |r| match (r.method.as_str(), r.path()) {
        ("POST", p) if p.ends_with("/runs") => answer(201, json!({ "run_id": run.to_string() })),
        ("GET", "/api/v1/runs") => {
            answer(200, json!({ "runs": [{ "id": run.to_string() }], "next_cursor": null }))
        }
        ("GET", "/api/v1/health") => answer(200, json!({ "status": "ok" })),
        ("POST", p) if p.ends_with("/cancel") => {
            Answer { status: 202, body: String::new(), headers: vec![], delay: Duration::ZERO }
        }
        ("GET", _) => answer(200, json!({ "id": "x" })),
        _ => answer(405, json!({ "code": "method_not_allowed", "message": "no" })),
    })
    .await;
    let client = Client::new(&format!("{base}/")).unwrap();
    let params = BTreeMap::from([("NAME".to_owned(), "Ada".to_owned())]);
    assert_eq!(client.trigger_run("nightly etl", &params).await.unwrap(), run);
    let page = client
        .list_runs(&RunQuery {
            statuses: vec!["FAILED".into(), "CANCELED".into()],
            workflows: vec!["etl".into()],
            limit: Some(20),
            cursor: Some("01ABC".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.runs.len(), 1);
    assert_eq!(page.next_cursor, None);
    client.list_runs(&RunQuery::default()).await.unwrap();
    client.get_run(run).await.unwrap();
    assert_eq!(client.cancel_run(run).await.unwrap(), Value::Null, "an empty answer reads as null");
    client.get_task(task_id(3)).await.unwrap();
    assert_eq!(client.health().await.unwrap()["status"], "ok");

    let log = log.lock().unwrap();
    let targets: Vec<_> = log.iter().map(|r| format!("{} {}", r.method, r.target)).collect();
    assert_eq!(
        targets,
        [
            "POST /api/v1/workflows/nightly%20etl/runs".to_owned(),
            "GET /api/v1/runs?status=FAILED%2CCANCELED&workflow=etl&limit=20&cursor=01ABC".to_owned(),
            "GET /api/v1/runs".to_owned(),
            format!("GET /api/v1/runs/{run}"),
            format!("POST /api/v1/runs/{run}/cancel"),
            format!("GET /api/v1/tasks/{}", task_id(3)),
            "GET /api/v1/health".to_owned(),
        ]
    );
    assert_eq!(log[0].json(), json!({ "params": { "NAME": "Ada" } }));
}

#[tokio::test]
async fn error_answers_are_classified() {
    let (base, _log) = serve(|r| match r.path() {
        "/api/v1/tasks/01AAAAAAAAAAAAAAAAAAAAAAAA/complete" => {
            answer(409, json!({ "code": "lease_stale", "message": "stale" }))
        }
        "/api/v1/workers/lease" => {
            answer(400, json!({ "code": "invalid", "message": "bad queue", "field": "queue" }))
        }
        "/api/v1/workers/heartbeat" => Answer {
            status: 503,
            body: json!({ "code": "unavailable", "message": "starting" }).to_string(),
            headers: vec![("retry-after", "2".into())],
            delay: Duration::ZERO,
        },
        "/api/v1/health" => {
            Answer { status: 200, body: "not json".into(), headers: vec![], delay: Duration::ZERO }
        }
        _ => answer(404, json!({ "code": "run_not_found", "message": "no such run" })),
    })
    .await;
    let client = Client::new(&base).unwrap();
    let done = CompleteRequest {
        lease_token: token(1),
        outcome: AttemptEnd::Failed,
        exit_code: None,
        outputs: BTreeMap::new(),
        error: Some("x".into()),
    };
    let stale_task: TaskId = "01AAAAAAAAAAAAAAAAAAAAAAAA".parse().unwrap();
    let e = client.complete(stale_task, &done).await.unwrap_err();
    assert!(matches!(e, ClientError::LeaseStale { .. }), "{e:?}");

    let req = LeaseRequest { worker_id: "w".into(), queue: "".into(), max_tasks: 1, wait_ms: 0 };
    let e = client.lease(&req).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Rejected { status: 400, ref field, .. } if field.as_deref() == Some("queue"))
    );

    let e = client.heartbeat(&HeartbeatRequest { worker_id: "w".into(), items: vec![] }).await.unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));

    let e = client.get_run(RunId::from_bytes([1; 16])).await.unwrap_err();
    assert!(matches!(e, ClientError::NotFound { ref code, .. } if code == "run_not_found"));

    let e = client.health().await.unwrap_err();
    assert!(matches!(e, ClientError::Decode { status: 200, .. }), "{e:?}");
    assert!(!e.is_retryable() && !e.certainly_not_applied());
}

#[tokio::test]
async fn a_refused_connection_was_certainly_not_applied() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::new(&format!("http://{addr}")).unwrap();
    let e = client.health().await.unwrap_err();
    assert!(matches!(e, ClientError::Transient { kind: TransientKind::Connect, .. }), "{e:?}");
    assert!(e.is_retryable() && e.certainly_not_applied());
}

#[tokio::test]
async fn a_timeout_after_sending_may_have_been_applied() {
    let (base, log) = serve(|_| Answer { delay: Duration::from_secs(5), ..answer(200, json!({})) }).await;
    let client = Client::builder(&base).request_timeout(Duration::from_millis(200)).build().unwrap();
    let e = client.health().await.unwrap_err();
    assert!(matches!(e, ClientError::Transient { kind: TransientKind::Timeout, .. }), "{e:?}");
    assert!(e.is_retryable() && !e.certainly_not_applied());
    assert_eq!(log.lock().unwrap().len(), 1, "the server did get it");
}

// ---------- the worker ----------

/// Leases `first_lease` once, then nothing; acks task 3 with a cancel
/// request and task 4 as stale; answers the first completion of `flaky`
/// with an item error `unavailable`, and every completion of task 9 with an
/// item error `lease_stale`.
fn worker_script(
    first_lease: Vec<LeasedTask>,
    flaky: Option<TaskId>,
) -> impl Fn(&Req) -> Answer + Send + Sync {
    let leased = Mutex::new(Some(first_lease));
    let complete_failures = Mutex::new(1);
    move |r| match r.path() {
        "/api/v1/workers/lease" => match leased.lock().unwrap().take() {
            Some(tasks) => answer(200, json!({ "tasks": tasks })),
            // The long poll: nothing more comes.
            None => Answer { delay: Duration::from_millis(100), ..answer(200, json!({ "tasks": [] })) },
        },
        "/api/v1/workers/heartbeat" => acks(r, |id| {
            if id == task_id(3) {
                (AckStatus::Ok, true)
            } else if id == task_id(4) {
                (AckStatus::LeaseStale, false)
            } else {
                (AckStatus::Ok, false)
            }
        }),
        BATCH => complete_acks(r, |t| {
            let mut failures = complete_failures.lock().unwrap();
            if *failures > 0 && flaky == Some(t) {
                *failures -= 1;
                return Err("unavailable");
            }
            if t == task_id(9) { Err("lease_stale") } else { Ok(TaskStatus::Completed) }
        }),
        _ => answer(404, json!({ "code": "not_found", "message": "no route" })),
    }
}

async fn wait_until_cancelled(ctx: TaskContext) -> cairn_client::TaskResult {
    ctx.cancelled().cancelled().await;
    Err("stopped".into())
}

#[tokio::test]
async fn worker_dispatches_heartbeats_and_completes() {
    let tasks = vec![
        leased(1, "count", &[("N", "3")]),
        leased(2, "nope", &[]),
        leased(3, "wait", &[]),  // the server asks to cancel it
        leased(4, "wait", &[]),  // its lease turns out stale
        leased(9, "count", &[]), // its completion turns out stale
    ];
    let (base, log) = serve(worker_script(tasks, Some(task_id(1)))).await;
    let client = Client::new(&base).unwrap();
    let worker = Worker::builder(client)
        .worker_id("w1")
        .queue("q")
        .concurrency(5)
        .lease_wait(Duration::from_millis(100))
        .completion_backoff(Backoff { initial: Duration::from_millis(10), ..Backoff::for_completion() })
        .handler("count", |ctx: TaskContext| async move {
            let n: u32 = ctx.param("N").unwrap_or("0").parse()?;
            for i in 1..=n {
                ctx.progress(100.0 * i as f32 / n as f32, format!("{i} of {n}"))?;
                ctx.checkpoint(json!({ "done": i }))?;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            Ok(Outputs::from([("COUNT".to_owned(), n.to_string())]))
        })
        .handler("wait", wait_until_cancelled)
        .build()
        .unwrap();
    let stats = worker.stats();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));

    wait_for("three completions", || {
        stats.snapshot().completed + stats.snapshot().failed + stats.snapshot().canceled == 3
    })
    .await;
    wait_for("the stale tasks to be dropped", || stats.snapshot().stale == 2).await;
    shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap();
    assert_eq!((end.leased, end.completed, end.failed, end.canceled, end.stale), (5, 1, 1, 1, 2));
    assert_eq!(end.completion_errors, 0);
    assert_eq!(end.running, 0);
    assert!(end.heartbeat_calls >= 1);

    let done = completes(&log);
    let by_task =
        |n: u8| done.iter().filter(|(t, _)| *t == task_id(n)).map(|(_, c)| c.clone()).collect::<Vec<_>>();
    let a = by_task(1);
    assert_eq!(a.len(), 2, "the first completion was answered `unavailable` and was retried");
    assert_eq!(a[1].outcome, AttemptEnd::Succeeded);
    assert_eq!(a[1].lease_token, token(1));
    assert_eq!(a[1].outputs.get("COUNT").map(String::as_str), Some("3"));
    let b = by_task(2);
    assert_eq!(b[0].outcome, AttemptEnd::Failed);
    assert!(b[0].error.as_deref().unwrap().contains(r#"no handler for task type "nope" on worker w1"#));
    let c = by_task(3);
    assert_eq!(c[0].outcome, AttemptEnd::Canceled);
    assert_eq!(c[0].error.as_deref(), Some("canceled on request; the handler said: stopped"));
    assert!(by_task(4).is_empty(), "a stale lease is never completed");
    assert_eq!(by_task(9).len(), 1, "a stale completion is never retried");
    assert!(
        log.lock().unwrap().iter().all(|r| !r.path().starts_with("/api/v1/tasks/")),
        "completions go through the batch route"
    );

    // The last progress and checkpoint went out before the completion.
    let log = log.lock().unwrap();
    let first_complete =
        log.iter().position(|r| completions_in(r).iter().any(|(t, _)| *t == task_id(1))).unwrap();
    let last_item = log[..first_complete]
        .iter()
        .filter(|r| r.path() == "/api/v1/workers/heartbeat")
        .flat_map(|r| serde_json::from_slice::<HeartbeatRequest>(&r.body).unwrap().items)
        .rfind(|i| i.task_id == task_id(1) && i.progress_percent.is_some())
        .expect("task 1's progress was heartbeaten");
    assert_eq!(last_item.progress_percent, Some(100.0));
    assert_eq!(last_item.progress_message.as_deref(), Some("3 of 3"));
    let last_details = log[..first_complete]
        .iter()
        .filter(|r| r.path() == "/api/v1/workers/heartbeat")
        .flat_map(|r| serde_json::from_slice::<HeartbeatRequest>(&r.body).unwrap().items)
        .filter_map(|i| (i.task_id == task_id(1)).then_some(i.details).flatten())
        .next_back();
    assert_eq!(last_details, Some(json!({ "done": 3 })));
    // One batch per beat, whatever the number of tasks.
    let batches_with_many = log
        .iter()
        .filter(|r| r.path() == "/api/v1/workers/heartbeat")
        .filter(|r| serde_json::from_slice::<HeartbeatRequest>(&r.body).unwrap().items.len() > 1)
        .count();
    assert!(batches_with_many >= 1);
}

#[tokio::test]
async fn shutdown_waits_out_the_grace_then_cancels() {
    let tasks = vec![leased(5, "wait", &[]), leased(6, "quick", &[])];
    let (base, log) = serve(worker_script(tasks, None)).await;
    let worker = Worker::builder(Client::new(&base).unwrap())
        .queue("q")
        .concurrency(2)
        .lease_wait(Duration::from_millis(100))
        .shutdown_grace(Duration::from_millis(300))
        .handler("wait", wait_until_cancelled)
        .handler("quick", |_ctx: TaskContext| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(Outputs::new())
        })
        .build()
        .unwrap();
    let stats = worker.stats();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for("both tasks to start", || stats.snapshot().leased == 2).await;
    shutdown.cancel();
    let started = tokio::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250), "the grace period was given");
    assert_eq!((end.completed, end.canceled), (1, 1), "the quick task finished within the grace");
    let c = completes(&log);
    let waited = c.iter().find(|(t, _)| *t == task_id(5)).unwrap();
    assert_eq!(waited.1.outcome, AttemptEnd::Canceled);
    assert!(waited.1.error.as_deref().unwrap().contains("shut down before the task finished"));
    let leases = log.lock().unwrap().iter().filter(|r| r.path() == "/api/v1/workers/lease").count();
    let leases_after = {
        tokio::time::sleep(Duration::from_millis(300)).await;
        log.lock().unwrap().iter().filter(|r| r.path() == "/api/v1/workers/lease").count()
    };
    assert_eq!(leases, leases_after, "no leasing after shutdown");
}

#[tokio::test]
async fn a_handler_that_ignores_cancel_is_dropped_after_the_cancel_grace() {
    let mut t = leased(7, "stubborn", &[]);
    t.timeout_ms = Some(100);
    let (base, log) = serve(worker_script(vec![t], None)).await;
    let worker = Worker::builder(Client::new(&base).unwrap())
        .queue("q")
        .lease_wait(Duration::from_millis(100))
        .cancel_grace(Duration::from_millis(100))
        .handler("stubborn", |_ctx: TaskContext| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Outputs::new())
        })
        .build()
        .unwrap();
    let stats = worker.stats();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for("the timed-out task to fail", || stats.snapshot().failed == 1).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap();
    let c = completes(&log);
    assert_eq!(c[0].1.outcome, AttemptEnd::Failed);
    assert_eq!(
        c[0].1.error.as_deref(),
        Some("timed out after 0.1s; the handler did not stop in time and was dropped")
    );
}

#[tokio::test]
async fn dropping_a_running_worker_stops_its_handlers() {
    struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (base, _log) = serve(worker_script(vec![leased(8, "forever", &[])], None)).await;
    let flag = dropped.clone();
    let worker = Worker::builder(Client::new(&base).unwrap())
        .queue("q")
        .lease_wait(Duration::from_millis(100))
        .handler("forever", move |_ctx: TaskContext| {
            let guard = SetOnDrop(flag.clone());
            async move {
                let _guard = guard;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(Outputs::new())
            }
        })
        .build()
        .unwrap();
    let stats = worker.stats();
    let run = tokio::spawn(worker.run(CancellationToken::new()));
    wait_for("the task to start", || stats.snapshot().leased == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    run.abort();
    wait_for("the handler to be dropped", || dropped.load(std::sync::atomic::Ordering::SeqCst)).await;
    wait_for("the lease to be let go", || stats.snapshot().running == 0).await;
}

/// Tasks that end together share one batch call; a transient failure of the
/// whole call resends it whole (completion is idempotent per token).
#[tokio::test]
async fn completions_of_tasks_ending_together_share_a_call_retried_whole() {
    let tasks: Vec<LeasedTask> = (10..16).map(|n| leased(n, "quick", &[])).collect();
    let leased_once = Mutex::new(Some(tasks));
    let batch_calls = Mutex::new(0);
    let (base, log) = serve(move |r| match r.path() {
        "/api/v1/workers/lease" => match leased_once.lock().unwrap().take() {
            Some(tasks) => answer(200, json!({ "tasks": tasks })),
            None => Answer { delay: Duration::from_millis(100), ..answer(200, json!({ "tasks": [] })) },
        },
        "/api/v1/workers/heartbeat" => acks(r, |_| (AckStatus::Ok, false)),
        BATCH => {
            let mut calls = batch_calls.lock().unwrap();
            *calls += 1;
            if *calls == 1 {
                return answer(502, json!({ "code": "bad_gateway", "message": "try again" }));
            }
            complete_acks(r, |_| Ok(TaskStatus::Completed))
        }
        _ => answer(404, json!({ "code": "not_found", "message": "no route" })),
    })
    .await;
    let start = tokio::sync::Barrier::new(6);
    let start = Arc::new(start);
    let worker = Worker::builder(Client::new(&base).unwrap())
        .queue("q")
        .concurrency(6)
        .lease_wait(Duration::from_millis(100))
        .completion_batch(500, Duration::from_millis(200))
        .completion_backoff(Backoff { initial: Duration::from_millis(10), ..Backoff::for_completion() })
        .handler("quick", move |_ctx: TaskContext| {
            let start = start.clone();
            async move {
                start.wait().await; // all six end together
                Ok(Outputs::new())
            }
        })
        .build()
        .unwrap();
    let stats = worker.stats();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for("six completions", || stats.snapshot().completed == 6).await;
    shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap();
    assert_eq!((end.completed, end.completion_errors, end.completion_calls), (6, 0, 2));
    let log = log.lock().unwrap();
    let batches: Vec<Vec<TaskId>> = log
        .iter()
        .filter(|r| r.path() == BATCH)
        .map(|r| completions_in(r).into_iter().map(|(t, _)| t).collect())
        .collect();
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert_eq!(batches[0].len(), 6, "one call for the six: {batches:?}");
    assert_eq!(batches[0], batches[1], "the failed call was sent again, whole");
}

/// A server without the batch route (an older one) gets one call per task.
#[tokio::test]
async fn a_server_without_batch_completion_gets_single_calls() {
    let tasks: Vec<LeasedTask> = (20..23).map(|n| leased(n, "quick", &[])).collect();
    let leased_once = Mutex::new(Some(tasks));
    let (base, log) = serve(move |r| match r.path() {
        "/api/v1/workers/lease" => match leased_once.lock().unwrap().take() {
            Some(tasks) => answer(200, json!({ "tasks": tasks })),
            None => Answer { delay: Duration::from_millis(100), ..answer(200, json!({ "tasks": [] })) },
        },
        "/api/v1/workers/heartbeat" => acks(r, |_| (AckStatus::Ok, false)),
        p if p.starts_with("/api/v1/tasks/") && p.ends_with("/complete") => {
            answer(200, json!({ "status": "COMPLETED" }))
        }
        _ => answer(404, json!({ "code": "not_found", "message": "no route" })),
    })
    .await;
    let worker = Worker::builder(Client::new(&base).unwrap())
        .queue("q")
        .concurrency(3)
        .lease_wait(Duration::from_millis(100))
        .handler("quick", |_ctx: TaskContext| async { Ok(Outputs::new()) })
        .build()
        .unwrap();
    let stats = worker.stats();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    wait_for("three completions", || stats.snapshot().completed == 3).await;
    shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(10), run).await.unwrap().unwrap().unwrap();
    assert_eq!((end.completed, end.completion_errors), (3, 0));
    let log = log.lock().unwrap();
    let mut singles: Vec<TaskId> = log
        .iter()
        .filter(|r| r.path().starts_with("/api/v1/tasks/"))
        .flat_map(completions_in)
        .map(|(t, _)| t)
        .collect();
    singles.sort();
    assert_eq!(singles, [task_id(20), task_id(21), task_id(22)], "each task completed by its own call");
    // Batches already on their way when the first 404 came back; none after it.
    let batch_calls = log.iter().filter(|r| r.path() == BATCH).count();
    assert!((1..=3).contains(&batch_calls), "{batch_calls}");
    let first_single = log.iter().position(|r| r.path().starts_with("/api/v1/tasks/")).unwrap();
    let last_batch = log.iter().rposition(|r| r.path() == BATCH).unwrap();
    assert!(last_batch < first_single || batch_calls > 1, "no batch call once the route is known missing");
}

/// The phase statistics and expected durations calls send their window,
/// filters and sizes as query parameters, and the workflow as one path
/// segment.
#[tokio::test]
async fn analytics_calls_send_their_queries() {
    let (base, log) = serve(|_| answer(200, json!({ "steps": [] }))).await;
    let client = Client::new(&base).unwrap();
    let q = cairn_client::PhaseStatsQuery {
        from: Some("2026-11-20T00:00:00Z".into()),
        workflows: vec!["etl".into(), "report".into()],
        slowest: Some(5),
        sample_cap: Some(100),
        ..Default::default()
    };
    assert_eq!(client.phase_stats(&q).await.unwrap(), json!({ "steps": [] }));
    client.phase_stats(&Default::default()).await.unwrap();
    client.expected_durations("nightly etl").await.unwrap();
    let targets: Vec<_> = log.lock().unwrap().iter().map(|r| format!("{} {}", r.method, r.target)).collect();
    assert_eq!(
        targets,
        [
            "GET /api/v1/stats/phases?from=2026-11-20T00%3A00%3A00Z&workflow=etl%2Creport&slowest=5&sample_cap=100",
            "GET /api/v1/stats/phases",
            "GET /api/v1/workflows/nightly%20etl/expected-durations",
        ]
    );
}
