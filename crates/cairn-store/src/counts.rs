//! The status counts behind [`Store::run_counts`](crate::Store::run_counts),
//! [`Store::task_counts`](crate::Store::task_counts) and the trends (see
//! [`crate::history`]), as both backends share them: the net changes a
//! write transaction gathers while its changes apply, how a window of
//! submission times becomes reads of minute and hour rows, and how the
//! summed rows become counts and trends.
//!
//! The aggregates are six tables, `run_counts_minute`, `run_counts_hour`,
//! `run_counts_day` and the same three of tasks: one row per (minute, hour
//! or day number since the epoch, workflow, status) with the number `n` of runs or
//! tasks *submitted* in that minute or hour, of that workflow (a task: its
//! run's), that have that status now. Creating a run adds 1 at `QUEUED` and
//! 1 per task at `SUBMITTED`; every applied status change moves 1 from the
//! old status to the new one, in the bucket of the same submission time.
//! A refused change (a conflict) writes nothing, so it counts nothing.
//!
//! Architecture invariant: the counts change in the transaction of the
//! changes they count, and by their *net* sum: the writer gathers
//! [`Deltas`] keyed by (kind, minute, run, status) as each change applies —
//! from what its compare-and-set statement returns (the run number and the
//! submission time), never from a read of its own — and at the end of the
//! transaction, once, names each run's workflow, adds the sums up per
//! (table, bucket, workflow, status), drops the zeros and upserts one row
//! per key, in key order. On PostgreSQL that order and the upsert's place at
//! the very end keep the row locks on hot keys short and taken in one order
//! by every writer, so concurrent servers wait briefly and never deadlock.
//!
//! Deleting runs (retention) must subtract in the same way: a `DELETE …
//! RETURNING` of the runs and of their tasks gives each one's run number,
//! submission time and current status, which become `-1` deltas of the
//! same transaction. A zero row may stay behind; reads skip it.
//!
//! A read resolves its window to whole minutes, sums the whole days inside
//! it from the day table, the whole hours at its edges from the hour table
//! and only the partial hours from the minute table, so it reads at most
//! `2 × 23` hour rows and `2 × 59` minute rows per (workflow, status)
//! however long the window, and nothing but aggregate rows. A month of
//! history is some thirty day rows per (workflow, status), where the hour
//! table alone would have seven hundred.

use std::collections::{BTreeMap, HashMap};

use cairn_core::{RunStatus, TaskStatus, Timestamp};

use crate::error::StoreError;
use crate::history::{Bucket, TimeRange, TrendPoint, WorkflowTrends};

/// A minute in µs.
pub(crate) const MINUTE_US: i64 = 60_000_000;

/// The most buckets one trend may have.
pub(crate) const MAX_BUCKETS: i64 = 10_000;

/// What is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Runs,
    Tasks,
}

impl Kind {
    /// As the PostgreSQL upsert takes it.
    pub(crate) fn code(self) -> i16 {
        match self {
            Kind::Runs => 0,
            Kind::Tasks => 1,
        }
    }
}

/// Which of a kind's three tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Grain {
    Minute,
    Hour,
    Day,
}

impl Grain {
    /// Minutes per bucket.
    const fn minutes(self) -> i64 {
        match self {
            Grain::Minute => 1,
            Grain::Hour => 60,
            Grain::Day => 24 * 60,
        }
    }
}

/// The minute (since the epoch) that `micros` falls in.
pub(crate) fn minute_of(micros: i64) -> i64 {
    micros.div_euclid(MINUTE_US)
}

/// The hour (since the epoch) that `minute` falls in.
pub(crate) fn hour_of(minute: i64) -> i64 {
    minute.div_euclid(60)
}

/// The day (since the epoch, UTC) that `minute` falls in.
pub(crate) fn day_of(minute: i64) -> i64 {
    minute.div_euclid(24 * 60)
}

/// The net changes of the counts in one write transaction so far.
#[derive(Debug, Default)]
pub(crate) struct Deltas {
    net: HashMap<(Kind, i64, i64, u8), i64>,
}

/// One net change: `n` more (or fewer) runs or tasks of run `run_no`
/// submitted in `minute` with `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Delta {
    pub kind: Kind,
    pub minute: i64,
    pub run_no: i64,
    pub status: u8,
    pub n: i64,
}

impl Deltas {
    /// A run or task submitted at `submitted_at` (µs) was created with `status`.
    pub(crate) fn created(&mut self, kind: Kind, submitted_at: i64, run_no: i64, status: u8) {
        self.add(kind, minute_of(submitted_at), run_no, status, 1);
    }

    /// A run or task submitted at `submitted_at` (µs) moved from `from` to `to`.
    pub(crate) fn moved(&mut self, kind: Kind, submitted_at: i64, run_no: i64, from: u8, to: u8) {
        let minute = minute_of(submitted_at);
        self.add(kind, minute, run_no, from, -1);
        self.add(kind, minute, run_no, to, 1);
    }

    /// `n` runs or tasks of run `run_no` submitted at `submitted_at` (µs)
    /// with `status` were deleted (retention).
    pub(crate) fn removed(&mut self, kind: Kind, submitted_at: i64, run_no: i64, status: u8, n: i64) {
        self.add(kind, minute_of(submitted_at), run_no, status, -n);
    }

    fn add(&mut self, kind: Kind, minute: i64, run_no: i64, status: u8, n: i64) {
        *self.net.entry((kind, minute, run_no, status)).or_insert(0) += n;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.net.values().all(|n| *n == 0)
    }

    /// The changes that are not zero, in key order.
    pub(crate) fn into_nonzero(self) -> Vec<Delta> {
        let mut all: Vec<Delta> = self
            .net
            .into_iter()
            .filter(|(_, n)| *n != 0)
            .map(|((kind, minute, run_no, status), n)| Delta { kind, minute, run_no, status, n })
            .collect();
        all.sort_unstable_by_key(|d| (d.kind, d.minute, d.run_no, d.status));
        all
    }
}

/// The row of one aggregate table a net change goes to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RowKey {
    pub kind: Kind,
    pub grain: Grain,
    pub bucket: i64,
    pub workflow: String,
    pub status: u8,
}

/// `deltas` summed per row of the aggregate tables (minute and hour), each
/// run named by its workflow; zero sums are dropped. In key order: kind,
/// grain, bucket, workflow, status.
pub(crate) fn rows<E>(
    deltas: Vec<Delta>,
    mut workflow: impl FnMut(i64) -> Result<String, E>,
) -> Result<BTreeMap<RowKey, i64>, E> {
    let mut names: HashMap<i64, String> = HashMap::new();
    let mut rows: BTreeMap<RowKey, i64> = BTreeMap::new();
    for d in deltas {
        let name = match names.get(&d.run_no) {
            Some(name) => name.clone(),
            None => {
                let name = workflow(d.run_no)?;
                names.insert(d.run_no, name.clone());
                name
            }
        };
        for (grain, bucket) in
            [(Grain::Minute, d.minute), (Grain::Hour, hour_of(d.minute)), (Grain::Day, day_of(d.minute))]
        {
            let key = RowKey { kind: d.kind, grain, bucket, workflow: name.clone(), status: d.status };
            *rows.entry(key).or_insert(0) += d.n;
        }
    }
    rows.retain(|_, n| *n != 0);
    Ok(rows)
}

// ---------------------------------------------------------------------------
// Reading

/// One read of one aggregate table: the rows of buckets `[lo, hi)` (in the
/// table's unit), summed per (slot, workflow, status), where a row's slot is
/// `(bucket - origin) / width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Read {
    pub grain: Grain,
    pub lo: i64,
    pub hi: i64,
    pub origin: i64,
    pub width: i64,
}

/// One summed row a [`Read`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Summed {
    pub slot: i64,
    pub workflow: String,
    pub status: u8,
    pub n: i64,
}

/// A window of whole minutes, `[from, to)`; `None` is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Minutes {
    from: Option<i64>,
    to: Option<i64>,
}

impl Minutes {
    /// `range` in whole minutes (`from` rounded down, `to` up); `None` when
    /// empty (also when it was empty before rounding).
    fn of(range: &TimeRange) -> Option<Minutes> {
        if let (Some(from), Some(to)) = (range.from, range.to)
            && from >= to
        {
            return None;
        }
        let from = range.from.map(|t| minute_of(t.as_micros()));
        let to = range.to.map(|t| {
            let micros = t.as_micros();
            minute_of(micros) + i64::from(micros.rem_euclid(MINUTE_US) != 0)
        });
        match (from, to) {
            (Some(from), Some(to)) if from >= to => None,
            _ => Some(Minutes { from, to }),
        }
    }

    /// The spans of the tables that cover the window, in order, each in its
    /// table's unit: whole days from the day table, whole hours at the
    /// edges from the hour table, the rest from the minute table. `coarsest`
    /// is the largest grain that may be used (a trend by hour must not read
    /// a day row, which spans 24 of its buckets).
    fn spans(self, coarsest: Grain) -> Vec<(Grain, i64, i64)> {
        let mut spans = Vec::with_capacity(5);
        cover(self.from, self.to, coarsest, &mut spans);
        spans
    }
}

/// Appends the spans covering minutes `[from, to)` (`None`: open), coarsest
/// grain inside, finer grains at the edges.
fn cover(from: Option<i64>, to: Option<i64>, grain: Grain, spans: &mut Vec<(Grain, i64, i64)>) {
    let finer = match grain {
        Grain::Minute => {
            spans.push((Grain::Minute, from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX)));
            return;
        }
        Grain::Hour => Grain::Minute,
        Grain::Day => Grain::Hour,
    };
    let width = grain.minutes();
    // The whole buckets inside: from `from` rounded up, to `to` rounded down.
    let first = from.map(|m| m.div_euclid(width) + i64::from(m.rem_euclid(width) != 0));
    let end = to.map(|m| m.div_euclid(width));
    if let (Some(first), Some(end)) = (first, end)
        && first >= end
    {
        // No whole bucket inside: all of it from the finer grain.
        cover(from, to, finer, spans);
        return;
    }
    if let (Some(from), Some(first)) = (from, first)
        && from < first * width
    {
        cover(Some(from), Some(first * width), finer, spans);
    }
    spans.push((grain, first.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX)));
    if let (Some(to), Some(end)) = (to, end)
        && to > end * width
    {
        cover(Some(end * width), Some(to), finer, spans);
    }
}

/// The reads of a count over `range`: one slot (0) for everything.
pub(crate) fn total_reads(range: &TimeRange) -> Vec<Read> {
    let Some(window) = Minutes::of(range) else {
        return Vec::new();
    };
    window
        .spans(Grain::Day)
        .into_iter()
        .map(|(grain, lo, hi)| Read { grain, lo, hi, origin: 0, width: i64::MAX })
        .collect()
}

/// The buckets of a trend: `count` of `width` minutes from minute `origin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slots {
    origin: i64,
    width: i64,
    count: usize,
}

impl Slots {
    /// The start of bucket `slot`.
    fn at(&self, slot: usize) -> Timestamp {
        let minute = self.origin + self.width * slot as i64;
        Timestamp::from_micros(minute * MINUTE_US)
    }
}

/// A trend's buckets and the reads that fill them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TrendPlan {
    pub slots: Slots,
    pub reads: Vec<Read>,
}

/// Refuses a trend without a start: it would cover all of history in buckets.
pub(crate) fn check_trend(range: &TimeRange) -> Result<(), StoreError> {
    if range.from.is_none() {
        return Err(StoreError::InvalidQuery(
            "a trend needs the start of its window (submitted.from); counts take an open window".into(),
        ));
    }
    Ok(())
}

/// The plan of a trend over `range` in `bucket`s; `None` for an empty
/// window. An open `to` ends after `last`, the newest minute that holds a
/// count (the caller reads it only then): a store reads no clock.
pub(crate) fn trend_plan(
    range: &TimeRange,
    bucket: Bucket,
    last: Option<i64>,
) -> Result<Option<TrendPlan>, StoreError> {
    check_trend(range)?;
    let Some(mut window) = Minutes::of(range) else {
        return Ok(None);
    };
    let from = window.from.unwrap_or(i64::MIN);
    let to = match window.to {
        Some(to) => to,
        None => match last {
            Some(last) if last >= from => last + 1,
            _ => return Ok(None),
        },
    };
    window.to = Some(to);
    let coarsest = match bucket {
        Bucket::Minute => Grain::Minute,
        Bucket::Hour => Grain::Hour,
        Bucket::Day => Grain::Day,
    };
    let width = coarsest.minutes();
    let origin = from.div_euclid(width) * width;
    let count = (to - origin + width - 1) / width;
    if count > MAX_BUCKETS {
        return Err(StoreError::InvalidQuery(format!(
            "the window needs {count} {bucket:?} buckets and a trend has at most {MAX_BUCKETS}; narrow the \
             window or take a larger bucket"
        )));
    }
    let slots = Slots { origin, width, count: count as usize };
    // Each grain's buckets divide the trend's (a day into 24 hours, an hour
    // into 60 minutes), so origin and width convert exactly.
    let reads = window
        .spans(coarsest)
        .into_iter()
        .map(|(grain, lo, hi)| {
            let unit = grain.minutes();
            Read { grain, lo, hi, origin: origin / unit, width: width / unit }
        })
        .collect();
    Ok(Some(TrendPlan { slots, reads }))
}

/// A status as the aggregate tables store it.
pub(crate) trait Status: Copy + Ord {
    fn from_code(code: u8) -> Option<Self>;
}

impl Status for RunStatus {
    fn from_code(code: u8) -> Option<Self> {
        RunStatus::from_code(code)
    }
}

impl Status for TaskStatus {
    fn from_code(code: u8) -> Option<Self> {
        TaskStatus::from_code(code)
    }
}

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(format!("{what}: the status counts disagree with the records"))
}

/// Sums per status into `into`.
fn add_up<'r, S: Status>(
    into: &mut BTreeMap<S, i64>,
    rows: impl Iterator<Item = &'r Summed>,
) -> Result<(), StoreError> {
    for row in rows {
        let status =
            S::from_code(row.status).ok_or_else(|| corrupt(format!("status code {}", row.status)))?;
        *into.entry(status).or_insert(0) += row.n;
    }
    Ok(())
}

/// Sums as counts: zeros dropped, a negative sum refused.
fn counts<S: Status>(sums: BTreeMap<S, i64>) -> Result<BTreeMap<S, u64>, StoreError> {
    sums.into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|(status, n)| {
            u64::try_from(n).map(|n| (status, n)).map_err(|_| corrupt(format!("a count of {n}")))
        })
        .collect()
}

/// Counts by status of every row.
pub(crate) fn totals<S: Status>(rows: &[Summed]) -> Result<BTreeMap<S, u64>, StoreError> {
    let mut sums = BTreeMap::new();
    add_up(&mut sums, rows.iter())?;
    counts(sums)
}

/// One point per slot, empty ones too.
pub(crate) fn trend<'r, S: Status>(
    rows: impl Iterator<Item = &'r Summed>,
    slots: Slots,
) -> Result<Vec<TrendPoint<S>>, StoreError> {
    let mut sums: Vec<BTreeMap<S, i64>> = vec![BTreeMap::new(); slots.count];
    for row in rows {
        let slot = usize::try_from(row.slot)
            .ok()
            .filter(|slot| *slot < slots.count)
            .ok_or_else(|| corrupt(format!("a row in bucket {} of {}", row.slot, slots.count)))?;
        add_up(&mut sums[slot], std::iter::once(row))?;
    }
    sums.into_iter()
        .enumerate()
        .map(|(slot, sums)| Ok(TrendPoint { at: slots.at(slot), counts: counts(sums)? }))
        .collect()
}

/// A trend per workflow: every workflow asked for, or (none asked) every
/// workflow with a run in the window.
pub(crate) fn workflow_trends(
    rows: &[Summed],
    slots: Slots,
    asked: &[String],
) -> Result<WorkflowTrends, StoreError> {
    let mut by_workflow: BTreeMap<&str, Vec<&Summed>> =
        asked.iter().map(|workflow| (workflow.as_str(), Vec::new())).collect();
    for row in rows {
        if asked.is_empty() || by_workflow.contains_key(row.workflow.as_str()) {
            by_workflow.entry(row.workflow.as_str()).or_default().push(row);
        }
    }
    let mut trends = WorkflowTrends::new();
    for (workflow, rows) in by_workflow {
        let points = trend::<RunStatus>(rows.into_iter(), slots)?;
        if asked.is_empty() && points.iter().all(|p| p.counts.is_empty()) {
            // Only rows that came to zero.
            continue;
        }
        trends.insert(workflow.to_owned(), points);
    }
    Ok(trends)
}

/// The workflows a read keeps, for the backends: `None` keeps all.
pub(crate) fn workflow_filter(workflows: &[String]) -> Option<&[String]> {
    (!workflows.is_empty()).then_some(workflows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = MINUTE_US;

    fn at(minute: i64, plus_us: i64) -> Option<Timestamp> {
        Some(Timestamp::from_micros(minute * M + plus_us))
    }

    fn range(from: Option<Timestamp>, to: Option<Timestamp>) -> TimeRange {
        TimeRange { from, to }
    }

    #[test]
    fn windows_round_out_to_whole_minutes() {
        assert_eq!(Minutes::of(&range(at(10, 1), at(20, 0))), Some(Minutes { from: Some(10), to: Some(20) }));
        assert_eq!(Minutes::of(&range(at(10, 0), at(20, 1))), Some(Minutes { from: Some(10), to: Some(21) }));
        assert_eq!(Minutes::of(&range(at(10, M - 1), at(10, M - 1))), None, "empty stays empty");
        assert_eq!(Minutes::of(&range(at(10, 5), at(10, 6))), Some(Minutes { from: Some(10), to: Some(11) }));
        assert_eq!(Minutes::of(&range(at(20, 0), at(10, 0))), None);
        assert_eq!(Minutes::of(&range(None, None)), Some(Minutes { from: None, to: None }));
        assert_eq!(minute_of(-1), -1, "before the epoch rounds down too");
    }

    #[test]
    fn whole_hours_come_from_the_hour_table_and_edges_from_minutes() {
        let spans = |from, to| Minutes { from, to }.spans(Grain::Hour);
        // 01:10 to 04:20: 01:10-02:00 in minutes, 02:00-04:00 in hours, 04:00-04:20 in minutes.
        assert_eq!(
            spans(Some(70), Some(260)),
            vec![(Grain::Minute, 70, 120), (Grain::Hour, 2, 4), (Grain::Minute, 240, 260)]
        );
        assert_eq!(spans(Some(120), Some(240)), vec![(Grain::Hour, 2, 4)], "aligned: hours only");
        assert_eq!(spans(Some(70), Some(110)), vec![(Grain::Minute, 70, 110)], "inside one hour");
        assert_eq!(spans(Some(70), Some(130)), vec![(Grain::Minute, 70, 130)], "across one boundary");
        assert_eq!(spans(None, Some(130)), vec![(Grain::Hour, i64::MIN, 2), (Grain::Minute, 120, 130)]);
        assert_eq!(spans(Some(70), None), vec![(Grain::Minute, 70, 120), (Grain::Hour, 2, i64::MAX)]);
        assert_eq!(spans(None, None), vec![(Grain::Hour, i64::MIN, i64::MAX)]);
    }

    #[test]
    fn whole_days_come_from_the_day_table_and_edges_from_hours_and_minutes() {
        let spans = |from, to| Minutes { from, to }.spans(Grain::Day);
        let day = 24 * 60;
        // Day 1 at 01:10 to day 4 at 02:20.
        assert_eq!(
            spans(Some(day + 70), Some(4 * day + 140)),
            vec![
                (Grain::Minute, day + 70, day + 120),
                (Grain::Hour, 26, 48),
                (Grain::Day, 2, 4),
                (Grain::Hour, 96, 98),
                (Grain::Minute, 4 * day + 120, 4 * day + 140),
            ]
        );
        assert_eq!(spans(Some(day), Some(3 * day)), vec![(Grain::Day, 1, 3)], "aligned: days only");
        assert_eq!(
            spans(Some(day + 70), Some(2 * day + 70)),
            vec![
                (Grain::Minute, day + 70, day + 120),
                (Grain::Hour, 26, 49),
                (Grain::Minute, 2 * day + 60, 2 * day + 70)
            ],
            "no whole day inside: hours"
        );
        assert_eq!(spans(None, Some(day + 60)), vec![(Grain::Day, i64::MIN, 1), (Grain::Hour, 24, 25)]);
        assert_eq!(spans(Some(-30), None), vec![(Grain::Minute, -30, 0), (Grain::Day, 0, i64::MAX)]);
        assert_eq!(spans(None, None), vec![(Grain::Day, i64::MIN, i64::MAX)]);
        assert_eq!(day_of(-1), -1, "before the epoch rounds down too");
    }

    #[test]
    fn trends_cover_the_window_in_aligned_buckets() {
        let plan = trend_plan(&range(at(70, 5), at(250, 0)), Bucket::Hour, None).unwrap().unwrap();
        assert_eq!(plan.slots, Slots { origin: 60, width: 60, count: 4 });
        assert_eq!(
            plan.reads,
            vec![
                Read { grain: Grain::Minute, lo: 70, hi: 120, origin: 60, width: 60 },
                Read { grain: Grain::Hour, lo: 2, hi: 4, origin: 1, width: 1 },
                Read { grain: Grain::Minute, lo: 240, hi: 250, origin: 60, width: 60 },
            ]
        );
        assert_eq!(plan.slots.at(1), Timestamp::from_micros(120 * M));

        let plan = trend_plan(&range(at(70, 0), at(75, 1)), Bucket::Minute, None).unwrap().unwrap();
        assert_eq!(plan.slots, Slots { origin: 70, width: 1, count: 6 });
        assert_eq!(plan.reads, vec![Read { grain: Grain::Minute, lo: 70, hi: 76, origin: 70, width: 1 }]);

        let day = 24 * 60;
        let plan = trend_plan(&range(at(day + 30, 0), at(3 * day, 0)), Bucket::Day, None).unwrap().unwrap();
        assert_eq!(plan.slots, Slots { origin: day, width: day, count: 2 });
        assert_eq!(
            plan.reads,
            vec![
                Read { grain: Grain::Minute, lo: day + 30, hi: day + 60, origin: day, width: day },
                Read { grain: Grain::Hour, lo: 25, hi: 48, origin: 24, width: 24 },
                Read { grain: Grain::Day, lo: 2, hi: 3, origin: 1, width: 1 },
            ]
        );
        // A trend by hour never reads a day row.
        let plan = trend_plan(&range(at(0, 0), at(3 * day, 0)), Bucket::Hour, None).unwrap().unwrap();
        assert_eq!(plan.reads, vec![Read { grain: Grain::Hour, lo: 0, hi: 72, origin: 0, width: 1 }]);
    }

    #[test]
    fn an_open_end_stops_at_the_newest_count() {
        let open = range(at(100, 0), None);
        assert_eq!(trend_plan(&open, Bucket::Minute, None).unwrap(), None, "nothing stored");
        assert_eq!(trend_plan(&open, Bucket::Minute, Some(99)).unwrap(), None, "nothing since");
        let plan = trend_plan(&open, Bucket::Minute, Some(104)).unwrap().unwrap();
        assert_eq!(plan.slots.count, 5);
    }

    #[test]
    fn too_many_buckets_or_no_start_are_refused() {
        let long = range(at(0, 0), at(MAX_BUCKETS + 1, 0));
        assert!(matches!(trend_plan(&long, Bucket::Minute, None), Err(StoreError::InvalidQuery(_))));
        assert!(trend_plan(&long, Bucket::Hour, None).unwrap().is_some());
        let exact = range(at(0, 0), at(MAX_BUCKETS, 0));
        assert_eq!(trend_plan(&exact, Bucket::Minute, None).unwrap().unwrap().slots.count, 10_000);
        assert!(matches!(
            trend_plan(&range(None, at(5, 0)), Bucket::Day, None),
            Err(StoreError::InvalidQuery(_))
        ));
    }

    #[test]
    fn deltas_net_out_and_name_their_workflows_once() {
        let mut d = Deltas::default();
        let q = RunStatus::Queued.code();
        let r = RunStatus::Running.code();
        d.created(Kind::Runs, 61 * M + 5, 1, q);
        d.moved(Kind::Runs, 61 * M + 5, 1, q, r);
        d.created(Kind::Runs, 62 * M, 2, q);
        d.moved(Kind::Runs, 62 * M, 2, q, r);
        d.moved(Kind::Runs, 62 * M, 2, r, q);
        let mut asked = Vec::new();
        let rows = rows::<()>(d.into_nonzero(), |run_no| {
            asked.push(run_no);
            Ok("etl".to_owned())
        })
        .unwrap();
        assert_eq!(asked, vec![1, 2]);
        let key = |grain, bucket, status| RowKey {
            kind: Kind::Runs,
            grain,
            bucket,
            workflow: "etl".into(),
            status,
        };
        assert_eq!(
            rows.into_iter().collect::<Vec<_>>(),
            vec![
                (key(Grain::Minute, 61, r), 1),
                (key(Grain::Minute, 62, q), 1),
                (key(Grain::Hour, 1, q), 1),
                (key(Grain::Hour, 1, r), 1),
                (key(Grain::Day, 0, q), 1),
                (key(Grain::Day, 0, r), 1),
            ]
        );
    }
}
