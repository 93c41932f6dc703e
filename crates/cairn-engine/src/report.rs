//! Building the status report ([`cairn_core::report`]) of a period from the
//! store: the one place that decides which maintained aggregates answer
//! which figure of it. `cairn report`, `GET /api/v1/reports/status` and the
//! scheduled delivery all call [`build`] (or [`build_for`]).
//!
//! Architecture invariant: a report reads aggregates only, never the runs
//! of history. The status mix of each workflow comes from the count tables
//! (`Store::workflow_trends` over the period in day buckets, summed: a few
//! aggregate rows per workflow, status and day); the steps from the index
//! of finished tasks (`Store::phase_stats`), bounded by the number of steps
//! and its sample cap. Four reads per report — two per period — whatever
//! the history's size.
//!
//! The count tables are kept by *submission* time with each run's status
//! now, so a run belongs to the period it was submitted in; the store has
//! no count by finish time, and a search of the runs finished in a period
//! would read every one of them. The steps, from an index of finish times,
//! are of the tasks that finished in the period.

use std::collections::{BTreeMap, BTreeSet};

use cairn_core::report::{ReportPeriod, RunTally, SLOWEST_STEPS, StatusReport, StepReport, WorkflowReport};
use cairn_core::{RunStatus, Timestamp};
use cairn_store::{Bucket, CountQuery, PhaseQuery, PhaseStats, Store, TimeRange};

use crate::error::EngineError;

/// The report of every workflow for the period of `period` that ends at
/// `end` (`[end - length, end)`), against the period before it.
pub async fn build<S: Store>(
    store: &S,
    period: ReportPeriod,
    end: Timestamp,
) -> Result<StatusReport, EngineError> {
    build_for(store, period, end, &[]).await
}

/// [`build`] for the named workflows only (empty: every workflow). A name
/// with no finished run in either period is left out, as in [`build`].
pub async fn build_for<S: Store>(
    store: &S,
    period: ReportPeriod,
    end: Timestamp,
    workflows: &[String],
) -> Result<StatusReport, EngineError> {
    let from = period.start(end);
    let previous_from = period.previous_start(end);
    let (current, previous) = tokio::try_join!(
        tallies(store, from, end, workflows),
        tallies(store, previous_from, from, workflows)
    )?;

    let names: Vec<String> = current
        .iter()
        .chain(previous.iter())
        .filter(|(_, t)| t.finished > 0)
        .map(|(name, _)| name.clone())
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    if names.is_empty() {
        // An empty list asks phase_stats for every workflow: nothing to ask.
        return Ok(StatusReport::new(period, end, Vec::new()));
    }
    let (steps_now, steps_before) =
        tokio::try_join!(steps(store, from, end, &names), steps(store, previous_from, from, &names))?;

    let reports = names
        .into_iter()
        .map(|name| {
            let slowest = slowest_steps(&name, &steps_now, &steps_before);
            let now = current.get(&name).cloned().unwrap_or_default();
            let before = previous.get(&name).cloned().unwrap_or_default();
            WorkflowReport::new(name, now, before, slowest)
        })
        .collect();
    Ok(StatusReport::new(period, end, reports))
}

/// The runs of each workflow submitted in `[from, to)`, by status now.
async fn tallies<S: Store>(
    store: &S,
    from: Timestamp,
    to: Timestamp,
    workflows: &[String],
) -> Result<BTreeMap<String, RunTally>, EngineError> {
    let counts = run_counts_by_workflow(store, from, to, workflows).await?;
    Ok(counts.into_iter().map(|(workflow, counts)| (workflow, RunTally::new(counts))).collect())
}

/// How many runs of each of `workflows` (empty: every one) submitted in
/// `[from, to)` are in each status now.
pub(crate) async fn run_counts_by_workflow<S: Store>(
    store: &S,
    from: Timestamp,
    to: Timestamp,
    workflows: &[String],
) -> Result<BTreeMap<String, BTreeMap<RunStatus, u64>>, EngineError> {
    let q =
        CountQuery { submitted: TimeRange { from: Some(from), to: Some(to) }, workflows: workflows.to_vec() };
    // One trend per workflow in day buckets is the store's only read of
    // counts *by workflow*; its points add up to the window's counts.
    let trends = store.workflow_trends(q, Bucket::Day).await?;
    Ok(trends
        .into_iter()
        .map(|(workflow, points)| {
            let mut counts = BTreeMap::new();
            for point in points {
                for (status, n) in point.counts {
                    *counts.entry(status).or_insert(0) += n;
                }
            }
            (workflow, counts)
        })
        .collect())
}

/// The steps of `workflows` whose tasks finished in `[from, to)`.
async fn steps<S: Store>(
    store: &S,
    from: Timestamp,
    to: Timestamp,
    workflows: &[String],
) -> Result<PhaseStats, EngineError> {
    let q = PhaseQuery {
        finished: TimeRange { from: Some(from), to: Some(to) },
        workflows: workflows.to_vec(),
        // The report lists no single task; the store wants at least one.
        slowest: 1,
        sample_cap: 0,
    };
    Ok(store.phase_stats(q).await?)
}

/// `workflow`'s steps with the highest p95 of time RUNNING, highest first,
/// with the p95 of the period before.
fn slowest_steps(workflow: &str, now: &PhaseStats, before: &PhaseStats) -> Vec<StepReport> {
    let previous: BTreeMap<&str, std::time::Duration> = before
        .steps
        .iter()
        .filter(|s| s.workflow == workflow)
        .filter_map(|s| Some((s.step.as_str(), s.execution?.p95)))
        .collect();
    let mut steps: Vec<(std::time::Duration, StepReport)> = now
        .steps
        .iter()
        .filter(|s| s.workflow == workflow)
        .filter_map(|s| {
            // A step whose tasks were all skipped or canceled ran no time
            // worth ranking.
            let execution = s.execution?;
            let report = StepReport {
                step: s.step.clone(),
                count: s.tasks(),
                p50: execution.p50.as_secs_f64(),
                p95: execution.p95.as_secs_f64(),
                failures: s.failed(),
                previous_p95: previous.get(s.step.as_str()).map(|d| d.as_secs_f64()),
                sampled_from: s.sampled_from,
            };
            Some((execution.p95, report))
        })
        .collect();
    steps.sort_by(|(a, ra), (b, rb)| b.cmp(a).then_with(|| ra.step.cmp(&rb.step)));
    steps.truncate(SLOWEST_STEPS);
    steps.into_iter().map(|(_, r)| r).collect()
}
