//! Queues of remote steps. A run's driver offers a ready task through the
//! store (`Change::Offer`, with the payload a worker needs); a worker's
//! lease call, on whichever server it reaches, claims offers from the store
//! (`Store::claim`), so the store — not this process — decides who gets a
//! task. What lives here is only the waiting: a long-polling lease call
//! sleeps on its queue's [`Notify`] until the store reports an offer
//! (`Notice::Offered`), and the payload's shape.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_core::protocol::{LeasedTask, RemoteCommand};
use cairn_store::Claimed;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// What an offer carries for the worker: everything of [`LeasedTask`] that
/// is known when the task is offered (the lease is made by the claim).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct OfferPayload {
    pub(crate) workflow: String,
    pub(crate) step: String,
    pub(crate) task_type: String,
    pub(crate) heartbeat_interval_ms: u64,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) command: Option<RemoteCommand>,
    pub(crate) input: BTreeMap<String, String>,
    pub(crate) details: Option<serde_json::Value>,
}

impl OfferPayload {
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an offer payload is plain data")
    }

    /// The worker's view of a claimed task; `None` when the stored payload
    /// is not one (written by an incompatible version).
    pub(crate) fn leased(c: &Claimed) -> Option<LeasedTask> {
        let p: OfferPayload = serde_json::from_str(&c.payload).ok()?;
        Some(LeasedTask {
            task_id: c.task,
            run_id: c.run,
            workflow: p.workflow,
            step: p.step,
            task_type: p.task_type,
            attempt: c.attempt,
            lease_token: c.lease.token,
            lease_expires_at: c.lease.expires_at,
            heartbeat_interval_ms: p.heartbeat_interval_ms,
            timeout_ms: p.timeout_ms,
            command: p.command,
            input: p.input,
            details: p.details,
        })
    }
}

/// The wake-ups of one server's waiting lease calls, per queue.
#[derive(Debug, Default)]
pub struct QueueWaits {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
    /// A stopping server leases nothing more.
    closed: AtomicBool,
}

impl QueueWaits {
    /// The wake-up of `queue`, to enable before claiming so that an offer
    /// committed between the claim and the wait is not missed.
    pub(crate) fn of(&self, queue: &str) -> Arc<Notify> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.entry(queue.to_owned()).or_default().clone()
    }

    /// An offer was written to `queue`: every waiting call tries again.
    pub(crate) fn offered(&self, queue: &str) {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = queues.get(queue) {
            n.notify_waiters();
        }
    }

    /// Offers may have been missed: every waiting call tries again.
    pub(crate) fn all(&self) {
        for n in self.queues.lock().unwrap_or_else(|e| e.into_inner()).values() {
            n.notify_waiters();
        }
    }

    /// Stops leasing: every later lease call answers at once with nothing.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.all();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}
