//! Cairn's domain rules as plain types and functions: no I/O, no async, no SQL.
//!
//! Everything that decides *what* may happen to a task lives here — the status
//! transition table, the derived phase durations, progress rate limits, lease
//! and retry rules, and the workflow spec — so that the store, the engine and
//! the server all obey one definition.

pub mod alert;
pub mod anomaly;
pub mod auth;
pub mod clock;
pub mod durations;
pub mod event;
pub mod expected;
pub mod id;
pub mod lease;
pub mod notify;
#[cfg(feature = "openapi")]
mod openapi;
pub mod progress;
pub mod protocol;
pub mod record;
pub mod report;
pub mod retention;
pub mod retry;
pub mod spec;
pub mod status;
pub mod vars;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use id::{AlertId, AuditId, LeaseToken, RunId, TaskId, TokenId};
pub use status::{RunStatus, TaskStatus};
