//! `cairn alerts`: the alerts of the data directory's store, or of a
//! PostgreSQL database with `--database`, newest first (anomalies in a
//! workflow's status mix, raised by `cairn serve`); with `--reaped`, the
//! attempts the reaper ended because their heartbeats stopped.

use std::path::PathBuf;

use anyhow::Result;
use cairn_core::AlertId;
use cairn_store::{AlertQuery, ReapedAttempt, ReapedCursor, ReapedQuery, Store};

use crate::home::on_store;
use crate::out::outln;
use crate::{Exit, InvalidInput};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    database: crate::home::Database,
    /// Only alerts not yet resolved
    #[arg(long, conflicts_with = "reaped")]
    open: bool,
    /// The attempts the reaper ended ("heartbeat lost": their worker or server stopped
    /// heartbeating) instead of the anomalies
    #[arg(long)]
    reaped: bool,
    /// Only alerts about this workflow
    #[arg(long)]
    workflow: Option<String>,
    /// At most this many (1 to 1000)
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Only alerts older than this alert id (the last of the previous page); with
    /// --reaped, the CURSOR printed under a full page
    #[arg(long, value_name = "ALERT_ID|CURSOR")]
    before: Option<String>,
    /// One JSON object per line, as the API gives them
    #[arg(long)]
    json: bool,
}

pub async fn alerts(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    if !(1..=cairn_store::alerts::MAX_ALERTS).contains(&args.limit) {
        return Err(InvalidInput(format!("--limit: expected 1 to 1000, got {}", args.limit)).into());
    }
    if args.reaped {
        return reaped(args, data_dir).await;
    }
    let before = match &args.before {
        Some(id) => Some(id.parse::<AlertId>().map_err(|e| InvalidInput(format!("--before: {e}")))?),
        None => None,
    };
    let q = AlertQuery {
        open_only: args.open,
        kind: None,
        workflows: args.workflow.iter().cloned().collect(),
        before,
        limit: args.limit,
    };
    let alerts = on_store!(&args.database.url, data_dir, |store| store.alerts(q).await)?;
    if args.json {
        for a in &alerts {
            outln!("{}", serde_json::to_string(a)?);
        }
    } else if alerts.is_empty() {
        outln!("no alerts");
    } else {
        outln!("{:<26}  {:<8}  {:<19}  {:<19}  MESSAGE", "ALERT", "STATE", "RAISED", "RESOLVED");
        for a in &alerts {
            let state = if a.resolved_at.is_some() { "resolved" } else { "open" };
            let resolved = a.resolved_at.map(crate::history::utc).unwrap_or_default();
            outln!(
                "{:<26}  {:<8}  {:<19}  {:<19}  {}",
                a.id,
                state,
                crate::history::utc(a.raised_at),
                resolved,
                a.message
            );
        }
    }
    Ok(Exit::Success)
}

/// `--reaped`: the attempts the reaper ended, as `GET /api/v1/reaped` lists them.
async fn reaped(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    let before = match &args.before {
        Some(c) => Some(c.parse::<ReapedCursor>().map_err(|e| InvalidInput(format!("--before: {e}")))?),
        None => None,
    };
    let q = ReapedQuery { workflows: args.workflow.iter().cloned().collect(), before, limit: args.limit };
    let reaped: Vec<ReapedAttempt> =
        on_store!(&args.database.url, data_dir, |store| store.reaped_attempts(q).await)?;
    if args.json {
        for r in &reaped {
            let line = serde_json::json!({
                "run_id": r.run_id, "task_id": r.task_id, "workflow": r.workflow, "step": r.step,
                "attempt": r.attempt, "at": r.at, "to": r.to, "reason": r.reason,
            });
            outln!("{line}");
        }
    } else if reaped.is_empty() {
        outln!("no reaped attempts");
    } else {
        outln!("{:<19}  {:<26}  {:<24}  {:>7}  {:<7}  REASON", "REAPED", "RUN", "STEP", "ATTEMPT", "THEN");
        for r in &reaped {
            let then = if r.to == cairn_core::TaskStatus::Pending { "retried" } else { "failed" };
            let step = format!("{}/{}", r.workflow, r.step);
            outln!(
                "{:<19}  {:<26}  {:<24}  {:>7}  {:<7}  {}",
                crate::history::utc(r.at),
                r.run_id,
                step,
                r.attempt,
                then,
                r.reason
            );
        }
    }
    // How to ask for the next page: on stderr under --json, so the lines stay JSON.
    if let Some(last) = reaped.last().filter(|_| reaped.len() == args.limit) {
        if args.json {
            eprintln!("more: --before {}", last.cursor);
        } else {
            outln!("more: add --before {}", last.cursor);
        }
    }
    Ok(Exit::Success)
}
