//! The engine's one error type.

use cairn_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("run {run} was changed by another process ({reason}); this process stopped driving it")]
    TakenOver { run: String, reason: String },
    #[error("the plan is invalid: {0}")]
    InvalidPlan(String),
    /// Bad input from a caller (params, workflow), with the message to show.
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The request does not fit the current state (e.g. the run already finished).
    #[error("{0}")]
    Conflict(String),
    #[error("cannot prepare the log directory {path}: {reason}")]
    Logs { path: String, reason: String },
    /// The archive of deleted runs could not be written or read.
    #[error("archive {path}: {reason}")]
    Archive { path: String, reason: String },
}
