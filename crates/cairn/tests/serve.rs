//! End to end with real processes on loopback: `cairn serve`, `cairn worker`,
//! an SDK worker inside the test, and the test itself speaking the worker
//! protocol where it must play a worker that dies or comes back.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_client::protocol::{AttemptEnd, CompleteRequest, HeartbeatItem, HeartbeatRequest, LeaseRequest};
use cairn_client::{CancellationToken, Client, ClientError, Outputs, RunId, TaskContext, Worker};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// A `cairn serve` process; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(data: &Path, workflows: &Path, heartbeat_timeout: u64) -> Server {
        Server::start_with(data, workflows, heartbeat_timeout, &[])
    }

    fn start_with(data: &Path, workflows: &Path, heartbeat_timeout: u64, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--grace", "0"])
            .args(extra)
            .arg("--data-dir")
            .arg(data)
            .arg("--workflows")
            .arg(workflows)
            .args(["--heartbeat-timeout", &heartbeat_timeout.to_string()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("the server exited before listening").unwrap();
            if let Some(rest) = line.strip_prefix("cairn serving ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, url }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `cairn worker` process; killed when dropped.
struct WorkerProc(Child);

impl WorkerProc {
    fn start(url: &str, queue: &str, id: &str, work: &Path) -> WorkerProc {
        let child = Command::new(BIN)
            .args(["worker", "--server", url, "--queue", queue, "--worker-id", id, "--concurrency", "4"])
            .arg("--work-dir")
            .arg(work)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        WorkerProc(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(workflows: &[(&str, &str)]) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("wf")).unwrap();
        for (name, yaml) in workflows {
            std::fs::write(dir.path().join("wf").join(format!("{name}.yaml")), yaml).unwrap();
        }
        Env { dir }
    }

    fn server(&self, heartbeat_timeout: u64) -> Server {
        Server::start(&self.dir.path().join("data"), &self.dir.path().join("wf"), heartbeat_timeout)
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }
}

async fn trigger(client: &Client, workflow: &str) -> RunId {
    client.trigger_run(workflow, &BTreeMap::new()).await.unwrap()
}

/// Polls the API until the run is finished (a state, not a fixed wait).
async fn finished(client: &Client, run: RunId, within: Duration) -> Value {
    let start = Instant::now();
    loop {
        let r = client.get_run(run).await.unwrap();
        let status = r["status"].as_str().unwrap_or_default().to_owned();
        if !matches!(status.as_str(), "QUEUED" | "RUNNING") {
            return r;
        }
        assert!(start.elapsed() < within, "run {run} still {status} after {within:?}: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn beat(task: &cairn_client::protocol::LeasedTask, pct: Option<f32>) -> HeartbeatRequest {
    HeartbeatRequest {
        worker_id: "doomed".into(),
        items: vec![HeartbeatItem {
            task_id: task.task_id,
            lease_token: task.lease_token,
            progress_percent: pct,
            progress_message: None,
            details: None,
        }],
    }
}

/// Polls the API until the run's `step` is running (a state, not a fixed wait).
async fn step_running(client: &Client, run: RunId, step: &str) {
    let start = Instant::now();
    loop {
        let r = client.get_run(run).await.unwrap();
        if task(&r, step)["status"] == "RUNNING" {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{step} never started: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn task<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name}: {run}"))
}

const MIXED: &str = r#"
type: graph
steps:
  - name: local
    command: echo local-step
    output: L
  - name: remote
    command: sh -c 'echo "::progress 50 half"; echo "remote got ${L}"'
    queue: edge
    output: R
    depends: [local]
  - name: after
    command: echo "${R}"
    output: A
    depends: [remote]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_remote_steps_complete_with_a_real_worker() {
    let env = Env::new(&[("mixed", MIXED)]);
    let server = env.server(30);
    let _worker = WorkerProc::start(&server.url, "edge", "w1", &env.work());
    let client = Client::new(&server.url).unwrap();
    let run = trigger(&client, "mixed").await;
    let r = finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(r["status"], "COMPLETED", "{r}");
    let remote = task(&r, "remote");
    assert_eq!(remote["outputs"]["R"], "remote got local-step");
    assert_eq!(task(&r, "after")["outputs"]["A"], "remote got local-step");
    let actors: Vec<&str> =
        remote["transitions"].as_array().unwrap().iter().map(|t| t["actor"].as_str().unwrap()).collect();
    assert!(actors.contains(&"worker:w1"), "{actors:?}");
    assert_eq!(remote["progress"]["percent"], 50.0);
    // The worker sent the step's output to the server, where the API serves it.
    let log = http_get(format!("{}/api/v1/runs/{run}/logs/remote", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(log.contains("remote got local-step"), "{log}");
}

const REMOTE_RETRY: &str = r#"
steps:
  - name: job
    command: echo done
    queue: edge
    retry_policy:
      limit: 2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_task_is_reaped_retried_elsewhere_and_its_late_calls_refused() {
    let env = Env::new(&[("retry", REMOTE_RETRY)]);
    let timeout = 1;
    let server = env.server(timeout);
    let client = Client::new(&server.url).unwrap();
    let run = trigger(&client, "retry").await;
    // The test plays the worker that dies: it leases and then goes silent.
    let req = LeaseRequest { worker_id: "doomed".into(), queue: "edge".into(), max_tasks: 1, wait_ms: 5_000 };
    let held = client.lease(&req).await.unwrap().tasks.remove(0);
    // It starts (its first heartbeat), then dies.
    client.heartbeat(&beat(&held, None)).await.unwrap();
    let _healthy = WorkerProc::start(&server.url, "edge", "healthy", &env.work());
    let r = finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(r["status"], "COMPLETED", "{r}");
    let job = task(&r, "job");
    let log = job["transitions"].as_array().unwrap();
    let reaped = log.iter().find(|t| t["actor"] == "reaper").expect("a reaper transition");
    assert!(reaped["reason"].as_str().unwrap().contains("heartbeat lost (worker doomed"), "{reaped}");
    assert_eq!(reaped["to"], "PENDING");
    // Reaped within the heartbeat timeout + 1 s of the lease's start.
    let started = log.iter().find(|t| t["to"] == "RUNNING").unwrap()["at"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap();
    let at = reaped["at"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    let took = at.duration_since(started).as_secs_f64();
    assert!(took <= (timeout + 1) as f64, "reaped {took}s after the lease");
    assert!(job["attempt_records"].as_array().unwrap().iter().any(|a| a["worker"] == "healthy"));

    // The dead worker comes back: refused, and nothing changes.
    let before = client.get_run(run).await.unwrap();
    let ack = client.heartbeat(&beat(&held, Some(99.0))).await.unwrap();
    assert_eq!(serde_json::to_value(ack.items[0].status).unwrap(), "lease_stale");
    let done = CompleteRequest {
        lease_token: held.lease_token,
        outcome: AttemptEnd::Succeeded,
        exit_code: Some(0),
        outputs: BTreeMap::new(),
        error: None,
    };
    let err = client.complete(held.task_id, &done).await.unwrap_err();
    assert!(matches!(err, ClientError::LeaseStale { .. }), "{err:?}");
    assert_eq!(client.get_run(run).await.unwrap()["tasks"], before["tasks"]);
}

const REMOTE_SLEEP: &str = r#"
type: graph
steps:
  - name: long
    command: sleep 300
    queue: edge
  - name: next
    command: "true"
    depends: [long]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_from_the_api_stops_a_remote_step() {
    let env = Env::new(&[("sleepy", REMOTE_SLEEP)]);
    // A worker hears of a cancel in its next heartbeat answer: a short
    // timeout (heartbeats every second) keeps the test quick.
    let server = env.server(3);
    let _worker = WorkerProc::start(&server.url, "edge", "w1", &env.work());
    let client = Client::new(&server.url).unwrap();
    let run = trigger(&client, "sleepy").await;
    step_running(&client, run, "long").await;
    client.cancel_run(run).await.unwrap();
    let r = finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(r["status"], "CANCELED", "{r}");
    assert_eq!(task(&r, "long")["status"], "CANCELED");
    assert_eq!(task(&r, "next")["status"], "ABANDONED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_with_sigkill_resumes_its_runs_after_restart() {
    let env = Env::new(&[("mixed", MIXED)]);
    let r = run_through_a_server_kill(&env, &[]).await;
    for t in r["tasks"].as_array().unwrap() {
        assert_eq!(t["status"], "COMPLETED", "{t}");
    }
}

/// Runs MIXED while the test holds its remote step as the worker, kills the
/// server with SIGKILL, restarts it (`extra`: more `cairn serve` flags), and
/// completes the step with the new server; returns the finished run.
async fn run_through_a_server_kill(env: &Env, extra: &[&str]) -> Value {
    let (data, wf) = (env.dir.path().join("data"), env.dir.path().join("wf"));
    let mut server = Server::start_with(&data, &wf, 30, extra);
    let client = Client::new(&server.url).unwrap();
    let run = trigger(&client, "mixed").await;
    let req =
        LeaseRequest { worker_id: "survivor".into(), queue: "edge".into(), max_tasks: 1, wait_ms: 10_000 };
    let held = client.lease(&req).await.unwrap().tasks.remove(0);
    server.kill();

    let server = Server::start_with(&data, &wf, 30, extra);
    let client = Client::new(&server.url).unwrap();
    let ack = client.heartbeat(&beat(&held, Some(80.0))).await.unwrap();
    assert_eq!(serde_json::to_value(ack.items[0].status).unwrap(), "ok", "the lease survived the restart");
    let done = CompleteRequest {
        lease_token: held.lease_token,
        outcome: AttemptEnd::Succeeded,
        exit_code: Some(0),
        outputs: BTreeMap::from([("R".to_owned(), "from survivor".to_owned())]),
        error: None,
    };
    client.complete(held.task_id, &done).await.unwrap();
    let r = finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(r["status"], "COMPLETED", "{r}");
    assert_eq!(task(&r, "after")["outputs"]["A"], "from survivor");
    r
}

const SDK: &str = r#"
type: graph
params:
  - N: "1"
steps:
  - name: double
    queue: sdk
    task_type: double
    env:
      - LABEL: "n=${N}"
  - name: after
    command: echo "doubled to ${DOUBLED}"
    output: A
    depends: [double]
"#;

/// Doubles the param `N`, reporting progress on the way.
async fn double(ctx: TaskContext) -> cairn_client::TaskResult {
    if let Some(c) = ctx.command() {
        return Err(format!("a task_type step carries no command, got {c:?}").into());
    }
    let n: u64 = ctx.param("N").ok_or("N is missing")?.parse()?;
    let label = ctx.param("LABEL").ok_or("the step's env is missing")?.to_owned();
    ctx.progress(50.0, format!("{label}: half way"))?;
    Ok(Outputs::from([("DOUBLED".to_owned(), (2 * n).to_string())]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_type_step_runs_on_an_sdk_workers_handler() {
    let env = Env::new(&[("sdk", SDK)]);
    let server = env.server(30);
    let client = Client::new(&server.url).unwrap();
    let worker = Worker::builder(client.clone())
        .worker_id("sdk-1")
        .queue("sdk")
        // A short long-poll lets the worker stop promptly at the end of the test.
        .lease_wait(std::time::Duration::from_millis(200))
        .handler("double", double)
        .build()
        .unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));

    let params = BTreeMap::from([("N".to_owned(), "21".to_owned())]);
    let run = client.trigger_run("sdk", &params).await.unwrap();
    let r = finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(r["status"], "COMPLETED", "{r}");
    let step = task(&r, "double");
    assert_eq!(step["outputs"]["DOUBLED"], "42", "{step}");
    assert_eq!(step["progress"]["percent"], 50.0, "{step}");
    assert_eq!(step["progress"]["message"], "n=21: half way");
    let actors: Vec<&str> =
        step["transitions"].as_array().unwrap().iter().map(|t| t["actor"].as_str().unwrap()).collect();
    assert!(actors.contains(&"worker:sdk-1"), "{actors:?}");
    // The handler's outputs are variables for the steps after it.
    assert_eq!(task(&r, "after")["outputs"]["A"], "doubled to 42");

    stop.cancel();
    let stats = running.await.unwrap().unwrap();
    assert_eq!((stats.completed, stats.failed), (1, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_worker_fails_a_task_type_step_and_says_to_use_an_sdk_worker() {
    let env = Env::new(&[("sdk", SDK)]);
    let server = env.server(30);
    let _worker = WorkerProc::start(&server.url, "sdk", "shell-only", &env.work());
    let client = Client::new(&server.url).unwrap();
    let run = trigger(&client, "sdk").await;
    let r = finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(r["status"], "FAILED", "{r}");
    let step = task(&r, "double");
    let last = step["transitions"].as_array().unwrap().last().unwrap();
    assert_eq!(last["to"], "FAILED");
    let reason = last["reason"].as_str().unwrap();
    assert!(reason.contains(r#"task type "double""#) && reason.contains("SDK worker"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_workers_complete_ten_thousand_tasks_exactly_once() {
    let n = 10_000;
    let mut yaml = String::from("type: graph\nsteps:\n");
    for i in 0..n {
        yaml.push_str(&format!("  - name: t{i}\n    task_type: count\n    queue: many\n"));
    }
    let env = Env::new(&[("many", &yaml)]);
    let server = env.server(30);
    let client = Client::new(&server.url).unwrap();
    let seen = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    for w in 0..8 {
        let seen = seen.clone();
        let worker = Worker::builder(client.clone())
            .worker_id(format!("w{w}"))
            .queue("many")
            .concurrency(200)
            .lease_wait(Duration::from_millis(200))
            .handler("count", move |ctx: TaskContext| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(ctx.task_id());
                    Ok(Outputs::new())
                }
            })
            .build()
            .unwrap();
        workers.push(tokio::spawn(worker.run(stop.clone())));
    }
    let run = trigger(&client, "many").await;
    let r = finished(&client, run, Duration::from_secs(300)).await;
    assert_eq!(r["status"], "COMPLETED");
    stop.cancel();
    for w in workers {
        w.await.unwrap().unwrap();
    }
    let seen = seen.lock().unwrap();
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (n, n), "every task handled exactly once");
    for t in r["tasks"].as_array().unwrap() {
        assert_eq!((t["status"].as_str(), t["attempts"].as_u64()), (Some("COMPLETED"), Some(1)), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_killed_with_sigkill_has_its_step_reaped_and_run_by_another() {
    let started = tempfile::tempdir().unwrap();
    let first = started.path().join("first-attempt");
    // The first attempt hangs until its worker dies; the second finishes.
    let yaml = format!(
        "steps:\n  - name: job\n    command: sh -c 'if [ -f {m} ]; then echo second; exit 0; fi; touch {m}; exec sleep 300'\n    queue: edge\n    output: OUT\n    retry_policy:\n      limit: 1\n",
        m = first.display()
    );
    let env = Env::new(&[("victim", &yaml)]);
    let timeout = 1;
    let server = env.server(timeout);
    let client = Client::new(&server.url).unwrap();
    let mut doomed = WorkerProc::start(&server.url, "edge", "doomed", &env.work());
    let run = trigger(&client, "victim").await;
    let start = Instant::now();
    // Until the worker has heartbeat once, the server cannot tell it started
    // (a silent lease ends as "never started"): wait for that sign of life.
    loop {
        let r = client.get_run(run).await.unwrap();
        let lease = &task(&r, "job")["lease"];
        let beat = lease["last_heartbeat_at"].as_str().unwrap_or_default().to_owned();
        let started = task(&r, "job")["transitions"].as_array().unwrap().last().unwrap()["at"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if first.exists() && !beat.is_empty() && beat != started {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the first attempt never reported: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill(); // SIGKILL: the worker cannot say anything any more.
    let killed = jiff::Timestamp::now();
    let _healthy = WorkerProc::start(&server.url, "edge", "healthy", &env.work());
    let r = finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(r["status"], "COMPLETED", "{r}");
    let job = task(&r, "job");
    assert_eq!(job["outputs"]["OUT"], "second");
    let log = job["transitions"].as_array().unwrap();
    let reaped = log.iter().find(|t| t["actor"] == "reaper").expect("reaped");
    assert!(reaped["reason"].as_str().unwrap().contains("heartbeat lost (worker doomed"), "{reaped}");
    let at = reaped["at"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    let after_kill = at.duration_since(killed).as_secs_f64();
    assert!(after_kill <= (timeout + 1) as f64, "reaped {after_kill}s after the kill");
    let workers: Vec<&str> =
        job["attempt_records"].as_array().unwrap().iter().map(|a| a["worker"].as_str().unwrap()).collect();
    assert_eq!(workers, ["doomed", "healthy"]);
}

/// A fresh PostgreSQL database for one test, dropped at the end. The server is
/// at `CAIRN_TEST_POSTGRES` (default: the local one); a test fails if it is not
/// there rather than skip.
struct PgDatabase {
    admin: String,
    name: String,
}

impl PgDatabase {
    fn create() -> PgDatabase {
        let admin = std::env::var("CAIRN_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!(
            "cairn_e2e_{}",
            RunId::new(cairn_core::Timestamp::from_micros(0)).to_string().to_lowercase()
        );
        let out = Command::new("psql")
            .arg(&admin)
            .args(["-c", &format!("CREATE DATABASE {name}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "PostgreSQL is needed at {admin}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PgDatabase { admin, name }
    }

    fn url(&self) -> String {
        match self.admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{}", self.name),
            None => panic!("CAIRN_TEST_POSTGRES has no database part: {}", self.admin),
        }
    }
}

impl PgDatabase {
    /// One row of `sql`'s answer, its columns separated by `|`.
    fn query(&self, sql: &str) -> String {
        let out = Command::new("psql").arg(self.url()).args(["-At", "-c", sql]).output().unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin)
            .args(["-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_a_run_completes_and_survives_a_server_kill() {
    let db = PgDatabase::create();
    let env = Env::new(&[("mixed", MIXED)]);
    run_through_a_server_kill(&env, &["--database", &db.url()]).await;
}

/// Twelve remote steps at once, on the queue every worker serves; a step
/// whose worker is lost with its server runs again.
const FAN: &str = r#"
type: graph
steps:
  - { name: s01, command: "sleep 0.2", queue: edge, retry_policy: { limit: 2 } }
  - { name: s02, command: "sleep 0.2", queue: edge, retry_policy: { limit: 2 } }
  - { name: s03, command: "sleep 0.2", queue: edge, retry_policy: { limit: 2 } }
  - { name: s04, command: "sleep 0.2", queue: edge, retry_policy: { limit: 2 } }
  - { name: s05, command: "sleep 0.2", queue: edge, retry_policy: { limit: 2 } }
  - { name: s06, command: "sleep 0.2", queue: edge, retry_policy: { limit: 2 } }
  - { name: s07, command: "sleep 0.2", queue: edge, retry_policy: { limit: 2 } }
  - { name: s08, command: "sleep 0.2", queue: edge, retry_policy: { limit: 2 } }
  - { name: s09, command: "sleep 0.2", queue: edge, retry_policy: { limit: 2 } }
  - { name: s10, command: "sleep 0.2", queue: edge, retry_policy: { limit: 2 } }
  - { name: s11, command: "sleep 0.2", queue: edge, retry_policy: { limit: 2 } }
  - { name: s12, command: "sleep 0.2", queue: edge, retry_policy: { limit: 2 } }
  - { name: last, command: "true", depends: [s01, s02, s03, s04, s05, s06, s07, s08, s09, s10, s11, s12] }
"#;

/// Every two seconds.
const TICK: &str = "schedule: \"*/2 * * * * *\"\nsteps:\n  - name: tock\n    command: \"true\"\n";

/// Whether the server at `url` says it leads (its `cairn_leader` gauge).
/// A plain GET, as curl would send it. reqwest is built without a crypto
/// provider of its own: the process's is installed first, as
/// `cairn_client::Client` does, whichever test of this file runs first.
async fn http_get(url: String) -> Result<cairn_client::reqwest::Response, cairn_client::reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    cairn_client::reqwest::get(url).await
}

async fn leads(url: &str) -> bool {
    let Ok(res) = http_get(format!("{url}/metrics")).await else { return false };
    let text = res.text().await.unwrap_or_default();
    text.lines().any(|l| l.trim() == "cairn_leader 1")
}

/// Polls until exactly one of `urls` leads; returns its index.
async fn the_leader(urls: &[&str], within: Duration) -> usize {
    let start = Instant::now();
    loop {
        let mut leading = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            if leads(url).await {
                leading.push(i);
            }
        }
        if let [one] = leading[..] {
            return one;
        }
        assert!(start.elapsed() < within, "no single leader after {within:?}: {leading:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each task of a finished run ran once: one attempt, one start, one end.
fn ran_once(run: &Value) {
    for t in run["tasks"].as_array().unwrap() {
        let log = t["transitions"].as_array().unwrap();
        let starts = log.iter().filter(|x| x["to"] == "RUNNING").count();
        let ends = log.iter().filter(|x| x["to"] == "COMPLETED").count();
        assert_eq!((t["status"].as_str(), starts, ends), (Some("COMPLETED"), 1, 1), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_share_the_work_and_survive_the_leaders_death() {
    let db = PgDatabase::create();
    let env = Env::new(&[("fan", FAN), ("tick", TICK), ("sleepy", REMOTE_SLEEP)]);
    let wf = env.dir.path().join("wf");
    let url = db.url();
    let pg = ["--database", url.as_str()];
    let mut a = Server::start_with(&env.dir.path().join("a"), &wf, 3, &pg);
    let b = Server::start_with(&env.dir.path().join("b"), &wf, 3, &pg);
    let urls = [a.url.as_str(), b.url.as_str()];
    assert_eq!(the_leader(&urls, Duration::from_secs(10)).await, 0, "the first server to start leads");
    // Workers on both servers: each claims whatever is offered, whichever
    // server drives the run.
    let _wa = WorkerProc::start(&a.url, "edge", "wa", &env.work());
    let _wb1 = WorkerProc::start(&b.url, "edge", "wb1", &env.work());
    let _wb2 = WorkerProc::start(&b.url, "edge", "wb2", &env.work());
    let (ca, cb) = (Client::new(&a.url).unwrap(), Client::new(&b.url).unwrap());
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(trigger(&ca, "fan").await);
        runs.push(trigger(&cb, "fan").await);
    }
    let mut workers = std::collections::BTreeSet::new();
    for &run in &runs {
        let r = finished(&cb, run, Duration::from_secs(60)).await;
        assert_eq!(r["status"], "COMPLETED", "{r}");
        ran_once(&r);
        for t in r["tasks"].as_array().unwrap() {
            if let Some(w) = t["attempt_records"][0]["worker"].as_str() {
                workers.insert(w.to_owned());
            }
        }
    }
    assert!(workers.contains("wa") && (workers.contains("wb1") || workers.contains("wb2")), "{workers:?}");

    // A cancel asked of the server that does not drive the run.
    let sleepy = trigger(&ca, "sleepy").await;
    let start = Instant::now();
    while task(&cb.get_run(sleepy).await.unwrap(), "long")["status"] != "RUNNING" {
        assert!(start.elapsed() < Duration::from_secs(20), "the remote step never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cb.cancel_run(sleepy).await.unwrap();
    let r = finished(&cb, sleepy, Duration::from_secs(30)).await;
    assert_eq!(r["status"], "CANCELED", "{r}");
    assert_eq!(task(&r, "long")["status"], "CANCELED");
    // The command line reads the shared database as the servers wrote it.
    let cli = |args: &[&str]| {
        let out =
            Command::new(BIN).args(args).args(pg).arg("--data-dir").arg(env.dir.path().join("cli")).output();
        let out = out.unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let canceled = cli(&["history", "--status", "CANCELED", "--json"]);
    let listed: Value = serde_json::from_str(canceled.trim()).unwrap();
    assert_eq!(listed["run_id"], sleepy.to_string(), "{canceled}");
    let shown: Value = serde_json::from_str(&cli(&["status", &sleepy.to_string()[..20], "--json"])).unwrap();
    assert_eq!(
        (shown["status"].as_str(), task(&shown, "long")["status"].as_str()),
        (Some("CANCELED"), Some("CANCELED"))
    );

    // Runs the leader drives are in flight when it is killed.
    let orphans = [trigger(&ca, "fan").await, trigger(&ca, "fan").await];
    a.kill(); // SIGKILL
    let killed = Instant::now();
    assert_eq!(the_leader(&[b.url.as_str()], Duration::from_secs(5)).await, 0);
    eprintln!("leadership moved in {:?}", killed.elapsed());
    for run in orphans {
        let r = finished(&cb, run, Duration::from_secs(60)).await;
        assert_eq!(r["status"], "COMPLETED", "{r}");
        for t in r["tasks"].as_array().unwrap() {
            assert_eq!(t["status"], "COMPLETED", "{t}");
        }
    }
    // A few ticks under the new leader, then every tick since the first
    // fired exactly once: as many runs as ticks, none missing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ticks = db.query(
        "SELECT count(*), count(DISTINCT schedule_tick), (max(schedule_tick) - min(schedule_tick)) / 2000000 + 1 \
         FROM runs WHERE workflow = 'tick'",
    );
    let [runs, distinct, span]: [u64; 3] =
        ticks.split('|').map(|n| n.trim().parse().unwrap()).collect::<Vec<_>>().try_into().unwrap();
    assert!(runs >= 4, "the schedule kept firing: {ticks}");
    assert_eq!((runs, distinct), (span, span), "runs, distinct ticks, ticks since the first: {ticks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_database_is_unreachable_says_not_ready_and_keeps_trying() {
    let env = Env::new(&[]);
    // Nothing listens on port 1.
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database", "postgres://postgres@127.0.0.1:1/cairn"])
        .arg("--data-dir")
        .arg(env.dir.path().join("data"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the server exited before listening").unwrap();
        if let Some(rest) = line.strip_prefix("cairn listening on ") {
            break rest.split(';').next().unwrap().to_owned();
        }
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            keep.lock().unwrap().push(line);
        }
    });
    let client = Client::new(&url).unwrap();
    assert_eq!(client.health().await.unwrap()["status"], "starting");
    // Not ready, saying why, for as long as the database is away.
    let start = Instant::now();
    loop {
        let res = http_get(format!("{url}/api/v1/ready")).await.unwrap();
        assert_eq!(res.status(), 503);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "unavailable", "{body}");
        let message = body["message"].as_str().unwrap();
        if message.contains("waiting for the database postgres://postgres@127.0.0.1:1/cairn") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still trying a few seconds on, not crashed.
    let start = Instant::now();
    while seen.lock().unwrap().iter().filter(|l| l.contains("trying again")).count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(20), "{:?}", seen.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "the server exited");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_rides_out_its_database_connections_being_cut() {
    let db = PgDatabase::create();
    let env = Env::new(&[("fan", FAN)]);
    let url = db.url();
    let server = Server::start_with(
        &env.dir.path().join("data"),
        &env.dir.path().join("wf"),
        5,
        &["--database", &url],
    );
    let _worker = WorkerProc::start(&server.url, "edge", "w1", &env.work());
    let client = Client::new(&server.url).unwrap();
    let runs = [trigger(&client, "fan").await, trigger(&client, "fan").await];
    // Every connection of the server — pool, LISTEN, its session — is cut,
    // twice, while the runs are under way.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        db.query(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            db.name
        ));
    }
    for run in runs {
        let r = finished(&client, run, Duration::from_secs(60)).await;
        assert_eq!(r["status"], "COMPLETED", "{r}");
    }
    // Still serving and leading afterwards.
    assert_eq!(the_leader(&[server.url.as_str()], Duration::from_secs(10)).await, 0);
    assert_eq!(trigger(&client, "fan").await.to_string().len(), 26);
}

/// Retention on a real server: a workflow that keeps its newest run. A
/// server started after three runs finished archives the older two under
/// its data directory and deletes them at once, as it begins to lead, and
/// `cairn archive` reads them back from the files alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_archives_then_deletes_and_cairn_archive_reads_the_archive() {
    let env =
        Env::new(&[("keep1", "hist_retention_runs: 1\nsteps:\n  - name: hello\n    command: echo hello\n")]);
    let mut server = env.server(30);
    let client = Client::new(&server.url).unwrap();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let id = trigger(&client, "keep1").await;
        finished(&client, id, Duration::from_secs(30)).await;
        runs.push(id);
    }
    server.kill();

    let mut server = env.server(30);
    let client = Client::new(&server.url).unwrap();
    let start = Instant::now();
    for &old in &runs[..2] {
        while client.get_run(old).await.is_ok() {
            assert!(start.elapsed() < Duration::from_secs(30), "run {old} still stored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(finished(&client, runs[2], Duration::from_secs(5)).await["status"], "COMPLETED");

    let data = env.dir.path().join("data");
    let cairn = |args: &[&str]| Command::new(BIN).args(args).arg("--data-dir").arg(&data).output().unwrap();
    let listed = cairn(&["archive", "list", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let days: Vec<Value> =
        String::from_utf8(listed.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(days.len(), 1, "{days:?}");
    assert_eq!(days[0]["runs"], 2);
    let day = days[0]["day"].as_str().unwrap().to_owned();

    let shown = cairn(&["archive", "show", &day, "--json"]);
    assert!(shown.status.success(), "{shown:?}");
    let ids: Vec<String> = String::from_utf8(shown.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [runs[0].to_string(), runs[1].to_string()]);

    let one = cairn(&["archive", "show", &day, "--run", &runs[1].to_string()[..20]]);
    let text = String::from_utf8(one.stdout).unwrap();
    assert!(one.status.success() && text.contains(&runs[1].to_string()) && text.contains("hello"), "{text}");
    assert!(text.contains("COMPLETED"), "{text}");

    let bad = cairn(&["archive", "show", "2026-13-01"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8(bad.stderr).unwrap().contains("DAY: \"2026-13-01\" is not a day"));

    // Restored (with the server stopped, or its retention would take them
    // again): one run, then the rest of the day, each run once.
    server.kill();
    let restore = |args: &[&str]| {
        let out = cairn(&[&["archive", "restore", &day][..], args].concat());
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(restore(&["--run", &runs[0].to_string()]), "1 runs restored, 0 already in the store");
    assert_eq!(restore(&[]), "1 runs restored, 1 already in the store");
    assert_eq!(restore(&[]), "0 runs restored, 2 already in the store");
    let history = cairn(&["history", "--json"]);
    let listed: Vec<String> = String::from_utf8(history.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["run_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, [runs[2].to_string(), runs[1].to_string(), runs[0].to_string()]);
    let status = cairn(&["status", &runs[0].to_string(), "--json"]);
    let back: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(back["status"], "COMPLETED", "{back}");
    assert_eq!(back["tasks"][0]["name"], "hello", "{back}");
    assert_eq!(back["tasks"][0]["status"], "COMPLETED", "{back}");
}

/// `cairn token create ARGS` on the store of `data`; the new token's secret.
fn token_create(data: &Path, args: &[&str]) -> String {
    let out =
        Command::new(BIN).arg("--data-dir").arg(data).args(["token", "create"]).args(args).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().find(|w| w.starts_with("cairn_")).expect("the secret").to_owned()
}

/// A server with API tokens: it says so at start, refuses requests without
/// a token, lets an operator trigger, and a `cairn worker` with a worker
/// token of its queue runs the remote step; a worker token of another
/// queue gets nothing. Anywhere but loopback, a server without tokens
/// refuses to start unless told `--insecure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_tokens_serves_only_their_holders() {
    let env = Env::new(&[("remote", "steps:\n  - name: far\n    command: echo far\n    queue: gpu\n")]);
    let data = env.dir.path().join("data");
    let operator = token_create(&data, &["ops", "--role", "operator"]);
    let gpu = token_create(&data, &["gpu-box", "--role", "worker", "--queue", "gpu"]);
    let cpu = token_create(&data, &["cpu-box", "--role", "worker", "--queue", "cpu"]);

    let server = env.server(30);
    let anonymous = Client::new(&server.url).unwrap();
    match anonymous.get_run(RunId::new(cairn_core::Timestamp::from_micros(0))).await {
        Err(ClientError::Rejected { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (401, "unauthorized"))
        }
        other => panic!("expected 401, got {other:?}"),
    }
    let client = Client::builder(&server.url).bearer_token(&operator).build().unwrap();
    let run = trigger(&client, "remote").await;

    // The wrong queue's token leases nothing; the right one runs the step.
    let wrong = Client::builder(&server.url).bearer_token(&cpu).build().unwrap();
    let lease = LeaseRequest { worker_id: "sneaky".into(), queue: "gpu".into(), max_tasks: 1, wait_ms: 0 };
    match wrong.lease(&lease).await {
        Err(ClientError::Rejected { status, field, .. }) => {
            assert_eq!((status, field.as_deref()), (403, Some("queue")))
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let mut worker = Command::new(BIN)
        .args(["worker", "--server", &server.url, "--queue", "gpu", "--worker-id", "gpu-1"])
        .arg("--work-dir")
        .arg(env.work())
        .env("CAIRN_TOKEN", &gpu)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let done = finished(&client, run, Duration::from_secs(30)).await;
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["tasks"][0]["attempt_records"][0]["worker"], "gpu-1", "{done}");

    // Elsewhere than loopback, no tokens means no start without --insecure.
    let bare = tempfile::tempdir().unwrap();
    let refused = Command::new(BIN)
        .arg("--data-dir")
        .arg(bare.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("without API tokens"), "{refused:?}");
}

/// An open server asks for tokens as soon as one is made by another
/// process on its store, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_server_asks_for_tokens_once_one_is_made_without_a_restart() {
    let env = Env::new(&[("hello", "steps:\n  - name: hi\n    command: echo hi\n")]);
    let server = env.server(30);
    let anonymous = Client::new(&server.url).unwrap();
    let status = || async {
        match anonymous.get_run(RunId::new(cairn_core::Timestamp::from_micros(0))).await {
            Err(ClientError::NotFound { .. }) => 404,
            Err(ClientError::Rejected { status, .. }) => status,
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    assert_eq!(status().await, 404, "open: the run is looked for");
    let made = Command::new(BIN)
        .arg("--data-dir")
        .arg(env.dir.path().join("data"))
        .args(["token", "create", "ops", "--role", "operator"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while status().await != 401 {
        assert!(std::time::Instant::now() < deadline, "still open 20 s after a token was made");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One post a webhook receiver got: its headers (lowercase names) and body.
type Post = (BTreeMap<String, String>, String);

/// A webhook receiver inside the test: records each post's headers and
/// body, answers 200.
#[derive(Clone, Default)]
struct HookReceiver {
    got: Arc<Mutex<Vec<Post>>>,
}

impl HookReceiver {
    async fn start(&self) -> String {
        async fn receive(
            axum::extract::State(r): axum::extract::State<HookReceiver>,
            headers: axum::http::HeaderMap,
            body: String,
        ) -> &'static str {
            let headers = headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            r.got.lock().unwrap().push((headers, body));
            "ok"
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// Polls until `n` posts arrived (a state, not a fixed wait).
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Post> {
        let start = Instant::now();
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(start.elapsed() < within, "{} posts after {within:?}, expected {n}", got.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, computed here
/// as a receiver would.
fn hook_signature(secret: &str, timestamp: &str, body: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_posted_signed_to_the_webhook_of_the_config() {
    let env = Env::new(&[("etl-doomed", "steps:\n  - name: boom\n    command: sh -c 'exit 3'\n")]);
    let receiver = HookReceiver::default();
    let url = receiver.start().await;
    let config = env.dir.path().join("server.yaml");
    std::fs::write(
        &config,
        format!(
            "webhooks:\n  - name: ops\n    url: {url}\n    secret: hook-secret\n\
             alerts:\n  - name: failures\n    on: [run_failed]\n    workflows: \"etl-*\"\n    to: [ops, log]\n"
        ),
    )
    .unwrap();
    let data = env.dir.path().join("data");
    let server =
        Server::start_with(&data, &env.dir.path().join("wf"), 30, &["--config", config.to_str().unwrap()]);
    let client = Client::new(&server.url).unwrap();
    let run = trigger(&client, "etl-doomed").await;
    let r = finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(r["status"], "FAILED", "{r}");

    let got = receiver.wait_for(1, Duration::from_secs(30)).await;
    let (headers, body) = &got[0];
    assert_eq!(headers["x-cairn-event"], "run_failed");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        headers["x-cairn-signature"],
        hook_signature("hook-secret", &headers["x-cairn-timestamp"], body),
        "signed with the secret over timestamp.body"
    );
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["key"], format!("run_failed:{run}"));
    assert_eq!(
        (body["workflow"].as_str(), body["data"]["to"].as_str()),
        (Some("etl-doomed"), Some("FAILED"))
    );

    // The delivery log, over the API and from the command line.
    let log: Value =
        http_get(format!("{}/api/v1/webhooks/deliveries", server.url)).await.unwrap().json().await.unwrap();
    let rows = log["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{log}");
    assert_eq!((rows[0]["state"].as_str(), rows[0]["webhook"].as_str()), (Some("delivered"), Some("ops")));
    assert_eq!(rows[0]["id"].to_string(), headers["x-cairn-delivery"]);
    drop(server);
    let out = Command::new(BIN)
        .args(["webhooks", "deliveries", "--json", "--state", "delivered"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["key"], format!("run_failed:{run}"));
    assert_eq!(lines[0]["attempts"], 1);
}

#[test]
fn a_bad_server_config_is_refused_before_listening_naming_file_line_and_field() {
    let env = Env::new(&[]);
    let config = env.dir.path().join("server.yaml");
    std::fs::write(
        &config,
        "webhooks:\n  - name: ops\n    url: https://hooks.example.com\n    secret_env: CAIRN_TEST_UNSET_SECRET_VAR\n\
         alerts:\n  - name: a\n    on: [run_failed]\n    to: [pager]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(env.dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let file = config.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:4:17: webhooks[0].secret_env: the environment variable CAIRN_TEST_UNSET_SECRET_VAR is not set")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:8:10: alerts[0].to[0]: \"pager\" is not a webhook")),
        "{stderr}"
    );
    assert!(!stderr.contains("cairn serving"), "{stderr}");

    // An unknown key, from the data directory's cairn.yaml when --config is absent.
    let data = env.dir.path().join("data2");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("cairn.yaml"), "alerts: []\nwebhook: []\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("{}:2:", data.join("cairn.yaml").display())) && stderr.contains("webhook"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// TLS

/// A self-signed certificate for 127.0.0.1 and localhost, written as
/// `cert.pem` and `key.pem` under `dir`; returns the certificate's PEM.
fn self_signed(dir: &Path) -> String {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = made.cert.pem();
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
    cert
}

fn tls_args(dir: &Path) -> [String; 4] {
    [
        "--tls-cert".to_owned(),
        dir.join("cert.pem").display().to_string(),
        "--tls-key".to_owned(),
        dir.join("key.pem").display().to_string(),
    ]
}

/// Over HTTPS: a client that trusts the certificate's CA is served; one that
/// does not is refused by its own TLS check; and a `cairn worker --ca-cert`
/// runs a remote step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_to_clients_and_workers_that_trust_its_certificate() {
    let env = Env::new(&[("mixed", MIXED)]);
    let ca = self_signed(env.dir.path());
    let args = tls_args(env.dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_with(&env.dir.path().join("data"), &env.dir.path().join("wf"), 30, &args);
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);

    let client = Client::builder(&server.url).ca_cert_pem(ca.as_bytes()).build().unwrap();
    assert_eq!(client.health().await.unwrap()["status"], "ok");

    let stranger = Client::new(&server.url).unwrap();
    let refused = stranger.health().await.unwrap_err();
    let message = refused.to_string();
    assert!(message.contains("certificate"), "{message}");
    assert!(refused.certainly_not_applied(), "{refused:?}");

    let _worker = Command::new(BIN)
        .args(["worker", "--server", &server.url, "--queue", "edge", "--worker-id", "tls-1"])
        .arg("--ca-cert")
        .arg(env.dir.path().join("cert.pem"))
        .arg("--work-dir")
        .arg(env.work())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(WorkerProc)
        .unwrap();
    let run = trigger(&client, "mixed").await;
    let r = finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(r["status"], "COMPLETED", "{r}");
    let remote = task(&r, "remote");
    assert_eq!(remote["outputs"]["R"], "remote got local-step");
    let actors: Vec<&str> =
        remote["transitions"].as_array().unwrap().iter().map(|t| t["actor"].as_str().unwrap()).collect();
    assert!(actors.contains(&"worker:tls-1"), "{actors:?}");
}

/// A certificate or key that cannot be served with is invalid input (exit
/// 2) naming the file, said before anything listens; so is half of the pair.
#[test]
fn a_bad_certificate_or_key_is_refused_naming_the_file() {
    let env = Env::new(&[]);
    let dir = env.dir.path();
    self_signed(dir);
    std::fs::write(dir.join("garbage.pem"), "not PEM at all\n").unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.join("other-key.pem"), other.signing_key.serialize_pem()).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    for (cert, key, named, why) in [
        (path("cert.pem"), path("garbage.pem"), "garbage.pem", "no PEM private key"),
        (path("garbage.pem"), path("key.pem"), "garbage.pem", "no PEM certificate"),
        (path("missing.pem"), path("key.pem"), "missing.pem", "cannot read"),
        (path("cert.pem"), path("other-key.pem"), "other-key.pem", "key"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cert} {key}: {stderr}");
        assert!(stderr.contains(named) && stderr.contains(why), "{cert} {key}: {stderr}");
        assert!(!stderr.contains("cairn serving"), "{stderr}");
    }
    let half = Command::new(BIN).args(["serve", "--tls-cert", &path("cert.pem")]).output().unwrap();
    assert_eq!(half.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&half.stderr).contains("--tls-key"));
}

// ---------------------------------------------------------------------------
// Rate limits

/// A worker refused for its rate (429) waits as told and carries on: its
/// step still completes. Without tokens, every caller on loopback shares
/// the address's budget, so the test spends it for the worker until the
/// worker says it was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_worker_waits_and_its_step_still_completes() {
    let env = Env::new(&[("mixed", MIXED)]);
    let extra = ["--rate-limit-worker", "1"];
    let server = Server::start_with(&env.dir.path().join("data"), &env.dir.path().join("wf"), 30, &extra);
    let client = Client::new(&server.url).unwrap();
    // Spends the budget until told to stop, from before the worker starts,
    // so the worker's very first lease is refused.
    let spending = CancellationToken::new();
    let spender = {
        let (client, stop) = (client.clone(), spending.clone());
        let spend =
            LeaseRequest { worker_id: "spender".into(), queue: "none".into(), max_tasks: 1, wait_ms: 0 };
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let _ = client.lease(&spend).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let start = Instant::now();
    while !client
        .lease(&LeaseRequest { worker_id: "probe".into(), queue: "none".into(), max_tasks: 1, wait_ms: 0 })
        .await
        .is_err_and(|e| e.is_rate_limited())
    {
        assert!(start.elapsed() < Duration::from_secs(30), "the budget was never spent");
    }
    let mut worker = Command::new(BIN)
        .args(["worker", "--server", &server.url, "--queue", "edge", "--worker-id", "slow-1"])
        .arg("--work-dir")
        .arg(env.work())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let said = Arc::new(Mutex::new(String::new()));
    let lines = BufReader::new(worker.stderr.take().unwrap()).lines();
    let heard = said.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            heard.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    let _worker = WorkerProc(worker);
    while !said.lock().unwrap().contains("address 127.0.0.1 sent requests faster than 1 a second") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the worker was never limited:\n{}",
            said.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    spending.cancel();
    spender.await.unwrap();

    let run = trigger(&client, "mixed").await;
    let r = finished(&client, run, Duration::from_secs(60)).await;
    assert_eq!(r["status"], "COMPLETED", "{r}");
    assert_eq!(task(&r, "remote")["outputs"]["R"], "remote got local-step");
    let metrics = http_get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("cairn_rate_limited_total{surface=\"worker\"}"), "{metrics}");
}

// ---------- cairn cancel and cairn retry, against a real server ----------

const SLEEPY: &str = "steps:\n  - name: nap\n    command: sleep 60\n";

const FAILS_SECOND: &str =
    "steps:\n  - name: first\n    command: \"true\"\n  - name: second\n    command: exit 1\n";

/// `cairn ARGS --server URL`, blind to the caller's `CAIRN_*` settings but
/// for `env`.
fn cairn_at(url: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).args(["--server", url]);
    for var in ["CAIRN_SERVER", "CAIRN_TOKEN", "CAIRN_CA_CERT"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied()).output().unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `cairn cancel` stops a running run named by a unique prefix of its id;
/// a second cancel fails (exit 1) since the run has finished; an unknown
/// id or prefix is invalid input (exit 2); no server is a failure naming
/// the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_cancel_stops_a_run_by_prefix_and_refuses_a_finished_or_unknown_one() {
    let env = Env::new(&[("sleepy", SLEEPY)]);
    let server = env.server(30);
    let client = Client::new(&server.url).unwrap();
    let run = trigger(&client, "sleepy").await;
    step_running(&client, run, "nap").await;
    let id = run.to_string();

    let out = cairn_at(&server.url, &["cancel", &id[..16]], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains(&format!("asked run {id} to cancel")), "{out:?}");
    let r = finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(r["status"], "CANCELED", "{r}");
    assert_eq!(task(&r, "nap")["status"], "CANCELED", "{r}");

    let again = cairn_at(&server.url, &["cancel", &id], &[]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(stderr(&again).contains("already finished"), "{again:?}");

    let nobody = RunId::new(cairn_core::Timestamp::from_micros(0)).to_string();
    let unknown = cairn_at(&server.url, &["cancel", &nobody], &[]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(stderr(&unknown).contains(&format!("run {nobody}")), "{unknown:?}");
    let no_match = cairn_at(&server.url, &["cancel", "7ZZZZZ"], &[]);
    assert_eq!(no_match.status.code(), Some(2), "{no_match:?}");
    assert!(stderr(&no_match).contains("no run starts with 7ZZZZZ"), "{no_match:?}");
    let not_an_id = cairn_at(&server.url, &["cancel", "last-one"], &[]);
    assert_eq!(not_an_id.status.code(), Some(2), "{not_an_id:?}");
    assert!(stderr(&not_an_id).contains("not a run id"), "{not_an_id:?}");

    // Port 1 on loopback: nobody listens there.
    let down = cairn_at("http://127.0.0.1:1", &["cancel", &id, "--json"], &[]);
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    let said = stderr(&down);
    assert!(said.contains("http://127.0.0.1:1") && said.contains("cairn serve"), "{down:?}");
}

/// `cairn retry` of a failed run starts a new run (trigger `retry`), by
/// default or `--from` a step; a step the run lacks and an ambiguous prefix
/// are invalid input (exit 2); a run still running cannot be retried (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_retry_starts_a_new_run_and_refuses_a_bad_step_or_a_running_run() {
    let env = Env::new(&[("fails", FAILS_SECOND), ("sleepy", SLEEPY)]);
    let server = env.server(30);
    let client = Client::new(&server.url).unwrap();
    let failed = trigger(&client, "fails").await;
    let r = finished(&client, failed, Duration::from_secs(30)).await;
    assert_eq!(r["status"], "FAILED", "{r}");
    let old = failed.to_string();

    let out = cairn_at(&server.url, &["retry", &old], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let first = text.lines().next().unwrap_or_default();
    let new: RunId = first.split_whitespace().nth(1).and_then(|w| w.parse().ok()).expect(&text);
    assert_eq!(first, format!("run {new} retries {old}"), "{text}");
    assert!(text.contains(&format!("cairn status {new}")), "{text}");
    let retried = finished(&client, new, Duration::from_secs(30)).await;
    assert_eq!(retried["trigger"], "retry", "{retried}");
    assert_eq!(retried["workflow"], "fails", "{retried}");
    assert_eq!(task(&retried, "second")["status"], "FAILED", "{retried}");

    let json = cairn_at(&server.url, &["retry", &old, "--from", "first", "--json"], &[]);
    assert_eq!(json.status.code(), Some(0), "{json:?}");
    let answer: Value = serde_json::from_str(&stdout(&json)).expect("one JSON answer");
    let from_first: RunId = answer["run_id"].as_str().and_then(|s| s.parse().ok()).expect("a run_id");
    let from_first = finished(&client, from_first, Duration::from_secs(30)).await;
    assert_eq!(from_first["trigger"], "retry", "{from_first}");
    assert_eq!(task(&from_first, "first")["status"], "COMPLETED", "{from_first}");

    let no_step = cairn_at(&server.url, &["retry", &old, "--from", "NOSUCH"], &[]);
    assert_eq!(no_step.status.code(), Some(2), "{no_step:?}");
    assert!(stderr(&no_step).contains("NOSUCH"), "{no_step:?}");

    // Three runs now: the prefix they share names none of them.
    let shared: String =
        old.chars().zip(new.to_string().chars()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect();
    let ambiguous = cairn_at(&server.url, &["retry", &shared], &[]);
    assert_eq!(ambiguous.status.code(), Some(2), "{ambiguous:?}");
    let said = stderr(&ambiguous);
    assert!(said.contains("ambiguous") && said.contains(&old) && said.contains(&new.to_string()), "{said}");

    let sleeping = trigger(&client, "sleepy").await;
    let busy = cairn_at(&server.url, &["retry", &sleeping.to_string()], &[]);
    assert_eq!(busy.status.code(), Some(1), "{busy:?}");
    assert!(stderr(&busy).contains("still"), "{busy:?}");
}

/// On a server that asks for tokens, `cairn cancel` without one or with a
/// viewer's is refused (exit 1) saying it needs role operator; an
/// operator's token in `CAIRN_TOKEN` cancels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_cancel_needs_an_operator_token_on_a_server_that_asks_for_tokens() {
    let env = Env::new(&[("sleepy", SLEEPY)]);
    let data = env.dir.path().join("data");
    let viewer = token_create(&data, &["looker", "--role", "viewer"]);
    let operator = token_create(&data, &["ops", "--role", "operator"]);
    let server = env.server(30);
    let client = Client::builder(&server.url).bearer_token(&operator).build().unwrap();
    let run = trigger(&client, "sleepy").await;
    step_running(&client, run, "nap").await;
    let id = run.to_string();

    let anonymous = cairn_at(&server.url, &["cancel", &id], &[]);
    assert_eq!(anonymous.status.code(), Some(1), "{anonymous:?}");
    let said = stderr(&anonymous);
    assert!(said.contains("role operator") && said.contains("CAIRN_TOKEN"), "{said}");

    let looker = cairn_at(&server.url, &["cancel", &id[..16], "--token", &viewer], &[]);
    assert_eq!(looker.status.code(), Some(1), "{looker:?}");
    let said = stderr(&looker);
    assert!(said.contains("role operator") && !said.contains(&viewer), "{said}");
    assert_eq!(client.get_run(run).await.unwrap()["status"], "RUNNING");

    let ops = cairn_at(&server.url, &["cancel", &id[..16]], &[("CAIRN_TOKEN", &operator)]);
    assert_eq!(ops.status.code(), Some(0), "{ops:?}");
    let r = finished(&client, run, Duration::from_secs(30)).await;
    assert_eq!(r["status"], "CANCELED", "{r}");
}
