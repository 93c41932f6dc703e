//! Telling a swing in a workflow's status mix from its usual: the share of a
//! watched status among the runs that finished in a recent window, against
//! the same share over a longer baseline just before it.
//!
//! Only rises count. When one status's share rises the others fall, so
//! reporting falls too would say the same thing twice; and a failure rate
//! that drops is not news anyone must act on.
//!
//! An open alert closes only once the rise is back under half the threshold
//! (hysteresis): a share that hovers at the threshold would otherwise open
//! and close an alert at every check. Too few finished runs in either window
//! decide nothing, and an open alert stays as it is until enough runs show
//! the mix back to normal.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{RunStatus, Timestamp};

/// When a workflow's status mix counts as swung, and over which windows.
#[derive(Clone, Debug, PartialEq)]
pub struct AnomalyRule {
    /// The recent window, ending now.
    pub recent: Duration,
    /// The baseline, ending where the recent window starts.
    pub baseline: Duration,
    /// How far a status's share (0 to 1) must rise above its baseline share.
    pub threshold: f64,
    /// The fewest finished runs in each window to judge from.
    pub min_runs: u64,
    /// The statuses whose share is watched.
    pub statuses: Vec<RunStatus>,
}

impl Default for AnomalyRule {
    fn default() -> Self {
        AnomalyRule {
            recent: Duration::from_secs(3600),
            baseline: Duration::from_secs(7 * 86_400),
            threshold: 0.25,
            min_runs: 10,
            statuses: vec![RunStatus::Failed],
        }
    }
}

/// Why a rule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRule {
    #[error("the recent window must be at least one minute, got {0:?}")]
    RecentTooShort(Duration),
    #[error("the baseline must be longer than the recent window ({recent:?}), got {baseline:?}")]
    BaselineTooShort { recent: Duration, baseline: Duration },
    #[error("the threshold is a share between 0 and 1 (0.25 = 25 points), got {0}")]
    Threshold(String),
    #[error("the minimum of runs must be at least 1")]
    MinRuns,
    #[error("{0} is not a finished status; watch COMPLETED, PARTIALLY_SUCCEEDED, FAILED or CANCELED")]
    NotFinished(RunStatus),
    #[error("no status to watch")]
    NoStatus,
}

impl AnomalyRule {
    pub fn validate(&self) -> Result<(), BadRule> {
        if self.recent < Duration::from_secs(60) {
            return Err(BadRule::RecentTooShort(self.recent));
        }
        if self.baseline <= self.recent {
            return Err(BadRule::BaselineTooShort { recent: self.recent, baseline: self.baseline });
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(BadRule::Threshold(self.threshold.to_string()));
        }
        if self.min_runs == 0 {
            return Err(BadRule::MinRuns);
        }
        if self.statuses.is_empty() {
            return Err(BadRule::NoStatus);
        }
        match self.statuses.iter().find(|s| !s.is_terminal()) {
            Some(s) => Err(BadRule::NotFinished(*s)),
            None => Ok(()),
        }
    }

    /// The recent window `[now - recent, now)` and the baseline before it.
    pub fn windows(&self, now: Timestamp) -> Windows {
        let recent_from = now.saturating_sub(self.recent);
        Windows {
            baseline: (recent_from.saturating_sub(self.baseline), recent_from),
            recent: (recent_from, now),
        }
    }

    /// The verdict on `status` from the mixes of both windows; `open` tells
    /// whether an alert about it is open now.
    pub fn judge(&self, status: RunStatus, recent: &Mix, baseline: &Mix, open: bool) -> Verdict {
        if recent.finished < self.min_runs || baseline.finished < self.min_runs {
            return Verdict::Undecided;
        }
        let swing = Swing {
            status,
            recent_share: recent.share(status),
            baseline_share: baseline.share(status),
            recent_runs: recent.finished,
            baseline_runs: baseline.finished,
        };
        let needed = if open { self.threshold / 2.0 } else { self.threshold };
        if swing.rise() >= needed { Verdict::Swung(swing) } else { Verdict::Usual }
    }
}

/// `[from, to)` of each window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    pub baseline: (Timestamp, Timestamp),
    pub recent: (Timestamp, Timestamp),
}

/// The finished runs of one window, by status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mix {
    finished: u64,
    counts: BTreeMap<RunStatus, u64>,
}

impl Mix {
    /// From counts by status; runs not yet finished are left out.
    pub fn new(counts: &BTreeMap<RunStatus, u64>) -> Mix {
        let counts: BTreeMap<RunStatus, u64> =
            counts.iter().filter(|(s, _)| s.is_terminal()).map(|(s, n)| (*s, *n)).collect();
        Mix { finished: counts.values().sum(), counts }
    }

    pub fn finished(&self) -> u64 {
        self.finished
    }

    /// The share of `status` among the finished runs; 0 with none.
    pub fn share(&self, status: RunStatus) -> f64 {
        if self.finished == 0 {
            return 0.0;
        }
        self.counts.get(&status).copied().unwrap_or(0) as f64 / self.finished as f64
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Too few finished runs in a window to tell.
    Undecided,
    /// The share is where it usually is (for an open alert: back under half
    /// the threshold).
    Usual,
    Swung(Swing),
}

/// The figures of a swing, as recorded in its alert's details.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Swing {
    pub status: RunStatus,
    /// The share (0 to 1) of `status` among the recent window's finished runs.
    pub recent_share: f64,
    pub baseline_share: f64,
    pub recent_runs: u64,
    pub baseline_runs: u64,
}

impl Swing {
    pub fn rise(&self) -> f64 {
        self.recent_share - self.baseline_share
    }
}

impl fmt::Display for Swing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rose to {:.0}% of {} finished runs, from {:.0}% of {} in the baseline",
            self.status,
            self.recent_share * 100.0,
            self.recent_runs,
            self.baseline_share * 100.0,
            self.baseline_runs
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(completed: u64, failed: u64, running: u64) -> Mix {
        Mix::new(&BTreeMap::from([
            (RunStatus::Completed, completed),
            (RunStatus::Failed, failed),
            (RunStatus::Running, running),
        ]))
    }

    #[test]
    fn unfinished_runs_are_not_in_the_mix() {
        let m = mix(6, 2, 100);
        assert_eq!(m.finished(), 8);
        assert_eq!(m.share(RunStatus::Failed), 0.25);
        assert_eq!(Mix::default().share(RunStatus::Failed), 0.0);
    }

    #[test]
    fn a_rise_past_the_threshold_is_a_swing() {
        let rule = AnomalyRule::default();
        let baseline = mix(95, 5, 0);
        match rule.judge(RunStatus::Failed, &mix(6, 4, 0), &baseline, false) {
            Verdict::Swung(s) => {
                assert!((s.rise() - 0.35).abs() < 1e-9);
                assert_eq!((s.recent_runs, s.baseline_runs), (10, 100));
                assert_eq!(
                    s.to_string(),
                    "FAILED rose to 40% of 10 finished runs, from 5% of 100 in the baseline"
                );
            }
            v => panic!("expected a swing, got {v:?}"),
        }
        assert_eq!(rule.judge(RunStatus::Failed, &mix(8, 2, 0), &baseline, false), Verdict::Usual);
    }

    #[test]
    fn falls_are_not_swings() {
        let rule = AnomalyRule::default();
        assert_eq!(rule.judge(RunStatus::Failed, &mix(10, 0, 0), &mix(50, 50, 0), false), Verdict::Usual);
    }

    #[test]
    fn too_few_runs_decide_nothing() {
        let rule = AnomalyRule::default();
        assert_eq!(rule.judge(RunStatus::Failed, &mix(0, 9, 50), &mix(95, 5, 0), false), Verdict::Undecided);
        assert_eq!(rule.judge(RunStatus::Failed, &mix(0, 10, 0), &mix(5, 4, 0), true), Verdict::Undecided);
    }

    #[test]
    fn an_open_alert_closes_under_half_the_threshold() {
        let rule = AnomalyRule::default();
        let baseline = mix(100, 0, 0);
        // A rise of 20 points: not enough to open, enough to stay open.
        let hovering = mix(8, 2, 0);
        assert_eq!(rule.judge(RunStatus::Failed, &hovering, &baseline, false), Verdict::Usual);
        assert!(matches!(rule.judge(RunStatus::Failed, &hovering, &baseline, true), Verdict::Swung(_)));
        assert_eq!(rule.judge(RunStatus::Failed, &mix(9, 1, 0), &baseline, true), Verdict::Usual);
    }

    #[test]
    fn windows_meet_at_the_start_of_the_recent_one() {
        let rule = AnomalyRule::default();
        let now = Timestamp::from_micros(10 * 86_400 * 1_000_000);
        let w = rule.windows(now);
        assert_eq!(w.recent.1, now);
        assert_eq!(w.recent.0, now.saturating_sub(Duration::from_secs(3600)));
        assert_eq!(w.baseline.1, w.recent.0);
        assert_eq!(w.baseline.0, w.recent.0.saturating_sub(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let bad = |f: fn(&mut AnomalyRule)| {
            let mut r = AnomalyRule::default();
            f(&mut r);
            r.validate().unwrap_err().to_string()
        };
        assert!(bad(|r| r.threshold = 1.5).contains("between 0 and 1"));
        assert!(bad(|r| r.threshold = f64::NAN).contains("between 0 and 1"));
        assert!(bad(|r| r.baseline = r.recent).contains("longer than the recent window"));
        assert!(bad(|r| r.recent = Duration::from_secs(1)).contains("at least one minute"));
        assert!(bad(|r| r.statuses = vec![RunStatus::Running]).contains("RUNNING is not a finished status"));
        assert!(bad(|r| r.min_runs = 0).contains("at least 1"));
        assert_eq!(AnomalyRule::default().validate(), Ok(()));
    }
}
