//! The remote workloads of `cairn bench`: a real server (the same router as
//! `cairn serve`) on a loopback port, and workers speaking the HTTP worker
//! protocol to it — W1r (throughput), W5 (heartbeats), W6 (dispatch
//! latency) and W7 (reaping a dead worker's leases), each a [`Workload`]
//! that runs on whichever store it is given.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cairn_client::protocol::{
    AckStatus, AttemptEnd, CompleteRequest, HeartbeatItem, HeartbeatRequest, LeaseRequest,
};
use cairn_client::{Client, Worker};
use cairn_core::event::Event;
use cairn_core::lease::LeaseSettings;
use cairn_core::protocol::LeasedTask;
use cairn_core::record::Actor;
use cairn_core::{RunId, TaskStatus};
use cairn_engine::{EngineClock, Manager, ManagerOptions};
use cairn_server::{AppState, Catalog, EngineControl, ServerConfig, limits};
use cairn_store::{Membership, Store};
use tokio_util::sync::CancellationToken;

use crate::bench::Workload;

/// A server in this process on 127.0.0.1, serving workflows written to its directory.
pub(crate) struct BenchServer<S: Store> {
    pub(crate) url: String,
    pub(crate) manager: Arc<Manager<S>>,
    stop: CancellationToken,
    /// Joined as `cairn serve` joins, held while the server runs.
    _membership: Membership,
}

impl<S: Store> BenchServer<S> {
    pub(crate) async fn start(
        store: Arc<S>,
        dir: &Path,
        lease_timeout: Duration,
        workflows: &[(&str, String)],
    ) -> Result<BenchServer<S>> {
        let wf_dir = dir.join("workflows");
        std::fs::create_dir_all(&wf_dir)?;
        for (name, yaml) in workflows {
            std::fs::write(wf_dir.join(format!("{name}.yaml")), yaml)?;
        }
        let owner = "server:bench";
        let membership = store.join(owner).await.context("joining the servers of the store")?;
        let manager = Manager::new(
            store.clone(),
            EngineClock::system(),
            ManagerOptions {
                owner: owner.into(),
                log_root: dir.join("logs"),
                lease: LeaseSettings::with_timeout(lease_timeout),
            },
        );
        let catalog = Catalog::load(&wf_dir);
        let control = Arc::new(EngineControl::new(manager.clone(), catalog.clone()));
        // Limited as `cairn serve` limits by default, callers told apart by
        // address as there: the figures are those of the server users run.
        let config = ServerConfig {
            rate_limit_api: limits::DEFAULT_API_RATE,
            rate_limit_worker: limits::DEFAULT_WORKER_RATE,
            ..ServerConfig::new(dir.join("logs"))
        };
        let app = cairn_server::router(AppState::new(store, control, catalog, config))
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(until.cancelled_owned()).await;
        });
        Ok(BenchServer { url, manager, stop, _membership: membership })
    }

    pub(crate) fn client(&self) -> Result<Client> {
        Ok(Client::new(&self.url)?)
    }
}

impl<S: Store> Drop for BenchServer<S> {
    fn drop(&mut self) {
        self.manager.halt();
        self.stop.cancel();
    }
}

/// A workflow of `n` independent remote steps on queue `q`.
pub(crate) fn fan_out(n: usize) -> String {
    let mut yaml = String::with_capacity(n * 48);
    yaml.push_str("type: graph\nsteps:\n");
    for i in 0..n {
        yaml.push_str(&format!("  - name: t{i}\n    command: \"true\"\n    queue: q\n"));
    }
    yaml
}

async fn trigger(client: &Client, workflow: &str) -> Result<RunId> {
    Ok(client.trigger_run(workflow, &BTreeMap::new()).await?)
}

/// Waits for the run's end through the event stream of the manager.
async fn wait_run<S: Store>(server: &BenchServer<S>, run: RunId, within: Duration) -> Result<()> {
    let mut events = server.manager.subscribe();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(r) = server.manager.store().run(run).await?
            && r.status.is_terminal()
        {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => bail!("run {run} did not finish within {within:?}"),
            Ok(Ok(Event::Run(e))) if e.run_id == run && e.to.is_terminal() => return Ok(()),
            Ok(_) => {}
        }
    }
}

/// W1r: `n` no-op remote tasks, `workers` SDK workers over HTTP with batched
/// lease/heartbeat/complete. Seconds from submit to the run's end.
pub(crate) struct W1r {
    pub(crate) n: usize,
    pub(crate) workers: usize,
}

impl Workload for W1r {
    type Output = f64;

    async fn on<S: Store>(self, store: Arc<S>, dir: &Path) -> Result<f64> {
        let W1r { n, workers } = self;
        let server = BenchServer::start(store, dir, Duration::from_secs(30), &[("w1r", fan_out(n))]).await?;
        let stop = CancellationToken::new();
        let mut handles = Vec::new();
        for w in 0..workers {
            let worker = Worker::builder(server.client()?)
                .worker_id(format!("bench-{w}"))
                .queue("q")
                .concurrency(500)
                .lease_wait(Duration::from_millis(200))
                .fallback_handler(|_ctx| async { Ok(BTreeMap::new()) })
                .build()?;
            handles.push(tokio::spawn(worker.run(stop.clone())));
        }
        let client = server.client()?;
        let started = Instant::now();
        let run = trigger(&client, "w1r").await?;
        wait_run(&server, run, Duration::from_secs(600)).await?;
        let secs = started.elapsed().as_secs_f64();
        stop.cancel();
        for h in handles {
            let _ = h.await;
        }
        Ok(secs)
    }
}

/// Leases every task of a fresh `n`-task run, `batch` at a time.
async fn lease_all(client: &Client, worker: &str, n: usize, batch: u32) -> Result<Vec<LeasedTask>> {
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let req =
            LeaseRequest { worker_id: worker.into(), queue: "q".into(), max_tasks: batch, wait_ms: 2_000 };
        let got = client.lease(&req).await?.tasks;
        if got.is_empty() {
            bail!("leased {} of {n} tasks, then nothing", held.len());
        }
        held.extend(got);
    }
    Ok(held)
}

/// W5: `n` RUNNING tasks heartbeating with progress (a 200-byte message),
/// `clients` concurrent callers each sending batches of `batch` items, for
/// `rounds` rounds. Returns (accepted heartbeats per second, p50 ms, p99 ms per call).
pub(crate) struct W5 {
    pub(crate) n: usize,
    pub(crate) clients: usize,
    pub(crate) batch: usize,
}

impl Workload for W5 {
    type Output = (f64, f64, f64);

    async fn on<S: Store>(self, store: Arc<S>, dir: &Path) -> Result<(f64, f64, f64)> {
        let W5 { n, clients, batch } = self;
        let server = BenchServer::start(store, dir, Duration::from_secs(120), &[("w5", fan_out(n))]).await?;
        let client = server.client()?;
        trigger(&client, "w5").await?;
        let held = Arc::new(lease_all(&client, "hb", n, 1000).await?);
        let message: String = "x".repeat(200);
        let rounds = 5;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let client = server.client()?;
            let held = held.clone();
            let message = message.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut accepted = 0u64;
                for round in 0..rounds {
                    for chunk in held.iter().skip(c).step_by(clients).collect::<Vec<_>>().chunks(batch) {
                        let items = chunk
                            .iter()
                            .map(|t| HeartbeatItem {
                                task_id: t.task_id,
                                lease_token: t.lease_token,
                                progress_percent: Some(((round * 20) % 100) as f32),
                                progress_message: Some(message.clone()),
                                details: None,
                            })
                            .collect();
                        let t0 = Instant::now();
                        let ack =
                            client.heartbeat(&HeartbeatRequest { worker_id: "hb".into(), items }).await?;
                        latencies.push(t0.elapsed().as_secs_f64() * 1e3);
                        accepted += ack.items.iter().filter(|a| a.status == AckStatus::Ok).count() as u64;
                    }
                }
                Ok::<_, anyhow::Error>((accepted, latencies))
            }));
        }
        let mut accepted = 0;
        let mut latencies = Vec::new();
        for t in tasks {
            let (a, mut l) = t.await??;
            accepted += a;
            latencies.append(&mut l);
        }
        let secs = started.elapsed().as_secs_f64();
        if accepted == 0 {
            bail!("no heartbeat was accepted");
        }
        latencies.sort_by(f64::total_cmp);
        Ok((accepted as f64 / secs, pct(&latencies, 0.5), pct(&latencies, 0.99)))
    }
}

/// W6: an idle server and one long-polling worker; one single-step run at a
/// time. Milliseconds from submit to the task RUNNING in the worker's hands,
/// in process (manager calls) and remote (HTTP), `samples` of each.
pub(crate) struct W6 {
    pub(crate) samples: usize,
}

impl Workload for W6 {
    type Output = (Vec<f64>, Vec<f64>);

    async fn on<S: Store>(self, store: Arc<S>, dir: &Path) -> Result<(Vec<f64>, Vec<f64>)> {
        let samples = self.samples;
        let server = BenchServer::start(store, dir, Duration::from_secs(30), &[("one", fan_out(1))]).await?;
        let catalog = Catalog::load(dir.join("workflows"));
        let entry = catalog.get("one").context("the W6 workflow")?;
        let workflow = entry.workflow().context("the W6 workflow is valid")?.clone();
        let mut local = Vec::with_capacity(samples);
        for _ in 0..samples {
            let manager = server.manager.clone();
            let poll = tokio::spawn(async move {
                let req =
                    LeaseRequest { worker_id: "w6".into(), queue: "q".into(), max_tasks: 1, wait_ms: 5_000 };
                (manager.lease(&req).await, Instant::now())
            });
            tokio::task::yield_now().await;
            let t0 = Instant::now();
            server.manager.submit(workflow.clone(), entry.source.clone(), &[], "bench").await?;
            let (leased, at) = poll.await?;
            let task = leased?.tasks.into_iter().next().context("W6: nothing leased")?;
            local.push(at.duration_since(t0).as_secs_f64() * 1e3);
            complete(&server, &task).await?;
        }
        let client = server.client()?;
        let mut remote = Vec::with_capacity(samples);
        for _ in 0..samples {
            let poller = server.client()?;
            let poll = tokio::spawn(async move {
                let req =
                    LeaseRequest { worker_id: "w6".into(), queue: "q".into(), max_tasks: 1, wait_ms: 5_000 };
                (poller.lease(&req).await, Instant::now())
            });
            tokio::time::sleep(Duration::from_millis(2)).await;
            let t0 = Instant::now();
            trigger(&client, "one").await?;
            let (leased, at) = poll.await?;
            let task = leased?.tasks.into_iter().next().context("W6: nothing leased over HTTP")?;
            remote.push(at.duration_since(t0).as_secs_f64() * 1e3);
            complete(&server, &task).await?;
        }
        local.sort_by(f64::total_cmp);
        remote.sort_by(f64::total_cmp);
        Ok((local, remote))
    }
}

async fn complete<S: Store>(server: &BenchServer<S>, task: &LeasedTask) -> Result<()> {
    let req = CompleteRequest {
        lease_token: task.lease_token,
        outcome: AttemptEnd::Succeeded,
        exit_code: Some(0),
        outputs: BTreeMap::new(),
        error: None,
    };
    match server.manager.complete(task.task_id, req).await {
        Ok(_) => Ok(()),
        Err(_) => bail!("W6: completion refused"),
    }
}

/// W7: a worker holding `n` leases dies (it stops heartbeating). Seconds
/// from its last heartbeat to the last of the `n` tasks reaped, with the
/// heartbeat timeout `timeout`.
pub(crate) struct W7 {
    pub(crate) n: usize,
    pub(crate) timeout: Duration,
}

impl Workload for W7 {
    type Output = f64;

    async fn on<S: Store>(self, store: Arc<S>, dir: &Path) -> Result<f64> {
        let W7 { n, timeout } = self;
        let server = BenchServer::start(store, dir, timeout, &[("w7", fan_out(n))]).await?;
        let client = server.client()?;
        trigger(&client, "w7").await?;
        let held = lease_all(&client, "doomed", n, 1000).await?;
        let mut events = server.manager.subscribe();
        // The last sign of life: one heartbeat for all, then silence.
        let items = held
            .iter()
            .map(|t| HeartbeatItem {
                task_id: t.task_id,
                lease_token: t.lease_token,
                progress_percent: None,
                progress_message: None,
                details: None,
            })
            .collect();
        client.heartbeat(&HeartbeatRequest { worker_id: "doomed".into(), items }).await?;
        let killed = Instant::now();
        let mut reaped = 0;
        let deadline = tokio::time::Instant::now() + timeout * 3 + Duration::from_secs(10);
        while reaped < n {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => bail!("W7: only {reaped} of {n} leases reaped"),
                Ok(Ok(Event::Transition(t)))
                    if t.actor == Actor::Reaper && t.from == Some(TaskStatus::Running) =>
                {
                    reaped += 1;
                }
                Ok(_) => {}
            }
        }
        Ok(killed.elapsed().as_secs_f64())
    }
}

pub(crate) fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
