//! Queues of remote steps: run drivers offer ready tasks, workers' lease
//! calls take them.
//!
//! An offer is taken by exactly one lease call (it is popped under a lock),
//! and the task's driver then starts it only if it is still PENDING — so two
//! workers never hold the same attempt. A lease call whose worker vanished
//! after the start leaves a RUNNING task whose lease nobody renews; the
//! driver reaps it when the lease expires (at-least-once).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_core::protocol::{LeaseRequest, LeasedTask};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::driver::Command;

/// A ready task waiting in a queue.
pub(crate) struct Offer {
    pub(crate) index: usize,
    pub(crate) driver: mpsc::UnboundedSender<Command>,
}

#[derive(Default)]
struct Queue {
    offers: VecDeque<Offer>,
    wake: Arc<Notify>,
}

/// Every queue of one server.
#[derive(Default)]
pub struct QueueHub {
    queues: Mutex<HashMap<String, Queue>>,
    /// A stopping server leases nothing more.
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for QueueHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let depths: HashMap<&str, usize> = queues.iter().map(|(k, q)| (k.as_str(), q.offers.len())).collect();
        f.debug_struct("QueueHub").field("depths", &depths).finish()
    }
}

impl QueueHub {
    pub fn new() -> Arc<QueueHub> {
        Arc::new(QueueHub::default())
    }

    pub(crate) fn offer(&self, queue: &str, offer: Offer) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let q = queues.entry(queue.to_owned()).or_default();
        q.offers.push_back(offer);
        q.wake.notify_one();
    }

    /// Tasks waiting in `queue` (offers whose task may since have been canceled included).
    pub fn depth(&self, queue: &str) -> usize {
        self.queues.lock().unwrap_or_else(|e| e.into_inner()).get(queue).map_or(0, |q| q.offers.len())
    }

    /// Takes up to `max_tasks` offers, waiting up to `wait_ms` for the first.
    fn take(&self, queue: &str, max: usize) -> (Vec<Offer>, Arc<Notify>) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let q = queues.entry(queue.to_owned()).or_default();
        let n = max.min(q.offers.len());
        (q.offers.drain(..n).collect(), q.wake.clone())
    }

    /// Leases up to `req.max_tasks` tasks to `req.worker_id`, long-polling
    /// up to `req.wait_ms` for the first. Each task is started (RUNNING and
    /// its lease committed) by its run's driver before it is returned.
    /// Stops leasing: every later lease call answers at once with nothing.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        for q in self.queues.lock().unwrap_or_else(|e| e.into_inner()).values() {
            q.wake.notify_waiters();
        }
    }

    pub async fn lease(&self, req: &LeaseRequest) -> Vec<LeasedTask> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Vec::new();
        }
        let max = req.max_tasks.clamp(1, 1000) as usize;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(req.wait_ms.min(60_000));
        loop {
            let (offers, wake) = self.take(&req.queue, max);
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut leased = Vec::with_capacity(offers.len());
            let mut replies = Vec::with_capacity(offers.len());
            for offer in offers {
                let (tx, rx) = oneshot::channel();
                let cmd =
                    Command::StartRemote { index: offer.index, worker: req.worker_id.clone(), reply: tx };
                if offer.driver.send(cmd).is_ok() {
                    replies.push(rx);
                }
            }
            for rx in replies {
                if let Ok(Some(task)) = rx.await {
                    leased.push(task);
                }
            }
            if !leased.is_empty() || self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return leased;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return leased;
            }
        }
    }
}
