//! The `cairn` command line.

// A binary has no public API: `pub` here only means "visible to sibling modules".
#![allow(unreachable_pub)]

mod alerts;
mod archive;
mod audit;
mod bench;
mod bench_history;
mod bench_remote;
mod control;
mod history;
mod history_gen;
mod home;
mod logs;
mod out;
mod report;
mod run;
mod serve;
mod span;
mod status;
mod status_report;
mod token;
mod validate;
mod view;
mod webhooks;
mod worker;
mod workflow;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Cairn: a workflow orchestrator that records every status change of every task.
#[derive(Parser)]
#[command(name = "cairn", version, about, propagate_version = true)]
struct Cli {
    /// Where Cairn keeps its database and logs [default: $CAIRN_HOME, else ~/.local/share/cairn]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workflow once, here and now, with a live view of its steps
    Run(run::Args),
    /// Serve the API, run workflows on demand and resume what a previous server left
    Serve(serve::Args),
    /// Check workflow files without running them
    Validate(validate::Args),
    /// Show a run: every task with its transitions, reasons, actors and durations
    Status(status::Args),
    /// List recent runs, newest first
    History(history::Args),
    /// Print the logs of a run's steps
    Logs(logs::Args),
    /// Run the shell steps of a queue on this machine, for a server
    Worker(worker::Args),
    /// Ask a running `cairn serve` to cancel a run
    Cancel(control::CancelArgs),
    /// Ask a running `cairn serve` to retry a finished run, as a new run
    Retry(control::RetryArgs),
    /// Measure Cairn's throughput and latency (prints JSON lines)
    Bench(bench::Args),
    /// List alerts (anomalies in a workflow's status mix, or with --reaped the attempts whose
    /// heartbeats stopped), newest first
    Alerts(alerts::Args),
    /// Create, list and revoke API tokens
    Token(token::Args),
    /// Read the audit log (token management, token use, refused requests), newest first
    Audit(audit::Args),
    /// The status report of a day or a week: per workflow its runs by status, failure rate and
    /// slowest steps, against the period before
    Report(status_report::Args),
    /// Read the runs retention archived before deleting them
    Archive(archive::Args),
    /// Read the webhook delivery log (what was sent where, and whether it arrived)
    Webhooks(webhooks::Args),
}

/// Exit codes: 0 success, 1 the run failed, 2 invalid input, 130 canceled.
pub enum Exit {
    Success,
    RunFailed,
    Invalid,
    Canceled,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(match e {
            Exit::Success => 0,
            Exit::RunFailed => 1,
            Exit::Invalid => 2,
            Exit::Canceled => 130,
        })
    }
}

/// An error in what the user gave us (exit code 2), as opposed to a failure of Cairn.
#[derive(Debug)]
pub struct InvalidInput(pub String);

impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidInput {}

/// The PEM text of a `--ca-cert` file, for the clients of a server over
/// HTTPS; a file that cannot be read is invalid input naming it.
pub fn read_ca_cert(file: &std::path::Path) -> Result<Vec<u8>, InvalidInput> {
    let pem = std::fs::read(file)
        .map_err(|e| InvalidInput(format!("--ca-cert {}: cannot read it: {e}", file.display())))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(InvalidInput(format!(
            "--ca-cert {}: no PEM certificate in it (expected a `-----BEGIN CERTIFICATE-----` block)",
            file.display()
        )));
    }
    Ok(pem)
}

/// The API client of the server at `server` (`--server`), sending `token`
/// (`--token`) and trusting the CA of the `--ca-cert` file too: how
/// `cairn worker`, `cairn cancel` and `cairn retry` reach a server. A bad
/// URL, token or certificate is invalid input.
pub fn server_client(
    server: &str,
    token: Option<&str>,
    ca_cert: Option<&std::path::Path>,
) -> Result<cairn_client::Client, InvalidInput> {
    let mut client = cairn_client::Client::builder(server);
    if let Some(token) = token {
        client = client.bearer_token(token.trim());
    }
    if let Some(file) = ca_cert {
        client = client.ca_cert_pem(read_ca_cert(file)?);
    }
    client.build().map_err(|e| InvalidInput(format!("--server, --token or --ca-cert: {e}")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Long-running services say what they do; one-shot commands only warn.
    let default_level = match cli.command {
        Command::Serve(_) | Command::Worker(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let data_dir = cli.data_dir;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run::run(args, data_dir).await,
            Command::Serve(args) => serve::serve(args, data_dir).await,
            Command::Validate(args) => validate::validate(args),
            Command::Status(args) => status::status(args, data_dir).await,
            Command::History(args) => history::history(args, data_dir).await,
            Command::Logs(args) => logs::logs(args, data_dir).await,
            Command::Worker(args) => worker::worker(args).await,
            Command::Cancel(args) => control::cancel(args).await,
            Command::Retry(args) => control::retry(args).await,
            Command::Bench(args) => bench::bench(args).await,
            Command::Alerts(args) => alerts::alerts(args, data_dir).await,
            Command::Token(args) => token::token(args, data_dir).await,
            Command::Audit(args) => audit::audit(args, data_dir).await,
            Command::Archive(args) => archive::archive(args, data_dir).await,
            Command::Report(args) => status_report::report(args, data_dir).await,
            Command::Webhooks(args) => webhooks::webhooks(args, data_dir).await,
        }
    });
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            if let Some(invalid) = e.downcast_ref::<InvalidInput>() {
                eprintln!("{invalid}");
                return Exit::Invalid.into();
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
