//! The worker's held leases and its one heartbeat loop.
//!
//! [`HeldTasks`] is the state every running task shares with the loop: each
//! task's lease token, heartbeat interval, latest progress (behind a
//! client-side [`ProgressLimiter`]), checkpoint and cancel token. Deciding
//! *when* the next batch goes out ([`HeldTasks::next_send_at`]), *what* it
//! carries ([`HeldTasks::build_batch`]) and what its answer means
//! ([`HeldTasks::apply_acks`]) are plain functions of that state and the time,
//! tested without a server or a runtime; [`heartbeat_loop`] only sleeps, sends
//! and hands the answer back.
//!
//! One batch carries every held task, so a worker running a hundred tasks
//! makes one call per interval, not a hundred.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_core::progress::{Progress, ProgressLimiter, ProgressLimits};
use cairn_core::protocol::{AckStatus, HeartbeatItem, HeartbeatRequest, HeartbeatResponse, LeasedTask};
use cairn_core::{LeaseToken, TaskId, Timestamp};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::worker::Runtime;

/// Shortest heartbeat interval honoured, whatever the server asks: keeps a
/// zero or tiny `heartbeat_interval_ms` from turning the loop into a spin.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// One attempt held by this worker: a task id and its attempt number. Two
/// attempts of one task can be held at once (the old one's lease was reaped
/// and the retry came back to this worker while the old handler winds down),
/// so the task id alone is not a key.
pub(crate) type HeldKey = (TaskId, u32);

/// Why a task's [`crate::TaskContext::cancelled`] token fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// A heartbeat answer said `cancel_requested`: the task or its run was canceled.
    Requested,
    /// A heartbeat answer said `lease_stale`: the lease was lost (reaped after
    /// missed heartbeats) and the task belongs to someone else now. The worker
    /// will not complete it.
    LeaseLost,
    /// The step's `timeout_ms` passed.
    Timeout,
    /// The worker is shutting down and its grace period ran out.
    Shutdown,
}

/// A task this worker holds a lease on.
#[derive(Debug)]
struct Held {
    token: LeaseToken,
    interval: Duration,
    /// When the lease was last extended, as far as we know: the lease itself,
    /// then each acknowledged batch's send time.
    last_beat: Timestamp,
    lease_expires_at: Timestamp,
    limiter: ProgressLimiter,
    /// When the limiter last let a value through.
    limiter_passed_at: Option<Timestamp>,
    /// Whether the limiter holds a value back.
    limiter_holding: bool,
    /// The latest value the limiter let through; sent until acknowledged.
    progress: Option<Progress>,
    progress_gen: u64,
    progress_acked_gen: u64,
    details: Option<serde_json::Value>,
    details_gen: u64,
    details_acked_gen: u64,
    cancel: CancellationToken,
    reason: Option<CancelReason>,
    /// The handler has returned: the limiter's held value goes out now.
    ending: bool,
    /// Completions waiting for this task's last progress to be sent.
    waiters: Vec<oneshot::Sender<()>>,
}

impl Held {
    fn dirty(&self) -> bool {
        self.progress_gen > self.progress_acked_gen || self.details_gen > self.details_acked_gen
    }

    fn stale(&self) -> bool {
        self.reason == Some(CancelReason::LeaseLost)
    }

    /// Sets the reason (a lost lease overrides any other: it decides that the
    /// task is not completed at all) and fires the token.
    fn cancel(&mut self, reason: CancelReason) -> bool {
        let first = self.reason.is_none();
        if first || reason == CancelReason::LeaseLost {
            self.reason = Some(reason);
        }
        if reason == CancelReason::LeaseLost {
            // Nothing more is sent for a lost lease: release a completion
            // waiting for its last progress rather than let it time out.
            self.waiters.clear();
        }
        self.cancel.cancel();
        first
    }
}

/// A batch on its way: the request, and what it promised to whom.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) request: HeartbeatRequest,
    /// When it was built; what the server extends leases from.
    at: Timestamp,
    /// For each item, in request order: which attempt, and the generations
    /// of its progress and details it carried.
    sent: Vec<(HeldKey, LeaseToken, u64, u64)>,
    /// Progress updates this batch's values superseded before they were sent.
    pub(crate) coalesced: u64,
    /// Dropped with the batch, which wakes the completions waiting for it.
    _waiters: Vec<oneshot::Sender<()>>,
}

/// What a batch's answer changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AckSummary {
    pub(crate) stale: Vec<TaskId>,
    pub(crate) cancel_requested: Vec<TaskId>,
    /// Items the answer did not mention (a server bug; logged).
    pub(crate) missing: usize,
}

/// The leases a worker holds, and the heartbeat schedule over them.
#[derive(Debug)]
pub(crate) struct HeldTasks {
    tasks: BTreeMap<HeldKey, Held>,
    limits: ProgressLimits,
    /// Least time between a batch and an early one sent only because progress
    /// or a checkpoint changed; `None` = progress waits for the regular beat.
    early_gap: Option<Duration>,
    last_batch_at: Option<Timestamp>,
}

impl HeldTasks {
    pub(crate) fn new(limits: ProgressLimits, early_gap: Option<Duration>) -> Self {
        HeldTasks { tasks: BTreeMap::new(), limits, early_gap, last_batch_at: None }
    }

    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Starts holding a freshly leased task; `now` is when its lease was
    /// granted (or received), from which its first heartbeat is due.
    pub(crate) fn insert(&mut self, task: &LeasedTask, cancel: CancellationToken, now: Timestamp) -> HeldKey {
        let key = (task.task_id, task.attempt);
        let held = Held {
            token: task.lease_token,
            interval: Duration::from_millis(task.heartbeat_interval_ms).max(MIN_INTERVAL),
            last_beat: now,
            lease_expires_at: task.lease_expires_at,
            limiter: ProgressLimiter::new(self.limits),
            limiter_passed_at: None,
            limiter_holding: false,
            progress: None,
            progress_gen: 0,
            progress_acked_gen: 0,
            details: None,
            details_gen: 0,
            details_acked_gen: 0,
            cancel,
            reason: None,
            ending: false,
            waiters: Vec::new(),
        };
        if let Some(old) = self.tasks.insert(key, held) {
            // The same attempt leased twice cannot happen with a correct
            // server; stop the old handler rather than run it twice.
            let mut old = old;
            old.cancel(CancelReason::LeaseLost);
        }
        key
    }

    /// Stops holding a task (it was completed, or dropped as stale).
    pub(crate) fn remove(&mut self, key: HeldKey) {
        self.tasks.remove(&key);
    }

    /// A task reports progress. Returns how many earlier updates this one
    /// superseded before they were sent (for the coalesced count).
    pub(crate) fn offer_progress(&mut self, key: HeldKey, p: Progress, now: Timestamp) -> u64 {
        let Some(t) = self.tasks.get_mut(&key) else { return 0 };
        let before = t.limiter.coalesced();
        let mut superseded = 0;
        match t.limiter.offer(p, now) {
            Some(p) => {
                t.limiter_passed_at = Some(now);
                t.limiter_holding = false;
                if t.progress_gen > t.progress_acked_gen {
                    superseded += 1;
                }
                t.progress = Some(p);
                t.progress_gen += 1;
            }
            None => t.limiter_holding = true,
        }
        superseded + (t.limiter.coalesced() - before)
    }

    /// A task saves a checkpoint; the next batch carries it.
    pub(crate) fn set_details(&mut self, key: HeldKey, details: serde_json::Value) {
        if let Some(t) = self.tasks.get_mut(&key) {
            t.details = Some(details);
            t.details_gen += 1;
        }
    }

    /// Fires a task's cancel token. Returns whether this was its first reason.
    pub(crate) fn cancel(&mut self, key: HeldKey, reason: CancelReason) -> bool {
        self.tasks.get_mut(&key).is_some_and(|t| t.cancel(reason))
    }

    /// Fires every task's cancel token (the worker's shutdown grace ran out).
    pub(crate) fn cancel_all(&mut self, reason: CancelReason) {
        for t in self.tasks.values_mut() {
            t.cancel(reason);
        }
    }

    pub(crate) fn reason(&self, key: HeldKey) -> Option<CancelReason> {
        self.tasks.get(&key).and_then(|t| t.reason)
    }

    pub(crate) fn lease_expires_at(&self, key: HeldKey) -> Option<Timestamp> {
        self.tasks.get(&key).map(|t| t.lease_expires_at)
    }

    /// The task's handler has returned. If it has progress or a checkpoint
    /// not yet sent, the next batch goes out at once and carries it, and the
    /// receiver returned here fires when that batch has been answered (or
    /// failed): completing only then keeps the last progress before the end.
    pub(crate) fn finish(&mut self, key: HeldKey) -> Option<oneshot::Receiver<()>> {
        let t = self.tasks.get_mut(&key)?;
        t.ending = true;
        if t.stale() || !(t.dirty() || t.limiter_holding) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        t.waiters.push(tx);
        Some(rx)
    }

    /// When the next batch should go: when the first held lease's interval
    /// runs out, or sooner to carry new progress (no sooner than
    /// `early_gap` after the previous batch), or at once when a finished task
    /// waits to send its last progress. `None` when nothing needs a beat.
    pub(crate) fn next_send_at(&self) -> Option<Timestamp> {
        let now_please = Timestamp::from_micros(i64::MIN);
        let gate = match (self.early_gap, self.last_batch_at) {
            (Some(gap), Some(last)) => Some(last.saturating_add(gap)),
            (Some(_), None) => Some(now_please),
            (None, _) => None,
        };
        let mut due: Option<Timestamp> = None;
        for t in self.tasks.values().filter(|t| !t.stale()) {
            if !t.waiters.is_empty() {
                return Some(now_please);
            }
            let mut at = t.last_beat.saturating_add(t.interval);
            if let Some(gate) = gate {
                if t.dirty() {
                    at = at.min(gate);
                }
                if let (true, Some(passed)) = (t.limiter_holding, t.limiter_passed_at) {
                    at = at.min(gate.max(passed.saturating_add(self.limits.min_interval)));
                }
            }
            due = Some(due.map_or(at, |d| d.min(at)));
        }
        due
    }

    /// Builds the batch for every held task whose lease is still ours: each
    /// item carries the task's progress and checkpoint if they changed since
    /// the last acknowledged batch. `None` when no task needs a beat.
    pub(crate) fn build_batch(&mut self, worker_id: &str, now: Timestamp) -> Option<Batch> {
        let mut items = Vec::new();
        let mut sent = Vec::new();
        let mut waiters = Vec::new();
        let mut coalesced = 0;
        for (key, t) in self.tasks.iter_mut().filter(|(_, t)| !t.stale()) {
            // A value the limiter held back goes out once its interval has
            // passed, or at the end regardless: the latest is never lost.
            let released = if t.ending { t.limiter.take_held() } else { t.limiter.flush_due(now) };
            if let Some(p) = released {
                t.limiter_passed_at = Some(now);
                t.limiter_holding = false;
                if t.progress_gen > t.progress_acked_gen {
                    coalesced += 1;
                }
                t.progress = Some(p);
                t.progress_gen += 1;
            }
            let progress = t.progress.as_ref().filter(|_| t.progress_gen > t.progress_acked_gen);
            let details = t.details.as_ref().filter(|_| t.details_gen > t.details_acked_gen);
            items.push(HeartbeatItem {
                task_id: key.0,
                lease_token: t.token,
                progress_percent: progress.map(|p| p.percent),
                progress_message: progress.and_then(|p| p.message.clone()),
                details: details.cloned(),
            });
            sent.push((*key, t.token, t.progress_gen, t.details_gen));
            waiters.append(&mut t.waiters);
        }
        if items.is_empty() {
            return None;
        }
        self.last_batch_at = Some(now);
        Some(Batch {
            request: HeartbeatRequest { worker_id: worker_id.to_owned(), items },
            at: now,
            sent,
            coalesced,
            _waiters: waiters,
        })
    }

    /// Applies a batch's answer: extends what was acknowledged, marks what
    /// was sent as delivered, and fires the cancel token of every task whose
    /// lease is stale or whose cancellation was requested.
    pub(crate) fn apply_acks(&mut self, batch: &Batch, resp: &HeartbeatResponse) -> AckSummary {
        let mut summary = AckSummary::default();
        for (i, (key, token, progress_gen, details_gen)) in batch.sent.iter().enumerate() {
            // Acks come in request order; look further only if the server
            // did not keep to it.
            let ack = resp
                .items
                .get(i)
                .filter(|a| a.task_id == key.0)
                .or_else(|| resp.items.iter().find(|a| a.task_id == key.0));
            // The attempt may have ended (or been replaced) since the batch left.
            let Some(t) = self.tasks.get_mut(key).filter(|t| t.token == *token) else { continue };
            let Some(ack) = ack else {
                // Do not resend at once (that could spin on a server that
                // keeps leaving it out); the lease will tell on the next beat.
                summary.missing += 1;
                t.last_beat = t.last_beat.max(batch.at);
                continue;
            };
            match ack.status {
                AckStatus::Ok => {
                    t.last_beat = t.last_beat.max(batch.at);
                    if let Some(exp) = ack.lease_expires_at {
                        t.lease_expires_at = t.lease_expires_at.max(exp);
                    }
                    t.progress_acked_gen = t.progress_acked_gen.max(*progress_gen);
                    t.details_acked_gen = t.details_acked_gen.max(*details_gen);
                    // A task whose handler has returned is past stopping;
                    // its completion decides, so it is not reported.
                    if ack.cancel_requested && t.cancel(CancelReason::Requested) && !t.ending {
                        summary.cancel_requested.push(key.0);
                    }
                }
                AckStatus::LeaseStale => {
                    if !t.stale() {
                        t.cancel(CancelReason::LeaseLost);
                        if !t.ending {
                            summary.stale.push(key.0);
                        }
                    }
                }
            }
        }
        summary
    }
}

/// The worker's one heartbeat loop: sleeps until [`HeldTasks::next_send_at`]
/// (or until woken by new progress, a new lease or a finished task), sends
/// the batch, applies the answer; on an error backs off and tries again.
/// Runs until `stop`, which the worker fires once no task is held.
pub(crate) async fn heartbeat_loop(rt: Arc<Runtime>, stop: CancellationToken) {
    let mut failures: u32 = 0;
    loop {
        let now = rt.clock.now();
        let due = rt.held().next_send_at();
        let wait = due.map(|d| d.since(now));
        if wait != Some(Duration::ZERO) {
            tokio::select! {
                () = stop.cancelled() => return,
                () = rt.wake.notified() => continue,
                () = sleep_or_forever(wait) => continue,
            }
        }
        let Some(batch) = rt.held().build_batch(&rt.worker_id, rt.clock.now()) else { continue };
        let n = batch.request.items.len();
        rt.stats.progress_coalesced.fetch_add(batch.coalesced, std::sync::atomic::Ordering::Relaxed);
        rt.stats.heartbeat_calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rt.stats.heartbeat_items.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        match rt.client.heartbeat(&batch.request).await {
            Ok(resp) => {
                failures = 0;
                let summary = rt.held().apply_acks(&batch, &resp);
                for task_id in &summary.stale {
                    tracing::warn!(%task_id, "lease lost: the server says it is stale; stopping the task");
                }
                for task_id in &summary.cancel_requested {
                    tracing::info!(%task_id, "cancellation requested");
                }
                if summary.missing > 0 {
                    tracing::warn!(
                        missing = summary.missing,
                        items = n,
                        "heartbeat answer left out some tasks"
                    );
                }
                tracing::trace!(items = n, "heartbeat sent");
            }
            Err(e) => {
                rt.stats.heartbeat_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                drop(batch);
                // Back off, but never past the shortest interval held: the
                // leases are at stake.
                let cap = rt.held().shortest_interval().unwrap_or(MIN_INTERVAL);
                let delay = crate::backoff::rate_limit_wait(rt.config.backoff.delay(failures), &e).min(cap);
                failures = failures.saturating_add(1);
                if e.is_retryable() {
                    tracing::warn!(error = %e, items = n, failures, retry_in_ms = delay.as_millis() as u64, "heartbeat failed");
                } else {
                    // A refusal fails every lease in the batch: loud, and
                    // retried anyway in case the cause is passing.
                    tracing::error!(error = %e, items = n, failures, retry_in_ms = delay.as_millis() as u64, "heartbeat refused");
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

impl HeldTasks {
    fn shortest_interval(&self) -> Option<Duration> {
        self.tasks.values().map(|t| t.interval).min()
    }
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::RunId;
    use cairn_core::protocol::HeartbeatAck;

    const T0: i64 = 1_767_225_600_000_000;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_micros(T0 + ms * 1000)
    }

    fn leased(n: u8, interval_ms: u64) -> LeasedTask {
        LeasedTask {
            task_id: TaskId::from_bytes([n; 16]),
            run_id: RunId::from_bytes([0; 16]),
            workflow: "wf".into(),
            step: format!("s{n}"),
            task_type: "t".into(),
            attempt: 1,
            lease_token: LeaseToken::from_bytes([n; 16]),
            lease_expires_at: at(30_000),
            heartbeat_interval_ms: interval_ms,
            timeout_ms: None,
            command: None,
            input: BTreeMap::new(),
            details: None,
        }
    }

    fn limits() -> ProgressLimits {
        ProgressLimits { min_interval: Duration::from_millis(1000), min_change: 10.0 }
    }

    fn held(early: Option<u64>) -> HeldTasks {
        HeldTasks::new(limits(), early.map(Duration::from_millis))
    }

    fn p(pct: f32) -> Progress {
        Progress::new(pct, Some(format!("at {pct}"))).unwrap()
    }

    fn ok_acks(batch: &Batch) -> HeartbeatResponse {
        HeartbeatResponse {
            items: batch
                .request
                .items
                .iter()
                .map(|i| HeartbeatAck {
                    task_id: i.task_id,
                    status: AckStatus::Ok,
                    lease_expires_at: Some(at(60_000)),
                    cancel_requested: false,
                })
                .collect(),
        }
    }

    #[test]
    fn one_batch_for_all_tasks_at_the_shortest_interval() {
        let mut h = held(None);
        assert_eq!(h.next_send_at(), None, "nothing held, nothing to send");
        assert!(h.build_batch("w", at(0)).is_none());
        h.insert(&leased(1, 3000), CancellationToken::new(), at(0));
        h.insert(&leased(2, 1000), CancellationToken::new(), at(500));
        assert_eq!(h.next_send_at(), Some(at(1500)), "the 1 s task leased at 0.5 s");
        let b = h.build_batch("w", at(1500)).unwrap();
        assert_eq!(b.request.worker_id, "w");
        assert_eq!(b.request.items.len(), 2, "every held task rides on the batch");
        h.apply_acks(&b, &ok_acks(&b));
        assert_eq!(h.next_send_at(), Some(at(2500)));
        assert_eq!(h.lease_expires_at((TaskId::from_bytes([1; 16]), 1)), Some(at(60_000)));
    }

    #[test]
    fn a_failed_batch_leaves_the_tasks_due() {
        let mut h = held(None);
        let key = h.insert(&leased(1, 1000), CancellationToken::new(), at(0));
        h.offer_progress(key, p(10.0), at(100));
        let b = h.build_batch("w", at(1000)).unwrap();
        assert_eq!(b.request.items[0].progress_percent, Some(10.0));
        drop(b); // the call failed
        assert_eq!(h.next_send_at(), Some(at(1000)), "still due: the lease was not extended");
        let b = h.build_batch("w", at(1200)).unwrap();
        assert_eq!(b.request.items[0].progress_percent, Some(10.0), "unacknowledged progress is sent again");
        h.apply_acks(&b, &ok_acks(&b));
        let b = h.build_batch("w", at(2200)).unwrap();
        assert_eq!(b.request.items[0].progress_percent, None, "acknowledged progress is not repeated");
        assert_eq!(b.request.items[0].progress_message, None);
    }

    #[test]
    fn progress_is_rate_limited_coalesced_and_the_latest_kept() {
        let mut h = held(None);
        let key = h.insert(&leased(1, 5000), CancellationToken::new(), at(0));
        assert_eq!(h.offer_progress(key, p(1.0), at(0)), 0, "the first value passes");
        assert_eq!(h.offer_progress(key, p(2.0), at(100)), 0, "held back");
        assert_eq!(h.offer_progress(key, p(3.0), at(200)), 1, "supersedes 2%");
        assert_eq!(h.offer_progress(key, p(50.0), at(300)), 2, "a big jump passes; supersedes 1% and 3%");
        let b = h.build_batch("w", at(400)).unwrap();
        assert_eq!(b.request.items[0].progress_percent, Some(50.0));
        assert_eq!(b.request.items[0].progress_message.as_deref(), Some("at 50"));
        h.apply_acks(&b, &ok_acks(&b));
        h.offer_progress(key, p(51.0), at(500));
        let b = h.build_batch("w", at(900)).unwrap();
        assert_eq!(b.request.items[0].progress_percent, None, "51% is held until 1 s after 50%");
        h.apply_acks(&b, &ok_acks(&b));
        let b = h.build_batch("w", at(1300)).unwrap();
        assert_eq!(b.request.items[0].progress_percent, Some(51.0), "then the latest goes out");
    }

    #[test]
    fn new_progress_brings_the_batch_forward_no_sooner_than_the_gap() {
        let mut h = held(Some(1000));
        let key = h.insert(&leased(1, 10_000), CancellationToken::new(), at(0));
        assert_eq!(h.next_send_at(), Some(at(10_000)));
        h.offer_progress(key, p(10.0), at(200));
        assert!(h.next_send_at().unwrap() <= at(200), "no batch yet: it may go at once");
        let b = h.build_batch("w", at(200)).unwrap();
        h.apply_acks(&b, &ok_acks(&b));
        assert_eq!(h.next_send_at(), Some(at(10_200)));
        h.offer_progress(key, p(30.0), at(300));
        assert_eq!(h.next_send_at(), Some(at(1200)), "one early batch per gap");
        let b = h.build_batch("w", at(1200)).unwrap();
        h.apply_acks(&b, &ok_acks(&b));
        // A value the limiter holds back is due when its interval ends, and
        // no sooner than the gap after the last batch.
        h.offer_progress(key, p(31.0), at(1250));
        assert_eq!(h.next_send_at(), Some(at(2200)));
        let b = h.build_batch("w", at(2200)).unwrap();
        assert_eq!(b.request.items[0].progress_percent, Some(31.0), "released by the limiter");
        h.apply_acks(&b, &ok_acks(&b));
        assert_eq!(h.next_send_at(), Some(at(12_200)));
    }

    #[test]
    fn without_early_flush_progress_waits_for_the_regular_beat() {
        let mut h = held(None);
        let key = h.insert(&leased(1, 10_000), CancellationToken::new(), at(0));
        h.offer_progress(key, p(10.0), at(200));
        assert_eq!(h.next_send_at(), Some(at(10_000)));
    }

    #[test]
    fn a_finished_task_flushes_its_last_progress_before_completing() {
        let mut h = held(None);
        let key = h.insert(&leased(1, 10_000), CancellationToken::new(), at(0));
        let quiet = h.insert(&leased(2, 10_000), CancellationToken::new(), at(0));
        h.offer_progress(key, p(10.0), at(0));
        let b = h.build_batch("w", at(100)).unwrap();
        h.apply_acks(&b, &ok_acks(&b));
        h.offer_progress(key, p(12.0), at(200)); // held back by the limiter
        assert!(h.finish(quiet).is_none(), "nothing unsent: complete at once");
        let mut rx = h.finish(key).expect("12% is unsent");
        assert_eq!(h.next_send_at(), Some(Timestamp::from_micros(i64::MIN)), "send now");
        let b = h.build_batch("w", at(300)).unwrap();
        assert_eq!(b.request.items[0].progress_percent, Some(12.0), "the held value, before its interval");
        assert!(rx.try_recv().is_err(), "still waiting for the answer");
        h.apply_acks(&b, &ok_acks(&b));
        drop(b);
        assert!(matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed)), "woken");
    }

    #[test]
    fn a_lost_lease_releases_a_waiting_completion() {
        let mut h = held(None);
        let key = h.insert(&leased(1, 10_000), CancellationToken::new(), at(0));
        h.offer_progress(key, p(10.0), at(0));
        let mut rx = h.finish(key).unwrap();
        h.cancel(key, CancelReason::LeaseLost);
        assert!(matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
        assert_eq!(h.next_send_at(), None, "nothing to heartbeat");
    }

    #[test]
    fn checkpoints_ride_until_acknowledged() {
        let mut h = held(None);
        let key = h.insert(&leased(1, 1000), CancellationToken::new(), at(0));
        h.set_details(key, serde_json::json!({"offset": 10}));
        h.set_details(key, serde_json::json!({"offset": 20}));
        let b = h.build_batch("w", at(1000)).unwrap();
        assert_eq!(b.request.items[0].details, Some(serde_json::json!({"offset": 20})));
        h.set_details(key, serde_json::json!({"offset": 30}));
        h.apply_acks(&b, &ok_acks(&b));
        let b = h.build_batch("w", at(2000)).unwrap();
        assert_eq!(
            b.request.items[0].details,
            Some(serde_json::json!({"offset": 30})),
            "the newer checkpoint, set while the batch was out, is still unsent"
        );
        h.apply_acks(&b, &ok_acks(&b));
        let b = h.build_batch("w", at(3000)).unwrap();
        assert_eq!(b.request.items[0].details, None);
    }

    #[test]
    fn acks_cancel_stale_and_canceled_tasks() {
        let mut h = held(None);
        let c1 = CancellationToken::new();
        let c2 = CancellationToken::new();
        let k1 = h.insert(&leased(1, 1000), c1.clone(), at(0));
        let k2 = h.insert(&leased(2, 1000), c2.clone(), at(0));
        let k3 = h.insert(&leased(3, 1000), CancellationToken::new(), at(0));
        let b = h.build_batch("w", at(1000)).unwrap();
        let mut resp = ok_acks(&b);
        resp.items[0].status = AckStatus::LeaseStale;
        resp.items[0].lease_expires_at = None;
        resp.items[1].cancel_requested = true;
        resp.items.swap(1, 2); // out of order: matched by task id
        let s = h.apply_acks(&b, &resp);
        assert_eq!(s.stale, vec![k1.0]);
        assert_eq!(s.cancel_requested, vec![k2.0]);
        assert!(c1.is_cancelled() && c2.is_cancelled());
        assert_eq!(h.reason(k1), Some(CancelReason::LeaseLost));
        assert_eq!(h.reason(k2), Some(CancelReason::Requested));
        assert_eq!(h.reason(k3), None);
        // A repeated cancel request is reported once.
        let b = h.build_batch("w", at(2000)).unwrap();
        assert_eq!(b.request.items.len(), 2, "the stale task is not heartbeaten any more");
        let mut resp = ok_acks(&b);
        resp.items[0].cancel_requested = true;
        assert!(h.apply_acks(&b, &resp).cancel_requested.is_empty());
        // A stale lease overrides an earlier reason: the task must not be completed.
        h.cancel(k2, CancelReason::LeaseLost);
        assert_eq!(h.reason(k2), Some(CancelReason::LeaseLost));
        h.cancel(k2, CancelReason::Shutdown);
        assert_eq!(h.reason(k2), Some(CancelReason::LeaseLost));
    }

    #[test]
    fn answers_for_an_ended_or_replaced_attempt_are_ignored() {
        let mut h = held(None);
        let mut t = leased(1, 1000);
        let k1 = h.insert(&t, CancellationToken::new(), at(0));
        let b = h.build_batch("w", at(1000)).unwrap();
        // The attempt ends and a retry of the same task is leased meanwhile.
        h.remove(k1);
        t.attempt = 2;
        t.lease_token = LeaseToken::from_bytes([9; 16]);
        let k2 = h.insert(&t, CancellationToken::new(), at(1100));
        let mut resp = ok_acks(&b);
        resp.items[0].status = AckStatus::LeaseStale;
        assert!(h.apply_acks(&b, &resp).stale.is_empty());
        assert_eq!(h.reason(k2), None, "the old attempt's stale answer does not touch the new one");
    }

    #[test]
    fn missing_acks_do_not_make_the_batch_spin() {
        let mut h = held(None);
        h.insert(&leased(1, 1000), CancellationToken::new(), at(0));
        let b = h.build_batch("w", at(1000)).unwrap();
        let s = h.apply_acks(&b, &HeartbeatResponse { items: vec![] });
        assert_eq!(s.missing, 1);
        assert_eq!(h.next_send_at(), Some(at(2000)));
    }

    #[test]
    fn tiny_intervals_are_floored() {
        let mut h = held(None);
        h.insert(&leased(1, 0), CancellationToken::new(), at(0));
        assert_eq!(h.next_send_at(), Some(at(100)));
    }
}
