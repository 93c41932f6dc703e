//! `cairn audit`: the audit log of the data directory's store, or of a
//! PostgreSQL database with `--database` (token management and use,
//! sign-ins, refused requests), newest first.

use std::path::PathBuf;

use anyhow::Result;
use cairn_store::{AuditKind, AuditQuery, Store};

use crate::home::on_store;
use crate::out::outln;
use crate::{Exit, InvalidInput};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    database: crate::home::Database,
    /// Only events of this kind: token_created, token_revoked, token_used, access_denied, signed_in,
    /// signed_out
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Only events by this actor (a token's name, user:NAME, cli)
    #[arg(long, value_name = "ACTOR")]
    actor: Option<String>,
    /// How many events, 1 to 1000
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// One JSON object per line
    #[arg(long)]
    json: bool,
}

pub async fn audit(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    if !(1..=cairn_store::audit::MAX_AUDIT_EVENTS).contains(&args.limit) {
        return Err(InvalidInput(format!("--limit: expected 1 to 1000, got {}", args.limit)).into());
    }
    let kind = match &args.kind {
        Some(k) => Some(k.parse::<AuditKind>().map_err(|e| InvalidInput(format!("--kind: {e}")))?),
        None => None,
    };
    let q = AuditQuery { kind, actor: args.actor.clone(), before: None, limit: args.limit };
    let events = on_store!(&args.database.url, data_dir, |store| store.audit_events(q).await)?;
    if args.json {
        for e in &events {
            outln!("{}", serde_json::to_string(e)?);
        }
    } else if events.is_empty() {
        outln!("no audit events");
    } else {
        outln!("{:<19}  {:<13}  {:<20}  TARGET", "AT", "KIND", "ACTOR");
        for e in &events {
            outln!(
                "{:<19}  {:<13}  {:<20}  {}",
                crate::history::utc(e.at),
                e.kind,
                e.actor,
                e.target.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(Exit::Success)
}
