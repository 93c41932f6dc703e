//! `cairn token create|list|revoke`: the API tokens of the data directory's
//! store, or of a PostgreSQL database with `--database`. A new token's
//! secret is printed once; the store keeps only its SHA-256.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use cairn_core::auth::{Role, Secret, WorkflowScope};
use cairn_core::{Clock, SystemClock, Timestamp, TokenId};
use cairn_store::{AuditKind, NewAuditEvent, NewToken, Store, StoreError, TokenRecord};

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
    /// Make a token and print its secret (shown this once only)
    Create(CreateArgs),
    /// List tokens, newest first (never their secrets)
    List {
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token at once, by name or id
    Revoke {
        #[arg(value_name = "NAME_OR_ID")]
        name_or_id: String,
    },
}

#[derive(clap::Args)]
struct CreateArgs {
    /// A name to recognise the token by (unique among tokens not revoked)
    name: String,
    /// viewer (read), operator (also trigger, cancel, retry), admin (also tokens and settings),
    /// worker (only the worker protocol)
    #[arg(long, value_name = "ROLE")]
    role: Role,
    /// A queue a worker token may lease from (repeat for several; worker tokens only)
    #[arg(long = "queue", value_name = "QUEUE")]
    queues: Vec<String>,
    /// Limit the token to workflows whose name matches this pattern (`*` for any characters)
    #[arg(long, value_name = "PATTERN")]
    workflows: Option<WorkflowScope>,
    /// The token stops working after this span (e.g. 30d, 12h); never, without it
    #[arg(long, value_parser = crate::span::parse, value_name = "SPAN")]
    expires: Option<Duration>,
}

pub async fn token(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    if let Cmd::Create(c) = &args.command {
        check(c)?;
    }
    on_store!(&args.database.url, data_dir, |store| act(store, args.command).await)
}

/// What the store would refuse less clearly, refused before opening it
/// (the rules of [`cairn_core::auth::check_new_token`], as the API's).
fn check(c: &CreateArgs) -> Result<()> {
    cairn_core::auth::check_new_token(&c.name, c.role, &c.queues).map_err(|e| match e.field {
        "queues" => InvalidInput(format!("--queue: {}", e.message)).into(),
        _ => InvalidInput(e.message).into(),
    })
}

async fn act<S: Store>(store: &S, cmd: Cmd) -> Result<Exit> {
    let now = SystemClock::new().now();
    match cmd {
        Cmd::Create(c) => create(store, c, now).await,
        Cmd::List { json } => list(store, json, now).await,
        Cmd::Revoke { name_or_id } => match store.revoke_token(name_or_id.clone(), now).await? {
            Some(t) => {
                let event = NewAuditEvent::new(now, AuditKind::TokenRevoked, "cli", Some(t.name.clone()))
                    .detail(serde_json::json!({ "id": t.id }));
                store.record_audit(event).await?;
                outln!("revoked token {} ({}, {})", t.name, t.role, t.id);
                Ok(Exit::Success)
            }
            None => {
                Err(InvalidInput(format!("no token named {name_or_id:?} or with that id is live")).into())
            }
        },
    }
}

async fn create<S: Store>(store: &S, c: CreateArgs, now: Timestamp) -> Result<Exit> {
    let expires_at = match c.expires {
        Some(span) => {
            let us = i64::try_from(span.as_micros()).unwrap_or(i64::MAX);
            Some(Timestamp::from_micros(now.as_micros().saturating_add(us)))
        }
        None => None,
    };
    let secret = Secret::generate();
    let token = NewToken {
        id: TokenId::new(now),
        name: c.name.clone(),
        role: c.role,
        queues: c.queues,
        workflows: c.workflows.map(|w| w.to_string()),
        prefix: secret.prefix(),
        hash: secret.hash(),
        created_at: now,
        expires_at,
    };
    let id = token.id;
    match store.create_token(token).await {
        Ok(()) => {
            let event = NewAuditEvent::new(now, AuditKind::TokenCreated, "cli", Some(c.name.clone()))
                .detail(serde_json::json!({ "id": id, "role": c.role }));
            store.record_audit(event).await?;
        }
        Err(StoreError::InvalidChange(m)) => return Err(InvalidInput(m).into()),
        Err(e) => return Err(e.into()),
    }
    outln!("{}", secret.expose());
    eprintln!(
        "created {} token {:?}{}; the secret above will not be shown again: keep it now",
        c.role,
        c.name,
        expires_at.map(|e| format!(", expiring {} UTC", crate::history::utc(e))).unwrap_or_default()
    );
    Ok(Exit::Success)
}

fn state(t: &TokenRecord, now: Timestamp) -> &'static str {
    if t.is_live(now) {
        "live"
    } else if t.is_expired(now) {
        "expired"
    } else {
        "revoked"
    }
}

async fn list<S: Store>(store: &S, json: bool, now: Timestamp) -> Result<Exit> {
    let tokens = store.tokens().await?;
    if json {
        for t in &tokens {
            let mut v = serde_json::to_value(t)?;
            v["state"] = state(t, now).into();
            outln!("{}", serde_json::to_string(&v)?);
        }
        return Ok(Exit::Success);
    }
    if tokens.is_empty() {
        outln!("no tokens");
        return Ok(Exit::Success);
    }
    let time = |t: Option<Timestamp>| t.map(crate::history::utc).unwrap_or_else(|| "-".into());
    outln!(
        "{:<20}  {:<8}  {:<12}  {:<7}  {:<19}  {:<19}  {:<19}  {:<12}  SCOPE",
        "NAME",
        "ROLE",
        "PREFIX",
        "STATE",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "QUEUES"
    );
    for t in &tokens {
        let queues = if t.queues.is_empty() { "-".to_owned() } else { t.queues.join(",") };
        outln!(
            "{:<20}  {:<8}  {:<12}  {:<7}  {:<19}  {:<19}  {:<19}  {:<12}  {}",
            t.name,
            t.role,
            t.prefix,
            state(t, now),
            time(Some(t.created_at)),
            time(t.expires_at),
            time(t.last_used_at),
            queues,
            t.workflows.as_deref().unwrap_or("*")
        );
    }
    Ok(Exit::Success)
}
