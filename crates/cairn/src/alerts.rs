//! `cairn alerts`: the alerts of the data directory's store, or of a
//! PostgreSQL database with `--database`, newest first (anomalies in a
//! workflow's status mix, raised by `cairn serve`).

use std::path::PathBuf;

use anyhow::Result;
use cairn_core::AlertId;
use cairn_store::{AlertQuery, Store};

use crate::home::on_store;
use crate::out::outln;
use crate::{Exit, InvalidInput};

#[derive(clap::Args)]
pub struct Args {
    /// Read this PostgreSQL database instead of the data directory's SQLite file
    #[arg(long, env = "CAIRN_DATABASE_URL", value_name = "postgres://…")]
    database: Option<String>,
    /// Only alerts not yet resolved
    #[arg(long)]
    open: bool,
    /// Only alerts about this workflow
    #[arg(long)]
    workflow: Option<String>,
    /// At most this many (1 to 1000)
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Only alerts older than this alert id (the last of the previous page)
    #[arg(long, value_name = "ALERT_ID")]
    before: Option<String>,
    /// One JSON object per line, as the API gives them
    #[arg(long)]
    json: bool,
}

pub async fn alerts(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    if !(1..=cairn_store::alerts::MAX_ALERTS).contains(&args.limit) {
        return Err(InvalidInput(format!("--limit: expected 1 to 1000, got {}", args.limit)).into());
    }
    let before = match &args.before {
        Some(id) => Some(id.parse::<AlertId>().map_err(|e| InvalidInput(format!("--before: {e}")))?),
        None => None,
    };
    let q = AlertQuery {
        open_only: args.open,
        kind: None,
        workflow: args.workflow.clone(),
        before,
        limit: args.limit,
    };
    let alerts = on_store!(&args.database, data_dir, |store| store.alerts(q).await)?;
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
