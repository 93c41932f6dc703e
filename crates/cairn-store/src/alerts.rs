//! Alerts as stored ([`cairn_core::alert`]): raised once per condition,
//! resolved when it is over, read newest first.
//!
//! At most one alert per [`AlertKey`] is open: the store refuses a second
//! raise of an open key (an index does, so servers racing to raise the same
//! alert record it once). Raising and resolving publish
//! [`Notice::Alert`](crate::Notice::Alert), so every server can pass the
//! alert on to its live subscribers.

use cairn_core::alert::{Alert, AlertKind};
use cairn_core::{AlertId, RunStatus, Timestamp};

/// What an alert is about: at most one open alert per key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AlertKey {
    pub kind: AlertKind,
    pub workflow: String,
    pub status: Option<RunStatus>,
}

impl AlertKey {
    /// The stored `status` column: the status's code, or -1 for none
    /// (a NULL would never collide in the unique index of open alerts).
    pub(crate) fn status_code(&self) -> i64 {
        self.status.map_or(-1, |s| i64::from(s.code()))
    }
}

/// An alert to raise.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAlert {
    pub id: AlertId,
    pub key: AlertKey,
    pub raised_at: Timestamp,
    pub message: String,
    pub details: serde_json::Value,
}

/// A write of an alert, answered with the id of the alert it changed
/// (`None`: nothing to do, the key was already open, or not open).
#[derive(Clone, Debug, PartialEq)]
pub enum AlertWrite {
    Raise(NewAlert),
    Resolve { key: AlertKey, at: Timestamp },
}

/// Which alerts to read: newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertQuery {
    /// Only alerts not yet resolved.
    pub open_only: bool,
    pub kind: Option<AlertKind>,
    /// Only alerts about these workflows (empty: every workflow).
    pub workflows: Vec<String>,
    /// Only alerts older than this one (the last of the previous page).
    pub before: Option<AlertId>,
    pub limit: usize,
}

impl Default for AlertQuery {
    fn default() -> Self {
        AlertQuery { open_only: false, kind: None, workflows: Vec::new(), before: None, limit: 100 }
    }
}

/// The largest page of alerts.
pub const MAX_ALERTS: usize = 1000;

/// An alert from its stored columns, in the order of the `alert_columns`
/// of both backends.
pub(crate) fn from_columns(
    id: [u8; 16],
    kind: &str,
    workflow: String,
    status: i64,
    (raised_at, resolved_at): (i64, Option<i64>),
    message: String,
    details: serde_json::Value,
) -> Result<Alert, String> {
    let status = match status {
        -1 => None,
        code => Some(
            u8::try_from(code)
                .ok()
                .and_then(RunStatus::from_code)
                .ok_or_else(|| format!("alert with unknown run status code {code}"))?,
        ),
    };
    Ok(Alert {
        id: AlertId::from_bytes(id),
        kind: kind.parse().map_err(|e: cairn_core::alert::UnknownAlertKind| e.to_string())?,
        workflow,
        status,
        raised_at: Timestamp::from_micros(raised_at),
        resolved_at: resolved_at.map(Timestamp::from_micros),
        message,
        details,
    })
}
