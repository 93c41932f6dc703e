//! Figures derived from a task's transition log: when it was submitted, first
//! ran and finished, and how long it spent blocked, pending and running.
//!
//! Phases are summed over the whole log, so retries add up rather than
//! overwrite; a status the task never reached contributes zero; the phase a
//! task is in now is measured up to `now`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::record::Transition;
use crate::status::TaskStatus;

/// Taipy's names where it has them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    pub submitted_at: Option<Timestamp>,
    /// First time the task went RUNNING.
    pub run_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Time in BLOCKED (waiting for upstream).
    #[serde(with = "seconds")]
    pub blocked_duration: Duration,
    /// Time in PENDING (queue wait, including retry back-off).
    #[serde(with = "seconds")]
    pub pending_duration: Duration,
    /// Time in RUNNING, over all attempts.
    #[serde(with = "seconds")]
    pub execution_duration: Duration,
    /// Submission to finish, or to `now` while unfinished.
    #[serde(with = "seconds")]
    pub total_duration: Duration,
}

impl Durations {
    /// `log` must be one task's transitions in order.
    pub fn from_log(log: &[Transition], now: Timestamp) -> Durations {
        let mut d = Durations::default();
        let mut current: Option<(TaskStatus, Timestamp)> = None;
        for t in log {
            if let Some((status, since)) = current {
                d.add(status, t.at.since(since));
            }
            match t.to {
                TaskStatus::Submitted => d.submitted_at = d.submitted_at.or(Some(t.at)),
                TaskStatus::Running => d.run_at = d.run_at.or(Some(t.at)),
                s if s.is_terminal() => d.finished_at = Some(t.at),
                _ => {}
            }
            current = Some((t.to, t.at));
        }
        if let Some((status, since)) = current
            && !status.is_terminal()
        {
            d.add(status, now.since(since));
        }
        if let Some(start) = d.submitted_at.or(log.first().map(|t| t.at)) {
            d.total_duration = d.finished_at.unwrap_or(now).since(start);
        }
        d
    }

    fn add(&mut self, status: TaskStatus, span: Duration) {
        match status {
            TaskStatus::Blocked => self.blocked_duration += span,
            TaskStatus::Pending => self.pending_duration += span,
            TaskStatus::Running => self.execution_duration += span,
            _ => {}
        }
    }
}

/// Durations travel in JSON as seconds with microsecond precision (a float),
/// as Taipy reports them.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_micros() as f64) / 1e6)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Actor;
    use TaskStatus::*;

    fn log(steps: &[(Option<TaskStatus>, TaskStatus, i64)]) -> Vec<Transition> {
        steps
            .iter()
            .map(|&(from, to, ms)| Transition {
                attempt: 0,
                from,
                to,
                at: Timestamp::from_micros(ms * 1000),
                reason: String::new(),
                actor: Actor::Scheduler,
            })
            .collect()
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn full_life_with_every_phase() {
        let l = log(&[
            (None, Submitted, 0),
            (Some(Submitted), Blocked, 1),
            (Some(Blocked), Pending, 11),
            (Some(Pending), Running, 31),
            (Some(Running), Completed, 131),
        ]);
        let d = Durations::from_log(&l, Timestamp::from_micros(999_000_000));
        assert_eq!(d.blocked_duration, MS(10));
        assert_eq!(d.pending_duration, MS(20));
        assert_eq!(d.execution_duration, MS(100));
        assert_eq!(d.total_duration, MS(131));
        assert_eq!(d.run_at, Some(Timestamp::from_micros(31_000)));
        assert_eq!(d.finished_at, Some(Timestamp::from_micros(131_000)));
    }

    #[test]
    fn pending_straight_to_canceled_has_no_running_time() {
        let l = log(&[(None, Submitted, 0), (Some(Submitted), Pending, 0), (Some(Pending), Canceled, 50)]);
        let d = Durations::from_log(&l, Timestamp::from_micros(10_000_000));
        assert_eq!(d.execution_duration, Duration::ZERO);
        assert_eq!(d.run_at, None);
        assert_eq!(d.pending_duration, MS(50));
        assert_eq!(d.total_duration, MS(50));
    }

    #[test]
    fn unfinished_tasks_are_measured_to_now() {
        let l = log(&[(None, Submitted, 0), (Some(Submitted), Pending, 5), (Some(Pending), Running, 10)]);
        let d = Durations::from_log(&l, Timestamp::from_micros(70_000));
        assert_eq!(d.execution_duration, MS(60));
        assert_eq!(d.total_duration, MS(70));
        assert_eq!(d.finished_at, None);
    }

    #[test]
    fn retries_add_up_and_keep_the_first_start() {
        let l = log(&[
            (None, Submitted, 0),
            (Some(Submitted), Pending, 0),
            (Some(Pending), Running, 10),
            (Some(Running), Pending, 30),
            (Some(Pending), Running, 130),
            (Some(Running), Failed, 150),
        ]);
        let d = Durations::from_log(&l, Timestamp::from_micros(0));
        assert_eq!(d.execution_duration, MS(40));
        assert_eq!(d.pending_duration, MS(110));
        assert_eq!(d.run_at, Some(Timestamp::from_micros(10_000)));
    }

    #[test]
    fn skipped_from_blocked() {
        let l = log(&[(None, Submitted, 0), (Some(Submitted), Blocked, 0), (Some(Blocked), Skipped, 40)]);
        let d = Durations::from_log(&l, Timestamp::from_micros(0));
        assert_eq!(d.blocked_duration, MS(40));
        assert_eq!(d.pending_duration + d.execution_duration, Duration::ZERO);
    }
}
