//! What history says a step or a run usually takes: percentiles of past
//! durations, the rule that flags a task running "slower than usual", and a
//! run's estimated finish.
//!
//! Percentiles are nearest-rank: the p-th percentile of n values is the
//! value at rank ⌈p·n/100⌉ of the sorted values, so it is always one of the
//! values seen (never an interpolation) and the same on every store.

use std::time::Duration;

use crate::Timestamp;

/// Fewer past runs than this predict nothing: an expected duration drawn
/// from two or three samples says more about chance than about the step.
pub const MIN_SAMPLES: u32 = 5;

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of `sorted` (ascending);
/// `None` for no values.
pub fn percentile(sorted: &[Duration], p: u32) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (u64::from(p.clamp(1, 100)) * n as u64).div_ceil(100).max(1);
    Some(sorted[usize::try_from(rank).unwrap_or(n).min(n) - 1])
}

/// The median, 95th percentile and maximum of some durations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spread {
    pub p50: Duration,
    pub p95: Duration,
    pub max: Duration,
}

impl Spread {
    /// `None` for no values. Sorts `values` in place.
    pub fn of(values: &mut [Duration]) -> Option<Spread> {
        values.sort_unstable();
        Some(Spread { p50: percentile(values, 50)?, p95: percentile(values, 95)?, max: *values.last()? })
    }
}

/// How long something usually takes, from `samples` past occurrences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub samples: u32,
    pub p50: Duration,
    pub p95: Duration,
}

impl Expected {
    /// `None` for no samples. Sorts `values` in place.
    pub fn of(values: &mut [Duration]) -> Option<Expected> {
        let spread = Spread::of(values)?;
        Some(Expected {
            samples: u32::try_from(values.len()).unwrap_or(u32::MAX),
            p50: spread.p50,
            p95: spread.p95,
        })
    }

    /// Whether there are samples enough ([`MIN_SAMPLES`]) to predict from.
    pub fn is_reliable(&self) -> bool {
        self.samples >= MIN_SAMPLES
    }
}

/// A task that has been running for `elapsed` is slower than usual once it
/// is past the expected p95 of its step, if that comes from enough samples.
/// Past p95 means slower than 19 of 20 earlier runs: rare enough to be worth
/// a look, common enough to be seen before a timeout hits.
pub fn slower_than_usual(elapsed: Duration, expected: Option<&Expected>) -> bool {
    expected.is_some_and(|e| e.is_reliable() && elapsed > e.p95)
}

/// When a run that started at `started_at` will finish: its start plus the
/// expected (median) run duration, or the latest `predicted` finish of its
/// running tasks where that is later (a task's own progress knows more than
/// the history of its workflow). `None` when neither says anything: no
/// reliable expectation and no prediction.
pub fn run_eta(
    started_at: Timestamp,
    expected: Option<&Expected>,
    predicted: impl IntoIterator<Item = Timestamp>,
) -> Option<Timestamp> {
    let usual = expected.filter(|e| e.is_reliable()).map(|e| started_at.saturating_add(e.p50));
    predicted.into_iter().chain(usual).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted = secs(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(percentile(&sorted, 50), Some(Duration::from_secs(5)));
        assert_eq!(percentile(&sorted, 95), Some(Duration::from_secs(10)));
        assert_eq!(percentile(&sorted, 90), Some(Duration::from_secs(9)));
        assert_eq!(percentile(&sorted, 100), Some(Duration::from_secs(10)));
        assert_eq!(percentile(&sorted, 1), Some(Duration::from_secs(1)));
        assert_eq!(percentile(&secs(&[7]), 50), Some(Duration::from_secs(7)));
        assert_eq!(percentile(&secs(&[1, 2]), 50), Some(Duration::from_secs(1)));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn the_95th_of_twenty_is_the_nineteenth() {
        let sorted: Vec<Duration> = (1..=20).map(Duration::from_secs).collect();
        assert_eq!(percentile(&sorted, 95), Some(Duration::from_secs(19)));
        let sorted: Vec<Duration> = (1..=21).map(Duration::from_secs).collect();
        assert_eq!(percentile(&sorted, 95), Some(Duration::from_secs(20)));
    }

    #[test]
    fn spread_sorts_and_takes_the_max() {
        let mut values = secs(&[9, 1, 5, 3, 7]);
        let s = Spread::of(&mut values).unwrap();
        assert_eq!(
            s,
            Spread { p50: Duration::from_secs(5), p95: Duration::from_secs(9), max: Duration::from_secs(9) }
        );
        assert_eq!(Spread::of(&mut []), None);
    }

    #[test]
    fn expected_counts_its_samples() {
        let e = Expected::of(&mut secs(&[4, 2, 3])).unwrap();
        assert_eq!((e.samples, e.p50, e.p95), (3, Duration::from_secs(3), Duration::from_secs(4)));
        assert!(!e.is_reliable());
        assert!(Expected::of(&mut secs(&[1, 1, 1, 1, 1])).unwrap().is_reliable());
        assert_eq!(Expected::of(&mut []), None);
    }

    #[test]
    fn slower_than_usual_needs_enough_samples_and_strictly_past_p95() {
        let five = Expected::of(&mut secs(&[10, 10, 10, 10, 20])).unwrap();
        assert_eq!(five.p95, Duration::from_secs(20));
        assert!(!slower_than_usual(Duration::from_secs(20), Some(&five)), "at p95 is usual");
        assert!(slower_than_usual(Duration::from_secs(21), Some(&five)));
        let four = Expected::of(&mut secs(&[10, 10, 10, 10])).unwrap();
        assert!(!slower_than_usual(Duration::from_secs(1_000), Some(&four)), "four samples predict nothing");
        assert!(!slower_than_usual(Duration::from_secs(1_000), None));
    }

    #[test]
    fn eta_takes_the_later_of_history_and_progress() {
        let start = Timestamp::from_micros(1_000_000);
        let usual = Expected::of(&mut secs(&[60; 5])).unwrap();
        let by_history = Timestamp::from_micros(61_000_000);
        assert_eq!(run_eta(start, Some(&usual), []), Some(by_history));
        let late = Timestamp::from_micros(90_000_000);
        let early = Timestamp::from_micros(30_000_000);
        assert_eq!(run_eta(start, Some(&usual), [early, late]), Some(late));
        assert_eq!(run_eta(start, Some(&usual), [early]), Some(by_history));
        let thin = Expected::of(&mut secs(&[60; 4])).unwrap();
        assert_eq!(run_eta(start, Some(&thin), []), None, "too few runs to tell");
        assert_eq!(run_eta(start, Some(&thin), [early]), Some(early));
        assert_eq!(run_eta(start, None, []), None);
    }
}
