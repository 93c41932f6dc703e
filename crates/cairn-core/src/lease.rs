//! Lease rules: how long a RUNNING attempt stays owned without a heartbeat,
//! and when the owner must heartbeat to keep it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{LeaseToken, Timestamp};

/// How an executor keeps its leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseSettings {
    /// A lease not extended for this long is lost, and the reaper fails the attempt.
    pub heartbeat_timeout: Duration,
    /// How often an executor heartbeats; a third of the timeout leaves room
    /// for two missed beats before the lease is lost.
    pub heartbeat_interval: Duration,
}

impl LeaseSettings {
    pub fn with_timeout(heartbeat_timeout: Duration) -> Self {
        LeaseSettings { heartbeat_timeout, heartbeat_interval: heartbeat_timeout / 3 }
    }

    pub fn expiry(&self, now: Timestamp) -> Timestamp {
        now.saturating_add(self.heartbeat_timeout)
    }
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings::with_timeout(Duration::from_secs(30))
    }
}

/// The lease of one RUNNING attempt, as written in the same transaction as
/// the RUNNING transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub token: LeaseToken,
    pub started_at: Timestamp,
    pub last_heartbeat_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Lease {
    pub fn grant(now: Timestamp, settings: &LeaseSettings) -> Lease {
        Lease {
            token: LeaseToken::random(),
            started_at: now,
            last_heartbeat_at: now,
            expires_at: settings.expiry(now),
        }
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at < now
    }

    /// The lease after a heartbeat at `now`; it never shortens.
    pub fn extended(&self, now: Timestamp, settings: &LeaseSettings) -> Lease {
        Lease {
            last_heartbeat_at: now.max(self.last_heartbeat_at),
            expires_at: self.expires_at.max(settings.expiry(now)),
            ..*self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_extend_expire() {
        let s = LeaseSettings::with_timeout(Duration::from_secs(3));
        let t0 = Timestamp::from_micros(0);
        let l = Lease::grant(t0, &s);
        assert_eq!(l.started_at, l.last_heartbeat_at);
        assert!(!l.is_expired(Timestamp::from_micros(3_000_000)));
        assert!(l.is_expired(Timestamp::from_micros(3_000_001)));
        let l2 = l.extended(Timestamp::from_micros(2_000_000), &s);
        assert_eq!(l2.expires_at, Timestamp::from_micros(5_000_000));
        assert_eq!(l2.token, l.token);
        // A late, reordered heartbeat does not shorten the lease.
        assert_eq!(l2.extended(Timestamp::from_micros(1_000_000), &s).expires_at, l2.expires_at);
        assert_eq!(s.heartbeat_interval, Duration::from_secs(1));
    }
}
