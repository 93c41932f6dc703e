//! Task and run statuses and the one table of legal transitions between them.
//!
//! Every writer of a status goes through [`TaskStatus::check`] or
//! [`RunStatus::check`]; an illegal transition is an error, never applied.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a task stands. Terminal statuses never change again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Created with its run, not yet looked at by the scheduler.
    Submitted,
    /// Waiting for upstream tasks to finish.
    Blocked,
    /// Ready to run, waiting for an executor slot or a worker (or a retry's back-off).
    Pending,
    /// Held by an executor under a lease.
    Running,
    Completed,
    /// Failed for good: no retries left.
    Failed,
    Canceled,
    /// Not run: a precondition was false, or an upstream task was skipped.
    Skipped,
    /// Will never run because something upstream failed or was canceled.
    Abandoned,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 9] = [
        TaskStatus::Submitted,
        TaskStatus::Blocked,
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Canceled,
        TaskStatus::Skipped,
        TaskStatus::Abandoned,
    ];

    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed
                | TaskStatus::Failed
                | TaskStatus::Canceled
                | TaskStatus::Skipped
                | TaskStatus::Abandoned
        )
    }

    /// The transition table. `PENDING → SKIPPED` extends DESIGN.md's table:
    /// a precondition is evaluated when the task is dispatched, after its
    /// upstream finished, and a false one skips the task without running it.
    pub const fn can_become(self, to: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, to),
            (Submitted, Blocked | Pending | Canceled)
                | (Blocked, Pending | Skipped | Abandoned | Canceled)
                | (Pending, Running | Skipped | Canceled | Abandoned)
                | (Running, Completed | Failed | Canceled | Pending)
        )
    }

    /// `from = None` is the creation of the task, which must be SUBMITTED.
    pub fn check(from: Option<TaskStatus>, to: TaskStatus) -> Result<(), IllegalTransition> {
        let ok = match from {
            None => to == TaskStatus::Submitted,
            Some(from) => from.can_become(to),
        };
        if ok {
            Ok(())
        } else {
            Err(IllegalTransition { from: from.map(|s| s.as_str()), to: to.as_str(), kind: "task" })
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Submitted => "SUBMITTED",
            TaskStatus::Blocked => "BLOCKED",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Completed => "COMPLETED",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Canceled => "CANCELED",
            TaskStatus::Skipped => "SKIPPED",
            TaskStatus::Abandoned => "ABANDONED",
        }
    }

    /// Stable small integer for compact storage; never renumber.
    pub const fn code(self) -> u8 {
        match self {
            TaskStatus::Submitted => 0,
            TaskStatus::Blocked => 1,
            TaskStatus::Pending => 2,
            TaskStatus::Running => 3,
            TaskStatus::Completed => 4,
            TaskStatus::Failed => 5,
            TaskStatus::Canceled => 6,
            TaskStatus::Skipped => 7,
            TaskStatus::Abandoned => 8,
        }
    }

    pub fn from_code(code: u8) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Queued,
    Running,
    Completed,
    /// Finished, but some steps failed under `continue_on` (Dagu's "partially succeeded").
    PartiallySucceeded,
    Failed,
    Canceled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::PartiallySucceeded,
        RunStatus::Failed,
        RunStatus::Canceled,
    ];

    pub const fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    pub const fn can_become(self, to: RunStatus) -> bool {
        use RunStatus::*;
        match self {
            Queued => !matches!(to, Queued),
            Running => to.is_terminal(),
            _ => false,
        }
    }

    pub fn check(from: Option<RunStatus>, to: RunStatus) -> Result<(), IllegalTransition> {
        let ok = match from {
            None => to == RunStatus::Queued,
            Some(from) => from.can_become(to),
        };
        if ok {
            Ok(())
        } else {
            Err(IllegalTransition { from: from.map(|s| s.as_str()), to: to.as_str(), kind: "run" })
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "QUEUED",
            RunStatus::Running => "RUNNING",
            RunStatus::Completed => "COMPLETED",
            RunStatus::PartiallySucceeded => "PARTIALLY_SUCCEEDED",
            RunStatus::Failed => "FAILED",
            RunStatus::Canceled => "CANCELED",
        }
    }

    pub const fn code(self) -> u8 {
        match self {
            RunStatus::Queued => 0,
            RunStatus::Running => 1,
            RunStatus::Completed => 2,
            RunStatus::PartiallySucceeded => 3,
            RunStatus::Failed => 4,
            RunStatus::Canceled => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.code() == code)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal {kind} transition {} -> {to}", from.unwrap_or("(new)"))]
pub struct IllegalTransition {
    pub kind: &'static str,
    pub from: Option<&'static str>,
    pub to: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} status {input:?}; valid statuses are {valid}")]
pub struct UnknownStatus {
    pub kind: &'static str,
    pub input: String,
    pub valid: String,
}

fn normalize(s: &str) -> String {
    s.trim().to_ascii_uppercase().replace(['-', ' '], "_")
}

impl FromStr for TaskStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = normalize(s);
        let n = if n == "CANCELLED" { "CANCELED".to_owned() } else { n };
        TaskStatus::ALL.into_iter().find(|st| st.as_str() == n).ok_or_else(|| UnknownStatus {
            kind: "task",
            input: s.to_owned(),
            valid: TaskStatus::ALL.map(|s| s.as_str()).join(", "),
        })
    }
}

impl FromStr for RunStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = normalize(s);
        let n = match n.as_str() {
            "CANCELLED" => "CANCELED".to_owned(),
            "SUCCEEDED" | "SUCCESS" => "COMPLETED".to_owned(),
            "PARTIAL" | "PARTIALLY_SUCCESS" => "PARTIALLY_SUCCEEDED".to_owned(),
            _ => n,
        };
        RunStatus::ALL.into_iter().find(|st| st.as_str() == n).ok_or_else(|| UnknownStatus {
            kind: "run",
            input: s.to_owned(),
            valid: RunStatus::ALL.map(|s| s.as_str()).join(", "),
        })
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::*;

    #[test]
    fn transition_table_matches_the_design() {
        let table: Vec<String> = TaskStatus::ALL
            .iter()
            .map(|from| {
                let tos: Vec<&str> =
                    TaskStatus::ALL.iter().filter(|to| from.can_become(**to)).map(|s| s.as_str()).collect();
                format!("{from} -> {}", if tos.is_empty() { "(terminal)".into() } else { tos.join(" | ") })
            })
            .collect();
        insta::assert_snapshot!(table.join("\n"), @r"
        SUBMITTED -> BLOCKED | PENDING | CANCELED
        BLOCKED -> PENDING | CANCELED | SKIPPED | ABANDONED
        PENDING -> RUNNING | CANCELED | SKIPPED | ABANDONED
        RUNNING -> PENDING | COMPLETED | FAILED | CANCELED
        COMPLETED -> (terminal)
        FAILED -> (terminal)
        CANCELED -> (terminal)
        SKIPPED -> (terminal)
        ABANDONED -> (terminal)
        ");
    }

    #[test]
    fn terminal_statuses_have_no_way_out() {
        for s in TaskStatus::ALL {
            let outs = TaskStatus::ALL.iter().filter(|to| s.can_become(**to)).count();
            assert_eq!(s.is_terminal(), outs == 0, "{s}");
        }
        for s in RunStatus::ALL {
            let outs = RunStatus::ALL.iter().filter(|to| s.can_become(**to)).count();
            assert_eq!(s.is_terminal(), outs == 0, "{s}");
        }
    }

    #[test]
    fn creation_is_only_submitted() {
        assert!(TaskStatus::check(None, Submitted).is_ok());
        let err = TaskStatus::check(None, Running).unwrap_err();
        assert_eq!(err.to_string(), "illegal task transition (new) -> RUNNING");
        assert_eq!(
            TaskStatus::check(Some(Completed), Running).unwrap_err().to_string(),
            "illegal task transition COMPLETED -> RUNNING"
        );
    }

    #[test]
    fn parsing_lists_valid_statuses() {
        assert_eq!("failed".parse::<TaskStatus>().unwrap(), Failed);
        assert_eq!("cancelled".parse::<TaskStatus>().unwrap(), Canceled);
        assert_eq!("partially-succeeded".parse::<RunStatus>().unwrap(), RunStatus::PartiallySucceeded);
        let err = "done".parse::<TaskStatus>().unwrap_err().to_string();
        assert!(err.contains("SUBMITTED, BLOCKED, PENDING"), "{err}");
    }

    #[test]
    fn codes_are_stable_and_round_trip() {
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::from_code(s.code()), Some(s));
        }
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::from_code(s.code()), Some(s));
        }
    }
}
