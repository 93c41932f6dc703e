//! Continuing a run from its records: a server that restarts, or takes over
//! the runs of one that died, rebuilds each run's driver from the store.
//!
//! Remote attempts keep their leases (their workers go on heartbeating);
//! local attempts died with the old process and fail with "heartbeat lost",
//! then retry or fail per their policy; everything else picks up where the
//! records say it was.

use std::collections::BTreeMap;

use cairn_core::lease::Lease;
use cairn_core::record::{Actor, TaskState};
use cairn_core::retry::FailureKind;
use cairn_core::{TaskStatus, Timestamp};
use cairn_store::{RunDetail, Store};

use super::{Driver, Phase};
use crate::error::EngineError;
use crate::plan::{Handler, Role};
use crate::runner::{AttemptOutcome, TaskRunner};

impl<S: Store, R: TaskRunner> Driver<S, R> {
    /// Loads the state of `detail`'s run into this driver (built from the
    /// same plan with `RunOptions::run_id` set to that run); `drive` then
    /// continues it instead of creating a new run.
    pub fn restore(mut self, detail: &RunDetail) -> Result<Self, EngineError> {
        self.restored_outputs = vec![None; self.slots.len()];
        if detail.run.id != self.opts.run_id || detail.tasks.len() != self.slots.len() {
            return Err(EngineError::InvalidPlan(format!(
                "run {} has {} tasks, but its workflow now plans {}",
                detail.run.id,
                detail.tasks.len(),
                self.slots.len()
            )));
        }
        for t in &detail.tasks {
            let i = t.index as usize;
            let log = detail.transitions.get(&t.id).map(Vec::as_slice).unwrap_or_default();
            let last_at = log.last().map_or(detail.run.submitted_at, |x| x.at);
            let slot = &mut self.slots[i];
            slot.id = t.id;
            slot.state = TaskState::restore(t.status, t.attempt, last_at);
            slot.lease = t.lease.as_ref().map(|l| Lease {
                token: l.token,
                started_at: t.started_at.unwrap_or(l.last_heartbeat_at),
                last_heartbeat_at: l.last_heartbeat_at,
                expires_at: l.expires_at,
            });
            slot.worker = t.lease.as_ref().map(|l| l.worker.clone());
            slot.details = t.details.clone();
            if t.status.is_terminal() {
                self.restored_outputs[i] = Some((t.exit_code, t.outputs.clone()));
            }
            slot.retry_at = t.not_before.filter(|_| t.status == TaskStatus::Pending);
            slot.failure_passed = t.status == TaskStatus::Failed
                && self.plan.tasks[i].continue_on.lets_failure_pass(t.exit_code);
            // Who stopped the run, if someone did: the reasons say it.
            for x in log {
                if let Some(rest) = x.reason.strip_prefix("canceled by ")
                    && !rest.is_empty()
                    && self.canceled_by.is_none()
                {
                    self.canceled_by = Some(x.actor.clone());
                }
                if x.reason.starts_with("killed: the workflow timed out")
                    || x.reason.starts_with("the workflow timed out")
                {
                    self.timed_out = true;
                }
            }
        }
        self.run_status = detail.run.status;
        let started = detail.run.started_at.unwrap_or(detail.run.submitted_at);
        self.run_deadline = self.plan.timeout.map(|t| started.saturating_add(t));
        self.start_at = self.plan.delay.map(|d| started.saturating_add(d));
        self.phase = self.phase_from_records();
        self.restored = true;
        Ok(self)
    }

    fn phase_from_records(&self) -> Phase {
        let moved = |h: Handler| {
            self.plan
                .tasks
                .iter()
                .position(|t| t.role == Role::Handler(h))
                .is_some_and(|i| self.slots[i].state.status() != TaskStatus::Blocked)
        };
        if moved(Handler::Exit) {
            Phase::Exit
        } else if [Handler::Success, Handler::Failure, Handler::Cancel].into_iter().any(moved) {
            Phase::Handlers
        } else {
            Phase::Steps
        }
    }

    /// The first turn of a restored run: settle what the old owner left.
    pub(super) fn resume(&mut self, now: Timestamp) {
        // What finished steps produced is visible again to the steps after them.
        for i in 0..self.slots.len() {
            if let Some((exit_code, outputs)) = self.restored_outputs[i].take() {
                let attempt = self.slots[i].state.attempt();
                let ctx = self.context(i, attempt, tokio_util::sync::CancellationToken::new());
                self.runner.outputs_known(&ctx, exit_code, &outputs);
            }
        }
        // Replay every finished task's effect on its dependents, as the old
        // owner did in the same commits; it only acts where it had not.
        for i in 0..self.slots.len() {
            if self.slots[i].state.status().is_terminal() {
                self.settle_dependents(i, now);
            }
        }
        for i in 0..self.slots.len() {
            let status = self.slots[i].state.status();
            let is_handler = matches!(self.plan.tasks[i].role, Role::Handler(_));
            if status == TaskStatus::Running && !is_handler {
                // Count it against `max_active` as the old owner did.
                self.running += 1;
                self.slots[i].holds_slot = true;
            }
            match status {
                // A remote worker still holds it and goes on heartbeating.
                TaskStatus::Running if self.slots[i].remote => {}
                TaskStatus::Running => {
                    let Some(lease) = self.slots[i].lease else { continue };
                    let worker = self.slots[i].worker.clone().unwrap_or_default();
                    let error = format!(
                        "heartbeat lost (worker {worker}, last heartbeat {}): the process running it is gone",
                        lease.last_heartbeat_at
                    );
                    let outcome = AttemptOutcome::Failed {
                        kind: FailureKind::HeartbeatLost,
                        exit_code: None,
                        error,
                        outputs: BTreeMap::new(),
                        continue_matched: false,
                    };
                    self.on_attempt_end(i, lease.token, outcome, now, Actor::Reaper);
                }
                TaskStatus::Pending if self.slots[i].retry_at.is_none_or(|at| at <= now) => {
                    self.slots[i].retry_at = None;
                    self.ready.push_back(i);
                }
                _ => {}
            }
        }
        // Roots still waiting for the workflow's preconditions: check them again.
        let waiting_roots = self.plan.tasks.iter().zip(&self.slots).any(|(t, s)| {
            t.depends.is_empty() && t.role == Role::Step && s.state.status() == TaskStatus::Blocked
        });
        if self.plan.preconditions && waiting_roots && self.precondition_failed.is_none() {
            self.spawn_run_precheck();
        }
    }
}
