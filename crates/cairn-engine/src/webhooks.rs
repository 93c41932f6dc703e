//! Notifications out of the engine: the [`Notifier`] turns live events into
//! notifications (`cairn_core::notify`) and routes each to the targets of the
//! alert rules that match — a log line, or a row in the store's webhook
//! outbox — and the [`Deliverer`] posts the outbox's due rows, signed, and
//! records every attempt.
//!
//! A delivery is a `POST` of the notification's JSON with
//! `X-Cairn-Event: <kind>`, `X-Cairn-Delivery: <id>`,
//! `X-Cairn-Timestamp: <unix seconds>` and
//! `X-Cairn-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//! 2xx delivers it; 408, 429, 5xx and transport errors retry after
//! [`BACKOFF`] until the webhook's attempts run out; any other answer gives
//! up at once.
//!
//! Architecture invariant: the outbox is the only memory of a delivery. A
//! server that stops loses nothing (the rows wait in the store) and one
//! that starts again delivers what was pending; only the leader delivers,
//! so two servers never post one row at once.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::event::Event;
use cairn_core::notify::{Notification, NotifyConfig, NotifyKind, ReportEvery, ReportSchedule, Target};
use cairn_core::report::ReportPeriod;
use cairn_core::{RunStatus, Timestamp};
use cairn_store::history::{Order, RunFilter, RunSearch, RunSort};
use cairn_store::{AttemptNext, Delivery, DeliveryAttempt, NewDelivery, Store};
use hmac::{KeyInit, Mac};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{EngineClock, EngineError};

/// Waits before the 2nd, 3rd, … attempt; the last repeats.
pub const BACKOFF: [Duration; 6] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(60 * 60),
];

/// How long one attempt may take, answer included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows attempted in one pass; the rest wait for the next.
const PASS_LIMIT: usize = 32;

/// How many overrun predictions are remembered, to announce each once.
const OVERRUNS_REMEMBERED: usize = 4096;

/// The wait after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let i = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX).min(BACKOFF.len() - 1);
    BACKOFF[i]
}

/// `sha256=<hex>` of the HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let bytes = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + bytes.len() * 2);
    hex.push_str("sha256=");
    for b in bytes {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// Turns events into notifications and routes them.
pub struct Notifier<S> {
    store: Arc<S>,
    config: Arc<NotifyConfig>,
    /// Poked when a webhook row is enqueued, so the deliverer need not wait.
    enqueued: Arc<Notify>,
    overruns: (BTreeSet<String>, VecDeque<String>),
}

impl<S: Store> Notifier<S> {
    pub fn new(store: Arc<S>, config: Arc<NotifyConfig>, enqueued: Arc<Notify>) -> Self {
        Notifier { store, config, enqueued, overruns: Default::default() }
    }

    /// The notifications `event` makes that some rule wants.
    pub async fn notifications(&mut self, event: &Event) -> Result<Vec<Notification>, EngineError> {
        if let Some(n) = Notification::from_event(event) {
            if !self.config.wants(n.kind) {
                return Ok(vec![]);
            }
            // A prediction repeats with every progress report of the attempt.
            if n.kind == NotifyKind::OverrunPredicted && !self.first_overrun(&n.key) {
                return Ok(vec![]);
            }
            return Ok(vec![n]);
        }
        if let Event::Run(run) = event
            && run.to == RunStatus::Completed
            && self.config.wants(NotifyKind::RunRecovered)
            && let Some(previous) = self.previous_failed(run).await?
        {
            return Ok(vec![Notification::recovered(run, previous)]);
        }
        Ok(vec![])
    }

    fn first_overrun(&mut self, key: &str) -> bool {
        let (seen, order) = &mut self.overruns;
        if !seen.insert(key.to_owned()) {
            return false;
        }
        order.push_back(key.to_owned());
        if order.len() > OVERRUNS_REMEMBERED
            && let Some(old) = order.pop_front()
        {
            seen.remove(&old);
        }
        true
    }

    /// The previous finished run of `run`'s workflow, when it FAILED.
    async fn previous_failed(
        &self,
        run: &cairn_core::event::RunEvent,
    ) -> Result<Option<cairn_core::RunId>, EngineError> {
        let search = RunSearch {
            filter: RunFilter {
                workflows: vec![run.workflow.clone()],
                statuses: vec![
                    RunStatus::Completed,
                    RunStatus::PartiallySucceeded,
                    RunStatus::Failed,
                    RunStatus::Canceled,
                ],
                ..RunFilter::default()
            },
            sort: RunSort::Finished,
            order: Order::NewestFirst,
            cursor: None,
            limit: 3,
        };
        let page = self.store.search_runs(search).await?;
        let previous =
            page.runs.into_iter().find(|r| r.id != run.run_id && r.finished_at.is_some_and(|f| f <= run.at));
        Ok(previous.filter(|r| r.status == RunStatus::Failed).map(|r| r.id))
    }

    /// Sends `n` to every target of the matching rules: a log line, or a
    /// row in the outbox (once per webhook and key).
    pub async fn route(&self, n: &Notification) -> Result<(), EngineError> {
        let targets: Vec<Target> =
            self.config.targets(n.kind, n.workflow.as_deref()).into_iter().cloned().collect();
        self.send(n, &targets).await
    }

    /// Sends `n` to `targets` (the report's, which no rule routes).
    pub async fn send(&self, n: &Notification, targets: &[Target]) -> Result<(), EngineError> {
        let mut enqueued = false;
        for target in targets {
            match target {
                Target::Log => tracing::warn!(
                    kind = %n.kind,
                    key = %n.key,
                    workflow = n.workflow.as_deref().unwrap_or(""),
                    at = %n.at,
                    data = %n.data,
                    "notification: {}",
                    n.kind
                ),
                Target::Webhook(name) => {
                    let Some(hook) = self.config.webhook(name) else { continue };
                    let row = NewDelivery {
                        webhook: hook.name.clone(),
                        kind: n.kind.as_str().to_owned(),
                        key: n.key.clone(),
                        workflow: n.workflow.clone(),
                        body: n.body(),
                        created_at: n.at,
                        max_attempts: hook.max_attempts,
                    };
                    enqueued |= self.store.enqueue_delivery(row).await?.is_some();
                }
            }
        }
        if enqueued {
            self.enqueued.notify_one();
        }
        Ok(())
    }

    /// Builds the status report of the period that ends at `end` and sends
    /// it to the schedule's targets: kind `report`, key
    /// `report:<day|week>:<end>`, so a report is delivered once whichever
    /// server sends it, however often.
    pub async fn send_report(
        &self,
        schedule: &ReportSchedule,
        end: Timestamp,
    ) -> Result<Notification, EngineError> {
        let period = match schedule.every {
            ReportEvery::Daily => ReportPeriod::Day,
            ReportEvery::Weekly => ReportPeriod::Week,
        };
        let report = crate::report::build(&*self.store, period, end).await?;
        let n = Notification {
            kind: NotifyKind::Report,
            key: format!("report:{}:{end}", period.as_str()),
            workflow: None,
            at: end,
            data: serde_json::to_value(&report).unwrap_or(serde_json::Value::Null),
        };
        self.send(&n, &schedule.to).await?;
        Ok(n)
    }

    /// Routes the notifications of every event of `events` until `term`.
    pub async fn run(mut self, mut events: tokio::sync::broadcast::Receiver<Event>, term: CancellationToken) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                () = term.cancelled() => return,
            };
            let event = match event {
                Ok(e) => e,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "the notifier fell behind the live events; some notifications are lost"
                    );
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let notifications = match self.notifications(&event).await {
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(%error, "could not decide the notifications of an event");
                    continue;
                }
            };
            for n in notifications {
                if let Err(error) = self.route(&n).await {
                    tracing::warn!(%error, key = %n.key, "could not enqueue a notification");
                }
            }
        }
    }
}

/// What one pass of the deliverer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub delivered: usize,
    /// Failed attempts that will be tried again.
    pub retrying: usize,
    /// Deliveries given up.
    pub failed: usize,
}

/// Posts the outbox's due deliveries.
pub struct Deliverer<S> {
    store: Arc<S>,
    clock: EngineClock,
    config: Arc<NotifyConfig>,
    http: reqwest::Client,
}

impl<S: Store> Deliverer<S> {
    pub fn new(store: Arc<S>, clock: EngineClock, config: Arc<NotifyConfig>) -> Self {
        // A build whose reqwest uses rustls without a provider of its own
        // (the `cairn` binary's) needs one installed before a client is
        // made; ring, unless the program chose another first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            // A redirected POST may go on as a GET: a 3xx is an answer like any other.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Deliverer { store, clock, config, http }
    }

    /// Attempts every delivery due at `now` (up to a batch), concurrently,
    /// and records each attempt.
    pub async fn deliver_due(&self, now: Timestamp) -> Result<Pass, EngineError> {
        let due = self.store.due_deliveries(now, PASS_LIMIT).await?;
        let mut attempts = tokio::task::JoinSet::new();
        for d in due {
            let (http, config) = (self.http.clone(), self.config.clone());
            attempts.spawn(async move { attempt(&http, &config, &d, now).await });
        }
        let mut pass = Pass::default();
        while let Some(done) = attempts.join_next().await {
            let Ok(a) = done else { continue };
            match a.next {
                AttemptNext::Delivered => pass.delivered += 1,
                AttemptNext::RetryAt(_) => pass.retrying += 1,
                AttemptNext::GiveUp => pass.failed += 1,
            }
            if a.next != AttemptNext::Delivered {
                tracing::warn!(
                    delivery = a.id,
                    status = a.status,
                    error = a.error.as_deref().unwrap_or(""),
                    retry = matches!(a.next, AttemptNext::RetryAt(_)),
                    "webhook delivery attempt failed"
                );
            }
            self.store.record_delivery_attempt(a).await?;
        }
        Ok(pass)
    }

    /// Delivers every second, or at once when `wake` is poked, until `term`;
    /// each pass reported to `on_pass`.
    pub async fn run(self, wake: Arc<Notify>, term: CancellationToken, on_pass: impl Fn(Pass) + Send) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = wake.notified() => {}
                () = term.cancelled() => return,
            }
            match self.deliver_due(self.clock.now()).await {
                Ok(pass) => on_pass(pass),
                Err(error) => tracing::warn!(%error, "could not deliver the due webhook deliveries"),
            }
        }
    }
}

/// One attempt at `d`, and what follows it.
async fn attempt(
    http: &reqwest::Client,
    config: &NotifyConfig,
    d: &Delivery,
    now: Timestamp,
) -> DeliveryAttempt {
    let give_up = |status, error: String| DeliveryAttempt {
        id: d.id,
        at: now,
        status,
        error: Some(error),
        next: AttemptNext::GiveUp,
    };
    let Some(hook) = config.webhook(&d.webhook) else {
        return give_up(None, format!("the webhook {:?} is no longer in the server config", d.webhook));
    };
    let seconds = now.as_micros().div_euclid(1_000_000);
    let sent = http
        .post(&hook.url)
        .header("content-type", "application/json")
        .header("x-cairn-event", &d.kind)
        .header("x-cairn-delivery", d.id.to_string())
        .header("x-cairn-timestamp", seconds.to_string())
        .header("x-cairn-signature", signature(hook.secret.expose(), seconds, &d.body))
        .body(d.body.clone())
        .send()
        .await;
    let (status, error, retry) = match sent {
        Ok(answer) => {
            let status = answer.status();
            if status.is_success() {
                return DeliveryAttempt {
                    id: d.id,
                    at: now,
                    status: Some(status.as_u16()),
                    error: None,
                    next: AttemptNext::Delivered,
                };
            }
            let retry = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            (Some(status.as_u16()), format!("the receiver answered {status}"), retry)
        }
        Err(e) => (None, describe(&e), true),
    };
    let attempts = d.attempts.saturating_add(1);
    if !retry || attempts >= d.max_attempts {
        let error = if retry { format!("{error}; gave up after {attempts} attempts") } else { error };
        return give_up(status, error);
    }
    DeliveryAttempt {
        id: d.id,
        at: now,
        status,
        error: Some(error),
        next: AttemptNext::RetryAt(now.saturating_add(backoff(attempts))),
    }
}

/// A transport error with its causes, which reqwest keeps apart.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        format!("timed out after {}s", ATTEMPT_TIMEOUT.as_secs())
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_stays_at_an_hour() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [10, 30, 60, 300, 900, 3600, 3600, 3600]);
    }

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac secret
        let sig = signature(b"secret", 1_700_000_000, "{}");
        assert_eq!(sig, "sha256=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163");
        assert_ne!(sig, signature(b"secret", 1_700_000_001, "{}"), "the timestamp is signed");
        assert_ne!(sig, signature(b"other", 1_700_000_000, "{}"));
    }
}
