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
    #[error("cannot prepare the log directory {path}: {reason}")]
    Logs { path: String, reason: String },
}
