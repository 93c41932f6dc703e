//! The webhook outbox and delivery log: one row per (webhook, event key),
//! enqueued once however many times (or on however many servers) the event
//! is announced, then attempted until it is delivered or given up, every
//! attempt recorded on the row. Rows live in the store, so deliveries
//! survive a restart; what to post and how to sign it is the engine's
//! (`cairn_engine::webhooks`).

use std::fmt;
use std::str::FromStr;

use cairn_core::Timestamp;
use serde::Serialize;

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet; due at its `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: attempts exhausted, or the receiver refused it (4xx).
    Failed,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 3] =
        [DeliveryState::Pending, DeliveryState::Delivered, DeliveryState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A delivery state that is not one of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a delivery state: expected pending, delivered or failed")]
pub struct BadDeliveryState(pub String);

impl FromStr for DeliveryState {
    type Err = BadDeliveryState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryState::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| BadDeliveryState(s.to_owned()))
    }
}

/// A delivery to enqueue, due at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    /// The webhook's name in the server config.
    pub webhook: String,
    /// The event kind (`run_failed`, `report`, …).
    pub kind: String,
    /// The event's dedupe key (`run_failed:<run id>`, …).
    pub key: String,
    pub workflow: Option<String>,
    /// The JSON text to post, exactly as it will be signed.
    pub body: String,
    pub created_at: Timestamp,
    /// Attempts before giving up (at least 1).
    pub max_attempts: u32,
}

/// A delivery as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub webhook: String,
    pub kind: String,
    pub key: String,
    pub workflow: Option<String>,
    pub body: String,
    pub created_at: Timestamp,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    pub max_attempts: u32,
    /// When a pending delivery is due; `None` once it is no longer pending.
    pub next_attempt_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    /// The HTTP status of the last answer, if the receiver answered.
    pub last_status: Option<u16>,
    /// Why the last attempt did not deliver (a status line, a connection error).
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
}

/// What came of one attempt, and what happens next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptNext {
    Delivered,
    /// Try again at this time.
    RetryAt(Timestamp),
    GiveUp,
}

/// One attempt at a pending delivery, to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub id: i64,
    pub at: Timestamp,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub next: AttemptNext,
}

/// Which deliveries to read, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryQuery {
    pub state: Option<DeliveryState>,
    pub webhook: Option<String>,
    /// Only deliveries older than this id (the last of the previous page).
    pub before: Option<i64>,
    pub limit: usize,
}

impl Default for DeliveryQuery {
    fn default() -> Self {
        DeliveryQuery { state: None, webhook: None, before: None, limit: 100 }
    }
}

/// The largest page of deliveries.
pub const MAX_DELIVERIES: usize = 1000;

/// The columns both backends read, in this order.
pub(crate) const COLUMNS: &str = "id, webhook, kind, event_key, workflow, body, created_at, state, attempts, \
     max_attempts, next_attempt_at, last_attempt_at, last_status, last_error, delivered_at";

/// The stored columns of a row, in the order of [`COLUMNS`].
pub(crate) struct Columns {
    pub(crate) id: i64,
    pub(crate) webhook: String,
    pub(crate) kind: String,
    pub(crate) key: String,
    pub(crate) workflow: Option<String>,
    pub(crate) body: String,
    pub(crate) created_at: i64,
    pub(crate) state: String,
    pub(crate) attempts: i64,
    pub(crate) max_attempts: i64,
    pub(crate) next_attempt_at: Option<i64>,
    pub(crate) last_attempt_at: Option<i64>,
    pub(crate) last_status: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) delivered_at: Option<i64>,
}

impl Columns {
    pub(crate) fn into_delivery(self) -> Result<Delivery, String> {
        let state =
            self.state.parse::<DeliveryState>().map_err(|e| format!("webhook delivery {}: {e}", self.id))?;
        let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(Delivery {
            id: self.id,
            webhook: self.webhook,
            kind: self.kind,
            key: self.key,
            workflow: self.workflow,
            body: self.body,
            created_at: Timestamp::from_micros(self.created_at),
            state,
            attempts: count(self.attempts),
            max_attempts: count(self.max_attempts),
            next_attempt_at: self.next_attempt_at.map(Timestamp::from_micros),
            last_attempt_at: self.last_attempt_at.map(Timestamp::from_micros),
            last_status: self.last_status.and_then(|s| u16::try_from(s).ok()),
            last_error: self.last_error,
            delivered_at: self.delivered_at.map(Timestamp::from_micros),
        })
    }
}

/// The columns an attempt sets: (state, next_attempt_at, delivered_at).
pub(crate) fn after_attempt(a: &DeliveryAttempt) -> (&'static str, Option<i64>, Option<i64>) {
    match a.next {
        AttemptNext::Delivered => (DeliveryState::Delivered.as_str(), None, Some(a.at.as_micros())),
        AttemptNext::RetryAt(at) => (DeliveryState::Pending.as_str(), Some(at.as_micros()), None),
        AttemptNext::GiveUp => (DeliveryState::Failed.as_str(), None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_print_and_serialize_alike() {
        for s in DeliveryState::ALL {
            assert_eq!(s.as_str().parse::<DeliveryState>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("sent".parse::<DeliveryState>().unwrap_err().to_string().contains("delivered"));
    }
}
