//! Attempts the reaper ended: a worker (or a process running a local step)
//! stopped heartbeating, and the attempt failed with "heartbeat lost" —
//! then retried or failed for good. Read straight from the transition log,
//! newest first, through an index that holds only the reaper's transitions
//! out of RUNNING (V15): a handful of rows among millions, so the newest
//! page costs the same whatever the history's size, and the list can never
//! disagree with the log it is read from.

use std::fmt;
use std::str::FromStr;

use cairn_core::{RunId, TaskId, TaskStatus, Timestamp};

/// One attempt ended by the reaper, as its transition recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReapedAttempt {
    pub run_id: RunId,
    pub task_id: TaskId,
    pub workflow: String,
    pub step: String,
    pub attempt: u32,
    pub at: Timestamp,
    /// PENDING when the task was retried, FAILED when that was its last attempt.
    pub to: TaskStatus,
    /// The transition's reason: who stopped heartbeating and when.
    pub reason: String,
    /// Where the next page starts.
    pub cursor: ReapedCursor,
}

/// A position in the list, newest first: the transition's time and its
/// sequence number, which tells apart attempts reaped at the same instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReapedCursor {
    pub at: Timestamp,
    pub seq: i64,
}

impl fmt::Display for ReapedCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.at.as_micros(), self.seq)
    }
}

/// A cursor that is not one ([`ReapedCursor`]'s `<µs>.<seq>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor of reaped attempts: {0:?} (pass back a `next_before` as it was given)")]
pub struct BadReapedCursor(pub String);

impl FromStr for ReapedCursor {
    type Err = BadReapedCursor;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadReapedCursor(s.to_owned());
        let (at, seq) = s.split_once('.').ok_or_else(bad)?;
        Ok(ReapedCursor {
            at: Timestamp::from_micros(at.parse().map_err(|_| bad())?),
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// Which reaped attempts to read, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReapedQuery {
    /// Only attempts of runs of these workflows (empty: every workflow).
    pub workflows: Vec<String>,
    /// Only attempts reaped before this position (the previous page's last).
    pub before: Option<ReapedCursor>,
    pub limit: usize,
}

impl Default for ReapedQuery {
    fn default() -> Self {
        ReapedQuery { workflows: Vec::new(), before: None, limit: 100 }
    }
}

/// The largest page of reaped attempts.
pub const MAX_REAPED: usize = 1000;
