//! The shape check every backend runs on a batch before touching storage:
//! each change must be a legal transition with the update that fits it.
//!
//! A change that fails here is a bug in the caller, not a race, so the whole
//! batch is refused with [`StoreError::InvalidChange`] and nothing is written.
//! Races (the stored state moved on) are the backend's compare-and-set and
//! end as [`crate::Outcome::Conflict`] instead.

use cairn_core::{RunStatus, TaskStatus};

use crate::change::{Change, TaskUpdate};
use crate::error::StoreError;

/// Checks every change of `changes`; the first bad one names its position.
pub(crate) fn validate_batch(changes: &[Change]) -> Result<(), StoreError> {
    for (i, change) in changes.iter().enumerate() {
        validate(change)
            .map_err(|why| StoreError::InvalidChange(format!("change #{i} of the batch: {why}")))?;
    }
    Ok(())
}

fn validate(change: &Change) -> Result<(), String> {
    match change {
        Change::CreateRun(run) => {
            let t = &run.transition;
            if t.from.is_some() || t.to != RunStatus::Queued {
                return Err(format!(
                    "run {} must be created with a (new) -> QUEUED transition, not {} -> {}",
                    run.id,
                    t.from.map_or("(new)", |s| s.as_str()),
                    t.to
                ));
            }
            for task in &run.tasks {
                let t = &task.transition;
                if t.from.is_some() || t.to != TaskStatus::Submitted || t.attempt != 0 {
                    return Err(format!(
                        "task {} ({}) must be created with a (new) -> SUBMITTED transition of attempt 0",
                        task.id, task.name
                    ));
                }
                if task.max_attempts == 0 {
                    return Err(format!(
                        "task {} ({}) allows 0 attempts; it needs at least 1",
                        task.id, task.name
                    ));
                }
            }
            Ok(())
        }
        Change::Run(rc) => {
            let t = &rc.transition;
            let Some(from) = t.from else {
                return Err(format!(
                    "run {}: a status change needs its from-status; creation is CreateRun",
                    rc.run
                ));
            };
            RunStatus::check(Some(from), t.to).map_err(|e| format!("run {}: {e}", rc.run))
        }
        Change::Task(tc) => {
            let t = &tc.transition;
            let Some(from) = t.from else {
                return Err(format!(
                    "task {}: a status change needs its from-status; creation is CreateRun",
                    tc.task
                ));
            };
            TaskStatus::check(Some(from), t.to).map_err(|e| format!("task {}: {e}", tc.task))?;
            let expected = if t.to == TaskStatus::Running {
                "Start"
            } else if from == TaskStatus::Running {
                "EndAttempt"
            } else {
                "Plain"
            };
            let given = match &tc.update {
                TaskUpdate::Plain => "Plain",
                TaskUpdate::Start { .. } => "Start",
                TaskUpdate::EndAttempt { .. } => "EndAttempt",
            };
            if given != expected {
                return Err(format!(
                    "task {}: {from} -> {} must carry TaskUpdate::{expected}, not TaskUpdate::{given}",
                    tc.task, t.to
                ));
            }
            match &tc.update {
                TaskUpdate::Start { .. } if t.attempt == 0 => {
                    Err(format!("task {}: a start must name its attempt (1-based), not 0", tc.task))
                }
                TaskUpdate::EndAttempt { retry_at: Some(_), .. } if t.to != TaskStatus::Pending => {
                    Err(format!(
                        "task {}: retry_at belongs to a retry (RUNNING -> PENDING), not RUNNING -> {}",
                        tc.task, t.to
                    ))
                }
                _ => Ok(()),
            }
        }
        Change::Offer(offer) => {
            let task = offer.task;
            if offer.queue.is_empty() {
                return Err(format!("task {task}: an offer needs a queue name"));
            }
            if offer.queue.len() > MAX_QUEUE_NAME {
                return Err(format!(
                    "task {task}: queue name of {} bytes; at most {MAX_QUEUE_NAME} (it travels in notices)",
                    offer.queue.len()
                ));
            }
            if offer.lease_ms == 0 || offer.lease_ms > MAX_LEASE_MS {
                return Err(format!(
                    "task {task}: a lease of {} ms; it must be between 1 ms and a year (renewals extend it)",
                    offer.lease_ms
                ));
            }
            Ok(())
        }
        Change::PostResult(result) if result.body.is_empty() => {
            Err(format!("task {}: a posted result needs a body", result.task))
        }
        // Any actor may ask for a run's cancel: every actor is stored as
        // its text and reads back as itself.
        Change::Heartbeat(_)
        | Change::AdoptRun(_)
        | Change::Withdraw { .. }
        | Change::RequestCancel { .. }
        | Change::PostResult(_)
        | Change::RequestRunCancel { .. } => Ok(()),
    }
}

/// The longest queue name an offer may carry, in bytes.
const MAX_QUEUE_NAME: usize = 200;

/// The longest lease an offer may grant: renewals keep a lease alive, so
/// it never needs to cover a whole task, and the bound keeps `now +
/// lease` far from overflowing.
const MAX_LEASE_MS: u64 = 365 * 24 * 60 * 60 * 1000;
