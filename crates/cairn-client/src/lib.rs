//! Cairn's client: a typed HTTP client for a Cairn server's `/api/v1`, and
//! the worker SDK that runs tasks from a queue with handlers written in Rust.
//!
//! - [`Client`] makes one request per call and classifies what went wrong
//!   ([`ClientError`]): retry, give up, or drop a task that is no longer ours.
//! - [`Backoff`] is the retry policy: exponential, jittered, bounded.
//! - [`Worker`] leases tasks in batches, runs each with the handler for its
//!   task type, keeps every lease alive with one batched heartbeat loop that
//!   carries progress and checkpoints, completes them in batches (one call
//!   for the completions of a few milliseconds), and shuts down
//!   gracefully. A handler sees its task through a [`TaskContext`].
//!
//! The protocol itself is described in `docs/workers.md`.

mod backoff;
mod client;
mod completion;
mod context;
mod error;
mod heartbeat;
mod worker;

pub use backoff::{Backoff, MAX_RATE_LIMIT_WAIT};
pub use client::{Client, ClientBuilder, PhaseStatsQuery, RunPage, RunQuery};
pub use context::{CheckpointError, TaskContext};
pub use error::{
    ApiErrorBody, ClientError, LEASE_STALE, TransientKind, classify_item_error, classify_response,
};
pub use heartbeat::CancelReason;
pub use worker::{
    BuildError, Outputs, StatsHandle, TaskError, TaskResult, Worker, WorkerBuilder, WorkerError, WorkerStats,
};

pub use cairn_core::progress::{ProgressError, ProgressLimits};
/// The worker protocol's messages, re-exported so SDK users need not depend
/// on `cairn-core` directly.
pub use cairn_core::protocol;
pub use cairn_core::protocol::{LEASE_TOKEN_HEADER, LogStream};
pub use cairn_core::{LeaseToken, RunId, TaskId, TaskStatus, Timestamp};
/// The HTTP library, for [`reqwest::Body`] (streaming log bodies).
pub use reqwest;
/// The cancellation token handlers receive.
pub use tokio_util::sync::CancellationToken;
