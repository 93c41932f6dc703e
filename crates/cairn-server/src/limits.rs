//! Limits on how much one caller may ask of the server: a request rate per
//! caller on the API and, separately, on the worker protocol (token buckets,
//! `429 rate_limited` with `Retry-After` beyond), and the number of live
//! event subscriptions (`GET /api/v1/events`), per caller and in all.
//!
//! A caller is its API token (the [`Caller`] the route guard found); on a
//! server without tokens, the client's IP address when the connection's
//! address is known (`cairn serve` records it), else one shared bucket.
//!
//! [`router`](crate::router) builds one [`Limits`] from the
//! [`ServerConfig`] and the state's clock and puts it in every request's
//! extensions; the route layer `limit` (inside the auth guard, so the
//! caller is known) and the events route read it from there.
//!
//! Architecture invariant: the limits are held in this process's memory.
//! Servers sharing one store each count their own requests, and a restart
//! forgets every bucket.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_core::Clock;
use cairn_core::auth::Role;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::app::ServerConfig;
use crate::auth::{Access, Caller};
use crate::error::{ApiError, ErrorCode};

/// Requests a second one caller may send to the API under `cairn serve`'s
/// defaults: far above what a person, a dashboard or a CI job sends, far
/// below a runaway loop.
pub const DEFAULT_API_RATE: u32 = 50;

/// Requests a second one caller may send to the worker protocol under
/// `cairn serve`'s defaults. A worker heartbeats all its tasks in one
/// request and leases and completes in batches, so this leaves room for a
/// fleet behind one token (or one address): 10,000 tasks heartbeating in
/// batches of 100, as in benchmark W5, send about 500 a second.
pub const DEFAULT_WORKER_RATE: u32 = 2000;

/// The largest request body the router accepts, in every request's
/// extensions, so a `413 payload_too_large` can say what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

impl std::fmt::Display for BodyLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MIB: usize = 1024 * 1024;
        const KIB: usize = 1024;
        match self.0 {
            n if n >= MIB && n % MIB == 0 => write!(f, "{} MiB", n / MIB),
            n if n >= KIB && n % KIB == 0 => write!(f, "{} KiB", n / KIB),
            n => write!(f, "{n} bytes"),
        }
    }
}

/// Which budget a route draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Surface {
    /// Everything but the worker protocol.
    Api,
    /// The routes of [`Role::Worker`]: lease, heartbeat, complete, log append.
    Worker,
}

impl Surface {
    /// The surface of a route that needs `access`.
    pub fn of(access: Access) -> Surface {
        match access {
            Access::Role(Role::Worker) => Surface::Worker,
            _ => Surface::Api,
        }
    }

    /// As in the metric's `surface` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Api => "api",
            Surface::Worker => "worker",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Surface::Api => "the API",
            Surface::Worker => "the worker protocol",
        }
    }
}

/// Whom a limit counts: a token, else an address, else everyone unknown.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CallerKey {
    Token(String),
    Ip(IpAddr),
    /// Neither a token nor the peer's address is known (a server without
    /// tokens built without connection info): all such callers share one bucket.
    Unknown,
}

impl std::fmt::Display for CallerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallerKey::Token(name) => write!(f, "token {name}"),
            CallerKey::Ip(ip) => write!(f, "address {ip}"),
            CallerKey::Unknown => f.write_str("this caller"),
        }
    }
}

impl CallerKey {
    fn of(extensions: &Extensions) -> CallerKey {
        if let Some(caller) = extensions.get::<Caller>() {
            return CallerKey::Token(caller.name.clone());
        }
        match extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => CallerKey::Ip(addr.ip()),
            None => CallerKey::Unknown,
        }
    }
}

impl<St: Send + Sync> FromRequestParts<St> for CallerKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        Ok(CallerKey::of(&parts.extensions))
    }
}

/// Governor's clock on the server's [`Clock`], so tests drive the buckets
/// with a manual clock. Time since the Unix epoch; a clock stepped back
/// reads as no time passing (`Duration`'s subtraction saturates).
#[derive(Clone)]
struct LimitClock(Arc<dyn Clock>);

impl governor::clock::Clock for LimitClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_micros(u64::try_from(self.0.now().as_micros()).unwrap_or(0))
    }
}

type Buckets = RateLimiter<CallerKey, DashMapStateStore<CallerKey>, LimitClock, NoOpMiddleware<Duration>>;

/// One surface's buckets.
struct Bucket {
    per_second: u32,
    limiter: Buckets,
    /// Checks since start: every so many, idle buckets are dropped, so
    /// callers seen once (addresses, mostly) do not pile up.
    checks: AtomicU64,
}

/// How often idle buckets are swept, in checks.
const SWEEP_EVERY: u64 = 4096;

impl Bucket {
    /// `per_second` requests a second, bursts of twice that; `None` for 0 (off).
    fn new(per_second: u32, clock: &LimitClock) -> Option<Bucket> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(Bucket {
            per_second,
            limiter: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            checks: AtomicU64::new(0),
        })
    }

    /// `Err(wait)` when `key` is over its rate: how long until it may try again.
    fn check(&self, key: &CallerKey, clock: &LimitClock) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(governor::clock::Clock::now(clock)))
    }
}

/// The limits of one server process: the two surfaces' buckets and the
/// event subscriptions.
pub struct Limits {
    clock: LimitClock,
    api: Option<Bucket>,
    worker: Option<Bucket>,
    subscribers: Arc<Subscribers>,
}

impl Limits {
    pub fn new(config: &ServerConfig, clock: Arc<dyn Clock>) -> Limits {
        let clock = LimitClock(clock);
        Limits {
            api: Bucket::new(config.rate_limit_api, &clock),
            worker: Bucket::new(config.rate_limit_worker, &clock),
            clock,
            subscribers: Arc::new(Subscribers {
                max_total: config.max_subscribers,
                max_per_caller: config.max_subscribers_per_token,
                held: Mutex::new(Held::default()),
            }),
        }
    }

    /// Counts one request of `key` on `surface`; the refusal to answer
    /// when it is over its rate.
    pub fn check(&self, surface: Surface, key: &CallerKey) -> Result<(), RateLimited> {
        let bucket = match surface {
            Surface::Api => &self.api,
            Surface::Worker => &self.worker,
        };
        let Some(bucket) = bucket else { return Ok(()) };
        bucket.check(key, &self.clock).map_err(|wait| RateLimited {
            surface,
            key: key.clone(),
            per_second: bucket.per_second,
            wait,
        })
    }

    /// Takes one event subscription for `key`, held until the permit drops;
    /// refused when `key` holds its share already (429) or the server is
    /// full (503).
    pub fn subscribe(&self, key: CallerKey) -> Result<SubscriberPermit, SubscribeRefused> {
        self.subscribers.acquire(key)
    }

    /// Live event subscriptions now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.held.lock().unwrap_or_else(PoisonError::into_inner).total
    }
}

/// A request over its rate.
#[derive(Clone, Debug)]
pub struct RateLimited {
    pub surface: Surface,
    pub key: CallerKey,
    pub per_second: u32,
    /// Until the caller's next request would pass.
    pub wait: Duration,
}

impl RateLimited {
    /// Whole seconds for `Retry-After`: rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        secs.max(1)
    }
}

impl IntoResponse for RateLimited {
    fn into_response(self) -> Response {
        crate::metrics::record_rate_limited(self.surface.as_str());
        let secs = self.retry_after_secs();
        let message = format!(
            "{} sent requests faster than {} a second (bursts of {}) to {}; retry after {secs}s",
            self.key,
            self.per_second,
            self.per_second.saturating_mul(2),
            self.surface.describe()
        );
        with_retry_after(ApiError::new(ErrorCode::RateLimited, message).into_response(), secs)
    }
}

fn with_retry_after(mut response: Response, secs: u64) -> Response {
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// The route layer: counts the request against its caller's bucket for
/// the route's surface, and answers 429 beyond it. Sits inside the auth
/// guard, so a token's caller is known.
pub(crate) async fn limit(State(surface): State<Surface>, req: Request, next: Next) -> Response {
    let Some(limits) = req.extensions().get::<Arc<Limits>>().cloned() else {
        return next.run(req).await;
    };
    let key = CallerKey::of(req.extensions());
    match limits.check(surface, &key) {
        Ok(()) => next.run(req).await,
        Err(limited) => {
            tracing::debug!(surface = surface.as_str(), caller = %limited.key, "rate limited");
            limited.into_response()
        }
    }
}

/// How long a refused subscriber is told to wait before trying again.
const SUBSCRIBE_RETRY_SECS: u64 = 5;

/// The live event subscriptions of this process.
#[derive(Debug)]
struct Subscribers {
    max_total: usize,
    max_per_caller: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    per_caller: HashMap<CallerKey, usize>,
}

impl Subscribers {
    fn acquire(self: &Arc<Self>, key: CallerKey) -> Result<SubscriberPermit, SubscribeRefused> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = held.per_caller.get(&key).copied().unwrap_or(0);
        if mine >= self.max_per_caller {
            return Err(SubscribeRefused::CallerFull { key, held: mine });
        }
        if held.total >= self.max_total {
            return Err(SubscribeRefused::ServerFull { held: held.total });
        }
        held.total += 1;
        *held.per_caller.entry(key.clone()).or_insert(0) += 1;
        Ok(SubscriberPermit { subscribers: self.clone(), key })
    }
}

/// Why an event subscription was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscribeRefused {
    /// The caller holds its share already (429).
    CallerFull { key: CallerKey, held: usize },
    /// The server serves as many as it takes (503).
    ServerFull { held: usize },
}

impl IntoResponse for SubscribeRefused {
    fn into_response(self) -> Response {
        let error = match self {
            SubscribeRefused::CallerFull { key, held } => ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "{key} already holds {held} event subscriptions, the most one caller may; close one \
                     first (the limit is `cairn serve --max-subscribers-per-token`)"
                ),
            ),
            SubscribeRefused::ServerFull { held } => ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "this server already serves {held} event subscriptions, the most it takes; try again \
                     later (the limit is `cairn serve --max-subscribers`)"
                ),
            ),
        };
        with_retry_after(error.into_response(), SUBSCRIBE_RETRY_SECS)
    }
}

/// One held event subscription; dropping it frees its place.
#[derive(Debug)]
pub struct SubscriberPermit {
    subscribers: Arc<Subscribers>,
    key: CallerKey,
}

impl Drop for SubscriberPermit {
    fn drop(&mut self) {
        let mut held = self.subscribers.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.per_caller.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.per_caller.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::{ManualClock, Timestamp};

    fn limits(api: u32, worker: u32, subscribers: (usize, usize)) -> (Limits, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_700_000_000_000_000)));
        let config = ServerConfig {
            rate_limit_api: api,
            rate_limit_worker: worker,
            max_subscribers: subscribers.0,
            max_subscribers_per_token: subscribers.1,
            ..ServerConfig::new("logs")
        };
        (Limits::new(&config, clock.clone()), clock)
    }

    #[test]
    fn a_bucket_holds_a_burst_of_twice_the_rate_and_refills_with_time() {
        let (l, clock) = limits(2, 0, (1, 1));
        let a = CallerKey::Token("a".into());
        for _ in 0..4 {
            l.check(Surface::Api, &a).unwrap();
        }
        let refused = l.check(Surface::Api, &a).unwrap_err();
        assert_eq!(refused.wait, Duration::from_millis(500));
        assert_eq!(refused.retry_after_secs(), 1);
        // Another caller, and the other surface (off: 0), are not touched.
        l.check(Surface::Api, &CallerKey::Token("b".into())).unwrap();
        for _ in 0..100 {
            l.check(Surface::Worker, &a).unwrap();
        }
        clock.advance(Duration::from_millis(500));
        l.check(Surface::Api, &a).unwrap();
        assert!(l.check(Surface::Api, &a).is_err());
    }

    #[test]
    fn subscriptions_are_bounded_per_caller_and_in_all_and_freed_on_drop() {
        let (l, _) = limits(0, 0, (2, 1));
        let (a, b, c) =
            (CallerKey::Token("a".into()), CallerKey::Ip([127, 0, 0, 1].into()), CallerKey::Unknown);
        let first = l.subscribe(a.clone()).unwrap();
        let refused = l.subscribe(a.clone()).unwrap_err();
        assert_eq!(refused, SubscribeRefused::CallerFull { key: a.clone(), held: 1 });
        assert_eq!(refused.into_response().status(), 429);
        let _second = l.subscribe(b).unwrap();
        let refused = l.subscribe(c.clone()).unwrap_err();
        assert_eq!(refused, SubscribeRefused::ServerFull { held: 2 });
        assert_eq!(refused.into_response().status(), 503);
        assert_eq!(l.subscribers(), 2);
        drop(first);
        let _third = l.subscribe(c).unwrap();
        assert_eq!(l.subscribe(a).unwrap_err(), SubscribeRefused::ServerFull { held: 2 });
    }
}
