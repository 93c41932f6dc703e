//! Alerts: something an operator should hear about without watching a
//! screen, recorded once when it starts and closed when it is over.
//!
//! An alert is keyed by what it is about (its kind, workflow and status):
//! at most one alert per key is open at a time, so a condition that lasts
//! is one alert, not one per check.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{AlertId, RunStatus, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The share of a status among a workflow's recent runs rose far above
    /// its own baseline ([`crate::anomaly`]).
    Anomaly,
}

impl AlertKind {
    pub const ALL: [AlertKind; 1] = [AlertKind::Anomaly];

    /// The stable name stored and shown (`anomaly`).
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertKind::Anomaly => "anomaly",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alert kind's name that is not one ([`AlertKind::as_str`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown alert kind {0:?}; expected one of: anomaly")]
pub struct UnknownAlertKind(pub String);

impl FromStr for AlertKind {
    type Err = UnknownAlertKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownAlertKind(s.to_owned()))
    }
}

/// An alert as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    pub id: AlertId,
    pub kind: AlertKind,
    pub workflow: String,
    /// The run status it is about, if any.
    pub status: Option<RunStatus>,
    pub raised_at: Timestamp,
    /// When the condition was over; `None` while the alert is open.
    pub resolved_at: Option<Timestamp>,
    /// One line for a person.
    pub message: String,
    /// The figures behind it, by kind (for an anomaly: [`crate::anomaly::Swing`]).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}
