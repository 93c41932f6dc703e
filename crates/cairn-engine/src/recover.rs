//! Recovery: nothing stays RUNNING forever.
//!
//! Every command that opens a store first calls [`recover`]. Runs whose local
//! owner process is gone are finished at once: their running attempts fail
//! with "heartbeat lost", what had not started is abandoned, and the run
//! fails. Leases of a `cairn run` that simply expired (its process alive but
//! silent) are reaped by the reaper's rule: the attempt fails with
//! "heartbeat lost", and the task is retried or fails for good. Runs owned
//! by a server are left to servers: their drivers reap their own leases, and
//! a server that starts resumes the runs of one that died.

use cairn_core::record::{Actor, RunTransition, Transition};
use cairn_core::{RunStatus, TaskStatus, Timestamp};
use cairn_store::{AttemptResult, Change, ExpiredLease, RunChange, RunRecord, Store, TaskChange, TaskUpdate};

use crate::error::EngineError;
use crate::owner::LocalOwner;
use crate::time::EngineClock;

/// What one recovery pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Runs finished because their owner died.
    pub runs_failed: usize,
    /// Attempts failed with "heartbeat lost".
    pub attempts_reaped: usize,
}

pub async fn recover<S: Store>(store: &S, clock: &EngineClock) -> Result<Recovery, EngineError> {
    let mut done = Recovery::default();
    for run in store.active_runs().await? {
        let owner = run.owner.as_deref().and_then(LocalOwner::parse);
        if owner.as_ref().and_then(LocalOwner::is_alive) == Some(false) {
            done.attempts_reaped += fail_orphaned_run(store, &run, clock.now()).await?;
            done.runs_failed += 1;
        }
    }
    // A server reaps the leases of its own runs (and resumes a dead server's
    // runs when it starts); here only runs of `cairn run` processes.
    let mut owners: std::collections::HashMap<cairn_core::RunId, bool> = Default::default();
    loop {
        let expired = store.expired_leases(clock.now(), 1000).await?;
        let mut local = Vec::new();
        for e in expired {
            let is_local = match owners.get(&e.run) {
                Some(v) => *v,
                None => {
                    let owner = store.run(e.run).await?.and_then(|r| r.owner);
                    let v = owner.as_deref().is_some_and(|o| LocalOwner::parse(o).is_some());
                    owners.insert(e.run, v);
                    v
                }
            };
            if is_local {
                local.push(e);
            }
        }
        if local.is_empty() {
            break;
        }
        let now = clock.now();
        let changes: Vec<Change> = local.iter().map(|e| reap(e, now)).collect();
        let applied = store.apply(changes).await?.iter().filter(|o| o.is_applied()).count();
        done.attempts_reaped += applied;
        if applied == 0 {
            break;
        }
    }
    Ok(done)
}

fn lost_reason(worker: &str, last_heartbeat: Timestamp, detail: &str) -> String {
    format!("heartbeat lost (worker {worker}, last heartbeat {last_heartbeat}){detail}")
}

/// The reaper's rule for one expired lease: retry if attempts are left, else fail.
fn reap(e: &ExpiredLease, now: Timestamp) -> Change {
    let reason = lost_reason(&e.lease.worker, e.lease.last_heartbeat_at, "");
    let (to, reason) = if e.attempt < e.max_attempts {
        (TaskStatus::Pending, format!("attempt {} failed: {reason}; will be retried", e.attempt))
    } else {
        (TaskStatus::Failed, reason)
    };
    Change::Task(TaskChange {
        task: e.task,
        transition: Transition {
            attempt: e.attempt,
            from: Some(TaskStatus::Running),
            to,
            at: now.max(e.lease.last_heartbeat_at),
            reason: reason.clone(),
            actor: Actor::Reaper,
        },
        update: TaskUpdate::EndAttempt {
            token: e.lease.token,
            result: AttemptResult { exit_code: None, error: Some(reason), outputs: Default::default() },
            retry_at: None,
        },
    })
}

async fn fail_orphaned_run<S: Store>(
    store: &S,
    run: &RunRecord,
    now: Timestamp,
) -> Result<usize, EngineError> {
    let Some(detail) = store.run_detail(run.id).await? else { return Ok(0) };
    let owner = run.owner.clone().unwrap_or_default();
    let mut changes = Vec::new();
    let mut reaped = 0;
    for task in &detail.tasks {
        let last_at = detail.transitions.get(&task.id).and_then(|l| l.last()).map_or(now, |t| t.at);
        let at = now.max(last_at);
        let (to, reason, update) = match task.status {
            TaskStatus::Running => {
                let Some(lease) = &task.lease else { continue };
                let reason = lost_reason(&lease.worker, lease.last_heartbeat_at, ": the process is gone");
                reaped += 1;
                let update = TaskUpdate::EndAttempt {
                    token: lease.token,
                    result: AttemptResult {
                        exit_code: None,
                        error: Some(reason.clone()),
                        outputs: Default::default(),
                    },
                    retry_at: None,
                };
                (TaskStatus::Failed, reason, update)
            }
            TaskStatus::Submitted => {
                (TaskStatus::Canceled, format!("the run's executor {owner} died"), TaskUpdate::Plain)
            }
            TaskStatus::Blocked | TaskStatus::Pending => {
                (TaskStatus::Abandoned, format!("the run's executor {owner} died"), TaskUpdate::Plain)
            }
            _ => continue,
        };
        changes.push(Change::Task(TaskChange {
            task: task.id,
            transition: Transition {
                attempt: task.attempt,
                from: Some(task.status),
                to,
                at,
                reason,
                actor: Actor::Reaper,
            },
            update,
        }));
    }
    let reason = format!("the run's executor {owner} died; heartbeat lost");
    changes.push(Change::Run(RunChange {
        run: run.id,
        transition: RunTransition {
            from: Some(run.status),
            to: RunStatus::Failed,
            at: now.max(run.started_at.unwrap_or(run.submitted_at)),
            reason: reason.clone(),
            actor: Actor::Reaper,
        },
        error: Some(reason),
    }));
    store.apply(changes).await?;
    Ok(reaped)
}
