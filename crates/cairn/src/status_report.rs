//! `cairn report`: the status report of a day or a week
//! ([`cairn_core::report`], built by [`cairn_engine::report`]) of the data
//! directory's store, or of a PostgreSQL database with `--database` — per
//! workflow its runs by status, its failure rate and its slowest steps,
//! each against the period before. `--json` prints the report as the API
//! gives it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_core::report::{ReportPeriod, RunTally, StatusReport, StepReport};
use cairn_core::{Clock, RunStatus, SystemClock, Timestamp};
use cairn_engine::human;
use cairn_store::Store;

use crate::history::utc;
use crate::home::on_store;
use crate::out::outln;
use crate::{Exit, InvalidInput};

#[derive(clap::Args)]
pub struct Args {
    /// day (or daily) or week (or weekly)
    #[arg(long, default_value = "day", value_name = "PERIOD")]
    period: ReportPeriod,
    /// The end of the period, excluded: an RFC 3339 time or a date (midnight UTC)
    /// [default: the last midnight UTC; for a week, the last Monday midnight UTC]
    #[arg(long, value_name = "TIME")]
    end: Option<String>,
    /// Only this workflow (repeat, or separate with commas, for several)
    #[arg(long = "workflow", value_name = "NAME", value_delimiter = ',')]
    workflows: Vec<String>,
    /// Print the report as one JSON object, as the API gives it
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    database: crate::home::Database,
}

pub async fn report(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    let end = match &args.end {
        Some(text) => parse_end(text)?,
        None => args.period.default_end(SystemClock::new().now()),
    };
    let workflows: Vec<String> =
        args.workflows.iter().map(|w| w.trim()).filter(|w| !w.is_empty()).map(str::to_owned).collect();
    let report =
        on_store!(&args.database.url, data_dir, |store| build(store, args.period, end, &workflows).await)?;
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(Exit::Success)
}

async fn build<S: Store>(
    store: &S,
    period: ReportPeriod,
    end: Timestamp,
    workflows: &[String],
) -> Result<StatusReport> {
    cairn_engine::report::build_for(store, period, end, workflows).await.context("building the status report")
}

/// An RFC 3339 time, or a date alone for its midnight UTC.
fn parse_end(text: &str) -> Result<Timestamp> {
    let text = text.trim();
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(Timestamp::from_jiff(t));
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>()
        && let Ok(t) = date.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Ok(Timestamp::from_jiff(t.timestamp()));
    }
    Err(InvalidInput(format!(
        "--end: expected an RFC 3339 time (2026-11-23T00:00:00Z) or a date (2026-11-23), got {text:?}"
    ))
    .into())
}

fn print_report(r: &StatusReport) {
    outln!(
        "Status report of the {} from {} to {} UTC, against the {} from {}",
        r.period,
        utc(r.from),
        utc(r.to),
        r.period,
        utc(r.previous_from)
    );
    if r.workflows.is_empty() {
        outln!();
        outln!("no workflow finished a run in either period");
        return;
    }
    for w in &r.workflows {
        outln!();
        outln!("{}", w.workflow);
        print_tally(&w.current, &w.previous, w.failure_rate_change);
        if !w.slowest_steps.is_empty() {
            print_steps(&w.slowest_steps);
        }
    }
    if r.workflows.len() > 1 {
        outln!();
        outln!("all workflows");
        print_tally(&r.totals.current, &r.totals.previous, r.totals.failure_rate_change);
    }
}

fn print_tally(now: &RunTally, before: &RunTally, change: Option<f64>) {
    outln!("  runs          {} (was {})", now.runs(), before.runs());
    outln!("  by status     {} (was {})", statuses(now), statuses(before));
    outln!("  failure rate  {}", rate_line(now.failure_rate, before.failure_rate, change));
}

/// `COMPLETED 3, FAILED 1` in the order of [`RunStatus::ALL`], or `none`.
fn statuses(t: &RunTally) -> String {
    let parts: Vec<String> =
        RunStatus::ALL.iter().filter_map(|s| t.counts.get(s).map(|n| format!("{s} {n}"))).collect();
    if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", 100.0 * rate)
}

/// `12.5% (was 3.0%, +9.5 pts)`, and what is said when a period has no rate.
fn rate_line(now: Option<f64>, before: Option<f64>, change: Option<f64>) -> String {
    match (now, before, change) {
        (Some(now), Some(before), Some(change)) => {
            format!("{} (was {}, {:+.1} pts)", percent(now), percent(before), 100.0 * change)
        }
        (Some(now), _, _) => format!("{} (nothing finished before)", percent(now)),
        (None, Some(before), _) => format!("nothing finished (was {})", percent(before)),
        (None, None, _) => "nothing finished".to_owned(),
    }
}

fn seconds(s: f64) -> String {
    human(Duration::try_from_secs_f64(s).unwrap_or_default())
}

fn print_steps(steps: &[StepReport]) {
    let width = steps.iter().map(|s| s.step.len()).max().unwrap_or(0).max("slowest steps".len());
    outln!(
        "  {:<width$}  {:>6}  {:>6}  {:>8}  {:>8}  {:>10}",
        "slowest steps",
        "TASKS",
        "FAILED",
        "P50",
        "P95",
        "P95 BEFORE"
    );
    for s in steps {
        let before = s.previous_p95.map_or_else(|| "-".to_owned(), seconds);
        outln!(
            "  {:<width$}  {:>6}  {:>6}  {:>8}  {:>8}  {:>10}",
            s.step,
            s.count,
            s.failures,
            seconds(s.p50),
            seconds(s.p95),
            before
        );
        if let Some(from) = s.sampled_from {
            outln!("  {:<width$}  (the newest tasks only, finished since {})", "", utc(from));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_say_what_changed_and_what_is_missing() {
        assert_eq!(rate_line(Some(0.125), Some(0.03), Some(0.095)), "12.5% (was 3.0%, +9.5 pts)");
        assert_eq!(rate_line(Some(0.0), Some(0.25), Some(-0.25)), "0.0% (was 25.0%, -25.0 pts)");
        assert_eq!(rate_line(Some(0.5), None, None), "50.0% (nothing finished before)");
        assert_eq!(rate_line(None, Some(0.5), None), "nothing finished (was 50.0%)");
        assert_eq!(rate_line(None, None, None), "nothing finished");
    }

    #[test]
    fn the_end_is_a_time_or_a_date() {
        let midnight = Timestamp::from_jiff("2026-11-23T00:00:00Z".parse().unwrap());
        assert_eq!(parse_end("2026-11-23").unwrap(), midnight);
        assert_eq!(parse_end(" 2026-11-23T00:00:00Z ").unwrap(), midnight);
        assert_eq!(parse_end("2026-11-23T01:00:00+01:00").unwrap(), midnight);
        let err = parse_end("tomorrow").unwrap_err().to_string();
        assert!(err.starts_with("--end:") && err.contains("\"tomorrow\""), "{err}");
    }
}
