//! The worker protocol's messages, shared by the server and every client:
//! lease tasks from a queue, heartbeat them (carrying progress), complete or
//! fail them. Plain data; the HTTP routes are documented in docs/workers.md.
//!
//! Every call after the lease names the attempt's lease token: a call with a
//! stale token is refused (HTTP 409, code `lease_stale`) and changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{LeaseToken, RunId, TaskId, TaskStatus, Timestamp};

/// Largest `details` object a heartbeat may carry, serialized.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;

/// `POST /api/v1/workers/lease`: up to `max_tasks` tasks from `queue`,
/// waiting up to `wait_ms` for the first one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseRequest {
    pub worker_id: String,
    pub queue: String,
    #[serde(default = "one")]
    pub max_tasks: u32,
    #[serde(default)]
    pub wait_ms: u64,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseResponse {
    pub tasks: Vec<LeasedTask>,
}

/// A task a worker now holds. RUNNING, `started_at`, the first heartbeat and
/// the lease expiry were written in one transaction before this was sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeasedTask {
    pub task_id: TaskId,
    pub run_id: RunId,
    pub workflow: String,
    /// The step's name.
    pub step: String,
    /// What an SDK worker dispatches on: the step's `task_type`, else its name.
    pub task_type: String,
    /// 1-based.
    pub attempt: u32,
    pub lease_token: LeaseToken,
    pub lease_expires_at: Timestamp,
    /// Heartbeat at least this often to keep the lease.
    pub heartbeat_interval_ms: u64,
    /// The step's own time limit, if any; the worker should stop by then.
    pub timeout_ms: Option<u64>,
    /// For shell steps: what to run.
    pub command: Option<RemoteCommand>,
    /// The step's params and env, for SDK handlers.
    #[serde(default)]
    pub input: BTreeMap<String, String>,
    /// The last `details` a previous attempt reported, to resume from a checkpoint.
    pub details: Option<serde_json::Value>,
}

/// A shell step to run on the worker's machine: processes run one after
/// another, stopping at the first that fails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemoteCommand {
    pub processes: Vec<RemoteProcess>,
    /// Relative to the worker's own working directory when not absolute.
    pub working_dir: Option<String>,
    pub env: Vec<(String, String)>,
    /// Capture stdout as this output variable.
    pub output: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RemoteProcess {
    /// Run `argv[0]` with the rest as arguments.
    Exec { argv: Vec<String> },
    /// Write `body` to a file and run `argv` followed by its path.
    Script { argv: Vec<String>, body: String },
}

/// `POST /api/v1/workers/heartbeat`: extends many leases in one call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatRequest {
    pub worker_id: String,
    pub items: Vec<HeartbeatItem>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatItem {
    pub task_id: TaskId,
    pub lease_token: LeaseToken,
    pub progress_percent: Option<f32>,
    pub progress_message: Option<String>,
    /// A small checkpoint (at most [`MAX_DETAILS_BYTES`]), kept only where
    /// the workflow asks, and handed to the next attempt on retry.
    pub details: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatResponse {
    pub items: Vec<HeartbeatAck>,
}

/// One heartbeat's answer, in request order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatAck {
    pub task_id: TaskId,
    /// `ok`, or `lease_stale` when the lease is no longer this worker's.
    pub status: AckStatus,
    pub lease_expires_at: Option<Timestamp>,
    /// Stop the task: someone canceled it or its run.
    pub cancel_requested: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Ok,
    LeaseStale,
}

/// `POST /api/v1/tasks/{task_id}/complete`: the attempt's end. Repeating it
/// with the same token is harmless; a stale token gets 409.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteRequest {
    pub lease_token: LeaseToken,
    pub outcome: AttemptEnd,
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AttemptEnd {
    Succeeded,
    Failed,
    /// The worker stopped the task because cancellation was requested.
    Canceled,
}

/// The answer to a completion: the status the task is in now (`COMPLETED`,
/// `FAILED`, `CANCELED`, or `PENDING` when a failed attempt will be retried).
/// A repeated completion with the same token answers the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteResponse {
    pub status: TaskStatus,
}

/// `POST /api/v1/workers/complete`: ends many attempts in one call. Each
/// item is what [`CompleteRequest`] carries, with its `task_id`. Items are
/// independent: one with a stale token does not stop the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteBatchRequest {
    pub worker_id: String,
    pub items: Vec<CompleteItem>,
}

/// One attempt's end in a [`CompleteBatchRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteItem {
    pub task_id: TaskId,
    pub lease_token: LeaseToken,
    pub outcome: AttemptEnd,
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    pub error: Option<String>,
}

impl CompleteItem {
    /// The item for `task` that a single completion `req` would be.
    pub fn new(task: TaskId, req: CompleteRequest) -> CompleteItem {
        CompleteItem {
            task_id: task,
            lease_token: req.lease_token,
            outcome: req.outcome,
            exit_code: req.exit_code,
            outputs: req.outputs,
            error: req.error,
        }
    }

    /// The task and the single completion this item stands for.
    pub fn into_request(self) -> (TaskId, CompleteRequest) {
        let req = CompleteRequest {
            lease_token: self.lease_token,
            outcome: self.outcome,
            exit_code: self.exit_code,
            outputs: self.outputs,
            error: self.error,
        };
        (self.task_id, req)
    }
}

/// The answer to a batch completion: one [`CompleteAck`] per request item,
/// in request order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteBatchResponse {
    pub items: Vec<CompleteAck>,
}

/// One item's answer: `status` (the task's status now, as the single
/// completion answers it) when the item was applied — or had been, with the
/// same token — else `error`, with the code the single completion would have
/// answered (`lease_stale`: nothing changed, do not retry; `unavailable`,
/// `internal`: retry the item, it is idempotent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompleteAck {
    pub task_id: TaskId,
    pub status: Option<TaskStatus>,
    pub error: Option<ItemError>,
}

/// Why one item of a batch was not applied: a stable `code` (as in the API's
/// error table) and a `message` for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemError {
    pub code: String,
    pub message: String,
}

/// `POST /api/v1/tasks/{task_id}/heartbeat`: one task's heartbeat, the item
/// of [`HeartbeatRequest`] without its `task_id` (it is in the path). A stale
/// token gets 409 `lease_stale`; otherwise the answer is a [`HeartbeatAck`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskHeartbeatRequest {
    pub worker_id: String,
    pub lease_token: LeaseToken,
    pub progress_percent: Option<f32>,
    pub progress_message: Option<String>,
    pub details: Option<serde_json::Value>,
}

/// The header that carries the lease token on `POST /api/v1/tasks/{task_id}/logs`,
/// whose body is raw log bytes.
pub const LEASE_TOKEN_HEADER: &str = "X-Cairn-Lease-Token";

/// Which of an attempt's two logs: `?stream=stdout|stderr` on the log routes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    #[default]
    Stdout,
    Stderr,
}

impl LogStream {
    pub const fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

impl std::fmt::Display for LogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LogStream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(LogStream::Stdout),
            "stderr" => Ok(LogStream::Stderr),
            _ => Err(format!("unknown log stream {s:?}: expected stdout or stderr")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        let r: LeaseRequest = serde_json::from_str(r#"{"worker_id":"w1","queue":"gpu"}"#).unwrap();
        assert_eq!((r.max_tasks, r.wait_ms), (1, 0));
        let c: CompleteRequest = serde_json::from_str(
            r#"{"lease_token":"0123456789abcdef0123456789abcdef","outcome":"failed","exit_code":3,"error":"boom"}"#,
        )
        .unwrap();
        assert_eq!((c.outcome, c.exit_code), (AttemptEnd::Failed, Some(3)));
        let b: CompleteBatchRequest = serde_json::from_str(
            r#"{"worker_id":"w1","items":[{"task_id":"01JD8X3Q6V6N3W0Y5Z2QK7R9TB","lease_token":"0123456789abcdef0123456789abcdef","outcome":"succeeded"}]}"#,
        )
        .unwrap();
        let (task, single) = b.items[0].clone().into_request();
        assert_eq!(task.to_string(), "01JD8X3Q6V6N3W0Y5Z2QK7R9TB");
        assert_eq!(
            (single.outcome, single.exit_code, single.outputs.len()),
            (AttemptEnd::Succeeded, None, 0)
        );
        assert_eq!(CompleteItem::new(task, single), b.items[0]);
        let ack = CompleteAck {
            task_id: task,
            status: None,
            error: Some(ItemError { code: "lease_stale".into(), message: "gone".into() }),
        };
        assert_eq!(
            serde_json::to_string(&ack).unwrap(),
            r#"{"task_id":"01JD8X3Q6V6N3W0Y5Z2QK7R9TB","status":null,"error":{"code":"lease_stale","message":"gone"}}"#
        );
        let p = RemoteProcess::Exec { argv: vec!["true".into()] };
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"kind":"exec","argv":["true"]}"#);
    }
}
