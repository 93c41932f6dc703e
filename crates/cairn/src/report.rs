//! The JSON Cairn prints (`cairn run --json`, `cairn status --json`,
//! `cairn history --json`): the API's own shapes (`cairn_server::model`), so
//! a run reads the same from the command line and over HTTP. The command line
//! adds where each task's last logs are on this machine.

use std::path::Path;

use cairn_core::Timestamp;
use cairn_engine::attempt_log_paths;
pub use cairn_server::model::{RunSummary, RunView};
use cairn_server::model::{Timeouts, submitted_workflow, timeouts};
use cairn_store::{RunDetail, Store};

/// A run as `cairn status --json` prints it.
pub fn run_report(detail: &RunDetail, timeouts: &Timeouts, log_root: &Path, now: Timestamp) -> RunView {
    let mut view = RunView::new(detail, timeouts, now);
    for (task, record) in view.tasks.iter_mut().zip(&detail.tasks) {
        if record.attempt == 0 {
            continue;
        }
        let (out, err) =
            attempt_log_paths(log_root, detail.run.id, record.index as usize, &record.name, record.attempt);
        task.stdout_file = out.exists().then(|| out.display().to_string());
        task.stderr_file = err.exists().then(|| err.display().to_string());
    }
    view
}

/// A stored run as `cairn run --json` and `cairn status --json` print it:
/// [`run_report`] with the step timeouts of its workflow text and what the
/// workflow's history leads to expect, as the API shows them.
pub async fn stored_run_report<S: Store>(
    store: &S,
    detail: &RunDetail,
    log_root: &Path,
    now: Timestamp,
) -> RunView {
    let workflow = submitted_workflow(store, detail.run.id).await;
    let timeouts = workflow.as_ref().map(timeouts).unwrap_or_default();
    let report = run_report(detail, &timeouts, log_root, now);
    let report = match &workflow {
        Some(w) => report.with_depends(w),
        None => report,
    };
    // Without it the run still shows.
    match store.expected_durations(&detail.run.workflow).await {
        Ok(expected) => report.with_expected(&expected, now),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the expected durations");
            report
        }
    }
}
