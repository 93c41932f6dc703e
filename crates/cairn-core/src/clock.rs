//! Time as Cairn sees it: UTC timestamps in microseconds and the `Clock` that
//! every reader of the time goes through, so tests can drive time by hand.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A UTC instant, in microseconds since the Unix epoch.
///
/// Microseconds are what the store keeps; they order transitions of one task
/// unambiguously even when several happen in the same millisecond.
///
/// In JSON it is an RFC 3339 string (`2026-11-20T22:16:28.123456Z`); integer
/// microseconds are accepted on input too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Micros(i64),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Micros(m) => Ok(Timestamp(m)),
            Repr::Text(s) => s
                .parse::<jiff::Timestamp>()
                .map(Timestamp::from_jiff)
                .map_err(|e| serde::de::Error::custom(format!("bad timestamp {s:?}: {e}"))),
        }
    }
}

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Duration from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0).max(0) as u64)
    }

    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
    }

    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
    }

    /// RFC 3339 with microsecond precision, e.g. `2026-11-20T22:16:28.123456Z`.
    pub fn to_rfc3339(self) -> String {
        match jiff::Timestamp::from_microsecond(self.0) {
            Ok(ts) => format!("{ts:.6}"),
            Err(_) => format!("@{}us", self.0),
        }
    }

    pub fn to_jiff(self) -> jiff::Timestamp {
        jiff::Timestamp::from_microsecond(self.0).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    pub fn from_jiff(ts: jiff::Timestamp) -> Self {
        Timestamp(ts.as_microsecond())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// The one source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock. Guarantees non-decreasing readings within the process, so a
/// step of the system clock backwards cannot make one task's transitions go back.
#[derive(Debug, Default)]
pub struct SystemClock {
    last: AtomicI64,
}

impl SystemClock {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let wall = jiff::Timestamp::now().as_microsecond();
        let prev = self.last.fetch_max(wall, Ordering::AcqRel);
        Timestamp(prev.max(wall))
    }
}

type Listener = Box<dyn Fn(Timestamp) + Send + Sync>;

/// A clock that moves only when a test says so.
///
/// Listeners registered with [`ManualClock::on_advance`] are called after each
/// move, which lets an async runtime wake timers without this crate knowing of it.
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    now: AtomicI64,
    listeners: Mutex<Vec<Listener>>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            inner: Arc::new(ManualInner { now: AtomicI64::new(start.0), listeners: Mutex::new(Vec::new()) }),
        }
    }

    /// A fixed, readable starting point for tests: 2026-01-01T00:00:00Z.
    pub fn at_test_epoch() -> Self {
        Self::new(Timestamp(1_767_225_600_000_000))
    }

    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        let now = self.inner.now.fetch_add(micros, Ordering::AcqRel) + micros;
        self.notify(Timestamp(now));
    }

    pub fn set(&self, to: Timestamp) {
        self.inner.now.fetch_max(to.0, Ordering::AcqRel);
        self.notify(self.now());
    }

    pub fn on_advance(&self, listener: impl Fn(Timestamp) + Send + Sync + 'static) {
        self.inner.listeners.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(listener));
    }

    fn notify(&self, now: Timestamp) {
        for l in self.inner.listeners.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            l(now);
        }
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock").field("now", &self.now()).finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.inner.now.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_notifies() {
        let clock = ManualClock::at_test_epoch();
        let seen = Arc::new(AtomicI64::new(0));
        let s = seen.clone();
        clock.on_advance(move |t| s.store(t.as_micros(), Ordering::SeqCst));
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now().since(t0), Duration::from_millis(1500));
        assert_eq!(seen.load(Ordering::SeqCst), clock.now().as_micros());
        assert_eq!(t0.to_rfc3339(), "2026-01-01T00:00:00.000000Z");
        let json = serde_json::to_string(&t0).unwrap();
        assert_eq!(json, "\"2026-01-01T00:00:00.000000Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t0);
    }

    #[test]
    fn system_clock_never_goes_back() {
        let c = SystemClock::new();
        let mut last = c.now();
        for _ in 0..1000 {
            let t = c.now();
            assert!(t >= last);
            last = t;
        }
    }
}
