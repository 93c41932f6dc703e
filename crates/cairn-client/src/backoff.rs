//! When to try a failed request again: exponential backoff with jitter,
//! bounded by a number of retries and a total time.
//!
//! The delays are pure functions of the retry number and a random draw, so the
//! policy is tested without sleeping; [`Backoff::retry`] is the one place that
//! sleeps.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::ClientError;

/// The longest `Retry-After` of a 429 that is waited out as asked; a longer
/// one (a misconfigured proxy) is shortened to this.
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The wait before retrying after `error`: `own` (a backoff delay), or the
/// server's `Retry-After` of a 429 when longer (up to [`MAX_RATE_LIMIT_WAIT`]).
pub(crate) fn rate_limit_wait(own: Duration, error: &ClientError) -> Duration {
    match error.retry_after() {
        Some(asked) if error.is_rate_limited() => own.max(asked.min(MAX_RATE_LIMIT_WAIT)),
        _ => own,
    }
}

/// An exponential backoff policy.
///
/// Retry `n` (0-based) waits `initial * multiplier^n`, capped at `max`, then
/// shortened by a random fraction of up to `jitter` — so many workers that
/// failed together (a server restart) do not come back in lockstep.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    /// 0.0 = no jitter; 0.5 = each delay is between half and all of its base.
    pub jitter: f64,
    /// Give up after this many retries (`None`: no limit).
    pub max_retries: Option<u32>,
    /// Give up once this much time has passed since the first try (`None`: no limit).
    pub max_elapsed: Option<Duration>,
}

impl Default for Backoff {
    /// 200 ms doubling to 10 s, half jitter, no bound: for loops that must keep
    /// going (leasing, heartbeating) until the server is back.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
            max_retries: None,
            max_elapsed: None,
        }
    }
}

impl Backoff {
    /// The policy for completing a task: keep trying for up to two minutes.
    /// The worker keeps heartbeating the task meanwhile, so its lease holds.
    pub fn for_completion() -> Self {
        Backoff {
            max: Duration::from_secs(5),
            max_retries: None,
            max_elapsed: Some(Duration::from_secs(120)),
            ..Backoff::default()
        }
    }

    /// The delay before retry `retry` (0 = the first retry), without jitter.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let multiplier = if self.multiplier.is_finite() { self.multiplier.max(1.0) } else { 1.0 };
        let exp = i32::try_from(retry).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * multiplier.powi(exp);
        let max = self.max.max(self.initial);
        Duration::try_from_secs_f64(secs).map_or(max, |d| d.min(max))
    }

    /// The delay before retry `retry`, given a uniform random draw `unit` in
    /// `[0, 1)`: between `base * (1 - jitter)` and `base`.
    pub fn delay_with(&self, retry: u32, unit: f64) -> Duration {
        let jitter = self.jitter.clamp(0.0, 1.0);
        let unit = unit.clamp(0.0, 1.0);
        self.base_delay(retry).mul_f64(1.0 - jitter * unit)
    }

    /// The delay before retry `retry`, with a fresh random draw.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, rand::random::<f64>())
    }

    /// What to do after `error` on retry number `retry` (0 = the first try
    /// failed), `elapsed` after the first try: `Some(delay)` to try again, or
    /// `None` to give up — the error is not retryable, or a bound is reached.
    ///
    /// A server's `Retry-After` is honoured when longer than our own delay,
    /// but never beyond `max`. A rate-limited answer (429) is the exception:
    /// it changed nothing and says when to come back, so it is waited out
    /// (up to [`MAX_RATE_LIMIT_WAIT`]) and retried without counting against
    /// `max_retries` or `max_elapsed` — slowing down never fails a task.
    pub fn next_delay(
        &self,
        error: &ClientError,
        retry: u32,
        elapsed: Duration,
        unit: f64,
    ) -> Option<Duration> {
        if !error.is_retryable() {
            return None;
        }
        if error.is_rate_limited() {
            return Some(rate_limit_wait(self.delay_with(retry, unit), error));
        }
        if self.max_retries.is_some_and(|m| retry >= m) {
            return None;
        }
        let mut delay = self.delay_with(retry, unit);
        if let Some(asked) = error.retry_after() {
            delay = delay.max(asked.min(self.max));
        }
        match self.max_elapsed {
            Some(limit) if elapsed + delay > limit => None,
            _ => Some(delay),
        }
    }

    /// Runs `op` until it succeeds, fails with an error that is not
    /// retryable, or the policy's bounds are reached; returns the last result.
    /// `what` names the operation in logs.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let start = Instant::now();
        let mut retry = 0;
        loop {
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let Some(delay) = self.next_delay(&err, retry, start.elapsed(), rand::random::<f64>()) else {
                return Err(err);
            };
            tracing::debug!(what, retry, delay_ms = delay.as_millis() as u64, error = %err, "retrying");
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TransientKind;

    fn transient(retry_after: Option<Duration>) -> ClientError {
        ClientError::Transient {
            kind: TransientKind::Server,
            status: Some(502),
            message: "bad gateway".into(),
            retry_after,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_grow_exponentially_up_to_the_cap() {
        let b = Backoff { initial: ms(100), max: ms(1000), jitter: 0.0, ..Backoff::default() };
        let delays: Vec<_> = (0..6).map(|n| b.base_delay(n)).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        assert_eq!(b.base_delay(u32::MAX), ms(1000), "no overflow on huge retry numbers");
    }

    #[test]
    fn jitter_shortens_within_bounds() {
        let b = Backoff { initial: ms(1000), max: ms(10_000), jitter: 0.5, ..Backoff::default() };
        assert_eq!(b.delay_with(0, 0.0), ms(1000));
        assert_eq!(b.delay_with(0, 0.5), ms(750));
        assert_eq!(b.delay_with(0, 0.999_999).as_millis(), 500);
        for _ in 0..1000 {
            let d = b.delay(1);
            assert!(d >= ms(1000) && d <= ms(2000), "{d:?}");
        }
    }

    #[test]
    fn odd_settings_do_not_panic() {
        let b = Backoff { multiplier: f64::NAN, jitter: 7.0, ..Backoff::default() };
        assert_eq!(b.base_delay(5), b.initial);
        assert_eq!(b.delay_with(3, 1.0), Duration::ZERO);
        let b = Backoff { multiplier: 0.1, max: Duration::ZERO, ..Backoff::default() };
        assert_eq!(b.base_delay(3), b.initial, "never shrinks below the initial delay");
    }

    #[test]
    fn gives_up_on_errors_that_are_not_retryable() {
        let b = Backoff::default();
        let stale = ClientError::LeaseStale { message: "reaped".into() };
        assert_eq!(b.next_delay(&stale, 0, Duration::ZERO, 0.0), None);
        let rejected = ClientError::Rejected {
            status: 400,
            code: "invalid".into(),
            message: String::new(),
            field: None,
        };
        assert_eq!(b.next_delay(&rejected, 0, Duration::ZERO, 0.0), None);
        assert!(b.next_delay(&transient(None), 0, Duration::ZERO, 0.0).is_some());
    }

    #[test]
    fn bounded_by_retries_and_elapsed_time() {
        let b = Backoff {
            initial: ms(100),
            max: ms(1000),
            jitter: 0.0,
            max_retries: Some(3),
            max_elapsed: Some(ms(2000)),
            ..Backoff::default()
        };
        let e = transient(None);
        assert_eq!(b.next_delay(&e, 2, ms(0), 0.0), Some(ms(400)));
        assert_eq!(b.next_delay(&e, 3, ms(0), 0.0), None, "retry limit");
        assert_eq!(b.next_delay(&e, 1, ms(1800), 0.0), Some(ms(200)));
        assert_eq!(b.next_delay(&e, 1, ms(1801), 0.0), None, "would end past max_elapsed");
    }

    #[test]
    fn a_rate_limit_is_waited_out_as_asked_and_never_gives_up() {
        let b = Backoff {
            initial: ms(100),
            max: ms(1000),
            jitter: 0.0,
            max_retries: Some(1),
            max_elapsed: Some(ms(2000)),
            ..Backoff::default()
        };
        let limited = crate::error::classify_response(
            429,
            br#"{"code":"rate_limited","message":"slow down"}"#,
            Some(ms(3000)),
        );
        assert!(limited.is_rate_limited() && limited.certainly_not_applied());
        // Past every bound, and longer than `max`: still waited out.
        assert_eq!(b.next_delay(&limited, 10, Duration::from_secs(3600), 0.0), Some(ms(3000)));
        let absurd = crate::error::classify_response(429, b"", Some(Duration::from_secs(86_400)));
        assert_eq!(b.next_delay(&absurd, 0, Duration::ZERO, 0.0), Some(MAX_RATE_LIMIT_WAIT));
        // A 503 keeps the bounds.
        let unavailable = crate::error::classify_response(503, b"", Some(ms(3000)));
        assert_eq!(b.next_delay(&unavailable, 1, Duration::ZERO, 0.0), None);
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let b = Backoff { initial: ms(100), max: ms(5000), jitter: 0.0, ..Backoff::default() };
        assert_eq!(b.next_delay(&transient(Some(ms(3000))), 0, ms(0), 0.0), Some(ms(3000)));
        assert_eq!(b.next_delay(&transient(Some(ms(60_000))), 0, ms(0), 0.0), Some(ms(5000)));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_runs_until_success_or_a_final_error() {
        let b = Backoff { max_retries: Some(5), ..Backoff::default() };
        let mut calls = 0;
        let r = b
            .retry("test", || {
                calls += 1;
                let n = calls;
                async move { if n < 3 { Err(transient(None)) } else { Ok(n) } }
            })
            .await;
        assert_eq!(r, Ok(3));

        let mut calls = 0;
        let r: Result<(), _> = b
            .retry("test", || {
                calls += 1;
                async { Err(ClientError::LeaseStale { message: "gone".into() }) }
            })
            .await;
        assert!(matches!(r, Err(ClientError::LeaseStale { .. })));
        assert_eq!(calls, 1, "a stale lease is never retried");

        let mut calls = 0;
        let r: Result<(), _> = b
            .retry("test", || {
                calls += 1;
                async { Err(transient(None)) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls, 6, "the first try and five retries");
    }
}
