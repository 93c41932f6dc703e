//! The driver's side of the worker protocol: starting a remote attempt for
//! a worker's lease call, its heartbeats, its completion, and reaping it when
//! its lease runs out. Every answer waits for the commit of what it reports.

use std::collections::BTreeMap;

use cairn_core::TaskStatus;
use cairn_core::Timestamp;
use cairn_core::lease::Lease;
use cairn_core::progress::Progress;
use cairn_core::protocol::{AckStatus, AttemptEnd, CompleteRequest, HeartbeatAck, HeartbeatItem};
use cairn_core::record::Actor;
use cairn_core::retry::FailureKind;
use cairn_store::{Change, Heartbeat, Store};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Command, Driver, Reply, StaleLease};
use crate::runner::{AttemptOutcome, TaskRunner};

impl<S: Store, R: TaskRunner> Driver<S, R> {
    pub(super) fn on_command(&mut self, cmd: Command, now: Timestamp) {
        match cmd {
            Command::Claimed { index, attempt, lease, worker } => {
                self.on_claimed(index, attempt, lease, worker)
            }
            Command::Heartbeat { index, item, reply } => self.remote_heartbeat(index, item, reply, now),
            Command::Complete { index, req, reply } => self.remote_complete(index, req, reply, now),
            Command::LogPaths { index, token, reply } => {
                let holds = self.slots.get(index).is_some_and(|slot| {
                    slot.state.status() == TaskStatus::Running && slot.lease.is_some_and(|l| l.token == token)
                });
                let paths = holds.then(|| {
                    let attempt = self.slots[index].state.attempt();
                    super::attempt_log_paths(
                        &self.opts.log_root,
                        self.opts.run_id,
                        index,
                        &self.plan.tasks[index].name,
                        attempt,
                    )
                });
                let _ = reply.send(paths);
            }
            Command::Interrupt { reply } => {
                for slot in self.slots.iter_mut().filter(|s| !s.remote && s.lease.is_some()) {
                    slot.kill = Some(super::KillReason::Shutdown);
                    if let Some(c) = &slot.cancel {
                        c.cancel();
                    }
                }
                self.draining = Some(reply);
            }
            Command::Cancel { actor } => {
                if self.canceled_by.is_none()
                    && !self.timed_out
                    && self.run_status == cairn_core::RunStatus::Running
                {
                    self.cancel_run(now, actor);
                }
            }
        }
    }

    /// A claim leased the task: the store already has it RUNNING, so this
    /// only catches up in memory (and publishes the transition). A stop that
    /// came while it was being claimed reaches the worker now.
    fn on_claimed(&mut self, index: usize, attempt: u32, lease: Lease, worker: String) {
        let Some(slot) = self.slots.get_mut(index) else { return };
        match slot.state.status() {
            TaskStatus::Pending if attempt == slot.state.attempt() + 1 => {}
            // Known already; a later expiry is news from a renewal elsewhere.
            TaskStatus::Running if slot.lease.is_some_and(|l| l.token == lease.token) => {
                if let Some(held) = slot.lease.as_mut().filter(|l| l.expires_at < lease.expires_at) {
                    held.expires_at = lease.expires_at;
                    held.last_heartbeat_at = lease.last_heartbeat_at;
                }
                return;
            }
            _ => return,
        }
        slot.offered = false;
        let reason = format!("attempt {attempt} started");
        let t =
            self.record(index, TaskStatus::Running, lease.started_at, reason, Actor::Worker(worker.clone()));
        let slot = &mut self.slots[index];
        slot.lease = Some(lease);
        slot.worker = Some(worker);
        slot.samples = super::SampleGate::default();
        slot.deadline = self.plan.tasks[index].timeout.map(|d| t.at.saturating_add(d));
        slot.kill = None;
        if let Some(why) = self.stop_reason() {
            self.kill(index, why);
        }
    }

    /// Reads the leases of remote attempts that look expired here: their
    /// workers may be renewing them through another server.
    pub(super) async fn refresh_expiring(&mut self, now: Timestamp) {
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            let Some(lease) = slot.lease.filter(|l| slot.remote && l.is_expired(now)) else { continue };
            let stored = match self.store.task(slot.id).await {
                Ok(Some(d)) => d.task.lease.filter(|l| l.token == lease.token),
                Ok(None) => None,
                Err(e) => {
                    // Not reaped on a guess: look again shortly.
                    tracing::warn!(task = %slot.id, error = %e, "could not read a lease before reaping it");
                    let retry = now.saturating_add(std::time::Duration::from_secs(1));
                    if let Some(l) = self.slots[index].lease.as_mut() {
                        l.expires_at = retry;
                    }
                    continue;
                }
            };
            if let (Some(stored), Some(held)) = (stored, self.slots[index].lease.as_mut())
                && stored.expires_at > held.expires_at
            {
                held.expires_at = stored.expires_at;
                held.last_heartbeat_at = stored.last_heartbeat_at;
            }
        }
    }

    fn remote_heartbeat(
        &mut self,
        index: usize,
        item: HeartbeatItem,
        reply: oneshot::Sender<HeartbeatAck>,
        now: Timestamp,
    ) {
        let stale = HeartbeatAck {
            task_id: item.task_id,
            status: AckStatus::LeaseStale,
            lease_expires_at: None,
            cancel_requested: false,
        };
        let Some(slot) = self.slots.get_mut(index) else {
            let _ = reply.send(stale);
            return;
        };
        let current = slot.lease.filter(|l| l.token == item.lease_token && !l.is_expired(now));
        let (Some(lease), TaskStatus::Running) = (current, slot.state.status()) else {
            let _ = reply.send(stale);
            return;
        };
        let lease = lease.extended(now, &slot.lease_settings);
        slot.lease = Some(lease);
        // Checkpoints are kept only where the workflow asks (`keep_details`).
        let details = item.details.filter(|_| self.plan.keep_details);
        if details.is_some() {
            slot.details = details.clone();
        }
        let cancel_requested = slot.kill.is_some();
        let progress = item.progress_percent.and_then(|pct| Progress::new(pct, item.progress_message).ok());
        let stored = match progress {
            Some(p) => self.on_progress(index, p, now, details.clone()),
            None => false,
        };
        if !stored {
            let slot = &self.slots[index];
            self.batch.push(Change::Heartbeat(Heartbeat {
                task: slot.id,
                token: lease.token,
                at: now,
                lease_expires_at: lease.expires_at,
                progress: None,
                sample: false,
                details,
            }));
        }
        let expires = self.slots[index].lease.map(|l| l.expires_at);
        let ack = HeartbeatAck {
            task_id: item.task_id,
            status: AckStatus::Ok,
            lease_expires_at: expires,
            cancel_requested,
        };
        self.replies.push(Reply::Ack(reply, ack));
    }

    fn remote_complete(
        &mut self,
        index: usize,
        req: CompleteRequest,
        reply: oneshot::Sender<Result<TaskStatus, StaleLease>>,
        now: Timestamp,
    ) {
        let Some(slot) = self.slots.get(index) else {
            let _ = reply.send(Err(StaleLease));
            return;
        };
        let holds = slot.state.status() == TaskStatus::Running
            && slot.lease.is_some_and(|l| l.token == req.lease_token && !l.is_expired(now));
        if !holds {
            // The same completion again is answered the same — after the
            // commit that records it, which may still be pending in this
            // turn's batch; anything else is stale (that changes nothing).
            match slot.last_end {
                Some((token, status)) if token == req.lease_token => {
                    self.replies.push(Reply::Complete(reply, status))
                }
                _ => drop(reply.send(Err(StaleLease))),
            }
            return;
        }
        let outcome = match req.outcome {
            AttemptEnd::Succeeded => {
                AttemptOutcome::Succeeded { exit_code: req.exit_code, outputs: req.outputs }
            }
            AttemptEnd::Canceled => AttemptOutcome::Killed { exit_code: req.exit_code, outputs: req.outputs },
            AttemptEnd::Failed => AttemptOutcome::Failed {
                kind: req.exit_code.map_or(FailureKind::Exit(-1), FailureKind::Exit),
                exit_code: req.exit_code,
                error: req.error.unwrap_or_else(|| match req.exit_code {
                    Some(c) => format!("exit code {c}"),
                    None => "failed".to_owned(),
                }),
                outputs: req.outputs,
                continue_matched: false,
            },
        };
        let worker = self.slots[index].worker.clone().unwrap_or_default();
        if let AttemptOutcome::Succeeded { exit_code, outputs }
        | AttemptOutcome::Failed { exit_code, outputs, .. } = &outcome
        {
            let attempt = self.slots[index].state.attempt();
            let ctx = self.context(index, attempt, CancellationToken::new());
            self.runner.outputs_known(&ctx, *exit_code, outputs);
        }
        self.on_attempt_end(index, req.lease_token, outcome, now, Actor::Worker(worker));
        let status = self.slots[index].state.status();
        self.slots[index].last_end = Some((req.lease_token, status));
        self.replies.push(Reply::Complete(reply, status));
    }

    /// Fails every remote attempt whose lease ran out: the worker died, hung
    /// or lost the network. A cancel or timeout that was waiting for the
    /// worker's confirmation ends as it would have.
    pub(super) fn reap_expired(&mut self, now: Timestamp) {
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            let Some(lease) = slot.lease.filter(|l| slot.remote && l.is_expired(now)) else { continue };
            let worker = slot.worker.clone().unwrap_or_default();
            let outcome = if slot.kill.is_some() {
                AttemptOutcome::Killed { exit_code: None, outputs: BTreeMap::new() }
            } else {
                // A worker that leased and never said a word did not start the
                // task: a start failure, told apart from a lost heartbeat.
                let (kind, error) = if lease.last_heartbeat_at == lease.started_at {
                    let when = lease.started_at;
                    (
                        FailureKind::StartFailed,
                        format!("never started (worker {worker} leased it at {when} and never reported)"),
                    )
                } else {
                    let last = lease.last_heartbeat_at;
                    (
                        FailureKind::HeartbeatLost,
                        format!("heartbeat lost (worker {worker}, last heartbeat {last})"),
                    )
                };
                AttemptOutcome::Failed {
                    kind,
                    exit_code: None,
                    error,
                    outputs: BTreeMap::new(),
                    continue_matched: false,
                }
            };
            self.on_attempt_end(index, lease.token, outcome, now, Actor::Reaper);
        }
    }
}
