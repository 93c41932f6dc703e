//! `cairn cancel` and `cairn retry`: ask a running `cairn serve`, over its
//! API, to cancel a run or to retry a finished one. A run is named by its id
//! or a unique prefix of it, which the server's run list resolves. Errors
//! map to exit codes as everywhere: a run, prefix or step that is not there
//! is invalid input (2); a refusal of the server (a finished run, a missing
//! token) or no server at all is a failure (1) that says what to do.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use cairn_client::{Client, ClientError, RunId, RunQuery, TransientKind};

use crate::out::outln;
use crate::{Exit, InvalidInput};

/// The most runs a prefix lookup fetches, to list them when it is ambiguous.
const PREFIX_MATCHES: u32 = 5;

/// Which server to ask, how to be let in, and how to answer.
#[derive(clap::Args)]
struct Remote {
    /// The server to ask
    #[arg(long, env = "CAIRN_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// An API token of role operator (or admin), for a server that asks for tokens
    #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true, value_name = "cairn_…")]
    token: Option<String>,
    /// Trust this PEM CA certificate too, for an https:// server whose certificate is
    /// self-signed or from a private CA
    #[arg(long, env = "CAIRN_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Print the server's JSON answer instead of a sentence
    #[arg(long)]
    json: bool,
}

impl Remote {
    fn client(&self) -> Result<Client, InvalidInput> {
        crate::server_client(&self.server, self.token.as_deref(), self.ca_cert.as_deref())
    }
}

#[derive(clap::Args)]
pub struct CancelArgs {
    /// The run id, or a unique prefix of it
    #[arg(value_name = "RUN")]
    run: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(clap::Args)]
pub struct RetryArgs {
    /// The finished run's id, or a unique prefix of it
    #[arg(value_name = "RUN")]
    run: String,
    /// Rerun this step and what depends on it [default: every step that did not complete]
    #[arg(long = "from", value_name = "STEP")]
    from_step: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

pub async fn cancel(args: CancelArgs) -> Result<Exit> {
    let asking = Asking { server: &args.remote.server, what: "canceling a run" };
    let client = args.remote.client()?;
    let run = resolve(&client, &args.run, &asking).await?;
    let answer = client.cancel_run(run).await.map_err(|e| asking.explain(e))?;
    if args.remote.json {
        outln!("{}", serde_json::to_string(&answer)?);
    } else {
        outln!(
            "asked run {run} to cancel: steps running on the server stop now, steps on workers at \
             their next heartbeat; the run ends once they have stopped"
        );
    }
    Ok(Exit::Success)
}

pub async fn retry(args: RetryArgs) -> Result<Exit> {
    let asking = Asking { server: &args.remote.server, what: "retrying a run" };
    let client = args.remote.client()?;
    let run = resolve(&client, &args.run, &asking).await?;
    let answer = client.retry_run(run, args.from_step.as_deref()).await.map_err(|e| asking.explain(e))?;
    if args.remote.json {
        outln!("{}", serde_json::to_string(&answer)?);
        return Ok(Exit::Success);
    }
    let Some(new_run) = answer["run_id"].as_str() else {
        return Err(anyhow!("the server at {} answered the retry without a run_id: {answer}", asking.server));
    };
    outln!("run {new_run} retries {run}");
    outln!("follow it: cairn status {new_run}");
    Ok(Exit::Success)
}

/// A full run id as it is, or the one run of the server whose id starts
/// with `run`; none or several is invalid input.
async fn resolve(client: &Client, run: &str, asking: &Asking<'_>) -> Result<RunId> {
    let run = run.trim();
    if let Ok(id) = run.parse::<RunId>() {
        return Ok(id);
    }
    const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    if run.is_empty() || run.len() > 26 || !run.chars().all(|c| CROCKFORD.contains(c.to_ascii_uppercase())) {
        return Err(InvalidInput(format!(
            "{run:?} is not a run id nor the start of one: run ids are 26 characters of 0-9 and A-Z \
             without I, L, O and U, like 01M7XHK6QZK13258MBBC9B12K8"
        ))
        .into());
    }
    let q = RunQuery { id_prefix: Some(run.to_owned()), limit: Some(PREFIX_MATCHES), ..Default::default() };
    let page = client.list_runs(&q).await.map_err(|e| asking.explain(e))?;
    let ids: Vec<&str> = page.runs.iter().filter_map(|r| r["run_id"].as_str()).collect();
    match ids.as_slice() {
        [] => {
            Err(InvalidInput(format!("no run starts with {run} on the server at {}", asking.server)).into())
        }
        [one] => Ok(one
            .parse()
            .map_err(|e| anyhow!("the server at {} listed a bad run id: {e}", asking.server))?),
        several => {
            let more = if several.len() as u32 >= PREFIX_MATCHES { ", …" } else { "" };
            Err(InvalidInput(format!(
                "{run} is ambiguous: several runs start with it ({}{more}); give more characters",
                several.join(", ")
            ))
            .into())
        }
    }
}

/// A request to the server at `server`, for `what`, to explain its errors.
struct Asking<'a> {
    server: &'a str,
    what: &'a str,
}

impl Asking<'_> {
    /// The server's refusal or silence, said for the user: what is not
    /// there is invalid input (exit 2); the rest is a failure (exit 1) that
    /// says what to do.
    fn explain(&self, e: ClientError) -> anyhow::Error {
        let Asking { server, what } = self;
        match e {
            ClientError::NotFound { message, .. } => {
                InvalidInput(format!("{message} on the server at {server}")).into()
            }
            ClientError::Rejected { status: 400, message, field, .. } => match field.as_deref() {
                Some("from_step") => InvalidInput(format!("--from: {message}")).into(),
                _ => InvalidInput(format!("the server at {server} refused it: {message}")).into(),
            },
            ClientError::Rejected { status: 401, message, .. } => anyhow!(
                "the server at {server} wants a valid API token ({message}); {what} needs one of role \
                 operator: pass it with --token or CAIRN_TOKEN (`cairn token create NAME --role operator` \
                 makes one)"
            ),
            ClientError::Rejected { status: 403, message, .. } => anyhow!(
                "the server at {server} refused the token ({message}); {what} needs a token of role \
                 operator (or admin) that covers the run's workflow: pass it with --token or CAIRN_TOKEN"
            ),
            ClientError::Rejected { status: 409, message, .. } => anyhow!("{message}"),
            ClientError::Transient { kind: TransientKind::Connect, message, .. } => anyhow!(
                "cannot reach a Cairn server at {server} ({message}): start `cairn serve` there, or pass \
                 --server URL (also CAIRN_SERVER)"
            ),
            other if other.certainly_not_applied() => anyhow!("the server at {server}: {other}"),
            other => anyhow!(
                "the server at {server}: {other}; it may have acted on the request anyway: look at the run \
                 before asking again"
            ),
        }
    }
}
