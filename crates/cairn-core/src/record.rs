//! The append-only status log: one [`Transition`] per status change, with its
//! reason and its actor, and [`TaskState`], the only code that changes a status.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::status::{IllegalTransition, RunStatus, TaskStatus};

/// Who made a change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The engine's scheduler: promotions, skips, abandonment, run bookkeeping.
    Scheduler,
    /// The in-process executor of `cairn run` / `cairn serve`.
    Executor,
    /// A remote worker, by id.
    Worker(String),
    /// A person or API token, by name.
    User(String),
    /// The reaper, which fails attempts whose lease expired.
    Reaper,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Scheduler => f.write_str("scheduler"),
            Actor::Executor => f.write_str("executor"),
            Actor::Reaper => f.write_str("reaper"),
            Actor::Worker(id) => write!(f, "worker:{id}"),
            Actor::User(name) => write!(f, "user:{name}"),
        }
    }
}

impl FromStr for Actor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "scheduler" => Actor::Scheduler,
            "executor" => Actor::Executor,
            "reaper" => Actor::Reaper,
            _ => match s.split_once(':') {
                Some(("worker", id)) => Actor::Worker(id.to_owned()),
                Some(("user", name)) => Actor::User(name.to_owned()),
                _ => {
                    return Err(format!(
                        "unknown actor {s:?}: expected scheduler, executor, reaper, worker:ID or user:NAME"
                    ));
                }
            },
        })
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// One status change of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The attempt this change belongs to (1-based; 0 before the first start).
    pub attempt: u32,
    /// `None` for the creation of the task.
    pub from: Option<TaskStatus>,
    pub to: TaskStatus,
    pub at: Timestamp,
    pub reason: String,
    pub actor: Actor,
}

/// One status change of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTransition {
    pub from: Option<RunStatus>,
    pub to: RunStatus,
    pub at: Timestamp,
    pub reason: String,
    pub actor: Actor,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error("time went backwards: {to} at {at} is before the previous change at {last}")]
    TimeWentBack { to: TaskStatus, at: Timestamp, last: Timestamp },
}

/// A task's status and log, as the in-memory owner of that task sees it.
///
/// [`TaskState::transition`] is the single place a status changes: it checks
/// the table and the clock, bumps the attempt on each start, and returns the
/// record to persist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskState {
    status: TaskStatus,
    attempt: u32,
    last_at: Timestamp,
}

impl TaskState {
    /// A new task and its creation record.
    pub fn submit(at: Timestamp, reason: impl Into<String>, actor: Actor) -> (TaskState, Transition) {
        let t = Transition {
            attempt: 0,
            from: None,
            to: TaskStatus::Submitted,
            at,
            reason: reason.into(),
            actor,
        };
        (TaskState { status: TaskStatus::Submitted, attempt: 0, last_at: at }, t)
    }

    /// Rebuild from stored fields (e.g. after a restart).
    pub fn restore(status: TaskStatus, attempt: u32, last_at: Timestamp) -> TaskState {
        TaskState { status, attempt, last_at }
    }

    pub fn status(&self) -> TaskStatus {
        self.status
    }

    /// The current attempt (1-based once started; 0 before).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn last_at(&self) -> Timestamp {
        self.last_at
    }

    pub fn transition(
        &mut self,
        to: TaskStatus,
        at: Timestamp,
        reason: impl Into<String>,
        actor: Actor,
    ) -> Result<Transition, TransitionError> {
        TaskStatus::check(Some(self.status), to)?;
        if at < self.last_at {
            return Err(TransitionError::TimeWentBack { to, at, last: self.last_at });
        }
        if to == TaskStatus::Running {
            self.attempt += 1;
        }
        let t = Transition {
            attempt: self.attempt,
            from: Some(self.status),
            to,
            at,
            reason: reason.into(),
            actor,
        };
        self.status = to;
        self.last_at = at;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn actors_round_trip() {
        for a in [
            Actor::Scheduler,
            Actor::Executor,
            Actor::Reaper,
            Actor::Worker("w-1".into()),
            Actor::User("alice".into()),
        ] {
            assert_eq!(a.to_string().parse::<Actor>().unwrap(), a);
        }
        assert!("robot".parse::<Actor>().is_err());
    }

    #[test]
    fn attempts_count_starts() {
        let t0 = Timestamp::from_micros(0);
        let (mut s, _) = TaskState::submit(t0, "created", Actor::Scheduler);
        s.transition(TaskStatus::Pending, t0, "ready", Actor::Scheduler).unwrap();
        let r1 = s.transition(TaskStatus::Running, t0, "leased", Actor::Executor).unwrap();
        s.transition(TaskStatus::Pending, t0, "attempt 1 failed: exit code 1", Actor::Executor).unwrap();
        let r2 = s.transition(TaskStatus::Running, t0, "leased", Actor::Executor).unwrap();
        assert_eq!((r1.attempt, r2.attempt), (1, 2));
    }

    fn arb_status() -> impl Strategy<Value = TaskStatus> {
        prop::sample::select(TaskStatus::ALL.to_vec())
    }

    proptest! {
        /// Random attempted changes at random times: whatever is accepted is a
        /// legal, time-ordered log, and nothing leaves a terminal status.
        #[test]
        fn random_event_sequences_keep_the_invariants(
            events in prop::collection::vec((arb_status(), -5i64..50), 0..60)
        ) {
            let mut now = 1_000i64;
            let (mut state, first) = TaskState::submit(Timestamp::from_micros(now), "created", Actor::Scheduler);
            let mut log = vec![first];
            for (to, dt) in events {
                now += dt;
                let before = state.clone();
                match state.transition(to, Timestamp::from_micros(now), "x", Actor::Scheduler) {
                    Ok(t) => {
                        prop_assert!(!before.status().is_terminal());
                        prop_assert!(before.status().can_become(to));
                        log.push(t);
                    }
                    Err(_) => prop_assert_eq!(&state, &before),
                }
            }
            for w in log.windows(2) {
                prop_assert_eq!(w[0].to, w[1].from.unwrap());
                prop_assert!(w[0].at <= w[1].at);
                prop_assert!(w[0].attempt <= w[1].attempt);
            }
            if let Some(pos) = log.iter().position(|t| t.to.is_terminal()) {
                prop_assert_eq!(pos, log.len() - 1);
            }
        }
    }
}
