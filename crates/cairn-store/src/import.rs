//! Bulk import of finished runs ([`Store::import_runs`](crate::Store::import_runs)):
//! the record a run is imported as, and the checks every backend makes of
//! it before writing anything.
//!
//! An import writes a finished run with its whole history at once — the
//! run, its workflow text, its labels, its tasks, every transition of the
//! run and of each task, every attempt, the progress samples — instead of
//! replaying the changes that made it. It is how archived history comes
//! back, and how a large history is loaded quickly (the W4 benchmark).
//!
//! Architecture invariant: an imported run reads back, searches and counts
//! exactly as it would had its changes gone through `apply`. So only
//! finished runs are taken (a live run has a driver, an imported one never
//! will), and a run is refused unless its record is one that the transition
//! table and the store's own writes could have produced: every log starts
//! with its creation, follows the table and never goes back in time, the
//! attempts are the log's starts with the ends the log gives them, and the
//! fields the store derives from the log (submission, start and finish
//! times, the current attempt and its result) agree with it. Counts add
//! each run and task once, at its final status, in its submission minute —
//! what `apply` leaves after the net changes of its whole life.

use std::collections::{BTreeMap, HashSet};

use cairn_core::durations::Durations;
use cairn_core::record::{RunTransition, Transition};
use cairn_core::{RunId, RunStatus, TaskId, TaskStatus, Timestamp};

use crate::error::StoreError;
use crate::model::{AttemptRecord, ProgressSample, RunDetail, TaskRecord};

/// One finished run with everything recorded of it, as
/// [`Store::import_runs`](crate::Store::import_runs) takes it: what
/// [`Store::run_detail`](crate::Store::run_detail) reads, and what that read
/// leaves out. An import stores of each attempt's outputs only the current
/// attempt's (the task's `outputs`), as that is all a read shows.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedRun {
    /// The run, its tasks by index, every transition and every attempt.
    pub detail: RunDetail,
    /// The workflow text the run was submitted with
    /// ([`Store::spec_source`](crate::Store::spec_source)), if it was kept.
    pub spec_source: Option<String>,
    /// The workflow's labels ([`NewRun::labels`](crate::NewRun::labels)).
    pub labels: Vec<String>,
    /// Each task's progress history, oldest first
    /// ([`Store::progress_samples`](crate::Store::progress_samples)).
    pub progress: BTreeMap<TaskId, Vec<ProgressSample>>,
}

/// Time a task spent in each phase, in µs, summed over its whole log
/// ([`Durations::from_log`]), as the `tasks` row keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Phases {
    pub blocked_us: i64,
    pub pending_us: i64,
    pub running_us: i64,
}

impl Phases {
    /// The phases of a finished task's `log`.
    pub(crate) fn of(log: &[Transition]) -> Phases {
        let end = log.last().map_or(Timestamp::from_micros(0), |t| t.at);
        let d = Durations::from_log(log, end);
        let us = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Phases {
            blocked_us: us(d.blocked_duration),
            pending_us: us(d.pending_duration),
            running_us: us(d.execution_duration),
        }
    }
}

/// The outputs an attempt row keeps: the task's, on its current attempt.
pub(crate) fn attempt_outputs<'t>(
    task: &'t TaskRecord,
    attempt: &AttemptRecord,
) -> Option<&'t BTreeMap<String, String>> {
    (attempt.attempt == task.attempt && !task.outputs.is_empty()).then_some(&task.outputs)
}

/// The transitions of `task` in `detail` (checked to be there).
pub(crate) fn log<'d>(detail: &'d RunDetail, task: &TaskRecord) -> &'d [Transition] {
    detail.transitions.get(&task.id).map_or(&[], Vec::as_slice)
}

/// The attempts of `task` in `detail`, oldest first.
pub(crate) fn attempts<'d>(detail: &'d RunDetail, task: &TaskRecord) -> &'d [AttemptRecord] {
    detail.attempts.get(&task.id).map_or(&[], Vec::as_slice)
}

/// The progress samples of `task` in `run`, oldest first.
pub(crate) fn samples<'r>(run: &'r FinishedRun, task: &TaskRecord) -> &'r [ProgressSample] {
    run.progress.get(&task.id).map_or(&[], Vec::as_slice)
}

/// The error of the refused run `run`: `field` at fault, and why.
pub(crate) fn refused(run: RunId, field: impl Into<String>, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidImport { run, field: field.into(), reason: reason.into() }
}

/// Checks every run of one import call; the first problem refuses the call.
pub(crate) fn check(runs: &[FinishedRun]) -> Result<(), StoreError> {
    let mut run_ids = HashSet::with_capacity(runs.len());
    let mut task_ids = HashSet::with_capacity(runs.iter().map(|r| r.detail.tasks.len()).sum());
    for run in runs {
        let id = run.detail.run.id;
        if !run_ids.insert(id) {
            return Err(refused(id, "id", "the run appears twice in this import"));
        }
        check_run(run, &mut task_ids).map_err(|(field, reason)| refused(id, field, reason))?;
    }
    Ok(())
}

/// A problem: the field at fault, and why.
type Problem = (String, String);

fn problem(field: impl Into<String>, reason: impl Into<String>) -> Problem {
    (field.into(), reason.into())
}

fn shown(status: Option<impl std::fmt::Display>) -> String {
    status.map_or_else(|| "(new)".to_owned(), |s| s.to_string())
}

fn check_run(run: &FinishedRun, task_ids: &mut HashSet<TaskId>) -> Result<(), Problem> {
    let detail = &run.detail;
    let r = &detail.run;
    if !r.status.is_terminal() {
        return Err(problem(
            "run.status",
            format!(
                "the run is {}; only finished runs (COMPLETED, PARTIALLY_SUCCEEDED, FAILED or CANCELED) can \
                 be imported",
                r.status
            ),
        ));
    }
    let log = &detail.run_transitions;
    let (first, last) = match (log.first(), log.last()) {
        (Some(first), Some(last)) => (first, last),
        _ => return Err(problem("run_transitions", "empty; a run's log starts with (new) -> QUEUED")),
    };
    check_run_log(log)?;
    if last.to != r.status {
        return Err(problem(
            "run.status",
            format!("is {} but the run's last transition goes to {}", r.status, last.to),
        ));
    }
    if r.submitted_at != first.at {
        return Err(problem(
            "run.submitted_at",
            format!("is {} but the run was created at {}", r.submitted_at, first.at),
        ));
    }
    let started = log.iter().find(|t| t.to == RunStatus::Running).map(|t| t.at);
    if r.started_at != started {
        return Err(problem(
            "run.started_at",
            format!(
                "is {} but the run's log has it start at {}",
                show_time(r.started_at),
                show_time(started)
            ),
        ));
    }
    if r.finished_at != Some(last.at) {
        return Err(problem(
            "run.finished_at",
            format!("is {} but the run's log ends at {}", show_time(r.finished_at), last.at),
        ));
    }

    let mut previous: Option<u32> = None;
    for (i, task) in detail.tasks.iter().enumerate() {
        if task.run != r.id {
            return Err(problem(format!("tasks[{i}].run"), format!("is {}, not this run", task.run)));
        }
        if let Some(previous) = previous
            && task.index <= previous
        {
            return Err(problem(
                format!("tasks[{i}].index"),
                format!("{} after {previous}: tasks come ordered by index, each index once", task.index),
            ));
        }
        previous = Some(task.index);
        if !task_ids.insert(task.id) {
            return Err(problem(
                format!("tasks[{i}].id"),
                format!("task {} appears twice in this import", task.id),
            ));
        }
        check_task(run, i, task)?;
    }
    let known: HashSet<TaskId> = detail.tasks.iter().map(|t| t.id).collect();
    let strays = [
        ("transitions", detail.transitions.keys().find(|id| !known.contains(id))),
        ("attempts", detail.attempts.keys().find(|id| !known.contains(id))),
        ("progress", run.progress.keys().find(|id| !known.contains(id))),
    ];
    for (field, stray) in strays {
        if let Some(id) = stray {
            return Err(problem(field, format!("task {id} is not one of the run's tasks")));
        }
    }
    Ok(())
}

fn show_time(at: Option<Timestamp>) -> String {
    at.map_or_else(|| "none".to_owned(), |at| at.to_string())
}

fn check_run_log(log: &[RunTransition]) -> Result<(), Problem> {
    let mut status: Option<RunStatus> = None;
    let mut last: Option<Timestamp> = None;
    for (k, t) in log.iter().enumerate() {
        let field = |what: &str| format!("run_transitions[{k}]{what}");
        if t.from != status {
            return Err(problem(
                field(".from"),
                format!("is {} but the run was {}", shown(t.from), shown(status)),
            ));
        }
        RunStatus::check(t.from, t.to).map_err(|e| problem(field(""), e.to_string()))?;
        if let Some(last) = last
            && t.at < last
        {
            return Err(problem(
                field(".at"),
                format!("time goes back: {} is before the change at {last}", t.at),
            ));
        }
        status = Some(t.to);
        last = Some(t.at);
    }
    Ok(())
}

/// What a task's log says of its attempts.
struct Replayed<'l> {
    status: TaskStatus,
    attempt: u32,
    /// The transitions into RUNNING, and out of it, in order.
    starts: Vec<&'l Transition>,
    ends: Vec<&'l Transition>,
}

fn replay<'l>(log: &'l [Transition], at: &dyn Fn(usize, &str) -> String) -> Result<Replayed<'l>, Problem> {
    let mut status: Option<TaskStatus> = None;
    let mut attempt = 0;
    let mut last: Option<Timestamp> = None;
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    for (k, t) in log.iter().enumerate() {
        if t.from != status {
            return Err(problem(
                at(k, ".from"),
                format!("is {} but the task was {}", shown(t.from), shown(status)),
            ));
        }
        TaskStatus::check(t.from, t.to).map_err(|e| problem(at(k, ""), e.to_string()))?;
        if let Some(last) = last
            && t.at < last
        {
            return Err(problem(
                at(k, ".at"),
                format!("time goes back: {} is before the change at {last}", t.at),
            ));
        }
        if t.to == TaskStatus::Running {
            if t.attempt <= attempt {
                return Err(problem(
                    at(k, ".attempt"),
                    format!("a start must move the attempt forward, but {} follows {attempt}", t.attempt),
                ));
            }
            attempt = t.attempt;
            starts.push(t);
        } else if t.attempt != attempt {
            return Err(problem(
                at(k, ".attempt"),
                format!("is {} but the task's current attempt is {attempt}", t.attempt),
            ));
        }
        if t.from == Some(TaskStatus::Running) {
            ends.push(t);
        }
        status = Some(t.to);
        last = Some(t.at);
    }
    let status =
        status.ok_or_else(|| problem(at(0, ""), "missing; a task's log starts with (new) -> SUBMITTED"))?;
    Ok(Replayed { status, attempt, starts, ends })
}

fn check_task(run: &FinishedRun, i: usize, task: &TaskRecord) -> Result<(), Problem> {
    let field = |what: &str| format!("tasks[{i}].{what}");
    if !task.status.is_terminal() {
        return Err(problem(
            field("status"),
            format!(
                "task {} ({}) is {}; a finished run's tasks are all finished (COMPLETED, FAILED, CANCELED, \
                 SKIPPED or ABANDONED)",
                task.id, task.name, task.status
            ),
        ));
    }
    if task.lease.is_some() {
        return Err(problem(field("lease"), "a finished task holds no lease"));
    }
    if task.max_attempts == 0 {
        return Err(problem(field("max_attempts"), "0; a task allows at least 1 attempt"));
    }
    let log = log(&run.detail, task);
    let id = task.id;
    let replayed = replay(log, &|k, what| format!("transitions[{id}][{k}]{what}"))?;
    if replayed.status != task.status {
        return Err(problem(
            field("status"),
            format!("is {} but the task's last transition goes to {}", task.status, replayed.status),
        ));
    }
    // Present: the log was replayed.
    let (first, last) = (&log[0], &log[log.len() - 1]);
    if task.submitted_at != first.at {
        return Err(problem(
            field("submitted_at"),
            format!("is {} but the task was created at {}", task.submitted_at, first.at),
        ));
    }
    if task.finished_at != Some(last.at) {
        return Err(problem(
            field("finished_at"),
            format!("is {} but the task's log ends at {}", show_time(task.finished_at), last.at),
        ));
    }
    if task.attempt != replayed.attempt {
        return Err(problem(
            field("attempt"),
            format!("is {} but the task's log has {} as its last attempt", task.attempt, replayed.attempt),
        ));
    }

    let attempts = attempts(&run.detail, task);
    if attempts.len() != replayed.starts.len() {
        return Err(problem(
            format!("attempts[{id}]"),
            format!("{} attempts, but the task's log starts {}", attempts.len(), replayed.starts.len()),
        ));
    }
    for (j, ((a, start), end)) in attempts.iter().zip(&replayed.starts).zip(&replayed.ends).enumerate() {
        let at = |what: &str| format!("attempts[{id}][{j}].{what}");
        if a.task != id {
            return Err(problem(at("task"), format!("is {}, not the task it is listed under", a.task)));
        }
        if a.attempt != start.attempt {
            return Err(problem(
                at("attempt"),
                format!("is {} but the task's log starts attempt {} here", a.attempt, start.attempt),
            ));
        }
        if a.ended_at != Some(end.at) {
            return Err(problem(
                at("ended_at"),
                format!("is {} but the task's log ends this attempt at {}", show_time(a.ended_at), end.at),
            ));
        }
        if a.started_at > end.at {
            return Err(problem(at("started_at"), format!("{} is after the attempt's end", a.started_at)));
        }
        let outcome = if end.to == TaskStatus::Pending { TaskStatus::Failed } else { end.to };
        if a.outcome != Some(outcome) {
            return Err(problem(
                at("outcome"),
                format!(
                    "is {} but the task's log ends this attempt {} (a retried attempt FAILED)",
                    a.outcome.map_or("none", TaskStatus::as_str),
                    end.to
                ),
            ));
        }
    }
    let current = attempts.last();
    if task.started_at != current.map(|a| a.started_at) {
        return Err(problem(
            field("started_at"),
            format!(
                "is {} but its last attempt started at {}",
                show_time(task.started_at),
                show_time(current.map(|a| a.started_at))
            ),
        ));
    }
    if task.exit_code != current.and_then(|a| a.exit_code) {
        return Err(problem(field("exit_code"), "differs from the exit code of the task's last attempt"));
    }
    if task.error != current.and_then(|a| a.error.clone()) {
        return Err(problem(field("error"), "differs from the error of the task's last attempt"));
    }
    if current.is_none() && !task.outputs.is_empty() {
        return Err(problem(field("outputs"), "a task that never started has no outputs"));
    }

    let mut previous: Option<(u32, Timestamp)> = None;
    for (j, s) in samples(run, task).iter().enumerate() {
        let at = |what: &str| format!("progress[{id}][{j}].{what}");
        if s.attempt == 0 || s.attempt > task.attempt {
            return Err(problem(
                at("attempt"),
                format!("{} is not one of the task's attempts (1 to {})", s.attempt, task.attempt),
            ));
        }
        if previous.is_some_and(|p| p >= (s.attempt, s.at)) {
            return Err(problem(at("at"), "samples come oldest first, one per attempt and time"));
        }
        if !(0.0..=100.0).contains(&s.percent) {
            return Err(problem(at("percent"), format!("{} is not between 0 and 100", s.percent)));
        }
        previous = Some((s.attempt, s.at));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use cairn_core::record::Actor;

    use super::*;

    fn t(attempt: u32, from: Option<TaskStatus>, to: TaskStatus, ms: i64) -> Transition {
        Transition {
            attempt,
            from,
            to,
            at: Timestamp::from_micros(ms * 1000),
            reason: String::new(),
            actor: Actor::Scheduler,
        }
    }

    #[test]
    fn phases_sum_each_status_over_retries() {
        use TaskStatus::*;
        let log = [
            t(0, None, Submitted, 0),
            t(0, Some(Submitted), Blocked, 1),
            t(0, Some(Blocked), Pending, 11),
            t(1, Some(Pending), Running, 31),
            t(1, Some(Running), Pending, 131),
            t(2, Some(Pending), Running, 231),
            t(2, Some(Running), Failed, 241),
        ];
        assert_eq!(Phases::of(&log), Phases { blocked_us: 10_000, pending_us: 120_000, running_us: 110_000 });
        assert_eq!(Phases::of(&[]), Phases::default());
    }

    #[test]
    fn a_log_replays_its_attempts_or_names_the_bad_transition() {
        use TaskStatus::*;
        let at = |k: usize, what: &str| format!("[{k}]{what}");
        let log = [
            t(0, None, Submitted, 0),
            t(0, Some(Submitted), Pending, 1),
            t(1, Some(Pending), Running, 2),
            t(1, Some(Running), Pending, 3),
            t(2, Some(Pending), Running, 4),
            t(2, Some(Running), Completed, 5),
        ];
        let r = replay(&log, &at).unwrap();
        assert_eq!((r.status, r.attempt, r.starts.len(), r.ends.len()), (Completed, 2, 2, 2));

        let mut bad = log.to_vec();
        bad[4].attempt = 1;
        assert_eq!(replay(&bad, &at).err().unwrap().0, "[4].attempt");
        let mut bad = log.to_vec();
        bad[3].at = Timestamp::from_micros(1000);
        assert_eq!(replay(&bad, &at).err().unwrap().0, "[3].at");
        let mut bad = log.to_vec();
        bad[5].from = Some(Pending);
        assert_eq!(replay(&bad, &at).err().unwrap().0, "[5].from");
        let skipped = [t(0, None, Submitted, 0), t(0, Some(Submitted), Completed, 1)];
        let (field, reason) = replay(&skipped, &at).err().unwrap();
        assert_eq!(field, "[1]");
        assert!(reason.contains("SUBMITTED -> COMPLETED"), "{reason}");
        assert_eq!(replay(&[], &at).err().unwrap().0, "[0]");
    }
}
