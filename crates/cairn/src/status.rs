//! `cairn status RUN_ID`: a run with every task's transition log, reasons,
//! actors and derived durations.

use std::path::{Path, PathBuf};

use anyhow::Result;
use cairn_core::Timestamp;
use cairn_engine::{EngineClock, human};
use cairn_store::Store;

use crate::home::on_store;
use crate::out::outln;
use crate::report::{RunView, stored_run_report};
use crate::{Exit, InvalidInput};

#[derive(clap::Args)]
pub struct Args {
    /// The run id, a unique prefix of it, or `last` for the newest run
    #[arg(default_value = "last")]
    run_id: String,
    /// Print the whole record as JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    database: crate::home::Database,
}

pub async fn status(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    let log_root = crate::home::Home::resolve(data_dir.clone())?.log_root();
    let now = EngineClock::system().now();
    let report =
        on_store!(&args.database.url, data_dir, |store| report_of(store, &args.run_id, &log_root, now)
            .await)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(Exit::Success);
    }
    print_report(&report);
    Ok(Exit::Success)
}

/// The run `run` names ([`resolve_run`]) as `cairn status` shows it.
async fn report_of<S: Store>(store: &S, run: &str, log_root: &Path, now: Timestamp) -> Result<RunView> {
    let id = resolve_run(store, run).await?;
    let detail = store.run_detail(id).await?.ok_or_else(|| InvalidInput(format!("no run {id}")))?;
    Ok(stored_run_report(store, &detail, log_root, now).await)
}

/// A full run id, the one run whose id starts with `prefix`, or for `last`
/// the newest run.
pub async fn resolve_run<S: Store>(store: &S, prefix: &str) -> Result<cairn_core::RunId> {
    if let Ok(id) = prefix.parse() {
        return Ok(id);
    }
    if prefix == "last" {
        let newest = store.list_runs(cairn_store::RunQuery { limit: 1, ..Default::default() }).await?;
        return newest
            .first()
            .map(|r| r.id)
            .ok_or_else(|| InvalidInput("there are no runs yet".into()).into());
    }
    let found = store.runs_by_prefix(prefix, 2).await?;
    match found.as_slice() {
        [one] => Ok(one.id),
        [] => {
            Err(InvalidInput(format!("no run id starts with {prefix:?}; `cairn history` lists runs")).into())
        }
        _ => Err(InvalidInput(format!("several runs start with {prefix:?}; give more characters")).into()),
    }
}

pub fn print_report(r: &RunView) {
    let took = r.finished_at.map(|f| format!(" in {}", human(f.since(r.submitted_at)))).unwrap_or_default();
    outln!("run {}  {}  {}{}  ({})", r.run_id, r.workflow, r.status.as_str(), took, r.trigger);
    if let Some(e) = &r.error {
        outln!("  error: {e}");
    }
    outln!();
    outln!(
        "  {:<24} {:<10} {:>4} {:>5} {:>9} {:>9} {:>9} {:>9}",
        "TASK",
        "STATUS",
        "TRY",
        "EXIT",
        "BLOCKED",
        "PENDING",
        "RUNNING",
        "TOTAL"
    );
    for t in &r.tasks {
        let d = &t.durations;
        outln!(
            "  {:<24} {:<10} {:>4} {:>5} {:>9} {:>9} {:>9} {:>9}",
            t.name,
            t.status.as_str(),
            t.attempts,
            t.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            secs(d.blocked_duration),
            secs(d.pending_duration),
            secs(d.execution_duration),
            secs(d.total_duration),
        );
    }
    outln!();
    for t in &r.tasks {
        outln!("  {}", t.name);
        for tr in &t.transitions {
            let from = tr.from.map(|s| s.as_str()).unwrap_or("(new)");
            outln!(
                "    {}  #{} {:>9} -> {:<9}  {}  [{}]",
                tr.at.to_rfc3339(),
                tr.attempt,
                from,
                tr.to.as_str(),
                tr.reason,
                tr.actor
            );
        }
        if let Some(p) = &t.progress {
            outln!("    progress {:.0}% {}", p.percent, p.message.as_deref().unwrap_or(""));
        }
    }
}

/// Seconds as people read them (`1.5s`, `250ms`).
fn secs(s: f64) -> String {
    human(std::time::Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default())
}
