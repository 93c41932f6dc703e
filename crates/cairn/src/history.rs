//! `cairn history`: recent runs, newest first, filtered by status and workflow.

use std::path::PathBuf;

use anyhow::Result;
use cairn_core::{RunId, RunStatus};
use cairn_engine::{EngineClock, human};
use cairn_store::{RunQuery, Store};

use crate::out::outln;
use crate::report::RunSummary;
use crate::{Exit, InvalidInput};

#[derive(clap::Args)]
pub struct Args {
    /// Only runs in these statuses (comma-separated, e.g. FAILED,CANCELED)
    #[arg(long, value_delimiter = ',')]
    status: Vec<String>,
    /// Only runs of this workflow
    #[arg(long)]
    workflow: Option<String>,
    /// How many runs to show
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Only runs older than this run id (the cursor for the next page)
    #[arg(long, value_name = "RUN_ID")]
    before: Option<String>,
    /// Print JSON lines instead of a table
    #[arg(long)]
    json: bool,
}

pub async fn history(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    let statuses = args
        .status
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.parse::<RunStatus>().map_err(|e| InvalidInput(format!("--status: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let before = match &args.before {
        Some(b) => Some(b.parse::<RunId>().map_err(|e| InvalidInput(format!("--before: {e}")))?),
        None => None,
    };
    let clock = EngineClock::system();
    let home = crate::home::Home::resolve(data_dir)?;
    let store = home.open(&clock).await?;
    let runs = store
        .list_runs(RunQuery { statuses, workflow: args.workflow.clone(), limit: args.limit.max(1), before })
        .await?;
    let now = clock.now();
    if args.json {
        for r in &runs {
            outln!("{}", serde_json::to_string(&RunSummary::new(r, now))?);
        }
        return Ok(Exit::Success);
    }
    if runs.is_empty() {
        outln!("no runs match");
        return Ok(Exit::Success);
    }
    outln!("{:<26}  {:<20}  {:<19}  {:<20}  {:>9}", "RUN", "WORKFLOW", "STATUS", "SUBMITTED", "DURATION");
    for r in &runs {
        let line = RunSummary::new(r, now);
        let submitted = r.submitted_at.to_jiff().strftime("%Y-%m-%d %H:%M:%S").to_string();
        let took = human(std::time::Duration::from_secs_f64(line.duration));
        outln!("{:<26}  {:<20}  {:<19}  {:<20}  {:>9}", r.id, r.workflow, r.status.as_str(), submitted, took);
    }
    if runs.len() == args.limit.max(1)
        && let Some(last) = runs.last()
    {
        outln!("more: cairn history --before {}", last.id);
    }
    Ok(Exit::Success)
}
