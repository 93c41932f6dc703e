//! The worker SDK's engine: lease tasks from a queue in batches up to the
//! free concurrency, run each with the handler registered for its task type,
//! keep their leases alive through the one heartbeat loop, complete them, and
//! shut down gracefully.
//!
//! Correctness leans on the protocol's fencing: every heartbeat and
//! completion names the attempt's lease token, so whatever this worker does
//! late (after a partition, a pause, a lost lease) the server refuses with
//! `lease_stale` and nothing changes. Completion is idempotent for one token,
//! so it is retried on any transient error, even a timeout after sending.
//! Completions go out in batches ([`crate::completion`]): one call for all the
//! tasks that end within a few milliseconds.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cairn_core::progress::ProgressLimits;
use cairn_core::protocol::{AttemptEnd, CompleteItem, LeaseRequest, LeasedTask};
use cairn_core::{Clock, SystemClock};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::completion::{BatchLimits, Completer, MAX_BATCH_ITEMS};
use crate::heartbeat::{CancelReason, HeldKey, HeldTasks, heartbeat_loop};
use crate::{Backoff, Client, ClientError, TaskContext};

/// What a successful handler returns: the step's output variables.
pub type Outputs = BTreeMap<String, String>;

/// What a failed handler returns. Any error converts into it with `?` (and
/// so do `&str` and `String`: `Err("bad input".into())`); its text, with its
/// sources, becomes the attempt's error.
pub type TaskError = Box<dyn std::error::Error + Send + Sync>;

/// A handler's result.
pub type TaskResult = Result<Outputs, TaskError>;

type HandlerFuture = Pin<Box<dyn Future<Output = Result<Outputs, String>> + Send>>;
type DynHandler = Arc<dyn Fn(TaskContext) -> HandlerFuture + Send + Sync>;

/// Most tasks one lease call may ask for, and the longest it may wait: the
/// protocol's limits (the server refuses more with a 400).
const MAX_LEASE_BATCH: usize = 1000;
const MAX_LEASE_WAIT: Duration = Duration::from_secs(60);
/// Most tasks one worker may hold: one batch heartbeat carries at most this many.
const MAX_CONCURRENCY: usize = 10_000;

/// How long a finished task waits for the batch carrying its last progress
/// before completing anyway.
const FINAL_FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Why a worker stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The server refused to lease with an error that retrying cannot fix
    /// (a wrong URL, a missing permission, an unknown route). The tasks held
    /// at the time were run to their end first.
    #[error("the server refused to lease tasks: {0}")]
    Lease(ClientError),
}

/// A [`WorkerBuilder`] that cannot make a worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("a worker needs a queue: call .queue(\"name\")")]
    NoQueue,
    #[error("a worker needs at least one handler (or a fallback handler)")]
    NoHandlers,
    #[error("concurrency must be from 1 to {MAX_CONCURRENCY}, not {0}")]
    Concurrency(usize),
    #[error("worker id must not be empty")]
    EmptyWorkerId,
}

/// Settings fixed when the worker is built.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    queue: String,
    concurrency: usize,
    lease_wait: Duration,
    shutdown_grace: Duration,
    cancel_grace: Duration,
    /// Leasing and heartbeating after a transient error.
    pub(crate) backoff: Backoff,
    pub(crate) completion_backoff: Backoff,
    /// When a batch of completions goes out.
    pub(crate) completion_batch: BatchLimits,
    shutdown_outcome: AttemptEnd,
}

/// What the worker shares with its heartbeat loop and its tasks' contexts.
pub(crate) struct Runtime {
    pub(crate) client: Client,
    pub(crate) worker_id: String,
    pub(crate) config: Config,
    held: Mutex<HeldTasks>,
    /// Wakes the heartbeat loop: a lease arrived, progress changed, a task ended.
    pub(crate) wake: Notify,
    pub(crate) stats: StatsInner,
    pub(crate) clock: Arc<dyn Clock>,
    handler_names: Vec<String>,
    /// The server has no batch completion route: complete one task per call.
    pub(crate) completions_singly: AtomicBool,
}

impl Runtime {
    /// The held leases. Held only for short, synchronous updates — never
    /// across an await — so a poisoned lock (a panic mid-update) still holds
    /// consistent enough data to keep heartbeating; take it over.
    pub(crate) fn held(&self) -> MutexGuard<'_, HeldTasks> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Default)]
pub(crate) struct StatsInner {
    leased: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    canceled: AtomicU64,
    stale: AtomicU64,
    completion_errors: AtomicU64,
    pub(crate) completion_calls: AtomicU64,
    lease_errors: AtomicU64,
    pub(crate) heartbeat_calls: AtomicU64,
    pub(crate) heartbeat_items: AtomicU64,
    pub(crate) heartbeat_errors: AtomicU64,
    pub(crate) progress_coalesced: AtomicU64,
}

/// A worker's counters since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerStats {
    /// Tasks leased.
    pub leased: u64,
    /// Tasks held now (running, or completing).
    pub running: u64,
    /// Completions accepted, by outcome.
    pub completed: u64,
    pub failed: u64,
    pub canceled: u64,
    /// Tasks whose lease turned out stale (reaped while we held them): not
    /// completed by this worker.
    pub stale: u64,
    /// Completions given up after retrying; the server's reaper recovers those.
    pub completion_errors: u64,
    /// Completion calls sent: batch calls (each carrying many tasks), and
    /// single ones where the server has no batch route.
    pub completion_calls: u64,
    /// Lease calls that failed (and were retried).
    pub lease_errors: u64,
    /// Batch heartbeat calls sent, and the task items they carried.
    pub heartbeat_calls: u64,
    pub heartbeat_items: u64,
    pub heartbeat_errors: u64,
    /// Progress updates superseded by a newer one before they were sent.
    pub progress_coalesced: u64,
}

/// A live view of a worker's [`WorkerStats`], usable while it runs.
#[derive(Clone)]
pub struct StatsHandle(Arc<Runtime>);

impl StatsHandle {
    pub fn snapshot(&self) -> WorkerStats {
        let s = &self.0.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerStats {
            leased: get(&s.leased),
            running: self.0.held().len() as u64,
            completed: get(&s.completed),
            failed: get(&s.failed),
            canceled: get(&s.canceled),
            stale: get(&s.stale),
            completion_errors: get(&s.completion_errors),
            completion_calls: get(&s.completion_calls),
            lease_errors: get(&s.lease_errors),
            heartbeat_calls: get(&s.heartbeat_calls),
            heartbeat_items: get(&s.heartbeat_items),
            heartbeat_errors: get(&s.heartbeat_errors),
            progress_coalesced: get(&s.progress_coalesced),
        }
    }
}

impl fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

/// Builds a [`Worker`]; see [`Worker::builder`].
pub struct WorkerBuilder {
    client: Client,
    worker_id: Option<String>,
    queue: Option<String>,
    concurrency: usize,
    handlers: HashMap<String, DynHandler>,
    fallback: Option<DynHandler>,
    lease_wait: Duration,
    shutdown_grace: Duration,
    cancel_grace: Duration,
    backoff: Backoff,
    completion_backoff: Backoff,
    completion_batch: BatchLimits,
    progress_limits: ProgressLimits,
    progress_flush: Option<Duration>,
    shutdown_outcome: AttemptEnd,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.handlers.keys().collect();
        names.sort();
        f.debug_struct("WorkerBuilder")
            .field("worker_id", &self.worker_id)
            .field("queue", &self.queue)
            .field("concurrency", &self.concurrency)
            .field("handlers", &names)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// The id the server records as the actor of this worker's transitions
    /// (`worker:ID`). Default: `HOST:PID`.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// The queue to lease from (a step's `queue:`).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// How many tasks run at once (default 1, at most 10,000).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Runs tasks whose `task_type` is `task_type` with `handler`. The handler
    /// gets a [`TaskContext`] and returns the step's outputs, or an error
    /// that fails the attempt (the server retries it per the step's policy).
    pub fn handler<F, Fut>(mut self, task_type: impl Into<String>, handler: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TaskResult> + Send + 'static,
    {
        self.handlers.insert(task_type.into(), boxed(handler));
        self
    }

    /// Runs tasks of every type that has no handler of its own. Without one,
    /// such tasks fail at once with an error naming the task type.
    pub fn fallback_handler<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TaskResult> + Send + 'static,
    {
        self.fallback = Some(boxed(handler));
        self
    }

    /// How long one lease call waits on the server for a task (default 10 s,
    /// at most 60 s).
    pub fn lease_wait(mut self, d: Duration) -> Self {
        self.lease_wait = d;
        self
    }

    /// On shutdown, how long running tasks may go on before their
    /// [`TaskContext::cancelled`] fires (default 30 s).
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.shutdown_grace = d;
        self
    }

    /// After a task's [`TaskContext::cancelled`] fires, how long its handler
    /// has to return before it is dropped (default 10 s).
    pub fn cancel_grace(mut self, d: Duration) -> Self {
        self.cancel_grace = d;
        self
    }

    /// Backoff for leasing and heartbeating after a transient error
    /// (default [`Backoff::default`]; heartbeats never wait longer than the
    /// shortest held interval).
    pub fn backoff(mut self, b: Backoff) -> Self {
        self.backoff = b;
        self
    }

    /// Backoff for completing a task (default [`Backoff::for_completion`]).
    pub fn completion_backoff(mut self, b: Backoff) -> Self {
        self.completion_backoff = b;
        self
    }

    /// Completions of tasks that end close together go out in one call: a
    /// batch is sent once it has `max_items` completions (1 to 1000; default
    /// 500) or `window` after its first one ended (default 5 ms), whichever
    /// comes first. `max_items` 1 sends each completion alone, at once, but
    /// still through the batch route.
    pub fn completion_batch(mut self, max_items: usize, window: Duration) -> Self {
        self.completion_batch.max_items = max_items.clamp(1, MAX_BATCH_ITEMS);
        self.completion_batch.window = window;
        self
    }

    /// Client-side progress rate limits (default: 500 ms or 5 points, as the server's).
    pub fn progress_limits(mut self, limits: ProgressLimits) -> Self {
        self.progress_limits = limits;
        self
    }

    /// New progress or a checkpoint sends the batch early, at most once per
    /// this interval, so progress shows live even with long heartbeat
    /// intervals (default 1 s). `None`: progress waits for the regular beat.
    pub fn progress_flush_interval(mut self, d: Option<Duration>) -> Self {
        self.progress_flush = d;
        self
    }

    /// How a task stopped by the worker's shutdown ends: `Canceled` (the
    /// default; final, like a cancel) or `Failed` (the server retries it per
    /// the step's retry policy, e.g. on another worker).
    pub fn shutdown_outcome(mut self, outcome: AttemptEnd) -> Self {
        self.shutdown_outcome = outcome;
        self
    }

    /// The clock the progress limiter and the heartbeat schedule read
    /// (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn build(self) -> Result<Worker, BuildError> {
        let queue = self.queue.ok_or(BuildError::NoQueue)?;
        if self.handlers.is_empty() && self.fallback.is_none() {
            return Err(BuildError::NoHandlers);
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(BuildError::Concurrency(self.concurrency));
        }
        let worker_id = self.worker_id.unwrap_or_else(default_worker_id);
        if worker_id.trim().is_empty() {
            return Err(BuildError::EmptyWorkerId);
        }
        let mut handler_names: Vec<String> = self.handlers.keys().cloned().collect();
        handler_names.sort();
        let rt = Runtime {
            client: self.client,
            worker_id,
            config: Config {
                queue,
                concurrency: self.concurrency,
                lease_wait: self.lease_wait.min(MAX_LEASE_WAIT),
                shutdown_grace: self.shutdown_grace,
                cancel_grace: self.cancel_grace,
                backoff: self.backoff,
                completion_backoff: self.completion_backoff,
                completion_batch: self.completion_batch,
                shutdown_outcome: self.shutdown_outcome,
            },
            held: Mutex::new(HeldTasks::new(self.progress_limits, self.progress_flush)),
            wake: Notify::new(),
            stats: StatsInner::default(),
            clock: self.clock,
            handler_names,
            completions_singly: AtomicBool::new(false),
        };
        Ok(Worker { rt: Arc::new(rt), handlers: self.handlers, fallback: self.fallback })
    }
}

fn boxed<F, Fut>(handler: F) -> DynHandler
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TaskResult> + Send + 'static,
{
    Arc::new(move |ctx| {
        let fut = handler(ctx);
        Box::pin(async move { fut.await.map_err(|e| crate::error::error_chain(&*e)) })
    })
}

/// `HOST:PID`: unique enough among the workers of one server, and says
/// where to look.
fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}:{}", std::process::id())
}

/// A worker: leases tasks from one queue and runs them with its handlers.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use cairn_client::{Client, Outputs, TaskContext, Worker};
/// use tokio_util::sync::CancellationToken;
///
/// let client = Client::new("http://127.0.0.1:8080")?;
/// let worker = Worker::builder(client)
///     .queue("images")
///     .concurrency(4)
///     .handler("resize", |ctx: TaskContext| async move {
///         for i in 0..=10 {
///             if ctx.is_cancelled() {
///                 return Err("canceled".into());
///             }
///             ctx.progress(i as f32 * 10.0, format!("chunk {i} of 10"))?;
///         }
///         Ok(Outputs::new())
///     })
///     .build()?;
/// let shutdown = CancellationToken::new();
/// worker.run(shutdown).await?;
/// # Ok(()) }
/// ```
pub struct Worker {
    rt: Arc<Runtime>,
    handlers: HashMap<String, DynHandler>,
    fallback: Option<DynHandler>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("worker_id", &self.rt.worker_id)
            .field("queue", &self.rt.config.queue)
            .field("handlers", &self.rt.handler_names)
            .finish_non_exhaustive()
    }
}

impl Worker {
    pub fn builder(client: Client) -> WorkerBuilder {
        WorkerBuilder {
            client,
            worker_id: None,
            queue: None,
            concurrency: 1,
            handlers: HashMap::new(),
            fallback: None,
            lease_wait: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(10),
            backoff: Backoff::default(),
            completion_backoff: Backoff::for_completion(),
            completion_batch: BatchLimits::default(),
            progress_limits: ProgressLimits::default(),
            progress_flush: Some(Duration::from_secs(1)),
            shutdown_outcome: AttemptEnd::Canceled,
            clock: Arc::new(SystemClock::new()),
        }
    }

    pub fn worker_id(&self) -> &str {
        &self.rt.worker_id
    }

    /// Counters that stay readable while [`Worker::run`] goes on.
    pub fn stats(&self) -> StatsHandle {
        StatsHandle(self.rt.clone())
    }

    /// Leases and runs tasks until `shutdown` fires, then stops leasing, lets
    /// running tasks finish for the shutdown grace period, cancels the rest
    /// (each ends per [`WorkerBuilder::shutdown_outcome`]), and returns once
    /// every held task is completed or dropped.
    ///
    /// Transient errors (server down, timeouts, 5xx) are retried with
    /// backoff for as long as it takes; an error retrying cannot fix ends the
    /// worker with [`WorkerError::Lease`], after its running tasks end.
    pub async fn run(self, shutdown: CancellationToken) -> Result<WorkerStats, WorkerError> {
        let Worker { rt, handlers, fallback } = self;
        let cfg = &rt.config;
        tracing::info!(
            worker_id = %rt.worker_id, queue = %cfg.queue, concurrency = cfg.concurrency,
            handlers = ?rt.handler_names, "worker started"
        );
        let hb_stop = CancellationToken::new();
        let mut hb = AbortOnDrop(tokio::spawn(heartbeat_loop(rt.clone(), hb_stop.clone())));
        let (completer, completions) = Completer::start(rt.clone());
        let mut completions = AbortOnDrop(completions);
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut failures: u32 = 0;
        let mut fatal = None;

        loop {
            while let Some(r) = tasks.try_join_next() {
                note_join(r);
            }
            if shutdown.is_cancelled() {
                break;
            }
            let free = cfg.concurrency.saturating_sub(tasks.len()).min(MAX_LEASE_BATCH);
            if free == 0 {
                tokio::select! {
                    r = tasks.join_next() => if let Some(r) = r { note_join(r) },
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
            let req = LeaseRequest {
                worker_id: rt.worker_id.clone(),
                queue: cfg.queue.clone(),
                max_tasks: u32::try_from(free).unwrap_or(u32::MAX),
                wait_ms: u64::try_from(cfg.lease_wait.as_millis()).unwrap_or(u64::MAX),
            };
            // Dropping a long poll on shutdown costs at most one lease
            // expiry: a task leased in the instant before the drop is held by
            // nobody, so the reaper takes it back and it is retried.
            let res = tokio::select! {
                r = rt.client.lease(&req) => r,
                () = shutdown.cancelled() => break,
            };
            match res {
                Ok(resp) => {
                    failures = 0;
                    if resp.tasks.len() > free {
                        tracing::warn!(
                            asked = free,
                            got = resp.tasks.len(),
                            "server leased more tasks than asked"
                        );
                    }
                    for task in resp.tasks {
                        rt.stats.leased.fetch_add(1, Ordering::Relaxed);
                        let cancel = CancellationToken::new();
                        // Held before it runs, so the heartbeat loop covers it from now on.
                        let key = rt.held().insert(&task, cancel.clone(), rt.clock.now());
                        let handler = handlers.get(&task.task_type).or(fallback.as_ref()).cloned();
                        tasks.spawn(run_task(rt.clone(), completer.clone(), task, key, cancel, handler));
                    }
                    rt.wake.notify_one();
                }
                Err(e) if e.is_retryable() => {
                    rt.stats.lease_errors.fetch_add(1, Ordering::Relaxed);
                    let delay = crate::backoff::rate_limit_wait(cfg.backoff.delay(failures), &e);
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, failures, retry_in_ms = delay.as_millis() as u64, "lease failed");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "the server refused to lease; no more tasks will be leased");
                    fatal = Some(e);
                    break;
                }
            }
        }

        drain(&rt, &mut tasks, &shutdown).await;
        // Every task has its completion's answer: the loop ends with the last clone.
        drop(completer);
        if let Err(e) = (&mut completions.0).await {
            tracing::error!(error = %e, "completion loop failed");
        }
        hb_stop.cancel();
        if let Err(e) = (&mut hb.0).await {
            tracing::error!(error = %e, "heartbeat loop failed");
        }
        let stats = StatsHandle(rt.clone()).snapshot();
        tracing::info!(
            leased = stats.leased,
            completed = stats.completed,
            failed = stats.failed,
            canceled = stats.canceled,
            stale = stats.stale,
            "worker stopped"
        );
        match fatal {
            Some(e) => Err(WorkerError::Lease(e)),
            None => Ok(stats),
        }
    }
}

/// Waits for every task to end. Once `shutdown` fires, they get the grace
/// period, then their cancel tokens fire.
async fn drain(rt: &Runtime, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
    let mut deadline: Option<Instant> = None;
    let mut canceled = false;
    while !tasks.is_empty() {
        if deadline.is_none() && shutdown.is_cancelled() {
            tracing::info!(
                running = tasks.len(),
                grace_ms = rt.config.shutdown_grace.as_millis() as u64,
                "shutting down: no more leases; waiting for running tasks"
            );
            deadline = Some(Instant::now() + rt.config.shutdown_grace);
        }
        tokio::select! {
            r = tasks.join_next() => if let Some(r) = r { note_join(r) },
            () = shutdown.cancelled(), if deadline.is_none() => {}
            () = until(deadline), if deadline.is_some() && !canceled => {
                tracing::warn!(running = tasks.len(), "shutdown grace period over; canceling running tasks");
                rt.held().cancel_all(CancelReason::Shutdown);
                canceled = true;
            }
        }
    }
}

fn note_join(r: Result<(), JoinError>) {
    if let Err(e) = r {
        tracing::error!(error = %e, "task supervisor failed");
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A spawned task that does not outlive its owner.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Stops holding a task however its supervisor ends (even by a panic), so
/// the heartbeat loop never keeps a dead task's lease alive.
struct HeldGuard {
    rt: Arc<Runtime>,
    key: HeldKey,
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.rt.held().remove(self.key);
        self.rt.wake.notify_one();
    }
}

/// Runs one leased task from handler to completion.
async fn run_task(
    rt: Arc<Runtime>,
    completer: Completer,
    task: LeasedTask,
    key: HeldKey,
    cancel: CancellationToken,
    handler: Option<DynHandler>,
) {
    let span = tracing::info_span!(
        "task", task_id = %task.task_id, task_type = %task.task_type, attempt = task.attempt
    );
    async move {
        let _guard = HeldGuard { rt: rt.clone(), key };
        tracing::debug!(run_id = %task.run_id, workflow = %task.workflow, step = %task.step, "task leased");
        let timeout = task.timeout_ms.map(Duration::from_millis);
        let (end, reason) = match handler {
            None => (HandlerEnd::NoHandler(no_handler(&task.task_type, &rt)), None),
            Some(h) => {
                let ctx = TaskContext::new(task.clone(), key, cancel.clone(), rt.clone());
                supervise(&rt, key, h(ctx), &cancel, timeout).await
            }
        };
        let Some(ending) = decide(end, reason, &rt.worker_id, rt.config.shutdown_outcome, timeout) else {
            drop_stale(&rt);
            return;
        };
        // Send the last progress and checkpoint before the end, so a failed
        // attempt's checkpoint reaches the next one.
        let flushed = rt.held().finish(key);
        if let Some(rx) = flushed {
            rt.wake.notify_one();
            let _ = tokio::time::timeout(FINAL_FLUSH_WAIT, rx).await;
        }
        if rt.held().reason(key) == Some(CancelReason::LeaseLost) {
            drop_stale(&rt);
            return;
        }
        complete(&rt, &completer, &task, ending).await;
    }
    .instrument(span)
    .await;
}

fn drop_stale(rt: &Runtime) {
    rt.stats.stale.fetch_add(1, Ordering::Relaxed);
    tracing::warn!("lease lost: the task was reaped and belongs to another attempt now; not completing it");
}

fn no_handler(task_type: &str, rt: &Runtime) -> String {
    format!(
        "no handler for task type {task_type:?} on worker {} (it handles: {})",
        rt.worker_id,
        if rt.handler_names.is_empty() { "nothing".to_owned() } else { rt.handler_names.join(", ") }
    )
}

/// How a handler ended, before the cancel reason is taken into account.
#[derive(Debug, PartialEq)]
pub(crate) enum HandlerEnd {
    Returned(Result<Outputs, String>),
    Panicked(String),
    /// It did not return within the cancel grace period and was dropped.
    Abandoned,
    NoHandler(String),
}

impl HandlerEnd {
    fn from_join(r: Result<Result<Outputs, String>, JoinError>) -> HandlerEnd {
        match r {
            Ok(r) => HandlerEnd::Returned(r),
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic".to_owned());
                HandlerEnd::Panicked(msg)
            }
            Err(_) => HandlerEnd::Abandoned,
        }
    }
}

/// Runs the handler in its own task (so a panic is caught and an abort
/// possible), firing its cancel token at the step's timeout; once the token
/// fires, the handler has the cancel grace period to return. Returns how it
/// ended and the cancel reason as it stood at that moment.
async fn supervise(
    rt: &Runtime,
    key: HeldKey,
    fut: HandlerFuture,
    cancel: &CancellationToken,
    timeout: Option<Duration>,
) -> (HandlerEnd, Option<CancelReason>) {
    // Aborted if this supervisor is dropped (the worker's run future was),
    // so no handler outlives its worker.
    let mut handle = AbortOnDrop(tokio::spawn(fut));
    let handle = &mut handle.0;
    let deadline = timeout.map(|d| Instant::now() + d);
    tokio::select! {
        r = &mut *handle => return (HandlerEnd::from_join(r), rt.held().reason(key)),
        () = cancel.cancelled() => {}
        () = until(deadline) => {
            tracing::info!(timeout_ms = timeout.unwrap_or_default().as_millis() as u64, "timed out; stopping the handler");
            rt.held().cancel(key, CancelReason::Timeout);
        }
    }
    let reason = rt.held().reason(key);
    tracing::debug!(?reason, "handler asked to stop");
    match tokio::time::timeout(rt.config.cancel_grace, &mut *handle).await {
        Ok(r) => (HandlerEnd::from_join(r), rt.held().reason(key).or(reason)),
        Err(_) => {
            handle.abort();
            tracing::warn!(
                grace_ms = rt.config.cancel_grace.as_millis() as u64,
                "handler did not stop within the cancel grace period; dropped it"
            );
            (HandlerEnd::Abandoned, rt.held().reason(key).or(reason))
        }
    }
}

/// How an attempt ends, or `None` when it must not be completed at all.
#[derive(Debug, PartialEq)]
pub(crate) struct Ending {
    pub(crate) outcome: AttemptEnd,
    pub(crate) outputs: Outputs,
    pub(crate) error: Option<String>,
}

/// The attempt's end from how its handler ended and why it was asked to
/// stop. A lost lease is never completed (the server would refuse it). A
/// handler that returns after it was asked to stop ends by the reason, not by
/// what it returned: its outputs may be partial.
pub(crate) fn decide(
    end: HandlerEnd,
    reason: Option<CancelReason>,
    worker_id: &str,
    shutdown_outcome: AttemptEnd,
    timeout: Option<Duration>,
) -> Option<Ending> {
    let said = match &end {
        HandlerEnd::Returned(Err(e)) => format!("; the handler said: {e}"),
        HandlerEnd::Panicked(p) => format!("; the handler panicked: {p}"),
        HandlerEnd::Abandoned => "; the handler did not stop in time and was dropped".to_owned(),
        _ => String::new(),
    };
    let stopped =
        |outcome, why: String| Some(Ending { outcome, outputs: Outputs::new(), error: Some(why + &said) });
    match reason {
        Some(CancelReason::LeaseLost) => None,
        Some(CancelReason::Requested) => stopped(AttemptEnd::Canceled, "canceled on request".to_owned()),
        Some(CancelReason::Timeout) => {
            let secs = timeout.unwrap_or_default().as_secs_f64();
            stopped(AttemptEnd::Failed, format!("timed out after {secs}s"))
        }
        Some(CancelReason::Shutdown) => {
            stopped(shutdown_outcome, format!("worker {worker_id} shut down before the task finished"))
        }
        None => Some(match end {
            HandlerEnd::Returned(Ok(outputs)) => {
                Ending { outcome: AttemptEnd::Succeeded, outputs, error: None }
            }
            HandlerEnd::Returned(Err(e)) => {
                Ending { outcome: AttemptEnd::Failed, outputs: Outputs::new(), error: Some(e) }
            }
            HandlerEnd::Panicked(p) => Ending {
                outcome: AttemptEnd::Failed,
                outputs: Outputs::new(),
                error: Some(format!("handler panicked: {p}")),
            },
            // Only a fired token leads to dropping a handler; without a reason
            // it is a supervisor bug, but the task must still end.
            HandlerEnd::Abandoned => Ending {
                outcome: AttemptEnd::Failed,
                outputs: Outputs::new(),
                error: Some("the handler was dropped".to_owned()),
            },
            HandlerEnd::NoHandler(msg) => {
                Ending { outcome: AttemptEnd::Failed, outputs: Outputs::new(), error: Some(msg) }
            }
        }),
    }
}

/// Completes the attempt in the next batch, which retries transient errors
/// (completion is idempotent for one token). The heartbeat loop keeps the
/// lease alive meanwhile. A stale answer is dropped: the task is someone
/// else's now.
async fn complete(rt: &Runtime, completer: &Completer, task: &LeasedTask, ending: Ending) {
    let outcome = ending.outcome;
    let error = ending.error.clone();
    let item = CompleteItem {
        task_id: task.task_id,
        lease_token: task.lease_token,
        outcome,
        exit_code: None,
        outputs: ending.outputs,
        error: ending.error,
    };
    match completer.complete(item).await {
        Ok(status) => {
            let counter = match outcome {
                AttemptEnd::Succeeded => &rt.stats.completed,
                AttemptEnd::Failed => &rt.stats.failed,
                AttemptEnd::Canceled => &rt.stats.canceled,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            match outcome {
                AttemptEnd::Succeeded => tracing::info!(%status, "task succeeded"),
                _ => tracing::info!(?outcome, %status, error = error.as_deref().unwrap_or(""), "task ended"),
            }
        }
        Err(ClientError::LeaseStale { .. }) => {
            rt.stats.stale.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                ?outcome,
                "completion refused: the lease is stale; the task was reaped and belongs to another attempt now"
            );
        }
        Err(e) => {
            rt.stats.completion_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                ?outcome, error = %e, maybe_applied = !e.certainly_not_applied(),
                "could not complete the task; giving up: when its lease expires the server retries or fails it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(pairs: &[(&str, &str)]) -> HandlerEnd {
        HandlerEnd::Returned(Ok(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
    }

    fn d(end: HandlerEnd, reason: Option<CancelReason>) -> Option<Ending> {
        decide(end, reason, "w1", AttemptEnd::Canceled, Some(Duration::from_millis(1500)))
    }

    #[test]
    fn returns_map_to_outcomes() {
        let e = d(ok(&[("N", "3")]), None).unwrap();
        assert_eq!(e.outcome, AttemptEnd::Succeeded);
        assert_eq!(e.outputs.get("N").map(String::as_str), Some("3"));
        assert_eq!(e.error, None);
        let e = d(HandlerEnd::Returned(Err("disk full".into())), None).unwrap();
        assert_eq!((e.outcome, e.error.as_deref()), (AttemptEnd::Failed, Some("disk full")));
        let e = d(HandlerEnd::Panicked("index out of bounds".into()), None).unwrap();
        assert_eq!(e.outcome, AttemptEnd::Failed);
        assert!(e.error.unwrap().contains("panicked: index out of bounds"));
        let e = d(HandlerEnd::NoHandler("no handler for task type \"x\"".into()), None).unwrap();
        assert_eq!(e.outcome, AttemptEnd::Failed);
    }

    #[test]
    fn a_stop_request_decides_whatever_the_handler_returned() {
        let e = d(ok(&[("partial", "1")]), Some(CancelReason::Requested)).unwrap();
        assert_eq!(e.outcome, AttemptEnd::Canceled);
        assert!(e.outputs.is_empty(), "partial outputs of a canceled attempt are not reported");
        let e = d(HandlerEnd::Returned(Err("interrupted".into())), Some(CancelReason::Requested)).unwrap();
        assert_eq!(e.error.as_deref(), Some("canceled on request; the handler said: interrupted"));
        let e = d(HandlerEnd::Abandoned, Some(CancelReason::Timeout)).unwrap();
        assert_eq!(e.outcome, AttemptEnd::Failed);
        assert!(e.error.unwrap().starts_with("timed out after 1.5s; the handler did not stop"));
        let e = d(ok(&[]), Some(CancelReason::Shutdown)).unwrap();
        assert_eq!(e.outcome, AttemptEnd::Canceled);
        assert_eq!(e.error.as_deref(), Some("worker w1 shut down before the task finished"));
        let e = decide(ok(&[]), Some(CancelReason::Shutdown), "w1", AttemptEnd::Failed, None).unwrap();
        assert_eq!(e.outcome, AttemptEnd::Failed, "shutdown outcome is configurable");
    }

    #[test]
    fn a_lost_lease_is_never_completed() {
        assert_eq!(d(ok(&[]), Some(CancelReason::LeaseLost)), None);
        assert_eq!(d(HandlerEnd::Abandoned, Some(CancelReason::LeaseLost)), None);
    }

    #[test]
    fn builder_checks_what_a_worker_needs() {
        let client = Client::new("http://127.0.0.1:1").unwrap();
        let h = |_ctx: TaskContext| async { Ok(Outputs::new()) };
        let err = Worker::builder(client.clone()).handler("t", h).build().unwrap_err();
        assert_eq!(err, BuildError::NoQueue);
        let err = Worker::builder(client.clone()).queue("q").build().unwrap_err();
        assert_eq!(err, BuildError::NoHandlers);
        let err =
            Worker::builder(client.clone()).queue("q").handler("t", h).concurrency(0).build().unwrap_err();
        assert_eq!(err, BuildError::Concurrency(0));
        let w = Worker::builder(client).queue("q").handler("t", h).build().unwrap();
        assert!(w.worker_id().contains(':'), "{}", w.worker_id());
        assert_eq!(w.stats().snapshot(), WorkerStats::default());
    }

    #[test]
    fn handler_errors_keep_their_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("could not resize")]
        struct Outer(#[source] std::io::Error);
        let e: TaskError = Box::new(Outer(std::io::Error::other("disk full")));
        assert_eq!(crate::error::error_chain(&*e), "could not resize: disk full");
    }
}
