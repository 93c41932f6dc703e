//! History at scale: searching runs and tasks with any set of filters and
//! keyset pagination, and the status counts and trends that come from
//! aggregates maintained in the same transaction as the changes they count.
//!
//! Every search is served from an index: the store picks the index of the
//! most selective filter it has (a run id prefix, labels, workflows and
//! statuses, the trigger, the time a run finished, else the id itself —
//! ids sort by submission time, so a submission window is an id range), a
//! set of statuses or workflows is walked as one ordered index range per
//! value, merged (never one sort of every match), and the other filters are
//! checked on the rows the walk reaches. Finished tasks, the bulk of
//! history, are indexed by workflow and queue; the live ones are reached by
//! status. A filter that matches little but has no index in the page's
//! order (a rare worker, a few runs of a run id prefix, a rare label or a
//! long id prefix under the finished sort) is found by index and its
//! matches — a bounded few — sorted. `SqliteStore::explain_search_runs` and
//! its siblings show the plan of any search.
//!
//! Pages are keyset pages: a page of `limit` rows and, when more follow, a
//! [`Cursor`] naming the last row's sort key and id. Rows that tie on the
//! finish time are ordered by id, so a walk through the pages sees every
//! match exactly once (rows written meanwhile may or may not appear).
//!
//! Counts never read runs or tasks: they sum per-minute and per-hour rows
//! of `run_counts_*`/`task_counts_*` (keyed by the minute or hour the run or
//! task was *submitted*, its workflow and its status). Each batch adds its
//! net changes to them in its own transaction, so they always equal a count
//! of the stored records, retention included.

use std::collections::BTreeMap;

use cairn_core::{RunStatus, TaskStatus, Timestamp};

use crate::model::{RunRecord, TaskRecord};

/// `[from, to)`; an open end is unbounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TimeRange {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

/// What a page of runs (or of tasks) is sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RunSort {
    /// Submission time: the id's order (run and task ids are ULIDs made at
    /// submission).
    #[default]
    Submitted,
    /// Finish time, then id; only finished runs (tasks).
    Finished,
}

/// Which runs. Empty lists and open ranges do not filter. A run matches
/// when it has one of `statuses`, one of `workflows`, one of `triggers`,
/// every one of `labels`, and lies in both ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RunFilter {
    pub statuses: Vec<RunStatus>,
    pub workflows: Vec<String>,
    /// `manual`, `schedule`, `api`, `retry`.
    pub triggers: Vec<String>,
    /// `key` (the key with any value, or alone) or `key=value` (exactly),
    /// as the workflow's `labels` give them ([`NewRun::labels`](crate::NewRun::labels)).
    pub labels: Vec<String>,
    /// Matched on the time in the run's id, in whole milliseconds (`from`
    /// rounded down, `to` rounded up): the id is made at submission.
    pub submitted: TimeRange,
    /// Only finished runs match a finish-time range.
    pub finished: TimeRange,
    /// The start of a run id (case-insensitive); one no id can start with
    /// matches nothing.
    pub id_prefix: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSearch {
    pub filter: RunFilter,
    pub sort: RunSort,
    pub order: Order,
    /// Where the previous page of the same search ended.
    pub cursor: Option<Cursor>,
    /// At most this many runs (1..=1000; 0 means 100; more is
    /// `StoreError::InvalidQuery`). It may change from page to page.
    pub limit: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunPage {
    pub runs: Vec<RunRecord>,
    /// Present exactly when more runs follow; `None` on the last page, a
    /// full one too.
    pub next: Option<Cursor>,
}

/// Which tasks. As [`RunFilter`]; `workers` are the workers that ran any
/// attempt of the task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TaskFilter {
    pub statuses: Vec<TaskStatus>,
    /// The workflows of the tasks' runs.
    pub workflows: Vec<String>,
    /// Step names.
    pub steps: Vec<String>,
    /// Only remote steps have a queue.
    pub queues: Vec<String>,
    pub workers: Vec<String>,
    /// Matched on the time in the task's id, as [`RunFilter::submitted`].
    pub submitted: TimeRange,
    pub finished: TimeRange,
    /// The start of the id of the task's run (case-insensitive).
    pub run_id_prefix: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskSearch {
    pub filter: TaskFilter,
    pub sort: RunSort,
    pub order: Order,
    pub cursor: Option<Cursor>,
    pub limit: usize,
}

/// A task as a search returns it, with its run's workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRow {
    pub workflow: String,
    pub task: TaskRecord,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskPage {
    pub tasks: Vec<TaskRow>,
    pub next: Option<Cursor>,
}

/// An opaque keyset position: the sort key and id of the last row of a
/// page, bound to the search it came from. URL-safe text. A cursor given to
/// another search (other filters, sort or order; the same filters written
/// in another order are the same search) or a malformed one is refused
/// with `StoreError::InvalidQuery`. Cursors stay valid across restarts and
/// servers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cursor(pub String);

/// Counts over a window of submission times, by status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountQuery {
    /// Resolved to whole minutes (`from` rounded down, `to` rounded up).
    pub submitted: TimeRange,
    pub workflows: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

/// Counts by status of the runs (or tasks) submitted in one bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrendPoint<S> {
    /// The bucket's start (UTC).
    pub at: Timestamp,
    pub counts: BTreeMap<S, u64>,
}

/// Counts by status for each workflow, per bucket: the failure rate of a
/// workflow over time is `FAILED / (every terminal status)` of each point.
pub type WorkflowTrends = BTreeMap<String, Vec<TrendPoint<RunStatus>>>;
