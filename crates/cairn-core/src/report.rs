//! The status report: what a day or a week of each workflow looked like —
//! the status mix of its runs, its failure rate, its slowest steps — set
//! against the period before. This module owns the shape of the report,
//! the arithmetic of its periods and the figures derived from counts; the
//! engine fills it from the store (`cairn_engine::report`).
//!
//! A period *ending* at `end` covers `[end - length, end)`, and the
//! previous period is the one of the same length just before it. Reports
//! are cut at boundaries: a day ends at a UTC time of day, a week at that
//! time on a Monday ([`ReportPeriod::boundary_at_or_before`]), so that two
//! reports of consecutive periods neither overlap nor leave a gap.
//!
//! The failure rate is `FAILED` over the *finished* runs (every terminal
//! status: COMPLETED, PARTIALLY_SUCCEEDED, FAILED, CANCELED), as the trends
//! of history define it, so the report and `cairn history --stats` agree:
//! a CANCELED run counts as finished and not as failed (an operator's
//! decision says nothing of whether the run would have failed; the counts
//! by status show the cancels). A period with no finished run has no rate
//! (`None`), never NaN.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{RunStatus, Timestamp};

const DAY_US: i64 = 86_400_000_000;
const WEEK_US: i64 = 7 * DAY_US;
/// 1970-01-01 was a Thursday: the first Monday is four days later.
const FIRST_MONDAY_US: i64 = 4 * DAY_US;

/// How long a report looks back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ReportPeriod {
    /// 24 hours.
    Day,
    /// 7 days, ending on a Monday.
    Week,
}

impl ReportPeriod {
    pub const ALL: [ReportPeriod; 2] = [ReportPeriod::Day, ReportPeriod::Week];

    /// The stable name (`day`, `week`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ReportPeriod::Day => "day",
            ReportPeriod::Week => "week",
        }
    }

    pub const fn length(self) -> Duration {
        Duration::from_micros(self.length_us() as u64)
    }

    const fn length_us(self) -> i64 {
        match self {
            ReportPeriod::Day => DAY_US,
            ReportPeriod::Week => WEEK_US,
        }
    }

    /// The start of the period that ends at `end`: `[start, end)`.
    pub fn start(self, end: Timestamp) -> Timestamp {
        Timestamp::from_micros(end.as_micros().saturating_sub(self.length_us()))
    }

    /// The start of the period before the one that ends at `end`; it ends
    /// where that one starts.
    pub fn previous_start(self, end: Timestamp) -> Timestamp {
        self.start(self.start(end))
    }

    /// The latest end of a period at or before `at`: the last `time_of_day`
    /// (UTC) at or before `at`, and for a week the last one on a Monday.
    /// The report due last, at or before `at`, is of the period ending
    /// here; the next one is due at [`ReportPeriod::next_boundary_after`].
    pub fn boundary_at_or_before(self, at: Timestamp, time_of_day: jiff::civil::Time) -> Timestamp {
        let offset = match self {
            ReportPeriod::Day => micros_of_day(time_of_day),
            ReportPeriod::Week => FIRST_MONDAY_US + micros_of_day(time_of_day),
        };
        let len = self.length_us();
        let rel = at.as_micros().saturating_sub(offset);
        Timestamp::from_micros(rel.div_euclid(len).saturating_mul(len).saturating_add(offset))
    }

    /// The first end of a period after `at` (strictly): when the next
    /// report of this period and time of day is due.
    pub fn next_boundary_after(self, at: Timestamp, time_of_day: jiff::civil::Time) -> Timestamp {
        let last = self.boundary_at_or_before(at, time_of_day);
        Timestamp::from_micros(last.as_micros().saturating_add(self.length_us()))
    }

    /// The end a report takes when none is given: the last midnight UTC at
    /// or before `now` (for a week, the last Monday midnight), so that the
    /// default report is of the last whole period.
    pub fn default_end(self, now: Timestamp) -> Timestamp {
        self.boundary_at_or_before(now, jiff::civil::Time::midnight())
    }
}

fn micros_of_day(t: jiff::civil::Time) -> i64 {
    i64::from(t.hour()) * 3_600_000_000
        + i64::from(t.minute()) * 60_000_000
        + i64::from(t.second()) * 1_000_000
        + i64::from(t.subsec_nanosecond()) / 1_000
}

impl fmt::Display for ReportPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A period's name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown report period {0:?}; expected one of: day, daily, week, weekly")]
pub struct UnknownReportPeriod(pub String);

impl FromStr for ReportPeriod {
    type Err = UnknownReportPeriod;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "day" | "daily" => Ok(ReportPeriod::Day),
            "week" | "weekly" => Ok(ReportPeriod::Week),
            _ => Err(UnknownReportPeriod(s.to_owned())),
        }
    }
}

/// How one workflow's (or all workflows') runs of one period ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunTally {
    /// Runs by status now, active ones (QUEUED, RUNNING) included; statuses
    /// with none are absent.
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, u64>))]
    pub counts: BTreeMap<RunStatus, u64>,
    /// Runs in a terminal status (CANCELED included).
    pub finished: u64,
    pub failed: u64,
    /// `failed / finished` (0 to 1); absent when nothing finished.
    pub failure_rate: Option<f64>,
}

impl RunTally {
    /// The tally of `counts`, with its derived figures.
    pub fn new(counts: BTreeMap<RunStatus, u64>) -> RunTally {
        let mut counts = counts;
        counts.retain(|_, n| *n > 0);
        let finished = counts.iter().filter(|(s, _)| s.is_terminal()).map(|(_, n)| n).sum();
        let failed = counts.get(&RunStatus::Failed).copied().unwrap_or(0);
        RunTally { counts, finished, failed, failure_rate: failure_rate(failed, finished) }
    }

    /// Runs of any status.
    pub fn runs(&self) -> u64 {
        self.counts.values().sum()
    }

    /// This tally and `other` together.
    pub fn plus(&self, other: &RunTally) -> RunTally {
        let mut counts = self.counts.clone();
        for (status, n) in &other.counts {
            *counts.entry(*status).or_insert(0) += n;
        }
        RunTally::new(counts)
    }
}

/// `failed / finished`, or `None` when nothing finished.
pub fn failure_rate(failed: u64, finished: u64) -> Option<f64> {
    (finished > 0).then(|| failed as f64 / finished as f64)
}

/// `now - before` as a fraction (0.095 is 9.5 percentage points); `None`
/// unless both periods have a rate.
pub fn rate_change(now: Option<f64>, before: Option<f64>) -> Option<f64> {
    Some(now? - before?)
}

/// One of a workflow's slowest steps of the period: the figures of its
/// tasks that *finished* in the period. Durations are seconds of time
/// RUNNING, summed over a task's attempts, over the tasks that ran to an
/// end of their own (COMPLETED or FAILED).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepReport {
    pub step: String,
    /// Tasks of the step that finished in the period, however they ended.
    pub count: u64,
    /// Seconds, median and 95th percentile (nearest rank).
    pub p50: f64,
    pub p95: f64,
    /// Of `count`, failed for good.
    pub failures: u64,
    /// The p95 of the previous period, in seconds; absent when no task of
    /// the step ran to an end then.
    pub previous_p95: Option<f64>,
    /// Present when the step finished more tasks in the period than the
    /// store reads per step (10,000): the figures are of those finished at
    /// or after this time.
    pub sampled_from: Option<Timestamp>,
}

/// One workflow in a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowReport {
    pub workflow: String,
    /// Its runs submitted in the period.
    pub current: RunTally,
    /// Its runs submitted in the previous period.
    pub previous: RunTally,
    /// `current.failure_rate - previous.failure_rate` (0.095 is +9.5
    /// percentage points); absent unless both have one.
    pub failure_rate_change: Option<f64>,
    /// Its steps with the highest p95 in the period, highest first (ties
    /// by name), at most [`SLOWEST_STEPS`].
    pub slowest_steps: Vec<StepReport>,
}

impl WorkflowReport {
    pub fn new(
        workflow: String,
        current: RunTally,
        previous: RunTally,
        slowest_steps: Vec<StepReport>,
    ) -> Self {
        let failure_rate_change = rate_change(current.failure_rate, previous.failure_rate);
        WorkflowReport { workflow, current, previous, failure_rate_change, slowest_steps }
    }
}

/// All the workflows of a report together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportTotals {
    pub current: RunTally,
    pub previous: RunTally,
    pub failure_rate_change: Option<f64>,
}

/// How many slowest steps a workflow's report lists.
pub const SLOWEST_STEPS: usize = 5;

/// The status report of one period, per workflow, against the period
/// before.
///
/// A run belongs to the period it was *submitted* in (the store keeps its
/// status counts by submission time), with the status it has now: a run
/// submitted late in the period and still going is active, not finished.
/// Step figures are of the tasks that *finished* in the period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusReport {
    pub period: ReportPeriod,
    /// The period, `[from, to)`.
    pub from: Timestamp,
    pub to: Timestamp,
    /// The previous period is `[previous_from, from)`.
    pub previous_from: Timestamp,
    /// Every workflow with a finished run in either period, by name.
    pub workflows: Vec<WorkflowReport>,
    /// Across those workflows.
    pub totals: ReportTotals,
}

impl StatusReport {
    /// The report of the period of `period` ending at `end`, with the
    /// workflows given (those with no finished run in either period are
    /// left out) and their totals.
    pub fn new(period: ReportPeriod, end: Timestamp, workflows: Vec<WorkflowReport>) -> StatusReport {
        let mut workflows: Vec<WorkflowReport> =
            workflows.into_iter().filter(|w| w.current.finished > 0 || w.previous.finished > 0).collect();
        workflows.sort_by(|a, b| a.workflow.cmp(&b.workflow));
        let (current, previous) =
            workflows.iter().fold((RunTally::default(), RunTally::default()), |(c, p), w| {
                (c.plus(&w.current), p.plus(&w.previous))
            });
        let failure_rate_change = rate_change(current.failure_rate, previous.failure_rate);
        StatusReport {
            period,
            from: period.start(end),
            to: end,
            previous_from: period.previous_start(end),
            workflows,
            totals: ReportTotals { current, previous, failure_rate_change },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::from_jiff(text.parse::<jiff::Timestamp>().expect("a test timestamp"))
    }

    fn time(h: i8, m: i8) -> jiff::civil::Time {
        jiff::civil::Time::new(h, m, 0, 0).expect("a test time of day")
    }

    #[test]
    fn periods_parse_by_either_name_and_a_bad_one_lists_the_valid_ones() {
        for (text, period) in [
            ("day", ReportPeriod::Day),
            ("daily", ReportPeriod::Day),
            ("Week", ReportPeriod::Week),
            (" weekly ", ReportPeriod::Week),
        ] {
            assert_eq!(text.parse::<ReportPeriod>(), Ok(period), "{text}");
        }
        let err = "month".parse::<ReportPeriod>().unwrap_err().to_string();
        assert!(err.contains("\"month\"") && err.contains("day, daily, week, weekly"), "{err}");
    }

    #[test]
    fn periods_serialize_lowercase() {
        assert_eq!(serde_json::to_string(&ReportPeriod::Week).unwrap(), "\"week\"");
        assert_eq!(serde_json::from_str::<ReportPeriod>("\"day\"").unwrap(), ReportPeriod::Day);
    }

    #[test]
    fn a_period_ends_where_it_is_asked_to_and_the_previous_one_where_it_starts() {
        let end = at("2026-11-23T00:00:00Z");
        assert_eq!(ReportPeriod::Day.start(end), at("2026-11-22T00:00:00Z"));
        assert_eq!(ReportPeriod::Day.previous_start(end), at("2026-11-21T00:00:00Z"));
        assert_eq!(ReportPeriod::Week.start(end), at("2026-11-16T00:00:00Z"));
        assert_eq!(ReportPeriod::Week.previous_start(end), at("2026-11-09T00:00:00Z"));
        assert_eq!(ReportPeriod::Week.length(), Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn day_boundaries_are_the_last_time_of_day_at_or_before() {
        let p = ReportPeriod::Day;
        assert_eq!(p.default_end(at("2026-11-21T06:48:40Z")), at("2026-11-21T00:00:00Z"));
        assert_eq!(p.default_end(at("2026-11-21T00:00:00Z")), at("2026-11-21T00:00:00Z"));
        assert_eq!(
            p.boundary_at_or_before(at("2026-11-21T06:48:40Z"), time(8, 0)),
            at("2026-11-20T08:00:00Z")
        );
        assert_eq!(
            p.boundary_at_or_before(at("2026-11-21T08:00:00Z"), time(8, 0)),
            at("2026-11-21T08:00:00Z")
        );
        assert_eq!(
            p.boundary_at_or_before(at("2026-11-21T08:00:00.000001Z"), time(8, 0)),
            at("2026-11-21T08:00:00Z")
        );
        assert_eq!(p.next_boundary_after(at("2026-11-21T06:48:40Z"), time(8, 0)), at("2026-11-21T08:00:00Z"));
        assert_eq!(p.next_boundary_after(at("2026-11-21T08:00:00Z"), time(8, 0)), at("2026-11-22T08:00:00Z"));
        // Before the epoch too: the arithmetic floors, it does not truncate.
        assert_eq!(p.default_end(at("1969-12-31T12:00:00Z")), at("1969-12-31T00:00:00Z"));
    }

    #[test]
    fn week_boundaries_fall_on_mondays() {
        let p = ReportPeriod::Week;
        // 2026-11-21 is a Saturday; the Monday before is the 16th.
        assert_eq!(p.default_end(at("2026-11-21T06:48:40Z")), at("2026-11-16T00:00:00Z"));
        // On a Monday at midnight exactly, that very instant.
        assert_eq!(p.default_end(at("2026-11-23T00:00:00Z")), at("2026-11-23T00:00:00Z"));
        // A Monday before the time of day belongs to the week before.
        assert_eq!(
            p.boundary_at_or_before(at("2026-11-23T07:59:59Z"), time(8, 0)),
            at("2026-11-16T08:00:00Z")
        );
        assert_eq!(
            p.boundary_at_or_before(at("2026-11-23T08:00:00Z"), time(8, 0)),
            at("2026-11-23T08:00:00Z")
        );
        assert_eq!(p.next_boundary_after(at("2026-11-23T08:00:00Z"), time(8, 0)), at("2026-11-30T08:00:00Z"));
        assert_eq!(p.next_boundary_after(at("2026-11-21T06:48:40Z"), time(8, 0)), at("2026-11-23T08:00:00Z"));
        // A Sunday night is still the week that began on the Monday before.
        assert_eq!(p.default_end(at("2026-11-22T23:59:59Z")), at("2026-11-16T00:00:00Z"));
        // Across a year's end: 2027-01-04 is a Monday.
        assert_eq!(p.default_end(at("2027-01-06T12:00:00Z")), at("2027-01-04T00:00:00Z"));
        assert_eq!(p.default_end(at("2027-01-01T12:00:00Z")), at("2026-12-28T00:00:00Z"));
        for boundary in [at("2026-11-16T00:00:00Z"), at("2026-12-28T00:00:00Z"), at("2027-01-04T00:00:00Z")] {
            assert_eq!(
                boundary.to_jiff().to_zoned(jiff::tz::TimeZone::UTC).weekday(),
                jiff::civil::Weekday::Monday
            );
        }
    }

    fn counts(pairs: &[(RunStatus, u64)]) -> BTreeMap<RunStatus, u64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn the_failure_rate_is_failed_over_finished_with_canceled_finished_and_not_failed() {
        let t = RunTally::new(counts(&[
            (RunStatus::Completed, 5),
            (RunStatus::Failed, 2),
            (RunStatus::Canceled, 1),
            (RunStatus::Running, 4),
        ]));
        assert_eq!((t.finished, t.failed, t.runs()), (8, 2, 12));
        assert_eq!(t.failure_rate, Some(0.25));
    }

    #[test]
    fn an_empty_period_has_no_rate_rather_than_nan() {
        assert_eq!(RunTally::new(BTreeMap::new()).failure_rate, None);
        let only_active = RunTally::new(counts(&[(RunStatus::Queued, 3), (RunStatus::Completed, 0)]));
        assert_eq!(only_active.failure_rate, None);
        assert!(!only_active.counts.contains_key(&RunStatus::Completed), "zero counts are dropped");
        assert_eq!(rate_change(Some(0.5), None), None);
        assert_eq!(rate_change(None, Some(0.5)), None);
        assert_eq!(rate_change(Some(0.125), Some(0.03)).map(|c| (c * 1000.0).round()), Some(95.0));
    }

    #[test]
    fn a_report_leaves_out_workflows_with_nothing_finished_and_totals_the_rest() {
        let end = at("2026-11-23T00:00:00Z");
        let w = |name: &str, now: &[(RunStatus, u64)], before: &[(RunStatus, u64)]| {
            WorkflowReport::new(
                name.to_owned(),
                RunTally::new(counts(now)),
                RunTally::new(counts(before)),
                vec![],
            )
        };
        let report = StatusReport::new(
            ReportPeriod::Day,
            end,
            vec![
                w("zeta", &[(RunStatus::Failed, 1), (RunStatus::Completed, 1)], &[]),
                w("idle", &[(RunStatus::Running, 2)], &[(RunStatus::Queued, 1)]),
                w(
                    "alpha",
                    &[(RunStatus::Completed, 2)],
                    &[(RunStatus::Failed, 1), (RunStatus::Completed, 3)],
                ),
            ],
        );
        let names: Vec<&str> = report.workflows.iter().map(|w| w.workflow.as_str()).collect();
        assert_eq!(names, ["alpha", "zeta"]);
        assert_eq!(report.workflows[0].failure_rate_change, Some(-0.25));
        assert_eq!(report.workflows[1].failure_rate_change, None, "zeta had nothing before");
        assert_eq!(report.totals.current.failure_rate, Some(0.25));
        assert_eq!(report.totals.previous.failure_rate, Some(0.25));
        assert_eq!(report.totals.failure_rate_change, Some(0.0));
        assert_eq!(
            (report.from, report.to, report.previous_from),
            (at("2026-11-22T00:00:00Z"), end, at("2026-11-21T00:00:00Z"))
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["period"], "day");
        assert_eq!(json["workflows"][1]["current"]["counts"]["FAILED"], 1);
        let back: StatusReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}
