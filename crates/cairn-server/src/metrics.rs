//! Every metric Cairn exports at `/metrics` (Prometheus text format), named
//! in one place, with the functions that record them.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `cairn_transitions_total` | counter | `from`, `to` | task status changes (`from="NEW"` for creation) |
//! | `cairn_task_pending_seconds` | histogram | — | time a task spent PENDING before it left it (queue wait, retry back-off) |
//! | `cairn_task_blocked_seconds` | histogram | — | time a task spent BLOCKED on upstream |
//! | `cairn_task_execution_seconds` | histogram | — | time an attempt spent RUNNING |
//! | `cairn_tasks_running` | gauge | `queue` | RUNNING tasks now (`queue="local"` for the local executor) |
//! | `cairn_tasks_pending` | gauge | `queue` | PENDING tasks now |
//! | `cairn_leases_reaped_total` | counter | — | RUNNING attempts failed by the reaper (heartbeat lost) |
//! | `cairn_heartbeats_total` | counter | `result` = `accepted`, `rejected`, `coalesced` | heartbeat items: lease extended, refused (stale token), progress held back by the rate limit |
//! | `cairn_overruns_predicted_total` | counter | — | attempts flagged as predicted to exceed their timeout (once per attempt) |
//! | `cairn_start_failures_total` | counter | `reason` | attempts that never started: `spawn` (the command could not be started), `never_started` (a worker leased it and never reported) |
//! | `cairn_leader` | gauge | — | 1 while this server leads the servers of its store, else 0 |
//! | `cairn_alerts_raised_total` | counter | `kind` | alerts raised by this server while it led |
//! | `cairn_anomalies_open` | gauge | `workflow`, `status` | 1 while an anomaly alert about the workflow's status share is open, else 0 (kept by the leader) |
//! | `cairn_retention_deleted_runs_total` | counter | — | finished runs archived and deleted by retention while this server led |
//! | `cairn_webhook_deliveries_total` | counter | `outcome` = `delivered`, `retrying`, `failed` | webhook delivery attempts by the leader (`retrying`: failed, tried again later; `failed`: given up) |
//! | `cairn_rate_limited_total` | counter | `surface` = `api`, `worker` | requests refused with 429 because their caller was over its rate (`crate::limits`) |
//!
//! Labels never carry ids (runs, tasks, workers): their number must stay small.
//!
//! Who records what: [`observe`] derives transitions, the three phase
//! histograms and reaped leases from [`Event::Transition`]s (run it on an
//! event subscription with [`spawn_observer`], or call it where events are
//! made); the server counts heartbeats accepted and rejected as it answers
//! them; the engine calls the rest — gauges, coalesced heartbeats, predicted
//! overruns, start failures — since only it knows them.

use std::sync::OnceLock;
use std::time::Duration;

use cairn_core::TaskStatus;
use cairn_core::event::Event;
use cairn_core::record::Actor;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub const TRANSITIONS_TOTAL: &str = "cairn_transitions_total";
pub const TASK_PENDING_SECONDS: &str = "cairn_task_pending_seconds";
pub const TASK_BLOCKED_SECONDS: &str = "cairn_task_blocked_seconds";
pub const TASK_EXECUTION_SECONDS: &str = "cairn_task_execution_seconds";
pub const TASKS_RUNNING: &str = "cairn_tasks_running";
pub const TASKS_PENDING: &str = "cairn_tasks_pending";
pub const LEASES_REAPED_TOTAL: &str = "cairn_leases_reaped_total";
pub const HEARTBEATS_TOTAL: &str = "cairn_heartbeats_total";
pub const OVERRUNS_PREDICTED_TOTAL: &str = "cairn_overruns_predicted_total";
pub const START_FAILURES_TOTAL: &str = "cairn_start_failures_total";
pub const LEADER: &str = "cairn_leader";
pub const ALERTS_RAISED_TOTAL: &str = "cairn_alerts_raised_total";
pub const ANOMALIES_OPEN: &str = "cairn_anomalies_open";
pub const RETENTION_DELETED_RUNS_TOTAL: &str = "cairn_retention_deleted_runs_total";
pub const WEBHOOK_DELIVERIES_TOTAL: &str = "cairn_webhook_deliveries_total";
pub const RATE_LIMITED_TOTAL: &str = "cairn_rate_limited_total";

/// Every metric name, for documentation and tests.
pub const ALL: [&str; 16] = [
    TRANSITIONS_TOTAL,
    TASK_PENDING_SECONDS,
    TASK_BLOCKED_SECONDS,
    TASK_EXECUTION_SECONDS,
    TASKS_RUNNING,
    TASKS_PENDING,
    LEASES_REAPED_TOTAL,
    HEARTBEATS_TOTAL,
    OVERRUNS_PREDICTED_TOTAL,
    START_FAILURES_TOTAL,
    LEADER,
    ALERTS_RAISED_TOTAL,
    ANOMALIES_OPEN,
    RETENTION_DELETED_RUNS_TOTAL,
    RATE_LIMITED_TOTAL,
    WEBHOOK_DELIVERIES_TOTAL,
];

/// Histogram buckets of the phase durations, in seconds: from a few
/// milliseconds (in-process handoffs) to a day (long batch jobs).
pub const DURATION_BUCKETS: [f64; 20] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0, 21600.0, 86400.0,
];

/// The queue label of tasks run by the local executor.
pub const LOCAL_QUEUE: &str = "local";

/// The outcome of one heartbeat item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatResult {
    /// The lease was extended.
    Accepted,
    /// The token was stale; nothing changed.
    Rejected,
    /// Progress was held back by the rate limit (the latest is kept).
    Coalesced,
}

impl HeartbeatResult {
    pub const fn as_str(self) -> &'static str {
        match self {
            HeartbeatResult::Accepted => "accepted",
            HeartbeatResult::Rejected => "rejected",
            HeartbeatResult::Coalesced => "coalesced",
        }
    }
}

/// Why an attempt never started (kept apart from heartbeat loss).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFailure {
    /// The command could not be spawned.
    Spawn,
    /// A worker leased the task and never reported on it.
    NeverStarted,
}

impl StartFailure {
    pub const fn as_str(self) -> &'static str {
        match self {
            StartFailure::Spawn => "spawn",
            StartFailure::NeverStarted => "never_started",
        }
    }
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed as the global `metrics`
/// recorder on first call (with the buckets above and every metric's help
/// text), with its upkeep task when called inside a tokio runtime. If
/// another recorder was installed first, Cairn's metrics go there and this
/// handle renders only what it sees (nothing).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = [TASK_PENDING_SECONDS, TASK_BLOCKED_SECONDS, TASK_EXECUTION_SECONDS]
                .into_iter()
                .try_fold(PrometheusBuilder::new(), |b, name| {
                    b.set_buckets_for_metric(Matcher::Full(name.to_owned()), &DURATION_BUCKETS)
                });
            let builder = match builder {
                Ok(b) => b,
                // Only for empty bucket lists, which the constant is not.
                Err(e) => {
                    tracing::error!(error = %e, "metric buckets refused");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "another metrics recorder is installed; /metrics will be empty");
            }
            describe();
            // Histogram samples are drained into buckets at each scrape; a
            // server nobody scrapes drains them here instead.
            if tokio::runtime::Handle::try_current().is_ok() {
                spawn_upkeep(handle.clone(), UPKEEP_INTERVAL);
            }
            handle
        })
        .clone()
}

const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(TRANSITIONS_TOTAL, "Task status changes, by from and to status.");
    describe_histogram!(
        TASK_PENDING_SECONDS,
        Unit::Seconds,
        "Time tasks spent PENDING (queue wait, back-off)."
    );
    describe_histogram!(TASK_BLOCKED_SECONDS, Unit::Seconds, "Time tasks spent BLOCKED on upstream tasks.");
    describe_histogram!(TASK_EXECUTION_SECONDS, Unit::Seconds, "Time attempts spent RUNNING.");
    describe_gauge!(TASKS_RUNNING, "RUNNING tasks, by queue.");
    describe_gauge!(TASKS_PENDING, "PENDING tasks, by queue.");
    describe_counter!(
        LEASES_REAPED_TOTAL,
        "RUNNING attempts failed by the reaper because their lease expired."
    );
    describe_counter!(HEARTBEATS_TOTAL, "Heartbeat items, by result: accepted, rejected, coalesced.");
    describe_counter!(OVERRUNS_PREDICTED_TOTAL, "Attempts predicted to exceed their timeout.");
    describe_counter!(START_FAILURES_TOTAL, "Attempts that never started, by reason.");
    describe_gauge!(LEADER, "1 while this server leads the servers of its store (cron, adoption), else 0.");
    describe_counter!(ALERTS_RAISED_TOTAL, "Alerts raised by this server while it led, by kind.");
    describe_gauge!(
        ANOMALIES_OPEN,
        "1 while an anomaly alert about a workflow's status share is open, else 0."
    );
    describe_counter!(RETENTION_DELETED_RUNS_TOTAL, "Finished runs archived and deleted by retention.");
    describe_counter!(
        WEBHOOK_DELIVERIES_TOTAL,
        "Webhook delivery attempts, by outcome: delivered, retrying, failed."
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        "Requests refused because their caller was over its rate, by surface."
    );
}

/// Drains histogram samples into their buckets now and then, so a server
/// nobody scrapes does not hold every sample.
pub fn spawn_upkeep(handle: PrometheusHandle, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    })
}

/// One task status change.
pub fn record_transition(from: Option<TaskStatus>, to: TaskStatus) {
    let from = from.map_or("NEW", TaskStatus::as_str);
    metrics::counter!(TRANSITIONS_TOTAL, "from" => from, "to" => to.as_str()).increment(1);
}

/// Time spent in `status` when a task leaves it; only PENDING, BLOCKED and
/// RUNNING have a histogram.
pub fn record_phase(status: TaskStatus, spent: Duration) {
    let name = match status {
        TaskStatus::Pending => TASK_PENDING_SECONDS,
        TaskStatus::Blocked => TASK_BLOCKED_SECONDS,
        TaskStatus::Running => TASK_EXECUTION_SECONDS,
        _ => return,
    };
    metrics::histogram!(name).record(spent.as_secs_f64());
}

/// RUNNING tasks of `queue` (`None` = the local executor) now.
pub fn set_tasks_running(queue: Option<&str>, count: u64) {
    metrics::gauge!(TASKS_RUNNING, "queue" => queue.unwrap_or(LOCAL_QUEUE).to_owned()).set(count as f64);
}

/// PENDING tasks of `queue` (`None` = the local executor) now.
pub fn set_tasks_pending(queue: Option<&str>, count: u64) {
    metrics::gauge!(TASKS_PENDING, "queue" => queue.unwrap_or(LOCAL_QUEUE).to_owned()).set(count as f64);
}

pub fn set_leader(leading: bool) {
    metrics::gauge!(LEADER).set(if leading { 1.0 } else { 0.0 });
}

/// After a retention pass: the runs it deleted.
pub fn record_retention_deleted(runs: u64) {
    metrics::counter!(RETENTION_DELETED_RUNS_TOTAL).increment(runs);
}

/// After a pass of the webhook deliverer: its attempts by outcome
/// (`retrying`: failed, to be tried again; `failed`: given up).
pub fn record_webhook_deliveries(delivered: usize, retrying: usize, failed: usize) {
    for (outcome, n) in [("delivered", delivered), ("retrying", retrying), ("failed", failed)] {
        metrics::counter!(WEBHOOK_DELIVERIES_TOTAL, "outcome" => outcome).increment(n as u64);
    }
}

/// After an anomaly check: counts the alerts it raised, and sets the gauge
/// of each (workflow, status): 1 for those open now, 0 for those `closed`.
pub fn record_anomalies<'a>(
    raised: usize,
    open: impl IntoIterator<Item = (&'a str, cairn_core::RunStatus)>,
    closed: impl IntoIterator<Item = (&'a str, cairn_core::RunStatus)>,
) {
    metrics::counter!(ALERTS_RAISED_TOTAL, "kind" => "anomaly").increment(raised as u64);
    let open: Vec<_> = open.into_iter().collect();
    for (value, pairs) in [(0.0, closed.into_iter().collect::<Vec<_>>()), (1.0, open)] {
        for (workflow, status) in pairs {
            metrics::gauge!(ANOMALIES_OPEN, "workflow" => workflow.to_owned(), "status" => status.as_str())
                .set(value);
        }
    }
}

/// A request refused with 429 on `surface` (`api` or `worker`).
pub fn record_rate_limited(surface: &'static str) {
    metrics::counter!(RATE_LIMITED_TOTAL, "surface" => surface).increment(1);
}

pub fn record_lease_reaped() {
    metrics::counter!(LEASES_REAPED_TOTAL).increment(1);
}

pub fn record_heartbeats(result: HeartbeatResult, count: u64) {
    if count > 0 {
        metrics::counter!(HEARTBEATS_TOTAL, "result" => result.as_str()).increment(count);
    }
}

/// Once per attempt, when it is first predicted to overrun its timeout.
pub fn record_overrun_predicted() {
    metrics::counter!(OVERRUNS_PREDICTED_TOTAL).increment(1);
}

pub fn record_start_failure(reason: StartFailure) {
    metrics::counter!(START_FAILURES_TOTAL, "reason" => reason.as_str()).increment(1);
}

/// Records what an event tells by itself: a transition's count, the phase it
/// ended (from `from_at`), and a lease reaped (RUNNING ended by the reaper).
/// Progress and run events record nothing here.
pub fn observe(event: &Event) {
    let Event::Transition(t) = event else { return };
    record_transition(t.from, t.to);
    if let (Some(from), Some(since)) = (t.from, t.from_at) {
        record_phase(from, t.at.since(since));
    }
    if t.from == Some(TaskStatus::Running) && t.actor == Actor::Reaper {
        record_lease_reaped();
    }
}

/// What the metrics need to remember between events: RUNNING and PENDING
/// counts per queue, and which attempts were already predicted to overrun.
#[derive(Default)]
pub struct Observer {
    per_queue: std::collections::HashMap<Option<String>, (i64, i64)>,
    overrunning: std::collections::HashSet<(cairn_core::TaskId, u32)>,
}

impl Observer {
    /// [`observe`], plus the gauges, overrun predictions (once per attempt)
    /// and start failures.
    pub fn observe(&mut self, event: &Event) {
        observe(event);
        match event {
            Event::Transition(t) => {
                let counts = self.per_queue.entry(t.queue.clone()).or_default();
                for (status, delta) in [(t.from, -1), (Some(t.to), 1)] {
                    match status {
                        Some(TaskStatus::Running) => counts.0 += delta,
                        Some(TaskStatus::Pending) => counts.1 += delta,
                        _ => {}
                    }
                }
                let (running, pending) = (counts.0.max(0) as u64, counts.1.max(0) as u64);
                set_tasks_running(t.queue.as_deref(), running);
                set_tasks_pending(t.queue.as_deref(), pending);
                if t.from == Some(TaskStatus::Running) {
                    self.overrunning.remove(&(t.task_id, t.attempt));
                    // The executor's words for a command that never ran (see the engine's process module).
                    if t.reason.contains("could not start") {
                        record_start_failure(StartFailure::Spawn);
                    } else if t.reason.contains("never started (worker") {
                        record_start_failure(StartFailure::NeverStarted);
                    }
                }
            }
            Event::Progress(p) if p.overrun_predicted && self.overrunning.insert((p.task_id, p.attempt)) => {
                record_overrun_predicted();
            }
            _ => {}
        }
    }
}

/// Runs an [`Observer`] on every event of `events` until the sender is gone.
/// Events missed by lagging are gone for the metrics too; the count is logged.
pub fn spawn_observer(mut events: broadcast::Receiver<Event>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut observer = Observer::default();
        loop {
            match events.recv().await {
                Ok(event) => observer.observe(&event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "metrics fell behind the event stream");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}
