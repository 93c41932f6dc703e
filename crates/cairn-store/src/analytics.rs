//! Phase analytics and expected durations, from the finished tasks and runs
//! of history (see [`crate::Store::phase_stats`] and
//! [`crate::Store::expected_durations`]).
//!
//! Each task carries the time it has spent BLOCKED, PENDING and RUNNING
//! (`blocked_us`, `pending_us`, `running_us`, schema version 7), added to by
//! the very statement that applies each of its transitions. A finished
//! task's entry in the index `tasks_done_step` — (workflow, step, status,
//! finish time, task number) with the three phases alongside — is written
//! once, when it finishes, and holds everything these reads need.
//!
//! Architecture invariant: the cost of a read is bounded by the number of
//! distinct (workflow, step) pairs and a sample cap, never by the size of
//! history. Workflows and steps are found by a skip along the index (one
//! seek per distinct value, a "loose index scan"); each step is read as one
//! ordered index range per terminal status, newest first, at most the cap
//! of each; nothing reads a table row but the few slowest tasks' ids.
//!
//! The figures themselves are computed here, once for both backends, from
//! the rows each backend reads: nearest-rank percentiles
//! ([`cairn_core::expected`]) over exactly the tasks read.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_core::expected::{Expected, Spread};
use cairn_core::{RunId, TaskId, TaskStatus, Timestamp};

use crate::error::StoreError;
use crate::history::TimeRange;

/// Newest tasks read per step when a query names no cap.
pub const DEFAULT_SAMPLE_CAP: usize = 10_000;
/// The largest sample cap a query may ask for.
pub const MAX_SAMPLE_CAP: usize = 100_000;
/// Slowest tasks listed when a query names no number.
pub const DEFAULT_SLOWEST: usize = 10;
/// The most slowest tasks a query may ask for.
pub const MAX_SLOWEST: usize = 100;
/// How many of the latest completed tasks (runs) an expected duration is
/// drawn from: recent enough to follow a step that got slower, many enough
/// for a p95 that means something.
pub const EXPECTED_SAMPLES: usize = 100;

/// Which finished tasks [`crate::Store::phase_stats`] looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhaseQuery {
    /// Tasks that finished in `[from, to)`; an open end is unbounded.
    pub finished: TimeRange,
    /// Only these workflows; empty = every workflow with finished tasks.
    pub workflows: Vec<String>,
    /// How many of the slowest tasks to list (0 = [`DEFAULT_SLOWEST`]; at
    /// most [`MAX_SLOWEST`]).
    pub slowest: usize,
    /// The newest tasks read per step at most (0 = [`DEFAULT_SAMPLE_CAP`];
    /// at most [`MAX_SAMPLE_CAP`]).
    pub sample_cap: usize,
}

/// What [`crate::Store::phase_stats`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PhaseStats {
    /// One entry per (workflow, step) with tasks finished in the window, by
    /// workflow then step.
    pub steps: Vec<StepPhases>,
    /// The tasks that ran longest (execution summed over attempts), longest
    /// first, among the tasks read.
    pub slowest: Vec<SlowTask>,
    /// Per workflow with a failed task in the window, the step that failed
    /// most often, by workflow.
    pub most_failing: Vec<FailingStep>,
}

/// The finished tasks of one step in the window.
#[derive(Clone, Debug, PartialEq)]
pub struct StepPhases {
    pub workflow: String,
    pub step: String,
    /// Tasks read, by how they ended.
    pub counts: BTreeMap<TaskStatus, u64>,
    /// Over the tasks that ran to an end of their own (COMPLETED or FAILED):
    /// a task skipped, abandoned or canceled tells little of how long the
    /// step takes. `None` when no such task was read.
    pub blocked: Option<Spread>,
    /// Queue wait, including the back-off before retries.
    pub pending: Option<Spread>,
    /// Time RUNNING, over all attempts.
    pub execution: Option<Spread>,
    /// Set when the sample cap cut the window short: only the tasks that
    /// finished at or after this time were read.
    pub sampled_from: Option<Timestamp>,
}

impl StepPhases {
    /// Tasks read.
    pub fn tasks(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Tasks that failed for good.
    pub fn failed(&self) -> u64 {
        self.counts.get(&TaskStatus::Failed).copied().unwrap_or(0)
    }
}

/// One of the slowest tasks of the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlowTask {
    pub task: TaskId,
    pub run: RunId,
    pub workflow: String,
    pub step: String,
    pub status: TaskStatus,
    pub finished_at: Timestamp,
    pub blocked: Duration,
    pub pending: Duration,
    pub execution: Duration,
}

/// The step of a workflow that failed most often in the window (ties go to
/// the first step by name).
#[derive(Clone, Debug, PartialEq)]
pub struct FailingStep {
    pub workflow: String,
    pub step: String,
    /// Its tasks that failed for good.
    pub failed: u64,
    /// Its part of all the workflow's failed tasks (0 to 1).
    pub share: f64,
    /// The part of its own finished tasks that failed (0 to 1).
    pub rate: f64,
}

/// How long a workflow's runs and steps usually take, from the latest
/// [`EXPECTED_SAMPLES`] completed ones (see [`crate::Store::expected_durations`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedDurations {
    pub workflow: String,
    /// Start to finish of its completed runs; `None` when none completed.
    pub run: Option<Expected>,
    /// By step name, for every step with a completed task.
    pub steps: BTreeMap<String, StepExpected>,
}

/// How long one step usually takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepExpected {
    /// Time RUNNING, over all attempts.
    pub execution: Expected,
    /// Submission to finish.
    pub total: Expected,
}

/// A [`PhaseQuery`] checked and with its defaults resolved.
#[derive(Clone, Debug)]
pub(crate) struct PhaseRead {
    /// `[from, to)` in µs, open ends as the extremes.
    pub(crate) from: i64,
    pub(crate) to: i64,
    /// `None`: every workflow with finished tasks.
    pub(crate) workflows: Option<Vec<String>>,
    pub(crate) slowest: usize,
    pub(crate) cap: usize,
}

impl PhaseRead {
    pub(crate) fn new(q: &PhaseQuery) -> Result<PhaseRead, StoreError> {
        let from = q.finished.from.map_or(i64::MIN, Timestamp::as_micros);
        let to = q.finished.to.map_or(i64::MAX, Timestamp::as_micros);
        if let (Some(a), Some(b)) = (q.finished.from, q.finished.to)
            && b < a
        {
            return Err(StoreError::InvalidQuery(format!(
                "finished window: its end ({b}) is before its start ({a})"
            )));
        }
        let slowest = match q.slowest {
            0 => DEFAULT_SLOWEST,
            n if n <= MAX_SLOWEST => n,
            n => {
                return Err(StoreError::InvalidQuery(format!(
                    "slowest: at most {MAX_SLOWEST} tasks may be listed, not {n}"
                )));
            }
        };
        let cap = match q.sample_cap {
            0 => DEFAULT_SAMPLE_CAP,
            n if n <= MAX_SAMPLE_CAP => n,
            n => {
                return Err(StoreError::InvalidQuery(format!(
                    "sample_cap: at most {MAX_SAMPLE_CAP} tasks per step may be read, not {n}"
                )));
            }
        };
        let mut workflows: Vec<String> = q.workflows.iter().map(|w| w.trim().to_owned()).collect();
        if workflows.iter().any(String::is_empty) {
            return Err(StoreError::InvalidQuery("workflows: a workflow name is empty".to_owned()));
        }
        workflows.sort();
        workflows.dedup();
        Ok(PhaseRead { from, to, workflows: (!workflows.is_empty()).then_some(workflows), slowest, cap })
    }

    /// Rows each per-status range of a step reads: one past the cap, so a
    /// status with more than the cap in the window shows that it was cut.
    pub(crate) fn per_status_limit(&self) -> i64 {
        i64::try_from(self.cap + 1).unwrap_or(i64::MAX)
    }
}

/// The statuses a finished task can have: one index range each.
pub(crate) fn terminal_statuses() -> impl Iterator<Item = TaskStatus> {
    TaskStatus::ALL.into_iter().filter(|s| s.is_terminal())
}

/// A workflow name for [`crate::Store::expected_durations`], checked.
pub(crate) fn expected_workflow(workflow: &str) -> Result<String, StoreError> {
    let workflow = workflow.trim();
    if workflow.is_empty() {
        return Err(StoreError::InvalidQuery("workflow: a workflow name is needed".to_owned()));
    }
    Ok(workflow.to_owned())
}

/// One finished task as a step's walk reads it from `tasks_done_step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PhaseRow {
    pub(crate) status: u8,
    pub(crate) finished_at: i64,
    pub(crate) task_no: i64,
    pub(crate) blocked_us: i64,
    pub(crate) pending_us: i64,
    pub(crate) running_us: i64,
}

impl PhaseRow {
    /// Newest first, ties by task number (the order of the index walk).
    fn newest_first(a: &PhaseRow, b: &PhaseRow) -> std::cmp::Ordering {
        (b.finished_at, b.task_no).cmp(&(a.finished_at, a.task_no))
    }

    /// Longest execution first, then newest.
    fn slowest_first(a: &PhaseRow, b: &PhaseRow) -> std::cmp::Ordering {
        b.running_us.cmp(&a.running_us).then_with(|| PhaseRow::newest_first(a, b))
    }
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

fn status_of(code: u8) -> Result<TaskStatus, StoreError> {
    TaskStatus::from_code(code).ok_or_else(|| StoreError::Corrupt(format!("task status code {code}")))
}

/// A slow task before its ids are read.
#[derive(Clone, Debug)]
struct Candidate {
    row: PhaseRow,
    workflow: String,
    step: String,
}

/// Gathers [`PhaseStats`] one step at a time, keeping only the slowest
/// tasks seen so far, so memory stays within one step's sample.
#[derive(Debug)]
pub(crate) struct PhaseStatsBuilder {
    steps: Vec<StepPhases>,
    slow: Vec<Candidate>,
    slowest: usize,
    cap: usize,
}

impl PhaseStatsBuilder {
    pub(crate) fn new(q: &PhaseRead) -> PhaseStatsBuilder {
        PhaseStatsBuilder { steps: Vec::new(), slow: Vec::new(), slowest: q.slowest, cap: q.cap }
    }

    /// Adds one step from the rows its per-status ranges read (each at most
    /// [`PhaseRead::per_status_limit`], any order).
    pub(crate) fn add_step(
        &mut self,
        workflow: &str,
        step: &str,
        mut rows: Vec<PhaseRow>,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        rows.sort_unstable_by(PhaseRow::newest_first);
        let sampled_from = if rows.len() > self.cap {
            rows.truncate(self.cap);
            rows.last().map(|r| Timestamp::from_micros(r.finished_at))
        } else {
            None
        };
        let mut counts = BTreeMap::new();
        let (mut blocked, mut pending, mut execution) = (Vec::new(), Vec::new(), Vec::new());
        for r in &rows {
            let status = status_of(r.status)?;
            *counts.entry(status).or_insert(0) += 1;
            if matches!(status, TaskStatus::Completed | TaskStatus::Failed) {
                blocked.push(micros(r.blocked_us));
                pending.push(micros(r.pending_us));
                execution.push(micros(r.running_us));
            }
        }
        self.steps.push(StepPhases {
            workflow: workflow.to_owned(),
            step: step.to_owned(),
            counts,
            blocked: Spread::of(&mut blocked),
            pending: Spread::of(&mut pending),
            execution: Spread::of(&mut execution),
            sampled_from,
        });
        let keep = self.slowest.min(rows.len());
        if keep > 0 {
            rows.select_nth_unstable_by(keep - 1, PhaseRow::slowest_first);
            self.slow.extend(rows[..keep].iter().map(|row| Candidate {
                row: *row,
                workflow: workflow.to_owned(),
                step: step.to_owned(),
            }));
            self.slow.sort_by(|a, b| PhaseRow::slowest_first(&a.row, &b.row));
            self.slow.truncate(self.slowest);
        }
        Ok(())
    }

    /// The task numbers whose ids [`PhaseStatsBuilder::finish`] needs.
    pub(crate) fn slow_task_nos(&self) -> Vec<i64> {
        self.slow.iter().map(|c| c.row.task_no).collect()
    }

    /// The statistics, given the (task id, run id) of each slow task number.
    pub(crate) fn finish(mut self, ids: &BTreeMap<i64, (TaskId, RunId)>) -> Result<PhaseStats, StoreError> {
        // In Rust's order of names, not the database's collation, so both
        // stores answer alike.
        self.steps.sort_by(|a, b| (&a.workflow, &a.step).cmp(&(&b.workflow, &b.step)));
        let slowest = self
            .slow
            .into_iter()
            .map(|c| {
                let (task, run) = *ids.get(&c.row.task_no).ok_or_else(|| {
                    StoreError::Corrupt(format!("task number {} was read but has no id", c.row.task_no))
                })?;
                Ok(SlowTask {
                    task,
                    run,
                    workflow: c.workflow,
                    step: c.step,
                    status: status_of(c.row.status)?,
                    finished_at: Timestamp::from_micros(c.row.finished_at),
                    blocked: micros(c.row.blocked_us),
                    pending: micros(c.row.pending_us),
                    execution: micros(c.row.running_us),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let most_failing = most_failing(&self.steps);
        Ok(PhaseStats { steps: self.steps, slowest, most_failing })
    }
}

/// Per workflow, the step with the most failed tasks (the first by name on
/// a tie), from steps ordered by workflow then step.
fn most_failing(steps: &[StepPhases]) -> Vec<FailingStep> {
    let mut out = Vec::new();
    for group in steps.chunk_by(|a, b| a.workflow == b.workflow) {
        let total: u64 = group.iter().map(StepPhases::failed).sum();
        // `max_by_key` keeps the last of equals; reversed, the first by name wins.
        let Some(worst) = group.iter().rev().max_by_key(|s| s.failed()) else { continue };
        if total == 0 {
            continue;
        }
        out.push(FailingStep {
            workflow: worst.workflow.clone(),
            step: worst.step.clone(),
            failed: worst.failed(),
            share: worst.failed() as f64 / total as f64,
            rate: worst.failed() as f64 / worst.tasks().max(1) as f64,
        });
    }
    out
}

/// [`ExpectedDurations`] from what a backend read: per step, the execution
/// and total (µs) of its latest completed tasks; the durations (µs) of the
/// workflow's latest completed runs.
pub(crate) fn expected_from(
    workflow: String,
    steps: impl IntoIterator<Item = (String, i64, i64)>,
    runs: impl IntoIterator<Item = i64>,
) -> ExpectedDurations {
    let mut samples: BTreeMap<String, (Vec<Duration>, Vec<Duration>)> = BTreeMap::new();
    for (step, running_us, total_us) in steps {
        let (execution, total) = samples.entry(step).or_default();
        execution.push(micros(running_us));
        total.push(micros(total_us));
    }
    let steps = samples
        .into_iter()
        .filter_map(|(step, (mut execution, mut total))| {
            Some((
                step,
                StepExpected { execution: Expected::of(&mut execution)?, total: Expected::of(&mut total)? },
            ))
        })
        .collect();
    let mut runs: Vec<Duration> = runs.into_iter().map(micros).collect();
    ExpectedDurations { workflow, run: Expected::of(&mut runs), steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: TaskStatus, finished_at: i64, task_no: i64, running_us: i64) -> PhaseRow {
        PhaseRow { status: status.code(), finished_at, task_no, blocked_us: 1, pending_us: 2, running_us }
    }

    fn read(cap: usize, slowest: usize) -> PhaseRead {
        PhaseRead::new(&PhaseQuery { sample_cap: cap, slowest, ..Default::default() }).unwrap()
    }

    #[test]
    fn queries_are_checked_and_defaulted() {
        let q = PhaseRead::new(&PhaseQuery::default()).unwrap();
        assert_eq!(
            (q.cap, q.slowest, q.from, q.to),
            (DEFAULT_SAMPLE_CAP, DEFAULT_SLOWEST, i64::MIN, i64::MAX)
        );
        assert_eq!(q.workflows, None);
        let err = |q: PhaseQuery| PhaseRead::new(&q).unwrap_err().to_string();
        assert!(
            err(PhaseQuery { sample_cap: MAX_SAMPLE_CAP + 1, ..Default::default() }).contains("sample_cap")
        );
        assert!(err(PhaseQuery { slowest: MAX_SLOWEST + 1, ..Default::default() }).contains("slowest"));
        let backwards =
            TimeRange { from: Some(Timestamp::from_micros(10)), to: Some(Timestamp::from_micros(5)) };
        assert!(err(PhaseQuery { finished: backwards, ..Default::default() }).contains("finished window"));
        assert!(err(PhaseQuery { workflows: vec![" ".into()], ..Default::default() }).contains("workflows"));
        let q = PhaseQuery { workflows: vec!["b".into(), "a".into(), "b".into()], ..Default::default() };
        assert_eq!(PhaseRead::new(&q).unwrap().workflows, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert!(expected_workflow("  ").unwrap_err().to_string().contains("workflow"));
    }

    #[test]
    fn a_step_over_the_cap_keeps_its_newest_and_says_from_when() {
        let mut b = PhaseStatsBuilder::new(&read(3, 2));
        let rows = vec![
            row(TaskStatus::Completed, 10, 1, 100),
            row(TaskStatus::Failed, 40, 4, 400),
            row(TaskStatus::Completed, 30, 3, 300),
            row(TaskStatus::Skipped, 20, 2, 0),
        ];
        b.add_step("etl", "load", rows).unwrap();
        assert_eq!(b.slow_task_nos(), vec![4, 3]);
        let ids: BTreeMap<i64, (TaskId, RunId)> = [3, 4]
            .into_iter()
            .map(|n| (n, (TaskId::new(Timestamp::from_micros(n)), RunId::new(Timestamp::from_micros(n)))))
            .collect();
        let stats = b.finish(&ids).unwrap();
        let s = &stats.steps[0];
        assert_eq!(s.sampled_from, Some(Timestamp::from_micros(20)));
        assert_eq!(s.tasks(), 3);
        assert_eq!(s.counts.get(&TaskStatus::Skipped), Some(&1));
        assert_eq!(s.execution.unwrap().max, Duration::from_micros(400));
        assert_eq!(s.execution.unwrap().p50, Duration::from_micros(300));
        assert_eq!(stats.slowest.iter().map(|t| t.execution.as_micros()).collect::<Vec<_>>(), [400, 300]);
        assert_eq!(stats.most_failing[0].step, "load");
        assert_eq!(stats.most_failing[0].rate, 1.0 / 3.0);
    }

    #[test]
    fn the_most_failing_step_of_each_workflow_ties_to_the_first_by_name() {
        let mut b = PhaseStatsBuilder::new(&read(100, 1));
        for (wf, step, failed) in [("a", "x", 2), ("a", "y", 2), ("a", "z", 1), ("b", "only", 0)] {
            let rows = (0..failed).map(|i| row(TaskStatus::Failed, i, i, 1)).chain([row(
                TaskStatus::Completed,
                99,
                99,
                1,
            )]);
            b.add_step(wf, step, rows.collect()).unwrap();
        }
        let worst = most_failing(&b.steps);
        assert_eq!(worst.len(), 1, "a workflow without failures has no failing step");
        assert_eq!((worst[0].workflow.as_str(), worst[0].step.as_str(), worst[0].failed), ("a", "x", 2));
        assert_eq!(worst[0].share, 0.4);
    }

    #[test]
    fn expected_durations_per_step_and_run() {
        let e = expected_from(
            "etl".into(),
            [("a".into(), 5, 9), ("a".into(), 1, 2), ("b".into(), 7, 7)],
            [30, 10, 20],
        );
        assert_eq!(e.steps["a"].execution.samples, 2);
        assert_eq!(e.steps["a"].execution.p95, Duration::from_micros(5));
        assert_eq!(e.steps["a"].total.p50, Duration::from_micros(2));
        assert_eq!(e.run.unwrap().p50, Duration::from_micros(20));
        assert_eq!(expected_from("etl".into(), [], []).run, None);
    }
}
