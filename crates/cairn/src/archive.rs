//! `cairn archive list|show|restore`: the runs retention archived before
//! deleting them, read from the data directory's `archive/` (the day files
//! of `cairn_engine::archive`). `list` and `show` need only the files;
//! `restore` puts runs back into the data directory's store.

use std::path::PathBuf;

use anyhow::Result;
use cairn_core::spec;
use cairn_engine::EngineClock;
use cairn_engine::archive::{Archive, ArchivedRun, parse_day};
use cairn_server::model::timeouts;
use cairn_store::Store;

use crate::home::Home;
use crate::out::outln;
use crate::report::run_report;
use crate::status::print_report;
use crate::{Exit, InvalidInput};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// The archived days: how many runs each holds, and its size
    List {
        /// Print JSON lines instead of a table
        #[arg(long)]
        json: bool,
    },
    /// The runs archived for a day (their submission day, UTC), or one of them whole
    Show {
        /// The day, as YYYY-MM-DD
        day: String,
        /// One run: its id or a unique start of it; shown as `cairn status` shows a run
        #[arg(long, value_name = "ID")]
        run: Option<String>,
        /// Print the archived records as JSON lines
        #[arg(long)]
        json: bool,
    },
    /// Put a day's archived runs (or one of them) back into the data directory's store
    Restore {
        /// The day, as YYYY-MM-DD
        day: String,
        /// Only this run: its id or a unique start of it
        #[arg(long, value_name = "ID")]
        run: Option<String>,
    },
}

pub async fn archive(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    let home = Home::resolve(data_dir)?;
    let archive = Archive::new(home.dir.join("archive"));
    match args.command {
        Command::List { json } => list(&archive, json),
        Command::Show { day, run, json } => {
            let day = parse_day(&day, "DAY").map_err(|e| InvalidInput(e.to_string()))?;
            show(&archive, &home, &day, run.as_deref(), json)
        }
        Command::Restore { day, run } => {
            let day = parse_day(&day, "DAY").map_err(|e| InvalidInput(e.to_string()))?;
            restore(&archive, &home, &day, run.as_deref()).await
        }
    }
}

/// How many runs one import call takes: one transaction of the store.
const RESTORE_BATCH: usize = 500;

/// Imports the day's runs that the store does not hold (again), whole and
/// counted as if they had run here; the others are left as they are.
async fn restore(archive: &Archive, home: &Home, day: &str, run: Option<&str>) -> Result<Exit> {
    let read = archive.read(day)?;
    if read.runs.is_empty() {
        return Err(InvalidInput(format!(
            "nothing archived for {day} in {}; `cairn archive list` lists the days",
            archive.dir().display()
        ))
        .into());
    }
    let runs: Vec<&ArchivedRun> = match run {
        None => read.runs.iter().collect(),
        Some(wanted) => vec![pick(&read.runs, wanted, day)?],
    };
    let store = home.open(&EngineClock::system()).await?;
    let mut missing = Vec::new();
    for r in &runs {
        if store.run(r.id).await?.is_none() {
            missing.push(r.to_finished());
        }
    }
    let restored = missing.len();
    let mut missing = missing.into_iter().peekable();
    while missing.peek().is_some() {
        let batch: Vec<_> = missing.by_ref().take(RESTORE_BATCH).collect();
        store.import_runs(std::sync::Arc::new(batch)).await?;
    }
    store.close().await?;
    outln!("{restored} runs restored, {} already in the store", runs.len() - restored);
    Ok(Exit::Success)
}

fn list(archive: &Archive, json: bool) -> Result<Exit> {
    let days = archive.days()?;
    if json {
        for day in &days {
            outln!("{}", serde_json::to_string(day)?);
        }
        return Ok(Exit::Success);
    }
    if days.is_empty() {
        outln!("nothing archived in {}", archive.dir().display());
        return Ok(Exit::Success);
    }
    outln!("{:<10}  {:>8}  {:>10}", "DAY", "RUNS", "SIZE");
    for day in &days {
        outln!("{:<10}  {:>8}  {:>10}", day.day, day.runs, size(day.bytes));
    }
    for day in days.iter().filter(|d| d.damaged_bytes > 0) {
        outln!(
            "{}: {} bytes of an interrupted write skipped (the runs in them were archived again)",
            day.day,
            day.damaged_bytes
        );
    }
    Ok(Exit::Success)
}

fn show(archive: &Archive, home: &Home, day: &str, run: Option<&str>, json: bool) -> Result<Exit> {
    let read = archive.read(day)?;
    if read.runs.is_empty() {
        return Err(InvalidInput(format!(
            "nothing archived for {day} in {}; `cairn archive list` lists the days",
            archive.dir().display()
        ))
        .into());
    }
    let runs: Vec<&ArchivedRun> = match run {
        None => read.runs.iter().collect(),
        Some(wanted) => vec![pick(&read.runs, wanted, day)?],
    };
    if json {
        for run in runs {
            outln!("{}", serde_json::to_string(run)?);
        }
        return Ok(Exit::Success);
    }
    if let (Some(_), [one]) = (run, runs.as_slice()) {
        let limits = one
            .spec_source
            .as_deref()
            .and_then(|source| spec::parse(source, None).ok())
            .map(|w| timeouts(&w))
            .unwrap_or_default();
        let report = run_report(&one.to_detail(), &limits, &home.log_root(), EngineClock::system().now());
        print_report(&report);
        return Ok(Exit::Success);
    }
    outln!(
        "{:<26}  {:<20}  {:<19}  {:<20}  {:<20}  {:>6}",
        "RUN",
        "WORKFLOW",
        "STATUS",
        "SUBMITTED",
        "FINISHED",
        "TASKS"
    );
    for r in runs {
        outln!(
            "{:<26}  {:<20}  {:<19}  {:<20}  {:<20}  {:>6}",
            r.id,
            r.workflow,
            r.status.as_str(),
            crate::history::utc(r.submitted_at),
            r.finished_at.map(crate::history::utc).unwrap_or_default(),
            r.tasks.len()
        );
    }
    Ok(Exit::Success)
}

/// The run of `runs` whose id is `wanted` or starts with it (any case).
fn pick<'a>(runs: &'a [ArchivedRun], wanted: &str, day: &str) -> Result<&'a ArchivedRun> {
    let prefix = wanted.trim().to_ascii_uppercase();
    let found: Vec<&ArchivedRun> = runs.iter().filter(|r| r.id.to_string().starts_with(&prefix)).collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => {
            Err(InvalidInput(format!("--run: no run archived for {day} has an id starting with {wanted:?}"))
                .into())
        }
        _ => Err(InvalidInput(format!(
            "--run: several runs archived for {day} start with {wanted:?}; give more characters"
        ))
        .into()),
    }
}

/// Bytes as people read them.
fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b if b < 1024 * 1024 * 1024 => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        b => format!("{:.1} GiB", b as f64 / (1024.0 * 1024.0 * 1024.0)),
    }
}
