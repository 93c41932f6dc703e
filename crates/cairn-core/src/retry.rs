//! Retry rules: whether a failed attempt is tried again, and after how long.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A step's retry policy, already validated (Dagu's `retry_policy`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 means the first failure is final.
    pub limit: u32,
    /// Wait before the first retry.
    pub interval: Duration,
    /// Each further retry waits this many times longer (1.0 = constant).
    pub backoff: f64,
    /// Cap on the wait, when backing off.
    pub max_interval: Option<Duration>,
    /// Retry only when the attempt exited with one of these codes; empty = any failure.
    pub exit_codes: Vec<i32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            limit: 0,
            interval: Duration::ZERO,
            backoff: 1.0,
            max_interval: None,
            exit_codes: Vec::new(),
        }
    }
}

/// Why an attempt failed, as far as retrying cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The process exited with this non-zero code.
    Exit(i32),
    /// Killed by its timeout.
    Timeout,
    /// The executor lost its lease (worker or process died).
    HeartbeatLost,
    /// The command could not be started at all.
    StartFailed,
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 = first retry), or `None` when
    /// `attempt` (1-based, the one that just failed) was the last allowed.
    pub fn next_retry(&self, attempt: u32, failure: FailureKind) -> Option<Duration> {
        if attempt > self.limit {
            return None;
        }
        if !self.exit_codes.is_empty() {
            match failure {
                FailureKind::Exit(code) if self.exit_codes.contains(&code) => {}
                _ => return None,
            }
        }
        Some(self.delay(attempt))
    }

    fn delay(&self, retry: u32) -> Duration {
        let factor = if self.backoff > 1.0 { self.backoff.powi(retry.saturating_sub(1) as i32) } else { 1.0 };
        let secs = self.interval.as_secs_f64() * factor;
        let d = Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);
        match self.max_interval {
            Some(max) if self.backoff > 1.0 => d.min(max),
            _ => d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: u32, interval_s: u64, backoff: f64, max_s: Option<u64>) -> RetryPolicy {
        RetryPolicy {
            limit,
            interval: Duration::from_secs(interval_s),
            backoff,
            max_interval: max_s.map(Duration::from_secs),
            exit_codes: vec![],
        }
    }

    #[test]
    fn constant_interval_until_the_limit() {
        let p = policy(2, 3, 1.0, None);
        assert_eq!(p.next_retry(1, FailureKind::Exit(1)), Some(Duration::from_secs(3)));
        assert_eq!(p.next_retry(2, FailureKind::Timeout), Some(Duration::from_secs(3)));
        assert_eq!(p.next_retry(3, FailureKind::Exit(1)), None);
    }

    #[test]
    fn exponential_backoff_is_capped() {
        let p = policy(5, 1, 2.0, Some(5));
        let delays: Vec<u64> =
            (1..=5).map(|a| p.next_retry(a, FailureKind::Exit(1)).unwrap().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 5, 5]);
    }

    #[test]
    fn exit_codes_restrict_what_is_retried() {
        let p = RetryPolicy { exit_codes: vec![42], ..policy(3, 0, 1.0, None) };
        assert!(p.next_retry(1, FailureKind::Exit(42)).is_some());
        assert!(p.next_retry(1, FailureKind::Exit(1)).is_none());
        assert!(p.next_retry(1, FailureKind::HeartbeatLost).is_none());
    }

    #[test]
    fn no_policy_never_retries() {
        assert_eq!(RetryPolicy::default().next_retry(1, FailureKind::Exit(1)), None);
    }
}
