//! The driver's side of the worker protocol: starting a remote attempt for
//! a worker's lease call, its heartbeats, its completion, and reaping it when
//! its lease runs out. Every answer waits for the commit of what it reports.

use std::collections::BTreeMap;

use cairn_core::TaskStatus;
use cairn_core::Timestamp;
use cairn_core::progress::Progress;
use cairn_core::protocol::{AckStatus, AttemptEnd, CompleteRequest, HeartbeatAck, HeartbeatItem, LeasedTask};
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
            Command::StartRemote { index, worker, reply } => self.start_remote(index, worker, reply, now),
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

    fn start_remote(
        &mut self,
        index: usize,
        worker: String,
        reply: oneshot::Sender<Option<LeasedTask>>,
        now: Timestamp,
    ) {
        let stopping = self.canceled_by.is_some() || self.timed_out;
        if index >= self.slots.len() || self.slots[index].state.status() != TaskStatus::Pending || stopping {
            let _ = reply.send(None);
            return;
        }
        let lease = self.start_attempt(index, now, worker.clone(), Actor::Worker(worker));
        let attempt = self.slots[index].state.attempt();
        let ctx = self.context(index, attempt, CancellationToken::new());
        let command = self.runner.remote_command(&ctx);
        let input: BTreeMap<String, String> = match &command {
            Some(c) => c.env.iter().cloned().collect(),
            None => self.runner.remote_input(&ctx),
        };
        let task = &self.plan.tasks[index];
        let leased = LeasedTask {
            task_id: self.slots[index].id,
            run_id: self.opts.run_id,
            workflow: self.plan.workflow.clone(),
            step: task.name.clone(),
            task_type: task.task_type.clone().unwrap_or_else(|| task.name.clone()),
            attempt,
            lease_token: lease.token,
            lease_expires_at: lease.expires_at,
            heartbeat_interval_ms: self.slots[index].lease_settings.heartbeat_interval.as_millis() as u64,
            timeout_ms: task.timeout.map(|t| t.as_millis() as u64),
            command,
            input,
            details: self.slots[index].details.clone(),
        };
        self.replies.push(Reply::Lease(reply, Box::new(leased)));
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
