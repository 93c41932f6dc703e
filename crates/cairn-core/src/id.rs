//! Identifiers: runs and tasks get ULIDs (unique without asking the database,
//! and sortable by creation time); each attempt's lease gets a random token.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The largest random part of a ULID (80 bits).
const RANDOM_MAX: u128 = (1 << 80) - 1;

macro_rules! ulid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(ulid::Ulid);

        impl $name {
            /// A new id whose leading bits are the creation time `at`. Ids
            /// made in the same millisecond count up from a random start
            /// (ULID's monotonic mode): a batch created together, such as
            /// the tasks of a run, sits together in every index keyed by
            /// id instead of scattering each later update over the index.
            pub fn new(at: crate::Timestamp) -> Self {
                // Per thread: a run's tasks are made by one thread, and no
                // lock is shared by every thread making ids.
                thread_local!(static LAST: std::cell::Cell<(u64, u128)> = const { std::cell::Cell::new((0, 0)) });
                let ms = u64::try_from(at.as_micros() / 1000).unwrap_or(0);
                let random = LAST.with(|last| {
                    let (last_ms, last_random) = last.get();
                    let random = if last_ms == ms && last_random < crate::id::RANDOM_MAX {
                        last_random + 1
                    } else {
                        // Half the 80 random bits' range is left to count up in.
                        rand::random::<u128>() & (crate::id::RANDOM_MAX >> 1)
                    };
                    last.set((ms, random));
                    random
                });
                $name(ulid::Ulid::from_parts(ms, random))
            }

            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(ulid::Ulid::from_bytes(bytes))
            }

            pub fn to_bytes(self) -> [u8; 16] {
                self.0.to_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = crate::id::BadId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                ulid::Ulid::from_string(s.trim())
                    .map($name)
                    .map_err(|_| BadId { what: $what, input: s.to_owned() })
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

ulid_id!(
    /// One execution of a workflow.
    RunId,
    "run id"
);
ulid_id!(
    /// One step of one run (all its attempts share the id).
    TaskId,
    "task id"
);
ulid_id!(
    /// One alert (an anomaly in a workflow's status mix, ...).
    AlertId,
    "alert id"
);
ulid_id!(
    /// One API token (`crate::auth`); never the secret itself.
    TokenId,
    "token id"
);
ulid_id!(
    /// One event of the audit log (token management, token use, refusals).
    AuditId,
    "audit event id"
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a valid {what}: expected 26 characters of Crockford base32, like 01JD8X3Q6V0000000000000000"
)]
pub struct BadId {
    pub what: &'static str,
    pub input: String,
}

/// Fences one attempt: a heartbeat or completion carrying any other token is
/// refused, so a worker that lost its lease can never change the task again.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(u128);

impl LeaseToken {
    pub fn random() -> Self {
        LeaseToken(rand::random())
    }

    pub fn from_bytes(b: [u8; 16]) -> Self {
        LeaseToken(u128::from_be_bytes(b))
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are credentials of a sort: show only a prefix in logs.
        write!(f, "LeaseToken({:08x}…)", (self.0 >> 96) as u32)
    }
}

impl FromStr for LeaseToken {
    type Err = BadId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u128::from_str_radix(s, 16)
            .ok()
            .filter(|_| s.len() == 32)
            .map(LeaseToken)
            .ok_or_else(|| BadId { what: "lease token", input: s.to_owned() })
    }
}

impl Serialize for LeaseToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LeaseToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = RunId::new(Timestamp::from_micros(1_000_000));
        let b = RunId::new(Timestamp::from_micros(2_000_000));
        assert!(a < b);
        assert_eq!(a.to_string().parse::<RunId>().unwrap(), a);
        assert_eq!(RunId::from_bytes(a.to_bytes()), a);
        let err = "nope".parse::<TaskId>().unwrap_err();
        assert!(err.to_string().contains("task id"));
    }

    #[test]
    fn ids_of_one_millisecond_count_up() {
        let at = Timestamp::from_micros(7_000_500);
        let ids: Vec<TaskId> = (0..1000).map(|_| TaskId::new(at)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "made in order, sorted in order");
        let later = TaskId::new(Timestamp::from_micros(7_001_000));
        assert!(ids.iter().all(|id| *id < later));
    }

    #[test]
    fn lease_tokens_round_trip() {
        let t = LeaseToken::random();
        assert_eq!(t.to_string().parse::<LeaseToken>().unwrap(), t);
        assert_eq!(LeaseToken::from_bytes(t.to_bytes()), t);
        assert!("abc".parse::<LeaseToken>().is_err());
    }
}
