//! Retention in the store: finding the runs a rule expires, deleting
//! finished runs with everything that hangs off them, and on PostgreSQL the
//! partitions of the append-only logs (see [`crate::Store::expired_runs`],
//! [`crate::Store::delete_runs`], [`crate::Store::maintain_partitions`]).
//!
//! Finding is by index only: the workflows present by a loose index scan of
//! `runs_workflow` (one seek per name), a days rule by a range of
//! `runs_workflow_finished` per finished status, a runs rule by the id of
//! the newest run beyond the kept ones and a walk of `runs_workflow` up to it.
//!
//! Architecture invariant: running work is never deleted. The delete itself
//! checks, in its `WHERE`, that the run and every one of its tasks are in a
//! terminal status, so an id of live work handed to
//! [`crate::Store::delete_runs`] deletes nothing, whoever asks. A deletion
//! subtracts each run and task from the status counts (`crate::counts`) in
//! its own transaction, from the rows its `DELETE … RETURNING` gave back.
//!
//! PostgreSQL keeps `task_transitions`, `attempts` and `progress_samples`
//! partitioned by ranges of `task_no` (handed out in creation order, so a
//! partition holds the logs of one span of time). Deleting a run deletes
//! its run and task rows at once but leaves its log rows where they are,
//! unreachable (every read of a log goes through its task); the leader
//! drops a whole partition once no task of its range is left. SQLite has no
//! partitions and deletes the log rows with their run.

use std::time::Duration;

use cairn_core::{RunId, RunStatus, Timestamp};

/// What [`crate::Store::delete_runs`] deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    /// The runs deleted, in the order asked; ids of unknown runs or of live
    /// work are absent.
    pub runs: Vec<RunId>,
    /// Their tasks.
    pub tasks: u64,
}

/// How PostgreSQL sizes the partitions of the logs: each new one should
/// hold about `span` of tasks at the rate of the last `span`, within
/// `[min_width, max_width]` task numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionPolicy {
    /// The time one partition should cover.
    pub span: Duration,
    /// The fewest task numbers of a partition: a quiet store does not make
    /// a partition a day of a handful of tasks.
    pub min_width: i64,
    /// The most task numbers of a partition.
    pub max_width: i64,
}

impl Default for PartitionPolicy {
    fn default() -> Self {
        PartitionPolicy { span: cairn_core::retention::DAY, min_width: 100_000, max_width: 100_000_000 }
    }
}

impl PartitionPolicy {
    /// The width of the next partition, when `recent` tasks were created in
    /// the last `span`.
    pub(crate) fn width(&self, recent: i64) -> i64 {
        recent.clamp(self.min_width.max(1), self.max_width.max(self.min_width.max(1)))
    }
}

/// One range of task numbers whose log rows (transitions, attempts,
/// progress samples) live in partitions of their own (PostgreSQL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPartition {
    /// The first task number of the range.
    pub lo: i64,
    /// The first task number past it.
    pub hi: i64,
    /// When it was made (the leader's clock; the migration's for the first).
    pub created_at: Timestamp,
    /// The submission times of the first and the last task still stored in
    /// the range, if any: the span of time it holds.
    pub first_submitted: Option<Timestamp>,
    pub last_submitted: Option<Timestamp>,
}

/// What one [`crate::Store::maintain_partitions`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionChanges {
    /// Ranges made (ahead of the newest task, or to take in rows that went
    /// to the default partition).
    pub created: Vec<LogPartition>,
    /// Ranges dropped: no task of theirs was left.
    pub dropped: Vec<LogPartition>,
    /// Set when a drop was put off because the logs stayed busy (the drop
    /// must lock them for a moment): tried again at the next call.
    pub deferred: bool,
}

/// Finished run statuses, as stored.
pub(crate) const FINISHED_RUNS: [u8; 4] = [
    RunStatus::Completed.code(),
    RunStatus::PartiallySucceeded.code(),
    RunStatus::Failed.code(),
    RunStatus::Canceled.code(),
];

/// Checks, once, that the SQL's literal status lists match the codes.
#[cfg(test)]
mod tests {
    use cairn_core::TaskStatus;

    use super::*;

    #[test]
    fn the_sql_names_the_terminal_statuses() {
        let runs: Vec<u8> = RunStatus::ALL.iter().filter(|s| s.is_terminal()).map(|s| s.code()).collect();
        assert_eq!(runs, FINISHED_RUNS);
        let tasks: Vec<u8> = TaskStatus::ALL.iter().filter(|s| s.is_terminal()).map(|s| s.code()).collect();
        assert_eq!(tasks, [4, 5, 6, 7, 8]);
        for sql in [
            include_str!("sqlite/sql/delete_run.sql"),
            include_str!("postgres/sql/delete_runs.sql"),
            include_str!("sqlite/sql/expired_beyond.sql"),
            include_str!("postgres/sql/expired_beyond.sql"),
        ] {
            assert!(sql.contains("IN (2, 3, 4, 5)"), "finished runs: {sql}");
        }
        for sql in [include_str!("sqlite/sql/delete_run.sql"), include_str!("postgres/sql/delete_runs.sql")] {
            assert!(sql.contains("NOT IN (4, 5, 6, 7, 8)"), "live tasks: {sql}");
        }
    }

    #[test]
    fn partitions_follow_the_rate_within_bounds() {
        let p = PartitionPolicy::default();
        assert_eq!(p.width(0), 100_000);
        assert_eq!(p.width(2_500_000), 2_500_000);
        assert_eq!(p.width(i64::MAX), 100_000_000);
        let odd = PartitionPolicy { span: Duration::from_secs(1), min_width: 0, max_width: 0 };
        assert_eq!(odd.width(50), 1, "never an empty range");
    }
}
