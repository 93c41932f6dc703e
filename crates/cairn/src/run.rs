//! `cairn run FILE`: run a workflow once, here and now, with a live view.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use cairn_core::lease::LeaseSettings;
use cairn_core::record::Actor;
use cairn_core::{RunId, RunStatus, TaskStatus};
use cairn_engine::owner::LocalOwner;
use cairn_engine::{Driver, EngineClock, RunOptions, human};
use cairn_store::Store;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::home::Home;
use crate::out::outln;
use crate::report::{RunView, stored_run_report};
use crate::view::View;
use crate::{Exit, workflow};

#[derive(clap::Args)]
pub struct Args {
    /// The workflow file (Dagu-compatible YAML)
    file: PathBuf,
    /// A param: KEY=VALUE for a named one, a bare VALUE for the next positional one
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", allow_hyphen_values = true)]
    params: Vec<String>,
    /// Print one JSON object describing the run when it ends (live lines go to stderr)
    #[arg(long)]
    json: bool,
    /// No live view
    #[arg(short, long)]
    quiet: bool,
}

pub async fn run(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    // Everything about the input is checked before anything is stored or run.
    let loaded = workflow::load(&args.file, &args.params)?;
    let runner = loaded.runner()?;
    let clock = EngineClock::system();
    let home = Home::resolve(data_dir)?;
    let store = home.open(&clock).await?;
    let plan = loaded.plan("manual");
    let names: Vec<String> = plan.tasks.iter().map(|t| t.name.clone()).collect();
    let opts = RunOptions {
        run_id: RunId::new(clock.now()),
        owner: LocalOwner::current().to_string(),
        lease: LeaseSettings::default(),
        log_root: home.log_root(),
        prechecks: loaded.needs_prechecks(),
        remote: false,
    };
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let driver = Driver::new(store.clone(), Arc::new(runner), clock.clone(), plan, opts)?.with_events(tx);
    let run_id = driver.run_id();
    if !args.quiet {
        eprintln!("run {run_id}  {}", loaded.workflow.name);
    }

    let cancel = CancellationToken::new();
    // Registered before any step starts, so an early Ctrl-C is never missed.
    let signals = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    tokio::spawn(cancel_on_signals(signals, cancel.clone()));
    let mut view = View::new(&names, args.json, args.quiet);
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "unknown".into());
    let driving = tokio::spawn(driver.drive(cancel, Actor::User(user)));
    while let Some(e) = events.recv().await {
        view.handle(&e);
    }
    view.finish();
    let status = driving.await??;

    let detail = store
        .run_detail(run_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("run {run_id} vanished from the store"))?;
    let report = stored_run_report(store.as_ref(), &detail, &home.log_root(), clock.now()).await;
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else if !args.quiet {
        summarize(&report);
    }
    Ok(match status {
        RunStatus::Completed | RunStatus::PartiallySucceeded => Exit::Success,
        RunStatus::Canceled => Exit::Canceled,
        _ => Exit::RunFailed,
    })
}

/// Ctrl-C or SIGTERM cancels the run (steps are killed, everything recorded);
/// a second one exits at once, leaving recovery to the next command.
async fn cancel_on_signals((mut int, mut term): (Signal, Signal), cancel: CancellationToken) {
    for round in 0..2 {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if round == 0 {
            eprintln!("canceling: stopping running steps (press Ctrl-C again to quit at once)");
            cancel.cancel();
        } else {
            std::process::exit(130);
        }
    }
}

fn summarize(r: &RunView) {
    let took = r.finished_at.map(|f| human(f.since(r.submitted_at))).unwrap_or_default();
    let short = &r.run_id.to_string()[..12];
    eprintln!("run {} {} in {took}", r.run_id, r.status.as_str());
    for t in &r.tasks {
        if matches!(t.status, TaskStatus::Failed) {
            eprintln!("  ✘ {}: {}", t.name, t.error.as_deref().unwrap_or("failed"));
            eprintln!("    cairn logs {short} {:?}", t.name);
        }
    }
    let explained = r.tasks.iter().any(|t| t.status == TaskStatus::Failed);
    if let Some(e) = &r.error
        && !explained
    {
        eprintln!("  {e}");
    }
    eprintln!("details: cairn status {short}");
}
