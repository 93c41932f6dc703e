//! Progress of a running task: the value, the `::progress` line a shell step
//! prints to report it, the rate limit that keeps a chatty task from flooding
//! the store, and the finish-time prediction drawn from it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Longest message kept; longer ones are cut at a character boundary.
pub const MAX_MESSAGE_BYTES: usize = 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// 0.0 to 100.0.
    pub percent: f32,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgressError {
    #[error("progress percent {0:?} is not a number from 0 to 100")]
    BadPercent(String),
}

impl Progress {
    pub fn new(percent: f32, message: Option<String>) -> Result<Progress, ProgressError> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(ProgressError::BadPercent(percent.to_string()));
        }
        let message =
            message.map(|m| truncate(m.trim(), MAX_MESSAGE_BYTES).to_owned()).filter(|m| !m.is_empty());
        Ok(Progress { percent, message })
    }

    /// Reads a step's stdout line `::progress <percent> [message]`.
    /// `None` for any other line, so ordinary output is never mistaken for it;
    /// `Some(Err)` for a progress line with a bad percent.
    pub fn parse_line(line: &str) -> Option<Result<Progress, ProgressError>> {
        let rest = line.trim_end_matches(['\r', '\n']).strip_prefix("::progress")?;
        if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
            return None;
        }
        let rest = rest.trim_start();
        let (pct, msg) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        let number = pct.trim_end_matches('%');
        Some(match number.parse::<f32>() {
            Ok(p) if p.is_finite() => Progress::new(p, Some(msg.to_owned())),
            _ => Err(ProgressError::BadPercent(pct.to_owned())),
        })
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Rate-limit settings (Cairn's `progress` step key).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressLimits {
    /// At most one stored update per interval…
    pub min_interval: Duration,
    /// …unless the percent moved at least this much (or hit 100).
    pub min_change: f32,
}

impl Default for ProgressLimits {
    fn default() -> Self {
        ProgressLimits { min_interval: Duration::from_millis(500), min_change: 5.0 }
    }
}

/// Decides which reported values reach the store. The latest value is never
/// lost: a coalesced one is held and returned by [`ProgressLimiter::flush_due`]
/// once the interval has passed.
#[derive(Clone, Debug, Default)]
pub struct ProgressLimiter {
    limits: ProgressLimits,
    last_sent: Option<(Timestamp, f32)>,
    held: Option<Progress>,
    coalesced: u64,
}

impl ProgressLimiter {
    pub fn new(limits: ProgressLimits) -> Self {
        ProgressLimiter { limits, ..Default::default() }
    }

    /// `Some(p)`: store `p` now. `None`: held back (counted as coalesced).
    pub fn offer(&mut self, p: Progress, now: Timestamp) -> Option<Progress> {
        let send = match self.last_sent {
            None => true,
            Some((at, pct)) => {
                now.since(at) >= self.limits.min_interval
                    || (p.percent - pct).abs() >= self.limits.min_change
                    || (p.percent >= 100.0 && pct < 100.0)
            }
        };
        if send {
            self.last_sent = Some((now, p.percent));
            if self.held.take().is_some() {
                self.coalesced += 1;
            }
            Some(p)
        } else {
            if self.held.replace(p).is_some() {
                self.coalesced += 1;
            }
            None
        }
    }

    /// The held value, once its interval has passed.
    pub fn flush_due(&mut self, now: Timestamp) -> Option<Progress> {
        let (at, _) = self.last_sent?;
        if now.since(at) >= self.limits.min_interval {
            let p = self.held.take()?;
            self.last_sent = Some((now, p.percent));
            Some(p)
        } else {
            None
        }
    }

    /// The held value regardless of time (when the task ends).
    pub fn take_held(&mut self) -> Option<Progress> {
        self.held.take()
    }

    /// Updates superseded by a newer one before they were stored.
    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }
}

/// When a task that started at `started_at` and is at `percent` now will
/// finish, if it keeps its average rate. `None` until there is a rate.
pub fn predict_finish(started_at: Timestamp, now: Timestamp, percent: f32) -> Option<Timestamp> {
    if percent <= 0.0 || percent > 100.0 {
        return None;
    }
    let elapsed = now.since(started_at).as_secs_f64();
    let total = elapsed * 100.0 / f64::from(percent);
    Some(started_at.saturating_add(Duration::try_from_secs_f64(total).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_progress_lines() {
        let p = Progress::parse_line("::progress 42 copying part 3\n").unwrap().unwrap();
        assert_eq!(p, Progress { percent: 42.0, message: Some("copying part 3".into()) });
        let p = Progress::parse_line("::progress 7.5%").unwrap().unwrap();
        assert_eq!(p, Progress { percent: 7.5, message: None });
        assert!(Progress::parse_line("::progress 140 too far").unwrap().is_err());
        assert!(Progress::parse_line("::progress abc").unwrap().is_err());
        assert!(Progress::parse_line("progress 10").is_none());
        assert!(Progress::parse_line("::progressive 10").is_none());
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let p = Progress::new(1.0, Some("é".repeat(1000))).unwrap();
        assert!(p.message.unwrap().len() <= MAX_MESSAGE_BYTES);
    }

    #[test]
    fn limiter_coalesces_and_keeps_the_latest() {
        let mut l =
            ProgressLimiter::new(ProgressLimits { min_interval: Duration::from_secs(1), min_change: 10.0 });
        let at = |ms: i64| Timestamp::from_micros(ms * 1000);
        let p = |pct: f32| Progress::new(pct, None).unwrap();
        assert!(l.offer(p(1.0), at(0)).is_some());
        assert!(l.offer(p(2.0), at(100)).is_none());
        assert!(l.offer(p(3.0), at(200)).is_none());
        assert!(l.offer(p(20.0), at(300)).is_some(), "a big jump goes through");
        assert!(l.offer(p(21.0), at(400)).is_none());
        assert_eq!(l.flush_due(at(900)), None);
        assert_eq!(l.flush_due(at(1300)), Some(p(21.0)));
        assert_eq!(l.coalesced(), 2);
        assert!(l.offer(p(100.0), at(1301)).is_some(), "completion goes through");
    }

    #[test]
    fn predicts_finish_from_rate() {
        let t0 = Timestamp::from_micros(0);
        let now = Timestamp::from_micros(10_000_000);
        assert_eq!(predict_finish(t0, now, 25.0), Some(Timestamp::from_micros(40_000_000)));
        assert_eq!(predict_finish(t0, now, 0.0), None);
    }
}
