//! The workers this server has heard from: each worker id with the queues
//! it leased from and when it last called (a lease, long-polling or not,
//! or a heartbeat). Workers are not registered anywhere; a worker that
//! waits for work holds no lease, so this is how the workers page shows it
//! at all.
//!
//! Architecture invariant: kept in this process's memory, bounded (the
//! oldest entries go first beyond [`MAX_WORKERS`], and entries older than
//! [`FORGET_AFTER`] are dropped). Servers sharing one store each know the
//! workers that call them; the leases workers hold come from the store.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cairn_core::Timestamp;

/// How many workers are remembered at most.
pub const MAX_WORKERS: usize = 10_000;

/// A worker not heard from for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// What this server knows of one worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub worker: String,
    pub queues: BTreeSet<String>,
    pub last_seen: Timestamp,
}

/// The workers heard from; cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct Presence(Arc<Mutex<HashMap<String, Seen>>>);

impl Presence {
    /// Records a call of `worker` at `at`, and the queue it leased from.
    pub fn saw(&self, worker: &str, queue: Option<&str>, at: Timestamp) {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = seen.entry(worker.to_owned()).or_insert_with(|| Seen {
            worker: worker.to_owned(),
            queues: BTreeSet::new(),
            last_seen: at,
        });
        entry.last_seen = entry.last_seen.max(at);
        if let Some(q) = queue {
            entry.queues.insert(q.to_owned());
        }
        if seen.len() > MAX_WORKERS {
            let cutoff = at.saturating_sub(FORGET_AFTER);
            seen.retain(|_, s| s.last_seen > cutoff);
            while seen.len() > MAX_WORKERS {
                let Some(oldest) = seen.values().min_by_key(|s| s.last_seen).map(|s| s.worker.clone()) else {
                    break;
                };
                seen.remove(&oldest);
            }
        }
    }

    /// The workers heard from since `since`, the latest first.
    pub fn since(&self, since: Timestamp) -> Vec<Seen> {
        let seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<Seen> = seen.values().filter(|s| s.last_seen >= since).cloned().collect();
        list.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.worker.cmp(&b.worker)));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_micros(s * 1_000_000)
    }

    #[test]
    fn workers_keep_their_queues_and_latest_call() {
        let p = Presence::default();
        p.saw("w1", Some("gpu"), t(10));
        p.saw("w2", Some("cpu"), t(20));
        p.saw("w1", Some("gpu-large"), t(30));
        p.saw("w1", None, t(25));
        let seen = p.since(t(0));
        assert_eq!(seen.iter().map(|s| s.worker.as_str()).collect::<Vec<_>>(), ["w1", "w2"]);
        assert_eq!(seen[0].last_seen, t(30), "never goes back");
        assert_eq!(seen[0].queues.iter().map(String::as_str).collect::<Vec<_>>(), ["gpu", "gpu-large"]);
        assert_eq!(p.since(t(21)).len(), 1);
    }

    #[test]
    fn the_oldest_are_forgotten_beyond_the_bound() {
        let p = Presence::default();
        // All within the hour: only the bound drops any.
        let ms = |i: i64| Timestamp::from_micros(i * 1000);
        for i in 0..=MAX_WORKERS as i64 {
            p.saw(&format!("w{i}"), None, ms(i));
        }
        let seen = p.since(ms(0));
        assert_eq!(seen.len(), MAX_WORKERS);
        assert!(!seen.iter().any(|s| s.worker == "w0"), "the oldest went first");
        // Beyond the bound again an hour later: the hour-old ones go at once.
        p.saw("late", None, ms(MAX_WORKERS as i64).saturating_add(FORGET_AFTER));
        assert_eq!(p.since(ms(0)).len(), 1);
    }
}
