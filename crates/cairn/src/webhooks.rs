//! `cairn webhooks deliveries`: the webhook delivery log of the data
//! directory's store, or of a PostgreSQL database with `--database`,
//! newest first — what was sent where, and whether it arrived.

use std::path::PathBuf;

use anyhow::Result;
use cairn_store::{Delivery, DeliveryQuery, DeliveryState, Store};

use crate::home::on_store;
use crate::out::outln;
use crate::{Exit, InvalidInput};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    database: crate::home::Database,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// List webhook deliveries, newest first
    Deliveries(DeliveriesArgs),
}

#[derive(clap::Args)]
struct DeliveriesArgs {
    /// Only deliveries in this state: pending, delivered, failed
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
    /// Only deliveries to this webhook
    #[arg(long, value_name = "NAME")]
    webhook: Option<String>,
    /// How many deliveries, 1 to 1000
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// One JSON object per line
    #[arg(long)]
    json: bool,
}

pub async fn webhooks(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    let Cmd::Deliveries(d) = args.command;
    if !(1..=cairn_store::webhooks::MAX_DELIVERIES).contains(&d.limit) {
        return Err(InvalidInput(format!("--limit: expected 1 to 1000, got {}", d.limit)).into());
    }
    let state = match &d.state {
        Some(s) => Some(s.parse::<DeliveryState>().map_err(|e| InvalidInput(format!("--state: {e}")))?),
        None => None,
    };
    let q = DeliveryQuery { state, webhook: d.webhook.clone(), before: None, limit: d.limit };
    let deliveries = on_store!(&args.database.url, data_dir, |store| store.webhook_deliveries(q).await)?;
    print(&deliveries, d.json)?;
    Ok(Exit::Success)
}

fn print(deliveries: &[Delivery], json: bool) -> Result<()> {
    if json {
        for d in deliveries {
            let mut value = serde_json::to_value(d)?;
            // The body as the JSON it is, not a string of it.
            if let Ok(body) = serde_json::from_str::<serde_json::Value>(&d.body) {
                value["body"] = body;
            }
            outln!("{}", serde_json::to_string(&value)?);
        }
        return Ok(());
    }
    if deliveries.is_empty() {
        outln!("no webhook deliveries");
        return Ok(());
    }
    outln!(
        "{:<6}  {:<19}  {:<12}  {:<17}  {:<9}  {:>8}  {:<6}  KEY / LAST ERROR",
        "ID",
        "CREATED",
        "WEBHOOK",
        "KIND",
        "STATE",
        "ATTEMPTS",
        "STATUS"
    );
    for d in deliveries {
        let status = d.last_status.map_or_else(|| "-".to_owned(), |s| s.to_string());
        let error = d.last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
        outln!(
            "{:<6}  {:<19}  {:<12}  {:<17}  {:<9}  {:>8}  {:<6}  {}{}",
            d.id,
            crate::history::utc(d.created_at),
            d.webhook,
            d.kind,
            d.state,
            format!("{}/{}", d.attempts, d.max_attempts),
            status,
            d.key,
            error
        );
    }
    Ok(())
}
