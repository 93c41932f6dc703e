//! What a handler sees of the task it runs: the leased task's fields, and
//! the ways to talk back — progress, checkpoints, logs — and to learn that it
//! should stop. Everything it reports rides on the worker's batched
//! heartbeat; nothing here makes a call of its own except [`TaskContext::log`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_core::progress::{Progress, ProgressError};
use cairn_core::protocol::{LeasedTask, MAX_DETAILS_BYTES, RemoteCommand};
use cairn_core::{RunId, TaskId, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::heartbeat::{CancelReason, HeldKey};
use crate::worker::Runtime;
use crate::{Client, ClientError, LogStream};

/// A checkpoint the protocol would refuse; refused here instead, so one bad
/// checkpoint cannot fail the heartbeat that carries every task's lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint is {bytes} bytes of JSON; at most {max} are allowed")]
    TooLarge { bytes: usize, max: usize },
    #[error("checkpoint must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("checkpoint cannot be serialized: {0}")]
    Serialize(String),
}

/// The handle a handler gets for the one task attempt it runs. Cheap to clone.
#[derive(Clone)]
pub struct TaskContext {
    inner: Arc<Inner>,
}

struct Inner {
    task: LeasedTask,
    key: HeldKey,
    cancel: CancellationToken,
    rt: Arc<Runtime>,
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the leased task itself: it holds the lease token.
        f.debug_struct("TaskContext")
            .field("task_id", &self.task_id())
            .field("task_type", &self.task_type())
            .field("attempt", &self.attempt())
            .finish_non_exhaustive()
    }
}

impl TaskContext {
    pub(crate) fn new(task: LeasedTask, key: HeldKey, cancel: CancellationToken, rt: Arc<Runtime>) -> Self {
        TaskContext { inner: Arc::new(Inner { task, key, cancel, rt }) }
    }

    pub fn task_id(&self) -> TaskId {
        self.inner.task.task_id
    }

    pub fn run_id(&self) -> RunId {
        self.inner.task.run_id
    }

    pub fn workflow(&self) -> &str {
        &self.inner.task.workflow
    }

    /// The step's name.
    pub fn step(&self) -> &str {
        &self.inner.task.step
    }

    /// What the worker dispatched on: the step's `task_type`, else its name.
    pub fn task_type(&self) -> &str {
        &self.inner.task.task_type
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.task.attempt
    }

    /// The step's params and env.
    pub fn input(&self) -> &BTreeMap<String, String> {
        &self.inner.task.input
    }

    /// One input value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.inner.task.input.get(name).map(String::as_str)
    }

    /// The last checkpoint a previous attempt saved with
    /// [`TaskContext::checkpoint`], to resume from; `None` on a first attempt
    /// (or when the workflow does not keep details).
    pub fn details(&self) -> Option<&serde_json::Value> {
        self.inner.task.details.as_ref()
    }

    /// [`TaskContext::details`] read as `T`.
    pub fn details_as<T: DeserializeOwned>(&self) -> Result<Option<T>, serde_json::Error> {
        self.details().map(|d| T::deserialize(d)).transpose()
    }

    /// The step's time limit, counted from the lease. When it passes the
    /// worker fires [`TaskContext::cancelled`] and fails the attempt.
    pub fn timeout(&self) -> Option<Duration> {
        self.inner.task.timeout_ms.map(Duration::from_millis)
    }

    /// For a shell step: the processes to run.
    pub fn command(&self) -> Option<&RemoteCommand> {
        self.inner.task.command.as_ref()
    }

    /// The task as leased, for what the accessors above do not cover. It
    /// holds the lease token: keep it out of logs.
    pub fn leased_task(&self) -> &LeasedTask {
        &self.inner.task
    }

    /// The lease's expiry as of the last acknowledged heartbeat.
    pub fn lease_expires_at(&self) -> Timestamp {
        self.inner.rt.held().lease_expires_at(self.inner.key).unwrap_or(self.inner.task.lease_expires_at)
    }

    pub fn worker_id(&self) -> &str {
        &self.inner.rt.worker_id
    }

    /// The client the worker talks through, for calls of the handler's own.
    pub fn client(&self) -> &Client {
        &self.inner.rt.client
    }

    /// Reports progress: `percent` from 0 to 100 and a message (empty for
    /// none). Never blocks and never makes a call: the latest value rides on
    /// the next heartbeat, rate-limited (a minimum interval and a minimum
    /// change) so a chatty handler costs nothing; a value held back is not
    /// lost — the latest is always sent, at the latest when the task ends.
    pub fn progress(&self, percent: f32, message: impl Into<String>) -> Result<(), ProgressError> {
        let p = Progress::new(percent, Some(message.into()))?;
        let rt = &self.inner.rt;
        let coalesced = rt.held().offer_progress(self.inner.key, p, rt.clock.now());
        rt.stats.progress_coalesced.fetch_add(coalesced, Ordering::Relaxed);
        rt.wake.notify_one();
        Ok(())
    }

    /// Saves a checkpoint (a JSON object of at most
    /// [`MAX_DETAILS_BYTES`] bytes) that rides on the next heartbeat. If this
    /// attempt fails and the task is retried, the next attempt finds the
    /// latest one in [`TaskContext::details`] — where the workflow keeps details.
    pub fn checkpoint(&self, details: impl Serialize) -> Result<(), CheckpointError> {
        let value = serde_json::to_value(details).map_err(|e| CheckpointError::Serialize(e.to_string()))?;
        check_details(&value)?;
        self.inner.rt.held().set_details(self.inner.key, value);
        self.inner.rt.wake.notify_one();
        Ok(())
    }

    /// Fires when the task should stop: cancellation was requested, the
    /// lease was lost, the step's timeout passed, or the worker is shutting
    /// down. A handler should return soon after; one that does not is
    /// dropped after the worker's cancel grace period. Whatever it returns
    /// then, the attempt ends `canceled` (or `failed` for a timeout, and not
    /// at all for a lost lease).
    pub fn cancelled(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Why [`TaskContext::cancelled`] fired, if it has.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.inner.rt.held().reason(self.inner.key)
    }

    /// Appends to the attempt's stdout or stderr log on the server. One call
    /// per chunk: buffer lines rather than sending each.
    ///
    /// A chunk in memory refused for the worker's rate (429) is sent again
    /// once the server's `Retry-After` has passed, for as long as the task
    /// runs; a streamed body is sent once.
    pub async fn log(&self, stream: LogStream, body: impl Into<reqwest::Body>) -> Result<(), ClientError> {
        let t = &self.inner.task;
        let body = body.into();
        let Some(bytes) = body.as_bytes().map(<[u8]>::to_vec) else {
            return self.inner.rt.client.append_log(t.task_id, t.lease_token, stream, body).await;
        };
        let backoff = &self.inner.rt.config.backoff;
        let mut retry = 0;
        loop {
            match self.inner.rt.client.append_log(t.task_id, t.lease_token, stream, bytes.clone()).await {
                Err(e) if e.is_rate_limited() && !self.is_cancelled() => {
                    let delay = crate::backoff::rate_limit_wait(backoff.delay(retry), &e);
                    tracing::debug!(
                        delay_ms = delay.as_millis() as u64,
                        "log append rate limited; sending it again"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.cancelled().cancelled() => return Err(e),
                    }
                    retry += 1;
                }
                result => return result,
            }
        }
    }
}

/// Whether the protocol accepts `value` as a heartbeat's `details`.
pub(crate) fn check_details(value: &serde_json::Value) -> Result<(), CheckpointError> {
    if !value.is_object() {
        let kind = match value {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::Object(_) => "an object",
        };
        return Err(CheckpointError::NotAnObject(kind));
    }
    let bytes = serde_json::to_vec(value).map_err(|e| CheckpointError::Serialize(e.to_string()))?.len();
    if bytes > MAX_DETAILS_BYTES {
        return Err(CheckpointError::TooLarge { bytes, max: MAX_DETAILS_BYTES });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_must_be_small_objects() {
        assert!(check_details(&serde_json::json!({"offset": 1})).is_ok());
        assert_eq!(check_details(&serde_json::json!([1])), Err(CheckpointError::NotAnObject("an array")));
        let big = serde_json::json!({ "blob": "x".repeat(MAX_DETAILS_BYTES) });
        assert!(matches!(check_details(&big), Err(CheckpointError::TooLarge { max: MAX_DETAILS_BYTES, .. })));
    }
}
