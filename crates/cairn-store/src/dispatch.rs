//! Dispatch of remote steps through the store, so that any server can hand a
//! task to a worker whichever server drives its run: the offers (the hot
//! table of live work), the claim that leases them, lease renewal, results
//! posted for another server's run, the notices that wake whoever waits,
//! and the membership of servers (liveness and the one leader).
//!
//! The protocol, with the run's driver on server A and the worker on B:
//!
//! 1. A's driver writes [`Change::Offer`](crate::Change::Offer) with the
//!    task's `PENDING` transition: the task waits in its queue with the
//!    payload a worker needs. [`Notice::Offered`] wakes lease calls.
//! 2. A worker's lease call on B runs [`Store::claim`](crate::Store::claim):
//!    in one transaction the offer row is taken (on PostgreSQL `FOR UPDATE
//!    SKIP LOCKED`, so concurrent claims never wait for each other) and the
//!    task moves `PENDING -> RUNNING` with a fresh lease. A hears of it as
//!    [`Notice::Claimed`].
//! 3. B renews the lease on heartbeats ([`Store::renew`](crate::Store::renew));
//!    the answer carries a cancel that A asked for
//!    ([`Change::RequestCancel`](crate::Change::RequestCancel)).
//! 4. B posts the worker's result ([`Change::PostResult`](crate::Change::PostResult));
//!    A hears [`Notice::Posted`], reads it ([`Store::posted_result`](crate::Store::posted_result))
//!    and ends the attempt as it would a local one (retry, dependents).
//!
//! Only the claim moves a task's status without its driver; the offer row is
//! what both sides take, so a driver that wants an offered task back
//! ([`Change::Withdraw`](crate::Change::Withdraw)) and a claim can never
//! both win.
//!
//! A cancel of a whole run may be asked of any server too:
//! [`Change::RequestRunCancel`](crate::Change::RequestRunCancel) records it
//! on the run, and the run's driver hears [`Notice::CancelRequested`] and
//! cancels the run itself, as every status change of a run is its driver's.

use cairn_core::lease::Lease;
use cairn_core::progress::Progress;
use cairn_core::{LeaseToken, RunId, TaskId, Timestamp};
use tokio::sync::watch;

/// A ready remote task offered to its queue (`Change::Offer`). Written again
/// for the same task, it replaces the waiting offer (a resumed driver offers
/// its ready tasks again) and keeps its place in line.
#[derive(Clone, Debug)]
pub struct Offer {
    pub task: TaskId,
    /// The task's run (the store takes the run from the task itself).
    pub run: RunId,
    pub queue: String,
    /// Not to be claimed before this time (a retry's back-off).
    pub ready_at: Timestamp,
    /// The lease a claim grants, and each renewal extends it by.
    pub lease_ms: u64,
    /// What the worker is handed (opaque to the store; JSON text).
    pub payload: String,
}

/// A lease call: up to `max` tasks of any of `queues` for `worker`.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    pub queues: Vec<String>,
    pub worker: String,
    pub max: usize,
    /// The claimer's clock: offers ready by then are taken, and the leases
    /// start then (or at the task's last change, if that is later).
    pub now: Timestamp,
    /// The claiming server's id: [`Notice::Claimed`] is published only for
    /// tasks of runs another server owns (the claimer tells its own drivers).
    pub server: String,
}

/// One task a claim leased: it is `RUNNING` under `lease` as `attempt`,
/// with the transition `attempt N started` by `worker:W`, dated `lease.started_at`.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub task: TaskId,
    pub run: RunId,
    pub attempt: u32,
    pub lease: Lease,
    pub payload: String,
}

#[derive(Clone, Debug, Default)]
pub struct ClaimOutcome {
    /// Oldest offer first (by `ready_at`, then in the order offered). May be
    /// fewer than `max` while more wait: an offer whose task left `PENDING`
    /// meanwhile is taken and dropped, and on PostgreSQL offers another
    /// transaction holds are stepped over.
    pub tasks: Vec<Claimed>,
    /// The earliest `ready_at` still in the future among these queues'
    /// offers, so a long-poll can wake for it without polling.
    pub next_ready_at: Option<Timestamp>,
}

/// A heartbeat written by a server that does not drive the task's run.
#[derive(Clone, Debug)]
pub struct Renewal {
    pub task: TaskId,
    pub token: LeaseToken,
    pub at: Timestamp,
    pub progress: Option<Progress>,
    /// The worker's checkpoint, stored only where the workflow keeps them
    /// (the driver decides that for its own heartbeats; a renewal stores it
    /// when given).
    pub details: Option<serde_json::Value>,
}

/// What a renewal found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// The lease is held and now runs to `expires_at` (`at` + the offer's
    /// `lease_ms`; never earlier than it ran to, as renewals may arrive out
    /// of order), and whether the run's driver asked the worker to stop.
    Held { expires_at: Timestamp, cancel_requested: bool },
    /// The token is not the task's current lease, the lease expired before
    /// `at`, or it was not granted by a claim (its driver started the task,
    /// and heartbeats it itself): nothing written.
    Stale,
}

/// A worker's result for an attempt, posted for the run's driver
/// (`Change::PostResult`). Posting it again with the same token is applied
/// and changes nothing; with another token, or once the attempt ended, it
/// is a conflict.
#[derive(Clone, Debug, PartialEq)]
pub struct PostedResult {
    pub task: TaskId,
    /// The task's run, named in [`Notice::Posted`]; read back from the task.
    pub run: RunId,
    pub token: LeaseToken,
    pub at: Timestamp,
    /// The completion as the worker sent it (opaque to the store; JSON text).
    pub body: String,
}

/// Something another writer committed that a server may have to act on.
/// Published after commit; a backend may merge repeats of the same notice
/// within one transaction. Notices are hints to look again, never the state
/// itself: whoever acts on one reads the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Notice {
    /// An offer was written to `queue`: waiting lease calls try again.
    Offered { queue: String },
    /// A task of `run` was claimed by another server's lease call.
    Claimed { run: RunId, task: TaskId },
    /// A result was posted for a task of `run`.
    Posted { run: RunId, task: TaskId },
    /// A cancel of `run` was asked ([`Change::RequestRunCancel`](crate::Change::RequestRunCancel)),
    /// maybe on another server than the one driving it: its driver reads the
    /// run and cancels it.
    CancelRequested { run: RunId },
    /// An alert was raised or resolved ([`crate::alerts`]).
    Alert { id: cairn_core::AlertId },
    /// Notices may have been missed (a reconnect, a lagging receiver):
    /// whoever relies on them reads the state again.
    Resync,
}

/// A server's place among the servers of one store, from [`Store::join`](crate::Store::join).
/// Dropping it leaves (on PostgreSQL, closes the session that holds the
/// server's liveness lock and, when it leads, the leader lock).
pub struct Membership {
    /// Whether this server is the leader now. Exactly one member of a
    /// store leads at a time; when the leader's session ends, another
    /// takes over within about a second.
    pub leader: watch::Receiver<bool>,
    pub(crate) _session: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership").field("leader", &*self.leader.borrow()).finish_non_exhaustive()
    }
}

impl Membership {
    /// A member of a store that only one server can use (SQLite): always the leader.
    pub fn sole() -> Membership {
        let (tx, leader) = watch::channel(true);
        Membership { leader, _session: Some(Box::new(tx)) }
    }
}
