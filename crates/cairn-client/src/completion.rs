//! The worker's completions, sent in batches: a finished task hands its
//! completion to the [`Completer`] and waits for its answer; the completion
//! loop gathers what finishes within a short window (5 ms, or 500 items,
//! whichever comes first) into one `POST /workers/complete` call.
//!
//! Each item's answer is read as the single call's would be
//! ([`crate::classify_item_error`]), so a finished task sees the same
//! `Result` either way: a stale item is [`ClientError::LeaseStale`], and the
//! other items of its call are unaffected. Transient failures — of the whole
//! call, or of single items — are retried with the completion backoff;
//! completion is idempotent per lease token, so resending a batch is safe.
//!
//! A server without the batch route (404 or 405) gets single completions
//! from then on. Collecting a batch ([`Collector`]) and reading its answer
//! ([`item_results`]) are plain functions, tested without a server.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_core::protocol::{CompleteBatchRequest, CompleteBatchResponse, CompleteItem};
use cairn_core::{TaskId, TaskStatus};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::worker::Runtime;
use crate::{ClientError, classify_item_error};

/// Most items one batch call may carry: the protocol's limit.
pub(crate) const MAX_BATCH_ITEMS: usize = 1000;
/// Most bytes of items one call carries: well under the server's default
/// body limit (1 MiB), whatever the outputs and errors weigh.
pub(crate) const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Batch calls on their way at once. Completions that end meanwhile wait in
/// the queue, and the next batch takes them all.
const MAX_IN_FLIGHT: usize = 4;

/// When a batch is sent: once it has `max_items` items or `max_bytes` of
/// them, or `window` after its first item arrived, whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchLimits {
    pub(crate) max_items: usize,
    pub(crate) max_bytes: usize,
    pub(crate) window: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits { max_items: 500, max_bytes: MAX_BATCH_BYTES, window: Duration::from_millis(5) }
    }
}

/// One batch being gathered, within its [`BatchLimits`].
#[derive(Debug)]
pub(crate) struct Collector<T> {
    items: Vec<T>,
    bytes: usize,
    limits: BatchLimits,
}

impl<T> Collector<T> {
    pub(crate) fn new(limits: BatchLimits) -> Self {
        Collector { items: Vec::new(), bytes: 0, limits }
    }

    fn max_items(&self) -> usize {
        self.limits.max_items.clamp(1, MAX_BATCH_ITEMS)
    }

    /// Adds `item`, `bytes` long once serialized, if it fits; gives it back if
    /// it does not (it starts the next batch). The first item always fits,
    /// however large: it goes alone, as a single completion would.
    pub(crate) fn push(&mut self, item: T, bytes: usize) -> Result<(), T> {
        if !self.items.is_empty()
            && (self.items.len() >= self.max_items()
                || self.bytes.saturating_add(bytes) > self.limits.max_bytes)
        {
            return Err(item);
        }
        self.items.push(item);
        self.bytes = self.bytes.saturating_add(bytes);
        Ok(())
    }

    /// Nothing more fits: send it now, without waiting out the window.
    pub(crate) fn is_full(&self) -> bool {
        self.items.len() >= self.max_items() || self.bytes >= self.limits.max_bytes
    }

    pub(crate) fn into_items(self) -> Vec<T> {
        self.items
    }
}

/// Each sent item's result from a batch answer, in the order sent: the
/// task's status, or its error as the single call would have had it. An item
/// the answer does not have in its place (a server bug) is a
/// [`ClientError::Decode`]: it may have been applied, and is not retried.
pub(crate) fn item_results(
    sent: &[TaskId],
    answer: CompleteBatchResponse,
) -> Vec<Result<TaskStatus, ClientError>> {
    let mut acks = answer.items.into_iter();
    sent.iter()
        .map(|&task| match acks.next() {
            Some(ack) if ack.task_id == task => match (ack.status, ack.error) {
                (Some(status), _) => Ok(status),
                (None, Some(error)) => Err(classify_item_error(&error)),
                (None, None) => Err(ClientError::Decode {
                    status: 200,
                    message: format!("the answer for task {task} has neither a status nor an error"),
                }),
            },
            other => Err(ClientError::Decode {
                status: 200,
                message: format!(
                    "the answer has {} where task {task} was expected",
                    other.map_or_else(|| "no item".to_owned(), |a| format!("task {}", a.task_id))
                ),
            }),
        })
        .collect()
}

/// Why a batch call was not served, so its items go one by one instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotServed {
    /// The server has no batch route (an older server): never ask again.
    Route,
    /// The call was too large for the server's body limit: send these singly.
    TooLarge,
}

pub(crate) fn not_served(e: &ClientError, items: usize) -> Option<NotServed> {
    match e {
        // The API's fallback answers an unknown route 404 `not_found`; a
        // proxy's page classifies as `http_404`.
        ClientError::NotFound { code, .. } if code == "not_found" || code == "http_404" => {
            Some(NotServed::Route)
        }
        ClientError::Rejected { status: 405, .. } => Some(NotServed::Route),
        ClientError::Rejected { status: 413, .. } if items > 1 => Some(NotServed::TooLarge),
        _ => None,
    }
}

type Reply = oneshot::Sender<Result<TaskStatus, ClientError>>;

/// A completion waiting for its batch.
struct Pending {
    item: CompleteItem,
    bytes: usize,
    reply: Reply,
}

/// Where finished tasks hand their completions. Cheap to clone; the loop
/// ends once every clone is dropped and what it holds is answered.
#[derive(Clone)]
pub(crate) struct Completer {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Completer {
    /// The completer and its loop, which runs until every clone is dropped.
    pub(crate) fn start(rt: Arc<Runtime>) -> (Completer, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Completer { tx }, tokio::spawn(run_loop(rt, rx)))
    }

    /// Completes one attempt in the next batch; answers as [`crate::Client::complete`]
    /// would, after the retries.
    pub(crate) async fn complete(&self, item: CompleteItem) -> Result<TaskStatus, ClientError> {
        let bytes = serde_json::to_vec(&item).map_or(usize::MAX, |v| v.len());
        let (reply, rx) = oneshot::channel();
        self.tx.send(Pending { item, bytes, reply }).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> ClientError {
    ClientError::InvalidRequest("the worker's completion loop stopped before answering".into())
}

async fn run_loop(rt: Arc<Runtime>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let limits = rt.config.completion_batch;
    let mut sending: JoinSet<()> = JoinSet::new();
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => break,
            },
        };
        let deadline = Instant::now() + limits.window;
        let mut batch = Collector::new(limits);
        let bytes = first.bytes;
        if let Err(p) = batch.push(first, bytes) {
            // Cannot happen: the first item always fits. Answer it rather than lose it.
            let _ = p.reply.send(Err(stopped()));
        }
        while !batch.is_full() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => {
                    let bytes = p.bytes;
                    if let Err(p) = batch.push(p, bytes) {
                        carry = Some(p);
                        break;
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        while sending.len() >= MAX_IN_FLIGHT {
            if let Some(r) = sending.join_next().await {
                note_join(r);
            }
        }
        sending.spawn(send_batch(rt.clone(), batch.into_items()));
        while let Some(r) = sending.try_join_next() {
            note_join(r);
        }
    }
    while let Some(r) = sending.join_next().await {
        note_join(r);
    }
}

fn note_join(r: Result<(), JoinError>) {
    if let Err(e) = r {
        tracing::error!(error = %e, "a completion batch failed");
    }
}

/// Sends one batch until every item has its answer: retries the whole call
/// on a transient failure, and the items answered with a transient error,
/// within the completion backoff's bounds.
async fn send_batch(rt: Arc<Runtime>, mut pending: Vec<Pending>) {
    let backoff = &rt.config.completion_backoff;
    let started = Instant::now();
    let mut retry: u32 = 0;
    loop {
        if rt.completions_singly.load(Ordering::Relaxed) {
            return send_singly(&rt, pending).await;
        }
        let req = CompleteBatchRequest {
            worker_id: rt.worker_id.clone(),
            items: pending.iter().map(|p| p.item.clone()).collect(),
        };
        rt.stats.completion_calls.fetch_add(1, Ordering::Relaxed);
        // The error that sets the delay, and each remaining item's own.
        let (err, errors) = match rt.client.complete_batch(&req).await {
            Ok(answer) => {
                let sent: Vec<TaskId> = req.items.iter().map(|i| i.task_id).collect();
                let mut again = Vec::new();
                let mut errors = Vec::new();
                for (p, result) in pending.into_iter().zip(item_results(&sent, answer)) {
                    match result {
                        Err(e) if e.is_retryable() => {
                            again.push(p);
                            errors.push(e);
                        }
                        result => {
                            let _ = p.reply.send(result);
                        }
                    }
                }
                pending = again;
                match errors.first() {
                    None => return,
                    Some(e) => (e.clone(), errors),
                }
            }
            Err(e) => match not_served(&e, pending.len()) {
                Some(NotServed::Route) => {
                    if !rt.completions_singly.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            error = %e,
                            "the server has no batch completion route; completing tasks one call each"
                        );
                    }
                    return send_singly(&rt, pending).await;
                }
                Some(NotServed::TooLarge) => return send_singly(&rt, pending).await,
                None => {
                    let errors = vec![e.clone(); pending.len()];
                    (e, errors)
                }
            },
        };
        match backoff.next_delay(&err, retry, started.elapsed(), rand::random::<f64>()) {
            Some(delay) => {
                tracing::debug!(
                    items = pending.len(), retry, delay_ms = delay.as_millis() as u64, error = %err,
                    "retrying completions"
                );
                tokio::time::sleep(delay).await;
                retry = retry.saturating_add(1);
            }
            None => {
                for (p, e) in pending.into_iter().zip(errors) {
                    let _ = p.reply.send(Err(e));
                }
                return;
            }
        }
    }
}

/// Completes each item with its own call (`POST /tasks/{id}/complete`), all
/// at once, each retried as a batch would be.
async fn send_singly(rt: &Arc<Runtime>, pending: Vec<Pending>) {
    let mut calls: JoinSet<()> = JoinSet::new();
    for p in pending {
        let rt = rt.clone();
        calls.spawn(async move {
            let (task, req) = p.item.into_request();
            let result = rt
                .config
                .completion_backoff
                .retry("complete", || {
                    rt.stats.completion_calls.fetch_add(1, Ordering::Relaxed);
                    rt.client.complete(task, &req)
                })
                .await;
            let _ = p.reply.send(result.map(|a| a.status));
        });
    }
    while let Some(r) = calls.join_next().await {
        note_join(r);
    }
}

#[cfg(test)]
mod tests {
    use cairn_core::protocol::{CompleteAck, ItemError};

    use super::*;
    use crate::TransientKind;

    fn limits(max_items: usize, max_bytes: usize) -> BatchLimits {
        BatchLimits { max_items, max_bytes, window: Duration::from_millis(5) }
    }

    #[test]
    fn a_batch_closes_at_its_item_count() {
        let mut c = Collector::new(limits(3, 1000));
        for i in 0..3 {
            assert!(!c.is_full());
            assert_eq!(c.push(i, 10), Ok(()));
        }
        assert!(c.is_full());
        assert_eq!(c.push(3, 10), Err(3), "the fourth starts the next batch");
        assert_eq!(c.into_items(), [0, 1, 2]);
    }

    #[test]
    fn a_batch_closes_at_its_byte_budget() {
        let mut c = Collector::new(limits(100, 100));
        assert_eq!(c.push("a", 60), Ok(()));
        assert_eq!(c.push("b", 50), Err("b"), "110 bytes would not fit");
        assert_eq!(c.push("c", 40), Ok(()));
        assert!(c.is_full(), "exactly at the budget");
        let mut c = Collector::new(limits(100, 100));
        assert_eq!(c.push("huge", usize::MAX), Ok(()), "a first item always fits, and goes alone");
        assert!(c.is_full());
        assert_eq!(c.push("next", 1), Err("next"));
    }

    #[test]
    fn item_limits_are_kept_within_the_protocol() {
        let mut c = Collector::new(limits(0, usize::MAX));
        assert_eq!(c.push(1, 1), Ok(()));
        assert!(c.is_full(), "0 items per batch means one");
        let mut c = Collector::new(limits(5000, usize::MAX));
        for i in 0..MAX_BATCH_ITEMS {
            assert_eq!(c.push(i, 1), Ok(()));
        }
        assert!(c.is_full());
        assert_eq!(c.push(MAX_BATCH_ITEMS, 1), Err(MAX_BATCH_ITEMS));
    }

    fn id(n: u8) -> TaskId {
        TaskId::from_bytes([n; 16])
    }

    fn ack(n: u8, status: Option<TaskStatus>, code: Option<&str>) -> CompleteAck {
        CompleteAck {
            task_id: id(n),
            status,
            error: code.map(|c| ItemError { code: c.into(), message: format!("{c} for {n}") }),
        }
    }

    #[test]
    fn each_item_is_answered_as_the_single_call_would_be() {
        let answer = CompleteBatchResponse {
            items: vec![
                ack(1, Some(TaskStatus::Completed), None),
                ack(2, None, Some("lease_stale")),
                ack(3, None, Some("unavailable")),
                ack(4, Some(TaskStatus::Pending), None),
                ack(5, None, Some("invalid_input")),
            ],
        };
        let r = item_results(&[id(1), id(2), id(3), id(4), id(5)], answer);
        assert_eq!(r[0], Ok(TaskStatus::Completed));
        assert_eq!(r[1], Err(ClientError::LeaseStale { message: "lease_stale for 2".into() }));
        assert!(
            matches!(&r[2], Err(e @ ClientError::Transient { kind: TransientKind::Unavailable, .. }) if e.is_retryable())
        );
        assert_eq!(r[3], Ok(TaskStatus::Pending), "a failed attempt to be retried");
        assert!(matches!(&r[4], Err(ClientError::Rejected { status: 400, .. })));
    }

    #[test]
    fn an_answer_out_of_place_is_not_taken_for_another_task() {
        let answer = CompleteBatchResponse {
            items: vec![ack(2, Some(TaskStatus::Completed), None), ack(9, None, None)],
        };
        let r = item_results(&[id(1), id(9), id(3)], answer);
        assert!(matches!(&r[0], Err(ClientError::Decode { .. })), "{r:?}");
        assert!(matches!(&r[1], Err(ClientError::Decode { message, .. }) if message.contains("neither")));
        assert!(matches!(&r[2], Err(ClientError::Decode { message, .. }) if message.contains("no item")));
        assert!(r.iter().all(|r| r.as_ref().is_err_and(|e| !e.is_retryable())));
    }

    #[test]
    fn a_server_without_the_route_gets_single_calls() {
        let not_found = |code: &str| ClientError::NotFound { code: code.into(), message: String::new() };
        let rejected = |status| ClientError::Rejected {
            status,
            code: String::new(),
            message: String::new(),
            field: None,
        };
        assert_eq!(not_served(&not_found("not_found"), 3), Some(NotServed::Route));
        assert_eq!(not_served(&not_found("http_404"), 3), Some(NotServed::Route));
        assert_eq!(not_served(&rejected(405), 1), Some(NotServed::Route));
        assert_eq!(not_served(&rejected(413), 2), Some(NotServed::TooLarge));
        assert_eq!(not_served(&rejected(413), 1), None, "one item too large is too large alone");
        assert_eq!(not_served(&not_found("task_not_found"), 3), None);
        assert_eq!(not_served(&rejected(400), 3), None);
        assert_eq!(not_served(&ClientError::LeaseStale { message: String::new() }, 3), None);
    }
}
