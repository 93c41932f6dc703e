//! `cairn logs RUN_ID [STEP]`: the stdout and stderr of a run's steps.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cairn_engine::{EngineClock, attempt_log_paths};
use cairn_store::Store;

use crate::out::{out, outln};
use crate::{Exit, InvalidInput};

#[derive(clap::Args)]
pub struct Args {
    /// The run id, a unique prefix of it, or `last` for the newest run
    run_id: String,
    /// Only this step
    step: Option<String>,
    /// Only this attempt (default: every attempt)
    #[arg(long)]
    attempt: Option<u32>,
}

pub async fn logs(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    let clock = EngineClock::system();
    let home = crate::home::Home::resolve(data_dir)?;
    let store = home.open(&clock).await?;
    let id = crate::status::resolve_run(&*store, &args.run_id).await?;
    let detail = store.run_detail(id).await?.ok_or_else(|| InvalidInput(format!("no run {id}")))?;
    let tasks: Vec<_> =
        detail.tasks.iter().filter(|t| args.step.as_ref().is_none_or(|s| *s == t.name)).collect();
    if tasks.is_empty() {
        let names: Vec<&str> = detail.tasks.iter().map(|t| t.name.as_str()).collect();
        return Err(InvalidInput(format!(
            "run {id} has no step {:?}; its steps are: {}",
            args.step.unwrap_or_default(),
            names.join(", ")
        ))
        .into());
    }
    let several = tasks.len() > 1;
    for t in tasks {
        for attempt in 1..=t.attempt {
            if args.attempt.is_some_and(|a| a != attempt) {
                continue;
            }
            let (out, err) = attempt_log_paths(&home.log_root(), id, t.index as usize, &t.name, attempt);
            for (path, stream) in [(out, "stdout"), (err, "stderr")] {
                let text = match std::fs::read_to_string(&path) {
                    Ok(text) => text,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                };
                if text.is_empty() {
                    continue;
                }
                if several || t.attempt > 1 || stream == "stderr" {
                    outln!("==> {} attempt {attempt} {stream} <==", t.name);
                }
                out!("{text}");
                if !text.ends_with('\n') {
                    outln!();
                }
            }
        }
    }
    Ok(Exit::Success)
}
